//! The [MS-OXCRPC] 3.1.4.1.1.2 compression: LZ77 with the DIRECT2 encoding, the same
//! octets as [MS-XCA] 2.3 / 2.4 "Plain LZ77" (and [MS-DRSR] 4.1.10.5.21).
//!
//! A stream is a run of items, each announced by one bit of a 32-bit little-endian
//! indicator word read from its most significant bit down (a word precedes the 32 items
//! it announces). Bit 0: one literal octet. Bit 1: 2-octet little-endian metadata, the
//! 13 high bits `offset - 1` (offsets 1 to 8192 back into the output), the 3 low bits
//! `length - 3` when below 7. With 7 the length goes on ([MS-OXCRPC] 3.1.4.1.1.2.2.4):
//!
//! | match length      | after the 2 metadata octets                                 |
//! |-------------------|-------------------------------------------------------------|
//! | 3 to 9            | nothing                                                     |
//! | 10 to 24          | a nibble: `length - 10`                                     |
//! | 25 to 279         | nibble 15, then one octet `length - 25`                     |
//! | 280 to 65538      | nibble 15, octet 255, then u16 `length - 3`                 |
//! | 65539 and above   | nibble 15, octet 255, u16 0, then u32 `length - 3` ([MS-XCA]) |
//!
//! The nibbles are shared: the first long match appends an octet and uses its low
//! nibble, the next long match uses that octet's high nibble, the third appends a new
//! octet, and so on. After the last item the encoder sets the next indicator bit to 1
//! (the end mark, in a word of its own, 0xFFFFFFFF, when the last word is full), and pads
//! the rest of that word with 1s.
//!
//! The u32 form (an [MS-XCA] extension) never occurs inside one [MS-OXCRPC] payload,
//! whose SizeActual is a u16; it is read anyway, and a u16 of 0 meant nothing before it
//! (below the 22 a u16 length needs), so reading it costs no valid DIRECT2 stream.

/// The longest back-reference: 13 offset bits.
pub const MAX_OFFSET: usize = 1 << 13;
/// The shortest match the metadata can say.
pub const MIN_MATCH: usize = 3;

/// Why a compressed stream was refused; `at` is the input offset of the item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Lz77Error {
    /// The input ended inside an indicator word or a match's metadata.
    #[error("compressed stream truncated at octet {at}")]
    Truncated { at: usize },
    /// A back-reference reaches before the first output octet.
    #[error("match at octet {at} reaches {offset} back with only {produced} octets out")]
    OffsetBeforeStart {
        at: usize,
        offset: usize,
        produced: usize,
    },
    /// The item would carry the output past the declared size.
    #[error("item at octet {at} expands past the declared {declared} octets")]
    ExpandsPastDeclared { at: usize, declared: usize },
    /// The stream ended with fewer octets out than declared.
    #[error("stream gives {produced} octets, {declared} declared")]
    ShorterThanDeclared { produced: usize, declared: usize },
    /// A u16 or u32 length below the 22 its form starts at ([MS-XCA] 2.4).
    #[error("match at octet {at} has an extended length below its minimum")]
    BadLength { at: usize },
}

/// Reads the input front to back; `at` is the start of the current item.
struct Input<'a> {
    data: &'a [u8],
    pos: usize,
    at: usize,
}

impl Input<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], Lz77Error> {
        let bytes = self
            .data
            .get(self.pos..self.pos + N)
            .ok_or(Lz77Error::Truncated { at: self.at })?;
        self.pos += N;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Lz77Error> {
        Ok(self.take::<1>()?[0])
    }

    fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }
}

