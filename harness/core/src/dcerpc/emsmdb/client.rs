//! The client side of EMSMDB's stubs, for tests and tools that drive the interfaces
//! (sans-IO and over sockets): request stubs of EcDoConnectEx, EcDoRpcExt2,
//! EcDoAsyncConnectEx and EcDoAsyncWaitEx (and the legacy EcDoConnect and EcDoRpc),
//! ROP requests, and the response stubs read
//! back. The layouts are those of the IDL in the module documentation.

use harness_wire::ndr::{ContextHandle, NdrError, NdrReader, NdrWriter};
use harness_wire::oxcrpc::{
    decode_extended_buffer, encode_extended_buffer, DecodeLimits, EncodeOptions, ExtError,
};
use harness_wire::Writer;

use super::rops::{self, folder_id, INBOX_INDEX};
use super::xor_legacy;

/// Why a response stub did not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("emsmdb response: {0}")]
    Ndr(#[from] NdrError),
    #[error("emsmdb response: rgbOut: {0}")]
    Ext(#[from] ExtError),
    #[error("emsmdb response: {0}")]
    Invalid(&'static str),
}

/// EcDoConnectEx's request stub (Outlook 2007's client version, no session linking).
pub fn connect_stub(dn: &str, aux: &[u8], cb_aux_in: u32) -> Vec<u8> {
    let mut w = connect_params(dn);
    w.put_conformant_bytes(aux);
    w.align(4);
    w.put_u32(cb_aux_in);
    w.put_u32(0x1008); // pcbAuxOut
    w.into_bytes()
}

/// EcDoConnect's request stub (opnum 0): EcDoConnectEx's without the aux buffers.
pub fn legacy_connect_stub(dn: &str) -> Vec<u8> {
    connect_params(dn).into_bytes()
}

/// The parameters EcDoConnect and EcDoConnectEx share, szUserDN to pulTimeStamp.
fn connect_params(dn: &str) -> NdrWriter {
    let mut w = NdrWriter::new();
    w.put_string(dn.as_bytes());
    // ulFlags, ulConMod, cbLimit, ulCpid, ulLcidString, ulLcidSort, ulIcxrLink
    for v in [0, 0, 0, 1252, 1033, 1033, 0xFFFF_FFFF] {
        w.put_u32(v);
    }
    w.put_u16(1); // usFCanConvertCodePages
    for v in [0x000C, 0x183E, 0x03E8] {
        w.put_u16(v); // rgwClientVersion
    }
    w.align(4);
    w.put_u32(0); // pulTimeStamp
    w
}

/// EcDoConnectEx's out parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    pub cxh: ContextHandle,
    pub polls_max: u32,
    pub session_index: u16,
    pub dn_prefix: Option<Vec<u8>>,
    pub display_name: Option<Vec<u8>>,
    pub server_version: [u16; 3],
    pub status: u32,
}

fn versions(r: &mut NdrReader<'_>) -> Result<[u16; 3], NdrError> {
    Ok([r.u16()?, r.u16()?, r.u16()?])
}

/// The rgbAuxOut / pcbAuxOut pair, which this server leaves empty.
fn empty_aux(r: &mut NdrReader<'_>) -> Result<(), ResponseError> {
    let aux = r.conformant_varying_bytes()?;
    r.align(4)?;
    let cb = r.u32()?;
    if !aux.is_empty() || cb != 0 {
        return Err(ResponseError::Invalid("rgbAuxOut not empty"));
    }
    Ok(())
}

/// EcDoConnectEx's response.
pub fn parse_connect(stub: &[u8]) -> Result<Connected, ResponseError> {
    parse_connect_form(stub, true)
}

/// EcDoConnect's response (no rgbAuxOut, pcbAuxOut).
pub fn parse_legacy_connect(stub: &[u8]) -> Result<Connected, ResponseError> {
    parse_connect_form(stub, false)
}

fn parse_connect_form(stub: &[u8], with_aux: bool) -> Result<Connected, ResponseError> {
    let mut r = NdrReader::new(stub);
    let cxh = r.context_handle()?;
    let polls_max = r.u32()?;
    let (_retry, _delay) = (r.u32()?, r.u32()?);
    let session_index = r.u16()?;
    let p = r.unique_ptr()?;
    let dn_prefix = r.pointee(p, |r| r.string())?;
    let p = r.unique_ptr()?;
    let display_name = r.pointee(p, |r| r.string())?;
    let server_version = versions(&mut r)?;
    let _best = versions(&mut r)?;
    r.align(4)?;
    let _stamp = r.u32()?;
    if with_aux {
        empty_aux(&mut r)?;
    }
    let status = r.u32()?;
    if !r.is_empty() {
        return Err(ResponseError::Invalid("octets after the return value"));
    }
    Ok(Connected {
        cxh,
        polls_max,
        session_index,
        dn_prefix,
        display_name,
        server_version,
        status,
    })
}

/// EcDoRpcExt2's request stub around an already encoded rgbIn.
pub fn rpc_stub(cxh: &ContextHandle, flags: u32, rgb_in: &[u8], cb_in: u32) -> Vec<u8> {
    let mut w = NdrWriter::new();
    w.put_context_handle(cxh);
    w.put_u32(flags);
    w.put_conformant_bytes(rgb_in);
    w.align(4);
    w.put_u32(cb_in);
    w.put_u32(0x40000); // pcbOut
    w.put_conformant_bytes(&[]);
    w.align(4);
    w.put_u32(0); // cbAuxIn
    w.put_u32(0x1008); // pcbAuxOut
    w.into_bytes()
}

/// A ROP request buffer: RopSize, the ROPs, the handle table.
pub fn rop_buffer(rops: &[u8], handles: &[u32]) -> Vec<u8> {
    let mut w = Writer::new();
    w.put_u16_le(u16::try_from(rops.len() + 2).unwrap_or(u16::MAX));
    w.put_bytes(rops);
    handles.iter().for_each(|h| w.put_u32_le(*h));
    w.into_bytes()
}

/// EcDoRpc's request stub (opnum 2): the ROP buffer XORed with 0xA5, its length, and
/// the largest response taken back.
pub fn legacy_rpc_stub(cxh: &ContextHandle, rops: &[u8], handles: &[u32], max_out: u16) -> Vec<u8> {
    let rgb = xor_legacy(&rop_buffer(rops, handles));
    let mut w = NdrWriter::new();
    w.put_context_handle(cxh);
    w.put_conformant_varying_bytes(rgb.len(), &rgb);
    w.put_u16(u16::try_from(rgb.len()).unwrap_or(u16::MAX));
    w.put_u16(max_out);
    w.into_bytes()
}

/// EcDoRpc's return value and the ROP response buffer, its XOR undone.
pub fn parse_legacy_rpc(stub: &[u8]) -> Result<RpcResult, ResponseError> {
    let mut r = NdrReader::new(stub);
    let _cxh = r.context_handle()?;
    let rgb = r.conformant_varying_bytes()?;
    if usize::from(r.u16()?) != rgb.len() {
        return Err(ResponseError::Invalid("length disagrees with rgb"));
    }
    let status = r.u32()?;
    if !r.is_empty() {
        return Err(ResponseError::Invalid("octets after the return value"));
    }
    Ok(RpcResult {
        status,
        rop_buffer: xor_legacy(rgb),
    })
}

/// A ROP request buffer (RopSize, ROPs, handle table) as an extended buffer, XorMagic
/// applied, compressed when asked.
pub fn rop_request(rops: &[u8], handles: &[u32], compress: bool) -> Vec<u8> {
    let w = rop_buffer(rops, handles);
    let options = EncodeOptions {
        compress,
        xor: true,
        ..EncodeOptions::default()
    };
    encode_extended_buffer(&w, options)
}

/// RopLogon for the private mailbox `essdn` names, its handle at `output_index`.
pub fn logon_rop(output_index: u8, essdn: &str) -> Vec<u8> {
    let mut w = Writer::new();
    w.put_bytes(&[rops::ROP_LOGON, 0, output_index, 0x01]);
    w.put_u32_le(0x0100_0000); // OpenFlags: USE_PER_MDB_REPLID_MAPPING
    w.put_u32_le(0);
    w.put_u16_le(u16::try_from(essdn.len() + 1).unwrap_or(u16::MAX));
    w.put_bytes(essdn.as_bytes());
    w.put_u8(0);
    w.into_bytes()
}

/// The columns an Inbox listing asks for, in order.
pub const LISTING_COLUMNS: [u32; 4] = [
    rops::PID_TAG_MID,
    rops::PID_TAG_SUBJECT,
    rops::PID_TAG_SENDER_NAME,
    rops::PID_TAG_MESSAGE_SIZE,
];
/// Rows one listing asks for (RopQueryRows' RowCount).
pub const LISTING_ROWS: u16 = 100;

/// RopLogon for `essdn` (handle 0) followed by what lists its Inbox: RopOpenFolder
/// (0 -> 1), RopGetContentsTable (1 -> 2), RopSetColumns and RopQueryRows on 2
/// ([MS-OXCROPS] 2.2.4.1, 2.2.4.14, 2.2.5.1, 2.2.5.4). Three handle slots.
pub fn inbox_listing_rops(essdn: &str) -> Vec<u8> {
    let mut w = Writer::new();
    w.put_bytes(&logon_rop(0, essdn));
    w.put_bytes(&[rops::ROP_OPEN_FOLDER, 0, 0, 1]);
    w.put_u64_le(folder_id(INBOX_INDEX));
    w.put_u8(0); // OpenModeFlags: read-only
    w.put_bytes(&[rops::ROP_GET_CONTENTS_TABLE, 0, 1, 2, 0]);
    w.put_bytes(&[rops::ROP_SET_COLUMNS, 0, 2, 0]);
    w.put_u16_le(LISTING_COLUMNS.len() as u16);
    LISTING_COLUMNS.iter().for_each(|c| w.put_u32_le(*c));
    // QueryRowsFlags 0, ForwardRead 1, RowCount.
    w.put_bytes(&[rops::ROP_QUERY_ROWS, 0, 2, 0, 1]);
    w.put_u16_le(LISTING_ROWS);
    w.into_bytes()
}

/// One message of an Inbox listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedMessage {
    pub mid: u64,
    pub subject: String,
    pub from: String,
    pub size: u32,
}

