//! A closed-loop load generator: N clients, each running whole sessions back to back
//! against one IMAP or POP3 server, for a bounded time and a bounded number of sessions.
//! Every session's latency is recorded; failures are counted by kind.
//!
//! IMAP session: greeting, `LOGIN`, `SELECT INBOX`, `FETCH 1:* (FLAGS BODY.PEEK[])`,
//! `LOGOUT`. POP3 session: greeting, `USER`, `PASS`, `STAT`, `RETR 1`, `QUIT`.
//!
//! Connection storms (`connect-close`, `greet-close`, `connect-reset`, either protocol):
//! each client opens a connection and closes it at once, after reading the greeting, or
//! abortively (RST), back to back; latency is the time to connect (and greet).
//!
//! Server replies are read with bounded lines and literals are skipped without being
//! buffered, so a hostile or broken server costs a `protocol` error, never memory.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::Protocol;

/// Longest reply line read before the server is taken to be broken.
const MAX_LINE: u64 = 64 * 1024;
/// Largest IMAP literal skipped.
const MAX_LITERAL: u64 = 64 * 1024 * 1024;
/// Reply lines read for one command before the server is taken to be broken.
const MAX_LINES_PER_REPLY: usize = 100_000;
/// Longest run accepted.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Most concurrent clients.
pub const MAX_CLIENTS: usize = 10_000;
/// Most latencies kept (a sample beyond this is still counted, not stored).
const MAX_SAMPLES: usize = 10_000_000;

/// The session shapes the generator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// IMAP: LOGIN, SELECT INBOX, FETCH 1:* (FLAGS BODY.PEEK[]), LOGOUT.
    ImapLoginSelectFetchLogout,
    /// POP3: USER, PASS, STAT, RETR 1, QUIT.
    Pop3LoginStatRetrQuit,
    /// Storm, either protocol: connect and close at once, the greeting unread.
    ConnectClose,
    /// Storm, either protocol: connect, read the greeting, close.
    GreetClose,
    /// Storm, either protocol: connect and close abortively (SO_LINGER 0: an RST, no FIN).
    ConnectReset,
}

pub const SESSION_NAMES: &[&str] = &[
    "login-select-fetch-logout",
    "login-stat-retr-quit",
    "connect-close",
    "greet-close",
    "connect-reset",
];

impl SessionKind {
    pub fn by_name(name: &str) -> Option<SessionKind> {
        match name {
            "login-select-fetch-logout" => Some(SessionKind::ImapLoginSelectFetchLogout),
            "login-stat-retr-quit" => Some(SessionKind::Pop3LoginStatRetrQuit),
            "connect-close" => Some(SessionKind::ConnectClose),
            "greet-close" => Some(SessionKind::GreetClose),
            "connect-reset" => Some(SessionKind::ConnectReset),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SessionKind::ImapLoginSelectFetchLogout => SESSION_NAMES[0],
            SessionKind::Pop3LoginStatRetrQuit => SESSION_NAMES[1],
            SessionKind::ConnectClose => SESSION_NAMES[2],
            SessionKind::GreetClose => SESSION_NAMES[3],
            SessionKind::ConnectReset => SESSION_NAMES[4],
        }
    }

    /// The protocol the session speaks; `None` for the storms, which fit either.
    pub fn protocol(self) -> Option<Protocol> {
        match self {
            SessionKind::ImapLoginSelectFetchLogout => Some(Protocol::Imap),
            SessionKind::Pop3LoginStatRetrQuit => Some(Protocol::Pop3),
            SessionKind::ConnectClose | SessionKind::GreetClose | SessionKind::ConnectReset => None,
        }
    }

    /// A connection storm: no login, one connection per "session".
    pub fn is_storm(self) -> bool {
        self.protocol().is_none()
    }

    /// The default session for a protocol.
    pub fn for_protocol(protocol: Protocol) -> SessionKind {
        match protocol {
            Protocol::Imap => SessionKind::ImapLoginSelectFetchLogout,
            Protocol::Pop3 => SessionKind::Pop3LoginStatRetrQuit,
        }
    }

