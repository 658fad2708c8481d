//! The server side of a connection-oriented association ([C706] 12.6, [MS-RPCE] 3.3.1.5),
//! sans-IO: bytes in, PDUs out, through the [`ServerSession`] contract every endpoint of
//! the lab keeps.
//!
//! An [`Endpoint`] is shared by the connections of one listener: its interfaces, its
//! security providers, its association groups and its limits. Each connection is an
//! [`Association`]: bind (or bind_nak), presentation contexts, security contexts by
//! `auth_context_id`, calls reassembled, verified, dispatched and answered.
//!
//! What a misbehaving client gets (the answers Samba 4.17 gives, Windows where it is
//! known to differ; the choice for a failed logon is [`AuthFailureFault`]):
//! - a request before bind, an unknown or client-bound PTYPE, a PDU that does not
//!   decode, fragments out of order: fault `nca_s_proto_error`, then the connection closes;
//! - a context id never accepted: fault `nca_s_unk_if`; an opnum the interface lacks:
//!   fault `nca_s_op_rng_error` (both with DID_NOT_EXECUTE, the connection stays);
//! - a signature that does not verify (tampered, replayed, out of sequence): fault
//!   `RPC_S_SEC_PKG_ERROR`, then the connection closes (the cipher state is lost); a
//!   trailer naming another auth type or level than its context: `access_denied`, closed;
//! - a request under a security context whose logon failed or never finished: the
//!   [`AuthFailureFault`] of the endpoint;
//! - a bind to nothing offered: bind_ack with a per-context rejection; a bind that cannot
//!   be served at all (frag sizes below 1432, an unknown association group, an auth type
//!   not offered, minor version above 1): bind_nak.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness_wire::codec::Reader;
use harness_wire::dcerpc::{
    fragment, protected_layout, AckReason, AckResult, Auth3, AuthLevel, AuthType, AuthVerifier,
    Bind, BindAck, BindNak, CallReassembler, ContextElement, ContextResult, Fault, FaultStatus,
    Header, PacketType, Pdu, PduBody, PduFramer, PfcFlags, RejectReason, Request, Response,
    SyntaxId,
};

use super::interface::{CallContext, CallOutcome, RpcInterface};
use super::security::{
    AcceptStep, Principal, SecurityError, ServerSecurity, ServerSecurityFactory,
};
use crate::notify::Waker;
use crate::session::{Output, ServerSession};

/// The smallest fragment every implementation must accept ([C706] 12.6.3.1
/// MUST_RECV_FRAG_SIZE); a bind offering less is refused.
pub const MIN_FRAG: u16 = 1432;

/// What a request gets when its security context failed to log on (wrong password,
/// auth3 missing): Windows answers `access_denied` (what impacket users see as
/// `rpc_s_access_denied`) and, as far as is known, keeps the connection; Samba 4.17
/// answers `nca_s_proto_error` and disconnects (`dcesrv_core.c`, the request after a
/// failed `dcesrv_auth3_done`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthFailureFault {
    #[default]
    Windows,
    Samba,
}

impl std::str::FromStr for AuthFailureFault {
    type Err = String;

    /// `windows` or `samba`, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "windows" => Ok(AuthFailureFault::Windows),
            "samba" => Ok(AuthFailureFault::Samba),
            _ => Err(format!(
                "unknown refusal style {s:?}; known: windows, samba"
            )),
        }
    }
}

impl AuthFailureFault {
    pub fn status(self) -> FaultStatus {
        match self {
            AuthFailureFault::Windows => FaultStatus::ACCESS_DENIED,
            AuthFailureFault::Samba => FaultStatus::NCA_S_PROTO_ERROR,
        }
    }

    fn refusal(self) -> Refusal {
        match self {
            AuthFailureFault::Windows => Refusal::fault(self.status()),
            AuthFailureFault::Samba => Refusal::fatal(self.status()),
        }
    }
}

/// The limits and choices of one endpoint.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// The largest fragment this side sends and accepts (Windows and Samba: 5840).
    pub max_frag: u16,
    /// The largest reassembled request stub; a bigger call is a protocol error before
    /// its fragments are held.
    pub max_stub: usize,
    /// Presentation contexts per association.
    pub max_contexts: usize,
    /// Security contexts per association.
    pub max_security_contexts: usize,
    /// Calls per association; later ones get `nca_s_server_too_busy`.
    pub max_calls: u64,
    /// The secondary address a bind_ack names (the port, as a string).
    pub secondary_address: String,
    pub auth_failure: AuthFailureFault,
    /// A connection silent this long is closed (a parked call keeps it open).
    pub idle_timeout: Duration,
    /// Calls one association may have parked at once (EcDoAsyncWaitEx); more get
    /// `nca_s_server_too_busy`.
    pub max_parked_calls: usize,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            max_frag: 5840,
            max_stub: 4 * 1024 * 1024,
            max_contexts: 64,
            max_security_contexts: 16,
            max_calls: u64::MAX,
            secondary_address: String::new(),
            auth_failure: AuthFailureFault::default(),
            idle_timeout: Duration::from_secs(15 * 60),
            max_parked_calls: 4,
        }
    }
}

