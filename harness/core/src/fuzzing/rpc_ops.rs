//! DCE/RPC association targets on the lab's RPC endpoints ([`RpcEndpoints::for_world`]
//! on the default world: the endpoint mapper, RFR and NTLM), built afresh per input from
//! a world built once (the NTLM challenges are seeded, so an input replays byte for byte):
//!
//! * `dcerpc_server_bytes`: a client byte stream, cut into chunks, into a server
//!   [`Association`]: every write frames as whole PDUs within the endpoint's max_frag,
//!   nothing is written after [`Output::Close`], the association holds less than one
//!   fragment, and an EOF closes it.
//! * `dcerpc_server_ops`: operation lists on two interleaved associations driven by the
//!   project's client ([`ClientAssociation`] with [`NtlmClientSecurity`]): binds with or
//!   without NTLM (right or wrong password, any level, legs tampered or not),
//!   alter_context, calls with any opnum and stub in fragments cut anywhere, octet flips
//!   of signed or sealed requests, raw octets, EOF. A clean association (right
//!   password or none, nothing tampered or raw) gets exactly one answer per call and a
//!   response for every valid call; a tampered protected request never reaches the
//!   interface, nor does anything after it; a wrong password never gets a response;
//!   what one association suffers does not change the other's answers.
//! * `dcerpc_client_hostile`: hostile server octets to a client association after its
//!   bind: typed errors, the association dead after one, bounded buffers.
//! * `dcerpc_interface_calls`: opnums and stubs straight into the endpoint mapper and
//!   RFR: every response stub decodes with the interface's reader; run-down ends the
//!   connection's lookups.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arbitrary::Unstructured;
use harness_wire::dcerpc::{Pdu, PduFramer};

use super::ops::{account, byte, choice, default_world, flag, raw};
use crate::dcerpc::client::{
    AuthLevel, ClientAssociation, ClientConfig, ClientEvent, ContextElement, SyntaxId, Uuid,
};
use crate::dcerpc::endpoints::{RpcEndpoints, RpcLabConfig};
use crate::dcerpc::epm::{self, EpmInterface};
use crate::dcerpc::known_calls::{ntlm_bind, primary_context, KnownInterface};
use crate::dcerpc::rfr;
use crate::dcerpc::server::{Association, EndpointConfig};
use crate::dcerpc::{CallContext, CallOutcome, RpcInterface};
use crate::ntlm::Credentials;
use crate::session::{Output, ServerSession};
use crate::world::World;

const NOW: Duration = Duration::from_secs(1);

/// Operations played per input at most.
pub const MAX_OPS: usize = 48;

/// The default world, built once per process and shared (the RPC endpoints only read
/// its directory).
fn world() -> Option<Arc<World>> {
    static WORLD: OnceLock<Option<Arc<World>>> = OnceLock::new();
    WORLD.get_or_init(|| default_world().map(Arc::new)).clone()
}

/// The lab's RPC configuration with a fixed seed and clock.
pub fn lab_config() -> RpcLabConfig {
    RpcLabConfig {
        exchange_port: 6001,
        exchange_ip: [127, 0, 0, 1],
        endpoint: EndpointConfig::default(),
        seed: 15,
        unix_now: 1_700_000_000,
        kerberos_clock: None,
    }
}

/// The endpoint mapper for a clear bit, RFR (the Exchange endpoint) for a set one.
fn which_of(bit: bool) -> KnownInterface {
    if bit {
        KnownInterface::Rfr
    } else {
        KnownInterface::Epm
    }
}

/// The lab's endpoints with every interface call recorded by connection id.
pub struct Lab {
    pub endpoints: RpcEndpoints,
    reached: Arc<Mutex<Vec<(&'static str, u64)>>>,
}

/// An interface that records the connection of every call reaching it (connection ids
/// count per endpoint, so with the interface's name).
struct Recorder {
    inner: Arc<dyn RpcInterface>,
    reached: Arc<Mutex<Vec<(&'static str, u64)>>>,
}

impl RpcInterface for Recorder {
    fn syntax(&self) -> SyntaxId {
        self.inner.syntax()
    }
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn opnum_count(&self) -> u16 {
        self.inner.opnum_count()
    }
    fn call(&self, ctx: &CallContext<'_>, opnum: u16, stub: &[u8]) -> CallOutcome {
        self.reached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((self.inner.name(), ctx.connection_id));
        self.inner.call(ctx, opnum, stub)
    }
    fn rundown(&self, connection_id: u64) {
        self.inner.rundown(connection_id)
    }
}

impl Lab {
    pub fn new() -> Option<Lab> {
        let world = world()?;
        let reached = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&reached);
        let endpoints = RpcEndpoints::for_world_wrapped(
            &world,
            &lab_config(),
            Default::default(),
            &move |inner| {
                Arc::new(Recorder {
                    inner,
                    reached: Arc::clone(&log),
                })
            },
        );
        Some(Lab { endpoints, reached })
    }

