//! The project's own NSPI client (`harness_core::dcerpc::nspi::client`) against the lab
//! over sockets: bound with NTLM at packet privacy on the Exchange listener, and through
//! the Outlook Anywhere proxy (RPC over HTTP v2, NTLM or Basic on the channels), then the
//! address-book walk Outlook makes (NspiBind, the hierarchy table, the GAL's rows, a name
//! resolved, NspiUnbind). impacket checks the same server from outside.

use crate::common;

use harness::serve::rpc::RpcRole;
use harness::tools::dcerpc_client::{
    ntlm_security, HttpAuth, HttpProxy, RpcBind, RpcConnection, RpcError,
};
use harness_core::dcerpc::client::AuthLevel;
use harness_core::dcerpc::nspi::book::tag;
use harness_core::dcerpc::nspi::client::*;
use harness_core::dcerpc::nspi::types::PropValue;
use harness_core::dcerpc::nspi::{status, NSPI_SYNTAX};
use harness_core::ntlm::Credentials;

fn sealed() -> RpcBind {
    RpcBind::new(NSPI_SYNTAX).with_security(ntlm_security(
        "alice",
        "secret",
        "EXAMPLE",
        AuthLevel::PKT_PRIVACY,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nspi_client_walks_the_labs_address_book_sealed() {
    let lab = common::rpc_lab(Some(3)).await;
    let addr = lab.rpc_addr(RpcRole::Exchange).expect("exchange listener");
    let nspi = RpcConnection::connect(addr, sealed())
        .await
        .expect("bind NSPI");
    walk(nspi, &lab).await;
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nspi_client_walks_the_address_book_through_outlook_anywhere() {
    let lab = common::rpch_lab().await;
    let addr = lab.rpch_addr(false).expect("proxy listener");
    let auths = [
        HttpAuth::Ntlm(Credentials::example("alice", "secret")),
        HttpAuth::Basic {
            user: "alice".into(),
            password: "secret".into(),
        },
    ];
    for auth in auths {
        let proxy = HttpProxy {
            addr,
            host: "mail.example.test".into(),
            target: "MAIL:6004".into(),
            auth: auth.clone(),
        };
        let nspi = RpcConnection::connect_http(&proxy, sealed())
            .await
            .unwrap_or_else(|e| panic!("{auth:?}: {e}"));
        walk(nspi, &lab).await;
    }
    let wrong = HttpProxy {
        addr,
        host: "mail.example.test".into(),
        target: "MAIL:6004".into(),
        auth: HttpAuth::Basic {
            user: "alice".into(),
            password: "wrong".into(),
        },
    };
    match RpcConnection::connect_http(&wrong, sealed()).await {
        // Both channels carry the wrong password, and the proxy answers each on its own
        // task: either 401 may be read first.
        Err(RpcError::Refused { channel, code, .. }) => {
            assert_eq!(code, 401, "refused on {channel}");
            assert!(
                matches!(channel, "RPC_OUT_DATA" | "RPC_IN_DATA"),
                "{channel}"
            );
        }
        Err(e) => panic!("expected a 401, got {e}"),
        Ok(_) => panic!("a wrong password got through"),
    }
    lab.shutdown().await;
}

/// The same walk with the proxy's back-end in process (`--rpch-backend in-process`): no
/// connection reaches the Exchange listener, the association is the same endpoint's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nspi_client_walks_the_address_book_through_an_in_process_back_end() {
    let lab = harness::Lab::start(harness::LabConfig {
        rpch_in_process: true,
        ..common::rpch_lab_config()
    })
    .await
    .expect("lab starts");
    let addr = lab.rpch_addr(false).expect("proxy listener");
    let proxy = HttpProxy {
        addr,
        host: "mail.example.test".into(),
        target: "MAIL:6004".into(),
        auth: HttpAuth::Ntlm(Credentials::example("alice", "secret")),
    };
    let accepted = || {
        lab.stats()
            .accepted
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = accepted();
    for _ in 0..2 {
        let nspi = RpcConnection::connect_http(&proxy, sealed())
            .await
            .expect("bind NSPI through the proxy");
        walk(nspi, &lab).await;
    }
    assert_eq!(
        accepted(),
        before,
        "the Exchange listener accepted a connection"
    );
    lab.shutdown().await;
}

/// Outlook's address-book walk on a bound NSPI association.
async fn walk(mut nspi: RpcConnection, lab: &harness::Lab) {
    let call = |reply: Result<Vec<u8>, _>| reply.expect("the call is answered");

    let bound = parse_bind(&call(
        nspi.call(opnum::BIND, &bind_stub(0, &stat(1252), true))
            .await,
    ))
    .expect("NspiBind reads");
    assert_eq!(bound.rc, status::SUCCESS);
    let h = bound.handle;

    let (_, hierarchy, rc) = parse_special_table(&call(
        nspi.call(
            opnum::GET_SPECIAL_TABLE,
            &get_special_table_stub(&h, 0, &stat(1252), 0),
        )
        .await,
    ))
    .expect("NspiGetSpecialTable reads");
    assert_eq!((rc, hierarchy.map(|r| r.len())), (status::SUCCESS, Some(1)));

    let rows = parse_query_rows(&call(
        nspi.call(
            opnum::QUERY_ROWS,
            &query_rows_stub(&h, 0, &stat(1252), None, 50, Some(&[tag::ACCOUNT])),
        )
        .await,
    ))
    .expect("NspiQueryRows reads");
    assert_eq!(rows.rc, status::SUCCESS);
    let accounts: Vec<String> = rows
        .rows
        .unwrap_or_default()
        .iter()
        .flat_map(|row| row.iter())
        .filter_map(|v| match &v.value {
            PropValue::String8(s) => Some(String::from_utf8_lossy(s).into_owned()),
            PropValue::Unicode(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    let users = lab.world().directory.principals().count();
    assert_eq!(accounts.len(), users, "{accounts:?}");
    assert!(accounts.iter().any(|a| a == "alice"), "{accounts:?}");

    let Resolved { mids, rc, .. } = parse_resolve_names(&call(
        nspi.call(
            opnum::RESOLVE_NAMES_W,
            &resolve_names_w_stub(&h, &stat(1252), None, &["alice", "nobody-at-all"]),
        )
        .await,
    ))
    .expect("NspiResolveNamesW reads");
    let mids = mids.expect("MIds");
    assert_eq!(rc, status::SUCCESS);
    assert!(mids[0] > 1 && mids[1] == 0, "{mids:?}");

    let (handle, rc) = parse_unbind(&call(nspi.call(opnum::UNBIND, &unbind_stub(&h)).await))
        .expect("NspiUnbind reads");
    assert_eq!((handle.is_nil(), rc), (true, status::UNBIND_SUCCESS));
}
