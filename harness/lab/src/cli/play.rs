//! `harness play`: transcript scripts in-process or against a target.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use harness::tools::play::{SocketTransport, Target};
use harness_core::imap::ImapServer;
use harness_core::pop3::Pop3Server;
use harness_core::script::{self, InProcess, ScriptTransport, Verdict};
use harness_core::{LabFile, Profile, Protocol, ServerSession, SessionContext};

use super::table;

#[derive(clap::Args)]
pub struct PlayArgs {
    /// Script files or directories (searched for *.txt).
    #[arg(required = true)]
    scripts: Vec<PathBuf>,
    /// imap://HOST:PORT or pop3://HOST:PORT. Without it, each script plays in-process
    /// against the mock for its @protocol.
    #[arg(long)]
    target: Option<String>,
    /// Profile of the in-process mock.
    #[arg(long, default_value = "default")]
    profile: String,
    /// Set a script variable: NAME=VALUE (overrides @var).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    vars: Vec<String>,
    /// Seconds of silence after which a server is taken to have nothing more to say.
    #[arg(long, default_value_t = 3.0)]
    silence: f64,
    /// Print every transcript, not only the failing ones.
    #[arg(long)]
    verbose: bool,
    /// Allow a target outside loopback.
    #[arg(long)]
    allow_remote: bool,
}

/// Lab-clock origin for in-process plays: fixed, so transcripts repeat.
const IN_PROCESS_EPOCH: u64 = 1_704_067_200;

/// Every `*.txt` under the given files and directories, sorted.
pub fn collect_scripts(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out).with_context(|| format!("reading {}", p.display()))?;
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            bail!("{} does not exist", p.display());
        }
    }
    out.sort();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "txt") {
            out.push(path);
        }
    }
    Ok(())
}

/// A server session for `protocol` on the default lab, seeded per connection.
pub fn in_process_factory(
    protocol: Protocol,
    profile: Profile,
) -> Result<impl FnMut(usize) -> Box<dyn ServerSession>> {
    let world = Arc::new(LabFile::default_lab().build()?);
    let profile = Arc::new(profile);
    Ok(move |conn: usize| -> Box<dyn ServerSession> {
        let mut ctx = SessionContext::new(world.clone(), profile.clone());
        ctx.seed = conn as u64;
        ctx.epoch_secs = IN_PROCESS_EPOCH;
        ctx.transport.starttls_available = true;
        match protocol {
            Protocol::Imap => Box::new(ImapServer::new(ctx)),
            Protocol::Pop3 => Box::new(Pop3Server::new(ctx)),
        }
    })
}

pub fn run(args: PlayArgs) -> Result<()> {
    let PlayArgs {
        scripts,
        target,
        profile,
        vars,
        silence,
        verbose,
        allow_remote,
    } = args;
    let files = collect_scripts(&scripts)?;
    if files.is_empty() {
        bail!("no scripts (*.txt) found");
    }
    let mut overrides = BTreeMap::new();
    for v in &vars {
        let Some((k, val)) = v.split_once('=') else {
            bail!("--var takes NAME=VALUE, got {v:?}");
        };
        overrides.insert(k.to_string(), val.to_string());
    }
    let target = target
        .map(|t| Target::parse(&t, allow_remote))
        .transpose()?;
    let profile =
        Profile::by_name(&profile).with_context(|| format!("unknown profile {profile:?}"))?;
    let silence =
        Duration::try_from_secs_f64(silence).context("--silence must be a number of seconds")?;
    let mut rows = Vec::new();
    let mut failed = 0usize;
    for file in &files {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {name}"))?;
        let script = match script::parse(&text) {
            Ok(s) => s,
            Err(e) => {
                failed += 1;
                rows.push(vec![name, "-".into(), "ERROR".into(), e.to_string()]);
                continue;
            }
        };
        let protocol = script
            .protocol
            .or(target.as_ref().map(|t| t.protocol))
            .unwrap_or(Protocol::Imap);
        if let Some(t) = &target {
            if t.protocol != protocol {
                rows.push(vec![
                    name,
                    protocol.keyword().into(),
                    "SKIPPED".into(),
                    format!("target speaks {}", t.protocol.keyword()),
                ]);
                continue;
            }
        }
        let mut transport: Box<dyn ScriptTransport> = match &target {
            Some(t) => Box::new(SocketTransport::new(t.addr, silence)),
            None => {
                // The script's `@offer`s turn optional features of the mock on.
                let mut profile = profile.clone();
                for name in &script.offers {
                    profile.offer(name);
                }
                Box::new(InProcess::new(in_process_factory(protocol, profile)?))
            }
        };
        let result = script::play(&script, &overrides, transport.as_mut());
        match result {
            Ok(report) => {
                if verbose || !report.passed() {
                    println!("== {name}\n{}", report.transcript());
                }
                let (status, note) = match &report.verdict {
                    Verdict::Passed => ("PASSED".to_string(), String::new()),
                    Verdict::Failed {
                        line,
                        expected,
                        got,
                    } => {
                        failed += 1;
                        (
                            "FAILED".to_string(),
                            format!("line {line}: expected {expected:?}, got {got:?}"),
                        )
                    }
                };
                rows.push(vec![name, protocol.keyword().into(), status, note]);
            }
            Err(e) => {
                failed += 1;
                rows.push(vec![
                    name,
                    protocol.keyword().into(),
                    "ERROR".into(),
                    e.to_string(),
                ]);
            }
        }
    }
    print!(
        "{}",
        table::render(&["script", "protocol", "result", "detail"], &rows)
    );
    let passed = rows.iter().filter(|r| r[2] == "PASSED").count();
    let skipped = rows.iter().filter(|r| r[2] == "SKIPPED").count();
    println!("{passed} passed, {failed} failed, {skipped} skipped");
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}
