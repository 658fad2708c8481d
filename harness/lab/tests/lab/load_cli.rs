//! `harness load` as a user runs it, against a lab started in the test: the closing
//! table, errors by kind, the bounds, and the loopback-only rule.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use harness::{Lab, LabConfig, Protocol, Security};
use harness_core::LabFile;

async fn lab() -> Lab {
    let mut file = LabFile::default_lab();
    for i in 0..4 {
        file.add_user(&format!("u{i}"), "secret");
    }
    common::start_plain_lab(LabConfig {
        lab: file,
        ..LabConfig::default()
    })
    .await
}

fn url(lab: &Lab, protocol: Protocol) -> String {
    format!(
        "{protocol}://{}",
        lab.addr(protocol, Security::Plain).expect("listener")
    )
}

async fn load(args: &[&str]) -> common::Ran {
    let mut all = vec!["load"];
    all.extend_from_slice(args);
    common::run(Path::new(env!("CARGO_BIN_EXE_harness")), &all).await
}

/// `harness load --target TARGET --clients CLIENTS --seconds SECONDS`, then `rest`.
async fn load_clients(target: &str, clients: &str, seconds: &str, rest: &[&str]) -> common::Ran {
    let mut args = vec![
        "--target",
        target,
        "--clients",
        clients,
        "--seconds",
        seconds,
    ];
    args.extend_from_slice(rest);
    load(&args).await
}

/// The summary row: sessions, failed, seconds, sessions/s, p50, p99, max.
fn summary(out: &str) -> Vec<String> {
    let lines: Vec<&str> = out.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("sessions  failed"))
        .unwrap_or_else(|| panic!("no summary table in:\n{out}"));
    let row = lines.get(header + 2).expect("a summary row");
    let mut cells = Vec::new();
    let mut rest = row.split_whitespace();
    while let Some(c) = rest.next() {
        // Latencies print as "12.34 ms".
        if rest.clone().next() == Some("ms") {
            rest.next();
            cells.push(format!("{c} ms"));
        } else {
            cells.push(c.to_string());
        }
    }
    assert_eq!(cells.len(), 7, "{row}");
    cells
}

