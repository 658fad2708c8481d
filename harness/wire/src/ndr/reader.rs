//! [`NdrReader`]: NDR 2.0 little-endian decoding over one stub.

use std::collections::HashSet;

use crate::codec::{Codec, Reader};
use crate::dcerpc::Uuid;

use super::{ContextHandle, NdrError, NdrLimits};

/// A full (`[ptr]`) pointer as read: full pointers may alias, so a referent id seen
/// before in the stub carries no second copy of its pointee ([C706] 14.3.11.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullPointer {
    Null,
    /// First time this id appears: its pointee follows (now or deferred).
    New(u32),
    /// The id appeared before: the pointee is the earlier one, nothing follows.
    Alias(u32),
}

/// Reads one NDR 2.0 stub (little-endian, ASCII, IEEE: drep 0x10). Alignment counts
/// from the stub's first octet, as the stub starts 8-aligned in the PDU
/// ([C706] 14.2.2, [MS-RPCE] 2.2.5).
#[derive(Debug, Clone)]
pub struct NdrReader<'a> {
    input: Reader<'a>,
    limits: NdrLimits,
    /// Referent ids of full pointers met so far (at most one per 4 octets read).
    full_referents: HashSet<u32>,
}

impl<'a> NdrReader<'a> {
    /// A reader with [`NdrLimits::DEFAULT`].
    pub fn new(stub: &'a [u8]) -> Self {
        NdrReader::with_limits(stub, NdrLimits::DEFAULT)
    }

    pub fn with_limits(stub: &'a [u8], limits: NdrLimits) -> Self {
        NdrReader {
            input: Reader::new(stub),
            limits,
            full_referents: HashSet::new(),
        }
    }

    pub fn limits(&self) -> NdrLimits {
        self.limits
    }

    /// Octets read so far (padding included).
    pub fn position(&self) -> usize {
        self.input.position()
    }

    pub fn remaining(&self) -> usize {
        self.input.remaining()
    }

    pub fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    /// Skips padding to the next multiple of `n` from the stub's start.
    pub fn align(&mut self, n: usize) -> Result<(), NdrError> {
        Ok(self.input.align(n)?)
    }

    pub fn u8(&mut self) -> Result<u8, NdrError> {
        Ok(self.input.u8()?)
    }

    pub fn u16(&mut self) -> Result<u16, NdrError> {
        self.align(2)?;
        Ok(self.input.u16_le()?)
    }

    pub fn u32(&mut self) -> Result<u32, NdrError> {
        self.align(4)?;
        Ok(self.input.u32_le()?)
    }

    pub fn u64(&mut self) -> Result<u64, NdrError> {
        self.align(8)?;
        Ok(self.input.u64_le()?)
    }

    pub fn i32(&mut self) -> Result<i32, NdrError> {
        Ok(self.u32()? as i32)
    }

    /// A `[range(min, max)]` unsigned long; outside it is bad stub data.
    pub fn u32_in_range(&mut self, min: u32, max: u32) -> Result<u32, NdrError> {
        let value = self.u32()?;
        match (min..=max).contains(&value) {
            true => Ok(value),
            false => Err(NdrError::OutOfRange { value, min, max }),
        }
    }

