//! The server association driven PDU by PDU: binds and their results, association
//! groups, calls in fragments both ways, the faults of every refusal, and security
//! contexts through a toy provider (the NTLM one has its own tests; these check what the
//! association does with any provider).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness_wire::dcerpc::{
    protected_layout, AckReason, AckResult, Auth3, AuthLevel, AuthType, AuthVerifier, Bind,
    BindAck, ContextElement, FaultStatus, Pdu, PduBody, PduFramer, PfcFlags, RejectReason, Request,
    SyntaxId, Uuid,
};

use super::interface::{CallContext, CallOutcome, RpcInterface};
use super::security::{
    AcceptStep, MessageProtection, Principal, SecurityError, ServerSecurity, ServerSecurityFactory,
};
use super::server::{Association, AuthFailureFault, Endpoint, EndpointConfig};
use crate::session::{Output, ServerSession};

const ECHO: SyntaxId = SyntaxId::new(Uuid::new(0x1234_5678, 1, 2, [3; 8]), 1, 2);
const OTHER: SyntaxId = SyntaxId::new(Uuid::new(0x9999_0000, 1, 2, [3; 8]), 1, 0);
const NOW: Duration = Duration::from_secs(1);

/// Who called, as each call saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    opnum: u16,
    user: Option<String>,
    auth_context_id: Option<u32>,
    level: AuthLevel,
    assoc_group_id: u32,
}

/// Opnum 0 echoes the stub, opnum 1 faults with BAD_STUB_DATA; 2 opnums.
#[derive(Default)]
struct Echo {
    seen: Mutex<Vec<Seen>>,
    rundowns: Mutex<Vec<u64>>,
}

impl RpcInterface for Echo {
    fn syntax(&self) -> SyntaxId {
        ECHO
    }
    fn name(&self) -> &'static str {
        "echo"
    }
    fn opnum_count(&self) -> u16 {
        2
    }
    fn call(&self, ctx: &CallContext<'_>, opnum: u16, stub: &[u8]) -> CallOutcome {
        self.seen.lock().unwrap().push(Seen {
            opnum,
            user: ctx.principal.map(|p| p.user.clone()),
            auth_context_id: ctx.auth_context_id,
            level: ctx.auth_level,
            assoc_group_id: ctx.assoc_group_id,
        });
        match opnum {
            0 => CallOutcome::Response(stub.to_vec()),
            _ => CallOutcome::Fault(FaultStatus::BAD_STUB_DATA),
        }
    }
    fn rundown(&self, connection_id: u64) {
        self.rundowns.lock().unwrap().push(connection_id);
    }
}

/// A toy provider (auth_type NTLMSSP so the factory hands it out): leg 1 "hello" ->
/// "challenge"; leg 2 "user:password" logs on when the password is "secret". Signature:
/// sequence number and a sum over the signed octets; privacy XORs the stub with 0x5a.
/// Each side counts its own sequence, like NTLM.
#[derive(Default)]
struct Toy {
    legs: u8,
    principal: Option<Principal>,
    send_seq: u32,
    recv_seq: u32,
}

fn toy_signature(seq: u32, signed: &[u8]) -> Vec<u8> {
    let sum = signed.iter().enumerate().fold(0u32, |a, (i, &b)| {
        a.wrapping_mul(31).wrapping_add(b as u32 ^ i as u32)
    });
    let mut sig = seq.to_le_bytes().to_vec();
    sig.extend_from_slice(&sum.to_le_bytes());
    sig.resize(16, 0xee);
    sig
}

fn xor(data: &mut [u8]) {
    data.iter_mut().for_each(|b| *b ^= 0x5a);
}

impl Toy {
    fn wrap_as(
        seq: &mut u32,
        level: AuthLevel,
        pdu: &mut [u8],
        stub: std::ops::Range<usize>,
    ) -> Vec<u8> {
        let sig = toy_signature(*seq, pdu);
        *seq += 1;
        if level == AuthLevel::PKT_PRIVACY {
            xor(&mut pdu[stub]);
        }
        sig
    }

    fn unwrap_as(
        seq: &mut u32,
        level: AuthLevel,
        pdu: &mut [u8],
        stub: std::ops::Range<usize>,
        signature: &[u8],
    ) -> Result<(), SecurityError> {
        if level == AuthLevel::PKT_PRIVACY {
            xor(&mut pdu[stub]);
        }
        let want = toy_signature(*seq, pdu);
        *seq += 1;
        if want != signature {
            return Err(SecurityError::BadSignature);
        }
        Ok(())
    }
}

impl MessageProtection for Toy {
    fn signature_len(&self, _level: AuthLevel) -> usize {
        16
    }
    fn wrap(
        &mut self,
        level: AuthLevel,
        pdu: &mut [u8],
        stub: std::ops::Range<usize>,
    ) -> Result<Vec<u8>, SecurityError> {
        Ok(Toy::wrap_as(&mut self.send_seq, level, pdu, stub))
    }
    fn unwrap(
        &mut self,
        level: AuthLevel,
        pdu: &mut [u8],
        stub: std::ops::Range<usize>,
        signature: &[u8],
    ) -> Result<(), SecurityError> {
        Toy::unwrap_as(&mut self.recv_seq, level, pdu, stub, signature)
    }
}

impl ServerSecurity for Toy {
    fn auth_type(&self) -> AuthType {
        AuthType::NTLMSSP
    }
    fn accept(&mut self, token: &[u8]) -> Result<AcceptStep, SecurityError> {
        self.legs += 1;
        match (self.legs, token) {
            (1, b"hello") => Ok(AcceptStep::Continue(b"challenge".to_vec())),
            (2, creds) => {
                let creds = String::from_utf8_lossy(creds);
                let (user, password) = creds.split_once(':').unwrap_or(("", ""));
                if password != "secret" {
                    return Err(SecurityError::LogonFailed(user.into()));
                }
                let principal = Principal {
                    auth_type: AuthType::NTLMSSP,
                    user: user.into(),
                    domain: "EXAMPLE".into(),
                    workstation: "WS".into(),
                };
                self.principal = Some(principal.clone());
                Ok(AcceptStep::Done {
                    reply: None,
                    principal,
                })
            }
            _ => Err(SecurityError::BadToken("out of order".into())),
        }
    }
    fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }
}

