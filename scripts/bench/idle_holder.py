#!/usr/bin/env python3
"""Holds N idle connections to an IMAP or POP3 server, for memory-per-connection figures.

Usage: idle_holder.py HOST PORT N MODE [HOLD_SECONDS]
  MODE greeted:    connect and read the greeting, then stay silent
  MODE imap-login: also LOGIN as u{i}/secret and SELECT INBOX, then stay silent
Prints "ready N" once every connection is in its idle state (or "failed K: reason" and exits
1), then holds them until it is killed or HOLD_SECONDS (default 300) pass.
Loopback only.
"""
import resource
import socket
import sys
import time


def read_until(sock, marker, deadline):
    data = b""
    while marker not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no %r within the time bound" % marker)
        sock.settimeout(left)
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed by the server")
        data += chunk
    return data


def main():
    host, port, count, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    hold = float(sys.argv[5]) if len(sys.argv) > 5 else 300.0
    if not host.startswith("127.") and host != "::1":
        sys.exit("loopback only")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    socks = []
    for i in range(count):
        deadline = time.monotonic() + 20
        try:
            s = socket.create_connection((host, port), timeout=20)
            read_until(s, b"\r\n", deadline)
            if mode == "imap-login":
                s.sendall(b"a LOGIN u%d secret\r\nb SELECT INBOX\r\n" % i)
                read_until(s, b"b OK", deadline)
            elif mode != "greeted":
                sys.exit("unknown mode " + mode)
        except (OSError, TimeoutError, ConnectionError) as e:
            print("failed %d: %s" % (i, e), flush=True)
            sys.exit(1)
        socks.append(s)
    print("ready %d" % len(socks), flush=True)
    time.sleep(hold)
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
