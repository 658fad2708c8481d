//! `gc_timeline`: KB 929439's global-catalog failover under arbitrary outage schedules.
//! The input picks the provider (Exchange 2003 SP1 or the hotfix, EMSAB_UserAuth_Credentials,
//! ALLOW_RECONNECT, a service or an interactive program, the process's account in the
//! directory's domain or another), one to three global catalogs (how each starts, whether
//! the KDC knows its `exchangeAB` principal), up to [`MAX_CALLS`] calls and up to
//! [`MAX_EVENTS`] events of every kind (a catalog up, shutting down or down; a KDC entry
//! added or removed; a connection reset; the program restarted). [`QUIET`] calls without
//! events follow the last one, and [`failover::run`] plays the whole timeline in process
//! (real RFR, KDC and NSPI exchanges).
//!
//! Invariants (KB 929439 unless marked "model", which is this harness's reading where the
//! KB says nothing; see `corpus/scenarios/gc-failover.toml`):
//! - the symbols are the legend's, one per call, `|` exactly before the calls that follow a
//!   restart;
//! - the hotfix with EMSAB_UserAuth_Credentials = 1 never enters user credentials, in any
//!   call, and never prompts;
//! - a program that cannot prompt (a service) is never prompted;
//! - without ALLOW_RECONNECT no call ends the session (KB 823719; model);
//! - user credentials belong to the process: once entered, only a restart leaves them
//!   (through an ended session the program logs on again in them); a service in them fails
//!   every call with MAPI_E_NETWORK_ERROR until the restart;
//! - model: a prompt is user credentials' (a prompted call passes through them), comes at
//!   most once per process, and a session ends only after it worked;
//! - across domains a service, or any program with the hotfix's value, never gets in
//!   (every call MAPI_E_NETWORK_ERROR); an interactive one without it is prompted at the
//!   first call of every process;
//! - after the quiet calls, the documented end state (see [`end_rules`]).

use std::sync::{Arc, OnceLock};

use arbitrary::Unstructured;

use super::ops::{byte, choice, flag};
use crate::codes::known;
use crate::gc::failover::{self, CallRecord, FailoverCase, FailoverRun, SERVICE_ACCOUNT};
use crate::gc::provider::{AbpProfile, ProviderConfig, ProviderState};
use crate::gc::timeline::{Action, Event, GcState, KdcChange, Timeline, Topology};
use crate::gc::LEGEND;
use crate::world::{LabFile, World};

/// Global catalogs an input names at most.
pub const MAX_GCS: u8 = 3;
/// Calls an input makes at most before the quiet ones.
pub const MAX_CALLS: u8 = 20;
/// Events an input has at most.
pub const MAX_EVENTS: u8 = 12;
/// Calls without events after the input's: enough for any provider to settle (an ended
/// session, then a logon again that may prompt, then a call on the new session).
pub const QUIET: u32 = 3;

/// The clock of the in-process KDC and endpoints.
const NOW: i64 = 1_700_000_000;
const USER: (&str, &str) = ("alice", "secret");

const STATES: [GcState; 3] = [GcState::Up, GcState::ShuttingDown, GcState::Down];

/// What an input decodes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub case: FailoverCase,
    pub seed: u8,
    /// Its `calls` include the [`QUIET`] ones; no event falls on them.
    pub timeline: Timeline,
}

fn gc_name(i: u8) -> String {
    format!("gc{}", i + 1)
}