struct ToyFactory;

impl ServerSecurityFactory for ToyFactory {
    fn new_context(&self, auth_type: AuthType) -> Option<Box<dyn ServerSecurity>> {
        (auth_type == AuthType::NTLMSSP)
            .then(|| Box::new(Toy::default()) as Box<dyn ServerSecurity>)
    }
}

struct Lab {
    endpoint: Arc<Endpoint>,
    echo: Arc<Echo>,
}

fn lab_with(config: EndpointConfig) -> Lab {
    let echo = Arc::new(Echo::default());
    let endpoint = Endpoint::new(
        config,
        vec![echo.clone() as Arc<dyn RpcInterface>],
        Some(Arc::new(ToyFactory)),
    );
    Lab { endpoint, echo }
}

fn new_lab() -> Lab {
    lab_with(EndpointConfig {
        secondary_address: "6001".into(),
        ..EndpointConfig::default()
    })
}

/// The client end of one connection: sends PDUs, collects the server's.
struct Conn {
    server: Association,
    framer: PduFramer,
    closed: bool,
    /// The client's half of the toy security context.
    send_seq: u32,
    recv_seq: u32,
}

impl Conn {
    fn open(lab: &Lab) -> Conn {
        Conn {
            server: lab.endpoint.accept(NOW),
            framer: PduFramer::new(u16::MAX),
            closed: false,
            send_seq: 0,
            recv_seq: 0,
        }
    }

    fn raw(&mut self, bytes: &[u8]) -> Vec<Pdu> {
        self.server.handle_input(NOW, bytes);
        self.drain()
    }

    fn drain(&mut self) -> Vec<Pdu> {
        let mut out = Vec::new();
        while let Some(o) = self.server.poll_output() {
            match o {
                Output::Write(bytes) => self.framer.push(&bytes, &mut out).unwrap(),
                Output::Close => self.closed = true,
                Output::StartTls => panic!("no TLS on DCE/RPC"),
            }
        }
        out
    }

    /// The octets the server wrote, unparsed.
    fn raw_replies(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.server.handle_input(NOW, bytes);
        let mut frames = Vec::new();
        let mut framer = PduFramer::new(u16::MAX);
        while let Some(o) = self.server.poll_output() {
            match o {
                Output::Write(b) => framer.push_frames(&b, &mut frames).unwrap(),
                Output::Close => self.closed = true,
                Output::StartTls => panic!("no TLS"),
            }
        }
        frames
    }

    fn send(&mut self, pdu: Pdu) -> Vec<Pdu> {
        self.raw(&pdu.encode().unwrap())
    }

    fn bind(&mut self, call_id: u32, bind: Bind, auth: Option<AuthVerifier>) -> Pdu {
        let mut pdu = Pdu::new(call_id, PfcFlags::WHOLE, PduBody::Bind(bind));
        pdu.auth = auth;
        one(self.send(pdu))
    }

    fn call(&mut self, call_id: u32, context_id: u16, opnum: u16, stub: &[u8]) -> Pdu {
        let body = PduBody::Request(Request {
            alloc_hint: stub.len() as u32,
            context_id,
            opnum,
            object: None,
            stub: stub.to_vec(),
        });
        one(self.send(Pdu::new(call_id, PfcFlags::WHOLE, body)))
    }

    /// Encodes a request protected under the toy context `ctx` at `level`.
    fn protected_request(
        &mut self,
        call_id: u32,
        ctx: u32,
        level: AuthLevel,
        stub: &[u8],
    ) -> Vec<u8> {
        let body = PduBody::Request(Request {
            alloc_hint: stub.len() as u32,
            context_id: 0,
            opnum: 0,
            object: None,
            stub: stub.to_vec(),
        });
        let mut pdu = Pdu::new(call_id, PfcFlags::WHOLE, body);
        pdu.auth = Some(verifier(ctx, level, vec![0; 16]));
        let mut bytes = pdu.encode().unwrap();
        let layout = protected_layout(&bytes).unwrap().unwrap();
        let (signed, sig) = bytes.split_at_mut(layout.signature.start);
        let value = Toy::wrap_as(&mut self.send_seq, level, signed, layout.stub);
        sig.copy_from_slice(&value);
        bytes
    }

    /// Checks and unseals a protected response; returns its stub.
    fn open_response(&mut self, mut frame: Vec<u8>, level: AuthLevel) -> Vec<u8> {
        let layout = protected_layout(&frame).unwrap().expect("a verifier");
        let (signed, sig) = frame.split_at_mut(layout.signature.start);
        Toy::unwrap_as(&mut self.recv_seq, level, signed, layout.stub, sig)
            .expect("server signature verifies");
        match Pdu::decode(&frame).unwrap().0.body {
            PduBody::Response(r) => r.stub,
            other => panic!("not a response: {other:?}"),
        }
    }
}

fn one(mut pdus: Vec<Pdu>) -> Pdu {
    assert_eq!(pdus.len(), 1, "one reply PDU: {pdus:?}");
    pdus.remove(0)
}

fn context(id: u16, abstract_syntax: SyntaxId, transfer: &[SyntaxId]) -> ContextElement {
    ContextElement {
        context_id: id,
        abstract_syntax,
        transfer_syntaxes: transfer.to_vec(),
    }
}

fn bind_of(contexts: Vec<ContextElement>) -> Bind {
    Bind {
        max_xmit_frag: 4280,
        max_recv_frag: 4280,
        assoc_group_id: 0,
        contexts,
    }
}

fn echo_bind() -> Bind {
    bind_of(vec![context(0, ECHO, &[SyntaxId::NDR20])])
}

