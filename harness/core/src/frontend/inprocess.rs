//! The in-process adapter: the pool and the back-end sessions live in this process, and a
//! client session's `handle_input` runs the front-end and pumps the back-ends
//! synchronously. The scenario runner and the fuzz entry use it.
//!
//! Back-end sessions are made by a factory called with the connection id; id 0 is a probe
//! made once at construction to read the back-end's greeting (does an IMAP back-end offer
//! SASL-IR?) and dropped at once; it is not counted in the pool's statistics. Back-end
//! sessions see the clock of the client session that drives them; their timers are not
//! run.
//!
//! With the session cache on ([`PoolPolicy::keep_sessions`](super::PoolPolicy)), parked
//! sessions live here too; their idle bound is checked against the clock of the client
//! session that touches the cache, and [`InProcessFrontend::shutdown`] closes them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::cache::CacheStats;
use super::director::{
    features_from_greeting, greeting_is_ok, Decision, Director, Links, SessionId,
};
use super::session::FrontendSession;
use super::{BackendIo, ConnId, Finding, FrontendProfile, PoolStats};
use crate::session::{Limits, Output, ServerSession};
use crate::Protocol;

pub use super::director::MAX_TRACE_LINES;

type Factory = Box<dyn FnMut(u64) -> Box<dyn ServerSession> + Send>;

struct Backend {
    session: Box<dyn ServerSession>,
    closed: bool,
}

/// The back-end sessions: the in-process [`Links`] of the director.
struct Backends {
    protocol: Protocol,
    sessions: BTreeMap<ConnId, Backend>,
    factory: Factory,
    /// The clock of the client session driving the director right now.
    now: Duration,
}

struct Shared {
    director: Director,
    backends: Backends,
}

/// Drains a session's output: the bytes written, and whether it closed.
fn drain(session: &mut dyn ServerSession, now: Duration) -> (Vec<u8>, bool) {
    let mut bytes = Vec::new();
    let mut closed = false;
    while let Some(out) = session.poll_output() {
        match out {
            Output::Write(w) => bytes.extend_from_slice(&w),
            Output::StartTls => session.handle_tls_established(now),
            Output::Close => closed = true,
        }
    }
    (bytes, closed)
}

impl Links for Backends {
    /// Makes the back-end session and consumes its greeting.
    fn open(&mut self, conn: ConnId) -> Option<bool> {
        let mut session = (self.factory)(conn);
        let (greeting, closed) = drain(session.as_mut(), self.now);
        let ok = greeting_is_ok(self.protocol, &greeting) && !closed;
        self.sessions.insert(
            conn,
            Backend {
                session,
                closed: !ok,
            },
        );
        Some(ok)
    }

    /// Idle and parked sessions stay where they are: nothing moves in process.
    fn keep(&mut self, _conn: ConnId) {}

    fn close(&mut self, conn: ConnId) {
        if let Some(mut b) = self.sessions.remove(&conn) {
            if !b.closed {
                b.session.handle_eof(self.now);
                drain(b.session.as_mut(), self.now);
            }
        }
    }

    fn usable(&mut self, conn: ConnId) -> bool {
        self.sessions.get(&conn).is_some_and(|b| !b.closed)
    }
}

impl Backends {
    /// Writes to a back-end; returns its answer and whether it is closed.
    fn deliver(&mut self, conn: ConnId, bytes: &[u8]) -> (Vec<u8>, bool) {
        let now = self.now;
        let Some(b) = self.sessions.get_mut(&conn) else {
            return (Vec::new(), true);
        };
        if b.closed {
            return (Vec::new(), true);
        }
        b.session.handle_input(now, bytes);
        let (out, closed) = drain(b.session.as_mut(), now);
        b.closed |= closed || b.session.is_closed();
        (out, b.closed)
    }
}

/// A front-end with its pool and back-ends in this process. Cloning shares them.
#[derive(Clone)]
pub struct InProcessFrontend {
    shared: Arc<Mutex<Shared>>,
}

