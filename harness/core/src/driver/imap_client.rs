//! An IMAP4rev1 client (RFC 3501) as a sans-IO state machine: greeting, CAPABILITY,
//! optional STARTTLS, authentication per policy (AUTHENTICATE with or without SASL-IR
//! RFC 4959, or LOGIN), then SELECT INBOX and LOGOUT.
//!
//! Server responses are read in [`super::imap_response`].

use std::time::Duration;

use base64::Engine as _;
use harness_wire::imap::{ResponseReader, Status as Cond};

pub use super::imap_response::ImapClientError;
use super::imap_response::{read_pieces, response_reader, Piece, Resp};
use super::outcome::{printable, SessionOutcome, Status};
use super::policy::{AuthMethod, Offer};
use super::sasl_client::{MechClient, MechError};
use super::{
    answer_from_common, ClientConfig, ClientOutput, ClientSession, Common, Prompt, PromptAnswer,
};
use crate::codes::{ErrorCode, Family};
use crate::sasl::Mechanism;
use crate::Protocol;

const IXP_E_IMAP_BAD_RESPONSE: ErrorCode = ErrorCode::new(Family::Ixp, 0x800C_CCD3);
const IXP_E_IMAP_UNSOLICITED_BYE: ErrorCode = ErrorCode::new(Family::Ixp, 0x800C_CCDD);

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Where the conversation is.
#[derive(Debug)]
enum Phase {
    Greeting,
    Capability {
        tag: String,
    },
    StartTls {
        tag: String,
    },
    AwaitTls,
    Authenticate {
        tag: String,
        method: AuthMethod,
        /// `None` for the LOGIN command.
        mech: Option<MechClient>,
        /// `*` was sent; only the tagged reply is left.
        cancelled: bool,
    },
    /// The user is looking at a password prompt.
    Prompting(Prompt),
    Select {
        tag: String,
    },
    Fetch {
        tag: String,
    },
    Logout {
        tag: String,
        status: Status,
    },
    Done,
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Greeting => "greeting",
            Phase::Capability { .. } => "CAPABILITY",
            Phase::StartTls { .. } | Phase::AwaitTls => "STARTTLS",
            Phase::Authenticate { .. } => "authentication",
            Phase::Prompting(_) => "prompt",
            Phase::Select { .. } => "SELECT",
            Phase::Fetch { .. } => "FETCH",
            Phase::Logout { .. } => "LOGOUT",
            Phase::Done => "done",
        }
    }
}

/// One IMAP client session (over one or more connections, when it reconnects).
#[derive(Debug)]
pub struct ImapClient {
    c: Common,
    reader: ResponseReader,
    phase: Phase,
    offer: Offer,
    next_tag: u32,
    /// An untagged BYE arrived on this connection.
    bye: bool,
}

impl ImapClient {
    pub fn new(cfg: ClientConfig) -> Self {
        ImapClient {
            reader: response_reader(cfg.max_line, cfg.max_literal),
            c: Common::new(cfg, Protocol::Imap),
            phase: Phase::Greeting,
            offer: Offer::default(),
            next_tag: 1,
            bye: false,
        }
    }

    /// What the server advertised last.
    pub fn offer(&self) -> &Offer {
        &self.offer
    }

    fn tag(&mut self) -> String {
        let t = format!("a{}", self.next_tag);
        self.next_tag += 1;
        t
    }

    /// Sends `tag command` with the step showing `shown` in place of the command.
    fn command(&mut self, now: Duration, command: &str, shown: &str) -> String {
        let tag = self.tag();
        let wire = format!("{tag} {command}\r\n").into_bytes();
        self.c.send(now, wire, format!("{tag} {shown}"));
        tag
    }

    fn capability(&mut self, now: Duration) {
        let tag = self.command(now, "CAPABILITY", "CAPABILITY");
        self.phase = Phase::Capability { tag };
    }

    fn logout(&mut self, now: Duration, status: Status) {
        let tag = self.command(now, "LOGOUT", "LOGOUT");
        self.phase = Phase::Logout { tag, status };
    }

    fn select(&mut self, now: Duration) {
        let tag = self.command(now, "SELECT INBOX", "SELECT INBOX");
        self.phase = Phase::Select { tag };
    }

    fn fetch(&mut self, now: Duration) {
        let command = "FETCH 1:* (FLAGS BODY.PEEK[])";
        let tag = self.command(now, command, command);
        self.phase = Phase::Fetch { tag };
    }

    fn fail(&mut self, e: ImapClientError) {
        self.phase = Phase::Done;
        self.c
            .violation(e.to_string(), Some(IXP_E_IMAP_BAD_RESPONSE));
    }

