//! `harness fuzz --target dcerpc://HOST:PORT`: mutated DCE/RPC sessions against a live
//! server over real sockets. Each case ([`RpcCase`]) is a session of the project's client
//! with one PDU mutated, on a fresh connection; after it a probe association (an
//! unauthenticated bind and the interface's valid calls) must still be served.

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use harness_core::dcerpc::known_calls::KnownInterface;
use harness_core::netfuzz::dcerpc::{report, Heard, RpcCase, RpcCredentials, RpcSession};

use super::netfuzz::{process_alive, Finding, FuzzError, Outcome, Summary};

/// Connections refused in a row after which the run stops.
const MAX_REFUSED_IN_A_ROW: usize = 3;

/// How one case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RpcOutcome {
    /// The server answered the mutated PDU (an ack, nak, fault or response).
    Answered,
    /// It said nothing within the silence wait after the mutated PDU (waiting for
    /// more octets, or a PDU that has no answer).
    Silent,
    /// It closed the connection after the mutated PDU.
    Closed,
    /// Its answer frames as PDUs but is not one the client asked for.
    Unexpected,
    /// A reset before the mutated PDU was sent.
    Reset,
    /// No answer to an unmutated PDU within the hang timeout.
    Hang,
    /// Octets that do not frame as DCE/RPC PDUs.
    Malformed,
    /// The probe association after the case was not served.
    Dead,
    /// The watched process is gone.
    Crash,
    /// No connection.
    Refused,
}

impl RpcOutcome {
    pub const ALL: [RpcOutcome; 10] = [
        RpcOutcome::Answered,
        RpcOutcome::Silent,
        RpcOutcome::Closed,
        RpcOutcome::Unexpected,
        RpcOutcome::Reset,
        RpcOutcome::Hang,
        RpcOutcome::Malformed,
        RpcOutcome::Dead,
        RpcOutcome::Crash,
        RpcOutcome::Refused,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RpcOutcome::Answered => "answered",
            RpcOutcome::Silent => "silent",
            RpcOutcome::Closed => "closed",
            RpcOutcome::Unexpected => "unexpected",
            RpcOutcome::Reset => "reset",
            RpcOutcome::Hang => "hang",
            RpcOutcome::Malformed => "malformed",
            RpcOutcome::Dead => "dead",
            RpcOutcome::Crash => "crash",
            RpcOutcome::Refused => "refused",
        }
    }

    pub fn is_finding(self) -> bool {
        !matches!(
            self,
            RpcOutcome::Answered | RpcOutcome::Silent | RpcOutcome::Closed | RpcOutcome::Unexpected
        )
    }
}

impl std::fmt::Display for RpcOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone)]
pub struct RpcFuzzConfig {
    pub addr: SocketAddr,
    /// The interface bound and called: the endpoint mapper or RFR.
    pub interface: KnownInterface,
    pub duration: Duration,
    pub count: Option<u64>,
    pub seed: u64,
    /// Silence while an unmutated PDU's answer is due that counts as a hang.
    pub hang_timeout: Duration,
    /// How long to wait for an answer to the mutated PDU.
    pub silence: Duration,
    /// The number of the first case played (`count` cases from it).
    pub first_case: u64,
    pub watch_pid: Option<u32>,
    pub out: PathBuf,
    pub credentials: RpcCredentials,
}

/// A saved finding: its report under `--out`.
pub type RpcFinding = Finding<RpcOutcome>;

pub type RpcSummary = Summary<RpcOutcome>;

impl Outcome for RpcOutcome {
    fn is_finding(self) -> bool {
        RpcOutcome::is_finding(self)
    }
}

/// `dcerpc://HOST[:PORT]` (port 135 by default); loopback only unless `allow_remote`.
pub fn parse_target(url: &str, allow_remote: bool) -> Result<SocketAddr, String> {
    let rest = url
        .strip_prefix("dcerpc://")
        .ok_or_else(|| format!("target {url:?} must look like dcerpc://HOST:PORT"))?
        .trim_end_matches('/');
    let with_port = match rest.rsplit_once(':') {
        Some((_, p)) if p.parse::<u16>().is_ok() => rest.to_string(),
        _ => format!("{rest}:135"),
    };
    let addr = with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("cannot resolve {with_port:?}"))?;
    if !allow_remote && !addr.ip().is_loopback() {
        return Err(format!(
            "{addr} is not a loopback address; pass --allow-remote to fuzz it"
        ));
    }
    Ok(addr)
}

fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

