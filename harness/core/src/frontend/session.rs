//! The client-facing front-end session, sans-IO: client bytes in through
//! [`ServerSession`], back-end work out through [`FrontendSession::poll_backend`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use imap_codec::decode::Decoder;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::CommandCodec;

use super::backend::{
    describe_sasl, is_tagged, line_has_capability, logout_tag, printable, BackendError,
    BackendEvent, ImapReader, Piece, Pop3Reader, StreamScanner,
};
use super::cache::{CacheKey, CredentialDigest, Parked};
use super::{BackendIo, ConnId, Finding, FrontendProfile, Protocol, SaslRouting};
use crate::imap::framer::{Frame, FrameConfig, FrameMode, Framer};
use crate::imap::LITERAL_CONTINUATION;
use crate::pop3::command::{Command as PopCommand, InitialResponse};
use crate::sasl::{decode_base64, encode_base64, Mechanism};
use crate::session::{Limits, Output, ServerSession};

/// What the front-end knows about its back-ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackendFeatures {
    /// The IMAP back-end accepts an initial response on AUTHENTICATE (SASL-IR, RFC 4959);
    /// otherwise the front-end waits for the back-end's empty `+` first.
    pub imap_sasl_ir: bool,
    /// The IMAP back-end's greeting advertises UNSELECT (RFC 3691). A LOGIN completion
    /// with a `[CAPABILITY ...]` code naming it counts too, per connection.
    pub imap_unselect: bool,
}

/// The client's SASL exchange as the front-end tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SaslCtx {
    /// IMAP: the client's tag (also used towards the back-end). POP3: empty.
    tag: String,
    mech: Mechanism,
    /// Pinned routing: the back-end connection holding this exchange.
    pinned: Option<ConnId>,
    /// The connection the previous step of this exchange went to.
    prev: Option<ConnId>,
}

#[derive(Debug)]
enum OpKind {
    /// IMAP LOGIN with the client's tag.
    Login {
        tag: String,
        user: String,
        pass: String,
        /// Session cache on: the credentials' digest.
        digest: Option<CredentialDigest>,
    },
    /// `*` sent to end an exchange (of the command tagged `tag`); its reply is swallowed.
    Reset { tag: String },
    /// POP3 USER then PASS.
    UserPass { user: String, pass: String },
    /// One client SASL step with data.
    Sasl { ctx: SaslCtx, data: Vec<u8> },
}

#[derive(Debug)]
enum Step {
    /// Session cache: waiting for `handle_cache_lookup`.
    CacheLookup,
    Acquiring,
    /// POP3: USER sent.
    AwaitUser,
    /// IMAP without SASL-IR: `AUTHENTICATE mech` sent, waiting for the empty `+`.
    AwaitContinuation,
    AwaitResult,
    /// `*` sent to end an exchange; its reply is swallowed.
    AwaitReset {
        then: AfterReset,
    },
}

#[derive(Debug)]
enum AfterReset {
    /// Back to the client's SASL exchange (per-step routing).
    ClientSasl(SaslCtx),
    PreAuth,
}

#[derive(Debug)]
struct Op {
    conn: Option<ConnId>,
    kind: OpKind,
    step: Step,
}

#[derive(Debug)]
enum Phase {
    PreAuth,
    /// Waiting for the client's next SASL line.
    ClientSasl(SaslCtx),
    /// A back-end request is in flight; client input waits in `held`.
    Busy(Op),
    /// Authenticated: everything is relayed to and from this connection.
    Leased {
        conn: ConnId,
    },
    /// Session cache: the client logged out; the reset command is in flight and the
    /// back-end's output before its completion still goes to the client.
    Returning {
        conn: ConnId,
        client_tag: String,
        deadline: Duration,
    },
    Closed,
}

#[derive(Debug)]
enum Reader {
    Imap(ImapReader),
    Pop3(Pop3Reader),
}

/// Cap on a relayed or held chunk summarised in the trace.
const TRACE_TEXT: usize = 80;

/// The tag of the front-end's own reset command on a leased connection (session cache).
const RESET_TAG: &str = "FE.RESET";

/// Lines longer than this in a kept session's traffic pass unexamined (a LOGOUT line and
/// the reset's completion are far shorter).
const SCAN_LINE: usize = 256;

/// How long a client's LOGOUT waits for the back-end's replies to its earlier commands
/// before the session is given up (closed rather than parked).
const RETURN_WAIT: Duration = Duration::from_secs(5);

/// Where a kept session's reset (UNSELECT) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reset {
    /// Nothing selected (fresh from LOGIN, or reset).
    Done,
    /// Taken from the cache: the reset goes out ahead of the client's first command.
    Needed,
    /// Sent; back-end output up to its completion belongs to the previous client.
    InFlight,
}

/// A lease that may end in the session cache.
#[derive(Debug)]
struct Keep {
    user: String,
    digest: CredentialDigest,
    ok_text: String,
    /// The back-end can UNSELECT: without it the session is not kept.
    unselect: bool,
    /// A client command used the reset tag: the session is not kept.
    tainted: bool,
    reset: Reset,
    /// Client commands relayed, and tagged completions relayed back (the reset's own not
    /// counted): equal when nothing is outstanding.
    commands: u64,
    completions: u64,
    client: StreamScanner,
    backend: StreamScanner,
}

impl Keep {
    fn new(
        user: String,
        digest: CredentialDigest,
        ok_text: String,
        unselect: bool,
        reset: Reset,
    ) -> Keep {
        Keep {
            user,
            digest,
            ok_text,
            unselect,
            tainted: false,
            reset,
            commands: 0,
            completions: 0,
            client: StreamScanner::new(SCAN_LINE),
            backend: StreamScanner::responses(SCAN_LINE),
        }
    }

    /// Nothing the client sent is still waiting for its completion, and no reset is in
    /// flight.
    fn drained(&self) -> bool {
        self.commands == self.completions && self.reset != Reset::InFlight
    }
}

fn is_reset_reply(line: &[u8]) -> bool {
    line.starts_with(RESET_TAG.as_bytes()) && line.get(RESET_TAG.len()) == Some(&b' ')
}

