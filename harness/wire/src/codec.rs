//! Binary codec primitives: a bounds-checked [`Reader`] over a byte slice, an append-only
//! [`Writer`], the [`Codec`] trait and [`DecodeError`].
//!
//! Every read checks the length it needs against the bytes really there before it
//! touches (or allocates for) anything, so a length field read from the wire can never
//! size an allocation by itself: `take(n)` hands out a sub-slice, not a copy.

use std::fmt;

/// Why decoding stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended early: `needed` more octets would let the read go on.
    #[error("input truncated: {needed} more octets needed")]
    Incomplete { needed: usize },
    /// The octets are there but wrong.
    #[error("invalid input: {0}")]
    Invalid(&'static str),
}

/// A value with a wire form.
pub trait Codec: Sized {
    fn encode(&self, w: &mut Writer);
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// The encoding as a fresh vector.
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.encode(&mut w);
        w.into_bytes()
    }
}

/// Reads a byte slice front to back.
#[derive(Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("position", &self.pos)
            .field("remaining", &self.remaining())
            .finish()
    }
}

macro_rules! read_int {
    ($($le:ident, $be:ident, $t:ty;)*) => {$(
        #[doc = concat!("A little-endian `", stringify!($t), "`.")]
        pub fn $le(&mut self) -> Result<$t, DecodeError> {
            Ok(<$t>::from_le_bytes(self.array()?))
        }
        #[doc = concat!("A big-endian `", stringify!($t), "`.")]
        pub fn $be(&mut self) -> Result<$t, DecodeError> {
            Ok(<$t>::from_be_bytes(self.array()?))
        }
    )*};
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    /// Octets read (or skipped) so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Octets left.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// What is left, without consuming it.
    pub fn rest(&self) -> &'a [u8] {
        self.data.get(self.pos..).unwrap_or_default()
    }

    /// `Incomplete` unless `n` octets are left.
    fn need(&self, n: usize) -> Result<(), DecodeError> {
        match n.checked_sub(self.remaining()) {
            Some(short) if short > 0 => Err(DecodeError::Incomplete { needed: short }),
            _ => Ok(()),
        }
    }

    /// The next `n` octets, borrowed.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        self.need(n)?;
        let out = self.data.get(self.pos..self.pos + n).unwrap_or_default();
        self.pos += n;
        Ok(out)
    }

    /// The next `N` octets as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        self.take(n).map(|_| ())
    }

    /// A reader over the next `n` octets (consumed here); its positions start at 0.
    pub fn sub(&mut self, n: usize) -> Result<Reader<'a>, DecodeError> {
        self.take(n).map(Reader::new)
    }

    /// Skips to the next multiple of `n` counted from this reader's start (NDR aligns
    /// to 2, 4 and 8 this way). `n` of 0 or 1 does nothing.
    pub fn align(&mut self, n: usize) -> Result<(), DecodeError> {
        if n <= 1 {
            return Ok(());
        }
        let pad = (n - self.pos % n) % n;
        self.skip(pad)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    read_int! {
        u16_le, u16_be, u16;
        u32_le, u32_be, u32;
        u64_le, u64_be, u64;
    }
}

/// An append-only encoder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Writer {
    buf: Vec<u8>,
}

/// A length field reserved by [`Writer::reserve`], filled in by one of the `patch_`
/// methods once the length is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a reserved field stays zero until it is patched"]
pub struct Reserved {
    at: usize,
    len: usize,
}

macro_rules! write_int {
    ($($le:ident, $be:ident, $t:ty;)*) => {$(
        #[doc = concat!("Appends a little-endian `", stringify!($t), "`.")]
        pub fn $le(&mut self, v: $t) {
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
        #[doc = concat!("Appends a big-endian `", stringify!($t), "`.")]
        pub fn $be(&mut self, v: $t) {
            self.buf.extend_from_slice(&v.to_be_bytes());
        }
    )*};
}

impl Writer {
    pub fn new() -> Self {
        Writer::default()
    }

    /// Octets written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub fn put_u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    write_int! {
        put_u16_le, put_u16_be, u16;
        put_u32_le, put_u32_be, u32;
        put_u64_le, put_u64_be, u64;
    }

    pub fn put_bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// Appends `n` zero octets.
    pub fn put_zeros(&mut self, n: usize) {
        self.buf.resize(self.buf.len() + n, 0);
    }

    /// Zero octets up to the next multiple of `n` from the start.
    pub fn pad_to(&mut self, n: usize) {
        if n > 1 {
            self.put_zeros((n - self.buf.len() % n) % n);
        }
    }

    /// Reserves `len` zero octets to be filled in later.
    pub fn reserve(&mut self, len: usize) -> Reserved {
        let at = self.buf.len();
        self.put_zeros(len);
        Reserved { at, len }
    }

    /// Overwrites a reserved field; `bytes` must have the reserved length (a shorter or
    /// longer value is an encoder bug, so only the overlapping part is written).
    pub fn patch(&mut self, field: Reserved, bytes: &[u8]) {
        debug_assert_eq!(field.len, bytes.len(), "patch of the wrong width");
        let n = field.len.min(bytes.len());
        if let Some(dst) = self.buf.get_mut(field.at..field.at + n) {
            dst.copy_from_slice(&bytes[..n]);
        }
    }

    pub fn patch_u16_le(&mut self, field: Reserved, v: u16) {
        self.patch(field, &v.to_le_bytes());
    }

    pub fn patch_u32_le(&mut self, field: Reserved, v: u32) {
        self.patch(field, &v.to_le_bytes());
    }

    pub fn patch_u16_be(&mut self, field: Reserved, v: u16) {
        self.patch(field, &v.to_be_bytes());
    }

    pub fn patch_u32_be(&mut self, field: Reserved, v: u32) {
        self.patch(field, &v.to_be_bytes());
    }
}

