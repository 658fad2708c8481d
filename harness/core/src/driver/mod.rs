//! Client programs as sans-IO state machines: an IMAP4 and a POP3 client that behave like
//! real clients (Outlook Express with or without SPA, a basic client, curl), the outcome
//! model the scenario runner and snapshots print, and [`run_pair`] to connect a client to
//! a server endpoint in-process with a virtual clock.
//!
//! A client is fed the server's bytes (`handle_input`), the end of the connection
//! (`handle_eof`) and its timers (`handle_timeout`), and polled for what to do
//! ([`ClientOutput`]). Server replies are hostile input: they are read with bounded
//! buffers, and whatever is wrong with them ends in an outcome, never a panic.

pub mod imap_client;
pub mod imap_response;
pub mod mapi_app;
pub mod mapi_client;
pub mod outcome;
pub mod policy;
pub mod pop3_client;
pub mod sasl_client;

#[cfg(test)]
mod load_session_tests;
#[cfg(test)]
mod tests;

pub use imap_client::{ImapClient, ImapClientError};
pub use imap_response::fuzz_response_decode as fuzz_imap_response_decode;
pub use mapi_app::{AppCall, MapiApp, MapiAppConfig, ProcessIdentity, CONNECT_NO_NOTIFICATIONS};
pub use mapi_client::{MapiClient, MapiClientConfig};
pub use outcome::{Finding, SessionOutcome, SessionProtocol, Status, StepLine};
pub use policy::{AuthMethod, Offer, Policy, Rules};
pub use pop3_client::{Pop3Client, Pop3ClientError};

use std::collections::VecDeque;
use std::time::Duration;

use crate::codes::{ErrorCode, Family};
use crate::session::{Output, ServerSession};
use crate::Protocol;

const IXP_E_FAILED_TO_CONNECT: ErrorCode = ErrorCode::new(Family::Ixp, 0x800C_CC0E);
const IXP_E_CONNECTION_DROPPED: ErrorCode = ErrorCode::new(Family::Ixp, 0x800C_CC0F);
const IXP_E_TIMEOUT: ErrorCode = ErrorCode::new(Family::Ixp, 0x800C_CC19);
const IXP_E_SECURE_CONNECT_FAILED: ErrorCode = ErrorCode::new(Family::Ixp, 0x800C_CC1A);

/// One thing the adapter must do for a client, in the order polled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOutput {
    /// Send these bytes to the server.
    Write(Vec<u8>),
    /// Everything written so far has been flushed; run the client side of a TLS handshake
    /// and call [`ClientSession::handle_tls_established`].
    StartTls,
    /// Flush, then close the connection. The client is done.
    Close,
    /// Close this connection and open a new one to the same server; the client then
    /// expects a greeting. An adapter that cannot reconnect calls
    /// [`ClientSession::handle_eof`] instead.
    Reconnect,
}

/// The contract every sans-IO client keeps (the mirror of [`ServerSession`]).
///
/// `now` is time since the client started, on the adapter's clock (real or virtual).
pub trait ClientSession: Send {
    /// Bytes the server sent (any split).
    fn handle_input(&mut self, now: Duration, input: &[u8]);
    /// The server closed the connection, or it broke, or a reconnect failed.
    fn handle_eof(&mut self, now: Duration);
    /// The adapter's timer fired.
    fn handle_timeout(&mut self, now: Duration);
    /// The TLS handshake asked for by [`ClientOutput::StartTls`] finished.
    fn handle_tls_established(&mut self, now: Duration);
    fn poll_output(&mut self) -> Option<ClientOutput>;
    /// When [`ClientSession::handle_timeout`] should next be called.
    fn poll_timeout(&self) -> Option<Duration>;
    /// True once the client has finished (its outcome is final).
    fn is_done(&self) -> bool;
    fn outcome(&self) -> SessionOutcome;
}

