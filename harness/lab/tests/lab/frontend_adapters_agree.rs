//! The relay director makes the in-process and the socket front-end behave the same: the
//! same client sessions, played one after another through each, get the same completions
//! and leave the pool and the session cache with the same counters.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::frontend::FrontendSpec;
use harness::{Lab, LabConfig, Protocol};
use harness_core::frontend::{CacheStats, FrontendProfile, InProcessFrontend, PoolStats};
use harness_core::scenario::endpoint;
use harness_core::{LabFile, Output, Profile, ServerSession};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One client session: the lines it sends, one at a time, each awaiting its reply.
type Visit = &'static [&'static str];

const IMAP_VISITS: &[Visit] = &[
    &["a1 LOGIN alice secret", "a2 SELECT INBOX", "a3 LOGOUT"],
    // Same credentials: a cache hit under session-cache.
    &["b1 LOGIN alice secret", "b2 EXAMINE INBOX", "b3 LOGOUT"],
    &["c1 LOGIN alice wrong", "c2 LOGIN bob hunter2", "c3 LOGOUT"],
    &["d1 CAPABILITY", "d2 NOOP", "d3 LOGOUT"],
    // Leaves without LOGOUT: the lease is discarded.
    &["e1 LOGIN user pass", "e2 SELECT INBOX"],
    &["f1 LOGIN bob hunter2", "f2 LOGOUT"],
];

const POP3_VISITS: &[Visit] = &[
    &["USER alice", "PASS secret", "STAT", "QUIT"],
    &[
        "USER alice",
        "PASS wrong",
        "USER bob",
        "PASS hunter2",
        "NOOP",
        "QUIT",
    ],
    &["USER user", "PASS pass", "STAT"],
    &["CAPA", "QUIT"],
];

/// Where a reply to `line` ends: IMAP at the tagged completion, POP3 at the status line
/// (none of the commands above has a multi-line answer except CAPA, which ends in `.`).
fn reply_complete(protocol: Protocol, line: &str, reply: &str) -> bool {
    match protocol {
        Protocol::Imap => {
            let tag = line.split(' ').next().unwrap_or_default();
            reply.lines().any(|l| l.starts_with(&format!("{tag} ")))
        }
        Protocol::Pop3 if line == "CAPA" => {
            reply.ends_with("\r\n.\r\n") || reply.starts_with("-ERR")
        }
        Protocol::Pop3 => reply.ends_with("\r\n"),
    }
}

/// The completion of a reply without the free text that may name a host or a time: IMAP
/// the tagged line's tag and status, POP3 the first line's status.
fn status_of(protocol: Protocol, reply: &str) -> String {
    let line = match protocol {
        Protocol::Imap => reply
            .lines()
            .rfind(|l| !l.starts_with('*') && !l.starts_with('+'))
            .unwrap_or_default(),
        Protocol::Pop3 => reply.lines().next().unwrap_or_default(),
    };
    let words = if protocol == Protocol::Imap { 2 } else { 1 };
    line.split(' ').take(words).collect::<Vec<_>>().join(" ")
}

fn in_process(protocol: Protocol, profile: &str, backend: &Profile) -> InProcessFrontend {
    let world = Arc::new(LabFile::default_lab().build().expect("default lab"));
    let backend_profile = Arc::new(backend.clone());
    InProcessFrontend::new(
        protocol,
        FrontendProfile::by_name(profile).expect("profile"),
        move |n| endpoint(&world, &backend_profile, protocol, n),
    )
}