/// The front-end's side of one client connection.
pub struct FrontendSession {
    protocol: Protocol,
    profile: Arc<FrontendProfile>,
    limits: Limits,
    features: BackendFeatures,
    framer: Framer,
    /// Client input that arrived while a back-end request was in flight.
    held: Vec<u8>,
    phase: Phase,
    reader: Reader,
    out: VecDeque<Output>,
    backend_out: VecDeque<BackendIo>,
    trace: Vec<String>,
    /// Whether trace lines are recorded (on unless [`FrontendSession::set_tracing`]).
    tracing: bool,
    findings: Vec<Finding>,
    pending_user: Option<String>,
    /// The user whose credentials opened the lease.
    user: Option<String>,
    /// Session cache: the key for credential digests (none: the cache is off).
    cache_key: Option<Arc<CacheKey>>,
    /// Session cache: the lease may be parked at the client's LOGOUT.
    keep: Option<Keep>,
    closing: bool,
    closed: bool,
    last_input: Duration,
}

impl FrontendSession {
    /// A new client session; the greeting is queued at once.
    pub fn new(
        protocol: Protocol,
        profile: Arc<FrontendProfile>,
        limits: Limits,
        features: BackendFeatures,
    ) -> Self {
        let greeting = match protocol {
            Protocol::Imap => format!("* OK {}\r\n", profile.imap_greeting),
            Protocol::Pop3 => format!("+OK {}\r\n", profile.pop3_greeting),
        };
        let mut s = FrontendSession {
            protocol,
            profile,
            limits,
            features,
            framer: Framer::new(),
            held: Vec::new(),
            phase: Phase::PreAuth,
            reader: new_reader(protocol),
            out: VecDeque::new(),
            backend_out: VecDeque::new(),
            trace: Vec::new(),
            tracing: true,
            findings: Vec::new(),
            pending_user: None,
            user: None,
            cache_key: None,
            keep: None,
            closing: false,
            closed: false,
            last_input: Duration::ZERO,
        };
        s.write(greeting.as_bytes());
        s
    }

    /// Turns the session cache on (IMAP, when the profile's pool says `keep_sessions`):
    /// credential digests are made with `key`.
    pub fn set_cache_key(&mut self, key: Arc<CacheKey>) {
        if self.protocol == Protocol::Imap && self.profile.pool.keep_sessions {
            self.cache_key = Some(key);
        }
    }

    /// The next back-end action the adapter must perform.
    pub fn poll_backend(&mut self) -> Option<BackendIo> {
        self.backend_out.pop_front()
    }

    /// Records trace lines (the default) or not: the trace only describes what the
    /// session did (for the lab's log and tests); nothing the session does depends on it.
    pub fn set_tracing(&mut self, on: bool) {
        self.tracing = on;
    }

    /// Trace lines produced since the last call.
    pub fn take_trace(&mut self) -> Vec<String> {
        std::mem::take(&mut self.trace)
    }

    /// Findings produced since the last call.
    pub fn take_findings(&mut self) -> Vec<Finding> {
        std::mem::take(&mut self.findings)
    }

    /// The user whose login opened the lease (the name as the client gave it).
    pub fn authenticated_user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The leased back-end connection, once authenticated.
    pub fn leased_connection(&self) -> Option<ConnId> {
        match self.phase {
            Phase::Leased { conn } | Phase::Returning { conn, .. } => Some(conn),
            _ => None,
        }
    }

    /// The session has ended (or is ending): its output ends with `Close`.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Octets of client input held (framer plus input waiting for the back-end).
    pub fn buffered_input(&self) -> usize {
        self.framer.held() + self.held.len()
    }

    /// Client input the session holds while a back-end request is in flight, at most.
    fn held_cap(&self) -> usize {
        self.limits.max_line.saturating_mul(4).max(4096)
    }

    fn be(&mut self, conn: ConnId, dir: &str, text: impl AsRef<str>) {
        if self.tracing {
            self.trace
                .push(format!("be#{conn} {dir} {}", text.as_ref()));
        }
    }

    fn note(&mut self, line: String) {
        if self.tracing {
            self.trace.push(line);
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        if self.closing || bytes.is_empty() {
            return;
        }
        if let Some(Output::Write(v)) = self.out.back_mut() {
            v.extend_from_slice(bytes);
        } else {
            self.out.push_back(Output::Write(bytes.to_vec()));
        }
    }

    fn close(&mut self) {
        if !self.closing {
            self.out.push_back(Output::Close);
            self.closing = true;
        }
        // Whatever connection the session holds is in an unknown state now.
        self.keep = None;
        match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::Leased { conn } | Phase::Returning { conn, .. } => self.discard(conn),
            Phase::Busy(Op { conn: Some(c), .. }) => self.discard(c),
            Phase::ClientSasl(SaslCtx {
                pinned: Some(c), ..
            }) => self.discard(c),
            _ => {}
        }
        self.framer.clear();
        self.held.clear();
    }

    fn discard(&mut self, conn: ConnId) {
        self.be(conn, "xx", "closed (discarded)");
        self.backend_out.push_back(BackendIo::Discard { conn });
    }

    fn release(&mut self, conn: ConnId) {
        self.be(conn, "..", "back to the pool");
        self.backend_out.push_back(BackendIo::Release { conn });
    }

    fn send(&mut self, conn: ConnId, bytes: Vec<u8>, trace: String) {
        self.be(conn, "<-", trace);
        self.backend_out.push_back(BackendIo::Send { conn, bytes });
    }

    // ---- client replies written by the front-end itself ----

    fn imap_tagged(&mut self, tag: &str, status: &str, text: &str) {
        self.write(format!("{tag} {status} {text}\r\n").as_bytes());
    }

    fn pop_ok(&mut self, text: &str) {
        if text.is_empty() {
            self.write(b"+OK\r\n");
        } else {
            self.write(format!("+OK {text}\r\n").as_bytes());
        }
    }

    fn pop_err(&mut self, text: &str) {
        self.write(format!("-ERR {text}\r\n").as_bytes());
    }

    /// Answers a failed step of the client's exchange, in the client's protocol.
    fn client_fail(&mut self, tag: &str, status: &str, text: &str) {
        match self.protocol {
            Protocol::Imap => self.imap_tagged(tag, status, text),
            Protocol::Pop3 => self.pop_err(text),
        }
    }

