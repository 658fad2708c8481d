//! One case of KB 918710's double hop, in process: a browser authenticates to the web
//! tier (real Negotiate, NTLM or Basic exchanges with the tier's authenticator, tickets
//! from the lab's KDC), the tier makes the logon token, and its application opens the
//! mailbox through a store provider ([`super::provider::open_mailbox`]) against the same
//! KDC and the lab's Exchange RPC endpoint. The outcome is a session outcome like any
//! other client's, so scenario expectations and snapshots read it the same way.

use std::sync::Arc;

use super::browser::Browser;
use super::provider::{self, AppHost, InProcess, StoreProvider, StoreSite, WebFinding};
use super::token::LogonToken;
use crate::driver::outcome::{Finding, SessionOutcome, SessionProtocol, Status};
use crate::driver::Journal;
use crate::http_auth::{ConnectionAuth, HttpAuthenticator, HttpPrincipal, HttpScheme, Verdict};
use crate::world::World;

/// How the browser authenticates to the web tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrowserAuth {
    /// Integrated authentication with Kerberos; the browser forwards its TGT to a
    /// service the KDC marks ok-as-delegate (the web tier is trusted for delegation).
    Kerberos,
    /// Integrated authentication with NTLM.
    Ntlm,
    Basic,
    BasicTls,
}

impl BrowserAuth {
    pub fn parse(key: &str) -> Option<BrowserAuth> {
        Some(match key {
            "kerberos" => BrowserAuth::Kerberos,
            "ntlm" => BrowserAuth::Ntlm,
            "basic" => BrowserAuth::Basic,
            "basic-tls" => BrowserAuth::BasicTls,
            _ => return None,
        })
    }
}

/// One configuration of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoubleHopCase {
    /// The browser runs on the web tier's own host.
    pub browser_on_web_host: bool,
    pub auth: BrowserAuth,
    pub provider: StoreProvider,
    pub app_host: AppHost,
}

impl DoubleHopCase {
    /// Where the browser runs, for the trace.
    fn browser_at(&self) -> &'static str {
        if self.browser_on_web_host {
            "on the web tier's host"
        } else {
            "on another host"
        }
    }

    /// Where the application runs, for the trace.
    fn app_at(&self) -> &'static str {
        match self.app_host {
            AppHost::WebTier => "its own host",
            AppHost::ExchangeHost => "the Exchange host",
        }
    }
}

/// What the case came to: the session outcome, the token at each hop, and the findings
/// the tiers add (scenario finding kinds).
#[derive(Debug, Clone)]
pub struct DoubleHopRun {
    pub outcome: SessionOutcome,
    pub trace: Vec<String>,
    pub findings: Vec<String>,
}

/// The application's page.
const PAGE: &str = "/mailbox";

/// Runs `case` for `user` (password `password`) against a fresh in-process store of
/// `world` whose clocks read `now`.
pub fn run(
    world: &Arc<World>,
    user: &str,
    case: &DoubleHopCase,
    password: &str,
    now: i64,
    seed: u64,
) -> DoubleHopRun {
    let mut reach = InProcess::for_world(world, now, seed);
    let site = StoreSite::for_world(world, seed);
    let mut journal = Journal::default();
    let mut trace = Vec::new();
    let browser_at = case.browser_at();
    let principal = match browse(world, &mut reach, user, case, password, seed, &mut journal) {
        Ok(p) => p,
        Err(status) => {
            trace.push(format!("browser ({browser_at}) -> web tier: refused"));
            return DoubleHopRun {
                outcome: journal.outcome(user, SessionProtocol::Web, policy(case), status),
                trace,
                findings: Vec::new(),
            };
        }
    };
    let tls = case.auth == BrowserAuth::BasicTls;
    let token = LogonToken::from_principal(&principal, case.browser_on_web_host, tls);
    trace.push(format!(
        "browser ({browser_at}) -> web tier: {}{}; token: {}",
        principal.scheme.name(),
        if tls { " over TLS" } else { "" },
        token.kind_name()
    ));
    let session_password = provider::session_password(&token, world);
    let answer = provider::open_mailbox(
        &token,
        session_password.as_deref(),
        case.provider,
        case.app_host,
        &site,
        world,
        &mut reach,
    );
    trace.push(format!(
        "web tier ({}) -> store: {}",
        case.app_at(),
        answer.hop.describe()
    ));
    answer.steps.iter().for_each(|s| journal.step(s.clone()));
    let status = match &answer.result {
        Ok(rows) => {
            journal.step(format!("application: lists {} messages", rows.len()));
            Status::Authenticated
        }
        Err(code) => {
            journal.step(format!("application: {} {code}", raises(case.provider)));
            journal.code(*code);
            Status::Failed
        }
    };
    let findings = tier_findings(&answer.findings, &mut journal);
    DoubleHopRun {
        outcome: journal.outcome(user, SessionProtocol::Web, policy(case), status),
        trace,
        findings,
    }
}

