//! Network fuzzing of a live RPC over HTTP v2 proxy ([MS-RPCH]), the sans-IO half. A
//! case is one virtual connection: an OUT channel (`RPC_OUT_DATA`, CONN/A1 in its body)
//! and an IN channel (`RPC_IN_DATA`, CONN/B1, then the DCE/RPC session of the
//! [`dcerpc`](super::dcerpc) fuzzer). One thing in it is wrong, at one of two layers:
//!
//! - the RTS/HTTP layer ([`RtsMutation`]): CONN/A1 or CONN/B1 with a field changed, an
//!   unknown or extra command, cut short; a declared Content-Length too small or too
//!   large; an IN channel whose cookie no OUT channel has; a second OUT or IN channel for
//!   the live cookie; a FlowControlAck with wrong numbers; a Ping; garbage octets between
//!   PDUs; an unknown RTS PDU; a channel that sends nothing; one channel closed mid-way;
//! - the DCE/RPC layer inside the IN channel: a [`RpcCase`] of the `dcerpc://` fuzzer,
//!   its session and its mutation as they are (the same planning, the same client).
//!
//! Each plan says what the proxy must do ([`Expect`], [`Then`]): refuse the wrong
//! channel with a given HTTP status (or close it), hold a channel that waits for its
//! other half, end the virtual connection, answer a Ping, or carry on. The lab plays the
//! plan over sockets ([`RpchConversation`] reads the OUT channel) and checks it; a clean
//! virtual connection (the canary) must then still work.
//!
//! Case N of a seed is always the same plan with the same cookies: `harness fuzz
//! --target rpch://HOST:PORT --seed S --case N --count 1` plays it again (the NTLM legs
//! answer the proxy's challenge of the moment, so not byte for byte).

use harness_wire::dcerpc::{PacketType, PduFramer};
use harness_wire::rpch::{
    FlowControlAck, ForwardDestination, RtsCookie, RtsFlags, RtsPdu, RtsPduKind,
};

use super::dcerpc::{Heard, RpcCase, RpcCredentials, RpcSession};
use crate::dcerpc::client::{AuthLevel, ClientError};
use crate::dcerpc::known_calls::KnownInterface;
use crate::rng::SeededRng;
use crate::rpch::proxy::{
    CONN_A1_LEN, MAX_IN_REQUEST_LENGTH as MAX_IN_LENGTH, MAX_OUT_REQUEST_LENGTH as MAX_OUT_LENGTH,
    MAX_RECEIVE_WINDOW, MIN_CHANNEL_LIFETIME, MIN_RECEIVE_WINDOW, RTS_VERSION,
};
use crate::rpch::RpchCookies;

/// The OUT channel's window a case announces in CONN/A1 (as the lab's client does).
pub const OUT_WINDOW: u32 = 0x1_0000;
/// CONN/B1's ChannelLifetime and the IN channel's declared length (impacket, Outlook).
pub const IN_LIFETIME: u32 = 0x4000_0000;
/// CONN/B1's ClientKeepalive.
const KEEPALIVE_MS: u32 = 300_000;
/// CONN/B1 is 104 octets ([MS-RPCH] 2.2.4.5); the proxy's own bounds on the declared
/// lengths and the lifetime are its constants, imported above.
const CONN_B1_LEN: u64 = 104;
/// An RTS CommandType past the last one ([MS-RPCH] 2.2.3.5: 0 to 14).
const FIRST_UNKNOWN_COMMAND: u32 = 15;

/// Which channel of the virtual connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Out,
    In,
}

/// A CONN/A1 or CONN/B1 field changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpeningField {
    /// Version other than 1.
    Version(u32),
    /// CONN/A1's ReceiveWindowSize outside 8 KiB..=256 KiB.
    Window(u32),
    /// The virtual-connection cookie replaced by the other channel's cookie: two
    /// virtual connections, neither paired.
    CookieOfOtherChannel,
    /// The virtual-connection cookie replaced by the nil GUID (unpaired too).
    NilCookie,
    /// The channel's own cookie equal to the virtual connection's (legal: pairs).
    ChannelCookieIsVc,
    /// CONN/B1's ChannelLifetime, ClientKeepalive and AssociationGroupId changed (the
    /// proxy takes any values: pairs).
    B1Values { lifetime: u32, keepalive: u32 },
}

/// What goes wrong at the RTS/HTTP layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtsMutation {
    /// CONN/A1 (Out) or CONN/B1 (In) with a field changed.
    Field(Side, OpeningField),
    /// An unknown command (type, value) after the opening PDU's commands.
    UnknownCommand(Side, u32, u32),
    /// An extra Empty command: the layout of no named PDU.
    ExtraCommand(Side),
    /// The opening PDU cut to this many octets (modulo its length), then the request's
    /// body ends (the client half-closes).
    Truncate(Side, usize),
    /// A declared Content-Length below the proxy's floor (CONN/A1's or CONN/B1's size).
    LengthTooSmall(Side, u64),
    /// A declared Content-Length above the proxy's ceiling.
    LengthTooLarge(Side, u64),
    /// The IN channel declares the length of CONN/B1 and this many octets more, less than
    /// the lifetime its CONN/B1 names: refused.
    InLengthShort(u64),
    /// The OUT channel declares more than CONN/A1 (but within the ceiling): legal.
    OutLengthLonger(u64),
    /// Only an IN channel, whose cookie no OUT channel names.
    UnknownCookieIn,
    /// A second OUT channel (Side::Out) or IN channel for the open virtual connection.
    SecondChannel(Side),
    /// A FlowControlAck on the IN channel, once open.
    Ack(AckMutation),
    /// A Ping on the IN channel: the proxy answers with one on the OUT channel.
    Ping,
    /// Octets that frame as no PDU between two of the session's PDUs (the first one not
    /// 5, rpc_vers).
    Garbage(Vec<u8>),
    /// An RTS PDU no client sends on the IN channel (CONN/A3's layout, or an unknown
    /// command).
    UnknownRts(bool),
    /// This channel's request head goes out, then nothing (the other channel opens as
    /// usual).
    Silent(Side),
    /// This channel closes once the virtual connection is open.
    Close(Side),
}

