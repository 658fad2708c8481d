//! The IMAP4rev1 server session (RFC 3501): framing, the state machine, command dispatch,
//! STARTTLS and timeouts. The commands' bodies live in `cmd/`, one per file.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use imap_codec::decode::Decoder;
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::search::SearchKey;
use imap_codec::CommandCodec;

use super::framer::{first_tag, Frame, FrameConfig, FrameMode, Framer};
use super::mailbox_name::DELIMITER;
use super::store_caps::StoreCaps;
use super::view::View;
use crate::profile::ImapStatus;
use crate::rng::SeededRng;
use crate::sasl::{Mechanism, SaslServer};
use crate::session::{Output, ServerSession, SessionContext};

/// Text of the synchronising-literal continuation request (RFC 3501 7.5).
pub const LITERAL_CONTINUATION: &[u8] = b"+ Ready for literal data\r\n";

/// How often an idling session (RFC 2177) wants to be polled for mailbox changes.
pub const IDLE_POLL: Duration = Duration::from_secs(1);

/// Why a command was refused; the text goes on the wire after `BAD` / `NO`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("Unknown command")]
    UnknownCommand,
    #[error("Invalid arguments to {0}")]
    InvalidArguments(String),
    #[error("8-bit octets outside a literal")]
    NonAscii,
    #[error("Missing or invalid tag")]
    InvalidTag,
    #[error("{0} is not valid in this state")]
    WrongState(&'static str),
    #[error("{0} is not supported")]
    Unsupported(&'static str),
}

/// Counters the fuzz entry point checks against what it reads on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Command messages that carried a valid tag (each needs one tagged completion).
    pub tagged_commands: u64,
    /// Tagged completions written.
    pub tagged_replies: u64,
}

#[derive(Debug)]
pub(super) enum Mode {
    /// Reading commands.
    Command,
    /// Inside AUTHENTICATE: the next line is a base64 response or `*`.
    Auth { tag: String, sasl: Box<SaslServer> },
    /// Inside IDLE: waiting for `DONE`.
    Idle { tag: String },
    /// After STARTTLS's OK: input is dropped until the handshake is done.
    TlsPending,
}

/// A tagged completion.
pub(super) struct Reply {
    pub status: ImapStatus,
    pub text: String,
}

impl Reply {
    pub fn of(status: ImapStatus, text: impl Into<String>) -> Reply {
        Reply {
            status,
            text: text.into(),
        }
    }
    pub fn ok(text: impl Into<String>) -> Option<Reply> {
        Some(Reply {
            status: ImapStatus::Ok,
            text: text.into(),
        })
    }
    pub fn no(text: impl Into<String>) -> Option<Reply> {
        Some(Reply {
            status: ImapStatus::No,
            text: text.into(),
        })
    }
    pub fn bad(text: impl Into<String>) -> Option<Reply> {
        Some(Reply {
            status: ImapStatus::Bad,
            text: text.into(),
        })
    }
}

