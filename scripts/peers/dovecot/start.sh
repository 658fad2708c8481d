#!/bin/bash
# Start a self-contained Dovecot (the harness's reference peer) (IMAP+POP3) on loopback, non-daemon (-F), in the background.
# Usage: start.sh [IMAP_PORT] [POP3_PORT] [RUNDIR] [AUTH_MECHS]
#   defaults: 11143 11110 ${PEERS_HOME:-/tmp/harness-peers}/dovecot/run "plain login"
# Prints the dovecot master PID on stdout (also written to RUNDIR/dovecot.pid).
# Users (passwd-file RUNDIR/users): user/pass, alice/secret and bob/hunter2 (the harness default lab); each INBOX has 3 messages.
# DOVECOT_EXTRA_USERS="u0:secret u1:secret ..." adds more users the same way (e.g. one per POP3 load client).
# DOVECOT_BENCH=1 configures it for load runs instead of conformance: no auth debug logging,
# login processes in Dovecot's high-performance mode (service_count = 0, one per core, each
# serving many connections), and process/client limits raised for hundreds of connections.
# DOVECOT_NO_AUTH_DELAY=1 answers failed logins at once, for network fuzzing: no
# auth_failure_delay (2 s by default) and no penalty for an address that keeps failing (up
# to 15 s more; off when auth cannot reach anvil's penalty socket, so auth logs one Error
# line about it at start).
# Stop:  kill "$(cat RUNDIR/dovecot.pid)"   (master takes its children down)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../../lib/procs.sh"
IMAP_PORT=${1:-11143}
POP3_PORT=${2:-11110}
RUNDIR=${3:-${PEERS_HOME:-/tmp/harness-peers}/dovecot/run}
MECHS=${4:-plain login}
ADDR=${DOVECOT_ADDR:-127.0.0.1}
case "$ADDR" in 127.*) ;; *) echo "refusing non-loopback address $ADDR" >&2; exit 2;; esac

command -v dovecot >/dev/null || { echo "dovecot not installed (apt-get install dovecot-imapd dovecot-pop3d)" >&2; exit 3; }

mkdir -p "$RUNDIR"
RUNDIR=$(cd "$RUNDIR" && pwd)
chmod 755 "$RUNDIR"
if [ -f "$RUNDIR/dovecot.pid" ] && kill -0 "$(cat "$RUNDIR/dovecot.pid")" 2>/dev/null; then
  echo "already running: pid $(cat "$RUNDIR/dovecot.pid")" >&2; exit 4
fi
rm -rf "$RUNDIR/base" "$RUNDIR/state" "$RUNDIR/home"
mkdir -p "$RUNDIR/base" "$RUNDIR/state" "$RUNDIR/home"

if [ "$(id -u)" = 0 ]; then
  # root: master runs as root, mail processes as nobody, login as dovenull, internals as dovecot
  MUID=$(id -u nobody); MGID=$(id -g nobody)
  LOGIN_USER=dovenull; INTERNAL_USER=dovecot
else
  # non-root: everything runs as the invoking user
  MUID=$(id -u); MGID=$(id -g)
  LOGIN_USER=$(id -un); INTERNAL_USER=$(id -un)
fi

# passwd-file: user:{SCHEME}password:uid:gid::home::extra
: > "$RUNDIR/users"
for up in user:pass alice:secret bob:hunter2 ${DOVECOT_EXTRA_USERS:-}; do
  u=${up%%:*}; p=${up#*:}
  echo "$u:{PLAIN}$p:$MUID:$MGID::$RUNDIR/home/$u::" >> "$RUNDIR/users"
  md="$RUNDIR/home/$u/Maildir"
  mkdir -p "$md/cur" "$md/new" "$md/tmp"
  for i in 1 2 3; do
    printf 'Return-Path: <sender@example.test>\r\nFrom: Sender <sender@example.test>\r\nTo: %s@example.test\r\nSubject: Test message %d\r\nDate: Mon, 1 Jan 2024 00:00:0%d +0000\r\nMessage-ID: <msg%d.%s@example.test>\r\n\r\nHello %s, this is message number %d.\r\nSecond line.\r\n' \
      "$u" "$i" "$i" "$i" "$u" "$u" "$i" > "$md/cur/170406720$i.M${i}P1.peers:2,"
  done
done
chown -R "$MUID:$MGID" "$RUNDIR/home"
chmod 644 "$RUNDIR/users"

if [ -n "${DOVECOT_BENCH:-}" ]; then
  DEBUG=no
  LIMITS="default_process_limit = 1200
default_client_limit = 8000
default_vsz_limit = 512M"
  LOGIN_MODE="service_count = 0
  process_min_avail = $(nproc)
  client_limit = 4000"
else
  DEBUG=yes; LIMITS=""; LOGIN_MODE=""
fi
AUTH_DELAY=""
if [ -n "${DOVECOT_NO_AUTH_DELAY:-}" ]; then
  AUTH_DELAY="auth_failure_delay = 0
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}"
fi

