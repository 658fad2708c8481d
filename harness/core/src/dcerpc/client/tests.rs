//! The client association against a scripted server written here, with an XOR "security
//! provider" standing in for NTLM: it signs with a keyed checksum over the PDU and a
//! sequence number, and "seals" by XOR-ing the stub, so every placement and range the
//! association hands the provider is checked.

use std::collections::VecDeque;
use std::ops::Range;

use harness_wire::dcerpc::call::REQUEST_HEADER_LEN;
use harness_wire::dcerpc::{AckReason, AuthType, BindNak, Response};

use super::*;
use crate::dcerpc::security::MessageProtection;

const KEY: u8 = 0x5a;
const SIG_LEN: usize = 16;

/// Both ends of the fake provider: the client and the scripted server each hold one.
struct Xor {
    /// What `step` answers, in order; a token from the server must be `challenge`.
    steps: VecDeque<ClientStep>,
    send_seq: u32,
    recv_seq: u32,
}

impl Xor {
    fn new(steps: Vec<ClientStep>) -> Xor {
        Xor {
            steps: steps.into(),
            send_seq: 0,
            recv_seq: 0,
        }
    }

    /// A 16-octet signature: version 1, an FNV-1a checksum of seq and PDU, seq.
    fn signature(seq: u32, pdu: &[u8]) -> Vec<u8> {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in seq.to_le_bytes().iter().chain(pdu) {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        let mut sig = vec![1, 0, 0, 0];
        sig.extend_from_slice(&h.to_le_bytes());
        sig.extend_from_slice(&seq.to_le_bytes());
        sig
    }

    fn xor(pdu: &mut [u8], stub: Range<usize>) {
        pdu[stub].iter_mut().for_each(|b| *b ^= KEY);
    }
}

impl MessageProtection for Xor {
    fn signature_len(&self, _level: AuthLevel) -> usize {
        SIG_LEN
    }

    fn wrap(
        &mut self,
        level: AuthLevel,
        pdu: &mut [u8],
        stub: Range<usize>,
    ) -> Result<Vec<u8>, SecurityError> {
        let sig = Xor::signature(self.send_seq, pdu);
        self.send_seq += 1;
        if level == AuthLevel::PKT_PRIVACY {
            Xor::xor(pdu, stub);
        }
        Ok(sig)
    }

    fn unwrap(
        &mut self,
        level: AuthLevel,
        pdu: &mut [u8],
        stub: Range<usize>,
        signature: &[u8],
    ) -> Result<(), SecurityError> {
        if signature.len() != SIG_LEN {
            return Err(SecurityError::MalformedSignature(signature.len()));
        }
        if level == AuthLevel::PKT_PRIVACY {
            Xor::xor(pdu, stub);
        }
        let want = Xor::signature(self.recv_seq, pdu);
        self.recv_seq += 1;
        if signature != want {
            return Err(SecurityError::BadSignature);
        }
        Ok(())
    }
}

impl ClientSecurity for Xor {
    fn auth_type(&self) -> AuthType {
        AuthType::NTLMSSP
    }

    fn initial_token(&mut self) -> Result<Vec<u8>, SecurityError> {
        Ok(b"negotiate".to_vec())
    }