/// One IMAP server session.
pub struct ImapServer {
    pub(super) ctx: SessionContext,
    pub(super) rng: SeededRng,
    framer: Framer,
    pub(super) mode: Mode,
    /// The authenticated user (the directory's spelling).
    pub(super) user: Option<String>,
    /// The selected mailbox, if any.
    pub(super) view: Option<View>,
    out: VecDeque<Output>,
    /// Close has been queued; nothing more is read or written.
    closing: bool,
    /// Close has been polled.
    closed: bool,
    last_input: Duration,
    /// When the first byte of the command still in progress arrived.
    partial_since: Option<Duration>,
    last_event: Duration,
    pub(super) now: Duration,
    stats: SessionStats,
    pub(super) auth_mechanism: Option<Mechanism>,
    /// Set by LOGOUT / STARTTLS: what to do right after the tagged completion.
    after_reply: AfterReply,
    pub(super) caps: StoreCaps,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterReply {
    Nothing,
    Close,
    StartTls,
}

/// Command names RFC 3501 and the advertised extensions define, to tell "unknown
/// command" from "bad arguments" when the grammar rejects a line.
const KNOWN_COMMANDS: &[&str] = &[
    "CAPABILITY",
    "NOOP",
    "LOGOUT",
    "STARTTLS",
    "AUTHENTICATE",
    "LOGIN",
    "SELECT",
    "EXAMINE",
    "CREATE",
    "DELETE",
    "RENAME",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "LIST",
    "LSUB",
    "STATUS",
    "APPEND",
    "CHECK",
    "CLOSE",
    "EXPUNGE",
    "SEARCH",
    "FETCH",
    "STORE",
    "COPY",
    "UID",
    "IDLE",
    "UNSELECT",
];

impl ImapServer {
    /// A new session; the greeting is queued at once.
    pub fn new(ctx: SessionContext) -> Self {
        let rng = SeededRng::new(ctx.seed);
        let framer = Framer::with_budget(ctx.budget.clone());
        let mut s = ImapServer {
            ctx,
            rng,
            framer,
            mode: Mode::Command,
            user: None,
            view: None,
            out: VecDeque::new(),
            closing: false,
            closed: false,
            last_input: Duration::ZERO,
            partial_since: None,
            last_event: Duration::ZERO,
            now: Duration::ZERO,
            stats: SessionStats::default(),
            auth_mechanism: None,
            after_reply: AfterReply::Nothing,
            caps: StoreCaps::default(),
        };
        let greeting = format!(
            "* OK [CAPABILITY {}] {}\r\n",
            s.capabilities(),
            s.ctx.profile.imap_greeting(&s.ctx.world.hostname)
        );
        s.write(greeting.as_bytes());
        s
    }

    /// Replaces the default caps on how far this session may grow the store.
    pub fn set_store_caps(&mut self, caps: StoreCaps) {
        self.caps = caps;
    }

    /// The authenticated user, if any.
    pub fn authenticated_user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The SASL mechanism that authenticated the session, if it was AUTHENTICATE.
    pub fn auth_mechanism(&self) -> Option<Mechanism> {
        self.auth_mechanism
    }

    /// The selected mailbox, if any.
    pub fn selected_mailbox(&self) -> Option<&str> {
        self.view.as_ref().map(|v| v.mailbox.as_str())
    }

    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// True when no command is half-read and no AUTHENTICATE or IDLE is in progress.
    pub fn is_between_commands(&self) -> bool {
        matches!(self.mode, Mode::Command) && self.framer.is_idle()
    }

    /// Octets of client input currently buffered.
    pub fn buffered_input(&self) -> usize {
        self.framer.held()
    }

    pub(super) fn has_capability(&self, name: &str) -> bool {
        self.ctx
            .profile
            .imap
            .capabilities
            .iter()
            .any(|c| c.eq_ignore_ascii_case(name))
    }

    fn tls_active(&self) -> bool {
        self.ctx.transport.tls_active
    }

    fn starttls_offered(&self) -> bool {
        self.ctx.profile.imap.starttls
            && self.ctx.transport.starttls_available
            && !self.tls_active()
    }

    pub(super) fn login_disabled(&self) -> bool {
        self.ctx.profile.imap.login_disabled_without_tls && !self.tls_active()
    }

    /// The capability list (RFC 3501 7.2.1), without the `CAPABILITY` word.
    pub fn capabilities(&self) -> String {
        let mut caps = vec!["IMAP4rev1".to_string()];
        caps.extend(self.ctx.profile.imap.capabilities.iter().cloned());
        if self.ctx.profile.imap.append_limit {
            // RFC 7889 2: the largest message APPEND accepts, here the literal limit.
            caps.push(format!("APPENDLIMIT={}", self.ctx.limits.max_literal));
        }
        if self.ctx.profile.imap.unauthenticate {
            // RFC 8437 3 lets a server offer it only after login; here it is offered in
            // every state, so a client (or a front-end) can tell from the greeting.
            caps.push("UNAUTHENTICATE".into());
        }
        if self.user.is_none() {
            if self.starttls_offered() {
                caps.push("STARTTLS".into());
            }
            if self.login_disabled() {
                caps.push("LOGINDISABLED".into());
            }
            for m in &self.ctx.profile.imap.auth_mechanisms {
                caps.push(format!("AUTH={}", m.name()));
            }
        }
        caps.join(" ")
    }

