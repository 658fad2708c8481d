//! The lab: binds the listeners (plain, implicit TLS, front-ends), accepts connections
//! within the connection limit, and hands each one to a sans-IO server session driven by
//! [`super::connection`]. [`Lab`] is the handle that embeds all of it.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harness_core::budget::DEFAULT_MEMORY_BUDGET;
use harness_core::dcerpc::emsmdb::EmsmdbProfile;
use harness_core::dcerpc::endpoints::{RpcEndpoints, RpcLabConfig};
use harness_core::dcerpc::kerberos::KerberosClock;
use harness_core::dcerpc::server::EndpointConfig;
use harness_core::http_auth::{HttpAuthenticator, HttpScheme};
use harness_core::imap::ImapServer;
use harness_core::kerberos::{Kdc, KdcConfig, RealmDb};
use harness_core::pop3::Pop3Server;
use harness_core::rpch::{ProxyConfig, RpcProxy};
use harness_core::world::{LabFile, LabFileError};
use harness_core::{
    Limits, MemoryBudget, Profile, Protocol, ServerSession, SessionContext, Transport, World,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::connection::{drive, Conn};
use super::frontend_host::{self, BackendLink, FrontendShared, FrontendSpec};
use super::gc::{GcSpec, GlobalCatalogs};
use super::kdc::{self, KdcHandle};
use super::listener::{accept_connections, bind_listener, Admission};
use super::rpc::{self, RpcListenerSpec, RpcListening, RpcRole};
use super::rpch;
use super::tls::{read_certificates, verifying_client_config, LabTls, TlsSetupError};
use super::web;
use super::webdav;
use harness_core::web::provider::{AppHost, StoreSite};

/// How a listener secures its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Security {
    /// Plain TCP; STARTTLS / STLS offered when the lab's `starttls` is on.
    Plain,
    /// TLS from the first byte (IMAPS, POP3S).
    ImplicitTls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerSpec {
    pub protocol: Protocol,
    pub security: Security,
    pub addr: SocketAddr,
}

impl ListenerSpec {
    pub fn new(protocol: Protocol, security: Security, addr: SocketAddr) -> Self {
        ListenerSpec {
            protocol,
            security,
            addr,
        }
    }

    /// The name a user knows the listener by: imap, imaps, pop3, pop3s.
    pub fn scheme(&self) -> &'static str {
        match (self.protocol, self.security) {
            (Protocol::Imap, Security::Plain) => "imap",
            (Protocol::Imap, Security::ImplicitTls) => "imaps",
            (Protocol::Pop3, Security::Plain) => "pop3",
            (Protocol::Pop3, Security::ImplicitTls) => "pop3s",
        }
    }
}

/// What to serve and how.
#[derive(Debug, Clone)]
pub struct LabConfig {
    pub lab: LabFile,
    pub profile: Profile,
    pub limits: Limits,
    pub listeners: Vec<ListenerSpec>,
    /// Offer STARTTLS / STLS on plain listeners.
    pub starttls: bool,
    /// Seeds challenges and timestamps; `None` takes one from the operating system.
    pub seed: Option<u64>,
    /// Allow binding to addresses outside 127.0.0.0/8 and ::1.
    pub allow_non_loopback: bool,
    /// Front-end listeners, each relaying to a back-end through a connection pool.
    pub frontends: Vec<FrontendSpec>,
    /// Bytes of pending literal and message data all sessions together may make the lab
    /// hold (issue #14); a literal that would pass it is refused before it is buffered.
    pub memory_budget: usize,
    /// DCE/RPC listeners (`ncacn_ip_tcp`): the Exchange endpoint and the endpoint mapper.
    pub rpc: Vec<RpcListenerSpec>,
    /// Which Exchange's EMSMDB the Exchange endpoint plays (2003 adds EcDoConnect and
    /// EcDoRpc, opnums 0 and 2).
    pub rpc_profile: EmsmdbProfile,
    /// Limits and choices of every RPC association (fragment and stub sizes, contexts,
    /// calls and parked calls per association, Windows or Samba refusals); its idle
    /// timeout is replaced by `limits.idle_timeout`, the lab's one.
    pub rpc_endpoint: EndpointConfig,
    /// Outlook Anywhere listeners (RPC over HTTP v2, plain HTTP or TLS) in front of the
    /// Exchange RPC listener, which they need.
    pub rpch: Vec<RpchListenerSpec>,
    /// The HTTP authentication the RPC proxy offers, in its WWW-Authenticate order.
    pub rpch_auth: Vec<HttpScheme>,
    /// The RPC proxy reaches the Exchange endpoint in process (an in-memory pipe to an
    /// association driven like the listener's) instead of over TCP to the listener.
    pub rpch_in_process: bool,
    /// The KDC's address (UDP and TCP on the same port), serving the world's realm.
    pub kdc: Option<SocketAddr>,
    /// The web tier's listeners (plain HTTP or TLS).
    pub web: Vec<WebListenerSpec>,
    /// The HTTP authentication the web tier offers (Negotiate, when offered, is listed
    /// first, as IIS lists it).
    pub web_auth: Vec<HttpScheme>,
    /// Where the web tier's application runs: its own host (the store a network hop
    /// away) or the Exchange host (local RPC).
    pub web_app_host: AppHost,
    /// The KDC the web tier's application asks for the store's tickets: another realm's
    /// KDC serving the same principals (MIT's, for one); None: the lab's own (`kdc`).
    pub web_kdc: Option<SocketAddr>,
    /// The Exchange WebDAV store's listeners (`/exchange/<user>/`), with the web tier's
    /// authentication.
    pub webdav: Vec<WebListenerSpec>,
    /// Global catalogs, each an NSPI listener that can be shut down, stopped and started
    /// while the lab runs ([`Lab::gcs`]).
    pub gcs: Vec<GcSpec>,
}

