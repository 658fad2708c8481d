//! Exchange's address-book provider (EMSABP) as KB 929439 describes it: a connection to a
//! global catalog's NSPI, with the process's credentials or the user's, and what it does
//! when that global catalog goes away.
//!
//! States ([`ProviderState`]):
//! - **process credentials**: the provider binds NSPI with Kerberos as the process (a
//!   service's account, an interactive user's logon); a global catalog that fails is
//!   replaced through a new referral (RfrGetNewDSA) when the profile allows reconnects
//!   (PR_PROFILE_ABP_ALLOW_RECONNECT, PROTOCOLS.md 8 and 14.3).
//! - **user credentials**: the provider wants the user's explicit credentials. It gets
//!   there when Kerberos with the process's credentials fails (the KDC answers that it
//!   does not know the new global catalog's principal while the directory moves, or does
//!   not know the process's realm across domains). A program that can show UI prompts and
//!   binds with what the user types (NTLM); a service cannot prompt, and every call fails
//!   with MAPI_E_NETWORK_ERROR. The state belongs to the process: only a restart leaves it.
//! - **ended**: after a failover the provider has bound the new global catalog and
//!   answers MAPI_E_END_OF_SESSION, so that the program logs on again.
//!
//! With the hotfix and EMSAB_UserAuth_Credentials = 1 a failed Kerberos bind leaves the
//! provider on the process's credentials: the call fails with MAPI_E_NETWORK_ERROR and the
//! next call tries the referral again; it never prompts (also across domains, where a
//! prompt was what let an interactive user in). Exchange 2003 SP1 without the hotfix, or
//! the hotfix with the value 0, moves to user credentials.
//!
//! Which code is on the wire is the real endpoints' (referral, KDC, NSPI); which MAPI code
//! the program sees is this model's, from the KB.

use harness_wire::dcerpc::{AuthLevel, AuthType};

use super::reach::{DirectoryReach, LinkError, RpcLink};
use crate::codes::{known, ErrorCode, Family};
use crate::dcerpc::client::BindSecurity;
use crate::dcerpc::kerberos::KerberosClientSecurity;
use crate::dcerpc::nspi::{client as nspi, NSPI_SYNTAX};
use crate::dcerpc::ntlm::NtlmClientSecurity;
use crate::dcerpc::rfr::{self, RFR_SYNTAX};
use crate::kerberos::client::{self as krb, Credentials as Ticket, Request};
use crate::kerberos::{Name, NT_SRV_HST};
use crate::ntlm::{Credentials, InitiatorOptions, ResponseKind};
use crate::rng::SeededRng;
use harness_wire::ndr::ContextHandle;

/// The provider's build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbpProfile {
    /// Exchange 2003 SP1's provider: reconnects, but a failed Kerberos bind moves it to
    /// user credentials.
    Exchange2003Sp1,
    /// With KB 929439's hotfix, which reads EMSAB_UserAuth_Credentials.
    Hotfix,
}

impl AbpProfile {
    pub const ALL: [AbpProfile; 2] = [AbpProfile::Exchange2003Sp1, AbpProfile::Hotfix];

    pub fn name(self) -> &'static str {
        match self {
            AbpProfile::Exchange2003Sp1 => "exchange2003-sp1",
            AbpProfile::Hotfix => "hotfix",
        }
    }

    pub fn by_name(name: &str) -> Option<AbpProfile> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// One configuration of the provider and its program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderConfig {
    pub profile: AbpProfile,
    /// The registry value EMSAB_UserAuth_Credentials (read by the hotfix only).
    pub user_auth_credentials: bool,
    /// PR_PROFILE_ABP_ALLOW_RECONNECT (0x66390003) in the profile's EMSAB section.
    pub allow_reconnect: bool,
    /// The program can show UI (an interactive program); a service cannot.
    pub can_prompt: bool,
}

impl ProviderConfig {
    /// The hotfix with the value set: a failed bind never leaves process credentials.
    pub fn keeps_process_credentials(&self) -> bool {
        self.profile == AbpProfile::Hotfix && self.user_auth_credentials
    }
}

/// Where the provider stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProviderState {
    ProcessCredentials,
    UserCredentials,
    Ended,
}

impl ProviderState {
    pub const ALL: [ProviderState; 3] = [
        ProviderState::ProcessCredentials,
        ProviderState::UserCredentials,
        ProviderState::Ended,
    ];

