//! EMSMDB ([MS-OXCRPC] 3.1.4; A4F1DB00-CA47-1067-B31F-00DD010662DA v0.81) and
//! AsyncEMSMDB (3.3.4; 5261574A-4572-206E-B268-6B199213B4E4 v0.1): sessions on the
//! world's mailboxes, ROPs in extended buffers ([`rops`]), and new-mail notifications
//! from the [`crate::notify`] hub delivered through a parked EcDoAsyncWaitEx and the
//! RopNotify responses of the next EcDoRpcExt2.
//!
//! ```text
//! // [MS-OXCRPC] 3.1.4.3
//! long EcDoDisconnect([in, out, ref] CXH *pcxh);
//! // 3.1.4.4
//! long EcDummyRpc([in] handle_t hBinding);
//! // 3.1.4.1
//! long EcDoConnectEx(
//!     [in] handle_t hBinding, [out, ref] CXH *pcxh,
//!     [in, string] unsigned char *szUserDN,
//!     [in] unsigned long ulFlags, [in] unsigned long ulConMod,
//!     [in] unsigned long cbLimit, [in] unsigned long ulCpid,
//!     [in] unsigned long ulLcidString, [in] unsigned long ulLcidSort,
//!     [in] unsigned long ulIcxrLink, [in] unsigned short usFCanConvertCodePages,
//!     [out] unsigned long *pcmsPollsMax, [out] unsigned long *pcRetry,
//!     [out] unsigned long *pcmsRetryDelay, [out] unsigned short *picxr,
//!     [out, string] unsigned char **szDNPrefix,
//!     [out, string] unsigned char **szDisplayName,
//!     [in] unsigned short rgwClientVersion[3],
//!     [out] unsigned short rgwServerVersion[3],
//!     [out] unsigned short rgwBestVersion[3],
//!     [in, out] unsigned long *pulTimeStamp,
//!     [in, size_is(cbAuxIn)] unsigned char rgbAuxIn[],
//!     [in] unsigned long cbAuxIn,
//!     [out, length_is(*pcbAuxOut), size_is(*pcbAuxOut)] unsigned char rgbAuxOut[],
//!     [in, out, range(0, 0x1008)] unsigned long *pcbAuxOut);
//! // 3.1.4.2
//! long EcDoRpcExt2(
//!     [in, out, ref] CXH *pcxh, [in, out] unsigned long *pulFlags,
//!     [in, size_is(cbIn)] unsigned char rgbIn[],
//!     [in, range(0x8, 0x40000)] unsigned long cbIn,
//!     [out, length_is(*pcbOut), size_is(*pcbOut)] unsigned char rgbOut[],
//!     [in, out, range(0, 0x40000)] unsigned long *pcbOut,
//!     [in, size_is(cbAuxIn)] unsigned char rgbAuxIn[],
//!     [in] unsigned long cbAuxIn,
//!     [out, length_is(*pcbAuxOut), size_is(*pcbAuxOut)] unsigned char rgbAuxOut[],
//!     [in, out, range(0, 0x1008)] unsigned long *pcbAuxOut,
//!     [out] unsigned long *pulTransTime);
//! // 3.1.4.5
//! long EcDoAsyncConnectEx([in] CXH cxh, [out, ref] ACXH *pacxh);
//! // 3.3.4.1 (AsyncEMSMDB opnum 0)
//! long EcDoAsyncWaitEx([in] ACXH acxh, [in] unsigned long ulFlagsIn,
//!     [out] unsigned long *pulFlagsOut);
//! ```
//!
//! With [`EmsmdbConfig::legacy_opnums`] (the Exchange 2003 behaviour) the server also
//! offers the pre-Exchange-2010 opnums 0 and 2, which [MS-OXCRPC] 3.1.4 lists as
//! reserved. Their layouts are those of OpenChange's `exchange.idl` (Function 0x00,
//! 0x02) and of Wireshark's MAPI dissector (`epan/dissectors/pidl/mapi/mapi.idl`,
//! `mapi_EcDoConnect`, `EcDoRpc`), restated in the MS-OXCRPC notation:
//!
//! ```text
//! // opnum 0: EcDoConnectEx's parameters up to pulTimeStamp, no aux buffers
//! long EcDoConnect(
//!     [out, ref] CXH *pcxh, [in, string] unsigned char *szUserDN,
//!     [in] unsigned long ulFlags, [in] unsigned long ulConMod,
//!     [in] unsigned long cbLimit, [in] unsigned long ulCpid,
//!     [in] unsigned long ulLcidString, [in] unsigned long ulLcidSort,
//!     [in] unsigned long ulIcxrLink, [in] unsigned short usFCanConvertCodePages,
//!     [out] unsigned long *pcmsPollsMax, [out] unsigned long *pcRetry,
//!     [out] unsigned long *pcmsRetryDelay, [out] unsigned short *picxr,
//!     [out, unique, string] unsigned char **szDNPrefix,
//!     [out, unique, string] unsigned char **szDisplayName,
//!     [in] unsigned short rgwClientVersion[3],
//!     [out] unsigned short rgwServerVersion[3],
//!     [out] unsigned short rgwBestVersion[3],
//!     [in, out] unsigned long *pulTimeStamp);
//! // opnum 2, as OpenChange writes it (policy_handle *handle; uint32 size, offset;
//! // [subcontext(4)] mapi_request / mapi_response; uint16 *length; uint16 max_data):
//! // size, offset and the subcontext's 4-octet length are the max_count, offset and
//! // actual_count of a conformant varying byte array holding the ROP buffer
//! // (RopSize, ROPs, handle table; no RPC_HEADER_EXT), every octet XORed with 0xA5
//! long EcDoRpc(
//!     [in, out, ref] CXH *pcxh,
//!     [in, out] unsigned char rgb[]   /* max_count, offset, actual_count */,
//!     [in, out] unsigned short *length /* rgb's actual_count */,
//!     [in] unsigned short max_data    /* the largest rgb the client takes back */);
//! ```
//!
//! A CXH belongs to the connection that made it (used elsewhere, or after its
//! disconnect, it faults nca_s_fault_context_mismatch) and is run down with it; an ACXH
//! is bound to its session and may be waited on from any connection.