/// Who the client is and how it behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Name shown in the outcome (defaults to the user name).
    pub actor: String,
    pub user: String,
    pub password: String,
    /// NTLM domain and workstation.
    pub domain: String,
    pub workstation: String,
    pub policy: Policy,
    /// The simulated user answers at most this many prompts; at this one they cancel.
    /// 0: the client never prompts.
    pub max_prompts: u32,
    /// This many identical prompts without progress make a credential loop.
    pub loop_threshold: u32,
    /// Seeds the NTLM client challenge and session key.
    pub seed: u64,
    /// Ask for STARTTLS / STLS before authenticating (and fail if it is not offered).
    pub starttls: bool,
    /// The connection is already inside TLS (implicit TLS).
    pub tls_active: bool,
    /// A server that stays silent this long while a reply is due is given up on.
    pub response_timeout: Duration,
    /// How long the user takes to answer a prompt.
    pub think_time: Duration,
    /// Longest server line accepted, CRLF included.
    pub max_line: usize,
    /// Largest IMAP literal skipped; a bigger count ends the session.
    pub max_literal: u64,
    /// Ask for the capabilities (IMAP CAPABILITY, POP3 CAPA and the AUTH listing) before
    /// logging in. Off: take the cleartext login as offered and send it at once, as the
    /// load generator's sessions do (they measure a server, not a client's manners).
    pub ask_capabilities: bool,
    /// Once logged in, read the mail too: IMAP `FETCH 1:* (FLAGS BODY.PEEK[])` after
    /// SELECT, POP3 `RETR 1` after STAT (the body is skipped, not kept). A refused SELECT,
    /// FETCH, STAT or RETR then fails the session.
    pub read_mail: bool,
}

impl ClientConfig {
    pub fn new(user: &str, password: &str, policy: Policy) -> Self {
        ClientConfig {
            actor: user.to_string(),
            user: user.to_string(),
            password: password.to_string(),
            domain: "EXAMPLE".into(),
            workstation: "WS".into(),
            policy,
            max_prompts: 5,
            loop_threshold: 3,
            seed: 0,
            starttls: false,
            tls_active: false,
            // Outlook Express's default server timeout is one minute.
            response_timeout: Duration::from_secs(60),
            think_time: Duration::from_secs(5),
            max_line: 8 * 1024,
            max_literal: 16 * 1024 * 1024,
            ask_capabilities: true,
            read_mail: false,
        }
    }

    pub(crate) fn credentials(&self) -> crate::ntlm::Credentials {
        crate::ntlm::Credentials {
            user: self.user.clone(),
            password: self.password.clone(),
            domain: self.domain.clone(),
            workstation: self.workstation.clone(),
        }
    }
}

/// Step lines kept per outcome; the rest is counted.
const MAX_STEPS: usize = 400;

/// The user at a password prompt after a refused logon. The connection may close while
/// the prompt is up; what happens when the think time is over is [`Prompt::answer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prompt {
    /// The server closed the connection meanwhile.
    pub closed: bool,
    /// The user will press Cancel, ending the session with this status; `None`: the user
    /// re-enters the credentials.
    pub cancel: Option<Status>,
}

/// What the user at a prompt does when the think time is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PromptAnswer {
    /// Cancel, on a connection that is already gone: the session ends with this status.
    End(Status),
    /// Cancel: say goodbye (LOGOUT, QUIT) and end with this status.
    Goodbye(Status),
    /// Log on again: on this connection, or on a new one when `reconnect`.
    Retry { reconnect: bool },
}

impl Prompt {
    pub fn answer(self) -> PromptAnswer {
        match self.cancel {
            Some(status) if self.closed => PromptAnswer::End(status),
            Some(status) => PromptAnswer::Goodbye(status),
            None => PromptAnswer::Retry {
                reconnect: self.closed,
            },
        }
    }
}

/// The `ClientSession` calls both clients answer from their [`Common`] (field `c`).
macro_rules! answer_from_common {
    () => {
        fn poll_output(&mut self) -> Option<ClientOutput> {
            self.c.pop()
        }

        fn poll_timeout(&self) -> Option<Duration> {
            self.c.timeout()
        }

        fn is_done(&self) -> bool {
            self.c.done
        }

        fn outcome(&self) -> SessionOutcome {
            self.c.outcome()
        }
    };
}
use answer_from_common;

/// What every client records of its session: the steps, the codes and findings, and the
/// simulated user's credential prompts (counted, and a loop noticed when the same refusal
/// comes `loop_threshold` times in a row).
#[derive(Debug, Default)]
pub(crate) struct Journal {
    steps: Vec<StepLine>,
    omitted: usize,
    codes: Vec<ErrorCode>,
    findings: Vec<Finding>,
    pub prompts: u32,
    identical: u32,
    last_refusal: Option<String>,
}

