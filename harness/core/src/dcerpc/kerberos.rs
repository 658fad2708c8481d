//! Kerberos behind the security contract of [`super::security`]: auth_type 16
//! (RPC_C_AUTHN_GSS_KERBEROS) and auth_type 9 (RPC_C_AUTHN_GSS_NEGOTIATE, SPNEGO with the
//! krb5 mechanism only), over the GSS mechanism of [`crate::kerberos::gss`] and the
//! per-message tokens of [`crate::kerberos::cfx`]. Facts: ../shared/PROTOCOLS.md 12.
//!
//! The legs, DCE style (MS-KILE 3.4.5.1; [MS-RPCE] 2.2.2.12):
//! 1. bind: the client's AP-REQ (raw for 16; for 9 a framed one as the optimistic token of
//!    a NegTokenInit offering the krb5 or MS-krb5 mechanism first, as impacket sends it);
//! 2. bind_ack: the raw AP-REP with an acceptor subkey and seq-number (for 9 inside a
//!    NegTokenResp, accept-incomplete);
//! 3. alter_context: the client's raw AP-REP, in the session key, echoing the acceptor's
//!    seq-number (for 9 in a NegTokenResp);
//! 4. alter_context_resp: nothing for 16, a NegTokenResp accept-completed for 9.
//!
//! For 16 the third leg may come in an auth3 instead (no reply): the association accepts
//! a last leg there when the provider has nothing to answer.
//!
//! Without DCE_STYLE in the 0x8003 flags the exchange ends at the bind_ack.
//!
//! Every refusal of a leg is [`SecurityError::Kerberos`] with its code: the association
//! answers a bind with bind_nak `invalid_checksum`, an alter_context with a fault.
//!
//! Per-PDU protection: at PKT_INTEGRITY (and PKT, CALL) a MIC token over the stub and its
//! auth padding; at PKT_PRIVACY a sealed Wrap whose ciphertext replaces the stub (RRC 28,
//! EC 16 from this side; any EC and RRC honoured). Header signing is declined, so
//! neither covers the PDU header ([MS-RPCE] 3.3.1.5.2.2; impacket signs and seals the
//! stub alone as well). The key is the acceptor's subkey (RFC 4121 2).

use std::ops::Range;
use std::sync::{Arc, Mutex};

use harness_wire::dcerpc::{AuthLevel, AuthType};

use super::security::{
    guard_for, AcceptStep, ClientSecurity, ClientStep, Guard, MessageProtection, Principal,
    SecurityError, ServerSecurity, ServerSecurityFactory,
};
use crate::kerberos::cfx::{self, Cfx, CfxError};
use crate::kerberos::client::Credentials;
use crate::kerberos::gss::{
    self, gss_flags, Accepted, Acceptor, GssError, InitiatorContext, KRB5_OID, MS_KRB5_OID,
};
use crate::kerberos::keys::Key;
use crate::kerberos::realm::{EntryKind, RealmDb, RealmEntry};
use crate::kerberos::{err, spnego, Seconds};
use crate::rng::SeededRng;
use crate::world::World;

/// The acceptor's time: virtual in tests and in-process runs, the wall clock in the lab.
pub type Clock = Arc<dyn Fn() -> Seconds + Send + Sync>;

/// A [`Clock`] a configuration can carry (and print).
#[derive(Clone)]
pub struct KerberosClock(pub Clock);

impl std::fmt::Debug for KerberosClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KerberosClock(now = {})", (self.0)())
    }
}

fn offered(auth_type: AuthType) -> bool {
    auth_type == AuthType::KERBEROS || auth_type == AuthType::SPNEGO
}

/// The per-PDU protection of an established context, for either side.
#[derive(Debug)]
struct Protection {
    cfx: Cfx,
    /// A PDU failed to verify: the sequence has moved past the sender's.
    broken: bool,
}

impl Protection {
    fn wrap(
        &mut self,
        level: AuthLevel,
        pdu: &mut [u8],
        stub: Range<usize>,
    ) -> Result<Vec<u8>, SecurityError> {
        let guard = guard_for(level)?;
        let len = pdu.len();
        let data = pdu.get_mut(stub).ok_or_else(|| {
            SecurityError::BadToken(format!("stub range outside the PDU of {len} octets"))
        })?;
        match guard {
            Guard::Sign => Ok(self.cfx.get_mic(data)),
            Guard::Seal => self
                .cfx
                .wrap_dce(data)
                .map_err(|e| SecurityError::BadToken(e.to_string())),
        }
    }

