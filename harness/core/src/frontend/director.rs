//! The relay director: the one place where a front-end decides what happens to its
//! back-end connections. It owns the [`Pool`] and the [`SessionCache`], hands out
//! client sessions, and answers their [`BackendIo`] requests (open, grant, release,
//! lease, park, discard, close). The adapters only move bytes: the in-process adapter
//! ([`super::InProcessFrontend`]) runs back-end sessions in this process, the lab's
//! socket adapter holds TCP connections; both feed every request through
//! [`Director::handle`] and do what it tells them through [`Links`], so they behave the
//! same by construction. (The split follows quinn-proto's `Endpoint`, which decides for
//! every connection, and the I/O loop around it, which only carries datagrams.)
//!
//! The director never waits: opening a connection is a request to the adapter
//! ([`Links::open`]); the socket adapter opens in the background, the in-process
//! adapter at once. Its clock is the `now` each call passes in.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::cache::{CacheKey, CacheStats, CredentialDigest, Parked, SessionCache};
use super::session::{BackendFeatures, FrontendSession};
use super::stream_scanner::line_has_capability;
use super::{BackendIo, ConnId, Finding, FrontendProfile, Grant, Pool, PoolStats};
use crate::session::Limits;
use crate::Protocol;

/// Trace lines kept; a long-running lab stops recording after this many.
pub const MAX_TRACE_LINES: usize = 100_000;

/// Names a client session of one front-end (the pool's owner key in per-session mode).
pub type SessionId = u64;

/// What the director asks of the adapter that owns the connections. Each call is a
/// command carried out before the director goes on, except `open`, which may finish later.
pub trait Links {
    /// Open `conn` (connect, read the greeting) and hold it idle until it is granted.
    /// `Some(greeted)` when the outcome is known at once, `None` while it opens in the
    /// background.
    fn open(&mut self, conn: ConnId) -> Option<bool>;
    /// `conn` leaves the client session that used it and waits, idle in the pool or
    /// parked in the session cache, until it is granted again.
    fn keep(&mut self, conn: ConnId);
    /// Close `conn` wherever it is, and forget it.
    fn close(&mut self, conn: ConnId);
    /// Whether `conn` can still be used: the back-end has not closed it (and, while it
    /// waited, has sent nothing).
    fn usable(&mut self, conn: ConnId) -> bool;
}

/// The director's answer to one request, for the client session that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// `Acquire`: the connection is the session's for this request. The adapter gives it
    /// to the session (waiting for it if it is still opening), then calls
    /// [`FrontendSession::handle_backend_grant`] with both fields. `reset`: the connection
    /// was recycled and is still authenticated; the session resets it first.
    Granted { conn: ConnId, reset: bool },
    /// `CacheLookup`: pass to [`FrontendSession::handle_cache_lookup`]. A found entry's
    /// connection is the session's now.
    CacheAnswer(Option<Parked>),
    /// Nothing for the session.
    Done,
}

/// What the director knows of a front-end's back-ends, read off a back-end's greeting.
pub fn features_from_greeting(protocol: Protocol, greeting: &[u8]) -> BackendFeatures {
    let first_line = greeting.split(|&b| b == b'\n').next().unwrap_or_default();
    let imap = protocol == Protocol::Imap;
    BackendFeatures {
        imap_sasl_ir: imap
            && first_line
                .split(|&b| b == b' ' || b == b']' || b == b'[')
                .any(|w| w.eq_ignore_ascii_case(b"SASL-IR")),
        imap_unselect: imap && line_has_capability(first_line, "UNSELECT"),
        imap_unauthenticate: imap && line_has_capability(first_line, "UNAUTHENTICATE"),
    }
}

/// A back-end greeting that lets the front-end use the connection.
pub fn greeting_is_ok(protocol: Protocol, greeting: &[u8]) -> bool {
    match protocol {
        Protocol::Imap => greeting.starts_with(b"* OK"),
        Protocol::Pop3 => greeting.starts_with(b"+OK"),
    }
}

/// A front-end's decisions about back-end connections, sans-IO.
#[derive(Debug)]
pub struct Director {
    protocol: Protocol,
    profile: Arc<FrontendProfile>,
    limits: Limits,
    features: BackendFeatures,
    cache_key: Arc<CacheKey>,
    pool: Pool,
    cache: SessionCache,
    /// Connections a client session holds (granted, or taken from the cache), by session.
    held: BTreeMap<ConnId, SessionId>,
    next_session: SessionId,
    tracing: bool,
    trace: Vec<String>,
    findings: Vec<Finding>,
}