/// Association groups by id, with the number of connections in each.
#[derive(Debug, Default)]
struct AssocGroups {
    last_id: u32,
    members: HashMap<u32, usize>,
}

/// What the connections of one listener share.
pub struct Endpoint {
    config: EndpointConfig,
    interfaces: Vec<Arc<dyn RpcInterface>>,
    security: Option<Arc<dyn ServerSecurityFactory>>,
    groups: Mutex<AssocGroups>,
    next_connection: AtomicU64,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.interfaces.iter().map(|i| i.name()).collect();
        f.debug_struct("Endpoint")
            .field("config", &self.config)
            .field("interfaces", &names)
            .field("security", &self.security.is_some())
            .finish()
    }
}

impl Endpoint {
    /// An endpoint serving `interfaces`; without `security` only unauthenticated binds
    /// are accepted.
    pub fn new(
        config: EndpointConfig,
        interfaces: Vec<Arc<dyn RpcInterface>>,
        security: Option<Arc<dyn ServerSecurityFactory>>,
    ) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            config,
            interfaces,
            security,
            groups: Mutex::new(AssocGroups::default()),
            next_connection: AtomicU64::new(1),
        })
    }

    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// A new connection's association, for an adapter that cannot be woken (parked
    /// calls then only end at their deadline).
    pub fn accept(self: &Arc<Self>, now: Duration) -> Association {
        Association::new(Arc::clone(self), now, None)
    }

    /// A new connection's association whose session `waker` wakes (the adapter then
    /// calls `handle_wake`).
    pub fn accept_with_waker(
        self: &Arc<Self>,
        now: Duration,
        waker: Arc<dyn Waker>,
    ) -> Association {
        Association::new(Arc::clone(self), now, Some(waker))
    }

    /// Connections in association group `id` now (0 when it does not exist).
    pub fn group_members(&self, id: u32) -> usize {
        self.lock_groups().members.get(&id).copied().unwrap_or(0)
    }

    fn lock_groups(&self) -> std::sync::MutexGuard<'_, AssocGroups> {
        // A panic elsewhere while holding the lock leaves counts that are still whole.
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Joins group `requested` (0: a new one). None when it does not exist.
    fn join_group(&self, requested: u32) -> Option<u32> {
        let mut groups = self.lock_groups();
        if requested != 0 {
            *groups.members.get_mut(&requested)? += 1;
            return Some(requested);
        }
        // Ids are not reused while the endpoint lives (a stale id must not join a
        // stranger's group); 0 is never an id.
        let id = loop {
            groups.last_id = groups.last_id.wrapping_add(1).max(1);
            if !groups.members.contains_key(&groups.last_id) {
                break groups.last_id;
            }
        };
        groups.members.insert(id, 1);
        Some(id)
    }

    fn leave_group(&self, id: u32) {
        let mut groups = self.lock_groups();
        if let Some(n) = groups.members.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                groups.members.remove(&id);
            }
        }
    }

    /// The interface a client asks for: same UUID and major version, minor version not
    /// above the one offered ([C706] 12.6.3.1 rule for version compatibility).
    fn find_interface(&self, wanted: &SyntaxId) -> Option<&Arc<dyn RpcInterface>> {
        self.interfaces.iter().find(|i| {
            let have = i.syntax();
            have.uuid == wanted.uuid
                && have.major() == wanted.major()
                && wanted.minor() <= have.minor()
        })
    }
}

/// Where a security context stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Legs are still running (waiting for auth3 or another alter_context).
    Pending,
    Established,
    /// A leg failed: every request under it is refused.
    Failed,
}

struct SecurityContext {
    provider: Box<dyn ServerSecurity>,
    auth_type: AuthType,
    level: AuthLevel,
    phase: Phase,
    principal: Option<Principal>,
}

/// The call whose fragments are arriving.
#[derive(Debug, Clone, Copy)]
struct IncomingCall {
    call_id: u32,
    auth_context_id: Option<u32>,
}

/// A call an interface parked, waiting to be resumed.
struct ParkedCall {
    call_id: u32,
    context_id: u16,
    auth_context_id: Option<u32>,
    object: Option<harness_wire::dcerpc::Uuid>,
    interface: Arc<dyn RpcInterface>,
    token: u64,
    until: Duration,
}

/// Why a request is answered with a fault instead of being run.
struct Refusal {
    status: FaultStatus,
    did_not_execute: bool,
    close: bool,
}

impl Refusal {
    fn fault(status: FaultStatus) -> Refusal {
        Refusal {
            status,
            did_not_execute: true,
            close: false,
        }
    }

    fn fatal(status: FaultStatus) -> Refusal {
        Refusal {
            status,
            did_not_execute: true,
            close: true,
        }
    }
}

