//! `harness fuzz --target URL`: mutated transcripts against a live server (IMAP, POP3),
//! mutated DCE/RPC sessions (`dcerpc://`), or virtual connections with something wrong
//! through an RPC over HTTP v2 proxy (`rpch://`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use harness::tools::netfuzz::{fuzz, Finding, FuzzConfig, OutcomeKind, Summary};
use harness::tools::netfuzz_dcerpc::{fuzz_dcerpc, parse_target, RpcFuzzConfig, RpcOutcome};
use harness::tools::netfuzz_rpch::{fuzz_rpch, RpchFuzzConfig, RpchOutcome};
use harness::tools::play::Target;
use harness::tools::rpc_load::RpchRoute;
use harness_core::dcerpc::known_calls::KnownInterface;
use harness_core::http_auth::HttpScheme;
use harness_core::netfuzz::dcerpc::RpcCredentials;
use indicatif::{ProgressBar, ProgressStyle};

use super::table;

#[derive(clap::Args)]
pub struct FuzzArgs {
    /// imap://HOST:PORT, pop3://HOST:PORT, dcerpc://HOST:PORT (port 135 by default) or
    /// rpch://HOST:PORT (an RPC over HTTP v2 proxy, port 80 by default).
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
    /// dcerpc, rpch: the interface bound and called (epm or rfr; default epm for
    /// dcerpc://, rfr for rpch://, whose proxy reaches an Exchange endpoint).
    #[arg(long)]
    interface: Option<String>,
    /// dcerpc, rpch: the NTLM account of the authenticated cases (rpch: of the channels'
    /// HTTP authentication too).
    #[arg(long, default_value = "alice")]
    user: String,
    #[arg(long, default_value = "secret")]
    password: String,
    #[arg(long, default_value = "EXAMPLE")]
    domain: String,
    /// dcerpc, rpch: milliseconds to wait for an answer to the mutated PDU (rpch: and
    /// for a held channel to stay unanswered).
    #[arg(long, default_value_t = 200)]
    silence: u64,
    /// rpch://: the RPC server and port the proxy is asked for.
    #[arg(long, default_value = "MAIL:6004")]
    rpch_server: String,
    /// rpch://: HTTP authentication on the channels, ntlm or basic.
    #[arg(long, default_value = "ntlm")]
    rpch_auth: String,
    /// dcerpc, rpch: start at this case number (a finding's report names its case: `--case N
    /// --count 1` plays that plan again).
    #[arg(long, default_value_t = 0)]
    case: u64,
}

pub fn run(args: FuzzArgs) -> Result<()> {
    let duration = Duration::try_from_secs_f64(args.seconds)
        .context("--seconds must be a non-negative number")?;
    if args.target.starts_with("dcerpc://") {
        return run_dcerpc(args, duration);
    }
    if args.target.starts_with("rpch://") {
        return run_rpch(args, duration);
    }
    let target = Target::parse(&args.target, args.allow_remote)?;
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
    let bar = progress_bar(cfg.count, duration);
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
    let outcomes: Vec<(&str, u64, bool)> = OutcomeKind::ALL
        .iter()
        .map(|k| (k.name(), summary.count(*k), k.is_finding()))
        .collect();
    print_tables(
        &outcomes,
        "reproducer",
        &summary.findings,
        summary.duplicates,
    );
    if summary.failed() {
        std::process::exit(1);
    }
    Ok(())
}

