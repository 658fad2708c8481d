//! The endpoint mapper (EPM, `ept` v3.0, [C706] Appendix O with the [MS-RPCE] 2.2.1.2
//! extensions and the server rules of [MS-RPCE] 3.3.3): clients ask it, on TCP port 135,
//! which port serves an interface. An [`EndpointMap`] holds what the endpoint registered;
//! [`EpmInterface`] answers `ept_map`, `ept_lookup` and `ept_lookup_handle_free` from it.
//!
//! Protocol towers ([C706] Appendix L, identifiers in Appendix I) are [`Tower`]s; only
//! `ncacn_ip_tcp` towers with the NDR 2.0 transfer syntax are mapped.
//!
//! The operations, as [MS-RPCE] 2.2.1.2 redefines them (opnum order):
//!
//! ```text
//! typedef [context_handle] void* ept_lookup_handle_t;
//! typedef struct { unsigned long tower_length;
//!                  [size_is(tower_length)] byte tower_octet_string[]; } twr_t;
//! typedef [ptr] twr_t* twr_p_t;
//! typedef struct { UUID object; twr_p_t tower;
//!                  [string] char annotation[64]; } ept_entry_t;
//! typedef struct { UUID Uuid; unsigned short VersMajor;
//!                  unsigned short VersMinor; } RPC_IF_ID;
//!
//! 0 void ept_insert([in] handle_t h, [in] unsigned32 num_ents,
//!                   [in, size_is(num_ents)] ept_entry_t entries[],
//!                   [in] boolean32 replace, [out] error_status_t *status);
//! 1 void ept_delete([in] handle_t h, [in] unsigned32 num_ents,
//!                   [in, size_is(num_ents)] ept_entry_t entries[],
//!                   [out] error_status_t *status);
//! 2 void ept_lookup([in] handle_t hEpMapper, [in] unsigned long inquiry_type,
//!                   [in, ptr] UUID* object, [in, ptr] RPC_IF_ID* Ifid,
//!                   [in] unsigned long vers_option,
//!                   [in, out] ept_lookup_handle_t* entry_handle,
//!                   [in, range(0,500)] unsigned long max_ents,
//!                   [out] unsigned long* num_ents,
//!                   [out, length_is(*num_ents), size_is(max_ents)] ept_entry_t entries[],
//!                   [out] error_status* status);
//! 3 void ept_map([in] handle_t hEpMapper, [in, ptr] UUID* obj,
//!                [in, ptr] twr_p_t map_tower,
//!                [in, out] ept_lookup_handle_t* entry_handle,
//!                [in, range(0,500)] unsigned long max_towers,
//!                [out] unsigned long* num_towers,
//!                [out, ptr, size_is(max_towers), length_is(*num_towers)] twr_p_t* ITowers,
//!                [out] error_status* status);
//! 4 void ept_lookup_handle_free([in] handle_t h,
//!                               [in, out] ept_lookup_handle_t* entry_handle,
//!                               [out] error_status_t* status);
//! 5 void ept_inq_object([in] handle_t h, [out] UUID* ept_object,
//!                       [out] error_status_t* status);
//! 6 void ept_mgmt_delete([in] handle_t h, [in] boolean32 object_speced,
//!                        [in, ptr] UUID* object, [in, ptr] twr_p_t tower,
//!                        [out] error_status_t* status);
//! ```
//!
//! Opnums 0, 1, 5 and 6 (registration and management) are answered with a fault
//! `RPC_S_CANNOT_SUPPORT`: the map is filled by the endpoint itself, a client has no
//! business changing it, and decoding their entry arrays only to refuse them would add
//! code an attacker reaches and nothing a client needs (impacket and Windows clients
//! report a fault as the failed call it is). Opnums from 7 up are the association's
//! (`nca_s_op_rng_error`). A stub that does not decode gets `RPC_X_BAD_STUB_DATA`.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use harness_wire::codec::{Codec, DecodeError, Reader, Writer};
use harness_wire::dcerpc::{FaultStatus, SyntaxId, Uuid};
use harness_wire::ndr::{ContextHandle, FullPointer, NdrError, NdrLimits, NdrReader, NdrWriter};

use super::interface::{CallContext, CallOutcome, RpcInterface};

/// The endpoint mapper interface, e1af8308-5d1f-11c9-91a4-08002b14a0fa v3.0.
pub const EPM_SYNTAX: SyntaxId = SyntaxId::new(
    Uuid::new(
        0xe1af_8308,
        0x5d1f,
        0x11c9,
        [0x91, 0xa4, 0x08, 0x00, 0x2b, 0x14, 0xa0, 0xfa],
    ),
    3,
    0,
);
/// Its well-known ncacn_ip_tcp port.
pub const EPM_PORT: u16 = 135;

pub const OPNUM_EPT_INSERT: u16 = 0;
pub const OPNUM_EPT_DELETE: u16 = 1;
pub const OPNUM_EPT_LOOKUP: u16 = 2;
pub const OPNUM_EPT_MAP: u16 = 3;
pub const OPNUM_EPT_LOOKUP_HANDLE_FREE: u16 = 4;
pub const OPNUM_EPT_INQ_OBJECT: u16 = 5;
pub const OPNUM_EPT_MGMT_DELETE: u16 = 6;

/// Status: success.
pub const EPT_S_OK: u32 = 0;
/// Status: no (more) elements match ([MS-RPCE] 2.2.1.2.4, 2.2.1.2.5).
pub const EPT_S_NOT_REGISTERED: u32 = 0x16c9_a0d6;
/// Status: the operation cannot be performed (here: too many open lookups).
pub const EPT_S_CANT_PERFORM_OP: u32 = 0x16c9_a0cd;

/// `[range(0,500)]` of max_ents and max_towers.
pub const MAX_RESULTS: u32 = 500;
/// Characters of an annotation before its NUL (`char annotation[64]`).
pub const MAX_ANNOTATION: usize = 63;
/// Octets of a tower this map reads (an ncacn_ip_tcp tower has 75; Windows' longest,
/// named pipes with a host name, stay far below).
pub const MAX_TOWER_OCTETS: usize = 1024;
/// Floors of a tower this map reads (towers have 4 to 6).
pub const MAX_FLOORS: u16 = 16;
/// Open `ept_lookup` contexts per connection.
pub const MAX_LOOKUPS_PER_CONNECTION: usize = 16;

/// Tower floor protocol identifiers ([C706] Appendix I).
pub const FLOOR_UUID: u8 = 0x0d;
/// RPC connection-oriented protocol (ncacn).
pub const FLOOR_RPC_CO: u8 = 0x0b;
pub const FLOOR_TCP_PORT: u8 = 0x07;
pub const FLOOR_IP_ADDRESS: u8 = 0x09;

/// `inquiry_type` of ept_lookup ([MS-RPCE] 2.2.1.2.4).
pub const RPC_C_EP_ALL_ELTS: u32 = 0;
pub const RPC_C_EP_MATCH_BY_IF: u32 = 1;
pub const RPC_C_EP_MATCH_BY_OBJ: u32 = 2;
pub const RPC_C_EP_MATCH_BY_BOTH: u32 = 3;
/// `vers_option` of ept_lookup.
pub const RPC_C_VERS_ALL: u32 = 1;
pub const RPC_C_VERS_COMPATIBLE: u32 = 2;
pub const RPC_C_VERS_EXACT: u32 = 3;
pub const RPC_C_VERS_MAJOR_ONLY: u32 = 4;
pub const RPC_C_VERS_UPTO: u32 = 5;

/// What a stub of this interface may make the reader allocate: the tower octets.
const LIMITS: NdrLimits = NdrLimits {
    max_elements: MAX_TOWER_OCTETS,
    max_string: MAX_ANNOTATION + 1,
};

/// One floor of a tower: its left-hand side (protocol identifier and data) and its
/// right-hand side (related or address data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Floor {
    pub lhs: Vec<u8>,
    pub rhs: Vec<u8>,
}

impl Floor {
    /// A floor naming an interface or transfer syntax: 0x0d, the UUID and the major
    /// version (little-endian) on the left, the minor version on the right.
    pub fn syntax(syntax: SyntaxId) -> Floor {
        let mut lhs = Writer::new();
        lhs.put_u8(FLOOR_UUID);
        syntax.uuid.encode(&mut lhs);
        lhs.put_u16_le(syntax.major());
        Floor {
            lhs: lhs.into_bytes(),
            rhs: syntax.minor().to_le_bytes().to_vec(),
        }
    }

