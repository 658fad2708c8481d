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
