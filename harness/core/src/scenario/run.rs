//! Plays scenario cases in-process and checks them against their expectations.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::file::{
    Case, Expectation, ScenarioError, ScenarioFile, MAIL_CLIENTS, MAPI_CLIENTS, WEB_CLIENTS,
};
use super::maildrop::MailDrop;
use crate::codes::ErrorCode;
use crate::dcerpc::emsmdb::EmsmdbProfile;
use crate::dcerpc::endpoints::{RpcEndpoints, RpcLabConfig};
use crate::dcerpc::legacy_dn;
use crate::dcerpc::server::EndpointConfig;
use crate::driver::{
    self, ClientConfig, ClientSession, Finding, MapiApp, MapiAppConfig, MapiClient,
    MapiClientConfig, Policy, ProcessIdentity, SessionOutcome, CONNECT_NO_NOTIFICATIONS,
};
use crate::gc::{AbpProfile, FailoverCase, ProviderConfig};
use crate::http_auth::{HttpAuthenticator, HttpScheme};
use crate::imap::ImapServer;
use crate::ntlm::Credentials;
use crate::pop3::Pop3Server;
use crate::profile::Profile;
use crate::rpch::{ChannelAuth, InProcessBackends, InProcessRpcProxy, ProxyConfig};
use crate::script::{self, InProcess, StepRecord};
use crate::session::{ServerSession, SessionContext};
use crate::web::double_hop::{self, BrowserAuth, DoubleHopCase};
use crate::web::provider::{AppHost, StoreProvider};
use crate::world::{LabFile, World};
use crate::Protocol;

/// Exchanges one case may take before it is cut off (a client that never finishes).
const MAX_STEPS: usize = 100_000;
/// Lab-clock origin for in-process runs: fixed, so outcomes repeat.
const EPOCH: u64 = 1_704_067_200;

/// Where a client connects: straight to an endpoint, or through a front-end.
pub trait Topology {
    /// A fresh server-side session for connection number `n` (from 0).
    fn connect(&mut self, n: usize) -> Box<dyn ServerSession>;
    /// What happened behind the first tier, as deterministic lines for snapshots.
    fn trace(&self) -> Vec<String> {
        Vec::new()
    }
    /// Finding kinds the topology observed (e.g. `context-split`).
    fn findings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The client talks to the mock endpoint directly.
pub struct Direct {
    world: Arc<World>,
    profile: Arc<Profile>,
    protocol: Protocol,
}

impl Direct {
    pub fn new(world: Arc<World>, profile: Profile, protocol: Protocol) -> Self {
        Direct {
            world,
            profile: Arc::new(profile),
            protocol,
        }
    }
}

/// A server session for `protocol` on `world`, seeded by the connection number.
pub fn endpoint(
    world: &Arc<World>,
    profile: &Arc<Profile>,
    protocol: Protocol,
    n: u64,
) -> Box<dyn ServerSession> {
    let mut ctx = SessionContext::new(world.clone(), profile.clone());
    ctx.seed = n;
    ctx.epoch_secs = EPOCH;
    match protocol {
        Protocol::Imap => Box::new(ImapServer::new(ctx)),
        Protocol::Pop3 => Box::new(Pop3Server::new(ctx)),
    }
}

impl Topology for Direct {
    fn connect(&mut self, n: usize) -> Box<dyn ServerSession> {
        endpoint(&self.world, &self.profile, self.protocol, n as u64)
    }
}

/// Builds the topology a case names. Front-end topologies are provided by the caller's
/// `frontend` hook until the front-end lands in this crate.
pub type TopologyFactory = dyn Fn(&str, Arc<World>, Profile, Protocol) -> Option<Box<dyn Topology>>;

/// What a `telnet` probe saw: the raw capability check a KB article asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    pub transcript: Vec<String>,
    pub advertises_ntlm: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Index of the `[[expect]]` entry this check comes from.
    pub expectation: usize,
    pub what: String,
    pub because: String,
    pub passed: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseOutcome {
    pub case: Case,
    pub id: String,
    pub session: Option<SessionOutcome>,
    pub probe: Option<Probe>,
    pub trace: Vec<String>,
    pub topology_findings: Vec<String>,
    /// `address-book` cases: the calls across the timeline.
    pub calls: Option<CallsSummary>,
    pub checks: Vec<Check>,
}

/// An `address-book` case's calls: one symbol each (`harness_core::gc::LEGEND`), and the
/// provider's state after the last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallsSummary {
    pub timeline: String,
    pub end_state: String,
}

