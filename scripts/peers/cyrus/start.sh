#!/bin/bash
# A self-contained Cyrus IMAP + POP3 (cyrmaster in the foreground, backgrounded here) on
# loopback, with cyrus-sasl's sasldb offering PLAIN LOGIN NTLM CRAM-MD5 DIGEST-MD5: the
# real server that does NTLM over IMAP and POP3 (Dovecot 2.3.19 cannot). Its NTLM is
# NTLMv1: the challenge carries no target info.
# Usage: start.sh [IMAP_PORT] [POP3_PORT] [RUNDIR]
#   defaults: 14143 14110 ${PEERS_HOME:-/tmp/harness-peers}/cyrus/run
# Needs root (cyrmaster switches to user cyrus), cyrus-common, sasl2-bin, libsasl2-modules,
# and imapd/pop3d: either installed (/usr/lib/cyrus/bin; conflicts with Dovecot's packages)
# or unpacked by scripts/peers/install.sh into $CYRUS_PKG (default
# /usr/local/lib/harness-peers/cyrus-pkg). CYRUS_BIN overrides where they are looked up.
# Users: user/pass, alice/secret, bob/hunter2 (3 messages each); admin cyrus/cyrusadmin.
# Prints the cyrmaster PID (also RUNDIR/master.pid.fg). Stop: stop.sh [RUNDIR]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../../lib/procs.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
export PATH="$PATH:/usr/sbin:/sbin"
IMAP_PORT=${1:-14143}; POP3_PORT=${2:-14110}; RUNDIR=${3:-${PEERS_HOME:-/tmp/harness-peers}/cyrus/run}
MECHS=${CYRUS_MECHS:-PLAIN LOGIN NTLM CRAM-MD5 DIGEST-MD5}
REALM=${CYRUS_REALM:-peers.test}
CYRUS_PKG=${CYRUS_PKG:-/usr/local/lib/harness-peers/cyrus-pkg}
USERS="user:pass alice:secret bob:hunter2"
if [ -z "${CYRUS_BIN:-}" ]; then
  if [ -x /usr/lib/cyrus/bin/imapd ] && [ -x /usr/lib/cyrus/bin/pop3d ]; then CYRUS_BIN=/usr/lib/cyrus/bin
  else CYRUS_BIN=$CYRUS_PKG/usr/lib/cyrus/bin; fi
fi
for b in imapd pop3d; do
  [ -x "$CYRUS_BIN/$b" ] || { echo "no $CYRUS_BIN/$b (run scripts/peers/install.sh)" >&2; exit 3; }
done
{ [ -x /usr/sbin/cyrmaster ] && [ -x /usr/lib/cyrus/bin/ctl_cyrusdb ] && command -v saslpasswd2 >/dev/null; } ||
  { echo "cyrus-common / sasl2-bin not installed (run scripts/peers/install.sh)" >&2; exit 3; }
[ "$(id -u)" = 0 ] || { echo "run as root (cyrmaster switches to user cyrus)" >&2; exit 3; }

mkdir -p "$RUNDIR"; RUNDIR=$(cd "$RUNDIR" && pwd)
if [ -f "$RUNDIR/master.pid.fg" ] && kill -0 "$(cat "$RUNDIR/master.pid.fg")" 2>/dev/null; then
  echo "already running: $(cat "$RUNDIR/master.pid.fg")" >&2; exit 4; fi
rm -rf "$RUNDIR/conf" "$RUNDIR/spool" "$RUNDIR/proc" "$RUNDIR/lock" "$RUNDIR/socket" "$RUNDIR/sasldb2"
mkdir -p "$RUNDIR/conf/socket" "$RUNDIR/spool" "$RUNDIR/proc" "$RUNDIR/lock" "$RUNDIR/socket"
# cyrmaster runs services as user cyrus: it must be able to reach RUNDIR.
chmod 755 "$RUNDIR"

cat > "$RUNDIR/imapd.conf" <<CONF
configdirectory: $RUNDIR/conf
defaultpartition: default
partition-default: $RUNDIR/spool
proc_path: $RUNDIR/proc
mboxname_lockpath: $RUNDIR/lock
lmtpsocket: $RUNDIR/socket/lmtp
idlesocket: $RUNDIR/socket/idle
notifysocket: $RUNDIR/socket/notify
servername: $REALM
admins: cyrus
allowplaintext: yes
altnamespace: no
unixhierarchysep: no
hashimapspool: false
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: $RUNDIR/sasldb2
sasl_mech_list: $MECHS
sasl_auto_transition: no
syslog_prefix: harness-cyrus-$IMAP_PORT
CONF

# Every cmd= needs its own -C, or the service reads /etc/imapd.conf.
cat > "$RUNDIR/cyrus.conf" <<CONF
START {
  recover cmd="/usr/lib/cyrus/bin/ctl_cyrusdb -C $RUNDIR/imapd.conf -r"
}
SERVICES {
  imap cmd="$CYRUS_BIN/imapd -C $RUNDIR/imapd.conf -U 30" listen="127.0.0.1:$IMAP_PORT" prefork=0 maxchild=50
  pop3 cmd="$CYRUS_BIN/pop3d -C $RUNDIR/imapd.conf -U 30" listen="127.0.0.1:$POP3_PORT" prefork=0 maxchild=50
}
EVENTS {
}
CONF

# sasldb keeps plaintext secrets, which NTLM, CRAM-MD5 and DIGEST-MD5 need.
for up in $USERS cyrus:cyrusadmin; do
  printf '%s' "${up#*:}" | saslpasswd2 -p -c -f "$RUNDIR/sasldb2" -u "$REALM" "${up%%:*}"
done
chown -R cyrus:mail "$RUNDIR"
chmod 640 "$RUNDIR/sasldb2"

nohup /usr/sbin/cyrmaster -C "$RUNDIR/imapd.conf" -M "$RUNDIR/cyrus.conf" -p "$RUNDIR/master.pid" \
  >"$RUNDIR/master.log" 2>&1 </dev/null &
PID=$!; echo "$PID" > "$RUNDIR/master.pid.fg"

deadline=$((SECONDS + 20)); ready=
while [ "$SECONDS" -lt "$deadline" ]; do
  kill -0 "$PID" 2>/dev/null || { echo "cyrmaster exited:" >&2; cat "$RUNDIR/master.log" >&2; exit 5; }
  if greet 127.0.0.1 "$IMAP_PORT" '^\* OK' 3 && greet 127.0.0.1 "$POP3_PORT" '^\+OK' 3; then ready=1; break; fi
  sleep 0.2
done
[ -n "$ready" ] || { echo "Cyrus not ready on 127.0.0.1:$IMAP_PORT/$POP3_PORT within 20 s" >&2; cat "$RUNDIR/master.log" >&2; stop_pid "$PID"; exit 6; }

names=""; for up in $USERS; do names="$names ${up%%:*}"; done
# shellcheck disable=SC2086
if ! timeout 60 python3 "$HERE/provision.py" "$IMAP_PORT" cyrus cyrusadmin $names > "$RUNDIR/provision.log" 2>&1; then
  echo "provisioning failed:" >&2; cat "$RUNDIR/provision.log" >&2; stop_pid "$PID"; exit 7
fi
echo "$PID"