/// Plays one session on a fresh connection. A session without a mutated PDU that ends
/// with every PDU answered is `Answered` with detail "served".
fn run_session(
    addr: SocketAddr,
    session: &mut RpcSession,
    hang: Duration,
    silence: Duration,
) -> (RpcOutcome, String) {
    let mut tcp = match TcpStream::connect_timeout(&addr, hang) {
        Ok(tcp) => tcp,
        Err(e) => return (RpcOutcome::Refused, e.to_string()),
    };
    let _ = tcp.set_nodelay(true);
    let mut mutated = false;
    let mut buf = vec![0u8; 64 * 1024];
    while let Some(out) = session.next_pdu() {
        mutated |= out.mutated;
        if let Err(e) = tcp.write_all(&out.bytes) {
            return match mutated {
                true => (RpcOutcome::Closed, format!("write: {e}")),
                false => (RpcOutcome::Reset, format!("write: {e}")),
            };
        }
        if !out.expects_reply && !out.mutated {
            continue;
        }
        let deadline = Instant::now() + if out.mutated { silence } else { hang };
        loop {
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            if tcp.set_read_timeout(Some(wait)).is_err() {
                return (RpcOutcome::Reset, "socket unusable".into());
            }
            match tcp.read(&mut buf) {
                Ok(0) if mutated => return (RpcOutcome::Closed, "closed".into()),
                Ok(0) => return (RpcOutcome::Closed, "closed before the mutated PDU".into()),
                Ok(n) => match session.heard(&buf[..n]) {
                    Heard::More => {}
                    Heard::Answered if out.mutated => {
                        return (RpcOutcome::Answered, "answered".into())
                    }
                    Heard::Answered => break,
                    Heard::Malformed(d) => return (RpcOutcome::Malformed, d),
                    Heard::Refused(d) => return (RpcOutcome::Unexpected, d),
                },
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if Instant::now() < deadline {
                        continue;
                    }
                    return match out.mutated {
                        true => (RpcOutcome::Silent, "no answer".into()),
                        false => (RpcOutcome::Hang, format!("no answer in {hang:?}")),
                    };
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if is_reset(&e) && mutated => return (RpcOutcome::Closed, e.to_string()),
                Err(e) => return (RpcOutcome::Reset, e.to_string()),
            }
        }
    }
    (RpcOutcome::Answered, "served".into())
}

/// Runs cases until the time or the count is up, a watched process dies, or the server
/// refuses connections three times in a row.
pub fn fuzz_dcerpc(
    cfg: &RpcFuzzConfig,
    progress: &mut dyn FnMut(&RpcSummary),
) -> Result<RpcSummary, FuzzError> {
    let start = Instant::now();
    let mut summary = RpcSummary::default();
    let mut saved: BTreeSet<(RpcOutcome, &'static str, usize)> = BTreeSet::new();
    let mut refused_in_a_row = 0;
    // The server must serve a probe before the run starts.
    let mut probe = RpcSession::new(cfg.interface, None, &cfg.credentials)
        .map_err(|e| unreachable(cfg.addr, e.to_string()))?;
    let (kind, detail) = run_session(cfg.addr, &mut probe, cfg.hang_timeout, cfg.silence);
    if detail != "served" {
        return Err(unreachable(cfg.addr, format!("probe: {kind}: {detail}")));
    }
    let mut number = cfg.first_case;
    summary.stopped = loop {
        if cfg.count.is_some_and(|n| summary.cases >= n) {
            break format!("{} cases", summary.cases);
        }
        if start.elapsed() >= cfg.duration {
            break "time is up".into();
        }
        let case = RpcCase::plan(cfg.seed, number, cfg.interface);
        number += 1;
        let Ok(mut session) = RpcSession::for_case(&case, &cfg.credentials) else {
            continue;
        };
        let (mut kind, mut detail) =
            run_session(cfg.addr, &mut session, cfg.hang_timeout, cfg.silence);
        if !kind.is_finding() {
            let mut probe = RpcSession::new(cfg.interface, None, &cfg.credentials)
                .map_err(|e| unreachable(cfg.addr, e.to_string()))?;
            let (pk, pd) = run_session(cfg.addr, &mut probe, cfg.hang_timeout, cfg.silence);
            if pd != "served" {
                (kind, detail) = (
                    RpcOutcome::Dead,
                    format!("probe after the case: {pk}: {pd}"),
                );
            }
        }
        if cfg.watch_pid.is_some_and(|pid| !process_alive(pid)) {
            kind = RpcOutcome::Crash;
            detail = "the watched process is gone".into();
        }
        refused_in_a_row = if kind == RpcOutcome::Refused {
            refused_in_a_row + 1
        } else {
            0
        };
        summary.cases += 1;
        *summary.by_kind.entry(kind).or_default() += 1;
        if kind.is_finding() {
            if saved.insert((kind, case.mutation.name(), case.target_pdu)) {
                let path = cfg.out.join(format!(
                    "dcerpc-{kind}-{}-pdu{}-case{}.txt",
                    case.mutation.name(),
                    case.target_pdu,
                    case.number
                ));
                let text = report(cfg.seed, &case, kind.name(), &detail, &session.log);
                std::fs::create_dir_all(&cfg.out)
                    .and_then(|()| std::fs::write(&path, text))
                    .map_err(|source| FuzzError::Output {
                        path: path.clone(),
                        source,
                    })?;
                summary.findings.push(RpcFinding {
                    kind,
                    case: case.number,
                    detail,
                    path,
                });
            } else {
                summary.duplicates += 1;
            }
        }
        summary.elapsed = start.elapsed();
        progress(&summary);
        if kind == RpcOutcome::Crash {
            break "the watched process is gone".into();
        }
        if refused_in_a_row >= MAX_REFUSED_IN_A_ROW {
            break "connections refused".into();
        }
    };
    summary.elapsed = start.elapsed();
    Ok(summary)
}

fn unreachable(addr: SocketAddr, detail: String) -> FuzzError {
    FuzzError::Unreachable { addr, detail }
}