    /// A floor of one protocol identifier octet and its data.
    pub fn protocol(id: u8, rhs: &[u8]) -> Floor {
        Floor {
            lhs: vec![id],
            rhs: rhs.to_vec(),
        }
    }

    /// The protocol identifier (first octet of the left-hand side).
    pub fn protocol_id(&self) -> Option<u8> {
        self.lhs.first().copied()
    }

    /// The syntax of a [`Floor::syntax`] floor.
    pub fn as_syntax(&self) -> Option<SyntaxId> {
        let mut lhs = Reader::new(&self.lhs);
        if lhs.u8().ok()? != FLOOR_UUID {
            return None;
        }
        let uuid = Uuid::decode(&mut lhs).ok()?;
        let major = lhs.u16_le().ok()?;
        let minor = Reader::new(&self.rhs).u16_le().ok()?;
        (lhs.is_empty() && self.rhs.len() == 2).then(|| SyntaxId::new(uuid, major, minor))
    }
}

/// A protocol tower ([C706] Appendix L): a floor count (little-endian u16), then each
/// floor as lhs_length u16, lhs, rhs_length u16, rhs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tower {
    pub floors: Vec<Floor>,
}

impl Tower {
    /// The ncacn_ip_tcp tower of `interface` at `ip`:`port`: interface, transfer syntax,
    /// RPC connection-oriented (minor version 0), TCP port and IPv4 address (both
    /// big-endian, [C706] Appendix I).
    pub fn ncacn_ip_tcp(interface: SyntaxId, transfer: SyntaxId, port: u16, ip: Ipv4Addr) -> Tower {
        Tower {
            floors: vec![
                Floor::syntax(interface),
                Floor::syntax(transfer),
                Floor::protocol(FLOOR_RPC_CO, &[0, 0]),
                Floor::protocol(FLOOR_TCP_PORT, &port.to_be_bytes()),
                Floor::protocol(FLOOR_IP_ADDRESS, &ip.octets()),
            ],
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        let floors = self
            .floors
            .get(..usize::from(u16::MAX))
            .unwrap_or(&self.floors);
        w.put_u16_le(floors.len() as u16);
        for floor in floors {
            for side in [&floor.lhs, &floor.rhs] {
                let side = side.get(..usize::from(u16::MAX)).unwrap_or(side);
                w.put_u16_le(side.len() as u16);
                w.put_bytes(side);
            }
        }
        w.into_bytes()
    }

    /// Reads a tower of at most [`MAX_FLOORS`] floors; octets after the last floor are
    /// refused, as are more floors than the count or the limit.
    pub fn decode(octets: &[u8]) -> Result<Tower, DecodeError> {
        let mut r = Reader::new(octets);
        let count = r.u16_le()?;
        if count > MAX_FLOORS {
            return Err(DecodeError::Invalid("epm: tower with too many floors"));
        }
        let mut floors = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let lhs_len = r.u16_le()?;
            let lhs = r.take(usize::from(lhs_len))?.to_vec();
            let rhs_len = r.u16_le()?;
            let rhs = r.take(usize::from(rhs_len))?.to_vec();
            floors.push(Floor { lhs, rhs });
        }
        match r.is_empty() {
            true => Ok(Tower { floors }),
            false => Err(DecodeError::Invalid("epm: octets after the tower's floors")),
        }
    }

    /// The interface of floor 1.
    pub fn interface(&self) -> Option<SyntaxId> {
        self.floors.first()?.as_syntax()
    }

    /// The transfer syntax of floor 2.
    pub fn transfer_syntax(&self) -> Option<SyntaxId> {
        self.floors.get(1)?.as_syntax()
    }

    /// True for an ncacn_ip_tcp tower: floor 3 RPC connection-oriented, floor 4 a TCP
    /// port (the address floor, when there, is not looked at: clients send 0.0.0.0).
    pub fn is_ncacn_ip_tcp(&self) -> bool {
        let id = |i: usize| self.floors.get(i).and_then(Floor::protocol_id);
        id(2) == Some(FLOOR_RPC_CO) && id(3) == Some(FLOOR_TCP_PORT)
    }

    /// The TCP port and IPv4 address of an ncacn_ip_tcp tower.
    pub fn tcp_endpoint(&self) -> Option<(u16, Ipv4Addr)> {
        let port = self.floors.get(3)?;
        let ip = self.floors.get(4)?;
        if port.protocol_id()? != FLOOR_TCP_PORT || ip.protocol_id()? != FLOOR_IP_ADDRESS {
            return None;
        }
        let port: [u8; 2] = port.rhs.as_slice().try_into().ok()?;
        let ip: [u8; 4] = ip.rhs.as_slice().try_into().ok()?;
        Some((u16::from_be_bytes(port), Ipv4Addr::from(ip)))
    }
}

/// Reads a `twr_t` (a conformant structure: max_count hoisted before tower_length).
fn read_twr(r: &mut NdrReader<'_>) -> Result<Vec<u8>, NdrError> {
    let max_count = r.conformance(1)?;
    let tower_length = r.u32()?;
    if usize::try_from(tower_length).ok() != Some(max_count) {
        return Err(NdrError::Invalid(
            "epm: tower_length differs from its size_is",
        ));
    }
    Ok(r.bytes(max_count)?.to_vec())
}

/// Writes a `twr_t`.
fn write_twr(w: &mut NdrWriter, octets: &[u8]) {
    w.put_conformance(octets.len());
    w.put_u32(octets.len() as u32);
    w.put_bytes(octets);
}

/// One interface the endpoint serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub syntax: SyntaxId,
    /// At most [`MAX_ANNOTATION`] octets.
    pub annotation: String,
    pub port: u16,
}

/// What the endpoint serves where: interfaces on TCP ports of one IPv4 address.
/// Registration goes through `&self`, so listeners may register as they start.
#[derive(Debug)]
pub struct EndpointMap {
    ip: Ipv4Addr,
    entries: RwLock<Vec<Registration>>,
}

impl EndpointMap {
    /// An empty map for an endpoint reachable at `ip` (what the towers carry).
    pub fn new(ip: Ipv4Addr) -> Self {
        EndpointMap {
            ip,
            entries: RwLock::new(Vec::new()),
        }
    }

    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// `syntax` is served on TCP `port`; `annotation` is cut to [`MAX_ANNOTATION`]
    /// octets (at a character boundary) and to its first NUL.
    pub fn register(&self, syntax: SyntaxId, annotation: &str, port: u16) {
        let annotation = annotation.split('\0').next().unwrap_or_default();
        let mut end = annotation.len().min(MAX_ANNOTATION);
        while !annotation.is_char_boundary(end) {
            end -= 1;
        }
        let registration = Registration {
            syntax,
            annotation: annotation[..end].to_string(),
            port,
        };
        self.write().push(registration);
    }

    /// The registrations, in the order they were made.
    pub fn entries(&self) -> Vec<Registration> {
        self.entries
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Registration>> {
        self.entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The registrations ept_map returns for `interface`: same UUID and major version,
    /// a registered minor version at least the one asked for ([C706] 2.6.1 version
    /// compatibility).
    pub fn map(&self, interface: SyntaxId) -> Vec<Registration> {
        let mut found = self.entries();
        found.retain(|e| {
            e.syntax.uuid == interface.uuid
                && e.syntax.major() == interface.major()
                && e.syntax.minor() >= interface.minor()
        });
        found
    }

    fn tower_of(&self, registration: &Registration) -> Vec<u8> {
        Tower::ncacn_ip_tcp(
            registration.syntax,
            SyntaxId::NDR20,
            registration.port,
            self.ip,
        )
        .to_bytes()
    }
}

/// An open ept_lookup: what matched when it began, and how far the client has paged.
#[derive(Debug)]
struct Lookup {
    connection_id: u64,
    matches: Vec<Registration>,
    next: usize,
}

/// The endpoint mapper interface over an [`EndpointMap`].
#[derive(Debug)]
pub struct EpmInterface {
    map: Arc<EndpointMap>,
    lookups: Mutex<HashMap<Uuid, Lookup>>,
    handles_issued: AtomicU64,
}

/// What ept_lookup asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LookupRequest {
    inquiry_type: u32,
    object: Option<Uuid>,
    interface: Option<SyntaxId>,
    vers_option: u32,
    entry_handle: ContextHandle,
    max_ents: u32,
}

/// What ept_map asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MapRequest {
    object: Option<Uuid>,
    tower: Option<Vec<u8>>,
    entry_handle: ContextHandle,
    max_towers: u32,
}

