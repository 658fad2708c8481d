//! Kerberos targets ([`crate::kerberos`], RFC 4120):
//!
//! * `krb_message_decode`: any octets, read as each message the lab decodes (AS-REQ,
//!   TGS-REQ, AS-REP, TGS-REP, KRB-ERROR, AP-REQ, Authenticator, EncTicketPart), give an
//!   error or a value that encodes to octets which decode to the same value.
//! * `kerberos_token_chain`: arbitrary hops (kinit as a user with the right or a wrong
//!   password, forwardable or not; a TGS request with any TGT held so far, for any service
//!   or an unknown one, forwarded or not, at any clock offset; a GSS context to a web-tier
//!   service with or without delegation, replayed or not; the web tier's next hop with the
//!   delegated TGT) through the in-process KDC and acceptors. Invariant: every hop succeeds
//!   exactly when the token model says it can (right password, known principal, a
//!   forwardable TGT for a forwarded one, within the skew, a delegated TGT for the next
//!   hop, a fresh authenticator), and a refusal carries the model's Kerberos code.
//! * `spnego_decode`: any octets read as a NegTokenInit and as a NegTokenResp give an error
//!   or a token that writes to octets which read back to it.
//! * `kdc_bytes`: the KDC on raw octets, as a datagram (first octet even) or as a TCP
//!   stream cut into records (odd): it never panics, every reply is a KRB-ERROR, AS-REP
//!   or TGS-REP that decodes, an issued ticket's reply is never a KRB-ERROR, and garbage
//!   is never issued anything.

use std::sync::OnceLock;

use picky_krb::data_types::{Authenticator, Ticket};
use picky_krb::messages::{ApReq, AsRep, AsReq, KrbError, TgsRep, TgsReq};
use serde::{de::DeserializeOwned, Serialize};

use crate::kerberos::der;
use crate::kerberos::frame::{self, Record};
use crate::kerberos::kdc::EncTicketPartApp;
use crate::kerberos::{Kdc, KdcConfig, KdcOutcome, RealmDb, Seconds};
use crate::LabFile;

/// The fuzz targets' clock: 2024-01-01T00:00:00Z (seeds carry timestamps near it).
pub const FUZZ_NOW: Seconds = 1_704_067_200;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8]) {
    let Some(value) = der::decode::<T>(data) else {
        return;
    };
    let Ok(bytes) = picky_asn1_der::to_vec(&value) else {
        return;
    };
    let again: T = der::decode(&bytes).expect("an encoded message decodes");
    assert_eq!(again, value);
}

/// Fuzz target `krb_message_decode`.
pub fn krb_message_decode(data: &[u8]) {
    round_trip::<AsReq>(data);
    round_trip::<TgsReq>(data);
    round_trip::<AsRep>(data);
    round_trip::<TgsRep>(data);
    round_trip::<KrbError>(data);
    round_trip::<ApReq>(data);
    round_trip::<Authenticator>(data);
    round_trip::<Ticket>(data);
    round_trip::<EncTicketPartApp>(data);
}

/// Fuzz target `spnego_decode`.
pub fn spnego_decode(data: &[u8]) {
    use crate::kerberos::spnego;
    if let Ok(init) = spnego::read_init(data) {
        assert_eq!(spnego::read_init(&spnego::write_init(&init)), Ok(init));
    }
    if let Ok(resp) = spnego::read_resp(data) {
        assert_eq!(spnego::read_resp(&spnego::write_resp(&resp)), Ok(resp));
    }
}

/// The world's KDC, built once (its keys cost PBKDF2) and cloned per input.
pub fn fuzz_kdc() -> Kdc {
    static KDC: OnceLock<Kdc> = OnceLock::new();
    KDC.get_or_init(|| {
        // The default lab always builds (a test says so); an empty realm is the fallback.
        let db = LabFile::default_lab()
            .build()
            .map(|world| RealmDb::for_world(&world))
            .unwrap_or_else(|_| RealmDb::new("EXAMPLE.TEST"));
        Kdc::new(db, KdcConfig::default(), 1)
    })
    .clone()
}

