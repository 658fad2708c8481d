use super::fuzz::{established_pair, request_pdu, test_factory, TEST_PASSWORD, TEST_USER};
use super::*;

use crate::ntlm::crypto::SIGNATURE_LEN;

/// Every way the legs can end: the response kind and whether KEY_EXCH stays on.
const SETUPS: [(ResponseKind, bool); 6] = [
    (ResponseKind::V1, true),
    (ResponseKind::V1, false),
    (ResponseKind::V1ExtendedSessionSecurity, true),
    (ResponseKind::V1ExtendedSessionSecurity, false),
    (ResponseKind::V2, true),
    (ResponseKind::V2, false),
];

fn pair(prefer: ResponseKind, key_exch: bool) -> (NtlmClientSecurity, NtlmServerSecurity) {
    let drop = if key_exch {
        NegotiateFlags(0)
    } else {
        NegotiateFlags::KEY_EXCH
    };
    established_pair(prefer, drop, TEST_PASSWORD)
        .unwrap_or_else(|| panic!("{prefer:?} key_exch={key_exch}: legs failed"))
}

fn stub_of(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add(i as u8 * 3)).collect()
}

/// Wraps a request of `stub` on `from`, checks what goes on the wire, unwraps it on `to`
/// and checks the plaintext comes back. Returns the wire octets and the signature.
#[track_caller]
fn send(
    from: &mut dyn MessageProtection,
    to: &mut dyn MessageProtection,
    level: AuthLevel,
    call_id: u32,
    stub: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let (mut pdu, range) = request_pdu(call_id, stub, level);
    let plain = pdu.clone();
    let signature = from.wrap(level, &mut pdu, range.clone()).unwrap();
    assert_eq!(signature.len(), SIGNATURE_LEN);
    assert_eq!(from.signature_len(AuthLevel::PKT_INTEGRITY), SIGNATURE_LEN);
    assert_eq!(signature[..4], [1, 0, 0, 0]);
    if level == AuthLevel::PKT_PRIVACY {
        assert_eq!(pdu[..range.start], plain[..range.start], "header sealed");
        assert_eq!(pdu[range.end..], plain[range.end..], "trailer sealed");
        if !stub.is_empty() {
            assert_ne!(pdu[range.clone()], plain[range.clone()], "stub not sealed");
        }
    } else {
        assert_eq!(pdu, plain, "signing changed the PDU");
    }
    let wire = pdu.clone();
    to.unwrap(level, &mut pdu, range, &signature)
        .unwrap_or_else(|e| panic!("call {call_id} at {level:?}: {e}"));
    assert_eq!(pdu, plain, "unwrap gave another plaintext");
    (wire, signature)
}

#[test]
fn many_pdus_both_directions_at_every_protecting_level() {
    for (prefer, key_exch) in SETUPS {
        for level in [
            AuthLevel::CALL,
            AuthLevel::PKT,
            AuthLevel::PKT_INTEGRITY,
            AuthLevel::PKT_PRIVACY,
        ] {
            let (mut client, mut server) = pair(prefer, key_exch);
            let flags = client.leg.initiator.negotiated_flags().unwrap();
            assert_eq!(flags.contains(NegotiateFlags::KEY_EXCH), key_exch);
            assert_eq!(
                flags.contains(NegotiateFlags::EXTENDED_SESSIONSECURITY),
                prefer != ResponseKind::V1
            );
            assert!(flags.contains(NegotiateFlags::SIGN | NegotiateFlags::SEAL));
            let mut seen = Vec::new();
            for call in 0..12u32 {
                let stub = stub_of(call as usize * 5, call as u8);
                let (wire, sig) = if call % 3 == 2 {
                    send(&mut server, &mut client, level, call, &stub)
                } else {
                    send(&mut client, &mut server, level, call, &stub)
                };
                seen.push(sig);
                let _ = wire;
            }
            // Signatures never repeat (sequence numbers and the handle move on).
            for (i, a) in seen.iter().enumerate() {
                assert!(!seen[i + 1..].contains(a), "{prefer:?} {level:?}: repeated");
            }
            // Bursts in one direction, then the other.
            for call in 12..16 {
                send(&mut client, &mut server, level, call, b"burst");
            }
            for call in 16..20 {
                send(&mut server, &mut client, level, call, b"burst back");
            }
        }
    }
}