    pub fn by_name(name: &str) -> Option<ProviderState> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            ProviderState::ProcessCredentials => "process-credentials",
            ProviderState::UserCredentials => "user-credentials",
            ProviderState::Ended => "ended",
        }
    }
}

/// An account: a Kerberos principal in `realm` and the same account for NTLM in `domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user: String,
    pub realm: String,
    pub domain: String,
    pub password: String,
}

/// Who the program runs as, and what the user types at a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identities {
    pub process: Account,
    pub user: Account,
    /// The user's mailbox DN (RfrGetNewDSA's pUserDN).
    pub user_dn: String,
    /// The name the program resolves with every call.
    pub lookup: String,
    /// The Exchange server whose referral service names the global catalog.
    pub exchange_host: String,
}

/// What one address-book call came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallResult {
    /// None: the call succeeded.
    pub code: Option<ErrorCode>,
    /// The user was prompted for credentials during the call.
    pub prompted: bool,
    /// Codes seen on the way (KDC errors, RPC statuses).
    pub causes: Vec<ErrorCode>,
    /// The provider's state after the call.
    pub state: ProviderState,
    /// Every state the provider was in during the call, in order: the one it began in
    /// (after the program logged on again, if it did), then each it moved to; the last is
    /// `state`. A call can pass through user credentials (a prompt) and end the session.
    pub entered: Vec<ProviderState>,
}

/// An NSPI session on a global catalog.
struct Binding {
    fqdn: String,
    link: RpcLink,
    handle: ContextHandle,
}

/// Why a bind did not give a session.
enum BindFailure {
    /// Kerberos with the process's credentials was refused by the KDC.
    Credentials(ErrorCode),
    /// The host, the RPC layer or NSPI said no.
    Network(Option<ErrorCode>),
}

/// The provider of one process.
pub struct Provider {
    cfg: ProviderConfig,
    who: Identities,
    state: ProviderState,
    /// The user typed credentials at a prompt (kept for the process's life).
    user_entered: bool,
    /// The process's TGT, once it has one.
    tgt: Option<Ticket>,
    binding: Option<Binding>,
    /// The global catalog the session is on, also after its connection failed (without
    /// reconnects the provider keeps trying it).
    session_gc: Option<String>,
    /// A bound global catalog failed and a new one is being sought: binding one ends the
    /// session.
    failing_over: bool,
    rng: SeededRng,
    seed: u64,
}

/// RfrGetNewDSA's opnum ([MS-OXABREF] 3.1.4.1).
const OP_GET_NEW_DSA: u16 = 0;

impl Provider {
    pub fn new(cfg: ProviderConfig, who: Identities, seed: u64) -> Provider {
        Provider {
            cfg,
            who,
            state: ProviderState::ProcessCredentials,
            user_entered: false,
            tgt: None,
            binding: None,
            session_gc: None,
            failing_over: false,
            rng: SeededRng::new(seed),
            seed,
        }
    }

    pub fn state(&self) -> ProviderState {
        self.state
    }

    /// The program logs on again (after MAPI_E_END_OF_SESSION): a new session, the
    /// process's credential state kept.
    pub fn logon_again(&mut self, steps: &mut Vec<String>) {
        self.binding = None;
        self.session_gc = None;
        self.failing_over = false;
        if self.state == ProviderState::Ended {
            self.state = if self.user_entered {
                ProviderState::UserCredentials
            } else {
                ProviderState::ProcessCredentials
            };
        }
        steps.push(format!("program: logs on again ({})", self.state.name()));
    }

    /// One address-book call (NspiResolveNamesW of the lookup name).
    pub fn call(&mut self, reach: &mut dyn DirectoryReach, steps: &mut Vec<String>) -> CallResult {
        let mut result = CallResult {
            code: None,
            prompted: false,
            causes: Vec::new(),
            state: self.state,
            entered: vec![self.state],
        };
        result.code = self.call_inner(reach, steps, &mut result);
        result.state = self.state;
        result
    }

