//! The Exchange WebDAV store (`harness serve --webdav`) under real clients: curl's
//! PROPFIND (Depth 1) with Basic, NTLM and Negotiate (after MIT's `kinit` against the
//! lab's KDC) lists alice's Inbox, curl's SEARCH runs the EXSDK query, cadaver `ls`es the
//! mailbox; bad credentials are 401, another user's mailbox 403, a body over the bound 413.

use crate::common;

use common::krb5::{KdcTransport, KrbClientEnv};
use harness::serve::lab::WebListenerSpec;
use harness::{Lab, LabConfig};
use harness_core::webdav::client::read_multistatus;

const REALM: &str = "EXAMPLE.TEST";

const PROPFIND: &str = r#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:m="urn:schemas:httpmail:"><D:prop><D:isfolder/><m:subject/></D:prop></D:propfind>"#;

async fn dav_lab() -> Lab {
    let lo = |port| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    Lab::start(LabConfig {
        listeners: Vec::new(),
        kdc: Some(lo(0)),
        webdav: vec![WebListenerSpec {
            addr: lo(0),
            tls: false,
        }],
        seed: Some(7),
        ..LabConfig::default()
    })
    .await
    .expect("lab with a KDC and the WebDAV store")
}

/// The (href path, subject) of each entry of a 207 body.
fn listing(body: &str) -> Vec<(String, Option<String>)> {
    read_multistatus(body.as_bytes())
        .unwrap_or_else(|e| panic!("{e}: {body}"))
        .into_iter()
        .map(|e| {
            let path = e.href.splitn(4, '/').nth(3).unwrap_or_default().to_string();
            (format!("/{path}"), e.subject)
        })
        .collect()
}