/// The tiers' findings: cleartext credentials is the client's own kind (the browser sent
/// them); the rest are the topology's, by kind.
fn tier_findings(findings: &[WebFinding], journal: &mut Journal) -> Vec<String> {
    let mut kinds = Vec::new();
    for f in findings {
        match f {
            WebFinding::CleartextCredentials => journal.finding(Finding::CleartextCredentials {
                mechanism: "HTTP Basic".into(),
            }),
            other => kinds.push(other.kind().to_string()),
        }
    }
    kinds
}

/// A case played over sockets: the browser's steps and the `/mailbox` page the web tier
/// answered with (`status`, `body`), or why there was none, read back into the outcome
/// the in-process run makes.
pub fn run_from_page(
    user: &str,
    case: &DoubleHopCase,
    browser_steps: &[String],
    page: Result<(u16, String), String>,
) -> DoubleHopRun {
    let mut journal = Journal::default();
    browser_steps.iter().for_each(|s| journal.step(s.clone()));
    let browser_at = case.browser_at();
    let (status, body) = match page {
        Ok(page) => page,
        Err(why) => {
            journal.step(why);
            return DoubleHopRun {
                outcome: journal.outcome(user, SessionProtocol::Web, policy(case), Status::Failed),
                trace: vec![format!("browser ({browser_at}) -> web tier: no page")],
                findings: Vec::new(),
            };
        }
    };
    let field = |key: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or("?")
            .to_string()
    };
    let mut trace = Vec::new();
    if status == 401 {
        journal.step("web tier: 401");
        journal.code(crate::codes::ErrorCode::new(
            crate::codes::Family::Http,
            401,
        ));
        trace.push(format!("browser ({browser_at}) -> web tier: refused"));
        return DoubleHopRun {
            outcome: journal.outcome(user, SessionProtocol::Web, policy(case), Status::Failed),
            trace,
            findings: Vec::new(),
        };
    }
    journal.step(format!("web tier: {status}, as {}", field("user: ")));
    let scheme = match case.auth {
        BrowserAuth::Kerberos => "Negotiate",
        BrowserAuth::Ntlm => "NTLM",
        BrowserAuth::Basic => "Basic",
        BrowserAuth::BasicTls => "Basic over TLS",
    };
    trace.push(format!(
        "browser ({browser_at}) -> web tier: {scheme}; token: {}",
        field("token: ")
    ));
    trace.push(format!(
        "web tier ({}) -> store: {}",
        case.app_at(),
        field("hop: ")
    ));
    body.lines()
        .filter_map(|l| l.strip_prefix("step: "))
        .for_each(|s| journal.step(s.to_string()));
    let result = field("result: ");
    let outcome_status = if status == 200 {
        journal.step(format!("application: lists {result}"));
        Status::Authenticated
    } else {
        journal.step(format!("application: {} {result}", raises(case.provider)));
        let name = result.split(' ').next().unwrap_or_default();
        if let Some(code) = crate::codes::ErrorCode::by_name(name) {
            journal.code(code);
        }
        Status::Failed
    };
    let found: Vec<WebFinding> = body
        .lines()
        .filter_map(|l| l.strip_prefix("finding: "))
        .filter_map(|l| WebFinding::by_kind(l.split(' ').next().unwrap_or_default()))
        .collect();
    let findings = tier_findings(&found, &mut journal);
    DoubleHopRun {
        outcome: journal.outcome(user, SessionProtocol::Web, policy(case), outcome_status),
        trace,
        findings,
    }
}