fn verifier(ctx: u32, level: AuthLevel, value: Vec<u8>) -> AuthVerifier {
    AuthVerifier {
        auth_type: AuthType::NTLMSSP,
        auth_level: level,
        auth_context_id: ctx,
        auth_value: value,
    }
}

fn ack(pdu: &Pdu) -> &BindAck {
    match &pdu.body {
        PduBody::BindAck(a) | PduBody::AlterContextResp(a) => a,
        other => panic!("not an ack: {other:?}"),
    }
}

#[track_caller]
fn assert_fault(pdu: &Pdu, status: FaultStatus, did_not_execute: bool) {
    match &pdu.body {
        PduBody::Fault(f) => assert_eq!(f.status, status, "{pdu:?}"),
        other => panic!("not a fault: {other:?}"),
    }
    assert_eq!(
        pdu.flags.contains(PfcFlags::DID_NOT_EXECUTE),
        did_not_execute
    );
}

#[track_caller]
fn assert_nak(pdu: &Pdu, reason: RejectReason) {
    match &pdu.body {
        PduBody::BindNak(n) => {
            assert_eq!(n.reason, reason);
            assert_eq!(n.versions, vec![(5, 0), (5, 1)]);
        }
        other => panic!("not a bind_nak: {other:?}"),
    }
}

fn stub_of(pdu: &Pdu) -> &[u8] {
    match &pdu.body {
        PduBody::Response(r) => &r.stub,
        other => panic!("not a response: {other:?}"),
    }
}

/// Binds and runs the toy legs as `user` with `password` at `level`, context id 7.
fn logon(conn: &mut Conn, user: &str, password: &str, level: AuthLevel) -> Pdu {
    let reply = conn.bind(1, echo_bind(), Some(verifier(7, level, b"hello".to_vec())));
    let mut auth3 = Pdu::new(2, PfcFlags::WHOLE, PduBody::Auth3(Auth3::default()));
    auth3.auth = Some(verifier(
        7,
        level,
        format!("{user}:{password}").into_bytes(),
    ));
    assert_eq!(conn.send(auth3), [], "auth3 has no reply");
    reply
}

#[test]
fn bind_answers_every_context_in_order() {
    let lab = new_lab();
    let mut conn = Conn::open(&lab);
    let features = SyntaxId::bind_time_features(0x3 | 0x8);
    let reply = conn.bind(
        1,
        bind_of(vec![
            context(0, ECHO, &[SyntaxId::NDR64, SyntaxId::NDR20]),
            context(1, OTHER, &[SyntaxId::NDR20]),
            context(2, ECHO, &[SyntaxId::NDR64]),
            context(3, ECHO, &[features]),
            // Same interface, older minor: accepted; newer minor or major: not.
            context(4, SyntaxId::new(ECHO.uuid, 1, 1), &[SyntaxId::NDR20]),
            context(5, SyntaxId::new(ECHO.uuid, 1, 3), &[SyntaxId::NDR20]),
            context(6, SyntaxId::new(ECHO.uuid, 2, 0), &[SyntaxId::NDR20]),
        ]),
        None,
    );
    let a = ack(&reply);
    let got: Vec<(AckResult, AckReason, SyntaxId)> = a
        .results
        .iter()
        .map(|r| (r.result, r.reason, r.transfer_syntax))
        .collect();
    let nil = SyntaxId::default();
    let reject = AckResult::PROVIDER_REJECTION;
    assert_eq!(
        got,
        vec![
            (
                AckResult::ACCEPTANCE,
                AckReason::NOT_SPECIFIED,
                SyntaxId::NDR20
            ),
            (reject, AckReason::ABSTRACT_SYNTAX_NOT_SUPPORTED, nil),
            (
                reject,
                AckReason::PROPOSED_TRANSFER_SYNTAXES_NOT_SUPPORTED,
                nil
            ),
            (AckResult::NEGOTIATE_ACK, AckReason(0x3), nil),
            (
                AckResult::ACCEPTANCE,
                AckReason::NOT_SPECIFIED,
                SyntaxId::NDR20
            ),
            (reject, AckReason::ABSTRACT_SYNTAX_NOT_SUPPORTED, nil),
            (reject, AckReason::ABSTRACT_SYNTAX_NOT_SUPPORTED, nil),
        ]
    );
    assert_eq!(a.sec_addr, b"6001\0");
    assert_eq!((a.max_xmit_frag, a.max_recv_frag), (4280, 4280));
    assert_ne!(a.assoc_group_id, 0);
    assert_eq!(reply.call_id, 1);
    // Accepted contexts answer calls; rejected ones are unknown interfaces.
    assert_eq!(stub_of(&conn.call(2, 4, 0, b"abc")), b"abc");
    assert_fault(&conn.call(3, 2, 0, b"abc"), FaultStatus::NCA_S_UNK_IF, true);
    assert!(!conn.closed);
}

#[test]
fn frag_sizes_are_negotiated_down_and_floored() {
    let lab = new_lab();
    let mut conn = Conn::open(&lab);
    let mut bind = echo_bind();
    (bind.max_xmit_frag, bind.max_recv_frag) = (u16::MAX, 2000);
    let a = ack(&conn.bind(1, bind, None)).clone();
    assert_eq!((a.max_xmit_frag, a.max_recv_frag), (2000, 5840));
    // An alter_context_resp repeats what the bind negotiated.
    let alter = Pdu::new(2, PfcFlags::WHOLE, PduBody::AlterContext(echo_bind()));
    let resp = one(conn.send(alter));
    let a = ack(&resp);
    assert_eq!((a.max_xmit_frag, a.max_recv_frag), (2000, 5840));

    let mut conn = Conn::open(&lab);
    let mut bind = echo_bind();
    bind.max_recv_frag = 1431;
    assert_nak(
        &conn.bind(1, bind, None),
        RejectReason::LOCAL_LIMIT_EXCEEDED,
    );
    // Not bound: a call is a protocol error.
    assert_fault(
        &conn.call(2, 0, 0, b""),
        FaultStatus::NCA_S_PROTO_ERROR,
        true,
    );
    assert!(conn.closed);
}