impl CallsSummary {
    pub fn of(run: &crate::gc::FailoverRun) -> CallsSummary {
        CallsSummary {
            timeline: run.timeline(),
            end_state: run
                .end_state()
                .map_or_else(|| "none".to_string(), |s| s.name().to_string()),
        }
    }
}

impl CaseOutcome {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// The status word: a session's status, or `probed` for a probe.
    pub fn status(&self) -> String {
        match (&self.session, &self.probe) {
            (Some(s), _) => s.status.name().to_string(),
            (None, Some(_)) => "probed".to_string(),
            (None, None) => "not run".to_string(),
        }
    }

    pub fn codes(&self) -> Vec<ErrorCode> {
        self.session
            .as_ref()
            .map(|s| s.codes.clone())
            .unwrap_or_default()
    }

    /// Finding kinds, from the client and from the topology.
    pub fn finding_kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self
            .session
            .iter()
            .flat_map(|s| s.findings.iter().map(|f| finding_kind(f).to_string()))
            .collect();
        kinds.extend(self.topology_findings.iter().cloned());
        kinds.dedup();
        kinds
    }

    /// Stable text for snapshots and for reading.
    pub fn render(&self, scenario: &ScenarioFile) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "scenario: {} ({})", scenario.name, scenario.title);
        if let Some(r) = &scenario.reference {
            let _ = writeln!(out, "reference: {r}");
        }
        let _ = writeln!(out, "case: {}", self.case.label());
        if let Some(s) = &self.session {
            out.push_str("\n-- client\n");
            out.push_str(&s.render());
        }
        if let Some(p) = &self.probe {
            out.push_str("\n-- probe (what a telnet check shows)\n");
            for l in &p.transcript {
                let _ = writeln!(out, "{l}");
            }
            let _ = writeln!(
                out,
                "advertises NTLM: {}",
                if p.advertises_ntlm { "yes" } else { "no" }
            );
        }
        if let Some(c) = &self.calls {
            out.push_str("\n-- calls, one a second\n");
            let _ = writeln!(out, "timeline: {}", c.timeline);
            let _ = writeln!(out, "legend: {}", crate::gc::LEGEND);
            let _ = writeln!(out, "provider at the end: {}", c.end_state);
        }
        if !self.trace.is_empty() {
            let topology = self.case.get("topology").unwrap_or("direct");
            out.push_str(if self.case.get("protocol") == Some("web") {
                "\n-- the hops (the token at each)\n"
            } else if self.case.get("protocol") == Some("address-book") {
                "\n-- the directory and the provider\n"
            } else if super::rpc_proxy_scheme(topology).is_some() {
                "\n-- at the RPC proxy\n"
            } else if topology == "direct" {
                "\n-- in the lab\n"
            } else {
                "\n-- behind the front-end\n"
            });
            for l in &self.trace {
                let _ = writeln!(out, "{l}");
            }
        }
        if !self.topology_findings.is_empty() {
            let _ = writeln!(
                out,
                "topology findings: {}",
                self.topology_findings.join(", ")
            );
        }
        out.push_str("\n-- expectations\n");
        if self.checks.is_empty() {
            out.push_str("(none apply)\n");
        }
        let mut last = None;
        for c in &self.checks {
            if last != Some(c.expectation) && !c.because.is_empty() {
                let _ = writeln!(out, "because {}:", c.because);
            }
            last = Some(c.expectation);
            let mark = if c.passed { "ok  " } else { "FAIL" };
            let _ = write!(out, "  {mark} {}", c.what);
            if !c.passed {
                let _ = write!(out, " (got {})", c.detail);
            }
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "verdict: {}",
            if self.passed() {
                "as expected"
            } else {
                "EXPECTATION BROKEN"
            }
        );
        out
    }
}

/// The kind name scenario files use for a finding.
pub fn finding_kind(f: &Finding) -> &'static str {
    match f {
        Finding::CredentialLoop { .. } => "credential-loop",
        Finding::CleartextCredentials { .. } => "cleartext-credentials",
        Finding::MechanismNotOffered { .. } => "mechanism-not-offered",
        Finding::UnexpectedDisconnect { .. } => "unexpected-disconnect",
        Finding::ProtocolViolation { .. } => "protocol-violation",
        Finding::ServerSilent { .. } => "server-silent",
        Finding::NotificationMissed => "notification-missed",
    }
}