/// How the application reports a failed hop: CDO raises the MAPI code; a WebDAV request
/// gets the HTTP status.
fn raises(provider: StoreProvider) -> &'static str {
    match provider {
        StoreProvider::WebDav => "the WebDAV request fails with",
        _ => "CDO raises",
    }
}

/// The policy line of a case's outcome.
pub fn policy(case: &DoubleHopCase) -> String {
    let auth = match case.auth {
        BrowserAuth::Kerberos => "integrated Kerberos, delegating",
        BrowserAuth::Ntlm => "integrated NTLM",
        BrowserAuth::Basic => "Basic",
        BrowserAuth::BasicTls => "Basic over TLS",
    };
    format!("browser ({auth}) -> {}", case.provider.describe())
}

/// The web tier's authenticator: Negotiate with its `HTTP/` key, NTLM and Basic against
/// the directory (as `harness serve --web` builds it).
fn web_tier(world: &Arc<World>, now: i64, seed: u64) -> HttpAuthenticator {
    let schemes = vec![HttpScheme::Ntlm, HttpScheme::Basic];
    HttpAuthenticator::for_world(world, schemes, seed, u64::try_from(now).unwrap_or(0))
        .with_kerberos(super::http_acceptor(world, seed ^ 0x4853))
}

/// The browser's request to the web tier, authenticated as `case.auth` says, straight to
/// the tier's authenticator; the steps go in `journal`. Err: how the session ended.
fn browse(
    world: &Arc<World>,
    reach: &mut InProcess,
    user: &str,
    case: &DoubleHopCase,
    password: &str,
    seed: u64,
    journal: &mut Journal,
) -> Result<HttpPrincipal, Status> {
    let now = reach.now;
    let mut server = web_tier(world, now, seed);
    let mut conn = ConnectionAuth::default();
    let mut browser = Browser::new(user, password, &world.domain, case.auth, seed);
    let realm = crate::kerberos::realm::realm_of(world);
    let mut exchange = |req: &[u8]| Ok(reach.kdc.handle(req, now).bytes);
    let mut run = || -> Result<HttpPrincipal, String> {
        browser.get_tickets(&mut exchange, &realm, now)?;
        let mut header = browser.first(PAGE, now)?;
        // NTLM takes two requests; nothing takes more.
        for _ in 0..2 {
            match server.check_at(&mut conn, Some(&header), now) {
                Verdict::Authenticated(p) => {
                    browser.step(format!("web tier: 200, {} as {}", p.scheme.name(), p.user));
                    return Ok(p);
                }
                Verdict::Unauthorized {
                    www_authenticate,
                    refusal,
                } => {
                    header = browser
                        .challenged(PAGE, &www_authenticate)
                        .map_err(|_| format!("web tier: 401 ({refusal})"))?;
                }
                Verdict::BadRequest(why) => return Err(format!("web tier: 400 ({why})")),
            }
        }
        Err("web tier: 401 after NTLM's AUTHENTICATE".into())
    };
    let result = run();
    browser.steps().iter().for_each(|s| journal.step(s.clone()));
    result.map_err(|why| {
        journal.step(why);
        journal.code(crate::codes::ErrorCode::new(
            crate::codes::Family::Http,
            401,
        ));
        Status::Failed
    })
}
