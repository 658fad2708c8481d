//! A MAPI application with threads, sans-IO: the client side of the association-GUID
//! registration clash (issue 17).
//!
//! The application is a service process. Its identity is the mailbox user's own, or
//! Local System, which authenticates on the network as the machine account; in the second
//! case its worker threads impersonate the mailbox user. One MAPI session runs on one RPC
//! association: the first worker logs on (bind EMSMDB and AsyncEMSMDB with NTLM under its
//! token, EcDoConnectEx, RopLogon, RopRegisterNotification), then every worker polls with
//! EcDoRpcExt2 (which carries RopNotify for new mail). Unless the profile's
//! PR_PROFILE_CONNECT_FLAGS has CONNECT_NO_NOTIFICATIONS (0x20), the MAPI provider's
//! async-notification thread, which runs under the process identity whatever the workers
//! impersonate, calls EcDoAsyncConnectEx and parks EcDoAsyncWaitEx. Each thread's calls go
//! out under the security context of the token it really runs under: one context when
//! every thread is the user, a second one (added by alter_context, auth_context_id 2) for
//! a Local System process's notification thread.
//!
//! A deterministic scheduler decides, from the schedule seed, which ready thread issues
//! the next call (virtual clock, one call on the wire at a time besides the parked wait),
//! so a case replays exactly and schedules can be fuzzed. The journal names the thread
//! and the principal of every call; the outcome says which threads failed with what and
//! whether new mail arrived as a notification.

use std::collections::VecDeque;
use std::time::Duration;

use harness_wire::dcerpc::{AuthLevel, ContextElement, FaultStatus, SyntaxId};
use harness_wire::ndr::{ContextHandle, NdrReader};

use super::outcome::{Finding, SessionOutcome, SessionProtocol, Status};
use super::{ClientOutput, ClientSession, Journal};
use crate::codes::{known, ErrorCode, Family};
use crate::dcerpc::client::{
    win32_status, BindSecurity, ClientAssociation, ClientConfig, ClientEvent,
};
use crate::dcerpc::emsmdb::{client as stubs, rops, ASYNC_EMSMDB_SYNTAX, EMSMDB_SYNTAX};
use crate::dcerpc::emsmdb::{
    NOTIFICATION_PENDING, OP_ASYNC_CONNECT_EX, OP_ASYNC_WAIT_EX, OP_CONNECT_EX, OP_DISCONNECT,
    OP_RPC_EXT2,
};
use crate::dcerpc::ntlm::NtlmClientSecurity;
use crate::ntlm::{Credentials, InitiatorOptions, ResponseKind};
use crate::rng::SeededRng;

/// PR_PROFILE_CONNECT_FLAGS's CONNECT_NO_NOTIFICATIONS (EDKMDB; PROTOCOLS.md section 8):
/// no async notifications.
pub const CONNECT_NO_NOTIFICATIONS: u32 = 0x20;
/// Bind-time features the application offers: security context multiplexing (a second
/// security context on the association) and keep connection on orphan ([MS-RPCE]
/// 2.2.2.14).
const FEATURES: u16 = 0x3;
/// RopNotify's RopId ([MS-OXCROPS] 2.2.14.2).
const ROP_NOTIFY: u8 = 0x2A;
/// Calls one thread makes at most (polls, async waits); past it the thread stops.
const MAX_CALLS_PER_THREAD: u32 = 64;

/// Whom the process runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessIdentity {
    /// The mailbox user: no impersonation, every thread is the user.
    MailboxUser,
    /// Local System (the machine account on the network); the workers impersonate the
    /// mailbox user.
    LocalSystem,
    /// A named service account; the workers impersonate the mailbox user.
    ServiceAccount,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapiAppConfig {
    pub user: String,
    pub password: String,
    pub domain: String,
    /// The mailbox's legacy DN.
    pub mailbox_dn: String,
    pub process: ProcessIdentity,
    /// The machine account Local System authenticates as, and its password.
    pub machine_account: String,
    pub machine_password: String,
    /// The named service account a [`ProcessIdentity::ServiceAccount`] process runs as.
    pub service_account: String,
    pub service_password: String,
    /// PR_PROFILE_CONNECT_FLAGS (0x66040003).
    pub connect_flags: u32,
    /// Worker threads (at least one), each polling `polls` times, `poll_interval` apart.
    pub workers: u8,
    pub polls: u8,
    pub poll_interval: Duration,
    /// Seeds the schedule and the NTLM client challenges.
    pub seed: u64,
    /// New mail is delivered during the run: with notifications on, one must arrive.
    pub mail_expected: bool,
    pub response_timeout: Duration,
}

