#!/usr/bin/env python3
"""The LAN mailbox host for homemx's end-to-end tests: an LMTP (or SMTP) server from
aiosmtpd that stores every message it accepts as <n>.eml (the bytes as received) with a
<n>.json sidecar (envelope sender and recipients). Runs inside the test's network namespace.

usage: mailbox_host.py --listen ADDRESS:PORT --directory DIR [--protocol lmtp|smtp]
"""
import argparse
import asyncio
import json
import os
import signal

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP


class Store:
    def __init__(self, directory):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)

    async def handle_DATA(self, server, session, envelope):
        number = len([name for name in os.listdir(self.directory) if name.endswith(".eml")])
        base = os.path.join(self.directory, f"{number:04d}")
        with open(base + ".eml.tmp", "wb") as message:
            message.write(envelope.original_content)
        with open(base + ".json", "w") as sidecar:
            json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos}, sidecar)
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 2.0.0 stored"


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--directory", required=True)
    parser.add_argument("--protocol", choices=["lmtp", "smtp"], default="lmtp")
    arguments = parser.parse_args()
    host, port = arguments.listen.rsplit(":", 1)
    handler = Store(arguments.directory)
    server_class = LMTP if arguments.protocol == "lmtp" else SMTP
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: server_class(handler, hostname="mailbox.lan"), host, int(port))
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    server.close()


asyncio.run(main())