    fn call_inner(
        &mut self,
        reach: &mut dyn DirectoryReach,
        steps: &mut Vec<String>,
        result: &mut CallResult,
    ) -> Option<ErrorCode> {
        if self.state == ProviderState::Ended {
            steps.push("provider: the session has ended".into());
            return Some(known::MAPI_E_END_OF_SESSION);
        }
        if self.state == ProviderState::UserCredentials
            && !self.user_entered
            && !self.prompt(steps, result)
        {
            return Some(known::MAPI_E_NETWORK_ERROR);
        }
        if let Some(mut binding) = self.binding.take() {
            match lookup(&mut binding, &self.who.lookup, steps) {
                Ok(code) => {
                    self.binding = Some(binding);
                    return code;
                }
                Err(e) => {
                    cause(result, &e);
                    if !self.cfg.allow_reconnect {
                        // The session stays on its global catalog; the next call tries it
                        // again.
                        return Some(known::MAPI_E_NETWORK_ERROR);
                    }
                    self.failing_over = true;
                    self.session_gc = None;
                }
            }
        }
        let Ok(mut binding) = self.bind(reach, steps, result) else {
            return Some(known::MAPI_E_NETWORK_ERROR);
        };
        self.session_gc = Some(binding.fqdn.clone());
        if self.failing_over {
            self.failing_over = false;
            self.enter(ProviderState::Ended, result);
            steps.push(format!(
                "provider: bound to the new global catalog {}; the session ends so that the program reconnects",
                short(&binding.fqdn)
            ));
            self.binding = Some(binding);
            return Some(known::MAPI_E_END_OF_SESSION);
        }
        match lookup(&mut binding, &self.who.lookup, steps) {
            Ok(code) => {
                self.binding = Some(binding);
                code
            }
            Err(e) => {
                cause(result, &e);
                if self.cfg.allow_reconnect {
                    // The catalog just bound failed at once: as for a session that broke,
                    // the next call asks for a referral and ends the session when it binds.
                    self.failing_over = true;
                    self.session_gc = None;
                }
                Some(known::MAPI_E_NETWORK_ERROR)
            }
        }
    }

    /// The provider moves to `to` during a call; the call records it.
    fn enter(&mut self, to: ProviderState, result: &mut CallResult) {
        self.state = to;
        if result.entered.last() != Some(&to) {
            result.entered.push(to);
        }
    }

    /// The prompt, if the program can show one: true when the user entered credentials.
    fn prompt(&mut self, steps: &mut Vec<String>, result: &mut CallResult) -> bool {
        if !self.cfg.can_prompt {
            steps.push("provider: wants the user's credentials; a service cannot prompt".into());
            return false;
        }
        result.prompted = true;
        self.user_entered = true;
        steps.push(format!(
            "provider: prompts for credentials; the user enters {}\\{}",
            self.who.user.domain, self.who.user.user
        ));
        true
    }

    /// A new NSPI session: the referral (unless the session keeps its global catalog),
    /// then the bind with the credentials of the state, falling to user credentials where
    /// the profile says so.
    fn bind(
        &mut self,
        reach: &mut dyn DirectoryReach,
        steps: &mut Vec<String>,
        result: &mut CallResult,
    ) -> Result<Binding, ()> {
        for _attempt in 0..2 {
            let outcome = match self.session_gc.clone() {
                Some(fqdn) => self.bind_gc(reach, &fqdn, steps),
                None => match self.referral(reach, steps) {
                    Ok(fqdn) => self.bind_gc(reach, &fqdn, steps),
                    Err(f) => Err(f),
                },
            };
            match outcome {
                Ok(b) => return Ok(b),
                Err(BindFailure::Network(code)) => {
                    result.causes.extend(code);
                    return Err(());
                }
                Err(BindFailure::Credentials(code)) => {
                    result.causes.push(code);
                    if self.cfg.keeps_process_credentials() {
                        steps.push(
                            "provider: stays on the process's credentials (EMSAB_UserAuth_Credentials = 1)".into(),
                        );
                        return Err(());
                    }
                    self.enter(ProviderState::UserCredentials, result);
                    steps.push(
                        "provider: credentials failed; now wants the user's credentials".into(),
                    );
                    if !self.prompt(steps, result) {
                        return Err(());
                    }
                }
            }
        }
        Err(())
    }

