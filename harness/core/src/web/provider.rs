//! The web tier's application opening the browsing user's mailbox (KB 918710): which store
//! provider it uses, what the logon token gives that provider for the hop to the store,
//! and the run of that hop. The decisions are data ([`plan`]); the run
//! ([`open_mailbox`]) goes through a [`StoreReach`], which the lab implements over sockets
//! and scenarios implement in process, so both take the same steps.
//!
//! The providers, as the KB describes them:
//! - **Exchange's provider** (CDO 1.21 with emsmdb32): MAPI over Exchange RPC with NTLM
//!   only. A token with a password (Basic, or the user's own session) authenticates; any
//!   other token gives SSPI nothing but anonymous NTLM, which the store refuses:
//!   MAPI_E_LOGON_FAILED, even with a delegated Kerberos ticket in hand.
//! - **Outlook's provider**: MAPI with Kerberos, a ticket for the store's `exchangeMDB/`
//!   principal from the forwarded TGT or from the session's password. Not meant to run in
//!   a service (a finding whenever it is chosen).
//! - **WebDAV**: HTTP to the store, which does its own HTTP authentication: Negotiate with
//!   a ticket for the store's `HTTP/` principal, or NTLM with the session's password.
//!
//! With the application on the Exchange server itself, a MAPI provider reaches the store
//! by local RPC under the token: no network authentication, no second hop.

use super::token::{HopCredential, HopMechanism, HopRefusal, LogonToken};
use crate::codes::{known, ErrorCode};
use crate::dcerpc::emsmdb;
use crate::dcerpc::legacy_dn;
use crate::driver::mapi_client::{MapiAuth, MapiClient, MapiClientConfig};
use crate::driver::ClientSession;
use crate::kerberos::client::{self, Credentials, Request};
use crate::kerberos::gss::{self, gss_flags, KRB5_OID};
use crate::kerberos::spnego;
use crate::kerberos::{Name, NT_SRV_HST};
use crate::ntlm::{Credentials as NtlmCredentials, InitiatorOptions, NtlmInitiator, ResponseKind};
use crate::rng::SeededRng;
use crate::webdav::{self, client::DavCall};
use crate::world::World;
use base64::Engine as _;

/// The store provider the application opens the mailbox with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StoreProvider {
    /// CDO 1.21 with Exchange's MAPI store provider (emsmdb32): NTLM only.
    ExchangeMapi,
    /// CDO 1.21 with Outlook's MAPI store provider: Kerberos.
    OutlookMapi,
    /// WebDAV over HTTP to the store.
    WebDav,
}

impl StoreProvider {
    pub const ALL: [StoreProvider; 3] = [
        StoreProvider::ExchangeMapi,
        StoreProvider::OutlookMapi,
        StoreProvider::WebDav,
    ];

    /// The name a URL or a scenario file uses: `exchange`, `outlook`, `webdav`.
    pub fn key(self) -> &'static str {
        match self {
            StoreProvider::ExchangeMapi => "exchange",
            StoreProvider::OutlookMapi => "outlook",
            StoreProvider::WebDav => "webdav",
        }
    }

    pub fn parse(key: &str) -> Option<StoreProvider> {
        StoreProvider::ALL.into_iter().find(|p| p.key() == key)
    }

    pub fn describe(self) -> &'static str {
        match self {
            StoreProvider::ExchangeMapi => {
                "CDO 1.21 with Exchange's store provider (MAPI over Exchange RPC, NTLM only)"
            }
            StoreProvider::OutlookMapi => {
                "CDO 1.21 with Outlook's store provider (MAPI over Exchange RPC, Kerberos)"
            }
            StoreProvider::WebDav => "WebDAV (HTTP to the store, its own authentication)",
        }
    }
}

/// Which host the application runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AppHost {
    /// Its own web server: the store is a network hop away.
    WebTier,
    /// The Exchange server: MAPI reaches the store by local RPC.
    ExchangeHost,
}

/// Where a Kerberos ticket for the store comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketSource {
    /// The logon session's password: a TGT from the KDC first.
    Password,
    /// The TGT the browser forwarded.
    DelegatedTgt(Box<Credentials>),
}

/// How the application authenticates to the WebDAV store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DavAuth {
    /// Negotiate with a ticket for the store's `HTTP/` principal.
    Negotiate(TicketSource),
    /// NTLM with the session's password.
    Ntlm,
    /// No credentials: the request goes without Authorization.
    Anonymous,
}

