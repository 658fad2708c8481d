//! Known answers: the RTS byte strings of impacket's `tests/SMB_RPC/test_rpch.py`
//! (`RPCHLocalTest.test_2` to `test_8`, captured from Windows RPC proxies), the sizes of
//! ../shared/PROTOCOLS.md 6.3, and the typed errors.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;
use crate::codec::{Codec, Reader};
use crate::dcerpc::{PacketType, Pdu};

/// impacket `test_2`: CONN/A1.
const CONN_A1: &[u8] = b"\x05\x00\x14\x03\x10\x00\x00\x00\x4c\x00\x00\x00\x00\x00\
\x00\x00\x00\x00\x04\x00\x06\x00\x00\x00\x01\x00\x00\x00\
\x03\x00\x00\x00\xb0\xf6\xaf\x3d\x77\x62\x98\x07\x9b\x21\
\x54\x6e\xec\xf4\x22\x53\x03\x00\x00\x00\x3a\x24\x7a\x37\
\x6d\xc1\xed\x2c\x68\x5d\x34\x35\x13\x46\x43\x25\x00\x00\
\x00\x00\x00\x00\x04\x00";

/// impacket `test_3`: CONN/A3.
const CONN_A3: &[u8] = b"\x05\x00\x14\x03\x10\x00\x00\x00\x1c\x00\x00\x00\x00\x00\
\x00\x00\x00\x00\x01\x00\x02\x00\x00\x00\xc0\xd4\x01\x00";

/// impacket `test_4`: Ping.
const PING: &[u8] = b"\x05\x00\x14\x03\x10\x00\x00\x00\x14\x00\x00\x00\x00\x00\
\x00\x00\x01\x00\x00\x00";

/// impacket `test_5`: CONN/C2.
const CONN_C2: &[u8] = b"\x05\x00\x14\x03\x10\x00\x00\x00\x2c\x00\x00\x00\x00\x00\
\x00\x00\x00\x00\x03\x00\x06\x00\x00\x00\x01\x00\x00\x00\
\x00\x00\x00\x00\x00\x00\x01\x00\x02\x00\x00\x00\xc0\xd4\
\x01\x00";

/// impacket `test_6`: FlowControlAckWithDestination.
const FLOW_CONTROL_ACK_WITH_DESTINATION: &[u8] =
    b"\x05\x00\x14\x03\x10\x00\x00\x00\x38\x00\x00\x00\x00\x00\
\x00\x00\x02\x00\x02\x00\x0d\x00\x00\x00\x00\x00\x00\x00\
\x01\x00\x00\x00\x92\x80\x00\x00\x00\x00\x01\x00\xe3\x79\
\x6e\x7c\xbc\x68\xa9\x4d\xab\x8d\x82\x40\xa0\x05\x72\x32";

/// impacket `test_7`: CONN/B2 with an IPv4 client address. The address field is
/// 0.0.0.0 and 192.168.2.254 sits in the padding after it (impacket's test wonders the
/// same: "Why is it in the padding?!").
const CONN_B2: &[u8] = b"\x05\x00\x14\x03\x10\x00\x00\x00\x80\x00\x00\x00\x00\x00\
\x00\x00\x08\x00\x07\x00\x06\x00\x00\x00\x01\x00\x00\x00\
\x03\x00\x00\x00\x61\xec\x8b\xb3\x40\x28\xa8\x46\xba\xfd\
\x90\xcf\x6d\x31\xdc\x29\x03\x00\x00\x00\x20\xce\x94\x22\
\x30\x83\x1b\x45\x94\xea\x0d\x7e\x05\xd2\xa8\x5a\x00\x00\
\x00\x00\x00\x00\x01\x00\x02\x00\x00\x00\xc0\xd4\x01\x00\
\x0c\x00\x00\x00\xdf\x28\xb4\x20\x77\xa4\x70\x42\xb1\xd1\
\x4a\x03\x49\x5f\x6b\x7b\x0b\x00\x00\x00\x00\x00\x00\x00\
\x00\x00\x00\x00\xc0\xa8\x02\xfe\x00\x00\x00\x00\x00\x00\
\x00\x00";

