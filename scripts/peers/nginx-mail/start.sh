#!/bin/bash
# nginx's mail proxy (IMAP + POP3) on loopback in front of a back-end (the Dovecot peer),
# with auth_http.py as its auth endpoint. nginx runs with `daemon off`, backgrounded here so
# its master PID is known. nginx cannot offer NTLM at all (`imap_auth ntlm` is a config
# error), which is what makes it a conformant front-end to compare with.
# Usage: start.sh [IMAP_PORT] [POP3_PORT] [BACKEND_IMAP] [BACKEND_POP3] [AUTH_PORT] [RUNDIR]
#   defaults: 12143 12110 11143 11110 18080 ${PEERS_HOME:-/tmp/harness-peers}/nginx-mail/run
# Prints "NGINX_PID AUTH_PID" (also in RUNDIR/nginx.pid.fg and RUNDIR/auth.pid).
# Stop: stop.sh [RUNDIR]
# NGINX_WORKERS (default 1) and NGINX_WORKER_CONNECTIONS (default 256) size it for load runs;
# AUTH_HTTP_EXTRA_USERS="u0:secret u1:secret ..." adds users to the auth endpoint.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../../lib/procs.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
export PATH="$PATH:/usr/sbin:/sbin"
IMAP_PORT=${1:-12143}; POP3_PORT=${2:-12110}
B_IMAP=${3:-11143}; B_POP3=${4:-11110}; AUTH_PORT=${5:-18080}
RUNDIR=${6:-${PEERS_HOME:-/tmp/harness-peers}/nginx-mail/run}
IMAP_AUTH=${NGINX_IMAP_AUTH:-login plain cram-md5}
POP3_AUTH=${NGINX_POP3_AUTH:-plain apop cram-md5}
command -v nginx >/dev/null && [ -f /usr/lib/nginx/modules/ngx_mail_module.so ] ||
  { echo "nginx mail proxy not installed (scripts/peers/install.sh, or apt-get install nginx libnginx-mod-mail)" >&2; exit 3; }
command -v python3 >/dev/null || { echo "python3 not installed" >&2; exit 3; }
mkdir -p "$RUNDIR/logs"; RUNDIR=$(cd "$RUNDIR" && pwd)
for f in nginx.pid.fg auth.pid; do
  if [ -f "$RUNDIR/$f" ] && kill -0 "$(cat "$RUNDIR/$f")" 2>/dev/null; then
    echo "already running: $f $(cat "$RUNDIR/$f")" >&2; exit 4; fi
done

# Every listener on 127.0.0.1; -p and -e keep nginx out of /etc/nginx and /var/log/nginx.
cat > "$RUNDIR/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_mail_module.so;
daemon off;
master_process on;
worker_processes ${NGINX_WORKERS:-1};
pid $RUNDIR/nginx.pid;
error_log $RUNDIR/logs/error.log info;
events { worker_connections ${NGINX_WORKER_CONNECTIONS:-256}; }
mail {
    auth_http 127.0.0.1:$AUTH_PORT/auth;
    proxy_pass_error_message on;
    imap_auth $IMAP_AUTH;
    pop3_auth $POP3_AUTH;
    server { listen 127.0.0.1:$IMAP_PORT; protocol imap; }
    server { listen 127.0.0.1:$POP3_PORT; protocol pop3; }
}
CONF

nohup python3 "$HERE/auth_http.py" "$AUTH_PORT" "$B_IMAP" "$B_POP3" "$RUNDIR/logs/auth_http.log" \
  >/dev/null 2>>"$RUNDIR/logs/auth_http.log" </dev/null &
APID=$!; echo "$APID" > "$RUNDIR/auth.pid"
nohup nginx -p "$RUNDIR" -e "$RUNDIR/logs/error.log" -c "$RUNDIR/nginx.conf" \
  >>"$RUNDIR/logs/stdout.log" 2>&1 </dev/null &
NPID=$!; echo "$NPID" > "$RUNDIR/nginx.pid.fg"

deadline=$((SECONDS + 15))
while [ "$SECONDS" -lt "$deadline" ]; do
  kill -0 "$NPID" 2>/dev/null || { echo "nginx exited:" >&2; cat "$RUNDIR/logs/stdout.log" "$RUNDIR/logs/error.log" >&2; stop_pid "$APID"; exit 5; }
  kill -0 "$APID" 2>/dev/null || { echo "auth_http exited:" >&2; cat "$RUNDIR/logs/auth_http.log" >&2; stop_pid "$NPID"; exit 5; }
  if greet 127.0.0.1 "$IMAP_PORT" '^\* OK' && greet 127.0.0.1 "$POP3_PORT" '^\+OK' && (exec 3<>"/dev/tcp/127.0.0.1/$AUTH_PORT") 2>/dev/null; then
    echo "$NPID $APID"; exit 0
  fi
  sleep 0.1
done
echo "nginx mail proxy not ready on 127.0.0.1:$IMAP_PORT/$POP3_PORT within 15 s" >&2
cat "$RUNDIR/logs/error.log" >&2 || true
stop_pid "$NPID" "$APID"; exit 6
