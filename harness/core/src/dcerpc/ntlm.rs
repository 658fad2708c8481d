//! NTLM (auth_type 10, RPC_C_AUTHN_WINNT) behind the security contract of
//! [`super::security`]: the project's acceptor and initiator run the token legs, then
//! [`SecurityContext`] signs and seals every PDU.
//!
//! What a PDU's signature covers, as Samba (`dcerpc_ncacn_push_pkt_auth`,
//! `ntlmssp_make_packet_signature`) and impacket (`rpcrt._transport_send`) compute it:
//! with extended session security the HMAC runs over the whole PDU except the auth_value
//! (header with the final frag_length and auth_length, body, auth padding, sec_trailer);
//! without it the CRC32 runs over the stub and its auth padding only. At packet privacy
//! the stub and its padding are sealed and the signature is over the plaintext
//! ([MS-RPCE] 2.2.2.11, 3.3.1.5.2.2; [MS-NLMP] 3.4.3).
//!
//! Levels: PKT_PRIVACY seals; PKT_INTEGRITY signs; PKT signs too, as Samba does
//! (`dcerpc_ncacn_pull_pkt_auth` checks INTEGRITY and PACKET alike), and so does CALL,
//! which [MS-RPCE] 2.2.1.1.8 says a server MUST process as PKT. CONNECT (and below)
//! carries no per-PDU protection: the association does not call wrap/unwrap there and
//! this provider answers `UnsupportedLevel`.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use harness_wire::dcerpc::{AuthLevel, AuthType};

use super::security::{
    guard_for, AcceptStep, ClientSecurity, ClientStep, Guard, MessageProtection, Principal,
    SecurityError, ServerSecurity, ServerSecurityFactory,
};
use crate::ntlm::crypto::{Direction, SecurityContext, SignatureError, SIGNATURE_LEN};
use crate::ntlm::{
    AcceptorConfig, Credentials, InitiatorOptions, NegotiateFlags, NtlmAcceptor, NtlmError,
    NtlmInitiator, ResponseKind,
};
use crate::rng::SeededRng;

/// The directory: the cleartext password of `(user, domain)`, None for an unknown user.
pub type PasswordLookup = Arc<dyn Fn(&str, &str) -> Option<String> + Send + Sync>;

fn signature_refused(e: SignatureError, signature_len: usize, pdu_len: usize) -> SecurityError {
    match e {
        SignatureError::Malformed => SecurityError::MalformedSignature(signature_len),
        SignatureError::Mismatch => SecurityError::BadSignature,
        SignatureError::OutOfRange => {
            SecurityError::BadToken(format!("stub range outside the PDU of {pdu_len} octets"))
        }
    }
}

/// The per-PDU protection of an established context. With extended session security
/// each direction has its own keys, handle and sequence number from 0. Without it one
/// key, one handle and one sequence number serve both directions, half duplex ([MS-NLMP]
/// 3.4; Samba's `crypt->ntlm.seal_state` and impacket's shared handle alike).
#[derive(Debug)]
struct Protection {
    send: SecurityContext,
    /// None: half duplex, `send` receives too.
    receive: Option<SecurityContext>,
    /// A PDU failed to verify: the receiving handle and sequence have moved past the
    /// sender's, so every later PDU is refused too.
    broken: bool,
}

impl Protection {
    /// `outgoing` is the direction this side sends in.
    fn new(flags: NegotiateFlags, exported_session_key: &[u8; 16], outgoing: Direction) -> Self {
        let incoming = match outgoing {
            Direction::ClientToServer => Direction::ServerToClient,
            Direction::ServerToClient => Direction::ClientToServer,
        };
        let send = SecurityContext::new(flags, exported_session_key, outgoing);
        let receive = send
            .extended_session_security()
            .then(|| SecurityContext::new(flags, exported_session_key, incoming));
        Protection {
            send,
            receive,
            broken: false,
        }
    }

    fn receiving(&mut self) -> &mut SecurityContext {
        match &mut self.receive {
            Some(receive) => receive,
            None => &mut self.send,
        }
    }

    /// What the signature covers: the whole PDU with ESS, the stub without.
    fn signed(ctx: &SecurityContext, pdu_len: usize, stub: &Range<usize>) -> Range<usize> {
        if ctx.extended_session_security() {
            0..pdu_len
        } else {
            stub.clone()
        }
    }
}

/// An NTLM security context: the token legs of one side (`Leg`, server or client) and,
/// once they are done, the per-PDU protection.
#[derive(Debug)]
pub struct NtlmSecurity<Leg> {
    leg: Leg,
    protection: Option<Protection>,
}

