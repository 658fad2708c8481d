//! The auth verifier: the 8-octet sec_trailer and the auth_value after it, at the end of
//! a fragment ([C706] 13.2.6.1; [MS-RPCE] 2.2.2.11).

use crate::codec::{Codec, DecodeError, Reader, Writer};
use crate::wire_enum;

/// Octets of the sec_trailer before auth_value.
pub const SEC_TRAILER_LEN: usize = 8;
/// Requests and responses pad their stub so the sec_trailer starts 16-octet aligned from
/// the start of the body ([MS-RPCE] 2.2.2.11).
pub const STUB_AUTH_ALIGN: usize = 16;
/// Other PDUs align the trailer to 4 ([C706] 13.2.6.1); their bodies already are.
pub const BODY_AUTH_ALIGN: usize = 4;

/// auth_length is larger than the fragment holds after its header.
pub const ERR_AUTH_LENGTH: &str = "dcerpc: auth_length larger than the fragment";
/// auth_pad_length is larger than the body before the sec_trailer.
pub const ERR_AUTH_PAD: &str = "dcerpc: auth_pad_length larger than the body before it";

wire_enum! {
    /// auth_type, the security provider ([MS-RPCE] 2.2.1.1.7).
    pub struct AuthType(u8, le) {
        NONE = 0,
        SPNEGO = 9,
        NTLMSSP = 10,
        SCHANNEL = 14,
        KERBEROS = 16,
        NETLOGON = 68,
        DEFAULT = 0xff,
    }
}

wire_enum! {
    /// auth_level ([MS-RPCE] 2.2.1.1.8).
    pub struct AuthLevel(u8, le) {
        DEFAULT = 0,
        NONE = 1,
        CONNECT = 2,
        CALL = 3,
        PKT = 4,
        PKT_INTEGRITY = 5,
        PKT_PRIVACY = 6,
    }
}

/// The sec_trailer fields and auth_value. auth_pad_length is not kept: it is layout,
/// computed by the encoder from where the trailer lands.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AuthVerifier {
    pub auth_type: AuthType,
    pub auth_level: AuthLevel,
    pub auth_context_id: u32,
    /// A security token (bind, alter_context, auth3) or a signature (calls).
    pub auth_value: Vec<u8>,
}

/// The 8-octet sec_trailer alone, as on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SecTrailer {
    pub auth_type: AuthType,
    pub auth_level: AuthLevel,
    pub auth_pad_length: u8,
    pub auth_context_id: u32,
}

impl Codec for SecTrailer {
    fn encode(&self, w: &mut Writer) {
        self.auth_type.encode(w);
        self.auth_level.encode(w);
        w.put_u8(self.auth_pad_length);
        w.put_u8(0); // auth_reserved
        w.put_u32_le(self.auth_context_id);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let auth_type = AuthType::decode(r)?;
        let auth_level = AuthLevel::decode(r)?;
        let auth_pad_length = r.u8()?;
        r.skip(1)?;
        Ok(SecTrailer {
            auth_type,
            auth_level,
            auth_pad_length,
            auth_context_id: r.u32_le()?,
        })
    }
}

/// Splits a fragment's octets after the header into the body (padding removed) and the
/// verifier, given the header's auth_length. Every length is checked before slicing.
pub(crate) fn split_verifier(
    after_header: &[u8],
    auth_length: u16,
) -> Result<(&[u8], Option<AuthVerifier>), DecodeError> {
    if auth_length == 0 {
        return Ok((after_header, None));
    }
    let tail = usize::from(auth_length) + SEC_TRAILER_LEN;
    let trailer_at = after_header
        .len()
        .checked_sub(tail)
        .ok_or(DecodeError::Invalid(ERR_AUTH_LENGTH))?;
    let (body_and_pad, trailer) = after_header.split_at(trailer_at);
    let mut r = Reader::new(trailer);
    let sec = SecTrailer::decode(&mut r)?;
    let body_len = body_and_pad
        .len()
        .checked_sub(usize::from(sec.auth_pad_length))
        .ok_or(DecodeError::Invalid(ERR_AUTH_PAD))?;
    let verifier = AuthVerifier {
        auth_type: sec.auth_type,
        auth_level: sec.auth_level,
        auth_context_id: sec.auth_context_id,
        auth_value: r.rest().to_vec(),
    };
    Ok((
        body_and_pad.get(..body_len).unwrap_or_default(),
        Some(verifier),
    ))
}