/// One connection's association.
pub struct Association {
    endpoint: Arc<Endpoint>,
    connection_id: u64,
    framer: PduFramer,
    bound: bool,
    /// Largest fragment this side may send (the client's max_recv_frag, capped).
    max_xmit: u16,
    /// Largest fragment this side accepts (the client's max_xmit_frag, capped).
    max_recv: u16,
    group: Option<u32>,
    /// Bind-time features accepted ([MS-RPCE] 3.3.1.5.3).
    features: u16,
    contexts: HashMap<u16, Arc<dyn RpcInterface>>,
    security: HashMap<u32, SecurityContext>,
    reassembler: CallReassembler,
    incoming: Option<IncomingCall>,
    calls: u64,
    outputs: VecDeque<Output>,
    closing: bool,
    closed: bool,
    released: bool,
    idle_deadline: Duration,
    /// The session clock as last told by the adapter.
    now: Duration,
    waker: Option<Arc<dyn Waker>>,
    parked: Vec<ParkedCall>,
}

impl std::fmt::Debug for Association {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Association")
            .field("connection_id", &self.connection_id)
            .field("bound", &self.bound)
            .field("group", &self.group)
            .field("contexts", &self.contexts.len())
            .field("security_contexts", &self.security.len())
            .field("calls", &self.calls)
            .finish()
    }
}

impl Association {
    fn new(endpoint: Arc<Endpoint>, now: Duration, waker: Option<Arc<dyn Waker>>) -> Association {
        let connection_id = endpoint.next_connection.fetch_add(1, Ordering::Relaxed);
        let config = &endpoint.config;
        Association {
            framer: PduFramer::new(config.max_frag),
            max_xmit: config.max_frag,
            max_recv: config.max_frag,
            reassembler: CallReassembler::new(config.max_stub),
            idle_deadline: now + config.idle_timeout,
            now,
            waker,
            parked: Vec::new(),
            endpoint,
            connection_id,
            bound: false,
            group: None,
            features: 0,
            contexts: HashMap::new(),
            security: HashMap::new(),
            incoming: None,
            calls: 0,
            outputs: VecDeque::new(),
            closing: false,
            closed: false,
            released: false,
        }
    }

    pub fn connection_id(&self) -> u64 {
        self.connection_id
    }

    /// The association group, once bound.
    pub fn assoc_group_id(&self) -> Option<u32> {
        self.group
    }

    /// Octets of an unfinished fragment held (never above the endpoint's max_frag).
    pub fn buffered(&self) -> usize {
        self.framer.buffered()
    }

    /// The principal of security context `auth_context_id`, once established.
    pub fn principal(&self, auth_context_id: u32) -> Option<&Principal> {
        self.security
            .get(&auth_context_id)
            .filter(|c| c.phase == Phase::Established)
            .and_then(|c| c.principal.as_ref())
    }

    fn send(&mut self, pdu: &Pdu) {
        // Every PDU built here fits: bodies are small and stubs go through `fragment`.
        if let Ok(bytes) = pdu.encode() {
            self.outputs.push_back(Output::Write(bytes));
        }
    }

    fn close(&mut self) {
        if !self.closing {
            self.closing = true;
            self.outputs.push_back(Output::Close);
        }
    }

    /// Leaves the group and lets the interfaces run down what this connection held.
    fn release(&mut self) {
        if std::mem::replace(&mut self.released, true) {
            return;
        }
        if let Some(id) = self.group {
            self.endpoint.leave_group(id);
        }
        for interface in &self.endpoint.interfaces {
            interface.rundown(self.connection_id);
        }
    }

    fn fault(&mut self, call_id: u32, context_id: u16, refusal: Refusal) {
        let body = PduBody::Fault(Fault {
            alloc_hint: 0,
            context_id,
            cancel_count: 0,
            flags: 0,
            status: refusal.status,
            stub: Vec::new(),
        });
        let flags = PfcFlags::WHOLE.with(PfcFlags::DID_NOT_EXECUTE, refusal.did_not_execute);
        self.send(&Pdu::new(call_id, flags, body));
        if refusal.close {
            self.close();
        }
    }

    fn bind_nak(&mut self, call_id: u32, reason: RejectReason) {
        // [C706] 12.6.4.5: the versions this side speaks, 5.0 and 5.1.
        let body = PduBody::BindNak(BindNak {
            reason,
            versions: vec![(5, 0), (5, 1)],
        });
        self.send(&Pdu::new(call_id, PfcFlags::WHOLE, body));
    }

    fn on_frame(&mut self, mut frame: Vec<u8>) {
        let Ok(header) = Header::decode(&mut Reader::new(&frame)) else {
            // The framer checked the header; nothing else reaches here.
            return self.fault(0, 0, Refusal::fatal(FaultStatus::NCA_S_PROTO_ERROR));
        };
        if header.packet_type == PacketType::REQUEST {
            return self.on_request(header, &mut frame);
        }
        let pdu = match Pdu::decode(&frame) {
            Ok((pdu, _)) => pdu,
            Err(_) if header.packet_type == PacketType::BIND && !self.bound => {
                self.bind_nak(header.call_id, RejectReason::NOT_SPECIFIED);
                return self.close();
            }
            Err(_) => {
                let refusal = Refusal::fatal(FaultStatus::NCA_S_PROTO_ERROR);
                return self.fault(header.call_id, 0, refusal);
            }
        };
        match pdu.body {
            PduBody::Bind(ref bind) => self.on_bind(&pdu, bind),
            PduBody::AlterContext(ref alter) => self.on_alter_context(&pdu, alter),
            PduBody::Auth3(auth3) => self.on_auth3(&pdu, auth3),
            // Calls run to completion as they arrive: nothing is left to cancel.
            PduBody::CoCancel => {}
            PduBody::Orphaned => {
                if self.incoming.is_some_and(|c| c.call_id == pdu.call_id) {
                    self.incoming = None;
                    self.reassembler = CallReassembler::new(self.endpoint.config.max_stub);
                }
            }
            // Server-to-client PTYPEs, connectionless ones and unknown values.
            _ => self.fault(
                pdu.call_id,
                0,
                Refusal::fatal(FaultStatus::NCA_S_PROTO_ERROR),
            ),
        }
    }

