//! The client side of NSPI's stubs ([MS-OXNSPI] 3.1.4.1; the IDL of each operation is on
//! its server half in `ops.rs` and `mod.rs`): request stubs for the operations the lab
//! serves, and their response stubs read back into values. The driver's address-book
//! clients and the tests build on these; everything a server sends is read with the
//! bounded NDR reader (counts checked against [`MAX_VALUES`] before anything is held).
//!
//! [`MAX_VALUES`]: super::types::MAX_VALUES

use harness_wire::ndr::{ContextHandle, NdrError, NdrReader, NdrWriter};

use super::types::{
    read_prop_tags_ptr, read_row_ptr, read_row_set_ptr, write_prop_tags_ptr, write_restriction_ptr,
    PropertyRow, Restriction, Stat,
};

/// NSPI's opnums ([MS-OXNSPI] 3.1.4.1).
pub mod opnum {
    pub const BIND: u16 = 0;
    pub const UNBIND: u16 = 1;
    pub const UPDATE_STAT: u16 = 2;
    pub const QUERY_ROWS: u16 = 3;
    pub const GET_MATCHES: u16 = 5;
    pub const DN_TO_MID: u16 = 7;
    pub const GET_PROPS: u16 = 9;
    pub const GET_SPECIAL_TABLE: u16 = 12;
    pub const QUERY_COLUMNS: u16 = 16;
    pub const RESOLVE_NAMES_W: u16 = 20;
}

/// The STAT a client starts with: the GAL (container 0), from its beginning, in `code_page`
/// with the US English locales (what Outlook and impacket send).
pub fn stat(code_page: u32) -> Stat {
    Stat {
        code_page,
        template_locale: 0x409,
        sort_locale: 0x409,
        ..Stat::default()
    }
}

fn with_handle(handle: &ContextHandle) -> NdrWriter {
    let mut w = NdrWriter::new();
    w.put_context_handle(handle);
    w
}

/// NspiBind: `flags`, `stat`, and a server GUID to fill in when `want_guid`.
pub fn bind_stub(flags: u32, stat: &Stat, want_guid: bool) -> Vec<u8> {
    let mut w = NdrWriter::new();
    w.put_u32(flags);
    stat.write(&mut w);
    w.put_pointer(want_guid);
    if want_guid {
        w.put_bytes(&[0; 16]);
    }
    w.into_bytes()
}

/// NspiUnbind.
pub fn unbind_stub(handle: &ContextHandle) -> Vec<u8> {
    let mut w = with_handle(handle);
    w.put_u32(0);
    w.into_bytes()
}

/// NspiUpdateStat, asking for the rows moved when `want_delta`.
pub fn update_stat_stub(handle: &ContextHandle, stat: &Stat, want_delta: bool) -> Vec<u8> {
    let mut w = with_handle(handle);
    w.put_u32(0);
    stat.write(&mut w);
    w.put_pointer(want_delta);
    if want_delta {
        w.put_i32(0);
    }
    w.into_bytes()
}

/// NspiQueryRows: `count` rows from `stat`'s position, or the rows of `explicit` MIds;
/// `tags` the columns (`None`: the server's default columns).
pub fn query_rows_stub(
    handle: &ContextHandle,
    flags: u32,
    stat: &Stat,
    explicit: Option<&[u32]>,
    count: u32,
    tags: Option<&[u32]>,
) -> Vec<u8> {
    let mut w = with_handle(handle);
    w.put_u32(flags);
    stat.write(&mut w);
    w.put_u32(explicit.map_or(0, |t| t.len() as u32));
    w.put_pointer(explicit.is_some());
    if let Some(mids) = explicit {
        w.put_conformance(mids.len());
        mids.iter().for_each(|m| w.put_u32(*m));
    }
    w.put_u32(count);
    write_prop_tags_ptr(&mut w, tags);
    w.into_bytes()
}

/// NspiGetMatches: the GAL's rows matching `filter`, at most `requested`, with the
/// `tags` columns (`None`: MIds only).
pub fn get_matches_stub(
    handle: &ContextHandle,
    stat: &Stat,
    filter: Option<&Restriction>,
    requested: u32,
    tags: Option<&[u32]>,
) -> Vec<u8> {
    let mut w = with_handle(handle);
    w.put_u32(0);
    stat.write(&mut w);
    w.put_pointer(false); // pReserved
    w.put_u32(0);
    write_restriction_ptr(&mut w, filter);
    w.put_pointer(false); // lpPropName
    w.put_u32(requested);
    write_prop_tags_ptr(&mut w, tags);
    w.into_bytes()
}

