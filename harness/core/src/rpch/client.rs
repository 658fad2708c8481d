//! The client's half of a virtual connection ([MS-RPCH] 3.2.2), sans-IO: CONN/A1 for the
//! OUT channel's body, CONN/B1 for the IN channel's, the OUT channel's octets cut into
//! RTS PDUs (CONN/A3, CONN/C2, acks, pings, the recycling steps) and the RPC PDUs a
//! wrapped [`ClientAssociation`] takes, and the FlowControlAcks the OUT channel's window
//! needs. Both recyclings of a channel (IN_R2 and OUT_R2, 3.2.2.4.2, 2.2.4.18 to 2.2.4.45): the
//! events say when the caller must open a channel or send a step, the methods give the
//! octets. The HTTP requests around the bodies are the adapter's.

use harness_wire::dcerpc::{FramerError, PacketType, PduFramer};
use harness_wire::rpch::{
    FlowControlAck, ForwardDestination, RecycleCookies, RtsCookie, RtsError, RtsPdu, RtsPduKind,
};

use super::proxy::RTS_VERSION;
use crate::dcerpc::client::Uuid;
use crate::dcerpc::client::{ClientAssociation, ClientError, ClientEvent};
use crate::rng::SeededRng;

/// The cookies a client makes up for one virtual connection ([MS-RPCH] 2.2.3.1: fresh
/// GUIDs).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RpchCookies {
    pub virtual_connection: RtsCookie,
    pub out_channel: RtsCookie,
    pub in_channel: RtsCookie,
    pub association_group: RtsCookie,
}

/// A cookie of 16 octets from `rng`.
fn cookie_from(rng: &mut SeededRng) -> RtsCookie {
    let b: [u8; 16] = rng.bytes();
    Uuid::new(
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_le_bytes([b[4], b[5]]),
        u16::from_le_bytes([b[6], b[7]]),
        [b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]],
    )
}

impl RpchCookies {
    /// Four cookies from a seed (the same seed, the same cookies).
    pub fn from_seed(seed: u64) -> RpchCookies {
        let mut rng = SeededRng::new(seed);
        let mut cookie = || cookie_from(&mut rng);
        RpchCookies {
            virtual_connection: cookie(),
            out_channel: cookie(),
            in_channel: cookie(),
            association_group: cookie(),
        }
    }
}

/// What the OUT channel's octets amounted to.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum RpchEvent {
    /// CONN/A3: the outbound proxy's connection timeout (ms).
    ConnA3 {
        connection_timeout: u32,
    },
    /// CONN/C2: the virtual connection is open; the IN channel's window.
    ConnC2 {
        in_window: u32,
        connection_timeout: u32,
    },
    /// A FlowControlAck for the IN channel.
    InAck(FlowControlAck),
    Ping,
    /// OUT_R2/A2: open a successor OUT channel (an `RPC_OUT_DATA` request with
    /// Content-Length 120) whose body starts with [`RtsClient::out_recycle_a3`].
    OutR2A2,
    /// OUT_R2/A6: send [`RtsClient::out_recycle_a7_c1`]'s OUT_R2/A7 on the IN channel and
    /// OUT_R2/C1 on the successor OUT channel.
    OutR2A6,
    /// OUT_R2/B3, the predecessor OUT channel's last PDU: what follows comes on the
    /// successor (its response), which is the OUT channel now.
    OutR2B3,
    /// IN_R2/A4: send [`RtsClient::in_recycle_a5`] on the predecessor IN channel, then
    /// everything on the successor.
    InR2A4,
    /// What the wrapped association made of an RPC PDU.
    Rpc(ClientEvent),
}