impl MapiAppConfig {
    pub fn new(user: &str, password: &str, mailbox_dn: &str) -> Self {
        MapiAppConfig {
            user: user.into(),
            password: password.into(),
            domain: "EXAMPLE".into(),
            mailbox_dn: mailbox_dn.into(),
            process: ProcessIdentity::MailboxUser,
            machine_account: "APPSRV$".into(),
            machine_password: "machine-secret".into(),
            service_account: "svc-mapi".into(),
            service_password: "service-secret".into(),
            connect_flags: 0,
            workers: 2,
            polls: 4,
            poll_interval: Duration::from_secs(2),
            seed: 0,
            mail_expected: false,
            response_timeout: Duration::from_secs(60),
        }
    }

    /// The account the process itself runs as on the network, and its password, when it
    /// is not the mailbox user.
    pub fn process_account(&self) -> Option<(&str, &str)> {
        match self.process {
            ProcessIdentity::MailboxUser => None,
            ProcessIdentity::LocalSystem => Some((&self.machine_account, &self.machine_password)),
            ProcessIdentity::ServiceAccount => {
                Some((&self.service_account, &self.service_password))
            }
        }
    }

    fn notifications(&self) -> bool {
        self.connect_flags & CONNECT_NO_NOTIFICATIONS == 0
    }

    /// The policy name outcomes print.
    pub fn policy_name(&self) -> String {
        let process = match self.process {
            ProcessIdentity::MailboxUser => format!("runs as {}", self.user),
            ProcessIdentity::LocalSystem => format!("Local System impersonating {}", self.user),
            ProcessIdentity::ServiceAccount => {
                format!("{} impersonating {}", self.service_account, self.user)
            }
        };
        format!(
            "MAPI service ({process}, {} workers, PR_PROFILE_CONNECT_FLAGS {:#x})",
            self.workers, self.connect_flags
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Worker(u8),
    Notifier,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// May issue its next call from `at` on.
    Ready {
        at: Duration,
    },
    /// A call of its is in flight (the notifier's wait may be parked meanwhile).
    Calling,
    Done,
    Failed,
}

#[derive(Debug)]
struct Thread {
    kind: Kind,
    /// "EXAMPLE\alice": who its token is.
    principal: String,
    auth_context_id: u32,
    run: Run,
    calls: u32,
    polls_left: u8,
}

impl Thread {
    fn name(&self) -> String {
        match self.kind {
            Kind::Worker(i) => format!("worker {i}"),
            Kind::Notifier => "notification thread".into(),
        }
    }
}

/// A call the application made, as the fuzz target's model reads them: the server's name
/// for it, the principal of the thread that made it (`domain\user`, lower case), and
/// what came back (`Some(ec)`; `None` for a fault, or no answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppCall {
    pub call_id: u32,
    pub call: &'static str,
    pub principal: String,
    pub thread: String,
    pub result: Option<u32>,
}

/// The server's name of a call (the one its call log uses).
fn call_name(context_id: u16, opnum: u16) -> &'static str {
    match (context_id, opnum) {
        (1, OP_ASYNC_WAIT_EX) => "EcDoAsyncWaitEx",
        (_, OP_CONNECT_EX) => "EcDoConnectEx",
        (_, OP_RPC_EXT2) => "EcDoRpcExt2",
        (_, OP_ASYNC_CONNECT_EX) => "EcDoAsyncConnectEx",
        (_, OP_DISCONNECT) => "EcDoDisconnect",
        _ => "another call",
    }
}

