use super::*;
use crate::kerberos::client::{self, ClientError, Credentials, Request};
use crate::kerberos::flags::{
    FORWARDABLE, FORWARDED, INITIAL, OK_AS_DELEGATE, PRE_AUTHENT, RENEWABLE, RENEWABLE_OK,
    TRANSITED_POLICY_CHECKED,
};
use crate::LabFile;

/// 2024-01-01T00:00:00Z, the lab's epoch.
const NOW: Seconds = 1_704_067_200;

fn kdc() -> Kdc {
    let world = LabFile::default_lab().build().expect("default lab");
    Kdc::new(RealmDb::for_world(&world), KdcConfig::default(), 7)
}

fn exchange(kdc: &mut Kdc, now: Seconds) -> impl FnMut(&[u8]) -> Result<Vec<u8>, String> + '_ {
    move |req| Ok(kdc.handle(req, now).bytes)
}

fn forwardable() -> Request {
    Request {
        options: FORWARDABLE | RENEWABLE_OK,
        ..Request::default()
    }
}

fn login(
    kdc: &mut Kdc,
    user: &str,
    password: &str,
    request: &Request,
) -> Result<Credentials, ClientError> {
    let mut rng = SeededRng::new(1);
    client::login(
        &mut exchange(kdc, NOW),
        user,
        "EXAMPLE.TEST",
        password,
        request,
        NOW,
        &mut rng,
    )
}

fn service(
    kdc: &mut Kdc,
    tgt: &Credentials,
    name: &str,
    request: &Request,
    now: Seconds,
) -> Result<Credentials, ClientError> {
    let mut rng = SeededRng::new(now as u64);
    let server = Name::parse(name, crate::kerberos::NT_SRV_HST);
    client::ticket(
        &mut exchange(kdc, now),
        tgt,
        &server,
        request,
        now,
        &mut rng,
    )
}

fn last_outcome(kdc: &mut Kdc, req: &[u8]) -> KdcOutcome {
    kdc.handle(req, NOW).outcome
}

fn code(e: Result<Credentials, ClientError>) -> Option<u32> {
    e.err().and_then(|e| e.code())
}

#[test]
fn kinit_asks_for_preauth_then_issues_a_forwardable_tgt() {
    let mut kdc = kdc();
    // The first AS-REQ, without PA-ENC-TIMESTAMP, gets PREAUTH_REQUIRED with the salt.
    let nonce = 42;
    let tgs = Name::tgs("EXAMPLE.TEST");
    let bare = client::as_req(
        &Name::user("alice"),
        "EXAMPLE.TEST",
        &tgs,
        &forwardable(),
        nonce,
        NOW,
        vec![],
    );
    let reply = kdc.handle(&bare, NOW);
    let (code, text, e_data) = client::read_error(&reply.bytes).expect("a KRB-ERROR");
    assert_eq!(
        (code, text.as_str()),
        (err::PREAUTH_REQUIRED, "NEEDED_PREAUTH")
    );
    assert_eq!(
        client::preauth_hint(&e_data.expect("METHOD-DATA")),
        Some((Etype::Aes256, "EXAMPLE.TESTalice".to_string()))
    );

    let tgt = login(&mut kdc, "alice", "secret", &forwardable()).expect("TGT");
    assert_eq!(tgt.server.text(), "krbtgt/EXAMPLE.TEST");
    assert_eq!(tgt.client.text(), "alice");
    assert_eq!(tgt.flags, FORWARDABLE | INITIAL | PRE_AUTHENT | RENEWABLE);
    assert_eq!(crate::kerberos::flags::letters(tgt.flags), "FRIA");
    assert_eq!(tgt.session.etype, Etype::Aes256);
    assert_eq!(tgt.end_time, NOW + 10 * 3600);
    assert_eq!(tgt.auth_time, NOW);
}

#[test]
fn wrong_password_unknown_client_and_unknown_service_get_their_codes() {
    let mut kdc = kdc();
    assert_eq!(
        code(login(&mut kdc, "alice", "wrong", &forwardable())),
        Some(err::PREAUTH_FAILED)
    );
    let nobody = login(&mut kdc, "nobody", "x", &forwardable());
    assert_eq!(code(nobody), Some(err::C_PRINCIPAL_UNKNOWN));
    // Names are case-sensitive, as MIT's are.
    assert_eq!(
        code(login(&mut kdc, "Alice", "secret", &forwardable())),
        Some(err::C_PRINCIPAL_UNKNOWN)
    );
    let tgt = login(&mut kdc, "alice", "secret", &forwardable()).expect("TGT");
    let missing = service(
        &mut kdc,
        &tgt,
        "exchangeAB/gc9.example.test",
        &Request::default(),
        NOW,
    );
    assert_eq!(code(missing), Some(err::S_PRINCIPAL_UNKNOWN));
}

