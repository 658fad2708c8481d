//! Extended buffers end to end, hostile headers, and vectors from an independent
//! implementation of the same LZ77 (testdata/README.md).

use super::ext::{DecodeLimits, EncodeOptions, ExtError, RpcHeaderExt};
use super::lz77::{self, Lz77Error};
use super::*;
use crate::codec::Codec;

/// Deterministic inputs, by name; the generator is simple enough to restate outside
/// this crate (testdata/README.md does, for the independent vectors).
pub(super) fn samples() -> Vec<(&'static str, Vec<u8>)> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut random = |n: usize| xorshift(&mut state, n);
    let text =
        b"Subject: quarterly report\r\nFrom: alice@example.org\r\nTo: bob@example.org\r\n\r\n\
                 The report is attached. The numbers for the quarter are in the second table; \
                 the first table repeats last quarter's numbers for comparison.\r\n"
            .repeat(12);
    // Runs whose matches take every length form: 3-bit, nibble, octet, u16.
    let mut runs = Vec::new();
    for (i, length) in [9usize, 10, 24, 25, 279, 280, 1000].into_iter().enumerate() {
        runs.push(b'A' + i as u8);
        runs.extend(vec![b'a' + i as u8; length + 1]);
    }
    let mut out = vec![
        ("empty", Vec::new()),
        ("one", b"x".to_vec()),
        ("zeros-300", vec![0; 300]),
        ("random-100", random(100)),
        ("text", text),
        ("rop-like", rop_like(4096)),
        ("runs", runs),
    ];
    // A literal then one match of each length at a form's boundary.
    for (name, length) in [
        ("run-3", 3),
        ("run-9", 9),
        ("run-10", 10),
        ("run-24", 24),
        ("run-25", 25),
        ("run-279", 279),
        ("run-280", 280),
    ] {
        out.push((name, vec![7; length + 1]));
    }
    out
}

/// A ROP response buffer shape: a RopSize, then rows of (property tag, value) with many
/// zero octets and repeated tags, then a handle table.
pub(super) fn rop_like(len: usize) -> Vec<u8> {
    let tags: [u32; 6] = [
        0x0037_001F,
        0x0E07_0003,
        0x0E08_0003,
        0x3001_001F,
        0x0FFF_0102,
        0x6748_0014,
    ];
    let mut out = vec![0u8, 0];
    let mut row = 0u32;
    while out.len() < len {
        out.push(0); // the row's flag
        for (i, tag) in tags.iter().enumerate() {
            out.extend_from_slice(&tag.to_le_bytes());
            match tag & 0xFFFF {
                0x001F => out.extend("Inbox\0".encode_utf16().flat_map(u16::to_le_bytes)),
                0x0003 => out.extend_from_slice(&(row * 7 + i as u32).to_le_bytes()),
                0x0014 => out.extend_from_slice(&u64::from(row + 0x1000).to_le_bytes()),
                _ => {
                    out.extend_from_slice(&[16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
                }
            }
        }
        row += 1;
    }
    out.truncate(len.saturating_sub(8));
    out.extend_from_slice(&[0xFF; 8]); // the handle table
    let rop_size = u16::try_from(out.len().min(usize::from(u16::MAX))).unwrap_or(u16::MAX);
    out[..2].copy_from_slice(&rop_size.to_le_bytes());
    out
}

/// `n` pseudo-random octets (xorshift64, octet 3 of each state).
pub(super) fn xorshift(state: &mut u64, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            (*state >> 24) as u8
        })
        .collect()
}

pub(super) fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

const ROOMY: DecodeLimits = DecodeLimits {
    max_output: 1 << 20,
    max_payload: 0xFFFF,
};

fn all_options(max_chunk: usize) -> Vec<EncodeOptions> {
    let mut out = Vec::new();
    for compress in [false, true] {
        for xor in [false, true] {
            out.push(EncodeOptions {
                compress,
                xor,
                max_chunk,
            });
        }
    }
    out
}

