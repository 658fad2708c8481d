#!/bin/bash
# scripts/bench/kdc.sh [SECONDS] [OUTDIR]
#
# The Kerberos rows of BENCHMARKS.md: the lab's KDC (`harness serve --kdc`) beside MIT's
# krb5kdc 1.20 (scripts/peers/krb5/start.sh, the same realm, principals and keys), both
# driven by the same client (`harness load --target krb5://`, UDP, alice/secret):
#   kdc-as:  kinit with pre-authentication (AS-REQ, KRB-ERROR 25, AS-REQ with
#            PA-ENC-TIMESTAMP, AS-REP): two round trips per session;
#   kdc-tgs: one TGS exchange for HTTP/web.example.test per session (a TGT got once);
# at 1 and 16 clients (BENCH_CLIENTS), with each KDC's CPU time per session. Each run lasts
# SECONDS (10). Both KDCs listen on loopback and are stopped by PID. Results: OUTDIR
# (/tmp/harness-bench-kdc)/rows.md and one log per run. Without MIT's KDC (not installed:
# scripts/peers/install.sh) only the lab's rows are made.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/procs.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/bench.sh"
SECS=${1:-10}
OUT=${2:-/tmp/harness-bench-kdc}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
export PATH="$PATH:/usr/sbin:/sbin"
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
ROWS=$OUT/rows.md
: > "$ROWS"
CLIENTS=${BENCH_CLIENTS:-1 16}
HZ=$(getconf CLK_TCK)
H=$(harness_bin "$ROOT" "$OUT") || exit 2

PIDS=()
cleanup() {
  stop_pid "${PIDS[@]}" 2>/dev/null
  [ -f "$OUT/mit/kdc.pid" ] && scripts/peers/krb5/stop.sh "$OUT/mit" >/dev/null 2>&1
}
trap cleanup EXIT

"$H" serve --kdc 127.0.0.1:28088 >"$OUT/lab.log" 2>&1 &
LAB=$!; PIDS+=("$LAB")
wait_for_line "$OUT/lab.log" 'listening kdc' "$LAB" || { echo "the lab's KDC did not start" >&2; exit 1; }
MIT=
SERVICES=(--service HTTP/web.example.test:ok_as_delegate --service HTTP/plain.example.test
  --service exchangeMDB/mail.example.test)
if scripts/peers/krb5/start.sh 28089 "$OUT/mit" --realm EXAMPLE.TEST --user alice:secret \
  "${SERVICES[@]}" >"$OUT/mit-start.log" 2>&1; then
  MIT=$(cat "$OUT/mit/kdc.pid")
else
  echo "MIT's KDC did not start ($OUT/mit-start.log): only the lab's rows" >&2
fi

# run LABEL PORT SESSION CLIENTS PID: one `harness load` run, one markdown row.
run() {
  load_row "$1" "krb5://127.0.0.1:$2" "$3" "$4" "$5" --timeout 10 --user alice:secret
}

printf '\nKerberos over UDP, aes256-cts-hmac-sha1-96 (%s s per run)\n\n| KDC | session | clients | sessions | failed | sessions/s | p50 | p99 | KDC CPU µs/session | load avg |\n|---|---|---|---|---|---|---|---|---|---|\n' "$SECS" | tee -a "$ROWS"
for session in kdc-as kdc-tgs; do
  for n in $CLIENTS; do
    run harness 28088 "$session" "$n" "$LAB"
    [ -n "$MIT" ] && run "MIT krb5kdc 1.20" 28089 "$session" "$n" "$MIT"
  done
done
echo "rows: $ROWS"