    fn unwrap(
        &mut self,
        level: AuthLevel,
        pdu: &mut [u8],
        stub: Range<usize>,
        signature: &[u8],
    ) -> Result<(), SecurityError> {
        let guard = guard_for(level)?;
        if self.broken {
            return Err(SecurityError::BadSignature);
        }
        let len = pdu.len();
        let Some(data) = pdu.get_mut(stub) else {
            self.broken = true;
            return Err(SecurityError::BadToken(format!(
                "stub range outside the PDU of {len} octets"
            )));
        };
        let checked = match guard {
            Guard::Sign => self.cfx.verify_mic(data, signature),
            Guard::Seal => self.cfx.unwrap_dce(data, signature),
        };
        checked.map_err(|e| {
            self.broken = true;
            match e {
                CfxError::Malformed(_) => SecurityError::MalformedSignature(signature.len()),
                _ => SecurityError::BadSignature,
            }
        })
    }
}

/// The context key and the sequence numbers both sides start from: the acceptor's subkey
/// if it sent one, else the initiator's, else the session key (RFC 4121 2).
fn context_key(session: &Key, initiator: Option<&Key>, acceptor: Option<&Key>) -> (Key, bool) {
    match (acceptor, initiator) {
        (Some(k), _) => (k.clone(), true),
        (None, Some(k)) => (k.clone(), false),
        (None, None) => (session.clone(), false),
    }
}

fn refused(code: u32, reason: &str) -> SecurityError {
    SecurityError::Kerberos(GssError::new(code, reason))
}

/// The SPNEGO answer around a Kerberos token.
fn neg_resp(state: u8, mech: &[u8], token: Option<Vec<u8>>) -> Vec<u8> {
    spnego::write_resp(&spnego::NegTokenResp {
        state: Some(state),
        supported_mech: Some(mech.to_vec()),
        response_token: token,
    })
}

#[derive(Debug)]
enum ServerState {
    Start,
    /// DCE style: the bind_ack went out; the client's AP-REP comes next.
    AwaitingApRep {
        accepted: Box<Accepted>,
        acceptor_seq: u32,
    },
    Established,
    Failed,
}

/// A Kerberos security context: the token legs of one side (`Leg`, server or client)
/// and, once they are done, the per-PDU protection.
#[derive(Debug)]
pub struct KerberosSecurity<Leg> {
    leg: Leg,
    protection: Option<Protection>,
}

/// The server side of one Kerberos context (auth_type 16 or 9).
pub type KerberosServerSecurity = KerberosSecurity<ServerLeg>;

/// The client side of one Kerberos context, with a service ticket for the endpoint's
/// principal (from the KDC, or from a delegated TGT).
pub type KerberosClientSecurity = KerberosSecurity<ClientLeg>;

impl<Leg: Send> MessageProtection for KerberosSecurity<Leg> {
    fn signature_len(&self, level: AuthLevel) -> usize {
        match level {
            AuthLevel::PKT_PRIVACY => cfx::DCE_WRAP_LEN,
            _ => cfx::MIC_LEN,
        }
    }

    fn wrap(
        &mut self,
        level: AuthLevel,
        pdu: &mut [u8],
        stub: Range<usize>,
    ) -> Result<Vec<u8>, SecurityError> {
        self.protection
            .as_mut()
            .ok_or(SecurityError::NotEstablished)?
            .wrap(level, pdu, stub)
    }

    fn unwrap(
        &mut self,
        level: AuthLevel,
        pdu: &mut [u8],
        stub: Range<usize>,
        signature: &[u8],
    ) -> Result<(), SecurityError> {
        self.protection
            .as_mut()
            .ok_or(SecurityError::NotEstablished)?
            .unwrap(level, pdu, stub, signature)
    }
}

/// The token legs of a server context.
pub struct ServerLeg {
    auth_type: AuthType,
    acceptor: Arc<Mutex<Acceptor>>,
    clock: Clock,
    state: ServerState,
    /// The mechanism OID the SPNEGO client offered (krb5 or MS-krb5), echoed back.
    mech: Vec<u8>,
    principal: Option<Principal>,
}

impl std::fmt::Debug for ServerLeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerLeg")
            .field("auth_type", &self.auth_type)
            .field("state", &self.state)
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

impl KerberosServerSecurity {
    fn spnego(&self) -> bool {
        self.leg.auth_type == AuthType::SPNEGO
    }