impl InProcessFrontend {
    /// A front-end for `protocol` behaving as `profile`, whose back-end connections are
    /// sessions made by `backend` (called with the connection id). The pool is warmed up
    /// at once.
    pub fn new(
        protocol: Protocol,
        profile: FrontendProfile,
        mut backend: impl FnMut(u64) -> Box<dyn ServerSession> + Send + 'static,
    ) -> Self {
        let mut probe = backend(0);
        let (greeting, _) = drain(probe.as_mut(), Duration::ZERO);
        probe.handle_eof(Duration::ZERO);
        drain(probe.as_mut(), Duration::ZERO);
        drop(probe);
        let features = features_from_greeting(protocol, &greeting);
        let mut shared = Shared {
            director: Director::new(protocol, profile, features),
            backends: Backends {
                protocol,
                sessions: BTreeMap::new(),
                factory: Box::new(backend),
                now: Duration::ZERO,
            },
        };
        let Shared { director, backends } = &mut shared;
        director.warm_up(backends);
        InProcessFrontend {
            shared: Arc::new(Mutex::new(shared)),
        }
    }

    /// Runs `f` on the director (nothing, if a session panicked while holding it).
    fn with<T: Default>(&self, f: impl FnOnce(&mut Shared) -> T) -> T {
        self.shared
            .lock()
            .map(|mut s| f(&mut s))
            .unwrap_or_default()
    }

    /// Limits for client sessions made from now on.
    pub fn set_limits(&self, limits: Limits) {
        self.with(|s| s.director.set_limits(limits));
    }

    /// Records the trace (the default) or not, for sessions opened after the call.
    pub fn set_tracing(&self, on: bool) {
        self.with(|s| s.director.set_tracing(on));
    }

    /// Draws the key of the session cache's credential digests from `seed`.
    pub fn set_seed(&self, seed: u64) {
        self.with(|s| s.director.set_seed(seed));
    }

    /// Counters of the session cache.
    pub fn cache_stats(&self) -> CacheStats {
        self.with(|s| s.director.cache_stats())
    }

    /// Parked sessions in the session cache.
    pub fn cached_sessions(&self) -> usize {
        self.with(|s| s.director.cached_sessions())
    }

    /// The front-end stops: every parked session is closed.
    pub fn shutdown(&self, now: Duration) {
        self.with(|s| {
            s.backends.now = now;
            s.director.shutdown(&mut s.backends);
        });
    }

    /// A new client session sharing this front-end's pool.
    pub fn session(&self) -> Box<dyn ServerSession> {
        Box::new(self.client())
    }

    /// A new client session, as its concrete type (tests read its state).
    pub fn client(&self) -> InProcessSession {
        let (id, core) = match self.shared.lock() {
            Ok(mut s) => s.director.new_session(),
            // A session panicked with the lock held: this one works on its own.
            Err(poisoned) => {
                let (_, core) = poisoned.into_inner().director.new_session();
                (SessionId::MAX, core)
            }
        };
        InProcessSession {
            shared: Arc::clone(&self.shared),
            core,
            id,
            ended: false,
            now: Duration::ZERO,
        }
    }

    /// Every trace line so far, in order.
    pub fn trace(&self) -> Vec<String> {
        self.with(|s| s.director.trace().to_vec())
    }

    /// Findings so far.
    pub fn findings(&self) -> Vec<Finding> {
        self.with(|s| s.director.findings().to_vec())
    }

    pub fn stats(&self) -> PoolStats {
        self.with(|s| s.director.stats())
    }

    /// Idle back-end connections in the pool.
    pub fn idle_connections(&self) -> usize {
        self.with(|s| s.director.idle_connections())
    }
}

/// A client session of an [`InProcessFrontend`].
pub struct InProcessSession {
    shared: Arc<Mutex<Shared>>,
    core: FrontendSession,
    id: SessionId,
    /// The director was told that this session ended.
    ended: bool,
    now: Duration,
}

impl InProcessSession {
    /// The front-end session inside (its state, its lease).
    pub fn core(&self) -> &FrontendSession {
        &self.core
    }

