//! The ROP buffers inside EcDoRpcExt2's extended buffers ([MS-OXCROPS] 2.2.1): a request
//! is RopSize (u16, counting itself), the ROP requests, then the server object handle
//! table (u32s to the end); a response has the same three parts. The subset served:
//! RopLogon (private mailbox), RopRelease, RopRegisterNotification, RopOpenFolder,
//! RopGetContentsTable, RopSetColumns and RopQueryRows (the INBOX of the IMAP store),
//! plus the server-sent RopNotify (NewMail) and RopPending.

use std::collections::HashMap;

use harness_wire::{DecodeError, Reader, Writer};

use crate::notify::{MailEvent, SubscriptionId};

pub const ROP_RELEASE: u8 = 0x01;
pub const ROP_OPEN_FOLDER: u8 = 0x02;
pub const ROP_GET_CONTENTS_TABLE: u8 = 0x05;
pub const ROP_SET_COLUMNS: u8 = 0x12;
pub const ROP_QUERY_ROWS: u8 = 0x15;
pub const ROP_REGISTER_NOTIFICATION: u8 = 0x29;
pub const ROP_NOTIFY: u8 = 0x2A;
pub const ROP_PENDING: u8 = 0x6E;
pub const ROP_LOGON: u8 = 0xFE;

/// ecNotSupported / MAPI_E_NO_SUPPORT ([MS-OXCDATA] 2.4).
pub const EC_NOT_SUPPORTED: u32 = 0x8004_0102;
/// ecNullObject: the handle index names no object ([MS-OXCDATA] 2.4).
pub const EC_NULL_OBJECT: u32 = 0x0000_04B9;
/// ecAccessDenied.
pub const EC_ACCESS_DENIED: u32 = 0x8007_0005;
/// ecNotFound.
pub const EC_NOT_FOUND: u32 = 0x8004_010F;
/// MAPI_E_NOT_ENOUGH_MEMORY: a limit of this server was reached.
pub const EC_OUT_OF_MEMORY: u32 = 0x8007_000E;
/// Server objects one session holds at once: a client that never releases its handles
/// must not make the session grow without bound.
pub const MAX_OBJECTS: usize = 1024;

/// RopLogon LogonFlags: Private (a mailbox, not public folders), [MS-OXCROPS] 2.2.3.1.1.
const LOGON_PRIVATE: u8 = 0x01;
/// RopLogon response ResponseFlags: Reserved (MUST be set), OwnerRight, SendAsRight.
const RESPONSE_FLAGS_OWNER: u8 = 0x01 | 0x02 | 0x04;
/// NotificationTypes bit NewMail ([MS-OXCNOTIF] 2.2.1.2.1).
pub const NOTIFY_NEW_MAIL: u8 = 0x02;
/// NotificationFlags of a NewMail notification ([MS-OXCNOTIF] 2.2.1.4.1.2).
const NOTIFICATION_NEW_MAIL: u16 = 0x0002;
/// The replica id of every folder and message id this server makes.
pub const REPLICA_ID: u16 = 0x0001;

/// The 13 special folders of a private mailbox, in RopLogon response order
/// ([MS-OXCROPS] 2.2.3.1.3: Root, Deferred Action, Spooler Queue, IPM Subtree, Inbox,
/// Outbox, Sent Items, Deleted Items, Common Views, Schedule, Search, Views, Shortcuts).
pub const MAILBOX_FOLDERS: usize = 13;
/// Index of the Inbox among them.
pub const INBOX_INDEX: usize = 4;

/// A folder or message id: ReplicaId (u16) then a 6-octet GlobalCounter, big-endian
/// ([MS-OXCDATA] 2.2.1.1), as the u64 the wire carries little-endian.
pub fn store_id(counter: u64) -> u64 {
    let mut octets = [0u8; 8];
    octets[..2].copy_from_slice(&REPLICA_ID.to_le_bytes());
    octets[2..].copy_from_slice(&counter.to_be_bytes()[2..]);
    u64::from_le_bytes(octets)
}

/// The id of special folder `index` (0..13).
pub fn folder_id(index: usize) -> u64 {
    store_id(index as u64 + 1)
}

/// The message id of INBOX message `uid` (counters above the folders').
pub fn message_id(uid: u32) -> u64 {
    store_id(0x1_0000 + u64::from(uid))
}

