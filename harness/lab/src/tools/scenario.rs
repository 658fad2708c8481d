//! Scenario cases over real sockets: each case gets a fresh lab (with a front-end
//! listener when its topology names one), the driver's client plays over TCP with the
//! real clock, and the same expectations as the in-process runner are checked. What
//! happens behind the front-end is not traced here; the in-process runner shows that.

use std::net::SocketAddr;
use std::time::Duration;

use harness_core::driver::{self, ClientOutput, ClientSession, Protocol as DriverProtocol};
use harness_core::frontend::FrontendProfile;
use harness_core::scenario::{
    evaluate, probe_from_report, probe_script, Case, CaseOutcome, CasePlan, ScenarioError,
    ScenarioFile,
};
use harness_core::script;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::play::SocketTransport;
use crate::serve::frontend_host::FrontendSpec;
use crate::{Lab, LabConfig, LabError, ListenerSpec, Protocol, Security};

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

fn lab_protocol(p: DriverProtocol) -> Protocol {
    match p {
        DriverProtocol::Imap => Protocol::Imap,
        DriverProtocol::Pop3 => Protocol::Pop3,
    }
}

/// Runs one case over sockets against a lab of its own.
pub async fn run_case(scenario: &ScenarioFile, case: &Case) -> Result<CaseOutcome, SocketRunError> {
    let plan = CasePlan::new(scenario, case)?;
    let protocol = lab_protocol(plan.protocol);
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

/// Shuttles a client's bytes over TCP until it is done; reconnects when it asks to.
pub async fn drive_client(client: &mut dyn ClientSession, addr: SocketAddr) {
    let started = Instant::now();
    let mut tcp = TcpStream::connect(addr).await.ok();
    if tcp.is_none() {
        client.handle_eof(started.elapsed());
    }
    let mut buf = vec![0u8; 8192];
    loop {
        while let Some(out) = client.poll_output() {
            let now = started.elapsed();
            match out {
                ClientOutput::Write(bytes) => {
                    let ok = match tcp.as_mut() {
                        Some(t) => t.write_all(&bytes).await.is_ok(),
                        None => false,
                    };
                    if !ok {
                        tcp = None;
                        client.handle_eof(now);
                    }
                }
                // The scenario clients do not ask for TLS; refuse rather than pretend.
                ClientOutput::StartTls => {
                    tcp = None;
                    client.handle_eof(now);
                }
                ClientOutput::Close => {
                    if let Some(mut t) = tcp.take() {
                        let _ = t.shutdown().await;
                    }
                }
                ClientOutput::Reconnect => {
                    tcp = TcpStream::connect(addr).await.ok();
                    if tcp.is_none() {
                        client.handle_eof(started.elapsed());
                    }
                }
            }
        }
        if client.is_done() {
            return;
        }
        let deadline = client.poll_timeout().map(|d| started + d);
        tokio::select! {
            read = async {
                match tcp.as_mut() {
                    Some(t) => t.read(&mut buf).await,
                    None => std::future::pending().await,
                }
            } => {
                let now = started.elapsed();
                match read {
                    Ok(0) | Err(_) => {
                        tcp = None;
                        client.handle_eof(now);
                    }
                    Ok(n) => client.handle_input(now, &buf[..n]),
                }
            }
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending::<()>().await,
                }
            } => client.handle_timeout(started.elapsed()),
        }
        if tcp.is_none() && client.poll_timeout().is_none() && !client.is_done() {
            // Nothing can move any more: no connection and no timer.
            client.handle_eof(started.elapsed());
            if client.poll_timeout().is_none() && !client.is_done() {
                return;
            }
        }
    }
}