#[test]
fn both_sides_agree_on_flags_and_key() {
    for (prefer, key_exch) in SETUPS {
        let mut client = NtlmInitiator::new(
            Credentials::example(TEST_USER, TEST_PASSWORD),
            InitiatorOptions::fixed(0xC1, 0x5A, prefer, false),
        )
        .requesting(
            NegotiateFlags::SIGN | NegotiateFlags::SEAL,
            if key_exch {
                NegotiateFlags(0)
            } else {
                NegotiateFlags::KEY_EXCH
            },
        );
        let mut acceptor = NtlmAcceptor::new(test_factory().config.clone(), [9; 8], 0);
        let challenge = acceptor.handle_negotiate(&client.negotiate()).unwrap();
        assert_eq!(client.negotiated_flags(), None);
        let auth = client.handle_challenge(&challenge).unwrap();
        let done = acceptor
            .handle_authenticate(&auth, &|_, _| Some(TEST_PASSWORD.into()))
            .unwrap();
        assert_eq!(Some(done.flags), client.negotiated_flags());
        assert_eq!(
            Some(done.exported_session_key),
            client.exported_session_key()
        );
        assert_eq!(done.kind, prefer);
        if key_exch {
            assert_eq!(done.exported_session_key, [0x5A; 16]);
        } else {
            assert_ne!(done.exported_session_key, [0x5A; 16]);
        }
    }
}

#[test]
fn server_legs_and_principal() {
    let factory = test_factory();
    let mut server = factory.new_ntlm_context();
    assert_eq!(server.auth_type(), AuthType::NTLMSSP);
    assert_eq!(server.principal(), None);
    let mut client = NtlmClientSecurity::new(
        Credentials::example("Alice", TEST_PASSWORD),
        InitiatorOptions::fixed(1, 2, ResponseKind::V2, true),
    );
    assert_eq!(client.auth_type(), AuthType::NTLMSSP);
    let negotiate = client.initial_token().unwrap();
    let AcceptStep::Continue(challenge) = server.accept(&negotiate).unwrap() else {
        panic!("NEGOTIATE did not continue");
    };
    assert!(crate::ntlm::ChallengeMessage::decode(&challenge)
        .unwrap()
        .flags
        .contains(NegotiateFlags::SIGN | NegotiateFlags::SEAL));
    assert_eq!(server.principal(), None);
    let ClientStep::Send {
        token,
        expects_reply,
    } = client.step(&challenge).unwrap()
    else {
        panic!("CHALLENGE gave no AUTHENTICATE");
    };
    assert!(!expects_reply);
    let principal = Principal {
        auth_type: AuthType::NTLMSSP,
        user: "Alice".into(),
        domain: "EXAMPLE".into(),
        workstation: "WS".into(),
    };
    assert_eq!(
        server.accept(&token),
        Ok(AcceptStep::Done {
            reply: None,
            principal: principal.clone()
        })
    );
    assert_eq!(server.principal(), Some(&principal));
    assert!(format!("{server:?}").contains("Alice"));
    send(
        &mut client,
        &mut server,
        AuthLevel::PKT_PRIVACY,
        1,
        b"sealed",
    );
    // Nothing follows an established context.
    assert!(matches!(
        server.accept(&token),
        Err(SecurityError::BadToken(_))
    ));
    assert!(matches!(
        client.step(&challenge),
        Err(SecurityError::BadToken(_))
    ));
    send(
        &mut server,
        &mut client,
        AuthLevel::PKT_PRIVACY,
        1,
        b"still in step",
    );
}