    // ---- reading client input ----

    fn frame_config(&self) -> FrameConfig {
        let max_line = self.limits.max_line.max(64);
        FrameConfig {
            max_line,
            // Before authentication only credentials travel in literals.
            max_literal: self.limits.max_literal.min(max_line),
            literal_plus: true,
        }
    }

    /// Runs every complete client message while the front-end itself is answering.
    fn process(&mut self) {
        loop {
            if self.closing {
                return;
            }
            let mode = match (&self.phase, self.protocol) {
                (Phase::PreAuth, Protocol::Imap) => FrameMode::Command,
                (Phase::PreAuth, Protocol::Pop3) | (Phase::ClientSasl(_), _) => FrameMode::Line,
                _ => return,
            };
            let cfg = self.frame_config();
            let Some(frame) = self.framer.next_frame(mode, cfg) else {
                return;
            };
            match frame {
                Frame::ContinuationNeeded => self.write(LITERAL_CONTINUATION),
                Frame::Rejected { tag, error } => {
                    if let Phase::ClientSasl(ctx) =
                        std::mem::replace(&mut self.phase, Phase::PreAuth)
                    {
                        self.abandon_sasl(ctx, "BAD", &error.to_string());
                        continue;
                    }
                    match (self.protocol, tag) {
                        (Protocol::Imap, Some(tag)) => {
                            self.imap_tagged(&tag, "BAD", &error.to_string())
                        }
                        (Protocol::Imap, None) => {
                            self.write(format!("* BAD {error}\r\n").as_bytes())
                        }
                        (Protocol::Pop3, _) => self.pop_err(&error.to_string()),
                    }
                }
                Frame::Line(line) => match std::mem::replace(&mut self.phase, Phase::PreAuth) {
                    Phase::ClientSasl(ctx) => self.sasl_line(ctx, &line),
                    Phase::PreAuth => self.pop3_line(&line),
                    other => self.phase = other,
                },
                Frame::Command(msg) => self.imap_command(&msg),
            }
        }
    }

    /// A back-end request finished: go on with what the client sent meanwhile.
    fn resume(&mut self) {
        let held = std::mem::take(&mut self.held);
        match self.phase {
            Phase::Leased { conn } => {
                let mut rest = self.framer.take_unread();
                rest.extend_from_slice(&held);
                if !rest.is_empty() {
                    self.client_to_backend(conn, rest);
                }
            }
            Phase::PreAuth | Phase::ClientSasl(_) => {
                self.framer.push(&held);
                self.process();
            }
            Phase::Returning { .. } => {}
            Phase::Busy(_) | Phase::Closed => self.held = held,
        }
    }

    /// Client bytes after the lease. With the session cache on, a LOGOUT at a command
    /// boundary is not relayed (the session may be parked instead), and a session taken
    /// from the cache gets its reset ahead of the client's first command.
    fn client_to_backend(&mut self, conn: ConnId, bytes: Vec<u8>) {
        let Some(keep) = self.keep.as_mut() else {
            self.relay_to_backend(conn, bytes);
            return;
        };
        let mut pieces = Vec::new();
        keep.client.push(&bytes, &mut pieces);
        let mut relay = Vec::with_capacity(bytes.len());
        let mut logout = None;
        for piece in pieces {
            match piece {
                Piece::Line(line) => {
                    if let Some(tag) = logout_tag(&line) {
                        // Anything after LOGOUT is not obeyed (the server would close).
                        logout = Some((String::from_utf8_lossy(tag).into_owned(), line));
                        break;
                    }
                    keep.tainted |= is_reset_reply(&line);
                    keep.commands += u64::from(is_tagged(&line));
                    relay.extend_from_slice(&line);
                }
                Piece::LongLine { head } => {
                    keep.tainted |= is_reset_reply(&head);
                    keep.commands += u64::from(is_tagged(&head));
                }
                Piece::Other(b) => relay.extend_from_slice(&b),
            }
        }
        if !relay.is_empty() {
            let mut before = Vec::new();
            if keep.reset == Reset::Needed {
                // In the same write as the client's first command.
                keep.reset = Reset::InFlight;
                before = format!("{RESET_TAG} UNSELECT\r\n").into_bytes();
                self.be(
                    conn,
                    "<-",
                    format!(
                        "{RESET_TAG} UNSELECT (reset of the cached session, ahead of the client)"
                    ),
                );
            }
            self.relay_after(conn, before, relay);
        }
        if let Some((tag, line)) = logout {
            self.logout_leased(conn, tag, line);
        }
    }

    /// The client sent LOGOUT on a lease that may be kept: once the back-end has answered
    /// everything the client sent before, the front-end answers the LOGOUT itself and the
    /// session is parked (its reset waits for the next client). A session that cannot be
    /// kept gets the LOGOUT relayed.
    fn logout_leased(&mut self, conn: ConnId, client_tag: String, line: Vec<u8>) {
        let Some(keep) = self.keep.as_ref() else {
            self.relay_to_backend(conn, line);
            return;
        };
        let why = if !keep.unselect {
            Some("the back-end does not offer UNSELECT")
        } else if keep.tainted {
            Some("the client used the front-end's reset tag")
        } else {
            None
        };
        if let Some(why) = why {
            self.be(conn, "..", format!("session cache: not kept ({why})"));
            self.keep = None;
            self.relay_to_backend(conn, line);
            return;
        }
        self.phase = Phase::Returning {
            conn,
            client_tag,
            deadline: self.last_input.saturating_add(RETURN_WAIT),
        };
        self.finish_return(conn);
    }