pub mod client;
pub mod rops;

#[cfg(test)]
mod cross_tests;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use harness_wire::dcerpc::{AuthLevel, FaultStatus, SyntaxId, Uuid};
use harness_wire::ndr::{ContextHandle, NdrError, NdrReader, NdrWriter};
use harness_wire::oxcrpc::{
    decode_extended_buffer, encode_extended_buffer, DecodeLimits, EncodeOptions, MAX_PAYLOAD,
};
use harness_wire::Writer;

use super::interface::{CallContext, CallOutcome, RpcInterface};
use super::legacy_dn;
use crate::notify::{MailEvent, SubscriptionId, Waker, MAX_QUEUED};
use crate::world::World;
use rops::{RopTarget, ServerObject};

/// EMSMDB's abstract syntax (version 0.81: major 0, minor 81).
pub const EMSMDB_SYNTAX: SyntaxId = SyntaxId::new(
    Uuid::new(
        0xa4f1_db00,
        0xca47,
        0x1067,
        [0xb3, 0x1f, 0x00, 0xdd, 0x01, 0x06, 0x62, 0xda],
    ),
    0,
    81,
);

/// AsyncEMSMDB's abstract syntax (0.1).
pub const ASYNC_EMSMDB_SYNTAX: SyntaxId = SyntaxId::new(
    Uuid::new(
        0x5261_574a,
        0x4572,
        0x206e,
        [0xb2, 0x68, 0x6b, 0x19, 0x92, 0x13, 0xb4, 0xe4],
    ),
    0,
    1,
);

/// The pre-Exchange-2010 opnums ([`EmsmdbConfig::legacy_opnums`]).
pub const OP_CONNECT: u16 = 0;
pub const OP_RPC: u16 = 2;
pub const OP_DISCONNECT: u16 = 1;
pub const OP_DUMMY_RPC: u16 = 6;
pub const OP_CONNECT_EX: u16 = 10;
pub const OP_RPC_EXT2: u16 = 11;
pub const OP_ASYNC_CONNECT_EX: u16 = 14;
pub const OP_ASYNC_WAIT_EX: u16 = 0;

/// Return values ([MS-OXCRPC] 3.1.4.1, [MS-OXCDATA] 2.4).
pub const EC_ACCESS_DENIED: u32 = 0x8007_0005;
pub const EC_LOGIN_FAILURE: u32 = 0x8004_0111;
pub const EC_RPC_FORMAT: u32 = 0x0000_04B6;
pub const EC_RPC_FAILED: u32 = 0x8004_0115;
pub const EC_REJECTED: u32 = 0x0000_07EE;
pub const EC_BUFFER_TOO_SMALL: u32 = 0x0000_047D;
pub const EC_SERVER_BUSY: u32 = 0x0000_0480;
/// The server requires encryption and the call came in below packet privacy
/// ([MS-OXCRPC] 3.1.4.1; "Store logon returned ecNotEncrypted 2416").
pub const EC_NOT_ENCRYPTED: u32 = 0x0000_0970;
/// EcDoAsyncWaitEx pulFlagsOut: NotificationPending ([MS-OXCRPC] 3.3.4.1).
pub const NOTIFICATION_PENDING: u32 = 0x0000_0001;
/// EcDoRpcExt2 pulFlags ([MS-OXCRPC] 3.1.4.2).
pub const FLAG_NO_COMPRESSION: u32 = 0x1;
pub const FLAG_NO_XOR_MAGIC: u32 = 0x2;

/// rgbAuxIn / pcbAuxOut upper bound ([MS-OXCRPC] 3.1.4.1).
const MAX_AUX: u32 = 0x1008;
/// rgbIn / pcbOut upper bound ([MS-OXCRPC] 3.1.4.2).
const MAX_RPC_BUFFER: u32 = 0x40000;
/// Every octet of EcDoRpc's rgb is XORed with this: the obfuscation that the XorMagic
/// flag of RPC_HEADER_EXT ([MS-OXCRPC] 2.2.2.1) later made optional, here on every
/// buffer, as Wireshark's dissector undoes it.
const LEGACY_XOR: u8 = 0xA5;

/// Exchange 2013 (15.0.847.32) in the three-WORD form of [MS-OXCRPC] 3.1.4.1.3:
/// (major << 8 | minor), 0x8000 | build major, build minor.
pub const SERVER_VERSION: [u16; 3] = [0x0F00, 0x8000 | 847, 32];

/// How the interfaces behave.
#[derive(Debug, Clone)]
pub struct EmsmdbConfig {
    /// How long EcDoAsyncWaitEx waits for a notification ("about 5 minutes",
    /// [MS-OXCRPC] 3.3.4.1); tests shorten it.
    pub async_wait_timeout: Duration,
    /// Sessions held at once across the endpoint, and by one connection.
    pub max_sessions: usize,
    pub max_sessions_per_connection: usize,
    /// RopNotify responses per EcDoRpcExt2 before RopPending says more are waiting.
    pub max_notifications_per_response: usize,
    /// pcmsPollsMax, pcRetry, pcmsRetryDelay of EcDoConnectEx.
    pub polls_max_ms: u32,
    pub retry_count: u32,
    pub retry_delay_ms: u32,
    /// Offers EcDoConnect (opnum 0) and EcDoRpc (opnum 2) as Exchange 2003 did; off
    /// (Exchange 2010 and later) they are reserved and fault nca_s_op_rng_error.
    pub legacy_opnums: bool,
    /// EcDoConnectEx refuses a call below RPC_C_AUTHN_LEVEL_PKT_PRIVACY with
    /// ecNotEncrypted: Exchange 2010 RTM's `EncryptionRequired` default, which Outlook
    /// 2003 (encryption off by default) met; Exchange 2010 SP1 turned the default off.
    pub require_encryption: bool,
    /// Exchange 2013's registration cache: the first authenticated call on an
    /// association group registers the group with that call's security context; a call
    /// on the group under another security context fails with ecRpcFailed (the client's
    /// MAPI_E_NETWORK_ERROR), the server logs "Registration of the Association GUID
    /// failed", and the registration and the sessions made under it are removed (their
    /// later calls fail the same way). Off (Exchange 2010): no registration, any security
    /// context of the association may use its sessions.
    pub registration_cache: bool,
}

