use super::*;
use crate::kerberos::client::Request;
use crate::kerberos::flags::{FORWARDABLE, FORWARDED};
use crate::kerberos::{Kdc, KdcConfig, RealmDb, NT_SRV_HST};
use crate::LabFile;

const NOW: Seconds = 1_704_067_200;

struct Realm {
    kdc: Kdc,
    rng: SeededRng,
}

impl Realm {
    fn new() -> Realm {
        let world = LabFile::default_lab().build().expect("lab");
        Realm {
            kdc: Kdc::new(RealmDb::for_world(&world), KdcConfig::default(), 3),
            rng: SeededRng::new(4),
        }
    }

    fn tgt(&mut self, user: &str, password: &str, options: u32) -> Credentials {
        let kdc = &mut self.kdc;
        let request = Request {
            options,
            ..Request::default()
        };
        client::login(
            &mut |r| Ok(kdc.handle(r, NOW).bytes),
            user,
            "EXAMPLE.TEST",
            password,
            &request,
            NOW,
            &mut self.rng,
        )
        .expect("TGT")
    }

    fn ticket(&mut self, tgt: &Credentials, service: &str, options: u32) -> Credentials {
        let kdc = &mut self.kdc;
        let request = Request {
            options,
            ..Request::default()
        };
        let server = Name::parse(service, NT_SRV_HST);
        client::ticket(
            &mut |r| Ok(kdc.handle(r, NOW).bytes),
            tgt,
            &server,
            &request,
            NOW,
            &mut self.rng,
        )
        .expect("service ticket")
    }

    fn acceptor(&self, service: &str) -> Acceptor {
        let entry = self
            .kdc
            .db()
            .entry(service)
            .cloned()
            .expect("service entry");
        Acceptor::new("EXAMPLE.TEST", vec![entry], 5)
    }
}

#[test]
fn frames_round_trip_and_refuse_other_mechanisms() {
    let token = frame(TOK_AP_REQ, b"body");
    assert_eq!(
        &token[..13],
        &[0x60, 0x11, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02]
    );
    assert_eq!(unframe(&token), Some((TOK_AP_REQ, &b"body"[..])));
    let mut ms = token.clone();
    ms[7] = 0x82;
    assert_eq!(unframe(&ms), Some((TOK_AP_REQ, &b"body"[..])));
    let mut other = token.clone();
    other[12] = 0x03;
    assert_eq!(unframe(&other), None);
    assert_eq!(unframe(&token[..token.len() - 1]), None);
    let long = frame(TOK_AP_REQ, &[7u8; 300]);
    assert_eq!(&long[..4], &[0x60, 0x82, 0x01, 0x39]);
    assert_eq!(unframe(&long).map(|(_, b)| b.len()), Some(300));
}

#[test]
fn a_delegated_tgt_reaches_the_acceptor_and_makes_the_second_hop() {
    let mut realm = Realm::new();
    let tgt = realm.tgt("alice", "secret", FORWARDABLE);
    let web = realm.ticket(&tgt, "HTTP/web.example.test", FORWARDABLE);
    let forwarded = realm.ticket(&tgt, "krbtgt/EXAMPLE.TEST", FORWARDABLE | FORWARDED);
    let flags = gss_flags::MUTUAL | gss_flags::REPLAY | gss_flags::CONF | gss_flags::INTEG;
    let (token, ctx) = initiate(&web, flags, Some(&forwarded), false, NOW, &mut realm.rng);
    let mut acceptor = realm.acceptor("HTTP/web.example.test");
    let accepted = acceptor.accept(&token, NOW + 1).expect("accepted");
    assert_eq!(accepted.client.text(), "alice");
    assert_eq!(accepted.service.text(), "HTTP/web.example.test");
    assert_eq!(accepted.gss_flags, flags | gss_flags::DELEG);
    let delegated = accepted.delegated.clone().expect("a delegated TGT");
    assert_eq!(delegated.server.text(), "krbtgt/EXAMPLE.TEST");
    assert_eq!(delegated.client.text(), "alice");
    assert_ne!(delegated.flags & FORWARDED, 0);
    assert_eq!(delegated.session, forwarded.session);
    // The web tier uses it for the store: the double hop.
    let store = realm.ticket(&delegated, "exchangeMDB/mail.example.test", 0);
    assert_eq!(store.client.text(), "alice");
    // Mutual authentication: the initiator checks the AP-REP.
    let reply = accepted.reply.clone().expect("AP-REP");
    assert_eq!(unframe(&reply).map(|(id, _)| id), Some(TOK_AP_REP));
    assert_eq!(ctx.read_reply(&reply), Ok(accepted.acceptor_subkey.clone()));
}