/// Reads a plan: the case (five flags), the run's seed, the global catalogs (each a start
/// state and a KDC flag), the calls, the events (each a second, a kind and its arguments).
/// One octet per choice (zero once the input ends), so [`encode`] writes a plan back.
pub fn decode(data: &[u8]) -> Plan {
    let mut u = Unstructured::new(data);
    let case = FailoverCase {
        provider: ProviderConfig {
            profile: if flag(&mut u) {
                AbpProfile::Hotfix
            } else {
                AbpProfile::Exchange2003Sp1
            },
            user_auth_credentials: flag(&mut u),
            allow_reconnect: flag(&mut u),
            can_prompt: flag(&mut u),
        },
        process_in_other_domain: flag(&mut u),
    };
    let seed = byte(&mut u);
    let n = 1 + choice(&mut u, MAX_GCS);
    let gcs: Vec<String> = (0..n).map(gc_name).collect();
    let mut start = std::collections::BTreeMap::new();
    let mut kdc_unknown = Vec::new();
    for gc in &gcs {
        let state = STATES[usize::from(choice(&mut u, 3))];
        if state != GcState::Up {
            start.insert(gc.clone(), state);
        }
        if flag(&mut u) {
            kdc_unknown.push(gc.clone());
        }
    }
    let calls = 1 + choice(&mut u, MAX_CALLS);
    let events = (0..choice(&mut u, MAX_EVENTS + 1))
        .map(|_| {
            let at = 1 + u32::from(choice(&mut u, calls));
            let mut e = Event {
                at,
                gc: None,
                state: None,
                kdc: None,
                reset: false,
                delay_ms: None,
                restart: false,
            };
            match choice(&mut u, 5) {
                3 => e.restart = true,
                kind => {
                    e.gc = Some(gc_name(choice(&mut u, n)));
                    match kind {
                        0 => e.state = Some(STATES[usize::from(choice(&mut u, 3))]),
                        1 => {
                            e.kdc = Some(if flag(&mut u) {
                                KdcChange::Add
                            } else {
                                KdcChange::Remove
                            })
                        }
                        2 => e.reset = true,
                        // A round trip on the hop, in steps of 10 ms.
                        _ => e.delay_ms = Some(u32::from(choice(&mut u, 255)) * 10),
                    }
                }
            }
            e
        })
        .collect();
    Plan {
        case,
        seed,
        timeline: Timeline {
            gcs,
            start,
            kdc_unknown,
            calls: u32::from(calls) + QUIET,
            events,
        },
    }
}

/// The octets [`decode`] reads as `case`, `seed` and `timeline` (global catalogs named
/// `gc1`, `gc2`, `gc3` in order; `timeline.calls` without the quiet ones). None when the
/// timeline does not fit the bounds.
pub fn encode(case: &FailoverCase, seed: u8, timeline: &Timeline) -> Option<Vec<u8>> {
    let p = &case.provider;
    let mut out = vec![
        u8::from(p.profile == AbpProfile::Hotfix),
        u8::from(p.user_auth_credentials),
        u8::from(p.allow_reconnect),
        u8::from(p.can_prompt),
        u8::from(case.process_in_other_domain),
        seed,
    ];
    let n = u8::try_from(timeline.gcs.len()).ok()?;
    if n == 0 || n > MAX_GCS || (0..n).any(|i| timeline.gcs[usize::from(i)] != gc_name(i)) {
        return None;
    }
    out.push(n - 1);
    let state_octet = |s: GcState| STATES.iter().position(|x| *x == s).map(|i| i as u8);
    for gc in &timeline.gcs {
        out.push(state_octet(
            *timeline.start.get(gc).unwrap_or(&GcState::Up),
        )?);
        out.push(u8::from(timeline.kdc_unknown.contains(gc)));
    }
    let calls = u8::try_from(timeline.calls).ok()?;
    if calls == 0 || calls > MAX_CALLS || timeline.events.len() > usize::from(MAX_EVENTS) {
        return None;
    }
    out.push(calls - 1);
    out.push(timeline.events.len() as u8);
    let gc_octet = |gc: &str| timeline.gcs.iter().position(|g| g == gc).map(|i| i as u8);
    for e in &timeline.events {
        out.push(u8::try_from(e.at.checked_sub(1)?).ok()?);
        match e.action().ok()? {
            Action::Gc { gc, state } => out.extend([0, gc_octet(&gc)?, state_octet(state)?]),
            Action::Kdc { gc, change } => {
                out.extend([1, gc_octet(&gc)?, u8::from(change == KdcChange::Add)])
            }
            Action::Reset { gc } => out.extend([2, gc_octet(&gc)?]),
            Action::Restart => out.push(3),
            Action::Delay { gc, rtt_ms } => {
                if rtt_ms % 10 != 0 || rtt_ms / 10 > 254 {
                    return None;
                }
                out.extend([4, gc_octet(&gc)?, u8::try_from(rtt_ms / 10).ok()?])
            }
        }
    }
    Some(out)
}

