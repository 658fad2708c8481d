//! Connection storms: clients connecting and closing at full speed (at once, after the
//! greeting, or with an RST) while a normal client logs in and reads its mail. Afterwards
//! the server must hold no connection task, no extra file descriptor and (across repeated
//! storms) no extra memory.
//!
//! The tests run one at a time (they count the file descriptors of processes).

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::rss;
use harness::tools::load::{self, LoadConfig, LoadProgress, SessionKind, UserSpec};
use harness::{Lab, LabConfig, Protocol, Security};

/// The storm kinds the load generator knows.
const STORMS: [SessionKind; 3] = [
    SessionKind::ConnectClose,
    SessionKind::GreetClose,
    SessionKind::ConnectReset,
];

/// How long the server may take to finish with the last storm's connections.
const SETTLE: Duration = Duration::from_secs(10);

/// File descriptors a process may hold above its baseline after a storm (a timer, an
/// epoll or a pipe of the runtime opened lazily), not per connection.
const FD_SLACK: usize = 4;

/// Resident memory a second, identical storm may add on top of the first: the first one
/// grows the allocator's arenas and the runtime's queues; a leak of even 1 KiB per
/// connection over the thousands of connections of a storm exceeds this. The server's
/// allocator (jemalloc) gives freed pages back over a decay of up to 10 s, so the second
/// reading waits up to [`SETTLE`] for them; a leak does not go away.
const RSS_GROWTH_BOUND: u64 = 3 * 1024 * 1024;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Open file descriptors of a process (`self` or a PID).
fn fds(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

/// Waits (at most [`SETTLE`]) until `done` holds; returns whether it did.
async fn settles(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + SETTLE;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Normal IMAP sessions back to back until `stop`; returns (succeeded, first failure).
async fn logins_until(addr: SocketAddr, stop: Arc<AtomicBool>) -> (u64, Option<String>) {
    let alice = UserSpec::parse("alice:secret").expect("a user");
    let mut ok = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        match load::play_session(addr, Protocol::Imap, &alice, Duration::from_secs(10)).await {
            Ok(()) => ok += 1,
            Err(e) => return (ok, Some(e.to_string())),
        }
    }
    (ok, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_storm_kind_on_both_protocols_leaves_no_task_or_socket_behind() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let lab = Lab::start(LabConfig::default()).await.expect("lab starts");
    let imap = lab.addr(Protocol::Imap, Security::Plain).expect("imap");
    let pop3 = lab.addr(Protocol::Pop3, Security::Plain).expect("pop3");
    let fds_before = fds("self");
    assert_eq!(lab.live_connections(), 0);

    let stop = Arc::new(AtomicBool::new(false));
    let normal = tokio::spawn(logins_until(imap, stop.clone()));
    let mut total = 0;
    for addr in [imap, pop3] {
        for kind in STORMS {
            let config = LoadConfig {
                addr,
                session: kind,
                clients: 16,
                users: Vec::new(),
                duration: Duration::from_millis(700),
                max_sessions: Some(20_000),
                op_timeout: Duration::from_secs(10),
                rpc: None,
                kdc: None,
            };
            let report = load::run(config, Arc::new(LoadProgress::default()))
                .await
                .expect("valid storm");
            eprintln!(
                "{} {addr}: {} connections in {:.2} s ({:.0}/s), {} failed",
                kind.name(),
                report.succeeded,
                report.elapsed.as_secs_f64(),
                report.sessions_per_sec(),
                report.failed()
            );
            assert_eq!(
                report.failed(),
                0,
                "{} {addr}: {:?}",
                kind.name(),
                report.errors
            );
            assert!(
                report.succeeded >= 50,
                "{} {addr}: only {} connections",
                kind.name(),
                report.succeeded
            );
            total += report.succeeded;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (logins, failure) = normal.await.expect("normal client");
    assert_eq!(failure, None, "a normal session failed during the storm");
    assert!(logins >= 1, "no normal session completed during the storm");
    let accepted = lab.stats().accepted.load(Ordering::Relaxed);
    assert!(accepted >= total, "{accepted} accepted < {total} connected");

    let live_settled = settles(|| lab.live_connections() == 0).await;
    assert!(
        live_settled,
        "{} connection tasks still running {SETTLE:?} after a storm of {total}",
        lab.live_connections()
    );
    let fds_settled = settles(|| fds("self") <= fds_before + FD_SLACK).await;
    assert!(
        fds_settled,
        "{} file descriptors open after the storm, {fds_before} before",
        fds("self")
    );
    eprintln!(
        "{total} storm connections, {logins} normal sessions alongside; fds {fds_before} -> {}",
        fds("self")
    );
    lab.shutdown().await;
}

/// The summary row of `harness load` for a storm: (connections, failed).
fn storm_row(out: &str) -> (u64, u64) {
    let mut lines = out.lines();
    lines
        .by_ref()
        .find(|l| l.starts_with("connections  failed"))
        .unwrap_or_else(|| panic!("no storm table in:\n{out}"));
    let row = lines.nth(1).unwrap_or_else(|| panic!("no row in:\n{out}"));
    let mut cells = row.split_whitespace().map(|c| c.parse::<u64>().ok());
    match (cells.next().flatten(), cells.next().flatten()) {
        (Some(n), Some(failed)) => (n, failed),
        _ => panic!("unreadable row {row:?}"),
    }
}

/// `harness serve` in a subprocess, its stdout lines on a channel.
struct Server {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    imap: String,
    pop3: String,
}

impl Server {
    fn start() -> Server {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_harness"))
            .args(["serve", "--imap", "127.0.0.1:0", "--pop3", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("harness serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            lines,
            imap: String::new(),
            pop3: String::new(),
        };
        loop {
            let line = server.line().expect("harness serve starts");
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("listening"), Some("imap"), Some(a)) => server.imap = a.to_string(),
                (Some("listening"), Some("pop3"), Some(a)) => server.pop3 = a.to_string(),
                _ => {}
            }
            if line.starts_with("press Ctrl-C") {
                break;
            }
        }
        assert!(!server.imap.is_empty() && !server.pop3.is_empty());
        server
    }

    fn line(&self) -> Option<String> {
        self.lines.recv_timeout(Duration::from_secs(10)).ok()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} {}", self.pid());
    }

    /// The live connection count, from the `stats:` line printed on SIGUSR1.
    fn live(&self) -> usize {
        self.signal("USR1");
        for _ in 0..100 {
            let line = self.line().expect("a stats line after SIGUSR1");
            if let Some(rest) = line.strip_prefix("stats: ") {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let live = words
                    .iter()
                    .position(|w| *w == "live")
                    .and_then(|i| words.get(i + 1))
                    .and_then(|n| n.parse().ok());
                return live.unwrap_or_else(|| panic!("unreadable {line:?}"));
            }
        }
        panic!("no stats line after SIGUSR1");
    }

    /// Stops the server by its PID (SIGTERM), bounded.
    fn stop(mut self) {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("harness serve did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    /// A failing test still stops the server by its PID.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn harness_load(args: &[&str]) -> common::Ran {
    let mut all = vec!["load"];
    all.extend_from_slice(args);
    common::run(Path::new(env!("CARGO_BIN_EXE_harness")), &all).await
}

/// One storm against the server: IMAP connect-close, IMAP connect-reset and POP3
/// greet-close at once (16 clients each, 2 s), while a normal client runs IMAP sessions.
/// Returns the storm's connections.
async fn storm(server: &Server) -> u64 {
    let imap = format!("imap://{}", server.imap);
    let pop3 = format!("pop3://{}", server.pop3);
    let storm_args = |target: &str, kind: &'static str| {
        vec![
            "--target".to_string(),
            target.to_string(),
            "--session".into(),
            kind.into(),
            "--clients".into(),
            "16".into(),
            "--seconds".into(),
            "2".into(),
        ]
    };
    let (a, b, c) = (
        storm_args(&imap, "connect-close"),
        storm_args(&imap, "connect-reset"),
        storm_args(&pop3, "greet-close"),
    );
    fn as_strs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let (a, b, c) = (as_strs(&a), as_strs(&b), as_strs(&c));
    let normal: [&str; 6] = [
        "--target",
        &imap,
        "--seconds",
        "2",
        "--user",
        "alice:secret",
    ];
    let (a, b, c, normal) = tokio::join!(
        harness_load(&a),
        harness_load(&b),
        harness_load(&c),
        harness_load(&normal),
    );
    let mut total = 0;
    for ran in [&a, &b, &c] {
        assert!(ran.ok(), "{ran:?}");
        let (n, failed) = storm_row(&ran.stdout);
        assert_eq!(failed, 0, "{ran:?}");
        assert!(n >= 50, "only {n} connections: {ran:?}");
        total += n;
    }
    assert!(
        normal.ok(),
        "the normal client failed during the storm: {normal:?}"
    );
    assert!(
        normal.stdout.contains("sessions  failed"),
        "no normal session table: {normal:?}"
    );
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_storms_against_harness_serve_leak_no_fds_tasks_or_memory() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = Server::start();
    let pid = server.pid();
    let pid_s = pid.to_string();
    let fds_before = fds(&pid_s);
    let rss_before = rss(pid);
    assert!(fds_before > 0 && rss_before > 0, "cannot read /proc/{pid}");

    let mut after = Vec::new();
    for round in 1..=2 {
        let n = storm(&server).await;
        let mut live = usize::MAX;
        let deadline = Instant::now() + SETTLE;
        while Instant::now() < deadline {
            live = server.live();
            if live == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            live, 0,
            "connection tasks left {SETTLE:?} after storm {round}"
        );
        let fds_settled = settles(|| fds(&pid_s) <= fds_before + FD_SLACK).await;
        assert!(
            fds_settled,
            "storm {round}: {} fds open, {fds_before} before",
            fds(&pid_s)
        );
        let r = rss(pid);
        eprintln!(
            "storm {round}: {n} connections; harness serve RSS {:.1} MiB, fds {}",
            mib(r),
            fds(&pid_s)
        );
        after.push(r);
    }
    let first = after[0];
    settles(|| rss(pid) <= first + RSS_GROWTH_BOUND).await;
    let second = rss(pid);
    eprintln!(
        "RSS before {:.1} MiB, after storm 1 {:.1} MiB, after storm 2 {:.1} MiB",
        mib(rss_before),
        mib(first),
        mib(second)
    );
    assert!(
        second <= first + RSS_GROWTH_BOUND,
        "RSS grew by {:.1} MiB from storm 1 to the identical storm 2 (bound {:.1} MiB)",
        mib(second.saturating_sub(first)),
        mib(RSS_GROWTH_BOUND)
    );
    server.stop();
}

#[test]
fn storm_sessions_need_no_users_but_others_do() {
    let base = LoadConfig {
        addr: ([127, 0, 0, 1], 1).into(),
        session: SessionKind::ConnectClose,
        clients: 4,
        users: Vec::new(),
        duration: Duration::from_secs(1),
        max_sessions: None,
        op_timeout: Duration::from_secs(1),
        rpc: None,
        kdc: None,
    };
    for kind in STORMS {
        let c = LoadConfig {
            session: kind,
            ..base.clone()
        };
        assert_eq!(c.validate(), Ok(()), "{}", kind.name());
        assert!(kind.is_storm() && kind.protocol().is_none());
        assert_eq!(SessionKind::by_name(kind.name()), Some(kind));
    }
    let login = LoadConfig {
        session: SessionKind::ImapLoginSelectFetchLogout,
        ..base
    };
    assert_eq!(login.validate(), Err(load::LoadError::NoUsers));
}