#[test]
fn wrong_password_and_unknown_user_are_logon_failures() {
    for (user, password) in [(TEST_USER, "Secret"), ("mallory", TEST_PASSWORD)] {
        for prefer in [ResponseKind::V1, ResponseKind::V2] {
            let mut client = NtlmClientSecurity::new(
                Credentials::example(user, password),
                InitiatorOptions::fixed(1, 2, prefer, false),
            );
            let mut server = test_factory().new_ntlm_context();
            let AcceptStep::Continue(challenge) =
                server.accept(&client.initial_token().unwrap()).unwrap()
            else {
                panic!("no challenge");
            };
            let ClientStep::Send { token, .. } = client.step(&challenge).unwrap() else {
                panic!("no authenticate");
            };
            assert!(
                matches!(server.accept(&token), Err(SecurityError::LogonFailed(_))),
                "{user}/{password}"
            );
            assert_eq!(server.principal(), None);
            let (mut pdu, range) = request_pdu(1, b"x", AuthLevel::PKT_INTEGRITY);
            assert_eq!(
                server.wrap(AuthLevel::PKT_INTEGRITY, &mut pdu, range.clone()),
                Err(SecurityError::NotEstablished)
            );
            let signature = client
                .wrap(AuthLevel::PKT_INTEGRITY, &mut pdu, range.clone())
                .unwrap();
            assert_eq!(
                server.unwrap(AuthLevel::PKT_INTEGRITY, &mut pdu, range, &signature),
                Err(SecurityError::NotEstablished)
            );
            // The exchange is over: the same AUTHENTICATE again is out of order.
            assert!(matches!(
                server.accept(&token),
                Err(SecurityError::BadToken(_))
            ));
        }
    }
    assert!(established_pair(ResponseKind::V2, NegotiateFlags(0), "wrong").is_none());
}

#[test]
fn tokens_out_of_order_are_bad_tokens() {
    let bad = |r: Result<AcceptStep, SecurityError>| matches!(r, Err(SecurityError::BadToken(_)));
    let mut client = NtlmClientSecurity::new(
        Credentials::example(TEST_USER, TEST_PASSWORD),
        InitiatorOptions::fixed(1, 2, ResponseKind::V2, false),
    );
    // A CHALLENGE before the NEGOTIATE.
    let mut server = test_factory().new_ntlm_context();
    let negotiate = {
        let mut other = NtlmClientSecurity::new(
            Credentials::example(TEST_USER, TEST_PASSWORD),
            InitiatorOptions::fixed(1, 2, ResponseKind::V2, false),
        );
        other.initial_token().unwrap()
    };
    let AcceptStep::Continue(challenge) = server.accept(&negotiate).unwrap() else {
        panic!("no challenge");
    };
    assert!(matches!(
        client.step(&challenge),
        Err(SecurityError::BadToken(_))
    ));
    let negotiate = client.initial_token().unwrap();
    assert!(matches!(
        client.initial_token(),
        Err(SecurityError::BadToken(_))
    ));
    // A second NEGOTIATE where the AUTHENTICATE belongs.
    assert!(bad(server.accept(&negotiate)));
    assert!(bad(server.accept(&negotiate)));

    // An AUTHENTICATE first.
    let mut server = test_factory().new_ntlm_context();
    let AcceptStep::Continue(challenge) = test_factory()
        .new_ntlm_context()
        .accept(&negotiate)
        .unwrap()
    else {
        panic!("no challenge");
    };
    let ClientStep::Send { token, .. } = client.step(&challenge).unwrap() else {
        panic!("no authenticate");
    };
    assert!(bad(server.accept(&token)));
    assert!(
        bad(server.accept(&negotiate)),
        "a refused context stays refused"
    );
    assert!(bad(test_factory().new_ntlm_context().accept(b"garbage")));

    // A client given garbage for a CHALLENGE is finished.
    let mut client = NtlmClientSecurity::new(
        Credentials::example(TEST_USER, TEST_PASSWORD),
        InitiatorOptions::fixed(1, 2, ResponseKind::V2, false),
    );
    client.initial_token().unwrap();
    assert!(matches!(
        client.step(b"NTLMSSP\0garbage"),
        Err(SecurityError::BadToken(_))
    ));
    assert!(matches!(
        client.step(&challenge),
        Err(SecurityError::BadToken(_))
    ));
    let (mut pdu, range) = request_pdu(1, b"x", AuthLevel::PKT_PRIVACY);
    assert_eq!(
        client.wrap(AuthLevel::PKT_PRIVACY, &mut pdu, range.clone()),
        Err(SecurityError::NotEstablished)
    );
    assert_eq!(
        client.unwrap(AuthLevel::PKT_PRIVACY, &mut pdu, range, &[1; 16]),
        Err(SecurityError::NotEstablished)
    );
}

