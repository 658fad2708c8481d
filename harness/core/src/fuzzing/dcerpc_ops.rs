//! DCE/RPC connection-oriented PDU targets ([`harness_wire::dcerpc`]):
//!
//! * `dcerpc_pdu_decode`: any octets give a typed error or a PDU whose encoding decodes
//!   to the same PDU, the same length as it encodes to.
//! * `dcerpc_pdu_to_bytes_and_back`: [`arbitrary_pdu`] builds a PDU within what the
//!   format carries; its encoding decodes to it.
//! * `dcerpc_stream_framer`: octets pushed into a [`PduFramer`] in chunks give the same
//!   PDUs and the same error as pushed whole, and the framer never holds more than one
//!   fragment of at most the limit.

use arbitrary::{Arbitrary, Unstructured};
use harness_wire::dcerpc::{
    AckReason, AckResult, Auth3, AuthLevel, AuthType, AuthVerifier, Bind, BindAck, BindNak,
    ContextElement, ContextResult, DataRepresentation, Fault, FaultStatus, PacketType, Pdu,
    PduBody, PduFramer, PfcFlags, RejectReason, Request, Response, SyntaxId, Uuid,
};

/// Fuzz target `dcerpc_pdu_decode`.
pub fn dcerpc_pdu_decode(data: &[u8]) {
    if let Ok((pdu, used)) = Pdu::decode(data) {
        assert!(used <= data.len());
        check_encodes_back(&pdu);
    }
}

/// A decoded PDU encodes (unless re-padding pushes it past 65535 octets) and decodes
/// to itself.
fn check_encodes_back(pdu: &Pdu) {
    let bytes = match pdu.encode() {
        Ok(bytes) => bytes,
        Err(too_long) => {
            assert!(too_long.length > usize::from(u16::MAX), "{too_long:?}");
            return;
        }
    };
    assert_eq!(
        Pdu::decode(&bytes),
        Ok((pdu.clone(), bytes.len())),
        "bytes {bytes:02x?}"
    );
}

/// Fuzz target `dcerpc_pdu_to_bytes_and_back`.
pub fn dcerpc_pdu_to_bytes_and_back(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(pdu) = arbitrary_pdu(&mut u) else {
        return;
    };
    let bytes = pdu.encode().expect("small PDUs fit frag_length");
    assert_eq!(
        Pdu::decode(&bytes),
        Ok((pdu, bytes.len())),
        "bytes {bytes:02x?}"
    );
}

/// Fuzz target `dcerpc_stream_framer`: octets 0-1 pick the limit (16 to 4111), octet 2
/// the chunk size (1 to 64), the rest is the stream.
pub fn dcerpc_stream_framer(data: &[u8]) {
    let [a, b, c, stream @ ..] = data else {
        return;
    };
    let max_frag = 16 + u16::from_le_bytes([*a, *b]) % 4096;
    let chunk = 1 + usize::from(*c % 64);
    let run = |pieces: &mut dyn Iterator<Item = &[u8]>| {
        let mut framer = PduFramer::new(max_frag);
        let mut out = Vec::new();
        let mut result = Ok(());
        for piece in pieces {
            result = framer.push(piece, &mut out);
            assert!(framer.buffered() <= usize::from(max_frag));
            if result.is_err() {
                assert_eq!(framer.buffered(), 0);
                break;
            }
        }
        (out, result)
    };
    let whole = run(&mut std::iter::once(stream));
    let chunked = run(&mut stream.chunks(chunk));
    assert_eq!(whole, chunked, "chunks of {chunk}, limit {max_frag}");
    whole.0.iter().for_each(check_encodes_back);
}

fn small_bytes(u: &mut Unstructured<'_>, max: usize) -> arbitrary::Result<Vec<u8>> {
    let len = u.int_in_range(0..=max)?;
    Ok(u.bytes(len)?.to_vec())
}

fn uuid(u: &mut Unstructured<'_>) -> arbitrary::Result<Uuid> {
    // Mostly the syntaxes peers really send, sometimes any UUID.
    Ok(match u.int_in_range(0..=3u8)? {
        0 => SyntaxId::NDR20.uuid,
        1 => SyntaxId::NDR64.uuid,
        2 => SyntaxId::bind_time_features(u64::from(u8::arbitrary(u)? % 4)).uuid,
        _ => Uuid::new(
            u32::arbitrary(u)?,
            u16::arbitrary(u)?,
            u16::arbitrary(u)?,
            <[u8; 8]>::arbitrary(u)?,
        ),
    })
}

fn syntax(u: &mut Unstructured<'_>) -> arbitrary::Result<SyntaxId> {
    Ok(SyntaxId {
        uuid: uuid(u)?,
        version: u32::arbitrary(u)?,
    })
}