/// How the FlowControlAck of [`RtsMutation::Ack`] is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMutation {
    /// BytesReceived past what the proxy sent.
    TooManyReceived(u32),
    /// AvailableWindow larger than CONN/A1's window.
    WindowTooLarge(u32),
    /// For a channel cookie of no channel: the proxy drops it.
    UnknownChannel,
    /// With a Destination other than the outbound proxy.
    Destination(u32),
}

impl RtsMutation {
    /// Every kind's name, in the order `pick` draws them.
    pub const KINDS: [&'static str; 20] = [
        "a1-field",
        "b1-field",
        "unknown-command",
        "extra-command",
        "truncate",
        "length-too-small",
        "length-too-large",
        "in-length-short",
        "out-length-longer",
        "unknown-cookie-in",
        "second-out",
        "second-in",
        "ack",
        "ping",
        "garbage",
        "unknown-rts",
        "silent-out",
        "silent-in",
        "close-out",
        "close-in",
    ];

    fn pick(rng: &mut SeededRng) -> RtsMutation {
        let n = rng.next_u64();
        let v = (n >> 32) as u32;
        let side = if (n >> 8) & 1 == 0 {
            Side::Out
        } else {
            Side::In
        };
        match n % Self::KINDS.len() as u64 {
            0 => RtsMutation::Field(Side::Out, a1_field(v, rng.next_u64())),
            1 => RtsMutation::Field(Side::In, b1_field(v, rng.next_u64())),
            2 => RtsMutation::UnknownCommand(
                side,
                FIRST_UNKNOWN_COMMAND.saturating_add(v % 1000),
                rng.next_u64() as u32,
            ),
            3 => RtsMutation::ExtraCommand(side),
            4 => RtsMutation::Truncate(side, v as usize),
            5 => {
                let floor = match side {
                    Side::Out => CONN_A1_LEN,
                    Side::In => CONN_B1_LEN,
                };
                RtsMutation::LengthTooSmall(side, u64::from(v) % floor)
            }
            6 => {
                let ceiling = match side {
                    Side::Out => MAX_OUT_LENGTH,
                    Side::In => MAX_IN_LENGTH,
                };
                RtsMutation::LengthTooLarge(side, ceiling + 1 + u64::from(v))
            }
            // At least one octet: the body ends inside the first PDU, after the pairing.
            7 => RtsMutation::InLengthShort(1 + u64::from(v % 63)),
            8 => RtsMutation::OutLengthLonger(1 + u64::from(v) % (MAX_OUT_LENGTH - CONN_A1_LEN)),
            9 => RtsMutation::UnknownCookieIn,
            10 => RtsMutation::SecondChannel(Side::Out),
            11 => RtsMutation::SecondChannel(Side::In),
            12 => RtsMutation::Ack(match v % 4 {
                0 => AckMutation::TooManyReceived(1 + (rng.next_u64() as u32 >> 4)),
                1 => AckMutation::WindowTooLarge(OUT_WINDOW + 1 + (rng.next_u64() as u32 >> 4)),
                2 => AckMutation::UnknownChannel,
                // Any value but OUT_PROXY (3).
                _ => AckMutation::Destination((rng.next_u64() as u32 % 3) ^ (v & !3)),
            }),
            13 => RtsMutation::Ping,
            14 => {
                let mut octets = vec![0u8; 1 + v as usize % 64];
                rng.fill(&mut octets);
                if octets[0] == 5 {
                    octets[0] = 0xff;
                }
                RtsMutation::Garbage(octets)
            }
            15 => RtsMutation::UnknownRts(v & 1 == 0),
            16 => RtsMutation::Silent(Side::Out),
            17 => RtsMutation::Silent(Side::In),
            18 => RtsMutation::Close(Side::Out),
            _ => RtsMutation::Close(Side::In),
        }
    }

    /// The kind's name (one of [`RtsMutation::KINDS`]).
    pub fn name(&self) -> &'static str {
        match self {
            RtsMutation::Field(Side::Out, _) => "a1-field",
            RtsMutation::Field(Side::In, _) => "b1-field",
            RtsMutation::UnknownCommand(..) => "unknown-command",
            RtsMutation::ExtraCommand(_) => "extra-command",
            RtsMutation::Truncate(..) => "truncate",
            RtsMutation::LengthTooSmall(..) => "length-too-small",
            RtsMutation::LengthTooLarge(..) => "length-too-large",
            RtsMutation::InLengthShort(_) => "in-length-short",
            RtsMutation::OutLengthLonger(_) => "out-length-longer",
            RtsMutation::UnknownCookieIn => "unknown-cookie-in",
            RtsMutation::SecondChannel(Side::Out) => "second-out",
            RtsMutation::SecondChannel(Side::In) => "second-in",
            RtsMutation::Ack(_) => "ack",
            RtsMutation::Ping => "ping",
            RtsMutation::Garbage(_) => "garbage",
            RtsMutation::UnknownRts(_) => "unknown-rts",
            RtsMutation::Silent(Side::Out) => "silent-out",
            RtsMutation::Silent(Side::In) => "silent-in",
            RtsMutation::Close(Side::Out) => "close-out",
            RtsMutation::Close(Side::In) => "close-in",
        }
    }

    /// Whether the mutation happens once the virtual connection is open (before one of
    /// the session's PDUs), rather than while the channels open.
    fn after_open(&self) -> bool {
        matches!(
            self,
            RtsMutation::SecondChannel(_)
                | RtsMutation::Ack(_)
                | RtsMutation::Ping
                | RtsMutation::Garbage(_)
                | RtsMutation::UnknownRts(_)
                | RtsMutation::Close(_)
        )
    }
}

