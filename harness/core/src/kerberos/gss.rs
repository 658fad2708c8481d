//! The GSS-API Kerberos mechanism's context tokens (RFC 4121 4.1, RFC 1964 1.1): the
//! initiator's AP-REQ with the 0x8003 authenticator checksum, which carries the GSS flags
//! and, with delegation, the forwarded TGT in a KRB-CRED (RFC 4121 4.1.1); the acceptor
//! that checks it against a service's key; and the AP-REP of mutual authentication.
//! Facts: ../shared/PROTOCOLS.md section 10.

use picky_asn1::wrapper::{
    Asn1SequenceOf, ExplicitContextTag0, ExplicitContextTag1, ExplicitContextTag10,
    ExplicitContextTag2, ExplicitContextTag3, ExplicitContextTag4, ExplicitContextTag5,
    ExplicitContextTag6, ExplicitContextTag7, ExplicitContextTag8, ExplicitContextTag9,
    GeneralizedTimeAsn1, IntegerAsn1, OctetStringAsn1, Optional,
};
use picky_asn1_der::application_tag::ApplicationTag;
use picky_krb::data_types::{
    Authenticator, Checksum, EncApRepPart, EncApRepPartInner, EncryptedData, EncryptionKey,
    HostAddress, HostAddresses, KerberosFlags, KerberosStringAsn1, PrincipalName, Ticket,
};
use picky_krb::messages::{ApRep, ApRepInner, ApReq};
use serde::{Deserialize, Serialize};

use super::client::{self, Credentials};
use super::kdc::EncTicketPartApp;
use super::keys::{Etype, Key};
use super::realm::RealmEntry;
use super::{
    der, encrypted, err, flags_asn1, flags_of, int, int_asn1, key_asn1, key_of, kstring,
    kstring_text, time_asn1, time_of, Name, ReplayCache, Seconds,
};
use crate::rng::SeededRng;

/// The Kerberos V5 mechanism, 1.2.840.113554.1.2.2, as a DER OBJECT IDENTIFIER.
pub const KRB5_OID: [u8; 11] = [
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02,
];
/// Microsoft's variant, 1.2.840.48018.1.2.2 (accepted as the same mechanism).
pub const MS_KRB5_OID: [u8; 11] = [
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x82, 0xf7, 0x12, 0x01, 0x02, 0x02,
];

/// Context token identifiers (RFC 4121 4.1).
pub const TOK_AP_REQ: [u8; 2] = [0x01, 0x00];
pub const TOK_AP_REP: [u8; 2] = [0x02, 0x00];
pub const TOK_ERROR: [u8; 2] = [0x03, 0x00];

/// GSS context flags as the 0x8003 checksum carries them (RFC 4121 4.1.1.1).
pub mod gss_flags {
    pub const DELEG: u32 = 0x1;
    pub const MUTUAL: u32 = 0x2;
    pub const REPLAY: u32 = 0x4;
    pub const SEQUENCE: u32 = 0x8;
    pub const CONF: u32 = 0x10;
    pub const INTEG: u32 = 0x20;
    pub const DCE_STYLE: u32 = 0x1000;
}

/// APOptions mutual-required (RFC 4120 5.5.1).
const AP_MUTUAL_REQUIRED: u32 = 0x2000_0000;
/// The GSS authenticator checksum type (RFC 4121 4.1.1).
const CKSUM_GSS: i64 = 0x8003;
/// Key usages (RFC 4120 7.5.1).
const USAGE_AP_REQ_AUTH: i32 = 11;
const USAGE_AP_REP: i32 = 12;
const USAGE_KRB_CRED: i32 = 14;

/// Wraps a mechanism token: `60 len 06 09 <krb5 OID> TOK_ID body` (RFC 2743 3.1).
pub fn frame(tok_id: [u8; 2], body: &[u8]) -> Vec<u8> {
    let mut inner = KRB5_OID.to_vec();
    inner.extend_from_slice(&tok_id);
    inner.extend_from_slice(body);
    let mut out = vec![0x60];
    out.extend(der_len(inner.len()));
    out.extend(inner);
    out
}

pub(crate) fn der_len(len: usize) -> Vec<u8> {
    if len < 0x80 {
        return vec![len as u8];
    }
    let bytes = (len as u32).to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let mut out = vec![0x80 | (4 - skip) as u8];
    out.extend_from_slice(&bytes[skip..]);
    out
}

