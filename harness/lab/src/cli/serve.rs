//! `harness serve`: the mock endpoints (and front-ends) until Ctrl-C or SIGTERM.

use harness_core::web::provider::AppHost;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use harness::serve::frontend_host::{BackendTarget, BackendTls, FrontendSpec};
use harness::serve::gc::GcSpec;
use harness::serve::lab::{RpchListenerSpec, WebListenerSpec};
use harness::serve::labfile::{frontend_profile, round_trip_stages};
use harness::serve::rpc::{RpcListenerSpec, RpcRole};
use harness::{Lab, LabConfig, ListenerSpec, Protocol, Security};
use harness_core::budget::DEFAULT_MEMORY_BUDGET;
use harness_core::dcerpc::emsmdb::EmsmdbProfile;
use harness_core::dcerpc::server::{AuthFailureFault, EndpointConfig, MIN_FRAG};
use harness_core::http_auth::HttpScheme;
use harness_core::profile::PROFILE_NAMES;
use harness_core::{LabFile, Limits, Profile};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Lab file (TOML: domain, users, mailboxes, messages, front-ends). Default: the
    /// built-in lab.
    #[arg(long)]
    lab: Option<PathBuf>,
    /// Plain IMAP listener (STARTTLS offered). Default 127.0.0.1:1143 when no listener is given.
    #[arg(long)]
    imap: Option<SocketAddr>,
    /// Plain POP3 listener (STLS offered). Default 127.0.0.1:1110 when no listener is given.
    #[arg(long)]
    pop3: Option<SocketAddr>,
    /// IMAP over implicit TLS.
    #[arg(long)]
    imaps: Option<SocketAddr>,
    /// POP3 over implicit TLS.
    #[arg(long)]
    pop3s: Option<SocketAddr>,
    /// Server profile (see `harness profiles`).
    #[arg(long, default_value = "default")]
    profile: String,
    /// Add a user (or replace its password) on top of the lab file: NAME:PASSWORD.
    #[arg(long = "user", value_name = "NAME:PASSWORD")]
    users: Vec<String>,
    /// Close a session silent for this many seconds.
    #[arg(long, default_value_t = Limits::default().idle_timeout.as_secs_f64())]
    idle_timeout: f64,
    /// Close a session whose command has not arrived whole this many seconds after its
    /// first byte (a client trickling bytes).
    #[arg(long, default_value_t = Limits::default().line_timeout.as_secs_f64())]
    line_timeout: f64,
    /// Connections served at once per listener.
    #[arg(long, default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    /// Longest command line accepted, in bytes.
    #[arg(long, default_value_t = Limits::default().max_line)]
    max_line: usize,
    /// Largest literal accepted, in bytes.
    #[arg(long, default_value_t = Limits::default().max_literal)]
    max_literal: usize,
    /// Bytes of pending literal data all sessions together may make the server hold; a
    /// literal past it is refused (`NO [LIMIT]`) before it is buffered.
    #[arg(long, default_value_t = DEFAULT_MEMORY_BUDGET)]
    memory_budget: usize,
    /// Advertise APPENDLIMIT=<max-literal> in the IMAP CAPABILITY (RFC 7889).
    #[arg(long)]
    append_limit: bool,
    /// Offer UNAUTHENTICATE (RFC 8437) in the IMAP CAPABILITY: a client (or a front-end's
    /// pool) may reuse a connection for another user.
    #[arg(long)]
    unauthenticate: bool,
    /// Do not offer STARTTLS / STLS on plain listeners.
    #[arg(long)]
    no_starttls: bool,
    /// Seed for challenges and timestamps (repeatable runs).
    #[arg(long)]
    seed: Option<u64>,
    /// Write the self-signed certificate (PEM) here, for clients that verify it.
    #[arg(long)]
    cert_out: Option<PathBuf>,
    /// Allow listening on addresses other than loopback.
    #[arg(long)]
    public: bool,
    /// DCE/RPC listener (ncacn_ip_tcp) for the Exchange interfaces (RFR; NSPI and EMSMDB
    /// as they land), NTLM at every level against the lab's users.
    #[arg(long)]
    rpc: Option<SocketAddr>,
    /// DCE/RPC endpoint mapper listener (Windows: port 135): ept_map and ept_lookup name
    /// the --rpc listener's interfaces and port.
    #[arg(long)]
    epm: Option<SocketAddr>,
    /// Which Exchange the --rpc listener's EMSMDB plays: exchange2010 (EcDoConnectEx and
    /// EcDoRpcExt2 only) or exchange2003 (EcDoConnect and EcDoRpc, opnums 0 and 2, too).
    #[arg(long, default_value = "exchange2010")]
    rpc_profile: EmsmdbProfile,
    /// How the RPC endpoint refuses a request after a failed NTLM logon: windows
    /// (access_denied, the connection stays) or samba (nca_s_proto_error, then a close).
    #[arg(long, default_value = "windows")]
    rpc_refusals: AuthFailureFault,
    /// Outlook Anywhere (RPC over HTTP v2) listener, plain HTTP, in front of --rpc: the
    /// proxy that impacket's exchanger and Outlook reach at /rpc/rpcproxy.dll.
    #[arg(long)]
    rpch: Option<SocketAddr>,
    /// The same over TLS (the lab's self-signed certificate; --cert-out writes it).
    #[arg(long)]
    rpch_tls: Option<SocketAddr>,
    /// HTTP authentication the RPC proxy offers, in order: ntlm, basic (comma-separated).
    #[arg(long, default_value = "ntlm,basic", value_delimiter = ',')]
    rpch_auth: Vec<String>,
    /// How the RPC proxy reaches the Exchange endpoint: tcp (a connection to --rpc per
    /// virtual connection, as a separate proxy server would) or in-process (an in-memory
    /// pipe to the same endpoint: one socket hop fewer).
    #[arg(long, default_value = "tcp", value_parser = ["tcp", "in-process"])]
    rpch_backend: String,
    /// Kerberos KDC (UDP and TCP on one port) for the world's realm (its DNS domain in
    /// capitals): the users with their passwords, and the service principals of the web
    /// tier, the store and the global catalogs.
    #[arg(long)]
    kdc: Option<SocketAddr>,
    /// The web tier (KB 918710's IIS server), plain HTTP: Negotiate (Kerberos, with the
    /// world's HTTP/<host> keys), NTLM and Basic; `/whoami` shows the logon token a page
    /// runs under and the next hops it allows.
    #[arg(long)]
    web: Option<SocketAddr>,
    /// The same over TLS (the lab's self-signed certificate; --cert-out writes it).
    #[arg(long)]
    web_tls: Option<SocketAddr>,
    /// HTTP authentication the web tier offers: negotiate, ntlm, basic (comma-separated).
    #[arg(long, default_value = "negotiate,ntlm,basic", value_delimiter = ',')]
    web_auth: Vec<String>,
    /// The web tier's application runs on the Exchange host: `/mailbox` reaches the
    /// store by local RPC (no second hop). Without it, the application is on its own
    /// host and the store a network hop away (Kerberos via --kdc, Exchange RPC via --rpc).
    #[arg(long)]
    web_on_exchange_host: bool,
    /// The KDC the web tier's application asks for the store's tickets when it is not
    /// the lab's own (--kdc): MIT's krb5kdc serving the same principals, for one.
    #[arg(long)]
    web_kdc: Option<SocketAddr>,
    /// The Exchange WebDAV store, plain HTTP: PROPFIND and SEARCH on
    /// /exchange/<user>/<folder>/, with the web tier's authentication (--web-auth).
    #[arg(long)]
    webdav: Option<SocketAddr>,
    /// The same over TLS (the lab's self-signed certificate; --cert-out writes it).
    #[arg(long)]
    webdav_tls: Option<SocketAddr>,
    /// A global catalog's NSPI listener, NAME=ADDR (its host is NAME.<dns domain>, its
    /// principal exchangeAB/NAME.<dns domain>); repeat for more. NTLM and Kerberos at
    /// every level, as the Exchange endpoint's NSPI.
    #[arg(long = "gc", value_parser = parse_gc)]
    gcs: Vec<GcSpec>,
    /// Largest DCE/RPC fragment the RPC listeners send and accept (at least 1432).
    #[arg(long, default_value_t = EndpointConfig::default().max_frag)]
    rpc_max_frag: u16,
    /// Largest reassembled request stub, in bytes.
    #[arg(long, default_value_t = EndpointConfig::default().max_stub)]
    rpc_max_stub: usize,
    /// Calls one RPC association may make; later ones get nca_s_server_too_busy.
    #[arg(long, default_value_t = EndpointConfig::default().max_calls)]
    rpc_max_calls: u64,
    /// Front-end profile for --fe-imap / --fe-pop3 (exchange2000-rtm, exchange2000-sp1,
    /// affinity, per-session, session-cache, pool-unauthenticate).
    #[arg(long, default_value = "exchange2000-rtm")]
    frontend: String,
    /// IMAP front-end listener, relaying through a pool to --fe-backend-imap (default:
    /// this lab's --imap listener).
    #[arg(long)]
    fe_imap: Option<SocketAddr>,
    /// POP3 front-end listener, relaying to --fe-backend-pop3 (default: this lab's --pop3).
    #[arg(long)]
    fe_pop3: Option<SocketAddr>,
    /// Back-end for the IMAP front-end, e.g. a Dovecot on loopback.
    #[arg(long)]
    fe_backend_imap: Option<SocketAddr>,
    /// Back-end for the POP3 front-end.
    #[arg(long)]
    fe_backend_pop3: Option<SocketAddr>,
    /// Idle back-end connections the front-end keeps open (default: the profile's, 4);
    /// size it to the client count for load runs.
    #[arg(long)]
    fe_pool_size: Option<usize>,
    /// Parked back-end sessions the `session-cache` front-end keeps (default: the
    /// profile's, 16).
    #[arg(long)]
    fe_cache_size: Option<usize>,
    /// The front-ends reach their back-ends over implicit TLS (default back-end: this
    /// lab's --imaps / --pop3s), verifying the certificate (this lab's own, or --fe-backend-trust).
    #[arg(long)]
    fe_backend_tls: bool,
    /// PEM certificates the front-ends trust on a TLS back-end hop (e.g. another
    /// `harness serve --cert-out`).
    #[arg(long, requires = "fe_backend_tls")]
    fe_backend_trust: Option<PathBuf>,
    /// A full TLS handshake for every back-end connection (no session resumption).
    #[arg(long, requires = "fe_backend_tls")]
    fe_backend_no_resumption: bool,
    /// Emulated round-trip time on the hop from the front-ends to their back-ends, in
    /// milliseconds (half of it each way), e.g. 0.5.
    #[arg(long, default_value_t = 0.0)]
    fe_backend_rtt_ms: f64,
}

