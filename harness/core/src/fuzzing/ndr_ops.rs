//! The NDR 2.0 target ([`harness_wire::ndr`]):
//!
//! * `ndr_decode`: octet 0 picks the limits (high bit set: 1 to 64 elements and
//!   characters; otherwise the defaults), octet 1 the length of a script (1 to 12 steps),
//!   the next octets the steps (each an NDR type, [`Step`]), the rest is the stub. The
//!   steps decode the stub in order until one fails. Nothing panics; every array and
//!   string decoded stays within the limits; every value decoded (but a full pointer,
//!   whose meaning depends on the ids before it) encodes with [`NdrWriter`] into a stub
//!   that decodes, whole, to the same value.

use harness_wire::dcerpc::Uuid;
use harness_wire::ndr::{ContextHandle, NdrError, NdrLimits, NdrReader, NdrWriter};

/// The fixed size of the varying arrays and strings the script reads (the endpoint
/// mapper's annotation is `char[64]`).
const FIXED: u32 = 64;
/// The `[range]` the script checks (ept_map's max_towers is `range(0, 500)`).
const RANGE_MAX: u32 = 500;

/// One scripted NDR type, by the low 4 bits of its octet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    U8,
    U16,
    U32,
    U64,
    I32,
    Uuid,
    ContextHandle,
    ConformantBytes,
    ConformantU32s,
    ConformantVaryingU16s,
    String,
    WString,
    VaryingString,
    /// A top-level `[unique] unsigned long *`: referent id, pointee at once.
    UniqueU32,
    /// `[size_is(n)] struct { unsigned long; [unique, string] wchar_t *; } a[]`: the
    /// structures, then the deferred pointees.
    EntriesWithDeferredNames,
    /// A `[range(0, 500)] unsigned long`, then a full pointer.
    RangeThenFullPointer,
}

impl Step {
    const ALL: [Step; 16] = [
        Step::U8,
        Step::U16,
        Step::U32,
        Step::U64,
        Step::I32,
        Step::Uuid,
        Step::ContextHandle,
        Step::ConformantBytes,
        Step::ConformantU32s,
        Step::ConformantVaryingU16s,
        Step::String,
        Step::WString,
        Step::VaryingString,
        Step::UniqueU32,
        Step::EntriesWithDeferredNames,
        Step::RangeThenFullPointer,
    ];

    pub fn from_octet(b: u8) -> Step {
        Step::ALL[usize::from(b & 0x0f)]
    }

    pub fn octet(self) -> u8 {
        Step::ALL.iter().position(|s| *s == self).unwrap_or(0) as u8
    }
}

/// What a step decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    U8(u8),
    U16(u16),
    U32(u32),
    U64(u64),
    I32(i32),
    Uuid(Uuid),
    Handle(ContextHandle),
    Bytes(Vec<u8>),
    U32s(Vec<u32>),
    U16s(Vec<u16>),
    Text(Vec<u8>),
    VaryingText(Vec<u8>),
    Wide(String),
    Unique(Option<u32>),
    Entries(Vec<(u32, Option<String>)>),
    /// The range value; the full pointer after it is not kept (its meaning depends on
    /// the ids before it), and re-encodes as NULL.
    Range(u32),
}

fn decode(step: Step, r: &mut NdrReader<'_>) -> Result<Value, NdrError> {
    Ok(match step {
        Step::U8 => Value::U8(r.u8()?),
        Step::U16 => Value::U16(r.u16()?),
        Step::U32 => Value::U32(r.u32()?),
        Step::U64 => Value::U64(r.u64()?),
        Step::I32 => Value::I32(r.i32()?),
        Step::Uuid => Value::Uuid(r.uuid()?),
        Step::ContextHandle => Value::Handle(r.context_handle()?),
        Step::ConformantBytes => Value::Bytes(r.conformant_bytes()?.to_vec()),
        Step::ConformantU32s => Value::U32s(r.conformant_array(4, NdrReader::u32)?),
        Step::ConformantVaryingU16s => Value::U16s(r.conformant_varying_array(2, NdrReader::u16)?),
        Step::String => Value::Text(r.string()?),
        Step::WString => Value::Wide(r.wstring()?),
        Step::VaryingString => Value::VaryingText(r.varying_string(FIXED)?),
        Step::UniqueU32 => {
            let p = r.unique_ptr()?;
            Value::Unique(r.pointee(p, NdrReader::u32)?)
        }
        Step::EntriesWithDeferredNames => {
            let heads = r.conformant_array(8, |r| Ok((r.u32()?, r.unique_ptr()?)))?;
            let mut entries = Vec::with_capacity(heads.len());
            for (id, name) in heads {
                entries.push((id, r.pointee(name, NdrReader::wstring)?));
            }
            Value::Entries(entries)
        }
        Step::RangeThenFullPointer => {
            let value = r.u32_in_range(0, RANGE_MAX)?;
            r.full_ptr()?;
            Value::Range(value)
        }
    })
}