impl Director {
    /// A director for a front-end serving `protocol` as `profile`, in front of back-ends
    /// with `features`. Nothing is opened until [`Director::warm_up`].
    pub fn new(protocol: Protocol, profile: FrontendProfile, features: BackendFeatures) -> Self {
        let pool = Pool::new(profile.pool);
        let cache = SessionCache::new(
            profile.pool.cache_size,
            Duration::from_secs(profile.pool.cache_idle_secs),
        );
        Director {
            protocol,
            profile: Arc::new(profile),
            limits: Limits::default(),
            features,
            cache_key: Arc::new(CacheKey::from_seed(0x4645_2d4b_4559)),
            pool,
            cache,
            held: BTreeMap::new(),
            next_session: 1,
            tracing: true,
            trace: Vec::new(),
            findings: Vec::new(),
        }
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    pub fn profile(&self) -> &FrontendProfile {
        &self.profile
    }

    /// Limits for client sessions made from now on.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Records the trace (the default) or not, for sessions made from now on.
    pub fn set_tracing(&mut self, on: bool) {
        self.tracing = on;
    }

    /// Draws the key of the session cache's credential digests from `seed`.
    pub fn set_seed(&mut self, seed: u64) {
        self.cache_key = Arc::new(CacheKey::from_seed(seed));
    }

    /// Fills the pool's idle list.
    pub fn warm_up(&mut self, links: &mut impl Links) {
        for conn in self.pool.warm_up() {
            self.open(conn, links);
        }
    }

    /// A new client session and its id.
    pub fn new_session(&mut self) -> (SessionId, FrontendSession) {
        let id = self.next_session;
        self.next_session = self.next_session.saturating_add(1);
        let mut core = FrontendSession::new(
            self.protocol,
            Arc::clone(&self.profile),
            self.limits.clone(),
            self.features,
        );
        core.set_cache_key(Arc::clone(&self.cache_key));
        core.set_tracing(self.tracing);
        (id, core)
    }

    /// Collects what a client session did for the trace and the findings.
    pub fn note_session(&mut self, core: &mut FrontendSession) {
        for line in core.take_trace() {
            self.log(line);
        }
        self.findings.extend(core.take_findings());
    }

    /// Decides one request of client session `session`. `Send` is the adapter's alone
    /// (it carries bytes) and is answered with `Done`.
    pub fn handle(
        &mut self,
        session: SessionId,
        request: BackendIo,
        now: Duration,
        links: &mut impl Links,
    ) -> Decision {
        match request {
            BackendIo::Acquire => {
                let Grant { conn, fresh, reset } = self.pool.acquire(session);
                if fresh {
                    self.open(conn, links);
                }
                self.held.insert(conn, session);
                Decision::Granted { conn, reset }
            }
            BackendIo::Send { .. } => Decision::Done,
            BackendIo::Release { conn } => {
                self.back_to_pool(conn, false, links);
                Decision::Done
            }
            BackendIo::Lease { conn } => {
                self.pool.lease(conn);
                Decision::Done
            }
            BackendIo::Recycle { conn } => {
                self.back_to_pool(conn, true, links);
                Decision::Done
            }
            BackendIo::Discard { conn } => {
                self.held.remove(&conn);
                self.discard(conn, links);
                Decision::Done
            }
            BackendIo::CacheLookup { user, digest } => {
                let found = self.lookup(&user, &digest, now, links);
                if let Some(p) = &found {
                    self.held.insert(p.conn, session);
                }
                Decision::CacheAnswer(found)
            }
            BackendIo::Park {
                conn,
                user,
                digest,
                ok_text,
            } => {
                self.held.remove(&conn);
                if links.usable(conn) {
                    links.keep(conn);
                    let close = self
                        .cache
                        .park(&user, digest, Parked { conn, ok_text }, now);
                    self.unpark(close, "full or idle too long", links);
                } else {
                    self.discard(conn, links);
                }
                Decision::Done
            }
        }
    }

    /// Client session `session` has ended (after its last requests were handled): any
    /// connection it still holds is discarded, and in per-session mode its idle ones close.
    pub fn end_session(&mut self, session: SessionId, links: &mut impl Links) {
        let still_held: Vec<ConnId> = self
            .held
            .iter()
            .filter(|(_, s)| **s == session)
            .map(|(c, _)| *c)
            .collect();
        for conn in still_held {
            self.held.remove(&conn);
            self.discard(conn, links);
        }
        for c in self.pool.end_session(session) {
            self.log(format!("be#{c} closed (client session ended)"));
            links.close(c);
        }
    }

    /// The front-end stops: every parked session is closed (and not replaced).
    pub fn shutdown(&mut self, links: &mut impl Links) {
        for c in self.cache.drain() {
            self.log(format!("be#{c} closed (session cache: shutdown)"));
            links.close(c);
            let _ = self.pool.discard(c);
        }
    }

    pub fn stats(&self) -> PoolStats {
        self.pool.stats()
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Parked sessions in the session cache.
    pub fn cached_sessions(&self) -> usize {
        self.cache.len()
    }

    /// Idle connections in the pool.
    pub fn idle_connections(&self) -> usize {
        self.pool.idle()
    }

    /// Every trace line so far, in order.
    pub fn trace(&self) -> &[String] {
        &self.trace
    }

    /// Findings so far.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    fn log(&mut self, line: String) {
        if !self.tracing {
            return;
        }
        if self.trace.len() < MAX_TRACE_LINES {
            self.trace.push(line);
        } else if self.trace.len() == MAX_TRACE_LINES {
            self.trace.push("(trace full: later lines dropped)".into());
        }
    }

    fn open(&mut self, conn: ConnId, links: &mut impl Links) {
        match links.open(conn) {
            Some(true) => self.log(format!("be#{conn} opened")),
            Some(false) => self.log(format!("be#{conn} opened, but the greeting was not OK")),
            None => {}
        }
    }

    /// A session gives `conn` back: idle in the pool (`recycled`: still authenticated, to be
    /// reset before its next request), or closed when it is dead or the idle list is full.
    fn back_to_pool(&mut self, conn: ConnId, recycled: bool, links: &mut impl Links) {
        self.held.remove(&conn);
        if !links.usable(conn) {
            self.discard(conn, links);
            return;
        }
        let full = if recycled {
            self.pool.recycle(conn)
        } else {
            self.pool.release(conn)
        };
        if let Some(c) = full {
            self.log(format!("be#{c} closed (idle list full)"));
            links.close(c);
            return;
        }
        if recycled {
            self.log(format!(
                "be#{conn} recycled: idle, UNAUTHENTICATE ahead of its next request"
            ));
        }
        links.keep(conn);
    }

    /// Closes a connection the pool will not hand out again and opens its replacements.
    fn discard(&mut self, conn: ConnId, links: &mut impl Links) {
        links.close(conn);
        for r in self.pool.discard(conn) {
            self.open(r, links);
        }
    }

    /// Parked sessions leaving the cache (`why`: expired, evicted, dead).
    fn unpark(&mut self, conns: Vec<ConnId>, why: &str, links: &mut impl Links) {
        for c in conns {
            self.log(format!("be#{c} closed (session cache: {why})"));
            self.discard(c, links);
        }
    }

    /// A parked session of `user` with these credentials that is still usable. Each
    /// round takes an entry out of the cache for good, so the loop is bounded by its size.
    fn lookup(
        &mut self,
        user: &str,
        digest: &CredentialDigest,
        now: Duration,
        links: &mut impl Links,
    ) -> Option<Parked> {
        for _ in 0..=self.profile.pool.cache_size {
            let lookup = self.cache.take(user, digest, now);
            self.unpark(lookup.expired, "idle too long", links);
            let parked = lookup.parked?;
            if links.usable(parked.conn) {
                return Some(parked);
            }
            self.cache.unusable();
            self.unpark(vec![parked.conn], "closed by the back-end", links);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// An adapter that only records what it was told: the director's in-memory pair.
    #[derive(Default)]
    struct Recorder {
        log: Vec<String>,
        open: BTreeSet<ConnId>,
        dead: BTreeSet<ConnId>,
    }

    impl Links for Recorder {
        fn open(&mut self, conn: ConnId) -> Option<bool> {
            self.log.push(format!("open {conn}"));
            self.open.insert(conn);
            Some(true)
        }
        fn keep(&mut self, conn: ConnId) {
            self.log.push(format!("keep {conn}"));
        }
        fn close(&mut self, conn: ConnId) {
            self.log.push(format!("close {conn}"));
            self.open.remove(&conn);
        }
        fn usable(&mut self, conn: ConnId) -> bool {
            self.open.contains(&conn) && !self.dead.contains(&conn)
        }
    }

    /// A director for the front-end profile `name` that has warmed its pool up, and the
    /// links that recorded it.
    fn warmed_up(name: &str) -> (Director, Recorder) {
        let profile = FrontendProfile::by_name(name).expect("profile");
        let mut d = Director::new(Protocol::Imap, profile, BackendFeatures::default());
        let mut l = Recorder::default();
        d.warm_up(&mut l);
        (d, l)
    }

    fn park(conn: ConnId, user: &str, digest: &CredentialDigest) -> BackendIo {
        BackendIo::Park {
            conn,
            user: user.into(),
            digest: digest.clone(),
            ok_text: "OK LOGIN completed".into(),
        }
    }

    fn login(user: &str, digest: &CredentialDigest) -> BackendIo {
        BackendIo::CacheLookup {
            user: user.into(),
            digest: digest.clone(),
        }
    }

    #[test]
    fn warm_pool_grants_idle_connections_and_takes_them_back() {
        let (mut d, mut l) = warmed_up("exchange2000-sp1");
        assert_eq!(l.log, ["open 1", "open 2", "open 3", "open 4"]);
        l.log.clear();
        let now = Duration::ZERO;
        assert_eq!(
            d.handle(1, BackendIo::Acquire, now, &mut l),
            Decision::Granted {
                conn: 1,
                reset: false
            }
        );
        d.handle(1, BackendIo::Release { conn: 1 }, now, &mut l);
        assert_eq!(l.log, ["keep 1"]);
        assert_eq!(d.idle_connections(), 4);
    }

    #[test]
    fn a_dead_connection_coming_back_is_closed_and_replaced() {
        let (mut d, mut l) = warmed_up("exchange2000-sp1");
        l.log.clear();
        let now = Duration::ZERO;
        d.handle(1, BackendIo::Acquire, now, &mut l);
        l.dead.insert(1);
        d.handle(1, BackendIo::Release { conn: 1 }, now, &mut l);
        assert_eq!(l.log, ["close 1", "open 5"]);
        assert_eq!(d.trace().last().map(String::as_str), Some("be#5 opened"));
        assert_eq!(d.stats().closed, 1);
    }

    #[test]
    fn a_full_idle_list_closes_the_connection_returned() {
        let (mut d, mut l) = warmed_up("exchange2000-sp1");
        let now = Duration::ZERO;
        let granted: Vec<Decision> = (1..=5)
            .map(|s| d.handle(s, BackendIo::Acquire, now, &mut l))
            .collect();
        assert_eq!(
            granted.last(),
            Some(&Decision::Granted {
                conn: 5,
                reset: false
            })
        );
        for conn in 1..=4 {
            d.handle(conn, BackendIo::Release { conn }, now, &mut l);
        }
        l.log.clear();
        d.handle(5, BackendIo::Release { conn: 5 }, now, &mut l);
        assert_eq!(l.log, ["close 5"]);
        assert_eq!(
            d.trace().last().map(String::as_str),
            Some("be#5 closed (idle list full)")
        );
    }

    #[test]
    fn parked_sessions_serve_the_same_credentials_and_dead_ones_are_skipped() {
        let (mut d, mut l) = warmed_up("session-cache");
        let key = CacheKey::from_seed(3);
        let alice = key.digest("alice", "secret");
        let now = Duration::from_secs(1);
        // Two sessions of alice park their connections 1 and 2.
        for (session, conn) in [(1, 1), (2, 2)] {
            assert_eq!(
                d.handle(session, BackendIo::Acquire, now, &mut l),
                Decision::Granted { conn, reset: false }
            );
            d.handle(session, BackendIo::Lease { conn }, now, &mut l);
            d.handle(session, park(conn, "alice", &alice), now, &mut l);
            d.end_session(session, &mut l);
        }
        assert_eq!(d.cached_sessions(), 2);
        // The newest (2) died while parked: the lookup skips it and serves 1.
        l.dead.insert(2);
        l.log.clear();
        let answer = d.handle(3, login("alice", &alice), now, &mut l);
        assert!(matches!(answer, Decision::CacheAnswer(Some(ref p)) if p.conn == 1));
        // (The pool refills its idle list to four: 3 and 4 are idle, 5 and 6 are new.)
        assert_eq!(l.log, ["close 2", "open 5", "open 6"]);
        let s = d.cache_stats();
        assert_eq!((s.hits, s.misses), (1, 1));
        // Another password misses and leaves nothing to take.
        let wrong = key.digest("alice", "wrong");
        assert_eq!(
            d.handle(4, login("alice", &wrong), now, &mut l),
            Decision::CacheAnswer(None)
        );
        // Session 3 ends without giving back what it took: the director discards it.
        l.log.clear();
        d.end_session(3, &mut l);
        assert_eq!(l.log, ["close 1"]);
        assert_eq!(d.stats().closed, 2);
    }

    #[test]
    fn shutdown_closes_parked_sessions_without_replacing_them() {
        let (mut d, mut l) = warmed_up("session-cache");
        let digest = CacheKey::from_seed(1).digest("bob", "pw");
        let now = Duration::ZERO;
        d.handle(1, BackendIo::Acquire, now, &mut l);
        d.handle(1, park(1, "bob", &digest), now, &mut l);
        l.log.clear();
        d.shutdown(&mut l);
        assert_eq!(l.log, ["close 1"]);
        assert_eq!(d.cached_sessions(), 0);
    }

    #[test]
    fn recycled_connections_come_back_with_their_reset_and_dead_ones_are_replaced() {
        let (mut d, mut l) = warmed_up("pool-unauthenticate");
        let now = Duration::ZERO;
        let first = d.handle(1, BackendIo::Acquire, now, &mut l);
        assert_eq!(
            first,
            Decision::Granted {
                conn: 1,
                reset: false
            }
        );
        d.handle(1, BackendIo::Lease { conn: 1 }, now, &mut l);
        l.log.clear();
        d.handle(1, BackendIo::Recycle { conn: 1 }, now, &mut l);
        d.end_session(1, &mut l);
        assert_eq!(l.log, ["keep 1"]);
        assert_eq!(
            d.trace().last().map(String::as_str),
            Some("be#1 recycled: idle, UNAUTHENTICATE ahead of its next request")
        );
        // Round robin: 2, 3, 4 first, then 1 with its reset.
        let grants: Vec<Decision> = (2..6)
            .map(|s| d.handle(s, BackendIo::Acquire, now, &mut l))
            .collect();
        assert_eq!(
            grants.last(),
            Some(&Decision::Granted {
                conn: 1,
                reset: true
            })
        );
        for conn in 2..5 {
            d.handle(conn, BackendIo::Release { conn }, now, &mut l);
        }
        // A recycled connection that died meanwhile is closed and replaced, not kept.
        d.handle(5, BackendIo::Lease { conn: 1 }, now, &mut l);
        l.dead.insert(1);
        l.log.clear();
        d.handle(5, BackendIo::Recycle { conn: 1 }, now, &mut l);
        assert_eq!(l.log, ["close 1", "open 5"]);
        let s = d.stats();
        assert_eq!((s.opened, s.recycled, s.reset_grants), (5, 1, 1));
    }

    #[test]
    fn greetings_tell_the_back_end_features() {
        let g = b"* OK [CAPABILITY IMAP4rev1 SASL-IR UNSELECT] ready\r\n";
        let f = features_from_greeting(Protocol::Imap, g);
        assert!(f.imap_sasl_ir && f.imap_unselect && !f.imap_unauthenticate);
        let g = b"* OK [CAPABILITY IMAP4rev1 UNAUTHENTICATE] ready\r\n";
        let f = features_from_greeting(Protocol::Imap, g);
        assert!(f.imap_unauthenticate && !f.imap_unselect);
        assert!(!features_from_greeting(Protocol::Pop3, g).imap_unauthenticate);
        let g = b"* OK [CAPABILITY IMAP4rev1 SASL-IR UNSELECT] ready\r\n";
        let f = features_from_greeting(Protocol::Pop3, g);
        assert!(!f.imap_sasl_ir && !f.imap_unselect);
        assert!(greeting_is_ok(Protocol::Pop3, b"+OK hi\r\n"));
        assert!(!greeting_is_ok(Protocol::Imap, b"* BYE\r\n"));
    }
}
