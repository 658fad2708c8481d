#!/usr/bin/env bash
# fuzz/run.sh SECONDS [TARGET...]
#
# Runs each cargo-fuzz target (all of `cargo fuzz list` unless named) for SECONDS with
# nightly, one at a time, each bounded by `timeout`. Seeds come from corpus/fuzz/<target>/
# (read only); units libFuzzer finds go to fuzz/out/corpus/<target>/. A crash, timeout or
# OOM artifact (fuzz/artifacts/<target>/) is minimised with `cargo fuzz tmin` into
# corpus/fuzz/<target>/crash-<hash> (which `cargo test` then replays). Prints a table:
# target, executions, exec/s, crashes; exits 1 if any target crashed, 2 on a usage or
# setup error.
#
# Build flags: debug assertions on (integer overflow panics instead of wrapping) and no
# sanitizer: harness-core has no unsafe code, and AddressSanitizer roughly halves the
# rate. FUZZ_SANITIZER=address (or memory, thread) runs with one.
#
# Comparison tracing (`-sanitizer-coverage-trace-compares`, cargo-fuzz's default) is on
# for the binary NTLM, DCE/RPC and NDR targets only, whose magic numbers and lengths it
# helps mutations find; the other targets are built with --no-trace-compares (about twice
# the executions per second, and side by side from the seeds -1 % to +22 % edges in the
# same time: their keywords come from the dictionaries, their structured choices from
# bytes that no comparison maps back to). FUZZ_TRACE_COMPARES=all or none overrides the choice;
# each kind of build has its own target directory, so switching does not rebuild.
#
# Some targets run with -use_counters=0 (`edges_only` below): libFuzzer then keeps an
# input for the edges it reaches, not for how often it runs them. In those targets hit
# counts reward repeating a command, an operation or a TOML key, which grows the corpus
# toward long inputs that reach no new code: side by side from the seeds (90 s each,
# fuzz/README.md), edges alone ran 1.4-4.7 times the executions and reached as many edges
# or 8-42 % more. The POP3 server and the two client machines (small, soon saturated)
# reached more with hit counts and keep them, as do the targets that were not compared.
# FUZZ_ARGS adds libFuzzer flags after these (the last one of a flag wins), e.g.
# FUZZ_ARGS=-use_counters=1.
set -uo pipefail

usage() {
  echo "usage: [FUZZ_TRACE_COMPARES=default|all|none] [FUZZ_SANITIZER=address] [FUZZ_ARGS=...] fuzz/run.sh SECONDS [TARGET...]" >&2
  exit 2
}
[ $# -ge 1 ] || usage
seconds=$1
shift
[[ $seconds =~ ^[0-9]+$ ]] && [ "$seconds" -gt 0 ] || usage

sanitizer=${FUZZ_SANITIZER:-none}
trace_compares=${FUZZ_TRACE_COMPARES:-default}
case $trace_compares in default | all | none) ;; *) usage ;; esac
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 2
out="$root/fuzz/out"
mkdir -p "$out"

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz/run.sh needs the nightly toolchain: rustup toolchain install nightly" >&2
  exit 2
fi
if ! command -v cargo-fuzz >/dev/null; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked || exit 2
fi

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
[ "${#targets[@]}" -gt 0 ] || { echo "no fuzz targets" >&2; exit 2; }

# Dictionaries for the text protocols (libFuzzer takes one -dict: mixed targets get both).
cat fuzz/dict/imap.dict fuzz/dict/pop3.dict > "$out/mail.dict"
dict_for() {
  case $1 in
    imap_*_to_bytes_and_back | pop3_*_to_bytes_and_back) ;;
    ntlm_message_to_bytes_and_back | dcerpc_pdu_to_bytes_and_back | rts_pdu_to_bytes_and_back) ;;
    imap_*) echo "$root/fuzz/dict/imap.dict" ;;
    pop3_*) echo "$root/fuzz/dict/pop3.dict" ;;
    frontend_* | netfuzz_*) echo "$out/mail.dict" ;;
    ntlm_*) echo "$root/fuzz/dict/ntlm.dict" ;;
    dcerpc_* | mapi_* | rts_* | rpch_*) echo "$root/fuzz/dict/dcerpc.dict" ;;
  esac
}