fn encode(value: &Value, w: &mut NdrWriter) {
    match value {
        Value::U8(v) => w.put_u8(*v),
        Value::U16(v) => w.put_u16(*v),
        Value::U32(v) => w.put_u32(*v),
        Value::U64(v) => w.put_u64(*v),
        Value::I32(v) => w.put_i32(*v),
        Value::Uuid(u) => w.put_uuid(u),
        Value::Handle(h) => w.put_context_handle(h),
        Value::Bytes(b) => w.put_conformant_bytes(b),
        Value::U32s(v) => {
            w.put_conformance(v.len());
            v.iter().for_each(|x| w.put_u32(*x));
        }
        Value::U16s(v) => {
            w.put_conformance(v.len());
            w.put_variance(v.len());
            v.iter().for_each(|x| w.put_u16(*x));
        }
        Value::VaryingText(t) => w.put_varying_string(t),
        Value::Text(t) => w.put_string(t),
        Value::Wide(s) => w.put_wstring(s),
        Value::Unique(v) => {
            w.put_pointer(v.is_some());
            v.iter().for_each(|x| w.put_u32(*x));
        }
        Value::Entries(entries) => {
            w.put_conformance(entries.len());
            for (id, name) in entries {
                w.put_u32(*id);
                w.put_pointer(name.is_some());
            }
            entries
                .iter()
                .filter_map(|(_, name)| name.as_deref())
                .for_each(|name| w.put_wstring(name));
        }
        Value::Range(v) => {
            w.put_u32(*v);
            w.put_pointer(false);
        }
    }
}

/// The lengths of what a value holds, all within the limits when decoded.
fn check_within(value: &Value, limits: NdrLimits) {
    let elements = match value {
        Value::Bytes(v) => v.len(),
        Value::U32s(v) => v.len(),
        Value::U16s(v) => v.len(),
        Value::Entries(v) => v.len(),
        _ => 0,
    };
    assert!(elements <= limits.max_elements, "{value:?}");
    let chars = match value {
        Value::Text(t) | Value::VaryingText(t) => t.len() + 1,
        Value::Wide(s) => s.encode_utf16().count() + 1,
        _ => 0,
    };
    assert!(chars <= limits.max_string, "{value:?}");
    if let Value::Entries(entries) = value {
        for name in entries.iter().filter_map(|(_, n)| n.as_ref()) {
            assert!(name.encode_utf16().count() < limits.max_string);
        }
    }
}

fn limits_for(octet: u8) -> NdrLimits {
    match octet & 0x80 {
        0 => NdrLimits::DEFAULT,
        _ => {
            let n = 1 + usize::from(octet & 0x3f);
            NdrLimits {
                max_elements: n,
                max_string: n,
            }
        }
    }
}

/// Fuzz target `ndr_decode`.
pub fn ndr_decode(data: &[u8]) {
    let [limits, len, rest @ ..] = data else {
        return;
    };
    let limits = limits_for(*limits);
    let steps = 1 + usize::from(*len) % 12;
    let Some((script, stub)) = rest.split_at_checked(steps) else {
        return;
    };
    let mut r = NdrReader::with_limits(stub, limits);
    for step in script.iter().copied().map(Step::from_octet) {
        let before = r.position();
        let Ok(value) = decode(step, &mut r) else {
            break;
        };
        assert!(r.position() > before && r.position() <= stub.len());
        check_within(&value, limits);
        let mut w = NdrWriter::new();
        encode(&value, &mut w);
        let bytes = w.into_bytes();
        let mut again = NdrReader::with_limits(&bytes, limits);
        assert_eq!(decode(step, &mut again), Ok(value), "{step:?} {bytes:02x?}");
        assert!(again.is_empty(), "{step:?} {bytes:02x?}");
    }
}

