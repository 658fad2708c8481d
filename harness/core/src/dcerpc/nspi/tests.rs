//! NSPI against impacket: requests as impacket's `nspi.py` structures encode them
//! (hNspi* helpers and exchanger.py's arguments), responses as impacket parsed them back,
//! and the hostile cases.
//!
//! The request vectors were printed by this script (impacket 0.13.1; its referent ids are
//! random, so one run's output is kept):
//!
//! ```text
//! # Builds NSPI request stubs with impacket's nspi.py structures (as its hNspi* helpers and
//! # exchanger.py fill them) and prints them as hex.
//! from impacket.dcerpc.v5 import nspi
//! from impacket.dcerpc.v5.ndr import NULL
//! from impacket.dcerpc.v5.dtypes import DWORD, LPSTR, LPWSTR
//! import struct
//!
//! H = struct.pack('<I', 1) + b'NSPI' + b'\x00' * 8
//!
//! def handle():
//!     h = nspi.handle_t()
//!     h['context_handle_attributes'] = 0
//!     h['context_handle_uuid'] = H
//!     return h
//!
//! def show(name, req):
//!     print(name, req.getData().hex())
//!
//! # exchanger: stat = STAT(); CodePage = CP_TELETEX; hNspiBind(dce, stat)
//! st = nspi.STAT(); st['CodePage'] = nspi.CP_TELETEX
//! r = nspi.NspiBind(); r['pStat'] = st
//! show('bind', r)
//! # hNspiBind default with a server guid buffer (MS-OXNSPI 4 example: 0x4e4, 0x409)
//! r = nspi.NspiBind(); r['pStat']['CodePage'] = 0x4e4; r['pStat']['TemplateLocale'] = 0x409; r['pStat']['SortLocale'] = 0x409
//! r['pServerGuid'] = b'\x00' * 16
//! show('bind_guid', r)
//! # hNspiUnbind
//! r = nspi.NspiUnbind(); r['contextHandle'] = handle()
//! show('unbind', r)
//! # exchanger update_stat(0)
//! st = nspi.STAT(); st['CodePage'] = nspi.CP_TELETEX; st['ContainerID'] = 0
//! r = nspi.NspiUpdateStat(); r['hRpc'] = handle(); r['pStat'] = st; r['plDelta'] = NULL
//! show('update_stat', r)
//! # hNspiGetSpecialTable defaults (dwFlags NspiUnicodeStrings, STAT(), lpVersion NULL)
//! r = nspi.NspiGetSpecialTable(); r['hRpc'] = handle(); r['dwFlags'] = nspi.NspiUnicodeStrings
//! r['pStat'] = nspi.STAT(); r['lpVersion'] = NULL
//! show('special_table', r)
//! # hNspiQueryColumns default
//! r = nspi.NspiQueryColumns(); r['hRpc'] = handle(); r['dwFlags'] = nspi.NspiUnicodeProptypes
//! show('query_columns', r)
//!
//! def tags(req, field, values, cvalues=None):
//!     for t in values:
//!         d = DWORD(); d['Data'] = t
//!         req[field]['aulPropTag'].append(d)
//!     req[field]['cValues'] = len(values) if cvalues is None else cvalues
//!     req.fields[field].fields['Data'].fields['aulPropTag'].fields['MaximumCount'] = len(values) + 1
//!
//! # exchanger dump-tables: QueryRows with pStat after UpdateStat (CurrentRec = first MId), PR_INSTANCE_KEY
//! st = nspi.STAT(); st['CodePage'] = nspi.CP_TELETEX; st['CurrentRec'] = 0x1000; st['TotalRecs'] = 3
//! r = nspi.NspiQueryRows(); r['hRpc'] = handle(); r['dwFlags'] = nspi.fSkipObjects; r['pStat'] = st; r['Count'] = 50
//! tags(r, 'pPropTags', [0x0ff60102])
//! r['lpETable'] = NULL; r['dwETableCount'] = 0
//! show('query_rows', r)
//! # explicit table (dnt-lookup / dump-tables second call): MIds, objectGUID etc.
//! r = nspi.NspiQueryRows(); r['hRpc'] = handle(); r['dwFlags'] = nspi.fSkipObjects; r['pStat']['ContainerID'] = 0; r['Count'] = 50
//! tags(r, 'pPropTags', [0x8c6d0102, 0x3001001f, 0x39fe001f, 0x3a00001f, 0x0ffe0003, 0x3003001e])
//! for m in [0x1000, 0x1001, 0x7]:
//!     e = DWORD(); e['Data'] = m; r['lpETable'].append(e)
//! r['dwETableCount'] = 3
//! show('query_rows_etable', r)
//! # hNspiDNToMId
//! r = nspi.NspiDNToMId(); r['hRpc'] = handle()
//! names = ['/o=EXAMPLE/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn=alice', '/o=nobody']
//! r['pNames']['Count'] = len(names)
//! for n in names:
//!     s = LPSTR(); s['Data'] = n + '\x00'; r['pNames']['Strings'].append(s)
//! show('dn_to_mid', r)
//! # hNspiGetProps (its cValues = len + 1 quirk kept)
//! r = nspi.NspiGetProps(); r['hRpc'] = handle(); r['dwFlags'] = nspi.fSkipObjects
//! r['pStat']['CurrentRec'] = 0x1000; r['pStat']['ContainerID'] = 0; r['pStat']['CodePage'] = nspi.CP_TELETEX
//! tags(r, 'pPropTags', [0x3001001f, 0x0fff0102, 0x3a00001e, 0x39000003, 0x8004001f], cvalues=6)
//! show('get_props', r)
//! # exchanger guid-known: hNspiResolveNamesW with /guid= DNs and props
//! r = nspi.NspiResolveNamesW(); r['hRpc'] = handle(); r['pStat']['ContainerID'] = 0
//! tags(r, 'pPropTags', [0x3001001f, 0x39fe001f, 0x0ff60102])
//! strs = ['alice', 'nosuchuser', 'ALICE@example.test']
//! for s in strs:
//!     w = LPWSTR(); w['Data'] = s + '\x00'; r['paStr']['Strings'].append(w)
//! r['paStr']['Count'] = len(strs)
//! show('resolve_names_w', r)
//!
//! # NspiGetProps as [MS-OXNSPI] 3.1.4.1.7 declares it (pStat [ref], inline), with
//! # impacket's structures.
//! from impacket.dcerpc.v5.ndr import NDRCALL
//! class NspiGetPropsRef(NDRCALL):
//!     opnum = 9
//!     structure = (('hRpc', nspi.handle_t), ('dwFlags', DWORD), ('pStat', nspi.STAT),
//!                  ('pPropTags', nspi.PPropertyTagArray_r))
//! r = NspiGetPropsRef(); r['hRpc'] = handle(); r['dwFlags'] = nspi.fSkipObjects
//! r['pStat']['CurrentRec'] = 0x1000; r['pStat']['CodePage'] = nspi.CP_TELETEX
//! tags(r, 'pPropTags', [0x3001001f, 0x0fff0102, 0x3a00001e, 0x39000003, 0x8004001f])
//! show('get_props_ref', r)
//!
//! # NspiGetMatches ([MS-OXNSPI] 3.1.4.1.10; commented out in nspi.py) with its structures:
//! # a content restriction, prefix "b" of PidTagDisplayName, ignoring case.
//! class NspiGetMatches(NDRCALL):
//!     opnum = 5
//!     structure = (('hRpc', nspi.handle_t), ('Reserved1', DWORD), ('pStat', nspi.STAT),
//!                  ('pReserved', nspi.PPropertyTagArray_r), ('Reserved2', DWORD),
//!                  ('Filter', nspi.PRestriction_r), ('lpPropName', nspi.PPropertyName_r),
//!                  ('ulRequested', DWORD), ('pPropTags', nspi.PPropertyTagArray_r))
//! r = NspiGetMatches(); r['hRpc'] = handle(); r['pReserved'] = NULL; r['lpPropName'] = NULL
//! r['Filter']['rt'] = 3
//! r['Filter']['res']['tag'] = 3
//! r['Filter']['res']['resContent']['ulFuzzyLevel'] = 0x10002
//! r['Filter']['res']['resContent']['ulPropTag'] = 0x3001001f
//! r['Filter']['res']['resContent']['lpProp']['ulPropTag'] = 0x3001001f
//! r['Filter']['res']['resContent']['lpProp']['Value']['tag'] = 0x1f
//! r['Filter']['res']['resContent']['lpProp']['Value']['lpszW'] = 'b\x00'
//! r['ulRequested'] = 10
//! tags(r, 'pPropTags', [0x3001001f, 0x39fe001f])
//! show('get_matches', r)
//!
//! and this one, for NspiGetPropList and NspiCompareMIds:
//!
//! # NspiGetPropList (hNspiGetPropList defaults, dwMId alice's) and NspiCompareMIds with
//! # impacket's structures.
//! from impacket.dcerpc.v5 import nspi
//! import struct
//! H = struct.pack('<I', 1) + b'NSPI' + b'\x00' * 8
//! def handle():
//!     h = nspi.handle_t(); h['context_handle_attributes'] = 0; h['context_handle_uuid'] = H; return h
//! r = nspi.NspiGetPropList(); r['hRpc'] = handle(); r['dwMId'] = 0x1000; r['dwFlags'] = nspi.fSkipObjects; r['CodePage'] = nspi.CP_TELETEX
//! print('get_prop_list', r.getData().hex())
//! r = nspi.NspiCompareMIds(); r['hRpc'] = handle(); r['MId1'] = 0x1002; r['MId2'] = 0x1000
//! print('compare_mids', r.getData().hex())
//! ```