/// Unwraps a mechanism token: its TOK_ID and body. Either Kerberos OID is accepted.
pub fn unframe(token: &[u8]) -> Option<([u8; 2], &[u8])> {
    let outer = der::tlv(token, 0)?;
    if outer.tag != 0x60 || outer.end != token.len() {
        return None;
    }
    let oid = der::tlv(token, outer.value)?;
    let oid_bytes = token.get(oid.start..oid.end)?;
    if oid_bytes != KRB5_OID && oid_bytes != MS_KRB5_OID {
        return None;
    }
    let tok_id = token.get(oid.end..oid.end + 2)?;
    Some(([tok_id[0], tok_id[1]], token.get(oid.end + 2..)?))
}

// KRB-CRED (RFC 4120 5.8.1), which picky-krb does not have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KrbCredInner {
    pub pvno: ExplicitContextTag0<IntegerAsn1>,
    pub msg_type: ExplicitContextTag1<IntegerAsn1>,
    pub tickets: ExplicitContextTag2<Asn1SequenceOf<Ticket>>,
    pub enc_part: ExplicitContextTag3<EncryptedData>,
}
pub type KrbCred = ApplicationTag<KrbCredInner, 22>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncKrbCredPartInner {
    pub ticket_info: ExplicitContextTag0<Asn1SequenceOf<KrbCredInfo>>,
    #[serde(default)]
    pub nonce: Optional<Option<ExplicitContextTag1<IntegerAsn1>>>,
    #[serde(default)]
    pub timestamp: Optional<Option<ExplicitContextTag2<GeneralizedTimeAsn1>>>,
    #[serde(default)]
    pub usec: Optional<Option<ExplicitContextTag3<IntegerAsn1>>>,
    #[serde(default)]
    pub s_address: Optional<Option<ExplicitContextTag4<HostAddress>>>,
    #[serde(default)]
    pub r_address: Optional<Option<ExplicitContextTag5<HostAddress>>>,
}
pub type EncKrbCredPart = ApplicationTag<EncKrbCredPartInner, 29>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KrbCredInfo {
    pub key: ExplicitContextTag0<EncryptionKey>,
    #[serde(default)]
    pub prealm: Optional<Option<ExplicitContextTag1<KerberosStringAsn1>>>,
    #[serde(default)]
    pub pname: Optional<Option<ExplicitContextTag2<PrincipalName>>>,
    #[serde(default)]
    pub flags: Optional<Option<ExplicitContextTag3<KerberosFlags>>>,
    #[serde(default)]
    pub authtime: Optional<Option<ExplicitContextTag4<GeneralizedTimeAsn1>>>,
    #[serde(default)]
    pub starttime: Optional<Option<ExplicitContextTag5<GeneralizedTimeAsn1>>>,
    #[serde(default)]
    pub endtime: Optional<Option<ExplicitContextTag6<GeneralizedTimeAsn1>>>,
    #[serde(default)]
    pub renew_till: Optional<Option<ExplicitContextTag7<GeneralizedTimeAsn1>>>,
    #[serde(default)]
    pub srealm: Optional<Option<ExplicitContextTag8<KerberosStringAsn1>>>,
    #[serde(default)]
    pub sname: Optional<Option<ExplicitContextTag9<PrincipalName>>>,
    #[serde(default)]
    pub caddr: Optional<Option<ExplicitContextTag10<HostAddresses>>>,
}

