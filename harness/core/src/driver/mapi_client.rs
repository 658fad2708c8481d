//! A MAPI client as Outlook logs on over Exchange RPC (`ncacn_ip_tcp`), sans-IO: bind
//! EMSMDB with NTLM at the level its "encrypt data" setting picks, EcDoConnectEx for the
//! mailbox's DN, RopLogon through EcDoRpcExt2, EcDoDisconnect. A refused logon shows the
//! user Outlook's credential prompt (same credentials again, on a new association) until
//! the user cancels; what went wrong is reported as the RPC status and MAPI code Outlook
//! would show.
//!
//! The server's octets are hostile input: the association ([`ClientAssociation`]) checks
//! every fragment and verifier, the stubs are read with bounded NDR, and whatever is wrong
//! ends the session with an outcome, never a panic.

use std::collections::VecDeque;
use std::time::Duration;

use harness_wire::dcerpc::{AckResult, AuthLevel, ContextElement, FaultStatus, SyntaxId};
use harness_wire::ndr::ContextHandle;

use super::outcome::{Finding, SessionOutcome, SessionProtocol, Status};
use super::{AtPrompt, ClientOutput, ClientSession, Journal};
use crate::codes::{known, ErrorCode, Family};
use crate::dcerpc::client::{
    win32_status, BindSecurity, ClientAssociation, ClientConfig, ClientError, ClientEvent,
};
use crate::dcerpc::emsmdb::{client as stubs, rops, EMSMDB_SYNTAX, OP_CONNECT_EX};
use crate::dcerpc::emsmdb::{OP_DISCONNECT, OP_RPC_EXT2};
use crate::dcerpc::kerberos::KerberosClientSecurity;
use crate::dcerpc::ntlm::NtlmClientSecurity;
use crate::kerberos::client::Credentials as KerberosTicket;
use crate::ntlm::{Credentials, InitiatorOptions, ResponseKind};
use harness_wire::dcerpc::AuthType;

const RPC_S_SERVER_UNAVAILABLE: ErrorCode = ErrorCode::new(Family::Win32, 1722);
const RPC_S_CALL_FAILED: ErrorCode = ErrorCode::new(Family::Win32, 1726);

/// How the bind authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapiAuth {
    /// NTLM as the configured user and password; with both empty, anonymous (what a
    /// logon session without credentials offers).
    Ntlm,
    /// Kerberos (auth_type 16) with a service ticket for the store, the authenticator
    /// dated `now` (Unix seconds).
    Kerberos {
        ticket: Box<KerberosTicket>,
        now: i64,
    },
}

/// Who logs on, and how the Outlook profile is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapiClientConfig {
    /// Name shown in the outcome (defaults to the user name).
    pub actor: String,
    pub user: String,
    pub password: String,
    pub domain: String,
    /// The mailbox's legacy DN (what the Outlook profile holds).
    pub mailbox_dn: String,
    /// "Encrypt data between Outlook and Exchange": NTLM at packet privacy; off, packet
    /// integrity.
    pub encrypt: bool,
    /// The user answers at most this many credential prompts; at this one they cancel.
    /// 0: no prompt, a refused logon ends the session.
    pub max_prompts: u32,
    /// This many identical refusals without progress make a credential loop.
    pub loop_threshold: u32,
    /// Seeds the NTLM client challenge and session key.
    pub seed: u64,
    /// A server that stays silent this long while a reply is due is given up on.
    pub response_timeout: Duration,
    /// How long the user takes to answer a prompt.
    pub think_time: Duration,
    pub auth: MapiAuth,
    /// After RopLogon, list the Inbox (in the same EcDoRpcExt2): what an application
    /// that opens the mailbox shows.
    pub list_inbox: bool,
}

impl MapiClientConfig {
    pub fn new(user: &str, password: &str, mailbox_dn: &str) -> Self {
        MapiClientConfig {
            actor: user.to_string(),
            user: user.to_string(),
            password: password.to_string(),
            domain: "EXAMPLE".into(),
            mailbox_dn: mailbox_dn.to_string(),
            encrypt: true,
            max_prompts: 5,
            loop_threshold: 3,
            seed: 0,
            response_timeout: Duration::from_secs(60),
            think_time: Duration::from_secs(5),
            auth: MapiAuth::Ntlm,
            list_inbox: false,
        }
    }

