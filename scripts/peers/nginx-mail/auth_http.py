#!/usr/bin/env python3
"""The auth_http endpoint nginx's mail proxy asks before it lets a login through.

Usage: auth_http.py LISTEN_PORT BACKEND_IMAP_PORT BACKEND_POP3_PORT [LOGFILE]

Knows the Dovecot peer's users (user/pass, alice/secret, bob/hunter2). A good login is
sent on to 127.0.0.1:<back-end port>; for CRAM-MD5 and APOP the reply carries the
cleartext password (Auth-Pass) so nginx can log in to the back-end with LOGIN/USER+PASS.
Protocol: https://nginx.org/en/docs/mail/ngx_mail_auth_http_module.html
"""
import hashlib
import hmac
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

USERS = {"user": "pass", "alice": "secret", "bob": "hunter2"}
# More users for load runs: AUTH_HTTP_EXTRA_USERS="u0:secret u1:secret ..."
for _entry in os.environ.get("AUTH_HTTP_EXTRA_USERS", "").split():
    _name, _, _password = _entry.partition(":")
    USERS[_name] = _password
LISTEN, IMAP, POP3 = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
LOG = open(sys.argv[4], "a", buffering=1) if len(sys.argv) > 4 else sys.stderr


def verified(method, user, given, salt):
    real = USERS.get(user)
    if real is None:
        return None
    if method in ("plain", "login", "none"):
        return real if given == real else None
    if method == "cram-md5":
        digest = hmac.new(real.encode(), salt.encode(), hashlib.md5).hexdigest()
        return real if hmac.compare_digest(digest, given) else None
    if method == "apop":
        digest = hashlib.md5(salt.encode() + real.encode()).hexdigest()
        return real if hmac.compare_digest(digest, given) else None
    return None


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        LOG.write("auth_http: " + (fmt % args) + "\n")

    def do_GET(self):
        h = self.headers
        method = (h.get("Auth-Method") or "").lower()
        user = h.get("Auth-User") or ""
        proto = (h.get("Auth-Protocol") or "").lower()
        LOG.write("request: method=%s user=%s protocol=%s\n" % (method, user, proto))
        real = verified(method, user, h.get("Auth-Pass") or "", h.get("Auth-Salt") or "")
        self.send_response(200)
        if real is not None:
            self.send_header("Auth-Status", "OK")
            self.send_header("Auth-Server", "127.0.0.1")
            self.send_header("Auth-Port", str(IMAP if proto == "imap" else POP3))
            if method in ("cram-md5", "apop"):
                self.send_header("Auth-Pass", real)
        else:
            self.send_header("Auth-Status", "Invalid login or password")
            self.send_header("Auth-Wait", "0")
        self.send_header("Content-Length", "0")
        self.end_headers()


class Server(HTTPServer):
    # nginx opens one auth connection per login; under load the default backlog of 5 makes
    # the excess wait for SYN retransmits.
    request_queue_size = 1024


Server(("127.0.0.1", LISTEN), Handler).serve_forever()
