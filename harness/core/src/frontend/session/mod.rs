//! The client-facing front-end session, sans-IO: client bytes in through
//! [`ServerSession`], back-end work out through [`FrontendSession::poll_backend`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use imap_codec::decode::Decoder;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::CommandCodec;

use super::backend_reply::{BackendError, BackendEvent, ImapReader, Pop3Reader};
use super::cache::{CacheKey, CredentialDigest, Parked};
use super::sasl_trace::describe_sasl;
use super::stream_scanner::{
    is_tagged, line_has_capability, logout_tag, names_command, Piece, StreamScanner,
};
use super::{BackendIo, ConnId, Finding, FrontendProfile, SaslRouting};
use crate::imap::framer::{Frame, FrameConfig, FrameMode, Framer};
use crate::imap::LITERAL_CONTINUATION;
use crate::pop3::command::{Command as PopCommand, InitialResponse};
use crate::sasl::{decode_base64, encode_base64, Mechanism};
use crate::session::{Limits, Output, ServerSession};
use crate::text::printable;
use crate::Protocol;

mod backend_events;
mod client_input;
mod kept;
mod preauth;

use kept::{is_reset_reply, Keep, KeepAs, Reset};
use preauth::quote;

/// What the front-end knows about its back-ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackendFeatures {
    /// The IMAP back-end accepts an initial response on AUTHENTICATE (SASL-IR, RFC 4959);
    /// otherwise the front-end waits for the back-end's empty `+` first.
    pub imap_sasl_ir: bool,
    /// The IMAP back-end's greeting advertises UNSELECT (RFC 3691). A LOGIN completion
    /// with a `[CAPABILITY ...]` code naming it counts too, per connection.
    pub imap_unselect: bool,
    /// The IMAP back-end's greeting advertises UNAUTHENTICATE (RFC 8437). A login
    /// completion with a `[CAPABILITY ...]` code naming it counts too, per connection.
    pub imap_unauthenticate: bool,
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

/// Refused resets of recycled connections one request retries elsewhere before it
/// fails.
const MAX_RESET_FAILURES: u8 = 2;

/// How long a client's LOGOUT waits for the back-end's replies to its earlier commands
/// before the session is given up (closed rather than parked).
const RETURN_WAIT: Duration = Duration::from_secs(5);

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
    /// Session cache or pool reuse: the lease may be parked or recycled at the client's
    /// LOGOUT.
    keep: Option<Keep>,
    /// Pool reuse: `FE.RESET UNAUTHENTICATE` is in flight on this connection, ahead of
    /// the request; its reply has not come yet.
    unauthenticating: Option<ConnId>,
    /// Resets refused in a row for the request in flight (each retried on another
    /// connection).
    reset_failures: u8,
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
            unauthenticating: None,
            reset_failures: 0,
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
        self.unauthenticating = None;
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

    /// Sends a SASL step as a plain base64 line on `conn` (the exchange lives there) and
    /// waits for the back-end's answer to it.
    fn send_sasl_step(&mut self, conn: ConnId, ctx: SaslCtx, data: Vec<u8>) {
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

    /// A multi-line POP3 answer (RFC 1939 3): `head`, then `ntlm_line` when NTLM is
    /// advertised, then the terminating `.`.
    fn pop_list(&mut self, head: &[u8], ntlm_line: &[u8]) {
        let mut out = head.to_vec();
        if self.profile.advertise_ntlm {
            out.extend_from_slice(ntlm_line);
        }
        out.extend_from_slice(b".\r\n");
        self.write(&out);
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
}

fn new_reader(protocol: Protocol) -> Reader {
    match protocol {
        Protocol::Imap => Reader::Imap(ImapReader::default()),
        Protocol::Pop3 => Reader::Pop3(Pop3Reader::default()),
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