/// The default lab with the service account a service program runs as, built once.
fn world() -> Option<Arc<World>> {
    static WORLD: OnceLock<Option<Arc<World>>> = OnceLock::new();
    WORLD
        .get_or_init(|| {
            let mut lab = LabFile::default_lab();
            lab.add_user(SERVICE_ACCOUNT.0, SERVICE_ACCOUNT.1);
            lab.build().ok().map(Arc::new)
        })
        .clone()
}

/// Plays a plan.
pub fn play(plan: &Plan) -> Option<FailoverRun> {
    let world = world()?;
    Some(failover::run(
        &world,
        &plan.timeline,
        &plan.case,
        USER.0,
        USER.1,
        NOW,
        u64::from(plan.seed),
    ))
}

/// Fuzz target `gc_timeline`.
pub fn gc_timeline(data: &[u8]) {
    let plan = decode(data);
    if let Err(e) = plan.timeline.validate() {
        panic!("decoded an invalid timeline: {e}\n{plan:?}");
    }
    let Some(run) = play(&plan) else {
        return;
    };
    check(&plan, &run);
}

/// The symbols the legend explains: the first character of each of its entries.
fn legend_symbols() -> Vec<char> {
    LEGEND
        .split("   ")
        .filter_map(|entry| entry.trim().chars().next())
        .collect()
}

/// One line that says what was played, for panic messages.
fn describe(plan: &Plan, run: &FailoverRun) -> String {
    format!(
        "{} | seed {} | timeline {:?} | symbols {} | trace {:?}",
        failover::policy(&plan.case),
        plan.seed,
        plan.timeline,
        run.timeline(),
        run.trace
    )
}

/// The directory after the last event.
fn end_topology(timeline: &Timeline) -> Topology {
    let mut topology = Topology::start(timeline, "example.test");
    for at in 1..=timeline.calls {
        for action in timeline.events_at(at) {
            match action {
                Action::Gc { gc, state } => topology.set_state(&gc, state),
                Action::Kdc { gc, change } => topology.set_kdc(&gc, change == KdcChange::Add),
                Action::Reset { .. } | Action::Restart | Action::Delay { .. } => {}
            }
        }
    }
    topology
}

/// What a run reached, for the smoke run's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reached {
    pub prompted: bool,
    pub ended: bool,
    /// A service stuck in user credentials.
    pub stuck: bool,
    /// An end rule required the last call to succeed.
    pub settled: bool,
    pub restarted: bool,
}

fn is(call: &CallRecord, code: crate::codes::ErrorCode) -> bool {
    call.result.code == Some(code)
}

