//! An Exchange 2000-style IMAP4/POP3 **front-end** that relays clients to back-end mail
//! servers over a pool of reused connections, sans-IO. It reproduces Microsoft KB 306874:
//! before SP1 the front-end advertised NTLM (SPA) although NTLM cannot work through a
//! pool that sends each request of an exchange on whatever connection is free; from SP1
//! on NTLM is no longer advertised. Basic logins work in both.
//!
//! # Model
//!
//! * **Before authentication the front-end answers by itself**: the greeting, IMAP
//!   CAPABILITY (`IMAP4rev1 IMAP4 IDLE LITERAL+`, as it relays them, plus `AUTH=NTLM` only
//!   when [`FrontendProfile::advertise_ntlm`]), NOOP, LOGOUT; POP3 CAPA (`USER`, `TOP`,
//!   `UIDL`, and `SASL NTLM` only when advertised), `AUTH` without an argument listing the
//!   mechanisms ([MS-POP3] 2.2.1: `+OK`, one per line, `.`), USER, QUIT; and the empty
//!   first continuation of `AUTHENTICATE NTLM` / `AUTH NTLM` without initial response
//!   (IMAP bare `+` as [MS-OXIMAP4] 2.2.1 prints it, POP3 `+ ` as [MS-OXPOP3] 2.2.1).
//!   Anything else before authentication (other commands, garbage, over-long lines) gets
//!   `BAD` / `-ERR` from the front-end and never reaches a back-end.
//! * **Back-end connections** are plain (not authenticated) sessions to a back-end
//!   server, greeted and waiting in the [`Pool`]. The pool keeps `size` idle connections
//!   warm; a request that finds none idle opens one at once (the pool never makes a client
//!   wait); a connection returned to a full idle list is closed.
//! * **Basic authentication** (IMAP `LOGIN`, `AUTHENTICATE PLAIN`; POP3 `USER`+`PASS`,
//!   where the front-end answers USER itself and sends USER and PASS at PASS, and `AUTH
//!   PLAIN`) takes a connection from the pool. On success the connection is **leased** to
//!   the client session until the session ends: from then on bytes are relayed both ways
//!   unparsed (the client's tags are kept: every request the front-end makes carries the
//!   client's tag), and when the session ends the connection is closed and the pool opens
//!   a replacement (with the session cache on, an IMAP LOGOUT may park it instead; see
//!   below). On failure the back-end's refusal is relayed and the connection goes
//!   back to the pool. IMAP LOGIN credentials are sent as quoted strings; credentials that
//!   do not fit one (8-bit, CR, LF) are refused by the front-end with `NO`.
//! * **NTLM with [`SaslRouting::PerStep`]** (the bug): each client SASL step carrying
//!   data is a separate request on whichever pooled connection the reuse policy picks, as
//!   a fresh exchange: `tag AUTHENTICATE NTLM <data>` (POP3 `AUTH NTLM <data>`; towards an
//!   IMAP back-end without SASL-IR, `AUTHENTICATE NTLM` and the data after its `+`). A `+
//!   <challenge>` reply is relayed to the client and the connection is reset (`*`, whose
//!   reply is swallowed) before it returns to the pool. The client's AUTHENTICATE message
//!   therefore reaches a back-end as the first message of a new exchange; the back-end's
//!   real NTLM acceptor refuses it (it expects a NEGOTIATE) and its `NO` / `-ERR` is what
//!   the client gets. The front-end decides nothing about NTLM itself. A step sent to a
//!   different connection than the previous step of the same exchange raises
//!   [`Finding::ContextSplit`].
//! * **NTLM with [`SaslRouting::Pinned`]**: all steps of an exchange go to one connection,
//!   so NTLM succeeds, and that connection is then leased.
//! * A client `*` ends its exchange with `NO` from the front-end (a pinned back-end
//!   exchange is reset first); invalid base64 gets `BAD` / `-ERR`.
//!
//! # Session cache (`PoolPolicy::keep_sessions`, profile `session-cache`)
//!
//! **The harness's own improvement, not something Exchange or a KB article describes**:
//! the Exchange 2000 front-end closes the back-end connection when the client session
//! ends, so every client session costs the back-end a connect, a greeting and a login.
//! With `keep_sessions` (IMAP only) the front-end keeps back-end sessions authenticated by
//! a basic `LOGIN` across client sessions:
//!
//! * After such a login the front-end follows the leased traffic in both directions with a
//!   line and literal scanner ([`stream_scanner::StreamScanner`]; it holds at most one line of 256
//!   octets, literal data and longer lines pass through as they come), counting the
//!   client's tagged commands and the back-end's tagged completions. A client `tag LOGOUT`
//!   at a command boundary is not relayed: once every earlier command has its completion
//!   (at once, unless the client pipelined), the front-end answers `* BYE` and `tag OK
//!   LOGOUT completed.` itself and asks the adapter to park the connection
//!   (`BackendIo::Park`). Completions that do not come within 5 seconds (a LOGOUT sent in
//!   the middle of IDLE) end the wait: the client is answered and the connection closed.
//! * The back-end session is parked as it was, possibly with a mailbox selected. The next
//!   client that gets it from the cache has `FE.RESET UNSELECT` (RFC 3691: leave the
//!   selected mailbox **without expunging**; `\Deleted` messages stay) sent ahead of its
//!   first command, in the same write; every octet the back-end sends up to the tagged
//!   reply to `FE.RESET` (`OK`, or `BAD` when nothing was selected) is the previous
//!   session's and is swallowed. Any other reply ends the client session with `* BYE`.
//!   The reset thus costs no round trip of its own.
//! * The session is only kept when the back-end advertises `UNSELECT` (in its greeting's
//!   `[CAPABILITY]` code, or in the LOGIN completion's) and the client never used the tag
//!   `FE.RESET` itself; otherwise the LOGOUT is relayed as before and the connection
//!   closes. A back-end with only RFC 3501 could be reset with CLOSE, but CLOSE expunges,
//!   so it is not used.
//! * Parked sessions wait in a [`SessionCache`] shared by the front-end's client sessions,
//!   keyed by the user name exactly as the client typed it, with a **digest** of the
//!   credentials (HMAC-MD5 under a key drawn from the front-end's seed), never the password.
//!   A client `LOGIN` first asks the cache (`BackendIo::CacheLookup`): a parked session of
//!   the same user with an equal digest is leased at once, and the client gets the
//!   back-end's own completion text (`tag OK LOGIN completed`) with no back-end LOGIN. Any
//!   other LOGIN (another user, another password) is a miss and goes to a pooled
//!   connection and the back-end, as without the cache, so a wrong password is refused by
//!   the back-end and the parked entries stay as they are. The trace says `session cache:
//!   hit (user alice): be#N, no back-end LOGIN` or `session cache: miss (user alice)` (the
//!   same line whether the user has no entry or other credentials).
//! * Bounds: at most `cache_size` entries (parking into a full cache closes the oldest)
//!   and `cache_idle_secs` of idling, checked whenever the cache is used, on the clock of
//!   the session using it; the adapters close every entry at shutdown. A parked session
//!   whose back-end closed meanwhile is closed when found and counts as a miss.
//! * What it does not model: AUTHENTICATE (PLAIN or NTLM) logins are never parked or
//!   served from the cache; a password changed in the directory after parking is not
//!   noticed until the entry expires (the back-end is not asked again on a hit).
//! * **POP3 sessions are never kept**: QUIT is what commits a POP3 session's deletions
//!   (RFC 1939 6, the UPDATE state) and ends it, and POP3 has no way back to the
//!   AUTHORIZATION state, so a POP3 client session through `session-cache` behaves
//!   exactly as through `exchange2000-sp1`.
//!
//! # Pool reuse across client sessions (`PoolPolicy::unauthenticate`, profile `pool-unauthenticate`)
//!
//! **The harness's own model, like the session cache**: without it each client session
//! costs the back-end a connection (and over a TLS hop a handshake), because IMAP has no
//! way back from the authenticated state but `UNAUTHENTICATE` (RFC 8437). With
//! `unauthenticate` (IMAP only) a connection serves client sessions of any users in turn:
//!
//! * After any successful login (LOGIN or AUTHENTICATE) the leased traffic is followed with
//!   the same scanner as the session cache's, and a client `tag LOGOUT` at a command
//!   boundary is answered by the front-end (`* BYE`, `tag OK LOGOUT completed.`) once every
//!   earlier command has its completion. The connection, still authenticated as the
//!   client's user, goes back to the pool's idle list (`BackendIo::Recycle`; a full idle
//!   list closes it). The trace says `be#N .. pool: recycled (user alice)`.
//! * The grant that hands a recycled connection out again says so
//!   ([`Decision::Granted`]`{ reset: true }`), and the session that gets it writes
//!   `FE.RESET UNAUTHENTICATE` in the same write as its own first request (a LOGIN, an
//!   AUTHENTICATE): RFC 8437 3 allows the pipelining when no SASL security layer is
//!   active, and none of the mechanisms relayed here negotiates one. Every octet the
//!   back-end sends up to the tagged reply to `FE.RESET` is swallowed (the reply reader
//!   never relays untagged data before a login anyway), so no byte of the earlier session
//!   reaches the new client, and the reset costs no round trip of its own. A reply other
//!   than `OK` (RFC 8437 allows only OK or BAD) closes the connection and the request
//!   goes to another connection from the pool (at most twice in a row for one request;
//!   then the client gets `NO [UNAVAILABLE]`). A back-end that says BYE and closes instead
//!   (RFC 8437 3 allows it) fails the request with `NO [UNAVAILABLE]`, as any lost
//!   back-end does. A connection taken for a request it then does not carry is closed
//!   rather than returned unreset.
//! * A connection is recycled only when the back-end advertises `UNAUTHENTICATE` (in its
//!   greeting's `[CAPABILITY]` code, or in the login completion's: RFC 8437 3 lets a server
//!   offer it after login only) and the client neither used the tag `FE.RESET` nor sent
//!   `UNAUTHENTICATE` itself (RFC 8437 8: a proxy that relays the client's own
//!   UNAUTHENTICATE lets the client log in past it; the front-end relays it, since the
//!   back-end still checks the next login, but never reuses such a connection). Otherwise
//!   the LOGOUT is relayed and the connection closes, as without the policy. A client
//!   `UNAUTHENTICATE` also keeps a session out of the session cache.
//! * With `keep_sessions` as well, a LOGIN's session is parked for its user as before; only
//!   sessions the cache does not take (AUTHENTICATE logins) are recycled.
//! * POP3 is unchanged: QUIT commits the session's deletions and POP3 has no way back to
//!   the AUTHORIZATION state, so every POP3 client session still closes its connection.
//! * [`PoolStats`] counts `opened` connections against `leased` (authenticated client
//!   sessions), `recycled` and `reset_grants`.
//!
//! # Sans-IO shape
//!
//! [`FrontendSession`] is the client-facing [`ServerSession`](crate::ServerSession).
//! Back-end work goes out through [`FrontendSession::poll_backend`] as [`BackendIo`]; the
//! adapter answers with `handle_backend_granted`, `handle_backend_input` and
//! `handle_backend_closed`. The session decides when a back-end reply is complete (IMAP:
//! the tagged line for the tag it sent, literals counted; POP3: the status line; after the
//! lease the stream is relayed as it comes). The [`Director`] decides every request but
//! `Send` for all client sessions of one front-end (grants from the [`Pool`], releases,
//! leases, parks in the [`SessionCache`], discards, replacements); the adapters only carry
//! bytes and do what it says through [`Links`]: [`inprocess::InProcessFrontend`] runs
//! back-end `ServerSession`s in the same process, the lab's front-end host holds sockets.
//!
//! # Resource bounds
//!
//! Before authentication the client's input goes through the IMAP [`Framer`] (also for
//! POP3, in line mode): lines up to `Limits::max_line`, literals no longer than a line.
//! Input that arrives while a back-end request is in flight is held up to four lines'
//! worth (at least 4 KiB); beyond that the session says goodbye and closes. Input
//! pipelined in the same read as the login waits in the framer and follows the login to
//! the leased connection (the adapter's read size bounds it). Back-end replies before the
//! lease are read line by line up to [`backend_reply::MAX_REPLY_LINE`]; literal octets in them
//! are counted, not buffered. A broken or closed back-end fails the client's request with
//! `NO [UNAVAILABLE]` / `-ERR [SYS/TEMP]` and its connection is discarded.
//!
//! [`Framer`]: crate::imap::Framer
//!
//! Every back-end interaction is traced as one short deterministic line (`be#2 <- a2
//! AUTHENTICATE NTLM <NTLM AUTHENTICATE user=alice>`, `be#1 <- * (reset before returning
//! to the pool)`): SASL data is described, never shown in base64, and passwords never
//! appear.

