//! The client half of the AS and TGS exchanges (RFC 4120 3.1, 3.3), sans-IO: build a
//! request, read its reply. The driver's browsers and services and the tests use it; the
//! step functions let an adapter put any transport between them, and `login` / `ticket`
//! run a whole exchange through a closure (a `Kdc` in process, a socket outside).

use picky_asn1::wrapper::{
    Asn1SequenceOf, ExplicitContextTag0, ExplicitContextTag1, ExplicitContextTag2,
    ExplicitContextTag3, ExplicitContextTag4, ExplicitContextTag5, ExplicitContextTag6,
    ExplicitContextTag7, ExplicitContextTag8, OctetStringAsn1, Optional,
};
use picky_krb::data_types::{
    Authenticator, AuthenticatorInner, Checksum, EtypeInfo2, PaData, PaEncTsEnc, Ticket,
};
use picky_krb::messages::{
    ApReq, ApReqInner, AsRep, AsReq, EncAsRepPart, EncTgsRepPart, KdcRep, KdcReq, KdcReqBody,
    KrbError, TgsRep, TgsReq,
};

use super::kdc::{pa, usage};
use super::keys::{default_salt, Etype, Key};
use super::{
    der, encrypted, err, flags_asn1, flags_of, int, int_asn1, key_asn1, key_of, kstring,
    kstring_text, pa_data, time_asn1, time_of, Name, Seconds,
};
use crate::rng::SeededRng;

/// A transport to the KDC: a request's octets in, the reply's out.
pub type Exchange<'a> = dyn FnMut(&[u8]) -> Result<Vec<u8>, String> + 'a;

/// A ticket and what the client knows about it (its session key, flags and times).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub client: Name,
    pub realm: String,
    pub server: Name,
    pub ticket: Ticket,
    pub session: Key,
    pub flags: u32,
    pub auth_time: Seconds,
    pub end_time: Seconds,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The KDC said no; `text` is its e-text.
    #[error("KRB-ERROR {code}: {text}")]
    Krb { code: u32, text: String },
    /// The reply did not decrypt with the expected key: for an AS-REP, a wrong password
    /// (MIT's kinit says "Password incorrect").
    #[error("reply does not decrypt: {0}")]
    Integrity(String),
    /// The reply decrypted but does not answer this request (MIT's KRB5_KDCREP_MODIFIED).
    #[error("reply does not match the request: {0}")]
    Modified(String),
    #[error("malformed reply: {0}")]
    Malformed(String),
    #[error("transport: {0}")]
    Transport(String),
}

impl ClientError {
    /// The Kerberos code of a refusal, for outcome tables.
    pub fn code(&self) -> Option<u32> {
        match self {
            ClientError::Krb { code, .. } => Some(*code),
            ClientError::Integrity(_) => Some(err::BAD_INTEGRITY),
            ClientError::Modified(_) => Some(err::MODIFIED),
            _ => None,
        }
    }
}

/// What the client asks for: options, enctypes in preference order, and the life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub options: u32,
    pub etypes: Vec<Etype>,
    /// Requested life from now.
    pub life: Seconds,
}

impl Default for Request {
    fn default() -> Self {
        // kinit's defaults: renewable-ok, both AES types, a day.
        Request {
            options: super::flags::RENEWABLE_OK,
            etypes: Etype::ALL.to_vec(),
            life: 86_400,
        }
    }
}

/// An AS-REQ for `client` to `server` (usually `krbtgt/REALM`), with `padata`.
pub fn as_req(
    client: &Name,
    realm: &str,
    server: &Name,
    request: &Request,
    nonce: u32,
    now: Seconds,
    padata: Vec<PaData>,
) -> Vec<u8> {
    let req = AsReq::from(KdcReq {
        pvno: ExplicitContextTag1::from(int_asn1(5)),
        msg_type: ExplicitContextTag2::from(int_asn1(10)),
        padata: Optional::from(
            (!padata.is_empty()).then(|| ExplicitContextTag3::from(Asn1SequenceOf::from(padata))),
        ),
        req_body: ExplicitContextTag4::from(req_body(
            Some(client),
            realm,
            server,
            request,
            nonce,
            now,
        )),
    });
    picky_asn1_der::to_vec(&req).unwrap_or_default()
}