use harness_wire::dcerpc::{FaultStatus, Uuid};
use harness_wire::ndr::NdrWriter;

use super::book::{self, tag};
use super::fuzz::{call_context, principal, small_world};
use super::types::{ptype, with_type, PropValue, Restriction};
use super::*;
use crate::dcerpc::interface::{CallOutcome, RpcInterface};

const BIND_REQ: &str = "\
    00000000000000000000000000000000000000000000000000000000254f00000000000000000000da670000\
    00000000000000000000000000000000";
const BIND_GUID_REQ: &str = "\
    00000000000000000000000000000000000000000000000000000000e40400000904000009040000727a0000\
    00000000000000000000000000000000";
const UNBIND_REQ: &str = "\
    00000000010000004e535049000000000000000000000000";
const UPDATE_STAT_REQ: &str = "\
    00000000010000004e5350490000000000000000000000000000000000000000000000000000000000000000\
    00000000254f0000000000000000000000000000";
const SPECIAL_TABLE_REQ: &str = "\
    00000000010000004e535049000000000000000004000000c18d000000000000000000000000000000000000\
    000000000000000000000000000000000000000000000000";
const QUERY_COLUMNS_REQ: &str = "\
    00000000010000004e53504900000000000000000000000000000080";
const QUERY_ROWS_REQ: &str = "\
    00000000010000004e5350490000000000000000010000000000000000000000001000000000000000000000\
    03000000254f000000000000000000000000000000000000320000003d5b0000020000000100000000000000\
    010000000201f60f";
const QUERY_ROWS_ETABLE_REQ: &str = "\
    00000000010000004e5350490000000000000000010000000000000000000000000000000000000000000000\
    0000000000000000000000000000000003000000cf9200000300000000100000011000000700000032000000\
    e1b200000700000006000000000000000600000002016d8c1f0001301f00fe391f00003a0300fe0f1e000330";
const DN_TO_MID_REQ: &str = "\
    00000000010000004e5350490000000000000000000000000200000002000000d83f0000dc26000055000000\
    00000000550000002f6f3d4558414d504c452f6f753d45786368616e67652041646d696e6973747261746976\
    652047726f7570202846594449424f484632335350444c54292f636e3d526563697069656e74732f636e3d61\
    6c69636500ababab0a000000000000000a0000002f6f3d6e6f626f647900";
const GET_PROPS_REQ: &str = "\
    00000000010000004e5350490000000000000000010000006ebe000000000000000000000010000000000000\
    0000000000000000254f000000000000000000006f4d0000060000000600000000000000050000001f000130\
    0201ff0f1e00003a030000391f000480";
const RESOLVE_NAMES_W_REQ: &str = "\
    00000000010000004e5350490000000000000000000000000000000000000000000000000000000000000000\
    00000000000000000000000000000000ba650000040000000300000000000000030000001f0001301f00fe39\
    0201f60f03000000030000005ab60000b1f8000021bb000006000000000000000600000061006c0069006300\
    650000000b000000000000000b0000006e006f00730075006300680075007300650072000000abab13000000\
    000000001300000041004c0049004300450040006500780061006d0070006c0065002e007400650073007400\
    0000";
const GET_PROPS_REF_REQ: &str = "\
    00000000010000004e5350490000000000000000010000000000000000000000001000000000000000000000\
    00000000254f00000000000000000000e9780000060000000500000000000000050000001f0001300201ff0f\
    1e00003a030000391f000480";
const GET_MATCHES_REQ: &str = "\
    00000000010000004e5350490000000000000000000000000000000000000000000000000000000000000000\
    000000000000000000000000000000000000000000000000749700000300000003000000020001001f000130\
    7d6300001f000130000000001f0000008904000002000000000000000200000062000000000000000a000000\
    76780000030000000200000000000000020000001f0001301f00fe39";
const GET_PROP_LIST_REQ: &str = "\
    00000000010000004e53504900000000000000000100000000100000254f0000";
const COMPARE_MIDS_REQ: &str = "\
    00000000010000004e5350490000000000000000000000000000000000000000000000000000000000000000\
    000000000000000000000000000000000210000000100000";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    book::hex(b)
}

/// The requests in the order a client sends them, with the opnum.
const SEQUENCE: &[(&str, u16, &str)] = &[
    ("bind", 0, BIND_REQ),
    ("update_stat", 2, UPDATE_STAT_REQ),
    ("special_table", 12, SPECIAL_TABLE_REQ),
    ("query_columns", 16, QUERY_COLUMNS_REQ),
    ("query_rows", 3, QUERY_ROWS_REQ),
    ("query_rows_etable", 3, QUERY_ROWS_ETABLE_REQ),
    ("dn_to_mid", 7, DN_TO_MID_REQ),
    ("get_props", 9, GET_PROPS_REQ),
    ("get_props_ref", 9, GET_PROPS_REF_REQ),
    ("resolve_names_w", 20, RESOLVE_NAMES_W_REQ),
    ("get_matches", 5, GET_MATCHES_REQ),
    ("get_prop_list", 8, GET_PROP_LIST_REQ),
    ("compare_mids", 10, COMPARE_MIDS_REQ),
    ("unbind", 1, UNBIND_REQ),
];

fn respond(nspi: &Nspi, connection: u64, opnum: u16, stub: &[u8]) -> CallOutcome {
    let alice = principal("alice");
    nspi.call(&call_context(Some(&alice), connection), opnum, stub)
}

