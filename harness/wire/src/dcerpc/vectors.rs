//! Byte-exact vectors made by impacket 0.12 (`impacket.dcerpc.v5.rpcrt`: `MSRPCHeader`,
//! `MSRPCBind`, `CtxItem`, `MSRPCBindAck`, `CtxItemResult`, `MSRPCRequestHeader`,
//! `SEC_TRAILER`, and `ntlm.getNTLMSSPType1`) in a throwaway script outside this
//! repository, laid out as impacket's `DCERPC_v5.bind`, `send` and `_transport_send`
//! lay them out; its hex output is pasted below. Each is read field by field and, where
//! impacket's layout is also ours, encoded back to the same octets.

use super::*;

pub(crate) fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// EMSMDB, a4f1db00-ca47-1067-b31f-00dd010662da v0.81 ([MS-OXCRPC] 1.9).
const EMSMDB: SyntaxId = SyntaxId::new(
    Uuid::new(
        0xa4f1_db00,
        0xca47,
        0x1067,
        [0xb3, 0x1f, 0x00, 0xdd, 0x01, 0x06, 0x62, 0xda],
    ),
    0,
    81,
);

/// `MSRPCBind` with three `CtxItem`s on EMSMDB: NDR, NDR64, bind-time features 0x3.
pub(crate) const BIND_THREE_CONTEXTS: &str =
    "05000b0310000000a000000001000000b810b81000000000030000000000010000dbf1a447ca6710b31f00dd\
    010662da00005100045d888aeb1cc9119fe808002b104860020000000100010000dbf1a447ca6710b31f00dd\
    010662da0000510033057171babe37498319b5dbef9ccc36010000000200010000dbf1a447ca6710b31f00dd\
    010662da000051002c1cb76c12984045030000000000000001000000";

/// The same bind with one context and an NTLM NEGOTIATE (`getNTLMSSPType1`, signing
/// required) in a sec_trailer: NTLMSSP, PKT_INTEGRITY, auth_context_id 79231.
pub(crate) const NTLM_BIND: &str =
    "05000b03100000007000200001000000b810b81000000000010000000000010000dbf1a447ca6710b31f00dd\
    010662da00005100045d888aeb1cc9119fe808002b104860020000000a0500007f3501004e544c4d53535000\
    01000000358288e000000000000000000000000000000000";

/// A 100-octet stub (0..=99) sent as `DCERPC_v5.send` fragments it, 40 octets a piece:
/// opnum 10, call_id 2, alloc_hint 100 in every fragment.
pub(crate) const FRAGMENTED_REQUEST: [&str; 3] = [
    "050000011000000040000000020000006400000000000a00000102030405060708090a0b0c0d0e0f10111213\
     1415161718191a1b1c1d1e1f2021222324252627",
    "050000001000000040000000020000006400000000000a0028292a2b2c2d2e2f303132333435363738393a3b\
     3c3d3e3f404142434445464748494a4b4c4d4e4f",
    "05000002100000002c000000020000006400000000000a00505152535455565758595a5b5c5d5e5f60616263",
];

/// `MSRPCBindAck`: sec_addr "49664", results accept NDR, provider_rejection /
/// proposed_transfer_syntaxes_not_supported, negotiate_ack with features 0x3.
pub(crate) const BIND_ACK: &str =
    "05000c03100000006c00000001000000d016d016a412000006003439363634000300000000000000045d888a\
    eb1cc9119fe808002b1048600200000002000200000000000000000000000000000000000000000003000300\
    0000000000000000000000000000000000000000";

/// auth3 with impacket's four-space pad and a made-up 20-octet token.
pub(crate) const AUTH3: &str =
    "05001003100000003000140001000000202020200a0500007f3501004e544c4d535350000300000000000000\
    00000000";

/// A request with OBJECT_UUID set and object 11223344-5566-7788-99aa-bbccddeeff00.
pub(crate) const OBJECT_REQUEST: &str =
    "05000083100000002c000000030000000400000000000100443322116655887799aabbccddeeff00deadbeef";

