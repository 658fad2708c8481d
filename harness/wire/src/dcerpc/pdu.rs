//! One connection-oriented PDU: the common header's fields, the body by PTYPE and the
//! auth verifier, decoded from and encoded to one fragment ([C706] 12.6).

use crate::codec::{Codec, DecodeError, Reader, Writer};

use super::auth::{put_verifier, split_verifier, AuthVerifier, BODY_AUTH_ALIGN, STUB_AUTH_ALIGN};
use super::bind::{Bind, BindAck, BindNak};
use super::call::{Auth3, Fault, Request, Response, FAULT_HEADER_LEN, RESPONSE_HEADER_LEN};
use super::header::{DataRepresentation, Header, PacketType, PfcFlags, ERR_BIG_ENDIAN, HEADER_LEN};

/// The body ends before a field its PTYPE requires: frag_length (or auth_length) lied.
pub const ERR_BODY_SHORT: &str = "dcerpc: fragment ends inside the PDU body";

/// The body of a PDU, by PTYPE.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum PduBody {
    Request(Request),
    Response(Response),
    Fault(Fault),
    Bind(Bind),
    BindAck(BindAck),
    BindNak(BindNak),
    AlterContext(Bind),
    AlterContextResp(BindAck),
    Auth3(Auth3),
    Shutdown,
    CoCancel,
    Orphaned,
    /// A PTYPE with no connection-oriented body here (the connectionless ones, rts,
    /// unknown values): the octets after the header as they are, auth trailer included,
    /// and the header's auth_length. Only for PTYPEs the other variants do not cover.
    Other {
        packet_type: PacketType,
        auth_length: u16,
        bytes: Vec<u8>,
    },
}

impl PduBody {
    pub fn packet_type(&self) -> PacketType {
        match self {
            PduBody::Request(_) => PacketType::REQUEST,
            PduBody::Response(_) => PacketType::RESPONSE,
            PduBody::Fault(_) => PacketType::FAULT,
            PduBody::Bind(_) => PacketType::BIND,
            PduBody::BindAck(_) => PacketType::BIND_ACK,
            PduBody::BindNak(_) => PacketType::BIND_NAK,
            PduBody::AlterContext(_) => PacketType::ALTER_CONTEXT,
            PduBody::AlterContextResp(_) => PacketType::ALTER_CONTEXT_RESP,
            PduBody::Auth3(_) => PacketType::AUTH3,
            PduBody::Shutdown => PacketType::SHUTDOWN,
            PduBody::CoCancel => PacketType::CO_CANCEL,
            PduBody::Orphaned => PacketType::ORPHANED,
            PduBody::Other { packet_type, .. } => *packet_type,
        }
    }

    /// Whether the PTYPE has a body type here (else it decodes as [`PduBody::Other`]).
    pub fn has_codec(packet_type: PacketType) -> bool {
        matches!(packet_type.0, 0 | 2 | 3 | 11..=19)
    }

    /// Decodes the body of a PTYPE for which [`PduBody::has_codec`] holds.
    fn decode(
        packet_type: PacketType,
        flags: PfcFlags,
        r: &mut Reader<'_>,
    ) -> Result<Self, DecodeError> {
        match packet_type {
            PacketType::REQUEST => Request::decode_with_flags(r, flags).map(PduBody::Request),
            PacketType::RESPONSE => Response::decode(r).map(PduBody::Response),
            PacketType::FAULT => Fault::decode(r).map(PduBody::Fault),
            PacketType::BIND => Bind::decode(r).map(PduBody::Bind),
            PacketType::BIND_ACK => BindAck::decode(r).map(PduBody::BindAck),
            PacketType::BIND_NAK => BindNak::decode(r).map(PduBody::BindNak),
            PacketType::ALTER_CONTEXT => Bind::decode(r).map(PduBody::AlterContext),
            PacketType::ALTER_CONTEXT_RESP => BindAck::decode(r).map(PduBody::AlterContextResp),
            PacketType::AUTH3 => Auth3::decode(r).map(PduBody::Auth3),
            PacketType::SHUTDOWN => Ok(PduBody::Shutdown),
            PacketType::CO_CANCEL => Ok(PduBody::CoCancel),
            PacketType::ORPHANED => Ok(PduBody::Orphaned),
            other => Ok(PduBody::Other {
                packet_type: other,
                auth_length: 0,
                bytes: r.take(r.remaining())?.to_vec(),
            }),
        }
    }

    fn encode(&self, w: &mut Writer) {
        match self {
            PduBody::Request(b) => b.encode(w),
            PduBody::Response(b) => b.encode(w),
            PduBody::Fault(b) => b.encode(w),
            PduBody::Bind(b) | PduBody::AlterContext(b) => b.encode(w),
            PduBody::BindAck(b) | PduBody::AlterContextResp(b) => b.encode(w),
            PduBody::BindNak(b) => b.encode(w),
            PduBody::Auth3(b) => b.encode(w),
            PduBody::Shutdown | PduBody::CoCancel | PduBody::Orphaned => {}
            PduBody::Other { bytes, .. } => w.put_bytes(bytes),
        }
    }

