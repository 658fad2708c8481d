//! The fuzz target `dcerpc_ntlm_unwrap` and the fixtures it shares with the tests: an
//! account, a factory, established context pairs and request PDUs laid out as the
//! association lays them out.

use super::*;

/// A request PDU of `stub` as it goes to `wrap`, without its auth_value: header
/// (frag_length and auth_length final, for a 16-octet signature), body, zero auth padding
/// to 16 from the stub's start (as Samba pads), sec_trailer (NTLMSSP, `level`, context
/// 79231 as impacket numbers it). Returns it and the stub range. For the tests and the
/// fuzz target.
pub(super) fn request_pdu(call_id: u32, stub: &[u8], level: AuthLevel) -> (Vec<u8>, Range<usize>) {
    let pad = (16 - stub.len() % 16) % 16;
    let stub_range = 24..24 + stub.len() + pad;
    let frag_length = stub_range.end + 8 + SIGNATURE_LEN;
    let mut pdu = vec![5, 0, 0, 3, 0x10, 0, 0, 0];
    pdu.extend_from_slice(&(frag_length as u16).to_le_bytes());
    pdu.extend_from_slice(&(SIGNATURE_LEN as u16).to_le_bytes());
    pdu.extend_from_slice(&call_id.to_le_bytes());
    pdu.extend_from_slice(&(stub.len() as u32).to_le_bytes()); // alloc_hint
    pdu.extend_from_slice(&[0, 0, 1, 0]); // context 0, opnum 1
    pdu.extend_from_slice(stub);
    pdu.resize(stub_range.end, 0);
    pdu.extend_from_slice(&[AuthType::NTLMSSP.0, level.0, pad as u8, 0]);
    pdu.extend_from_slice(&79231u32.to_le_bytes());
    (pdu, stub_range)
}

/// The account the fuzz target and the tests know.
pub(super) const TEST_USER: &str = "alice";
pub(super) const TEST_PASSWORD: &str = "secret";

pub(super) fn test_factory() -> NtlmServerFactory {
    NtlmServerFactory::new(
        AcceptorConfig {
            nb_domain: "EXAMPLE".into(),
            nb_computer: "MAIL".into(),
            dns_domain: "example.test".into(),
            dns_computer: "mail.example.test".into(),
        },
        Arc::new(|user: &str, _domain: &str| {
            user.eq_ignore_ascii_case(TEST_USER)
                .then(|| TEST_PASSWORD.to_string())
        }),
        SeededRng::new(15),
        133_000_000_000_000_000,
    )
}

/// A client and a server context after bind / bind_ack / auth3, the client answering
/// with `prefer` and leaving out `drop` from its flags; None when the legs fail.
pub(super) fn established_pair(
    prefer: ResponseKind,
    drop: NegotiateFlags,
    password: &str,
) -> Option<(NtlmClientSecurity, NtlmServerSecurity)> {
    let mut client = NtlmClientSecurity::with_initiator(
        NtlmInitiator::new(
            Credentials::example(TEST_USER, password),
            InitiatorOptions::fixed(0xC1, 0x5A, prefer, false),
        )
        .requesting(NegotiateFlags::SIGN | NegotiateFlags::SEAL, drop),
    );
    let mut server = test_factory().new_ntlm_context();
    let AcceptStep::Continue(challenge) = server.accept(&client.initial_token().ok()?).ok()? else {
        return None;
    };
    let ClientStep::Send { token, .. } = client.step(&challenge).ok()? else {
        return None;
    };
    server.accept(&token).ok()?;
    Some((client, server))
}