#[test]
fn service_tickets_carry_ok_as_delegate_only_where_the_service_has_it() {
    let mut kdc = kdc();
    let tgt = login(&mut kdc, "alice", "secret", &forwardable()).expect("TGT");
    let web = service(&mut kdc, &tgt, "HTTP/web.example.test", &forwardable(), NOW).expect("web");
    assert_eq!(
        web.flags,
        FORWARDABLE | PRE_AUTHENT | OK_AS_DELEGATE | RENEWABLE | TRANSITED_POLICY_CHECKED
    );
    assert_eq!(
        crate::kerberos::flags::letters(web.flags),
        "FRATO",
        "as MIT's KDC sets them"
    );
    let plain = service(
        &mut kdc,
        &tgt,
        "HTTP/plain.example.test",
        &forwardable(),
        NOW + 1,
    )
    .expect("plain");
    assert_eq!(plain.flags & OK_AS_DELEGATE, 0);
    // The ticket is sealed in the service's key: the service can open it.
    let db = kdc.db().clone();
    let key = db
        .entry("HTTP/web.example.test")
        .and_then(|e| e.ticket_key())
        .expect("key");
    let plain_part = key
        .decrypt(usage::TICKET, &web.ticket.0.enc_part.0.cipher.0 .0)
        .expect("opens");
    let part: EncTicketPartApp = picky_asn1_der::from_bytes(&plain_part).expect("EncTicketPart");
    assert_eq!(Name::from_asn1(&part.0.cname.0).text(), "alice");
    assert_eq!(key_of(&part.0.key.0), Some(web.session.clone()));
    assert_eq!(
        int(&web.ticket.0.enc_part.0.kvno.0.as_ref().expect("kvno").0),
        Some(1)
    );
}

#[test]
fn a_forwarded_tgt_needs_a_forwardable_one() {
    let mut kdc = kdc();
    let fwd = Request {
        options: FORWARDABLE | FORWARDED,
        ..Request::default()
    };
    let tgt = login(&mut kdc, "alice", "secret", &forwardable()).expect("TGT");
    let forwarded =
        service(&mut kdc, &tgt, "krbtgt/EXAMPLE.TEST", &fwd, NOW).expect("forwarded TGT");
    assert_eq!(
        forwarded.flags & (FORWARDED | FORWARDABLE),
        FORWARDED | FORWARDABLE
    );
    // The forwarded TGT makes the second hop, and the flag follows the service ticket.
    let store = service(
        &mut kdc,
        &forwarded,
        "exchangeMDB/mail.example.test",
        &Request::default(),
        NOW + 1,
    )
    .expect("store ticket from the forwarded TGT");
    assert_ne!(store.flags & FORWARDED, 0);

    let plain_tgt = login(&mut kdc, "bob", "hunter2", &Request::default()).expect("TGT");
    assert_eq!(plain_tgt.flags & FORWARDABLE, 0);
    assert_eq!(
        code(service(
            &mut kdc,
            &plain_tgt,
            "krbtgt/EXAMPLE.TEST",
            &fwd,
            NOW
        )),
        Some(err::BADOPTION)
    );
}

#[test]
fn tgs_checks_skew_expiry_checksum_and_replay() {
    let mut kdc = kdc();
    let tgt = login(&mut kdc, "alice", "secret", &forwardable()).expect("TGT");
    let req = Request::default();
    // An authenticator made 301 s before the KDC's clock: outside the five-minute skew.
    let server = Name::parse("HTTP/web.example.test", crate::kerberos::NT_SRV_HST);
    let mut rng = SeededRng::new(9);
    let (bytes, _) = client::tgs_req(&tgt, &server, &req, 5, NOW - 301, &mut rng);
    assert!(matches!(
        last_outcome(&mut kdc, &bytes),
        KdcOutcome::Refused {
            code: err::SKEW,
            ..
        }
    ));
    // After the TGT's end (10 h) plus skew: expired.
    let late = NOW + 10 * 3600 + 301;
    let (bytes, _) = client::tgs_req(&tgt, &server, &req, 6, late, &mut rng);
    assert!(matches!(
        kdc.handle(&bytes, late).outcome,
        KdcOutcome::Refused {
            code: err::TKT_EXPIRED,
            ..
        }
    ));

    // A body altered after the checksum was made: MODIFIED.
    let (bytes, _) = client::tgs_req(&tgt, &server, &req, 7, NOW, &mut rng);
    let body = der::kdc_req_body(&bytes).expect("body");
    let at = bytes.len() - body.len();
    let mut altered = bytes.clone();
    // The nonce (a small INTEGER near the end of the body) changes value.
    let nonce_at = altered[at..]
        .windows(3)
        .position(|w| w == [0x02, 0x01, 0x07])
        .expect("nonce")
        + at
        + 2;
    altered[nonce_at] = 0x08;
    assert!(matches!(
        last_outcome(&mut kdc, &altered),
        KdcOutcome::Refused {
            code: err::MODIFIED,
            ..
        }
    ));

    // The same request again is a retransmission: the same reply, not a replay error.
    let (bytes, _) = client::tgs_req(&tgt, &server, &req, 8, NOW, &mut rng);
    let first = kdc.handle(&bytes, NOW);
    assert!(matches!(first.outcome, KdcOutcome::TgsIssued { .. }));
    let again = kdc.handle(&bytes, NOW);
    assert_eq!(
        (again.outcome, again.bytes),
        (KdcOutcome::Repeated, first.bytes)
    );
}

