#!/bin/bash
# Installs what every peer in scripts/peers/ needs (Debian 12, as root): Dovecot, nginx with
# the mail module, perdition, Cyrus IMAP/POP3 with cyrus-sasl, Samba (samba-dcerpcd, smbd) with
# nss_wrapper, MIT Kerberos (krb5kdc, kadmin.local and the kinit/klist/kvno clients), and the
# clients the tests use (curl, python3, impacket in a venv at
# $PEERS_HOME/impacket/venv, PEERS_HOME defaulting to /tmp/harness-peers;
# scripts/peers/impacket/python prints its python). Idempotent: what is present is left alone.
#
# Cyrus's imapd/pop3d packages conflict with dovecot-imapd/dovecot-pop3d (both provide the
# virtual imap-server/pop3-server), so they are only unpacked with `dpkg -x` into
# $CYRUS_PKG (default /usr/local/lib/harness-peers/cyrus-pkg); cyrus/start.sh looks there.
#
# Usage: install.sh [EXTRA_PACKAGE...]   (extra Debian packages to install in the same
#   apt-get run; apt-get update runs once, only when something is missing)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
export PATH="$PATH:/usr/sbin:/sbin"
CYRUS_PKG=${CYRUS_PKG:-/usr/local/lib/harness-peers/cyrus-pkg}

missing=("$@")
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
command -v dovecot >/dev/null || missing+=(dovecot-imapd dovecot-pop3d)
{ command -v nginx >/dev/null && [ -f /usr/lib/nginx/modules/ngx_mail_module.so ]; } || missing+=(nginx libnginx-mod-mail)
command -v perdition.imap4 >/dev/null || missing+=(perdition)
[ -x /usr/sbin/cyrmaster ] || missing+=(cyrus-common)
command -v saslpasswd2 >/dev/null || missing+=(sasl2-bin libsasl2-modules)
[ -x /usr/libexec/samba/samba-dcerpcd ] || missing+=(samba)
[ -z "$(LD_PRELOAD=libnss_wrapper.so /bin/true 2>&1)" ] || missing+=(libnss-wrapper)
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
# tshark decodes (and, given the password, decrypts) the lab's DCE/RPC captures.
command -v tshark >/dev/null || missing+=(tshark)
# MIT Kerberos: the reference KDC (krb5/start.sh) and the client tools the Kerberos tests run.
{ command -v krb5kdc >/dev/null && command -v kadmin.local >/dev/null; } || missing+=(krb5-kdc krb5-admin-server)
{ command -v kinit >/dev/null && command -v kvno >/dev/null; } || missing+=(krb5-user)
need_cyrus_bins=
{ [ -x "$CYRUS_PKG/usr/lib/cyrus/bin/imapd" ] && [ -x "$CYRUS_PKG/usr/lib/cyrus/bin/pop3d" ]; } ||
  { [ -x /usr/lib/cyrus/bin/imapd ] && [ -x /usr/lib/cyrus/bin/pop3d ]; } || need_cyrus_bins=1

if [ "${#missing[@]}" -gt 0 ] || [ -n "$need_cyrus_bins" ]; then
  apt-get update -q
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  # The image's policy-rc.d keeps postinst scripts from starting system daemons; the peers
  # are started by their own start.sh on loopback only.
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if [ -n "$need_cyrus_bins" ]; then
  echo "unpacking cyrus-imapd cyrus-pop3d into $CYRUS_PKG"
  debs=$(mktemp -d)
  ( cd "$debs" && apt-get download cyrus-imapd cyrus-pop3d )
  mkdir -p "$CYRUS_PKG"
  for d in "$debs"/*.deb; do dpkg -x "$d" "$CYRUS_PKG"; done
  rm -rf "$debs"
fi
IMPACKET_VENV=${PEERS_HOME:-/tmp/harness-peers}/impacket/venv
if ! "$IMPACKET_VENV/bin/python" -c 'import impacket' 2>/dev/null; then
  echo "installing impacket into $IMPACKET_VENV"
  python3 -m venv "$IMPACKET_VENV"
  "$IMPACKET_VENV/bin/pip" install -q impacket==0.13.1
fi
echo "peers installed"