/// Fuzz target `dcerpc_ntlm_unwrap`: an established server context unwraps PDUs at
/// packet integrity or privacy. `data[0]`: bits 0-1 the response kind (V1, V1 with ESS,
/// V2), bit 2 drops KEY_EXCH, bit 3 picks privacy, bit 4 raw mode.
///
/// Wrapped mode: `data[1]` is the stub length (mod 64), the stub follows, then 3-octet
/// tampers `[where, pos, xor]` (even `where`: the PDU, odd: the signature). A PDU that
/// arrives as sent verifies and comes back as plaintext; with ESS any change is refused;
/// after a refusal the next genuine PDU is refused too, after a success it verifies.
///
/// Raw mode: `data[1..3]` the stub range, `data[3]` the level, `data[4]` the signature
/// length (mod 24), then the signature, then the PDU: nothing panics, and a refused PDU
/// leaves the context refusing.
pub fn fuzz_unwrap(data: &[u8]) {
    let [sel, rest @ ..] = data else {
        return;
    };
    let prefer = match sel % 4 {
        0 => ResponseKind::V1,
        1 => ResponseKind::V1ExtendedSessionSecurity,
        _ => ResponseKind::V2,
    };
    let drop = match sel & 0x04 {
        0 => NegotiateFlags(0),
        _ => NegotiateFlags::KEY_EXCH,
    };
    let level = match sel & 0x08 {
        0 => AuthLevel::PKT_INTEGRITY,
        _ => AuthLevel::PKT_PRIVACY,
    };
    let Some((mut client, mut server)) = established_pair(prefer, drop, TEST_PASSWORD) else {
        panic!("the untampered handshake failed");
    };
    let refused = if sel & 0x10 != 0 {
        let [a, b, raw_level, sig_len, rest @ ..] = rest else {
            return;
        };
        let (signature, pdu) = rest.split_at(usize::from(*sig_len % 24).min(rest.len()));
        let mut pdu = pdu.to_vec();
        let stub = usize::from(*a)..usize::from(*b);
        let result = server.unwrap(AuthLevel(*raw_level), &mut pdu, stub.clone(), signature);
        let _ = server.wrap(AuthLevel(*raw_level), &mut pdu, stub);
        result.is_err() && guard_for(AuthLevel(*raw_level)).is_ok()
    } else {
        let (len, rest) = rest.split_first().unwrap_or((&0, &[]));
        let (stub, tampers) = rest.split_at(usize::from(len % 64).min(rest.len()));
        let (mut pdu, range) = request_pdu(1, stub, level);
        let plain = pdu.clone();
        let Ok(mut signature) = client.wrap(level, &mut pdu, range.clone()) else {
            panic!("wrap refused a well-formed PDU");
        };
        let (sent, sent_signature) = (pdu.clone(), signature.clone());
        for t in tampers.chunks_exact(3) {
            let target = if t[0] % 2 == 0 {
                &mut pdu
            } else {
                &mut signature
            };
            let at = usize::from(t[1]) % target.len();
            target[at] ^= t[2];
        }
        let ess = prefer != ResponseKind::V1;
        let untouched = pdu == sent && signature == sent_signature;
        let stub_untouched = pdu[range.clone()] == sent[range.clone()];
        let result = server.unwrap(level, &mut pdu, range.clone(), &signature);
        if untouched {
            assert_eq!(result, Ok(()), "an untampered PDU was refused");
        }
        if result.is_ok() && stub_untouched {
            assert_eq!(
                pdu[range.clone()],
                plain[range],
                "unwrap gave another plaintext"
            );
        }
        if ess && !untouched {
            assert!(result.is_err(), "a changed PDU verified under ESS");
        }
        result.is_err()
    };
    let (mut next, range) = request_pdu(2, b"next call", level);
    let Ok(signature) = client.wrap(level, &mut next, range.clone()) else {
        panic!("wrap refused a well-formed PDU");
    };
    let result = server.unwrap(level, &mut next, range, &signature);
    if refused {
        assert!(
            result.is_err(),
            "a context that refused a PDU verified the next"
        );
    } else if sel & 0x10 == 0 {
        assert_eq!(result, Ok(()), "the PDU after a verified one was refused");
        // And the other direction still runs in step.
        let (mut reply, range) = request_pdu(2, b"reply", level);
        let Ok(signature) = server.wrap(level, &mut reply, range.clone()) else {
            panic!("wrap refused a well-formed PDU");
        };
        assert_eq!(client.unwrap(level, &mut reply, range, &signature), Ok(()));
    }
}
