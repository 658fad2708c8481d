//! The proxy in process: virtual connections from [`RpchClient`]s through [`RpcProxy`]
//! to the lab's RPC endpoints ([`InProcessBackends`]), and every bad input ending its
//! own virtual connection only.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use harness_wire::dcerpc::{AuthLevel, ContextElement, SyntaxId, Uuid};
use harness_wire::rpch::{
    FlowControlAck, RecycleCookies, RtsCommand, RtsFlags, RtsPdu, RtsPduKind,
};

use super::*;
use crate::dcerpc::client::{ClientAssociation, ClientConfig, ClientEvent};
use crate::dcerpc::endpoints::RpcEndpoints;
use crate::dcerpc::known_calls::{ntlm_bind, primary_context, KnownInterface};
use crate::dcerpc::server::{Endpoint, EndpointConfig};
use crate::dcerpc::{CallContext, CallOutcome, RpcInterface};
use crate::ntlm::Credentials;

const EXCHANGE: &str = "mail.example.com:6004";

/// One client virtual connection: its channels and what the proxy told it.
struct Side {
    client: RpchClient,
    /// The OUT and IN channels, and their successors while a recycling opens them.
    out: ChannelId,
    inc: ChannelId,
    out_successor: Option<ChannelId>,
    in_successor: Option<ChannelId>,
    /// Channels recycling replaced.
    past: Vec<ChannelId>,
    events: Vec<RpchEvent>,
    /// The recycling events, in order, and every write on an OUT channel.
    steps: Vec<RpchEvent>,
    wire: Vec<(ChannelId, Vec<u8>)>,
    /// The Content-Length each OUT channel's response started with.
    started: HashMap<ChannelId, u32>,
    /// The status each closed channel got (None: closed after its response started).
    closed: HashMap<ChannelId, Option<HttpStatus>>,
}

struct Lab {
    proxy: RpcProxy,
    backends: InProcessBackends,
    now: Duration,
    sides: Vec<Side>,
    ended: Vec<(Option<RtsCookie>, Option<ChannelId>, ProxyError)>,
    next_channel: u64,
    /// Answer the proxy's OUT_R2/A2 and A6, and IN_R2/A4, as a client does (OUT_R2/B3
    /// always switches the side to the successor).
    answer_out: bool,
    answer_in: bool,
    /// Send OUT_R2/C1 before OUT_R2/A7 (else after).
    c1_first: bool,
    /// Kept so the endpoints outlive the sessions.
    _endpoints: Option<RpcEndpoints>,
}

use harness_wire::rpch::RtsCookie;

fn endpoints() -> RpcEndpoints {
    let world = Arc::new(crate::fuzzing::ops::default_world().expect("the default world"));
    RpcEndpoints::for_world(&world, &crate::fuzzing::rpc_ops::lab_config())
}

impl Lab {
    fn new(config: ProxyConfig) -> Lab {
        let endpoints = endpoints();
        let backends = InProcessBackends::for_endpoints(&endpoints);
        Lab::with_backends(config, backends, Some(endpoints))
    }

    fn with_backends(
        config: ProxyConfig,
        backends: InProcessBackends,
        endpoints: Option<RpcEndpoints>,
    ) -> Lab {
        Lab {
            proxy: RpcProxy::new(config),
            backends,
            now: Duration::from_secs(1),
            sides: Vec::new(),
            ended: Vec::new(),
            next_channel: 1,
            answer_out: true,
            answer_in: true,
            c1_first: true,
            _endpoints: endpoints,
        }
    }

    fn channel(&mut self) -> ChannelId {
        self.next_channel += 1;
        ChannelId(self.next_channel)
    }

    /// A side with both channels opened (no body yet).
    fn open(&mut self, seed: u64, window: u32, auto_ack: bool) -> usize {
        let client = RpchClient::new(
            RpchCookies::from_seed(seed),
            window,
            auto_ack,
            ClientAssociation::new(ClientConfig::default()),
        );
        let (out, inc) = (self.channel(), self.channel());
        self.proxy
            .out_channel_opened(self.now, out, EXCHANGE, 76)
            .unwrap();
        self.proxy
            .in_channel_opened(self.now, inc, EXCHANGE, 1 << 30)
            .unwrap();
        self.sides.push(Side {
            client,
            out,
            inc,
            out_successor: None,
            in_successor: None,
            past: Vec::new(),
            events: Vec::new(),
            steps: Vec::new(),
            wire: Vec::new(),
            started: HashMap::new(),
            closed: HashMap::new(),
        });
        self.sides.len() - 1
    }

    /// A side through CONN/C2.
    fn connect(&mut self, seed: u64, window: u32, auto_ack: bool) -> usize {
        let i = self.open(seed, window, auto_ack);
        let a1 = self.sides[i].client.conn_a1();
        self.out(i, &a1).unwrap();
        let b1 = self.sides[i].client.conn_b1();
        self.send(i, &b1).unwrap();
        assert!(self.sides[i].client.is_open(), "{:?}", self.sides[i].events);
        i
    }

    fn out(&mut self, i: usize, bytes: &[u8]) -> Result<(), ProxyError> {
        let r = self.proxy.channel_data(self.now, self.sides[i].out, bytes);
        self.settle();
        r
    }

    fn send(&mut self, i: usize, bytes: &[u8]) -> Result<(), ProxyError> {
        let r = self.proxy.channel_data(self.now, self.sides[i].inc, bytes);
        self.settle();
        r
    }

    /// Plays the proxy's outputs until nothing moves.
    fn settle(&mut self) {
        loop {
            let outputs = self.backends.pump(&mut self.proxy, self.now);
            if outputs.is_empty() {
                return;
            }
            for output in outputs {
                self.deliver(output);
            }
        }
    }

    fn side_index(&self, channel: ChannelId) -> Option<usize> {
        self.sides.iter().position(|s| {
            s.out == channel
                || s.inc == channel
                || s.out_successor == Some(channel)
                || s.in_successor == Some(channel)
                || s.past.contains(&channel)
        })
    }

    fn side_of(&mut self, channel: ChannelId) -> Option<&mut Side> {
        let i = self.side_index(channel)?;
        self.sides.get_mut(i)
    }

    /// What a client does on the proxy's recycling steps (the client's processing of OUT_R2/A2,
    /// OUT_R2/A6, OUT_R2/B3 and IN_R2/A4 in [MS-RPCH] 3.2.2.5).
    fn recycle_step(&mut self, i: usize, event: &RpchEvent) {
        let now = self.now;
        match event {
            RpchEvent::OutR2A2 => {
                let successor = self.channel();
                self.proxy
                    .out_channel_opened(now, successor, EXCHANGE, 120)
                    .unwrap();
                let side = &mut self.sides[i];
                side.out_successor = Some(successor);
                let a3 = side.client.rts.out_recycle_a3();
                let _ = self.proxy.channel_data(now, successor, &a3);
            }
            RpchEvent::OutR2A6 => {
                let side = &self.sides[i];
                let (a7, c1) = side.client.rts.out_recycle_a7_c1().expect("a successor");
                let (inc, successor) = (side.inc, side.out_successor.expect("a successor"));
                let mut steps = [(successor, c1), (inc, a7)];
                if !self.c1_first {
                    steps.reverse();
                }
                for (channel, bytes) in steps {
                    let _ = self.proxy.channel_data(now, channel, &bytes);
                }
            }
            RpchEvent::OutR2B3 => {
                let side = &mut self.sides[i];
                let successor = side.out_successor.take().expect("a successor");
                let predecessor = std::mem::replace(&mut side.out, successor);
                side.past.push(predecessor);
            }
            RpchEvent::InR2A4 => {
                let side = &mut self.sides[i];
                let a5 = side.client.rts.in_recycle_a5().expect("a successor");
                let successor = side.in_successor.take().expect("a successor");
                let predecessor = std::mem::replace(&mut side.inc, successor);
                side.past.push(predecessor);
                let _ = self.proxy.channel_data(now, predecessor, &a5);
            }
            _ => {}
        }
    }

    /// Opens a successor IN channel and sends its IN_R2/A1.
    fn recycle_in(&mut self, i: usize) -> Result<(), ProxyError> {
        let successor = self.channel();
        self.proxy
            .in_channel_opened(self.now, successor, EXCHANGE, 1 << 30)
            .unwrap();
        let side = &mut self.sides[i];
        side.in_successor = Some(successor);
        let a1 = side.client.rts.begin_in_recycle();
        let r = self.proxy.channel_data(self.now, successor, &a1);
        self.settle();
        r
    }