#[test]
fn association_groups_are_joined_and_released() {
    let lab = new_lab();
    let mut first = Conn::open(&lab);
    let group = ack(&first.bind(1, echo_bind(), None)).assoc_group_id;
    assert_eq!(lab.endpoint.group_members(group), 1);
    let mut second = Conn::open(&lab);
    let mut bind = echo_bind();
    bind.assoc_group_id = group;
    assert_eq!(ack(&second.bind(1, bind, None)).assoc_group_id, group);
    assert_eq!(lab.endpoint.group_members(group), 2);
    second.call(2, 0, 0, b"x");
    assert_eq!(lab.echo.seen.lock().unwrap()[0].assoc_group_id, group);

    let mut stranger = Conn::open(&lab);
    let mut bind = echo_bind();
    bind.assoc_group_id = group + 1000;
    assert_nak(&stranger.bind(1, bind, None), RejectReason::NOT_SPECIFIED);

    let second_id = second.server.connection_id();
    second.server.handle_eof(NOW);
    second.drain();
    assert!(second.closed && second.server.is_closed());
    assert_eq!(lab.endpoint.group_members(group), 1);
    assert_eq!(*lab.echo.rundowns.lock().unwrap(), vec![second_id]);
    drop(first);
    assert_eq!(
        lab.endpoint.group_members(group),
        0,
        "dropping releases too"
    );
    // A new group never takes the id of a group that was.
    let mut third = Conn::open(&lab);
    assert_ne!(ack(&third.bind(1, echo_bind(), None)).assoc_group_id, group);
}

#[test]
fn bad_binds_get_bind_nak() {
    let lab = new_lab();
    let mut conn = Conn::open(&lab);
    let mut pdu = Pdu::new(1, PfcFlags::WHOLE, PduBody::Bind(echo_bind()));
    pdu.minor_version = 2;
    assert_nak(
        &one(conn.send(pdu)),
        RejectReason::PROTOCOL_VERSION_NOT_SUPPORTED,
    );
    assert!(!conn.closed, "the client may bind again with 5.0");
    let mut unknown_auth = verifier(1, AuthLevel::PKT_PRIVACY, b"hello".to_vec());
    unknown_auth.auth_type = AuthType::KERBEROS;
    assert_nak(
        &conn.bind(2, echo_bind(), Some(unknown_auth)),
        RejectReason::INVALID_AUTH_TYPE,
    );
    let bad_level = verifier(1, AuthLevel::NONE, b"hello".to_vec());
    assert_nak(
        &conn.bind(3, echo_bind(), Some(bad_level)),
        RejectReason::INVALID_AUTH_TYPE,
    );
    let bad_token = verifier(1, AuthLevel::PKT_PRIVACY, b"bonjour".to_vec());
    assert_nak(
        &conn.bind(4, echo_bind(), Some(bad_token)),
        RejectReason::INVALID_CHECKSUM,
    );
    ack(&conn.bind(5, echo_bind(), None));
    assert_nak(
        &conn.bind(6, echo_bind(), None),
        RejectReason::NOT_SPECIFIED,
    );
    assert!(conn.closed, "a second bind ends the connection");

    // A bind whose body does not decode.
    let mut conn = Conn::open(&lab);
    let mut bytes = Pdu::new(1, PfcFlags::WHOLE, PduBody::Bind(echo_bind()))
        .encode()
        .unwrap();
    bytes[24] = 0; // n_context_elem
    assert_nak(&one(conn.raw(&bytes)), RejectReason::NOT_SPECIFIED);
    assert!(conn.closed);
}

#[test]
fn calls_run_and_fault() {
    let lab = new_lab();
    let mut conn = Conn::open(&lab);
    ack(&conn.bind(1, echo_bind(), None));
    let reply = conn.call(2, 0, 0, b"ping");
    assert_eq!(stub_of(&reply), b"ping");
    assert_eq!(reply.call_id, 2);
    assert!(reply.auth.is_none());
    // The interface's own fault ran the call: DID_NOT_EXECUTE is off.
    assert_fault(&conn.call(3, 0, 1, b""), FaultStatus::BAD_STUB_DATA, false);
    assert_fault(
        &conn.call(4, 0, 2, b""),
        FaultStatus::NCA_S_OP_RNG_ERROR,
        true,
    );
    assert_fault(&conn.call(5, 9, 0, b""), FaultStatus::NCA_S_UNK_IF, true);
    assert!(!conn.closed);
    let seen = lab.echo.seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "refused calls never reach the interface");
    assert_eq!(seen[0].user, None);
    assert_eq!(seen[0].level, AuthLevel::NONE);
}

#[test]
fn fragments_are_joined_and_replies_split_under_max_xmit() {
    let lab = new_lab();
    let mut conn = Conn::open(&lab);
    let mut bind = echo_bind();
    bind.max_recv_frag = 1432;
    ack(&conn.bind(1, bind, None));
    let stub: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let body = PduBody::Request(Request {
        alloc_hint: stub.len() as u32,
        context_id: 0,
        opnum: 0,
        object: None,
        stub: stub.clone(),
    });
    let call = Pdu::new(9, PfcFlags::WHOLE, body);
    let fragments = harness_wire::dcerpc::fragment(&call, 4280).unwrap();
    assert!(fragments.len() > 2);
    let mut stream = Vec::new();
    for f in &fragments {
        stream.extend(f.encode().unwrap());
    }
    // Byte by byte: the server must not care how the stream is cut.
    let mut replies = Vec::new();
    for b in &stream {
        replies.extend(conn.raw(std::slice::from_ref(b)));
    }
    assert_eq!(replies.len(), 10_000_usize.div_ceil(1432 - 24));
    let mut joined = Vec::new();
    for (i, r) in replies.iter().enumerate() {
        assert!(r.encode().unwrap().len() <= 1432);
        assert_eq!(r.flags.contains(PfcFlags::FIRST_FRAG), i == 0);
        assert_eq!(
            r.flags.contains(PfcFlags::LAST_FRAG),
            i + 1 == replies.len()
        );
        joined.extend_from_slice(stub_of(r));
    }
    assert_eq!(joined, stub);
}