    fn mechanism(&self) -> &'static str {
        match self.auth {
            MapiAuth::Ntlm if self.user.is_empty() && self.password.is_empty() => {
                "NTLM (anonymous)"
            }
            MapiAuth::Ntlm => "NTLM",
            MapiAuth::Kerberos { .. } => "Kerberos",
        }
    }

    fn level(&self) -> AuthLevel {
        if self.encrypt {
            AuthLevel::PKT_PRIVACY
        } else {
            AuthLevel::PKT_INTEGRITY
        }
    }

    /// The policy name outcomes print.
    pub fn policy_name(&self) -> String {
        format!(
            "outlook (exchange rpc, {}, {})",
            self.mechanism().to_lowercase(),
            if self.encrypt {
                "encrypted"
            } else {
                "not encrypted"
            }
        )
    }
}

/// Where the logon stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// The bind is out; waiting for bind_ack (the auth3 follows it).
    Binding,
    Connecting {
        call_id: u32,
    },
    LoggingOn {
        call_id: u32,
        cxh: ContextHandle,
    },
    Disconnecting {
        call_id: u32,
    },
    /// The user looks at the credential prompt; `cancel` says what pressing Cancel ends
    /// the session with, `None` that the same credentials go again.
    Prompting {
        cancel: Option<Status>,
    },
    Done,
}

pub struct MapiClient {
    cfg: MapiClientConfig,
    association: ClientAssociation,
    phase: Phase,
    out: VecDeque<ClientOutput>,
    journal: Journal,
    status: Status,
    attempts: u64,
    deadline: Option<Duration>,
    listing: Option<Vec<stubs::ListedMessage>>,
}

impl MapiClient {
    pub fn new(cfg: MapiClientConfig) -> Self {
        let mut client = MapiClient {
            association: ClientAssociation::new(ClientConfig::default()),
            cfg,
            phase: Phase::Binding,
            out: VecDeque::new(),
            journal: Journal::default(),
            status: Status::InProgress,
            attempts: 0,
            deadline: None,
            listing: None,
        };
        client.bind(Duration::ZERO);
        client
    }

    fn step(&mut self, line: impl Into<String>) {
        self.journal.step(line);
    }

    fn code(&mut self, code: ErrorCode) {
        self.journal.code(code);
    }

    fn finding(&mut self, f: Finding) {
        self.journal.finding(f);
    }

    fn finish(&mut self, status: Status) {
        if self.phase == Phase::Done {
            return;
        }
        self.phase = Phase::Done;
        self.status = status;
        self.deadline = None;
        self.out.push_back(ClientOutput::Close);
    }

    fn wait_reply(&mut self, now: Duration) {
        self.deadline = now.checked_add(self.cfg.response_timeout);
    }