/// impacket `test_8`: CONN/A2.
const CONN_A2: &[u8] = b"\x05\x00\x14\x03\x10\x00\x00\x00\x54\x00\x00\x00\x00\x00\
\x00\x00\x10\x00\x05\x00\x06\x00\x00\x00\x01\x00\x00\x00\
\x03\x00\x00\x00\x61\xec\x8b\xb3\x40\x28\xa8\x46\xba\xfd\
\x90\xcf\x6d\x31\xdc\x29\x03\x00\x00\x00\xbc\x38\x10\x35\
\xa7\xf0\x3d\x43\x9c\x3f\x44\x85\x6e\xf1\xc3\xb0\x04\x00\
\x00\x00\x00\x00\x00\x40\x00\x00\x00\x00\x00\x00\x01\x00";

/// CONN/B1 as impacket's `hCONN_B1` lays it out (`rpch.py`: Version 1, ChannelLifetime
/// 1073741824, ClientKeepalive 300000), with the cookies of the vectors above: 104
/// octets, as PROTOCOLS.md 6.3 says.
const CONN_B1: &[u8] = b"\x05\x00\x14\x03\x10\x00\x00\x00\x68\x00\x00\x00\x00\x00\
\x00\x00\x00\x00\x06\x00\x06\x00\x00\x00\x01\x00\x00\x00\
\x03\x00\x00\x00\x61\xec\x8b\xb3\x40\x28\xa8\x46\xba\xfd\
\x90\xcf\x6d\x31\xdc\x29\x03\x00\x00\x00\x20\xce\x94\x22\
\x30\x83\x1b\x45\x94\xea\x0d\x7e\x05\xd2\xa8\x5a\x04\x00\
\x00\x00\x00\x00\x00\x40\x05\x00\x00\x00\xe0\x93\x04\x00\
\x0c\x00\x00\x00\xdf\x28\xb4\x20\x77\xa4\x70\x42\xb1\xd1\
\x4a\x03\x49\x5f\x6b\x7b";

/// Every vector above; also the fuzz seeds ([`vectors_are_the_fuzz_seeds`]).
const VECTORS: &[(&str, &[u8])] = &[
    ("conn-a1", CONN_A1),
    ("conn-a2", CONN_A2),
    ("conn-a3", CONN_A3),
    ("conn-b1", CONN_B1),
    ("conn-b2", CONN_B2),
    ("conn-c2", CONN_C2),
    ("ping", PING),
    (
        "flow-control-ack-with-destination",
        FLOW_CONTROL_ACK_WITH_DESTINATION,
    ),
];

fn cookie(octets: &[u8]) -> RtsCookie {
    RtsCookie::decode(&mut Reader::new(octets)).unwrap()
}

fn virtual_connection() -> RtsCookie {
    cookie(&CONN_B2[32..48])
}

fn in_channel() -> RtsCookie {
    cookie(&CONN_B2[52..68])
}

fn association_group() -> RtsCookie {
    cookie(&CONN_B2[88..104])
}

/// Decodes to `expected`, whole, and encodes back to the same octets.
fn known_answer(bytes: &[u8], expected: &RtsPdu, kind: RtsPduKind) {
    assert_eq!(RtsPdu::decode(bytes), Ok((expected.clone(), bytes.len())));
    assert_eq!(expected.encode().unwrap(), bytes);
    assert_eq!(expected.encoded_len(), bytes.len());
    assert!(expected.is(kind), "{expected:?} is not {}", kind.name());
    assert!(expected.classify().contains(&kind));
}