/// Decompresses `input` into exactly `declared` octets (the header's SizeActual).
///
/// The output is allocated once, at `declared` (the caller bounds it: the extended
/// buffer checks it against its limits first) and never grows past it: every literal
/// and every match is checked against the room left before it is written, and every
/// back-reference against the octets already out. The stream ends where its octets end
/// at an item boundary (normally on the end mark; a stream that omits the mark is read
/// too, since SizeActual already says where the output ends); then exactly `declared`
/// octets must be out.
pub fn decompress(input: &[u8], declared: usize) -> Result<Vec<u8>, Lz77Error> {
    let mut out = Vec::with_capacity(declared);
    let mut src = Input {
        data: input,
        pos: 0,
        at: 0,
    };
    let mut indicator = 0u32;
    let mut bits_left = 0u32;
    // Where the octet with an unused high nibble is, if one is waiting.
    let mut shared_nibble: Option<usize> = None;
    loop {
        if bits_left == 0 {
            src.at = src.pos;
            if src.at_end() {
                break;
            }
            indicator = u32::from_le_bytes(src.take::<4>()?);
            bits_left = 32;
        }
        bits_left -= 1;
        src.at = src.pos;
        if src.at_end() {
            // The end mark (or the padding of an encoder that pads with 0s).
            break;
        }
        if indicator & (1 << bits_left) == 0 {
            if out.len() == declared {
                return Err(Lz77Error::ExpandsPastDeclared {
                    at: src.at,
                    declared,
                });
            }
            out.push(src.u8()?);
            continue;
        }
        let metadata = u16::from_le_bytes(src.take::<2>()?);
        let offset = usize::from(metadata >> 3) + 1;
        let length = match_length(&mut src, metadata & 7, &mut shared_nibble)?;
        if offset > out.len() {
            return Err(Lz77Error::OffsetBeforeStart {
                at: src.at,
                offset,
                produced: out.len(),
            });
        }
        if length > declared - out.len() {
            return Err(Lz77Error::ExpandsPastDeclared {
                at: src.at,
                declared,
            });
        }
        copy_match(&mut out, offset, length);
    }
    if out.len() != declared {
        return Err(Lz77Error::ShorterThanDeclared {
            produced: out.len(),
            declared,
        });
    }
    Ok(out)
}

/// The match length from the metadata's 3 low bits and what follows them.
fn match_length(
    src: &mut Input<'_>,
    low_bits: u16,
    shared_nibble: &mut Option<usize>,
) -> Result<usize, Lz77Error> {
    if low_bits < 7 {
        return Ok(usize::from(low_bits) + MIN_MATCH);
    }
    let nibble = match shared_nibble.take() {
        Some(at) => src.data.get(at).map_or(0, |b| b >> 4),
        None => {
            *shared_nibble = Some(src.pos);
            src.u8()? & 0x0F
        }
    };
    if nibble < 15 {
        return Ok(usize::from(nibble) + 7 + MIN_MATCH);
    }
    let octet = src.u8()?;
    if octet < 255 {
        return Ok(usize::from(octet) + 15 + 7 + MIN_MATCH);
    }
    let mut long = u32::from(u16::from_le_bytes(src.take::<2>()?));
    if long == 0 {
        long = u32::from_le_bytes(src.take::<4>()?);
    }
    if long < 15 + 7 {
        return Err(Lz77Error::BadLength { at: src.at });
    }
    // The u16 / u32 holds `length - 3`; usize is at least 32 bits wide on every target
    // this builds for, and the sum is then bounded by the declared size check.
    usize::try_from(long)
        .ok()
        .and_then(|l| l.checked_add(MIN_MATCH))
        .ok_or(Lz77Error::BadLength { at: src.at })
}

/// Appends `length` octets copied from `offset` back; the source may overlap what is
/// being written (offset 1 repeats one octet), so it is copied in growing pieces.
fn copy_match(out: &mut Vec<u8>, offset: usize, length: usize) {
    let mut from = out.len() - offset;
    let mut left = length;
    while left > 0 {
        let piece = left.min(out.len() - from);
        out.extend_from_within(from..from + piece);
        from += piece;
        left -= piece;
    }
}

/// Hash-chain parameters: how many earlier positions with the same 3-octet hash are
/// tried, and when a match is long enough to stop looking.
const CHAIN_DEPTH: usize = 24;
const GOOD_ENOUGH: usize = 258;
/// Hash table size: up to 2^15 heads, fewer for a short input (a small payload does
/// not pay for clearing a large table).
const MAX_HASH_BITS: u32 = 15;
const MIN_HASH_BITS: u32 = 6;
const NO_POSITION: u32 = u32::MAX;

/// Compresses `input` (any length; an [MS-OXCRPC] payload is at most 65535 octets). A
/// greedy match finder over hash chains of 3-octet prefixes, window [`MAX_OFFSET`].
/// The output can be longer than the input (4 octets per 32 literals, plus the end
/// mark): the extended buffer then sends the payload uncompressed.
pub fn compress(input: &[u8]) -> Vec<u8> {
    let mut enc = Encoder::new(input.len());
    let mut finder = MatchFinder::new(input.len());
    let mut pos = 0;
    while pos < input.len() {
        let (length, offset) = finder.longest(input, pos);
        if length >= MIN_MATCH {
            enc.push_match(offset, length);
            for p in pos..pos + length {
                finder.insert(input, p);
            }
            pos += length;
        } else {
            enc.push_literal(input[pos]);
            finder.insert(input, pos);
            pos += 1;
        }
    }
    enc.finish()
}

