//! Call PDUs: request, response and fault ([C706] 12.6.4.9, 12.6.4.10, 12.6.4.7;
//! [MS-RPCE] 2.2.2.9 for the fault flags), and auth3 ([MS-RPCE] 2.2.2.10).

use crate::codec::{Codec, DecodeError, Reader, Writer};
use crate::wire_enum;

use super::header::PfcFlags;
use super::uuid::Uuid;

/// Octets of the request body before the stub (without an object UUID).
pub const REQUEST_HEADER_LEN: usize = 8;
/// Octets of the response body before the stub.
pub const RESPONSE_HEADER_LEN: usize = 8;
/// Octets of the fault body before its (optional) stub.
pub const FAULT_HEADER_LEN: usize = 16;

/// The body of a request.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Request {
    /// The whole call's stub size, a hint only: nobody may allocate by it unchecked.
    pub alloc_hint: u32,
    pub context_id: u16,
    pub opnum: u16,
    /// Present exactly when the header has OBJECT_UUID; `Pdu` keeps the two in step.
    pub object: Option<Uuid>,
    /// This fragment's stub data (auth padding removed).
    pub stub: Vec<u8>,
}

impl Request {
    /// Reads a request body; the object UUID is there when `flags` has OBJECT_UUID.
    pub fn decode_with_flags(r: &mut Reader<'_>, flags: PfcFlags) -> Result<Self, DecodeError> {
        let alloc_hint = r.u32_le()?;
        let context_id = r.u16_le()?;
        let opnum = r.u16_le()?;
        let object = match flags.contains(PfcFlags::OBJECT_UUID) {
            true => Some(Uuid::decode(r)?),
            false => None,
        };
        Ok(Request {
            alloc_hint,
            context_id,
            opnum,
            object,
            stub: r.take(r.remaining())?.to_vec(),
        })
    }

    /// Octets before the stub.
    pub fn header_len(&self) -> usize {
        REQUEST_HEADER_LEN + if self.object.is_some() { 16 } else { 0 }
    }
}

/// `decode` reads a body whose header lacks OBJECT_UUID; [`Request::decode_with_flags`]
/// is the general form.
impl Codec for Request {
    fn encode(&self, w: &mut Writer) {
        w.put_u32_le(self.alloc_hint);
        w.put_u16_le(self.context_id);
        w.put_u16_le(self.opnum);
        if let Some(object) = &self.object {
            object.encode(w);
        }
        w.put_bytes(&self.stub);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Request::decode_with_flags(r, PfcFlags::default())
    }
}

/// The body of a response.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Response {
    pub alloc_hint: u32,
    pub context_id: u16,
    pub cancel_count: u8,
    /// This fragment's stub data (auth padding removed).
    pub stub: Vec<u8>,
}

impl Codec for Response {
    fn encode(&self, w: &mut Writer) {
        w.put_u32_le(self.alloc_hint);
        w.put_u16_le(self.context_id);
        w.put_u8(self.cancel_count);
        w.put_u8(0); // reserved
        w.put_bytes(&self.stub);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let alloc_hint = r.u32_le()?;
        let context_id = r.u16_le()?;
        let cancel_count = r.u8()?;
        r.skip(1)?;
        Ok(Response {
            alloc_hint,
            context_id,
            cancel_count,
            stub: r.take(r.remaining())?.to_vec(),
        })
    }
}

wire_enum! {
    /// Fault status: the nca_s_* codes of [C706] Appendix E and the Windows error codes
    /// [MS-RPCE] 2.2.2.9 lists as common (PROTOCOLS.md 4.4).
    pub struct FaultStatus(u32, le) {
        ACCESS_DENIED = 0x0000_0005,
        SERVER_UNAVAILABLE = 0x0000_06ba,
        CANT_PERFORM = 0x0000_06d8,
        /// RPC_S_CANNOT_SUPPORT: the operation exists but is not offered.
        CANNOT_SUPPORT = 0x0000_06e4,
        BAD_STUB_DATA = 0x0000_06f7,
        /// RPC_S_SEC_PKG_ERROR: what Samba faults a PDU whose verifier fails with.
        SEC_PKG_ERROR = 0x0000_0721,
        NCA_S_FAULT_INVALID_BOUND = 0x1c00_0007,
        NCA_S_FAULT_UNSPEC = 0x1c00_0012,
        NCA_S_FAULT_CONTEXT_MISMATCH = 0x1c00_001a,
        NCA_S_INVALID_PRES_CONTEXT_ID = 0x1c00_001c,
        NCA_S_UNSUPPORTED_AUTHN_LEVEL = 0x1c00_001d,
        NCA_S_INVALID_CHECKSUM = 0x1c00_001f,
        NCA_S_COMM_FAILURE = 0x1c01_0001,
        NCA_S_OP_RNG_ERROR = 0x1c01_0002,
        NCA_S_UNK_IF = 0x1c01_0003,
        NCA_S_WRONG_BOOT_TIME = 0x1c01_0006,
        NCA_S_PROTO_ERROR = 0x1c01_000b,
        NCA_S_SERVER_TOO_BUSY = 0x1c01_0014,
    }
}

