//! Shutting the lab down with sessions in flight: each is told goodbye in its protocol,
//! what was committed stays committed, and what was not is not.

use crate::common;

use std::sync::Arc;

use common::Client;
use harness::{Lab, LabConfig, Protocol, Security};
use harness_core::World;

fn inbox_len(world: &Arc<World>, user: &str) -> usize {
    world.store.with_account(user, |a| {
        a.mailbox("INBOX").map(|m| m.messages.len()).unwrap_or(0)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_says_bye_and_keeps_only_committed_changes() {
    let lab = Lab::start(LabConfig::default()).await.unwrap();
    let imap_addr = lab.addr(Protocol::Imap, Security::Plain).unwrap();
    let pop3_addr = lab.addr(Protocol::Pop3, Security::Plain).unwrap();
    let world = lab.world().clone();

    // Committed before the shutdown: bob's DELE + QUIT, alice's STORE \Deleted + EXPUNGE.
    let mut bob = Client::connect(pop3_addr).await;
    bob.line().await;
    bob.send(b"USER bob\r\nPASS hunter2\r\nDELE 1\r\nQUIT\r\n")
        .await;
    for _ in 0..4 {
        assert!(bob.line().await.starts_with("+OK"));
    }
    bob.closed().await;
    let mut alice = Client::connect(imap_addr).await;
    alice.line().await;
    alice.send(b"a1 LOGIN alice secret\r\na2 SELECT INBOX\r\na3 STORE 1 +FLAGS (\\Deleted)\r\na4 EXPUNGE\r\n").await;
    assert!(alice.until("a4 ").await.iter().any(|l| l == "* 1 EXPUNGE"));

    // In flight at the shutdown: user's DELE without QUIT.
    let mut user = Client::connect(pop3_addr).await;
    user.line().await;
    user.send(b"USER user\r\nPASS pass\r\nDELE 1\r\n").await;
    for _ in 0..3 {
        assert!(user.line().await.starts_with("+OK"));
    }

    let shutdown = tokio::spawn(lab.shutdown());
    assert_eq!(alice.line().await, "* BYE Server shutting down");
    alice.closed().await;
    let l = user.line().await;
    assert!(l.starts_with("-ERR [SYS/TEMP]"), "{l}");
    user.closed().await;
    shutdown.await.unwrap();

    assert_eq!(
        inbox_len(&world, "bob"),
        2,
        "DELE committed at QUIT stays committed"
    );
    assert_eq!(inbox_len(&world, "alice"), 2, "EXPUNGE stays expunged");
    assert_eq!(
        inbox_len(&world, "user"),
        3,
        "DELE without QUIT is not committed"
    );
    assert!(
        tokio::net::TcpStream::connect(imap_addr).await.is_err(),
        "the listener is closed after shutdown"
    );
}