    fn on_bind(&mut self, pdu: &Pdu, bind: &Bind) {
        if self.bound {
            // One bind per connection ([C706] 12.6.4.3); later contexts come by
            // alter_context.
            self.bind_nak(pdu.call_id, RejectReason::NOT_SPECIFIED);
            return self.close();
        }
        if pdu.minor_version > 1 {
            return self.bind_nak(pdu.call_id, RejectReason::PROTOCOL_VERSION_NOT_SUPPORTED);
        }
        if bind.max_xmit_frag < MIN_FRAG || bind.max_recv_frag < MIN_FRAG {
            return self.bind_nak(pdu.call_id, RejectReason::LOCAL_LIMIT_EXCEEDED);
        }
        let mut new_context = None;
        let mut token = None;
        if let Some(v) = &pdu.auth {
            let Some(mut ctx) = self.new_security(v) else {
                return self.bind_nak(pdu.call_id, RejectReason::INVALID_AUTH_TYPE);
            };
            match self.run_leg(&mut ctx, &v.auth_value) {
                Ok(reply) => token = reply,
                Err(_) => return self.bind_nak(pdu.call_id, RejectReason::INVALID_CHECKSUM),
            }
            new_context = Some((v.auth_context_id, ctx));
        }
        let Some(group) = self.endpoint.join_group(bind.assoc_group_id) else {
            return self.bind_nak(pdu.call_id, RejectReason::NOT_SPECIFIED);
        };
        self.group = Some(group);
        self.bound = true;
        let config = &self.endpoint.config;
        self.max_xmit = bind.max_recv_frag.min(config.max_frag);
        let max_recv = bind.max_xmit_frag.min(config.max_frag);
        self.max_recv = max_recv;
        self.framer.set_max_frag(max_recv);
        let results = self.negotiate_contexts(&bind.contexts, true);
        let auth = self.verifier_for(pdu.auth.as_ref(), token);
        let header_sign = new_context
            .as_ref()
            .is_none_or(|(_, c)| c.provider.signs_header());
        if let Some((id, ctx)) = new_context {
            self.security.insert(id, ctx);
        }
        let ack = BindAck {
            max_xmit_frag: self.max_xmit,
            max_recv_frag: max_recv,
            assoc_group_id: group,
            sec_addr: secondary_address(&self.endpoint.config.secondary_address),
            results,
        };
        // Header signing is offered back when asked for and the bind's provider covers
        // the header: NTLM signs the whole PDU anyway; Kerberos declines
        // ([MS-RPCE] 3.3.1.5.2.2).
        let flags = PfcFlags::WHOLE.with(
            PfcFlags::SUPPORT_HEADER_SIGN,
            pdu.flags.contains(PfcFlags::SUPPORT_HEADER_SIGN) && header_sign,
        );
        let mut reply = Pdu::new(pdu.call_id, flags, PduBody::BindAck(ack));
        reply.auth = auth;
        self.send(&reply);
    }

    fn on_alter_context(&mut self, pdu: &Pdu, alter: &Bind) {
        if !self.bound {
            let refusal = Refusal::fatal(FaultStatus::NCA_S_PROTO_ERROR);
            return self.fault(pdu.call_id, 0, refusal);
        }
        let mut token = None;
        if let Some(v) = &pdu.auth {
            match self.alter_security(v) {
                Ok(reply) => token = reply,
                Err(status) => return self.fault(pdu.call_id, 0, Refusal::fault(status)),
            }
        }
        let results = self.negotiate_contexts(&alter.contexts, false);
        let ack = BindAck {
            max_xmit_frag: self.max_xmit,
            max_recv_frag: self.max_recv,
            assoc_group_id: self.group.unwrap_or(0),
            // An alter_context_resp names no secondary address ([MS-RPCE] 2.2.2.6).
            sec_addr: Vec::new(),
            results,
        };
        let mut reply = Pdu::new(pdu.call_id, PfcFlags::WHOLE, PduBody::AlterContextResp(ack));
        reply.auth = self.verifier_for(pdu.auth.as_ref(), token);
        self.send(&reply);
    }