fn response(nspi: &Nspi, opnum: u16, stub: &[u8]) -> Vec<u8> {
    match respond(nspi, 0, opnum, stub) {
        CallOutcome::Response(r) => r,
        CallOutcome::Fault(f) => panic!("opnum {opnum} faulted {f:?}"),
        CallOutcome::Parked { .. } => panic!("opnum {opnum} parked"),
    }
}

/// `NSPI_DUMP=<file> cargo test -p harness-core --lib nspi::tests::dump -- --ignored`
/// writes the responses to the sequence for impacket to parse.
#[test]
#[ignore]
fn dump() {
    let nspi = Nspi::for_world(&small_world());
    let mut out = String::new();
    for (name, opnum, req) in SEQUENCE {
        let resp = response(&nspi, *opnum, &unhex(req));
        out.push_str(&format!("{name} {}\n", hex(&resp)));
    }
    std::fs::write(std::env::var("NSPI_DUMP").unwrap(), out).unwrap();
}

// The responses below, as this module wrote them to the requests of SEQUENCE on a fresh
// interface over `small_world()`, were parsed by impacket with this script, each to its
// last octet:
//
// ```text
// # Parses the harness's NSPI responses with impacket's nspi.py response structures and
// # prints what a client sees (simplifyPropertyRowSet as exchanger.py uses it).
// import sys
// from impacket.dcerpc.v5 import nspi
// from impacket.dcerpc.v5.ndr import NDRCALL
// from impacket.dcerpc.v5.dtypes import ULONG
//
// class NspiGetMatchesResponse(NDRCALL):
//     # [MS-OXNSPI] 3.1.4.1.10 out parameters; pStat is [in, out] STAT* ([ref]).
//     structure = (('pStat', nspi.STAT), ('ppOutMIds', nspi.PPropertyTagArray_r),
//                  ('ppRows', nspi.PPropertyRowSet_r), ('ErrorCode', ULONG))
//
// classes = {
//     'bind': nspi.NspiBindResponse, 'update_stat': nspi.NspiUpdateStatResponse,
//     'special_table': nspi.NspiGetSpecialTableResponse,
//     'query_columns': nspi.NspiQueryColumnsResponse, 'query_rows': nspi.NspiQueryRowsResponse,
//     'query_rows_etable': nspi.NspiQueryRowsResponse, 'dn_to_mid': nspi.NspiDNToMIdResponse,
//     'get_props': nspi.NspiGetPropsResponse, 'get_props_ref': nspi.NspiGetPropsResponse,
//     'resolve_names_w': nspi.NspiResolveNamesWResponse, 'get_matches': NspiGetMatchesResponse,
//     'get_prop_list': nspi.NspiGetPropListResponse,
//     'compare_mids': nspi.NspiCompareMIdsResponse, 'unbind': nspi.NspiUnbindResponse,
// }
// for line in open(sys.argv[1]):
//     name, hx = line.split()
//     data = bytes.fromhex(hx)
//     resp = classes[name](data)
//     assert len(resp.getData()) == len(data), (name, len(resp.getData()), len(data))
//     print('==', name, 'ErrorCode 0x%08x' % resp['ErrorCode'])
//     if name == 'bind':
//         print('  server guid', resp['pServerGuid'].hex() if resp['pServerGuid'] else None,
//               'handle', resp['contextHandle']['context_handle_uuid'].hex())
//     if 'pStat' in resp.fields:
//         print('  stat', {k: resp['pStat'][k] for k in ('ContainerID', 'CurrentRec', 'Delta', 'NumPos', 'TotalRecs')})
//     if name == 'compare_mids':
//         print('  plResult', resp['plResult'])
//     if name == 'special_table':
//         print('  version', resp['lpVersion'])
//     for f in ('ppColumns', 'ppOutMIds', 'ppMIds'):
//         if f in resp.fields and resp[f] is not None and resp[f] != b'':
//             try:
//                 print('  %s' % f, [hex(t['Data']) for t in resp[f]['aulPropTag']])
//             except Exception as e:
//                 print('  %s NULL' % f)
//     if 'ppRows' in resp.fields:
//         try:
//             rows = resp['ppRows']
//             if name.startswith('get_props'):
//                 print('  row', nspi.simplifyPropertyRow(rows))
//             else:
//                 for row in nspi.simplifyPropertyRowSet(rows):
//                     print('  row', {hex(k): v for k, v in row.items()})
//         except Exception as e:
//             print('  ppRows error', repr(e))
// ```
//
// Its output:
//
// ```text
// == bind ErrorCode 0x00000000
//   server guid 2fce88bce84024349251f232fa789a96 handle 010000004e5350490000000000000000
// == update_stat ErrorCode 0x00000000
//   stat {'ContainerID': 0, 'CurrentRec': 4096, 'Delta': 0, 'NumPos': 0, 'TotalRecs': 3}
// == special_table ErrorCode 0x00000000
//   version 1
//   row {'0xfff0102': <PermanentEntryID>, '0x36000003': 9, '0x30050003': 0, '0xfffd0003': 0, '0x3001001f': 'Global Address List', '0xfffb000b': 0}
// == query_columns ErrorCode 0x00000000
//   ppColumns ['0xfff0102', '0xff60102', '0xffe0003', '0x3001001f', '0x3002001f', '0x3003001f', '0x39000003', '0x39020102', '0x39fe001f', '0x3a00001f', '0x3a20001f', '0x800f101f', '0x8c6d0102']
// == query_rows ErrorCode 0x00000000
//   stat {'ContainerID': 0, 'CurrentRec': 2, 'Delta': 0, 'NumPos': 3, 'TotalRecs': 3}
//   row {'0xff60102': 4096}
//   row {'0xff60102': 4097}
//   row {'0xff60102': 4098}
// == query_rows_etable ErrorCode 0x00000000
//   stat {'ContainerID': 0, 'CurrentRec': 0, 'Delta': 0, 'NumPos': 0, 'TotalRecs': 0}
//   row {'0x8c6d0102': '70ac9a4c-bab7-347e-aeff-906b8bab8044', '0x3001001f': 'alice', '0x39fe001f': 'alice@example.test', '0x3a00001f': 'alice', '0xffe0003': 6, '0x3003001e': '/o=EXAMPLE/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn=alice'}
//   row {'0x8c6d0102': '9b956758-702e-3e42-bb32-b161f17b2309', '0x3001001f': 'bob', '0x39fe001f': 'bob@example.test', '0x3a00001f': 'bob', '0xffe0003': 6, '0x3003001e': '/o=EXAMPLE/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn=bob'}
//   row {'0x8c6d000a': 2147746063, '0x3001000a': 2147746063, '0x39fe000a': 2147746063, '0x3a00000a': 2147746063, '0xffe000a': 2147746063, '0x3003000a': 2147746063}
// == dn_to_mid ErrorCode 0x00000000
//   ppOutMIds ['0x1000', '0x0']
// == get_props ErrorCode 0x00040380
//   row {268369930: 2147746063, 267780106: 2147746063, 268304394: 2147746063, 805371914: 2147746063, 805437450: 2147746063, 805502986: 2147746063, 956301322: 2147746063, 956432394: 2147746063, 972947466: 2147746063, 973078538: 2147746063, 975175690: 2147746063, 2148466698: 2147746063, 2355953674: 2147746063}
// == get_props_ref ErrorCode 0x00040380
//   row {805371935: 'alice', 268370178: <PermanentEntryID>, 973078558: 'alice', 956301315: 0, 2147745802: 2147746063}
// == resolve_names_w ErrorCode 0x00000000
//   ppMIds ['0x1000', '0x0', '0x1000']
//   row {'0x3001001f': 'alice', '0x39fe001f': 'alice@example.test', '0xff60102': 4096}
//   row {'0x3001001f': 'alice', '0x39fe001f': 'alice@example.test', '0xff60102': 4096}
// == get_matches ErrorCode 0x00000000
//   stat {'ContainerID': 0, 'CurrentRec': 0, 'Delta': 0, 'NumPos': 0, 'TotalRecs': 0}
//   ppOutMIds ['0x1001']
//   row {'0x3001001f': 'bob', '0x39fe001f': 'bob@example.test'}
// == get_prop_list ErrorCode 0x00000000
//   ppOutMIds ['0xfff0102', '0xff60102', '0xffe0003', '0x3001001e', '0x3002001e', '0x3003001e', '0x39000003', '0x39020102', '0x39fe001e', '0x3a00001e', '0x3a20001e', '0x800f101e', '0x8c6d0102']
// == compare_mids ErrorCode 0x00000000
//   plResult 1
// == unbind ErrorCode 0x00000001
// ```
//
// get_props is impacket's hNspiGetProps as is: it sends pStat as a unique pointer where
// the IDL has `[in] STAT*` ([ref]), so the STAT is read 4 octets early (CurrentRec 0,
// pPropTags NULL), as Exchange reads it: all columns, all NotFound, ErrorsReturned.
// get_props_ref is the same call laid out as the IDL says.