    /// Back-end output on a kept lease: the previous client's leftovers and the reset's
    /// completion are swallowed, the rest is relayed with its completions counted.
    fn kept_backend_input(&mut self, conn: ConnId, bytes: &[u8]) {
        let Some(keep) = self.keep.as_mut() else {
            return;
        };
        let mut pieces = Vec::new();
        keep.backend.push(bytes, &mut pieces);
        if keep.reset != Reset::InFlight {
            // The common case: relay the bytes as they came.
            for piece in &pieces {
                match piece {
                    Piece::Line(line) => keep.completions += u64::from(is_tagged(line)),
                    Piece::LongLine { head } => keep.completions += u64::from(is_tagged(head)),
                    Piece::Other(_) => {}
                }
            }
            self.be(conn, "->", format!("relay {} bytes", bytes.len()));
            self.write(bytes);
            return;
        }
        let mut relay = Vec::new();
        let mut swallowed = 0usize;
        let mut failed = None;
        for piece in pieces {
            let reset_reply = match &piece {
                Piece::Line(line) | Piece::LongLine { head: line } => {
                    keep.reset == Reset::InFlight && is_reset_reply(line)
                }
                Piece::Other(_) => false,
            };
            match piece {
                Piece::Line(line) | Piece::LongLine { head: line } if reset_reply => {
                    let status = line
                        .get(RESET_TAG.len() + 1..)
                        .and_then(|r| r.split(|&b| b == b' ').next())
                        .unwrap_or_default()
                        .to_ascii_uppercase();
                    // RFC 3691: OK, or BAD when no mailbox was selected; either way the
                    // session is in the authenticated state now.
                    if status == b"OK" || status == b"BAD" {
                        keep.reset = Reset::Done;
                    } else {
                        failed = Some(printable(&line, TRACE_TEXT));
                    }
                    swallowed += line.len();
                }
                Piece::Line(b) | Piece::Other(b) if keep.reset == Reset::InFlight => {
                    swallowed += b.len();
                }
                Piece::LongLine { .. } if keep.reset == Reset::InFlight => {}
                Piece::Line(line) => {
                    keep.completions += u64::from(is_tagged(&line));
                    relay.extend_from_slice(&line);
                }
                Piece::LongLine { head } => keep.completions += u64::from(is_tagged(&head)),
                Piece::Other(b) => relay.extend_from_slice(&b),
            }
            if failed.is_some() {
                break;
            }
        }
        if swallowed > 0 {
            self.be(
                conn,
                "->",
                format!("{swallowed} bytes swallowed (the reset and what came before it)"),
            );
        }
        if let Some(line) = failed {
            self.be(conn, "!!", format!("reset refused: {line}"));
            self.write(b"* BYE [UNAVAILABLE] Back-end session lost.\r\n");
            self.close();
            return;
        }
        if !relay.is_empty() {
            self.be(conn, "->", format!("relay {} bytes", relay.len()));
            self.write(&relay);
        }
    }

    /// A LOGOUT is waiting: when the back-end has answered everything before it, answer
    /// the client and park the session.
    fn finish_return(&mut self, conn: ConnId) {
        let drained = self.keep.as_ref().is_some_and(Keep::drained);
        if !drained {
            return;
        }
        let Phase::Returning { client_tag, .. } = std::mem::replace(&mut self.phase, Phase::Closed)
        else {
            return;
        };
        self.write(b"* BYE Microsoft Exchange 2000 IMAP4rev1 server signing off.\r\n");
        self.imap_tagged(&client_tag, "OK", "LOGOUT completed.");
        if let Some(keep) = self.keep.take() {
            self.be(
                conn,
                "..",
                format!(
                    "session cache: parked (user {})",
                    printable(keep.user.as_bytes(), 64)
                ),
            );
            self.backend_out.push_back(BackendIo::Park {
                conn,
                user: keep.user,
                digest: keep.digest,
                ok_text: keep.ok_text,
            });
        }
        self.close();
    }

    /// Relays client bytes after the lease. The trace names the command only (IMAP tag
    /// and command, POP3 keyword) and the size, so a password typed again is not shown.
    fn relay_to_backend(&mut self, conn: ConnId, bytes: Vec<u8>) {
        self.relay_after(conn, Vec::new(), bytes);
    }

    /// Relays client bytes behind `before` (the front-end's own, traced already) in one
    /// write.
    fn relay_after(&mut self, conn: ConnId, mut before: Vec<u8>, bytes: Vec<u8>) {
        let first_line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
        let words = match self.protocol {
            Protocol::Imap => 2,
            Protocol::Pop3 => 1,
        };
        // Called for every chunk of client bytes: the text is made only when traced.
        let text = if self.tracing {
            let head: Vec<String> = first_line
                .split(|&b| b == b' ')
                .take(words)
                .map(|w| printable(w, 32))
                .collect();
            format!("relay {} ({} bytes)", head.join(" "), bytes.len())
        } else {
            String::new()
        };
        if before.is_empty() {
            self.send(conn, bytes, text);
        } else {
            before.extend_from_slice(&bytes);
            self.send(conn, before, text);
        }
    }

    fn start(&mut self, kind: OpKind) {
        self.reader = new_reader(self.protocol);
        let pinned = match &kind {
            OpKind::Sasl { ctx, .. } => ctx.pinned,
            _ => None,
        };
        match pinned {
            Some(conn) => {
                // The exchange lives on this connection: the step is a plain SASL line.
                let OpKind::Sasl { ctx, data } = kind else {
                    return;
                };
                let mut line = encode_base64(&data).into_bytes();
                line.extend_from_slice(b"\r\n");
                let text = describe_sasl(ctx.mech, &data);
                self.phase = Phase::Busy(Op {
                    conn: Some(conn),
                    kind: OpKind::Sasl { ctx, data },
                    step: Step::AwaitResult,
                });
                self.send(conn, line, text);
            }
            None => {
                let lookup = match &kind {
                    OpKind::Login {
                        user,
                        digest: Some(digest),
                        ..
                    } => Some(BackendIo::CacheLookup {
                        user: user.clone(),
                        digest: digest.clone(),
                    }),
                    _ => None,
                };
                let (step, io) = match lookup {
                    Some(io) => (Step::CacheLookup, io),
                    None => (Step::Acquiring, BackendIo::Acquire),
                };
                self.phase = Phase::Busy(Op {
                    conn: None,
                    kind,
                    step,
                });
                self.backend_out.push_back(io);
            }
        }
    }

    // ---- IMAP, before authentication ----

