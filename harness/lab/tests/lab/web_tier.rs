//! The web tier (`harness serve --web`) under real clients: curl with Negotiate after MIT's
//! `kinit -f` against the lab's KDC (delegation always, none, and policy against a service
//! with and without ok-as-delegate), curl with NTLM from this host and from another
//! loopback address (another host), and Basic with and without TLS. `/whoami` says which
//! logon token each made and which next hops it allows.

use crate::common;

use common::krb5::{KdcTransport, KrbClientEnv};
use harness::serve::lab::WebListenerSpec;
use harness::serve::rpc::{RpcListenerSpec, RpcRole};
use harness::{Lab, LabConfig};

const REALM: &str = "EXAMPLE.TEST";

async fn web_lab() -> Lab {
    let lo = |port| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    Lab::start(LabConfig {
        listeners: Vec::new(),
        kdc: Some(lo(0)),
        // The store the application opens mailboxes on: Exchange RPC and WebDAV.
        rpc: vec![RpcListenerSpec {
            role: RpcRole::Exchange,
            addr: lo(0),
        }],
        webdav: vec![WebListenerSpec {
            addr: lo(0),
            tls: false,
        }],
        web: vec![
            WebListenerSpec {
                addr: lo(0),
                tls: false,
            },
            WebListenerSpec {
                addr: lo(0),
                tls: true,
            },
        ],
        seed: Some(5),
        ..LabConfig::default()
    })
    .await
    .expect("lab with a KDC and a web tier")
}

