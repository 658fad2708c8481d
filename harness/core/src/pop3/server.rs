//! The POP3 server endpoint (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH,
//! [MS-POP3] AUTH listing), as a sans-IO state machine.
//!
//! States (RFC 1939 section 3): AUTHORIZATION until a user is authenticated and the
//! maildrop is locked; TRANSACTION while the client works on its snapshot of INBOX;
//! UPDATE on QUIT, when deletions are committed to the shared store and the lock released.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use md5::{Digest, Md5};

use super::command::{Command, InitialResponse};
use super::response::{encode_body, encode_continuation, lines, StatusLine, MAX_STATUS_LINE};
use crate::rng::SeededRng;
use crate::sasl::{decode_base64, Mechanism, SaslServer, SaslStep};
use crate::session::{Output, ServerSession, SessionContext};

/// Once this many reply bytes wait to be polled, no further command is read.
const OUTPUT_HIGH_WATER: usize = 256 * 1024;

/// Unread pipelined input a session holds while its replies wait; beyond it, it ends.
const MAX_PENDING_INPUT: usize = 1024 * 1024;

/// RFC 1939 section 7: the APOP digest is MD5 over the greeting's timestamp (angle
/// brackets included) followed by the shared secret, written as 32 lower-case hex digits.
pub fn apop_digest(timestamp: &str, secret: &str) -> String {
    let mut md5 = Md5::new();
    md5.update(timestamp.as_bytes());
    md5.update(secret.as_bytes());
    md5.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// One message of the session's snapshot of INBOX.
#[derive(Debug)]
struct Entry {
    uid: u32,
    /// Octets as sent by RETR (CRLF line ends, before dot-stuffing).
    size: usize,
    data: Arc<[u8]>,
    deleted: bool,
}

#[derive(Debug)]
struct Maildrop {
    user: String,
    uid_validity: u32,
    /// RFC 1939 section 5: message numbers are fixed for the session.
    messages: Vec<Entry>,
}

impl Maildrop {
    fn live(&self) -> impl Iterator<Item = (usize, &Entry)> {
        self.messages
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.deleted)
            .map(|(i, e)| (i + 1, e))
    }

    fn totals(&self) -> (usize, usize) {
        self.live()
            .fold((0, 0), |(n, octets), (_, e)| (n + 1, octets + e.size))
    }
}

enum State {
    Authorization {
        pending_user: Option<String>,
    },
    Sasl(Box<SaslServer>),
    Transaction(Maildrop),
    /// QUIT, EOF or autologout happened; nothing more is read.
    Done,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Authorization { .. } | State::Sasl(_) => "AUTHORIZATION",
            State::Transaction(_) => "TRANSACTION",
            State::Done => "UPDATE",
        }
    }
}

/// One POP3 server session.
pub struct Pop3Server {
    ctx: SessionContext,
    rng: SeededRng,
    state: State,
    /// The APOP msg-id shown in the greeting, when APOP is on.
    timestamp: Option<String>,
    tls_active: bool,
    /// STLS was answered; input is ignored until the handshake is done.
    awaiting_tls: bool,
    /// Input not yet looked at: waits while the queued replies are over the high-water mark.
    pending: Vec<u8>,
    /// Part of a command line not yet ended by LF (never more than `max_line` bytes).
    inbuf: Vec<u8>,
    /// The current line went over the limit: drop bytes until its LF.
    discarding: bool,
    out: VecDeque<Output>,
    /// Bytes in the queued writes.
    queued: usize,
    /// `Output::Close` is queued.
    closing: bool,
    /// `Output::Close` was polled.
    closed: bool,
    /// The peer closed its side; the session ends once pending input is read.
    eof: bool,
    last_input: Duration,
    /// When the first byte of the line still in progress arrived.
    partial_since: Option<Duration>,
}

