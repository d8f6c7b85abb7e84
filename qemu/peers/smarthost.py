#!/usr/bin/env python3
"""The provider's smarthost (SMTP submission server) for homemx's end-to-end tests, on aiosmtpd.

usage: smarthost.py --listen ADDRESS:PORT [--listen ...] --spool DIR
                    [--tls-mode starttls|implicit|none] [--cert PEM --key PEM]
                    [--auth USER:PASSWORD] [--allow-cleartext-auth] [--require-tls]
                    [--fail-data CODE [--fail-data-count N]]
                    [--hostname NAME] [--log EVENTS.jsonl] [--ready-file FILE]

TLS is TLS 1.3 only. With --auth, AUTH PLAIN and LOGIN are offered only inside TLS (unless
--allow-cleartext-auth, for tests that prove a client never sends credentials in clear) and
MAIL is refused until the client has authenticated. Each accepted message is stored as
DIR/NNNN.eml (the bytes received after dot-unstuffing, nothing added) and DIR/NNNN.json
(envelope, authenticated user, TLS version and cipher). --fail-data answers the end of DATA
with CODE the first N times (default 1) without storing anything.

Events (JSONL, --log): ready, connect, cleartext (every line received outside TLS), ehlo,
starttls, tls (version, cipher), tls_failed, auth (ok true/false), mail (every MAIL command,
with "tls" and "authenticated"), mail_accepted, rcpt (every RCPT command), rcpt_accepted,
data_failed, stored, quit, disconnect. Exits cleanly on SIGTERM.
"""
import argparse
import asyncio
import itertools
import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_common import EventLog, parse_listen, signal_ready, tls13_server_context, tls_details  # noqa: E402

from aiosmtpd.smtp import SMTP, AuthResult, TLSSetupException  # noqa: E402

CONNECTION_NUMBERS = itertools.count(1)


class Submission(SMTP):
    """aiosmtpd's SMTP with a connection number, cleartext logging and TLS bookkeeping."""

    def __init__(self, handler, settings, **keywords):
        super().__init__(handler, **keywords)
        self.settings = settings
        self.events = settings.events
        self.connection = next(CONNECTION_NUMBERS)
        self.cleartext = bytearray()
        self.tls = {"tls": False}

    def in_tls(self):
        return self.settings.tls_mode == "implicit" or self._tls_protocol is not None

    def connection_made(self, transport):
        upgrading = self._original_transport is not None and self.transport is not None
        super().connection_made(transport)
        if upgrading:
            self.tls = tls_details(transport.get_extra_info("ssl_object"))
            self.events.write("tls", connection=self.connection, how="starttls", **self.tls)
        else:
            peer = transport.get_extra_info("peername")
            self.events.write("connect", connection=self.connection, peer=f"{peer[0]}:{peer[1]}" if peer else None)
            if self.settings.tls_mode == "implicit":
                self.tls = tls_details(transport.get_extra_info("ssl_object"))
                self.events.write("tls", connection=self.connection, how="implicit", **self.tls)

    def data_received(self, data):
        if not self.in_tls():
            self.cleartext.extend(data)
            while b"\n" in self.cleartext:
                line, _, rest = bytes(self.cleartext).partition(b"\n")
                self.cleartext = bytearray(rest)
                self.events.write("cleartext", connection=self.connection, line=(line + b"\n").decode("latin-1"))
        super().data_received(data)

    def connection_lost(self, error):
        if self.cleartext:
            self.events.write("cleartext", connection=self.connection, line=bytes(self.cleartext).decode("latin-1"))
            self.cleartext = bytearray()
        self.events.write("disconnect", connection=self.connection, error=str(error) if error else None)
        super().connection_lost(error)

    async def handle_exception(self, error):
        if isinstance(error, TLSSetupException):
            cause = error.__cause__ or error
            self.events.write("tls_failed", connection=self.connection, how="starttls", error=str(cause))
            return "454 4.7.0 TLS handshake failed"
        self.events.write("error", connection=self.connection, error=repr(error))
        return "451 4.3.0 internal error"

    async def smtp_STARTTLS(self, arg):
        self.events.write("starttls", connection=self.connection)
        await super().smtp_STARTTLS(arg)

    async def smtp_MAIL(self, arg):
        self.events.write("mail", connection=self.connection, argument=arg, tls=self.in_tls(),
                          authenticated=bool(self.session.authenticated), auth_user=auth_user(self.session))
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg):
        self.events.write("rcpt", connection=self.connection, argument=arg, tls=self.in_tls())
        await super().smtp_RCPT(arg)

    async def smtp_QUIT(self, arg):
        self.events.write("quit", connection=self.connection)
        await super().smtp_QUIT(arg)


