//! The back-end connection pool as plain bookkeeping: which connections exist, which are
//! idle (greeted, not authenticated, waiting), which one the reuse policy hands out next,
//! and the counters a benchmark reads. It opens and closes nothing itself: it returns the
//! ids of connections the adapter must open or close.
//!
//! With [`PoolPolicy::unauthenticate`] a connection can also come back from a client
//! session still authenticated ([`Pool::recycle`]); it waits idle like the others, and the
//! grant that hands it out again says it needs its reset (`UNAUTHENTICATE`) first.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::ConnId;

/// Which idle connection is handed out next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reuse {
    /// The one idle longest (a returned connection goes to the back of the queue).
    RoundRobin,
    /// The one returned last.
    Lifo,
}

/// How the front-end keeps back-end connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolPolicy {
    /// Idle connections kept open and greeted (shared mode). A request that finds none
    /// idle opens one at once, so the pool never makes a client wait.
    pub size: usize,
    pub reuse: Reuse,
    /// No sharing: each client session gets connections of its own, opened on demand and
    /// closed when the session ends.
    pub per_session: bool,
    /// IMAP: keep a back-end session authenticated by a basic LOGIN when its client logs
    /// out, and serve the next LOGIN of the same user with the same credentials from it
    /// (see the module docs of [`super`], "Session cache"). The harness's own model.
    #[serde(default)]
    pub keep_sessions: bool,
    /// Parked sessions kept at most (the oldest is closed to make room).
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
    /// Seconds a parked session may idle before it is closed.
    #[serde(default = "default_cache_idle_secs")]
    pub cache_idle_secs: u64,
    /// IMAP: when a client logs out, keep its back-end connection for the pool: the
    /// front-end answers the LOGOUT itself, and the connection is reset with
    /// `UNAUTHENTICATE` (RFC 8437) ahead of the next request made on it, when the back-end
    /// offers it (see the module docs of [`super`], "Pool reuse across client
    /// sessions"). The harness's own model.
    #[serde(default)]
    pub unauthenticate: bool,
}

fn default_cache_size() -> usize {
    16
}

fn default_cache_idle_secs() -> u64 {
    60
}

/// Counters of the pool's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStats {
    /// Back-end connections opened (warm-up, replacements, on-demand).
    pub opened: u64,
    /// Back-end connections closed.
    pub closed: u64,
    /// Requests served by an idle, already greeted connection.
    pub idle_acquired: u64,
    /// Requests served by a connection that had already served an earlier request.
    pub reused: u64,
    /// Requests that had to open a connection first.
    pub fresh_acquired: u64,
    /// Connections handed to a client session for good (after a successful login): one
    /// per authenticated client session.
    pub leased: u64,
    /// Connections that came back from a client session still authenticated, to be reset
    /// with `UNAUTHENTICATE` before their next request.
    pub recycled: u64,
    /// Grants of a recycled connection (each carries the reset ahead of its request).
    pub reset_grants: u64,
}

/// Who may take an idle connection.
type Owner = Option<u64>;

/// A connection handed out by [`Pool::acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub conn: ConnId,
    /// The adapter must open (and greet) this connection before using it.
    pub fresh: bool,
    /// The connection was recycled: it is still authenticated (as an earlier client
    /// session's user) until the session that gets it resets it.
    pub reset: bool,
}

#[derive(Debug, Clone)]
pub struct Pool {
    policy: PoolPolicy,
    /// Idle connections in reuse order, with the session they belong to (per-session).
    free: VecDeque<(ConnId, Owner)>,
    /// Every open connection and its owner.
    open: BTreeMap<ConnId, Owner>,
    /// Connections that have served at least one request.
    served: BTreeSet<ConnId>,
    /// Idle connections that came back authenticated ([`Pool::recycle`]).
    unreset: BTreeSet<ConnId>,
    next_id: ConnId,
    stats: PoolStats,
}

impl Pool {
    pub fn new(policy: PoolPolicy) -> Self {
        Pool {
            policy,
            free: VecDeque::new(),
            open: BTreeMap::new(),
            served: BTreeSet::new(),
            unreset: BTreeSet::new(),
            next_id: 1,
            stats: PoolStats::default(),
        }
    }

