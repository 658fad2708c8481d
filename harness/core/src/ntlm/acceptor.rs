//! The server side of NTLM ([MS-NLMP] §3.2): answers NEGOTIATE with a CHALLENGE, then
//! checks the AUTHENTICATE response against the password the directory holds.

use super::crypto::{self, ct_eq};
use super::messages::{
    zero_mic, AuthenticateMessage, AvId, AvPair, ChallengeMessage, NegotiateFlags,
    NegotiateMessage, NtlmV2Response, Version,
};
use super::{AcceptorConfig, Authenticated, NtlmError, ResponseKind};

/// The Version the acceptor reports (Windows Server 2019, 10.0.17763, NTLM revision 15).
pub const SERVER_VERSION: Version = Version {
    major: 10,
    minor: 0,
    build: 17763,
    revision: Version::REVISION_W2K3,
};

#[derive(Debug, Clone)]
enum State {
    AwaitingNegotiate,
    AwaitingAuthenticate {
        negotiate: Vec<u8>,
        challenge: Vec<u8>,
        flags: NegotiateFlags,
    },
    Finished,
}

/// One server-side NTLM exchange. Single use: after `handle_authenticate` (success or
/// not) it refuses further messages.
#[derive(Debug, Clone)]
pub struct NtlmAcceptor {
    config: AcceptorConfig,
    server_challenge: [u8; 8],
    filetime: u64,
    state: State,
}

/// The flags a CHALLENGE answers `client` with ([MS-NLMP] §3.2.5.1.1): the server always
/// supplies a target name and target info, chooses UNICODE over OEM, prefers extended
/// session security to LM_KEY (never offered), and echoes the rest it supports (SIGN and
/// SEAL too, which DCE/RPC clients ask for at packet integrity and privacy).
pub fn choose_flags(client: NegotiateFlags) -> NegotiateFlags {
    use NegotiateFlags as F;
    let mut f = F::NTLM | F::TARGET_INFO | F::REQUEST_TARGET | F::TARGET_TYPE_DOMAIN;
    if client.contains(F::UNICODE) {
        f = f | F::UNICODE;
    } else {
        f = f | F::OEM;
    }
    for echo in [
        F::SIGN,
        F::SEAL,
        F::EXTENDED_SESSIONSECURITY,
        F::ALWAYS_SIGN,
        F::NEGOTIATE_128,
        F::NEGOTIATE_56,
        F::KEY_EXCH,
        F::VERSION,
    ] {
        if client.contains(echo) {
            f = f | echo;
        }
    }
    f
}

impl NtlmAcceptor {
    /// `filetime` (100 ns ticks since 1601) goes into MsvAvTimestamp.
    pub fn new(config: AcceptorConfig, server_challenge: [u8; 8], filetime: u64) -> Self {
        NtlmAcceptor {
            config,
            server_challenge,
            filetime,
            state: State::AwaitingNegotiate,
        }
    }

    /// True once a NEGOTIATE was accepted (the next message is AUTHENTICATE).
    pub fn has_negotiated(&self) -> bool {
        matches!(self.state, State::AwaitingAuthenticate { .. })
    }

    pub fn server_challenge(&self) -> [u8; 8] {
        self.server_challenge
    }

    /// Parses NEGOTIATE and returns the encoded CHALLENGE.
    pub fn handle_negotiate(&mut self, negotiate: &[u8]) -> Result<Vec<u8>, NtlmError> {
        if !matches!(self.state, State::AwaitingNegotiate) {
            return Err(NtlmError::OutOfSequence {
                expected: self.expected(),
                got: "NEGOTIATE",
            });
        }
        self.state = State::Finished;
        let neg = NegotiateMessage::decode(negotiate)?;
        let flags = choose_flags(neg.flags);
        let c = &self.config;
        let challenge = ChallengeMessage {
            flags,
            target_name: c.nb_domain.clone(),
            server_challenge: self.server_challenge,
            target_info: Some(vec![
                AvPair::string(AvId::NB_DOMAIN_NAME, &c.nb_domain),
                AvPair::string(AvId::NB_COMPUTER_NAME, &c.nb_computer),
                AvPair::string(AvId::DNS_DOMAIN_NAME, &c.dns_domain),
                AvPair::string(AvId::DNS_COMPUTER_NAME, &c.dns_computer),
                AvPair::timestamp(self.filetime),
            ]),
            version: flags
                .contains(NegotiateFlags::VERSION)
                .then_some(SERVER_VERSION),
        };
        let bytes = challenge.encode();
        self.state = State::AwaitingAuthenticate {
            negotiate: negotiate.to_vec(),
            challenge: bytes.clone(),
            flags,
        };
        Ok(bytes)
    }