/// The headers of an encoded buffer, with the payload lengths checked against Size.
fn headers(buffer: &[u8]) -> Vec<RpcHeaderExt> {
    let mut r = crate::codec::Reader::new(buffer);
    let mut out = Vec::new();
    while !r.is_empty() {
        let h = RpcHeaderExt::decode(&mut r).unwrap();
        r.skip(usize::from(h.size)).unwrap();
        out.push(h);
    }
    out
}

#[test]
fn round_trips_every_option_and_chunk_size() {
    let mut inputs: Vec<Vec<u8>> = samples().into_iter().map(|(_, v)| v).collect();
    inputs.push(vec![0; 64 * 1024]);
    inputs.push(rop_like(100_000));
    for input in &inputs {
        for max_chunk in [1, 7, 4096, MAX_PAYLOAD, 0xFFFF, 0x10000] {
            if max_chunk < 64 && input.len() > 2000 {
                continue; // thousands of headers prove nothing more
            }
            for options in all_options(max_chunk) {
                let buffer = encode_extended_buffer(input, options);
                let decoded = decode_extended_buffer(&buffer, ROOMY);
                assert_eq!(decoded.as_ref(), Ok(input), "{options:?}");
                let hs = headers(&buffer);
                let chunk = max_chunk.min(0xFFFF);
                assert_eq!(hs.len(), input.len().div_ceil(chunk).max(1));
                for (i, h) in hs.iter().enumerate() {
                    assert_eq!(h.version, 0);
                    assert_eq!(h.has(FLAG_LAST), i + 1 == hs.len());
                    assert_eq!(h.has(FLAG_XOR_MAGIC), options.xor);
                    assert!(usize::from(h.size_actual) <= chunk);
                    if h.has(FLAG_COMPRESSED) {
                        assert!(options.compress && h.size < h.size_actual);
                    } else {
                        assert_eq!(h.size, h.size_actual);
                    }
                }
            }
        }
    }
}

#[test]
fn compresses_when_it_pays_and_only_then() {
    let zeros = encode_extended_buffer(&[0; 0x8000], EncodeOptions::default());
    let hs = headers(&zeros);
    assert_eq!(hs.len(), 1);
    assert_eq!(hs[0].flags, FLAG_COMPRESSED | FLAG_LAST);
    assert_eq!(hs[0].size_actual, 0x8000);
    assert!(hs[0].size < 16, "{}", hs[0].size);

    let rop = rop_like(0x8000);
    let hs = headers(&encode_extended_buffer(&rop, EncodeOptions::default()));
    assert!(
        usize::from(hs[0].size) < rop.len() / 3,
        "ROP-like buffer compressed to {} of {}",
        hs[0].size,
        rop.len()
    );

    // Random octets and one octet do not shrink: sent as they are.
    for input in [samples()[3].1.clone(), b"x".to_vec(), Vec::new()] {
        let buffer = encode_extended_buffer(&input, EncodeOptions::default());
        let mut expected = RpcHeaderExt {
            version: 0,
            flags: FLAG_LAST,
            size: input.len() as u16,
            size_actual: input.len() as u16,
        }
        .to_bytes();
        expected.extend_from_slice(&input);
        assert_eq!(buffer, expected);
    }
}

#[test]
fn xor_magic_is_every_octet_xor_a5() {
    let buffer = encode_extended_buffer(
        b"\x00\xA5\xFFab",
        EncodeOptions {
            compress: false,
            xor: true,
            max_chunk: MAX_PAYLOAD,
        },
    );
    assert_eq!(buffer, hex("0000 0600 0500 0500 a5 00 5a c4 c7"));
    // Both flags: compressed first, then obfuscated ([MS-OXCRPC] 3.1.4.2.1.1.1).
    let both = EncodeOptions {
        compress: true,
        xor: true,
        max_chunk: MAX_PAYLOAD,
    };
    let buffer = encode_extended_buffer(&b"abc".repeat(100), both);
    let mut body = hex("ffffff1f 616263 1700 0f ff 2601");
    xor_magic(&mut body);
    let mut expected = hex("0000 0700 0d00 2c01");
    expected.extend(body);
    assert_eq!(buffer, expected);
}