    /// An alter_context's security leg: the next leg of a pending context, or a new
    /// context (several per association only with security context multiplexing).
    fn alter_security(&mut self, v: &AuthVerifier) -> Result<Option<Vec<u8>>, FaultStatus> {
        if let Some(mut ctx) = self.security.remove(&v.auth_context_id) {
            let outcome = if ctx.phase != Phase::Pending || ctx.auth_type != v.auth_type {
                Err(FaultStatus::ACCESS_DENIED)
            } else {
                self.run_leg(&mut ctx, &v.auth_value)
                    .map_err(|_| FaultStatus::ACCESS_DENIED)
            };
            self.security.insert(v.auth_context_id, ctx);
            return outcome;
        }
        let multiplexing = self.features & SyntaxId::FEATURE_SECURITY_CONTEXT_MULTIPLEXING != 0;
        if !self.security.is_empty() && !multiplexing
            || self.security.len() >= self.endpoint.config.max_security_contexts
        {
            return Err(FaultStatus::ACCESS_DENIED);
        }
        let mut ctx = self.new_security(v).ok_or(FaultStatus::ACCESS_DENIED)?;
        let reply = self
            .run_leg(&mut ctx, &v.auth_value)
            .map_err(|_| FaultStatus::ACCESS_DENIED)?;
        self.security.insert(v.auth_context_id, ctx);
        Ok(reply)
    }

    fn on_auth3(&mut self, pdu: &Pdu, _auth3: Auth3) {
        // auth3 has no reply ([MS-RPCE] 2.2.2.10): a failure shows on the next request.
        let Some(v) = pdu.auth.as_ref().filter(|_| self.bound) else {
            let refusal = Refusal::fatal(FaultStatus::NCA_S_PROTO_ERROR);
            return self.fault(pdu.call_id, 0, refusal);
        };
        let Some(mut ctx) = self.security.remove(&v.auth_context_id) else {
            let refusal = Refusal::fatal(FaultStatus::NCA_S_PROTO_ERROR);
            return self.fault(pdu.call_id, 0, refusal);
        };
        if ctx.phase == Phase::Pending && ctx.auth_type == v.auth_type {
            // A leg that wants to answer cannot over auth3: the context fails.
            if let Ok(Some(_)) = self.run_leg(&mut ctx, &v.auth_value) {
                ctx.phase = Phase::Failed;
            }
        } else {
            ctx.phase = Phase::Failed;
        }
        self.security.insert(v.auth_context_id, ctx);
    }

    /// A fresh context for the verifier's auth type and level, if offered.
    fn new_security(&self, v: &AuthVerifier) -> Option<SecurityContext> {
        let level = supported_level(v.auth_level)?;
        let provider = self.endpoint.security.as_ref()?.new_context(v.auth_type)?;
        Some(SecurityContext {
            provider,
            auth_type: v.auth_type,
            level,
            phase: Phase::Pending,
            principal: None,
        })
    }

    /// Runs one leg; the context ends Established, Pending or Failed. Returns the token
    /// to send back, if any. A refused token is an error only when the leg has a reply
    /// PDU to carry the refusal; the context is marked Failed either way.
    fn run_leg(
        &self,
        ctx: &mut SecurityContext,
        token: &[u8],
    ) -> Result<Option<Vec<u8>>, SecurityError> {
        match ctx.provider.accept(token) {
            Ok(AcceptStep::Continue(reply)) => {
                ctx.phase = Phase::Pending;
                Ok(Some(reply))
            }
            Ok(AcceptStep::Done { reply, principal }) => {
                ctx.phase = Phase::Established;
                ctx.principal = Some(principal);
                Ok(reply)
            }
            Err(SecurityError::LogonFailed(_)) => {
                // The logon is refused when the first request comes, as Windows does.
                ctx.phase = Phase::Failed;
                Ok(None)
            }
            Err(e) => {
                ctx.phase = Phase::Failed;
                Err(e)
            }
        }
    }

    /// The verifier of a bind_ack / alter_context_resp: the client's type, level and
    /// context id with the provider's token.
    fn verifier_for(
        &self,
        asked: Option<&AuthVerifier>,
        token: Option<Vec<u8>>,
    ) -> Option<AuthVerifier> {
        let asked = asked?;
        Some(AuthVerifier {
            auth_type: asked.auth_type,
            auth_level: asked.auth_level,
            auth_context_id: asked.auth_context_id,
            auth_value: token?,
        })
    }

    /// One result per offered context, in order ([C706] 12.6.4.4).
    fn negotiate_contexts(
        &mut self,
        offered: &[ContextElement],
        at_bind: bool,
    ) -> Vec<ContextResult> {
        offered
            .iter()
            .map(|element| self.negotiate_context(element, at_bind))
            .collect()
    }

