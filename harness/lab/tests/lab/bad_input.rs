//! Bad input over real sockets: each kind is answered with a protocol-correct reply (BAD,
//! NO, -ERR or a BYE and close), the offending session goes on where it can, and another
//! session working at the same time is never disturbed.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common;

use base64::Engine as _;
use common::Client;
use harness::{Lab, LabConfig, Protocol, Security};
use harness_core::Limits;

/// A lab with `small_limits`, changed by `adjust`.
async fn lab_with(adjust: impl FnOnce(&mut Limits)) -> Lab {
    let mut limits = small_limits();
    adjust(&mut limits);
    common::start_plain_lab(LabConfig {
        limits,
        ..LabConfig::default()
    })
    .await
}

async fn lab() -> Lab {
    lab_with(|_| {}).await
}

fn small_limits() -> Limits {
    Limits {
        max_line: 1024,
        max_literal: 4096,
        idle_timeout: Duration::from_secs(30),
        line_timeout: Duration::from_secs(30),
        max_connections: 16,
    }
}

/// An NTLM NEGOTIATE whose domain field claims 0xFFFF bytes at offset 0xFFFFFF00.
fn lying_negotiate() -> String {
    let mut m = Vec::new();
    m.extend_from_slice(b"NTLMSSP\0");
    m.extend_from_slice(&1u32.to_le_bytes());
    m.extend_from_slice(&0xE208_8297u32.to_le_bytes());
    m.extend_from_slice(&0xFFFFu16.to_le_bytes());
    m.extend_from_slice(&0xFFFFu16.to_le_bytes());
    m.extend_from_slice(&0xFFFF_FF00u32.to_le_bytes());
    m.extend_from_slice(&[0u8; 8]);
    base64::engine::general_purpose::STANDARD.encode(m)
}

/// A second IMAP session, logged in with INBOX selected, that must keep working.
async fn bystander_imap(addr: SocketAddr) -> Client {
    let mut c = Client::connect(addr).await;
    c.line().await;
    c.send(b"b1 LOGIN bob hunter2\r\n").await;
    assert!(c.until("b1 ").await.last().unwrap().starts_with("b1 OK"));
    c.send(b"b2 SELECT INBOX\r\n").await;
    assert!(c.until("b2 ").await.last().unwrap().starts_with("b2 OK"));
    c
}