/// A KRB-CRED carrying `tgt`, sealed in `session` (usage 14), as MIT's initiator makes it.
pub fn krb_cred(tgt: &Credentials, session: &Key) -> Vec<u8> {
    let info = KrbCredInfo {
        key: ExplicitContextTag0::from(key_asn1(&tgt.session)),
        prealm: Optional::from(Some(ExplicitContextTag1::from(kstring(&tgt.realm)))),
        pname: Optional::from(Some(ExplicitContextTag2::from(tgt.client.to_asn1()))),
        flags: Optional::from(Some(ExplicitContextTag3::from(flags_asn1(tgt.flags)))),
        authtime: Optional::from(Some(ExplicitContextTag4::from(time_asn1(tgt.auth_time)))),
        starttime: Optional::from(None),
        endtime: Optional::from(Some(ExplicitContextTag6::from(time_asn1(tgt.end_time)))),
        renew_till: Optional::from(None),
        srealm: Optional::from(Some(ExplicitContextTag8::from(kstring(&tgt.realm)))),
        sname: Optional::from(Some(ExplicitContextTag9::from(tgt.server.to_asn1()))),
        caddr: Optional::from(None),
    };
    let part = EncKrbCredPart::from(EncKrbCredPartInner {
        ticket_info: ExplicitContextTag0::from(Asn1SequenceOf::from(vec![info])),
        nonce: Optional::from(None),
        timestamp: Optional::from(None),
        usec: Optional::from(None),
        s_address: Optional::from(None),
        r_address: Optional::from(None),
    });
    let sealed = session.encrypt(
        USAGE_KRB_CRED,
        &picky_asn1_der::to_vec(&part).unwrap_or_default(),
    );
    let cred = KrbCred::from(KrbCredInner {
        pvno: ExplicitContextTag0::from(int_asn1(5)),
        msg_type: ExplicitContextTag1::from(int_asn1(22)),
        tickets: ExplicitContextTag2::from(Asn1SequenceOf::from(vec![tgt.ticket.clone()])),
        enc_part: ExplicitContextTag3::from(encrypted(session, None, sealed)),
    });
    picky_asn1_der::to_vec(&cred).unwrap_or_default()
}

/// Reads a KRB-CRED sealed in `session` (or, RFC 6448, in the clear as etype 0) into the
/// credentials of its first ticket.
pub fn read_krb_cred(bytes: &[u8], session: &Key) -> Result<Credentials, GssError> {
    let cred: KrbCred =
        der::decode(bytes).ok_or_else(|| GssError::new(err::GENERIC, "undecodable KRB-CRED"))?;
    let cred = cred.0;
    let cipher = &cred.enc_part.0.cipher.0 .0;
    let plain = if int(&cred.enc_part.0.etype.0) == Some(0) {
        cipher.clone()
    } else {
        session
            .decrypt(USAGE_KRB_CRED, cipher)
            .map_err(|_| GssError::new(err::BAD_INTEGRITY, "KRB-CRED does not decrypt"))?
    };
    let part: EncKrbCredPart = der::decode(&plain)
        .ok_or_else(|| GssError::new(err::GENERIC, "undecodable EncKrbCredPart"))?;
    let (Some(ticket), Some(info)) = (cred.tickets.0 .0.first(), part.0.ticket_info.0 .0.first())
    else {
        return Err(GssError::new(err::GENERIC, "KRB-CRED without a ticket"));
    };
    let session =
        key_of(&info.key.0).ok_or_else(|| GssError::new(err::GENERIC, "KRB-CRED key unusable"))?;
    let name =
        |n: &Option<ExplicitContextTag2<PrincipalName>>| n.as_ref().map(|n| Name::from_asn1(&n.0));
    Ok(Credentials {
        client: name(&info.pname.0).unwrap_or_else(|| Name::user("")),
        realm: info
            .prealm
            .0
            .as_ref()
            .map(|r| kstring_text(&r.0))
            .unwrap_or_default(),
        server: Name::from_asn1(&ticket.0.sname.0),
        ticket: ticket.clone(),
        session,
        flags: info.flags.0.as_ref().map_or(0, |f| flags_of(&f.0)),
        auth_time: info.authtime.0.as_ref().map_or(0, |t| time_of(&t.0)),
        end_time: info.endtime.0.as_ref().map_or(0, |t| time_of(&t.0)),
    })
}

/// A refusal with its Kerberos code (what a KRB-ERROR token or a log would say).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (Kerberos error {code})")]
pub struct GssError {
    pub code: u32,
    pub reason: String,
}

impl GssError {
    pub fn new(code: u32, reason: impl Into<String>) -> GssError {
        GssError {
            code,
            reason: reason.into(),
        }
    }
}

/// The 0x8003 checksum's value: Lgth 16, zero channel bindings, the flags, and with
/// delegation DlgOpt 1 and the KRB-CRED; little-endian, unlike the rest of Kerberos.
fn gss_checksum(flags: u32, deleg: Option<&[u8]>) -> Vec<u8> {
    let mut v = 16u32.to_le_bytes().to_vec();
    v.extend_from_slice(&[0u8; 16]);
    v.extend_from_slice(&flags.to_le_bytes());
    if let Some(cred) = deleg {
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&(cred.len() as u16).to_le_bytes());
        v.extend_from_slice(cred);
    }
    v
}

