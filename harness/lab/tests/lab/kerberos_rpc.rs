//! Kerberos on the lab's Exchange RPC listener, over the sockets: a ticket from the lab's
//! KDC binds NSPI with auth_type 16 and 9 at connect, integrity and privacy and the calls
//! answer; an authenticator replayed on a new connection, one outside the clock skew and
//! a ticket for another service get bind_nak invalid_checksum. impacket (auth_type 9, its
//! only Kerberos type), given the lab KDC's service tickets, calls RFR and NSPI at levels
//! 2, 5 and 6 (its own AP-REQ, legs, MIC and sealed Wrap tokens) and is refused with a
//! web-tier ticket. impacket's own TGS-REQ is refused by the lab's KDC (no checksum in its
//! authenticator), which the test records.

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use harness::serve::rpc::RpcRole;
use harness::tools::dcerpc_client::{kerberos_security, RpcBind, RpcConnection, RpcError};
use harness::{Lab, LabConfig};
use harness_core::dcerpc::client::BindSecurity;
use harness_core::dcerpc::client::{AuthLevel, AuthType, RejectReason};
use harness_core::dcerpc::kerberos::KerberosClientSecurity;
use harness_core::dcerpc::nspi::client::{bind_stub, opnum, parse_bind, stat};
use harness_core::dcerpc::nspi::NSPI_SYNTAX;
use harness_core::dcerpc::security::{
    ClientSecurity, ClientStep, MessageProtection, SecurityError,
};
use harness_core::kerberos::client::{self, Credentials, Request};
use harness_core::kerberos::{Name, Seconds, NT_SRV_HST};
use harness_core::rng::SeededRng;

const REALM: &str = "EXAMPLE.TEST";
const AB: &str = "exchangeAB/gc1.example.test";

async fn lab() -> Lab {
    Lab::start(LabConfig {
        kdc: Some(([127, 0, 0, 1], 0).into()),
        ..common::rpc_lab_config(Some(16))
    })
    .await
    .expect("lab with RPC and a KDC")
}

fn unix_now() -> Seconds {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as Seconds)
}

