//! `harness serve` as a user runs it: a separate process on loopback ports, users added
//! with `--user`, curl authenticating with NTLM, then stopped by PID with SIGTERM.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{require_tool, CURL_LOGIN_DENIED};

/// Reads `listening <scheme> <addr>` lines until `press Ctrl-C` (bounded to 20 s).
fn listening(stdout: impl std::io::Read + Send + 'static) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.expect("stdout line");
        if let Some(rest) = line.strip_prefix("listening ") {
            let mut parts = rest.split_whitespace();
            let scheme = parts.next().unwrap_or_default().to_string();
            let addr = parts.next().unwrap_or_default().to_string();
            found.push((scheme, addr));
        }
        if line.starts_with("press Ctrl-C") || Instant::now() > deadline {
            break;
        }
    }
    // Keep reading until the process exits, as a terminal would.
    std::thread::spawn(move || lines.for_each(drop));
    found
}

/// `harness serve ARGS` started: the process, its PID, and the listeners it printed.
pub(crate) async fn spawn_serve(
    args: &[&str],
) -> (std::process::Child, String, Vec<(String, String)>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("harness serve starts");
    let pid = child.id().to_string();
    let stdout = child.stdout.take().expect("stdout");
    let addrs = tokio::task::spawn_blocking(move || listening(stdout))
        .await
        .expect("listening lines");
    (child, pid, addrs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_added_user_accepts_ntlm_and_refuses_wrong_password() {
    let Some(curl) = require_tool("curl", "apt-get install curl") else {
        return;
    };
    let (mut child, pid, addrs) = spawn_serve(&[
        "--imap",
        "127.0.0.1:0",
        "--pop3",
        "127.0.0.1:0",
        "--user",
        "carol:s3cret",
    ])
    .await;
    let addr_of = |scheme: &str| {
        addrs
            .iter()
            .find(|(s, _)| s == scheme)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| panic!("no {scheme} listener in {addrs:?}"))
    };
    let imap = format!("imap://{}/INBOX?ALL", addr_of("imap"));
    let pop3 = format!("pop3://{}/", addr_of("pop3"));
    let ntlm = ["--login-options", "AUTH=NTLM"];
    for target in [&imap, &pop3] {
        let ok = common::curl(&curl, target, "carol:s3cret", &ntlm).await;
        assert!(ok.ok(), "{target}: {ok:?}");
        let bad = common::curl(&curl, target, "carol:wrong", &ntlm).await;
        assert_eq!(bad.code, Some(CURL_LOGIN_DENIED), "{target}: {bad:?}");
    }
    // Default-lab users are still there alongside the added one.
    let alice = common::curl(&curl, &imap, "alice:secret", &[]).await;
    assert!(alice.ok(), "{alice:?}");

    let status = stop_with_sigterm(&mut child, &pid);
    assert!(status.success(), "exit status {status:?}");
}

/// SIGTERM to `pid`, then its exit status (killed and failed after 10 s).
pub(crate) fn stop_with_sigterm(
    child: &mut std::process::Child,
    pid: &str,
) -> std::process::ExitStatus {
    let term = Command::new("kill")
        .args(["-TERM", pid])
        .status()
        .expect("kill runs");
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("harness serve did not stop within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_refuses_unknown_profile_and_bad_user_syntax() {
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["serve", "--imap", "127.0.0.1:0", "--profile", "nosuch"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown profile \"nosuch\"") && err.contains("exchange"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["serve", "--imap", "127.0.0.1:0", "--user", "nocolon"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NAME:PASSWORD"));
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["serve", "--imap", "192.0.2.1:143"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loopback address"));
}

#[test]
fn serve_refuses_bad_rpc_settings() {
    for (args, says) in [
        (&["--rpc-max-frag", "1000"][..], "at least 1432"),
        (&["--rpc-refusals", "vms"][..], "known: windows, samba"),
        (&["--rpc-profile", "exchange5"][..], "exchange2003"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_harness"))
            .args(["serve", "--rpc", "127.0.0.1:0"])
            .args(args)
            .output()
            .expect("runs");
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// `harness serve --kdc`: it says its realm and services at start, and MIT's kinit gets a
/// TGT for a user added with `--user` (the KDC's principals are the world's users).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_kdc_says_its_realm_and_issues_tickets_to_added_users() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["serve", "--kdc", "127.0.0.1:0", "--user", "carol:s3cret"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("harness serve starts");
    let pid = child.id().to_string();
    let stdout = child.stdout.take().expect("stdout");
    let kdc_line = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let line = lines
            .by_ref()
            .map_while(Result::ok)
            .take(20)
            .find(|l| l.starts_with("listening kdc"));
        std::thread::spawn(move || lines.for_each(drop));
        line
    })
    .await
    .unwrap()
    .expect("a 'listening kdc' line");
    assert!(
        kdc_line.contains("(udp+tcp, realm EXAMPLE.TEST; services ")
            && kdc_line.contains("HTTP/web.example.test (ok-as-delegate)"),
        "{kdc_line}"
    );
    let addr: std::net::SocketAddr = kdc_line
        .split_whitespace()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .expect("the KDC's address");
    if let Some(env) =
        common::krb5::KrbClientEnv::new("EXAMPLE.TEST", addr, common::krb5::KdcTransport::UdpFirst)
    {
        let ok = env.kinit("carol", "s3cret", true).await;
        assert!(ok.ok(), "{ok:?}");
        let wrong = env.kinit("carol", "nope", true).await;
        assert_eq!(
            wrong.stderr.trim(),
            "kinit: Password incorrect while getting initial credentials"
        );
    }
    let status = stop_with_sigterm(&mut child, &pid);
    assert!(status.success(), "exit status {status:?}");
}

/// `harness serve --gc NAME=ADDR`: one NSPI listener per global catalog, named by its
/// FQDN; a malformed value is refused with the form it wants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_gc_listens_per_global_catalog_and_refuses_bad_names() {
    let (mut child, pid, addrs) =
        spawn_serve(&["--gc", "gc1=127.0.0.1:0", "--gc", "gc2=127.0.0.1:0"]).await;
    let gcs: Vec<&(String, String)> = addrs.iter().filter(|(s, _)| s == "gc").collect();
    assert_eq!(gcs.len(), 2, "{addrs:?}");
    for (_, addr) in &gcs {
        let addr: std::net::SocketAddr = addr.parse().expect("an address");
        assert!(std::net::TcpStream::connect(addr).is_ok(), "{addr}");
    }
    let status = stop_with_sigterm(&mut child, &pid);
    assert!(status.success(), "exit status {status:?}");
    for (arg, says) in [
        ("gc1", "expected NAME=ADDR"),
        ("g c=127.0.0.1:0", "no host name"),
        ("gc1=nowhere", "no socket address"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_harness"))
            .args(["serve", "--gc", arg])
            .output()
            .expect("runs");
        assert!(!out.status.success(), "{arg}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{arg}: {err}");
    }
}
