//! Drives one sans-IO client machine (`harness_core::driver::ClientSession`) over TCP:
//! reads feed `handle_input`, polled writes are sent, timers fire on the real clock, and
//! reconnects open a new connection. A [`Route`] may put an RPC over HTTP v2 proxy in the
//! way: each connection is then a virtual connection (two HTTP channels), and the client
//! sees the same DCE/RPC byte stream. The mirror of [`crate::serve::connection`]; the
//! scenario runner over sockets and the load generator both run their clients here.

use std::net::SocketAddr;
use std::time::Duration;

use harness_core::driver::{ClientOutput, ClientSession};
use harness_core::rpch::{OutItem, RtsClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::dcerpc_client::{fresh_cookies, open_virtual_connection, HttpProxy, RpcError};

/// Where a client's connections go: straight over TCP, or each one a virtual connection
/// through an RPC over HTTP v2 proxy (a DCE/RPC client such as the MAPI client; the
/// client sees the same byte stream either way).
#[derive(Debug, Clone)]
pub enum Route {
    Tcp(SocketAddr),
    RpcOverHttp(HttpProxy),
}

/// What a route saw of its connections that the client cannot: over HTTP, each virtual
/// connection opened or refused (a channel's status), and the finding `http-401`.
#[derive(Debug, Default, Clone)]
pub struct RouteLog {
    pub trace: Vec<String>,
    pub findings: Vec<String>,
    connections: usize,
}

/// One open connection of a [`Route`].
enum Link {
    Tcp(TcpStream),
    Http(Box<HttpLink>),
}

/// A virtual connection: the client's octets go out on the IN channel, the OUT channel's
/// RPC PDUs come back to it (its RTS PDUs read here, the window acked on the IN channel).
struct HttpLink {
    in_channel: TcpStream,
    out_channel: TcpStream,
    rts: RtsClient,
    /// OUT channel body octets read with the response head, not yet taken.
    pending: Vec<u8>,
}

/// How long opening a virtual connection may take (both channels, their HTTP
/// authentication, the OUT response head).
const HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The OUT channel's receive window the client announces in CONN/A1.
const OUT_WINDOW: u32 = 0x1_0000;

impl Route {
    /// A connection with Nagle off (clients send short commands and wait for the reply),
    /// or `None` when it cannot be opened (for a proxy: a channel refused, e.g. with 401).
    async fn connect(&self, log: &mut RouteLog) -> Option<Link> {
        let n = log.connections;
        log.connections += 1;
        match self {
            Route::Tcp(addr) => {
                let tcp = TcpStream::connect(addr).await.ok()?;
                let _ = tcp.set_nodelay(true);
                Some(Link::Tcp(tcp))
            }
            Route::RpcOverHttp(proxy) => {
                let rts = RtsClient::new(fresh_cookies(), OUT_WINDOW, true);
                let deadline = Instant::now() + HTTP_CONNECT_TIMEOUT;
                let opened = open_virtual_connection(proxy, &rts, deadline).await;
                let (in_channel, out_channel, pending) = match opened {
                    Ok(channels) => {
                        log.trace.push(format!("vc {n}: open"));
                        channels
                    }
                    Err(e) => {
                        log.trace.push(format!("vc {n}: {e}"));
                        let unauthorized = matches!(e, RpcError::Refused { code: 401, .. });
                        if unauthorized && !log.findings.iter().any(|f| f == "http-401") {
                            log.findings.push("http-401".into());
                        }
                        return None;
                    }
                };
                Some(Link::Http(Box::new(HttpLink {
                    in_channel,
                    out_channel,
                    rts,
                    pending,
                })))
            }
        }
    }
}

impl Link {
    async fn write(&mut self, bytes: &[u8]) -> bool {
        match self {
            Link::Tcp(t) => t.write_all(bytes).await.is_ok(),
            Link::Http(h) => h.in_channel.write_all(bytes).await.is_ok(),
        }
    }

    async fn shutdown(&mut self) {
        match self {
            Link::Tcp(t) => {
                let _ = t.shutdown().await;
            }
            Link::Http(h) => {
                let _ = h.in_channel.shutdown().await;
                let _ = h.out_channel.shutdown().await;
            }
        }
    }

    /// The next octets off the connection (over HTTP the OUT channel's), `None` at its
    /// end. Cancel-safe: it only reads, so a timer may win the race without loss.
    async fn read(&mut self, buf: &mut [u8]) -> Option<Vec<u8>> {
        let stream = match self {
            Link::Tcp(t) => t,
            Link::Http(h) if !h.pending.is_empty() => return Some(std::mem::take(&mut h.pending)),
            Link::Http(h) => &mut h.out_channel,
        };
        match stream.read(buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(buf[..n].to_vec()),
        }
    }

    /// What read octets are for the client: over TCP all of them; over HTTP the RPC
    /// PDUs among the OUT channel's (the RTS PDUs read, the window acked on the IN
    /// channel). `None`: an OUT channel that breaks the RTS rules, or an IN channel that
    /// broke. May be empty.
    async fn for_client(&mut self, bytes: Vec<u8>) -> Option<Vec<u8>> {
        match self {
            Link::Tcp(_) => Some(bytes),
            Link::Http(h) => {
                let mut items = Vec::new();
                let ack = h.rts.receive_out(&bytes, &mut items).ok()?;
                if !ack.is_empty() && h.in_channel.write_all(&ack).await.is_err() {
                    return None;
                }
                let mut rpc = Vec::new();
                for item in items {
                    if let OutItem::Rpc(pdu) = item {
                        rpc.extend_from_slice(&pdu);
                    }
                }
                Some(rpc)
            }
        }
    }
}

/// Connects to `addr` and shuttles a client's bytes over TCP until it is done;
/// reconnects when it asks to.
pub async fn drive_client(client: &mut dyn ClientSession, addr: SocketAddr) {
    drive_route(client, &Route::Tcp(addr)).await;
}

/// [`drive_client`] over any [`Route`]; returns what the route saw.
pub async fn drive_route(client: &mut dyn ClientSession, route: &Route) -> RouteLog {
    let mut log = RouteLog::default();
    let link = route.connect(&mut log).await;
    drive_link(client, route, link, &mut log).await;
    log
}

/// [`drive_client`] on a connection the caller opened (`None`: the connect failed, which
/// the client is told as an end of connection). Reconnects go to `addr`.
pub async fn drive_connected(
    client: &mut dyn ClientSession,
    addr: SocketAddr,
    tcp: Option<TcpStream>,
) {
    let mut log = RouteLog::default();
    drive_link(client, &Route::Tcp(addr), tcp.map(Link::Tcp), &mut log).await;
}

async fn drive_link(
    client: &mut dyn ClientSession,
    route: &Route,
    mut link: Option<Link>,
    log: &mut RouteLog,
) {
    let started = Instant::now();
    if link.is_none() {
        client.handle_eof(started.elapsed());
    }
    let mut buf = vec![0u8; 8192];
    loop {
        while let Some(out) = client.poll_output() {
            let now = started.elapsed();
            match out {
                ClientOutput::Write(bytes) => {
                    let ok = match link.as_mut() {
                        Some(l) => l.write(&bytes).await,
                        None => false,
                    };
                    if !ok {
                        link = None;
                        client.handle_eof(now);
                    }
                }
                // The scenario clients do not ask for TLS; refuse rather than pretend.
                ClientOutput::StartTls => {
                    link = None;
                    client.handle_eof(now);
                }
                ClientOutput::Close => {
                    if let Some(mut l) = link.take() {
                        l.shutdown().await;
                    }
                }
                ClientOutput::Reconnect => {
                    link = route.connect(log).await;
                    if link.is_none() {
                        client.handle_eof(started.elapsed());
                    }
                }
            }
        }
        if client.is_done() {
            return;
        }
        let deadline = client.poll_timeout().map(|d| started + d);
        tokio::select! {
            read = async {
                match link.as_mut() {
                    Some(l) => l.read(&mut buf).await,
                    None => std::future::pending().await,
                }
            } => {
                let read = match (read, link.as_mut()) {
                    (Some(bytes), Some(l)) => l.for_client(bytes).await,
                    _ => None,
                };
                let now = started.elapsed();
                match read {
                    None => {
                        link = None;
                        client.handle_eof(now);
                    }
                    Some(bytes) if bytes.is_empty() => {}
                    Some(bytes) => client.handle_input(now, &bytes),
                }
            }
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending::<()>().await,
                }
            } => client.handle_timeout(started.elapsed()),
        }
        if link.is_none() && client.poll_timeout().is_none() && !client.is_done() {
            // Nothing can move any more: no connection and no timer.
            client.handle_eof(started.elapsed());
            if client.poll_timeout().is_none() && !client.is_done() {
                return;
            }
        }
    }
}
