//! One case of KB 929439 on a timeline: a program makes an address-book call every
//! virtual second through its [`Provider`] while the timeline's events move the directory
//! (global catalogs shutting down, down, up; the KDC's entries; resets; a restart of the
//! program). The result is one symbol per call, the provider's state after each, and a
//! session outcome like any other client's for the scenario's expectations.

use std::sync::Arc;

use super::provider::{Account, CallResult, Identities, Provider, ProviderConfig, ProviderState};
use super::reach::{DirectorySite, InProcessSite};
use super::timeline::{Action, KdcChange, Timeline, Topology};
use crate::codes::known;
use crate::dcerpc::legacy_dn;
use crate::driver::outcome::{SessionOutcome, SessionProtocol, Status};
use crate::driver::Journal;
use crate::world::World;

/// The service account a service program runs as (a domain account of the lab).
pub const SERVICE_ACCOUNT: (&str, &str) = ("svc-mapi", "service-secret");
/// The realm an account of another domain belongs to; the lab's KDC has no trust with it.
pub const OTHER_REALM: &str = "OTHER.TEST";

/// One configuration of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailoverCase {
    pub provider: ProviderConfig,
    /// The process's account is of another domain than the directory's.
    pub process_in_other_domain: bool,
}

/// What one call came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// The virtual second.
    pub at: u32,
    pub result: CallResult,
    /// The program was restarted just before this call.
    pub after_restart: bool,
}

impl CallRecord {
    /// The call's symbol in a timeline (see [`LEGEND`]).
    pub fn symbol(&self) -> char {
        match self.result.code {
            _ if self.result.prompted => 'P',
            None => '.',
            Some(c) if c == known::MAPI_E_NETWORK_ERROR => 'N',
            Some(c) if c == known::MAPI_E_END_OF_SESSION => 'E',
            Some(_) => 'x',
        }
    }
}

/// What the symbols of a timeline mean.
pub const LEGEND: &str = ". call succeeded   N MAPI_E_NETWORK_ERROR   E MAPI_E_END_OF_SESSION   P the user was prompted for credentials   x another error   | the program restarted";

/// The calls' symbols, `|` before a call that follows a restart.
pub fn symbols(calls: &[CallRecord]) -> String {
    let mut out = String::new();
    for c in calls {
        if c.after_restart {
            out.push('|');
        }
        out.push(c.symbol());
    }
    out
}

/// The case's result.
#[derive(Debug, Clone)]
pub struct FailoverRun {
    pub outcome: SessionOutcome,
    pub calls: Vec<CallRecord>,
    /// The directory at each event, the provider's state at each change.
    pub trace: Vec<String>,
    /// Scenario finding kinds (`credential-prompt`).
    pub findings: Vec<String>,
}

impl FailoverRun {
    pub fn timeline(&self) -> String {
        symbols(&self.calls)
    }

    /// The provider's state after the last call.
    pub fn end_state(&self) -> Option<ProviderState> {
        self.calls.last().map(|c| c.result.state)
    }
}

/// Who the program and its user are in `world`.
pub fn identities(world: &World, case: &FailoverCase, user: &str, password: &str) -> Identities {
    let realm = crate::kerberos::realm::realm_of(world);
    let (process_user, process_password) = if case.provider.can_prompt {
        (user.to_string(), password.to_string())
    } else {
        (SERVICE_ACCOUNT.0.to_string(), SERVICE_ACCOUNT.1.to_string())
    };
    let process_realm = if case.process_in_other_domain {
        OTHER_REALM.to_string()
    } else {
        realm.clone()
    };
    Identities {
        process: Account {
            user: process_user,
            domain: process_realm
                .split('.')
                .next()
                .unwrap_or("OTHER")
                .to_string(),
            realm: process_realm,
            password: process_password,
        },
        user: Account {
            user: user.to_string(),
            realm,
            domain: world.domain.clone(),
            password: password.to_string(),
        },
        user_dn: legacy_dn::user_dn(&world.domain, user),
        lookup: user.to_string(),
        exchange_host: world.hostname.clone(),
    }
}

