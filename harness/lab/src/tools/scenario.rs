//! Scenario cases over real sockets: each case gets a fresh lab (with a front-end
//! listener when its topology names one, an Exchange RPC listener for a `mapi` case, and
//! the Outlook Anywhere listener when a `mapi` case goes through the proxy), the driver's
//! client plays over TCP (through the proxy: each connection a virtual connection over
//! two HTTP channels) with the real clock, and the same expectations as the in-process
//! runner are checked. What happens behind the front-end is not traced here (the
//! in-process runner shows that); through the proxy, the trace says which virtual
//! connections opened and which channel was refused with what status.

use std::net::SocketAddr;
use std::time::Duration;

use harness_core::driver::{self, ClientSession, MapiApp, MapiClient};
use harness_core::frontend::FrontendProfile;
use harness_core::gc::failover::{self, FailoverCase};
use harness_core::gc::reach::DirectorySite;
use harness_core::gc::Topology;
use harness_core::scenario::{
    evaluate, evaluate_failover, probe_from_report, probe_script, Case, CaseClient, CaseOutcome,
    CasePlan, CaseTarget, ScenarioError, ScenarioFile,
};
use harness_core::script;
use harness_core::Protocol;

use super::client_driver::{drive_client, drive_route, Route, RouteLog};
use super::dcerpc_client::{HttpAuth, HttpProxy};
use super::gc_failover::{ExternalKdc, SocketSite};
use super::play::SocketTransport;
use super::web_browser::{browse, WebTarget};
use crate::serve::frontend_host::FrontendSpec;
use crate::serve::gc::GcSpec;
use crate::serve::lab::{RpchListenerSpec, WebListenerSpec};
use crate::serve::rpc::{RpcListenerSpec, RpcRole};
use crate::serve::tls::pinned_client_config;
use crate::{Lab, LabConfig, LabError, ListenerSpec, Security};
use harness_core::http_auth::HttpScheme;
use harness_core::ntlm::Credentials;
use harness_core::scenario::rpc_proxy_scheme;
use harness_core::web::double_hop::BrowserAuth;

/// Longest a client may take over sockets before the case is cut off.
const CASE_TIMEOUT: Duration = Duration::from_secs(60);
/// Simulated user think time at a prompt: short, since a real clock is running.
const THINK_TIME: Duration = Duration::from_millis(10);
/// A `mapi-service` case's poll interval on the real clock (in process: 2 s of virtual
/// time).
const SOCKET_POLL_INTERVAL: Duration = Duration::from_millis(150);
/// The mail goes once the service's session exists (its logon registered for new mail)
/// or the server refused it, and this much later (the notification thread's calls come
/// first, as at one second of virtual time in process); at the latest after
/// `SOCKET_MAIL_LATEST`.
const SOCKET_MAIL_AFTER_LOGON: Duration = Duration::from_millis(30);
const SOCKET_MAIL_LATEST: Duration = Duration::from_millis(1000);

/// LOGIN and APPEND over TCP to the lab's IMAP listener, as another party's client; the
/// tagged reply to APPEND (or why there was none).
async fn imap_append(addr: SocketAddr, user: &str, password: &str) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let message = "From: bob@example.test\r\nSubject: while you were connected\r\n\r\nhello\r\n";
    let run = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let (rd, mut wr) = tcp.into_split();
        let mut lines = BufReader::new(rd).lines();
        lines.next_line().await?;
        let mut reply = String::from("no reply");
        let commands = [
            format!("M1 LOGIN {user} {password}\r\n"),
            format!("M2 APPEND INBOX {{{}}}\r\n", message.len()),
            format!("{message}\r\n"),
            "M3 LOGOUT\r\n".to_string(),
        ];
        for (i, command) in commands.iter().enumerate() {
            wr.write_all(command.as_bytes()).await?;
            // The literal's head waits for '+'; the others for their tagged reply.
            let tag = ["M1 ", "+", "M2 ", "M3 "][i];
            while let Some(line) = lines.next_line().await? {
                if line.starts_with(tag) {
                    if tag == "M2 " {
                        reply = line;
                    }
                    break;
                }
            }
        }
        Ok::<String, std::io::Error>(reply)
    };
    match tokio::time::timeout(Duration::from_secs(10), run).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) => format!("failed: {e}"),
        Err(_) => "timed out".into(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SocketRunError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error(transparent)]
    Lab(#[from] LabError),
    #[error("unknown front-end profile {0:?}")]
    UnknownFrontend(String),
    #[error("case {0} did not finish within {CASE_TIMEOUT:?}")]
    Timeout(String),
    #[error("case {0}: {1}")]
    Site(String, String),
}