#[test]
fn without_delegation_there_is_no_tgt_and_no_deleg_flag() {
    let mut realm = Realm::new();
    let tgt = realm.tgt("bob", "hunter2", 0);
    let web = realm.ticket(&tgt, "HTTP/plain.example.test", 0);
    let (token, _) = initiate(
        &web,
        gss_flags::MUTUAL | gss_flags::DELEG,
        None,
        false,
        NOW,
        &mut realm.rng,
    );
    let accepted = realm
        .acceptor("HTTP/plain.example.test")
        .accept(&token, NOW)
        .expect("accepted");
    assert_eq!(accepted.gss_flags, gss_flags::MUTUAL);
    assert_eq!(accepted.delegated, None);
}

#[test]
fn the_acceptor_refuses_replays_skew_other_services_and_tampering() {
    let mut realm = Realm::new();
    let tgt = realm.tgt("alice", "secret", FORWARDABLE);
    let web = realm.ticket(&tgt, "HTTP/web.example.test", 0);
    let (token, _) = initiate(&web, gss_flags::MUTUAL, None, false, NOW, &mut realm.rng);
    let mut acceptor = realm.acceptor("HTTP/web.example.test");
    assert!(acceptor.accept(&token, NOW).is_ok());
    assert_eq!(
        acceptor.accept(&token, NOW).map_err(|e| e.code),
        Err(err::REPEAT)
    );

    let (late, _) = initiate(&web, 0, None, false, NOW - 301, &mut realm.rng);
    assert_eq!(
        realm
            .acceptor("HTTP/web.example.test")
            .accept(&late, NOW)
            .map_err(|e| e.code),
        Err(err::SKEW)
    );

    let (token, _) = initiate(&web, 0, None, false, NOW, &mut realm.rng);
    let store = realm.acceptor("exchangeMDB/mail.example.test");
    assert_eq!(
        store.clone().accept(&token, NOW).map_err(|e| e.code),
        Err(err::NOT_US)
    );

    // A service whose key changed (another password) cannot open the ticket.
    let mut wrong = realm
        .kdc
        .db()
        .entry("HTTP/web.example.test")
        .cloned()
        .expect("entry");
    wrong.keys = vec![Key::from_password(
        Etype::Aes256,
        "other",
        "EXAMPLE.TESTHTTPweb.example.test",
    )];
    let mut acceptor = Acceptor::new("EXAMPLE.TEST", vec![wrong], 1);
    assert_eq!(
        acceptor.accept(&token, NOW).map_err(|e| e.code),
        Err(err::BAD_INTEGRITY)
    );

    // A flipped octet in the authenticator's ciphertext (the token's last octets).
    let mut flipped = token.clone();
    let last = flipped.len() - 3;
    flipped[last] ^= 1;
    assert_eq!(
        realm
            .acceptor("HTTP/web.example.test")
            .accept(&flipped, NOW)
            .map_err(|e| e.code),
        Err(err::BAD_INTEGRITY)
    );

    // Garbage and a wrong token id.
    assert!(realm
        .acceptor("HTTP/web.example.test")
        .accept(b"\x60\x02\x06\x00", NOW)
        .is_err());
    let rep_id = frame(TOK_AP_REP, b"x");
    assert_eq!(
        realm
            .acceptor("HTTP/web.example.test")
            .accept(&rep_id, NOW)
            .map_err(|e| e.code),
        Err(err::MSG_TYPE)
    );
}

#[test]
fn an_expired_ticket_is_refused_and_dce_style_tokens_are_raw() {
    let mut realm = Realm::new();
    let tgt = realm.tgt("alice", "secret", 0);
    let mdb = realm.ticket(&tgt, "exchangeMDB/mail.example.test", 0);
    let late = mdb.end_time + 301;
    let (token, _) = initiate(&mdb, 0, None, true, late, &mut realm.rng);
    assert_eq!(token[0], 0x6E, "raw AP-REQ");
    assert_eq!(
        realm
            .acceptor("exchangeMDB/mail.example.test")
            .accept(&token, late)
            .map_err(|e| e.code),
        Err(err::TKT_EXPIRED)
    );
    let (token, ctx) = initiate(
        &mdb,
        gss_flags::MUTUAL | gss_flags::DCE_STYLE,
        None,
        true,
        NOW,
        &mut realm.rng,
    );
    let accepted = realm
        .acceptor("exchangeMDB/mail.example.test")
        .accept(&token, NOW)
        .expect("accepted");
    let reply = accepted.reply.expect("AP-REP");
    assert_eq!(reply[0], 0x6F, "raw AP-REP");
    assert!(ctx.read_reply(&reply).is_ok());
}

