//! The RTS PDU ([MS-RPCH] 2.2.3.6): the connection-oriented common header with PTYPE 20
//! ([C706] 12.6.3.1, [`crate::dcerpc::Header`]), then Flags u16, NumberOfCommands u16
//! and the commands back to back.

use std::fmt;

use crate::codec::{DecodeError, Reader, Writer};
use crate::dcerpc::header::HEADER_LEN;
use crate::dcerpc::{DataRepresentation, Header, PacketType, Pdu, PduBody, PduTooLong, PfcFlags};

use super::command::{CommandError, RtsCommand, RtsCommandType};

/// Octets of the RTS header: the common header, Flags and NumberOfCommands.
pub const RTS_HEADER_LEN: usize = HEADER_LEN + 4;
/// The shortest command (Empty, ANCE, NegativeANCE): its CommandType alone. Bounds
/// NumberOfCommands before anything is allocated for it.
const MIN_COMMAND_LEN: usize = 4;

/// RTS header Flags ([MS-RPCH] 2.2.3.6.1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RtsFlags(pub u16);

impl RtsFlags {
    pub const NONE: RtsFlags = RtsFlags(0x0000);
    pub const PING: RtsFlags = RtsFlags(0x0001);
    pub const OTHER_CMD: RtsFlags = RtsFlags(0x0002);
    pub const RECYCLE_CHANNEL: RtsFlags = RtsFlags(0x0004);
    pub const IN_CHANNEL: RtsFlags = RtsFlags(0x0008);
    pub const OUT_CHANNEL: RtsFlags = RtsFlags(0x0010);
    pub const EOF: RtsFlags = RtsFlags(0x0020);
    pub const ECHO: RtsFlags = RtsFlags(0x0040);

    pub fn contains(self, other: RtsFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both sets of bits.
    pub const fn union(self, other: RtsFlags) -> RtsFlags {
        RtsFlags(self.0 | other.0)
    }
}

impl fmt::Debug for RtsFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 7] = [
            "PING",
            "OTHER_CMD",
            "RECYCLE_CHANNEL",
            "IN_CHANNEL",
            "OUT_CHANNEL",
            "EOF",
            "ECHO",
        ];
        let mut set: Vec<String> = (0..16)
            .filter(|b| self.0 & (1 << b) != 0)
            .map(|b| match NAMES.get(b) {
                Some(name) => (*name).to_string(),
                None => format!("{:#06x}", 1u16 << b),
            })
            .collect();
        if set.is_empty() {
            set.push("NONE".to_string());
        }
        write!(f, "RtsFlags({})", set.join("|"))
    }
}

/// Why octets are not an RTS PDU.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum RtsError {
    /// The input ends before the header or before frag_length: `needed` more octets.
    #[error("rts: truncated, {needed} more octets needed")]
    Truncated { needed: usize },
    /// The common header itself is wrong (rpc_vers, frag_length below 16).
    #[error("rts: {0}")]
    Header(&'static str),
    #[error("rts: PTYPE {0:?} is not rts (20)")]
    NotRts(PacketType),
    /// [MS-RPCH] 2.2.3.6.1: little-endian only.
    #[error("rts: the data representation is not little-endian")]
    NotLittleEndian,
    /// [MS-RPCH] 2.2.3.6.1: auth_length MUST be 0.
    #[error("rts: auth_length {0} (must be 0)")]
    AuthLength(u16),
    /// frag_length cannot hold Flags and NumberOfCommands.
    #[error("rts: frag_length {0} is below the 20-octet RTS header")]
    FragmentTooShort(u16),
    /// NumberOfCommands larger than the octets after the header could hold even if
    /// every command were the shortest (4 octets).
    #[error("rts: {count} commands cannot fit in {room} octets")]
    TooManyCommands { count: u16, room: usize },
    #[error("rts: unknown command type {0:?}")]
    UnknownCommand(RtsCommandType),
    #[error("rts: unknown ClientAddress AddressType {0}")]
    UnknownAddressType(u32),
    /// Command number `index` (from 0) runs past frag_length.
    #[error("rts: command {index} runs past frag_length")]
    CommandPastFragment { index: u16 },
    /// The commands end before frag_length.
    #[error("rts: {unused} octets after the last command inside frag_length {frag_length}")]
    TrailingOctets { frag_length: u16, unused: usize },
}

/// One RTS PDU. The common header is implied: rpc_vers 5.0, PTYPE 20, pfc_flags
/// FIRST_FRAG|LAST_FRAG, little-endian drep, auth_length 0, call_id 0 ([MS-RPCH]
/// 2.2.3.6.1); the decoder does not keep pfc_flags, rpc_vers_minor or call_id and the
/// encoder writes those values.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct RtsPdu {
    pub flags: RtsFlags,
    pub commands: Vec<RtsCommand>,
}