impl Pop3Server {
    pub fn new(ctx: SessionContext) -> Self {
        let mut rng = SeededRng::new(ctx.seed);
        let timestamp = ctx.profile.pop3.apop.then(|| {
            // RFC 1939 section 7: a msg-id, e.g. <process-ID.clock@hostname>; here a
            // seeded number and the session's epoch, so a seeded run repeats.
            let n = rng.next_u64() % 1_000_000;
            format!("<{n}.{}@{}>", ctx.epoch_secs, ctx.world.hostname)
        });
        let mut server = Pop3Server {
            tls_active: ctx.transport.tls_active,
            ctx,
            rng,
            state: State::Authorization { pending_user: None },
            timestamp,
            awaiting_tls: false,
            pending: Vec::new(),
            inbuf: Vec::new(),
            discarding: false,
            out: VecDeque::new(),
            queued: 0,
            closing: false,
            closed: false,
            eof: false,
            last_input: Duration::ZERO,
            partial_since: None,
        };
        let mut greeting = server.ctx.profile.pop3_greeting(&server.ctx.world.hostname);
        if let Some(ts) = &server.timestamp {
            greeting.push(' ');
            greeting.push_str(ts);
        }
        server.reply(StatusLine::ok(greeting));
        server
    }

    /// The user whose maildrop this session holds (TRANSACTION state).
    pub fn authenticated_user(&self) -> Option<&str> {
        match &self.state {
            State::Transaction(md) => Some(&md.user),
            _ => None,
        }
    }

    /// The APOP timestamp of the greeting, angle brackets included.
    pub fn apop_timestamp(&self) -> Option<&str> {
        self.timestamp.as_deref()
    }

    fn stls_offered(&self) -> bool {
        self.ctx.profile.pop3.stls && self.ctx.transport.starttls_available && !self.tls_active
    }

    fn has_capability(&self, name: &str) -> bool {
        self.ctx
            .profile
            .pop3
            .capabilities
            .iter()
            .any(|c| c.eq_ignore_ascii_case(name))
    }

    // ----- output -----

    fn write(&mut self, bytes: Vec<u8>) {
        self.queued += bytes.len();
        self.out.push_back(Output::Write(bytes));
    }