#[test]
fn a_request_replayed_after_the_lookaside_forgot_it_is_refused() {
    let mut kdc = kdc();
    let tgt = login(&mut kdc, "alice", "secret", &forwardable()).expect("TGT");
    let server = Name::parse("HTTP/web.example.test", crate::kerberos::NT_SRV_HST);
    let req = Request::default();
    let mut rng = SeededRng::new(3);
    let (captured, _) = client::tgs_req(&tgt, &server, &req, 100, NOW, &mut rng);
    assert!(matches!(
        last_outcome(&mut kdc, &captured),
        KdcOutcome::TgsIssued { .. }
    ));
    // Right away it is a retransmission, answered from the lookaside.
    assert_eq!(last_outcome(&mut kdc, &captured), KdcOutcome::Repeated);
    // After as many other requests as the lookaside holds, the same octets are a replay.
    for nonce in 0..LOOKASIDE as u32 {
        let (other, _) = client::tgs_req(&tgt, &server, &req, 200 + nonce, NOW, &mut rng);
        assert!(matches!(
            last_outcome(&mut kdc, &other),
            KdcOutcome::TgsIssued { .. }
        ));
    }
    assert!(matches!(
        last_outcome(&mut kdc, &captured),
        KdcOutcome::Refused {
            code: err::REPEAT,
            ..
        }
    ));
    // Two authenticators at the same time and microseconds (two clients of alice's, the
    // same seed) are different authenticators: both are served.
    let (a, _) = client::tgs_req(&tgt, &server, &req, 300, NOW, &mut SeededRng::new(9));
    let (b, _) = client::tgs_req(&tgt, &server, &req, 301, NOW, &mut SeededRng::new(9));
    assert!(matches!(
        last_outcome(&mut kdc, &a),
        KdcOutcome::TgsIssued { .. }
    ));
    assert!(matches!(
        last_outcome(&mut kdc, &b),
        KdcOutcome::TgsIssued { .. }
    ));
}

#[test]
fn bad_requests_get_krb_errors_not_panics() {
    let mut kdc = kdc();
    for (bytes, expected) in [
        (&b""[..], err::MSG_TYPE),
        (&b"\x6a\x03\x30\x01"[..], err::GENERIC),
        (&b"\x6c\x84\xff\xff\xff\xff"[..], err::GENERIC),
        (&b"GET / HTTP/1.1\r\n"[..], err::MSG_TYPE),
    ] {
        let reply = kdc.handle(bytes, NOW);
        let (code, _, _) = client::read_error(&reply.bytes).expect("KRB-ERROR");
        assert_eq!(code, expected, "{bytes:?}");
    }
    // Options the lab does not do, in an AS-REQ.
    let tgs = Name::tgs("EXAMPLE.TEST");
    let postdate = Request {
        options: crate::kerberos::flags::ALLOW_POSTDATE,
        ..Request::default()
    };
    let req = client::as_req(
        &Name::user("bob"),
        "EXAMPLE.TEST",
        &tgs,
        &postdate,
        1,
        NOW,
        vec![],
    );
    assert!(matches!(
        last_outcome(&mut kdc, &req),
        KdcOutcome::Refused {
            code: err::BADOPTION,
            ..
        }
    ));
    // Another realm.
    let req = client::as_req(
        &Name::user("bob"),
        "OTHER.TEST",
        &tgs,
        &Request::default(),
        2,
        NOW,
        vec![],
    );
    assert!(matches!(
        last_outcome(&mut kdc, &req),
        KdcOutcome::Refused {
            code: err::WRONG_REALM,
            ..
        }
    ));
    // No enctype the KDC has.
    let des = Request {
        etypes: vec![],
        ..Request::default()
    };
    let req = client::as_req(
        &Name::user("bob"),
        "EXAMPLE.TEST",
        &tgs,
        &des,
        3,
        NOW,
        vec![],
    );
    assert!(matches!(
        last_outcome(&mut kdc, &req),
        KdcOutcome::Refused {
            code: err::ETYPE_NOSUPP,
            ..
        }
    ));
}