/// The pointee of a top-level `[ptr]` parameter. An alias would point into another
/// parameter of a different type: refused.
fn full_pointee<'a, T>(
    r: &mut NdrReader<'a>,
    read: impl FnOnce(&mut NdrReader<'a>) -> Result<T, NdrError>,
) -> Result<Option<T>, NdrError> {
    match r.full_ptr()? {
        FullPointer::Null => Ok(None),
        FullPointer::New(_) => read(r).map(Some),
        FullPointer::Alias(_) => Err(NdrError::Invalid("epm: aliased top-level pointer")),
    }
}

impl MapRequest {
    fn decode(stub: &[u8]) -> Result<MapRequest, NdrError> {
        let mut r = NdrReader::with_limits(stub, LIMITS);
        Ok(MapRequest {
            object: full_pointee(&mut r, NdrReader::uuid)?,
            tower: full_pointee(&mut r, read_twr)?,
            entry_handle: r.context_handle()?,
            max_towers: r.u32_in_range(0, MAX_RESULTS)?,
        })
    }
}

fn read_if_id(r: &mut NdrReader<'_>) -> Result<SyntaxId, NdrError> {
    let uuid = r.uuid()?;
    let major = r.u16()?;
    let minor = r.u16()?;
    Ok(SyntaxId::new(uuid, major, minor))
}

impl LookupRequest {
    fn decode(stub: &[u8]) -> Result<LookupRequest, NdrError> {
        let mut r = NdrReader::with_limits(stub, LIMITS);
        Ok(LookupRequest {
            inquiry_type: r.u32()?,
            object: full_pointee(&mut r, NdrReader::uuid)?,
            interface: full_pointee(&mut r, read_if_id)?,
            vers_option: r.u32()?,
            entry_handle: r.context_handle()?,
            max_ents: r.u32_in_range(0, MAX_RESULTS)?,
        })
    }

    /// Whether `e` is one of the elements asked for ([MS-RPCE] 2.2.1.2.4). Every
    /// registration has the nil object UUID.
    fn matches(&self, e: &Registration) -> bool {
        let object_ok = self.object.is_none_or(|o| o == Uuid::NIL);
        let interface_ok = self.interface.is_some_and(|want| {
            let (have, want_v) = (e.syntax, (want.major(), want.minor()));
            let have_v = (have.major(), have.minor());
            have.uuid == want.uuid
                && match self.vers_option {
                    RPC_C_VERS_ALL => true,
                    RPC_C_VERS_COMPATIBLE => have_v.0 == want_v.0 && have_v.1 >= want_v.1,
                    RPC_C_VERS_EXACT => have_v == want_v,
                    RPC_C_VERS_MAJOR_ONLY => have_v.0 == want_v.0,
                    RPC_C_VERS_UPTO => have_v <= want_v,
                    _ => false,
                }
        });
        match self.inquiry_type {
            RPC_C_EP_ALL_ELTS => true,
            RPC_C_EP_MATCH_BY_IF => interface_ok,
            RPC_C_EP_MATCH_BY_OBJ => object_ok,
            RPC_C_EP_MATCH_BY_BOTH => interface_ok && object_ok,
            _ => false,
        }
    }
}

/// ept_map's request stub, the client's side ([C706] Appendix O / [MS-RPCE] 2.2.1.2.5):
/// no object, the ncacn_ip_tcp tower of `interface` over NDR 2.0 with port and address
/// 0 (a query), a nil entry handle, at most `max_towers` answers.
pub fn map_request(interface: SyntaxId, max_towers: u32) -> Vec<u8> {
    let tower = Tower::ncacn_ip_tcp(interface, SyntaxId::NDR20, 0, Ipv4Addr::UNSPECIFIED);
    let mut w = NdrWriter::new();
    w.put_pointer(false); // [in, ptr] UUID *obj
    w.put_pointer(true); // [in, ptr] twr_p_t map_tower
    write_twr(&mut w, &tower.to_bytes());
    w.put_context_handle(&ContextHandle::NIL);
    w.put_u32(max_towers);
    w.into_bytes()
}

/// ept_lookup's request stub ([MS-RPCE] 2.2.1.2.4): every element when `interface` is
/// None (RPC_C_EP_ALL_ELTS), else those of that interface (RPC_C_EP_MATCH_BY_IF,
/// RPC_C_VERS_COMPATIBLE); `entry_handle` nil to start, the returned one to go on.
pub fn lookup_request(
    interface: Option<SyntaxId>,
    entry_handle: &ContextHandle,
    max_ents: u32,
) -> Vec<u8> {
    let mut w = NdrWriter::new();
    w.put_u32(match interface {
        None => RPC_C_EP_ALL_ELTS,
        Some(_) => RPC_C_EP_MATCH_BY_IF,
    });
    w.put_pointer(false); // [in, ptr] UUID *object
    w.put_pointer(interface.is_some()); // [in, ptr] rpc_if_id_t *interface_id
    if let Some(i) = interface {
        w.put_uuid(&i.uuid);
        w.put_u16(i.major());
        w.put_u16(i.minor());
    }
    w.put_u32(RPC_C_VERS_COMPATIBLE);
    w.put_context_handle(entry_handle);
    w.put_u32(max_ents);
    w.into_bytes()
}

/// The fault for an entry handle this interface did not hand out on this connection:
/// what the RPC runtime answers an unknown context handle with.
const CONTEXT_MISMATCH: CallOutcome = CallOutcome::Fault(FaultStatus::NCA_S_FAULT_CONTEXT_MISMATCH);

impl EpmInterface {
    pub fn new(map: Arc<EndpointMap>) -> Self {
        EpmInterface {
            map,
            lookups: Mutex::new(HashMap::new()),
            handles_issued: AtomicU64::new(0),
        }
    }

    pub fn map(&self) -> &Arc<EndpointMap> {
        &self.map
    }