/// Appends padding (zeros up to `align` counted from `body_start`), the sec_trailer and
/// auth_value.
pub(crate) fn put_verifier(w: &mut Writer, body_start: usize, align: usize, v: &AuthVerifier) {
    let pad = (align - (w.len() - body_start) % align) % align;
    w.put_zeros(pad);
    let sec = SecTrailer {
        auth_type: v.auth_type,
        auth_level: v.auth_level,
        auth_pad_length: pad as u8, // below `align`, at most 16
        auth_context_id: v.auth_context_id,
    };
    sec.encode(w);
    w.put_bytes(&v.auth_value);
}

/// Where the protected parts of a call fragment lie, in the octets of the whole fragment
/// ([MS-RPCE] 2.2.2.11): what a signature covers and what sealing encrypts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtectedLayout {
    /// The stub data and the auth padding after it: what packet privacy encrypts.
    pub stub: std::ops::Range<usize>,
    /// The auth_value (the signature): everything before it is signed.
    pub signature: std::ops::Range<usize>,
    /// auth_pad_length as the sec_trailer says (already checked to lie inside `stub`).
    pub pad: usize,
    pub trailer: SecTrailer,
}

/// The [`ProtectedLayout`] of one request, response or fault fragment with a verifier,
/// from its octets alone; None for other PTYPEs or without a verifier. Lengths are
/// checked against each other: a lying auth_length or auth_pad_length is an error.
pub fn protected_layout(frame: &[u8]) -> Result<Option<ProtectedLayout>, DecodeError> {
    use super::call::{FAULT_HEADER_LEN, REQUEST_HEADER_LEN, RESPONSE_HEADER_LEN};
    use super::header::{Header, PacketType, PfcFlags, HEADER_LEN};
    let header = Header::decode(&mut Reader::new(frame))?;
    let frag_length = usize::from(header.frag_length);
    if frame.len() < frag_length {
        return Err(DecodeError::Incomplete {
            needed: frag_length - frame.len(),
        });
    }
    let body_header = match header.packet_type {
        PacketType::REQUEST if header.flags.contains(PfcFlags::OBJECT_UUID) => {
            REQUEST_HEADER_LEN + 16
        }
        PacketType::REQUEST => REQUEST_HEADER_LEN,
        PacketType::RESPONSE => RESPONSE_HEADER_LEN,
        PacketType::FAULT => FAULT_HEADER_LEN,
        _ => return Ok(None),
    };
    if header.auth_length == 0 {
        return Ok(None);
    }
    let stub_start = HEADER_LEN + body_header;
    let signature_start = frag_length
        .checked_sub(usize::from(header.auth_length))
        .ok_or(DecodeError::Invalid(ERR_AUTH_LENGTH))?;
    let trailer_at = signature_start
        .checked_sub(SEC_TRAILER_LEN)
        .filter(|&at| at >= stub_start)
        .ok_or(DecodeError::Invalid(ERR_AUTH_LENGTH))?;
    let trailer = SecTrailer::decode(&mut Reader::new(&frame[trailer_at..signature_start]))?;
    let pad = usize::from(trailer.auth_pad_length);
    if pad > trailer_at - stub_start {
        return Err(DecodeError::Invalid(ERR_AUTH_PAD));
    }
    Ok(Some(ProtectedLayout {
        stub: stub_start..trailer_at,
        signature: signature_start..frag_length,
        pad,
        trailer,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier() -> AuthVerifier {
        AuthVerifier {
            auth_type: AuthType::NTLMSSP,
            auth_level: AuthLevel::PKT_INTEGRITY,
            auth_context_id: 7,
            auth_value: vec![0xaa; 16],
        }
    }

    #[test]
    fn placed_after_padding_and_split_off_again() {
        let mut w = Writer::new();
        w.put_bytes(&[9; 5]);
        put_verifier(&mut w, 0, STUB_AUTH_ALIGN, &verifier());
        let bytes = w.into_bytes();
        assert_eq!(bytes.len(), 16 + 8 + 16);
        assert_eq!(&bytes[16..24], &[10, 5, 11, 0, 7, 0, 0, 0]);
        let (body, v) = split_verifier(&bytes, 16).unwrap();
        assert_eq!(body, &[9; 5]);
        assert_eq!(v, Some(verifier()));
    }

    #[test]
    fn protected_layout_of_a_request() {
        use super::super::call::Request;
        use super::super::header::PfcFlags;
        use super::super::pdu::{Pdu, PduBody};
        let body = PduBody::Request(Request {
            alloc_hint: 5,
            context_id: 0,
            opnum: 3,
            object: None,
            stub: vec![1; 5],
        });
        let mut pdu = Pdu::new(9, PfcFlags::WHOLE, body);
        pdu.auth = Some(verifier());
        let bytes = pdu.encode().unwrap();
        let layout = protected_layout(&bytes).unwrap().unwrap();
        // 16 header + 8 request header; 5 stub octets padded to 16 (from the stub).
        assert_eq!(layout.stub, 24..40);
        assert_eq!(layout.pad, 11);
        assert_eq!(layout.signature, 48..64);
        assert_eq!(layout.trailer.auth_context_id, 7);
        let mut lying = bytes.clone();
        lying[10] = 40; // auth_length reaching into the request header
        assert_eq!(
            protected_layout(&lying),
            Err(DecodeError::Invalid(ERR_AUTH_LENGTH))
        );
        let mut lying = bytes.clone();
        lying[42] = 17; // auth_pad_length longer than the stub and its pad
        assert_eq!(
            protected_layout(&lying),
            Err(DecodeError::Invalid(ERR_AUTH_PAD))
        );
        pdu.auth = None;
        assert_eq!(protected_layout(&pdu.encode().unwrap()), Ok(None));
        assert!(protected_layout(&bytes[..30]).is_err());
    }

    /// Where each body's stub starts, an empty stub, a truncated frame, and a pad
    /// counted from somewhere that is not a multiple of 8.
    #[test]
    fn protected_layout_of_every_call_body() {
        use super::super::call::{Fault, FaultStatus, Request, Response};
        use super::super::header::PfcFlags;
        use super::super::pdu::{Pdu, PduBody};
        use super::super::uuid::Uuid;
        let request = |stub: Vec<u8>, object| {
            PduBody::Request(Request {
                alloc_hint: 0,
                context_id: 0,
                opnum: 0,
                object,
                stub,
            })
        };
        let response = PduBody::Response(Response {
            alloc_hint: 0,
            context_id: 0,
            cancel_count: 0,
            stub: vec![2; 3],
        });
        let fault = PduBody::Fault(Fault {
            alloc_hint: 0,
            context_id: 0,
            cancel_count: 0,
            flags: 0,
            status: FaultStatus::ACCESS_DENIED,
            stub: vec![],
        });
        let object = Some(Uuid::new(1, 2, 3, [4; 8]));
        for (body, stub_start, pad) in [
            (request(vec![1; 5], None), 24, 11),
            (request(vec![], None), 24, 0),
            (request(vec![1; 5], object), 40, 11),
            (response, 24, 13),
            (fault, 32, 0),
        ] {
            let mut pdu = Pdu::new(1, PfcFlags::WHOLE, body);
            pdu.auth = Some(verifier());
            let bytes = pdu.encode().unwrap();
            let layout = protected_layout(&bytes).unwrap().unwrap();
            assert_eq!(
                (layout.stub.start, layout.pad),
                (stub_start, pad),
                "{pdu:?}"
            );
            assert_eq!(layout.signature, bytes.len() - 16..bytes.len());
            assert_eq!(
                protected_layout(&bytes[..bytes.len() - 3]),
                Err(DecodeError::Incomplete { needed: 3 })
            );
        }
        // The pad counts from `body_start`, whatever it is.
        let mut w = Writer::new();
        w.put_bytes(&[9; 8]);
        put_verifier(&mut w, 3, STUB_AUTH_ALIGN, &verifier());
        assert_eq!(w.as_bytes()[8 + 11 + 2], 11, "5 octets after 3: 11 to pad");
    }

    #[test]
    fn lying_lengths_are_typed_errors() {
        let mut w = Writer::new();
        put_verifier(&mut w, 0, BODY_AUTH_ALIGN, &verifier());
        let bytes = w.into_bytes();
        assert_eq!(
            split_verifier(&bytes, 17),
            Err(DecodeError::Invalid(ERR_AUTH_LENGTH))
        );
        assert_eq!(
            split_verifier(&bytes, u16::MAX),
            Err(DecodeError::Invalid(ERR_AUTH_LENGTH))
        );
        let mut padded = bytes.clone();
        padded[2] = 1;
        assert_eq!(
            split_verifier(&padded, 16),
            Err(DecodeError::Invalid(ERR_AUTH_PAD))
        );
        assert_eq!(split_verifier(&bytes, 0), Ok((&bytes[..], None)));
    }
}