impl RtsPdu {
    pub fn new(flags: RtsFlags, commands: Vec<RtsCommand>) -> RtsPdu {
        RtsPdu { flags, commands }
    }

    /// Octets the encoding takes (frag_length when it fits).
    pub fn encoded_len(&self) -> usize {
        RTS_HEADER_LEN
            + self
                .commands
                .iter()
                .map(RtsCommand::encoded_len)
                .sum::<usize>()
    }

    /// Encodes the PDU with frag_length and NumberOfCommands filled in; refused when it
    /// would not fit the 16-bit frag_length (checked before anything is written).
    pub fn encode(&self) -> Result<Vec<u8>, PduTooLong> {
        let length = self.encoded_len();
        let too_long = PduTooLong { length };
        let frag_length = u16::try_from(length).map_err(|_| too_long)?;
        // At least 4 octets a command: a count over u16 cannot pass the check above.
        let count = u16::try_from(self.commands.len()).map_err(|_| too_long)?;
        let mut w = Writer::new();
        Header {
            minor_version: 0,
            packet_type: PacketType::RTS,
            flags: PfcFlags::WHOLE,
            drep: DataRepresentation::LITTLE_ENDIAN,
            frag_length,
            auth_length: 0,
            call_id: 0,
        }
        .encode(&mut w);
        w.put_u16_le(self.flags.0);
        w.put_u16_le(count);
        for command in &self.commands {
            command.encode(&mut w);
        }
        Ok(w.into_bytes())
    }

    /// Decodes the PDU at the start of `bytes`; returns it and its length (frag_length).
    /// `Truncated` only when `bytes` is shorter than the header or frag_length.
    pub fn decode(bytes: &[u8]) -> Result<(RtsPdu, usize), RtsError> {
        let mut r = Reader::new(bytes);
        let header = Header::decode(&mut r).map_err(|e| match e {
            DecodeError::Incomplete { needed } => RtsError::Truncated { needed },
            DecodeError::Invalid(why) => RtsError::Header(why),
        })?;
        check_header(header.packet_type, header.drep, header.auth_length)?;
        let frag_length = usize::from(header.frag_length);
        let body = r
            .take(frag_length - HEADER_LEN)
            .map_err(|_| RtsError::Truncated {
                needed: frag_length - bytes.len(),
            })?;
        Ok((decode_body(header.frag_length, body)?, frag_length))
    }

    /// The RTS PDU in a fragment the stream framer ([`crate::dcerpc::PduFramer`]) cut:
    /// PTYPE 20 arrives there as [`PduBody::Other`] holding the octets after the common
    /// header.
    pub fn from_pdu(pdu: &Pdu) -> Result<RtsPdu, RtsError> {
        let PduBody::Other {
            packet_type,
            auth_length,
            bytes,
        } = &pdu.body
        else {
            return Err(RtsError::NotRts(pdu.packet_type()));
        };
        check_header(*packet_type, pdu.drep, *auth_length)?;
        // The framer cut at frag_length, so the octets fit a u16 with the header.
        let frag_length = u16::try_from(HEADER_LEN + bytes.len()).unwrap_or(u16::MAX);
        decode_body(frag_length, bytes)
    }
}

fn check_header(
    packet_type: PacketType,
    drep: DataRepresentation,
    auth_length: u16,
) -> Result<(), RtsError> {
    if packet_type != PacketType::RTS {
        return Err(RtsError::NotRts(packet_type));
    }
    if !drep.is_little_endian() {
        return Err(RtsError::NotLittleEndian);
    }
    if auth_length != 0 {
        return Err(RtsError::AuthLength(auth_length));
    }
    Ok(())
}

/// Flags, NumberOfCommands and the commands: `body` is the fragment after the common
/// header, exactly frag_length - 16 octets.
fn decode_body(frag_length: u16, body: &[u8]) -> Result<RtsPdu, RtsError> {
    let mut r = Reader::new(body);
    let (Ok(flags), Ok(count)) = (r.u16_le(), r.u16_le()) else {
        return Err(RtsError::FragmentTooShort(frag_length));
    };
    let room = r.remaining();
    if usize::from(count) * MIN_COMMAND_LEN > room {
        return Err(RtsError::TooManyCommands { count, room });
    }
    let mut commands = Vec::with_capacity(usize::from(count));
    for index in 0..count {
        let command = RtsCommand::decode(&mut r).map_err(|e| match e {
            CommandError::Unknown(t) => RtsError::UnknownCommand(t),
            CommandError::AddressType(t) => RtsError::UnknownAddressType(t),
            CommandError::Short => RtsError::CommandPastFragment { index },
        })?;
        commands.push(command);
    }
    if !r.is_empty() {
        return Err(RtsError::TrailingOctets {
            frag_length,
            unused: r.remaining(),
        });
    }
    Ok(RtsPdu {
        flags: RtsFlags(flags),
        commands,
    })
}
