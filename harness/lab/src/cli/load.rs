//! `harness load`: the closed-loop load generator of `harness::tools::load` with a progress bar
//! and a closing table.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use harness::tools::kdc_load::KdcLoad;
use harness::tools::load::{self, ErrorKind, LoadConfig, LoadProgress, SessionKind, UserSpec};
use harness::tools::play::{parse_host_port, Target};
use harness::tools::rpc_load::{RpcCall, RpchRoute};
use harness_core::dcerpc::client::AuthLevel;
use harness_core::dcerpc::epm::EPM_PORT;
use harness_core::http_auth::HttpScheme;
use indicatif::{ProgressBar, ProgressStyle};

use super::table;

#[derive(clap::Args)]
#[command(after_help = "\
Users: client i logs in as the (i mod count)-th user given. POP3 locks a user's maildrop for \
the whole session, so a POP3 run needs one distinct user per client: generate them with \
--users-from-pattern 'u{i}:secret' (u0, u1, ... one per client) and serve them, e.g. \
`harness serve --user u0:secret --user u1:secret ...`.

Connection storms (no users needed, either protocol): --session connect-close (connect and close at once, the greeting unread), greet-close (read the greeting, then close) or connect-reset (close with an RST, SO_LINGER 0). The table then counts connections.

Example:
  harness load --target imap://127.0.0.1:1143 --clients 16 --seconds 10 --user alice:secret
  harness load --target pop3://127.0.0.1:1110 --clients 16 --seconds 10 \\
               --session login-stat-retr-quit --users-from-pattern 'u{i}:secret'
  harness load --target imap://127.0.0.1:1143 --clients 64 --seconds 30 --session connect-close
  harness load --target dcerpc://127.0.0.1:135 --clients 16 --seconds 10 --user alice:secret
  harness load --target dcerpc://127.0.0.1:135 --session rpc-calls --user alice:secret

