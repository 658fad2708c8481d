//! Kerberos V5 (RFC 4120) for the lab: the realm's database built from the world, the KDC
//! (AS and TGS exchanges) as a sans-IO core, and the client half the driver and the tests
//! use. ASN.1 types and the RFC 3962 ciphers come from picky-krb; the KDC's checks,
//! flags, times and errors are written here. Facts: ../shared/PROTOCOLS.md section 9.

pub mod cfx;
pub mod client;
pub(crate) mod der;
pub mod frame;
pub mod gss;
pub mod kdc;
pub mod keys;
pub mod realm;
pub mod spnego;

use picky_asn1::date::{Date, GeneralizedTime};
use picky_asn1::restricted_string::Ia5String;
use picky_asn1::wrapper::{
    Asn1SequenceOf, BitStringAsn1, ExplicitContextTag0, ExplicitContextTag1, GeneralStringAsn1,
    GeneralizedTimeAsn1, IntegerAsn1,
};
use picky_asn1::wrapper::{ExplicitContextTag2, OctetStringAsn1, Optional};
use picky_krb::data_types::{EncryptedData, EncryptionKey, KerberosFlags, PaData, PrincipalName};

pub use kdc::{Kdc, KdcConfig, KdcOutcome, KdcReply};
pub use keys::{Etype, Key};
pub use realm::{EntryKind, RealmDb, RealmEntry};

/// Name types (RFC 4120 6.2; MIT `krb5.hin`).
pub const NT_PRINCIPAL: i64 = 1;
pub const NT_SRV_INST: i64 = 2;
pub const NT_SRV_HST: i64 = 3;

/// Kerberos error codes the lab sends (RFC 4120 7.5.9); names are in `crate::codes`.
pub mod err {
    pub const BAD_PVNO: u32 = 3;
    pub const C_PRINCIPAL_UNKNOWN: u32 = 6;
    pub const S_PRINCIPAL_UNKNOWN: u32 = 7;
    pub const NEVER_VALID: u32 = 11;
    pub const BADOPTION: u32 = 13;
    pub const ETYPE_NOSUPP: u32 = 14;
    pub const PADATA_TYPE_NOSUPP: u32 = 16;
    pub const PREAUTH_FAILED: u32 = 24;
    pub const PREAUTH_REQUIRED: u32 = 25;
    pub const BAD_INTEGRITY: u32 = 31;
    pub const TKT_EXPIRED: u32 = 32;
    pub const TKT_NYV: u32 = 33;
    pub const REPEAT: u32 = 34;
    pub const NOT_US: u32 = 35;
    pub const BADMATCH: u32 = 36;
    pub const SKEW: u32 = 37;
    pub const MSG_TYPE: u32 = 40;
    pub const MODIFIED: u32 = 41;
    pub const INAPP_CKSUM: u32 = 50;
    pub const RESPONSE_TOO_BIG: u32 = 52;
    pub const GENERIC: u32 = 60;
    pub const FIELD_TOOLONG: u32 = 61;
    pub const WRONG_REALM: u32 = 68;
}

/// KDCOptions and TicketFlags share bit positions (RFC 4120 5.4.1, 5.3): bit n of the
/// spec is `0x8000_0000 >> n` of the big-endian u32.
pub mod flags {
    pub const FORWARDABLE: u32 = 0x4000_0000;
    pub const FORWARDED: u32 = 0x2000_0000;
    pub const PROXIABLE: u32 = 0x1000_0000;
    pub const PROXY: u32 = 0x0800_0000;
    pub const ALLOW_POSTDATE: u32 = 0x0400_0000;
    pub const POSTDATED: u32 = 0x0200_0000;
    pub const RENEWABLE: u32 = 0x0080_0000;
    pub const INITIAL: u32 = 0x0040_0000;
    pub const PRE_AUTHENT: u32 = 0x0020_0000;
    pub const TRANSITED_POLICY_CHECKED: u32 = 0x0008_0000;
    pub const OK_AS_DELEGATE: u32 = 0x0004_0000;
    pub const CANONICALIZE: u32 = 0x0001_0000;
    pub const RENEWABLE_OK: u32 = 0x0000_0010;
    pub const ENC_TKT_IN_SKEY: u32 = 0x0000_0008;
    pub const RENEW: u32 = 0x0000_0002;
    pub const VALIDATE: u32 = 0x0000_0001;

