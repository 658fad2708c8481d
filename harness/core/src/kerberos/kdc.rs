//! The lab's KDC: the AS exchange with PA-ENC-TIMESTAMP pre-authentication and
//! ETYPE-INFO2 (RFC 4120 3.1, 5.2.7), the TGS exchange with forwardable and forwarded
//! tickets (3.3, 2.6), and a KRB-ERROR with the RFC's code for every refusal (7.5.9).
//! Sans-IO: a request's bytes and the time go in, the reply's bytes and what happened come
//! out. Session keys come from a seeded stream, so an in-process run repeats.

use std::collections::VecDeque;

use picky_asn1::wrapper::{
    Asn1SequenceOf, ExplicitContextTag0, ExplicitContextTag1, ExplicitContextTag10,
    ExplicitContextTag11, ExplicitContextTag12, ExplicitContextTag2, ExplicitContextTag3,
    ExplicitContextTag4, ExplicitContextTag5, ExplicitContextTag6, ExplicitContextTag7,
    ExplicitContextTag8, ExplicitContextTag9, IntegerAsn1, OctetStringAsn1, Optional,
};
use picky_asn1_der::application_tag::ApplicationTag;
use picky_krb::data_types::{
    Authenticator, EncTicketPart, EncryptedData, EtypeInfo2Entry, LastReqInner, PaEncTsEnc, Ticket,
    TicketInner, TransitedEncoding,
};
use picky_krb::messages::{
    ApReq, AsRep, AsReq, EncAsRepPart, EncKdcRepPart, EncTgsRepPart, KdcRep, KdcReq, KrbError,
    KrbErrorInner, TgsRep, TgsReq,
};

use super::keys::{Etype, Key};
use super::realm::{RealmDb, RealmEntry};
use super::{
    der, encrypted, err, flags, flags_asn1, flags_of, int, int_asn1, key_asn1, key_of, kstring,
    kstring_text, pa_data, time_asn1, time_of, Name, ReplayCache, Seconds,
};
use crate::rng::SeededRng;

/// EncTicketPart ::= [APPLICATION 3] SEQUENCE (RFC 4120 5.3); picky-krb has the
/// sequence without its tag.
pub(crate) type EncTicketPartApp = ApplicationTag<EncTicketPart, 3>;

/// Key usages (RFC 4120 7.5.1).
pub(crate) mod usage {
    pub const PA_ENC_TIMESTAMP: i32 = 1;
    pub const TICKET: i32 = 2;
    pub const AS_REP: i32 = 3;
    pub const TGS_REQ_CKSUM: i32 = 6;
    pub const TGS_REQ_AUTHENTICATOR: i32 = 7;
    pub const TGS_REP_SESSION_KEY: i32 = 8;
    pub const TGS_REP_SUBKEY: i32 = 9;
}

/// PA-DATA types (RFC 4120 7.5.2).
pub(crate) mod pa {
    pub const TGS_REQ: i64 = 1;
    pub const ENC_TIMESTAMP: i64 = 2;
    pub const ETYPE_INFO2: i64 = 19;
}

/// Options the lab does not implement; asking for one is KDC_ERR_BADOPTION, as MIT answers
/// options it will not honour.
const UNSUPPORTED: u32 = flags::PROXY
    | flags::ALLOW_POSTDATE
    | flags::POSTDATED
    | flags::ENC_TKT_IN_SKEY
    | flags::RENEW
    | flags::VALIDATE;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KdcConfig {
    /// Longest ticket life (MIT's `max_life` in the peer recipe: 10 h).
    pub max_life: Seconds,
    /// Longest renewable life (7 days).
    pub max_renewable_life: Seconds,
    /// Allowed clock difference for timestamps and authenticators (RFC 4120 1.6: 5 min).
    pub clock_skew: Seconds,
}

impl Default for KdcConfig {
    fn default() -> Self {
        KdcConfig {
            max_life: 10 * 3600,
            max_renewable_life: 7 * 86_400,
            clock_skew: 300,
        }
    }
}

/// What the KDC did with one request, for logs, snapshots and the scenario runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KdcOutcome {
    /// An AS-REP: a ticket (usually the TGT) for `client`.
    AsIssued {
        client: String,
        server: String,
        flags: u32,
        etype: Etype,
    },
    /// A TGS-REP: a service ticket, or a forwarded TGT.
    TgsIssued {
        client: String,
        server: String,
        flags: u32,
        etype: Etype,
    },
    /// A KRB-ERROR.
    Refused {
        code: u32,
        client: Option<String>,
        server: Option<String>,
        reason: String,
    },
    /// A retransmission of a request already answered: the same reply again.
    Repeated,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KdcReply {
    pub bytes: Vec<u8>,
    pub outcome: KdcOutcome,
}

