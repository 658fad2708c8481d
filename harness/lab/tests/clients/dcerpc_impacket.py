#!/usr/bin/env python3
"""impacket (a DCE/RPC client nobody here wrote) against the lab's RPC listeners.

Usage: dcerpc_impacket.py EPM_PORT USER PASSWORD DOMAIN
Prints one JSON object per check on stdout, e.g.
  {"check": "ept_map", "interface": "rfr", "binding": "ncacn_ip_tcp:127.0.0.1[16001]"}
The Rust test decides what is right; this script only reports what impacket saw.
Every socket operation is bounded (impacket's transport timeout)."""
import json
import sys

from impacket.dcerpc.v5 import epm, nspi, oxabref, transport

# [MS-OXPROPS] PidTagDisplayName and PidTagEmailAddress as PtypString (Unicode).
PR_DISPLAY_NAME = 0x3001001F
PR_EMAIL_ADDRESS = 0x3003001F
from impacket.dcerpc.v5.rpcrt import DCERPCException

epm_port, user, password, domain = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
TIMEOUT = 10


def report(**fields):
    print(json.dumps(fields), flush=True)


def connect(port):
    t = transport.DCERPCTransportFactory("ncacn_ip_tcp:127.0.0.1[%d]" % port)
    t.set_connect_timeout(TIMEOUT)
    dce = t.get_dce_rpc()
    dce.connect()
    return t, dce


# The endpoint mapper names the RFR and NSPI listener, as Outlook and impacket find it.
for name, uuid in (("rfr", oxabref.MSRPC_UUID_OXABREF), ("nspi", nspi.MSRPC_UUID_NSPI)):
    _, dce = connect(epm_port)
    binding = epm.hept_map("127.0.0.1", uuid, protocol="ncacn_ip_tcp", dce=dce)
    dce.disconnect()
    report(check="ept_map", interface=name, binding=binding)
rpc_port = int(binding.split("[")[1].rstrip("]"))

_, dce = connect(epm_port)
entries = epm.hept_lookup(None, dce=dce)
dce.disconnect()
report(
    check="ept_lookup",
    entries=[
        [epm.PrintStringBinding(e["tower"]["Floors"]), e["annotation"].rstrip(b"\0").decode()]
        for e in entries
    ],
)


def rfr_session(level, pw):
    t, dce = connect(rpc_port)
    dce.set_credentials(user, pw, domain, "", "")
    dce.set_auth_level(level)
    dce.bind(oxabref.MSRPC_UUID_OXABREF)
    try:
        dsa = oxabref.hRfrGetNewDSA(dce, "/o=%s/ou=Exchange Administrative Group "
                                    "(FYDIBOHF23SPDLT)/cn=Recipients/cn=%s" % (domain, user))
        fqdn = oxabref.hRfrGetFQDNFromServerDN(dce, "/o=%s/ou=Exchange Administrative Group "
                                               "(FYDIBOHF23SPDLT)/cn=Configuration/cn=Servers/cn=MAIL"
                                               % domain)
        return {"dsa": dsa["ppszServer"].decode() if isinstance(dsa["ppszServer"], bytes)
                else dsa["ppszServer"],
                "fqdn": fqdn["ppszServerFQDN"].decode() if isinstance(fqdn["ppszServerFQDN"], bytes)
                else fqdn["ppszServerFQDN"]}
    except DCERPCException as e:
        return {"error": str(e)}
    finally:
        dce.disconnect()


def text(value):
    return value.decode() if isinstance(value, bytes) else value


def nspi_session(level, pw):
    """NspiBind, NspiGetSpecialTable (what exchanger's list-tables shows), NspiQueryRows
    over the Global Address List (display name and legacy DN), NspiUnbind."""
    t, dce = connect(rpc_port)
    dce.set_credentials(user, pw, domain, "", "")
    dce.set_auth_level(level)
    dce.bind(nspi.MSRPC_UUID_NSPI)
    try:
        stat = nspi.STAT()
        stat["CodePage"] = nspi.CP_TELETEX
        handle = nspi.hNspiBind(dce, stat)["contextHandle"]
        tables = nspi.simplifyPropertyRowSet(nspi.hNspiGetSpecialTable(dce, handle)["ppRows"])
        names = [text(row.get(PR_DISPLAY_NAME, b"")) for row in tables]
        rows = nspi.hNspiQueryRows(dce, handle, pStat=stat, Count=50,
                                   pPropTags=[PR_DISPLAY_NAME, PR_EMAIL_ADDRESS])
        people = [[text(r.get(PR_DISPLAY_NAME)), text(r.get(PR_EMAIL_ADDRESS))]
                  for r in nspi.simplifyPropertyRowSet(rows["ppRows"])]
        nspi.hNspiUnbind(dce, handle)
        return {"tables": names, "rows": people}
    except DCERPCException as e:
        return {"error": str(e)}
    finally:
        dce.disconnect()


for level in (2, 5, 6):
    report(check="rfr", level=level, **rfr_session(level, password))
report(check="rfr_wrong_password", level=6, **rfr_session(6, password + "x"))
report(check="nspi", level=6, **nspi_session(6, password))