/// What the user at a credential prompt does, from [`Journal::prompt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AtPrompt {
    /// Re-enters the same credentials.
    Retry,
    /// Presses Cancel: the session ends with this status (looping when a loop was seen).
    Cancel(Status),
}

impl Journal {
    pub fn step(&mut self, line: impl Into<String>) {
        if self.steps.len() < MAX_STEPS {
            self.steps.push(StepLine(line.into()));
        } else {
            self.omitted += 1;
        }
    }

    pub fn code(&mut self, code: ErrorCode) {
        if !self.codes.contains(&code) {
            self.codes.push(code);
        }
    }

    pub fn finding(&mut self, f: Finding) {
        if let Finding::CredentialLoop { prompts } = f {
            if let Some(Finding::CredentialLoop { prompts: p }) = self
                .findings
                .iter_mut()
                .find(|x| matches!(x, Finding::CredentialLoop { .. }))
            {
                *p = prompts;
                return;
            }
        }
        if !self.findings.contains(&f) {
            self.findings.push(f);
        }
    }

    pub fn has_loop(&self) -> bool {
        self.findings
            .iter()
            .any(|f| matches!(f, Finding::CredentialLoop { .. }))
    }

    /// A refused logon puts the prompt up: counted, `signature` compared with the last
    /// refusal for loop detection, and the user cancels at the `max_prompts`th prompt.
    pub fn prompt(&mut self, signature: String, max_prompts: u32, loop_threshold: u32) -> AtPrompt {
        self.prompts += 1;
        if self.last_refusal.as_deref() == Some(signature.as_str()) {
            self.identical += 1;
        } else {
            self.identical = 1;
            self.last_refusal = Some(signature);
        }
        if self.identical >= loop_threshold.max(1) {
            self.finding(Finding::CredentialLoop {
                prompts: self.prompts,
            });
        }
        let n = self.prompts;
        if n >= max_prompts {
            self.step(format!("prompt {n}: user cancels"));
            AtPrompt::Cancel(if self.has_loop() {
                Status::Looping
            } else {
                Status::Failed
            })
        } else {
            self.step(format!("prompt {n}: user re-enters the same credentials"));
            AtPrompt::Retry
        }
    }

    /// The outcome of a session with these header fields and this status.
    pub fn outcome(
        &self,
        actor: &str,
        protocol: SessionProtocol,
        policy: String,
        status: Status,
    ) -> SessionOutcome {
        let mut steps = self.steps.clone();
        if self.omitted > 0 {
            steps.push(StepLine(format!(
                "... {} more steps not shown",
                self.omitted
            )));
        }
        SessionOutcome {
            actor: actor.to_string(),
            protocol,
            policy,
            steps,
            status,
            codes: self.codes.clone(),
            findings: self.findings.clone(),
            prompts: self.prompts,
        }
    }
}

/// The bookkeeping both mail clients share: the journal, the output queue and the timer.
#[derive(Debug)]
pub(crate) struct Common {
    pub cfg: ClientConfig,
    pub rules: Rules,
    pub protocol: Protocol,
    journal: Journal,
    pub status: Status,
    out: VecDeque<ClientOutput>,
    pub done: bool,
    pub deadline: Option<Duration>,
    pub tls: bool,
    /// Logon attempts so far (each NTLM attempt gets its own seed).
    pub attempts: u64,
    /// A reconnect was asked for and no byte has arrived on the new connection yet.
    pub reconnecting: bool,
}

impl Common {
    pub fn new(cfg: ClientConfig, protocol: Protocol) -> Self {
        let rules = cfg.policy.rules();
        Common {
            tls: cfg.tls_active,
            rules,
            protocol,
            journal: Journal::default(),
            status: Status::InProgress,
            out: VecDeque::new(),
            done: false,
            deadline: Some(cfg.response_timeout),
            attempts: 0,
            reconnecting: false,
            cfg,
        }
    }

    pub fn step(&mut self, line: impl Into<String>) {
        self.journal.step(line);
    }

    pub fn server_line(&mut self, text: &[u8]) {
        let shown = outcome::printable(text, 160);
        self.step(format!("S: {shown}"));
    }

    pub fn code(&mut self, code: Option<ErrorCode>) {
        if let Some(c) = code {
            self.journal.code(c);
        }
    }

    pub fn finding(&mut self, f: Finding) {
        self.journal.finding(f);
    }