/// The progress bar both modes show.
fn progress_bar(count: Option<u64>, duration: Duration) -> ProgressBar {
    let bar = match count {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new(duration.as_secs().max(1)),
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

fn run_dcerpc(args: FuzzArgs, duration: Duration) -> Result<()> {
    let addr = parse_target(&args.target, args.allow_remote).map_err(anyhow::Error::msg)?;
    let interface = interface(args.interface.as_deref(), KnownInterface::Epm)?;
    let cfg = rpc_config(args, addr, interface, duration);
    let bar = progress_bar(cfg.count, duration);
    let by_count = cfg.count.is_some();
    let summary = fuzz_dcerpc(&cfg, &mut |s| show(&bar, by_count, s))?;
    bar.finish_and_clear();
    println!(
        "harness fuzz: dcerpc://{} ({:?}) seed {}, {} cases in {:.1} s ({})",
        cfg.addr,
        cfg.interface,
        cfg.seed,
        summary.cases,
        summary.elapsed.as_secs_f64(),
        summary.stopped
    );
    let outcomes: Vec<(&str, u64, bool)> = RpcOutcome::ALL
        .iter()
        .map(|k| (k.name(), summary.count(*k), k.is_finding()))
        .collect();
    print_tables(&outcomes, "report", &summary.findings, summary.duplicates);
    if summary.failed() {
        std::process::exit(1);
    }
    Ok(())
}

/// Moves the bar (cases done with --count, else seconds gone) and counts the findings.
fn show<K>(bar: &ProgressBar, by_count: bool, s: &Summary<K>) {
    bar.set_position(if by_count {
        s.cases
    } else {
        s.elapsed.as_secs()
    });
    bar.set_message(format!("{} cases, {} findings", s.cases, s.findings.len()));
}

/// `--interface`, `default` when not given.
fn interface(name: Option<&str>, default: KnownInterface) -> Result<KnownInterface> {
    match name {
        None => Ok(default),
        Some("epm") => Ok(KnownInterface::Epm),
        Some("rfr") => Ok(KnownInterface::Rfr),
        Some(other) => anyhow::bail!("--interface {other:?}: epm or rfr"),
    }
}

/// The dcerpc:// fuzzer's configuration (rpch:// takes it too) from the arguments.
fn rpc_config(
    args: FuzzArgs,
    addr: std::net::SocketAddr,
    interface: KnownInterface,
    duration: Duration,
) -> RpcFuzzConfig {
    RpcFuzzConfig {
        addr,
        interface,
        duration,
        count: args.count,
        seed: args.seed,
        hang_timeout: Duration::from_millis(args.hang_timeout),
        silence: Duration::from_millis(args.silence),
        first_case: args.case,
        watch_pid: args.watch_pid,
        out: args.out,
        credentials: RpcCredentials {
            user: args.user,
            password: args.password,
            domain: args.domain,
        },
    }
}

fn run_rpch(args: FuzzArgs, duration: Duration) -> Result<()> {
    let addr = harness::tools::netfuzz_rpch::parse_target(&args.target, args.allow_remote)
        .map_err(anyhow::Error::msg)?;
    let interface = interface(args.interface.as_deref(), KnownInterface::Rfr)?;
    let scheme: HttpScheme = args
        .rpch_auth
        .parse()
        .map_err(|e| anyhow::anyhow!("--rpch-auth {e}"))?;
    let route = RpchRoute {
        // The address as a Host header writes it ([::1] with its brackets).
        host: match addr.ip() {
            std::net::IpAddr::V4(ip) => ip.to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        },
        target: args.rpch_server.clone(),
        basic: scheme == HttpScheme::Basic,
    };
    let auth = args.rpch_auth.clone();
    let cfg = RpchFuzzConfig {
        proxy: route.proxy(addr, &args.user, &args.password, &args.domain),
        run: rpc_config(args, addr, interface, duration),
    };
    let bar = progress_bar(cfg.run.count, duration);
    let by_count = cfg.run.count.is_some();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let summary = runtime.block_on(fuzz_rpch(&cfg, &mut |s| show(&bar, by_count, &s.run)))?;
    bar.finish_and_clear();
    let coverage = &summary;
    let summary = &summary.run;
    println!(
        "harness fuzz: rpch://{} ({:?}, {}, {} auth) seed {}, {} cases in {:.1} s ({:.1} cases/s, {})",
        cfg.proxy.addr,
        cfg.run.interface,
        cfg.proxy.target,
        auth,
        cfg.run.seed,
        summary.cases,
        summary.elapsed.as_secs_f64(),
        summary.cases as f64 / summary.elapsed.as_secs_f64().max(1e-3),
        summary.stopped
    );
    let outcomes: Vec<(&str, u64, bool)> = RpchOutcome::ALL
        .iter()
        .map(|k| (k.name(), summary.count(*k), k.is_finding()))
        .collect();
    let rows: Vec<Vec<String>> = coverage
        .by_mutation
        .iter()
        .map(|(k, n)| vec![k.clone(), n.to_string()])
        .collect();
    print!("{}", table::render(&["mutation", "cases"], &rows));
    let statuses: Vec<String> = coverage
        .statuses
        .iter()
        .map(|(code, n)| format!("{code}: {n}"))
        .collect();
    println!(
        "HTTP statuses of the cases' channels: {}",
        statuses.join(", ")
    );
    print_tables(&outcomes, "report", &summary.findings, summary.duplicates);
    if summary.failed() {
        std::process::exit(1);
    }
    Ok(())
}

/// The outcome table (name, cases, whether a finding) and the findings' table (kind,
/// case, file, detail), then the count of findings saved and not saved.
fn print_tables<K: std::fmt::Display>(
    outcomes: &[(&str, u64, bool)],
    file: &str,
    findings: &[Finding<K>],
    duplicates: u64,
) {
    let rows: Vec<Vec<String>> = outcomes
        .iter()
        .map(|(name, n, finding)| {
            let kind = if *finding { "finding" } else { "-" };
            vec![name.to_string(), n.to_string(), kind.to_string()]
        })
        .collect();
    print!("{}", table::render(&["outcome", "cases", "kind"], &rows));
    if !findings.is_empty() {
        let rows: Vec<Vec<String>> = findings
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
            table::render(&["finding", "case", file, "detail"], &rows)
        );
    }
    println!(
        "{} findings saved, {} duplicates not saved",
        findings.len(),
        duplicates
    );
}