    fn expected(&self) -> &'static str {
        match self.state {
            State::AwaitingNegotiate => "NEGOTIATE",
            State::AwaitingAuthenticate { .. } => "AUTHENTICATE",
            State::Finished => "nothing (exchange finished)",
        }
    }

    /// Verifies AUTHENTICATE. `password_for(user, domain)` returns the cleartext password
    /// of the user the client names (None: unknown user). The responses are recomputed
    /// with exactly the user and domain the client sent ([MS-NLMP] §3.3.2).
    pub fn handle_authenticate(
        &mut self,
        authenticate: &[u8],
        password_for: &dyn Fn(&str, &str) -> Option<String>,
    ) -> Result<Authenticated, NtlmError> {
        let state = std::mem::replace(&mut self.state, State::Finished);
        let State::AwaitingAuthenticate {
            negotiate,
            challenge,
            flags: challenge_flags,
        } = state
        else {
            let expected = match state {
                State::AwaitingNegotiate => "NEGOTIATE",
                _ => "nothing (exchange finished)",
            };
            self.state = state;
            return Err(NtlmError::OutOfSequence {
                expected,
                got: "AUTHENTICATE",
            });
        };
        let auth = AuthenticateMessage::decode(authenticate)?;
        // Only what both sides agreed to counts.
        let flags = challenge_flags.intersection(auth.flags);

        let anonymous_lm = auth.lm_response.is_empty() || auth.lm_response == [0];
        if auth.flags.contains(NegotiateFlags::ANONYMOUS)
            || auth.user.is_empty()
            || (auth.nt_response.is_empty() && anonymous_lm)
        {
            return Err(NtlmError::AnonymousRefused);
        }
        if auth.nt_response.is_empty() {
            return Err(NtlmError::NoNtResponse);
        }
        let sc = &self.server_challenge;

        let (kind, session_base_key, key_exchange_key) = match auth.nt_response.len() {
            24 => {
                let password =
                    password_for(&auth.user, &auth.domain).ok_or(NtlmError::UnknownUser)?;
                let (kind, expected) = if flags.contains(NegotiateFlags::EXTENDED_SESSIONSECURITY) {
                    let cc: [u8; 8] = auth
                        .lm_response
                        .get(..8)
                        .and_then(|b| b.try_into().ok())
                        .ok_or(NtlmError::BadLmResponseLength(auth.lm_response.len()))?;
                    (
                        ResponseKind::V1ExtendedSessionSecurity,
                        crypto::ntlm_v1_ess(&password, sc, &cc),
                    )
                } else {
                    (ResponseKind::V1, crypto::ntlm_v1(&password, sc))
                };
                if !ct_eq(&expected.nt, &auth.nt_response) {
                    return Err(NtlmError::WrongPassword);
                }
                let kx = crypto::kxkey_v1(
                    flags,
                    &expected.session_base_key,
                    &auth.lm_response,
                    sc,
                    &crypto::lmowf_v1(&password),
                );
                (kind, expected.session_base_key, kx)
            }
            n if n > 24 => {
                let v2 = NtlmV2Response::parse(&auth.nt_response)?;
                let password =
                    password_for(&auth.user, &auth.domain).ok_or(NtlmError::UnknownUser)?;
                let key = crypto::ntowf_v2(&password, &auth.user, &auth.domain);
                let proof = crypto::nt_proof_str(&key, sc, v2.temp);
                if !ct_eq(&proof, &v2.nt_proof_str) {
                    return Err(NtlmError::WrongPassword);
                }
                let sbk = crypto::hmac_md5(&key, &[&proof]);
                (ResponseKind::V2, sbk, sbk)
            }
            n => return Err(NtlmError::BadNtResponseLength(n)),
        };

        // [MS-NLMP] §3.2.5.1.2: ExportedSessionKey from the key exchange.
        let exported = if flags.contains(NegotiateFlags::KEY_EXCH)
            && !auth.encrypted_random_session_key.is_empty()
        {
            let enc: [u8; 16] = auth
                .encrypted_random_session_key
                .as_slice()
                .try_into()
                .map_err(|_| {
                    NtlmError::BadSessionKeyLength(auth.encrypted_random_session_key.len())
                })?;
            crypto::rc4_16(&key_exchange_key, &enc)
        } else {
            key_exchange_key
        };

        if let Some(mic) = auth.mic {
            let zeroed = zero_mic(authenticate).ok_or(NtlmError::MicOverlapsPayload)?;
            let expected = crypto::mic(&exported, &negotiate, &challenge, &zeroed);
            if !ct_eq(&expected, &mic) {
                return Err(NtlmError::MicMismatch);
            }
        }

        Ok(Authenticated {
            user: auth.user,
            domain: auth.domain,
            workstation: auth.workstation,
            kind,
            session_base_key,
            exported_session_key: exported,
            flags,
        })
    }
}