/// Every invariant of one run; panics with the plan and the run when one breaks.
pub fn check(plan: &Plan, run: &FailoverRun) -> Reached {
    let ctx = || describe(plan, run);
    let cfg = plan.case.provider;
    let t = &plan.timeline;
    let restart_at = |at: u32| t.events_at(at).any(|a| a == Action::Restart);

    // The symbols: the legend's, one per call, `|` exactly where the program restarted.
    assert_eq!(
        run.calls.len(),
        t.calls as usize,
        "one record per call: {}",
        ctx()
    );
    let legend = legend_symbols();
    let mut want_bars = Vec::new();
    let mut calls_seen = 0usize;
    for c in run.timeline().chars() {
        assert!(
            legend.contains(&c),
            "symbol {c:?} is not in the legend: {}",
            ctx()
        );
        if c == '|' {
            want_bars.push(calls_seen as u32 + 1);
        } else {
            calls_seen += 1;
        }
    }
    assert_eq!(
        calls_seen,
        run.calls.len(),
        "one symbol per call: {}",
        ctx()
    );
    let restarts: Vec<u32> = (1..=t.calls).filter(|&at| restart_at(at)).collect();
    assert_eq!(
        want_bars,
        restarts,
        "`|` where the program restarted: {}",
        ctx()
    );

    let mut reached = Reached::default();
    // Since the last restart: user credentials entered, prompts, a call that worked (since
    // the last end of session too).
    let mut user_since_restart = false;
    let mut prompts = 0;
    let mut worked = false;
    for (i, call) in run.calls.iter().enumerate() {
        let r = &call.result;
        let at = i as u32 + 1;
        assert_eq!(call.at, at, "calls one a second: {}", ctx());
        assert_eq!(
            call.after_restart,
            restart_at(at),
            "restart at {at}: {}",
            ctx()
        );
        if call.after_restart {
            user_since_restart = false;
            prompts = 0;
            worked = false;
            reached.restarted = true;
        }
        assert_eq!(
            r.entered.last(),
            Some(&r.state),
            "at {at} the call's states end in its state: {}",
            ctx()
        );
        let entered_user = r.entered.contains(&ProviderState::UserCredentials);
        user_since_restart |= entered_user;
        prompts += usize::from(r.prompted);
        reached.prompted |= r.prompted;

        // KB 929439: with the hotfix and EMSAB_UserAuth_Credentials = 1 the provider never
        // enters the user-credentials state, so it never prompts.
        if cfg.keeps_process_credentials() {
            assert!(
                !entered_user,
                "at {at} the hotfix with EMSAB_UserAuth_Credentials = 1 entered user credentials ({:?}): {}",
                r.entered,
                ctx()
            );
            assert!(
                !r.prompted,
                "at {at} the hotfix with the value prompted: {}",
                ctx()
            );
        }
        // KB 929439: a service cannot show UI.
        assert!(
            cfg.can_prompt || !r.prompted,
            "at {at} a program that cannot prompt was prompted: {}",
            ctx()
        );
        // KB 823719 (model): without ALLOW_RECONNECT the provider never fails over, so it
        // never ends the session.
        if !cfg.allow_reconnect {
            assert!(
                !is(call, known::MAPI_E_END_OF_SESSION),
                "at {at} MAPI_E_END_OF_SESSION without ALLOW_RECONNECT: {}",
                ctx()
            );
            assert!(
                !r.entered.contains(&ProviderState::Ended),
                "at {at} the session ended without ALLOW_RECONNECT: {}",
                ctx()
            );
        }
        // The program logs on again after MAPI_E_END_OF_SESSION: no call begins ended,
        // and a call ends the session exactly when it says so.
        assert_ne!(r.entered[0], ProviderState::Ended, "at {at}: {}", ctx());
        assert_eq!(
            r.state == ProviderState::Ended,
            is(call, known::MAPI_E_END_OF_SESSION),
            "at {at} ended state and MAPI_E_END_OF_SESSION disagree: {}",
            ctx()
        );
        // KB 929439: the user-credentials state belongs to the process; only a restart
        // leaves it (a logon again after an ended session comes back to it).
        if r.state != ProviderState::Ended {
            assert_eq!(
                r.state == ProviderState::UserCredentials,
                user_since_restart,
                "at {at} user credentials are kept exactly for the process's life: {}",
                ctx()
            );
        }
        // KB 929439: a service in user credentials fails every call with
        // MAPI_E_NETWORK_ERROR until the program restarts.
        if !cfg.can_prompt && user_since_restart {
            assert!(
                is(call, known::MAPI_E_NETWORK_ERROR),
                "at {at} a service in user credentials did not fail with MAPI_E_NETWORK_ERROR: {}",
                ctx()
            );
            reached.stuck = true;
        }
        // Model: a prompt is the user-credentials state's, and what the user types is kept
        // for the process's life (one prompt per process).
        assert!(
            !r.prompted || entered_user,
            "at {at} prompted outside user credentials: {}",
            ctx()
        );
        assert!(
            prompts <= 1,
            "at {at} prompted twice in one process: {}",
            ctx()
        );
        // Model: a session ends (a failover) only after it worked: since the restart or the
        // last end, some call got an answer from NSPI (not N, not E).
        if is(call, known::MAPI_E_END_OF_SESSION) {
            assert!(
                worked,
                "at {at} a session ended before it worked: {}",
                ctx()
            );
            worked = false;
            reached.ended = true;
        } else if !is(call, known::MAPI_E_NETWORK_ERROR) {
            worked = true;
        }
        // KB 929439 across domains: a service, or any program with the hotfix's value,
        // never gets in (the KDC cannot vouch for the process: model, a realm without a
        // trust); a program that can show UI without it is prompted at the first call of
        // every process.
        if plan.case.process_in_other_domain {
            if !cfg.can_prompt || cfg.keeps_process_credentials() {
                assert!(
                    is(call, known::MAPI_E_NETWORK_ERROR),
                    "at {at} a process of another domain that cannot use the user's credentials got past MAPI_E_NETWORK_ERROR: {}",
                    ctx()
                );
            } else if at == 1 || call.after_restart {
                assert!(
                    r.prompted,
                    "at {at} an interactive program of another domain was not prompted at its first call: {}",
                    ctx()
                );
            }
        }
    }
    if cfg.allow_reconnect {
        fails_over_through_an_end(plan, run);
    } else {
        keeps_its_catalog(plan, run);
    }
    // The session's outcome agrees with the calls.
    assert_eq!(
        run.findings.iter().any(|f| f == "credential-prompt"),
        run.calls.iter().any(|c| c.result.prompted),
        "the credential-prompt finding: {}",
        ctx()
    );
    reached.settled = end_rules(plan, run, user_since_restart);
    reached
}

