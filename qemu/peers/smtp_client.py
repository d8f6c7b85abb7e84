#!/usr/bin/env python3
"""A real SMTP client for homemx's end-to-end tests (Python's smtplib), sending from a chosen
source address. Prints one JSON object: the reply to each RCPT and to the end of data.

usage: smtp_client.py --source ADDRESS --server ADDRESS[:PORT] --sender A --recipient R [...]
                      --message FILE [--raw] [--starttls] [--auth USER:PASSWORD]
--starttls switches to TLS after EHLO (the device's certificate is not verified: this client
measures and delivers, the trust tests use their own clients).
--auth logs in (AUTH PLAIN, smtplib's choice) after STARTTLS; the reply is in "auth".
--raw sends the file's bytes after DATA as they are (for smuggling tests; the file must end
the data itself); otherwise smtplib's DATA (dot-stuffing, CRLF.CRLF) is used.
"""
import argparse
import json
import smtplib
import ssl


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", required=True)
    parser.add_argument("--server", required=True)
    parser.add_argument("--sender", required=True)
    parser.add_argument("--recipient", action="append", required=True)
    parser.add_argument("--message", required=True)
    parser.add_argument("--raw", action="store_true")
    parser.add_argument("--starttls", action="store_true")
    parser.add_argument("--auth")
    arguments = parser.parse_args()
    host, _, port = arguments.server.partition(":")
    result = {"connect": None, "mail": None, "rcpt": {}, "data": None}
    with open(arguments.message, "rb") as file:
        message = file.read()
    try:
        client = smtplib.SMTP(timeout=60, source_address=(arguments.source, 0))
        code, text = client.connect(host, int(port or 25))
        result["connect"] = [code, text.decode(errors="replace")]
        if code != 220:
            print(json.dumps(result))
            return
        client.ehlo("client.test")
        if arguments.starttls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            client._host = host  # smtplib sends it as SNI; connect() does not set it
            code, text = client.starttls(context=context)
            result["starttls"] = [code, text.decode(errors="replace"), client.sock.version(), client.sock.cipher()[0]]
            client.ehlo("client.test")
        if arguments.auth:
            user, _, password = arguments.auth.partition(":")
            try:
                code, text = client.login(user, password)
            except smtplib.SMTPAuthenticationError as error:
                code, text = error.smtp_code, error.smtp_error
            result["auth"] = [code, text.decode(errors="replace")]
        code, text = client.mail(arguments.sender)
        result["mail"] = [code, text.decode(errors="replace")]
        accepted = 0
        if code == 250:
            for recipient in arguments.recipient:
                code, text = client.rcpt(recipient)
                result["rcpt"][recipient] = [code, text.decode(errors="replace")]
                accepted += code == 250
        if accepted:
            if arguments.raw:
                code, text = client.docmd("DATA")
                if code == 354:
                    client.send(message)
                    code, text = client.getreply()
            else:
                code, text = client.data(message)
            result["data"] = [code, text.decode(errors="replace")]
        try:
            client.quit()
        except smtplib.SMTPServerDisconnected:
            pass
    except (smtplib.SMTPServerDisconnected, ConnectionError) as error:
        result["error"] = str(error)
    print(json.dumps(result))


main()