    fn parse_capabilities(&mut self, list: &str) {
        let mut offer = Offer {
            cleartext: true,
            ..Offer::default()
        };
        for cap in list.split(' ') {
            let upper = cap.to_ascii_uppercase();
            if let Some(m) = upper.strip_prefix("AUTH=") {
                if let Some(m) = Mechanism::parse(m) {
                    offer.add_mechanism(m);
                }
            } else if upper == "SASL-IR" {
                offer.sasl_ir = true;
            } else if upper == "LOGINDISABLED" {
                offer.cleartext = false;
            } else if upper == "STARTTLS" {
                offer.starttls = true;
            }
        }
        self.offer = offer;
    }

    /// CAPABILITY is known: STARTTLS if wanted, else authenticate.
    fn after_capability(&mut self, now: Duration) {
        if self.c.cfg.starttls && !self.c.tls {
            if self.offer.starttls {
                let tag = self.command(now, "STARTTLS", "STARTTLS");
                self.phase = Phase::StartTls { tag };
            } else {
                self.c.no_tls("STARTTLS");
                self.logout(now, Status::Failed);
            }
            return;
        }
        self.start_logon(now);
    }

    fn start_logon(&mut self, now: Duration) {
        let Some(method) = self.c.choose_logon(&self.offer) else {
            self.logout(now, Status::Failed);
            return;
        };
        match method {
            AuthMethod::Cleartext => {
                let (Some(user), Some(pass)) =
                    (quoted(&self.c.cfg.user), quoted(&self.c.cfg.password))
                else {
                    self.c
                        .step("client: the credentials cannot be sent as IMAP quoted strings");
                    self.logout(now, Status::Failed);
                    return;
                };
                let shown = format!("LOGIN {user} ****");
                let tag = self.command(now, &format!("LOGIN {user} {pass}"), &shown);
                self.phase = Phase::Authenticate {
                    tag,
                    method,
                    mech: None,
                    cancelled: false,
                };
            }
            AuthMethod::Sasl(m) => {
                let mut mech = MechClient::new(m, self.c.cfg.credentials(), self.c.attempt_seed());
                let name = m.name();
                let tag = if self.c.rules.sasl_ir && self.offer.sasl_ir {
                    // RFC 4959: the initial response rides on the command; "=" is empty.
                    let r = mech.initial();
                    let data = if r.data.is_empty() {
                        "=".to_string()
                    } else {
                        b64(&r.data)
                    };
                    self.command(
                        now,
                        &format!("AUTHENTICATE {name} {data}"),
                        &format!("AUTHENTICATE {name} {}", r.describe),
                    )
                } else {
                    let cmd = format!("AUTHENTICATE {name}");
                    self.command(now, &cmd, &cmd)
                };
                self.phase = Phase::Authenticate {
                    tag,
                    method,
                    mech: Some(mech),
                    cancelled: false,
                };
            }
        }
    }

