//! SPNEGO (RFC 4178) tokens as HTTP Negotiate (RFC 4559) carries them: the initiator's
//! NegTokenInit inside the RFC 2743 framing, and the acceptor's NegTokenResp. Written by
//! hand on the DER reader: four optional fields each, and the framing picky-krb has panics
//! on a malformed token. Facts: ../shared/PROTOCOLS.md section 11.

use super::der::{self, Tlv};
use super::gss::der_len;

/// 1.3.6.1.5.5.2 as a DER OBJECT IDENTIFIER.
pub const SPNEGO_OID: [u8; 8] = [0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x02];
/// NTLMSSP, 1.3.6.1.4.1.311.2.2.10.
pub const NTLMSSP_OID: [u8; 12] = [
    0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x0a,
];

/// negState (RFC 4178 4.2.2).
pub const ACCEPT_COMPLETED: u8 = 0;
pub const ACCEPT_INCOMPLETE: u8 = 1;
pub const REJECT: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpnegoError {
    #[error("not an SPNEGO token: {0}")]
    Malformed(&'static str),
}

fn bad(why: &'static str) -> SpnegoError {
    SpnegoError::Malformed(why)
}

/// The initiator's first token: the mechanisms it offers (DER OIDs, tag included, in its
/// preference order) and the optimistic token of the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegTokenInit {
    pub mech_types: Vec<Vec<u8>>,
    pub mech_token: Option<Vec<u8>>,
}

/// The acceptor's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegTokenResp {
    pub state: Option<u8>,
    pub supported_mech: Option<Vec<u8>>,
    pub response_token: Option<Vec<u8>>,
}

fn element(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_len(content.len()));
    out.extend_from_slice(content);
    out
}

/// The context-tagged fields `[n]` of the SEQUENCE at `seq`, as (n, value TLV).
fn fields(token: &[u8], seq: Tlv) -> Result<Vec<(u8, Tlv)>, SpnegoError> {
    if seq.tag != 0x30 {
        return Err(bad("expected a SEQUENCE"));
    }
    let mut out = Vec::new();
    let mut at = seq.value;
    while at < seq.end {
        let field = der::tlv(&token[..seq.end], at).ok_or_else(|| bad("field length"))?;
        if field.tag & 0xE0 != 0xA0 {
            return Err(bad("expected a context tag"));
        }
        let inner = der::tlv(&token[..field.end], field.value).ok_or_else(|| bad("field value"))?;
        out.push((field.tag & 0x1F, inner));
        at = field.end;
    }
    Ok(out)
}

fn octets(token: &[u8], t: Tlv) -> Result<Vec<u8>, SpnegoError> {
    if t.tag != 0x04 {
        return Err(bad("expected an OCTET STRING"));
    }
    Ok(token[t.value..t.end].to_vec())
}

pub fn write_init(init: &NegTokenInit) -> Vec<u8> {
    let mechs: Vec<u8> = init.mech_types.concat();
    let mut seq = element(0xA0, &element(0x30, &mechs));
    if let Some(token) = &init.mech_token {
        seq.extend(element(0xA2, &element(0x04, token)));
    }
    let mut inner = SPNEGO_OID.to_vec();
    inner.extend(element(0xA0, &element(0x30, &seq)));
    element(0x60, &inner)
}

pub fn read_init(token: &[u8]) -> Result<NegTokenInit, SpnegoError> {
    let outer = der::tlv(token, 0).ok_or_else(|| bad("length"))?;
    if outer.tag != 0x60 || outer.end != token.len() {
        return Err(bad("expected an application token"));
    }
    let oid = der::tlv(token, outer.value).ok_or_else(|| bad("mechanism"))?;
    if token.get(oid.start..oid.end) != Some(&SPNEGO_OID[..]) {
        return Err(bad("not the SPNEGO mechanism"));
    }
    let choice = der::tlv(token, oid.end).ok_or_else(|| bad("negotiation token"))?;
    if choice.tag != 0xA0 || choice.end != outer.end {
        return Err(bad("expected negTokenInit"));
    }
    let seq = der::tlv(&token[..choice.end], choice.value).ok_or_else(|| bad("negTokenInit"))?;
    let mut init = NegTokenInit {
        mech_types: Vec::new(),
        mech_token: None,
    };
    for (n, value) in fields(token, seq)? {
        match n {
            0 => {
                if value.tag != 0x30 {
                    return Err(bad("mechTypes"));
                }
                let mut at = value.value;
                while at < value.end {
                    let oid = der::tlv(&token[..value.end], at).ok_or_else(|| bad("mechType"))?;
                    if oid.tag != 0x06 {
                        return Err(bad("mechType is not an OID"));
                    }
                    init.mech_types.push(token[oid.start..oid.end].to_vec());
                    at = oid.end;
                }
            }
            2 => init.mech_token = Some(octets(token, value)?),
            // reqFlags [1], mechListMIC [3] (and MS negHints): not used here.
            _ => {}
        }
    }
    Ok(init)
}

