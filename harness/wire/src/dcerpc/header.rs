//! The 16-octet common header of every connection-oriented PDU ([C706] 12.6.3.1;
//! [MS-RPCE] 2.2.2.1 for the PTYPE values Windows adds).

use std::fmt;

use crate::codec::{DecodeError, Reader, Writer};
use crate::wire_enum;

/// Octets in the common header.
pub const HEADER_LEN: usize = 16;
/// The only major version of the connection-oriented protocol ([C706] 12.6.3.1).
pub const RPC_VERSION: u8 = 5;

/// `rpc_vers` is not 5.
pub const ERR_VERSION: &str = "dcerpc: rpc_vers is not 5";
/// `frag_length` is below the 16 octets of the common header.
pub const ERR_FRAG_TOO_SHORT: &str = "dcerpc: frag_length below the header length";
/// The body decoders read little-endian integers only; a big-endian drep decodes the
/// header (so a stream can still be framed) but its body is refused with this error.
pub const ERR_BIG_ENDIAN: &str = "dcerpc: unsupported: big-endian data representation";

wire_enum! {
    /// PDU type ([C706] 12.6.4; 20 `rts` from [MS-RPCH] 2.2.3.6.1). 1 and 4 to 10 are
    /// connectionless types that never appear on a connection.
    pub struct PacketType(u8, le) {
        REQUEST = 0,
        PING = 1,
        RESPONSE = 2,
        FAULT = 3,
        WORKING = 4,
        NOCALL = 5,
        REJECT = 6,
        ACK = 7,
        CL_CANCEL = 8,
        FACK = 9,
        CANCEL_ACK = 10,
        BIND = 11,
        BIND_ACK = 12,
        BIND_NAK = 13,
        ALTER_CONTEXT = 14,
        ALTER_CONTEXT_RESP = 15,
        AUTH3 = 16,
        SHUTDOWN = 17,
        CO_CANCEL = 18,
        ORPHANED = 19,
        RTS = 20,
    }
}

/// `pfc_flags` ([C706] 12.6.3.1; [MS-RPCE] 2.2.2.3 for SUPPORT_HEADER_SIGN).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PfcFlags(pub u8);

impl PfcFlags {
    pub const FIRST_FRAG: PfcFlags = PfcFlags(0x01);
    pub const LAST_FRAG: PfcFlags = PfcFlags(0x02);
    /// On request and response: a cancel was pending at the sender.
    pub const PENDING_CANCEL: PfcFlags = PfcFlags(0x04);
    /// The same bit on bind, bind_ack and alter_context PDUs ([MS-RPCE] 2.2.2.3).
    pub const SUPPORT_HEADER_SIGN: PfcFlags = PfcFlags(0x04);
    pub const CONC_MPX: PfcFlags = PfcFlags(0x10);
    pub const DID_NOT_EXECUTE: PfcFlags = PfcFlags(0x20);
    pub const MAYBE: PfcFlags = PfcFlags(0x40);
    /// A request carries an object UUID after opnum.
    pub const OBJECT_UUID: PfcFlags = PfcFlags(0x80);
    /// A whole call in one fragment.
    pub const WHOLE: PfcFlags = PfcFlags(0x03);

    pub fn contains(self, other: PfcFlags) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn set(&mut self, flag: PfcFlags, on: bool) {
        if on {
            self.0 |= flag.0;
        } else {
            self.0 &= !flag.0;
        }
    }

    pub fn with(mut self, flag: PfcFlags, on: bool) -> PfcFlags {
        self.set(flag, on);
        self
    }
}

impl fmt::Debug for PfcFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 8] = [
            "FIRST_FRAG",
            "LAST_FRAG",
            "PENDING_CANCEL",
            "0x08",
            "CONC_MPX",
            "DID_NOT_EXECUTE",
            "MAYBE",
            "OBJECT_UUID",
        ];
        let set: Vec<&str> = (0..8)
            .filter(|b| self.0 & (1 << b) != 0)
            .map(|b| NAMES[b])
            .collect();
        write!(f, "PfcFlags({})", set.join("|"))
    }
}

/// The data representation label ([C706] 14.1): octet 0 holds the integer
/// representation in its high nibble (1 little-endian, 0 big-endian) and the character
/// set in its low nibble (0 ASCII), octet 1 the floating-point format (0 IEEE).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct DataRepresentation(pub [u8; 4]);

impl DataRepresentation {
    /// Little-endian, ASCII, IEEE: `10 00 00 00`, what every Windows peer sends.
    pub const LITTLE_ENDIAN: DataRepresentation = DataRepresentation([0x10, 0, 0, 0]);

    pub fn is_little_endian(&self) -> bool {
        self.0[0] & 0xf0 != 0
    }
}

impl Default for DataRepresentation {
    fn default() -> Self {
        DataRepresentation::LITTLE_ENDIAN
    }
}