pub mod backend_reply;
pub mod cache;
pub mod director;
pub mod inprocess;
pub mod pool;
pub mod sasl_trace;
pub mod session;
pub mod stream_scanner;

#[cfg(test)]
mod tests;

pub use cache::{CacheKey, CacheStats, CredentialDigest, Parked, SessionCache};
pub use director::{Decision, Director, Links, SessionId};
pub use inprocess::InProcessFrontend;
pub use pool::{Grant, Pool, PoolPolicy, PoolStats, Reuse};
pub use session::{BackendFeatures, FrontendSession};

use serde::{Deserialize, Serialize};

/// Names a back-end connection (`be#N` in the trace). The pool numbers from 1.
pub type ConnId = u64;

/// How the steps of one client SASL exchange are routed to back-end connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SaslRouting {
    /// Each step is a separate request on whichever connection the pool hands out.
    PerStep,
    /// All steps go to one connection.
    Pinned,
}

/// Front-end behaviour as data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontendProfile {
    pub name: String,
    pub description: String,
    /// `AUTH=NTLM` in CAPABILITY, `NTLM` in the POP3 AUTH listing and `SASL NTLM` in CAPA.
    pub advertise_ntlm: bool,
    pub sasl_routing: SaslRouting,
    pub pool: PoolPolicy,
    /// Text after `* OK ` of the IMAP greeting.
    pub imap_greeting: String,
    /// Text after `+OK ` of the POP3 greeting.
    pub pop3_greeting: String,
}

