//! The directory's topology on a virtual clock: the global catalogs (each up, shutting
//! down or down), which of them the KDC knows a service principal for, and the events a
//! scenario's timeline changes them with.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a global catalog is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GcState {
    /// Serves NSPI; the referral service may name it.
    Up,
    /// Its listener still takes connections, but NSPI calls fail with
    /// RPC_S_SERVER_UNAVAILABLE (its directory service is stopping) and the referral
    /// service no longer names it.
    ShuttingDown,
    /// Nothing listens: connections are refused, open ones are reset.
    Down,
}

impl GcState {
    pub fn name(self) -> &'static str {
        match self {
            GcState::Up => "up",
            GcState::ShuttingDown => "shutting down",
            GcState::Down => "down",
        }
    }
}

/// What happens to the KDC's entry for a global catalog's `exchangeAB/<fqdn>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KdcChange {
    Add,
    Remove,
}

/// One event of a timeline, at virtual second `at` (applied before that second's call).
/// Exactly one of `state`, `kdc`, `reset`, `delay-ms` and `restart` is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Event {
    pub at: u32,
    /// The global catalog the event is about (its short name, e.g. `gc1`).
    #[serde(default)]
    pub gc: Option<String>,
    /// The global catalog goes into this state.
    #[serde(default)]
    pub state: Option<GcState>,
    /// The KDC's entry for the global catalog's service principal is added or removed.
    #[serde(default)]
    pub kdc: Option<KdcChange>,
    /// The client's connection to the global catalog is reset (a network fault on the hop).
    #[serde(default)]
    pub reset: bool,
    /// The hop to the global catalog gets this round-trip time from now on (0: none).
    #[serde(default)]
    pub delay_ms: Option<u32>,
    /// The program is restarted (a new process: the provider's state starts over).
    #[serde(default)]
    pub restart: bool,
}

/// What an event does, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Gc { gc: String, state: GcState },
    Kdc { gc: String, change: KdcChange },
    Reset { gc: String },
    Delay { gc: String, rtt_ms: u32 },
    Restart,
}

/// The longest round trip a timeline may put on a hop.
pub const MAX_DELAY_MS: u32 = 10_000;

impl Event {
    pub fn action(&self) -> Result<Action, TimelineError> {
        let gc = || {
            self.gc.clone().ok_or(TimelineError::Event {
                at: self.at,
                why: "names no `gc`",
            })
        };
        let given = usize::from(self.state.is_some())
            + usize::from(self.kdc.is_some())
            + usize::from(self.reset)
            + usize::from(self.delay_ms.is_some())
            + usize::from(self.restart);
        if given != 1 {
            return Err(TimelineError::Event {
                at: self.at,
                why: "needs exactly one of `state`, `kdc`, `reset`, `delay-ms` and `restart`",
            });
        }
        if self.delay_ms.is_some_and(|d| d > MAX_DELAY_MS) {
            return Err(TimelineError::Event {
                at: self.at,
                why: "has a `delay-ms` over 10000",
            });
        }
        Ok(if let Some(state) = self.state {
            Action::Gc { gc: gc()?, state }
        } else if let Some(change) = self.kdc {
            Action::Kdc { gc: gc()?, change }
        } else if self.reset {
            Action::Reset { gc: gc()? }
        } else if let Some(rtt_ms) = self.delay_ms {
            Action::Delay { gc: gc()?, rtt_ms }
        } else {
            Action::Restart
        })
    }
}

/// Global catalogs a timeline may name at most, and calls it may make at most.
pub const MAX_GCS: usize = 8;
pub const MAX_CALLS: u32 = 120;

