#!/bin/bash
# Changes the service principals of a realm that start.sh made, or exports keys; a running KDC sees a change
# on its next request (it reads the database per request).
# Usage: principal.sh RUNDIR add PRINC[:FLAG,...]   key from password k-PRINC, also in all.keytab
#        principal.sh RUNDIR del PRINC              principal and its all.keytab entries go
#        principal.sh RUNDIR list                   every principal, one a line, with @REALM
#        principal.sh RUNDIR keytab PRINC FILE      PRINC's current keys (users and krbtgt too) into FILE
# A client that already holds a ticket for a deleted service keeps using it from its ccache;
# only a new TGS request sees "Server not found in Kerberos database".
set -euo pipefail
[ $# -ge 2 ] || { sed -n 4,7p "$0" >&2; exit 2; }
[ -f "$1/realm" ] || { echo "$1 is not a start.sh RUNDIR (no realm file)" >&2; exit 2; }
RUNDIR=$(cd "$1" && pwd); OP=$2; shift 2
REALM=$(cat "$RUNDIR/realm")
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
case "$OP" in
  add) [ $# -eq 1 ] || exit 2; add_service "$1" ;;
  del) [ $# -eq 1 ] || exit 2; del_service "$1" ;;
  list) ka listprincs ;;
  keytab) [ $# -eq 2 ] || exit 2; check_word principal "$1"; check_word "keytab file" "$2"
    ka "ktadd -norandkey -k $2 $1" >/dev/null ;;
  *) echo "op must be add, del, list or keytab" >&2; exit 2 ;;
esac