/// A refusal on its way to becoming a KRB-ERROR.
#[derive(Debug)]
struct Refusal {
    code: u32,
    reason: String,
    client: Option<Name>,
    server: Option<Name>,
    e_data: Option<Vec<u8>>,
}

fn refuse(code: u32, reason: impl Into<String>) -> Refusal {
    Refusal {
        code,
        reason: reason.into(),
        client: None,
        server: None,
        e_data: None,
    }
}

/// Requests answered lately, so a client's retransmission (UDP) gets the same reply rather
/// than a replay refusal (MIT's KDC keeps a lookaside cache for the same reason).
const LOOKASIDE: usize = 64;
// Authenticators in TGS-REQs are checked for replays like any server's (RFC 4120 3.3.3.1).

#[derive(Debug, Clone)]
pub struct Kdc {
    db: RealmDb,
    config: KdcConfig,
    rng: SeededRng,
    lookaside: VecDeque<(Vec<u8>, Vec<u8>)>,
    seen: ReplayCache,
}

impl Kdc {
    pub fn new(db: RealmDb, config: KdcConfig, seed: u64) -> Kdc {
        Kdc {
            db,
            config,
            rng: SeededRng::new(seed),
            lookaside: VecDeque::new(),
            seen: ReplayCache::default(),
        }
    }

    pub fn realm(&self) -> &str {
        self.db.realm()
    }

    pub fn db(&self) -> &RealmDb {
        &self.db
    }

    /// The database, to add or remove principals while the KDC runs (a global catalog's
    /// entry during failover).
    pub fn db_mut(&mut self) -> &mut RealmDb {
        &mut self.db
    }

    /// Answers one request (an AS-REQ or TGS-REQ, without TCP's length prefix) at `now`.
    pub fn handle(&mut self, request: &[u8], now: Seconds) -> KdcReply {
        if let Some((_, reply)) = self.lookaside.iter().find(|(r, _)| r == request) {
            return KdcReply {
                bytes: reply.clone(),
                outcome: KdcOutcome::Repeated,
            };
        }
        let result = match request.first() {
            // [APPLICATION 10] and [APPLICATION 12], constructed.
            Some(0x6A) => self.as_exchange(request, now),
            Some(0x6C) => self.tgs_exchange(request, now),
            _ => Err(refuse(err::MSG_TYPE, "not an AS-REQ or TGS-REQ")),
        };
        let reply = match result {
            Ok(reply) => reply,
            Err(refusal) => self.error_reply(refusal, now),
        };
        if self.lookaside.len() == LOOKASIDE {
            self.lookaside.pop_front();
        }
        self.lookaside
            .push_back((request.to_vec(), reply.bytes.clone()));
        reply
    }

    /// A KRB-ERROR with `code`, for what the transport refuses (a record over the length
    /// bound, a reply too big for a datagram).
    pub fn error(&self, code: u32, reason: &str, now: Seconds) -> KdcReply {
        self.error_reply(refuse(code, reason), now)
    }

    /// The KRB-ERROR a refusal becomes (RFC 4120 5.9.1).
    fn error_reply(&self, r: Refusal, now: Seconds) -> KdcReply {
        let server = r.server.clone().unwrap_or_else(|| Name::tgs(self.realm()));
        let error = KrbError::from(KrbErrorInner {
            pvno: ExplicitContextTag0::from(int_asn1(5)),
            msg_type: ExplicitContextTag1::from(int_asn1(30)),
            ctime: Optional::from(None),
            cusec: Optional::from(None),
            stime: ExplicitContextTag4::from(time_asn1(now)),
            susec: ExplicitContextTag5::from(int_asn1(0)),
            error_code: ExplicitContextTag6::from(r.code),
            crealm: Optional::from(
                r.client
                    .as_ref()
                    .map(|_| ExplicitContextTag7::from(kstring(self.realm()))),
            ),
            cname: Optional::from(
                r.client
                    .as_ref()
                    .map(|c| ExplicitContextTag8::from(c.to_asn1())),
            ),
            realm: ExplicitContextTag9::from(kstring(self.realm())),
            sname: ExplicitContextTag10::from(server.to_asn1()),
            e_text: Optional::from(Some(ExplicitContextTag11::from(kstring(&r.reason)))),
            e_data: Optional::from(
                r.e_data
                    .map(|d| ExplicitContextTag12::from(OctetStringAsn1::from(d))),
            ),
        });
        KdcReply {
            bytes: picky_asn1_der::to_vec(&error).unwrap_or_default(),
            outcome: KdcOutcome::Refused {
                code: r.code,
                client: r.client.map(|c| c.text()),
                server: r.server.map(|s| s.text()),
                reason: r.reason,
            },
        }
    }