    /// A new association on the current connection: the bind with a fresh NTLM context
    /// (each attempt its own client challenge and session key, from the seed).
    fn bind(&mut self, now: Duration) {
        self.attempts += 1;
        self.association = ClientAssociation::new(ClientConfig::default());
        let seed = self
            .cfg
            .seed
            .wrapping_add(self.attempts.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let [a, b, ..] = seed.to_le_bytes();
        let level = self.cfg.level();
        let provider: Box<dyn crate::dcerpc::security::ClientSecurity> = match &self.cfg.auth {
            MapiAuth::Ntlm => {
                let credentials = Credentials {
                    user: self.cfg.user.clone(),
                    password: self.cfg.password.clone(),
                    domain: self.cfg.domain.clone(),
                    workstation: "WS".into(),
                };
                let options = InitiatorOptions::fixed(a, b, ResponseKind::V2, true);
                Box::new(NtlmClientSecurity::new(credentials, options))
            }
            // The third leg goes in an auth3, as the Windows RPC runtime sends it.
            MapiAuth::Kerberos { ticket, now } => Box::new(
                KerberosClientSecurity::new(AuthType::KERBEROS, (**ticket).clone(), *now, seed)
                    .third_leg_in_auth3(),
            ),
        };
        let security = BindSecurity {
            provider,
            level,
            auth_context_id: 1,
        };
        let context = ContextElement {
            context_id: 0,
            abstract_syntax: EMSMDB_SYNTAX,
            transfer_syntaxes: vec![SyntaxId::NDR20],
        };
        match self.association.bind(&[context], Some(security)) {
            Ok(bytes) => {
                self.step(format!(
                    "C: bind EMSMDB {}.{}, {} at {}",
                    EMSMDB_SYNTAX.major(),
                    EMSMDB_SYNTAX.minor(),
                    self.cfg.mechanism(),
                    level_name(level)
                ));
                self.out.push_back(ClientOutput::Write(bytes));
                self.phase = Phase::Binding;
                self.wait_reply(now);
            }
            Err(e) => {
                self.step(format!("client: cannot bind: {e}"));
                self.finish(Status::Failed);
            }
        }
    }

    /// Sends one call on context 0, moving to the phase `next` makes of its call id.
    fn call(&mut self, now: Duration, opnum: u16, stub: &[u8], describe: String) -> Option<u32> {
        match self.association.call(0, opnum, None, stub) {
            Ok(call) => {
                self.step(format!("C: {describe}"));
                for f in call.fragments {
                    self.out.push_back(ClientOutput::Write(f));
                }
                self.wait_reply(now);
                Some(call.call_id)
            }
            Err(e) => {
                self.violation(format!("cannot call {describe}: {e}"));
                None
            }
        }
    }

    fn connect(&mut self, now: Duration) {
        let stub = stubs::connect_stub(&self.cfg.mailbox_dn, &[], 0);
        let describe = format!("EcDoConnectEx {}", self.cfg.mailbox_dn);
        if let Some(call_id) = self.call(now, OP_CONNECT_EX, &stub, describe) {
            self.phase = Phase::Connecting { call_id };
        }
    }

    fn violation(&mut self, detail: String) {
        self.step(format!("client: {detail}"));
        self.finding(Finding::ProtocolViolation { detail });
        self.code(known::MAPI_E_NETWORK_ERROR);
        self.finish(Status::Disconnected);
    }

    /// A logon refused (`how` tells refusals apart for loop detection): Outlook's
    /// credential prompt, or the end when prompting is off.
    fn refused(&mut self, now: Duration, how: String) {
        self.code(known::MAPI_E_LOGON_FAILED);
        if self.cfg.max_prompts == 0 {
            self.finish(Status::Failed);
            return;
        }
        let cancel = match self
            .journal
            .prompt(how, self.cfg.max_prompts, self.cfg.loop_threshold)
        {
            AtPrompt::Retry => None,
            AtPrompt::Cancel(status) => Some(status),
        };
        self.phase = Phase::Prompting { cancel };
        self.deadline = now.checked_add(self.cfg.think_time);
    }

    /// A fault on a call: the RPC status Outlook sees, and a refused logon when it is
    /// access denied (how Windows answers a request after a failed NTLM logon).
    fn fault(&mut self, now: Duration, status: FaultStatus) {
        let win32 = ErrorCode::new(Family::Win32, win32_status(status));
        self.step(format!("S: fault {win32}"));
        self.code(win32);
        if status == FaultStatus::ACCESS_DENIED {
            self.refused(now, format!("fault {}", status.0));
        } else {
            self.code(known::MAPI_E_NETWORK_ERROR);
            self.finish(Status::Failed);
        }
    }

    fn event(&mut self, now: Duration, event: ClientEvent) {
        match (event, self.phase.clone()) {
            (ClientEvent::Send(bytes), _) => {
                self.step(match self.cfg.auth {
                    MapiAuth::Ntlm => "C: auth3 (NTLM AUTHENTICATE)",
                    MapiAuth::Kerberos { .. } => "C: auth3 (Kerberos AP-REP)",
                });
                self.out.push_back(ClientOutput::Write(bytes));
            }
            (ClientEvent::BindAcked(ack), Phase::Binding) => {
                let accepted = ack.results.first().map(|r| r.result) == Some(AckResult::ACCEPTANCE);
                self.step(format!(
                    "S: bind_ack, EMSMDB {}",
                    if accepted { "accepted" } else { "rejected" }
                ));
                if !accepted {
                    self.code(ErrorCode::new(Family::Win32, 1717));
                    self.code(known::MAPI_E_NETWORK_ERROR);
                    self.finish(Status::Failed);
                }
                // The call goes once this input's events are handled: the auth3 leg
                // comes after the bind_ack among them and must be written first.
            }
            (ClientEvent::BindNak { reason, .. }, Phase::Binding) => {
                self.step(format!("S: bind_nak, reason {}", reason.0));
                self.code(RPC_S_SERVER_UNAVAILABLE);
                self.code(known::MAPI_E_NETWORK_ERROR);
                self.finish(Status::Failed);
            }
            (ClientEvent::Fault { status, .. }, _) => self.fault(now, status),
            (ClientEvent::Response { call_id, stub, .. }, Phase::Connecting { call_id: want })
                if call_id == want =>
            {
                self.connected(now, &stub)
            }
            (
                ClientEvent::Response { call_id, stub, .. },
                Phase::LoggingOn { call_id: want, cxh },
            ) if call_id == want => self.logged_on(now, &stub, cxh),
            (
                ClientEvent::Response { call_id, stub, .. },
                Phase::Disconnecting { call_id: want },
            ) if call_id == want => match stubs::parse_handle_response(&stub) {
                Ok((_, 0)) => {
                    self.step("S: EcDoDisconnect: ecNone");
                    self.finish(Status::Authenticated);
                }
                Ok((_, ec)) => {
                    self.step(format!("S: EcDoDisconnect: {}", ec_name(ec)));
                    self.finish(Status::Authenticated);
                }
                Err(e) => self.violation(format!("EcDoDisconnect response: {e}")),
            },
            (ClientEvent::Shutdown, _) => {
                self.step("S: shutdown");
            }
            (other, _) => self.violation(format!("unexpected {}", event_name(&other))),
        }
    }

    fn connected(&mut self, now: Duration, stub: &[u8]) {
        let connected = match stubs::parse_connect(stub) {
            Ok(c) => c,
            Err(e) => return self.violation(format!("EcDoConnectEx response: {e}")),
        };
        self.step(format!("S: EcDoConnectEx: {}", ec_name(connected.status)));
        match connected.status {
            0 => {
                let (rops, slots, describe) = if self.cfg.list_inbox {
                    (
                        stubs::inbox_listing_rops(&self.cfg.mailbox_dn),
                        3,
                        "EcDoRpcExt2 [RopLogon, RopOpenFolder Inbox, RopGetContentsTable, \
                         RopSetColumns, RopQueryRows]",
                    )
                } else {
                    (
                        stubs::logon_rop(0, &self.cfg.mailbox_dn),
                        1,
                        "EcDoRpcExt2 [RopLogon]",
                    )
                };
                let rgb_in = stubs::rop_request(&rops, &vec![u32::MAX; slots], true);
                let cb_in = u32::try_from(rgb_in.len()).unwrap_or(u32::MAX);
                let stub = stubs::rpc_stub(&connected.cxh, 0, &rgb_in, cb_in);
                if let Some(call_id) = self.call(now, OP_RPC_EXT2, &stub, describe.into()) {
                    self.phase = Phase::LoggingOn {
                        call_id,
                        cxh: connected.cxh,
                    };
                }
            }
            ec => {
                self.code(ErrorCode::new(Family::Mapi, ec));
                if matches!(ec, 0x8004_0111 | 0x8007_0005) {
                    self.refused(now, format!("ec {ec:#x}"));
                } else {
                    self.finish(Status::Failed);
                }
            }
        }
    }

    fn logged_on(&mut self, now: Duration, stub: &[u8], cxh: ContextHandle) {
        let result = match stubs::parse_rpc(stub) {
            Ok(r) => r,
            Err(e) => return self.violation(format!("EcDoRpcExt2 response: {e}")),
        };
        let (responses, _) = result.split();
        // RopLogon's response: RopId, OutputHandleIndex, ReturnValue ([MS-OXCROPS] 2.2.3.1.2).
        let logon = match responses.as_slice() {
            [rops::ROP_LOGON, _, a, b, c, d, ..] => Some(u32::from_le_bytes([*a, *b, *c, *d])),
            _ => None,
        };
        match (result.status, logon) {
            (0, Some(0)) => {
                self.step("S: EcDoRpcExt2: ecNone, RopLogon ecNone");
                if self.cfg.list_inbox {
                    match stubs::read_inbox_listing(&responses) {
                        Ok(stubs::Listing::Rows(rows)) => {
                            self.step(format!("S: RopQueryRows: {} rows", rows.len()));
                            self.listing = Some(rows);
                        }
                        Ok(stubs::Listing::Refused { rop, ec }) => {
                            self.step(format!("S: ROP {rop:#04x}: {}", ec_name(ec)));
                            self.code(ErrorCode::new(Family::Mapi, ec));
                            self.finish(Status::Failed);
                            return;
                        }
                        Err(e) => return self.violation(e.to_string()),
                    }
                }
                let stub = stubs::handle_stub(&cxh);
                if let Some(call_id) = self.call(now, OP_DISCONNECT, &stub, "EcDoDisconnect".into())
                {
                    self.phase = Phase::Disconnecting { call_id };
                }
            }
            (0, Some(ec)) => {
                self.step(format!("S: EcDoRpcExt2: ecNone, RopLogon {}", ec_name(ec)));
                self.code(ErrorCode::new(Family::Mapi, ec));
                self.code(known::MAPI_E_LOGON_FAILED);
                self.finish(Status::Failed);
            }
            (0, None) => self.violation("EcDoRpcExt2 answered RopLogon with no RopLogon".into()),
            (ec, _) => {
                self.step(format!("S: EcDoRpcExt2: {}", ec_name(ec)));
                self.code(ErrorCode::new(Family::Mapi, ec));
                self.finish(Status::Failed);
            }
        }
    }
}

fn level_name(level: AuthLevel) -> &'static str {
    match level {
        AuthLevel::PKT_PRIVACY => "packet privacy",
        AuthLevel::PKT_INTEGRITY => "packet integrity",
        AuthLevel::CONNECT => "connect",
        _ => "another level",
    }
}