    fn imap_command(&mut self, msg: &[u8]) {
        let codec = CommandCodec::default();
        let cmd = match codec.decode(msg) {
            Ok((&[], cmd)) => cmd,
            _ => {
                let error = crate::imap::diagnose(msg);
                match crate::imap::framer::first_tag(msg) {
                    Some(tag) => self.imap_tagged(&tag, "BAD", &error.to_string()),
                    None => self.write(format!("* BAD {error}\r\n").as_bytes()),
                }
                return;
            }
        };
        let tag = cmd.tag.as_ref().to_string();
        match cmd.body {
            CommandBody::Capability => {
                let mut caps = String::from("* CAPABILITY IMAP4rev1 IMAP4 IDLE LITERAL+");
                if self.profile.advertise_ntlm {
                    caps.push_str(" AUTH=NTLM");
                }
                caps.push_str("\r\n");
                self.write(caps.as_bytes());
                self.imap_tagged(&tag, "OK", "CAPABILITY completed.");
            }
            CommandBody::Noop => self.imap_tagged(&tag, "OK", "NOOP completed."),
            CommandBody::Logout => {
                self.write(b"* BYE Microsoft Exchange 2000 IMAP4rev1 server signing off.\r\n");
                self.imap_tagged(&tag, "OK", "LOGOUT completed.");
                self.close();
            }
            CommandBody::Login { username, password } => {
                let user = std::str::from_utf8(username.as_ref()).ok();
                let pass = std::str::from_utf8(password.declassify().as_ref()).ok();
                match (user.filter(|u| quotable(u)), pass.filter(|p| quotable(p))) {
                    (Some(u), Some(p)) => {
                        let digest = self.cache_key.as_ref().map(|k| k.digest(u, p));
                        let kind = OpKind::Login {
                            tag: tag.clone(),
                            user: u.to_string(),
                            pass: p.to_string(),
                            digest,
                        };
                        self.start(kind);
                    }
                    _ => self.imap_tagged(&tag, "NO", "LOGIN failed."),
                }
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } => {
                let Some(mech) = Mechanism::parse(mechanism.as_ref())
                    .filter(|m| matches!(m, Mechanism::Plain | Mechanism::Ntlm))
                else {
                    self.imap_tagged(&tag, "NO", "Unsupported authentication mechanism.");
                    return;
                };
                let ctx = SaslCtx {
                    tag: tag.clone(),
                    mech,
                    pinned: None,
                    prev: None,
                };
                match initial_response {
                    Some(ir) => {
                        let data = ir.declassify().to_vec();
                        self.start(OpKind::Sasl { ctx, data });
                    }
                    None => {
                        // [MS-OXIMAP4] 2.2.1 prints the empty continuation as a bare `+`.
                        self.write(b"+\r\n");
                        self.phase = Phase::ClientSasl(ctx);
                    }
                }
            }
            CommandBody::StartTLS => {
                self.imap_tagged(&tag, "BAD", "STARTTLS is not offered by this front-end.")
            }
            _ => self.imap_tagged(&tag, "BAD", "Command received in Invalid state."),
        }
    }

    // ---- POP3, before authentication ----

    fn pop3_line(&mut self, line: &[u8]) {
        let cmd = match PopCommand::decode(line) {
            Ok(c) => c,
            Err(e) => {
                self.pending_user = None;
                self.pop_err(&format!("Protocol error: {e}"));
                return;
            }
        };
        let pending_user = self.pending_user.take();
        match cmd {
            PopCommand::Capa => {
                let mut out = b"+OK Capability list follows\r\nUSER\r\nTOP\r\nUIDL\r\n".to_vec();
                if self.profile.advertise_ntlm {
                    out.extend_from_slice(b"SASL NTLM\r\n");
                }
                out.extend_from_slice(b".\r\n");
                self.write(&out);
            }
            PopCommand::Auth {
                mechanism: None, ..
            } => {
                // [MS-POP3] 2.2.1: AUTH alone lists the mechanisms.
                let mut out = b"+OK\r\n".to_vec();
                if self.profile.advertise_ntlm {
                    out.extend_from_slice(b"NTLM\r\n");
                }
                out.extend_from_slice(b".\r\n");
                self.write(&out);
            }
            PopCommand::Auth {
                mechanism: Some(name),
                initial,
            } => {
                let Some(mech) = Mechanism::parse(&name)
                    .filter(|m| matches!(m, Mechanism::Plain | Mechanism::Ntlm))
                else {
                    self.pop_err("Unrecognized authentication type.");
                    return;
                };
                let ctx = SaslCtx {
                    tag: String::new(),
                    mech,
                    pinned: None,
                    prev: None,
                };
                match initial {
                    None => {
                        // [MS-OXPOP3] 2.2.1: the empty continuation is `+` SP.
                        self.write(b"+ \r\n");
                        self.phase = Phase::ClientSasl(ctx);
                    }
                    Some(InitialResponse::Empty) => self.start(OpKind::Sasl {
                        ctx,
                        data: Vec::new(),
                    }),
                    Some(InitialResponse::Base64(text)) => match decode_base64(text.as_bytes()) {
                        Ok(data) => self.start(OpKind::Sasl { ctx, data }),
                        Err(e) => self.pop_err(&e.to_string()),
                    },
                }
            }
            PopCommand::User(name) => {
                self.pending_user = Some(name);
                self.pop_ok("");
            }
            PopCommand::Pass(pass) => match pending_user {
                Some(user) => self.start(OpKind::UserPass { user, pass }),
                None => self.pop_err("Command is not valid in this state."),
            },
            PopCommand::Quit => {
                self.pop_ok("Microsoft Exchange 2000 POP3 server signing off.");
                self.close();
            }
            PopCommand::Unknown(_) => self.pop_err("Protocol error."),
            _ => self.pop_err("Command is not valid in this state."),
        }
    }

    // ---- the client's SASL lines ----

    fn sasl_line(&mut self, ctx: SaslCtx, line: &[u8]) {
        let trimmed = line.strip_suffix(b" ").unwrap_or(line);
        if trimmed == b"*" {
            self.abandon_sasl(
                ctx,
                "NO",
                "The AUTH protocol exchange was canceled by the client.",
            );
            return;
        }
        match decode_base64(line) {
            Ok(data) => self.start(OpKind::Sasl { ctx, data }),
            Err(e) => self.abandon_sasl(ctx, "BAD", &e.to_string()),
        }
    }

