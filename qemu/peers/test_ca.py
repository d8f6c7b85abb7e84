#!/usr/bin/env python3
"""A throw-away certificate authority for homemx's end-to-end tests, made with the openssl CLI.

usage: test_ca.py DIR [--name NAME ...] [--wrong-name NAME] [--self-signed NAME]
                  [--key-type p256|p384|rsa2048|rsa4096] [--ca-signature default|pss]

Creates in DIR (validity now-1d..now+1y; every key, the CA's and the leaves', of --key-type:
ECDSA P-256 (the default) signed ECDSA-SHA256, P-384 signed ECDSA-SHA384, RSA-2048 or RSA-4096
signed sha256WithRSAEncryption (PKCS#1 v1.5) or, with --ca-signature pss, RSASSA-PSS with
SHA-256, MGF1-SHA-256 and a 32-byte salt; an empty --wrong-name or --self-signed leaves that
leaf out):
  ca.key, ca.pem, ca.der               the CA (CA:TRUE, keyCertSign): the appliance gets ca.der
  <name>.key/.pem/.der/.chain.pem      a CA-signed leaf per --name (SAN DNS:<name>, serverAuth);
                                       .chain.pem is leaf + CA for servers
  <wrong>.*                            a CA-signed leaf for a name nobody asks for
                                       (default mail.other.example)
  selfsigned.<name>.*                  a self-signed leaf (not from the CA) for --self-signed
                                       (default smarthost.example.net)
  spki_pins.json                       {label: hex SHA-256 of the leaf's SubjectPublicKeyInfo}
  manifest.json                        every file above by label, with signer and pin
Default names: smarthost.example.net pop.example.net dyndns.example.net checkip.example.net.
Prints the manifest's path. Runs on the host only (no network at all).
"""
import argparse
import base64
import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_common import atomic_write_json  # noqa: E402

DEFAULT_NAMES = ["smarthost.example.net", "pop.example.net", "dyndns.example.net", "checkip.example.net"]

CA_CONFIG = """\
[ ca ]
default_ca = test_ca

[ test_ca ]
dir = {database}
database = $dir/index.txt
new_certs_dir = $dir/issued
serial = $dir/serial
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no

[ policy_any ]
commonName = supplied
organizationName = optional

[ req ]
distinguished_name = req_dn
prompt = no

[ req_dn ]
CN = unused

[ ca_extensions ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash

[ leaf_extensions ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:{name}

[ self_signed_extensions ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
subjectAltName = DNS:{name}
"""


def openssl(*arguments):
    result = subprocess.run(["openssl", *arguments], capture_output=True)
    if result.returncode != 0:
        raise SystemExit(f"openssl {' '.join(arguments)} failed: {result.stderr.decode(errors='replace')}")
    return result.stdout


class Authority:
    """One openssl `ca` database (the CA's, or a private one per self-signed certificate)."""

    def __init__(self, work, label, name):
        self.database = os.path.join(work, label)
        os.makedirs(os.path.join(self.database, "issued"), exist_ok=True)
        open(os.path.join(self.database, "index.txt"), "w").close()
        with open(os.path.join(self.database, "serial"), "w") as serial:
            serial.write("1" + os.urandom(8).hex().upper()[1:])  # positive, 64 bits, even length
            serial.write("\n")
        self.config = os.path.join(self.database, "openssl.cnf")
        with open(self.config, "w") as config:
            config.write(CA_CONFIG.format(database=self.database, name=name))

    def sign(self, request, output, extensions, start, end, ca_cert=None, ca_key=None, self_key=None,
             digest="sha256", pss=False):
        arguments = ["ca", "-batch", "-notext", "-config", self.config, "-in", request, "-out", output,
                     "-extensions", extensions, "-startdate", start, "-enddate", end, "-md", digest]
        if pss:
            arguments += ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest",
                          "-sigopt", f"rsa_mgf1_md:{digest}"]
        if self_key:
            arguments += ["-selfsign", "-keyfile", self_key]
        else:
            arguments += ["-cert", ca_cert, "-keyfile", ca_key]
        openssl(*arguments)


KEY_TYPES = {
    "p256": (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], "sha256"),
    "p384": (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"], "sha384"),
    "rsa2048": (["-newkey", "rsa:2048"], "sha256"),
    "rsa4096": (["-newkey", "rsa:4096"], "sha256"),
}


def new_key_and_request(key, common_name, path, config, key_type="p256"):
    """A fresh key of `key_type` (PEM, PKCS#8) and a certificate request for it, in one openssl call."""
    openssl("req", "-new", "-config", config, *KEY_TYPES[key_type][0], "-nodes",
            "-keyout", key, "-subj", f"/CN={common_name}", "-out", path)
    os.chmod(key, 0o600)