/// One call a thread makes: where, what, and how the journal names it.
struct Call<'a> {
    context_id: u16,
    opnum: u16,
    stub: &'a [u8],
    purpose: Purpose,
    describe: &'a str,
}

/// What a call in flight is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Connect,
    Logon,
    Poll,
    AddSecurity,
    AsyncConnect,
    AsyncWait,
    Disconnect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Binding,
    Running,
    Disconnecting,
    Done,
}

pub struct MapiApp {
    cfg: MapiAppConfig,
    association: ClientAssociation,
    threads: Vec<Thread>,
    phase: Phase,
    rng: SeededRng,
    out: VecDeque<ClientOutput>,
    journal: Journal,
    status: Status,
    /// call_id -> (thread index, purpose) of the calls in flight.
    in_flight: Vec<(u32, usize, Purpose)>,
    /// Every call made, in order, with its result once it came.
    calls: Vec<AppCall>,
    /// The one call on the wire besides a parked wait: no other goes out meanwhile.
    busy: bool,
    cxh: Option<ContextHandle>,
    acxh: Option<ContextHandle>,
    handles: Vec<u32>,
    /// The notifier's security context is established on the association.
    notifier_ready: bool,
    notifications: u32,
    deadline: Option<Duration>,
}

impl MapiApp {
    pub fn new(cfg: MapiAppConfig) -> Self {
        let user = format!("{}\\{}", cfg.domain, cfg.user);
        let mut threads: Vec<Thread> = (1..=cfg.workers.max(1))
            .map(|i| Thread {
                kind: Kind::Worker(i),
                principal: user.clone(),
                auth_context_id: 1,
                run: Run::Ready { at: Duration::ZERO },
                calls: 0,
                polls_left: cfg.polls,
            })
            .collect();
        if cfg.notifications() {
            let (principal, auth_context_id) = match cfg.process_account() {
                None => (user.clone(), 1),
                Some((account, _)) => (format!("{}\\{}", cfg.domain, account), 2),
            };
            threads.push(Thread {
                kind: Kind::Notifier,
                principal,
                auth_context_id,
                run: Run::Ready { at: Duration::ZERO },
                calls: 0,
                polls_left: 0,
            });
        }
        let mut app = MapiApp {
            association: ClientAssociation::new(ClientConfig {
                bind_time_features: Some(FEATURES),
                ..ClientConfig::default()
            }),
            rng: SeededRng::new(cfg.seed ^ 0x5343_4845_4455_4c45),
            threads,
            phase: Phase::Binding,
            out: VecDeque::new(),
            journal: Journal::default(),
            status: Status::InProgress,
            in_flight: Vec::new(),
            calls: Vec::new(),
            busy: false,
            cxh: None,
            acxh: None,
            handles: Vec::new(),
            notifier_ready: false,
            notifications: 0,
            deadline: None,
            cfg,
        };
        app.bind();
        app
    }

    /// NTLM for a thread's token: the user's credentials (a worker, or any thread of a
    /// process that runs as the user), or the machine account's.
    fn security(&self, thread: usize) -> BindSecurity {
        let t = &self.threads[thread];
        let (user, password) = match self.cfg.process_account() {
            Some(process) if t.auth_context_id == 2 => process,
            _ => (self.cfg.user.as_str(), self.cfg.password.as_str()),
        };
        let [a, b, ..] = self
            .cfg
            .seed
            .wrapping_add(u64::from(t.auth_context_id))
            .to_le_bytes();
        let credentials = Credentials {
            user: user.to_string(),
            password: password.to_string(),
            domain: self.cfg.domain.clone(),
            workstation: "APPSRV".into(),
        };
        BindSecurity {
            provider: Box::new(NtlmClientSecurity::new(
                credentials,
                InitiatorOptions::fixed(a, b, ResponseKind::V2, true),
            )),
            level: AuthLevel::PKT_PRIVACY,
            auth_context_id: t.auth_context_id,
        }
    }

    fn step(&mut self, thread: Option<usize>, line: impl Into<String>) {
        let line = line.into();
        match thread {
            Some(i) => {
                let t = &self.threads[i];
                let who = format!("{} ({})", t.name(), t.principal);
                self.journal.step(format!("{who}: {line}"));
            }
            None => self.journal.step(line),
        }
    }