/// What the initiator keeps to check the acceptor's AP-REP.
#[derive(Debug, Clone)]
pub struct InitiatorContext {
    pub session: Key,
    pub subkey: Key,
    ctime: Seconds,
    cusec: u32,
    pub flags: u32,
    /// The authenticator's seq-number: the initiator's first SND_SEQ (RFC 4121 4.2.6).
    pub seq: u32,
}

/// What an AP-REP said: the acceptor's subkey, if it sent one, and its seq-number (the
/// acceptor's first SND_SEQ).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyParts {
    pub subkey: Option<Key>,
    pub seq: Option<u32>,
}

/// The first context token for `ticket` (a service ticket) with `flags`; with `delegate`
/// (a forwarded TGT) DELEG is set and the TGT travels in the checksum. `dce_style` sends
/// the AP-REQ raw, as DCE/RPC's auth_type 16 does (MS-KILE 3.4.5.1).
pub fn initiate(
    ticket: &Credentials,
    flags: u32,
    delegate: Option<&Credentials>,
    dce_style: bool,
    now: Seconds,
    rng: &mut SeededRng,
) -> (Vec<u8>, InitiatorContext) {
    let deleg = delegate.map(|tgt| krb_cred(tgt, &ticket.session));
    let flags = match delegate {
        Some(_) => flags | gss_flags::DELEG,
        None => flags & !gss_flags::DELEG,
    };
    let cksum = Checksum {
        cksumtype: ExplicitContextTag0::from(int_asn1(CKSUM_GSS)),
        checksum: ExplicitContextTag1::from(OctetStringAsn1::from(gss_checksum(
            flags,
            deleg.as_deref(),
        ))),
    };
    let subkey = Key::random(ticket.session.etype, rng);
    let cusec = (rng.next_u64() % 1_000_000) as u32;
    let seq = (rng.next_u64() & 0x3FFF_FFFF) as u32;
    let ap_options = if flags & gss_flags::MUTUAL != 0 {
        AP_MUTUAL_REQUIRED
    } else {
        0
    };
    let ap = client::ap_req(
        ticket,
        USAGE_AP_REQ_AUTH,
        ap_options,
        Some(cksum),
        Some(&subkey),
        Some(seq),
        (now, cusec),
    );
    let body = picky_asn1_der::to_vec(&ap).unwrap_or_default();
    let token = if dce_style {
        body
    } else {
        frame(TOK_AP_REQ, &body)
    };
    (
        token,
        InitiatorContext {
            session: ticket.session.clone(),
            subkey,
            ctime: now,
            cusec,
            flags,
            seq,
        },
    )
}

impl InitiatorContext {
    /// Checks the acceptor's AP-REP (framed or raw): it must decrypt in the session key
    /// and echo the authenticator's time, or mutual authentication failed (MIT's
    /// KRB5_MUTUAL_FAILED). Returns the acceptor's subkey, if it sent one.
    pub fn read_reply(&self, token: &[u8]) -> Result<Option<Key>, GssError> {
        self.read_reply_parts(token).map(|parts| parts.subkey)
    }

    /// As [`InitiatorContext::read_reply`], with the AP-REP's seq-number too.
    pub fn read_reply_parts(&self, token: &[u8]) -> Result<ReplyParts, GssError> {
        let body = match unframe(token) {
            Some((TOK_AP_REP, body)) => body,
            Some((TOK_ERROR, body)) => {
                let (code, text, _) = client::read_error(body)
                    .ok_or_else(|| GssError::new(err::GENERIC, "undecodable error token"))?;
                return Err(GssError::new(code, text));
            }
            Some(_) => return Err(GssError::new(err::MSG_TYPE, "not an AP-REP token")),
            None => token,
        };
        let rep: ApRep =
            der::decode(body).ok_or_else(|| GssError::new(err::GENERIC, "undecodable AP-REP"))?;
        let plain = self
            .session
            .decrypt(USAGE_AP_REP, &rep.0.enc_part.0.cipher.0 .0)
            .map_err(|_| GssError::new(err::BAD_INTEGRITY, "AP-REP does not decrypt"))?;
        let part: EncApRepPart = der::decode(&plain)
            .ok_or_else(|| GssError::new(err::GENERIC, "undecodable EncAPRepPart"))?;
        if time_of(&part.0.ctime.0) != self.ctime
            || int(&part.0.cusec.0) != Some(i64::from(self.cusec))
        {
            return Err(GssError::new(
                err::MODIFIED,
                "AP-REP does not echo the time",
            ));
        }
        Ok(ReplyParts {
            subkey: part.0.subkey.0.as_ref().and_then(|k| key_of(&k.0)),
            seq: seq_of(&part.0.seq_number.0),
        })
    }

