//! The front-end over real sockets: the sans-IO `FrontendSession` of `harness-core` with
//! a pool of TCP connections to a back-end (the lab's own listener, or any server such as
//! Dovecot). The pool's bookkeeping is the core's `Pool`; this module only owns sockets.
//!
//! With the session cache on (profile `session-cache`), the sockets of parked back-end
//! sessions wait here beside the core's `SessionCache`; a parked socket that the back-end
//! closed or wrote to meanwhile is closed when taken (a miss). Idle entries are closed
//! when the cache is next used (the clock is the front-end's uptime), and all of them at
//! shutdown.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness_core::frontend::backend::line_has_capability;
use harness_core::frontend::{
    BackendFeatures, BackendIo, CacheKey, CacheStats, ConnId, FrontendProfile, FrontendSession,
    Parked, Pool, PoolStats, Protocol as FeProtocol, SessionCache,
};
use harness_core::{Limits, Output, ServerSession};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::Protocol;

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
    /// `None`: the lab's own plain listener for the protocol.
    pub backend: Option<SocketAddr>,
}

fn fe_protocol(p: Protocol) -> FeProtocol {
    match p {
        Protocol::Imap => FeProtocol::Imap,
        Protocol::Pop3 => FeProtocol::Pop3,
    }
}

/// Connects to the back-end and reads its greeting line.
async fn open_backend(addr: SocketAddr, protocol: Protocol) -> io::Result<(TcpStream, Vec<u8>)> {
    let connect = async {
        let mut tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let mut greeting = Vec::new();
        let mut buf = [0u8; 512];
        while !greeting.ends_with(b"\n") {
            let n = tcp.read(&mut buf).await?;
            if n == 0 || greeting.len() + n > MAX_GREETING {
                return Err(io::Error::other(
                    "back-end closed or sent an over-long greeting",
                ));
            }
            greeting.extend_from_slice(&buf[..n]);
        }
        let ok = match protocol {
            Protocol::Imap => greeting.starts_with(b"* OK"),
            Protocol::Pop3 => greeting.starts_with(b"+OK"),
        };
        if !ok {
            return Err(io::Error::other("back-end greeting is not OK"));
        }
        Ok((tcp, greeting))
    };
    tokio::time::timeout(BACKEND_CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "back-end did not greet in time"))?
}

/// What every session of one front-end listener shares.
pub struct FrontendShared {
    protocol: Protocol,
    profile: Arc<FrontendProfile>,
    limits: Limits,
    features: BackendFeatures,
    backend: SocketAddr,
    pool: Mutex<Pool>,
    /// Idle back-end connections by id, ready or still opening.
    idle: Mutex<HashMap<ConnId, IdleSlot>>,
    next_session: AtomicU64,
    /// The session cache and the sockets of its parked sessions.
    parked: Mutex<ParkedSessions>,
    cache_key: Arc<CacheKey>,
    started: Instant,
}

/// An idle back-end connection of the pool.
enum IdleSlot {
    Ready(TcpStream),
    /// Still connecting or reading the greeting: the opener sends the socket here, or
    /// drops the sender when the open failed.
    Opening(oneshot::Receiver<TcpStream>),
}

struct ParkedSessions {
    cache: SessionCache,
    sockets: HashMap<ConnId, TcpStream>,
}

