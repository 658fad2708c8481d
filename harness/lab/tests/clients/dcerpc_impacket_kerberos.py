#!/usr/bin/env python3
"""impacket binding the lab's Exchange RPC listener with Kerberos (auth_type 9,
RPC_C_AUTHN_GSS_NEGOTIATE: impacket's only Kerberos type) and tickets from the lab's KDC.

Usage: dcerpc_impacket_kerberos.py RPC_PORT KDC_PORT USER PASSWORD REALM TICKETS_JSON
TICKETS_JSON maps a service principal to {"tgs_rep": hex, "etype": n, "key": hex}: the
lab KDC's TGS-REP and its session key, fetched by the Rust test. impacket's own TGS-REQ
carries no authenticator checksum, which the lab's KDC refuses (KRB_AP_ERR_INAPP_CKSUM;
reported as the "tgs_req" check); the AP-REQ, the RPC legs and the per-message tokens
are all impacket's own.

Prints one JSON object per check on stdout; the Rust test decides what is right.

impacket sends its KDC requests to port 88 always (kerberosv5.sendReceive has no other
port); the lab's KDC listens on an ephemeral port, so sendReceive is pointed at it."""
import json
import sys

from impacket.krb5 import constants, kerberosv5
from impacket.krb5.crypto import Key, _enctype_table
from impacket.krb5.types import Principal

rpc_port, kdc_port = int(sys.argv[1]), int(sys.argv[2])
user, password, realm = sys.argv[3], sys.argv[4], sys.argv[5]
with open(sys.argv[6]) as f:
    TICKETS = json.load(f)
KDC = "127.0.0.1"
TIMEOUT = 10

_send = kerberosv5.sendReceive


def send_to_lab_kdc(data, host, kdcHost, port=88):
    return _send(data, host, kdcHost, kdc_port)


kerberosv5.sendReceive = send_to_lab_kdc

from impacket.dcerpc.v5 import nspi, oxabref, transport  # noqa: E402
from impacket.dcerpc.v5.rpcrt import RPC_C_AUTHN_GSS_NEGOTIATE, DCERPCException  # noqa: E402

PR_DISPLAY_NAME = 0x3001001F
PR_EMAIL_ADDRESS = 0x3003001F


def report(**fields):
    print(json.dumps(fields), flush=True)


def text(value):
    return value.decode() if isinstance(value, bytes) else value


def impacket_tgs_req(spn):
    """impacket's own AS and TGS exchanges with the lab's KDC."""
    client = Principal(user, type=constants.PrincipalNameType.NT_PRINCIPAL.value)
    tgt, cipher, _, session = kerberosv5.getKerberosTGT(client, password, realm, "", "", "", KDC)
    server = Principal(spn, type=constants.PrincipalNameType.NT_SRV_INST.value)
    try:
        kerberosv5.getKerberosTGS(server, realm, KDC, tgt, cipher, session)
        return {"tgt": True, "tgs": True}
    except kerberosv5.KerberosError as e:
        return {"tgt": True, "error": constants.ErrorCodes(e.getErrorCode()).name}


def service_ticket(spn):
    """The lab KDC's TGS-REP for `spn`, in the form impacket's bind takes (`TGS=`)."""
    t = TICKETS[spn]
    cipher = _enctype_table[t["etype"]]()
    return {"KDC_REP": bytes.fromhex(t["tgs_rep"]), "cipher": cipher,
            "sessionKey": Key(t["etype"], bytes.fromhex(t["key"]))}


def bound(uuid, level, spn):
    t = transport.DCERPCTransportFactory("ncacn_ip_tcp:127.0.0.1[%d]" % rpc_port)
    t.set_connect_timeout(TIMEOUT)
    dce = t.get_dce_rpc()
    dce.set_credentials(user, "", realm, TGS=service_ticket(spn))
    dce.set_auth_type(RPC_C_AUTHN_GSS_NEGOTIATE)
    dce.set_auth_level(level)
    dce.connect()
    dce.bind(uuid)
    return dce


def rfr_session(level, spn):
    try:
        dce = bound(oxabref.MSRPC_UUID_OXABREF, level, spn)
    except Exception as e:  # the bind's refusal is the result
        return {"error": str(e)}
    try:
        fqdn = oxabref.hRfrGetFQDNFromServerDN(
            dce, "/o=EXAMPLE/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)"
            "/cn=Configuration/cn=Servers/cn=MAIL")
        return {"fqdn": text(fqdn["ppszServerFQDN"]).rstrip("\0")}
    except DCERPCException as e:
        return {"error": str(e)}
    finally:
        dce.disconnect()


def nspi_session(level, spn):
    dce = bound(nspi.MSRPC_UUID_NSPI, level, spn)
    try:
        stat = nspi.STAT()
        stat["CodePage"] = nspi.CP_TELETEX
        handle = nspi.hNspiBind(dce, stat)["contextHandle"]
        tables = nspi.simplifyPropertyRowSet(nspi.hNspiGetSpecialTable(dce, handle)["ppRows"])
        rows = nspi.hNspiQueryRows(dce, handle, pStat=stat, Count=50,
                                   pPropTags=[PR_DISPLAY_NAME, PR_EMAIL_ADDRESS])
        people = [[text(r.get(PR_DISPLAY_NAME)), text(r.get(PR_EMAIL_ADDRESS))]
                  for r in nspi.simplifyPropertyRowSet(rows["ppRows"])]
        nspi.hNspiUnbind(dce, handle)
        return {"tables": [text(r.get(PR_DISPLAY_NAME, b"")) for r in tables], "rows": people}
    except DCERPCException as e:
        return {"error": str(e)}
    finally:
        dce.disconnect()


report(check="tgs_req", **impacket_tgs_req("exchangeRFR/mail.example.test"))
for level in (2, 5, 6):
    report(check="rfr", level=level, **rfr_session(level, "exchangeRFR/mail.example.test"))
for level in (2, 5, 6):
    report(check="nspi", level=level, **nspi_session(level, "exchangeAB/gc1.example.test"))
# A ticket for the web tier is not the store's: the bind is refused.
report(check="rfr_other_service", level=6, **rfr_session(6, "HTTP/web.example.test"))