    pub fn accept(&self, which: KnownInterface) -> Association {
        match which {
            KnownInterface::Epm => self.endpoints.epm.accept(NOW),
            KnownInterface::Rfr => self.endpoints.exchange.accept(NOW),
        }
    }

    /// Calls that reached the interface of `which` on its connection `id`.
    pub fn reached(&self, which: KnownInterface, id: u64) -> usize {
        let name = match which {
            KnownInterface::Epm => "epm",
            KnownInterface::Rfr => "rfr",
        };
        let log = self.reached.lock().unwrap_or_else(|e| e.into_inner());
        log.iter().filter(|&&c| c == (name, id)).count()
    }
}

/// What the server wrote, checked as it comes: whole PDUs within `max_frag`, nothing
/// after the close.
pub struct ServerWrites {
    max_frag: u16,
    pub closed: bool,
}

impl ServerWrites {
    pub fn new(max_frag: u16) -> ServerWrites {
        ServerWrites {
            max_frag,
            closed: false,
        }
    }

    /// Polls every output of `assoc`; returns the octets written (each write whole PDUs).
    pub fn drain(&mut self, assoc: &mut Association) -> Vec<u8> {
        let mut written = Vec::new();
        while let Some(out) = assoc.poll_output() {
            match out {
                Output::Write(bytes) => {
                    assert!(!self.closed, "a write after Output::Close");
                    let mut framer = PduFramer::new(self.max_frag);
                    let mut pdus: Vec<Pdu> = Vec::new();
                    let framed = framer.push(&bytes, &mut pdus);
                    assert!(framed.is_ok(), "{framed:?}: {bytes:02x?}");
                    assert_eq!(framer.buffered(), 0, "a write ends inside a PDU");
                    assert!(!pdus.is_empty(), "an empty write");
                    written.extend_from_slice(&bytes);
                }
                Output::Close => {
                    assert!(!self.closed, "two closes");
                    self.closed = true;
                }
                Output::StartTls => panic!("an RPC association asked for TLS"),
            }
        }
        assert_eq!(assoc.is_closed(), self.closed);
        written
    }
}

/// Feeds `bytes` in pieces of `chunk` and checks the buffering after each.
fn feed(assoc: &mut Association, bytes: &[u8], chunk: usize, max_frag: u16) {
    for piece in bytes.chunks(chunk.max(1)) {
        assoc.handle_input(NOW, piece);
        assert!(assoc.buffered() <= usize::from(max_frag));
    }
}

/// Fuzz target `dcerpc_server_bytes`: octet 0 picks the endpoint (bit 0) and octet 1 the
/// chunk size (1 to 256); the rest is the client's stream.
pub fn dcerpc_server_bytes(data: &[u8]) {
    let [pick, chunk, stream @ ..] = data else {
        return;
    };
    let Some(lab) = Lab::new() else {
        return;
    };
    let which = which_of(pick & 1 == 1);
    let max_frag = EndpointConfig::default().max_frag;
    let mut assoc = lab.accept(which);
    let mut writes = ServerWrites::new(max_frag);
    for piece in stream.chunks(1 + usize::from(*chunk)) {
        feed(&mut assoc, piece, piece.len(), max_frag);
        writes.drain(&mut assoc);
    }
    assoc.handle_eof(NOW);
    writes.drain(&mut assoc);
    assert!(writes.closed, "EOF did not close");
}

/// How a bind authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    None,
    Ntlm {
        level: AuthLevel,
        user: u8,
        right: bool,
    },
}

/// An octet flip: at `at` (modulo the length) XOR `mask` (made non-zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flip {
    pub fragment: u8,
    pub at: u16,
    pub mask: u8,
}

/// A bind through the client (and its auth3 leg).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindOp {
    pub auth: Auth,
    /// max_xmit_frag and max_recv_frag offered, by index into [`FRAG_SIZES`].
    pub frag: u8,
    /// Offer bind-time feature negotiation (multiplexing, keep on orphan).
    pub features: bool,
    /// An extra presentation context (id 1-3) of any syntax.
    pub extra: Option<(u8, u8)>,
    /// Flip an octet of the auth3 leg.
    pub tamper_leg: Option<Flip>,
    pub chunk: u8,
}

/// One operation of `dcerpc_server_ops`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Bind(BindOp),
    Alter {
        contexts: Vec<(u8, u8)>,
    },
    Call {
        context: u8,
        /// A valid call of the interface (by index), or any opnum and stub.
        call: CallKind,
        flip: Option<Flip>,
        chunk: u8,
    },
    Raw(Vec<u8>),
    Eof,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallKind {
    Valid(u8),
    Any { opnum: u16, stub: Vec<u8> },
}

