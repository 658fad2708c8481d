//! Just enough DER reading to find bytes as they were sent: the TGS-REQ's checksum covers
//! the KDC-REQ-BODY exactly as the client encoded it (RFC 4120 5.4.1), and a decode and
//! re-encode need not give the same octets back.

/// One TLV: its tag octet, and where its value and the whole element lie in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tlv {
    pub tag: u8,
    pub start: usize,
    pub value: usize,
    pub end: usize,
}

/// Reads the element at `at`; `None` on a truncated or unsupported (multi-byte tag,
/// indefinite or over-long length) header, or a length past the input's end.
pub(crate) fn tlv(input: &[u8], at: usize) -> Option<Tlv> {
    let tag = *input.get(at)?;
    if tag & 0x1F == 0x1F {
        return None;
    }
    let first = *input.get(at + 1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*input.get(at + 2 + i)?);
        }
        (len, 2 + n)
    };
    let value = at + header;
    let end = value.checked_add(len)?;
    (end <= input.len()).then_some(Tlv {
        tag,
        start: at,
        value,
        end,
    })
}

/// Nesting deeper than this is refused (Kerberos messages nest about a dozen levels).
const MAX_DEPTH: usize = 32;

/// `input` is one DER element whose every constructed element's children fit exactly in
/// it, to `MAX_DEPTH`. picky-asn1-der trusts length octets (an over-long one overflows its
/// arithmetic), so nothing from the network reaches it unless this holds.
///
/// A GeneralizedTime must be a KerberosTime, `YYYYMMDDHHMMSSZ` (RFC 4120 5.2.3): picky
/// reads other lengths (a five-digit year) that it cannot write back.
pub(crate) fn well_formed(input: &[u8]) -> bool {
    fn children(input: &[u8], start: usize, end: usize, depth: usize) -> bool {
        let mut at = start;
        while at < end {
            let Some(t) = tlv(&input[..end], at) else {
                return false;
            };
            if t.tag & 0x20 != 0
                && (depth == MAX_DEPTH || !children(input, t.value, t.end, depth + 1))
            {
                return false;
            }
            // picky reads tag number 24 as a GeneralizedTime in any class.
            if t.tag & 0x3F == GENERALIZED_TIME && !kerberos_time(&input[t.value..t.end]) {
                return false;
            }
            at = t.end;
        }
        true
    }
    match tlv(input, 0) {
        Some(t) if t.end == input.len() => t.tag & 0x20 == 0 || children(input, t.value, t.end, 1),
        _ => false,
    }
}

const GENERALIZED_TIME: u8 = 0x18;

fn kerberos_time(value: &[u8]) -> bool {
    value.len() == 15 && value[14] == b'Z' && value[..14].iter().all(u8::is_ascii_digit)
}

/// Decodes untrusted octets with picky-asn1-der once they are `well_formed`, and only if
/// picky would write the value back as octets that read as the same value: picky reads
/// some elements it cannot write back. A primitive of another tag number is read as a
/// GeneralizedTime, so a [21] around 15 octets that are no time comes back as tag 24 and
/// does not read again (krb_message_decode's fourth finding), and four 0xFF octets read
/// as a year come back as another year (its fifth).
pub(crate) fn decode<T>(input: &[u8]) -> Option<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq,
{
    if !well_formed(input) {
        return None;
    }
    let value: T = picky_asn1_der::from_bytes(input).ok()?;
    let again = picky_asn1_der::to_vec(&value).ok()?;
    // DER is canonical: what a correct encoder sent comes back octet for octet, and the
    // second read is needed only when it does not.
    if again == input {
        return Some(value);
    }
    if !well_formed(&again) {
        return None;
    }
    let back: T = picky_asn1_der::from_bytes(&again).ok()?;
    (back == value).then_some(value)
}

/// The KDC-REQ-BODY of a KDC-REQ (`[APPLICATION n] SEQUENCE { ..., [4] body }`), as sent.
pub(crate) fn kdc_req_body(message: &[u8]) -> Option<&[u8]> {
    let app = tlv(message, 0)?;
    let seq = tlv(message, app.value)?;
    if seq.tag != 0x30 {
        return None;
    }
    let mut at = seq.value;
    while at < seq.end {
        let field = tlv(message, at)?;
        if field.tag == 0xA4 {
            let body = tlv(message, field.value)?;
            return message.get(body.start..body.end);
        }
        at = field.end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// krb_message_decode's fourth finding: an AS-REQ whose `till` holds a context-class
    /// primitive [21] around 15 octets that are no time. picky reads it as a
    /// GeneralizedTime and writes it back as tag 24, which does not read again; `decode`
    /// refuses it.
    #[test]
    fn a_message_picky_cannot_write_back_is_refused() {
        // The fifth finding: a year of four 0xFF octets comes back as another year.
        let year =
            include_bytes!("../../../../corpus/fuzz/krb_message_decode/crash-64406c5cfc278548");
        assert!(well_formed(year));
        assert_eq!(decode::<picky_krb::messages::AsReq>(year), None);
        let finding =
            include_bytes!("../../../../corpus/fuzz/krb_message_decode/crash-e9efd0f47c5cdb60");
        assert!(well_formed(finding));
        let picky: Option<picky_krb::messages::AsReq> = picky_asn1_der::from_bytes(finding).ok();
        assert!(picky.is_some(), "picky alone reads it");
        assert_eq!(decode::<picky_krb::messages::AsReq>(finding), None);
    }

    #[test]
    fn finds_the_body_as_sent_and_refuses_lies() {
        // [APPLICATION 12] SEQUENCE { [1] INTEGER 5, [4] SEQUENCE { 01 02 } }
        let msg = [
            0x6C, 0x0B, 0x30, 0x09, 0xA1, 0x03, 0x02, 0x01, 0x05, 0xA4, 0x02, 0x30, 0x00,
        ];
        assert_eq!(kdc_req_body(&msg), Some(&[0x30, 0x00][..]));
        let mut long = msg;
        long[10] = 0x05; // [4] claims more than there is
        assert_eq!(kdc_req_body(&long), None);
        assert_eq!(tlv(&[0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF], 0), None);
        assert_eq!(tlv(&[0x30, 0x80], 0), None);
        assert_eq!(tlv(&[0x30], 0), None);
        let two_byte = [0x04, 0x81, 0x02, 0xAA, 0xBB];
        assert!(well_formed(&msg));
        assert!(!well_formed(&long));
        assert!(!well_formed(&[
            0x6c, 0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
        ]));
        assert!(
            !well_formed(&[msg.as_slice(), &[0]].concat()),
            "trailing octets"
        );
        let mut deep = Vec::new();
        for _ in 0..40 {
            deep = [vec![0x30, deep.len() as u8], deep].concat();
        }
        assert!(!well_formed(&deep), "too deep");
        let time = |t: &[u8]| [&[0x30, t.len() as u8 + 2, 0x18, t.len() as u8][..], t].concat();
        assert!(well_formed(&time(b"20240101000000Z")));
        assert!(!well_formed(&time(b"166520102000000Z")), "five-digit year");
        assert!(!well_formed(&time(b"20240101000000.5Z")), "fractions");
        assert!(!well_formed(&time(b"2024010100000Z0")));
        // The same in the application class (0x58), which picky reads as a time too.
        let mut app = time(b"\xcf\xcf\xcd\xcb0102000000Z");
        app[2] = 0x58;
        assert!(!well_formed(&app));
        assert_eq!(
            tlv(&two_byte, 0),
            Some(Tlv {
                tag: 4,
                start: 0,
                value: 3,
                end: 5
            })
        );
    }
}