/// A `StringsArray_r` of 8-bit strings (NULL for `None`).
fn put_strings(w: &mut NdrWriter, names: &[Option<&[u8]>]) {
    w.put_conformance(names.len());
    w.put_u32(names.len() as u32);
    names.iter().for_each(|n| _ = w.put_pointer(n.is_some()));
    names.iter().flatten().for_each(|n| w.put_string(n));
}

/// NspiDNToMId for legacy DNs.
pub fn dn_to_mid_stub(handle: &ContextHandle, dns: &[&str]) -> Vec<u8> {
    let mut w = with_handle(handle);
    w.put_u32(0);
    let names: Vec<Option<&[u8]>> = dns.iter().map(|d| Some(d.as_bytes())).collect();
    put_strings(&mut w, &names);
    w.into_bytes()
}

/// NspiGetProps of `stat`'s CurrentRec (`None` tags: all its properties).
pub fn get_props_stub(
    handle: &ContextHandle,
    flags: u32,
    stat: &Stat,
    tags: Option<&[u32]>,
) -> Vec<u8> {
    let mut w = with_handle(handle);
    w.put_u32(flags);
    stat.write(&mut w);
    write_prop_tags_ptr(&mut w, tags);
    w.into_bytes()
}

/// NspiGetSpecialTable: the hierarchy table (or, with NspiAddressCreationTemplates, the
/// templates), `version` the client's last one.
pub fn get_special_table_stub(
    handle: &ContextHandle,
    flags: u32,
    stat: &Stat,
    version: u32,
) -> Vec<u8> {
    let mut w = with_handle(handle);
    w.put_u32(flags);
    stat.write(&mut w);
    w.put_u32(version);
    w.into_bytes()
}

/// NspiQueryColumns.
pub fn query_columns_stub(handle: &ContextHandle, flags: u32) -> Vec<u8> {
    let mut w = with_handle(handle);
    w.put_u32(0);
    w.put_u32(flags);
    w.into_bytes()
}

/// NspiResolveNamesW for `names` (UTF-16 on the wire), with the `tags` columns.
pub fn resolve_names_w_stub(
    handle: &ContextHandle,
    stat: &Stat,
    tags: Option<&[u32]>,
    names: &[&str],
) -> Vec<u8> {
    let mut w = with_handle(handle);
    w.put_u32(0);
    stat.write(&mut w);
    write_prop_tags_ptr(&mut w, tags);
    w.put_conformance(names.len());
    w.put_u32(names.len() as u32);
    names.iter().for_each(|_| _ = w.put_pointer(true));
    names.iter().for_each(|n| w.put_wstring(n));
    w.into_bytes()
}

/// Why a response stub did not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NspiResponseError {
    #[error("nspi response: {0}")]
    Ndr(#[from] NdrError),
    #[error("nspi response: octets after the return value")]
    Trailing,
}

/// Reads a response with `read`, then the return value, and nothing after it.
fn response<T>(
    stub: &[u8],
    read: impl FnOnce(&mut NdrReader<'_>) -> Result<T, NdrError>,
) -> Result<(T, u32), NspiResponseError> {
    let mut r = NdrReader::new(stub);
    let value = read(&mut r)?;
    let rc = r.u32()?;
    if !r.is_empty() {
        return Err(NspiResponseError::Trailing);
    }
    Ok((value, rc))
}

/// NspiBind's out values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    pub server_guid: Option<[u8; 16]>,
    pub handle: ContextHandle,
    pub rc: u32,
}

pub fn parse_bind(stub: &[u8]) -> Result<Bound, NspiResponseError> {
    let ((server_guid, handle), rc) = response(stub, |r| {
        let ptr = r.unique_ptr()?;
        let guid = r.pointee(ptr, |r| {
            let mut g = [0u8; 16];
            g.copy_from_slice(r.bytes(16)?);
            Ok(g)
        })?;
        Ok((guid, r.context_handle()?))
    })?;
    Ok(Bound {
        server_guid,
        handle,
        rc,
    })
}

