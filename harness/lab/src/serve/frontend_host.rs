//! The front-end over real sockets: the lab's adapter for the relay director of
//! `harness-core`. The [`Director`] decides everything about back-end connections (pool,
//! session cache, grants, releases, parks, discards); this module only owns sockets and
//! moves bytes: a task per client session runs the session's `FrontendSession`, and the
//! director's [`Links`] commands open, keep, close and check TCP connections.
//!
//! Connections that wait (idle in the pool, or parked in the session cache with an
//! authenticated back-end session) sit in one map beside the director; a parked socket
//! that the back-end closed or wrote to meanwhile is not usable, and the director treats
//! it as a miss. The director's clock is the front-end's uptime.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::Duration;

use harness_core::frontend::director::{features_from_greeting, greeting_is_ok};
use harness_core::frontend::{
    BackendIo, CacheStats, ConnId, Decision, Director, FrontendProfile, FrontendSession, Links,
    PoolStats, SessionId,
};
use harness_core::{Limits, Output, Protocol, ServerSession};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use super::hop::{self, HopStage, HopStream};
use super::lab::{ListenerSpec, Security};
use super::listener::{accept_connections, Admission};

/// Bound on connecting to a back-end and reading its greeting.
const BACKEND_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest back-end greeting read.
const MAX_GREETING: usize = 4096;

/// A front-end listener: which protocol, which profile, and where its back-end is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendSpec {
    pub protocol: Protocol,
    pub addr: SocketAddr,
    pub profile: FrontendProfile,
    /// `None`: the lab's own plain listener for the protocol, over a plain hop.
    pub backend: Option<BackendTarget>,
}

/// Where a front-end's back-end is and what the hop to it is like.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendTarget {
    /// `None`: the lab's own listener for the protocol (IMAPS / POP3S with `tls`).
    pub addr: Option<SocketAddr>,
    /// Implicit TLS to the back-end (RFC 8314 3.3), the server's certificate verified.
    pub tls: Option<BackendTls>,
    /// What the bytes between front-end and back-end cross (an emulated round trip).
    pub stages: Vec<HopStage>,
}

impl BackendTarget {
    /// The lab's own listener for the protocol, over `tls` (or not) and a round trip of
    /// `rtt` (none when zero).
    pub fn own(tls: Option<BackendTls>, rtt: Duration) -> BackendTarget {
        BackendTarget {
            addr: None,
            tls,
            stages: (!rtt.is_zero())
                .then(|| HopStage::round_trip(rtt))
                .into_iter()
                .collect(),
        }
    }
}

/// The front-end as a TLS client of its back-end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendTls {
    /// PEM certificates to trust; `None`: the lab's own certificate.
    pub trusted: Option<PathBuf>,
    /// Resume TLS sessions (rustls's default); off, every connection costs a full
    /// handshake.
    pub resumption: bool,
}

impl Default for BackendTls {
    fn default() -> Self {
        BackendTls {
            trusted: None,
            resumption: true,
        }
    }
}

/// How one front-end opens connections to its back-end: the address, the hop's stages,
/// and TLS (a connector and the name the certificate must carry).
#[derive(Clone)]
pub struct BackendLink {
    pub addr: SocketAddr,
    protocol: Protocol,
    stages: Vec<HopStage>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    handshakes: Arc<HandshakeCounters>,
}

/// TLS handshakes made to the back-end, full and resumed.
#[derive(Debug, Default)]
struct HandshakeCounters {
    full: AtomicU64,
    resumed: AtomicU64,
}

/// TLS handshakes a front-end made to its back-end so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TlsHandshakes {
    pub full: u64,
    pub resumed: u64,
}

impl BackendLink {
    /// A plain hop, or TLS verified against `tls_config` with the back-end's address as
    /// the name (the lab's certificate carries the loopback addresses).
    pub fn new(
        protocol: Protocol,
        addr: SocketAddr,
        stages: Vec<HopStage>,
        tls_config: Option<Arc<rustls::ClientConfig>>,
    ) -> BackendLink {
        BackendLink {
            addr,
            protocol,
            stages,
            tls: tls_config.map(|config| {
                (
                    TlsConnector::from(config),
                    ServerName::IpAddress(addr.ip().into()),
                )
            }),
            handshakes: Arc::default(),
        }
    }

    /// The TLS handshakes made through this link (and its clones) so far.
    pub fn tls_handshakes(&self) -> TlsHandshakes {
        TlsHandshakes {
            full: self.handshakes.full.load(Ordering::Relaxed),
            resumed: self.handshakes.resumed.load(Ordering::Relaxed),
        }
    }