/// A signed request as `_transport_send` lays it out: stub "hello", 3 pad octets 0xBB
/// (impacket aligns the trailer to 4, not 16), a 16-octet placeholder verifier.
pub(crate) const SIGNED_REQUEST: &str =
    "05000003100000003800100004000000050000000000040068656c6c6fbbbbbb0a0503007f35010020202020\
    202020202020202020202020";

fn decode_all(hex_text: &str) -> (Pdu, Vec<u8>) {
    let bytes = hex(hex_text);
    let (pdu, used) = Pdu::decode(&bytes).unwrap();
    assert_eq!(used, bytes.len());
    (pdu, bytes)
}

#[test]
fn impacket_bind_with_ndr_ndr64_and_bind_time_features() {
    let (pdu, bytes) = decode_all(BIND_THREE_CONTEXTS);
    assert_eq!(pdu.call_id, 1);
    assert_eq!(pdu.flags, PfcFlags::WHOLE);
    assert_eq!(pdu.drep, DataRepresentation::LITTLE_ENDIAN);
    let PduBody::Bind(bind) = &pdu.body else {
        panic!("{pdu:?}")
    };
    assert_eq!(
        (bind.max_xmit_frag, bind.max_recv_frag, bind.assoc_group_id),
        (4280, 4280, 0)
    );
    let syntaxes = [
        SyntaxId::NDR20,
        SyntaxId::NDR64,
        SyntaxId::bind_time_features(3),
    ];
    assert_eq!(bind.contexts.len(), 3);
    for (i, (c, ts)) in bind.contexts.iter().zip(syntaxes).enumerate() {
        assert_eq!(usize::from(c.context_id), i);
        assert_eq!(c.abstract_syntax, EMSMDB);
        assert_eq!(
            c.abstract_syntax.to_string(),
            "a4f1db00-ca47-1067-b31f-00dd010662da v0.81"
        );
        assert_eq!(c.transfer_syntaxes, [ts]);
    }
    assert_eq!(
        bind.contexts[2].transfer_syntaxes[0].bind_time_feature_bits(),
        Some(3)
    );
    assert_eq!(pdu.auth, None);
    assert_eq!(pdu.encode().unwrap(), bytes);
}

#[test]
fn impacket_ntlm_bind_with_sec_trailer() {
    let (pdu, bytes) = decode_all(NTLM_BIND);
    let PduBody::Bind(bind) = &pdu.body else {
        panic!("{pdu:?}")
    };
    assert_eq!(bind.contexts.len(), 1);
    assert_eq!(bind.contexts[0].transfer_syntaxes, [SyntaxId::NDR20]);
    let auth = pdu.auth.as_ref().unwrap();
    assert_eq!(auth.auth_type, AuthType::NTLMSSP);
    assert_eq!(auth.auth_level, AuthLevel::PKT_INTEGRITY);
    assert_eq!(auth.auth_context_id, 79231);
    assert_eq!(auth.auth_value.len(), 32);
    assert!(auth.auth_value.starts_with(b"NTLMSSP\0\x01\0\0\0"));
    // The NEGOTIATE inside reads with the NTLM codec of this crate too.
    assert!(crate::ntlm::Message::decode(&auth.auth_value).is_ok());
    assert_eq!(pdu.encode().unwrap(), bytes);
}

