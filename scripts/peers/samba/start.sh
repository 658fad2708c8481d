#!/bin/bash
# Start Samba 4.17 (Debian 12) as a standalone DCE/RPC + SMB server on loopback, in the background:
#   samba-dcerpcd (endpoint mapper on 127.0.0.1:135, ncacn_ip_tcp endpoints in RPC_PORT_RANGE, NTLM up to
#   level 6 = packet privacy) and smbd on SMB_PORT (ncacn_np over SMB2/3, the fallback transport).
# Usage: start.sh SMB_PORT [RUNDIR] [RPC_PORT_RANGE]
#   defaults: RUNDIR ${PEERS_HOME:-/tmp/harness-peers}/samba/run, RPC_PORT_RANGE 15100-15199
#   Listens on 127.0.0.1 only. One instance per machine: the endpoint mapper port 135 is fixed, and
#   Samba binds only addresses that exist on an interface (127.0.0.2 -> "No sockets available").
#   SAMBA_LOG_LEVEL=10 for a debug log in RUNDIR/log.
# Prints "DCERPCD_PID SMBD_PID" (also RUNDIR/dcerpcd.pid, RUNDIR/smbd.pid). Stop: stop.sh RUNDIR.
# Users (domain = netbios name SAMBAPEER, or empty): alice/secret, user/pass. They exist only for
#   Samba: nss_wrapper (LD_PRELOAD) gives them Unix ids from RUNDIR/passwd, /etc/passwd is untouched.
# Endpoints: port numbers in the range are handed out at start (not stable): ask the endpoint mapper
#   (ept_map) or read RUNDIR/endpoints.txt (written when the impacket venv exists). Seen here:
#   srvsvc+wkssvc share one port, lsarpc+samr another, winreg a third.
# Works over ncacn_ip_tcp at level 6: srvsvc NetrServerGetInfo/NetrRemoteTOD, samr SamrConnect/
#   EnumerateDomains. LSA OpenPolicy2 over TCP is refused by Samba (fault access_denied) on a
#   non-DC; use it over ncacn_np. ept_lookup returns ept_s_not_registered (empty list); ept_map works.
#   A wrong password passes bind/auth3; the first request then gets fault nca_s_proto_error.
# Share "share" (read-only RUNDIR/share) has a 3000-character comment, for replies over several
#   fragments.
# Exit 3: not installed (scripts/peers/install.sh installs samba and libnss-wrapper).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../../lib/procs.sh"
[ $# -ge 1 ] || { sed -n 2,9p "$0" >&2; exit 2; }
SMB_PORT=$1
RUNDIR=${2:-${PEERS_HOME:-/tmp/harness-peers}/samba/run}
RANGE=${3:-15100-15199}
ADDR=127.0.0.1
LIBEXEC=/usr/libexec/samba
command -v smbd >/dev/null || PATH=$PATH:/usr/sbin
for b in smbd smbpasswd "$LIBEXEC/samba-dcerpcd"; do
  command -v "$b" >/dev/null || { echo "$b missing (scripts/peers/install.sh: samba libnss-wrapper)" >&2; exit 3; }
done
[ -z "$(LD_PRELOAD=libnss_wrapper.so /bin/true 2>&1)" ] || { echo "libnss_wrapper.so missing (scripts/peers/install.sh: libnss-wrapper)" >&2; exit 3; }
[ "$(id -u)" = 0 ] || { echo "samba start.sh needs root (port 135, smbd)" >&2; exit 3; }

mkdir -p "$RUNDIR"
RUNDIR=$(cd "$RUNDIR" && pwd)
# Alive and not a zombie (a zombie still answers kill -0).
alive() { [ -n "$1" ] && [ -e "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
for f in dcerpcd smbd; do
  if [ -f "$RUNDIR/$f.pid" ] && alive "$(cat "$RUNDIR/$f.pid")"; then echo "already running: $f pid $(cat "$RUNDIR/$f.pid")" >&2; exit 4; fi
done
listening() { ss -ltnH "sport = :$1" | grep "$ADDR:$1\b" >/dev/null; }
listening 135 && { echo "$ADDR:135 is taken (another samba-dcerpcd?)" >&2; exit 4; }
listening "$SMB_PORT" && { echo "$ADDR:$SMB_PORT is taken" >&2; exit 4; }

DIRS=(private lock state cache pid ncalrpc log rpcd)
for d in "${DIRS[@]}"; do rm -rf "${RUNDIR:?}/$d"; mkdir -p "$RUNDIR/$d"; done
mkdir -p "$RUNDIR/share"
chmod 700 "$RUNDIR/private"
echo "hello from samba" > "$RUNDIR/share/hello.txt"

# nss_wrapper databases: only these users exist for the Samba processes
{ getent passwd root nobody; echo "alice:x:40001:40001:alice:$RUNDIR:/bin/false"; echo "user:x:40002:40002:user:$RUNDIR:/bin/false"; } > "$RUNDIR/passwd"
{ getent group root nogroup; echo "alice:x:40001:"; echo "user:x:40002:"; } > "$RUNDIR/group"
export LD_PRELOAD=libnss_wrapper.so NSS_WRAPPER_PASSWD=$RUNDIR/passwd NSS_WRAPPER_GROUP=$RUNDIR/group

# "0123456789" 300 times: srvsvc NetrShareGetInfo(share, level 1) then answers with 6 KB of
# UTF-16, more than one response fragment.
LONG_COMMENT=$(printf '0123456789%.0s' $(seq 1 300))
cat > "$RUNDIR/smb.conf" <<CONF
# self-contained: nothing from /etc/samba is read
[global]
  server role = standalone server
  workgroup = LAB
  netbios name = SAMBAPEER
  interfaces = $ADDR
  bind interfaces only = yes
  smb ports = $SMB_PORT
  disable netbios = yes
  server min protocol = SMB2
  ntlm auth = ntlmv2-only
  # samba-dcerpcd runs as a daemon (started below), not on demand from smbd
  rpc start on demand helpers = no
  rpc server dynamic port range = $RANGE
  private dir = $RUNDIR/private
  lock directory = $RUNDIR/lock
  state directory = $RUNDIR/state
  cache directory = $RUNDIR/cache
  pid directory = $RUNDIR/pid
  ncalrpc dir = $RUNDIR/ncalrpc
  log file = $RUNDIR/log/samba.log
  log level = ${SAMBA_LOG_LEVEL:-1}
  max log size = 10000
  passdb backend = tdbsam:$RUNDIR/private/passdb.tdb
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
[share]
  path = $RUNDIR/share
  read only = yes
  comment = $LONG_COMMENT
CONF
for up in alice:secret user:pass; do
  printf '%s\n%s\n' "${up#*:}" "${up#*:}" | smbpasswd -c "$RUNDIR/smb.conf" -s -a "${up%%:*}" >>"$RUNDIR/log/smbpasswd.out" 2>&1
done
# rpcd_* workers otherwise log to the compiled-in log dir; these wrappers add -l RUNDIR/log.
# rpcd_classic (srvsvc, wkssvc, ...) needs rpcd_winreg at start (svcctl reads the registry).
RPCDS=()
for r in epmapper classic lsad winreg; do
  printf '#!/bin/sh\nexec %s/rpcd_%s -l %s/log "$@"\n' "$LIBEXEC" "$r" "$RUNDIR" > "$RUNDIR/rpcd/rpcd_$r"
  chmod 755 "$RUNDIR/rpcd/rpcd_$r"; RPCDS+=("$RUNDIR/rpcd/rpcd_$r")
done

# -F: foreground, backgrounded by us so $! is the daemon (setsid execs in place here). Not
# --no-process-group: smbd then signals its whole process group on exit (kill(0, SIGTERM)),
# which killed the caller of stop.sh. smbd makes its own session; samba-dcerpcd gets one from setsid.
nohup setsid "$LIBEXEC/samba-dcerpcd" -F -s "$RUNDIR/smb.conf" -l "$RUNDIR/log" "${RPCDS[@]}" \
  >"$RUNDIR/log/dcerpcd.stdout" 2>&1 </dev/null &
DPID=$!; echo "$DPID" > "$RUNDIR/dcerpcd.pid"
nohup smbd -F -s "$RUNDIR/smb.conf" -l "$RUNDIR/log" >"$RUNDIR/log/smbd.stdout" 2>&1 </dev/null &
SPID=$!; echo "$SPID" > "$RUNDIR/smbd.pid"
unset LD_PRELOAD

# ready (bounded: 20 s) = 135, SMB_PORT and at least 3 ports of the range listen
deadline=$((SECONDS + 20))
while [ "$SECONDS" -lt "$deadline" ]; do
  for p in "$DPID" "$SPID"; do
    alive "$p" || { echo "samba process $p exited; logs:" >&2; tail -n 20 "$RUNDIR"/log/*.stdout "$RUNDIR"/log/log.* >&2 || true; "$(dirname "$0")/stop.sh" "$RUNDIR" >/dev/null 2>&1; exit 5; }
  done
  n=$(ss -ltnH | awk -v a="$ADDR" -v lo="${RANGE%-*}" -v hi="${RANGE#*-}" '{split($4,x,":"); if (x[1]==a && x[2]>=lo && x[2]<=hi) c++} END {print c+0}')
  if listening 135 && listening "$SMB_PORT" && [ "$n" -ge 3 ]; then
    V=$("$(dirname "$0")/../impacket/python" 2>/dev/null || true)
    if [ -n "$V" ]; then
      timeout 20 "$V" - "$ADDR" > "$RUNDIR/endpoints.txt" 2>&1 <<'PY' || true
import sys
from impacket.dcerpc.v5 import epm
from impacket.uuid import uuidtup_to_bin
for name, u, v in [("srvsvc", "4b324fc8-1670-01d3-1278-5a47bf6ee188", "3.0"), ("wkssvc", "6bffd098-a112-3610-9833-46c3f87e345a", "1.0"),
                   ("samr", "12345778-1234-abcd-ef00-0123456789ac", "1.0"), ("lsarpc", "12345778-1234-abcd-ef00-0123456789ab", "0.0"),
                   ("winreg", "338cd001-2244-31f1-aaaa-900038001003", "1.0")]:
    print(name, u, v, epm.hept_map(sys.argv[1], uuidtup_to_bin((u, v)), protocol="ncacn_ip_tcp"))
PY
    fi
    echo "$DPID $SPID"; exit 0
  fi
  sleep 0.1
done
echo "samba did not open $ADDR:135/$SMB_PORT and 3 RPC ports within 20 s" >&2
"$(dirname "$0")/stop.sh" "$RUNDIR" >/dev/null 2>&1; exit 6