/// NspiUnbind's handle (nil once unbound) and return value (UnbindSuccess, 1).
pub fn parse_unbind(stub: &[u8]) -> Result<(ContextHandle, u32), NspiResponseError> {
    response(stub, |r| r.context_handle())
}

/// NspiUpdateStat's STAT, rows moved (when asked) and return value.
pub fn parse_update_stat(stub: &[u8]) -> Result<(Stat, Option<i32>, u32), NspiResponseError> {
    let ((stat, delta), rc) = response(stub, |r| {
        let stat = Stat::read(r)?;
        let ptr = r.unique_ptr()?;
        Ok((stat, r.pointee(ptr, |r| r.i32())?))
    })?;
    Ok((stat, delta, rc))
}

/// Rows with the STAT after them (NspiQueryRows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rows {
    pub stat: Stat,
    pub rows: Option<Vec<PropertyRow>>,
    pub rc: u32,
}

pub fn parse_query_rows(stub: &[u8]) -> Result<Rows, NspiResponseError> {
    let ((stat, rows), rc) = response(stub, |r| Ok((Stat::read(r)?, read_row_set_ptr(r)?)))?;
    Ok(Rows { stat, rows, rc })
}

/// NspiGetMatches's out values: the STAT, the matching MIds, their rows (when columns
/// were asked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matches {
    pub stat: Stat,
    pub mids: Option<Vec<u32>>,
    pub rows: Option<Vec<PropertyRow>>,
    pub rc: u32,
}

pub fn parse_get_matches(stub: &[u8]) -> Result<Matches, NspiResponseError> {
    let ((stat, mids, rows), rc) = response(stub, |r| {
        Ok((Stat::read(r)?, read_prop_tags_ptr(r)?, read_row_set_ptr(r)?))
    })?;
    Ok(Matches {
        stat,
        mids,
        rows,
        rc,
    })
}

/// A PropertyTagArray_r out value and the return value: NspiDNToMId's MIds,
/// NspiQueryColumns's columns.
pub fn parse_tags(stub: &[u8]) -> Result<(Option<Vec<u32>>, u32), NspiResponseError> {
    response(stub, read_prop_tags_ptr)
}

/// NspiGetProps's row and return value (ErrorsReturned when a value is an error).
pub fn parse_get_props(stub: &[u8]) -> Result<(Option<PropertyRow>, u32), NspiResponseError> {
    response(stub, read_row_ptr)
}

/// NspiGetSpecialTable's version, rows and return value.
pub fn parse_special_table(
    stub: &[u8],
) -> Result<(u32, Option<Vec<PropertyRow>>, u32), NspiResponseError> {
    let ((version, rows), rc) = response(stub, |r| Ok((r.u32()?, read_row_set_ptr(r)?)))?;
    Ok((version, rows, rc))
}

/// NspiResolveNamesW's out values: one MId per name (0 unresolved, 1 ambiguous), the
/// rows of the resolved ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub mids: Option<Vec<u32>>,
    pub rows: Option<Vec<PropertyRow>>,
    pub rc: u32,
}

