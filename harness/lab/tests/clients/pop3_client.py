#!/usr/bin/env python3
"""Real-client check: Python's poplib against a POP3 server.

usage: pop3_client.py HOST PORT USER PASSWORD [--stls CAFILE] [--ssl CAFILE] [--apop]
Prints one line per step; exits 0 only if every step gave what RFC 1939 promises.
"""
import poplib

import client_args


def main():
    p, user, password, mode = client_args.connect(
        poplib.POP3, poplib.POP3_SSL, "context", "--stls", lambda p, ctx: p.stls(context=ctx)
    )
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
    client_args.run(main, poplib.error_proto, "pop3 error:")
