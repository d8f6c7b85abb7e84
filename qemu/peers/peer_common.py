"""Shared pieces of homemx's provider-side test peers: the JSONL event log, the readiness
file, `ADDRESS:PORT` parsing, atomic JSON writes and the TLS 1.3-only server context.

Every peer writes its events as one JSON object per line (`{"time": ..., "event": ..., ...}`)
and, once its sockets are bound, a readiness file: JSON `{"pid": ..., "listening": [...]}`
written atomically (port 0 in `--listen` becomes the real port there).
"""
import json
import os
import ssl
import threading
import time


class EventLog:
    """Appends one JSON object per line to a file (or nowhere); safe across threads."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.file = open(path, "a", buffering=1) if path else None

    def write(self, event, **fields):
        record = {"time": time.time(), "event": event}
        record.update(fields)
        line = json.dumps(record, default=str)
        with self.lock:
            if self.file is not None:
                self.file.write(line + "\n")
                self.file.flush()


def parse_listen(text):
    """`ADDRESS:PORT` -> (address, port)."""
    host, separator, port = text.rpartition(":")
    if not separator or not host:
        raise ValueError(f"expected ADDRESS:PORT, got {text!r}")
    return host, int(port)


def atomic_write_bytes(path, data):
    """Writes `data` to `path` through a temporary file and a rename."""
    temporary = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(temporary, "wb") as file:
        file.write(data)
    os.replace(temporary, path)


def atomic_write_json(path, value):
    """Writes `value` as JSON to `path` atomically (readers never see half a file)."""
    atomic_write_bytes(path, (json.dumps(value, indent=2) + "\n").encode())


def read_json(path, default):
    """Reads JSON from `path`; `default` if the file is missing."""
    try:
        with open(path, "rb") as file:
            return json.load(file)
    except FileNotFoundError:
        return default


def signal_ready(path, listening, **extra):
    """Writes the readiness file (JSON: pid and the bound `ADDRESS:PORT`s)."""
    if path:
        value = {"pid": os.getpid(), "listening": listening}
        value.update(extra)
        atomic_write_json(path, value)


def tls13_server_context(certificate, key, tls12_only=False):
    """A server context that accepts TLS 1.3 only (or, with `tls12_only`, TLS 1.2 only, as a
    provider on an older stack), with the given PEM certificate (chain) and key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if tls12_only:
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    else:
        context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(certificate, key)
    return context


def tls_details(ssl_object):
    """Version and cipher of an established TLS connection as a dict."""
    if ssl_object is None:
        return {"tls": False}
    cipher = ssl_object.cipher()
    return {
        "tls": True,
        "tls_version": ssl_object.version(),
        "cipher": cipher[0] if cipher else None,
    }
