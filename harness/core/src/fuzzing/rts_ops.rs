//! RPC over HTTP v2 RTS PDU targets ([`harness_wire::rpch`], [MS-RPCH] 2.2.3):
//!
//! * `rts_pdu_decode`: any octets give a typed error or an RTS PDU that encodes to
//!   frag_length octets whose body (after the 16-octet common header) is the input's,
//!   decodes to itself, and is what the stream framer's path ([`RtsPdu::from_pdu`])
//!   reads from the same octets. NumberOfCommands and Padding's ConformanceCount are
//!   bounded by the octets there before anything is sized by them (the decoder's
//!   `TooManyCommands` and `CommandPastFragment`).
//! * `rts_pdu_to_bytes_and_back`: [`arbitrary_rts_pdu`] builds a PDU of any flags and
//!   commands (every command type, IPv4 and IPv6 client addresses with any padding,
//!   sometimes a named PDU from its constructor); decode(encode(p)) == p.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::{Arbitrary, Unstructured};
use harness_wire::dcerpc::header::HEADER_LEN;
use harness_wire::dcerpc::{Pdu, Uuid};
use harness_wire::rpch::{
    FlowControlAck, ForwardDestination, RecycleCookies, RtsCommand, RtsError, RtsFlags, RtsPdu,
};

/// Fuzz target `rts_pdu_decode`.
pub fn rts_pdu_decode(data: &[u8]) {
    let decoded = RtsPdu::decode(data);
    let framed = Pdu::decode(data)
        .ok()
        .map(|(pdu, _)| RtsPdu::from_pdu(&pdu));
    let (pdu, used) = match decoded {
        Ok(ok) => ok,
        Err(RtsError::Truncated { needed }) => {
            assert!(needed > 0);
            return;
        }
        Err(e) => {
            // The framer's path refuses what the decoder refuses (when it frames at all).
            assert!(matches!(framed, None | Some(Err(_))), "{e:?} vs {framed:?}");
            return;
        }
    };
    assert_eq!(framed, Some(Ok(pdu.clone())));
    pdu.classify();
    let bytes = pdu.encode().expect("a decoded PDU fits its frag_length");
    assert_eq!(bytes.len(), used);
    assert_eq!(&bytes[HEADER_LEN..], &data[HEADER_LEN..used]);
    assert_eq!(RtsPdu::decode(&bytes), Ok((pdu, used)));
}

/// Fuzz target `rts_pdu_to_bytes_and_back`.
pub fn rts_pdu_to_bytes_and_back(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(pdu) = arbitrary_rts_pdu(&mut u) else {
        return;
    };
    let bytes = pdu.encode().expect("generated PDUs fit frag_length");
    assert_eq!(bytes.len(), pdu.encoded_len());
    assert_eq!(
        RtsPdu::decode(&bytes),
        Ok((pdu, bytes.len())),
        "bytes {bytes:02x?}"
    );
}

fn cookie(u: &mut Unstructured<'_>) -> arbitrary::Result<Uuid> {
    Ok(Uuid::new(
        u32::arbitrary(u)?,
        u16::arbitrary(u)?,
        u16::arbitrary(u)?,
        <[u8; 8]>::arbitrary(u)?,
    ))
}

fn recycle(u: &mut Unstructured<'_>) -> arbitrary::Result<RecycleCookies> {
    Ok(RecycleCookies {
        virtual_connection: cookie(u)?,
        predecessor: cookie(u)?,
        successor: cookie(u)?,
    })
}

fn ack(u: &mut Unstructured<'_>) -> arbitrary::Result<FlowControlAck> {
    Ok(FlowControlAck {
        bytes_received: u32::arbitrary(u)?,
        available_window: u32::arbitrary(u)?,
        channel_cookie: cookie(u)?,
    })
}

