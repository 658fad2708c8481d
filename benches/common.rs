//! Shared by the benches: the lab's users, the session scripts, and a loopback client that
//! plays one whole session.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::Protocol;
use harness_core::LabFile;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

/// Reads until the reply to the last step is complete.
async fn read_reply(tcp: &mut TcpStream, buf: &mut Vec<u8>, done: impl Fn(&[u8]) -> bool) {
    buf.clear();
    let mut chunk = [0u8; 8192];
    while !done(buf) {
        let n = tcp.read(&mut chunk).await.expect("read");
        assert!(
            n > 0,
            "server closed early: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One whole session over loopback: greeting, then each step and its complete reply.
pub async fn loopback_session(addr: SocketAddr, protocol: Protocol, steps: &[Vec<u8>]) {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let mut buf = Vec::with_capacity(8192);
    let line_done = |b: &[u8]| b.ends_with(b"\r\n");
    read_reply(&mut tcp, &mut buf, line_done).await; // greeting
    for step in steps {
        tcp.write_all(step).await.expect("write");
        match protocol {
            Protocol::Imap => {
                let tag = [step[0], b' '];
                read_reply(&mut tcp, &mut buf, |b| {
                    b.ends_with(b"\r\n")
                        && (b.starts_with(&tag)
                            || b.windows(3).any(|w| w[0] == b'\n' && w[1..] == tag))
                })
                .await;
            }
            Protocol::Pop3 => {
                let multi = step.starts_with(b"RETR");
                read_reply(&mut tcp, &mut buf, |b| {
                    if multi && b.starts_with(b"+OK") {
                        b.ends_with(b"\r\n.\r\n")
                    } else {
                        line_done(b)
                    }
                })
                .await;
            }
        }
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