/// A web tier listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebListenerSpec {
    pub addr: SocketAddr,
    /// HTTPS (the lab's certificate) rather than plain HTTP.
    pub tls: bool,
}

/// An Outlook Anywhere listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpchListenerSpec {
    pub addr: SocketAddr,
    /// HTTPS (the lab's certificate) rather than plain HTTP.
    pub tls: bool,
}

impl Default for LabConfig {
    /// The default lab, `default` profile, IMAP and POP3 on ephemeral loopback ports.
    fn default() -> Self {
        let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
        LabConfig {
            lab: LabFile::default_lab(),
            profile: Profile::default_profile(),
            limits: Limits::default(),
            listeners: vec![
                ListenerSpec::new(Protocol::Imap, Security::Plain, loopback),
                ListenerSpec::new(Protocol::Pop3, Security::Plain, loopback),
            ],
            starttls: true,
            seed: None,
            allow_non_loopback: false,
            frontends: Vec::new(),
            memory_budget: DEFAULT_MEMORY_BUDGET,
            rpc: Vec::new(),
            rpc_profile: EmsmdbProfile::default(),
            rpc_endpoint: EndpointConfig::default(),
            rpch: Vec::new(),
            rpch_auth: vec![HttpScheme::Ntlm, HttpScheme::Basic],
            rpch_in_process: false,
            kdc: None,
            web: Vec::new(),
            web_auth: vec![HttpScheme::Negotiate, HttpScheme::Ntlm, HttpScheme::Basic],
            web_app_host: AppHost::WebTier,
            web_kdc: None,
            webdav: Vec::new(),
            gcs: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    LabFile(#[from] LabFileError),
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error("cannot listen on {addr} for {scheme}: {source}")]
    Bind {
        scheme: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0} is not a loopback address; pass allow_non_loopback (--public) to serve on it")]
    NotLoopback(SocketAddr),
    #[error("an endpoint mapper listener needs the Exchange RPC listener it names")]
    EndpointMapperAlone,
    #[error("an Outlook Anywhere listener needs the Exchange RPC listener it proxies to")]
    RpchWithoutExchange,
    #[error("no listeners configured")]
    NoListeners,
    #[error(
        "the {0} front-end needs a back-end: give it an address or a plain {0} listener in the lab"
    )]
    NoBackend(Protocol),
    #[error(
        "the {0} front-end's back-end hop is TLS: give it an address or an implicit-TLS {0} listener in the lab"
    )]
    NoTlsBackend(Protocol),
    #[error("front-end on {addr} cannot reach its back-end {backend}: {source}")]
    Backend {
        addr: SocketAddr,
        backend: SocketAddr,
        source: std::io::Error,
    },
}

/// A bound front-end listener.
#[derive(Clone)]
pub struct FrontendListening {
    pub spec: FrontendSpec,
    pub addr: SocketAddr,
    pub backend: SocketAddr,
    pub shared: Arc<FrontendShared>,
}

