//! The named RTS PDUs of [MS-RPCH] 2.2.4: constructors, and [`RtsPdu::classify`] from
//! the Flags and the command sequence each section prescribes.
//!
//! Several PDUs share one layout (CONN/C1 and CONN/C2, IN_R1/A1 and IN_R2/A1, the
//! one-Cookie PDUs, the one-ANCE PDUs, ...): the spec tells them apart by who sends
//! them and by the receiver's state (e.g. 3.2.4.5.6 for OUT_R1/A3 and OUT_R2/A3), so
//! `classify` returns every name a PDU's layout fits and the proxy's state picks one.
//!
//! Each layout is the one its 2.2.4.x section gives (checked against the [MS-RPCH]
//! text of 2024-07-29, 2.2.4.2 to 2.2.4.51); the Destination values are the ones those
//! sections fix. FlowControlAckWithDestination is 2.2.4.51 (impacket's `test_rpch.py`
//! holds a captured one).

use std::net::IpAddr;

use super::command::{FlowControlAck, ForwardDestination, RtsCommand, RtsCommandType, RtsCookie};
use super::pdu::{RtsFlags, RtsPdu};

/// A named RTS PDU of [MS-RPCH] 2.2.4.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum RtsPduKind {
    ConnA1,
    ConnA2,
    ConnA3,
    ConnB1,
    ConnB2,
    ConnB3,
    ConnC1,
    ConnC2,
    InR1A1,
    InR1A2,
    InR1A3,
    InR1A4,
    InR1A5,
    InR1A6,
    InR1B1,
    InR1B2,
    InR2A1,
    InR2A2,
    InR2A3,
    InR2A4,
    InR2A5,
    OutR1A1,
    OutR1A2,
    OutR1A3,
    OutR1A4,
    OutR1A5,
    OutR1A6,
    OutR1A7,
    OutR1A8,
    OutR1A9,
    OutR1A10,
    OutR1A11,
    OutR2A1,
    OutR2A2,
    OutR2A3,
    OutR2A4,
    OutR2A5,
    OutR2A6,
    OutR2A7,
    OutR2A8,
    OutR2B1,
    OutR2B2,
    OutR2B3,
    OutR2C1,
    KeepAlive,
    PingTrafficSentNotify,
    Echo,
    Ping,
    FlowControlAck,
    /// Destination then FlowControlAck, flags OTHER_CMD (2.2.4.51).
    FlowControlAckWithDestination,
}

/// What one position of a named PDU's command sequence must hold.
#[derive(Clone, Copy)]
enum Slot {
    Is(RtsCommandType),
    /// A Destination command with this value.
    To(ForwardDestination),
    /// OUT_R2/C1: an Empty or a Padding command ([MS-RPCH] 2.2.4.45).
    EmptyOrPadding,
}

impl Slot {
    fn admits(self, command: &RtsCommand) -> bool {
        match self {
            Slot::Is(t) => command.command_type() == t,
            Slot::To(d) => *command == RtsCommand::Destination(d),
            Slot::EmptyOrPadding => {
                matches!(command, RtsCommand::Empty | RtsCommand::Padding(_))
            }
        }
    }
}

use RtsCommandType as T;

const VERSION: Slot = Slot::Is(T::VERSION);
const COOKIE: Slot = Slot::Is(T::COOKIE);
const WINDOW: Slot = Slot::Is(T::RECEIVE_WINDOW_SIZE);
const TIMEOUT: Slot = Slot::Is(T::CONNECTION_TIMEOUT);
const LIFETIME: Slot = Slot::Is(T::CHANNEL_LIFETIME);
const ANCE: Slot = Slot::Is(T::ANCE);
const TO_CLIENT: Slot = Slot::To(ForwardDestination::CLIENT);
const TO_SERVER: Slot = Slot::To(ForwardDestination::SERVER);

/// Version, VirtualConnectionCookie, PredecessorChannelCookie, SuccessorChannelCookie.
const RECYCLE_COOKIES: &[Slot] = &[VERSION, COOKIE, COOKIE, COOKIE];
const VERSION_WINDOW_TIMEOUT: &[Slot] = &[VERSION, WINDOW, TIMEOUT];
const TO_CLIENT_VERSION_WINDOW_TIMEOUT: &[Slot] = &[TO_CLIENT, VERSION, WINDOW, TIMEOUT];
/// OUT_R1/A3 and OUT_R2/A3: the recycling cookies and the client's window.
const RECYCLE_COOKIES_WINDOW: &[Slot] = &[VERSION, COOKIE, COOKIE, COOKIE, WINDOW];
const TO_CLIENT_VERSION_TIMEOUT: &[Slot] = &[TO_CLIENT, VERSION, TIMEOUT];