/// Each call's steps (trimmed), from the run's journal, where `N s:` heads call N's.
fn call_steps(run: &FailoverRun) -> Vec<Vec<&str>> {
    let mut out = vec![Vec::new(); run.calls.len()];
    let mut at: Option<usize> = None;
    for line in run.outcome.steps.iter().map(|s| s.0.as_str()) {
        if let Some(n) = line
            .strip_suffix(" s:")
            .and_then(|n| n.parse::<usize>().ok())
        {
            at = n.checked_sub(1);
        } else if let Some(steps) = at.and_then(|i| out.get_mut(i)) {
            steps.push(line.trim_start());
        }
    }
    out
}

/// KB 823719 (model): without ALLOW_RECONNECT the provider never looks for another global
/// catalog: once a session is bound, the process asks the referral service for no other
/// and binds no other until it restarts.
fn keeps_its_catalog(plan: &Plan, run: &FailoverRun) {
    let mut bound: Option<&str> = None;
    for (i, (call, steps)) in run.calls.iter().zip(call_steps(run)).enumerate() {
        let at = i + 1;
        if call.after_restart {
            bound = None;
        }
        for step in steps {
            if step.starts_with("RFR: RfrGetNewDSA") {
                assert!(
                    bound.is_none(),
                    "at {at} s a referral without ALLOW_RECONNECT while bound to {bound:?}: {}",
                    describe(plan, run)
                );
            }
            if let Some((gc, _)) = step
                .strip_prefix("NSPI ")
                .and_then(|rest| rest.split_once(": bound"))
            {
                assert!(
                    bound.is_none_or(|b| b == gc),
                    "at {at} s bound {gc} without ALLOW_RECONNECT after {bound:?}: {}",
                    describe(plan, run)
                );
                bound = Some(gc);
            }
        }
    }
}

/// KB 929439: with ALLOW_RECONNECT, when the global catalog of a working session fails,
/// the provider binds a new one and answers MAPI_E_END_OF_SESSION so that the program
/// logs on again: from the call whose session broke, no call of that process succeeds
/// before one has ended the session.
fn fails_over_through_an_end(plan: &Plan, run: &FailoverRun) {
    let mut broke_at: Option<usize> = None;
    for (i, (call, steps)) in run.calls.iter().zip(call_steps(run)).enumerate() {
        let at = i + 1;
        if call.after_restart {
            broke_at = None;
        }
        // A call on a bound session begins with its NSPI call; an error there is the
        // session breaking.
        let first_nspi = steps.iter().find(|s| s.starts_with("NSPI "));
        if first_nspi.is_some_and(|s| s.contains(": ResolveNamesW: ")) && broke_at.is_none() {
            broke_at = Some(at);
        }
        if is(call, known::MAPI_E_END_OF_SESSION) {
            broke_at = None;
        }
        if let Some(b) = broke_at {
            assert!(
                call.result.code.is_some(),
                "at {at} s a call succeeded on a new session without MAPI_E_END_OF_SESSION since the session broke at {b} s: {}",
                describe(plan, run)
            );
        }
    }
}