    fn frame_config(&self) -> FrameConfig {
        let max_line = self.ctx.limits.max_line.max(64);
        // Before authentication only credentials travel in literals: a client that has
        // not logged in cannot make the session hold more than a line's worth.
        let max_literal = if self.user.is_some() {
            self.ctx.limits.max_literal
        } else {
            self.ctx.limits.max_literal.min(max_line)
        };
        FrameConfig {
            max_line,
            max_literal,
            literal_plus: self.has_capability("LITERAL+"),
        }
    }

    pub(super) fn write(&mut self, bytes: &[u8]) {
        if self.closing {
            return;
        }
        if let Some(Output::Write(v)) = self.out.back_mut() {
            v.extend_from_slice(bytes);
        } else {
            self.out.push_back(Output::Write(bytes.to_vec()));
        }
    }

    pub(super) fn tagged(&mut self, tag: &str, reply: Reply) {
        self.stats.tagged_replies += 1;
        let line = format!("{tag} {} {}\r\n", reply.status.as_str(), reply.text);
        self.write(line.as_bytes());
        match std::mem::replace(&mut self.after_reply, AfterReply::Nothing) {
            AfterReply::Nothing => {}
            AfterReply::Close => self.close(),
            AfterReply::StartTls => {
                self.out.push_back(Output::StartTls);
                // RFC 3501 6.2.1 / 11.1: anything pipelined after STARTTLS arrived in
                // the clear and must not be obeyed.
                self.framer.clear();
                self.mode = Mode::TlsPending;
            }
        }
    }

    fn close(&mut self) {
        if !self.closing {
            self.out.push_back(Output::Close);
            self.closing = true;
            self.framer.clear();
            self.mode = Mode::Command;
        }
    }

    fn bye(&mut self, text: &str) {
        self.write(format!("* BYE {text}\r\n").as_bytes());
        self.close();
    }

    /// Runs every complete frame in the input buffer, in order.
    fn process(&mut self) {
        loop {
            if self.closing {
                return;
            }
            let mode = match self.mode {
                Mode::Command => FrameMode::Command,
                Mode::Auth { .. } | Mode::Idle { .. } => FrameMode::Line,
                Mode::TlsPending => {
                    self.framer.clear();
                    return;
                }
            };
            let cfg = self.frame_config();
            let Some(frame) = self.framer.next_frame(mode, cfg) else {
                return;
            };
            match frame {
                Frame::ContinuationNeeded => self.write(LITERAL_CONTINUATION),
                Frame::Rejected { tag, error } => {
                    let status = if error.is_resource_refusal() {
                        ImapStatus::No
                    } else {
                        ImapStatus::Bad
                    };
                    match std::mem::replace(&mut self.mode, Mode::Command) {
                        Mode::Auth { tag, .. } | Mode::Idle { tag } => {
                            self.tagged(&tag, Reply::of(status, error.to_string()))
                        }
                        Mode::Command | Mode::TlsPending => match tag {
                            Some(tag) => {
                                self.stats.tagged_commands += 1;
                                self.tagged(&tag, Reply::of(status, error.to_string()))
                            }
                            None => self.write(format!("* BAD {error}\r\n").as_bytes()),
                        },
                    }
                }
                Frame::Line(line) => match std::mem::replace(&mut self.mode, Mode::Command) {
                    Mode::Auth { tag, sasl } => self.auth_line(tag, sasl, &line),
                    Mode::Idle { tag } => self.idle_line(tag, &line),
                    other => self.mode = other,
                },
                Frame::Command(msg) => self.command(&msg),
            }
        }
    }