cat > "$RUNDIR/dovecot.conf" <<CONF
# self-contained: nothing from /etc/dovecot is included
instance_name = peers-dovecot-$IMAP_PORT
base_dir = $RUNDIR/base
state_dir = $RUNDIR/state
log_path = $RUNDIR/dovecot.log
info_log_path = $RUNDIR/dovecot.log
debug_log_path = $RUNDIR/dovecot.log
protocols = imap pop3
listen = $ADDR
ssl = no
disable_plaintext_auth = no
auth_mechanisms = $MECHS
auth_verbose = $DEBUG
auth_debug = $DEBUG
auth_debug_passwords = $DEBUG
$LIMITS
$AUTH_DELAY
verbose_proctitle = yes
default_login_user = $LOGIN_USER
default_internal_user = $INTERNAL_USER
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:~/Maildir
pop3_uidl_format = %08Xu%08Xv
passdb {
  driver = passwd-file
  args = username_format=%u $RUNDIR/users
}
userdb {
  driver = passwd-file
  args = username_format=%u $RUNDIR/users
}
service imap-login {
  $LOGIN_MODE
  inet_listener imap {
    address = $ADDR
    port = $IMAP_PORT
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  $LOGIN_MODE
  inet_listener pop3 {
    address = $ADDR
    port = $POP3_PORT
  }
  inet_listener pop3s {
    port = 0
  }
}
# no stats/doveadm/lmtp network listeners
service doveadm {
  inet_listener {
    port = 0
  }
}
CONF

: > "$RUNDIR/dovecot.log"
# -F: foreground (non-daemon); backgrounded by us so we know the master PID
nohup dovecot -F -c "$RUNDIR/dovecot.conf" >> "$RUNDIR/dovecot.stdout" 2>&1 < /dev/null &
PID=$!
echo "$PID" > "$RUNDIR/dovecot.pid"

# wait (bounded: 15 s wall clock) for both greetings
deadline=$((SECONDS + 15))
while [ "$SECONDS" -lt "$deadline" ]; do
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "dovecot exited early; log:" >&2; cat "$RUNDIR/dovecot.stdout" "$RUNDIR/dovecot.log" >&2; exit 5
  fi
  if grep -q 'Fatal:' "$RUNDIR/dovecot.log" 2>/dev/null; then
    echo "dovecot logged a Fatal error:" >&2; grep 'Fatal:' "$RUNDIR/dovecot.log" >&2
    stop_pid "$PID"; exit 5
  fi
  # ready = both login services send their greeting (sent only once auth is up)
  if greet "$ADDR" "$IMAP_PORT" '^\* OK' && greet "$ADDR" "$POP3_PORT" '^\+OK'; then
    sleep 0.2
    if grep -q 'Fatal:' "$RUNDIR/dovecot.log"; then
      echo "dovecot logged a Fatal error:" >&2; grep 'Fatal:' "$RUNDIR/dovecot.log" >&2
      stop_pid "$PID"; exit 5
    fi
    echo "$PID"; exit 0
  fi
  sleep 0.1
done
echo "dovecot did not open $ADDR:$IMAP_PORT/$POP3_PORT within 15 s" >&2
stop_pid "$PID"
exit 6
