#!/bin/bash
# scripts/bench/peers.sh [SECONDS] [OUTDIR]
#
# Every side-by-side row of BENCHMARKS.md in one run on this machine:
#   1. sessions/s of the harness mock vs Dovecot (same users, same three messages per INBOX)
#      at 1, 16, 64 and 256 clients, IMAP and POP3;
#   2. front-ends in front of the same back-end (the mock): the harness front-end pooled
#      (exchange2000-sp1), per-session and session-cache, nginx mail proxy and perdition,
#      at the same client counts;
#   3. memory per idle connection (greeted, and logged in with INBOX selected) for the mock
#      and Dovecot, from the proportional set size (PSS) of the server's whole process tree;
#   4. (part `hops`) the harness front-end's hop to the mock over TLS (the mock's IMAPS and
#      POP3S, its certificate trusted from --cert-out) and across an emulated round trip,
#      each front-end a `harness serve` configured by a lab file ([[frontend]]); hops
#      BENCH_HOPS (default "plain:0 tls:0 plain:0.5 tls:0.5 plain:2 tls:2", KIND:RTT_MS, KIND
#      plain, tls or tls-full: no resumption), clients BENCH_HOP_CLIENTS (default "1 64"),
#      protocols BENCH_HOP_PROTOCOLS (default "imap pop3"), front-end profiles
#      BENCH_HOP_FRONTENDS (default "exchange2000-sp1 per-session session-cache
#      pool-unauthenticate"; the last IMAP only). The mock offers UNAUTHENTICATE (RFC 8437).
# Ports are below 32768, out of Linux's ephemeral range, which the load runs' client sockets
# fill. Each load run is `harness load` for SECONDS (default 10). Every server is started here,
# on loopback, and stopped by its PID. Results: OUTDIR (default /tmp/harness-bench)/rows.md
# and one log per run. Needs the peers (scripts/peers/install.sh) and python3.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/procs.sh"
SECS=${1:-10}
OUT=${2:-/tmp/harness-bench}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
export PATH="$PATH:/usr/sbin:/sbin"
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
ROWS=$OUT/rows.md
: > "$ROWS"
CLIENTS=${BENCH_CLIENTS:-1 16 64 256}
# Which parts to run (all by default): servers idle hops frontends
PARTS=" ${BENCH_PARTS:-servers idle hops frontends} "
part() { [[ $PARTS == *" $1 "* ]]; }
NUSERS=256
IDLE_GREETED=${BENCH_IDLE_GREETED:-1000}
IDLE_LOGGED_IN=${BENCH_IDLE_LOGGED_IN:-250}

cargo build --release -p harness >"$OUT/build.log" 2>&1 || { echo "build failed: $OUT/build.log" >&2; exit 2; }
H=$ROOT/target/release/harness
ulimit -n "$(ulimit -Hn)"

USERS=""; USER_ARGS=()
for i in $(seq 0 $((NUSERS - 1))); do USERS="$USERS u$i:secret"; USER_ARGS+=(--user "u$i:secret"); done

PIDS=()
cleanup() {
  stop_pid "${PIDS[@]}" 2>/dev/null
  [ -f "$OUT/dovecot/dovecot.pid" ] && stop_pid "$(cat "$OUT/dovecot/dovecot.pid")"
  [ -d "$OUT/nginx" ] && scripts/peers/nginx-mail/stop.sh "$OUT/nginx" >/dev/null 2>&1
  [ -d "$OUT/perdition" ] && scripts/peers/perdition/stop.sh "$OUT/perdition" >/dev/null 2>&1
}
trap cleanup EXIT



# serve NAME ARGS...: starts `harness serve` in the background, remembers its PID in $SERVED
serve() {
  local name=$1; shift
  "$H" serve "$@" "${USER_ARGS[@]}" >"$OUT/$name.log" 2>&1 &
  SERVED=$!; PIDS+=("$SERVED")
}

HZ=$(getconf CLK_TCK)

# load LABEL ROUTE PROTO PORT CLIENTS "ROUTE_PIDS" "BACKEND_PIDS": one `harness load` run,
# one markdown row. The CPU columns are the CPU time the route's processes (the server
# itself, or the front-end) and the back-end's spent during the run, per session.
load() {
  local label=$1 route=$2 proto=$3 port=$4 n=$5 route_pids=$6 backend_pids=${7:-} log
  log="$OUT/load-$label-$proto-$n.log"
  local r0 b0 r1 b1
  r0=$(cpu_of $route_pids); b0=$(cpu_of $backend_pids)
  "$H" load --target "$proto://127.0.0.1:$port" --clients "$n" --seconds "$SECS" \
    --timeout 30 --users-from-pattern 'u{i}:secret' >"$log" 2>&1
  sleep 0.5 # let per-connection processes exit and be reaped
  r1=$(cpu_of $route_pids); b1=$(cpu_of $backend_pids)
  # the result line: the first that starts with a digit
  local line; line=$(grep -m1 '^[0-9]' "$log")
  read -r sessions failed secs rate p50 p50u p99 p99u max maxu <<<"$line"
  local rcpu=- bcpu=-
  if [ "${sessions:-0}" -gt 0 ] 2>/dev/null; then
    rcpu=$(((r1 - r0) * 1000000 / HZ / sessions))
    [ -n "$backend_pids" ] && bcpu=$(((b1 - b0) * 1000000 / HZ / sessions))
  fi
  printf '| %s | %s | %s | %s | %s | %s | %s %s | %s %s | %s %s | %s | %s | %s |\n' \
    "$route" "${proto^^}" "$n" "$sessions" "$failed" "$rate" "$p50" "$p50u" "$p99" "$p99u" \
    "$max" "$maxu" "$rcpu" "$bcpu" "$(cut -d' ' -f1 /proc/loadavg)" | tee -a "$ROWS"
}