    /// `n` raw octets, no alignment (the body of a byte array whose count was checked).
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], NdrError> {
        Ok(self.input.take(n)?)
    }

    /// A UUID (a structure of u32, u16, u16, 8 octets: 4-aligned).
    pub fn uuid(&mut self) -> Result<Uuid, NdrError> {
        self.align(4)?;
        Ok(Uuid::decode(&mut self.input)?)
    }

    /// A context handle: attributes u32 then the UUID.
    pub fn context_handle(&mut self) -> Result<ContextHandle, NdrError> {
        let attributes = self.u32()?;
        let uuid = Uuid::decode(&mut self.input)?;
        Ok(ContextHandle { attributes, uuid })
    }

    /// A unique pointer's referent id: `None` for NULL. The pointee, when there is one,
    /// follows at once for a top-level parameter, after the containing structure for an
    /// embedded pointer (see the module docs).
    pub fn unique_ptr(&mut self) -> Result<Option<u32>, NdrError> {
        let id = self.u32()?;
        Ok((id != 0).then_some(id))
    }

    /// An embedded `[ref]` pointer's referent id, never 0. (A top-level `[ref]`
    /// parameter has no wire form: its pointee stands where it is.)
    pub fn ref_ptr(&mut self) -> Result<u32, NdrError> {
        self.unique_ptr()?.ok_or(NdrError::NullRefPointer)
    }

    /// A full pointer's referent id, telling a first appearance from an alias.
    pub fn full_ptr(&mut self) -> Result<FullPointer, NdrError> {
        Ok(match self.unique_ptr()? {
            None => FullPointer::Null,
            Some(id) if self.full_referents.insert(id) => FullPointer::New(id),
            Some(id) => FullPointer::Alias(id),
        })
    }

    /// Reads a pointee with `read` when `referent` is `Some` (a non-NULL pointer).
    pub fn pointee<T>(
        &mut self,
        referent: Option<u32>,
        read: impl FnOnce(&mut Self) -> Result<T, NdrError>,
    ) -> Result<Option<T>, NdrError> {
        referent.map(|_| read(self)).transpose()
    }

    /// `count` against a limit and against the octets left, each element taking at
    /// least `element_size` octets (0 counts as 1).
    fn check_count(
        &self,
        count: u32,
        element_size: usize,
        limit: usize,
    ) -> Result<usize, NdrError> {
        let n = usize::try_from(count).unwrap_or(usize::MAX);
        if n > limit {
            return Err(NdrError::CountOverLimit { count, limit });
        }
        let element_size = element_size.max(1);
        let remaining = self.remaining();
        if n > remaining / element_size {
            return Err(NdrError::CountBeyondInput {
                count,
                element_size,
                remaining,
            });
        }
        Ok(n)
    }

    /// A conformant array's max_count when all its elements follow (a conformant array,
    /// or the hoisted conformance at the start of a conformant structure): checked
    /// against the elements limit and the octets left.
    pub fn conformance(&mut self, element_size: usize) -> Result<usize, NdrError> {
        let count = self.u32()?;
        self.check_count(count, element_size, self.limits.max_elements)
    }

    /// A conformant-varying array's max_count: only the elements limit applies, as just
    /// actual_count elements are sent ([`NdrReader::variance`] checks those).
    pub fn varying_conformance(&mut self) -> Result<u32, NdrError> {
        let count = self.u32()?;
        let limit = self.limits.max_elements;
        if usize::try_from(count).unwrap_or(usize::MAX) > limit {
            return Err(NdrError::CountOverLimit { count, limit });
        }
        Ok(count)
    }

    /// A varying array's offset and actual_count: offset 0, actual_count at most `max`
    /// (the max_count, or the fixed size of a varying array), within the limit and the
    /// octets left.
    pub fn variance(&mut self, max: u32, element_size: usize) -> Result<usize, NdrError> {
        self.variance_within(max, element_size, self.limits.max_elements)
    }

    fn variance_within(
        &mut self,
        max: u32,
        element_size: usize,
        limit: usize,
    ) -> Result<usize, NdrError> {
        let offset = self.u32()?;
        let actual = self.u32()?;
        if offset != 0 {
            return Err(NdrError::NonZeroOffset(offset));
        }
        if actual > max {
            return Err(NdrError::ActualBeyondMax { actual, max });
        }
        self.check_count(actual, element_size, limit)
    }

    /// `count` elements read by `read`, each at least `element_size` octets; the count is
    /// checked against the octets left before the vector is allocated.
    pub fn elements<T>(
        &mut self,
        count: usize,
        element_size: usize,
        mut read: impl FnMut(&mut Self) -> Result<T, NdrError>,
    ) -> Result<Vec<T>, NdrError> {
        let checked = u32::try_from(count).unwrap_or(u32::MAX);
        self.check_count(checked, element_size, self.limits.max_elements)?;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(read(self)?);
        }
        Ok(out)
    }

    /// `[size_is(n)] T a[]`: max_count, then the elements.
    pub fn conformant_array<T>(
        &mut self,
        element_size: usize,
        read: impl FnMut(&mut Self) -> Result<T, NdrError>,
    ) -> Result<Vec<T>, NdrError> {
        let count = self.conformance(element_size)?;
        self.elements(count, element_size, read)
    }

    /// `[size_is(m), length_is(n)] T a[]`: max_count, offset, actual_count, then the
    /// actual_count elements.
    pub fn conformant_varying_array<T>(
        &mut self,
        element_size: usize,
        read: impl FnMut(&mut Self) -> Result<T, NdrError>,
    ) -> Result<Vec<T>, NdrError> {
        let max = self.varying_conformance()?;
        let count = self.variance(max, element_size)?;
        self.elements(count, element_size, read)
    }

    /// `[length_is(n)] T a[fixed]`: offset, actual_count (at most `fixed`), the elements.
    pub fn varying_array<T>(
        &mut self,
        fixed: u32,
        element_size: usize,
        read: impl FnMut(&mut Self) -> Result<T, NdrError>,
    ) -> Result<Vec<T>, NdrError> {
        let count = self.variance(fixed, element_size)?;
        self.elements(count, element_size, read)
    }

    /// `[size_is(n)] byte a[]`, borrowed.
    pub fn conformant_bytes(&mut self) -> Result<&'a [u8], NdrError> {
        let count = self.conformance(1)?;
        self.bytes(count)
    }

    /// `[size_is(m), length_is(n)] byte a[]`, borrowed.
    pub fn conformant_varying_bytes(&mut self) -> Result<&'a [u8], NdrError> {
        let max = self.varying_conformance()?;
        let count = self.variance(max, 1)?;
        self.bytes(count)
    }

    /// A string's max_count (the elements limit does not apply; the string one does).
    fn string_conformance(&mut self) -> Result<u32, NdrError> {
        let count = self.u32()?;
        let limit = self.limits.max_string;
        if usize::try_from(count).unwrap_or(usize::MAX) > limit {
            return Err(NdrError::CountOverLimit { count, limit });
        }
        Ok(count)
    }

    /// The characters of a string whose max is known, NUL checked and dropped.
    fn string_body(&mut self, max: u32) -> Result<&'a [u8], NdrError> {
        let count = self.variance_within(max, 1, self.limits.max_string)?;
        match self.bytes(count)?.split_last() {
            Some((0, chars)) => Ok(chars),
            _ => Err(NdrError::UnterminatedString),
        }
    }

    /// `[string] char *`: max_count, offset, actual_count, the characters with their
    /// NUL. Returns the characters without it (8-bit, as sent; no check of the set).
    pub fn string(&mut self) -> Result<Vec<u8>, NdrError> {
        let max = self.string_conformance()?;
        Ok(self.string_body(max)?.to_vec())
    }

    /// `[string] char a[fixed]` (a varying string, as the endpoint mapper's
    /// annotation): offset, actual_count (at most `fixed`), the characters with NUL.
    pub fn varying_string(&mut self, fixed: u32) -> Result<Vec<u8>, NdrError> {
        Ok(self.string_body(fixed)?.to_vec())
    }

    /// `[string] wchar_t *`: as [`NdrReader::string`] with UTF-16LE units (2-aligned,
    /// which the 4-aligned counts already are).
    pub fn wstring(&mut self) -> Result<String, NdrError> {
        let max = self.string_conformance()?;
        let count = self.variance_within(max, 2, self.limits.max_string)?;
        let raw = self.bytes(count * 2)?;
        let units = raw
            .chunks_exact(2)
            .map(|u| u16::from_le_bytes([u[0], u[1]]));
        let mut units: Vec<u16> = units.collect();
        if units.pop() != Some(0) {
            return Err(NdrError::UnterminatedString);
        }
        String::from_utf16(&units).map_err(|_| NdrError::InvalidUtf16)
    }
}
