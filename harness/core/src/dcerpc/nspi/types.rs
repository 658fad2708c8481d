//! The NDR structures of NSPI ([MS-OXNSPI] 2.2.2-2.2.8, IDL in [MS-OXNSPI] 6), decoded from
//! request stubs and encoded into response stubs with `harness_wire::ndr`.
//!
//! The interface is `pointer_default(unique)`: every embedded pointer below is unique;
//! top-level pointer parameters without an attribute are `[ref]` (no wire form).
//! Embedded pointees follow their containing structure or array, each pointee followed
//! at once by its own pointees ([C706] 14.3.12.3): hence the `*_flat` / `*_deferred`
//! pairs.

use harness_wire::ndr::{NdrError, NdrReader, NdrWriter};

/// `[range(0,100000)]` on the counts of [MS-OXNSPI] 2.2.2.
pub const MAX_VALUES: u32 = 100_000;
/// `[range(0,2097152)] DWORD cb` of Binary_r ([MS-OXNSPI] 2.2.2.3).
pub const MAX_BINARY: u32 = 2_097_152;
/// Restrictions nest at most this deep: deeper is refused as bad stub data before the
/// decoder's recursion can hurt (the IDL bounds nothing; Exchange's own limit is not
/// documented).
pub const MAX_RESTRICTION_DEPTH: usize = 16;

/// Property types ([MS-OXCDATA] 2.11.1; the PROP_VAL_UNION cases of [MS-OXNSPI] 2.2.2.11).
pub mod ptype {
    pub const UNSPECIFIED: u32 = 0x0000;
    pub const NULL: u32 = 0x0001;
    pub const I16: u32 = 0x0002;
    pub const I32: u32 = 0x0003;
    pub const ERROR: u32 = 0x000A;
    pub const BOOLEAN: u32 = 0x000B;
    pub const EMBEDDED_TABLE: u32 = 0x000D;
    pub const STRING8: u32 = 0x001E;
    pub const UNICODE: u32 = 0x001F;
    pub const TIME: u32 = 0x0040;
    pub const GUID: u32 = 0x0048;
    pub const BINARY: u32 = 0x0102;
    pub const MV_I16: u32 = 0x1002;
    pub const MV_I32: u32 = 0x1003;
    pub const MV_STRING8: u32 = 0x101E;
    pub const MV_UNICODE: u32 = 0x101F;
    pub const MV_TIME: u32 = 0x1040;
    pub const MV_GUID: u32 = 0x1048;
    pub const MV_BINARY: u32 = 0x1102;
}

/// The type half of a proptag.
pub fn prop_type(tag: u32) -> u32 {
    tag & 0xFFFF
}

/// `tag` with its type replaced.
pub fn with_type(tag: u32, ty: u32) -> u32 {
    (tag & 0xFFFF_0000) | ty
}

/// ```text
/// typedef struct {
///     DWORD SortType; DWORD ContainerID; DWORD CurrentRec; long Delta;
///     DWORD NumPos; DWORD TotalRecs; DWORD CodePage; DWORD TemplateLocale;
///     DWORD SortLocale;
/// } STAT;                                                  // [MS-OXNSPI] 2.2.8
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stat {
    pub sort_type: u32,
    pub container_id: u32,
    pub current_rec: u32,
    pub delta: i32,
    pub num_pos: u32,
    pub total_recs: u32,
    pub code_page: u32,
    pub template_locale: u32,
    pub sort_locale: u32,
}

impl Stat {
    pub fn read(r: &mut NdrReader<'_>) -> Result<Self, NdrError> {
        Ok(Stat {
            sort_type: r.u32()?,
            container_id: r.u32()?,
            current_rec: r.u32()?,
            delta: r.i32()?,
            num_pos: r.u32()?,
            total_recs: r.u32()?,
            code_page: r.u32()?,
            template_locale: r.u32()?,
            sort_locale: r.u32()?,
        })
    }

    pub fn write(&self, w: &mut NdrWriter) {
        for v in [
            self.sort_type,
            self.container_id,
            self.current_rec,
            self.delta as u32,
            self.num_pos,
            self.total_recs,
            self.code_page,
            self.template_locale,
            self.sort_locale,
        ] {
            w.put_u32(v);
        }
    }
}

/// ```text
/// typedef struct _PropertyTagArray_r {
///     [range(0,100000)] DWORD cValues;
///     [size_is(cValues+1), length_is(cValues)] DWORD aulPropTag[];
/// } PropertyTagArray_r;                                    // [MS-OXNSPI] 2.2.2.2
/// ```
/// Read: the transmitted (actual_count) elements are the tags. `cValues` is range
/// checked but not matched against the counts: impacket's `hNspiGetProps` sends
/// cValues = n + 1 with n tags, and Exchange answers it.
pub fn read_prop_tag_array(r: &mut NdrReader<'_>) -> Result<Vec<u32>, NdrError> {
    let max = r.varying_conformance()?;
    r.u32_in_range(0, MAX_VALUES)?;
    let count = r.variance(max, 4)?;
    r.elements(count, 4, |r| r.u32())
}