const NONE: RtsFlags = RtsFlags::NONE;
const RECYCLE: RtsFlags = RtsFlags::RECYCLE_CHANNEL;
const OUT: RtsFlags = RtsFlags::OUT_CHANNEL;
const OTHER: RtsFlags = RtsFlags::OTHER_CMD;

/// A named PDU: its name, [MS-RPCH] section, Flags and command sequence.
struct Shape {
    kind: RtsPduKind,
    name: &'static str,
    section: &'static str,
    flags: RtsFlags,
    slots: &'static [Slot],
}

const fn s(
    kind: RtsPduKind,
    name: &'static str,
    section: &'static str,
    flags: RtsFlags,
    slots: &'static [Slot],
) -> Shape {
    Shape {
        kind,
        name,
        section,
        flags,
        slots,
    }
}

/// Every named PDU, in [`RtsPduKind`]'s order.
const SHAPES: &[Shape] = {
    use RtsPduKind::*;
    &[
        s(
            ConnA1,
            "CONN/A1",
            "2.2.4.2",
            NONE,
            &[VERSION, COOKIE, COOKIE, WINDOW],
        ),
        s(
            ConnA2,
            "CONN/A2",
            "2.2.4.3",
            OUT,
            &[VERSION, COOKIE, COOKIE, LIFETIME, WINDOW],
        ),
        s(ConnA3, "CONN/A3", "2.2.4.4", NONE, &[TIMEOUT]),
        s(
            ConnB1,
            "CONN/B1",
            "2.2.4.5",
            NONE,
            &[
                VERSION,
                COOKIE,
                COOKIE,
                LIFETIME,
                Slot::Is(T::CLIENT_KEEPALIVE),
                Slot::Is(T::ASSOCIATION_GROUP_ID),
            ],
        ),
        s(
            ConnB2,
            "CONN/B2",
            "2.2.4.6",
            RtsFlags::IN_CHANNEL,
            &[
                VERSION,
                COOKIE,
                COOKIE,
                WINDOW,
                TIMEOUT,
                Slot::Is(T::ASSOCIATION_GROUP_ID),
                Slot::Is(T::CLIENT_ADDRESS),
            ],
        ),
        s(ConnB3, "CONN/B3", "2.2.4.7", NONE, &[WINDOW, VERSION]),
        s(ConnC1, "CONN/C1", "2.2.4.8", NONE, VERSION_WINDOW_TIMEOUT),
        s(ConnC2, "CONN/C2", "2.2.4.9", NONE, VERSION_WINDOW_TIMEOUT),
        s(InR1A1, "IN_R1/A1", "2.2.4.10", RECYCLE, RECYCLE_COOKIES),
        s(
            InR1A2,
            "IN_R1/A2",
            "2.2.4.11",
            RtsFlags::IN_CHANNEL.union(RECYCLE),
            &[VERSION, COOKIE, COOKIE, COOKIE, WINDOW, TIMEOUT],
        ),
        s(
            InR1A3,
            "IN_R1/A3",
            "2.2.4.12",
            NONE,
            TO_CLIENT_VERSION_WINDOW_TIMEOUT,
        ),
        s(
            InR1A4,
            "IN_R1/A4",
            "2.2.4.13",
            NONE,
            TO_CLIENT_VERSION_WINDOW_TIMEOUT,
        ),
        s(InR1A5, "IN_R1/A5", "2.2.4.14", NONE, &[COOKIE]),
        s(InR1A6, "IN_R1/A6", "2.2.4.15", NONE, &[COOKIE]),
        s(InR1B1, "IN_R1/B1", "2.2.4.16", NONE, &[Slot::Is(T::EMPTY)]),
        s(InR1B2, "IN_R1/B2", "2.2.4.17", NONE, &[WINDOW]),
        s(InR2A1, "IN_R2/A1", "2.2.4.18", RECYCLE, RECYCLE_COOKIES),
        s(InR2A2, "IN_R2/A2", "2.2.4.19", NONE, &[COOKIE]),
        s(InR2A3, "IN_R2/A3", "2.2.4.20", NONE, &[TO_CLIENT]),
        s(InR2A4, "IN_R2/A4", "2.2.4.21", NONE, &[TO_CLIENT]),
        s(InR2A5, "IN_R2/A5", "2.2.4.22", NONE, &[COOKIE]),
        s(OutR1A1, "OUT_R1/A1", "2.2.4.23", RECYCLE, &[TO_CLIENT]),
        s(OutR1A2, "OUT_R1/A2", "2.2.4.24", RECYCLE, &[TO_CLIENT]),
        s(
            OutR1A3,
            "OUT_R1/A3",
            "2.2.4.25",
            RECYCLE,
            RECYCLE_COOKIES_WINDOW,
        ),
        s(
            OutR1A4,
            "OUT_R1/A4",
            "2.2.4.26",
            RECYCLE.union(OUT),
            &[VERSION, COOKIE, COOKIE, COOKIE, LIFETIME, WINDOW, TIMEOUT],
        ),
        s(
            OutR1A5,
            "OUT_R1/A5",
            "2.2.4.27",
            OUT,
            TO_CLIENT_VERSION_TIMEOUT,
        ),
        s(
            OutR1A6,
            "OUT_R1/A6",
            "2.2.4.28",
            OUT,
            TO_CLIENT_VERSION_TIMEOUT,
        ),
        s(OutR1A7, "OUT_R1/A7", "2.2.4.29", OUT, &[TO_SERVER, COOKIE]),
        s(OutR1A8, "OUT_R1/A8", "2.2.4.30", OUT, &[TO_SERVER, COOKIE]),
        s(OutR1A9, "OUT_R1/A9", "2.2.4.31", NONE, &[ANCE]),
        s(OutR1A10, "OUT_R1/A10", "2.2.4.32", NONE, &[ANCE]),
        s(OutR1A11, "OUT_R1/A11", "2.2.4.33", NONE, &[ANCE]),
        s(OutR2A1, "OUT_R2/A1", "2.2.4.34", RECYCLE, &[TO_CLIENT]),
        s(OutR2A2, "OUT_R2/A2", "2.2.4.35", RECYCLE, &[TO_CLIENT]),
        s(
            OutR2A3,
            "OUT_R2/A3",
            "2.2.4.36",
            RECYCLE,
            RECYCLE_COOKIES_WINDOW,
        ),
        s(OutR2A4, "OUT_R2/A4", "2.2.4.37", NONE, &[COOKIE]),
        s(OutR2A5, "OUT_R2/A5", "2.2.4.38", NONE, &[TO_CLIENT, ANCE]),
        s(OutR2A6, "OUT_R2/A6", "2.2.4.39", NONE, &[TO_CLIENT, ANCE]),
        s(
            OutR2A7,
            "OUT_R2/A7",
            "2.2.4.40",
            OUT,
            &[TO_SERVER, COOKIE, VERSION],
        ),
        s(OutR2A8, "OUT_R2/A8", "2.2.4.41", OUT, &[TO_SERVER, COOKIE]),
        s(OutR2B1, "OUT_R2/B1", "2.2.4.42", NONE, &[ANCE]),
        s(
            OutR2B2,
            "OUT_R2/B2",
            "2.2.4.43",
            NONE,
            &[Slot::Is(T::NEGATIVE_ANCE)],
        ),
        s(OutR2B3, "OUT_R2/B3", "2.2.4.44", RtsFlags::EOF, &[ANCE]),
        s(
            OutR2C1,
            "OUT_R2/C1",
            "2.2.4.45",
            RtsFlags::PING,
            &[Slot::EmptyOrPadding],
        ),
        s(
            KeepAlive,
            "Keep-Alive",
            "2.2.4.46",
            OTHER,
            &[Slot::Is(T::CLIENT_KEEPALIVE)],
        ),
        s(
            PingTrafficSentNotify,
            "Ping Traffic Sent Notify",
            "2.2.4.47",
            OTHER,
            &[Slot::Is(T::PING_TRAFFIC_SENT_NOTIFY)],
        ),
        s(Echo, "Echo", "2.2.4.48", RtsFlags::ECHO, &[]),
        s(Ping, "Ping", "2.2.4.49", RtsFlags::PING, &[]),
        s(
            RtsPduKind::FlowControlAck,
            "FlowControlAck",
            "2.2.4.50",
            OTHER,
            &[Slot::Is(T::FLOW_CONTROL_ACK)],
        ),
        s(
            FlowControlAckWithDestination,
            "FlowControlAckWithDestination",
            "2.2.4.51",
            OTHER,
            &[Slot::Is(T::DESTINATION), Slot::Is(T::FLOW_CONTROL_ACK)],
        ),
    ]
};

