#!/bin/bash
# Start an MIT Kerberos KDC (krb5kdc, Debian 12: 1.20) on 127.0.0.1, UDP and TCP, in the background:
# the reference KDC the lab's own KDC is compared with.
# Usage: start.sh PORT RUNDIR --realm REALM [--user NAME:PASSWORD]... [--service PRINC[:FLAG,...]]...
#   e.g. start.sh 18088 /tmp/k --realm EXAMPLE.TEST --user alice:secret
#          --service HTTP/web.example.test:ok_as_delegate --service exchangeMDB/mail.example.test
#   Options may come before, between or after PORT and RUNDIR (peers.rs passes RUNDIR last).
# Keys (aes256-cts-hmac-sha1-96 and aes128-cts-hmac-sha1-96, normal salt, all kvno 1) come from
# fixed passwords, so a KDC deriving the same keys shares the realm:
#   krbtgt/REALM  password krbtgt-REALM
#   users         their own password, +requires_preauth
#   services      password k-PRINC (PRINC without @REALM), FLAGs as kadmin's +FLAG
# Writes in RUNDIR: krb5.conf (client and KDC), krb5-tcp.conf (the same, client on TCP only),
#   kdc.conf, all.keytab (every service key), env.sh (. it for kinit/klist/kvno), realm, kdc.log.
# Prints the krb5kdc PID (also RUNDIR/kdc.pid). Stop: stop.sh RUNDIR. Principals of a running
#   KDC: principal.sh RUNDIR add|del|list|keytab.
# Exit 3: not installed (scripts/peers/install.sh: krb5-kdc krb5-admin-server krb5-user).
set -euo pipefail
H=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$H/../../lib/procs.sh"
usage() { sed -n 4,7p "$0" >&2; exit 2; }

POS=(); REALM=""; USERS=(); SERVICES=()
while [ $# -gt 0 ]; do
  case "$1" in
    --realm) [ $# -ge 2 ] || usage; REALM=$2; shift 2 ;;
    --user) [ $# -ge 2 ] || usage; USERS+=("$2"); shift 2 ;;
    --service) [ $# -ge 2 ] || usage; SERVICES+=("$2"); shift 2 ;;
    --*) echo "unknown option $1" >&2; usage ;;
    *) POS+=("$1"); shift ;;
  esac
done
[ ${#POS[@]} -eq 2 ] && [ -n "$REALM" ] || usage
PORT=${POS[0]}; RUNDIR=${POS[1]}
case "$PORT" in '' | *[!0-9]*) echo "bad port '$PORT'" >&2; exit 2 ;; esac
case "$REALM" in *[!A-Z0-9.-]* | .* | *.) echo "realm must be upper case, like EXAMPLE.TEST" >&2; exit 2 ;; esac
DOMAIN=${REALM,,}

command -v krb5kdc >/dev/null || PATH=$PATH:/usr/sbin
for b in krb5kdc kdb5_util kadmin.local; do
  command -v $b >/dev/null || { echo "$b missing (scripts/peers/install.sh: krb5-kdc krb5-admin-server)" >&2; exit 3; }
done

mkdir -p "$RUNDIR"
RUNDIR=$(cd "$RUNDIR" && pwd)
. "$H/lib.sh"
# every name and password checked before anything is made
for u in "${USERS[@]}"; do
  [ "${u%%:*}" != "$u" ] || { echo "--user wants NAME:PASSWORD, got '$u'" >&2; exit 2; }
  check_word "user name" "${u%%:*}" || exit 2
  check_word password "${u#*:}" || exit 2
done
for s in "${SERVICES[@]}"; do check_word service "${s%%:*}" || exit 2; done
if [ -f "$RUNDIR/kdc.pid" ] && alive "$(cat "$RUNDIR/kdc.pid")"; then
  echo "already running: pid $(cat "$RUNDIR/kdc.pid")" >&2; exit 4
fi
rm -rf "$RUNDIR/db" "$RUNDIR/all.keytab" "$RUNDIR/ccache" "$RUNDIR"/*.log
mkdir -m 700 "$RUNDIR/db"

# client_conf EXTRA: what a client of this realm needs, and nothing from /etc/krb5.conf.
# No DNS and no reverse lookups: service names are used as written.
client_conf() {
  cat <<CONF
[libdefaults]
    default_realm = $REALM
    dns_lookup_kdc = false
    dns_lookup_realm = false
    dns_canonicalize_hostname = false
    rdns = false
    forwardable = true
$1
[realms]
    $REALM = {
        kdc = 127.0.0.1:$PORT
    }
[domain_realm]
    .$DOMAIN = $REALM
    $DOMAIN = $REALM
CONF
}
client_conf "" >"$RUNDIR/krb5.conf"
client_conf "    udp_preference_limit = 1" >"$RUNDIR/krb5-tcp.conf"
cat >"$RUNDIR/kdc.conf" <<CONF
[kdcdefaults]
    kdc_listen = 127.0.0.1:$PORT
    kdc_tcp_listen = 127.0.0.1:$PORT
[realms]
    $REALM = {
        database_name = $RUNDIR/db/principal
        key_stash_file = $RUNDIR/db/stash
        acl_file = $RUNDIR/db/kadm5.acl
        master_key_type = aes256-cts-hmac-sha1-96
        supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
        max_life = 10h 0m 0s
        max_renewable_life = 7d 0h 0m 0s
    }
[logging]
    kdc = FILE:$RUNDIR/kdc.log
CONF
: >"$RUNDIR/db/kadm5.acl"
echo "$REALM" >"$RUNDIR/realm"
cat >"$RUNDIR/env.sh" <<ENV
# . this file: kinit/klist/kvno then use $REALM at 127.0.0.1:$PORT and the ccache RUNDIR/ccache
export KRB5_CONFIG=$RUNDIR/krb5.conf
export KRB5_KDC_PROFILE=$RUNDIR/kdc.conf
export KRB5CCNAME=FILE:$RUNDIR/ccache
ENV

kdb5_util create -s -r "$REALM" -P masterpw >"$RUNDIR/db/create.log" 2>&1 ||
  { cat "$RUNDIR/db/create.log" >&2; exit 5; }
# kdb5_util made a random krbtgt key; replace it by the fixed one, and reset the kvno that cpw
# raised to 2 (cpw without -keepold keeps no old key), so every key here has kvno 1. Without
# lockdown_keys its key can be exported (principal.sh keytab) and checked against the lab's.
ka "cpw -pw krbtgt-$REALM krbtgt/$REALM" >/dev/null
ka "modprinc -kvno 1 -lockdown_keys krbtgt/$REALM" >/dev/null
for u in "${USERS[@]}"; do
  ka "addprinc -pw ${u#*:} +requires_preauth ${u%%:*}" >/dev/null
done
for s in "${SERVICES[@]}"; do add_service "$s"; done

# -n: foreground, so $! is the KDC itself (stop.sh kills it by that PID)
nohup krb5kdc -n -r "$REALM" >"$RUNDIR/kdc.stdout" 2>&1 </dev/null &
PID=$!
echo "$PID" >"$RUNDIR/kdc.pid"
for _ in $(seq 1 200); do
  alive "$PID" || { echo "krb5kdc exited:" >&2; cat "$RUNDIR/kdc.stdout" "$RUNDIR/kdc.log" >&2; exit 6; }
  if grep -q 'commencing operation' "$RUNDIR/kdc.log" 2>/dev/null; then echo "$PID"; exit 0; fi
  sleep 0.05
done
echo "krb5kdc did not start within 10 s" >&2
stop_pid "$PID"
rm -f "$RUNDIR/kdc.pid"
exit 7