pub fn parse_resolve_names(stub: &[u8]) -> Result<Resolved, NspiResponseError> {
    let ((mids, rows), rc) =
        response(stub, |r| Ok((read_prop_tags_ptr(r)?, read_row_set_ptr(r)?)))?;
    Ok(Resolved { mids, rows, rc })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcerpc::interface::{CallOutcome, RpcInterface};
    use crate::dcerpc::nspi::book::{tag, CP_WINUNICODE, GAL_MID};
    use crate::dcerpc::nspi::fuzz::{call_context, principal, small_world};
    use crate::dcerpc::nspi::ops::NSPI_UNICODE_PROPTYPES;
    use crate::dcerpc::nspi::types::{PropValue, PropertyValue};
    use crate::dcerpc::nspi::{status, Nspi};

    /// The in-process NSPI of the small world, and what alice's calls get back.
    struct Book(Nspi);

    impl Book {
        fn new() -> Book {
            Book(Nspi::for_world(&small_world()))
        }

        fn call(&self, opnum: u16, stub: &[u8]) -> Vec<u8> {
            let alice = principal("alice");
            match self.0.call(&call_context(Some(&alice), 0), opnum, stub) {
                CallOutcome::Response(r) => r,
                other => panic!("opnum {opnum}: {other:?}"),
            }
        }

        fn bind(&self) -> ContextHandle {
            let bound = parse_bind(&self.call(opnum::BIND, &bind_stub(0, &stat(1252), true)))
                .expect("NspiBind response");
            assert_eq!(bound.rc, status::SUCCESS);
            assert!(bound.server_guid.is_some_and(|g| g != [0; 16]));
            assert!(!bound.handle.is_nil());
            bound.handle
        }
    }

    fn string(row: &PropertyRow, tag: u32) -> Option<String> {
        row.iter()
            .find(|v| v.tag == tag)
            .and_then(|v| match &v.value {
                PropValue::Unicode(s) => Some(s.clone()),
                PropValue::String8(s) => Some(String::from_utf8_lossy(s).into_owned()),
                _ => None,
            })
    }

    #[test]
    fn a_session_reads_the_address_book_through_every_operation() {
        let book = Book::new();
        let h = book.bind();

        // The hierarchy table holds the GAL.
        let (_, rows, rc) = parse_special_table(&book.call(
            opnum::GET_SPECIAL_TABLE,
            &get_special_table_stub(&h, 0, &stat(1252), 0),
        ))
        .unwrap();
        assert_eq!(rc, status::SUCCESS);
        assert!(!rows.expect("rows").is_empty());

        // Columns, then the GAL's rows by position, in those columns.
        let (columns, rc) = parse_tags(&book.call(
            opnum::QUERY_COLUMNS,
            &query_columns_stub(&h, NSPI_UNICODE_PROPTYPES),
        ))
        .unwrap();
        assert_eq!(rc, status::SUCCESS);
        assert!(columns.unwrap().contains(&tag::DISPLAY_NAME));
        let cols = [tag::DISPLAY_NAME, tag::ACCOUNT];
        let rows = parse_query_rows(&book.call(
            opnum::QUERY_ROWS,
            &query_rows_stub(&h, 0, &stat(1252), None, 50, Some(&cols)),
        ))
        .unwrap();
        assert_eq!(rows.rc, status::SUCCESS);
        let rows = rows.rows.expect("rows");
        let accounts: Vec<String> = rows
            .iter()
            .filter_map(|r| string(r, tag::ACCOUNT))
            .collect();
        for user in ["alice", "bob", "carol"] {
            assert!(accounts.iter().any(|a| a == user), "{accounts:?}");
        }

        // A DN to its MId, and that MId's properties; an unknown DN maps to 0.
        let dn = crate::dcerpc::legacy_dn::user_dn("EXAMPLE", "bob");
        let (mids, rc) =
            parse_tags(&book.call(opnum::DN_TO_MID, &dn_to_mid_stub(&h, &[&dn, "/o=nobody"])))
                .unwrap();
        assert_eq!(rc, status::SUCCESS);
        let mids = mids.unwrap();
        assert_eq!(mids.len(), 2);
        assert_ne!(mids[0], 0);
        assert_eq!(mids[1], 0);
        let at_bob = Stat {
            current_rec: mids[0],
            ..stat(1252)
        };
        let (row, rc) = parse_get_props(&book.call(
            opnum::GET_PROPS,
            &get_props_stub(&h, 0, &at_bob, Some(&[tag::ACCOUNT])),
        ))
        .unwrap();
        assert_eq!(rc, status::SUCCESS);
        assert_eq!(string(&row.unwrap(), tag::ACCOUNT).as_deref(), Some("bob"));

        // Names resolve: one exact, one not at all.
        let Resolved { mids, rows, rc } = parse_resolve_names(&book.call(
            opnum::RESOLVE_NAMES_W,
            &resolve_names_w_stub(
                &h,
                &stat(1252),
                Some(&[tag::ACCOUNT]),
                &["carol", "nobody-here"],
            ),
        ))
        .unwrap();
        assert_eq!(rc, status::SUCCESS);
        let mids = mids.unwrap();
        assert_ne!(mids[0], 0);
        assert_eq!(mids[1], 0);
        assert_eq!(
            string(&rows.unwrap()[0], tag::ACCOUNT).as_deref(),
            Some("carol")
        );

        // A restriction: the entries whose account is alice.
        let filter = Restriction::Property {
            relop: 4, // RELOP_EQ
            tag: tag::ACCOUNT,
            value: Some(PropertyValue {
                tag: tag::ACCOUNT,
                value: PropValue::Unicode("alice".into()),
            }),
        };
        let matches = parse_get_matches(&book.call(
            opnum::GET_MATCHES,
            &get_matches_stub(&h, &stat(1252), Some(&filter), 10, Some(&[tag::ACCOUNT])),
        ))
        .unwrap();
        assert_eq!(matches.rc, status::SUCCESS, "{matches:?}");
        assert_eq!(matches.mids.map(|m| m.len()), Some(1));
        assert_eq!(
            string(&matches.rows.unwrap()[0], tag::ACCOUNT).as_deref(),
            Some("alice")
        );

        // Moving the cursor: two rows on from the beginning.
        let (moved, delta, rc) = parse_update_stat(&book.call(
            opnum::UPDATE_STAT,
            &update_stat_stub(
                &h,
                &Stat {
                    delta: 2,
                    container_id: GAL_MID,
                    ..stat(1252)
                },
                true,
            ),
        ))
        .unwrap();
        assert_eq!(rc, status::SUCCESS);
        assert_eq!((moved.num_pos, delta), (2, Some(2)));

        let (handle, rc) = parse_unbind(&book.call(opnum::UNBIND, &unbind_stub(&h))).unwrap();
        assert_eq!((handle.is_nil(), rc), (true, status::UNBIND_SUCCESS));
    }

    #[test]
    fn refusals_come_back_as_return_values() {
        let book = Book::new();
        // The Unicode code page is refused at bind ([MS-OXNSPI] 3.1.4.1.1).
        let bound = parse_bind(&book.call(opnum::BIND, &bind_stub(0, &stat(CP_WINUNICODE), false)))
            .unwrap();
        assert_eq!(
            (bound.rc, bound.handle.is_nil()),
            (status::INVALID_CODEPAGE, true)
        );
        assert_eq!(bound.server_guid, None);
        // A container other than the GAL is an invalid bookmark, with no rows.
        let h = book.bind();
        let rows = parse_query_rows(&book.call(
            opnum::QUERY_ROWS,
            &query_rows_stub(
                &h,
                0,
                &Stat {
                    container_id: 0x77,
                    ..stat(1252)
                },
                None,
                5,
                None,
            ),
        ))
        .unwrap();
        assert_eq!((rows.rc, rows.rows), (status::INVALID_BOOKMARK, None));
    }

    #[test]
    fn every_truncation_of_a_response_is_an_error_and_trailing_octets_too() {
        let book = Book::new();
        let h = book.bind();
        let full = book.call(
            opnum::QUERY_ROWS,
            &query_rows_stub(&h, 0, &stat(1252), None, 50, Some(&[tag::DISPLAY_NAME])),
        );
        assert!(parse_query_rows(&full).is_ok());
        for cut in 0..full.len() {
            assert!(parse_query_rows(&full[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = full.clone();
        longer.extend_from_slice(&[0; 4]);
        assert_eq!(parse_query_rows(&longer), Err(NspiResponseError::Trailing));
    }

    #[test]
    fn restrictions_written_here_read_back_equal() {
        use crate::dcerpc::nspi::types::read_restriction_ptr;
        let value = |s: &str| {
            Some(PropertyValue {
                tag: tag::DISPLAY_NAME,
                value: PropValue::Unicode(s.into()),
            })
        };
        let filter = Restriction::And(vec![
            Restriction::Or(vec![
                Restriction::Exist { tag: tag::ACCOUNT },
                Restriction::Content {
                    fuzzy_level: 0x0001_0002,
                    tag: tag::DISPLAY_NAME,
                    value: value("Al"),
                },
            ]),
            Restriction::Not(Some(Box::new(Restriction::Property {
                relop: 4,
                tag: tag::DISPLAY_NAME,
                value: value("Bob"),
            }))),
            Restriction::Not(None),
            Restriction::Other(7),
            Restriction::Other(9),
        ]);
        for f in [None, Some(&filter)] {
            let mut w = NdrWriter::new();
            write_restriction_ptr(&mut w, f);
            let bytes = w.into_bytes();
            let mut r = NdrReader::new(&bytes);
            assert_eq!(read_restriction_ptr(&mut r).unwrap().as_ref(), f);
            assert!(r.is_empty());
        }
    }
}
