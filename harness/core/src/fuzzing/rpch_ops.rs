//! `rpch_proxy_ops`: structured channel events on two virtual connections through one
//! [`RpcProxy`] in front of the lab's endpoint mapper (port 593, in process through
//! [`InProcessBackends`]).
//!
//! The OUT channels' Content-Length is 4 KiB, so they recycle (OUT_R2) every few calls.
//!
//! Virtual connection 0 is clean: it is connected (CONN/A1, CONN/B1) before the
//! operations, and its script (an unauthenticated bind, then the endpoint mapper's
//! known-good calls) moves one step at each `Clean` operation and is finished after the
//! last one; it answers every OUT recycling step and recycles its IN channel (IN_R2) at
//! each `CleanRecycleIn`. Virtual connection 1 gets whatever the input says: channels
//! opened with any target and declared length, CONN/A1 and CONN/B1 with any window and
//! version or with connection 0's cookie, binds, calls, FlowControlAcks of any numbers
//! and cookies, pings, keep-alives, arbitrary RTS PDUs ([`arbitrary_rts_pdu`]) and raw
//! octets on either channel, closes, its own recycling steps in any order (successor
//! OUT and IN channels, OUT_R2/C1 and A7, IN_R2/A5, recycling requests naming connection
//! 0), time passing (at most 200 s in all, under the idle limit; the proxy pings a quiet
//! OUT channel after 60 s).
//!
//! Invariants: no panic; the proxy holds no more than its bounds allow (channel framers,
//! queues, held PDUs) after every operation; writes go only on OUT channels whose
//! response started and never after their close; connection 0 is never ended, only its
//! recycled predecessors are closed (without a status), writes reach it only on its
//! OUT channel of the moment, its OUT octets always parse, and each of its calls gets
//! exactly one response.

use std::time::Duration;

use arbitrary::Unstructured;

use super::ops::{byte, choice, default_world, flag, raw};
use super::rpc_ops::lab_config;
use super::rts_ops::arbitrary_rts_pdu;
use crate::dcerpc::client::{ClientAssociation, ClientConfig, ClientEvent};
use crate::dcerpc::endpoints::RpcEndpoints;
use crate::dcerpc::known_calls::{primary_context, KnownInterface};
use crate::rpch::{
    ChannelId, InProcessBackends, ProxyConfig, ProxyOutput, RpcProxy, RpchClient, RpchCookies,
    RpchEvent,
};
use harness_wire::rpch::{FlowControlAck, RecycleCookies, RtsCookie, RtsPdu};

/// Operations played per input at most.
pub const MAX_OPS: usize = 48;
/// Time an input may let pass in all: under the idle limit (twice the 120 s connection
/// timeout), so the clean connection never idles out; past the 60 s of a proxy ping.
const MAX_ELAPSED: Duration = Duration::from_secs(200);
const MAX_FRAGMENT: usize = u16::MAX as usize;

const TARGETS: [&str; 4] = ["mail:593", "mail:6001", "mail:7", "mail"];
const LENGTHS: [u64; 6] = [76, 104, 1 << 30, 200, 0, 120];
const WINDOWS: [u32; 4] = [0x4_0000, 0x2000, 0x1fff, 0];

/// A channel of virtual connection 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Out,
    In,
}

/// One operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Connection 0's next step.
    Clean,
    Open {
        which: Which,
        target: u8,
        length: u8,
    },
    ConnA1 {
        steal: bool,
        window: u8,
    },
    ConnB1 {
        steal: bool,
        version: u8,
    },
    Bind,
    Call(u8),
    Ack {
        bytes: u32,
        window: u32,
        right: bool,
    },
    Ping,
    KeepAlive(u32),
    Rts {
        which: Which,
        seed: Vec<u8>,
    },
    Raw {
        which: Which,
        bytes: Vec<u8>,
    },
    Close(Which),
    Wait(u8),
    /// Connection 0 replaces its IN channel.
    CleanRecycleIn,
    /// A recycling step of connection 1 ([`Run::recycle`]).
    Recycle(u8),
}