    /// The commands of one session for this user, CRLF included.
    pub fn steps(self, user: &str, password: &str) -> Vec<Vec<u8>> {
        let lines: Vec<String> = match self {
            SessionKind::ImapLoginSelectFetchLogout => vec![
                format!("a LOGIN {} {}", imap_astring(user), imap_astring(password)),
                "b SELECT INBOX".into(),
                "c FETCH 1:* (FLAGS BODY.PEEK[])".into(),
                "d LOGOUT".into(),
            ],
            SessionKind::Pop3LoginStatRetrQuit => vec![
                format!("USER {user}"),
                format!("PASS {password}"),
                "STAT".into(),
                "RETR 1".into(),
                "QUIT".into(),
            ],
            SessionKind::ConnectClose | SessionKind::GreetClose | SessionKind::ConnectReset => {
                Vec::new()
            }
        };
        lines
            .into_iter()
            .map(|l| format!("{l}\r\n").into_bytes())
            .collect()
    }
}

/// An atom when it can be one, else a quoted string.
fn imap_astring(s: &str) -> String {
    let atom = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_graphic() && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\')
        });
    if atom {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// Why a session failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// The TCP connection could not be opened.
    Connect,
    /// One operation (connect, or a command and its whole reply) took longer than the
    /// per-operation timeout.
    Timeout,
    /// The server refused: IMAP `NO` (or a `BYE` greeting), POP3 `-ERR`.
    Refused,
    /// Anything else: `BAD`, an unreadable or oversized reply, a connection closed early.
    Protocol,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 4] = [
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::Refused,
        ErrorKind::Protocol,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Refused => "NO/-ERR",
            ErrorKind::Protocol => "protocol",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct SessionError {
    pub kind: ErrorKind,
    pub detail: String,
}

fn err(kind: ErrorKind, detail: impl Into<String>) -> SessionError {
    SessionError {
        kind,
        detail: detail.into(),
    }
}

/// A line, CRLF stripped, bounded by [`MAX_LINE`].
async fn read_line(r: &mut BufReader<TcpStream>, buf: &mut Vec<u8>) -> Result<(), SessionError> {
    buf.clear();
    let n = (&mut *r)
        .take(MAX_LINE)
        .read_until(b'\n', buf)
        .await
        .map_err(|e| err(ErrorKind::Protocol, format!("read: {e}")))?;
    if n == 0 {
        return Err(err(ErrorKind::Protocol, "connection closed early"));
    }
    if buf.last() != Some(&b'\n') {
        return Err(err(
            ErrorKind::Protocol,
            "reply line too long or cut off by a close",
        ));
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(())
}

/// The byte count of a literal announced at the end of an IMAP line: `{N}` or `{N+}`.
fn literal_len(line: &[u8]) -> Option<u64> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = inner.get(open + 1..)?;
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn text(line: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(line).into_owned();
    if s.len() > 200 {
        let mut cut = 200;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// Reads an IMAP reply up to the tagged line for `tag`; literals are skipped unread.
/// A `* BYE` is a refusal unless the command was LOGOUT.
async fn imap_reply(
    r: &mut BufReader<TcpStream>,
    tag: &[u8],
    logout: bool,
) -> Result<(), SessionError> {
    let mut line = Vec::with_capacity(256);
    for _ in 0..MAX_LINES_PER_REPLY {
        read_line(r, &mut line).await?;
        if let Some(rest) = line.strip_prefix(tag).and_then(|r| r.strip_prefix(b" ")) {
            let word_end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
            let status = rest.get(..word_end).unwrap_or_default();
            return if status.eq_ignore_ascii_case(b"OK") {
                Ok(())
            } else if status.eq_ignore_ascii_case(b"NO") {
                Err(err(ErrorKind::Refused, text(&line)))
            } else {
                Err(err(ErrorKind::Protocol, text(&line)))
            };
        }
        if !logout && line.starts_with(b"* BYE") {
            return Err(err(ErrorKind::Refused, text(&line)));
        }
        // A line may announce a literal, after which the same response goes on.
        let mut literals = 0;
        while let Some(n) = literal_len(&line) {
            literals += 1;
            if n > MAX_LITERAL || literals > 1000 {
                return Err(err(ErrorKind::Protocol, format!("literal of {n} bytes")));
            }
            let skipped = tokio::io::copy(&mut (&mut *r).take(n), &mut tokio::io::sink())
                .await
                .map_err(|e| err(ErrorKind::Protocol, format!("read: {e}")))?;
            if skipped != n {
                return Err(err(
                    ErrorKind::Protocol,
                    "connection closed inside a literal",
                ));
            }
            read_line(r, &mut line).await?;
        }
    }
    Err(err(ErrorKind::Protocol, "reply without end"))
}

/// Reads a POP3 reply: the status line, and for a multi-line command the lines up to `.`.
async fn pop3_reply(r: &mut BufReader<TcpStream>, multi: bool) -> Result<(), SessionError> {
    let mut line = Vec::with_capacity(256);
    read_line(r, &mut line).await?;
    if line.starts_with(b"-ERR") {
        return Err(err(ErrorKind::Refused, text(&line)));
    }
    if !line.starts_with(b"+OK") {
        return Err(err(ErrorKind::Protocol, text(&line)));
    }
    if !multi {
        return Ok(());
    }
    for _ in 0..MAX_LINES_PER_REPLY {
        read_line(r, &mut line).await?;
        if line == b"." {
            return Ok(());
        }
    }
    Err(err(ErrorKind::Protocol, "multi-line reply without end"))
}

async fn bounded<T>(
    op_timeout: Duration,
    what: &str,
    f: impl std::future::Future<Output = Result<T, SessionError>>,
) -> Result<T, SessionError> {
    tokio::time::timeout(op_timeout, f)
        .await
        .unwrap_or_else(|_| {
            Err(err(
                ErrorKind::Timeout,
                format!("{what} after {op_timeout:?}"),
            ))
        })
}

/// Reads the greeting: `* OK` or `* PREAUTH` (IMAP), `+OK` (POP3); either when
/// `protocol` is `None`.
async fn greeting(
    r: &mut BufReader<TcpStream>,
    protocol: Option<Protocol>,
) -> Result<(), SessionError> {
    let mut line = Vec::new();
    read_line(r, &mut line).await?;
    let imap = line.starts_with(b"* OK") || line.starts_with(b"* PREAUTH");
    let pop3 = line.starts_with(b"+OK");
    let ok = match protocol {
        Some(Protocol::Imap) => imap,
        Some(Protocol::Pop3) => pop3,
        None => imap || pop3,
    };
    if ok {
        Ok(())
    } else if line.starts_with(b"* BYE") || line.starts_with(b"-ERR") {
        Err(err(ErrorKind::Refused, text(&line)))
    } else {
        Err(err(ErrorKind::Protocol, text(&line)))
    }
}

/// A TCP connection to `addr`, bounded by `op_timeout`.
async fn connect(addr: SocketAddr, op_timeout: Duration) -> Result<TcpStream, SessionError> {
    bounded(op_timeout, "connect", async {
        TcpStream::connect(addr)
            .await
            .map_err(|e| err(ErrorKind::Connect, format!("{addr}: {e}")))
    })
    .await
}

/// One connection of a storm: connect, then close at once (`ConnectClose`), after the
/// greeting (`GreetClose`), or abortively with an RST (`ConnectReset`). Each operation is
/// bounded by `op_timeout`. For a session kind that is not a storm, only connects.
pub async fn storm_connection(
    addr: SocketAddr,
    kind: SessionKind,
    op_timeout: Duration,
) -> Result<(), SessionError> {
    let tcp = connect(addr, op_timeout).await?;
    match kind {
        SessionKind::GreetClose => {
            let mut r = BufReader::with_capacity(1024, tcp);
            bounded(op_timeout, "greeting", greeting(&mut r, None)).await?;
        }
        SessionKind::ConnectReset => {
            // SO_LINGER 0: closing sends an RST instead of a FIN, and never blocks.
            tcp.set_zero_linger()
                .map_err(|e| err(ErrorKind::Protocol, format!("SO_LINGER: {e}")))?;
        }
        _ => {}
    }
    Ok(())
}

/// One whole session: connect, read the greeting, then send each step and read its
/// complete reply. Each operation is bounded by `op_timeout`.
pub async fn play_session(
    addr: SocketAddr,
    protocol: Protocol,
    steps: &[Vec<u8>],
    op_timeout: Duration,
) -> Result<(), SessionError> {
    let tcp = connect(addr, op_timeout).await?;
    let _ = tcp.set_nodelay(true);
    let mut r = BufReader::with_capacity(16 * 1024, tcp);
    bounded(op_timeout, "greeting", greeting(&mut r, Some(protocol))).await?;
    for step in steps {
        let word_end = step.iter().position(|&b| b == b' ' || b == b'\r');
        let first = step
            .get(..word_end.unwrap_or(step.len()))
            .unwrap_or_default();
        bounded(op_timeout, &text(first), async {
            r.get_mut()
                .write_all(step)
                .await
                .map_err(|e| err(ErrorKind::Protocol, format!("write: {e}")))?;
            match protocol {
                Protocol::Imap => {
                    let logout = step
                        .get(first.len()..)
                        .is_some_and(|rest| rest.eq_ignore_ascii_case(b" LOGOUT\r\n"));
                    imap_reply(&mut r, first, logout).await
                }
                Protocol::Pop3 => {
                    let trimmed = step.strip_suffix(b"\r\n").unwrap_or(step);
                    let upper = trimmed.to_ascii_uppercase();
                    let multi = upper.starts_with(b"RETR ")
                        || upper.starts_with(b"TOP ")
                        || upper == b"LIST"
                        || upper == b"UIDL"
                        || upper == b"CAPA";
                    pop3_reply(&mut r, multi).await
                }
            }
        })
        .await?;
    }
    Ok(())
}

/// One client's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    pub user: String,
    pub password: String,
}

impl UserSpec {
    /// `NAME:PASSWORD`.
    pub fn parse(s: &str) -> Option<UserSpec> {
        let (user, password) = s.split_once(':')?;
        if user.is_empty() {
            return None;
        }
        Some(UserSpec {
            user: user.into(),
            password: password.into(),
        })
    }

    /// `count` users from a pattern such as `u{i}:secret` (`{i}` = 0, 1, ...).
    pub fn from_pattern(pattern: &str, count: usize) -> Option<Vec<UserSpec>> {
        if !pattern.contains("{i}") {
            return None;
        }
        (0..count)
            .map(|i| UserSpec::parse(&pattern.replace("{i}", &i.to_string())))
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub addr: SocketAddr,
    pub session: SessionKind,
    pub clients: usize,
    /// Client `i` logs in as `users[i % users.len()]` (none needed for a storm).
    pub users: Vec<UserSpec>,
    /// Stop starting sessions after this long.
    pub duration: Duration,
    /// Stop after this many sessions (started), if given.
    pub max_sessions: Option<u64>,
    /// Bound on each operation: connect, greeting, each command with its reply.
    pub op_timeout: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoadError {
    #[error("between 1 and {MAX_CLIENTS} clients")]
    ClientCount,
    #[error("at least one user is needed")]
    NoUsers,
    #[error(
        "POP3 locks a user's maildrop for the whole session: {clients} clients need {clients} \
         distinct users, got {users} (use a user pattern such as u{{i}}:secret)"
    )]
    TooFewPop3Users { clients: usize, users: usize },
    #[error("the run must last between 1 ms and {MAX_DURATION:?}")]
    Duration,
    #[error("the per-operation timeout must be positive")]
    Timeout,
}

impl LoadConfig {
    pub fn validate(&self) -> Result<(), LoadError> {
        if self.clients == 0 || self.clients > MAX_CLIENTS {
            return Err(LoadError::ClientCount);
        }
        if self.users.is_empty() && !self.session.is_storm() {
            return Err(LoadError::NoUsers);
        }
        if self.session.protocol() == Some(Protocol::Pop3) {
            let mut names: Vec<String> = self
                .users
                .iter()
                .map(|u| u.user.to_ascii_lowercase())
                .collect();
            names.sort();
            names.dedup();
            if names.len() < self.clients {
                return Err(LoadError::TooFewPop3Users {
                    clients: self.clients,
                    users: names.len(),
                });
            }
        }
        if self.duration < Duration::from_millis(1) || self.duration > MAX_DURATION {
            return Err(LoadError::Duration);
        }
        if self.op_timeout.is_zero() {
            return Err(LoadError::Timeout);
        }
        Ok(())
    }
}

/// Counters the generator updates as it goes; read them for progress.
#[derive(Debug, Default)]
pub struct LoadProgress {
    pub started: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub succeeded: u64,
    /// Failed sessions by kind, with the first failure of each kind as an example.
    pub errors: BTreeMap<ErrorKind, (u64, String)>,
    pub elapsed: Duration,
    /// Latencies of the successful sessions, in microseconds, sorted.
    pub latencies_us: Vec<u64>,
}

impl LoadReport {
    pub fn failed(&self) -> u64 {
        self.errors.values().map(|(n, _)| n).sum()
    }

    pub fn errors_of(&self, kind: ErrorKind) -> u64 {
        self.errors.get(&kind).map_or(0, |(n, _)| *n)
    }

    /// Successful sessions per second of the run.
    pub fn sessions_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.succeeded as f64 / secs
        } else {
            0.0
        }
    }

    /// The nearest-rank percentile (0 < p <= 100) of the successful sessions' latency.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        let n = self.latencies_us.len();
        if n == 0 {
            return None;
        }
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        let idx = rank.clamp(1, n) - 1;
        self.latencies_us
            .get(idx)
            .map(|&us| Duration::from_micros(us))
    }

    pub fn max(&self) -> Option<Duration> {
        self.latencies_us
            .last()
            .map(|&us| Duration::from_micros(us))
    }
}