#[test]
fn a_reply_that_does_not_echo_the_time_fails_mutual_authentication() {
    let mut realm = Realm::new();
    let tgt = realm.tgt("alice", "secret", 0);
    let web = realm.ticket(&tgt, "HTTP/web.example.test", 0);
    let (first, ctx) = initiate(&web, gss_flags::MUTUAL, None, false, NOW, &mut realm.rng);
    let (second, _) = initiate(
        &web,
        gss_flags::MUTUAL,
        None,
        false,
        NOW + 1,
        &mut realm.rng,
    );
    let mut acceptor = realm.acceptor("HTTP/web.example.test");
    assert!(acceptor.accept(&first, NOW).is_ok());
    let other = acceptor
        .accept(&second, NOW + 1)
        .expect("second")
        .reply
        .expect("AP-REP");
    assert_eq!(
        ctx.read_reply(&other).map_err(|e| e.code),
        Err(err::MODIFIED)
    );
}

#[test]
fn ticket_and_authenticator_times_are_checked_with_the_skew_on_each_side() {
    let mut realm = Realm::new();
    let tgt = realm.tgt("alice", "secret", 0);
    let web = realm.ticket(&tgt, "HTTP/web.example.test", 0);
    let end = web.end_time;
    let code_at = |realm: &mut Realm, made: Seconds, at: Seconds| {
        let (token, _) = initiate(&web, 0, None, false, made, &mut realm.rng);
        realm
            .acceptor("HTTP/web.example.test")
            .accept(&token, at)
            .map(|_| ())
            .map_err(|e| e.code)
    };
    // The ticket ends at `end`; the acceptor allows the skew past it, and not a second more.
    assert_eq!(code_at(&mut realm, end + 1, end + 1), Ok(()));
    assert_eq!(code_at(&mut realm, end + 300, end + 300), Ok(()));
    assert_eq!(
        code_at(&mut realm, end + 301, end + 301),
        Err(err::TKT_EXPIRED)
    );
    // It starts at NOW: an acceptor's clock up to the skew behind is fine.
    assert_eq!(code_at(&mut realm, NOW - 300, NOW - 300), Ok(()));
    assert_eq!(code_at(&mut realm, NOW - 301, NOW - 301), Err(err::TKT_NYV));
    // The authenticator's time: up to the skew either way.
    assert_eq!(code_at(&mut realm, NOW, NOW + 300), Ok(()));
    assert_eq!(code_at(&mut realm, NOW + 300, NOW), Ok(()));
    assert_eq!(code_at(&mut realm, NOW, NOW + 301), Err(err::SKEW));
    assert_eq!(code_at(&mut realm, NOW + 301, NOW), Err(err::SKEW));
}

#[test]
fn an_authenticator_naming_another_client_is_refused() {
    let mut realm = Realm::new();
    let tgt = realm.tgt("alice", "secret", 0);
    let web = realm.ticket(&tgt, "HTTP/web.example.test", 0);
    // alice's ticket with an authenticator that says bob.
    let bob = Credentials {
        client: Name::user("bob"),
        ..web.clone()
    };
    let (token, _) = initiate(&bob, 0, None, false, NOW, &mut realm.rng);
    let got = realm.acceptor("HTTP/web.example.test").accept(&token, NOW);
    assert_eq!(got.map(|_| ()).map_err(|e| e.code), Err(err::BADMATCH));
    // And one that names alice in another realm.
    let elsewhere = Credentials {
        realm: "OTHER.TEST".into(),
        ..web
    };
    let (token, _) = initiate(&elsewhere, 0, None, false, NOW, &mut realm.rng);
    let got = realm.acceptor("HTTP/web.example.test").accept(&token, NOW);
    assert_eq!(got.map(|_| ()).map_err(|e| e.code), Err(err::BADMATCH));
}

#[test]
fn a_plain_kerberos_checksum_is_not_read_as_gss_flags() {
    let mut realm = Realm::new();
    let tgt = realm.tgt("alice", "secret", 0);
    let web = realm.ticket(&tgt, "HTTP/web.example.test", 0);
    // A raw Kerberos application's authenticator: a keyed checksum (type 16), no 0x8003.
    let cksum = Checksum {
        cksumtype: ExplicitContextTag0::from(int_asn1(16)),
        checksum: ExplicitContextTag1::from(OctetStringAsn1::from(web.session.checksum(10, b""))),
    };
    let ap = client::ap_req(
        &web,
        USAGE_AP_REQ_AUTH,
        0,
        Some(cksum),
        None,
        None,
        (NOW, 5),
    );
    let token = frame(TOK_AP_REQ, &picky_asn1_der::to_vec(&ap).expect("AP-REQ"));
    let accepted = realm
        .acceptor("HTTP/web.example.test")
        .accept(&token, NOW)
        .expect("accepted");
    assert_eq!((accepted.gss_flags, accepted.delegated), (0, None));
    assert_eq!(accepted.reply, None, "no mutual authentication asked");
}