/// The server side of one NTLM context: NEGOTIATE (bind) answered with a CHALLENGE
/// (bind_ack), AUTHENTICATE (auth3 or alter_context) checked against the directory.
pub type NtlmServerSecurity = NtlmSecurity<ServerLeg>;

/// The client side of one NTLM context over [`NtlmInitiator`]: NEGOTIATE in the bind,
/// AUTHENTICATE in the auth3 (no reply).
pub type NtlmClientSecurity = NtlmSecurity<ClientLeg>;

impl<Leg: Send> MessageProtection for NtlmSecurity<Leg> {
    fn signature_len(&self, _level: AuthLevel) -> usize {
        SIGNATURE_LEN
    }

    fn wrap(
        &mut self,
        level: AuthLevel,
        pdu: &mut [u8],
        stub: Range<usize>,
    ) -> Result<Vec<u8>, SecurityError> {
        let protection = self
            .protection
            .as_mut()
            .ok_or(SecurityError::NotEstablished)?;
        let guard = guard_for(level)?;
        let len = pdu.len();
        let signed = Protection::signed(&protection.send, len, &stub);
        // Signing alone seals nothing: an empty range at the stub's start.
        let sealed = match guard {
            Guard::Seal => stub.clone(),
            Guard::Sign => stub.start..stub.start,
        };
        // Sign-only must also refuse a stub range outside the PDU.
        if pdu.get(stub).is_none() {
            return Err(signature_refused(SignatureError::OutOfRange, 0, len));
        }
        protection
            .send
            .seal_in_place(pdu, sealed, signed)
            .map(|sig| sig.to_vec())
            .map_err(|e| signature_refused(e, SIGNATURE_LEN, len))
    }

    fn unwrap(
        &mut self,
        level: AuthLevel,
        pdu: &mut [u8],
        stub: Range<usize>,
        signature: &[u8],
    ) -> Result<(), SecurityError> {
        let protection = self
            .protection
            .as_mut()
            .ok_or(SecurityError::NotEstablished)?;
        let guard = guard_for(level)?;
        if protection.broken {
            return Err(SecurityError::BadSignature);
        }
        let len = pdu.len();
        let receive = protection.receiving();
        let signed = Protection::signed(receive, len, &stub);
        let result = match guard {
            Guard::Seal => receive.unseal_in_place(pdu, stub, signed, signature),
            Guard::Sign => pdu
                .get(stub)
                .and(pdu.get(signed))
                .ok_or(SignatureError::OutOfRange)
                .and_then(|message| receive.verify(message, signature)),
        };
        result.map_err(|e| {
            protection.broken = true;
            signature_refused(e, signature.len(), len)
        })
    }
}

/// A credentials failure is a logon failure; anything else about the token is a bad
/// token.
fn refusal(e: NtlmError) -> SecurityError {
    match e {
        NtlmError::WrongPassword
        | NtlmError::UnknownUser
        | NtlmError::AnonymousRefused
        | NtlmError::MicMismatch => SecurityError::LogonFailed(e.to_string()),
        other => SecurityError::BadToken(other.to_string()),
    }
}

/// The token legs of a server context.
pub struct ServerLeg {
    acceptor: NtlmAcceptor,
    passwords: PasswordLookup,
    principal: Option<Principal>,
}

impl std::fmt::Debug for ServerLeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerLeg")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

impl NtlmServerSecurity {
    pub fn new(acceptor: NtlmAcceptor, passwords: PasswordLookup) -> Self {
        NtlmSecurity {
            leg: ServerLeg {
                acceptor,
                passwords,
                principal: None,
            },
            protection: None,
        }
    }
}

impl ServerSecurity for NtlmServerSecurity {
    fn auth_type(&self) -> AuthType {
        AuthType::NTLMSSP
    }

    /// The acceptor keeps the order (NEGOTIATE, then AUTHENTICATE, then nothing): a token
    /// out of order, or any token after a refusal, is a bad token.
    fn accept(&mut self, token: &[u8]) -> Result<AcceptStep, SecurityError> {
        let leg = &mut self.leg;
        if leg.principal.is_some() {
            return Err(SecurityError::BadToken(
                "NTLM context already established".into(),
            ));
        }
        if !leg.acceptor.has_negotiated() {
            return leg
                .acceptor
                .handle_negotiate(token)
                .map(AcceptStep::Continue)
                .map_err(refusal);
        }
        let passwords = &leg.passwords;
        let done = leg
            .acceptor
            .handle_authenticate(token, &|user, domain| passwords(user, domain))
            .map_err(refusal)?;
        let principal = Principal {
            auth_type: AuthType::NTLMSSP,
            user: done.user,
            domain: done.domain,
            workstation: done.workstation,
        };
        self.protection = Some(Protection::new(
            done.flags,
            &done.exported_session_key,
            Direction::ServerToClient,
        ));
        leg.principal = Some(principal.clone());
        Ok(AcceptStep::Done {
            reply: None,
            principal,
        })
    }