    fn lookups(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Lookup>> {
        self.lookups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Open lookups of a connection (for tests and diagnostics).
    pub fn open_lookups(&self, connection_id: u64) -> usize {
        self.lookups()
            .values()
            .filter(|l| l.connection_id == connection_id)
            .count()
    }

    /// A handle UUID never issued before: a version-4-shaped UUID from a counter and
    /// the connection, unique for the interface's lifetime.
    fn fresh_handle(&self, connection_id: u64) -> ContextHandle {
        let n = self.handles_issued.fetch_add(1, Ordering::Relaxed) + 1;
        let mut tail = connection_id.to_be_bytes();
        tail[0] = 0x80 | (tail[0] & 0x3f);
        ContextHandle::new(Uuid::new(
            n as u32,
            (n >> 32) as u16,
            0x4000 | ((n >> 48) as u16 & 0x0fff),
            tail,
        ))
    }

    fn ept_map(&self, stub: &[u8]) -> Result<CallOutcome, NdrError> {
        let req = MapRequest::decode(stub)?;
        if !req.entry_handle.is_nil() {
            // ept_map never hands out a handle (all towers fit one answer).
            return Ok(CONTEXT_MISMATCH);
        }
        let wanted = req
            .tower
            .as_deref()
            .and_then(|octets| Tower::decode(octets).ok())
            .filter(|t| t.is_ncacn_ip_tcp() && t.transfer_syntax() == Some(SyntaxId::NDR20))
            .and_then(|t| t.interface());
        // ept_map ignores the object: registrations with the nil object match any
        // ([MS-RPCE] 2.2.1.2.5), and all registrations here have it.
        let found = wanted.map(|i| self.map.map(i)).unwrap_or_default();
        let towers: Vec<Vec<u8>> = found
            .iter()
            .take(req.max_towers as usize)
            .map(|e| self.map.tower_of(e))
            .collect();
        let status = match found.is_empty() {
            true => EPT_S_NOT_REGISTERED,
            false => EPT_S_OK,
        };
        let mut w = NdrWriter::new();
        w.put_context_handle(&ContextHandle::NIL);
        w.put_u32(towers.len() as u32);
        w.put_conformance(req.max_towers as usize);
        w.put_variance(towers.len());
        for _ in &towers {
            w.put_pointer(true);
        }
        towers.iter().for_each(|t| write_twr(&mut w, t));
        w.put_u32(status);
        Ok(CallOutcome::Response(w.into_bytes()))
    }

    fn ept_lookup(&self, ctx: &CallContext<'_>, stub: &[u8]) -> Result<CallOutcome, NdrError> {
        let req = LookupRequest::decode(stub)?;
        let nothing = |status| self.lookup_answer(ContextHandle::NIL, &[], req.max_ents, status);
        let mut lookups = self.lookups();
        let handle = match req.entry_handle.is_nil() {
            true => {
                let matches: Vec<Registration> = self
                    .map
                    .entries()
                    .into_iter()
                    .filter(|e| req.matches(e))
                    .collect();
                if matches.is_empty() {
                    return Ok(nothing(EPT_S_NOT_REGISTERED));
                }
                let open = lookups
                    .values()
                    .filter(|l| l.connection_id == ctx.connection_id)
                    .count();
                if open >= MAX_LOOKUPS_PER_CONNECTION {
                    return Ok(nothing(EPT_S_CANT_PERFORM_OP));
                }
                let handle = self.fresh_handle(ctx.connection_id);
                lookups.insert(
                    handle.uuid,
                    Lookup {
                        connection_id: ctx.connection_id,
                        matches,
                        next: 0,
                    },
                );
                handle
            }
            false => req.entry_handle,
        };
        let Some(lookup) = lookups
            .get_mut(&handle.uuid)
            .filter(|l| l.connection_id == ctx.connection_id)
        else {
            return Ok(CONTEXT_MISMATCH);
        };
        let start = lookup.next.min(lookup.matches.len());
        let end = start
            .saturating_add(req.max_ents as usize)
            .min(lookup.matches.len());
        if start == end {
            // Past the last element: the lookup is over ([MS-RPCE] 2.2.1.2.4).
            lookups.remove(&handle.uuid);
            return Ok(nothing(EPT_S_NOT_REGISTERED));
        }
        lookup.next = end;
        let page = lookup.matches[start..end].to_vec();
        // The last page comes with a NULL handle: the lookup is over (impacket's
        // hept_lookup, like Samba's client, stops at a NULL handle and takes a non-zero
        // status as an error).
        let handle = if end == lookup.matches.len() {
            lookups.remove(&handle.uuid);
            ContextHandle::NIL
        } else {
            handle
        };
        drop(lookups);
        Ok(self.lookup_answer(handle, &page, req.max_ents, EPT_S_OK))
    }

    /// The out parameters of ept_lookup: the handle, num_ents, the entries (each
    /// structure, then the deferred towers) and the status.
    fn lookup_answer(
        &self,
        handle: ContextHandle,
        page: &[Registration],
        max_ents: u32,
        status: u32,
    ) -> CallOutcome {
        let mut w = NdrWriter::new();
        w.put_context_handle(&handle);
        w.put_u32(page.len() as u32);
        w.put_conformance(max_ents as usize);
        w.put_variance(page.len());
        for e in page {
            w.put_uuid(&Uuid::NIL);
            w.put_pointer(true);
            w.put_varying_string(e.annotation.as_bytes());
        }
        for e in page {
            write_twr(&mut w, &self.map.tower_of(e));
        }
        w.put_u32(status);
        CallOutcome::Response(w.into_bytes())
    }

    fn ept_lookup_handle_free(
        &self,
        ctx: &CallContext<'_>,
        stub: &[u8],
    ) -> Result<CallOutcome, NdrError> {
        let mut r = NdrReader::with_limits(stub, LIMITS);
        let handle = r.context_handle()?;
        if !handle.is_nil() {
            let mut lookups = self.lookups();
            match lookups.get(&handle.uuid) {
                Some(l) if l.connection_id == ctx.connection_id => {
                    lookups.remove(&handle.uuid);
                }
                _ => return Ok(CONTEXT_MISMATCH),
            }
        }
        let mut w = NdrWriter::new();
        w.put_context_handle(&ContextHandle::NIL);
        w.put_u32(EPT_S_OK);
        Ok(CallOutcome::Response(w.into_bytes()))
    }
}

impl RpcInterface for EpmInterface {
    fn syntax(&self) -> SyntaxId {
        EPM_SYNTAX
    }

    fn name(&self) -> &'static str {
        "epm"
    }

    fn opnum_count(&self) -> u16 {
        OPNUM_EPT_MGMT_DELETE + 1
    }

    fn call(&self, ctx: &CallContext<'_>, opnum: u16, stub: &[u8]) -> CallOutcome {
        let outcome = match opnum {
            OPNUM_EPT_LOOKUP => self.ept_lookup(ctx, stub),
            OPNUM_EPT_MAP => self.ept_map(stub),
            OPNUM_EPT_LOOKUP_HANDLE_FREE => self.ept_lookup_handle_free(ctx, stub),
            OPNUM_EPT_INSERT | OPNUM_EPT_DELETE | OPNUM_EPT_INQ_OBJECT | OPNUM_EPT_MGMT_DELETE => {
                Ok(CallOutcome::Fault(FaultStatus::CANNOT_SUPPORT))
            }
            _ => Ok(CallOutcome::Fault(FaultStatus::NCA_S_OP_RNG_ERROR)),
        };
        outcome.unwrap_or_else(|e| CallOutcome::Fault(e.fault_status()))
    }

    /// Lookups the connection left open end with it ([MS-RPCE] 3.3.3.2.1 rundown).
    fn rundown(&self, connection_id: u64) {
        self.lookups()
            .retain(|_, l| l.connection_id != connection_id);
    }
}

/// Stubs impacket marshals, for the tests and as seeds of the fuzz targets
/// (`harness_core::fuzzing`).
pub mod impacket {
    /// Stubs impacket 0.13.1 marshals (python in /tmp/impvenv, nothing of it committed):
    ///
    /// ```python
    /// from struct import unpack; import socket
    /// from impacket.dcerpc.v5 import epm
    /// from impacket.dcerpc.v5.ndr import NULL
    /// from impacket.uuid import uuidtup_to_bin
    /// def map_request(iface):            # the tower hept_map builds for ncacn_ip_tcp
    ///     i = uuidtup_to_bin(iface)
    ///     ndr = uuidtup_to_bin(('8a885d04-1ceb-11c9-9fe8-08002b104860', '2.0'))
    ///     f1 = epm.EPMRPCInterface(); f1['InterfaceUUID'] = i[:16]
    ///     f1['MajorVersion'] = unpack('<H', i[16:18])[0]
    ///     f1['MinorVersion'] = unpack('<H', i[18:])[0]
    ///     f2 = epm.EPMRPCDataRepresentation(); f2['DataRepUuid'] = ndr[:16]
    ///     f2['MajorVersion'] = 2; f2['MinorVersion'] = 0
    ///     f3 = epm.EPMProtocolIdentifier(); f3['ProtIdentifier'] = epm.FLOOR_RPCV5_IDENTIFIER
    ///     f4 = epm.EPMPortAddr(); f4['IpPort'] = 0
    ///     f5 = epm.EPMHostAddr(); f5['Ip4addr'] = socket.inet_aton('0.0.0.0')
    ///     tower = epm.EPMTower(); tower['NumberOfFloors'] = 5
    ///     tower['Floors'] = b''.join(f.getData() for f in (f1, f2, f3, f4, f5))
    ///     req = epm.ept_map(); req['max_towers'] = 4
    ///     req['map_tower']['tower_length'] = len(tower)
    ///     req['map_tower']['tower_octet_string'] = tower.getData()
    ///     req.fields['obj'].fields['ReferentID'] = 1       # as hept_map does
    ///     req.fields['map_tower'].fields['ReferentID'] = 2
    ///     return req.getData().hex()
    /// MAP_EMSMDB = map_request(('A4F1DB00-CA47-1067-B31F-00DD010662DA', '0.81'))
    /// MAP_NSPI = map_request(('F5CC5A18-4264-101A-8C59-08002B2F8426', '56.0'))
    /// def lookup(ifid=None, inquiry=epm.RPC_C_EP_ALL_ELTS, vers=epm.RPC_C_VERS_ALL, max_ents=500):
    ///     req = epm.ept_lookup(); req['inquiry_type'] = inquiry; req['object'] = NULL
    ///     if ifid is None: req['Ifid'] = NULL
    ///     else:
    ///         b = uuidtup_to_bin(ifid); req['Ifid']['Uuid'] = b[:16]
    ///         req['Ifid']['VersMajor'] = unpack('<H', b[16:18])[0]
    ///         req['Ifid']['VersMinor'] = unpack('<H', b[18:])[0]
    ///     req['vers_option'] = vers; req['entry_handle'] = epm.ept_lookup_handle_t()
    ///     req['max_ents'] = max_ents
    ///     return req.getData().hex()
    /// LOOKUP_ALL = lookup()
    /// LOOKUP_NSPI = lookup(('F5CC5A18-4264-101A-8C59-08002B2F8426', '56.0'),
    ///                      epm.RPC_C_EP_MATCH_BY_IF, epm.RPC_C_VERS_COMPATIBLE, 1)
    /// ```
    ///
    /// impacket pads with 0xab (after the 75-octet tower), which a reader must ignore.
    pub const MAP_EMSMDB: &str = "0100000000000000000000000000000000000000020000004b0000004b000000\
        050013000d00dbf1a447ca6710b31f00dd010662da00000200510013000d045d888aeb1cc9119fe808002b\
        10486002000200000001000b0200000001000702000000010009040000000000ab00000000000000000000\
        0000000000000000000004000000";
    pub const MAP_NSPI: &str = "0100000000000000000000000000000000000000020000004b0000004b000000\
        050013000d185accf564421a108c5908002b2f842638000200000013000d045d888aeb1cc9119fe808002b\
        10486002000200000001000b0200000001000702000000010009040000000000ab00000000000000000000\
        0000000000000000000004000000";
    pub const LOOKUP_ALL: &str =
        "000000000000000000000000010000000000000000000000000000000000000000000000f4010000";
    pub const LOOKUP_NSPI: &str =
        "010000000000000077760000185accf564421a108c5908002b2f84263800000002\
        000000000000000000000000000000000000000000000001000000";