fn which(u: &mut Unstructured<'_>) -> Which {
    if flag(u) {
        Which::In
    } else {
        Which::Out
    }
}

fn u32_of(u: &mut Unstructured<'_>) -> u32 {
    u32::from_le_bytes([byte(u), byte(u), byte(u), byte(u)])
}

impl Op {
    pub fn read(u: &mut Unstructured<'_>) -> Op {
        match choice(u, 15) {
            0 => Op::Clean,
            1 => Op::Open {
                which: which(u),
                target: byte(u),
                length: byte(u),
            },
            2 => Op::ConnA1 {
                steal: flag(u),
                window: byte(u),
            },
            3 => Op::ConnB1 {
                steal: flag(u),
                version: byte(u),
            },
            4 => Op::Bind,
            5 => Op::Call(byte(u)),
            6 => Op::Ack {
                bytes: u32_of(u),
                window: u32_of(u),
                right: flag(u),
            },
            7 => Op::Ping,
            8 => Op::KeepAlive(u32_of(u)),
            9 => Op::Rts {
                which: which(u),
                seed: raw(u),
            },
            10 => Op::Raw {
                which: which(u),
                bytes: raw(u),
            },
            11 => Op::Close(which(u)),
            12 => Op::Wait(byte(u)),
            13 => Op::CleanRecycleIn,
            _ => Op::Recycle(byte(u)),
        }
    }

    /// The octets [`Op::read`] takes back as this operation (seeds).
    pub fn write(&self, s: &mut Vec<u8>) {
        let w = |w: &Which| u8::from(*w == Which::In);
        let bytes = |s: &mut Vec<u8>, b: &[u8]| {
            s.push(b.len().min(255) as u8);
            s.extend_from_slice(&b[..b.len().min(255)]);
        };
        match self {
            Op::Clean => s.push(0),
            Op::Open {
                which,
                target,
                length,
            } => s.extend_from_slice(&[1, w(which), *target, *length]),
            Op::ConnA1 { steal, window } => s.extend_from_slice(&[2, u8::from(*steal), *window]),
            Op::ConnB1 { steal, version } => s.extend_from_slice(&[3, u8::from(*steal), *version]),
            Op::Bind => s.push(4),
            Op::Call(i) => s.extend_from_slice(&[5, *i]),
            Op::Ack {
                bytes,
                window,
                right,
            } => {
                s.push(6);
                s.extend_from_slice(&bytes.to_le_bytes());
                s.extend_from_slice(&window.to_le_bytes());
                s.push(u8::from(*right));
            }
            Op::Ping => s.push(7),
            Op::KeepAlive(v) => {
                s.push(8);
                s.extend_from_slice(&v.to_le_bytes());
            }
            Op::Rts { which, seed } => {
                s.extend_from_slice(&[9, w(which)]);
                bytes(s, seed);
            }
            Op::Raw { which, bytes: b } => {
                s.extend_from_slice(&[10, w(which)]);
                bytes(s, b);
            }
            Op::Close(which) => s.extend_from_slice(&[11, w(which)]),
            Op::Wait(secs) => s.extend_from_slice(&[12, *secs]),
            Op::CleanRecycleIn => s.push(13),
            Op::Recycle(step) => s.extend_from_slice(&[14, *step]),
        }
    }
}

/// A whole input from operations.
pub fn seed(ops: &[Op]) -> Vec<u8> {
    let mut s = Vec::new();
    for op in ops {
        op.write(&mut s);
    }
    s
}

/// One client side: the client, its channels, what it saw.
struct Side {
    client: RpchClient,
    out: Option<ChannelId>,
    inc: Option<ChannelId>,
    /// Successor channels while they open, and every channel the side ever had.
    out_successor: Option<ChannelId>,
    in_successor: Option<ChannelId>,
    past: Vec<ChannelId>,
    started: Vec<ChannelId>,
    closed: Vec<ChannelId>,
    calls: Vec<u32>,
    responses: Vec<u32>,
    broken: bool,
}