#[test]
fn factory_offers_ntlm_only_and_replays() {
    let factory = test_factory();
    for other in [
        AuthType::NONE,
        AuthType::SPNEGO,
        AuthType::KERBEROS,
        AuthType::SCHANNEL,
        AuthType::DEFAULT,
    ] {
        assert!(factory.new_context(other).is_none(), "{other:?}");
    }
    let challenge_of = |factory: &NtlmServerFactory| {
        let mut ctx = factory.new_context(AuthType::NTLMSSP).unwrap();
        assert_eq!(ctx.auth_type(), AuthType::NTLMSSP);
        let mut client = NtlmInitiator::new(
            Credentials::example(TEST_USER, TEST_PASSWORD),
            InitiatorOptions::fixed(1, 2, ResponseKind::V2, false),
        );
        let AcceptStep::Continue(c) = ctx.accept(&client.negotiate()).unwrap() else {
            panic!("no challenge");
        };
        crate::ntlm::ChallengeMessage::decode(&c).unwrap()
    };
    let first = challenge_of(&factory);
    let second = challenge_of(&factory);
    assert_ne!(first.server_challenge, second.server_challenge);
    // Same seed, same challenges, byte for byte.
    let again = test_factory();
    assert_eq!(challenge_of(&again), first);
    assert_eq!(challenge_of(&again), second);
    assert_eq!(
        first.server_challenge,
        SeededRng::new(15).bytes::<8>(),
        "challenges come from the seeded generator"
    );
    let timestamp = crate::ntlm::messages::find_av(
        first.target_info.as_deref().unwrap(),
        crate::ntlm::AvId::TIMESTAMP,
    )
    .and_then(crate::ntlm::AvPair::as_u64);
    assert_eq!(timestamp, Some(133_000_000_000_000_000));
}

#[test]
fn levels_without_per_pdu_protection_are_unsupported() {
    let (mut client, mut server) = pair(ResponseKind::V2, true);
    for level in [
        AuthLevel::DEFAULT,
        AuthLevel::NONE,
        AuthLevel::CONNECT,
        AuthLevel(7),
    ] {
        let (mut pdu, range) = request_pdu(1, b"stub", level);
        assert_eq!(
            client.wrap(level, &mut pdu, range.clone()),
            Err(SecurityError::UnsupportedLevel(level))
        );
        assert_eq!(
            server.unwrap(level, &mut pdu, range, &[0; 16]),
            Err(SecurityError::UnsupportedLevel(level))
        );
    }
    // None of that moved a sequence number or broke the context.
    send(
        &mut client,
        &mut server,
        AuthLevel::PKT_PRIVACY,
        1,
        b"after",
    );
    send(
        &mut server,
        &mut client,
        AuthLevel::PKT_INTEGRITY,
        1,
        b"after",
    );
}

/// Where a test changes one octet.
#[derive(Debug, Clone, Copy)]
enum Spot {
    Pdu(usize),
    Signature(usize),
}

