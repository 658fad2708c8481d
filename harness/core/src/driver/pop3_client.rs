//! A POP3 client (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH, the [MS-POP3]
//! AUTH listing) as a sans-IO state machine: greeting, CAPA, the Microsoft `AUTH` probe
//! (as Outlook Express sends it), optional STLS, authentication per policy, then STAT and
//! QUIT. Replies are decoded with [`crate::pop3::response`], which bounds every line.

use std::time::Duration;

use base64::Engine as _;

use super::outcome::{printable, SessionOutcome, Status};
use super::policy::{AuthMethod, Offer};
use super::sasl_client::MechClient;
use super::{
    answer_from_common, ClientConfig, ClientOutput, ClientSession, Common, Finding, Prompt,
    PromptAnswer,
};
use crate::codes::{ErrorCode, Family};
use crate::pop3::response::{
    decode_reply, decode_status, InvalidResponse, MultiLine, Reply, ResponseError, ResponseLimits,
    Status as PopStatus, StatusLine,
};
use crate::sasl::Mechanism;
use crate::Protocol;

const IXP_E_POP3_RESPONSE_ERROR: ErrorCode = ErrorCode::new(Family::Ixp, 0x800C_CC90);

/// A multi-line reply the client accepts (CAPA, the AUTH listing).
const MAX_BODY: usize = 64 * 1024;

/// What was wrong with what the server sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Pop3ClientError {
    #[error("invalid reply: {0}")]
    Invalid(#[from] InvalidResponse),
    #[error("reply arrived while none was expected")]
    Unsolicited,
    #[error("server sent data after STLS before the TLS handshake")]
    DataBeforeTls,
    #[error("greeting is not +OK: {0}")]
    Greeting(String),
    #[error("continuation where a status line was expected")]
    UnexpectedContinuation,
}

/// Which cleartext step is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cleartext {
    UserSent,
    PassSent,
}

#[derive(Debug)]
enum Phase {
    Greeting,
    Capa,
    AuthListing,
    Stls,
    AwaitTls,
    Sasl {
        method: AuthMethod,
        mech: MechClient,
        /// `*` was sent; only the `-ERR` is left.
        cancelled: bool,
    },
    Cleartext(Cleartext),
    /// The user is looking at a password prompt.
    Prompting(Prompt),
    Stat,
    /// `RETR 1` was sent; its body is skipped.
    Retr,
    Quit {
        status: Status,
    },
    Done,
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Greeting => "greeting",
            Phase::Capa => "CAPA",
            Phase::AuthListing => "AUTH listing",
            Phase::Stls | Phase::AwaitTls => "STLS",
            Phase::Sasl { .. } | Phase::Cleartext(_) => "authentication",
            Phase::Prompting(_) => "prompt",
            Phase::Stat => "STAT",
            Phase::Retr => "RETR",
            Phase::Quit { .. } => "QUIT",
            Phase::Done => "done",
        }
    }

    fn multiline(&self) -> bool {
        matches!(self, Phase::Capa | Phase::AuthListing | Phase::Retr)
    }
}

/// One POP3 client session (over one or more connections, when it reconnects).
#[derive(Debug)]
pub struct Pop3Client {
    c: Common,
    inbuf: Vec<u8>,
    phase: Phase,
    offer: Offer,
    limits: ResponseLimits,
    /// A multi-line reply being read: its status line and the body so far.
    partial: Option<(StatusLine, Vec<u8>)>,
}

/// The APOP msg-id in a greeting varies per session; step lines show a placeholder.
fn normalise_greeting(text: &str) -> String {
    match (text.rfind('<'), text.rfind('>')) {
        (Some(a), Some(b)) if a < b && text.get(a..=b).is_some_and(|t| t.contains('@')) => {
            format!(
                "{}<apop-timestamp>{}",
                text.get(..a).unwrap_or_default(),
                text.get(b + 1..).unwrap_or_default()
            )
        }
        _ => text.to_string(),
    }
}

fn status_text(s: &StatusLine) -> String {
    let mut out = String::from(match s.status {
        PopStatus::Ok => "+OK",
        PopStatus::Err => "-ERR",
    });
    if let Some(code) = &s.code {
        out.push_str(&format!(" [{code}]"));
    }
    if !s.text.is_empty() {
        out.push(' ');
        out.push_str(&s.text);
    }
    out
}

impl Pop3Client {
    pub fn new(cfg: ClientConfig) -> Self {
        let limits = ResponseLimits {
            max_line: cfg.max_line.max(16),
            max_body: MAX_BODY,
        };
        Pop3Client {
            c: Common::new(cfg, Protocol::Pop3),
            inbuf: Vec::new(),
            phase: Phase::Greeting,
            offer: Offer::default(),
            limits,
            partial: None,
        }
    }

