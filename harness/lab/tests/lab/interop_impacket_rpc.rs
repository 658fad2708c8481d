//! DCE/RPC clients and dissectors nobody here wrote, against the lab's RPC listeners
//! (issue #15): impacket finds RFR and NSPI through the endpoint mapper, calls RFR with
//! NTLM at levels 2, 5 and 6 and NSPI (bind, special table, rows of the address book) at
//! level 6, a wrong password is refused as Windows refuses it, and tshark,
//! given the password, decrypts the sealed calls of a capture and names every
//! operation, with no malformed packet.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::serve::rpc::RpcRole;
use harness::Lab;
use harness_core::dcerpc::emsmdb::EmsmdbProfile;

fn script() -> PathBuf {
    common::peers::project_root().join("harness/lab/tests/clients/dcerpc_impacket.py")
}

async fn rpc_lab() -> Lab {
    common::rpc_lab(Some(15)).await
}

/// What the impacket script reported, one JSON object per check.
fn checks(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

async fn run_impacket(python: &Path, lab: &Lab) -> Vec<serde_json::Value> {
    let epm = lab.rpc_addr(RpcRole::EndpointMapper).expect("epm listener");
    let port = epm.port().to_string();
    let script = script();
    let args = [
        script.to_str().expect("utf-8 path"),
        &port,
        "alice",
        "secret",
        "EXAMPLE",
    ];
    let ran = common::run(python, &args).await;
    assert!(ran.ok(), "{ran:?}");
    checks(&ran.stdout)
}

#[tokio::test]
async fn impacket_finds_rfr_and_nspi_through_the_endpoint_mapper_and_calls_them() {
    let Some(python) = common::peers::impacket_python() else {
        return;
    };
    let lab = rpc_lab().await;
    let rpc = lab.rpc_addr(RpcRole::Exchange).expect("rpc listener");
    let binding = format!("ncacn_ip_tcp:127.0.0.1[{}]", rpc.port());
    let host = lab.world().hostname.clone();
    let got = run_impacket(&python, &lab).await;
    let dn = |user: &str| {
        format!(
            "/o=EXAMPLE/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn={user}"
        )
    };
    let expected = vec![
        serde_json::json!({"check": "ept_map", "interface": "rfr", "binding": binding}),
        serde_json::json!({"check": "ept_map", "interface": "nspi", "binding": binding}),
        serde_json::json!({"check": "ept_lookup", "entries": [
            [binding, "Exchange EMSMDB"],
            [binding, "Exchange ASYNCEMSMDB"],
            [binding, "Exchange NSPI"],
            [binding, "Exchange RFR"],
        ]}),
        serde_json::json!({"check": "rfr", "level": 2, "dsa": host, "fqdn": host}),
        serde_json::json!({"check": "rfr", "level": 5, "dsa": host, "fqdn": host}),
        serde_json::json!({"check": "rfr", "level": 6, "dsa": host, "fqdn": host}),
        // Windows' answer to a request after a failed NTLM logon (Samba's would be
        // nca_s_proto_error).
        serde_json::json!({"check": "rfr_wrong_password", "level": 6, "error": "rpc_s_access_denied"}),
        // The address book is the lab's directory: its three users, sealed at level 6.
        serde_json::json!({"check": "nspi", "level": 6, "tables": ["Global Address List"],
            "rows": [["alice", dn("alice")], ["bob", dn("bob")], ["user", dn("user")]]}),
    ];
    pretty_assertions::assert_eq!(got, expected);
    lab.shutdown().await;
}

/// Runs a bash script of the project's with a bound; its stdout, or a panic with both
/// streams.
pub(crate) fn bash(script: &str, args: &[&str]) -> String {
    let path = common::peers::project_root().join(script);
    let out = Command::new("timeout")
        .arg("60")
        .arg("bash")
        .arg(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", path.display()));
    assert!(
        out.status.success(),
        "{} {args:?}: {}\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn tshark_decrypts_and_names_every_call_of_a_sealed_session() {
    let Some(python) = common::peers::impacket_python() else {
        return;
    };
    let Some(tshark) = common::require_tool("tshark", "scripts/peers/install.sh (tshark)") else {
        return;
    };
    // Exchange 2003's EMSMDB, so that the session can make the calls Wireshark's MAPI
    // dissector knows (EcDoConnect, EcDoRpc) beside the extended ones.
    let lab = common::rpc_lab_as(Some(15), EmsmdbProfile::Exchange2003).await;
    let rpc = lab
        .rpc_addr(RpcRole::Exchange)
        .expect("rpc")
        .port()
        .to_string();
    let epm = lab
        .rpc_addr(RpcRole::EndpointMapper)
        .expect("epm")
        .port()
        .to_string();
    let dir = tempdir();
    let pcap = dir.join("rpc.pcapng");
    let pcap_s = pcap.to_str().expect("utf-8").to_string();
    let pid = bash(
        "scripts/peers/tshark/capture.sh",
        &[&pcap_s, "30", &rpc, &epm],
    );
    let pid = pid.trim().to_string();
    run_impacket(&python, &lab).await;
    mapi_session(&lab).await;
    bash("scripts/peers/tshark/stop_capture.sh", &[&pid]);
    lab.shutdown().await;

    let decode = |extra: &[&str]| {
        let out = Command::new(&tshark)
            .args(["-r", &pcap_s, "-o", "ntlmssp.nt_password:secret"])
            .args(["-d", &format!("tcp.port=={rpc},dcerpc")])
            .args(["-d", &format!("tcp.port=={epm},dcerpc")])
            .args(extra)
            .output()
            .expect("tshark runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let summary = decode(&[]);
    assert!(!summary.contains("Malformed"), "{summary}");
    for op in [
        "Map request, RFR",
        "Map response, RFR",
        "Lookup response, Service:Exchange EMSMDB, Service:Exchange ASYNCEMSMDB, \
         Service:Exchange NSPI, Service:Exchange RFR",
        "RfrGetNewDSA request",
        "RfrGetNewDSA response",
        "RfrGetFQDNFromLegacyDN response",
        "NspiBind request",
        "NspiBind response",
        // Wireshark's name for opnum 12 (NspiGetSpecialTable in [MS-OXNSPI]).
        "NspiGetHierarchyInfo response",
        "NspiQueryRows response",
        "NspiUnbind response",
        // EMSMDB: Wireshark 4.0's MAPI dissector names EcDoConnect, EcDoDisconnect and
        // EcDoRpc (opnums 0 to 2, the Exchange 2003 lab's), reading RopLogon as its
        // "OpenMsgStore"; it shows EcDoConnectEx and EcDoRpcExt2 (10, 11) as unknown
        // operations, not malformed.
        "MAPI V0.81 (32bit NDR), NTLMSSP_NEGOTIATE",
        "Unknown operation 10 request",
        "Unknown operation 11 response",
        "EcDoConnect request",
        "EcDoConnect response",
        "EcDoRpc request + op_MAPI_OpenMsgStore",
        "EcDoRpc response + op_MAPI_OpenMsgStore",
        "EcDoDisconnect request",
        "EcDoDisconnect response",
        "NTLMSSP_AUTH, User: EXAMPLE\\alice",
        "nca_s_fault_access_denied",
    ] {
        assert!(summary.contains(op), "no {op:?} in\n{summary}");
    }
    // The server's answer read out of every RfrGetNewDSA response: the level-6 one only
    // decodes when tshark has decrypted it with the password.
    let answers = decode(&[
        "-Y",
        "rfr.RfrGetNewDSA.ppszServer",
        "-T",
        "fields",
        "-e",
        "rfr.RfrGetNewDSA.ppszServer",
    ]);
    let host = "mail.example.test";
    let named: Vec<&str> = answers.lines().filter(|l| l.contains(host)).collect();
    assert_eq!(
        named.len(),
        3,
        "levels 2, 5 and 6 each named {host}:\n{answers}"
    );
    // EcDoConnect's request and response read field by field: the DN in, alice's
    // display name out (after the handle, the three timings, picxr and szDNPrefix).
    let connect = decode(&[
        "-Y",
        "mapi.EcDoConnect.name || mapi.EcDoConnect.user",
        "-T",
        "fields",
        "-e",
        "mapi.EcDoConnect.name",
        "-e",
        "mapi.EcDoConnect.user",
    ]);
    let dn = harness_core::dcerpc::legacy_dn::user_dn("EXAMPLE", "alice");
    assert!(
        connect.lines().any(|l| l.trim() == dn),
        "szUserDN {dn}:\n{connect}"
    );
    assert!(
        connect.lines().any(|l| l.trim() == "alice"),
        "szDisplayName:\n{connect}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A short EMSMDB session of the project's own client, sealed at level 6 (impacket has no
/// EMSMDB client), on an Exchange 2003 lab: EcDoConnectEx, EcDoRpcExt2 with RopLogon,
/// EcDoDisconnect, then EcDoConnect, EcDoRpc with RopLogon, EcDoDisconnect.
async fn mapi_session(lab: &Lab) {
    use harness::tools::dcerpc_client::{ntlm_security, RpcBind, RpcConnection};
    use harness_core::dcerpc::client::AuthLevel;
    use harness_core::dcerpc::emsmdb::client::{
        connect_stub, handle_stub, legacy_connect_stub, legacy_rpc_stub, logon_rop, parse_connect,
        parse_handle_response, parse_legacy_connect, parse_legacy_rpc, parse_rpc, rop_request,
        rpc_stub,
    };
    use harness_core::dcerpc::emsmdb::{
        EMSMDB_SYNTAX, OP_CONNECT, OP_CONNECT_EX, OP_DISCONNECT, OP_RPC, OP_RPC_EXT2,
    };
    let exchange = lab.rpc_addr(RpcRole::Exchange).expect("rpc");
    let security = ntlm_security("alice", "secret", "EXAMPLE", AuthLevel::PKT_PRIVACY);
    let bind = RpcBind::new(EMSMDB_SYNTAX).with_security(security);
    let mut mapi = RpcConnection::connect(exchange, bind)
        .await
        .expect("EMSMDB binds");
    let dn = harness_core::dcerpc::legacy_dn::user_dn(&lab.world().domain, "alice");
    // The extended calls (10, 11), then Exchange 2003's (0, 2); each session ended.
    for legacy in [false, true] {
        let (connected, logged_on) = if legacy {
            let reply = mapi.call(OP_CONNECT, &legacy_connect_stub(&dn)).await;
            let connected = parse_legacy_connect(&reply.expect("EcDoConnect")).expect("reads");
            let stub = legacy_rpc_stub(&connected.cxh, &logon_rop(0, &dn), &[u32::MAX], 0x8000);
            let reply = mapi.call(OP_RPC, &stub).await;
            (connected, parse_legacy_rpc(&reply.expect("EcDoRpc")))
        } else {
            let reply = mapi.call(OP_CONNECT_EX, &connect_stub(&dn, &[], 0)).await;
            let connected = parse_connect(&reply.expect("EcDoConnectEx")).expect("reads");
            let rgb_in = rop_request(&logon_rop(0, &dn), &[u32::MAX], true);
            let stub = rpc_stub(&connected.cxh, 0, &rgb_in, rgb_in.len() as u32);
            let reply = mapi.call(OP_RPC_EXT2, &stub).await;
            (connected, parse_rpc(&reply.expect("EcDoRpcExt2")))
        };
        assert_eq!(connected.status, 0);
        assert_eq!(logged_on.expect("reads").status, 0);
        let reply = mapi.call(OP_DISCONNECT, &handle_stub(&connected.cxh)).await;
        assert_eq!(
            parse_handle_response(&reply.expect("EcDoDisconnect")).map(|r| r.1),
            Ok(0)
        );
    }
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("harness-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