    /// Connects through the hop's stages (and TLS) and reads the back-end's greeting line.
    pub async fn open(&self) -> io::Result<(HopStream, Vec<u8>)> {
        let connect = async {
            let tcp = hop::connect(self.addr, &self.stages).await?;
            let mut stream: HopStream = match &self.tls {
                Some((connector, name)) => {
                    let tls = connector.connect(name.clone(), tcp).await?;
                    let counter = match tls.get_ref().1.handshake_kind() {
                        Some(rustls::HandshakeKind::Resumed) => &self.handshakes.resumed,
                        _ => &self.handshakes.full,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    Box::new(tls)
                }
                None => tcp,
            };
            let mut greeting = Vec::new();
            let mut buf = [0u8; 512];
            while !greeting.ends_with(b"\n") {
                let n = stream.read(&mut buf).await?;
                if n == 0 || greeting.len() + n > MAX_GREETING {
                    return Err(io::Error::other(
                        "back-end closed or sent an over-long greeting",
                    ));
                }
                greeting.extend_from_slice(&buf[..n]);
            }
            if !greeting_is_ok(self.protocol, &greeting) {
                return Err(io::Error::other("back-end greeting is not OK"));
            }
            Ok((stream, greeting))
        };
        tokio::time::timeout(BACKEND_CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| {
                io::Error::new(io::ErrorKind::TimedOut, "back-end did not greet in time")
            })?
    }
}

/// What every session of one front-end listener shares.
pub struct FrontendShared {
    protocol: Protocol,
    limits: Limits,
    backend: BackendLink,
    director: Mutex<Director>,
    /// Connections waiting to be granted (idle in the pool, or parked), ready or still
    /// opening. Locked after the director when both are.
    waiting: Mutex<HashMap<ConnId, Slot>>,
    started: Instant,
}

/// A waiting back-end connection.
enum Slot {
    Ready(HopStream),
    /// Still connecting or reading the greeting: the opener sends the stream here, or
    /// drops the sender when the open failed.
    Opening(oneshot::Receiver<HopStream>),
}

/// A waiting connection is still usable: the back-end has neither closed it nor written
/// (a read would block). Over TLS this also takes in what is not data, such as the
/// server's session tickets.
fn quiet(stream: &mut HopStream) -> bool {
    let mut probe = [0u8; 1];
    let mut probe = ReadBuf::new(&mut probe);
    let mut cx = Context::from_waker(Waker::noop());
    Pin::new(stream).poll_read(&mut cx, &mut probe).is_pending()
}

/// The director's [`Links`] over sockets: the waiting map, and the sockets one client
/// session holds.
struct SocketLinks<'a> {
    shared: &'a Arc<FrontendShared>,
    held: &'a mut HashMap<ConnId, HopStream>,
}

impl Links for SocketLinks<'_> {
    /// Opens in the background; whoever holds the slot then (the waiting map, or a
    /// session that was granted the id meanwhile) gets the socket.
    fn open(&mut self, conn: ConnId) -> Option<bool> {
        let (opened, slot) = oneshot::channel();
        if let Ok(mut waiting) = self.shared.waiting.lock() {
            waiting.insert(conn, Slot::Opening(slot));
        }
        let backend = self.shared.backend.clone();
        tokio::spawn(async move {
            match backend.open().await {
                Ok((tcp, _)) => {
                    let _ = opened.send(tcp);
                }
                // The slot's sender drops: a session waiting on it opens a connection of
                // its own then. No retry loop against a back-end that is down.
                Err(e) => {
                    tracing::warn!(conn, error = %e, "front-end could not open a back-end connection");
                }
            }
        });
        None
    }

    fn keep(&mut self, conn: ConnId) {
        if let Some(tcp) = self.held.remove(&conn) {
            if let Ok(mut waiting) = self.shared.waiting.lock() {
                waiting.insert(conn, Slot::Ready(tcp));
            }
        }
    }

    fn close(&mut self, conn: ConnId) {
        self.held.remove(&conn);
        if let Ok(mut waiting) = self.shared.waiting.lock() {
            waiting.remove(&conn);
        }
    }

    fn usable(&mut self, conn: ConnId) -> bool {
        if self.held.contains_key(&conn) {
            return true;
        }
        let Ok(mut waiting) = self.shared.waiting.lock() else {
            return false;
        };
        match waiting.get_mut(&conn) {
            Some(Slot::Ready(stream)) => quiet(stream),
            Some(Slot::Opening(_)) => true,
            None => false,
        }
    }
}

impl FrontendShared {
    /// TLS handshakes to the back-end so far (none over a plain hop).
    pub fn tls_handshakes(&self) -> TlsHandshakes {
        self.backend.tls_handshakes()
    }

    pub fn stats(&self) -> PoolStats {
        self.director.lock().map(|d| d.stats()).unwrap_or_default()
    }