#[test]
fn broken_streams_end_with_a_proto_error() {
    let lab = new_lab();
    // A request before bind.
    let mut conn = Conn::open(&lab);
    assert_fault(
        &conn.call(1, 0, 0, b""),
        FaultStatus::NCA_S_PROTO_ERROR,
        true,
    );
    assert!(conn.closed);
    assert_eq!(conn.raw(b"more"), [], "nothing after the close");

    // frag_length above what was negotiated: refused from the header alone.
    let mut conn = Conn::open(&lab);
    ack(&conn.bind(1, echo_bind(), None));
    let mut header = Pdu::new(2, PfcFlags::WHOLE, PduBody::Shutdown)
        .encode()
        .unwrap();
    header[8..10].copy_from_slice(&5000u16.to_le_bytes());
    assert_fault(
        &one(conn.raw(&header)),
        FaultStatus::NCA_S_PROTO_ERROR,
        true,
    );
    assert!(conn.closed);

    // A PTYPE the server never receives, and an unknown one.
    for ptype in [
        PduBody::Shutdown,
        PduBody::Other {
            packet_type: harness_wire::dcerpc::PacketType(99),
            auth_length: 0,
            bytes: vec![],
        },
    ] {
        let mut conn = Conn::open(&lab);
        ack(&conn.bind(1, echo_bind(), None));
        assert_fault(
            &one(conn.send(Pdu::new(2, PfcFlags::WHOLE, ptype))),
            FaultStatus::NCA_S_PROTO_ERROR,
            true,
        );
        assert!(conn.closed);
    }

    // A middle fragment with no first one, and a request whose auth_length lies.
    let mut conn = Conn::open(&lab);
    ack(&conn.bind(1, echo_bind(), None));
    let body = PduBody::Request(Request {
        alloc_hint: 0,
        context_id: 0,
        opnum: 0,
        object: None,
        stub: vec![1; 8],
    });
    assert_fault(
        &one(conn.send(Pdu::new(2, PfcFlags::LAST_FRAG, body.clone()))),
        FaultStatus::NCA_S_PROTO_ERROR,
        true,
    );
    let mut conn = Conn::open(&lab);
    ack(&conn.bind(1, echo_bind(), None));
    let mut bytes = Pdu::new(3, PfcFlags::WHOLE, body).encode().unwrap();
    bytes[10] = 200;
    assert_fault(&one(conn.raw(&bytes)), FaultStatus::NCA_S_PROTO_ERROR, true);
    assert!(conn.closed);
}

#[test]
fn a_call_larger_than_the_stub_limit_is_refused_as_it_comes() {
    let lab = lab_with(EndpointConfig {
        max_stub: 3000,
        ..EndpointConfig::default()
    });
    let mut conn = Conn::open(&lab);
    ack(&conn.bind(1, echo_bind(), None));
    let body = PduBody::Request(Request {
        alloc_hint: u32::MAX,
        context_id: 0,
        opnum: 0,
        object: None,
        stub: vec![7; 2000],
    });
    assert_eq!(
        conn.send(Pdu::new(2, PfcFlags::FIRST_FRAG, body.clone())),
        []
    );
    assert_fault(
        &one(conn.send(Pdu::new(2, PfcFlags::LAST_FRAG, body))),
        FaultStatus::NCA_S_PROTO_ERROR,
        true,
    );
    assert!(conn.closed);
}

#[test]
fn orphaned_drops_the_call_in_progress() {
    let lab = new_lab();
    let mut conn = Conn::open(&lab);
    ack(&conn.bind(1, echo_bind(), None));
    let body = PduBody::Request(Request {
        alloc_hint: 0,
        context_id: 0,
        opnum: 0,
        object: None,
        stub: vec![1; 8],
    });
    assert_eq!(
        conn.send(Pdu::new(2, PfcFlags::FIRST_FRAG, body.clone())),
        []
    );
    assert_eq!(
        conn.send(Pdu::new(2, PfcFlags::WHOLE, PduBody::Orphaned)),
        []
    );
    assert_eq!(
        conn.send(Pdu::new(3, PfcFlags::WHOLE, PduBody::CoCancel)),
        []
    );
    assert_eq!(
        stub_of(&one(conn.send(Pdu::new(4, PfcFlags::WHOLE, body)))),
        [1; 8]
    );
}

#[test]
fn limits_on_calls_and_contexts() {
    let lab = lab_with(EndpointConfig {
        max_calls: 1,
        max_contexts: 1,
        ..EndpointConfig::default()
    });
    let mut conn = Conn::open(&lab);
    let a = ack(&conn.bind(
        1,
        bind_of(vec![
            context(0, ECHO, &[SyntaxId::NDR20]),
            context(1, ECHO, &[SyntaxId::NDR20]),
        ]),
        None,
    ))
    .clone();
    assert_eq!(a.results[1].reason, AckReason::LOCAL_LIMIT_EXCEEDED);
    conn.call(2, 0, 0, b"");
    assert_fault(
        &conn.call(3, 0, 0, b""),
        FaultStatus::NCA_S_SERVER_TOO_BUSY,
        true,
    );
}

#[test]
fn alter_context_adds_contexts_and_keeps_ids() {
    let lab = new_lab();
    let mut conn = Conn::open(&lab);
    ack(&conn.bind(1, echo_bind(), None));
    let alter = bind_of(vec![
        context(1, ECHO, &[SyntaxId::NDR20]),
        context(0, OTHER, &[SyntaxId::NDR20]),
    ]);
    let reply = one(conn.send(Pdu::new(2, PfcFlags::WHOLE, PduBody::AlterContext(alter))));
    assert_eq!(
        reply.packet_type(),
        harness_wire::dcerpc::PacketType::ALTER_CONTEXT_RESP
    );
    let a = ack(&reply);
    assert!(a.sec_addr.is_empty());
    assert_eq!(a.results[0].result, AckResult::ACCEPTANCE);
    assert_eq!(
        a.results[1].result,
        AckResult::PROVIDER_REJECTION,
        "context 0 stays echo"
    );
    assert_eq!(stub_of(&conn.call(3, 1, 0, b"z")), b"z");
}