    fn deliver(&mut self, output: ProxyOutput) {
        let now = self.now;
        match output {
            ProxyOutput::StartOutResponse {
                channel,
                content_length,
            } => {
                let side = self.side_of(channel).expect("a side's channel");
                assert_eq!(channel, side.out, "a response start on no OUT channel");
                let twice = side.started.insert(channel, content_length);
                assert_eq!(twice, None, "two response starts");
            }
            ProxyOutput::Write { channel, bytes } => {
                let i = self.side_index(channel).expect("a side's channel");
                let side = &mut self.sides[i];
                assert_eq!(channel, side.out, "a write on no OUT channel");
                assert!(
                    side.started.contains_key(&channel),
                    "a write before the response"
                );
                side.wire.push((channel, bytes.clone()));
                let before = side.events.len();
                let ack = side
                    .client
                    .receive_out(&bytes, &mut side.events)
                    .expect("the OUT channel's octets");
                let fresh = side.events[before..].to_vec();
                let inc = side.inc;
                if !ack.is_empty() {
                    let _ = self.proxy.channel_data(now, inc, &ack);
                }
                for event in &fresh {
                    let answer = match event {
                        RpchEvent::OutR2A2 | RpchEvent::OutR2A6 => self.answer_out,
                        RpchEvent::InR2A4 => self.answer_in,
                        RpchEvent::OutR2B3 => true,
                        _ => continue,
                    };
                    self.sides[i].steps.push(event.clone());
                    if answer {
                        self.recycle_step(i, event);
                    }
                }
            }
            ProxyOutput::CloseChannel { channel, status } => {
                if let Some(side) = self.side_of(channel) {
                    assert!(
                        side.closed.insert(channel, status).is_none(),
                        "closed twice"
                    );
                }
            }
            ProxyOutput::Ended {
                cookie,
                channel,
                reason,
            } => self.ended.push((cookie, channel, reason)),
            other => panic!("a back-end output reached the client side: {other:?}"),
        }
    }