    fn command(&mut self, msg: &[u8]) {
        if self.ctx.profile.imap.unauthenticate {
            if let Some((tag, args)) = unauthenticate_command(msg) {
                self.stats.tagged_commands += 1;
                let reply = self.unauthenticate(args);
                self.tagged(&tag, reply);
                return;
            }
        }
        let decoded = CommandCodec::default().decode(msg);
        match decoded {
            Ok((&[], cmd)) => {
                self.stats.tagged_commands += 1;
                let tag = cmd.tag.as_ref().to_string();
                if let Some(reply) = self.execute(&tag, cmd) {
                    self.tagged(&tag, reply);
                }
            }
            _ => {
                let error = diagnose(msg);
                match first_tag(msg) {
                    Some(tag) => {
                        self.stats.tagged_commands += 1;
                        self.tagged(&tag, Reply::of(ImapStatus::Bad, error.to_string()));
                    }
                    None => self.write(format!("* BAD {error}\r\n").as_bytes()),
                }
            }
        }
    }

    /// Runs one decoded command. `None` means the completion comes later (AUTHENTICATE
    /// continuing, IDLE).
    fn execute(&mut self, tag: &str, cmd: Command<'_>) -> Option<Reply> {
        let authed = self.user.is_some();
        let selected = self.view.is_some();
        let reply = match cmd.body {
            CommandBody::Capability => {
                let caps = self.capabilities();
                self.write(format!("* CAPABILITY {caps}\r\n").as_bytes());
                Reply::ok("CAPABILITY completed")
            }
            CommandBody::Noop => {
                self.sync(true);
                Reply::ok("NOOP completed")
            }
            // RFC 2971: any state; the server says who it is whatever the client sent.
            CommandBody::Id { .. } if self.has_capability("ID") => {
                self.write(
                    format!(
                        "* ID (\"name\" \"harness\" \"version\" \"{}\" \"vendor\" \"harness mock ({})\")\r\n",
                        env!("CARGO_PKG_VERSION"),
                        self.ctx.profile.name
                    )
                    .as_bytes(),
                );
                Reply::ok("ID completed")
            }
            CommandBody::Logout => {
                self.write(b"* BYE IMAP4rev1 Server logging out\r\n");
                self.after_reply = AfterReply::Close;
                Reply::ok("LOGOUT completed")
            }
            CommandBody::StartTLS => {
                if authed {
                    wrong_state("STARTTLS")
                } else if !self.starttls_offered() {
                    Reply::bad(CommandError::Unsupported("STARTTLS").to_string())
                } else {
                    self.after_reply = AfterReply::StartTls;
                    Reply::ok("Begin TLS negotiation now")
                }
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } => {
                if authed {
                    wrong_state("AUTHENTICATE")
                } else {
                    let ir = initial_response.map(|s| s.declassify().to_vec());
                    return self.authenticate(tag, &mechanism, ir);
                }
            }
            CommandBody::Login { username, password } => {
                if authed {
                    wrong_state("LOGIN")
                } else {
                    self.login(&username, password.declassify())
                }
            }
            CommandBody::Idle => {
                if !self.has_capability("IDLE") {
                    Reply::bad(CommandError::UnknownCommand.to_string())
                } else if !authed {
                    wrong_state("IDLE")
                } else {
                    return self.idle(tag);
                }
            }
            // RFC 3691: only where the profile advertises it.
            CommandBody::Unselect if !self.has_capability("UNSELECT") => {
                Reply::bad(CommandError::UnknownCommand.to_string())
            }
            body => {
                if !authed {
                    return wrong_state(body.name());
                }
                let needs_selected = matches!(
                    body,
                    CommandBody::Check
                        | CommandBody::Close
                        | CommandBody::Unselect
                        | CommandBody::Expunge
                        | CommandBody::ExpungeUid { .. }
                        | CommandBody::Search { .. }
                        | CommandBody::Fetch { .. }
                        | CommandBody::Store { .. }
                        | CommandBody::Copy { .. }
                        | CommandBody::Move { .. }
                );
                if needs_selected && !selected {
                    return wrong_state(body.name());
                }
                // RFC 3501 7.4.1: no EXPUNGE responses while answering FETCH, STORE or
                // SEARCH (sequence numbers must stay put for the client).
                let allow_expunge = !matches!(
                    body,
                    CommandBody::Search { .. }
                        | CommandBody::Fetch { .. }
                        | CommandBody::Store { .. }
                );
                let reply = self.mailbox_command(body);
                self.sync(allow_expunge);
                reply
            }
        };
        reply
    }