    /// The octets of a hex string (anything but hex digits skipped; an odd digit at the
    /// end ignored).
    pub fn octets(hex: &str) -> Vec<u8> {
        let digits: Vec<u8> = hex
            .bytes()
            .filter_map(|c| (c as char).to_digit(16).map(|d| d as u8))
            .collect();
        digits.chunks_exact(2).map(|p| p[0] << 4 | p[1]).collect()
    }
}

/// An ept_lookup answer read back: handle, (object, annotation, tower) entries, status.
pub type LookupAnswer = (ContextHandle, Vec<(Uuid, Vec<u8>, Tower)>, u32);

/// An ept_map answer read back: handle, towers, status.
pub type MapAnswer = (ContextHandle, Vec<Tower>, u32);

fn tower_decoded(octets: Option<Vec<u8>>) -> Result<Tower, NdrError> {
    let octets = octets.ok_or(NdrError::Invalid("epm: NULL tower in an answer"))?;
    Tower::decode(&octets).map_err(|_| NdrError::Invalid("epm: tower does not decode"))
}

fn count_matches(num: u32, len: usize) -> Result<(), NdrError> {
    match usize::try_from(num) == Ok(len) {
        true => Ok(()),
        false => Err(NdrError::Invalid("epm: count differs from the array")),
    }
}

/// Reads the out parameters of ept_lookup (what a client does with an answer); the
/// whole stub must be used.
pub fn decode_lookup_response(stub: &[u8]) -> Result<LookupAnswer, NdrError> {
    let mut r = NdrReader::with_limits(stub, LIMITS);
    let handle = r.context_handle()?;
    let num = r.u32()?;
    let heads = r.conformant_varying_array(28, |r| {
        Ok((r.uuid()?, r.unique_ptr()?, r.varying_string(64)?))
    })?;
    count_matches(num, heads.len())?;
    let mut entries = Vec::with_capacity(heads.len());
    for (object, tower, annotation) in heads {
        let tower = tower_decoded(r.pointee(tower, read_twr)?)?;
        entries.push((object, annotation, tower));
    }
    let status = r.u32()?;
    if !r.is_empty() {
        return Err(NdrError::Invalid("epm: octets after the status"));
    }
    Ok((handle, entries, status))
}

/// Reads the out parameters of ept_map; the whole stub must be used.
pub fn decode_map_response(stub: &[u8]) -> Result<MapAnswer, NdrError> {
    let mut r = NdrReader::with_limits(stub, LIMITS);
    let handle = r.context_handle()?;
    let num = r.u32()?;
    let ids = r.conformant_varying_array(4, NdrReader::unique_ptr)?;
    count_matches(num, ids.len())?;
    let mut towers = Vec::with_capacity(ids.len());
    for id in ids {
        towers.push(tower_decoded(r.pointee(id, read_twr)?)?);
    }
    let status = r.u32()?;
    if !r.is_empty() {
        return Err(NdrError::Invalid("epm: octets after the status"));
    }
    Ok((handle, towers, status))
}

#[cfg(test)]
mod tests {
    use super::impacket::*;
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn ctx(connection_id: u64) -> CallContext<'static> {
        CallContext::unauthenticated(connection_id)
    }

    use crate::dcerpc::emsmdb::EMSMDB_SYNTAX as EMSMDB;
    use crate::dcerpc::nspi::NSPI_SYNTAX as NSPI;
    use crate::dcerpc::rfr::RFR_SYNTAX as RFR;

    fn epm() -> EpmInterface {
        let map = EndpointMap::new(Ipv4Addr::new(192, 0, 2, 10));
        map.register(EMSMDB, "Exchange EMSMDB", 6001);
        map.register(RFR, "Exchange RFR", 6002);
        map.register(NSPI, "Exchange NSPI", 6004);
        EpmInterface::new(Arc::new(map))
    }

    fn response(outcome: CallOutcome) -> Vec<u8> {
        match outcome {
            CallOutcome::Response(stub) => stub,
            other => panic!("{other:?}"),
        }
    }

    /// Our ept_map answer to MAP_EMSMDB; impacket parses it as
    ///
    /// ```python
    /// r = epm.ept_mapResponse(bytes.fromhex(MAP_RESPONSE))
    /// # r['entry_handle'].isNull() True, r['num_towers'] 1, r['status'] 0
    /// fl = epm.EPMTower(b''.join(r['ITowers'][0]['Data']['tower_octet_string']))['Floors']
    /// # str(fl[0]) 'A4F1DB00-CA47-1067-B31F-00DD010662DA v0.81'
    /// # str(fl[1]) '8A885D04-1CEB-11C9-9FE8-08002B104860 v2.0', fl[2] protocol 0x0b
    /// # port (big-endian) 6001, address 192.0.2.10
    /// ```
    const MAP_RESPONSE: &str = "0000000000000000000000000000000000000000010000000400000000000000\
        01000000000002004b0000004b000000050013000d00dbf1a447ca6710b31f00dd010662da000002005100\
        13000d045d888aeb1cc9119fe808002b10486002000200000001000b020000000100070200177101000904\
        00c000020a0000000000";

