//! The client side of a connection-oriented DCE/RPC association, sans-IO ([C706] 12.6,
//! [MS-RPCE] 3.3.1): bind (with the security provider's token legs), alter_context,
//! requests split under the negotiated fragment size and protected per fragment,
//! responses framed, verified (or unsealed) and reassembled under a size limit.
//!
//! The caller owns the socket:
//!
//! 1. [`ClientAssociation::bind`] gives the bind PDU to send.
//! 2. [`ClientAssociation::receive`] takes whatever the server sent and appends
//!    [`ClientEvent`]s: [`ClientEvent::Send`] carries octets to write at once (the auth3
//!    leg of NTLM, or an alter_context leg), [`ClientEvent::BindAcked`] the negotiated
//!    association. [`ClientAssociation::is_ready`] says when calls may go.
//! 3. [`ClientAssociation::call`] gives the fragments of one request; its
//!    [`ClientEvent::Response`] or [`ClientEvent::Fault`] comes through `receive`.
//!
//! Everything the server sends is checked before use: fragment and stub sizes are
//! bounded, call ids and contexts must be ones this side used, verifiers must match the
//! bound security context. Any violation is a [`ClientError`] and the association is
//! dead from then on (the connection should be closed).

use std::collections::HashMap;

use harness_wire::codec::{DecodeError, Reader};
use harness_wire::dcerpc::auth::SEC_TRAILER_LEN;
use harness_wire::dcerpc::call::RESPONSE_HEADER_LEN;
use harness_wire::dcerpc::header::HEADER_LEN;
use harness_wire::dcerpc::{
    fragment, Auth3, AuthVerifier, Bind, BindAck, CallReassembler, Fault, Header, Pdu, PduBody,
    PduTooLong, PfcFlags, ReassemblyError, Request,
};

/// The wire types this API speaks in, so a caller needs no other crate.
pub use harness_wire::dcerpc::{
    AckResult, AuthLevel, AuthType, ContextElement, ContextResult, FaultStatus, PacketType,
    RejectReason, SyntaxId, Uuid,
};

use super::security::{ClientSecurity, ClientStep, SecurityError};

/// A response's stub and verifier overlap (cannot happen after a successful decode).
const ERR_LAYOUT: &str = "dcerpc client: stub overlaps the auth trailer";

/// The smallest max_recv_frag a server may announce: [C706]'s MustRecvFragSize.
pub const MIN_FRAG: u16 = 1432;

/// The Win32 status a Windows client reports for a fault: the nca_s codes of [C706]
/// Appendix E map to their RPC_S / RPC_X counterparts (as the Windows runtime maps
/// them, [MS-RPCE] 2.2.2.9); a status that is already a Win32 value stays itself.
pub fn win32_status(status: FaultStatus) -> u32 {
    match status {
        FaultStatus::NCA_S_COMM_FAILURE => 1820,
        FaultStatus::NCA_S_OP_RNG_ERROR => 1745,
        FaultStatus::NCA_S_UNK_IF => 1717,
        FaultStatus::NCA_S_PROTO_ERROR => 1728,
        FaultStatus::NCA_S_SERVER_TOO_BUSY => 1723,
        FaultStatus::NCA_S_UNSUPPORTED_AUTHN_LEVEL => 1821,
        // ERROR_INVALID_HANDLE: the context handle is not one the server knows.
        FaultStatus::NCA_S_FAULT_CONTEXT_MISMATCH => 6,
        FaultStatus::NCA_S_FAULT_INVALID_BOUND => 1734,
        FaultStatus::NCA_S_INVALID_PRES_CONTEXT_ID => 1717,
        FaultStatus::NCA_S_FAULT_UNSPEC => 1726,
        other if other.0 < 0x1c00_0000 => other.0,
        _ => 1726,
    }
}

/// What the client offers in its bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// max_xmit_frag offered: the largest fragment this side sends (the server may
    /// lower it in its bind_ack).
    pub max_xmit_frag: u16,
    /// max_recv_frag offered: the largest fragment accepted from the server.
    pub max_recv_frag: u16,
    /// 0 asks for a new association group.
    pub assoc_group_id: u32,
    /// The largest reassembled response stub accepted.
    pub max_response_stub: usize,
    /// Offers bind-time feature negotiation with these bits ([MS-RPCE] 3.3.1.5.3) as an
    /// extra presentation context after the caller's, as Windows does.
    pub bind_time_features: Option<u16>,
    /// Sets PFC_SUPPORT_HEADER_SIGN on the bind ([MS-RPCE] 2.2.2.3).
    pub support_header_sign: bool,
}

