//! `harness fuzz --target URL`: mutated transcripts against a live server.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use harness::tools::netfuzz::{fuzz, FuzzConfig, OutcomeKind};
use harness::tools::play::Target;
use indicatif::{ProgressBar, ProgressStyle};

use super::table;

#[derive(clap::Args)]
pub struct FuzzArgs {
    /// imap://HOST:PORT or pop3://HOST:PORT.
    #[arg(long)]
    target: String,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    /// Stop after this many cases (default: as many as fit in --seconds).
    #[arg(long)]
    count: Option<u64>,
    /// Seed of the mutations (case N of a seed is always the same).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Milliseconds of silence, while a reply is due, that count as a hang.
    #[arg(long, default_value_t = 5000)]
    hang_timeout: u64,
    /// The same after LOGIN, AUTHENTICATE, PASS, APOP, AUTH or a SASL response: servers
    /// hold back a failed login on purpose (Dovecot up to 17 s).
    #[arg(long, default_value_t = 20000)]
    auth_timeout: u64,
    /// The server's process: if it is gone, the case is a crash and the run stops.
    #[arg(long)]
    watch_pid: Option<u32>,
    /// Where reproducer transcripts are written.
    #[arg(long, default_value = "fuzz-findings")]
    out: PathBuf,
    /// Transcripts whose client lines are mutated (<DIR>/imap, <DIR>/pop3).
    #[arg(long, default_value = "corpus/sessions")]
    corpus: PathBuf,
    /// Allow a target outside loopback.
    #[arg(long)]
    allow_remote: bool,
}

pub fn run(args: FuzzArgs) -> Result<()> {
    let target = Target::parse(&args.target, args.allow_remote)?;
    let duration = Duration::try_from_secs_f64(args.seconds)
        .context("--seconds must be a non-negative number")?;
    let cfg = FuzzConfig {
        target,
        duration,
        count: args.count,
        seed: args.seed,
        hang_timeout: Duration::from_millis(args.hang_timeout),
        auth_timeout: Duration::from_millis(args.auth_timeout),
        watch_pid: args.watch_pid,
        out: args.out,
        corpus: args.corpus,
    };
    let bar = match cfg.count {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new(duration.as_secs().max(1)),
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let by_count = cfg.count.is_some();
    let summary = fuzz(&cfg, &mut |s| {
        bar.set_position(if by_count {
            s.cases
        } else {
            s.elapsed.as_secs()
        });
        bar.set_message(format!(
            "{} cases, {} findings",
            s.cases,
            s.findings.len() as u64 + s.duplicates
        ));
    })?;
    bar.finish_and_clear();

    println!(
        "harness fuzz: {}://{} seed {}, {} cases in {:.1} s ({})",
        cfg.target.protocol.keyword(),
        cfg.target.addr,
        cfg.seed,
        summary.cases,
        summary.elapsed.as_secs_f64(),
        summary.stopped
    );
    let rows: Vec<Vec<String>> = OutcomeKind::ALL
        .iter()
        .map(|k| {
            vec![
                k.name().to_string(),
                summary.count(*k).to_string(),
                if k.is_finding() { "finding" } else { "-" }.to_string(),
            ]
        })
        .collect();
    print!("{}", table::render(&["outcome", "cases", "kind"], &rows));
    if !summary.findings.is_empty() {
        let rows: Vec<Vec<String>> = summary
            .findings
            .iter()
            .map(|f| {
                vec![
                    f.kind.to_string(),
                    f.case.to_string(),
                    f.path.display().to_string(),
                    f.detail.clone(),
                ]
            })
            .collect();
        print!(
            "{}",
            table::render(&["finding", "case", "reproducer", "detail"], &rows)
        );
    }
    println!(
        "{} findings saved, {} duplicates not saved",
        summary.findings.len(),
        summary.duplicates
    );
    if summary.failed() {
        std::process::exit(1);
    }
    Ok(())
}