    /// The DCE-style third leg (MS-KILE 3.4.5.1; MIT `mk_rep.c`): a raw AP-REP in the
    /// session key, with the time `now` and the acceptor's seq-number echoed, no subkey.
    pub fn dce_reply(&self, acceptor_seq: u32, now: Seconds, rng: &mut SeededRng) -> Vec<u8> {
        let cusec = (rng.next_u64() % 1_000_000) as u32;
        dce_ap_rep(&self.session, acceptor_seq, now, cusec)
    }
}

/// The DCE-style third leg's AP-REP for `session`, echoing `acceptor_seq`.
pub fn dce_ap_rep(session: &Key, acceptor_seq: u32, now: Seconds, cusec: u32) -> Vec<u8> {
    ap_rep_token(
        session,
        &time_asn1(now),
        &int_asn1(i64::from(cusec)),
        None,
        acceptor_seq,
    )
}

fn seq_of(seq: &Option<ExplicitContextTag3<IntegerAsn1>>) -> Option<u32> {
    seq.as_ref()
        .and_then(|s| int(&s.0))
        .and_then(|s| u32::try_from(s).ok())
}

/// An AP-REP: `E(session, 12, EncAPRepPart{ctime, cusec, subkey, seq-number})`.
fn ap_rep_token(
    session: &Key,
    ctime: &GeneralizedTimeAsn1,
    cusec: &IntegerAsn1,
    subkey: Option<&Key>,
    seq: u32,
) -> Vec<u8> {
    let part = EncApRepPart::from(EncApRepPartInner {
        ctime: ExplicitContextTag0::from(ctime.clone()),
        cusec: ExplicitContextTag1::from(cusec.clone()),
        subkey: Optional::from(subkey.map(|k| ExplicitContextTag2::from(key_asn1(k)))),
        seq_number: Optional::from(Some(ExplicitContextTag3::from(int_asn1(i64::from(seq))))),
    });
    let sealed = session.encrypt(
        USAGE_AP_REP,
        &picky_asn1_der::to_vec(&part).unwrap_or_default(),
    );
    let rep = ApRep::from(ApRepInner {
        pvno: ExplicitContextTag0::from(int_asn1(5)),
        msg_type: ExplicitContextTag1::from(int_asn1(15)),
        enc_part: ExplicitContextTag2::from(encrypted(session, None, sealed)),
    });
    picky_asn1_der::to_vec(&rep).unwrap_or_default()
}

/// Checks the initiator's DCE-style third leg (a raw AP-REP): it must open with the
/// session key and echo the acceptor's seq-number, as Heimdal's acceptor requires
/// (`acceptor_wait_for_dcestyle`). Returns the initiator's time.
pub fn read_dce_reply(session: &Key, token: &[u8], acceptor_seq: u32) -> Result<Seconds, GssError> {
    let rep: ApRep =
        der::decode(token).ok_or_else(|| GssError::new(err::GENERIC, "undecodable AP-REP"))?;
    if int(&rep.0.msg_type.0) != Some(15) {
        return Err(GssError::new(err::MSG_TYPE, "not an AP-REP"));
    }
    let plain = session
        .decrypt(USAGE_AP_REP, &rep.0.enc_part.0.cipher.0 .0)
        .map_err(|_| GssError::new(err::BAD_INTEGRITY, "AP-REP does not decrypt"))?;
    let part: EncApRepPart = der::decode(&plain)
        .ok_or_else(|| GssError::new(err::GENERIC, "undecodable EncAPRepPart"))?;
    if seq_of(&part.0.seq_number.0) != Some(acceptor_seq) {
        return Err(GssError::new(
            err::MODIFIED,
            "AP-REP does not echo the acceptor's seq-number",
        ));
    }
    Ok(time_of(&part.0.ctime.0))
}