/// A scenario's timeline: the global catalogs (short names, in the referral service's order
/// of preference), how each starts, the address-book calls (one a virtual second, from
/// second 1 to `calls`) and the events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Timeline {
    pub gcs: Vec<String>,
    /// How each global catalog starts (default: up).
    #[serde(default)]
    pub start: BTreeMap<String, GcState>,
    /// Global catalogs whose service principal the KDC does not know at the start.
    #[serde(default)]
    pub kdc_unknown: Vec<String>,
    pub calls: u32,
    #[serde(default, rename = "event")]
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimelineError {
    #[error("timeline: {0}")]
    Shape(String),
    #[error("timeline: the event at second {at} {why}")]
    Event { at: u32, why: &'static str },
    #[error("timeline: {0:?} is not one of the timeline's global catalogs")]
    UnknownGc(String),
}

impl Timeline {
    pub fn validate(&self) -> Result<(), TimelineError> {
        if self.gcs.is_empty() || self.gcs.len() > MAX_GCS {
            return Err(TimelineError::Shape(format!(
                "needs 1 to {MAX_GCS} global catalogs"
            )));
        }
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.len() <= 15
                && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if let Some(bad) = self.gcs.iter().find(|n| !name_ok(n)) {
            return Err(TimelineError::Shape(format!(
                "{bad:?} is no host name (letters, digits and '-', at most 15)"
            )));
        }
        let mut seen = self.gcs.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != self.gcs.len() {
            return Err(TimelineError::Shape(
                "a global catalog is named twice".into(),
            ));
        }
        if self.calls == 0 || self.calls > MAX_CALLS {
            return Err(TimelineError::Shape(format!(
                "`calls` must be 1 to {MAX_CALLS}"
            )));
        }
        let known = |gc: &String| {
            self.gcs
                .contains(gc)
                .then_some(())
                .ok_or_else(|| TimelineError::UnknownGc(gc.clone()))
        };
        self.start.keys().try_for_each(known)?;
        self.kdc_unknown.iter().try_for_each(known)?;
        for e in &self.events {
            if e.at == 0 || e.at > self.calls {
                return Err(TimelineError::Event {
                    at: e.at,
                    why: "is outside the calls (seconds 1 to `calls`)",
                });
            }
            match e.action()? {
                Action::Gc { gc, .. }
                | Action::Kdc { gc, .. }
                | Action::Reset { gc }
                | Action::Delay { gc, .. } => known(&gc)?,
                Action::Restart => {}
            }
        }
        Ok(())
    }

    /// The events at second `at`, in file order.
    pub fn events_at(&self, at: u32) -> impl Iterator<Item = Action> + '_ {
        self.events
            .iter()
            .filter(move |e| e.at == at)
            .filter_map(|e| e.action().ok())
    }
}

/// The directory as it stands: each global catalog's state and whether the KDC knows
/// its service principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// In the referral service's order of preference.
    gcs: Vec<(String, GcState)>,
    kdc_knows: BTreeMap<String, bool>,
    /// The round trip of the hop to each global catalog, in milliseconds (absent: 0).
    delays: BTreeMap<String, u32>,
    dns_domain: String,
}

impl Topology {
    pub fn start(timeline: &Timeline, dns_domain: &str) -> Topology {
        Topology {
            gcs: timeline
                .gcs
                .iter()
                .map(|g| (g.clone(), *timeline.start.get(g).unwrap_or(&GcState::Up)))
                .collect(),
            kdc_knows: timeline
                .gcs
                .iter()
                .map(|g| (g.clone(), !timeline.kdc_unknown.contains(g)))
                .collect(),
            delays: BTreeMap::new(),
            dns_domain: dns_domain.to_string(),
        }
    }

    pub fn state(&self, gc: &str) -> Option<GcState> {
        self.gcs.iter().find(|(g, _)| g == gc).map(|(_, s)| *s)
    }

    pub fn kdc_knows(&self, gc: &str) -> bool {
        self.kdc_knows.get(gc).copied().unwrap_or(false)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.gcs.iter().map(|(g, _)| g.as_str())
    }

    pub fn set_state(&mut self, gc: &str, state: GcState) {
        if let Some((_, s)) = self.gcs.iter_mut().find(|(g, _)| g == gc) {
            *s = state;
        }
    }

    /// The round trip of the hop to `gc`, in milliseconds.
    pub fn delay_ms(&self, gc: &str) -> u32 {
        self.delays.get(gc).copied().unwrap_or(0)
    }

    pub fn set_delay(&mut self, gc: &str, rtt_ms: u32) {
        if self.gcs.iter().any(|(g, _)| g == gc) {
            self.delays.insert(gc.to_string(), rtt_ms);
        }
    }

    pub fn set_kdc(&mut self, gc: &str, knows: bool) {
        if let Some(k) = self.kdc_knows.get_mut(gc) {
            *k = knows;
        }
    }

    /// The global catalog's FQDN.
    pub fn fqdn(&self, gc: &str) -> String {
        format!("{gc}.{}", self.dns_domain)
    }

