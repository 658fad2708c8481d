//! The session cache of [`PoolPolicy::keep_sessions`](super::PoolPolicy): authenticated
//! IMAP back-end sessions parked after a client's LOGOUT, waiting for the next LOGIN of the
//! same user with the same credentials. Plain bookkeeping, sans-IO: it stores connection
//! ids and returns the ones the adapter must close.
//!
//! Credentials are never stored: an entry holds a [`CredentialDigest`], HMAC-MD5 (RFC 2104)
//! over the user name and the password under a key of the front-end's own ([`CacheKey`],
//! made from the front-end's seed). A LOGIN is served from the cache only if its digest
//! equals the entry's (compared in constant time); anything else is a miss and goes to the
//! back-end, which decides.

use std::collections::VecDeque;
use std::time::Duration;

use hmac::{Hmac, Mac};
use md5::Md5;
use serde::{Deserialize, Serialize};

use super::ConnId;
use crate::rng::SeededRng;

/// The front-end's secret key for credential digests.
#[derive(Clone)]
pub struct CacheKey([u8; 32]);

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheKey(..)")
    }
}

/// A salted digest of one user's credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialDigest([u8; 16]);

impl std::fmt::Debug for CredentialDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialDigest(..)")
    }
}

impl CredentialDigest {
    /// Constant-time equality (no early exit on the first differing octet).
    fn matches(&self, other: &CredentialDigest) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl CacheKey {
    /// A key drawn from `seed` (the lab's seed, or OS randomness when there is none).
    pub fn from_seed(seed: u64) -> CacheKey {
        let mut rng = SeededRng::new(seed ^ 0x5345_5353_494F_4E43);
        CacheKey(rng.bytes())
    }

    /// HMAC-MD5 over `user`, a zero octet and `password`.
    pub fn digest(&self, user: &str, password: &str) -> CredentialDigest {
        let mut out = [0u8; 16];
        if let Ok(mut mac) = Hmac::<Md5>::new_from_slice(&self.0) {
            mac.update(user.as_bytes());
            mac.update(&[0]);
            mac.update(password.as_bytes());
            out.copy_from_slice(&mac.finalize().into_bytes());
        }
        CredentialDigest(out)
    }
}

/// Counters of the cache's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStats {
    /// Sessions parked after a client LOGOUT.
    pub parked: u64,
    /// LOGINs served from the cache (no back-end LOGIN).
    pub hits: u64,
    /// LOGINs the cache could not serve (no entry, or other credentials).
    pub misses: u64,
    /// Entries closed to make room.
    pub evicted: u64,
    /// Entries closed after idling too long.
    pub expired: u64,
}

/// A parked session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    pub conn: ConnId,
    /// Text after the tag of the back-end's LOGIN completion (`OK LOGIN completed`), so a
    /// cache hit is answered as the back-end answered.
    pub ok_text: String,
}

#[derive(Debug)]
struct Entry {
    user: String,
    digest: CredentialDigest,
    parked: Parked,
    since: Duration,
}

/// Parked sessions, oldest first.
#[derive(Debug)]
pub struct SessionCache {
    capacity: usize,
    max_idle: Duration,
    entries: VecDeque<Entry>,
    stats: CacheStats,
}

impl SessionCache {
    pub fn new(capacity: usize, max_idle: Duration) -> Self {
        SessionCache {
            capacity,
            max_idle,
            entries: VecDeque::new(),
            stats: CacheStats::default(),
        }
    }

    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Closes entries idle longer than the bound at `now`; returns their connections.
    pub fn expire(&mut self, now: Duration) -> Vec<ConnId> {
        let max_idle = self.max_idle;
        let mut gone = Vec::new();
        self.entries.retain(|e| {
            let keep = now.saturating_sub(e.since) <= max_idle;
            if !keep {
                gone.push(e.parked.conn);
            }
            keep
        });
        self.stats.expired += gone.len() as u64;
        gone
    }

    /// Parks a session; returns the connections to close (expired or evicted entries,
    /// or `parked` itself when the cache holds nothing).
    pub fn park(
        &mut self,
        user: &str,
        digest: CredentialDigest,
        parked: Parked,
        now: Duration,
    ) -> Vec<ConnId> {
        let mut close = self.expire(now);
        if self.capacity == 0 {
            close.push(parked.conn);
            return close;
        }
        while self.entries.len() >= self.capacity {
            match self.entries.pop_front() {
                Some(e) => {
                    self.stats.evicted += 1;
                    close.push(e.parked.conn);
                }
                None => break,
            }
        }
        self.stats.parked += 1;
        self.entries.push_back(Entry {
            user: user.to_string(),
            digest,
            parked,
            since: now,
        });
        close
    }