/// The hop to the store, as the provider and the token make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hop {
    /// Local RPC on the Exchange host under the token itself.
    Local,
    /// MAPI with NTLM: as the user with the session's password, or anonymous.
    MapiNtlm {
        anonymous: bool,
    },
    /// MAPI with Kerberos.
    MapiKerberos(TicketSource),
    /// The provider has nothing to authenticate with: it fails before the wire.
    NoCredentials(HopRefusal),
    WebDav(DavAuth),
}

impl Hop {
    /// One line for reports.
    pub fn describe(&self) -> String {
        match self {
            Hop::Local => "local RPC on the Exchange host under the token (no second hop)".into(),
            Hop::MapiNtlm { anonymous: false } => "NTLM with the logon session's password".into(),
            Hop::MapiNtlm { anonymous: true } => {
                "NTLM, anonymous (the token holds no credentials)".into()
            }
            Hop::MapiKerberos(source) => format!("Kerberos, {}", source_text(source)),
            Hop::NoCredentials(why) => format!("none: {why}"),
            Hop::WebDav(DavAuth::Negotiate(source)) => {
                format!("HTTP Negotiate (Kerberos), {}", source_text(source))
            }
            Hop::WebDav(DavAuth::Ntlm) => "HTTP NTLM with the logon session's password".into(),
            Hop::WebDav(DavAuth::Anonymous) => {
                "HTTP without credentials (the token holds none)".into()
            }
        }
    }
}

fn source_text(source: &TicketSource) -> &'static str {
    match source {
        TicketSource::Password => "a TGT from the session's password",
        TicketSource::DelegatedTgt(_) => "the forwarded TGT",
    }
}

/// The hop `provider` makes with `token` from an application on `host`.
pub fn plan(token: &LogonToken, provider: StoreProvider, host: AppHost) -> Hop {
    let ticket_source = |c: HopCredential| match c {
        HopCredential::Password => TicketSource::Password,
        HopCredential::DelegatedTgt(tgt) => TicketSource::DelegatedTgt(tgt),
    };
    match (provider, host) {
        (StoreProvider::ExchangeMapi | StoreProvider::OutlookMapi, AppHost::ExchangeHost) => {
            Hop::Local
        }
        (StoreProvider::ExchangeMapi, AppHost::WebTier) => Hop::MapiNtlm {
            anonymous: token.next_hop(HopMechanism::Ntlm).is_err(),
        },
        (StoreProvider::OutlookMapi, AppHost::WebTier) => {
            match token.next_hop(HopMechanism::Kerberos) {
                Ok(c) => Hop::MapiKerberos(ticket_source(c)),
                Err(why) => Hop::NoCredentials(why),
            }
        }
        (StoreProvider::WebDav, _) => Hop::WebDav(
            match (
                token.next_hop(HopMechanism::Kerberos),
                token.next_hop(HopMechanism::Ntlm),
            ) {
                (Ok(HopCredential::DelegatedTgt(tgt)), _) => {
                    DavAuth::Negotiate(TicketSource::DelegatedTgt(tgt))
                }
                (_, Ok(_)) => DavAuth::Ntlm,
                _ => DavAuth::Anonymous,
            },
        ),
    }
}

/// One message of the listing the page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxRow {
    pub subject: String,
    pub from: String,
    pub size: u32,
}

/// What the tiers notice about a case besides its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebFinding {
    /// Basic without TLS: the password crossed the wire in clear text.
    CleartextCredentials,
    /// Outlook's store provider in a service (KB 918710: not suitable there).
    UnsuitableProvider,
}

impl WebFinding {
    /// The scenario finding kind.
    pub fn kind(self) -> &'static str {
        match self {
            WebFinding::CleartextCredentials => "cleartext-credentials",
            WebFinding::UnsuitableProvider => "unsuitable-provider",
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            WebFinding::CleartextCredentials => "Basic without TLS: the password crossed the wire",
            WebFinding::UnsuitableProvider => {
                "Outlook's store provider runs in a service, where it is not supported"
            }
        }
    }

    pub fn by_kind(kind: &str) -> Option<WebFinding> {
        [
            WebFinding::CleartextCredentials,
            WebFinding::UnsuitableProvider,
        ]
        .into_iter()
        .find(|f| f.kind() == kind)
    }
}