/// Runs `case` in process against a directory of `world` that follows `timeline`.
pub fn run(
    world: &Arc<World>,
    timeline: &Timeline,
    case: &FailoverCase,
    user: &str,
    password: &str,
    now: i64,
    seed: u64,
) -> FailoverRun {
    let topology = Topology::start(timeline, &world.dns_domain);
    let mut site = InProcessSite::new(world, &topology, now, seed);
    let who = identities(world, case, user, password);
    run_on(&mut site, topology, timeline, case, who, seed)
}

/// Runs `case` against `site` (in process or the lab's listeners), which starts as
/// `topology`.
pub fn run_on(
    site: &mut dyn DirectorySite,
    mut topology: Topology,
    timeline: &Timeline,
    case: &FailoverCase,
    who: Identities,
    seed: u64,
) -> FailoverRun {
    let mut journal = Journal::default();
    let mut trace = vec![format!("directory at 0 s: {}", topology.describe())];
    let mut provider = Provider::new(case.provider, who.clone(), seed);
    let mut calls = Vec::new();
    let mut logon_again = false;
    let mut last_state = provider.state();
    for at in 1..=timeline.calls {
        let mut restarted = false;
        let mut reset = None;
        let mut moved = false;
        for action in timeline.events_at(at) {
            match action {
                Action::Gc { gc, state } => {
                    topology.set_state(&gc, state);
                    moved = true;
                }
                Action::Kdc { gc, change } => {
                    topology.set_kdc(&gc, change == KdcChange::Add);
                    moved = true;
                }
                Action::Reset { gc } => {
                    trace.push(format!("{at} s: the connection to {gc} is reset"));
                    reset = Some(gc);
                }
                Action::Delay { gc, rtt_ms } => {
                    topology.set_delay(&gc, rtt_ms);
                    moved = true;
                }
                Action::Restart => restarted = true,
            }
        }
        if moved || reset.is_some() {
            site.apply(&topology, reset.as_deref());
        }
        if moved {
            trace.push(format!("directory at {at} s: {}", topology.describe()));
        }
        let mut steps = Vec::new();
        if restarted {
            provider = Provider::new(case.provider, who.clone(), seed ^ u64::from(at));
            logon_again = false;
            steps.push("program: restarted".to_string());
            trace.push(format!("{at} s: the program restarts"));
        } else if logon_again {
            provider.logon_again(&mut steps);
            logon_again = false;
        }
        let result = provider.call(site, &mut steps);
        journal.step(format!("{at} s:"));
        steps.iter().for_each(|s| journal.step(format!("  {s}")));
        let record = CallRecord {
            at,
            result,
            after_restart: restarted,
        };
        journal.step(format!(
            "  -> {} ({})",
            record
                .result
                .code
                .map_or_else(|| "S_OK".to_string(), |c| c.to_string()),
            record.result.state.name()
        ));
        for c in record.result.causes.iter().chain(&record.result.code) {
            journal.code(*c);
        }
        if record.result.prompted {
            journal.prompts += 1;
        }
        if record.result.code == Some(known::MAPI_E_END_OF_SESSION) {
            logon_again = true;
        }
        if record.result.state != last_state {
            trace.push(format!(
                "{at} s: provider {} -> {}",
                last_state.name(),
                record.result.state.name()
            ));
            last_state = record.result.state;
        }
        calls.push(record);
    }
    let status = match calls.last().map(|c| c.result.code) {
        Some(None) => Status::Authenticated,
        _ => Status::Failed,
    };
    let mut findings = Vec::new();
    if journal.prompts > 0 {
        findings.push("credential-prompt".to_string());
    }
    FailoverRun {
        outcome: journal.outcome(
            &who.user.user,
            SessionProtocol::AddressBook,
            policy(case),
            status,
        ),
        calls,
        trace,
        findings,
    }
}

/// The policy name outcomes print.
pub fn policy(case: &FailoverCase) -> String {
    let p = &case.provider;
    format!(
        "{} {}, EMSAB_UserAuth_Credentials {}, ALLOW_RECONNECT {}, process in {} domain",
        p.profile.name(),
        if p.can_prompt {
            "interactive"
        } else {
            "service"
        },
        u8::from(p.user_auth_credentials),
        if p.allow_reconnect { "on" } else { "off" },
        if case.process_in_other_domain {
            "another"
        } else {
            "the directory's"
        }
    )
}
