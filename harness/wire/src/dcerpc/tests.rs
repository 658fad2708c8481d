//! Round trips of every PDU type, and bad input: truncation, lying lengths, wrong
//! padding, unknown PTYPEs, big-endian bodies, reassembly limits and splitting.

use super::auth::{ERR_AUTH_LENGTH, ERR_AUTH_PAD};
use super::bind::ERR_NO_CONTEXTS;
use super::header::ERR_BIG_ENDIAN;
use super::pdu::ERR_BODY_SHORT;
use super::vectors::{hex, BIND_ACK, BIND_THREE_CONTEXTS, NTLM_BIND};
use super::*;
use crate::codec::DecodeError;

fn ntlm_verifier(len: usize) -> AuthVerifier {
    AuthVerifier {
        auth_type: AuthType::NTLMSSP,
        auth_level: AuthLevel::PKT_PRIVACY,
        auth_context_id: 1,
        auth_value: vec![0x42; len],
    }
}

fn request(stub_len: usize) -> Request {
    Request {
        alloc_hint: stub_len as u32,
        context_id: 1,
        opnum: 11,
        object: None,
        stub: (0..stub_len).map(|i| i as u8).collect(),
    }
}

fn bind() -> Bind {
    Bind {
        max_xmit_frag: 5840,
        max_recv_frag: 5840,
        assoc_group_id: 9,
        contexts: vec![ContextElement {
            context_id: 0,
            abstract_syntax: SyntaxId::new(Uuid::new(1, 2, 3, [4; 8]), 4, 0),
            transfer_syntaxes: vec![
                SyntaxId::NDR20,
                SyntaxId::NDR64,
                SyntaxId::bind_time_features(1),
            ],
        }],
    }
}

fn every_body() -> Vec<PduBody> {
    let ack = BindAck {
        max_xmit_frag: 4280,
        max_recv_frag: 4280,
        assoc_group_id: 0x5307,
        sec_addr: BindAck::sec_addr_for_port(6001),
        results: vec![ContextResult {
            result: AckResult::ACCEPTANCE,
            reason: AckReason::NOT_SPECIFIED,
            transfer_syntax: SyntaxId::NDR64,
        }],
    };
    let mut with_object = request(3);
    with_object.object = Some(Uuid::new(0xdead_beef, 1, 2, [3; 8]));
    vec![
        PduBody::Request(request(0)),
        PduBody::Request(request(37)),
        PduBody::Request(with_object),
        PduBody::Response(Response {
            alloc_hint: 5,
            context_id: 1,
            cancel_count: 0,
            stub: vec![1; 5],
        }),
        PduBody::Fault(Fault {
            alloc_hint: 0,
            context_id: 1,
            cancel_count: 0,
            flags: 1,
            status: FaultStatus::NCA_S_UNK_IF,
            stub: vec![9; 3],
        }),
        PduBody::Bind(bind()),
        PduBody::AlterContext(bind()),
        PduBody::BindAck(ack.clone()),
        PduBody::AlterContextResp(BindAck {
            sec_addr: vec![],
            ..ack
        }),
        PduBody::BindNak(BindNak {
            reason: RejectReason::INVALID_AUTH_TYPE,
            versions: vec![(5, 0)],
        }),
        PduBody::Auth3(Auth3::default()),
        PduBody::Shutdown,
        PduBody::CoCancel,
        PduBody::Orphaned,
        PduBody::Other {
            packet_type: PacketType::RTS,
            auth_length: 0,
            bytes: vec![0, 0, 1, 0],
        },
        PduBody::Other {
            packet_type: PacketType(0x7f),
            auth_length: 0,
            bytes: vec![],
        },
    ]
}

#[test]
fn every_pdu_type_round_trips_with_and_without_a_verifier() {
    for body in every_body() {
        for auth in [None, Some(ntlm_verifier(16)), Some(ntlm_verifier(3))] {
            let is_other = matches!(body, PduBody::Other { .. });
            if is_other && auth.is_some() {
                continue;
            }
            let mut pdu = Pdu::new(77, PfcFlags::WHOLE, body.clone());
            pdu.auth = auth.clone();
            if let PduBody::Request(Request {
                object: Some(_), ..
            }) = &pdu.body
            {
                pdu.flags.set(PfcFlags::OBJECT_UUID, true);
            }
            let bytes = pdu.encode().unwrap();
            assert_eq!(
                usize::from(u16::from_le_bytes([bytes[8], bytes[9]])),
                bytes.len()
            );
            let auth_len = auth.as_ref().map_or(0, |a| a.auth_value.len());
            assert_eq!(
                usize::from(u16::from_le_bytes([bytes[10], bytes[11]])),
                auth_len
            );
            if auth.is_some() {
                let trailer_at = bytes.len() - auth_len - 8;
                // A stub pads to 16 from its own start; other bodies to 4.
                let (stub_start, align) = match &body {
                    PduBody::Request(r) => (16 + r.header_len(), 16),
                    PduBody::Response(_) => (16 + 8, 16),
                    PduBody::Fault(_) => (16 + 16, 16),
                    _ => (16, 4),
                };
                assert_eq!((trailer_at - stub_start) % align, 0, "{body:?}");
            }
            let mut stream = bytes.clone();
            stream.extend_from_slice(b"next PDU");
            assert_eq!(Pdu::decode(&stream), Ok((pdu, bytes.len())), "{body:?}");
        }
    }
}