    /// AS exchange (RFC 4120 3.1.2, 3.1.3).
    fn as_exchange(&mut self, raw: &[u8], now: Seconds) -> Result<KdcReply, Refusal> {
        let req: AsReq =
            der::decode(raw).ok_or_else(|| refuse(err::GENERIC, "malformed AS-REQ"))?;
        let req = &req.0;
        check_pvno(req)?;
        let body = &req.req_body.0;
        let cname = body
            .cname
            .0
            .as_ref()
            .map(|c| Name::from_asn1(&c.0))
            .ok_or_else(|| refuse(err::C_PRINCIPAL_UNKNOWN, "AS-REQ without a client name"))?;
        let sname = body
            .sname
            .0
            .as_ref()
            .map(|s| Name::from_asn1(&s.0))
            .ok_or_else(|| refuse(err::S_PRINCIPAL_UNKNOWN, "AS-REQ without a server name"))?;
        let with_names = |mut r: Refusal| {
            r.client = Some(cname.clone());
            r.server = Some(sname.clone());
            r
        };
        if kstring_text(&body.realm.0) != self.realm() {
            return Err(with_names(refuse(err::WRONG_REALM, "not this realm")));
        }
        let client = self
            .db
            .lookup(&cname)
            .cloned()
            .ok_or_else(|| with_names(refuse(err::C_PRINCIPAL_UNKNOWN, "CLIENT_NOT_FOUND")))?;
        let server = self
            .db
            .lookup(&sname)
            .cloned()
            .ok_or_else(|| with_names(refuse(err::S_PRINCIPAL_UNKNOWN, "SERVER_NOT_FOUND")))?;
        let etype = chosen_etype(&body.etype.0 .0, &client, &server)
            .ok_or_else(|| with_names(refuse(err::ETYPE_NOSUPP, "no requested enctype")))?;
        let options = flags_of(&body.kdc_options.0);
        if options & (UNSUPPORTED | flags::FORWARDED) != 0 {
            return Err(with_names(refuse(
                err::BADOPTION,
                "option not allowed in AS-REQ",
            )));
        }

        // Pre-authentication (RFC 4120 5.2.7.2): the timestamp sealed in the client's key
        // proves the key; without it, a principal that requires it is told how to make it.
        let padata = padata_of(req);
        let timestamp = padata.iter().find(|p| p.0 == pa::ENC_TIMESTAMP);
        let reply_key = match timestamp {
            Some((_, value)) => Some(
                self.check_timestamp(&client, value, now)
                    .map_err(with_names)?,
            ),
            None if client.requires_preauth => {
                return Err(with_names(Refusal {
                    e_data: Some(method_data(&client, etype)),
                    ..refuse(err::PREAUTH_REQUIRED, "NEEDED_PREAUTH")
                }))
            }
            None => None,
        };
        let preauthenticated = reply_key.is_some();
        let reply_key = match reply_key {
            Some(k) => k,
            None => client
                .key(etype)
                .cloned()
                .ok_or_else(|| with_names(refuse(err::ETYPE_NOSUPP, "no client key")))?,
        };

        let till = requested_end(time_of(&body.till.0));
        if till <= now {
            return Err(with_names(refuse(
                err::NEVER_VALID,
                "requested end time has passed",
            )));
        }
        let end = till.min(now + self.config.max_life);
        let mut ticket_flags = flags::INITIAL
            | options & (flags::FORWARDABLE | flags::PROXIABLE)
            | if preauthenticated {
                flags::PRE_AUTHENT
            } else {
                0
            }
            | if server.ok_as_delegate {
                flags::OK_AS_DELEGATE
            } else {
                0
            };
        let rtime = body.rtime.0.as_ref().map(|t| requested_end(time_of(&t.0)));
        let renew_till = self.renew_till(options, till, rtime, end, now, None);
        if renew_till.is_some() {
            ticket_flags |= flags::RENEWABLE;
        }
        let times = Times {
            auth: now,
            start: now,
            end,
            renew_till,
        };
        let (ticket, part) = self.issue(
            &server,
            &cname,
            &sname,
            etype,
            ticket_flags,
            &times,
            &body.nonce.0,
        );
        let enc_part = EncAsRepPart::from(part);
        let sealed = reply_key.encrypt(
            usage::AS_REP,
            &picky_asn1_der::to_vec(&enc_part).unwrap_or_default(),
        );
        let etype_info = pa_data(pa::ETYPE_INFO2, etype_info2(&client, reply_key.etype));
        let rep = AsRep::from(KdcRep {
            pvno: ExplicitContextTag0::from(int_asn1(5)),
            msg_type: ExplicitContextTag1::from(int_asn1(11)),
            padata: Optional::from(Some(ExplicitContextTag2::from(Asn1SequenceOf::from(vec![
                etype_info,
            ])))),
            crealm: ExplicitContextTag3::from(kstring(self.realm())),
            cname: ExplicitContextTag4::from(cname.to_asn1()),
            ticket: ExplicitContextTag5::from(ticket),
            enc_part: ExplicitContextTag6::from(encrypted(&reply_key, None, sealed)),
        });
        Ok(KdcReply {
            bytes: picky_asn1_der::to_vec(&rep).unwrap_or_default(),
            outcome: KdcOutcome::AsIssued {
                client: cname.text(),
                server: sname.text(),
                flags: ticket_flags,
                etype,
            },
        })
    }

