#!/bin/bash
# scripts/bench/storm.sh IMAP_PORT POP3_PORT [SECONDS] [OUTDIR]
#
# Connection storms against `harness serve` (release build): for IMAP and for POP3, two
# identical storms of SECONDS (default 30) each, `harness load --session KIND --clients
# CLIENTS` (KIND from $STORM_KINDS, default connect-close; CLIENTS from $STORM_CLIENTS,
# default 64). Before the first storm and after each one (once the server has finished with
# the storm's connections, at most 10 s) it reads the server's resident memory (VmRSS) and
# open file descriptors from /proc, and its live connection tasks from the `stats:` line
# `harness serve` prints on SIGUSR1. A leak shows as RSS growing from storm 1 to storm 2,
# fds above the baseline, or live connections above 0.
#
# Prints markdown rows (also in OUTDIR, default /tmp/harness-storm, rows.md); one log per
# run. The server listens on 127.0.0.1 only and is stopped by its PID. Ports below 32768 stay
# out of Linux's ephemeral range, which the storms' client sockets churn through. A port
# already in use is an error (the storm must not hit someone else's server).
# HARNESS_BIN=path skips the release build and uses that binary.
set -uo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
IMAP_PORT=$1
POP3_PORT=$2
SECS=${3:-30}
OUT=${4:-/tmp/harness-storm}
KINDS=${STORM_KINDS:-connect-close}
CLIENTS=${STORM_CLIENTS:-64}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
ROWS=$OUT/rows.md

. "$ROOT/scripts/lib/procs.sh"
H=$(harness_bin "$ROOT" "$OUT") || exit 2
ulimit -n "$(ulimit -Hn)"

for port in "$IMAP_PORT" "$POP3_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "127.0.0.1:$port is already in use: pick free ports" >&2
    exit 2
  fi
done

SERVER=""
stop_server() { # by PID, bounded: 10 s, then SIGKILL
  [ -n "$SERVER" ] || return 0
  kill -TERM "$SERVER" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$SERVER" 2>/dev/null
  wait "$SERVER" 2>/dev/null
  SERVER=""
}
trap stop_server EXIT

"$H" serve --imap "127.0.0.1:$IMAP_PORT" --pop3 "127.0.0.1:$POP3_PORT" \
  --max-connections 4096 >"$OUT/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 100); do
  grep -q '^press Ctrl-C' "$OUT/serve.log" && break
  kill -0 "$SERVER" 2>/dev/null || break
  sleep 0.1
done
if ! grep -q '^press Ctrl-C' "$OUT/serve.log"; then
  echo "harness serve did not start:" >&2; cat "$OUT/serve.log" >&2; exit 2
fi

rss_mib() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$SERVER/status"; }
fds() { ls "/proc/$SERVER/fd" | wc -l; }
# live: the server's live connection tasks, from a fresh `stats:` line (SIGUSR1), bounded.
live() {
  local before now
  before=$(grep -c '^stats:' "$OUT/serve.log")
  kill -USR1 "$SERVER"
  for _ in $(seq 1 50); do
    now=$(grep -c '^stats:' "$OUT/serve.log")
    [ "$now" -gt "$before" ] && break
    sleep 0.1
  done
  grep '^stats:' "$OUT/serve.log" | tail -1 | awk '{for (i = 1; i < NF; i++) if ($i == "live") print $(i + 1)}'
}
# The kernel's count of connections dropped because a listen queue was full (system-wide,
# /proc/net/netstat TcpExt ListenOverflows): a storm that outpaces accept() shows here, and
# each drop costs its client a 1 s SYN retransmission (the p99 of connect-close).
listen_overflows() {
  awk '/^TcpExt:/ { if (!h) { for (i = 1; i <= NF; i++) col[$i] = i; h = 1 } else print $(col["ListenOverflows"]) }' /proc/net/netstat
}
# settle: until no connection task is live, at most 10 s
settle() {
  for _ in $(seq 1 100); do [ "$(live)" = "0" ] && return 0; sleep 0.1; done
  return 1
}
# storm LOG TARGET KIND: one `harness load` storm; prints "connections conn/s errors p99"
storm() {
  "$H" load --target "$2" --session "$3" --clients "$CLIENTS" --seconds "$SECS" >"$1" 2>&1
  awk '
    /^connections  failed/ { getline; getline; n = $1; failed = $2; rate = $4; p99 = $7 " " $8 }
    /^error kind/ { getline; kinds = 1; next }
    kinds && NF >= 2 && $2 + 0 > 0 { e = e (e ? "," : "") $1 ":" $2 }
    END { printf "%s %s %s %s\n", (n ? n : "?"), (rate ? rate : "?"), (failed == "" ? "?" : failed) (e ? "(" e ")" : ""), (p99 ? p99 : "?") }
  ' "$1"
}

{
  echo "| protocol | storm | clients | seconds | connections 1 / 2 | conn/s 1 / 2 | errors 1 / 2 | p99 1 / 2 | listen overflows | RSS before | RSS after 1 | RSS after 2 | fds before | fds after | live after |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
} | tee "$ROWS"
for proto in imap pop3; do
  port=$IMAP_PORT; [ "$proto" = pop3 ] && port=$POP3_PORT
  for kind in $KINDS; do
    settle
    rss0=$(rss_mib); fd0=$(fds); lo0=$(listen_overflows)
    read -r n1 rate1 err1 p991 p991u < <(storm "$OUT/$proto-$kind-1.log" "$proto://127.0.0.1:$port" "$kind")
    settle
    rss1=$(rss_mib)
    read -r n2 rate2 err2 p992 p992u < <(storm "$OUT/$proto-$kind-2.log" "$proto://127.0.0.1:$port" "$kind")
    settle
    rss2=$(rss_mib); fd2=$(fds); live2=$(live); lo2=$(listen_overflows)
    echo "| $proto | $kind | $CLIENTS | $SECS | $n1 / $n2 | $rate1 / $rate2 | $err1 / $err2 | $p991 $p991u / $p992 $p992u | $((lo2 - lo0)) | $rss0 MiB | $rss1 MiB | $rss2 MiB | $fd0 | $fd2 | $live2 |" | tee -a "$ROWS"
  done
done
stop_server
echo "rows: $ROWS; logs: $OUT" >&2