fn a1_field(v: u32, n: u64) -> OpeningField {
    match n % 5 {
        0 => OpeningField::Version(if v == RTS_VERSION { 0 } else { v }),
        1 => OpeningField::Window(if v % 2 == 0 {
            v % MIN_RECEIVE_WINDOW
        } else {
            MAX_RECEIVE_WINDOW.saturating_add(1 + (v >> 1))
        }),
        2 => OpeningField::CookieOfOtherChannel,
        3 => OpeningField::NilCookie,
        _ => OpeningField::ChannelCookieIsVc,
    }
}

fn b1_field(v: u32, n: u64) -> OpeningField {
    match n % 5 {
        0 => OpeningField::Version(if v == RTS_VERSION { 2 } else { v }),
        1 => OpeningField::CookieOfOtherChannel,
        2 => OpeningField::NilCookie,
        3 => OpeningField::ChannelCookieIsVc,
        _ => OpeningField::B1Values {
            lifetime: v,
            keepalive: (n >> 32) as u32,
        },
    }
}

/// What is wrong in a case: at the RTS/HTTP layer, before PDU `at` of the session for
/// the mutations once open; or a `dcerpc://` case inside the IN channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layer {
    Rts { mutation: RtsMutation, at: usize },
    Rpc(RpcCase),
}

/// One case: a virtual connection, its session's interface and NTLM level, and what is
/// wrong in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpchCase {
    pub number: u64,
    pub interface: KnownInterface,
    /// NTLM at this level inside the IN channel, or no security.
    pub auth: Option<AuthLevel>,
    pub cookies: RpchCookies,
    pub layer: Layer,
}

/// The DCE/RPC cases among every ten.
const RPC_CASES_IN_TEN: u64 = 4;

impl RpchCase {
    /// Case `number` of `seed`: always the same plan and cookies.
    pub fn plan(seed: u64, number: u64, interface: KnownInterface) -> RpchCase {
        let mix = seed ^ number.wrapping_mul(0xd1b5_4a32_d192_ed03);
        let mut rng = SeededRng::new(mix ^ 0x7270_6368);
        let cookies = RpchCookies::from_seed(rng.next_u64());
        // The dcerpc:// plan of the same numbers: its NTLM level, and its mutation for
        // the cases of that layer.
        let rpc = RpcCase::plan(seed, number, interface);
        let auth = rpc.auth;
        let layer = if rng.next_u64() % 10 < RPC_CASES_IN_TEN {
            Layer::Rpc(rpc)
        } else {
            let mutation = RtsMutation::pick(&mut rng);
            let pdus = 1 + usize::from(auth.is_some()) + interface.valid_calls().len();
            let at = (rng.next_u64() % pdus as u64) as usize;
            Layer::Rts { mutation, at }
        };
        RpchCase {
            number,
            interface,
            auth,
            cookies,
            layer,
        }
    }

    /// The mutation's kind: an [`RtsMutation::KINDS`] name, or `rpc-` and the
    /// `dcerpc://` mutation's.
    pub fn kind(&self) -> String {
        match &self.layer {
            Layer::Rts { mutation, .. } => mutation.name().to_string(),
            Layer::Rpc(rpc) => format!("rpc-{}", rpc.mutation.name()),
        }
    }

    /// The plan, short.
    pub fn describe(&self) -> String {
        match &self.layer {
            Layer::Rts { mutation, at } => {
                format!(
                    "{mutation:?} (before PDU {at} if once open), auth {:?}",
                    self.auth
                )
            }
            Layer::Rpc(rpc) => format!(
                "dcerpc {:?} of PDU {} (auth {:?}, alter_context {})",
                rpc.mutation.describe(),
                rpc.target_pdu,
                rpc.auth,
                rpc.alter
            ),
        }
    }

    /// The session inside the IN channel: the `dcerpc://` case's for that layer, an
    /// unmutated one otherwise.
    pub fn session(&self, creds: &RpcCredentials) -> Result<RpcSession, ClientError> {
        match &self.layer {
            Layer::Rpc(rpc) => RpcSession::for_case(rpc, creds),
            Layer::Rts { .. } => RpcSession::new(self.interface, self.auth, creds),
        }
    }

