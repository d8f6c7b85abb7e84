#!/usr/bin/env python3
"""A TLS client for homemx's inbound TLS tests (Python's ssl module over a socket bound to a
chosen source address). Nothing here verifies the appliance's certificate: the tests are about
what the server does with the session, not whom it proves to be.

usage:
  tls_probe.py session --source A --server A:PORT (--starttls | --implicit) [--inject]
                       [--quiet-seconds S] [--second-starttls] [--auth-before-tls LINE]
                       [--first-in-tls LINE]
    One session. With --starttls: banner, EHLO, STARTTLS (with --inject the one write
    "STARTTLS\\r\\nRSET\\r\\n"), the handshake; then S seconds of listening inside TLS before
    anything is sent (every byte that arrives then is unsolicited: a reply to plaintext that
    was pipelined after STARTTLS), then LINE (--first-in-tls), then EHLO inside TLS and, with --second-starttls, STARTTLS
    again. With --auth-before-tls, LINE is sent after the first EHLO instead (and nothing
    else). Prints one JSON object with every reply, the TLS version and cipher.

  tls_probe.py hold --source A --server A:PORT (--starttls | --implicit)
                    --mode garbage|truncated|unfinished [--max-seconds S]
    A bad handshake: garbage (a handshake record whose ClientHello body is random bytes),
    truncated (the first half of a real ClientHello, then nothing), unfinished (a whole
    ClientHello, the server's flight read, then never the client's Finished). Prints
    {"held": ...} once the bad input is sent (the slot is taken), then, when the server closes
    the connection or S seconds pass, one JSON object: how long the server kept it open and
    what it sent.
"""
import argparse
import json
import os
import select
import socket
import ssl
import sys
import time

TIMEOUT = 60


def connect(source, server):
    host, _, port = server.rpartition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(TIMEOUT)
    sock.connect((host, int(port)))
    return sock


def read_reply(reader):
    """One SMTP reply (all its lines) from `reader` (a callable returning bytes, b'' at the end)."""
    lines = []
    buffer = b""
    while True:
        while b"\r\n" not in buffer:
            chunk = reader()
            if not chunk:
                lines.append(buffer.decode(errors="replace"))
                return lines
            buffer += chunk
        line, buffer = buffer.split(b"\r\n", 1)
        lines.append(line.decode(errors="replace"))
        if len(line) < 4 or line[3:4] != b"-":
            if buffer:
                lines.append("<then unread: %r>" % buffer)
            return lines


def plain_reader(sock):
    # One byte at a time: nothing after the reply is consumed (the handshake's bytes follow).
    return lambda: sock.recv(1)


def client_context():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def starttls_prelude(sock, result, inject):
    result["banner"] = read_reply(plain_reader(sock))
    sock.sendall(b"EHLO probe.test\r\n")
    result["ehlo"] = read_reply(plain_reader(sock))
    sock.sendall(b"STARTTLS\r\nRSET\r\n" if inject else b"STARTTLS\r\n")
    result["starttls"] = read_reply(plain_reader(sock))
    # Anything more in plaintext now would be a reply to the injected RSET before the switch.
    sock.setblocking(False)
    try:
        extra = sock.recv(4096)
    except BlockingIOError:
        extra = b""
    sock.setblocking(True)
    sock.settimeout(TIMEOUT)
    result["plaintext_after_starttls"] = extra.decode(errors="replace")
    return result["starttls"][-1].startswith("220")