fn req_body(
    client: Option<&Name>,
    realm: &str,
    server: &Name,
    request: &Request,
    nonce: u32,
    now: Seconds,
) -> KdcReqBody {
    KdcReqBody {
        kdc_options: ExplicitContextTag0::from(flags_asn1(request.options)),
        cname: Optional::from(client.map(|c| ExplicitContextTag1::from(c.to_asn1()))),
        realm: ExplicitContextTag2::from(kstring(realm)),
        sname: Optional::from(Some(ExplicitContextTag3::from(server.to_asn1()))),
        from: Optional::from(None),
        till: ExplicitContextTag5::from(time_asn1(now + request.life)),
        rtime: Optional::from(None),
        nonce: ExplicitContextTag7::from(int_asn1(i64::from(nonce))),
        etype: ExplicitContextTag8::from(Asn1SequenceOf::from(
            request
                .etypes
                .iter()
                .map(|e| int_asn1(e.number()))
                .collect::<Vec<_>>(),
        )),
        addresses: Optional::from(None),
        enc_authorization_data: Optional::from(None),
        additional_tickets: Optional::from(None),
    }
}

/// PA-ENC-TIMESTAMP: the time sealed in the client's key (usage 1).
pub fn enc_timestamp(key: &Key, now: Seconds) -> PaData {
    let ts = PaEncTsEnc {
        patimestamp: ExplicitContextTag0::from(time_asn1(now)),
        pausec: Optional::from(Some(ExplicitContextTag1::from(int_asn1(0)))),
    };
    let sealed = key.encrypt(
        usage::PA_ENC_TIMESTAMP,
        &picky_asn1_der::to_vec(&ts).unwrap_or_default(),
    );
    let data = encrypted(key, None, sealed);
    pa_data(
        pa::ENC_TIMESTAMP,
        picky_asn1_der::to_vec(&data).unwrap_or_default(),
    )
}

/// A KRB-ERROR's code, e-text and e-data, if `reply` is one.
pub fn read_error(reply: &[u8]) -> Option<(u32, String, Option<Vec<u8>>)> {
    let error: KrbError = der::decode(reply)?;
    let e = error.0;
    Some((
        e.error_code.0,
        e.e_text.0.map(|t| kstring_text(&t.0)).unwrap_or_default(),
        e.e_data.0.map(|d| d.0 .0),
    ))
}

/// The enctype and salt a PREAUTH_REQUIRED error's METHOD-DATA offers.
pub fn preauth_hint(e_data: &[u8]) -> Option<(Etype, String)> {
    let methods: Asn1SequenceOf<PaData> = der::decode(e_data)?;
    let info = methods
        .0
        .iter()
        .find(|p| int(&p.padata_type.0) == Some(pa::ETYPE_INFO2))?;
    let entries: EtypeInfo2 = der::decode(&info.padata_data.0 .0)?;
    entries.0.iter().find_map(|e| {
        let etype = Etype::from_number(int(&e.etype.0)?)?;
        let salt = e.salt.0.as_ref().map(|s| kstring_text(&s.0))?;
        Some((etype, salt))
    })
}

/// Reads an AS-REP for the request with `nonce`, sealed in `key`.
pub fn read_as_rep(
    reply: &[u8],
    key: &Key,
    nonce: u32,
    server: &Name,
) -> Result<Credentials, ClientError> {
    if let Some((code, text, _)) = read_error(reply) {
        return Err(ClientError::Krb { code, text });
    }
    let rep: AsRep =
        der::decode(reply).ok_or_else(|| ClientError::Malformed("not an AS-REP".into()))?;
    let rep = rep.0;
    let plain = key
        .decrypt(usage::AS_REP, &rep.enc_part.0.cipher.0 .0)
        .map_err(|e| ClientError::Integrity(e.to_string()))?;
    // MIT's KDC tags both kinds 26; accept either (PROTOCOLS.md 9.6).
    let part = der::decode::<EncAsRepPart>(&plain)
        .map(|p| p.0)
        .or_else(|| der::decode::<EncTgsRepPart>(&plain).map(|p| p.0))
        .ok_or_else(|| ClientError::Malformed("undecodable EncKDCRepPart".into()))?;
    credentials(rep, part, nonce, server)
}