    /// Writes a status line, keeping it printable ASCII and within RFC 2449's 512 octets.
    fn reply(&mut self, mut line: StatusLine) {
        let code_len = line.code.as_ref().map_or(0, |c| c.len() + 3);
        let room = MAX_STATUS_LINE.saturating_sub(4 + 2 + 1 + code_len);
        let mut text: String = line
            .text
            .chars()
            .map(|c| {
                if c == ' ' || c.is_ascii_graphic() {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        text.truncate(room);
        line.text = text;
        let mut out = Vec::new();
        line.encode(&mut out);
        self.write(out);
    }

    fn ok(&mut self, text: impl Into<String>) {
        self.reply(StatusLine::ok(text));
    }

    fn err(&mut self, text: impl Into<String>) {
        self.reply(StatusLine::err(text));
    }

    /// `-ERR [AUTH] ...` (RFC 3206 section 4) when the profile advertises AUTH-RESP-CODE.
    fn auth_failed(&mut self, text: impl Into<String>) {
        let mut line = StatusLine::err(text);
        if self.has_capability("AUTH-RESP-CODE") {
            line = line.with_code("AUTH");
        }
        self.reply(line);
    }

    fn close(&mut self) {
        if !self.closing {
            self.closing = true;
            self.out.push_back(Output::Close);
        }
    }

    /// Leaves the session without committing anything, releasing the maildrop lock.
    fn abandon(&mut self) {
        if let State::Transaction(md) = std::mem::replace(&mut self.state, State::Done) {
            self.ctx.world.store.unlock_maildrop(&md.user);
        }
    }

    // ----- input -----

    fn handle_line(&mut self, now: Duration, line: &[u8]) {
        match &self.state {
            State::Done => {}
            State::Sasl(_) => self.sasl_response(line),
            State::Authorization { .. } | State::Transaction(_) => match Command::decode(line) {
                Ok(cmd) => self.command(now, cmd),
                Err(e) => {
                    if let State::Authorization { pending_user } = &mut self.state {
                        *pending_user = None;
                    }
                    self.err(e.to_string());
                }
            },
        }
    }

    fn command(&mut self, now: Duration, cmd: Command) {
        let pending_user = match &mut self.state {
            State::Authorization { pending_user } => pending_user.take(),
            _ => None,
        };
        let in_auth = matches!(self.state, State::Authorization { .. });
        match cmd {
            Command::Capa => self.capa(),
            Command::Quit if in_auth => {
                self.state = State::Done;
                let host = self.ctx.world.hostname.clone();
                self.ok(format!("{host} POP3 server signing off"));
                self.close();
            }
            Command::Unknown(line) => {
                let kw: String = line
                    .split(' ')
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(40)
                    .collect();
                self.err(format!("unknown command {kw}"));
            }
            Command::User(name) if in_auth => {
                if self.ctx.profile.pop3.user_pass {
                    if let State::Authorization { pending_user } = &mut self.state {
                        *pending_user = Some(name);
                    }
                    self.ok("send PASS");
                } else {
                    self.err("USER/PASS is not enabled here; use AUTH");
                }
            }
            Command::Pass(password) if in_auth => {
                if !self.ctx.profile.pop3.user_pass {
                    self.err("USER/PASS is not enabled here; use AUTH");
                    return;
                }
                let Some(user) = pending_user else {
                    self.err("PASS must come right after USER");
                    return;
                };
                let world = self.ctx.world.clone();
                match world.directory.verify_password(&user, &password) {
                    Some(p) => self.open_maildrop(p.name.clone()),
                    None => self.auth_failed("authentication failed: bad user name or password"),
                }
            }
            Command::Apop { user, digest } if in_auth => {
                let Some(ts) = self.timestamp.clone() else {
                    self.err("APOP is not enabled here");
                    return;
                };
                let world = self.ctx.world.clone();
                let found = world
                    .directory
                    .lookup(&user)
                    .filter(|p| apop_digest(&ts, &p.password).eq_ignore_ascii_case(&digest));
                match found {
                    Some(p) => self.open_maildrop(p.name.clone()),
                    None => self.auth_failed("authentication failed: bad user name or digest"),
                }
            }
            Command::Auth { mechanism, initial } if in_auth => self.auth(now, mechanism, initial),
            Command::Stls if in_auth => {
                if !self.stls_offered() {
                    let why = if self.tls_active {
                        "TLS is already active"
                    } else {
                        "STLS is not available"
                    };
                    self.err(why);
                    return;
                }
                self.ok("Begin TLS negotiation");
                self.out.push_back(Output::StartTls);
                // RFC 2595 section 4 / the STARTTLS injection class: whatever the client
                // pipelined after STLS was sent in the clear; it is dropped, not run.
                self.awaiting_tls = true;
                self.pending.clear();
                self.inbuf.clear();
                self.discarding = false;
            }
            cmd if in_auth => {
                let kw = cmd.keyword().to_string();
                self.err(format!(
                    "{kw} is not valid in the AUTHORIZATION state; authenticate first"
                ));
            }
            cmd => self.transaction(cmd),
        }
    }

    fn capa(&mut self) {
        let p = &self.ctx.profile.pop3;
        let mut caps: Vec<String> = p.capabilities.clone();
        if p.user_pass {
            caps.push("USER".into());
        }
        if !p.auth_mechanisms.is_empty() {
            let names: Vec<&str> = p.auth_mechanisms.iter().map(|m| m.name()).collect();
            caps.push(format!("SASL {}", names.join(" ")));
        }
        // RFC 2595 section 4: STLS is only valid in the AUTHORIZATION state.
        if self.stls_offered() && matches!(self.state, State::Authorization { .. }) {
            caps.push("STLS".into());
        }
        let mut out = Vec::new();
        StatusLine::ok("Capability list follows").encode(&mut out);
        encode_body(caps.iter().map(|c| c.as_bytes()), &mut out);
        self.write(out);
    }

    fn auth(&mut self, now: Duration, mechanism: Option<String>, initial: Option<InitialResponse>) {
        let offered = self.ctx.profile.pop3.auth_mechanisms.clone();
        let Some(name) = mechanism else {
            // [MS-POP3] 2.2.1: AUTH alone lists the mechanisms: +OK, one per line, ".".
            if self.ctx.profile.pop3.auth_lists_mechanisms {
                let mut out = b"+OK\r\n".to_vec();
                encode_body(offered.iter().map(|m| m.name().as_bytes()), &mut out);
                self.write(out);
            } else {
                self.err("AUTH needs a mechanism name");
            }
            return;
        };
        let Some(mech) = Mechanism::parse(&name).filter(|m| offered.contains(m)) else {
            let shown: String = name.chars().take(40).collect();
            self.err(format!("SASL mechanism {shown} is not supported"));
            return;
        };
        let initial = match initial {
            None => None,
            Some(InitialResponse::Empty) => Some(Vec::new()),
            Some(InitialResponse::Base64(text)) => match decode_base64(text.as_bytes()) {
                Ok(bytes) => Some(bytes),
                Err(_) => {
                    self.err("AUTH initial response is not valid base64");
                    return;
                }
            },
        };
        let world = self.ctx.world.clone();
        let unix_now = self.ctx.epoch_secs.saturating_add(now.as_secs());
        let (sasl, step) =
            SaslServer::start(mech, &world, &mut self.rng, unix_now, initial.as_deref());
        self.sasl_step(sasl, step);
    }

    fn sasl_step(&mut self, sasl: SaslServer, step: SaslStep) {
        match step {
            SaslStep::Challenge(data) => {
                if data.is_empty() {
                    let line = self
                        .ctx
                        .profile
                        .pop3
                        .auth_continuation
                        .empty_line()
                        .to_vec();
                    self.write(line);
                } else {
                    let mut out = Vec::new();
                    encode_continuation(&data, &mut out);
                    self.write(out);
                }
                self.state = State::Sasl(Box::new(sasl));
            }
            SaslStep::Success { user } => self.open_maildrop(user),
            SaslStep::Failure(e) => {
                self.state = State::Authorization { pending_user: None };
                self.auth_failed(format!("authentication failed: {e}"));
            }
        }
    }

    /// A client line while an AUTH exchange waits for it (RFC 5034 section 4).
    fn sasl_response(&mut self, line: &[u8]) {
        let state = std::mem::replace(&mut self.state, State::Authorization { pending_user: None });
        let State::Sasl(mut sasl) = state else {
            self.state = state;
            return;
        };
        if line == b"*" {
            self.err("authentication cancelled by the client");
            return;
        }
        match decode_base64(line) {
            Ok(bytes) => {
                let world = self.ctx.world.clone();
                let step = sasl.step(&world, &bytes);
                self.sasl_step(*sasl, step);
            }
            Err(_) => self.err("AUTH response is not valid base64; authentication aborted"),
        }
    }

    /// Authenticated: lock the maildrop and take the session's snapshot of INBOX.
    fn open_maildrop(&mut self, user: String) {
        let world = self.ctx.world.clone();
        if !world.store.try_lock_maildrop(&user) {
            self.state = State::Authorization { pending_user: None };
            self.reply(
                StatusLine::err(format!("maildrop of {user} is locked by another session"))
                    .with_code("IN-USE"),
            );
            return;
        }
        let (uid_validity, messages) = world.store.with_account(&user, |acct| {
            acct.mailbox("INBOX").map_or((0, Vec::new()), |mb| {
                let entries = mb
                    .messages
                    .iter()
                    .map(|m| Entry {
                        uid: m.uid,
                        size: lines(&m.data).map(|l| l.len() + 2).sum(),
                        data: m.data.clone(),
                        deleted: false,
                    })
                    .collect();
                (mb.uid_validity, entries)
            })
        });
        let md = Maildrop {
            user,
            uid_validity,
            messages,
        };
        let (n, octets) = md.totals();
        let text = format!("{}'s maildrop has {n} messages ({octets} octets)", md.user);
        self.state = State::Transaction(md);
        self.ok(text);
    }

    fn transaction(&mut self, cmd: Command) {
        let State::Transaction(md) = &mut self.state else {
            let (kw, st) = (cmd.keyword().to_string(), self.state.name());
            self.err(format!("{kw} is not valid in the {st} state"));
            return;
        };
        // A message number the client may use: in range and not marked deleted.
        fn lookup(md: &Maildrop, n: u32) -> Result<&Entry, String> {
            let index = (n as usize).checked_sub(1);
            match index.and_then(|i| md.messages.get(i)) {
                Some(e) if !e.deleted => Ok(e),
                Some(_) => Err(format!("message {n} is deleted")),
                None => Err(format!(
                    "no such message {n}; the maildrop has {} messages",
                    md.messages.len()
                )),
            }
        }
        let mut out = Vec::new();
        let result: Result<(), String> = match cmd {
            Command::Stat => {
                let (n, octets) = md.totals();
                StatusLine::ok(format!("{n} {octets}")).encode(&mut out);
                Ok(())
            }
            Command::List(None) | Command::Uidl(None) => {
                let uidl = matches!(cmd, Command::Uidl(_));
                let (n, octets) = md.totals();
                let head = if uidl {
                    "unique-id listing follows".to_string()
                } else {
                    format!("{n} messages ({octets} octets)")
                };
                StatusLine::ok(head).encode(&mut out);
                let rows: Vec<String> = md
                    .live()
                    .map(|(i, e)| {
                        if uidl {
                            format!("{i} {}", unique_id(md.uid_validity, e.uid))
                        } else {
                            format!("{i} {}", e.size)
                        }
                    })
                    .collect();
                encode_body(rows.iter().map(|r| r.as_bytes()), &mut out);
                Ok(())
            }
            Command::List(Some(n)) => lookup(md, n).map(|e| {
                StatusLine::ok(format!("{n} {}", e.size)).encode(&mut out);
            }),
            Command::Uidl(Some(n)) => lookup(md, n).map(|e| {
                StatusLine::ok(format!("{n} {}", unique_id(md.uid_validity, e.uid)))
                    .encode(&mut out);
            }),
            Command::Retr(n) => lookup(md, n).map(|e| {
                StatusLine::ok(format!("{} octets", e.size)).encode(&mut out);
                encode_body(lines(&e.data), &mut out);
            }),
            Command::Top(n, k) => lookup(md, n).map(|e| {
                StatusLine::ok("top of message follows").encode(&mut out);
                encode_body(top_lines(&e.data, k), &mut out);
            }),
            Command::Dele(n) => {
                let count = md.messages.len();
                let index = (n as usize).checked_sub(1);
                match index.and_then(|i| md.messages.get_mut(i)) {
                    Some(e) if e.deleted => Err(format!("message {n} already deleted")),
                    Some(e) => {
                        e.deleted = true;
                        StatusLine::ok(format!("message {n} deleted")).encode(&mut out);
                        Ok(())
                    }
                    None => Err(format!(
                        "no such message {n}; the maildrop has {count} messages"
                    )),
                }
            }
            Command::Rset => {
                md.messages.iter_mut().for_each(|e| e.deleted = false);
                let (n, octets) = md.totals();
                StatusLine::ok(format!("maildrop has {n} messages ({octets} octets)"))
                    .encode(&mut out);
                Ok(())
            }
            Command::Noop => {
                StatusLine::ok("").encode(&mut out);
                Ok(())
            }
            Command::Quit => {
                self.update();
                return;
            }
            other => Err(format!(
                "{} is not valid in the TRANSACTION state",
                other.keyword()
            )),
        };
        match result {
            Ok(()) => self.write(out),
            Err(text) => self.err(text),
        }
    }

    /// RFC 1939 section 6: the UPDATE state. Deleted messages are removed from the shared
    /// INBOX by UID (other sessions may have changed it meanwhile), then the lock goes.
    fn update(&mut self) {
        let State::Transaction(md) = std::mem::replace(&mut self.state, State::Done) else {
            return;
        };
        let deleted: HashSet<u32> = md
            .messages
            .iter()
            .filter(|e| e.deleted)
            .map(|e| e.uid)
            .collect();
        let world = self.ctx.world.clone();
        let (committed, left) = world.store.with_account(&md.user, |acct| {
            match acct.mailbox_mut("INBOX") {
                // A different UIDVALIDITY means the UIDs name other messages now.
                Some(mb) if mb.uid_validity == md.uid_validity => {
                    let before = mb.messages.len();
                    mb.messages.retain(|m| !deleted.contains(&m.uid));
                    if mb.messages.len() != before {
                        mb.generation += 1;
                    }
                    (true, mb.messages.len())
                }
                Some(mb) => (deleted.is_empty(), mb.messages.len()),
                None => (deleted.is_empty(), 0),
            }
        });
        world.store.unlock_maildrop(&md.user);
        let host = world.hostname.clone();
        if committed {
            self.ok(format!(
                "{host} POP3 server signing off ({left} messages left)"
            ));
        } else {
            self.err("INBOX was replaced meanwhile; deleted messages were not removed");
        }
        self.close();
    }
}

/// RFC 1939 section 7: a unique-id is 1 to 70 characters in 0x21-0x7E and stays the same
/// across sessions; UIDVALIDITY and UID together are exactly that.
fn unique_id(uid_validity: u32, uid: u32) -> String {
    format!("{uid_validity}.{uid}")
}

/// RFC 1939 section 7 (TOP): the header, the blank line, then `k` lines of the body.
fn top_lines(data: &[u8], k: u32) -> Vec<&[u8]> {
    let k = usize::try_from(k).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    let mut body_lines: Option<usize> = None;
    for line in lines(data) {
        match body_lines {
            Some(n) if n >= k => break,
            Some(n) => body_lines = Some(n + 1),
            None if line.is_empty() => body_lines = Some(0),
            None => {}
        }
        out.push(line);
    }
    out
}

impl ServerSession for Pop3Server {
    fn handle_input(&mut self, now: Duration, input: &[u8]) {
        if self.closing || self.awaiting_tls {
            return;
        }
        self.last_input = now;
        if self.queued >= OUTPUT_HIGH_WATER && self.pending.len() + input.len() > MAX_PENDING_INPUT
        {
            // The client keeps pipelining while its replies pile up unread.
            self.pending.clear();
            self.inbuf.clear();
            self.abandon();
            self.err("too much pipelined input; closing");
            self.close();
            return;
        }
        self.pending.extend_from_slice(input);
        self.pump(now);
        self.partial_since = if self.inbuf.is_empty() && !self.discarding {
            None
        } else {
            Some(self.partial_since.unwrap_or(now))
        };
    }

    fn handle_eof(&mut self, _now: Duration) {
        self.eof = true;
        // Commands already received but held back by a full output queue still run.
        if self.pending.is_empty() {
            self.finish_eof();
        }
    }

    fn handle_timeout(&mut self, now: Duration) {
        if self.closing {
            return;
        }
        let line_late = self
            .partial_since
            .is_some_and(|since| now >= since.saturating_add(self.ctx.limits.line_timeout));
        if line_late {
            self.abandon();
            self.err("command not completed in time; closing");
            self.close();
        } else if self.poll_timeout().is_some_and(|deadline| now >= deadline) {
            // RFC 1939 section 3: the autologout timer ends the session without UPDATE.
            self.abandon();
            self.err("autologout; idle for too long");
            self.close();
        }
    }

    fn handle_shutdown(&mut self, _now: Duration) {
        if self.closing {
            return;
        }
        // No QUIT, so no UPDATE state: deletions marked in this session are not committed.
        self.abandon();
        self.err("[SYS/TEMP] server shutting down");
        self.close();
    }

    fn handle_tls_established(&mut self, now: Duration) {
        if !self.awaiting_tls {
            return;
        }
        self.awaiting_tls = false;
        self.tls_active = true;
        self.pending.clear();
        self.inbuf.clear();
        self.discarding = false;
        self.last_input = now;
        self.partial_since = None;
        self.state = State::Authorization { pending_user: None };
    }

    fn poll_output(&mut self) -> Option<Output> {
        let out = self.out.pop_front();
        match &out {
            Some(Output::Close) => self.closed = true,
            Some(Output::Write(bytes)) => {
                self.queued = self.queued.saturating_sub(bytes.len());
                if self.queued < OUTPUT_HIGH_WATER && !self.pending.is_empty() {
                    // The adapter is draining: read on where the input was left.
                    let now = self.last_input;
                    self.pump(now);
                }
            }
            _ => {}
        }
        out
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if self.closing {
            return None;
        }
        let idle = self.last_input.checked_add(self.ctx.limits.idle_timeout);
        let line = self
            .partial_since
            .and_then(|since| since.checked_add(self.ctx.limits.line_timeout));
        match (idle, line) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn is_closed(&self) -> bool {
        self.closed
    }
}

impl Pop3Server {
    /// Reads command lines out of `pending` until it is empty, the session stops reading
    /// (QUIT, STLS) or the replies queued reach [`OUTPUT_HIGH_WATER`]; the rest waits
    /// for `poll_output` to drain them (RFC 2449 section 6.6 pipelining, with bounds).
    fn pump(&mut self, now: Duration) {
        if self.queued >= OUTPUT_HIGH_WATER {
            return;
        }
        let data = std::mem::take(&mut self.pending);
        let max = self.ctx.limits.max_line;
        let mut rest = data.as_slice();
        while !rest.is_empty()
            && !self.closing
            && !self.awaiting_tls
            && self.queued < OUTPUT_HIGH_WATER
        {
            let lf = rest.iter().position(|&b| b == b'\n');
            if self.discarding {
                match lf {
                    Some(i) => {
                        rest = rest.get(i + 1..).unwrap_or_default();
                        self.discarding = false;
                        continue;
                    }
                    None => {
                        rest = &[];
                        break;
                    }
                }
            }
            match lf {
                Some(i) => {
                    let piece = rest.get(..i).unwrap_or_default();
                    rest = rest.get(i + 1..).unwrap_or_default();
                    // The line with its LF must fit in max_line (CRLF included).
                    if self.inbuf.len() + piece.len() >= max {
                        self.inbuf.clear();
                        self.line_too_long();
                        continue;
                    }
                    let mut line = std::mem::take(&mut self.inbuf);
                    line.extend_from_slice(piece);
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    self.handle_line(now, &line);
                }
                None => {
                    if self.inbuf.len() + rest.len() >= max {
                        // Answer now and drop the rest of this line as it arrives.
                        self.inbuf.clear();
                        self.discarding = true;
                        self.line_too_long();
                    } else {
                        self.inbuf.extend_from_slice(rest);
                    }
                    rest = &[];
                }
            }
        }
        // After QUIT nothing more is read; after STLS what was pipelined in the clear is
        // dropped (RFC 2595 section 4, the STARTTLS command injection class).
        if !self.closing && !self.awaiting_tls {
            self.pending = rest.to_vec();
        }
        if self.eof && self.pending.is_empty() {
            self.finish_eof();
        }
    }

    /// The peer is gone and every line it sent has been read. RFC 1939 section 6: without
    /// QUIT there is no UPDATE state, so nothing is deleted; a partial line is dropped.
    fn finish_eof(&mut self) {
        self.abandon();
        self.state = State::Done;
        self.close();
    }

    /// Bytes of replies queued and not yet polled.
    #[cfg(test)]
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued
    }

    fn line_too_long(&mut self) {
        if let State::Authorization { pending_user } = &mut self.state {
            *pending_user = None;
        }
        let max = self.ctx.limits.max_line;
        if matches!(self.state, State::Sasl(_)) {
            // An AUTH response that does not fit ends the exchange.
            self.state = State::Authorization { pending_user: None };
        }
        self.err(format!("line too long (limit {max} octets)"));
    }
}

impl Drop for Pop3Server {
    /// A session dropped by its adapter without EOF still gives the maildrop back.
    fn drop(&mut self) {
        self.abandon();
    }
}
