//! The client side of NTLM ([MS-NLMP] §3.1), for the test driver and the fuzz targets.
//! Deterministic: the client challenge and the random session key come from the caller.

use super::crypto;
use super::messages::{
    encode_av_pairs, find_av, AuthenticateMessage, AvId, AvPair, ChallengeMessage, NegotiateFlags,
    NegotiateMessage, Version, AV_FLAG_MIC_PRESENT,
};
use super::{NtlmError, ResponseKind};

/// Who the client claims to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    pub domain: String,
    pub workstation: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitiatorOptions {
    pub client_challenge: [u8; 8],
    pub random_session_key: [u8; 16],
    /// The response to send when the server allows it: V2 needs target info, V1 with
    /// ESS needs the ESS flag; otherwise the client falls back to plain V1.
    pub prefer: ResponseKind,
    /// Add MsvAvFlags 0x2 and a MIC (NTLMv2 only).
    pub send_mic: bool,
}

impl Credentials {
    /// No credentials: what SSPI offers for a logon session that holds none (a network
    /// logon on a web server). The AUTHENTICATE message is anonymous.
    pub fn anonymous() -> Self {
        Credentials {
            user: String::new(),
            password: String::new(),
            domain: String::new(),
            workstation: "WS".into(),
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.user.is_empty() && self.password.is_empty()
    }

    /// `user` with `password` in domain EXAMPLE on workstation WS: the account shape of
    /// the tests and fuzz targets.
    pub fn example(user: &str, password: &str) -> Self {
        Credentials {
            user: user.into(),
            password: password.into(),
            domain: "EXAMPLE".into(),
            workstation: "WS".into(),
        }
    }
}

impl InitiatorOptions {
    /// Options whose random values are fixed (the client challenge and the session key
    /// filled with one octet each), so that a run replays byte for byte: tests and fuzz
    /// targets.
    pub fn fixed(challenge: u8, session_key: u8, prefer: ResponseKind, send_mic: bool) -> Self {
        InitiatorOptions {
            client_challenge: [challenge; 8],
            random_session_key: [session_key; 16],
            prefer,
            send_mic,
        }
    }
}

/// The Version the initiator reports (Windows 10 19045).
pub const CLIENT_VERSION: Version = Version {
    major: 10,
    minor: 0,
    build: 19045,
    revision: Version::REVISION_W2K3,
};

#[derive(Debug, Clone)]
pub struct NtlmInitiator {
    creds: Credentials,
    opts: InitiatorOptions,
    negotiate: Option<Vec<u8>>,
    done: bool,
    kind: Option<ResponseKind>,
    exported_session_key: Option<[u8; 16]>,
    /// Flags asked for beyond the defaults, and defaults not asked for.
    add_flags: NegotiateFlags,
    drop_flags: NegotiateFlags,
    flags: Option<NegotiateFlags>,
}

impl NtlmInitiator {
    pub fn new(creds: Credentials, opts: InitiatorOptions) -> Self {
        NtlmInitiator {
            creds,
            opts,
            negotiate: None,
            done: false,
            kind: None,
            exported_session_key: None,
            add_flags: NegotiateFlags(0),
            drop_flags: NegotiateFlags(0),
            flags: None,
        }
    }

    /// Asks for `add` on top of the default flags and leaves out `drop`: a DCE/RPC client
    /// adds SIGN and SEAL; tests drop KEY_EXCH or EXTENDED_SESSIONSECURITY.
    pub fn requesting(mut self, add: NegotiateFlags, drop: NegotiateFlags) -> Self {
        self.add_flags = add;
        self.drop_flags = drop;
        self
    }

    fn requested_flags(&self) -> NegotiateFlags {
        use NegotiateFlags as F;
        let mut f = F::UNICODE
            | F::OEM
            | F::REQUEST_TARGET
            | F::NTLM
            | F::ALWAYS_SIGN
            | F::NEGOTIATE_128
            | F::NEGOTIATE_56
            | F::KEY_EXCH
            | F::VERSION;
        if self.opts.prefer != ResponseKind::V1 {
            f = f | F::EXTENDED_SESSIONSECURITY;
        }
        f = f | self.add_flags;
        f.set(self.drop_flags, false);
        f
    }

    /// The NEGOTIATE message (remembered for the MIC).
    pub fn negotiate(&mut self) -> Vec<u8> {
        let msg = NegotiateMessage {
            flags: self.requested_flags(),
            domain: String::new(),
            workstation: String::new(),
            version: Some(CLIENT_VERSION),
        };
        let bytes = msg.encode();
        self.negotiate = Some(bytes.clone());
        bytes
    }

    /// The response kind chosen by `handle_challenge`.
    pub fn kind(&self) -> Option<ResponseKind> {
        self.kind
    }

    /// The flags the AUTHENTICATE message carries (what message security runs under),
    /// once it is built.
    pub fn negotiated_flags(&self) -> Option<NegotiateFlags> {
        self.flags
    }

