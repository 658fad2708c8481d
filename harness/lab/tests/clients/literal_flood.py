#!/usr/bin/env python3
"""Literal flood (issue #14): opens N IMAP connections to HOST:PORT, logs each in, and has
each announce `APPEND INBOX {SIZE}` (a synchronising literal). Where the server sends the
continuation, the SIZE octets follow, and the command is left unfinished (no final CRLF);
where it refuses (a tagged reply instead of `+`), the reply is counted. Prints
`FLOODED accepted=A refused=R codes=...` once every connection has had its turn, holds the
connections until stdin closes (or SECONDS pass), then closes them and prints `CLOSED`.

usage: literal_flood.py HOST PORT N SIZE SECONDS [USER PASSWORD]
"""
import select
import socket
import sys
import time

CHUNK = b"x" * 65536


def read_line(s):
    line = b""
    while not line.endswith(b"\n"):
        b = s.recv(1)
        if not b:
            raise EOFError("server closed the connection")
        line += b
    return line


def read_tagged(s, tag):
    while True:
        line = read_line(s)
        if line.startswith(tag + b" "):
            return line


def main():
    host, port, n, size, seconds = (
        sys.argv[1],
        int(sys.argv[2]),
        int(sys.argv[3]),
        int(sys.argv[4]),
        float(sys.argv[5]),
    )
    user = sys.argv[6] if len(sys.argv) > 6 else "alice"
    password = sys.argv[7] if len(sys.argv) > 7 else "secret"
    conns, accepted, refused, codes = [], 0, 0, {}
    deadline = time.time() + seconds
    for _ in range(n):
        s = socket.create_connection((host, port), timeout=20)
        read_line(s)
        s.sendall(b"a LOGIN %s %s\r\n" % (user.encode(), password.encode()))
        if b" OK" not in read_tagged(s, b"a"):
            print("LOGIN FAILED", flush=True)
            sys.exit(2)
        s.sendall(b"b APPEND INBOX {%d}\r\n" % size)
        reply = read_line(s)
        if reply.startswith(b"+"):
            left = size
            while left > 0:
                part = CHUNK[: min(left, len(CHUNK))]
                s.sendall(part)
                left -= len(part)
            accepted += 1
        else:
            refused += 1
            words = reply.split()
            code = b" ".join(words[1:3]).decode(errors="replace")
            codes[code] = codes.get(code, 0) + 1
        conns.append(s)
        if time.time() > deadline:
            print("TIMEOUT", flush=True)
            sys.exit(3)
    shown = ",".join("%s:%d" % (c.replace(" ", "_"), k) for c, k in sorted(codes.items()))
    print("FLOODED accepted=%d refused=%d codes=%s" % (accepted, refused, shown), flush=True)
    while time.time() < deadline:
        ready, _, _ = select.select([sys.stdin], [], [], 0.5)
        if ready and not sys.stdin.readline():
            break
    for s in conns:
        s.close()
    print("CLOSED", len(conns), flush=True)


if __name__ == "__main__":
    main()