/// Fragment sizes a bind offers: the floor, Samba's, impacket's, Windows'.
pub const FRAG_SIZES: [u16; 4] = [1432, 2048, 4280, 5840];

/// One operation on session 0 or 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub session: u8,
    pub action: Action,
}

fn read_flip(u: &mut Unstructured<'_>) -> Option<Flip> {
    flag(u).then(|| Flip {
        fragment: byte(u),
        at: u16::from_le_bytes([byte(u), byte(u)]),
        mask: byte(u),
    })
}

fn write_flip(s: &mut Vec<u8>, flip: &Option<Flip>) {
    match flip {
        None => s.push(0),
        Some(f) => {
            let at = f.at.to_le_bytes();
            s.extend_from_slice(&[1, f.fragment, at[0], at[1], f.mask]);
        }
    }
}

fn read_pair(u: &mut Unstructured<'_>) -> (u8, u8) {
    (byte(u), byte(u))
}

impl Op {
    pub fn read(u: &mut Unstructured<'_>) -> Op {
        let session = byte(u) % 2;
        let action = match choice(u, 5) {
            0 => Action::Bind(BindOp {
                auth: match choice(u, 4) {
                    0 => Auth::None,
                    level => Auth::Ntlm {
                        level: [
                            AuthLevel::CONNECT,
                            AuthLevel::PKT_INTEGRITY,
                            AuthLevel::PKT_PRIVACY,
                        ][usize::from(level - 1)],
                        user: byte(u),
                        right: flag(u),
                    },
                },
                frag: byte(u),
                features: flag(u),
                extra: flag(u).then(|| read_pair(u)),
                tamper_leg: read_flip(u),
                chunk: byte(u),
            }),
            1 => Action::Alter {
                contexts: (0..1 + choice(u, 3)).map(|_| read_pair(u)).collect(),
            },
            2 => Action::Call {
                context: byte(u),
                call: match flag(u) {
                    false => CallKind::Valid(byte(u)),
                    true => CallKind::Any {
                        // Past 255 every opnum is refused alike.
                        opnum: u16::from(byte(u)),
                        stub: raw(u),
                    },
                },
                flip: read_flip(u),
                chunk: byte(u),
            },
            3 => Action::Raw(raw(u)),
            _ => Action::Eof,
        };
        Op { session, action }
    }

    /// The octets [`Op::read`] takes back as this operation (seeds).
    pub fn write(&self, s: &mut Vec<u8>) {
        s.push(self.session);
        match &self.action {
            Action::Bind(op) => {
                s.push(0);
                match op.auth {
                    Auth::None => s.push(0),
                    Auth::Ntlm { level, user, right } => {
                        s.push(match level {
                            AuthLevel::CONNECT => 1,
                            AuthLevel::PKT_INTEGRITY => 2,
                            _ => 3,
                        });
                        s.extend_from_slice(&[user, u8::from(right)]);
                    }
                }
                s.extend_from_slice(&[op.frag, u8::from(op.features)]);
                match op.extra {
                    None => s.push(0),
                    Some((a, b)) => s.extend_from_slice(&[1, a, b]),
                }
                write_flip(s, &op.tamper_leg);
                s.push(op.chunk);
            }
            Action::Alter { contexts } => {
                s.extend_from_slice(&[1, contexts.len().saturating_sub(1) as u8]);
                for (a, b) in contexts {
                    s.extend_from_slice(&[*a, *b]);
                }
            }
            Action::Call {
                context,
                call,
                flip,
                chunk,
            } => {
                s.extend_from_slice(&[2, *context]);
                match call {
                    CallKind::Valid(i) => s.extend_from_slice(&[0, *i]),
                    CallKind::Any { opnum, stub } => {
                        s.extend_from_slice(&[1, *opnum as u8, stub.len() as u8]);
                        s.extend_from_slice(stub);
                    }
                }
                write_flip(s, flip);
                s.push(*chunk);
            }
            Action::Raw(bytes) => {
                s.extend_from_slice(&[3, bytes.len() as u8]);
                s.extend_from_slice(bytes);
            }
            Action::Eof => s.push(4),
        }
    }
}

/// A presentation context from two choice octets: id 1-3, a syntax (the endpoint's,
/// the other endpoint's, any) and a transfer syntax (NDR, NDR64, feature bits).
fn context_of(which: KnownInterface, (a, b): (u8, u8)) -> ContextElement {
    let abstract_syntax = match a % 4 {
        0 | 1 => which.syntax(),
        2 => which_of(which == KnownInterface::Epm).syntax(),
        _ => SyntaxId::new(Uuid::new(u32::from(a), 1, 2, [b; 8]), 1, 0),
    };
    let transfer = match b % 3 {
        0 => SyntaxId::NDR20,
        1 => SyntaxId::NDR64,
        _ => SyntaxId::bind_time_features(u64::from(b >> 2) & 3),
    };
    ContextElement {
        context_id: 1 + u16::from(a >> 2) % 3,
        abstract_syntax,
        transfer_syntaxes: vec![transfer],
    }
}

