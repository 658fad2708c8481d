//! What the address-book provider reaches: the KDC, the Exchange server's referral service
//! (RFR) and each global catalog's NSPI, as byte streams. [`RpcLink`] is a DCE/RPC
//! association over one such stream ([`crate::dcerpc::client`] does the protocol; this
//! only carries its octets). [`InProcessSite`] plays every host in process on the lab's
//! own endpoints and KDC; the lab plays them over sockets.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness_wire::dcerpc::{ContextElement, SyntaxId};

use super::timeline::{GcState, Topology};
use crate::dcerpc::client::{
    win32_status, BindSecurity, ClientAssociation, ClientConfig, ClientEvent,
};
use crate::dcerpc::endpoints::{ntlm_for_world, RpcEndpoints, RpcLabConfig};
use crate::dcerpc::kerberos::{KerberosServerFactory, OfferedSecurity};
use crate::dcerpc::nspi::{AddressBook, Nspi};
use crate::dcerpc::server::{Endpoint, EndpointConfig};
use crate::kerberos::{Kdc, KdcConfig, RealmDb};
use crate::session::{Output, ServerSession};
use crate::world::World;

/// Why a connection or a call did not give an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Nothing listens at the host (or it is not known).
    #[error("connection refused")]
    Refused,
    /// The server closed the connection or it was reset.
    #[error("connection closed")]
    Closed,
    /// The server faulted the call (or the bind) with this Win32 status.
    #[error("fault 0x{0:X}")]
    Fault(u32),
    /// The bind was refused (bind_nak).
    #[error("bind refused")]
    BindNak,
    /// The server's octets broke the protocol, or the client could not send.
    #[error("protocol: {0}")]
    Protocol(String),
    /// No answer within the exchange's bound.
    #[error("no answer")]
    Silent,
}

/// A byte stream to one host's RPC endpoint.
pub trait Wire: Send {
    fn send(&mut self, bytes: &[u8]) -> Result<(), LinkError>;
    /// The next octets the server sent (at least one), or why none will come.
    fn recv(&mut self) -> Result<Vec<u8>, LinkError>;
}

/// Reads one exchange takes at most (a bind's legs, a fragmented response).
const MAX_READS: usize = 256;

/// A DCE/RPC association over a [`Wire`], bound to one interface on context 0.
pub struct RpcLink {
    wire: Box<dyn Wire>,
    association: ClientAssociation,
}

impl RpcLink {
    /// Binds `syntax` over `wire` with `security` (its legs answered on the same wire).
    pub fn bind(
        mut wire: Box<dyn Wire>,
        syntax: SyntaxId,
        security: BindSecurity,
    ) -> Result<RpcLink, LinkError> {
        let mut association = ClientAssociation::new(ClientConfig::default());
        let context = ContextElement {
            context_id: 0,
            abstract_syntax: syntax,
            transfer_syntaxes: vec![SyntaxId::NDR20],
        };
        let bind = association
            .bind(&[context], Some(security))
            .map_err(|e| LinkError::Protocol(e.to_string()))?;
        wire.send(&bind)?;
        let mut link = RpcLink { wire, association };
        link.pump(|event, wire| match event {
            ClientEvent::Send(bytes) => wire.send(&bytes).map(|()| false),
            ClientEvent::BindAcked(ack) => match ack.results.first() {
                Some(r) if r.result == harness_wire::dcerpc::AckResult::ACCEPTANCE => Ok(true),
                _ => Err(LinkError::BindNak),
            },
            ClientEvent::BindNak { .. } => Err(LinkError::BindNak),
            ClientEvent::Fault { status, .. } => Err(LinkError::Fault(win32_status(status))),
            ClientEvent::Shutdown => Err(LinkError::Closed),
            _ => Ok(false),
        })?;
        Ok(link)
    }

    /// One call on context 0: the response stub.
    pub fn call(&mut self, opnum: u16, stub: &[u8]) -> Result<Vec<u8>, LinkError> {
        let call = self
            .association
            .call(0, opnum, None, stub)
            .map_err(|e| LinkError::Protocol(e.to_string()))?;
        for f in &call.fragments {
            self.wire.send(f)?;
        }
        let mut answer = None;
        self.pump(|event, _| match event {
            ClientEvent::Response { call_id, stub, .. } if call_id == call.call_id => {
                answer = Some(stub);
                Ok(true)
            }
            ClientEvent::Fault { status, .. } => Err(LinkError::Fault(win32_status(status))),
            ClientEvent::Shutdown => Err(LinkError::Closed),
            _ => Ok(false),
        })?;
        answer.ok_or(LinkError::Silent)
    }

