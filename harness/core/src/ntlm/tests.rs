//! Message codec, acceptor/initiator and robustness tests. The crypto vectors of
//! [MS-NLMP] §4.2 are checked in `crypto.rs`.

use super::crypto;
use super::messages::*;
use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// [MS-NLMP] §4.2.4.3 CHALLENGE (104 bytes, PROTOCOLS.md §3.5).
fn spec_challenge() -> Vec<u8> {
    hex(
        "4e544c4d53535000 02000000 0c000c0038000000 33828ae2 0123456789abcdef 0000000000000000
         2400240044000000 060070170000000f 530065007200760065007200
         02000c0044006f006d00610069006e0001000c00530065007200760065007200 00000000",
    )
}

/// [MS-NLMP] §4.2.4.3 AUTHENTICATE (232 bytes, as dumped in SIPE's tests).
fn spec_authenticate() -> Vec<u8> {
    hex(
        "4e544c4d53535000030000001800180 06c00000054005400840000000c000c0048000000
         0800080054000000100010005c00000010001000d8000000358288e20501280a0000000f
         44006f006d00610069006e00550073006500720043004f004d0050005500540045005200
         86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa
         68cd0ab851e51c96aabc927bebef6a1c01010000000000000000000000000000aaaaaaaaaaaaaaaa
         0000000002000c0044006f006d00610069006e0001000c005300650072007600650072000000000000000000
         c5dad2544fc9799094ce1ce90bc9d03e",
    )
}

const SPEC_SERVER_CHALLENGE: [u8; 8] = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];

#[test]
fn spec_challenge_decodes_and_reencodes_identically() {
    let bytes = spec_challenge();
    assert_eq!(bytes.len(), 104);
    let m = ChallengeMessage::decode(&bytes).unwrap();
    assert_eq!(m.flags, NegotiateFlags(0xE28A_8233));
    assert_eq!(m.target_name, "Server");
    assert_eq!(m.server_challenge, SPEC_SERVER_CHALLENGE);
    assert_eq!(
        m.version,
        Some(Version {
            major: 6,
            minor: 0,
            build: 6000,
            revision: 15
        })
    );
    assert_eq!(
        m.target_info,
        Some(vec![
            AvPair::string(AvId::NB_DOMAIN_NAME, "Domain"),
            AvPair::string(AvId::NB_COMPUTER_NAME, "Server"),
        ])
    );
    assert_eq!(m.encode(), bytes);
    assert_eq!(Message::decode(&bytes).unwrap(), Message::Challenge(m));
}

#[test]
fn spec_authenticate_decodes_and_reencodes_identically() {
    let bytes = spec_authenticate();
    assert_eq!(bytes.len(), 232);
    let m = AuthenticateMessage::decode(&bytes).unwrap();
    assert_eq!(m.flags, NegotiateFlags(0xE288_8235));
    assert_eq!(m.domain, "Domain");
    assert_eq!(m.user, "User");
    assert_eq!(m.workstation, "COMPUTER");
    assert_eq!(
        m.lm_response,
        hex("86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa")
    );
    assert_eq!(m.nt_response.len(), 84);
    assert_eq!(
        &m.nt_response[..16],
        &hex("68cd0ab851e51c96aabc927bebef6a1c")[..]
    );
    assert_eq!(
        m.encrypted_random_session_key,
        hex("c5dad2544fc9799094ce1ce90bc9d03e")
    );
    assert_eq!(
        m.version,
        Some(Version {
            major: 5,
            minor: 1,
            build: 2600,
            revision: 15
        })
    );
    assert_eq!(m.mic, None);
    let v2 = m.ntlm_v2_response().unwrap().unwrap();
    assert_eq!(v2.client_challenge, [0xaa; 8]);
    assert_eq!(v2.timestamp, 0);
    assert!(!v2.mic_present());
    assert_eq!(m.encode(), bytes);
}

/// The acceptor verifies the spec's own AUTHENTICATE (only the server challenge and the
/// password matter for the NTLMv2 proof), and refuses it under another password.
#[test]
fn acceptor_accepts_spec_authenticate() {
    let run = |password: &'static str| {
        let mut acc = NtlmAcceptor::new(config(), SPEC_SERVER_CHALLENGE, 0);
        let mut client = initiator("x", "y", ResponseKind::V2, false);
        acc.handle_negotiate(&client.negotiate()).unwrap();
        acc.handle_authenticate(&spec_authenticate(), &|u, d| {
            assert_eq!((u, d), ("User", "Domain"));
            Some(password.to_string())
        })
    };
    let ok = run("Password").unwrap();
    assert_eq!(ok.kind, ResponseKind::V2);
    assert_eq!(ok.workstation, "COMPUTER");
    assert_eq!(
        ok.session_base_key.to_vec(),
        hex("8de40ccadbc14a82f15cb0ad0de95ca3")
    );
    assert_eq!(run("password"), Err(NtlmError::WrongPassword));
}