/// A server object a handle names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerObject {
    Logon {
        logon_id: u8,
    },
    /// A folder; `mailbox` is the store's mailbox behind it (None: a special folder the
    /// store has no mail in).
    Folder {
        mailbox: Option<String>,
    },
    /// A folder's contents table: its columns and the next row to read.
    Table {
        mailbox: Option<String>,
        columns: Vec<u32>,
        cursor: usize,
    },
    /// A notification subscription, the hub's id for its events.
    Notification {
        logon_id: u8,
        subscription: Option<SubscriptionId>,
    },
}

/// What the ROPs of one session work on.
pub trait RopTarget {
    /// The mailbox owner of the session.
    fn user(&self) -> &str;
    /// The DN a private logon's Essdn may name (compared case-insensitively).
    fn user_dn(&self) -> &str;
    fn objects(&mut self) -> &mut HashMap<u32, ServerObject>;
    fn new_handle(&mut self) -> u32;
    /// Subscribes to NewMail for the session's user in `mailbox` (None: all).
    fn subscribe(&mut self, mailbox: Option<&str>) -> Option<SubscriptionId>;
    fn unsubscribe(&mut self, id: SubscriptionId);
    /// The messages of a store mailbox, in UID order.
    fn rows(&self, mailbox: &str) -> Vec<MessageRow>;
}

/// What a contents table shows of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    pub uid: u32,
    pub subject: String,
    pub from: String,
    pub size: u32,
}

/// Columns a contents table answers ([MS-OXPROPS]); others read as MAPI_E_NOT_FOUND.
pub const PID_TAG_SUBJECT: u32 = 0x0037_001F;
pub const PID_TAG_SENDER_NAME: u32 = 0x0C1A_001F;
pub const PID_TAG_MESSAGE_SIZE: u32 = 0x0E08_0003;
pub const PID_TAG_MID: u32 = 0x674A_0014;
/// Columns per table: far above what clients set, and bounds the per-row work.
const MAX_COLUMNS: usize = 256;

/// The request buffer's sizes disagree (ecRpcFormat as EcDoRpcExt2's return value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RopFormatError;

impl From<DecodeError> for RopFormatError {
    fn from(_: DecodeError) -> Self {
        RopFormatError
    }
}

/// One ROP being run: the request octets after its RopId, the response buffer, the
/// handle table and the session.
struct Rop<'a, 'b> {
    r: Reader<'a>,
    out: Writer,
    handles: Vec<u32>,
    target: &'b mut dyn RopTarget,
}

impl<'a> Rop<'a, '_> {
    fn parts(
        &mut self,
    ) -> (
        &mut Reader<'a>,
        &mut Writer,
        &mut Vec<u32>,
        &mut dyn RopTarget,
    ) {
        (
            &mut self.r,
            &mut self.out,
            &mut self.handles,
            &mut *self.target,
        )
    }
}

/// Splits a ROP request buffer into the ROP octets and the handle table.
pub fn split_request(buffer: &[u8]) -> Result<(&[u8], Vec<u32>), RopFormatError> {
    let mut r = Reader::new(buffer);
    let rop_size = usize::from(r.u16_le()?);
    if rop_size < 2 {
        return Err(RopFormatError);
    }
    let rops = r.take(rop_size - 2)?;
    if r.remaining() % 4 != 0 {
        return Err(RopFormatError);
    }
    let mut handles = Vec::with_capacity(r.remaining() / 4);
    while !r.is_empty() {
        handles.push(r.u32_le()?);
    }
    Ok((rops, handles))
}

