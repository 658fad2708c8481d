#!/usr/bin/env python3
"""Real-client check: Python's poplib against a POP3 server.

usage: pop3_client.py HOST PORT USER PASSWORD [--stls CAFILE] [--ssl CAFILE] [--apop]
Prints one line per step; exits 0 only if every step gave what RFC 1939 promises.
"""
import poplib
import ssl
import sys


def main():
    host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    mode = sys.argv[5] if len(sys.argv) > 5 else None
    cafile = sys.argv[6] if len(sys.argv) > 6 else None
    if mode == "--ssl":
        ctx = ssl.create_default_context(cafile=cafile)
        p = poplib.POP3_SSL(host, port, context=ctx, timeout=10)
    else:
        p = poplib.POP3(host, port, timeout=10)
        if mode == "--stls":
            ctx = ssl.create_default_context(cafile=cafile)
            p.stls(context=ctx)
            print("stls OK")
    print("greeting", p.getwelcome().decode())
    caps = p.capa()
    print("capa", " ".join(sorted(caps)))
    if mode == "--apop":
        p.apop(user, password)
        print("apop OK")
    else:
        p.user(user)
        p.pass_(password)
        print("login OK")
    count, size = p.stat()
    print("stat", count, size)
    assert count >= 1, count
    resp, listing, _ = p.list()
    assert len(listing) == count, listing
    total = sum(int(line.split()[1]) for line in listing)
    assert total == size, (total, size)
    resp, uids, _ = p.uidl()
    assert len(uids) == count, uids
    print("uidl", len(uids))
    resp, lines, octets = p.retr(1)
    assert resp.startswith(b"+OK"), resp
    assert any(line.startswith(b"Subject:") for line in lines), lines
    print("retr", len(lines), "lines")
    resp, lines, _ = p.top(1, 0)
    assert b"" in lines and all(not l.startswith(b"Hello") for l in lines), lines
    print("top", len(lines), "lines")
    p.noop()
    resp = p.quit()
    assert resp.startswith(b"+OK"), resp
    print("quit OK")


if __name__ == "__main__":
    try:
        main()
    except poplib.error_proto as e:
        print("pop3 error:", e)
        sys.exit(2)