/// An `ec` return value as the catalogue names it (`ecNone` for 0).
fn ec_name(ec: u32) -> String {
    if ec == 0 {
        "ecNone".into()
    } else {
        ErrorCode::new(Family::Mapi, ec).to_string()
    }
}

fn event_name(event: &ClientEvent) -> &'static str {
    match event {
        ClientEvent::Send(_) => "security leg",
        ClientEvent::BindAcked(_) => "bind_ack",
        ClientEvent::AlterContextAcked(_) => "alter_context_resp",
        ClientEvent::BindNak { .. } => "bind_nak",
        ClientEvent::Response { .. } => "response",
        ClientEvent::Fault { .. } => "fault",
        ClientEvent::Shutdown => "shutdown",
    }
}

impl MapiClient {
    /// The Inbox's messages, once a listing session has read them.
    pub fn listing(&self) -> Option<&[stubs::ListedMessage]> {
        self.listing.as_deref()
    }
}

impl ClientSession for MapiClient {
    fn handle_input(&mut self, now: Duration, input: &[u8]) {
        if self.phase == Phase::Done || input.is_empty() {
            return;
        }
        let mut events = Vec::new();
        let received = self.association.receive(input, &mut events);
        // The reply timer restarts on what the octets completed (a PDU's event), not on
        // octets alone: a server that drips a fragment out one octet at a time is still
        // silent.
        if !events.is_empty() && !matches!(self.phase, Phase::Prompting { .. }) {
            self.wait_reply(now);
        }
        for event in events {
            if self.phase == Phase::Done {
                break;
            }
            self.event(now, event);
        }
        if self.phase == Phase::Binding && self.association.is_ready() {
            self.connect(now);
        }
        if let Err(e) = received {
            if self.phase != Phase::Done && !matches!(self.phase, Phase::Prompting { .. }) {
                let detail = match e {
                    ClientError::Security(s) => format!("server's verifier refused: {s}"),
                    other => other.to_string(),
                };
                self.violation(detail);
            }
        }
    }