/// Names accepted by [`FrontendProfile::by_name`].
pub const FRONTEND_PROFILE_NAMES: &[&str] = &[
    "exchange2000-rtm",
    "exchange2000-sp1",
    "affinity",
    "per-session",
    "session-cache",
    "pool-unauthenticate",
];

const IMAP_GREETING: &str =
    "Microsoft Exchange 2000 IMAP4rev1 server version 6.0.6249.0 (fe.example.test) ready.";
const POP3_GREETING: &str =
    "Microsoft Exchange 2000 POP3 server version 6.0.6249.0 (fe.example.test) ready.";

impl FrontendProfile {
    pub fn by_name(name: &str) -> Option<FrontendProfile> {
        let pooled = PoolPolicy {
            size: 4,
            reuse: Reuse::RoundRobin,
            per_session: false,
            keep_sessions: false,
            cache_size: 16,
            cache_idle_secs: 60,
            unauthenticate: false,
        };
        let (description, advertise_ntlm, sasl_routing, pool) = match name {
            "exchange2000-rtm" => (
                "Exchange 2000 front-end before SP1: advertises NTLM, but routes each SASL \
                 step to any pooled back-end connection (KB 306874)",
                true,
                SaslRouting::PerStep,
                pooled,
            ),
            "exchange2000-sp1" => (
                "Exchange 2000 SP1 front-end: same pool, NTLM no longer advertised",
                false,
                SaslRouting::PerStep,
                pooled,
            ),
            "affinity" => (
                "Pooled front-end that keeps a SASL exchange on one back-end connection",
                true,
                SaslRouting::Pinned,
                pooled,
            ),
            "per-session" => (
                "No pool reuse: each client session gets back-end connections of its own",
                true,
                SaslRouting::Pinned,
                PoolPolicy {
                    per_session: true,
                    ..pooled
                },
            ),
            "session-cache" => (
                "The SP1 pool plus a session cache (the harness's own model, not Exchange's): \
                 an IMAP back-end session authenticated by LOGIN is kept after the client's \
                 LOGOUT and serves the next LOGIN of the same user with the same password",
                false,
                SaslRouting::PerStep,
                PoolPolicy {
                    keep_sessions: true,
                    ..pooled
                },
            ),
            "pool-unauthenticate" => (
                "The SP1 pool reusing connections across client sessions (the harness's own \
                 model, not Exchange's): an IMAP client's LOGOUT is answered by the \
                 front-end, and the back-end connection goes back to the pool to be reset \
                 with UNAUTHENTICATE (RFC 8437) ahead of its next request",
                false,
                SaslRouting::PerStep,
                PoolPolicy {
                    unauthenticate: true,
                    ..pooled
                },
            ),
            _ => return None,
        };
        Some(FrontendProfile {
            name: name.to_string(),
            description: description.to_string(),
            advertise_ntlm,
            sasl_routing,
            pool,
            imap_greeting: IMAP_GREETING.to_string(),
            pop3_greeting: POP3_GREETING.to_string(),
        })
    }
}