impl EmsmdbConfig {
    /// Exchange 2003's EMSMDB: the default with EcDoConnect and EcDoRpc offered.
    pub fn exchange2003() -> EmsmdbConfig {
        EmsmdbConfig {
            legacy_opnums: true,
            ..EmsmdbConfig::default()
        }
    }
}

/// Which Exchange's EMSMDB the lab plays (`harness serve --rpc-profile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmsmdbProfile {
    /// Opnums 0 and 2 reserved (Exchange 2010 and later), encryption not required (the
    /// default from Exchange 2010 SP1 on).
    #[default]
    Exchange2010,
    /// Exchange 2010 RTM: as [`EmsmdbProfile::Exchange2010`], and encryption required.
    Exchange2010Rtm,
    /// EcDoConnect and EcDoRpc offered beside the extended calls.
    Exchange2003,
    /// Exchange 2013: as [`EmsmdbProfile::Exchange2010`], with the registration cache
    /// ([`EmsmdbConfig::registration_cache`]).
    Exchange2013,
}

impl EmsmdbProfile {
    pub const ALL: [EmsmdbProfile; 4] = [
        EmsmdbProfile::Exchange2010,
        EmsmdbProfile::Exchange2010Rtm,
        EmsmdbProfile::Exchange2003,
        EmsmdbProfile::Exchange2013,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EmsmdbProfile::Exchange2010 => "exchange2010",
            EmsmdbProfile::Exchange2010Rtm => "exchange2010-rtm",
            EmsmdbProfile::Exchange2003 => "exchange2003",
            EmsmdbProfile::Exchange2013 => "exchange2013",
        }
    }

    pub fn config(self) -> EmsmdbConfig {
        match self {
            EmsmdbProfile::Exchange2010 => EmsmdbConfig::default(),
            EmsmdbProfile::Exchange2010Rtm => EmsmdbConfig {
                require_encryption: true,
                ..EmsmdbConfig::default()
            },
            EmsmdbProfile::Exchange2003 => EmsmdbConfig::exchange2003(),
            EmsmdbProfile::Exchange2013 => EmsmdbConfig {
                registration_cache: true,
                ..EmsmdbConfig::default()
            },
        }
    }

    pub fn by_name(name: &str) -> Option<EmsmdbProfile> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }
}

impl std::str::FromStr for EmsmdbProfile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::by_name(s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|p| p.name()).collect();
            format!("unknown RPC profile {s:?} ({})", names.join(", "))
        })
    }
}

impl Default for EmsmdbConfig {
    fn default() -> Self {
        EmsmdbConfig {
            async_wait_timeout: Duration::from_secs(300),
            max_sessions: 4096,
            max_sessions_per_connection: 64,
            max_notifications_per_response: 64,
            polls_max_ms: 60_000,
            retry_count: 6,
            retry_delay_ms: 10_000,
            legacy_opnums: false,
            require_encryption: false,
            registration_cache: false,
        }
    }
}

/// Forwards the hub's wake to the session's outstanding EcDoAsyncWaitEx, on whichever
/// connection it waits.
#[derive(Debug, Default)]
struct Relay(Mutex<Option<Arc<dyn Waker>>>);

impl Waker for Relay {
    fn wake(&self) {
        let waker = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

struct Session {
    connection_id: u64,
    user: String,
    user_dn: String,
    index: u16,
    objects: HashMap<u32, ServerObject>,
    next_handle: u32,
    relay: Arc<Relay>,
    acxh: Option<Uuid>,
    /// Events taken from the hub that did not fit the last response (bounded like the
    /// hub's own queues).
    backlog: VecDeque<(u32, u8, MailEvent)>,
}

struct Wait {
    acxh: Uuid,
    connection_id: u64,
    /// A newer wait on the same ACXH took over: this one answers ecRejected.
    superseded: bool,
}

/// What Exchange 2013 keeps per client connection: the security context that first
/// used the association group, and the sessions made under it.
struct Registration {
    principal: String,
    sessions: Vec<Uuid>,
}

/// Lines kept in the server's event log and calls in its call log; the oldest go first.
const MAX_EVENT_LOG: usize = 256;
const MAX_CALL_LOG: usize = 4096;

#[derive(Default)]
struct State {
    sessions: HashMap<Uuid, Session>,
    /// Association group -> its registration ([`EmsmdbConfig::registration_cache`]).
    registrations: HashMap<u32, Registration>,
    /// CXHs whose registration was removed, with their connection: their calls fail
    /// with ecRpcFailed until the connection ends. At most `max_sessions`.
    revoked: VecDeque<(Uuid, u64)>,
    /// What the server logs (the registration failures), oldest first.
    events: VecDeque<String>,
    /// Each call the interfaces ran, with the principal of the security context it ran
    /// under (lower case, `domain\user`; empty without one), oldest first.
    calls: VecDeque<(&'static str, String)>,
    /// ACXH -> (its session's CXH, the connection that made it).
    async_handles: HashMap<Uuid, (Uuid, u64)>,
    waits: HashMap<u64, Wait>,
    counter: u64,
}

impl State {
    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }
}

/// What the two interfaces share: the sessions of one endpoint.
pub struct EmsmdbServer {
    world: Arc<World>,
    config: EmsmdbConfig,
    state: Mutex<State>,
}

impl std::fmt::Debug for EmsmdbServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmsmdbServer")
            .field("sessions", &self.lock().sessions.len())
            .finish_non_exhaustive()
    }
}