fn flipped(bytes: &mut [u8], flip: Flip) {
    if bytes.is_empty() {
        return;
    }
    let at = usize::from(flip.at) % bytes.len();
    bytes[at] ^= flip.mask.max(1);
}

/// One association and the client driving it.
struct Side {
    which: KnownInterface,
    assoc: Association,
    client: ClientAssociation,
    writes: ServerWrites,
    /// The NTLM password given (right or wrong), when the bind authenticated.
    password_right: Option<bool>,
    level: AuthLevel,
    bound: bool,
    /// Nothing but the client's own octets, untampered, and no EOF: every call answered.
    clean: bool,
    /// Raw octets went in: no claim about who could log on.
    raw: bool,
    /// Interface calls on this connection when a protected request was tampered with:
    /// none may follow.
    reached_at_tamper: Option<usize>,
    /// The client refused the server's octets (the association is dead).
    client_failed: bool,
    responses: usize,
}

impl Side {
    fn new(lab: &Lab, which: KnownInterface) -> Side {
        Side {
            which,
            assoc: lab.accept(which),
            client: ClientAssociation::new(ClientConfig::default()),
            writes: ServerWrites::new(EndpointConfig::default().max_frag),
            password_right: None,
            level: AuthLevel::NONE,
            bound: false,
            clean: true,
            raw: false,
            reached_at_tamper: None,
            client_failed: false,
            responses: 0,
        }
    }

    /// Sends octets, takes the server's answer to the client; returns its events.
    fn exchange(&mut self, bytes: &[u8], chunk: u8) -> Vec<ClientEvent> {
        let max_frag = EndpointConfig::default().max_frag;
        feed(&mut self.assoc, bytes, 1 + usize::from(chunk), max_frag);
        let written = self.writes.drain(&mut self.assoc);
        let mut events = Vec::new();
        if written.is_empty() || self.client_failed {
            return events;
        }
        if let Err(e) = self.client.receive(&written, &mut events) {
            assert!(!self.clean, "a clean association's answer refused: {e}");
            self.client_failed = true;
        }
        self.responses += events
            .iter()
            .filter(|e| matches!(e, ClientEvent::Response { .. }))
            .count();
        events
    }

    fn protected(&self) -> bool {
        self.password_right.is_some()
            && matches!(
                self.level,
                AuthLevel::PKT_INTEGRITY | AuthLevel::PKT_PRIVACY
            )
    }
}

/// Fuzz target `dcerpc_server_ops`: octet 0 picks each session's endpoint (bits 0, 1),
/// then operations (at most [`MAX_OPS`]).
pub fn dcerpc_server_ops(data: &[u8]) {
    run_ops(data);
}

/// Plays `dcerpc_server_ops`; returns the responses each session's client got.
pub fn run_ops(data: &[u8]) -> [usize; 2] {
    let Some(lab) = Lab::new() else {
        return [0; 2];
    };
    let mut u = Unstructured::new(data);
    let pick = byte(&mut u);
    let mut sides = [
        Side::new(&lab, which_of(pick & 1 == 1)),
        Side::new(&lab, which_of(pick & 2 == 2)),
    ];
    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        let op = Op::read(&mut u);
        let side = &mut sides[usize::from(op.session % 2)];
        play(&lab, side, op.action);
    }
    for side in &mut sides {
        side.assoc.handle_eof(NOW);
        side.writes.drain(&mut side.assoc);
        assert!(side.writes.closed);
        check_side(&lab, side);
    }
    sides.map(|side| side.responses)
}

/// What must hold of a side at any time.
fn check_side(lab: &Lab, side: &Side) {
    let reached = lab.reached(side.which, side.assoc.connection_id());
    if let Some(at) = side.reached_at_tamper {
        assert_eq!(
            reached, at,
            "a call reached the interface after a tampered PDU"
        );
    }
    if side.password_right == Some(false) && !side.raw {
        assert_eq!(side.responses, 0, "a response after a wrong password");
        assert_eq!(
            reached, 0,
            "a call reached the interface after a wrong password"
        );
    }
}

