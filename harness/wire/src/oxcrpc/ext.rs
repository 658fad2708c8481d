//! The extended buffer ([MS-OXCRPC] 2.2.2.1, 3.1.4.1.1, 3.1.4.2.1.1): one or more
//! (RPC_HEADER_EXT, payload) pairs, the last with the Last flag, each payload
//! compressed ([`super::lz77`]) and/or obfuscated ([`xor_magic`]) on its own.

use super::lz77::{self, Lz77Error};
use crate::codec::{Codec, DecodeError, Reader, Writer};

/// The payload is LZ77 compressed; SizeActual is its size uncompressed.
pub const FLAG_COMPRESSED: u16 = 0x0001;
/// The payload is obfuscated with [`xor_magic`].
pub const FLAG_XOR_MAGIC: u16 = 0x0002;
/// No header follows this one's payload.
pub const FLAG_LAST: u16 = 0x0004;
const KNOWN_FLAGS: u16 = FLAG_COMPRESSED | FLAG_XOR_MAGIC | FLAG_LAST;

/// The octet every payload octet is XORed with ([MS-OXCRPC] 3.1.4.1.1.3).
pub const XOR_MAGIC: u8 = 0xA5;

/// "A single payload MUST NOT exceed 32 KB in size" ([MS-OXCRPC] 3.1.4.1.1).
pub const MAX_PAYLOAD: usize = 0x8000;

/// RPC_HEADER_EXT, 8 octets, little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcHeaderExt {
    /// MUST be 0.
    pub version: u16,
    pub flags: u16,
    /// Payload octets on the wire, after this header.
    pub size: u16,
    /// Payload octets once uncompressed.
    pub size_actual: u16,
}

impl RpcHeaderExt {
    pub const LEN: usize = 8;

    pub fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }
}

impl Codec for RpcHeaderExt {
    fn encode(&self, w: &mut Writer) {
        w.put_u16_le(self.version);
        w.put_u16_le(self.flags);
        w.put_u16_le(self.size);
        w.put_u16_le(self.size_actual);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        // All 8 octets at once, so a short header reports the whole shortfall.
        let mut fields = Reader::new(r.take(Self::LEN)?);
        Ok(RpcHeaderExt {
            version: fields.u16_le()?,
            flags: fields.u16_le()?,
            size: fields.u16_le()?,
            size_actual: fields.u16_le()?,
        })
    }
}

/// XorMagic obfuscation, its own inverse: every octet XOR 0xA5.
pub fn xor_magic(payload: &mut [u8]) {
    for octet in payload {
        *octet ^= XOR_MAGIC;
    }
}

/// What a decoder accepts: the total of the uncompressed payloads and each one's
/// SizeActual. Both are checked before anything is allocated for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    pub max_output: usize,
    pub max_payload: usize,
}

impl DecodeLimits {
    /// EcDoRpcExt2 rgbOut: at most 0x40000 octets ([MS-OXCRPC] 3.1.4.2), each payload
    /// at most 32 KB.
    pub const RGB_OUT: DecodeLimits = DecodeLimits {
        max_output: 0x40000,
        max_payload: MAX_PAYLOAD,
    };
    /// EcDoRpcExt2 / EcDoConnectEx rgbAuxOut: at most 0x1008 octets.
    pub const RGB_AUX_OUT: DecodeLimits = DecodeLimits {
        max_output: 0x1008,
        max_payload: 0x1008,
    };
}

