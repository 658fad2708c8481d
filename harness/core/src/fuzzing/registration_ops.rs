//! `rpc_registration_schedule`: the association-GUID case under arbitrary thread
//! schedules. The input picks the Exchange profile (2010 or 2013), the process identity,
//! CONNECT_NO_NOTIFICATIONS, TCP or Outlook Anywhere, one to three workers, their polls
//! and interval, when new mail arrives, and the schedule's seed; the MAPI service
//! ([`MapiApp`]) runs against the lab's endpoint in process.
//!
//! Invariants:
//! - the run ends (no stall, no step limit);
//! - every call the server ran, it ran under the principal of the thread that made it
//!   (the server's call log equals the application's calls, call by call): no call ever
//!   runs under another security context than the one its thread presented;
//! - the registration rule decides what fails, and the outcome equals the model's: with
//!   the cache, the first call on the association registers its principal, a call under
//!   another fails with ecRpcFailed and revokes the session, whose later calls fail the
//!   same way; without it nothing fails. Every result the application saw is the model's,
//!   the server logged a registration failure exactly when the model had one, the status
//!   is failed exactly then;
//! - notifications arrive only where they are on;
//! - the same input replays to the same outcome.

use std::sync::Arc;
use std::time::Duration;

use arbitrary::Unstructured;

use super::ops::{byte, choice, flag};
use crate::dcerpc::emsmdb::{EmsmdbProfile, EC_REJECTED, EC_RPC_FAILED};
use crate::dcerpc::legacy_dn;
use crate::driver::outcome::Status;
use crate::driver::{self, ClientSession, MapiApp, MapiAppConfig, ProcessIdentity};
use crate::driver::{AppCall, SessionOutcome, CONNECT_NO_NOTIFICATIONS};
use crate::http_auth::HttpScheme;
use crate::ntlm::Credentials;
use crate::scenario::{rpc_endpoints, MailDrop, RpcDirect, RpcOverHttp, Topology};
use crate::world::LabFile;

/// Exchanges a run may take: a few dozen calls, each a handful of steps.
const MAX_STEPS: usize = 20_000;

#[derive(Debug, Clone)]
struct Plan {
    exchange2013: bool,
    cfg: MapiAppConfig,
    proxied: bool,
    mail_at: Duration,
}

fn plan(u: &mut Unstructured<'_>) -> Plan {
    let exchange2013 = flag(u);
    let mut cfg = MapiAppConfig::new("alice", "secret", "");
    cfg.process = match choice(u, 3) {
        1 => ProcessIdentity::LocalSystem,
        2 => ProcessIdentity::ServiceAccount,
        _ => ProcessIdentity::MailboxUser,
    };
    if flag(u) {
        cfg.connect_flags |= CONNECT_NO_NOTIFICATIONS;
    }
    let proxied = flag(u);
    cfg.workers = 1 + choice(u, 3);
    cfg.polls = 1 + choice(u, 4);
    cfg.poll_interval = Duration::from_millis(200 + 100 * u64::from(choice(u, 28)));
    let mail_at = Duration::from_millis(250 * u64::from(choice(u, 40)));
    cfg.seed = u64::from_le_bytes(std::array::from_fn(|_| byte(u)));
    cfg.mail_expected = true;
    Plan {
        exchange2013,
        cfg,
        proxied,
        mail_at,
    }
}

