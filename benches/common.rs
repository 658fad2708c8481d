//! Shared by the benches: the lab's users, the session scripts, and a loopback client that
//! plays one whole session (the same player as `harness load`).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use harness::tools::load::{play_session, UserSpec};
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

/// Client `i` of a run logs in as `u{i}` (see [`lab_file`]).
pub fn users(clients: usize) -> Vec<UserSpec> {
    (0..clients)
        .map(|i| UserSpec {
            user: format!("u{i}"),
            password: "secret".into(),
        })
        .collect()
}

/// One whole session over loopback, as `harness load` plays it (the driver's client
/// machine: log in, read the mail, log out; `harness::tools::load::play_session`).
pub async fn loopback_session(addr: SocketAddr, protocol: Protocol, user: &UserSpec) {
    if let Err(e) = play_session(addr, protocol, user, Duration::from_secs(30)).await {
        panic!("{protocol} session to {addr} failed: {e}");
    }
}

/// Every client runs `iters` sessions back to back, all clients at once; the wall time.
pub async fn run_clients(
    addr: SocketAddr,
    protocol: Protocol,
    users: &[UserSpec],
    iters: u64,
) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for user in users {
        let user = user.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..iters {
                loopback_session(addr, protocol, &user).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    start.elapsed()
}