    /// The sec_trailer alignment and where it is counted from (octets after the common
    /// header): a stub is padded to 16 counted from the stub's own start, as Windows and
    /// Samba pad it (Samba: "w2k8 wants the pad relative to the stub"); the other bodies
    /// are 4-aligned already.
    fn auth_align(&self) -> (usize, usize) {
        match self {
            PduBody::Request(r) => (r.header_len(), STUB_AUTH_ALIGN),
            PduBody::Response(_) => (RESPONSE_HEADER_LEN, STUB_AUTH_ALIGN),
            PduBody::Fault(_) => (FAULT_HEADER_LEN, STUB_AUTH_ALIGN),
            _ => (0, BODY_AUTH_ALIGN),
        }
    }
}

/// The encoding would not fit the 16-bit frag_length: split the stub first
/// ([`super::reassembly::fragment`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("dcerpc: a PDU of {length} octets does not fit frag_length")]
pub struct PduTooLong {
    pub length: usize,
}

/// One fragment. frag_length and auth_length are not kept: the encoder computes them.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Pdu {
    /// rpc_vers_minor: 0 or 1 from conforming peers; others are kept so a server can
    /// answer with a bind_nak.
    pub minor_version: u8,
    /// The encoder sets OBJECT_UUID on a request exactly when it has an object UUID.
    pub flags: PfcFlags,
    /// Bodies are read and written little-endian only: a big-endian drep makes the
    /// decoder refuse a known body with [`ERR_BIG_ENDIAN`], and the encoder writes the
    /// header in the drep's order but the body little-endian.
    pub drep: DataRepresentation,
    pub call_id: u32,
    pub body: PduBody,
    /// Ignored by the encoder for [`PduBody::Other`], whose octets already hold any, and
    /// when auth_value is empty (auth_length 0 means none).
    pub auth: Option<AuthVerifier>,
}

impl Pdu {
    /// A PDU with minor version 0, little-endian drep and no verifier.
    pub fn new(call_id: u32, flags: PfcFlags, body: PduBody) -> Pdu {
        Pdu {
            minor_version: 0,
            flags,
            drep: DataRepresentation::LITTLE_ENDIAN,
            call_id,
            body,
            auth: None,
        }
    }

    pub fn packet_type(&self) -> PacketType {
        self.body.packet_type()
    }

    /// Decodes the fragment at the start of `bytes`; returns it and its length
    /// (frag_length). `Incomplete` only when `bytes` is shorter than frag_length; a
    /// body that does not fit frag_length is `Invalid`.
    pub fn decode(bytes: &[u8]) -> Result<(Pdu, usize), DecodeError> {
        let mut r = Reader::new(bytes);
        let header = Header::decode(&mut r)?;
        let frag_length = usize::from(header.frag_length);
        let after_header = r.take(frag_length - HEADER_LEN)?;
        let (body, auth) = if !PduBody::has_codec(header.packet_type) {
            let body = PduBody::Other {
                packet_type: header.packet_type,
                auth_length: header.auth_length,
                bytes: after_header.to_vec(),
            };
            (body, None)
        } else if !header.drep.is_little_endian() {
            return Err(DecodeError::Invalid(ERR_BIG_ENDIAN));
        } else {
            let (body_bytes, auth) = split_verifier(after_header, header.auth_length)?;
            let mut br = Reader::new(body_bytes);
            let body =
                PduBody::decode(header.packet_type, header.flags, &mut br).map_err(
                    |e| match e {
                        DecodeError::Incomplete { .. } => DecodeError::Invalid(ERR_BODY_SHORT),
                        invalid => invalid,
                    },
                )?;
            (body, auth)
        };
        let pdu = Pdu {
            minor_version: header.minor_version,
            flags: header.flags,
            drep: header.drep,
            call_id: header.call_id,
            body,
            auth,
        };
        Ok((pdu, frag_length))
    }

    /// Encodes one fragment, frag_length and auth_length filled in, the verifier placed
    /// after padding.
    pub fn encode(&self) -> Result<Vec<u8>, PduTooLong> {
        let mut w = Writer::new();
        let header_slot = w.reserve(HEADER_LEN);
        self.body.encode(&mut w);
        let mut flags = self.flags;
        let auth_length = match (&self.body, &self.auth) {
            (PduBody::Other { auth_length, .. }, _) => *auth_length,
            // auth_length 0 means no verifier ([C706] 12.6.3.1): an empty one is left out.
            (_, Some(v)) if !v.auth_value.is_empty() => {
                let (stub_offset, align) = self.body.auth_align();
                put_verifier(&mut w, HEADER_LEN + stub_offset, align, v);
                u16::try_from(v.auth_value.len()).map_err(|_| PduTooLong { length: w.len() })?
            }
            _ => 0,
        };
        if let PduBody::Request(req) = &self.body {
            flags.set(PfcFlags::OBJECT_UUID, req.object.is_some());
        }
        let frag_length = u16::try_from(w.len()).map_err(|_| PduTooLong { length: w.len() })?;
        let header = Header {
            minor_version: self.minor_version,
            packet_type: self.packet_type(),
            flags,
            drep: self.drep,
            frag_length,
            auth_length,
            call_id: self.call_id,
        };
        let mut hw = Writer::new();
        header.encode(&mut hw);
        w.patch(header_slot, hw.as_bytes());
        Ok(w.into_bytes())
    }
}
