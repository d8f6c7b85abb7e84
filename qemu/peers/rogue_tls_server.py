#!/usr/bin/env python3
"""A rogue TLS 1.3 server for homemx's end-to-end tests: it completes the server side of a
TLS 1.3 handshake WITHOUT a Certificate and WITHOUT a CertificateVerify (ServerHello,
EncryptedExtensions, Finished), verifies nothing of the client, and then plays the provider's
application protocol, taking every credential and message it is given. A client that lets
this handshake complete authenticates nobody (issue 12, finding 1).

usage: rogue_tls_server.py --listen ADDRESS:PORT [--listen ...]
                           --mode smtp-starttls|smtp-implicit|pop3-stls|pop3-implicit|https
                           [--hostname NAME] [--ip-body TEXT] [--timeout SECONDS]
                           [--log EVENTS.jsonl] [--ready-file FILE]

The TLS 1.3 side is written here on Python's `cryptography` (RFC 8446): key shares X25519
and secp256r1 (a HelloRetryRequest when the client's first key share is neither but it
supports one), TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384 and
TLS_CHACHA20_POLY1305_SHA256 (the client's first offered one), the full key schedule, record
protection, the middlebox-compatibility ChangeCipherSpec when the client sent a session id.
The client's Finished is checked (and the result logged) but nothing depends on it.

Modes (what runs over the TLS records, or before them):
  smtp-starttls  220 greeting and EHLO in clear with STARTTLS, then TLS, then EHLO (AUTH PLAIN
                 LOGIN offered), AUTH (always 235), MAIL/RCPT (250), DATA (354, 250), QUIT;
  smtp-implicit  TLS from the first byte (port-465 style), then the same SMTP;
  pop3-stls      +OK greeting and CAPA in clear with STLS, then TLS, then CAPA, USER/PASS and
                 AUTH (always +OK), STAT/LIST/UIDL (an empty mailbox), QUIT;
  pop3-implicit  TLS from the first byte (port-995 style), then the same POP3;
  https          TLS from the first byte, then one HTTP/1.1 request: /nic/update answers
                 dyndns2 `good <myip>`, any other path the check-IP body (--ip-body).

Events (JSONL, --log), each written and flushed before the server answers: ready, connect,
cleartext (every line received before TLS), starttls, client_hello (versions, suites, groups,
key-share groups, server name), hello_retry_request, server_hello (suite, group),
encrypted_extensions, server_finished (with "certificate": false), client_finished
("verified"), tls_established, tls_data (EVERY byte received after the TLS switch, decrypted,
as latin-1 text, one event per record), command (each parsed line or request line),
credential (a user name and password the client gave away: SMTP AUTH PLAIN/LOGIN, POP3
PASS/AUTH, HTTP Basic; decoded), client_alert (level, description and its name; plaintext or
encrypted), handshake_failed,
disconnect, stopped. Exits cleanly on SIGTERM.
"""
import argparse
import base64
import binascii
import hashlib
import hmac
import itertools
import os
import signal
import socket
import socketserver
import struct
import sys
import threading
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_common import EventLog, parse_listen, signal_ready  # noqa: E402

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, x25519  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305  # noqa: E402

CONNECTION_NUMBERS = itertools.count(1)

# Record content types and handshake message types (RFC 8446 5.1, 4).
CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA = 20, 21, 22, 23
CLIENT_HELLO, SERVER_HELLO, ENCRYPTED_EXTENSIONS, FINISHED, MESSAGE_HASH = 1, 2, 8, 20, 254
# Extensions.
SERVER_NAME, SUPPORTED_GROUPS, SUPPORTED_VERSIONS, KEY_SHARE = 0, 10, 43, 51
TLS13 = 0x0304
X25519, SECP256R1 = 0x001D, 0x0017
GROUP_NAMES = {X25519: "x25519", SECP256R1: "secp256r1"}
# The fixed ServerHello.random of a HelloRetryRequest (SHA-256 of "HelloRetryRequest").
HELLO_RETRY_RANDOM = hashlib.sha256(b"HelloRetryRequest").digest()
# Cipher suites: name, AEAD, hash, key length.
SUITES = {
    0x1301: ("TLS_AES_128_GCM_SHA256", AESGCM, "sha256", 16),
    0x1302: ("TLS_AES_256_GCM_SHA384", AESGCM, "sha384", 32),
    0x1303: ("TLS_CHACHA20_POLY1305_SHA256", ChaCha20Poly1305, "sha256", 32),
}
ALERT_NAMES = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 22: "record_overflow",
    40: "handshake_failure", 42: "bad_certificate", 43: "unsupported_certificate", 44: "certificate_revoked",
    45: "certificate_expired", 46: "certificate_unknown", 47: "illegal_parameter", 48: "unknown_ca",
    50: "decode_error", 51: "decrypt_error", 70: "protocol_version", 71: "insufficient_security",
    80: "internal_error", 86: "inappropriate_fallback", 90: "user_canceled", 109: "missing_extension",
    110: "unsupported_extension", 112: "unrecognized_name", 116: "certificate_required", 120: "no_application_protocol",
}
MAX_RECORD = 16384 + 256
LINE_LIMIT = 1 << 16