#[test]
fn negotiate_round_trip_and_oem_strings() {
    let m = NegotiateMessage {
        flags: NegotiateFlags::NTLM
            | NegotiateFlags::OEM_DOMAIN_SUPPLIED
            | NegotiateFlags::OEM_WORKSTATION_SUPPLIED
            | NegotiateFlags::VERSION,
        domain: "DÖMAIN".into(),
        workstation: "WS".into(),
        version: Some(Version {
            major: 10,
            minor: 0,
            build: 1,
            revision: 15,
        }),
    };
    let bytes = m.encode();
    assert_eq!(bytes.len(), 40 + 6 + 2);
    // OEM (Latin-1): one byte per character.
    assert_eq!(&bytes[40..46], b"D\xd6MAIN");
    assert_eq!(NegotiateMessage::decode(&bytes).unwrap(), m);
    // Without the VERSION flag the payload starts at 32.
    let m2 = NegotiateMessage {
        flags: NegotiateFlags::NTLM,
        domain: String::new(),
        workstation: "W".into(),
        version: None,
    };
    let b2 = m2.encode();
    assert_eq!(b2.len(), 33);
    assert_eq!(&b2[24..32], &[1, 0, 1, 0, 32, 0, 0, 0]);
    assert_eq!(NegotiateMessage::decode(&b2).unwrap(), m2);
    // curl's 32-byte NEGOTIATE.
    let curl = hex("4e544c4d535350000100000006820800000000000000000000000000 00000000");
    let c = NegotiateMessage::decode(&curl).unwrap();
    assert_eq!(c.flags, NegotiateFlags(0x0008_8206));
    assert_eq!(c.version, None);
    // Empty fields are re-encoded pointing at the payload end (32), not at 0.
    let re = c.encode();
    assert_eq!(re.len(), 32);
    assert_eq!(&re[20..24], &[32, 0, 0, 0]);
    assert_eq!(NegotiateMessage::decode(&re).unwrap(), c);
}

#[test]
fn flags_debug_names_them() {
    let s = format!("{:?}", NegotiateFlags::UNICODE | NegotiateFlags::KEY_EXCH);
    assert_eq!(s, "NegotiateFlags(0x40000001: UNICODE|KEY_EXCH)");
}

#[test]
fn av_pairs_keep_unknown_ids_and_need_eol() {
    let pairs = vec![
        AvPair::string(AvId::NB_DOMAIN_NAME, "D"),
        AvPair {
            id: AvId(0x7777),
            value: vec![1, 2, 3],
        },
        AvPair::timestamp(0x0102_0304_0506_0708),
        AvPair::flags(2),
    ];
    let enc = encode_av_pairs(&pairs);
    assert_eq!(
        enc,
        hex("02000200 4400  77770300 010203  07000800 0807060504030201  06000400 02000000  00000000")
    );
    let dec = decode_av_pairs(&enc).unwrap();
    assert_eq!(dec, pairs);
    assert_eq!(
        find_av(&dec, AvId::TIMESTAMP).unwrap().as_u64(),
        Some(0x0102_0304_0506_0708)
    );
    assert_eq!(find_av(&dec, AvId::FLAGS).unwrap().as_u32(), Some(2));
    assert_eq!(dec[0].as_string().as_deref(), Some("D"));
    assert!(matches!(
        decode_av_pairs(&enc[..enc.len() - 4]),
        Err(NtlmError::BadAvPairs { .. })
    ));
    assert!(matches!(
        decode_av_pairs(&hex("0100ff00 4100")),
        Err(NtlmError::BadAvPairs { .. })
    ));
    assert_eq!(decode_av_pairs(&hex("00000000 ffff")).unwrap(), vec![]);
}

// ---- malformed input ------------------------------------------------------------------

#[test]
fn truncated_bad_signature_and_types() {
    let chal = spec_challenge();
    assert_eq!(
        Message::decode(&chal[..5]),
        Err(NtlmError::Truncated { needed: 12, got: 5 })
    );
    assert_eq!(
        Message::decode(b""),
        Err(NtlmError::Truncated { needed: 12, got: 0 })
    );
    assert_eq!(
        ChallengeMessage::decode(&chal[..40]),
        Err(NtlmError::Truncated {
            needed: 48,
            got: 40
        })
    );
    assert_eq!(
        Message::decode(b"NTLMSSX\0\x01\0\0\0"),
        Err(NtlmError::BadSignature)
    );
    assert_eq!(Message::decode(b"HTTP/1.1"), Err(NtlmError::BadSignature));
    assert_eq!(
        NegotiateMessage::decode(&chal),
        Err(NtlmError::UnexpectedType {
            expected: 1,
            found: 2
        })
    );
    let mut bad = chal.clone();
    bad[8] = 9;
    assert_eq!(Message::decode(&bad), Err(NtlmError::UnknownType(9)));
    // The spec AUTHENTICATE cut inside its payload: a field now points past the end.
    let auth = spec_authenticate();
    assert!(matches!(
        AuthenticateMessage::decode(&auth[..200]),
        Err(NtlmError::FieldOutOfBounds { .. })
    ));
    assert_eq!(
        AuthenticateMessage::decode(&auth[..63]),
        Err(NtlmError::Truncated {
            needed: 64,
            got: 63
        })
    );
}

