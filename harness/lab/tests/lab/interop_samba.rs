//! The harness's own DCE/RPC client against Samba 4.17, a server nobody here wrote
//! (`scripts/peers/samba/start.sh`: samba-dcerpcd with the endpoint mapper on
//! 127.0.0.1:135, users alice/secret and user/pass). Stub data is built and read here
//! from the NDR wire layout ([C706] 14, the endpoint mapper's ept_map of [C706] Appendix
//! O / [MS-RPCE] 2.2.1.2, srvsvc NetrRemoteTOD of [MS-SRVS] 3.1.4.21).
//!
//! Samba listens on the fixed port 135, so one instance runs at a time: the tests take a
//! lock, and stop Samba (by PID) before letting go of it.

use crate::common;

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use common::peers::{self, free_port, project_root, Peer};
use harness::tools::dcerpc_client::{RpcBind, RpcConnection, RpcError};
use harness_core::dcerpc::client::{
    AuthLevel, BindSecurity, ClientConfig, FaultStatus, SyntaxId, Uuid, MIN_FRAG,
};
use harness_core::dcerpc::epm::{
    map_request, Tower, EPM_PORT, EPM_SYNTAX, EPT_S_NOT_REGISTERED, OPNUM_EPT_MAP,
};
use harness_wire::ndr::{NdrError, NdrReader, NdrWriter};

/// srvsvc, 4b324fc8-1670-01d3-1278-5a47bf6ee188 v3.0.
const SRVSVC: SyntaxId = SyntaxId::new(
    Uuid::new(
        0x4b32_4fc8,
        0x1670,
        0x01d3,
        [0x12, 0x78, 0x5a, 0x47, 0xbf, 0x6e, 0xe1, 0x88],
    ),
    3,
    0,
);
const NETR_REMOTE_TOD: u16 = 28;
const NETR_SHARE_GET_INFO: u16 = 16;

/// samr, 12345778-1234-abcd-ef00-0123456789ac v1.0 ([MS-SAMR] 1.9).
const SAMR: SyntaxId = SyntaxId::new(
    Uuid::new(
        0x1234_5778,
        0x1234,
        0xabcd,
        [0xef, 0x00, 0x01, 0x23, 0x45, 0x67, 0x89, 0xac],
    ),
    1,
    0,
);
/// [MS-SAMR] 3.1.5.1.4 SamrConnect, 3.1.5.13.1 SamrCloseHandle.
const SAMR_CONNECT: u16 = 0;
const SAMR_CLOSE_HANDLE: u16 = 1;

static ONE_SAMBA: Mutex<()> = Mutex::new(());

/// A running Samba; dropping it stops Samba and waits for that before the next test may
/// start one.
struct Samba {
    peer: Peer,
    _turn: MutexGuard<'static, ()>,
}

impl Drop for Samba {
    fn drop(&mut self) {
        let stop = project_root().join("scripts/peers/samba/stop.sh");
        let _ = Command::new("bash")
            .arg(stop)
            .arg(&self.peer.rundir)
            .output();
    }
}

