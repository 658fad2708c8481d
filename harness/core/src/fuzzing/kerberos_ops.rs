//! Kerberos targets ([`crate::kerberos`], RFC 4120):
//!
//! * `krb_message_decode`: any octets, read as each message the lab decodes (AS-REQ,
//!   TGS-REQ, AS-REP, TGS-REP, KRB-ERROR, AP-REQ, Authenticator, EncTicketPart), give an
//!   error or a value that encodes to octets which decode to the same value.
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