class Closed(Exception):
    """The client closed the connection, sent an alert, or broke the protocol."""


# ---------------------------------------------------------------------------------------
# The key schedule (RFC 8446 7.1) on HMAC.

def hkdf_extract(hash_name, salt, key_material):
    return hmac.new(salt, key_material, hash_name).digest()


def hkdf_expand(hash_name, secret, info, length):
    output, block, counter = b"", b"", 1
    while len(output) < length:
        block = hmac.new(secret, block + info + bytes([counter]), hash_name).digest()
        output += block
        counter += 1
    return output[:length]


def expand_label(hash_name, secret, label, context, length):
    full_label = b"tls13 " + label
    info = struct.pack(">H", length) + bytes([len(full_label)]) + full_label + bytes([len(context)]) + context
    return hkdf_expand(hash_name, secret, info, length)


def transcript_hash(hash_name, messages):
    return hashlib.new(hash_name, b"".join(messages)).digest()


def derive_secret(hash_name, secret, label, messages):
    digest_size = hashlib.new(hash_name).digest_size
    return expand_label(hash_name, secret, label, transcript_hash(hash_name, messages), digest_size)


class RecordProtection:
    """One direction's AEAD with its key, IV and sequence number (RFC 8446 5.2, 5.3)."""

    def __init__(self, suite, secret):
        _, aead, hash_name, key_length = SUITES[suite]
        self.aead = aead(expand_label(hash_name, secret, b"key", b"", key_length))
        self.iv = expand_label(hash_name, secret, b"iv", b"", 12)
        self.sequence = 0

    def nonce(self):
        padded = self.sequence.to_bytes(12, "big")
        self.sequence += 1
        return bytes(a ^ b for a, b in zip(self.iv, padded))

    def seal(self, content_type, data):
        inner = data + bytes([content_type])
        header = bytes([APPLICATION_DATA, 3, 3]) + struct.pack(">H", len(inner) + 16)
        return header + self.aead.encrypt(self.nonce(), inner, header)

    def open(self, header, payload):
        inner = self.aead.decrypt(self.nonce(), payload, header).rstrip(b"\x00")
        if not inner:
            raise Closed("an encrypted record without a content type")
        return inner[-1], inner[:-1]


def hexadecimal(numbers):
    """Code points as `0x1301`-style text, for the log."""
    return [f"{number:#06x}" for number in numbers]


def handshake_message(message_type, body):
    return bytes([message_type]) + len(body).to_bytes(3, "big") + body


def extension(kind, body):
    return struct.pack(">HH", kind, len(body)) + body


class Reader:
    """A cursor over a byte string for the ClientHello's vectors."""

    def __init__(self, data):
        self.data = data
        self.at = 0

    def take(self, count):
        if self.at + count > len(self.data):
            raise Closed("a truncated ClientHello")
        piece = self.data[self.at:self.at + count]
        self.at += count
        return piece

    def number(self, width):
        return int.from_bytes(self.take(width), "big")

    def vector(self, length_width):
        return self.take(self.number(length_width))