    /// Ends the client's exchange with a failure answered by the front-end; a pinned
    /// back-end exchange is reset first.
    fn abandon_sasl(&mut self, ctx: SaslCtx, status: &str, text: &str) {
        self.client_fail(&ctx.tag, status, text);
        match ctx.pinned {
            Some(conn) => self.reset(conn, ctx.tag, "the client's exchange ended"),
            None => self.phase = Phase::PreAuth,
        }
    }

    /// Sends `*` to end the back-end's exchange; its reply is swallowed.
    fn reset(&mut self, conn: ConnId, tag: String, why: &str) {
        self.phase = Phase::Busy(Op {
            conn: Some(conn),
            kind: OpKind::Reset { tag },
            step: Step::AwaitReset {
                then: AfterReset::PreAuth,
            },
        });
        self.send(conn, b"*\r\n".to_vec(), format!("* ({why})"));
    }

    // ---- back-end events ----

    /// The adapter's answer to `CacheLookup`: a parked session of the user with the same
    /// credentials, or none (then the login goes to a pooled connection as usual).
    pub fn handle_cache_lookup(&mut self, found: Option<Parked>) {
        let op = match std::mem::replace(&mut self.phase, Phase::PreAuth) {
            Phase::Busy(op) if matches!(op.step, Step::CacheLookup) => op,
            other => {
                self.phase = other;
                if let Some(p) = found {
                    // Not wanted (any more): the session cannot be parked again as it is.
                    self.discard(p.conn);
                }
                return;
            }
        };
        let OpKind::Login {
            tag,
            user,
            digest: Some(digest),
            ..
        } = &op.kind
        else {
            self.phase = Phase::Busy(op);
            return;
        };
        let shown = printable(user.as_bytes(), 64);
        match found {
            Some(parked) => {
                let conn = parked.conn;
                self.note(format!(
                    "session cache: hit (user {shown}): be#{conn}, no back-end LOGIN"
                ));
                self.write(format!("{tag} {}\r\n", parked.ok_text).as_bytes());
                self.user = Some(user.clone());
                self.keep = Some(Keep::new(
                    user.clone(),
                    digest.clone(),
                    parked.ok_text,
                    true,
                    Reset::Needed,
                ));
                self.be(
                    conn,
                    "..",
                    format!("leased to the client session (user {shown})"),
                );
                self.backend_out.push_back(BackendIo::Lease { conn });
                self.phase = Phase::Leased { conn };
                self.resume();
            }
            None => {
                self.note(format!("session cache: miss (user {shown})"));
                self.phase = Phase::Busy(Op {
                    step: Step::Acquiring,
                    ..op
                });
                self.backend_out.push_back(BackendIo::Acquire);
            }
        }
    }

    /// The adapter handed out a connection for the request asked with `Acquire`.
    pub fn handle_backend_granted(&mut self, conn: ConnId) {
        let sasl_ir = self.features.imap_sasl_ir;
        let protocol = self.protocol;
        let op = match &mut self.phase {
            Phase::Busy(op) if matches!(op.step, Step::Acquiring) => op,
            _ => {
                // Not wanted (any more): give it back untouched.
                self.release(conn);
                return;
            }
        };
        op.conn = Some(conn);
        let mut finding = None;
        let (bytes, text, step) = match &op.kind {
            OpKind::Login {
                tag, user, pass, ..
            } => (
                format!("{tag} LOGIN {} {}\r\n", quote(user), quote(pass)).into_bytes(),
                format!("{tag} LOGIN {} <password>", printable(user.as_bytes(), 64)),
                Step::AwaitResult,
            ),
            OpKind::UserPass { user, .. } => (
                format!("USER {user}\r\n").into_bytes(),
                format!("USER {}", printable(user.as_bytes(), 64)),
                Step::AwaitUser,
            ),
            OpKind::Sasl { ctx, data } => {
                if let Some(first) = ctx.prev.filter(|p| *p != conn) {
                    finding = Some(Finding::ContextSplit { first, then: conn });
                }
                let desc = describe_sasl(ctx.mech, data);
                let mech = ctx.mech.name();
                let b64 = if data.is_empty() {
                    "=".to_string()
                } else {
                    encode_base64(data)
                };
                let tag = &ctx.tag;
                match protocol {
                    Protocol::Imap if sasl_ir => (
                        format!("{tag} AUTHENTICATE {mech} {b64}\r\n").into_bytes(),
                        format!("{tag} AUTHENTICATE {mech} {desc}"),
                        Step::AwaitResult,
                    ),
                    Protocol::Imap => (
                        format!("{tag} AUTHENTICATE {mech}\r\n").into_bytes(),
                        format!("{tag} AUTHENTICATE {mech}"),
                        Step::AwaitContinuation,
                    ),
                    Protocol::Pop3 => (
                        format!("AUTH {mech} {b64}\r\n").into_bytes(),
                        format!("AUTH {mech} {desc}"),
                        Step::AwaitResult,
                    ),
                }
            }
            OpKind::Reset { .. } => (
                b"*\r\n".to_vec(),
                "* (reset)".to_string(),
                Step::AwaitReset {
                    then: AfterReset::PreAuth,
                },
            ),
        };
        op.step = step;
        if let Some(Finding::ContextSplit { first, then }) = finding {
            self.note(format!(
                "!! context split: this NTLM step went to be#{then}, the previous one to be#{first}"
            ));
            self.findings.push(Finding::ContextSplit { first, then });
        }
        self.send(conn, bytes, text);
    }