    /// Commands of the authenticated and selected states (state already checked).
    fn mailbox_command(&mut self, body: CommandBody<'_>) -> Option<Reply> {
        match body {
            CommandBody::Select { mailbox } => self.select(&mailbox, false),
            CommandBody::Examine { mailbox } => self.select(&mailbox, true),
            CommandBody::Create { mailbox } => self.create(&mailbox),
            CommandBody::Delete { mailbox } => self.delete(&mailbox),
            CommandBody::Rename { from, to } => self.rename(&from, &to),
            CommandBody::Subscribe { mailbox } => self.subscribe(&mailbox, true),
            CommandBody::Unsubscribe { mailbox } => self.subscribe(&mailbox, false),
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => self.list(&reference, &mailbox_wildcard, false),
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => self.list(&reference, &mailbox_wildcard, true),
            CommandBody::Status {
                mailbox,
                item_names,
            } => self.status(&mailbox, &item_names),
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => self.append(&mailbox, &flags, date.as_ref(), &message),
            CommandBody::Check => Reply::ok("CHECK completed"),
            CommandBody::Close => self.close_mailbox(),
            CommandBody::Unselect => {
                // RFC 3691 2: CLOSE without the expunge, read-write or not.
                self.view = None;
                Reply::ok("UNSELECT completed")
            }
            CommandBody::Expunge => self.expunge(),
            CommandBody::Search {
                charset,
                criteria,
                uid,
            } => self.search(charset.as_ref(), &SearchKey::And(criteria), uid),
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
            } => self.fetch(&sequence_set, &macro_or_item_names, uid),
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
            } => self.store(&sequence_set, kind, response, &flags, uid),
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(&sequence_set, &mailbox, uid),
            // RFC 4315 2.1: only where UIDPLUS is advertised.
            CommandBody::ExpungeUid { sequence_set } if self.has_capability("UIDPLUS") => {
                self.uid_expunge(&sequence_set)
            }
            CommandBody::ExpungeUid { .. } => {
                Reply::bad("UID EXPUNGE needs UIDPLUS, which is not advertised")
            }
            // RFC 2342: one personal namespace, no shared or other users' ones.
            CommandBody::Namespace if self.has_capability("NAMESPACE") => {
                self.write(format!("* NAMESPACE ((\"\" \"{DELIMITER}\")) NIL NIL\r\n").as_bytes());
                Reply::ok("NAMESPACE completed")
            }
            // RFC 5161: none of the extensions a client may ENABLE is implemented, so
            // nothing is enabled; the ENABLED response is still owed.
            CommandBody::Enable { .. } if self.has_capability("ENABLE") => {
                self.write(b"* ENABLED\r\n");
                Reply::ok("ENABLE completed")
            }
            CommandBody::Move {
                sequence_set,
                mailbox,
                uid,
            } if self.has_capability("MOVE") => self.move_messages(&sequence_set, &mailbox, uid),
            other => Reply::bad(format!("{} is not supported", other.name())),
        }
    }

    /// The authenticated user's key in the store.
    pub(super) fn user_key(&self) -> String {
        self.user.clone().unwrap_or_default()
    }

    /// Brings the selected mailbox's view up to date with the store and writes what
    /// changed (see `View::sync`).
    pub(super) fn sync(&mut self, allow_expunge: bool) {
        let user = self.user_key();
        let world = Arc::clone(&self.ctx.world);
        let Some(view) = self.view.as_mut() else {
            return;
        };
        if let Some(out) = view.sync(&world, &user, allow_expunge) {
            self.write(out.as_bytes());
        }
    }
}

