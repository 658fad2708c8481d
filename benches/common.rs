//! Shared by the benches: the lab's users, the session scripts, and a loopback client that
//! plays one whole session (the same player as `harness load`).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::Protocol;
use harness_core::LabFile;

pub const IMAP_STEPS: &[&[u8]] = &[
    b"a LOGIN {user} secret\r\n",
    b"b SELECT INBOX\r\n",
    b"c FETCH 1:* (FLAGS BODY.PEEK[])\r\n",
    b"d LOGOUT\r\n",
];
pub const POP3_STEPS: &[&[u8]] = &[
    b"USER {user}\r\n",
    b"PASS secret\r\n",
    b"STAT\r\n",
    b"RETR 1\r\n",
    b"QUIT\r\n",
];

/// A lab with one user per client (POP3 locks a maildrop per user), each with 3 messages.
pub fn lab_file(clients: usize) -> LabFile {
    let mut lab = LabFile::default_lab();
    for i in 0..clients {
        lab.add_user(&format!("u{i}"), "secret");
    }
    lab
}

pub fn steps(template: &[&[u8]], user: &str) -> Vec<Vec<u8>> {
    template
        .iter()
        .map(|s| {
            String::from_utf8_lossy(s)
                .replace("{user}", user)
                .into_bytes()
        })
        .collect()
}

/// One whole session over loopback: greeting, then each step and its complete reply (the
/// load generator's session player, `harness::tools::load::play_session`).
pub async fn loopback_session(addr: SocketAddr, protocol: Protocol, steps: &[Vec<u8>]) {
    if let Err(e) =
        harness::tools::load::play_session(addr, protocol, steps, Duration::from_secs(30)).await
    {
        panic!("{protocol} session to {addr} failed: {e}");
    }
}

/// Every client runs `iters` sessions back to back, all clients at once; the wall time.
pub async fn run_clients(
    addr: SocketAddr,
    protocol: Protocol,
    per_client: &[Arc<Vec<Vec<u8>>>],
    iters: u64,
) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for steps in per_client {
        let steps = steps.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..iters {
                loopback_session(addr, protocol, &steps).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    start.elapsed()
}