    pub fn policy(&self) -> PoolPolicy {
        self.policy
    }

    pub fn stats(&self) -> PoolStats {
        self.stats
    }

    /// Idle connections.
    pub fn idle(&self) -> usize {
        self.free.len()
    }

    /// Open connections (idle, in use or leased).
    pub fn open_connections(&self) -> usize {
        self.open.len()
    }

    fn new_conn(&mut self, owner: Owner) -> ConnId {
        let id = self.next_id;
        self.next_id = self.next_id.saturating_add(1);
        self.open.insert(id, owner);
        self.stats.opened += 1;
        id
    }

    /// Fills the idle list up to the pool size; returns the connections to open. Nothing
    /// in per-session mode.
    pub fn warm_up(&mut self) -> Vec<ConnId> {
        let mut opened = Vec::new();
        if self.policy.per_session {
            return opened;
        }
        while self.free.len() < self.policy.size {
            let id = self.new_conn(None);
            self.free.push_back((id, None));
            opened.push(id);
        }
        opened
    }

    /// A connection for one request of client session `session`.
    pub fn acquire(&mut self, session: u64) -> Grant {
        let owner = self.policy.per_session.then_some(session);
        let pick = match self.policy.reuse {
            Reuse::RoundRobin => self.free.iter().position(|(_, o)| *o == owner),
            Reuse::Lifo => self.free.iter().rposition(|(_, o)| *o == owner),
        };
        let taken = pick.and_then(|i| self.free.remove(i));
        let (conn, fresh) = match taken {
            Some((conn, _)) => {
                self.stats.idle_acquired += 1;
                if self.served.contains(&conn) {
                    self.stats.reused += 1;
                }
                (conn, false)
            }
            None => {
                self.stats.fresh_acquired += 1;
                (self.new_conn(owner), true)
            }
        };
        self.served.insert(conn);
        let reset = self.unreset.remove(&conn);
        self.stats.reset_grants += u64::from(reset);
        Grant { conn, fresh, reset }
    }

    /// The request is over and the connection is back in its initial state. Returns a
    /// connection to close when the idle list is already full.
    pub fn release(&mut self, conn: ConnId) -> Option<ConnId> {
        let owner = *self.open.get(&conn)?;
        if self.free.iter().any(|(c, _)| *c == conn) {
            return None;
        }
        if owner.is_none() && self.free.len() >= self.policy.size {
            self.forget(conn);
            return Some(conn);
        }
        self.free.push_back((conn, owner));
        None
    }

    /// A client session ended with its connection still authenticated (shared mode): it
    /// goes back to the idle list, and its next grant says it needs its reset. Returns a
    /// connection to close when the idle list is already full.
    pub fn recycle(&mut self, conn: ConnId) -> Option<ConnId> {
        if !self.open.contains_key(&conn) {
            return None;
        }
        let closed = self.release(conn);
        if closed.is_none() {
            self.unreset.insert(conn);
            self.stats.recycled += 1;
        }
        closed
    }

    /// The connection now belongs to a client session until the session ends.
    pub fn lease(&mut self, conn: ConnId) {
        if self.open.contains_key(&conn) {
            self.stats.leased += 1;
        }
    }

    fn forget(&mut self, conn: ConnId) {
        if self.open.remove(&conn).is_some() {
            self.stats.closed += 1;
        }
        self.free.retain(|(c, _)| *c != conn);
        self.served.remove(&conn);
        self.unreset.remove(&conn);
    }

    /// The connection is closed (leased session ended, broken, or in an unknown state).
    /// Returns the replacements to open.
    pub fn discard(&mut self, conn: ConnId) -> Vec<ConnId> {
        self.forget(conn);
        self.warm_up()
    }

