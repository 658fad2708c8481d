//! UUIDs and presentation syntax identifiers ([C706] Appendix A and 12.6.3.1;
//! [MS-RPCE] 2.2.2.13 and 3.3.1.5.3 for the bind-time feature syntax).

use std::fmt;

use crate::codec::{Codec, DecodeError, Reader, Writer};

/// A UUID in the fields of [C706] Appendix A. On the wire (little-endian drep) the first
/// three fields are little-endian and the last eight octets are in order: the "mixed
/// endian" GUID layout.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Uuid {
    pub time_low: u32,
    pub time_mid: u16,
    pub time_hi_and_version: u16,
    /// clock_seq_hi_and_reserved, clock_seq_low and the six node octets.
    pub tail: [u8; 8],
}

impl Uuid {
    pub const NIL: Uuid = Uuid::new(0, 0, 0, [0; 8]);

    pub const fn new(
        time_low: u32,
        time_mid: u16,
        time_hi_and_version: u16,
        tail: [u8; 8],
    ) -> Self {
        Uuid {
            time_low,
            time_mid,
            time_hi_and_version,
            tail,
        }
    }
}

impl Codec for Uuid {
    fn encode(&self, w: &mut Writer) {
        w.put_u32_le(self.time_low);
        w.put_u16_le(self.time_mid);
        w.put_u16_le(self.time_hi_and_version);
        w.put_bytes(&self.tail);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Uuid {
            time_low: r.u32_le()?,
            time_mid: r.u16_le()?,
            time_hi_and_version: r.u16_le()?,
            tail: r.array()?,
        })
    }
}

/// The usual 8-4-4-4-12 lower-case hexadecimal form.
impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.tail;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            self.time_low,
            self.time_mid,
            self.time_hi_and_version,
            t[0],
            t[1],
            t[2],
            t[3],
            t[4],
            t[5],
            t[6],
            t[7]
        )
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uuid({self})")
    }
}

/// A presentation syntax: interface or transfer syntax UUID and its version
/// (`p_syntax_id_t`, [C706] 12.6.3.1): 20 octets, version = major | minor << 16.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SyntaxId {
    pub uuid: Uuid,
    pub version: u32,
}

/// The first eight octets of every bind-time feature negotiation syntax
/// ([MS-RPCE] 3.3.1.5.3): 6cb71c2c-9812-4540-....
const BIND_TIME_FEATURE_PREFIX: (u32, u16, u16) = (0x6cb7_1c2c, 0x9812, 0x4540);

impl SyntaxId {
    /// NDR 2.0 transfer syntax, 8a885d04-1ceb-11c9-9fe8-08002b104860 v2.0 ([C706] 14).
    pub const NDR20: SyntaxId = SyntaxId {
        uuid: Uuid::new(
            0x8a88_5d04,
            0x1ceb,
            0x11c9,
            [0x9f, 0xe8, 0x08, 0x00, 0x2b, 0x10, 0x48, 0x60],
        ),
        version: 2,
    };
    /// NDR64 transfer syntax, 71710533-beba-4937-8319-b5dbef9ccc36 v1.0 ([MS-RPCE] 2.2.5).
    pub const NDR64: SyntaxId = SyntaxId {
        uuid: Uuid::new(
            0x7171_0533,
            0xbeba,
            0x4937,
            [0x83, 0x19, 0xb5, 0xdb, 0xef, 0x9c, 0xcc, 0x36],
        ),
        version: 1,
    };
    /// Bind-time feature bit: security context multiplexing ([MS-RPCE] 2.2.2.14).
    pub const FEATURE_SECURITY_CONTEXT_MULTIPLEXING: u16 = 0x0001;
    /// Bind-time feature bit: keep the connection open on orphan ([MS-RPCE] 2.2.2.14).
    pub const FEATURE_KEEP_CONNECTION_ON_ORPHAN: u16 = 0x0002;

    pub const fn new(uuid: Uuid, major: u16, minor: u16) -> Self {
        SyntaxId {
            uuid,
            version: major as u32 | (minor as u32) << 16,
        }
    }

    pub fn major(&self) -> u16 {
        (self.version & 0xffff) as u16
    }

    pub fn minor(&self) -> u16 {
        (self.version >> 16) as u16
    }

    /// The bind-time feature negotiation syntax offering `features`: the bitmask sits
    /// little-endian in the last eight octets, version 1.0 ([MS-RPCE] 3.3.1.5.3).
    pub const fn bind_time_features(features: u64) -> Self {
        let (a, b, c) = BIND_TIME_FEATURE_PREFIX;
        SyntaxId::new(Uuid::new(a, b, c, features.to_le_bytes()), 1, 0)
    }

    /// The offered feature bitmask, when this is a bind-time feature negotiation syntax.
    pub fn bind_time_feature_bits(&self) -> Option<u64> {
        let u = &self.uuid;
        ((u.time_low, u.time_mid, u.time_hi_and_version) == BIND_TIME_FEATURE_PREFIX)
            .then(|| u64::from_le_bytes(u.tail))
    }
}

impl Codec for SyntaxId {
    fn encode(&self, w: &mut Writer) {
        self.uuid.encode(w);
        w.put_u32_le(self.version);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(SyntaxId {
            uuid: Uuid::decode(r)?,
            version: r.u32_le()?,
        })
    }
}

impl fmt::Display for SyntaxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} v{}.{}", self.uuid, self.major(), self.minor())
    }
}

impl fmt::Debug for SyntaxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SyntaxId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_syntaxes_print_and_encode_in_guid_layout() {
        assert_eq!(
            SyntaxId::NDR20.to_string(),
            "8a885d04-1ceb-11c9-9fe8-08002b104860 v2.0"
        );
        assert_eq!(
            SyntaxId::NDR64.to_string(),
            "71710533-beba-4937-8319-b5dbef9ccc36 v1.0"
        );
        let features = SyntaxId::bind_time_features(3);
        assert_eq!(
            features.to_string(),
            "6cb71c2c-9812-4540-0300-000000000000 v1.0"
        );
        assert_eq!(features.bind_time_feature_bits(), Some(3));
        assert_eq!(SyntaxId::NDR20.bind_time_feature_bits(), None);
        let bytes = SyntaxId::NDR20.to_bytes();
        assert_eq!(
            bytes,
            [
                0x04, 0x5d, 0x88, 0x8a, 0xeb, 0x1c, 0xc9, 0x11, 0x9f, 0xe8, 0x08, 0x00, 0x2b, 0x10,
                0x48, 0x60, 2, 0, 0, 0
            ]
        );
        assert_eq!(
            SyntaxId::decode(&mut Reader::new(&bytes)),
            Ok(SyntaxId::NDR20)
        );
        let v = SyntaxId::new(Uuid::NIL, 4, 7);
        assert_eq!((v.major(), v.minor(), v.version), (4, 7, 0x0007_0004));
        assert_eq!(
            format!("{:?}", Uuid::NIL),
            "Uuid(00000000-0000-0000-0000-000000000000)"
        );
    }

    #[test]
    fn a_short_syntax_is_incomplete() {
        let bytes = SyntaxId::NDR64.to_bytes();
        assert_eq!(
            SyntaxId::decode(&mut Reader::new(&bytes[..18])),
            Err(DecodeError::Incomplete { needed: 2 })
        );
    }
}