/// The body of a fault.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Fault {
    pub alloc_hint: u32,
    pub context_id: u16,
    pub cancel_count: u8,
    /// 0x01: extended error information follows in the stub ([MS-RPCE] 2.2.2.9).
    pub flags: u8,
    pub status: FaultStatus,
    /// Octets after the fixed part (extended error information), usually none.
    pub stub: Vec<u8>,
}

impl Codec for Fault {
    fn encode(&self, w: &mut Writer) {
        w.put_u32_le(self.alloc_hint);
        w.put_u16_le(self.context_id);
        w.put_u8(self.cancel_count);
        w.put_u8(self.flags);
        self.status.encode(w);
        w.put_u32_le(0); // reserved
        w.put_bytes(&self.stub);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let alloc_hint = r.u32_le()?;
        let context_id = r.u16_le()?;
        let cancel_count = r.u8()?;
        let flags = r.u8()?;
        let status = FaultStatus::decode(r)?;
        r.skip(4)?;
        Ok(Fault {
            alloc_hint,
            context_id,
            cancel_count,
            flags,
            status,
            stub: r.take(r.remaining())?.to_vec(),
        })
    }
}

/// The body of auth3: four octets the receiver ignores (Windows copies max_xmit_frag
/// and max_recv_frag there, impacket four spaces), kept so a PDU re-encodes as read.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Auth3 {
    pub pad: [u8; 4],
}

impl Codec for Auth3 {
    fn encode(&self, w: &mut Writer) {
        w.put_bytes(&self.pad);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Auth3 { pad: r.array()? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip() {
        let object = Uuid::new(1, 2, 3, [4; 8]);
        let req = Request {
            alloc_hint: 3,
            context_id: 1,
            opnum: 10,
            object: Some(object),
            stub: vec![1, 2, 3],
        };
        let bytes = req.to_bytes();
        assert_eq!(bytes.len(), req.header_len() + 3);
        let mut r = Reader::new(&bytes);
        assert_eq!(
            Request::decode_with_flags(&mut r, PfcFlags::OBJECT_UUID),
            Ok(req)
        );
        let plain = Request {
            alloc_hint: 0,
            context_id: 0,
            opnum: 0,
            object: None,
            stub: vec![],
        };
        assert_eq!(
            Request::decode(&mut Reader::new(&plain.to_bytes())),
            Ok(plain)
        );
        let resp = Response {
            alloc_hint: 2,
            context_id: 0,
            cancel_count: 1,
            stub: vec![7, 8],
        };
        assert_eq!(
            Response::decode(&mut Reader::new(&resp.to_bytes())),
            Ok(resp)
        );
        let fault = Fault {
            alloc_hint: 32,
            context_id: 0,
            cancel_count: 0,
            flags: 0,
            status: FaultStatus::NCA_S_OP_RNG_ERROR,
            stub: vec![],
        };
        let bytes = fault.to_bytes();
        assert_eq!(bytes.len(), FAULT_HEADER_LEN);
        assert_eq!(&bytes[8..12], &[2, 0, 1, 0x1c]);
        assert_eq!(Fault::decode(&mut Reader::new(&bytes)), Ok(fault));
        assert_eq!(
            format!("{:?}", FaultStatus(0x1c01_0003)),
            "FaultStatus::NCA_S_UNK_IF (0x1c010003)"
        );
        let auth3 = Auth3 { pad: *b"    " };
        assert_eq!(
            Auth3::decode(&mut Reader::new(&auth3.to_bytes())),
            Ok(auth3)
        );
    }

    #[test]
    fn short_bodies_are_incomplete() {
        assert_eq!(
            Request::decode(&mut Reader::new(&[0; 7])),
            Err(DecodeError::Incomplete { needed: 1 })
        );
        assert_eq!(
            Request::decode_with_flags(&mut Reader::new(&[0; 20]), PfcFlags::OBJECT_UUID),
            Err(DecodeError::Incomplete { needed: 4 })
        );
        assert_eq!(
            Fault::decode(&mut Reader::new(&[0; 12])),
            Err(DecodeError::Incomplete { needed: 4 })
        );
    }
}