    /// Runs the back-end work the front-end session asked for, until there is none:
    /// the director decides, this adapter carries bytes to and from back-end sessions.
    fn pump(&mut self) {
        let Ok(mut guard) = self.shared.lock() else {
            return;
        };
        let Shared { director, backends } = &mut *guard;
        backends.now = self.now;
        loop {
            director.note_session(&mut self.core);
            let Some(request) = self.core.poll_backend() else {
                break;
            };
            if let BackendIo::Send { conn, bytes } = request {
                let (out, closed) = backends.deliver(conn, &bytes);
                if !out.is_empty() {
                    self.core.handle_backend_input(conn, &out);
                }
                if closed {
                    self.core.handle_backend_closed(conn);
                }
                continue;
            }
            match director.handle(self.id, request, self.now, backends) {
                Decision::Granted { conn, reset } => self.core.handle_backend_grant(conn, reset),
                Decision::CacheAnswer(found) => self.core.handle_cache_lookup(found),
                Decision::Done => {}
            }
        }
        if self.core.is_closing() && !self.ended {
            self.ended = true;
            director.end_session(self.id, backends);
        }
    }
}

impl InProcessSession {
    /// An input to the front-end session at `now`, then the back-end work it caused.
    fn step(&mut self, now: Duration, input: impl FnOnce(&mut FrontendSession, Duration)) {
        self.now = now;
        input(&mut self.core, now);
        self.pump();
    }
}

impl ServerSession for InProcessSession {
    fn handle_input(&mut self, now: Duration, input: &[u8]) {
        self.step(now, |core, now| core.handle_input(now, input));
    }

    fn handle_eof(&mut self, now: Duration) {
        self.step(now, |core, now| core.handle_eof(now));
    }

    fn handle_timeout(&mut self, now: Duration) {
        self.step(now, |core, now| core.handle_timeout(now));
    }

    fn handle_shutdown(&mut self, now: Duration) {
        self.step(now, |core, now| core.handle_shutdown(now));
    }

    fn handle_tls_established(&mut self, now: Duration) {
        self.core.handle_tls_established(now);
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.core.poll_output()
    }

    fn poll_timeout(&self) -> Option<Duration> {
        self.core.poll_timeout()
    }

    fn is_closed(&self) -> bool {
        self.core.is_closed()
    }
}

impl Drop for InProcessSession {
    fn drop(&mut self) {
        if !self.ended {
            let now = self.now;
            self.core.handle_eof(now);
            self.pump();
        }
    }
}