/// A bound listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listening {
    pub spec: ListenerSpec,
    /// The address actually bound (the port filled in when 0 was asked for).
    pub addr: SocketAddr,
}

/// Counters the lab keeps while it runs.
#[derive(Debug, Default)]
pub struct LabStats {
    pub accepted: AtomicU64,
    pub refused_over_limit: AtomicU64,
    pub active: AtomicUsize,
    /// Connection tasks spawned by the listeners that have not ended yet: sessions and
    /// over-limit refusals, counted from accept until the task's future is dropped
    /// (finished or aborted). See [`Lab::live_connections`].
    pub live: AtomicUsize,
}

/// Counts one connection task in [`LabStats::live`] for as long as it is held.
pub(crate) struct LiveGuard(Arc<LabStats>);

impl LiveGuard {
    pub(crate) fn new(stats: &Arc<LabStats>) -> LiveGuard {
        stats.live.fetch_add(1, Ordering::Relaxed);
        LiveGuard(stats.clone())
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A running lab. Dropping it without [`Lab::shutdown`] aborts every task.
pub struct Lab {
    kdc: Option<(SocketAddr, Arc<KdcHandle>)>,
    web_listening: Vec<(WebListenerSpec, SocketAddr)>,
    webdav_listening: Vec<(WebListenerSpec, SocketAddr)>,
    listening: Vec<Listening>,
    rpc_listening: Vec<RpcListening>,
    rpc: Option<RpcEndpoints>,
    gcs: Option<Arc<GlobalCatalogs>>,
    rpch_listening: Vec<(RpchListenerSpec, SocketAddr)>,
    frontends: Vec<FrontendListening>,
    world: Arc<World>,
    profile: Arc<Profile>,
    tls: LabTls,
    stats: Arc<LabStats>,
    budget: MemoryBudget,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl fmt::Debug for Lab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lab")
            .field("listening", &self.listening)
            .finish_non_exhaustive()
    }
}

/// What every listener task shares.
struct Shared {
    world: Arc<World>,
    profile: Arc<Profile>,
    limits: Limits,
    tls: LabTls,
    starttls: bool,
    seed: u64,
    next_session: AtomicU64,
    stats: Arc<LabStats>,
    budget: MemoryBudget,
}

impl Lab {
    /// Builds the world, makes a certificate, binds every listener and starts serving.
    pub async fn start(config: LabConfig) -> Result<Lab, LabError> {
        if config.listeners.is_empty()
            && config.frontends.is_empty()
            && config.rpc.is_empty()
            && config.kdc.is_none()
            && config.web.is_empty()
            && config.webdav.is_empty()
            && config.gcs.is_empty()
        {
            return Err(LabError::NoListeners);
        }
        let addrs = config.listeners.iter().map(|l| l.addr);
        let fe_addrs = config
            .frontends
            .iter()
            .flat_map(|f| std::iter::once(f.addr).chain(f.backend.as_ref().and_then(|b| b.addr)));
        let rpc_addrs = config.rpc.iter().map(|r| r.addr);
        let rpch_addrs = config.rpch.iter().map(|r| r.addr);
        let all = addrs
            .chain(fe_addrs)
            .chain(rpc_addrs)
            .chain(rpch_addrs)
            .chain(config.kdc)
            .chain(config.web.iter().map(|w| w.addr))
            .chain(config.webdav.iter().map(|w| w.addr))
            .chain(config.gcs.iter().map(|g| g.addr));
        for addr in all {
            if !config.allow_non_loopback && !addr.ip().is_loopback() {
                return Err(LabError::NotLoopback(addr));
            }
        }
        let world = Arc::new(config.lab.build()?);
        let profile = Arc::new(config.profile.clone());
        let tls = LabTls::self_signed(&world.hostname)?;
        let seed = match config.seed {
            Some(s) => s,
            None => {
                let mut b = [0u8; 8];
                // Without OS randomness the lab still works, just with a fixed seed.
                let _ = getrandom::getrandom(&mut b);
                u64::from_le_bytes(b)
            }
        };
        let stats = Arc::new(LabStats::default());
        let budget = MemoryBudget::new(config.memory_budget);
        let shared = Arc::new(Shared {
            world: world.clone(),
            profile: profile.clone(),
            limits: config.limits.clone(),
            tls: tls.clone(),
            starttls: config.starttls,
            seed,
            next_session: AtomicU64::new(0),
            stats: stats.clone(),
            budget: budget.clone(),
        });
        let (shutdown, _) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut listening = Vec::new();
        for spec in &config.listeners {
            let listener = bind_listener(spec.addr).map_err(|source| LabError::Bind {
                scheme: spec.scheme(),
                addr: spec.addr,
                source,
            })?;
            let addr = listener.local_addr().map_err(|source| LabError::Bind {
                scheme: spec.scheme(),
                addr: spec.addr,
                source,
            })?;
            listening.push(Listening { spec: *spec, addr });
            tasks.spawn(accept_loop(
                listener,
                *spec,
                shared.clone(),
                shutdown.subscribe(),
            ));
        }
        let mut frontends = Vec::new();
        for spec in &config.frontends {
            let backend = backend_link(spec, &listening, &tls)?;
            let listener = bind_listener(spec.addr).map_err(|source| LabError::Bind {
                scheme: "front-end",
                addr: spec.addr,
                source,
            })?;
            let addr = listener.local_addr().map_err(|source| LabError::Bind {
                scheme: "front-end",
                addr: spec.addr,
                source,
            })?;
            let backend_addr = backend.addr;
            let (shared, serve) = frontend_host::start(
                listener,
                spec.clone(),
                backend,
                config.limits.clone(),
                seed,
                shutdown.subscribe(),
            )
            .await
            .map_err(|source| LabError::Backend {
                addr,
                backend: backend_addr,
                source,
            })?;
            tasks.spawn(serve);
            frontends.push(FrontendListening {
                spec: spec.clone(),
                addr,
                backend: backend_addr,
                shared,
            });
        }
        let (rpc_listening, rpc) = start_rpc(&config, &world, seed, &stats, &shutdown, &mut tasks)?;
        let exchange = rpc_listening
            .iter()
            .find(|l| l.spec.role == RpcRole::Exchange)
            .map(|l| l.addr);
        let exchange = match (exchange, &rpc) {
            (Some(addr), Some(endpoints)) if config.rpch_in_process => {
                Some(rpch::BackendRoute::InProcess {
                    endpoint: endpoints.exchange.clone(),
                    port: addr.port(),
                })
            }
            (Some(addr), _) => Some(rpch::BackendRoute::Tcp(addr)),
            (None, _) => None,
        };
        let rpch_listening =
            start_rpch(&config, &world, exchange, seed, &tls, &shutdown, &mut tasks)?;
        let kdc = match config.kdc {
            Some(addr) => {
                let realm = RealmDb::for_world(&world);
                let handle = KdcHandle::new(Kdc::new(realm, KdcConfig::default(), seed));
                let bound = kdc::start(addr, handle.clone(), &shutdown, &mut tasks)
                    .await
                    .map_err(|source| LabError::Bind {
                        scheme: "kdc",
                        addr,
                        source,
                    })?;
                Some((bound, handle))
            }
            None => None,
        };
        let webdav_listening = start_webdav(&config, &world, seed, &tls, &shutdown, &mut tasks)?;
        let gcs = if config.gcs.is_empty() {
            None
        } else {
            let first = config.gcs[0].addr;
            let gcs = GlobalCatalogs::start(
                &config.gcs,
                &world,
                seed ^ 0x4743_5f4e_5350_4900,
                config.limits.max_connections,
                &stats,
            )
            .await
            .map_err(|source| LabError::Bind {
                scheme: "gc",
                addr: first,
                source,
            })?;
            // The referral service names the global catalogs (by FQDN, in order) instead
            // of the Exchange host.
            if let Some(endpoints) = &rpc {
                let mut referral = endpoints.rfr.referral();
                referral.nspi_servers = gcs.addrs().await.into_iter().map(|(_, f, _)| f).collect();
                endpoints.rfr.set_referral(referral);
            }
            Some(gcs)
        };
        let store = web::StoreAccess {
            world: world.clone(),
            site: StoreSite::for_world(&world, seed),
            host: config.web_app_host,
            rpc: rpc_listening
                .iter()
                .find(|l| l.spec.role == RpcRole::Exchange)
                .map(|l| l.addr),
            kdc: config.web_kdc.or(kdc.as_ref().map(|(addr, _)| *addr)),
            webdav: webdav_listening
                .iter()
                .find(|(spec, _)| !spec.tls)
                .map(|(_, addr)| *addr),
        };
        let web_listening = start_web(&config, store, seed, &tls, &shutdown, &mut tasks)?;
        Ok(Lab {
            kdc,
            web_listening,
            webdav_listening,
            listening,
            rpc_listening,
            rpc,
            gcs,
            rpch_listening,
            frontends,
            world,
            profile,
            tls,
            stats,
            budget,
            shutdown,
            tasks,
        })
    }

