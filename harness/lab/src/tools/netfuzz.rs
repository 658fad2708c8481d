//! Network fuzzing of a live server over real sockets (`harness fuzz --target URL`): each
//! case from [`harness_core::netfuzz::Mutator`] is sent on a fresh connection, the
//! replies are checked with [`ReplyCheck`], and every finding is saved as a reproducer
//! transcript.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use harness_core::netfuzz::{check::show, reproducer, Mutated, Mutator, ReplyCheck, SeedSession};
use harness_core::{script, Protocol};

use super::play::Target;

/// Longest server line read before it counts as malformed.
const MAX_SERVER_LINE: usize = 1024 * 1024;
/// Largest server literal read through.
const MAX_SERVER_LITERAL: u64 = 64 * 1024 * 1024;
/// Literals one logical server line may carry.
const MAX_LITERALS_PER_LINE: usize = 1_000;
/// Server lines kept per case for the reproducer's header.
const KEEP_RECEIVED: usize = 40;
/// A reset right after a line longer than this, or with this many bytes sent and not
/// yet answered, is taken for a server that closed on input it had not read (an
/// overlong line it refused to buffer, as Dovecot's login process does with "Input
/// buffer full" from about 1 KB): RFC 1122 4.2.2.13 has TCP send RST when an
/// application closes with received data unread, so the goodbye it wrote may never
/// arrive. The transcripts' own lines are far shorter; only overlong tokens pass it.
const UNREAD_INPUT: usize = 1_000;
/// Refused connections in a row after which the run stops.
const MAX_REFUSED_IN_A_ROW: usize = 3;

/// How one case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutcomeKind {
    /// Every line sent and answered.
    Ok,
    /// The server closed the connection in order, or after saying goodbye.
    Closed,
    /// The connection was reset without a goodbye.
    Reset,
    /// No byte within the hang timeout while a reply was due.
    Hang,
    /// A reply line not valid for the protocol.
    Malformed,
    /// The watched process is gone.
    Crash,
    /// The connection was refused.
    Refused,
}

impl OutcomeKind {
    pub const ALL: [OutcomeKind; 7] = [
        OutcomeKind::Ok,
        OutcomeKind::Closed,
        OutcomeKind::Reset,
        OutcomeKind::Hang,
        OutcomeKind::Malformed,
        OutcomeKind::Crash,
        OutcomeKind::Refused,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OutcomeKind::Ok => "ok",
            OutcomeKind::Closed => "closed",
            OutcomeKind::Reset => "reset",
            OutcomeKind::Hang => "hang",
            OutcomeKind::Malformed => "malformed",
            OutcomeKind::Crash => "crash",
            OutcomeKind::Refused => "refused",
        }
    }

    /// A finding worth a reproducer (and a non-zero exit).
    pub fn is_finding(self) -> bool {
        !matches!(self, OutcomeKind::Ok | OutcomeKind::Closed)
    }
}

impl std::fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub kind: OutcomeKind,
    pub detail: String,
    /// Lines of the case sent before it ended.
    pub sent: usize,
    /// The first server lines, shown.
    pub received: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct FuzzConfig {
    pub target: Target,
    /// Stop after this long.
    pub duration: Duration,
    /// Stop after this many cases.
    pub count: Option<u64>,
    pub seed: u64,
    /// Silence while a reply is due that counts as a hang.
    pub hang_timeout: Duration,
    /// The same after an authentication command (servers delay failed logins on
    /// purpose); at least `hang_timeout`.
    pub auth_timeout: Duration,
    /// A process that must stay alive (the server's).
    pub watch_pid: Option<u32>,
    /// Where reproducers go.
    pub out: PathBuf,
    /// Transcripts; `<corpus>/<proto>/*.txt` are the seeds.
    pub corpus: PathBuf,
}

/// A saved finding.
#[derive(Debug, Clone)]
pub struct Finding<K = OutcomeKind> {
    pub kind: K,
    pub case: u64,
    pub detail: String,
    pub path: PathBuf,
}

/// How a case of one of the network fuzzers ended: a finding or not.
pub trait Outcome: Copy + Ord {
    /// A finding worth a report (and a non-zero exit).
    fn is_finding(self) -> bool;
}

impl Outcome for OutcomeKind {
    fn is_finding(self) -> bool {
        OutcomeKind::is_finding(self)
    }
}