fn play(lab: &Lab, side: &mut Side, action: Action) {
    match action {
        Action::Bind(op) => bind(side, op),
        Action::Alter { contexts } => {
            let contexts: Vec<ContextElement> = contexts
                .into_iter()
                .map(|c| context_of(side.which, c))
                .collect();
            if let Ok(bytes) = side.client.alter_context(&contexts) {
                let events = side.exchange(&bytes, 255);
                if side.clean {
                    assert!(
                        matches!(events.as_slice(), [ClientEvent::AlterContextAcked(_)]),
                        "{events:?}"
                    );
                }
            }
        }
        Action::Call {
            context,
            call,
            flip,
            chunk,
        } => {
            let context = u16::from(context % 4);
            let valid = side.which.valid_calls();
            let (opnum, stub, is_valid) = match call {
                CallKind::Valid(i) => {
                    let (opnum, stub) = valid[usize::from(i) % valid.len()].clone();
                    (opnum, stub, context == 0)
                }
                CallKind::Any { opnum, stub } => (opnum, stub, false),
            };
            let Ok(out) = side.client.call(context, opnum, None, &stub) else {
                return;
            };
            let before = lab.reached(side.which, side.assoc.connection_id());
            let mut fragments = out.fragments;
            if let Some(f) = flip {
                let n = fragments.len();
                flipped(&mut fragments[usize::from(f.fragment) % n], f);
                side.clean = false;
                if side.protected() && side.reached_at_tamper.is_none() {
                    side.reached_at_tamper = Some(before);
                }
            }
            let events = side.exchange(&fragments.concat(), chunk);
            if side.clean {
                let answers: Vec<&ClientEvent> = events
                    .iter()
                    .filter(|e| match e {
                        ClientEvent::Response { call_id, .. }
                        | ClientEvent::Fault { call_id, .. } => *call_id == out.call_id,
                        _ => false,
                    })
                    .collect();
                assert_eq!(answers.len(), 1, "{events:?}");
                if is_valid {
                    assert!(
                        matches!(answers[0], ClientEvent::Response { .. }),
                        "a valid call on a clean association: {events:?}"
                    );
                }
            }
        }
        Action::Raw(bytes) => {
            side.clean = false;
            side.raw = true;
            side.exchange(&bytes, 255);
        }
        Action::Eof => {
            side.clean = false;
            side.assoc.handle_eof(NOW);
            side.writes.drain(&mut side.assoc);
        }
    }
    check_side(lab, side);
}

fn bind(side: &mut Side, op: BindOp) {
    let BindOp {
        auth,
        frag,
        features,
        extra,
        tamper_leg,
        chunk,
    } = op;
    if side.bound {
        return;
    }
    side.bound = true;
    let size = FRAG_SIZES[usize::from(frag) % FRAG_SIZES.len()];
    side.client = ClientAssociation::new(ClientConfig {
        max_xmit_frag: size,
        max_recv_frag: size,
        bind_time_features: features.then_some(3),
        ..ClientConfig::default()
    });
    let mut contexts = vec![primary_context(side.which)];
    contexts.extend(extra.map(|c| context_of(side.which, c)));
    let security = match auth {
        Auth::None => None,
        Auth::Ntlm { level, user, right } => {
            let (name, password) = account(user, right);
            side.password_right = Some(right);
            side.level = level;
            Some(ntlm_bind(Credentials::example(name, password), level))
        }
    };
    let Ok(bytes) = side.client.bind(&contexts, security) else {
        side.clean = false;
        return;
    };
    let events = side.exchange(&bytes, chunk);
    let leg = events.iter().find_map(|e| match e {
        ClientEvent::Send(b) => Some(b.clone()),
        _ => None,
    });
    if side.clean {
        assert!(
            events
                .iter()
                .any(|e| matches!(e, ClientEvent::BindAcked(_))),
            "{events:?}"
        );
    }
    if let Some(mut leg) = leg {
        if let Some(f) = tamper_leg {
            flipped(&mut leg, f);
            side.clean = false;
        }
        let events = side.exchange(&leg, chunk);
        assert!(
            events.is_empty() || !side.clean,
            "an answer to auth3: {events:?}"
        );
    }
    if side.password_right == Some(false) {
        side.clean = false;
    }
}

/// Fuzz target `dcerpc_client_hostile`: octet 0 picks the client's security (bits 0-1:
/// none, NTLM at integrity, privacy, connect), feature negotiation (bit 2) and the chunk
/// size (bits 3-7, 1 to 32 octets); the rest is what the server sends. Once the client
/// is ready it makes a call (three at most), so responses have a call to answer.
pub fn dcerpc_client_hostile(data: &[u8]) {
    run_client(data);
}