    fn bind(&mut self) {
        let contexts =
            [(0, EMSMDB_SYNTAX), (1, ASYNC_EMSMDB_SYNTAX)].map(|(id, syntax)| ContextElement {
                context_id: id,
                abstract_syntax: syntax,
                transfer_syntaxes: vec![SyntaxId::NDR20],
            });
        let security = self.security(0);
        match self.association.bind(&contexts, Some(security)) {
            Ok(bytes) => {
                self.step(
                    Some(0),
                    "C: bind EMSMDB and AsyncEMSMDB, NTLM at packet privacy",
                );
                self.out.push_back(ClientOutput::Write(bytes));
                self.busy = true;
            }
            Err(e) => self.fail_all(format!("cannot bind: {e}"), None),
        }
    }

    /// Sends a call for `thread` under its security context.
    fn call(&mut self, now: Duration, thread: usize, call: Call<'_>) {
        let Call {
            context_id,
            opnum,
            stub,
            purpose,
            describe,
        } = call;
        let auth = Some(self.threads[thread].auth_context_id);
        match self
            .association
            .call_as(context_id, auth, opnum, None, stub)
        {
            Ok(call) => {
                self.step(Some(thread), format!("C: {describe}"));
                for f in call.fragments {
                    self.out.push_back(ClientOutput::Write(f));
                }
                self.in_flight.push((call.call_id, thread, purpose));
                let t = &self.threads[thread];
                self.calls.push(AppCall {
                    call_id: call.call_id,
                    call: call_name(context_id, opnum),
                    principal: t.principal.to_ascii_lowercase(),
                    thread: t.name(),
                    result: None,
                });
                self.threads[thread].calls += 1;
                self.threads[thread].run = Run::Calling;
                if purpose != Purpose::AsyncWait {
                    self.busy = true;
                    self.deadline = now.checked_add(self.cfg.response_timeout);
                }
            }
            Err(e) => self.thread_failed(thread, format!("cannot call {describe}: {e}"), None),
        }
    }

    fn thread_failed(&mut self, thread: usize, why: String, code: Option<ErrorCode>) {
        self.step(Some(thread), why);
        if let Some(code) = code {
            self.journal.code(code);
        }
        self.journal.code(known::MAPI_E_NETWORK_ERROR);
        self.threads[thread].run = Run::Failed;
    }

    fn fail_all(&mut self, why: String, finding: Option<Finding>) {
        self.step(None, format!("client: {why}"));
        if let Some(f) = finding {
            self.journal.finding(f);
        }
        self.journal.code(known::MAPI_E_NETWORK_ERROR);
        for t in &mut self.threads {
            if t.run != Run::Done {
                t.run = Run::Failed;
            }
        }
        self.finish();
    }

    /// Picks the next call: among the threads ready now, one by the schedule's seed;
    /// when every worker is through, the session ends.
    fn schedule(&mut self, now: Duration) {
        if self.phase != Phase::Running || self.busy || !self.association.is_ready() {
            return;
        }
        let workers_through = self
            .threads
            .iter()
            .filter(|t| matches!(t.kind, Kind::Worker(_)))
            .all(|t| matches!(t.run, Run::Done | Run::Failed));
        if workers_through {
            return self.disconnect(now);
        }
        let ready: Vec<usize> = (0..self.threads.len())
            .filter(|&i| matches!(self.threads[i].run, Run::Ready { at } if at <= now))
            .collect();
        if ready.is_empty() {
            return;
        }
        let pick = ready[(self.rng.next_u64() % ready.len() as u64) as usize];
        if self.threads[pick].calls >= MAX_CALLS_PER_THREAD {
            self.threads[pick].run = Run::Done;
            return self.schedule(now);
        }
        match self.threads[pick].kind {
            Kind::Worker(_) => self.poll(now, pick),
            Kind::Notifier => self.notifier_next(now, pick),
        }
    }

