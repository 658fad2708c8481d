//! Sessions per second of the mock endpoints, in-process (the sans-IO cores alone) and
//! over loopback TCP through the lab (16 concurrent clients).
//!
//! IMAP session: LOGIN, SELECT INBOX, FETCH 1:* (FLAGS BODY.PEEK[]), LOGOUT.
//! POP3 session: USER, PASS, STAT, RETR 1, QUIT.
//!
//! Run: `cargo bench -p harness --bench sessions`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use harness::{Lab, LabConfig, ListenerSpec, Protocol, Security};
use harness_core::imap::ImapServer;
use harness_core::pop3::Pop3Server;
use harness_core::{LabFile, Output, Profile, ServerSession, SessionContext, World};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLIENTS: usize = 16;

const IMAP_STEPS: &[&[u8]] = &[
    b"a LOGIN {user} secret\r\n",
    b"b SELECT INBOX\r\n",
    b"c FETCH 1:* (FLAGS BODY.PEEK[])\r\n",
    b"d LOGOUT\r\n",
];
const POP3_STEPS: &[&[u8]] = &[
    b"USER {user}\r\n",
    b"PASS secret\r\n",
    b"STAT\r\n",
    b"RETR 1\r\n",
    b"QUIT\r\n",
];

/// A lab with one user per client (POP3 locks a maildrop per user), each with 3 messages.
fn lab_file() -> LabFile {
    let mut lab = LabFile::default_lab();
    for i in 0..CLIENTS {
        lab.add_user(&format!("u{i}"), "secret");
    }
    lab
}

fn steps(template: &[&[u8]], user: &str) -> Vec<Vec<u8>> {
    template
        .iter()
        .map(|s| {
            String::from_utf8_lossy(s)
                .replace("{user}", user)
                .into_bytes()
        })
        .collect()
}

/// One whole session in-process: feed each step, drain what the server says.
fn in_process_session(session: &mut dyn ServerSession, steps: &[Vec<u8>]) -> usize {
    let mut written = 0;
    let mut drain = |s: &mut dyn ServerSession| {
        while let Some(out) = s.poll_output() {
            if let Output::Write(b) = out {
                written += b.len();
            }
        }
    };
    drain(session);
    for step in steps {
        session.handle_input(Duration::ZERO, step);
        drain(session);
    }
    assert!(session.is_closed(), "session did not end");
    written
}

fn in_process(c: &mut Criterion) {
    let world: Arc<World> = Arc::new(lab_file().build().expect("lab"));
    let ctx = SessionContext::new(world, Arc::new(Profile::default_profile()));
    let mut group = c.benchmark_group("in_process");
    group.throughput(Throughput::Elements(1));
    let imap = steps(IMAP_STEPS, "u0");
    group.bench_function("imap_login_select_fetch_logout", |b| {
        b.iter(|| in_process_session(&mut ImapServer::new(ctx.clone()), &imap))
    });
    let pop3 = steps(POP3_STEPS, "u0");
    group.bench_function("pop3_user_pass_stat_retr_quit", |b| {
        b.iter(|| in_process_session(&mut Pop3Server::new(ctx.clone()), &pop3))
    });
    group.finish();
}

/// Reads until the reply to the last step is complete: a tagged line for IMAP, the end of
/// a status line (or of a multi-line body) for POP3.
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

async fn loopback_session(addr: SocketAddr, protocol: Protocol, steps: &[Vec<u8>]) {
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

fn loopback(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let lo: SocketAddr = ([127, 0, 0, 1], 0).into();
    let lab = rt
        .block_on(Lab::start(LabConfig {
            lab: lab_file(),
            listeners: vec![
                ListenerSpec::new(Protocol::Imap, Security::Plain, lo),
                ListenerSpec::new(Protocol::Pop3, Security::Plain, lo),
            ],
            ..LabConfig::default()
        }))
        .expect("lab");
    let mut group = c.benchmark_group("loopback_16_clients");
    group.throughput(Throughput::Elements(CLIENTS as u64));
    group.sample_size(20);
    for (protocol, template, name) in [
        (Protocol::Imap, IMAP_STEPS, "imap_login_select_fetch_logout"),
        (Protocol::Pop3, POP3_STEPS, "pop3_user_pass_stat_retr_quit"),
    ] {
        let addr = lab.addr(protocol, Security::Plain).expect("listener");
        let per_client: Vec<Arc<Vec<Vec<u8>>>> = (0..CLIENTS)
            .map(|i| Arc::new(steps(template, &format!("u{i}"))))
            .collect();
        // One iteration = every client runs one session, concurrently.
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    let mut tasks = Vec::new();
                    for steps in &per_client {
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
                })
            })
        });
    }
    group.finish();
    rt.block_on(lab.shutdown());
}

criterion_group!(benches, in_process, loopback);
criterion_main!(benches);