# The overrides above keep aiosmtpd's HELP texts (and STARTTLS's "only with a TLS context").
for _name in ("smtp_STARTTLS", "smtp_MAIL", "smtp_RCPT", "smtp_QUIT"):
    for _attribute in ("__smtp_syntax__", "__smtp_syntax_extended__", "__smtp_syntax_when__"):
        setattr(getattr(Submission, _name), _attribute, getattr(getattr(SMTP, _name), _attribute, None))


class Handler:
    """The envelope hooks: logging, the DATA failures and the spool."""

    def __init__(self, settings):
        self.settings = settings
        self.events = settings.events
        os.makedirs(settings.spool, exist_ok=True)
        self.next_number = len([name for name in os.listdir(settings.spool) if name.endswith(".eml")])
        self.failures_left = settings.fail_data_count if settings.fail_data else 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.events.write("ehlo", connection=server.connection, hostname=hostname, tls=server.in_tls(),
                          advertised=[line[4:] for line in responses])
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.events.write("mail_accepted", connection=server.connection, address=address, options=mail_options,
                          tls=server.in_tls(), auth_user=auth_user(session))
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.events.write("rcpt_accepted", connection=server.connection, address=address, tls=server.in_tls())
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        content = envelope.original_content or b""
        if self.failures_left > 0:
            self.failures_left -= 1
            code = self.settings.fail_data
            self.events.write("data_failed", connection=server.connection, code=code, bytes=len(content))
            enhanced = "4.3.0" if code < 500 else "5.3.0"
            return f"{code} {enhanced} test failure, not stored"
        number = self.next_number
        self.next_number += 1
        base = os.path.join(self.settings.spool, f"{number:04d}")
        sidecar = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "mail_options": envelope.mail_options,
            "rcpt_options": envelope.rcpt_options,
            "auth_user": auth_user(session),
            "ehlo": session.host_name,
            "peer": f"{session.peer[0]}:{session.peer[1]}" if session.peer else None,
            "connection": server.connection,
        }
        sidecar.update(server.tls if server.in_tls() else {"tls": False})
        with open(base + ".json", "w") as file:
            json.dump(sidecar, file, indent=2)
        with open(base + ".eml.tmp", "wb") as file:
            file.write(content)
        os.replace(base + ".eml.tmp", base + ".eml")
        self.events.write("stored", connection=server.connection, file=base + ".eml", bytes=len(content),
                          mail_from=envelope.mail_from, rcpt_tos=envelope.rcpt_tos, tls=server.in_tls())
        return f"250 2.0.0 stored as {number:04d}"


def auth_user(session):
    data = getattr(session, "auth_data", None)
    login = getattr(data, "login", None)
    if isinstance(login, bytes):
        return login.decode(errors="replace")
    return login


class Authenticator:
    """Checks AUTH PLAIN/LOGIN against the one configured user and logs the outcome."""

    def __init__(self, settings, user, password):
        self.events = settings.events
        self.user = user.encode()
        self.password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        login = getattr(auth_data, "login", None)
        password = getattr(auth_data, "password", None)
        ok = login == self.user and password == self.password
        self.events.write("auth", connection=server.connection, mechanism=mechanism, ok=ok, tls=server.in_tls(),
                          user=login.decode(errors="replace") if isinstance(login, bytes) else None)
        return AuthResult(success=ok, handled=False, auth_data=auth_data)


