#!/usr/bin/env python3
"""The provider's HTTPS endpoints for homemx's end-to-end tests: a dyndns2 update service and
a check-IP service, TLS 1.3 only, in one process (by path).

usage: https_endpoints.py --listen ADDRESS:PORT [--listen ...] --cert PEM --key PEM
                          [--cert-for NAME PEM KEY ...] --control CONTROL.json
                          [--dyndns-user U --dyndns-password P] [--dyndns-hostname H ...]
                          [--zone ZONE.json] [--ip-path /ip ...]
                          [--log EVENTS.jsonl] [--ready-file FILE]

GET /nic/update?hostname=H[,H2]&myip=IP with HTTP Basic auth (dyndns2):
  - the next entry of the control file's "dyndns_answers" list, if any, is taken out of the
    file and sent: a string ("good", "nochg", "badauth", "911", ... ; "good"/"nochg" alone get
    the address appended) or {"status": 503, "body": "..."};
  - otherwise: wrong or missing credentials -> 401 "badauth"; no hostname -> "notfqdn"; a
    hostname outside --dyndns-hostname (when given) -> "nohost"; else "good IP" when IP
    differs from the name's current A record (in --zone, or the last update) and "nochg IP"
    when not. A missing or unparsable myip means the client's source address.
  - every "good" answer also writes IP as the name's A record into --zone (atomically), so
    the DNS server follows the update like a real provider's.
GET <ip-path> (default /ip): the control file's "ip_body_by_host" entry for the request's Host
  (one broken check-IP service among good ones), else the next entry of "ip_answers" (taken out
  of the file), else the control file's "ip_body" (with "ip_status", default 200), else the
  client's address.
--cert-for serves another certificate to clients that ask for NAME by SNI.
Events (JSONL): ready, request (method, path, query, host, user_agent, auth_user, auth_ok,
source, server_name, tls_version, status, body), zone_update, tls_failed. Exits on SIGTERM.
"""
import argparse
import base64
import ipaddress
import os
import signal
import ssl
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_common import EventLog, atomic_write_json, parse_listen, read_json, signal_ready, tls13_server_context  # noqa: E402

STATE_LOCK = threading.Lock()


class Service:
    """The state shared by all connections: settings, control file, zone and last addresses."""

    def __init__(self, settings):
        self.settings = settings
        self.events = settings.events
        self.last_address = {}

    def next_answer(self, key):
        """Takes the first entry of the control file's list `key` out of the file, or None."""
        control = read_json(self.settings.control, {})
        answers = control.get(key) or []
        if not answers:
            return None, control
        first = answers.pop(0)
        control[key] = answers
        atomic_write_json(self.settings.control, control)
        return first, control

    def current_address(self, hostname):
        if self.settings.zone:
            zone = read_json(self.settings.zone, {})
            for name, records in zone.get("names", {}).items():
                if name.rstrip(".").lower() == hostname:
                    values = records.get("A", [])
                    values = values if isinstance(values, list) else [values]
                    return values[0] if values else None
            return None
        return self.last_address.get(hostname)

    def set_address(self, hostname, address):
        self.last_address[hostname] = address
        if not self.settings.zone:
            return
        zone = read_json(self.settings.zone, {"ttl": 60, "names": {}})
        names = zone.setdefault("names", {})
        key = next((name for name in names if name.rstrip(".").lower() == hostname), hostname)
        names.setdefault(key, {})["A"] = [address]
        atomic_write_json(self.settings.zone, zone)
        self.events.write("zone_update", name=hostname, address=address)