    /// The AP-REQ inside the bind's token.
    fn ap_req<'a>(&mut self, token: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>, SecurityError> {
        if !self.spnego() {
            return Ok(token.into());
        }
        let init = spnego::read_init(token).map_err(|e| SecurityError::BadToken(e.to_string()))?;
        // Only Kerberos is offered here: its optimistic token must come first.
        let Some(mech) = init
            .mech_types
            .first()
            .filter(|m| m[..] == KRB5_OID || m[..] == MS_KRB5_OID)
        else {
            return Err(SecurityError::BadToken(
                "the NegTokenInit does not offer Kerberos first".into(),
            ));
        };
        self.leg.mech = mech.clone();
        init.mech_token
            .map(Into::into)
            .ok_or_else(|| SecurityError::BadToken("NegTokenInit without a mechToken".into()))
    }

    fn first_leg(&mut self, token: &[u8]) -> Result<AcceptStep, SecurityError> {
        let ap_req = self.ap_req(token)?;
        let now = (self.leg.clock)();
        let accepted = self
            .leg
            .acceptor
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .accept(&ap_req, now)
            .map_err(SecurityError::Kerberos)?;
        let dce = accepted.gss_flags & gss_flags::DCE_STYLE != 0;
        match (accepted.reply.clone(), accepted.acceptor_seq) {
            (Some(reply), Some(acceptor_seq)) if dce => {
                let token = if self.spnego() {
                    neg_resp(spnego::ACCEPT_INCOMPLETE, &self.leg.mech, Some(reply))
                } else {
                    reply
                };
                self.leg.state = ServerState::AwaitingApRep {
                    accepted: Box::new(accepted),
                    acceptor_seq,
                };
                Ok(AcceptStep::Continue(token))
            }
            (reply, _) => {
                let reply = match (self.spnego(), reply) {
                    (true, reply) => {
                        Some(neg_resp(spnego::ACCEPT_COMPLETED, &self.leg.mech, reply))
                    }
                    (false, reply) => reply,
                };
                Ok(self.establish(&accepted, reply))
            }
        }
    }

    fn third_leg(
        &mut self,
        token: &[u8],
        accepted: &Accepted,
        acceptor_seq: u32,
    ) -> Result<AcceptStep, SecurityError> {
        let ap_rep = if self.spnego() {
            spnego::read_resp(token)
                .map_err(|e| SecurityError::BadToken(e.to_string()))?
                .response_token
                .ok_or_else(|| refused(err::GENERIC, "NegTokenResp without the AP-REP"))?
        } else {
            token.to_vec()
        };
        gss::read_dce_reply(&accepted.session, &ap_rep, acceptor_seq)
            .map_err(SecurityError::Kerberos)?;
        let reply = self
            .spnego()
            .then(|| neg_resp(spnego::ACCEPT_COMPLETED, &self.leg.mech, None));
        Ok(self.establish(accepted, reply))
    }

    fn establish(&mut self, accepted: &Accepted, reply: Option<Vec<u8>>) -> AcceptStep {
        let (key, acceptor_subkey) = context_key(
            &accepted.session,
            accepted.initiator_subkey.as_ref(),
            accepted.acceptor_subkey.as_ref(),
        );
        let cfx = Cfx::new(
            key,
            true,
            acceptor_subkey,
            u64::from(accepted.acceptor_seq.unwrap_or(0)),
            u64::from(accepted.initiator_seq),
        );
        self.protection = Some(Protection { cfx, broken: false });
        let principal = Principal {
            auth_type: self.leg.auth_type,
            user: accepted.client.text(),
            domain: accepted.realm.clone(),
            workstation: String::new(),
        };
        self.leg.principal = Some(principal.clone());
        self.leg.state = ServerState::Established;
        AcceptStep::Done { reply, principal }
    }
}

impl ServerSecurity for KerberosServerSecurity {
    fn auth_type(&self) -> AuthType {
        self.leg.auth_type
    }

    /// A token out of order, or any token after a refusal, is a bad token.
    fn accept(&mut self, token: &[u8]) -> Result<AcceptStep, SecurityError> {
        let state = std::mem::replace(&mut self.leg.state, ServerState::Failed);
        match state {
            ServerState::Start => self.first_leg(token),
            ServerState::AwaitingApRep {
                accepted,
                acceptor_seq,
            } => self.third_leg(token, &accepted, acceptor_seq),
            ServerState::Established | ServerState::Failed => Err(SecurityError::BadToken(
                format!("Kerberos context in state {state:?} takes no token"),
            )),
        }
    }