def parse_client_hello(body):
    """The ClientHello's fields the server needs, as a dict."""
    reader = Reader(body)
    reader.take(2 + 32)
    hello = {"session_id": reader.vector(1)}
    suites = reader.vector(2)
    hello["suites"] = [int.from_bytes(suites[index:index + 2], "big") for index in range(0, len(suites), 2)]
    reader.vector(1)
    hello.update(versions=[], groups=[], key_shares=[], server_name=None)
    extensions = Reader(reader.vector(2))
    while extensions.at < len(extensions.data):
        kind = extensions.number(2)
        data = Reader(extensions.vector(2))
        if kind == SUPPORTED_VERSIONS:
            versions = data.vector(1)
            hello["versions"] = [int.from_bytes(versions[index:index + 2], "big") for index in range(0, len(versions), 2)]
        elif kind == SUPPORTED_GROUPS:
            groups = data.vector(2)
            hello["groups"] = [int.from_bytes(groups[index:index + 2], "big") for index in range(0, len(groups), 2)]
        elif kind == KEY_SHARE:
            shares = Reader(data.vector(2))
            while shares.at < len(shares.data):
                group = shares.number(2)
                hello["key_shares"].append((group, shares.vector(2)))
        elif kind == SERVER_NAME:
            names = Reader(data.vector(2))
            while names.at < len(names.data):
                name_type = names.number(1)
                name = names.vector(2)
                if name_type == 0:
                    hello["server_name"] = name.decode("latin-1")
    return hello


def key_exchange(group, client_share):
    """(the server's key share, the shared secret) for `group`."""
    if group == X25519:
        private = x25519.X25519PrivateKey.generate()
        shared = private.exchange(x25519.X25519PublicKey.from_public_bytes(client_share))
        public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return public, shared
    private = ec.generate_private_key(ec.SECP256R1())
    shared = private.exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), client_share))
    public = private.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return public, shared


# ---------------------------------------------------------------------------------------
# One connection.

