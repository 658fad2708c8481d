#!/bin/bash
# scripts/bench/literal_flood.sh IMAP_PORT [CONNECTIONS] [SIZE] [OUTDIR]
#
# The literal flood of issue #14 against `harness serve`: CONNECTIONS (default 60)
# connections log in and each announce `APPEND INBOX {SIZE}` (default 16000000), send the
# literal's octets where the server sends the continuation, and leave the command
# unfinished. Reads the server's resident memory (VmRSS) before, while the connections are
# held, and 2 s after they close, for $FLOOD_ROUNDS rounds (default 2) against the same
# server, and prints a markdown row per round (also in OUTDIR, default /tmp/harness-flood,
# rows.md).
# Extra `harness serve` flags come from $FLOOD_SERVE_ARGS (e.g. "--memory-budget 67108864").
# HARNESS_BIN=path skips the release build and uses that binary. The server listens on
# 127.0.0.1 only and is stopped by its PID; a port already in use is an error.
set -uo pipefail
if [ $# -lt 1 ]; then
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
PORT=$1
N=${2:-60}
SIZE=${3:-16000000}
OUT=${4:-/tmp/harness-flood}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
. "$ROOT/scripts/lib/procs.sh"
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)

H=$(harness_bin "$ROOT" "$OUT") || exit 2
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "127.0.0.1:$PORT is already in use: pick a free port" >&2
  exit 2
fi

SERVER=""
CLIENT=""
cleanup() { [ -n "$CLIENT" ] && stop_pid "$CLIENT"; [ -n "$SERVER" ] && stop_pid "$SERVER"; }
trap cleanup EXIT
# shellcheck disable=SC2086
"$H" serve --imap "127.0.0.1:$PORT" ${FLOOD_SERVE_ARGS:-} >"$OUT/serve.log" 2>&1 &
SERVER=$!
wait_for_line "$OUT/serve.log" '^press Ctrl-C' "$SERVER" || { echo "harness serve did not start:" >&2; cat "$OUT/serve.log" >&2; exit 2; }
rss_mib() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$SERVER/status"; }

rss0=$(rss_mib)
mkfifo "$OUT/hold.fifo" 2>/dev/null || true
{
  echo "| round | connections | literal | serve flags | outcome | flood took | RSS before | RSS held | RSS 2 s after close |"
  echo "|---|---|---|---|---|---|---|---|---|"
} | tee "$OUT/rows.md"
# Two rounds: glibc's malloc raises its mmap threshold when the first round's buffers are
# freed, so the second round's buffers come from its heaps, which it keeps.
for round in $(seq 1 "${FLOOD_ROUNDS:-2}"); do
  before=$(rss_mib)
  python3 harness/lab/tests/clients/literal_flood.py 127.0.0.1 "$PORT" "$N" "$SIZE" 120 \
    <"$OUT/hold.fifo" >"$OUT/client-$round.log" 2>&1 &
  CLIENT=$!
  exec 5>"$OUT/hold.fifo"
  started=$(date +%s.%N)
  wait_for_line "$OUT/client-$round.log" '^FLOODED\|^TIMEOUT\|FAILED' "$CLIENT" 1200
  took=$(echo "$(date +%s.%N) - $started" | bc)
  sleep 1
  held=$(rss_mib)
  flooded=$(grep '^FLOODED' "$OUT/client-$round.log" | cut -d' ' -f2-)
  exec 5>&- # closing the fifo ends the client's hold: it closes its connections
  wait_for_line "$OUT/client-$round.log" '^CLOSED' "$CLIENT"
  wait "$CLIENT" 2>/dev/null; CLIENT=""
  sleep 2
  after=$(rss_mib)
  printf '| %s | %s | %s | %s | %s | %.1f s | %s MiB | %s MiB | %s MiB |\n' "$round" "$N" "$SIZE" "${FLOOD_SERVE_ARGS:-(defaults)}" "${flooded:-?}" "$took" "$before" "$held" "$after" | tee -a "$OUT/rows.md"
done
rm -f "$OUT/hold.fifo"
