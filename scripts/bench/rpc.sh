#!/bin/bash
# scripts/bench/rpc.sh [SECONDS] [OUTDIR]
#
# The DCE/RPC rows of BENCHMARKS.md in one run: the lab's RPC endpoint (`harness serve
# --rpc --epm`) beside Samba 4.17's (samba-dcerpcd, endpoint mapper on 127.0.0.1:135), both
# driven by the same client (`harness load --target dcerpc://`, NTLM as alice/secret):
#   1. binds/s: connect, bind with NTLM at level 6 (NEGOTIATE, CHALLENGE, AUTHENTICATE in
#      auth3), one sealed ept_map call, close (session rpc-bind-call-close);
#   2. sealed calls/s: one association per client, sealed ept_map calls back to back
#      (session rpc-calls);
#   at 1 and 16 clients (BENCH_CLIENTS), with the server's CPU time per session;
#   3. memory per idle association: BENCH_IDLE (1000) clients bind, call once and hold
#      (session rpc-hold); PSS and RSS of the server's process tree before and while held;
#   4. Outlook Anywhere (the lab's --rpch proxy in front of its --rpc endpoint): virtual
#      connections/s (both channels with HTTP NTLM, bind at level 6, NspiBind, NspiUnbind,
#      close) beside the same NspiBind/NspiUnbind session straight over TCP, at 1 and 16
#      clients, with the proxy's back-end over TCP and in process (--rpch-backend
#      in-process, a second server); memory per idle virtual connection (BENCH_IDLE held).
# Each load run lasts SECONDS (default 10). Both servers run on loopback and are stopped by
# PID. Results: OUTDIR (default /tmp/harness-bench-rpc)/rows.md and one log per run. Needs
# Samba (scripts/peers/install.sh); without it only the lab's rows are made.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/procs.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/bench.sh"
SECS=${1:-10}
OUT=${2:-/tmp/harness-bench-rpc}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
export PATH="$PATH:/usr/sbin:/sbin"
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
ROWS=$OUT/rows.md
: > "$ROWS"
CLIENTS=${BENCH_CLIENTS:-1 16}
IDLE=${BENCH_IDLE:-1000}
HZ=$(getconf CLK_TCK)
H=$(harness_bin "$ROOT" "$OUT") || exit 2
ulimit -n "$(ulimit -Hn)"

PIDS=()
cleanup() {
  stop_pid "${PIDS[@]}" 2>/dev/null
  [ -d "$OUT/samba" ] && scripts/peers/samba/stop.sh "$OUT/samba" >/dev/null 2>&1
}
trap cleanup EXIT

"$H" serve --rpc 127.0.0.1:26001 --epm 127.0.0.1:26135 --rpch 127.0.0.1:26080 \
  --max-connections 8192 \
  >"$OUT/mock.log" 2>&1 &
MOCK=$!; PIDS+=("$MOCK")
# The same proxy with its back-end in process (an in-memory pipe, no back-end socket).
"$H" serve --rpc 127.0.0.1:26002 --rpch 127.0.0.1:26081 --rpch-backend in-process \
  --max-connections 8192 \
  >"$OUT/mock-inprocess.log" 2>&1 &
MOCK2=$!; PIDS+=("$MOCK2")
wait_port 26135 || exit 1
wait_port 26080 || exit 1
wait_port 26081 || exit 1
SAMBA=
if scripts/peers/samba/start.sh 26445 "$OUT/samba" >"$OUT/samba-start.log" 2>&1; then
  SAMBA=$(cat "$OUT/samba/dcerpcd.pid")
  wait_port 135 || SAMBA=
else
  echo "Samba did not start ($OUT/samba-start.log): only the lab's rows" >&2
fi

# run LABEL PORT SESSION CLIENTS PID: one `harness load` run, one markdown row with the
# server tree's CPU time per session.
run() {
  # shellcheck disable=SC2086 # LOAD_EXTRA is a list of words
  load_row "$1" "${TARGET_SCHEME:-dcerpc}://127.0.0.1:$2" "$3" "$4" "$5" \
    --timeout 30 --user alice:secret ${LOAD_EXTRA:-}
}

printf '\nDCE/RPC, NTLM at level 6 (%s s per run)\n\n| server | session | clients | sessions | failed | sessions/s | p50 | p99 | server CPU µs/session | load avg |\n|---|---|---|---|---|---|---|---|---|---|\n' "$SECS" | tee -a "$ROWS"
for session in rpc-bind-call-close rpc-calls; do
  for n in $CLIENTS; do
    run harness 26135 "$session" "$n" "$MOCK"
    [ -n "$SAMBA" ] && run "Samba 4.17" 135 "$session" "$n" "$SAMBA"
  done
done