    fn poll(&mut self, now: Duration, thread: usize) {
        let Some(cxh) = self.cxh else {
            return self.thread_failed(thread, "no session to poll".into(), None);
        };
        let rgb_in = stubs::rop_request(&[], &self.handles, true);
        let cb_in = u32::try_from(rgb_in.len()).unwrap_or(u32::MAX);
        let stub = stubs::rpc_stub(&cxh, 0, &rgb_in, cb_in);
        let call = Call {
            context_id: 0,
            opnum: OP_RPC_EXT2,
            stub: &stub,
            purpose: Purpose::Poll,
            describe: "EcDoRpcExt2 (poll)",
        };
        self.call(now, thread, call);
    }

    fn notifier_next(&mut self, now: Duration, thread: usize) {
        if self.threads[thread].auth_context_id != 1 && !self.notifier_ready {
            let context = ContextElement {
                context_id: 1,
                abstract_syntax: ASYNC_EMSMDB_SYNTAX,
                transfer_syntaxes: vec![SyntaxId::NDR20],
            };
            let security = self.security(thread);
            match self.association.add_security(&[context], security) {
                Ok(bytes) => {
                    self.step(
                        Some(thread),
                        "C: alter_context, a second security context (NTLM at packet privacy, auth_context_id 2)",
                    );
                    self.out.push_back(ClientOutput::Write(bytes));
                    self.in_flight.push((0, thread, Purpose::AddSecurity));
                    self.threads[thread].run = Run::Calling;
                    self.busy = true;
                    self.deadline = now.checked_add(self.cfg.response_timeout);
                }
                Err(e) => self.thread_failed(thread, format!("cannot add its context: {e}"), None),
            }
            return;
        }
        match (self.acxh, self.cxh) {
            (None, Some(cxh)) => {
                let stub = stubs::handle_stub(&cxh);
                self.call(
                    now,
                    thread,
                    Call {
                        context_id: 0,
                        opnum: OP_ASYNC_CONNECT_EX,
                        stub: &stub,
                        purpose: Purpose::AsyncConnect,
                        describe: "EcDoAsyncConnectEx",
                    },
                );
            }
            (Some(acxh), _) => {
                let stub = stubs::wait_stub(&acxh);
                self.call(
                    now,
                    thread,
                    Call {
                        context_id: 1,
                        opnum: OP_ASYNC_WAIT_EX,
                        stub: &stub,
                        purpose: Purpose::AsyncWait,
                        describe: "EcDoAsyncWaitEx",
                    },
                );
            }
            (None, None) => self.thread_failed(thread, "no session".into(), None),
        }
    }

    fn disconnect(&mut self, now: Duration) {
        self.phase = Phase::Disconnecting;
        let session_alive = self.threads.iter().all(|t| t.run != Run::Failed);
        match self.cxh.filter(|_| session_alive) {
            Some(cxh) => {
                let stub = stubs::handle_stub(&cxh);
                self.call(
                    now,
                    0,
                    Call {
                        context_id: 0,
                        opnum: OP_DISCONNECT,
                        stub: &stub,
                        purpose: Purpose::Disconnect,
                        describe: "EcDoDisconnect",
                    },
                );
            }
            None => self.finish(),
        }
    }

    fn finish(&mut self) {
        if self.phase == Phase::Done {
            return;
        }
        self.phase = Phase::Done;
        self.deadline = None;
        let failed = self.threads.iter().any(|t| t.run == Run::Failed);
        let summary: Vec<String> = self
            .threads
            .iter()
            .map(|t| {
                let how = match t.run {
                    Run::Failed => "failed",
                    _ => "ok",
                };
                format!(
                    "{} ({}, auth_context_id {}): {} calls, {how}",
                    t.name(),
                    t.principal,
                    t.auth_context_id,
                    t.calls
                )
            })
            .collect();
        for line in summary {
            self.journal.step(format!("summary: {line}"));
        }
        let notes = if self.cfg.notifications() {
            format!("notifications received: {}", self.notifications)
        } else {
            "notifications: off (CONNECT_NO_NOTIFICATIONS)".to_string()
        };
        self.journal.step(format!("summary: {notes}"));
        if self.cfg.notifications() && self.cfg.mail_expected && self.notifications == 0 {
            self.journal.finding(Finding::NotificationMissed);
        }
        self.status = if failed {
            Status::Failed
        } else {
            Status::Authenticated
        };
        self.out.push_back(ClientOutput::Close);
    }