    pub fn listening(&self) -> &[Listening] {
        &self.listening
    }

    /// The address of the first listener for `protocol` with `security`.
    pub fn addr(&self, protocol: Protocol, security: Security) -> Option<SocketAddr> {
        self.listening
            .iter()
            .find(|l| l.spec.protocol == protocol && l.spec.security == security)
            .map(|l| l.addr)
    }

    /// The DCE/RPC listeners.
    pub fn rpc_listening(&self) -> &[RpcListening] {
        &self.rpc_listening
    }

    /// The address of the DCE/RPC listener with `role`.
    pub fn rpc_addr(&self, role: RpcRole) -> Option<SocketAddr> {
        self.rpc_listening
            .iter()
            .find(|l| l.spec.role == role)
            .map(|l| l.addr)
    }

    /// The address of the Outlook Anywhere listener over TLS (`tls`) or plain HTTP.
    pub fn rpch_addr(&self, tls: bool) -> Option<SocketAddr> {
        self.rpch_listening
            .iter()
            .find(|(spec, _)| spec.tls == tls)
            .map(|(_, addr)| *addr)
    }

    /// The address of the web tier's listener over TLS (`tls`) or plain HTTP.
    pub fn web_addr(&self, tls: bool) -> Option<SocketAddr> {
        self.web_listening
            .iter()
            .find(|(spec, _)| spec.tls == tls)
            .map(|(_, addr)| *addr)
    }