    /// Queues bytes and a step line saying what they are.
    pub fn send(&mut self, now: Duration, bytes: Vec<u8>, describe: String) {
        self.step(format!("C: {describe}"));
        self.out.push_back(ClientOutput::Write(bytes));
        self.wait_reply(now);
    }

    pub fn push(&mut self, o: ClientOutput) {
        self.out.push_back(o);
    }

    /// Asks the adapter for a new connection; the caller resets its per-connection state.
    pub fn reconnect(&mut self, now: Duration) {
        self.step("client: reconnects");
        self.tls = self.cfg.tls_active;
        self.reconnecting = true;
        self.out.push_back(ClientOutput::Reconnect);
        self.wait_reply(now);
    }

    pub fn pop(&mut self) -> Option<ClientOutput> {
        self.out.pop_front()
    }

    /// The next timer, none once the client is done.
    pub fn timeout(&self) -> Option<Duration> {
        if self.done {
            None
        } else {
            self.deadline
        }
    }

    pub fn wait_reply(&mut self, now: Duration) {
        self.deadline = now.checked_add(self.cfg.response_timeout);
    }

    /// Ends the session with this status and closes the connection.
    pub fn finish(&mut self, status: Status) {
        if self.done {
            return;
        }
        self.done = true;
        self.status = status;
        self.deadline = None;
        self.out.push_back(ClientOutput::Close);
    }

    /// The server broke a rule: note it and drop the connection.
    pub fn violation(&mut self, detail: String, code: Option<ErrorCode>) {
        self.step(format!("client: {detail}"));
        self.finding(Finding::ProtocolViolation { detail });
        if self.rules.ixp_codes {
            self.code(code);
        }
        self.finish(Status::Disconnected);
    }

    /// The connection went away while a reply was due.
    pub fn dropped(&mut self, during: &str, code: Option<ErrorCode>) {
        if self.reconnecting {
            self.step("client: reconnect failed");
            if self.rules.ixp_codes {
                self.code(Some(IXP_E_FAILED_TO_CONNECT));
            }
            self.finish(Status::Disconnected);
            return;
        }
        self.step("S: <connection closed>");
        self.finding(Finding::UnexpectedDisconnect {
            during: during.to_string(),
        });
        if self.rules.ixp_codes {
            self.code(Some(code.unwrap_or(IXP_E_CONNECTION_DROPPED)));
        }
        self.finish(Status::Disconnected);
    }

    pub fn timed_out(&mut self, during: &str) {
        self.step(format!(
            "client: no reply within {}s",
            self.cfg.response_timeout.as_secs()
        ));
        self.finding(Finding::ServerSilent {
            during: during.to_string(),
        });
        if self.rules.ixp_codes {
            self.code(Some(IXP_E_TIMEOUT));
        }
        self.finish(Status::Disconnected);
    }

    /// STARTTLS / STLS was wanted and is not on offer.
    pub fn no_tls(&mut self, wanted: &str) {
        self.step(format!("client: the server does not offer {wanted}"));
        self.finding(Finding::MechanismNotOffered {
            wanted: wanted.to_string(),
        });
        if self.rules.ixp_codes {
            self.code(Some(IXP_E_SECURE_CONNECT_FAILED));
        }
    }

    /// Nothing the policy can use is offered: report it (the caller says goodbye).
    fn nothing_usable(&mut self, offer: &Offer) {
        let wanted: Vec<String> = self
            .rules
            .preference
            .iter()
            .map(|m| m.label(self.protocol))
            .collect();
        let offered: Vec<&str> = offer.mechanisms.iter().map(|m| m.name()).collect();
        let offered = if offered.is_empty() {
            "none".to_string()
        } else {
            offered.join(" ")
        };
        self.step(format!(
            "client: {} (wants {}; SASL offered: {offered}{})",
            self.rules.nothing_usable_text,
            wanted.join(" or "),
            if offer.cleartext {
                ""
            } else {
                "; cleartext login refused"
            }
        ));
        self.finding(Finding::MechanismNotOffered {
            wanted: wanted.join(" or "),
        });
        let code = self.rules.not_offered_code(self.protocol);
        self.code(code);
    }

    /// Called as a logon with `method` starts.
    fn begin_logon(&mut self, method: AuthMethod) {
        self.attempts += 1;
        if method.is_cleartext() && !self.tls {
            self.finding(Finding::CleartextCredentials {
                mechanism: method.label(self.protocol),
            });
        }
    }

