//! NDR 2.0 ([C706] chapter 14; [MS-RPCE] 2.2.5), little-endian only (drep 0x10, the one
//! data representation Windows and impacket send): an [`NdrReader`] over a request stub
//! and an [`NdrWriter`] for response stubs, on the crate's [`Reader`](crate::Reader) /
//! [`Writer`](crate::Writer).
//!
//! What both cover: primitives with natural alignment counted from the stub's start
//! ([C706] 14.2.2), UUIDs, context handles ([`ContextHandle`]), conformant, varying and
//! conformant-varying arrays ([C706] 14.3.3), `[string]` arrays of `char` and `wchar_t`
//! ([C706] 14.3.4) and unique, full and ref pointers ([C706] 14.3.10-14.3.11).
//!
//! Every count read is checked, before anything is allocated, against the octets left
//! (each element needs at least its wire size) and against the caller's [`NdrLimits`];
//! every failure is a typed [`NdrError`], which the association answers with a fault
//! `RPC_X_BAD_STUB_DATA` ([`NdrError::fault_status`]).
//!
//! # Deferred pointees
//!
//! NDR writes the pointee of a pointer embedded in a structure (or array) after the whole
//! containing structure, in the order the pointers appeared ([C706] 14.3.12.3); a
//! top-level pointer parameter's pointee follows it at once. The reader gives the
//! pieces, and a caller decoding an embedded pointer reads the referent ids first, then
//! the pointees in order:
//!
//! ```
//! use harness_wire::ndr::{NdrReader, NdrWriter};
//!
//! // typedef struct { unsigned long id; [unique, string] wchar_t *name; } ENTRY;
//! // [size_is(n)] ENTRY entries[];
//! let mut w = NdrWriter::new();
//! w.put_conformance(2);
//! let named = [(7u32, Some("alice")), (9, None)];
//! for (id, name) in named {
//!     w.put_u32(id);
//!     w.put_pointer(name.is_some());
//! }
//! for name in named.iter().filter_map(|(_, name)| *name) {
//!     w.put_wstring(name);
//! }
//! let stub = w.into_bytes();
//!
//! let mut r = NdrReader::new(&stub);
//! // 1. The structures, each with its referent id (8 octets at least per element).
//! let heads = r.conformant_array(8, |r| Ok((r.u32()?, r.unique_ptr()?)))?;
//! // 2. The pointees, in the order their pointers came.
//! let mut entries = Vec::new();
//! for (id, name) in heads {
//!     entries.push((id, r.pointee(name, |r| r.wstring())?));
//! }
//! assert_eq!(entries, [(7, Some("alice".to_string())), (9, None)]);
//! # Ok::<(), harness_wire::ndr::NdrError>(())
//! ```

mod reader;
mod writer;

#[cfg(test)]
mod tests;

pub use reader::{FullPointer, NdrReader};
pub use writer::{NdrWriter, FIRST_REFERENT_ID, REFERENT_ID_STEP};

use crate::codec::DecodeError;
use crate::dcerpc::{FaultStatus, Uuid};

/// Caps on what one stub may make the reader allocate, checked before allocating (on top
/// of the check against the octets really there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdrLimits {
    /// Elements of one array (conformant, varying or both).
    pub max_elements: usize,
    /// Characters of one `[string]`, its terminating NUL included.
    pub max_string: usize,
}

impl NdrLimits {
    /// 1 Mi elements per array, 64 Ki characters per string: above anything the Exchange
    /// interfaces send (EcDoRpcExt2 buffers stop at 256 KiB, [MS-OXCRPC] 3.1.4.2) and far
    /// below what would hurt.
    pub const DEFAULT: NdrLimits = NdrLimits {
        max_elements: 1 << 20,
        max_string: 1 << 16,
    };
}

impl Default for NdrLimits {
    fn default() -> Self {
        NdrLimits::DEFAULT
    }
}