/// The count on the error-kind line `kind`.
fn errors(out: &str, kind: &str) -> u64 {
    out.lines()
        .find_map(|l| {
            l.strip_prefix(kind)
                .filter(|r| r.starts_with(' '))
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or_else(|| panic!("no {kind} line in:\n{out}"))
}

fn assert_clean_run(ran: &common::Ran) {
    assert!(ran.ok(), "{ran:?}");
    let row = summary(&ran.stdout);
    let sessions: u64 = row[0].parse().unwrap();
    let rate: f64 = row[3].parse().unwrap();
    assert!(sessions > 0 && rate > 0.0, "{ran:?}");
    assert_eq!(row[1], "0", "{ran:?}");
    assert!(
        row[4].ends_with(" ms") && row[5].ends_with(" ms"),
        "{ran:?}"
    );
    for kind in ["connect", "timeout", "refused", "protocol"] {
        assert_eq!(errors(&ran.stdout, kind), 0, "{kind}: {ran:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_load_against_the_lab_reports_sessions_and_no_errors() {
    let lab = lab().await;
    let target = url(&lab, Protocol::Imap);
    let users = ["--user", "alice:secret", "--user", "bob:hunter2"];
    let ran = load_clients(&target, "4", "2", &users).await;
    assert_clean_run(&ran);
    assert!(ran.stdout.contains("login-select-fetch-logout"), "{ran:?}");
    // Every session really logged in: the lab counted the connections.
    let sessions: u64 = summary(&ran.stdout)[0].parse().unwrap();
    assert!(
        lab.stats()
            .accepted
            .load(std::sync::atomic::Ordering::Relaxed)
            >= sessions
    );
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pop3_load_with_a_user_per_client() {
    let lab = lab().await;
    let target = url(&lab, Protocol::Pop3);
    let users = ["--users-from-pattern", "u{i}:secret"];
    let ran = load_clients(&target, "4", "2", &users).await;
    assert_clean_run(&ran);
    assert!(ran.stdout.contains("login-stat-retr-quit"), "{ran:?}");
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_counted_as_no_and_err() {
    let lab = lab().await;
    for (protocol, expect) in [(Protocol::Imap, "a1 NO"), (Protocol::Pop3, "-ERR")] {
        let target = url(&lab, protocol);
        let ran = load_clients(&target, "1", "1", &["--user", "alice:wrong"]).await;
        assert_eq!(ran.code, Some(1), "{ran:?}");
        let row = summary(&ran.stdout);
        assert_eq!(row[0], "0", "{ran:?}");
        assert!(errors(&ran.stdout, "refused") > 0, "{ran:?}");
        assert!(ran.stdout.contains(expect), "{ran:?}");
        for kind in ["connect", "timeout", "protocol"] {
            assert_eq!(errors(&ran.stdout, kind), 0, "{kind}: {ran:?}");
        }
    }
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_count_bounds_the_run() {
    let lab = lab().await;
    let target = url(&lab, Protocol::Imap);
    let t0 = Instant::now();
    let sessions_and_user = ["--sessions", "7", "--user", "alice:secret"];
    let ran = load_clients(&target, "2", "25", &sessions_and_user).await;
    assert!(ran.ok(), "{ran:?}");
    assert_eq!(summary(&ran.stdout)[0], "7", "{ran:?}");
    assert!(t0.elapsed() < Duration::from_secs(20), "{ran:?}");
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_a_connect_error() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = format!("imap://127.0.0.1:{port}");
    let ran = load(&["--target", &target, "--seconds", "0.5", "--user", "a:b"]).await;
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(errors(&ran.stdout, "connect") > 0, "{ran:?}");
}

#[tokio::test]
async fn a_non_loopback_target_is_refused() {
    // 192.0.2.0/24 is TEST-NET-1: never routed; the command must refuse before connecting.
    let t0 = Instant::now();
    let ran = load(&["--target", "imap://192.0.2.1:143", "--user", "a:b"]).await;
    assert!(!ran.ok(), "{ran:?}");
    assert!(ran.stderr.contains("not a loopback address"), "{ran:?}");
    assert!(!ran.stdout.contains("sessions/s"), "{ran:?}");
    assert!(t0.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn pop3_with_fewer_users_than_clients_is_refused() {
    let ran = load(&[
        "--target",
        "pop3://127.0.0.1:1",
        "--clients",
        "3",
        "--user",
        "alice:secret",
    ])
    .await;
    assert!(!ran.ok(), "{ran:?}");
    assert!(ran.stderr.contains("distinct users"), "{ran:?}");
}

/// A server whose status lines end in `{5}`: text, not a literal (RFC 3501 9: literals
/// come only in data). It greets with `* OK ready {5}`, sends an untagged `* OK ... {5}`
/// before every tagged reply, and otherwise answers like a small IMAP server.
async fn serve_braces_in_status_text(listener: tokio::net::TcpListener) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let mut conn = BufReader::new(tcp);
            if conn
                .get_mut()
                .write_all(b"* OK ready {5}\r\n")
                .await
                .is_err()
            {
                return;
            }
            let mut line = String::new();
            loop {
                line.clear();
                if conn.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let mut words = line.split_whitespace();
                let tag = words.next().unwrap_or("*").to_string();
                let command = words.next().unwrap_or("").to_ascii_uppercase();
                let data = match command.as_str() {
                    "CAPABILITY" => "* CAPABILITY IMAP4rev1\r\n".to_string(),
                    "SELECT" => "* 1 EXISTS\r\n* FLAGS (\\Seen)\r\n".to_string(),
                    "FETCH" => "* 1 FETCH (FLAGS () BODY[] {5}\r\nhello)\r\n".to_string(),
                    "LOGOUT" => "* BYE bye {5}\r\n".to_string(),
                    _ => String::new(),
                };
                let reply = format!("{data}* OK [ALERT] note {{5}}\r\n{tag} OK done {{5}}\r\n");
                if conn.get_mut().write_all(reply.as_bytes()).await.is_err() || command == "LOGOUT"
                {
                    return;
                }
            }
        });
    }
}

/// A status text ending in `{5}` is no literal: the load generator once skipped five
/// octets after it (the start of the tagged reply) and then waited for a reply that had
/// already come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_reads_a_status_text_ending_in_braces_as_text() {
    use harness::tools::load::{self, LoadConfig, LoadProgress, SessionKind, UserSpec};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(serve_braces_in_status_text(listener));
    let config = LoadConfig {
        addr,
        session: SessionKind::ImapLoginSelectFetchLogout,
        clients: 1,
        users: vec![UserSpec::parse("alice:secret").unwrap()],
        duration: Duration::from_secs(20),
        max_sessions: Some(3),
        op_timeout: Duration::from_secs(2),
        rpc: None,
        kdc: None,
    };
    let report = load::run(config, std::sync::Arc::new(LoadProgress::default()))
        .await
        .expect("valid config");
    server.abort();
    assert_eq!(report.failed(), 0, "{:?}", report.errors);
    assert_eq!(report.succeeded, 3);
}

/// `harness load --target dcerpc://` against the lab's endpoint mapper: NTLM binds at
/// level 6 with one sealed call each, and sealed calls on held associations, all
/// answered; a wrong password is counted as refused (the fault Windows sends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dcerpc_load_binds_and_calls_sealed() {
    use harness::serve::rpc::RpcRole;
    let lab = common::rpc_lab(None).await;
    let epm = lab.rpc_addr(RpcRole::EndpointMapper).expect("epm");
    let target = format!("dcerpc://{epm}");
    for session in ["rpc-bind-call-close", "rpc-calls"] {
        let ran = load_clients(
            &target,
            "2",
            "1",
            &["--user", "alice:secret", "--session", session],
        )
        .await;
        assert_clean_run(&ran);
        assert!(
            ran.stdout.contains("DCE/RPC (auth level 6)") && ran.stdout.contains(session),
            "{ran:?}"
        );
    }
    let ran = load_clients(&target, "1", "1", &["--user", "alice:wrong"]).await;
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(errors(&ran.stdout, "refused") > 0, "{ran:?}");
    assert!(ran.stdout.contains("ACCESS_DENIED"), "{ran:?}");
    lab.shutdown().await;
}

/// `harness load --target rpch://` through the lab's Outlook Anywhere proxy: virtual
/// connections (both channels, HTTP NTLM or Basic, bind at level 6, NspiBind, NspiUnbind)
/// all served; a wrong password is refused (401 on the channels).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpch_load_makes_virtual_connections() {
    let lab = common::rpch_lab().await;
    let proxy = lab.rpch_addr(false).expect("proxy");
    let target = format!("rpch://{proxy}");
    for auth in ["ntlm", "basic"] {
        let ran = load_clients(
            &target,
            "2",
            "1",
            &[
                "--user",
                "alice:secret",
                "--rpc-domain",
                "EXAMPLE",
                "--rpch-auth",
                auth,
            ],
        )
        .await;
        assert_clean_run(&ran);
        assert!(
            ran.stdout.contains("RPC over HTTP (auth level 6) nspi"),
            "{ran:?}"
        );
    }
    let ran = load_clients(&target, "1", "1", &["--user", "alice:wrong"]).await;
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(errors(&ran.stdout, "refused") > 0, "{ran:?}");
    assert!(ran.stdout.contains("401"), "{ran:?}");
    lab.shutdown().await;
}

/// `rpc-hold` holds: while the run lasts, the lab serves one association per client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_hold_keeps_its_associations_open_until_the_run_ends() {
    use harness::serve::rpc::RpcRole;
    use std::sync::atomic::Ordering;
    let lab = common::rpc_lab(None).await;
    let epm = lab.rpc_addr(RpcRole::EndpointMapper).expect("epm");
    let target = format!("dcerpc://{epm}");
    let run = load_clients(
        &target,
        "3",
        "3",
        &["--user", "alice:secret", "--session", "rpc-hold"],
    );
    let watch = async {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        lab.stats().active.load(Ordering::Relaxed)
    };
    let (ran, active) = tokio::join!(run, watch);
    assert_clean_run(&ran);
    assert!(active >= 3, "{active} associations open mid-run");
    lab.shutdown().await;
}

/// `krb5://`: kinit and TGS sessions against the lab's KDC; a wrong password is counted
/// as refused (KRB-ERROR 24) and the run exits 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kdc_sessions_are_counted_and_a_wrong_password_is_refused() {
    let lab = crate::kerberos_lab::kdc_lab().await;
    let target = format!("krb5://{}", lab.kdc_addr().expect("kdc"));
    for session in ["kdc-as", "kdc-tgs"] {
        let ran = load(&[
            "--target",
            &target,
            "--session",
            session,
            "--clients",
            "4",
            "--sessions",
            "40",
            "--user",
            "alice:secret",
        ])
        .await;
        assert!(ran.ok(), "{session}: {ran:?}");
        let header = format!("harness load: Kerberos (EXAMPLE.TEST) {session} to ");
        assert!(ran.stdout.starts_with(&header), "{}", ran.stdout);
        assert_eq!(
            summary(&ran.stdout)[..2],
            ["40", "0"],
            "{session}: {}",
            ran.stdout
        );
    }
    let wrong = load(&[
        "--target",
        &target,
        "--sessions",
        "3",
        "--user",
        "alice:wrong",
    ])
    .await;
    assert_eq!(wrong.code, Some(1), "{wrong:?}");
    assert!(
        wrong.stdout.contains("KRB-ERROR 24: PREAUTH_FAILED"),
        "{}",
        wrong.stdout
    );
    lab.shutdown().await;
}
