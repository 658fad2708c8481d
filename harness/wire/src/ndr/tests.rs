//! Round trips, alignment, the limits, lying counts and NULL pointers.

use super::*;

fn le32(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn small_limits() -> NdrLimits {
    NdrLimits {
        max_elements: 4,
        max_string: 6,
    }
}

#[test]
fn primitives_align_from_the_stub_start_with_zero_padding() {
    let mut w = NdrWriter::new();
    w.put_u8(1);
    w.put_u16(0x0302);
    w.put_u8(4);
    w.put_u32(0x0807_0605);
    w.put_u8(9);
    w.put_u64(0x1112_1314_1516_1718);
    w.put_i32(-2);
    assert_eq!(
        w.as_bytes(),
        [
            1, 0, 2, 3, 4, 0, 0, 0, 5, 6, 7, 8, 9, 0, 0, 0, 0x18, 0x17, 0x16, 0x15, 0x14, 0x13,
            0x12, 0x11, 0xfe, 0xff, 0xff, 0xff
        ]
    );
    let bytes = w.into_bytes();
    let mut r = NdrReader::new(&bytes);
    assert_eq!(r.u8(), Ok(1));
    assert_eq!(r.u16(), Ok(0x0302));
    assert_eq!(r.u8(), Ok(4));
    assert_eq!(r.u32(), Ok(0x0807_0605));
    assert_eq!(r.u8(), Ok(9));
    assert_eq!(r.u64(), Ok(0x1112_1314_1516_1718));
    assert_eq!(r.i32(), Ok(-2));
    assert!(r.is_empty());
    // Aligned reads at an aligned position skip nothing.
    let mut r = NdrReader::new(&bytes[8..]);
    r.align(4).unwrap();
    assert_eq!(r.position(), 0);
}

#[test]
fn padding_past_the_end_is_truncation() {
    let mut r = NdrReader::new(&[1, 0, 0, 0, 5]);
    r.u8().unwrap();
    assert_eq!(r.u32(), Err(NdrError::Truncated { needed: 3 }));
    let mut r = NdrReader::new(&[1, 0]);
    r.u8().unwrap();
    assert_eq!(r.u32(), Err(NdrError::Truncated { needed: 2 }));
    let mut r = NdrReader::new(&[1, 2]);
    r.u8().unwrap();
    assert_eq!(r.u64(), Err(NdrError::Truncated { needed: 6 }));
}

#[test]
fn uuids_and_context_handles_round_trip() {
    let uuid = Uuid::new(
        0xe1af_8308,
        0x5d1f,
        0x11c9,
        [0x91, 0xa4, 8, 0, 0x2b, 0x14, 0xa0, 0xfa],
    );
    let handle = ContextHandle {
        attributes: 0,
        uuid: Uuid::new(1, 2, 3, [4; 8]),
    };
    let mut w = NdrWriter::new();
    w.put_u8(0xff);
    w.put_uuid(&uuid);
    w.put_context_handle(&handle);
    w.put_context_handle(&ContextHandle::NIL);
    assert_eq!(w.len(), 4 + 16 + 2 * ContextHandle::WIRE_LEN);
    assert_eq!(&w.as_bytes()[4..8], &[0x08, 0x83, 0xaf, 0xe1]);
    let bytes = w.into_bytes();
    let mut r = NdrReader::new(&bytes);
    r.u8().unwrap();
    assert_eq!(r.uuid(), Ok(uuid));
    let read = r.context_handle().unwrap();
    assert_eq!(read, handle);
    assert!(!read.is_nil());
    assert!(r.context_handle().unwrap().is_nil());
    assert!(ContextHandle::new(Uuid::NIL).is_nil());
    let truncated = &bytes[..bytes.len() - 1];
    let mut r = NdrReader::new(truncated);
    r.skip_to(20 + 20);
    assert_eq!(r.context_handle(), Err(NdrError::Truncated { needed: 1 }));
}

impl NdrReader<'_> {
    fn skip_to(&mut self, at: usize) {
        let n = at - self.position();
        self.bytes(n).unwrap();
    }
}