fn credentials(
    rep: KdcRep,
    part: picky_krb::messages::EncKdcRepPart,
    nonce: u32,
    server: &Name,
) -> Result<Credentials, ClientError> {
    if int(&part.nonce.0) != Some(i64::from(nonce)) {
        return Err(ClientError::Modified("nonce".into()));
    }
    let sname = Name::from_asn1(&part.sname.0);
    if sname.components != server.components
        || Name::from_asn1(&rep.ticket.0 .0.sname.0).components != server.components
    {
        return Err(ClientError::Modified(format!("server {sname}")));
    }
    let session =
        key_of(&part.key.0).ok_or_else(|| ClientError::Malformed("session key".into()))?;
    Ok(Credentials {
        client: Name::from_asn1(&rep.cname.0),
        realm: kstring_text(&rep.crealm.0),
        server: sname,
        ticket: rep.ticket.0,
        session,
        flags: flags_of(&part.flags.0),
        auth_time: time_of(&part.auth_time.0),
        end_time: time_of(&part.end_time.0),
    })
}

/// An AP-REQ with `creds`' ticket and an authenticator sealed in its session key with
/// `key_usage` (7 inside a TGS-REQ, 11 for an application), carrying `cksum` and `subkey`,
/// made at `(now, cusec)`.
pub fn ap_req(
    creds: &Credentials,
    key_usage: i32,
    ap_options: u32,
    cksum: Option<Checksum>,
    subkey: Option<&Key>,
    seq_number: Option<u32>,
    (now, cusec): (Seconds, u32),
) -> ApReq {
    let auth = Authenticator::from(AuthenticatorInner {
        authenticator_vno: ExplicitContextTag0::from(int_asn1(5)),
        crealm: ExplicitContextTag1::from(kstring(&creds.realm)),
        cname: ExplicitContextTag2::from(creds.client.to_asn1()),
        cksum: Optional::from(cksum.map(ExplicitContextTag3::from)),
        cusec: ExplicitContextTag4::from(int_asn1(i64::from(cusec))),
        ctime: ExplicitContextTag5::from(time_asn1(now)),
        subkey: Optional::from(subkey.map(|k| ExplicitContextTag6::from(key_asn1(k)))),
        seq_number: Optional::from(
            seq_number.map(|s| ExplicitContextTag7::from(int_asn1(i64::from(s)))),
        ),
        authorization_data: Optional::from(None),
    });
    let sealed = creds.session.encrypt(
        key_usage,
        &picky_asn1_der::to_vec(&auth).unwrap_or_default(),
    );
    ApReq::from(ApReqInner {
        pvno: ExplicitContextTag0::from(int_asn1(5)),
        msg_type: ExplicitContextTag1::from(int_asn1(14)),
        ap_options: ExplicitContextTag2::from(flags_asn1(ap_options)),
        ticket: ExplicitContextTag3::from(creds.ticket.clone()),
        authenticator: ExplicitContextTag4::from(encrypted(&creds.session, None, sealed)),
    })
}

/// A TGS-REQ with `tgt` for `server`; returns the request and the subkey the reply will
/// be sealed in. The authenticator's microseconds come from `rng` (a seeded run repeats);
/// a client making many requests a second gives its clock's with [`tgs_req_at`].
pub fn tgs_req(
    tgt: &Credentials,
    server: &Name,
    request: &Request,
    nonce: u32,
    now: Seconds,
    rng: &mut SeededRng,
) -> (Vec<u8>, Key) {
    let cusec = (rng.next_u64() % 1_000_000) as u32;
    tgs_req_at(tgt, server, request, nonce, (now, cusec), rng)
}