#[test]
fn lying_descriptors_are_refused() {
    let chal = spec_challenge();
    // TargetInfo offset + len one past the end.
    let mut b = chal.clone();
    b[44] = 69;
    assert_eq!(
        ChallengeMessage::decode(&b),
        Err(NtlmError::FieldOutOfBounds {
            field: "TargetInfo"
        })
    );
    // Huge length (and MaxLen).
    let mut b = chal.clone();
    b[40..44].copy_from_slice(&[0xff, 0xff, 0xff, 0xff]);
    assert_eq!(
        ChallengeMessage::decode(&b),
        Err(NtlmError::FieldOutOfBounds {
            field: "TargetInfo"
        })
    );
    // Offset near u32::MAX.
    let mut b = chal.clone();
    b[16..20].copy_from_slice(&[0xfe, 0xff, 0xff, 0xff]);
    assert_eq!(
        ChallengeMessage::decode(&b),
        Err(NtlmError::FieldOutOfBounds {
            field: "TargetName"
        })
    );
    // MaxLen below Len.
    let mut b = chal.clone();
    b[14] = 2;
    assert_eq!(
        ChallengeMessage::decode(&b),
        Err(NtlmError::BadFieldLength {
            field: "TargetName"
        })
    );
    // A field pointing into the fixed header.
    let mut b = chal.clone();
    b[16] = 8;
    assert_eq!(
        ChallengeMessage::decode(&b),
        Err(NtlmError::FieldOverlapsHeader {
            field: "TargetName"
        })
    );
    // Odd-length UTF-16 target name.
    let mut b = chal.clone();
    b[12] = 11;
    b[14] = 11;
    assert_eq!(
        ChallengeMessage::decode(&b),
        Err(NtlmError::BadString {
            field: "TargetName"
        })
    );
    // Empty fields are not located, whatever their offset.
    let mut b = spec_challenge();
    b[40..48].copy_from_slice(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    assert_eq!(ChallengeMessage::decode(&b).unwrap().target_info, None);
}

#[test]
fn oversized_messages_are_refused() {
    let mut big = spec_challenge();
    big.resize(MAX_MESSAGE_LEN + 1, 0);
    assert_eq!(
        Message::decode(&big),
        Err(NtlmError::TooLarge {
            len: MAX_MESSAGE_LEN + 1
        })
    );
    // Exactly 64 KiB is still decoded.
    big.truncate(MAX_MESSAGE_LEN);
    assert!(ChallengeMessage::decode(&big).is_ok());
    // Overlapping fields whose total would not fit one message.
    let mut b = vec![0u8; 64 + 60_000];
    b[..12].copy_from_slice(b"NTLMSSP\0\x03\0\0\0");
    for at in [12usize, 20, 28, 36, 44, 52] {
        b[at..at + 8].copy_from_slice(&[0x60, 0xea, 0x60, 0xea, 64, 0, 0, 0]);
    }
    assert!(matches!(
        AuthenticateMessage::decode(&b),
        Err(NtlmError::TooLarge { .. })
    ));
}

fn v2_auth_with_mic() -> (Vec<u8>, AuthenticateMessage) {
    let mut acc = NtlmAcceptor::new(config(), [7; 8], 1);
    let mut client = initiator("alice", "secret", ResponseKind::V2, true);
    let chal = acc.handle_negotiate(&client.negotiate()).unwrap();
    let bytes = client.handle_challenge(&chal).unwrap();
    let m = AuthenticateMessage::decode(&bytes).unwrap();
    (bytes, m)
}

#[test]
fn mic_is_located_from_msv_av_flags() {
    let (bytes, m) = v2_auth_with_mic();
    let mic = m.mic.expect("MIC present");
    assert_eq!(&bytes[72..88], &mic);
    // Payload begins right after the MIC.
    assert_eq!(u32::from_le_bytes(bytes[32..36].try_into().unwrap()), 88);
    assert_eq!(m.encode(), bytes);
    // Without the MIC flag, the same layout decodes with no MIC.
    let (_, no_mic) = {
        let mut acc = NtlmAcceptor::new(config(), [7; 8], 1);
        let mut client = initiator("alice", "secret", ResponseKind::V2, false);
        let chal = acc.handle_negotiate(&client.negotiate()).unwrap();
        let b = client.handle_challenge(&chal).unwrap();
        let d = AuthenticateMessage::decode(&b).unwrap();
        (b, d)
    };
    assert_eq!(no_mic.mic, None);
    // A MIC announced while the payload starts at 72 is refused.
    let mut lying = bytes.clone();
    lying[32..36].copy_from_slice(&72u32.to_le_bytes());
    assert_eq!(
        AuthenticateMessage::decode(&lying),
        Err(NtlmError::MicOverlapsPayload)
    );
}

// ---- acceptor vs initiator ------------------------------------------------------------

fn config() -> AcceptorConfig {
    AcceptorConfig {
        nb_domain: "EXAMPLE".into(),
        nb_computer: "MAIL".into(),
        dns_domain: "example.test".into(),
        dns_computer: "mail.example.test".into(),
    }
}

fn initiator(user: &str, password: &str, prefer: ResponseKind, send_mic: bool) -> NtlmInitiator {
    NtlmInitiator::new(
        Credentials {
            workstation: "WS1".into(),
            ..Credentials::example(user, password)
        },
        InitiatorOptions::fixed(0xaa, 0x55, prefer, send_mic),
    )
}

fn directory(user: &str, _domain: &str) -> Option<String> {
    match user.to_ascii_lowercase().as_str() {
        "alice" => Some("secret".into()),
        "bob" => Some("hunter2".into()),
        _ => None,
    }
}

const FILETIME: u64 = 133_500_000_000_000_000;

/// Runs a full exchange, with `tamper` applied to the AUTHENTICATE bytes.
fn exchange(
    mut client: NtlmInitiator,
    tamper: impl FnOnce(&mut Vec<u8>),
) -> Result<Authenticated, NtlmError> {
    let mut acc = NtlmAcceptor::new(config(), [1, 2, 3, 4, 5, 6, 7, 8], FILETIME);
    assert!(!acc.has_negotiated());
    let chal = acc.handle_negotiate(&client.negotiate())?;
    assert!(acc.has_negotiated());
    let mut auth = client.handle_challenge(&chal)?;
    tamper(&mut auth);
    acc.handle_authenticate(&auth, &directory)
}

#[test]
fn challenge_contents() {
    let mut acc = NtlmAcceptor::new(config(), [1, 2, 3, 4, 5, 6, 7, 8], FILETIME);
    let mut client = initiator("alice", "secret", ResponseKind::V2, false);
    let chal =
        ChallengeMessage::decode(&acc.handle_negotiate(&client.negotiate()).unwrap()).unwrap();
    use NegotiateFlags as F;
    assert_eq!(
        chal.flags,
        F::UNICODE
            | F::REQUEST_TARGET
            | F::NTLM
            | F::ALWAYS_SIGN
            | F::TARGET_TYPE_DOMAIN
            | F::EXTENDED_SESSIONSECURITY
            | F::TARGET_INFO
            | F::VERSION
            | F::NEGOTIATE_128
            | F::KEY_EXCH
            | F::NEGOTIATE_56
    );
    assert_eq!(chal.target_name, "EXAMPLE");
    assert_eq!(chal.server_challenge, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(chal.version, Some(acceptor::SERVER_VERSION));
    assert_eq!(
        chal.target_info.unwrap(),
        vec![
            AvPair::string(AvId::NB_DOMAIN_NAME, "EXAMPLE"),
            AvPair::string(AvId::NB_COMPUTER_NAME, "MAIL"),
            AvPair::string(AvId::DNS_DOMAIN_NAME, "example.test"),
            AvPair::string(AvId::DNS_COMPUTER_NAME, "mail.example.test"),
            AvPair::timestamp(FILETIME),
        ]
    );
    // A client that asks for little gets little: OEM, no ESS/KEY_EXCH/VERSION.
    let f = acceptor::choose_flags(F::OEM | F::NTLM);
    assert_eq!(
        f,
        F::OEM | F::NTLM | F::TARGET_INFO | F::REQUEST_TARGET | F::TARGET_TYPE_DOMAIN
    );
}

#[test]
fn right_password_succeeds_for_every_kind() {
    for (prefer, mic) in [
        (ResponseKind::V1, false),
        (ResponseKind::V1ExtendedSessionSecurity, false),
        (ResponseKind::V2, false),
        (ResponseKind::V2, true),
    ] {
        let client = initiator("alice", "secret", prefer, mic);
        let ok = exchange(client, |_| {}).unwrap_or_else(|e| panic!("{prefer:?}/{mic}: {e}"));
        assert_eq!(ok.kind, prefer);
        assert_eq!(ok.user, "alice");
        assert_eq!(ok.domain, "EXAMPLE");
        assert_eq!(ok.workstation, "WS1");
        let expected_sbk = match prefer {
            ResponseKind::V2 => {
                // Recompute from the parts: proof over the client's temp.
                let mut c = initiator("alice", "secret", prefer, mic);
                let mut acc = NtlmAcceptor::new(config(), [1, 2, 3, 4, 5, 6, 7, 8], FILETIME);
                let chal = acc.handle_negotiate(&c.negotiate()).unwrap();
                let auth =
                    AuthenticateMessage::decode(&c.handle_challenge(&chal).unwrap()).unwrap();
                let key = crypto::ntowf_v2("secret", "alice", "EXAMPLE");
                crypto::hmac_md5(&key, &[&auth.nt_response[..16]])
            }
            _ => crypto::md4(&crypto::ntowf_v1("secret")),
        };
        assert_eq!(ok.session_base_key, expected_sbk);
    }
}

#[test]
fn v2_client_uses_server_timestamp_and_zero_lm() {
    let mut c = initiator("alice", "secret", ResponseKind::V2, false);
    let mut acc = NtlmAcceptor::new(config(), [1; 8], FILETIME);
    let chal = acc.handle_negotiate(&c.negotiate()).unwrap();
    let auth = AuthenticateMessage::decode(&c.handle_challenge(&chal).unwrap()).unwrap();
    assert_eq!(auth.lm_response, vec![0u8; 24]);
    let v2 = auth.ntlm_v2_response().unwrap().unwrap();
    assert_eq!(v2.timestamp, FILETIME);
    assert_eq!(v2.client_challenge, [0xaa; 8]);
    assert_eq!(c.kind(), Some(ResponseKind::V2));
    // KEY_EXCH was negotiated: the exported key is the client's random session key.
    assert_eq!(c.exported_session_key(), Some([0x55; 16]));
}

#[test]
fn wrong_password_or_user_fails_for_every_kind() {
    for (prefer, mic) in [
        (ResponseKind::V1, false),
        (ResponseKind::V1ExtendedSessionSecurity, false),
        (ResponseKind::V2, false),
        (ResponseKind::V2, true),
    ] {
        assert_eq!(
            exchange(initiator("alice", "Secret", prefer, mic), |_| {}),
            Err(NtlmError::WrongPassword),
            "{prefer:?}"
        );
        // bob's name with alice's password.
        assert_eq!(
            exchange(initiator("bob", "secret", prefer, mic), |_| {}),
            Err(NtlmError::WrongPassword)
        );
        assert_eq!(
            exchange(initiator("mallory", "secret", prefer, mic), |_| {}),
            Err(NtlmError::UnknownUser)
        );
    }
}

/// Offset of the NT response in an encoded AUTHENTICATE.
fn nt_offset(auth: &[u8]) -> usize {
    u32::from_le_bytes(auth[24..28].try_into().unwrap()) as usize
}

#[test]
fn tampered_responses_fail() {
    // NTProofStr.
    let r = exchange(initiator("alice", "secret", ResponseKind::V2, false), |a| {
        let at = nt_offset(a);
        a[at] ^= 1;
    });
    assert_eq!(r, Err(NtlmError::WrongPassword));
    // A byte of temp (the client challenge inside the blob).
    let r = exchange(initiator("alice", "secret", ResponseKind::V2, true), |a| {
        let at = nt_offset(a) + 16 + 16;
        a[at] ^= 1;
    });
    assert_eq!(r, Err(NtlmError::WrongPassword));
    // The MIC itself.
    let r = exchange(initiator("alice", "secret", ResponseKind::V2, true), |a| {
        a[80] ^= 0x80;
    });
    assert_eq!(r, Err(NtlmError::MicMismatch));
    // The workstation name (covered by the MIC only).
    let r = exchange(initiator("alice", "secret", ResponseKind::V2, true), |a| {
        let at = u32::from_le_bytes(a[48..52].try_into().unwrap()) as usize;
        a[at] ^= 0x01;
    });
    assert_eq!(r, Err(NtlmError::MicMismatch));
    // The encrypted session key changes the exported key, hence the MIC.
    let r = exchange(initiator("alice", "secret", ResponseKind::V2, true), |a| {
        let n = a.len();
        a[n - 1] ^= 1;
    });
    assert_eq!(r, Err(NtlmError::MicMismatch));
    // NTLMv1 and v1+ESS responses.
    for prefer in [ResponseKind::V1, ResponseKind::V1ExtendedSessionSecurity] {
        let r = exchange(initiator("alice", "secret", prefer, false), |a| {
            let at = nt_offset(a) + 23;
            a[at] ^= 1;
        });
        assert_eq!(r, Err(NtlmError::WrongPassword));
    }
    // ESS: the client challenge travels in the LM response.
    let r = exchange(
        initiator(
            "alice",
            "secret",
            ResponseKind::V1ExtendedSessionSecurity,
            false,
        ),
        |a| {
            let at = u32::from_le_bytes(a[16..20].try_into().unwrap()) as usize;
            a[at] ^= 1;
        },
    );
    assert_eq!(r, Err(NtlmError::WrongPassword));
}

fn auth_message(lm: Vec<u8>, nt: Vec<u8>, user: &str, flags: NegotiateFlags) -> Vec<u8> {
    AuthenticateMessage {
        flags,
        lm_response: lm,
        nt_response: nt,
        domain: "EXAMPLE".into(),
        user: user.into(),
        workstation: String::new(),
        encrypted_random_session_key: Vec::new(),
        version: None,
        mic: None,
    }
    .encode()
}

fn challenged() -> NtlmAcceptor {
    let mut acc = NtlmAcceptor::new(config(), [1; 8], FILETIME);
    acc.handle_negotiate(&initiator("a", "b", ResponseKind::V2, false).negotiate())
        .unwrap();
    acc
}

#[test]
fn anonymous_lm_only_and_odd_lengths_are_refused() {
    let u = NegotiateFlags::UNICODE | NegotiateFlags::NTLM;
    let cases = [
        (
            auth_message(vec![], vec![], "", u),
            NtlmError::AnonymousRefused,
        ),
        (
            auth_message(vec![0], vec![], "alice", u),
            NtlmError::AnonymousRefused,
        ),
        (
            auth_message(vec![], vec![], "alice", u | NegotiateFlags::ANONYMOUS),
            NtlmError::AnonymousRefused,
        ),
        (
            auth_message(
                crypto::ntlm_v1("secret", &[1; 8]).lm.to_vec(),
                vec![],
                "alice",
                u,
            ),
            NtlmError::NoNtResponse,
        ),
        (
            auth_message(vec![], vec![1; 20], "alice", u),
            NtlmError::BadNtResponseLength(20),
        ),
        (
            auth_message(vec![], vec![1; 30], "alice", u),
            NtlmError::MalformedNtlmV2Response,
        ),
    ];
    for (msg, want) in cases {
        assert_eq!(
            challenged().handle_authenticate(&msg, &directory),
            Err(want)
        );
    }
    // A correct plain NTLMv1 response built by hand passes; the LM response is not needed.
    let nt = crypto::ntlm_v1("secret", &[1; 8]).nt.to_vec();
    let ok = challenged()
        .handle_authenticate(&auth_message(vec![], nt, "alice", u), &directory)
        .unwrap();
    assert_eq!(ok.kind, ResponseKind::V1);
}

#[test]
fn sequence_errors() {
    let mut acc = NtlmAcceptor::new(config(), [1; 8], FILETIME);
    let auth = spec_authenticate();
    assert!(matches!(
        acc.handle_authenticate(&auth, &directory),
        Err(NtlmError::OutOfSequence {
            expected: "NEGOTIATE",
            ..
        })
    ));
    // Still usable after that.
    let mut client = initiator("alice", "secret", ResponseKind::V2, true);
    let neg = client.negotiate();
    let chal = acc.handle_negotiate(&neg).unwrap();
    assert!(matches!(
        acc.handle_negotiate(&neg),
        Err(NtlmError::OutOfSequence { .. })
    ));
    let auth = client.handle_challenge(&chal).unwrap();
    assert!(matches!(
        client.handle_challenge(&chal),
        Err(NtlmError::OutOfSequence { .. })
    ));
    assert!(acc.handle_authenticate(&auth, &directory).is_ok());
    assert!(!acc.has_negotiated());
    assert!(matches!(
        acc.handle_authenticate(&auth, &directory),
        Err(NtlmError::OutOfSequence { .. })
    ));
    // The initiator needs its NEGOTIATE first.
    let mut fresh = initiator("alice", "secret", ResponseKind::V2, false);
    assert!(matches!(
        fresh.handle_challenge(&chal),
        Err(NtlmError::OutOfSequence { .. })
    ));
}

#[test]
fn oem_only_client_interoperates() {
    // With a MIC, the NEGOTIATE edited in transit is detected.
    let mut client = initiator("alice", "secret", ResponseKind::V2, true);
    let mut neg = client.negotiate();
    neg[12] &= !0x01;
    let mut acc = NtlmAcceptor::new(config(), [9; 8], FILETIME);
    let chal = acc.handle_negotiate(&neg).unwrap();
    let auth = client.handle_challenge(&chal).unwrap();
    assert_eq!(
        acc.handle_authenticate(&auth, &directory),
        Err(NtlmError::MicMismatch)
    );
    // Without one, the OEM fallback works end to end.
    let mut client = initiator("alice", "secret", ResponseKind::V2, false);
    let mut neg = client.negotiate();
    // Clear NEGOTIATE_UNICODE in transit: the server must fall back to OEM.
    neg[12] &= !0x01;
    let mut acc = NtlmAcceptor::new(config(), [9; 8], FILETIME);
    let chal = acc.handle_negotiate(&neg).unwrap();
    let c = ChallengeMessage::decode(&chal).unwrap();
    assert!(c.flags.contains(NegotiateFlags::OEM));
    assert!(!c.flags.contains(NegotiateFlags::UNICODE));
    assert_eq!(&chal[56..63], b"EXAMPLE");
    let auth = client.handle_challenge(&chal).unwrap();
    let a = AuthenticateMessage::decode(&auth).unwrap();
    assert!(!a.flags.contains(NegotiateFlags::UNICODE));
    let ok = acc.handle_authenticate(&auth, &directory).unwrap();
    assert_eq!(ok.user, "alice");
}

#[test]
fn v1_client_falls_back_when_server_lacks_ess() {
    // The server echoes ESS only when asked; a V1 client does not ask.
    let client = initiator("bob", "hunter2", ResponseKind::V1, false);
    assert_eq!(exchange(client, |_| {}).unwrap().kind, ResponseKind::V1);
}

/// Re-encodes an AUTHENTICATE (without a MIC) with another encrypted session key.
fn with_session_key(auth: &mut Vec<u8>, key: Vec<u8>) {
    let mut m = AuthenticateMessage::decode(auth).unwrap();
    m.encrypted_random_session_key = key;
    *auth = m.encode();
}

/// [MS-NLMP] §3.2.5.1.2: the ExportedSessionKey is the decrypted random session key only
/// when KEY_EXCH was agreed and a key was sent; otherwise the KeyExchangeKey.
#[test]
fn exported_session_key_follows_key_exchange() {
    use NegotiateFlags as F;
    for prefer in [
        ResponseKind::V1,
        ResponseKind::V1ExtendedSessionSecurity,
        ResponseKind::V2,
    ] {
        // The KeyExchangeKey of this exchange, recomputed from its parts.
        let kx_of = |ok: &Authenticated, auth: &[u8]| match prefer {
            ResponseKind::V2 => ok.session_base_key,
            _ => crypto::kxkey_v1(
                ok.flags,
                &ok.session_base_key,
                &AuthenticateMessage::decode(auth).unwrap().lm_response,
                &[1, 2, 3, 4, 5, 6, 7, 8],
                &crypto::lmowf_v1("secret"),
            ),
        };
        let run = |drop: F, edit: &dyn Fn(&mut Vec<u8>)| {
            let mut client = initiator("alice", "secret", prefer, false).requesting(F(0), drop);
            let mut acc = NtlmAcceptor::new(config(), [1, 2, 3, 4, 5, 6, 7, 8], FILETIME);
            let chal = acc.handle_negotiate(&client.negotiate()).unwrap();
            let mut auth = client.handle_challenge(&chal).unwrap();
            edit(&mut auth);
            let result = acc.handle_authenticate(&auth, &directory);
            (result, auth, client)
        };

        // Agreed and sent: the client's random session key.
        let (ok, _, client) = run(F(0), &|_| {});
        let ok = ok.unwrap();
        assert_eq!(ok.exported_session_key, [0x55; 16], "{prefer:?}");
        assert_eq!(Some(ok.flags), client.negotiated_flags());
        assert!(ok.flags.contains(F::KEY_EXCH));

        // Not agreed, though the client sends a key anyway: the KeyExchangeKey.
        let (ok, auth, client) = run(F::KEY_EXCH, &|a| with_session_key(a, vec![0x77; 16]));
        let ok = ok.unwrap();
        assert!(!ok.flags.contains(F::KEY_EXCH));
        assert_eq!(ok.exported_session_key, kx_of(&ok, &auth), "{prefer:?}");
        assert_eq!(Some(ok.exported_session_key), client.exported_session_key());

        // Agreed but no key sent: the KeyExchangeKey too.
        let (ok, auth, _) = run(F(0), &|a| with_session_key(a, Vec::new()));
        let ok = ok.unwrap();
        assert!(ok.flags.contains(F::KEY_EXCH));
        assert_eq!(ok.exported_session_key, kx_of(&ok, &auth), "{prefer:?}");

        // A key that is not 16 octets.
        let (result, _, _) = run(F(0), &|a| with_session_key(a, vec![0x77; 15]));
        assert_eq!(result, Err(NtlmError::BadSessionKeyLength(15)));
    }
}

#[test]
fn sign_and_seal_are_echoed_when_asked() {
    use NegotiateFlags as F;
    let f = acceptor::choose_flags(F::UNICODE | F::NTLM | F::SIGN | F::SEAL);
    assert!(f.contains(F::SIGN | F::SEAL));
    assert!(!acceptor::choose_flags(F::UNICODE | F::NTLM | F::SIGN).contains(F::SEAL));
    // The initiator asks for them on request, and can leave out defaults.
    let mut client = initiator("alice", "secret", ResponseKind::V2, false)
        .requesting(F::SIGN | F::SEAL, F::KEY_EXCH | F::VERSION);
    let neg = NegotiateMessage::decode(&client.negotiate()).unwrap();
    assert!(neg.flags.contains(F::SIGN | F::SEAL | F::NTLM));
    assert!(!neg.flags.contains(F::KEY_EXCH));
    assert!(!neg.flags.contains(F::VERSION));
}

// ---- fuzz entry points on sample data -------------------------------------------------

#[test]
fn fuzz_decode_samples() {
    let (with_mic, _) = v2_auth_with_mic();
    let mut neg = initiator("a", "b", ResponseKind::V2, false);
    let mut v1 = initiator("alice", "secret", ResponseKind::V1, false);
    let mut acc = NtlmAcceptor::new(config(), [3; 8], FILETIME);
    let v1_chal = acc.handle_negotiate(&v1.negotiate()).unwrap();
    let v1_auth = v1.handle_challenge(&v1_chal).unwrap();
    let samples = [
        v1_chal,
        v1_auth,
        spec_challenge(),
        spec_authenticate(),
        with_mic,
        neg.negotiate(),
        vec![],
        b"NTLMSSP\0".to_vec(),
        b"NTLMSSP\0\x03\0\0\0".to_vec(),
        vec![0xff; 100],
    ];
    for s in &samples {
        fuzz_decode(s);
        // Every prefix and single-bit flips must not panic either.
        for n in 0..s.len() {
            fuzz_decode(&s[..n]);
        }
        for i in 0..s.len() {
            let mut t = s.clone();
            t[i] ^= 0x80;
            fuzz_decode(&t);
        }
    }
}

#[test]
fn fuzz_handshake_samples() {
    // Untampered, every mode (the function asserts success / failure itself).
    for sel in 0u8..16 {
        fuzz_handshake(&[sel]);
    }
    // Deterministic pseudo-random tampering.
    let mut rng = crate::rng::SeededRng::new(42);
    for _ in 0..300 {
        let mut data: [u8; 13] = rng.bytes();
        data[1] %= 4;
        data[3] = 0;
        fuzz_handshake(&data);
    }
}

/// The ANONYMOUS flag and an empty user name each refuse on their own, even beside a
/// correct NT response.
#[test]
fn anonymous_flag_or_empty_user_alone_refuse() {
    let u = NegotiateFlags::UNICODE | NegotiateFlags::NTLM;
    let nt = crypto::ntlm_v1("secret", &[1; 8]).nt.to_vec();
    for (user, flags) in [("alice", u | NegotiateFlags::ANONYMOUS), ("", u)] {
        assert_eq!(
            challenged()
                .handle_authenticate(&auth_message(vec![], nt.clone(), user, flags), &directory),
            Err(NtlmError::AnonymousRefused),
            "{user:?} {flags:?}"
        );
    }
}

#[test]
fn acceptor_reports_its_challenge_and_what_it_expects() {
    let mut acc = NtlmAcceptor::new(config(), [1, 2, 3, 4, 5, 6, 7, 8], FILETIME);
    assert_eq!(acc.server_challenge(), [1, 2, 3, 4, 5, 6, 7, 8]);
    let mut client = initiator("alice", "secret", ResponseKind::V2, false);
    let neg = client.negotiate();
    let chal = acc.handle_negotiate(&neg).unwrap();
    assert_eq!(
        acc.handle_negotiate(&neg),
        Err(NtlmError::OutOfSequence {
            expected: "AUTHENTICATE",
            got: "NEGOTIATE"
        })
    );
    let auth = client.handle_challenge(&chal).unwrap();
    acc.handle_authenticate(&auth, &directory).unwrap();
    assert_eq!(
        acc.handle_negotiate(&neg),
        Err(NtlmError::OutOfSequence {
            expected: "nothing (exchange finished)",
            got: "NEGOTIATE"
        })
    );
}

/// A client without credentials sends [MS-NLMP] 3.1.5.1.2's anonymous AUTHENTICATE
/// (ANONYMOUS flag, LM response Z(1), empty NT response, no MIC) and the acceptor refuses
/// it: what a web tier's network logon offers a second hop over NTLM.
#[test]
fn a_client_without_credentials_authenticates_anonymously_and_is_refused() {
    let mut client = NtlmInitiator::new(
        Credentials::anonymous(),
        InitiatorOptions::fixed(0xaa, 0x55, ResponseKind::V2, true),
    );
    let mut acc = NtlmAcceptor::new(config(), [1, 2, 3, 4, 5, 6, 7, 8], FILETIME);
    let chal = acc.handle_negotiate(&client.negotiate()).unwrap();
    let auth = client.handle_challenge(&chal).unwrap();
    let msg = AuthenticateMessage::decode(&auth).unwrap();
    assert!(msg.flags.contains(NegotiateFlags::ANONYMOUS));
    assert_eq!((msg.lm_response, msg.nt_response), (vec![0], vec![]));
    assert_eq!((msg.user.as_str(), msg.domain.as_str()), ("", ""));
    assert_eq!(msg.mic, None);
    assert_eq!(client.exported_session_key(), Some([0x55; 16]));
    assert_eq!(
        acc.handle_authenticate(&auth, &directory),
        Err(NtlmError::AnonymousRefused)
    );
    // A user with a password is not anonymous.
    assert!(!Credentials::example("alice", "secret").is_anonymous());
}