/// The common header as read from the wire.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Header {
    pub minor_version: u8,
    pub packet_type: PacketType,
    pub flags: PfcFlags,
    pub drep: DataRepresentation,
    /// The whole fragment, header and auth trailer included.
    pub frag_length: u16,
    /// Length of auth_value alone (not the 8-octet sec_trailer before it).
    pub auth_length: u16,
    pub call_id: u32,
}

impl Header {
    /// Reads the 16 octets; frag_length, auth_length and call_id in the byte order the
    /// drep names. Checks rpc_vers and that frag_length covers at least the header.
    pub fn decode(r: &mut Reader<'_>) -> Result<Header, DecodeError> {
        let fixed: [u8; 8] = r.array()?;
        if fixed[0] != RPC_VERSION {
            return Err(DecodeError::Invalid(ERR_VERSION));
        }
        let drep = DataRepresentation([fixed[4], fixed[5], fixed[6], fixed[7]]);
        let le = drep.is_little_endian();
        let u16_in = |r: &mut Reader<'_>| if le { r.u16_le() } else { r.u16_be() };
        let frag_length = u16_in(r)?;
        let auth_length = u16_in(r)?;
        let call_id = if le { r.u32_le()? } else { r.u32_be()? };
        if usize::from(frag_length) < HEADER_LEN {
            return Err(DecodeError::Invalid(ERR_FRAG_TOO_SHORT));
        }
        Ok(Header {
            minor_version: fixed[1],
            packet_type: PacketType(fixed[2]),
            flags: PfcFlags(fixed[3]),
            drep,
            frag_length,
            auth_length,
            call_id,
        })
    }

    /// Writes the 16 octets in the drep's byte order.
    pub fn encode(&self, w: &mut Writer) {
        w.put_bytes(&[
            RPC_VERSION,
            self.minor_version,
            self.packet_type.0,
            self.flags.0,
        ]);
        w.put_bytes(&self.drep.0);
        if self.drep.is_little_endian() {
            w.put_u16_le(self.frag_length);
            w.put_u16_le(self.auth_length);
            w.put_u32_le(self.call_id);
        } else {
            w.put_u16_be(self.frag_length);
            w.put_u16_be(self.auth_length);
            w.put_u32_be(self.call_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(drep: DataRepresentation) -> Header {
        Header {
            minor_version: 0,
            packet_type: PacketType::BIND,
            flags: PfcFlags::WHOLE.with(PfcFlags::SUPPORT_HEADER_SIGN, true),
            drep,
            frag_length: 0x0074,
            auth_length: 0x0102,
            call_id: 0x0a0b_0c0d,
        }
    }

    #[test]
    fn both_byte_orders_of_the_header() {
        let mut w = Writer::new();
        header(DataRepresentation::LITTLE_ENDIAN).encode(&mut w);
        assert_eq!(
            w.as_bytes(),
            &[5, 0, 11, 7, 0x10, 0, 0, 0, 0x74, 0, 2, 1, 0x0d, 0x0c, 0x0b, 0x0a]
        );
        let be = header(DataRepresentation([0, 0, 0, 0]));
        let mut w = Writer::new();
        be.encode(&mut w);
        assert_eq!(&w.as_bytes()[8..], &[0, 0x74, 1, 2, 0x0a, 0x0b, 0x0c, 0x0d]);
        assert_eq!(Header::decode(&mut Reader::new(w.as_bytes())), Ok(be));
    }

    #[test]
    fn wrong_version_short_fragment_and_truncation() {
        let mut bytes = Writer::new();
        header(DataRepresentation::LITTLE_ENDIAN).encode(&mut bytes);
        let mut bytes = bytes.into_bytes();
        assert_eq!(
            Header::decode(&mut Reader::new(&bytes[..10])),
            Err(DecodeError::Incomplete { needed: 2 })
        );
        bytes[8] = 15;
        assert_eq!(
            Header::decode(&mut Reader::new(&bytes)),
            Err(DecodeError::Invalid(ERR_FRAG_TOO_SHORT))
        );
        bytes[0] = 4;
        assert_eq!(
            Header::decode(&mut Reader::new(&bytes)),
            Err(DecodeError::Invalid(ERR_VERSION))
        );
    }

    #[test]
    fn names_of_types_and_flags() {
        assert_eq!(format!("{:?}", PacketType(20)), "PacketType::RTS (0x14)");
        assert_eq!(format!("{:?}", PacketType(21)), "PacketType(0x15)");
        assert_eq!(
            format!("{:?}", PfcFlags(0x83)),
            "PfcFlags(FIRST_FRAG|LAST_FRAG|OBJECT_UUID)"
        );
        assert!(PfcFlags(0x83).contains(PfcFlags::WHOLE));
        assert!(!PfcFlags(0x83)
            .with(PfcFlags::LAST_FRAG, false)
            .contains(PfcFlags::WHOLE));
    }
}