    fn principal(&self) -> Option<&Principal> {
        self.leg.principal.as_ref()
    }

    fn signs_header(&self) -> bool {
        false
    }
}

/// Makes Kerberos server contexts for auth types 16 and 9 against one keytab. The
/// acceptor (and so its replay cache and its subkey generator) is shared by every
/// context: an authenticator replayed on another connection is refused too.
pub struct KerberosServerFactory {
    acceptor: Arc<Mutex<Acceptor>>,
    clock: Clock,
}

impl KerberosServerFactory {
    /// `seed` drives the acceptor subkeys and seq-numbers.
    pub fn new(realm: &str, keytab: Vec<RealmEntry>, clock: Clock, seed: u64) -> Self {
        KerberosServerFactory {
            acceptor: Arc::new(Mutex::new(Acceptor::new(realm, keytab, seed))),
            clock,
        }
    }

    /// The store's keytab: the world realm's `exchange*` service principals (EMSMDB's
    /// `exchangeMDB`, RFR's `exchangeRFR`, NSPI's `exchangeAB` on each GC).
    pub fn for_world(world: &World, clock: Clock, seed: u64) -> Self {
        let db = RealmDb::for_world(world);
        let keytab = db
            .entries()
            .filter(|e| e.kind == EntryKind::Service)
            .filter(|e| {
                e.name
                    .components
                    .first()
                    .is_some_and(|c| c.starts_with("exchange"))
            })
            .cloned()
            .collect();
        Self::new(db.realm(), keytab, clock, seed)
    }

    /// A context for auth_type 16 or 9; None for any other.
    pub fn new_kerberos_context(&self, auth_type: AuthType) -> Option<KerberosServerSecurity> {
        offered(auth_type).then(|| KerberosSecurity {
            leg: ServerLeg {
                auth_type,
                acceptor: Arc::clone(&self.acceptor),
                clock: Arc::clone(&self.clock),
                state: ServerState::Start,
                mech: KRB5_OID.to_vec(),
                principal: None,
            },
            protection: None,
        })
    }
}

impl ServerSecurityFactory for KerberosServerFactory {
    fn new_context(&self, auth_type: AuthType) -> Option<Box<dyn ServerSecurity>> {
        self.new_kerberos_context(auth_type)
            .map(|c| Box::new(c) as Box<dyn ServerSecurity>)
    }
}

/// Several providers behind one endpoint: the first that offers an auth type makes its
/// contexts (NTLM for 10, Kerberos for 16 and 9).
pub struct OfferedSecurity {
    providers: Vec<Arc<dyn ServerSecurityFactory>>,
}

impl OfferedSecurity {
    pub fn new(providers: Vec<Arc<dyn ServerSecurityFactory>>) -> Self {
        OfferedSecurity { providers }
    }
}

impl ServerSecurityFactory for OfferedSecurity {
    fn new_context(&self, auth_type: AuthType) -> Option<Box<dyn ServerSecurity>> {
        self.providers.iter().find_map(|p| p.new_context(auth_type))
    }
}

#[derive(Debug)]
enum ClientState {
    Start,
    AwaitingApRep(Box<InitiatorContext>),
    /// DCE style: the third leg went out; the alter_context_resp closes the exchange.
    AwaitingClose,
    Established,
    Failed,
}

/// The token legs of a client context.
#[derive(Debug)]
pub struct ClientLeg {
    auth_type: AuthType,
    ticket: Credentials,
    now: Seconds,
    rng: SeededRng,
    state: ClientState,
    /// auth_type 16 sends its third leg in an auth3 (no reply) instead of an
    /// alter_context.
    third_leg_in_auth3: bool,
}

/// The GSS flags a DCE/RPC client asks for (what impacket and Windows send).
pub const CLIENT_FLAGS: u32 = gss_flags::MUTUAL
    | gss_flags::REPLAY
    | gss_flags::SEQUENCE
    | gss_flags::CONF
    | gss_flags::INTEG
    | gss_flags::DCE_STYLE;

impl KerberosClientSecurity {
    /// A client for auth_type 16 (raw AP-REQ) or 9 (SPNEGO around a framed one), whose
    /// authenticator says `now`; `seed` drives its subkey, cusec and seq-number.
    pub fn new(auth_type: AuthType, ticket: Credentials, now: Seconds, seed: u64) -> Self {
        KerberosSecurity {
            leg: ClientLeg {
                auth_type,
                ticket,
                now,
                rng: SeededRng::new(seed),
                state: ClientState::Start,
                third_leg_in_auth3: false,
            },
            protection: None,
        }
    }