    /// The ept_lookup answer to LOOKUP_ALL; impacket parses it as
    ///
    /// ```python
    /// r = epm.ept_lookupResponse(bytes.fromhex(LOOKUP_RESPONSE))
    /// # handle uuid 01000000000000408000000000000001, num_ents 3, status 0
    /// for i in range(r['num_ents']):
    ///     e = r['entries'][i]
    ///     fl = epm.EPMTower(b''.join(e['tower']['tower_octet_string']))['Floors']
    /// # nil object; b'Exchange EMSMDB\x00' A4F1DB00-... v0.81 port 6001;
    /// # b'Exchange RFR\x00' 1544F5E0-... v1.0 port 6002;
    /// # b'Exchange NSPI\x00' F5CC5A18-... v56.0 port 6004
    /// ```
    const LOOKUP_RESPONSE: &str = "0000000000000000000000000000000000000000030000\
        00f401000000000000030000000000000000000000000000000000000000000200000000001000000045786368\
        616e676520454d534d4442000000000000000000000000000000000004000200000000000d00000045786368\
        616e676520524652000000000000000000000000000000000000000008000200000000000e00000045786368\
        616e6765204e5350490000004b0000004b000000050013000d00dbf1a447ca6710b31f00dd010662da000002\
        00510013000d045d888aeb1cc9119fe808002b10486002000200000001000b02000000010007020017710100\
        090400c000020a004b0000004b000000050013000de0f544153c61d11193df00c04fd7bd0901000200000013\
        000d045d888aeb1cc9119fe808002b10486002000200000001000b0200000001000702001772010009040\
        0c000020a004b0000004b000000050013000d185accf564421a108c5908002b2f8426380002000000130\
        00d045d888aeb1cc9119fe808002b10486002000200000001000b02000000010007020017740100090400c0\
        00020a0000000000";

    /// The answer with nothing found, ept_map's and ept_lookup's alike: NULL handle, count
    /// 0, an empty conformant-varying array of `max` elements, EPT_S_NOT_REGISTERED.
    /// impacket reads both:
    ///
    /// ```python
    /// b = b'\0' * 20 + struct.pack('<IIIII', 0, 500, 0, 0, 0x16c9a0d6)
    /// r = epm.ept_lookupResponse(b)  # isNull() True, num_ents 0, status 0x16c9a0d6
    /// b = b'\0' * 20 + struct.pack('<IIIII', 0, 4, 0, 0, 0x16c9a0d6)
    /// r = epm.ept_mapResponse(b)     # isNull() True, num_towers 0, status 0x16c9a0d6
    /// ```
    fn not_registered(max: u32) -> Vec<u8> {
        let mut stub = vec![0; 20];
        for v in [0, max, 0, 0, EPT_S_NOT_REGISTERED] {
            stub.extend_from_slice(&v.to_le_bytes());
        }
        stub
    }

    fn read_lookup_response(stub: &[u8]) -> LookupAnswer {
        decode_lookup_response(stub).unwrap()
    }

    fn read_map_response(stub: &[u8]) -> MapAnswer {
        decode_map_response(stub).unwrap()
    }

    #[test]
    fn towers_encode_as_impacket_builds_them_and_decode_bounded() {
        let request = hex(MAP_EMSMDB);
        let impacket_tower = &request[32..32 + 75];
        let ours = Tower::ncacn_ip_tcp(EMSMDB, SyntaxId::NDR20, 0, Ipv4Addr::UNSPECIFIED);
        assert_eq!(ours.to_bytes(), impacket_tower);
        let tower = Tower::decode(impacket_tower).unwrap();
        assert_eq!(tower, ours);
        assert_eq!(tower.interface(), Some(EMSMDB));
        assert_eq!(tower.transfer_syntax(), Some(SyntaxId::NDR20));
        assert!(tower.is_ncacn_ip_tcp());
        assert_eq!(tower.tcp_endpoint(), Some((0, Ipv4Addr::UNSPECIFIED)));
        let at = Tower::ncacn_ip_tcp(NSPI, SyntaxId::NDR20, 6004, Ipv4Addr::new(10, 1, 2, 3));
        assert_eq!(at.floors[3].rhs, [0x17, 0x74]);
        assert_eq!(at.tcp_endpoint(), Some((6004, Ipv4Addr::new(10, 1, 2, 3))));
        // Short, trailing octets, too many floors, a floor longer than the tower.
        assert!(Tower::decode(&impacket_tower[..74]).is_err());
        let mut long = impacket_tower.to_vec();
        long.push(0);
        assert!(Tower::decode(&long).is_err());
        assert!(Tower::decode(&[17, 0]).is_err());
        assert_eq!(
            Tower::decode(&[1, 0, 0xff, 0xff]),
            Err(DecodeError::Incomplete { needed: 0xffff })
        );
        // A floor that is not a syntax floor.
        assert_eq!(Floor::protocol(FLOOR_TCP_PORT, &[0, 135]).as_syntax(), None);
        let mut odd = Floor::syntax(NSPI);
        odd.rhs.push(0);
        assert_eq!(odd.as_syntax(), None);
    }

    #[test]
    fn impacket_map_request_decodes() {
        let req = MapRequest::decode(&hex(MAP_EMSMDB)).unwrap();
        assert_eq!(req.object, Some(Uuid::NIL));
        assert_eq!(req.entry_handle, ContextHandle::NIL);
        assert_eq!(req.max_towers, 4);
        let tower = Tower::decode(&req.tower.unwrap()).unwrap();
        assert_eq!(tower.interface(), Some(EMSMDB));
    }

    #[test]
    fn ept_map_answers_the_registered_port_as_impacket_reads_it() {
        let epm = epm();
        let stub = response(epm.call(&ctx(1), OPNUM_EPT_MAP, &hex(MAP_EMSMDB)));
        assert_eq!(stub, hex(MAP_RESPONSE));
        let (handle, towers, status) = read_map_response(&stub);
        assert!(handle.is_nil());
        assert_eq!(status, EPT_S_OK);
        assert_eq!(towers.len(), 1);
        assert_eq!(towers[0].interface(), Some(EMSMDB));
        assert_eq!(
            towers[0].tcp_endpoint(),
            Some((6001, Ipv4Addr::new(192, 0, 2, 10)))
        );
    }

    #[test]
    fn the_client_requests_get_the_answers_impacket_requests_get() {
        // Referent ids and padding differ from impacket's; what the server reads does not.
        let same = |ours: Vec<u8>, theirs: &str, opnum| {
            let (a, b) = (epm(), epm());
            assert_eq!(
                response(a.call(&ctx(1), opnum, &ours)),
                response(b.call(&ctx(1), opnum, &hex(theirs))),
            );
        };
        same(map_request(EMSMDB, 4), MAP_EMSMDB, OPNUM_EPT_MAP);
        same(map_request(NSPI, 4), MAP_NSPI, OPNUM_EPT_MAP);
        same(
            lookup_request(None, &ContextHandle::NIL, 500),
            LOOKUP_ALL,
            OPNUM_EPT_LOOKUP,
        );
        same(
            lookup_request(Some(NSPI), &ContextHandle::NIL, 1),
            LOOKUP_NSPI,
            OPNUM_EPT_LOOKUP,
        );
        let stub = response(epm().call(&ctx(1), OPNUM_EPT_MAP, &map_request(NSPI, 4)));
        let (_, towers, status) = decode_map_response(&stub).unwrap();
        assert_eq!((status, towers[0].interface()), (EPT_S_OK, Some(NSPI)));
    }

    #[test]
    fn ept_map_of_an_unregistered_interface_or_version() {
        let map = EndpointMap::new(Ipv4Addr::LOCALHOST);
        map.register(EMSMDB, "", 6001);
        // NSPI v57.0 and v56.1 registered, asked v56.0: only the 56.x one answers.
        map.register(SyntaxId::new(NSPI.uuid, 57, 0), "", 7000);
        let epm = EpmInterface::new(Arc::new(map));
        let stub = response(epm.call(&ctx(1), OPNUM_EPT_MAP, &hex(MAP_NSPI)));
        assert_eq!(stub, not_registered(4));
        let (handle, towers, status) = read_map_response(&stub);
        assert!(handle.is_nil() && towers.is_empty());
        assert_eq!(status, EPT_S_NOT_REGISTERED);
        epm.map()
            .register(SyntaxId::new(NSPI.uuid, 56, 1), "", 7001);
        let stub = response(epm.call(&ctx(1), OPNUM_EPT_MAP, &hex(MAP_NSPI)));
        let (_, towers, status) = read_map_response(&stub);
        assert_eq!(status, EPT_S_OK);
        assert_eq!(towers[0].tcp_endpoint().map(|e| e.0), Some(7001));
        // Asking for a minor above the registered one finds nothing.
        let mut newer = hex(MAP_EMSMDB);
        newer[32 + 2 + 2 + 19 + 2] = 82; // floor 1 rhs: minor 82
        let stub = response(epm.call(&ctx(1), OPNUM_EPT_MAP, &newer));
        assert_eq!(read_map_response(&stub).2, EPT_S_NOT_REGISTERED);
        // A named-pipe tower (floor 4 = 0x0f) is not mapped.
        let mut pipe = hex(MAP_EMSMDB);
        pipe[32 + 2 + 25 + 25 + 7 + 2] = 0x0f;
        let tower = Tower::decode(&pipe[32..32 + 75]).unwrap();
        assert!(!tower.is_ncacn_ip_tcp() && tower.interface() == Some(EMSMDB));
        let stub = response(epm.call(&ctx(1), OPNUM_EPT_MAP, &pipe));
        assert_eq!(read_map_response(&stub).2, EPT_S_NOT_REGISTERED);
        // max_towers 0: found, nothing returned.
        let mut zero = hex(MAP_EMSMDB);
        zero[128] = 0;
        let stub = response(epm.call(&ctx(1), OPNUM_EPT_MAP, &zero));
        let (_, towers, status) = read_map_response(&stub);
        assert!(towers.is_empty());
        assert_eq!(status, EPT_S_OK);
    }

