//! [MS-OXCRPC] extended buffers, the EMSMDB layer between the RPC stubs and the ROP
//! buffers: RPC_HEADER_EXT, the LZ77 (DIRECT2) compression and XorMagic obfuscation,
//! in both directions. Pure functions over octets; the caller passes the size limits
//! of the parameter being read (rgbOut, rgbAuxOut, ...).
//!
//! - [`ext`]: [`RpcHeaderExt`], [`decode_extended_buffer`] / [`decode_extended_payloads`]
//!   (bounded by [`DecodeLimits`]) and [`encode_extended_buffer`] /
//!   [`encode_extended_payloads`] ([`EncodeOptions`]), [`xor_magic`].
//! - [`lz77`]: [`lz77::compress`] and [`lz77::decompress`], the same octets as [MS-XCA]
//!   Plain LZ77.

pub mod ext;
pub mod lz77;

#[cfg(test)]
mod tests;

pub use ext::{
    decode_extended_buffer, decode_extended_payloads, encode_extended_buffer,
    encode_extended_payloads, xor_magic, DecodeLimits, EncodeOptions, ExtError, PayloadTooLong,
    RpcHeaderExt, FLAG_COMPRESSED, FLAG_LAST, FLAG_XOR_MAGIC, MAX_PAYLOAD,
};
pub use lz77::Lz77Error;
