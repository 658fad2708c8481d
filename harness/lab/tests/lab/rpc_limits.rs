//! The RPC endpoint's limits and refusal style as a lab sets them (`LabConfig::
//! rpc_endpoint`, `harness serve --rpc-max-calls`, `--rpc-refusals`), seen by the
//! project's DCE/RPC client over sockets.

use std::net::SocketAddr;

use harness::serve::rpc::{RpcListenerSpec, RpcRole};
use harness::tools::dcerpc_client::{ntlm_security, RpcBind, RpcConnection, RpcError};
use harness::{Lab, LabConfig};
use harness_core::dcerpc::client::{AuthLevel, FaultStatus};
use harness_core::dcerpc::rfr::{self, RFR_SYNTAX};
use harness_core::dcerpc::server::{AuthFailureFault, EndpointConfig};

/// RfrGetFQDNFromServerDN of a server DN: any answer will do.
fn fqdn_stub() -> Vec<u8> {
    let dn = "/o=a/cn=Servers/cn=MAIL";
    rfr::vectors::fqdn_request(dn, dn.len() as u32 + 1)
}

async fn lab(endpoint: EndpointConfig) -> Lab {
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    Lab::start(LabConfig {
        listeners: Vec::new(),
        rpc: vec![RpcListenerSpec {
            role: RpcRole::Exchange,
            addr: loopback,
        }],
        rpc_endpoint: endpoint,
        ..LabConfig::default()
    })
    .await
    .expect("lab starts")
}

async fn connect(lab: &Lab, password: &str) -> RpcConnection {
    let addr = lab.rpc_addr(RpcRole::Exchange).expect("rpc listener");
    let security = ntlm_security("alice", password, "EXAMPLE", AuthLevel::PKT_PRIVACY);
    RpcConnection::connect(addr, RpcBind::new(RFR_SYNTAX).with_security(security))
        .await
        .expect("binds")
}

#[tokio::test]
async fn calls_per_association_are_capped_as_configured() {
    let lab = lab(EndpointConfig {
        max_calls: 2,
        ..EndpointConfig::default()
    })
    .await;
    let mut rpc = connect(&lab, "secret").await;
    for _ in 0..2 {
        rpc.call(1, &fqdn_stub()).await.expect("within the cap");
    }
    match rpc.call(1, &fqdn_stub()).await {
        Err(RpcError::Fault { status }) => assert_eq!(status, FaultStatus::NCA_S_SERVER_TOO_BUSY),
        other => panic!("third call: {other:?}"),
    }
    // A new association starts its own count.
    connect(&lab, "secret")
        .await
        .call(1, &fqdn_stub())
        .await
        .expect("fresh association");
    lab.shutdown().await;
}

#[tokio::test]
async fn a_failed_logon_is_refused_windows_or_samba_style() {
    for (style, status, closes) in [
        (AuthFailureFault::Windows, FaultStatus::ACCESS_DENIED, false),
        (
            AuthFailureFault::Samba,
            FaultStatus::NCA_S_PROTO_ERROR,
            true,
        ),
    ] {
        let lab = lab(EndpointConfig {
            auth_failure: style,
            ..EndpointConfig::default()
        })
        .await;
        let mut rpc = connect(&lab, "wrong").await;
        match rpc.call(1, &fqdn_stub()).await {
            Err(RpcError::Fault { status: got }) => assert_eq!(got, status, "{style:?}"),
            other => panic!("{style:?}: {other:?}"),
        }
        let again = rpc.call(1, &fqdn_stub()).await;
        match (closes, again) {
            (true, Err(RpcError::Closed | RpcError::Io(_))) => {}
            (false, Err(RpcError::Fault { status: got })) => assert_eq!(got, status),
            (_, other) => panic!("{style:?}, second call: {other:?}"),
        }
        lab.shutdown().await;
    }
}