    /// The most recently parked session of `user` whose credentials match `digest`, taken
    /// out of the cache. A miss leaves every entry where it was.
    pub fn take(&mut self, user: &str, digest: &CredentialDigest, now: Duration) -> Lookup {
        let expired = self.expire(now);
        let found = self
            .entries
            .iter()
            .rposition(|e| e.user == user && e.digest.matches(digest));
        let parked = found.and_then(|i| self.entries.remove(i)).map(|e| e.parked);
        if parked.is_some() {
            self.stats.hits += 1;
        } else {
            self.stats.misses += 1;
        }
        Lookup { parked, expired }
    }

    /// A taken entry turned out unusable (its connection died): count it as a miss.
    pub fn unusable(&mut self) {
        self.stats.hits = self.stats.hits.saturating_sub(1);
        self.stats.misses += 1;
    }

    /// Shutdown: every parked connection, to close.
    pub fn drain(&mut self) -> Vec<ConnId> {
        self.entries.drain(..).map(|e| e.parked.conn).collect()
    }
}

/// The answer of [`SessionCache::take`].
#[derive(Debug)]
pub struct Lookup {
    pub parked: Option<Parked>,
    /// Entries that expired on the way: close them.
    pub expired: Vec<ConnId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(conn: ConnId) -> Parked {
        Parked {
            conn,
            ok_text: "OK LOGIN completed".into(),
        }
    }

    #[test]
    fn digest_depends_on_key_user_and_password() {
        let k = CacheKey::from_seed(1);
        let d = k.digest("alice", "secret");
        assert!(d.matches(&k.digest("alice", "secret")));
        assert!(!d.matches(&k.digest("alice", "Secret")));
        assert!(!d.matches(&k.digest("alic", "esecret")));
        assert!(!d.matches(&CacheKey::from_seed(2).digest("alice", "secret")));
        assert_eq!(format!("{d:?}"), "CredentialDigest(..)");
    }

    #[test]
    fn take_needs_same_user_and_credentials() {
        let k = CacheKey::from_seed(7);
        let mut c = SessionCache::new(4, Duration::from_secs(60));
        assert!(c
            .park("alice", k.digest("alice", "secret"), p(1), Duration::ZERO)
            .is_empty());
        let now = Duration::from_secs(1);
        assert!(c
            .take("bob", &k.digest("bob", "secret"), now)
            .parked
            .is_none());
        assert!(c
            .take("alice", &k.digest("alice", "wrong"), now)
            .parked
            .is_none());
        assert_eq!(c.len(), 1);
        let hit = c.take("alice", &k.digest("alice", "secret"), now);
        assert_eq!(hit.parked.map(|p| p.conn), Some(1));
        assert!(c.is_empty());
        let s = c.stats();
        assert_eq!((s.parked, s.hits, s.misses), (1, 1, 2));
    }

    #[test]
    fn bounded_in_size_and_idle_time() {
        let k = CacheKey::from_seed(7);
        let mut c = SessionCache::new(2, Duration::from_secs(10));
        let t = Duration::from_secs;
        assert!(c.park("a", k.digest("a", "x"), p(1), t(0)).is_empty());
        assert!(c.park("b", k.digest("b", "x"), p(2), t(1)).is_empty());
        // Full: the oldest goes.
        assert_eq!(c.park("c", k.digest("c", "x"), p(3), t(2)), vec![1]);
        assert_eq!(c.len(), 2);
        // b idles past the bound by t(12); c (parked at 2) does not.
        let l = c.take("c", &k.digest("c", "x"), t(12));
        assert_eq!(l.expired, vec![2]);
        assert_eq!(l.parked.map(|p| p.conn), Some(3));
        assert!(c.park("d", k.digest("d", "x"), p(4), t(13)).is_empty());
        assert_eq!(c.drain(), vec![4]);
        let s = c.stats();
        assert_eq!((s.evicted, s.expired), (1, 1));
        let mut none = SessionCache::new(0, Duration::from_secs(10));
        assert_eq!(none.park("a", k.digest("a", "x"), p(9), t(0)), vec![9]);
    }
}