const BIND_RESP: &str = "\
    000002002fce88bce84024349251f232fa789a9600000000010000004e535049000000000000000000000000";
const UPDATE_STAT_RESP: &str = "\
    000000000000000000100000000000000000000003000000254f000000000000000000000000000000000000";
const SPECIAL_TABLE_RESP: &str = "\
    01000000000002000100000001000000000000000600000004000200060000000201ff0f0000000002010000\
    430000000800020003000036000000000300000009000000030005300000000003000000000000000300fdff\
    0000000003000000000000001f000130000000001f0000000c0002000b00fbff000000000b00000000000000\
    4300000000000000dca740c8c042101ab4b908002b2fe18201000000000100002f677569643d633237373430\
    3762313333326634333339383432346230396364316166623065000014000000000000001400000047006c00\
    6f00620061006c002000410064006400720065007300730020004c00690073007400000000000000";
const QUERY_COLUMNS_RESP: &str = "\
    000002000e0000000d000000000000000d0000000201ff0f0201f60f0300fe0f1f0001301f0002301f000330\
    03000039020102391f00fe391f00003a1f00203a1f100f8002016d8c00000000";
const QUERY_ROWS_RESP: &str = "\
    000000000000000002000000000000000300000003000000254f000000000000000000000000020003000000\
    0300000000000000010000000400020000000000010000000800020000000000010000000c00020001000000\
    0201f60f000000000201000004000000100002000400000000100000010000000201f60f0000000002010000\
    04000000140002000400000001100000010000000201f60f0000000002010000040000001800020004000000\
    0210000000000000";
const QUERY_ROWS_ETABLE_RESP: &str = "\
    0000000000000000000000000000000000000000000000000000000000000000000000000000020003000000\
    0300000000000000060000000400020000000000060000000800020000000000060000000c00020006000000\
    02016d8c000000000201000010000000100002001f000130000000001f000000140002001f00fe3900000000\
    1f000000180002001f00003a000000001f0000001c0002000300fe0f0000000003000000060000001e000330\
    000000001e00000020000200100000004c9aac70b7ba7e34aeff906b8bab8044060000000000000006000000\
    61006c00690063006500000013000000000000001300000061006c0069006300650040006500780061006d00\
    70006c0065002e0074006500730074000000000006000000000000000600000061006c006900630065000000\
    5500000000000000550000002f6f3d4558414d504c452f6f753d45786368616e67652041646d696e69737472\
    61746976652047726f7570202846594449424f484632335350444c54292f636e3d526563697069656e74732f\
    636e3d616c696365000000000600000002016d8c000000000201000010000000240002001f00013000000000\
    1f000000280002001f00fe39000000001f0000002c0002001f00003a000000001f000000300002000300fe0f\
    0000000003000000060000001e000330000000001e00000034000200100000005867959b2e70423ebb32b161\
    f17b230904000000000000000400000062006f006200000011000000000000001100000062006f0062004000\
    6500780061006d0070006c0065002e0074006500730074000000000004000000000000000400000062006f00\
    620000005300000000000000530000002f6f3d4558414d504c452f6f753d45786368616e67652041646d696e\
    6973747261746976652047726f7570202846594449424f484632335350444c54292f636e3d52656369706965\
    6e74732f636e3d626f620000060000000a006d8c000000000a0000000f0104800a000130000000000a000000\
    0f0104800a00fe39000000000a0000000f0104800a00003a000000000a0000000f0104800a00fe0f00000000\
    0a0000000f0104800a000330000000000a0000000f01048000000000";
const DN_TO_MID_RESP: &str = "\
    0000020003000000020000000000000002000000001000000000000000000000";
const GET_PROPS_RESP: &str = "\
    00000200000000000d000000040002000d0000000a00ff0f000000000a0000000f0104800a00f60f00000000\
    0a0000000f0104800a00fe0f000000000a0000000f0104800a000130000000000a0000000f0104800a000230\
    000000000a0000000f0104800a000330000000000a0000000f0104800a000039000000000a0000000f010480\
    0a000239000000000a0000000f0104800a00fe39000000000a0000000f0104800a00003a000000000a000000\
    0f0104800a00203a000000000a0000000f0104800a000f80000000000a0000000f0104800a006d8c00000000\
    0a0000000f01048080030400";
const GET_PROPS_REF_RESP: &str = "\
    00000200000000000500000004000200050000001f000130000000001f000000080002000201ff0f00000000\
    02010000710000000c0002001e00003a000000001e0000001000020003000039000000000300000000000000\
    0a000480000000000a0000000f01048006000000000000000600000061006c00690063006500000071000000\
    00000000dca740c8c042101ab4b908002b2fe18201000000000000002f6f3d4558414d504c452f6f753d4578\
    6368616e67652041646d696e6973747261746976652047726f7570202846594449424f484632335350444c54\
    292f636e3d526563697069656e74732f636e3d616c69636500000000060000000000000006000000616c6963\
    6500000080030400";
const RESOLVE_NAMES_W_RESP: &str = "\
    0000020004000000030000000000000003000000001000000000000000100000040002000200000002000000\
    00000000030000000800020000000000030000000c000200030000001f000130000000001f00000010000200\
    1f00fe39000000001f000000140002000201f60f000000000201000004000000180002000600000000000000\
    0600000061006c00690063006500000013000000000000001300000061006c00690063006500400065007800\
    61006d0070006c0065002e007400650073007400000000000400000000100000030000001f00013000000000\
    1f0000001c0002001f00fe39000000001f000000200002000201f60f00000000020100000400000024000200\
    06000000000000000600000061006c00690063006500000013000000000000001300000061006c0069006300\
    650040006500780061006d0070006c0065002e00740065007300740000000000040000000010000000000000";
const GET_MATCHES_RESP: &str = "\
    0000000000000000000000000000000000000000000000000000000000000000000000000000020002000000\
    0100000000000000010000000110000004000200010000000100000000000000020000000800020002000000\
    1f000130000000001f0000000c0002001f00fe39000000001f00000010000200040000000000000004000000\
    62006f006200000011000000000000001100000062006f00620040006500780061006d0070006c0065002e00\
    74006500730074000000000000000000";