#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum RpchClientError {
    #[error("rpch client: {0}")]
    Framing(#[from] FramerError),
    #[error("rpch client: {0}")]
    Rts(#[from] RtsError),
    #[error("rpch client: unexpected {0} on the OUT channel")]
    Unexpected(String),
    #[error("rpch client: {0}")]
    Association(#[from] ClientError),
}

/// One PDU off the OUT channel, as [`RtsClient::receive_out`] hands it out.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum OutItem {
    /// An RTS PDU, read.
    Rts(RpchEvent),
    /// An RPC PDU, whole, for whatever runs above the RTS half.
    Rpc(Vec<u8>),
}

/// The RTS half of one virtual connection's client side: the channels' opening PDUs,
/// the OUT channel's octets cut into RTS PDUs (consumed here) and RPC PDUs (handed out
/// whole), the acks the OUT channel's window needs. What carries the RPC PDUs above it
/// is the caller's: a [`ClientAssociation`] in [`RpchClient`], or any byte-stream client
/// (the scenario runner's MAPI client through a proxy).
pub struct RtsClient {
    pub cookies: RpchCookies,
    /// CONN/A1's ReceiveWindowSize: the OUT channel's window.
    receive_window: u32,
    /// Send a FlowControlAck on its own once half the window is consumed.
    auto_ack: bool,
    framer: PduFramer,
    /// RPC octets received on the OUT channel and in the last ack.
    bytes_received: u64,
    acked: u64,
    opened: bool,
    /// The successor OUT and IN channels' cookies while they open.
    out_successor: Option<RtsCookie>,
    in_successor: Option<RtsCookie>,
    /// Successor cookies made so far.
    generation: u64,
}

impl RtsClient {
    pub fn new(cookies: RpchCookies, receive_window: u32, auto_ack: bool) -> RtsClient {
        RtsClient {
            cookies,
            receive_window,
            auto_ack,
            framer: PduFramer::new(u16::MAX),
            bytes_received: 0,
            acked: 0,
            opened: false,
            out_successor: None,
            in_successor: None,
            generation: 0,
        }
    }

    /// A fresh channel cookie ([MS-RPCH] 2.2.3.1), a function of the virtual connection
    /// cookie and how many came before.
    fn fresh_cookie(&mut self) -> RtsCookie {
        self.generation += 1;
        let vc = self.cookies.virtual_connection;
        let seed = u64::from_le_bytes(vc.tail)
            ^ u64::from(vc.time_low).rotate_left(32)
            ^ self.generation.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        cookie_from(&mut SeededRng::new(seed))
    }

    /// The successor OUT channel's first PDU, OUT_R2/A3 ([MS-RPCH] 2.2.4.36; the client's
    /// answer to OUT_R2/A2): the virtual connection, the OUT channel it replaces, a fresh
    /// cookie, this client's window. OUT_R2/C1 follows later to fill the 120 octets.
    pub fn out_recycle_a3(&mut self) -> Vec<u8> {
        let successor = self.fresh_cookie();
        self.out_successor = Some(successor);
        encode(&RtsPdu::out_r2_a3(
            RTS_VERSION,
            RecycleCookies {
                virtual_connection: self.cookies.virtual_connection,
                predecessor: self.cookies.out_channel,
                successor,
            },
            self.receive_window,
        ))
    }

    /// The answers to OUT_R2/A6: OUT_R2/A7 (2.2.4.40) for the IN channel and OUT_R2/C1
    /// (2.2.4.45) for the successor OUT channel; None without a successor opening.
    pub fn out_recycle_a7_c1(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        let successor = self.out_successor?;
        Some((
            encode(&RtsPdu::out_r2_a7(successor, RTS_VERSION)),
            encode(&RtsPdu::out_r2_c1()),
        ))
    }

    /// Starts an IN channel's recycling ([MS-RPCH] 3.2.2.4.2: the IN channel's lifetime
    /// runs short; IN_R2 with one proxy): the successor IN
    /// channel's first PDU, IN_R2/A1 (2.2.4.18), naming the IN channel it replaces.
    pub fn begin_in_recycle(&mut self) -> Vec<u8> {
        let successor = self.fresh_cookie();
        self.in_successor = Some(successor);
        encode(&RtsPdu::in_r2_a1(
            RTS_VERSION,
            RecycleCookies {
                virtual_connection: self.cookies.virtual_connection,
                predecessor: self.cookies.in_channel,
                successor,
            },
        ))
    }

    /// The answer to IN_R2/A4: IN_R2/A5 (2.2.4.22) for the predecessor IN channel; the
    /// successor is the IN channel from here on. None without a successor opening.
    pub fn in_recycle_a5(&mut self) -> Option<Vec<u8>> {
        let successor = self.in_successor.take()?;
        self.cookies.in_channel = successor;
        Some(encode(&RtsPdu::in_r2_a5(successor)))
    }

    /// CONN/A1 ([MS-RPCH] 2.2.4.2), the OUT channel's body.
    pub fn conn_a1(&self) -> Vec<u8> {
        encode(&RtsPdu::conn_a1(
            RTS_VERSION,
            self.cookies.virtual_connection,
            self.cookies.out_channel,
            self.receive_window,
        ))
    }

    /// CONN/B1 ([MS-RPCH] 2.2.4.5), the IN channel's first PDU: a 1 GiB channel
    /// lifetime and a 300 s keep-alive, as impacket sends.
    pub fn conn_b1(&self) -> Vec<u8> {
        encode(&RtsPdu::conn_b1(
            RTS_VERSION,
            self.cookies.virtual_connection,
            self.cookies.in_channel,
            0x4000_0000,
            300_000,
            self.cookies.association_group,
        ))
    }

    /// CONN/C2 came.
    pub fn is_open(&self) -> bool {
        self.opened
    }

    /// RPC octets received on the OUT channel.
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    /// A FlowControlAck for everything received (all consumed: the window is whole
    /// again), addressed to the outbound proxy ([MS-RPCH] 2.2.4.51), for the IN channel.
    pub fn ack(&mut self) -> Vec<u8> {
        self.acked = self.bytes_received;
        let ack = FlowControlAck {
            bytes_received: u32::try_from(self.bytes_received).unwrap_or(u32::MAX),
            available_window: self.receive_window,
            channel_cookie: self.cookies.out_channel,
        };
        encode(&RtsPdu::flow_control_ack_with_destination(
            ForwardDestination::OUT_PROXY,
            ack,
        ))
    }

    /// Takes OUT channel octets: appends what its PDUs are, in order (RTS PDUs as
    /// events, RPC PDUs whole). Returns the octets to send on the IN channel (an ack,
    /// with `auto_ack`). The PDUs before a failing one are handed out.
    pub fn receive_out(
        &mut self,
        bytes: &[u8],
        items: &mut Vec<OutItem>,
    ) -> Result<Vec<u8>, RpchClientError> {
        let mut frames = Vec::new();
        let framed = self.framer.push_frames(bytes, &mut frames);
        for frame in frames {
            if PacketType(frame.get(2).copied().unwrap_or_default()) == PacketType::RTS {
                items.push(OutItem::Rts(self.on_rts(&frame)?));
            } else {
                self.bytes_received += frame.len() as u64;
                items.push(OutItem::Rpc(frame));
            }
        }
        framed?;
        let due = self.bytes_received - self.acked >= u64::from(self.receive_window / 2);
        Ok(if self.auto_ack && due {
            self.ack()
        } else {
            Vec::new()
        })
    }

    fn on_rts(&mut self, frame: &[u8]) -> Result<RpchEvent, RpchClientError> {
        let (pdu, _) = RtsPdu::decode(frame)?;
        use harness_wire::rpch::RtsCommand as C;
        Ok(match pdu.commands.as_slice() {
            [C::ConnectionTimeout(t)] if pdu.is(RtsPduKind::ConnA3) => RpchEvent::ConnA3 {
                connection_timeout: *t,
            },
            [C::Version(_), C::ReceiveWindowSize(w), C::ConnectionTimeout(t)]
                if pdu.is(RtsPduKind::ConnC2) =>
            {
                self.opened = true;
                RpchEvent::ConnC2 {
                    in_window: *w,
                    connection_timeout: *t,
                }
            }
            _ if pdu.is(RtsPduKind::Ping) => RpchEvent::Ping,
            _ if pdu.is(RtsPduKind::OutR2A2) && self.opened => RpchEvent::OutR2A2,
            _ if pdu.is(RtsPduKind::OutR2A6) && self.out_successor.is_some() => RpchEvent::OutR2A6,
            _ if pdu.is(RtsPduKind::OutR2B3) && self.out_successor.is_some() => {
                // The successor's octets are a stream of their own, with their own
                // flow-control counts (3.2.1.4.1).
                if let Some(successor) = self.out_successor.take() {
                    self.cookies.out_channel = successor;
                }
                self.framer = PduFramer::new(u16::MAX);
                self.bytes_received = 0;
                self.acked = 0;
                RpchEvent::OutR2B3
            }
            _ if pdu.is(RtsPduKind::InR2A4) && self.in_successor.is_some() => RpchEvent::InR2A4,
            _ => match pdu.as_flow_control_ack() {
                Some((None, ack)) => RpchEvent::InAck(ack),
                _ => return Err(RpchClientError::Unexpected(format!("{pdu:?}"))),
            },
        })
    }
}

/// One virtual connection's client side: the RTS half and a DCE/RPC client association
/// on top of it.
pub struct RpchClient {
    pub rts: RtsClient,
    pub association: ClientAssociation,
}

impl RpchClient {
    pub fn new(
        cookies: RpchCookies,
        receive_window: u32,
        auto_ack: bool,
        association: ClientAssociation,
    ) -> RpchClient {
        RpchClient {
            rts: RtsClient::new(cookies, receive_window, auto_ack),
            association,
        }
    }

    pub fn cookies(&self) -> &RpchCookies {
        &self.rts.cookies
    }

    /// CONN/A1, the OUT channel's body ([`RtsClient::conn_a1`]).
    pub fn conn_a1(&self) -> Vec<u8> {
        self.rts.conn_a1()
    }

    /// CONN/B1, the IN channel's first PDU ([`RtsClient::conn_b1`]).
    pub fn conn_b1(&self) -> Vec<u8> {
        self.rts.conn_b1()
    }

    /// CONN/C2 came.
    pub fn is_open(&self) -> bool {
        self.rts.is_open()
    }

    /// RPC octets received on the OUT channel.
    pub fn bytes_received(&self) -> u64 {
        self.rts.bytes_received()
    }

    /// A FlowControlAck for everything received ([`RtsClient::ack`]).
    pub fn ack(&mut self) -> Vec<u8> {
        self.rts.ack()
    }

    /// Takes OUT channel octets; appends the events (the association's for RPC PDUs)
    /// and returns the octets to send on the IN channel (an ack, with `auto_ack`).
    pub fn receive_out(
        &mut self,
        bytes: &[u8],
        events: &mut Vec<RpchEvent>,
    ) -> Result<Vec<u8>, RpchClientError> {
        let mut items = Vec::new();
        let fed = self.rts.receive_out(bytes, &mut items);
        for item in items {
            match item {
                OutItem::Rts(event) => events.push(event),
                OutItem::Rpc(frame) => {
                    let mut out = Vec::new();
                    let result = self.association.receive(&frame, &mut out);
                    events.extend(out.into_iter().map(RpchEvent::Rpc));
                    result?;
                }
            }
        }
        fed
    }
}

fn encode(pdu: &RtsPdu) -> Vec<u8> {
    // The named PDUs a client sends are under 128 octets.
    pdu.encode().unwrap_or_default()
}