/// The documented end state after the quiet calls; true when a rule required the last
/// call to succeed.
///
/// The referral service names the first global catalog that is up (the preferred one);
/// a provider binds the one it is named, not another, so with process credentials what
/// matters is whether the KDC knows that one.
/// - KB 929439: with ALLOW_RECONNECT, in the directory's domain, with the named catalog
///   known to the KDC, every provider ends with a call that succeeds (`.`): the hotfix with
///   the value on process credentials after at most an ended session, Exchange 2003 SP1
///   too if it never left them; except a service that entered user credentials since its
///   restart, which ends with `N` (stuck until restart).
/// - KB 929439: a program that can show UI, without the hotfix's value, with
///   ALLOW_RECONNECT, ends with `.` as soon as some catalog is up, known to the KDC or not,
///   in either domain: it is prompted and binds with what the user typed (NTLM).
/// - KB 823719 (model): without ALLOW_RECONNECT the provider keeps its catalog; when every
///   catalog is up and known to the KDC, it ends with `.` all the same, unless it is a
///   stuck service or a process of another domain that cannot use the user's credentials.
/// - The provider ends in user credentials exactly when it entered them since the restart,
///   in process credentials otherwise (checked for every call in [`check`]).
fn end_rules(plan: &Plan, run: &FailoverRun, user_since_restart: bool) -> bool {
    let cfg = plan.case.provider;
    let other = plan.case.process_in_other_domain;
    let Some(last) = run.calls.last() else {
        return false;
    };
    let topology = end_topology(&plan.timeline);
    let named = topology
        .referral()
        .first()
        .map(|fqdn| topology.short(fqdn).to_string());
    let named_known = named.as_deref().is_some_and(|gc| topology.kdc_knows(gc));
    let some_up = named.is_some();
    let all_up_known = topology
        .names()
        .all(|gc| topology.state(gc) == Some(GcState::Up) && topology.kdc_knows(gc));
    let stuck_service = !cfg.can_prompt && user_since_restart;
    let locked_out = other && (!cfg.can_prompt || cfg.keeps_process_credentials());
    let prompting = cfg.can_prompt && !cfg.keeps_process_credentials();

    let want = if cfg.allow_reconnect && !other && named_known {
        Some((
            if stuck_service { 'N' } else { '.' },
            "with ALLOW_RECONNECT, in the directory's domain, the named global catalog known to the KDC (KB 929439)",
        ))
    } else if cfg.allow_reconnect && prompting && some_up {
        Some((
            '.',
            "a program that can prompt, with ALLOW_RECONNECT and a global catalog up (KB 929439)",
        ))
    } else if !cfg.allow_reconnect && all_up_known && !locked_out {
        Some((
            if stuck_service { 'N' } else { '.' },
            "without ALLOW_RECONNECT, every global catalog up and known (KB 823719, model)",
        ))
    } else {
        None
    };
    let Some((symbol, rule)) = want else {
        return false;
    };
    assert_eq!(
        last.symbol(),
        symbol,
        "the last call after the quiet seconds, {rule}: {}",
        describe(plan, run)
    );
    let state = if user_since_restart {
        ProviderState::UserCredentials
    } else {
        ProviderState::ProcessCredentials
    };
    assert_eq!(
        last.result.state,
        state,
        "the end state, {rule}: {}",
        describe(plan, run)
    );
    symbol == '.'
}

