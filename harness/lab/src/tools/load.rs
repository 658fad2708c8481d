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
//! The sessions are the driver's client machines (`harness_core::driver`), run over TCP by
//! [`super::client_driver`] as the scenario runner runs them, set to log in at once and
//! read the mail ([`session_config`]). Their readers bound lines and skip literals
//! without buffering them, so a hostile or broken server costs a `protocol` error, never
//! memory.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness_core::driver::{self, ClientConfig, Finding, Policy, SessionOutcome, Status};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpStream;

use super::client_driver::drive_connected;
use crate::Protocol;

/// Longest reply line read before the server is taken to be broken.
const MAX_LINE: usize = 64 * 1024;
/// Largest IMAP literal skipped.
const MAX_LITERAL: u64 = 64 * 1024 * 1024;
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
    /// DCE/RPC: connect, bind with NTLM (NEGOTIATE in the bind, CHALLENGE in the bind_ack,
    /// AUTHENTICATE in auth3), one call at the bound level, close.
    RpcBindCallClose,
    /// DCE/RPC: each client binds once, then every "session" is one call on that
    /// association (sealed at level 6).
    RpcCalls,
    /// DCE/RPC: each client binds and makes one call, then holds its association idle
    /// until the run ends (memory per idle association).
    RpcHold,
    /// Kerberos (`krb5://`): kinit with pre-authentication, two AS round trips over UDP.
    KdcAs,
    /// Kerberos: each client logs in once, then every session is one TGS exchange.
    KdcTgs,
}

pub const SESSION_NAMES: &[&str] = &[
    "login-select-fetch-logout",
    "login-stat-retr-quit",
    "connect-close",
    "greet-close",
    "connect-reset",
    "rpc-bind-call-close",
    "rpc-calls",
    "rpc-hold",
    "kdc-as",
    "kdc-tgs",
];

impl SessionKind {
    pub fn by_name(name: &str) -> Option<SessionKind> {
        match name {
            "login-select-fetch-logout" => Some(SessionKind::ImapLoginSelectFetchLogout),
            "login-stat-retr-quit" => Some(SessionKind::Pop3LoginStatRetrQuit),
            "connect-close" => Some(SessionKind::ConnectClose),
            "greet-close" => Some(SessionKind::GreetClose),
            "connect-reset" => Some(SessionKind::ConnectReset),
            "rpc-bind-call-close" => Some(SessionKind::RpcBindCallClose),
            "rpc-calls" => Some(SessionKind::RpcCalls),
            "rpc-hold" => Some(SessionKind::RpcHold),
            "kdc-as" => Some(SessionKind::KdcAs),
            "kdc-tgs" => Some(SessionKind::KdcTgs),
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
            SessionKind::RpcBindCallClose => SESSION_NAMES[5],
            SessionKind::RpcCalls => SESSION_NAMES[6],
            SessionKind::RpcHold => SESSION_NAMES[7],
            SessionKind::KdcAs => SESSION_NAMES[8],
            SessionKind::KdcTgs => SESSION_NAMES[9],
        }
    }

    /// The mail protocol the session speaks; `None` for the storms, which fit either,
    /// and the DCE/RPC sessions.
    pub fn protocol(self) -> Option<Protocol> {
        match self {
            SessionKind::ImapLoginSelectFetchLogout => Some(Protocol::Imap),
            SessionKind::Pop3LoginStatRetrQuit => Some(Protocol::Pop3),
            _ => None,
        }
    }

    /// A connection storm: no login, one connection per "session".
    pub fn is_storm(self) -> bool {
        matches!(
            self,
            SessionKind::ConnectClose | SessionKind::GreetClose | SessionKind::ConnectReset
        )
    }

    /// A DCE/RPC session (`dcerpc://` targets).
    pub fn is_rpc(self) -> bool {
        matches!(
            self,
            SessionKind::RpcBindCallClose | SessionKind::RpcCalls | SessionKind::RpcHold
        )
    }

    /// A Kerberos session (`krb5://` targets).
    pub fn is_kdc(self) -> bool {
        matches!(self, SessionKind::KdcAs | SessionKind::KdcTgs)
    }

