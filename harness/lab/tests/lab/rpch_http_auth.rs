//! The RPC proxy's HTTP authentication over sockets, by a client written here so that
//! it can do what real clients must not: NTLM's NEGOTIATE on one TCP connection and its
//! AUTHENTICATE on another. IIS answers the second with 401 (the challenge it answers
//! belongs to the other connection); so does the lab, and its 401 says why. The same
//! AUTHENTICATE on the connection that carried the NEGOTIATE gets past authentication.
//! The exchange is snapshotted (`snapshots/rpch__ntlm-split-over-two-connections.snap`).

use std::time::Duration;

use base64::Engine as _;
use harness_core::ntlm::{Credentials, InitiatorOptions, NtlmInitiator, ResponseKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A response: status line, WWW-Authenticate values, body.
struct Reply {
    status: String,
    authenticate: Vec<String>,
    body: String,
}

/// Sends a bodiless RPC_IN_DATA with `authorization` on `tcp` and reads the response
/// (its Content-Length, bounded).
async fn request(tcp: &mut TcpStream, authorization: &str) -> Reply {
    let req = format!(
        "RPC_IN_DATA /rpc/rpcproxy.dll?MAIL:6004 HTTP/1.1\r\nHost: mail\r\n\
         Content-Length: 0\r\nAuthorization: {authorization}\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.expect("request sent");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
                let mut lines = head.lines();
                let status = lines.next().unwrap_or_default().to_string();
                let authenticate = lines
                    .filter_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("www-authenticate")
                            .then(|| v.trim().to_string())
                    })
                    .collect();
                return Reply {
                    status,
                    authenticate,
                    body,
                };
            }
        }
        let n = tokio::time::timeout_at(deadline, tcp.read(&mut chunk))
            .await
            .expect("a response within 10 s")
            .expect("read");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The NTLM token of a WWW-Authenticate value.
fn challenge(reply: &Reply) -> Vec<u8> {
    let token = reply
        .authenticate
        .iter()
        .find_map(|v| v.strip_prefix("NTLM "))
        .expect("an NTLM challenge");
    base64::engine::general_purpose::STANDARD
        .decode(token)
        .expect("base64")
}

fn show(out: &mut String, conn: u8, sent: &str, reply: &Reply) {
    out.push_str(&format!(
        "conn {conn} -> RPC_IN_DATA, Authorization: {sent}\n"
    ));
    out.push_str(&format!("conn {conn} <- {}\n", reply.status));
    for v in &reply.authenticate {
        let shown = match v.strip_prefix("NTLM ") {
            Some(_) => "NTLM <CHALLENGE>",
            None => v.as_str(),
        };
        out.push_str(&format!("           WWW-Authenticate: {shown}\n"));
    }
    if !reply.body.trim().is_empty() {
        out.push_str(&format!("           {}\n", reply.body.trim()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ntlm_handshake_split_over_two_connections_gets_401_and_says_why() {
    let lab = crate::common::rpch_lab().await;
    let addr = lab.rpch_addr(false).expect("proxy listener");
    let mut client = NtlmInitiator::new(
        Credentials::example("alice", "secret"),
        InitiatorOptions::fixed(3, 4, ResponseKind::V2, true),
    );
    let (mut first, mut second) = (
        TcpStream::connect(addr).await.expect("connect"),
        TcpStream::connect(addr).await.expect("connect"),
    );
    let mut transcript = String::new();

    let negotiate = format!("NTLM {}", b64(&client.negotiate()));
    let reply = request(&mut first, &negotiate).await;
    show(&mut transcript, 1, "NTLM <NEGOTIATE>", &reply);
    assert!(reply.status.contains("401"));
    let authenticate = format!(
        "NTLM {}",
        b64(&client
            .handle_challenge(&challenge(&reply))
            .expect("AUTHENTICATE"))
    );

    let reply = request(&mut second, &authenticate).await;
    show(&mut transcript, 2, "NTLM <AUTHENTICATE>", &reply);
    assert!(reply.status.contains("401"), "{}", reply.status);
    assert!(
        reply.body.contains("bound to one TCP connection"),
        "{}",
        reply.body
    );

    // On the connection of its NEGOTIATE the same AUTHENTICATE passes: what comes back
    // is the proxy's answer to a bodiless IN channel (400: it declares less than
    // CONN/B1), not 401.
    let reply = request(&mut first, &authenticate).await;
    show(&mut transcript, 1, "NTLM <AUTHENTICATE>", &reply);
    assert!(!reply.status.contains("401"), "{}", reply.status);

    lab.shutdown().await;
    insta::with_settings!({
        snapshot_path => crate::common::peers::project_root().join("snapshots"),
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!("rpch__ntlm-split-over-two-connections", transcript);
    });
}