#[test]
fn payloads_stay_separate() {
    let a = rop_like(300);
    let b = vec![0u8; 5000];
    let buffer = encode_extended_payloads(&[&a, &b, &[]], EncodeOptions::default()).unwrap();
    assert_eq!(
        decode_extended_payloads(&buffer, ROOMY),
        Ok(vec![a.clone(), b.clone(), Vec::new()])
    );
    assert_eq!(
        encode_extended_payloads(&[&a, &vec![0; 0x10000]], EncodeOptions::default()),
        Err(PayloadTooLong {
            index: 1,
            len: 0x10000
        })
    );
    let empty = encode_extended_payloads(&[], EncodeOptions::default()).unwrap();
    assert_eq!(empty, hex("0000 0400 0000 0000"));
}

/// A header then a payload, from hex.
fn buffer(parts: &[&str]) -> Vec<u8> {
    parts.iter().flat_map(|p| hex(p)).collect()
}

#[test]
fn refuses_hostile_buffers() {
    use ExtError::*;
    let lz_zeros_10 = "ffffff7f 00 0600"; // 1 literal + a match of 9: 10 zeros, 7 octets
    let cases: Vec<(Vec<u8>, ExtError)> = vec![
        (Vec::new(), Truncated { at: 0, needed: 8 }),
        (buffer(&["0000 0400 0000"]), Truncated { at: 0, needed: 2 }),
        // Size says 4, 3 octets follow.
        (
            buffer(&["0000 0400 0400 0400", "616263"]),
            Truncated { at: 0, needed: 1 },
        ),
        // No Last: the buffer ends after the first payload.
        (
            buffer(&["0000 0000 0100 0100", "61"]),
            MissingLast { at: 9 },
        ),
        // Octets after the Last payload.
        (
            buffer(&["0000 0400 0100 0100", "61", "00"]),
            TrailingOctets { at: 9, count: 1 },
        ),
        (
            buffer(&["0100 0400 0000 0000"]),
            Version { at: 0, version: 1 },
        ),
        (
            buffer(&["0000 0c00 0000 0000"]),
            UnknownFlags {
                at: 0,
                flags: 0x000C,
            },
        ),
        (
            buffer(&["0000 0480 0000 0000"]),
            UnknownFlags {
                at: 0,
                flags: 0x8004,
            },
        ),
        // Uncompressed with Size != SizeActual.
        (
            buffer(&["0000 0400 0100 0200", "61"]),
            SizeMismatch {
                at: 0,
                size: 1,
                size_actual: 2,
            },
        ),
        // Compressed, Size not below SizeActual.
        (
            buffer(&["0000 0500 0700 0700", lz_zeros_10]),
            CompressedNotSmaller {
                at: 0,
                size: 7,
                size_actual: 7,
            },
        ),
        // SizeActual lies: the stream gives 10 octets, 11 and 9 declared.
        (
            buffer(&["0000 0500 0700 0b00", lz_zeros_10]),
            Lz77 {
                at: 0,
                source: Lz77Error::ShorterThanDeclared {
                    produced: 10,
                    declared: 11,
                },
            },
        ),
        (
            buffer(&["0000 0500 0700 0900", lz_zeros_10]),
            Lz77 {
                at: 0,
                source: Lz77Error::ExpandsPastDeclared { at: 5, declared: 9 },
            },
        ),
        // XorMagic set but the payload was not obfuscated: the indicator reads 0xda5a5a5a,
        // a match first, whose metadata 0xa3a5 reaches 5237 back.
        (
            buffer(&["0000 0700 0700 0a00", lz_zeros_10]),
            Lz77 {
                at: 0,
                source: Lz77Error::OffsetBeforeStart {
                    at: 4,
                    offset: 5237,
                    produced: 0,
                },
            },
        ),
    ];
    for (bytes, error) in cases {
        assert_eq!(
            decode_extended_buffer(&bytes, ROOMY).as_ref(),
            Err(&error),
            "{bytes:02x?}"
        );
    }
    // The same stream, well declared, is read.
    let good = buffer(&["0000 0500 0700 0a00", lz_zeros_10]);
    assert_eq!(decode_extended_buffer(&good, ROOMY), Ok(vec![0; 10]));
}

