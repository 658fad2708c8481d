//! `harness fuzz --target`: network fuzzing over real sockets. The mock must come out
//! clean; deliberately broken servers must be caught with the right kind and a
//! reproducer; a watched process that dies is a crash; Dovecot gives no false reports.

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use harness::tools::netfuzz::{fuzz, run_case, FuzzConfig, OutcomeKind, Summary};
use harness::tools::play::{SocketTransport, Target};
use harness::{Protocol, Security};
use harness_core::netfuzz::{CaseLine, Mutated};
use harness_core::script;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

fn root() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).to_path_buf()
}

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("harness-netfuzz-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn config(url: &str, out: PathBuf) -> FuzzConfig {
    FuzzConfig {
        target: Target::parse(url, false).expect("target"),
        duration: Duration::from_secs(3),
        count: None,
        seed: 1,
        hang_timeout: Duration::from_millis(2_000),
        auth_timeout: Duration::from_millis(2_000),
        watch_pid: None,
        out,
        corpus: root().join("corpus/sessions"),
    }
}

async fn run(cfg: FuzzConfig) -> Summary {
    tokio::task::spawn_blocking(move || fuzz(&cfg, &mut |_| {}))
        .await
        .expect("fuzz thread")
        .expect("fuzz runs")
}

fn describe(s: &Summary) -> String {
    let mut out = format!("{} cases, stopped: {}\n", s.cases, s.stopped);
    for k in OutcomeKind::ALL {
        out.push_str(&format!("  {k}: {}\n", s.count(k)));
    }
    for f in &s.findings {
        out.push_str(&format!(
            "  finding {} case {}: {} ({})\n{}\n",
            f.kind,
            f.case,
            f.detail,
            f.path.display(),
            std::fs::read_to_string(&f.path)
                .unwrap_or_default()
                .chars()
                .take(3_000)
                .collect::<String>()
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_gives_no_findings() {
    let lab = common::start_lab(harness_core::Profile::default_profile()).await;
    for (proto, scheme) in [(Protocol::Imap, "imap"), (Protocol::Pop3, "pop3")] {
        let addr = lab.addr(proto, Security::Plain).unwrap();
        let out = out_dir(&format!("mock-{scheme}"));
        let mut cfg = config(&format!("{scheme}://{addr}"), out.clone());
        cfg.duration = Duration::from_millis(1_500);
        let s = run(cfg).await;
        let text = describe(&s);
        eprintln!("mock {scheme}: {text}");
        assert!(!s.failed(), "the mock {scheme} has findings: {text}");
        assert!(s.findings.is_empty(), "{text}");
        assert!(!out.exists(), "nothing saved without a finding");
        assert!(s.cases >= 50, "too few cases in 1.5 s: {text}");
        assert_eq!(
            s.count(OutcomeKind::Ok) + s.count(OutcomeKind::Closed),
            s.cases
        );
    }
    lab.shutdown().await;
}

/// How a fake server misbehaves.
#[derive(Clone, Copy)]
enum Fault {
    /// Answers `tag OK`, but resets the connection on a line with `SELECT`.
    ResetOnSelect,
    /// Answers `tag OK`, but aborts the connection (RST, no goodbye) on a line over
    /// 5000 bytes, the way a server that refuses to buffer an overlong line may.
    AbortOnLongLine,
    /// Greets, then reads and never answers.
    Silent,
    /// Answers every line with text that is no IMAP reply.
    Garbage,
    /// POP3 whose replies lack the `+OK`.
    Pop3NoStatus,
    /// Answers `tag OK` at once, but `tag NO` to LOGIN only after 800 ms (the way
    /// servers hold back a failed login).
    SlowLogin,
}

/// A tiny broken server on loopback; returns its address.
async fn broken_server(fault: Fault) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut tcp = BufReader::new(tcp);
                let greeting: &[u8] = match fault {
                    Fault::Pop3NoStatus => b"+OK fake POP3\r\n",
                    _ => b"* OK fake IMAP\r\n",
                };
                if tcp.get_mut().write_all(greeting).await.is_err() {
                    return;
                }
                let mut line = Vec::new();
                for _ in 0..10_000 {
                    line.clear();
                    match tcp.read_until(b'\n', &mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let reply: Vec<u8> = match fault {
                        Fault::ResetOnSelect
                            if line.windows(6).any(|w| w.eq_ignore_ascii_case(b"SELECT")) =>
                        {
                            let _ = tcp.get_ref().set_zero_linger();
                            return; // dropped with SO_LINGER 0: a reset
                        }
                        Fault::AbortOnLongLine if line.len() > 5_000 => {
                            let _ = tcp.get_ref().set_zero_linger();
                            return;
                        }
                        Fault::ResetOnSelect | Fault::AbortOnLongLine => {
                            let tag = line
                                .split(|&b| matches!(b, b' ' | b'\r' | b'\n'))
                                .next()
                                .unwrap_or_default();
                            if tag.is_empty() {
                                b"* BAD no tag\r\n".to_vec()
                            } else {
                                [tag, b" OK done\r\n"].concat()
                            }
                        }
                        Fault::SlowLogin => {
                            let mut words = line
                                .split(|&b| matches!(b, b' ' | b'\r' | b'\n'))
                                .filter(|w| !w.is_empty());
                            let tag = words.next().unwrap_or_default().to_vec();
                            if tag.is_empty() {
                                b"* BAD no tag\r\n".to_vec()
                            } else if words
                                .next()
                                .is_some_and(|v| v.eq_ignore_ascii_case(b"LOGIN"))
                            {
                                tokio::time::sleep(Duration::from_millis(800)).await;
                                [&tag[..], b" NO [AUTHENTICATIONFAILED] slowly\r\n"].concat()
                            } else {
                                [&tag[..], b" OK done\r\n"].concat()
                            }
                        }
                        Fault::Silent => continue,
                        Fault::Garbage => b"hello there\r\n".to_vec(),
                        Fault::Pop3NoStatus => b"OK fine\r\n".to_vec(),
                    };
                    if tcp.get_mut().write_all(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Fuzzes a fresh broken server for `count` cases, saving findings in `out_dir(name)`,
/// with `adjust` applied to the configuration; returns the server's address too.
async fn fuzz_broken(
    fault: Fault,
    name: &str,
    count: u64,
    adjust: impl FnOnce(&mut FuzzConfig),
) -> (SocketAddr, Summary) {
    let addr = broken_server(fault).await;
    let scheme = match fault {
        Fault::Pop3NoStatus => "pop3",
        _ => "imap",
    };
    let mut cfg = config(&format!("{scheme}://{addr}"), out_dir(name));
    cfg.count = Some(count);
    adjust(&mut cfg);
    (addr, run(cfg).await)
}

fn saved(s: &Summary, kind: OutcomeKind) -> String {
    let f = s
        .findings
        .iter()
        .find(|f| f.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} finding: {}", describe(s)));
    let text = std::fs::read_to_string(&f.path).expect("reproducer written");
    assert!(
        text.starts_with(&format!("# harness fuzz finding: {kind}\n")),
        "{text}"
    );
    // The reproducer is a script the project's player accepts.
    script::parse(&text).unwrap_or_else(|e| panic!("reproducer does not parse: {e}\n{text}"));
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_resets_is_reported_with_a_reproducer() {
    let (addr, s) = fuzz_broken(Fault::ResetOnSelect, "reset", 40, |cfg| {
        cfg.duration = Duration::from_secs(20);
    })
    .await;
    assert!(s.failed());
    let text = saved(&s, OutcomeKind::Reset);
    assert!(text.contains("connection reset by peer"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("C: ") && l.to_ascii_uppercase().contains("SELECT")),
        "{text}"
    );
    // Played back, the reproducer meets the reset again: its closing probe gets no answer.
    let parsed = script::parse(&text).unwrap();
    let replay = tokio::task::spawn_blocking(move || {
        let mut transport = SocketTransport::new(addr, Duration::from_secs(2));
        script::play(&parsed, &Default::default(), &mut transport)
    })
    .await
    .unwrap();
    assert!(
        !matches!(&replay, Ok(r) if r.passed()),
        "the reproducer passes: {replay:?}"
    );
    // No case was mistaken for another kind: the fake answers everything else.
    assert_eq!(s.count(OutcomeKind::Hang), 0, "{}", describe(&s));
    assert_eq!(s.count(OutcomeKind::Malformed), 0, "{}", describe(&s));
    // De-duplicated: as many files as distinct first differing lines, fewer than resets.
    let files = std::fs::read_dir(s.findings[0].path.parent().unwrap())
        .unwrap()
        .count();
    assert_eq!(files, s.findings.len());
    assert_eq!(
        s.findings.len() as u64 + s.duplicates,
        s.count(OutcomeKind::Reset)
    );

    // A reset right after an overlong line is the server refusing to buffer it (TCP
    // resets a connection closed with input unread): closed, not a finding.
    let (_, s) = fuzz_broken(Fault::AbortOnLongLine, "overlong", 80, |cfg| {
        cfg.duration = Duration::from_secs(20);
    })
    .await;
    assert!(s.count(OutcomeKind::Closed) > 0, "{}", describe(&s));
    assert!(!s.failed(), "{}", describe(&s));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_is_a_hang_and_garbage_is_malformed() {
    let started = Instant::now();
    let (_, s) = fuzz_broken(Fault::Silent, "hang", 3, |cfg| {
        cfg.hang_timeout = Duration::from_millis(300);
        cfg.auth_timeout = Duration::from_millis(300);
    })
    .await;
    // A case whose lines are all cut short owes no reply; every other one hangs.
    assert!(s.count(OutcomeKind::Hang) >= 2, "{}", describe(&s));
    assert_eq!(
        s.count(OutcomeKind::Hang) + s.count(OutcomeKind::Ok),
        3,
        "{}",
        describe(&s)
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let text = saved(&s, OutcomeKind::Hang);
    assert!(text.contains("no reply within 300 ms after line"), "{text}");
    assert!(
        text.contains("--hang-timeout 300 --auth-timeout 300"),
        "the remake line has the bounds: {text}"
    );

    let (_, s) = fuzz_broken(Fault::Garbage, "garbage", 5, |_| {}).await;
    assert_eq!(s.count(OutcomeKind::Malformed), 5, "{}", describe(&s));
    let text = saved(&s, OutcomeKind::Malformed);
    assert!(text.contains("hello there"), "{text}");

    let (_, s) = fuzz_broken(Fault::Pop3NoStatus, "pop3", 5, |_| {}).await;
    assert_eq!(s.count(OutcomeKind::Malformed), 5, "{}", describe(&s));
    let text = saved(&s, OutcomeKind::Malformed);
    assert!(text.contains("not +OK, -ERR or a continuation"), "{text}");
}

/// A case of these lines, each ended with CRLF.
fn case_of(lines: &[&[u8]]) -> Mutated {
    Mutated {
        index: 0,
        source: "by hand".into(),
        conn: 0,
        mutations: Vec::new(),
        original: Vec::new(),
        lines: lines
            .iter()
            .map(|l| CaseLine {
                bytes: l.to_vec(),
                crlf: true,
            })
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_held_back_is_no_hang_within_the_auth_timeout() {
    let addr = broken_server(Fault::SlowLogin).await;
    let case = case_of(&[b"a1 NOOP", b"a2 LOGIN user wrong", b"a3 NOOP"]);
    let until = Instant::now() + Duration::from_secs(30);
    let short = Duration::from_millis(300);
    let r = tokio::task::spawn_blocking(move || {
        let held_back = run_case(
            addr,
            Protocol::Imap,
            &case,
            short,
            Duration::from_secs(3),
            until,
        );
        let too_long = run_case(addr, Protocol::Imap, &case, short, short, until);
        (held_back, too_long)
    })
    .await
    .unwrap();
    assert_eq!((r.0.kind, r.0.sent), (OutcomeKind::Ok, 3), "{r:?}");
    assert_eq!(r.1.kind, OutcomeKind::Hang, "{r:?}");
    assert_eq!(r.1.detail, "no reply within 300 ms after line 2", "{r:?}");
}

/// Findings against the mock that were the checker's fault. A bare LF cut an APPEND in
/// two; the server refused the first half and then asked for the literal the second half
/// announced, and the checker took that `+` for a SASL prompt (a completion of another
/// command had ended the wait for it). And a blank line sent just before an APPEND got
/// `* BAD` after the APPEND went out, which must not end the wait either. Both times the
/// checker then waited for a reply to the literal's first line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn literals_after_refused_lines_are_no_hang() {
    let (lab, addr) = common::start_mock(Protocol::Imap).await;
    let literal: [&[u8]; 4] = [b"Subject: appended", b"", b"written by a transcript", b""];
    let cases: [(&[u8], &str); 2] = [
        (b"a3 APPEND INBO\nX (\\Flagged) {46}", "\"X BAD"),
        (b"a3 APPEND INBOX (\\Flagged) {46}", "\"a3 OK"),
    ];
    for (index, (append, answer)) in cases.into_iter().enumerate() {
        let mut lines: Vec<&[u8]> = vec![b"a1 LOGIN user pass", b"a2 CREATE Copies"];
        if index == 1 {
            lines.push(b"");
        }
        lines.push(append);
        lines.extend(literal);
        lines.push(b"a4 LOGOUT");
        let case = case_of(&lines);
        let until = Instant::now() + Duration::from_secs(30);
        let r = tokio::task::spawn_blocking(move || {
            let hang = Duration::from_secs(2);
            run_case(addr, Protocol::Imap, &case, hang, hang, until)
        })
        .await
        .unwrap();
        assert!(!r.kind.is_finding(), "{r:?}");
        assert_eq!(r.sent, lines.len(), "{r:?}");
        assert!(
            r.received.iter().any(|l| l.starts_with(answer)),
            "the command after the literal is answered: {r:?}"
        );
    }
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_process_that_dies_is_a_crash() {
    let (lab, addr) = common::start_mock(Protocol::Imap).await;
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("sleep runs");
    let pid = child.id();
    let mut cfg = config(&format!("imap://{addr}"), out_dir("crash"));
    cfg.duration = Duration::from_secs(15);
    cfg.watch_pid = Some(pid);
    let fuzzing = tokio::task::spawn_blocking(move || fuzz(&cfg, &mut |_| {}));
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Killed but not yet reaped: a zombie still has a /proc entry, and must count as gone.
    child.kill().expect("kill sleep");
    let s = tokio::time::timeout(Duration::from_secs(10), fuzzing)
        .await
        .expect("the run stops soon after the crash")
        .unwrap()
        .unwrap();
    let _ = child.wait();
    assert!(s.cases > 0, "{}", describe(&s));
    assert_eq!(s.count(OutcomeKind::Crash), 1, "{}", describe(&s));
    assert!(s.stopped.contains("gone"), "{}", s.stopped);
    assert!(s.elapsed < Duration::from_secs(5), "{}", describe(&s));
    let text = saved(&s, OutcomeKind::Crash);
    assert!(
        text.contains(&format!("watched process {pid} is gone")),
        "{text}"
    );
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_prints_a_summary_and_its_exit_code_tells() {
    let (lab, good) = common::start_mock(Protocol::Pop3).await;
    let bad = broken_server(Fault::Garbage).await;
    let out = out_dir("cli");
    let cli = move |target: String, out: PathBuf| {
        Command::new(env!("CARGO_BIN_EXE_harness"))
            .current_dir(root())
            .args([
                "fuzz",
                "--target",
                &target,
                "--count",
                "30",
                "--seconds",
                "20",
            ])
            .arg("--out")
            .arg(out)
            .output()
            .expect("harness fuzz runs")
    };
    let (o, out2) = (out.clone(), out.clone());
    let ok = tokio::task::spawn_blocking(move || cli(format!("pop3://{good}"), o))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(stdout.contains("30 cases"), "{stdout}");
    assert!(stdout.contains("outcome    cases  kind"), "{stdout}");
    assert!(stdout.contains("0 findings saved"), "{stdout}");
    let broken = tokio::task::spawn_blocking(move || cli(format!("imap://{bad}"), out2))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&broken.stdout);
    assert_eq!(broken.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("malformed  30"), "{stdout}");
    assert!(stdout.contains("  reproducer  "), "{stdout}");
    assert!(stdout.contains("reproducer"), "{stdout}");
    // Loopback only without --allow-remote.
    let remote = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["fuzz", "--target", "imap://192.0.2.1:143", "--count", "1"])
        .output()
        .unwrap();
    assert_ne!(remote.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&remote.stderr).contains("--allow-remote"));
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_gives_a_summary_and_no_false_reports() {
    let (imap, pop3) = (common::peers::free_port(), common::peers::free_port());
    let Some(dovecot) = common::peers::try_start("dovecot", &[imap.to_string(), pop3.to_string()])
    else {
        return;
    };
    let pid: u32 = dovecot.pids.parse().expect("start.sh prints the PID");
    // Both protocols at once: two fuzzers against one Dovecot, each run as it would alone.
    let runs = [("imap", imap), ("pop3", pop3)].map(|(scheme, port)| {
        let mut cfg = config(
            &format!("{scheme}://127.0.0.1:{port}"),
            out_dir(&format!("dovecot-{scheme}")),
        );
        cfg.duration = Duration::from_secs(5);
        // Dovecot answers a failed login after auth_failure_delay (2 s) and penalises an
        // address that keeps failing by up to 15 s more: neither is a hang, and the
        // default bounds (5 s, 20 s after an authentication) tell them apart.
        cfg.hang_timeout = Duration::from_secs(5);
        cfg.auth_timeout = Duration::from_secs(20);
        cfg.watch_pid = Some(pid);
        (scheme, run(cfg))
    });
    let [(imap_scheme, imap_run), (pop3_scheme, pop3_run)] = runs;
    let (imap_summary, pop3_summary) = tokio::join!(imap_run, pop3_run);
    for (scheme, s) in [(imap_scheme, imap_summary), (pop3_scheme, pop3_summary)] {
        let text = describe(&s);
        eprintln!("dovecot {scheme}: {text}");
        assert!(s.cases > 0, "{text}");
        assert!(!s.failed(), "false reports against Dovecot: {text}");
        assert!(s.elapsed < Duration::from_secs(10), "{text}");
    }
}

/// The DCE/RPC mode against the lab's endpoint mapper and RFR listener: cases run, the
/// mutated PDUs are answered (or met with silence) and every probe after them is
/// served: no finding, nothing saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dcerpc_mode_fuzzes_the_mock_without_findings() {
    use harness::serve::rpc::{RpcListenerSpec, RpcRole};
    use harness::tools::netfuzz_dcerpc::{fuzz_dcerpc, RpcFuzzConfig, RpcOutcome};
    use harness_core::dcerpc::known_calls::KnownInterface;
    use harness_core::netfuzz::dcerpc::RpcCredentials;

    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let spec = |role| RpcListenerSpec {
        role,
        addr: loopback,
    };
    let lab = harness::Lab::start(harness::LabConfig {
        listeners: Vec::new(),
        rpc: vec![spec(RpcRole::Exchange), spec(RpcRole::EndpointMapper)],
        seed: Some(15),
        ..harness::LabConfig::default()
    })
    .await
    .expect("lab starts");
    for (role, interface) in [
        (RpcRole::EndpointMapper, KnownInterface::Epm),
        (RpcRole::Exchange, KnownInterface::Rfr),
    ] {
        let out = out_dir(&format!("dcerpc-{interface:?}"));
        let cfg = RpcFuzzConfig {
            addr: lab.rpc_addr(role).expect("rpc listener"),
            interface,
            duration: Duration::from_millis(2_000),
            count: Some(80),
            seed: 1,
            hang_timeout: Duration::from_millis(2_000),
            silence: Duration::from_millis(100),
            first_case: 0,
            watch_pid: None,
            out: out.clone(),
            credentials: RpcCredentials {
                user: "alice".into(),
                password: "secret".into(),
                domain: "EXAMPLE".into(),
            },
        };
        let summary = tokio::task::spawn_blocking(move || fuzz_dcerpc(&cfg, &mut |_| {}))
            .await
            .expect("fuzz thread")
            .expect("fuzz runs");
        let table: Vec<String> = RpcOutcome::ALL
            .iter()
            .map(|k| format!("{k}: {}", summary.count(*k)))
            .collect();
        assert!(
            !summary.failed(),
            "{interface:?}: {table:?} {:?}",
            summary.findings
        );
        assert!(summary.cases >= 10, "{interface:?}: {table:?}");
        assert!(summary.count(RpcOutcome::Answered) > 0, "{table:?}");
        assert!(!out.exists());
    }
}

/// A listener that answers a bind with text is no DCE/RPC server: the first probe fails
/// and the run does not start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dcerpc_mode_refuses_a_server_that_is_not_one() {
    use harness::tools::netfuzz_dcerpc::{fuzz_dcerpc, RpcFuzzConfig};
    use harness_core::dcerpc::known_calls::KnownInterface;
    use harness_core::netfuzz::dcerpc::RpcCredentials;
    use tokio::io::AsyncReadExt;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let cfg = RpcFuzzConfig {
        addr,
        interface: KnownInterface::Epm,
        duration: Duration::from_millis(500),
        count: Some(5),
        seed: 1,
        hang_timeout: Duration::from_millis(1_000),
        silence: Duration::from_millis(50),
        first_case: 0,
        watch_pid: None,
        out: out_dir("dcerpc-not-rpc"),
        credentials: RpcCredentials {
            user: "alice".into(),
            password: "secret".into(),
            domain: "EXAMPLE".into(),
        },
    };
    let result = tokio::task::spawn_blocking(move || fuzz_dcerpc(&cfg, &mut |_| {}))
        .await
        .expect("fuzz thread");
    let err = result
        .expect_err("a text server passes no probe")
        .to_string();
    assert!(err.contains("malformed"), "{err}");
}

/// The rpch:// mode against the lab's RPC proxy in front of its Exchange endpoint: 200
/// virtual connections of seed 1, each with one thing wrong at the RTS/HTTP layer or in
/// its DCE/RPC session, every canary after them served: no finding. Every kind of
/// mutation was played, and the refusals came with the status the plans name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpch_mode_fuzzes_the_proxy_without_findings() {
    use harness::tools::netfuzz_dcerpc::RpcFuzzConfig;
    use harness::tools::netfuzz_rpch::{fuzz_rpch, RpchFuzzConfig, RpchOutcome, RpchSummary};
    use harness::tools::rpc_load::RpchRoute;
    use harness_core::dcerpc::known_calls::KnownInterface;
    use harness_core::netfuzz::dcerpc::RpcCredentials;
    use harness_core::netfuzz::rpch::RtsMutation;

    let lab = common::rpch_lab().await;
    let addr = lab.rpch_addr(false).expect("proxy listener");
    let describe = |s: &RpchSummary| {
        let mut text = format!(
            "{} cases in {:?} ({})\n",
            s.run.cases, s.run.elapsed, s.run.stopped
        );
        for k in RpchOutcome::ALL {
            text.push_str(&format!("  {k}: {}\n", s.run.count(k)));
        }
        text.push_str(&format!("  by mutation: {:?}\n", s.by_mutation));
        text.push_str(&format!("  statuses: {:?}\n", s.statuses));
        text.push_str(&format!("  refusals: {:?}\n", s.refusals));
        for f in &s.run.findings {
            text.push_str(&format!(
                "  finding {} case {}: {}\n{}\n",
                f.kind,
                f.case,
                f.detail,
                std::fs::read_to_string(&f.path)
                    .unwrap_or_default()
                    .chars()
                    .take(4_000)
                    .collect::<String>()
            ));
        }
        text
    };
    for basic in [false, true] {
        let out = out_dir(if basic { "rpch-basic" } else { "rpch-ntlm" });
        let route = RpchRoute {
            host: "127.0.0.1".into(),
            target: "MAIL:6004".into(),
            basic,
        };
        let cfg = RpchFuzzConfig {
            proxy: route.proxy(addr, "alice", "secret", "EXAMPLE"),
            run: RpcFuzzConfig {
                addr,
                interface: KnownInterface::Rfr,
                duration: Duration::from_secs(120),
                count: Some(if basic { 40 } else { 200 }),
                seed: 1,
                hang_timeout: Duration::from_millis(3_000),
                silence: Duration::from_millis(100),
                first_case: 0,
                watch_pid: None,
                out: out.clone(),
                credentials: RpcCredentials {
                    user: "alice".into(),
                    password: "secret".into(),
                    domain: "EXAMPLE".into(),
                },
            },
        };
        let started = Instant::now();
        let s = fuzz_rpch(&cfg, &mut |_| {}).await.expect("fuzz runs");
        let text = describe(&s);
        eprintln!("rpch (basic {basic}): {text}");
        assert!(!s.run.failed(), "{text}");
        assert!(s.run.findings.is_empty() && !out.exists(), "{text}");
        assert_eq!(s.run.cases, cfg.run.count.unwrap(), "{text}");
        assert!(started.elapsed() < Duration::from_secs(100), "{text}");
        if basic {
            continue;
        }
        // Every RTS/HTTP mutation kind was played, and DCE/RPC ones inside the IN
        // channel.
        for kind in RtsMutation::KINDS {
            assert!(
                s.by_mutation.get(kind).is_some_and(|n| *n > 0),
                "{kind}: {text}"
            );
        }
        let rpc: u64 = s
            .by_mutation
            .iter()
            .filter(|(k, _)| k.starts_with("rpc-"))
            .map(|(_, n)| n)
            .sum();
        assert!(rpc >= 50, "{text}");
        // Each outcome the plans lead to came.
        for k in [
            RpchOutcome::Served,
            RpchOutcome::Answered,
            RpchOutcome::Refused,
            RpchOutcome::Held,
            RpchOutcome::Ended,
        ] {
            assert!(s.run.count(k) > 0, "{k}: {text}");
        }
        // Every refusal the plans name came as 400; besides, the OUT channels' 200s, the
        // IN channels' 400 (or 503 when the endpoint closed) as their virtual
        // connections ended.
        let refused: u64 = s.refusals.values().sum();
        assert_eq!(refused, s.run.count(RpchOutcome::Refused), "{text}");
        assert!(refused >= 20, "{text}");
        let by_status: u64 = s
            .refusals
            .iter()
            .filter(|(k, _)| k.ends_with(" 400"))
            .map(|(_, n)| n)
            .sum();
        assert!(by_status >= 15, "{text}");
        assert!(
            s.refusals
                .keys()
                .all(|k| k.ends_with(" 400") || k.ends_with(" close")),
            "{text}"
        );
        assert!(
            s.statuses.get(&400).is_some_and(|n| *n >= by_status),
            "{text}"
        );
        assert!(
            s.statuses.keys().all(|c| [200, 400, 503].contains(c)),
            "{text}"
        );
    }
    lab.shutdown().await;
}

/// A listener that answers an OUT channel with a bare 200 is no RPC proxy: the first
/// canary (no CONN/A3, no CONN/C2 within the hang timeout) fails and the run does not
/// start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpch_mode_refuses_a_proxy_that_is_not_one() {
    use harness::tools::netfuzz_dcerpc::RpcFuzzConfig;
    use harness::tools::netfuzz_rpch::{fuzz_rpch, RpchFuzzConfig};
    use harness::tools::rpc_load::RpchRoute;
    use harness_core::dcerpc::known_calls::KnownInterface;
    use harness_core::netfuzz::dcerpc::RpcCredentials;
    use tokio::io::AsyncReadExt;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                // A bare 200 for an OUT channel's request, then silence; nothing for an
                // IN channel.
                let mut buf = [0u8; 4096];
                if !matches!(s.read(&mut buf).await, Ok(n) if n > 0) {
                    return;
                }
                if buf.starts_with(b"RPC_OUT_DATA") {
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
                }
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    let route = RpchRoute {
        host: "127.0.0.1".into(),
        target: "MAIL:6004".into(),
        basic: true,
    };
    let cfg = RpchFuzzConfig {
        proxy: route.proxy(addr, "alice", "secret", "EXAMPLE"),
        run: RpcFuzzConfig {
            addr,
            interface: KnownInterface::Rfr,
            duration: Duration::from_millis(500),
            count: Some(5),
            seed: 1,
            hang_timeout: Duration::from_millis(500),
            silence: Duration::from_millis(50),
            first_case: 0,
            watch_pid: None,
            out: out_dir("rpch-not-a-proxy"),
            credentials: RpcCredentials {
                user: "alice".into(),
                password: "secret".into(),
                domain: "EXAMPLE".into(),
            },
        },
    };
    let started = Instant::now();
    let err = fuzz_rpch(&cfg, &mut |_| {})
        .await
        .expect_err("a bare 200 is no proxy")
        .to_string();
    assert!(err.contains("canary"), "{err}");
    assert!(err.contains("no answer within 500ms"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// `harness fuzz --target rpch://` as a command: the summary with the mutation and status
/// tables, exit 0 without findings; `--case N --count 1` plays one case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rpch_command_prints_its_tables() {
    let lab = common::rpch_lab().await;
    let addr = lab.rpch_addr(false).expect("proxy listener");
    let out = out_dir("rpch-cli");
    let run = move |extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_harness"));
        cmd.args(["fuzz", "--target", &format!("rpch://{addr}")])
            .args(["--seconds", "30", "--silence", "50"])
            .args(extra)
            .arg("--out")
            .arg(&out);
        cmd.output().expect("harness fuzz runs")
    };
    let (all, one) = tokio::task::spawn_blocking(move || {
        (
            run(&["--count", "30"]),
            run(&["--case", "57", "--count", "1"]),
        )
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&all.stdout);
    assert_eq!(
        all.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&all.stderr)
    );
    assert!(
        stdout.contains("(Rfr, MAIL:6004, ntlm auth) seed 1, 30 cases"),
        "{stdout}"
    );
    assert!(stdout.contains("mutation           cases"), "{stdout}");
    assert!(
        stdout.contains("HTTP statuses of the cases' channels: 200: "),
        "{stdout}"
    );
    assert!(stdout.contains("0 findings saved"), "{stdout}");
    // Case 57 of seed 1: an IN channel declaring 96 octets, refused.
    let stdout = String::from_utf8_lossy(&one.stdout);
    assert_eq!(one.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("seed 1, 1 cases"), "{stdout}");
    assert!(stdout.contains("length-too-small  1\n"), "{stdout}");
    // The OUT channel's 200 may come before or after the IN channel's 400 (the proxy
    // answers each on its own task); the refusal is what the case is about.
    assert!(
        stdout.contains("200: 1, 400: 1\n") || stdout.contains("channels: 400: 1\n"),
        "{stdout}"
    );
    assert!(stdout.contains("refused      1"), "{stdout}");
    lab.shutdown().await;
}