/// The seeds (in corpus/fuzz/gc_timeline): KB 929439's timeline in several
/// configurations, a reset hop, and a preferred catalog the KDC does not know; with the
/// symbols each must come to.
#[cfg(test)]
pub(crate) fn seed_cases() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    use AbpProfile::{Exchange2003Sp1 as Sp1, Hotfix};
    let kb: Timeline = toml::from_str(crate::gc::tests::KB_TIMELINE).expect("the KB timeline");
    let reset: Timeline = toml::from_str(
        "gcs = [\"gc1\"]\ncalls = 5\n[[event]]\nat = 3\ngc = \"gc1\"\nreset = true\n",
    )
    .expect("timeline");
    let preferred_unknown: Timeline =
        toml::from_str("gcs = [\"gc1\", \"gc2\"]\nkdc-unknown = [\"gc1\"]\ncalls = 3\n")
            .expect("timeline");
    use crate::gc::tests::case;
    let rows = [
        (
            "kb-sp1-service",
            case(Sp1, false, true, false, false),
            &kb,
            "...NNNNNNNNN|......",
        ),
        (
            "kb-hotfix-1-service",
            case(Hotfix, true, true, false, false),
            &kb,
            "...NNNNNE...|......",
        ),
        (
            "kb-sp1-interactive",
            case(Sp1, false, true, true, false),
            &kb,
            "...P........|......",
        ),
        (
            "kb-sp1-service-no-reconnect",
            case(Sp1, false, false, false, false),
            &kb,
            "...NNNNNNNNN|......",
        ),
        (
            "kb-sp1-interactive-other-domain",
            case(Sp1, false, true, true, true),
            &kb,
            "P..E........|P.....",
        ),
        (
            "kb-hotfix-1-interactive-other-domain",
            case(Hotfix, true, true, true, true),
            &kb,
            "NNNNNNNNNNNN|NNNNNN",
        ),
        (
            "reset-hotfix-1-service",
            case(Hotfix, true, true, false, false),
            &reset,
            "..E.....",
        ),
        (
            "preferred-unknown-hotfix-1-service",
            case(Hotfix, true, true, false, false),
            &preferred_unknown,
            "NNNNNN",
        ),
    ];
    rows.into_iter()
        .map(|(name, case, timeline, symbols)| {
            let data = encode(&case, 7, timeline).expect("the seed fits the bounds");
            (name, data, symbols)
        })
        .collect()
}