/// Seed inputs: each step once over a stub that decodes, and a few with the lies the
/// reader refuses.
#[cfg(test)]
pub(crate) fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let input = |limits: u8, script: &[Step], stub: NdrWriter| {
        let mut v = vec![limits, (script.len() - 1) as u8];
        v.extend(script.iter().map(|s| s.octet()));
        v.extend_from_slice(stub.as_bytes());
        v
    };
    let mut every = NdrWriter::new();
    every.put_u8(1);
    every.put_u16(2);
    every.put_u32(3);
    every.put_u64(4);
    every.put_i32(-5);
    every.put_uuid(&Uuid::new(
        0xe1af_8308,
        0x5d1f,
        0x11c9,
        [0x91, 0xa4, 8, 0, 0x2b, 0x14, 0xa0, 0xfa],
    ));
    every.put_context_handle(&ContextHandle::new(Uuid::new(1, 2, 3, [4; 8])));
    every.put_conformant_bytes(b"tower");
    every.put_conformance(2);
    every.put_u32(7);
    every.put_u32(8);
    every.put_conformance(4);
    every.put_variance(1);
    every.put_u16(9);
    let first: Vec<Step> = Step::ALL[..10].to_vec();
    let mut text = NdrWriter::new();
    text.put_string(b"/o=First Organization/cn=Recipients");
    text.put_wstring("Mailbox \u{e9}");
    text.put_varying_string(b"Exchange endpoint");
    text.put_pointer(true);
    text.put_u32(11);
    text.put_conformance(2);
    text.put_u32(1);
    text.put_pointer(true);
    text.put_u32(2);
    text.put_pointer(false);
    text.put_wstring("alice");
    text.put_u32(4);
    text.put_pointer(true);
    let last: Vec<Step> = Step::ALL[10..].to_vec();
    let mut lying = NdrWriter::new();
    lying.put_conformance(1);
    lying.put_variance(3); // actual_count above max_count
    lying.put_bytes(b"abc");
    let mut unterminated = NdrWriter::new();
    unterminated.put_conformance(2);
    unterminated.put_variance(2);
    unterminated.put_bytes(b"ab");
    let mut over_limit = NdrWriter::new();
    over_limit.put_conformant_bytes(&[0; 40]);
    vec![
        ("every-primitive-and-array", input(0, &first, every)),
        ("strings-pointers-deferred", input(0, &last, text)),
        (
            "actual-above-max",
            input(0, &[Step::ConformantVaryingU16s], lying),
        ),
        (
            "string-without-nul",
            input(0, &[Step::String], unterminated),
        ),
        (
            "over-small-limit",
            input(0x80 | 31, &[Step::ConformantBytes], over_limit),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_decode_as_far_as_they_should() {
        for (name, data) in seeds() {
            ndr_decode(&data);
            let limits = limits_for(data[0]);
            let steps = 1 + usize::from(data[1]) % 12;
            let (script, stub) = data[2..].split_at(steps);
            let mut r = NdrReader::with_limits(stub, limits);
            let decoded = script
                .iter()
                .map(|b| decode(Step::from_octet(*b), &mut r))
                .take_while(Result::is_ok)
                .count();
            let expected = match name {
                "every-primitive-and-array" => 10,
                "strings-pointers-deferred" => 6,
                _ => 0,
            };
            assert_eq!(decoded, expected, "{name}");
            if expected > 0 {
                assert!(r.is_empty(), "{name}");
            }
        }
    }

    #[test]
    fn steps_map_to_octets_and_back() {
        for step in Step::ALL {
            assert_eq!(Step::from_octet(step.octet()), step);
            assert_eq!(Step::from_octet(step.octet() | 0xf0), step);
        }
    }
}
