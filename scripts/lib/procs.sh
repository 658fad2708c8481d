# Process helpers the peer and bench scripts share. Source it:
#   . "$(dirname "${BASH_SOURCE[0]}")/../lib/procs.sh"   (adjust the ../ to the script's depth)
# Every wait is bounded: a process gets 5 s after SIGTERM, then SIGKILL.

# stop_pid PID... : stops each process by PID, bounded.
stop_pid() {
  local p
  for p in "$@"; do
    kill "$p" 2>/dev/null || continue
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
}

# alive PID : the process exists and is not a zombie. An orphaned daemon may stay a zombie
# under a PID 1 that does not reap, and kill -0 succeeds on a zombie.
alive() {
  [ -n "$1" ] && [ -e "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

# stop_pidfiles DIR FILE... : stops the process whose PID each DIR/FILE holds, removes the
# file, and says so.
stop_pidfiles() {
  local dir=$1 f p
  shift
  for f in "$@"; do
    [ -f "$dir/$f" ] || continue
    p=$(cat "$dir/$f")
    stop_pid "$p"
    rm -f "$dir/$f"
    echo "stopped $f $p"
  done
}

# greet HOST PORT REGEX [SECONDS] : connects, reads the first line within SECONDS (2), and
# matches it against REGEX.
greet() {
  timeout "${4:-2}" bash -c 'exec 3<>"/dev/tcp/$0/$1" || exit 1; IFS= read -r l <&3; printf "%s\n" "$l" | grep -Eq "$2"' "$1" "$2" "$3" 2>/dev/null
}

# harness_bin ROOT OUT : prints the harness binary to use: $HARNESS_BIN when set, else a
# release build of ROOT (its log in OUT/build.log). Fails when there is none.
harness_bin() {
  local root=$1 out=$2 h
  if [ -n "${HARNESS_BIN:-}" ]; then
    h=$HARNESS_BIN
  else
    (cd "$root" && cargo build --release -p harness) >"$out/build.log" 2>&1 || { echo "build failed: $out/build.log" >&2; return 2; }
    h=${CARGO_TARGET_DIR:-$root/target}/release/harness
  fi
  [ -x "$h" ] || { echo "no harness binary at $h" >&2; return 2; }
  echo "$h"
}

# wait_for_line FILE REGEX PID [TENTHS] : until FILE has a line matching REGEX, PID has
# exited, or TENTHS tenths of a second (100) have passed; fails unless the line came.
wait_for_line() {
  local i
  for i in $(seq 1 "${4:-100}"); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || break
    sleep 0.1
  done
  grep -q "$2" "$1" 2>/dev/null
}

# wait_port PORT: until 127.0.0.1:PORT accepts, at most 10 s.
wait_port() {
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listening on 127.0.0.1:$1 after 10 s" >&2; return 1
}

# Process tree of PID (itself and every descendant).
tree() {
  local p=$1 c
  echo "$p"
  for c in $(pgrep -P "$p"); do tree "$c"; done
}

# CPU time in clock ticks of the process trees of the given PIDs, including the reaped
# children (cutime, cstime: perdition and Dovecot fork a process per connection).
cpu_of() {
  local total=0 root p v
  for root in "$@"; do
    for p in $(tree "$root"); do
      # fields after the command name: utime stime cutime cstime are 12-15
      v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13 + $14 + $15}')
      total=$((total + ${v:-0}))
    done
  done
  echo "$total"
}

# "PSS_KIB RSS_KIB" summed over the tree of PID
mem_of() {
  local pss=0 rss=0 p v
  for p in $(tree "$1"); do
    v=$(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null); pss=$((pss + ${v:-0}))
    v=$(awk '/^Rss:/{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null); rss=$((rss + ${v:-0}))
  done
  echo "$pss $rss"
}