/// One verified PDU, then a second one with `spot` flipped: the second's outcome.
fn tampered(
    prefer: ResponseKind,
    key_exch: bool,
    level: AuthLevel,
    spot: Spot,
) -> Result<(), SecurityError> {
    let (mut client, mut server) = pair(prefer, key_exch);
    send(&mut client, &mut server, level, 1, b"first call");
    let (mut pdu, range) = request_pdu(2, &stub_of(21, 7), level);
    let mut signature = client.wrap(level, &mut pdu, range.clone()).unwrap();
    match spot {
        Spot::Pdu(at) => pdu[at] ^= 0x20,
        Spot::Signature(at) => signature[at] ^= 0x20,
    }
    let result = server.unwrap(level, &mut pdu, range.clone(), &signature);
    if result.is_err() {
        // Refused once, refused for good: the genuine next PDU is refused too.
        let (mut next, range) = request_pdu(3, b"next", level);
        let signature = client.wrap(level, &mut next, range.clone()).unwrap();
        assert_eq!(
            server.unwrap(level, &mut next, range, &signature),
            Err(SecurityError::BadSignature)
        );
    }
    result
}

#[test]
fn every_changed_octet_is_refused_with_extended_session_security() {
    let (sample, _) = request_pdu(2, &stub_of(21, 7), AuthLevel::PKT_INTEGRITY);
    for (prefer, key_exch) in SETUPS {
        if prefer == ResponseKind::V1 {
            continue;
        }
        for level in [AuthLevel::PKT_INTEGRITY, AuthLevel::PKT_PRIVACY] {
            // Header, body header, stub, auth padding, sec_trailer.
            for at in 0..sample.len() {
                assert_eq!(
                    tampered(prefer, key_exch, level, Spot::Pdu(at)),
                    Err(SecurityError::BadSignature),
                    "{prefer:?} kx={key_exch} {level:?} PDU octet {at}"
                );
            }
            for at in 0..SIGNATURE_LEN {
                let want = if at < 4 {
                    SecurityError::MalformedSignature(SIGNATURE_LEN)
                } else {
                    SecurityError::BadSignature
                };
                assert_eq!(
                    tampered(prefer, key_exch, level, Spot::Signature(at)),
                    Err(want),
                    "{prefer:?} kx={key_exch} {level:?} signature octet {at}"
                );
            }
        }
    }
}

/// Without ESS the CRC32 covers the stub and its padding only (Samba and impacket pass
/// only the payload to it), and RandomPad is not compared (Samba's checker skips it).
#[test]
fn without_extended_session_security_the_stub_is_covered() {
    let (sample, stub) = request_pdu(2, &stub_of(21, 7), AuthLevel::PKT_INTEGRITY);
    for key_exch in [true, false] {
        for level in [AuthLevel::PKT_INTEGRITY, AuthLevel::PKT_PRIVACY] {
            for at in 0..sample.len() {
                let result = tampered(ResponseKind::V1, key_exch, level, Spot::Pdu(at));
                if stub.contains(&at) {
                    assert_eq!(result, Err(SecurityError::BadSignature), "{level:?} {at}");
                } else {
                    assert_eq!(result, Ok(()), "{level:?} octet {at} is not signed");
                }
            }
            for at in 0..SIGNATURE_LEN {
                let result = tampered(ResponseKind::V1, key_exch, level, Spot::Signature(at));
                let want = match at {
                    0..=3 => Err(SecurityError::MalformedSignature(SIGNATURE_LEN)),
                    4..=7 => Ok(()),
                    _ => Err(SecurityError::BadSignature),
                };
                assert_eq!(result, want, "{level:?} signature octet {at}");
            }
        }
    }
}