/// Writes a PropertyTagArray_r (max_count cValues + 1, as the IDL sizes it).
pub fn write_prop_tag_array(w: &mut NdrWriter, tags: &[u32]) {
    w.put_conformance(tags.len() + 1);
    w.put_u32(tags.len() as u32);
    w.put_variance(tags.len());
    tags.iter().for_each(|t| w.put_u32(*t));
}

/// A `[unique] PropertyTagArray_r*` parameter.
pub fn read_prop_tags_ptr(r: &mut NdrReader<'_>) -> Result<Option<Vec<u32>>, NdrError> {
    let ptr = r.unique_ptr()?;
    r.pointee(ptr, read_prop_tag_array)
}

/// ```text
/// typedef struct { [range(0,100000)] DWORD Count;
///     [size_is(Count)] [string] char* Strings[]; } StringsArray_r;
/// typedef struct { [range(0,100000)] DWORD Count;
///     [size_is(Count)] [string] wchar_t* Strings[]; } WStringsArray_r;
/// ```
/// ([MS-OXNSPI] 2.2.7.1, 2.2.7.2.) NULL elements read as `None`.
pub fn read_strings_array<T>(
    r: &mut NdrReader<'_>,
    read_string: impl Fn(&mut NdrReader<'_>) -> Result<T, NdrError>,
) -> Result<Vec<Option<T>>, NdrError> {
    let max = r.conformance(4)?;
    let count = r.u32_in_range(0, MAX_VALUES)?;
    if count as usize != max {
        return Err(NdrError::Invalid(
            "StringsArray_r: Count differs from size_is",
        ));
    }
    let ptrs = r.elements(max, 4, |r| r.unique_ptr())?;
    let mut out = Vec::with_capacity(ptrs.len());
    for ptr in ptrs {
        out.push(r.pointee(ptr, &read_string)?);
    }
    Ok(out)
}

/// The value of a property ([MS-OXNSPI] 2.2.2.11):
///
/// ```text
/// typedef [switch_type(long)] union _PV_r {
///     [case(0x00000002)] short int i;          [case(0x00000003)] long l;
///     [case(0x0000000B)] unsigned short int b; [case(0x0000001E)] [string] char* lpszA;
///     [case(0x00000102)] Binary_r bin;         [case(0x0000001F)] [string] wchar_t* lpszW;
///     [case(0x00000048)] FlatUID_r* lpguid;    [case(0x00000040)] FILETIME ft;
///     [case(0x0000000A)] long err;             [case(0x00001002)] ShortArray_r MVi;
///     [case(0x00001003)] LongArray_r MVl;      [case(0x0000101E)] StringArray_r MVszA;
///     [case(0x00001102)] BinaryArray_r MVbin;  [case(0x00001048)] FlatUIDArray_r MVguid;
///     [case(0x0000101F)] WStringArray_r MVszW; [case(0x00001040)] DateTimeArray_r MVft;
///     [case(0x00000001, 0x0000000D)] long lReserved;
/// } PROP_VAL_UNION;
/// typedef struct _PropertyValue_r {
///     DWORD ulPropTag; DWORD ulReserved;
///     [switch_is((long)(ulPropTag & 0x0000FFFF))] PROP_VAL_UNION Value;
/// } PropertyValue_r;                                        // 2.2.2.12
/// typedef struct _Binary_r { [range(0,2097152)] DWORD cb; [size_is(cb)] BYTE* lpb; } Binary_r;
/// typedef struct _ShortArray_r { [range(0,100000)] DWORD cValues; [size_is(cValues)] short int* lpi; } ShortArray_r;
/// typedef struct _LongArray_r { [range(0,100000)] DWORD cValues; [size_is(cValues)] long* lpl; } LongArray_r;
/// typedef struct _StringArray_r { [range(0,100000)] DWORD cValues; [size_is(cValues)] [string] char** lppszA; } StringArray_r;
/// typedef struct _BinaryArray_r { [range(0,100000)] DWORD cValues; [size_is(cValues)] Binary_r* lpbin; } BinaryArray_r;
/// typedef struct _FlatUIDArray_r { [range(0,100000)] DWORD cValues; [size_is(cValues)] FlatUID_r** lpguid; } FlatUIDArray_r;
/// typedef struct _WStringArray_r { [range(0,100000)] DWORD cValues; [size_is(cValues)] [string] wchar_t** lppszW; } WStringArray_r;
/// typedef struct _DateTimeArray_r { [range(0,100000)] DWORD cValues; [size_is(cValues)] FILETIME* lpft; } DateTimeArray_r;
/// typedef struct _FlatUID_r { BYTE ab[16]; } FlatUID_r;
/// ```
/// FlatUID_r is 16 bytes, FILETIME two DWORDs (a u64 here). A NULL string or GUID
/// pointer reads as empty / all-zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropValue {
    I16(i16),
    I32(i32),
    Bool(u16),
    String8(Vec<u8>),
    Unicode(String),
    Binary(Vec<u8>),
    Guid([u8; 16]),
    Time(u64),
    Error(u32),
    MvI16(Vec<i16>),
    MvI32(Vec<i32>),
    MvString8(Vec<Vec<u8>>),
    MvBinary(Vec<Vec<u8>>),
    MvGuid(Vec<[u8; 16]>),
    MvUnicode(Vec<String>),
    MvTime(Vec<u64>),
    /// PtypNull, PtypEmbeddedTable (and PtypUnspecified, which impacket also sends so).
    Reserved(i32),
}

