//! [MS-OXCRPC] extended buffer targets ([`harness_wire::oxcrpc`]):
//!
//! * `oxcrpc_lz77_decompress`: octets 0-1 are the declared size (SizeActual), the rest
//!   a compressed stream. Never a panic; a success gives exactly the declared size (the
//!   output is allocated at that size and never grows), the same stream with one more
//!   octet declared falls short, and our encoder's stream of that output reads back.
//! * `oxcrpc_ext_roundtrip`: octet 0 picks the options (compress, XorMagic, one header
//!   per chunk through `encode_extended_payloads`), octets 1-2 the chunk size (1 to
//!   4096), the rest is the payload: encoded, it decodes to itself under limits of
//!   exactly its size. The whole input is also read as a received rgbOut buffer.

use harness_wire::oxcrpc::{
    decode_extended_buffer, decode_extended_payloads, encode_extended_buffer,
    encode_extended_payloads, lz77, DecodeLimits, EncodeOptions, Lz77Error,
};

/// Fuzz target `oxcrpc_lz77_decompress`.
pub fn oxcrpc_lz77_decompress(data: &[u8]) {
    let [a, b, stream @ ..] = data else {
        return;
    };
    let declared = usize::from(u16::from_le_bytes([*a, *b]));
    let Ok(out) = lz77::decompress(stream, declared) else {
        return;
    };
    assert_eq!(out.len(), declared);
    assert_eq!(
        lz77::decompress(stream, declared + 1),
        Err(Lz77Error::ShorterThanDeclared {
            produced: declared,
            declared: declared + 1
        })
    );
    let again = lz77::compress(&out);
    assert_eq!(lz77::decompress(&again, declared), Ok(out));
}

/// Fuzz target `oxcrpc_ext_roundtrip`.
pub fn oxcrpc_ext_roundtrip(data: &[u8]) {
    if let Ok(out) = decode_extended_buffer(data, DecodeLimits::RGB_OUT) {
        assert!(out.len() <= DecodeLimits::RGB_OUT.max_output);
    }
    let [choice, c0, c1, payload @ ..] = data else {
        return;
    };
    let options = EncodeOptions {
        compress: choice & 1 != 0,
        xor: choice & 2 != 0,
        max_chunk: 1 + usize::from(u16::from_le_bytes([*c0, *c1]) % 4096),
    };
    let limits = DecodeLimits {
        max_output: payload.len(),
        max_payload: options.max_chunk,
    };
    if choice & 4 == 0 {
        let buffer = encode_extended_buffer(payload, options);
        assert_eq!(
            decode_extended_buffer(&buffer, limits).as_deref(),
            Ok(payload),
            "{options:?}"
        );
    } else {
        let pieces: Vec<&[u8]> = payload.chunks(options.max_chunk).collect();
        let buffer = encode_extended_payloads(&pieces, options).expect("chunks under 4097");
        let decoded = decode_extended_payloads(&buffer, limits).expect("own encoding");
        let expected: Vec<&[u8]> = if pieces.is_empty() { vec![&[]] } else { pieces };
        assert_eq!(decoded, expected, "{options:?}");
    }
}