#[test]
fn truncated_pdus_are_incomplete_by_what_is_missing() {
    let bytes = hex(BIND_THREE_CONTEXTS);
    for cut in [0, 1, 15, 16, 17, 100, bytes.len() - 1] {
        let got = Pdu::decode(&bytes[..cut]);
        assert!(
            matches!(got, Err(DecodeError::Incomplete { .. })),
            "cut at {cut}: {got:?}"
        );
    }
    assert_eq!(
        Pdu::decode(&bytes[..100]),
        Err(DecodeError::Incomplete {
            needed: bytes.len() - 100
        })
    );
}

#[test]
fn frag_length_lying_either_way() {
    let mut bytes = hex(BIND_THREE_CONTEXTS);
    // Too long: the decoder waits for octets that never come.
    bytes[8] += 4;
    assert_eq!(
        Pdu::decode(&bytes),
        Err(DecodeError::Incomplete { needed: 4 })
    );
    // Too short: the body does not fit; the octets after it are not read.
    bytes[8] -= 24;
    assert_eq!(
        Pdu::decode(&bytes),
        Err(DecodeError::Invalid(ERR_BODY_SHORT))
    );
    let mut short = hex(BIND_THREE_CONTEXTS);
    short[8] = 20;
    short[9] = 0;
    assert_eq!(
        Pdu::decode(&short),
        Err(DecodeError::Invalid(ERR_BODY_SHORT))
    );
}

#[test]
fn auth_length_beyond_the_pdu_and_wrong_pad() {
    let mut bytes = hex(NTLM_BIND);
    let len = bytes.len();
    // auth_length 0x20 is right; one more than the fragment holds after the header:
    let too_big = (len - 16 - 8 + 1) as u16;
    bytes[10..12].copy_from_slice(&too_big.to_le_bytes());
    assert_eq!(
        Pdu::decode(&bytes),
        Err(DecodeError::Invalid(ERR_AUTH_LENGTH))
    );
    bytes[10..12].copy_from_slice(&u16::MAX.to_le_bytes());
    assert_eq!(
        Pdu::decode(&bytes),
        Err(DecodeError::Invalid(ERR_AUTH_LENGTH))
    );
    // auth_pad_length larger than the body before the trailer.
    let mut padded = hex(NTLM_BIND);
    padded[len - 32 - 8 + 2] = 0xff;
    assert_eq!(
        Pdu::decode(&padded),
        Err(DecodeError::Invalid(ERR_AUTH_PAD))
    );
    // A pad that eats into the request header (an empty stub needs no pad: the trailer
    // follows the 8-octet request header at once).
    let mut pdu = Pdu::new(1, PfcFlags::WHOLE, PduBody::Request(request(0)));
    pdu.auth = Some(ntlm_verifier(16));
    let mut bytes = pdu.encode().unwrap();
    assert_eq!(bytes[16 + 8 + 2], 0, "an empty stub is 16-aligned already");
    bytes[16 + 8 + 2] = 1;
    assert_eq!(
        Pdu::decode(&bytes),
        Err(DecodeError::Invalid(ERR_BODY_SHORT))
    );
    bytes[16 + 8 + 2] = 9;
    assert_eq!(Pdu::decode(&bytes), Err(DecodeError::Invalid(ERR_AUTH_PAD)));
}

#[test]
fn unknown_ptype_zero_contexts_big_endian_and_syntax_counts() {
    let mut bytes = hex(BIND_ACK);
    bytes[2] = 0x33;
    let (pdu, _) = Pdu::decode(&bytes).unwrap();
    assert_eq!(pdu.packet_type(), PacketType(0x33));
    assert!(matches!(&pdu.body, PduBody::Other { bytes: b, .. } if b.len() == bytes.len() - 16));
    assert_eq!(pdu.encode().unwrap(), bytes);

    let mut none = hex(BIND_THREE_CONTEXTS);
    none[24] = 0;
    assert_eq!(
        Pdu::decode(&none),
        Err(DecodeError::Invalid(ERR_NO_CONTEXTS))
    );

    let mut counts = hex(BIND_THREE_CONTEXTS);
    counts[30] = 9; // first context: 9 transfer syntaxes announced
    assert_eq!(
        Pdu::decode(&counts),
        Err(DecodeError::Invalid(ERR_BODY_SHORT))
    );

    let mut big = hex(BIND_THREE_CONTEXTS);
    big[4] = 0x00;
    big.swap(8, 9);
    big.swap(12, 15);
    big.swap(13, 14);
    assert_eq!(Pdu::decode(&big), Err(DecodeError::Invalid(ERR_BIG_ENDIAN)));
    let header = Header::decode(&mut crate::codec::Reader::new(&big)).unwrap();
    assert_eq!((header.frag_length, header.call_id), (160, 1));
}