#[test]
fn replayed_reordered_and_reflected_pdus_are_refused() {
    for (prefer, key_exch) in SETUPS {
        for level in [AuthLevel::PKT_INTEGRITY, AuthLevel::PKT_PRIVACY] {
            let what = format!("{prefer:?} kx={key_exch} {level:?}");
            // Replay: the same octets twice.
            let (mut client, mut server) = pair(prefer, key_exch);
            let (wire, signature) = send(&mut client, &mut server, level, 1, b"once");
            let (_, range) = request_pdu(1, b"once", level);
            let mut again = wire.clone();
            assert_eq!(
                server.unwrap(level, &mut again, range.clone(), &signature),
                Err(SecurityError::BadSignature),
                "replay {what}"
            );

            // Reorder: the second PDU first, then the first.
            let (mut client, mut server) = pair(prefer, key_exch);
            let (mut one, r1) = request_pdu(1, b"one", level);
            let (mut two, r2) = request_pdu(2, b"two", level);
            let s1 = client.wrap(level, &mut one, r1.clone()).unwrap();
            let s2 = client.wrap(level, &mut two, r2.clone()).unwrap();
            assert_eq!(
                server.unwrap(level, &mut two, r2, &s2),
                Err(SecurityError::BadSignature),
                "reorder {what}"
            );
            assert_eq!(
                server.unwrap(level, &mut one, r1, &s1),
                Err(SecurityError::BadSignature),
                "after reorder {what}"
            );

            // A skipped PDU: the receiver does not resynchronise.
            let (mut client, mut server) = pair(prefer, key_exch);
            let (mut lost, r) = request_pdu(1, b"lost", level);
            client.wrap(level, &mut lost, r).unwrap();
            let (mut next, r) = request_pdu(2, b"next", level);
            let s = client.wrap(level, &mut next, r.clone()).unwrap();
            assert_eq!(
                server.unwrap(level, &mut next, r, &s),
                Err(SecurityError::BadSignature),
                "skip {what}"
            );

            // Reflection: a client's own PDU handed back to it.
            let (mut client, _) = pair(prefer, key_exch);
            let (mut own, r) = request_pdu(1, b"own", level);
            let s = client.wrap(level, &mut own, r.clone()).unwrap();
            assert_eq!(
                client.unwrap(level, &mut own, r, &s),
                Err(SecurityError::BadSignature),
                "reflection {what}"
            );
        }
    }
}

#[test]
fn malformed_signatures_and_ranges() {
    for prefer in [ResponseKind::V1, ResponseKind::V2] {
        for level in [AuthLevel::PKT_INTEGRITY, AuthLevel::PKT_PRIVACY] {
            for len in [0, 4, 15, 17, 32] {
                let (mut client, mut server) = pair(prefer, true);
                let (mut pdu, range) = request_pdu(1, b"x", level);
                let mut signature = client.wrap(level, &mut pdu, range.clone()).unwrap();
                signature.resize(len, 0);
                assert_eq!(
                    server.unwrap(level, &mut pdu, range, &signature),
                    Err(SecurityError::MalformedSignature(len))
                );
            }
            // Version 2, and version 1 in its high octet.
            for version in [[2, 0, 0, 0], [0, 0, 0, 1]] {
                let (mut client, mut server) = pair(prefer, true);
                let (mut pdu, range) = request_pdu(1, b"x", level);
                let mut signature = client.wrap(level, &mut pdu, range.clone()).unwrap();
                signature[..4].copy_from_slice(&version);
                assert_eq!(
                    server.unwrap(level, &mut pdu, range, &signature),
                    Err(SecurityError::MalformedSignature(16))
                );
            }
            // Stub ranges outside the PDU (or reversed) are refused before anything moves
            // on the sending side.
            let (mut client, mut server) = pair(prefer, true);
            let (mut pdu, range) = request_pdu(1, b"x", level);
            let len = pdu.len();
            #[allow(clippy::reversed_empty_ranges)]
            for bad in [range.start..len + 1, len + 1..len + 2, 30..20] {
                assert!(matches!(
                    client.wrap(level, &mut pdu, bad.clone()),
                    Err(SecurityError::BadToken(_))
                ));
            }
            send(&mut client, &mut server, level, 1, b"x");
            #[allow(clippy::reversed_empty_ranges)]
            for bad in [range.start..len + 1, 30..20] {
                let (mut client, mut server) = pair(prefer, true);
                let signature = client.wrap(level, &mut pdu, range.clone()).unwrap();
                assert!(matches!(
                    server.unwrap(level, &mut pdu, bad, &signature),
                    Err(SecurityError::BadToken(_))
                ));
            }
        }
    }
}

