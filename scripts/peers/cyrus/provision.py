#!/usr/bin/env python3
"""Creates the Cyrus peer's mailboxes as the admin and appends 3 messages to each.

Usage: provision.py IMAP_PORT ADMIN ADMIN_PASSWORD USER...   (every step bounded by a
10 s socket timeout; exits non-zero on the first refusal)
"""
import imaplib
import sys

port, admin, admin_pw, users = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
conn = imaplib.IMAP4("127.0.0.1", port, timeout=10)
conn.login(admin, admin_pw)
for user in users:
    box = "user.%s" % user
    for what, (typ, data) in (
        ("create", conn.create(box)),
        ("setacl", conn.setacl(box, admin, "lrswipkxtecda")),
    ):
        print(what, user, typ, data)
        if typ != "OK":
            sys.exit(1)
    for i in (1, 2, 3):
        msg = (
            "From: Sender <sender@example.test>\r\n"
            "To: %(u)s@example.test\r\n"
            "Subject: Test message %(i)d\r\n"
            "Date: Mon, 1 Jan 2024 00:00:0%(i)d +0000\r\n"
            "Message-ID: <msg%(i)d.%(u)s@example.test>\r\n"
            "\r\n"
            "Hello %(u)s, this is message number %(i)d.\r\nSecond line.\r\n"
        ) % {"u": user, "i": i}
        typ, data = conn.append(box, None, None, msg.encode())
        print("append", user, i, typ, data)
        if typ != "OK":
            sys.exit(1)
conn.logout()