const GET_PROP_LIST_RESP: &str = "\
    000002000e0000000d000000000000000d0000000201ff0f0201f60f0300fe0f1e0001301e0002301e000330\
    03000039020102391e00fe391e00003a1e00203a1e100f8002016d8c00000000";
const COMPARE_MIDS_RESP: &str = "\
    0100000000000000";
const UNBIND_RESP: &str = "\
    000000000000000000000000000000000000000001000000";

const RESPONSES: &[&str] = &[
    BIND_RESP,
    UPDATE_STAT_RESP,
    SPECIAL_TABLE_RESP,
    QUERY_COLUMNS_RESP,
    QUERY_ROWS_RESP,
    QUERY_ROWS_ETABLE_RESP,
    DN_TO_MID_RESP,
    GET_PROPS_RESP,
    GET_PROPS_REF_RESP,
    RESOLVE_NAMES_W_RESP,
    GET_MATCHES_RESP,
    GET_PROP_LIST_RESP,
    COMPARE_MIDS_RESP,
    UNBIND_RESP,
];

#[test]
fn impacket_sequence_gets_the_responses_impacket_parsed() {
    let nspi = Nspi::for_world(&small_world());
    for ((name, opnum, req), expected) in SEQUENCE.iter().zip(RESPONSES) {
        let resp = response(&nspi, *opnum, &unhex(req));
        assert_eq!(hex(&resp), *expected, "{name}");
    }
    assert_eq!(nspi.session_count(), 0);
}

/// Binds on `connection` as alice; the handle.
fn bind(nspi: &Nspi, connection: u64) -> ContextHandle {
    let CallOutcome::Response(resp) = respond(nspi, connection, 0, &unhex(BIND_REQ)) else {
        panic!("bind faulted");
    };
    let mut r = harness_wire::ndr::NdrReader::new(&resp);
    let ptr = r.unique_ptr().unwrap();
    r.pointee(ptr, |r| r.bytes(16)).unwrap();
    let handle = r.context_handle().unwrap();
    assert_eq!(r.u32().unwrap(), status::SUCCESS);
    handle
}

/// A request stub of `req` with its handle (octets 0..20) replaced.
fn with_handle(req: &str, handle: &ContextHandle) -> Vec<u8> {
    let mut stub = unhex(req);
    let mut w = NdrWriter::new();
    w.put_context_handle(handle);
    stub[..20].copy_from_slice(w.as_bytes());
    stub
}

fn fault(outcome: CallOutcome) -> FaultStatus {
    match outcome {
        CallOutcome::Fault(f) => f,
        CallOutcome::Response(r) => panic!("response {}", hex(&r)),
        CallOutcome::Parked { .. } => panic!("parked"),
    }
}

fn return_value(outcome: CallOutcome) -> u32 {
    match outcome {
        CallOutcome::Response(r) => u32::from_le_bytes(r[r.len() - 4..].try_into().unwrap()),
        CallOutcome::Fault(f) => panic!("fault {f:?}"),
        CallOutcome::Parked { .. } => panic!("parked"),
    }
}

#[test]
fn bind_fills_the_server_guid_and_counts_handles() {
    let nspi = Nspi::for_world(&small_world());
    let first = bind(&nspi, 0);
    let second = bind(&nspi, 0);
    assert_ne!(first, second);
    assert!(!first.is_nil());
    let CallOutcome::Response(resp) = respond(&nspi, 0, 0, &unhex(BIND_GUID_REQ)) else {
        panic!()
    };
    let guid = nspi.address_book().unwrap().server_guid;
    assert_eq!(&resp[4..20], &guid);
    assert_eq!(nspi.session_count(), 3);
}

#[test]
fn bind_refuses_unauthenticated_anonymous_and_unicode_code_page() {
    let nspi = Nspi::for_world(&small_world());
    let refused = |outcome: CallOutcome| {
        let CallOutcome::Response(resp) = outcome else {
            panic!("fault")
        };
        // Pointer + 16 zero octets, the NULL handle, the return value.
        assert_eq!(&resp[4..40], &[0u8; 36]);
        u32::from_le_bytes(resp[40..44].try_into().unwrap())
    };
    let stub = unhex(BIND_REQ);
    let anonymous = nspi.call(&call_context(None, 0), 0, &stub);
    assert_eq!(refused(anonymous), status::LOGON_FAILED);
    let mut flagged = stub.clone();
    flagged[0] = F_ANONYMOUS_LOGIN as u8;
    assert_eq!(
        refused(respond(&nspi, 0, 0, &flagged)),
        status::LOGON_FAILED
    );
    let mut unicode = stub.clone();
    unicode[28..32].copy_from_slice(&book::CP_WINUNICODE.to_le_bytes());
    assert_eq!(
        refused(respond(&nspi, 0, 0, &unicode)),
        status::INVALID_CODEPAGE
    );
    assert_eq!(nspi.session_count(), 0);
}

#[test]
fn unknown_foreign_unbound_and_run_down_handles_fault_context_mismatch() {
    let nspi = Nspi::for_world(&small_world());
    let mismatch = FaultStatus::NCA_S_FAULT_CONTEXT_MISMATCH;
    // Never issued.
    assert_eq!(
        fault(respond(&nspi, 0, 16, &unhex(QUERY_COLUMNS_REQ))),
        mismatch
    );
    assert_eq!(fault(respond(&nspi, 0, 1, &unhex(UNBIND_REQ))), mismatch);
    // Issued on connection 0, used on 1.
    let handle = bind(&nspi, 0);
    let columns = with_handle(QUERY_COLUMNS_REQ, &handle);
    assert_eq!(fault(respond(&nspi, 1, 16, &columns)), mismatch);
    assert_eq!(
        return_value(respond(&nspi, 0, 16, &columns)),
        status::SUCCESS
    );
    // Unbound, then used or unbound again.
    let unbind = with_handle(UNBIND_REQ, &handle);
    assert_eq!(
        return_value(respond(&nspi, 0, 1, &unbind)),
        status::UNBIND_SUCCESS
    );
    assert_eq!(fault(respond(&nspi, 0, 16, &columns)), mismatch);
    assert_eq!(fault(respond(&nspi, 0, 1, &unbind)), mismatch);
    // Run down with its connection; the other connection's session stays.
    let on_zero = bind(&nspi, 0);
    let on_one = bind(&nspi, 1);
    nspi.rundown(0);
    assert_eq!(
        fault(respond(
            &nspi,
            0,
            16,
            &with_handle(QUERY_COLUMNS_REQ, &on_zero)
        )),
        mismatch
    );
    let on_one_columns = with_handle(QUERY_COLUMNS_REQ, &on_one);
    assert_eq!(
        return_value(respond(&nspi, 1, 16, &on_one_columns)),
        status::SUCCESS
    );
    assert_eq!(nspi.session_count(), 1);
}

#[test]
fn sessions_per_connection_are_capped() {
    let nspi = Nspi::for_world(&small_world());
    for _ in 0..MAX_SESSIONS_PER_CONNECTION {
        bind(&nspi, 0);
    }
    let CallOutcome::Response(resp) = respond(&nspi, 0, 0, &unhex(BIND_REQ)) else {
        panic!()
    };
    assert_eq!(&resp[20..40], &[0u8; 20], "NULL handle");
    assert_eq!(resp[40..44], status::OUT_OF_RESOURCES.to_le_bytes());
    bind(&nspi, 1);
}

