//! GC failover over sockets (issue 19): the address-book provider of `harness_core::gc`
//! reaching the lab's KDC over TCP, the Exchange RPC listener's referral service and
//! each global catalog's NSPI listener, while the timeline really stops and starts those
//! listeners and changes the KDC's database.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harness_core::dcerpc::rfr::Rfr;
use harness_core::gc::reach::{DirectoryReach, DirectorySite, LinkError, Wire};
use harness_core::gc::{GcState, Topology};
use harness_core::World;

use crate::serve::gc::GlobalCatalogs;
use crate::serve::kdc::KdcHandle;
use crate::serve::rpc::RpcRole;
use crate::serve::web::kdc_over_tcp;
use crate::Lab;

/// How long one read or connect may take.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The lab's directory as the provider reaches it over sockets.
pub struct SocketSite {
    runtime: tokio::runtime::Handle,
    gcs: Arc<GlobalCatalogs>,
    /// FQDN to (short name, address).
    gc_addrs: BTreeMap<String, (String, SocketAddr)>,
    kdc: Arc<KdcHandle>,
    kdc_addr: SocketAddr,
    /// Another KDC to ask instead of the lab's own (MIT's, for one), and what makes the
    /// timeline's KDC changes there.
    external: Option<ExternalKdc>,
    exchange: SocketAddr,
    rfr: Arc<Rfr>,
    world: Arc<World>,
}

/// A KDC outside the lab serving the same realm and keys (MIT's krb5kdc), and how to
/// add (`true`) or remove (`false`) a service principal in it while it runs.
pub struct ExternalKdc {
    pub addr: SocketAddr,
    pub edit: KdcEditor,
}

/// Adds (`true`) or removes (`false`) the service principal named.
pub type KdcEditor = Box<dyn FnMut(&str, bool) + Send>;

/// Why a lab cannot host the provider.
#[derive(Debug, thiserror::Error)]
#[error("the lab has no {0}: GC failover needs its KDC, Exchange RPC listener and global catalogs")]
pub struct MissingPart(&'static str);

impl SocketSite {
    /// The site of `lab` (which must have a KDC, an Exchange RPC listener and global
    /// catalogs). `runtime` is the lab's: the site is used from a blocking thread.
    pub async fn new(
        lab: &Lab,
        runtime: tokio::runtime::Handle,
    ) -> Result<SocketSite, MissingPart> {
        let gcs = lab.gcs().ok_or(MissingPart("global catalogs"))?.clone();
        let gc_addrs = gcs
            .addrs()
            .await
            .into_iter()
            .map(|(name, fqdn, addr)| (fqdn, (name, addr)))
            .collect();
        Ok(SocketSite {
            runtime,
            gcs,
            gc_addrs,
            kdc: lab.kdc().ok_or(MissingPart("KDC"))?.clone(),
            kdc_addr: lab.kdc_addr().ok_or(MissingPart("KDC"))?,
            external: None,
            exchange: lab
                .rpc_addr(RpcRole::Exchange)
                .ok_or(MissingPart("Exchange RPC listener"))?,
            rfr: lab.rpc().ok_or(MissingPart("RPC endpoints"))?.rfr.clone(),
            world: lab.world().clone(),
        })
    }

    /// Asks `kdc` for tickets instead of the lab's KDC, and makes the timeline's KDC
    /// changes there.
    pub fn with_kdc(mut self, kdc: ExternalKdc) -> SocketSite {
        self.external = Some(kdc);
        self
    }
}

impl DirectoryReach for SocketSite {
    fn kdc(&mut self, request: &[u8]) -> Result<Vec<u8>, String> {
        let addr = self.external.as_ref().map_or(self.kdc_addr, |k| k.addr);
        kdc_over_tcp(addr, request)
    }

    fn exchange(&mut self) -> Result<Box<dyn Wire>, LinkError> {
        TcpWire::connect(self.exchange)
    }

    fn gc(&mut self, fqdn: &str) -> Result<Box<dyn Wire>, LinkError> {
        let (_, addr) = self.gc_addrs.get(fqdn).ok_or(LinkError::Refused)?;
        TcpWire::connect(*addr)
    }

    fn now(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }
}

impl DirectorySite for SocketSite {
    fn apply(&mut self, topology: &Topology, reset: Option<&str>) {
        for gc in topology.names() {
            let state = topology.state(gc).unwrap_or(GcState::Down);
            if let Err(e) = self.runtime.block_on(self.gcs.set_state(gc, state)) {
                tracing::warn!("global catalog {gc}: cannot become {}: {e}", state.name());
            }
            let rtt = Duration::from_millis(u64::from(topology.delay_ms(gc)));
            self.runtime.block_on(self.gcs.set_round_trip(gc, rtt));
            if reset == Some(gc) {
                self.runtime.block_on(self.gcs.reset(gc));
            }
            if let Some(external) = &mut self.external {
                (external.edit)(&topology.spn(gc), topology.kdc_knows(gc));
            }
        }
        if self.external.is_none() {
            self.kdc.with(|k| topology.sync_realm(k.db_mut()));
        }
        self.rfr.set_referral(topology.rfr_answer(&self.world));
    }
}

/// A TCP connection to an RPC listener.
struct TcpWire {
    tcp: TcpStream,
}

impl TcpWire {
    fn connect(addr: SocketAddr) -> Result<Box<dyn Wire>, LinkError> {
        let tcp = TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => LinkError::Refused,
            _ => LinkError::Protocol(format!("connect {addr}: {e}")),
        })?;
        tcp.set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|()| tcp.set_write_timeout(Some(IO_TIMEOUT)))
            .and_then(|()| tcp.set_nodelay(true))
            .map_err(|e| LinkError::Protocol(e.to_string()))?;
        Ok(Box::new(TcpWire { tcp }))
    }
}

fn io_error(e: std::io::Error) -> LinkError {
    use std::io::ErrorKind::*;
    match e.kind() {
        WouldBlock | TimedOut => LinkError::Silent,
        _ => LinkError::Closed,
    }
}

impl Wire for TcpWire {
    fn send(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        self.tcp.write_all(bytes).map_err(io_error)
    }

    fn recv(&mut self) -> Result<Vec<u8>, LinkError> {
        let mut buf = vec![0u8; 64 * 1024];
        match self.tcp.read(&mut buf) {
            Ok(0) => Err(LinkError::Closed),
            Ok(n) => {
                buf.truncate(n);
                Ok(buf)
            }
            Err(e) => Err(io_error(e)),
        }
    }
}
