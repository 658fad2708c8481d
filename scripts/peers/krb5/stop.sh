#!/bin/bash
# Usage: stop.sh RUNDIR -- stops the krb5kdc that start.sh started there, by PID: SIGTERM, then
# SIGKILL after 5 s.
. "$(dirname "${BASH_SOURCE[0]}")/../../lib/procs.sh"
[ $# -eq 1 ] || { sed -n 2,3p "$0" >&2; exit 2; }
RUNDIR=$1
[ -f "$RUNDIR/kdc.pid" ] || { echo "no pid file in $RUNDIR" >&2; exit 1; }
PID=$(cat "$RUNDIR/kdc.pid")
rm -f "$RUNDIR/kdc.pid"
alive "$PID" || { echo "not running"; exit 0; }
kill "$PID" 2>/dev/null
# alive, not kill -0: once start.sh has exited, the KDC's parent is PID 1, which may leave
# it a zombie for a while
for _ in $(seq 1 50); do
  alive "$PID" || { echo "stopped $PID"; exit 0; }
  sleep 0.1
done
kill -9 "$PID" 2>/dev/null
echo "killed -9 $PID"
