//! What every sans-IO server endpoint shares: the session contract, the limits and the
//! context a session is born with.
//!
//! An endpoint never touches a socket or a clock. The adapter (the tokio lab, the
//! in-process driver, a fuzz target) feeds it bytes and the current time and drains what
//! it wants done, in order, with [`ServerSession::poll_output`].

use std::sync::Arc;
use std::time::Duration;

use crate::budget::MemoryBudget;
use crate::profile::Profile;
use crate::world::World;

/// One thing the adapter must do for a session, in the order polled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send these bytes to the peer.
    Write(Vec<u8>),
    /// Everything written so far has been flushed; now run the server side of a TLS
    /// handshake on this connection and call [`ServerSession::handle_tls_established`].
    StartTls,
    /// Flush what was written, then close the connection.
    Close,
}

/// Limits every session enforces on what a peer may make it hold.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Longest command line accepted, CRLF included (bytes).
    pub max_line: usize,
    /// Largest literal (IMAP `{n}`) accepted; a bigger one is refused before any buffer is
    /// sized for it.
    pub max_literal: usize,
    /// A client silent for this long is told goodbye and disconnected.
    #[serde(with = "duration_secs")]
    pub idle_timeout: Duration,
    /// A command (its line, and any literal with it) must arrive whole within this time
    /// of its first byte, so a client that trickles bytes cannot hold a session open by
    /// never being silent long enough for the idle timeout.
    #[serde(with = "duration_secs")]
    pub line_timeout: Duration,
    /// Connections served at once per listener (enforced by the adapter).
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 8 * 1024,
            max_literal: 16 * 1024 * 1024,
            // RFC 3501 5.4: an autologout timer must be at least 30 minutes; RFC 1939 3:
            // at least 10 minutes. Tests shorten it.
            idle_timeout: Duration::from_secs(30 * 60),
            line_timeout: Duration::from_secs(120),
            max_connections: 1024,
        }
    }
}

mod duration_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

/// The state of the transport under a session, as the adapter knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Transport {
    /// The connection is already inside TLS (implicit TLS, or after STARTTLS/STLS).
    pub tls_active: bool,
    /// The adapter can run a TLS handshake if the client asks (STARTTLS / STLS).
    pub starttls_available: bool,
}

/// Everything a server session is created with.
#[derive(Debug, Clone)]
pub struct SessionContext {
    pub world: Arc<World>,
    pub profile: Arc<Profile>,
    pub limits: Limits,
    pub transport: Transport,
    /// Seeds the session's challenges and timestamps: the same seed replays byte for byte.
    pub seed: u64,
    /// Wall-clock time at which the session clock reads zero, in seconds since the Unix
    /// epoch (used for dates shown on the wire, such as the APOP timestamp).
    pub epoch_secs: u64,
    /// Pending literal and message bytes, shared by every session of a lab (issue #14);
    /// unlimited unless the adapter shares one.
    pub budget: MemoryBudget,
}

impl SessionContext {
    pub fn new(world: Arc<World>, profile: Arc<Profile>) -> Self {
        SessionContext {
            world,
            profile,
            limits: Limits::default(),
            transport: Transport::default(),
            seed: 0,
            epoch_secs: 0,
            budget: MemoryBudget::unlimited(),
        }
    }
}

/// The contract every sans-IO server endpoint keeps.
///
/// `now` is time since the session started, as the adapter's clock (real or virtual) says.
pub trait ServerSession: Send {
    /// Bytes the peer sent. May hold part of a command or several pipelined commands.
    fn handle_input(&mut self, now: Duration, input: &[u8]);
    /// The peer closed its side (EOF) or the connection broke.
    fn handle_eof(&mut self, now: Duration);
    /// The adapter's timer fired; the session checks its own deadlines against `now`.
    fn handle_timeout(&mut self, now: Duration);
    /// The lab is shutting down: say goodbye (IMAP `* BYE`, POP3 `-ERR`) and close. The
    /// default closes at once; endpoints override it to be polite.
    fn handle_shutdown(&mut self, _now: Duration) {}
    /// Something the session waits on outside its connection happened (its
    /// [`Waker`](crate::notify::Waker) was woken): a parked call may be ready. The
    /// default does nothing: only sessions that hand out a waker are woken.
    fn handle_wake(&mut self, _now: Duration) {}
    /// The TLS handshake asked for by [`Output::StartTls`] finished.
    fn handle_tls_established(&mut self, now: Duration);
    /// The next thing to do, if any.
    fn poll_output(&mut self) -> Option<Output>;
    /// When [`ServerSession::handle_timeout`] should next be called.
    fn poll_timeout(&self) -> Option<Duration>;
    /// True once the session has ended (after [`Output::Close`] was polled).
    fn is_closed(&self) -> bool;
}

/// A server session's idle timer (RFC 3501 5.4, RFC 1939 3) is due 600 s after `now`, the
/// test profiles' setting; it does nothing a moment before, then ends the session with
/// `goodbye` and a close, and no timer is left.
#[cfg(test)]
pub(crate) fn assert_idle_autologout(s: &mut dyn ServerSession, now: Duration, goodbye: &[u8]) {
    let outputs = |s: &mut dyn ServerSession| -> Vec<Output> {
        std::iter::from_fn(|| s.poll_output()).collect()
    };
    let deadline = s.poll_timeout().unwrap();
    assert_eq!(deadline, now + Duration::from_secs(600));
    s.handle_timeout(deadline - Duration::from_millis(1));
    assert_eq!(outputs(s), []);
    s.handle_timeout(deadline);
    assert_eq!(
        outputs(s),
        vec![Output::Write(goodbye.to_vec()), Output::Close]
    );
    assert!(s.is_closed());
    assert_eq!(s.poll_timeout(), None);
}