/// What the responses to [`inbox_listing_rops`] said: the first ROP that failed and its
/// return value, or the rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    Refused { rop: u8, ec: u32 },
    Rows(Vec<ListedMessage>),
}

/// Reads the ROP responses of [`inbox_listing_rops`]. Every count is checked against the
/// octets left before anything is kept.
pub fn read_inbox_listing(responses: &[u8]) -> Result<Listing, ResponseError> {
    use harness_wire::Reader;
    let short = |_| ResponseError::Invalid("listing: ROP response cut short");
    let mut r = Reader::new(responses);
    // Each response: RopId, an index, ReturnValue; then its fields when that is 0.
    // [MS-OXCROPS] 2.2.3.1.2 (RopLogon, private), 2.2.4.1.2, 2.2.5.1.2, 2.2.5.4.2.
    let steps: [(u8, usize); 4] = [
        // LogonFlags, 13 folder ids, ResponseFlags, MailboxGuid, ReplId, ReplGuid,
        // LogonTime, GwartTime, StoreState.
        (rops::ROP_LOGON, 1 + 13 * 8 + 1 + 16 + 2 + 16 + 8 + 8 + 4),
        (rops::ROP_OPEN_FOLDER, 2),        // HasRules, IsGhosted
        (rops::ROP_GET_CONTENTS_TABLE, 4), // RowCount
        (rops::ROP_SET_COLUMNS, 1),        // TableStatus
    ];
    for (want, fields) in steps {
        let [id, _index] = r.array().map_err(short)?;
        if id != want {
            return Err(ResponseError::Invalid(
                "listing: ROP responses out of order",
            ));
        }
        let ec = u32::from_le_bytes(r.array().map_err(short)?);
        if ec != 0 {
            return Ok(Listing::Refused { rop: id, ec });
        }
        r.skip(fields).map_err(short)?;
    }
    let [id, _index] = r.array().map_err(short)?;
    if id != rops::ROP_QUERY_ROWS {
        return Err(ResponseError::Invalid(
            "listing: ROP responses out of order",
        ));
    }
    let ec = u32::from_le_bytes(r.array().map_err(short)?);
    if ec != 0 {
        return Ok(Listing::Refused { rop: id, ec });
    }
    let _origin = r.u8().map_err(short)?;
    let count = u16::from_le_bytes(r.array().map_err(short)?);
    // The smallest row is 1 + 8 + 2 + 2 + 4 octets: a count the buffer cannot hold is a
    // lie, found before any row is kept.
    if usize::from(count) * 17 > r.remaining() {
        return Err(ResponseError::Invalid(
            "listing: RowCount beyond the buffer",
        ));
    }
    let mut rows = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        if r.u8().map_err(short)? != 0 {
            return Err(ResponseError::Invalid(
                "listing: a flagged row (a column missing)",
            ));
        }
        let mid = u64::from_le_bytes(r.array().map_err(short)?);
        let subject = utf16z(&mut r)?;
        let from = utf16z(&mut r)?;
        let size = u32::from_le_bytes(r.array().map_err(short)?);
        rows.push(ListedMessage {
            mid,
            subject,
            from,
            size,
        });
    }
    if !r.is_empty() {
        return Err(ResponseError::Invalid("listing: octets after the last row"));
    }
    Ok(Listing::Rows(rows))
}