/// What opening the mailbox came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxAnswer {
    pub provider: StoreProvider,
    pub host: AppHost,
    pub hop: Hop,
    /// The hop's exchanges, one line each (KDC, RPC, HTTP).
    pub steps: Vec<String>,
    /// The listing, or the code the application gets.
    pub result: Result<Vec<MailboxRow>, ErrorCode>,
    pub findings: Vec<WebFinding>,
}

/// The store's answer to one WebDAV request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DavReply {
    pub status: u16,
    pub www_authenticate: Vec<String>,
    pub body: Vec<u8>,
}

/// The store and the KDC as the web tier reaches them.
pub trait StoreReach {
    /// One KDC exchange (a request's octets, the reply's).
    fn kdc(&mut self, request: &[u8]) -> Result<Vec<u8>, String>;
    /// Runs a MAPI client session against the store's Exchange RPC endpoint to its end.
    fn run_mapi(&mut self, client: &mut dyn ClientSession);
    /// Sends `call` to the store's WebDAV server with `authorization`, on a new
    /// connection or on the one the last call used (NTLM's legs must share it).
    fn webdav(
        &mut self,
        call: &DavCall,
        authorization: Option<&str>,
        new_connection: bool,
    ) -> Result<DavReply, String>;
    /// The clock of the web tier's host (Unix seconds): authenticators carry it.
    fn now(&self) -> i64;
}

/// What the application needs to know of the lab: the store's host and the realm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSite {
    pub realm: String,
    /// The store's host name (its service principals' instance).
    pub store_host: String,
    /// The NetBIOS domain (NTLM) and the legacy DN's organisation.
    pub domain: String,
    /// Seeds tickets' nonces and NTLM's challenges.
    pub seed: u64,
}

impl StoreSite {
    pub fn for_world(world: &World, seed: u64) -> StoreSite {
        StoreSite {
            realm: crate::kerberos::realm::realm_of(world),
            store_host: world.hostname.clone(),
            domain: world.domain.clone(),
            seed,
        }
    }
}

/// The password the token's logon session holds, if any: Basic's (the directory holds
/// the same one, just verified), or the user's own on the web tier's host.
pub fn session_password(token: &LogonToken, world: &World) -> Option<String> {
    token
        .next_hop(HopMechanism::Ntlm)
        .ok()
        .and_then(|_| world.directory.password(&token.user))
}

/// Opens `token`'s mailbox with `provider` from an application on `host`. `password` is
/// what the logon session holds when the token has one (Basic's, or the user's own);
/// `world` answers a local RPC on the Exchange host.
pub fn open_mailbox(
    token: &LogonToken,
    password: Option<&str>,
    provider: StoreProvider,
    host: AppHost,
    site: &StoreSite,
    world: &World,
    reach: &mut dyn StoreReach,
) -> MailboxAnswer {
    let hop = plan(token, provider, host);
    let mut answer = MailboxAnswer {
        provider,
        host,
        hop: hop.clone(),
        steps: Vec::new(),
        result: Err(known::MAPI_E_LOGON_FAILED),
        findings: Vec::new(),
    };
    if token.cleartext_on_the_wire() {
        answer.findings.push(WebFinding::CleartextCredentials);
    }
    if provider == StoreProvider::OutlookMapi {
        answer.findings.push(WebFinding::UnsuitableProvider);
    }
    let password = password.unwrap_or_default();
    match hop {
        Hop::Local => {
            answer.steps.push(format!(
                "local RPC: open {}'s mailbox under the token",
                token.user
            ));
            answer.result = Ok(emsmdb::inbox_rows(world, &token.user)
                .into_iter()
                .map(|r| MailboxRow {
                    subject: r.subject,
                    from: r.from,
                    size: r.size,
                })
                .collect());
        }
        Hop::NoCredentials(why) => {
            answer
                .steps
                .push(format!("provider: no credentials for Kerberos ({why})"));
            answer.result = Err(known::MAPI_E_LOGON_FAILED);
        }
        Hop::MapiNtlm { anonymous } => {
            let (user, secret) = if anonymous {
                ("", "")
            } else {
                (token.user.as_str(), password)
            };
            let cfg = mapi_config(token, site, user, secret, MapiAuth::Ntlm);
            answer.result = run_mapi(cfg, reach, &mut answer.steps);
        }
        Hop::MapiKerberos(source) => {
            let service = Name {
                kind: NT_SRV_HST,
                components: vec!["exchangeMDB".into(), site.store_host.clone()],
            };
            match store_ticket(token, password, &source, &service, site, reach) {
                Ok((ticket, steps)) => {
                    answer.steps.extend(steps);
                    let auth = MapiAuth::Kerberos {
                        ticket: Box::new(ticket),
                        now: reach.now(),
                    };
                    let cfg = mapi_config(token, site, &token.user, "", auth);
                    answer.result = run_mapi(cfg, reach, &mut answer.steps);
                }
                Err(steps) => {
                    answer.steps.extend(steps);
                    answer.result = Err(known::MAPI_E_LOGON_FAILED);
                }
            }
        }
        Hop::WebDav(auth) => {
            answer.result = webdav_listing(token, password, &auth, site, reach, &mut answer.steps);
        }
    }
    answer
}