    fn handle_eof(&mut self, _now: Duration) {
        match self.phase {
            Phase::Done => {}
            // The prompt is up; the next attempt opens a new connection anyway.
            Phase::Prompting { .. } => {}
            _ => {
                self.step("S: <connection closed>");
                let during = match self.phase {
                    Phase::Binding => "bind",
                    Phase::Connecting { .. } => "EcDoConnectEx",
                    Phase::LoggingOn { .. } => "EcDoRpcExt2",
                    _ => "EcDoDisconnect",
                };
                self.finding(Finding::UnexpectedDisconnect {
                    during: during.into(),
                });
                self.code(RPC_S_SERVER_UNAVAILABLE);
                self.code(known::MAPI_E_NETWORK_ERROR);
                self.finish(Status::Disconnected);
            }
        }
    }

    fn handle_timeout(&mut self, now: Duration) {
        if self.deadline.is_none_or(|d| now < d) {
            return;
        }
        match self.phase.clone() {
            Phase::Done => {}
            Phase::Prompting {
                cancel: Some(status),
            } => self.finish(status),
            Phase::Prompting { cancel: None } => {
                // A new connection and association for the next attempt.
                self.step("client: reconnects");
                self.out.push_back(ClientOutput::Reconnect);
                self.bind(now);
            }
            _ => {
                self.step(format!(
                    "client: no reply within {}s",
                    self.cfg.response_timeout.as_secs()
                ));
                self.finding(Finding::ServerSilent {
                    during: "an RPC call".into(),
                });
                self.code(RPC_S_CALL_FAILED);
                self.code(known::MAPI_E_NETWORK_ERROR);
                self.finish(Status::Disconnected);
            }
        }
    }

