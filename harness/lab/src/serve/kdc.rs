//! The lab's KDC on the network: one address, UDP and TCP (RFC 4120 7.2.1, 7.2.2), both
//! answered by the same sans-IO `Kdc` with the wall clock. Over TCP every record is read
//! with its length checked first; over UDP a reply too long for a datagram becomes
//! KRB_ERR_RESPONSE_TOO_BIG so the client retries over TCP.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harness_core::kerberos::frame::{self, Record, MAX_DATAGRAM_REPLY, MAX_RECORD};
use harness_core::kerberos::{err, Kdc, KdcOutcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// A TCP client that sends nothing for this long is dropped (MIT's KDC also times out
/// idle TCP clients).
const TCP_IDLE: Duration = Duration::from_secs(30);
/// Concurrent TCP connections; more wait in the accept queue.
const MAX_TCP_CONNECTIONS: usize = 1024;

/// The KDC the listeners share, with a log of what it did (for tests and reports).
#[derive(Debug)]
pub struct KdcHandle {
    kdc: Mutex<Kdc>,
    log: Mutex<std::collections::VecDeque<KdcOutcome>>,
}

/// The log keeps the last outcomes only; a load test must not grow it without end.
const LOG_LIMIT: usize = 10_000;

impl KdcHandle {
    pub fn new(kdc: Kdc) -> Arc<KdcHandle> {
        Arc::new(KdcHandle {
            kdc: Mutex::new(kdc),
            log: Mutex::new(std::collections::VecDeque::new()),
        })
    }

    pub fn realm(&self) -> String {
        self.with(|k| k.realm().to_string())
    }

    /// Runs `f` on the KDC (to add or remove a principal while it serves).
    pub fn with<T>(&self, f: impl FnOnce(&mut Kdc) -> T) -> T {
        let mut kdc = self.kdc.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut kdc)
    }

    /// What the KDC did, oldest first (at most the last 10,000).
    pub fn outcomes(&self) -> Vec<KdcOutcome> {
        self.log
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn answer(&self, request: &[u8], datagram: bool) -> Vec<u8> {
        let now = unix_now();
        let reply = self.with(|k| {
            let reply = k.handle(request, now);
            if datagram && reply.bytes.len() > MAX_DATAGRAM_REPLY {
                k.error(err::RESPONSE_TOO_BIG, "reply too big for UDP", now)
            } else {
                reply
            }
        });
        if let Ok(mut log) = self.log.lock() {
            if log.len() == LOG_LIMIT {
                log.pop_front();
            }
            log.push_back(reply.outcome);
        }
        reply.bytes
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Binds UDP and TCP on `addr` (TCP first, so port 0 picks a port free for both) and
/// serves until shutdown. Returns the bound address.
pub(crate) async fn start(
    addr: SocketAddr,
    kdc: Arc<KdcHandle>,
    shutdown: &watch::Sender<bool>,
    tasks: &mut JoinSet<()>,
) -> std::io::Result<SocketAddr> {
    let tcp = TcpListener::bind(addr).await?;
    let bound = tcp.local_addr()?;
    let udp = UdpSocket::bind(bound).await?;
    tasks.spawn(serve_udp(udp, kdc.clone(), shutdown.subscribe()));
    tasks.spawn(serve_tcp(tcp, kdc, shutdown.subscribe()));
    Ok(bound)
}

async fn serve_udp(socket: UdpSocket, kdc: Arc<KdcHandle>, mut shutdown: watch::Receiver<bool>) {
    // A datagram larger than a record is cut by recv_from; it then fails to decode and
    // gets a KRB-ERROR like any garbage.
    let mut buf = vec![0u8; MAX_RECORD];
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let Ok((n, peer)) = received else { continue };
                let reply = kdc.answer(&buf[..n], true);
                let _ = socket.send_to(&reply, peer).await;
            }
            _ = shutdown.changed() => return,
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    kdc: Arc<KdcHandle>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = shutdown.changed() => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let kdc = kdc.clone();
                connections.spawn(async move {
                    let _permit = permit;
                    serve_connection(stream, kdc).await;
                });
            }
            _ = shutdown.changed() => break,
        }
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    connections.abort_all();
}

/// Answers records until the client closes, idles, or sends a length over the bound.
async fn serve_connection(mut stream: TcpStream, kdc: Arc<KdcHandle>) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match frame::take_record(&mut buf) {
            Record::Message(request) => {
                let reply = kdc.answer(&request, false);
                if stream.write_all(&frame::record(&reply)).await.is_err() {
                    return;
                }
                continue;
            }
            Record::TooLong(len) => {
                let reply = kdc.with(|k| {
                    k.error(
                        err::FIELD_TOOLONG,
                        &format!("record of {len} bytes"),
                        unix_now(),
                    )
                });
                let _ = stream.write_all(&frame::record(&reply.bytes)).await;
                return;
            }
            Record::Incomplete => {}
        }
        match tokio::time::timeout(TCP_IDLE, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    }
}