    /// Bytes a back-end connection sent.
    pub fn handle_backend_input(&mut self, conn: ConnId, bytes: &[u8]) {
        match &self.phase {
            Phase::Leased { conn: c } if *c == conn => {
                if self.keep.is_some() {
                    self.kept_backend_input(conn, bytes);
                } else {
                    self.be(conn, "->", format!("relay {} bytes", bytes.len()));
                    self.write(bytes);
                }
                return;
            }
            Phase::Returning { conn: c, .. } if *c == conn => {
                self.kept_backend_input(conn, bytes);
                self.finish_return(conn);
                return;
            }
            Phase::Busy(Op { conn: Some(c), .. }) if *c == conn => {}
            _ => {
                self.be(
                    conn,
                    "->",
                    format!("{} bytes ignored (nothing asked)", bytes.len()),
                );
                return;
            }
        }
        match &mut self.reader {
            Reader::Imap(r) => r.push(bytes),
            Reader::Pop3(r) => r.push(bytes),
        }
        loop {
            let tag = match &self.phase {
                Phase::Busy(op) if op.conn == Some(conn) => op_tag(&op.kind),
                _ => break,
            };
            let event = match &mut self.reader {
                Reader::Imap(r) => r.next_event(&tag),
                Reader::Pop3(r) => r.next_event(),
            };
            match event {
                Ok(None) => return,
                Ok(Some(ev)) => self.on_event(conn, ev),
                Err(e) => self.backend_failed(conn, e),
            }
        }
        self.resume();
    }

    /// A back-end connection closed (or broke).
    pub fn handle_backend_closed(&mut self, conn: ConnId) {
        match &self.phase {
            Phase::Leased { conn: c } | Phase::Returning { conn: c, .. } if *c == conn => {
                self.be(conn, "->", "closed; ending the client session");
                if let Phase::Returning { client_tag, .. } =
                    std::mem::replace(&mut self.phase, Phase::Leased { conn })
                {
                    // The client asked to log out: it is answered all the same.
                    self.write(b"* BYE Microsoft Exchange 2000 IMAP4rev1 server signing off.\r\n");
                    self.imap_tagged(&client_tag, "OK", "LOGOUT completed.");
                }
                self.close();
            }
            Phase::Busy(Op { conn: Some(c), .. }) if *c == conn => {
                self.backend_failed(conn, BackendError::Closed);
                self.resume();
            }
            Phase::ClientSasl(SaslCtx {
                pinned: Some(c),
                tag,
                ..
            }) if *c == conn => {
                let tag = tag.clone();
                self.discard(conn);
                self.client_fail(&tag, "NO", "[UNAVAILABLE] Back-end connection lost.");
                self.phase = Phase::PreAuth;
            }
            _ => {}
        }
    }

    fn backend_failed(&mut self, conn: ConnId, error: BackendError) {
        self.be(conn, "!!", error.to_string());
        self.discard(conn);
        let Phase::Busy(op) = std::mem::replace(&mut self.phase, Phase::PreAuth) else {
            return;
        };
        match (op.kind, op.step) {
            // The client's exchange does not need this connection any more.
            (
                _,
                Step::AwaitReset {
                    then: AfterReset::ClientSasl(ctx),
                },
            ) => self.phase = Phase::ClientSasl(ctx),
            // The client was answered before the reset.
            (_, Step::AwaitReset { .. }) => {}
            (kind, _) => {
                let tag = op_tag(&kind);
                let text = match self.protocol {
                    Protocol::Imap => "[UNAVAILABLE] Back-end connection failed.",
                    Protocol::Pop3 => "[SYS/TEMP] Back-end connection failed.",
                };
                self.client_fail(&tag, "NO", text);
            }
        }
    }

    fn on_event(&mut self, conn: ConnId, event: BackendEvent) {
        let Phase::Busy(mut op) = std::mem::replace(&mut self.phase, Phase::PreAuth) else {
            return;
        };
        match event {
            BackendEvent::Untagged(raw) => {
                self.be(conn, "->", printable(&raw, TRACE_TEXT));
                self.phase = Phase::Busy(op);
            }
            BackendEvent::Done { ok, raw } => {
                let shown = printable(&raw, TRACE_TEXT);
                match op.step {
                    Step::AwaitReset { then } => {
                        self.be(conn, "->", format!("{shown} (swallowed)"));
                        self.release(conn);
                        self.phase = match then {
                            AfterReset::ClientSasl(ctx) => Phase::ClientSasl(ctx),
                            AfterReset::PreAuth => Phase::PreAuth,
                        };
                    }
                    Step::AwaitUser if ok => {
                        self.be(conn, "->", shown);
                        if let OpKind::UserPass { pass, .. } = &op.kind {
                            let line = format!("PASS {pass}\r\n").into_bytes();
                            op.step = Step::AwaitResult;
                            self.phase = Phase::Busy(op);
                            self.send(conn, line, "PASS <password>".into());
                        }
                    }
                    Step::AwaitResult if ok => {
                        self.be(conn, "->", shown);
                        self.write(&raw);
                        self.user = op_user(&op.kind);
                        let rest = match &mut self.reader {
                            Reader::Imap(r) => r.take_rest(),
                            Reader::Pop3(r) => r.take_rest(),
                        };
                        self.write(&rest);
                        if let OpKind::Login {
                            tag,
                            user,
                            digest: Some(digest),
                            ..
                        } = op.kind
                        {
                            let ok_text = String::from_utf8_lossy(
                                raw.get(tag.len() + 1..).unwrap_or_default(),
                            )
                            .trim_end_matches(['\r', '\n'])
                            .to_string();
                            let unselect = self.features.imap_unselect
                                || line_has_capability(&raw, "UNSELECT");
                            let mut keep = Keep::new(user, digest, ok_text, unselect, Reset::Done);
                            keep.backend.push(&rest, &mut Vec::new());
                            self.keep = Some(keep);
                        }
                        self.be(
                            conn,
                            "..",
                            format!(
                                "leased to the client session (user {})",
                                self.user.as_deref().unwrap_or("?")
                            ),
                        );
                        self.backend_out.push_back(BackendIo::Lease { conn });
                        self.phase = Phase::Leased { conn };
                    }
                    _ => {
                        // A refusal: the back-end's own words go to the client.
                        self.be(conn, "->", shown);
                        self.write(&raw);
                        self.release(conn);
                    }
                }
            }
            BackendEvent::Continuation { raw, data } => {
                let shown = match (&data, &op.kind) {
                    (Some(d), OpKind::Sasl { ctx, .. }) if !d.is_empty() => {
                        format!("+ {}", describe_sasl(ctx.mech, d))
                    }
                    _ => printable(&raw, TRACE_TEXT),
                };
                self.be(conn, "->", shown);
                match (op.step, op.kind) {
                    (Step::AwaitContinuation, OpKind::Sasl { ctx, data }) => {
                        let mut line = encode_base64(&data).into_bytes();
                        line.extend_from_slice(b"\r\n");
                        let text = describe_sasl(ctx.mech, &data);
                        self.phase = Phase::Busy(Op {
                            conn: Some(conn),
                            kind: OpKind::Sasl { ctx, data },
                            step: Step::AwaitResult,
                        });
                        self.send(conn, line, text);
                    }
                    (Step::AwaitResult, OpKind::Sasl { mut ctx, .. }) => {
                        // The challenge goes to the client as the back-end wrote it.
                        self.write(&raw);
                        ctx.prev = Some(conn);
                        match self.profile.sasl_routing {
                            SaslRouting::Pinned => {
                                ctx.pinned = Some(conn);
                                self.phase = Phase::ClientSasl(ctx);
                            }
                            SaslRouting::PerStep => {
                                ctx.pinned = None;
                                let tag = ctx.tag.clone();
                                self.phase = Phase::Busy(Op {
                                    conn: Some(conn),
                                    kind: OpKind::Reset { tag },
                                    step: Step::AwaitReset {
                                        then: AfterReset::ClientSasl(ctx),
                                    },
                                });
                                self.send(
                                    conn,
                                    b"*\r\n".to_vec(),
                                    "* (reset before returning to the pool)".into(),
                                );
                            }
                        }
                    }
                    (step, kind) => {
                        self.phase = Phase::Busy(Op {
                            conn: Some(conn),
                            kind,
                            step,
                        });
                        self.backend_failed(
                            conn,
                            BackendError::Invalid("unexpected continuation request".into()),
                        );
                    }
                }
            }
        }
    }
}

