//! The socket adapter on its own, with a small scripted session: output order, STARTTLS
//! upgrade in place, timers, shutdown, and a peer that vanishes.

use std::collections::VecDeque;
use std::time::Duration;

use harness::serve::connection::{drive, Conn, Ended};
use harness::serve::tls::{pinned_client_config, LabTls};
use harness_core::{Output, ServerSession};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Line-oriented test session: `tls` upgrades, `bye` closes, anything else is echoed.
/// Silent for 300 ms: says `timeout` and closes.
#[derive(Default)]
struct Scripted {
    buf: Vec<u8>,
    out: VecDeque<Output>,
    last_input: Duration,
    closed: bool,
    tls: bool,
}

impl Scripted {
    fn say(&mut self, s: &str) {
        self.out
            .push_back(Output::Write(format!("{s}\r\n").into_bytes()));
    }
}

impl ServerSession for Scripted {
    fn handle_input(&mut self, now: Duration, input: &[u8]) {
        self.last_input = now;
        self.buf.extend_from_slice(input);
        while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            let line = String::from_utf8_lossy(&line).trim().to_string();
            match line.as_str() {
                "tls" => {
                    self.say("go");
                    self.out.push_back(Output::StartTls);
                    self.buf.clear();
                }
                "bye" => {
                    self.say("bye");
                    self.out.push_back(Output::Close);
                }
                other => {
                    let s = format!("echo {other} tls={}", self.tls);
                    self.say(&s);
                }
            }
        }
    }
    fn handle_eof(&mut self, _now: Duration) {
        self.closed = true;
    }
    fn handle_timeout(&mut self, now: Duration) {
        if now >= self.last_input + Duration::from_millis(300) {
            self.say("timeout");
            self.out.push_back(Output::Close);
        }
    }
    fn handle_shutdown(&mut self, _now: Duration) {
        self.say("shutdown");
        self.out.push_back(Output::Close);
    }
    fn handle_tls_established(&mut self, _now: Duration) {
        self.tls = true;
        self.say("secure");
    }
    fn poll_output(&mut self) -> Option<Output> {
        let o = self.out.pop_front();
        if o == Some(Output::Close) {
            self.closed = true;
        }
        o
    }
    fn poll_timeout(&self) -> Option<Duration> {
        Some(self.last_input + Duration::from_millis(300))
    }
    fn is_closed(&self) -> bool {
        self.closed && self.out.is_empty()
    }
}

async fn serve_one(
    tls: Option<LabTls>,
    shutdown: watch::Receiver<bool>,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<Ended>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let conn = Conn::accept(tcp, None).await.unwrap();
        drive(
            conn,
            Box::new(Scripted::default()),
            tls.map(|t| t.acceptor),
            shutdown,
            Duration::from_secs(5),
        )
        .await
    });
    (addr, handle)
}

async fn line<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> String {
    let mut s = String::new();
    tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut s))
        .await
        .expect("line in time")
        .unwrap();
    s
}

async fn send<W: AsyncWrite + Unpin>(w: &mut W, s: &str) {
    w.write_all(s.as_bytes()).await.unwrap();
}

#[tokio::test]
async fn starttls_upgrades_in_place_and_drops_injected_bytes() {
    let tls = LabTls::self_signed("mail.example.test").unwrap();
    let (_tx, rx) = watch::channel(false);
    let (addr, handle) = serve_one(Some(tls.clone()), rx).await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut plain = BufReader::new(tcp);
    send(plain.get_mut(), "hello\r\n").await;
    assert_eq!(line(&mut plain).await, "echo hello tls=false\r\n");
    // `injected` rides in the same packet as the STARTTLS request and must be ignored.
    send(plain.get_mut(), "tls\r\ninjected\r\n").await;
    assert_eq!(line(&mut plain).await, "go\r\n");
    let tcp = plain.into_inner();
    let connector = tokio_rustls::TlsConnector::from(
        pinned_client_config(tls.certificate_der.clone()).unwrap(),
    );
    let stream = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut secure = BufReader::new(stream);
    assert_eq!(line(&mut secure).await, "secure\r\n");
    send(secure.get_mut(), "again\r\n").await;
    assert_eq!(line(&mut secure).await, "echo again tls=true\r\n");
    send(secure.get_mut(), "bye\r\n").await;
    assert_eq!(line(&mut secure).await, "bye\r\n");
    assert_eq!(handle.await.unwrap(), Ended::SessionClosed);
}

#[tokio::test]
async fn pinned_client_refuses_another_certificate() {
    let tls = LabTls::self_signed("mail.example.test").unwrap();
    let other = LabTls::self_signed("mail.example.test").unwrap();
    let (_tx, rx) = watch::channel(false);
    let (addr, _handle) = serve_one(Some(tls), rx).await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut plain = BufReader::new(tcp);
    send(plain.get_mut(), "tls\r\n").await;
    assert_eq!(line(&mut plain).await, "go\r\n");
    let connector =
        tokio_rustls::TlsConnector::from(pinned_client_config(other.certificate_der).unwrap());
    let result = connector
        .connect(
            ServerName::try_from("localhost").unwrap(),
            plain.into_inner(),
        )
        .await;
    assert!(result.is_err(), "a different certificate must not verify");
}

#[tokio::test]
async fn session_timer_fires_and_closes() {
    let (_tx, rx) = watch::channel(false);
    let (addr, handle) = serve_one(None, rx).await;
    let mut r = BufReader::new(TcpStream::connect(addr).await.unwrap());
    assert_eq!(line(&mut r).await, "timeout\r\n");
    let mut rest = String::new();
    assert_eq!(
        r.read_line(&mut rest).await.unwrap(),
        0,
        "closed after the timeout"
    );
    assert_eq!(handle.await.unwrap(), Ended::SessionClosed);
}

#[tokio::test]
async fn shutdown_says_goodbye_then_closes() {
    let (tx, rx) = watch::channel(false);
    let (addr, handle) = serve_one(None, rx).await;
    let mut r = BufReader::new(TcpStream::connect(addr).await.unwrap());
    send(r.get_mut(), "x\r\n").await;
    assert_eq!(line(&mut r).await, "echo x tls=false\r\n");
    tx.send(true).unwrap();
    assert_eq!(line(&mut r).await, "shutdown\r\n");
    let ended = handle.await.unwrap();
    assert!(
        matches!(ended, Ended::SessionClosed | Ended::ShutDown),
        "{ended:?}"
    );
}

#[tokio::test]
async fn vanishing_peer_ends_the_session() {
    let (_tx, rx) = watch::channel(false);
    let (addr, handle) = serve_one(None, rx).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"half a li").await.unwrap();
    drop(tcp);
    assert_eq!(handle.await.unwrap(), Ended::PeerGone);
}