fn check_reply(request: &[u8], reply: &crate::kerberos::KdcReply) {
    let error = der::decode::<KrbError>(&reply.bytes).is_some();
    match &reply.outcome {
        KdcOutcome::Refused { .. } => assert!(error, "a refusal is a KRB-ERROR"),
        KdcOutcome::AsIssued { .. } => {
            assert!(der::decode::<AsRep>(&reply.bytes).is_some());
            assert!(der::decode::<AsReq>(request).is_some());
        }
        KdcOutcome::TgsIssued { .. } => {
            assert!(der::decode::<TgsRep>(&reply.bytes).is_some());
            assert!(der::decode::<TgsReq>(request).is_some());
        }
        KdcOutcome::Repeated => {}
    }
}

/// Fuzz target `kdc_bytes`.
pub fn kdc_bytes(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut kdc = fuzz_kdc();
    if mode % 2 == 0 {
        let reply = kdc.handle(rest, FUZZ_NOW);
        check_reply(rest, &reply);
        return;
    }
    // A stream: records until one is incomplete or too long (which the adapter answers
    // with KRB_ERR_FIELD_TOOLONG and a close).
    let mut buf = rest.to_vec();
    for _ in 0..16 {
        match frame::take_record(&mut buf) {
            Record::Message(m) => {
                let reply = kdc.handle(&m, FUZZ_NOW);
                check_reply(&m, &reply);
            }
            Record::TooLong(len) => {
                assert!(len as usize > frame::MAX_RECORD || len & 0x8000_0000 != 0);
                return;
            }
            Record::Incomplete => return,
        }
    }
}

/// Users and services the chain picks from (the last of each unknown to the realm).
const USERS: [(&str, &str); 3] = [("alice", "secret"), ("bob", "hunter2"), ("nobody", "x")];
const SERVICES: [&str; 5] = [
    "HTTP/web.example.test",
    "exchangeMDB/mail.example.test",
    "HTTP/plain.example.test",
    "exchangeAB/gc2.example.test",
    "HTTP/none.example.test",
];
/// Web-tier services a GSS context may be for (each has its own acceptor).
const WEB: [&str; 2] = ["HTTP/web.example.test", "HTTP/plain.example.test"];

/// A ticket the chain holds, and what the model knows of it.
struct Held {
    creds: crate::kerberos::client::Credentials,
    /// A TGT (krbtgt), which can ask for more tickets.
    tgt: bool,
    forwardable: bool,
    /// The KDC's clock when it issued the ticket: the ticket's start time.
    start: Seconds,
}

/// Fuzz target `kerberos_token_chain`.
pub fn kerberos_token_chain(data: &[u8]) {
    token_chain(data);
}