    /// Reads until `on_event` says done (true) for an event, at most [`MAX_READS`] reads;
    /// the rest of that read's events are handled too (an auth3 leg after a bind_ack).
    fn pump(
        &mut self,
        mut on_event: impl FnMut(ClientEvent, &mut dyn Wire) -> Result<bool, LinkError>,
    ) -> Result<(), LinkError> {
        for _ in 0..MAX_READS {
            let bytes = self.wire.recv()?;
            let mut events = Vec::new();
            self.association
                .receive(&bytes, &mut events)
                .map_err(|e| LinkError::Protocol(e.to_string()))?;
            let mut done = false;
            for event in events {
                done |= on_event(event, self.wire.as_mut())?;
            }
            if done {
                return Ok(());
            }
        }
        Err(LinkError::Silent)
    }
}

/// The hosts the provider reaches.
pub trait DirectoryReach {
    /// One KDC exchange.
    fn kdc(&mut self, request: &[u8]) -> Result<Vec<u8>, String>;
    /// A connection to the Exchange server's RPC endpoint (the referral service).
    fn exchange(&mut self) -> Result<Box<dyn Wire>, LinkError>;
    /// A connection to the NSPI endpoint of the global catalog named `fqdn`.
    fn gc(&mut self, fqdn: &str) -> Result<Box<dyn Wire>, LinkError>;
    /// The clock Kerberos messages carry (Unix seconds).
    fn now(&self) -> i64;
}

/// A directory the timeline can change: the hosts follow `topology`; `reset` names a
/// global catalog whose open connections break.
pub trait DirectorySite: DirectoryReach {
    fn apply(&mut self, topology: &Topology, reset: Option<&str>);
}

/// One global catalog in process: its NSPI endpoint (NTLM and Kerberos with only its own
/// `exchangeAB` key) and its state.
struct GcHost {
    endpoint: Arc<Endpoint>,
    nspi: Arc<Nspi>,
    state: GcState,
    /// Bumped by a reset or an outage: connections opened before it are broken.
    generation: u64,
}

/// The global catalogs by FQDN, shared with the connections made to them.
type Hosts = Arc<Mutex<BTreeMap<String, GcHost>>>;

/// Every host of the directory in process: the lab's KDC core, the Exchange endpoint's
/// referral service and one NSPI endpoint per global catalog, on a fixed clock.
pub struct InProcessSite {
    world: Arc<World>,
    kdc: Kdc,
    exchange: RpcEndpoints,
    gcs: Hosts,
    now: i64,
}

impl InProcessSite {
    /// The directory of `world` as `topology` says, the clocks at `now`.
    pub fn new(world: &Arc<World>, topology: &Topology, now: i64, seed: u64) -> InProcessSite {
        let mut db = RealmDb::for_world(world);
        let clock_now = now;
        let clock: crate::dcerpc::kerberos::Clock = Arc::new(move || clock_now);
        let mut gcs = BTreeMap::new();
        for gc in topology.names() {
            let (endpoint, nspi) =
                gc_endpoint(world, &mut db, &topology.fqdn(gc), clock.clone(), now, seed);
            gcs.insert(
                topology.fqdn(gc),
                GcHost {
                    endpoint,
                    nspi,
                    state: GcState::Up,
                    generation: 0,
                },
            );
        }
        let mut site = InProcessSite {
            world: world.clone(),
            kdc: Kdc::new(db, KdcConfig::default(), seed ^ 0x4743_4b44),
            exchange: RpcEndpoints::for_world(
                world,
                &RpcLabConfig {
                    // Nothing listens in process; the ports only fill in towers.
                    exchange_port: 6001,
                    exchange_ip: [127, 0, 0, 1],
                    endpoint: EndpointConfig::default(),
                    seed,
                    unix_now: u64::try_from(now).unwrap_or(0),
                    kerberos_clock: None,
                },
            ),
            gcs: Arc::new(Mutex::new(gcs)),
            now,
        };
        site.apply(topology, None);
        site
    }
}