header() {
  printf '\n%s\n\n| route | protocol | clients | sessions | failed | sessions/s | p50 | p99 | max | route CPU µs/session | back-end CPU µs/session | load avg |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n' "$1" | tee -a "$ROWS"
}


# idle SERVER PID PORT N MODE: memory per idle connection
idle() {
  local server=$1 pid=$2 port=$3 n=$4 mode=$5 before after holder
  sleep 1
  before=$(mem_of "$pid")
  python3 scripts/bench/idle_holder.py 127.0.0.1 "$port" "$n" "$mode" 300 >"$OUT/idle-$server-$mode.log" 2>&1 &
  holder=$!
  for _ in $(seq 1 600); do
    grep -q '^ready\|^failed' "$OUT/idle-$server-$mode.log" && break
    kill -0 "$holder" 2>/dev/null || break
    sleep 0.1
  done
  sleep 2
  after=$(mem_of "$pid")
  local status; status=$(head -1 "$OUT/idle-$server-$mode.log")
  stop_pid "$holder"
  read -r pss0 rss0 <<<"$before"; read -r pss1 rss1 <<<"$after"
  printf '| %s | %s | %s | %s | %d → %d KiB | %d | %d → %d KiB | %d |\n' "$server" "$mode" "$n" "$status" \
    "$pss0" "$pss1" $(((pss1 - pss0) * 1024 / n)) "$rss0" "$rss1" $(((rss1 - rss0) * 1024 / n)) | tee -a "$ROWS"
}

echo "== servers: the mock vs Dovecot ($SECS s per run)"
# --unauthenticate: the pool-unauthenticate front-end of part hops resets with it (RFC 8437).
serve mock --imap 127.0.0.1:21143 --pop3 127.0.0.1:21110 --imaps 127.0.0.1:21993 \
  --pop3s 127.0.0.1:21995 --cert-out "$OUT/mock-cert.pem" --max-connections 4096 --unauthenticate
MOCK=$SERVED
wait_port 21143 && wait_port 21110 && wait_port 21993 && wait_port 21995 || exit 1
DOVECOT_BENCH=1 DOVECOT_EXTRA_USERS="$USERS" scripts/peers/dovecot/start.sh 22143 22110 "$OUT/dovecot" >/dev/null ||
  { echo "Dovecot did not start" >&2; exit 1; }
DOVECOT=$(cat "$OUT/dovecot/dovecot.pid")

part servers && header "Servers"
part servers && for proto in imap pop3; do
  for n in $CLIENTS; do
    if [ "$proto" = imap ]; then mp=21143; dp=22143; else mp=21110; dp=22110; fi
    load mock "mock" "$proto" "$mp" "$n" "$MOCK"
    load dovecot "Dovecot" "$proto" "$dp" "$n" "$DOVECOT"
  done
done

part idle && printf '\nIdle connections\n\n| server | state | connections | holder | PSS before → after | PSS per connection (bytes) | RSS before → after | RSS per connection (bytes) |\n|---|---|---|---|---|---|---|---|\n' | tee -a "$ROWS"
part idle && idle mock "$MOCK" 21143 "$IDLE_GREETED" greeted
part idle && idle Dovecot "$DOVECOT" 22143 "$IDLE_GREETED" greeted
part idle && idle mock "$MOCK" 21143 "$IDLE_LOGGED_IN" imap-login
part idle && idle Dovecot "$DOVECOT" 22143 "$IDLE_LOGGED_IN" imap-login
stop_pid "$DOVECOT"

# fe_rows NAME ROUTE PID "PROTOCOLS" "CLIENTS": the load rows of the front-end on
# 23143 (IMAP) / 23110 (POP3) that process PID serves, in front of the mock; PID is stopped
# after.
fe_rows() {
  local name=$1 route=$2 pid=$3 protos=$4 clients=$5 proto n p
  wait_port 23143 && wait_port 23110 || exit 1
  sleep 1 # let the pool fill
  for proto in $protos; do
    for n in $clients; do
      if [ "$proto" = imap ]; then p=23143; else p=23110; fi
      load "$name" "$route" "$proto" "$p" "$n" "$pid" "$MOCK"
    done
  done
  stop_pid "$pid"
}