/// A run of cases (transcripts by default; the DCE/RPC and RPC over HTTP fuzzers' with
/// their own outcomes).
#[derive(Debug, Clone)]
pub struct Summary<K = OutcomeKind> {
    pub cases: u64,
    pub by_kind: BTreeMap<K, u64>,
    pub findings: Vec<Finding<K>>,
    /// Findings not saved because one like it (same kind, and same first differing line
    /// or mutation) was.
    pub duplicates: u64,
    /// Why the run ended.
    pub stopped: String,
    pub elapsed: Duration,
}

impl<K> Default for Summary<K> {
    fn default() -> Self {
        Summary {
            cases: 0,
            by_kind: BTreeMap::new(),
            findings: Vec::new(),
            duplicates: 0,
            stopped: String::new(),
            elapsed: Duration::ZERO,
        }
    }
}

impl<K: Outcome> Summary<K> {
    /// A case was a finding (a crash, reset, hang, malformed reply, refused connection).
    pub fn failed(&self) -> bool {
        self.by_kind.iter().any(|(k, n)| k.is_finding() && *n > 0)
    }

    pub fn count(&self, kind: K) -> u64 {
        self.by_kind.get(&kind).copied().unwrap_or(0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FuzzError {
    #[error("reading transcripts under {path}: {source}")]
    Corpus {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Script {
        path: PathBuf,
        source: script::ParseError,
    },
    #[error("no {proto} transcripts with client lines under {0}", proto = .1)]
    NoSeeds(PathBuf, &'static str),
    #[error("cannot connect to {addr}: {detail}")]
    Unreachable { addr: SocketAddr, detail: String },
    #[error("writing {path}: {source}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The seed sessions: the client lines of `<corpus>/<proto>/*.txt`, sorted by name.
pub fn load_seeds(corpus: &Path, proto: Protocol) -> Result<Vec<SeedSession>, FuzzError> {
    let dir = corpus.join(proto.keyword());
    let read = std::fs::read_dir(&dir).map_err(|source| FuzzError::Corpus {
        path: dir.clone(),
        source,
    })?;
    let mut files: Vec<PathBuf> = read
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    let mut seeds = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|source| FuzzError::Corpus {
            path: path.clone(),
            source,
        })?;
        let parsed = script::parse(&text).map_err(|source| FuzzError::Script {
            path: path.clone(),
            source,
        })?;
        let name = format!(
            "{}/{}",
            proto.keyword(),
            path.file_name().unwrap_or_default().to_string_lossy()
        );
        let seed = SeedSession::from_script(&name, &parsed);
        if seed.conns.iter().any(|c| !c.is_empty()) {
            seeds.push(seed);
        }
    }
    if seeds.is_empty() {
        return Err(FuzzError::NoSeeds(dir, proto.keyword()));
    }
    Ok(seeds)
}

/// Whether process `pid` is alive (not gone and not a zombie), from /proc.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // state is the first field after the command name in parentheses
        Ok(stat) => match stat.rfind(')').and_then(|i| stat.get(i + 2..i + 3)) {
            Some(state) => !matches!(state, "Z" | "X" | "x"),
            None => true,
        },
        Err(_) => false,
    }
}

enum Got {
    Line(Vec<u8>),
    /// The server closed; the bytes of an unfinished line, if any.
    Eof(Vec<u8>),
    Reset,
    Timeout,
    Failed(String),
}

/// A blocking connection with its own buffer, so reads can have deadlines.
struct Conn {
    tcp: TcpStream,
    buf: Vec<u8>,
    /// The server's end was seen while polling: `Some(true)` a reset, `Some(false)` EOF.
    ended: Option<bool>,
}

impl Conn {
    /// Takes in what has already arrived, without waiting.
    fn poll(&mut self) {
        if self.ended.is_some() || self.tcp.set_nonblocking(true).is_err() {
            return;
        }
        let mut chunk = [0u8; 16 * 1024];
        for _ in 0..64 {
            match self.tcp.read(&mut chunk) {
                Ok(0) => {
                    self.ended = Some(false);
                    break;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if is_reset(&e) => {
                    self.ended = Some(true);
                    break;
                }
                Err(_) => break,
            }
        }
        let _ = self.tcp.set_nonblocking(false);
    }

    fn has_line(&self) -> bool {
        self.buf.contains(&b'\n')
    }

    fn fill(&mut self, deadline: Instant) -> Result<usize, Got> {
        match self.ended {
            Some(true) => return Err(Got::Reset),
            Some(false) => return Ok(0),
            None => {}
        }
        let now = Instant::now();
        let wait = deadline
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        self.tcp
            .set_read_timeout(Some(wait))
            .map_err(|e| Got::Failed(e.to_string()))?;
        let mut chunk = [0u8; 16 * 1024];
        match self.tcp.read(&mut chunk) {
            Ok(0) => Ok(0),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(Got::Timeout)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(usize::MAX),
            Err(e) if is_reset(&e) => Err(Got::Reset),
            Err(e) => Err(Got::Failed(e.to_string())),
        }
    }

    /// One physical line (LF included), or what ended the wait.
    fn line(&mut self, deadline: Instant) -> Got {
        loop {
            if let Some(lf) = self.buf.iter().position(|&b| b == b'\n') {
                return Got::Line(self.buf.drain(..=lf).collect());
            }
            if self.buf.len() > MAX_SERVER_LINE {
                return Got::Line(std::mem::take(&mut self.buf));
            }
            match self.fill(deadline) {
                Ok(0) => return Got::Eof(std::mem::take(&mut self.buf)),
                Ok(_) => {}
                Err(Got::Timeout) if Instant::now() < deadline => {}
                Err(got) => return got,
            }
        }
    }

    /// Exactly `n` bytes (a server literal), discarded.
    fn skip(&mut self, mut n: u64, deadline: Instant) -> Option<Got> {
        loop {
            let have = (self.buf.len() as u64).min(n);
            self.buf.drain(..have as usize);
            n -= have;
            if n == 0 {
                return None;
            }
            match self.fill(deadline) {
                Ok(0) => return Some(Got::Eof(Vec::new())),
                Ok(_) => {}
                Err(Got::Timeout) if Instant::now() < deadline => {}
                Err(got) => return Some(got),
            }
        }
    }
}

fn unread_reset(bytes: usize) -> String {
    format!(
        "reset after an overlong line ({bytes} bytes unanswered): the server closed on \
         input it did not read (an abortive close, not counted as a finding)"
    )
}

fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

/// One logical reply line: IMAP literals (`{n}` CRLF and n bytes) are read through and
/// left out, the line's parts joined.
fn reply_line(conn: &mut Conn, check: &ReplyCheck, deadline: Instant) -> Got {
    let mut line = match conn.line(deadline) {
        Got::Line(l) => l,
        other => return other,
    };
    for _ in 0..MAX_LITERALS_PER_LINE {
        let Some(n) = check.server_literal(&line) else {
            return Got::Line(line);
        };
        if n > MAX_SERVER_LITERAL {
            return Got::Line(line);
        }
        // The literal gets as long as the hang timeout from when it was announced.
        if let Some(got) = conn.skip(n, deadline.max(Instant::now() + Duration::from_secs(5))) {
            return got;
        }
        match conn.line(deadline.max(Instant::now() + Duration::from_secs(5))) {
            Got::Line(more) => line.extend_from_slice(&more),
            other => return other,
        }
    }
    Got::Line(line)
}

/// Runs one case against `addr`. Waits end at `until` (the end of the run): a case cut
/// short there is `ok`, not a hang.
pub fn run_case(
    addr: SocketAddr,
    proto: Protocol,
    case: &Mutated,
    hang: Duration,
    auth_hang: Duration,
    until: Instant,
) -> CaseResult {
    let settle = hang.min(Duration::from_millis(20));
    let mut received: Vec<String> = Vec::new();
    let result = |kind, detail: String, sent: usize, received: &mut Vec<String>| CaseResult {
        kind,
        detail,
        sent,
        received: std::mem::take(received),
    };
    let tcp = match TcpStream::connect_timeout(&addr, hang.max(Duration::from_secs(1))) {
        Ok(t) => t,
        Err(e) => {
            return result(
                OutcomeKind::Refused,
                format!("connect: {e}"),
                0,
                &mut received,
            )
        }
    };
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_write_timeout(Some(hang.max(Duration::from_secs(1))));
    let mut conn = Conn {
        tcp,
        buf: Vec::new(),
        ended: None,
    };
    let mut check = ReplyCheck::new(proto);
    let mut sent = 0usize;
    let mut greeted = false;
    // Reads what the server has to say: until the reply is complete, with `first` as the
    // bound for the first line. Returns the case's end, if it ended.
    let listen = |conn: &mut Conn,
                  check: &mut ReplyCheck,
                  greeted: &mut bool,
                  sent: usize,
                  first: Option<Duration>,
                  long_line_sent: bool,
                  received: &mut Vec<String>|
     -> Option<(OutcomeKind, String)> {
        // None: take only what is already here.
        let mut bound = first;
        for _ in 0..100_000 {
            let due = check.reply_due();
            let deadline = match bound {
                Some(b) => (Instant::now() + b).min(until),
                None => {
                    conn.poll();
                    if !conn.has_line() && conn.ended.is_none() {
                        return None;
                    }
                    Instant::now() + settle
                }
            };
            match reply_line(conn, check, deadline) {
                Got::Line(line) => {
                    if received.len() < KEEP_RECEIVED {
                        received.push(show(&line));
                    }
                    let verdict = if *greeted {
                        check.server_line(&line)
                    } else {
                        *greeted = true;
                        check.greeting(&line)
                    };
                    if let Err(m) = verdict {
                        return Some((OutcomeKind::Malformed, m.0));
                    }
                    if check.switched_to_tls() {
                        return Some((OutcomeKind::Ok, "the server switched to TLS".into()));
                    }
                    bound = if check.reply_complete() {
                        None
                    } else {
                        Some(settle)
                    };
                }
                Got::Eof(partial) => {
                    if !partial.is_empty() {
                        return Some((
                            OutcomeKind::Malformed,
                            format!("closed inside a line: {}", show(&partial)),
                        ));
                    }
                    return Some((
                        OutcomeKind::Closed,
                        if check.said_goodbye() {
                            "closed after a goodbye".into()
                        } else {
                            format!("closed after line {sent}")
                        },
                    ));
                }
                Got::Reset if check.said_goodbye() => {
                    return Some((OutcomeKind::Closed, "reset after a goodbye".into()));
                }
                Got::Reset if check.unanswered() > UNREAD_INPUT || long_line_sent => {
                    return Some((OutcomeKind::Closed, unread_reset(check.unanswered())));
                }
                Got::Reset => {
                    return Some((
                        OutcomeKind::Reset,
                        format!("connection reset by peer after line {sent}"),
                    ));
                }
                Got::Timeout if due && Instant::now() >= until => {
                    return Some((OutcomeKind::Ok, "the run's time ran out mid-case".into()));
                }
                Got::Timeout if due => {
                    return Some((
                        OutcomeKind::Hang,
                        format!(
                            "no reply within {} ms after line {sent}",
                            first.unwrap_or_default().as_millis()
                        ),
                    ));
                }
                Got::Timeout => return None,
                Got::Failed(e) => {
                    return Some((OutcomeKind::Reset, format!("read failed: {e}")));
                }
            }
        }
        None
    };
    if let Some((kind, detail)) = listen(
        &mut conn,
        &mut check,
        &mut greeted,
        0,
        Some(hang),
        false,
        &mut received,
    ) {
        if kind != OutcomeKind::Ok || !greeted {
            return result(kind, detail, 0, &mut received);
        }
    }
    // Whether each of the last two lines sent was longer than UNREAD_INPUT (a bit each).
    let mut long_lines = 0u8;
    for line in &case.lines {
        let wire = line.wire();
        if let Err(e) = conn.tcp.write_all(&wire) {
            let unread = check.unanswered() + wire.len();
            let overlong = unread > UNREAD_INPUT || long_lines != 0;
            let kind = if is_reset(&e) && (check.said_goodbye() || overlong) {
                OutcomeKind::Closed
            } else if is_reset(&e) {
                OutcomeKind::Reset
            } else if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
                OutcomeKind::Hang
            } else {
                OutcomeKind::Reset
            };
            return result(
                kind,
                format!("write of line {}: {e}", sent + 1),
                sent,
                &mut received,
            );
        }
        sent += 1;
        check.sent(&wire);
        long_lines = (long_lines << 1 | u8::from(wire.len() > UNREAD_INPUT)) & 0b11;
        let first = check.reply_due().then(|| {
            if check.auth_reply_due() {
                auth_hang.max(hang)
            } else {
                hang
            }
        });
        if let Some((kind, detail)) = listen(
            &mut conn,
            &mut check,
            &mut greeted,
            sent,
            first,
            long_lines != 0,
            &mut received,
        ) {
            let _ = conn.tcp.shutdown(Shutdown::Both);
            return result(kind, detail, sent, &mut received);
        }
    }
    let _ = conn.tcp.shutdown(Shutdown::Both);
    result(
        OutcomeKind::Ok,
        "all lines sent".into(),
        sent,
        &mut received,
    )
}

/// The file name a finding is saved under: kind, protocol and a hash of the kind and
/// the first line that differs from the source (so the same fault found twice is kept
/// once).
fn finding_key(kind: OutcomeKind, case: &Mutated) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    kind.name().hash(&mut h);
    match case.first_difference().and_then(|i| case.lines.get(i)) {
        Some(line) => (&line.bytes, line.crlf).hash(&mut h),
        None => case.lines.len().hash(&mut h),
    }
    format!("{:016x}", h.finish())
}

/// Runs cases until the count or the time is reached, the watched process dies, or the
/// target stops taking connections. `progress` is called after each case.
pub fn fuzz(cfg: &FuzzConfig, progress: &mut dyn FnMut(&Summary)) -> Result<Summary, FuzzError> {
    let proto = cfg.target.protocol;
    let seeds = load_seeds(&cfg.corpus, proto)?;
    let mutator = Mutator::new(proto, seeds, cfg.seed)
        .map_err(|_| FuzzError::NoSeeds(cfg.corpus.clone(), proto.keyword()))?;
    // The target must be there at the start; a refusal later is a finding.
    match TcpStream::connect_timeout(&cfg.target.addr, Duration::from_secs(2)) {
        Ok(t) => drop(t),
        Err(e) => {
            return Err(FuzzError::Unreachable {
                addr: cfg.target.addr,
                detail: e.to_string(),
            })
        }
    }
    let start = Instant::now();
    let mut summary = Summary::default();
    let mut saved_keys: BTreeSet<String> = BTreeSet::new();
    let mut refused_in_a_row = 0usize;
    let mut index = 0u64;
    summary.stopped = "time is up".into();
    loop {
        if cfg.count.is_some_and(|n| index >= n) {
            summary.stopped = format!("{index} cases done");
            break;
        }
        if start.elapsed() >= cfg.duration {
            break;
        }
        if let Some(pid) = cfg.watch_pid {
            if !process_alive(pid) {
                summary.stopped = format!("watched process {pid} was gone before case {index}");
                break;
            }
        }
        let case = mutator.case(index);
        let mut result = run_case(
            cfg.target.addr,
            proto,
            &case,
            cfg.hang_timeout,
            cfg.auth_timeout,
            start + cfg.duration,
        );
        if let Some(pid) = cfg.watch_pid {
            if !process_alive(pid) {
                result.detail = format!(
                    "watched process {pid} is gone (the case ended: {}, {})",
                    result.kind, result.detail
                );
                result.kind = OutcomeKind::Crash;
            }
        }
        index += 1;
        summary.cases += 1;
        *summary.by_kind.entry(result.kind).or_default() += 1;
        if result.kind.is_finding() {
            let key = finding_key(result.kind, &case);
            if saved_keys.insert(key.clone()) {
                let path = cfg
                    .out
                    .join(format!("{}-{}-{key}.txt", result.kind, proto.keyword()));
                save(cfg, proto, &case, &result, &path)?;
                summary.findings.push(Finding {
                    kind: result.kind,
                    case: case.index,
                    detail: result.detail.clone(),
                    path,
                });
            } else {
                summary.duplicates += 1;
            }
        }
        summary.elapsed = start.elapsed();
        progress(&summary);
        if result.kind == OutcomeKind::Crash {
            summary.stopped = "the watched process is gone".into();
            break;
        }
        if result.kind == OutcomeKind::Refused {
            refused_in_a_row += 1;
            if refused_in_a_row >= MAX_REFUSED_IN_A_ROW {
                summary.stopped = format!(
                    "{MAX_REFUSED_IN_A_ROW} connections in a row refused: the target is down"
                );
                break;
            }
        } else {
            refused_in_a_row = 0;
        }
    }
    summary.elapsed = start.elapsed();
    Ok(summary)
}

fn save(
    cfg: &FuzzConfig,
    proto: Protocol,
    case: &Mutated,
    result: &CaseResult,
    path: &Path,
) -> Result<(), FuzzError> {
    let mutations: Vec<&str> = case.mutations.iter().map(|m| m.name()).collect();
    let mut header = vec![
        format!("harness fuzz finding: {}", result.kind),
        format!("detail: {}", result.detail),
        format!(
            "target {}://{}, seed {}, case {}, from {} (connection {}), mutations: {}",
            proto.keyword(),
            cfg.target.addr,
            cfg.seed,
            case.index,
            case.source,
            case.conn + 1,
            mutations.join(", ")
        ),
        format!(
            "remake: harness fuzz --target {}://{} --seed {} --count {} --hang-timeout {} \
             --auth-timeout {}",
            proto.keyword(),
            cfg.target.addr,
            cfg.seed,
            case.index + 1,
            cfg.hang_timeout.as_millis(),
            cfg.auth_timeout.as_millis()
        ),
        format!("lines sent before the end: {}", result.sent),
        "server said:".to_string(),
    ];
    header.extend(result.received.iter().map(|l| format!("  {l}")));
    let text = reproducer(proto, &header, &case.lines);
    let io = |source| FuzzError::Output {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(&cfg.out).map_err(io)?;
    std::fs::write(path, text).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_free_pid_is_not() {
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(u32::MAX - 1));
    }
}