impl RtsPduKind {
    /// Every named PDU, in the order of [MS-RPCH] 2.2.4.
    pub fn all() -> impl Iterator<Item = RtsPduKind> {
        SHAPES.iter().map(|s| s.kind)
    }

    fn shape(self) -> &'static Shape {
        // SHAPES lists every variant in declaration order.
        &SHAPES[self as usize]
    }

    /// The spec's name: "CONN/A1", "OUT_R2/C1", "Ping", ...
    pub fn name(self) -> &'static str {
        self.shape().name
    }

    /// The [MS-RPCH] section that defines it.
    pub fn section(self) -> &'static str {
        self.shape().section
    }

    /// The Flags the PDU carries.
    pub fn flags(self) -> RtsFlags {
        self.shape().flags
    }
}

impl RtsPdu {
    /// Every named PDU whose Flags and command sequence this PDU has (empty for none).
    pub fn classify(&self) -> Vec<RtsPduKind> {
        RtsPduKind::all().filter(|k| self.is(*k)).collect()
    }

    /// Whether this PDU has the Flags and command sequence of `kind`.
    pub fn is(&self, kind: RtsPduKind) -> bool {
        let Shape { flags, slots, .. } = kind.shape();
        self.flags == *flags
            && self.commands.len() == slots.len()
            && slots.iter().zip(&self.commands).all(|(s, c)| s.admits(c))
    }
}