fn policy_for(client: &str) -> Option<Policy> {
    match client {
        "oe-spa" => Some(Policy::OutlookExpress { use_spa: true }),
        "oe-basic" => Some(Policy::OutlookExpress { use_spa: false }),
        "basic" => Some(Policy::Basic),
        "curl" => Some(Policy::CurlLike),
        _ => None,
    }
}

/// What a case runs against: a mail endpoint (or a front-end before it), or the Exchange
/// RPC endpoint.
#[derive(Debug, Clone)]
pub enum CaseTarget {
    Mail {
        protocol: Protocol,
        profile: Box<Profile>,
    },
    Mapi {
        profile: EmsmdbProfile,
    },
    /// The double hop: a browser, the web tier, a store provider and the store.
    Web(DoubleHopCase),
    /// A program's address-book provider across the scenario's timeline.
    AddressBook(FailoverCase),
}

/// When new mail reaches a `mapi-service` case's mailbox (connection time): after the
/// logon and the notification thread's first calls, before the workers' second polls
/// (two seconds apart).
const MAIL_AT: Duration = Duration::from_secs(1);

/// Who plays the case.
#[derive(Debug, Clone)]
pub enum CaseClient {
    /// An IMAP or POP3 client.
    Mail(ClientConfig),
    /// The `telnet` capability check.
    Probe,
    /// Outlook over Exchange RPC. The runner fills in the mailbox DN from its world
    /// ([`CasePlan::for_world`]).
    Mapi(MapiClientConfig),
    /// A MAPI service with threads (the registration clash), likewise.
    MapiApp(MapiAppConfig),
    /// A browser (the double hop), with the actor's password.
    Browser { password: String },
    /// A MAPI program making address-book calls (GC failover); the password is what the
    /// user types at a prompt.
    Program { password: String },
}

/// What a case asks for, resolved: the target and its profile, the topology name, and
/// the client (or a telnet probe).
#[derive(Debug, Clone)]
pub struct CasePlan {
    pub target: CaseTarget,
    pub topology: String,
    pub client: CaseClient,
}

impl CaseClient {
    /// The credentials a MAPI client would send to an RPC proxy (the user's own).
    pub fn credentials(&self) -> Option<Credentials> {
        let (user, password, domain) = match self {
            CaseClient::Mapi(c) => (&c.user, &c.password, &c.domain),
            CaseClient::MapiApp(c) => (&c.user, &c.password, &c.domain),
            _ => return None,
        };
        Some(Credentials {
            user: user.clone(),
            password: password.clone(),
            domain: domain.clone(),
            workstation: "HARNESS".into(),
        })
    }
}