#[test]
fn arrays_round_trip() {
    let mut w = NdrWriter::new();
    w.put_conformant_bytes(b"abc");
    w.put_conformance(2);
    [7u32, 8].iter().for_each(|v| w.put_u32(*v));
    w.put_conformant_varying_bytes(10, b"xy");
    w.put_variance(1); // a varying array of fixed size 3 holding one u16
    w.put_u16(0xbeef);
    let bytes = w.into_bytes();
    assert_eq!(&bytes[..8], &[3, 0, 0, 0, b'a', b'b', b'c', 0]);
    let mut r = NdrReader::new(&bytes);
    assert_eq!(r.conformant_bytes(), Ok(&b"abc"[..]));
    assert_eq!(r.conformant_array(4, NdrReader::u32), Ok(vec![7, 8]));
    assert_eq!(r.conformant_varying_bytes(), Ok(&b"xy"[..]));
    assert_eq!(r.varying_array(3, 2, NdrReader::u16), Ok(vec![0xbeef]));
    assert!(r.is_empty());
}

#[test]
fn conformant_varying_max_count_may_exceed_what_is_sent() {
    // max_count 500 (a [size_is(max_towers)] out array), one element sent.
    let bytes = le32(&[500, 0, 1, 42]);
    let mut r = NdrReader::new(&bytes);
    assert_eq!(r.conformant_varying_array(4, NdrReader::u32), Ok(vec![42]));
}

#[test]
fn strings_round_trip_with_their_nul() {
    let mut w = NdrWriter::new();
    w.put_string(b"/o=First Organization");
    w.put_wstring("ab\u{1F600}");
    w.put_varying_string(b"Endpoint");
    w.put_string(b"");
    let bytes = w.into_bytes();
    let mut r = NdrReader::new(&bytes);
    assert_eq!(r.string(), Ok(b"/o=First Organization".to_vec()));
    assert_eq!(r.wstring(), Ok("ab\u{1F600}".to_string()));
    assert_eq!(r.varying_string(64), Ok(b"Endpoint".to_vec()));
    assert_eq!(r.string(), Ok(vec![]));
    assert!(r.is_empty());
    // [string] wchar_t* "ab" as MIDL writes it.
    let mut w = NdrWriter::new();
    w.put_wstring("ab");
    let mut expected = le32(&[3, 0, 3]);
    expected.extend_from_slice(&[b'a', 0, b'b', 0, 0, 0]);
    assert_eq!(w.into_bytes(), expected);
}

#[test]
fn pointers_null_unique_full_and_ref() {
    let mut w = NdrWriter::new();
    assert_eq!(w.put_pointer(true), FIRST_REFERENT_ID);
    assert_eq!(w.put_pointer(false), 0);
    assert_eq!(w.put_pointer(true), FIRST_REFERENT_ID + REFERENT_ID_STEP);
    assert_eq!(w.put_pointer(true), 0x0002_0008);
    let bytes = w.into_bytes();
    assert_eq!(bytes, le32(&[0x20000, 0, 0x20004, 0x20008]));
    let mut r = NdrReader::new(&bytes);
    assert_eq!(r.unique_ptr(), Ok(Some(0x20000)));
    assert_eq!(r.unique_ptr(), Ok(None));
    assert_eq!(r.pointee(None, NdrReader::u32), Ok(None));

    let bytes = le32(&[5, 0, 5, 6]);
    let mut r = NdrReader::new(&bytes);
    assert_eq!(r.full_ptr(), Ok(FullPointer::New(5)));
    assert_eq!(r.full_ptr(), Ok(FullPointer::Null));
    assert_eq!(r.full_ptr(), Ok(FullPointer::Alias(5)));
    assert_eq!(r.full_ptr(), Ok(FullPointer::New(6)));

    let bytes = le32(&[0, 1]);
    let mut r = NdrReader::new(&bytes);
    assert_eq!(r.ref_ptr(), Err(NdrError::NullRefPointer));
    assert_eq!(r.ref_ptr(), Ok(1));
}

