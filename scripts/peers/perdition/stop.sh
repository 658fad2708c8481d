#!/bin/bash
# Usage: stop.sh [RUNDIR] -- stops both perdition proxies by PID (5 s each, then SIGKILL).
RUNDIR=${1:-${PEERS_HOME:-/tmp/harness-peers}/perdition/run}
for f in imap.pid.fg pop3.pid.fg; do
  [ -f "$RUNDIR/$f" ] || continue
  p=$(cat "$RUNDIR/$f")
  if kill "$p" 2>/dev/null; then
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null
  fi
  rm -f "$RUNDIR/$f"; echo "stopped $f $p"
done