impl Side {
    fn new(seed: u64) -> Side {
        Side {
            client: RpchClient::new(
                RpchCookies::from_seed(seed),
                0x4_0000,
                true,
                ClientAssociation::new(ClientConfig::default()),
            ),
            out: None,
            inc: None,
            out_successor: None,
            in_successor: None,
            past: Vec::new(),
            started: Vec::new(),
            closed: Vec::new(),
            calls: Vec::new(),
            responses: Vec::new(),
            broken: false,
        }
    }

    fn owns(&self, channel: ChannelId) -> bool {
        [self.out, self.inc, self.out_successor, self.in_successor].contains(&Some(channel))
            || self.past.contains(&channel)
            || self.started.contains(&channel)
    }
}

/// What one input amounted to (the seeds' tests look at it).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub clean_responses: usize,
    /// Connection 0's channels replaced (OUT, IN) and the proxy's pings on its OUT channel.
    pub clean_out_recycles: u64,
    pub clean_in_recycles: u64,
    pub clean_pings: usize,
    /// Recycling steps the proxy sent connection 1 (OUT_R2/A2, A6, B3, IN_R2/A4).
    pub victim_recycle_steps: usize,
    pub victim_opened: bool,
    pub victim_responses: usize,
    pub victim_ended: bool,
}

struct Run {
    proxy: RpcProxy,
    backends: InProcessBackends,
    now: Duration,
    elapsed: Duration,
    sides: [Side; 2],
    next_channel: u64,
    clean_pings: usize,
    victim_recycle_steps: usize,
    victim_ended: bool,
    victim_opened: bool,
    /// Every channel ever closed, so no write may follow.
    closed: Vec<ChannelId>,
}

fn config() -> ProxyConfig {
    ProxyConfig {
        max_virtual_connections: 4,
        // More than an input can open (MAX_OPS), so connection 1 cannot take the room
        // connection 0's successor channels need.
        max_channels: 128,
        max_out_queue: 64 << 10,
        // Recycling from 2 KiB written on: every few endpoint mapper calls.
        out_content_length: 0x1000,
        ..ProxyConfig::default()
    }
}

impl Run {
    fn channel(&mut self) -> ChannelId {
        self.next_channel += 1;
        ChannelId(self.next_channel)
    }

    /// Plays outputs until nothing moves, checking every one.
    fn settle(&mut self) {
        loop {
            let outputs = self.backends.pump(&mut self.proxy, self.now);
            if outputs.is_empty() {
                break;
            }
            for output in outputs {
                self.deliver(output);
            }
        }
        let cfg = self.proxy.config();
        let window = cfg.in_receive_window as usize;
        let bound = self.proxy.channels() * MAX_FRAGMENT
            + self.proxy.virtual_connections() * (cfg.max_out_queue + 2 * MAX_FRAGMENT + window);
        assert!(
            self.proxy.buffered() <= bound,
            "{} held",
            self.proxy.buffered()
        );
        assert!(self.proxy.virtual_connections() <= cfg.max_virtual_connections);
        assert!(self.proxy.channels() <= cfg.max_channels);
    }

    fn side_of(&self, channel: ChannelId) -> Option<usize> {
        (0..2).find(|&i| self.sides[i].owns(channel))
    }