    /// PA-ENC-TIMESTAMP: decrypts with the client's key of the stated enctype (usage 1) and
    /// checks the time against the clock. Returns the key that proved itself: the reply is
    /// sealed in it.
    fn check_timestamp(
        &self,
        client: &RealmEntry,
        value: &[u8],
        now: Seconds,
    ) -> Result<Key, Refusal> {
        let data: EncryptedData = der::decode(value)
            .ok_or_else(|| refuse(err::PREAUTH_FAILED, "malformed PA-ENC-TIMESTAMP"))?;
        let key = int(&data.etype.0)
            .and_then(Etype::from_number)
            .and_then(|e| client.key(e))
            .ok_or_else(|| refuse(err::PREAUTH_FAILED, "timestamp in an enctype without a key"))?;
        let plain = key
            .decrypt(usage::PA_ENC_TIMESTAMP, &data.cipher.0 .0)
            .map_err(|_| refuse(err::PREAUTH_FAILED, "PREAUTH_FAILED"))?;
        let ts: PaEncTsEnc = der::decode(&plain)
            .ok_or_else(|| refuse(err::PREAUTH_FAILED, "undecodable timestamp"))?;
        let skew = (time_of(&ts.patimestamp.0) - now).abs();
        if skew > self.config.clock_skew {
            return Err(refuse(
                err::SKEW,
                format!("timestamp {skew} s from the KDC's clock"),
            ));
        }
        Ok(key.clone())
    }

    /// RENEWABLE asked for, or RENEWABLE-OK with an end time the KDC cut short: the ticket
    /// may be renewed until the asked time, within policy and the TGT's own renew time.
    fn renew_till(
        &self,
        options: u32,
        till: Seconds,
        rtime: Option<Seconds>,
        end: Seconds,
        now: Seconds,
        tgt_renew_till: Option<Option<Seconds>>,
    ) -> Option<Seconds> {
        let wanted = if options & flags::RENEWABLE != 0 {
            // No rtime asks for as long as policy allows, as MIT's KDC reads it.
            rtime.unwrap_or(FOREVER)
        } else if options & flags::RENEWABLE_OK != 0 && till > end {
            till
        } else {
            return None;
        };
        let mut limit = wanted.min(now + self.config.max_renewable_life);
        if let Some(tgt) = tgt_renew_till {
            limit = limit.min(tgt?);
        }
        (limit > end).then_some(limit)
    }