    fn negotiate_context(&mut self, element: &ContextElement, at_bind: bool) -> ContextResult {
        let reject = |reason| ContextResult {
            result: AckResult::PROVIDER_REJECTION,
            reason,
            transfer_syntax: SyntaxId::default(),
        };
        // [MS-RPCE] 3.3.1.5.3: bind-time features are offered as a transfer syntax and
        // answered with negotiate_ack, the accepted bits in the reason field.
        if let Some(bits) = element
            .transfer_syntaxes
            .iter()
            .find_map(SyntaxId::bind_time_feature_bits)
        {
            let supported = SyntaxId::FEATURE_SECURITY_CONTEXT_MULTIPLEXING
                | SyntaxId::FEATURE_KEEP_CONNECTION_ON_ORPHAN;
            let accepted = if at_bind {
                (bits as u16) & supported
            } else {
                0
            };
            self.features |= accepted;
            return ContextResult {
                result: AckResult::NEGOTIATE_ACK,
                reason: AckReason(accepted),
                transfer_syntax: SyntaxId::default(),
            };
        }
        let Some(interface) = self
            .endpoint
            .find_interface(&element.abstract_syntax)
            .cloned()
        else {
            return reject(AckReason::ABSTRACT_SYNTAX_NOT_SUPPORTED);
        };
        if !element.transfer_syntaxes.contains(&SyntaxId::NDR20) {
            return reject(AckReason::PROPOSED_TRANSFER_SYNTAXES_NOT_SUPPORTED);
        }
        match self.contexts.get(&element.context_id) {
            // A context id keeps its interface for the association's life ([C706] 12.6.4.1).
            Some(existing) if existing.syntax() != interface.syntax() => {
                return reject(AckReason::NOT_SPECIFIED)
            }
            Some(_) => {}
            None if self.contexts.len() >= self.endpoint.config.max_contexts => {
                return reject(AckReason::LOCAL_LIMIT_EXCEEDED)
            }
            None => {
                self.contexts.insert(element.context_id, interface);
            }
        }
        ContextResult {
            result: AckResult::ACCEPTANCE,
            reason: AckReason::NOT_SPECIFIED,
            transfer_syntax: SyntaxId::NDR20,
        }
    }

    fn on_request(&mut self, header: Header, frame: &mut [u8]) {
        let call_id = header.call_id;
        match self.admit_fragment(frame) {
            Ok(Some((request, auth_context_id))) => {
                self.run_call(call_id, request, auth_context_id)
            }
            Ok(None) => {}
            Err(refusal) => {
                self.incoming = None;
                self.reassembler = CallReassembler::new(self.endpoint.config.max_stub);
                self.fault(call_id, 0, refusal);
            }
        }
    }

    /// Verifies (and unseals) one request fragment and adds it to the call; returns the
    /// whole call once its last fragment is in.
    fn admit_fragment(
        &mut self,
        frame: &mut [u8],
    ) -> Result<Option<(Request, Option<u32>)>, Refusal> {
        let proto_error = || Refusal::fatal(FaultStatus::NCA_S_PROTO_ERROR);
        if !self.bound {
            return Err(proto_error());
        }
        let layout = protected_layout(frame).map_err(|_| proto_error())?;
        let auth_context_id = match &layout {
            Some(layout) => Some(self.verify(frame, layout)?),
            None => self.unprotected_allowed()?,
        };
        let (pdu, _) = Pdu::decode(frame).map_err(|_| proto_error())?;
        let call_id = pdu.call_id;
        if pdu.flags.contains(PfcFlags::FIRST_FRAG) {
            self.incoming = Some(IncomingCall {
                call_id,
                auth_context_id,
            });
        } else if self
            .incoming
            .is_some_and(|c| c.call_id == call_id && c.auth_context_id != auth_context_id)
        {
            // Every fragment of a call is under the same security context.
            return Err(proto_error());
        }
        let whole = self.reassembler.push(pdu).map_err(|_| proto_error())?;
        let Some(whole) = whole else {
            return Ok(None);
        };
        self.incoming = None;
        match whole.body {
            PduBody::Request(request) => Ok(Some((request, auth_context_id))),
            _ => Err(proto_error()),
        }
    }

    /// Checks a fragment's verifier against its security context and unseals it in
    /// place. Returns the context's id.
    fn verify(
        &mut self,
        frame: &mut [u8],
        layout: &harness_wire::dcerpc::ProtectedLayout,
    ) -> Result<u32, Refusal> {
        let id = layout.trailer.auth_context_id;
        let auth_failure = self.endpoint.config.auth_failure.refusal();
        let Some(ctx) = self.security.get_mut(&id) else {
            return Err(Refusal::fatal(FaultStatus::NCA_S_PROTO_ERROR));
        };
        if ctx.phase != Phase::Established {
            return Err(auth_failure);
        }
        // A trailer naming another type or level than the context's: access denied and
        // the connection closes (Samba's dcesrv_auth_pkt_pull).
        if ctx.auth_type != layout.trailer.auth_type
            || ctx.level != effective(layout.trailer.auth_level)
        {
            return Err(Refusal::fatal(FaultStatus::ACCESS_DENIED));
        }
        if ctx.level == AuthLevel::CONNECT {
            return Ok(id);
        }
        let (signed, signature) = frame.split_at_mut(layout.signature.start);
        match ctx
            .provider
            .unwrap(ctx.level, signed, layout.stub.clone(), signature)
        {
            Ok(()) => Ok(id),
            // The sequence and cipher state are lost with a bad PDU: nothing after it
            // could verify. Samba sends this fault without DID_NOT_EXECUTE, then closes.
            Err(_) => Err(Refusal {
                status: FaultStatus::SEC_PKG_ERROR,
                did_not_execute: false,
                close: true,
            }),
        }
    }

