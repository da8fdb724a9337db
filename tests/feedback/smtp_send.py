#!/usr/bin/env python3
"""Sends one message file through an SMTP server with Python's smtplib (an independent client
for the SMTP listener's tests).

Usage: smtp_send.py HOST PORT MAIL_FROM RCPT[,RCPT...] FILE
MAIL_FROM may be "" for the null sender that bounces use. Prints the server's final reply
("250 ..." or the refusal) and exits 0 when the message was accepted, 1 when refused.
"""
import re
import smtplib
import sys


def main():
    host, port, mail_from, rcpts, path = sys.argv[1:6]
    with open(path, "rb") as f:
        data = re.sub(rb"\r?\n", b"\r\n", f.read())  # SMTP lines end in CRLF
    try:
        with smtplib.SMTP(host, int(port), timeout=30) as client:
            client.ehlo("client.example")
            refused = client.sendmail(mail_from, rcpts.split(","), data)
            if refused:
                print("refused recipients:", refused)
                return 1
            print("250 accepted")
            return 0
    except smtplib.SMTPResponseException as e:
        print(e.smtp_code, e.smtp_error.decode(errors="replace"))
        return 1
    except smtplib.SMTPRecipientsRefused as e:
        print("refused recipients:", e.recipients)
        return 1


if __name__ == "__main__":
    sys.exit(main())