/// A NUL-terminated UTF-16LE string (PtypString in a row).
fn utf16z(r: &mut harness_wire::Reader<'_>) -> Result<String, ResponseError> {
    let mut units = Vec::new();
    loop {
        let unit = u16::from_le_bytes(
            r.array()
                .map_err(|_| ResponseError::Invalid("listing: string without its NUL"))?,
        );
        if unit == 0 {
            break;
        }
        units.push(unit);
    }
    String::from_utf16(&units).map_err(|_| ResponseError::Invalid("listing: string not UTF-16"))
}

/// RopRegisterNotification for NewMail in the Inbox.
pub fn register_rop(input_index: u8, output_index: u8) -> Vec<u8> {
    let mut w = Writer::new();
    w.put_bytes(&[
        rops::ROP_REGISTER_NOTIFICATION,
        0,
        input_index,
        output_index,
    ]);
    w.put_bytes(&[rops::NOTIFY_NEW_MAIL, 0, 0]);
    w.put_u64_le(folder_id(INBOX_INDEX));
    w.put_u64_le(0);
    w.into_bytes()
}

/// EcDoRpcExt2's return value and the ROP response buffer inside rgbOut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcResult {
    pub status: u32,
    pub rop_buffer: Vec<u8>,
}

impl RpcResult {
    /// The ROP responses and the handle table (both empty for a failed call).
    pub fn split(&self) -> (Vec<u8>, Vec<u32>) {
        match rops::split_request(&self.rop_buffer) {
            Ok((rops, handles)) => (rops.to_vec(), handles),
            Err(_) => (Vec::new(), Vec::new()),
        }
    }
}