#[test]
fn limits_are_checked_before_anything_is_allocated() {
    // A 7-octet payload claiming 65535 octets: refused on the header by the payload
    // limit, never decompressed.
    let claim = buffer(&["0000 0500 0700 ffff", "ffffff7f 00 0600"]);
    assert_eq!(
        decode_extended_buffer(&claim, DecodeLimits::RGB_OUT),
        Err(ExtError::PayloadTooLarge {
            at: 0,
            size_actual: 0xFFFF,
            limit: MAX_PAYLOAD
        })
    );
    // Each payload within its limit, the total over: refused at the header that
    // crosses it.
    let piece = vec![0u8; 0x1000];
    let pieces: Vec<&[u8]> = vec![&piece; 2];
    let two = encode_extended_payloads(&pieces, EncodeOptions::default()).unwrap();
    let limits = DecodeLimits {
        max_output: 0x1FFF,
        max_payload: 0x1000,
    };
    let second_at = 8 + usize::from(headers(&two)[0].size);
    assert_eq!(
        decode_extended_buffer(&two, limits),
        Err(ExtError::OutputTooLarge {
            at: second_at,
            total: 0x2000,
            limit: 0x1FFF
        })
    );
    assert_eq!(
        decode_extended_buffer(&two, DecodeLimits::RGB_AUX_OUT),
        Err(ExtError::OutputTooLarge {
            at: second_at,
            total: 0x2000,
            limit: 0x1008
        })
    );
    // rgbOut's limit: eight 32 KB payloads fit, a ninth does not.
    let full = vec![1u8; 0x8000];
    let nine: Vec<&[u8]> = vec![&full; 9];
    let out = encode_extended_payloads(&nine[..8], EncodeOptions::default()).unwrap();
    assert_eq!(
        decode_extended_buffer(&out, DecodeLimits::RGB_OUT).map(|v| v.len()),
        Ok(0x40000)
    );
    let over = encode_extended_payloads(&nine, EncodeOptions::default()).unwrap();
    assert!(matches!(
        decode_extended_buffer(&over, DecodeLimits::RGB_OUT),
        Err(ExtError::OutputTooLarge { total: 0x48000, .. })
    ));
}

/// Streams written by an independent Plain LZ77 compressor (testdata/README.md) decode
/// to the samples.
#[test]
fn reads_an_independent_compressor() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/oxcrpc/testdata");
    let mut read = 0;
    for (name, input) in samples() {
        let path = dir.join(format!("{name}.lzxpress"));
        let Ok(stream) = std::fs::read(&path) else {
            continue;
        };
        assert_eq!(
            lz77::decompress(&stream, input.len()).as_ref(),
            Ok(&input),
            "{}",
            path.display()
        );
        read += 1;
    }
    assert!(read >= 5, "only {read} vectors under {}", dir.display());
}

/// A rough number, not a benchmark: `cargo test -p harness-wire --release --lib
/// oxcrpc::tests::throughput -- --ignored --nocapture`.
#[test]
#[ignore = "timing; run by hand in release"]
fn throughput_on_a_rop_like_buffer() {
    let input = rop_like(256 * 1024);
    let rounds = 20;
    let start = std::time::Instant::now();
    let mut packed = Vec::new();
    for _ in 0..rounds {
        packed = lz77::compress(&input);
    }
    let compress = start.elapsed();
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        assert_eq!(
            lz77::decompress(&packed, input.len()).map(|o| o.len()),
            Ok(input.len())
        );
    }
    let decompress = start.elapsed();
    let mib = (input.len() * rounds) as f64 / (1024.0 * 1024.0);
    println!(
        "256 KiB ROP-like: {} octets compressed; compress {:.0} MiB/s, decompress {:.0} MiB/s",
        packed.len(),
        mib / compress.as_secs_f64(),
        mib / decompress.as_secs_f64()
    );
}