fn alices_inbox() -> Vec<(String, Option<String>)> {
    let mut rows = vec![("/exchange/alice/Inbox/".to_string(), None)];
    rows.extend((1..=3).map(|i| {
        (
            format!("/exchange/alice/Inbox/{i}.EML"),
            Some(format!("Test message {i}")),
        )
    }));
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_propfind_lists_alices_inbox_with_basic_ntlm_and_negotiate() {
    let Some(curl) = common::require_tool("curl", "apt-get install curl") else {
        return;
    };
    let lab = dav_lab().await;
    let port = lab.webdav_addr(false).expect("webdav").port();
    let url = format!("http://127.0.0.1:{port}/exchange/alice/Inbox/");
    let propfind = [
        "-X",
        "PROPFIND",
        "-H",
        "Depth: 1",
        "--data-binary",
        PROPFIND,
    ];
    for scheme in ["--basic", "--ntlm"] {
        let ran = common::curl(
            &curl,
            &url,
            "alice:secret",
            &[&propfind[..], &[scheme]].concat(),
        )
        .await;
        assert!(ran.ok(), "{scheme}: {ran:?}");
        assert_eq!(listing(&ran.stdout), alices_inbox(), "{scheme}");
    }
    // Negotiate: a ticket for HTTP/mail.example.test from the lab's KDC.
    let kdc = lab.kdc_addr().expect("kdc");
    if let Some(env) = KrbClientEnv::new(REALM, kdc, KdcTransport::UdpFirst) {
        let kinit = env.kinit("alice", "secret", false).await;
        assert!(kinit.ok(), "{kinit:?}");
        let resolve = format!("mail.example.test:{port}:127.0.0.1");
        let url = format!("http://mail.example.test:{port}/exchange/alice/Inbox/");
        let args = [
            &[
                "-sS",
                "--max-time",
                "10",
                "--negotiate",
                "-u",
                ":",
                "--resolve",
                &resolve,
            ],
            &propfind[..],
            &[&url],
        ]
        .concat();
        let ran = env.run(&curl, &args).await;
        assert!(ran.ok(), "{ran:?}\n{}", env.trace());
        assert_eq!(listing(&ran.stdout), alices_inbox(), "negotiate");
    }
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_search_and_the_refusals() {
    let Some(curl) = common::require_tool("curl", "apt-get install curl") else {
        return;
    };
    let lab = dav_lab().await;
    let port = lab.webdav_addr(false).expect("webdav").port();
    let base = format!("http://127.0.0.1:{port}");
    let search = format!(
        r#"<?xml version="1.0"?><D:searchrequest xmlns:D="DAV:"><D:sql>SELECT "DAV:href", "urn:schemas:httpmail:subject" FROM SCOPE('shallow traversal of "{base}/exchange/alice/Inbox/"') WHERE "DAV:ishidden" = false AND "DAV:isfolder" = false</D:sql></D:searchrequest>"#
    );
    let ran = common::curl(
        &curl,
        &format!("{base}/exchange/alice/Inbox/"),
        "alice:secret",
        &[
            "--ntlm",
            "-X",
            "SEARCH",
            "-H",
            "Content-Type: text/xml",
            "--data-binary",
            &search,
        ],
    )
    .await;
    assert!(ran.ok(), "{ran:?}");
    assert_eq!(listing(&ran.stdout), alices_inbox()[1..]);
    // Status and the line that says why.
    let status = |user: &'static str, path: &'static str, options: Vec<&'static str>| {
        let curl = curl.clone();
        let url = format!("{base}{path}");
        async move {
            let mut args = vec!["--basic", "-w", "\n%{http_code}"];
            args.extend(options);
            let ran = common::curl(&curl, &url, user, &args).await;
            assert!(ran.ok(), "{ran:?}");
            ran.stdout.trim_end().rsplit_once('\n').map_or_else(
                || (ran.stdout.clone(), String::new()),
                |(body, code)| (code.to_string(), body.trim_end().to_string()),
            )
        }
    };
    let s = |code: &str, why: &str| (code.to_string(), why.to_string());
    let propfind = vec!["-X", "PROPFIND", "-H", "Depth: 1"];
    assert_eq!(
        status("alice:wrong", "/exchange/alice/Inbox/", propfind.clone())
            .await
            .0,
        "401"
    );
    assert_eq!(
        status("alice:secret", "/exchange/bob/Inbox/", propfind.clone()).await,
        s("403", "the mailbox of bob is not alice's")
    );
    assert_eq!(
        status("alice:secret", "/exchange/alice/Nowhere/", propfind.clone()).await,
        s("404", "nothing at /exchange/alice/Nowhere/")
    );
    assert_eq!(
        status("alice:secret", "/exchange/alice/Inbox/", vec!["-X", "PROPFIND"]).await,
        s(
            "403",
            "Depth: infinity (also what no Depth header means) is not supported on a mailbox; send Depth 0 or 1"
        )
    );
    assert_eq!(
        status(
            "alice:secret",
            "/exchange/alice/Inbox/",
            vec![
                "-X",
                "PROPFIND",
                "-H",
                "Depth: 0",
                "--data-binary",
                "<propfind"
            ]
        )
        .await,
        s(
            "400",
            "malformed XML: syntax error: tag not closed: `>` not found before end of input"
        )
    );
    let message = status("alice:secret", "/exchange/alice/Inbox/2.EML", vec![]).await;
    assert_eq!(message.0, "200");
    assert!(
        message.1.contains("Subject: Test message 2\r\n"),
        "{message:?}"
    );
    // A length over the bound is refused before the body is read; a chunked body is cut
    // where it passes the bound (the rest never read: the connection closes).
    let mut chunked =
        b"PROPFIND /exchange/alice/Inbox/ HTTP/1.1\r\nHost: x\r\nDepth: 1\r\nTransfer-Encoding: chunked\r\n\r\n11170\r\n".to_vec();
    chunked.extend(std::iter::repeat_n(b' ', 0x11170));
    chunked.extend(b"\r\n0\r\n\r\n");
    let heads: [&[u8]; 2] = [
        b"PROPFIND /exchange/alice/Inbox/ HTTP/1.1\r\nHost: x\r\nDepth: 1\r\nContent-Length: 999999999\r\n\r\n",
        &chunked,
    ];
    for request in heads {
        assert_eq!(
            raw_reply(port, request).await,
            (
                "HTTP/1.1 413 Payload Too Large".to_string(),
                "the request body is over 65536 octets, the most this store reads\r\n".to_string()
            )
        );
    }
    lab.shutdown().await;
}

/// Sends `request` on a connection of its own: the reply's status line and body.
async fn raw_reply(port: u16, request: &[u8]) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    // The server may answer and close before it has read all of a long request.
    let _ = tcp.write_all(request).await;
    let mut reply = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tcp.read_to_end(&mut reply),
    )
    .await
    .expect("answered within 5 s")
    .expect("read");
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let status = reply.lines().next().unwrap_or_default().to_string();
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cadaver_lists_a_mailbox() {
    let Some(cadaver) = common::require_tool("cadaver", "apt-get install cadaver") else {
        return;
    };
    let lab = dav_lab().await;
    let port = lab.webdav_addr(false).expect("webdav").port();
    // cadaver asks for credentials on the terminal unless ~/.netrc has them.
    let home = std::env::temp_dir().join(format!("harness-cadaver-{}", std::process::id()));
    std::fs::create_dir_all(&home).expect("home");
    std::fs::write(
        home.join(".netrc"),
        "machine 127.0.0.1\nlogin alice\npassword secret\n",
    )
    .expect("netrc");
    let mut command = tokio::process::Command::new(&cadaver);
    command
        .arg(format!("http://127.0.0.1:{port}/exchange/alice/"))
        .env("HOME", &home);
    let ran = common::run_bounded(
        command,
        Some(b"ls\ncd Inbox\nls\nquit\n"),
        std::time::Duration::from_secs(20),
    )
    .await
    .expect("cadaver finished within 20 s");
    let _ = std::fs::remove_dir_all(&home);
    // Each listing line: kind, name, size (the dates are the messages' INTERNALDATEs).
    let lines: Vec<String> = ran
        .stdout
        .lines()
        .filter(|l| l.starts_with("Listing") || l.contains(".EML") || l.starts_with("Coll:"))
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        lines,
        [
            "Listing collection `/exchange/alice/':",
            "Coll: Inbox 0",
            "Listing collection `/exchange/alice/Inbox/':",
            "1.EML 254 Jan",
            "2.EML 254 Jan",
            "3.EML 254 Jan",
        ],
        "{ran:?}"
    );
    assert_eq!(ran.stdout.matches("succeeded.").count(), 2, "{ran:?}");
    lab.shutdown().await;
}