/// Why an extended buffer was refused; `at` is the offset of the header concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtError {
    /// A header or payload runs past the end of the buffer.
    #[error("extended buffer truncated at octet {at}: {needed} more octets needed")]
    Truncated { at: usize, needed: usize },
    /// The buffer ended after a header without Last.
    #[error("extended buffer ends at octet {at} without a header flagged Last")]
    MissingLast { at: usize },
    /// Octets follow the payload of the header flagged Last.
    #[error("{count} octets follow the last payload (at octet {at})")]
    TrailingOctets { at: usize, count: usize },
    /// Version is not 0 (2.2.2.1: it MUST be).
    #[error("RPC_HEADER_EXT at octet {at} has version {version}")]
    Version { at: usize, version: u16 },
    /// Flags outside Compressed, XorMagic and Last: a flag this decoder does not know may
    /// change how the payload is to be read, so it is not guessed at.
    #[error("RPC_HEADER_EXT at octet {at} has unknown flags {flags:#06x}")]
    UnknownFlags { at: usize, flags: u16 },
    /// Not compressed, yet Size and SizeActual differ (2.2.2.1: they MUST be equal).
    #[error("uncompressed payload at octet {at}: Size {size} != SizeActual {size_actual}")]
    SizeMismatch {
        at: usize,
        size: u16,
        size_actual: u16,
    },
    /// Compressed, yet Size is not below SizeActual (2.2.2.1: it MUST be).
    #[error("compressed payload at octet {at}: Size {size} not below SizeActual {size_actual}")]
    CompressedNotSmaller {
        at: usize,
        size: u16,
        size_actual: u16,
    },
    /// One payload's SizeActual is over the caller's limit.
    #[error("payload at octet {at} declares {size_actual} octets, limit {limit}")]
    PayloadTooLarge {
        at: usize,
        size_actual: u16,
        limit: usize,
    },
    /// The payloads together are over the caller's limit.
    #[error("payloads total {total} octets by octet {at}, limit {limit}")]
    OutputTooLarge {
        at: usize,
        total: usize,
        limit: usize,
    },
    /// The compressed payload is not valid LZ77 for its SizeActual.
    #[error("payload at octet {at}: {source}")]
    Lz77 {
        at: usize,
        #[source]
        source: Lz77Error,
    },
}

/// Decodes an extended buffer into its payloads, one per header, each de-obfuscated and
/// decompressed, in order.
pub fn decode_extended_payloads(
    bytes: &[u8],
    limits: DecodeLimits,
) -> Result<Vec<Vec<u8>>, ExtError> {
    let mut payloads = Vec::new();
    let mut total = 0usize;
    let mut r = Reader::new(bytes);
    loop {
        let at = r.position();
        if r.is_empty() && at > 0 {
            return Err(ExtError::MissingLast { at });
        }
        let header = RpcHeaderExt::decode(&mut r).map_err(|e| truncated(at, e))?;
        check_header(&header, at, limits)?;
        total += usize::from(header.size_actual);
        if total > limits.max_output {
            return Err(ExtError::OutputTooLarge {
                at,
                total,
                limit: limits.max_output,
            });
        }
        let wire = r
            .take(usize::from(header.size))
            .map_err(|e| truncated(at, e))?;
        payloads.push(open_payload(&header, wire, at)?);
        if header.has(FLAG_LAST) {
            break;
        }
    }
    if !r.is_empty() {
        return Err(ExtError::TrailingOctets {
            at: r.position(),
            count: r.remaining(),
        });
    }
    Ok(payloads)
}

/// Decodes an extended buffer into its payloads joined end to end.
pub fn decode_extended_buffer(bytes: &[u8], limits: DecodeLimits) -> Result<Vec<u8>, ExtError> {
    Ok(decode_extended_payloads(bytes, limits)?.concat())
}

fn truncated(at: usize, e: DecodeError) -> ExtError {
    match e {
        DecodeError::Incomplete { needed } => ExtError::Truncated { at, needed },
        // The header reads only integers: running short is its one failure.
        DecodeError::Invalid(_) => ExtError::Truncated { at, needed: 0 },
    }
}

/// The 2.2.2.1 rules and the caller's per-payload limit, before any payload octet.
fn check_header(h: &RpcHeaderExt, at: usize, limits: DecodeLimits) -> Result<(), ExtError> {
    if h.version != 0 {
        return Err(ExtError::Version {
            at,
            version: h.version,
        });
    }
    if h.flags & !KNOWN_FLAGS != 0 {
        return Err(ExtError::UnknownFlags { at, flags: h.flags });
    }
    let (size, size_actual) = (h.size, h.size_actual);
    if h.has(FLAG_COMPRESSED) {
        if size >= size_actual {
            return Err(ExtError::CompressedNotSmaller {
                at,
                size,
                size_actual,
            });
        }
    } else if size != size_actual {
        return Err(ExtError::SizeMismatch {
            at,
            size,
            size_actual,
        });
    }
    if usize::from(size_actual) > limits.max_payload {
        return Err(ExtError::PayloadTooLarge {
            at,
            size_actual,
            limit: limits.max_payload,
        });
    }
    Ok(())
}