/// Plays `dcerpc_client_hostile`; returns the responses the client took.
pub fn run_client(data: &[u8]) -> usize {
    let [mode, stream @ ..] = data else {
        return 0;
    };
    const MAX_STUB: usize = 64 * 1024;
    let mut client = ClientAssociation::new(ClientConfig {
        max_response_stub: MAX_STUB,
        bind_time_features: (mode & 4 != 0).then_some(3),
        ..ClientConfig::default()
    });
    let level = [
        None,
        Some(AuthLevel::PKT_INTEGRITY),
        Some(AuthLevel::PKT_PRIVACY),
        Some(AuthLevel::CONNECT),
    ][usize::from(mode & 3)];
    let security = level.map(|level| ntlm_bind(Credentials::example("alice", "secret"), level));
    let contexts = [primary_context(KnownInterface::Rfr)];
    if client.bind(&contexts, security).is_err() {
        return 0;
    }
    let mut calls = 0;
    let mut responses = 0;
    let mut failed = false;
    for piece in stream.chunks(1 + usize::from(mode >> 3)) {
        let mut events = Vec::new();
        let result = client.receive(piece, &mut events);
        assert!(client.buffered() <= usize::from(u16::MAX));
        for e in &events {
            match e {
                ClientEvent::Response { stub, .. } => {
                    assert!(stub.len() <= MAX_STUB);
                    responses += 1;
                }
                ClientEvent::Send(bytes) => assert!(bytes.len() <= usize::from(u16::MAX)),
                _ => {}
            }
        }
        if failed {
            assert!(result.is_err(), "the client lived on after an error");
        }
        if let Err(e) = result {
            assert!(!e.to_string().is_empty());
            failed = true;
            assert!(!client.is_ready());
        }
        if client.is_ready() && client.outstanding_calls() == 0 && calls < 3 {
            calls += 1;
            let stub = rfr::vectors::impacket_get_new_dsa();
            if let Ok(call) = client.call(0, 0, None, &stub) {
                assert!(call
                    .fragments
                    .iter()
                    .all(|f| f.len() <= usize::from(client.max_xmit_frag())));
            }
        }
    }
    responses
}

/// Fuzz target `dcerpc_interface_calls`: records of (interface and connection octet,
/// opnum octet, stub as a length octet and octets) into one endpoint mapper and one RFR
/// of the lab; then both connections are run down.
pub fn dcerpc_interface_calls(data: &[u8]) {
    let Some(lab) = Lab::new() else {
        return;
    };
    let epm = EpmInterface::new(Arc::clone(&lab.endpoints.map));
    let rfr = Arc::clone(&lab.endpoints.rfr);
    let mut u = Unstructured::new(data);
    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        let pick = byte(&mut u);
        let opnum_octet = byte(&mut u);
        // Mostly the interfaces' own opnums, sometimes any.
        let opnum = match pick & 0x80 {
            0 => u16::from(opnum_octet % 8),
            _ => u16::from(opnum_octet) << 8 | u16::from(pick & 0x7f),
        };
        let stub = raw(&mut u);
        let ctx = CallContext::unauthenticated(1 + u64::from(pick >> 1 & 1));
        let interface: &dyn RpcInterface = if pick & 1 == 0 { &epm } else { &*rfr };
        let outcome = interface.call(&ctx, opnum, &stub);
        let CallOutcome::Response(answer) = outcome else {
            continue;
        };
        assert!(opnum < interface.opnum_count());
        check_answer(pick & 1 == 0, opnum, &answer);
    }
    for connection in [1, 2] {
        epm.rundown(connection);
        assert_eq!(epm.open_lookups(connection), 0);
    }
}

/// A response stub decodes with the reader a client would use.
fn check_answer(is_epm: bool, opnum: u16, answer: &[u8]) {
    match (is_epm, opnum) {
        (true, epm::OPNUM_EPT_LOOKUP) => {
            let decoded = epm::decode_lookup_response(answer);
            assert!(decoded.is_ok(), "{decoded:?}: {answer:02x?}");
        }
        (true, epm::OPNUM_EPT_MAP) => {
            let decoded = epm::decode_map_response(answer);
            assert!(decoded.is_ok(), "{decoded:?}: {answer:02x?}");
        }
        // The NULL handle and EPT_S_OK.
        (true, epm::OPNUM_EPT_LOOKUP_HANDLE_FREE) => assert_eq!(answer, &[0; 24][..]),
        (true, _) => panic!("epm opnum {opnum} answered"),
        (false, 0) => {
            let decoded = rfr::decode_get_new_dsa_response(answer);
            assert!(decoded.is_ok(), "{decoded:?}: {answer:02x?}");
        }
        (false, 1) => {
            let decoded = rfr::decode_fqdn_response(answer);
            assert!(decoded.is_ok(), "{decoded:?}: {answer:02x?}");
        }
        (false, _) => panic!("rfr opnum {opnum} answered"),
    }
}