#[test]
fn sealed_and_signed_calls_carry_their_principal() {
    for level in [AuthLevel::PKT_INTEGRITY, AuthLevel::PKT_PRIVACY] {
        let lab = new_lab();
        let mut conn = Conn::open(&lab);
        let reply = logon(&mut conn, "alice", "secret", level);
        let v = reply.auth.as_ref().expect("bind_ack carries the challenge");
        assert_eq!(
            (v.auth_value.as_slice(), v.auth_context_id, v.auth_level),
            (&b"challenge"[..], 7, level)
        );
        assert_eq!(
            conn.server.principal(7).map(|p| p.user.as_str()),
            Some("alice")
        );
        for (call_id, stub) in [(3, b"first".to_vec()), (4, vec![0xab; 3000])] {
            let bytes = conn.protected_request(call_id, 7, level, &stub);
            if level == AuthLevel::PKT_PRIVACY {
                assert!(
                    !bytes.windows(5).any(|w| w == b"first"),
                    "sealed on the wire"
                );
            }
            let frames = conn.raw_replies(&bytes);
            let mut joined = Vec::new();
            for f in frames {
                if level == AuthLevel::PKT_PRIVACY && stub.len() < 10 {
                    assert!(!f.windows(5).any(|w| w == b"first"), "reply sealed too");
                }
                joined.extend(conn.open_response(f, level));
            }
            assert_eq!(joined, stub);
        }
        let seen = lab.echo.seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert!(seen.iter().all(|s| s.user.as_deref() == Some("alice")
            && s.auth_context_id == Some(7)
            && s.level == level));
    }
}

#[test]
fn a_tampered_or_replayed_pdu_ends_the_connection() {
    let lab = new_lab();
    let mut conn = Conn::open(&lab);
    logon(&mut conn, "alice", "secret", AuthLevel::PKT_PRIVACY);
    let good = conn.protected_request(3, 7, AuthLevel::PKT_PRIVACY, b"hello");
    let frames = conn.raw_replies(&good);
    assert_eq!(frames.len(), 1);
    // The same octets again: the sequence number has moved on.
    let replayed = conn.raw_replies(&good);
    let (fault, _) = Pdu::decode(&replayed[0]).unwrap();
    assert_fault(&fault, FaultStatus::SEC_PKG_ERROR, false);
    assert!(conn.closed);

    for offset in [2usize, 20, 26, 40, 50] {
        let lab = new_lab();
        let mut conn = Conn::open(&lab);
        logon(&mut conn, "alice", "secret", AuthLevel::PKT_INTEGRITY);
        let mut bytes = conn.protected_request(3, 7, AuthLevel::PKT_INTEGRITY, b"hello");
        bytes[offset] ^= 0x01;
        let replies = conn.raw(&bytes);
        assert!(conn.closed, "offset {offset}");
        assert!(
            matches!(&replies[0].body, PduBody::Fault(_)),
            "offset {offset}: {replies:?}"
        );
        assert!(lab.echo.seen.lock().unwrap().is_empty());
    }
}

#[test]
fn a_failed_logon_is_refused_at_the_first_request() {
    for (style, status) in [
        (AuthFailureFault::Windows, FaultStatus::ACCESS_DENIED),
        (AuthFailureFault::Samba, FaultStatus::NCA_S_PROTO_ERROR),
    ] {
        let lab = lab_with(EndpointConfig {
            auth_failure: style,
            ..EndpointConfig::default()
        });
        let mut conn = Conn::open(&lab);
        let reply = logon(&mut conn, "alice", "wrong", AuthLevel::PKT_PRIVACY);
        assert_eq!(
            reply.packet_type(),
            harness_wire::dcerpc::PacketType::BIND_ACK,
            "bind passes, as on Windows"
        );
        assert_eq!(conn.server.principal(7), None);
        let bytes = conn.protected_request(3, 7, AuthLevel::PKT_PRIVACY, b"x");
        assert_fault(&one(conn.raw(&bytes)), status, true);
        if style == AuthFailureFault::Samba {
            assert!(conn.closed, "Samba disconnects after the fault");
        } else {
            // Windows keeps the connection; unprotected, the same answer.
            assert!(!conn.closed);
            assert_fault(&conn.call(4, 0, 0, b"x"), status, true);
        }
        assert!(lab.echo.seen.lock().unwrap().is_empty());
    }
    // A trailer naming another level than the context's.
    let lab = new_lab();
    let mut conn = Conn::open(&lab);
    logon(&mut conn, "alice", "secret", AuthLevel::PKT_PRIVACY);
    let bytes = conn.protected_request(3, 7, AuthLevel::PKT_INTEGRITY, b"x");
    assert_fault(&one(conn.raw(&bytes)), FaultStatus::ACCESS_DENIED, true);
    assert!(conn.closed);
    // auth3 naming a context that was never bound.
    let lab = new_lab();
    let mut conn = Conn::open(&lab);
    conn.bind(
        1,
        echo_bind(),
        Some(verifier(7, AuthLevel::PKT_PRIVACY, b"hello".to_vec())),
    );
    let mut auth3 = Pdu::new(2, PfcFlags::WHOLE, PduBody::Auth3(Auth3::default()));
    auth3.auth = Some(verifier(
        8,
        AuthLevel::PKT_PRIVACY,
        b"alice:secret".to_vec(),
    ));
    assert_fault(&one(conn.send(auth3)), FaultStatus::NCA_S_PROTO_ERROR, true);
    assert!(conn.closed);
}