#[test]
fn impacket_fragmented_request_reassembles_and_splits_alike() {
    let mut reassembler = CallReassembler::new(1000);
    let mut whole = None;
    let mut fragments = Vec::new();
    for (i, text) in FRAGMENTED_REQUEST.iter().enumerate() {
        let (pdu, bytes) = decode_all(text);
        let PduBody::Request(req) = &pdu.body else {
            panic!("{pdu:?}")
        };
        assert_eq!(
            (pdu.call_id, req.opnum, req.context_id, req.alloc_hint),
            (2, 10, 0, 100)
        );
        assert_eq!(pdu.flags.contains(PfcFlags::FIRST_FRAG), i == 0);
        assert_eq!(pdu.flags.contains(PfcFlags::LAST_FRAG), i == 2);
        assert_eq!(req.stub.len(), if i < 2 { 40 } else { 20 });
        assert_eq!(pdu.encode().unwrap(), bytes);
        fragments.push(pdu.clone());
        whole = reassembler.push(pdu).unwrap();
        assert_eq!(whole.is_some(), i == 2);
    }
    let whole = whole.unwrap();
    let PduBody::Request(req) = &whole.body else {
        panic!()
    };
    assert_eq!(req.stub, (0..100).collect::<Vec<u8>>());
    assert_eq!(whole.flags, PfcFlags::WHOLE);
    // Our splitter cuts the same pieces for a 64-octet max_xmit_frag; it sets alloc_hint
    // to the stub left (impacket repeats the whole size).
    let ours = fragment(&whole, 64).unwrap();
    assert_eq!(ours.len(), 3);
    for (mine, theirs) in ours.iter().zip(&fragments) {
        let (PduBody::Request(a), PduBody::Request(b)) = (&mine.body, &theirs.body) else {
            panic!()
        };
        assert_eq!((mine.flags, &a.stub), (theirs.flags, &b.stub));
    }
}

#[test]
fn impacket_bind_ack_with_sec_addr_and_negotiate_ack() {
    let (pdu, bytes) = decode_all(BIND_ACK);
    let PduBody::BindAck(ack) = &pdu.body else {
        panic!("{pdu:?}")
    };
    assert_eq!(
        (ack.max_xmit_frag, ack.max_recv_frag, ack.assoc_group_id),
        (5840, 5840, 0x12a4)
    );
    assert_eq!(ack.sec_addr, BindAck::sec_addr_for_port(49664));
    let got: Vec<_> = ack
        .results
        .iter()
        .map(|r| (r.result, r.reason, r.transfer_syntax))
        .collect();
    assert_eq!(
        got,
        [
            (
                AckResult::ACCEPTANCE,
                AckReason::NOT_SPECIFIED,
                SyntaxId::NDR20
            ),
            (
                AckResult::PROVIDER_REJECTION,
                AckReason::PROPOSED_TRANSFER_SYNTAXES_NOT_SUPPORTED,
                SyntaxId::default()
            ),
            (AckResult::NEGOTIATE_ACK, AckReason(3), SyntaxId::default()),
        ]
    );
    assert_eq!(pdu.encode().unwrap(), bytes);
}

#[test]
fn impacket_auth3_and_object_request() {
    let (pdu, bytes) = decode_all(AUTH3);
    assert_eq!(pdu.body, PduBody::Auth3(Auth3 { pad: *b"    " }));
    assert_eq!(pdu.auth.as_ref().map(|a| a.auth_value.len()), Some(20));
    assert_eq!(pdu.encode().unwrap(), bytes);

    let (pdu, bytes) = decode_all(OBJECT_REQUEST);
    let PduBody::Request(req) = &pdu.body else {
        panic!("{pdu:?}")
    };
    assert_eq!(
        req.object.map(|u| u.to_string()).as_deref(),
        Some("11223344-5566-7788-99aa-bbccddeeff00")
    );
    assert_eq!(
        (req.opnum, &req.stub[..]),
        (1, &[0xde, 0xad, 0xbe, 0xef][..])
    );
    assert_eq!(pdu.encode().unwrap(), bytes);
}

#[test]
fn impacket_signed_request_with_four_octet_padding() {
    let (pdu, bytes) = decode_all(SIGNED_REQUEST);
    let PduBody::Request(req) = &pdu.body else {
        panic!("{pdu:?}")
    };
    assert_eq!(req.stub, b"hello");
    let auth = pdu.auth.as_ref().unwrap();
    assert_eq!(
        (auth.auth_level, auth.auth_value.as_slice()),
        (AuthLevel::PKT_INTEGRITY, &[b' '; 16][..])
    );
    // We pad the stub to 16 from its start, as Windows and Samba do ([MS-RPCE]
    // 2.2.2.11): 5 + 11 zero octets, where impacket pads to 4 with 0xBB.
    let ours = pdu.encode().unwrap();
    assert_eq!(ours.len(), bytes.len() + 8);
    assert_eq!(&ours[29..40], &[0; 11]);
    assert_eq!(Pdu::decode(&ours).unwrap().0, pdu);
}
