//! Scenarios: a matrix of configurations, each case played in-process (virtual clock,
//! seeded randomness) and checked against the expectations in its file.

mod file;

pub use file::{
    allowed_values, Actor, Case, Expectation, OneOrMany, Param, ScenarioError, ScenarioFile,
    FINDING_KINDS, MAIL_CLIENTS, MAPI_CLIENTS, MAX_CASES, PARAMETERS, STATUSES, WEB_CLIENTS,
};

/// Front-end profiles a `topology` may name.
pub const TOPOLOGY_FRONTENDS: &[&str] = &[
    "exchange2000-rtm",
    "exchange2000-sp1",
    "affinity",
    "per-session",
];

/// Ways a `mapi` case may reach the Exchange endpoint besides `direct`: through the RPC
/// over HTTP proxy (Outlook Anywhere) with that HTTP authentication on its channels.
pub const TOPOLOGY_RPC_PROXIES: &[&str] = &["outlook-anywhere-ntlm", "outlook-anywhere-basic"];

/// The channels' HTTP authentication a proxy topology names.
pub fn rpc_proxy_scheme(topology: &str) -> Option<crate::http_auth::HttpScheme> {
    use crate::http_auth::HttpScheme;
    match topology {
        "outlook-anywhere-ntlm" => Some(HttpScheme::Ntlm),
        "outlook-anywhere-basic" => Some(HttpScheme::Basic),
        _ => None,
    }
}

mod maildrop;
mod run;

pub use maildrop::MailDrop;

pub use run::{
    endpoint, evaluate, evaluate_failover, finding_kind, normalise, probe_from_report,
    probe_script, rpc_endpoints, run_case, run_scenario, CallsSummary, CaseClient, CaseOutcome,
    CasePlan, CaseTarget, Check, Direct, Probe, RpcDirect, RpcOverHttp, Topology, TopologyFactory,
};

/// A front-end (by profile name) in front of the mock endpoints, in-process.
pub fn frontend_topology(
    name: &str,
    world: std::sync::Arc<crate::world::World>,
    profile: crate::profile::Profile,
    protocol: crate::Protocol,
) -> Option<Box<dyn Topology>> {
    use crate::frontend::{FrontendProfile, InProcessFrontend};
    let fe_profile = FrontendProfile::by_name(name)?;
    let profile = std::sync::Arc::new(profile);
    let frontend = InProcessFrontend::new(protocol, fe_profile, move |n| {
        endpoint(&world, &profile, protocol, n)
    });
    Some(Box::new(FrontendTopology { frontend }))
}

/// The client talks to a front-end that pools connections to the mock back-end.
struct FrontendTopology {
    frontend: crate::frontend::InProcessFrontend,
}

impl Topology for FrontendTopology {
    fn connect(&mut self, _n: usize) -> Box<dyn crate::session::ServerSession> {
        self.frontend.session()
    }

    fn trace(&self) -> Vec<String> {
        self.frontend.trace()
    }

    fn findings(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self
            .frontend
            .findings()
            .iter()
            .map(|f| match f {
                crate::frontend::Finding::ContextSplit { .. } => "context-split".to_string(),
            })
            .collect();
        kinds.dedup();
        kinds
    }
}
