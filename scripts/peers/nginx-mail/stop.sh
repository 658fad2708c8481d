#!/bin/bash
# Usage: stop.sh [RUNDIR] -- stops nginx (master PID; it takes its worker down) and
# auth_http.py by PID, waiting at most 5 s each before SIGKILL.
RUNDIR=${1:-${PEERS_HOME:-/tmp/harness-peers}/nginx-mail/run}
for f in nginx.pid.fg auth.pid; do
  [ -f "$RUNDIR/$f" ] || continue
  p=$(cat "$RUNDIR/$f")
  if kill "$p" 2>/dev/null; then
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null
  fi
  rm -f "$RUNDIR/$f"; echo "stopped $f $p"
done