    fn handle_tls_established(&mut self, _now: Duration) {}

    fn poll_output(&mut self) -> Option<ClientOutput> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if self.phase == Phase::Done {
            None
        } else {
            self.deadline
        }
    }

    fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    fn outcome(&self) -> SessionOutcome {
        self.journal.outcome(
            &self.cfg.actor,
            SessionProtocol::Mapi,
            self.cfg.policy_name(),
            self.status,
        )
    }
}

/// The client a `mapi_client_session` fuzz input plays: `sel` bit 0 turns encryption off,
/// bit 3 lists the Inbox after the logon,
/// bits 1-2 pick 0 to 3 prompts. The mailbox is the lab's alice, the seed fixed, so a
/// recorded server conversation replays (the NTLM keys come out the same).
pub fn fuzz_config(sel: u8) -> MapiClientConfig {
    let mut cfg = MapiClientConfig::new(
        "alice",
        "secret",
        &crate::dcerpc::legacy_dn::user_dn("EXAMPLE", "alice"),
    );
    cfg.encrypt = sel & 1 == 0;
    cfg.max_prompts = u32::from((sel >> 1) & 3);
    cfg.list_inbox = sel & 8 != 0;
    cfg.seed = 1;
    cfg
}

/// Fuzz target `mapi_client_session`: `data[0]` picks the configuration
/// ([`fuzz_config`]); the rest is what the server sends, handed over one PDU at a time
/// (by its frag_length, [C706] 12.6.3.1) as a server that answers each request in turn
/// would, so that a recorded conversation replays past the bind.
pub fn fuzz_mapi_client(data: &[u8]) {
    let sel = data.first().copied().unwrap_or(0);
    let client = MapiClient::new(fuzz_config(sel));
    super::fuzz_client_chunked(
        Box::new(client),
        data.get(1..).unwrap_or_default(),
        &frag_length_of,
    );
}

