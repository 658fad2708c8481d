//! What every listener of the lab shares: binding with a deep backlog, and the accept loop
//! with its connection limit (the excess turned away in the protocol's words), its shutdown
//! signal, and sessions reaped as they end. The mock listeners and the front-end host both
//! run on it; what a connection gets is theirs to say.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use harness_core::Protocol;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::lab::{ListenerSpec, Security};

/// Pending connections the kernel queues per listener before it drops SYNs (capped by
/// net.core.somaxconn). `TcpListener::bind` asks for 128, which a few hundred clients
/// connecting at once overflow: the dropped SYNs come back a second later, as one-second
/// stalls in the load runs' latencies.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listener with [`LISTEN_BACKLOG`] (and SO_REUSEADDR, as `TcpListener::bind`).
pub(crate) fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Whether an accepted connection is within the connection limit.
pub(crate) enum Admission {
    /// Serve it. `shutdown` says when the lab stops; `place` is its share of the limit,
    /// freed when the session is over, before the handler's own bookkeeping (so a counter
    /// that says the session is gone never runs ahead of the free place).
    Admitted {
        shutdown: watch::Receiver<bool>,
        place: OwnedSemaphorePermit,
    },
    /// Over the limit: turn it away ([`refuse_over_limit`]).
    OverLimit,
}

impl Admission {
    /// Serves an admitted connection with `serve` and frees its place after; turns one
    /// over the limit away.
    pub(crate) async fn serve_or_refuse<Session>(
        self,
        tcp: TcpStream,
        spec: ListenerSpec,
        serve: impl FnOnce(TcpStream, watch::Receiver<bool>) -> Session,
    ) where
        Session: Future<Output = ()>,
    {
        match self {
            Admission::Admitted { shutdown, place } => {
                serve(tcp, shutdown).await;
                drop(place);
            }
            Admission::OverLimit => refuse_over_limit(tcp, spec).await,
        }
    }
}

/// Accepts connections until `shutdown` changes, then waits for the sessions to end. For
/// each connection `handle` is called at once (so counters it keeps are current when the
/// next accept happens) and the future it returns runs as a task; an admitted connection
/// holds one of `max_connections` places until it drops its [`Admission::Admitted`] place.
pub(crate) async fn accept_connections<Handle, Session>(
    listener: TcpListener,
    max_connections: usize,
    mut shutdown: watch::Receiver<bool>,
    mut handle: Handle,
) where
    Handle: FnMut(TcpStream, Admission) -> Session,
    Session: Future<Output = ()> + Send + 'static,
{
    let places = Arc::new(Semaphore::new(max_connections));
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _peer)) = accepted else {
                    // Out of file descriptors and the like: back off briefly, keep serving.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let admission = match places.clone().try_acquire_owned() {
                    Ok(place) => Admission::Admitted { shutdown: shutdown.clone(), place },
                    Err(_) => Admission::OverLimit,
                };
                sessions.spawn(handle(tcp, admission));
                // Reap finished sessions so the set does not grow without bound.
                while sessions.try_join_next().is_some() {}
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    while sessions.join_next().await.is_some() {}
}

/// Tells a client over the connection limit why it is turned away, in its protocol.
async fn refuse_over_limit(mut tcp: TcpStream, spec: ListenerSpec) {
    if spec.security == Security::ImplicitTls {
        return; // no TLS handshake for a connection that is turned away
    }
    let line: &[u8] = match spec.protocol {
        Protocol::Imap => b"* BYE [UNAVAILABLE] Too many connections\r\n",
        Protocol::Pop3 => b"-ERR [SYS/TEMP] Too many connections\r\n",
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = tcp.write_all(line).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}