#[test]
fn several_security_contexts_need_multiplexing() {
    let lab = new_lab();
    let mut conn = Conn::open(&lab);
    logon(&mut conn, "alice", "secret", AuthLevel::PKT_INTEGRITY);
    let mut alter = Pdu::new(3, PfcFlags::WHOLE, PduBody::AlterContext(echo_bind()));
    alter.auth = Some(verifier(9, AuthLevel::PKT_INTEGRITY, b"hello".to_vec()));
    assert_fault(&one(conn.send(alter)), FaultStatus::ACCESS_DENIED, true);

    // With security context multiplexing negotiated at bind, each context has its own
    // principal and its own sequence.
    let lab = new_lab();
    let mut conn = Conn::open(&lab);
    let features = SyntaxId::bind_time_features(1);
    let bind = bind_of(vec![
        context(0, ECHO, &[SyntaxId::NDR20]),
        context(1, ECHO, &[features]),
    ]);
    conn.bind(
        1,
        bind,
        Some(verifier(7, AuthLevel::PKT_INTEGRITY, b"hello".to_vec())),
    );
    let mut auth3 = Pdu::new(2, PfcFlags::WHOLE, PduBody::Auth3(Auth3::default()));
    auth3.auth = Some(verifier(
        7,
        AuthLevel::PKT_INTEGRITY,
        b"alice:secret".to_vec(),
    ));
    assert_eq!(conn.send(auth3), []);
    let mut alter = Pdu::new(3, PfcFlags::WHOLE, PduBody::AlterContext(echo_bind()));
    alter.auth = Some(verifier(9, AuthLevel::PKT_INTEGRITY, b"hello".to_vec()));
    let reply = one(conn.send(alter));
    assert_eq!(
        reply.auth.as_ref().map(|v| v.auth_value.as_slice()),
        Some(&b"challenge"[..])
    );
    let mut alter = Pdu::new(4, PfcFlags::WHOLE, PduBody::AlterContext(echo_bind()));
    alter.auth = Some(verifier(
        9,
        AuthLevel::PKT_INTEGRITY,
        b"bob:secret".to_vec(),
    ));
    one(conn.send(alter));
    assert_eq!(
        conn.server.principal(9).map(|p| p.user.as_str()),
        Some("bob")
    );
    // The toy counts one sequence per side for the whole client here; use two clients'
    // worth by hand: context 7 first, then a fresh count for context 9.
    let bytes = conn.protected_request(5, 7, AuthLevel::PKT_INTEGRITY, b"a");
    let reply = conn.raw_replies(&bytes);
    conn.open_response(reply[0].clone(), AuthLevel::PKT_INTEGRITY);
    (conn.send_seq, conn.recv_seq) = (0, 0);
    let bytes = conn.protected_request(6, 9, AuthLevel::PKT_INTEGRITY, b"b");
    let reply = conn.raw_replies(&bytes);
    conn.open_response(reply[0].clone(), AuthLevel::PKT_INTEGRITY);
    let users: Vec<Option<String>> = lab
        .echo
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.user.clone())
        .collect();
    assert_eq!(users, vec![Some("alice".into()), Some("bob".into())]);
}

#[test]
fn connect_level_authenticates_without_signing() {
    let lab = new_lab();
    let mut conn = Conn::open(&lab);
    logon(&mut conn, "alice", "secret", AuthLevel::CONNECT);
    let reply = conn.call(3, 0, 0, b"plain");
    assert_eq!(stub_of(&reply), b"plain");
    assert!(reply.auth.is_none());
    assert_eq!(
        lab.echo.seen.lock().unwrap()[0].user.as_deref(),
        Some("alice")
    );
}

#[test]
fn idle_timeout_and_shutdown_close() {
    let lab = lab_with(EndpointConfig {
        idle_timeout: Duration::from_secs(10),
        ..EndpointConfig::default()
    });
    let mut conn = Conn::open(&lab);
    ack(&conn.bind(1, echo_bind(), None));
    assert_eq!(
        conn.server.poll_timeout(),
        Some(NOW + Duration::from_secs(10))
    );
    conn.server.handle_timeout(NOW + Duration::from_secs(9));
    assert_eq!(conn.drain(), []);
    assert!(!conn.closed);
    conn.server.handle_timeout(NOW + Duration::from_secs(10));
    assert_eq!(conn.drain(), []);
    assert!(conn.closed);
    assert_eq!(conn.server.poll_timeout(), None);

    let mut conn = Conn::open(&lab);
    conn.server.handle_shutdown(NOW);
    let out = conn.drain();
    assert_eq!(
        out[0].packet_type(),
        harness_wire::dcerpc::PacketType::SHUTDOWN
    );
    assert!(conn.closed);
}

/// Parks opnum 0 for 10 s; resumes with "ready" once released (its waker woken, as the
/// notification hub would), or "timeout" at the deadline. Opnum 1 answers at once.
#[derive(Default)]
struct Waiter {
    next: Mutex<u64>,
    ready: Mutex<Vec<u64>>,
    wakers: Mutex<Vec<Arc<dyn crate::notify::Waker>>>,
}

const WAITER: SyntaxId = SyntaxId::new(Uuid::new(0x5261_574a, 1, 2, [9; 8]), 1, 0);

impl Waiter {
    fn release_all(&self) {
        let mut ready = self.ready.lock().unwrap();
        ready.extend(1..=*self.next.lock().unwrap());
        drop(ready);
        for w in self.wakers.lock().unwrap().iter() {
            w.wake();
        }
    }
}

impl RpcInterface for Waiter {
    fn syntax(&self) -> SyntaxId {
        WAITER
    }
    fn name(&self) -> &'static str {
        "waiter"
    }
    fn opnum_count(&self) -> u16 {
        2
    }
    fn call(&self, ctx: &CallContext<'_>, opnum: u16, _stub: &[u8]) -> CallOutcome {
        if opnum == 1 {
            return CallOutcome::Response(b"now".to_vec());
        }
        let mut next = self.next.lock().unwrap();
        *next += 1;
        if let Some(w) = ctx.waker {
            self.wakers.lock().unwrap().push(w.clone());
        }
        CallOutcome::Parked {
            token: *next,
            until: ctx.now + Duration::from_secs(10),
        }
    }
    fn resume(&self, _ctx: &CallContext<'_>, token: u64, timed_out: bool) -> Option<CallOutcome> {
        if self.ready.lock().unwrap().contains(&token) {
            return Some(CallOutcome::Response(format!("ready {token}").into_bytes()));
        }
        timed_out.then(|| CallOutcome::Response(b"timeout".to_vec()))
    }
}