    /// The channels' requests and what the proxy must do.
    pub fn channels(&self) -> ChannelsPlan {
        let c = self.cookies;
        let mut a1 = (RTS_VERSION, c.virtual_connection, c.out_channel, OUT_WINDOW);
        let mut b1 = (
            RTS_VERSION,
            c.virtual_connection,
            c.in_channel,
            IN_LIFETIME,
            KEEPALIVE_MS,
            c.association_group,
        );
        let mut plan = ChannelsPlan {
            out: Some(ChannelRequest::new(CONN_A1_LEN, Vec::new())),
            inbound: Some(ChannelRequest::new(u64::from(IN_LIFETIME), Vec::new())),
            expect: Expect::Open,
            then: Then::Served,
            inject: None,
            at: usize::MAX,
        };
        let Layer::Rts { mutation, at } = &self.layer else {
            plan.out_body(conn_a1(a1));
            plan.in_body(conn_b1(b1));
            return plan;
        };
        let refused = |side| Expect::Refused {
            side,
            statuses: &[400],
            or_close: false,
        };
        // The opening PDUs' fields first.
        if let RtsMutation::Field(side, field) = mutation {
            let other = match side {
                Side::Out => c.in_channel,
                Side::In => c.out_channel,
            };
            let vc_cookie = match field {
                OpeningField::CookieOfOtherChannel => Some(other),
                OpeningField::NilCookie => Some(RtsCookie::NIL),
                _ => None,
            };
            match (side, field) {
                (Side::Out, OpeningField::Version(v)) => a1.0 = *v,
                (Side::In, OpeningField::Version(v)) => b1.0 = *v,
                (Side::Out, OpeningField::Window(w)) => a1.3 = *w,
                (Side::Out, OpeningField::ChannelCookieIsVc) => a1.2 = a1.1,
                (Side::In, OpeningField::ChannelCookieIsVc) => b1.2 = b1.1,
                (
                    Side::In,
                    OpeningField::B1Values {
                        lifetime,
                        keepalive,
                    },
                ) => {
                    b1.3 = *lifetime;
                    b1.4 = *keepalive;
                    b1.5 = c.virtual_connection;
                }
                _ => {}
            }
            if let Some(cookie) = vc_cookie {
                match side {
                    Side::Out => a1.1 = cookie,
                    Side::In => b1.1 = cookie,
                }
            }
            plan.expect = match field {
                OpeningField::Version(_) | OpeningField::Window(_) => refused(*side),
                OpeningField::CookieOfOtherChannel | OpeningField::NilCookie => Expect::Held,
                // [MS-RPCH] 2.2.3.5.5: a ChannelLifetime of 128 KiB to 2 GiB, and no longer
                // than the IN request declares (here IN_LIFETIME).
                OpeningField::B1Values { lifetime, .. }
                    if !(MIN_CHANNEL_LIFETIME..=u64::from(IN_LIFETIME))
                        .contains(&u64::from(*lifetime)) =>
                {
                    refused(*side)
                }
                OpeningField::ChannelCookieIsVc | OpeningField::B1Values { .. } => Expect::Open,
            };
        }
        let (a1_bytes, b1_bytes) = (conn_a1(a1), conn_b1(b1));
        plan.out_body(a1_bytes.clone());
        plan.in_body(b1_bytes.clone());
        let opening = |side| match side {
            Side::Out => a1_bytes.clone(),
            Side::In => b1_bytes.clone(),
        };
        match mutation {
            RtsMutation::Field(..) => {}
            RtsMutation::UnknownCommand(side, command, value) => {
                let mut body = opening(*side);
                extend_pdu(
                    &mut body,
                    &[command.to_le_bytes(), value.to_le_bytes()].concat(),
                );
                plan.set_body(*side, body);
                plan.expect = refused(*side);
            }
            RtsMutation::ExtraCommand(side) => {
                let mut body = opening(*side);
                extend_pdu(&mut body, &7u32.to_le_bytes());
                plan.set_body(*side, body);
                plan.expect = refused(*side);
            }
            RtsMutation::Truncate(side, keep) => {
                let mut body = opening(*side);
                body.truncate(keep % body.len());
                let request = plan.request(*side);
                request.body = body;
                request.cut = true;
                // The body ends short of its length: the adapter answers 400, or hyper
                // closes the half-closed connection first.
                plan.expect = Expect::Refused {
                    side: *side,
                    statuses: &[400],
                    or_close: true,
                };
            }
            RtsMutation::LengthTooSmall(side, length)
            | RtsMutation::LengthTooLarge(side, length) => {
                plan.request(*side).length = *length;
                plan.expect = refused(*side);
            }
            RtsMutation::InLengthShort(extra) => {
                if let Some(r) = plan.inbound.as_mut() {
                    r.length = CONN_B1_LEN + extra;
                }
                // CONN/B1's ChannelLifetime (IN_LIFETIME) runs past what the request
                // declares: the proxy refuses the IN channel at CONN/B1 ([MS-RPCH]
                // 2.2.3.5.5, ProxyError::ChannelLifetime).
                plan.expect = refused(Side::In);
            }
            RtsMutation::OutLengthLonger(extra) => {
                if let Some(r) = plan.out.as_mut() {
                    r.length = CONN_A1_LEN + extra;
                }
            }
            RtsMutation::UnknownCookieIn => {
                plan.out = None;
                plan.expect = Expect::Held;
            }
            RtsMutation::Silent(side) => {
                plan.request(*side).body.clear();
                plan.expect = Expect::Held;
            }
            RtsMutation::SecondChannel(side) => {
                // Fresh channel cookies, the live virtual connection's cookie.
                let fresh = RpchCookies::from_seed(self.number ^ 0x5345_434f_4e44);
                let body = match side {
                    Side::Out => conn_a1((
                        RTS_VERSION,
                        c.virtual_connection,
                        fresh.out_channel,
                        OUT_WINDOW,
                    )),
                    Side::In => conn_b1((
                        RTS_VERSION,
                        c.virtual_connection,
                        fresh.in_channel,
                        IN_LIFETIME,
                        KEEPALIVE_MS,
                        c.association_group,
                    )),
                };
                plan.inject = Some(Inject::SecondChannel(*side, body));
                plan.then = Then::Refused(*side);
                plan.at = *at;
            }
            RtsMutation::Ack(wrong) => {
                plan.inject = Some(Inject::Ack(*wrong));
                plan.then = match wrong {
                    AckMutation::UnknownChannel => Then::Served,
                    _ => Then::Ends,
                };
                plan.at = *at;
            }
            RtsMutation::Ping => {
                plan.inject = Some(Inject::InOctets(encode(&RtsPdu::ping())));
                plan.then = Then::Pong;
                plan.at = *at;
            }
            RtsMutation::Garbage(octets) => {
                plan.inject = Some(Inject::InOctets(octets.clone()));
                plan.then = Then::Ends;
                plan.at = *at;
            }
            RtsMutation::UnknownRts(layout) => {
                let pdu = if *layout {
                    encode(&RtsPdu::conn_a3(120_000))
                } else {
                    let mut pdu = encode(&RtsPdu::new(RtsFlags::NONE, Vec::new()));
                    extend_pdu(&mut pdu, &[0xffu8; 8]);
                    pdu
                };
                plan.inject = Some(Inject::InOctets(pdu));
                plan.then = Then::Ends;
                plan.at = *at;
            }
            RtsMutation::Close(side) => {
                plan.inject = Some(Inject::Close(*side));
                plan.then = Then::Ends;
                plan.at = *at;
            }
        }
        debug_assert_eq!(mutation.after_open(), plan.inject.is_some());
        plan
    }
}