/// A session the project's client drives against the lab: binds (NTLM as alice at
/// `level`, right or wrong password, or none), makes `calls` once ready. Returns the
/// client's octets and the server's, each in order.
#[cfg(test)]
pub(crate) fn recorded_session(
    which: KnownInterface,
    level: Option<AuthLevel>,
    right: bool,
    features: bool,
    calls: &[(u16, Vec<u8>)],
) -> (Vec<u8>, Vec<u8>) {
    let lab = Lab::new().unwrap();
    let mut assoc = lab.accept(which);
    let mut writes = ServerWrites::new(EndpointConfig::default().max_frag);
    let mut client = ClientAssociation::new(ClientConfig {
        max_response_stub: 64 * 1024,
        bind_time_features: features.then_some(3),
        ..ClientConfig::default()
    });
    let password = if right { "secret" } else { "wrong" };
    let security = level.map(|level| ntlm_bind(Credentials::example("alice", password), level));
    let contexts = [primary_context(which)];
    let (mut sent, mut got) = (Vec::new(), Vec::new());
    let mut send = |bytes: &[u8], client: &mut ClientAssociation, sent: &mut Vec<u8>| {
        sent.extend_from_slice(bytes);
        assoc.handle_input(NOW, bytes);
        let written = writes.drain(&mut assoc);
        got.extend_from_slice(&written);
        let mut events = Vec::new();
        client.receive(&written, &mut events).unwrap();
        for e in events {
            if let ClientEvent::Send(leg) = e {
                sent.extend_from_slice(&leg);
                assoc.handle_input(NOW, &leg);
                assert!(writes.drain(&mut assoc).is_empty());
            }
        }
    };
    let bind = client.bind(&contexts, security).unwrap();
    send(&bind, &mut client, &mut sent);
    assert!(client.is_ready());
    for (opnum, stub) in calls {
        let call = client.call(0, *opnum, None, stub).unwrap();
        send(&call.fragments.concat(), &mut client, &mut sent);
    }
    (sent, got)
}

/// Seeds of the four targets: sessions recorded from the project's client, operation
/// lists, and the interfaces' valid calls.
#[cfg(test)]
pub(crate) fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let privacy = Some(AuthLevel::PKT_PRIVACY);
    let integrity = Some(AuthLevel::PKT_INTEGRITY);
    let mut out = Vec::new();
    let sessions = [
        ("rfr-sealed", KnownInterface::Rfr, privacy, true, false),
        (
            "rfr-signed-features",
            KnownInterface::Rfr,
            integrity,
            true,
            true,
        ),
        ("rfr-anonymous", KnownInterface::Rfr, None, true, false),
        (
            "rfr-wrong-password",
            KnownInterface::Rfr,
            privacy,
            false,
            false,
        ),
        ("epm-sealed", KnownInterface::Epm, privacy, true, false),
        ("epm-anonymous", KnownInterface::Epm, None, true, false),
    ];
    for (name, which, level, right, features) in sessions {
        let (client, server) = recorded_session(which, level, right, features, which.valid_calls());
        let mut bytes = vec![u8::from(which == KnownInterface::Rfr), 255];
        bytes.extend_from_slice(&client);
        out.push(("dcerpc_server_bytes", name, bytes));
        // The hostile-client target calls RfrGetNewDSA once it is ready; an endpoint
        // mapper session's answers come to it as a server that says other things.
        let server = match which {
            KnownInterface::Rfr => {
                recorded_session(which, level, right, features, &which.valid_calls()[..1]).1
            }
            KnownInterface::Epm => server,
        };
        let mode = match level {
            None => 0,
            Some(AuthLevel::PKT_INTEGRITY) => 1,
            _ => 2,
        } | if features { 4 } else { 0 }
            | 0xf8;
        let mut bytes = vec![mode];
        bytes.extend_from_slice(&server);
        out.push(("dcerpc_client_hostile", name, bytes));
    }
    for (name, ops) in op_seeds() {
        let mut bytes = vec![name.len() as u8 & 3];
        for op in ops {
            op.write(&mut bytes);
        }
        out.push(("dcerpc_server_ops", name, bytes));
    }
    let mut calls = Vec::new();
    for (pick, which) in [(0u8, KnownInterface::Epm), (1, KnownInterface::Rfr)] {
        for (opnum, stub) in which.valid_calls() {
            calls.extend_from_slice(&[pick, *opnum as u8, stub.len() as u8]);
            calls.extend_from_slice(stub);
        }
    }
    out.push(("dcerpc_interface_calls", "every-valid-call", calls));
    out
}