/// GC failover over sockets: a lab with the KDC, the Exchange RPC listener (the referral
/// service) and one NSPI listener per global catalog of the timeline; the provider on a
/// blocking thread, the timeline stopping and starting the listeners.
/// An `address-book` case over sockets whose provider asks `kdc` (a KDC outside the lab
/// serving the same realm, MIT's for one) for its tickets.
pub async fn run_address_book_with_kdc(
    scenario: &ScenarioFile,
    case: &Case,
    kdc: ExternalKdc,
) -> Result<CaseOutcome, SocketRunError> {
    let plan = CasePlan::new(scenario, case)?;
    match (&plan.target, &plan.client) {
        (CaseTarget::AddressBook(failover), CaseClient::Program { password }) => {
            run_address_book(scenario, case, &plan, *failover, password, Some(kdc)).await
        }
        _ => Err(ScenarioError::Syntax("not an address-book case".into()).into()),
    }
}

async fn run_address_book(
    scenario: &ScenarioFile,
    case: &Case,
    plan: &CasePlan,
    failover: FailoverCase,
    password: &str,
    kdc: Option<ExternalKdc>,
) -> Result<CaseOutcome, SocketRunError> {
    let Some(timeline) = scenario.timeline.clone() else {
        return Err(ScenarioError::Syntax("an address-book case needs a [timeline]".into()).into());
    };
    let lo: SocketAddr = ([127, 0, 0, 1], 0).into();
    let config = LabConfig {
        seed: Some(scenario.actor.seed),
        lab: plan.lab_file(),
        listeners: Vec::new(),
        kdc: Some(lo),
        rpc: vec![RpcListenerSpec {
            role: RpcRole::Exchange,
            addr: lo,
        }],
        gcs: timeline
            .gcs
            .iter()
            .map(|name| GcSpec {
                name: name.clone(),
                addr: lo,
            })
            .collect(),
        ..LabConfig::default()
    };
    let lab = Lab::start(config).await?;
    let world = lab.world().clone();
    let site = SocketSite::new(&lab, tokio::runtime::Handle::current()).await;
    let mut site = match site {
        Ok(site) => match kdc {
            Some(kdc) => site.with_kdc(kdc),
            None => site,
        },
        Err(e) => {
            lab.shutdown().await;
            return Err(SocketRunError::Site(case.id(), e.to_string()));
        }
    };
    let who = failover::identities(&world, &failover, &scenario.actor.user, password);
    let seed = scenario.actor.seed;
    let run = tokio::time::timeout(
        CASE_TIMEOUT,
        tokio::task::spawn_blocking(move || {
            let topology = Topology::start(&timeline, &world.dns_domain);
            site.apply(&topology, None);
            failover::run_on(&mut site, topology, &timeline, &failover, who, seed)
        }),
    )
    .await;
    lab.shutdown().await;
    let run = match run {
        Ok(Ok(run)) => run,
        Ok(Err(e)) => return Err(SocketRunError::Site(case.id(), e.to_string())),
        Err(_) => return Err(SocketRunError::Timeout(case.id())),
    };
    Ok(evaluate_failover(scenario, case, run))
}