    /// TGS exchange (RFC 4120 3.3.2, 3.3.3).
    fn tgs_exchange(&mut self, raw: &[u8], now: Seconds) -> Result<KdcReply, Refusal> {
        let req: TgsReq =
            der::decode(raw).ok_or_else(|| refuse(err::GENERIC, "malformed TGS-REQ"))?;
        let req = &req.0;
        check_pvno(req)?;
        let body = &req.req_body.0;
        let ap_bytes = padata_of(req)
            .into_iter()
            .find(|p| p.0 == pa::TGS_REQ)
            .map(|p| p.1)
            .ok_or_else(|| refuse(err::PADATA_TYPE_NOSUPP, "TGS-REQ without PA-TGS-REQ"))?;
        let ap: ApReq = der::decode(&ap_bytes)
            .ok_or_else(|| refuse(err::GENERIC, "malformed AP-REQ in PA-TGS-REQ"))?;
        let ap = &ap.0;
        let tgt = self.open_tgt(&ap.ticket.0, now)?;
        let cname = Name::from_asn1(&tgt.cname.0);
        let with_client = |mut r: Refusal| {
            r.client = Some(cname.clone());
            r
        };
        let session = key_of(&tgt.key.0)
            .ok_or_else(|| with_client(refuse(err::GENERIC, "TGT session key unusable")))?;

        // The authenticator proves the TGT's holder (RFC 4120 3.3.2): sealed in its session
        // key, naming its client, fresh, and with a checksum over the body as sent.
        let plain = session
            .decrypt(
                usage::TGS_REQ_AUTHENTICATOR,
                &ap.authenticator.0.cipher.0 .0,
            )
            .map_err(|_| {
                with_client(refuse(err::BAD_INTEGRITY, "authenticator does not decrypt"))
            })?;
        let auth: Authenticator = der::decode(&plain)
            .ok_or_else(|| with_client(refuse(err::GENERIC, "undecodable authenticator")))?;
        let auth = &auth.0;
        if Name::from_asn1(&auth.cname.0).components != cname.components
            || kstring_text(&auth.crealm.0) != kstring_text(&tgt.crealm.0)
        {
            return Err(with_client(refuse(
                err::BADMATCH,
                "authenticator names another client",
            )));
        }
        let ctime = time_of(&auth.ctime.0);
        if (ctime - now).abs() > self.config.clock_skew {
            return Err(with_client(refuse(
                err::SKEW,
                "authenticator outside the clock skew",
            )));
        }
        let cksum = auth.cksum.0.as_ref().ok_or_else(|| {
            with_client(refuse(err::INAPP_CKSUM, "authenticator without checksum"))
        })?;
        let cksumtype = int(&cksum.0.cksumtype.0).unwrap_or(0);
        if cksumtype != session.etype.checksum_type() {
            return Err(with_client(refuse(
                err::INAPP_CKSUM,
                "checksum type not keyed",
            )));
        }
        let body_bytes = der::kdc_req_body(raw)
            .ok_or_else(|| with_client(refuse(err::GENERIC, "no request body")))?;
        if !session.verify_checksum(
            usage::TGS_REQ_CKSUM,
            cksumtype,
            body_bytes,
            &cksum.0.checksum.0 .0,
        ) {
            return Err(with_client(refuse(
                err::MODIFIED,
                "request body checksum mismatch",
            )));
        }
        let cusec = int(&auth.cusec.0).unwrap_or(-1);
        // A retransmitted request never gets here: the lookaside answered it.
        if !self.seen.admit(
            &cname,
            (ctime, cusec),
            &ap.authenticator.0.cipher.0 .0,
            now,
            self.config.clock_skew,
        ) {
            return Err(with_client(refuse(err::REPEAT, "authenticator replayed")));
        }

        let sname = body
            .sname
            .0
            .as_ref()
            .map(|s| Name::from_asn1(&s.0))
            .ok_or_else(|| {
                with_client(refuse(err::S_PRINCIPAL_UNKNOWN, "TGS-REQ without a server"))
            })?;
        let with_names = |mut r: Refusal| {
            r.client = Some(cname.clone());
            r.server = Some(sname.clone());
            r
        };
        if kstring_text(&body.realm.0) != self.realm() {
            return Err(with_names(refuse(err::WRONG_REALM, "not this realm")));
        }
        let server = self
            .db
            .lookup(&sname)
            .cloned()
            .ok_or_else(|| with_names(refuse(err::S_PRINCIPAL_UNKNOWN, "SERVER_NOT_FOUND")))?;
        let tgt_flags = flags_of(&tgt.flags.0);
        let options = flags_of(&body.kdc_options.0);
        if options & UNSUPPORTED != 0 {
            return Err(with_names(refuse(err::BADOPTION, "option not supported")));
        }
        // Forwarding needs a forwardable TGT (RFC 4120 2.6); MIT's client then goes on
        // without delegation.
        if options & (flags::FORWARDED | flags::FORWARDABLE) != 0
            && tgt_flags & flags::FORWARDABLE == 0
        {
            return Err(with_names(refuse(err::BADOPTION, "TGT is not forwardable")));
        }
        if options & flags::PROXIABLE != 0 && tgt_flags & flags::PROXIABLE == 0 {
            return Err(with_names(refuse(err::BADOPTION, "TGT is not proxiable")));
        }
        if options & flags::RENEWABLE != 0 && tgt_flags & flags::RENEWABLE == 0 {
            return Err(with_names(refuse(err::BADOPTION, "TGT is not renewable")));
        }
        let etype = chosen_etype(&body.etype.0 .0, &server, &server)
            .ok_or_else(|| with_names(refuse(err::ETYPE_NOSUPP, "no requested enctype")))?;
        let tgt_end = time_of(&tgt.endtime.0);
        let till = requested_end(time_of(&body.till.0));
        let end = till.min(tgt_end).min(now + self.config.max_life);
        if end <= now {
            return Err(with_names(refuse(
                err::NEVER_VALID,
                "requested end time has passed",
            )));
        }
        // Transited-policy-checked: the (empty, one-realm) path is checked here, and MIT's
        // KDC sets the flag on every ticket it issues from a TGT.
        let mut ticket_flags = options & (flags::FORWARDABLE | flags::PROXIABLE)
            | flags::TRANSITED_POLICY_CHECKED
            | tgt_flags & (flags::PRE_AUTHENT | flags::FORWARDED)
            | options & flags::FORWARDED
            | if server.ok_as_delegate {
                flags::OK_AS_DELEGATE
            } else {
                0
            };
        // A TGT that is not renewable caps renewal at now: no renewable ticket from it.
        let tgt_renew = if tgt_flags & flags::RENEWABLE != 0 {
            tgt.renew_till.0.as_ref().map(|t| time_of(&t.0))
        } else {
            Some(now)
        };
        let rtime = body.rtime.0.as_ref().map(|t| requested_end(time_of(&t.0)));
        let renew_till = self.renew_till(options, till, rtime, end, now, Some(tgt_renew));
        if renew_till.is_some() {
            ticket_flags |= flags::RENEWABLE;
        }
        let times = Times {
            auth: time_of(&tgt.auth_time.0),
            start: now,
            end,
            renew_till,
        };
        let (ticket, part) = self.issue(
            &server,
            &cname,
            &sname,
            etype,
            ticket_flags,
            &times,
            &body.nonce.0,
        );
        let enc_part = EncTgsRepPart::from(part);
        let plain = picky_asn1_der::to_vec(&enc_part).unwrap_or_default();
        // Sealed in the authenticator's subkey when it has one (usage 9), else in the TGT's
        // session key (usage 8); MIT's client tries them in that order.
        let subkey = auth.subkey.0.as_ref().and_then(|k| key_of(&k.0));
        let (reply_key, sealed) = match subkey {
            Some(sub) => {
                let sealed = sub.encrypt(usage::TGS_REP_SUBKEY, &plain);
                (sub, sealed)
            }
            None => {
                let sealed = session.encrypt(usage::TGS_REP_SESSION_KEY, &plain);
                (session, sealed)
            }
        };
        let rep = TgsRep::from(KdcRep {
            pvno: ExplicitContextTag0::from(int_asn1(5)),
            msg_type: ExplicitContextTag1::from(int_asn1(13)),
            padata: Optional::from(None),
            crealm: ExplicitContextTag3::from(kstring(self.realm())),
            cname: ExplicitContextTag4::from(cname.to_asn1()),
            ticket: ExplicitContextTag5::from(ticket),
            enc_part: ExplicitContextTag6::from(encrypted(&reply_key, None, sealed)),
        });
        Ok(KdcReply {
            bytes: picky_asn1_der::to_vec(&rep).unwrap_or_default(),
            outcome: KdcOutcome::TgsIssued {
                client: cname.text(),
                server: sname.text(),
                flags: ticket_flags,
                etype,
            },
        })
    }

