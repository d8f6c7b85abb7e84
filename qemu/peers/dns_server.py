#!/usr/bin/env python3
"""The provider's authoritative DNS server for homemx's end-to-end tests (UDP, dnslib).

usage: dns_server.py --listen ADDRESS:PORT [--listen ...] --zone ZONE.json
                     [--log EVENTS.jsonl] [--ready-file FILE]

ZONE.json is read again for every query, so a test (or https_endpoints.py after a dyndns
update) can change a record "as a third party" between two queries; write it atomically
(temporary file + rename). Its form:

  {"ttl": 60,
   "names": {
     "smarthost.example.net": {"A": ["203.0.113.25"]},
     "example.org": {"MX": [{"preference": 10, "exchange": "home.example.net"}],
                     "TXT": ["v=spf1 -all"]},
     "_25._tcp.home.example.net": {"TLSA": ["3 1 1 1f2e...(64 hex digits)"]},
     "alias.example.net": {"CNAME": "smarthost.example.net"},
     "broken.example.net": {"RCODE": "SERVFAIL"},
     "silent.example.net": {"DROP": true}}}

Record values may be a single value or a list; MX may also be "10 host"; TLSA is "usage
selector matching-type hex-data" (the hex may be of any length, also odd-looking ones a test
publishes on purpose, e.g. a digest cut short). Supported types: A, AAAA, MX, TXT, TLSA, CNAME
(chased inside the zone). Names are case-insensitive, without the final
dot. Unknown names get NXDOMAIN, known names without the asked type an empty NOERROR; every
answer is authoritative. A zone file that cannot be read gives SERVFAIL.
Events (JSONL): ready, query (source, name, type, id, rcode, answers), malformed, zone_error.
Exits cleanly on SIGTERM.
"""
import argparse
import json
import os
import select
import signal
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_common import EventLog, parse_listen, signal_ready  # noqa: E402

from dnslib import AAAA, CNAME, MX, QTYPE, RCODE, RR, TLSA, TXT, A, DNSRecord  # noqa: E402

CHASE_LIMIT = 8


def normal(name):
    return str(name).rstrip(".").lower()


def as_list(value):
    return value if isinstance(value, list) else [value]


def load_zone(path):
    with open(path, "rb") as file:
        zone = json.load(file)
    names = {normal(name): records for name, records in zone.get("names", {}).items()}
    return int(zone.get("ttl", 60)), names


def record_data(kind, value):
    if kind == "A":
        return A(value)
    if kind == "AAAA":
        return AAAA(value)
    if kind == "CNAME":
        return CNAME(value)
    if kind == "TXT":
        return TXT(value)
    if kind == "TLSA":
        usage, selector, matching_type, data = str(value).split(maxsplit=3)
        return TLSA(int(usage), int(selector), int(matching_type), bytes.fromhex(data.replace(" ", "")))
    if kind == "MX":
        if isinstance(value, dict):
            return MX(value["exchange"], int(value.get("preference", 10)))
        preference, _, exchange = str(value).partition(" ")
        return MX(exchange, int(preference))
    raise ValueError(f"unsupported record type {kind}")


def answer(request, ttl, names):
    """The reply to `request` (or None to stay silent) and what it says, for the log."""
    reply = request.reply()
    reply.header.aa = 1
    reply.header.ra = 0
    question = request.q
    kind = QTYPE.get(question.qtype)
    name = normal(question.qname)
    records = names.get(name)
    if records is None:
        reply.header.rcode = RCODE.NXDOMAIN
        return reply
    if records.get("DROP"):
        return None
    if "RCODE" in records:
        reply.header.rcode = getattr(RCODE, str(records["RCODE"]).upper())
        return reply
    owner = name
    for _ in range(CHASE_LIMIT):
        record_ttl = int(records.get("TTL", ttl))
        if "CNAME" in records and kind != "CNAME":
            target = normal(as_list(records["CNAME"])[0])
            reply.add_answer(RR(owner, QTYPE.CNAME, ttl=record_ttl, rdata=CNAME(target)))
            owner = target
            records = names.get(target)
            if records is None:
                break
            continue
        for value in as_list(records.get(kind, [])):
            reply.add_answer(RR(owner, getattr(QTYPE, kind), ttl=record_ttl, rdata=record_data(kind, value)))
        break
    return reply


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", action="append", required=True)
    parser.add_argument("--zone", required=True)
    parser.add_argument("--log")
    parser.add_argument("--ready-file")
    arguments = parser.parse_args()
    events = EventLog(arguments.log)
    sockets = []
    listening = []
    for listen in arguments.listen:
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
    events.write("ready", listening=listening, zone=os.path.abspath(arguments.zone))
    signal_ready(arguments.ready_file, listening)
    while running[0]:
        try:
            readable, _, _ = select.select(sockets, [], [], 0.2)
        except InterruptedError:
            continue
        for sock in readable:
            try:
                packet, source = sock.recvfrom(4096)
            except OSError:
                continue
            serve(sock, packet, source, arguments.zone, events)
    events.write("stopped")


def serve(sock, packet, source, zone_path, events):
    where = f"{source[0]}:{source[1]}"
    try:
        request = DNSRecord.parse(packet)
        question = request.q
        name, kind = normal(question.qname), QTYPE.get(question.qtype)
    except Exception as error:  # noqa: BLE001 (any garbage is only logged)
        events.write("malformed", source=where, error=str(error), bytes=packet.hex())
        return
    try:
        ttl, names = load_zone(zone_path)
        reply = answer(request, ttl, names)
    except Exception as error:  # noqa: BLE001 (a broken zone is a SERVFAIL, not a crash)
        events.write("zone_error", error=str(error))
        reply = request.reply()
        reply.header.rcode = RCODE.SERVFAIL
    fields = {"source": where, "name": name, "type": str(kind), "id": request.header.id}
    if reply is None:
        events.write("query", rcode=None, answers=[], dropped=True, **fields)
        return
    events.write("query", rcode=RCODE.get(reply.header.rcode), answers=[str(rr.rdata) for rr in reply.rr],
                 dropped=False, **fields)
    sock.sendto(reply.pack(), source)


if __name__ == "__main__":
    main()
