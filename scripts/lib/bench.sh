#!/bin/bash
# What the bench scripts share. Source it after procs.sh, with these set: H (the harness
# binary), OUT (the output directory), SECS (seconds per run), HZ (getconf CLK_TCK), ROWS
# (the markdown file rows are added to).

# load_row LABEL URL SESSION CLIENTS PID [LOAD ARGS...]: one `harness load` run against URL,
# one markdown row: sessions, failures, rate, p50, p99, the server's (PID's tree) CPU time
# per session, and the load average.
load_row() {
  local label=$1 url=$2 session=$3 n=$4 pid=$5 log c0 c1
  shift 5
  log="$OUT/load-${label// /-}-$session-$n.log"
  c0=$(cpu_of "$pid")
  "$H" load --target "$url" --session "$session" --clients "$n" --seconds "$SECS" "$@" >"$log" 2>&1
  sleep 0.5
  c1=$(cpu_of "$pid")
  local line; line=$(grep -m1 '^[0-9]' "$log")
  read -r sessions failed secs rate p50 p50u p99 p99u max maxu <<<"$line"
  local cpu=-
  [ "${sessions:-0}" -gt 0 ] 2>/dev/null && cpu=$(((c1 - c0) * 1000000 / HZ / sessions))
  printf '| %s | %s | %s | %s | %s | %s | %s %s | %s %s | %s | %s |\n' "$label" "$session" "$n" \
    "$sessions" "$failed" "$rate" "$p50" "$p50u" "$p99" "$p99u" "$cpu" \
    "$(cut -d' ' -f1 /proc/loadavg)" | tee -a "$ROWS"
}