    /// A new session key, the ticket for `server` holding it, and the reply's encrypted
    /// part telling the client about both.
    #[allow(clippy::too_many_arguments)]
    fn issue(
        &mut self,
        server: &RealmEntry,
        cname: &Name,
        sname: &Name,
        etype: Etype,
        ticket_flags: u32,
        times: &Times,
        nonce: &IntegerAsn1,
    ) -> (Ticket, EncKdcRepPart) {
        let session = Key::random(etype, &mut self.rng);
        let ticket = seal_ticket(server, self.realm(), cname, &session, ticket_flags, times);
        let part = enc_rep_part(
            &session,
            nonce.clone(),
            ticket_flags,
            times,
            self.realm(),
            sname,
        );
        (ticket, part)
    }

    /// Opens a TGT: it must be this realm's `krbtgt`, sealed in its key, and current.
    fn open_tgt(&self, ticket: &Ticket, now: Seconds) -> Result<EncTicketPart, Refusal> {
        let ticket = &ticket.0;
        let sname = Name::from_asn1(&ticket.sname.0);
        if !sname.is_tgs()
            || sname.components[1] != self.realm()
            || kstring_text(&ticket.realm.0) != self.realm()
        {
            return Err(refuse(err::NOT_US, "ticket is not this realm's TGT"));
        }
        let tgs = self
            .db
            .tgs()
            .ok_or_else(|| refuse(err::S_PRINCIPAL_UNKNOWN, "no krbtgt entry"))?;
        let key = int(&ticket.enc_part.0.etype.0)
            .and_then(Etype::from_number)
            .and_then(|e| tgs.key(e))
            .ok_or_else(|| refuse(err::ETYPE_NOSUPP, "TGT sealed in an unknown enctype"))?;
        let plain = key
            .decrypt(usage::TICKET, &ticket.enc_part.0.cipher.0 .0)
            .map_err(|_| refuse(err::BAD_INTEGRITY, "TGT does not decrypt"))?;
        let part: EncTicketPartApp =
            der::decode(&plain).ok_or_else(|| refuse(err::GENERIC, "undecodable TGT"))?;
        let part = part.0;
        let skew = self.config.clock_skew;
        if time_of(&part.endtime.0) + skew < now {
            return Err(refuse(err::TKT_EXPIRED, "TGT expired"));
        }
        let start = part
            .starttime
            .0
            .as_ref()
            .map_or_else(|| time_of(&part.auth_time.0), |t| time_of(&t.0));
        if start > now + skew {
            return Err(refuse(err::TKT_NYV, "TGT not yet valid"));
        }
        Ok(part)
    }
}