    /// The address of the WebDAV store's listener over TLS (`tls`) or plain HTTP.
    pub fn webdav_addr(&self, tls: bool) -> Option<SocketAddr> {
        self.webdav_listening
            .iter()
            .find(|(spec, _)| spec.tls == tls)
            .map(|(_, addr)| *addr)
    }

    /// The KDC's address (UDP and TCP).
    pub fn kdc_addr(&self) -> Option<SocketAddr> {
        self.kdc.as_ref().map(|(addr, _)| *addr)
    }

    /// The running KDC: its realm, its log, and its database to change while it serves.
    pub fn kdc(&self) -> Option<&Arc<KdcHandle>> {
        self.kdc.as_ref().map(|(_, handle)| handle)
    }

    /// The RPC endpoints and interfaces, when the lab has RPC listeners.
    pub fn rpc(&self) -> Option<&RpcEndpoints> {
        self.rpc.as_ref()
    }

    /// The global catalogs, when the lab has any: their addresses and states to change.
    pub fn gcs(&self) -> Option<&Arc<GlobalCatalogs>> {
        self.gcs.as_ref()
    }

    /// The front-end listeners.
    pub fn frontends(&self) -> &[FrontendListening] {
        &self.frontends
    }

    /// The address of the first front-end for `protocol`.
    pub fn frontend_addr(&self, protocol: Protocol) -> Option<SocketAddr> {
        self.frontends
            .iter()
            .find(|f| f.spec.protocol == protocol)
            .map(|f| f.addr)
    }

    pub fn world(&self) -> &Arc<World> {
        &self.world
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The self-signed certificate, PEM, for clients that verify it.
    pub fn certificate_pem(&self) -> &str {
        &self.tls.certificate_pem
    }

    /// The self-signed certificate, DER.
    pub fn certificate_der(&self) -> &rustls::pki_types::CertificateDer<'static> {
        &self.tls.certificate_der
    }

    pub fn stats(&self) -> &LabStats {
        &self.stats
    }

    /// The budget every session's pending literals are paid from.
    pub fn memory_budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// Connection tasks of the plain and implicit-TLS listeners still running (sessions
    /// and over-limit refusals; front-end connections are not counted). Zero once every
    /// client has gone and the server has finished with it: a count that stays above zero
    /// after a storm of connections is a leaked task.
    pub fn live_connections(&self) -> usize {
        self.stats.live.load(Ordering::Relaxed)
    }