impl CasePlan {
    pub fn new(scenario: &ScenarioFile, case: &Case) -> Result<CasePlan, ScenarioError> {
        let unknown = |name: &str, value: &str, allowed: &[&str]| ScenarioError::UnknownValue {
            name: name.into(),
            value: value.into(),
            allowed: allowed.join(", "),
        };
        let actor = &scenario.actor;
        let password = match case.get("credentials").unwrap_or("valid") {
            "wrong-password" => format!("{}-wrong", actor.password),
            _ => actor.password.clone(),
        };
        let topology = case.get("topology").unwrap_or("direct").to_string();
        let profile_name = case.get("profile");
        if case.get("protocol") == Some("web") {
            let client = case.get("client").unwrap_or("browser");
            if !WEB_CLIENTS.contains(&client) {
                return Err(unknown("client", client, WEB_CLIENTS));
            }
            // file.rs checks every value against `allowed_values` before this.
            let auth = case.get("http-auth").unwrap_or("kerberos");
            let provider = case.get("provider").unwrap_or("exchange");
            let web = DoubleHopCase {
                browser_on_web_host: case.get("browser") == Some("web-host"),
                auth: BrowserAuth::parse(auth)
                    .ok_or_else(|| unknown("http-auth", auth, &["kerberos", "ntlm", "basic"]))?,
                provider: StoreProvider::parse(provider)
                    .ok_or_else(|| unknown("provider", provider, &["exchange", "outlook"]))?,
                app_host: if case.get("app-host") == Some("exchange-host") {
                    AppHost::ExchangeHost
                } else {
                    AppHost::WebTier
                },
            };
            return Ok(CasePlan {
                target: CaseTarget::Web(web),
                topology,
                client: CaseClient::Browser { password },
            });
        }
        if case.get("protocol") == Some("address-book") {
            let name = profile_name.unwrap_or("exchange2003-sp1");
            let names = AbpProfile::ALL.map(|p| p.name());
            let profile =
                AbpProfile::by_name(name).ok_or_else(|| unknown("profile", name, &names))?;
            if scenario.timeline.is_none() {
                return Err(ScenarioError::Syntax(
                    "an address-book case needs a [timeline]".into(),
                ));
            }
            let failover = FailoverCase {
                provider: ProviderConfig {
                    profile,
                    user_auth_credentials: case.get("userauth-credentials") == Some("1"),
                    allow_reconnect: case.get("allow-reconnect") != Some("off"),
                    can_prompt: case.get("program") == Some("interactive"),
                },
                process_in_other_domain: case.get("process-domain") == Some("other"),
            };
            return Ok(CasePlan {
                target: CaseTarget::AddressBook(failover),
                topology,
                client: CaseClient::Program { password },
            });
        }
        // file.rs checks every value against `allowed_values` before this.
        if case.get("protocol") == Some("mapi") {
            let profile = match profile_name {
                None => EmsmdbProfile::default(),
                Some(name) => EmsmdbProfile::by_name(name).ok_or_else(|| {
                    let names = EmsmdbProfile::ALL.map(|p| p.name());
                    unknown("profile", name, &names)
                })?,
            };
            if topology != "direct" && super::rpc_proxy_scheme(&topology).is_none() {
                let names = [&["direct"], super::TOPOLOGY_RPC_PROXIES].concat();
                return Err(unknown("topology", &topology, &names));
            }
            let client = case.get("client").unwrap_or("outlook-encrypted");
            if !MAPI_CLIENTS.contains(&client) {
                return Err(unknown("client", client, MAPI_CLIENTS));
            }
            if client == "mapi-service" {
                let mut cfg = MapiAppConfig::new(&actor.user, &password, "");
                cfg.process = match case.get("process").unwrap_or("mailbox-user") {
                    "local-system" => ProcessIdentity::LocalSystem,
                    "service-account" => ProcessIdentity::ServiceAccount,
                    _ => ProcessIdentity::MailboxUser,
                };
                if case.get("notifications") == Some("off") {
                    cfg.connect_flags |= CONNECT_NO_NOTIFICATIONS;
                }
                let schedule: u64 = case.get("schedule").unwrap_or("1").parse().unwrap_or(1);
                cfg.seed = actor.seed ^ schedule.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                cfg.mail_expected = true;
                return Ok(CasePlan {
                    target: CaseTarget::Mapi { profile },
                    topology,
                    client: CaseClient::MapiApp(cfg),
                });
            }
            let mut cfg = MapiClientConfig::new(&actor.user, &password, "");
            cfg.encrypt = client == "outlook-encrypted";
            cfg.max_prompts = actor.max_prompts;
            cfg.loop_threshold = actor.loop_threshold;
            cfg.seed = actor.seed;
            return Ok(CasePlan {
                target: CaseTarget::Mapi { profile },
                topology,
                client: CaseClient::Mapi(cfg),
            });
        }
        let protocol = case
            .get("protocol")
            .and_then(Protocol::parse)
            .unwrap_or(Protocol::Imap);
        let profile_name = profile_name.unwrap_or("default");
        let profile = Profile::by_name(profile_name)
            .ok_or_else(|| unknown("profile", profile_name, crate::profile::PROFILE_NAMES))?;
        let client = match case.get("client").unwrap_or("basic") {
            "telnet" => CaseClient::Probe,
            name => {
                let policy =
                    policy_for(name).ok_or_else(|| unknown("client", name, MAIL_CLIENTS))?;
                let mut cfg = ClientConfig::new(&actor.user, &password, policy);
                cfg.max_prompts = actor.max_prompts;
                cfg.loop_threshold = actor.loop_threshold;
                cfg.seed = actor.seed;
                CaseClient::Mail(cfg)
            }
        };
        Ok(CasePlan {
            target: CaseTarget::Mail {
                protocol,
                profile: Box::new(profile),
            },
            topology,
            client,
        })
    }