/// One command of any of the 15 types.
fn command(u: &mut Unstructured<'_>) -> arbitrary::Result<RtsCommand> {
    use RtsCommand as C;
    Ok(match u.int_in_range(0..=14u8)? {
        0 => C::ReceiveWindowSize(u32::arbitrary(u)?),
        1 => C::FlowControlAck(ack(u)?),
        2 => C::ConnectionTimeout(u32::arbitrary(u)?),
        3 => C::Cookie(cookie(u)?),
        4 => C::ChannelLifetime(u32::arbitrary(u)?),
        5 => C::ClientKeepalive(u32::arbitrary(u)?),
        6 => C::Version(u32::arbitrary(u)?),
        7 => C::Empty,
        8 => {
            let len = u.int_in_range(0..=64usize)?;
            C::Padding(u.bytes(len)?.to_vec())
        }
        9 => C::NegativeAnce,
        10 => C::Ance,
        11 => C::ClientAddress {
            address: if bool::arbitrary(u)? {
                IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::arbitrary(u)?))
            } else {
                IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::arbitrary(u)?))
            },
            padding: <[u8; 12]>::arbitrary(u)?,
        },
        12 => C::AssociationGroupId(cookie(u)?),
        13 => C::Destination(ForwardDestination(u32::arbitrary(u)?)),
        _ => C::PingTrafficSentNotify(u32::arbitrary(u)?),
    })
}

/// A named PDU from its constructor (one of each layout family).
fn named(u: &mut Unstructured<'_>) -> arbitrary::Result<RtsPdu> {
    let n = u32::arbitrary(u)?;
    Ok(match u.int_in_range(0..=9u8)? {
        0 => RtsPdu::conn_a1(1, cookie(u)?, cookie(u)?, n),
        1 => RtsPdu::conn_b1(1, cookie(u)?, cookie(u)?, n, 300_000, cookie(u)?),
        2 => RtsPdu::conn_b2(
            1,
            cookie(u)?,
            cookie(u)?,
            n,
            120_000,
            cookie(u)?,
            IpAddr::V4(Ipv4Addr::from(n)),
        ),
        3 => RtsPdu::conn_c2(1, n, 120_000),
        4 => RtsPdu::out_r1_a4(1, recycle(u)?, n, n, n),
        5 => RtsPdu::in_r1_a2(1, recycle(u)?, n, n),
        6 => RtsPdu::out_r2_a7(cookie(u)?, 1),
        7 => RtsPdu::flow_control_ack_with_destination(ForwardDestination(n % 4), ack(u)?),
        8 => RtsPdu::keep_alive(n),
        _ => RtsPdu::out_r2_c1(),
    })
}

/// A PDU the encoder can write: at most 32 commands, Padding of at most 64 octets (so
/// always under 65535 octets).
pub fn arbitrary_rts_pdu(u: &mut Unstructured<'_>) -> arbitrary::Result<RtsPdu> {
    if u.ratio(1, 4)? {
        return named(u);
    }
    let flags = RtsFlags(u16::arbitrary(u)?);
    let count = u.int_in_range(0..=32usize)?;
    let commands = (0..count)
        .map(|_| command(u))
        .collect::<arbitrary::Result<Vec<_>>>()?;
    Ok(RtsPdu::new(flags, commands))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generator reaches every command type and named PDUs, and both targets hold
    /// on its inputs and on the encodings.
    #[test]
    fn generated_pdus_cover_every_command_and_pass_both_targets() {
        let mut rng = crate::rng::SeededRng::new(16);
        let mut types = std::collections::BTreeSet::new();
        let mut named = 0;
        for _ in 0..3000 {
            let mut data = vec![0u8; 400];
            rng.fill(&mut data);
            rts_pdu_to_bytes_and_back(&data);
            rts_pdu_decode(&data);
            if let Ok(pdu) = arbitrary_rts_pdu(&mut Unstructured::new(&data)) {
                types.extend(pdu.commands.iter().map(|c| c.command_type().0));
                named += usize::from(!pdu.classify().is_empty());
                let bytes = pdu.encode().unwrap();
                rts_pdu_decode(&bytes);
                for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
                    rts_pdu_decode(&bytes[..cut]);
                }
            }
        }
        assert_eq!(types.len(), 15, "{types:?}");
        assert!(named > 300, "{named} named PDUs");
    }
}
