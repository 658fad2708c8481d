#!/usr/bin/env python3
"""Opens N connections to HOST:PORT, reads each greeting, and holds them idle until stdin
closes (or SECONDS pass). Prints `HELD n` once all are open, `CLOSED` at the end.

usage: hold_connections.py HOST PORT N SECONDS
"""
import resource
import select
import socket
import sys
import time


def main():
    host, port, n, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, n + 64)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    conns = []
    deadline = time.time() + seconds
    for i in range(n):
        s = socket.create_connection((host, port), timeout=10)
        greeting = s.recv(512)
        if not greeting.startswith((b"* OK", b"+OK")):
            print("BAD GREETING", i, greeting, flush=True)
            sys.exit(2)
        conns.append(s)
        if time.time() > deadline:
            print("TIMEOUT after", i, flush=True)
            sys.exit(3)
    print("HELD", len(conns), flush=True)
    while time.time() < deadline:
        ready, _, _ = select.select([sys.stdin], [], [], 0.5)
        if ready and not sys.stdin.readline():
            break
    # Still open? Each must still be connected (no reset while idle).
    alive = sum(1 for s in conns if s.fileno() >= 0)
    for s in conns:
        s.close()
    print("CLOSED", alive, flush=True)


if __name__ == "__main__":
    main()