    fn event(&mut self, now: Duration, event: ClientEvent) {
        match event {
            ClientEvent::Send(bytes) => self.out.push_back(ClientOutput::Write(bytes)),
            ClientEvent::BindAcked(_) if self.phase == Phase::Binding => {
                self.step(Some(0), "S: bind_ack");
                self.busy = false;
            }
            ClientEvent::AlterContextAcked(_) => {
                if let Some(pos) = self
                    .in_flight
                    .iter()
                    .position(|(_, _, p)| *p == Purpose::AddSecurity)
                {
                    let (_, thread, _) = self.in_flight.remove(pos);
                    self.step(Some(thread), "S: alter_context_resp");
                    self.notifier_ready = true;
                    self.busy = false;
                    self.threads[thread].run = Run::Ready { at: now };
                }
            }
            ClientEvent::BindNak { reason, .. } => {
                self.fail_all(format!("bind_nak, reason {}", reason.0), None)
            }
            ClientEvent::Response { call_id, stub, .. } => self.response(now, call_id, &stub),
            ClientEvent::Fault {
                call_id, status, ..
            } => self.fault(call_id, status),
            ClientEvent::Shutdown => self.step(None, "S: shutdown"),
            ClientEvent::BindAcked(_) => {
                self.fail_all("a second bind_ack".into(), None);
            }
        }
    }

    fn take_call(&mut self, call_id: u32) -> Option<(usize, Purpose)> {
        let pos = self.in_flight.iter().position(|(c, _, _)| *c == call_id)?;
        let (_, thread, purpose) = self.in_flight.remove(pos);
        if purpose != Purpose::AsyncWait {
            self.busy = false;
            self.deadline = None;
        }
        Some((thread, purpose))
    }

    fn fault(&mut self, call_id: u32, status: FaultStatus) {
        let code = ErrorCode::new(Family::Win32, win32_status(status));
        match self.take_call(call_id) {
            Some((thread, _)) => {
                self.thread_failed(thread, format!("S: fault {code}"), Some(code));
                if self.phase != Phase::Running {
                    self.finish();
                }
            }
            None => self.fail_all(format!("fault {code} on the association"), None),
        }
    }

    /// The calls made so far, in order, with their results.
    pub fn calls(&self) -> &[AppCall] {
        &self.calls
    }

    /// Files a call's return value (its last four octets: every EMSMDB and AsyncEMSMDB
    /// response ends with the `long` it returns).
    fn record_result(&mut self, call_id: u32, result: Option<u32>) {
        if let Some(c) = self.calls.iter_mut().rev().find(|c| c.call_id == call_id) {
            c.result = result;
        }
    }