    /// What the server advertised (CAPA and the AUTH listing).
    pub fn offer(&self) -> &Offer {
        &self.offer
    }

    fn send_line(&mut self, now: Duration, line: &str, shown: &str) {
        self.c
            .send(now, format!("{line}\r\n").into_bytes(), shown.to_string());
    }

    fn fail(&mut self, e: Pop3ClientError) {
        self.phase = Phase::Done;
        self.c
            .violation(e.to_string(), Some(IXP_E_POP3_RESPONSE_ERROR));
    }

    fn quit(&mut self, now: Duration, status: Status) {
        self.send_line(now, "QUIT", "QUIT");
        self.phase = Phase::Quit { status };
    }

    fn capa(&mut self, now: Duration) {
        self.send_line(now, "CAPA", "CAPA");
        self.phase = Phase::Capa;
    }

    /// Decodes and handles complete replies in the buffer.
    fn pump(&mut self, now: Duration) {
        while !self.c.done && !self.inbuf.is_empty() {
            if matches!(self.phase, Phase::Prompting(_)) {
                self.fail(Pop3ClientError::Unsolicited);
                return;
            }
            if matches!(self.phase, Phase::AwaitTls) {
                self.fail(Pop3ClientError::DataBeforeTls);
                return;
            }
            if self.phase.multiline() {
                match self.multiline_step() {
                    Ok(Some(m)) => self.multiline(now, m),
                    Ok(None) => return,
                    Err(e) => {
                        self.fail(e);
                        return;
                    }
                }
            } else {
                match decode_reply(&self.inbuf, &self.limits) {
                    Ok((r, used)) => {
                        self.inbuf.drain(..used.min(self.inbuf.len()));
                        self.reply(now, r);
                    }
                    Err(ResponseError::Incomplete) => return,
                    Err(ResponseError::Invalid(e)) => {
                        self.fail(e.into());
                        return;
                    }
                }
            }
        }
    }

    /// Reads a multi-line reply incrementally (RFC 1939 3): the status line, then body
    /// lines up to `.`, each line read once however the bytes are split.
    fn multiline_step(&mut self) -> Result<Option<MultiLine>, Pop3ClientError> {
        let (status, body) = match self.partial.take() {
            Some(p) => p,
            None => match decode_status(&self.inbuf, &self.limits) {
                Ok((status, used)) => {
                    self.inbuf.drain(..used.min(self.inbuf.len()));
                    if status.status == PopStatus::Err {
                        return Ok(Some(MultiLine { status, body: None }));
                    }
                    (status, Vec::new())
                }
                Err(ResponseError::Incomplete) => return Ok(None),
                Err(ResponseError::Invalid(InvalidResponse::UnexpectedContinuation)) => {
                    return Err(Pop3ClientError::UnexpectedContinuation)
                }
                Err(ResponseError::Invalid(e)) => return Err(e.into()),
            },
        };
        let mut body = body;
        let max = self.limits.max_line;
        loop {
            let Some(lf) = self.inbuf.iter().take(max).position(|&b| b == b'\n') else {
                if self.inbuf.len() >= max {
                    return Err(InvalidResponse::LineTooLong { limit: max }.into());
                }
                self.partial = Some((status, body));
                return Ok(None);
            };
            let line: Vec<u8> = self.inbuf.drain(..=lf).collect();
            let Some(line) = line.strip_suffix(b"\r\n") else {
                return Err(InvalidResponse::BareLf.into());
            };
            let line = match line.strip_prefix(b".") {
                Some(b"") => {
                    return Ok(Some(MultiLine {
                        status,
                        body: Some(body),
                    }))
                }
                Some(unstuffed) => unstuffed,
                None => line,
            };
            if matches!(self.phase, Phase::Retr) {
                // A message is counted through, never kept.
                continue;
            }
            if body.len() + line.len() + 2 > MAX_BODY {
                return Err(InvalidResponse::BodyTooLong { limit: MAX_BODY }.into());
            }
            body.extend_from_slice(line);
            body.extend_from_slice(b"\r\n");
        }
    }

