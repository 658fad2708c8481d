//! RTS commands ([MS-RPCH] 2.2.3.5): a little-endian CommandType and its body.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::codec::{Codec, DecodeError, Reader, Writer};
use crate::dcerpc::Uuid;
use crate::wire_enum;

/// An RTS cookie ([MS-RPCH] 2.2.3.1): a 16-octet GUID naming a virtual connection, a
/// channel or an association group. Its wire form is the GUID's (any 16 octets read
/// back as they were).
pub type RtsCookie = Uuid;

wire_enum! {
    /// CommandType ([MS-RPCH] 2.2.3.5).
    pub struct RtsCommandType(u32, le) {
        RECEIVE_WINDOW_SIZE = 0,
        FLOW_CONTROL_ACK = 1,
        CONNECTION_TIMEOUT = 2,
        COOKIE = 3,
        CHANNEL_LIFETIME = 4,
        CLIENT_KEEPALIVE = 5,
        VERSION = 6,
        EMPTY = 7,
        PADDING = 8,
        NEGATIVE_ANCE = 9,
        ANCE = 10,
        CLIENT_ADDRESS = 11,
        ASSOCIATION_GROUP_ID = 12,
        DESTINATION = 13,
        PING_TRAFFIC_SENT_NOTIFY = 14,
    }
}

wire_enum! {
    /// Forward destinations of the Destination command ([MS-RPCH] 2.2.3.3). Other
    /// values decode (and are kept) but no named PDU carries them.
    pub struct ForwardDestination(u32, le) {
        CLIENT = 0,
        IN_PROXY = 1,
        SERVER = 2,
        OUT_PROXY = 3,
    }
}

/// The flow control acknowledgment ([MS-RPCH] 2.2.3.4): 24 octets.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct FlowControlAck {
    /// Octets received on the channel so far.
    pub bytes_received: u32,
    /// Room left in the receiver's window.
    pub available_window: u32,
    /// The channel the acknowledgment is for.
    pub channel_cookie: RtsCookie,
}

/// AddressType of ClientAddress ([MS-RPCH] 2.2.3.5.12): 0 IPv4, 1 IPv6.
const ADDRESS_IPV4: u32 = 0;
const ADDRESS_IPV6: u32 = 1;
/// The padding after the address in ClientAddress ([MS-RPCH] 2.2.3.5.12).
pub const CLIENT_ADDRESS_PADDING: usize = 12;

/// One RTS command with its body ([MS-RPCH] 2.2.3.5.1 to 2.2.3.5.15).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum RtsCommand {
    /// ReceiveWindowSize, octets (the spec allows 8 KiB to 256 KiB; not enforced here).
    ReceiveWindowSize(u32),
    FlowControlAck(FlowControlAck),
    /// ConnectionTimeout, milliseconds (120,000 to 14,400,000 in the spec).
    ConnectionTimeout(u32),
    Cookie(RtsCookie),
    /// ChannelLifetime, octets.
    ChannelLifetime(u32),
    /// ClientKeepalive, milliseconds (0 means 300,000).
    ClientKeepalive(u32),
    /// Version of RPC over HTTP v2 (1).
    Version(u32),
    Empty,
    /// Padding: ConformanceCount and that many octets, kept as they came.
    Padding(Vec<u8>),
    NegativeAnce,
    Ance,
    /// ClientAddress: the address and the 12 octets after it, kept as they came
    /// (Windows puts the IPv4 address there, not in the address field: see the CONN/B2
    /// vector in the tests).
    ClientAddress {
        address: IpAddr,
        padding: [u8; CLIENT_ADDRESS_PADDING],
    },
    AssociationGroupId(RtsCookie),
    Destination(ForwardDestination),
    /// PingTrafficSentNotify: octets of ping traffic sent.
    PingTrafficSentNotify(u32),
}

/// Why a command did not decode.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum CommandError {
    Unknown(RtsCommandType),
    AddressType(u32),
    /// The body runs past the end of the fragment.
    Short,
}

impl From<DecodeError> for CommandError {
    fn from(_: DecodeError) -> Self {
        // The commands read from a reader bounded by frag_length: running out is the
        // only way a read fails.
        CommandError::Short
    }
}

impl RtsCommand {
    /// ClientAddress with zero padding, as a sender writes it.
    pub fn client_address(address: IpAddr) -> RtsCommand {
        RtsCommand::ClientAddress {
            address,
            padding: [0; CLIENT_ADDRESS_PADDING],
        }
    }

    pub fn command_type(&self) -> RtsCommandType {
        match self {
            RtsCommand::ReceiveWindowSize(_) => RtsCommandType::RECEIVE_WINDOW_SIZE,
            RtsCommand::FlowControlAck(_) => RtsCommandType::FLOW_CONTROL_ACK,
            RtsCommand::ConnectionTimeout(_) => RtsCommandType::CONNECTION_TIMEOUT,
            RtsCommand::Cookie(_) => RtsCommandType::COOKIE,
            RtsCommand::ChannelLifetime(_) => RtsCommandType::CHANNEL_LIFETIME,
            RtsCommand::ClientKeepalive(_) => RtsCommandType::CLIENT_KEEPALIVE,
            RtsCommand::Version(_) => RtsCommandType::VERSION,
            RtsCommand::Empty => RtsCommandType::EMPTY,
            RtsCommand::Padding(_) => RtsCommandType::PADDING,
            RtsCommand::NegativeAnce => RtsCommandType::NEGATIVE_ANCE,
            RtsCommand::Ance => RtsCommandType::ANCE,
            RtsCommand::ClientAddress { .. } => RtsCommandType::CLIENT_ADDRESS,
            RtsCommand::AssociationGroupId(_) => RtsCommandType::ASSOCIATION_GROUP_ID,
            RtsCommand::Destination(_) => RtsCommandType::DESTINATION,
            RtsCommand::PingTrafficSentNotify(_) => RtsCommandType::PING_TRAFFIC_SENT_NOTIFY,
        }
    }