    fn step(&mut self, token: &[u8]) -> Result<ClientStep, SecurityError> {
        if token != b"challenge" {
            return Err(SecurityError::BadToken("not the challenge".into()));
        }
        self.steps
            .pop_front()
            .ok_or(SecurityError::BadToken("no more legs".into()))
    }
}

fn iface() -> SyntaxId {
    SyntaxId::new(Uuid::new(0x1234_5678, 0x9abc, 0xdef0, [1; 8]), 3, 0)
}

fn context(context_id: u16) -> ContextElement {
    ContextElement {
        context_id,
        abstract_syntax: iface(),
        transfer_syntaxes: vec![SyntaxId::NDR20],
    }
}

fn accepted() -> ContextResult {
    ContextResult {
        result: AckResult::ACCEPTANCE,
        reason: AckReason::NOT_SPECIFIED,
        transfer_syntax: SyntaxId::NDR20,
    }
}

fn security(level: AuthLevel, steps: Vec<ClientStep>) -> BindSecurity {
    BindSecurity {
        provider: Box::new(Xor::new(steps)),
        level,
        auth_context_id: 7,
    }
}

fn auth3_step() -> ClientStep {
    ClientStep::Send {
        token: b"authenticate".to_vec(),
        expects_reply: false,
    }
}

fn verifier(level: AuthLevel, auth_value: &[u8]) -> AuthVerifier {
    AuthVerifier {
        auth_type: AuthType::NTLMSSP,
        auth_level: level,
        auth_context_id: 7,
        auth_value: auth_value.to_vec(),
    }
}

fn ack(results: Vec<ContextResult>, max_recv_frag: u16) -> BindAck {
    BindAck {
        max_xmit_frag: 4280,
        max_recv_frag,
        assoc_group_id: 0x5150,
        sec_addr: BindAck::sec_addr_for_port(135),
        results,
    }
}

fn fault_body(status: FaultStatus) -> PduBody {
    PduBody::Fault(Fault {
        alloc_hint: 0,
        context_id: 0,
        cancel_count: 0,
        flags: 0,
        status,
        stub: vec![],
    })
}

fn server_pdu(call_id: u32, body: PduBody, auth: Option<AuthVerifier>) -> Vec<u8> {
    let mut pdu = Pdu::new(call_id, PfcFlags::WHOLE, body);
    pdu.auth = auth;
    pdu.encode().unwrap()
}

/// Feeds `bytes` in chunks of `chunk` octets; returns the events or the first error.
fn feed(
    client: &mut ClientAssociation,
    bytes: &[u8],
    chunk: usize,
) -> Result<Vec<ClientEvent>, ClientError> {
    let mut events = Vec::new();
    for piece in bytes.chunks(chunk) {
        client.receive(piece, &mut events)?;
    }
    Ok(events)
}

/// The server's response fragments for one call, protected like the client's requests.
fn response_fragments(
    call_id: u32,
    stub: &[u8],
    max_frag: u16,
    server: Option<(&mut Xor, AuthLevel)>,
) -> Vec<u8> {
    let body = PduBody::Response(Response {
        alloc_hint: stub.len() as u32,
        context_id: 0,
        cancel_count: 0,
        stub: stub.to_vec(),
    });
    let mut pdu = Pdu::new(call_id, PfcFlags::WHOLE, body);
    let level = server.as_ref().map(|(_, l)| *l);
    pdu.auth = level.map(|l| verifier(l, &[0; SIG_LEN]));
    let mut out = Vec::new();
    let mut server = server;
    for f in fragment(&pdu, max_frag).unwrap() {
        let mut bytes = f.encode().unwrap();
        if let Some((sec, level)) = server.as_mut() {
            let end = bytes.len() - SIG_LEN;
            let stub = HEADER_LEN + RESPONSE_HEADER_LEN..end - SEC_TRAILER_LEN;
            let sig = sec.wrap(*level, &mut bytes[..end], stub).unwrap();
            bytes[end..].copy_from_slice(&sig);
        }
        out.extend(bytes);
    }
    out
}

/// The server's view of request fragments: verified and unsealed, then reassembled.
fn server_reads(fragments: &[Vec<u8>], server: Option<(&mut Xor, AuthLevel)>) -> Request {
    let mut server = server;
    let mut joiner = CallReassembler::new(1 << 20);
    let mut whole = None;
    for raw in fragments {
        let (mut pdu, len) = Pdu::decode(raw).unwrap();
        assert_eq!(len, raw.len());
        if let Some((sec, level)) = server.as_mut() {
            let v = pdu.auth.clone().expect("signed fragment");
            assert_eq!(v.auth_level, *level);
            let mut raw = raw.clone();
            let end = raw.len() - SIG_LEN;
            let stub = HEADER_LEN + REQUEST_HEADER_LEN..end - SEC_TRAILER_LEN;
            let (signed, sig) = raw.split_at_mut(end);
            sec.unwrap(*level, signed, stub, sig).unwrap();
            pdu = Pdu::decode(&raw).unwrap().0;
        } else {
            assert!(pdu.auth.is_none());
        }
        whole = joiner.push(pdu).unwrap();
    }
    match whole.expect("last fragment").body {
        PduBody::Request(r) => r,
        other => panic!("not a request: {other:?}"),
    }
}

/// A client bound without security on context 0.
fn bound_plain(config: ClientConfig) -> ClientAssociation {
    let mut client = ClientAssociation::new(config);
    client.bind(&[context(0)], None).unwrap();
    let events = feed(
        &mut client,
        &server_pdu(1, PduBody::BindAck(ack(vec![accepted()], 4280)), None),
        4096,
    )
    .unwrap();
    assert!(matches!(events[..], [ClientEvent::BindAcked(_)]));
    assert!(client.is_ready());
    client
}

/// A client bound at `level` through bind / bind_ack / auth3; also returns the server's
/// half of the fake provider.
fn bound_secure(level: AuthLevel, max_recv_frag: u16) -> (ClientAssociation, Xor) {
    let mut client = ClientAssociation::new(ClientConfig::default());
    client
        .bind(&[context(0)], Some(security(level, vec![auth3_step()])))
        .unwrap();
    let ack = server_pdu(
        1,
        PduBody::BindAck(ack(vec![accepted()], max_recv_frag)),
        Some(verifier(level, b"challenge")),
    );
    let events = feed(&mut client, &ack, 4096).unwrap();
    assert!(client.is_ready(), "{events:?}");
    (client, Xor::new(vec![]))
}

#[test]
fn unauthenticated_bind_call_and_response() {
    let mut client = ClientAssociation::new(ClientConfig::default());
    assert_eq!(
        client.call(0, 1, None, b"x"),
        Err(ClientError::NotReady("call before the bind finished"))
    );
    let bind = client.bind(&[context(0)], None).unwrap();
    let (pdu, _) = Pdu::decode(&bind).unwrap();
    assert_eq!(
        (pdu.call_id, pdu.flags, pdu.auth),
        (1, PfcFlags::WHOLE, None)
    );
    let PduBody::Bind(b) = pdu.body else {
        panic!("not a bind")
    };
    assert_eq!((b.max_xmit_frag, b.max_recv_frag), (4280, 4280));
    assert_eq!(b.contexts, vec![context(0)]);
    assert!(!client.is_ready());

    let events = feed(
        &mut client,
        &server_pdu(1, PduBody::BindAck(ack(vec![accepted()], 2048)), None),
        4096,
    )
    .unwrap();
    assert_eq!(
        events,
        vec![ClientEvent::BindAcked(BindAcked {
            results: vec![accepted()],
            max_xmit_frag: 2048,
            max_recv_frag: 4280,
            assoc_group_id: 0x5150,
            secondary_address: "135".into(),
            features: None,
            header_sign: false,
        })]
    );
    assert_eq!(client.transfer_syntax(0), Some(SyntaxId::NDR20));
    assert_eq!(client.max_xmit_frag(), 2048);

    let call = client.call(0, 3, None, b"ping").unwrap();
    assert_eq!((call.call_id, call.fragments.len()), (2, 1));
    let request = server_reads(&call.fragments, None);
    assert_eq!((request.opnum, &request.stub[..]), (3, &b"ping"[..]));
    assert_eq!(client.outstanding_calls(), 1);
    let events = feed(&mut client, &response_fragments(2, b"pong", 4280, None), 3).unwrap();
    assert_eq!(
        events,
        vec![ClientEvent::Response {
            call_id: 2,
            context_id: 0,
            stub: b"pong".to_vec()
        }]
    );
    assert_eq!(client.outstanding_calls(), 0);
    assert_eq!(
        client.call(1, 3, None, b""),
        Err(ClientError::UnknownContext(1))
    );
}

#[test]
fn object_uuid_rides_in_the_request() {
    let mut client = bound_plain(ClientConfig::default());
    let object = Uuid::new(9, 8, 7, [6; 8]);
    let call = client.call(0, 1, Some(object), b"abc").unwrap();
    let (pdu, _) = Pdu::decode(&call.fragments[0]).unwrap();
    assert!(pdu.flags.contains(PfcFlags::OBJECT_UUID));
    assert!(matches!(pdu.body, PduBody::Request(r) if r.object == Some(object)));
}

#[test]
fn bind_time_features_ride_a_third_context() {
    let config = ClientConfig {
        bind_time_features: Some(3),
        support_header_sign: true,
        ..ClientConfig::default()
    };
    let mut client = ClientAssociation::new(config);
    let ndr64 = ContextElement {
        context_id: 1,
        abstract_syntax: iface(),
        transfer_syntaxes: vec![SyntaxId::NDR64],
    };
    let bind = client.bind(&[context(0), ndr64], None).unwrap();
    let (pdu, _) = Pdu::decode(&bind).unwrap();
    assert!(pdu.flags.contains(PfcFlags::SUPPORT_HEADER_SIGN));
    let PduBody::Bind(b) = pdu.body else {
        panic!("not a bind")
    };
    assert_eq!(b.contexts.len(), 3);
    assert_eq!(b.contexts[2].context_id, 2);
    assert_eq!(b.contexts[2].abstract_syntax, iface());
    assert_eq!(
        b.contexts[2].transfer_syntaxes,
        vec![SyntaxId::bind_time_features(3)]
    );
    let rejected = ContextResult {
        result: AckResult::PROVIDER_REJECTION,
        reason: AckReason::PROPOSED_TRANSFER_SYNTAXES_NOT_SUPPORTED,
        transfer_syntax: SyntaxId::default(),
    };
    let negotiate = ContextResult {
        result: AckResult::NEGOTIATE_ACK,
        reason: AckReason(2),
        transfer_syntax: SyntaxId::default(),
    };
    let mut ack_pdu = Pdu::new(
        1,
        PfcFlags::WHOLE.with(PfcFlags::SUPPORT_HEADER_SIGN, true),
        PduBody::BindAck(ack(vec![accepted(), rejected.clone(), negotiate], 4280)),
    );
    ack_pdu.auth = None;
    let events = feed(&mut client, &ack_pdu.encode().unwrap(), 4096).unwrap();
    let [ClientEvent::BindAcked(acked)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(acked.results, vec![accepted(), rejected]);
    assert_eq!(acked.features, Some(2));
    assert!(acked.header_sign);
    assert_eq!(
        client.call(1, 0, None, b""),
        Err(ClientError::UnknownContext(1))
    );
}

#[test]
fn ntlm_shaped_legs_send_auth3_with_the_bind_call_id() {
    let mut client = ClientAssociation::new(ClientConfig::default());
    let bind = client
        .bind(
            &[context(0)],
            Some(security(AuthLevel::PKT_PRIVACY, vec![auth3_step()])),
        )
        .unwrap();
    let (pdu, _) = Pdu::decode(&bind).unwrap();
    assert_eq!(
        pdu.auth,
        Some(verifier(AuthLevel::PKT_PRIVACY, b"negotiate"))
    );
    let events = feed(
        &mut client,
        &server_pdu(
            1,
            PduBody::BindAck(ack(vec![accepted()], 4280)),
            Some(verifier(AuthLevel::PKT_PRIVACY, b"challenge")),
        ),
        4096,
    )
    .unwrap();
    let [ClientEvent::BindAcked(_), ClientEvent::Send(auth3)] = &events[..] else {
        panic!("{events:?}")
    };
    let (pdu, _) = Pdu::decode(auth3).unwrap();
    assert_eq!(pdu.call_id, 1);
    assert!(matches!(pdu.body, PduBody::Auth3(_)));
    assert_eq!(
        pdu.auth,
        Some(verifier(AuthLevel::PKT_PRIVACY, b"authenticate"))
    );
    assert!(client.is_ready());
}

#[test]
fn a_leg_expecting_a_reply_rides_an_alter_context() {
    let mut client = ClientAssociation::new(ClientConfig::default());
    let steps = vec![
        ClientStep::Send {
            token: b"more".to_vec(),
            expects_reply: true,
        },
        ClientStep::Done,
    ];
    client
        .bind(
            &[context(0)],
            Some(security(AuthLevel::PKT_INTEGRITY, steps)),
        )
        .unwrap();
    let level = AuthLevel::PKT_INTEGRITY;
    let events = feed(
        &mut client,
        &server_pdu(
            1,
            PduBody::BindAck(ack(vec![accepted()], 4280)),
            Some(verifier(level, b"challenge")),
        ),
        4096,
    )
    .unwrap();
    let [ClientEvent::BindAcked(_), ClientEvent::Send(alter)] = &events[..] else {
        panic!("{events:?}")
    };
    assert!(!client.is_ready());
    let (pdu, _) = Pdu::decode(alter).unwrap();
    assert_eq!(pdu.call_id, 2);
    assert!(matches!(&pdu.body, PduBody::AlterContext(b) if b.contexts == vec![context(0)]));
    assert_eq!(pdu.auth, Some(verifier(level, b"more")));
    let resp = server_pdu(
        2,
        PduBody::AlterContextResp(ack(vec![accepted()], 4280)),
        Some(verifier(level, b"challenge")),
    );
    let events = feed(&mut client, &resp, 4096).unwrap();
    assert!(matches!(events[..], [ClientEvent::AlterContextAcked(_)]));
    assert!(client.is_ready());
}

#[test]
fn sealed_requests_fragment_under_the_negotiated_size() {
    let (mut client, mut server) = bound_secure(AuthLevel::PKT_PRIVACY, MIN_FRAG);
    let stub: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let call = client.call(0, 28, None, &stub).unwrap();
    assert!(call.fragments.len() >= 4);
    for (i, f) in call.fragments.iter().enumerate() {
        assert!(f.len() <= usize::from(MIN_FRAG));
        let (pdu, _) = Pdu::decode(f).unwrap();
        assert_eq!(pdu.flags.contains(PfcFlags::FIRST_FRAG), i == 0);
        assert_eq!(
            pdu.flags.contains(PfcFlags::LAST_FRAG),
            i + 1 == call.fragments.len()
        );
        let PduBody::Request(r) = pdu.body else {
            panic!("not a request")
        };
        // Sealed: the plain stub is not on the wire.
        assert_ne!(r.stub[..16], stub[..16]);
    }
    let request = server_reads(&call.fragments, Some((&mut server, AuthLevel::PKT_PRIVACY)));
    assert_eq!(request.stub, stub);
    assert_eq!(request.opnum, 28);
}

#[test]
fn signed_responses_are_verified_and_reassembled_in_any_chunking() {
    for level in [AuthLevel::PKT_INTEGRITY, AuthLevel::PKT_PRIVACY] {
        for chunk in [1, 7, 1432, 100_000] {
            let (mut client, mut server) = bound_secure(level, 4280);
            let call = client.call(0, 1, None, b"q").unwrap();
            server_reads(&call.fragments, Some((&mut server, level)));
            let stub: Vec<u8> = (0..9000u32).map(|i| (i * 7) as u8).collect();
            let bytes = response_fragments(call.call_id, &stub, 1500, Some((&mut server, level)));
            let events = feed(&mut client, &bytes, chunk).unwrap();
            assert_eq!(
                events,
                vec![ClientEvent::Response {
                    call_id: call.call_id,
                    context_id: 0,
                    stub: stub.clone()
                }],
                "{level:?} in chunks of {chunk}"
            );
            // The sequence moves on: a second call verifies too.
            let call = client.call(0, 1, None, b"again").unwrap();
            assert_eq!(
                server_reads(&call.fragments, Some((&mut server, level))).stub,
                b"again"
            );
            let bytes = response_fragments(call.call_id, b"ok", 4280, Some((&mut server, level)));
            assert_eq!(feed(&mut client, &bytes, 4096).unwrap().len(), 1);
        }
    }
}

#[test]
fn connect_level_signs_nothing() {
    let (mut client, _) = bound_secure(AuthLevel::CONNECT, 4280);
    let call = client.call(0, 1, None, b"plain").unwrap();
    assert_eq!(server_reads(&call.fragments, None).stub, b"plain");
    let events = feed(
        &mut client,
        &response_fragments(call.call_id, b"r", 4280, None),
        9,
    )
    .unwrap();
    assert_eq!(events.len(), 1);
}

#[test]
fn faults_end_the_call_not_the_association() {
    let mut client = bound_plain(ClientConfig::default());
    let call = client.call(0, 99, None, b"").unwrap();
    // Half a response, then the fault for the same call: the half is dropped.
    let partial = response_fragments(call.call_id, &[1; 5000], 1432, None);
    let (_, first_len) = Pdu::decode(&partial).unwrap();
    let fault = Pdu::new(
        call.call_id,
        PfcFlags::WHOLE.with(PfcFlags::DID_NOT_EXECUTE, true),
        fault_body(FaultStatus::NCA_S_OP_RNG_ERROR),
    )
    .encode()
    .unwrap();
    let mut bytes = partial[..first_len].to_vec();
    bytes.extend(&fault);
    let events = feed(&mut client, &bytes, 4096).unwrap();
    assert_eq!(
        events,
        vec![ClientEvent::Fault {
            call_id: call.call_id,
            context_id: 0,
            status: FaultStatus::NCA_S_OP_RNG_ERROR,
            did_not_execute: true
        }]
    );
    assert_eq!(client.outstanding_calls(), 0);
    let call = client.call(0, 1, None, b"").unwrap();
    let events = feed(
        &mut client,
        &response_fragments(call.call_id, b"fine", 4280, None),
        4096,
    )
    .unwrap();
    assert_eq!(events.len(), 1);
}

#[test]
fn bind_nak_refuses_the_association() {
    let mut client = ClientAssociation::new(ClientConfig::default());
    client.bind(&[context(0)], None).unwrap();
    let nak = server_pdu(
        1,
        PduBody::BindNak(BindNak {
            reason: RejectReason::INVALID_AUTH_TYPE,
            versions: vec![(5, 0)],
        }),
        None,
    );
    let events = feed(&mut client, &nak, 4096).unwrap();
    assert_eq!(
        events,
        vec![ClientEvent::BindNak {
            reason: RejectReason::INVALID_AUTH_TYPE,
            versions: vec![(5, 0)]
        }]
    );
    assert!(!client.is_ready());
    assert!(matches!(
        client.call(0, 0, None, b""),
        Err(ClientError::NotReady(_))
    ));
    assert!(matches!(
        client.bind(&[context(0)], None),
        Err(ClientError::NotReady(_))
    ));
}

/// A fresh client after `bind`, fed `bytes`: the error it stops with.
fn bind_then(security: Option<BindSecurity>, bytes: &[u8]) -> ClientError {
    let mut client = ClientAssociation::new(ClientConfig::default());
    client.bind(&[context(0)], security).unwrap();
    let err = feed(&mut client, bytes, 4096).unwrap_err();
    // Dead from then on.
    assert_eq!(
        client.receive(&[], &mut Vec::new()),
        Err(ClientError::Failed(Box::new(err.clone())))
    );
    err
}

#[test]
fn lying_bind_acks_are_typed_errors() {
    let good = || ack(vec![accepted()], 4280);
    let wrong_call = server_pdu(9, PduBody::BindAck(good()), None);
    assert_eq!(
        bind_then(None, &wrong_call),
        ClientError::UnknownCallId { call_id: 9 }
    );
    let two = server_pdu(1, PduBody::BindAck(ack(vec![accepted(); 2], 4280)), None);
    assert_eq!(
        bind_then(None, &two),
        ClientError::ResultCount { offered: 1, got: 2 }
    );
    let mut other_syntax = accepted();
    other_syntax.transfer_syntax = SyntaxId::NDR64;
    let chose = server_pdu(1, PduBody::BindAck(ack(vec![other_syntax], 4280)), None);
    assert_eq!(
        bind_then(None, &chose),
        ClientError::TransferSyntaxNotOffered { context_id: 0 }
    );
    let tiny = server_pdu(1, PduBody::BindAck(ack(vec![accepted()], 100)), None);
    assert_eq!(
        bind_then(None, &tiny),
        ClientError::FragmentSizeTooSmall(100)
    );
    let alter_resp = server_pdu(1, PduBody::AlterContextResp(good()), None);
    assert!(matches!(
        bind_then(None, &alter_resp),
        ClientError::Unexpected { .. }
    ));
    let secure = || Some(security(AuthLevel::PKT_PRIVACY, vec![auth3_step()]));
    let no_token = server_pdu(1, PduBody::BindAck(good()), None);
    assert_eq!(
        bind_then(secure(), &no_token),
        ClientError::VerifierMismatch { call_id: 1 }
    );
    let other_level = server_pdu(
        1,
        PduBody::BindAck(good()),
        Some(verifier(AuthLevel::PKT_INTEGRITY, b"challenge")),
    );
    assert_eq!(
        bind_then(secure(), &other_level),
        ClientError::VerifierMismatch { call_id: 1 }
    );
    let bad_token = server_pdu(
        1,
        PduBody::BindAck(good()),
        Some(verifier(AuthLevel::PKT_PRIVACY, b"junk")),
    );
    assert!(matches!(
        bind_then(secure(), &bad_token),
        ClientError::Security(SecurityError::BadToken(_))
    ));
    let mut garbage = server_pdu(1, PduBody::BindAck(good()), None);
    garbage[0] = 4;
    assert!(matches!(bind_then(None, &garbage), ClientError::Decode(_)));
    let mut huge = garbage.clone();
    huge[0] = 5;
    huge[8..10].copy_from_slice(&60000u16.to_le_bytes());
    assert_eq!(
        bind_then(None, &huge),
        ClientError::FragmentTooLong {
            frag_length: 60000,
            max: 4280
        }
    );
    let request = server_pdu(
        1,
        PduBody::Request(Request {
            alloc_hint: 0,
            context_id: 0,
            opnum: 0,
            object: None,
            stub: vec![],
        }),
        None,
    );
    assert!(matches!(
        bind_then(None, &request),
        ClientError::Unexpected { .. }
    ));
}

#[test]
fn lying_responses_are_typed_errors() {
    // Nothing outstanding.
    let mut client = bound_plain(ClientConfig::default());
    assert_eq!(
        feed(&mut client, &response_fragments(5, b"x", 4280, None), 4096),
        Err(ClientError::UnknownCallId { call_id: 5 })
    );
    // Another context than the call's.
    let mut client = bound_plain(ClientConfig::default());
    let call = client.call(0, 1, None, b"").unwrap();
    let mut pdu = Pdu::decode(&response_fragments(call.call_id, b"x", 4280, None))
        .unwrap()
        .0;
    if let PduBody::Response(r) = &mut pdu.body {
        r.context_id = 4;
    }
    assert_eq!(
        feed(&mut client, &pdu.encode().unwrap(), 4096),
        Err(ClientError::ContextMismatch {
            call_id: 2,
            expected: 0,
            got: 4
        })
    );
    // Larger than the limit: refused while reassembling.
    let mut client = bound_plain(ClientConfig {
        max_response_stub: 3000,
        ..ClientConfig::default()
    });
    let call = client.call(0, 1, None, b"").unwrap();
    assert_eq!(
        feed(
            &mut client,
            &response_fragments(call.call_id, &[0; 5000], 1432, None),
            4096
        ),
        Err(ClientError::Reassembly(ReassemblyError::StubTooLarge {
            limit: 3000
        }))
    );
    // Fault for a call never made.
    let mut client = bound_plain(ClientConfig::default());
    let fault = server_pdu(77, fault_body(FaultStatus::NCA_S_PROTO_ERROR), None);
    assert_eq!(
        feed(&mut client, &fault, 4096),
        Err(ClientError::UnknownCallId { call_id: 77 })
    );
}

#[test]
fn tampered_or_unsigned_responses_are_refused() {
    let level = AuthLevel::PKT_PRIVACY;
    // A flipped stub octet.
    let (mut client, mut server) = bound_secure(level, 4280);
    let call = client.call(0, 1, None, b"q").unwrap();
    let mut bytes = response_fragments(
        call.call_id,
        b"secret reply",
        4280,
        Some((&mut server, level)),
    );
    bytes[HEADER_LEN + RESPONSE_HEADER_LEN] ^= 1;
    assert_eq!(
        feed(&mut client, &bytes, 4096),
        Err(ClientError::Security(SecurityError::BadSignature))
    );
    // No verifier at all.
    let (mut client, _) = bound_secure(level, 4280);
    let call = client.call(0, 1, None, b"q").unwrap();
    assert_eq!(
        feed(
            &mut client,
            &response_fragments(call.call_id, b"r", 4280, None),
            4096
        ),
        Err(ClientError::MissingVerifier { call_id: 2 })
    );
    // A verifier of another auth_context_id.
    let (mut client, mut server) = bound_secure(level, 4280);
    let call = client.call(0, 1, None, b"q").unwrap();
    let bytes = response_fragments(call.call_id, b"r", 4280, Some((&mut server, level)));
    let mut pdu = Pdu::decode(&bytes).unwrap().0;
    if let Some(v) = &mut pdu.auth {
        v.auth_context_id = 8;
    }
    assert_eq!(
        feed(&mut client, &pdu.encode().unwrap(), 4096),
        Err(ClientError::VerifierMismatch { call_id: 2 })
    );
    // A replayed response: the sequence number no longer matches.
    let (mut client, mut server) = bound_secure(level, 4280);
    let call = client.call(0, 1, None, b"q").unwrap();
    let bytes = response_fragments(call.call_id, b"r", 4280, Some((&mut server, level)));
    feed(&mut client, &bytes, 4096).unwrap();
    let call = client.call(0, 1, None, b"q").unwrap();
    let mut replay = Pdu::decode(&bytes).unwrap().0;
    replay.call_id = call.call_id;
    // Re-encoding keeps the old signature, made for the old call_id and sequence.
    assert_eq!(
        feed(&mut client, &replay.encode().unwrap(), 4096),
        Err(ClientError::Security(SecurityError::BadSignature))
    );
}

#[test]
fn caller_mistakes_are_refused() {
    let mut client = ClientAssociation::new(ClientConfig::default());
    assert!(matches!(
        client.bind(&[], None),
        Err(ClientError::InvalidArgument(_))
    ));
    let empty = ContextElement {
        transfer_syntaxes: vec![],
        ..context(0)
    };
    assert!(matches!(
        client.bind(&[empty], None),
        Err(ClientError::InvalidArgument(_))
    ));
    assert!(matches!(
        client.bind(&[context(0)], Some(security(AuthLevel::NONE, vec![]))),
        Err(ClientError::InvalidArgument(_))
    ));
    let mut client = bound_plain(ClientConfig::default());
    let alter = client.alter_context(&[context(1)]).unwrap();
    let (pdu, _) = Pdu::decode(&alter).unwrap();
    assert!(matches!(pdu.body, PduBody::AlterContext(_)));
    let events = feed(
        &mut client,
        &server_pdu(
            pdu.call_id,
            PduBody::AlterContextResp(ack(vec![accepted()], 4280)),
            None,
        ),
        4096,
    )
    .unwrap();
    assert!(matches!(events[..], [ClientEvent::AlterContextAcked(_)]));
    assert_eq!(client.transfer_syntax(1), Some(SyntaxId::NDR20));
    assert!(client.call(1, 0, None, b"").is_ok());
}

#[test]
fn the_server_may_announce_larger_fragments_than_offered() {
    // Samba 4.17 answers an offer of 1432 with max_xmit_frag 2048 and sends that size.
    let mut client = ClientAssociation::new(ClientConfig {
        max_xmit_frag: MIN_FRAG,
        max_recv_frag: MIN_FRAG,
        ..ClientConfig::default()
    });
    client.bind(&[context(0)], None).unwrap();
    let mut samba_ack = ack(vec![accepted()], 2048);
    samba_ack.max_xmit_frag = 2048;
    let events = feed(
        &mut client,
        &server_pdu(1, PduBody::BindAck(samba_ack), None),
        4096,
    )
    .unwrap();
    let [ClientEvent::BindAcked(acked)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!((acked.max_xmit_frag, acked.max_recv_frag), (MIN_FRAG, 2048));
    let call = client.call(0, 1, None, b"").unwrap();
    let bytes = response_fragments(call.call_id, &[7; 5000], 2048, None);
    assert_eq!(Pdu::decode(&bytes).unwrap().1, 2048);
    let events = feed(&mut client, &bytes, 4096).unwrap();
    assert!(matches!(&events[..], [ClientEvent::Response { stub, .. }] if stub.len() == 5000));
    // Beyond what it announced: refused.
    let call = client.call(0, 1, None, b"").unwrap();
    let bytes = response_fragments(call.call_id, &[7; 5000], 2064, None);
    assert_eq!(
        feed(&mut client, &bytes, 4096),
        Err(ClientError::FragmentTooLong {
            frag_length: 2064,
            max: 2048
        })
    );
}

#[test]
fn a_second_security_context_needs_its_own_id_and_a_ready_association() {
    let (mut client, _) = bound_secure(AuthLevel::PKT_INTEGRITY, 4280);
    // auth_context_id 7 is the bind's.
    let again = client.add_security(&[context(0)], security(AuthLevel::PKT_INTEGRITY, vec![]));
    assert!(
        matches!(again, Err(ClientError::InvalidArgument(_))),
        "{again:?}"
    );
    let mut other = security(AuthLevel::PKT_INTEGRITY, vec![auth3_step()]);
    other.auth_context_id = 8;
    let alter = client.add_security(&[context(0)], other).unwrap();
    let (pdu, _) = Pdu::decode(&alter).unwrap();
    assert_eq!(pdu.packet_type(), PacketType::ALTER_CONTEXT);
    assert_eq!(pdu.auth.as_ref().map(|v| v.auth_context_id), Some(8));
    // Until its legs are done nothing else goes out.
    assert!(!client.is_ready());
    assert!(matches!(
        client.call_as(0, Some(7), 1, None, b"x"),
        Err(ClientError::NotReady(_))
    ));
    let mut reply = verifier(AuthLevel::PKT_INTEGRITY, b"challenge");
    reply.auth_context_id = 8;
    let resp = server_pdu(
        pdu.call_id,
        PduBody::AlterContextResp(ack(vec![accepted()], 4280)),
        Some(reply),
    );
    let events = feed(&mut client, &resp, 4096).unwrap();
    let auth3 = match events.as_slice() {
        [ClientEvent::AlterContextAcked(_), ClientEvent::Send(auth3)] => auth3.clone(),
        other => panic!("{other:?}"),
    };
    let (auth3, _) = Pdu::decode(&auth3).unwrap();
    assert_eq!(
        auth3.call_id, pdu.call_id,
        "auth3 rides the alter's call_id"
    );
    assert_eq!(auth3.auth.map(|v| v.auth_context_id), Some(8));
    assert!(client.is_ready());
    // Each call names its context; one the association does not have is refused.
    let call = client.call_as(0, Some(8), 1, None, b"x").unwrap();
    let (request, _) = Pdu::decode(&call.fragments[0]).unwrap();
    assert_eq!(request.auth.map(|v| v.auth_context_id), Some(8));
    let call = client.call(0, 1, None, b"x").unwrap();
    let (request, _) = Pdu::decode(&call.fragments[0]).unwrap();
    assert_eq!(request.auth.map(|v| v.auth_context_id), Some(7));
    assert!(matches!(
        client.call_as(0, Some(9), 1, None, b"x"),
        Err(ClientError::InvalidArgument(_))
    ));
    assert!(matches!(
        client.call_as(0, None, 1, None, b"x"),
        Err(ClientError::InvalidArgument(_))
    ));
}