#[test]
fn impacket_connection_vectors_decode_and_encode_back() {
    let out_channel = cookie(&CONN_A1[52..68]);
    let a1 = RtsPdu::conn_a1(1, cookie(&CONN_A1[32..48]), out_channel, 0x40000);
    known_answer(CONN_A1, &a1, RtsPduKind::ConnA1);
    assert_eq!(CONN_A1.len(), 76);
    assert_eq!(a1.classify(), [RtsPduKind::ConnA1]);
    assert_eq!(
        a1.as_conn_a1()
            .map(|a| (a.out_channel_cookie, a.receive_window_size)),
        Some((out_channel, 262_144))
    );

    let a2 = RtsPdu::conn_a2(
        1,
        virtual_connection(),
        cookie(&CONN_A2[52..68]),
        0x4000_0000,
        0x10000,
    );
    known_answer(CONN_A2, &a2, RtsPduKind::ConnA2);

    known_answer(CONN_A3, &RtsPdu::conn_a3(120_000), RtsPduKind::ConnA3);
    assert_eq!(CONN_A3.len(), 28);

    let c2 = RtsPdu::conn_c2(1, 65_536, 120_000);
    known_answer(CONN_C2, &c2, RtsPduKind::ConnC2);
    assert_eq!(CONN_C2.len(), 44);
    // CONN/C1 has the same layout: only the sender tells them apart.
    assert_eq!(c2.classify(), [RtsPduKind::ConnC1, RtsPduKind::ConnC2]);

    let b1 = RtsPdu::conn_b1(
        1,
        virtual_connection(),
        in_channel(),
        1_073_741_824,
        300_000,
        association_group(),
    );
    known_answer(CONN_B1, &b1, RtsPduKind::ConnB1);
    assert_eq!(CONN_B1.len(), 104);
    assert_eq!(
        b1.as_conn_b1().map(|b| b.association_group_id),
        Some(association_group())
    );
    assert_eq!(a1.as_conn_b1(), None);
    assert_eq!(b1.as_conn_a1(), None);
}

#[test]
fn impacket_conn_b2_keeps_the_address_in_the_padding() {
    let mut b2 = RtsPdu::conn_b2(
        1,
        virtual_connection(),
        in_channel(),
        65_536,
        120_000,
        association_group(),
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    );
    let mut padding = [0u8; 12];
    padding[..4].copy_from_slice(&[192, 168, 2, 254]);
    b2.commands[6] = RtsCommand::ClientAddress {
        address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        padding,
    };
    known_answer(CONN_B2, &b2, RtsPduKind::ConnB2);
    assert_eq!(b2.commands[6].encoded_len(), 24);
    let v6 = RtsCommand::client_address(IpAddr::V6(Ipv6Addr::LOCALHOST));
    assert_eq!(v6.encoded_len(), 36);
    let pdu = RtsPdu::new(RtsFlags::NONE, vec![v6]);
    let bytes = pdu.encode().unwrap();
    assert_eq!(RtsPdu::decode(&bytes), Ok((pdu, 56)));
}

#[test]
fn impacket_ping_and_flow_control_vectors() {
    known_answer(PING, &RtsPdu::ping(), RtsPduKind::Ping);
    let ack = FlowControlAck {
        bytes_received: 32_914,
        available_window: 65_536,
        channel_cookie: cookie(&FLOW_CONTROL_ACK_WITH_DESTINATION[40..56]),
    };
    let with_destination =
        RtsPdu::flow_control_ack_with_destination(ForwardDestination::CLIENT, ack);
    known_answer(
        FLOW_CONTROL_ACK_WITH_DESTINATION,
        &with_destination,
        RtsPduKind::FlowControlAckWithDestination,
    );
    assert_eq!(
        with_destination.as_flow_control_ack(),
        Some((Some(ForwardDestination::CLIENT), ack))
    );
    assert_eq!(
        RtsPdu::flow_control_ack(ack).as_flow_control_ack(),
        Some((None, ack))
    );
    assert_eq!(RtsPdu::ping().as_flow_control_ack(), None);
}