/// The octets `request_pdu` gives are the ones the impacket script built (its seq 0
/// plain PDU, below).
#[test]
fn request_pdu_matches_the_vector_layout() {
    let (pdu, range) = request_pdu(1, &vector_stub(0), AuthLevel::PKT_PRIVACY);
    assert_eq!(
        pdu,
        hex(
            "0500000310000000500010000100000015000000000001000001020304050607\
             08090a0b0c0d0e0f101112131400000000000000000000000a060b007f350100"
        )
    );
    assert_eq!(range, 24..56);
}

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// The stub of the vectors' PDU `n`: `(n * 7 + i) & 0xff` for i in 0..21 + n.
fn vector_stub(n: usize) -> Vec<u8> {
    (0..21 + n).map(|i| ((n * 7 + i) & 0xff) as u8).collect()
}

/// Who sends a vector PDU: `(client, hex of the sealed stub or "" when signed, hex of
/// the signature)`.
type VectorPdu = (bool, &'static str, &'static str);

/// Vectors made with impacket 0.13 (`impacket.ntlm.SEAL`, `SIGN`, `SIGNKEY`, `SEALKEY`;
/// pycryptodome's ARC4 for the handles) by a throwaway script outside the repository:
///
/// ```text
/// def pdu(call_id, stub, level):           # as request_pdu lays it out
///     pad = (16 - len(stub) % 16) % 16
///     body = struct.pack('<IHH', len(stub), 0, 1) + stub + b'\x00' * pad
///     trailer = struct.pack('<BBBBI', 10, level, pad, 0, 79231)
///     hdr = struct.pack('<BBBBIHHI', 5, 0, 0, 3, 0x10, 16 + len(body) + 24, 16, call_id)
///     whole = hdr + body + trailer
///     return whole, 24, 24 + len(stub) + pad
/// def run(name, flags, key, level, sides, ess):
///     if ess:   # per direction: SIGNKEY(flags, key, side), ARC4(SEALKEY(flags, key, side))
///         ...   # and a sequence number per side
///     else:     # one ARC4(key) handle and one counter for both sides ([MS-NLMP] 3.4;
///         ...   # impacket's SEALKEY would weaken the key as if LM_KEY were set)
///     for n, side in enumerate(sides):
///         stub = bytes((n * 7 + i) & 0xff for i in range(21 + n))
///         whole, a, b = pdu(n + 1, stub, level)
///         to_sign = whole if ess else whole[a:b]    # as rpcrt._transport_send
///         if level == 6: sealed, sig = ntlm.SEAL(flags, sign_key, None, to_sign, whole[a:b], seq, handle)
///         else: sig = ntlm.SIGN(flags, sign_key, to_sign, seq, handle)
/// KEY = bytes(range(0x10, 0x20)); flags 0xe0888231 (ESS, KEY_EXCH, 128, 56, SIGN, SEAL, ...),
/// 0xa0888231 (without KEY_EXCH), 0xe0808231 (without ESS)
/// ```
const VECTORS: [(&str, u32, AuthLevel, &[VectorPdu]); 5] = [
    (
        "ess_kx_seal",
        0xe088_8231,
        AuthLevel::PKT_PRIVACY,
        &[
            (
                true,
                "1b23173031109ef42a884e223417c37909fada44f30d165fb37ec63678f7825e",
                "0100000034bbb0a13f68285600000000",
            ),
            (
                false,
                "09b2b9c93bd2df4128a6c1ecaa091f85d2a2f47e7c9c96adf0646ee33b89b58c",
                "0100000060aca3a394759f1a00000000",
            ),
            (
                true,
                "f350cd3e1a76a8038a8f9c0497c25c9713cfd4d4ce76d7df0540f63947455169",
                "010000006d1c70e9ec4085ef01000000",
            ),
            (
                true,
                "8550fcc7d5bde1b610efe8d0834ff7df0e4a81035cbb01023ea6f05a0251830a",
                "010000002a629a1e34eef75c02000000",
            ),
        ],
    ),
    (
        "ess_kx_sign",
        0xe088_8231,
        AuthLevel::PKT_INTEGRITY,
        &[
            (true, "", "01000000c34856f6c5b910ab00000000"),
            (false, "", "01000000a1c3a43e4411a13200000000"),
            (true, "", "01000000ff6c66898df76e1601000000"),
        ],
    ),
    (
        "ess_sign",
        0xa088_8231,
        AuthLevel::PKT_INTEGRITY,
        &[
            (true, "", "01000000d86a43c5f0ac885800000000"),
            (false, "", "01000000af7914fd74cf737d00000000"),
            (true, "", "01000000dded22a0b5eda36001000000"),
        ],
    ),
    (
        "v1_seal",
        0xe080_8231,
        AuthLevel::PKT_PRIVACY,
        &[
            (
                true,
                "4bb102cff9051df53fb7efdc8036f2ada257b9274fecdbe4dce20a83373bbb39",
                "0100000000000000cd4f12432742cd65",
            ),
            (
                false,
                "a1aedbc5d8f0c1e650061ba836bc28728e2f11212746878b66e6e09e1979e597",
                "0100000000000000d5cbfa2e2aef38f6",
            ),
            (
                true,
                "2ed604d3dbf64fdb71661d396f41850d8ab0896e5105a290f2b1bd4e8de348af",
                "0100000000000000df925794aad9de0e",
            ),
        ],
    ),
    (
        "v1_sign",
        0xe080_8231,
        AuthLevel::PKT_INTEGRITY,
        &[
            (true, "", "01000000000000002a5690e137bee5d7"),
            (false, "", "0100000000000000108702ce5aecdbe4"),
            (true, "", "0100000000000000f266458bc1db325a"),
        ],
    ),
];