type A1 = (u32, RtsCookie, RtsCookie, u32);
type B1 = (u32, RtsCookie, RtsCookie, u32, u32, RtsCookie);

fn conn_a1((version, vc, out, window): A1) -> Vec<u8> {
    encode(&RtsPdu::conn_a1(version, vc, out, window))
}

fn conn_b1((version, vc, inc, lifetime, keepalive, group): B1) -> Vec<u8> {
    encode(&RtsPdu::conn_b1(
        version, vc, inc, lifetime, keepalive, group,
    ))
}

fn encode(pdu: &RtsPdu) -> Vec<u8> {
    // The PDUs built here are under 128 octets.
    pdu.encode().unwrap_or_default()
}

/// Appends a command's octets to an encoded RTS PDU: frag_length (octets 8-9) and
/// NumberOfCommands (18-19) grow with it ([MS-RPCH] 2.2.3.6).
fn extend_pdu(pdu: &mut Vec<u8>, command: &[u8]) {
    pdu.extend_from_slice(command);
    let len = u16::try_from(pdu.len()).unwrap_or(u16::MAX);
    if let Some(slot) = pdu.get_mut(8..10) {
        slot.copy_from_slice(&len.to_le_bytes());
    }
    if let Some(slot) = pdu.get_mut(18..20) {
        let count = u16::from_le_bytes([slot[0], slot[1]]).wrapping_add(1);
        slot.copy_from_slice(&count.to_le_bytes());
    }
}

/// One channel's request: its declared Content-Length, the body octets sent at once,
/// whether the client then half-closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRequest {
    pub length: u64,
    pub body: Vec<u8>,
    pub cut: bool,
}

impl ChannelRequest {
    fn new(length: u64, body: Vec<u8>) -> ChannelRequest {
        ChannelRequest {
            length,
            body,
            cut: false,
        }
    }
}

/// What the proxy must do while the channels open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// OUT 200, CONN/A3, CONN/C2: the virtual connection opens.
    Open,
    /// This channel is answered with one of these statuses (or closed, if `or_close`).
    Refused {
        side: Side,
        statuses: &'static [u16],
        or_close: bool,
    },
    /// Nothing but an OUT 200 and CONN/A3 within the silence wait: the proxy waits for a
    /// channel that does not come.
    Held,
}

/// What the proxy must do after the injection, once open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// The session goes on and every PDU is answered (or, for a DCE/RPC case, as the
    /// `dcerpc://` checks say).
    Served,
    /// The second channel of this side is refused with 400; the session goes on.
    Refused(Side),
    /// The virtual connection ends: the OUT channel's body ends, the IN channel gets a
    /// status or closes.
    Ends,
    /// A Ping comes back on the OUT channel; the session goes on.
    Pong,
}

/// What the lab does before the session's PDU `at`, once open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inject {
    /// These octets on the IN channel.
    InOctets(Vec<u8>),
    /// A FlowControlAck made wrong from what the OUT channel carried so far.
    Ack(AckMutation),
    /// A new channel of this side whose body is this opening PDU.
    SecondChannel(Side, Vec<u8>),
    /// This channel closes.
    Close(Side),
}

/// A case's channels and the proxy's expected behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelsPlan {
    /// None: this channel is not opened.
    pub out: Option<ChannelRequest>,
    pub inbound: Option<ChannelRequest>,
    pub expect: Expect,
    pub then: Then,
    pub inject: Option<Inject>,
    /// Before which of the session's PDUs the injection goes (`usize::MAX`: none).
    pub at: usize,
}

impl ChannelsPlan {
    fn request(&mut self, side: Side) -> &mut ChannelRequest {
        let slot = match side {
            Side::Out => &mut self.out,
            Side::In => &mut self.inbound,
        };
        slot.get_or_insert_with(|| ChannelRequest::new(0, Vec::new()))
    }

    fn set_body(&mut self, side: Side, body: Vec<u8>) {
        let request = self.request(side);
        // A longer opening PDU is declared as such on the OUT channel (whose length is
        // its body's); the IN channel declares its lifetime anyway.
        if side == Side::Out {
            request.length = body.len() as u64;
        }
        request.body = body;
    }

    fn out_body(&mut self, body: Vec<u8>) {
        if let Some(r) = self.out.as_mut() {
            r.body = body;
        }
    }

    fn in_body(&mut self, body: Vec<u8>) {
        if let Some(r) = self.inbound.as_mut() {
            r.body = body;
        }
    }
}