    fn response(&mut self, now: Duration, call_id: u32, stub: &[u8]) {
        let ec = stub
            .len()
            .checked_sub(4)
            .and_then(|at| stub.get(at..))
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        self.record_result(call_id, ec);
        let Some((thread, purpose)) = self.take_call(call_id) else {
            return self.fail_all(
                format!("a response to call {call_id}, which is not in flight"),
                Some(Finding::ProtocolViolation {
                    detail: "response to no call".into(),
                }),
            );
        };
        let next = Run::Ready { at: now };
        match purpose {
            Purpose::Connect => match stubs::parse_connect(stub) {
                Ok(c) if c.status == 0 => {
                    self.step(Some(thread), "S: EcDoConnectEx: ecNone");
                    self.cxh = Some(c.cxh);
                    let mut rop = stubs::logon_rop(0, &self.cfg.mailbox_dn);
                    let table = if self.cfg.notifications() {
                        rop.extend(stubs::register_rop(0, 1));
                        vec![u32::MAX; 2]
                    } else {
                        vec![u32::MAX]
                    };
                    let rgb_in = stubs::rop_request(&rop, &table, true);
                    let cb_in = u32::try_from(rgb_in.len()).unwrap_or(u32::MAX);
                    let stub = stubs::rpc_stub(&c.cxh, 0, &rgb_in, cb_in);
                    let what = if self.cfg.notifications() {
                        "EcDoRpcExt2 [RopLogon, RopRegisterNotification]"
                    } else {
                        "EcDoRpcExt2 [RopLogon]"
                    };
                    self.call(
                        now,
                        thread,
                        Call {
                            context_id: 0,
                            opnum: OP_RPC_EXT2,
                            stub: &stub,
                            purpose: Purpose::Logon,
                            describe: what,
                        },
                    );
                }
                Ok(c) => {
                    let code = ErrorCode::new(Family::Mapi, c.status);
                    self.fail_all(format!("EcDoConnectEx: {code}"), None);
                }
                Err(e) => self.fail_all(format!("EcDoConnectEx response: {e}"), None),
            },
            Purpose::Logon => match stubs::parse_rpc(stub) {
                Ok(r) if r.status == 0 => {
                    let (responses, handles) = r.split();
                    let logon_ok =
                        matches!(responses.as_slice(), [rops::ROP_LOGON, _, 0, 0, 0, 0, ..]);
                    if !logon_ok {
                        return self.fail_all("RopLogon refused".into(), None);
                    }
                    self.step(Some(thread), "S: EcDoRpcExt2: ecNone, RopLogon ecNone");
                    self.handles = handles;
                    self.phase = Phase::Running;
                    self.threads[thread].run = next;
                }
                Ok(r) => {
                    let code = ErrorCode::new(Family::Mapi, r.status);
                    self.fail_all(format!("EcDoRpcExt2 (logon): {code}"), None);
                }
                Err(e) => self.fail_all(format!("EcDoRpcExt2 response: {e}"), None),
            },
            Purpose::Poll => match stubs::parse_rpc(stub) {
                Ok(r) if r.status == 0 => {
                    let (responses, _) = r.split();
                    let notified = responses.first() == Some(&ROP_NOTIFY);
                    if notified {
                        self.notifications += 1;
                        self.step(Some(thread), "S: EcDoRpcExt2: ecNone, RopNotify (new mail)");
                    } else {
                        self.step(Some(thread), "S: EcDoRpcExt2: ecNone");
                    }
                    let t = &mut self.threads[thread];
                    t.polls_left = t.polls_left.saturating_sub(1);
                    t.run = if t.polls_left == 0 {
                        Run::Done
                    } else {
                        Run::Ready {
                            at: now + self.cfg.poll_interval,
                        }
                    };
                }
                Ok(r) => {
                    let code = ErrorCode::new(Family::Mapi, r.status);
                    self.thread_failed(thread, format!("S: EcDoRpcExt2: {code}"), None);
                }
                Err(e) => self.thread_failed(thread, format!("EcDoRpcExt2 response: {e}"), None),
            },
            Purpose::AsyncConnect => match stubs::parse_handle_response(stub) {
                Ok((acxh, 0)) => {
                    self.step(Some(thread), "S: EcDoAsyncConnectEx: ecNone");
                    self.acxh = Some(acxh);
                    self.threads[thread].run = next;
                }
                Ok((_, ec)) => {
                    let code = ErrorCode::new(Family::Mapi, ec);
                    self.thread_failed(thread, format!("S: EcDoAsyncConnectEx: {code}"), None);
                }
                Err(e) => {
                    self.thread_failed(thread, format!("EcDoAsyncConnectEx response: {e}"), None)
                }
            },
            Purpose::AsyncWait => match parse_wait(stub) {
                Some((flags, 0)) => {
                    let what = if flags & NOTIFICATION_PENDING != 0 {
                        "NotificationPending"
                    } else {
                        "nothing pending"
                    };
                    self.step(Some(thread), format!("S: EcDoAsyncWaitEx: ecNone, {what}"));
                    // The provider's next EcDoRpcExt2 fetches the RopNotify: a worker
                    // polls at once.
                    if flags & NOTIFICATION_PENDING != 0 {
                        for t in &mut self.threads {
                            if let (Kind::Worker(_), Run::Ready { at }) = (t.kind, &mut t.run) {
                                *at = (*at).min(now);
                            }
                        }
                    }
                    self.threads[thread].run = next;
                }
                Some((_, ec)) => {
                    let code = ErrorCode::new(Family::Mapi, ec);
                    self.thread_failed(thread, format!("S: EcDoAsyncWaitEx: {code}"), None);
                }
                None => {
                    self.thread_failed(thread, "EcDoAsyncWaitEx response malformed".into(), None)
                }
            },
            Purpose::Disconnect => {
                match stubs::parse_handle_response(stub) {
                    Ok((_, 0)) => self.step(Some(thread), "S: EcDoDisconnect: ecNone"),
                    Ok((_, ec)) => {
                        let code = ErrorCode::new(Family::Mapi, ec);
                        self.step(Some(thread), format!("S: EcDoDisconnect: {code}"));
                    }
                    Err(e) => self.step(Some(thread), format!("EcDoDisconnect response: {e}")),
                }
                if self.threads[thread].run == Run::Calling {
                    self.threads[thread].run = Run::Done;
                }
                self.finish();
            }
            Purpose::AddSecurity => {}
        }
    }
}