#[test]
fn unserved_opnums_fault_cannot_support_and_a_dead_book_server_unavailable() {
    let nspi = Nspi::for_world(&small_world());
    let handle = bind(&nspi, 0);
    let stub = with_handle(QUERY_COLUMNS_REQ, &handle);
    for opnum in [4, 6, 11, 13, 14, 15, 17, 18, 21, 0xFFFF] {
        assert_eq!(
            fault(respond(&nspi, 0, opnum, &stub)),
            FaultStatus::CANNOT_SUPPORT
        );
    }
    nspi.set_address_book(None);
    let unavailable = FaultStatus::SERVER_UNAVAILABLE;
    assert_eq!(fault(respond(&nspi, 0, 16, &stub)), unavailable);
    assert_eq!(fault(respond(&nspi, 0, 0, &unhex(BIND_REQ))), unavailable);
    nspi.set_address_book(Some(Arc::new(AddressBook::from_world(&small_world()))));
    assert_eq!(return_value(respond(&nspi, 0, 16, &stub)), status::SUCCESS);
}

#[test]
fn every_truncation_of_the_impacket_requests_faults_bad_stub_data() {
    for (name, opnum, req) in SEQUENCE {
        let full = unhex(req);
        for len in 0..full.len() {
            let nspi = Nspi::for_world(&small_world());
            bind(&nspi, 0);
            match respond(&nspi, 0, *opnum, &full[..len]) {
                CallOutcome::Fault(f) => assert_eq!(f, FaultStatus::BAD_STUB_DATA, "{name} {len}"),
                // Only the octets impacket sends beyond the IDL may go (pStat as a
                // unique pointer: 4 more).
                CallOutcome::Response(_) => assert!(
                    matches!(*name, "special_table" | "get_props") && len >= 64,
                    "{name} truncated to {len} answered"
                ),
                CallOutcome::Parked { .. } => panic!("{name} parked"),
            }
        }
    }
}

#[test]
fn lying_counts_fault_bad_stub_data() {
    let nspi = Nspi::for_world(&small_world());
    bind(&nspi, 0);
    let bad = |opnum, stub: &[u8]| {
        assert_eq!(
            fault(respond(&nspi, 0, opnum, stub)),
            FaultStatus::BAD_STUB_DATA
        )
    };
    let etable = unhex(QUERY_ROWS_ETABLE_REQ);
    // dwETableCount (octet 60) 4 against a max_count of 3.
    let mut stub = etable.clone();
    stub[60] = 4;
    bad(3, &stub);
    // dwETableCount above its range, with a matching max_count.
    let mut stub = etable.clone();
    stub[60..64].copy_from_slice(&100_001u32.to_le_bytes());
    stub[68..72].copy_from_slice(&100_001u32.to_le_bytes());
    bad(3, &stub);
    // lpETable max_count far beyond the octets.
    let mut stub = etable.clone();
    stub[68..72].copy_from_slice(&u32::MAX.to_le_bytes());
    bad(3, &stub);
    // PropertyTagArray_r actual_count above its max_count.
    let columns = unhex(QUERY_ROWS_REQ);
    let mut stub = columns.clone();
    stub[88..92].copy_from_slice(&3u32.to_le_bytes());
    bad(3, &stub);
    // StringsArray_r Count unlike its max_count.
    let mut stub = unhex(DN_TO_MID_REQ);
    stub[28] = 1;
    bad(7, &stub);
    // String actual_count beyond the stub.
    let mut stub = unhex(RESOLVE_NAMES_W_REQ);
    stub[120..124].copy_from_slice(&0x7FFFu32.to_le_bytes());
    bad(20, &stub);
}

/// A GetMatches stub with `filter` already encoded (its Restriction_r and pointees).
fn get_matches_stub(
    handle: &ContextHandle,
    filter: impl FnOnce(&mut NdrWriter),
    requested: u32,
) -> Vec<u8> {
    let mut w = NdrWriter::new();
    w.put_context_handle(handle);
    w.put_u32(0);
    Stat::default().write(&mut w);
    w.put_pointer(false); // pReserved
    w.put_u32(0);
    w.put_pointer(true); // Filter
    filter(&mut w);
    w.put_pointer(false); // lpPropName
    w.put_u32(requested);
    w.put_pointer(true); // pPropTags
    types::write_prop_tag_array(&mut w, &[tag::ACCOUNT]);
    w.into_bytes()
}

/// `depth` NotRestriction_r around an ExistRestriction_r on PidTagAccount.
fn nested_nots(w: &mut NdrWriter, depth: usize) {
    for _ in 0..depth {
        w.put_u32(2);
        w.put_u32(2);
        w.put_pointer(true);
    }
    for v in [8, 8, 0, tag::ACCOUNT, 0] {
        w.put_u32(v);
    }
}

/// The MIds of a GetMatches response (after the STAT), or the return value.
fn matched_mids(outcome: CallOutcome) -> Result<Vec<u32>, u32> {
    let CallOutcome::Response(resp) = outcome else {
        panic!("fault")
    };
    let mut r = harness_wire::ndr::NdrReader::new(&resp);
    Stat::read(&mut r).unwrap();
    let ptr = r.unique_ptr().unwrap();
    match r.pointee(ptr, types::read_prop_tag_array).unwrap() {
        Some(mids) => Ok(mids),
        None => Err(u32::from_le_bytes(
            resp[resp.len() - 4..].try_into().unwrap(),
        )),
    }
}

#[test]
fn restrictions_nest_to_the_limit_and_no_deeper() {
    let nspi = Nspi::for_world(&small_world());
    let handle = bind(&nspi, 0);
    let all = vec![0x1000, 0x1001, 0x1002];
    let even = get_matches_stub(
        &handle,
        |w| nested_nots(w, types::MAX_RESTRICTION_DEPTH),
        10,
    );
    assert_eq!(matched_mids(respond(&nspi, 0, 5, &even)), Ok(all));
    let odd = get_matches_stub(
        &handle,
        |w| nested_nots(w, types::MAX_RESTRICTION_DEPTH - 1),
        10,
    );
    assert_eq!(matched_mids(respond(&nspi, 0, 5, &odd)), Ok(vec![]));
    let deep = get_matches_stub(
        &handle,
        |w| nested_nots(w, types::MAX_RESTRICTION_DEPTH + 1),
        10,
    );
    assert_eq!(
        fault(respond(&nspi, 0, 5, &deep)),
        FaultStatus::BAD_STUB_DATA
    );
    let very_deep = get_matches_stub(&handle, |w| nested_nots(w, 100_000), 10);
    assert_eq!(
        fault(respond(&nspi, 0, 5, &very_deep)),
        FaultStatus::BAD_STUB_DATA
    );
    // An AndRestriction_r announcing 100000 children in a few octets.
    let wide = get_matches_stub(
        &handle,
        |w| {
            w.put_u32(0);
            w.put_u32(0);
            w.put_u32(100_000);
            w.put_pointer(true);
            w.put_conformance(100_000);
        },
        10,
    );
    assert_eq!(
        fault(respond(&nspi, 0, 5, &wide)),
        FaultStatus::BAD_STUB_DATA
    );
}