struct Times {
    auth: Seconds,
    start: Seconds,
    end: Seconds,
    renew_till: Option<Seconds>,
}

fn check_pvno(req: &KdcReq) -> Result<(), Refusal> {
    if int(&req.pvno.0) != Some(5) {
        return Err(refuse(err::BAD_PVNO, "protocol version is not 5"));
    }
    Ok(())
}

/// "No end": far past any policy limit, with room to add to it.
const FOREVER: Seconds = Seconds::MAX / 2;

/// `till` of 19700101000000Z means "as long as allowed" (RFC 4120 5.4.1).
fn requested_end(till: Seconds) -> Seconds {
    if till == 0 {
        FOREVER
    } else {
        till
    }
}

/// The first enctype in the client's preference order that both principals have keys for.
fn chosen_etype(requested: &[IntegerAsn1], a: &RealmEntry, b: &RealmEntry) -> Option<Etype> {
    requested
        .iter()
        .filter_map(|e| int(e).and_then(Etype::from_number))
        .find(|e| a.key(*e).is_some() && b.key(*e).is_some())
}

fn padata_of(req: &KdcReq) -> Vec<(i64, Vec<u8>)> {
    req.padata
        .0
        .as_ref()
        .map(|list| {
            list.0
                 .0
                .iter()
                .map(|p| {
                    (
                        int(&p.padata_type.0).unwrap_or(-1),
                        p.padata_data.0 .0.clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// ETYPE-INFO2 with the one entry the client should use: enctype and salt.
fn etype_info2(client: &RealmEntry, etype: Etype) -> Vec<u8> {
    let entry = EtypeInfo2Entry {
        etype: ExplicitContextTag0::from(int_asn1(etype.number())),
        salt: Optional::from(Some(ExplicitContextTag1::from(kstring(&client.salt)))),
        s2kparams: Optional::from(None),
    };
    picky_asn1_der::to_vec(&Asn1SequenceOf::from(vec![entry])).unwrap_or_default()
}

/// METHOD-DATA for KDC_ERR_PREAUTH_REQUIRED: ETYPE-INFO2, then an empty PA-ENC-TIMESTAMP
/// saying which method to use (RFC 4120 5.2.7; MIT decodes it in `fast.c`).
fn method_data(client: &RealmEntry, etype: Etype) -> Vec<u8> {
    let list = vec![
        pa_data(pa::ETYPE_INFO2, etype_info2(client, etype)),
        pa_data(pa::ENC_TIMESTAMP, Vec::new()),
    ];
    picky_asn1_der::to_vec(&Asn1SequenceOf::from(list)).unwrap_or_default()
}

/// A ticket for `server`, sealed in its strongest key (usage 2) with its kvno.
fn seal_ticket(
    server: &RealmEntry,
    realm: &str,
    client: &Name,
    session: &Key,
    ticket_flags: u32,
    times: &Times,
) -> Ticket {
    let part = EncTicketPartApp::from(EncTicketPart {
        flags: ExplicitContextTag0::from(flags_asn1(ticket_flags)),
        key: ExplicitContextTag1::from(key_asn1(session)),
        crealm: ExplicitContextTag2::from(kstring(realm)),
        cname: ExplicitContextTag3::from(client.to_asn1()),
        transited: ExplicitContextTag4::from(TransitedEncoding {
            tr_type: ExplicitContextTag0::from(int_asn1(1)),
            contents: ExplicitContextTag1::from(OctetStringAsn1::from(Vec::new())),
        }),
        auth_time: ExplicitContextTag5::from(time_asn1(times.auth)),
        starttime: Optional::from(Some(ExplicitContextTag6::from(time_asn1(times.start)))),
        endtime: ExplicitContextTag7::from(time_asn1(times.end)),
        renew_till: Optional::from(
            times
                .renew_till
                .map(|t| ExplicitContextTag8::from(time_asn1(t))),
        ),
        caddr: Optional::from(None),
        authorization_data: Optional::from(None),
    });
    let plain = picky_asn1_der::to_vec(&part).unwrap_or_default();
    // Every entry has keys (the database makes both enctypes); an empty cipher would be
    // refused by any client, never accepted.
    let (cipher, etype_key) = match server.ticket_key() {
        Some(key) => (key.encrypt(usage::TICKET, &plain), key.clone()),
        None => (Vec::new(), session.clone()),
    };
    Ticket::from(TicketInner {
        tkt_vno: ExplicitContextTag0::from(int_asn1(5)),
        realm: ExplicitContextTag1::from(kstring(realm)),
        sname: ExplicitContextTag2::from(server.name.to_asn1()),
        enc_part: ExplicitContextTag3::from(encrypted(&etype_key, Some(server.kvno), cipher)),
    })
}

fn enc_rep_part(
    session: &Key,
    nonce: IntegerAsn1,
    ticket_flags: u32,
    times: &Times,
    realm: &str,
    sname: &Name,
) -> EncKdcRepPart {
    EncKdcRepPart {
        key: ExplicitContextTag0::from(key_asn1(session)),
        // One entry, type 0 at the epoch: "no information", as MIT's KDC sends.
        last_req: ExplicitContextTag1::from(Asn1SequenceOf::from(vec![LastReqInner {
            lr_type: ExplicitContextTag0::from(int_asn1(0)),
            lr_value: ExplicitContextTag1::from(time_asn1(0)),
        }])),
        nonce: ExplicitContextTag2::from(nonce),
        key_expiration: Optional::from(None),
        flags: ExplicitContextTag4::from(flags_asn1(ticket_flags)),
        auth_time: ExplicitContextTag5::from(time_asn1(times.auth)),
        start_time: Optional::from(Some(ExplicitContextTag6::from(time_asn1(times.start)))),
        end_time: ExplicitContextTag7::from(time_asn1(times.end)),
        renew_till: Optional::from(
            times
                .renew_till
                .map(|t| ExplicitContextTag8::from(time_asn1(t))),
        ),
        srealm: ExplicitContextTag9::from(kstring(realm)),
        sname: ExplicitContextTag10::from(sname.to_asn1()),
        caadr: Optional::from(None),
        encrypted_pa_data: Optional::from(None),
    }
}

#[cfg(test)]
mod tests;
