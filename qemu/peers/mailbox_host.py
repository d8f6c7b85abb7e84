#!/usr/bin/env python3
"""The LAN mailbox host for homemx's end-to-end tests: an LMTP (or SMTP) server from
aiosmtpd that stores every message it accepts as <n>.eml (the bytes as received) with a
<n>.json sidecar (envelope sender and recipients). Runs inside the test's network namespace.

usage: mailbox_host.py --listen ADDRESS:PORT --directory DIR [--protocol lmtp|smtp]
                       [--lenient-line-ends]

--lenient-line-ends plays a mailbox host that is open to SMTP smuggling: it takes a bare LF
or a bare CR as a line end (as MTAs that accept bare newlines do), so a `.` line after one
ends the DATA there and what follows is read as commands. It counts those bare line ends per
connection and writes the count so far into each sidecar ("bare_line_ends").
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
        facts = {"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos}
        if hasattr(server, "bare_line_ends"):
            facts["bare_line_ends"] = server.bare_line_ends
        with open(base + ".json", "w") as sidecar:
            json.dump(facts, sidecar)
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 2.0.0 stored"


def lenient(server_class):
    """`server_class` reading every bare LF or bare CR as a CRLF (counted in `bare_line_ends`)."""

    class Lenient(server_class):
        def __init__(self, *arguments, **keywords):
            super().__init__(*arguments, **keywords)
            self.bare_line_ends = 0
            self.pending_cr = False

        def data_received(self, data):
            converted = bytearray()
            for byte in data:
                if self.pending_cr:
                    self.pending_cr = False
                    converted += b"\r\n"
                    if byte == 0x0A:
                        continue
                    self.bare_line_ends += 1
                if byte == 0x0D:
                    self.pending_cr = True
                elif byte == 0x0A:
                    converted += b"\r\n"
                    self.bare_line_ends += 1
                else:
                    converted.append(byte)
            super().data_received(bytes(converted))

    return Lenient


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--directory", required=True)
    parser.add_argument("--protocol", choices=["lmtp", "smtp"], default="lmtp")
    parser.add_argument("--lenient-line-ends", action="store_true")
    arguments = parser.parse_args()
    host, port = arguments.listen.rsplit(":", 1)
    handler = Store(arguments.directory)
    server_class = LMTP if arguments.protocol == "lmtp" else SMTP
    if arguments.lenient_line_ends:
        server_class = lenient(server_class)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: server_class(handler, hostname="mailbox.lan"), host, int(port))
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    server.close()


asyncio.run(main())