#[test]
fn top_level_pointee_follows_its_pointer() {
    // [in, unique] unsigned long *p; [in] unsigned long x;
    let bytes = le32(&[0x20000, 9, 10]);
    let mut r = NdrReader::new(&bytes);
    let p = r.unique_ptr().unwrap();
    assert_eq!(r.pointee(p, NdrReader::u32), Ok(Some(9)));
    assert_eq!(r.u32(), Ok(10));
}

#[test]
fn each_limit_is_checked_before_allocating() {
    let limits = small_limits();
    // Conformant: 5 elements > 4, though the octets are there.
    let mut bytes = le32(&[5]);
    bytes.extend_from_slice(&[0; 20]);
    let mut r = NdrReader::with_limits(&bytes, limits);
    assert_eq!(
        r.conformant_array(4, NdrReader::u32),
        Err(NdrError::CountOverLimit { count: 5, limit: 4 })
    );
    // Conformant-varying: max_count above the limit, and actual_count above it.
    let bytes = le32(&[5, 0, 1, 0]);
    let mut r = NdrReader::with_limits(&bytes, limits);
    assert_eq!(
        r.conformant_varying_bytes(),
        Err(NdrError::CountOverLimit { count: 5, limit: 4 })
    );
    let bytes = le32(&[0, 7, 9]);
    let mut r = NdrReader::with_limits(&bytes, limits);
    assert_eq!(
        r.varying_array(9, 1, NdrReader::u8),
        Err(NdrError::CountOverLimit { count: 7, limit: 4 })
    );
    // Strings: 7 characters > 6 (max_count, then actual_count of a varying string).
    let mut w = NdrWriter::new();
    w.put_string(b"abcdef");
    let bytes = w.into_bytes();
    let mut r = NdrReader::with_limits(&bytes, limits);
    assert_eq!(
        r.string(),
        Err(NdrError::CountOverLimit { count: 7, limit: 6 })
    );
    let mut r = NdrReader::with_limits(&bytes[4..], limits);
    assert_eq!(
        r.varying_string(64),
        Err(NdrError::CountOverLimit { count: 7, limit: 6 })
    );
    let mut w = NdrWriter::new();
    w.put_wstring("abcdef");
    let bytes = w.into_bytes();
    let mut r = NdrReader::with_limits(&bytes, limits);
    assert_eq!(
        r.wstring(),
        Err(NdrError::CountOverLimit { count: 7, limit: 6 })
    );
    // The default is what the module says.
    assert_eq!(NdrLimits::default().max_elements, 1 << 20);
    // A count the limit allows but the octets do not, via `elements` directly.
    let mut r = NdrReader::new(&[0; 8]);
    assert_eq!(
        r.elements(usize::MAX, 1, NdrReader::u8),
        Err(NdrError::CountOverLimit {
            count: u32::MAX,
            limit: 1 << 20
        })
    );
    assert_eq!(
        r.elements(3, 4, NdrReader::u32),
        Err(NdrError::CountBeyondInput {
            count: 3,
            element_size: 4,
            remaining: 8
        })
    );
}