impl Default for ClientConfig {
    /// 4280-octet fragments both ways (what impacket offers), a new association group,
    /// responses up to 16 MiB, no feature negotiation, no header-sign flag.
    fn default() -> Self {
        ClientConfig {
            max_xmit_frag: 4280,
            max_recv_frag: 4280,
            assoc_group_id: 0,
            max_response_stub: 16 << 20,
            bind_time_features: None,
            support_header_sign: false,
        }
    }
}

/// The security context a bind sets up: provider, level and auth_context_id.
pub struct BindSecurity {
    pub provider: Box<dyn ClientSecurity>,
    pub level: AuthLevel,
    pub auth_context_id: u32,
}

/// The outcome of a bind_ack or alter_context_resp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindAcked {
    /// One per context the caller offered, in order (the feature context left out).
    pub results: Vec<ContextResult>,
    /// The fragment sizes in force: what this side sends (the smaller of its offer and
    /// the server's max_recv_frag) and what it accepts (its offer, or the server's
    /// max_xmit_frag when that is larger: Samba 4.17 raises both to at least 2048 in its
    /// bind_ack and sends fragments that size).
    pub max_xmit_frag: u16,
    pub max_recv_frag: u16,
    pub assoc_group_id: u32,
    /// The secondary address without its NUL (for ncacn_ip_tcp the server's port).
    pub secondary_address: String,
    /// The feature bits the server accepted (negotiate_ack), when features were offered
    /// and it answered with negotiate_ack.
    pub features: Option<u16>,
    /// Both sides set PFC_SUPPORT_HEADER_SIGN.
    pub header_sign: bool,
}

/// What the server's octets amounted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// Octets to send now: an auth3 or alter_context leg of the security provider.
    Send(Vec<u8>),
    BindAcked(BindAcked),
    AlterContextAcked(BindAcked),
    /// The bind was refused; the association is unusable.
    BindNak {
        reason: RejectReason,
        versions: Vec<(u8, u8)>,
    },
    /// A call's reassembled, verified (and unsealed) response stub.
    Response {
        call_id: u32,
        context_id: u16,
        stub: Vec<u8>,
    },
    /// A call (or, with call_id 0 or the bind's, the association) failed at the server.
    Fault {
        call_id: u32,
        context_id: u16,
        status: FaultStatus,
        did_not_execute: bool,
    },
    /// The server asked the client to close ([C706] 12.6.4.8).
    Shutdown,
}

/// The fragments of one request, ready to write in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingCall {
    pub call_id: u32,
    pub fragments: Vec<Vec<u8>>,
}