    /// Stops accepting, tells every session to say goodbye and close, and waits for them
    /// (at most `SHUTDOWN_GRACE`, then the rest are aborted).
    pub async fn shutdown(mut self) {
        if let Some(gcs) = &self.gcs {
            gcs.stop_all().await;
        }
        let _ = self.shutdown.send(true);
        let wait = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, wait).await.is_err() {
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
    }
}

/// How a front-end reaches its back-end: the address given, or the lab's own listener for
/// the protocol (plain, or implicit TLS when the hop is TLS); TLS trusts the certificates
/// given, or the lab's own.
fn backend_link(
    spec: &FrontendSpec,
    listening: &[Listening],
    tls: &LabTls,
) -> Result<BackendLink, LabError> {
    let target = spec.backend.clone().unwrap_or_default();
    let security = match target.tls {
        Some(_) => Security::ImplicitTls,
        None => Security::Plain,
    };
    let addr = match target.addr {
        Some(addr) => addr,
        None => listening
            .iter()
            .find(|l| l.spec.protocol == spec.protocol && l.spec.security == security)
            .map(|l| l.addr)
            .ok_or(match security {
                Security::Plain => LabError::NoBackend(spec.protocol),
                Security::ImplicitTls => LabError::NoTlsBackend(spec.protocol),
            })?,
    };
    let tls_config = match &target.tls {
        Some(backend_tls) => {
            let trusted = match &backend_tls.trusted {
                Some(path) => read_certificates(path)?,
                None => vec![tls.certificate_der.clone()],
            };
            Some(
                verifying_client_config(&trusted, backend_tls.resumption)
                    .map_err(TlsSetupError::from)?,
            )
        }
        None => None,
    };
    Ok(BackendLink::new(
        spec.protocol,
        addr,
        target.stages,
        tls_config,
    ))
}

/// Binds the DCE/RPC listeners, builds their endpoints from the world (the Exchange
/// port is known once bound: bind_acks and endpoint-mapper towers name it) and starts
/// serving.
fn start_rpc(
    config: &LabConfig,
    world: &Arc<World>,
    seed: u64,
    stats: &Arc<LabStats>,
    shutdown: &watch::Sender<bool>,
    tasks: &mut JoinSet<()>,
) -> Result<(Vec<RpcListening>, Option<RpcEndpoints>), LabError> {
    if config.rpc.is_empty() {
        return Ok((Vec::new(), None));
    }
    let mut bound = Vec::new();
    for spec in &config.rpc {
        let err = |source| LabError::Bind {
            scheme: spec.role.scheme(),
            addr: spec.addr,
            source,
        };
        let listener = bind_listener(spec.addr).map_err(err)?;
        let addr = listener.local_addr().map_err(err)?;
        bound.push((RpcListening { spec: *spec, addr }, listener));
    }
    let exchange_addr = bound
        .iter()
        .find(|(l, _)| l.spec.role == RpcRole::Exchange)
        .map(|(l, _)| l.addr);
    if exchange_addr.is_none() {
        return Err(LabError::EndpointMapperAlone);
    }
    let exchange_ip = match exchange_addr.map(|a| a.ip()) {
        Some(std::net::IpAddr::V4(ip)) => ip.octets(),
        _ => [127, 0, 0, 1],
    };
    let rpc_config = RpcLabConfig {
        exchange_port: exchange_addr.map_or(0, |a| a.port()),
        exchange_ip,
        endpoint: EndpointConfig {
            idle_timeout: config.limits.idle_timeout,
            ..config.rpc_endpoint.clone()
        },
        seed: seed ^ 0x5250_4320_4e54_4c4d,
        unix_now: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        // Authenticators are checked against the wall clock, as the lab's KDC stamps
        // tickets with it.
        kerberos_clock: Some(KerberosClock(Arc::new(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        }))),
    };
    let endpoints = RpcEndpoints::for_world_with(world, &rpc_config, config.rpc_profile.config());
    let mut listening = Vec::new();
    for (l, listener) in bound {
        let endpoint = match l.spec.role {
            RpcRole::Exchange => endpoints.exchange.clone(),
            RpcRole::EndpointMapper => endpoints.epm.clone(),
        };
        tasks.spawn(rpc::accept_loop(
            listener,
            endpoint,
            config.limits.max_connections,
            stats.clone(),
            shutdown.subscribe(),
        ));
        listening.push(l);
    }
    Ok((listening, Some(endpoints)))
}

