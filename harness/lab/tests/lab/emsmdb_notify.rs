//! EMSMDB new-mail notification over real sockets: alice's MAPI session (our DCE/RPC
//! client, NTLM sealed) parks an EcDoAsyncWaitEx on a second connection; an IMAP
//! APPEND on the lab's IMAP listener wakes it through the lab's tokio waker, and the
//! next EcDoRpcExt2 on the first connection carries RopNotify.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::Client;
use harness::serve::rpc::{RpcListenerSpec, RpcRole};
use harness::tools::dcerpc_client::{ntlm_security, RpcBind, RpcConnection};
use harness::{Lab, LabConfig, ListenerSpec, Protocol, Security};
use harness_core::dcerpc::client::{AuthLevel, BindSecurity};
use harness_core::dcerpc::emsmdb::client::{
    connect_stub, handle_stub, logon_rop, parse_connect, parse_handle_response, parse_rpc,
    parse_wait, register_rop, rop_request, rpc_stub, wait_stub,
};
use harness_core::dcerpc::emsmdb::rops::{message_id, ROP_NOTIFY};
use harness_core::dcerpc::emsmdb::{
    ASYNC_EMSMDB_SYNTAX, EMSMDB_SYNTAX, NOTIFICATION_PENDING, OP_ASYNC_CONNECT_EX,
    OP_ASYNC_WAIT_EX, OP_CONNECT_EX, OP_RPC_EXT2,
};
use harness_core::dcerpc::legacy_dn;

/// alice, sealed (a fresh client challenge and session key per association).
fn ntlm() -> BindSecurity {
    ntlm_security("alice", "secret", "", AuthLevel::PKT_PRIVACY)
}

async fn rpc(
    conn: &mut RpcConnection,
    cxh: &harness_wire::ndr::ContextHandle,
    rops: &[u8],
    handles: &[u32],
) -> harness_core::dcerpc::emsmdb::client::RpcResult {
    let rgb_in = rop_request(rops, handles, true);
    let stub = rpc_stub(cxh, 0, &rgb_in, rgb_in.len() as u32);
    parse_rpc(&conn.call(OP_RPC_EXT2, &stub).await.expect("EcDoRpcExt2")).expect("reads")
}

#[tokio::test]
async fn imap_append_completes_a_parked_async_wait_over_sockets() {
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let lab = Lab::start(LabConfig {
        listeners: vec![ListenerSpec::new(Protocol::Imap, Security::Plain, loopback)],
        rpc: vec![RpcListenerSpec {
            role: RpcRole::Exchange,
            addr: loopback,
        }],
        seed: Some(15),
        ..LabConfig::default()
    })
    .await
    .expect("lab starts");
    let exchange = lab.rpc_addr(RpcRole::Exchange).expect("rpc listener");
    let dn = legacy_dn::user_dn(&lab.world().domain, "alice");

    let mut mapi =
        RpcConnection::connect(exchange, RpcBind::new(EMSMDB_SYNTAX).with_security(ntlm()))
            .await
            .expect("EMSMDB binds");
    let connected = parse_connect(
        &mapi
            .call(OP_CONNECT_EX, &connect_stub(&dn, &[], 0))
            .await
            .expect("EcDoConnectEx"),
    )
    .expect("reads");
    assert_eq!(connected.status, 0);
    let cxh = connected.cxh;
    let mut rops = logon_rop(0, &dn);
    rops.extend(register_rop(0, 1));
    let logged_on = rpc(&mut mapi, &cxh, &rops, &[u32::MAX; 2]).await;
    assert_eq!(logged_on.status, 0);
    let (_, handles) = logged_on.split();
    let (acxh, status) = parse_handle_response(
        &mapi
            .call(OP_ASYNC_CONNECT_EX, &handle_stub(&cxh))
            .await
            .expect("EcDoAsyncConnectEx"),
    )
    .expect("reads");
    assert_eq!(status, 0);

    let mut waiter = RpcConnection::connect(
        exchange,
        RpcBind::new(ASYNC_EMSMDB_SYNTAX).with_security(ntlm()),
    )
    .await
    .expect("AsyncEMSMDB binds");
    let wait = tokio::spawn(async move { waiter.call(OP_ASYNC_WAIT_EX, &wait_stub(&acxh)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!wait.is_finished(), "the wait parks until there is news");

    let mut imap = Client::connect(lab.addr(Protocol::Imap, Security::Plain).expect("imap")).await;
    imap.line().await;
    imap.send(b"a1 LOGIN alice secret\r\n").await;
    imap.until("a1 OK").await;
    let message = b"Subject: over sockets\r\n\r\nhello\r\n";
    imap.send(format!("a2 APPEND INBOX {{{}}}\r\n", message.len()).as_bytes())
        .await;
    imap.until("+").await;
    imap.send(message).await;
    imap.send(b"\r\n").await;
    imap.until("a2 OK").await;

    let answered = tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .expect("the wait completes once the mail is stored")
        .expect("task")
        .expect("EcDoAsyncWaitEx");
    assert_eq!(
        parse_wait(&answered).expect("reads"),
        (NOTIFICATION_PENDING, 0)
    );

    let uid = lab.world().store.with_account("alice", |a| {
        a.mailbox("INBOX")
            .and_then(|m| m.messages.last())
            .map(|m| m.uid)
    });
    let (responses, _) = rpc(&mut mapi, &cxh, &[], &handles).await.split();
    assert_eq!(responses.first(), Some(&ROP_NOTIFY), "{responses:02x?}");
    let mid = responses
        .get(16..24)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()));
    assert_eq!(
        mid,
        uid.map(message_id),
        "RopNotify names the appended message"
    );
}