/// [`tgs_req`] at a time with its microseconds: the KDC refuses a second authenticator
/// from the same client with the same time and microseconds as a replay, as MIT's does.
pub fn tgs_req_at(
    tgt: &Credentials,
    server: &Name,
    request: &Request,
    nonce: u32,
    (now, cusec): (Seconds, u32),
    rng: &mut SeededRng,
) -> (Vec<u8>, Key) {
    let body = req_body(None, &tgt.realm, server, request, nonce, now);
    let body_bytes = picky_asn1_der::to_vec(&body).unwrap_or_default();
    let cksum = Checksum {
        cksumtype: ExplicitContextTag0::from(int_asn1(tgt.session.etype.checksum_type())),
        checksum: ExplicitContextTag1::from(OctetStringAsn1::from(
            tgt.session.checksum(usage::TGS_REQ_CKSUM, &body_bytes),
        )),
    };
    let subkey = Key::random(tgt.session.etype, rng);
    let ap = ap_req(
        tgt,
        usage::TGS_REQ_AUTHENTICATOR,
        0,
        Some(cksum),
        Some(&subkey),
        None,
        (now, cusec),
    );
    let req = TgsReq::from(KdcReq {
        pvno: ExplicitContextTag1::from(int_asn1(5)),
        msg_type: ExplicitContextTag2::from(int_asn1(12)),
        padata: Optional::from(Some(ExplicitContextTag3::from(Asn1SequenceOf::from(vec![
            pa_data(pa::TGS_REQ, picky_asn1_der::to_vec(&ap).unwrap_or_default()),
        ])))),
        req_body: ExplicitContextTag4::from(body),
    });
    (picky_asn1_der::to_vec(&req).unwrap_or_default(), subkey)
}

/// Reads a TGS-REP sealed in `subkey` (usage 9).
pub fn read_tgs_rep(
    reply: &[u8],
    subkey: &Key,
    nonce: u32,
    server: &Name,
) -> Result<Credentials, ClientError> {
    if let Some((code, text, _)) = read_error(reply) {
        return Err(ClientError::Krb { code, text });
    }
    let rep: TgsRep =
        der::decode(reply).ok_or_else(|| ClientError::Malformed("not a TGS-REP".into()))?;
    let rep = rep.0;
    let plain = subkey
        .decrypt(usage::TGS_REP_SUBKEY, &rep.enc_part.0.cipher.0 .0)
        .map_err(|e| ClientError::Integrity(e.to_string()))?;
    let part = der::decode::<EncTgsRepPart>(&plain)
        .map(|p| p.0)
        .or_else(|| der::decode::<EncAsRepPart>(&plain).map(|p| p.0))
        .ok_or_else(|| ClientError::Malformed("undecodable EncKDCRepPart".into()))?;
    credentials(rep, part, nonce, server)
}

/// kinit: an AS-REQ without pre-authentication, then, when the KDC asks for it, again with
/// PA-ENC-TIMESTAMP in the key the KDC's ETYPE-INFO2 names.
pub fn login(
    exchange: &mut Exchange<'_>,
    user: &str,
    realm: &str,
    password: &str,
    request: &Request,
    now: Seconds,
    rng: &mut SeededRng,
) -> Result<Credentials, ClientError> {
    let client = Name::user(user);
    let tgs = Name::tgs(realm);
    let nonce = (rng.next_u64() & 0x7FFF_FFFF) as u32;
    let first = as_req(&client, realm, &tgs, request, nonce, now, Vec::new());
    let reply = exchange(&first).map_err(ClientError::Transport)?;
    let (etype, salt) = match read_error(&reply) {
        Some((err::PREAUTH_REQUIRED, _, Some(e_data))) => preauth_hint(&e_data)
            .ok_or_else(|| ClientError::Malformed("PREAUTH_REQUIRED without ETYPE-INFO2".into()))?,
        _ => {
            let etype = request.etypes.first().copied().unwrap_or(Etype::Aes256);
            let key = Key::from_password(etype, password, &default_salt(realm, &client.components));
            return read_as_rep(&reply, &key, nonce, &tgs);
        }
    };
    let key = Key::from_password(etype, password, &salt);
    let nonce = (rng.next_u64() & 0x7FFF_FFFF) as u32;
    let second = as_req(
        &client,
        realm,
        &tgs,
        request,
        nonce,
        now,
        vec![enc_timestamp(&key, now)],
    );
    let reply = exchange(&second).map_err(ClientError::Transport)?;
    read_as_rep(&reply, &key, nonce, &tgs)
}

/// kvno: a service ticket for `server` with `tgt`.
pub fn ticket(
    exchange: &mut Exchange<'_>,
    tgt: &Credentials,
    server: &Name,
    request: &Request,
    now: Seconds,
    rng: &mut SeededRng,
) -> Result<Credentials, ClientError> {
    let nonce = (rng.next_u64() & 0x7FFF_FFFF) as u32;
    let (req, subkey) = tgs_req(tgt, server, request, nonce, now, rng);
    let reply = exchange(&req).map_err(ClientError::Transport)?;
    read_tgs_rep(&reply, &subkey, nonce, server)
}
