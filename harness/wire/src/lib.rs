//! harness-wire: the codec layer. Pure functions and sans-IO readers over bytes, with no
//! async runtime and few dependencies, so the servers, clients, fuzz targets and the
//! coming RPC code share one way to read and write a wire format.
//!
//! - [`codec`]: [`Reader`] / [`Writer`] for binary formats (both endiannesses,
//!   alignment, lengths checked before anything is allocated), the [`Codec`] trait,
//!   [`DecodeError`] and the [`wire_enum!`] macro.
//! - [`ntlm`]: the NTLM messages ([MS-NLMP] 2.2) on that codec.
//! - [`imap`]: the one reader of IMAP server output (RFC 3501 7 and 9).
//! - [`dcerpc`]: DCE/RPC connection-oriented PDUs ([C706] 12, [MS-RPCE] 2.2.2), a
//!   stream framer and fragment reassembly.
//! - [`ndr`]: NDR 2.0 stubs ([C706] 14): [`ndr::NdrReader`] with limits checked before
//!   allocating, [`ndr::NdrWriter`], context handles.
//! - [`oxcrpc`]: [MS-OXCRPC] extended buffers (RPC_HEADER_EXT, the LZ77 DIRECT2
//!   compression, XorMagic).
//! - [`rpch`]: [MS-RPCH] RTS PDUs (RPC over HTTP v2) on the DCE/RPC common header.
//!
//! Why a crate of its own: the codecs are the part every fuzz target and every protocol
//! shares, so they build on little (thiserror and memchr), never see tokio, and a coming
//! protocol (NDR, Kerberos, MAPI) adds its module here without touching the
//! protocol machines in harness-core.

pub mod codec;
pub mod dcerpc;
pub mod imap;
pub mod ndr;
pub mod ntlm;
pub mod oxcrpc;
pub mod rpch;

pub use codec::{Codec, DecodeError, Reader, Reserved, Writer};