    /// Handles one response; `raw` is its first line as received.
    fn response(&mut self, now: Duration, resp: Resp, raw: &[u8]) {
        match &resp {
            Resp::Continuation(text) if text.is_empty() => self.c.step("S: +"),
            Resp::Continuation(_) if matches!(self.phase, Phase::Authenticate { .. }) => {}
            _ => self.c.server_line(raw),
        }
        if let Resp::Untagged(text) = &resp {
            let upper = text.to_ascii_uppercase();
            if upper.starts_with("BYE") {
                self.bye = true;
            }
            if let Some(list) = upper.strip_prefix("CAPABILITY ") {
                let list = list.to_string();
                self.parse_capabilities(&list);
            }
        }
        let phase = std::mem::replace(&mut self.phase, Phase::Done);
        match (phase, resp) {
            (Phase::Greeting, Resp::Untagged(text)) => {
                let upper = text.to_ascii_uppercase();
                if upper.starts_with("OK") && self.c.cfg.ask_capabilities {
                    self.capability(now);
                } else if upper.starts_with("OK") {
                    // RFC 3501 6.2.3: every server has LOGIN; one that disables it
                    // refuses it, and the session ends as refused.
                    self.offer = Offer {
                        cleartext: true,
                        ..Offer::default()
                    };
                    self.after_capability(now);
                } else if upper.starts_with("PREAUTH") {
                    self.c.step("client: already authenticated (PREAUTH)");
                    self.select(now);
                } else if upper.starts_with("BYE") {
                    self.c
                        .code(self.c.rules.ixp_codes.then_some(IXP_E_IMAP_UNSOLICITED_BYE));
                    self.c.finish(Status::Disconnected);
                } else {
                    self.fail(ImapClientError::BadGreeting {
                        line: printable(raw, 80),
                    });
                }
            }
            (Phase::Greeting, _) => self.fail(ImapClientError::BadGreeting {
                line: printable(raw, 80),
            }),
            (phase, Resp::Untagged(_)) => {
                // Untagged data (CAPABILITY, EXISTS, FLAGS, BYE, ...) changes no phase; it
                // shows the server is alive, unless the user is the one taking time.
                if !matches!(phase, Phase::Prompting(_)) {
                    self.c.wait_reply(now);
                }
                self.phase = phase;
            }
            (Phase::Capability { tag }, Resp::Tagged { tag: t, cond, .. }) if t == tag => {
                if cond == Cond::Ok {
                    self.after_capability(now);
                } else {
                    // No capability list: assume nothing beyond RFC 3501's LOGIN.
                    self.offer = Offer {
                        cleartext: true,
                        ..Offer::default()
                    };
                    self.after_capability(now);
                }
            }
            (Phase::StartTls { tag }, Resp::Tagged { tag: t, cond, .. }) if t == tag => {
                if cond == Cond::Ok {
                    self.c.step("client: TLS handshake");
                    self.c.push(ClientOutput::StartTls);
                    self.phase = Phase::AwaitTls;
                } else {
                    self.c.no_tls("STARTTLS");
                    self.logout(now, Status::Failed);
                }
            }
            (
                Phase::Authenticate {
                    tag,
                    method,
                    mech,
                    cancelled,
                },
                Resp::Continuation(text),
            ) => self.auth_continuation(now, tag, method, mech, cancelled, &text),
            (Phase::Authenticate { tag, method, .. }, Resp::Tagged { tag: t, cond, text })
                if t == tag =>
            {
                if cond == Cond::Ok {
                    self.select(now);
                    return;
                }
                let sig = format!("{} {:?} {}", method.label(Protocol::Imap), cond, text);
                self.logon_refused(now, method, sig);
            }
            (Phase::Select { tag }, Resp::Tagged { tag: t, cond, .. }) if t == tag => {
                match (self.c.cfg.read_mail, cond) {
                    (false, _) => self.logout(now, Status::Authenticated),
                    (true, Cond::Ok) => self.fetch(now),
                    (true, _) => self.logout(now, Status::Failed),
                }
            }
            (Phase::Fetch { tag }, Resp::Tagged { tag: t, cond, .. }) if t == tag => {
                let status = if cond == Cond::Ok {
                    Status::Authenticated
                } else {
                    Status::Failed
                };
                self.logout(now, status);
            }
            (Phase::Logout { tag, status }, Resp::Tagged { tag: t, .. }) if t == tag => {
                self.c.finish(status);
            }
            (_, Resp::Continuation(_)) => self.fail(ImapClientError::UnexpectedContinuation),
            (_, Resp::Tagged { tag, .. }) => self.fail(ImapClientError::UnexpectedTag {
                tag: printable(tag.as_bytes(), 40),
            }),
        }
    }

    fn auth_continuation(
        &mut self,
        now: Duration,
        tag: String,
        method: AuthMethod,
        mech: Option<MechClient>,
        cancelled: bool,
        text: &str,
    ) {
        let Some(mut mech) = mech else {
            // LOGIN takes no continuation.
            self.fail(ImapClientError::UnexpectedContinuation);
            return;
        };
        let decoded = base64::engine::general_purpose::STANDARD.decode(text.trim_end());
        let shown = match &decoded {
            Ok(d) if !d.is_empty() => format!("S: + {}", mech.describe_challenge(d)),
            Ok(_) => String::new(),
            Err(_) => format!("S: + {}", printable(text.as_bytes(), 60)),
        };
        if !shown.is_empty() {
            self.c.step(shown);
        }
        if cancelled {
            self.fail(ImapClientError::UnexpectedContinuation);
            return;
        }
        let reply = match decoded {
            Ok(challenge) => mech.respond(&challenge).map_err(|e| e.to_string()),
            Err(_) => Err("challenge is not base64".to_string()),
        };
        match reply {
            Ok(r) => {
                let wire = format!("{}\r\n", b64(&r.data)).into_bytes();
                self.c.send(now, wire, r.describe);
                self.phase = Phase::Authenticate {
                    tag,
                    method,
                    mech: Some(mech),
                    cancelled: false,
                };
            }
            Err(why) => {
                // RFC 3501 6.2.2: "*" cancels; the server answers with a tagged BAD.
                let why = if why == MechError::UnexpectedChallenge.to_string() {
                    why
                } else {
                    format!("cannot answer: {why}")
                };
                self.c.finding(super::Finding::ProtocolViolation {
                    detail: why.clone(),
                });
                self.c
                    .send(now, b"*\r\n".to_vec(), format!("* (cancel: {why})"));
                self.phase = Phase::Authenticate {
                    tag,
                    method,
                    mech: Some(mech),
                    cancelled: true,
                };
            }
        }
    }

