#!/usr/bin/env python3
"""A minimal POP3 server (RFC 1939, STLS from RFC 2595, CAPA from RFC 2449) for homemx's
end-to-end tests that serves each message *byte for byte* as it lies in its maildrop
directory: bare LF and bare CR stay as they are (Dovecot rewrites line ends, so it cannot
play a backup MX that hands out such mail). The only change on the wire is the dot-stuffing
RFC 1939 requires: a `.` is added in front of every CRLF-delimited line that begins with a
dot, and a CRLF is added before the terminator if the message does not end with one.

usage: pop3_server.py --listen ADDRESS:PORT --maildrop DIR --user USER --password PASSWORD
                      --cert PEM --key PEM [--tls-mode starttls|implicit]
                      [--log EVENTS.jsonl] [--ready-file FILE]

The maildrop is DIR/*.eml in name order, read at login; the UIDL of a message is its file
stem. Messages deleted with DELE are moved to DIR/deleted/ when QUIT is answered `+OK`.
USER, PASS and AUTH are refused before TLS (`-ERR`); TLS is TLS 1.3 only (the test CA's leaf).

Events (JSONL, --log): ready, connect, cleartext (every line received outside TLS), tls,
tls_failed, login (ok true/false), list, retr (number, uidl, octets), dele, quit (deleted),
disconnect. Exits cleanly on SIGTERM.
"""
import argparse
import os
import signal
import socketserver
import ssl
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_common import EventLog, parse_listen, signal_ready, tls13_server_context, tls_details  # noqa: E402

LINE_MAX = 512


def stuffed(message):
    """The RETR body: a dot added to each CRLF-delimited line that starts with one, CRLF at
    the end if missing, then the terminator. Bare LF and CR are left as they are."""
    lines = message.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    body = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)
    return body + b".\r\n"


