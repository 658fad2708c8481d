use std::time::Duration;

use super::*;
use crate::dcerpc::client::{
    BindSecurity, ClientAssociation, ClientConfig, ClientEvent, ContextElement, RejectReason,
    SyntaxId,
};
use crate::dcerpc::endpoints::{RpcEndpoints, RpcLabConfig};
use crate::dcerpc::nspi::client::{bind_stub, opnum, parse_bind, stat};
use crate::dcerpc::nspi::NSPI_SYNTAX;
use crate::dcerpc::server::{Association, EndpointConfig};
use crate::kerberos::client::{self, Request};
use crate::kerberos::{Kdc, KdcConfig, Name, NT_SRV_HST};
use crate::session::{Output, ServerSession};
use crate::LabFile;
use harness_wire::dcerpc::{FaultStatus, Pdu, PduBody, PfcFlags};

const NOW: Seconds = 1_704_067_200;
const STORE: &str = "exchangeMDB/mail.example.test";

struct Realm {
    world: Arc<World>,
    kdc: Kdc,
    rng: SeededRng,
}

impl Realm {
    fn new() -> Realm {
        let world = Arc::new(LabFile::default_lab().build().expect("lab"));
        Realm {
            kdc: Kdc::new(RealmDb::for_world(&world), KdcConfig::default(), 3),
            world,
            rng: SeededRng::new(4),
        }
    }

    /// alice's service ticket for `service`.
    fn ticket(&mut self, service: &str) -> Credentials {
        let kdc = &mut self.kdc;
        let tgt = client::login(
            &mut |r| Ok(kdc.handle(r, NOW).bytes),
            "alice",
            "EXAMPLE.TEST",
            "secret",
            &Request::default(),
            NOW,
            &mut self.rng,
        )
        .expect("TGT");
        client::ticket(
            &mut |r| Ok(kdc.handle(r, NOW).bytes),
            &tgt,
            &Name::parse(service, NT_SRV_HST),
            &Request::default(),
            NOW,
            &mut self.rng,
        )
        .expect("service ticket")
    }

    /// The world's RPC endpoints with the acceptor's clock fixed at NOW.
    fn endpoints(&self) -> RpcEndpoints {
        let config = RpcLabConfig {
            exchange_port: 6001,
            exchange_ip: [127, 0, 0, 1],
            endpoint: EndpointConfig::default(),
            seed: 9,
            unix_now: NOW as u64,
            kerberos_clock: None,
        };
        RpcEndpoints::for_world(&self.world, &config)
    }

    fn factory(&self, now: Seconds) -> KerberosServerFactory {
        KerberosServerFactory::for_world(&self.world, Arc::new(move || now), 11)
    }
}

/// One connection: the server's association and the client's, pumped into each other.
struct Pump {
    server: Association,
    client: ClientAssociation,
    /// Every octet the client sent, PDU by PDU.
    sent: Vec<Vec<u8>>,
}

impl Pump {
    fn open(endpoints: &RpcEndpoints, config: ClientConfig) -> Pump {
        Pump {
            server: endpoints.exchange.accept(Duration::ZERO),
            client: ClientAssociation::new(config),
            sent: Vec::new(),
        }
    }

    fn server_says(&mut self) -> Vec<u8> {
        let mut written = Vec::new();
        while let Some(out) = self.server.poll_output() {
            if let Output::Write(b) = out {
                written.extend_from_slice(&b);
            }
        }
        written
    }

    /// Sends `bytes`, feeds every leg back and forth; the client's other events.
    fn exchange(&mut self, bytes: &[u8]) -> Vec<ClientEvent> {
        self.sent.push(bytes.to_vec());
        self.server.handle_input(Duration::from_secs(1), bytes);
        let written = self.server_says();
        let mut events = Vec::new();
        self.client.receive(&written, &mut events).expect("client");
        let mut rest = Vec::new();
        for event in events {
            match event {
                ClientEvent::Send(leg) => rest.extend(self.exchange(&leg)),
                other => rest.push(other),
            }
        }
        rest
    }

    fn bind(&mut self, security: BindSecurity) -> Vec<ClientEvent> {
        let contexts = [ContextElement {
            context_id: 0,
            abstract_syntax: NSPI_SYNTAX,
            transfer_syntaxes: vec![SyntaxId::NDR20],
        }];
        let bind = self.client.bind(&contexts, Some(security)).expect("bind");
        self.exchange(&bind)
    }

