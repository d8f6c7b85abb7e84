#!/usr/bin/env python3
"""Fills the appliance's inbound TLS sessions and checks what the next client gets (homemx's
end-to-end tests). Prints one JSON object.

usage: tls_sessions.py --source ADDRESS [--source ADDRESS ...] --server ADDRESS --hold N --message-bytes B
                      --listeners-465 L

Connection i comes from the i-th source (the device lets one address hold two sessions).

1. Opens N sessions on port 25, each through STARTTLS to EHLO inside TLS, and holds them.
2. One more session on 25: its STARTTLS reply (expected `454`), then a message in clear
   (expected `250`: the session goes on without TLS).
3. A connection to 465 (implicit TLS): the first line it receives in clear (expected `421`).
4. Each held session sends a message of B bytes (long lines: the client's TLS records are
   full 16 KB ones) and quits: each reply to the end of data.
5. After they closed, a new session on 465 completes its handshake and gets the greeting.
6. The 465 backlog: with --listeners-465 sessions holding every listener of 465, one more
   connection request is not reset (its SYN waits unanswered, as a full backlog's does); once a
   holder quits, it connects and gets the greeting inside TLS.

The device's certificate is not verified here (this client counts sessions; the trust tests
use their own clients).
"""
import argparse
import json
import os
import select
import socket
import ssl
import time


def context():
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    return tls


class Lines:
    """Reads CRLF lines from a socket (plain or TLS)."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""

    def line(self):
        while b"\r\n" not in self.buffer:
            data = self.sock.recv(4096)
            if not data:
                raise ConnectionError("closed")
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line.decode(errors="replace")

    def reply(self):
        lines = [self.line()]
        while len(lines[-1]) > 3 and lines[-1][3] == "-":
            lines.append(self.line())
        return int(lines[-1][:3]), lines

    def command(self, text):
        self.sock.sendall(text.encode() + b"\r\n")
        return self.reply()


def connect(source, server, port):
    sock = socket.create_connection((server, port), timeout=60, source_address=(source, 0))
    return sock


def held_session(source, server):
    sock = connect(source, server, 25)
    lines = Lines(sock)
    assert lines.reply()[0] == 220
    assert lines.command("EHLO held.test")[0] == 250
    code, _ = lines.command("STARTTLS")
    if code != 220:
        return None, code
    tls = context().wrap_socket(sock, server_hostname="mx.example.org")
    lines = Lines(tls)
    assert lines.command("EHLO held.test")[0] == 250
    return lines, code


def send_message(lines, size, number):
    code, _ = lines.command("MAIL FROM:<sender@remote.test>")
    if code != 250:
        return code
    code, _ = lines.command("RCPT TO:<alice@example.org>")
    if code != 250:
        return code
    code, _ = lines.command("DATA")
    if code != 354:
        return code
    body = b"Subject: TLS session %d\r\n\r\n" % number
    line = b"x" * 998 + b"\r\n"
    while len(body) + len(line) <= size:
        body += line
    lines.sock.sendall(body + b".\r\n")
    code, _ = lines.reply()
    return code


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", action="append", required=True)
    parser.add_argument("--server", required=True)
    parser.add_argument("--hold", type=int, required=True)
    parser.add_argument("--message-bytes", type=int, required=True)
    parser.add_argument("--listeners-465", type=int, required=True)
    arguments = parser.parse_args()
    result = {}
    held = []
    sources = iter(arguments.source * (arguments.hold + arguments.listeners_465 + 5))
    for _ in range(arguments.hold):
        lines, code = held_session(next(sources), arguments.server)
        result.setdefault("held_starttls", []).append(code)
        if lines:
            held.append(lines)

    # One more: STARTTLS refused for now, the session goes on in clear.
    sock = connect(next(sources), arguments.server, 25)
    extra = Lines(sock)
    extra.reply()
    extra.command("EHLO extra.test")
    result["extra_starttls"] = extra.command("STARTTLS")
    result["extra_clear_message"] = send_message(extra, 2000, 0)
    extra.command("QUIT")
    sock.close()

    # Port 465 with every TLS session taken: a clear-text refusal, then the close.
    sock = connect(next(sources), arguments.server, 465)
    try:
        result["implicit_when_full"] = Lines(sock).line()
    except (ConnectionError, OSError) as error:
        result["implicit_when_full"] = "error: %s" % error
    sock.close()

    result["held_messages"] = [send_message(lines, arguments.message_bytes, number + 1) for number, lines in enumerate(held)]
    for lines in held:
        lines.command("QUIT")
        lines.sock.close()

    # The permits are back: 465 works again.
    time.sleep(1)
    sock = connect(next(sources), arguments.server, 465)
    tls = context().wrap_socket(sock, server_hostname="mx.example.org")
    result["implicit_after"] = [tls.version(), Lines(tls).reply()[1][0]]
    tls.close()

    # Every listener of 465 busy: the next connection request waits, it is not reset.
    time.sleep(1)
    holders = []
    for _ in range(arguments.listeners_465):
        tls = context().wrap_socket(connect(next(sources), arguments.server, 465), server_hostname="mx.example.org")
        Lines(tls).reply()
        holders.append(tls)
    waiting = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    waiting.bind((next(sources), 0))
    waiting.setblocking(False)
    waiting.connect_ex((arguments.server, 465))
    time.sleep(2.5)
    error = waiting.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    try:
        waiting.getpeername()
        state = "connected"
    except OSError:
        state = "refused" if error else "waiting"
    backlog = {"while_full": state}
    holder = Lines(holders.pop(0))
    backlog["holder_quit"] = holder.command("QUIT")[0]
    holder.sock.close()
    if state == "waiting":
        started = time.monotonic()
        # The connect finishes with the SYN's next retry: the socket turns writable.
        select.select([], [waiting], [], 30)
        error = waiting.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        backlog["seconds_to_connect"] = round(time.monotonic() - started, 1)
        try:
            if error:
                raise OSError(error, os.strerror(error))
            waiting.setblocking(True)
            waiting.settimeout(30)
            tls = context().wrap_socket(waiting, server_hostname="mx.example.org")
            backlog["after"] = [tls.version(), Lines(tls).reply()[1][0]]
            tls.close()
        except (ConnectionError, OSError) as error:
            backlog["after"] = "error: %s" % error
    for tls in holders:
        tls.close()
    result["implicit_backlog"] = backlog
    print(json.dumps(result))


main()