/// The EMSMDB interface.
#[derive(Debug, Clone)]
pub struct Emsmdb(pub Arc<EmsmdbServer>);

/// The AsyncEMSMDB interface.
#[derive(Debug, Clone)]
pub struct AsyncEmsmdb(pub Arc<EmsmdbServer>);

/// A session's ROP view: the session and the hub.
struct SessionTarget<'a> {
    session: &'a mut Session,
    world: &'a World,
}

impl RopTarget for SessionTarget<'_> {
    fn user(&self) -> &str {
        &self.session.user
    }
    fn user_dn(&self) -> &str {
        &self.session.user_dn
    }
    fn objects(&mut self) -> &mut HashMap<u32, ServerObject> {
        &mut self.session.objects
    }
    fn new_handle(&mut self) -> u32 {
        self.session.next_handle += 1;
        self.session.next_handle
    }
    fn subscribe(&mut self, mailbox: Option<&str>) -> Option<SubscriptionId> {
        let waker: Arc<dyn Waker> = self.session.relay.clone();
        self.world
            .notifications
            .subscribe(&self.session.user, mailbox, waker)
            .ok()
    }
    fn unsubscribe(&mut self, id: SubscriptionId) {
        self.world.notifications.unsubscribe(id);
    }
    fn rows(&self, mailbox: &str) -> Vec<rops::MessageRow> {
        self.world
            .store
            .with_account(&self.session.user, |account| {
                account
                    .mailbox(mailbox)
                    .map_or_else(Vec::new, |m| m.messages.iter().map(message_row).collect())
            })
    }
}

/// The contents table of `user`'s Inbox as the store shows it to any of its clients
/// (EMSMDB, and a local application on the Exchange host).
pub fn inbox_rows(world: &crate::world::World, user: &str) -> Vec<rops::MessageRow> {
    world.store.with_account(user, |account| {
        account
            .mailbox("INBOX")
            .map_or_else(Vec::new, |m| m.messages.iter().map(message_row).collect())
    })
}

/// Subject, From and size of a stored message for a contents table.
pub(crate) fn message_row(message: &crate::world::StoredMessage) -> rops::MessageRow {
    use crate::imap::message::{field, fields, split};
    let (header, _) = split(&message.data);
    let fields = fields(header);
    let text = |name: &str| {
        field(&fields, name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    rops::MessageRow {
        uid: message.uid,
        subject: text("Subject"),
        from: text("From"),
        size: u32::try_from(message.data.len()).unwrap_or(u32::MAX),
    }
}

fn handle_uuid(counter: u64, tag: u8) -> Uuid {
    let c = counter.to_be_bytes();
    Uuid::new(
        (counter >> 32) as u32 ^ 0x6d73_6462,
        0x4558,
        u16::from(tag),
        [c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]],
    )
}

fn subscriptions_of(session: &Session) -> impl Iterator<Item = (u32, u8, SubscriptionId)> + '_ {
    session.objects.iter().filter_map(|(handle, o)| match o {
        ServerObject::Notification {
            logon_id,
            subscription: Some(id),
        } => Some((*handle, *logon_id, *id)),
        _ => None,
    })
}

fn ndr<T>(result: Result<T, NdrError>) -> Result<T, CallOutcome> {
    result.map_err(|e| CallOutcome::Fault(e.fault_status()))
}

/// `[in, size_is(cb)] byte rgb[]` followed by `[in] unsigned long cb`: the conformance
/// must equal cb, and cb stay within `max` (a larger one is RPC_X_BAD_STUB_DATA,
/// [MS-OXCRPC] 3.1.4.1).
fn sized_bytes<'a>(r: &mut NdrReader<'a>, min: u32, max: u32) -> Result<&'a [u8], NdrError> {
    let bytes = r.conformant_bytes()?;
    r.align(4)?;
    let cb = r.u32_in_range(min, max)?;
    if bytes.len() != cb as usize {
        return Err(NdrError::Invalid(
            "emsmdb: size_is disagrees with its count",
        ));
    }
    Ok(bytes)
}

fn put_out_string(w: &mut NdrWriter, s: Option<&str>) {
    if w.put_pointer(s.is_some()) != 0 {
        w.put_string(s.unwrap_or_default().as_bytes());
    }
}

fn put_versions(w: &mut NdrWriter, v: [u16; 3]) {
    v.iter().for_each(|x| w.put_u16(*x));
}

/// An empty `[out, size_is, length_is]` byte array and its count (rgbAuxOut, pcbAuxOut).
fn put_empty_aux(w: &mut NdrWriter) {
    w.put_conformant_varying_bytes(0, &[]);
    w.align(4);
    w.put_u32(0);
}

impl EmsmdbServer {
    pub fn new(world: Arc<World>, config: EmsmdbConfig) -> Arc<EmsmdbServer> {
        Arc::new(EmsmdbServer {
            world,
            config,
            state: Mutex::new(State::default()),
        })
    }