/// Why a stub did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NdrError {
    /// The stub ended early: `needed` more octets would let the read go on.
    #[error("stub truncated: {needed} more octets needed")]
    Truncated { needed: usize },
    /// A count announces more elements than the octets left can hold.
    #[error("count {count} of {element_size}-octet elements, only {remaining} octets left")]
    CountBeyondInput {
        count: u32,
        element_size: usize,
        remaining: usize,
    },
    /// A count above the caller's limit.
    #[error("count {count} above the limit of {limit}")]
    CountOverLimit { count: u32, limit: usize },
    /// A varying array's actual_count above its max_count (or fixed size).
    #[error("actual_count {actual} above max_count {max}")]
    ActualBeyondMax { actual: u32, max: u32 },
    /// A varying array's offset other than 0 (no interface here uses `first_is`).
    #[error("varying array offset {0}, only 0 is accepted")]
    NonZeroOffset(u32),
    /// A `[string]` whose last character is not NUL (or that has no character at all).
    #[error("string without its terminating NUL")]
    UnterminatedString,
    /// A `[string] wchar_t` array that is not UTF-16 (an unpaired surrogate).
    #[error("string is not UTF-16")]
    InvalidUtf16,
    /// An embedded `[ref]` pointer with referent id 0.
    #[error("ref pointer is NULL")]
    NullRefPointer,
    /// A `[range]` parameter outside its bounds.
    #[error("value {value} outside the range {min}..={max}")]
    OutOfRange { value: u32, min: u32, max: u32 },
    /// Anything else an interface's decoder refuses.
    #[error("bad stub data: {0}")]
    Invalid(&'static str),
}

impl NdrError {
    /// The fault status the association answers a stub that does not decode with:
    /// RPC_X_BAD_STUB_DATA ([MS-RPCE] 3.3.1.5.7 leaves the choice to the NDR engine;
    /// Windows answers malformed stubs with 0x6F7).
    pub fn fault_status(&self) -> FaultStatus {
        FaultStatus::BAD_STUB_DATA
    }
}

impl From<DecodeError> for NdrError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Incomplete { needed } => NdrError::Truncated { needed },
            DecodeError::Invalid(why) => NdrError::Invalid(why),
        }
    }
}

impl From<NdrError> for DecodeError {
    fn from(e: NdrError) -> Self {
        match e {
            NdrError::Truncated { needed } => DecodeError::Incomplete { needed },
            NdrError::CountBeyondInput { .. } => DecodeError::Invalid("ndr: count beyond input"),
            NdrError::CountOverLimit { .. } => DecodeError::Invalid("ndr: count over limit"),
            NdrError::ActualBeyondMax { .. } => {
                DecodeError::Invalid("ndr: actual_count above max_count")
            }
            NdrError::NonZeroOffset(_) => DecodeError::Invalid("ndr: varying offset not 0"),
            NdrError::UnterminatedString => DecodeError::Invalid("ndr: string without NUL"),
            NdrError::InvalidUtf16 => DecodeError::Invalid("ndr: string not UTF-16"),
            NdrError::NullRefPointer => DecodeError::Invalid("ndr: NULL ref pointer"),
            NdrError::OutOfRange { .. } => DecodeError::Invalid("ndr: value out of range"),
            NdrError::Invalid(why) => DecodeError::Invalid(why),
        }
    }
}

/// The wire form of a `[context_handle]` (`ndr_context_handle`: 20 octets, an attributes
/// word and a UUID, 4-aligned); the nil UUID is the NULL handle (a closed or not yet
/// opened one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ContextHandle {
    pub attributes: u32,
    pub uuid: Uuid,
}

impl ContextHandle {
    /// The NULL handle.
    pub const NIL: ContextHandle = ContextHandle {
        attributes: 0,
        uuid: Uuid::NIL,
    };
    /// Octets on the wire.
    pub const WIRE_LEN: usize = 20;

    /// A handle for `uuid` with attributes 0 (what servers hand out).
    pub const fn new(uuid: Uuid) -> Self {
        ContextHandle {
            attributes: 0,
            uuid,
        }
    }

    /// True for the NULL handle: the UUID alone decides (the attributes word of a NULL
    /// handle is 0 too, but clients are not checked on it; impacket's `isNull` looks at
    /// the UUID alone as well).
    pub fn is_nil(&self) -> bool {
        self.uuid == Uuid::NIL
    }
}