    /// Sends auth_type 16's third leg in an auth3, which gets no reply: the Windows RPC
    /// runtime does so when the mechanism says it is complete after its last token (the
    /// server accepts either PDU). SPNEGO (9) keeps the alter_context.
    pub fn third_leg_in_auth3(mut self) -> Self {
        self.leg.third_leg_in_auth3 = self.leg.auth_type == AuthType::KERBEROS;
        self
    }

    fn spnego(&self) -> bool {
        self.leg.auth_type == AuthType::SPNEGO
    }

    fn out_of_order(&self, what: &str) -> SecurityError {
        SecurityError::BadToken(format!(
            "{what} in Kerberos client state {:?}",
            self.leg.state
        ))
    }

    fn inner_token(&self, token: &[u8]) -> Result<spnego::NegTokenResp, SecurityError> {
        let resp = spnego::read_resp(token).map_err(|e| SecurityError::BadToken(e.to_string()))?;
        if resp.state == Some(spnego::REJECT) {
            return Err(refused(err::GENERIC, "SPNEGO reject"));
        }
        Ok(resp)
    }
}

impl ClientSecurity for KerberosClientSecurity {
    fn auth_type(&self) -> AuthType {
        self.leg.auth_type
    }

    fn initial_token(&mut self) -> Result<Vec<u8>, SecurityError> {
        if !matches!(self.leg.state, ClientState::Start) {
            return Err(self.out_of_order("initial token"));
        }
        let spnego = self.spnego();
        let (token, ctx) = gss::initiate(
            &self.leg.ticket,
            CLIENT_FLAGS,
            None,
            !spnego,
            self.leg.now,
            &mut self.leg.rng,
        );
        self.leg.state = ClientState::AwaitingApRep(Box::new(ctx));
        Ok(if spnego {
            spnego::write_init(&spnego::NegTokenInit {
                mech_types: vec![KRB5_OID.to_vec()],
                mech_token: Some(token),
            })
        } else {
            token
        })
    }

    fn step(&mut self, token: &[u8]) -> Result<ClientStep, SecurityError> {
        let state = std::mem::replace(&mut self.leg.state, ClientState::Failed);
        match state {
            ClientState::AwaitingApRep(ctx) => {
                let ap_rep = if self.spnego() {
                    self.inner_token(token)?
                        .response_token
                        .ok_or_else(|| refused(err::GENERIC, "NegTokenResp without the AP-REP"))?
                } else {
                    token.to_vec()
                };
                let parts = ctx
                    .read_reply_parts(&ap_rep)
                    .map_err(SecurityError::Kerberos)?;
                let acceptor_seq = parts
                    .seq
                    .ok_or_else(|| refused(err::GENERIC, "AP-REP without a seq-number"))?;
                let (key, acceptor_subkey) =
                    context_key(&ctx.session, Some(&ctx.subkey), parts.subkey.as_ref());
                let cfx = Cfx::new(
                    key,
                    false,
                    acceptor_subkey,
                    u64::from(ctx.seq),
                    u64::from(acceptor_seq),
                );
                self.protection = Some(Protection { cfx, broken: false });
                let third = ctx.dce_reply(acceptor_seq, self.leg.now, &mut self.leg.rng);
                let token = if self.spnego() {
                    spnego::write_resp(&spnego::NegTokenResp {
                        state: None,
                        supported_mech: None,
                        response_token: Some(third),
                    })
                } else {
                    third
                };
                let expects_reply = !self.leg.third_leg_in_auth3;
                self.leg.state = if expects_reply {
                    ClientState::AwaitingClose
                } else {
                    ClientState::Established
                };
                Ok(ClientStep::Send {
                    token,
                    expects_reply,
                })
            }
            ClientState::AwaitingClose => {
                let done = if self.spnego() {
                    self.inner_token(token)?.state == Some(spnego::ACCEPT_COMPLETED)
                } else {
                    token.is_empty()
                };
                if !done {
                    return Err(SecurityError::BadToken(
                        "the closing alter_context_resp carries an unexpected token".into(),
                    ));
                }
                self.leg.state = ClientState::Established;
                Ok(ClientStep::Done)
            }
            other => {
                self.leg.state = other;
                let e = self.out_of_order("server token");
                self.leg.state = ClientState::Failed;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests;
