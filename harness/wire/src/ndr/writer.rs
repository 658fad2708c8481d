//! [`NdrWriter`]: NDR 2.0 little-endian encoding of one stub.

use crate::codec::{Codec, Writer};
use crate::dcerpc::Uuid;

use super::ContextHandle;

/// The referent id Windows gives a stub's first non-NULL pointer; each further one gets
/// the previous plus [`REFERENT_ID_STEP`] (0x00020000, 0x00020004, ... in captures of
/// Windows clients and servers; any non-zero ids are valid, [C706] 14.3.10).
pub const FIRST_REFERENT_ID: u32 = 0x0002_0000;
pub const REFERENT_ID_STEP: u32 = 4;

/// Writes one NDR 2.0 stub: little-endian, alignment from the stub's first octet with
/// zero padding, fresh referent ids for non-NULL pointers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NdrWriter {
    out: Writer,
    next_referent: u32,
}

impl Default for NdrWriter {
    fn default() -> Self {
        NdrWriter::new()
    }
}

/// A count as the u32 NDR carries; lengths beyond it cannot be encoded, so an encoder
/// handing one over has a bug, and the saturated count makes the stub fail to decode.
fn wire_count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl NdrWriter {
    pub fn new() -> Self {
        NdrWriter {
            out: Writer::new(),
            next_referent: FIRST_REFERENT_ID,
        }
    }

    pub fn len(&self) -> usize {
        self.out.len()
    }

    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.out.as_bytes()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.out.into_bytes()
    }

    /// Zero padding to the next multiple of `n` from the stub's start.
    pub fn align(&mut self, n: usize) {
        self.out.pad_to(n);
    }

    pub fn put_u8(&mut self, v: u8) {
        self.out.put_u8(v);
    }

    pub fn put_u16(&mut self, v: u16) {
        self.align(2);
        self.out.put_u16_le(v);
    }

    pub fn put_u32(&mut self, v: u32) {
        self.align(4);
        self.out.put_u32_le(v);
    }

    pub fn put_u64(&mut self, v: u64) {
        self.align(8);
        self.out.put_u64_le(v);
    }

    pub fn put_i32(&mut self, v: i32) {
        self.put_u32(v as u32);
    }

    /// Raw octets, no alignment (the body of a byte array).
    pub fn put_bytes(&mut self, b: &[u8]) {
        self.out.put_bytes(b);
    }

    pub fn put_uuid(&mut self, uuid: &Uuid) {
        self.align(4);
        uuid.encode(&mut self.out);
    }

    pub fn put_context_handle(&mut self, handle: &ContextHandle) {
        self.put_u32(handle.attributes);
        handle.uuid.encode(&mut self.out);
    }

    /// A unique or full pointer: a fresh referent id when `present`, 0 otherwise.
    /// Returns the id written. The pointee is the caller's to write: at once for a
    /// top-level parameter, after the containing structure when embedded.
    pub fn put_pointer(&mut self, present: bool) -> u32 {
        let id = match present {
            true => {
                let id = self.next_referent;
                self.next_referent = self.next_referent.wrapping_add(REFERENT_ID_STEP);
                id
            }
            false => 0,
        };
        self.put_u32(id);
        id
    }

    /// A conformant array's max_count (or a conformant structure's hoisted one).
    pub fn put_conformance(&mut self, max_count: usize) {
        self.put_u32(wire_count(max_count));
    }

    /// A varying array's offset (always 0) and actual_count.
    pub fn put_variance(&mut self, actual_count: usize) {
        self.put_u32(0);
        self.put_u32(wire_count(actual_count));
    }

    /// `[size_is(n)] byte a[]`.
    pub fn put_conformant_bytes(&mut self, b: &[u8]) {
        self.put_conformance(b.len());
        self.put_bytes(b);
    }

    /// `[size_is(max), length_is(n)] byte a[]` (`max` at least `b.len()`).
    pub fn put_conformant_varying_bytes(&mut self, max_count: usize, b: &[u8]) {
        self.put_conformance(max_count.max(b.len()));
        self.put_variance(b.len());
        self.put_bytes(b);
    }

    /// `[string] char *`: max_count = actual_count = characters + NUL.
    pub fn put_string(&mut self, chars: &[u8]) {
        self.put_conformance(chars.len() + 1);
        self.put_varying_string(chars);
    }

    /// `[string] char a[fixed]`: offset, actual_count, the characters and the NUL. The
    /// caller keeps `chars` shorter than the fixed size.
    pub fn put_varying_string(&mut self, chars: &[u8]) {
        self.put_variance(chars.len() + 1);
        self.put_bytes(chars);
        self.put_u8(0);
    }

    /// `[string] wchar_t *`: UTF-16LE units and a NUL unit.
    pub fn put_wstring(&mut self, s: &str) {
        let units: Vec<u16> = s.encode_utf16().chain(std::iter::once(0)).collect();
        self.put_conformance(units.len());
        self.put_variance(units.len());
        units.iter().for_each(|u| self.out.put_u16_le(*u));
    }
}