#[test]
fn lying_counts_are_refused() {
    // max_count beyond the octets left (2 u32 elements claimed, 4 octets there).
    let bytes = le32(&[2, 7]);
    let mut r = NdrReader::new(&bytes);
    assert_eq!(
        r.conformant_array(4, NdrReader::u32),
        Err(NdrError::CountBeyondInput {
            count: 2,
            element_size: 4,
            remaining: 4
        })
    );
    // 4 GiB of bytes over a short stub.
    let bytes = le32(&[u32::MAX]);
    let mut r = NdrReader::with_limits(
        &bytes,
        NdrLimits {
            max_elements: usize::MAX,
            max_string: usize::MAX,
        },
    );
    assert!(matches!(
        r.conformant_bytes(),
        Err(NdrError::CountBeyondInput {
            count: u32::MAX,
            ..
        })
    ));
    // actual_count above max_count.
    let bytes = le32(&[1, 0, 2, 0, 0]);
    let mut r = NdrReader::new(&bytes);
    assert_eq!(
        r.conformant_varying_bytes(),
        Err(NdrError::ActualBeyondMax { actual: 2, max: 1 })
    );
    // A varying string longer than its fixed array.
    let bytes = le32(&[0, 65]);
    let mut r = NdrReader::new(&bytes);
    assert_eq!(
        r.varying_string(64),
        Err(NdrError::ActualBeyondMax {
            actual: 65,
            max: 64
        })
    );
    // offset other than 0.
    let bytes = le32(&[4, 1, 2, 0]);
    let mut r = NdrReader::new(&bytes);
    assert_eq!(
        r.conformant_varying_bytes(),
        Err(NdrError::NonZeroOffset(1))
    );
    // actual_count beyond the octets left.
    let bytes = le32(&[8, 0, 8, 0]);
    let mut r = NdrReader::new(&bytes);
    assert_eq!(
        r.conformant_varying_bytes(),
        Err(NdrError::CountBeyondInput {
            count: 8,
            element_size: 1,
            remaining: 4
        })
    );
}

#[test]
fn strings_without_nul_or_not_utf16_are_refused() {
    // "ab" with the count not covering a NUL.
    let mut bytes = le32(&[2, 0, 2]);
    bytes.extend_from_slice(b"ab");
    assert_eq!(
        NdrReader::new(&bytes).string(),
        Err(NdrError::UnterminatedString)
    );
    // actual_count 0: not even the NUL.
    let bytes = le32(&[0, 0, 0]);
    assert_eq!(
        NdrReader::new(&bytes).string(),
        Err(NdrError::UnterminatedString)
    );
    assert_eq!(
        NdrReader::new(&bytes).wstring(),
        Err(NdrError::UnterminatedString)
    );
    // Wide string of 3 units (6 octets) with 5 octets there: the odd length is short.
    let mut bytes = le32(&[3, 0, 3]);
    bytes.extend_from_slice(&[b'a', 0, b'b', 0, 0]);
    assert_eq!(
        NdrReader::new(&bytes).wstring(),
        Err(NdrError::CountBeyondInput {
            count: 3,
            element_size: 2,
            remaining: 5
        })
    );
    // Wide string ending in a non-NUL unit.
    let mut bytes = le32(&[2, 0, 2]);
    bytes.extend_from_slice(&[b'a', 0, b'b', 0]);
    assert_eq!(
        NdrReader::new(&bytes).wstring(),
        Err(NdrError::UnterminatedString)
    );
    // An unpaired high surrogate.
    let mut bytes = le32(&[2, 0, 2]);
    bytes.extend_from_slice(&[0x3d, 0xd8, 0, 0]);
    assert_eq!(
        NdrReader::new(&bytes).wstring(),
        Err(NdrError::InvalidUtf16)
    );
}

#[test]
fn ranges_and_error_mapping() {
    let bytes = le32(&[500, 501]);
    let mut r = NdrReader::new(&bytes);
    assert_eq!(r.u32_in_range(0, 500), Ok(500));
    assert_eq!(
        r.u32_in_range(0, 500),
        Err(NdrError::OutOfRange {
            value: 501,
            min: 0,
            max: 500
        })
    );
    assert_eq!(
        DecodeError::from(NdrError::Truncated { needed: 2 }),
        DecodeError::Incomplete { needed: 2 }
    );
    assert!(matches!(
        DecodeError::from(NdrError::NonZeroOffset(3)),
        DecodeError::Invalid(_)
    ));
    assert_eq!(
        NdrError::from(DecodeError::Invalid("x")),
        NdrError::Invalid("x")
    );
    assert_eq!(
        NdrError::UnterminatedString.fault_status(),
        FaultStatus::BAD_STUB_DATA
    );
    assert_eq!(FaultStatus::BAD_STUB_DATA.0, 0x6f7);
}