/// The chain `data` describes, checked hop by hop; returns the hops made, by name.
fn token_chain(data: &[u8]) -> Vec<&'static str> {
    use super::ops::{byte, choice, flag};
    use crate::kerberos::client::{self, ClientError, Request};
    use crate::kerberos::flags::{FORWARDABLE, FORWARDED};
    use crate::kerberos::gss::{self, gss_flags, Acceptor};
    use crate::kerberos::{err, Name, NT_SRV_HST};
    use crate::rng::SeededRng;
    use arbitrary::Unstructured;

    let mut u = Unstructured::new(data);
    let mut kdc = fuzz_kdc();
    let realm = kdc.realm().to_string();
    let mut rng = SeededRng::new(u64::from(byte(&mut u)));
    let mut acceptors: Vec<Acceptor> = WEB
        .iter()
        .map(|s| {
            let entry = kdc.db().entry(s).cloned().expect("web service entry");
            Acceptor::new(&realm, vec![entry], 7)
        })
        .collect();
    let mut held: Vec<Held> = Vec::new();
    // The last GSS token made, to replay.
    let mut last_token: Option<(usize, Vec<u8>, Seconds)> = None;
    let code =
        |r: &Result<client::Credentials, ClientError>| r.as_ref().err().and_then(|e| e.code());
    let mut hops = Vec::new();
    for _ in 0..12 {
        if u.is_empty() {
            break;
        }
        match choice(&mut u, 4) {
            // kinit
            0 => {
                let (user, password) = USERS[usize::from(choice(&mut u, 3))];
                let right = flag(&mut u);
                let forwardable = flag(&mut u);
                let request = Request {
                    options: if forwardable { FORWARDABLE } else { 0 },
                    ..Request::default()
                };
                let pw = if right { password } else { "wrong" };
                let got = client::login(
                    &mut |r| Ok(kdc.handle(r, FUZZ_NOW).bytes),
                    user,
                    &realm,
                    pw,
                    &request,
                    FUZZ_NOW,
                    &mut rng,
                );
                let model = if user == "nobody" {
                    Some(err::C_PRINCIPAL_UNKNOWN)
                } else if !right {
                    Some(err::PREAUTH_FAILED)
                } else {
                    None
                };
                assert_eq!(code(&got), model, "kinit {user} right={right}");
                hops.push(if got.is_ok() {
                    "kinit"
                } else {
                    "kinit refused"
                });
                if let Ok(creds) = got {
                    assert_eq!(creds.flags & FORWARDABLE != 0, forwardable);
                    held.push(Held {
                        creds,
                        tgt: true,
                        forwardable,
                        start: FUZZ_NOW,
                    });
                }
            }
            // a TGS request with a held TGT
            1 => {
                let tgts: Vec<usize> = (0..held.len()).filter(|i| held[*i].tgt).collect();
                if tgts.is_empty() {
                    continue;
                }
                let which = tgts[usize::from(byte(&mut u)) % tgts.len()];
                let forward = flag(&mut u);
                let service = if forward {
                    format!("krbtgt/{realm}")
                } else {
                    SERVICES[usize::from(choice(&mut u, 5))].to_string()
                };
                // Clock offsets: inside the skew, just outside, far outside.
                let offset: Seconds =
                    [0, 299, -299, 301, -301, 100_000][usize::from(choice(&mut u, 6))];
                let request = Request {
                    options: if forward { FORWARDABLE | FORWARDED } else { 0 },
                    ..Request::default()
                };
                let now = FUZZ_NOW + offset;
                let tgt = held[which].creds.clone();
                let server = Name::parse(&service, NT_SRV_HST);
                let got = client::ticket(
                    &mut |r| Ok(kdc.handle(r, now).bytes),
                    &tgt,
                    &server,
                    &request,
                    // The client's clock is right; the KDC's is off by `offset`.
                    FUZZ_NOW,
                    &mut rng,
                );
                // The TGT is checked first (its end: ten hours after kinit; its start: when
                // it was issued, by the KDC's clock then), then the authenticator's time.
                let model = if now > FUZZ_NOW + 36_000 + 300 {
                    Some(err::TKT_EXPIRED)
                } else if held[which].start > now + 300 {
                    Some(err::TKT_NYV)
                } else if offset.abs() > 300 {
                    Some(err::SKEW)
                } else if service == "HTTP/none.example.test" {
                    Some(err::S_PRINCIPAL_UNKNOWN)
                } else if forward && !held[which].forwardable {
                    Some(err::BADOPTION)
                } else {
                    None
                };
                assert_eq!(
                    code(&got),
                    model,
                    "TGS {service} forward={forward} offset={offset}"
                );
                hops.push(match (&got, forward) {
                    (Ok(_), true) => "forwarded TGT",
                    (Ok(_), false) => "service ticket",
                    (Err(_), _) => "TGS refused",
                });
                if let Ok(creds) = got {
                    held.push(Held {
                        creds,
                        tgt: forward,
                        forwardable: forward,
                        start: now,
                    });
                }
            }
            // a GSS context to a web-tier service, with a service ticket held for it
            2 => {
                let web = usize::from(choice(&mut u, 2));
                let tickets: Vec<usize> = (0..held.len())
                    .filter(|i| held[*i].creds.server.text() == WEB[web])
                    .collect();
                let delegate = flag(&mut u);
                let tgts: Vec<usize> = (0..held.len()).filter(|i| held[*i].tgt).collect();
                let Some(&ticket) = tickets.first() else {
                    continue;
                };
                let fwd = if delegate {
                    tgts.iter()
                        .copied()
                        .find(|i| held[*i].creds.flags & FORWARDED != 0)
                } else {
                    None
                };
                let (token, _) = gss::initiate(
                    &held[ticket].creds,
                    gss_flags::MUTUAL,
                    fwd.map(|i| &held[i].creds),
                    false,
                    FUZZ_NOW,
                    &mut rng,
                );
                let accepted = acceptors[web]
                    .accept(&token, FUZZ_NOW)
                    .expect("a fresh token for this service");
                assert_eq!(accepted.client, held[ticket].creds.client);
                assert_eq!(accepted.delegated.is_some(), fwd.is_some(), "delegation");
                // The web tier's next hop: a ticket for the store, only with the TGT.
                if let Some(tgt) = accepted.delegated {
                    let store = Name::parse(SERVICES[1], NT_SRV_HST);
                    let hop = client::ticket(
                        &mut |r| Ok(kdc.handle(r, FUZZ_NOW).bytes),
                        &tgt,
                        &store,
                        &Request::default(),
                        FUZZ_NOW,
                        &mut rng,
                    );
                    assert_eq!(code(&hop), None, "the delegated TGT makes the second hop");
                    hops.push("second hop");
                } else {
                    hops.push("GSS without delegation");
                }
                last_token = Some((web, token, FUZZ_NOW));
            }
            // the last GSS token again: a replay, whatever the service
            _ => {
                let Some((web, token, at)) = last_token.clone() else {
                    continue;
                };
                let again = acceptors[web].accept(&token, at);
                assert_eq!(again.map(|_| ()).map_err(|e| e.code), Err(err::REPEAT));
                let other = 1 - web;
                let elsewhere = acceptors[other].accept(&token, at);
                assert_eq!(elsewhere.map(|_| ()).map_err(|e| e.code), Err(err::NOT_US));
                hops.push("replay refused");
            }
        }
    }
    hops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kerberos::client::{self, Request};
    use crate::kerberos::flags::FORWARDABLE;
    use crate::kerberos::{Etype, Name, NT_SRV_HST};
    use crate::rng::SeededRng;
    use std::path::PathBuf;

    fn corpus(target: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../corpus/fuzz")
            .join(target)
    }

    /// Valid requests at `FUZZ_NOW`: encryption has random confounders, so these are
    /// written once (`HARNESS_WRITE_SEEDS=1`) and checked for what they reach, not for
    /// their bytes.
    fn seeds() -> Vec<(&'static str, Vec<u8>, &'static str)> {
        let kdc = fuzz_kdc();
        let key = kdc
            .db()
            .entry("alice")
            .and_then(|e| e.key(Etype::Aes256))
            .cloned()
            .expect("alice's key");
        let tgs = Name::tgs("EXAMPLE.TEST");
        let fwd = Request {
            options: FORWARDABLE,
            ..Request::default()
        };
        let bare = client::as_req(
            &Name::user("alice"),
            "EXAMPLE.TEST",
            &tgs,
            &fwd,
            1,
            FUZZ_NOW,
            vec![],
        );
        let preauth = client::as_req(
            &Name::user("alice"),
            "EXAMPLE.TEST",
            &tgs,
            &fwd,
            2,
            FUZZ_NOW,
            vec![client::enc_timestamp(&key, FUZZ_NOW)],
        );
        let mut k = fuzz_kdc();
        let mut rng = SeededRng::new(5);
        let tgt = client::login(
            &mut |r| Ok(k.handle(r, FUZZ_NOW).bytes),
            "alice",
            "EXAMPLE.TEST",
            "secret",
            &fwd,
            FUZZ_NOW,
            &mut rng,
        )
        .expect("TGT");
        let web = Name::parse("HTTP/web.example.test", NT_SRV_HST);
        let (tgs_req, _) = client::tgs_req(&tgt, &web, &fwd, 3, FUZZ_NOW, &mut rng);
        let mut stream = vec![1u8];
        stream.extend(frame::record(&bare));
        stream.extend(frame::record(&preauth));
        let with_mode = |m: &[u8]| [&[0u8][..], m].concat();
        vec![
            ("as-req-bare", with_mode(&bare), "refused"),
            ("as-req-preauth", with_mode(&preauth), "as"),
            ("tgs-req-web", with_mode(&tgs_req), "tgs"),
            ("tcp-two-records", stream, "as"),
        ]
    }

    #[test]
    fn kdc_seeds_reach_what_they_are_named_for() {
        let write = std::env::var_os("HARNESS_WRITE_SEEDS").is_some();
        for (name, fresh, reaches) in seeds() {
            let path = corpus("kdc_bytes").join(name);
            if write {
                std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
                std::fs::write(&path, &fresh).expect("write seed");
            }
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let mut kdc = fuzz_kdc();
            let mut buf = data[1..].to_vec();
            let mut last = None;
            if data[0] % 2 == 1 {
                while let Record::Message(m) = frame::take_record(&mut buf) {
                    last = Some(kdc.handle(&m, FUZZ_NOW).outcome);
                }
            } else {
                last = Some(kdc.handle(&buf, FUZZ_NOW).outcome);
            }
            let got = match last {
                Some(KdcOutcome::AsIssued { .. }) => "as",
                Some(KdcOutcome::TgsIssued { .. }) => "tgs",
                Some(KdcOutcome::Refused { .. }) => "refused",
                _ => "nothing",
            };
            assert_eq!(got, reaches, "{name}");
            kdc_bytes(&data);
            krb_message_decode(&data[1..]);
        }
    }

    /// The hops of the `second-hop-and-replay` chain.
    const SECOND_HOP: [&str; 5] = [
        "kinit",
        "service ticket",
        "forwarded TGT",
        "second hop",
        "replay refused",
    ];

    #[test]
    fn token_chains_from_random_inputs_keep_the_model() {
        let mut rng = SeededRng::new(21);
        for _ in 0..300 {
            let len = 8 + (rng.next_u64() % 60) as usize;
            let mut data = vec![0u8; len];
            rng.fill(&mut data);
            kerberos_token_chain(&data);
        }
        // A chain that reaches the second hop: kinit alice forwardable, a web ticket, a
        // forwarded TGT, a delegating GSS context, its replay.
        let chain = [
            1, // rng seed
            0, 0, 1, 1, // kinit alice, right password, forwardable
            1, 0, 0, 0, 0, // TGS with TGT 0, not forwarded, HTTP/web, offset 0
            1, 0, 1, 0, // TGS with TGT 0, forwarded, offset 0
            2, 0, 1, // GSS to HTTP/web, delegating
            3, // its replay
        ];
        assert_eq!(token_chain(&chain), SECOND_HOP);
    }

    #[test]
    fn the_spnego_seeds_are_the_tokens_they_are_named_for() {
        use crate::kerberos::spnego;
        let read = |name: &str| std::fs::read(corpus("spnego_decode").join(name)).expect("seed");
        let init = spnego::read_init(&read("neg-token-init")).expect("a NegTokenInit");
        assert_eq!(init.mech_token.as_deref(), Some(&b"token"[..]));
        let resp = spnego::read_resp(&read("neg-token-resp")).expect("a NegTokenResp");
        assert_eq!(resp.state, Some(spnego::ACCEPT_COMPLETED));
        assert_eq!(resp.response_token.as_deref(), Some(&b"ap-rep"[..]));
        let chain = std::fs::read(corpus("kerberos_token_chain").join("second-hop-and-replay"))
            .expect("seed");
        assert_eq!(token_chain(&chain), SECOND_HOP);
    }

    #[test]
    fn garbage_and_mutated_seeds_never_panic() {
        let mut rng = SeededRng::new(11);
        for (_, seed, _) in seeds() {
            for _ in 0..300 {
                let mut m = seed.clone();
                let at = (rng.next_u64() as usize) % m.len();
                m[at] ^= (rng.next_u64() as u8) | 1;
                kdc_bytes(&m);
                krb_message_decode(&m[1..]);
            }
        }
    }
}