    /// `klist -f` letters, in MIT's order, for reports.
    pub fn letters(flags: u32) -> String {
        [
            (FORWARDABLE, 'F'),
            (FORWARDED, 'f'),
            (PROXIABLE, 'P'),
            (PROXY, 'p'),
            (ALLOW_POSTDATE, 'D'),
            (POSTDATED, 'd'),
            (RENEWABLE, 'R'),
            (INITIAL, 'I'),
            (PRE_AUTHENT, 'A'),
            (TRANSITED_POLICY_CHECKED, 'T'),
            (OK_AS_DELEGATE, 'O'),
        ]
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, c)| *c)
        .collect()
    }
}

/// A principal's name without its realm: `alice`, `krbtgt/EXAMPLE.TEST`,
/// `HTTP/web.example.test`. Components compare case-sensitively, as MIT's do; the name
/// type is carried but not compared (MIT `princ_comp.c`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name {
    pub kind: i64,
    pub components: Vec<String>,
}

impl Name {
    pub fn parse(text: &str, kind: i64) -> Name {
        Name {
            kind,
            components: text.split('/').map(str::to_string).collect(),
        }
    }

    pub fn user(name: &str) -> Name {
        Name::parse(name, NT_PRINCIPAL)
    }

    pub fn tgs(realm: &str) -> Name {
        Name {
            kind: NT_SRV_INST,
            components: vec!["krbtgt".into(), realm.into()],
        }
    }

    /// The database key: the components joined with `/`.
    pub fn text(&self) -> String {
        self.components.join("/")
    }

    pub fn is_tgs(&self) -> bool {
        self.components.len() == 2 && self.components[0] == "krbtgt"
    }

    pub(crate) fn from_asn1(name: &PrincipalName) -> Name {
        Name {
            kind: int(&name.name_type.0).unwrap_or(0),
            components: name
                .name_string
                .0
                 .0
                .iter()
                .map(|c| String::from_utf8_lossy(c.0.as_bytes()).into_owned())
                .collect(),
        }
    }

    pub(crate) fn to_asn1(&self) -> PrincipalName {
        PrincipalName {
            name_type: ExplicitContextTag0::from(int_asn1(self.kind)),
            name_string: ExplicitContextTag1::from(Asn1SequenceOf::from(
                self.components
                    .iter()
                    .map(|c| kstring(c))
                    .collect::<Vec<_>>(),
            )),
        }
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

/// A KerberosString; names outside IA5 (which the lab never makes) become `?`.
pub(crate) fn kstring(text: &str) -> GeneralStringAsn1 {
    let ascii: String = text
        .chars()
        .map(|c| if c.is_ascii() { c } else { '?' })
        .collect();
    GeneralStringAsn1::from(Ia5String::from_string(ascii).unwrap_or_default())
}

pub(crate) fn kstring_text(s: &GeneralStringAsn1) -> String {
    String::from_utf8_lossy(s.0.as_bytes()).into_owned()
}

/// An INTEGER as i64; `None` when it does not fit (a lying or hostile length).
pub(crate) fn int(value: &IntegerAsn1) -> Option<i64> {
    let bytes = value.as_signed_bytes_be();
    if bytes.is_empty() || bytes.len() > 8 {
        return None;
    }
    let fill = if bytes[0] & 0x80 != 0 { 0xFF } else { 0 };
    let mut wide = [fill; 8];
    wide[8 - bytes.len()..].copy_from_slice(bytes);
    Some(i64::from_be_bytes(wide))
}

pub(crate) fn int_asn1(value: i64) -> IntegerAsn1 {
    let bytes = value.to_be_bytes();
    // Minimal two's complement: drop leading bytes that only repeat the sign.
    let mut start = 0;
    while start < 7 {
        let redundant = (bytes[start] == 0 && bytes[start + 1] & 0x80 == 0)
            || (bytes[start] == 0xFF && bytes[start + 1] & 0x80 != 0);
        if !redundant {
            break;
        }
        start += 1;
    }
    IntegerAsn1::from_bytes_be_signed(bytes[start..].to_vec())
}

/// The first 32 bits of a KerberosFlags BIT STRING as a u32 (missing bits are 0).
pub(crate) fn flags_of(bits: &KerberosFlags) -> u32 {
    // as_bytes() starts with the unused-bits octet; read the payload ourselves rather than
    // trusting its length.
    let payload = bits.0.as_bytes().get(1..).unwrap_or(&[]);
    let mut word = [0u8; 4];
    for (i, b) in payload.iter().take(4).enumerate() {
        word[i] = *b;
    }
    u32::from_be_bytes(word)
}

pub(crate) fn flags_asn1(value: u32) -> KerberosFlags {
    BitStringAsn1::from(picky_asn1::bit_string::BitString::with_bytes(
        value.to_be_bytes().to_vec(),
    ))
}

pub(crate) fn pa_data(kind: i64, value: Vec<u8>) -> PaData {
    PaData {
        padata_type: ExplicitContextTag1::from(int_asn1(kind)),
        padata_data: ExplicitContextTag2::from(OctetStringAsn1::from(value)),
    }
}

pub(crate) fn encrypted(key: &Key, kvno: Option<u32>, cipher: Vec<u8>) -> EncryptedData {
    EncryptedData {
        etype: ExplicitContextTag0::from(int_asn1(key.etype.number())),
        kvno: Optional::from(kvno.map(|k| ExplicitContextTag1::from(int_asn1(i64::from(k))))),
        cipher: ExplicitContextTag2::from(OctetStringAsn1::from(cipher)),
    }
}

pub(crate) fn key_asn1(key: &Key) -> EncryptionKey {
    EncryptionKey {
        key_type: ExplicitContextTag0::from(int_asn1(key.etype.number())),
        key_value: ExplicitContextTag1::from(OctetStringAsn1::from(key.bytes.clone())),
    }
}

/// A key as an EncryptionKey carries it; `None` for another enctype or a wrong length.
pub(crate) fn key_of(key: &EncryptionKey) -> Option<Key> {
    Key::from_wire(int(&key.key_type.0)?, &key.key_value.0 .0)
}

/// Authenticators seen lately (RFC 4120 3.2.3): one is refused if the same client sent the
/// same authenticator (time, microseconds and ciphertext) within twice the skew. The
/// ciphertext is part of the key so that two of a user's clients that happen to pick the
/// same microsecond are not taken for a replay. Bounded: past `CAPACITY` the oldest are
/// forgotten first.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReplayCache {
    seen: std::collections::VecDeque<(Seconds, String, Seconds, i64, u64)>,
}

impl ReplayCache {
    const CAPACITY: usize = 4096;