    /// The ExportedSessionKey, once the AUTHENTICATE message is built.
    pub fn exported_session_key(&self) -> Option<[u8; 16]> {
        self.exported_session_key
    }

    /// Answers a CHALLENGE with the AUTHENTICATE message.
    pub fn handle_challenge(&mut self, challenge: &[u8]) -> Result<Vec<u8>, NtlmError> {
        let Some(negotiate) = self.negotiate.clone() else {
            return Err(NtlmError::OutOfSequence {
                expected: "negotiate() first",
                got: "CHALLENGE",
            });
        };
        if self.done {
            return Err(NtlmError::OutOfSequence {
                expected: "nothing (exchange finished)",
                got: "CHALLENGE",
            });
        }
        self.done = true;
        let chal = ChallengeMessage::decode(challenge)?;
        use NegotiateFlags as F;
        let mut flags = chal.flags.intersection(self.requested_flags());
        let unicode = chal.flags.contains(F::UNICODE);
        flags.set(F::UNICODE, unicode);
        flags.set(F::OEM, !unicode);

        let c = &self.creds;
        let sc = &chal.server_challenge;
        let cc = &self.opts.client_challenge;
        let kind = match (&chal.target_info, self.opts.prefer) {
            (Some(_), ResponseKind::V2) => ResponseKind::V2,
            (_, ResponseKind::V1) => ResponseKind::V1,
            _ if flags.contains(F::EXTENDED_SESSIONSECURITY) => {
                ResponseKind::V1ExtendedSessionSecurity
            }
            _ => ResponseKind::V1,
        };
        if kind == ResponseKind::V1 {
            flags.set(F::EXTENDED_SESSIONSECURITY, false);
        }
        let mut with_mic = false;
        let anonymous = c.is_anonymous();
        if anonymous {
            flags = flags | F::ANONYMOUS;
        }
        let (lm, nt, kx) = match kind {
            // [MS-NLMP] 3.1.5.1.2: with no user name and password, NtChallengeResponse is
            // empty, LmChallengeResponse Z(1) and the session base key zeros.
            _ if anonymous => (vec![0u8], Vec::new(), [0u8; 16]),
            ResponseKind::V2 => {
                let mut pairs = chal.target_info.clone().unwrap_or_default();
                let timestamp = find_av(&pairs, AvId::TIMESTAMP).and_then(AvPair::as_u64);
                if self.opts.send_mic {
                    with_mic = true;
                    match pairs.iter_mut().find(|p| p.id == AvId::FLAGS) {
                        Some(p) => {
                            let old = p.as_u32().unwrap_or(0);
                            *p = AvPair::flags(old | AV_FLAG_MIC_PRESENT);
                        }
                        None => pairs.push(AvPair::flags(AV_FLAG_MIC_PRESENT)),
                    }
                }
                let key = crypto::ntowf_v2(&c.password, &c.user, &c.domain);
                let r = crypto::ntlm_v2(
                    &key,
                    sc,
                    cc,
                    timestamp.unwrap_or(0),
                    &encode_av_pairs(&pairs),
                );
                // [MS-NLMP] §3.1.5.1.2: with a server timestamp the LM response is zeros.
                let lm = if timestamp.is_some() { [0u8; 24] } else { r.lm };
                (lm.to_vec(), r.nt, r.session_base_key)
            }
            ResponseKind::V1ExtendedSessionSecurity | ResponseKind::V1 => {
                let r = if kind == ResponseKind::V1 {
                    crypto::ntlm_v1(&c.password, sc)
                } else {
                    crypto::ntlm_v1_ess(&c.password, sc, cc)
                };
                let kx = crypto::kxkey_v1(
                    flags,
                    &r.session_base_key,
                    &r.lm,
                    sc,
                    &crypto::lmowf_v1(&c.password),
                );
                (r.lm.to_vec(), r.nt.to_vec(), kx)
            }
        };
        let (encrypted, exported) = if flags.contains(F::KEY_EXCH) {
            let rsk = self.opts.random_session_key;
            (crypto::rc4_16(&kx, &rsk).to_vec(), rsk)
        } else {
            (Vec::new(), kx)
        };
        let mut msg = AuthenticateMessage {
            flags,
            lm_response: lm,
            nt_response: nt,
            domain: c.domain.clone(),
            user: c.user.clone(),
            workstation: c.workstation.clone(),
            encrypted_random_session_key: encrypted,
            version: flags.contains(F::VERSION).then_some(CLIENT_VERSION),
            mic: with_mic.then_some([0u8; 16]),
        };
        let mut bytes = msg.encode();
        if with_mic {
            // The MIC covers the message with its own field zeroed, as just encoded.
            msg.mic = Some(crypto::mic(&exported, &negotiate, challenge, &bytes));
            bytes = msg.encode();
        }
        self.kind = Some(kind);
        self.exported_session_key = Some(exported);
        self.flags = Some(flags);
        Ok(bytes)
    }
}