/// One run: the application's outcome and calls, the server's call log and event log.
struct Run {
    outcome: SessionOutcome,
    calls: Vec<AppCall>,
    server_calls: Vec<(&'static str, String)>,
    server_events: Vec<String>,
    notifications: bool,
    finished: bool,
}

fn run(p: &Plan) -> Option<Run> {
    let mut lab = LabFile::default_lab();
    if let Some((account, password)) = p.cfg.process_account() {
        lab.add_user(account, password);
    }
    let world = Arc::new(lab.build().ok()?);
    let profile = if p.exchange2013 {
        EmsmdbProfile::Exchange2013
    } else {
        EmsmdbProfile::Exchange2010
    };
    let endpoints = rpc_endpoints(&world, profile, p.cfg.seed);
    let inner: Box<dyn Topology> = if p.proxied {
        let credentials = Credentials {
            user: p.cfg.user.clone(),
            password: p.cfg.password.clone(),
            domain: p.cfg.domain.clone(),
            workstation: "FUZZ".into(),
        };
        let topology = RpcOverHttp::new(
            &world,
            &endpoints,
            HttpScheme::Ntlm,
            credentials,
            p.cfg.seed,
        );
        Box::new(topology)
    } else {
        Box::new(RpcDirect::new(endpoints.clone()))
    };
    let mut topology = MailDrop::new(
        inner,
        Arc::clone(&world),
        &p.cfg.user,
        &p.cfg.password,
        p.mail_at,
    );
    let mut cfg = p.cfg.clone();
    cfg.mailbox_dn = legacy_dn::user_dn(&world.domain, &cfg.user);
    let notifications = cfg.connect_flags & CONNECT_NO_NOTIFICATIONS == 0;
    let mut app = MapiApp::new(cfg);
    let mut connect = |n: usize| topology.connect(n);
    let report = driver::run_with_reconnect(&mut app, &mut connect, MAX_STEPS);
    Some(Run {
        outcome: app.outcome(),
        calls: app.calls().to_vec(),
        server_calls: endpoints.emsmdb.call_log(),
        server_events: endpoints.emsmdb.event_log(),
        notifications,
        finished: report.end == driver::RunEnd::ClientDone,
    })
}

/// What the registration rule makes of the application's calls: the result each must
/// have had (`None`: any answer an async wait may get), and whether a registration failed.
fn model(calls: &[AppCall], cache: bool) -> (Vec<Option<u32>>, bool) {
    let mut registered: Option<&str> = None;
    let mut revoked = false;
    let mut clashed = false;
    let mut expected = Vec::with_capacity(calls.len());
    for c in calls {
        let clash = cache
            && match registered {
                None => {
                    registered = Some(&c.principal);
                    false
                }
                Some(r) => r != c.principal,
            };
        if clash {
            // Removed with its sessions; the next call registers anew.
            registered = None;
            revoked = true;
            clashed = true;
        }
        let on_session = matches!(
            c.call,
            "EcDoRpcExt2" | "EcDoAsyncConnectEx" | "EcDoDisconnect"
        );
        expected.push(match c.call {
            _ if clash || (revoked && on_session) => Some(EC_RPC_FAILED),
            "EcDoAsyncWaitEx" => None,
            _ => Some(0),
        });
    }
    (expected, clashed)
}

pub fn rpc_registration_schedule(data: &[u8]) {
    let _ = check(data);
}

/// The checks of one input; whether a registration failed in it (`None`: the lab could
/// not be built).
fn check(data: &[u8]) -> Option<bool> {
    let mut u = Unstructured::new(data);
    let p = plan(&mut u);
    let first = run(&p)?;
    assert!(
        first.finished,
        "the run did not end: {p:?}\n{:#?}",
        first.outcome
    );
    // Every call ran under the principal of the thread that made it.
    let made: Vec<(&str, &str)> = first
        .calls
        .iter()
        .map(|c| (c.call, c.principal.as_str()))
        .collect();
    let ran: Vec<(&str, &str)> = first
        .server_calls
        .iter()
        .map(|(c, who)| (*c, who.as_str()))
        .collect();
    assert_eq!(ran, made, "calls ran under other principals: {p:?}");
    // What failed is what the registration rule says.
    let (expected, clashed) = model(&first.calls, p.exchange2013);
    for (c, want) in first.calls.iter().zip(&expected) {
        match want {
            Some(ec) => assert_eq!(c.result, Some(*ec), "{c:?} in {p:?}"),
            None => assert!(
                matches!(c.result, None | Some(0) | Some(EC_REJECTED)),
                "{c:?} in {p:?}"
            ),
        }
    }
    assert_eq!(!first.server_events.is_empty(), clashed, "{p:?}");
    let failed = first.outcome.status == Status::Failed;
    assert_eq!(failed, clashed, "{p:?}\n{:#?}", first.outcome);
    let notified = first
        .outcome
        .steps
        .iter()
        .any(|s| s.0.contains("RopNotify"));
    assert!(first.notifications || !notified, "{p:?}");
    // The schedule replays exactly.
    let Some(again) = run(&p) else {
        panic!("the second run could not start: {p:?}");
    };
    assert_eq!(again.calls, first.calls, "{p:?}");
    assert_eq!(again.outcome, first.outcome, "{p:?}");
    Some(clashed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The four corners of the case, each on both routes, under several schedules.
    #[test]
    fn every_corner_of_the_case_holds_its_invariants() {
        let mut clashes = 0;
        for bits in 0u8..16 {
            for seed in 0u8..3 {
                // exchange2013, local system, notifications off, proxied; then
                // workers, polls, interval, mail time, the seed.
                let flags = [bits & 1, bits >> 1 & 1, bits >> 2 & 1, bits >> 3 & 1];
                let mut data = flags.to_vec();
                data.extend([1, 3, 18, 4, seed, seed ^ 0x5a, 0, 0, 0, 0, 0, 0]);
                let clashed = check(&data).expect("the lab builds");
                // Exchange 2013, Local System, notifications on: the case.
                assert_eq!(clashed, bits & 0b111 == 0b011, "bits {bits:#06b}");
                clashes += usize::from(clashed);
            }
        }
        assert_eq!(clashes, 6);
    }

    #[test]
    fn a_named_service_account_clashes_like_local_system() {
        // exchange2013 / exchange2010, service account, notifications on, both routes.
        for (exchange2013, proxied) in [(1, 0), (1, 1), (0, 0), (0, 1)] {
            let data = [
                exchange2013,
                2,
                0,
                proxied,
                1,
                3,
                18,
                4,
                7,
                0x11,
                0,
                0,
                0,
                0,
                0,
                0,
            ];
            assert_eq!(check(&data), Some(exchange2013 == 1), "{data:?}");
        }
    }

    #[test]
    fn the_model_fails_the_clash_and_the_revoked_session_after_it() {
        let call = |call, who: &str| AppCall {
            call_id: 0,
            call,
            principal: who.into(),
            thread: String::new(),
            result: None,
        };
        let calls = [
            call("EcDoConnectEx", "example\\alice"),
            call("EcDoRpcExt2", "example\\alice"),
            call("EcDoAsyncConnectEx", "example\\appsrv$"),
            call("EcDoRpcExt2", "example\\alice"),
        ];
        let (expected, clashed) = model(&calls, true);
        assert!(clashed);
        assert_eq!(
            expected,
            [Some(0), Some(0), Some(EC_RPC_FAILED), Some(EC_RPC_FAILED)]
        );
        let (expected, clashed) = model(&calls, false);
        assert!(!clashed);
        assert_eq!(expected, [Some(0); 4]);
    }
}