/// `harness serve --webdav --webdav-tls` says where it listens, and over TLS the hrefs
/// are https.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_webdav_cli_listens_plain_and_tls() {
    let Some(curl) = common::require_tool("curl", "apt-get install curl") else {
        return;
    };
    let (mut child, pid, addrs) =
        crate::serve_cli::spawn_serve(&["--webdav", "127.0.0.1:0", "--webdav-tls", "127.0.0.1:0"])
            .await;
    let schemes: Vec<&str> = addrs.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(schemes, ["webdav", "webdavs"], "{addrs:?}");
    let url = format!("https://{}/exchange/bob/", addrs[1].1);
    let ran = common::curl(
        &curl,
        &url,
        "bob:hunter2",
        &["-k", "--basic", "-X", "PROPFIND", "-H", "Depth: 0"],
    )
    .await;
    let entries =
        read_multistatus(ran.stdout.as_bytes()).unwrap_or_else(|e| panic!("{e}: {ran:?}"));
    assert_eq!(
        entries
            .iter()
            .map(|e| (e.href.as_str(), e.is_folder))
            .collect::<Vec<_>>(),
        [(url.as_str(), true)]
    );
    let status = crate::serve_cli::stop_with_sigterm(&mut child, &pid);
    assert!(status.success(), "exit status {status:?}");
}
