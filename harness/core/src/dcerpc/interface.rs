//! An RPC interface as the association sees it: a syntax, a number of opnums and a call
//! on a reassembled, unprotected stub. Interfaces keep their own state (context handles,
//! sessions) behind `&self`, so one instance serves every association of an endpoint.

use std::sync::Arc;
use std::time::Duration;

use harness_wire::dcerpc::{AuthLevel, FaultStatus, SyntaxId};

use super::security::Principal;
use crate::notify::Waker;

/// What the association knows about a call: who made it and on what.
#[derive(Debug, Clone, Copy)]
pub struct CallContext<'a> {
    /// The principal of the security context the request was verified under, if any.
    pub principal: Option<&'a Principal>,
    /// The auth level of that context (NONE without one).
    pub auth_level: AuthLevel,
    /// The auth_context_id of the request's verifier, if it had one.
    pub auth_context_id: Option<u32>,
    /// The association group the connection belongs to.
    pub assoc_group_id: u32,
    /// A number unique to this connection within the endpoint's lifetime.
    pub connection_id: u64,
    /// The request's object UUID, when it carried one.
    pub object: Option<harness_wire::dcerpc::Uuid>,
    /// The session clock (time since the connection was accepted).
    pub now: Duration,
    /// Wakes this connection's session: an interface that parks a call hands it to
    /// whatever will make the call ready (the notification hub).
    pub waker: Option<&'a Arc<dyn Waker>>,
}

impl CallContext<'static> {
    /// A call with no security context on connection `connection_id`, group 1, at time
    /// zero, no waker: what tests and fuzz targets call an interface with directly.
    pub fn unauthenticated(connection_id: u64) -> Self {
        CallContext {
            principal: None,
            auth_level: AuthLevel::NONE,
            auth_context_id: None,
            assoc_group_id: 1,
            connection_id,
            object: None,
            now: Duration::ZERO,
            waker: None,
        }
    }
}

/// The result of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// The response stub (NDR of the out parameters and the return value).
    Response(Vec<u8>),
    /// A fault PDU with this status (e.g. `RPC_X_BAD_STUB_DATA` 0x6F7 for a stub that
    /// does not decode, `nca_s_op_rng_error` for an opnum the interface lacks).
    Fault(FaultStatus),
    /// The call waits for something outside the connection (EcDoAsyncWaitEx: new mail,
    /// [MS-OXCRPC] 3.3.4.1). The association keeps it and asks
    /// [`RpcInterface::resume`] again when its waker is woken, and once `until` (on
    /// the session clock) has passed. `token` is the interface's name for the call.
    Parked { token: u64, until: Duration },
}

pub trait RpcInterface: Send + Sync {
    /// Abstract syntax: interface UUID and version.
    fn syntax(&self) -> SyntaxId;
    /// A name for logs and outcomes ("epm", "nspi").
    fn name(&self) -> &'static str;
    /// Opnums are 0..opnum_count; the association answers others with
    /// nca_s_op_rng_error before calling.
    fn opnum_count(&self) -> u16;
    /// Runs opnum on the stub (NDR 2.0, little-endian).
    fn call(&self, ctx: &CallContext<'_>, opnum: u16, stub: &[u8]) -> CallOutcome;
    /// A parked call's second chance: `Some` with its outcome when it is ready, `None`
    /// to keep waiting. When `timed_out` the interface must answer (`None` is then
    /// taken as a failed call). The default: parking is not something this interface
    /// does, so there is nothing to resume.
    fn resume(&self, _ctx: &CallContext<'_>, _token: u64, _timed_out: bool) -> Option<CallOutcome> {
        Some(CallOutcome::Fault(FaultStatus::NCA_S_FAULT_UNSPEC))
    }
    /// The connection `connection_id` is gone: release what it held (context handles
    /// rundown, [C706] 13.1 / [MS-RPCE] 3.3.3.2.1). Default: nothing held.
    fn rundown(&self, _connection_id: u64) {}
}