#[cfg(test)]
pub(crate) fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    seed_cases()
        .into_iter()
        .map(|(name, data, _)| (name, data))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_seed_comes_to_its_symbols_and_holds_the_invariants() {
        for (name, data, symbols) in seed_cases() {
            let plan = decode(&data);
            let run = play(&plan).expect("the lab builds");
            assert_eq!(run.timeline(), symbols, "{name}");
            check(&plan, &run);
            gc_timeline(&data);
        }
    }

    #[test]
    fn decode_reads_back_what_encode_writes_with_the_quiet_calls() {
        let mut kb: Timeline = toml::from_str(crate::gc::tests::KB_TIMELINE).expect("timeline");
        // A delay on the hop too (in steps of 10 ms).
        kb.events
            .push(toml::from_str("at = 2\ngc = \"gc2\"\ndelay-ms = 150").expect("event"));
        let case = crate::gc::tests::case(AbpProfile::Hotfix, true, false, true, true);
        let data = encode(&case, 9, &kb).expect("fits");
        let plan = decode(&data);
        assert_eq!(plan.case, case);
        assert_eq!(plan.seed, 9);
        let mut want = kb.clone();
        want.calls += QUIET;
        assert_eq!(plan.timeline, want);
        // Out of bounds: a fourth catalog, 21 calls, a catalog not named gcN.
        let mut big = kb.clone();
        big.calls = 21;
        assert_eq!(encode(&case, 0, &big), None);
        let mut named = kb.clone();
        named.gcs[0] = "dc1".into();
        assert_eq!(encode(&case, 0, &named), None);
        let mut odd_delay = kb;
        odd_delay.events[5].delay_ms = Some(155);
        assert_eq!(encode(&case, 0, &odd_delay), None);
    }

    #[test]
    fn decode_bounds_any_input() {
        // The largest plan: 3 catalogs, 20 calls, 12 events (each a restart at 20 s).
        let mut data = vec![1, 1, 1, 1, 1, 0, MAX_GCS - 1, 0, 0, 0, 0, 0, 0];
        data.extend([MAX_CALLS - 1, MAX_EVENTS]);
        data.extend([MAX_CALLS - 1, 3].repeat(usize::from(MAX_EVENTS)));
        let plan = decode(&data);
        assert_eq!(plan.timeline.gcs, ["gc1", "gc2", "gc3"]);
        assert_eq!(plan.timeline.calls, u32::from(MAX_CALLS) + QUIET);
        assert_eq!(plan.timeline.events.len(), usize::from(MAX_EVENTS));
        assert!(plan.timeline.events.iter().all(|e| e.restart && e.at == 20));
        // Any octets stay within the bounds and validate.
        let mut rng = crate::rng::SeededRng::new(3);
        for len in [0usize, 1, 7, 40, 300] {
            for fill in [0x00u8, 0xFF, 0x80] {
                let mut data = vec![fill; len];
                if fill == 0x80 {
                    rng.fill(&mut data);
                }
                let plan = decode(&data);
                let t = &plan.timeline;
                assert!(t.validate().is_ok(), "{t:?}");
                assert!(t.gcs.len() <= usize::from(MAX_GCS));
                assert!(t.events.len() <= usize::from(MAX_EVENTS));
                assert!(t.calls <= u32::from(MAX_CALLS) + QUIET && t.calls > QUIET);
                assert!(t.events.iter().all(|e| e.at + QUIET <= t.calls));
                gc_timeline(&data);
            }
        }
        // The empty input: one catalog, up and known, one call and the quiet ones.
        let plan = decode(b"");
        assert_eq!(plan.timeline.gcs, ["gc1"]);
        assert_eq!(plan.timeline.calls, 1 + QUIET);
        assert!(plan.timeline.events.is_empty());
        assert_eq!(play(&plan).expect("lab").timeline(), "....");
    }

    /// The plan of the seed `name` and its run.
    fn seed_run(name: &str) -> (Plan, FailoverRun) {
        let (_, data, _) = seed_cases()
            .into_iter()
            .find(|(n, _, _)| *n == name)
            .expect("seed");
        let plan = decode(&data);
        let run = play(&plan).expect("lab");
        (plan, run)
    }

    #[test]
    fn without_reconnect_a_second_catalog_or_referral_in_one_process_is_caught() {
        let (plan, run) = seed_run("kb-sp1-service-no-reconnect");
        keeps_its_catalog(&plan, &run);
        let with_step = |head: &str, step: &str| {
            let mut run = run.clone();
            let at = run
                .outcome
                .steps
                .iter()
                .position(|s| s.0 == head)
                .expect("the call's head");
            run.outcome
                .steps
                .insert(at + 1, crate::driver::outcome::StepLine(step.into()));
            std::panic::catch_unwind(|| keeps_its_catalog(&plan, &run)).is_ok()
        };
        // Bound to gc1 from 1 s: a referral or gc2 before the restart at 13 s breaks it.
        assert!(!with_step("5 s:", "  RFR: RfrGetNewDSA: gc2.example.test"));
        assert!(!with_step(
            "7 s:",
            "  NSPI gc2: bound (Kerberos as the process)"
        ));
        assert!(with_step(
            "7 s:",
            "  NSPI gc1: bound (Kerberos as the process)"
        ));
        // After the restart the new process binds gc2 (the steps already show it).
        assert!(run
            .outcome
            .steps
            .iter()
            .any(|s| s.0 == "  NSPI gc2: bound (Kerberos as the process)"));
    }

    #[test]
    fn with_reconnect_a_success_before_the_end_of_session_is_caught() {
        let (plan, run) = seed_run("kb-hotfix-1-service");
        assert_eq!(run.timeline(), "...NNNNNE...|......");
        fails_over_through_an_end(&plan, &run);
        // gc1's session breaks at 4 s; 9 s ends it. Had 9 s succeeded, or 6 s:
        for at in [9, 6] {
            let mut run = run.clone();
            run.calls[at - 1].result.code = None;
            let caught =
                std::panic::catch_unwind(|| fails_over_through_an_end(&plan, &run)).is_err();
            assert!(caught, "{at} s");
        }
        // After the end (10 s on) and after the restart, successes are the new session's.
        let steps = call_steps(&run);
        assert_eq!(steps[3][0], "NSPI gc1: ResolveNamesW: fault 0x6BA");
        assert_eq!(steps[9][0], "program: logs on again (process-credentials)");
    }

    /// Replays libFuzzer's corpus (fuzz/out/corpus/gc_timeline, not kept in git):
    /// `cargo test -p harness-core --lib gc_ops::tests::fuzzer_corpus -- --ignored`.
    #[test]
    #[ignore = "reads fuzz/out/corpus/gc_timeline when a fuzz run left one"]
    fn fuzzer_corpus_holds_the_invariants() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/out/corpus/gc_timeline");
        let mut n = 0;
        for f in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            gc_timeline(&std::fs::read(f.path()).unwrap_or_default());
            n += 1;
        }
        eprintln!("replayed {n}");
    }

    #[test]
    fn the_legend_gives_every_symbol() {
        assert_eq!(legend_symbols(), ['.', 'N', 'E', 'P', 'x', '|']);
    }
}