/// The frag_length a PDU's common header claims, or everything left when the octets do
/// not start with one.
fn frag_length_of(rest: &[u8], _index: usize) -> usize {
    let mut r = harness_wire::codec::Reader::new(rest);
    harness_wire::dcerpc::Header::decode(&mut r).map_or(rest.len(), |h| usize::from(h.frag_length))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcerpc::emsmdb::EmsmdbProfile;
    use crate::driver::{run_with_reconnect, RunEnd};
    use crate::session::ServerSession;
    use crate::world::LabFile;
    use std::sync::Arc;

    fn world() -> Arc<crate::world::World> {
        Arc::new(LabFile::default_lab().build().expect("default lab"))
    }

    /// Plays `cfg` against the in-process Exchange endpoint of `profile` and returns the
    /// outcome and every octet the server sent.
    fn play(cfg: MapiClientConfig, profile: EmsmdbProfile) -> (SessionOutcome, Vec<u8>) {
        let world = world();
        let endpoints = crate::scenario::rpc_endpoints(&world, profile, 7);
        let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
        struct Tap(Box<dyn ServerSession>, Arc<std::sync::Mutex<Vec<u8>>>);
        impl ServerSession for Tap {
            fn handle_input(&mut self, now: Duration, input: &[u8]) {
                self.0.handle_input(now, input)
            }
            fn handle_eof(&mut self, now: Duration) {
                self.0.handle_eof(now)
            }
            fn handle_timeout(&mut self, now: Duration) {
                self.0.handle_timeout(now)
            }
            fn handle_tls_established(&mut self, now: Duration) {
                self.0.handle_tls_established(now)
            }
            fn poll_output(&mut self) -> Option<crate::session::Output> {
                let o = self.0.poll_output();
                if let Some(crate::session::Output::Write(b)) = &o {
                    self.1.lock().unwrap().extend_from_slice(b);
                }
                o
            }
            fn poll_timeout(&self) -> Option<Duration> {
                self.0.poll_timeout()
            }
            fn is_closed(&self) -> bool {
                self.0.is_closed()
            }
        }
        let mut client = MapiClient::new(cfg);
        let tap = Arc::clone(&sent);
        let mut connect = |_n: usize| -> Box<dyn ServerSession> {
            Box::new(Tap(
                Box::new(endpoints.exchange.accept(Duration::ZERO)),
                Arc::clone(&tap),
            ))
        };
        let report = run_with_reconnect(&mut client, &mut connect, 10_000);
        assert_eq!(report.end, RunEnd::ClientDone);
        let bytes = sent.lock().unwrap().clone();
        (client.outcome(), bytes)
    }

    #[test]
    fn a_recorded_conversation_replays_to_the_fuzz_client() {
        // What the fuzz seeds are made of: the server's octets, fed back to a client with
        // the same configuration, reach the same end (its keys verify the signatures).
        let cfg = fuzz_config(0);
        let (outcome, server_bytes) = play(cfg.clone(), EmsmdbProfile::Exchange2010);
        assert_eq!(
            outcome.status,
            Status::Authenticated,
            "{}",
            outcome.render()
        );
        let mut replayed = MapiClient::new(cfg);
        let mut rest = server_bytes.as_slice();
        while !rest.is_empty() {
            while replayed.poll_output().is_some() {}
            let (pdu, tail) = rest.split_at(frag_length_of(rest, 0).clamp(1, rest.len()));
            replayed.handle_input(Duration::from_millis(1), pdu);
            rest = tail;
        }
        assert_eq!(replayed.outcome().status, Status::Authenticated);
        assert_eq!(replayed.outcome().steps, outcome.steps);
        fuzz_mapi_client(&[[0].as_slice(), &server_bytes].concat());
    }

    /// Regenerates the seeds of the `mapi_client_session` fuzz target from recorded
    /// conversations: `cargo test -p harness-core --lib write_mapi_client_seeds -- --ignored`.
    #[test]
    #[ignore = "writes corpus/fuzz/mapi_client_session/"]
    fn write_mapi_client_seeds() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../corpus/fuzz/mapi_client_session");
        std::fs::create_dir_all(&dir).unwrap();
        let cases = [
            (
                "logon-encrypted",
                0u8,
                EmsmdbProfile::Exchange2010,
                "secret",
            ),
            ("logon-integrity", 1, EmsmdbProfile::Exchange2010, "secret"),
            ("logon-listing", 8, EmsmdbProfile::Exchange2010, "secret"),
            ("not-encrypted", 1, EmsmdbProfile::Exchange2010Rtm, "secret"),
            (
                "wrong-password-prompts",
                2,
                EmsmdbProfile::Exchange2010,
                "wrong",
            ),
        ];
        for (name, sel, profile, password) in cases {
            let mut cfg = fuzz_config(sel);
            cfg.password = password.into();
            let (_, bytes) = play(cfg, profile);
            std::fs::write(dir.join(name), [[sel].as_slice(), &bytes].concat()).unwrap();
        }
    }

    #[test]
    fn a_listing_client_reads_the_inbox_after_the_logon() {
        let (outcome, _) = play(fuzz_config(8), EmsmdbProfile::Exchange2010);
        assert_eq!(
            outcome.status,
            Status::Authenticated,
            "{}",
            outcome.render()
        );
        let steps: Vec<String> = outcome.steps.iter().map(|s| s.0.clone()).collect();
        assert!(
            steps.contains(&"S: RopQueryRows: 3 rows".to_string()),
            "{steps:#?}"
        );
    }

    #[test]
    fn without_prompts_a_wrong_password_fails_at_once() {
        let mut cfg = fuzz_config(0);
        cfg.password = "wrong".into();
        cfg.max_prompts = 0;
        let (outcome, _) = play(cfg, EmsmdbProfile::Exchange2010);
        assert_eq!(outcome.status, Status::Failed);
        assert_eq!(outcome.prompts, 0);
        assert!(outcome.codes.contains(&known::MAPI_E_LOGON_FAILED));
    }

    #[test]
    fn a_silent_server_times_out_and_a_closed_one_is_a_disconnect() {
        let mut client = MapiClient::new(fuzz_config(0));
        assert!(matches!(client.poll_output(), Some(ClientOutput::Write(_))));
        let deadline = client.poll_timeout().expect("a reply is due");
        client.handle_timeout(deadline - Duration::from_millis(1));
        assert!(!client.is_done(), "fired early");
        client.handle_timeout(deadline);
        let o = client.outcome();
        assert_eq!(o.status, Status::Disconnected);
        assert!(o.codes.contains(&RPC_S_CALL_FAILED));
        assert!(o
            .findings
            .iter()
            .any(|f| matches!(f, Finding::ServerSilent { .. })));

        let mut client = MapiClient::new(fuzz_config(0));
        client.handle_eof(Duration::ZERO);
        let o = client.outcome();
        assert_eq!(o.status, Status::Disconnected);
        assert!(o.codes.contains(&RPC_S_SERVER_UNAVAILABLE));
        assert!(o.codes.contains(&known::MAPI_E_NETWORK_ERROR));
    }

    #[test]
    fn garbage_from_the_server_is_a_protocol_violation() {
        let mut client = MapiClient::new(fuzz_config(0));
        while client.poll_output().is_some() {}
        client.handle_input(
            Duration::ZERO,
            &[
                0x05, 0x00, 0x63, 0x03, 0x10, 0, 0, 0, 16, 0, 0, 0, 1, 0, 0, 0,
            ],
        );
        let o = client.outcome();
        assert_eq!(o.status, Status::Disconnected);
        assert!(o
            .findings
            .iter()
            .any(|f| matches!(f, Finding::ProtocolViolation { .. })));
        assert_eq!(client.poll_output(), Some(ClientOutput::Close));
    }
}