/// One KDC exchange over TCP (RFC 4120 7.2.2: a 4-octet length, then the message).
fn kdc_tcp(kdc: SocketAddr, request: &[u8]) -> Result<Vec<u8>, String> {
    let mut tcp =
        TcpStream::connect_timeout(&kdc, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut framed = (request.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(request);
    tcp.write_all(&framed).map_err(|e| e.to_string())?;
    let mut len = [0u8; 4];
    tcp.read_exact(&mut len).map_err(|e| e.to_string())?;
    let len = u32::from_be_bytes(len) as usize;
    if len > 1 << 20 {
        return Err(format!("KDC reply of {len} octets"));
    }
    let mut reply = vec![0; len];
    tcp.read_exact(&mut reply).map_err(|e| e.to_string())?;
    Ok(reply)
}

/// alice's service ticket for `service` from the lab's KDC.
async fn ticket(kdc: SocketAddr, service: &'static str) -> Credentials {
    ticket_and_reply(kdc, service).await.0
}

/// As [`ticket`], with the KDC's TGS-REP as it came.
async fn ticket_and_reply(kdc: SocketAddr, service: &'static str) -> (Credentials, Vec<u8>) {
    static SEED: AtomicU64 = AtomicU64::new(1);
    tokio::task::spawn_blocking(move || {
        let mut last = Vec::new();
        let mut exchange = |r: &[u8]| {
            let reply = kdc_tcp(kdc, r)?;
            last = reply.clone();
            Ok(reply)
        };
        // Each request its own cusec: the same client, time and cusec twice is a replay.
        let mut rng = SeededRng::new(SEED.fetch_add(1, Ordering::Relaxed) ^ unix_now() as u64);
        let now = unix_now();
        let tgt = client::login(
            &mut exchange,
            "alice",
            REALM,
            "secret",
            &Request::default(),
            now,
            &mut rng,
        )
        .expect("TGT");
        let server = Name::parse(service, NT_SRV_HST);
        let ticket = client::ticket(
            &mut exchange,
            &tgt,
            &server,
            &Request::default(),
            now,
            &mut rng,
        )
        .expect("service ticket");
        (ticket, last)
    })
    .await
    .expect("KDC task")
}

async fn nspi_bind(addr: SocketAddr, security: BindSecurity) -> Result<u32, RpcError> {
    let mut nspi =
        RpcConnection::connect(addr, RpcBind::new(NSPI_SYNTAX).with_security(security)).await?;
    let mut rc = Vec::new();
    for _ in 0..2 {
        let stub = nspi
            .call(opnum::BIND, &bind_stub(0, &stat(1252), true))
            .await?;
        rc.push(parse_bind(&stub).expect("NspiBind").rc);
    }
    assert_eq!(rc[0], rc[1]);
    Ok(rc[0])
}

/// A client context that records its first token, or, when one is recorded already, sends
/// that one instead of its own: a captured bind replayed.
struct Replaying {
    inner: KerberosClientSecurity,
    token: std::sync::Arc<std::sync::Mutex<Option<Vec<u8>>>>,
}

impl MessageProtection for Replaying {
    fn signature_len(&self, level: AuthLevel) -> usize {
        self.inner.signature_len(level)
    }
    fn wrap(
        &mut self,
        level: AuthLevel,
        pdu: &mut [u8],
        stub: std::ops::Range<usize>,
    ) -> Result<Vec<u8>, SecurityError> {
        self.inner.wrap(level, pdu, stub)
    }
    fn unwrap(
        &mut self,
        level: AuthLevel,
        pdu: &mut [u8],
        stub: std::ops::Range<usize>,
        signature: &[u8],
    ) -> Result<(), SecurityError> {
        self.inner.unwrap(level, pdu, stub, signature)
    }
}

impl ClientSecurity for Replaying {
    fn auth_type(&self) -> AuthType {
        self.inner.auth_type()
    }
    fn initial_token(&mut self) -> Result<Vec<u8>, SecurityError> {
        let fresh = self.inner.initial_token()?;
        let mut recorded = self.token.lock().expect("lock");
        Ok(recorded.get_or_insert(fresh).clone())
    }
    fn step(&mut self, token: &[u8]) -> Result<ClientStep, SecurityError> {
        self.inner.step(token)
    }
}

#[tokio::test]
async fn a_kdc_ticket_binds_nspi_at_every_level_and_refusals_are_bind_naks() {
    let lab = lab().await;
    let kdc = lab.kdc_addr().expect("kdc");
    let rpc = lab.rpc_addr(RpcRole::Exchange).expect("rpc");
    for auth_type in [AuthType::KERBEROS, AuthType::SPNEGO] {
        for level in [
            AuthLevel::CONNECT,
            AuthLevel::PKT_INTEGRITY,
            AuthLevel::PKT_PRIVACY,
        ] {
            let security = kerberos_security(auth_type, ticket(kdc, AB).await, level);
            let rc = nspi_bind(rpc, security).await;
            assert_eq!(rc.ok(), Some(0), "{auth_type:?} {level:?}");
        }
    }

    let refused = |result: Result<u32, RpcError>| match result {
        Err(RpcError::BindNak(reason)) => reason,
        other => panic!("not a bind_nak: {other:?}"),
    };
    // The same AP-REQ twice (recorded from the first bind, sent again in a second): a
    // replay.
    let t = ticket(kdc, AB).await;
    let now = unix_now();
    let recorded = std::sync::Arc::new(std::sync::Mutex::new(None));
    let first = BindSecurity {
        provider: Box::new(Replaying {
            inner: KerberosClientSecurity::new(AuthType::KERBEROS, t.clone(), now, 7),
            token: recorded.clone(),
        }),
        level: AuthLevel::PKT_PRIVACY,
        auth_context_id: 1,
    };
    assert_eq!(nspi_bind(rpc, first).await.ok(), Some(0));
    assert!(
        recorded.lock().expect("lock").is_some(),
        "the AP-REQ was recorded"
    );
    let again = BindSecurity {
        provider: Box::new(Replaying {
            inner: KerberosClientSecurity::new(AuthType::KERBEROS, t.clone(), now, 7),
            token: recorded.clone(),
        }),
        level: AuthLevel::PKT_PRIVACY,
        auth_context_id: 1,
    };
    assert_eq!(
        refused(nspi_bind(rpc, again).await),
        RejectReason::INVALID_CHECKSUM
    );
    let fixed = |t: &Credentials, now: Seconds, seed: u64| BindSecurity {
        provider: Box::new(KerberosClientSecurity::new(
            AuthType::KERBEROS,
            t.clone(),
            now,
            seed,
        )),
        level: AuthLevel::PKT_PRIVACY,
        auth_context_id: 1,
    };
    // Ten minutes fast: outside the five minutes of skew.
    assert_eq!(
        refused(nspi_bind(rpc, fixed(&t, now + 600, 8)).await),
        RejectReason::INVALID_CHECKSUM
    );
    // A ticket for the web tier, not the store.
    let web = ticket(kdc, "HTTP/web.example.test").await;
    assert_eq!(
        refused(nspi_bind(rpc, fixed(&web, now, 9)).await),
        RejectReason::INVALID_CHECKSUM
    );
    lab.shutdown().await;
}

#[tokio::test]
async fn impacket_binds_with_a_kerberos_ticket_and_calls_rfr_and_nspi_at_every_level() {
    let Some(python) = common::peers::impacket_python() else {
        return;
    };
    let lab = lab().await;
    let kdc = lab.kdc_addr().expect("kdc");
    let rpc = lab.rpc_addr(RpcRole::Exchange).expect("rpc");
    let script =
        common::peers::project_root().join("harness/lab/tests/clients/dcerpc_impacket_kerberos.py");
    let mut tickets = serde_json::Map::new();
    for spn in ["exchangeRFR/mail.example.test", AB, "HTTP/web.example.test"] {
        let (t, reply) = ticket_and_reply(kdc, spn).await;
        tickets.insert(
            spn.into(),
            serde_json::json!({"tgs_rep": hex(&reply), "etype": t.session.etype.number(), "key": hex(&t.session.bytes)}),
        );
    }
    let file = std::env::temp_dir().join(format!(
        "harness-krb-rpc-tickets-{}.json",
        std::process::id()
    ));
    std::fs::write(&file, serde_json::Value::Object(tickets).to_string()).expect("tickets");
    let rpc_port = rpc.port().to_string();
    let kdc_port = kdc.port().to_string();
    let args = [
        script.to_str().expect("utf-8 path"),
        &rpc_port,
        &kdc_port,
        "alice",
        "secret",
        REALM,
        file.to_str().expect("utf-8 path"),
    ];
    let ran = common::run(&python, &args).await;
    let _ = std::fs::remove_file(&file);
    lab.shutdown().await;
    assert!(ran.ok(), "{ran:?}");
    let got: Vec<serde_json::Value> = ran
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let host = "mail.example.test";
    let dn = |user: &str| {
        format!(
            "/o=EXAMPLE/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn={user}"
        )
    };
    let nspi = |level: u8| {
        serde_json::json!({"check": "nspi", "level": level, "tables": ["Global Address List"],
            "rows": [["alice", dn("alice")], ["bob", dn("bob")], ["user", dn("user")]]})
    };
    let expected = vec![
        // impacket's AS exchange succeeds; its TGS-REQ's authenticator has no checksum over
        // the request body, which the lab's KDC refuses.
        serde_json::json!({"check": "tgs_req", "tgt": true, "error": "KRB_AP_ERR_INAPP_CKSUM"}),
        serde_json::json!({"check": "rfr", "level": 2, "fqdn": host}),
        serde_json::json!({"check": "rfr", "level": 5, "fqdn": host}),
        serde_json::json!({"check": "rfr", "level": 6, "fqdn": host}),
        nspi(2),
        nspi(5),
        nspi(6),
        // bind_nak reason 9 as impacket words it.
        serde_json::json!({"check": "rfr_other_service", "level": 6,
            "error": "Bind context rejected: invalid_checksum"}),
    ];
    pretty_assertions::assert_eq!(got, expected);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