/// Earlier positions by the hash of the 3 octets there (`head`), each linked to the
/// previous position with the same hash (`chain`).
struct MatchFinder {
    head: Vec<u32>,
    chain: Vec<u32>,
    hash_bits: u32,
}

impl MatchFinder {
    fn new(len: usize) -> Self {
        let hash_bits = len
            .next_power_of_two()
            .trailing_zeros()
            .clamp(MIN_HASH_BITS, MAX_HASH_BITS);
        MatchFinder {
            head: vec![NO_POSITION; 1 << hash_bits],
            chain: vec![NO_POSITION; len],
            hash_bits,
        }
    }

    fn hash(&self, input: &[u8], pos: usize) -> Option<usize> {
        let b = input.get(pos..pos + MIN_MATCH)?;
        let v = u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16;
        Some((v.wrapping_mul(0x9E37_79B1) >> (32 - self.hash_bits)) as usize)
    }

    fn insert(&mut self, input: &[u8], pos: usize) {
        if let Some(h) = self.hash(input, pos) {
            self.chain[pos] = self.head[h];
            // Positions fit u32: a payload this large is never compressed in one piece.
            self.head[h] = u32::try_from(pos).unwrap_or(NO_POSITION);
        }
    }

    /// The longest earlier match for `pos` within the window: (length, offset), length
    /// 0 when there is none of at least [`MIN_MATCH`].
    fn longest(&self, input: &[u8], pos: usize) -> (usize, usize) {
        let Some(h) = self.hash(input, pos) else {
            return (0, 0);
        };
        let rest = &input[pos..];
        let mut best = (0, 0);
        let mut candidate = self.head[h];
        for _ in 0..CHAIN_DEPTH {
            if candidate == NO_POSITION {
                break;
            }
            let cand = candidate as usize;
            if pos - cand > MAX_OFFSET {
                break;
            }
            // A candidate that differs at the octet the best match ends on cannot beat it.
            if input.get(cand + best.0) != rest.get(best.0) {
                candidate = self.chain[cand];
                continue;
            }
            let length = common_prefix(&input[cand..], rest);
            if length > best.0 {
                best = (length, pos - cand);
                if length >= GOOD_ENOUGH || length == rest.len() {
                    break;
                }
            }
            candidate = self.chain[cand];
        }
        best
    }
}