fn mapi_config(
    token: &LogonToken,
    site: &StoreSite,
    user: &str,
    password: &str,
    auth: MapiAuth,
) -> MapiClientConfig {
    let mut cfg = MapiClientConfig::new(
        user,
        password,
        &legacy_dn::user_dn(&site.domain, &token.user),
    );
    cfg.actor = token.user.clone();
    cfg.domain = if user.is_empty() {
        String::new()
    } else {
        site.domain.clone()
    };
    // A service shows no prompt: a refused logon is the application's error.
    cfg.max_prompts = 0;
    cfg.seed = site.seed;
    cfg.auth = auth;
    cfg.list_inbox = true;
    cfg
}

fn run_mapi(
    cfg: MapiClientConfig,
    reach: &mut dyn StoreReach,
    steps: &mut Vec<String>,
) -> Result<Vec<MailboxRow>, ErrorCode> {
    let mut client = MapiClient::new(cfg);
    reach.run_mapi(&mut client);
    let outcome = client.outcome();
    steps.extend(outcome.steps.iter().map(|s| format!("  {s}")));
    match client.listing() {
        Some(rows) => Ok(rows
            .iter()
            .map(|m| MailboxRow {
                subject: m.subject.clone(),
                from: m.from.clone(),
                size: m.size,
            })
            .collect()),
        // The last MAPI code the session reported is the application's error.
        None => Err(outcome
            .codes
            .iter()
            .rev()
            .find(|c| c.family == crate::codes::Family::Mapi)
            .copied()
            .unwrap_or(known::MAPI_E_NETWORK_ERROR)),
    }
}