/// Runs the ROPs of `buffer` against `target`: the ROP responses and the handle table
/// as it stands after them. An unknown ROP gets its error response (ecNotSupported) and
/// ends the buffer: its length cannot be known ([MS-OXCROPS] 3.2.5.1 leaves the rest
/// unprocessed).
pub fn execute(
    buffer: &[u8],
    target: &mut dyn RopTarget,
) -> Result<(Vec<u8>, Vec<u32>), RopFormatError> {
    let (rops, handles) = split_request(buffer)?;
    let mut rop = Rop {
        r: Reader::new(rops),
        out: Writer::new(),
        handles,
        target,
    };
    while !rop.r.is_empty() {
        let rop_id = rop.r.u8()?;
        match rop_id {
            ROP_LOGON => logon(&mut rop)?,
            ROP_RELEASE => {
                let _logon_id = rop.r.u8()?;
                let index = rop.r.u8()?;
                if let Some(handle) = rop.handles.get(usize::from(index)) {
                    let target = &mut *rop.target;
                    target.objects().remove(handle).into_iter().for_each(|o| {
                        if let ServerObject::Notification {
                            subscription: Some(id),
                            ..
                        } = o
                        {
                            target.unsubscribe(id);
                        }
                    });
                }
            }
            ROP_REGISTER_NOTIFICATION => register_notification(&mut rop)?,
            ROP_OPEN_FOLDER => open_folder(&mut rop)?,
            ROP_GET_CONTENTS_TABLE => contents_table(&mut rop)?,
            ROP_SET_COLUMNS => set_columns(&mut rop)?,
            ROP_QUERY_ROWS => query_rows(&mut rop)?,
            _ => {
                // RopId, LogonId, InputHandleIndex lead most requests.
                let _logon_id = rop.r.u8().unwrap_or(0);
                let index = rop.r.u8().unwrap_or(0);
                error_response(&mut rop.out, rop_id, index, EC_NOT_SUPPORTED);
                break;
            }
        }
    }
    Ok((rop.out.into_bytes(), rop.handles))
}

/// The response buffer: RopSize, the responses, the handle table.
pub fn response_buffer(responses: &[u8], handles: &[u32]) -> Option<Vec<u8>> {
    let rop_size = u16::try_from(responses.len() + 2).ok()?;
    let mut w = Writer::new();
    w.put_u16_le(rop_size);
    w.put_bytes(responses);
    handles.iter().for_each(|h| w.put_u32_le(*h));
    Some(w.into_bytes())
}

fn error_response(out: &mut Writer, rop_id: u8, handle_index: u8, code: u32) {
    out.put_u8(rop_id);
    out.put_u8(handle_index);
    out.put_u32_le(code);
}

/// RopLogon ([MS-OXCROPS] 2.2.3.1): LogonId, OutputHandleIndex, LogonFlags, OpenFlags
/// u32, StoreState u32, EssdnSize u16, Essdn.
fn logon(rop: &mut Rop<'_, '_>) -> Result<(), RopFormatError> {
    let (r, out, handles, target) = rop.parts();
    let logon_id = r.u8()?;
    let output_index = r.u8()?;
    let logon_flags = r.u8()?;
    let _open_flags = r.u32_le()?;
    let _store_state = r.u32_le()?;
    let essdn_size = usize::from(r.u16_le()?);
    let essdn = r.take(essdn_size)?;
    let essdn = essdn.strip_suffix(&[0]).unwrap_or(essdn);
    if logon_flags & LOGON_PRIVATE == 0 {
        // Public folders are not served.
        error_response(out, ROP_LOGON, output_index, EC_NOT_SUPPORTED);
        return Ok(());
    }
    let names_owner = essdn.is_empty()
        || std::str::from_utf8(essdn).is_ok_and(|dn| dn.eq_ignore_ascii_case(target.user_dn()));
    if !names_owner {
        error_response(out, ROP_LOGON, output_index, EC_ACCESS_DENIED);
        return Ok(());
    }
    if let Err(code) = place(
        handles,
        output_index,
        ServerObject::Logon { logon_id },
        target,
    ) {
        error_response(out, ROP_LOGON, output_index, code);
        return Ok(());
    }
    // The private-mailbox success response, [MS-OXCROPS] 2.2.3.1.3.
    out.put_u8(ROP_LOGON);
    out.put_u8(output_index);
    out.put_u32_le(0);
    out.put_u8(logon_flags);
    (0..MAILBOX_FOLDERS).for_each(|i| out.put_u64_le(folder_id(i)));
    out.put_u8(RESPONSE_FLAGS_OWNER);
    out.put_bytes(&mailbox_guid(target.user()));
    out.put_u16_le(REPLICA_ID);
    out.put_bytes(&replica_guid());
    // LogonTime: Seconds, Minutes, Hour, DayOfWeek, Day, Month, Year (u16). A fixed
    // time keeps responses reproducible.
    out.put_bytes(&[0, 0, 12, 4, 3, 12]);
    out.put_u16_le(2026);
    out.put_u64_le(0); // GwartTime
    out.put_u32_le(0); // StoreState
    Ok(())
}

