#!/usr/bin/env python3
"""A stream of test messages for homemx's power-cut test: sends messages 1..COUNT (bounded)
with smtplib from a source address, one connection each, retrying a message until it gets a
final answer. Prints "accepted N" after every 250 and "refused N CODE" after a 5xx, flushed,
so the test knows exactly which messages the MX acknowledged.

usage: smtp_stream.py --source ADDRESS --server ADDRESS --recipient R --count N --body-lines L
"""
import argparse
import smtplib
import sys
import time


def message(number, lines):
    body = "".join(f"line {index} of message {number}: the quick brown fox\r\n" for index in range(lines))
    return (
        f"From: stream@remote.test\r\nTo: alice@example.org\r\nSubject: power cut {number}\r\n"
        f"Message-ID: <power-cut-{number}@remote.test>\r\n\r\n{body}"
    ).encode()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", required=True)
    parser.add_argument("--server", required=True)
    parser.add_argument("--recipient", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--body-lines", type=int, default=100)
    arguments = parser.parse_args()
    for number in range(1, arguments.count + 1):
        for attempt in range(200):
            try:
                client = smtplib.SMTP(arguments.server, 25, timeout=20, source_address=(arguments.source, 0))
                client.ehlo("stream.test")
                client.mail("stream@remote.test")
                client.rcpt(arguments.recipient)
                code, text = client.data(message(number, arguments.body_lines))
                try:
                    client.quit()
                except (smtplib.SMTPException, OSError):
                    pass
            except smtplib.SMTPDataError as error:
                code = error.smtp_code
            except (smtplib.SMTPException, OSError):
                time.sleep(0.3)
                continue
            if code == 250:
                print(f"accepted {number}", flush=True)
                break
            if 500 <= code < 600:
                print(f"refused {number} {code}", flush=True)
                break
            time.sleep(0.3)
    print("done", flush=True)


main()