#[test]
fn impacket_vectors_byte_for_byte() {
    let key: [u8; 16] = std::array::from_fn(|i| 0x10 + i as u8);
    for (name, flags, level, pdus) in VECTORS {
        let flags = NegotiateFlags(flags);
        let side = |outgoing| NtlmSecurity {
            leg: (),
            protection: Some(Protection::new(flags, &key, outgoing)),
        };
        let mut client = side(Direction::ClientToServer);
        let mut server = side(Direction::ServerToClient);
        for (n, &(from_client, sealed, want_signature)) in pdus.iter().enumerate() {
            let (mut pdu, range) = request_pdu(n as u32 + 1, &vector_stub(n), level);
            let plain = pdu.clone();
            let (sender, receiver) = if from_client {
                (&mut client, &mut server)
            } else {
                (&mut server, &mut client)
            };
            let signature = sender.wrap(level, &mut pdu, range.clone()).unwrap();
            assert_eq!(signature, hex(want_signature), "{name} PDU {n} signature");
            if sealed.is_empty() {
                assert_eq!(pdu, plain, "{name} PDU {n}");
            } else {
                assert_eq!(
                    pdu[range.clone()],
                    hex(sealed),
                    "{name} PDU {n} sealed stub"
                );
            }
            receiver
                .unwrap(level, &mut pdu, range, &signature)
                .unwrap_or_else(|e| panic!("{name} PDU {n}: {e}"));
            assert_eq!(pdu, plain);
        }
    }
}

#[test]
fn fuzz_unwrap_samples() {
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for sel in 0u8..32 {
        inputs.push(vec![sel]);
        // Untampered, stub of 21.
        let mut v = vec![sel, 21];
        v.extend(stub_of(21, sel));
        inputs.push(v.clone());
        // Tampered PDU octet 30 and signature octet 5, and one that cancels out.
        let mut t = v.clone();
        t.extend([0, 30, 0x01, 1, 5, 0x80]);
        inputs.push(t);
        let mut c = v.clone();
        c.extend([0, 30, 0x01, 2, 30, 0x01]);
        inputs.push(c);
        // Raw: a range, a level, a signature length, then octets.
        inputs.push(vec![sel, 24, 40, 6, 16, 1, 0, 0, 0, 9, 9, 9, 9, 9]);
        inputs.push(vec![sel, 50, 10, 5, 3]);
    }
    for input in &inputs {
        fuzz_unwrap(input);
    }
}