#[test]
fn get_matches_evaluates_content_property_and_boolean_restrictions() {
    let nspi = Nspi::for_world(&small_world());
    let handle = bind(&nspi, 0);
    let content = |w: &mut NdrWriter, level: u32, text: &str| {
        for v in [3, 3, level, tag::DISPLAY_NAME] {
            w.put_u32(v);
        }
        w.put_pointer(true);
        for v in [tag::DISPLAY_NAME, 0, ptype::UNICODE] {
            w.put_u32(v);
        }
        w.put_pointer(true);
        w.put_wstring(text);
    };
    let run = |filter: &dyn Fn(&mut NdrWriter), requested| {
        matched_mids(respond(
            &nspi,
            0,
            5,
            &get_matches_stub(&handle, filter, requested),
        ))
    };
    assert_eq!(run(&|w| content(w, 0x10002, "C"), 10), Ok(vec![0x1002]));
    assert_eq!(run(&|w| content(w, 1, "o"), 10), Ok(vec![0x1001, 0x1002]));
    assert_eq!(run(&|w| content(w, 0, "alice"), 10), Ok(vec![0x1000]));
    assert_eq!(run(&|w| content(w, 1, "o"), 1), Err(status::TABLE_TOO_BIG));
    // PropertyRestriction_r RELOP_GT on PidTagAccount (string8 value "b").
    let greater = |w: &mut NdrWriter| {
        for v in [4, 4, 2, tag::ACCOUNT] {
            w.put_u32(v);
        }
        w.put_pointer(true);
        for v in [with_type(tag::ACCOUNT, ptype::STRING8), 0, ptype::STRING8] {
            w.put_u32(v);
        }
        w.put_pointer(true);
        w.put_string(b"b");
    };
    assert_eq!(run(&greater, 10), Ok(vec![0x1001, 0x1002]));
    // OrRestriction_r of a SizeRestriction_r: TooComplex.
    let size = |w: &mut NdrWriter| {
        w.put_u32(1);
        w.put_u32(1);
        w.put_u32(1);
        w.put_pointer(true);
        w.put_conformance(1);
        for v in [7, 7, 4, tag::ACCOUNT, 3] {
            w.put_u32(v);
        }
    };
    assert_eq!(run(&size, 10), Err(status::TOO_COMPLEX));
}

#[test]
fn update_stat_moves_by_delta_and_reports_it() {
    let book = AddressBook::from_world(&small_world());
    let update = |current_rec, delta, container_id| {
        let mut w = NdrWriter::new();
        w.put_u32(0);
        Stat {
            current_rec,
            delta,
            container_id,
            ..Stat::default()
        }
        .write(&mut w);
        w.put_pointer(true);
        w.put_i32(0);
        let stub = w.into_bytes();
        let out = ops::update_stat(&book, &mut harness_wire::ndr::NdrReader::new(&stub)).unwrap();
        let mut r = harness_wire::ndr::NdrReader::new(&out);
        let stat = Stat::read(&mut r).unwrap();
        let ptr = r.unique_ptr().unwrap();
        let moved = r.pointee(ptr, |r| r.i32()).unwrap().unwrap();
        (stat.current_rec, stat.num_pos, moved, r.u32().unwrap())
    };
    assert_eq!(update(ops::MID_BEGINNING_OF_TABLE, 2, 0), (0x1002, 2, 2, 0));
    assert_eq!(update(ops::MID_END_OF_TABLE, -5, 0), (0x1000, 0, -3, 0));
    assert_eq!(update(0x1001, 5, 0), (ops::MID_END_OF_TABLE, 3, 2, 0));
    assert_eq!(update(0x1001, 0, 7).3, status::INVALID_BOOKMARK);
    assert_eq!(update(0x4242, 0, 0).3, status::NOT_FOUND);
}

#[test]
fn address_book_entries_follow_the_directory() {
    let book = AddressBook::from_world(&small_world());
    let alice = &book.entries()[0];
    assert_eq!(alice.mid, book::FIRST_MID);
    assert_eq!(
        alice.legacy_dn,
        "/o=EXAMPLE/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn=alice"
    );
    assert_eq!(alice.smtp_address, "alice@example.test");
    let id = book::permanent_entry_id(book::DT_MAILUSER, &alice.legacy_dn);
    assert_eq!(&id[..4], &[0; 4]);
    assert_eq!(&id[4..20], &book::GUID_NSPI);
    assert_eq!(&id[20..28], &[1, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&id[28..id.len() - 1], alice.legacy_dn.as_bytes());
    assert_eq!(book, AddressBook::from_world(&small_world()), "stable");
    let by_guid = format!("/GUID={}", book::hex(&alice.object_guid));
    assert_eq!(book.by_dn(&by_guid), Some(alice));
    // Ephemeral entry ids carry the server GUID and the MId.
    let style = book::ValueStyle {
        ephemeral_ids: true,
        ..Default::default()
    };
    let PropValue::Binary(eph) = book.value(Some(alice), tag::ENTRY_ID, style).value else {
        panic!()
    };
    assert_eq!(eph[0], 0x87);
    assert_eq!(&eph[4..20], &book.server_guid);
    assert_eq!(&eph[28..32], &0x1000u32.to_le_bytes());
}

#[test]
fn resolution_tells_exact_prefix_and_ambiguous_names() {
    let mut world = small_world();
    world.directory.insert("bobby", "x");
    let book = AddressBook::from_world(&world);
    let mid = |name: &str| book.by_dn(&book::legacy_dn("EXAMPLE", name)).unwrap().mid;
    assert_eq!(book.resolve("bob"), book::Resolution::Resolved(mid("bob")));
    assert_eq!(
        book.resolve("SMTP:Bobby@Example.Test"),
        book::Resolution::Resolved(mid("bobby"))
    );
    assert_eq!(book.resolve("bo"), book::Resolution::Ambiguous);
    assert_eq!(
        book.resolve("car"),
        book::Resolution::Resolved(mid("carol"))
    );
    assert_eq!(book.resolve("zed"), book::Resolution::Unresolved);
    assert_eq!(book.resolve(" "), book::Resolution::Unresolved);
}

#[test]
fn values_follow_the_asked_type_and_code_page() {
    let book = AddressBook::from_world(&small_world());
    let alice = book.entries().first();
    let teletex = book::ValueStyle {
        code_page: 0x4F25,
        ..Default::default()
    };
    let unicode = book::ValueStyle {
        code_page: book::CP_WINUNICODE,
        ..Default::default()
    };
    let name8 = with_type(tag::DISPLAY_NAME, ptype::STRING8);
    assert_eq!(
        book.value(alice, name8, teletex).value,
        PropValue::String8(b"alice".to_vec())
    );
    assert_eq!(book.value(alice, name8, unicode).tag, tag::DISPLAY_NAME);
    let unspecified = with_type(tag::OBJECT_TYPE, ptype::UNSPECIFIED);
    assert_eq!(
        book.value(alice, unspecified, teletex).tag,
        tag::OBJECT_TYPE
    );
    let wrong_type = with_type(tag::OBJECT_TYPE, ptype::BINARY);
    assert_eq!(
        book.value(alice, wrong_type, teletex).value,
        PropValue::Error(book::NOT_FOUND)
    );
    assert_eq!(
        book.value(None, tag::DISPLAY_NAME, teletex).tag,
        with_type(tag::DISPLAY_NAME, ptype::ERROR)
    );
}

#[test]
fn property_values_of_every_type_round_trip() {
    // Encoded as a response row, decoded by the request decoder (a Content restriction's
    // value reads the same PropertyValue_r).
    let values = [
        PropValue::I16(-2),
        PropValue::I32(7),
        PropValue::Bool(1),
        PropValue::String8(b"x".to_vec()),
        PropValue::Unicode("\u{e9}".into()),
        PropValue::Binary(vec![1, 2, 3]),
        PropValue::Guid([9; 16]),
        PropValue::Time(0x0102_0304_0506_0708),
        PropValue::Error(book::NOT_FOUND),
        PropValue::MvI16(vec![1, 2]),
        PropValue::MvI32(vec![3]),
        PropValue::MvString8(vec![b"a".to_vec(), b"bc".to_vec()]),
        PropValue::MvBinary(vec![vec![1], vec![]]),
        PropValue::MvGuid(vec![[1; 16]]),
        PropValue::MvUnicode(vec!["d".into()]),
        PropValue::MvTime(vec![5]),
    ];
    for value in values {
        let ty = value.native_type();
        let tag = 0x6000_0000 | ty;
        // A Restriction_r pointee: ContentRestriction_r with the value as lpProp.
        let mut w = NdrWriter::new();
        w.put_pointer(true);
        for v in [3, 3, 0, tag] {
            w.put_u32(v);
        }
        w.put_pointer(true);
        let row = vec![types::PropertyValue {
            tag,
            value: value.clone(),
        }];
        // The value's flat part and pointees, as a row writes them after max_count.
        let mut rw = NdrWriter::new();
        types::write_row_ptr(&mut rw, Some(&row));
        let encoded = rw.into_bytes();
        // Skip the row's referent, Reserved, cValues, lpProps and max_count (20 octets);
        // referent ids differ but any non-zero one reads the same.
        w.put_bytes(&encoded[20..]);
        let stub = w.into_bytes();
        let restriction =
            types::read_restriction_ptr(&mut harness_wire::ndr::NdrReader::new(&stub))
                .unwrap()
                .unwrap();
        let Restriction::Content {
            value: Some(read), ..
        } = restriction
        else {
            panic!("{restriction:?}")
        };
        assert_eq!(read.value, value, "{tag:#x}");
    }
}

/// A `nspi_call` fuzz input of `(opnum, flags, stub)` calls.
fn fuzz_input(calls: &[(u16, u8, Vec<u8>)]) -> Vec<u8> {
    let mut input = Vec::new();
    for (opnum, flags, stub) in calls {
        input.push(*opnum as u8);
        input.push(*flags);
        input.extend_from_slice(&(stub.len() as u16).to_le_bytes());
        input.extend_from_slice(stub);
    }
    input
}

/// The seeds of `corpus/fuzz/nspi_call/`: the impacket requests (all in a row, and each
/// after a bind), a too deep restriction, a handle used across connections and run down.
fn fuzz_seeds() -> Vec<(String, Vec<u8>)> {
    let call = |name: &str| {
        let (_, opnum, req) = SEQUENCE.iter().find(|(n, _, _)| *n == name).unwrap();
        (*opnum, 0u8, unhex(req))
    };
    let sequence: Vec<_> = SEQUENCE.iter().map(|(name, _, _)| call(name)).collect();
    let mut seeds = vec![("impacket-sequence".to_string(), fuzz_input(&sequence))];
    for (name, _, _) in &SEQUENCE[1..SEQUENCE.len() - 1] {
        seeds.push((
            format!("bind-{}", name.replace('_', "-")),
            fuzz_input(&[call("bind"), call(name)]),
        ));
    }
    let handle = ContextHandle::new(Uuid::new(1, 0x534E, 0x4950, [0; 8]));
    let deep = get_matches_stub(
        &handle,
        |w| nested_nots(w, types::MAX_RESTRICTION_DEPTH + 1),
        10,
    );
    seeds.push((
        "bind-deep-restriction".into(),
        fuzz_input(&[call("bind"), (5, 0, deep)]),
    ));
    let columns = call("query_columns").2;
    seeds.push((
        "bind-other-connection-rundown".into(),
        fuzz_input(&[
            call("bind"),
            (16, 2, columns.clone()),
            (16, 4, columns.clone()),
            (16, 0, columns),
        ]),
    ));
    seeds
}

/// `HARNESS_WRITE_SEEDS=1` rewrites them.
#[test]
fn fuzz_seeds_match_the_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpus/fuzz/nspi_call");
    for (name, data) in fuzz_seeds() {
        let path = dir.join(&name);
        if std::env::var_os("HARNESS_WRITE_SEEDS").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &data).unwrap();
        }
        assert_eq!(std::fs::read(&path).ok(), Some(data.clone()), "{name}");
        fuzz::fuzz_call(&data);
    }
}