# hold LABEL PORT PID: memory per idle association
hold() {
  local label=$1 port=$2 pid=$3 before after holder
  sleep 1
  before=$(mem_of "$pid")
  "$H" load --target "${TARGET_SCHEME:-dcerpc}://127.0.0.1:$port" --session rpc-hold --clients "$IDLE" \
    --seconds 30 --timeout 30 --user alice:secret ${LOAD_EXTRA:-} >"$OUT/hold-$label.log" 2>&1 &
  holder=$!
  sleep 20
  after=$(mem_of "$pid")
  wait "$holder"
  local line; line=$(grep -m1 '^[0-9]' "$OUT/hold-$label.log")
  read -r held failed _ <<<"$line"
  read -r pss0 rss0 <<<"$before"; read -r pss1 rss1 <<<"$after"
  # Per association actually held (a server may time some binds out).
  local per=$((held > 0 ? held : 1))
  printf '| %s | %s | %s | %d → %d KiB | %d | %d → %d KiB | %d |\n' "$label" "$held" "$failed" \
    "$pss0" "$pss1" $(((pss1 - pss0) * 1024 / per)) "$rss0" "$rss1" $(((rss1 - rss0) * 1024 / per)) |
    tee -a "$ROWS"
}

printf '\nIdle associations (%s clients: NTLM bind at level 6, one call, then held)\n\n| server | held | failed | PSS before → while held | PSS per association (bytes) | RSS before → while held | RSS per association (bytes) |\n|---|---|---|---|---|---|---|\n' "$IDLE" | tee -a "$ROWS"
hold harness 26135 "$MOCK"
[ -n "$SAMBA" ] && hold "Samba 4.17" 135 "$SAMBA"

# Outlook Anywhere: the same NspiBind + NspiUnbind session over TCP and through the proxy.
printf '\nOutlook Anywhere: NTLM at level 6, NspiBind + NspiUnbind (%s s per run)\n\n| route | session | clients | sessions | failed | sessions/s | p50 | p99 | server CPU µs/session | load avg |\n|---|---|---|---|---|---|---|---|---|---|\n' "$SECS" | tee -a "$ROWS"
for n in ${RPCH_CLIENTS:-1 16}; do
  LOAD_EXTRA="--rpc-call nspi --rpc-domain EXAMPLE" run "TCP" 26001 rpc-bind-call-close "$n" "$MOCK"
  TARGET_SCHEME=rpch LOAD_EXTRA="--rpc-domain EXAMPLE" run "RPC over HTTP, NTLM" 26080 rpc-bind-call-close "$n" "$MOCK"
  TARGET_SCHEME=rpch LOAD_EXTRA="--rpc-domain EXAMPLE --rpch-auth basic" run "RPC over HTTP, Basic" 26080 rpc-bind-call-close "$n" "$MOCK"
  TARGET_SCHEME=rpch LOAD_EXTRA="--rpc-domain EXAMPLE" run "RPC over HTTP, NTLM, back-end in process" 26081 rpc-bind-call-close "$n" "$MOCK2"
  TARGET_SCHEME=rpch LOAD_EXTRA="--rpc-domain EXAMPLE --rpch-auth basic" run "RPC over HTTP, Basic, back-end in process" 26081 rpc-bind-call-close "$n" "$MOCK2"
done
printf '\nIdle virtual connections (%s clients: both channels, HTTP NTLM, bind at level 6, NspiBind, then held)\n\n| server | held | failed | PSS before → while held | PSS per virtual connection (bytes) | RSS before → while held | RSS per virtual connection (bytes) |\n|---|---|---|---|---|---|---|\n' "$IDLE" | tee -a "$ROWS"
TARGET_SCHEME=rpch LOAD_EXTRA="--rpc-domain EXAMPLE" hold "harness proxy + endpoint" 26080 "$MOCK"

# Virtual connections made while BENCH_IDLE others are held idle.
printf '\nWhile %s idle virtual connections are held\n\n| route | session | clients | sessions | failed | sessions/s | p50 | p99 | server CPU µs/session | load avg |\n|---|---|---|---|---|---|---|---|---|---|\n' "$IDLE" | tee -a "$ROWS"
"$H" load --target "rpch://127.0.0.1:26080" --session rpc-hold --clients "$IDLE" --seconds 40 \
  --timeout 30 --user alice:secret --rpc-domain EXAMPLE >"$OUT/hold-beside.log" 2>&1 &
holder=$!
sleep 20
TARGET_SCHEME=rpch LOAD_EXTRA="--rpc-domain EXAMPLE" run "RPC over HTTP, NTLM, beside the idle ones" 26080 rpc-bind-call-close 16 "$MOCK"
wait "$holder"
grep -m1 '^[0-9]' "$OUT/hold-beside.log" | awk '{print "(the idle ones: " $1 " held, " $2 " failed)"}' | tee -a "$ROWS"
echo "rows: $ROWS"