/// The fuzz entry's body (see [`super::fuzz_frontend_session`]). Returns how many of
/// the two sessions got authenticated, so tests can tell the inputs reach that far.
pub(super) fn fuzz_two_sessions(data: &[u8]) -> usize {
    use crate::imap::StoreCaps;

    let Some((&setup, rest)) = data.split_first() else {
        return 0;
    };
    let Some(world) = crate::fuzzing::ops::default_world() else {
        return 0;
    };
    let world = Arc::new(world);
    let protocol = if setup & 1 == 0 {
        Protocol::Imap
    } else {
        Protocol::Pop3
    };
    const CHUNKS: [usize; 8] = [1, 3, 7, 16, 64, 256, 1024, 4096];
    let chunk = CHUNKS
        .get(usize::from((setup >> 1) & 7))
        .copied()
        .unwrap_or(1);
    let (a, b) = match rest.iter().position(|&x| x == 0) {
        Some(i) => (
            rest.get(..i).unwrap_or_default(),
            rest.get(i + 1..).unwrap_or_default(),
        ),
        None => (rest, &[][..]),
    };
    let caps = StoreCaps {
        max_messages: 64,
        max_bytes: 64 * 1024,
        max_mailboxes: 16,
    };
    let limits = Limits {
        max_line: 1024,
        max_literal: 4096,
        ..Limits::default()
    };
    // Bit 4: the session-cache front-end (over back-ends offering UNSELECT), so one
    // session's parked back-end session can meet the other session's LOGIN. Bit 5 (bit 4
    // clear): the pool-unauthenticate front-end over back-ends offering UNAUTHENTICATE,
    // with a pool of one, so one session's recycled connection serves the other's login.
    let recycling = setup & 0x30 == 0x20;
    let fe_name = if setup & 0x10 != 0 {
        "session-cache"
    } else if recycling {
        "pool-unauthenticate"
    } else {
        "exchange2000-rtm"
    };
    let factory =
        crate::fuzzing::ops::fuzz_backends_offering(&world, &limits, caps, protocol, recycling);
    let Some(mut profile) = FrontendProfile::by_name(fe_name) else {
        return 0;
    };
    if recycling {
        profile.pool.size = 1;
    }
    let fe = InProcessFrontend::new(protocol, profile, factory);
    fe.set_limits(limits);
    // Bits 6-7: the front-end's trace, text for the lab's log that nothing depends on,
    // is formatted for a quarter of the inputs only (it was a large part of the cost).
    fe.set_tracing(setup & 0xc0 == 0xc0);
    let mut sessions = [fe.client(), fe.client()];
    let inputs = [a, b];
    let mut outputs = [Vec::new(), Vec::new()];
    let mut now = Duration::ZERO;
    let mut pos = [0usize, 0usize];
    for (s, out) in sessions.iter_mut().zip(outputs.iter_mut()) {
        out.extend(drain(s, now).0);
    }
    while pos.iter().zip(inputs.iter()).any(|(p, i)| *p < i.len()) {
        let lanes = sessions
            .iter_mut()
            .zip(outputs.iter_mut())
            .zip(inputs.iter())
            .zip(pos.iter_mut());
        for (((session, out), input), p) in lanes {
            let start = (*p).min(input.len());
            let end = start.saturating_add(chunk).min(input.len());
            if start == end {
                continue;
            }
            now += Duration::from_millis(10);
            let piece = input.get(start..end).unwrap_or_default();
            *p = end;
            session.handle_input(now, piece);
            out.extend(drain(session, now).0);
            assert!(
                session.core.buffered_input() <= 4 * 1024 + 4096 + 64,
                "front-end holds {} octets",
                session.core.buffered_input()
            );
        }
    }
    let users: Vec<Option<String>> = sessions
        .iter()
        .map(|s| s.core.authenticated_user().map(str::to_ascii_lowercase))
        .collect();
    for (s, out) in sessions.iter_mut().zip(outputs.iter_mut()) {
        now += Duration::from_millis(10);
        s.handle_eof(now);
        out.extend(drain(s, now).0);
    }
    let total_in = data.len();
    for out in &outputs {
        // IMAP returns a whole (capped) mailbox for one FETCH: the bound is per input
        // octet and scales with the store cap; it catches loops and runaway relays.
        assert!(
            out.len() <= 8192 + total_in * (4096 + caps.max_bytes),
            "output {} for input {total_in}",
            out.len()
        );
    }
    // Mail of one user never reaches a session authenticated as another one. A marker
    // the client could have stored itself (APPEND) does not count.
    let contains = crate::fuzzing::ops::contains;
    let client_said_hello = inputs.iter().any(|i| contains(i, b"Hello"));
    for (k, out) in outputs.iter().enumerate() {
        // A client that sent UNAUTHENTICATE itself may have logged in past the front-end.
        if inputs
            .get(k)
            .is_some_and(|i| crate::fuzzing::ops::sent_unauthenticate(i))
        {
            continue;
        }
        for p in world.directory.principals() {
            let name = p.name.to_ascii_lowercase();
            if users[k].as_deref() == Some(name.as_str()) {
                continue;
            }
            let marker = format!("Hello {}, this is message", p.name);
            if client_said_hello {
                continue;
            }
            assert!(
                !contains(out, marker.as_bytes()),
                "session {k} (user {:?}) received mail of {}",
                users[k],
                p.name
            );
        }
    }
    users.iter().filter(|u| u.is_some()).count()
}