fn new_reader(protocol: Protocol) -> Reader {
    match protocol {
        Protocol::Imap => Reader::Imap(ImapReader::default()),
        Protocol::Pop3 => Reader::Pop3(Pop3Reader::default()),
    }
}

/// Fits an RFC 3501 quoted string: 7-bit printable (CR, LF, NUL and 8-bit are not).
fn quotable(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// RFC 3501 4.3: a quoted string, `"` and `\` escaped.
fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// The tag a request's reply carries (IMAP), empty for POP3.
fn op_tag(kind: &OpKind) -> String {
    match kind {
        OpKind::Login { tag, .. } | OpKind::Reset { tag } => tag.clone(),
        OpKind::Sasl { ctx, .. } => ctx.tag.clone(),
        OpKind::UserPass { .. } => String::new(),
    }
}

/// The user a successful request authenticated, as the client named it.
fn op_user(kind: &OpKind) -> Option<String> {
    match kind {
        OpKind::Login { user, .. } | OpKind::UserPass { user, .. } => Some(user.clone()),
        OpKind::Sasl { ctx, data } => match ctx.mech {
            Mechanism::Ntlm => match crate::ntlm::Message::decode(data) {
                Ok(crate::ntlm::Message::Authenticate(a)) => Some(a.user),
                _ => None,
            },
            _ => data
                .split(|&b| b == 0)
                .nth(1)
                .map(|u| String::from_utf8_lossy(u).into_owned()),
        },
        OpKind::Reset { .. } => None,
    }
}

impl ServerSession for FrontendSession {
    fn handle_input(&mut self, now: Duration, input: &[u8]) {
        self.last_input = now;
        if self.closing {
            return;
        }
        match self.phase {
            Phase::Leased { conn } => self.client_to_backend(conn, input.to_vec()),
            Phase::Returning { .. } => {}
            Phase::Busy(_) => {
                self.held.extend_from_slice(input);
                if self.held.len() > self.held_cap() {
                    match self.protocol {
                        Protocol::Imap => self.write(b"* BYE Too much input while busy.\r\n"),
                        Protocol::Pop3 => self.pop_err("Too much input while busy."),
                    }
                    self.close();
                }
            }
            Phase::PreAuth | Phase::ClientSasl(_) => {
                self.framer.push(input);
                self.process();
            }
            Phase::Closed => {}
        }
    }

    fn handle_eof(&mut self, _now: Duration) {
        self.close();
    }

    fn handle_timeout(&mut self, now: Duration) {
        if let Phase::Returning { conn, deadline, .. } = self.phase {
            if now >= deadline && !self.closing {
                // The back-end never finished the commands before LOGOUT: give the
                // session up (closed, not parked) and answer the client.
                self.be(
                    conn,
                    "..",
                    "session cache: not kept (replies before LOGOUT never came)",
                );
                if let Phase::Returning { client_tag, .. } =
                    std::mem::replace(&mut self.phase, Phase::Leased { conn })
                {
                    self.write(b"* BYE Microsoft Exchange 2000 IMAP4rev1 server signing off.\r\n");
                    self.imap_tagged(&client_tag, "OK", "LOGOUT completed.");
                }
                self.close();
                return;
            }
        }
        if self.closing || now < self.last_input.saturating_add(self.limits.idle_timeout) {
            return;
        }
        match self.protocol {
            Protocol::Imap => self.write(b"* BYE Connection timed out.\r\n"),
            Protocol::Pop3 => self.pop_err("Connection timed out."),
        }
        self.close();
    }

    fn handle_shutdown(&mut self, _now: Duration) {
        match self.protocol {
            Protocol::Imap => self.write(b"* BYE Server shutting down.\r\n"),
            Protocol::Pop3 => self.pop_err("Server shutting down."),
        }
        self.close();
    }

    fn handle_tls_established(&mut self, _now: Duration) {}

    fn poll_output(&mut self) -> Option<Output> {
        let out = self.out.pop_front();
        if out == Some(Output::Close) {
            self.closed = true;
        }
        out
    }

    fn poll_timeout(&self) -> Option<Duration> {
        let idle = self.last_input.saturating_add(self.limits.idle_timeout);
        let at = match self.phase {
            Phase::Returning { deadline, .. } => idle.min(deadline),
            _ => idle,
        };
        (!self.closing).then_some(at)
    }

    fn is_closed(&self) -> bool {
        self.closed
    }
}