/// A `/mailbox` page's hop and result lines, and the subjects it listed.
fn mailbox_summary(page: &str) -> Vec<&str> {
    page.lines()
        .filter(|l| {
            ["hop:", "result:", "message:"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .map(|l| l.split(" | ").next().unwrap_or(l))
        .collect()
}

const LISTING: [&str; 4] = [
    "result: 3 messages",
    "message: Test message 1",
    "message: Test message 2",
    "message: Test message 3",
];

/// The `key: value` lines of a `/whoami` page that matter here.
fn summary(page: &str) -> Vec<&str> {
    page.lines()
        .filter(|l| {
            [
                "user:",
                "scheme:",
                "token:",
                "delegated:",
                "next hop",
                "finding:",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .collect()
}

/// The web lab, MIT's client tools against its KDC and alice's forwardable TGT in their
/// cache, and the web tier's plain port; None (lab stopped) when the tools are missing.
async fn lab_with_forwardable_tgt() -> Option<(Lab, KrbClientEnv, u16)> {
    let lab = web_lab().await;
    let kdc = lab.kdc_addr().expect("kdc");
    let port = lab.web_addr(false).expect("web").port();
    let Some(env) = KrbClientEnv::new(REALM, kdc, KdcTransport::UdpFirst) else {
        lab.shutdown().await;
        return None;
    };
    let kinit = env.kinit("alice", "secret", true).await;
    assert!(kinit.ok(), "{kinit:?}");
    Some((lab, env, port))
}

/// curl with Negotiate from another host (127.0.0.2) to `host` (resolved to the web
/// tier's port on 127.0.0.1), delegating as `delegation` says; `extra` goes before the
/// URL.
async fn negotiate_get(
    env: &KrbClientEnv,
    curl: &std::path::Path,
    host: &str,
    port: u16,
    delegation: &str,
    path: &str,
    extra: &[&str],
) -> common::Ran {
    let resolve = format!("{host}:{port}:127.0.0.1");
    let url = format!("http://{host}:{port}{path}");
    let mut args = vec![
        "-sS",
        "--max-time",
        "20",
        "--negotiate",
        "-u",
        ":",
        "--delegation",
        delegation,
        "--interface",
        "127.0.0.2",
        "--resolve",
        &resolve,
    ];
    args.extend_from_slice(extra);
    args.push(&url);
    env.run(curl, &args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_negotiate_delegates_as_asked_and_as_ok_as_delegate_allows() {
    let Some(curl) = common::require_tool("curl", "apt-get install curl") else {
        return;
    };
    let Some((lab, env, port)) = lab_with_forwardable_tgt().await else {
        return;
    };
    let delegated = [
        "user: EXAMPLE.TEST\\alice",
        "scheme: Negotiate",
        "token: network (Kerberos, delegated TGT)",
        "delegated: yes (krbtgt/EXAMPLE.TEST@EXAMPLE.TEST)",
        "next hop ntlm: refused (a Kerberos logon has no password for NTLM)",
        "next hop kerberos: possible",
    ];
    let not_delegated = [
        "user: EXAMPLE.TEST\\alice",
        "scheme: Negotiate",
        "token: network (Kerberos, not delegated)",
        "delegated: no",
        "next hop ntlm: refused (a Kerberos logon has no password for NTLM)",
        "next hop kerberos: refused (a Kerberos network logon without a forwarded TGT holds no credentials)",
    ];
    for (host, delegation, expected) in [
        ("web.example.test", "always", &delegated),
        ("web.example.test", "none", &not_delegated),
        // policy: only to a service whose ticket says ok-as-delegate.
        ("web.example.test", "policy", &delegated),
        ("plain.example.test", "policy", &not_delegated),
        ("plain.example.test", "always", &delegated),
    ] {
        let ran = negotiate_get(&env, &curl, host, port, delegation, "/whoami", &[]).await;
        assert!(ran.ok(), "{host} {delegation}: {ran:?}");
        assert_eq!(
            summary(&ran.stdout),
            expected,
            "{host} --delegation {delegation}"
        );
    }
    // Without a ticket curl has nothing to send: the 401 with the schemes IIS offers.
    env.kdestroy().await;
    let args = [
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--negotiate",
        "-u",
        ":",
    ];
    let url = format!("http://127.0.0.1:{port}/whoami");
    let ran = env.run(&curl, &[&args[..], &[&url]].concat()).await;
    assert_eq!(ran.stdout, "401");
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ntlm_and_basic_tokens_depend_on_the_host_and_tls() {
    let Some(curl) = common::require_tool("curl", "apt-get install curl") else {
        return;
    };
    let lab = web_lab().await;
    let plain = lab.web_addr(false).expect("web");
    let tls = lab.web_addr(true).expect("web-tls");
    let cert = common::write_cert(&lab, "web-tier");
    let cert = cert.to_string_lossy().into_owned();
    let whoami = |addr: std::net::SocketAddr,
                  https: bool,
                  options: Vec<&'static str>,
                  from: &'static str| {
        let curl = curl.clone();
        let cert = cert.clone();
        async move {
            let scheme = if https { "https" } else { "http" };
            let url = format!("{scheme}://127.0.0.1:{}/whoami", addr.port());
            let mut args = vec!["--interface", from, "--cacert", &cert];
            args.extend(options);
            common::curl(&curl, &url, "alice:secret", &args).await
        }
    };
    let ntlm_remote = whoami(plain, false, vec!["--ntlm"], "127.0.0.2").await;
    assert_eq!(
        summary(&ntlm_remote.stdout),
        [
            "user: alice",
            "scheme: NTLM",
            "token: network (NTLM)",
            "delegated: n/a",
            "next hop ntlm: refused (a network logon from NTLM holds no credentials to pass on)",
            "next hop kerberos: refused (a network logon from NTLM holds no credentials to pass on)",
        ]
    );
    let ntlm_local = whoami(plain, false, vec!["--ntlm"], "127.0.0.1").await;
    assert_eq!(
        summary(&ntlm_local.stdout)[2..],
        [
            "token: local session (browser on this host)",
            "delegated: n/a",
            "next hop ntlm: possible",
            "next hop kerberos: possible",
        ]
    );
    let basic = whoami(plain, false, vec!["--basic"], "127.0.0.2").await;
    assert_eq!(
        summary(&basic.stdout)[1..],
        [
            "scheme: Basic",
            "token: cleartext (Basic logon)",
            "delegated: n/a",
            "next hop ntlm: possible",
            "next hop kerberos: possible",
            "finding: cleartext credentials (Basic without TLS)",
        ]
    );
    let basic_tls = whoami(tls, true, vec!["--basic"], "127.0.0.2").await;
    assert!(basic_tls.stdout.contains("tls: yes\n"), "{basic_tls:?}");
    assert!(!basic_tls.stdout.contains("finding:"), "{basic_tls:?}");
    let wrong = common::curl(
        &curl,
        &format!("http://127.0.0.1:{}/whoami", plain.port()),
        "alice:wrong",
        &["--basic", "-o", "/dev/null", "-w", "%{http_code}"],
    )
    .await;
    assert_eq!(wrong.stdout, "401");
    lab.shutdown().await;
}

/// Bad Authorization headers get a clear 400 or 401 (never a 500 or a hang), an oversized
/// head is refused, and the web tier goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_authorization_headers_get_clear_answers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let lab = web_lab().await;
    let addr = lab.web_addr(false).expect("web");
    let status_of = |authorization: String| async move {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!(
            "GET /whoami HTTP/1.1\r\nHost: web.example.test\r\nAuthorization: {authorization}\r\nConnection: close\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.expect("write");
        let mut reply = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tcp.read_to_end(&mut reply),
        )
        .await
        .expect("answered within 5 s")
        .expect("read");
        let text = String::from_utf8_lossy(&reply).into_owned();
        text.split_whitespace().nth(1).unwrap_or("none").to_string()
    };
    let b64 = |b: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(b)
    };
    let garbage_krb5 =
        harness_core::kerberos::spnego::write_init(&harness_core::kerberos::spnego::NegTokenInit {
            mech_types: vec![harness_core::kerberos::gss::KRB5_OID.to_vec()],
            mech_token: Some(harness_core::kerberos::gss::frame([1, 0], b"\x6e\x00")),
        });
    let cases: Vec<(String, &str)> = vec![
        ("Negotiate !!!notbase64".into(), "400"),
        ("Negotiate ".into(), "400"),
        (
            format!("Negotiate {}", b64(b"\x60\x84\xff\xff\xff\xff garbage")),
            "400",
        ),
        // A well-formed NegTokenInit whose Kerberos token is garbage: refused, 401.
        (format!("Negotiate {}", b64(&garbage_krb5)), "401"),
        ("NTLM AAAA".into(), "400"),
        ("Basic bm9jb2xvbg==".into(), "400"),
        ("Kerberos abc".into(), "401"),
    ];
    for (authorization, expected) in cases {
        assert_eq!(
            status_of(authorization.clone()).await,
            expected,
            "{authorization}"
        );
    }
    // A head larger than the server takes.
    let huge = format!("Negotiate {}", "A".repeat(200 * 1024));
    let status = status_of(huge).await;
    assert!(
        status == "431" || status == "400" || status == "none",
        "{status}"
    );
    // Still serving.
    assert_eq!(
        status_of("Basic ".to_string() + &b64(b"alice:secret")).await,
        "200"
    );
    lab.shutdown().await;
}

/// KB 918710 over sockets: curl's token reaches the web tier, whose application opens the
/// mailbox on the lab's store through the lab's KDC and Exchange RPC listener. With a
/// delegated Kerberos ticket Outlook's provider lists the Inbox and Exchange's provider
/// gets MAPI_E_LOGON_FAILED; without delegation both fail; NTLM from another host fails
/// with both, from the web tier's own host (one hop) and with Basic both work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mailbox_page_makes_the_second_hop_only_where_the_token_allows() {
    let Some(curl) = common::require_tool("curl", "apt-get install curl") else {
        return;
    };
    let Some((lab, env, port)) = lab_with_forwardable_tgt().await else {
        return;
    };
    let failed = |hop: &'static str| vec![hop, "result: MAPI_E_LOGON_FAILED (0x80040111)"];
    let listed = |hop: &'static str| [vec![hop], LISTING.to_vec()].concat();
    let with_status = |status: &'static str, mut lines: Vec<&'static str>| {
        lines.push(status);
        lines
    };
    for (delegation, provider, expected) in [
        (
            "always",
            "outlook",
            with_status("status: 200", listed("hop: Kerberos, the forwarded TGT")),
        ),
        (
            "always",
            "exchange",
            with_status(
                "status: 500",
                failed("hop: NTLM, anonymous (the token holds no credentials)"),
            ),
        ),
        (
            "none",
            "outlook",
            with_status(
                "status: 500",
                failed("hop: none: a Kerberos network logon without a forwarded TGT holds no credentials"),
            ),
        ),
        (
            "none",
            "exchange",
            with_status(
                "status: 500",
                failed("hop: NTLM, anonymous (the token holds no credentials)"),
            ),
        ),
        (
            "always",
            "webdav",
            with_status(
                "status: 200",
                listed("hop: HTTP Negotiate (Kerberos), the forwarded TGT"),
            ),
        ),
        (
            "none",
            "webdav",
            with_status(
                "status: 500",
                vec![
                    "hop: HTTP without credentials (the token holds none)",
                    "result: HTTP_STATUS_DENIED (401)",
                ],
            ),
        ),
    ] {
        let path = format!("/mailbox?provider={provider}");
        let status = ["-w", "status: %{http_code}\n"];
        let ran = negotiate_get(&env, &curl, "web.example.test", port, delegation, &path, &status).await;
        assert!(ran.ok(), "{delegation} {provider}: {ran:?}");
        let mut got = mailbox_summary(&ran.stdout);
        got.extend(ran.stdout.lines().filter(|l| l.starts_with("status:")));
        assert_eq!(got, expected, "--delegation {delegation}, {provider}:\n{}", ran.stdout);
        if provider == "outlook" && delegation == "always" {
            // The ticket for the store came from the lab's KDC with the forwarded TGT.
            assert!(
                ran.stdout
                    .contains("step: KDC: TGS exchange for exchangeMDB/mail.example.test: ticket\n"),
                "{}",
                ran.stdout
            );
        }
    }
    env.kdestroy().await;

    let page = |options: Vec<&'static str>, from: &'static str, provider: &'static str| {
        let curl = curl.clone();
        async move {
            let url = format!("http://127.0.0.1:{port}/mailbox?provider={provider}");
            let mut args = vec!["--interface", from];
            args.extend(options);
            common::curl(&curl, &url, "alice:secret", &args).await
        }
    };
    for (options, from, provider, expected) in [
        (
            vec!["--ntlm"],
            "127.0.0.2",
            "exchange",
            failed("hop: NTLM, anonymous (the token holds no credentials)"),
        ),
        (
            vec!["--ntlm"],
            "127.0.0.2",
            "outlook",
            failed("hop: none: a network logon from NTLM holds no credentials to pass on"),
        ),
        (
            vec!["--ntlm"],
            "127.0.0.1",
            "exchange",
            listed("hop: NTLM with the logon session's password"),
        ),
        (
            vec!["--basic"],
            "127.0.0.2",
            "exchange",
            listed("hop: NTLM with the logon session's password"),
        ),
        (
            vec!["--basic"],
            "127.0.0.2",
            "outlook",
            listed("hop: Kerberos, a TGT from the session's password"),
        ),
        (
            vec!["--basic"],
            "127.0.0.2",
            "webdav",
            listed("hop: HTTP NTLM with the logon session's password"),
        ),
        (
            vec!["--ntlm"],
            "127.0.0.2",
            "webdav",
            vec![
                "hop: HTTP without credentials (the token holds none)",
                "result: HTTP_STATUS_DENIED (401)",
            ],
        ),
    ] {
        let ran = page(options.clone(), from, provider).await;
        assert!(ran.ok(), "{options:?} {from} {provider}: {ran:?}");
        assert_eq!(
            mailbox_summary(&ran.stdout),
            expected,
            "{options:?} from {from}, {provider}:\n{}",
            ran.stdout
        );
    }
    let unknown = page(
        vec!["--basic", "-o", "/dev/null", "-w", "%{http_code}"],
        "127.0.0.1",
        "mapi",
    )
    .await;
    assert_eq!(unknown.stdout, "400");
    lab.shutdown().await;
}

/// Item 8 against MIT's KDC: the browser's tickets and the application's ticket for the
/// store both come from MIT's krb5kdc (same principals and keys as the lab's realm); the
/// web tier and the store check them with the world's keys. The outcomes are the lab
/// KDC's: Outlook's provider lists with a forwarded TGT, Exchange's fails, and without
/// delegation both fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mailbox_page_works_the_same_with_mits_kdc() {
    let Some(curl) = common::require_tool("curl", "apt-get install curl") else {
        return;
    };
    let Some(mit) = common::krb5::MitKdc::start_standard(REALM) else {
        return;
    };
    let lo = |port| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let lab = Lab::start(LabConfig {
        listeners: Vec::new(),
        rpc: vec![RpcListenerSpec {
            role: RpcRole::Exchange,
            addr: lo(0),
        }],
        web: vec![WebListenerSpec {
            addr: lo(0),
            tls: false,
        }],
        web_kdc: Some(mit.addr()),
        seed: Some(6),
        ..LabConfig::default()
    })
    .await
    .expect("lab with a web tier and a store");
    let port = lab.web_addr(false).expect("web").port();
    let Some(env) = KrbClientEnv::new(REALM, mit.addr(), KdcTransport::UdpFirst) else {
        lab.shutdown().await;
        return;
    };
    let kinit = env.kinit("alice", "secret", true).await;
    assert!(kinit.ok(), "{kinit:?}");
    let status = ["-w", "status: %{http_code}\n"];
    for (delegation, provider, hop, result, code) in [
        (
            "always",
            "outlook",
            "hop: Kerberos, the forwarded TGT",
            "result: 3 messages",
            "status: 200",
        ),
        (
            "always",
            "exchange",
            "hop: NTLM, anonymous (the token holds no credentials)",
            "result: MAPI_E_LOGON_FAILED (0x80040111)",
            "status: 500",
        ),
        (
            "none",
            "outlook",
            "hop: none: a Kerberos network logon without a forwarded TGT holds no credentials",
            "result: MAPI_E_LOGON_FAILED (0x80040111)",
            "status: 500",
        ),
    ] {
        let path = format!("/mailbox?provider={provider}");
        let ran = negotiate_get(
            &env,
            &curl,
            "web.example.test",
            port,
            delegation,
            &path,
            &status,
        )
        .await;
        assert!(ran.ok(), "{delegation} {provider}: {ran:?}");
        let lines: Vec<&str> = ran
            .stdout
            .lines()
            .filter(|l| {
                l.starts_with("hop:") || l.starts_with("result:") || l.starts_with("status:")
            })
            .collect();
        assert_eq!(
            lines,
            [hop, result, code],
            "{delegation} {provider}:\n{}",
            ran.stdout
        );
    }
    lab.shutdown().await;
}

/// NTLM is bound to its TCP connection: an AUTHENTICATE sent on another connection than
/// its CHALLENGE came on gets a fresh 401 (as a front-end that splits the legs makes the
/// SPA loop), and the same AUTHENTICATE on the CHALLENGE's connection logs on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ntlm_split_across_two_connections_is_refused() {
    use base64::Engine as _;
    use harness_core::ntlm::{Credentials, InitiatorOptions, NtlmInitiator, ResponseKind};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let lab = web_lab().await;
    let addr = lab.web_addr(false).expect("web");
    let b64 = base64::engine::general_purpose::STANDARD;
    // One request on `tcp`; the status and the NTLM challenge, if any.
    async fn get(
        tcp: &mut tokio::net::TcpStream,
        authorization: &str,
    ) -> (String, Option<Vec<u8>>) {
        let request = format!(
            "GET /whoami HTTP/1.1\r\nHost: web.example.test\r\nAuthorization: {authorization}\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.expect("write");
        let mut reply = Vec::new();
        let mut chunk = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        // Until the head and its Content-Length body are in.
        loop {
            let text = String::from_utf8_lossy(&reply).to_ascii_lowercase();
            if let Some(end) = text.find("\r\n\r\n") {
                let length: usize = text[..end]
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if reply.len() >= end + 4 + length {
                    break;
                }
            }
            let n = tokio::time::timeout_at(deadline, tcp.read(&mut chunk))
                .await
                .expect("answered within 5 s")
                .expect("read");
            assert!(n > 0, "closed mid-response");
            reply.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&reply).into_owned();
        let status = text.split_whitespace().nth(1).unwrap_or("none").to_string();
        let challenge = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("www-authenticate: NTLM ")
                    .or_else(|| l.strip_prefix("WWW-Authenticate: NTLM "))
            })
            .and_then(|c| {
                base64::engine::general_purpose::STANDARD
                    .decode(c.trim())
                    .ok()
            });
        (status, challenge)
    }
    let mut ntlm = NtlmInitiator::new(
        Credentials::example("alice", "secret"),
        InitiatorOptions::fixed(1, 2, ResponseKind::V2, true),
    );
    let mut first = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (status, challenge) = get(
        &mut first,
        &format!("NTLM {}", b64.encode(ntlm.negotiate())),
    )
    .await;
    assert_eq!(status, "401");
    let challenge = challenge.expect("an NTLM CHALLENGE");
    let authenticate = format!(
        "NTLM {}",
        b64.encode(ntlm.handle_challenge(&challenge).expect("AUTHENTICATE"))
    );
    let mut second = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (status, challenge) = get(&mut second, &authenticate).await;
    assert_eq!(status, "401", "an AUTHENTICATE without its CHALLENGE");
    assert_eq!(challenge, None, "a bare NTLM offer, not a new CHALLENGE");
    let (status, _) = get(&mut first, &authenticate).await;
    assert_eq!(status, "200", "on the CHALLENGE's own connection");
    lab.shutdown().await;
}