/// The cookies a channel-recycling request names ([MS-RPCH] 2.2.4.10, 2.2.4.25): the
/// virtual connection, the channel being replaced and its successor.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct RecycleCookies {
    pub virtual_connection: RtsCookie,
    pub predecessor: RtsCookie,
    pub successor: RtsCookie,
}

/// The fields of CONN/A1 ([MS-RPCH] 2.2.4.2), client to outbound proxy.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ConnA1 {
    pub version: u32,
    pub virtual_connection_cookie: RtsCookie,
    pub out_channel_cookie: RtsCookie,
    pub receive_window_size: u32,
}

/// The fields of CONN/B1 ([MS-RPCH] 2.2.4.5), client to inbound proxy.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ConnB1 {
    pub version: u32,
    pub virtual_connection_cookie: RtsCookie,
    pub in_channel_cookie: RtsCookie,
    pub channel_lifetime: u32,
    pub client_keepalive: u32,
    pub association_group_id: RtsCookie,
}

use RtsCommand as C;

impl RtsPdu {
    /// CONN/A1's fields, if this is one.
    pub fn as_conn_a1(&self) -> Option<ConnA1> {
        match (self.flags, self.commands.as_slice()) {
            (
                RtsFlags::NONE,
                [C::Version(v), C::Cookie(vc), C::Cookie(out), C::ReceiveWindowSize(w)],
            ) => Some(ConnA1 {
                version: *v,
                virtual_connection_cookie: *vc,
                out_channel_cookie: *out,
                receive_window_size: *w,
            }),
            _ => None,
        }
    }

    /// CONN/B1's fields, if this is one.
    pub fn as_conn_b1(&self) -> Option<ConnB1> {
        match (self.flags, self.commands.as_slice()) {
            (
                RtsFlags::NONE,
                [C::Version(v), C::Cookie(vc), C::Cookie(inc), C::ChannelLifetime(life), C::ClientKeepalive(keep), C::AssociationGroupId(group)],
            ) => Some(ConnB1 {
                version: *v,
                virtual_connection_cookie: *vc,
                in_channel_cookie: *inc,
                channel_lifetime: *life,
                client_keepalive: *keep,
                association_group_id: *group,
            }),
            _ => None,
        }
    }

    /// The acknowledgment of a FlowControlAck or FlowControlAckWithDestination PDU, with
    /// the destination of the latter.
    pub fn as_flow_control_ack(&self) -> Option<(Option<ForwardDestination>, FlowControlAck)> {
        match (self.flags, self.commands.as_slice()) {
            (RtsFlags::OTHER_CMD, [C::FlowControlAck(ack)]) => Some((None, *ack)),
            (RtsFlags::OTHER_CMD, [C::Destination(d), C::FlowControlAck(ack)]) => {
                Some((Some(*d), *ack))
            }
            _ => None,
        }
    }
}