pub fn parse_rpc(stub: &[u8]) -> Result<RpcResult, ResponseError> {
    let mut r = NdrReader::new(stub);
    let _cxh = r.context_handle()?;
    let _flags = r.u32()?;
    let rgb_out = r.conformant_varying_bytes()?;
    r.align(4)?;
    if r.u32()? as usize != rgb_out.len() {
        return Err(ResponseError::Invalid("pcbOut disagrees with rgbOut"));
    }
    empty_aux(&mut r)?;
    let _trans_time = r.u32()?;
    let status = r.u32()?;
    if !r.is_empty() {
        return Err(ResponseError::Invalid("octets after the return value"));
    }
    let rop_buffer = if rgb_out.is_empty() {
        Vec::new()
    } else {
        decode_extended_buffer(rgb_out, DecodeLimits::RGB_OUT)?
    };
    Ok(RpcResult { status, rop_buffer })
}

/// A stub that is one context handle (EcDoDisconnect, EcDoAsyncConnectEx).
pub fn handle_stub(handle: &ContextHandle) -> Vec<u8> {
    let mut w = NdrWriter::new();
    w.put_context_handle(handle);
    w.into_bytes()
}

/// The handle and return value of EcDoDisconnect or EcDoAsyncConnectEx.
pub fn parse_handle_response(stub: &[u8]) -> Result<(ContextHandle, u32), ResponseError> {
    let mut r = NdrReader::new(stub);
    Ok((r.context_handle()?, r.u32()?))
}

/// EcDoAsyncWaitEx's request stub.
pub fn wait_stub(acxh: &ContextHandle) -> Vec<u8> {
    let mut w = NdrWriter::new();
    w.put_context_handle(acxh);
    w.put_u32(0);
    w.into_bytes()
}

/// (pulFlagsOut, return value) of EcDoAsyncWaitEx.
pub fn parse_wait(stub: &[u8]) -> Result<(u32, u32), ResponseError> {
    let mut r = NdrReader::new(stub);
    Ok((r.u32()?, r.u32()?))
}