    /// A request without a verifier is fine on an association without security, or one
    /// whose contexts are at CONNECT level (which signs nothing); the principal is then
    /// the one CONNECT context's.
    fn unprotected_allowed(&self) -> Result<Option<u32>, Refusal> {
        if self.security.is_empty() {
            return Ok(None);
        }
        let connect = self
            .security
            .iter()
            .find(|(_, c)| c.level == AuthLevel::CONNECT);
        match connect {
            Some((&id, c)) if c.phase == Phase::Established => Ok(Some(id)),
            _ => Err(self.endpoint.config.auth_failure.refusal()),
        }
    }

    fn run_call(&mut self, call_id: u32, request: Request, auth_context_id: Option<u32>) {
        let context_id = request.context_id;
        let Some(interface) = self.contexts.get(&context_id).cloned() else {
            return self.fault(
                call_id,
                context_id,
                Refusal::fault(FaultStatus::NCA_S_UNK_IF),
            );
        };
        if request.opnum >= interface.opnum_count() {
            let refusal = Refusal::fault(FaultStatus::NCA_S_OP_RNG_ERROR);
            return self.fault(call_id, context_id, refusal);
        }
        if self.calls >= self.endpoint.config.max_calls {
            let refusal = Refusal::fault(FaultStatus::NCA_S_SERVER_TOO_BUSY);
            return self.fault(call_id, context_id, refusal);
        }
        self.calls += 1;
        let ctx = self.call_context(auth_context_id, request.object);
        let outcome = interface.call(&ctx, request.opnum, &request.stub);
        let parked = ParkedCall {
            call_id,
            context_id,
            auth_context_id,
            object: request.object,
            interface,
            token: 0,
            until: Duration::ZERO,
        };
        self.finish_call(parked, outcome);
    }

    fn call_context(
        &self,
        auth_context_id: Option<u32>,
        object: Option<harness_wire::dcerpc::Uuid>,
    ) -> CallContext<'_> {
        let security = auth_context_id.and_then(|id| self.security.get(&id));
        CallContext {
            principal: security.and_then(|c| c.principal.as_ref()),
            auth_level: security.map_or(AuthLevel::NONE, |c| c.level),
            auth_context_id,
            assoc_group_id: self.group.unwrap_or(0),
            connection_id: self.connection_id,
            object,
            now: self.now,
            waker: self.waker.as_ref(),
        }
    }

    /// Answers a call with its outcome, or parks it.
    fn finish_call(&mut self, mut call: ParkedCall, outcome: CallOutcome) {
        let (call_id, context_id) = (call.call_id, call.context_id);
        match outcome {
            CallOutcome::Response(stub) => {
                self.respond(call_id, context_id, stub, call.auth_context_id)
            }
            CallOutcome::Fault(status) => {
                let refusal = Refusal {
                    status,
                    did_not_execute: false,
                    close: false,
                };
                self.fault(call_id, context_id, refusal)
            }
            CallOutcome::Parked { .. }
                if self.parked.len() >= self.endpoint.config.max_parked_calls =>
            {
                // The interface ran (and parked it): not DID_NOT_EXECUTE.
                let refusal = Refusal {
                    status: FaultStatus::NCA_S_SERVER_TOO_BUSY,
                    did_not_execute: false,
                    close: false,
                };
                self.fault(call_id, context_id, refusal)
            }
            CallOutcome::Parked { token, until } => {
                (call.token, call.until) = (token, until);
                self.parked.push(call);
            }
        }
    }

    /// Gives every parked call its second chance: the ones whose interface says they
    /// are ready, or whose deadline has passed, are answered.
    fn resume_parked(&mut self) {
        let parked = std::mem::take(&mut self.parked);
        for call in parked {
            if self.closing {
                break;
            }
            let timed_out = self.now >= call.until;
            let ctx = self.call_context(call.auth_context_id, call.object);
            let outcome = match call.interface.resume(&ctx, call.token, timed_out) {
                Some(CallOutcome::Parked { .. }) | None if timed_out => {
                    // Past its deadline the interface had to answer.
                    CallOutcome::Fault(FaultStatus::NCA_S_FAULT_UNSPEC)
                }
                Some(outcome) => outcome,
                None => {
                    self.parked.push(call);
                    continue;
                }
            };
            match outcome {
                // A resumed call may not park again under another token: keep the
                // first one and its deadline.
                CallOutcome::Parked { .. } => self.parked.push(call),
                outcome => {
                    // The client hears from the server now: its silence counts from here.
                    self.idle_deadline = self.now + self.endpoint.config.idle_timeout;
                    self.finish_call(call, outcome)
                }
            }
        }
    }

    /// Calls parked right now (for tests and the lab's counters).
    pub fn parked_calls(&self) -> usize {
        self.parked.len()
    }

    /// Sends a response stub in fragments under max_xmit, each signed or sealed under
    /// the request's security context.
    fn respond(
        &mut self,
        call_id: u32,
        context_id: u16,
        stub: Vec<u8>,
        auth_context_id: Option<u32>,
    ) {
        let protection = auth_context_id
            .and_then(|id| self.security.get(&id).map(|c| (id, c)))
            .filter(|(_, c)| c.level != AuthLevel::CONNECT)
            .map(|(id, c)| AuthVerifier {
                auth_type: c.auth_type,
                auth_level: c.level,
                auth_context_id: id,
                auth_value: vec![0; c.provider.signature_len(c.level)],
            });
        let body = PduBody::Response(Response {
            alloc_hint: u32::try_from(stub.len()).unwrap_or(u32::MAX),
            context_id,
            cancel_count: 0,
            stub,
        });
        let mut call = Pdu::new(call_id, PfcFlags::WHOLE, body);
        call.auth = protection;
        let Some(fragments) = fragment(&call, self.max_xmit) else {
            let refusal = Refusal::fault(FaultStatus::NCA_S_FAULT_UNSPEC);
            return self.fault(call_id, context_id, refusal);
        };
        let mut out = Vec::new();
        for f in &fragments {
            let Ok(mut bytes) = f.encode() else {
                continue;
            };
            if self.protect(&mut bytes, auth_context_id).is_err() {
                let refusal = Refusal::fatal(FaultStatus::SEC_PKG_ERROR);
                return self.fault(call_id, context_id, refusal);
            }
            out.extend_from_slice(&bytes);
        }
        self.outputs.push_back(Output::Write(out));
    }

    /// Signs (and seals) an encoded fragment whose auth_value is a placeholder.
    fn protect(
        &mut self,
        bytes: &mut [u8],
        auth_context_id: Option<u32>,
    ) -> Result<(), SecurityError> {
        let Ok(Some(layout)) = protected_layout(bytes) else {
            return Ok(());
        };
        let Some(ctx) = auth_context_id.and_then(|id| self.security.get_mut(&id)) else {
            return Ok(());
        };
        let (signed, signature) = bytes.split_at_mut(layout.signature.start);
        let value = ctx.provider.wrap(ctx.level, signed, layout.stub)?;
        if value.len() != signature.len() {
            return Err(SecurityError::MalformedSignature(value.len()));
        }
        signature.copy_from_slice(&value);
        Ok(())
    }
}