def session(arguments):
    result = {}
    sock = connect(arguments.source, arguments.server)
    if arguments.starttls:
        if arguments.auth_before_tls:
            result["banner"] = read_reply(plain_reader(sock))
            sock.sendall(b"EHLO probe.test\r\n")
            result["ehlo"] = read_reply(plain_reader(sock))
            sock.sendall(arguments.auth_before_tls.encode() + b"\r\n")
            result["auth"] = read_reply(plain_reader(sock))
            print(json.dumps(result))
            return
        if not starttls_prelude(sock, result, arguments.inject):
            print(json.dumps(result))
            return
    started = time.monotonic()
    try:
        tls = client_context().wrap_socket(sock, server_hostname="mx.example.org")
    except (ssl.SSLError, OSError) as error:
        result["handshake_error"] = str(error)
        print(json.dumps(result))
        return
    result["handshake_seconds"] = round(time.monotonic() - started, 3)
    result["version"] = tls.version()
    result["cipher"] = tls.cipher()[0]
    if arguments.implicit:
        result["banner"] = read_reply(lambda: tls.recv(4096))
    # Listen before saying anything: whatever comes now was not asked for inside TLS.
    tls.settimeout(arguments.quiet_seconds)
    unsolicited = b""
    try:
        while True:
            chunk = tls.recv(4096)
            if not chunk:
                break
            unsolicited += chunk
    except (socket.timeout, TimeoutError):
        pass
    except (ssl.SSLError, OSError) as error:
        result["error_while_listening"] = str(error)
    tls.settimeout(TIMEOUT)
    result["unsolicited"] = unsolicited.decode(errors="replace")
    try:
        if arguments.first_in_tls:
            tls.sendall(arguments.first_in_tls.encode() + b"\r\n")
            result["first_in_tls"] = read_reply(lambda: tls.recv(4096))
        tls.sendall(b"EHLO probe.test\r\n")
        result["ehlo_in_tls"] = read_reply(lambda: tls.recv(4096))
        if arguments.second_starttls:
            tls.sendall(b"STARTTLS\r\n")
            result["second_starttls"] = read_reply(lambda: tls.recv(4096))
        tls.sendall(b"QUIT\r\n")
        result["quit"] = read_reply(lambda: tls.recv(4096))
    except (ssl.SSLError, OSError) as error:
        result["error"] = str(error)
    print(json.dumps(result))


def client_hello():
    """The bytes of a real ClientHello (TLS 1.2 and 1.3 offered), from a memory-BIO handshake."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_context().wrap_bio(incoming, outgoing, server_hostname="mx.example.org")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def hold(arguments):
    result = {"mode": arguments.mode}
    sock = connect(arguments.source, arguments.server)
    if arguments.starttls and not starttls_prelude(sock, result, False):
        print(json.dumps({"held": False, **result}), flush=True)
        return
    if arguments.mode == "garbage":
        body = os.urandom(200)
        message = b"\x01" + len(body).to_bytes(3, "big") + body
        sock.sendall(b"\x16\x03\x01" + len(message).to_bytes(2, "big") + message)
    elif arguments.mode == "truncated":
        hello = client_hello()
        sock.sendall(hello[: len(hello) // 2])
    else:
        sock.sendall(client_hello())
    sent = time.monotonic()
    print(json.dumps({"held": True, **result}), flush=True)
    received = b""
    closed = None
    deadline = sent + arguments.max_seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            continue
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
            result["reset"] = True
        if not chunk:
            closed = time.monotonic() - sent
            break
        received += chunk
    result["closed_after_seconds"] = None if closed is None else round(closed, 3)
    result["received_bytes"] = len(received)
    # A TLS alert record (content type 21) among what the server sent.
    result["alert"] = received[:1] == b"\x15" or b"\x15\x03\x03\x00\x02" in received
    print(json.dumps(result), flush=True)


def main():
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("session", "hold"):
        command = commands.add_parser(name)
        command.add_argument("--source", required=True)
        command.add_argument("--server", required=True)
        how = command.add_mutually_exclusive_group(required=True)
        how.add_argument("--starttls", action="store_true")
        how.add_argument("--implicit", action="store_true")
        if name == "session":
            command.add_argument("--inject", action="store_true")
            command.add_argument("--quiet-seconds", type=float, default=2.0)
            command.add_argument("--second-starttls", action="store_true")
            command.add_argument("--auth-before-tls")
            command.add_argument("--first-in-tls")
        else:
            command.add_argument("--mode", choices=("garbage", "truncated", "unfinished"), required=True)
            command.add_argument("--max-seconds", type=float, default=120.0)
    arguments = parser.parse_args()
    try:
        (session if arguments.command == "session" else hold)(arguments)
    except (OSError, ssl.SSLError) as error:
        print(json.dumps({"error": str(error)}), flush=True)
        sys.exit(0)


if __name__ == "__main__":
    main()
