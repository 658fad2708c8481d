//! Scenario cases over real sockets: each case gets a fresh lab (with a front-end
//! listener when its topology names one), the driver's client plays over TCP with the
//! real clock, and the same expectations as the in-process runner are checked. What
//! happens behind the front-end is not traced here; the in-process runner shows that.

use std::net::SocketAddr;
use std::time::Duration;

use harness_core::driver;
use harness_core::frontend::FrontendProfile;
use harness_core::scenario::{
    evaluate, probe_from_report, probe_script, Case, CaseOutcome, CasePlan, ScenarioError,
    ScenarioFile,
};
use harness_core::script;

use super::client_driver::drive_client;
use super::play::SocketTransport;
use crate::serve::frontend_host::FrontendSpec;
use crate::{Lab, LabConfig, LabError, ListenerSpec, Security};

/// Longest a client may take over sockets before the case is cut off.
const CASE_TIMEOUT: Duration = Duration::from_secs(60);
/// Simulated user think time at a prompt: short, since a real clock is running.
const THINK_TIME: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
pub enum SocketRunError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error(transparent)]
    Lab(#[from] LabError),
    #[error("unknown front-end profile {0:?}")]
    UnknownFrontend(String),
    #[error("case {0} did not finish within {CASE_TIMEOUT:?}")]
    Timeout(String),
}

/// Runs one case over sockets against a lab of its own.
pub async fn run_case(scenario: &ScenarioFile, case: &Case) -> Result<CaseOutcome, SocketRunError> {
    let plan = CasePlan::new(scenario, case)?;
    let protocol = plan.protocol;
    let lo: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut config = LabConfig {
        profile: plan.profile.clone(),
        listeners: vec![ListenerSpec::new(protocol, Security::Plain, lo)],
        seed: Some(scenario.actor.seed),
        ..LabConfig::default()
    };
    if plan.topology != "direct" {
        let profile = FrontendProfile::by_name(&plan.topology)
            .ok_or_else(|| SocketRunError::UnknownFrontend(plan.topology.clone()))?;
        config.frontends.push(FrontendSpec {
            protocol,
            addr: lo,
            profile,
            backend: None,
        });
    }
    let lab = Lab::start(config).await?;
    let target = match lab.frontend_addr(protocol) {
        Some(fe) => fe,
        None => lab
            .addr(protocol, Security::Plain)
            .ok_or(LabError::NoListeners)?,
    };
    let result = tokio::time::timeout(CASE_TIMEOUT, async {
        match plan.client {
            None => {
                let report = tokio::task::spawn_blocking(move || {
                    let parsed = script::parse(probe_script(plan.protocol)).map_err(|e| {
                        script::PlayError::Transport {
                            line: 0,
                            conn: 0,
                            reason: e.to_string(),
                        }
                    })?;
                    let mut transport = SocketTransport::new(target, Duration::from_secs(3));
                    script::play(&parsed, &Default::default(), &mut transport)
                })
                .await
                .unwrap_or_else(|e| {
                    Err(script::PlayError::Transport {
                        line: 0,
                        conn: 0,
                        reason: e.to_string(),
                    })
                });
                (None, Some(probe_from_report(plan.protocol, report)))
            }
            Some(mut cfg) => {
                cfg.think_time = THINK_TIME;
                let mut client = driver::new_client(plan.protocol, cfg);
                drive_client(client.as_mut(), target).await;
                (Some(client.outcome()), None)
            }
        }
    })
    .await;
    lab.shutdown().await;
    let (session, probe) = result.map_err(|_| SocketRunError::Timeout(case.id()))?;
    Ok(evaluate(
        scenario,
        case,
        session,
        probe,
        Vec::new(),
        Vec::new(),
    ))
}