#[cfg(test)]
fn op_seeds() -> Vec<(&'static str, Vec<Op>)> {
    let op = |session, action| Op { session, action };
    let ntlm = |level, right| Auth::Ntlm {
        level,
        user: 0,
        right,
    };
    let bind = |auth, tamper_leg| {
        Action::Bind(BindOp {
            auth,
            frag: 2,
            features: false,
            extra: None,
            tamper_leg,
            chunk: 255,
        })
    };
    let call = |i, flip| Action::Call {
        context: 0,
        call: CallKind::Valid(i),
        flip,
        chunk: 255,
    };
    let flip = Some(Flip {
        fragment: 0,
        at: 40,
        mask: 1,
    });
    vec![
        (
            "sealed-calls",
            vec![
                op(0, bind(ntlm(AuthLevel::PKT_PRIVACY, true), None)),
                op(0, call(0, None)),
                op(0, call(1, None)),
                op(1, bind(Auth::None, None)),
                op(1, call(0, None)),
            ],
        ),
        (
            "one-tampered-one-clean",
            vec![
                op(0, bind(ntlm(AuthLevel::PKT_INTEGRITY, true), None)),
                op(1, bind(ntlm(AuthLevel::PKT_PRIVACY, true), None)),
                op(1, call(0, flip)),
                op(0, call(0, None)),
                op(
                    0,
                    Action::Alter {
                        contexts: vec![(0, 0), (2, 0), (3, 2)],
                    },
                ),
                op(0, call(1, None)),
            ],
        ),
        (
            "wrong-password",
            vec![
                op(0, bind(ntlm(AuthLevel::PKT_PRIVACY, false), None)),
                op(0, call(0, None)),
                op(1, bind(ntlm(AuthLevel::CONNECT, true), None)),
                op(1, call(0, None)),
            ],
        ),
        (
            "fragments-raw",
            vec![
                op(
                    0,
                    Action::Bind(BindOp {
                        auth: ntlm(AuthLevel::PKT_PRIVACY, true),
                        frag: 0,
                        features: true,
                        extra: Some((5, 0)),
                        tamper_leg: None,
                        chunk: 3,
                    }),
                ),
                op(
                    0,
                    Action::Call {
                        context: 0,
                        call: CallKind::Any {
                            opnum: 1,
                            stub: vec![0x41; 200],
                        },
                        flip: None,
                        chunk: 7,
                    },
                ),
                op(1, Action::Raw(b"\x05\x00\x0b\x03garbage".to_vec())),
                op(0, call(0, None)),
                op(0, Action::Eof),
            ],
        ),
        (
            "tampered-leg",
            vec![
                op(0, bind(ntlm(AuthLevel::PKT_INTEGRITY, true), flip)),
                op(0, call(0, None)),
            ],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_seeds_read_back_and_reach_their_states() {
        for (name, ops) in op_seeds() {
            let mut bytes = vec![0];
            for op in &ops {
                op.write(&mut bytes);
            }
            let mut u = Unstructured::new(&bytes[1..]);
            let read: Vec<Op> = (0..ops.len()).map(|_| Op::read(&mut u)).collect();
            assert_eq!(read, ops, "{name}");
            assert!(u.is_empty(), "{name}");
        }
        let seeds = seeds();
        let ops = |name: &str| {
            let (_, _, data) = seeds
                .iter()
                .find(|(t, n, _)| *t == "dcerpc_server_ops" && *n == name)
                .unwrap();
            run_ops(data)
        };
        assert_eq!(ops("sealed-calls"), [2, 1]);
        let [clean, _] = ops("one-tampered-one-clean");
        assert_eq!(clean, 2);
        assert_eq!(ops("wrong-password"), [0, 1]);
        assert_eq!(ops("tampered-leg")[0], 0);
    }

    #[test]
    fn recorded_answers_satisfy_the_hostile_targets_client() {
        for (target, name, data) in seeds() {
            if target == "dcerpc_client_hostile" && name.starts_with("rfr-") {
                let want = usize::from(name != "rfr-wrong-password");
                assert_eq!(run_client(&data), want, "{name}");
            }
        }
    }

    /// The recorded client streams replay: the lab is seeded, so the sealed calls verify
    /// again and are answered.
    #[test]
    fn recorded_streams_replay_to_responses() {
        for (target, name, data) in seeds() {
            if target != "dcerpc_server_bytes" {
                continue;
            }
            // As the target does: a fresh lab, whose first challenge the recording saw.
            let lab = Lab::new().unwrap();
            let which = which_of(data[0] & 1 == 1);
            let mut assoc = lab.accept(which);
            assoc.handle_input(NOW, &data[2..]);
            let written = ServerWrites::new(5840).drain(&mut assoc);
            let mut pdus = Vec::new();
            PduFramer::new(5840).push(&written, &mut pdus).unwrap();
            let responses = pdus
                .iter()
                .filter(|p| matches!(p.body, harness_wire::dcerpc::PduBody::Response(_)))
                .count();
            let want = match name {
                "rfr-wrong-password" => 0,
                _ => which.valid_calls().len(),
            };
            assert_eq!(responses, want, "{name}");
        }
    }

    #[test]
    fn every_seed_plays() {
        for (target, _, data) in seeds() {
            assert!(super::super::run(target, &data));
        }
    }
}