    fn multiline(&mut self, now: Duration, m: MultiLine) {
        self.c.step(format!(
            "S: {}",
            printable(status_text(&m.status).as_bytes(), 160)
        ));
        let body_lines: Vec<String> = m
            .body
            .as_deref()
            .map(|b| {
                crate::pop3::response::lines(b)
                    .map(|l| String::from_utf8_lossy(l).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        for l in &body_lines {
            self.c.server_line(l.as_bytes());
        }
        if m.body.is_some() {
            self.c.step("S: .");
        }
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Capa => {
                self.offer = Offer::default();
                if m.body.is_none() {
                    // RFC 1939 server without CAPA: USER/PASS is all there is.
                    self.offer.cleartext = true;
                }
                for l in &body_lines {
                    let mut words = l.split(' ');
                    let kw = words.next().unwrap_or_default().to_ascii_uppercase();
                    match kw.as_str() {
                        "SASL" => words.filter_map(Mechanism::parse).for_each(|m| {
                            self.offer.add_mechanism(m);
                        }),
                        "USER" => self.offer.cleartext = true,
                        "STLS" => self.offer.starttls = true,
                        _ => {}
                    }
                }
                if self.c.rules.probe_auth_listing {
                    // [MS-POP3] 2.2.1: "AUTH" SP CRLF lists the mechanisms.
                    self.send_line(now, "AUTH ", "AUTH");
                    self.phase = Phase::AuthListing;
                } else {
                    self.after_capabilities(now);
                }
            }
            Phase::AuthListing => {
                for l in &body_lines {
                    if let Some(m) = Mechanism::parse(l.trim()) {
                        self.offer.add_mechanism(m);
                    }
                }
                self.after_capabilities(now);
            }
            Phase::Retr => {
                let status = if m.body.is_some() {
                    Status::Authenticated
                } else {
                    Status::Failed
                };
                self.quit(now, status);
            }
            _ => self.fail(Pop3ClientError::Unsolicited),
        }
    }

    fn after_capabilities(&mut self, now: Duration) {
        if self.c.cfg.starttls && !self.c.tls {
            if self.offer.starttls {
                self.send_line(now, "STLS", "STLS");
                self.phase = Phase::Stls;
            } else {
                self.c.no_tls("STLS");
                self.quit(now, Status::Failed);
            }
            return;
        }
        self.start_logon(now);
    }

    fn start_logon(&mut self, now: Duration) {
        let Some(method) = self.c.choose_logon(&self.offer) else {
            self.quit(now, Status::Failed);
            return;
        };
        match method {
            AuthMethod::Cleartext => {
                let user = self.c.cfg.user.clone();
                if user.contains(['\r', '\n']) || self.c.cfg.password.contains(['\r', '\n']) {
                    self.c
                        .step("client: the credentials cannot be sent on a POP3 line");
                    self.quit(now, Status::Failed);
                    return;
                }
                self.send_line(now, &format!("USER {user}"), &format!("USER {user}"));
                self.phase = Phase::Cleartext(Cleartext::UserSent);
            }
            AuthMethod::Sasl(m) => {
                let mech = MechClient::new(m, self.c.cfg.credentials(), self.c.attempt_seed());
                let cmd = format!("AUTH {}", m.name());
                self.send_line(now, &cmd, &cmd);
                self.phase = Phase::Sasl {
                    method,
                    mech,
                    cancelled: false,
                };
            }
        }
    }

    fn reply(&mut self, now: Duration, reply: Reply) {
        let phase = std::mem::replace(&mut self.phase, Phase::Done);
        let status = match reply {
            Reply::Continuation(data) => {
                let Phase::Sasl {
                    method,
                    mut mech,
                    cancelled,
                } = phase
                else {
                    self.c.step("S: +");
                    self.fail(Pop3ClientError::UnexpectedContinuation);
                    return;
                };
                let shown = mech.describe_challenge(&data);
                self.c.step(if shown.is_empty() {
                    "S: +".to_string()
                } else {
                    format!("S: + {shown}")
                });
                if cancelled {
                    self.fail(Pop3ClientError::UnexpectedContinuation);
                    return;
                }
                match mech.respond(&data) {
                    Ok(r) => {
                        let line = base64::engine::general_purpose::STANDARD.encode(&r.data);
                        self.c
                            .send(now, format!("{line}\r\n").into_bytes(), r.describe);
                        self.phase = Phase::Sasl {
                            method,
                            mech,
                            cancelled: false,
                        };
                    }
                    Err(e) => {
                        // RFC 5034 4: "*" cancels; the server answers -ERR.
                        let why = e.to_string();
                        self.c.finding(Finding::ProtocolViolation {
                            detail: why.clone(),
                        });
                        self.c
                            .send(now, b"*\r\n".to_vec(), format!("* (cancel: {why})"));
                        self.phase = Phase::Sasl {
                            method,
                            mech,
                            cancelled: true,
                        };
                    }
                }
                return;
            }
            Reply::Status(s) => s,
        };
        let text = status_text(&status);
        let shown = if matches!(phase, Phase::Greeting) {
            normalise_greeting(&text)
        } else {
            text.clone()
        };
        self.c
            .step(format!("S: {}", printable(shown.as_bytes(), 160)));
        let ok = status.status == PopStatus::Ok;
        match phase {
            Phase::Greeting if ok && self.c.cfg.ask_capabilities => self.capa(now),
            Phase::Greeting if ok => {
                // RFC 1939 7: USER and PASS need no CAPA to be known.
                self.offer = Offer {
                    cleartext: true,
                    ..Offer::default()
                };
                self.after_capabilities(now);
            }
            Phase::Greeting => {
                self.phase = Phase::Done;
                self.c
                    .code(self.c.rules.ixp_codes.then_some(IXP_E_POP3_RESPONSE_ERROR));
                self.c.step("client: the server refuses the connection");
                self.c.finish(Status::Failed);
            }
            Phase::Stls if ok => {
                self.c.step("client: TLS handshake");
                self.c.push(ClientOutput::StartTls);
                self.phase = Phase::AwaitTls;
            }
            Phase::Stls => {
                self.c.no_tls("STLS");
                self.quit(now, Status::Failed);
            }
            // RFC 5034 4: +OK ends a SASL exchange successfully.
            Phase::Sasl { .. } if ok => self.authenticated(now),
            Phase::Cleartext(Cleartext::UserSent) if ok => {
                self.send_line(now, &format!("PASS {}", self.c.cfg.password), "PASS ****");
                self.phase = Phase::Cleartext(Cleartext::PassSent);
            }
            Phase::Cleartext(Cleartext::PassSent) if ok => self.authenticated(now),
            Phase::Sasl { method, .. } => {
                let sig = format!("{} {text}", method.label(Protocol::Pop3));
                self.refused(now, method, sig);
            }
            Phase::Cleartext(step) => {
                let which = match step {
                    Cleartext::UserSent => "USER",
                    Cleartext::PassSent => "PASS",
                };
                let sig = format!("{which} {text}");
                self.refused(now, AuthMethod::Cleartext, sig);
            }
            Phase::Stat if !self.c.cfg.read_mail => self.quit(now, Status::Authenticated),
            Phase::Stat if ok => {
                self.send_line(now, "RETR 1", "RETR 1");
                self.phase = Phase::Retr;
            }
            Phase::Stat => self.quit(now, Status::Failed),
            Phase::Quit { status } => {
                self.phase = Phase::Done;
                self.c.finish(status);
            }
            Phase::Capa
            | Phase::AuthListing
            | Phase::Retr
            | Phase::AwaitTls
            | Phase::Prompting(_)
            | Phase::Done => self.fail(Pop3ClientError::Unsolicited),
        }
    }

    fn authenticated(&mut self, now: Duration) {
        self.send_line(now, "STAT", "STAT");
        self.phase = Phase::Stat;
    }

    fn refused(&mut self, now: Duration, method: AuthMethod, signature: String) {
        match self.c.logon_failed(now, method, signature) {
            Ok(prompt) => self.phase = Phase::Prompting(prompt),
            Err(status) => self.quit(now, status),
        }
    }

    fn resume(&mut self, now: Duration, closed: bool) {
        if closed {
            self.inbuf.clear();
            self.partial = None;
            self.phase = Phase::Greeting;
            self.c.reconnect(now);
        } else {
            self.start_logon(now);
        }
    }
}

impl ClientSession for Pop3Client {
    fn handle_input(&mut self, now: Duration, input: &[u8]) {
        if self.c.done {
            return;
        }
        let prompting = matches!(self.phase, Phase::Prompting(_));
        self.c.heard_from_server(now, input, prompting);
        self.inbuf.extend_from_slice(input);
        self.pump(now);
        if !self.c.done && self.inbuf.len() > MAX_BODY + self.limits.max_line {
            self.fail(InvalidResponse::BodyTooLong { limit: MAX_BODY }.into());
        }
    }

    fn handle_eof(&mut self, _now: Duration) {
        if self.c.done {
            return;
        }
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Prompting(prompt) => self.phase = Phase::Prompting(self.c.closed_during(prompt)),
            Phase::Quit { status } => {
                self.c.step("S: <connection closed>");
                self.c.finish(status);
            }
            phase => self.c.dropped(phase.name(), None),
        }
    }

    fn handle_timeout(&mut self, now: Duration) {
        if self.c.done || self.c.deadline.is_none_or(|d| now < d) {
            return;
        }
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Prompting(prompt) => match prompt.answer() {
                PromptAnswer::End(status) => self.c.finish(status),
                PromptAnswer::Goodbye(status) => self.quit(now, status),
                PromptAnswer::Retry { reconnect } => self.resume(now, reconnect),
            },
            phase => self.c.timed_out(phase.name()),
        }
    }

    fn handle_tls_established(&mut self, now: Duration) {
        if !matches!(self.phase, Phase::AwaitTls) || self.c.done {
            return;
        }
        self.c.tls = true;
        // RFC 2595 4: capabilities may differ inside TLS; ask again.
        self.capa(now);
    }

    answer_from_common!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_timestamp_is_normalised() {
        assert_eq!(
            normalise_greeting("+OK ready <123.1700000000@mail.example.test>"),
            "+OK ready <apop-timestamp>"
        );
        assert_eq!(normalise_greeting("+OK <no at>"), "+OK <no at>");
    }
}