    fn rpc_events(&mut self, i: usize) -> Vec<ClientEvent> {
        std::mem::take(&mut self.sides[i].events)
            .into_iter()
            .filter_map(|e| match e {
                RpchEvent::Rpc(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    /// Bind at packet privacy with NTLM as alice, auth3 included; the association group
    /// the bind_ack named.
    fn bind_ntlm(&mut self, i: usize) -> u32 {
        let security = ntlm_bind(
            Credentials::example("alice", "secret"),
            AuthLevel::PKT_PRIVACY,
        );
        let bind = self.sides[i]
            .client
            .association
            .bind(&[primary_context(KnownInterface::Rfr)], Some(security))
            .unwrap();
        self.send(i, &bind).unwrap();
        let events = self.rpc_events(i);
        let group = events
            .iter()
            .find_map(|e| match e {
                ClientEvent::BindAcked(ack) => Some(ack.assoc_group_id),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no bind_ack: {events:?}"));
        let auth3 = events
            .iter()
            .find_map(|e| match e {
                ClientEvent::Send(leg) => Some(leg.clone()),
                _ => None,
            })
            .expect("an auth3 leg");
        self.send(i, &auth3).unwrap();
        assert!(self.sides[i].client.association.is_ready());
        group
    }

    /// A call on context 0; the response stub.
    fn call(&mut self, i: usize, opnum: u16, stub: &[u8]) -> Vec<u8> {
        let call = self.sides[i]
            .client
            .association
            .call(0, opnum, None, stub)
            .unwrap();
        for fragment in &call.fragments {
            self.send(i, fragment).unwrap();
        }
        let events = self.rpc_events(i);
        match events.as_slice() {
            [ClientEvent::Response { call_id, stub, .. }] if *call_id == call.call_id => {
                stub.clone()
            }
            other => panic!("no response to call {}: {other:?}", call.call_id),
        }
    }

    fn rfr_call(&mut self, i: usize) -> Vec<u8> {
        let (opnum, stub) = &KnownInterface::Rfr.valid_calls()[0];
        self.call(i, *opnum, stub)
    }

    fn cookie(&self, i: usize) -> RtsCookie {
        self.sides[i].client.rts.cookies.virtual_connection
    }

    fn info(&self, i: usize) -> Option<VirtualConnectionInfo> {
        self.proxy.virtual_connection(&self.cookie(i))
    }

    fn ended_reason(&self, i: usize) -> Option<ProxyError> {
        let cookie = self.cookie(i);
        self.ended
            .iter()
            .find(|(c, _, _)| *c == Some(cookie))
            .map(|(_, _, r)| r.clone())
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.proxy.handle_timeout(self.now);
        self.settle();
    }
}

fn rts(pdu: &RtsPdu) -> Vec<u8> {
    pdu.encode().unwrap()
}

fn unauthenticated_bind(interface: SyntaxId) -> Vec<u8> {
    ClientAssociation::new(ClientConfig::default())
        .bind(
            &[ContextElement {
                context_id: 0,
                abstract_syntax: interface,
                transfer_syntaxes: vec![SyntaxId::NDR20],
            }],
            None,
        )
        .unwrap()
}

#[test]
fn a_virtual_connection_binds_with_ntlm_privacy_and_calls_rfr() {
    let mut lab = Lab::new(ProxyConfig::default());
    let i = lab.open(1, 0x4_0000, true);
    let a1 = lab.sides[i].client.conn_a1();
    assert_eq!(a1.len(), 76);
    lab.out(i, &a1).unwrap();
    assert_eq!(lab.sides[i].started[&lab.sides[i].out], 0x4000_0000);
    assert_eq!(
        lab.sides[i].events,
        [RpchEvent::ConnA3 {
            connection_timeout: 120_000
        }]
    );
    let b1 = lab.sides[i].client.conn_b1();
    assert_eq!(b1.len(), 104);
    lab.send(i, &b1).unwrap();
    assert_eq!(
        lab.sides[i].events[1],
        RpchEvent::ConnC2 {
            in_window: 0x4_0000,
            connection_timeout: 120_000
        }
    );
    let info = lab.info(i).unwrap();
    assert!(info.opened);
    assert_eq!(
        info.association_group_id,
        Some(lab.sides[i].client.rts.cookies.association_group)
    );
    assert_eq!(info.keepalive, Some(Duration::from_secs(300)));
    assert_eq!(info.target.port, 6004);
    assert_eq!(lab.backends.open(), 1);
    lab.bind_ntlm(i);
    let stub = lab.rfr_call(i);
    let (_, servers, status) = crate::dcerpc::rfr::decode_get_new_dsa_response(&stub).unwrap();
    assert_eq!(status, 0, "{servers:?}");
    assert!(servers.flatten().is_some());
    // A second call on the same virtual connection.
    lab.rfr_call(i);
    assert!(lab.ended.is_empty(), "{:?}", lab.ended);
    // The client closes its OUT channel: the virtual connection and the back-end end.
    lab.proxy.channel_closed(lab.now, lab.sides[i].out);
    lab.settle();
    assert_eq!(
        lab.ended_reason(i),
        Some(ProxyError::ChannelClosed(ChannelKind::Out))
    );
    assert_eq!(
        lab.sides[i].closed[&lab.sides[i].inc],
        Some(HttpStatus::BAD_REQUEST)
    );
    assert_eq!(lab.backends.open(), 0);
    assert_eq!(lab.proxy.virtual_connections(), 0);
    assert_eq!(lab.proxy.channels(), 0);
}

#[test]
fn conn_b1_before_conn_a1_pairs_when_a1_comes() {
    let mut lab = Lab::new(ProxyConfig::default());
    let i = lab.open(2, 0x1_0000, true);
    let b1 = lab.sides[i].client.conn_b1();
    lab.send(i, &b1).unwrap();
    assert_eq!(lab.backends.open(), 0);
    assert!(!lab.info(i).unwrap().opened);
    let a1 = lab.sides[i].client.conn_a1();
    lab.out(i, &a1).unwrap();
    assert!(matches!(
        lab.sides[i].events.as_slice(),
        [RpchEvent::ConnA3 { .. }, RpchEvent::ConnC2 { .. }]
    ));
    lab.bind_ntlm(i);
    lab.rfr_call(i);
}

/// An interface whose opnum 0 answers with as many octets as the stub's first u32 asks.
struct Sized;

const SIZED_SYNTAX: SyntaxId = SyntaxId::new(
    Uuid::new(0x5157_1234, 0x1, 0x2, [3, 4, 5, 6, 7, 8, 9, 10]),
    1,
    0,
);

impl RpcInterface for Sized {
    fn syntax(&self) -> SyntaxId {
        SIZED_SYNTAX
    }
    fn name(&self) -> &'static str {
        "sized"
    }
    fn opnum_count(&self) -> u16 {
        1
    }
    fn call(&self, _ctx: &CallContext<'_>, _opnum: u16, stub: &[u8]) -> CallOutcome {
        let len = stub
            .get(..4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        CallOutcome::Response((0..len).map(|i| i as u8).collect())
    }
}

fn sized_lab(config: ProxyConfig) -> Lab {
    let endpoint = Endpoint::new(EndpointConfig::default(), vec![Arc::new(Sized)], None);
    let backends = InProcessBackends::new(Box::new(move |_target: &Target, now| {
        Some(Box::new(endpoint.accept(now)) as Box<dyn crate::ServerSession>)
    }));
    Lab::with_backends(config, backends, None)
}

fn sized_bind(lab: &mut Lab, i: usize) {
    let mut client = ClientAssociation::new(ClientConfig {
        max_xmit_frag: 1432,
        max_recv_frag: 1432,
        ..ClientConfig::default()
    });
    let bind = client
        .bind(
            &[ContextElement {
                context_id: 0,
                abstract_syntax: SIZED_SYNTAX,
                transfer_syntaxes: vec![SyntaxId::NDR20],
            }],
            None,
        )
        .unwrap();
    lab.sides[i].client.association = client;
    lab.send(i, &bind).unwrap();
    let events = lab.rpc_events(i);
    assert!(
        matches!(events.as_slice(), [ClientEvent::BindAcked(_)]),
        "{events:?}"
    );
}

#[test]
fn a_large_response_waits_for_the_clients_flow_control_acks() {
    let mut lab = sized_lab(ProxyConfig::default());
    let i = lab.connect(3, 0x2000, false);
    sized_bind(&mut lab, i);
    let call = lab.sides[i]
        .client
        .association
        .call(0, 0, None, &20_000u32.to_le_bytes())
        .unwrap();
    lab.send(i, &call.fragments[0]).unwrap();
    let mut acks = 0;
    loop {
        let info = lab.info(i).unwrap();
        // What went out never passes the client's window.
        assert!(lab.sides[i].client.bytes_received() <= info.out_bytes_sent);
        assert!(info.out_bytes_sent - lab.sides[i].client.bytes_received() == 0);
        let events = lab.rpc_events(i);
        if let [ClientEvent::Response { stub, .. }] = events.as_slice() {
            assert_eq!(stub.len(), 20_000);
            assert_eq!(stub[300], 300u32 as u8);
            break;
        }
        assert!(events.is_empty(), "{events:?}");
        assert!(info.out_queued > 0, "{info:?}");
        assert!(info.out_available_window < 1432);
        assert!(info.out_bytes_sent <= 0x2000 * (acks + 1));
        let backend = info.backend.unwrap();
        assert!(!lab.proxy.backend_accepts(backend));
        let ack = lab.sides[i].client.ack();
        lab.send(i, &ack).unwrap();
        acks += 1;
        assert!(acks < 10, "the response never came");
    }
    // 20,000 octets in 1432-octet fragments through an 8 KiB window.
    assert!(acks >= 2, "{acks} acks");
    assert_eq!(lab.info(i).unwrap().out_queued, 0);
}

#[test]
fn the_in_channel_is_acknowledged_after_half_its_window() {
    let config = ProxyConfig {
        in_receive_window: 0x2000,
        ..ProxyConfig::default()
    };
    let mut lab = sized_lab(config);
    let i = lab.connect(4, 0x4_0000, true);
    sized_bind(&mut lab, i);
    let mut stub = 16u32.to_le_bytes().to_vec();
    stub.resize(10_000, 7);
    let call = lab.sides[i]
        .client
        .association
        .call(0, 0, None, &stub)
        .unwrap();
    for fragment in &call.fragments {
        lab.send(i, fragment).unwrap();
    }
    let acks: Vec<FlowControlAck> = lab.sides[i]
        .events
        .iter()
        .filter_map(|e| match e {
            RpchEvent::InAck(a) => Some(*a),
            _ => None,
        })
        .collect();
    assert!(acks.len() >= 2, "{acks:?}");
    let cookie = lab.sides[i].client.rts.cookies.in_channel;
    for pair in acks.windows(2) {
        assert!(pair[1].bytes_received - pair[0].bytes_received >= 0x1000);
    }
    assert!(acks
        .iter()
        .all(|a| a.channel_cookie == cookie && a.available_window == 0x2000));
    assert!(matches!(
        lab.rpc_events(i).as_slice(),
        [ClientEvent::Response { .. }]
    ));
}

#[test]
fn client_pdus_past_the_in_window_before_the_out_channel_end_that_connection() {
    let config = ProxyConfig {
        in_receive_window: 0x2000,
        ..ProxyConfig::default()
    };
    let mut lab = sized_lab(config);
    let i = lab.open(5, 0x4_0000, true);
    let b1 = lab.sides[i].client.conn_b1();
    lab.send(i, &b1).unwrap();
    // Held for the back-end CONN/A1 will open, within the window; then past it.
    let bind = unauthenticated_bind(SIZED_SYNTAX);
    let mut result = Ok(());
    for _ in 0..0x2000 / bind.len() + 1 {
        result = lab.send(i, &bind);
    }
    assert!(
        matches!(result, Err(ProxyError::WindowExceeded { .. })),
        "{result:?}"
    );
    assert!(lab.proxy.buffered() == 0);
    assert_eq!(
        lab.sides[i].closed[&lab.sides[i].inc],
        Some(HttpStatus::BAD_REQUEST)
    );
}

#[test]
fn two_virtual_connections_interleave_and_a_broken_one_leaves_the_other() {
    let mut lab = Lab::new(ProxyConfig::default());
    let a = lab.open(10, 0x4_0000, true);
    let b = lab.open(11, 0x4_0000, true);
    let a1 = lab.sides[b].client.conn_a1();
    lab.out(b, &a1).unwrap();
    let a1 = lab.sides[a].client.conn_a1();
    lab.out(a, &a1).unwrap();
    let b1 = lab.sides[a].client.conn_b1();
    lab.send(a, &b1).unwrap();
    let b1 = lab.sides[b].client.conn_b1();
    lab.send(b, &b1).unwrap();
    assert!(lab.sides[a].client.is_open() && lab.sides[b].client.is_open());
    lab.bind_ntlm(b);
    lab.bind_ntlm(a);
    lab.rfr_call(a);
    lab.rfr_call(b);
    lab.rfr_call(a);
    assert_ne!(lab.info(a).unwrap().backend, lab.info(b).unwrap().backend);
    // b sends garbage octets that frame as a PDU of rpc_vers 4.
    let r = lab.send(b, &[4u8; 16]);
    assert!(matches!(r, Err(ProxyError::Framing(_))), "{r:?}");
    assert!(lab.info(b).is_none());
    assert_eq!(lab.sides[b].closed[&lab.sides[b].out], None);
    assert_eq!(
        lab.sides[b].closed[&lab.sides[b].inc],
        Some(HttpStatus::BAD_REQUEST)
    );
    assert!(lab.sides[a].closed.is_empty());
    lab.rfr_call(a);
    assert_eq!(lab.backends.open(), 1);
}

/// A connected virtual connection that bad input breaks, next to a clean one that
/// must keep working.
fn broken_next_to_clean(
    bad: impl FnOnce(&mut Lab, usize) -> Result<(), ProxyError>,
) -> (Lab, ProxyError) {
    let mut lab = Lab::new(ProxyConfig::default());
    let clean = lab.connect(20, 0x4_0000, true);
    lab.bind_ntlm(clean);
    let victim = lab.connect(21, 0x4_0000, true);
    let err = bad(&mut lab, victim).expect_err("the bad input was taken");
    assert!(lab.info(victim).is_none(), "the broken connection lives on");
    assert_eq!(lab.ended_reason(victim), Some(err.clone()));
    assert!(lab.sides[clean].closed.is_empty());
    lab.rfr_call(clean);
    (lab, err)
}

#[test]
fn a_malformed_rts_pdu_ends_its_virtual_connection() {
    // NumberOfCommands 200 in a 20-octet PDU.
    let mut pdu = rts(&RtsPdu::ping());
    pdu[18] = 200;
    let (_, err) = broken_next_to_clean(|lab, i| lab.send(i, &pdu));
    assert!(matches!(err, ProxyError::Rts(_)), "{err}");
}

#[test]
fn an_unknown_rts_pdu_ends_its_virtual_connection() {
    let odd = RtsPdu::new(RtsFlags::ECHO, vec![RtsCommand::Version(1)]);
    let (_, err) = broken_next_to_clean(|lab, i| lab.send(i, &rts(&odd)));
    assert!(
        matches!(
            err,
            ProxyError::Unexpected {
                kind: ChannelKind::In,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_recycling_pdu_on_a_live_in_channel_ends_its_virtual_connection() {
    let cookies = RecycleCookies {
        virtual_connection: Uuid::NIL,
        predecessor: Uuid::NIL,
        successor: Uuid::NIL,
    };
    let (_, err) = broken_next_to_clean(|lab, i| lab.send(i, &rts(&RtsPdu::in_r1_a1(1, cookies))));
    assert_eq!(
        err,
        ProxyError::RecycleOutOfState {
            kind: ChannelKind::In,
            got: "IN_R1/A1 or IN_R2/A1".into(),
            state: "the client sends only IN_R2/A1, IN_R2/A5 and OUT_R2/A7 here",
        }
    );
}

#[test]
fn an_invalid_flow_control_ack_ends_its_virtual_connection() {
    let (_, err) = broken_next_to_clean(|lab, i| {
        let ack = FlowControlAck {
            bytes_received: 1_000_000,
            available_window: 0x4_0000,
            channel_cookie: lab.sides[i].client.rts.cookies.out_channel,
        };
        lab.send(i, &rts(&RtsPdu::flow_control_ack(ack)))
    });
    assert!(matches!(err, ProxyError::BadAck { .. }), "{err}");
}

#[test]
fn an_ack_for_another_channel_is_dropped() {
    let mut lab = Lab::new(ProxyConfig::default());
    let i = lab.connect(22, 0x4_0000, true);
    let ack = FlowControlAck {
        bytes_received: 1_000_000,
        available_window: 1,
        channel_cookie: Uuid::NIL,
    };
    lab.send(i, &rts(&RtsPdu::flow_control_ack(ack))).unwrap();
    assert!(lab.info(i).is_some());
}

#[test]
fn octets_past_the_declared_length_end_the_virtual_connection() {
    let (_, err) = broken_next_to_clean(|lab, i| lab.out(i, &[0]));
    assert_eq!(
        err,
        ProxyError::BodyTooLong {
            kind: ChannelKind::Out,
            declared: 76
        }
    );
    let mut lab = Lab::new(ProxyConfig::default());
    let i = lab.open(23, 0x4_0000, true);
    let inc = lab.channel();
    lab.proxy
        .in_channel_opened(lab.now, inc, EXCHANGE, 104)
        .unwrap();
    lab.sides[i].inc = inc;
    let mut b1 = lab.sides[i].client.conn_b1();
    b1.push(5);
    let err = lab.send(i, &b1).unwrap_err();
    assert!(matches!(
        err,
        ProxyError::BodyTooLong {
            kind: ChannelKind::In,
            declared: 104
        }
    ));
    assert_eq!(lab.sides[i].closed[&inc], Some(HttpStatus::BAD_REQUEST));
}

#[test]
fn octets_before_conn_a1_or_conn_b1_are_refused_with_400() {
    let mut lab = Lab::new(ProxyConfig::default());
    let i = lab.open(24, 0x4_0000, true);
    let bind = unauthenticated_bind(crate::dcerpc::rfr::RFR_SYNTAX);
    let err = lab.send(i, &bind).unwrap_err();
    assert!(
        matches!(
            err,
            ProxyError::Unexpected {
                expected: "CONN/B1",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        lab.sides[i].closed[&lab.sides[i].inc],
        Some(HttpStatus::BAD_REQUEST)
    );
    // An RTS PDU that is not CONN/A1 on the OUT channel.
    let err = lab.out(i, &rts(&RtsPdu::ping())).unwrap_err();
    assert!(
        matches!(
            err,
            ProxyError::Unexpected {
                expected: "CONN/A1",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        lab.sides[i].closed[&lab.sides[i].out],
        Some(HttpStatus::BAD_REQUEST)
    );
    assert_eq!(lab.proxy.channels(), 0);
    assert_eq!(lab.proxy.virtual_connections(), 0);
}

#[test]
fn a_second_out_channel_with_a_live_cookie_is_refused_alone() {
    let mut lab = Lab::new(ProxyConfig::default());
    let i = lab.connect(25, 0x4_0000, true);
    lab.bind_ntlm(i);
    let second = lab.channel();
    lab.proxy
        .out_channel_opened(lab.now, second, EXCHANGE, 76)
        .unwrap();
    let a1 = lab.sides[i].client.conn_a1();
    let err = lab.proxy.channel_data(lab.now, second, &a1).unwrap_err();
    assert_eq!(err, ProxyError::CookieInUse(ChannelKind::Out));
    assert_eq!(
        lab.proxy.poll_output(),
        Some(ProxyOutput::CloseChannel {
            channel: second,
            status: Some(HttpStatus::BAD_REQUEST)
        })
    );
    lab.settle();
    assert!(lab.sides[i].closed.is_empty());
    lab.rfr_call(i);
    // OUT_R2/A3 the proxy did not ask for (no OUT_R2/A2): a second OUT channel outside
    // recycling, refused alone too.
    let third = lab.channel();
    lab.proxy
        .out_channel_opened(lab.now, third, EXCHANGE, 120)
        .unwrap();
    let a3 = lab.sides[i].client.rts.out_recycle_a3();
    let want = ProxyError::RecycleOutOfState {
        kind: ChannelKind::Out,
        got: "OUT_R2/A3".into(),
        state: "no OUT_R2/A2 sent",
    };
    refused_alone(&mut lab, third, &a3, want);
    assert!(lab.sides[i].closed.is_empty());
    lab.rfr_call(i);
    // And a second IN channel.
    let second_in = lab.channel();
    lab.proxy
        .in_channel_opened(lab.now, second_in, EXCHANGE, 1 << 30)
        .unwrap();
    let b1 = lab.sides[i].client.conn_b1();
    let err = lab.proxy.channel_data(lab.now, second_in, &b1).unwrap_err();
    assert_eq!(err, ProxyError::CookieInUse(ChannelKind::In));
    lab.settle();
    lab.rfr_call(i);
}

#[test]
fn an_in_channel_for_an_unknown_cookie_ends_at_the_pairing_timeout() {
    let mut lab = Lab::new(ProxyConfig::default());
    let clean = lab.connect(26, 0x4_0000, true);
    let i = lab.open(27, 0x4_0000, true);
    let b1 = lab.sides[i].client.conn_b1();
    lab.send(i, &b1).unwrap();
    let due = lab.proxy.poll_timeout().unwrap();
    assert_eq!(due, Duration::from_secs(31));
    lab.advance(Duration::from_secs(29));
    assert!(lab.info(i).is_some());
    // The clean one stays busy; the lone IN channel does not pair.
    lab.bind_ntlm(clean);
    lab.advance(Duration::from_secs(1));
    assert_eq!(lab.ended_reason(i), Some(ProxyError::UnknownCookie));
    assert_eq!(
        lab.sides[i].closed[&lab.sides[i].inc],
        Some(HttpStatus::BAD_REQUEST)
    );
    // Its OUT channel never sent CONN/A1: refused on its own.
    assert_eq!(
        lab.sides[i].closed[&lab.sides[i].out],
        Some(HttpStatus::BAD_REQUEST)
    );
    lab.rfr_call(clean);
}

#[test]
fn an_idle_virtual_connection_is_pinged_then_closed_at_twice_the_connection_timeout() {
    let mut lab = Lab::new(ProxyConfig::default());
    let i = lab.connect(28, 0x4_0000, true);
    lab.bind_ntlm(i);
    lab.sides[i].events.clear();
    let last = lab.now;
    // The OUT channel's last write (the bind_ack) starts the ping timer: half the
    // 120 s ConnectionTimeout.
    assert_eq!(
        lab.proxy.poll_timeout(),
        Some(last + Duration::from_secs(60))
    );
    lab.advance(Duration::from_secs(59));
    assert!(lab.sides[i].events.is_empty());
    lab.advance(Duration::from_secs(1));
    assert_eq!(lab.sides[i].events, [RpchEvent::Ping]);
    assert_eq!(lab.info(i).unwrap().pings_sent, 1);
    // A ping is no traffic from either end: the idle limit stays at 240 s.
    for _ in 0..2 {
        assert_eq!(
            lab.proxy.poll_timeout(),
            Some(lab.now + Duration::from_secs(60))
        );
        lab.advance(Duration::from_secs(60));
    }
    assert_eq!(lab.info(i).unwrap().pings_sent, 3);
    assert_eq!(lab.now, last + Duration::from_secs(180));
    lab.advance(Duration::from_secs(59));
    assert!(lab.info(i).is_some());
    lab.advance(Duration::from_secs(1));
    assert_eq!(lab.ended_reason(i), Some(ProxyError::Idle));
    assert_eq!(lab.backends.open(), 0);
    assert_eq!(lab.proxy.poll_timeout(), None);
}

#[test]
fn a_quiet_client_that_pings_at_the_connection_timeout_keeps_its_virtual_connection() {
    // [MS-RPCH] 3.2.2.6.1: a client with a call parked on the back-end sends a Ping each
    // ConnectionTimeout (120 s, CONN/A3).
    let mut lab = Lab::new(ProxyConfig::default());
    let i = lab.connect(30, 0x4_0000, true);
    lab.bind_ntlm(i);
    // Twelve minutes: the endpoint's own idle limit (15 min, no call parked) stays away.
    for _ in 0..6 {
        lab.advance(Duration::from_secs(120));
        let sent = lab.send(i, &rts(&RtsPdu::ping()));
        assert_eq!(sent, Ok(()), "{:?}", lab.ended);
    }
    let info = lab.info(i).expect("alive after 12 minutes");
    assert_eq!(info.pings_answered, 6);
    // The proxy's own: one each time the clock jumps past 60 s after a write.
    assert_eq!(info.pings_sent, 6);
    lab.rfr_call(i);
}

#[test]
fn pings_are_answered_and_keep_alives_recorded() {
    let mut lab = Lab::new(ProxyConfig::default());
    let i = lab.connect(29, 0x4_0000, true);
    lab.sides[i].events.clear();
    lab.send(i, &rts(&RtsPdu::ping())).unwrap();
    assert_eq!(lab.sides[i].events, [RpchEvent::Ping]);
    lab.send(i, &rts(&RtsPdu::keep_alive(60_000))).unwrap();
    let info = lab.info(i).unwrap();
    assert_eq!(info.keepalive, Some(Duration::from_secs(60)));
    assert_eq!(info.pings_answered, 1);
    lab.send(i, &rts(&RtsPdu::keep_alive(0))).unwrap();
    assert_eq!(
        lab.info(i).unwrap().keepalive,
        Some(Duration::from_secs(300))
    );
}

#[test]
fn channel_requests_are_checked_before_anything_is_held() {
    let mut lab = Lab::new(ProxyConfig {
        max_virtual_connections: 1,
        ..ProxyConfig::default()
    });
    let c = lab.channel();
    for (target, length, kind) in [
        ("mail.example.com", 76, ChannelKind::Out),
        ("mail:0", 76, ChannelKind::Out),
        ("mail:x", 76, ChannelKind::Out),
        (":6001", 76, ChannelKind::Out),
        ("mail:6001", 75, ChannelKind::Out),
        ("mail:6001", 1 << 20, ChannelKind::Out),
        ("mail:6001", 10, ChannelKind::In),
        ("mail:6001", 1 << 40, ChannelKind::In),
    ] {
        let r = match kind {
            ChannelKind::Out => lab.proxy.out_channel_opened(lab.now, c, target, length),
            ChannelKind::In => lab.proxy.in_channel_opened(lab.now, c, target, length),
        };
        assert!(
            matches!(
                r,
                Err(ProxyError::BadTarget(_) | ProxyError::DeclaredLength { .. })
            ),
            "{target} {length}: {r:?}"
        );
        assert_eq!(
            lab.proxy.poll_output(),
            Some(ProxyOutput::CloseChannel {
                channel: c,
                status: Some(HttpStatus::BAD_REQUEST)
            })
        );
        assert!(matches!(
            lab.proxy.poll_output(),
            Some(ProxyOutput::Ended { .. })
        ));
    }
    assert_eq!(lab.proxy.channels(), 0);
    // A window outside 8 KiB..256 KiB, a version that is not 1.
    let i = lab.open(30, 100, true);
    let err = lab.out(i, &lab.sides[i].client.conn_a1()).unwrap_err();
    assert_eq!(err, ProxyError::ReceiveWindow(100));
    let b1 = RtsPdu::conn_b1(2, Uuid::NIL, Uuid::NIL, 1, 1, Uuid::NIL);
    assert_eq!(lab.send(i, &rts(&b1)), Err(ProxyError::Version(2)));
    // One virtual connection at most: the second is refused with 503.
    lab.connect(31, 0x4_0000, true);
    let i = lab.open(32, 0x4_0000, true);
    let err = lab.out(i, &lab.sides[i].client.conn_a1()).unwrap_err();
    assert_eq!(err, ProxyError::TooManyVirtualConnections(1));
    assert_eq!(
        lab.sides[i].closed[&lab.sides[i].out],
        Some(HttpStatus::SERVICE_UNAVAILABLE)
    );
}

#[test]
fn a_target_nothing_serves_ends_the_virtual_connection() {
    let mut lab = Lab::new(ProxyConfig::default());
    let out = lab.channel();
    lab.proxy
        .out_channel_opened(lab.now, out, "mail:7777", 76)
        .unwrap();
    let client = RpchClient::new(
        RpchCookies::from_seed(33),
        0x4_0000,
        true,
        ClientAssociation::new(ClientConfig::default()),
    );
    lab.proxy
        .channel_data(lab.now, out, &client.conn_a1())
        .unwrap();
    let outputs = lab.backends.pump(&mut lab.proxy, lab.now);
    assert!(matches!(outputs[0], ProxyOutput::StartOutResponse { .. }));
    assert!(matches!(
        outputs.last(),
        Some(ProxyOutput::Ended {
            reason: ProxyError::BackendClosed,
            ..
        })
    ));
    assert!(outputs.contains(&ProxyOutput::CloseChannel {
        channel: out,
        status: None
    }));
    assert_eq!(lab.proxy.virtual_connections(), 0);
}

#[test]
fn unknown_channels_and_backends_are_typed_errors() {
    let mut proxy = RpcProxy::new(ProxyConfig::default());
    let now = Duration::ZERO;
    assert_eq!(
        proxy.channel_data(now, ChannelId(9), b"x"),
        Err(ProxyError::UnknownChannel(ChannelId(9)))
    );
    assert_eq!(
        proxy.backend_data(now, BackendId(9), b"x"),
        Err(ProxyError::UnknownBackend(BackendId(9)))
    );
    proxy
        .out_channel_opened(now, ChannelId(1), EXCHANGE, 76)
        .unwrap();
    assert_eq!(
        proxy.in_channel_opened(now, ChannelId(1), EXCHANGE, 1 << 20),
        Err(ProxyError::ChannelInUse(ChannelId(1)))
    );
    assert_eq!(proxy.poll_output(), None);
    // A channel that sends nothing is refused at the pairing timeout.
    proxy.handle_timeout(Duration::from_secs(30));
    assert_eq!(
        proxy.poll_output(),
        Some(ProxyOutput::CloseChannel {
            channel: ChannelId(1),
            status: Some(HttpStatus::BAD_REQUEST)
        })
    );
}

/// Binds to the sized interface and asks for a response of `len` octets.
fn ask_for(lab: &mut Lab, i: usize, len: u32) -> Result<(), ProxyError> {
    sized_bind(lab, i);
    let call = lab.sides[i]
        .client
        .association
        .call(0, 0, None, &len.to_le_bytes())
        .unwrap();
    lab.send(i, &call.fragments[0])
}

#[test]
fn back_end_octets_past_the_queue_limit_end_the_virtual_connection() {
    let mut lab = sized_lab(ProxyConfig {
        max_out_queue: 0x2000,
        ..ProxyConfig::default()
    });
    let i = lab.connect(40, 0x2000, false);
    let clean = lab.connect(41, 0x4_0000, true);
    // The endpoint writes the whole 20,000-octet response at once; an 8 KiB window
    // leaves more than 8 KiB of it waiting.
    ask_for(&mut lab, i, 20_000).unwrap();
    assert!(matches!(
        lab.ended_reason(i),
        Some(ProxyError::OutQueueFull(_))
    ));
    assert_eq!(lab.sides[i].closed[&lab.sides[i].out], None);
    assert_eq!(lab.backends.open(), 1);
    ask_for(&mut lab, clean, 20_000).unwrap();
    assert!(matches!(
        lab.rpc_events(clean).as_slice(),
        [ClientEvent::Response { .. }]
    ));
}

#[test]
fn an_out_channel_whose_client_does_not_recycle_stops_short_of_its_content_length() {
    let mut lab = sized_lab(ProxyConfig {
        out_content_length: 0x4000,
        ..ProxyConfig::default()
    });
    lab.answer_out = false;
    let i = lab.connect(42, 0x4_0000, true);
    ask_for(&mut lab, i, 20_000).unwrap();
    // RPC PDUs stop before the lifetime less the 4 KiB reserve for RTS PDUs; the rest
    // waits for a successor the client never opens.
    assert_eq!(lab.sides[i].steps, [RpchEvent::OutR2A2]);
    let info = lab.info(i).unwrap();
    assert!(info.out_queued > 0);
    let written: usize = lab.sides[i].wire.iter().map(|(_, b)| b.len()).sum();
    assert!(written <= 0x4000 - 4096, "{written}");
    // Its pings answered eat the reserve, then the lifetime is spent.
    let mut sent = 0;
    while lab.info(i).is_some() {
        let _ = lab.send(i, &rts(&RtsPdu::ping()));
        sent += 1;
        assert!(sent < 300);
    }
    assert_eq!(
        lab.ended_reason(i),
        Some(ProxyError::OutChannelSpent(0x4000))
    );
    let written: usize = lab.sides[i].wire.iter().map(|(_, b)| b.len()).sum();
    assert!(written <= 0x4000 && written > 0x4000 - 20, "{written}");
}

#[test]
fn an_out_recycling_the_client_does_not_complete_ends_at_the_pairing_timeout() {
    let (mut lab, i) = asked_to_recycle(43);
    assert_eq!(lab.sides[i].steps, [RpchEvent::OutR2A2]);
    ends_at_the_pairing_timeout(&mut lab, i, ChannelKind::Out);
}

/// A sized lab whose client does not answer OUT_R2/A2, asked for a response that starts
/// the recycling of its 16 KiB OUT channel.
fn asked_to_recycle(seed: u64) -> (Lab, usize) {
    let mut lab = sized_lab(ProxyConfig {
        out_content_length: 0x4000,
        ..ProxyConfig::default()
    });
    lab.answer_out = false;
    let i = lab.connect(seed, 0x4_0000, true);
    ask_for(&mut lab, i, 20_000).unwrap();
    (lab, i)
}

/// The recycling under way now ends its virtual connection 30 s on, not earlier.
fn ends_at_the_pairing_timeout(lab: &mut Lab, i: usize, kind: ChannelKind) {
    assert_eq!(
        lab.proxy.poll_timeout(),
        Some(lab.now + Duration::from_secs(30))
    );
    lab.advance(Duration::from_secs(29));
    assert!(lab.info(i).is_some());
    lab.advance(Duration::from_secs(1));
    assert_eq!(lab.ended_reason(i), Some(ProxyError::RecycleTimeout(kind)));
}

#[test]
fn a_fragment_past_the_limit_ends_its_virtual_connection_before_it_is_held() {
    // A request header announcing 0x5000 octets, past the 16 KiB limit.
    let mut header = vec![5, 0, 0, 3, 0x10, 0, 0, 0, 0, 0x50, 0, 0, 1, 0, 0, 0];
    let (lab, err) = broken_next_to_clean(|lab, i| lab.send(i, &header));
    assert!(matches!(err, ProxyError::Framing(_)), "{err}");
    assert_eq!(lab.proxy.buffered(), 0);
    // The same from the back-end side: the proxy refuses what it would have to hold.
    header[2] = 2;
    let mut lab = sized_lab(ProxyConfig::default());
    let i = lab.connect(43, 0x4_0000, true);
    let backend = lab.info(i).unwrap().backend.unwrap();
    let err = lab
        .proxy
        .backend_data(lab.now, backend, &header)
        .unwrap_err();
    assert!(matches!(err, ProxyError::Framing(_)), "{err}");
    lab.settle();
    assert_eq!(lab.ended_reason(i), Some(err));
}

#[test]
fn establishment_writes_conn_a3_then_conn_c2_as_the_spec_lays_them_out() {
    let mut proxy = RpcProxy::new(ProxyConfig::default());
    let now = Duration::ZERO;
    let client = RpchClient::new(
        RpchCookies::from_seed(44),
        0x4_0000,
        true,
        ClientAssociation::new(ClientConfig::default()),
    );
    let (out, inc) = (ChannelId(1), ChannelId(2));
    proxy.out_channel_opened(now, out, EXCHANGE, 76).unwrap();
    proxy
        .in_channel_opened(now, inc, EXCHANGE, 1 << 30)
        .unwrap();
    proxy.channel_data(now, out, &client.conn_a1()).unwrap();
    let outputs: Vec<ProxyOutput> = std::iter::from_fn(|| proxy.poll_output()).collect();
    let target = Target::parse(EXCHANGE).unwrap();
    assert_eq!(
        outputs,
        [
            ProxyOutput::StartOutResponse {
                channel: out,
                content_length: 0x4000_0000
            },
            ProxyOutput::ConnectBackend {
                backend: BackendId(1),
                target
            },
            // [MS-RPCH] 2.2.4.4: 28 octets.
            ProxyOutput::Write {
                channel: out,
                bytes: rts(&RtsPdu::conn_a3(120_000))
            },
        ]
    );
    proxy.channel_data(now, inc, &client.conn_b1()).unwrap();
    let c2 = rts(&RtsPdu::conn_c2(1, 0x4_0000, 120_000));
    assert_eq!(c2.len(), 44);
    assert_eq!(
        proxy.poll_output(),
        Some(ProxyOutput::Write {
            channel: out,
            bytes: c2
        })
    );
    assert_eq!(proxy.poll_output(), None);
}

#[test]
fn virtual_connections_with_one_association_group_id_share_the_back_end_group() {
    let mut lab = Lab::new(ProxyConfig::default());
    let first = lab.connect(1, 0x4_0000, true);
    let g1 = lab.bind_ntlm(first);
    // A second virtual connection of the same client (its CONN/B1 names the same
    // AssociationGroupId), and a third of another client.
    let second = lab.open(2, 0x4_0000, true);
    lab.sides[second].client.rts.cookies.association_group =
        lab.sides[first].client.rts.cookies.association_group;
    let a1 = lab.sides[second].client.conn_a1();
    lab.out(second, &a1).unwrap();
    let b1 = lab.sides[second].client.conn_b1();
    lab.send(second, &b1).unwrap();
    let g2 = lab.bind_ntlm(second);
    let other = lab.connect(3, 0x4_0000, true);
    let g3 = lab.bind_ntlm(other);
    assert_eq!(g1, g2, "one client, one association group");
    assert_ne!(g1, g3, "another client, another group");
    let endpoints = lab._endpoints.as_ref().expect("endpoints");
    assert_eq!(endpoints.exchange.group_members(g1), 2);
    // Both still call through their own connection.
    lab.rfr_call(first);
    lab.rfr_call(second);
}

/// The PDUs written on `channel`, whole (a write may hold several).
fn pdus_on(wire: &[(ChannelId, Vec<u8>)], channel: ChannelId) -> Vec<Vec<u8>> {
    let mut stream: Vec<u8> = wire
        .iter()
        .filter(|(c, _)| *c == channel)
        .flat_map(|(_, b)| b.iter().copied())
        .collect();
    let mut pdus = Vec::new();
    while stream.len() >= 10 {
        let len = u16::from_le_bytes([stream[8], stream[9]]) as usize;
        pdus.push(stream.drain(..len).collect());
    }
    assert!(stream.is_empty(), "a partial PDU on {channel:?}");
    pdus
}

fn rts_of(pdu: &[u8]) -> Option<RtsPdu> {
    (pdu[2] == 20).then(|| RtsPdu::decode(pdu).unwrap().0)
}

/// A call to the sized interface for `len` octets (the stub padded to `stub_len`); its
/// response checked whole and alone.
fn sized_call(lab: &mut Lab, i: usize, len: u32) {
    let call = lab.sides[i]
        .client
        .association
        .call(0, 0, None, &len.to_le_bytes())
        .unwrap();
    for fragment in &call.fragments {
        lab.send(i, fragment).unwrap();
    }
    expect_sized_response(lab, i, call.call_id, len);
}

fn expect_sized_response(lab: &mut Lab, i: usize, id: u32, len: u32) {
    let events = lab.rpc_events(i);
    match events.as_slice() {
        [ClientEvent::Response { call_id, stub, .. }] if *call_id == id => {
            assert_eq!(stub.len(), len as usize);
            assert!(stub.iter().enumerate().all(|(j, b)| *b == j as u8));
        }
        other => panic!("not one response to call {id}: {other:?}"),
    }
}

fn recycle_out_under_load(c1_first: bool) {
    let mut lab = sized_lab(ProxyConfig {
        // The smallest lifetime [MS-RPCH] 2.1.2.1.4 allows.
        out_content_length: 0x2_0000,
        ..ProxyConfig::default()
    });
    lab.c1_first = c1_first;
    let i = lab.connect(50, 0x1_0000, true);
    sized_bind(&mut lab, i);
    for k in 0..40 {
        sized_call(&mut lab, i, 20_000 + k);
    }
    let info = lab.info(i).unwrap();
    let n = info.out_recycles;
    // 40 responses of 20 KB (800 KB) through channels of 128 KiB that recycle from 64 KiB
    // on: about 80 KB each.
    assert_eq!(n, 10);
    let side = &lab.sides[i];
    use RpchEvent::{OutR2A2, OutR2A6, OutR2B3};
    assert_eq!(
        side.steps,
        (0..n)
            .flat_map(|_| [OutR2A2, OutR2A6, OutR2B3])
            .collect::<Vec<_>>()
    );
    assert_eq!(side.past.len() as u64, n);
    assert_eq!(side.started.len() as u64, n + 1);
    assert!(side.started.values().all(|l| *l == 0x2_0000));
    for channel in &side.past {
        assert_eq!(
            side.closed[channel], None,
            "a predecessor closed with a status"
        );
        let pdus = pdus_on(&side.wire, *channel);
        let total: usize = pdus.iter().map(Vec::len).sum();
        assert!(total <= 0x2_0000, "{total} octets on a 128 KiB channel");
        let last = rts_of(pdus.last().unwrap()).expect("an RTS PDU last");
        assert!(last.is(RtsPduKind::OutR2B3), "{last:?}");
    }
    assert_eq!(info.out_channel, Some(side.out));
    assert_eq!(info.out_queued, 0);
    assert!(side.closed.is_empty() || side.closed.keys().all(|c| side.past.contains(c)));
}

#[test]
fn the_out_channel_recycles_under_load_and_each_call_gets_one_response() {
    recycle_out_under_load(true);
}

#[test]
fn the_out_channel_recycles_when_out_r2_c1_comes_after_out_r2_a7() {
    recycle_out_under_load(false);
}

/// One OUT recycling step by step: OUT_R2/A2 once the lifetime runs short, OUT_R2/A6
/// on OUT_R2/A3, the switch on OUT_R2/A7, the successor's response on the switch (C1
/// first) or on OUT_R2/C1 (A7 first).
fn out_recycling_step_by_step(c1_first: bool) {
    let mut lab = sized_lab(ProxyConfig {
        out_content_length: 0x4000,
        ..ProxyConfig::default()
    });
    lab.answer_out = false;
    let i = lab.connect(51, 0x2000, true);
    sized_bind(&mut lab, i);
    // About 6.3 KB: short of the 8 KiB where recycling starts.
    sized_call(&mut lab, i, 6000);
    assert!(lab.sides[i].steps.is_empty());
    let call = lab.sides[i]
        .client
        .association
        .call(0, 0, None, &6000u32.to_le_bytes())
        .unwrap();
    lab.send(i, &call.fragments[0]).unwrap();
    assert_eq!(lab.sides[i].steps, [RpchEvent::OutR2A2]);
    // What passed 12 KiB (the lifetime less the RTS reserve) waits.
    let info = lab.info(i).unwrap();
    assert!(info.out_queued > 0, "{info:?}");
    assert!(lab.rpc_events(i).is_empty());
    let pred = lab.sides[i].out;
    lab.recycle_step(i, &RpchEvent::OutR2A2);
    lab.settle();
    assert_eq!(lab.sides[i].steps, [RpchEvent::OutR2A2, RpchEvent::OutR2A6]);
    let succ = lab.sides[i].out_successor.unwrap();
    assert!(!lab.sides[i].started.contains_key(&succ));
    assert_eq!(lab.info(i).unwrap().out_channel, Some(pred));
    let (a7, c1) = lab.sides[i].client.rts.out_recycle_a7_c1().unwrap();
    assert_eq!(c1.len(), 24);
    if c1_first {
        lab.proxy.channel_data(lab.now, succ, &c1).unwrap();
        lab.settle();
        assert!(!lab.sides[i].started.contains_key(&succ));
        lab.send(i, &a7).unwrap();
    } else {
        lab.send(i, &a7).unwrap();
        // Switched: B3 ended the predecessor; the successor waits for its C1.
        assert_eq!(lab.info(i).unwrap().out_channel, Some(succ));
        assert!(!lab.sides[i].started.contains_key(&succ));
        assert!(lab.rpc_events(i).is_empty());
        lab.proxy.channel_data(lab.now, succ, &c1).unwrap();
        lab.settle();
    }
    assert_eq!(
        lab.sides[i].steps,
        [RpchEvent::OutR2A2, RpchEvent::OutR2A6, RpchEvent::OutR2B3]
    );
    assert_eq!(lab.sides[i].started[&succ], 0x4000);
    expect_sized_response(&mut lab, i, call.call_id, 6000);
    let side = &lab.sides[i];
    assert_eq!(side.closed[&pred], None);
    // The predecessor: establishment, RPC PDUs, then the recycling steps, B3 last.
    let pred_pdus = pdus_on(&side.wire, pred);
    let rts: Vec<RtsPdu> = pred_pdus.iter().filter_map(|p| rts_of(p)).collect();
    let kinds = [
        RtsPduKind::ConnA3,
        RtsPduKind::ConnC2,
        RtsPduKind::OutR2A2,
        RtsPduKind::OutR2A6,
        RtsPduKind::OutR2B3,
    ];
    assert_eq!(rts.len(), kinds.len(), "{rts:?}");
    for (pdu, kind) in rts.iter().zip(kinds) {
        assert!(pdu.is(kind), "{pdu:?} is no {kind:?}");
    }
    assert!(rts_of(pred_pdus.last().unwrap()).is_some());
    let total: usize = pred_pdus.iter().map(Vec::len).sum();
    assert!(total <= 0x4000 && total > 0x4000 - 4096 - 1432, "{total}");
    // The successor: the rest of the response, RPC PDUs only, none twice.
    let succ_pdus = pdus_on(&side.wire, succ);
    assert!(!succ_pdus.is_empty());
    assert!(succ_pdus.iter().all(|p| p[2] == 2), "only response PDUs");
    assert_eq!(lab.info(i).unwrap().out_recycles, 1);
    assert_eq!(lab.info(i).unwrap().out_queued, 0);
    lab.answer_out = true;
    sized_call(&mut lab, i, 6000);
}

#[test]
fn out_recycling_writes_the_spec_steps_in_order_c1_first() {
    out_recycling_step_by_step(true);
}

#[test]
fn out_recycling_writes_the_spec_steps_in_order_a7_first() {
    out_recycling_step_by_step(false);
}

#[test]
fn the_in_channel_recycles_and_calls_go_on_on_the_successor() {
    let mut lab = Lab::new(ProxyConfig::default());
    let i = lab.connect(60, 0x4_0000, true);
    lab.bind_ntlm(i);
    lab.rfr_call(i);
    for n in 1..=3 {
        let pred = lab.sides[i].inc;
        let received = lab.info(i).unwrap().in_bytes_received;
        lab.recycle_in(i).unwrap();
        let succ = lab.sides[i].inc;
        assert_ne!(succ, pred);
        assert_eq!(lab.sides[i].closed[&pred], None);
        let info = lab.info(i).unwrap();
        assert_eq!(info.in_channel, Some(succ));
        assert_eq!(info.in_recycles, n);
        // The flow-control count goes on across the switch.
        assert_eq!(info.in_bytes_received, received);
        lab.rfr_call(i);
        assert!(lab.info(i).unwrap().in_bytes_received > received);
    }
    assert_eq!(lab.sides[i].steps, vec![RpchEvent::InR2A4; 3]);
    assert_eq!(lab.proxy.channels(), 2);
}

#[test]
fn client_pdus_on_a_successor_before_in_r2_a5_follow_the_predecessors() {
    let mut lab = sized_lab(ProxyConfig::default());
    lab.answer_in = false;
    let i = lab.connect(61, 0x4_0000, true);
    sized_bind(&mut lab, i);
    lab.recycle_in(i).unwrap();
    assert_eq!(lab.sides[i].steps, [RpchEvent::InR2A4]);
    let (pred, succ) = (lab.sides[i].inc, lab.sides[i].in_successor.unwrap());
    // A request in three fragments: the first on the predecessor, the other two on the
    // successor, where the proxy sees them before IN_R2/A5.
    let mut stub = 3000u32.to_le_bytes().to_vec();
    stub.resize(3000, 7);
    let call = lab.sides[i]
        .client
        .association
        .call(0, 0, None, &stub)
        .unwrap();
    assert_eq!(call.fragments.len(), 3);
    lab.send(i, &call.fragments[0]).unwrap();
    for fragment in &call.fragments[1..] {
        lab.proxy.channel_data(lab.now, succ, fragment).unwrap();
    }
    lab.settle();
    assert!(lab.rpc_events(i).is_empty());
    let held: usize = call.fragments[1..].iter().map(Vec::len).sum();
    assert!(lab.info(i).unwrap().buffered >= held);
    let a5 = lab.sides[i].client.rts.in_recycle_a5().unwrap();
    lab.proxy.channel_data(lab.now, pred, &a5).unwrap();
    lab.settle();
    expect_sized_response(&mut lab, i, call.call_id, 3000);
    lab.sides[i].inc = succ;
    lab.sides[i].in_successor = None;
    assert_eq!(lab.sides[i].closed[&pred], None);
    let info = lab.info(i).unwrap();
    assert_eq!(info.in_channel, Some(succ));
    assert_eq!(info.buffered, 0);
    sized_call(&mut lab, i, 100);
}

/// Opens a new IN channel for side `i` and sends `first` on it.
fn new_in_channel(lab: &mut Lab, i: usize, first: &RtsPdu) -> (ChannelId, Result<(), ProxyError>) {
    let channel = lab.channel();
    lab.proxy
        .in_channel_opened(lab.now, channel, EXCHANGE, 1 << 30)
        .unwrap();
    lab.sides[i].in_successor = Some(channel);
    let r = lab.proxy.channel_data(lab.now, channel, &rts(first));
    lab.settle();
    (channel, r)
}

fn recycle_cookies(lab: &Lab, i: usize, predecessor: RtsCookie) -> RecycleCookies {
    RecycleCookies {
        virtual_connection: lab.cookie(i),
        predecessor,
        successor: Uuid::new(7, 7, 7, [7; 8]),
    }
}

#[test]
fn in_recycling_naming_another_predecessor_is_refused_alone() {
    let mut lab = Lab::new(ProxyConfig::default());
    let i = lab.connect(68, 0x4_0000, true);
    lab.bind_ntlm(i);
    let a1 = RtsPdu::in_r2_a1(1, recycle_cookies(&lab, i, Uuid::NIL));
    let (channel, r) = new_in_channel(&mut lab, i, &a1);
    let want = ProxyError::RecyclePredecessor {
        kind: ChannelKind::In,
        expected: lab.sides[i].client.rts.cookies.in_channel,
        got: Uuid::NIL,
    };
    assert_eq!(r, Err(want.clone()));
    assert_eq!(
        lab.sides[i].closed,
        HashMap::from([(channel, Some(HttpStatus::BAD_REQUEST))])
    );
    assert_eq!(lab.ended, [(None, Some(channel), want)]);
    lab.sides[i].in_successor = None;
    lab.rfr_call(i);
    // The client's own recycling goes on as if nothing happened.
    lab.recycle_in(i).unwrap();
    assert_eq!(lab.info(i).unwrap().in_recycles, 1);
    lab.rfr_call(i);
}

#[test]
fn in_recycling_for_an_unknown_virtual_connection_is_refused_alone() {
    let mut lab = Lab::new(ProxyConfig::default());
    let i = lab.connect(62, 0x4_0000, true);
    lab.bind_ntlm(i);
    let mut cookies = recycle_cookies(&lab, i, lab.sides[i].client.rts.cookies.in_channel);
    cookies.virtual_connection = Uuid::new(9, 9, 9, [9; 8]);
    let channel = lab.channel();
    lab.proxy
        .in_channel_opened(lab.now, channel, EXCHANGE, 1 << 30)
        .unwrap();
    let want = ProxyError::RecycleUnknownConnection {
        kind: ChannelKind::In,
    };
    let a1 = rts(&RtsPdu::in_r2_a1(1, cookies));
    refused_alone(&mut lab, channel, &a1, want);
    lab.rfr_call(i);
}

/// `first` on `channel` is refused with `want`: a 400 and the close of that channel, and
/// nothing else.
fn refused_alone(lab: &mut Lab, channel: ChannelId, first: &[u8], want: ProxyError) {
    let err = lab.proxy.channel_data(lab.now, channel, first).unwrap_err();
    assert_eq!(err, want);
    assert_eq!(
        lab.proxy.poll_output(),
        Some(ProxyOutput::CloseChannel {
            channel,
            status: Some(HttpStatus::BAD_REQUEST)
        })
    );
    assert_eq!(
        lab.proxy.poll_output(),
        Some(ProxyOutput::Ended {
            cookie: None,
            channel: Some(channel),
            reason: want
        })
    );
    assert_eq!(lab.proxy.poll_output(), None);
}

#[test]
fn in_recycling_before_the_virtual_connection_opens_ends_it() {
    let mut lab = Lab::new(ProxyConfig::default());
    let i = lab.open(63, 0x4_0000, true);
    let b1 = lab.sides[i].client.conn_b1();
    lab.send(i, &b1).unwrap();
    let pred = lab.sides[i].client.rts.cookies.in_channel;
    let a1 = RtsPdu::in_r2_a1(1, recycle_cookies(&lab, i, pred));
    let (channel, r) = new_in_channel(&mut lab, i, &a1);
    let want = ProxyError::RecycleOutOfState {
        kind: ChannelKind::In,
        got: "IN_R2/A1".into(),
        state: "the virtual connection is not open",
    };
    assert_eq!(r, Err(want.clone()));
    assert_eq!(lab.ended_reason(i), Some(want));
    assert_eq!(lab.sides[i].closed[&channel], Some(HttpStatus::BAD_REQUEST));
    assert_eq!(
        lab.sides[i].closed[&lab.sides[i].inc],
        Some(HttpStatus::BAD_REQUEST)
    );
}

#[test]
fn a_third_in_channel_while_one_recycles_ends_the_virtual_connection() {
    let (_, err) = broken_next_to_clean(|lab, i| {
        lab.answer_in = false;
        lab.recycle_in(i).unwrap();
        let pred = lab.sides[i].client.rts.cookies.in_channel;
        let a1 = RtsPdu::in_r2_a1(1, recycle_cookies(lab, i, pred));
        new_in_channel(lab, i, &a1).1
    });
    assert_eq!(
        err,
        ProxyError::RecycleOutOfState {
            kind: ChannelKind::In,
            got: "IN_R2/A1".into(),
            state: "a successor IN channel is opening already",
        }
    );
}

#[test]
fn in_r2_a5_naming_another_successor_ends_the_virtual_connection() {
    let (lab, err) = broken_next_to_clean(|lab, i| {
        lab.answer_in = false;
        lab.recycle_in(i).unwrap();
        lab.send(i, &rts(&RtsPdu::in_r2_a5(Uuid::NIL)))
    });
    let successor = lab.sides[1].client.rts.cookies.in_channel;
    assert!(matches!(
        err,
        ProxyError::RecycleSuccessor { kind: ChannelKind::In, got, expected }
            if got == Uuid::NIL && expected != successor
    ));
}

#[test]
fn an_in_recycling_the_client_does_not_complete_ends_at_the_pairing_timeout() {
    let mut lab = Lab::new(ProxyConfig::default());
    lab.answer_in = false;
    let i = lab.connect(64, 0x4_0000, true);
    lab.bind_ntlm(i);
    lab.recycle_in(i).unwrap();
    ends_at_the_pairing_timeout(&mut lab, i, ChannelKind::In);
}

#[test]
fn out_r2_a3_naming_another_predecessor_is_refused_alone() {
    let (mut lab, i) = asked_to_recycle(65);
    assert_eq!(lab.sides[i].steps, [RpchEvent::OutR2A2]);
    let channel = lab.channel();
    lab.proxy
        .out_channel_opened(lab.now, channel, EXCHANGE, 120)
        .unwrap();
    lab.sides[i].out_successor = Some(channel);
    let a3 = RtsPdu::out_r2_a3(1, recycle_cookies(&lab, i, Uuid::NIL), 0x4_0000);
    let err = lab
        .proxy
        .channel_data(lab.now, channel, &rts(&a3))
        .unwrap_err();
    lab.settle();
    let want = ProxyError::RecyclePredecessor {
        kind: ChannelKind::Out,
        expected: lab.sides[i].client.rts.cookies.out_channel,
        got: Uuid::NIL,
    };
    assert_eq!(err, want);
    assert_eq!(lab.ended, [(None, Some(channel), want)]);
    assert_eq!(
        lab.sides[i].closed,
        HashMap::from([(channel, Some(HttpStatus::BAD_REQUEST))])
    );
    // The client's own successor still comes in, and the response with it.
    lab.answer_out = true;
    lab.recycle_step(i, &RpchEvent::OutR2A2);
    lab.settle();
    let events = lab.rpc_events(i);
    assert!(
        matches!(events.as_slice(), [ClientEvent::Response { stub, .. }] if stub.len() == 20_000),
        "{events:?}"
    );
    // 20,000 octets through 16 KiB channels: a second recycling on the way.
    assert_eq!(lab.info(i).unwrap().out_recycles, 2);
}

#[test]
fn out_r2_a7_naming_another_successor_ends_the_virtual_connection() {
    let (mut lab, i) = asked_to_recycle(66);
    lab.recycle_step(i, &RpchEvent::OutR2A2);
    lab.settle();
    assert_eq!(lab.sides[i].steps, [RpchEvent::OutR2A2, RpchEvent::OutR2A6]);
    let err = lab
        .send(i, &rts(&RtsPdu::out_r2_a7(Uuid::NIL, 1)))
        .unwrap_err();
    assert!(
        matches!(
            err,
            ProxyError::RecycleSuccessor {
                kind: ChannelKind::Out,
                got,
                ..
            } if got == Uuid::NIL
        ),
        "{err}"
    );
    assert_eq!(lab.ended_reason(i), Some(err));
}

#[test]
fn rfr_calls_through_the_lab_endpoint_recycle_the_out_channel_and_each_gets_one_response() {
    let mut lab = Lab::new(ProxyConfig {
        out_content_length: 0x2_0000,
        ..ProxyConfig::default()
    });
    let i = lab.connect(67, 0x2000, true);
    lab.bind_ntlm(i);
    // About 100 octets a response: 4,000 calls pass three 128 KiB channels.
    for _ in 0..4000 {
        // rfr_call asserts exactly one response, to this call.
        lab.rfr_call(i);
    }
    let info = lab.info(i).unwrap();
    assert_eq!(info.out_recycles, 3);
    assert_eq!(info.out_queued, 0);
    let side = &lab.sides[i];
    assert_eq!(side.past.len(), 3);
    assert_eq!(side.steps.len(), 9);
    assert!(side.past.iter().all(|c| side.closed[c].is_none()));
}

#[test]
fn a_conn_b1_lifetime_past_the_declared_length_or_its_range_is_refused_alone() {
    let mut lab = Lab::new(ProxyConfig::default());
    let clean = lab.connect(69, 0x4_0000, true);
    let cookies = RpchCookies::from_seed(70);
    let b1 = |lifetime| {
        rts(&RtsPdu::conn_b1(
            1,
            cookies.virtual_connection,
            cookies.in_channel,
            lifetime,
            300_000,
            cookies.association_group,
        ))
    };
    // A 1 MiB request body claiming a 1 GiB lifetime; 64 KiB, under the range.
    for (declared, lifetime) in [(1u64 << 20, 1u32 << 30), (1 << 30, 0x1_0000)] {
        let channel = lab.channel();
        lab.proxy
            .in_channel_opened(lab.now, channel, EXCHANGE, declared)
            .unwrap();
        let want = ProxyError::ChannelLifetime { lifetime, declared };
        refused_alone(&mut lab, channel, &b1(lifetime), want);
    }
    assert_eq!(lab.proxy.virtual_connections(), 1);
    lab.bind_ntlm(clean);
    lab.rfr_call(clean);
}

#[test]
fn pings_answered_while_the_successor_waits_for_its_c1_are_held_within_the_reserve() {
    let (mut lab, i) = asked_to_recycle(71);
    lab.recycle_step(i, &RpchEvent::OutR2A2);
    lab.settle();
    let (a7, _) = lab.sides[i].client.rts.out_recycle_a7_c1().unwrap();
    lab.send(i, &a7).unwrap();
    // Switched, the successor plugged until OUT_R2/C1: the answers to pings wait.
    let succ = lab.sides[i].out;
    assert!(!lab.sides[i].started.contains_key(&succ));
    let ping = rts(&RtsPdu::ping());
    let mut taken = 0;
    let err = loop {
        match lab.send(i, &ping) {
            Ok(()) => taken += 1,
            Err(e) => break e,
        }
        assert!(taken < 1000);
    };
    // 4,096 octets of 20-octet Pings: 204 held, the 205th over.
    assert_eq!(taken, 204);
    assert_eq!(err, ProxyError::PluggedFull(4100));
    assert_eq!(lab.ended_reason(i), Some(err));
}

fn test_cookie(n: u8) -> RtsCookie {
    Uuid::new(u32::from(n), 0, 0, [n; 8])
}

#[test]
fn a_channel_whose_body_ends_before_its_first_pdu_is_refused() {
    let mut proxy = RpcProxy::new(ProxyConfig::default());
    let now = Duration::ZERO;
    // An IN channel declaring 96 octets, legal for IN_R2/A1 (88), sends 96 octets of a
    // 104-octet CONN/B1.
    proxy
        .in_channel_opened(now, ChannelId(1), "mail:6001", 96)
        .unwrap();
    let b1 = RtsPdu::conn_b1(
        1,
        test_cookie(1),
        test_cookie(2),
        0x4000_0000,
        300_000,
        test_cookie(3),
    )
    .encode()
    .unwrap();
    proxy.channel_data(now, ChannelId(1), &b1[..96]).unwrap();
    assert_eq!(
        proxy.channel_body_ended(now, ChannelId(1)),
        Err(ProxyError::BodyEndedEarly(ChannelKind::In))
    );
    let outputs: Vec<ProxyOutput> = std::iter::from_fn(|| proxy.poll_output()).collect();
    assert!(outputs.contains(&ProxyOutput::CloseChannel {
        channel: ChannelId(1),
        status: Some(HttpStatus::BAD_REQUEST),
    }));
    assert_eq!(proxy.channels(), 0);
    // A channel that joined its virtual connection is not refused by its body's end.
    proxy
        .out_channel_opened(now, ChannelId(2), "mail:6001", 76)
        .unwrap();
    let a1 = RtsPdu::conn_a1(1, test_cookie(1), test_cookie(4), 0x1_0000)
        .encode()
        .unwrap();
    proxy.channel_data(now, ChannelId(2), &a1).unwrap();
    assert_eq!(proxy.channel_body_ended(now, ChannelId(2)), Ok(()));
}