RPC over HTTP v2 (rpch://HOST[:PORT], an RPC proxy, 80 by default): the same sessions through \
the proxy, each a virtual connection (both channels, --rpch-auth ntlm or basic) to \
--rpch-server (MAIL:6004), calling NspiBind and NspiUnbind (--rpc-call).

DCE/RPC (dcerpc://HOST[:PORT], an endpoint mapper's port, 135 by default): rpc-bind-call-close \
(connect, NTLM bind with auth3, one call, close), rpc-calls (one association per client, \
one call per session) or rpc-hold (bind, one call, then hold the association idle until the \
run ends: memory per idle association). The call is ept_map of an interface nobody registers: every endpoint \
mapper serves it, so the same client measures any server (the lab's --epm, Samba, Windows).

Kerberos (krb5://HOST[:PORT], a KDC, 88 by default; UDP as MIT's client sends): kdc-as (kinit: AS-REQ, KRB-ERROR 25, AS-REQ with PA-ENC-TIMESTAMP, AS-REP) or kdc-tgs (each client logs in once, then one TGS exchange for --krb-service per session), in --krb-realm.
  harness load --target krb5://127.0.0.1:18888 --clients 16 --session kdc-tgs --user alice:secret

Exit status: 0 when every session succeeded, 1 when any failed.")]
pub struct LoadArgs {
    /// imap://HOST:PORT, pop3://HOST:PORT, dcerpc://HOST:PORT or rpch://HOST:PORT
    /// (loopback only unless --allow-remote).
    #[arg(long)]
    target: String,
    /// Concurrent clients, each running whole sessions back to back.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Stop starting sessions after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Stop after this many sessions in all (whichever of --seconds and --sessions comes
    /// first).
    #[arg(long)]
    sessions: Option<u64>,
    /// login-select-fetch-logout (IMAP) or login-stat-retr-quit (POP3); default: the one
    /// for the target's protocol. Storms: connect-close, greet-close, connect-reset.
    #[arg(long)]
    session: Option<String>,
    /// A user to log in as: NAME:PASSWORD (repeatable).
    #[arg(long = "user", value_name = "NAME:PASSWORD")]
    users: Vec<String>,
    /// One user per client from a pattern where {i} is the client's number from 0, e.g.
    /// 'u{i}:secret'.
    #[arg(long, value_name = "PATTERN")]
    users_from_pattern: Option<String>,
    /// Bound on each operation (connect, and the silence while the greeting or a reply to
    /// a command is due).
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Allow a target outside loopback.
    #[arg(long)]
    allow_remote: bool,
    /// DCE/RPC auth level: 1 (none: no security), 2 (connect), 5 (packet integrity) or
    /// 6 (packet privacy: sealed), NTLM as the session's user.
    #[arg(long, default_value_t = 6)]
    rpc_level: u8,
    /// NTLM domain the DCE/RPC client names.
    #[arg(long, default_value = "")]
    rpc_domain: String,
    /// What each DCE/RPC session calls: ept-map (an unregistered interface, any endpoint
    /// mapper) or nspi (NspiBind then NspiUnbind, an Exchange endpoint); default ept-map
    /// for dcerpc://, nspi for rpch://.
    #[arg(long)]
    rpc_call: Option<String>,
    /// rpch://: the RPC server and port the proxy is asked for.
    #[arg(long, default_value = "MAIL:6004")]
    rpch_server: String,
    /// rpch://: HTTP authentication on the channels, ntlm or basic.
    #[arg(long, default_value = "ntlm")]
    rpch_auth: String,
    /// krb5://: the realm.
    #[arg(long, default_value = "EXAMPLE.TEST")]
    krb_realm: String,
    /// krb5://: the service kdc-tgs asks tickets for.
    #[arg(long, default_value = "HTTP/web.example.test")]
    krb_service: String,
}

fn millis(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| {
        format!("{:.2} ms", d.as_secs_f64() * 1000.0)
    })
}

pub fn run(args: LoadArgs) -> Result<()> {
    let rpc_target = [("dcerpc://", false), ("rpch://", true)]
        .into_iter()
        .find_map(|(scheme, http)| args.target.strip_prefix(scheme).map(|rest| (rest, http)));
    if let Some((rest, http)) = rpc_target {
        let default_port = if http { 80 } else { EPM_PORT };
        let addr = parse_host_port(rest, default_port, args.allow_remote)?;
        let session = match &args.session {
            Some(name) => SessionKind::by_name(name)
                .filter(|s| s.is_rpc())
                .with_context(|| {
                    format!(
                        "a {} target runs rpc-bind-call-close, rpc-calls or rpc-hold, not {name:?}",
                        if http { "rpch://" } else { "dcerpc://" }
                    )
                })?,
            None => SessionKind::RpcBindCallClose,
        };
        let level = match args.rpc_level {
            1 | 2 | 5 | 6 => AuthLevel(args.rpc_level),
            n => bail!("--rpc-level takes 1, 2, 5 or 6, got {n}"),
        };
        let which = args
            .rpc_call
            .as_deref()
            .unwrap_or(if http { "nspi" } else { "ept-map" });
        let mut call = match which {
            "ept-map" => RpcCall::ept_map_unregistered(level),
            "nspi" => RpcCall::nspi_bind_unbind(level),
            other => bail!("--rpc-call takes ept-map or nspi, got {other:?}"),
        };
        call.domain = args.rpc_domain.clone();
        if http {
            let scheme: HttpScheme = args
                .rpch_auth
                .parse()
                .map_err(|e| anyhow::anyhow!("--rpch-auth {e}"))?;
            let basic = scheme == HttpScheme::Basic;
            call.via = Some(RpchRoute {
                // The address as a Host header writes it ([::1] with its brackets).
                host: match addr.ip() {
                    std::net::IpAddr::V4(ip) => ip.to_string(),
                    std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                },
                target: args.rpch_server.clone(),
                basic,
            });
        }
        let label = format!(
            "{} (auth level {}) {which}",
            if http { "RPC over HTTP" } else { "DCE/RPC" },
            args.rpc_level
        );
        return run_load(&args, addr, session, &label, Load::Rpc(call));
    }
    if let Some(rest) = args.target.strip_prefix("krb5://") {
        let addr = parse_host_port(rest, 88, args.allow_remote)?;
        let session = match &args.session {
            Some(name) => SessionKind::by_name(name)
                .filter(|s| s.is_kdc())
                .with_context(|| {
                    format!("a krb5:// target runs kdc-as or kdc-tgs, not {name:?}")
                })?,
            None => SessionKind::KdcAs,
        };
        let kdc = KdcLoad {
            realm: args.krb_realm.clone(),
            service: args.krb_service.clone(),
        };
        let label = format!("Kerberos ({})", args.krb_realm);
        return run_load(&args, addr, session, &label, Load::Kdc(kdc));
    }
    let target = Target::parse(&args.target, args.allow_remote)?;
    let protocol = target.protocol;
    let session = match &args.session {
        Some(name) => SessionKind::by_name(name).with_context(|| {
            format!(
                "unknown session {name:?}; known: {}",
                load::SESSION_NAMES.join(", ")
            )
        })?,
        None => SessionKind::for_protocol(protocol),
    };
    if session.is_rpc() {
        bail!("session {} needs a dcerpc:// target", session.name());
    }
    if let Some(speaks) = session.protocol().filter(|p| *p != protocol) {
        bail!(
            "session {} is {}, the target speaks {}",
            session.name(),
            speaks,
            protocol
        );
    }
    run_load(
        &args,
        target.addr,
        session,
        &protocol.to_string(),
        Load::Mail,
    )
}

/// What a load's sessions need besides the users.
enum Load {
    Mail,
    Rpc(RpcCall),
    Kdc(KdcLoad),
}

/// Runs the load with a progress bar and prints the closing tables.
fn run_load(
    args: &LoadArgs,
    addr: std::net::SocketAddr,
    session: SessionKind,
    label: &str,
    load: Load,
) -> Result<()> {
    let (rpc, kdc) = match load {
        Load::Mail => (None, None),
        Load::Rpc(call) => (Some(call), None),
        Load::Kdc(kdc) => (None, Some(kdc)),
    };
    let mut users = Vec::new();
    for u in &args.users {
        users.push(
            UserSpec::parse(u).with_context(|| format!("--user takes NAME:PASSWORD, got {u:?}"))?,
        );
    }
    if let Some(p) = &args.users_from_pattern {
        users.extend(UserSpec::from_pattern(p, args.clients).with_context(|| {
            format!("--users-from-pattern needs NAME:PASSWORD with {{i}} in it, got {p:?}")
        })?);
    }
    if users.is_empty() && !session.is_storm() {
        bail!("give the users to log in as: --user NAME:PASSWORD or --users-from-pattern");
    }
    let duration = Duration::try_from_secs_f64(args.seconds)
        .context("--seconds must be a non-negative number")?;
    let op_timeout = Duration::try_from_secs_f64(args.timeout)
        .context("--timeout must be a non-negative number")?;
    let config = LoadConfig {
        addr,
        session,
        clients: args.clients,
        users,
        duration,
        max_sessions: args.sessions,
        op_timeout,
        rpc,
        kdc,
    };
    config.validate()?;

    println!(
        "harness load: {} {} to {}, {} client(s), {} s{}",
        label,
        session.name(),
        addr,
        config.clients,
        args.seconds,
        args.sessions
            .map_or(String::new(), |n| format!(" or {n} sessions"))
    );
    let noun = if session.is_storm() {
        "connections"
    } else {
        "sessions"
    };
    let progress = Arc::new(LoadProgress::default());
    let bar = ProgressBar::new(duration.as_millis().max(1) as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let report = runtime.block_on(async {
        let started = tokio::time::Instant::now();
        let work = tokio::spawn(load::run(config, progress.clone()));
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => break done,
                _ = tick.tick() => {
                    let ok = progress.succeeded.load(Ordering::Relaxed);
                    let failed = progress.failed.load(Ordering::Relaxed);
                    let secs = started.elapsed().as_secs_f64().max(0.001);
                    bar.set_position(started.elapsed().as_millis().min(u64::MAX as u128) as u64);
                    bar.set_message(format!(
                        "{ok} {noun} ({:.0}/s), {failed} errors",
                        ok as f64 / secs
                    ));
                }
            }
        }
    });
    bar.finish_and_clear();
    let report = report.context("the load task failed")??;

    let row = vec![
        report.succeeded.to_string(),
        report.failed().to_string(),
        format!("{:.2}", report.elapsed.as_secs_f64()),
        format!("{:.1}", report.sessions_per_sec()),
        millis(report.percentile(50.0)),
        millis(report.percentile(99.0)),
        millis(report.max()),
    ];
    let header: &[&str] = if session.is_storm() {
        &[
            "connections",
            "failed",
            "seconds",
            "conn/s",
            "p50",
            "p99",
            "max",
        ]
    } else {
        &[
            "sessions",
            "failed",
            "seconds",
            "sessions/s",
            "p50",
            "p99",
            "max",
        ]
    };
    print!("{}", table::render(header, &[row]));
    let rows: Vec<Vec<String>> = ErrorKind::ALL
        .iter()
        .map(|k| {
            let (n, example) = report.errors.get(k).cloned().unwrap_or_default();
            vec![k.name().to_string(), n.to_string(), example]
        })
        .collect();
    println!();
    print!(
        "{}",
        table::render(&["error kind", "count", "first example"], &rows)
    );
    if report.failed() > 0 {
        std::process::exit(1);
    }
    Ok(())
}