    /// `true` (and remembered) if this authenticator is new; `false` if it is a replay.
    pub(crate) fn admit(
        &mut self,
        client: &Name,
        (ctime, cusec): (Seconds, i64),
        sealed: &[u8],
        now: Seconds,
        skew: Seconds,
    ) -> bool {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        sealed.hash(&mut hasher);
        let digest = hasher.finish();
        let window = 2 * skew;
        while self.seen.front().is_some_and(|(at, ..)| *at + window < now) {
            self.seen.pop_front();
        }
        let who = client.text();
        if self
            .seen
            .iter()
            .any(|(_, c, t, u, d)| *c == who && *t == ctime && *u == cusec && *d == digest)
        {
            return false;
        }
        if self.seen.len() == Self::CAPACITY {
            self.seen.pop_front();
        }
        self.seen.push_back((now, who, ctime, cusec, digest));
        true
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }
}

/// Seconds since the Unix epoch; KerberosTime has no fractions (RFC 4120 5.2.3).
pub type Seconds = i64;

pub(crate) fn time_asn1(t: Seconds) -> GeneralizedTimeAsn1 {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let year = y.clamp(1, 9999) as u16;
    let date = Date::<picky_asn1::date::GeneralizedTimeRepr>::new(
        year,
        m as u8,
        d as u8,
        (secs / 3600) as u8,
        (secs / 60 % 60) as u8,
        (secs % 60) as u8,
    );
    // The fields are in range by construction (year clamped, the rest from the
    // calendar arithmetic); the fallback is a constant that always is.
    GeneralizedTimeAsn1::from(date.unwrap_or_else(|| {
        GeneralizedTime::new(1970, 1, 1, 0, 0, 0).expect("a valid constant date")
    }))
}

pub(crate) fn time_of(t: &GeneralizedTimeAsn1) -> Seconds {
    let d = &t.0;
    let days = days_from_civil(
        i64::from(d.year()),
        i64::from(d.month()),
        i64::from(d.day()),
    );
    days * 86_400 + i64::from(d.hour()) * 3600 + i64::from(d.minute()) * 60 + i64::from(d.second())
}

// Howard Hinnant's days-from-civil algorithm (proleptic Gregorian calendar).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_through_generalized_time() {
        for t in [
            0,
            1_704_067_200,
            1_704_067_200 + 86_399,
            951_782_400,
            4_102_444_799,
        ] {
            assert_eq!(time_of(&time_asn1(t)), t, "{t}");
        }
        let d = time_asn1(1_704_067_200 + 3661);
        assert_eq!(
            (
                d.0.year(),
                d.0.month(),
                d.0.day(),
                d.0.hour(),
                d.0.minute(),
                d.0.second()
            ),
            (2024, 1, 1, 1, 1, 1)
        );
    }

    #[test]
    fn integers_are_minimal_and_read_back() {
        for v in [
            0i64,
            1,
            127,
            128,
            255,
            256,
            -1,
            -128,
            -129,
            i64::from(u32::MAX),
            i64::MAX,
        ] {
            assert_eq!(int(&int_asn1(v)), Some(v), "{v}");
        }
        assert_eq!(int_asn1(128).as_signed_bytes_be(), &[0x00, 0x80]);
        assert_eq!(int_asn1(-1).as_signed_bytes_be(), &[0xFF]);
        assert_eq!(int(&IntegerAsn1::from_bytes_be_signed(vec![1; 9])), None);
    }

    #[test]
    fn the_replay_cache_forgets_after_twice_the_skew_and_stays_bounded() {
        let mut cache = ReplayCache::default();
        let alice = Name::user("alice");
        assert!(cache.admit(&alice, (100, 5), b"a", 100, 300));
        assert!(!cache.admit(&alice, (100, 5), b"a", 100, 300), "a replay");
        assert!(
            cache.admit(&alice, (100, 6), b"a", 100, 300),
            "another microsecond"
        );
        assert!(
            cache.admit(&alice, (100, 5), b"b", 100, 300),
            "another authenticator at the same microsecond (another client of alice's)"
        );
        assert!(
            cache.admit(&Name::user("bob"), (100, 5), b"a", 100, 300),
            "another client"
        );
        assert!(
            !cache.admit(&alice, (100, 5), b"a", 700, 300),
            "still inside 2 x skew"
        );
        assert!(
            cache.admit(&alice, (100, 5), b"a", 701, 300),
            "forgotten after it"
        );
        let mut full = ReplayCache::default();
        for i in 0..ReplayCache::CAPACITY as i64 + 10 {
            assert!(full.admit(&alice, (0, i), b"a", 0, 300));
        }
        assert_eq!(full.len(), ReplayCache::CAPACITY);
        assert!(
            full.admit(&alice, (0, 0), b"a", 0, 300),
            "the oldest went first"
        );
    }

    #[test]
    fn every_code_the_kdc_sends_has_a_catalogue_name() {
        use crate::codes::{ErrorCode, Family};
        let sent = [
            err::BAD_PVNO,
            err::C_PRINCIPAL_UNKNOWN,
            err::S_PRINCIPAL_UNKNOWN,
            err::NEVER_VALID,
            err::BADOPTION,
            err::ETYPE_NOSUPP,
            err::PADATA_TYPE_NOSUPP,
            err::PREAUTH_FAILED,
            err::PREAUTH_REQUIRED,
            err::BAD_INTEGRITY,
            err::TKT_EXPIRED,
            err::TKT_NYV,
            err::REPEAT,
            err::NOT_US,
            err::BADMATCH,
            err::SKEW,
            err::MSG_TYPE,
            err::MODIFIED,
            err::INAPP_CKSUM,
            err::RESPONSE_TOO_BIG,
            err::GENERIC,
            err::FIELD_TOOLONG,
            err::WRONG_REALM,
        ];
        for code in sent {
            let name = ErrorCode::new(Family::Kerberos, code).name();
            assert!(name.is_some(), "{code} has no name");
        }
        assert_eq!(
            ErrorCode::new(Family::Kerberos, err::BADOPTION).name(),
            Some("KDC_ERR_BADOPTION")
        );
    }

    #[test]
    fn flags_read_the_first_32_bits_and_letters_follow_klist() {
        let f = flags::FORWARDABLE | flags::INITIAL | flags::PRE_AUTHENT | flags::OK_AS_DELEGATE;
        assert_eq!(flags_of(&flags_asn1(f)), f);
        assert_eq!(flags::letters(f), "FIAO");
        let short = BitStringAsn1::from(picky_asn1::bit_string::BitString::with_bytes(vec![0x40]));
        assert_eq!(flags_of(&short), flags::FORWARDABLE);
    }
}