#[test]
fn fuzz_target_survives_odd_inputs() {
    fuzz::fuzz_call(&[]);
    fuzz::fuzz_call(&[0, 0xFF, 0xFF, 0xFF, 1, 2, 3]);
    // 300 binds on one connection, some without the book.
    let bind = unhex(BIND_REQ);
    let calls: Vec<_> = (0..300u32)
        .map(|i| (0, (i % 3 * 8) as u8, bind.clone()))
        .collect();
    fuzz::fuzz_call(&fuzz_input(&calls));
}

#[test]
fn responses_over_the_value_cap_are_out_of_resources() {
    let nspi = Nspi::for_world(&small_world());
    let handle = bind(&nspi, 0);
    let query = |mids: u32, tags: usize| {
        let mut w = NdrWriter::new();
        w.put_context_handle(&handle);
        w.put_u32(0);
        Stat::default().write(&mut w);
        w.put_u32(mids);
        w.put_pointer(true);
        w.put_conformance(mids as usize);
        (0..mids).for_each(|m| w.put_u32(0x1000 + m % 3));
        w.put_u32(u32::MAX);
        w.put_pointer(true);
        types::write_prop_tag_array(&mut w, &vec![tag::DISPLAY_NAME; tags]);
        respond(&nspi, 0, 3, &w.into_bytes())
    };
    let CallOutcome::Response(resp) = query(300, 300) else {
        panic!()
    };
    // STAT, NULL ppRows, OutOfResources.
    assert_eq!(resp.len(), 36 + 4 + 4);
    assert_eq!(resp[40..], status::OUT_OF_RESOURCES.to_le_bytes());
    assert_eq!(return_value(query(256, 256)), status::SUCCESS);
}

#[test]
fn mutated_seeds_never_panic() {
    // A few thousand deterministic mutations (octet overwrites, truncations) of the seeds.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for (_, seed) in fuzz_seeds() {
        for _ in 0..200 {
            let mut data = seed.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % data.len();
                data[at] = next() as u8;
            }
            if next() % 4 == 0 {
                data.truncate((next() as usize) % data.len());
            }
            fuzz::fuzz_call(&data);
        }
    }
}

#[test]
fn compare_mids_and_get_prop_list_refuse_unknown_objects() {
    let book = AddressBook::from_world(&small_world());
    let run = |op: ops::Operation, words: &[u32]| {
        let mut w = NdrWriter::new();
        words.iter().for_each(|v| w.put_u32(*v));
        let stub = w.into_bytes();
        op(&book, &mut harness_wire::ndr::NdrReader::new(&stub)).unwrap()
    };
    // Reserved, STAT (9 DWORDs: ContainerID second), MId1, MId2.
    let compare = |container, a, b| {
        run(
            ops::compare_mids,
            &[0, 0, container, 0, 0, 0, 0, 0, 0, 0, a, b],
        )
    };
    assert_eq!(
        compare(0, 0x1000, 0x1002),
        [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]
    );
    assert_eq!(compare(0, 0x1001, 0x1001), [0; 8]);
    assert_eq!(
        compare(0, 0x1001, 0x4242)[4..],
        status::GENERAL_FAILURE.to_le_bytes()
    );
    assert_eq!(
        compare(5, 0x1000, 0x1001)[4..],
        status::INVALID_BOOKMARK.to_le_bytes()
    );
    // dwFlags, dwMId, CodePage: NULL ppPropTags and NotFound.
    let unknown = run(ops::get_prop_list, &[0, 0x4242, 0x4E4]);
    assert_eq!(unknown, [0, 0, 0, 0, 0x0F, 0x01, 0x04, 0x80]);
}