/// A wire enumeration that keeps unknown values: a newtype over an integer with named
/// constants, a `Debug` that prints `NAME (0x..)` for known values and `0x..` otherwise,
/// `From` both ways, and a [`Codec`] in the named endianness.
///
/// ```
/// harness_wire::wire_enum! {
///     /// Example.
///     pub struct Kind(u16, le) {
///         A = 1,
///         B = 2,
///     }
/// }
/// assert_eq!(format!("{:?}", Kind::B), "Kind::B (0x0002)");
/// assert_eq!(format!("{:?}", Kind::from(7u16)), "Kind(0x0007)");
/// ```
#[macro_export]
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident($int:ident, $endian:ident) {
            $( $(#[$vmeta:meta])* $variant:ident = $value:expr, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        $vis struct $name(pub $int);

        #[allow(dead_code)]
        impl $name {
            $( $(#[$vmeta])* pub const $variant: Self = Self($value); )*

            /// The constant's name, for known values.
            pub fn name(self) -> Option<&'static str> {
                match self {
                    $( Self::$variant => Some(stringify!($variant)), )*
                    _ => None,
                }
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                const WIDTH: usize = 2 + 2 * ::std::mem::size_of::<$int>();
                match self.name() {
                    Some(n) => write!(
                        f, "{}::{} ({:#0w$x})", stringify!($name), n, self.0, w = WIDTH
                    ),
                    None => write!(f, "{}({:#0w$x})", stringify!($name), self.0, w = WIDTH),
                }
            }
        }

        impl From<$int> for $name {
            fn from(v: $int) -> Self {
                Self(v)
            }
        }

        impl From<$name> for $int {
            fn from(v: $name) -> Self {
                v.0
            }
        }

        impl $crate::codec::Codec for $name {
            fn encode(&self, w: &mut $crate::codec::Writer) {
                $crate::wire_enum!(@put $int, $endian, w, self.0);
            }
            fn decode(r: &mut $crate::codec::Reader<'_>) -> Result<Self, $crate::codec::DecodeError> {
                Ok(Self($crate::wire_enum!(@get $int, $endian, r)?))
            }
        }
    };
    (@put u8, $e:ident, $w:ident, $v:expr) => { $w.put_u8($v) };
    (@put u16, le, $w:ident, $v:expr) => { $w.put_u16_le($v) };
    (@put u16, be, $w:ident, $v:expr) => { $w.put_u16_be($v) };
    (@put u32, le, $w:ident, $v:expr) => { $w.put_u32_le($v) };
    (@put u32, be, $w:ident, $v:expr) => { $w.put_u32_be($v) };
    (@get u8, $e:ident, $r:ident) => { $r.u8() };
    (@get u16, le, $r:ident) => { $r.u16_le() };
    (@get u16, be, $r:ident) => { $r.u16_be() };
    (@get u32, le, $r:ident) => { $r.u32_le() };
    (@get u32, be, $r:ident) => { $r.u32_be() };
}

#[cfg(test)]
mod tests {
    use super::*;

    wire_enum! {
        /// A test enumeration.
        pub struct Colour(u16, be) {
            RED = 1,
            GREEN = 0x0102,
        }
    }

    #[test]
    fn integers_both_ways() {
        let mut w = Writer::new();
        w.put_u8(0xAB);
        w.put_u16_le(0x0102);
        w.put_u16_be(0x0102);
        w.put_u32_le(0x0102_0304);
        w.put_u32_be(0x0102_0304);
        w.put_u64_le(0x0102_0304_0506_0708);
        w.put_u64_be(0x0102_0304_0506_0708);
        let bytes = w.into_bytes();
        assert_eq!(&bytes[..5], &[0xAB, 2, 1, 1, 2]);
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8(), Ok(0xAB));
        assert_eq!(r.u16_le(), Ok(0x0102));
        assert_eq!(r.u16_be(), Ok(0x0102));
        assert_eq!(r.u32_le(), Ok(0x0102_0304));
        assert_eq!(r.u32_be(), Ok(0x0102_0304));
        assert_eq!(r.u64_le(), Ok(0x0102_0304_0506_0708));
        assert_eq!(r.u64_be(), Ok(0x0102_0304_0506_0708));
        assert!(r.is_empty());
        assert_eq!(r.u8(), Err(DecodeError::Incomplete { needed: 1 }));
    }

    #[test]
    fn truncation_reports_what_is_missing_and_consumes_nothing() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u32_le(), Err(DecodeError::Incomplete { needed: 1 }));
        assert_eq!(r.u64_be(), Err(DecodeError::Incomplete { needed: 5 }));
        assert_eq!(r.position(), 0);
        assert_eq!(r.take(2), Ok(&[1u8, 2][..]));
        assert_eq!(r.take(4), Err(DecodeError::Incomplete { needed: 3 }));
        assert_eq!(r.skip(1), Ok(()));
        assert_eq!(r.remaining(), 0);
        assert_eq!(r.take(0), Ok(&[][..]));
    }

    #[test]
    fn lengths_beyond_the_input_never_allocate() {
        // A length field claiming 4 GiB over a 2-octet input: refused before any copy.
        let mut r = Reader::new(&[0xFF, 0xFF]);
        assert_eq!(
            r.take(usize::MAX),
            Err(DecodeError::Incomplete {
                needed: usize::MAX - 2
            })
        );
        let big = u32::MAX as usize;
        assert!(matches!(
            r.sub(big),
            Err(DecodeError::Incomplete { needed }) if needed == big - 2
        ));
        assert_eq!(r.position(), 0);
    }

    #[test]
    fn sub_readers_and_alignment_count_from_their_own_start() {
        let data = [0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
        let mut r = Reader::new(&data);
        r.skip(1).unwrap();
        r.align(4).unwrap();
        assert_eq!(r.position(), 4);
        r.align(4).unwrap();
        assert_eq!(r.position(), 4);
        r.skip(1).unwrap();
        let mut sub = r.sub(6).unwrap();
        assert_eq!(r.position(), 11);
        assert_eq!(sub.u8(), Ok(5));
        sub.align(2).unwrap();
        assert_eq!(sub.u8(), Ok(7));
        assert_eq!(sub.align(8), Err(DecodeError::Incomplete { needed: 2 }));
        assert_eq!(sub.position(), 3);
        r.align(1).unwrap();
        r.align(0).unwrap();
        assert_eq!(r.align(8), Err(DecodeError::Incomplete { needed: 4 }));
        assert_eq!(r.rest(), &[11]);
    }

    #[test]
    fn writer_pads_and_patches() {
        let mut w = Writer::new();
        w.put_u8(1);
        w.pad_to(4);
        assert_eq!(w.len(), 4);
        w.pad_to(4);
        assert_eq!(w.len(), 4);
        let len = w.reserve(2);
        let big = w.reserve(4);
        w.put_bytes(b"abc");
        w.patch_u16_le(len, 3);
        w.patch_u32_be(big, 0x0A0B_0C0D);
        assert_eq!(
            w.as_bytes(),
            &[1, 0, 0, 0, 3, 0, 0x0A, 0x0B, 0x0C, 0x0D, b'a', b'b', b'c']
        );
        let r2 = w.reserve(4);
        w.patch_u32_le(r2, 7);
        w.patch_u16_be(len, 0x0102);
        assert_eq!(&w.as_bytes()[4..6], &[1, 2]);
        assert_eq!(&w.as_bytes()[13..], &[7, 0, 0, 0]);
    }

    #[test]
    fn wire_enums_keep_unknown_values() {
        assert_eq!(format!("{:?}", Colour::RED), "Colour::RED (0x0001)");
        assert_eq!(format!("{:?}", Colour(0xBEEF)), "Colour(0xbeef)");
        assert_eq!(Colour::from(0x0102u16), Colour::GREEN);
        assert_eq!(u16::from(Colour::GREEN), 0x0102);
        assert_eq!(Colour::GREEN.to_bytes(), vec![1, 2]);
        let mut r = Reader::new(&[0xBE, 0xEF, 0x00]);
        assert_eq!(Colour::decode(&mut r), Ok(Colour(0xBEEF)));
        assert_eq!(
            Colour::decode(&mut r),
            Err(DecodeError::Incomplete { needed: 1 })
        );
        assert_eq!(Colour(9).name(), None);
    }
}