/// A GUID per mailbox, stable across runs (the user's name folded in).
fn mailbox_guid(user: &str) -> [u8; 16] {
    let mut guid = *b"harness-mailbox!";
    for (i, b) in user.to_ascii_lowercase().bytes().enumerate() {
        guid[i % 16] ^= b;
    }
    guid
}

fn replica_guid() -> [u8; 16] {
    *b"harness-replica!"
}

/// RopRegisterNotification ([MS-OXCROPS] 2.2.14.1): LogonId, InputHandleIndex,
/// OutputHandleIndex, NotificationTypes, Reserved, WantWholeStore, then FolderId and
/// MessageId when WantWholeStore is 0.
fn register_notification(rop: &mut Rop<'_, '_>) -> Result<(), RopFormatError> {
    let (r, out, handles, target) = rop.parts();
    let logon_id = r.u8()?;
    let input_index = r.u8()?;
    let output_index = r.u8()?;
    let types = r.u8()?;
    let _reserved = r.u8()?;
    let whole_store = r.u8()? != 0;
    let folder = if whole_store {
        None
    } else {
        let folder = r.u64_le()?;
        let _message = r.u64_le()?;
        Some(folder)
    };
    let input_is_logon = handles
        .get(usize::from(input_index))
        .and_then(|h| target.objects().get(h).cloned())
        .is_some_and(|o| matches!(o, ServerObject::Logon { .. }));
    if !input_is_logon
        || usize::from(output_index) >= handles.len()
        || target.objects().len() >= MAX_OBJECTS
    {
        error_response(out, ROP_REGISTER_NOTIFICATION, output_index, EC_NULL_OBJECT);
        return Ok(());
    }
    let mailbox = match folder {
        None => None,
        Some(id) if id == folder_id(INBOX_INDEX) => Some("INBOX"),
        Some(_) => {
            error_response(out, ROP_REGISTER_NOTIFICATION, output_index, EC_NOT_FOUND);
            return Ok(());
        }
    };
    // Only NewMail events exist in this lab: other types register but never fire.
    let subscription = if types & NOTIFY_NEW_MAIL != 0 {
        match target.subscribe(mailbox) {
            Some(id) => Some(id),
            None => {
                error_response(
                    out,
                    ROP_REGISTER_NOTIFICATION,
                    output_index,
                    EC_OUT_OF_MEMORY,
                );
                return Ok(());
            }
        }
    } else {
        None
    };
    let notification = ServerObject::Notification {
        logon_id,
        subscription,
    };
    // Room and index were checked above.
    if let Err(code) = place(handles, output_index, notification, target) {
        subscription
            .into_iter()
            .for_each(|id| target.unsubscribe(id));
        error_response(out, ROP_REGISTER_NOTIFICATION, output_index, code);
        return Ok(());
    }
    error_response(out, ROP_REGISTER_NOTIFICATION, output_index, 0);
    Ok(())
}

/// RopNotify for a NewMail event ([MS-OXCROPS] 2.2.14.2, [MS-OXCNOTIF] 2.2.1.4.1.2):
/// RopId, NotificationHandle, LogonId, NotificationFlags, FID, MID, MessageFlags,
/// UnicodeFlag, MessageClass.
pub fn put_new_mail_notify(out: &mut Writer, handle: u32, logon_id: u8, event: &MailEvent) {
    out.put_u8(ROP_NOTIFY);
    out.put_u32_le(handle);
    out.put_u8(logon_id);
    out.put_u16_le(NOTIFICATION_NEW_MAIL);
    out.put_u64_le(folder_id(INBOX_INDEX));
    out.put_u64_le(message_id(event.uid));
    out.put_u32_le(0); // MessageFlags: unread
    out.put_u8(0); // UnicodeFlag: MessageClass is 8-bit
    out.put_bytes(b"IPM.Note\0");
}

/// RopPending ([MS-OXCROPS] 2.2.14.3): RopId, SessionIndex.
pub fn put_pending(out: &mut Writer, session_index: u16) {
    out.put_u8(ROP_PENDING);
    out.put_u16_le(session_index);
}

