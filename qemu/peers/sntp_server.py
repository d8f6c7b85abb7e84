#!/usr/bin/env python3
"""The provider's SNTP server for homemx's end-to-end tests (RFC 4330, UDP).

usage: sntp_server.py --listen ADDRESS:PORT [--listen ...] [--offset-seconds S]
                      [--stratum N] [--leap N] [--ignore-first N]
                      [--log EVENTS.jsonl] [--ready-file FILE]

Answers every client-mode (3) request of 48 bytes or more with a server-mode (4) reply: the
host's real time plus --offset-seconds, the request's transmit timestamp echoed as the
originate timestamp, receive and transmit timestamps, stratum 2 (default), the request's
version number, poll copied, precision 2^-20, reference id 192.0.2.1. --ignore-first N stays
silent to the first N requests (for retry tests); --stratum 0 sends a kiss-o'-death "RATE".
Events (JSONL): ready, request (source, version, mode, transmit, answered), malformed.
Exits cleanly on SIGTERM.
"""
import argparse
import os
import select
import signal
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_common import EventLog, parse_listen, signal_ready  # noqa: E402

NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01
REFERENCE_ID = bytes([192, 0, 2, 1])


def to_ntp(unix_seconds):
    """Unix time (float) -> 64-bit NTP timestamp (seconds since 1900 << 32 | fraction)."""
    seconds = unix_seconds + NTP_EPOCH_OFFSET
    whole = int(seconds)
    fraction = int((seconds - whole) * (1 << 32)) & 0xFFFFFFFF
    return ((whole & 0xFFFFFFFF) << 32) | fraction


def from_ntp(timestamp):
    return (timestamp >> 32) - NTP_EPOCH_OFFSET + (timestamp & 0xFFFFFFFF) / (1 << 32)


def reply(request, received, settings):
    first = request[0]
    version = (first >> 3) & 7
    poll = request[2]
    stratum = settings.stratum
    leap = settings.leap
    reference_id = b"RATE" if stratum == 0 else REFERENCE_ID
    now = time.time() + settings.offset_seconds
    header = struct.pack(
        "!BBbbII4s",
        (leap << 6) | (version << 3) | 4,
        stratum,
        poll if poll < 128 else 0,
        -20,
        0x00000200,  # root delay: 1/128 s (16.16 fixed point)
        0x00000400,  # root dispersion: 1/64 s
        reference_id,
    )
    reference = to_ntp(now - 64)
    originate = request[40:48]  # the client's transmit timestamp, copied bit for bit
    transmit = to_ntp(time.time() + settings.offset_seconds)
    return header + struct.pack("!Q", reference) + originate + struct.pack("!QQ", received, transmit), transmit


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", action="append", required=True)
    parser.add_argument("--offset-seconds", type=float, default=0.0)
    parser.add_argument("--stratum", type=int, default=2)
    parser.add_argument("--leap", type=int, default=0, choices=[0, 1, 2, 3])
    parser.add_argument("--ignore-first", type=int, default=0)
    parser.add_argument("--log")
    parser.add_argument("--ready-file")
    settings = parser.parse_args()
    events = EventLog(settings.log)
    sockets = []
    listening = []
    for listen in settings.listen:
        host, port = parse_listen(listen)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, port))
        bound = sock.getsockname()
        listening.append(f"{bound[0]}:{bound[1]}")
        sockets.append(sock)
    running = [True]

    def stop(*_):
        running[0] = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    events.write("ready", listening=listening, offset_seconds=settings.offset_seconds)
    signal_ready(settings.ready_file, listening)
    ignore = settings.ignore_first
    while running[0]:
        try:
            readable, _, _ = select.select(sockets, [], [], 0.2)
        except InterruptedError:
            continue
        for sock in readable:
            try:
                packet, source = sock.recvfrom(2048)
            except OSError:
                continue
            received = to_ntp(time.time() + settings.offset_seconds)
            where = f"{source[0]}:{source[1]}"
            if len(packet) < 48:
                events.write("malformed", source=where, bytes=packet.hex())
                continue
            mode = packet[0] & 7
            version = (packet[0] >> 3) & 7
            client_transmit = struct.unpack("!Q", packet[40:48])[0]
            fields = {"source": where, "version": version, "mode": mode, "transmit": f"{client_transmit:016x}"}
            if mode != 3 or version == 0:
                events.write("request", answered=False, reason="not a client request", **fields)
                continue
            if ignore > 0:
                ignore -= 1
                events.write("request", answered=False, reason="ignored on purpose", **fields)
                continue
            answer, transmit = reply(packet, received, settings)
            events.write("request", answered=True, served_unix=from_ntp(transmit), **fields)
            sock.sendto(answer, source)
    events.write("stopped")


if __name__ == "__main__":
    main()