#[derive(Debug, Default)]
struct Flag(std::sync::atomic::AtomicUsize);

impl crate::notify::Waker for Flag {
    fn wake(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn waiter_conn(waiter: &Arc<Waiter>, flag: &Arc<Flag>, config: EndpointConfig) -> Conn {
    let endpoint = Endpoint::new(config, vec![waiter.clone() as Arc<dyn RpcInterface>], None);
    let mut conn = Conn {
        server: endpoint.accept_with_waker(NOW, flag.clone()),
        framer: PduFramer::new(u16::MAX),
        closed: false,
        send_seq: 0,
        recv_seq: 0,
    };
    ack(&conn.bind(
        1,
        bind_of(vec![context(0, WAITER, &[SyntaxId::NDR20])]),
        None,
    ));
    conn
}

fn request(call_id: u32, opnum: u16) -> Pdu {
    let body = PduBody::Request(Request {
        alloc_hint: 0,
        context_id: 0,
        opnum,
        object: None,
        stub: vec![],
    });
    Pdu::new(call_id, PfcFlags::WHOLE, body)
}

#[test]
fn a_parked_call_answers_when_woken_and_others_go_on_meanwhile() {
    let (waiter, flag) = (Arc::new(Waiter::default()), Arc::new(Flag::default()));
    let mut conn = waiter_conn(&waiter, &flag, EndpointConfig::default());
    assert_eq!(conn.send(request(2, 0)), [], "parked: no answer yet");
    assert_eq!(conn.server.parked_calls(), 1);
    assert_eq!(
        conn.server.poll_timeout(),
        Some(NOW + Duration::from_secs(10))
    );
    // Another call on the same connection is answered while the first waits.
    assert_eq!(stub_of(&one(conn.send(request(3, 1)))), b"now");
    // A wake with nothing ready changes nothing.
    conn.server.handle_wake(NOW + Duration::from_secs(1));
    assert_eq!(conn.drain(), []);
    waiter.release_all();
    assert_eq!(
        flag.0.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the session's waker was handed out"
    );
    conn.server.handle_wake(NOW + Duration::from_secs(2));
    let reply = one(conn.drain());
    assert_eq!(reply.call_id, 2);
    assert_eq!(stub_of(&reply), b"ready 1");
    assert_eq!(conn.server.parked_calls(), 0);
}

#[test]
fn a_parked_call_ends_at_its_deadline_and_keeps_the_connection_alive_till_then() {
    let (waiter, flag) = (Arc::new(Waiter::default()), Arc::new(Flag::default()));
    let config = EndpointConfig {
        idle_timeout: Duration::from_secs(5),
        ..EndpointConfig::default()
    };
    let mut conn = waiter_conn(&waiter, &flag, config);
    assert_eq!(conn.send(request(2, 0)), []);
    // The idle deadline passes first: a client waiting on the server is not idle.
    conn.server.handle_timeout(NOW + Duration::from_secs(6));
    assert_eq!(conn.drain(), []);
    assert!(!conn.closed);
    conn.server.handle_timeout(NOW + Duration::from_secs(10));
    assert_eq!(stub_of(&one(conn.drain())), b"timeout");
    assert!(!conn.closed);
    // Nothing parked: the idle timer rules again, counted from the answer.
    assert_eq!(
        conn.server.poll_timeout(),
        Some(NOW + Duration::from_secs(15))
    );
    conn.server.handle_timeout(NOW + Duration::from_secs(14));
    assert!(!conn.closed);
    conn.server.handle_timeout(NOW + Duration::from_secs(15));
    conn.drain();
    assert!(conn.closed);
}

#[test]
fn parked_calls_are_bounded_per_association() {
    let (waiter, flag) = (Arc::new(Waiter::default()), Arc::new(Flag::default()));
    let config = EndpointConfig {
        max_parked_calls: 2,
        ..EndpointConfig::default()
    };
    let mut conn = waiter_conn(&waiter, &flag, config);
    assert_eq!(conn.send(request(2, 0)), []);
    assert_eq!(conn.send(request(3, 0)), []);
    assert_fault(
        &one(conn.send(request(4, 0))),
        FaultStatus::NCA_S_SERVER_TOO_BUSY,
        false,
    );
    waiter.release_all();
    conn.server.handle_wake(NOW);
    let ids: Vec<u32> = conn.drain().iter().map(|p| p.call_id).collect();
    assert_eq!(ids, [2, 3]);
}

/// An auth3 whose auth_type is not the bind's cannot finish the context, even with the
/// right credentials: the context fails and requests get the logon-failure fault.
#[test]
fn an_auth3_of_another_auth_type_fails_the_context() {
    let lab = new_lab();
    let mut conn = Conn::open(&lab);
    conn.bind(
        1,
        echo_bind(),
        Some(verifier(7, AuthLevel::PKT_PRIVACY, b"hello".to_vec())),
    );
    let mut auth3 = Pdu::new(2, PfcFlags::WHOLE, PduBody::Auth3(Auth3::default()));
    let mut v = verifier(7, AuthLevel::PKT_PRIVACY, b"alice:secret".to_vec());
    v.auth_type = AuthType::KERBEROS;
    auth3.auth = Some(v);
    assert_eq!(conn.send(auth3), []);
    assert_eq!(conn.server.principal(7), None);
    let bytes = conn.protected_request(3, 7, AuthLevel::PKT_PRIVACY, b"x");
    assert_fault(&one(conn.raw(&bytes)), FaultStatus::ACCESS_DENIED, true);
    assert!(lab.echo.seen.lock().unwrap().is_empty());
}
