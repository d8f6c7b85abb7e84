#!/usr/bin/env python3
"""A STARTTLS-stripping middlebox for homemx's end-to-end tests: a TCP proxy between the
appliance and the smarthost that records every byte the client sent.

usage: strip_proxy.py --listen ADDRESS:PORT --upstream ADDRESS:PORT --record FILE
                      [--mode strip|refuse|refuse-greeting|pass] [--record-server FILE]
                      [--log EVENTS.jsonl] [--ready-file FILE]

--mode strip   (default) rewrites `STARTTLS` in the server's replies to `XXXXXXXA` (what
               stripping middleboxes do to the EHLO reply) and a client's `STARTTLS` command
               to `XXXXXXXA` (the server answers 500);
--mode refuse  keeps the EHLO reply but answers the client's STARTTLS itself with
               `454 4.7.0 TLS not available` (the command never reaches the server);
--mode refuse-greeting
               answers the connection itself with a forged permanent refusal before TLS,
               `554 5.7.1 ...` as the greeting, then `221` to QUIT (`503` to anything else),
               and never connects upstream;
--mode pass    forwards bytes unchanged (a control).
--record gets every byte the client sent (all connections, appended as received, before any
rewriting), so a test can prove that no MAIL FROM, AUTH or message content went out in clear.
Events (JSONL): ready, connect, client_command (each client line outside DATA), server_line,
stripped, refused_starttls, refused_greeting, data_start, data_end, close. Exits cleanly on
SIGTERM.
"""
import argparse
import asyncio
import itertools
import os
import re
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_common import EventLog, parse_listen, signal_ready  # noqa: E402

STARTTLS = re.compile(rb"STARTTLS", re.IGNORECASE)
REFUSAL = b"454 4.7.0 TLS not available\r\n"
FORGED_GREETING = b"554 5.7.1 smarthost.example.net no service for you\r\n"
LINE_LIMIT = 1 << 20
CONNECTION_NUMBERS = itertools.count(1)


class Recorder:
    """An append-only file of bytes, flushed after every write."""

    def __init__(self, path):
        self.file = open(path, "ab") if path else None

    def write(self, data):
        if self.file is not None:
            self.file.write(data)
            self.file.flush()


class Connection:
    """One client connection and its upstream connection."""

    def __init__(self, settings, client_reader, client_writer):
        self.settings = settings
        self.events = settings.events
        self.number = next(CONNECTION_NUMBERS)
        self.client_reader = client_reader
        self.client_writer = client_writer
        self.in_data = False
        self.client_lock = asyncio.Lock()

    def log(self, event, **fields):
        self.events.write(event, connection=self.number, **fields)

    async def run(self):
        peer = self.client_writer.get_extra_info("peername")
        self.log("connect", peer=f"{peer[0]}:{peer[1]}" if peer else None, mode=self.settings.mode)
        if self.settings.mode == "refuse-greeting":
            await self.refuse_greeting()
            return
        host, port = self.settings.upstream
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, port, limit=LINE_LIMIT)
        except OSError as error:
            self.log("upstream_failed", error=str(error))
            self.client_writer.close()
            return
        if self.settings.mode == "pass":
            tasks = [self.pass_through(self.client_reader, upstream_writer, self.settings.client_record),
                     self.pass_through(upstream_reader, self.client_writer, self.settings.server_record)]
        else:
            tasks = [self.client_to_server(upstream_writer), self.server_to_client(upstream_reader)]
        running = [asyncio.ensure_future(task) for task in tasks]
        await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        for task in running:
            task.cancel()
        for writer in (self.client_writer, upstream_writer):
            writer.close()
        self.log("close")

    async def refuse_greeting(self):
        """Plays a man in the middle that forges a 554 greeting (see --mode refuse-greeting)."""
        self.log("refused_greeting")
        await self.to_client(FORGED_GREETING)
        while True:
            line = await read_line(self.client_reader)
            if not line:
                break
            self.settings.client_record.write(line)
            self.log("client_command", line=line.decode("latin-1"))
            if line.rstrip(b"\r\n").strip().upper() == b"QUIT":
                await self.to_client(b"221 2.0.0 bye\r\n")
                break
            await self.to_client(b"503 5.5.1 no service\r\n")
        self.client_writer.close()
        self.log("close")

    async def pass_through(self, reader, writer, recorder):
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            recorder.write(chunk)
            writer.write(chunk)
            await writer.drain()

    async def to_client(self, data):
        async with self.client_lock:
            self.client_writer.write(data)
            await self.client_writer.drain()

    async def client_to_server(self, upstream_writer):
        while True:
            line = await read_line(self.client_reader)
            if not line:
                return
            self.settings.client_record.write(line)
            if self.in_data:
                if line == b".\r\n":
                    self.in_data = False
                    self.log("data_end")
                upstream_writer.write(line)
                await upstream_writer.drain()
                continue
            self.log("client_command", line=line.decode("latin-1"))
            if line.rstrip(b"\r\n").strip().upper() == b"STARTTLS":
                if self.settings.mode == "refuse":
                    self.log("refused_starttls")
                    await self.to_client(REFUSAL)
                    continue
                self.log("stripped", direction="client", original=line.decode("latin-1"))
                line = STARTTLS.sub(b"XXXXXXXA", line)
            upstream_writer.write(line)
            await upstream_writer.drain()

    async def server_to_client(self, upstream_reader):
        while True:
            line = await read_line(upstream_reader)
            if not line:
                return
            self.settings.server_record.write(line)
            self.log("server_line", line=line.decode("latin-1"))
            if line.startswith(b"354"):
                self.in_data = True
                self.log("data_start")
            if self.settings.mode == "strip" and STARTTLS.search(line):
                rewritten = STARTTLS.sub(b"XXXXXXXA", line)
                self.log("stripped", direction="server", original=line.decode("latin-1"),
                         rewritten=rewritten.decode("latin-1"))
                line = rewritten
            await self.to_client(line)


async def read_line(reader):
    """The next line (with its end), the rest of the stream at its end, or b"" at EOF."""
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as error:
        return error.partial
    except asyncio.LimitOverrunError as error:
        return await reader.read(error.consumed)
    except ConnectionError:
        return b""


async def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--mode", choices=["strip", "refuse", "refuse-greeting", "pass"], default="strip")
    parser.add_argument("--record", required=True, help="file that gets every byte the client sent")
    parser.add_argument("--record-server", help="file that gets every byte the server sent")
    parser.add_argument("--log")
    parser.add_argument("--ready-file")
    settings = parser.parse_args()
    settings.upstream = parse_listen(settings.upstream)
    settings.events = EventLog(settings.log)
    settings.client_record = Recorder(settings.record)
    settings.server_record = Recorder(settings.record_server)

    async def accept(reader, writer):
        await Connection(settings, reader, writer).run()

    host, port = parse_listen(settings.listen)
    server = await asyncio.start_server(accept, host, port, limit=LINE_LIMIT)
    bound = server.sockets[0].getsockname()
    listening = [f"{bound[0]}:{bound[1]}"]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    settings.events.write("ready", listening=listening, upstream=settings.upstream, mode=settings.mode)
    signal_ready(settings.ready_file, listening)
    await stop.wait()
    server.close()
    settings.events.write("stopped")


if __name__ == "__main__":
    asyncio.run(main())