/// The object at handle-table `index`, if the index and the handle are live.
fn object_at(
    handles: &[u32],
    index: u8,
    target: &mut dyn RopTarget,
) -> Option<(u32, ServerObject)> {
    let handle = *handles.get(usize::from(index))?;
    target.objects().get(&handle).cloned().map(|o| (handle, o))
}

/// Puts `object` under a new handle at `output_index`; Err is the ROP's return value
/// (no such index, or the session holds [`MAX_OBJECTS`] already).
fn place(
    handles: &mut [u32],
    output_index: u8,
    object: ServerObject,
    target: &mut dyn RopTarget,
) -> Result<(), u32> {
    let Some(slot) = handles.get_mut(usize::from(output_index)) else {
        return Err(EC_NULL_OBJECT);
    };
    if target.objects().len() >= MAX_OBJECTS {
        return Err(EC_OUT_OF_MEMORY);
    }
    let handle = target.new_handle();
    target.objects().insert(handle, object);
    *slot = handle;
    Ok(())
}

/// RopOpenFolder ([MS-OXCROPS] 2.2.4.1): LogonId, InputHandleIndex, OutputHandleIndex,
/// FolderId, OpenModeFlags. Response: HasRules, IsGhosted (0: no server list follows).
fn open_folder(rop: &mut Rop<'_, '_>) -> Result<(), RopFormatError> {
    let (r, out, handles, target) = rop.parts();
    let _logon_id = r.u8()?;
    let input_index = r.u8()?;
    let output_index = r.u8()?;
    let folder = r.u64_le()?;
    let _open_mode = r.u8()?;
    let on_logon = matches!(
        object_at(handles, input_index, target),
        Some((_, ServerObject::Logon { .. } | ServerObject::Folder { .. }))
    );
    if !on_logon {
        error_response(out, ROP_OPEN_FOLDER, output_index, EC_NULL_OBJECT);
        return Ok(());
    }
    let Some(index) = (0..MAILBOX_FOLDERS).find(|i| folder_id(*i) == folder) else {
        error_response(out, ROP_OPEN_FOLDER, output_index, EC_NOT_FOUND);
        return Ok(());
    };
    let mailbox = (index == INBOX_INDEX).then(|| "INBOX".to_string());
    let folder = ServerObject::Folder { mailbox };
    if let Err(code) = place(handles, output_index, folder, target) {
        error_response(out, ROP_OPEN_FOLDER, output_index, code);
        return Ok(());
    }
    error_response(out, ROP_OPEN_FOLDER, output_index, 0);
    out.put_bytes(&[0, 0]); // HasRules, IsGhosted
    Ok(())
}

/// RopGetContentsTable ([MS-OXCROPS] 2.2.4.14): LogonId, InputHandleIndex,
/// OutputHandleIndex, TableFlags. Response: RowCount.
fn contents_table(rop: &mut Rop<'_, '_>) -> Result<(), RopFormatError> {
    let (r, out, handles, target) = rop.parts();
    let _logon_id = r.u8()?;
    let input_index = r.u8()?;
    let output_index = r.u8()?;
    let _table_flags = r.u8()?;
    let Some((_, ServerObject::Folder { mailbox })) = object_at(handles, input_index, target)
    else {
        error_response(out, ROP_GET_CONTENTS_TABLE, output_index, EC_NULL_OBJECT);
        return Ok(());
    };
    let count = mailbox.as_deref().map_or(0, |m| target.rows(m).len());
    let table = ServerObject::Table {
        mailbox,
        columns: Vec::new(),
        cursor: 0,
    };
    if let Err(code) = place(handles, output_index, table, target) {
        error_response(out, ROP_GET_CONTENTS_TABLE, output_index, code);
        return Ok(());
    }
    error_response(out, ROP_GET_CONTENTS_TABLE, output_index, 0);
    out.put_u32_le(u32::try_from(count).unwrap_or(u32::MAX));
    Ok(())
}

