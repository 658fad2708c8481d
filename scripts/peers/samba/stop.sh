#!/bin/bash
# Usage: stop.sh [RUNDIR] -- stops samba-dcerpcd and smbd started by start.sh, and their children
# (rpcd_* workers, smbd's forks), by PID: SIGTERM, then SIGKILL after 5 s.
# Waits with a zombie check rather than procs.sh's kill -0: the orphaned daemons may sit unreaped
# as zombies under a PID 1 that does not reap, and kill -0 succeeds on a zombie.
RUNDIR=${1:-${PEERS_HOME:-/tmp/harness-peers}/samba/run}
alive() { [ -e "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
kids() { # every descendant of $1, from /proc
  local p; for p in $(awk -v pp="$1" '$4==pp {print $1}' /proc/[0-9]*/stat 2>/dev/null); do echo "$p"; kids "$p"; done
}
ALL=(); MAIN=()
for f in dcerpcd smbd; do
  [ -f "$RUNDIR/$f.pid" ] || continue
  p=$(cat "$RUNDIR/$f.pid"); rm -f "$RUNDIR/$f.pid"
  alive "$p" || continue
  MAIN+=("$p"); ALL+=("$p" $(kids "$p"))
done
[ ${#MAIN[@]} -gt 0 ] || { echo "not running"; exit 0; }
kill "${MAIN[@]}" 2>/dev/null
for _ in $(seq 1 50); do
  left=(); for p in "${ALL[@]}"; do alive "$p" && left+=("$p"); done
  [ ${#left[@]} -eq 0 ] && { echo "stopped ${ALL[*]}"; exit 0; }
  sleep 0.1
done
kill -9 "${left[@]}" 2>/dev/null; echo "killed -9 ${left[*]}"