#[derive(Default)]
struct Shared {
    latencies: Vec<u64>,
    errors: BTreeMap<ErrorKind, (u64, String)>,
}

/// Runs the closed loop: every client starts its next session as soon as the last one
/// ends, until `duration` has passed or `max_sessions` have started. A session running at
/// the deadline is finished (each of its operations is bounded by `op_timeout`).
pub async fn run(config: LoadConfig, progress: Arc<LoadProgress>) -> Result<LoadReport, LoadError> {
    config.validate()?;
    let start = Instant::now();
    let deadline = start + config.duration;
    let shared = Arc::new(Mutex::new(Shared::default()));
    let mut tasks = tokio::task::JoinSet::new();
    let kind = config.session;
    for i in 0..config.clients {
        let steps = match config
            .users
            .get(i.checked_rem(config.users.len()).unwrap_or(0))
        {
            Some(user) => kind.steps(&user.user, &user.password),
            None if kind.is_storm() => Vec::new(),
            None => return Err(LoadError::NoUsers),
        };
        let (shared, progress) = (shared.clone(), progress.clone());
        let (addr, op_timeout, max) = (config.addr, config.op_timeout, config.max_sessions);
        tasks.spawn(async move {
            let mut local = Vec::new();
            while Instant::now() < deadline {
                let n = progress.started.fetch_add(1, Ordering::Relaxed);
                if max.is_some_and(|m| n >= m) {
                    progress.started.fetch_sub(1, Ordering::Relaxed);
                    break;
                }
                let t0 = Instant::now();
                let result = match kind.protocol() {
                    Some(protocol) => play_session(addr, protocol, &steps, op_timeout).await,
                    None => storm_connection(addr, kind, op_timeout).await,
                };
                match result {
                    Ok(()) => {
                        local.push(t0.elapsed().as_micros().min(u64::MAX as u128) as u64);
                        progress.succeeded.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        progress.failed.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut s) = shared.lock() {
                            let entry = s.errors.entry(e.kind).or_insert((0, e.detail));
                            entry.0 += 1;
                        }
                        // A refused connection fails at once: do not spin on it.
                        if e.kind == ErrorKind::Connect {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            }
            if let Ok(mut s) = shared.lock() {
                let room = MAX_SAMPLES.saturating_sub(s.latencies.len());
                local.truncate(room);
                s.latencies.extend(local);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed();
    let mut shared = match shared.lock() {
        Ok(mut s) => std::mem::take(&mut *s),
        Err(_) => Shared::default(),
    };
    shared.latencies.sort_unstable();
    Ok(LoadReport {
        succeeded: progress.succeeded.load(Ordering::Relaxed),
        errors: shared.errors,
        elapsed,
        latencies_us: shared.latencies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_recognised() {
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {254}"), Some(254));
        assert_eq!(literal_len(b"a LOGIN {3+}"), Some(3));
        assert_eq!(literal_len(b"* OK {x}"), None);
        assert_eq!(literal_len(b"* OK }"), None);
        assert_eq!(literal_len(b"{99999999999999999999}"), None);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let r = LoadReport {
            latencies_us: (1..=100).collect(),
            ..Default::default()
        };
        assert_eq!(r.percentile(50.0), Some(Duration::from_micros(50)));
        assert_eq!(r.percentile(99.0), Some(Duration::from_micros(99)));
        assert_eq!(r.max(), Some(Duration::from_micros(100)));
        assert_eq!(LoadReport::default().percentile(50.0), None);
    }

    #[test]
    fn users_from_a_pattern() {
        let u = UserSpec::from_pattern("u{i}:secret", 3).unwrap();
        assert_eq!(u.len(), 3);
        assert_eq!(
            (u[2].user.as_str(), u[2].password.as_str()),
            ("u2", "secret")
        );
        assert!(UserSpec::from_pattern("u:secret", 3).is_none());
        assert!(UserSpec::parse("nocolon").is_none());
    }

    #[test]
    fn pop3_needs_a_user_per_client() {
        let cfg = LoadConfig {
            addr: ([127, 0, 0, 1], 1).into(),
            session: SessionKind::Pop3LoginStatRetrQuit,
            clients: 2,
            users: vec![UserSpec::parse("a:b").unwrap()],
            duration: Duration::from_secs(1),
            max_sessions: None,
            op_timeout: Duration::from_secs(1),
        };
        assert!(matches!(
            cfg.validate(),
            Err(LoadError::TooFewPop3Users { .. })
        ));
        let imap = LoadConfig {
            session: SessionKind::ImapLoginSelectFetchLogout,
            ..cfg.clone()
        };
        assert_eq!(imap.validate(), Ok(()));
        for clients in [0, MAX_CLIENTS + 1] {
            let c = LoadConfig {
                clients,
                ..imap.clone()
            };
            assert_eq!(c.validate(), Err(LoadError::ClientCount));
        }
        let forever = LoadConfig {
            duration: MAX_DURATION + Duration::from_secs(1),
            ..imap
        };
        assert_eq!(forever.validate(), Err(LoadError::Duration));
    }

    #[test]
    fn logins_are_quoted_when_needed() {
        assert_eq!(imap_astring("alice"), "alice");
        assert_eq!(imap_astring("a b\"c"), "\"a b\\\"c\"");
    }
}
