//! The DCE/RPC listeners (`ncacn_ip_tcp`): each accepted connection becomes a sans-IO
//! [`Association`](harness_core::dcerpc::server::Association) of its endpoint, driven by
//! the same stream driver and accept loop as the mail listeners.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use harness_core::dcerpc::server::Endpoint;
use harness_core::ServerSession;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::connection::{drive_woken, Conn, NotifyWaker};
use super::lab::{LabStats, LiveGuard};
use super::listener::{accept_connections, Admission};

/// Which endpoint a DCE/RPC listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RpcRole {
    /// The endpoint mapper (port 135 on Windows): tells clients where the others are.
    EndpointMapper,
    /// The Exchange interfaces (EMSMDB, AsyncEMSMDB, NSPI, RFR) on one port.
    Exchange,
}

impl RpcRole {
    /// The name a user knows the listener by.
    pub fn scheme(self) -> &'static str {
        match self {
            RpcRole::EndpointMapper => "epm",
            RpcRole::Exchange => "rpc",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcListenerSpec {
    pub role: RpcRole,
    pub addr: SocketAddr,
}

/// A bound DCE/RPC listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcListening {
    pub spec: RpcListenerSpec,
    pub addr: SocketAddr,
}

/// Accepts connections for `endpoint` until shutdown. A connection over the limit is
/// closed at once: DCE/RPC has nothing to say before a bind, and a client treats the
/// close as the server being busy.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    endpoint: Arc<Endpoint>,
    max_connections: usize,
    stats: Arc<LabStats>,
    shutdown: watch::Receiver<bool>,
) {
    let handle = move |tcp, admission: Admission| {
        let endpoint = endpoint.clone();
        let stats = stats.clone();
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let live = LiveGuard::new(&stats);
        async move {
            match admission {
                Admission::Admitted { shutdown, place } => {
                    stats.active.fetch_add(1, Ordering::Relaxed);
                    let wake = Arc::new(NotifyWaker::default());
                    let association = endpoint.accept_with_waker(Duration::ZERO, wake.clone());
                    let session: Box<dyn ServerSession> = Box::new(association);
                    let write_timeout = endpoint.config().idle_timeout.min(Duration::from_secs(60));
                    let conn = Conn::Plain(tcp);
                    let ended =
                        drive_woken(conn, session, None, shutdown, write_timeout, Some(wake)).await;
                    tracing::debug!(?ended, "rpc association ended");
                    drop(place);
                    stats.active.fetch_sub(1, Ordering::Relaxed);
                }
                Admission::OverLimit => {
                    stats.refused_over_limit.fetch_add(1, Ordering::Relaxed);
                    drop(tcp);
                }
            }
            drop(live);
        }
    };
    accept_connections(listener, max_connections, shutdown, handle).await;
}