    /// The lab the case runs in: the default one, with the machine account a Local
    /// System service authenticates as when the client is one.
    pub fn lab_file(&self) -> LabFile {
        let mut lab = LabFile::default_lab();
        if let CaseClient::MapiApp(cfg) = &self.client {
            if let Some((account, password)) = cfg.process_account() {
                lab.add_user(account, password);
            }
        }
        if let CaseTarget::AddressBook(_) = self.target {
            let (account, password) = crate::gc::failover::SERVICE_ACCOUNT;
            lab.add_user(account, password);
        }
        lab
    }

    /// Fills in what the client learns from the world it runs against: the MAPI
    /// mailbox's legacy DN (what an Outlook profile holds).
    pub fn for_world(mut self, world: &World) -> CasePlan {
        match &mut self.client {
            CaseClient::Mapi(cfg) => cfg.mailbox_dn = legacy_dn::user_dn(&world.domain, &cfg.user),
            CaseClient::MapiApp(cfg) => {
                cfg.mailbox_dn = legacy_dn::user_dn(&world.domain, &cfg.user);
            }
            _ => {}
        }
        self
    }
}

/// The Exchange RPC endpoint of `world` as `profile` plays it, in-process.
pub fn rpc_endpoints(world: &Arc<World>, profile: EmsmdbProfile, seed: u64) -> RpcEndpoints {
    let config = RpcLabConfig {
        // Exchange 2003's static EMSMDB port; in-process nothing listens on it.
        exchange_port: 6001,
        exchange_ip: [127, 0, 0, 1],
        endpoint: EndpointConfig::default(),
        seed,
        unix_now: EPOCH,
        kerberos_clock: None,
    };
    RpcEndpoints::for_world_with(world, &config, profile.config())
}

/// The client talks to the Exchange RPC endpoint directly.
pub struct RpcDirect {
    endpoints: RpcEndpoints,
}

impl RpcDirect {
    pub fn new(endpoints: RpcEndpoints) -> Self {
        RpcDirect { endpoints }
    }
}

impl Topology for RpcDirect {
    fn connect(&mut self, _n: usize) -> Box<dyn ServerSession> {
        Box::new(self.endpoints.exchange.accept(Duration::ZERO))
    }

    fn trace(&self) -> Vec<String> {
        server_log(&self.endpoints)
    }

    fn findings(&self) -> Vec<String> {
        server_findings(&self.endpoints)
    }
}

/// The Exchange server's event log, as trace lines.
fn server_log(endpoints: &RpcEndpoints) -> Vec<String> {
    endpoints
        .emsmdb
        .event_log()
        .into_iter()
        .map(|l| format!("exchange: {l}"))
        .collect()
}

/// `registration-failed` when the server logged a registration failure.
fn server_findings(endpoints: &RpcEndpoints) -> Vec<String> {
    let failed = endpoints
        .emsmdb
        .event_log()
        .iter()
        .any(|l| l.starts_with("Registration of the Association GUID failed"));
    if failed {
        vec!["registration-failed".to_string()]
    } else {
        Vec::new()
    }
}

/// The client reaches the Exchange RPC endpoint through the RPC over HTTP proxy
/// (Outlook Anywhere), in process: each connection a virtual connection.
pub struct RpcOverHttp {
    proxy: InProcessRpcProxy,
    endpoints: RpcEndpoints,
}

impl RpcOverHttp {
    /// `scheme` and `cfg`'s credentials: what the client sends on the channels (Outlook
    /// uses the user's own).
    pub fn new(
        world: &Arc<World>,
        endpoints: &RpcEndpoints,
        scheme: HttpScheme,
        credentials: Credentials,
        seed: u64,
    ) -> Self {
        let authenticator = HttpAuthenticator::for_world(world, vec![scheme], seed, EPOCH);
        let server = world.hostname.split('.').next().unwrap_or("mail");
        RpcOverHttp {
            proxy: InProcessRpcProxy::new(
                ProxyConfig::default(),
                InProcessBackends::for_endpoints(endpoints),
                authenticator,
                // EMSMDB's Outlook Anywhere port ([MS-OXCRPC] 1.4).
                &format!("{server}:6001"),
                ChannelAuth {
                    scheme,
                    credentials,
                },
                seed,
            ),
            endpoints: endpoints.clone(),
        }
    }
}

impl Topology for RpcOverHttp {
    fn connect(&mut self, n: usize) -> Box<dyn ServerSession> {
        Box::new(self.proxy.connect(n))
    }