    /// The two interfaces on this server's sessions.
    pub fn interfaces(self: &Arc<Self>) -> (Arc<Emsmdb>, Arc<AsyncEmsmdb>) {
        (
            Arc::new(Emsmdb(Arc::clone(self))),
            Arc::new(AsyncEmsmdb(Arc::clone(self))),
        )
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn sessions(&self) -> usize {
        self.lock().sessions.len()
    }

    /// The calls the interfaces ran and the principal each ran under (`domain\user` in
    /// lower case, empty without a security context), oldest first.
    pub fn call_log(&self) -> Vec<(&'static str, String)> {
        self.lock().calls.iter().cloned().collect()
    }

    /// The server's event log (Exchange's application log lines), oldest first.
    pub fn event_log(&self) -> Vec<String> {
        self.lock().events.iter().cloned().collect()
    }

    /// The registration cache's verdict on a call: true if it may run. The first
    /// authenticated call on an association group registers the group with its security
    /// context; one under another context removes the registration and its sessions,
    /// logs the failure and is refused. Without the cache, or without a security
    /// context, every call may run.
    fn admit(&self, ctx: &CallContext<'_>, call: &'static str) -> bool {
        // The account the acceptor verified, in the lab's one domain (the domain a client
        // types is not part of who it is).
        let name = ctx.principal.map_or_else(String::new, |p| {
            format!("{}\\{}", self.world.domain, p.user).to_ascii_lowercase()
        });
        let mut state = self.lock();
        if state.calls.len() >= MAX_CALL_LOG {
            state.calls.pop_front();
        }
        state.calls.push_back((call, name.clone()));
        if ctx.principal.is_none() || !self.config.registration_cache {
            return true;
        }
        let group = ctx.assoc_group_id;
        let registered = match state.registrations.get(&group) {
            // At the limit a group goes unregistered rather than growing the table.
            None if state.registrations.len() >= self.config.max_sessions => return true,
            None => {
                state.registrations.insert(
                    group,
                    Registration {
                        principal: name,
                        sessions: Vec::new(),
                    },
                );
                return true;
            }
            Some(r) if r.principal == name => return true,
            Some(r) => r.principal.clone(),
        };
        let removed = state
            .registrations
            .remove(&group)
            .map_or_else(Vec::new, |r| r.sessions);
        let mut ended = 0;
        for cxh in removed {
            if let Some(session) = state.sessions.remove(&cxh) {
                let connection = session.connection_id;
                self.release(&mut state, session);
                ended += 1;
                if state.revoked.len() >= self.config.max_sessions {
                    state.revoked.pop_front();
                }
                state.revoked.push_back((cxh, connection));
            }
        }
        if state.events.len() >= MAX_EVENT_LOG {
            state.events.pop_front();
        }
        state.events.push_back(format!(
            "Registration of the Association GUID failed: association group {group:#x} is \
             registered for {registered}, {call} came under {name}; the registration and its \
             {ended} session(s) were removed"
        ));
        false
    }

    /// Records a new session under its association group's registration.
    fn register_session(&self, state: &mut State, ctx: &CallContext<'_>, cxh: Uuid) {
        let State {
            registrations,
            sessions,
            ..
        } = state;
        if let Some(r) = registrations.get_mut(&ctx.assoc_group_id) {
            r.sessions.retain(|c| sessions.contains_key(c));
            r.sessions.push(cxh);
        }
    }

    /// Whether `handle` names a session whose registration was removed.
    fn revoked(&self, handle: &ContextHandle) -> bool {
        self.lock().revoked.iter().any(|(c, _)| *c == handle.uuid)
    }

    /// EcDoConnectEx (`with_aux`) or EcDoConnect: a session for the principal when it
    /// owns the DN's mailbox.
    fn connect(
        &self,
        ctx: &CallContext<'_>,
        stub: &[u8],
        with_aux: bool,
    ) -> Result<Vec<u8>, CallOutcome> {
        let mut r = NdrReader::new(stub);
        let user_dn = ndr(r.string())?;
        let mut words = [0u32; 7];
        for w in &mut words {
            *w = ndr(r.u32())?;
        }
        let _can_convert = ndr(r.u16())?;
        let mut client_version = [0u16; 3];
        for v in &mut client_version {
            *v = ndr(r.u16())?;
        }
        ndr(r.align(4))?;
        let timestamp = ndr(r.u32())?;
        let aux_in = if with_aux {
            let aux_in = ndr(sized_bytes(&mut r, 0, MAX_AUX))?;
            let _cb_aux_out = ndr(r.u32_in_range(0, MAX_AUX))?;
            aux_in
        } else {
            &[]
        };

        let org = &self.world.domain;
        let dn = String::from_utf8_lossy(&user_dn);
        let named = legacy_dn::user_of_dn(org, &dn)
            .and_then(|u| self.world.directory.lookup(u))
            .map(|p| p.name.clone());
        let admitted = self.admit(ctx, "EcDoConnectEx");
        let status = match (ctx.principal, &named) {
            _ if !admitted => EC_RPC_FAILED,
            // Shorter than an RPC_HEADER_EXT ([MS-OXCRPC] 3.1.4.1, cbAuxIn).
            _ if (1..8).contains(&aux_in.len()) => EC_RPC_FAILED,
            (None, _) => EC_ACCESS_DENIED,
            (Some(_), None) => EC_LOGIN_FAILURE,
            (Some(p), Some(owner)) if !p.user.eq_ignore_ascii_case(owner) => EC_ACCESS_DENIED,
            _ if self.config.require_encryption && ctx.auth_level.0 < AuthLevel::PKT_PRIVACY.0 => {
                EC_NOT_ENCRYPTED
            }
            _ => 0,
        };
        let mut session = None;
        if status == 0 {
            let owner = named.unwrap_or_default();
            let mut state = self.lock();
            let on_connection = state
                .sessions
                .values()
                .filter(|s| s.connection_id == ctx.connection_id)
                .count();
            if state.sessions.len() < self.config.max_sessions
                && on_connection < self.config.max_sessions_per_connection
            {
                let id = state.next();
                let cxh = handle_uuid(id, 0xC0);
                let index = (id & 0xFFFF) as u16;
                state.sessions.insert(
                    cxh,
                    Session {
                        connection_id: ctx.connection_id,
                        user_dn: legacy_dn::user_dn(org, &owner),
                        user: owner.clone(),
                        index,
                        objects: HashMap::new(),
                        next_handle: 0,
                        relay: Arc::default(),
                        acxh: None,
                        backlog: VecDeque::new(),
                    },
                );
                self.register_session(&mut state, ctx, cxh);
                session = Some((cxh, index, owner));
            }
        }
        let status = match (&session, status) {
            (None, 0) => EC_SERVER_BUSY,
            (_, s) => s,
        };
        let mut w = NdrWriter::new();
        let cxh = session.as_ref().map_or(Uuid::NIL, |s| s.0);
        w.put_context_handle(&ContextHandle::new(cxh));
        let ok = session.is_some();
        w.put_u32(if ok { self.config.polls_max_ms } else { 0 });
        w.put_u32(if ok { self.config.retry_count } else { 0 });
        w.put_u32(if ok { self.config.retry_delay_ms } else { 0 });
        w.put_u16(session.as_ref().map_or(0, |s| s.1));
        let prefix = legacy_dn::org_prefix(org);
        put_out_string(&mut w, ok.then_some(prefix.as_str()));
        put_out_string(&mut w, session.as_ref().map(|s| s.2.as_str()));
        put_versions(&mut w, if ok { SERVER_VERSION } else { [0; 3] });
        put_versions(&mut w, if ok { SERVER_VERSION } else { [0; 3] });
        w.align(4);
        let stamp = if timestamp != 0 {
            timestamp
        } else {
            ctx.now.as_secs() as u32
        };
        w.put_u32(stamp);
        if with_aux {
            put_empty_aux(&mut w);
        }
        w.put_u32(status);
        Ok(w.into_bytes())
    }

    /// The session a CXH names on this connection, or the context-mismatch fault.
    fn session_cxh(
        &self,
        state: &State,
        ctx: &CallContext<'_>,
        handle: &ContextHandle,
    ) -> Result<Uuid, CallOutcome> {
        match state.sessions.get(&handle.uuid) {
            Some(s) if s.connection_id == ctx.connection_id && !handle.is_nil() => Ok(handle.uuid),
            _ => Err(CallOutcome::Fault(
                FaultStatus::NCA_S_FAULT_CONTEXT_MISMATCH,
            )),
        }
    }

    fn disconnect(&self, ctx: &CallContext<'_>, stub: &[u8]) -> Result<Vec<u8>, CallOutcome> {
        let mut r = NdrReader::new(stub);
        let handle = ndr(r.context_handle())?;
        if !self.admit(ctx, "EcDoDisconnect") || self.revoked(&handle) {
            let mut w = NdrWriter::new();
            w.put_context_handle(&ContextHandle::NIL);
            w.put_u32(EC_RPC_FAILED);
            return Ok(w.into_bytes());
        }
        let mut state = self.lock();
        let cxh = self.session_cxh(&state, ctx, &handle)?;
        if let Some(session) = state.sessions.remove(&cxh) {
            self.release(&mut state, session);
        }
        let mut w = NdrWriter::new();
        w.put_context_handle(&ContextHandle::NIL);
        w.put_u32(0);
        Ok(w.into_bytes())
    }

    /// Drops what a session held: its subscriptions, its ACXH and the waits on it (a
    /// parked wait answers when next resumed).
    fn release(&self, state: &mut State, session: Session) {
        for (_, _, id) in subscriptions_of(&session) {
            self.world.notifications.unsubscribe(id);
        }
        if let Some(acxh) = session.acxh {
            state.async_handles.remove(&acxh);
        }
        session.relay.wake();
    }

    fn rpc_ext2(&self, ctx: &CallContext<'_>, stub: &[u8]) -> Result<Vec<u8>, CallOutcome> {
        let mut r = NdrReader::new(stub);
        let handle = ndr(r.context_handle())?;
        let flags = ndr(r.u32())?;
        let rgb_in = ndr(sized_bytes(&mut r, 0, MAX_RPC_BUFFER))?;
        let cb_out = ndr(r.u32_in_range(0, MAX_RPC_BUFFER))?;
        ndr(sized_bytes(&mut r, 0, MAX_AUX))?;
        let _cb_aux_out = ndr(r.u32_in_range(0, MAX_AUX))?;

        let result = if !self.admit(ctx, "EcDoRpcExt2") || self.revoked(&handle) {
            Err(EC_RPC_FAILED)
        } else {
            let mut state = self.lock();
            let cxh = self.session_cxh(&state, ctx, &handle)?;
            match state.sessions.get_mut(&cxh) {
                Some(session) => self.run_rops(session, rgb_in, flags, cb_out as usize),
                None => Err(EC_RPC_FORMAT),
            }
        };
        let mut w = NdrWriter::new();
        w.put_context_handle(&handle);
        w.put_u32(0); // pulFlags: the server SHOULD return 0
        let (rgb_out, status) = match result {
            Ok(out) => (out, 0),
            Err(code) => (Vec::new(), code),
        };
        w.put_conformant_varying_bytes(rgb_out.len(), &rgb_out);
        w.align(4);
        w.put_u32(rgb_out.len() as u32);
        put_empty_aux(&mut w);
        w.put_u32(0); // pulTransTime
        w.put_u32(status);
        Ok(w.into_bytes())
    }

    /// Decodes rgbIn, runs its ROPs, appends the session's notifications and encodes
    /// rgbOut as the client's flags ask; Err is EcDoRpcExt2's return value.
    fn run_rops(
        &self,
        session: &mut Session,
        rgb_in: &[u8],
        flags: u32,
        cb_out: usize,
    ) -> Result<Vec<u8>, u32> {
        let limits = DecodeLimits {
            max_output: MAX_RPC_BUFFER as usize,
            max_payload: MAX_PAYLOAD,
        };
        let request = decode_extended_buffer(rgb_in, limits).map_err(|_| EC_RPC_FORMAT)?;
        let buffer = self.run_rop_buffer(session, &request)?;
        let options = EncodeOptions {
            compress: flags & FLAG_NO_COMPRESSION == 0,
            xor: flags & FLAG_NO_XOR_MAGIC == 0,
            max_chunk: MAX_PAYLOAD,
        };
        let out = encode_extended_buffer(&buffer, options);
        if out.len() > cb_out {
            return Err(EC_BUFFER_TOO_SMALL);
        }
        Ok(out)
    }

    /// Runs a ROP request buffer (RopSize, ROPs, handle table) and appends the
    /// session's notifications: the ROP response buffer, or the call's return value.
    fn run_rop_buffer(&self, session: &mut Session, request: &[u8]) -> Result<Vec<u8>, u32> {
        let mut target = SessionTarget {
            session,
            world: &self.world,
        };
        let (responses, handles) =
            rops::execute(request, &mut target).map_err(|_| EC_RPC_FORMAT)?;
        let mut out = Writer::new();
        out.put_bytes(&responses);
        self.put_notifications(session, &mut out);
        rops::response_buffer(out.as_bytes(), &handles).ok_or(EC_BUFFER_TOO_SMALL)
    }

    /// EcDoRpc: rgb is the bare ROP buffer under XOR 0xA5, answered in kind when the
    /// response fits max_data.
    fn rpc_legacy(&self, ctx: &CallContext<'_>, stub: &[u8]) -> Result<Vec<u8>, CallOutcome> {
        let mut r = NdrReader::new(stub);
        let handle = ndr(r.context_handle())?;
        let rgb_in = ndr(r.conformant_varying_bytes())?;
        let cb_in = ndr(r.u16())?;
        let max_data = ndr(r.u16())?;
        if usize::from(cb_in) != rgb_in.len() {
            return Err(CallOutcome::Fault(FaultStatus::BAD_STUB_DATA));
        }
        let request = xor_legacy(rgb_in);

        let mut state = self.lock();
        let cxh = self.session_cxh(&state, ctx, &handle)?;
        let result = match state.sessions.get_mut(&cxh) {
            Some(session) => self.run_rop_buffer(session, &request).and_then(|out| {
                match u16::try_from(out.len()) {
                    Ok(len) if len <= max_data => Ok(out),
                    _ => Err(EC_BUFFER_TOO_SMALL),
                }
            }),
            None => Err(EC_RPC_FORMAT),
        };
        drop(state);
        let (rgb_out, status) = match result {
            Ok(out) => (xor_legacy(&out), 0),
            Err(code) => (Vec::new(), code),
        };
        let mut w = NdrWriter::new();
        w.put_context_handle(&handle);
        w.put_conformant_varying_bytes(rgb_out.len(), &rgb_out);
        // The length fits: it was checked against the 16-bit max_data.
        w.put_u16(u16::try_from(rgb_out.len()).unwrap_or(u16::MAX));
        w.put_u32(status);
        Ok(w.into_bytes())
    }

    /// RopNotify for each queued event, up to the per-response cap, then RopPending
    /// if some are left ([MS-OXCNOTIF] 3.1.5.7).
    fn put_notifications(&self, session: &mut Session, out: &mut Writer) {
        let hub = &self.world.notifications;
        let subscriptions: Vec<_> = subscriptions_of(session).collect();
        for (handle, logon_id, id) in subscriptions {
            let (events, _overflowed) = hub.take(id);
            for event in events {
                if session.backlog.len() >= MAX_QUEUED {
                    session.backlog.pop_front();
                }
                session.backlog.push_back((handle, logon_id, event));
            }
        }
        let count = session
            .backlog
            .len()
            .min(self.config.max_notifications_per_response);
        for (handle, logon_id, event) in session.backlog.drain(..count) {
            rops::put_new_mail_notify(out, handle, logon_id, &event);
        }
        if !session.backlog.is_empty() {
            rops::put_pending(out, session.index);
        }
    }

    fn async_connect(&self, ctx: &CallContext<'_>, stub: &[u8]) -> Result<Vec<u8>, CallOutcome> {
        let mut r = NdrReader::new(stub);
        let handle = ndr(r.context_handle())?;
        if !self.admit(ctx, "EcDoAsyncConnectEx") || self.revoked(&handle) {
            let mut w = NdrWriter::new();
            w.put_context_handle(&ContextHandle::NIL);
            w.put_u32(EC_RPC_FAILED);
            return Ok(w.into_bytes());
        }
        let mut state = self.lock();
        let cxh = self.session_cxh(&state, ctx, &handle)?;
        let id = state.next();
        let acxh = handle_uuid(id, 0xAC);
        let old = state
            .sessions
            .get_mut(&cxh)
            .and_then(|s| s.acxh.replace(acxh));
        if let Some(old) = old {
            state.async_handles.remove(&old);
        }
        state.async_handles.insert(acxh, (cxh, ctx.connection_id));
        let mut w = NdrWriter::new();
        w.put_context_handle(&ContextHandle::new(acxh));
        w.put_u32(0);
        Ok(w.into_bytes())
    }

    fn async_wait(&self, ctx: &CallContext<'_>, stub: &[u8]) -> CallOutcome {
        let mut r = NdrReader::new(stub);
        let handle = match ndr(r.context_handle()).and_then(|h| ndr(r.u32()).map(|_| h)) {
            Ok(h) => h,
            Err(fault) => return fault,
        };
        if !self.admit(ctx, "EcDoAsyncWaitEx") {
            return CallOutcome::Response(wait_response(0, EC_RPC_FAILED));
        }
        let mut state = self.lock();
        let Some(&(cxh, _)) = state
            .async_handles
            .get(&handle.uuid)
            .filter(|_| !handle.is_nil())
        else {
            return CallOutcome::Fault(FaultStatus::NCA_S_FAULT_CONTEXT_MISMATCH);
        };
        // A second outstanding wait on the ACXH: the older one is rejected
        // ([MS-OXCRPC] 3.3.4.1) and its connection woken to answer it.
        let mut superseded = false;
        for wait in state.waits.values_mut().filter(|w| w.acxh == handle.uuid) {
            wait.superseded = true;
            superseded = true;
        }
        let Some(session) = state.sessions.get(&cxh) else {
            return CallOutcome::Fault(FaultStatus::NCA_S_FAULT_CONTEXT_MISMATCH);
        };
        let relay = Arc::clone(&session.relay);
        let pending = self.has_pending(session);
        let old_waker = match ctx.waker {
            Some(w) => relay
                .0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .replace(Arc::clone(w)),
            None => None,
        };
        if superseded {
            if let Some(w) = old_waker {
                w.wake();
            }
        }
        if pending {
            return CallOutcome::Response(wait_response(NOTIFICATION_PENDING, 0));
        }
        let token = state.next();
        state.waits.insert(
            token,
            Wait {
                acxh: handle.uuid,
                connection_id: ctx.connection_id,
                superseded: false,
            },
        );
        CallOutcome::Parked {
            token,
            until: ctx.now + self.config.async_wait_timeout,
        }
    }

    fn has_pending(&self, session: &Session) -> bool {
        !session.backlog.is_empty()
            || subscriptions_of(session).any(|(_, _, id)| self.world.notifications.has_pending(id))
    }

    fn resume_wait(&self, token: u64, timed_out: bool) -> Option<CallOutcome> {
        let mut state = self.lock();
        let wait = state.waits.get(&token)?;
        let session = state
            .async_handles
            .get(&wait.acxh)
            .and_then(|(cxh, _)| state.sessions.get(cxh));
        let answer = match session {
            _ if wait.superseded => Some(wait_response(0, EC_REJECTED)),
            // The session went away (disconnect, rundown): the wait ends.
            None => Some(wait_response(0, EC_REJECTED)),
            Some(s) if self.has_pending(s) => Some(wait_response(NOTIFICATION_PENDING, 0)),
            Some(_) if timed_out => Some(wait_response(0, 0)),
            Some(_) => None,
        };
        if answer.is_some() {
            state.waits.remove(&token);
        }
        answer.map(CallOutcome::Response)
    }

    fn rundown(&self, connection_id: u64) {
        let mut state = self.lock();
        let gone: Vec<Uuid> = state
            .sessions
            .iter()
            .filter(|(_, s)| s.connection_id == connection_id)
            .map(|(id, _)| *id)
            .collect();
        for cxh in gone {
            if let Some(session) = state.sessions.remove(&cxh) {
                self.release(&mut state, session);
            }
        }
        state
            .async_handles
            .retain(|_, (_, conn)| *conn != connection_id);
        state.waits.retain(|_, w| w.connection_id != connection_id);
        state.revoked.retain(|(_, c)| *c != connection_id);
        // A registration lives as long as a session made under it does.
        let State {
            registrations,
            sessions,
            ..
        } = &mut *state;
        registrations.retain(|_, r| r.sessions.iter().any(|c| sessions.contains_key(c)));
    }
}

/// EcDoRpc's obfuscation, its own inverse.
pub fn xor_legacy(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().map(|b| b ^ LEGACY_XOR).collect()
}

fn wait_response(flags_out: u32, status: u32) -> Vec<u8> {
    let mut w = NdrWriter::new();
    w.put_u32(flags_out);
    w.put_u32(status);
    w.into_bytes()
}

fn outcome(result: Result<Vec<u8>, CallOutcome>) -> CallOutcome {
    result.map_or_else(|fault| fault, CallOutcome::Response)
}

impl RpcInterface for Emsmdb {
    fn syntax(&self) -> SyntaxId {
        EMSMDB_SYNTAX
    }
    fn name(&self) -> &'static str {
        "emsmdb"
    }
    fn opnum_count(&self) -> u16 {
        OP_ASYNC_CONNECT_EX + 1
    }
    fn call(&self, ctx: &CallContext<'_>, opnum: u16, stub: &[u8]) -> CallOutcome {
        match opnum {
            OP_DISCONNECT => outcome(self.0.disconnect(ctx, stub)),
            OP_DUMMY_RPC => {
                let status = if self.0.admit(ctx, "EcDummyRpc") {
                    0
                } else {
                    EC_RPC_FAILED
                };
                CallOutcome::Response(status.to_le_bytes().to_vec())
            }
            OP_CONNECT if self.0.config.legacy_opnums => outcome(self.0.connect(ctx, stub, false)),
            OP_RPC if self.0.config.legacy_opnums => outcome(self.0.rpc_legacy(ctx, stub)),
            OP_CONNECT_EX => outcome(self.0.connect(ctx, stub, true)),
            OP_RPC_EXT2 => outcome(self.0.rpc_ext2(ctx, stub)),
            OP_ASYNC_CONNECT_EX => outcome(self.0.async_connect(ctx, stub)),
            // Reserved opnums (0 and 2 too unless legacy_opnums) and
            // EcRRegisterPushNotification (not offered).
            _ => CallOutcome::Fault(FaultStatus::NCA_S_OP_RNG_ERROR),
        }
    }
    fn rundown(&self, connection_id: u64) {
        self.0.rundown(connection_id);
    }
}

impl RpcInterface for AsyncEmsmdb {
    fn syntax(&self) -> SyntaxId {
        ASYNC_EMSMDB_SYNTAX
    }
    fn name(&self) -> &'static str {
        "asyncemsmdb"
    }
    fn opnum_count(&self) -> u16 {
        1
    }
    fn call(&self, ctx: &CallContext<'_>, opnum: u16, stub: &[u8]) -> CallOutcome {
        match opnum {
            OP_ASYNC_WAIT_EX => self.0.async_wait(ctx, stub),
            _ => CallOutcome::Fault(FaultStatus::NCA_S_OP_RNG_ERROR),
        }
    }
    fn resume(&self, _ctx: &CallContext<'_>, token: u64, timed_out: bool) -> Option<CallOutcome> {
        self.0.resume_wait(token, timed_out)
    }
    fn rundown(&self, connection_id: u64) {
        self.0.rundown(connection_id);
    }
}
