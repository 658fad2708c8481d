//! Real clients against the mock endpoints over loopback: curl (every SASL mechanism,
//! APOP, STARTTLS, implicit TLS, wrong passwords) and Python's imaplib / poplib.

use crate::common;

use std::path::Path;

use common::{require_tool, run, start_lab, write_cert, Ran, CURL_LOGIN_DENIED};
use harness::{Protocol, Security};
use harness_core::Profile;

const CURL_HINT: &str = "apt-get install curl";
const PY_HINT: &str = "apt-get install python3";

fn url(scheme: &str, addr: std::net::SocketAddr, path: &str) -> String {
    format!("{scheme}://{addr}{path}")
}

/// Logs in as alice with each mechanism (curl's `--login-options AUTH=...`) and hands the
/// verbose run to `check`, then tries a wrong password, which curl must report as denied.
async fn each_mechanism(curl: &Path, target: &str, mechs: &[&str], check: impl Fn(&str, &Ran)) {
    for mech in mechs {
        let opt = format!("AUTH={mech}");
        let verbose_login = ["-v", "--login-options", opt.as_str()];
        let ok = common::curl(curl, target, "alice:secret", &verbose_login).await;
        assert!(ok.ok(), "{mech}: {ok:?}");
        check(mech, &ok);
        // Without -v: only the exit status is read.
        let bad = common::curl(curl, target, "alice:wrong", &verbose_login[1..]).await;
        assert_eq!(
            bad.code,
            Some(CURL_LOGIN_DENIED),
            "{mech} with a wrong password: {bad:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_imap_every_mechanism_and_wrong_password() {
    let Some(curl) = require_tool("curl", CURL_HINT) else {
        return;
    };
    let (lab, addr) = common::start_mock(Protocol::Imap).await;
    let target = url("imap", addr, "/INBOX?ALL");
    each_mechanism(&curl, &target, &["NTLM", "PLAIN", "LOGIN"], |mech, ok| {
        assert!(ok.stdout.contains("* SEARCH 1 2 3"), "{mech}: {ok:?}");
        assert!(
            ok.stderr.contains(&format!("AUTHENTICATE {mech}")),
            "{mech} was not the mechanism used: {ok:?}"
        );
    })
    .await;
    let target = url("imap", addr, "/INBOX;UID=2");
    let fetched = common::curl(&curl, &target, "bob:hunter2", &[]).await;
    assert!(fetched.ok(), "{fetched:?}");
    assert!(
        fetched.stdout.contains("Subject: Test message 2"),
        "{fetched:?}"
    );
    assert!(
        fetched
            .stdout
            .contains("Hello bob, this is message number 2."),
        "{fetched:?}"
    );
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_pop3_every_mechanism_apop_and_wrong_password() {
    let Some(curl) = require_tool("curl", CURL_HINT) else {
        return;
    };
    let (lab, addr) = common::start_mock(Protocol::Pop3).await;
    let target = url("pop3", addr, "/");
    let mechs = ["NTLM", "PLAIN", "LOGIN", "+APOP"];
    each_mechanism(&curl, &target, &mechs, |mech, ok| {
        let listing: Vec<&str> = ok.stdout.lines().collect();
        assert_eq!(listing.len(), 3, "{mech}: {ok:?}");
        assert!(listing[0].starts_with("1 "), "{mech}: {ok:?}");
        let used = if mech == "+APOP" {
            "APOP alice ".to_string()
        } else {
            format!("AUTH {mech}")
        };
        assert!(ok.stderr.contains(&used), "{mech} was not used: {ok:?}");
    })
    .await;
    let retr = common::curl(&curl, &url("pop3", addr, "/1"), "user:pass", &[]).await;
    assert!(retr.ok(), "{retr:?}");
    assert!(retr.stdout.contains("Subject: Test message 1"), "{retr:?}");
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_over_starttls_and_implicit_tls_verifies_the_lab_certificate() {
    let Some(curl) = require_tool("curl", CURL_HINT) else {
        return;
    };
    let lab = start_lab(Profile::default_profile()).await;
    let cert = write_cert(&lab, "curl-tls.pem");
    let cert = cert.to_str().unwrap();
    // Each protocol upgraded on its plain listener (STARTTLS, STLS), then over implicit
    // TLS (imaps, pop3s).
    for security in [Security::Plain, Security::ImplicitTls] {
        for (protocol, path) in [(Protocol::Imap, "/INBOX?ALL"), (Protocol::Pop3, "/")] {
            let starttls = security == Security::Plain;
            let scheme = if starttls {
                protocol.keyword().to_string()
            } else {
                format!("{}s", protocol.keyword())
            };
            let target = url(&scheme, lab.addr(protocol, security).unwrap(), path);
            let mut options = vec!["-v", "--cacert", cert];
            if starttls {
                options.push("--ssl-reqd");
            }
            let r = common::curl(&curl, &target, "alice:secret", &options).await;
            assert!(r.ok(), "{scheme}: {r:?}");
            assert!(
                r.stderr.contains("SSL connection using") || r.stderr.contains("TLS"),
                "{scheme} did not use TLS: {r:?}"
            );
            if starttls {
                let word = match protocol {
                    Protocol::Imap => "STARTTLS",
                    Protocol::Pop3 => "STLS",
                };
                assert!(r.stderr.contains(word), "{scheme}: {r:?}");
            }
        }
    }
    lab.shutdown().await;
}

/// Runs one of the Python client scripts in each mode against the lab, then once with a
/// wrong password, which must end with exit status 2.
async fn python_client(
    protocol: Protocol,
    script: &str,
    user: (&str, &str),
    modes: &[Option<&str>],
    done: &str,
) {
    let Some(python) = require_tool("python3", PY_HINT) else {
        return;
    };
    let lab = start_lab(Profile::default_profile()).await;
    let cert = write_cert(&lab, &format!("py-{protocol}.pem"));
    let script = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let plain = lab.addr(protocol, Security::Plain).unwrap();
    let tls = lab.addr(protocol, Security::ImplicitTls).unwrap();
    for mode in modes {
        let addr = if *mode == Some("--ssl") { tls } else { plain };
        let port = addr.port().to_string();
        let mut args = vec![script.as_str(), "127.0.0.1", &port, user.0, user.1];
        if let Some(m) = mode {
            args.push(m);
            args.push(cert.to_str().unwrap());
        }
        let r = run(&python, &args).await;
        assert!(r.ok(), "{mode:?}: {r:?}");
        assert!(r.stdout.contains(done), "{mode:?}: {r:?}");
    }
    let port = plain.port().to_string();
    let r = run(
        &python,
        &[script.as_str(), "127.0.0.1", &port, user.0, "nope"],
    )
    .await;
    assert_eq!(r.code, Some(2), "wrong password must fail: {r:?}");
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_imaplib_plain_starttls_and_ssl() {
    let modes = [None, Some("--starttls"), Some("--ssl")];
    python_client(
        Protocol::Imap,
        "imap_client.py",
        ("alice", "secret"),
        &modes,
        "logout BYE",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_poplib_plain_stls_ssl_and_apop() {
    let modes = [None, Some("--stls"), Some("--ssl"), Some("--apop")];
    python_client(
        Protocol::Pop3,
        "pop3_client.py",
        ("user", "pass"),
        &modes,
        "quit OK",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_imaplib_drives_every_command() {
    let Some(python) = require_tool("python3", PY_HINT) else {
        return;
    };
    let lab = start_lab(Profile::default_profile()).await;
    let port = lab
        .addr(Protocol::Imap, Security::Plain)
        .unwrap()
        .port()
        .to_string();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/imap_every_command.py"
    );
    let r = run(&python, &[script, "127.0.0.1", &port, "alice", "secret"]).await;
    assert!(r.ok(), "{r:?}");
    for command in [
        "ID",
        "NAMESPACE",
        "RENAME",
        "LSUB",
        "APPEND",
        "EXAMINE",
        "UID SEARCH",
        "COPY",
        "MOVE",
        "UID EXPUNGE",
        "CLOSE",
        "DELETE parent",
    ] {
        assert!(
            r.stdout.lines().any(|l| l.starts_with(command)),
            "{command} was not exercised: {r:?}"
        );
    }
    lab.shutdown().await;
}