    fn principal(&self) -> Option<&Principal> {
        self.leg.principal.as_ref()
    }
}

/// Makes NTLM server contexts. Challenges come from a seeded generator and the CHALLENGE
/// timestamp is fixed, so a run replays byte for byte.
pub struct NtlmServerFactory {
    config: AcceptorConfig,
    passwords: PasswordLookup,
    challenges: Mutex<SeededRng>,
    filetime: u64,
}

impl NtlmServerFactory {
    /// `filetime` (100 ns ticks since 1601) goes into every CHALLENGE's MsvAvTimestamp.
    pub fn new(
        config: AcceptorConfig,
        passwords: PasswordLookup,
        challenges: SeededRng,
        filetime: u64,
    ) -> Self {
        NtlmServerFactory {
            config,
            passwords,
            challenges: Mutex::new(challenges),
            filetime,
        }
    }

    /// A context with the next server challenge.
    pub fn new_ntlm_context(&self) -> NtlmServerSecurity {
        // A poisoned lock only means another thread panicked while drawing: the
        // generator state is still a valid state.
        let challenge = self
            .challenges
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .bytes::<8>();
        NtlmServerSecurity::new(
            NtlmAcceptor::new(self.config.clone(), challenge, self.filetime),
            Arc::clone(&self.passwords),
        )
    }
}

impl ServerSecurityFactory for NtlmServerFactory {
    fn new_context(&self, auth_type: AuthType) -> Option<Box<dyn ServerSecurity>> {
        if auth_type != AuthType::NTLMSSP {
            return None;
        }
        Some(Box::new(self.new_ntlm_context()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    Start,
    AwaitingChallenge,
    Established,
    Failed,
}

/// The token legs of a client context.
#[derive(Debug)]
pub struct ClientLeg {
    initiator: NtlmInitiator,
    state: ClientState,
}

impl NtlmClientSecurity {
    /// A client asking for SIGN and SEAL on top of the initiator's defaults (what a
    /// Windows RPC client asks for at packet integrity and privacy).
    pub fn new(credentials: Credentials, options: InitiatorOptions) -> Self {
        Self::with_initiator(NtlmInitiator::new(credentials, options).requesting(
            NegotiateFlags::SIGN | NegotiateFlags::SEAL,
            NegotiateFlags(0),
        ))
    }

    /// Over an initiator configured by the caller (flags dropped or added).
    pub fn with_initiator(initiator: NtlmInitiator) -> Self {
        NtlmSecurity {
            leg: ClientLeg {
                initiator,
                state: ClientState::Start,
            },
            protection: None,
        }
    }

    fn out_of_order(&self, what: &str) -> SecurityError {
        SecurityError::BadToken(format!("{what} in NTLM client state {:?}", self.leg.state))
    }
}

impl ClientSecurity for NtlmClientSecurity {
    fn auth_type(&self) -> AuthType {
        AuthType::NTLMSSP
    }

    fn initial_token(&mut self) -> Result<Vec<u8>, SecurityError> {
        if self.leg.state != ClientState::Start {
            return Err(self.out_of_order("initial token"));
        }
        self.leg.state = ClientState::AwaitingChallenge;
        Ok(self.leg.initiator.negotiate())
    }

    fn step(&mut self, token: &[u8]) -> Result<ClientStep, SecurityError> {
        if self.leg.state != ClientState::AwaitingChallenge {
            return Err(self.out_of_order("server token"));
        }
        self.leg.state = ClientState::Failed;
        let authenticate = self
            .leg
            .initiator
            .handle_challenge(token)
            .map_err(|e| SecurityError::BadToken(e.to_string()))?;
        let (Some(flags), Some(key)) = (
            self.leg.initiator.negotiated_flags(),
            self.leg.initiator.exported_session_key(),
        ) else {
            return Err(SecurityError::NotEstablished);
        };
        self.protection = Some(Protection::new(flags, &key, Direction::ClientToServer));
        self.leg.state = ClientState::Established;
        Ok(ClientStep::Send {
            token: authenticate,
            expects_reply: false,
        })
    }
}

mod fuzz;
pub use fuzz::fuzz_unwrap;

#[cfg(test)]
mod tests;