/// A PDU of every name, made by its constructor.
fn every_named_pdu() -> Vec<(RtsPduKind, RtsPdu)> {
    use RtsPduKind::*;
    let (vc, a, b) = (virtual_connection(), in_channel(), association_group());
    let r = RecycleCookies {
        virtual_connection: vc,
        predecessor: a,
        successor: b,
    };
    let ack = super::FlowControlAck::default();
    let address = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    vec![
        (ConnA1, RtsPdu::conn_a1(1, vc, a, 0x10000)),
        (ConnA2, RtsPdu::conn_a2(1, vc, a, 0x4000_0000, 0x10000)),
        (ConnA3, RtsPdu::conn_a3(120_000)),
        (ConnB1, RtsPdu::conn_b1(1, vc, a, 0x4000_0000, 300_000, b)),
        (
            ConnB2,
            RtsPdu::conn_b2(1, vc, a, 0x10000, 120_000, b, address),
        ),
        (ConnB3, RtsPdu::conn_b3(0x10000, 1)),
        (ConnC1, RtsPdu::conn_c1(1, 0x10000, 120_000)),
        (ConnC2, RtsPdu::conn_c2(1, 0x10000, 120_000)),
        (InR1A1, RtsPdu::in_r1_a1(1, r)),
        (InR1A2, RtsPdu::in_r1_a2(1, r, 0x10000, 120_000)),
        (InR1A3, RtsPdu::in_r1_a3(1, 0x10000, 120_000)),
        (InR1A4, RtsPdu::in_r1_a4(1, 0x10000, 120_000)),
        (InR1A5, RtsPdu::in_r1_a5(b)),
        (InR1A6, RtsPdu::in_r1_a6(b)),
        (InR1B1, RtsPdu::in_r1_b1()),
        (InR1B2, RtsPdu::in_r1_b2(0x10000)),
        (InR2A1, RtsPdu::in_r2_a1(1, r)),
        (InR2A2, RtsPdu::in_r2_a2(b)),
        (InR2A3, RtsPdu::in_r2_a3()),
        (InR2A4, RtsPdu::in_r2_a4()),
        (InR2A5, RtsPdu::in_r2_a5(b)),
        (OutR1A1, RtsPdu::out_r1_a1()),
        (OutR1A2, RtsPdu::out_r1_a2()),
        (OutR1A3, RtsPdu::out_r1_a3(1, r, 0x10000)),
        (
            OutR1A4,
            RtsPdu::out_r1_a4(1, r, 0x4000_0000, 0x10000, 120_000),
        ),
        (OutR1A5, RtsPdu::out_r1_a5(1, 120_000)),
        (OutR1A6, RtsPdu::out_r1_a6(1, 120_000)),
        (OutR1A7, RtsPdu::out_r1_a7(b)),
        (OutR1A8, RtsPdu::out_r1_a8(b)),
        (OutR1A9, RtsPdu::out_r1_a9()),
        (OutR1A10, RtsPdu::out_r1_a10()),
        (OutR1A11, RtsPdu::out_r1_a11()),
        (OutR2A1, RtsPdu::out_r2_a1()),
        (OutR2A2, RtsPdu::out_r2_a2()),
        (OutR2A3, RtsPdu::out_r2_a3(1, r, 0x10000)),
        (OutR2A4, RtsPdu::out_r2_a4(b)),
        (OutR2A5, RtsPdu::out_r2_a5()),
        (OutR2A6, RtsPdu::out_r2_a6()),
        (OutR2A7, RtsPdu::out_r2_a7(b, 1)),
        (OutR2A8, RtsPdu::out_r2_a8(b)),
        (OutR2B1, RtsPdu::out_r2_b1()),
        (OutR2B2, RtsPdu::out_r2_b2()),
        (OutR2B3, RtsPdu::out_r2_b3()),
        (OutR2C1, RtsPdu::out_r2_c1()),
        (KeepAlive, RtsPdu::keep_alive(300_000)),
        (
            PingTrafficSentNotify,
            RtsPdu::ping_traffic_sent_notify(4096),
        ),
        (Echo, RtsPdu::echo()),
        (Ping, RtsPdu::ping()),
        (FlowControlAck, RtsPdu::flow_control_ack(ack)),
        (
            FlowControlAckWithDestination,
            RtsPdu::flow_control_ack_with_destination(ForwardDestination::CLIENT, ack),
        ),
    ]
}