class Handler(BaseHTTPRequestHandler):
    """One HTTPS connection's requests."""

    protocol_version = "HTTP/1.1"
    server_version = "homemx-test-provider"
    sys_version = ""

    def log_message(self, format, *arguments):  # noqa: A002 (the base class's name)
        pass

    def send_text(self, status, body, extra_headers=()):
        self.log_event(status, body)  # before answering: a client that has the answer finds the event
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra_headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_event(self, status, body):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        user, _ = self.credentials()
        self.server.service.events.write(
            "request", method=self.command, path=url.path, query={key: values[-1] for key, values in query.items()},
            raw_path=self.path, host=self.headers.get("Host"), user_agent=self.headers.get("User-Agent"),
            auth_user=user, auth_ok=self.auth_ok, source=f"{self.client_address[0]}:{self.client_address[1]}",
            server_name=getattr(self.connection, "server_name_asked", None),
            tls_version=self.connection.version() if isinstance(self.connection, ssl.SSLSocket) else None,
            status=status, body=body)

    def credentials(self):
        header = self.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return None, None
        try:
            user, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None, None
        return user, password

    def do_GET(self):  # noqa: N802 (http.server's name)
        service = self.server.service
        settings = service.settings
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        user, password = self.credentials()
        self.auth_ok = settings.dyndns_user is not None and user == settings.dyndns_user and password == settings.dyndns_password
        with STATE_LOCK:
            if url.path == "/nic/update":
                self.dyndns(service, query, self.auth_ok)
            elif url.path in settings.ip_path:
                self.check_ip(service)
            else:
                self.send_text(404, "not found")

    def dyndns(self, service, query, auth_ok):
        settings = service.settings
        hostnames = [name.strip().rstrip(".").lower() for name in query.get("hostname", [""])[-1].split(",") if name.strip()]
        address = query.get("myip", [""])[-1]
        try:
            address = str(ipaddress.IPv4Address(address))
        except ValueError:
            address = self.client_address[0]
        forced, _ = service.next_answer("dyndns_answers")
        if forced is not None:
            if isinstance(forced, dict):
                self.send_text(int(forced.get("status", 200)), str(forced.get("body", "")))
                return
            answer = str(forced)
            if answer in ("good", "nochg"):
                answer = f"{answer} {address}"
            if answer.startswith("good"):
                for hostname in hostnames:
                    service.set_address(hostname, address)
            self.send_text(200, "\n".join([answer] * max(1, len(hostnames))))
            return
        if not auth_ok:
            self.send_text(401, "badauth", [("WWW-Authenticate", 'Basic realm="dyndns test"')])
            return
        if not hostnames:
            self.send_text(200, "notfqdn")
            return
        lines = []
        for hostname in hostnames:
            if settings.dyndns_hostname and hostname not in settings.dyndns_hostname:
                lines.append("nohost")
            elif service.current_address(hostname) == address:
                lines.append(f"nochg {address}")
            else:
                service.set_address(hostname, address)
                lines.append(f"good {address}")
        self.send_text(200, "\n".join(lines))

    def check_ip(self, service):
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].rstrip(".").lower()
        by_host = read_json(service.settings.control, {}).get("ip_body_by_host") or {}
        if host in by_host:
            self.send_text(200, str(by_host[host]))
            return
        forced, control = service.next_answer("ip_answers")
        if isinstance(forced, dict):
            self.send_text(int(forced.get("status", 200)), str(forced.get("body", "")))
        elif forced is not None:
            self.send_text(200, str(forced))
        elif "ip_body" in control:
            self.send_text(int(control.get("ip_status", 200)), str(control["ip_body"]))
        else:
            self.send_text(200, self.client_address[0])

    def do_HEAD(self):  # noqa: N802
        self.auth_ok = False
        self.send_text(405, "method not allowed")

    def do_POST(self):  # noqa: N802
        self.auth_ok = False
        self.send_text(405, "method not allowed")


class TlsServer(ThreadingHTTPServer):
    """A threading HTTP server that does the TLS handshake in the connection's own thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, service, context):
        self.service = service
        self.context = context
        super().__init__(address, Handler)

    def finish_request(self, request, client_address):
        request.settimeout(30)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as error:
            self.service.events.write("tls_failed", source=f"{client_address[0]}:{client_address[1]}", error=str(error))
            request.close()
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        self.service.events.write("error", source=f"{client_address[0]}:{client_address[1]}", error=repr(sys.exc_info()[1]))


def tls_context(settings):
    default = tls13_server_context(settings.cert, settings.key)
    by_name = {name.lower(): tls13_server_context(cert, key) for name, cert, key in settings.cert_for or []}

    def choose(ssl_socket, server_name, _context):
        ssl_socket.server_name_asked = server_name
        if server_name and server_name.lower() in by_name:
            ssl_socket.context = by_name[server_name.lower()]
        return None

    default.sni_callback = choose
    return default


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", action="append", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--cert-for", nargs=3, action="append", metavar=("NAME", "PEM", "KEY"))
    parser.add_argument("--control", required=True)
    parser.add_argument("--dyndns-user")
    parser.add_argument("--dyndns-password")
    parser.add_argument("--dyndns-hostname", action="append", default=[])
    parser.add_argument("--zone")
    parser.add_argument("--ip-path", action="append")
    parser.add_argument("--log")
    parser.add_argument("--ready-file")
    settings = parser.parse_args()
    settings.ip_path = settings.ip_path or ["/ip"]
    settings.dyndns_hostname = [name.rstrip(".").lower() for name in settings.dyndns_hostname]
    settings.events = EventLog(settings.log)
    service = Service(settings)
    context = tls_context(settings)
    servers = []
    listening = []
    for listen in settings.listen:
        server = TlsServer(parse_listen(listen), service, context)
        bound = server.socket.getsockname()
        listening.append(f"{bound[0]}:{bound[1]}")
        servers.append(server)
    threads = [threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True) for server in servers]
    for thread in threads:
        thread.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    settings.events.write("ready", listening=listening)
    signal_ready(settings.ready_file, listening)
    while not stop.wait(0.2):
        pass
    for server in servers:
        server.shutdown()
        server.server_close()
    settings.events.write("stopped")


if __name__ == "__main__":
    main()
