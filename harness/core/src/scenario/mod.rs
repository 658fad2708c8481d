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
    endpoint, finding_kind, run_case, run_scenario, CaseOutcome, Check, Direct, Probe, Topology,
    TopologyFactory,
};