fn list<T>(
    u: &mut Unstructured<'_>,
    min: usize,
    max: usize,
    mut item: impl FnMut(&mut Unstructured<'_>) -> arbitrary::Result<T>,
) -> arbitrary::Result<Vec<T>> {
    let n = u.int_in_range(min..=max)?;
    (0..n).map(|_| item(u)).collect()
}

fn bind(u: &mut Unstructured<'_>) -> arbitrary::Result<Bind> {
    Ok(Bind {
        max_xmit_frag: u16::arbitrary(u)?,
        max_recv_frag: u16::arbitrary(u)?,
        assoc_group_id: u32::arbitrary(u)?,
        contexts: list(u, 1, 4, |u| {
            Ok(ContextElement {
                context_id: u16::arbitrary(u)?,
                abstract_syntax: syntax(u)?,
                transfer_syntaxes: list(u, 1, 3, syntax)?,
            })
        })?,
    })
}

fn bind_ack(u: &mut Unstructured<'_>) -> arbitrary::Result<BindAck> {
    Ok(BindAck {
        max_xmit_frag: u16::arbitrary(u)?,
        max_recv_frag: u16::arbitrary(u)?,
        assoc_group_id: u32::arbitrary(u)?,
        sec_addr: small_bytes(u, 12)?,
        results: list(u, 0, 4, |u| {
            Ok(ContextResult {
                result: AckResult(u16::arbitrary(u)? % 5),
                reason: AckReason(u16::arbitrary(u)? % 5),
                transfer_syntax: syntax(u)?,
            })
        })?,
    })
}

fn body(u: &mut Unstructured<'_>) -> arbitrary::Result<PduBody> {
    Ok(match u.int_in_range(0..=12u8)? {
        0 => PduBody::Request(Request {
            alloc_hint: u32::arbitrary(u)?,
            context_id: u16::arbitrary(u)?,
            opnum: u16::arbitrary(u)?,
            object: if bool::arbitrary(u)? {
                Some(uuid(u)?)
            } else {
                None
            },
            stub: small_bytes(u, 64)?,
        }),
        1 => PduBody::Response(Response {
            alloc_hint: u32::arbitrary(u)?,
            context_id: u16::arbitrary(u)?,
            cancel_count: u8::arbitrary(u)?,
            stub: small_bytes(u, 64)?,
        }),
        2 => PduBody::Fault(Fault {
            alloc_hint: u32::arbitrary(u)?,
            context_id: u16::arbitrary(u)?,
            cancel_count: u8::arbitrary(u)?,
            flags: u8::arbitrary(u)?,
            status: FaultStatus(u32::arbitrary(u)?),
            stub: small_bytes(u, 16)?,
        }),
        3 => PduBody::Bind(bind(u)?),
        4 => PduBody::AlterContext(bind(u)?),
        5 => PduBody::BindAck(bind_ack(u)?),
        6 => PduBody::AlterContextResp(bind_ack(u)?),
        7 => PduBody::BindNak(BindNak {
            reason: RejectReason(u16::arbitrary(u)? % 10),
            versions: list(u, 0, 3, |u| Ok((u8::arbitrary(u)?, u8::arbitrary(u)?)))?,
        }),
        8 => PduBody::Auth3(Auth3 {
            pad: <[u8; 4]>::arbitrary(u)?,
        }),
        9 => PduBody::Shutdown,
        10 => PduBody::CoCancel,
        11 => PduBody::Orphaned,
        _ => {
            let raw = u8::arbitrary(u)?;
            let packet_type = if PduBody::has_codec(PacketType(raw)) {
                PacketType::RTS
            } else {
                PacketType(raw)
            };
            PduBody::Other {
                packet_type,
                auth_length: u16::arbitrary(u)?,
                bytes: small_bytes(u, 64)?,
            }
        }
    })
}

/// A PDU the encoder can write: lists within their one-octet counts, a little-endian
/// drep, OBJECT_UUID on a request exactly when it has an object, no verifier on a raw
/// body (whose octets hold any), no empty auth_value.
pub fn arbitrary_pdu(u: &mut Unstructured<'_>) -> arbitrary::Result<Pdu> {
    let body = body(u)?;
    let mut flags = PfcFlags(u8::arbitrary(u)?);
    if let PduBody::Request(r) = &body {
        flags.set(PfcFlags::OBJECT_UUID, r.object.is_some());
    }
    let raw = matches!(body, PduBody::Other { .. });
    let auth = if !raw && bool::arbitrary(u)? {
        Some(AuthVerifier {
            auth_type: AuthType(u8::arbitrary(u)?),
            auth_level: AuthLevel(u8::arbitrary(u)? % 8),
            auth_context_id: u32::arbitrary(u)?,
            // At least one octet: auth_length 0 means no verifier.
            auth_value: {
                let mut v = small_bytes(u, 63)?;
                v.push(u8::arbitrary(u)?);
                v
            },
        })
    } else {
        None
    };
    let mut drep = <[u8; 4]>::arbitrary(u)?;
    drep[0] |= DataRepresentation::LITTLE_ENDIAN.0[0];
    Ok(Pdu {
        minor_version: u8::arbitrary(u)? % 2,
        flags,
        drep: DataRepresentation(drep),
        call_id: u32::arbitrary(u)?,
        body,
        auth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generator reaches every body kind, with and without verifiers, and the three
    /// targets hold on its inputs.
    #[test]
    fn generated_pdus_cover_every_type_and_pass_the_targets() {
        let mut rng = crate::rng::SeededRng::new(15);
        let mut kinds = std::collections::BTreeSet::new();
        let mut signed = 0;
        for _ in 0..3000 {
            let mut data = vec![0u8; 300];
            rng.fill(&mut data);
            dcerpc_pdu_to_bytes_and_back(&data);
            if let Ok(pdu) = arbitrary_pdu(&mut Unstructured::new(&data)) {
                kinds.insert(pdu.packet_type().name().unwrap_or("other"));
                signed += usize::from(pdu.auth.is_some());
                let bytes = pdu.encode().unwrap();
                dcerpc_pdu_decode(&bytes);
                let mut stream = vec![0xff, 0x0f, data[0]];
                stream.extend_from_slice(&bytes);
                stream.extend_from_slice(&bytes);
                dcerpc_stream_framer(&stream);
            }
        }
        assert!(kinds.len() >= 14, "{kinds:?}");
        assert!(signed > 100, "{signed} signed PDUs");
    }
}