def pem_body(pem_text, label):
    """The DER inside the first `-----BEGIN <label>-----` block."""
    begin, end = f"-----BEGIN {label}-----", f"-----END {label}-----"
    start = pem_text.index(begin) + len(begin)
    return base64.b64decode("".join(pem_text[start:pem_text.index(end, start)].split()))


def to_der(pem, der):
    with open(pem) as source, open(der, "wb") as output:
        output.write(pem_body(source.read(), "CERTIFICATE"))


def spki_sha256(pem):
    """SHA-256 of the certificate's SubjectPublicKeyInfo (a PEM PUBLIC KEY is exactly its DER)."""
    public_pem = openssl("x509", "-in", pem, "-noout", "-pubkey").decode()
    return hashlib.sha256(pem_body(public_pem, "PUBLIC KEY")).hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory")
    parser.add_argument("--name", action="append", help="CA-signed leaf names (default: the four provider names)")
    parser.add_argument("--wrong-name", default="mail.other.example")
    parser.add_argument("--self-signed", default="smarthost.example.net")
    parser.add_argument("--key-type", choices=sorted(KEY_TYPES), default="p256")
    parser.add_argument("--ca-signature", choices=["default", "pss"], default="default")
    arguments = parser.parse_args()
    if arguments.ca_signature == "pss" and not arguments.key_type.startswith("rsa"):
        parser.error("--ca-signature pss needs an RSA --key-type")
    key_type = arguments.key_type
    digest = KEY_TYPES[key_type][1]
    pss = arguments.ca_signature == "pss"
    names = arguments.name or DEFAULT_NAMES
    directory = os.path.abspath(arguments.directory)
    os.makedirs(directory, exist_ok=True)
    work = os.path.join(directory, "openssl-work")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)

    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    start = (now - datetime.timedelta(days=1)).strftime("%Y%m%d%H%M%SZ")
    end = (now + datetime.timedelta(days=365)).strftime("%Y%m%d%H%M%SZ")

    ca_key = os.path.join(directory, "ca.key")
    ca_pem = os.path.join(directory, "ca.pem")
    ca_der = os.path.join(directory, "ca.der")
    authority = Authority(work, "ca", "unused")
    request = os.path.join(work, "ca.csr")
    new_key_and_request(ca_key, "homemx test CA", request, authority.config, key_type)
    authority.sign(request, ca_pem, "ca_extensions", start, end, self_key=ca_key, digest=digest, pss=pss)
    to_der(ca_pem, ca_der)

    manifest = {"ca": {"certificate": ca_pem, "der": ca_der, "key": ca_key}, "leaves": {},
                "key_type": key_type, "ca_signature": arguments.ca_signature}
    pins = {}

    def leaf(label, name, signer):
        key = os.path.join(directory, f"{label}.key")
        pem = os.path.join(directory, f"{label}.pem")
        der = os.path.join(directory, f"{label}.der")
        chain = os.path.join(directory, f"{label}.chain.pem")
        if signer == "ca":
            own = Authority(work, f"names-{label}", name)
            request = os.path.join(work, f"{label}.csr")
            new_key_and_request(key, name, request, own.config, key_type)
            own.sign(request, pem, "leaf_extensions", start, end, ca_cert=ca_pem, ca_key=ca_key, digest=digest, pss=pss)
            with open(chain, "wb") as output:
                for part in (pem, ca_pem):
                    with open(part, "rb") as piece:
                        output.write(piece.read())
        else:
            own = Authority(work, f"self-{label}", name)
            request = os.path.join(work, f"{label}.csr")
            new_key_and_request(key, name, request, own.config, key_type)
            own.sign(request, pem, "self_signed_extensions", start, end, self_key=key, digest=digest, pss=pss)
            shutil.copyfile(pem, chain)
        to_der(pem, der)
        pin = spki_sha256(pem)
        pins[label] = pin
        manifest["leaves"][label] = {
            "name": name, "signer": signer, "certificate": pem, "key": key, "der": der, "chain": chain,
            "spki_sha256": pin,
        }

    for name in names:
        leaf(name, name, "ca")
    if arguments.wrong_name and arguments.wrong_name not in names:
        leaf(arguments.wrong_name, arguments.wrong_name, "ca")
    if arguments.self_signed:
        leaf(f"selfsigned.{arguments.self_signed}", arguments.self_signed, "self")

    shutil.rmtree(work, ignore_errors=True)
    manifest["not_before"] = start
    manifest["not_after"] = end
    atomic_write_json(os.path.join(directory, "spki_pins.json"), pins)
    manifest_path = os.path.join(directory, "manifest.json")
    atomic_write_json(manifest_path, manifest)
    print(manifest_path)


if __name__ == "__main__":
    main()