class Connection:
    """One client: a line reader over a socket that can be upgraded to TLS."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        while b"\r\n" not in self.buffer:
            if len(self.buffer) > LINE_MAX:
                return None
            data = self.sock.recv(4096)
            if not data:
                return None
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def start_tls(self, context):
        # Anything the client sent after STLS before the handshake is discarded.
        self.buffer = b""
        self.sock = context.wrap_socket(self.sock, server_side=True)


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        settings = self.server.settings
        events = settings.events
        number = next(settings.connections)
        peer = self.client_address
        events.write("connect", connection=number, peer=f"{peer[0]}:{peer[1]}")
        connection = Connection(self.request)
        tls = settings.tls_mode == "implicit"
        if tls:
            try:
                connection.start_tls(settings.context)
            except (ssl.SSLError, OSError) as error:
                events.write("tls_failed", connection=number, error=str(error))
                return
            events.write("tls", connection=number, how="implicit", **tls_details(connection.sock))
        user_given = None
        maildrop = None
        deleted = set()
        connection.send(b"+OK homemx test POP3 server ready\r\n")
        while True:
            line = connection.line()
            if line is None:
                break
            if not tls:
                events.write("cleartext", connection=number, line=line.decode("latin-1"))
            verb, _, argument = line.decode("latin-1").partition(" ")
            verb = verb.upper()
            if verb == "CAPA":
                capabilities = ["UIDL"] + (["USER"] if tls else ["STLS"])
                connection.send(b"+OK\r\n" + b"".join(c.encode() + b"\r\n" for c in capabilities) + b".\r\n")
            elif verb == "STLS" and not tls and settings.tls_mode == "starttls" and maildrop is None:
                connection.send(b"+OK Begin TLS negotiation\r\n")
                try:
                    connection.start_tls(settings.context)
                except (ssl.SSLError, OSError) as error:
                    events.write("tls_failed", connection=number, error=str(error))
                    return
                tls = True
                events.write("tls", connection=number, how="stls", **tls_details(connection.sock))
            elif verb in ("USER", "PASS", "AUTH") and not tls:
                connection.send(b"-ERR [AUTH] TLS first (STLS)\r\n")
            elif verb == "USER" and maildrop is None:
                user_given = argument
                connection.send(b"+OK\r\n")
            elif verb == "PASS" and maildrop is None and user_given is not None:
                ok = user_given == settings.user and argument == settings.password
                events.write("login", connection=number, user=user_given, ok=ok)
                if not ok:
                    connection.send(b"-ERR [AUTH] invalid credentials\r\n")
                    user_given = None
                    continue
                names = sorted(name for name in os.listdir(settings.maildrop) if name.endswith(".eml"))
                maildrop = []
                for name in names:
                    with open(os.path.join(settings.maildrop, name), "rb") as file:
                        maildrop.append((name, file.read()))
                connection.send(f"+OK {len(maildrop)} messages\r\n".encode())
            elif maildrop is None:
                connection.send(b"-ERR not now\r\n" if verb != "QUIT" else b"+OK bye\r\n")
                if verb == "QUIT":
                    break
            elif verb == "STAT":
                live = [message for index, message in enumerate(maildrop) if index + 1 not in deleted]
                connection.send(f"+OK {len(live)} {sum(len(m[1]) for m in live)}\r\n".encode())
            elif verb in ("LIST", "UIDL") and not argument:
                events.write("list", connection=number, verb=verb, messages=len(maildrop))
                lines = []
                for index, (name, message) in enumerate(maildrop):
                    if index + 1 in deleted:
                        continue
                    value = len(message) if verb == "LIST" else name[: -len(".eml")]
                    lines.append(f"{index + 1} {value}\r\n".encode())
                connection.send(b"+OK\r\n" + b"".join(lines) + b".\r\n")
            elif verb in ("RETR", "DELE") and argument.isdigit() and 1 <= int(argument) <= len(maildrop):
                index = int(argument)
                name, message = maildrop[index - 1]
                if index in deleted:
                    connection.send(b"-ERR message deleted\r\n")
                elif verb == "RETR":
                    events.write("retr", connection=number, number=index, uidl=name[: -len(".eml")], octets=len(message))
                    connection.send(f"+OK {len(message)} octets\r\n".encode() + stuffed(message))
                else:
                    deleted.add(index)
                    events.write("dele", connection=number, number=index, uidl=name[: -len(".eml")])
                    connection.send(b"+OK deleted\r\n")
            elif verb == "NOOP":
                connection.send(b"+OK\r\n")
            elif verb == "RSET":
                deleted.clear()
                connection.send(b"+OK\r\n")
            elif verb == "QUIT":
                target = os.path.join(settings.maildrop, "deleted")
                os.makedirs(target, exist_ok=True)
                for index in sorted(deleted):
                    name = maildrop[index - 1][0]
                    os.replace(os.path.join(settings.maildrop, name), os.path.join(target, name))
                events.write("quit", connection=number, deleted=len(deleted))
                connection.send(b"+OK bye\r\n")
                break
            else:
                connection.send(b"-ERR unknown command\r\n")

    def finish(self):
        self.server.settings.events.write("disconnect", peer=f"{self.client_address[0]}:{self.client_address[1]}")


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class Settings:
    pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--maildrop", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--tls-mode", choices=["starttls", "implicit"], default="starttls")
    parser.add_argument("--log")
    parser.add_argument("--ready-file")
    arguments = parser.parse_args()
    settings = Settings()
    settings.events = EventLog(arguments.log)
    settings.maildrop = arguments.maildrop
    settings.user = arguments.user
    settings.password = arguments.password
    settings.tls_mode = arguments.tls_mode
    settings.context = tls13_server_context(arguments.cert, arguments.key)
    settings.connections = iter(range(1, 1 << 30))
    os.makedirs(arguments.maildrop, exist_ok=True)
    host, port = parse_listen(arguments.listen)
    server = Server((host, port), Handler)
    server.settings = settings
    bound = server.server_address
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    settings.events.write("ready", listening=[f"{bound[0]}:{bound[1]}"])
    signal_ready(arguments.ready_file, [f"{bound[0]}:{bound[1]}"])
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