/// How many octets `a` and `b` share from the start, 8 at a time while they can.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let limit = a.len().min(b.len());
    let mut n = 0;
    while n + 8 <= limit {
        let x = u64::from_le_bytes(a[n..n + 8].try_into().unwrap_or_default());
        let y = u64::from_le_bytes(b[n..n + 8].try_into().unwrap_or_default());
        let diff = x ^ y;
        if diff != 0 {
            return n + (diff.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    n + a[n..limit]
        .iter()
        .zip(&b[n..limit])
        .take_while(|(x, y)| x == y)
        .count()
}

/// Writes items, indicator words and shared nibbles in the DIRECT2 layout.
struct Encoder {
    out: Vec<u8>,
    /// Where the current indicator word goes, its bits so far, and how many.
    word_at: usize,
    word: u32,
    bits: u32,
    shared_nibble: Option<usize>,
}

impl Encoder {
    fn new(input_len: usize) -> Self {
        let mut out = Vec::with_capacity(input_len / 2 + 8);
        out.extend_from_slice(&[0; 4]);
        Encoder {
            out,
            word_at: 0,
            word: 0,
            bits: 0,
            shared_nibble: None,
        }
    }

    fn push_bit(&mut self, bit: u32) {
        if self.bits == 32 {
            self.flush_word();
            self.word_at = self.out.len();
            self.out.extend_from_slice(&[0; 4]);
            self.word = 0;
            self.bits = 0;
        }
        self.word = self.word << 1 | bit;
        self.bits += 1;
    }

    fn flush_word(&mut self) {
        self.out[self.word_at..self.word_at + 4].copy_from_slice(&self.word.to_le_bytes());
    }

    fn push_literal(&mut self, octet: u8) {
        self.push_bit(0);
        self.out.push(octet);
    }

    /// One match, `offset` in 1..=MAX_OFFSET, `length` at least MIN_MATCH.
    fn push_match(&mut self, offset: usize, length: usize) {
        debug_assert!((1..=MAX_OFFSET).contains(&offset) && length >= MIN_MATCH);
        self.push_bit(1);
        let stored = length - MIN_MATCH;
        // Both fit: offset - 1 < 8192 takes 13 bits.
        let offset_bits = ((offset - 1) as u16) << 3;
        if stored < 7 {
            self.put_u16(offset_bits | stored as u16);
            return;
        }
        self.put_u16(offset_bits | 7);
        let beyond_low_bits = stored - 7;
        let nibble = beyond_low_bits.min(15) as u8;
        match self.shared_nibble.take() {
            Some(at) => self.out[at] |= nibble << 4,
            None => {
                self.shared_nibble = Some(self.out.len());
                self.out.push(nibble);
            }
        }
        if beyond_low_bits < 15 {
            return;
        }
        let beyond_nibble = beyond_low_bits - 15;
        if beyond_nibble < 255 {
            self.out.push(beyond_nibble as u8);
            return;
        }
        self.out.push(255);
        match u16::try_from(stored) {
            Ok(short) => self.put_u16(short),
            Err(_) => {
                self.put_u16(0);
                // A match longer than 4 GiB is never produced: inputs are far shorter.
                self.out
                    .extend_from_slice(&u32::try_from(stored).unwrap_or(u32::MAX).to_le_bytes());
            }
        }
    }

    fn put_u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    /// The end mark: the bit after the last item is 1, the rest of its word too.
    fn finish(mut self) -> Vec<u8> {
        self.push_bit(1);
        let free = 32 - self.bits;
        self.word = ((u64::from(self.word) << free) | ((1u64 << free) - 1)) as u32;
        self.flush_word();
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oxcrpc::tests::{hex, xorshift};

    fn round_trip(input: &[u8]) -> Vec<u8> {
        let packed = compress(input);
        assert_eq!(decompress(&packed, input.len()).as_deref(), Ok(input));
        packed
    }

    /// [MS-XCA] 3.1 and 3.2, the Plain LZ77 examples: our encoder writes them octet for
    /// octet and our decoder reads them.
    #[test]
    fn ms_xca_examples() {
        let alphabet = b"abcdefghijklmnopqrstuvwxyz";
        let packed = round_trip(alphabet);
        let mut expected = hex("3f000000");
        expected.extend_from_slice(alphabet);
        assert_eq!(packed, expected);

        let abc = b"abc".repeat(100);
        assert_eq!(round_trip(&abc), hex("ffffff1f 616263 1700 0f ff 2601"));
    }

    /// A literal then one match of `length` at offset 1, for each length form: the
    /// octets after the literal are the metadata and its extensions, per the table in
    /// the module comment (and [MS-OXCRPC] 3.1.4.1.1.2.2.4).
    #[test]
    fn every_length_form_at_its_boundaries() {
        let cases: &[(usize, &str)] = &[
            (3, "0000"),
            (9, "0600"),
            (10, "0700 00"),
            (24, "0700 0e"),
            (25, "0700 0f 00"),
            (279, "0700 0f fe"),
            (280, "0700 0f ff 1501"),
            (65538, "0700 0f ff ffff"),
            (65539, "0700 0f ff 0000 00000100"),
            (70000, "0700 0f ff 0000 6d110100"),
        ];
        for &(length, tail) in cases {
            let input = vec![7u8; length + 1];
            let packed = round_trip(&input);
            // Bits: literal 0, match 1, end mark 1, padding 1s.
            let mut expected = hex("ffffff7f 07");
            expected.extend(hex(tail));
            assert_eq!(packed, expected, "length {length}");
        }
    }

    #[test]
    fn long_matches_share_nibble_octets() {
        let mut enc = Encoder::new(0);
        enc.push_literal(b'a');
        enc.push_match(1, 12); // low nibble of a new octet: 2
        enc.push_match(1, 13); // high nibble of that octet: 3
        enc.push_match(1, 14); // a new octet: 4
        enc.push_match(1, 40); // high nibble 15, then 40 - 25 in an octet of its own
        let packed = enc.finish();
        assert_eq!(packed, hex("ffffff7f 61 0700 32 0700 0700 f4 0700 0f"));
        assert_eq!(decompress(&packed, 80), Ok(vec![b'a'; 80]));
    }

    #[test]
    fn round_trips_across_sizes_and_kinds() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut random = |n: usize| xorshift(&mut state, n);
        for n in [0, 1, 2, 3, 4, 31, 32, 33, 64, 1000, 8192, 8193, 20000] {
            round_trip(&random(n));
            round_trip(&vec![0u8; n]);
            // Few distinct octets: many short matches and offsets up to the window.
            let few: Vec<u8> = random(n).iter().map(|b| b % 3).collect();
            round_trip(&few);
        }
        // Matches exactly at the window edge and just beyond it.
        let block = random(MAX_OFFSET);
        let block_alone = compress(&block).len();
        for extra in [0, 1] {
            let mut input = block.clone();
            input.extend(vec![0xEE; extra]);
            input.extend_from_slice(&block[..100]);
            let packed = round_trip(&input);
            // 100 octets cost 2 to 4 as a match, 100 plus indicator bits as literals.
            let used_match = packed.len() < block_alone + 10;
            assert_eq!(used_match, extra == 0, "window edge, {extra} extra");
        }
    }

    #[test]
    fn compresses_repetitive_data() {
        let zeros = vec![0u8; 64 * 1024];
        assert!(round_trip(&zeros).len() < 16);
        let text = b"The quick brown fox jumps over the lazy dog. ".repeat(200);
        assert!(round_trip(&text).len() < text.len() / 20);
    }

    #[test]
    fn refuses_hostile_streams() {
        use Lz77Error::*;
        let cases: &[(&str, usize, Lz77Error)] = &[
            // A match before any output.
            (
                "ffffffff 0000",
                3,
                OffsetBeforeStart {
                    at: 4,
                    offset: 1,
                    produced: 0,
                },
            ),
            // Offset 2 with one octet out.
            (
                "ffffff7f 41 0800",
                4,
                OffsetBeforeStart {
                    at: 5,
                    offset: 2,
                    produced: 1,
                },
            ),
            // A literal past the declared size.
            (
                "00000000 41 42",
                1,
                ExpandsPastDeclared { at: 5, declared: 1 },
            ),
            // A match past the declared size ("LZ77 data that expands beyond its size").
            (
                "ffffff7f 41 0600",
                5,
                ExpandsPastDeclared { at: 5, declared: 5 },
            ),
            (
                "ffffff7f 41 0700 0fff ffff",
                1000,
                ExpandsPastDeclared {
                    at: 5,
                    declared: 1000,
                },
            ),
            // Too short for what is declared.
            (
                "ffffff7f 41 0000",
                5,
                ShorterThanDeclared {
                    produced: 4,
                    declared: 5,
                },
            ),
            (
                "",
                1,
                ShorterThanDeclared {
                    produced: 0,
                    declared: 1,
                },
            ),
            // Cut inside an indicator, metadata, nibble octet, u16 and u32.
            ("ffff", 0, Truncated { at: 0 }),
            ("ffffff7f 41 07", 9, Truncated { at: 5 }),
            ("ffffff7f 41 0700", 9, Truncated { at: 5 }),
            ("ffffff7f 41 0700 0fff 01", 300, Truncated { at: 5 }),
            (
                "ffffff7f 41 0700 0fff 0000 0000",
                70000,
                Truncated { at: 5 },
            ),
            // Extended lengths below the 22 their form starts at.
            ("ffffff7f 41 0700 0fff 1500", 30, BadLength { at: 5 }),
            (
                "ffffff7f 41 0700 0fff 0000 15000000",
                30,
                BadLength { at: 5 },
            ),
        ];
        for (stream, declared, error) in cases {
            assert_eq!(
                decompress(&hex(stream), *declared).as_ref(),
                Err(error),
                "{stream}"
            );
        }
    }

    #[test]
    fn accepts_a_stream_without_its_end_mark() {
        // 32 literals fill a word; a conforming encoder adds 0xFFFFFFFF, this one stops.
        let mut stream = vec![0u8; 4];
        stream.extend(b"0123456789abcdef0123456789abcdef");
        assert_eq!(decompress(&stream, 32).map(|o| o.len()), Ok(32));
        // Padding with 0s instead of 1s reads the same.
        assert_eq!(decompress(&hex("00000000 41"), 1), Ok(b"A".to_vec()));
    }
}