    fn trace(&self) -> Vec<String> {
        let mut lines = self.proxy.trace();
        lines.extend(server_log(&self.endpoints));
        lines
    }

    fn findings(&self) -> Vec<String> {
        let mut kinds = self.proxy.findings();
        kinds.extend(server_findings(&self.endpoints));
        kinds
    }
}

/// The script a `telnet` probe plays: IMAP `CAPABILITY` on 143, POP3 `AUTH` on 110.
pub fn probe_script(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Imap => {
            "S: $*\nC: a1 CAPABILITY\nS: ...\nS: a1 $*\nC: a2 LOGOUT\nS: ...\nS: a2 $*\n"
        }
        // [MS-POP3] 2.2.1: the Microsoft client sends AUTH with a trailing space.
        Protocol::Pop3 => "S: $*\nC: AUTH \nS: ...\nS: .\nC: QUIT\nS: $*\n",
    }
}

/// What a probe's play report shows: the normalised transcript and whether NTLM is on
/// offer.
pub fn probe_from_report(
    protocol: Protocol,
    report: Result<script::PlayReport, script::PlayError>,
) -> Probe {
    let mut transcript = Vec::new();
    let mut advertises = false;
    match report {
        Ok(report) => {
            for r in &report.records {
                let line = match r {
                    StepRecord::Sent { text, .. } => format!("C: {text}"),
                    StepRecord::Matched { text, .. } | StepRecord::Skipped { text, .. } => {
                        format!("S: {text}")
                    }
                    StepRecord::Closed { .. } => "-- client closed".into(),
                    StepRecord::ServerClosed { .. } => "-- server closed".into(),
                };
                if let Some(t) = line.strip_prefix("S: ") {
                    advertises |= match protocol {
                        Protocol::Imap => t.starts_with("* ") && t.contains("AUTH=NTLM"),
                        Protocol::Pop3 => t.eq_ignore_ascii_case("NTLM"),
                    };
                }
                transcript.push(normalise(&line));
            }
            if !report.passed() {
                transcript.push(format!("(probe did not complete: {:?})", report.verdict));
            }
        }
        Err(e) => transcript.push(format!("(probe failed: {e})")),
    }
    Probe {
        transcript,
        advertises_ntlm: advertises,
    }
}

/// Puts a case's results together and checks them against the scenario's expectations.
pub fn evaluate(
    scenario: &ScenarioFile,
    case: &Case,
    session: Option<SessionOutcome>,
    probe: Option<Probe>,
    trace: Vec<String>,
    topology_findings: Vec<String>,
) -> CaseOutcome {
    evaluate_calls(
        scenario,
        case,
        session,
        probe,
        trace,
        topology_findings,
        None,
    )
}

/// [`evaluate`] for an `address-book` case's run.
pub fn evaluate_failover(
    scenario: &ScenarioFile,
    case: &Case,
    run: crate::gc::FailoverRun,
) -> CaseOutcome {
    let calls = CallsSummary::of(&run);
    evaluate_calls(
        scenario,
        case,
        Some(run.outcome),
        None,
        run.trace,
        run.findings,
        Some(calls),
    )
}

fn evaluate_calls(
    scenario: &ScenarioFile,
    case: &Case,
    session: Option<SessionOutcome>,
    probe: Option<Probe>,
    trace: Vec<String>,
    topology_findings: Vec<String>,
    calls: Option<CallsSummary>,
) -> CaseOutcome {
    let mut outcome = CaseOutcome {
        case: case.clone(),
        id: case.id(),
        session,
        probe,
        trace,
        topology_findings,
        calls,
        checks: Vec::new(),
    };
    outcome.checks = scenario
        .expectations_for(case)
        .into_iter()
        .flat_map(|(i, e)| check(i, e, &outcome))
        .collect();
    outcome
}