    #[test]
    fn ept_lookup_answers_the_last_page_with_a_null_handle() {
        let epm = epm();
        // impacket's hept_lookup first call: all elements, 500 at most. Everything fits,
        // so the handle comes back NULL and status 0: impacket stops at a NULL handle
        // and raises on a non-zero status.
        let stub = response(epm.call(&ctx(1), OPNUM_EPT_LOOKUP, &hex(LOOKUP_ALL)));
        assert_eq!(stub, hex(LOOKUP_RESPONSE));
        let (handle, entries, status) = read_lookup_response(&stub);
        assert!(handle.is_nil());
        assert_eq!(status, EPT_S_OK);
        let names: Vec<&[u8]> = entries.iter().map(|e| e.1.as_slice()).collect();
        assert_eq!(
            names,
            [&b"Exchange EMSMDB"[..], b"Exchange RFR", b"Exchange NSPI"]
        );
        assert!(entries.iter().all(|e| e.0 == Uuid::NIL));
        assert_eq!(entries[2].2.tcp_endpoint().map(|e| e.0), Some(6004));
        assert_eq!(epm.open_lookups(1), 0, "no lookup is kept open");
    }

    fn handle_bytes(handle: ContextHandle) -> Vec<u8> {
        let mut w = NdrWriter::new();
        w.put_context_handle(&handle);
        w.into_bytes()
    }

    /// LOOKUP_ALL with another max_ents and entry handle.
    fn lookup_all(max_ents: u32, handle: ContextHandle) -> Vec<u8> {
        let mut stub = hex(LOOKUP_ALL);
        stub[16..36].copy_from_slice(&handle_bytes(handle));
        stub[36..40].copy_from_slice(&max_ents.to_le_bytes());
        stub
    }

    #[test]
    fn ept_lookup_pages_of_two() {
        let epm = epm();
        let first = read_lookup_response(&response(epm.call(
            &ctx(7),
            OPNUM_EPT_LOOKUP,
            &lookup_all(2, ContextHandle::NIL),
        )));
        assert_eq!((first.1.len(), first.2), (2, EPT_S_OK));
        let handle = first.0;
        let second = read_lookup_response(&response(epm.call(
            &ctx(7),
            OPNUM_EPT_LOOKUP,
            &lookup_all(2, handle),
        )));
        // The last page: a NULL handle, and the lookup is over.
        assert_eq!(
            (second.0, second.1.len(), second.2),
            (ContextHandle::NIL, 1, EPT_S_OK)
        );
        assert_eq!(second.1[0].1, b"Exchange NSPI");
        assert_eq!(epm.open_lookups(7), 0);
        // The handle is gone now.
        assert_eq!(
            epm.call(&ctx(7), OPNUM_EPT_LOOKUP, &lookup_all(2, handle)),
            CONTEXT_MISMATCH
        );
    }

