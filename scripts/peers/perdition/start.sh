#!/bin/bash
# perdition's IMAP4 and POP3 proxies on loopback in front of a back-end (the Dovecot peer):
# no TLS, no user map (every user goes to the one back-end). perdition speaks LOGIN and
# USER/PASS only, no SASL at all. (`perdition --help` crashes; see the man page.)
# Usage: start.sh [IMAP_PORT] [POP3_PORT] [BACKEND_IMAP] [BACKEND_POP3] [RUNDIR]
#   defaults: 13143 13110 11143 11110 ${PEERS_HOME:-/tmp/harness-peers}/perdition/run
# Prints "IMAP_PID POP3_PID" (also RUNDIR/imap.pid.fg, RUNDIR/pop3.pid.fg). Stop: stop.sh [RUNDIR]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../../lib/procs.sh"
export PATH="$PATH:/usr/sbin:/sbin"
IMAP_PORT=${1:-13143}; POP3_PORT=${2:-13110}; B_IMAP=${3:-11143}; B_POP3=${4:-11110}
RUNDIR=${5:-${PEERS_HOME:-/tmp/harness-peers}/perdition/run}
command -v perdition.imap4 >/dev/null && command -v perdition.pop3 >/dev/null ||
  { echo "perdition not installed (scripts/peers/install.sh, or apt-get install perdition)" >&2; exit 3; }
mkdir -p "$RUNDIR"; RUNDIR=$(cd "$RUNDIR" && pwd)
for f in imap.pid.fg pop3.pid.fg; do
  if [ -f "$RUNDIR/$f" ] && kill -0 "$(cat "$RUNDIR/$f")" 2>/dev/null; then
    echo "already running: $f $(cat "$RUNDIR/$f")" >&2; exit 4; fi
done
: > "$RUNDIR/empty.conf"   # -f: do not read /etc/perdition/perdition*.conf
# -M '': no map library; -b: bind 127.0.0.1 only; logs go to syslog (absent here).
nohup perdition.imap4 --no_daemon -f "$RUNDIR/empty.conf" -M '' -b 127.0.0.1 -l "$IMAP_PORT" \
  -s 127.0.0.1 -p "$B_IMAP" --ssl_mode none --pid_file "$RUNDIR/imap.pid" >"$RUNDIR/imap.log" 2>&1 </dev/null &
IPID=$!; echo "$IPID" > "$RUNDIR/imap.pid.fg"
nohup perdition.pop3 --no_daemon -f "$RUNDIR/empty.conf" -M '' -b 127.0.0.1 -l "$POP3_PORT" \
  -s 127.0.0.1 -p "$B_POP3" --ssl_mode none --pid_file "$RUNDIR/pop3.pid" >"$RUNDIR/pop3.log" 2>&1 </dev/null &
PPID_=$!; echo "$PPID_" > "$RUNDIR/pop3.pid.fg"

deadline=$((SECONDS + 15))
while [ "$SECONDS" -lt "$deadline" ]; do
  for p in $IPID $PPID_; do
    kill -0 "$p" 2>/dev/null || { echo "perdition $p exited:" >&2; cat "$RUNDIR"/*.log >&2; stop_pid $IPID $PPID_; exit 5; }
  done
  if greet 127.0.0.1 "$IMAP_PORT" '^\* OK' && greet 127.0.0.1 "$POP3_PORT" '^\+OK'; then echo "$IPID $PPID_"; exit 0; fi
  sleep 0.1
done
echo "perdition not ready on 127.0.0.1:$IMAP_PORT/$POP3_PORT within 15 s" >&2
stop_pid $IPID $PPID_; exit 6