/// Constructors, one per named PDU; PDUs of one layout share the body of the first.
impl RtsPdu {
    pub fn conn_a1(
        version: u32,
        virtual_connection_cookie: RtsCookie,
        out_channel_cookie: RtsCookie,
        receive_window_size: u32,
    ) -> RtsPdu {
        RtsPdu::new(
            NONE,
            vec![
                C::Version(version),
                C::Cookie(virtual_connection_cookie),
                C::Cookie(out_channel_cookie),
                C::ReceiveWindowSize(receive_window_size),
            ],
        )
    }

    pub fn conn_a2(
        version: u32,
        virtual_connection_cookie: RtsCookie,
        out_channel_cookie: RtsCookie,
        channel_lifetime: u32,
        receive_window_size: u32,
    ) -> RtsPdu {
        let mut pdu = RtsPdu::conn_a1(
            version,
            virtual_connection_cookie,
            out_channel_cookie,
            receive_window_size,
        );
        pdu.flags = OUT;
        pdu.commands.insert(3, C::ChannelLifetime(channel_lifetime));
        pdu
    }

    pub fn conn_a3(connection_timeout: u32) -> RtsPdu {
        RtsPdu::new(NONE, vec![C::ConnectionTimeout(connection_timeout)])
    }

    pub fn conn_b1(
        version: u32,
        virtual_connection_cookie: RtsCookie,
        in_channel_cookie: RtsCookie,
        channel_lifetime: u32,
        client_keepalive: u32,
        association_group_id: RtsCookie,
    ) -> RtsPdu {
        RtsPdu::new(
            NONE,
            vec![
                C::Version(version),
                C::Cookie(virtual_connection_cookie),
                C::Cookie(in_channel_cookie),
                C::ChannelLifetime(channel_lifetime),
                C::ClientKeepalive(client_keepalive),
                C::AssociationGroupId(association_group_id),
            ],
        )
    }

    /// CONN/B2 with zero padding after the client address.
    #[allow(clippy::too_many_arguments)]
    pub fn conn_b2(
        version: u32,
        virtual_connection_cookie: RtsCookie,
        in_channel_cookie: RtsCookie,
        receive_window_size: u32,
        connection_timeout: u32,
        association_group_id: RtsCookie,
        client_address: IpAddr,
    ) -> RtsPdu {
        RtsPdu::new(
            RtsFlags::IN_CHANNEL,
            vec![
                C::Version(version),
                C::Cookie(virtual_connection_cookie),
                C::Cookie(in_channel_cookie),
                C::ReceiveWindowSize(receive_window_size),
                C::ConnectionTimeout(connection_timeout),
                C::AssociationGroupId(association_group_id),
                C::client_address(client_address),
            ],
        )
    }

    pub fn conn_b3(receive_window_size: u32, version: u32) -> RtsPdu {
        RtsPdu::new(
            NONE,
            vec![
                C::ReceiveWindowSize(receive_window_size),
                C::Version(version),
            ],
        )
    }

    pub fn conn_c1(version: u32, receive_window_size: u32, connection_timeout: u32) -> RtsPdu {
        RtsPdu::new(
            NONE,
            vec![
                C::Version(version),
                C::ReceiveWindowSize(receive_window_size),
                C::ConnectionTimeout(connection_timeout),
            ],
        )
    }

    /// The layout of CONN/C1; `receive_window_size` and `connection_timeout` are the
    /// inbound proxy's (2.2.4.9).
    pub fn conn_c2(version: u32, receive_window_size: u32, connection_timeout: u32) -> RtsPdu {
        RtsPdu::conn_c1(version, receive_window_size, connection_timeout)
    }

    /// IN_R1/A1 (and IN_R2/A1, the same layout).
    pub fn in_r1_a1(version: u32, cookies: RecycleCookies) -> RtsPdu {
        RtsPdu::new(
            RECYCLE,
            vec![
                C::Version(version),
                C::Cookie(cookies.virtual_connection),
                C::Cookie(cookies.predecessor),
                C::Cookie(cookies.successor),
            ],
        )
    }