    /// Octets on the wire, CommandType included.
    pub fn encoded_len(&self) -> usize {
        4 + match self {
            RtsCommand::Empty | RtsCommand::NegativeAnce | RtsCommand::Ance => 0,
            RtsCommand::FlowControlAck(_) => 24,
            RtsCommand::Cookie(_) | RtsCommand::AssociationGroupId(_) => 16,
            RtsCommand::Padding(octets) => 4 + octets.len(),
            RtsCommand::ClientAddress { address, .. } => {
                let octets = if address.is_ipv4() { 4 } else { 16 };
                4 + octets + CLIENT_ADDRESS_PADDING
            }
            _ => 4,
        }
    }

    /// The u32 body of the commands that have one.
    fn scalar(&self) -> Option<u32> {
        match self {
            RtsCommand::ReceiveWindowSize(v)
            | RtsCommand::ConnectionTimeout(v)
            | RtsCommand::ChannelLifetime(v)
            | RtsCommand::ClientKeepalive(v)
            | RtsCommand::Version(v)
            | RtsCommand::PingTrafficSentNotify(v) => Some(*v),
            RtsCommand::Destination(d) => Some(d.0),
            _ => None,
        }
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.put_u32_le(self.command_type().0);
        if let Some(v) = self.scalar() {
            w.put_u32_le(v);
            return;
        }
        match self {
            RtsCommand::FlowControlAck(ack) => {
                w.put_u32_le(ack.bytes_received);
                w.put_u32_le(ack.available_window);
                ack.channel_cookie.encode(w);
            }
            RtsCommand::Cookie(c) | RtsCommand::AssociationGroupId(c) => c.encode(w),
            RtsCommand::Padding(octets) => {
                // encoded_len bounds the whole PDU to 65535 before this runs.
                w.put_u32_le(u32::try_from(octets.len()).unwrap_or(u32::MAX));
                w.put_bytes(octets);
            }
            RtsCommand::ClientAddress { address, padding } => {
                match address {
                    IpAddr::V4(a) => {
                        w.put_u32_le(ADDRESS_IPV4);
                        w.put_bytes(&a.octets());
                    }
                    IpAddr::V6(a) => {
                        w.put_u32_le(ADDRESS_IPV6);
                        w.put_bytes(&a.octets());
                    }
                }
                w.put_bytes(padding);
            }
            _ => {}
        }
    }

    /// Reads one command from a reader that ends where the fragment ends.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<RtsCommand, CommandError> {
        let command_type = RtsCommandType(r.u32_le()?);
        Ok(match command_type {
            RtsCommandType::RECEIVE_WINDOW_SIZE => RtsCommand::ReceiveWindowSize(r.u32_le()?),
            RtsCommandType::FLOW_CONTROL_ACK => RtsCommand::FlowControlAck(FlowControlAck {
                bytes_received: r.u32_le()?,
                available_window: r.u32_le()?,
                channel_cookie: RtsCookie::decode(r)?,
            }),
            RtsCommandType::CONNECTION_TIMEOUT => RtsCommand::ConnectionTimeout(r.u32_le()?),
            RtsCommandType::COOKIE => RtsCommand::Cookie(RtsCookie::decode(r)?),
            RtsCommandType::CHANNEL_LIFETIME => RtsCommand::ChannelLifetime(r.u32_le()?),
            RtsCommandType::CLIENT_KEEPALIVE => RtsCommand::ClientKeepalive(r.u32_le()?),
            RtsCommandType::VERSION => RtsCommand::Version(r.u32_le()?),
            RtsCommandType::EMPTY => RtsCommand::Empty,
            RtsCommandType::PADDING => {
                // ConformanceCount is checked against the octets left before any copy.
                let count = usize::try_from(r.u32_le()?).map_err(|_| CommandError::Short)?;
                RtsCommand::Padding(r.take(count)?.to_vec())
            }
            RtsCommandType::NEGATIVE_ANCE => RtsCommand::NegativeAnce,
            RtsCommandType::ANCE => RtsCommand::Ance,
            RtsCommandType::CLIENT_ADDRESS => {
                let address = match r.u32_le()? {
                    ADDRESS_IPV4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>()?)),
                    ADDRESS_IPV6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>()?)),
                    other => return Err(CommandError::AddressType(other)),
                };
                RtsCommand::ClientAddress {
                    address,
                    padding: r.array()?,
                }
            }
            RtsCommandType::ASSOCIATION_GROUP_ID => {
                RtsCommand::AssociationGroupId(RtsCookie::decode(r)?)
            }
            RtsCommandType::DESTINATION => RtsCommand::Destination(ForwardDestination(r.u32_le()?)),
            RtsCommandType::PING_TRAFFIC_SENT_NOTIFY => {
                RtsCommand::PingTrafficSentNotify(r.u32_le()?)
            }
            unknown => return Err(CommandError::Unknown(unknown)),
        })
    }
}
