//! NSPI, the Exchange address book interface ([MS-OXNSPI]; UUID
//! F5CC5A18-4264-101A-8C59-08002B2F8426 v56.0, PROTOCOLS.md 5.1-5.2 and 14.2), as an
//! [`RpcInterface`] over an [`AddressBook`] built from the lab's [`World`].
//!
//! Operations served (the subset impacket's `nspi.py` helpers and `exchanger.py nspi
//! list-tables / dump-tables / guid-known / dnt-lookup` need, see [`ops`]): NspiBind (0),
//! NspiUnbind (1), NspiUpdateStat (2), NspiQueryRows (3), NspiGetMatches (5),
//! NspiDNToMId (7), NspiGetPropList (8), NspiGetProps (9), NspiCompareMIds (10),
//! NspiGetSpecialTable (12), NspiQueryColumns (16),
//! NspiResolveNames (19), NspiResolveNamesW (20). The other opnums of the range fault
//! RPC_S_CANNOT_SUPPORT (0x6E4): writing a NotSupported return would need each one's out
//! parameters, and a fault is what a client sees from a server without the method.
//!
//! Decisions:
//! - NspiBind refuses (LogonFailed, NULL handle) a call made without an authenticated
//!   security context and one asking fAnonymousLogin: the lab allows no anonymous address
//!   book, as Exchange does not by default. CodePage CP_WINUNICODE is InvalidCodepage
//!   ([MS-OXNSPI] 3.1.4.1.1).
//! - Context handles belong to the connection that bound them: a handle never issued,
//!   already unbound or issued on another connection faults nca_s_fault_context_mismatch
//!   (0x1C00001A), what the Windows runtime answers a bad context handle with. Handle
//!   UUIDs count up (they are not secrets: the connection check is what guards them).
//! - Stubs that do not decode fault RPC_X_BAD_STUB_DATA (0x6F7); octets after the last
//!   parameter are ignored (impacket sends `pStat` of NspiGetSpecialTable as a unique
//!   pointer, 4 octets more than the IDL's `[ref]`; read as the IDL says, as Exchange
//!   reads it).
//! - With no address book ([`Nspi::set_address_book`] `None`: the GC is gone) calls fault
//!   RPC_S_SERVER_UNAVAILABLE (0x6BA): a dead GC shows at the RPC layer (PROTOCOLS.md 14.2).

pub mod book;
pub mod client;
pub mod fuzz;
pub mod ops;
pub mod types;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use harness_wire::dcerpc::{FaultStatus, SyntaxId, Uuid};
use harness_wire::ndr::{ContextHandle, NdrError, NdrReader, NdrWriter};

use super::interface::{CallContext, CallOutcome, RpcInterface};
use crate::world::World;
pub use book::AddressBook;
use types::Stat;

/// NSPI F5CC5A18-4264-101A-8C59-08002B2F8426 version 56.0 (major in the low 16 bits).
pub const NSPI_SYNTAX: SyntaxId = SyntaxId {
    uuid: Uuid::new(
        0xF5CC_5A18,
        0x4264,
        0x101A,
        [0x8C, 0x59, 0x08, 0x00, 0x2B, 0x2F, 0x84, 0x26],
    ),
    version: 56,
};

/// Opnums 0..=20 ([MS-OXNSPI] 3.1.4.1; PROTOCOLS.md 5.2).
pub const OPNUM_COUNT: u16 = 21;

/// The return values [MS-OXNSPI] 2.2.1.2 permits (values from [MS-OXCDATA] 2.4;
/// PROTOCOLS.md 14.2), those used here.
pub mod status {
    pub const SUCCESS: u32 = 0;
    pub const UNBIND_SUCCESS: u32 = 1;
    pub const ERRORS_RETURNED: u32 = 0x0004_0380;
    pub const GENERAL_FAILURE: u32 = 0x8000_4005;
    pub const OUT_OF_RESOURCES: u32 = 0x8004_010E;
    pub const NOT_FOUND: u32 = 0x8004_010F;
    pub const LOGON_FAILED: u32 = 0x8004_0111;
    pub const TOO_COMPLEX: u32 = 0x8004_0117;
    pub const INVALID_CODEPAGE: u32 = 0x8004_011E;
    pub const TABLE_TOO_BIG: u32 = 0x8004_0403;
    pub const INVALID_BOOKMARK: u32 = 0x8004_0405;
    pub const INVALID_PARAMETER: u32 = 0x8007_0057;
}