/// Undoes XorMagic, then the compression (3.1.4.2.1.1.1: obfuscation is applied last).
fn open_payload(h: &RpcHeaderExt, wire: &[u8], at: usize) -> Result<Vec<u8>, ExtError> {
    let mut payload = wire.to_vec();
    if h.has(FLAG_XOR_MAGIC) {
        xor_magic(&mut payload);
    }
    if h.has(FLAG_COMPRESSED) {
        payload = lz77::decompress(&payload, usize::from(h.size_actual))
            .map_err(|source| ExtError::Lz77 { at, source })?;
    }
    Ok(payload)
}

/// How an encoder builds each payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Compress each payload, sending it uncompressed when that is not smaller (the
    /// client or server chooses, 3.1.4.2.1.1).
    pub compress: bool,
    /// Obfuscate each payload with XorMagic.
    pub xor: bool,
    /// The most uncompressed octets per header, 1 to 65535 (clamped): 32 KB
    /// ([`MAX_PAYLOAD`]) for a peer that keeps to 3.1.4.1.1.
    pub max_chunk: usize,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            compress: true,
            xor: false,
            max_chunk: MAX_PAYLOAD,
        }
    }
}

/// A payload too long for one header's u16 sizes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payload {index} is {len} octets; one header carries at most 65535")]
pub struct PayloadTooLong {
    pub index: usize,
    pub len: usize,
}

/// Encodes `payload` as an extended buffer, split into payloads of at most
/// `max_chunk` octets (one header with Last and no payload when it is empty). For a
/// receiver that joins the payloads (as [`decode_extended_buffer`] does); EcDoRpcExt2
/// packing sends whole ROP buffers, one per header: see [`encode_extended_payloads`].
pub fn encode_extended_buffer(payload: &[u8], options: EncodeOptions) -> Vec<u8> {
    let chunk = options.max_chunk.clamp(1, usize::from(u16::MAX));
    let mut w = Writer::new();
    let mut pieces = payload.chunks(chunk).peekable();
    if pieces.peek().is_none() {
        put_payload(&mut w, &[], options, true);
    }
    while let Some(piece) = pieces.next() {
        put_payload(&mut w, piece, options, pieces.peek().is_none());
    }
    w.into_bytes()
}

/// Encodes each payload under a header of its own, the last flagged Last (an empty list
/// gives one empty payload). `max_chunk` is not applied: every payload stays whole.
pub fn encode_extended_payloads(
    payloads: &[&[u8]],
    options: EncodeOptions,
) -> Result<Vec<u8>, PayloadTooLong> {
    if let Some((index, p)) = payloads
        .iter()
        .enumerate()
        .find(|(_, p)| p.len() > usize::from(u16::MAX))
    {
        return Err(PayloadTooLong {
            index,
            len: p.len(),
        });
    }
    let mut w = Writer::new();
    if payloads.is_empty() {
        put_payload(&mut w, &[], options, true);
    }
    for (i, p) in payloads.iter().enumerate() {
        put_payload(&mut w, p, options, i + 1 == payloads.len());
    }
    Ok(w.into_bytes())
}

/// One header and its payload; `plain` is at most 65535 octets.
fn put_payload(w: &mut Writer, plain: &[u8], options: EncodeOptions, last: bool) {
    let size_actual = u16::try_from(plain.len()).unwrap_or(u16::MAX);
    let mut flags = if last { FLAG_LAST } else { 0 };
    let mut body = if options.compress {
        let packed = lz77::compress(plain);
        if packed.len() < plain.len() {
            flags |= FLAG_COMPRESSED;
            packed
        } else {
            plain.to_vec()
        }
    } else {
        plain.to_vec()
    };
    if options.xor {
        flags |= FLAG_XOR_MAGIC;
        xor_magic(&mut body);
    }
    RpcHeaderExt {
        version: 0,
        flags,
        // Below size_actual when compressed, equal otherwise.
        size: u16::try_from(body.len()).unwrap_or(u16::MAX),
        size_actual,
    }
    .encode(w);
    w.put_bytes(&body);
}