#[test]
fn a_timestamp_outside_the_skew_is_refused_and_seeded_keys_repeat() {
    let mut kdc = kdc();
    let key = kdc
        .db()
        .entry("alice")
        .and_then(|e| e.key(Etype::Aes256))
        .cloned()
        .expect("key");
    let tgs = Name::tgs("EXAMPLE.TEST");
    let stale = client::enc_timestamp(&key, NOW - 301);
    let req = client::as_req(
        &Name::user("alice"),
        "EXAMPLE.TEST",
        &tgs,
        &Request::default(),
        4,
        NOW,
        vec![stale],
    );
    assert!(matches!(
        last_outcome(&mut kdc, &req),
        KdcOutcome::Refused {
            code: err::SKEW,
            ..
        }
    ));
    let edge = client::enc_timestamp(&key, NOW - 300);
    let req = client::as_req(
        &Name::user("alice"),
        "EXAMPLE.TEST",
        &tgs,
        &Request::default(),
        5,
        NOW,
        vec![edge],
    );
    assert!(matches!(
        last_outcome(&mut kdc, &req),
        KdcOutcome::AsIssued { .. }
    ));

    let a = login(&mut self::kdc(), "bob", "hunter2", &Request::default()).expect("a");
    let b = login(&mut self::kdc(), "bob", "hunter2", &Request::default()).expect("b");
    assert_eq!(a.session, b.session, "same seed, same session key");
}

#[test]
fn a_removed_service_is_unknown_until_it_comes_back() {
    let mut kdc = kdc();
    let tgt = login(&mut kdc, "alice", "secret", &forwardable()).expect("TGT");
    let gc = "exchangeAB/gc2.example.test";
    assert!(service(&mut kdc, &tgt, gc, &Request::default(), NOW).is_ok());
    kdc.db_mut().remove(gc);
    assert_eq!(
        code(service(&mut kdc, &tgt, gc, &Request::default(), NOW + 1)),
        Some(err::S_PRINCIPAL_UNKNOWN)
    );
    kdc.db_mut().add_service(gc, false);
    assert!(service(&mut kdc, &tgt, gc, &Request::default(), NOW + 2).is_ok());
}

#[test]
fn a_tgt_is_checked_for_its_realm_its_name_and_its_times_at_the_skews_edges() {
    let mut kdc = kdc();
    let tgt = login(&mut kdc, "alice", "secret", &forwardable()).expect("TGT");
    let end = tgt.end_time;
    let web = "HTTP/plain.example.test";
    let at = |kdc: &mut Kdc, tgt: &Credentials, t: Seconds| {
        code(service(kdc, tgt, web, &Request::default(), t))
    };
    // Past its end the TGT is not expired until the skew has passed too; in between it
    // opens, but any ticket from it would end before it starts: never valid.
    assert_eq!(at(&mut kdc, &tgt, end - 1), None);
    assert_eq!(at(&mut kdc, &tgt, end + 1), Some(err::NEVER_VALID));
    assert_eq!(at(&mut kdc, &tgt, end + 300), Some(err::NEVER_VALID));
    assert_eq!(at(&mut kdc, &tgt, end + 301), Some(err::TKT_EXPIRED));
    // Valid up to the skew before its start (the client's and the KDC's clock agree here).
    assert_eq!(at(&mut kdc, &tgt, NOW - 300), None);
    assert_eq!(at(&mut kdc, &tgt, NOW - 301), Some(err::TKT_NYV));

    // Not a TGT: a service ticket, a krbtgt of another realm, a TGT that says it is from
    // another realm. Each alone is refused.
    let service_ticket = service(&mut kdc, &tgt, web, &Request::default(), NOW).expect("ticket");
    assert_eq!(at(&mut kdc, &service_ticket, NOW + 1), Some(err::NOT_US));
    let mut other_tgs = tgt.clone();
    other_tgs.ticket.0.sname.0 = Name::tgs("OTHER.TEST").to_asn1();
    assert_eq!(at(&mut kdc, &other_tgs, NOW + 2), Some(err::NOT_US));
    let mut other_realm = tgt.clone();
    other_realm.ticket.0.realm.0 = crate::kerberos::kstring("OTHER.TEST");
    assert_eq!(at(&mut kdc, &other_realm, NOW + 3), Some(err::NOT_US));
}