/// What the OUT channel's octets came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutEvent {
    /// CONN/A3.
    A3,
    /// CONN/C2: the virtual connection is open.
    Opened,
    /// A Ping from the proxy.
    Ping,
    /// A FlowControlAck for the IN channel.
    InAck,
    /// What the session made of an RPC PDU.
    Rpc(Heard),
    /// Octets that do not frame, or an RTS PDU the proxy does not send.
    Malformed(String),
}

/// The client's reading of the OUT channel's body, around the case's session: RTS PDUs
/// apart, RPC PDUs to the session, FlowControlAcks for the OUT channel's window
/// ([MS-RPCH] 3.2.2.4.1: once half the window is consumed).
pub struct RpchConversation {
    pub session: RpcSession,
    framer: PduFramer,
    out_cookie: RtsCookie,
    bytes_received: u64,
    acked: u64,
}

impl RpchConversation {
    pub fn new(session: RpcSession, cookies: &RpchCookies) -> RpchConversation {
        RpchConversation {
            session,
            framer: PduFramer::new(u16::MAX),
            out_cookie: cookies.out_channel,
            bytes_received: 0,
            acked: 0,
        }
    }

    /// RPC octets received on the OUT channel.
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    /// Takes OUT channel octets: the events, and a FlowControlAck to send on the IN
    /// channel when one is due (empty otherwise).
    pub fn out_data(&mut self, bytes: &[u8], events: &mut Vec<OutEvent>) -> Vec<u8> {
        let mut frames = Vec::new();
        let framed = self.framer.push_frames(bytes, &mut frames);
        for frame in frames {
            events.push(self.on_frame(&frame));
        }
        if let Err(e) = framed {
            events.push(OutEvent::Malformed(e.to_string()));
        }
        if self.bytes_received - self.acked >= u64::from(OUT_WINDOW / 2) {
            self.ack()
        } else {
            Vec::new()
        }
    }

    fn on_frame(&mut self, frame: &[u8]) -> OutEvent {
        if PacketType(frame.get(2).copied().unwrap_or_default()) != PacketType::RTS {
            self.bytes_received += frame.len() as u64;
            return OutEvent::Rpc(self.session.heard(frame));
        }
        let pdu = match RtsPdu::decode(frame) {
            Ok((pdu, _)) => pdu,
            Err(e) => return OutEvent::Malformed(e.to_string()),
        };
        if pdu.is(RtsPduKind::ConnA3) {
            OutEvent::A3
        } else if pdu.is(RtsPduKind::ConnC2) {
            OutEvent::Opened
        } else if pdu.is(RtsPduKind::Ping) {
            OutEvent::Ping
        } else if matches!(pdu.as_flow_control_ack(), Some((None, _))) {
            OutEvent::InAck
        } else {
            OutEvent::Malformed(format!("an RTS PDU no proxy sends a client: {pdu:?}"))
        }
    }

    /// A FlowControlAck for everything received, for the OUT channel (2.2.4.51).
    pub fn ack(&mut self) -> Vec<u8> {
        self.acked = self.bytes_received;
        self.ack_of(
            FlowControlAck {
                bytes_received: u32::try_from(self.bytes_received).unwrap_or(u32::MAX),
                available_window: OUT_WINDOW,
                channel_cookie: self.out_cookie,
            },
            ForwardDestination::OUT_PROXY,
        )
    }

    fn ack_of(&self, ack: FlowControlAck, to: ForwardDestination) -> Vec<u8> {
        encode(&RtsPdu::flow_control_ack_with_destination(to, ack))
    }

    /// The wrong FlowControlAck of [`Inject::Ack`], from what was received so far.
    pub fn wrong_ack(&self, wrong: AckMutation) -> Vec<u8> {
        let received = u32::try_from(self.bytes_received).unwrap_or(u32::MAX);
        let mut ack = FlowControlAck {
            bytes_received: received,
            available_window: OUT_WINDOW,
            channel_cookie: self.out_cookie,
        };
        let mut to = ForwardDestination::OUT_PROXY;
        match wrong {
            AckMutation::TooManyReceived(more) => {
                ack.bytes_received = received.saturating_add(more.max(1));
            }
            AckMutation::WindowTooLarge(w) => ack.available_window = w.max(OUT_WINDOW + 1),
            AckMutation::UnknownChannel => ack.channel_cookie = RtsCookie::NIL,
            AckMutation::Destination(d) => {
                to = ForwardDestination(if d == ForwardDestination::OUT_PROXY.0 {
                    0
                } else {
                    d
                });
            }
        }
        self.ack_of(ack, to)
    }
}