    /// NspiBind's return code.
    fn nspi_bind(&mut self) -> u32 {
        let call = self
            .client
            .call(0, opnum::BIND, None, &bind_stub(0, &stat(1252), true))
            .expect("call");
        let mut events = Vec::new();
        for f in call.fragments {
            events.extend(self.exchange(&f));
        }
        match events.as_slice() {
            [ClientEvent::Response { stub, .. }] => parse_bind(stub).expect("NspiBind").rc,
            other => panic!("not one response: {other:?}"),
        }
    }
}

/// A client context; each gets its own seed, so its authenticator's cusec differs (the
/// same client, time and cusec twice is a replay).
fn kerberos(
    auth_type: AuthType,
    ticket: Credentials,
    now: Seconds,
    level: AuthLevel,
) -> BindSecurity {
    static SEED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(100);
    let seed = SEED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    BindSecurity {
        provider: Box::new(KerberosClientSecurity::new(auth_type, ticket, now, seed)),
        level,
        auth_context_id: 1,
    }
}

fn decode_all(mut bytes: &[u8]) -> Vec<Pdu> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (pdu, used) = Pdu::decode(bytes).expect("pdu");
        out.push(pdu);
        bytes = &bytes[used..];
    }
    out
}

#[test]
fn nspi_binds_and_answers_under_kerberos_at_connect_integrity_and_privacy() {
    let mut realm = Realm::new();
    let endpoints = realm.endpoints();
    for auth_type in [AuthType::KERBEROS, AuthType::SPNEGO] {
        for level in [
            AuthLevel::CONNECT,
            AuthLevel::PKT_INTEGRITY,
            AuthLevel::PKT_PRIVACY,
        ] {
            let ticket = realm.ticket(STORE);
            let mut pump = Pump::open(&endpoints, ClientConfig::default());
            let events = pump.bind(kerberos(auth_type, ticket, NOW, level));
            assert!(
                matches!(
                    events.as_slice(),
                    [ClientEvent::BindAcked(_), ClientEvent::AlterContextAcked(_)]
                ),
                "{auth_type:?} {level:?}: {events:?}"
            );
            assert!(pump.client.is_ready());
            // bind, then the third leg in an alter_context (not an auth3).
            assert_eq!(pump.sent.len(), 2);
            assert_eq!(pump.sent[1][2], 14, "alter_context");
            let principal = pump.server.principal(1).expect("established").clone();
            assert_eq!(
                principal,
                Principal {
                    auth_type,
                    user: "alice".into(),
                    domain: "EXAMPLE.TEST".into(),
                    workstation: String::new(),
                }
            );
            for _ in 0..3 {
                assert_eq!(pump.nspi_bind(), 0, "{auth_type:?} {level:?}");
            }
            let call = pump.sent.last().expect("a request");
            let auth_length = u16::from_le_bytes([call[10], call[11]]);
            let expected = match level {
                AuthLevel::CONNECT => 0,
                AuthLevel::PKT_INTEGRITY => 28,
                _ => 76,
            };
            assert_eq!(auth_length, expected, "{auth_type:?} {level:?}");
        }
    }
}