impl PropValue {
    /// The property type of this arm.
    pub fn native_type(&self) -> u32 {
        match self {
            PropValue::I16(_) => ptype::I16,
            PropValue::I32(_) => ptype::I32,
            PropValue::Bool(_) => ptype::BOOLEAN,
            PropValue::String8(_) => ptype::STRING8,
            PropValue::Unicode(_) => ptype::UNICODE,
            PropValue::Binary(_) => ptype::BINARY,
            PropValue::Guid(_) => ptype::GUID,
            PropValue::Time(_) => ptype::TIME,
            PropValue::Error(_) => ptype::ERROR,
            PropValue::MvI16(_) => ptype::MV_I16,
            PropValue::MvI32(_) => ptype::MV_I32,
            PropValue::MvString8(_) => ptype::MV_STRING8,
            PropValue::MvBinary(_) => ptype::MV_BINARY,
            PropValue::MvGuid(_) => ptype::MV_GUID,
            PropValue::MvUnicode(_) => ptype::MV_UNICODE,
            PropValue::MvTime(_) => ptype::MV_TIME,
            PropValue::Reserved(_) => ptype::NULL,
        }
    }
}

/// A PropertyValue_r: its proptag and value (whose arm the tag's type selects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyValue {
    pub tag: u32,
    pub value: PropValue,
}

impl PropertyValue {
    /// The PtypErrorCode value for `tag` (type replaced by 0x000A).
    pub fn error(tag: u32, code: u32) -> Self {
        PropertyValue {
            tag: with_type(tag, ptype::ERROR),
            value: PropValue::Error(code),
        }
    }
}

/// What the flat part of a PropertyValue_r left for the deferred part.
enum PendingValue {
    Done(PropValue),
    /// Arm with one pointer (and a count, for arrays and Binary_r).
    Pointer {
        ty: u32,
        count: u32,
        ptr: Option<u32>,
    },
}

fn read_guid(r: &mut NdrReader<'_>) -> Result<[u8; 16], NdrError> {
    let b = r.bytes(16)?;
    let mut g = [0u8; 16];
    g.copy_from_slice(b);
    Ok(g)
}

fn read_filetime(r: &mut NdrReader<'_>) -> Result<u64, NdrError> {
    let low = r.u32()?;
    let high = r.u32()?;
    Ok(u64::from(high) << 32 | u64::from(low))
}

