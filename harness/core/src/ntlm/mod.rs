//! NTLM ([MS-NLMP]): message codecs (`messages`, a re-export of `harness_wire::ntlm`,
//! where the wire format lives), the cryptography (`crypto`), the
//! acceptor (server, `acceptor`) and the initiator (client, `initiator`).
//!
//! Messages are decoded defensively: a message above 64 KiB is refused before anything
//! else, every field descriptor is checked against the buffer, and a wrong password never
//! authenticates (NTLMv1, NTLMv1 with extended session security, NTLMv2 are all
//! recomputed; anonymous and LM-only responses are refused; a MIC is verified).

pub mod acceptor;
pub mod crypto;
pub mod initiator;
pub mod messages;

#[cfg(test)]
mod tests;

pub use acceptor::NtlmAcceptor;
pub use initiator::{Credentials, InitiatorOptions, NtlmInitiator};
pub use messages::{
    AuthenticateMessage, AvId, AvPair, ChallengeMessage, Message, MessageType, NegotiateFlags,
    NegotiateMessage, NtlmError, Version, MAX_MESSAGE_LEN,
};

/// Names the acceptor puts in its CHALLENGE target info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptorConfig {
    pub nb_domain: String,
    pub nb_computer: String,
    pub dns_domain: String,
    pub dns_computer: String,
}

/// Which response the client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    V1,
    V1ExtendedSessionSecurity,
    V2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub user: String,
    pub domain: String,
    pub workstation: String,
    pub kind: ResponseKind,
    pub session_base_key: [u8; 16],
    /// The key message security derives its signing and sealing keys from ([MS-NLMP]
    /// 3.2.5.1.2): the client's random session key under KEY_EXCH, else the
    /// KeyExchangeKey.
    pub exported_session_key: [u8; 16],
    /// What both sides agreed to: the CHALLENGE's flags that the AUTHENTICATE kept.
    pub flags: NegotiateFlags,
}

/// Fuzz entry point: decode any message; when that works, encoding and decoding again must
/// give the same message.
pub fn fuzz_decode(data: &[u8]) {
    if let Ok(m) = Message::decode(data) {
        let again = Message::decode(&m.encode());
        assert_eq!(again.as_ref(), Ok(&m), "round trip changed the message");
    }
}

/// The one account `fuzz_handshake` knows.
const FUZZ_USER: &str = "alice";
const FUZZ_PASSWORD: &str = "secret";

/// Fuzz entry point: an initiator and an acceptor talk while `data` tampers with the
/// messages in transit. `data[0]` picks the response kind, MIC and whether the client
/// knows the right password; the rest is read in 4-byte groups `[target, pos_lo, pos_hi,
/// value]` (target % 4: 0 XOR into NEGOTIATE, 1 CHALLENGE, 2 AUTHENTICATE, 3 truncate
/// AUTHENTICATE to pos). Asserts: nothing panics, a wrong password never authenticates,
/// and an untampered exchange with the right password always does.
pub fn fuzz_handshake(data: &[u8]) {
    let sel = data.first().copied().unwrap_or(0);
    let prefer = match sel % 3 {
        0 => ResponseKind::V1,
        1 => ResponseKind::V1ExtendedSessionSecurity,
        _ => ResponseKind::V2,
    };
    let send_mic = sel & 0x04 != 0;
    let wrong_password = sel & 0x08 != 0;
    let mut tampers: [Vec<(usize, u8)>; 3] = Default::default();
    let mut truncate = None;
    for g in data.get(1..).unwrap_or_default().chunks_exact(4) {
        let pos = usize::from(u16::from_le_bytes([g[1], g[2]]));
        match g[0] % 4 {
            3 => truncate = Some(pos),
            t => tampers[usize::from(t)].push((pos, g[3])),
        }
    }
    let tampered = truncate.is_some() || tampers.iter().any(|t| t.iter().any(|&(_, v)| v != 0));
    let apply = |msg: &mut Vec<u8>, edits: &[(usize, u8)]| {
        for &(pos, v) in edits {
            if let Some(b) = msg.get_mut(pos) {
                *b ^= v;
            }
        }
    };

    let password = if wrong_password {
        "Secret"
    } else {
        FUZZ_PASSWORD
    };
    let mut client = NtlmInitiator::new(
        Credentials::example(FUZZ_USER, password),
        InitiatorOptions::fixed(0xC1, 0x5A, prefer, send_mic),
    );
    let mut server = NtlmAcceptor::new(
        AcceptorConfig {
            nb_domain: "EXAMPLE".into(),
            nb_computer: "MAIL".into(),
            dns_domain: "example.test".into(),
            dns_computer: "mail.example.test".into(),
        },
        [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88],
        133_000_000_000_000_000,
    );
    let lookup = |user: &str, _domain: &str| -> Option<String> {
        user.eq_ignore_ascii_case(FUZZ_USER)
            .then(|| FUZZ_PASSWORD.to_string())
    };

    let mut neg = client.negotiate();
    apply(&mut neg, &tampers[0]);
    let Ok(mut chal) = server.handle_negotiate(&neg) else {
        assert!(tampered, "untampered NEGOTIATE refused");
        return;
    };
    apply(&mut chal, &tampers[1]);
    let Ok(mut auth) = client.handle_challenge(&chal) else {
        assert!(tampered, "untampered CHALLENGE refused");
        return;
    };
    apply(&mut auth, &tampers[2]);
    if let Some(n) = truncate {
        auth.truncate(n);
    }
    let result = server.handle_authenticate(&auth, &lookup);
    if wrong_password {
        assert!(result.is_err(), "wrong password authenticated: {result:?}");
    } else if !tampered {
        assert!(result.is_ok(), "untampered exchange failed: {result:?}");
    }
    // Whatever happened, the acceptor is finished.
    assert!(server.handle_authenticate(&auth, &lookup).is_err());
}