/// Runs one case over sockets against a lab of its own.
pub async fn run_case(scenario: &ScenarioFile, case: &Case) -> Result<CaseOutcome, SocketRunError> {
    let plan = CasePlan::new(scenario, case)?;
    if let (CaseTarget::AddressBook(failover), CaseClient::Program { password }) =
        (&plan.target, &plan.client)
    {
        return run_address_book(scenario, case, &plan, *failover, password, None).await;
    }
    let lo: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut config = LabConfig {
        seed: Some(scenario.actor.seed),
        ..LabConfig::default()
    };
    match &plan.target {
        CaseTarget::Mail { protocol, profile } => {
            config.profile = (**profile).clone();
            config.listeners = vec![ListenerSpec::new(*protocol, Security::Plain, lo)];
            if plan.topology != "direct" {
                let profile = FrontendProfile::by_name(&plan.topology)
                    .ok_or_else(|| SocketRunError::UnknownFrontend(plan.topology.clone()))?;
                config.frontends.push(FrontendSpec {
                    protocol: *protocol,
                    addr: lo,
                    profile,
                    backend: None,
                });
            }
        }
        CaseTarget::Mapi { profile } => {
            config.lab = plan.lab_file();
            if matches!(plan.client, CaseClient::MapiApp(_)) {
                // The other party delivers new mail over IMAP.
                config.listeners = vec![ListenerSpec::new(Protocol::Imap, Security::Plain, lo)];
            }
            config.rpc = vec![RpcListenerSpec {
                role: RpcRole::Exchange,
                addr: lo,
            }];
            config.rpc_profile = *profile;
            if let Some(scheme) = rpc_proxy_scheme(&plan.topology) {
                config.rpch = vec![RpchListenerSpec {
                    addr: lo,
                    tls: false,
                }];
                config.rpch_auth = vec![scheme];
            }
        }
        // The double hop: the KDC, the store's Exchange RPC and WebDAV listeners and the
        // web tier.
        CaseTarget::Web(web) => {
            config.kdc = Some(lo);
            config.rpc = vec![RpcListenerSpec {
                role: RpcRole::Exchange,
                addr: lo,
            }];
            config.web = vec![WebListenerSpec {
                addr: lo,
                tls: web.auth == BrowserAuth::BasicTls,
            }];
            config.webdav = vec![WebListenerSpec {
                addr: lo,
                tls: false,
            }];
            config.web_app_host = web.app_host;
        }
        CaseTarget::AddressBook(_) => {
            return Err(ScenarioError::Syntax("an address-book case needs a program".into()).into())
        }
    }
    let lab = Lab::start(config).await?;
    let plan = plan.for_world(lab.world());
    let target = match &plan.target {
        CaseTarget::Mail { protocol, .. } => match lab.frontend_addr(*protocol) {
            Some(fe) => Some(fe),
            None => lab.addr(*protocol, Security::Plain),
        },
        CaseTarget::Mapi { .. } => lab.rpc_addr(RpcRole::Exchange),
        CaseTarget::Web(web) => lab.web_addr(web.auth == BrowserAuth::BasicTls),
        CaseTarget::AddressBook(_) => None,
    };
    let Some(target) = target else {
        lab.shutdown().await;
        return Err(LabError::NoListeners.into());
    };
    let route = match (
        &plan.client,
        rpc_proxy_scheme(&plan.topology),
        lab.rpch_addr(false),
    ) {
        // No proxy topology names Negotiate (the scenario client has no Kerberos tickets).
        (
            CaseClient::Mapi(cfg),
            Some(scheme @ (HttpScheme::Basic | HttpScheme::Ntlm)),
            Some(addr),
        ) => {
            let hostname = &lab.world().hostname;
            let server = hostname.split('.').next().unwrap_or("mail");
            let auth = match scheme {
                HttpScheme::Basic => HttpAuth::Basic {
                    user: cfg.user.clone(),
                    password: cfg.password.clone(),
                },
                // NTLM: the pattern above lets only Basic and NTLM through.
                _ => HttpAuth::Ntlm(Credentials {
                    user: cfg.user.clone(),
                    password: cfg.password.clone(),
                    domain: cfg.domain.clone(),
                    workstation: "HARNESS".into(),
                }),
            };
            Route::RpcOverHttp(HttpProxy {
                addr,
                host: hostname.clone(),
                // EMSMDB's Outlook Anywhere port, as the in-process runner asks for.
                target: format!("{server}:6001"),
                auth,
            })
        }
        _ => Route::Tcp(target),
    };
    let result = tokio::time::timeout(CASE_TIMEOUT, async {
        match (plan.client, plan.target) {
            (CaseClient::Probe, CaseTarget::Mail { protocol, .. }) => {
                let report = tokio::task::spawn_blocking(move || {
                    let parsed = script::parse(probe_script(protocol)).map_err(|e| {
                        script::PlayError::Transport {
                            line: 0,
                            conn: 0,
                            reason: e.to_string(),
                        }
                    })?;
                    let mut transport = SocketTransport::new(target, Duration::from_secs(3));
                    script::play(&parsed, &Default::default(), &mut transport)
                })
                .await
                .unwrap_or_else(|e| {
                    Err(script::PlayError::Transport {
                        line: 0,
                        conn: 0,
                        reason: e.to_string(),
                    })
                });
                (
                    None,
                    Some(probe_from_report(protocol, report)),
                    RouteLog::default(),
                )
            }
            (CaseClient::Mail(mut cfg), CaseTarget::Mail { protocol, .. }) => {
                cfg.think_time = THINK_TIME;
                let mut client = driver::new_client(protocol, cfg);
                drive_client(client.as_mut(), target).await;
                (Some(client.outcome()), None, RouteLog::default())
            }
            (CaseClient::Mapi(mut cfg), _) => {
                cfg.think_time = THINK_TIME;
                let mut client = MapiClient::new(cfg);
                let log = drive_route(&mut client, &route).await;
                (Some(client.outcome()), None, log)
            }
            (CaseClient::MapiApp(mut cfg), _) => {
                // The virtual run's times, shortened for the real clock.
                cfg.poll_interval = SOCKET_POLL_INTERVAL;
                let imap = lab.addr(Protocol::Imap, Security::Plain);
                let (user, password) = (cfg.user.clone(), cfg.password.clone());
                let emsmdb = lab.rpc().map(|e| e.emsmdb.clone());
                let drop = tokio::spawn(async move {
                    let started = tokio::time::Instant::now();
                    let logged_on = || {
                        emsmdb
                            .as_ref()
                            .is_none_or(|s| s.sessions() > 0 || !s.event_log().is_empty())
                    };
                    while !logged_on() && started.elapsed() < SOCKET_MAIL_LATEST {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    tokio::time::sleep(SOCKET_MAIL_AFTER_LOGON).await;
                    match imap {
                        Some(addr) => imap_append(addr, &user, &password).await,
                        None => "no IMAP listener".to_string(),
                    }
                });
                let mut client = MapiApp::new(cfg);
                let mut log = drive_route(&mut client, &route).await;
                let reply = drop.await.unwrap_or_else(|e| e.to_string());
                log.trace
                    .insert(0, format!("mail: an IMAP APPEND to the INBOX: {reply}"));
                (Some(client.outcome()), None, log)
            }
            (CaseClient::Browser { password }, CaseTarget::Web(web)) => {
                let world = lab.world();
                let tls = pinned_client_config(lab.certificate_der().clone()).ok();
                let web_target = WebTarget {
                    web: target,
                    tls,
                    kdc: lab.kdc_addr(),
                    realm: harness_core::kerberos::realm::realm_of(world),
                    domain: world.domain.clone(),
                };
                let run = browse(
                    &web_target,
                    &scenario.actor.user,
                    &password,
                    &web,
                    scenario.actor.seed,
                )
                .await;
                let mut log = RouteLog::default();
                log.trace = run.trace;
                log.findings = run.findings;
                (Some(run.outcome), None, log)
            }
            // CasePlan::new pairs a probe and mail clients with mail targets only, and a
            // browser with the web tier.
            (_, CaseTarget::Mapi { .. } | CaseTarget::Web(_) | CaseTarget::AddressBook(_))
            | (CaseClient::Browser { .. } | CaseClient::Program { .. }, _) => {
                (None, None, RouteLog::default())
            }
        }
    })
    .await;
    let server_log = lab.rpc().map(|e| e.emsmdb.event_log()).unwrap_or_default();
    lab.shutdown().await;
    let (session, probe, mut log) = result.map_err(|_| SocketRunError::Timeout(case.id()))?;
    let failed = "Registration of the Association GUID failed";
    if server_log.iter().any(|l| l.starts_with(failed)) {
        log.findings.push("registration-failed".into());
    }
    log.trace
        .extend(server_log.into_iter().map(|l| format!("exchange: {l}")));
    Ok(evaluate(
        scenario,
        case,
        session,
        probe,
        log.trace,
        log.findings,
    ))
}