/// fAnonymousLogin ([MS-OXNSPI] 2.2.1.11).
pub const F_ANONYMOUS_LOGIN: u32 = 0x20;

/// Sessions one connection may hold at once; more binds get OutOfResources.
pub const MAX_SESSIONS_PER_CONNECTION: usize = 64;

/// One NspiBind's state.
#[derive(Debug, Clone, Copy)]
struct Session {
    connection_id: u64,
}

/// Why a call does not get a response stub.
#[derive(Debug)]
pub(crate) enum CallFault {
    Stub(NdrError),
    BadHandle,
}

impl From<NdrError> for CallFault {
    fn from(e: NdrError) -> Self {
        CallFault::Stub(e)
    }
}

impl CallFault {
    fn status(&self) -> FaultStatus {
        match self {
            CallFault::Stub(e) => e.fault_status(),
            CallFault::BadHandle => FaultStatus::NCA_S_FAULT_CONTEXT_MISMATCH,
        }
    }
}

/// The NSPI interface: the address book and the sessions bound to it.
pub struct Nspi {
    book: Mutex<Option<Arc<AddressBook>>>,
    sessions: Mutex<Sessions>,
}

#[derive(Default)]
struct Sessions {
    by_handle: HashMap<Uuid, Session>,
    issued: u32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Nspi {
    pub fn new(address_book: Arc<AddressBook>) -> Self {
        Nspi {
            book: Mutex::new(Some(address_book)),
            sessions: Mutex::new(Sessions::default()),
        }
    }

    /// The address book of `world`'s directory.
    pub fn for_world(world: &World) -> Self {
        Nspi::new(Arc::new(AddressBook::from_world(world)))
    }

    /// Swaps the address book (a failover to another GC), or removes it (`None`: the GC
    /// died; calls then fault RPC_S_SERVER_UNAVAILABLE). Sessions stay.
    pub fn set_address_book(&self, address_book: Option<Arc<AddressBook>>) {
        *lock(&self.book) = address_book;
    }

    pub fn address_book(&self) -> Option<Arc<AddressBook>> {
        lock(&self.book).clone()
    }

    /// Sessions open now (all connections).
    pub fn session_count(&self) -> usize {
        lock(&self.sessions).by_handle.len()
    }

    /// A new session for `connection_id`, or `None` when it holds too many.
    fn open_session(&self, connection_id: u64) -> Option<ContextHandle> {
        let mut sessions = lock(&self.sessions);
        let held = sessions
            .by_handle
            .values()
            .filter(|s| s.connection_id == connection_id)
            .count();
        if held >= MAX_SESSIONS_PER_CONNECTION {
            return None;
        }
        sessions.issued = sessions.issued.wrapping_add(1).max(1);
        // Counter, then "NSPI": unique within the endpoint's life, never NIL.
        let uuid = Uuid::new(sessions.issued, 0x534E, 0x4950, [0; 8]);
        sessions.by_handle.insert(uuid, Session { connection_id });
        Some(ContextHandle::new(uuid))
    }

    /// Checks that `handle` is a session of this connection.
    fn check_session(
        &self,
        ctx: &CallContext<'_>,
        handle: &ContextHandle,
    ) -> Result<(), CallFault> {
        match lock(&self.sessions).by_handle.get(&handle.uuid) {
            Some(s) if s.connection_id == ctx.connection_id => Ok(()),
            _ => Err(CallFault::BadHandle),
        }
    }

    fn close_session(
        &self,
        ctx: &CallContext<'_>,
        handle: &ContextHandle,
    ) -> Result<(), CallFault> {
        let mut sessions = lock(&self.sessions);
        match sessions.by_handle.get(&handle.uuid) {
            Some(s) if s.connection_id == ctx.connection_id => {
                sessions.by_handle.remove(&handle.uuid);
                Ok(())
            }
            _ => Err(CallFault::BadHandle),
        }
    }

    /// ```text
    /// long NspiBind([in] handle_t hRpc, [in] DWORD dwFlags, [in] STAT* pStat,
    ///     [in, out, unique] FlatUID_r* pServerGuid, [out, ref] NSPI_HANDLE* contextHandle);
    /// ```
    /// ([MS-OXNSPI] 3.1.4.1.1.)
    fn bind(
        &self,
        ctx: &CallContext<'_>,
        r: &mut NdrReader<'_>,
        book: &AddressBook,
    ) -> Result<Vec<u8>, CallFault> {
        let flags = r.u32()?;
        let stat = Stat::read(r)?;
        let guid_ptr = r.unique_ptr()?;
        r.pointee(guid_ptr, |r| r.bytes(16))?;
        let refused = if ctx.principal.is_none() || flags & F_ANONYMOUS_LOGIN != 0 {
            Some(status::LOGON_FAILED)
        } else if stat.code_page == book::CP_WINUNICODE {
            Some(status::INVALID_CODEPAGE)
        } else {
            None
        };
        let (handle, rc) = match refused {
            Some(rc) => (ContextHandle::NIL, rc),
            None => match self.open_session(ctx.connection_id) {
                Some(handle) => (handle, status::SUCCESS),
                None => (ContextHandle::NIL, status::OUT_OF_RESOURCES),
            },
        };
        let mut w = NdrWriter::new();
        w.put_pointer(guid_ptr.is_some());
        if guid_ptr.is_some() {
            // The server's GUID on success; what came in stays otherwise (zeros here).
            match rc {
                status::SUCCESS => w.put_bytes(&book.server_guid),
                _ => w.put_bytes(&[0; 16]),
            }
        }
        w.put_context_handle(&handle);
        w.put_u32(rc);
        Ok(w.into_bytes())
    }

    /// ```text
    /// DWORD NspiUnbind([in, out] NSPI_HANDLE* contextHandle, [in] DWORD Reserved);
    /// ```
    /// ([MS-OXNSPI] 3.1.4.1.2: UnbindSuccess and a NULL handle.)
    fn unbind(&self, ctx: &CallContext<'_>, r: &mut NdrReader<'_>) -> Result<Vec<u8>, CallFault> {
        let handle = r.context_handle()?;
        let _reserved = r.u32()?;
        self.close_session(ctx, &handle)?;
        let mut w = NdrWriter::new();
        w.put_context_handle(&ContextHandle::NIL);
        w.put_u32(status::UNBIND_SUCCESS);
        Ok(w.into_bytes())
    }

    fn dispatch(
        &self,
        ctx: &CallContext<'_>,
        opnum: u16,
        stub: &[u8],
    ) -> Result<Vec<u8>, FaultStatus> {
        let mut r = NdrReader::new(stub);
        if opnum == 1 {
            return self.unbind(ctx, &mut r).map_err(|e| e.status());
        }
        let run = match opnum {
            0 => None,
            _ => Some(ops::operation(opnum).ok_or(FaultStatus::CANNOT_SUPPORT)?),
        };
        let book = self.address_book().ok_or(FaultStatus::SERVER_UNAVAILABLE)?;
        let result = match run {
            None => self.bind(ctx, &mut r, &book),
            Some(run) => r
                .context_handle()
                .map_err(CallFault::from)
                .and_then(|handle| self.check_session(ctx, &handle))
                .and_then(|()| run(&book, &mut r).map_err(CallFault::from)),
        };
        result.map_err(|e| e.status())
    }
}

impl RpcInterface for Nspi {
    fn syntax(&self) -> SyntaxId {
        NSPI_SYNTAX
    }

    fn name(&self) -> &'static str {
        "nspi"
    }

    fn opnum_count(&self) -> u16 {
        OPNUM_COUNT
    }

    fn call(&self, ctx: &CallContext<'_>, opnum: u16, stub: &[u8]) -> CallOutcome {
        match self.dispatch(ctx, opnum, stub) {
            Ok(response) => CallOutcome::Response(response),
            Err(status) => CallOutcome::Fault(status),
        }
    }

    fn rundown(&self, connection_id: u64) {
        lock(&self.sessions)
            .by_handle
            .retain(|_, s| s.connection_id != connection_id);
    }
}