    fn deliver(&mut self, output: ProxyOutput) {
        match output {
            ProxyOutput::StartOutResponse { channel, .. } => {
                assert!(!self.closed.contains(&channel));
                if let Some(i) = self.side_of(channel) {
                    assert!(!self.sides[i].started.contains(&channel));
                    self.sides[i].started.push(channel);
                }
            }
            ProxyOutput::Write { channel, bytes } => {
                assert!(!self.closed.contains(&channel), "a write after the close");
                let Some(i) = self.side_of(channel) else {
                    panic!("a write on a channel no side opened");
                };
                let side = &mut self.sides[i];
                assert!(
                    side.started.contains(&channel),
                    "a write before the response"
                );
                if i == 0 {
                    assert_eq!(Some(channel), side.out, "a write off the OUT channel");
                }
                let mut events = Vec::new();
                let received = side.client.receive_out(&bytes, &mut events);
                if i == 0 {
                    assert!(received.is_ok(), "{received:?}");
                }
                let mut steps = Vec::new();
                for event in events {
                    match event {
                        RpchEvent::Rpc(ClientEvent::Response { call_id, .. }) => {
                            side.responses.push(call_id)
                        }
                        RpchEvent::ConnC2 { .. } if i == 1 => self.victim_opened = true,
                        RpchEvent::Ping if i == 0 => self.clean_pings += 1,
                        RpchEvent::OutR2A2
                        | RpchEvent::OutR2A6
                        | RpchEvent::OutR2B3
                        | RpchEvent::InR2A4 => steps.push(event),
                        _ => {}
                    }
                }
                match received {
                    Ok(ack) if !ack.is_empty() => {
                        if let Some(inc) = self.sides[i].inc {
                            let _ = self.proxy.channel_data(self.now, inc, &ack);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => self.sides[i].broken = true,
                }
                for step in steps {
                    self.recycle_step(i, &step);
                }
            }
            ProxyOutput::CloseChannel { channel, status } => {
                assert!(!self.closed.contains(&channel), "closed twice");
                self.closed.push(channel);
                if let Some(i) = self.side_of(channel) {
                    let clean = &self.sides[0];
                    if i == 0 {
                        assert!(
                            clean.past.contains(&channel) && status.is_none(),
                            "the clean connection's channel closed"
                        );
                    } else {
                        self.sides[i].closed.push(channel);
                    }
                }
            }
            ProxyOutput::Ended { cookie, reason, .. } => {
                let clean = self.sides[0].client.rts.cookies.virtual_connection;
                assert_ne!(cookie, Some(clean), "the clean connection ended: {reason}");
                self.victim_ended = true;
            }
            other => panic!("a back-end output reached the client side: {other:?}"),
        }
    }

    fn send(&mut self, i: usize, which: Which, bytes: &[u8]) {
        let channel = match which {
            Which::Out => self.sides[i].out,
            Which::In => self.sides[i].inc,
        };
        if let Some(channel) = channel {
            let r = self.proxy.channel_data(self.now, channel, bytes);
            assert!(i == 1 || r.is_ok(), "{r:?}");
        }
        self.settle();
    }

    /// What a client does on the proxy's recycling steps: connection 0 answers each;
    /// connection 1 only reads OUT_R2/B3 (its answers are operations).
    fn recycle_step(&mut self, i: usize, event: &RpchEvent) {
        if i == 1 {
            self.victim_recycle_steps += 1;
        }
        match event {
            RpchEvent::OutR2B3 => {
                let side = &mut self.sides[i];
                if let Some(successor) = side.out_successor.take() {
                    side.past.extend(side.out);
                    side.out = Some(successor);
                }
            }
            RpchEvent::OutR2A2 if i == 0 => self.recycle(0, 0),
            RpchEvent::OutR2A6 if i == 0 => self.recycle(0, 1),
            RpchEvent::InR2A4 if i == 0 => self.recycle(0, 3),
            _ => {}
        }
    }

    /// One recycling step of side `i`, as its client makes it: 0 a successor OUT channel
    /// with OUT_R2/A3, 1 OUT_R2/C1 on it and OUT_R2/A7 on the IN channel, 2 a successor
    /// IN channel with IN_R2/A1, 3 IN_R2/A5 on the predecessor and the switch; 4 and 5
    /// new channels whose IN_R2/A1 or OUT_R2/A3 name connection 0 and side `i`'s own
    /// channels (refused alone).
    fn recycle(&mut self, i: usize, step: u8) {
        let now = self.now;
        let target = "mail:593";
        match step % 6 {
            0 => {
                let channel = self.channel();
                let opened = self.proxy.out_channel_opened(now, channel, target, 120);
                assert!(i == 1 || opened.is_ok(), "{opened:?}");
                self.sides[i].out_successor = Some(channel);
                let a3 = self.sides[i].client.rts.out_recycle_a3();
                self.data(i, channel, &a3);
            }
            1 => {
                let side = &self.sides[i];
                let Some((a7, c1)) = side.client.rts.out_recycle_a7_c1() else {
                    return;
                };
                if let Some(successor) = side.out_successor {
                    self.data(i, successor, &c1);
                }
                if let Some(inc) = self.sides[i].inc {
                    self.data(i, inc, &a7);
                }
            }
            2 => {
                let channel = self.channel();
                let opened = self.proxy.in_channel_opened(now, channel, target, 1 << 30);
                assert!(i == 1 || opened.is_ok(), "{opened:?}");
                self.sides[i].in_successor = Some(channel);
                let a1 = self.sides[i].client.rts.begin_in_recycle();
                self.data(i, channel, &a1);
            }
            3 => {
                let side = &mut self.sides[i];
                let (Some(predecessor), Some(successor)) = (side.inc, side.in_successor) else {
                    return;
                };
                let Some(a5) = side.client.rts.in_recycle_a5() else {
                    return;
                };
                side.past.push(predecessor);
                side.inc = Some(successor);
                side.in_successor = None;
                self.data(i, predecessor, &a5);
            }
            step => {
                let theirs = self.sides[0].client.rts.cookies.virtual_connection;
                let ours = &self.sides[i].client.rts.cookies;
                let cookies = RecycleCookies {
                    virtual_connection: theirs,
                    predecessor: if step == 4 {
                        ours.in_channel
                    } else {
                        ours.out_channel
                    },
                    successor: ours.association_group,
                };
                let channel = self.channel();
                let (opened, pdu) = if step == 4 {
                    let opened = self.proxy.in_channel_opened(now, channel, target, 1 << 30);
                    (opened, RtsPdu::in_r2_a1(1, cookies))
                } else {
                    let opened = self.proxy.out_channel_opened(now, channel, target, 120);
                    (opened, RtsPdu::out_r2_a3(1, cookies, 0x4_0000))
                };
                let _ = opened;
                self.sides[i].past.push(channel);
                self.data(i, channel, &pdu.encode().unwrap_or_default());
            }
        }
    }

    /// Octets on one of side `i`'s channels; connection 0's are always taken.
    fn data(&mut self, i: usize, channel: ChannelId, bytes: &[u8]) {
        let r = self.proxy.channel_data(self.now, channel, bytes);
        assert!(i == 1 || r.is_ok(), "{r:?}");
    }

    fn bind(&mut self, i: usize) {
        let contexts = [primary_context(KnownInterface::Epm)];
        if let Ok(bind) = self.sides[i].client.association.bind(&contexts, None) {
            self.send(i, Which::In, &bind);
        }
    }

    fn call(&mut self, i: usize, pick: u8) {
        let calls = KnownInterface::Epm.valid_calls();
        let (opnum, stub) = &calls[usize::from(pick) % calls.len()];
        let Ok(call) = self.sides[i].client.association.call(0, *opnum, None, stub) else {
            return;
        };
        self.sides[i].calls.push(call.call_id);
        for fragment in &call.fragments {
            self.send(i, Which::In, fragment);
        }
    }

    fn cookie(&self, steal: bool) -> RtsCookie {
        self.sides[usize::from(!steal)]
            .client
            .rts
            .cookies
            .virtual_connection
    }

    fn play(&mut self, op: Op, clean_step: &mut usize) {
        let c = &self.sides[1].client.rts.cookies;
        let (out_cookie, in_cookie, group) = (c.out_channel, c.in_channel, c.association_group);
        match op {
            Op::Clean => {
                self.clean_step(*clean_step);
                *clean_step += 1;
            }
            Op::Open {
                which,
                target,
                length,
            } => {
                let channel = self.channel();
                let target = TARGETS[usize::from(target) % TARGETS.len()];
                let length = LENGTHS[usize::from(length) % LENGTHS.len()];
                let opened = match which {
                    Which::Out => self
                        .proxy
                        .out_channel_opened(self.now, channel, target, length),
                    Which::In => self
                        .proxy
                        .in_channel_opened(self.now, channel, target, length),
                };
                let side = &mut self.sides[1];
                match which {
                    Which::Out => side.out = Some(channel),
                    Which::In => side.inc = Some(channel),
                }
                // A refused channel is closed at once (its outputs say so).
                let _ = opened;
                self.settle();
            }
            Op::ConnA1 { steal, window } => {
                let window = WINDOWS[usize::from(window) % WINDOWS.len()];
                let a1 = RtsPdu::conn_a1(1, self.cookie(steal), out_cookie, window);
                self.send(1, Which::Out, &a1.encode().unwrap_or_default());
            }
            Op::ConnB1 { steal, version } => {
                let b1 = RtsPdu::conn_b1(
                    u32::from(version % 3),
                    self.cookie(steal),
                    in_cookie,
                    1 << 30,
                    300_000,
                    group,
                );
                self.send(1, Which::In, &b1.encode().unwrap_or_default());
            }
            Op::Bind => self.bind(1),
            Op::Call(pick) => self.call(1, pick),
            Op::Ack {
                bytes,
                window,
                right,
            } => {
                let channel_cookie = if right {
                    out_cookie
                } else {
                    self.sides[0].client.rts.cookies.out_channel
                };
                let ack = FlowControlAck {
                    bytes_received: bytes,
                    available_window: window,
                    channel_cookie,
                };
                let pdu = RtsPdu::flow_control_ack(ack).encode().unwrap_or_default();
                self.send(1, Which::In, &pdu);
            }
            Op::Ping => self.send(1, Which::In, &RtsPdu::ping().encode().unwrap_or_default()),
            Op::KeepAlive(ms) => {
                let pdu = RtsPdu::keep_alive(ms).encode().unwrap_or_default();
                self.send(1, Which::In, &pdu);
            }
            Op::Rts { which, seed } => {
                if let Ok(pdu) = arbitrary_rts_pdu(&mut Unstructured::new(&seed)) {
                    self.send(1, which, &pdu.encode().unwrap_or_default());
                }
            }
            Op::Raw { which, bytes } => self.send(1, which, &bytes),
            Op::Close(which) => {
                let side = &self.sides[1];
                let channel = match which {
                    Which::Out => side.out,
                    Which::In => side.inc,
                };
                if let Some(channel) = channel {
                    self.proxy.channel_closed(self.now, channel);
                    self.closed.push(channel);
                }
                self.settle();
            }
            Op::CleanRecycleIn => {
                self.recycle(0, 2);
                self.settle();
            }
            Op::Recycle(step) => {
                self.recycle(1, step);
                self.settle();
            }
            Op::Wait(secs) => {
                let by = Duration::from_secs(u64::from(secs % 11)).min(MAX_ELAPSED - self.elapsed);
                self.elapsed += by;
                self.now += by;
                self.proxy.handle_timeout(self.now);
                self.settle();
            }
        }
    }

    /// Connection 0's script: bind, then calls.
    fn clean_step(&mut self, step: usize) {
        if step == 0 {
            self.bind(0);
            let bound = self.sides[0].client.association.is_ready();
            assert!(bound, "the clean bind was not acknowledged");
        } else {
            self.call(0, step as u8);
        }
    }
}

/// The endpoints, afresh per input (association groups and connection ids start over,
/// so an input replays the same) from the default world built once.
fn endpoints() -> Option<RpcEndpoints> {
    let world = default_world()?;
    Some(RpcEndpoints::for_world(
        &std::sync::Arc::new(world),
        &lab_config(),
    ))
}

/// Plays one input; what it reached.
pub fn run(data: &[u8]) -> Report {
    let Some(endpoints) = endpoints() else {
        return Report::default();
    };
    let mut run = Run {
        proxy: RpcProxy::new(config()),
        backends: InProcessBackends::for_endpoints(&endpoints),
        now: Duration::from_secs(1),
        elapsed: Duration::ZERO,
        sides: [Side::new(1), Side::new(2)],
        next_channel: 0,
        clean_pings: 0,
        victim_recycle_steps: 0,
        victim_ended: false,
        victim_opened: false,
        closed: Vec::new(),
    };
    // Connection 0 opens at once.
    let (out, inc) = (run.channel(), run.channel());
    let opened = run.proxy.out_channel_opened(run.now, out, "mail:593", 76);
    let opened_in = run
        .proxy
        .in_channel_opened(run.now, inc, "mail:593", 1 << 30);
    assert!(opened.is_ok() && opened_in.is_ok());
    run.sides[0].out = Some(out);
    run.sides[0].inc = Some(inc);
    let a1 = run.sides[0].client.conn_a1();
    run.send(0, Which::Out, &a1);
    let b1 = run.sides[0].client.conn_b1();
    run.send(0, Which::In, &b1);
    assert!(run.sides[0].client.is_open());

    let mut u = Unstructured::new(data);
    let mut clean_step = 0;
    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        let op = Op::read(&mut u);
        run.play(op, &mut clean_step);
    }
    // Connection 0 finishes its script: bound, and at least one call.
    while clean_step < 2 {
        run.clean_step(clean_step);
        clean_step += 1;
    }
    let clean = &run.sides[0];
    assert!(!clean.broken);
    assert!(clean.closed.is_empty());
    assert_eq!(
        clean.calls, clean.responses,
        "the clean connection's answers"
    );
    let info = run
        .proxy
        .virtual_connection(&clean.client.rts.cookies.virtual_connection);
    let info = info.expect("the clean connection lives");
    Report {
        clean_responses: clean.responses.len(),
        clean_out_recycles: info.out_recycles,
        clean_in_recycles: info.in_recycles,
        clean_pings: run.clean_pings,
        victim_recycle_steps: run.victim_recycle_steps,
        victim_opened: run.victim_opened,
        victim_responses: run.sides[1].responses.len(),
        victim_ended: run.victim_ended,
    }
}

/// Fuzz target `rpch_proxy_ops`.
pub fn rpch_proxy_ops(data: &[u8]) {
    run(data);
}

/// The seeds under `corpus/fuzz/rpch_proxy_ops/`.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    use Op::*;
    let open = |which| Open {
        which,
        target: 0,
        length: if which == Which::Out { 0 } else { 2 },
    };
    let connect = [
        open(Which::Out),
        open(Which::In),
        ConnA1 {
            steal: false,
            window: 0,
        },
        ConnB1 {
            steal: false,
            version: 1,
        },
    ];
    let with = |tail: &[Op]| {
        let mut ops = connect.to_vec();
        ops.extend_from_slice(tail);
        seed(&ops)
    };
    vec![
        (
            "victim-calls-interleaved",
            with(&[
                Clean,
                Bind,
                Clean,
                Call(0),
                Clean,
                Call(1),
                Ping,
                KeepAlive(0),
            ]),
        ),
        (
            "victim-steals-the-clean-cookie",
            seed(&[
                open(Which::Out),
                ConnA1 {
                    steal: true,
                    window: 0,
                },
                Clean,
                open(Which::In),
                ConnB1 {
                    steal: true,
                    version: 1,
                },
                Clean,
            ]),
        ),
        (
            "victim-bad-ack-and-garbage",
            with(&[
                Bind,
                Clean,
                Ack {
                    bytes: 1 << 20,
                    window: 0x4_0000,
                    right: true,
                },
                Clean,
            ]),
        ),
        (
            "victim-raw-before-b1",
            seed(&[
                open(Which::In),
                Raw {
                    which: Which::In,
                    bytes: vec![5, 0, 11, 3, 0x10, 0, 0, 0, 16, 0, 0, 0, 1, 0, 0, 0],
                },
                Clean,
                Clean,
            ]),
        ),
        (
            "victim-unpaired-times-out",
            seed(&[
                open(Which::In),
                ConnB1 {
                    steal: false,
                    version: 1,
                },
                Clean,
                Wait(10),
                Wait(10),
                Wait(10),
                Wait(10),
                Clean,
            ]),
        ),
        (
            "victim-closes-and-rts",
            with(&[
                Rts {
                    which: Which::In,
                    seed: vec![7; 40],
                },
                Clean,
                Close(Which::Out),
                Clean,
            ]),
        ),
        (
            "clean-recycles-both-channels",
            seed(&[
                Clean,
                Clean,
                Clean,
                Clean,
                CleanRecycleIn,
                Clean,
                Clean,
                Clean,
                Clean,
                CleanRecycleIn,
                Clean,
                Clean,
                Clean,
                Clean,
                Clean,
                Clean,
            ]),
        ),
        (
            "victim-recycles-both-channels",
            with(&[
                Bind,
                Call(0),
                Call(1),
                Call(2),
                Call(3),
                Call(4),
                Call(5),
                Call(6),
                Call(7),
                Recycle(0),
                Clean,
                Recycle(1),
                Call(8),
                Recycle(2),
                Call(9),
                Recycle(3),
                Call(10),
                Clean,
            ]),
        ),
        (
            "victim-names-the-clean-connection-and-all-wait",
            with(&[
                Recycle(4),
                Recycle(5),
                Clean,
                Wait(10),
                Wait(10),
                Wait(10),
                Wait(10),
                Wait(10),
                Wait(10),
                Clean,
            ]),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpus/fuzz/rpch_proxy_ops")
    }

    /// `HARNESS_WRITE_SEEDS=1` rewrites them.
    #[test]
    fn seeds_match_the_corpus() {
        let write = std::env::var_os("HARNESS_WRITE_SEEDS").is_some();
        for (name, data) in seeds() {
            let path = corpus().join(name);
            if write {
                std::fs::create_dir_all(corpus()).unwrap();
                std::fs::write(&path, &data).unwrap();
            }
            assert_eq!(std::fs::read(&path).ok(), Some(data), "{name} is stale");
        }
    }

    #[test]
    fn seeds_reach_what_they_are_named_for() {
        let r: Vec<Report> = seeds().iter().map(|(_, d)| run(d)).collect();
        assert!(
            r[0].victim_opened && r[0].victim_responses == 2,
            "{:?}",
            r[0]
        );
        assert_eq!(r[0].clean_responses, 2);
        assert!(r[1].victim_ended && !r[1].victim_opened, "{:?}", r[1]);
        assert!(r[2].victim_ended, "{:?}", r[2]);
        assert!(r[3].victim_ended, "{:?}", r[3]);
        assert!(r[4].victim_ended, "{:?}", r[4]);
        assert!(r[5].victim_ended, "{:?}", r[5]);
        assert!(r.iter().all(|r| r.clean_responses >= 1));
        assert_eq!(
            (r[6].clean_out_recycles, r[6].clean_in_recycles),
            (1, 2),
            "{:?}",
            r[6]
        );
        assert_eq!(r[6].clean_responses, 13);
        // OUT_R2/A2, A6, B3 and IN_R2/A4, and every call answered across them.
        assert_eq!(r[7].victim_recycle_steps, 4, "{:?}", r[7]);
        assert_eq!(r[7].victim_responses, 11);
        assert!(!r[7].victim_ended);
        // Its requests naming connection 0 refused alone; a ping after 60 s quiet.
        assert!(r[8].victim_ended && r[8].clean_pings == 1, "{:?}", r[8]);
    }

    /// Mutated seeds and random inputs hold the invariants.
    #[test]
    fn mutants_never_break_the_clean_connection() {
        let seeds = seeds();
        let mut rng = crate::rng::SeededRng::new(17);
        let mut opened = 0;
        for n in 0..400 {
            let mut data = seeds[n % seeds.len()].1.clone();
            for _ in 0..1 + rng.next_u64() % 4 {
                let at = (rng.next_u64() as usize) % (data.len() + 1);
                match rng.next_u64() % 3 {
                    0 if at < data.len() => data[at] = rng.next_u64() as u8,
                    1 => data.insert(at, rng.next_u64() as u8),
                    _ => data.truncate(at.max(1)),
                }
            }
            opened += usize::from(run(&data).victim_opened);
        }
        assert!(opened > 20, "{opened} mutants opened the victim connection");
    }
}