/// The NSPI endpoint of the global catalog `fqdn`: NTLM against the world's directory and
/// Kerberos with only the catalog's own `exchangeAB/<fqdn>` key (its principal is added
/// to `db` if the realm lacks it, with the realm's fixed key for services, so a KDC that
/// learns it later issues tickets this endpoint reads). `now` stamps NTLM challenges;
/// `clock` checks authenticators.
pub fn gc_endpoint(
    world: &Arc<World>,
    db: &mut RealmDb,
    fqdn: &str,
    clock: crate::dcerpc::kerberos::Clock,
    now: i64,
    seed: u64,
) -> (Arc<Endpoint>, Arc<Nspi>) {
    let spn = format!("exchangeAB/{fqdn}");
    if db.entry(&spn).is_none() {
        db.add_service(&spn, false);
    }
    let keytab = db.entry(&spn).cloned().into_iter().collect();
    let seed = seed ^ fnv(fqdn);
    let kerberos = KerberosServerFactory::new(db.realm(), keytab, clock, seed);
    let security = OfferedSecurity::new(vec![
        Arc::new(ntlm_for_world(world, seed, u64::try_from(now).unwrap_or(0))),
        Arc::new(kerberos),
    ]);
    let nspi = Arc::new(Nspi::for_world(world));
    let endpoint = Endpoint::new(
        EndpointConfig::default(),
        vec![nspi.clone()],
        Some(Arc::new(security)),
    );
    (endpoint, nspi)
}

/// A short stable hash, to give each host its own random stream from one seed.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

impl DirectoryReach for InProcessSite {
    fn kdc(&mut self, request: &[u8]) -> Result<Vec<u8>, String> {
        Ok(self.kdc.handle(request, self.now).bytes)
    }

    fn exchange(&mut self) -> Result<Box<dyn Wire>, LinkError> {
        let session = self.exchange.exchange.accept(Duration::ZERO);
        Ok(Box::new(InProcessWire {
            session: Box::new(session),
            watch: None,
        }))
    }

    fn gc(&mut self, fqdn: &str) -> Result<Box<dyn Wire>, LinkError> {
        let hosts = self.gcs.lock().unwrap_or_else(|p| p.into_inner());
        let host = hosts.get(fqdn).ok_or(LinkError::Refused)?;
        if host.state == GcState::Down {
            return Err(LinkError::Refused);
        }
        Ok(Box::new(InProcessWire {
            session: Box::new(host.endpoint.accept(Duration::ZERO)),
            watch: Some((self.gcs.clone(), fqdn.to_string(), host.generation)),
        }))
    }

    fn now(&self) -> i64 {
        self.now
    }
}

impl DirectorySite for InProcessSite {
    fn apply(&mut self, topology: &Topology, reset: Option<&str>) {
        let mut hosts = self.gcs.lock().unwrap_or_else(|p| p.into_inner());
        for gc in topology.names() {
            let fqdn = topology.fqdn(gc);
            let Some(host) = hosts.get_mut(&fqdn) else {
                continue;
            };
            let state = topology.state(gc).unwrap_or(GcState::Down);
            if state != host.state {
                // A directory service that stops has no address book to serve; one that
                // starts again builds it afresh.
                host.nspi.set_address_book(match state {
                    GcState::Up => Some(Arc::new(AddressBook::from_world(&self.world))),
                    _ => None,
                });
                if state == GcState::Down {
                    host.generation += 1;
                }
                host.state = state;
            }
            if reset == Some(gc) {
                host.generation += 1;
            }
        }
        drop(hosts);
        topology.sync_realm(self.kdc.db_mut());
        self.exchange
            .rfr
            .set_referral(topology.rfr_answer(&self.world));
    }
}

/// A connection to an in-process endpoint: octets go straight into its session. A
/// connection to a global catalog breaks when the catalog goes down or is reset.
struct InProcessWire {
    session: Box<dyn ServerSession>,
    watch: Option<(Hosts, String, u64)>,
}

impl InProcessWire {
    fn broken(&self) -> bool {
        self.watch
            .as_ref()
            .is_some_and(|(hosts, fqdn, generation)| {
                let hosts = hosts.lock().unwrap_or_else(|p| p.into_inner());
                hosts
                    .get(fqdn)
                    .is_none_or(|h| h.generation != *generation || h.state == GcState::Down)
            })
    }
}

impl Wire for InProcessWire {
    fn send(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        if self.broken() || self.session.is_closed() {
            return Err(LinkError::Closed);
        }
        self.session.handle_input(Duration::ZERO, bytes);
        Ok(())
    }

    fn recv(&mut self) -> Result<Vec<u8>, LinkError> {
        if self.broken() {
            return Err(LinkError::Closed);
        }
        let mut out = Vec::new();
        while let Some(o) = self.session.poll_output() {
            match o {
                Output::Write(b) => out.extend_from_slice(&b),
                Output::Close => break,
                Output::StartTls => return Err(LinkError::Protocol("StartTls on RPC".into())),
            }
        }
        if out.is_empty() {
            // In process every answer is ready at once: nothing now means nothing ever.
            return Err(if self.session.is_closed() {
                LinkError::Closed
            } else {
                LinkError::Silent
            });
        }
        Ok(out)
    }
}