    /// The short name of an FQDN of this directory.
    pub fn short<'a>(&self, fqdn: &'a str) -> &'a str {
        fqdn.split('.').next().unwrap_or(fqdn)
    }

    /// The service principal NSPI on the global catalog is reached by ([MS-OXNSPI]'s
    /// clients ask for `exchangeAB/<fqdn>`).
    pub fn spn(&self, gc: &str) -> String {
        format!("exchangeAB/{}", self.fqdn(gc))
    }

    /// The FQDNs the referral service names, best first: the global catalogs that are up.
    /// One shutting down or down is no longer named (Exchange's directory access drops
    /// it); whether the KDC knows a named one is not the referral service's concern.
    pub fn referral(&self) -> Vec<String> {
        self.gcs
            .iter()
            .filter(|(_, s)| *s == GcState::Up)
            .map(|(g, _)| self.fqdn(g))
            .collect()
    }

    /// Makes `db` hold the service principal of each global catalog the KDC knows, and
    /// not of the others (a principal added gets the realm's fixed service key).
    pub fn sync_realm(&self, db: &mut crate::kerberos::RealmDb) {
        for gc in self.names() {
            let spn = self.spn(gc);
            match (self.kdc_knows(gc), db.entry(&spn).is_some()) {
                (true, false) => db.add_service(&spn, false),
                (false, true) => _ = db.remove(&spn),
                _ => {}
            }
        }
    }

    /// What the referral service of `world`'s Exchange server answers now: the global
    /// catalogs of [`Topology::referral`], the world's mailbox server.
    pub fn rfr_answer(&self, world: &crate::world::World) -> crate::dcerpc::rfr::Referral {
        crate::dcerpc::rfr::Referral {
            nspi_servers: self.referral(),
            ..crate::dcerpc::endpoints::referral_for_world(world)
        }
    }

    /// One line for the trace: `gc1 up (kdc), gc2 down (no kdc entry)`.
    pub fn describe(&self) -> String {
        self.gcs
            .iter()
            .map(|(g, s)| {
                let kdc = if self.kdc_knows(g) {
                    "kdc"
                } else {
                    "no kdc entry"
                };
                match self.delay_ms(g) {
                    0 => format!("{g} {} ({kdc})", s.name()),
                    rtt => format!("{g} {} ({kdc}; hop RTT {rtt} ms)", s.name()),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(text: &str) -> Result<Timeline, String> {
        let t: Timeline = toml::from_str(text).map_err(|e| e.to_string())?;
        t.validate().map_err(|e| e.to_string())?;
        Ok(t)
    }

    #[test]
    fn events_are_checked_and_the_referral_names_the_catalogs_that_are_up() {
        let t = timeline(
            r#"
            gcs = ["gc1", "gc2"]
            start = { gc2 = "down" }
            kdc-unknown = ["gc2"]
            calls = 6
            [[event]]
            at = 2
            gc = "gc1"
            state = "shutting-down"
            [[event]]
            at = 2
            gc = "gc2"
            state = "up"
            [[event]]
            at = 4
            gc = "gc2"
            kdc = "add"
            [[event]]
            at = 5
            restart = true
            "#,
        )
        .unwrap();
        let mut topo = Topology::start(&t, "example.test");
        assert_eq!(topo.referral(), ["gc1.example.test"]);
        assert!(topo.kdc_knows("gc1") && !topo.kdc_knows("gc2"));
        assert_eq!(topo.describe(), "gc1 up (kdc), gc2 down (no kdc entry)");
        for action in t.events_at(2) {
            if let Action::Gc { gc, state } = action {
                topo.set_state(&gc, state);
            }
        }
        assert_eq!(topo.referral(), ["gc2.example.test"]);
        assert_eq!(topo.spn("gc2"), "exchangeAB/gc2.example.test");
        assert_eq!(t.events_at(5).collect::<Vec<_>>(), [Action::Restart]);
        topo.set_delay("gc2", 40);
        topo.set_delay("gc9", 40);
        assert_eq!((topo.delay_ms("gc2"), topo.delay_ms("gc1")), (40, 0));
        assert!(topo
            .describe()
            .ends_with("gc2 up (no kdc entry; hop RTT 40 ms)"));
        assert_eq!(t.events_at(3).count(), 0);

        for (bad, why) in [
            ("gcs = []\ncalls = 1", "needs 1 to 8"),
            ("gcs = [\"gc1\", \"gc1\"]\ncalls = 1", "named twice"),
            ("gcs = [\"g c\"]\ncalls = 1", "no host name"),
            ("gcs = [\"gc1\"]\ncalls = 0", "`calls` must be"),
            ("gcs = [\"gc1\"]\ncalls = 121", "`calls` must be"),
            ("gcs = [\"gc1\"]\nkdc-unknown = [\"gc9\"]\ncalls = 2", "\"gc9\" is not one"),
            (
                "gcs = [\"gc1\"]\ncalls = 2\n[[event]]\nat = 3\nrestart = true",
                "outside the calls",
            ),
            (
                "gcs = [\"gc1\"]\ncalls = 2\n[[event]]\nat = 1\nrestart = true\nreset = true\ngc = \"gc1\"",
                "exactly one",
            ),
            (
                "gcs = [\"gc1\"]\ncalls = 2\n[[event]]\nat = 1\nstate = \"down\"",
                "names no `gc`",
            ),
            (
                "gcs = [\"gc1\"]\ncalls = 2\n[[event]]\nat = 1\ngc = \"gc1\"\ndelay-ms = 10001",
                "over 10000",
            ),
        ] {
            let err = timeline(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