edges_only=(imap_command_decode imap_response_decode lab_file_decode scenario_decode
  script_decode imap_server_session frontend_session netfuzz_reply_check imap_server_ops
  pop3_server_ops frontend_pool_ops imap_command_to_bytes_and_back)

# The cargo-fuzz flags for a target (sets `flags`).
flags_for() {
  local trace=no
  case $trace_compares in
    all) trace=yes ;;
    none) trace=no ;;
    *) case $1 in ntlm_* | dcerpc_* | ndr_* | oxcrpc_* | nspi_* | emsmdb_* | mapi_* | rts_* | rpch_* | krb_* | kdc_* | kerberos_* | spnego_*) trace=yes ;; esac ;;
  esac
  flags=(-s "$sanitizer" -a)
  if [ "$trace" = yes ]; then
    flags+=(--target-dir "$root/fuzz/target/trace-compares")
  else
    flags+=(--no-trace-compares --target-dir "$root/fuzz/target/no-trace-compares")
  fi
}

echo "== building ${#targets[@]} targets (cargo +nightly fuzz build -s $sanitizer -a, trace-compares: $trace_compares)"
for t in "${targets[@]}"; do
  flags_for "$t"
  timeout 1800 cargo +nightly fuzz build "${flags[@]}" "$t" >"$out/build.log" 2>&1 || {
    echo "build of $t failed; see $out/build.log" >&2
    exit 2
  }
done

summary="${FUZZ_SUMMARY:-$out/summary.txt}"
printf '%-34s %12s %10s %8s\n' target execs exec/s crashes | tee "$summary"
crashed=0
for t in "${targets[@]}"; do
  seeds="$root/corpus/fuzz/$t"
  mkdir -p "$out/corpus/$t" "$seeds"
  # cargo-fuzz's own artifact directory (git-ignored), where tmin also writes.
  artifacts="$root/fuzz/artifacts/$t"
  rm -rf "$artifacts"
  mkdir -p "$artifacts"
  log="$out/logs/$t.log"
  mkdir -p "$out/logs"
  flags_for "$t"
  args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
  dict=$(dict_for "$t")
  [ -n "$dict" ] && args+=(-dict="$dict")
  for e in "${edges_only[@]}"; do
    [ "$e" = "$t" ] && args+=(-use_counters=0)
  done
  # Word splitting is wanted: FUZZ_ARGS is a list of flags.
  # shellcheck disable=SC2206
  args+=(${FUZZ_ARGS:-})
  # The grace period covers loading the corpus and a last slow input.
  timeout --kill-after=10 $((seconds + 120)) \
    cargo +nightly fuzz run "${flags[@]}" "$t" "$out/corpus/$t" "$seeds" -- "${args[@]}" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  # libFuzzer's status lines end with "exec/s: N rss: ...": the last one is the final rate.
  rate=$(grep -o 'exec/s: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  found=0
  for a in "$artifacts"/crash-* "$artifacts"/timeout-* "$artifacts"/oom-* "$artifacts"/leak-*; do
    [ -f "$a" ] || continue
    found=$((found + 1))
    name=$(basename "$a")
    echo "   $t: $name, minimising" >&2
    timeout 600 cargo +nightly fuzz tmin "${flags[@]}" "$t" "$a" -r 2000 >"$out/logs/$t.tmin.log" 2>&1
    small=$(ls -t "$artifacts"/minimized-from-* 2>/dev/null | head -1)
    [ -n "$small" ] || small=$a
    hash=$(sha1sum "$small" | cut -c1-16)
    cp "$small" "$seeds/crash-$hash"
    echo "   -> corpus/fuzz/$t/crash-$hash" >&2
  done
  if [ "$found" -eq 0 ] && [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]; then
    # No artifact but a failure (e.g. the run was killed): count it and keep the log.
    echo "   $t exited with $rc without an artifact; see $log" >&2
    found=1
  fi
  [ "$found" -gt 0 ] && crashed=1
  printf '%-34s %12s %10s %8s\n' "$t" "${execs:--}" "${rate:--}" "$found" | tee -a "$summary"
done
echo "seconds per target: $seconds; logs in fuzz/out/logs/, table in fuzz/out/summary.txt"
exit "$crashed"