/// A `[size_is(count)]` conformant array pointee whose max_count must be `count`.
fn sized_array<T>(
    r: &mut NdrReader<'_>,
    count: u32,
    element_size: usize,
    read: impl FnMut(&mut NdrReader<'_>) -> Result<T, NdrError>,
) -> Result<Vec<T>, NdrError> {
    let max = r.conformance(element_size)?;
    if max != count as usize {
        return Err(NdrError::Invalid(
            "array max_count differs from its size_is count",
        ));
    }
    r.elements(max, element_size, read)
}

fn read_value_flat(r: &mut NdrReader<'_>) -> Result<(u32, PendingValue), NdrError> {
    let tag = r.u32()?;
    let _reserved = r.u32()?;
    let discriminant = r.u32()?;
    let ty = prop_type(tag);
    if discriminant != ty {
        return Err(NdrError::Invalid(
            "PROP_VAL_UNION discriminant differs from the tag",
        ));
    }
    let done = |v| Ok((tag, PendingValue::Done(v)));
    let pointer = |ty, count, ptr| Ok((tag, PendingValue::Pointer { ty, count, ptr }));
    match ty {
        ptype::I16 => done(PropValue::I16(r.u16()? as i16)),
        ptype::I32 => done(PropValue::I32(r.i32()?)),
        ptype::BOOLEAN => done(PropValue::Bool(r.u16()?)),
        ptype::ERROR => done(PropValue::Error(r.u32()?)),
        ptype::TIME => done(PropValue::Time(read_filetime(r)?)),
        ptype::NULL | ptype::EMBEDDED_TABLE | ptype::UNSPECIFIED => {
            done(PropValue::Reserved(r.i32()?))
        }
        ptype::STRING8 | ptype::UNICODE | ptype::GUID => pointer(ty, 0, r.unique_ptr()?),
        ptype::BINARY => {
            let cb = r.u32_in_range(0, MAX_BINARY)?;
            pointer(ty, cb, r.unique_ptr()?)
        }
        ptype::MV_I16
        | ptype::MV_I32
        | ptype::MV_STRING8
        | ptype::MV_UNICODE
        | ptype::MV_BINARY
        | ptype::MV_GUID
        | ptype::MV_TIME => {
            let count = r.u32_in_range(0, MAX_VALUES)?;
            pointer(ty, count, r.unique_ptr()?)
        }
        _ => Err(NdrError::Invalid("PROP_VAL_UNION: unknown property type")),
    }
}

/// Reads the pointees of a string array's elements (after the array of pointers).
fn string_pointees<T>(
    r: &mut NdrReader<'_>,
    ptrs: Vec<Option<u32>>,
    read: impl Fn(&mut NdrReader<'_>) -> Result<T, NdrError>,
    null: impl Fn() -> T,
) -> Result<Vec<T>, NdrError> {
    let mut out = Vec::with_capacity(ptrs.len());
    for ptr in ptrs {
        out.push(r.pointee(ptr, &read)?.unwrap_or_else(&null));
    }
    Ok(out)
}

fn read_value_deferred(
    r: &mut NdrReader<'_>,
    pending: PendingValue,
) -> Result<PropValue, NdrError> {
    let (ty, count, ptr) = match pending {
        PendingValue::Done(v) => return Ok(v),
        PendingValue::Pointer { ty, count, ptr } => (ty, count, ptr),
    };
    let Some(_) = ptr else {
        return Ok(empty_value(ty));
    };
    Ok(match ty {
        ptype::STRING8 => PropValue::String8(r.string()?),
        ptype::UNICODE => PropValue::Unicode(r.wstring()?),
        ptype::GUID => PropValue::Guid(read_guid(r)?),
        ptype::BINARY => {
            let max = r.conformance(1)?;
            if max != count as usize {
                return Err(NdrError::Invalid("Binary_r: max_count differs from cb"));
            }
            PropValue::Binary(r.bytes(max)?.to_vec())
        }
        ptype::MV_I16 => PropValue::MvI16(sized_array(r, count, 2, |r| Ok(r.u16()? as i16))?),
        ptype::MV_I32 => PropValue::MvI32(sized_array(r, count, 4, |r| r.i32())?),
        ptype::MV_TIME => PropValue::MvTime(sized_array(r, count, 8, read_filetime)?),
        ptype::MV_STRING8 => {
            let ptrs = sized_array(r, count, 4, |r| r.unique_ptr())?;
            PropValue::MvString8(string_pointees(r, ptrs, |r| r.string(), Vec::new)?)
        }
        ptype::MV_UNICODE => {
            let ptrs = sized_array(r, count, 4, |r| r.unique_ptr())?;
            PropValue::MvUnicode(string_pointees(r, ptrs, |r| r.wstring(), String::new)?)
        }
        ptype::MV_GUID => {
            let ptrs = sized_array(r, count, 4, |r| r.unique_ptr())?;
            PropValue::MvGuid(string_pointees(r, ptrs, read_guid, || [0; 16])?)
        }
        ptype::MV_BINARY => {
            let heads = sized_array(r, count, 8, |r| {
                Ok((r.u32_in_range(0, MAX_BINARY)?, r.unique_ptr()?))
            })?;
            let mut out = Vec::with_capacity(heads.len());
            for (cb, ptr) in heads {
                let bytes = r.pointee(ptr, |r| {
                    let max = r.conformance(1)?;
                    if max != cb as usize {
                        return Err(NdrError::Invalid("Binary_r: max_count differs from cb"));
                    }
                    Ok(r.bytes(max)?.to_vec())
                })?;
                out.push(bytes.unwrap_or_default());
            }
            PropValue::MvBinary(out)
        }
        _ => {
            return Err(NdrError::Invalid(
                "PROP_VAL_UNION: pointer arm of no pointer type",
            ))
        }
    })
}

/// The value a NULL pointer arm stands for.
fn empty_value(ty: u32) -> PropValue {
    match ty {
        ptype::STRING8 => PropValue::String8(Vec::new()),
        ptype::UNICODE => PropValue::Unicode(String::new()),
        ptype::GUID => PropValue::Guid([0; 16]),
        ptype::BINARY => PropValue::Binary(Vec::new()),
        ptype::MV_I16 => PropValue::MvI16(Vec::new()),
        ptype::MV_I32 => PropValue::MvI32(Vec::new()),
        ptype::MV_TIME => PropValue::MvTime(Vec::new()),
        ptype::MV_STRING8 => PropValue::MvString8(Vec::new()),
        ptype::MV_UNICODE => PropValue::MvUnicode(Vec::new()),
        ptype::MV_GUID => PropValue::MvGuid(Vec::new()),
        _ => PropValue::MvBinary(Vec::new()),
    }
}

/// A `[unique] PropertyValue_r*` pointee (flat part, then its own pointees).
fn read_property_value(r: &mut NdrReader<'_>) -> Result<PropertyValue, NdrError> {
    let (tag, pending) = read_value_flat(r)?;
    let value = read_value_deferred(r, pending)?;
    Ok(PropertyValue { tag, value })
}

/// Writes the flat part of a PropertyValue_r.
fn write_value_flat(w: &mut NdrWriter, v: &PropertyValue) {
    w.put_u32(v.tag);
    w.put_u32(0);
    w.put_u32(prop_type(v.tag));
    match &v.value {
        PropValue::I16(x) => w.put_u16(*x as u16),
        PropValue::I32(x) => w.put_i32(*x),
        PropValue::Bool(x) => w.put_u16(*x),
        PropValue::Error(x) => w.put_u32(*x),
        PropValue::Reserved(x) => w.put_i32(*x),
        PropValue::Time(t) => {
            w.put_u32(*t as u32);
            w.put_u32((*t >> 32) as u32);
        }
        PropValue::String8(_) | PropValue::Unicode(_) | PropValue::Guid(_) => {
            w.put_pointer(true);
        }
        PropValue::Binary(b) => {
            w.put_u32(b.len() as u32);
            w.put_pointer(true);
        }
        PropValue::MvI16(x) => put_count_ptr(w, x.len()),
        PropValue::MvI32(x) => put_count_ptr(w, x.len()),
        PropValue::MvString8(x) => put_count_ptr(w, x.len()),
        PropValue::MvBinary(x) => put_count_ptr(w, x.len()),
        PropValue::MvGuid(x) => put_count_ptr(w, x.len()),
        PropValue::MvUnicode(x) => put_count_ptr(w, x.len()),
        PropValue::MvTime(x) => put_count_ptr(w, x.len()),
    }
}

fn put_count_ptr(w: &mut NdrWriter, n: usize) {
    w.put_u32(n as u32);
    w.put_pointer(true);
}

/// Writes the pointees of a PropertyValue_r, in the order of its pointers.
fn write_value_deferred(w: &mut NdrWriter, v: &PropertyValue) {
    match &v.value {
        PropValue::String8(s) => w.put_string(s),
        PropValue::Unicode(s) => w.put_wstring(s),
        PropValue::Guid(g) => w.put_bytes(g),
        PropValue::Binary(b) => w.put_conformant_bytes(b),
        PropValue::MvI16(x) => {
            w.put_conformance(x.len());
            x.iter().for_each(|v| w.put_u16(*v as u16));
        }
        PropValue::MvI32(x) => {
            w.put_conformance(x.len());
            x.iter().for_each(|v| w.put_i32(*v));
        }
        PropValue::MvTime(x) => {
            w.put_conformance(x.len());
            for t in x {
                w.put_u32(*t as u32);
                w.put_u32((*t >> 32) as u32);
            }
        }
        PropValue::MvString8(x) => {
            w.put_conformance(x.len());
            x.iter().for_each(|_| _ = w.put_pointer(true));
            x.iter().for_each(|s| w.put_string(s));
        }
        PropValue::MvUnicode(x) => {
            w.put_conformance(x.len());
            x.iter().for_each(|_| _ = w.put_pointer(true));
            x.iter().for_each(|s| w.put_wstring(s));
        }
        PropValue::MvGuid(x) => {
            w.put_conformance(x.len());
            x.iter().for_each(|_| _ = w.put_pointer(true));
            x.iter().for_each(|g| w.put_bytes(g));
        }
        PropValue::MvBinary(x) => {
            w.put_conformance(x.len());
            for b in x {
                w.put_u32(b.len() as u32);
                w.put_pointer(true);
            }
            x.iter().for_each(|b| w.put_conformant_bytes(b));
        }
        PropValue::I16(_)
        | PropValue::I32(_)
        | PropValue::Bool(_)
        | PropValue::Error(_)
        | PropValue::Reserved(_)
        | PropValue::Time(_) => {}
    }
}

/// A row: the values of one object ([MS-OXNSPI] 2.2.3):
///
/// ```text
/// typedef struct _PropertyRow_r {
///     DWORD Reserved; [range(0,100000)] DWORD cValues;
///     [size_is(cValues)] PropertyValue_r* lpProps;
/// } PropertyRow_r;
/// typedef struct _PropertyRowSet_r {
///     [range(0,100000)] DWORD cRows; [size_is(cRows)] PropertyRow_r aRow[];
/// } PropertyRowSet_r;                                      // 2.2.4
/// ```
pub type PropertyRow = Vec<PropertyValue>;

fn write_row_flat(w: &mut NdrWriter, row: &PropertyRow) {
    w.put_u32(0);
    w.put_u32(row.len() as u32);
    w.put_pointer(true);
}

fn write_row_deferred(w: &mut NdrWriter, row: &PropertyRow) {
    w.put_conformance(row.len());
    row.iter().for_each(|v| write_value_flat(w, v));
    row.iter().for_each(|v| write_value_deferred(w, v));
}

/// `[out] PropertyRow_r** ppRows`: the unique pointer and its pointee.
pub fn write_row_ptr(w: &mut NdrWriter, row: Option<&PropertyRow>) {
    w.put_pointer(row.is_some());
    if let Some(row) = row {
        write_row_flat(w, row);
        write_row_deferred(w, row);
    }
}

/// `[out] PropertyRowSet_r** ppRows`: the unique pointer and its pointee.
pub fn write_row_set_ptr(w: &mut NdrWriter, rows: Option<&[PropertyRow]>) {
    w.put_pointer(rows.is_some());
    if let Some(rows) = rows {
        w.put_conformance(rows.len());
        w.put_u32(rows.len() as u32);
        rows.iter().for_each(|row| write_row_flat(w, row));
        rows.iter().for_each(|row| write_row_deferred(w, row));
    }
}

fn read_row_flat(r: &mut NdrReader<'_>) -> Result<(u32, Option<u32>), NdrError> {
    let _reserved = r.u32()?;
    let count = r.u32_in_range(0, MAX_VALUES)?;
    Ok((count, r.unique_ptr()?))
}

fn read_row_deferred(
    r: &mut NdrReader<'_>,
    (count, ptr): (u32, Option<u32>),
) -> Result<PropertyRow, NdrError> {
    if ptr.is_none() {
        return Ok(Vec::new());
    }
    // A PropertyValue_r's flat part is at least tag, reserved, discriminant and a DWORD.
    let flats = sized_array(r, count, 16, read_value_flat)?;
    let mut row = Vec::with_capacity(flats.len());
    for (tag, pending) in flats {
        row.push(PropertyValue {
            tag,
            value: read_value_deferred(r, pending)?,
        });
    }
    Ok(row)
}

/// `[out] PropertyRow_r** ppRows` as [`write_row_ptr`] writes it (the client's reader).
pub fn read_row_ptr(r: &mut NdrReader<'_>) -> Result<Option<PropertyRow>, NdrError> {
    let ptr = r.unique_ptr()?;
    r.pointee(ptr, |r| {
        let flat = read_row_flat(r)?;
        read_row_deferred(r, flat)
    })
}

/// `[out] PropertyRowSet_r** ppRows` as [`write_row_set_ptr`] writes it.
pub fn read_row_set_ptr(r: &mut NdrReader<'_>) -> Result<Option<Vec<PropertyRow>>, NdrError> {
    let ptr = r.unique_ptr()?;
    r.pointee(ptr, |r| {
        let max = r.conformance(12)?;
        let count = r.u32_in_range(0, MAX_VALUES)?;
        if count as usize != max {
            return Err(NdrError::Invalid(
                "PropertyRowSet_r: cRows differs from size_is",
            ));
        }
        let flats = r.elements(max, 12, read_row_flat)?;
        let mut rows = Vec::with_capacity(flats.len());
        for flat in flats {
            rows.push(read_row_deferred(r, flat)?);
        }
        Ok(rows)
    })
}

/// A `[unique] Restriction_r*` parameter (the client's side of
/// [`read_restriction_ptr`]). [`Restriction::Other`] keeps only its `rt`: it goes with
/// zero fields (a SubRestriction_r with a NULL inner restriction).
pub fn write_restriction_ptr(w: &mut NdrWriter, res: Option<&Restriction>) {
    w.put_pointer(res.is_some());
    if let Some(res) = res {
        write_restriction_flat(w, res);
        write_restriction_deferred(w, res);
    }
}

fn write_restriction_flat(w: &mut NdrWriter, res: &Restriction) {
    let rt = match res {
        Restriction::And(_) => 0,
        Restriction::Or(_) => 1,
        Restriction::Not(_) => 2,
        Restriction::Content { .. } => 3,
        Restriction::Property { .. } => 4,
        Restriction::Exist { .. } => 8,
        Restriction::Other(rt) => *rt,
    };
    w.put_u32(rt);
    w.put_u32(rt);
    match res {
        Restriction::And(list) | Restriction::Or(list) => {
            w.put_u32(list.len() as u32);
            w.put_pointer(true);
        }
        Restriction::Not(inner) => {
            w.put_pointer(inner.is_some());
        }
        Restriction::Content {
            fuzzy_level: x,
            tag,
            value,
        }
        | Restriction::Property {
            relop: x,
            tag,
            value,
        } => {
            w.put_u32(*x);
            w.put_u32(*tag);
            w.put_pointer(value.is_some());
        }
        Restriction::Exist { tag } => {
            w.put_u32(0);
            w.put_u32(*tag);
            w.put_u32(0);
        }
        Restriction::Other(9) => {
            w.put_u32(0);
            w.put_pointer(false);
        }
        Restriction::Other(_) => {
            w.put_u32(0);
            w.put_u32(0);
            w.put_u32(0);
        }
    }
}

fn write_restriction_deferred(w: &mut NdrWriter, res: &Restriction) {
    match res {
        Restriction::And(list) | Restriction::Or(list) => {
            w.put_conformance(list.len());
            list.iter().for_each(|r| write_restriction_flat(w, r));
            list.iter().for_each(|r| write_restriction_deferred(w, r));
        }
        Restriction::Not(Some(inner)) => {
            write_restriction_flat(w, inner);
            write_restriction_deferred(w, inner);
        }
        Restriction::Content { value: Some(v), .. }
        | Restriction::Property { value: Some(v), .. } => {
            write_value_flat(w, v);
            write_value_deferred(w, v);
        }
        _ => {}
    }
}

/// `[out] PropertyTagArray_r** pp`: the unique pointer and its pointee.
pub fn write_prop_tags_ptr(w: &mut NdrWriter, tags: Option<&[u32]>) {
    w.put_pointer(tags.is_some());
    if let Some(tags) = tags {
        write_prop_tag_array(w, tags);
    }
}

/// A restriction ([MS-OXNSPI] 2.2.5):
///
/// ```text
/// typedef struct _AndRestriction_r { [range(0,100000)] DWORD cRes;
///     [size_is(cRes)] Restriction_r* lpRes; } AndRestriction_r, OrRestriction_r;
/// typedef struct _NotRestriction_r { Restriction_r* lpRes; } NotRestriction_r;
/// typedef struct _ContentRestriction_r { DWORD ulFuzzyLevel; DWORD ulPropTag;
///     PropertyValue_r* lpProp; } ContentRestriction_r;
/// typedef struct BitMaskRestriction_r { DWORD relBMR; DWORD ulPropTag; DWORD ulMask; } BitMaskRestriction_r;
/// typedef struct _PropertyRestriction_r { DWORD relop; DWORD ulPropTag;
///     PropertyValue_r* lpProp; } PropertyRestriction_r;
/// typedef struct _ComparePropsRestriction_r { DWORD relop; DWORD ulPropTag1; DWORD ulPropTag2; } ComparePropsRestriction_r;
/// typedef struct _SubRestriction_r { DWORD ulSubObject; Restriction_r* lpRes; } SubRestriction_r;
/// typedef struct _SizeRestriction_r { DWORD relop; DWORD ulPropTag; DWORD cb; } SizeRestriction_r;
/// typedef struct _ExistRestriction_r { DWORD ulReserved1; DWORD ulPropTag; DWORD ulReserved2; } ExistRestriction_r;
/// typedef [switch_type(long)] union _RestrictionUnion_r {
///     [case(0x00000000)] AndRestriction_r resAnd;   [case(0x00000001)] OrRestriction_r resOr;
///     [case(0x00000002)] NotRestriction_r resNot;   [case(0x00000003)] ContentRestriction_r resContent;
///     [case(0x00000004)] PropertyRestriction_r resProperty;
///     [case(0x00000005)] ComparePropsRestriction_r resCompareProps;
///     [case(0x00000006)] BitMaskRestriction_r resBitMask;
///     [case(0x00000007)] SizeRestriction_r resSize; [case(0x00000008)] ExistRestriction_r resExist;
///     [case(0x00000009)] SubRestriction_r resSubRestriction;
/// } RestrictionUnion_r;
/// typedef struct _Restriction_r { DWORD rt; [switch_is((long)rt)] RestrictionUnion_r res; } Restriction_r;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restriction {
    And(Vec<Restriction>),
    Or(Vec<Restriction>),
    Not(Option<Box<Restriction>>),
    Content {
        fuzzy_level: u32,
        tag: u32,
        value: Option<PropertyValue>,
    },
    Property {
        relop: u32,
        tag: u32,
        value: Option<PropertyValue>,
    },
    Exist {
        tag: u32,
    },
    /// CompareProps, BitMask, Size, SubRestriction: decoded, not evaluated.
    Other(u32),
}

/// The flat part of a Restriction_r, with what its pointees need.
enum PendingRestriction {
    List {
        or: bool,
        count: u32,
        ptr: Option<u32>,
    },
    Not(Option<u32>),
    Valued {
        content: bool,
        level_or_relop: u32,
        tag: u32,
        ptr: Option<u32>,
    },
    Done(Restriction),
    Sub(Option<u32>),
}

fn read_restriction_flat(r: &mut NdrReader<'_>) -> Result<PendingRestriction, NdrError> {
    let rt = r.u32()?;
    let discriminant = r.u32()?;
    if discriminant != rt {
        return Err(NdrError::Invalid(
            "RestrictionUnion_r discriminant differs from rt",
        ));
    }
    Ok(match rt {
        0 | 1 => PendingRestriction::List {
            or: rt == 1,
            count: r.u32_in_range(0, MAX_VALUES)?,
            ptr: r.unique_ptr()?,
        },
        2 => PendingRestriction::Not(r.unique_ptr()?),
        3 | 4 => PendingRestriction::Valued {
            content: rt == 3,
            level_or_relop: r.u32()?,
            tag: r.u32()?,
            ptr: r.unique_ptr()?,
        },
        5..=8 => {
            let _ = r.u32()?;
            let tag = r.u32()?;
            let _ = r.u32()?;
            match rt {
                8 => PendingRestriction::Done(Restriction::Exist { tag }),
                _ => PendingRestriction::Done(Restriction::Other(rt)),
            }
        }
        9 => {
            let _sub_object = r.u32()?;
            PendingRestriction::Sub(r.unique_ptr()?)
        }
        _ => return Err(NdrError::Invalid("Restriction_r: unknown rt")),
    })
}

fn read_restriction_deferred(
    r: &mut NdrReader<'_>,
    pending: PendingRestriction,
    depth: usize,
) -> Result<Restriction, NdrError> {
    if depth > MAX_RESTRICTION_DEPTH {
        return Err(NdrError::Invalid("restriction nested too deep"));
    }
    Ok(match pending {
        PendingRestriction::Done(res) => res,
        PendingRestriction::List { or, count, ptr } => {
            let children = match ptr {
                None => Vec::new(),
                Some(_) => {
                    // Each Restriction_r is at least rt + discriminant + one DWORD.
                    let flats = sized_array(r, count, 12, read_restriction_flat)?;
                    let mut out = Vec::with_capacity(flats.len());
                    for flat in flats {
                        out.push(read_restriction_deferred(r, flat, depth + 1)?);
                    }
                    out
                }
            };
            match or {
                true => Restriction::Or(children),
                false => Restriction::And(children),
            }
        }
        PendingRestriction::Not(ptr) => Restriction::Not(
            r.pointee(ptr, |r| read_restriction(r, depth + 1))?
                .map(Box::new),
        ),
        PendingRestriction::Sub(ptr) => {
            r.pointee(ptr, |r| read_restriction(r, depth + 1))?;
            Restriction::Other(9)
        }
        PendingRestriction::Valued {
            content,
            level_or_relop,
            tag,
            ptr,
        } => {
            let value = r.pointee(ptr, read_property_value)?;
            match content {
                true => Restriction::Content {
                    fuzzy_level: level_or_relop,
                    tag,
                    value,
                },
                false => Restriction::Property {
                    relop: level_or_relop,
                    tag,
                    value,
                },
            }
        }
    })
}

/// A Restriction_r pointee at nesting `depth`.
fn read_restriction(r: &mut NdrReader<'_>, depth: usize) -> Result<Restriction, NdrError> {
    let flat = read_restriction_flat(r)?;
    read_restriction_deferred(r, flat, depth)
}

/// A `[unique] Restriction_r*` parameter.
pub fn read_restriction_ptr(r: &mut NdrReader<'_>) -> Result<Option<Restriction>, NdrError> {
    let ptr = r.unique_ptr()?;
    r.pointee(ptr, |r| read_restriction(r, 0))
}

/// ```text
/// typedef struct _PropertyName_r { FlatUID_r* lpguid; DWORD ulReserved; long lID; } PropertyName_r;
/// ```
/// ([MS-OXNSPI] 2.2.6.1.) A `[unique] PropertyName_r*` parameter; only its presence matters.
pub fn read_property_name_ptr(r: &mut NdrReader<'_>) -> Result<bool, NdrError> {
    let ptr = r.unique_ptr()?;
    let name = r.pointee(ptr, |r| {
        let guid = r.unique_ptr()?;
        let _reserved = r.u32()?;
        let _id = r.u32()?;
        r.pointee(guid, read_guid)
    })?;
    Ok(name.is_some())
}