    /// The security of a bind to `service`: Kerberos as the process, or NTLM with what
    /// the user typed.
    fn security(
        &mut self,
        reach: &mut dyn DirectoryReach,
        service: &str,
        steps: &mut Vec<String>,
    ) -> Result<BindSecurity, BindFailure> {
        self.seed = self.seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let provider: Box<dyn crate::dcerpc::security::ClientSecurity> =
            if self.state == ProviderState::UserCredentials {
                let u = &self.who.user;
                let [a, b, ..] = self.seed.to_le_bytes();
                Box::new(NtlmClientSecurity::new(
                    Credentials {
                        user: u.user.clone(),
                        password: u.password.clone(),
                        domain: u.domain.clone(),
                        workstation: "APPHOST".into(),
                    },
                    InitiatorOptions::fixed(a, b, ResponseKind::V2, true),
                ))
            } else {
                let ticket = self.ticket(reach, service, steps)?;
                Box::new(
                    KerberosClientSecurity::new(AuthType::KERBEROS, ticket, reach.now(), self.seed)
                        .third_leg_in_auth3(),
                )
            };
        Ok(BindSecurity {
            provider,
            level: AuthLevel::PKT_PRIVACY,
            auth_context_id: 1,
        })
    }

    /// A ticket for `service` from the process's TGT (an AS exchange first if it has none).
    fn ticket(
        &mut self,
        reach: &mut dyn DirectoryReach,
        service: &str,
        steps: &mut Vec<String>,
    ) -> Result<Ticket, BindFailure> {
        let now = reach.now();
        let mut exchange = |req: &[u8]| reach.kdc(req);
        let p = &self.who.process;
        let refused = |e: &krb::ClientError| {
            BindFailure::Credentials(ErrorCode::new(Family::Kerberos, e.code().unwrap_or(60)))
        };
        let tgt = match &self.tgt {
            Some(t) => t.clone(),
            None => match krb::login(
                &mut exchange,
                &p.user,
                &p.realm,
                &p.password,
                &Request::default(),
                now,
                &mut self.rng,
            ) {
                Ok(t) => {
                    steps.push(format!("KDC: AS exchange for {}@{}: TGT", p.user, p.realm));
                    self.tgt = Some(t.clone());
                    t
                }
                Err(e) => {
                    steps.push(format!(
                        "KDC: AS exchange for {}@{}: {}",
                        p.user,
                        p.realm,
                        krb_text(&e)
                    ));
                    return Err(refused(&e));
                }
            },
        };
        let name = Name::parse(service, NT_SRV_HST);
        match krb::ticket(
            &mut exchange,
            &tgt,
            &name,
            &Request::default(),
            now,
            &mut self.rng,
        ) {
            Ok(t) => {
                steps.push(format!("KDC: TGS exchange for {service}: ticket"));
                Ok(t)
            }
            Err(e) => {
                steps.push(format!("KDC: TGS exchange for {service}: {}", krb_text(&e)));
                Err(refused(&e))
            }
        }
    }

    /// RfrGetNewDSA on the Exchange server: the global catalog to use.
    fn referral(
        &mut self,
        reach: &mut dyn DirectoryReach,
        steps: &mut Vec<String>,
    ) -> Result<String, BindFailure> {
        let wire = reach.exchange().map_err(|e| network(steps, "RFR", &e))?;
        let service = format!("exchangeRFR/{}", self.who.exchange_host);
        let security = self.security(reach, &service, steps)?;
        let mut link = RpcLink::bind(wire, RFR_SYNTAX, security)
            .map_err(|e| network(steps, "RFR bind", &e))?;
        let stub = link
            .call(OP_GET_NEW_DSA, &rfr::get_new_dsa_request(&self.who.user_dn))
            .map_err(|e| network(steps, "RfrGetNewDSA", &e))?;
        match rfr::decode_get_new_dsa_response(&stub) {
            Ok((_, Some(Some(server)), 0)) => {
                let fqdn = String::from_utf8_lossy(&server).into_owned();
                steps.push(format!("RFR: RfrGetNewDSA: {fqdn}"));
                Ok(fqdn)
            }
            Ok((_, _, status)) => {
                let code = ErrorCode::new(Family::Mapi, status);
                steps.push(format!("RFR: RfrGetNewDSA: {code}"));
                Err(BindFailure::Network(Some(code)))
            }
            Err(e) => {
                steps.push(format!("RFR: RfrGetNewDSA: unreadable answer ({e})"));
                Err(BindFailure::Network(None))
            }
        }
    }