/// The WebDAV provider: a PROPFIND of the Inbox (Depth `1,noroot`), authenticated as
/// `auth` says (NTLM's CHALLENGE answered on the same connection), its 207 read into the
/// listing. A refusal is the HTTP status the application's request got.
fn webdav_listing(
    token: &LogonToken,
    password: &str,
    auth: &DavAuth,
    site: &StoreSite,
    reach: &mut dyn StoreReach,
    steps: &mut Vec<String>,
) -> Result<Vec<MailboxRow>, ErrorCode> {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let http = |status: u16| ErrorCode::new(crate::codes::Family::Http, u32::from(status));
    let path = format!("/exchange/{}/Inbox/", token.user);
    let call = webdav::client::propfind_request(&path, webdav::client::Depth::OneNoRoot);
    let mut ntlm = None;
    let (mut authorization, label) = match auth {
        DavAuth::Anonymous => (None, "no Authorization"),
        DavAuth::Ntlm => {
            let mut client = NtlmInitiator::new(
                NtlmCredentials {
                    user: token.user.clone(),
                    password: password.to_string(),
                    domain: site.domain.clone(),
                    workstation: "WEBTIER".into(),
                },
                InitiatorOptions::fixed(site.seed as u8, 7, ResponseKind::V2, true),
            );
            let first = format!("NTLM {}", b64(&client.negotiate()));
            ntlm = Some(client);
            (Some(first), "Authorization: NTLM (NEGOTIATE)")
        }
        DavAuth::Negotiate(source) => {
            let service = Name {
                kind: NT_SRV_HST,
                components: vec!["HTTP".into(), site.store_host.clone()],
            };
            let (ticket, got) = match store_ticket(token, password, source, &service, site, reach) {
                Ok(t) => t,
                Err(got) => {
                    steps.extend(got);
                    return Err(http(401));
                }
            };
            steps.extend(got);
            let mut rng = SeededRng::new(site.seed ^ 0x4441_5647);
            let (gss_token, _) = gss::initiate(
                &ticket,
                gss_flags::MUTUAL,
                None,
                false,
                reach.now(),
                &mut rng,
            );
            let init = spnego::write_init(&spnego::NegTokenInit {
                mech_types: vec![KRB5_OID.to_vec()],
                mech_token: Some(gss_token),
            });
            (
                Some(format!("Negotiate {}", b64(&init))),
                "Authorization: Negotiate (AP-REQ)",
            )
        }
    };
    let mut label = label.to_string();
    // NTLM takes two requests; nothing takes more.
    for leg in 0..2 {
        steps.push(format!("  C: PROPFIND {path} (Depth 1,noroot), {label}"));
        let reply = match reach.webdav(&call, authorization.as_deref(), leg == 0) {
            Ok(r) => r,
            Err(why) => {
                steps.push(format!("  WebDAV: {why}"));
                return Err(known::MAPI_E_NETWORK_ERROR);
            }
        };
        let challenge = crate::http_auth::ntlm_challenge(&reply.www_authenticate);
        match (reply.status, ntlm.as_mut(), challenge) {
            (207, _, _) => {
                let entries = webdav::client::read_multistatus(&reply.body).map_err(|e| {
                    steps.push(format!("  S: 207 that does not read: {e}"));
                    known::MAPI_E_NETWORK_ERROR
                })?;
                let rows: Vec<MailboxRow> = entries
                    .into_iter()
                    .filter(|e| !e.is_folder)
                    .map(|e| MailboxRow {
                        subject: e.subject.unwrap_or_default(),
                        from: e.from.unwrap_or_default(),
                        size: e.size.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
                    })
                    .collect();
                steps.push(format!("  S: 207 Multi-Status, {} messages", rows.len()));
                return Ok(rows);
            }
            (401, Some(client), Some(challenge)) => {
                steps.push("  S: 401, WWW-Authenticate: NTLM (CHALLENGE)".into());
                let authenticate = client.handle_challenge(&challenge).map_err(|e| {
                    steps.push(format!("  the CHALLENGE does not read: {e}"));
                    http(401)
                })?;
                authorization = Some(format!("NTLM {}", b64(&authenticate)));
                label = "Authorization: NTLM (AUTHENTICATE)".into();
                ntlm = None;
            }
            (status, _, _) => {
                steps.push(format!("  S: {status}"));
                return Err(http(status));
            }
        }
    }
    Err(http(401))
}

/// A ticket for `service`: from the forwarded TGT, or a TGT from the password first.
/// The steps name each KDC exchange.
fn store_ticket(
    token: &LogonToken,
    password: &str,
    source: &TicketSource,
    service: &Name,
    site: &StoreSite,
    reach: &mut dyn StoreReach,
) -> Result<(Credentials, Vec<String>), Vec<String>> {
    let now = reach.now();
    let mut rng = SeededRng::new(site.seed ^ 0x5447_5352);
    let mut steps = Vec::new();
    let mut exchange = |req: &[u8]| reach.kdc(req);
    let tgt = match source {
        TicketSource::DelegatedTgt(tgt) => (**tgt).clone(),
        TicketSource::Password => {
            // The session's own TGT: the store's ticket needs nothing more of it.
            match client::login(
                &mut exchange,
                &token.user,
                &site.realm,
                password,
                &Request::default(),
                now,
                &mut rng,
            ) {
                Ok(tgt) => {
                    steps.push(format!(
                        "KDC: AS exchange for {}@{}: TGT",
                        token.user, site.realm
                    ));
                    tgt
                }
                Err(e) => {
                    steps.push(format!("KDC: AS exchange for {}: {e}", token.user));
                    return Err(steps);
                }
            }
        }
    };
    match client::ticket(
        &mut exchange,
        &tgt,
        service,
        &Request::default(),
        now,
        &mut rng,
    ) {
        Ok(ticket) => {
            steps.push(format!("KDC: TGS exchange for {service}: ticket"));
            Ok((ticket, steps))
        }
        Err(e) => {
            steps.push(format!("KDC: TGS exchange for {service}: {e}"));
            Err(steps)
        }
    }
}

