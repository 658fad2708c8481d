//! The RPC side of one lab: the Exchange endpoint (EMSMDB, AsyncEMSMDB, NSPI, RFR)
//! and the endpoint mapper that points clients at it, built from the lab's world. The adapter
//! binds the sockets first (so the ports are known), then builds these.

use std::sync::Arc;

use std::net::Ipv4Addr;

use super::emsmdb::{EmsmdbConfig, EmsmdbServer};
use super::epm::{EndpointMap, EpmInterface, EPM_PORT};
use super::kerberos::{KerberosClock, KerberosServerFactory, OfferedSecurity};
use super::nspi::Nspi;
use super::ntlm::{NtlmServerFactory, PasswordLookup};
use super::rfr::{Referral, Rfr};
use super::security::ServerSecurityFactory;
use super::server::{Endpoint, EndpointConfig};
use super::RpcInterface;
use crate::ntlm::AcceptorConfig;
use crate::rng::SeededRng;
use crate::sasl::filetime_from_unix;
use crate::world::World;

/// Where the RPC listeners are and how they behave.
#[derive(Debug, Clone)]
pub struct RpcLabConfig {
    /// The Exchange endpoint's TCP port (named in bind_acks and endpoint-mapper towers).
    pub exchange_port: u16,
    /// The Exchange endpoint's IPv4 address, for endpoint-mapper towers.
    pub exchange_ip: [u8; 4],
    /// Limits and choices every RPC listener of the lab shares.
    pub endpoint: EndpointConfig,
    /// Seeds the NTLM challenges: the same seed replays byte for byte.
    pub seed: u64,
    /// Seconds since the Unix epoch, for the NTLM CHALLENGE timestamp.
    pub unix_now: u64,
    /// The Kerberos acceptor's clock (authenticators are checked against it); None: fixed
    /// at `unix_now`, for in-process runs that replay.
    pub kerberos_clock: Option<KerberosClock>,
}

/// The endpoints and the interfaces a test or a later case may want to reach.
#[derive(Clone)]
pub struct RpcEndpoints {
    pub exchange: Arc<Endpoint>,
    /// The address book (the GC-failover case swaps or drops its book).
    pub nspi: Arc<Nspi>,
    /// The endpoint mapper, which names the Exchange endpoint's interfaces and port.
    pub epm: Arc<Endpoint>,
    pub map: Arc<EndpointMap>,
    pub rfr: Arc<Rfr>,
    /// The sessions EMSMDB and AsyncEMSMDB share.
    pub emsmdb: Arc<EmsmdbServer>,
}

impl std::fmt::Debug for RpcEndpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcEndpoints")
            .field("exchange", &self.exchange)
            .finish_non_exhaustive()
    }
}

/// NTLM against the world's directory (the domain the client names is not checked: the
/// lab has one).
pub fn ntlm_for_world(world: &Arc<World>, seed: u64, unix_now: u64) -> NtlmServerFactory {
    let directory = Arc::clone(world);
    let passwords: PasswordLookup =
        Arc::new(move |user: &str, _domain: &str| directory.directory.password(user));
    NtlmServerFactory::new(
        AcceptorConfig::for_world(world),
        passwords,
        SeededRng::new(seed),
        filetime_from_unix(unix_now),
    )
}

/// NTLM (auth_type 10) and Kerberos (16, and 9 with the krb5 mechanism) against the
/// world: the directory's passwords, the store's service keys from the world's realm.
pub fn security_for_world(
    world: &Arc<World>,
    config: &RpcLabConfig,
) -> Arc<dyn ServerSecurityFactory> {
    let fixed = i64::try_from(config.unix_now).unwrap_or(i64::MAX);
    let clock = config
        .kerberos_clock
        .clone()
        .map_or_else(|| Arc::new(move || fixed) as _, |c| c.0);
    // Another stream than the NTLM challenges', from the same seed.
    let kerberos = KerberosServerFactory::for_world(world, clock, config.seed ^ 0x4b52_4235);
    Arc::new(OfferedSecurity::new(vec![
        Arc::new(ntlm_for_world(world, config.seed, config.unix_now)),
        Arc::new(kerberos),
    ]))
}

/// The referral a one-server lab gives: its own host is the global catalog and the
/// only mailbox server.
pub fn referral_for_world(world: &World) -> Referral {
    let short = world.hostname.split('.').next().unwrap_or("MAIL");
    Referral {
        nspi_servers: vec![world.hostname.clone()],
        mailbox_servers: vec![(short.to_ascii_uppercase(), world.hostname.clone())],
    }
}

impl RpcEndpoints {
    pub fn for_world(world: &Arc<World>, config: &RpcLabConfig) -> RpcEndpoints {
        Self::for_world_with(world, config, EmsmdbConfig::default())
    }

    /// As [`RpcEndpoints::for_world`], with EMSMDB's timings and limits given (tests
    /// shorten the EcDoAsyncWaitEx timeout).
    pub fn for_world_with(
        world: &Arc<World>,
        config: &RpcLabConfig,
        emsmdb_config: EmsmdbConfig,
    ) -> RpcEndpoints {
        Self::for_world_wrapped(world, config, emsmdb_config, &|interface| interface)
    }

    /// Like [`RpcEndpoints::for_world_with`], each interface passed through `wrap` before
    /// the endpoints serve it (the fuzz targets record which calls reach an interface).
    pub fn for_world_wrapped(
        world: &Arc<World>,
        config: &RpcLabConfig,
        emsmdb_config: EmsmdbConfig,
        wrap: &dyn Fn(Arc<dyn RpcInterface>) -> Arc<dyn RpcInterface>,
    ) -> RpcEndpoints {
        let security = security_for_world(world, config);
        let rfr = Rfr::new(referral_for_world(world));
        let nspi = Arc::new(Nspi::for_world(world));
        let emsmdb = EmsmdbServer::new(Arc::clone(world), emsmdb_config);
        let (sync_interface, async_interface) = emsmdb.interfaces();
        let interfaces: Vec<Arc<dyn RpcInterface>> = vec![
            wrap(sync_interface),
            wrap(async_interface),
            wrap(nspi.clone()),
            wrap(rfr.clone()),
        ];
        let map = Arc::new(EndpointMap::new(Ipv4Addr::from(config.exchange_ip)));
        for interface in &interfaces {
            let annotation = format!("Exchange {}", interface.name().to_ascii_uppercase());
            map.register(interface.syntax(), &annotation, config.exchange_port);
        }
        let endpoint_config = EndpointConfig {
            secondary_address: config.exchange_port.to_string(),
            ..config.endpoint.clone()
        };
        let exchange = Endpoint::new(endpoint_config, interfaces, Some(security.clone()));
        // Windows' endpoint mapper takes unauthenticated and authenticated binds alike.
        let epm_config = EndpointConfig {
            secondary_address: EPM_PORT.to_string(),
            ..config.endpoint.clone()
        };
        let epm_interface = wrap(Arc::new(EpmInterface::new(map.clone())));
        let epm = Endpoint::new(epm_config, vec![epm_interface], Some(security));
        RpcEndpoints {
            exchange,
            nspi,
            epm,
            map,
            rfr,
            emsmdb,
        }
    }
}