    pub fn in_r1_a2(
        version: u32,
        cookies: RecycleCookies,
        receive_window_size: u32,
        connection_timeout: u32,
    ) -> RtsPdu {
        let mut pdu = RtsPdu::in_r1_a1(version, cookies);
        pdu.flags = RtsFlags::IN_CHANNEL.union(RECYCLE);
        pdu.commands.extend([
            C::ReceiveWindowSize(receive_window_size),
            C::ConnectionTimeout(connection_timeout),
        ]);
        pdu
    }

    pub fn in_r1_a3(version: u32, receive_window_size: u32, connection_timeout: u32) -> RtsPdu {
        let mut pdu = RtsPdu::conn_c1(version, receive_window_size, connection_timeout);
        pdu.commands
            .insert(0, C::Destination(ForwardDestination::CLIENT));
        pdu
    }

    pub fn in_r1_a4(version: u32, receive_window_size: u32, connection_timeout: u32) -> RtsPdu {
        RtsPdu::in_r1_a3(version, receive_window_size, connection_timeout)
    }

    /// One Cookie, flags NONE: IN_R1/A5 (the successor IN channel's cookie).
    pub fn in_r1_a5(cookie: RtsCookie) -> RtsPdu {
        RtsPdu::new(NONE, vec![C::Cookie(cookie)])
    }

    pub fn in_r1_a6(cookie: RtsCookie) -> RtsPdu {
        RtsPdu::in_r1_a5(cookie)
    }

    pub fn in_r1_b1() -> RtsPdu {
        RtsPdu::new(NONE, vec![C::Empty])
    }

    pub fn in_r1_b2(receive_window_size: u32) -> RtsPdu {
        RtsPdu::new(NONE, vec![C::ReceiveWindowSize(receive_window_size)])
    }

    pub fn in_r2_a1(version: u32, cookies: RecycleCookies) -> RtsPdu {
        RtsPdu::in_r1_a1(version, cookies)
    }

    pub fn in_r2_a2(cookie: RtsCookie) -> RtsPdu {
        RtsPdu::in_r1_a5(cookie)
    }

    /// One Destination FDClient, flags NONE: IN_R2/A3 and A4.
    pub fn in_r2_a3() -> RtsPdu {
        RtsPdu::new(NONE, vec![C::Destination(ForwardDestination::CLIENT)])
    }

    pub fn in_r2_a4() -> RtsPdu {
        RtsPdu::in_r2_a3()
    }

    pub fn in_r2_a5(successor_channel_cookie: RtsCookie) -> RtsPdu {
        RtsPdu::in_r1_a5(successor_channel_cookie)
    }

    /// One Destination FDClient, flags RECYCLE_CHANNEL: OUT_R1/A1, A2, OUT_R2/A1, A2.
    pub fn out_r1_a1() -> RtsPdu {
        let mut pdu = RtsPdu::in_r2_a3();
        pdu.flags = RECYCLE;
        pdu
    }

    pub fn out_r1_a2() -> RtsPdu {
        RtsPdu::out_r1_a1()
    }

    /// OUT_R1/A3 (and OUT_R2/A3, the same layout); the window is the client's.
    pub fn out_r1_a3(version: u32, cookies: RecycleCookies, receive_window_size: u32) -> RtsPdu {
        let mut pdu = RtsPdu::in_r1_a1(version, cookies);
        pdu.commands.push(C::ReceiveWindowSize(receive_window_size));
        pdu
    }

    pub fn out_r1_a4(
        version: u32,
        cookies: RecycleCookies,
        channel_lifetime: u32,
        receive_window_size: u32,
        connection_timeout: u32,
    ) -> RtsPdu {
        let mut pdu = RtsPdu::in_r1_a1(version, cookies);
        pdu.flags = RECYCLE.union(OUT);
        pdu.commands.extend([
            C::ChannelLifetime(channel_lifetime),
            C::ReceiveWindowSize(receive_window_size),
            C::ConnectionTimeout(connection_timeout),
        ]);
        pdu
    }

    pub fn out_r1_a5(version: u32, connection_timeout: u32) -> RtsPdu {
        RtsPdu::new(
            OUT,
            vec![
                C::Destination(ForwardDestination::CLIENT),
                C::Version(version),
                C::ConnectionTimeout(connection_timeout),
            ],
        )
    }

    pub fn out_r1_a6(version: u32, connection_timeout: u32) -> RtsPdu {
        RtsPdu::out_r1_a5(version, connection_timeout)
    }