    /// The seed for the current attempt's NTLM randomness.
    pub fn attempt_seed(&self) -> u64 {
        self.cfg
            .seed
            .wrapping_add(self.attempts.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// A logon with `method` was refused; `signature` says how (for loop detection). The
    /// user is shown a prompt, or (`Err`) the client gives up with that status.
    pub fn logon_failed(
        &mut self,
        now: Duration,
        method: AuthMethod,
        signature: String,
    ) -> Result<Prompt, Status> {
        let code = self.rules.failure_code(self.protocol, method);
        self.code(code);
        if !self.rules.prompt_on_failure || self.cfg.max_prompts == 0 {
            return Err(Status::Failed);
        }
        let at_prompt =
            self.journal
                .prompt(signature, self.cfg.max_prompts, self.cfg.loop_threshold);
        self.deadline = now.checked_add(self.cfg.think_time);
        let cancel = match at_prompt {
            AtPrompt::Retry => None,
            AtPrompt::Cancel(status) => {
                let code = self.rules.cancel_code();
                self.code(code);
                Some(status)
            }
        };
        Ok(Prompt {
            closed: false,
            cancel,
        })
    }

    /// The server closed the connection while the user looks at `prompt`.
    pub fn closed_during(&mut self, prompt: Prompt) -> Prompt {
        self.step("S: <connection closed>");
        Prompt {
            closed: true,
            ..prompt
        }
    }

    /// Bytes came from the server: a reconnect is over, and unless the user is at a
    /// prompt (whose think time runs on the same timer) the reply timer starts again.
    pub fn heard_from_server(&mut self, now: Duration, input: &[u8], prompting: bool) {
        if input.is_empty() {
            return;
        }
        self.reconnecting = false;
        if !prompting {
            self.wait_reply(now);
        }
    }

    /// The method to log on with, counted as an attempt; `None` (reported) when the policy
    /// can use nothing on `offer` and the caller says goodbye.
    pub fn choose_logon(&mut self, offer: &Offer) -> Option<AuthMethod> {
        let Some(method) = self.rules.choose(offer) else {
            self.nothing_usable(offer);
            return None;
        };
        self.begin_logon(method);
        Some(method)
    }

    pub fn outcome(&self) -> SessionOutcome {
        self.journal.outcome(
            &self.cfg.actor,
            self.protocol.into(),
            self.rules.name.clone(),
            self.status,
        )
    }
}

/// A client for `protocol` behind the common trait (for scenario runners).
pub fn new_client(protocol: Protocol, cfg: ClientConfig) -> Box<dyn ClientSession> {
    match protocol {
        Protocol::Imap => Box::new(ImapClient::new(cfg)),
        Protocol::Pop3 => Box::new(Pop3Client::new(cfg)),
    }
}

/// Takes what a closed server still wants to say (nobody hears it), boundedly.
fn drain_server(server: &mut dyn ServerSession) {
    for _ in 0..MAX_OUTPUTS_PER_STEP {
        if server.poll_output().is_none() {
            break;
        }
    }
}

/// Outputs taken from one side in one step of [`run_pair`].
const MAX_OUTPUTS_PER_STEP: usize = 1024;

/// Virtual time that passes with every exchange in [`run_pair`].
const TICK: Duration = Duration::from_millis(1);

/// How an in-process run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// The client finished.
    ClientDone,
    /// Nothing moved and no timer was pending (the client was told EOF; see its outcome).
    Stalled,
    /// `max_steps` ran out before the client finished.
    StepLimit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunReport {
    pub end: RunEnd,
    pub steps: usize,
    /// Connections opened (1 + reconnects).
    pub connections: usize,
    /// The virtual clock at the end.
    pub now: Duration,
}

enum ConnEnd {
    Done,
    Reconnect,
    Stalled,
    StepLimit,
}

/// Runs one connection between `client` and `server` until the client is done, asks to
/// reconnect, stalls, or the step budget is spent. TLS requests are granted at once.
fn run_connection(
    client: &mut dyn ClientSession,
    server: &mut dyn ServerSession,
    clock: &mut Duration,
    budget: &mut usize,
) -> ConnEnd {
    let start = *clock;
    let mut server_closed = false;
    let mut eof_told = false;
    loop {
        if *budget == 0 {
            return ConnEnd::StepLimit;
        }
        *budget -= 1;
        *clock += TICK;
        let now = *clock;
        let snow = now.saturating_sub(start);
        let mut moved = false;
        // At most this many outputs per side per step, so a runaway peer cannot spin here.
        let mut left = MAX_OUTPUTS_PER_STEP;
        while let Some(o) = (left > 0).then(|| server.poll_output()).flatten() {
            left -= 1;
            moved = true;
            match o {
                Output::Write(bytes) if !server_closed => client.handle_input(now, &bytes),
                Output::Write(_) => {}
                Output::StartTls => server.handle_tls_established(snow),
                Output::Close => server_closed = true,
            }
        }
        if server_closed && !eof_told {
            eof_told = true;
            moved = true;
            client.handle_eof(now);
        }
        let mut left = MAX_OUTPUTS_PER_STEP;
        while let Some(o) = (left > 0).then(|| client.poll_output()).flatten() {
            left -= 1;
            moved = true;
            match o {
                ClientOutput::Write(bytes) => {
                    if !server_closed {
                        server.handle_input(snow, &bytes);
                    }
                }
                ClientOutput::StartTls => client.handle_tls_established(now),
                ClientOutput::Close | ClientOutput::Reconnect => {
                    if !server_closed {
                        server.handle_eof(snow);
                        drain_server(server);
                    }
                    return if matches!(o, ClientOutput::Reconnect) {
                        ConnEnd::Reconnect
                    } else {
                        ConnEnd::Done
                    };
                }
            }
        }
        if client.is_done() {
            if !server_closed {
                server.handle_eof(snow);
                drain_server(server);
            }
            return ConnEnd::Done;
        }
        if !moved {
            // Nothing on the wire: jump the clock to the earliest timer.
            let ct = client.poll_timeout();
            let st = if server_closed {
                None
            } else {
                server.poll_timeout().map(|t| t + start)
            };
            let Some(next) = [ct, st].into_iter().flatten().min() else {
                client.handle_eof(now);
                return ConnEnd::Stalled;
            };
            *clock = (*clock).max(next);
            let now = *clock;
            if ct.is_some_and(|t| t <= now) {
                client.handle_timeout(now);
            }
            if st.is_some_and(|t| t <= now) {
                server.handle_timeout(now.saturating_sub(start));
            }
        }
    }
}

/// Connects `client` to `server` in-process and shuttles bytes both ways on a virtual
/// clock until the client is done (at most `max_steps` exchanges). A reconnect request
/// cannot be granted with a single server: the client is told the connection failed.
pub fn run_pair(
    client: &mut dyn ClientSession,
    server: &mut dyn ServerSession,
    max_steps: usize,
) -> RunReport {
    let mut clock = Duration::ZERO;
    let mut budget = max_steps;
    let mut end = run_connection(client, server, &mut clock, &mut budget);
    let mut guard = 0;
    while matches!(end, ConnEnd::Reconnect) && guard < 4 {
        guard += 1;
        client.handle_eof(clock);
        end = drain_closed(client, &mut clock, &mut budget);
    }
    report(end, max_steps - budget, 1, clock)
}

/// Runs the client after a refused reconnect: nothing to talk to, only its own outputs.
fn drain_closed(
    client: &mut dyn ClientSession,
    clock: &mut Duration,
    budget: &mut usize,
) -> ConnEnd {
    while *budget > 0 {
        *budget -= 1;
        *clock += TICK;
        match client.poll_output() {
            Some(ClientOutput::Close) => return ConnEnd::Done,
            Some(ClientOutput::Reconnect) => return ConnEnd::Reconnect,
            Some(_) => {}
            None if client.is_done() => return ConnEnd::Done,
            None => {
                client.handle_eof(*clock);
                if client.is_done() {
                    continue;
                }
                return ConnEnd::Stalled;
            }
        }
    }
    ConnEnd::StepLimit
}

/// Like [`run_pair`], but every connection (the first and each reconnect) gets a fresh
/// server from `connect` (called with the connection number, from 0).
pub fn run_with_reconnect(
    client: &mut dyn ClientSession,
    connect: &mut dyn FnMut(usize) -> Box<dyn ServerSession>,
    max_steps: usize,
) -> RunReport {
    let mut clock = Duration::ZERO;
    let mut budget = max_steps;
    let mut n = 0;
    loop {
        let mut server = connect(n);
        n += 1;
        match run_connection(client, server.as_mut(), &mut clock, &mut budget) {
            ConnEnd::Reconnect => continue,
            end => return report(end, max_steps - budget, n, clock),
        }
    }
}

fn report(end: ConnEnd, steps: usize, connections: usize, now: Duration) -> RunReport {
    let end = match end {
        ConnEnd::Done => RunEnd::ClientDone,
        ConnEnd::Stalled => RunEnd::Stalled,
        ConnEnd::StepLimit | ConnEnd::Reconnect => RunEnd::StepLimit,
    };
    RunReport {
        end,
        steps,
        connections,
        now,
    }
}

/// Largest single write a client makes (an NTLM AUTHENTICATE in base64 is well under it).
const FUZZ_MAX_WRITE: usize = 16 * 1024;

/// Feeds hostile server bytes into a client and checks that it stays sane: no panic, every
/// write bounded, and the client finishes once the bytes run out (EOF and timers).
fn fuzz_client(client: Box<dyn ClientSession>, data: &[u8]) {
    const CHUNKS: [usize; 7] = [1, 5, 64, 3, 512, 17, 4096];
    fuzz_client_chunked(client, data, &|_rest, i| {
        CHUNKS.get(i % CHUNKS.len()).copied().unwrap_or(1)
    });
}

/// [`fuzz_client`] with the server's octets cut by `chunk` (given what is left and the
/// chunk's index; at least one octet is taken).
pub(crate) fn fuzz_client_chunked(
    mut client: Box<dyn ClientSession>,
    data: &[u8],
    chunk: &dyn Fn(&[u8], usize) -> usize,
) {
    let mut now = Duration::ZERO;
    let mut rest = data;
    let mut i = 0;
    let drain = |c: &mut dyn ClientSession, now: Duration| {
        let mut n = 0;
        while let Some(o) = c.poll_output() {
            n += 1;
            assert!(n < 10_000, "client output never ends");
            match o {
                ClientOutput::Write(b) => assert!(b.len() <= FUZZ_MAX_WRITE, "write too large"),
                ClientOutput::StartTls => c.handle_tls_established(now),
                ClientOutput::Close | ClientOutput::Reconnect => {}
            }
        }
    };
    drain(client.as_mut(), now);
    while !rest.is_empty() && !client.is_done() {
        let n = chunk(rest, i).clamp(1, rest.len());
        i += 1;
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        now += TICK;
        client.handle_input(now, chunk);
        drain(client.as_mut(), now);
    }
    // Out of bytes: the server goes away, and any pending timer fires.
    for _ in 0..64 {
        if client.is_done() {
            break;
        }
        client.handle_eof(now);
        drain(client.as_mut(), now);
        if let Some(t) = client.poll_timeout() {
            now = now.max(t);
            client.handle_timeout(now);
            drain(client.as_mut(), now);
        }
    }
    assert!(client.is_done(), "client did not finish after EOF");
    let outcome = client.outcome();
    assert_ne!(outcome.status, Status::InProgress);
    let _ = outcome.render();
}

fn fuzz_config(sel: u8) -> ClientConfig {
    let policy = match sel % 5 {
        0 => Policy::OutlookExpress { use_spa: true },
        1 => Policy::OutlookExpress { use_spa: false },
        2 => Policy::Basic,
        3 => Policy::CurlLike,
        _ => Policy::Forced(AuthMethod::Sasl(crate::sasl::Mechanism::Login)),
    };
    let mut cfg = ClientConfig::new("alice", "secret", policy);
    cfg.starttls = sel & 0x10 != 0;
    cfg.max_line = 1024;
    cfg.max_literal = 64 * 1024;
    cfg.max_prompts = 3;
    cfg
}

/// Fuzz target `imap_client_session`: `data[0]` picks the policy and STARTTLS; the rest is
/// what the server sends.
pub fn fuzz_imap_client(data: &[u8]) {
    let sel = data.first().copied().unwrap_or(0);
    let client = ImapClient::new(fuzz_config(sel));
    fuzz_client(Box::new(client), data.get(1..).unwrap_or_default());
}

/// Fuzz target `pop3_client_session`: `data[0]` picks the policy and STLS; the rest is
/// what the server sends.
pub fn fuzz_pop3_client(data: &[u8]) {
    let sel = data.first().copied().unwrap_or(0);
    let client = Pop3Client::new(fuzz_config(sel));
    fuzz_client(Box::new(client), data.get(1..).unwrap_or_default());
}