pub fn run(args: ServeArgs) -> Result<()> {
    let (mut lab, mut frontends) = match &args.lab {
        Some(path) => harness::serve::labfile::load_with_frontends(path)?,
        None => (LabFile::default_lab(), Vec::new()),
    };
    for entry in &args.users {
        let Some((name, password)) = entry.split_once(':') else {
            bail!("--user takes NAME:PASSWORD, got {entry:?}");
        };
        lab.add_user(name, password);
    }
    let Some(mut profile) = Profile::by_name(&args.profile) else {
        bail!(
            "unknown profile {:?}; known: {}",
            args.profile,
            PROFILE_NAMES.join(", ")
        );
    };
    profile.imap.append_limit |= args.append_limit;
    profile.imap.unauthenticate |= args.unauthenticate;
    let idle_timeout = Duration::try_from_secs_f64(args.idle_timeout)
        .context("--idle-timeout must be a non-negative number of seconds")?;
    let line_timeout = Duration::try_from_secs_f64(args.line_timeout)
        .context("--line-timeout must be a non-negative number of seconds")?;
    let mut listeners = Vec::new();
    let mut add = |addr: Option<SocketAddr>, protocol, security| {
        if let Some(addr) = addr {
            listeners.push(ListenerSpec::new(protocol, security, addr));
        }
    };
    add(args.imap, Protocol::Imap, Security::Plain);
    add(args.pop3, Protocol::Pop3, Security::Plain);
    add(args.imaps, Protocol::Imap, Security::ImplicitTls);
    add(args.pop3s, Protocol::Pop3, Security::ImplicitTls);
    let stages = round_trip_stages(args.fe_backend_rtt_ms)
        .map_err(|e| anyhow::anyhow!("--fe-backend-rtt-ms: {e}"))?;
    let tls = args.fe_backend_tls.then(|| BackendTls {
        trusted: args.fe_backend_trust.clone(),
        resumption: !args.fe_backend_no_resumption,
    });
    for (addr, protocol, backend) in [
        (args.fe_imap, Protocol::Imap, args.fe_backend_imap),
        (args.fe_pop3, Protocol::Pop3, args.fe_backend_pop3),
    ] {
        if let Some(addr) = addr {
            let profile = frontend_profile(&args.frontend, args.fe_pool_size, args.fe_cache_size)
                .map_err(anyhow::Error::msg)?;
            let target = BackendTarget {
                addr: backend,
                tls: tls.clone(),
                stages: stages.clone(),
            };
            frontends.push(FrontendSpec {
                protocol,
                addr,
                profile,
                backend: (target != BackendTarget::default()).then_some(target),
            });
        }
    }
    let mut rpc = Vec::new();
    for (addr, role) in [
        (args.rpc, RpcRole::Exchange),
        (args.epm, RpcRole::EndpointMapper),
    ] {
        if let Some(addr) = addr {
            rpc.push(RpcListenerSpec { role, addr });
        }
    }
    if args.rpc_max_frag < MIN_FRAG {
        bail!("--rpc-max-frag must be at least {MIN_FRAG} (every DCE/RPC peer must take that)");
    }
    if args.epm.is_some() && args.rpc.is_none() {
        bail!("--epm names the --rpc listener's interfaces: give --rpc too");
    }
    if (args.rpch.is_some() || args.rpch_tls.is_some()) && args.rpc.is_none() {
        bail!("--rpch and --rpch-tls proxy to the --rpc listener: give --rpc too");
    }
    let rpch_auth = args
        .rpch_auth
        .iter()
        .map(|name| name.parse::<HttpScheme>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--rpch-auth {e}"))?;
    let rpch: Vec<RpchListenerSpec> = [(args.rpch, false), (args.rpch_tls, true)]
        .into_iter()
        .filter_map(|(addr, tls)| addr.map(|addr| RpchListenerSpec { addr, tls }))
        .collect();
    let web_auth = args
        .web_auth
        .iter()
        .map(|name| name.parse::<HttpScheme>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--web-auth {e}"))?;
    let web: Vec<WebListenerSpec> = [(args.web, false), (args.web_tls, true)]
        .into_iter()
        .filter_map(|(addr, tls)| addr.map(|addr| WebListenerSpec { addr, tls }))
        .collect();
    let webdav: Vec<WebListenerSpec> = [(args.webdav, false), (args.webdav_tls, true)]
        .into_iter()
        .filter_map(|(addr, tls)| addr.map(|addr| WebListenerSpec { addr, tls }))
        .collect();
    if listeners.is_empty()
        && frontends.is_empty()
        && rpc.is_empty()
        && args.kdc.is_none()
        && web.is_empty()
        && webdav.is_empty()
        && args.gcs.is_empty()
    {
        listeners.push(ListenerSpec::new(
            Protocol::Imap,
            Security::Plain,
            ([127, 0, 0, 1], 1143).into(),
        ));
        listeners.push(ListenerSpec::new(
            Protocol::Pop3,
            Security::Plain,
            ([127, 0, 0, 1], 1110).into(),
        ));
    }
    let config = LabConfig {
        lab,
        profile,
        limits: Limits {
            max_line: args.max_line,
            max_literal: args.max_literal,
            idle_timeout,
            line_timeout,
            max_connections: args.max_connections,
        },
        listeners,
        starttls: !args.no_starttls,
        seed: args.seed,
        allow_non_loopback: args.public,
        frontends,
        memory_budget: args.memory_budget,
        rpc,
        rpc_profile: args.rpc_profile,
        rpc_endpoint: EndpointConfig {
            max_frag: args.rpc_max_frag,
            max_stub: args.rpc_max_stub,
            max_calls: args.rpc_max_calls,
            auth_failure: args.rpc_refusals,
            ..EndpointConfig::default()
        },
        rpch,
        rpch_auth,
        rpch_in_process: args.rpch_backend == "in-process",
        kdc: args.kdc,
        web,
        web_auth,
        web_app_host: if args.web_on_exchange_host {
            AppHost::ExchangeHost
        } else {
            AppHost::WebTier
        },
        web_kdc: args.web_kdc,
        webdav,
        gcs: args.gcs.clone(),
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let lab = Lab::start(config).await?;
        if let Some(path) = &args.cert_out {
            std::fs::write(path, lab.certificate_pem())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        let users: Vec<String> = lab
            .world()
            .directory
            .principals()
            .map(|p| p.name.clone())
            .collect();
        println!(
            "harness serve: profile {}, domain {}, users {}",
            lab.profile().name,
            lab.world().domain,
            users.join(", ")
        );
        for l in lab.listening() {
            let extra = match (l.spec.security, args.no_starttls) {
                (Security::Plain, false) => match l.spec.protocol {
                    Protocol::Imap => " (STARTTLS)",
                    Protocol::Pop3 => " (STLS)",
                },
                (Security::ImplicitTls, _) => " (TLS)",
                _ => "",
            };
            println!("listening {:<5} {}{}", l.spec.scheme(), l.addr, extra);
        }
        for f in lab.frontends() {
            let scheme = match f.spec.protocol {
                Protocol::Imap => "fe-imap",
                Protocol::Pop3 => "fe-pop3",
            };
            let hop = f.spec.backend.clone().unwrap_or_default();
            let tls = if hop.tls.is_some() { " over TLS" } else { "" };
            let rtt = harness::serve::hop::one_way_delay(&hop.stages) * 2;
            let rtt = if rtt.is_zero() {
                String::new()
            } else {
                format!(", round trip {rtt:?}")
            };
            println!(
                "listening {scheme} {} (front-end {} -> back-end {}{tls}{rtt})",
                f.addr, f.spec.profile.name, f.backend
            );
        }
        for r in lab.rpc_listening() {
            println!(
                "listening {:<5} {} (ncacn_ip_tcp, NTLM, Kerberos)",
                r.spec.role.scheme(),
                r.addr
            );
        }
        for (tls, scheme, url) in [(false, "rpch", "http"), (true, "rpchs", "https")] {
            if let Some(addr) = lab.rpch_addr(tls) {
                println!(
                    "listening {scheme:<5} {addr} (Outlook Anywhere: {url}://{addr}/rpc/rpcproxy.dll)"
                );
            }
        }
        if let (Some(addr), Some(kdc)) = (lab.kdc_addr(), lab.kdc()) {
            let services = kdc.with(|k| {
                k.db()
                    .entries()
                    .filter(|e| e.kind == harness_core::kerberos::EntryKind::Service)
                    .map(|e| {
                        let flag = if e.ok_as_delegate { " (ok-as-delegate)" } else { "" };
                        format!("{}{flag}", e.name)
                    })
                    .collect::<Vec<_>>()
            });
            println!(
                "listening kdc   {addr} (udp+tcp, realm {}; services {})",
                kdc.realm(),
                services.join(", ")
            );
        }
        for (tls, scheme, url) in [(false, "web", "http"), (true, "webs", "https")] {
            if let Some(addr) = lab.web_addr(tls) {
                println!(
                    "listening {scheme:<5} {addr} (web tier: {url}://{addr}/whoami, \
                     {url}://{addr}/mailbox?provider=exchange|outlook|webdav)"
                );
            }
        }
        for (tls, scheme, url) in [(false, "webdav", "http"), (true, "webdavs", "https")] {
            if let Some(addr) = lab.webdav_addr(tls) {
                println!(
                    "listening {scheme:<5} {addr} (Exchange WebDAV: {url}://{addr}/exchange/<user>/Inbox/)"
                );
            }
        }
        if let Some(gcs) = lab.gcs() {
            for (_, fqdn, addr) in gcs.addrs().await {
                println!("listening gc    {addr} (NSPI of the global catalog {fqdn})");
            }
        }
        let stats_on_request = print_stats_on_sigusr1(&lab)?;
        println!("press Ctrl-C to stop");
        tokio::select! {
            r = wait_for_stop_signal() => r?,
            _ = stats_on_request => {}
        }
        // stdout may be gone by now (a closed pipe); that must not turn a clean stop into
        // a panic.
        let _ = writeln!(std::io::stdout(), "shutting down");
        lab.shutdown().await;
        anyhow::Ok(())
    })
}

/// One line of the lab's counters, as printed on SIGUSR1.
fn stats_line(lab: &Lab) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let s = lab.stats();
    format!(
        "stats: accepted {} live {} refused-over-limit {}",
        s.accepted.load(Relaxed),
        lab.live_connections(),
        s.refused_over_limit.load(Relaxed)
    )
}

/// A future that prints [`stats_line`] on every SIGUSR1 and never ends (pending forever
/// where there is no SIGUSR1). The handler is installed before this returns, so a signal
/// sent after the "press Ctrl-C" line cannot kill the process.
fn print_stats_on_sigusr1(lab: &Lab) -> Result<impl std::future::Future<Output = ()> + '_> {
    #[cfg(unix)]
    {
        let mut usr1 =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
                .context("installing the SIGUSR1 handler")?;
        Ok(async move {
            while usr1.recv().await.is_some() {
                let _ = writeln!(std::io::stdout(), "{}", stats_line(lab));
            }
            std::future::pending::<()>().await
        })
    }
    #[cfg(not(unix))]
    Ok(std::future::pending::<()>())
}

/// Ctrl-C, or SIGTERM (how scripts and tests stop a process by PID).
async fn wait_for_stop_signal() -> Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}

/// `--gc NAME=ADDR`: a host name's first label and a socket address.
fn parse_gc(text: &str) -> Result<GcSpec, String> {
    let (name, addr) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected NAME=ADDR, e.g. gc1=127.0.0.1:3268"))?;
    if name.is_empty()
        || name.len() > 15
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(format!(
            "{name:?} is no host name (letters, digits and '-', at most 15)"
        ));
    }
    let addr = addr
        .parse()
        .map_err(|e| format!("{addr:?} is no socket address: {e}"))?;
    Ok(GcSpec {
        name: name.to_string(),
        addr,
    })
}