fn drain(session: &mut dyn ServerSession) -> String {
    let mut out = Vec::new();
    while let Some(o) = session.poll_output() {
        if let Output::Write(w) = o {
            out.extend_from_slice(&w);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn play_in_process(
    fe: &InProcessFrontend,
    protocol: Protocol,
    visits: &[Visit],
) -> Vec<Vec<String>> {
    let mut now = Duration::ZERO;
    visits
        .iter()
        .map(|visit| {
            let mut s = fe.session();
            drain(s.as_mut());
            let statuses = visit
                .iter()
                .map(|line| {
                    now += Duration::from_millis(10);
                    s.handle_input(now, format!("{line}\r\n").as_bytes());
                    status_of(protocol, &drain(s.as_mut()))
                })
                .collect();
            s.handle_eof(now);
            drain(s.as_mut());
            statuses
        })
        .collect()
}

async fn play_over_sockets(
    addr: SocketAddr,
    protocol: Protocol,
    visits: &[Visit],
) -> Vec<Vec<String>> {
    let mut all = Vec::new();
    for visit in visits {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let (r, mut w) = tcp.into_split();
        let mut r = BufReader::new(r);
        let mut greeting = String::new();
        r.read_line(&mut greeting).await.expect("greeting");
        let mut statuses = Vec::new();
        for line in visit.iter() {
            w.write_all(format!("{line}\r\n").as_bytes())
                .await
                .expect("write");
            let mut reply = String::new();
            let deadline = Instant::now() + Duration::from_secs(10);
            while !reply_complete(protocol, line, &reply) {
                assert!(Instant::now() < deadline, "no reply to {line}: {reply:?}");
                let read = tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut reply))
                    .await
                    .expect("reply in time")
                    .expect("read");
                assert!(read > 0, "closed before the reply to {line}: {reply:?}");
            }
            statuses.push(status_of(protocol, &reply));
        }
        drop(w);
        // Wait for the front-end to close its side: the session is over there too.
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::io::AsyncReadExt::read_to_end(&mut r, &mut rest),
        )
        .await;
        all.push(statuses);
    }
    all
}

/// The socket front-end's counters, once they have settled (a session's end is handled
/// after its client sees the connection close).
async fn settled(lab: &Lab, want: (PoolStats, CacheStats)) -> (PoolStats, CacheStats) {
    let shared = &lab.frontends()[0].shared;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = (shared.stats(), shared.cache_stats());
        if got == want || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The back-ends' profile: the default one, offering UNAUTHENTICATE where `unauthenticate`.
fn backend(unauthenticate: bool) -> Profile {
    let mut p = Profile::default_profile();
    p.imap.unauthenticate = unauthenticate;
    p
}

async fn compare(protocol: Protocol, profile: &str, visits: &[Visit], backend: Profile) {
    let fe = in_process(protocol, profile, &backend);
    let expected = play_in_process(&fe, protocol, visits);
    let want = (fe.stats(), fe.cache_stats());

    let lo: SocketAddr = ([127, 0, 0, 1], 0).into();
    let lab = Lab::start(LabConfig {
        frontends: vec![FrontendSpec {
            protocol,
            addr: lo,
            profile: FrontendProfile::by_name(profile).expect("profile"),
            backend: None,
        }],
        seed: Some(1),
        profile: backend,
        ..LabConfig::default()
    })
    .await
    .expect("lab");
    let addr = lab.frontend_addr(protocol).expect("front-end");
    let got = play_over_sockets(addr, protocol, visits).await;
    let counters = settled(&lab, want).await;
    lab.shutdown().await;

    pretty_assertions::assert_eq!(expected, got, "{protocol} through {profile}");
    pretty_assertions::assert_eq!(want, counters, "{protocol} through {profile}: counters");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_sessions_agree_in_process_and_over_sockets() {
    for profile in ["exchange2000-sp1", "per-session", "session-cache"] {
        compare(Protocol::Imap, profile, IMAP_VISITS, backend(false)).await;
    }
    // Connections recycled with UNAUTHENTICATE: the same grants, resets and counters.
    compare(
        Protocol::Imap,
        "pool-unauthenticate",
        IMAP_VISITS,
        backend(true),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pop3_sessions_agree_in_process_and_over_sockets() {
    for profile in ["exchange2000-rtm", "affinity", "per-session"] {
        compare(Protocol::Pop3, profile, POP3_VISITS, backend(false)).await;
    }
}