#[test]
fn reassembly_limits_and_order() {
    let frag = |call_id: u32, flags: PfcFlags, len: usize, hint: u32| {
        let mut r = request(len);
        r.alloc_hint = hint;
        Pdu::new(call_id, flags, PduBody::Request(r))
    };
    let mut r = CallReassembler::new(100);
    // A hint of 4 GiB allocates no more than the limit; the stub over it is refused.
    assert_eq!(
        r.push(frag(1, PfcFlags::FIRST_FRAG, 60, u32::MAX)),
        Ok(None)
    );
    assert_eq!(
        r.push(frag(1, PfcFlags::LAST_FRAG, 41, 0)),
        Err(ReassemblyError::StubTooLarge { limit: 100 })
    );
    assert_eq!(
        r.push(frag(1, PfcFlags::LAST_FRAG, 1, 0)),
        Err(ReassemblyError::NoCallInProgress)
    );
    assert_eq!(r.push(frag(1, PfcFlags::FIRST_FRAG, 10, 20)), Ok(None));
    assert_eq!(
        r.push(frag(2, PfcFlags::LAST_FRAG, 10, 0)),
        Err(ReassemblyError::WrongCall {
            in_progress: 1,
            got: 2
        })
    );
    assert_eq!(r.push(frag(3, PfcFlags::FIRST_FRAG, 10, 20)), Ok(None));
    assert_eq!(
        r.push(frag(4, PfcFlags::FIRST_FRAG, 10, 20)),
        Err(ReassemblyError::CallInProgress {
            in_progress: 3,
            got: 4
        })
    );
    assert_eq!(
        r.push(Pdu::new(5, PfcFlags::WHOLE, PduBody::Shutdown)),
        Err(ReassemblyError::NotACallFragment(PacketType::SHUTDOWN))
    );
    assert_eq!(
        r.push(frag(6, PfcFlags::WHOLE, 101, 0)),
        Err(ReassemblyError::StubTooLarge { limit: 100 })
    );
    let whole = r.push(frag(7, PfcFlags::WHOLE, 100, 100)).unwrap().unwrap();
    assert_eq!(whole, frag(7, PfcFlags::WHOLE, 100, 100));
}

#[test]
fn split_fragments_fit_and_join_again() {
    for (stub_len, max_frag, auth) in [
        (0, 64, None),
        (1000, 100, None),
        (1000, 100, Some(16)),
        (5000, 4280, Some(16)),
        (33, 81, Some(5)),
        (64, 72, Some(16)),
    ] {
        let mut call = Pdu::new(9, PfcFlags::WHOLE, PduBody::Request(request(stub_len)));
        call.auth = auth.map(ntlm_verifier);
        let fragments = fragment(&call, max_frag).unwrap();
        let mut r = CallReassembler::new(stub_len);
        let mut joined = None;
        for f in &fragments {
            let bytes = f.encode().unwrap();
            assert!(
                bytes.len() <= usize::from(max_frag),
                "{} > {max_frag}",
                bytes.len()
            );
            joined = r.push(Pdu::decode(&bytes).unwrap().0).unwrap();
        }
        let mut expected = call.clone();
        expected.auth = None;
        if let PduBody::Request(req) = &mut expected.body {
            req.alloc_hint = stub_len as u32;
        }
        assert_eq!(joined, Some(expected), "{stub_len} in {max_frag}");
    }
    let call = Pdu::new(9, PfcFlags::WHOLE, PduBody::Request(request(10)));
    assert_eq!(fragment(&call, 24), None, "no room for a stub octet");
    let mut signed = Pdu::new(9, PfcFlags::WHOLE, PduBody::Request(request(40)));
    signed.auth = Some(ntlm_verifier(16));
    assert_eq!(
        fragment(&signed, 64).map(|f| f.len()),
        Some(3),
        "16 stub octets a fragment: 16 + 8 + 16 + 8 + 16"
    );
    assert_eq!(fragment(&signed, 63), None, "room below one aligned block");
    assert_eq!(
        fragment(&Pdu::new(1, PfcFlags::WHOLE, PduBody::Shutdown), 100),
        None
    );
}

#[test]
fn an_oversized_pdu_is_refused_by_the_encoder() {
    let pdu = Pdu::new(1, PfcFlags::WHOLE, PduBody::Request(request(70_000)));
    assert_eq!(pdu.encode(), Err(PduTooLong { length: 70_024 }));
}

#[test]
fn an_empty_auth_value_is_no_verifier() {
    let mut pdu = Pdu::new(1, PfcFlags::WHOLE, PduBody::Request(request(3)));
    pdu.auth = Some(ntlm_verifier(0));
    let bytes = pdu.encode().unwrap();
    assert_eq!(bytes.len(), 16 + 8 + 3, "no padding, no trailer");
    pdu.auth = None;
    assert_eq!(Pdu::decode(&bytes), Ok((pdu, bytes.len())));
}