    /// A DCE/RPC association to NSPI on `fqdn` and NspiBind on it.
    fn bind_gc(
        &mut self,
        reach: &mut dyn DirectoryReach,
        fqdn: &str,
        steps: &mut Vec<String>,
    ) -> Result<Binding, BindFailure> {
        let gc = short(fqdn).to_string();
        let wire = reach
            .gc(fqdn)
            .map_err(|e| network(steps, &format!("NSPI {gc}: connect"), &e))?;
        let security = self.security(reach, &format!("exchangeAB/{fqdn}"), steps)?;
        let mech = if self.state == ProviderState::UserCredentials {
            "NTLM as the user"
        } else {
            "Kerberos as the process"
        };
        let mut link = RpcLink::bind(wire, NSPI_SYNTAX, security)
            .map_err(|e| network(steps, &format!("NSPI {gc}: bind ({mech})"), &e))?;
        let stub = link
            .call(
                nspi::opnum::BIND,
                &nspi::bind_stub(0, &nspi::stat(0x4E4), true),
            )
            .map_err(|e| network(steps, &format!("NSPI {gc}: NspiBind"), &e))?;
        match nspi::parse_bind(&stub) {
            Ok(b) if b.rc == 0 => {
                steps.push(format!("NSPI {gc}: bound ({mech})"));
                Ok(Binding {
                    fqdn: fqdn.to_string(),
                    link,
                    handle: b.handle,
                })
            }
            Ok(b) => {
                let code = ErrorCode::new(Family::Mapi, b.rc);
                steps.push(format!("NSPI {gc}: NspiBind: {code}"));
                Err(BindFailure::Network(Some(code)))
            }
            Err(e) => {
                steps.push(format!("NSPI {gc}: NspiBind: unreadable answer ({e})"));
                Err(BindFailure::Network(None))
            }
        }
    }
}

/// NspiResolveNamesW of `name` on `binding`, stepped: None when NSPI succeeded, its
/// return value as a MAPI code otherwise; an error when the call got no answer.
fn lookup(
    binding: &mut Binding,
    name: &str,
    steps: &mut Vec<String>,
) -> Result<Option<ErrorCode>, LinkError> {
    let gc = short(&binding.fqdn).to_string();
    let stub = nspi::resolve_names_w_stub(&binding.handle, &nspi::stat(0x4E4), None, &[name]);
    let answer = binding
        .link
        .call(nspi::opnum::RESOLVE_NAMES_W, &stub)
        .and_then(|answer| {
            nspi::parse_resolve_names(&answer)
                .map(|r| r.rc)
                .map_err(|e| LinkError::Protocol(e.to_string()))
        });
    match answer {
        Ok(0) => {
            steps.push(format!("NSPI {gc}: ResolveNamesW {name}: found"));
            Ok(None)
        }
        Ok(rc) => {
            let code = ErrorCode::new(Family::Mapi, rc);
            steps.push(format!("NSPI {gc}: ResolveNamesW {name}: {code}"));
            Ok(Some(code))
        }
        Err(e) => {
            steps.push(format!("NSPI {gc}: ResolveNamesW: {e}"));
            Err(e)
        }
    }
}

fn short(fqdn: &str) -> &str {
    fqdn.split('.').next().unwrap_or(fqdn)
}

/// A failed exchange, stepped: the RPC status when there was one.
fn network(steps: &mut Vec<String>, what: &str, e: &LinkError) -> BindFailure {
    steps.push(format!("{what}: {e}"));
    BindFailure::Network(rpc_code(e))
}

fn rpc_code(e: &LinkError) -> Option<ErrorCode> {
    match e {
        LinkError::Fault(status) => Some(ErrorCode::new(Family::Win32, *status)),
        // What the Windows runtime reports for a refused or broken connection.
        LinkError::Refused => Some(ErrorCode::new(Family::Win32, 1722)),
        LinkError::Closed => Some(ErrorCode::new(Family::Win32, 1726)),
        _ => None,
    }
}

fn cause(result: &mut CallResult, e: &LinkError) {
    result.causes.extend(rpc_code(e));
}

fn krb_text(e: &krb::ClientError) -> String {
    match e.code() {
        Some(code) => ErrorCode::new(Family::Kerberos, code).to_string(),
        None => e.to_string(),
    }
}
