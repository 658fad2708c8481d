//! Bad input to the RPC proxy over sockets, each answered with a clear HTTP status on
//! that connection only: a body framed twice (Content-Length and Transfer-Encoding),
//! headers over the limit, an unknown method, another path, no Content-Length, an OUT
//! channel whose body is no CONN/A1, a malformed Authorization. The proxy answers the
//! next request as before. (The proxy core's refusals of bad RTS traffic, unknown
//! cookies, second OUT channels and flow-control violations, each ending its own virtual
//! connection only, are tested in `harness_core::rpch`.)

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Basic alice:secret.
const AUTH: &str = "Authorization: Basic YWxpY2U6c2VjcmV0\r\n";

/// Sends `request` on a new connection and returns the status line of the answer.
async fn status_of(addr: SocketAddr, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(request).await.expect("send");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let read = async {
        while !buf.windows(2).any(|w| w == b"\r\n") {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
    String::from_utf8_lossy(&buf)
        .lines()
        .next()
        .unwrap_or("<closed without an answer>")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_clear_status() {
    let lab = crate::common::rpch_lab().await;
    let addr = lab.rpch_addr(false).expect("proxy listener");
    let line = |method: &str, extra: &str| {
        format!("{method} /rpc/rpcproxy.dll?MAIL:6004 HTTP/1.1\r\nHost: mail\r\n{AUTH}{extra}\r\n")
    };
    let huge_header = format!("X-Filler: {}\r\n", "a".repeat(100_000));
    let not_conn_a1 = format!(
        "{}{}",
        line("RPC_OUT_DATA", "Content-Length: 76\r\n"),
        "x".repeat(76)
    );
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "Content-Length and Transfer-Encoding",
            line(
                "RPC_IN_DATA",
                "Content-Length: 104\r\nTransfer-Encoding: chunked\r\n",
            ),
            "400",
        ),
        // hyper's 400 for a head over its buffer (IIS: 400 "Request Header Too Long").
        (
            "headers over the limit",
            line("RPC_IN_DATA", &huge_header),
            "400",
        ),
        (
            "an unknown method",
            line("GET", "Content-Length: 0\r\n"),
            "405",
        ),
        (
            "another path",
            format!("RPC_IN_DATA /owa/ HTTP/1.1\r\nHost: mail\r\n{AUTH}Content-Length: 0\r\n\r\n"),
            "404",
        ),
        ("no Content-Length", line("RPC_OUT_DATA", ""), "400"),
        ("an OUT channel body that is no CONN/A1", not_conn_a1, "400"),
        (
            "a malformed Authorization",
            "RPC_IN_DATA /rpc/rpcproxy.dll?MAIL:6004 HTTP/1.1\r\nHost: mail\r\n\
             Authorization: Basic !!!\r\nContent-Length: 0\r\n\r\n"
                .to_string(),
            "400",
        ),
    ];
    let mut wrong = Vec::new();
    for (what, request, want) in &cases {
        let got = status_of(addr, request.as_bytes()).await;
        if !got.contains(want) {
            wrong.push(format!("{what}: want {want}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // The proxy is still there for a good request: a bare 401 for no credentials.
    let got = status_of(
        addr,
        b"RPC_IN_DATA /rpc/rpcproxy.dll?MAIL:6004 HTTP/1.1\r\nHost: mail\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(got.contains("401"), "{got}");
    lab.shutdown().await;
}

/// An IN channel that declares less than CONN/B1 (104 octets) and sends its whole body
/// at once is refused with 400, not answered 200 because its body ended before the proxy
/// had judged the declared length (found by `harness fuzz --target rpch://`, seed 1 case
/// 57). Twenty times: the two used to race.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_in_channel_sent_whole_is_refused_not_answered_200() {
    let lab = crate::common::rpch_lab().await;
    let addr = lab.rpch_addr(false).expect("proxy listener");
    let request = format!(
        "RPC_IN_DATA /rpc/rpcproxy.dll?MAIL:6004 HTTP/1.1\r\nHost: mail\r\n{AUTH}\
         Content-Length: 96\r\n\r\n{}",
        "x".repeat(96)
    );
    for attempt in 0..20 {
        let got = status_of(addr, request.as_bytes()).await;
        assert!(got.contains("400"), "attempt {attempt}: {got}");
    }
    lab.shutdown().await;
}

/// The proxy listener keeps the lab's connection limit: past it a connection is closed at
/// once, and the places come back when connections end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_holds_for_the_proxy() {
    let mut config = crate::common::rpch_lab_config();
    config.limits.max_connections = 2;
    let lab = harness::Lab::start(config).await.expect("lab");
    let addr = lab.rpch_addr(false).expect("proxy listener");
    let held = [
        TcpStream::connect(addr).await.expect("first"),
        TcpStream::connect(addr).await.expect("second"),
    ];
    let mut third = TcpStream::connect(addr).await.expect("third connects");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the third connection was served: {read:?}"
    );
    drop(held);
    // Both places come back: a request is answered again.
    let mut got = String::new();
    for _ in 0..50 {
        got = status_of(
            addr,
            b"RPC_IN_DATA /rpc/rpcproxy.dll?MAIL:6004 HTTP/1.1\r\nHost: mail\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        if got.contains("401") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(got.contains("401"), "{got}");
    lab.shutdown().await;
}
