//! The security-provider contract of the DCE/RPC association ([MS-RPCE] 3.3.1.5.2).
//!
//! One security context per `auth_context_id` on an association. A context first runs
//! its token legs (bind / bind_ack / auth3, or alter_context / alter_context_resp), then
//! protects every PDU: at packet integrity it signs, at packet privacy it seals the stub
//! and signs. NTLM ([`super::ntlm`]) and Kerberos, auth_type 16 and SPNEGO 9
//! ([`super::kerberos`]), implement it.

use std::ops::Range;

use harness_wire::dcerpc::{AuthLevel, AuthType};

/// Who a security context authenticated: recorded with every call made under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub auth_type: AuthType,
    pub user: String,
    pub domain: String,
    pub workstation: String,
}

/// Why a token leg or a protected PDU was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecurityError {
    /// The token is malformed or out of order for the provider.
    #[error("security token refused: {0}")]
    BadToken(String),
    /// The credentials did not verify (wrong password, unknown user).
    #[error("logon failed: {0}")]
    LogonFailed(String),
    /// A PDU's signature does not verify: tampered, replayed or out of sequence.
    #[error("signature does not verify")]
    BadSignature,
    /// The signature has the wrong length or version.
    #[error("malformed signature of {0} octets")]
    MalformedSignature(usize),
    /// Protection asked of a context whose legs have not finished.
    #[error("security context not established")]
    NotEstablished,
    /// The level is not one this provider protects at.
    #[error("auth level {0:?} not supported")]
    UnsupportedLevel(AuthLevel),
    /// The Kerberos mechanism refused a context token, with its code (RFC 4120 7.5.9:
    /// 34 a replay, 37 clock skew, 35 a ticket for another service).
    #[error("Kerberos refused the token: {0}")]
    Kerberos(crate::kerberos::gss::GssError),
}

/// Per-PDU protection ([MS-RPCE] 2.2.2.11, 3.3.1.5.2.2).
///
/// `pdu` is the whole fragment as it goes on the wire except the auth_value: header
/// (frag_length and auth_length already final), body, auth padding and sec_trailer.
/// `stub` is the range of the stub data and its auth padding inside `pdu`: what
/// packet privacy encrypts.
pub trait MessageProtection: Send {
    /// Octets of the auth_value a protected PDU carries at `level` (16 for NTLM; 28 for
    /// a Kerberos MIC, 76 for a Kerberos Wrap).
    fn signature_len(&self, level: AuthLevel) -> usize;

    /// Protects an outgoing PDU at `level` (PKT_INTEGRITY: sign; PKT_PRIVACY: encrypt
    /// `pdu[stub]` in place and sign). Returns the auth_value.
    fn wrap(
        &mut self,
        level: AuthLevel,
        pdu: &mut [u8],
        stub: Range<usize>,
    ) -> Result<Vec<u8>, SecurityError>;

    /// Checks an incoming PDU at `level` against `signature` (its auth_value); at
    /// PKT_PRIVACY decrypts `pdu[stub]` in place first. A failed check leaves the
    /// context unusable for further PDUs (sequence and cipher state have moved on).
    fn unwrap(
        &mut self,
        level: AuthLevel,
        pdu: &mut [u8],
        stub: Range<usize>,
        signature: &[u8],
    ) -> Result<(), SecurityError>;
}

/// What a level asks of each PDU: PKT_PRIVACY seals and signs; PKT_INTEGRITY signs, and
/// so do PKT and CALL, which [MS-RPCE] 2.2.1.1.8 says a server MUST process as PKT.
/// CONNECT (and below) protects no PDU: the association does not call wrap/unwrap there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Guard {
    Sign,
    Seal,
}

pub(crate) fn guard_for(level: AuthLevel) -> Result<Guard, SecurityError> {
    match level {
        AuthLevel::CALL | AuthLevel::PKT | AuthLevel::PKT_INTEGRITY => Ok(Guard::Sign),
        AuthLevel::PKT_PRIVACY => Ok(Guard::Seal),
        other => Err(SecurityError::UnsupportedLevel(other)),
    }
}

/// What a server-side leg produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptStep {
    /// Send `token` back (in the bind_ack or alter_context_resp); another leg follows.
    Continue(Vec<u8>),
    /// Established. `reply` goes back when the leg has a reply PDU (an alter_context);
    /// an auth3 has none.
    Done {
        reply: Option<Vec<u8>>,
        principal: Principal,
    },
}

/// The server side of one security context.
pub trait ServerSecurity: MessageProtection {
    fn auth_type(&self) -> AuthType;
    /// Consumes the client's next token (from bind, alter_context or auth3).
    fn accept(&mut self, token: &[u8]) -> Result<AcceptStep, SecurityError>;
    /// The principal once established.
    fn principal(&self) -> Option<&Principal>;
    /// Whether this provider covers the PDU header when header signing is negotiated
    /// ([MS-RPCE] 2.2.2.3, 3.3.1.5.2.2). NTLM signs the whole PDU anyway; the Kerberos
    /// provider declines, so the association does not offer PFC_SUPPORT_HEADER_SIGN back.
    fn signs_header(&self) -> bool {
        true
    }
}

/// Makes server contexts for the auth types the endpoint offers.
pub trait ServerSecurityFactory: Send + Sync {
    /// A fresh context for `auth_type`, or None when the endpoint does not offer it
    /// (the bind is then refused with bind_nak `invalid_auth_type`).
    fn new_context(&self, auth_type: AuthType) -> Option<Box<dyn ServerSecurity>>;
}

/// What a client-side leg produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientStep {
    /// Send `token` in the next leg PDU (auth3 after a bind_ack; alter_context
    /// otherwise) and expect `expects_reply` (false for auth3).
    Send { token: Vec<u8>, expects_reply: bool },
    /// Established; nothing more to send.
    Done,
}

/// The client side of one security context.
pub trait ClientSecurity: MessageProtection {
    fn auth_type(&self) -> AuthType;
    /// The token the bind (or the first alter_context) carries.
    fn initial_token(&mut self) -> Result<Vec<u8>, SecurityError>;
    /// Consumes the server's token from bind_ack / alter_context_resp.
    fn step(&mut self, token: &[u8]) -> Result<ClientStep, SecurityError>;
}
