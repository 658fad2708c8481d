//! Modified UTF-7 (RFC 3501 5.1.3), the encoding of mailbox names outside printable
//! US-ASCII.

/// RFC 3501 5.1.3: printable US-ASCII stands for itself, `&-` is `&`, and `&...-` holds
/// modified BASE64 (`,` for `/`, no padding) of UTF-16 that must not encode printable
/// US-ASCII. Anything else (8-bit bytes, controls, broken shifts) is invalid.
pub fn valid_modified_utf7(name: &str) -> bool {
    let bytes = name.as_bytes();
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        if c != b'&' {
            if !(0x20..=0x7e).contains(&c) {
                return false;
            }
            i += 1;
            continue;
        }
        let rest = bytes.get(i + 1..).unwrap_or_default();
        let Some(len) = rest.iter().position(|&b| b == b'-') else {
            return false;
        };
        let encoded = rest.get(..len).unwrap_or_default();
        i += len + 2;
        if encoded.is_empty() {
            continue; // "&-" is "&"
        }
        let mut units = Vec::with_capacity(encoded.len() * 6 / 16);
        let (mut acc, mut nbits) = (0u32, 0u32);
        for &b in encoded {
            let v = match b {
                b'A'..=b'Z' => b - b'A',
                b'a'..=b'z' => b - b'a' + 26,
                b'0'..=b'9' => b - b'0' + 52,
                b'+' => 62,
                b',' => 63,
                _ => return false,
            };
            acc = (acc << 6) | u32::from(v);
            nbits += 6;
            if nbits >= 16 {
                nbits -= 16;
                units.push((acc >> nbits) as u16);
                acc &= (1 << nbits) - 1;
            }
        }
        // Leftover bits: fewer than a sextet, all zero.
        if nbits >= 6 || acc != 0 {
            return false;
        }
        for ch in char::decode_utf16(units) {
            match ch {
                Ok(ch) if !(' '..='~').contains(&ch) => {}
                _ => return false,
            }
        }
    }
    true
}