/// Runs one case in-process. `frontends` builds the non-direct topologies.
pub fn run_case(
    scenario: &ScenarioFile,
    case: &Case,
    frontends: &TopologyFactory,
) -> Result<CaseOutcome, ScenarioError> {
    let plan = CasePlan::new(scenario, case)?;
    // Each case gets its own world, so cases never see each other's changes.
    let world = Arc::new(
        plan.lab_file()
            .build()
            .map_err(|e| ScenarioError::Syntax(e.to_string()))?,
    );
    let plan = plan.for_world(&world);
    if let (CaseTarget::AddressBook(failover), CaseClient::Program { password }, Some(timeline)) =
        (&plan.target, &plan.client, &scenario.timeline)
    {
        let run = crate::gc::failover::run(
            &world,
            timeline,
            failover,
            &scenario.actor.user,
            password,
            EPOCH as i64,
            scenario.actor.seed,
        );
        return Ok(evaluate_failover(scenario, case, run));
    }
    if let (CaseTarget::Web(web), CaseClient::Browser { password }) = (&plan.target, &plan.client) {
        let user = scenario.actor.user.clone();
        let run = double_hop::run(
            &world,
            &user,
            web,
            password,
            EPOCH as i64,
            scenario.actor.seed,
        );
        return Ok(evaluate(
            scenario,
            case,
            Some(run.outcome),
            None,
            run.trace,
            run.findings,
        ));
    }
    let (mut topology, protocol): (Box<dyn Topology>, Option<Protocol>) = match plan.target {
        CaseTarget::Mapi { profile } => {
            let endpoints = rpc_endpoints(&world, profile, scenario.actor.seed);
            let proxied = super::rpc_proxy_scheme(&plan.topology);
            let direct: Box<dyn Topology> = match (proxied, plan.client.credentials()) {
                (Some(scheme), Some(credentials)) => {
                    let seed = scenario.actor.seed;
                    let topology = RpcOverHttp::new(&world, &endpoints, scheme, credentials, seed);
                    Box::new(topology)
                }
                _ => Box::new(RpcDirect::new(endpoints)),
            };
            match &plan.client {
                // New mail while the service runs, from another party over IMAP.
                CaseClient::MapiApp(cfg) => {
                    let drop = MailDrop::new(direct, world, &cfg.user, &cfg.password, MAIL_AT);
                    (Box::new(drop), None)
                }
                _ => (direct, None),
            }
        }
        // Played above.
        CaseTarget::Web(_) => {
            return Err(ScenarioError::Syntax("a web case needs a browser".into()))
        }
        CaseTarget::AddressBook(_) => {
            return Err(ScenarioError::Syntax(
                "an address-book case needs a program and a [timeline]".into(),
            ))
        }
        CaseTarget::Mail { protocol, profile } if plan.topology == "direct" => (
            Box::new(Direct::new(world, *profile, protocol)),
            Some(protocol),
        ),
        CaseTarget::Mail { protocol, profile } => {
            let topology =
                frontends(&plan.topology, world, *profile, protocol).ok_or_else(|| {
                    ScenarioError::UnknownValue {
                        name: "topology".into(),
                        value: plan.topology.clone(),
                        allowed: "direct".into(),
                    }
                })?;
            (topology, Some(protocol))
        }
    };
    let (session, probe) = match (plan.client, protocol) {
        (CaseClient::Probe, Some(protocol)) => (None, Some(probe(protocol, topology.as_mut()))),
        (CaseClient::Mail(cfg), Some(protocol)) => {
            let mut c = driver::new_client(protocol, cfg);
            let mut connect = |n: usize| topology.connect(n);
            driver::run_with_reconnect(c.as_mut(), &mut connect, MAX_STEPS);
            (Some(c.outcome()), None)
        }
        (CaseClient::Mapi(cfg), _) => {
            let mut c = MapiClient::new(cfg);
            let mut connect = |n: usize| topology.connect(n);
            driver::run_with_reconnect(&mut c, &mut connect, MAX_STEPS);
            (Some(c.outcome()), None)
        }
        (CaseClient::MapiApp(cfg), _) => {
            let mut c = MapiApp::new(cfg);
            let mut connect = |n: usize| topology.connect(n);
            driver::run_with_reconnect(&mut c, &mut connect, MAX_STEPS);
            (Some(c.outcome()), None)
        }
        // CasePlan::new pairs mail clients with mail targets only; browsers and programs
        // played above.
        (_, None) | (CaseClient::Browser { .. } | CaseClient::Program { .. }, _) => (None, None),
    };
    Ok(evaluate(
        scenario,
        case,
        session,
        probe,
        topology.trace(),
        topology.findings(),
    ))
}