    fn logon_refused(&mut self, now: Duration, method: AuthMethod, signature: String) {
        match self.c.logon_failed(now, method, signature) {
            Ok(prompt) => self.phase = Phase::Prompting(prompt),
            Err(status) => self.logout(now, status),
        }
    }

    /// The user answered the prompt: try again, on a new connection if this one is gone.
    fn resume(&mut self, now: Duration, closed: bool) {
        if closed {
            self.reader.reset();
            self.bye = false;
            self.phase = Phase::Greeting;
            self.c.reconnect(now);
        } else {
            self.start_logon(now);
        }
    }
}

/// An IMAP quoted string (RFC 3501 9), or `None` if the text needs a literal.
fn quoted(s: &str) -> Option<String> {
    if s.bytes()
        .any(|b| b == b'\r' || b == b'\n' || b == 0 || !b.is_ascii())
    {
        return None;
    }
    let atom = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b));
    if atom {
        return Some(s.to_string());
    }
    let mut q = String::from("\"");
    for ch in s.chars() {
        if ch == '"' || ch == '\\' {
            q.push('\\');
        }
        q.push(ch);
    }
    q.push('"');
    Some(q)
}

impl ClientSession for ImapClient {
    fn handle_input(&mut self, now: Duration, input: &[u8]) {
        if self.c.done {
            return;
        }
        if matches!(self.phase, Phase::AwaitTls) {
            // RFC 3501 6.2.1: nothing may come between the OK and the handshake.
            self.fail(ImapClientError::DataBeforeTls);
            return;
        }
        let prompting = matches!(self.phase, Phase::Prompting(_));
        self.c.heard_from_server(now, input, prompting);
        self.reader.push(input);
        let (pieces, err) = read_pieces(&mut self.reader);
        let mut pieces = pieces.into_iter().peekable();
        while let Some(piece) = pieces.next() {
            if self.c.done {
                return;
            }
            match piece {
                Piece::Resp(resp, raw) => self.response(now, resp, &raw),
                Piece::Continued(raw) => self.c.server_line(&raw),
                Piece::Literal(n) => self.c.step(format!("S: <literal, {n} octets>")),
            }
            let more = pieces.peek().is_some() || self.reader.buffered() > 0 || err.is_some();
            if matches!(self.phase, Phase::AwaitTls) && !self.c.done && more {
                // Whatever else came in this read arrived before the handshake.
                self.fail(ImapClientError::DataBeforeTls);
                return;
            }
        }
        if let Some(e) = err {
            if !self.c.done {
                self.fail(e);
            }
        }
    }

    fn handle_eof(&mut self, _now: Duration) {
        if self.c.done {
            return;
        }
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Prompting(prompt) => self.phase = Phase::Prompting(self.c.closed_during(prompt)),
            Phase::Logout { status, .. } => {
                self.c.step("S: <connection closed>");
                self.c.finish(status);
            }
            phase => {
                let code = self.bye.then_some(IXP_E_IMAP_UNSOLICITED_BYE);
                self.c.dropped(phase.name(), code);
            }
        }
    }

    fn handle_timeout(&mut self, now: Duration) {
        if self.c.done || self.c.deadline.is_none_or(|d| now < d) {
            return;
        }
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Prompting(prompt) => match prompt.answer() {
                PromptAnswer::End(status) => self.c.finish(status),
                PromptAnswer::Goodbye(status) => self.logout(now, status),
                PromptAnswer::Retry { reconnect } => self.resume(now, reconnect),
            },
            phase => {
                self.c.timed_out(phase.name());
            }
        }
    }

    fn handle_tls_established(&mut self, now: Duration) {
        if !matches!(self.phase, Phase::AwaitTls) || self.c.done {
            return;
        }
        self.c.tls = true;
        // RFC 3501 6.2.1: capabilities must be asked for again after STARTTLS.
        self.capability(now);
    }

    answer_from_common!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quoted("alice").as_deref(), Some("alice"));
        assert_eq!(quoted("a b\"c").as_deref(), Some("\"a b\\\"c\""));
        assert_eq!(quoted(""), Some("\"\"".into()));
        assert_eq!(quoted("a\r\nb"), None);
    }
}