/// The levels a context may be bound at. CALL is not offered on connection-oriented
/// transports ([MS-RPCE] 3.3.1.5.2: it is raised to PKT); PKT is checked like integrity.
fn supported_level(level: AuthLevel) -> Option<AuthLevel> {
    match level {
        AuthLevel::CONNECT | AuthLevel::PKT_INTEGRITY | AuthLevel::PKT_PRIVACY => Some(level),
        AuthLevel::CALL | AuthLevel::PKT => Some(AuthLevel::PKT_INTEGRITY),
        _ => None,
    }
}

/// The level a request's trailer names, as its context stores it.
fn effective(level: AuthLevel) -> AuthLevel {
    supported_level(level).unwrap_or(level)
}

/// The bind_ack's secondary address: the port as a NUL-terminated string, or empty.
fn secondary_address(port: &str) -> Vec<u8> {
    if port.is_empty() {
        return Vec::new();
    }
    let mut s = port.as_bytes().to_vec();
    s.push(0);
    s
}

impl ServerSession for Association {
    fn handle_input(&mut self, now: Duration, input: &[u8]) {
        if self.closing {
            return;
        }
        self.now = now;
        self.idle_deadline = now + self.endpoint.config.idle_timeout;
        let mut frames = Vec::new();
        let split = self.framer.push_frames(input, &mut frames);
        for frame in frames {
            if self.closing {
                return;
            }
            self.on_frame(frame);
        }
        if split.is_err() && !self.closing {
            // The fragment boundaries are lost: say why, then go.
            self.fault(0, 0, Refusal::fatal(FaultStatus::NCA_S_PROTO_ERROR));
        }
    }

    fn handle_eof(&mut self, _now: Duration) {
        self.close();
    }

    fn handle_timeout(&mut self, now: Duration) {
        self.now = now;
        if self.parked.iter().any(|c| now >= c.until) {
            self.resume_parked();
        }
        // A parked call is a client waiting on the server, not an idle one.
        if !self.closing && self.parked.is_empty() && now >= self.idle_deadline {
            self.close();
        }
    }

    fn handle_shutdown(&mut self, _now: Duration) {
        if !self.closing {
            // [C706] 12.6.4.11: shutdown asks the client to close the connection.
            self.send(&Pdu::new(0, PfcFlags::WHOLE, PduBody::Shutdown));
            self.close();
        }
    }

    fn handle_tls_established(&mut self, _now: Duration) {}

    fn poll_output(&mut self) -> Option<Output> {
        let out = self.outputs.pop_front()?;
        if out == Output::Close {
            self.closed = true;
            self.release();
        }
        Some(out)
    }

    fn handle_wake(&mut self, now: Duration) {
        self.now = now;
        if !self.closing {
            self.resume_parked();
        }
    }

    fn poll_timeout(&self) -> Option<Duration> {
        let parked = self.parked.iter().map(|c| c.until).min();
        (!self.closing).then(|| parked.map_or(self.idle_deadline, |p| p.min(self.idle_deadline)))
    }

    fn is_closed(&self) -> bool {
        self.closed
    }
}

impl Drop for Association {
    fn drop(&mut self) {
        self.release();
    }
}