    #[test]
    fn ept_lookup_by_interface_and_version() {
        let epm = epm();
        epm.map()
            .register(SyntaxId::new(NSPI.uuid, 57, 0), "newer", 7000);
        // impacket: match by interface, compatible versions of NSPI v56.0, 1 at most.
        let stub = response(epm.call(&ctx(1), OPNUM_EPT_LOOKUP, &hex(LOOKUP_NSPI)));
        let (handle, entries, status) = read_lookup_response(&stub);
        assert_eq!(status, EPT_S_OK);
        assert!(handle.is_nil(), "one match: the only page is the last");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].2.interface(), Some(NSPI));
        let req = LookupRequest::decode(&hex(LOOKUP_NSPI)).unwrap();
        assert_eq!(req.interface, Some(NSPI));
        let registered = |syntax| Registration {
            syntax,
            annotation: String::new(),
            port: 1,
        };
        let at = |major, minor| registered(SyntaxId::new(NSPI.uuid, major, minor));
        let with = |inquiry_type, vers_option, object| LookupRequest {
            inquiry_type,
            vers_option,
            object,
            ..req.clone()
        };
        let compatible = with(RPC_C_EP_MATCH_BY_IF, RPC_C_VERS_COMPATIBLE, None);
        assert!(compatible.matches(&at(56, 0)) && compatible.matches(&at(56, 3)));
        assert!(!compatible.matches(&at(57, 0)) && !compatible.matches(&registered(EMSMDB)));
        let exact = with(RPC_C_EP_MATCH_BY_IF, RPC_C_VERS_EXACT, None);
        assert!(exact.matches(&at(56, 0)) && !exact.matches(&at(56, 1)));
        let major = with(RPC_C_EP_MATCH_BY_IF, RPC_C_VERS_MAJOR_ONLY, None);
        assert!(major.matches(&at(56, 9)) && !major.matches(&at(55, 0)));
        let upto = with(RPC_C_EP_MATCH_BY_IF, RPC_C_VERS_UPTO, None);
        assert!(upto.matches(&at(55, 9)) && upto.matches(&at(56, 0)) && !upto.matches(&at(56, 1)));
        let all = with(RPC_C_EP_MATCH_BY_IF, RPC_C_VERS_ALL, None);
        assert!(all.matches(&at(1, 1)));
        assert!(!with(RPC_C_EP_MATCH_BY_IF, 9, None).matches(&at(56, 0)));
        let object = Uuid::new(1, 2, 3, [4; 8]);
        assert!(!with(RPC_C_EP_MATCH_BY_OBJ, 1, Some(object)).matches(&at(56, 0)));
        assert!(with(RPC_C_EP_MATCH_BY_OBJ, 1, Some(Uuid::NIL)).matches(&registered(EMSMDB)));
        assert!(with(RPC_C_EP_MATCH_BY_BOTH, RPC_C_VERS_EXACT, None).matches(&at(56, 0)));
        assert!(!with(RPC_C_EP_MATCH_BY_BOTH, RPC_C_VERS_EXACT, Some(object)).matches(&at(56, 0)));
        assert!(!with(4, 1, None).matches(&at(56, 0)));
        // Nothing matches: NULL handle, not registered, no lookup kept.
        let none = response(epm.call(&ctx(2), OPNUM_EPT_LOOKUP, &{
            let mut s = hex(LOOKUP_ALL);
            s[0] = RPC_C_EP_MATCH_BY_OBJ as u8;
            s[4] = 1; // object referent id, the UUID follows
            s.splice(8..8, Uuid::new(9, 9, 9, [9; 8]).to_bytes());
            s
        }));
        let (handle, entries, status) = read_lookup_response(&none);
        assert!(handle.is_nil() && entries.is_empty());
        assert_eq!(status, EPT_S_NOT_REGISTERED);
        assert_eq!(epm.open_lookups(2), 0);
    }

    #[test]
    fn lookup_handles_belong_to_their_connection_until_freed_or_run_down() {
        let epm = epm();
        let open = |connection| {
            read_lookup_response(&response(epm.call(
                &ctx(connection),
                OPNUM_EPT_LOOKUP,
                &lookup_all(1, ContextHandle::NIL),
            )))
            .0
        };
        let handle = open(1);
        // Another connection may not use it, nor free it.
        assert_eq!(
            epm.call(&ctx(2), OPNUM_EPT_LOOKUP, &lookup_all(1, handle)),
            CONTEXT_MISMATCH
        );
        let free = |connection, handle| {
            epm.call(
                &ctx(connection),
                OPNUM_EPT_LOOKUP_HANDLE_FREE,
                &handle_bytes(handle),
            )
        };
        assert_eq!(free(2, handle), CONTEXT_MISMATCH);
        // ept_lookup_handle_free: NULL handle back, status 0.
        let mut freed = handle_bytes(ContextHandle::NIL);
        freed.extend_from_slice(&[0; 4]);
        assert_eq!(free(1, handle), CallOutcome::Response(freed.clone()));
        assert_eq!(epm.open_lookups(1), 0);
        assert_eq!(free(1, handle), CONTEXT_MISMATCH);
        assert_eq!(free(1, ContextHandle::NIL), CallOutcome::Response(freed));
        // A handle never issued.
        let forged = ContextHandle::new(Uuid::new(7, 7, 7, [7; 8]));
        assert_eq!(
            epm.call(&ctx(1), OPNUM_EPT_LOOKUP, &lookup_all(1, forged)),
            CONTEXT_MISMATCH
        );
        // Rundown ends a connection's lookups, not another's.
        open(1);
        open(1);
        let kept = open(3);
        assert_eq!(epm.open_lookups(1), 2);
        epm.rundown(1);
        assert_eq!((epm.open_lookups(1), epm.open_lookups(3)), (0, 1));
        assert!(!kept.is_nil());
        // A connection holds at most MAX_LOOKUPS_PER_CONNECTION.
        let handles: Vec<_> = (0..MAX_LOOKUPS_PER_CONNECTION).map(|_| open(4)).collect();
        assert!(handles.iter().all(|h| !h.is_nil()));
        let refused = read_lookup_response(&response(epm.call(
            &ctx(4),
            OPNUM_EPT_LOOKUP,
            &lookup_all(1, ContextHandle::NIL),
        )));
        assert_eq!(
            (refused.0, refused.2),
            (ContextHandle::NIL, EPT_S_CANT_PERFORM_OP)
        );
        // Handles are never reused.
        let mut all: Vec<_> = handles.iter().map(|h| h.uuid).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), MAX_LOOKUPS_PER_CONNECTION);
    }

    #[test]
    fn bad_stubs_fault_with_bad_stub_data() {
        let epm = epm();
        let bad = CallOutcome::Fault(FaultStatus::BAD_STUB_DATA);
        let map = hex(MAP_EMSMDB);
        let call = |opnum, stub: &[u8]| epm.call(&ctx(1), opnum, stub);
        // Empty and truncated stubs, of every implemented opnum.
        for opnum in [
            OPNUM_EPT_LOOKUP,
            OPNUM_EPT_MAP,
            OPNUM_EPT_LOOKUP_HANDLE_FREE,
        ] {
            assert_eq!(call(opnum, &[]), bad, "opnum {opnum}");
        }
        for cut in [3, 20, 30, 100, 127, 131] {
            assert_eq!(call(OPNUM_EPT_MAP, &map[..cut]), bad, "cut at {cut}");
        }
        let lookup = hex(LOOKUP_ALL);
        assert_eq!(call(OPNUM_EPT_LOOKUP, &lookup[..39]), bad);
        // max_towers / max_ents above range(0,500).
        let mut over = map.clone();
        over[128..132].copy_from_slice(&501u32.to_le_bytes());
        assert_eq!(call(OPNUM_EPT_MAP, &over), bad);
        assert_eq!(
            call(OPNUM_EPT_LOOKUP, &lookup_all(501, ContextHandle::NIL)),
            bad
        );
        // tower_length different from the conformance.
        let mut lying = map.clone();
        lying[28] = 0x4a;
        assert_eq!(call(OPNUM_EPT_MAP, &lying), bad);
        // A conformance beyond the stub, and beyond MAX_TOWER_OCTETS.
        let mut beyond = map.clone();
        beyond[24..28].copy_from_slice(&0x300u32.to_le_bytes());
        beyond[28..32].copy_from_slice(&0x300u32.to_le_bytes());
        assert!(matches!(
            MapRequest::decode(&beyond),
            Err(NdrError::CountBeyondInput { count: 0x300, .. })
        ));
        assert_eq!(call(OPNUM_EPT_MAP, &beyond), bad);
        let mut huge = map[..32].to_vec();
        huge[24..28].copy_from_slice(&2000u32.to_le_bytes());
        huge[28..32].copy_from_slice(&2000u32.to_le_bytes());
        huge.resize(32 + 2000 + 24, 0);
        assert!(matches!(
            MapRequest::decode(&huge),
            Err(NdrError::CountOverLimit { count: 2000, .. })
        ));
        assert_eq!(call(OPNUM_EPT_MAP, &huge), bad);
        // The tower pointer aliasing the object pointer (both referent id 1).
        let mut alias = map.clone();
        alias[20] = 1;
        assert_eq!(call(OPNUM_EPT_MAP, &alias), bad);
        // A NULL tower is well formed: nothing to map.
        let mut null_tower = map[..20].to_vec();
        null_tower.extend_from_slice(&[0; 4]);
        null_tower.extend_from_slice(&map[108..]);
        let stub = response(call(OPNUM_EPT_MAP, &null_tower));
        assert_eq!(read_map_response(&stub).2, EPT_S_NOT_REGISTERED);
        // A malformed tower inside a well-formed stub is not stub data: not registered.
        let mut floors = map.clone();
        floors[32] = 9;
        assert!(MapRequest::decode(&floors).is_ok());
        let stub = response(call(OPNUM_EPT_MAP, &floors));
        assert_eq!(read_map_response(&stub).2, EPT_S_NOT_REGISTERED);
        // An entry handle on ept_map (it never issues one).
        let mut handle = map.clone();
        handle[120] = 1;
        assert_eq!(call(OPNUM_EPT_MAP, &handle), CONTEXT_MISMATCH);
    }

    #[test]
    fn every_truncation_and_octet_flip_of_the_vectors_answers() {
        let epm = epm();
        for (opnum, vector) in [(OPNUM_EPT_MAP, MAP_EMSMDB), (OPNUM_EPT_LOOKUP, LOOKUP_NSPI)] {
            let stub = hex(vector);
            for cut in 0..stub.len() {
                assert!(matches!(
                    epm.call(&ctx(1), opnum, &stub[..cut]),
                    CallOutcome::Fault(_)
                ));
            }
            for at in 0..stub.len() {
                for flip in [0x01, 0x80, 0xff] {
                    let mut bent = stub.clone();
                    bent[at] ^= flip;
                    let _ = epm.call(&ctx(1), opnum, &bent);
                }
            }
        }
    }

    #[test]
    fn opnums_without_service() {
        let epm = epm();
        assert_eq!(epm.syntax(), EPM_SYNTAX);
        assert_eq!(
            EPM_SYNTAX.to_string(),
            "e1af8308-5d1f-11c9-91a4-08002b14a0fa v3.0"
        );
        assert_eq!((epm.name(), epm.opnum_count()), ("epm", 7));
        for opnum in [
            OPNUM_EPT_INSERT,
            OPNUM_EPT_DELETE,
            OPNUM_EPT_INQ_OBJECT,
            OPNUM_EPT_MGMT_DELETE,
        ] {
            assert_eq!(
                epm.call(&ctx(1), opnum, &[0; 64]),
                CallOutcome::Fault(FaultStatus(0x6e4))
            );
        }
        assert_eq!(
            epm.call(&ctx(1), 7, &[]),
            CallOutcome::Fault(FaultStatus::NCA_S_OP_RNG_ERROR)
        );
    }

    #[test]
    fn annotations_are_cut_to_63_octets_at_a_character() {
        let map = EndpointMap::new(Ipv4Addr::LOCALHOST);
        map.register(NSPI, &"é".repeat(40), 1);
        map.register(NSPI, "before\0after", 2);
        let entries = map.entries();
        assert_eq!(entries[0].annotation, "é".repeat(31));
        assert_eq!(entries[1].annotation, "before");
        assert_eq!(map.ip(), Ipv4Addr::LOCALHOST);
    }
}
