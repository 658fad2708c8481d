//! `harness run`: every case of every scenario, a progress bar, a matrix of outcomes.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use harness_core::scenario::{run_case, CaseOutcome, ScenarioFile};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::table;

#[derive(clap::Args)]
pub struct RunArgs {
    /// Scenario files or directories (default: corpus/scenarios).
    scenarios: Vec<PathBuf>,
    /// Write every case's outcome as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Print each case's full outcome, not only the broken ones.
    #[arg(long)]
    verbose: bool,
    /// Only cases whose id contains this text.
    #[arg(long)]
    filter: Option<String>,
    /// Play every case over real sockets against a fresh lab (front-end listeners
    /// included) instead of in-process.
    #[arg(long)]
    sockets: bool,
}

#[derive(Serialize)]
struct Report<'a> {
    cases: usize,
    broken: usize,
    outcomes: &'a [CaseOutcome],
}

fn scenario_paths(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let roots = if args.is_empty() {
        vec![PathBuf::from("corpus/scenarios")]
    } else {
        args.to_vec()
    };
    let mut files = Vec::new();
    for root in roots {
        if root.is_dir() {
            for entry in
                std::fs::read_dir(&root).with_context(|| format!("reading {}", root.display()))?
            {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "toml") {
                    files.push(path);
                }
            }
        } else if root.is_file() {
            files.push(root);
        } else {
            bail!(
                "{} does not exist (run from the project root, or name the scenario files)",
                root.display()
            );
        }
    }
    files.sort();
    if files.is_empty() {
        bail!("no scenario files (*.toml) found");
    }
    Ok(files)
}

fn load(path: &Path) -> Result<ScenarioFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    ScenarioFile::parse(&text).with_context(|| format!("in {}", path.display()))
}

/// A timeline's events in one line: `4 s gc1 shutting-down, 9 s kdc add gc2, ...`.
fn describe_events(t: &harness_core::gc::Timeline) -> String {
    use harness_core::gc::timeline::{Action, KdcChange};
    let mut parts = Vec::new();
    for at in 1..=t.calls {
        for a in t.events_at(at) {
            parts.push(match a {
                Action::Gc { gc, state } => format!("{at} s {gc} {}", state.name()),
                Action::Kdc { gc, change } => format!(
                    "{at} s KDC {} {gc}",
                    if change == KdcChange::Add {
                        "learns"
                    } else {
                        "forgets"
                    }
                ),
                Action::Reset { gc } => format!("{at} s reset to {gc}"),
                Action::Delay { gc, rtt_ms } => format!("{at} s hop to {gc} RTT {rtt_ms} ms"),
                Action::Restart => format!("{at} s program restarts"),
            });
        }
    }
    parts.join(", ")
}

pub fn run(args: RunArgs) -> Result<()> {
    let files = scenario_paths(&args.scenarios)?;
    let scenarios: Vec<ScenarioFile> = files.iter().map(|p| load(p)).collect::<Result<_>>()?;
    let work: Vec<(usize, harness_core::scenario::Case)> = scenarios
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.cases().into_iter().map(move |c| (i, c)))
        .filter(|(_, c)| {
            args.filter
                .as_ref()
                .is_none_or(|f| c.id().contains(f.as_str()))
        })
        .collect();
    let bar = ProgressBar::new(work.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let runtime = if args.sockets {
        Some(tokio::runtime::Runtime::new().context("starting the async runtime")?)
    } else {
        None
    };
    let mut outcomes = Vec::with_capacity(work.len());
    for (i, case) in &work {
        bar.set_message(case.id());
        let outcome = match &runtime {
            Some(rt) => rt
                .block_on(harness::tools::scenario::run_case(&scenarios[*i], case))
                .with_context(|| format!("case {} over sockets", case.id()))?,
            None => run_case(
                &scenarios[*i],
                case,
                &harness_core::scenario::frontend_topology,
            )
            .with_context(|| format!("case {}", case.id()))?,
        };
        outcomes.push((*i, outcome));
        bar.inc(1);
    }
    bar.finish_and_clear();

    let mut rows = Vec::new();
    let mut broken = 0;
    for (i, o) in &outcomes {
        let scenario = &scenarios[*i];
        if !o.passed() {
            broken += 1;
        }
        if args.verbose || !o.passed() {
            println!("{}", o.render(scenario));
        }
        let codes: Vec<String> = o.codes().iter().map(|c| c.to_string()).collect();
        let findings = o.finding_kinds();
        let mut row = vec![scenario.name.clone()];
        row.extend(o.case.params.iter().map(|(_, v)| v.clone()));
        if scenario.timeline.is_some() {
            let calls = o.calls.as_ref();
            row.push(calls.map_or_else(|| "-".into(), |c| c.timeline.clone()));
            row.push(calls.map_or_else(|| "-".into(), |c| c.end_state.clone()));
        }
        row.push(match &o.probe {
            Some(p) if p.advertises_ntlm => "probed: NTLM offered".to_string(),
            Some(_) => "probed: no NTLM".to_string(),
            None => o.status(),
        });
        row.push(if codes.is_empty() {
            "-".into()
        } else {
            codes.join(", ")
        });
        row.push(if findings.is_empty() {
            "-".into()
        } else {
            findings.join(", ")
        });
        row.push(if o.passed() {
            "ok".into()
        } else {
            "BROKEN".into()
        });
        rows.push(row);
    }
    // One table per scenario, since their parameters differ.
    for (i, scenario) in scenarios.iter().enumerate() {
        let mine: Vec<Vec<String>> = outcomes
            .iter()
            .zip(&rows)
            .filter(|((j, _), _)| *j == i)
            .map(|(_, r)| r[1..].to_vec())
            .collect();
        if mine.is_empty() {
            continue;
        }
        println!("{}: {}", scenario.name, scenario.title);
        let mut header: Vec<&str> = scenario.params.iter().map(|p| p.name.as_str()).collect();
        if scenario.timeline.is_some() {
            header.extend(["calls, one a second", "provider at the end"]);
        }
        header.extend(["status", "codes", "findings", "expected?"]);
        println!("{}", table::render(&header, &mine));
        if let Some(t) = &scenario.timeline {
            println!("events: {}", describe_events(t));
            println!("legend: {}\n", harness_core::gc::LEGEND);
        }
    }
    if let Some(path) = &args.report {
        let list: Vec<CaseOutcome> = outcomes.iter().map(|(_, o)| o.clone()).collect();
        let report = Report {
            cases: list.len(),
            broken,
            outcomes: &list,
        };
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    println!(
        "{} cases, {} as expected, {} broken",
        outcomes.len(),
        outcomes.len() - broken,
        broken
    );
    if broken > 0 {
        std::process::exit(1);
    }
    Ok(())
}