    /// The default session for a protocol.
    pub fn for_protocol(protocol: Protocol) -> SessionKind {
        match protocol {
            Protocol::Imap => SessionKind::ImapLoginSelectFetchLogout,
            Protocol::Pop3 => SessionKind::Pop3LoginStatRetrQuit,
        }
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
    /// The server refused: IMAP `NO` or `BAD` (or a `BYE` greeting), POP3 `-ERR`, a
    /// DCE/RPC fault, bind_nak or rejected context.
    Refused,
    /// Anything else: an unreadable or oversized reply, a connection closed early.
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
            ErrorKind::Refused => "refused",
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

/// Reads a storm's greeting, one line bounded by [`MAX_LINE`]: `* OK` or `* PREAUTH`
/// (IMAP) or `+OK` (POP3) is a success; a storm fits either protocol.
async fn storm_greeting(tcp: TcpStream) -> Result<(), SessionError> {
    let mut r = BufReader::with_capacity(1024, tcp);
    let mut line = Vec::new();
    let n = (&mut r)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| err(ErrorKind::Protocol, format!("read: {e}")))?;
    if n == 0 {
        return Err(err(ErrorKind::Protocol, "connection closed early"));
    }
    let Some(line) = line.strip_suffix(b"\n") else {
        return Err(err(
            ErrorKind::Protocol,
            "greeting too long or cut off by a close",
        ));
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.starts_with(b"* OK") || line.starts_with(b"* PREAUTH") || line.starts_with(b"+OK") {
        Ok(())
    } else if line.starts_with(b"* BYE") || line.starts_with(b"-ERR") {
        Err(err(ErrorKind::Refused, text(line)))
    } else {
        Err(err(ErrorKind::Protocol, text(line)))
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
            bounded(op_timeout, "greeting", storm_greeting(tcp)).await?;
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

/// How a load session's client behaves: it logs in at once with the protocol's cleartext
/// login (no capability probe, no prompt after a refusal), reads the mail (IMAP SELECT
/// INBOX and FETCH 1:* (FLAGS BODY.PEEK[]), POP3 STAT and RETR 1) and logs out. A server
/// silent for `op_timeout` while a reply is due ends the session.
pub fn session_config(user: &UserSpec, op_timeout: Duration) -> ClientConfig {
    let mut cfg = ClientConfig::new(&user.user, &user.password, Policy::Basic);
    cfg.max_prompts = 0;
    cfg.ask_capabilities = false;
    cfg.read_mail = true;
    cfg.response_timeout = op_timeout;
    cfg.max_line = MAX_LINE;
    cfg.max_literal = MAX_LITERAL;
    cfg
}

/// One whole session: connect (bounded by `op_timeout`), then the driver's client for
/// `protocol` set up by [`session_config`], until it is done.
pub async fn play_session(
    addr: SocketAddr,
    protocol: Protocol,
    user: &UserSpec,
    op_timeout: Duration,
) -> Result<(), SessionError> {
    let tcp = connect(addr, op_timeout).await?;
    let _ = tcp.set_nodelay(true);
    let mut client = driver::new_client(protocol, session_config(user, op_timeout));
    drive_connected(client.as_mut(), addr, Some(tcp)).await;
    session_result(&client.outcome())
}

/// A finished session's outcome as the generator counts it.
fn session_result(outcome: &SessionOutcome) -> Result<(), SessionError> {
    if outcome.status == Status::Authenticated {
        return Ok(());
    }
    let silent = outcome
        .findings
        .iter()
        .find(|f| matches!(f, Finding::ServerSilent { .. }));
    let broken = outcome.findings.iter().find(|f| {
        matches!(
            f,
            Finding::ProtocolViolation { .. } | Finding::UnexpectedDisconnect { .. }
        )
    });
    Err(match (silent, broken) {
        (Some(f), _) => err(ErrorKind::Timeout, f.to_string()),
        (None, Some(f)) => err(ErrorKind::Protocol, f.to_string()),
        // A refused login, SELECT, FETCH, STAT or RETR, or a BYE greeting.
        (None, None) => {
            let line = refusal_line(outcome)
                .or_else(|| outcome.steps.last().map(|s| s.as_str()))
                .unwrap_or(outcome.status.name());
            err(ErrorKind::Refused, text(line.as_bytes()))
        }
    })
}

/// The first server line in the outcome's steps that refuses: IMAP `tag NO`, `tag BAD`
/// or `* BYE`, POP3 `-ERR`.
fn refusal_line(outcome: &SessionOutcome) -> Option<&str> {
    outcome
        .steps
        .iter()
        .filter_map(|s| s.as_str().strip_prefix("S: "))
        .find(|line| {
            let mut words = line.split(' ');
            let first = words.next().unwrap_or_default();
            let second = words.next().unwrap_or_default();
            first == "-ERR"
                || (first == "*" && second.eq_ignore_ascii_case("BYE"))
                || (first != "*"
                    && (second.eq_ignore_ascii_case("NO") || second.eq_ignore_ascii_case("BAD")))
        })
}

/// One client's identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    /// Bound on each operation: connecting, and the server's silence while a reply (the
    /// greeting, a command's) is due.
    pub op_timeout: Duration,
    /// The call a DCE/RPC session makes (required for the `rpc-*` sessions).
    pub rpc: Option<super::rpc_load::RpcCall>,
    /// What a Kerberos session asks (required for the `kdc-*` sessions).
    pub kdc: Option<super::kdc_load::KdcLoad>,
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
    #[error("a DCE/RPC session needs the call to make")]
    NoRpcCall,
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
        if self.session.is_rpc() && self.rpc.is_none() {
            return Err(LoadError::NoRpcCall);
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
        let user = match config
            .users
            .get(i.checked_rem(config.users.len()).unwrap_or(0))
        {
            Some(user) => user.clone(),
            None if kind.is_storm() => UserSpec::default(),
            None => return Err(LoadError::NoUsers),
        };
        let (shared, progress) = (shared.clone(), progress.clone());
        let (addr, op_timeout, max) = (config.addr, config.op_timeout, config.max_sessions);
        let rpc = config.rpc.clone();
        let kdc = config.kdc.clone();
        tasks.spawn(async move {
            let mut local = Vec::new();
            // A Kerberos client's socket and TGT, kept between its sessions.
            let mut krb: Option<super::kdc_load::KdcClient> = None;
            // The association an `rpc-calls` client keeps between its calls.
            let mut held = None;
            while Instant::now() < deadline {
                let n = progress.started.fetch_add(1, Ordering::Relaxed);
                if max.is_some_and(|m| n >= m) {
                    progress.started.fetch_sub(1, Ordering::Relaxed);
                    break;
                }
                let t0 = Instant::now();
                let result = match (kind.protocol(), &rpc) {
                    (Some(protocol), _) => play_session(addr, protocol, &user, op_timeout).await,
                    (None, Some(call)) if kind.is_rpc() => {
                        // rpc-calls keeps its association for the next call; rpc-hold
                        // keeps it idle until the run ends, then closes it.
                        let keep = matches!(kind, SessionKind::RpcCalls | SessionKind::RpcHold);
                        let result = super::rpc_load::rpc_session(
                            addr, call, &user, op_timeout, keep, &mut held,
                        )
                        .await;
                        if kind == SessionKind::RpcHold && result.is_ok() {
                            tokio::time::sleep_until(deadline.into()).await;
                            held = None;
                        }
                        result
                    }
                    (None, _) if kind.is_kdc() => match &kdc {
                        Some(load) => {
                            kdc_session(addr, load, kind, &user, op_timeout, i, &mut krb).await
                        }
                        None => Err(err(ErrorKind::Protocol, "no Kerberos load given")),
                    },
                    (None, _) => storm_connection(addr, kind, op_timeout).await,
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

/// One Kerberos session of client `i`, on the client's socket (made on first use).
async fn kdc_session(
    addr: SocketAddr,
    load: &super::kdc_load::KdcLoad,
    kind: SessionKind,
    user: &UserSpec,
    op_timeout: Duration,
    i: usize,
    krb: &mut Option<super::kdc_load::KdcClient>,
) -> Result<(), SessionError> {
    let client = match krb {
        Some(c) => c,
        None => krb.insert(super::kdc_load::KdcClient::new(addr, i as u64 + 1).await?),
    };
    match kind {
        SessionKind::KdcTgs => client.kvno(load, user, op_timeout).await.map(drop),
        _ => client.kinit(load, user, op_timeout).await.map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            rpc: None,
            kdc: None,
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

    fn outcome(status: Status, steps: &[&str], findings: Vec<Finding>) -> SessionOutcome {
        SessionOutcome {
            actor: "alice".into(),
            protocol: harness_core::Protocol::Imap.into(),
            policy: "basic".into(),
            steps: steps
                .iter()
                .map(|s| driver::StepLine(s.to_string()))
                .collect(),
            status,
            codes: Vec::new(),
            findings,
            prompts: 0,
        }
    }

    #[test]
    fn outcomes_are_counted_by_kind_with_the_refusing_line() {
        assert_eq!(
            session_result(&outcome(Status::Authenticated, &[], vec![])),
            Ok(())
        );
        let refused = outcome(
            Status::Failed,
            &[
                "S: * OK ready",
                "C: a1 LOGIN alice ****",
                "S: a1 NO [AUTHENTICATIONFAILED] no",
                "C: a2 LOGOUT",
                "S: * BYE bye",
            ],
            vec![],
        );
        assert_eq!(
            session_result(&refused),
            Err(err(ErrorKind::Refused, "a1 NO [AUTHENTICATIONFAILED] no"))
        );
        let bye = outcome(
            Status::Disconnected,
            &["S: * BYE [UNAVAILABLE] busy"],
            vec![],
        );
        assert_eq!(
            session_result(&bye).map_err(|e| e.kind),
            Err(ErrorKind::Refused)
        );
        let silent = Finding::ServerSilent {
            during: "LOGIN".into(),
        };
        let timed_out = outcome(Status::Disconnected, &[], vec![silent]);
        assert_eq!(
            session_result(&timed_out).map_err(|e| e.kind),
            Err(ErrorKind::Timeout)
        );
        let dropped = Finding::UnexpectedDisconnect {
            during: "FETCH".into(),
        };
        let broken = outcome(Status::Disconnected, &[], vec![dropped]);
        assert_eq!(
            session_result(&broken).map_err(|e| e.kind),
            Err(ErrorKind::Protocol)
        );
    }
}