/// The application's page for `answer`: the listing (200) or the error CDO raised (500),
/// after the token and the hop.
pub fn render(token: &LogonToken, answer: &MailboxAnswer) -> super::WebResponse {
    let mut body = format!(
        "user: {}\ntoken: {}\napplication: {}\nprovider: {}\nhop: {}\n",
        token.user,
        token.kind_name(),
        match answer.host {
            AppHost::WebTier => "on the web tier's own host",
            AppHost::ExchangeHost => "on the Exchange host",
        },
        answer.provider.describe(),
        answer.hop.describe(),
    );
    answer
        .steps
        .iter()
        .for_each(|s| body.push_str(&format!("step: {s}\n")));
    let status = match &answer.result {
        Ok(rows) => {
            body.push_str(&format!("result: {} messages\n", rows.len()));
            rows.iter().for_each(|r| {
                body.push_str(&format!(
                    "message: {} | {} | {} octets\n",
                    r.subject, r.from, r.size
                ))
            });
            200
        }
        Err(code) => {
            body.push_str(&format!("result: {code}\n"));
            500
        }
    };
    answer
        .findings
        .iter()
        .for_each(|f| body.push_str(&format!("finding: {} ({})\n", f.kind(), f.text())));
    super::WebResponse { status, body }
}

/// The store and the KDC in process: the lab's KDC core and Exchange RPC endpoint, a
/// fixed clock. Scenarios and tests open mailboxes through it.
pub struct InProcess {
    pub kdc: crate::kerberos::Kdc,
    pub endpoints: crate::dcerpc::endpoints::RpcEndpoints,
    pub now: i64,
    world: std::sync::Arc<World>,
    /// The WebDAV store's authentication (IIS on the Exchange host) and the state of the
    /// application's connection to it.
    dav_auth: crate::http_auth::HttpAuthenticator,
    dav_conn: crate::http_auth::ConnectionAuth,
}

impl InProcess {
    /// The world's realm and store, the clock at `now`.
    pub fn for_world(world: &std::sync::Arc<World>, now: i64, seed: u64) -> InProcess {
        use crate::kerberos::{Kdc, KdcConfig, RealmDb};
        InProcess {
            kdc: Kdc::new(RealmDb::for_world(world), KdcConfig::default(), seed),
            endpoints: crate::scenario::rpc_endpoints(
                world,
                crate::dcerpc::emsmdb::EmsmdbProfile::Exchange2010,
                seed,
            ),
            now,
            world: world.clone(),
            dav_auth: crate::http_auth::HttpAuthenticator::for_world(
                world,
                vec![
                    crate::http_auth::HttpScheme::Ntlm,
                    crate::http_auth::HttpScheme::Basic,
                ],
                seed ^ 0x4441_5600,
                u64::try_from(now).unwrap_or(0),
            )
            .with_kerberos(super::http_acceptor(world, seed ^ 0x4441_564B)),
            dav_conn: crate::http_auth::ConnectionAuth::default(),
        }
    }
}

impl StoreReach for InProcess {
    fn kdc(&mut self, request: &[u8]) -> Result<Vec<u8>, String> {
        Ok(self.kdc.handle(request, self.now).bytes)
    }

    fn run_mapi(&mut self, client: &mut dyn ClientSession) {
        let exchange = self.endpoints.exchange.clone();
        let mut connect = |_n: usize| -> Box<dyn crate::session::ServerSession> {
            Box::new(exchange.accept(std::time::Duration::ZERO))
        };
        crate::driver::run_with_reconnect(client, &mut connect, 10_000);
    }