/// The capability check a KB article asks an administrator to do with telnet.
fn probe(protocol: Protocol, topology: &mut dyn Topology) -> Probe {
    let report = script::parse(probe_script(protocol))
        .map_err(|e| script::PlayError::Transport {
            line: 0,
            conn: 0,
            reason: e.to_string(),
        })
        .and_then(|s| {
            let mut transport = InProcess::new(|n| topology.connect(n));
            script::play(&s, &Default::default(), &mut transport)
        });
    probe_from_report(protocol, report)
}

fn check(index: usize, e: &Expectation, o: &CaseOutcome) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut push = |what: String, passed: bool, detail: String| {
        checks.push(Check {
            expectation: index,
            what,
            because: e.because.clone(),
            passed,
            detail,
        })
    };
    if let Some(status) = &e.status {
        let got = o.status();
        push(format!("status is {status}"), &got == status, got);
    }
    let codes = o.codes();
    let names: Vec<String> = codes.iter().map(|c| c.to_string()).collect();
    for want in &e.codes {
        let passed = ErrorCode::by_name(want).is_some_and(|c| codes.contains(&c));
        let label = ErrorCode::by_name(want)
            .map(|c| c.to_string())
            .unwrap_or_else(|| want.clone());
        push(format!("reports {label}"), passed, list_or_none(&names));
    }
    if e.no_codes {
        push(
            "reports no error code".into(),
            codes.is_empty(),
            list_or_none(&names),
        );
    }
    let kinds = o.finding_kinds();
    for want in &e.findings {
        push(
            format!("finding {want}"),
            kinds.contains(want),
            list_or_none(&kinds),
        );
    }
    for unwanted in &e.no_findings {
        push(
            format!("no finding {unwanted}"),
            !kinds.contains(unwanted),
            list_or_none(&kinds),
        );
    }
    if let Some(want) = &e.timeline {
        let got = o.calls.as_ref().map(|c| c.timeline.clone());
        push(
            format!("timeline {want}"),
            got.as_deref() == Some(want.as_str()),
            got.unwrap_or_else(|| "no calls".into()),
        );
    }
    if let Some(want) = &e.end_state {
        let got = o.calls.as_ref().map(|c| c.end_state.clone());
        push(
            format!("provider ends {want}"),
            got.as_deref() == Some(want.as_str()),
            got.unwrap_or_else(|| "no calls".into()),
        );
    }
    if let Some(want) = e.advertises_ntlm {
        let got = o.probe.as_ref().map(|p| p.advertises_ntlm);
        push(
            format!("NTLM {}advertised", if want { "" } else { "not " }),
            got == Some(want),
            match got {
                Some(true) => "advertised".into(),
                Some(false) => "not advertised".into(),
                None => "no probe ran".into(),
            },
        );
    }
    checks
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// Runs every case of a scenario.
pub fn run_scenario(
    scenario: &ScenarioFile,
    frontends: &TopologyFactory,
) -> Result<Vec<CaseOutcome>, ScenarioError> {
    scenario
        .cases()
        .iter()
        .map(|c| run_case(scenario, c, frontends))
        .collect()
}

/// Masks what changes from run to run or says nothing to a reader: APOP timestamps
/// (`<digits.digits@host>`) and long base64 blobs (challenges, tokens).
pub fn normalise(line: &str) -> String {
    line.split(' ')
        .map(|word| {
            let stamp = word
                .strip_prefix('<')
                .and_then(|w| w.strip_suffix('>'))
                .and_then(|w| w.split_once('@'))
                .is_some_and(|(local, _)| {
                    local.contains('.') && local.chars().all(|c| c.is_ascii_digit() || c == '.')
                });
            let base64 = word.len() >= 24
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '=');
            if stamp {
                "<apop-timestamp>".to_string()
            } else if base64 {
                format!("<base64 {} chars>", word.len())
            } else {
                word.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn normalise_masks_stamps_and_blobs_only() {
        assert_eq!(
            normalise("+OK ready <822465.1704067200@mail.example.test>"),
            "+OK ready <apop-timestamp>"
        );
        assert_eq!(
            normalise("+ TlRMTVNTUAACAAAADAAMADgAAAA="),
            "+ <base64 28 chars>"
        );
        assert_eq!(
            normalise("* OK [UIDVALIDITY 1700000000] UIDs valid"),
            "* OK [UIDVALIDITY 1700000000] UIDs valid"
        );
        assert_eq!(
            normalise("S: <msg1.alice@example.test>"),
            "S: <msg1.alice@example.test>"
        );
    }
}