async fn bystander_still_works(c: &mut Client, n: usize) {
    let tag = format!("n{n}");
    c.send(format!("{tag} FETCH 1 (FLAGS)\r\n").as_bytes())
        .await;
    let lines = c.until(&format!("{tag} ")).await;
    assert!(
        lines.last().unwrap().starts_with(&format!("{tag} OK")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("* 1 FETCH")),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_each_kind_of_bad_input_is_answered_and_the_session_goes_on() {
    let lab = lab().await;
    let addr = lab.addr(Protocol::Imap, Security::Plain).unwrap();
    let mut other = bystander_imap(addr).await;
    let mut c = Client::connect(addr).await;
    assert!(c.line().await.starts_with("* OK"));

    // Unknown command.
    c.send(b"a1 FROBNICATE\r\n").await;
    assert!(c.line().await.starts_with("a1 BAD"));
    bystander_still_works(&mut other, 1).await;

    // Command in the wrong state (not authenticated yet).
    c.send(b"a2 SELECT INBOX\r\n").await;
    let l = c.line().await;
    assert!(l.starts_with("a2 BAD") || l.starts_with("a2 NO"), "{l}");

    // Line over the limit: answered, and the connection stays in sync afterwards.
    let mut long = b"a3 NOOP ".to_vec();
    long.extend(std::iter::repeat_n(b'x', 4000));
    long.extend_from_slice(b"\r\n");
    c.send(&long).await;
    let l = c.line().await;
    assert!(l.contains("BAD"), "{l}");
    c.send(b"a4 NOOP\r\n").await;
    assert!(c.until("a4 ").await.last().unwrap().starts_with("a4 OK"));

    // Literal over the limit: refused before any continuation is offered.
    c.send(b"a5 LOGIN {100000}\r\n").await;
    let l = c.line().await;
    assert!(l.starts_with("a5 BAD") || l.starts_with("a5 NO"), "{l}");
    c.send(b"a6 NOOP\r\n").await;
    assert!(c.until("a6 ").await.last().unwrap().starts_with("a6 OK"));
    bystander_still_works(&mut other, 2).await;

    // Invalid base64 inside a SASL exchange.
    c.send(b"a7 AUTHENTICATE PLAIN\r\n").await;
    assert!(c.line().await.starts_with('+'));
    c.send(b"!!!not base64!!!\r\n").await;
    let l = c.line().await;
    assert!(l.starts_with("a7 BAD") || l.starts_with("a7 NO"), "{l}");

    // An NTLM message with lying offsets.
    c.send(b"a8 AUTHENTICATE NTLM\r\n").await;
    assert!(c.line().await.starts_with('+'));
    c.send(format!("{}\r\n", lying_negotiate()).as_bytes())
        .await;
    let l = c.line().await;
    assert!(l.starts_with("a8 NO") || l.starts_with("a8 BAD"), "{l}");

    // Bytes that are not UTF-8.
    c.send(b"a9 LOGIN \xff\xfe\xfd pass\r\n").await;
    let l = c.line().await;
    assert!(l.starts_with("a9 BAD") || l.starts_with("a9 NO"), "{l}");

    // After all that, the session still authenticates and works.
    c.send(b"a10 LOGIN alice secret\r\n").await;
    assert!(c.until("a10 ").await.last().unwrap().starts_with("a10 OK"));
    c.send(b"a11 SELECT INBOX\r\n").await;
    assert!(c.until("a11 ").await.last().unwrap().starts_with("a11 OK"));
    bystander_still_works(&mut other, 3).await;
    c.send(b"a12 LOGOUT\r\n").await;
    assert!(c.until("a12 ").await.iter().any(|l| l.starts_with("* BYE")));
    c.closed().await;
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pop3_each_kind_of_bad_input_is_answered_and_the_session_goes_on() {
    let lab = lab().await;
    let addr = lab.addr(Protocol::Pop3, Security::Plain).unwrap();
    let mut other = bystander_imap(lab.addr(Protocol::Imap, Security::Plain).unwrap()).await;
    let mut c = Client::connect(addr).await;
    assert!(c.line().await.starts_with("+OK"));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"FROBNICATE\r\n".to_vec(), "unknown command"),
        (b"STAT\r\n".to_vec(), "wrong state"),
        (
            [b"USER ".to_vec(), vec![b'x'; 4000], b"\r\n".to_vec()].concat(),
            "line over limit",
        ),
        (b"USER \xff\xfe\r\n".to_vec(), "not UTF-8"),
    ];
    for (i, (bytes, what)) in cases.into_iter().enumerate() {
        c.send(&bytes).await;
        let l = c.line().await;
        assert!(l.starts_with("-ERR"), "{what}: {l}");
        bystander_still_works(&mut other, 10 + i).await;
    }
    c.send(b"AUTH PLAIN\r\n").await;
    assert!(c.line().await.starts_with('+'));
    c.send(b"%%%notbase64\r\n").await;
    assert!(c.line().await.starts_with("-ERR"), "invalid base64");
    c.send(format!("AUTH NTLM {}\r\n", lying_negotiate()).as_bytes())
        .await;
    assert!(
        c.line().await.starts_with("-ERR"),
        "NTLM with lying offsets"
    );
    // Still usable.
    c.send(b"USER alice\r\n").await;
    assert!(c.line().await.starts_with("+OK"));
    c.send(b"PASS secret\r\n").await;
    assert!(c.line().await.starts_with("+OK"));
    c.send(b"STAT\r\n").await;
    assert!(c.line().await.starts_with("+OK 3 "));
    c.send(b"QUIT\r\n").await;
    assert!(c.line().await.starts_with("+OK"));
    c.closed().await;
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_are_told_and_disconnected_at_the_idle_timeout() {
    let lab = lab_with(|limits| limits.idle_timeout = Duration::from_millis(500)).await;
    let mut imap = Client::connect(lab.addr(Protocol::Imap, Security::Plain).unwrap()).await;
    let mut pop3 = Client::connect(lab.addr(Protocol::Pop3, Security::Plain).unwrap()).await;
    imap.line().await;
    pop3.line().await;
    let bye = imap.line().await;
    assert!(bye.starts_with("* BYE"), "{bye}");
    imap.closed().await;
    let err = pop3.line().await;
    assert!(err.starts_with("-ERR"), "{err}");
    pop3.closed().await;
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_vanishing_mid_literal_or_mid_transaction_leave_the_store_consistent() {
    let lab = lab().await;
    let imap = lab.addr(Protocol::Imap, Security::Plain).unwrap();
    let pop3 = lab.addr(Protocol::Pop3, Security::Plain).unwrap();

    // IMAP: gone in the middle of a literal.
    let mut c = Client::connect(imap).await;
    c.line().await;
    c.send(b"a1 LOGIN {5}\r\n").await;
    assert!(c.line().await.starts_with('+'));
    c.send(b"al").await;
    drop(c);

    // POP3: DELE, then gone without QUIT: nothing is deleted, and the maildrop lock is free.
    let mut c = Client::connect(pop3).await;
    c.line().await;
    c.send(b"USER alice\r\nPASS secret\r\n").await;
    assert!(c.line().await.starts_with("+OK"));
    assert!(c.line().await.starts_with("+OK"));
    c.send(b"DELE 1\r\n").await;
    assert!(c.line().await.starts_with("+OK"));
    drop(c);

    let mut again = None;
    for _ in 0..50 {
        let mut c = Client::connect(pop3).await;
        c.line().await;
        c.send(b"USER alice\r\nPASS secret\r\n").await;
        c.line().await;
        let l = c.line().await;
        if l.starts_with("+OK") {
            again = Some(c);
            break;
        }
        // The server may not have seen the first connection's EOF yet.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut c = again.expect("maildrop lock released after the client vanished");
    c.send(b"STAT\r\n").await;
    assert!(
        c.line().await.starts_with("+OK 3 "),
        "DELE without QUIT must not commit"
    );
    c.send(b"QUIT\r\n").await;
    c.line().await;

    let mut c = Client::connect(imap).await;
    c.line().await;
    c.send(b"a1 LOGIN alice secret\r\n").await;
    assert!(c.until("a1 ").await.last().unwrap().starts_with("a1 OK"));
    c.send(b"a2 SELECT INBOX\r\n").await;
    let lines = c.until("a2 ").await;
    assert!(lines.iter().any(|l| l == "* 3 EXISTS"), "{lines:?}");
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_turned_away_politely() {
    let lab = lab_with(|limits| limits.max_connections = 2).await;
    for (protocol, refusal) in [(Protocol::Imap, "* BYE"), (Protocol::Pop3, "-ERR")] {
        let addr = lab.addr(protocol, Security::Plain).unwrap();
        let mut a = Client::connect(addr).await;
        let mut b = Client::connect(addr).await;
        a.line().await;
        b.line().await;
        let mut c = Client::connect(addr).await;
        let l = c.line().await;
        assert!(
            l.starts_with(refusal) && l.contains("Too many connections"),
            "{l}"
        );
        c.closed().await;
    }
    assert_eq!(
        lab.stats()
            .refused_over_limit
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_clients_are_cut_off_at_the_line_timeout_and_others_go_on() {
    let lab = lab_with(|limits| limits.line_timeout = Duration::from_secs(1)).await;
    let imap = lab.addr(Protocol::Imap, Security::Plain).unwrap();
    let pop3 = lab.addr(Protocol::Pop3, Security::Plain).unwrap();
    let mut other = bystander_imap(imap).await;
    for (addr, command, goodbye) in [
        (imap, &b"a1 NOOP"[..], "* BYE"),
        (pop3, &b"NOOP"[..], "-ERR"),
    ] {
        let mut slow = Client::connect(addr).await;
        slow.line().await;
        // One byte every 250 ms: never silent for the 30 s idle timeout, and the line never
        // ends; the 1 s line timeout must end it.
        let started = std::time::Instant::now();
        let trickle = async {
            for &b in command.iter().cycle().take(40) {
                if !slow.try_send(&[b]).await {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(3), trickle).await;
        let l = slow.line().await;
        assert!(l.starts_with(goodbye), "{l}");
        slow.closed().await;
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "cut off after {:?}",
            started.elapsed()
        );
    }
    // A command that arrives whole in time is not affected, and neither is the bystander.
    bystander_still_works(&mut other, 30).await;
    lab.shutdown().await;
}