/// Binds the Outlook Anywhere listeners and starts the RPC proxy in front of the
/// Exchange endpoint `exchange` reaches.
/// The web tier: one authenticator for every listener (Negotiate with a keytab of the
/// world's `HTTP/<host>` principals, NTLM and Basic against the directory).
fn start_web(
    config: &LabConfig,
    store: web::StoreAccess,
    seed: u64,
    tls: &LabTls,
    shutdown: &watch::Sender<bool>,
    tasks: &mut JoinSet<()>,
) -> Result<Vec<(WebListenerSpec, SocketAddr)>, LabError> {
    if config.web.is_empty() {
        return Ok(Vec::new());
    }
    let auth = iis_authenticator(config, &store.world, seed);
    let shared = web::WebShared::new(auth, store);
    let specs: Vec<(SocketAddr, bool)> = config.web.iter().map(|w| (w.addr, w.tls)).collect();
    let max = config.limits.max_connections;
    let bound = bind_http(
        &specs,
        ["web", "web-tls"],
        tls,
        tasks,
        |listener, acceptor| {
            web::accept_loop(
                listener,
                shared.clone(),
                acceptor,
                max,
                shutdown.subscribe(),
            )
        },
    )?;
    Ok(config.web.iter().copied().zip(bound).collect())
}

/// The authentication IIS offers the web tier and the WebDAV store: Negotiate with a
/// keytab of the world's `HTTP/<host>` principals, NTLM and Basic against the directory.
fn iis_authenticator(config: &LabConfig, world: &Arc<World>, seed: u64) -> HttpAuthenticator {
    let unix_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let schemes = config
        .web_auth
        .iter()
        .copied()
        .filter(|s| *s != HttpScheme::Negotiate)
        .collect();
    let mut auth = HttpAuthenticator::for_world(world, schemes, seed ^ 0x5745_4221, unix_now);
    if config.web_auth.contains(&HttpScheme::Negotiate) {
        auth = auth.with_kerberos(harness_core::web::http_acceptor(world, seed ^ 0x4853));
    }
    auth
}

/// The Exchange WebDAV store: one authenticator (the web tier's schemes) for every
/// listener, the world's mail behind it.
fn start_webdav(
    config: &LabConfig,
    world: &Arc<World>,
    seed: u64,
    tls: &LabTls,
    shutdown: &watch::Sender<bool>,
    tasks: &mut JoinSet<()>,
) -> Result<Vec<(WebListenerSpec, SocketAddr)>, LabError> {
    if config.webdav.is_empty() {
        return Ok(Vec::new());
    }
    // Its own seed, so its NTLM challenges are not the web tier's.
    let auth = iis_authenticator(config, world, seed ^ 0x4441_5600);
    let shared = webdav::DavShared::new(auth, world.clone());
    let specs: Vec<(SocketAddr, bool)> = config.webdav.iter().map(|w| (w.addr, w.tls)).collect();
    let max = config.limits.max_connections;
    let bound = bind_http(
        &specs,
        ["webdav", "webdav-tls"],
        tls,
        tasks,
        |listener, acceptor| {
            webdav::accept_loop(
                listener,
                shared.clone(),
                acceptor,
                max,
                shutdown.subscribe(),
            )
        },
    )?;
    Ok(config.webdav.iter().copied().zip(bound).collect())
}