class Connection:
    """One client: the clear-text part (STARTTLS/STLS modes), the certificate-less TLS 1.3
    handshake, then the application protocol over the protected records."""

    def __init__(self, settings, sock, peer):
        self.settings = settings
        self.events = settings.events
        self.number = next(CONNECTION_NUMBERS)
        self.socket = sock
        self.socket.settimeout(settings.timeout)
        self.peer = f"{peer[0]}:{peer[1]}"
        self.raw = b""  # bytes read from the socket, not yet consumed
        self.handshake_bytes = b""  # handshake messages not yet consumed
        self.plain = b""  # decrypted application data not yet consumed
        self.read_protection = None
        self.write_protection = None
        self.in_tls = False
        self.established = False

    def log(self, event, **fields):
        self.events.write(event, connection=self.number, **fields)

    # -- transport --------------------------------------------------------------------

    def receive(self):
        try:
            chunk = self.socket.recv(65536)
        except (socket.timeout, OSError) as error:
            raise Closed(f"receive failed: {error}") from error
        if not chunk:
            raise Closed("the client closed the connection")
        self.raw += chunk

    def send(self, data):
        try:
            self.socket.sendall(data)
        except OSError as error:
            raise Closed(f"send failed: {error}") from error

    # -- clear text (before STARTTLS / STLS) -------------------------------------------

    def read_clear_line(self):
        while b"\n" not in self.raw:
            if len(self.raw) > LINE_LIMIT:
                raise Closed("an over-long line")
            self.receive()
        line, _, self.raw = self.raw.partition(b"\n")
        line += b"\n"
        self.log("cleartext", line=line.decode("latin-1"))
        return line

    # -- records ----------------------------------------------------------------------

    def read_record(self):
        """The next record as (content type, plaintext), alerts logged and raised as Closed;
        ChangeCipherSpec records (middlebox compatibility) are skipped."""
        while True:
            while len(self.raw) < 5:
                self.receive()
            content_type = self.raw[0]
            length = struct.unpack(">H", self.raw[3:5])[0]
            if length > MAX_RECORD:
                raise Closed(f"a record of {length} bytes")
            while len(self.raw) < 5 + length:
                self.receive()
            header, payload = self.raw[:5], self.raw[5:5 + length]
            self.raw = self.raw[5 + length:]
            if content_type == CHANGE_CIPHER_SPEC and not self.established:
                continue
            protected = False
            if content_type == APPLICATION_DATA and self.read_protection is not None:
                try:
                    content_type, payload = self.read_protection.open(header, payload)
                except Closed:
                    raise
                except Exception as error:  # noqa: BLE001 (any AEAD failure)
                    self.log("undecryptable_record", length=length, error=repr(error))
                    raise Closed("a record that does not decrypt") from error
                protected = True
            if content_type == ALERT:
                level, description = (payload + b"\x00\x00")[:2]
                self.log("client_alert", level=level, description=description,
                         name=ALERT_NAMES.get(description, "unknown"), encrypted=protected)
                raise Closed(f"alert {ALERT_NAMES.get(description, description)}")
            return content_type, payload

    def read_handshake_message(self):
        """The next handshake message, whole (header included)."""
        def whole():
            buffered = self.handshake_bytes
            return len(buffered) >= 4 and len(buffered) >= 4 + int.from_bytes(buffered[1:4], "big")

        while not whole():
            content_type, payload = self.read_record()
            if content_type != HANDSHAKE:
                self.send_alert(10)
                raise Closed(f"record type {content_type} during the handshake")
            self.handshake_bytes += payload
        length = 4 + int.from_bytes(self.handshake_bytes[1:4], "big")
        message, self.handshake_bytes = self.handshake_bytes[:length], self.handshake_bytes[length:]
        return message

    def send_record(self, content_type, data):
        if self.write_protection is not None:
            self.send(self.write_protection.seal(content_type, data))
        else:
            self.send(bytes([content_type, 3, 3]) + struct.pack(">H", len(data)) + data)

    def send_alert(self, description, level=2):
        """Sends an alert (fatal unless `level` says otherwise); a dead connection is fine."""
        try:
            self.send_record(ALERT, bytes([level, description]))
        except Closed:
            pass

    # -- the handshake ----------------------------------------------------------------

    def handshake(self, how):
        """The server side of TLS 1.3 without Certificate and CertificateVerify."""
        self.in_tls = True
        self.log("tls_start", how=how)
        first = self.read_handshake_message()
        if first[0] != CLIENT_HELLO:
            self.send_alert(10)
            raise Closed(f"handshake message {first[0]} instead of ClientHello")
        hello = parse_client_hello(first[4:])
        self.log("client_hello", versions=hexadecimal(hello["versions"]), suites=hexadecimal(hello["suites"]),
                 groups=hexadecimal(hello["groups"]),
                 key_share_groups=hexadecimal(group for group, _ in hello["key_shares"]),
                 server_name=hello["server_name"], session_id_length=len(hello["session_id"]))
        if TLS13 not in hello["versions"]:
            self.send_alert(70)
            raise Closed("the client does not offer TLS 1.3")
        suite = next((suite for suite in hello["suites"] if suite in SUITES), None)
        if suite is None:
            self.send_alert(40)
            raise Closed("no common cipher suite")
        name, _, hash_name, _ = SUITES[suite]
        transcript = [first]
        share = next(((group, key) for group, key in hello["key_shares"] if group in GROUP_NAMES), None)
        compatibility_ccs_sent = False
        if share is None:
            group = next((group for group in hello["groups"] if group in GROUP_NAMES), None)
            if group is None:
                self.send_alert(40)
                raise Closed("no common key-exchange group")
            retry = handshake_message(SERVER_HELLO, self.server_hello_body(
                HELLO_RETRY_RANDOM, hello["session_id"], suite,
                extension(SUPPORTED_VERSIONS, struct.pack(">H", TLS13)) + extension(KEY_SHARE, struct.pack(">H", group))))
            # RFC 8446 4.4.1: the first ClientHello is replaced by its hash.
            digest = transcript_hash(hash_name, [first])
            transcript = [handshake_message(MESSAGE_HASH, digest), retry]
            self.log("hello_retry_request", suite=name, group=GROUP_NAMES[group])
            self.send_record(HANDSHAKE, retry)
            if hello["session_id"]:
                self.send(bytes([CHANGE_CIPHER_SPEC, 3, 3, 0, 1, 1]))
                compatibility_ccs_sent = True
            second = self.read_handshake_message()
            if second[0] != CLIENT_HELLO:
                self.send_alert(10)
                raise Closed("no second ClientHello after the HelloRetryRequest")
            hello = parse_client_hello(second[4:])
            transcript.append(second)
            share = next(((shared_group, key) for shared_group, key in hello["key_shares"] if shared_group == group), None)
            self.log("client_hello", retry=True, key_share_groups=hexadecimal(shared for shared, _ in hello["key_shares"]),
                     server_name=hello["server_name"])
            if share is None:
                self.send_alert(47)
                raise Closed("the second ClientHello has no key share for the requested group")
        group, client_share = share
        server_share, shared_secret = key_exchange(group, client_share)
        server_hello = handshake_message(SERVER_HELLO, self.server_hello_body(
            os.urandom(32), hello["session_id"], suite,
            extension(SUPPORTED_VERSIONS, struct.pack(">H", TLS13)) +
            extension(KEY_SHARE, struct.pack(">HH", group, len(server_share)) + server_share)))
        transcript.append(server_hello)
        self.log("server_hello", suite=name, group=GROUP_NAMES[group])
        self.send_record(HANDSHAKE, server_hello)
        if hello["session_id"] and not compatibility_ccs_sent:
            self.send(bytes([CHANGE_CIPHER_SPEC, 3, 3, 0, 1, 1]))

        digest_size = hashlib.new(hash_name).digest_size
        zeros = bytes(digest_size)
        early_secret = hkdf_extract(hash_name, zeros, zeros)
        handshake_secret = hkdf_extract(hash_name, derive_secret(hash_name, early_secret, b"derived", []), shared_secret)
        client_handshake = derive_secret(hash_name, handshake_secret, b"c hs traffic", transcript)
        server_handshake = derive_secret(hash_name, handshake_secret, b"s hs traffic", transcript)
        master_secret = hkdf_extract(hash_name, derive_secret(hash_name, handshake_secret, b"derived", []), zeros)
        self.read_protection = RecordProtection(suite, client_handshake)
        self.write_protection = RecordProtection(suite, server_handshake)

        # EncryptedExtensions, then Finished at once: no Certificate, no CertificateVerify.
        encrypted_extensions = handshake_message(ENCRYPTED_EXTENSIONS, struct.pack(">H", 0))
        transcript.append(encrypted_extensions)
        self.log("encrypted_extensions")
        server_finished_key = expand_label(hash_name, server_handshake, b"finished", b"", digest_size)
        server_verify_data = hmac.new(server_finished_key, transcript_hash(hash_name, transcript), hash_name).digest()
        server_finished = handshake_message(FINISHED, server_verify_data)
        transcript.append(server_finished)
        self.log("server_finished", certificate=False, certificate_verify=False)
        self.send_record(HANDSHAKE, encrypted_extensions + server_finished)

        client_application = derive_secret(hash_name, master_secret, b"c ap traffic", transcript)
        server_application = derive_secret(hash_name, master_secret, b"s ap traffic", transcript)
        self.write_protection = RecordProtection(suite, server_application)
        client_finished = self.read_handshake_message()
        client_finished_key = expand_label(hash_name, client_handshake, b"finished", b"", digest_size)
        expected = hmac.new(client_finished_key, transcript_hash(hash_name, transcript), hash_name).digest()
        verified = client_finished[0] == FINISHED and hmac.compare_digest(client_finished[4:], expected)
        self.log("client_finished", verified=verified, message_type=client_finished[0])
        self.read_protection = RecordProtection(suite, client_application)
        self.established = True
        self.log("tls_established", how=how, suite=name, group=GROUP_NAMES[group], server_name=hello["server_name"],
                 client_finished_verified=verified)

    @staticmethod
    def server_hello_body(random, session_id, suite, extensions):
        return (struct.pack(">H", 0x0303) + random + bytes([len(session_id)]) + session_id +
                struct.pack(">HB", suite, 0) + struct.pack(">H", len(extensions)) + extensions)

    # -- application data over TLS ----------------------------------------------------

    def fill_plain(self):
        content_type, payload = self.read_record()
        if content_type == APPLICATION_DATA:
            self.log("tls_data", data=payload.decode("latin-1"), length=len(payload))
            self.plain += payload
        else:
            self.log("tls_other_record", content_type=content_type, length=len(payload))

    def read_line(self):
        """The next line, in clear before TLS or decrypted over it."""
        if not self.in_tls:
            return self.read_clear_line()
        while b"\n" not in self.plain:
            if len(self.plain) > LINE_LIMIT:
                raise Closed("an over-long line")
            self.fill_plain()
        line, _, self.plain = self.plain.partition(b"\n")
        return line + b"\n"

    def reply(self, text):
        """Sends `text` (CRLF-terminated lines) in clear or over TLS."""
        data = text.encode()
        if not self.in_tls:
            self.send(data)
            return
        for start in range(0, len(data), 16384):
            self.send_record(APPLICATION_DATA, data[start:start + 16384])

    def command(self, line):
        text = line.decode("latin-1").rstrip("\r\n")
        self.log("command", line=text, tls=self.in_tls)
        return text

    def credential(self, how, encoded=None, user=None, password=None):
        """Logs a credential the client gave away (base64 SASL/Basic decoded)."""
        if encoded is not None:
            try:
                decoded = base64.b64decode(encoded.strip(), validate=True).decode("latin-1")
            except (binascii.Error, ValueError):
                decoded = None
            if decoded is not None and how.endswith("plain"):
                parts = decoded.split("\x00")
                user, password = (parts[1], parts[2]) if len(parts) == 3 else (None, decoded)
            elif decoded is not None and ":" in decoded:
                user, _, password = decoded.partition(":")
            else:
                password = decoded if decoded is not None else encoded
        self.log("credential", how=how, user=user, password=password, tls=self.in_tls)

    def switch_to_tls(self, how):
        """STARTTLS/STLS: whatever the client sent after the command is dropped (no injection)."""
        if self.raw:
            self.log("discarded_before_tls", data=self.raw.decode("latin-1"))
            self.raw = b""
        self.handshake(how)

    # -- protocols --------------------------------------------------------------------

    def run(self):
        self.log("connect", peer=self.peer, mode=self.settings.mode)
        try:
            mode = self.settings.mode
            if mode.endswith("-implicit") or mode == "https":
                self.handshake("implicit")
            if mode.startswith("smtp"):
                self.smtp()
            elif mode.startswith("pop3"):
                self.pop3()
            else:
                self.https()
        except Closed as reason:
            self.log("handshake_failed" if self.in_tls and not self.established else "closed", reason=str(reason))
        except Exception as error:  # noqa: BLE001 (every failure is an event)
            self.log("error", error=repr(error))
        finally:
            if self.established:
                self.send_alert(0, level=1)
            try:
                self.socket.close()
            except OSError:
                pass
            self.log("disconnect")

    def smtp(self):
        name = self.settings.hostname
        self.reply(f"220 {name} ESMTP ready\r\n")
        while True:
            text = self.command(self.read_line())
            verb = text.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                features = ["PIPELINING", "SIZE 52428800", "8BITMIME", "ENHANCEDSTATUSCODES"]
                features.append("AUTH PLAIN LOGIN" if self.in_tls else "STARTTLS")
                lines = [name] + features
                last = len(lines) - 1
                self.reply("".join(f"250{'-' if index < last else ' '}{line}\r\n" for index, line in enumerate(lines)))
            elif verb == "STARTTLS" and not self.in_tls:
                self.log("starttls")
                self.reply("220 2.0.0 Ready to start TLS\r\n")
                self.switch_to_tls("starttls")
            elif verb == "AUTH":
                parts = text.split(" ")
                mechanism = parts[1].upper() if len(parts) > 1 else ""
                if mechanism == "PLAIN":
                    if len(parts) < 3:
                        self.reply("334 \r\n")
                        parts.append(self.command(self.read_line()))
                    self.credential("smtp-auth-plain", encoded=parts[2])
                elif mechanism == "LOGIN":
                    if len(parts) < 3:
                        self.reply("334 VXNlcm5hbWU6\r\n")
                        parts.append(self.command(self.read_line()))
                    self.reply("334 UGFzc3dvcmQ6\r\n")
                    self.credential("smtp-auth-login", encoded=self.command(self.read_line()))
                self.reply("235 2.7.0 Authentication successful\r\n")
            elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                self.reply("250 2.0.0 OK\r\n")
            elif verb == "DATA":
                self.reply("354 End data with <CR><LF>.<CR><LF>\r\n")
                size = 0
                while True:
                    line = self.read_line()
                    if line == b".\r\n":
                        break
                    size += len(line)
                self.log("message", bytes=size)
                self.reply("250 2.0.0 Ok: queued as ROGUE\r\n")
            elif verb == "QUIT":
                self.reply("221 2.0.0 Bye\r\n")
                return
            else:
                self.reply("500 5.5.2 Error: command not recognized\r\n")

    def pop3(self):
        self.reply("+OK POP3 server ready\r\n")
        while True:
            text = self.command(self.read_line())
            verb = text.split(" ", 1)[0].upper()
            if verb == "CAPA":
                capabilities = ["USER", "UIDL", "TOP", "SASL PLAIN"] if self.in_tls else ["UIDL", "TOP", "STLS"]
                self.reply("+OK Capability list follows\r\n" + "".join(f"{line}\r\n" for line in capabilities) + ".\r\n")
            elif verb == "STLS" and not self.in_tls:
                self.log("starttls")
                self.reply("+OK Begin TLS negotiation\r\n")
                self.switch_to_tls("stls")
            elif verb == "AUTH":
                parts = text.split(" ")
                if len(parts) < 3:
                    self.reply("+ \r\n")
                    parts.append(self.command(self.read_line()))
                self.credential("pop3-auth-plain", encoded=parts[-1])
                self.reply("+OK Logged in.\r\n")
            elif verb == "PASS":
                self.credential("pop3-pass", password=text[5:])
                self.reply("+OK Logged in.\r\n")
            elif verb in ("USER", "NOOP", "RSET"):
                self.reply("+OK\r\n")
            elif verb == "STAT":
                self.reply("+OK 0 0\r\n")
            elif verb in ("LIST", "UIDL"):
                self.reply("+OK\r\n.\r\n")
            elif verb == "QUIT":
                self.reply("+OK Logging out.\r\n")
                return
            else:
                self.reply("-ERR Unknown command.\r\n")

    def https(self):
        head = b""
        while b"\r\n\r\n" not in head:
            if len(head) > LINE_LIMIT:
                raise Closed("an over-long request head")
            self.fill_plain()
            head, self.plain = head + self.plain, b""
        request_line = self.command(head.split(b"\r\n", 1)[0])
        for header in head.split(b"\r\n")[1:]:
            name, _, value = header.decode("latin-1").partition(":")
            if name.strip().lower() == "authorization" and value.strip().lower().startswith("basic "):
                self.credential("http-basic", encoded=value.strip()[6:])
        target = request_line.split(" ")[1] if len(request_line.split(" ")) > 1 else "/"
        url = urllib.parse.urlsplit(target)
        if url.path.startswith("/nic/update"):
            query = urllib.parse.parse_qs(url.query)
            body = f"good {query.get('myip', [self.peer.split(':')[0]])[-1]}"
        else:
            body = self.settings.ip_body
        data = body.encode()
        self.reply("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                   f"{len(data)}\r\nConnection: close\r\n\r\n{body}")


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address, settings):
        self.settings = settings
        super().__init__(address, Handler)


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        Connection(self.server.settings, self.request, self.client_address).run()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", action="append", required=True)
    parser.add_argument("--mode", required=True,
                        choices=["smtp-starttls", "smtp-implicit", "pop3-stls", "pop3-implicit", "https"])
    parser.add_argument("--hostname", default="smarthost.example.net")
    parser.add_argument("--ip-body", default="198.51.100.7", help="the check-IP answer's body")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds a client may stay silent")
    parser.add_argument("--log")
    parser.add_argument("--ready-file")
    settings = parser.parse_args()
    settings.events = EventLog(settings.log)
    servers = [Server(parse_listen(listen), settings) for listen in settings.listen]
    listening = [f"{server.socket.getsockname()[0]}:{server.socket.getsockname()[1]}" for server in servers]
    threads = [threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
               for server in servers]
    for thread in threads:
        thread.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    settings.events.write("ready", listening=listening, mode=settings.mode)
    signal_ready(settings.ready_file, listening)
    while not stop.wait(0.2):
        pass
    for server in servers:
        server.shutdown()
        server.server_close()
    settings.events.write("stopped")


if __name__ == "__main__":
    main()
