//! Scenarios: a matrix of configurations, each case played in-process (virtual clock,
//! seeded randomness) and checked against the expectations in its file.

mod file;

pub use file::{
    allowed_values, Actor, Case, Expectation, OneOrMany, Param, ScenarioError, ScenarioFile,
    FINDING_KINDS, MAX_CASES, PARAMETERS, STATUSES,
};

/// Front-end profiles a `topology` may name.
pub const TOPOLOGY_FRONTENDS: &[&str] = &[
    "exchange2000-rtm",
    "exchange2000-sp1",
    "affinity",
    "per-session",
];

mod run;

pub use run::{
    endpoint, finding_kind, normalise, run_case, run_scenario, CaseOutcome, Check, Direct, Probe,
    Topology, TopologyFactory,
};

/// Builds a front-end topology by profile name (`None` for an unknown name).
pub fn frontend_topology(
    _name: &str,
    _world: std::sync::Arc<crate::world::World>,
    _profile: crate::profile::Profile,
    _protocol: crate::driver::Protocol,
) -> Option<Box<dyn Topology>> {
    None
}