#[test]
fn every_constructor_makes_its_named_pdu_and_round_trips() {
    let all = every_named_pdu();
    assert_eq!(
        all.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        RtsPduKind::all().collect::<Vec<_>>(),
        "the table lists every kind once, in order"
    );
    for (kind, pdu) in &all {
        assert!(pdu.is(*kind), "{} from {pdu:?}", kind.name());
        assert_eq!(pdu.flags, kind.flags());
        assert!(kind.section().starts_with("2.2.4."));
        let bytes = pdu.encode().unwrap();
        assert_eq!(RtsPdu::decode(&bytes), Ok((pdu.clone(), bytes.len())));
    }
    // 2.2.4.45: OUT_R2/C1 has exactly the size of OUT_R1/A11.
    assert_eq!(
        RtsPdu::out_r2_c1().encoded_len(),
        RtsPdu::out_r1_a11().encoded_len()
    );
    let padded = RtsPdu::new(RtsFlags::PING, vec![RtsCommand::Padding(vec![0; 8])]);
    assert_eq!(padded.classify(), [RtsPduKind::OutR2C1]);
    // The same layout under several names: the one-Cookie PDUs.
    assert_eq!(
        RtsPdu::in_r1_a5(virtual_connection()).classify(),
        [
            RtsPduKind::InR1A5,
            RtsPduKind::InR1A6,
            RtsPduKind::InR2A2,
            RtsPduKind::InR2A5,
            RtsPduKind::OutR2A4
        ]
    );
    // A Destination other than the one the spec fixes names nothing.
    let mut wrong = RtsPdu::in_r2_a3();
    wrong.commands[0] = RtsCommand::Destination(ForwardDestination::SERVER);
    assert!(wrong.classify().is_empty());
    assert!(RtsPdu::new(RtsFlags(0x80), Vec::new())
        .classify()
        .is_empty());
}

#[test]
fn rts_in_a_framed_pdu() {
    let (pdu, used) = Pdu::decode(CONN_B2).unwrap();
    assert_eq!(used, CONN_B2.len());
    assert_eq!(
        RtsPdu::from_pdu(&pdu),
        Ok(RtsPdu::decode(CONN_B2).unwrap().0)
    );
    let mut bind = CONN_A3.to_vec();
    bind[2] = PacketType::SHUTDOWN.0;
    let (shutdown, _) = Pdu::decode(&bind).unwrap();
    assert_eq!(
        RtsPdu::from_pdu(&shutdown),
        Err(RtsError::NotRts(PacketType::SHUTDOWN))
    );
}

fn with(bytes: &[u8], at: usize, octets: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[at..at + octets.len()].copy_from_slice(octets);
    out
}