/// Binds each (address, TLS?) of one kind of HTTP listener (`schemes`: its plain and TLS
/// names, for errors) and spawns `serve` on it, with the lab's TLS acceptor where asked.
fn bind_http<F, Fut>(
    specs: &[(SocketAddr, bool)],
    schemes: [&'static str; 2],
    tls: &LabTls,
    tasks: &mut JoinSet<()>,
    serve: F,
) -> Result<Vec<SocketAddr>, LabError>
where
    F: Fn(TcpListener, Option<tokio_rustls::TlsAcceptor>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut bound = Vec::new();
    for &(addr, with_tls) in specs {
        let err = |source| LabError::Bind {
            scheme: schemes[usize::from(with_tls)],
            addr,
            source,
        };
        let listener = bind_listener(addr).map_err(err)?;
        let local = listener.local_addr().map_err(err)?;
        let acceptor = with_tls.then(|| tls.acceptor.clone());
        tasks.spawn(serve(listener, acceptor));
        bound.push(local);
    }
    Ok(bound)
}

fn start_rpch(
    config: &LabConfig,
    world: &Arc<World>,
    exchange: Option<rpch::BackendRoute>,
    seed: u64,
    tls: &LabTls,
    shutdown: &watch::Sender<bool>,
    tasks: &mut JoinSet<()>,
) -> Result<Vec<(RpchListenerSpec, SocketAddr)>, LabError> {
    if config.rpch.is_empty() {
        return Ok(Vec::new());
    }
    let exchange = exchange.ok_or(LabError::RpchWithoutExchange)?;
    let unix_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let auth = HttpAuthenticator::for_world(world, config.rpch_auth.clone(), seed, unix_now);
    let proxy = RpcProxy::new(ProxyConfig::default());
    let (shared, run) = rpch::start(proxy, auth, exchange, shutdown.subscribe());
    tasks.spawn(run);
    let specs: Vec<(SocketAddr, bool)> = config.rpch.iter().map(|r| (r.addr, r.tls)).collect();
    let max = config.limits.max_connections;
    let bound = bind_http(
        &specs,
        ["rpch", "rpch-tls"],
        tls,
        tasks,
        |listener, acceptor| {
            rpch::accept_loop(
                listener,
                shared.clone(),
                acceptor,
                max,
                shutdown.subscribe(),
            )
        },
    )?;
    Ok(config.rpch.iter().copied().zip(bound).collect())
}

/// How long [`Lab::shutdown`] waits for sessions to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

async fn accept_loop(
    listener: TcpListener,
    spec: ListenerSpec,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let max_connections = shared.limits.max_connections;
    let handle = move |tcp, admission: Admission| {
        let shared = shared.clone();
        shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
        if matches!(admission, Admission::OverLimit) {
            shared
                .stats
                .refused_over_limit
                .fetch_add(1, Ordering::Relaxed);
        }
        let live = LiveGuard::new(&shared.stats);
        async move {
            let serve = |tcp, shutdown| async {
                shared.stats.active.fetch_add(1, Ordering::Relaxed);
                serve_connection(tcp, spec, &shared, shutdown).await;
                shared.stats.active.fetch_sub(1, Ordering::Relaxed);
            };
            admission.serve_or_refuse(tcp, spec, serve).await;
            drop(live);
        }
    };
    accept_connections(listener, max_connections, shutdown, handle).await;
}

async fn serve_connection(
    tcp: TcpStream,
    spec: ListenerSpec,
    shared: &Shared,
    shutdown: watch::Receiver<bool>,
) {
    let implicit = spec.security == Security::ImplicitTls;
    let conn = match Conn::accept(tcp, implicit.then_some(&shared.tls.acceptor)).await {
        Ok(c) => c,
        Err(_) => return,
    };
    let n = shared.next_session.fetch_add(1, Ordering::Relaxed);
    let ctx = SessionContext {
        world: shared.world.clone(),
        profile: shared.profile.clone(),
        limits: shared.limits.clone(),
        transport: Transport {
            tls_active: implicit,
            starttls_available: shared.starttls && !implicit,
        },
        seed: shared.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        epoch_secs: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        budget: shared.budget.clone(),
    };
    let session: Box<dyn ServerSession> = match spec.protocol {
        Protocol::Imap => Box::new(ImapServer::new(ctx)),
        Protocol::Pop3 => Box::new(Pop3Server::new(ctx)),
    };
    let write_timeout = shared.limits.idle_timeout.min(Duration::from_secs(60));
    let tls = (!implicit && shared.starttls).then(|| shared.tls.acceptor.clone());
    let ended = drive(conn, session, tls, shutdown, write_timeout).await;
    tracing::debug!(listener = spec.scheme(), ?ended, "session ended");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connections the kernel completes before anyone calls accept() are queued up to the
    /// backlog; past it, SYNs are dropped and connect() hangs. `TcpListener::bind`'s 128
    /// fails this; the lab's listeners must take a burst of several hundred at once.
    #[tokio::test]
    async fn listeners_queue_a_burst_of_hundreds_of_connections_before_accepting() {
        const BURST: usize = 512;
        let listener = bind_listener(([127, 0, 0, 1], 0).into()).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connected = tokio::task::spawn_blocking(move || {
            let mut held = Vec::new();
            for i in 0..BURST {
                match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                    Ok(tcp) => held.push(tcp),
                    Err(e) => return Err(format!("connection {i} of {BURST}: {e}")),
                }
            }
            Ok(held.len())
        })
        .await
        .expect("join");
        drop(listener);
        assert_eq!(connected, Ok(BURST));
    }
}