/// RopSetColumns ([MS-OXCROPS] 2.2.5.1): LogonId, InputHandleIndex, SetColumnsFlags,
/// PropertyTagCount, PropertyTags. Response: TableStatus (0: complete).
fn set_columns(rop: &mut Rop<'_, '_>) -> Result<(), RopFormatError> {
    let (r, out, handles, target) = rop.parts();
    let _logon_id = r.u8()?;
    let input_index = r.u8()?;
    let _flags = r.u8()?;
    let count = usize::from(r.u16_le()?);
    let tags = r.take(count.checked_mul(4).ok_or(RopFormatError)?)?;
    let Some((handle, ServerObject::Table { mailbox, .. })) =
        object_at(handles, input_index, target)
    else {
        error_response(out, ROP_SET_COLUMNS, input_index, EC_NULL_OBJECT);
        return Ok(());
    };
    if count > MAX_COLUMNS {
        error_response(out, ROP_SET_COLUMNS, input_index, EC_OUT_OF_MEMORY);
        return Ok(());
    }
    let columns = tags
        .chunks_exact(4)
        .map(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]))
        .collect();
    target.objects().insert(
        handle,
        ServerObject::Table {
            mailbox,
            columns,
            cursor: 0,
        },
    );
    error_response(out, ROP_SET_COLUMNS, input_index, 0);
    out.put_u8(0);
    Ok(())
}

/// RopQueryRows ([MS-OXCROPS] 2.2.5.4): LogonId, InputHandleIndex, QueryRowsFlags,
/// ForwardRead, RowCount. Response: Origin, RowCount, the rows ([MS-OXCDATA] 2.8.1:
/// a StandardPropertyRow when every column has a value, else a FlaggedPropertyRow).
fn query_rows(rop: &mut Rop<'_, '_>) -> Result<(), RopFormatError> {
    let (r, out, handles, target) = rop.parts();
    let _logon_id = r.u8()?;
    let input_index = r.u8()?;
    let flags = r.u8()?;
    let _forward = r.u8()?;
    let wanted = usize::from(r.u16_le()?);
    let Some((
        handle,
        ServerObject::Table {
            mailbox,
            columns,
            cursor,
        },
    )) = object_at(handles, input_index, target)
    else {
        error_response(out, ROP_QUERY_ROWS, input_index, EC_NULL_OBJECT);
        return Ok(());
    };
    if columns.is_empty() {
        // Columns must be set first ([MS-OXCTABL] 3.2.5.1): ecNullObject as Exchange.
        error_response(out, ROP_QUERY_ROWS, input_index, EC_NULL_OBJECT);
        return Ok(());
    }
    let rows = mailbox
        .as_deref()
        .map(|m| target.rows(m))
        .unwrap_or_default();
    let page: Vec<&MessageRow> = rows.iter().skip(cursor).take(wanted).collect();
    // QueryRowsFlags NoAdvance (0x01) leaves the cursor where it was.
    let next = if flags & 0x01 != 0 {
        cursor
    } else {
        cursor + page.len()
    };
    target.objects().insert(
        handle,
        ServerObject::Table {
            mailbox,
            columns: columns.clone(),
            cursor: next,
        },
    );
    error_response(out, ROP_QUERY_ROWS, input_index, 0);
    // Origin: 0x02 END_OF_TABLE once the cursor is past the last row, else 0x00 BEGINNING.
    out.put_u8(if next >= rows.len() { 0x02 } else { 0x00 });
    out.put_u16_le(u16::try_from(page.len()).unwrap_or(u16::MAX));
    for row in page {
        put_row(out, &columns, row);
    }
    Ok(())
}

fn put_utf16z(out: &mut Writer, s: &str) {
    s.encode_utf16().for_each(|u| out.put_u16_le(u));
    out.put_u16_le(0);
}

fn put_row(out: &mut Writer, columns: &[u32], row: &MessageRow) {
    let known = |tag: u32| {
        matches!(
            tag,
            PID_TAG_SUBJECT | PID_TAG_SENDER_NAME | PID_TAG_MESSAGE_SIZE | PID_TAG_MID
        )
    };
    let flagged = !columns.iter().all(|t| known(*t));
    out.put_u8(u8::from(flagged));
    for &tag in columns {
        if flagged {
            out.put_u8(if known(tag) { 0x00 } else { 0x0A });
        }
        match tag {
            PID_TAG_SUBJECT => put_utf16z(out, &row.subject),
            PID_TAG_SENDER_NAME => put_utf16z(out, &row.from),
            PID_TAG_MESSAGE_SIZE => out.put_u32_le(row.size),
            PID_TAG_MID => out.put_u64_le(message_id(row.uid)),
            _ => out.put_u32_le(EC_NOT_FOUND),
        }
    }
}