#[test]
fn typed_errors() {
    for cut in 0..CONN_A1.len() {
        assert!(
            matches!(RtsPdu::decode(&CONN_A1[..cut]), Err(RtsError::Truncated { needed }) if needed > 0),
            "prefix of {cut}"
        );
    }
    assert_eq!(
        RtsPdu::decode(&CONN_A1[..40]),
        Err(RtsError::Truncated { needed: 36 })
    );
    assert_eq!(
        RtsPdu::decode(&with(CONN_A1, 2, &[0])),
        Err(RtsError::NotRts(PacketType::REQUEST))
    );
    assert_eq!(
        RtsPdu::decode(&with(CONN_A1, 0, &[4])),
        Err(RtsError::Header(crate::dcerpc::header::ERR_VERSION))
    );
    assert_eq!(
        RtsPdu::decode(&with(CONN_A1, 4, &[0])),
        Err(RtsError::NotLittleEndian)
    );
    assert_eq!(
        RtsPdu::decode(&with(CONN_A1, 10, &[1])),
        Err(RtsError::AuthLength(1))
    );
    assert_eq!(
        RtsPdu::decode(&with(PING, 8, &[18])[..18]),
        Err(RtsError::FragmentTooShort(18))
    );
    // NumberOfCommands 0xffff in 56 octets: refused before anything is sized by it.
    assert_eq!(
        RtsPdu::decode(&with(CONN_A1, 18, &[0xff, 0xff])),
        Err(RtsError::TooManyCommands {
            count: 0xffff,
            room: 56
        })
    );
    assert_eq!(
        RtsPdu::decode(&with(CONN_A1, 18, &[3])),
        Err(RtsError::TrailingOctets {
            frag_length: 76,
            unused: 8
        })
    );
    // frag_length 72 cuts the last command (ReceiveWindowSize) short.
    assert_eq!(
        RtsPdu::decode(&with(CONN_A1, 8, &[72])),
        Err(RtsError::CommandPastFragment { index: 3 })
    );
    assert_eq!(
        RtsPdu::decode(&with(CONN_A1, 20, &[0x0f])),
        Err(RtsError::UnknownCommand(RtsCommandType(0x0f)))
    );
    assert_eq!(
        RtsPdu::decode(&with(CONN_B2, 108, &[2])),
        Err(RtsError::UnknownAddressType(2))
    );
    // A Padding whose ConformanceCount claims 4 GiB.
    let padding = b"\x05\x00\x14\x03\x10\x00\x00\x00\x1c\x00\x00\x00\x00\x00\x00\x00\
\x00\x00\x01\x00\x08\x00\x00\x00\xff\xff\xff\xff";
    assert_eq!(
        RtsPdu::decode(padding),
        Err(RtsError::CommandPastFragment { index: 0 })
    );
    let too_long = RtsPdu::new(RtsFlags::NONE, vec![RtsCommand::Padding(vec![0; 70_000])]);
    assert_eq!(too_long.encode().map_err(|e| e.length), Err(70_028));
}

#[test]
fn names_of_flags() {
    assert_eq!(format!("{:?}", RtsFlags::NONE), "RtsFlags(NONE)");
    assert_eq!(
        format!(
            "{:?}",
            RtsFlags::RECYCLE_CHANNEL.union(RtsFlags::OUT_CHANNEL)
        ),
        "RtsFlags(RECYCLE_CHANNEL|OUT_CHANNEL)"
    );
    assert_eq!(format!("{:?}", RtsFlags(0x8001)), "RtsFlags(PING|0x8000)");
    assert!(RtsFlags(0x0c).contains(RtsFlags::IN_CHANNEL));
    assert_eq!(RtsPduKind::OutR2C1.name(), "OUT_R2/C1");
    assert_eq!(RtsPduKind::ConnB1.section(), "2.2.4.5");
}

/// The vectors are the seeds of both RTS fuzz targets (`corpus/fuzz/rts_*/`):
/// `HARNESS_WRITE_SEEDS=1 cargo test -p harness-wire rpch` writes them, otherwise this
/// checks they are there and unchanged.
#[test]
fn vectors_are_the_fuzz_seeds() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpus/fuzz");
    let write = std::env::var_os("HARNESS_WRITE_SEEDS").is_some();
    for target in ["rts_pdu_decode", "rts_pdu_to_bytes_and_back"] {
        let dir = corpus.join(target);
        for (name, bytes) in VECTORS {
            let path = dir.join(format!("kat-{name}"));
            if write {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, bytes).unwrap();
            }
            let on_disk = std::fs::read(&path).unwrap_or_default();
            assert_eq!(on_disk, *bytes, "{}", path.display());
        }
    }
}