fn samba() -> Option<Samba> {
    let turn = ONE_SAMBA.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let peer = peers::try_start("samba", &[free_port().to_string()])?;
    eprintln!("samba {} up in {:?}", peer.pids, started.elapsed());
    Some(Samba { peer, _turn: turn })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// ept_map's request stub: object (a NULL full pointer), map_tower (a referent and the
/// twr_t: hoisted conformance, tower_length, the octets), entry_handle (nil), max_towers.
/// The TCP port in the first tower of an ept_map reply (on 127.0.0.1): entry_handle,
/// num_towers, the conformant varying array of tower pointers, the twr_t pointees, then
/// the status, which must be 0.
fn port_from_ept_map(reply: &[u8]) -> Result<u16, String> {
    let e = |e: NdrError| e.to_string();
    let mut r = NdrReader::new(reply);
    r.context_handle().map_err(e)?;
    let num_towers = r.u32().map_err(e)?;
    let referents = r
        .conformant_varying_array(4, |r| r.unique_ptr())
        .map_err(e)?;
    if referents.len() != num_towers as usize {
        return Err(format!(
            "{num_towers} towers, {} in the array",
            referents.len()
        ));
    }
    let mut towers = Vec::new();
    for referent in referents {
        let tower = r.pointee(referent, |r| {
            let max = r.conformance(1)?;
            let len = r.u32_in_range(0, max as u32)?;
            Ok(r.bytes(len as usize)?.to_vec())
        });
        towers.extend(tower.map_err(e)?);
    }
    let status = r.u32().map_err(e)?;
    if status != 0 {
        return Err(format!("ept_map status {status:#x}"));
    }
    let tower = towers.first().ok_or("no tower")?;
    let tower = Tower::decode(tower).map_err(|e| e.to_string())?;
    let (port, ip) = tower.tcp_endpoint().ok_or("not an ncacn_ip_tcp tower")?;
    if ip != Ipv4Addr::LOCALHOST {
        return Err(format!("mapped to {ip}"));
    }
    Ok(port)
}

/// Asks the endpoint mapper on 127.0.0.1:135 for srvsvc's ncacn_ip_tcp port.
async fn srvsvc_port() -> u16 {
    mapped_port(SRVSVC).await
}

/// Asks the endpoint mapper on 127.0.0.1:135 for `iface`'s ncacn_ip_tcp port.
async fn mapped_port(iface: SyntaxId) -> u16 {
    let bind = RpcBind {
        config: ClientConfig {
            bind_time_features: Some(3),
            ..ClientConfig::default()
        },
        ..RpcBind::new(EPM_SYNTAX)
    };
    let mut epm = RpcConnection::connect(([127, 0, 0, 1], EPM_PORT).into(), bind)
        .await
        .expect("bind to the endpoint mapper");
    let acked = epm.bind_acked().clone();
    eprintln!("epm bind_ack: {acked:?}");
    assert_eq!(acked.secondary_address, "135");
    assert!(
        acked.features.is_some(),
        "Samba answers the feature context"
    );
    let reply = epm
        .call(OPNUM_EPT_MAP, &map_request(iface, 4))
        .await
        .expect("ept_map");
    port_from_ept_map(&reply).unwrap_or_else(|e| panic!("ept_map reply {reply:02x?}: {e}"))
}

#[test]
fn endpoint_mapper_maps_srvsvc_over_an_unauthenticated_bind() {
    let Some(_samba) = samba() else { return };
    let started = Instant::now();
    runtime().block_on(async {
        let port = srvsvc_port().await;
        assert!((15100..=15199).contains(&port), "srvsvc on port {port}");
        // The port answers binds for srvsvc.
        let rpc = RpcConnection::connect(([127, 0, 0, 1], port).into(), RpcBind::new(SRVSVC))
            .await
            .expect("bind to srvsvc");
        // Samba 4.17 leaves the secondary address empty on its dynamic ports (the
        // endpoint mapper's bind_ack says "135").
        let sec_addr = &rpc.bind_acked().secondary_address;
        assert!(
            sec_addr.is_empty() || *sec_addr == port.to_string(),
            "{sec_addr:?}"
        );
    });
    eprintln!("ept_map and bind in {:?}", started.elapsed());
}

#[test]
fn an_unknown_interface_is_not_mapped() {
    let Some(_samba) = samba() else { return };
    runtime().block_on(async {
        let mut epm =
            RpcConnection::connect(([127, 0, 0, 1], EPM_PORT).into(), RpcBind::new(EPM_SYNTAX))
                .await
                .expect("bind to the endpoint mapper");
        let nobody = SyntaxId::new(Uuid::new(0x0bad_cafe, 1, 2, [3; 8]), 1, 0);
        let reply = epm
            .call(OPNUM_EPT_MAP, &map_request(nobody, 4))
            .await
            .expect("ept_map answers");
        // No tower, status EPT_S_NOT_REGISTERED.
        let mapped = port_from_ept_map(&reply);
        let want = format!("ept_map status {EPT_S_NOT_REGISTERED:#x}");
        assert_eq!(mapped, Err(want), "{reply:02x?}");
    });
}

/// An NTLM security context for `user` at `level`, as Samba's `ntlm auth =
/// ntlmv2-only` wants it (NTLMv2 with a MIC).
fn ntlm(user: &str, password: &str, level: AuthLevel) -> BindSecurity {
    harness::tools::dcerpc_client::ntlm_security(user, password, "", level)
}

/// NetrRemoteTOD's request: ServerName, a unique pointer to a `[string] wchar_t`
/// (NULL when `server` is None).
fn remote_tod_stub(server: Option<&str>) -> Vec<u8> {
    let mut w = NdrWriter::new();
    w.put_pointer(server.is_some());
    if let Some(name) = server {
        w.put_wstring(name);
    }
    w.into_bytes()
}

/// NetrRemoteTOD's reply: a unique pointer to TIME_OF_DAY_INFO (12 unsigned longs:
/// elapsedt, msecs, hours, mins, secs, hunds, timezone, tinterval, day, month, year,
/// weekday), then NET_API_STATUS. Returns the fields.
fn decode_tod(reply: &[u8]) -> Result<[u32; 12], String> {
    let e = |e: NdrError| e.to_string();
    let mut r = NdrReader::new(reply);
    let referent = r.unique_ptr().map_err(e)?;
    let mut tod = [0u32; 12];
    let present = r.pointee(referent, |r| {
        for field in &mut tod {
            *field = r.u32()?;
        }
        Ok(())
    });
    present.map_err(e)?.ok_or("NULL TIME_OF_DAY_INFO")?;
    let status = r.u32().map_err(e)?;
    if status != 0 || !r.is_empty() {
        return Err(format!(
            "status {status:#x}, {} octets after it",
            r.remaining()
        ));
    }
    Ok(tod)
}

fn plausible(tod: &[u32; 12]) -> bool {
    let (day, month, year, weekday) = (tod[8], tod[9], tod[10], tod[11]);
    (2024..2100).contains(&year)
        && (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && weekday < 7
}

#[test]
fn ntlm_sealed_and_signed_calls_to_srvsvc() {
    let Some(samba) = samba() else { return };
    runtime().block_on(async {
        let addr = ([127, 0, 0, 1], srvsvc_port().await).into();
        for (level, windows_like) in [
            (AuthLevel::PKT_PRIVACY, true),
            (AuthLevel::PKT_PRIVACY, false),
            (AuthLevel::PKT_INTEGRITY, false),
        ] {
            let started = Instant::now();
            let bind = RpcBind {
                config: ClientConfig {
                    bind_time_features: windows_like.then_some(3),
                    support_header_sign: windows_like,
                    ..ClientConfig::default()
                },
                ..RpcBind::new(SRVSVC).with_security(ntlm("alice", "secret", level))
            };
            let mut rpc = RpcConnection::connect(addr, bind).await.unwrap_or_else(|e| {
                panic!("NTLM bind at {level:?}: {e}\n{}", samba_log(&samba))
            });
            eprintln!("{level:?} bind_ack: {:?}", rpc.bind_acked());
            let reply = rpc
                .call(NETR_REMOTE_TOD, &remote_tod_stub(None))
                .await
                .unwrap_or_else(|e| panic!("NetrRemoteTOD at {level:?}: {e}\n{}", samba_log(&samba)));
            let tod = decode_tod(&reply).unwrap_or_else(|e| panic!("{reply:02x?}: {e}"));
            assert!(plausible(&tod), "{tod:?}");
            // A request over two fragments: a server name of 3000 characters (6000
            // octets of UTF-16) against 4280-octet fragments.
            let long = "S".repeat(3000);
            let reply = rpc
                .call(NETR_REMOTE_TOD, &remote_tod_stub(Some(&long)))
                .await
                .unwrap_or_else(|e| panic!("fragmented NetrRemoteTOD at {level:?}: {e}"));
            let tod = decode_tod(&reply).unwrap_or_else(|e| panic!("{reply:02x?}: {e}"));
            assert!(plausible(&tod), "{tod:?}");
            eprintln!(
                "{level:?} (features and header sign: {windows_like}): bind and 2 calls in {:?}, {}-{:02}-{:02}",
                started.elapsed(),
                tod[10],
                tod[9],
                tod[8]
            );
        }
    });
}

/// NetrShareGetInfo's request: ServerName (NULL unique pointer), NetName (a top-level
/// `[string] wchar_t*`, a ref pointer: the string at once), Level.
fn share_get_info_stub(share: &str, level: u32) -> Vec<u8> {
    let mut w = NdrWriter::new();
    w.put_pointer(false);
    w.put_wstring(share);
    w.put_u32(level);
    w.into_bytes()
}

/// NetrShareGetInfo's level-1 reply: the union's discriminant, a unique pointer to
/// SHARE_INFO_1 {netname pointer, type, remark pointer}, the two deferred strings, then
/// the status. Returns (netname, type, remark).
fn decode_share_info_1(reply: &[u8]) -> Result<(String, u32, String), String> {
    let e = |e: NdrError| e.to_string();
    let mut r = NdrReader::new(reply);
    let level = r.u32().map_err(e)?;
    if level != 1 {
        return Err(format!("level {level}"));
    }
    let referent = r.unique_ptr().map_err(e)?;
    let info = r.pointee(referent, |r| {
        let (name, kind, remark) = (r.unique_ptr()?, r.u32()?, r.unique_ptr()?);
        let name = r.pointee(name, |r| r.wstring())?;
        let remark = r.pointee(remark, |r| r.wstring())?;
        Ok((name.unwrap_or_default(), kind, remark.unwrap_or_default()))
    });
    let info = info.map_err(e)?.ok_or("NULL SHARE_INFO_1")?;
    let status = r.u32().map_err(e)?;
    if status != 0 || !r.is_empty() {
        return Err(format!(
            "status {status:#x}, {} octets after it",
            r.remaining()
        ));
    }
    Ok(info)
}

#[test]
fn sealed_replies_over_many_fragments_are_joined() {
    let Some(samba) = samba() else { return };
    runtime().block_on(async {
        let addr = ([127, 0, 0, 1], srvsvc_port().await).into();
        for level in [AuthLevel::PKT_PRIVACY, AuthLevel::PKT_INTEGRITY] {
            // Offer the smallest fragments a peer must take; Samba raises both sizes to
            // 2048 in its bind_ack and splits its 6 KB answer into four.
            let bind = RpcBind {
                config: ClientConfig {
                    max_recv_frag: MIN_FRAG,
                    max_xmit_frag: MIN_FRAG,
                    ..ClientConfig::default()
                },
                ..RpcBind::new(SRVSVC).with_security(ntlm("alice", "secret", level))
            };
            let mut rpc = RpcConnection::connect(addr, bind)
                .await
                .unwrap_or_else(|e| panic!("bind at {level:?}: {e}"));
            let reply = rpc
                .call(NETR_SHARE_GET_INFO, &share_get_info_stub("share", 1))
                .await
                .unwrap_or_else(|e| {
                    panic!("NetrShareGetInfo at {level:?}: {e}\n{}", samba_log(&samba))
                });
            let (name, kind, remark) =
                decode_share_info_1(&reply).unwrap_or_else(|e| panic!("{reply:02x?}: {e}"));
            assert_eq!((name.as_str(), kind), ("share", 0), "STYPE_DISKTREE");
            assert_eq!(remark, "0123456789".repeat(300));
            let acked = rpc.bind_acked();
            assert_eq!((acked.max_xmit_frag, acked.max_recv_frag), (MIN_FRAG, 2048));
            eprintln!(
                "{level:?}: a {}-octet reply in fragments of 2048",
                reply.len()
            );
        }
    });
}

#[test]
fn a_wrong_password_binds_but_the_first_call_faults() {
    let Some(_samba) = samba() else { return };
    runtime().block_on(async {
        let addr = ([127, 0, 0, 1], srvsvc_port().await).into();
        let bind =
            RpcBind::new(SRVSVC).with_security(ntlm("alice", "wrong", AuthLevel::PKT_PRIVACY));
        let mut rpc = RpcConnection::connect(addr, bind)
            .await
            .expect("Samba answers bind and takes auth3 whatever the password");
        match rpc.call(NETR_REMOTE_TOD, &remote_tod_stub(None)).await {
            Err(RpcError::Fault { status }) => assert_eq!(status, FaultStatus::NCA_S_PROTO_ERROR),
            other => panic!("expected fault nca_s_proto_error, got {other:?}"),
        }
    });
}

/// Samba's logs, for a failure message.
fn samba_log(samba: &Samba) -> String {
    let mut out = String::new();
    let entries = std::fs::read_dir(samba.peer.rundir.join("log"));
    for entry in entries.into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        out += &format!("== {}\n", entry.path().display());
        tail.iter().rev().for_each(|l| out += &format!("{l}\n"));
    }
    out
}

/// samr over TCP, sealed at level 6 (issue 15 item 7): SamrConnect with a NULL server
/// name gets a server handle and STATUS_SUCCESS; SamrCloseHandle closes it (the handle
/// comes back nil).
#[test]
fn sealed_samr_connect_and_close_handle() {
    let Some(samba) = samba() else { return };
    runtime().block_on(async {
        let addr = ([127, 0, 0, 1], mapped_port(SAMR).await).into();
        let bind =
            RpcBind::new(SAMR).with_security(ntlm("alice", "secret", AuthLevel::PKT_PRIVACY));
        let mut rpc = RpcConnection::connect(addr, bind)
            .await
            .unwrap_or_else(|e| panic!("samr bind: {e}\n{}", samba_log(&samba)));
        // [in, unique, string] wchar_t *ServerName (NULL); [in] DesiredAccess:
        // SAM_SERVER_CONNECT | SAM_SERVER_ENUMERATE_DOMAINS | SAM_SERVER_LOOKUP_DOMAIN.
        let mut w = NdrWriter::new();
        w.put_pointer(false);
        w.put_u32(0x0000_0031);
        let reply = rpc
            .call(SAMR_CONNECT, &w.into_bytes())
            .await
            .unwrap_or_else(|e| panic!("SamrConnect: {e}\n{}", samba_log(&samba)));
        let mut r = NdrReader::new(&reply);
        let handle = r.context_handle().expect("a server handle");
        assert!(!handle.is_nil(), "{reply:02x?}");
        assert_eq!(r.u32().expect("NTSTATUS"), 0, "STATUS_SUCCESS");
        let mut w = NdrWriter::new();
        w.put_context_handle(&handle);
        let reply = rpc
            .call(SAMR_CLOSE_HANDLE, &w.into_bytes())
            .await
            .expect("SamrCloseHandle");
        let mut r = NdrReader::new(&reply);
        assert!(r.context_handle().expect("the handle").is_nil());
        assert_eq!(r.u32().expect("NTSTATUS"), 0);
    });
}

/// `harness fuzz --target dcerpc://` against Samba's endpoint mapper: mutated sessions
/// (PDU octets, stubs before sealing, alter_context, every auth level), each followed by
/// a probe association that must still be served, with samba-dcerpcd's PID watched.
/// Samba answers, stays silent or closes; none of it is a finding.
#[test]
fn the_network_fuzzer_runs_against_samba_without_findings() {
    use harness::tools::netfuzz_dcerpc::{fuzz_dcerpc, RpcFuzzConfig, RpcOutcome};
    use harness_core::dcerpc::known_calls::KnownInterface;
    use harness_core::netfuzz::dcerpc::RpcCredentials;
    use std::time::Duration;

    let Some(samba) = samba() else { return };
    let dcerpcd: u32 = samba
        .peer
        .pids
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("start.sh prints samba-dcerpcd's PID first");
    let out = std::env::temp_dir().join(format!("harness-samba-fuzz-{}", std::process::id()));
    let cfg = RpcFuzzConfig {
        addr: ([127, 0, 0, 1], EPM_PORT).into(),
        interface: KnownInterface::Epm,
        duration: Duration::from_secs(20),
        count: Some(150),
        seed: 1,
        hang_timeout: Duration::from_secs(5),
        silence: Duration::from_millis(150),
        first_case: 0,
        watch_pid: Some(dcerpcd),
        out: out.clone(),
        credentials: RpcCredentials {
            user: "alice".into(),
            password: "secret".into(),
            domain: "SAMBAPEER".into(),
        },
    };
    let summary = fuzz_dcerpc(&cfg, &mut |_| {}).expect("Samba serves the first probe");
    let table: Vec<String> = RpcOutcome::ALL
        .iter()
        .map(|k| format!("{k}: {}", summary.count(*k)))
        .collect();
    eprintln!("{} cases against Samba: {table:?}", summary.cases);
    assert!(
        !summary.failed(),
        "{table:?} {:?}\n{}",
        summary.findings,
        samba_log(&samba)
    );
    assert!(summary.cases >= 50, "{table:?}");
    assert!(summary.count(RpcOutcome::Answered) > 0, "{table:?}");
    assert!(!out.exists());
}