    /// Counters of the session cache.
    pub fn cache_stats(&self) -> CacheStats {
        self.director
            .lock()
            .map(|d| d.cache_stats())
            .unwrap_or_default()
    }

    /// Parked sessions right now.
    pub fn cached_sessions(&self) -> usize {
        self.director
            .lock()
            .map(|d| d.cached_sessions())
            .unwrap_or(0)
    }

    /// Runs `f` on the director with the links of a session holding `held`.
    fn direct<T>(
        self: &Arc<Self>,
        held: &mut HashMap<ConnId, HopStream>,
        f: impl FnOnce(&mut Director, &mut SocketLinks<'_>, Duration) -> T,
    ) -> Option<T> {
        let now = self.started.elapsed();
        let mut director = self.director.lock().ok()?;
        let mut links = SocketLinks { shared: self, held };
        Some(f(&mut director, &mut links, now))
    }

    /// The socket of a granted connection: the waiting one, the one still opening
    /// (waited for rather than opening a second connection beside it), or a fresh one.
    async fn take(&self, conn: ConnId) -> io::Result<HopStream> {
        let slot = self
            .waiting
            .lock()
            .ok()
            .and_then(|mut waiting| waiting.remove(&conn));
        let ready = match slot {
            Some(Slot::Ready(tcp)) => Some(tcp),
            // The opener is bounded by BACKEND_CONNECT_TIMEOUT; an error drops the sender.
            Some(Slot::Opening(opening)) => opening.await.ok(),
            None => None,
        };
        match ready {
            Some(tcp) => Ok(tcp),
            None => self.backend.open().await.map(|(stream, _)| stream),
        }
    }

    /// A parked connection the director handed to a session.
    fn take_parked(&self, conn: ConnId) -> Option<HopStream> {
        match self.waiting.lock().ok()?.remove(&conn)? {
            Slot::Ready(tcp) => Some(tcp),
            Slot::Opening(_) => None,
        }
    }
}

/// Starts a front-end listener: probes the back-end (does an IMAP back-end take SASL-IR?),
/// warms the pool, and serves clients until shutdown.
pub async fn start(
    listener: TcpListener,
    spec: FrontendSpec,
    backend: BackendLink,
    limits: Limits,
    seed: u64,
    shutdown: watch::Receiver<bool>,
) -> io::Result<(
    Arc<FrontendShared>,
    impl std::future::Future<Output = ()> + Send + 'static,
)> {
    let (probe, greeting) = backend.open().await?;
    drop(probe);
    let protocol = spec.protocol;
    let mut director = Director::new(
        protocol,
        spec.profile.clone(),
        features_from_greeting(protocol, &greeting),
    );
    director.set_limits(limits.clone());
    director.set_seed(seed);
    // Traces are for the in-process runner; over sockets nobody reads them.
    director.set_tracing(false);
    let shared = Arc::new(FrontendShared {
        protocol: spec.protocol,
        limits,
        backend,
        director: Mutex::new(director),
        waiting: Mutex::new(HashMap::new()),
        started: Instant::now(),
    });
    shared.direct(&mut HashMap::new(), |d, links, _| d.warm_up(links));
    let serve = accept_loop(listener, shared.clone(), shutdown);
    Ok((shared, serve))
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<FrontendShared>,
    shutdown: watch::Receiver<bool>,
) {
    // The refusal only needs the protocol; the address is for the spec's completeness.
    let local = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    let spec = ListenerSpec::new(shared.protocol, Security::Plain, local);
    let serving = shared.clone();
    let max_connections = shared.limits.max_connections;
    let handle = move |tcp, admission: Admission| {
        let shared = serving.clone();
        async move {
            let serve = |tcp, shutdown| async { serve_client(tcp, &shared, shutdown).await };
            admission.serve_or_refuse(tcp, spec, serve).await;
        }
    };
    accept_connections(listener, max_connections, shutdown, handle).await;
    shared.direct(&mut HashMap::new(), |d, links, _| d.shutdown(links));
}

/// Reads from the back-end connection the session is waiting on, if any.
async fn read_backend(
    conn: Option<(ConnId, &mut HopStream)>,
    buf: &mut [u8],
) -> (ConnId, io::Result<usize>) {
    match conn {
        Some((id, tcp)) => (id, tcp.read(buf).await),
        None => std::future::pending().await,
    }
}

/// What woke a front-end session up.
enum Event {
    Client(io::Result<usize>),
    Backend(ConnId, io::Result<usize>),
    Timer,
    Shutdown(bool),
}

async fn serve_client(
    mut client: TcpStream,
    shared: &Arc<FrontendShared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some((session_id, mut core)) = shared.director.lock().ok().map(|mut d| d.new_session())
    else {
        return;
    };
    let started = Instant::now();
    let write_timeout = shared.limits.idle_timeout.min(Duration::from_secs(60));
    // The back-end sockets this session holds.
    let mut held: HashMap<ConnId, HopStream> = HashMap::new();
    // The connection whose reply the session waits for, or that is leased to it.
    let mut active: Option<ConnId> = None;
    let mut cbuf = vec![0u8; 4096];
    let mut bbuf = vec![0u8; 8192];
    let mut shutting_down = *shutdown.borrow();
    if shutting_down {
        core.handle_shutdown(Duration::ZERO);
    }
    loop {
        // Back-end work first; it may produce client output.
        while let Some(request) = core.poll_backend() {
            if let BackendIo::Send { conn, bytes } = request {
                active = Some(conn);
                let sent = match held.get_mut(&conn) {
                    Some(tcp) => matches!(
                        tokio::time::timeout(write_timeout, tcp.write_all(&bytes)).await,
                        Ok(Ok(()))
                    ),
                    None => false,
                };
                if !sent {
                    held.remove(&conn);
                    core.handle_backend_closed(conn);
                }
                continue;
            }
            let leaves = match &request {
                BackendIo::Release { conn }
                | BackendIo::Discard { conn }
                | BackendIo::Recycle { conn }
                | BackendIo::Park { conn, .. } => Some(*conn),
                BackendIo::Lease { conn } => {
                    active = Some(*conn);
                    None
                }
                _ => None,
            };
            if leaves.is_some() && leaves == active {
                active = None;
            }
            let decision = shared.direct(&mut held, |d, links, now| {
                d.handle(session_id, request, now, links)
            });
            match decision {
                Some(Decision::Granted { conn, reset }) => {
                    let opened = shared.take(conn).await;
                    core.handle_backend_grant(conn, reset);
                    match opened {
                        Ok(tcp) => {
                            held.insert(conn, tcp);
                        }
                        Err(_) => core.handle_backend_closed(conn),
                    }
                }
                Some(Decision::CacheAnswer(found)) => {
                    if let Some(p) = &found {
                        if let Some(tcp) = shared.take_parked(p.conn) {
                            held.insert(p.conn, tcp);
                        }
                    }
                    core.handle_cache_lookup(found);
                }
                Some(Decision::Done) => {}
                None => return,
            }
        }
        let _ = core.take_trace();
        let _ = core.take_findings();
        while let Some(out) = core.poll_output() {
            match out {
                Output::Write(bytes) => {
                    let written =
                        tokio::time::timeout(write_timeout, client.write_all(&bytes)).await;
                    if !matches!(written, Ok(Ok(()))) {
                        finish(shared, session_id, &mut core, held);
                        return;
                    }
                }
                // The front-end never offers STARTTLS, so StartTls cannot be asked for.
                Output::StartTls | Output::Close => {
                    let _ = tokio::time::timeout(write_timeout, client.shutdown()).await;
                    finish(shared, session_id, &mut core, held);
                    return;
                }
            }
        }
        if core.is_closed() {
            finish(shared, session_id, &mut core, held);
            return;
        }
        let deadline = core.poll_timeout().map(|d| started + d);
        let backend = active.and_then(|id| held.get_mut(&id).map(|tcp| (id, tcp)));
        let event = tokio::select! {
            r = client.read(&mut cbuf) => Event::Client(r),
            (id, r) = read_backend(backend, &mut bbuf) => Event::Backend(id, r),
            _ = sleep_until_opt(deadline) => Event::Timer,
            changed = shutdown.changed(), if !shutting_down => Event::Shutdown(changed.is_ok()),
        };
        let now = started.elapsed();
        match event {
            Event::Client(Ok(0) | Err(_)) => core.handle_eof(now),
            Event::Client(Ok(n)) => core.handle_input(now, &cbuf[..n]),
            Event::Backend(id, Ok(0) | Err(_)) => {
                held.remove(&id);
                if active == Some(id) {
                    active = None;
                }
                core.handle_backend_closed(id);
            }
            Event::Backend(id, Ok(n)) => core.handle_backend_input(id, &bbuf[..n]),
            Event::Timer => core.handle_timeout(now),
            Event::Shutdown(real) => {
                shutting_down = true;
                if real {
                    core.handle_shutdown(now);
                }
            }
        }
    }
}

/// The client session is over: its last requests go to the director (bytes no longer
/// matter), which then discards whatever the session still holds.
fn finish(
    shared: &Arc<FrontendShared>,
    session_id: SessionId,
    core: &mut FrontendSession,
    mut held: HashMap<ConnId, HopStream>,
) {
    core.handle_eof(Duration::ZERO);
    shared.direct(&mut held, |d, links, now| {
        while let Some(request) = core.poll_backend() {
            d.handle(session_id, request, now, links);
        }
        d.end_session(session_id, links);
    });
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending::<()>().await,
    }
}
