# Shared by krb5/start.sh and krb5/principal.sh; source it with RUNDIR and REALM set.
# Every key is derived from a fixed password (string-to-key, normal salt), so another KDC
# that derives the same keys serves the same realm: its tickets and these keytabs mix.
command -v kadmin.local >/dev/null || PATH=$PATH:/usr/sbin
export KRB5_CONFIG=$RUNDIR/krb5.conf KRB5_KDC_PROFILE=$RUNDIR/kdc.conf

# ka QUERY: one kadmin.local query on the realm's database. kadmin.local -q exits 0 when the
# query fails (1.20), so its output is checked for the "...: <error> while <doing>" form too.
ka() {
  local out
  if ! out=$(kadmin.local -r "$REALM" -q "$1" 2>&1) || printf '%s\n' "$out" | grep -q ' while '; then
    echo "kadmin.local failed: $1" >&2
    printf '%s\n' "$out" >&2
    return 5
  fi
  printf '%s\n' "$out" | grep -v '^Authenticating as '
}

# check_word WHAT WORD: principal names, passwords and flags go into kadmin.local's command
# line, which splits on blanks; keep them plain.
check_word() {
  case "$2" in
    "" | *[[:space:]\"\'@]*) echo "bad $1 '$2' (empty, or a blank, quote or @)" >&2; return 2 ;;
  esac
}

# add_service PRINC[:FLAG[,FLAG...]]: a service principal (FLAG e.g. ok_as_delegate) with the
# key of password k-PRINC, exported to RUNDIR/all.keytab without new random keys.
add_service() {
  local princ=${1%%:*} flags="" f fl
  check_word principal "$princ" || return
  if [ "$princ" != "$1" ]; then
    IFS=, read -r -a fl <<<"${1#*:}"
    for f in "${fl[@]}"; do check_word flag "$f" || return; flags="$flags +$f"; done
  fi
  ka "addprinc -pw k-$princ$flags $princ" >/dev/null
  ka "ktadd -norandkey -k $RUNDIR/all.keytab $princ" >/dev/null
  chmod 644 "$RUNDIR/all.keytab"
}

# del_service PRINC: the principal and its keys in RUNDIR/all.keytab go.
del_service() {
  check_word principal "$1" || return
  ka "delprinc -force $1" >/dev/null
  [ ! -f "$RUNDIR/all.keytab" ] || ka "ktremove -k $RUNDIR/all.keytab $1 all" >/dev/null
}