pub fn write_resp(resp: &NegTokenResp) -> Vec<u8> {
    let mut seq = Vec::new();
    if let Some(state) = resp.state {
        seq.extend(element(0xA0, &[0x0A, 0x01, state]));
    }
    if let Some(mech) = &resp.supported_mech {
        seq.extend(element(0xA1, mech));
    }
    if let Some(token) = &resp.response_token {
        seq.extend(element(0xA2, &element(0x04, token)));
    }
    element(0xA1, &element(0x30, &seq))
}

pub fn read_resp(token: &[u8]) -> Result<NegTokenResp, SpnegoError> {
    let choice = der::tlv(token, 0).ok_or_else(|| bad("length"))?;
    if choice.tag != 0xA1 || choice.end != token.len() {
        return Err(bad("expected negTokenResp"));
    }
    let seq = der::tlv(token, choice.value).ok_or_else(|| bad("negTokenResp"))?;
    let mut resp = NegTokenResp {
        state: None,
        supported_mech: None,
        response_token: None,
    };
    for (n, value) in fields(token, seq)? {
        match n {
            0 if value.tag == 0x0A && value.end == value.value + 1 => {
                resp.state = Some(token[value.value])
            }
            0 => return Err(bad("negState")),
            1 if value.tag == 0x06 => {
                resp.supported_mech = Some(token[value.start..value.end].to_vec())
            }
            1 => return Err(bad("supportedMech")),
            2 => resp.response_token = Some(octets(token, value)?),
            _ => {}
        }
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kerberos::gss::KRB5_OID;

    #[test]
    fn init_and_resp_round_trip_and_match_the_wire_layout() {
        let init = NegTokenInit {
            mech_types: vec![KRB5_OID.to_vec()],
            mech_token: Some(vec![1, 2, 3]),
        };
        let bytes = write_init(&init);
        // 60 L 06 06 2b0601050502 a0 L 30 L a0 L 30 L 06 09 <krb5> a2 L 04 03 010203
        assert_eq!(&bytes[2..10], &SPNEGO_OID);
        assert_eq!(read_init(&bytes), Ok(init));
        let resp = NegTokenResp {
            state: Some(ACCEPT_COMPLETED),
            supported_mech: Some(KRB5_OID.to_vec()),
            response_token: Some(vec![9; 200]),
        };
        let bytes = write_resp(&resp);
        // a1 L 30 L a0 03 0a 01 00 (accept-completed) a1 0b <krb5 OID> a2 L 04 L token
        assert_eq!(
            &bytes[..11],
            &[0xA1, 0x81, 0xE3, 0x30, 0x81, 0xE0, 0xA0, 0x03, 0x0A, 0x01, 0x00]
        );
        assert_eq!(&bytes[11..13], &[0xA1, 0x0B]);
        assert_eq!(read_resp(&bytes), Ok(resp));
        let reject = NegTokenResp {
            state: Some(REJECT),
            supported_mech: None,
            response_token: None,
        };
        assert_eq!(
            write_resp(&reject),
            [0xA1, 0x07, 0x30, 0x05, 0xA0, 0x03, 0x0A, 0x01, 0x02]
        );
    }

    #[test]
    fn malformed_tokens_get_errors() {
        assert!(read_init(b"").is_err());
        assert!(read_init(&[0x60, 0x02, 0x06, 0x00]).is_err());
        let mut wrong_mech = write_init(&NegTokenInit {
            mech_types: vec![],
            mech_token: None,
        });
        wrong_mech[9] = 0x03;
        assert!(read_init(&wrong_mech).is_err());
        let good = write_init(&NegTokenInit {
            mech_types: vec![KRB5_OID.to_vec()],
            mech_token: Some(vec![7]),
        });
        for cut in 1..good.len() {
            assert!(read_init(&good[..cut]).is_err(), "cut at {cut}");
        }
        assert!(read_resp(&[0xA1, 0x05, 0x30, 0x03, 0xA0, 0x01, 0x00]).is_err());
        assert!(read_resp(&[0xA0, 0x00]).is_err());
    }
}