#[test]
fn the_legs_carry_raw_ap_reqs_and_spnego_tokens_as_impacket_reads_them() {
    let mut realm = Realm::new();
    let factory = realm.factory(NOW);
    // auth_type 16: raw AP-REQ in, raw AP-REP out, nothing in the last reply.
    let mut client = KerberosClientSecurity::new(AuthType::KERBEROS, realm.ticket(STORE), NOW, 1);
    let mut server = factory
        .new_kerberos_context(AuthType::KERBEROS)
        .expect("16");
    let bind = client.initial_token().unwrap();
    assert_eq!(bind[0], 0x6E, "APPLICATION 14, AP-REQ");
    let AcceptStep::Continue(ack) = server.accept(&bind).unwrap() else {
        panic!("DCE style continues");
    };
    assert_eq!(ack[0], 0x6F, "APPLICATION 15, AP-REP");
    let ClientStep::Send {
        token,
        expects_reply: true,
    } = client.step(&ack).unwrap()
    else {
        panic!("third leg");
    };
    assert_eq!(token[0], 0x6F);
    match server.accept(&token).unwrap() {
        AcceptStep::Done { reply: None, .. } => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(client.step(&[]).unwrap(), ClientStep::Done);
    assert!(!server.signs_header());

    // auth_type 9 with the MS OID, as impacket offers it.
    let mut client = KerberosClientSecurity::new(AuthType::SPNEGO, realm.ticket(STORE), NOW, 2);
    let mut server = factory.new_kerberos_context(AuthType::SPNEGO).expect("9");
    let init = spnego::read_init(&client.initial_token().unwrap()).unwrap();
    let ms = spnego::write_init(&spnego::NegTokenInit {
        mech_types: vec![MS_KRB5_OID.to_vec()],
        mech_token: init.mech_token.clone(),
    });
    let AcceptStep::Continue(ack) = server.accept(&ms).unwrap() else {
        panic!("DCE style continues");
    };
    let resp = spnego::read_resp(&ack).unwrap();
    assert_eq!(resp.state, Some(spnego::ACCEPT_INCOMPLETE));
    assert_eq!(resp.supported_mech.as_deref(), Some(&MS_KRB5_OID[..]));
    assert_eq!(resp.response_token.as_ref().unwrap()[0], 0x6F, "raw AP-REP");
    let (token, done) = third_leg(&mut client, &mut server, &ack);
    assert_eq!(
        done,
        spnego::write_resp(&spnego::NegTokenResp {
            state: Some(spnego::ACCEPT_COMPLETED),
            supported_mech: Some(MS_KRB5_OID.to_vec()),
            response_token: None,
        })
    );
    assert_eq!(client.step(&done).unwrap(), ClientStep::Done);
    assert!(matches!(
        server.accept(&token),
        Err(SecurityError::BadToken(_))
    ));
}

/// The client's AP-REP for the bind_ack's `ack`, and the server's closing SPNEGO reply.
fn third_leg(
    client: &mut KerberosClientSecurity,
    server: &mut KerberosServerSecurity,
    ack: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let ClientStep::Send { token, .. } = client.step(ack).unwrap() else {
        panic!("third leg");
    };
    let AcceptStep::Done {
        reply: Some(done), ..
    } = server.accept(&token).unwrap()
    else {
        panic!("done with a reply");
    };
    (token, done)
}

fn code(e: SecurityError) -> u32 {
    match e {
        SecurityError::Kerberos(g) => g.code,
        other => panic!("not a Kerberos refusal: {other:?}"),
    }
}

#[test]
fn replays_skew_other_services_and_a_wrong_third_leg_get_their_kerberos_codes() {
    let mut realm = Realm::new();
    let factory = realm.factory(NOW);
    let mut client = KerberosClientSecurity::new(AuthType::KERBEROS, realm.ticket(STORE), NOW, 1);
    let bind = client.initial_token().unwrap();
    let mut first = factory.new_kerberos_context(AuthType::KERBEROS).unwrap();
    assert!(first.accept(&bind).is_ok());
    // The same AP-REQ on another context: the replay cache is the factory's.
    let mut again = factory.new_kerberos_context(AuthType::KERBEROS).unwrap();
    assert_eq!(code(again.accept(&bind).unwrap_err()), err::REPEAT);
    assert!(matches!(
        again.accept(&bind),
        Err(SecurityError::BadToken(_))
    ));

    let skewed = |by: Seconds, realm: &mut Realm| {
        let mut c =
            KerberosClientSecurity::new(AuthType::KERBEROS, realm.ticket(STORE), NOW + by, 3);
        let mut s = factory.new_kerberos_context(AuthType::KERBEROS).unwrap();
        s.accept(&c.initial_token().unwrap())
    };
    assert_eq!(code(skewed(301, &mut realm).unwrap_err()), err::SKEW);
    assert_eq!(code(skewed(-301, &mut realm).unwrap_err()), err::SKEW);
    assert!(skewed(300, &mut realm).is_ok(), "the edge of the skew");

    let mut web = KerberosClientSecurity::new(
        AuthType::SPNEGO,
        realm.ticket("HTTP/web.example.test"),
        NOW,
        4,
    );
    let mut s = factory.new_kerberos_context(AuthType::SPNEGO).unwrap();
    assert_eq!(
        code(s.accept(&web.initial_token().unwrap()).unwrap_err()),
        err::NOT_US
    );

    // A third leg that does not echo the acceptor's seq-number.
    let mut c = KerberosClientSecurity::new(AuthType::KERBEROS, realm.ticket(STORE), NOW, 5);
    let mut s = factory.new_kerberos_context(AuthType::KERBEROS).unwrap();
    let AcceptStep::Continue(ack) = s.accept(&c.initial_token().unwrap()).unwrap() else {
        panic!("continues");
    };
    let ClientStep::Send { .. } = c.step(&ack).unwrap() else {
        panic!("third leg");
    };
    let ServerState::AwaitingApRep {
        accepted,
        acceptor_seq,
    } = &s.leg.state
    else {
        panic!("awaiting the AP-REP");
    };
    let wrong = gss::dce_ap_rep(&accepted.session, acceptor_seq + 1, NOW, 7);
    assert_eq!(code(s.accept(&wrong).unwrap_err()), err::MODIFIED);
    // Auth types other than 16 and 9 are not Kerberos'.
    assert!(factory.new_context(AuthType::NTLMSSP).is_none());
}

#[test]
fn refused_binds_get_bind_nak_invalid_checksum() {
    let mut realm = Realm::new();
    let endpoints = realm.endpoints();
    let nak_of = |pump: &mut Pump, bytes: &[u8]| -> RejectReason {
        pump.server.handle_input(Duration::from_secs(1), bytes);
        match decode_all(&pump.server_says()).as_slice() {
            [Pdu {
                body: PduBody::BindNak(nak),
                ..
            }] => nak.reason,
            other => panic!("not a bind_nak: {other:?}"),
        }
    };
    // A replayed bind, byte for byte, on a second connection.
    let mut pump = Pump::open(&endpoints, ClientConfig::default());
    pump.bind(kerberos(
        AuthType::KERBEROS,
        realm.ticket(STORE),
        NOW,
        AuthLevel::PKT_INTEGRITY,
    ));
    assert!(pump.client.is_ready());
    let replay = pump.sent[0].clone();
    let mut thief = Pump::open(&endpoints, ClientConfig::default());
    assert_eq!(nak_of(&mut thief, &replay), RejectReason::INVALID_CHECKSUM);

    for (ticket, now) in [
        (realm.ticket(STORE), NOW + 3600),
        (realm.ticket("HTTP/plain.example.test"), NOW),
    ] {
        let mut pump = Pump::open(&endpoints, ClientConfig::default());
        let sec = kerberos(AuthType::SPNEGO, ticket, now, AuthLevel::PKT_PRIVACY);
        let contexts = [ContextElement {
            context_id: 0,
            abstract_syntax: NSPI_SYNTAX,
            transfer_syntaxes: vec![SyntaxId::NDR20],
        }];
        let bind = pump.client.bind(&contexts, Some(sec)).unwrap();
        assert_eq!(nak_of(&mut pump, &bind), RejectReason::INVALID_CHECKSUM);
    }
}

#[test]
fn tampered_and_replayed_protected_requests_end_the_connection() {
    let mut realm = Realm::new();
    let endpoints = realm.endpoints();
    for level in [AuthLevel::PKT_INTEGRITY, AuthLevel::PKT_PRIVACY] {
        for tamper in [false, true] {
            let mut pump = Pump::open(&endpoints, ClientConfig::default());
            pump.bind(kerberos(
                AuthType::KERBEROS,
                realm.ticket(STORE),
                NOW,
                level,
            ));
            assert_eq!(pump.nspi_bind(), 0);
            let mut request = pump.sent.last().unwrap().clone();
            if tamper {
                // The last stub octet, just before the auth padding and trailer.
                let call = pump
                    .client
                    .call(0, opnum::BIND, None, &bind_stub(0, &stat(1252), true))
                    .unwrap();
                request = call.fragments[0].clone();
                request[30] ^= 0x01;
            }
            pump.server.handle_input(Duration::from_secs(2), &request);
            let pdus = decode_all(&pump.server_says());
            match pdus.as_slice() {
                [Pdu {
                    body: PduBody::Fault(f),
                    flags,
                    ..
                }] => {
                    assert_eq!(f.status, FaultStatus::SEC_PKG_ERROR, "{level:?} {tamper}");
                    assert!(!flags.contains(PfcFlags::DID_NOT_EXECUTE));
                }
                other => panic!("{level:?} {tamper}: {other:?}"),
            }
            assert!(pump.server.is_closed(), "{level:?} {tamper}");
        }
    }
}

#[test]
fn header_signing_is_declined_for_kerberos() {
    let mut realm = Realm::new();
    let endpoints = realm.endpoints();
    let config = ClientConfig {
        support_header_sign: true,
        ..ClientConfig::default()
    };
    let mut pump = Pump::open(&endpoints, config);
    let events = pump.bind(kerberos(
        AuthType::SPNEGO,
        realm.ticket(STORE),
        NOW,
        AuthLevel::PKT_PRIVACY,
    ));
    match events.first() {
        Some(ClientEvent::BindAcked(acked)) => assert!(!acked.header_sign),
        other => panic!("{other:?}"),
    }
    assert_eq!(pump.nspi_bind(), 0);
}

#[test]
fn protection_needs_an_established_context_and_a_protecting_level() {
    let mut realm = Realm::new();
    let factory = realm.factory(NOW);
    let mut server = factory.new_kerberos_context(AuthType::SPNEGO).unwrap();
    let mut pdu = vec![0u8; 40];
    assert_eq!(
        server.wrap(AuthLevel::PKT_INTEGRITY, &mut pdu, 24..32),
        Err(SecurityError::NotEstablished)
    );
    let mut client = KerberosClientSecurity::new(AuthType::SPNEGO, realm.ticket(STORE), NOW, 9);
    assert_eq!(
        client.unwrap(AuthLevel::PKT_PRIVACY, &mut pdu, 24..32, &[0; 76]),
        Err(SecurityError::NotEstablished)
    );
    let AcceptStep::Continue(ack) = server.accept(&client.initial_token().unwrap()).unwrap() else {
        panic!("continues");
    };
    let (_, done) = third_leg(&mut client, &mut server, &ack);
    assert_eq!(client.step(&done).unwrap(), ClientStep::Done);
    assert!(matches!(
        client.step(&done),
        Err(SecurityError::BadToken(_))
    ));
    for level in [AuthLevel::NONE, AuthLevel::CONNECT] {
        assert_eq!(
            client.wrap(level, &mut pdu, 24..32),
            Err(SecurityError::UnsupportedLevel(level))
        );
    }
    assert_eq!(client.signature_len(AuthLevel::PKT_INTEGRITY), 28);
    assert_eq!(client.signature_len(AuthLevel::PKT_PRIVACY), 76);
    // Both directions, both levels; a short signature is malformed and breaks the context.
    for level in [AuthLevel::PKT, AuthLevel::PKT_PRIVACY] {
        for _ in 0..2 {
            let mut pdu: Vec<u8> = (0..48).collect();
            let sig = client.wrap(level, &mut pdu, 24..40).unwrap();
            assert_eq!(sig.len(), server.signature_len(level));
            server.unwrap(level, &mut pdu, 24..40, &sig).unwrap();
            assert_eq!(pdu, (0..48).collect::<Vec<u8>>());
            let sig = server.wrap(level, &mut pdu, 24..40).unwrap();
            client.unwrap(level, &mut pdu, 24..40, &sig).unwrap();
            assert_eq!(pdu, (0..48).collect::<Vec<u8>>());
        }
    }
    let mut pdu: Vec<u8> = (0..48).collect();
    let sig = client
        .wrap(AuthLevel::PKT_INTEGRITY, &mut pdu, 24..40)
        .unwrap();
    assert_eq!(
        server.unwrap(AuthLevel::PKT_INTEGRITY, &mut pdu, 24..40, &sig[..27]),
        Err(SecurityError::MalformedSignature(27))
    );
    assert_eq!(
        server.unwrap(AuthLevel::PKT_INTEGRITY, &mut pdu, 24..40, &sig),
        Err(SecurityError::BadSignature),
        "broken after a bad PDU"
    );
}

#[test]
fn the_third_leg_of_auth_type_16_may_come_in_an_auth3() {
    let mut realm = Realm::new();
    let endpoints = realm.endpoints();
    for level in [
        AuthLevel::CONNECT,
        AuthLevel::PKT_INTEGRITY,
        AuthLevel::PKT_PRIVACY,
    ] {
        let mut pump = Pump::open(&endpoints, ClientConfig::default());
        let provider = KerberosClientSecurity::new(
            AuthType::KERBEROS,
            realm.ticket(STORE),
            NOW,
            500 + u64::from(level.0),
        )
        .third_leg_in_auth3();
        let events = pump.bind(BindSecurity {
            provider: Box::new(provider),
            level,
            auth_context_id: 1,
        });
        assert!(
            matches!(events.as_slice(), [ClientEvent::BindAcked(_)]),
            "{level:?}: {events:?}"
        );
        assert_eq!(pump.sent.len(), 2);
        assert_eq!(pump.sent[1][2], 16, "auth3");
        assert_eq!(
            pump.server.principal(1).map(|p| p.user.as_str()),
            Some("alice")
        );
        assert_eq!(pump.nspi_bind(), 0, "{level:?}");
    }
    // SPNEGO's closing reply cannot ride an auth3: it stays an alter_context.
    let spnego = KerberosClientSecurity::new(AuthType::SPNEGO, realm.ticket(STORE), NOW, 501)
        .third_leg_in_auth3();
    let mut pump = Pump::open(&endpoints, ClientConfig::default());
    pump.bind(BindSecurity {
        provider: Box::new(spnego),
        level: AuthLevel::PKT_PRIVACY,
        auth_context_id: 1,
    });
    assert_eq!(pump.sent[1][2], 14, "alter_context");
}