    /// Destination FDServer and the successor OUT channel's cookie, flags OUT_CHANNEL:
    /// OUT_R1/A7, A8 and OUT_R2/A8.
    pub fn out_r1_a7(successor_channel_cookie: RtsCookie) -> RtsPdu {
        RtsPdu::new(
            OUT,
            vec![
                C::Destination(ForwardDestination::SERVER),
                C::Cookie(successor_channel_cookie),
            ],
        )
    }

    pub fn out_r1_a8(successor_channel_cookie: RtsCookie) -> RtsPdu {
        RtsPdu::out_r1_a7(successor_channel_cookie)
    }

    /// One ANCE, flags NONE: OUT_R1/A9, A10, A11 and OUT_R2/B1.
    pub fn out_r1_a9() -> RtsPdu {
        RtsPdu::new(NONE, vec![C::Ance])
    }

    pub fn out_r1_a10() -> RtsPdu {
        RtsPdu::out_r1_a9()
    }

    pub fn out_r1_a11() -> RtsPdu {
        RtsPdu::out_r1_a9()
    }

    pub fn out_r2_a1() -> RtsPdu {
        RtsPdu::out_r1_a1()
    }

    pub fn out_r2_a2() -> RtsPdu {
        RtsPdu::out_r1_a1()
    }

    pub fn out_r2_a3(version: u32, cookies: RecycleCookies, receive_window_size: u32) -> RtsPdu {
        RtsPdu::out_r1_a3(version, cookies, receive_window_size)
    }

    pub fn out_r2_a4(successor_channel_cookie: RtsCookie) -> RtsPdu {
        RtsPdu::in_r1_a5(successor_channel_cookie)
    }

    /// Destination FDClient and ANCE: OUT_R2/A5 and A6.
    pub fn out_r2_a5() -> RtsPdu {
        let mut pdu = RtsPdu::in_r2_a3();
        pdu.commands.push(C::Ance);
        pdu
    }

    pub fn out_r2_a6() -> RtsPdu {
        RtsPdu::out_r2_a5()
    }

    pub fn out_r2_a7(successor_channel_cookie: RtsCookie, version: u32) -> RtsPdu {
        let mut pdu = RtsPdu::out_r1_a7(successor_channel_cookie);
        pdu.commands.push(C::Version(version));
        pdu
    }

    pub fn out_r2_a8(successor_channel_cookie: RtsCookie) -> RtsPdu {
        RtsPdu::out_r1_a7(successor_channel_cookie)
    }

    pub fn out_r2_b1() -> RtsPdu {
        RtsPdu::out_r1_a9()
    }

    pub fn out_r2_b2() -> RtsPdu {
        RtsPdu::new(NONE, vec![C::NegativeAnce])
    }

    pub fn out_r2_b3() -> RtsPdu {
        RtsPdu::new(RtsFlags::EOF, vec![C::Ance])
    }

    /// OUT_R2/C1 with an Empty command: then it has the size of OUT_R1/A11 (24 octets),
    /// as 2.2.4.45 requires.
    pub fn out_r2_c1() -> RtsPdu {
        RtsPdu::new(RtsFlags::PING, vec![C::Empty])
    }

    /// Keep-Alive with the interval in milliseconds.
    pub fn keep_alive(client_keepalive: u32) -> RtsPdu {
        RtsPdu::new(OTHER, vec![C::ClientKeepalive(client_keepalive)])
    }

    pub fn ping_traffic_sent_notify(octets_sent: u32) -> RtsPdu {
        RtsPdu::new(OTHER, vec![C::PingTrafficSentNotify(octets_sent)])
    }

    pub fn echo() -> RtsPdu {
        RtsPdu::new(RtsFlags::ECHO, Vec::new())
    }

    pub fn ping() -> RtsPdu {
        RtsPdu::new(RtsFlags::PING, Vec::new())
    }

    pub fn flow_control_ack(ack: FlowControlAck) -> RtsPdu {
        RtsPdu::new(OTHER, vec![C::FlowControlAck(ack)])
    }

    pub fn flow_control_ack_with_destination(
        destination: ForwardDestination,
        ack: FlowControlAck,
    ) -> RtsPdu {
        RtsPdu::new(
            OTHER,
            vec![C::Destination(destination), C::FlowControlAck(ack)],
        )
    }
}
