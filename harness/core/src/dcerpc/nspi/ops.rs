//! The NSPI operations after the context handle ([MS-OXNSPI] 3.1.4.1): each reads its
//! remaining in parameters from the stub and writes its out parameters and return value.
//! A failing operation writes its out pointers NULL (and echoes pStat), as the spec
//! requires for a return other than Success.

use harness_wire::ndr::{NdrError, NdrReader, NdrWriter};

use super::book::{self, tag, AddressBook, Entry, ValueStyle, CP_WINUNICODE, GAL_MID};
use super::status;
use super::types::{
    self, ptype, read_prop_tags_ptr, read_property_name_ptr, read_restriction_ptr,
    read_strings_array, with_type, write_prop_tags_ptr, write_row_ptr, write_row_set_ptr,
    PropValue, PropertyRow, Restriction, Stat,
};

/// An operation after its handle was checked.
pub type Operation = fn(&AddressBook, &mut NdrReader<'_>) -> Result<Vec<u8>, NdrError>;

/// The operation of `opnum`, for those served here besides NspiBind / NspiUnbind.
pub fn operation(opnum: u16) -> Option<Operation> {
    Some(match opnum {
        2 => update_stat,
        3 => query_rows,
        5 => get_matches,
        7 => dn_to_mid,
        8 => get_prop_list,
        9 => get_props,
        10 => compare_mids,
        12 => get_special_table,
        16 => query_columns,
        19 => resolve_names,
        20 => resolve_names_w,
        _ => return None,
    })
}

/// Positioning Minimal Entry IDs ([MS-OXNSPI] 2.2.1.8).
pub const MID_BEGINNING_OF_TABLE: u32 = 0;
pub const MID_CURRENT: u32 = 1;
pub const MID_END_OF_TABLE: u32 = 2;

/// fEphID ([MS-OXNSPI] 2.2.1.12).
pub const F_EPH_ID: u32 = 0x2;
/// NspiGetSpecialTable flags ([MS-OXNSPI] 2.2.1.13).
pub const NSPI_ADDRESS_CREATION_TEMPLATES: u32 = 0x2;
pub const NSPI_UNICODE_STRINGS: u32 = 0x4;
/// NspiQueryColumns NspiUnicodeProptypes ([MS-OXNSPI] 2.2.1.14).
pub const NSPI_UNICODE_PROPTYPES: u32 = 0x8000_0000;

/// Property values (rows times columns) one response may carry: 64 Ki, far above what
/// clients ask (exchanger.py asks 50 rows of its columns at a time, because Exchange
/// answers larger QueryRows with MAPI_E_NOT_ENOUGH_RESOURCES, OutOfResources here too).
/// Without it 100000 MIds times 100000 proptags would be built.
pub const MAX_RESPONSE_VALUES: usize = 1 << 16;

/// OutOfResources when `rows` rows of `columns` values exceed [`MAX_RESPONSE_VALUES`].
fn check_size(rows: usize, columns: usize) -> Result<(), u32> {
    match rows.saturating_mul(columns) > MAX_RESPONSE_VALUES {
        true => Err(status::OUT_OF_RESOURCES),
        false => Ok(()),
    }
}

/// The hierarchy table's version (lpVersion out): the table never changes.
pub const HIERARCHY_VERSION: u32 = 1;

/// The columns returned when pPropTags is NULL ([MS-OXNSPI] 3.1.4.1.8):
/// PidTagAddressBookContainerId, PidTagObjectType, PidTagDisplayType,
/// PidTagDisplayName (PtypString8), PidTagPrimaryTelephoneNumber, PidTagDepartmentName,
/// PidTagOfficeLocation.
pub fn default_columns() -> Vec<u32> {
    let s8 = |t| with_type(t, ptype::STRING8);
    vec![
        tag::CONTAINER_ID,
        tag::OBJECT_TYPE,
        tag::DISPLAY_TYPE,
        s8(tag::DISPLAY_NAME),
        s8(tag::PRIMARY_TELEPHONE),
        s8(tag::DEPARTMENT),
        s8(tag::OFFICE_LOCATION),
    ]
}

fn style(stat: &Stat, flags: u32) -> ValueStyle {
    ValueStyle {
        code_page: stat.code_page,
        ephemeral_ids: flags & F_EPH_ID != 0,
        unicode: false,
    }
}

/// The position a STAT names in the GAL ([MS-OXNSPI] 3.1.4.5): absolute (CurrentRec
/// plus Delta; MID_BEGINNING_OF_TABLE and MID_END_OF_TABLE stand for the ends) or, with
/// CurrentRec MID_CURRENT, fractional (NumPos / TotalRecs of the table, plus Delta).
/// Errors: a container other than the GAL is InvalidBookmark, a CurrentRec not in the
/// table NotFound. Returns the start (before Delta) and the position.
fn seek(book: &AddressBook, stat: &Stat) -> Result<(usize, usize), u32> {
    if stat.container_id != GAL_MID {
        return Err(status::INVALID_BOOKMARK);
    }
    let len = book.entries().len();
    let start = match stat.current_rec {
        MID_BEGINNING_OF_TABLE => 0,
        MID_END_OF_TABLE => len,
        MID_CURRENT => match stat.total_recs {
            0 => 0,
            total => {
                let pos = u64::from(stat.num_pos) * len as u64 / u64::from(total);
                usize::try_from(pos).unwrap_or(len).min(len)
            }
        },
        mid => book.position_of(mid).ok_or(status::NOT_FOUND)?,
    };
    let moved = start as i64 + i64::from(stat.delta);
    let pos = usize::try_from(moved.clamp(0, len as i64)).unwrap_or(0);
    Ok((start, pos))
}

/// The STAT of position `pos` (CurrentRec, NumPos, TotalRecs; Delta 0).
fn at_position(book: &AddressBook, stat: &Stat, pos: usize) -> Stat {
    let entries = book.entries();
    Stat {
        current_rec: entries.get(pos).map_or(MID_END_OF_TABLE, |e| e.mid),
        num_pos: pos as u32,
        total_recs: entries.len() as u32,
        delta: 0,
        ..*stat
    }
}

/// ```text
/// long NspiUpdateStat([in] NSPI_HANDLE hRpc, [in] DWORD Reserved, [in, out] STAT* pStat,
///     [in, out, unique] long* plDelta);
/// ```
/// ([MS-OXNSPI] 3.1.4.1.4.) plDelta returns the rows moved from CurrentRec.
pub fn update_stat(book: &AddressBook, r: &mut NdrReader<'_>) -> Result<Vec<u8>, NdrError> {
    let _reserved = r.u32()?;
    let stat = Stat::read(r)?;
    let delta_ptr = r.unique_ptr()?;
    let delta_in = r.pointee(delta_ptr, |r| r.i32())?;
    let (stat_out, delta_out, rc) = match seek(book, &stat) {
        Ok((start, pos)) => (
            at_position(book, &stat, pos),
            delta_in.map(|_| pos as i32 - start as i32),
            status::SUCCESS,
        ),
        Err(rc) => (stat, delta_in, rc),
    };
    let mut w = NdrWriter::new();
    stat_out.write(&mut w);
    w.put_pointer(delta_out.is_some());
    if let Some(d) = delta_out {
        w.put_i32(d);
    }
    w.put_u32(rc);
    Ok(w.into_bytes())
}

/// ```text
/// long NspiQueryRows([in] NSPI_HANDLE hRpc, [in] DWORD dwFlags, [in, out] STAT* pStat,
///     [in, range(0,100000)] DWORD dwETableCount,
///     [in, unique, size_is(dwETableCount)] DWORD* lpETable, [in] DWORD Count,
///     [in, unique] PropertyTagArray_r* pPropTags, [out] PropertyRowSet_r** ppRows);
/// ```
/// ([MS-OXNSPI] 3.1.4.1.8.) With lpETable: a row for each of its first Count MIds (an
/// unknown MId gets a row of NotFound errors, as exchanger's dnt-lookup expects), pStat
/// unchanged. Without: Count rows from the STAT's position, which moves past them.
pub fn query_rows(book: &AddressBook, r: &mut NdrReader<'_>) -> Result<Vec<u8>, NdrError> {
    let flags = r.u32()?;
    let stat = Stat::read(r)?;
    let table_count = r.u32_in_range(0, types::MAX_VALUES)?;
    let table_ptr = r.unique_ptr()?;
    let table = r.pointee(table_ptr, |r| {
        let max = r.conformance(4)?;
        if max != table_count as usize {
            return Err(NdrError::Invalid(
                "lpETable: max_count differs from dwETableCount",
            ));
        }
        r.elements(max, 4, |r| r.u32())
    })?;
    let count = r.u32()? as usize;
    let tags = read_prop_tags_ptr(r)?.unwrap_or_else(default_columns);
    let style = style(&stat, flags);
    let (stat_out, rows) = match table {
        Some(mids) => {
            let mids = &mids[..mids.len().min(count)];
            let rows = check_size(mids.len(), tags.len()).map(|()| {
                mids.iter()
                    .map(|mid| book.row(book.by_mid(*mid), &tags, style))
                    .collect()
            });
            (stat, rows)
        }
        None => {
            let found = seek(book, &stat).and_then(|(_, pos)| {
                let entries = &book.entries()[pos..];
                let entries = &entries[..entries.len().min(count)];
                check_size(entries.len(), tags.len())?;
                Ok((pos, entries))
            });
            match found {
                Ok((pos, entries)) => {
                    let rows = entries
                        .iter()
                        .map(|e| book.row(Some(e), &tags, style))
                        .collect();
                    (at_position(book, &stat, pos + entries.len()), Ok(rows))
                }
                Err(rc) => (stat, Err(rc)),
            }
        }
    };
    let mut w = NdrWriter::new();
    stat_out.write(&mut w);
    finish_rows(w, rows)
}

/// Writes `[out] PropertyRowSet_r** ppRows` and the return value (NULL on failure).
fn finish_rows(mut w: NdrWriter, rows: Result<Vec<PropertyRow>, u32>) -> Result<Vec<u8>, NdrError> {
    match rows {
        Ok(rows) => {
            write_row_set_ptr(&mut w, Some(&rows));
            w.put_u32(status::SUCCESS);
        }
        Err(rc) => {
            write_row_set_ptr(&mut w, None);
            w.put_u32(rc);
        }
    }
    Ok(w.into_bytes())
}

/// A value made comparable: text case-folded, integers widened.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Comparable {
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

fn comparable(v: &PropValue) -> Option<Comparable> {
    Some(match v {
        PropValue::I16(x) => Comparable::Int(i64::from(*x)),
        PropValue::I32(x) => Comparable::Int(i64::from(*x)),
        PropValue::Bool(x) => Comparable::Int(i64::from(*x != 0)),
        PropValue::Unicode(s) => Comparable::Text(s.to_lowercase()),
        PropValue::String8(s) => Comparable::Text(String::from_utf8_lossy(s).to_lowercase()),
        PropValue::Binary(b) => Comparable::Bytes(b.clone()),
        _ => return None,
    })
}

/// The value of `tag` on `entry`, comparable (None when it lacks it).
fn entry_value(book: &AddressBook, entry: &Entry, tag: u32) -> Option<Comparable> {
    let style = ValueStyle {
        code_page: CP_WINUNICODE,
        ..ValueStyle::default()
    };
    comparable(
        &book
            .value(Some(entry), with_type(tag, ptype::UNSPECIFIED), style)
            .value,
    )
}

/// Relational operators ([MS-OXCDATA] 2.12.1.1): RELOP_LT 0 ... RELOP_NE 5.
fn relop_holds(relop: u32, have: &Comparable, want: &Comparable) -> Result<bool, u32> {
    Ok(match relop {
        0 => have < want,
        1 => have <= want,
        2 => have > want,
        3 => have >= want,
        4 => have == want,
        5 => have != want,
        _ => return Err(status::TOO_COMPLEX),
    })
}

/// Whether `entry` satisfies `res`. And, Or, Not, Content (FL_FULLSTRING 0,
/// FL_SUBSTRING 1, FL_PREFIX 2; case always ignored), Property (RELOP_LT..RELOP_NE) and
/// Exist are evaluated; the others are TooComplex.
fn satisfies(book: &AddressBook, entry: &Entry, res: &Restriction) -> Result<bool, u32> {
    Ok(match res {
        Restriction::And(list) => {
            for r in list {
                if !satisfies(book, entry, r)? {
                    return Ok(false);
                }
            }
            true
        }
        Restriction::Or(list) => {
            for r in list {
                if satisfies(book, entry, r)? {
                    return Ok(true);
                }
            }
            false
        }
        Restriction::Not(inner) => match inner {
            Some(inner) => !satisfies(book, entry, inner)?,
            None => return Err(status::TOO_COMPLEX),
        },
        Restriction::Exist { tag } => entry_value(book, entry, *tag).is_some(),
        Restriction::Content {
            fuzzy_level,
            tag,
            value,
        } => {
            let want = value.as_ref().and_then(|v| comparable(&v.value));
            let Some(Comparable::Text(want)) = want else {
                return Err(status::TOO_COMPLEX);
            };
            let Some(Comparable::Text(have)) = entry_value(book, entry, *tag) else {
                return Ok(false);
            };
            match fuzzy_level & 0xFFFF {
                0 => have == want,
                1 => have.contains(&want),
                2 => have.starts_with(&want),
                _ => return Err(status::TOO_COMPLEX),
            }
        }
        Restriction::Property { relop, tag, value } => {
            let Some(want) = value.as_ref().and_then(|v| comparable(&v.value)) else {
                return Err(status::TOO_COMPLEX);
            };
            match entry_value(book, entry, *tag) {
                Some(have) => relop_holds(*relop, &have, &want)?,
                None => false,
            }
        }
        Restriction::Other(_) => return Err(status::TOO_COMPLEX),
    })
}

/// ```text
/// long NspiGetMatches([in] NSPI_HANDLE hRpc, [in] DWORD Reserved1, [in, out] STAT* pStat,
///     [in, unique] PropertyTagArray_r* pReserved, [in] DWORD Reserved2,
///     [in, unique] Restriction_r* Filter, [in, unique] PropertyName_r* lpPropName,
///     [in] DWORD ulRequested, [out] PropertyTagArray_r** ppOutMIds,
///     [in, unique] PropertyTagArray_r* pPropTags, [out] PropertyRowSet_r** ppRows);
/// ```
/// ([MS-OXNSPI] 3.1.4.1.10.) Filter over the GAL; more matches than ulRequested is
/// TableTooBig. lpPropName (the objects a link property of one object names): the lab's
/// objects hold no link properties, so NotFound; neither Filter nor lpPropName is
/// InvalidParameter. Rows only when pPropTags is given.
pub fn get_matches(book: &AddressBook, r: &mut NdrReader<'_>) -> Result<Vec<u8>, NdrError> {
    let _reserved1 = r.u32()?;
    let stat = Stat::read(r)?;
    let _reserved = read_prop_tags_ptr(r)?;
    let _reserved2 = r.u32()?;
    let filter = read_restriction_ptr(r)?;
    let has_prop_name = read_property_name_ptr(r)?;
    let requested = r.u32()? as usize;
    let tags = read_prop_tags_ptr(r)?;
    let matched: Result<Vec<&Entry>, u32> = match (&filter, has_prop_name) {
        _ if stat.container_id != GAL_MID => Err(status::INVALID_BOOKMARK),
        (Some(filter), _) => {
            let mut hits = Vec::new();
            let mut failure = None;
            for e in book.entries() {
                match satisfies(book, e, filter) {
                    Ok(true) => hits.push(e),
                    Ok(false) => {}
                    Err(rc) => {
                        failure = Some(rc);
                        break;
                    }
                }
            }
            let columns = tags.as_ref().map_or(0, Vec::len);
            match (failure, hits.len() > requested) {
                (Some(rc), _) => Err(rc),
                (None, true) => Err(status::TABLE_TOO_BIG),
                (None, false) => check_size(hits.len(), columns).map(|()| hits),
            }
        }
        (None, true) => Err(status::NOT_FOUND),
        (None, false) => Err(status::INVALID_PARAMETER),
    };
    let mut w = NdrWriter::new();
    stat.write(&mut w);
    match matched {
        Ok(hits) => {
            let mids: Vec<u32> = hits.iter().map(|e| e.mid).collect();
            write_prop_tags_ptr(&mut w, Some(&mids));
            let rows: Option<Vec<PropertyRow>> = tags.map(|tags| {
                let style = style(&stat, 0);
                hits.iter()
                    .map(|e| book.row(Some(e), &tags, style))
                    .collect()
            });
            write_row_set_ptr(&mut w, rows.as_deref());
            w.put_u32(status::SUCCESS);
        }
        Err(rc) => {
            write_prop_tags_ptr(&mut w, None);
            write_row_set_ptr(&mut w, None);
            w.put_u32(rc);
        }
    }
    Ok(w.into_bytes())
}

/// ```text
/// long NspiDNToMId([in] NSPI_HANDLE hRpc, [in] DWORD Reserved,
///     [in] StringsArray_r* pNames, [out] PropertyTagArray_r** ppOutMIds);
/// ```
/// ([MS-OXNSPI] 3.1.4.1.13.) A DN not found maps to MId 0.
pub fn dn_to_mid(book: &AddressBook, r: &mut NdrReader<'_>) -> Result<Vec<u8>, NdrError> {
    let _reserved = r.u32()?;
    let names = read_strings_array(r, |r| r.string())?;
    let mids: Vec<u32> = names
        .iter()
        .map(|name| {
            name.as_ref()
                .and_then(|n| book.by_dn(&String::from_utf8_lossy(n)))
                .map_or(0, |e| e.mid)
        })
        .collect();
    let mut w = NdrWriter::new();
    write_prop_tags_ptr(&mut w, Some(&mids));
    w.put_u32(status::SUCCESS);
    Ok(w.into_bytes())
}

/// ```text
/// long NspiGetPropList([in] NSPI_HANDLE hRpc, [in] DWORD dwFlags, [in] DWORD dwMId,
///     [in] DWORD CodePage, [out] PropertyTagArray_r** ppPropTags);
/// ```
/// ([MS-OXNSPI] 3.1.4.1.6.) The proptags of object dwMId, strings typed by CodePage; an
/// unknown MId is NotFound with ppPropTags NULL.
pub fn get_prop_list(book: &AddressBook, r: &mut NdrReader<'_>) -> Result<Vec<u8>, NdrError> {
    let _flags = r.u32()?;
    let mid = r.u32()?;
    let code_page = r.u32()?;
    let mut w = NdrWriter::new();
    match book.by_mid(mid) {
        Some(_) => {
            let tags = AddressBook::columns(code_page == CP_WINUNICODE);
            write_prop_tags_ptr(&mut w, Some(&tags));
            w.put_u32(status::SUCCESS);
        }
        None => {
            write_prop_tags_ptr(&mut w, None);
            w.put_u32(status::NOT_FOUND);
        }
    }
    Ok(w.into_bytes())
}

/// ```text
/// long NspiCompareMIds([in] NSPI_HANDLE hRpc, [in] DWORD Reserved, [in] STAT* pStat,
///     [in] DWORD MId1, [in] DWORD MId2, [out] long* plResult);
/// ```
/// ([MS-OXNSPI] 3.1.4.1.12.) plResult: negative when MId1 comes first in the table,
/// 0 for the same row, positive after. A container other than the GAL is
/// InvalidBookmark; an MId not in the table GeneralFailure (plResult 0).
pub fn compare_mids(book: &AddressBook, r: &mut NdrReader<'_>) -> Result<Vec<u8>, NdrError> {
    let _reserved = r.u32()?;
    let stat = Stat::read(r)?;
    let first = r.u32()?;
    let second = r.u32()?;
    let compared = match stat.container_id {
        GAL_MID => book
            .position_of(first)
            .zip(book.position_of(second))
            .map(|(a, b)| a as i64 - b as i64)
            .ok_or(status::GENERAL_FAILURE),
        _ => Err(status::INVALID_BOOKMARK),
    };
    let mut w = NdrWriter::new();
    match compared {
        Ok(order) => {
            w.put_i32(order.signum() as i32);
            w.put_u32(status::SUCCESS);
        }
        Err(rc) => {
            w.put_i32(0);
            w.put_u32(rc);
        }
    }
    Ok(w.into_bytes())
}

/// ```text
/// long NspiGetProps([in] NSPI_HANDLE hRpc, [in] DWORD dwFlags, [in] STAT* pStat,
///     [in, unique] PropertyTagArray_r* pPropTags, [out] PropertyRow_r** ppRows);
/// ```
/// ([MS-OXNSPI] 3.1.4.1.7.) The object is pStat's CurrentRec; without pPropTags, all its
/// properties. A value the row lacks (or an unknown object, whose row is all errors)
/// makes the return ErrorsReturned.
pub fn get_props(book: &AddressBook, r: &mut NdrReader<'_>) -> Result<Vec<u8>, NdrError> {
    let flags = r.u32()?;
    let stat = Stat::read(r)?;
    let tags = read_prop_tags_ptr(r)?
        .unwrap_or_else(|| AddressBook::columns(stat.code_page == CP_WINUNICODE));
    if let Err(rc) = check_size(1, tags.len()) {
        let mut w = NdrWriter::new();
        write_row_ptr(&mut w, None);
        w.put_u32(rc);
        return Ok(w.into_bytes());
    }
    let entry = book.by_mid(stat.current_rec);
    let row = book.row(entry, &tags, style(&stat, flags));
    let errors = row.iter().any(|v| types::prop_type(v.tag) == ptype::ERROR);
    let mut w = NdrWriter::new();
    write_row_ptr(&mut w, Some(&row));
    w.put_u32(match errors {
        true => status::ERRORS_RETURNED,
        false => status::SUCCESS,
    });
    Ok(w.into_bytes())
}

/// ```text
/// long NspiGetSpecialTable([in] NSPI_HANDLE hRpc, [in] DWORD dwFlags, [in] STAT* pStat,
///     [in, out] DWORD* lpVersion, [out] PropertyRowSet_r** ppRows);
/// ```
/// ([MS-OXNSPI] 3.1.4.1.3.) The hierarchy table: the GAL alone; the address creation
/// table (NspiAddressCreationTemplates): empty, the lab has no templates.
pub fn get_special_table(book: &AddressBook, r: &mut NdrReader<'_>) -> Result<Vec<u8>, NdrError> {
    let flags = r.u32()?;
    let stat = Stat::read(r)?;
    let _client_version = r.u32()?;
    let rows = match flags & NSPI_ADDRESS_CREATION_TEMPLATES {
        0 => book.hierarchy_table(ValueStyle {
            code_page: stat.code_page,
            ephemeral_ids: false,
            unicode: flags & NSPI_UNICODE_STRINGS != 0,
        }),
        _ => Vec::new(),
    };
    let mut w = NdrWriter::new();
    w.put_u32(HIERARCHY_VERSION);
    finish_rows(w, Ok(rows))
}

/// ```text
/// long NspiQueryColumns([in] NSPI_HANDLE hRpc, [in] DWORD Reserved, [in] DWORD dwFlags,
///     [out] PropertyTagArray_r** ppColumns);
/// ```
/// ([MS-OXNSPI] 3.1.4.1.5.)
pub fn query_columns(_book: &AddressBook, r: &mut NdrReader<'_>) -> Result<Vec<u8>, NdrError> {
    let _reserved = r.u32()?;
    let flags = r.u32()?;
    let columns = AddressBook::columns(flags & NSPI_UNICODE_PROPTYPES != 0);
    let mut w = NdrWriter::new();
    write_prop_tags_ptr(&mut w, Some(&columns));
    w.put_u32(status::SUCCESS);
    Ok(w.into_bytes())
}

/// The common part of NspiResolveNames and NspiResolveNamesW after the names.
fn resolve(
    book: &AddressBook,
    stat: &Stat,
    tags: Option<Vec<u32>>,
    names: &[Option<String>],
) -> Vec<u8> {
    let resolutions: Vec<book::Resolution> = names
        .iter()
        .map(|n| {
            n.as_deref()
                .map_or(book::Resolution::Unresolved, |n| book.resolve(n))
        })
        .collect();
    let mids: Vec<u32> = resolutions.iter().map(|r| r.mid()).collect();
    let tags = tags.unwrap_or_else(default_columns);
    let resolved = resolutions
        .iter()
        .filter(|r| matches!(r, book::Resolution::Resolved(_)))
        .count();
    let mut w = NdrWriter::new();
    if let Err(rc) = check_size(resolved, tags.len()) {
        write_prop_tags_ptr(&mut w, None);
        write_row_set_ptr(&mut w, None);
        w.put_u32(rc);
        return w.into_bytes();
    }
    let style = style(stat, 0);
    let rows: Vec<PropertyRow> = resolutions
        .iter()
        .filter_map(|r| match r {
            book::Resolution::Resolved(mid) => Some(book.row(book.by_mid(*mid), &tags, style)),
            _ => None,
        })
        .collect();
    write_prop_tags_ptr(&mut w, Some(&mids));
    write_row_set_ptr(&mut w, Some(&rows));
    w.put_u32(status::SUCCESS);
    w.into_bytes()
}

/// ```text
/// long NspiResolveNames([in] NSPI_HANDLE hRpc, [in] DWORD Reserved, [in] STAT* pStat,
///     [in, unique] PropertyTagArray_r* pPropTags, [in] StringsArray_r* paStr,
///     [out] PropertyTagArray_r** ppMIds, [out] PropertyRowSet_r** ppRows);
/// ```
/// ([MS-OXNSPI] 3.1.4.1.18.) ppMIds: one MId per name (MID_UNRESOLVED 0, MID_AMBIGUOUS
/// 1); ppRows: a row per resolved name.
pub fn resolve_names(book: &AddressBook, r: &mut NdrReader<'_>) -> Result<Vec<u8>, NdrError> {
    let _reserved = r.u32()?;
    let stat = Stat::read(r)?;
    let tags = read_prop_tags_ptr(r)?;
    let names = read_strings_array(r, |r| r.string())?;
    let names: Vec<Option<String>> = names
        .into_iter()
        .map(|n| n.map(|n| String::from_utf8_lossy(&n).into_owned()))
        .collect();
    Ok(resolve(book, &stat, tags, &names))
}

/// ```text
/// long NspiResolveNamesW([in] NSPI_HANDLE hRpc, [in] DWORD Reserved, [in] STAT* pStat,
///     [in, unique] PropertyTagArray_r* pPropTags, [in] WStringsArray_r* paWStr,
///     [out] PropertyTagArray_r** ppMIds, [out] PropertyRowSet_r** ppRows);
/// ```
/// ([MS-OXNSPI] 3.1.4.1.19.) As NspiResolveNames with UTF-16 names.
pub fn resolve_names_w(book: &AddressBook, r: &mut NdrReader<'_>) -> Result<Vec<u8>, NdrError> {
    let _reserved = r.u32()?;
    let stat = Stat::read(r)?;
    let tags = read_prop_tags_ptr(r)?;
    let names = read_strings_array(r, |r| r.wstring())?;
    Ok(resolve(book, &stat, tags, &names))
}