/// `tag UNAUTHENTICATE ...` (RFC 8437 6; the command parser knows no such command): the
/// tag and whether anything followed the command name.
fn unauthenticate_command(msg: &[u8]) -> Option<(String, bool)> {
    let line = msg
        .strip_suffix(b"\r\n")
        .or_else(|| msg.strip_suffix(b"\n"))?;
    let tag = first_tag(msg)?;
    let rest = line.get(tag.len()..)?.strip_prefix(b" ")?;
    let name = b"UNAUTHENTICATE";
    let head = rest.get(..name.len())?;
    if !head.eq_ignore_ascii_case(name) {
        return None;
    }
    match rest.get(name.len()..) {
        Some([]) => Some((tag, false)),
        Some([b' ', ..]) => Some((tag, true)),
        _ => None,
    }
}

fn wrong_state(name: &'static str) -> Option<Reply> {
    Reply::bad(CommandError::WrongState(name).to_string())
}

/// Why the grammar refused a message: names the problem for the `BAD` text.
pub fn diagnose(msg: &[u8]) -> CommandError {
    let first_line = msg.split(|&b| b == b'\n').next().unwrap_or_default();
    if first_tag(msg).is_none() {
        return CommandError::InvalidTag;
    }
    if first_line.iter().any(|&b| b >= 0x80) {
        return CommandError::NonAscii;
    }
    let mut words = first_line
        .split(|&b| b == b' ' || b == b'\r')
        .filter(|w| !w.is_empty())
        .skip(1);
    let name = words
        .next()
        .map(|w| String::from_utf8_lossy(w).to_ascii_uppercase())
        .unwrap_or_default();
    if KNOWN_COMMANDS.contains(&name.as_str()) {
        CommandError::InvalidArguments(name)
    } else {
        CommandError::UnknownCommand
    }
}

impl ServerSession for ImapServer {
    fn handle_input(&mut self, now: Duration, input: &[u8]) {
        if self.closing || input.is_empty() {
            return;
        }
        self.now = now;
        self.last_input = now;
        self.last_event = now;
        if matches!(self.mode, Mode::TlsPending) {
            return;
        }
        self.framer.push(input);
        self.process();
        self.partial_since = if self.framer.is_idle() {
            None
        } else {
            Some(self.partial_since.unwrap_or(now))
        };
    }

    fn handle_eof(&mut self, now: Duration) {
        // The client is gone: nothing half-read is acted on. Each command's store
        // changes are made under one lock, so the store is consistent.
        self.now = now;
        self.close();
    }

    fn handle_timeout(&mut self, now: Duration) {
        if self.closing {
            return;
        }
        self.now = now;
        self.last_event = now;
        if self
            .partial_since
            .is_some_and(|since| now >= since.saturating_add(self.ctx.limits.line_timeout))
        {
            self.bye("Command not completed in time");
            return;
        }
        if now >= self.last_input.saturating_add(self.ctx.limits.idle_timeout) {
            // RFC 3501 5.4: the autologout timer.
            self.bye("Autologout; idle for too long");
            return;
        }
        if matches!(self.mode, Mode::Idle { .. }) {
            self.sync(true);
        }
    }

    fn handle_shutdown(&mut self, now: Duration) {
        if self.closing {
            return;
        }
        self.now = now;
        // RFC 3501 7.1.5: BYE when the server is shutting down.
        self.bye("Server shutting down");
    }

    fn handle_tls_established(&mut self, now: Duration) {
        self.now = now;
        self.last_event = now;
        self.partial_since = None;
        self.ctx.transport.tls_active = true;
        if matches!(self.mode, Mode::TlsPending) {
            self.mode = Mode::Command;
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        let o = self.out.pop_front();
        if o == Some(Output::Close) {
            self.closed = true;
        }
        o
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if self.closing {
            return None;
        }
        let mut deadline = self.last_input.saturating_add(self.ctx.limits.idle_timeout);
        if let Some(since) = self.partial_since {
            deadline = deadline.min(since.saturating_add(self.ctx.limits.line_timeout));
        }
        if matches!(self.mode, Mode::Idle { .. }) {
            Some(deadline.min(self.last_event.saturating_add(IDLE_POLL)))
        } else {
            Some(deadline)
        }
    }

    fn is_closed(&self) -> bool {
        self.closed
    }
}