/// What a front-end session asks of the adapter, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendIo {
    /// A connection from the pool, please (answer: `handle_backend_granted`).
    Acquire,
    /// Write these bytes to the back-end connection.
    Send { conn: ConnId, bytes: Vec<u8> },
    /// The connection is back in its initial state: return it to the pool.
    Release { conn: ConnId },
    /// The connection now belongs to this client session until it ends (bookkeeping).
    Lease { conn: ConnId },
    /// Close the connection; the pool replaces it.
    Discard { conn: ConnId },
    /// Pool reuse across client sessions: the client logged out and the connection is
    /// still authenticated as its user; back to the pool, to be reset with
    /// `UNAUTHENTICATE` ahead of its next request.
    Recycle { conn: ConnId },
    /// Session cache: a parked session of `user` authenticated with these credentials,
    /// please (answer: `handle_cache_lookup`).
    CacheLookup {
        user: String,
        digest: CredentialDigest,
    },
    /// Session cache: the connection is authenticated as `user` and back in the
    /// authenticated state (nothing selected); park it.
    Park {
        conn: ConnId,
        user: String,
        digest: CredentialDigest,
        /// Text after the tag of the back-end's LOGIN completion.
        ok_text: String,
    },
}

/// Something the front-end did that explains a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Finding {
    /// An NTLM step went to a different back-end connection than the previous step of the
    /// same exchange: the back-end that issued the challenge never sees the answer.
    ContextSplit { first: ConnId, then: ConnId },
}

/// Fuzz entry: raw client bytes into an `exchange2000-rtm` front-end with real back-ends
/// on the default lab. The first byte picks the protocol (bit 0: POP3) and, with bit 4,
/// the `session-cache` front-end instead (bit 5 without bit 4: `pool-unauthenticate`
/// with a pool of one over back-ends offering UNAUTHENTICATE); the rest is cut at
/// the first `0x00` into the inputs of two client sessions, fed interleaved in chunks
/// (bits 1-3 of the first byte pick the chunk size; bits 6-7 both set: the front-end
/// records its trace). Checks: no
/// panic, bounded output, and no mail of one lab user in a session authenticated as
/// another (or not authenticated at all).
pub fn fuzz_frontend_session(data: &[u8]) {
    let _authenticated = inprocess::fuzz_two_sessions(data);
}
