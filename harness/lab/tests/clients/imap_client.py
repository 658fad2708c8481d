#!/usr/bin/env python3
"""Real-client check: Python's imaplib against an IMAP server.

usage: imap_client.py HOST PORT USER PASSWORD [--starttls CAFILE] [--ssl CAFILE]
Prints one line per step; exits 0 only if every step gave what RFC 3501 promises.
"""
import imaplib

import client_args


def starttls(m, ctx):
    typ, _ = m.starttls(ssl_context=ctx)
    assert typ == "OK", typ


def main():
    m, user, password, _ = client_args.connect(
        imaplib.IMAP4, imaplib.IMAP4_SSL, "ssl_context", "--starttls", starttls
    )
    typ, caps = m.capability()
    assert typ == "OK", typ
    print("capability", caps[0].decode())
    typ, data = m.login(user, password)
    assert typ == "OK", (typ, data)
    print("login OK")
    typ, data = m.select("INBOX")
    assert typ == "OK", (typ, data)
    count = int(data[0])
    print("select", count)
    assert count >= 1, count
    typ, data = m.search(None, "ALL")
    assert typ == "OK", (typ, data)
    print("search", data[0].decode())
    assert data[0].split() == [str(i).encode() for i in range(1, count + 1)], data
    typ, data = m.fetch("1", "(FLAGS RFC822.SIZE BODY.PEEK[])")
    assert typ == "OK", (typ, data)
    meta, body = data[0]
    print("fetch", meta.decode())
    assert b"Subject:" in body, body
    size = int(meta.split(b"RFC822.SIZE ")[1].split()[0].rstrip(b")"))
    assert size == len(body), (size, len(body))
    typ, data = m.uid("FETCH", "1:*", "(UID FLAGS)")
    assert typ == "OK", (typ, data)
    print("uid fetch", len(data))
    typ, data = m.store("1", "+FLAGS", "(\\Flagged)")
    assert typ == "OK", (typ, data)
    assert b"\\Flagged" in data[0], data
    print("store", data[0].decode())
    typ, data = m.search(None, "FLAGGED")
    assert typ == "OK" and data[0].split() == [b"1"], (typ, data)
    typ, data = m.store("1", "-FLAGS", "(\\Flagged)")
    assert typ == "OK", (typ, data)
    typ, data = m.list()
    assert typ == "OK", (typ, data)
    assert any(b"INBOX" in line for line in data), data
    print("list", len(data))
    typ, data = m.status("INBOX", "(MESSAGES UIDNEXT)")
    assert typ == "OK", (typ, data)
    print("status", data[0].decode())
    typ, _ = m.close()
    assert typ == "OK", typ
    typ, _ = m.logout()
    assert typ == "BYE", typ
    print("logout BYE")


if __name__ == "__main__":
    client_args.run(main, imaplib.IMAP4.error, "imap error:")
