#!/bin/bash
# Usage: stop.sh [RUNDIR] -- SIGTERM the cyrmaster started by start.sh (it takes its
# children down), by PID; SIGKILL after 5 s.
RUNDIR=${1:-${PEERS_HOME:-/tmp/harness-peers}/cyrus/run}
[ -f "$RUNDIR/master.pid.fg" ] || { echo "no pid file" >&2; exit 1; }
P=$(cat "$RUNDIR/master.pid.fg")
kill "$P" 2>/dev/null || { echo "not running"; rm -f "$RUNDIR/master.pid.fg"; exit 0; }
for _ in $(seq 1 50); do
  kill -0 "$P" 2>/dev/null || { rm -f "$RUNDIR/master.pid.fg"; echo "stopped $P"; exit 0; }
  sleep 0.1
done
kill -9 "$P" 2>/dev/null; rm -f "$RUNDIR/master.pid.fg"; echo "killed -9 $P"