/// A framed AP-REQ for `web` with `ap_options` and a checksum of `cksumtype` and `value`.
fn token_with(web: &Credentials, ap_options: u32, cksumtype: i64, value: Vec<u8>) -> Vec<u8> {
    let cksum = Checksum {
        cksumtype: ExplicitContextTag0::from(int_asn1(cksumtype)),
        checksum: ExplicitContextTag1::from(OctetStringAsn1::from(value)),
    };
    let ap = client::ap_req(
        web,
        USAGE_AP_REQ_AUTH,
        ap_options,
        Some(cksum),
        None,
        None,
        (NOW, 7),
    );
    frame(TOK_AP_REQ, &picky_asn1_der::to_vec(&ap).expect("AP-REQ"))
}

/// The 0x8003 value: Lgth 16, zero bindings, `flags`, then `rest`.
fn gss_value(flags: u32, rest: &[u8]) -> Vec<u8> {
    let mut v = 16u32.to_le_bytes().to_vec();
    v.extend_from_slice(&[0; 16]);
    v.extend_from_slice(&flags.to_le_bytes());
    v.extend_from_slice(rest);
    v
}

#[test]
fn mutual_authentication_follows_either_the_ap_options_or_the_gss_flags() {
    let mut realm = Realm::new();
    let tgt = realm.tgt("alice", "secret", 0);
    let web = realm.ticket(&tgt, "HTTP/web.example.test", 0);
    let accept = |token: Vec<u8>| {
        realm
            .acceptor("HTTP/web.example.test")
            .accept(&token, NOW)
            .expect("accepted")
    };
    // mutual-required in the AP options alone (a raw Kerberos client), no GSS checksum
    let plain = token_with(&web, AP_MUTUAL_REQUIRED, 16, web.session.checksum(10, b""));
    assert!(accept(plain).reply.is_some());
    // MUTUAL in the GSS flags alone
    let flags_only = token_with(&web, 0, CKSUM_GSS, gss_value(gss_flags::MUTUAL, &[]));
    let accepted = accept(flags_only);
    assert_eq!(accepted.gss_flags, gss_flags::MUTUAL);
    assert!(accepted.reply.is_some());
    // neither
    let neither = token_with(&web, 0, CKSUM_GSS, gss_value(gss_flags::REPLAY, &[]));
    assert_eq!(accept(neither).reply, None);
}

#[test]
fn the_gss_checksum_is_read_as_rfc_4121_lays_it_out() {
    let mut realm = Realm::new();
    let tgt = realm.tgt("alice", "secret", 0);
    let web = realm.ticket(&tgt, "HTTP/web.example.test", 0);
    let accept = |value: Vec<u8>| {
        let token = token_with(&web, 0, CKSUM_GSS, value);
        realm
            .acceptor("HTTP/web.example.test")
            .accept(&token, NOW)
            .map(|a| (a.gss_flags, a.delegated.is_some()))
            .map_err(|e| e.code)
    };
    // DELEG without the delegation fields: no delegation, and the flag is dropped.
    assert_eq!(
        accept(gss_value(gss_flags::DELEG | gss_flags::INTEG, &[])),
        Ok((gss_flags::INTEG, false))
    );
    // No DELEG, then MIT's extensions after the flags: read as no delegation.
    let exts = [0, 0, 0, 2, 0, 0, 0, 1, 9];
    assert_eq!(
        accept(gss_value(gss_flags::CONF, &exts)),
        Ok((gss_flags::CONF, false))
    );
    // DELEG with a DlgOpt other than 1, a Dlgth past the end, a Lgth other than 16.
    let bad_opt = gss_value(gss_flags::DELEG, &[2, 0, 1, 0, 0]);
    assert_eq!(accept(bad_opt), Err(err::INAPP_CKSUM));
    let past_end = gss_value(gss_flags::DELEG, &[1, 0, 0xff, 0]);
    assert_eq!(accept(past_end), Err(err::INAPP_CKSUM));
    // DlgOpt 1 and a short Dlgth that fits: the two octets are read as a KRB-CRED, which
    // they are not.
    let short_cred = gss_value(gss_flags::DELEG, &[1, 0, 2, 0, 0x30, 0x00]);
    assert_eq!(accept(short_cred), Err(err::GENERIC));
    let mut lgth = gss_value(0, &[]);
    lgth[0] = 15;
    assert_eq!(accept(lgth), Err(err::INAPP_CKSUM));
    // DELEG with a KRB-CRED that does not decrypt in the session key.
    let other_key = Key::from_password(Etype::Aes256, "x", "y");
    let cred = krb_cred(&tgt, &other_key);
    let mut rest = vec![1, 0];
    rest.extend_from_slice(&(cred.len() as u16).to_le_bytes());
    rest.extend_from_slice(&cred);
    assert_eq!(
        accept(gss_value(gss_flags::DELEG, &rest)),
        Err(err::BAD_INTEGRITY)
    );
}