/// An accepted context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub client: Name,
    pub realm: String,
    /// The service the ticket was for.
    pub service: Name,
    /// The GSS flags of the 0x8003 checksum (0 without one).
    pub gss_flags: u32,
    pub ticket_flags: u32,
    /// The forwarded TGT, when the client delegated.
    pub delegated: Option<Credentials>,
    /// The AP-REP token for mutual authentication (framed, or raw in DCE style).
    pub reply: Option<Vec<u8>>,
    pub session: Key,
    pub initiator_subkey: Option<Key>,
    pub acceptor_subkey: Option<Key>,
    /// The authenticator's seq-number (the initiator's first SND_SEQ), 0 without one.
    pub initiator_seq: u32,
    /// The AP-REP's seq-number (the acceptor's first SND_SEQ), when one was sent.
    pub acceptor_seq: Option<u32>,
}

/// Accepts context tokens for the services whose keys it holds (a keytab).
#[derive(Debug, Clone)]
pub struct Acceptor {
    realm: String,
    keytab: Vec<RealmEntry>,
    clock_skew: Seconds,
    seen: ReplayCache,
    rng: SeededRng,
}

impl Acceptor {
    pub fn new(realm: &str, keytab: Vec<RealmEntry>, seed: u64) -> Acceptor {
        Acceptor {
            realm: realm.to_string(),
            keytab,
            clock_skew: 300,
            seen: ReplayCache::default(),
            rng: SeededRng::new(seed),
        }
    }