/// A parked socket is still usable: the back-end has neither closed it nor written.
fn quiet(tcp: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(tcp.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

impl FrontendShared {
    pub fn stats(&self) -> PoolStats {
        self.pool.lock().map(|p| p.stats()).unwrap_or_default()
    }

    /// Counters of the session cache.
    pub fn cache_stats(&self) -> CacheStats {
        self.parked
            .lock()
            .map(|p| p.cache.stats())
            .unwrap_or_default()
    }

    /// Parked sessions right now.
    pub fn cached_sessions(&self) -> usize {
        self.parked.lock().map(|p| p.cache.len()).unwrap_or(0)
    }

    /// Closes parked connections (their sockets drop) and opens the pool's replacements.
    fn unpark(self: &Arc<Self>, conns: Vec<ConnId>, sockets: &mut HashMap<ConnId, TcpStream>) {
        if conns.is_empty() {
            return;
        }
        let mut replace = Vec::new();
        if let Ok(mut pool) = self.pool.lock() {
            for c in conns {
                sockets.remove(&c);
                replace.extend(pool.discard(c));
            }
        }
        self.open_idle(replace);
    }

    /// A parked session of `user` with these credentials, with its socket.
    fn lookup(
        self: &Arc<Self>,
        user: &str,
        digest: &harness_core::frontend::CredentialDigest,
    ) -> Option<(Parked, TcpStream)> {
        let now = self.started.elapsed();
        let mut guard = self.parked.lock().ok()?;
        let ParkedSessions { cache, sockets } = &mut *guard;
        // Bounded: each round takes an entry out of the cache for good.
        for _ in 0..=self.profile.pool.cache_size {
            let lookup = cache.take(user, digest, now);
            self.unpark(lookup.expired, sockets);
            let parked = lookup.parked?;
            match sockets.remove(&parked.conn) {
                Some(tcp) if quiet(&tcp) => return Some((parked, tcp)),
                _ => {
                    cache.unusable();
                    self.unpark(vec![parked.conn], sockets);
                }
            }
        }
        None
    }

    fn park(
        self: &Arc<Self>,
        tcp: TcpStream,
        conn: ConnId,
        user: &str,
        digest: harness_core::frontend::CredentialDigest,
        ok_text: String,
    ) {
        let now = self.started.elapsed();
        let Ok(mut guard) = self.parked.lock() else {
            return;
        };
        let ParkedSessions { cache, sockets } = &mut *guard;
        sockets.insert(conn, tcp);
        let close = cache.park(user, digest, Parked { conn, ok_text }, now);
        self.unpark(close, sockets);
    }

    /// Shutdown: every parked session closes.
    fn close_parked(self: &Arc<Self>) {
        if let Ok(mut guard) = self.parked.lock() {
            let ParkedSessions { cache, sockets } = &mut *guard;
            let all = cache.drain();
            if let Ok(mut pool) = self.pool.lock() {
                for c in all {
                    sockets.remove(&c);
                    let _ = pool.discard(c);
                }
            }
            sockets.clear();
        }
    }

    /// Opens `ids` in the background and parks them as idle when ready.
    fn open_idle(self: &Arc<Self>, ids: Vec<ConnId>) {
        for id in ids {
            let (opened, slot) = oneshot::channel();
            if let Ok(mut idle) = self.idle.lock() {
                idle.insert(id, IdleSlot::Opening(slot));
            }
            let shared = self.clone();
            tokio::spawn(async move {
                match open_backend(shared.backend, shared.protocol).await {
                    // Whoever holds the slot (the idle map, or a session that took the id
                    // while it was opening) gets the socket; a dropped slot drops it.
                    Ok((tcp, _)) => {
                        let _ = opened.send(tcp);
                    }
                    Err(e) => {
                        // The id stays free in the pool; whoever takes it opens a fresh
                        // connection then. No retry loop against a back-end that is down.
                        tracing::warn!(conn = id, error = %e, "front-end could not open a back-end connection");
                    }
                }
            });
        }
    }

    /// The socket of a granted connection: the idle one, the one still opening (waited
    /// for rather than opening a second connection beside it), or a fresh one.
    async fn take(&self, grant_conn: ConnId, fresh: bool) -> io::Result<TcpStream> {
        let slot = if fresh {
            None
        } else {
            self.idle
                .lock()
                .ok()
                .and_then(|mut idle| idle.remove(&grant_conn))
        };
        let ready = match slot {
            Some(IdleSlot::Ready(tcp)) => Some(tcp),
            // The opener is bounded by BACKEND_CONNECT_TIMEOUT; an error drops the sender.
            Some(IdleSlot::Opening(opening)) => opening.await.ok(),
            None => None,
        };
        match ready {
            Some(tcp) => Ok(tcp),
            None => open_backend(self.backend, self.protocol)
                .await
                .map(|(tcp, _)| tcp),
        }
    }
}

/// Starts a front-end listener: probes the back-end (does an IMAP back-end take SASL-IR?),
/// warms the pool, and serves clients until shutdown.
pub async fn start(
    listener: TcpListener,
    spec: FrontendSpec,
    backend: SocketAddr,
    limits: Limits,
    seed: u64,
    shutdown: watch::Receiver<bool>,
) -> io::Result<(
    Arc<FrontendShared>,
    impl std::future::Future<Output = ()> + Send + 'static,
)> {
    let (probe, greeting) = open_backend(backend, spec.protocol).await?;
    drop(probe);
    let first_line = greeting.split(|&b| b == b'\n').next().unwrap_or_default();
    let features = BackendFeatures {
        imap_sasl_ir: spec.protocol == Protocol::Imap
            && first_line
                .split(|&b| b == b' ' || b == b']' || b == b'[')
                .any(|w| w.eq_ignore_ascii_case(b"SASL-IR")),
        imap_unselect: spec.protocol == Protocol::Imap
            && line_has_capability(first_line, "UNSELECT"),
    };
    let cache = SessionCache::new(
        spec.profile.pool.cache_size,
        Duration::from_secs(spec.profile.pool.cache_idle_secs),
    );
    let shared = Arc::new(FrontendShared {
        protocol: spec.protocol,
        profile: Arc::new(spec.profile.clone()),
        limits,
        features,
        backend,
        pool: Mutex::new(Pool::new(spec.profile.pool)),
        idle: Mutex::new(HashMap::new()),
        next_session: AtomicU64::new(1),
        parked: Mutex::new(ParkedSessions {
            cache,
            sockets: HashMap::new(),
        }),
        cache_key: Arc::new(CacheKey::from_seed(seed)),
        started: Instant::now(),
    });
    let warm = shared
        .pool
        .lock()
        .map(|mut p| p.warm_up())
        .unwrap_or_default();
    shared.open_idle(warm);
    let serve = accept_loop(listener, shared.clone(), shutdown);
    Ok((shared, serve))
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<FrontendShared>,
    mut shutdown: watch::Receiver<bool>,
) {
    // The refusal only needs the protocol; the address is for the spec's completeness.
    let local = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    let permits = Arc::new(Semaphore::new(shared.limits.max_connections));
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    let spec = crate::ListenerSpec::new(shared.protocol, crate::Security::Plain, local);
                    sessions.spawn(crate::refuse_over_limit(tcp, spec));
                    continue;
                };
                let shared = shared.clone();
                let shutdown = shutdown.clone();
                sessions.spawn(async move {
                    serve_client(tcp, &shared, shutdown).await;
                    drop(permit);
                });
                while sessions.try_join_next().is_some() {}
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    while sessions.join_next().await.is_some() {}
    shared.close_parked();
}

/// Reads from the back-end connection the session is waiting on, if any.
async fn read_backend(
    conn: Option<(ConnId, &mut TcpStream)>,
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
    let session_id = shared.next_session.fetch_add(1, Ordering::Relaxed);
    let mut core = FrontendSession::new(
        fe_protocol(shared.protocol),
        shared.profile.clone(),
        shared.limits.clone(),
        shared.features,
    );
    core.set_cache_key(shared.cache_key.clone());
    // Traces are for the in-process runner; over sockets nobody reads them.
    core.set_tracing(false);
    let started = Instant::now();
    let write_timeout = shared.limits.idle_timeout.min(Duration::from_secs(60));
    let mut conns: HashMap<ConnId, TcpStream> = HashMap::new();
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
        while let Some(io) = core.poll_backend() {
            match io {
                BackendIo::Acquire => {
                    let Ok(grant) = shared.pool.lock().map(|mut p| p.acquire(session_id)) else {
                        return;
                    };
                    let opened = shared.take(grant.conn, grant.fresh).await;
                    core.handle_backend_granted(grant.conn);
                    match opened {
                        Ok(tcp) => {
                            conns.insert(grant.conn, tcp);
                        }
                        Err(_) => core.handle_backend_closed(grant.conn),
                    }
                }
                BackendIo::Send { conn, bytes } => {
                    active = Some(conn);
                    let sent = match conns.get_mut(&conn) {
                        Some(tcp) => matches!(
                            tokio::time::timeout(write_timeout, tcp.write_all(&bytes)).await,
                            Ok(Ok(()))
                        ),
                        None => false,
                    };
                    if !sent {
                        conns.remove(&conn);
                        core.handle_backend_closed(conn);
                    }
                }
                BackendIo::Release { conn } => {
                    if active == Some(conn) {
                        active = None;
                    }
                    if let Some(tcp) = conns.remove(&conn) {
                        let close = shared.pool.lock().ok().and_then(|mut p| p.release(conn));
                        if close.is_none() {
                            if let Ok(mut idle) = shared.idle.lock() {
                                idle.insert(conn, IdleSlot::Ready(tcp));
                            }
                        }
                    }
                }
                BackendIo::Lease { conn } => {
                    active = Some(conn);
                    if let Ok(mut p) = shared.pool.lock() {
                        p.lease(conn);
                    }
                }
                BackendIo::CacheLookup { user, digest } => {
                    let found = shared.lookup(&user, &digest).map(|(parked, tcp)| {
                        conns.insert(parked.conn, tcp);
                        parked
                    });
                    core.handle_cache_lookup(found);
                }
                BackendIo::Park {
                    conn,
                    user,
                    digest,
                    ok_text,
                } => {
                    if active == Some(conn) {
                        active = None;
                    }
                    match conns.remove(&conn) {
                        Some(tcp) => shared.park(tcp, conn, &user, digest, ok_text),
                        None => {
                            let replace = shared
                                .pool
                                .lock()
                                .map(|mut p| p.discard(conn))
                                .unwrap_or_default();
                            shared.open_idle(replace);
                        }
                    }
                }
                BackendIo::Discard { conn } => {
                    if active == Some(conn) {
                        active = None;
                    }
                    conns.remove(&conn);
                    let replace = shared
                        .pool
                        .lock()
                        .map(|mut p| p.discard(conn))
                        .unwrap_or_default();
                    shared.open_idle(replace);
                }
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
                        finish(shared, session_id, &mut core, conns);
                        return;
                    }
                }
                // The front-end never offers STARTTLS, so StartTls cannot be asked for.
                Output::StartTls | Output::Close => {
                    let _ = tokio::time::timeout(write_timeout, client.shutdown()).await;
                    finish(shared, session_id, &mut core, conns);
                    return;
                }
            }
        }
        if core.is_closed() {
            finish(shared, session_id, &mut core, conns);
            return;
        }
        let deadline = core.poll_timeout().map(|d| started + d);
        let backend = active.and_then(|id| conns.get_mut(&id).map(|tcp| (id, tcp)));
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
                conns.remove(&id);
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

/// The client session is over: every back-end connection it still holds is closed and
/// replaced, and in per-session mode its idle connections go too.
fn finish(
    shared: &Arc<FrontendShared>,
    session_id: u64,
    core: &mut FrontendSession,
    mut conns: HashMap<ConnId, TcpStream>,
) {
    core.handle_eof(Duration::ZERO);
    while core.poll_backend().is_some() {}
    let mut replace = Vec::new();
    if let Ok(mut pool) = shared.pool.lock() {
        for (conn, _) in conns.drain() {
            replace.extend(pool.discard(conn));
        }
        let mine = pool.end_session(session_id);
        if let Ok(mut idle) = shared.idle.lock() {
            for c in mine {
                idle.remove(&c);
            }
        }
    }
    shared.open_idle(replace);
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending::<()>().await,
    }
}