fn parse_wait(stub: &[u8]) -> Option<(u32, u32)> {
    let mut r = NdrReader::new(stub);
    Some((r.u32().ok()?, r.u32().ok()?))
}

impl ClientSession for MapiApp {
    fn handle_input(&mut self, now: Duration, input: &[u8]) {
        if self.phase == Phase::Done || input.is_empty() {
            return;
        }
        let mut events = Vec::new();
        let received = self.association.receive(input, &mut events);
        for event in events {
            if self.phase == Phase::Done {
                break;
            }
            self.event(now, event);
        }
        if let Err(e) = received {
            return self.fail_all(
                format!("the server's octets broke the association: {e}"),
                Some(Finding::ProtocolViolation {
                    detail: e.to_string(),
                }),
            );
        }
        if self.phase == Phase::Binding && !self.busy && self.association.is_ready() {
            let stub = stubs::connect_stub(&self.cfg.mailbox_dn, &[], 0);
            let what = format!("EcDoConnectEx {}", self.cfg.mailbox_dn);
            self.call(
                now,
                0,
                Call {
                    context_id: 0,
                    opnum: OP_CONNECT_EX,
                    stub: &stub,
                    purpose: Purpose::Connect,
                    describe: &what,
                },
            );
        }
        self.schedule(now);
    }

    fn handle_eof(&mut self, _now: Duration) {
        if self.phase == Phase::Done {
            return;
        }
        let during = match self
            .in_flight
            .iter()
            .find(|(_, _, p)| *p != Purpose::AsyncWait)
        {
            Some((_, _, p)) => format!("{p:?}"),
            None => "the session".into(),
        };
        self.journal.code(ErrorCode::new(Family::Win32, 1722));
        self.fail_all(
            "S: <connection closed>".into(),
            Some(Finding::UnexpectedDisconnect { during }),
        );
    }

    fn handle_timeout(&mut self, now: Duration) {
        if self.deadline.is_some_and(|d| d <= now) {
            return self.fail_all(
                "the server did not answer in time".into(),
                Some(Finding::ServerSilent {
                    during: "a call".into(),
                }),
            );
        }
        self.schedule(now);
    }

    fn handle_tls_established(&mut self, _now: Duration) {}

    fn poll_output(&mut self) -> Option<ClientOutput> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if self.phase == Phase::Done {
            return None;
        }
        let next_ready = if self.busy || self.phase != Phase::Running {
            None
        } else {
            self.threads
                .iter()
                .filter_map(|t| match t.run {
                    Run::Ready { at } => Some(at),
                    _ => None,
                })
                .min()
        };
        [self.deadline, next_ready].into_iter().flatten().min()
    }

    fn is_done(&self) -> bool {
        self.phase == Phase::Done && self.out.is_empty()
    }

    fn outcome(&self) -> SessionOutcome {
        self.journal.outcome(
            &self.cfg.user,
            SessionProtocol::Mapi,
            self.cfg.policy_name(),
            if self.phase == Phase::Done {
                self.status
            } else {
                Status::InProgress
            },
        )
    }
}