    /// Checks an AP-REQ token (framed, or raw in DCE style): the ticket must be for a
    /// service in the keytab and open with its key; the authenticator must open with the
    /// ticket's session key, name the ticket's client, be within the skew and not seen
    /// before; a delegated TGT must open with the session key.
    pub fn accept(&mut self, token: &[u8], now: Seconds) -> Result<Accepted, GssError> {
        let (body, dce_style) = match unframe(token) {
            Some((TOK_AP_REQ, body)) => (body, false),
            Some(_) => return Err(GssError::new(err::MSG_TYPE, "not an AP-REQ token")),
            None => (token, true),
        };
        let ap: ApReq =
            der::decode(body).ok_or_else(|| GssError::new(err::GENERIC, "undecodable AP-REQ"))?;
        let ap = ap.0;
        let ticket = &ap.ticket.0 .0;
        let service = Name::from_asn1(&ticket.sname.0);
        let entry = self
            .keytab
            .iter()
            .find(|e| e.name.components == service.components)
            .filter(|_| kstring_text(&ticket.realm.0) == self.realm)
            .ok_or_else(|| GssError::new(err::NOT_US, format!("no key for {service}")))?;
        let key = int(&ticket.enc_part.0.etype.0)
            .and_then(Etype::from_number)
            .and_then(|e| entry.key(e))
            .ok_or_else(|| {
                GssError::new(err::ETYPE_NOSUPP, "ticket in an enctype without a key")
            })?;
        let plain = key
            .decrypt(2, &ticket.enc_part.0.cipher.0 .0)
            .map_err(|_| GssError::new(err::BAD_INTEGRITY, "ticket does not decrypt"))?;
        let part: EncTicketPartApp =
            der::decode(&plain).ok_or_else(|| GssError::new(err::GENERIC, "undecodable ticket"))?;
        let part = part.0;
        if time_of(&part.endtime.0) + self.clock_skew < now {
            return Err(GssError::new(err::TKT_EXPIRED, "ticket expired"));
        }
        let start = part
            .starttime
            .0
            .as_ref()
            .map_or_else(|| time_of(&part.auth_time.0), |t| time_of(&t.0));
        if start > now + self.clock_skew {
            return Err(GssError::new(err::TKT_NYV, "ticket not yet valid"));
        }
        let session = key_of(&part.key.0)
            .ok_or_else(|| GssError::new(err::GENERIC, "ticket session key unusable"))?;
        let plain = session
            .decrypt(USAGE_AP_REQ_AUTH, &ap.authenticator.0.cipher.0 .0)
            .map_err(|_| GssError::new(err::BAD_INTEGRITY, "authenticator does not decrypt"))?;
        let auth: Authenticator = der::decode(&plain)
            .ok_or_else(|| GssError::new(err::GENERIC, "undecodable authenticator"))?;
        let auth = auth.0;
        let client = Name::from_asn1(&part.cname.0);
        if Name::from_asn1(&auth.cname.0).components != client.components
            || kstring_text(&auth.crealm.0) != kstring_text(&part.crealm.0)
        {
            return Err(GssError::new(
                err::BADMATCH,
                "authenticator names another client",
            ));
        }
        let ctime = time_of(&auth.ctime.0);
        if (ctime - now).abs() > self.clock_skew {
            return Err(GssError::new(
                err::SKEW,
                "authenticator outside the clock skew",
            ));
        }
        let cusec = int(&auth.cusec.0).unwrap_or(-1);
        let sealed = &ap.authenticator.0.cipher.0 .0;
        if !self
            .seen
            .admit(&client, (ctime, cusec), sealed, now, self.clock_skew)
        {
            return Err(GssError::new(err::REPEAT, "authenticator replayed"));
        }

        let (gss_flags, delegated) = match auth.cksum.0.as_ref() {
            Some(c) if int(&c.0.cksumtype.0) == Some(CKSUM_GSS) => {
                read_gss_checksum(&c.0.checksum.0 .0, &session)?
            }
            _ => (0, None),
        };
        let initiator_subkey = auth.subkey.0.as_ref().and_then(|k| key_of(&k.0));
        let mutual = flags_of(&ap.ap_options.0) & AP_MUTUAL_REQUIRED != 0
            || gss_flags & gss_flags::MUTUAL != 0;
        let acceptor_subkey = mutual.then(|| Key::random(session.etype, &mut self.rng));
        let acceptor_seq = mutual.then(|| (self.rng.next_u64() & 0x3FFF_FFFF) as u32);
        // DCE style answers raw whatever the AP-REQ's framing: impacket frames its AP-REQ
        // inside SPNEGO yet reads a raw AP-REP (MS-KILE 3.4.5.1).
        let raw = dce_style || gss_flags & gss_flags::DCE_STYLE != 0;
        let reply = acceptor_seq.map(|seq| {
            let rep = ap_rep_token(
                &session,
                &auth.ctime.0,
                &auth.cusec.0,
                acceptor_subkey.as_ref(),
                seq,
            );
            if raw {
                rep
            } else {
                frame(TOK_AP_REP, &rep)
            }
        });
        Ok(Accepted {
            client,
            realm: kstring_text(&part.crealm.0),
            service,
            gss_flags,
            ticket_flags: flags_of(&part.flags.0),
            delegated,
            reply,
            session,
            initiator_subkey,
            acceptor_subkey,
            initiator_seq: auth
                .seq_number
                .0
                .as_ref()
                .and_then(|s| int(&s.0))
                .and_then(|s| u32::try_from(s).ok())
                .unwrap_or(0),
            acceptor_seq,
        })
    }
}

/// Reads the 0x8003 checksum (RFC 4121 4.1.1): Lgth must be 16 (MIT refuses others); with
/// DELEG and DlgOpt 1 the KRB-CRED that follows is opened with the session key.
fn read_gss_checksum(value: &[u8], session: &Key) -> Result<(u32, Option<Credentials>), GssError> {
    let bad = || GssError::new(err::INAPP_CKSUM, "malformed GSS checksum");
    let le32 = |at: usize| -> Option<u32> {
        let b = value.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if le32(0) != Some(16) {
        return Err(bad());
    }
    let flags = le32(20).ok_or_else(bad)?;
    if flags & gss_flags::DELEG == 0 || value.len() == 24 {
        return Ok((flags & !gss_flags::DELEG, None));
    }
    let le16 = |at: usize| -> Option<u16> {
        let b = value.get(at..at + 2)?;
        Some(u16::from_le_bytes([b[0], b[1]]))
    };
    if le16(24) != Some(1) {
        return Err(bad());
    }
    let len = usize::from(le16(26).ok_or_else(bad)?);
    let cred = value.get(28..28 + len).ok_or_else(bad)?;
    let tgt = read_krb_cred(cred, session)?;
    Ok((flags, Some(tgt)))
}

#[cfg(test)]
mod tests;