/// Why the association stopped (server octets) or an operation was refused (caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("dcerpc client: malformed PDU: {0}")]
    Decode(#[from] DecodeError),
    #[error("dcerpc client: frag_length {frag_length} above max_recv_frag {max}")]
    FragmentTooLong { frag_length: u16, max: u16 },
    #[error("dcerpc client: {0}")]
    Reassembly(#[from] ReassemblyError),
    #[error("dcerpc client: {0}")]
    Security(#[from] SecurityError),
    #[error("dcerpc client: {0}")]
    PduTooLong(#[from] PduTooLong),
    #[error("dcerpc client: unexpected {packet_type:?} while {state}")]
    Unexpected {
        packet_type: PacketType,
        state: &'static str,
    },
    #[error("dcerpc client: call_id {call_id} is not one this side has open")]
    UnknownCallId { call_id: u32 },
    #[error("dcerpc client: {got} context results for {offered} contexts offered")]
    ResultCount { offered: usize, got: usize },
    #[error("dcerpc client: context {context_id} accepted with a transfer syntax not offered")]
    TransferSyntaxNotOffered { context_id: u16 },
    #[error("dcerpc client: the server's max_recv_frag {0} is below {MIN_FRAG}")]
    FragmentSizeTooSmall(u16),
    #[error("dcerpc client: response of call {call_id} on context {got}, sent on {expected}")]
    ContextMismatch {
        call_id: u32,
        expected: u16,
        got: u16,
    },
    #[error("dcerpc client: PDU of call {call_id} lacks the auth verifier its level needs")]
    MissingVerifier { call_id: u32 },
    #[error("dcerpc client: PDU of call {call_id} has a verifier of another security context")]
    VerifierMismatch { call_id: u32 },
    #[error("dcerpc client: the association is not ready: {0}")]
    NotReady(&'static str),
    #[error("dcerpc client: context {0} is not accepted on this association")]
    UnknownContext(u16),
    #[error("dcerpc client: {0}")]
    InvalidArgument(&'static str),
    #[error("dcerpc client: max_xmit_frag {0} leaves no room for stub data")]
    NoRoom(u16),
    #[error("dcerpc client: association failed earlier: {0}")]
    Failed(Box<ClientError>),
}

/// Which PDU an ack answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leg {
    Bind,
    /// alter_context adding contexts.
    Alter,
    /// alter_context carrying a security token (a provider leg that expects a reply).
    SecurityAlter,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Unbound,
    AwaitingAck {
        call_id: u32,
        leg: Leg,
        offered: Vec<ContextElement>,
    },
    Bound,
    /// Refused (bind_nak or a fault on the bind); the error names why.
    Refused,
}

struct SecurityContext {
    provider: Box<dyn ClientSecurity>,
    level: AuthLevel,
    auth_context_id: u32,
    established: bool,
}

impl SecurityContext {
    /// Requests and responses carry a signature at these levels; at CONNECT the bind
    /// legs authenticate and no PDU is signed ([MS-RPCE] 3.3.1.5.2.2).
    fn protects_calls(&self) -> bool {
        self.level.0 >= AuthLevel::CALL.0
    }

    fn verifier(&self, auth_value: Vec<u8>) -> AuthVerifier {
        AuthVerifier {
            auth_type: self.provider.auth_type(),
            auth_level: self.level,
            auth_context_id: self.auth_context_id,
            auth_value,
        }
    }

    /// The verifier's type, level and context id are this context's.
    fn matches(&self, v: &AuthVerifier) -> bool {
        v.auth_type == self.provider.auth_type()
            && v.auth_level == self.level
            && v.auth_context_id == self.auth_context_id
    }

    /// Signs (or seals and signs) an encoded fragment whose auth_value is a placeholder
    /// of `signature_len` octets, writing the signature in its place. `body_header` is
    /// the request's octets before the stub.
    fn protect(&mut self, fragment: &mut [u8], body_header: usize) -> Result<(), ClientError> {
        let sig_len = self.provider.signature_len(self.level);
        let signed_end = fragment.len().checked_sub(sig_len);
        let trailer_at = signed_end.and_then(|e| e.checked_sub(SEC_TRAILER_LEN));
        let (Some(signed_end), Some(trailer_at)) = (signed_end, trailer_at) else {
            return Err(SecurityError::MalformedSignature(sig_len).into());
        };
        let stub = HEADER_LEN + body_header..trailer_at;
        let (signed, tail) = fragment.split_at_mut(signed_end);
        let signature = self.provider.wrap(self.level, signed, stub)?;
        if signature.len() != sig_len {
            return Err(SecurityError::MalformedSignature(signature.len()).into());
        }
        tail.copy_from_slice(&signature);
        Ok(())
    }
}

/// One client association over one connection.
pub struct ClientAssociation {
    config: ClientConfig,
    phase: Phase,
    /// The security contexts, the bind's first; several only with security context
    /// multiplexing ([MS-RPCE] 3.3.1.5.4), added by [`ClientAssociation::add_security`].
    security: Vec<SecurityContext>,
    next_call_id: u32,
    /// Accepted contexts and the transfer syntax the server chose for each.
    contexts: HashMap<u16, SyntaxId>,
    /// Calls sent and not yet answered: call_id to context_id and the auth_context_id
    /// of the security context that protected the request.
    outstanding: HashMap<u32, (u16, Option<u32>)>,
    max_xmit_frag: u16,
    max_recv_frag: u16,
    inbox: Vec<u8>,
    reassembler: CallReassembler,
    failed: Option<ClientError>,
}

impl ClientAssociation {
    pub fn new(config: ClientConfig) -> ClientAssociation {
        ClientAssociation {
            max_xmit_frag: config.max_xmit_frag,
            max_recv_frag: config.max_recv_frag,
            reassembler: CallReassembler::new(config.max_response_stub),
            config,
            phase: Phase::Unbound,
            security: Vec::new(),
            next_call_id: 1,
            contexts: HashMap::new(),
            outstanding: HashMap::new(),
            inbox: Vec::new(),
            failed: None,
        }
    }

    /// Bound, and the security context (if any) has finished its legs: calls may go.
    pub fn is_ready(&self) -> bool {
        self.failed.is_none()
            && self.phase == Phase::Bound
            && self.security.iter().all(|s| s.established)
    }

    /// The transfer syntax the server chose for an accepted context.
    pub fn transfer_syntax(&self, context_id: u16) -> Option<SyntaxId> {
        self.contexts.get(&context_id).copied()
    }

    /// The largest fragment this side sends (after the bind, the negotiated one).
    pub fn max_xmit_frag(&self) -> u16 {
        self.max_xmit_frag
    }

    /// Octets of an unfinished fragment held after the last [`ClientAssociation::receive`].
    pub fn buffered(&self) -> usize {
        self.inbox.len()
    }

    /// Calls sent and not yet answered.
    pub fn outstanding_calls(&self) -> usize {
        self.outstanding.len()
    }

    fn take_call_id(&mut self) -> u32 {
        let id = self.next_call_id;
        self.next_call_id = self.next_call_id.wrapping_add(1).max(1);
        id
    }

    fn check_alive(&self) -> Result<(), ClientError> {
        match &self.failed {
            Some(e) => Err(ClientError::Failed(Box::new(e.clone()))),
            None => Ok(()),
        }
    }

    /// The bind offering `contexts` (each with at least one transfer syntax), and, with
    /// `security`, the provider's first token at its level. Only once per association.
    pub fn bind(
        &mut self,
        contexts: &[ContextElement],
        security: Option<BindSecurity>,
    ) -> Result<Vec<u8>, ClientError> {
        self.check_alive()?;
        if self.phase != Phase::Unbound {
            return Err(ClientError::NotReady("bind sent already"));
        }
        let mut offered = checked_contexts(contexts)?;
        if let Some(bits) = self.config.bind_time_features {
            let last = offered.iter().map(|c| c.context_id).max().unwrap_or(0);
            let context_id = last.checked_add(1).ok_or(ClientError::InvalidArgument(
                "no context id left for features",
            ))?;
            offered.push(ContextElement {
                context_id,
                abstract_syntax: offered[0].abstract_syntax,
                transfer_syntaxes: vec![SyntaxId::bind_time_features(u64::from(bits))],
            });
        }
        if offered.len() > 255 {
            return Err(ClientError::InvalidArgument("more than 255 contexts"));
        }
        let auth = match security {
            Some(mut s) => {
                if s.level.0 < AuthLevel::CONNECT.0 || s.level.0 > AuthLevel::PKT_PRIVACY.0 {
                    return Err(ClientError::InvalidArgument(
                        "auth level must be CONNECT to PKT_PRIVACY",
                    ));
                }
                let token = s.provider.initial_token()?;
                let ctx = SecurityContext {
                    provider: s.provider,
                    level: s.level,
                    auth_context_id: s.auth_context_id,
                    established: false,
                };
                let v = ctx.verifier(token);
                self.security = vec![ctx];
                Some(v)
            }
            None => None,
        };
        let call_id = self.take_call_id();
        let body = Bind {
            max_xmit_frag: self.config.max_xmit_frag,
            max_recv_frag: self.config.max_recv_frag,
            assoc_group_id: self.config.assoc_group_id,
            contexts: offered.clone(),
        };
        let flags = PfcFlags::WHOLE.with(
            PfcFlags::SUPPORT_HEADER_SIGN,
            self.config.support_header_sign,
        );
        let mut pdu = Pdu::new(call_id, flags, PduBody::Bind(body));
        pdu.auth = auth;
        let bytes = pdu.encode()?;
        self.phase = Phase::AwaitingAck {
            call_id,
            leg: Leg::Bind,
            offered,
        };
        Ok(bytes)
    }

    /// An alter_context offering more contexts on the bound association (no security
    /// token: the bound context covers them).
    pub fn alter_context(&mut self, contexts: &[ContextElement]) -> Result<Vec<u8>, ClientError> {
        self.check_alive()?;
        if !self.is_ready() {
            return Err(ClientError::NotReady(
                "alter_context before the bind finished",
            ));
        }
        let offered = checked_contexts(contexts)?;
        let call_id = self.take_call_id();
        let bytes = self.alter_pdu(call_id, offered.clone(), None)?;
        self.phase = Phase::AwaitingAck {
            call_id,
            leg: Leg::Alter,
            offered,
        };
        Ok(bytes)
    }

    /// An alter_context that starts another security context on the bound association
    /// (its first token, `security.auth_context_id` unused so far), offering `contexts`
    /// (new ones are accepted as by [`ClientAssociation::alter_context`]). Its legs run
    /// as the bind's did (NTLM: the CHALLENGE in the alter_context_resp, AUTHENTICATE in
    /// an auth3); calls then pick it with [`ClientAssociation::call_as`]. The server
    /// takes a second context only when security context multiplexing was negotiated
    /// (bind-time feature 0x1).
    pub fn add_security(
        &mut self,
        contexts: &[ContextElement],
        security: BindSecurity,
    ) -> Result<Vec<u8>, ClientError> {
        self.check_alive()?;
        if !self.is_ready() {
            return Err(ClientError::NotReady(
                "another security context before the last one was established",
            ));
        }
        let level = security.level;
        if level.0 < AuthLevel::CONNECT.0 || level.0 > AuthLevel::PKT_PRIVACY.0 {
            return Err(ClientError::InvalidArgument(
                "auth level must be CONNECT to PKT_PRIVACY",
            ));
        }
        let id = security.auth_context_id;
        if self.security.iter().any(|s| s.auth_context_id == id) {
            return Err(ClientError::InvalidArgument("auth_context_id in use"));
        }
        let offered = checked_contexts(contexts)?;
        let mut provider = security.provider;
        let token = provider.initial_token()?;
        let ctx = SecurityContext {
            provider,
            level,
            auth_context_id: id,
            established: false,
        };
        let verifier = ctx.verifier(token);
        let call_id = self.take_call_id();
        let bytes = self.alter_pdu(call_id, offered.clone(), Some(verifier))?;
        self.security.push(ctx);
        self.phase = Phase::AwaitingAck {
            call_id,
            leg: Leg::Alter,
            offered,
        };
        Ok(bytes)
    }

    fn alter_pdu(
        &self,
        call_id: u32,
        contexts: Vec<ContextElement>,
        auth: Option<AuthVerifier>,
    ) -> Result<Vec<u8>, ClientError> {
        let body = Bind {
            max_xmit_frag: self.config.max_xmit_frag,
            max_recv_frag: self.config.max_recv_frag,
            assoc_group_id: self.config.assoc_group_id,
            contexts,
        };
        let mut pdu = Pdu::new(call_id, PfcFlags::WHOLE, PduBody::AlterContext(body));
        pdu.auth = auth;
        Ok(pdu.encode()?)
    }

    /// One request on an accepted context: the fragments under the negotiated
    /// max_xmit_frag, each signed or sealed at the bound level (under the bind's
    /// security context).
    pub fn call(
        &mut self,
        context_id: u16,
        opnum: u16,
        object: Option<Uuid>,
        stub: &[u8],
    ) -> Result<OutgoingCall, ClientError> {
        let first = self.security.first().map(|s| s.auth_context_id);
        self.call_as(context_id, first, opnum, object, stub)
    }

    /// [`ClientAssociation::call`] under the security context `auth_context_id` (one
    /// the bind or [`ClientAssociation::add_security`] established; `None` only on an
    /// association without security).
    pub fn call_as(
        &mut self,
        context_id: u16,
        auth_context_id: Option<u32>,
        opnum: u16,
        object: Option<Uuid>,
        stub: &[u8],
    ) -> Result<OutgoingCall, ClientError> {
        self.check_alive()?;
        let known = match auth_context_id {
            Some(id) => self.security.iter().any(|s| s.auth_context_id == id),
            None => self.security.is_empty(),
        };
        if !known {
            return Err(ClientError::InvalidArgument(
                "no such security context on the association",
            ));
        }
        if !self.is_ready() {
            return Err(ClientError::NotReady("call before the bind finished"));
        }
        if !self.contexts.contains_key(&context_id) {
            return Err(ClientError::UnknownContext(context_id));
        }
        let call_id = self.take_call_id();
        let request = Request {
            alloc_hint: u32::try_from(stub.len()).unwrap_or(u32::MAX),
            context_id,
            opnum,
            object,
            stub: stub.to_vec(),
        };
        let body_header = request.header_len();
        let mut pdu = Pdu::new(call_id, PfcFlags::WHOLE, PduBody::Request(request));
        let mut protect = self
            .security
            .iter_mut()
            .find(|s| Some(s.auth_context_id) == auth_context_id)
            .filter(|s| s.protects_calls());
        if let Some(sec) = &protect {
            let sig_len = sec.provider.signature_len(sec.level);
            if sig_len == 0 {
                return Err(SecurityError::MalformedSignature(0).into());
            }
            pdu.auth = Some(sec.verifier(vec![0; sig_len]));
        }
        let pieces =
            fragment(&pdu, self.max_xmit_frag).ok_or(ClientError::NoRoom(self.max_xmit_frag))?;
        let mut fragments = Vec::with_capacity(pieces.len());
        for piece in &pieces {
            let mut bytes = piece.encode()?;
            if let Some(sec) = protect.as_deref_mut() {
                // The provider's sequence has moved for the fragments before: a failure
                // here leaves the context unusable.
                if let Err(e) = sec.protect(&mut bytes, body_header) {
                    self.failed = Some(e.clone());
                    return Err(e);
                }
            }
            fragments.push(bytes);
        }
        self.outstanding
            .insert(call_id, (context_id, auth_context_id));
        Ok(OutgoingCall { call_id, fragments })
    }

    /// Takes octets from the server and appends what they complete to `events`. Events
    /// completed before an error are in `events` too. After an error every later call
    /// fails with [`ClientError::Failed`].
    pub fn receive(
        &mut self,
        bytes: &[u8],
        events: &mut Vec<ClientEvent>,
    ) -> Result<(), ClientError> {
        self.check_alive()?;
        self.inbox.extend_from_slice(bytes);
        let result = self.drain(events);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
            self.inbox = Vec::new();
        }
        result
    }

    /// Handles every whole fragment in the inbox.
    fn drain(&mut self, events: &mut Vec<ClientEvent>) -> Result<(), ClientError> {
        let mut at = 0;
        let result = loop {
            let rest = &self.inbox[at..];
            if rest.len() < HEADER_LEN {
                break Ok(());
            }
            let header = match Header::decode(&mut Reader::new(rest)) {
                Ok(h) => h,
                Err(e) => break Err(e.into()),
            };
            if header.frag_length > self.max_recv_frag {
                break Err(ClientError::FragmentTooLong {
                    frag_length: header.frag_length,
                    max: self.max_recv_frag,
                });
            }
            let len = usize::from(header.frag_length);
            if rest.len() < len {
                break Ok(());
            }
            let fragment = rest[..len].to_vec();
            at += len;
            if let Err(e) = self.on_fragment(fragment, events) {
                break Err(e);
            }
        };
        self.inbox.drain(..at);
        result
    }

    fn on_fragment(
        &mut self,
        mut raw: Vec<u8>,
        events: &mut Vec<ClientEvent>,
    ) -> Result<(), ClientError> {
        let (pdu, _) = Pdu::decode(&raw)?;
        let packet_type = pdu.packet_type();
        match pdu.body {
            PduBody::BindAck(ack) => {
                self.on_ack(Leg::Bind, pdu.call_id, pdu.flags, ack, pdu.auth, events)
            }
            PduBody::AlterContextResp(ack) => {
                self.on_ack(Leg::Alter, pdu.call_id, pdu.flags, ack, pdu.auth, events)
            }
            PduBody::BindNak(nak) => {
                self.expect_ack(Leg::Bind, pdu.call_id, packet_type)?;
                self.phase = Phase::Refused;
                events.push(ClientEvent::BindNak {
                    reason: nak.reason,
                    versions: nak.versions,
                });
                Ok(())
            }
            PduBody::Response(_) => {
                let call_id = pdu.call_id;
                let response = self.verified_response(pdu, &mut raw)?;
                if let Some(whole) = self.reassembler.push(response)? {
                    let PduBody::Response(r) = whole.body else {
                        return Err(ClientError::Unexpected {
                            packet_type,
                            state: "reassembling a response",
                        });
                    };
                    self.outstanding.remove(&call_id);
                    events.push(ClientEvent::Response {
                        call_id,
                        context_id: r.context_id,
                        stub: r.stub,
                    });
                }
                Ok(())
            }
            PduBody::Fault(fault) => self.on_fault(pdu.call_id, pdu.flags, fault, events),
            PduBody::Shutdown => {
                events.push(ClientEvent::Shutdown);
                Ok(())
            }
            _ => Err(ClientError::Unexpected {
                packet_type,
                state: "a client receives",
            }),
        }
    }

    /// The ack or nak answers the bind or alter_context in flight; returns what was
    /// offered.
    fn expect_ack(
        &mut self,
        kind: Leg,
        call_id: u32,
        packet_type: PacketType,
    ) -> Result<(Leg, Vec<ContextElement>), ClientError> {
        match &self.phase {
            Phase::AwaitingAck {
                call_id: sent,
                leg,
                offered,
            } if (*leg == Leg::Bind) == (kind == Leg::Bind) => {
                if *sent != call_id {
                    return Err(ClientError::UnknownCallId { call_id });
                }
                Ok((*leg, offered.clone()))
            }
            _ => Err(ClientError::Unexpected {
                packet_type,
                state: "no matching bind or alter_context is in flight",
            }),
        }
    }

    fn on_ack(
        &mut self,
        kind: Leg,
        call_id: u32,
        flags: PfcFlags,
        ack: BindAck,
        auth: Option<AuthVerifier>,
        events: &mut Vec<ClientEvent>,
    ) -> Result<(), ClientError> {
        let packet_type = match kind {
            Leg::Bind => PacketType::BIND_ACK,
            _ => PacketType::ALTER_CONTEXT_RESP,
        };
        let (leg, offered) = self.expect_ack(kind, call_id, packet_type)?;
        if ack.results.len() != offered.len() {
            return Err(ClientError::ResultCount {
                offered: offered.len(),
                got: ack.results.len(),
            });
        }
        let mut results = Vec::with_capacity(offered.len());
        let mut features = None;
        let mut accepted = Vec::new();
        for (offer, result) in offered.iter().zip(&ack.results) {
            let is_feature = offer
                .transfer_syntaxes
                .first()
                .and_then(SyntaxId::bind_time_feature_bits)
                .is_some();
            if is_feature && leg == Leg::Bind {
                // negotiate_ack carries the accepted bits in the reason field
                // ([MS-RPCE] 2.2.2.4); any other answer means none.
                let bits = (result.result == AckResult::NEGOTIATE_ACK).then_some(result.reason.0);
                features = bits.or(Some(0));
                continue;
            }
            if result.result == AckResult::ACCEPTANCE {
                if !offer.transfer_syntaxes.contains(&result.transfer_syntax) {
                    return Err(ClientError::TransferSyntaxNotOffered {
                        context_id: offer.context_id,
                    });
                }
                accepted.push((offer.context_id, result.transfer_syntax));
            }
            results.push(result.clone());
        }
        if leg == Leg::Bind {
            if ack.max_recv_frag < MIN_FRAG {
                return Err(ClientError::FragmentSizeTooSmall(ack.max_recv_frag));
            }
            self.max_xmit_frag = self.config.max_xmit_frag.min(ack.max_recv_frag);
            // The server says how large its fragments will be; [C706] wants that no
            // larger than this side's max_recv_frag, but Samba raises it to 2048. The
            // limit stays a u16, so taking the larger bounds nothing away.
            self.max_recv_frag = self.config.max_recv_frag.max(ack.max_xmit_frag);
        }
        let mut send = None;
        if let Some(sec) = self.security.iter_mut().find(|s| !s.established) {
            let token = match auth {
                Some(v) if sec.matches(&v) => v.auth_value,
                // The reply to a security leg may carry no token: the alter_context_resp
                // that closes Kerberos' DCE-style legs ([MS-RPCE] 2.2.2.12).
                None if leg == Leg::SecurityAlter => Vec::new(),
                _ => return Err(ClientError::VerifierMismatch { call_id }),
            };
            match sec.provider.step(&token)? {
                ClientStep::Done => sec.established = true,
                ClientStep::Send {
                    token,
                    expects_reply: false,
                } => {
                    // auth3 goes out with the bind's call_id ([MS-RPCE] 2.2.2.10) and
                    // gets no reply: the context is established once it is sent.
                    let x = self.config.max_xmit_frag.to_le_bytes();
                    let r = self.config.max_recv_frag.to_le_bytes();
                    let body = PduBody::Auth3(Auth3 {
                        pad: [x[0], x[1], r[0], r[1]],
                    });
                    let mut pdu = Pdu::new(call_id, PfcFlags::WHOLE, body);
                    pdu.auth = Some(sec.verifier(token));
                    send = Some((pdu.encode()?, None));
                    sec.established = true;
                }
                ClientStep::Send {
                    token,
                    expects_reply: true,
                } => send = Some((Vec::new(), Some(sec.verifier(token)))),
            }
        }
        let acked = BindAcked {
            results,
            max_xmit_frag: self.max_xmit_frag,
            max_recv_frag: self.max_recv_frag,
            assoc_group_id: ack.assoc_group_id,
            secondary_address: String::from_utf8_lossy(
                ack.sec_addr.strip_suffix(&[0]).unwrap_or(&ack.sec_addr),
            )
            .into_owned(),
            features,
            header_sign: self.config.support_header_sign
                && flags.contains(PfcFlags::SUPPORT_HEADER_SIGN),
        };
        if leg != Leg::SecurityAlter {
            self.contexts.extend(accepted);
        }
        self.phase = Phase::Bound;
        events.push(match kind {
            Leg::Bind => ClientEvent::BindAcked(acked),
            _ => ClientEvent::AlterContextAcked(acked),
        });
        match send {
            Some((auth3, None)) => events.push(ClientEvent::Send(auth3)),
            Some((_, Some(verifier))) => {
                // A leg that expects a reply rides an alter_context offering the bound
                // contexts again.
                let contexts: Vec<ContextElement> = offered
                    .into_iter()
                    .filter(|c| self.contexts.contains_key(&c.context_id))
                    .collect();
                if contexts.is_empty() {
                    return Err(ClientError::NotReady(
                        "no context accepted for the security leg",
                    ));
                }
                let call_id = self.take_call_id();
                let bytes = self.alter_pdu(call_id, contexts.clone(), Some(verifier))?;
                self.phase = Phase::AwaitingAck {
                    call_id,
                    leg: Leg::SecurityAlter,
                    offered: contexts,
                };
                events.push(ClientEvent::Send(bytes));
            }
            None => {}
        }
        Ok(())
    }

    /// Checks a response fragment's call and context, verifies (and unseals) it at the
    /// bound level, and returns it with its plain stub.
    fn verified_response(&mut self, mut pdu: Pdu, raw: &mut [u8]) -> Result<Pdu, ClientError> {
        let call_id = pdu.call_id;
        let Some(&(expected, auth_context_id)) = self.outstanding.get(&call_id) else {
            return Err(ClientError::UnknownCallId { call_id });
        };
        let PduBody::Response(response) = &mut pdu.body else {
            return Err(ClientError::Unexpected {
                packet_type: pdu.packet_type(),
                state: "verifying a response",
            });
        };
        if response.context_id != expected {
            return Err(ClientError::ContextMismatch {
                call_id,
                expected,
                got: response.context_id,
            });
        }
        let sec = self
            .security
            .iter_mut()
            .find(|s| Some(s.auth_context_id) == auth_context_id);
        let Some(sec) = sec.filter(|s| s.protects_calls()) else {
            return Ok(pdu);
        };
        let Some(v) = pdu.auth.as_ref() else {
            return Err(ClientError::MissingVerifier { call_id });
        };
        if !sec.matches(v) {
            return Err(ClientError::VerifierMismatch { call_id });
        }
        // Pdu::decode placed stub, auth padding, sec_trailer and auth_value in this
        // order inside the fragment; checked again before slicing.
        let stub_start = HEADER_LEN + RESPONSE_HEADER_LEN;
        let stub_end = stub_start + response.stub.len();
        let signed_end = raw.len().checked_sub(v.auth_value.len());
        let trailer_at = signed_end.and_then(|e| e.checked_sub(SEC_TRAILER_LEN));
        let (Some(signed_end), Some(trailer_at)) = (signed_end, trailer_at) else {
            return Err(DecodeError::Invalid(ERR_LAYOUT).into());
        };
        if trailer_at < stub_end {
            return Err(DecodeError::Invalid(ERR_LAYOUT).into());
        }
        let (signed, signature) = raw.split_at_mut(signed_end);
        sec.provider
            .unwrap(sec.level, signed, stub_start..trailer_at, signature)?;
        let plain = &signed[stub_start..stub_end];
        response.stub.clear();
        response.stub.extend_from_slice(plain);
        Ok(pdu)
    }

    fn on_fault(
        &mut self,
        call_id: u32,
        flags: PfcFlags,
        fault: Fault,
        events: &mut Vec<ClientEvent>,
    ) -> Result<(), ClientError> {
        let awaiting_ack =
            matches!(&self.phase, Phase::AwaitingAck { call_id: sent, .. } if *sent == call_id);
        if self.outstanding.remove(&call_id).is_some() {
            // Whatever part of this call's response came is void.
            self.reassembler = CallReassembler::new(self.config.max_response_stub);
        } else if awaiting_ack {
            self.phase = Phase::Refused;
        } else if call_id != 0 {
            return Err(ClientError::UnknownCallId { call_id });
        }
        events.push(ClientEvent::Fault {
            call_id,
            context_id: fault.context_id,
            status: fault.status,
            did_not_execute: flags.contains(PfcFlags::DID_NOT_EXECUTE),
        });
        Ok(())
    }
}

/// The caller's contexts, checked: at least one, each with a transfer syntax.
fn checked_contexts(contexts: &[ContextElement]) -> Result<Vec<ContextElement>, ClientError> {
    if contexts.is_empty() {
        return Err(ClientError::InvalidArgument("no presentation context"));
    }
    if contexts.iter().any(|c| c.transfer_syntaxes.is_empty()) {
        return Err(ClientError::InvalidArgument(
            "a presentation context without transfer syntaxes",
        ));
    }
    Ok(contexts.to_vec())
}

#[cfg(test)]
mod tests;
