//! The directory's global catalogs over sockets (issue 19): one NSPI listener per global
//! catalog, each of which can be shut down (its address book gone: NSPI calls fault
//! RPC_S_SERVER_UNAVAILABLE), stopped (the listener closed and its connections ended: a
//! connect is refused) and started again on the same port, while the lab runs. Clients
//! reach each one through a [`FaultHop`] (the network between them: a delay, resets),
//! whose address is the one the lab gives out; it stops and starts with its catalog.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harness_core::dcerpc::kerberos::Clock;
use harness_core::dcerpc::nspi::{AddressBook, Nspi};
use harness_core::dcerpc::server::Endpoint;
use harness_core::gc::reach::gc_endpoint;
use harness_core::gc::GcState;
use harness_core::kerberos::RealmDb;
use harness_core::World;
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

use super::hop::{FaultHop, HopFaults};
use super::lab::LabStats;
use super::listener::bind_listener;
use super::rpc;

/// A global catalog to serve: its short name (`gc1`; its FQDN is `<name>.<dns domain>`)
/// and where its NSPI listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcSpec {
    pub name: String,
    pub addr: SocketAddr,
}

/// How long a stopped listener's connections get to close.
const STOP_GRACE: Duration = Duration::from_secs(5);

struct Host {
    name: String,
    fqdn: String,
    /// Where the catalog's NSPI listens, bound once; a restart binds it again.
    addr: SocketAddr,
    /// Where clients connect: the hop in front of it, likewise bound again on a restart.
    hop_addr: SocketAddr,
    faults: Arc<HopFaults>,
    hop: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    endpoint: Arc<Endpoint>,
    nspi: Arc<Nspi>,
    state: GcState,
    /// The running accept loop and what stops it (None while down).
    running: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

/// The global catalogs of a lab.
pub struct GlobalCatalogs {
    world: Arc<World>,
    hosts: Mutex<Vec<Host>>,
    max_connections: usize,
    stats: Arc<LabStats>,
}

impl std::fmt::Debug for GlobalCatalogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalCatalogs").finish_non_exhaustive()
    }
}

fn wall_clock() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl GlobalCatalogs {
    /// Binds every global catalog's listener and starts serving (all up).
    pub(crate) async fn start(
        specs: &[GcSpec],
        world: &Arc<World>,
        seed: u64,
        max_connections: usize,
        stats: &Arc<LabStats>,
    ) -> std::io::Result<Arc<GlobalCatalogs>> {
        let mut db = RealmDb::for_world(world);
        // Authenticators are checked against the wall clock, as the lab's KDC stamps
        // tickets with it.
        let clock: Clock = Arc::new(wall_clock);
        let mut hosts = Vec::new();
        for spec in specs {
            let fqdn = format!("{}.{}", spec.name, world.dns_domain);
            let (endpoint, nspi) =
                gc_endpoint(world, &mut db, &fqdn, clock.clone(), wall_clock(), seed);
            // The catalog itself on an ephemeral port; the hop on the address asked for.
            let listener = bind_listener(SocketAddr::new(spec.addr.ip(), 0))?;
            let addr = listener.local_addr()?;
            let hop_listener = bind_listener(spec.addr)?;
            let hop_addr = hop_listener.local_addr()?;
            let mut host = Host {
                name: spec.name.clone(),
                fqdn,
                addr,
                hop_addr,
                faults: Arc::new(HopFaults::default()),
                hop: None,
                endpoint,
                nspi,
                state: GcState::Up,
                running: None,
            };
            host.running = Some(serve(&host, listener, max_connections, stats));
            host.hop = Some(serve_hop(&host, hop_listener));
            hosts.push(host);
        }
        Ok(Arc::new(GlobalCatalogs {
            world: world.clone(),
            hosts: Mutex::new(hosts),
            max_connections,
            stats: stats.clone(),
        }))
    }

    /// Where clients reach each global catalog (its hop): (short name, FQDN, address).
    pub async fn addrs(&self) -> Vec<(String, String, SocketAddr)> {
        self.hosts
            .lock()
            .await
            .iter()
            .map(|h| (h.name.clone(), h.fqdn.clone(), h.hop_addr))
            .collect()
    }

    /// Puts a round trip of `rtt` on the hop to `name` (zero: none).
    pub async fn set_round_trip(&self, name: &str, rtt: Duration) {
        if let Some(host) = self.hosts.lock().await.iter().find(|h| h.name == name) {
            host.faults.set_round_trip(rtt);
        }
    }

    pub async fn state(&self, name: &str) -> Option<GcState> {
        self.hosts
            .lock()
            .await
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.state)
    }

    /// Puts the global catalog `name` into `state`: up serves, shutting down keeps the
    /// listener but drops the address book, down closes the listener and ends its
    /// connections. Up after down binds the same address again.
    pub async fn set_state(&self, name: &str, state: GcState) -> std::io::Result<()> {
        let mut hosts = self.hosts.lock().await;
        let Some(host) = hosts.iter_mut().find(|h| h.name == name) else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no global catalog {name}"),
            ));
        };
        if host.state == state {
            return Ok(());
        }
        host.nspi.set_address_book(match state {
            GcState::Up => Some(Arc::new(AddressBook::from_world(&self.world))),
            _ => None,
        });
        match (state, host.running.is_some()) {
            (GcState::Down, true) => stop(host).await,
            (GcState::Up | GcState::ShuttingDown, false) => {
                let listener = bind_listener(host.addr)?;
                let hop_listener = bind_listener(host.hop_addr)?;
                host.running = Some(serve(host, listener, self.max_connections, &self.stats));
                host.hop = Some(serve_hop(host, hop_listener));
            }
            _ => {}
        }
        host.state = state;
        Ok(())
    }

    /// Resets every connection to `name` on its hop (both ends get an RST).
    pub async fn reset(&self, name: &str) {
        if let Some(host) = self.hosts.lock().await.iter().find(|h| h.name == name) {
            host.faults.reset();
        }
    }

    /// Stops every listener (the lab's shutdown).
    pub(crate) async fn stop_all(&self) {
        for host in self.hosts.lock().await.iter_mut() {
            stop(host).await;
        }
    }
}

/// Starts `host`'s accept loop on `listener`.
fn serve(
    host: &Host,
    listener: tokio::net::TcpListener,
    max_connections: usize,
    stats: &Arc<LabStats>,
) -> (watch::Sender<bool>, JoinHandle<()>) {
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(rpc::accept_loop(
        listener,
        host.endpoint.clone(),
        max_connections,
        stats.clone(),
        stopped,
    ));
    (stop, task)
}

/// Starts `host`'s hop on `listener`, relaying to its catalog.
fn serve_hop(
    host: &Host,
    listener: tokio::net::TcpListener,
) -> (watch::Sender<bool>, JoinHandle<()>) {
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(FaultHop::serve(
        listener,
        host.addr,
        host.faults.clone(),
        stopped,
    ));
    (stop, task)
}

/// Stops `host`'s accept loop and waits (bounded) for its connections to end, then its
/// hop (whose relays end with the catalog's connections).
async fn stop(host: &mut Host) {
    for running in [host.running.take(), host.hop.take()].into_iter().flatten() {
        let (stop, mut task) = running;
        let _ = stop.send(true);
        if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
            task.abort();
        }
    }
}