/// A finding's report: the plan, what happened, every channel event in order (`OUT>`
/// and `IN>` what the lab sent, `OUT<` and `IN<` what came back, in hex or as a status
/// line).
pub fn report(seed: u64, case: &RpchCase, outcome: &str, detail: &str, log: &[String]) -> String {
    let mut out = format!(
        "# harness fuzz rpch: seed {seed} case {} ({outcome}: {detail})\n\
         # interface {:?}, {} ({})\n\
         # `harness fuzz --target rpch://HOST:PORT --seed {seed} --case {} --count 1` plays\n\
         # this plan again (the same cookies; the NTLM legs answer the proxy's challenge)\n",
        case.number,
        case.interface,
        case.kind(),
        case.describe(),
        case.number
    );
    for line in log {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A log line of octets: `OUT> 05000014...`.
pub fn log_octets(what: &str, bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{what} {hex}")
}

#[cfg(test)]
mod tests {
    use super::super::dcerpc::tests::creds;
    use super::*;
    use crate::rpch::{ChannelId, HttpStatus, ProxyConfig, ProxyOutput, RpcProxy};
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn case_with(mutation: RtsMutation) -> RpchCase {
        RpchCase {
            number: 7,
            interface: KnownInterface::Rfr,
            auth: None,
            cookies: RpchCookies::from_seed(7),
            layer: Layer::Rts { mutation, at: 1 },
        }
    }

    #[test]
    fn plans_are_fixed_by_seed_and_cover_every_kind() {
        assert_eq!(
            RpchCase::plan(1, 57, KnownInterface::Rfr),
            RpchCase::plan(1, 57, KnownInterface::Rfr)
        );
        assert_ne!(
            RpchCase::plan(1, 57, KnownInterface::Rfr).cookies,
            RpchCase::plan(2, 57, KnownInterface::Rfr).cookies
        );
        let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
        for n in 0..200 {
            *kinds
                .entry(RpchCase::plan(1, n, KnownInterface::Rfr).kind())
                .or_default() += 1;
        }
        for kind in RtsMutation::KINDS {
            assert!(kinds.contains_key(kind), "{kind}: {kinds:?}");
        }
        let rpc: u64 = kinds
            .iter()
            .filter(|(k, _)| k.starts_with("rpc-"))
            .map(|(_, n)| n)
            .sum();
        // 4 in 10 of the cases, every dcerpc:// mutation among them.
        assert!((60..=100).contains(&rpc), "{rpc}: {kinds:?}");
        assert_eq!(kinds.keys().filter(|k| k.starts_with("rpc-")).count(), 11);
    }

    #[test]
    fn a_dcerpc_case_is_the_dcerpc_fuzzers_plan_in_clean_channels() {
        let case = (0..50)
            .map(|n| RpchCase::plan(3, n, KnownInterface::Epm))
            .find(|c| matches!(c.layer, Layer::Rpc(_)))
            .expect("a DCE/RPC case");
        let Layer::Rpc(rpc) = &case.layer else {
            unreachable!()
        };
        assert_eq!(*rpc, RpcCase::plan(3, case.number, KnownInterface::Epm));
        let plan = case.channels();
        assert_eq!(
            (plan.expect, plan.then, plan.inject),
            (Expect::Open, Then::Served, None)
        );
        let out = plan.out.expect("an OUT channel");
        assert_eq!((out.length, out.body.len(), out.cut), (76, 76, false));
        let (a1, _) = RtsPdu::decode(&out.body).unwrap();
        let a1 = a1.as_conn_a1().expect("CONN/A1");
        assert_eq!(
            a1.virtual_connection_cookie,
            case.cookies.virtual_connection
        );
        assert_eq!(a1.out_channel_cookie, case.cookies.out_channel);
        assert_eq!((a1.version, a1.receive_window_size), (1, OUT_WINDOW));
        let inbound = plan.inbound.expect("an IN channel");
        assert_eq!(inbound.length, u64::from(IN_LIFETIME));
        let (b1, _) = RtsPdu::decode(&inbound.body).unwrap();
        let b1 = b1.as_conn_b1().expect("CONN/B1");
        assert_eq!(
            b1.virtual_connection_cookie,
            case.cookies.virtual_connection
        );
        assert_eq!(b1.association_group_id, case.cookies.association_group);
        // The session is the dcerpc:// case's: its first PDU is the same plan's bind.
        let mut ours = case.session(&creds()).unwrap();
        let mut theirs = RpcSession::for_case(rpc, &creds()).unwrap();
        let (a, b) = (ours.next_pdu().unwrap(), theirs.next_pdu().unwrap());
        assert_eq!(a.mutated, b.mutated);
        assert_eq!(a.bytes.len(), b.bytes.len());
    }

    #[test]
    fn opening_mutations_change_what_they_name() {
        let plan = case_with(RtsMutation::Field(Side::Out, OpeningField::Version(7))).channels();
        let (a1, _) = RtsPdu::decode(&plan.out.as_ref().unwrap().body).unwrap();
        assert_eq!(a1.as_conn_a1().unwrap().version, 7);
        assert_eq!(
            plan.expect,
            Expect::Refused {
                side: Side::Out,
                statuses: &[400],
                or_close: false
            }
        );
        let plan = case_with(RtsMutation::UnknownCommand(Side::Out, 99, 5)).channels();
        let out = plan.out.unwrap();
        assert_eq!((out.length, out.body.len()), (84, 84));
        assert_eq!(
            RtsPdu::decode(&out.body).unwrap_err(),
            harness_wire::rpch::RtsError::UnknownCommand(harness_wire::rpch::RtsCommandType(99))
        );
        let plan = case_with(RtsMutation::Truncate(Side::In, 110)).channels();
        let inbound = plan.inbound.unwrap();
        assert_eq!((inbound.body.len(), inbound.cut), (6, true));
        let plan = case_with(RtsMutation::LengthTooSmall(Side::In, 50)).channels();
        assert_eq!(plan.inbound.unwrap().length, 50);
        let plan = case_with(RtsMutation::UnknownCookieIn).channels();
        assert_eq!((plan.out, plan.expect), (None, Expect::Held));
        let plan = case_with(RtsMutation::SecondChannel(Side::Out)).channels();
        let Some(Inject::SecondChannel(Side::Out, body)) = &plan.inject else {
            panic!("{plan:?}")
        };
        let (a1, _) = RtsPdu::decode(body).unwrap();
        let a1 = a1.as_conn_a1().unwrap();
        let cookies = RpchCookies::from_seed(7);
        assert_eq!(a1.virtual_connection_cookie, cookies.virtual_connection);
        assert_ne!(a1.out_channel_cookie, cookies.out_channel);
        assert_eq!((plan.then, plan.at), (Then::Refused(Side::Out), 1));
    }

    /// Plays a plan's opening against the sans-IO proxy: the status each channel got
    /// (None: still open), and whether CONN/C2 went out.
    fn open_in_proxy(
        plan: &ChannelsPlan,
    ) -> (Option<Option<HttpStatus>>, Option<Option<HttpStatus>>, bool) {
        let mut proxy = RpcProxy::new(ProxyConfig::default());
        let now = Duration::ZERO;
        let (out_id, in_id) = (ChannelId(1), ChannelId(2));
        if let Some(r) = &plan.out {
            let _ = proxy.out_channel_opened(now, out_id, "MAIL:6004", r.length);
            let _ = proxy.channel_data(now, out_id, &r.body);
        }
        if let Some(r) = &plan.inbound {
            let _ = proxy.in_channel_opened(now, in_id, "MAIL:6004", r.length);
            let _ = proxy.channel_data(now, in_id, &r.body);
        }
        let (mut out_status, mut in_status, mut c2) = (None, None, false);
        while let Some(o) = proxy.poll_output() {
            match o {
                ProxyOutput::CloseChannel { channel, status } if channel == out_id => {
                    out_status = Some(status)
                }
                ProxyOutput::CloseChannel { channel, status } if channel == in_id => {
                    in_status = Some(status)
                }
                ProxyOutput::Write { bytes, .. } => {
                    c2 |= RtsPdu::decode(&bytes).is_ok_and(|(p, _)| p.is(RtsPduKind::ConnC2))
                }
                _ => {}
            }
        }
        (out_status, in_status, c2)
    }

    #[test]
    fn the_expectations_are_what_the_proxy_core_does() {
        let mut checked: BTreeMap<&str, u32> = BTreeMap::new();
        for n in 0..400 {
            let case = RpchCase::plan(5, n, KnownInterface::Rfr);
            let plan = case.channels();
            // A body cut short is the adapter's to refuse (the request ends early).
            if plan.out.iter().chain(&plan.inbound).any(|r| r.cut) {
                continue;
            }
            let got = open_in_proxy(&plan);
            let bad = Some(Some(HttpStatus::BAD_REQUEST));
            match plan.expect {
                Expect::Open => assert_eq!(got, (None, None, true), "case {n}: {case:?}"),
                Expect::Held => assert_eq!(got, (None, None, false), "case {n}: {case:?}"),
                Expect::Refused {
                    side: Side::Out, ..
                } => {
                    assert_eq!((got.0, got.2), (bad, false), "case {n}: {case:?}")
                }
                Expect::Refused { side: Side::In, .. } => {
                    assert_eq!((got.1, got.2), (bad, false), "case {n}: {case:?}")
                }
            }
            *checked
                .entry(match plan.expect {
                    Expect::Open => "open",
                    Expect::Held => "held",
                    Expect::Refused { .. } => "refused",
                })
                .or_default() += 1;
        }
        assert!(checked.values().all(|n| *n >= 20), "{checked:?}");
    }

    #[test]
    fn the_conversation_reads_the_proxys_opening_and_acks_its_window() {
        let case = case_with(RtsMutation::Ping);
        let mut conv = RpchConversation::new(case.session(&creds()).unwrap(), &case.cookies);
        let mut stream = encode(&RtsPdu::conn_a3(120_000));
        stream.extend(encode(&RtsPdu::conn_c2(1, 0x4_0000, 120_000)));
        stream.extend(encode(&RtsPdu::ping()));
        let mut events = Vec::new();
        // Split mid-PDU: the framer joins the halves.
        let ack = conv.out_data(&stream[..30], &mut events);
        assert!(ack.is_empty());
        conv.out_data(&stream[30..], &mut events);
        assert_eq!(events, vec![OutEvent::A3, OutEvent::Opened, OutEvent::Ping]);
        // Past half the window, an ack for all of it, for the OUT channel's cookie.
        let mut fake = vec![0u8; 0];
        for _ in 0..9 {
            // A fault PDU of 4000 octets for call 1: RPC octets the session refuses.
            let mut pdu = vec![5, 0, 3, 3, 0x10, 0, 0, 0];
            pdu.extend_from_slice(&4000u16.to_le_bytes());
            pdu.extend_from_slice(&[0, 0, 1, 0, 0, 0]);
            pdu.resize(4000, 0);
            fake.extend(pdu);
        }
        let mut events = Vec::new();
        let ack = conv.out_data(&fake, &mut events);
        assert_eq!(conv.bytes_received(), 36_000);
        let (ack, _) = RtsPdu::decode(&ack).unwrap();
        let (to, ack) = ack.as_flow_control_ack().unwrap();
        assert_eq!(to, Some(ForwardDestination::OUT_PROXY));
        assert_eq!(
            (ack.bytes_received, ack.available_window, ack.channel_cookie),
            (36_000, OUT_WINDOW, case.cookies.out_channel)
        );
        let wrong = conv.wrong_ack(AckMutation::TooManyReceived(5));
        let (wrong, _) = RtsPdu::decode(&wrong).unwrap();
        assert_eq!(
            wrong.as_flow_control_ack().unwrap().1.bytes_received,
            36_005
        );
        let wrong = conv.wrong_ack(AckMutation::Destination(3));
        let (wrong, _) = RtsPdu::decode(&wrong).unwrap();
        assert_eq!(
            wrong.as_flow_control_ack().unwrap().0,
            Some(ForwardDestination(0))
        );
    }
}