# hop_lab FILE PROFILE KIND RTT_MS POOL: a lab file with an IMAP and a POP3 front-end
# (23143, 23110) in front of the mock over the hop KIND (plain, tls, tls-full) and RTT_MS.
hop_lab() {
  local file=$1 fe=$2 kind=$3 rtt=$4 pool=$5 proto listen plain tls
  : >"$file"
  for proto in imap pop3; do
    if [ "$proto" = imap ]; then listen=23143 plain=21143 tls=21993; else listen=23110 plain=21110 tls=21995; fi
    printf '[[frontend]]\nprotocol = "%s"\nlisten = "127.0.0.1:%s"\nprofile = "%s"\npool_size = %s\ncache_size = %s\n[frontend.backend]\nrtt_ms = %s\n' \
      "$proto" "$listen" "$fe" "$((2 * pool))" "$pool" "$rtt" >>"$file"
    case $kind in
      plain) printf 'addr = "127.0.0.1:%s"\n' "$plain" >>"$file" ;;
      tls | tls-full)
        printf 'addr = "127.0.0.1:%s"\ntls = true\ntrust = "%s"\n' "$tls" "$OUT/mock-cert.pem" >>"$file"
        [ "$kind" = tls-full ] && printf 'resumption = false\n' >>"$file" ;;
    esac
  done
}

if part hops; then
  echo "== the front-end's hop to the mock: TLS and round trips"
  header "Front-end hop to the mock (TLS to its IMAPS/POP3S, emulated RTT; lab file [[frontend]])"
  HOP_CLIENTS=${BENCH_HOP_CLIENTS:-1 64}
  hmax=0; for n in $HOP_CLIENTS; do [ "$n" -gt "$hmax" ] && hmax=$n; done
  for hop in ${BENCH_HOPS:-plain:0 tls:0 plain:0.5 tls:0.5 plain:2 tls:2}; do
    kind=${hop%%:*} rtt=${hop#*:}
    for fe in ${BENCH_HOP_FRONTENDS:-exchange2000-sp1 per-session session-cache pool-unauthenticate}; do
      hop_lab "$OUT/hop-$fe-$kind-$rtt.toml" "$fe" "$kind" "$rtt" "$hmax"
      serve "hop-$fe-$kind-$rtt" --lab "$OUT/hop-$fe-$kind-$rtt.toml" --max-connections 4096
      # POP3 through pool-unauthenticate is the SP1 pool again (no way back to AUTHORIZATION).
      protos=${BENCH_HOP_PROTOCOLS:-imap pop3}
      [ "$fe" = pool-unauthenticate ] && protos=imap
      fe_rows "hop-$fe-$kind-$rtt" "$fe, $kind hop, RTT $rtt ms" "$SERVED" "$protos" "$HOP_CLIENTS"
    done
  done
fi

part frontends || exit 0
echo "== front-ends in front of the mock"
header "Front-ends (back-end: the mock on 21143/21110)"
maxn=0; for n in $CLIENTS; do [ "$n" -gt "$maxn" ] && maxn=$n; done
for fe in exchange2000-sp1 per-session session-cache; do
  serve "fe-$fe" --fe-imap 127.0.0.1:23143 --fe-pop3 127.0.0.1:23110 \
    --fe-backend-imap 127.0.0.1:21143 --fe-backend-pop3 127.0.0.1:21110 \
    --frontend "$fe" --fe-pool-size "$maxn" --fe-cache-size "$maxn" --max-connections 4096
  fe_rows "fe-$fe" "harness front-end, $fe" "$SERVED" "imap pop3" "$CLIENTS"
done

NGINX_WORKERS=$(nproc) NGINX_WORKER_CONNECTIONS=4096 AUTH_HTTP_EXTRA_USERS="$USERS" \
  scripts/peers/nginx-mail/start.sh 24143 24110 21143 21110 24080 "$OUT/nginx" >/dev/null ||
  { echo "nginx mail proxy did not start" >&2; exit 1; }
for proto in imap pop3; do
  for n in $CLIENTS; do
    if [ "$proto" = imap ]; then p=24143; else p=24110; fi
    load nginx "nginx mail proxy (+ auth_http.py)" "$proto" "$p" "$n" "$(cat "$OUT/nginx/nginx.pid.fg") $(cat "$OUT/nginx/auth.pid")" "$MOCK"
  done
done
scripts/peers/nginx-mail/stop.sh "$OUT/nginx" >/dev/null 2>&1

scripts/peers/perdition/start.sh 25143 25110 21143 21110 "$OUT/perdition" >/dev/null ||
  { echo "perdition did not start" >&2; exit 1; }
for proto in imap pop3; do
  for n in $CLIENTS; do
    if [ "$proto" = imap ]; then p=25143; else p=25110; fi
    load perdition "perdition" "$proto" "$p" "$n" "$(cat "$OUT/perdition/imap.pid.fg") $(cat "$OUT/perdition/pop3.pid.fg")" "$MOCK"
  done
done
scripts/peers/perdition/stop.sh "$OUT/perdition" >/dev/null 2>&1

echo "rows in $ROWS"