    fn webdav(
        &mut self,
        call: &DavCall,
        authorization: Option<&str>,
        new_connection: bool,
    ) -> Result<DavReply, String> {
        use crate::http_auth::Verdict;
        if new_connection {
            self.dav_conn = crate::http_auth::ConnectionAuth::default();
        }
        let header = |name: &str| {
            call.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        match self
            .dav_auth
            .check_at(&mut self.dav_conn, authorization, self.now)
        {
            Verdict::Authenticated(p) => {
                let answer = webdav::handle(
                    &webdav::DavRequest {
                        method: call.method,
                        path: &call.path,
                        depth: header("Depth"),
                        brief: header("Brief"),
                        host: Some(&self.world.hostname),
                        tls: false,
                        body: &call.body,
                    },
                    &p.user,
                    &self.world,
                );
                Ok(DavReply {
                    status: answer.status,
                    www_authenticate: Vec::new(),
                    body: answer.body,
                })
            }
            Verdict::Unauthorized {
                www_authenticate, ..
            } => Ok(DavReply {
                status: 401,
                www_authenticate,
                body: Vec::new(),
            }),
            Verdict::BadRequest(why) => Ok(DavReply {
                status: 400,
                www_authenticate: Vec::new(),
                body: why.to_string().into_bytes(),
            }),
        }
    }

    fn now(&self) -> i64 {
        self.now
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::http_auth::{HttpPrincipal, HttpScheme};
    use crate::kerberos::flags::{FORWARDABLE, FORWARDED};
    use crate::LabFile;
    use std::sync::Arc;

    /// The scenarios' epoch: the in-process RPC endpoint's Kerberos clock.
    pub(crate) const NOW: i64 = 1_704_067_200;

    /// alice's TGT as a browser forwards it (forwardable, forwarded), from `kdc`.
    pub(crate) fn delegated_tgt(kdc: &mut crate::kerberos::Kdc) -> Credentials {
        let mut rng = SeededRng::new(2);
        let mut exchange = |r: &[u8]| Ok(kdc.handle(r, NOW).bytes);
        let fwd = Request {
            options: FORWARDABLE,
            ..Request::default()
        };
        let tgt = client::login(
            &mut exchange,
            "alice",
            "EXAMPLE.TEST",
            "secret",
            &fwd,
            NOW,
            &mut rng,
        )
        .expect("TGT");
        let forwarded = Request {
            options: FORWARDABLE | FORWARDED,
            ..Request::default()
        };
        client::ticket(
            &mut exchange,
            &tgt,
            &Name::tgs("EXAMPLE.TEST"),
            &forwarded,
            NOW,
            &mut rng,
        )
        .expect("forwarded")
    }

    fn token(scheme: HttpScheme, same_host: bool, delegated: Option<Credentials>) -> LogonToken {
        let principal = HttpPrincipal {
            scheme,
            user: "alice".into(),
            domain: "EXAMPLE".into(),
            delegated: delegated.map(Box::new),
            mutual: None,
        };
        LogonToken::from_principal(&principal, same_host, true)
    }

    fn subjects(world: &World) -> Vec<String> {
        emsmdb::inbox_rows(world, "alice")
            .into_iter()
            .map(|r| r.subject)
            .collect()
    }

    #[test]
    fn each_provider_opens_the_mailbox_exactly_when_the_token_can_make_its_hop() {
        let world = Arc::new(LabFile::default_lab().build().expect("lab"));
        let site = StoreSite::for_world(&world, 5);
        let mut reach = InProcess::for_world(&world, NOW, 5);
        let tgt = delegated_tgt(&mut reach.kdc);
        let want = subjects(&world);
        assert!(!want.is_empty(), "alice has mail in the default lab");
        let tokens = [
            ("basic", token(HttpScheme::Basic, false, None)),
            ("local", token(HttpScheme::Ntlm, true, None)),
            ("ntlm", token(HttpScheme::Ntlm, false, None)),
            ("kerberos", token(HttpScheme::Negotiate, false, None)),
            (
                "delegated",
                token(HttpScheme::Negotiate, false, Some(tgt.clone())),
            ),
        ];
        let mut got = Vec::new();
        for (name, token) in &tokens {
            for provider in StoreProvider::ALL {
                for host in [AppHost::WebTier, AppHost::ExchangeHost] {
                    let answer = open_mailbox(
                        token,
                        Some("secret").filter(|_| token.next_hop(HopMechanism::Ntlm).is_ok()),
                        provider,
                        host,
                        &site,
                        &world,
                        &mut reach,
                    );
                    if let Ok(rows) = &answer.result {
                        let listed: Vec<String> = rows.iter().map(|r| r.subject.clone()).collect();
                        assert_eq!(listed, want, "{name} {provider:?} {host:?}");
                    }
                    got.push(format!(
                        "{name:9} {:8} {:13} {}",
                        provider.key(),
                        format!("{host:?}"),
                        match &answer.result {
                            Ok(_) => "listing".to_string(),
                            Err(code) => code.to_string(),
                        }
                    ));
                }
            }
        }
        // KB 918710: Exchange's provider fails on every network token, the delegated
        // Kerberos one included; Outlook's provider and WebDAV make the hop with a
        // forwarded TGT; Basic and the browser on the web tier's host work with all; on
        // the Exchange host MAPI makes no second hop (WebDAV is HTTP there too).
        let logon_failed = "MAPI_E_LOGON_FAILED (0x80040111)";
        let denied = "HTTP_STATUS_DENIED (401)";
        let expect = |name: &str, provider: &str, host: &str| -> &str {
            match (name, provider, host) {
                ("basic" | "local", _, _) => "listing",
                ("delegated", "outlook" | "webdav", _) => "listing",
                (_, "webdav", _) => denied,
                (_, _, "ExchangeHost") => "listing",
                _ => logon_failed,
            }
        };
        for line in &got {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let result = parts[3..].join(" ");
            assert_eq!(result, expect(parts[0], parts[1], parts[2]), "{line}");
        }
        assert_eq!(got.len(), 30);
    }

    #[test]
    fn the_hops_leave_their_steps_and_the_store_refuses_anonymous_ntlm() {
        let world = Arc::new(LabFile::default_lab().build().expect("lab"));
        let site = StoreSite::for_world(&world, 5);
        let mut reach = InProcess::for_world(&world, NOW, 5);
        let tgt = delegated_tgt(&mut reach.kdc);
        let delegated = token(HttpScheme::Negotiate, false, Some(tgt));
        let mut open = |token: &LogonToken, password: Option<&str>, provider| {
            open_mailbox(
                token,
                password,
                provider,
                AppHost::WebTier,
                &site,
                &world,
                &mut reach,
            )
        };
        let answer = open(&delegated, None, StoreProvider::ExchangeMapi);
        assert_eq!(
            answer.hop,
            Hop::MapiNtlm { anonymous: true },
            "a Kerberos token has no password for NTLM"
        );
        // The refusal is the store's: the anonymous AUTHENTICATE went on the wire.
        assert!(
            answer
                .steps
                .iter()
                .any(|s| s.contains("NTLM (anonymous) at packet privacy")),
            "{:#?}",
            answer.steps
        );
        assert_eq!(answer.result, Err(known::MAPI_E_LOGON_FAILED));
        let page = render(&delegated, &answer);
        assert_eq!(page.status, 500);
        assert!(
            page.body
                .contains("\nresult: MAPI_E_LOGON_FAILED (0x80040111)\n"),
            "{}",
            page.body
        );

        let answer = open(&delegated, None, StoreProvider::OutlookMapi);
        assert_eq!(
            answer.steps[0],
            "KDC: TGS exchange for exchangeMDB/mail.example.test: ticket"
        );
        assert!(answer.steps[1].contains("Kerberos at packet privacy"));
        assert_eq!(answer.findings, [WebFinding::UnsuitableProvider]);
        let page = render(&delegated, &answer);
        assert_eq!(page.status, 200);
        assert!(page.body.contains("\nresult: "), "{}", page.body);

        // Basic: a TGT from the password, then the store's ticket.
        let basic = LogonToken::from_principal(
            &HttpPrincipal {
                scheme: HttpScheme::Basic,
                user: "alice".into(),
                domain: String::new(),
                delegated: None,
                mutual: None,
            },
            false,
            false,
        );
        let answer = open(&basic, Some("secret"), StoreProvider::OutlookMapi);
        assert_eq!(
            answer.steps[..2],
            [
                "KDC: AS exchange for alice@EXAMPLE.TEST: TGT",
                "KDC: TGS exchange for exchangeMDB/mail.example.test: ticket"
            ]
        );
        assert!(answer.result.is_ok());
        assert_eq!(answer.findings[0], WebFinding::CleartextCredentials);
        // A wrong password in the session: the KDC says no, the provider reports a
        // failed logon.
        let answer = open(&basic, Some("wrong"), StoreProvider::OutlookMapi);
        assert_eq!(answer.result, Err(known::MAPI_E_LOGON_FAILED));
        assert!(answer.steps[0].starts_with("KDC: AS exchange for alice: "));
        let answer = open(&basic, Some("wrong"), StoreProvider::ExchangeMapi);
        assert_eq!(answer.result, Err(known::MAPI_E_LOGON_FAILED));
    }
}