class ImplicitTls(asyncio.Protocol):
    """Implicit TLS: handshakes on connect, logs failures, then hands the TLS transport to SMTP."""

    def __init__(self, settings, factory):
        self.settings = settings
        self.factory = factory

    def connection_made(self, transport):
        asyncio.get_running_loop().create_task(self.handshake(transport))

    async def handshake(self, transport):
        protocol = self.factory()
        peer = transport.get_extra_info("peername")
        try:
            tls_transport = await asyncio.get_running_loop().start_tls(
                transport, protocol, self.settings.tls_context, server_side=True, ssl_handshake_timeout=30)
        except Exception as error:  # noqa: BLE001 (every failure is an event)
            self.settings.events.write("tls_failed", how="implicit", peer=f"{peer[0]}:{peer[1]}" if peer else None,
                                       error=str(error))
            transport.close()
            return
        protocol.connection_made(tls_transport)


async def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", action="append", required=True)
    parser.add_argument("--spool", required=True)
    parser.add_argument("--tls-mode", choices=["starttls", "implicit", "none"], default="starttls")
    parser.add_argument("--cert")
    parser.add_argument("--tls12-only", action="store_true", help="offer TLS 1.2 only (an older provider stack)")
    parser.add_argument("--key")
    parser.add_argument("--auth", help="USER:PASSWORD")
    parser.add_argument("--allow-cleartext-auth", action="store_true")
    parser.add_argument("--require-tls", action="store_true", help="refuse commands other than EHLO/STARTTLS before TLS")
    parser.add_argument("--fail-data", type=int, help="reply code for the end of DATA (e.g. 451)")
    parser.add_argument("--fail-data-count", type=int, default=1)
    parser.add_argument("--hostname", default="smarthost.example.net")
    parser.add_argument("--log")
    parser.add_argument("--ready-file")
    settings = parser.parse_args()
    if settings.tls_mode != "none" and not (settings.cert and settings.key):
        parser.error("--tls-mode starttls/implicit needs --cert and --key")
    settings.spool = os.path.abspath(settings.spool)
    settings.events = EventLog(settings.log)
    settings.tls_context = tls13_server_context(settings.cert, settings.key, settings.tls12_only) if settings.tls_mode != "none" else None

    handler = Handler(settings)
    keywords = {"hostname": settings.hostname, "ident": "homemx test smarthost", "decode_data": False}
    if settings.tls_mode == "starttls":
        keywords.update(tls_context=settings.tls_context, require_starttls=settings.require_tls)
    if settings.auth:
        user, _, password = settings.auth.partition(":")
        keywords.update(authenticator=Authenticator(settings, user, password), auth_required=True,
                        auth_require_tls=settings.tls_mode == "starttls" or
                        (settings.tls_mode == "none" and not settings.allow_cleartext_auth))
    else:
        keywords.update(auth_require_tls=settings.tls_mode != "implicit" and not settings.allow_cleartext_auth)

    def smtp():
        return Submission(handler, settings, **keywords)

    loop = asyncio.get_running_loop()
    servers = []
    listening = []
    for listen in settings.listen:
        host, port = parse_listen(listen)
        factory = (lambda: ImplicitTls(settings, smtp)) if settings.tls_mode == "implicit" else smtp
        server = await loop.create_server(factory, host, port)
        servers.append(server)
        bound = server.sockets[0].getsockname()
        listening.append(f"{bound[0]}:{bound[1]}")
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    settings.events.write("ready", listening=listening, tls_mode=settings.tls_mode)
    signal_ready(settings.ready_file, listening)
    await stop.wait()
    for server in servers:
        server.close()
    settings.events.write("stopped")


if __name__ == "__main__":
    asyncio.run(main())