    /// Client session `session` ended: in per-session mode its idle connections close.
    pub fn end_session(&mut self, session: u64) -> Vec<ConnId> {
        if !self.policy.per_session {
            return Vec::new();
        }
        let mine: Vec<ConnId> = self
            .free
            .iter()
            .filter(|(_, o)| *o == Some(session))
            .map(|(c, _)| *c)
            .collect();
        for c in &mine {
            self.forget(*c);
        }
        mine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(reuse: Reuse, per_session: bool) -> PoolPolicy {
        PoolPolicy {
            size: 3,
            reuse,
            per_session,
            keep_sessions: false,
            cache_size: 0,
            cache_idle_secs: 0,
            unauthenticate: false,
        }
    }

    #[test]
    fn round_robin_cycles_through_idle_connections() {
        let mut p = Pool::new(policy(Reuse::RoundRobin, false));
        assert_eq!(p.warm_up(), vec![1, 2, 3]);
        let mut order = Vec::new();
        for _ in 0..4 {
            let g = p.acquire(9);
            assert!(!g.fresh);
            order.push(g.conn);
            assert_eq!(p.release(g.conn), None);
        }
        assert_eq!(order, vec![1, 2, 3, 1]);
        let s = p.stats();
        assert_eq!((s.opened, s.idle_acquired, s.reused), (3, 4, 1));
    }

    #[test]
    fn lifo_hands_back_the_last_returned() {
        let mut p = Pool::new(policy(Reuse::Lifo, false));
        p.warm_up();
        let a = p.acquire(1).conn;
        p.release(a);
        assert_eq!(p.acquire(1).conn, a);
        assert_eq!(a, 3);
    }

    #[test]
    fn discard_replaces_and_overflow_opens_on_demand() {
        let mut p = Pool::new(policy(Reuse::RoundRobin, false));
        p.warm_up();
        let held: Vec<Grant> = (0..4).map(|s| p.acquire(s)).collect();
        assert_eq!(held.iter().filter(|g| g.fresh).count(), 1);
        assert_eq!(p.idle(), 0);
        // Two go back, which refills the idle list to 2; the third leased one closes.
        p.release(held[0].conn);
        p.release(held[1].conn);
        p.lease(held[2].conn);
        assert_eq!(p.discard(held[2].conn), vec![5]);
        assert_eq!(p.idle(), 3);
        // A full idle list closes a returned connection instead of keeping it.
        assert_eq!(p.release(held[3].conn), Some(held[3].conn));
        let s = p.stats();
        assert_eq!((s.opened, s.closed, s.leased), (5, 2, 1));
        assert_eq!(p.open_connections(), 3);
    }

    #[test]
    fn a_recycled_connection_is_granted_again_with_its_reset_once() {
        let mut p = Pool::new(policy(Reuse::Lifo, false));
        p.warm_up();
        let a = p.acquire(1);
        assert_eq!((a.conn, a.fresh, a.reset), (3, false, false));
        p.lease(a.conn);
        assert_eq!(p.recycle(a.conn), None);
        assert_eq!(p.idle(), 3);
        let b = p.acquire(2);
        assert_eq!((b.conn, b.fresh, b.reset), (3, false, true));
        // Reset by session 2 and released after its failed login: no second reset.
        p.release(b.conn);
        assert!(!p.acquire(3).reset);
        // Recycled into a full idle list: closed like any connection returned there.
        let c = p.acquire(4);
        p.release(c.conn);
        let extra = p.acquire(5);
        let more: Vec<Grant> = (6..9).map(|s| p.acquire(s)).collect();
        for g in &more {
            p.release(g.conn);
        }
        assert_eq!(p.recycle(extra.conn), Some(extra.conn));
        let s = p.stats();
        assert_eq!((s.recycled, s.reset_grants, s.leased), (1, 1, 1));
        // Closing a recycled idle one forgets its reset with it.
        let d = p.acquire(9);
        p.recycle(d.conn);
        p.discard(d.conn);
        assert!((10..14).all(|s| !p.acquire(s).reset));
    }

    #[test]
    fn per_session_never_shares() {
        let mut p = Pool::new(policy(Reuse::RoundRobin, true));
        assert!(p.warm_up().is_empty());
        let a = p.acquire(1);
        assert!(a.fresh);
        p.release(a.conn);
        let b = p.acquire(2);
        assert!(b.fresh && b.conn != a.conn);
        assert_eq!(p.acquire(1).conn, a.conn);
        p.release(a.conn);
        assert_eq!(p.end_session(1), vec![a.conn]);
        assert_eq!(p.stats().opened, 2);
    }
}
