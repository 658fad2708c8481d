//! `harness fuzz --target rpch://HOST:PORT`: virtual connections with one thing wrong
//! (at the RTS/HTTP layer or in the DCE/RPC session inside) against a live RPC over HTTP
//! v2 proxy, over real sockets. The plans and their expected outcomes are
//! [`harness_core::netfuzz::rpch`]'s; this plays them: each channel an HTTP/1.1
//! connection authenticated as [`RpcConnection::connect_http`] does, a reader task per
//! channel, every wait bounded. After each case a clean virtual connection (the canary:
//! both channels, an NTLM bind, one call) must still work.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use harness_core::dcerpc::client::AuthLevel;
use harness_core::netfuzz::dcerpc::Heard;
use harness_core::netfuzz::rpch::{
    log_octets, report, ChannelRequest, ChannelsPlan, Expect, Inject, OutEvent, RpchCase,
    RpchConversation, Side, Then, IN_LIFETIME,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};

use super::dcerpc_client::{
    ntlm_security, open_channel, read_response, HttpProxy, RpcBind, RpcConnection, RpcError,
};
use super::netfuzz::{process_alive, Finding, FuzzError, Outcome, Summary};
use super::netfuzz_dcerpc::RpcFuzzConfig;

/// Canaries failed in a row (no connection at all) after which the run stops.
const MAX_UNREACHABLE_IN_A_ROW: usize = 3;

/// How one case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RpchOutcome {
    /// The virtual connection opened and its session was served as planned (the
    /// second channel refused, the Ping answered, the wrong ack dropped).
    Served,
    /// The mutated DCE/RPC PDU was answered.
    Answered,
    /// The mutated DCE/RPC PDU met silence.
    Silent,
    /// The virtual connection closed after the mutated DCE/RPC PDU.
    Closed,
    /// The answer to the mutated DCE/RPC PDU frames but the client refuses it.
    Unexpected,
    /// The wrong channel was answered with the planned HTTP status (or closed where
    /// that is allowed).
    Refused,
    /// The proxy held a channel whose other half never came, as planned.
    Held,
    /// The virtual connection ended after the wrong RTS PDU or close, as planned.
    Ended,
    /// The proxy did otherwise than the plan says (another status, a pairing that
    /// should not happen, a close with no reason).
    Wrong,
    /// No answer within the hang timeout where one is due.
    Hang,
    /// OUT channel octets that frame as no PDU, an RTS PDU no proxy sends, or no HTTP.
    Malformed,
    /// The canary after the case did not work.
    Dead,
    /// The watched process is gone.
    Crash,
    /// No connection.
    Unreachable,
}

impl RpchOutcome {
    pub const ALL: [RpchOutcome; 14] = [
        RpchOutcome::Served,
        RpchOutcome::Answered,
        RpchOutcome::Silent,
        RpchOutcome::Closed,
        RpchOutcome::Unexpected,
        RpchOutcome::Refused,
        RpchOutcome::Held,
        RpchOutcome::Ended,
        RpchOutcome::Wrong,
        RpchOutcome::Hang,
        RpchOutcome::Malformed,
        RpchOutcome::Dead,
        RpchOutcome::Crash,
        RpchOutcome::Unreachable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RpchOutcome::Served => "served",
            RpchOutcome::Answered => "answered",
            RpchOutcome::Silent => "silent",
            RpchOutcome::Closed => "closed",
            RpchOutcome::Unexpected => "unexpected",
            RpchOutcome::Refused => "refused",
            RpchOutcome::Held => "held",
            RpchOutcome::Ended => "ended",
            RpchOutcome::Wrong => "wrong",
            RpchOutcome::Hang => "hang",
            RpchOutcome::Malformed => "malformed",
            RpchOutcome::Dead => "dead",
            RpchOutcome::Crash => "crash",
            RpchOutcome::Unreachable => "unreachable",
        }
    }

    pub fn is_finding(self) -> bool {
        matches!(
            self,
            RpchOutcome::Wrong
                | RpchOutcome::Hang
                | RpchOutcome::Malformed
                | RpchOutcome::Dead
                | RpchOutcome::Crash
                | RpchOutcome::Unreachable
        )
    }
}

impl std::fmt::Display for RpchOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone)]
pub struct RpchFuzzConfig {
    /// The proxy, the RPC server it is asked for, the channels' HTTP authentication.
    pub proxy: HttpProxy,
    /// The rest as the `dcerpc://` fuzzer takes it (its `addr` is the proxy's): the
    /// interface the sessions and the canary bind and call, the bounds (`silence` also
    /// how long a held channel must stay unanswered), seed, cases, account.
    pub run: RpcFuzzConfig,
}

pub type RpchFinding = Finding<RpchOutcome>;

impl Outcome for RpchOutcome {
    fn is_finding(self) -> bool {
        RpchOutcome::is_finding(self)
    }
}

/// The run, and what its cases covered.
#[derive(Debug, Clone, Default)]
pub struct RpchSummary {
    pub run: Summary<RpchOutcome>,
    /// Cases by mutation kind (`RtsMutation::KINDS`, `rpc-*`).
    pub by_mutation: BTreeMap<String, u64>,
    /// HTTP statuses the proxy answered the case's channels with (the canary's aside).
    pub statuses: BTreeMap<u16, u64>,
    /// Refused cases by mutation kind and how: `truncate 400`, `truncate close`.
    pub refusals: BTreeMap<String, u64>,
}

/// Which connection an event came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chan {
    Out,
    In,
    /// The second channel of [`Inject::SecondChannel`].
    Second,
}

#[derive(Debug)]
enum ChanEvent {
    Status(u16, String),
    Data(Vec<u8>),
    /// The connection ended: cleanly (None), or how.
    End(Option<String>),
    /// Not an HTTP response.
    NotHttp(String),
}

/// Reads responses (and, after an OUT channel's 200, its body) off one connection.
fn spawn_reader(
    chan: Chan,
    mut rd: OwnedReadHalf,
    tx: mpsc::UnboundedSender<(Chan, ChanEvent)>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        // The task is aborted when its case ends; the bound is only a backstop.
        let far = Instant::now() + Duration::from_secs(3600);
        loop {
            let (status, _, rest) = match read_response(&mut rd, far, Duration::ZERO).await {
                Ok(r) => r,
                Err(RpcError::Closed) => {
                    let _ = tx.send((chan, ChanEvent::End(None)));
                    return;
                }
                Err(RpcError::Http(e)) => {
                    let _ = tx.send((chan, ChanEvent::NotHttp(e)));
                    return;
                }
                Err(e) => {
                    let _ = tx.send((chan, ChanEvent::End(Some(e.to_string()))));
                    return;
                }
            };
            let streams = status.code == 200 && chan == Chan::Out;
            let _ = tx.send((chan, ChanEvent::Status(status.code, status.line)));
            if !streams {
                continue;
            }
            if !rest.is_empty() {
                let _ = tx.send((chan, ChanEvent::Data(rest)));
            }
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) => {
                        let _ = tx.send((chan, ChanEvent::End(None)));
                        return;
                    }
                    Ok(n) => {
                        let _ = tx.send((chan, ChanEvent::Data(buf[..n].to_vec())));
                    }
                    Err(e) => {
                        let _ = tx.send((chan, ChanEvent::End(Some(e.to_string()))));
                        return;
                    }
                }
            }
        }
    })
}

/// A case's verdict.
type Verdict = (RpchOutcome, String);

/// One case's connections, what came back, and the log.
struct Play<'a> {
    cfg: &'a RpchFuzzConfig,
    path: String,
    conv: RpchConversation,
    events: mpsc::UnboundedReceiver<(Chan, ChanEvent)>,
    tx: mpsc::UnboundedSender<(Chan, ChanEvent)>,
    readers: Vec<(Chan, JoinHandle<()>)>,
    out_w: Option<OwnedWriteHalf>,
    in_w: Option<OwnedWriteHalf>,
    second_w: Option<OwnedWriteHalf>,
    statuses: Vec<u16>,
    log: Vec<String>,
    /// CONN/C2 came; a Ping came; the OUT channel ended; the IN channel was answered;
    /// the session's PDUs answered.
    opened: bool,
    answers: usize,
    pinged: bool,
    out_ended: bool,
    in_answered: bool,
    /// The channel the client closed: its events are ignored.
    closed: Option<Chan>,
}

/// What a wait for events ended with.
enum Waited {
    /// `done` said so.
    Done,
    /// The deadline passed.
    Timeout,
    /// A verdict (a finding, or the virtual connection's end where `ends_ok`).
    Verdict(Verdict),
}

impl Drop for Play<'_> {
    fn drop(&mut self) {
        for (_, r) in &self.readers {
            r.abort();
        }
    }
}

impl<'a> Play<'a> {
    fn new(cfg: &'a RpchFuzzConfig, conv: RpchConversation) -> Play<'a> {
        let (tx, events) = mpsc::unbounded_channel();
        Play {
            path: format!("/rpc/rpcproxy.dll?{}", cfg.proxy.target),
            cfg,
            conv,
            events,
            tx,
            readers: Vec::new(),
            out_w: None,
            in_w: None,
            second_w: None,
            statuses: Vec::new(),
            log: Vec::new(),
            opened: false,
            answers: 0,
            pinged: false,
            out_ended: false,
            in_answered: false,
            closed: None,
        }
    }

    /// Opens a channel (its head sent, authenticated), sends the body, half-closes if
    /// planned.
    async fn open(
        &mut self,
        chan: Chan,
        side: Side,
        request: &ChannelRequest,
    ) -> Result<(), Verdict> {
        let method = match side {
            Side::Out => "RPC_OUT_DATA",
            Side::In => "RPC_IN_DATA",
        };
        let deadline = Instant::now() + self.cfg.run.hang_timeout;
        let tcp = open_channel(
            &self.cfg.proxy,
            method,
            &self.path,
            request.length,
            deadline,
        )
        .await
        .map_err(|e| match e {
            RpcError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                (RpchOutcome::Unreachable, format!("{method}: {e}"))
            }
            RpcError::Timeout(_) => (RpchOutcome::Hang, format!("{method}: auth legs: {e}")),
            e => (RpchOutcome::Wrong, format!("{method}: opening: {e}")),
        })?;
        let (rd, mut wr) = tcp.into_split();
        self.readers
            .push((chan, spawn_reader(chan, rd, self.tx.clone())));
        self.log.push(format!(
            "{chan:?}> {method} Content-Length {}{}",
            request.length,
            if request.cut {
                ", half-closed after the body"
            } else {
                ""
            }
        ));
        if !request.body.is_empty() {
            self.log
                .push(log_octets(&format!("{chan:?}>"), &request.body));
            let _ = timeout_at(deadline, wr.write_all(&request.body)).await;
        }
        if request.cut {
            let _ = wr.shutdown().await;
        }
        match chan {
            Chan::Out => self.out_w = Some(wr),
            Chan::In => self.in_w = Some(wr),
            Chan::Second => self.second_w = Some(wr),
        }
        Ok(())
    }

    async fn write_in(&mut self, bytes: &[u8]) -> bool {
        self.log.push(log_octets("In>", bytes));
        let deadline = Instant::now() + self.cfg.run.hang_timeout;
        match self.in_w.as_mut() {
            Some(w) => matches!(timeout_at(deadline, w.write_all(bytes)).await, Ok(Ok(()))),
            None => false,
        }
    }

    /// Takes events until `done` holds or `until` passes. The OUT channel's octets go to
    /// the conversation (its acks out on the IN channel); `rpc` gets each session event.
    /// The virtual connection's end is a verdict: `Ended` where `ends_ok`, else the
    /// caller's `on_end`.
    async fn wait(
        &mut self,
        until: Instant,
        ends_ok: bool,
        mut rpc: impl FnMut(&Heard) -> Option<Verdict>,
        mut done: impl FnMut(&Play<'_>) -> bool,
    ) -> Waited {
        loop {
            if done(self) {
                return Waited::Done;
            }
            let Ok(event) = timeout_at(until, self.events.recv()).await else {
                return Waited::Timeout;
            };
            let Some((chan, event)) = event else {
                return Waited::Timeout;
            };
            if Some(chan) == self.closed {
                continue;
            }
            match event {
                ChanEvent::Status(code, line) => {
                    self.log.push(format!("{chan:?}< {line}"));
                    self.statuses.push(code);
                    match (chan, code) {
                        (Chan::Out, 200) if !self.opened => {}
                        (Chan::Second, _) => {}
                        (Chan::In, _) if ends_ok => {
                            self.in_answered = true;
                            return Waited::Verdict((RpchOutcome::Ended, line));
                        }
                        _ => {
                            return Waited::Verdict((
                                RpchOutcome::Wrong,
                                format!("{chan:?} channel: {line}"),
                            ))
                        }
                    }
                }
                ChanEvent::NotHttp(e) => {
                    return Waited::Verdict((RpchOutcome::Malformed, format!("{chan:?}: {e}")))
                }
                ChanEvent::End(how) => {
                    self.log.push(format!("{chan:?}< end {how:?}"));
                    match chan {
                        Chan::Out => self.out_ended = true,
                        Chan::In => self.in_answered = true,
                        Chan::Second => continue,
                    }
                    if ends_ok {
                        return Waited::Verdict((RpchOutcome::Ended, format!("{chan:?} closed")));
                    }
                    if done(self) {
                        return Waited::Done;
                    }
                    return Waited::Verdict((
                        RpchOutcome::Wrong,
                        format!("the {chan:?} channel closed ({how:?})"),
                    ));
                }
                ChanEvent::Data(bytes) => {
                    self.log.push(log_octets(&format!("{chan:?}<"), &bytes));
                    let mut events = Vec::new();
                    let ack = self.conv.out_data(&bytes, &mut events);
                    if !ack.is_empty() {
                        self.write_in(&ack).await;
                    }
                    for e in events {
                        match e {
                            OutEvent::A3 | OutEvent::InAck => {}
                            OutEvent::Opened if !self.opened => self.opened = true,
                            OutEvent::Opened => {
                                return Waited::Verdict((
                                    RpchOutcome::Malformed,
                                    "a second CONN/C2".into(),
                                ))
                            }
                            OutEvent::Ping => self.pinged = true,
                            OutEvent::Malformed(d) => {
                                return Waited::Verdict((RpchOutcome::Malformed, d))
                            }
                            OutEvent::Rpc(heard) => {
                                if heard == Heard::Answered {
                                    self.answers += 1;
                                }
                                if let Some(v) = rpc(&heard) {
                                    return Waited::Verdict(v);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Plays one case; its verdict, the HTTP statuses and the log.
async fn play_case(
    cfg: &RpchFuzzConfig,
    case: &RpchCase,
    plan: &ChannelsPlan,
) -> (Verdict, Vec<u16>, Vec<String>) {
    let session = match case.session(&cfg.run.credentials) {
        Ok(s) => s,
        Err(e) => return ((RpchOutcome::Wrong, format!("client: {e}")), vec![], vec![]),
    };
    let mut play = Play::new(cfg, RpchConversation::new(session, &case.cookies));
    let verdict = run_plan(&mut play, plan).await;
    // Every RPC PDU the session sent and took, after the channel log.
    let rpc_log: Vec<String> = play
        .conv
        .session
        .log
        .iter()
        .map(|(client, b)| log_octets(if *client { "RPC>" } else { "RPC<" }, b))
        .collect();
    play.log.extend(rpc_log);
    let statuses = std::mem::take(&mut play.statuses);
    let log = std::mem::take(&mut play.log);
    (verdict, statuses, log)
}

async fn run_plan(play: &mut Play<'_>, plan: &ChannelsPlan) -> Verdict {
    let (hang, silence) = (play.cfg.run.hang_timeout, play.cfg.run.silence);
    for (chan, side, request) in [
        (Chan::Out, Side::Out, &plan.out),
        (Chan::In, Side::In, &plan.inbound),
    ] {
        if let Some(r) = request {
            if let Err(v) = play.open(chan, side, r).await {
                return v;
            }
        }
    }
    match plan.expect {
        Expect::Refused {
            side,
            statuses,
            or_close,
        } => return expect_refusal(play, side, statuses, or_close).await,
        Expect::Held => {
            let until = Instant::now() + silence;
            return match play.wait(until, false, |_| None, |p| p.opened).await {
                Waited::Timeout => (RpchOutcome::Held, "held".into()),
                Waited::Done => (
                    RpchOutcome::Wrong,
                    "CONN/C2 for channels that should not pair".into(),
                ),
                Waited::Verdict(v) => v,
            };
        }
        Expect::Open => {}
    }
    let until = Instant::now() + hang;
    match play.wait(until, false, |_| None, |p| p.opened).await {
        Waited::Done => {}
        Waited::Timeout => return (RpchOutcome::Hang, format!("no CONN/C2 in {hang:?}")),
        Waited::Verdict(v) => return v,
    }
    let ends = plan.then == Then::Ends;
    let mut index = 0;
    let mut mutated_sent = false;
    loop {
        if index == plan.at {
            if let Some(inject) = &plan.inject {
                if let Some(v) = inject_now(play, inject).await {
                    return v;
                }
            }
        }
        let Some(out) = play.conv.session.next_pdu() else {
            break;
        };
        index += 1;
        mutated_sent |= out.mutated;
        if !play.write_in(&out.bytes).await {
            if ends {
                break;
            }
            return match mutated_sent {
                true => (RpchOutcome::Closed, "IN channel write failed".into()),
                false => (RpchOutcome::Wrong, "IN channel write failed".into()),
            };
        }
        if !out.expects_reply && !out.mutated {
            continue;
        }
        let until = Instant::now() + if out.mutated { silence } else { hang };
        let mutated = out.mutated;
        let before = play.answers;
        let waited = play
            .wait(
                until,
                ends || mutated_sent,
                |heard| match heard {
                    Heard::More => None,
                    Heard::Answered => mutated.then(|| (RpchOutcome::Answered, "answered".into())),
                    Heard::Malformed(d) => Some((RpchOutcome::Malformed, d.clone())),
                    Heard::Refused(d) if mutated_sent => Some((RpchOutcome::Unexpected, d.clone())),
                    Heard::Refused(d) => Some((RpchOutcome::Wrong, d.clone())),
                },
                |p| p.answers > before,
            )
            .await;
        match waited {
            Waited::Verdict((RpchOutcome::Ended, d)) if !ends => {
                return (RpchOutcome::Closed, d);
            }
            Waited::Verdict(v) => return v,
            Waited::Timeout if mutated => return (RpchOutcome::Silent, "no answer".into()),
            Waited::Timeout if ends => break,
            Waited::Timeout => {
                return (
                    RpchOutcome::Hang,
                    format!("PDU {index}: no answer in {hang:?}"),
                )
            }
            Waited::Done => {}
        }
    }
    finish(play, plan.then).await
}

/// After the session: what the plan's `then` still owes.
async fn finish(play: &mut Play<'_>, then: Then) -> Verdict {
    let hang = play.cfg.run.hang_timeout;
    let until = Instant::now() + hang;
    match then {
        Then::Served | Then::Refused(_) => (RpchOutcome::Served, "served".into()),
        Then::Pong => match play.wait(until, false, |_| None, |p| p.pinged).await {
            Waited::Done => (RpchOutcome::Served, "served, Ping answered".into()),
            Waited::Timeout => (RpchOutcome::Hang, format!("no Ping back in {hang:?}")),
            Waited::Verdict(v) => v,
        },
        Then::Ends => {
            if play.out_ended || play.in_answered {
                return (RpchOutcome::Ended, "ended".into());
            }
            match play.wait(until, true, |_| None, |_| false).await {
                Waited::Verdict(v) => v,
                _ => (
                    RpchOutcome::Hang,
                    format!("the virtual connection did not end in {hang:?}"),
                ),
            }
        }
    }
}

/// Does the planned injection; a verdict if the case is decided by it.
async fn inject_now(play: &mut Play<'_>, inject: &Inject) -> Option<Verdict> {
    let hang = play.cfg.run.hang_timeout;
    match inject {
        Inject::InOctets(bytes) => {
            play.write_in(bytes).await;
        }
        Inject::Ack(wrong) => {
            let ack = play.conv.wrong_ack(*wrong);
            play.write_in(&ack).await;
        }
        Inject::Close(side) => {
            play.log.push(format!("{side:?} closed by the client"));
            // The whole socket: the writer, and the reader that owns the read half. The
            // adapter's own answer to a broken request cannot then pass for the proxy's.
            let chan = match side {
                Side::Out => Chan::Out,
                Side::In => Chan::In,
            };
            for (_, r) in play.readers.iter().filter(|(c, _)| *c == chan) {
                r.abort();
            }
            // What its reader queued before it stopped is no answer of the proxy's.
            play.closed = Some(chan);
            match side {
                Side::Out => play.out_w = None,
                Side::In => play.in_w = None,
            }
            // The other channel tells the end: the OUT body ends; the IN channel gets
            // the proxy's 400 for a virtual connection whose OUT channel closed
            // (ChannelClosed's status).
            let until = Instant::now() + hang;
            return Some(match play.wait(until, true, |_| None, |_| false).await {
                Waited::Verdict((RpchOutcome::Ended, d))
                    if *side == Side::Out && !d.starts_with("HTTP/1.1 400 ") =>
                {
                    (
                        RpchOutcome::Wrong,
                        format!("the IN channel got {d}, not 400"),
                    )
                }
                Waited::Verdict(v) => v,
                _ => (
                    RpchOutcome::Hang,
                    format!("the virtual connection outlived the {side:?} channel by {hang:?}"),
                ),
            });
        }
        Inject::SecondChannel(side, body) => {
            let length = match side {
                Side::Out => body.len() as u64,
                Side::In => u64::from(IN_LIFETIME),
            };
            let request = ChannelRequest {
                length,
                body: body.clone(),
                cut: false,
            };
            if let Err(v) = play.open(Chan::Second, *side, &request).await {
                return Some(v);
            }
            let until = Instant::now() + hang;
            let before = play.statuses.len();
            let waited = play
                .wait(until, false, |_| None, |p| p.statuses.len() > before)
                .await;
            play.second_w = None;
            match waited {
                Waited::Done => {}
                Waited::Timeout => {
                    return Some((
                        RpchOutcome::Hang,
                        format!("the second {side:?} channel not answered in {hang:?}"),
                    ))
                }
                Waited::Verdict(v) => return Some(v),
            }
            let code = play.statuses.last().copied().unwrap_or_default();
            if code != 400 {
                return Some((
                    RpchOutcome::Wrong,
                    format!("the second {side:?} channel got {code}, not 400"),
                ));
            }
        }
    }
    None
}

/// Waits for the refusal of `side`: one of `statuses`, or a close where `or_close`.
async fn expect_refusal(
    play: &mut Play<'_>,
    side: Side,
    statuses: &[u16],
    or_close: bool,
) -> Verdict {
    let chan = match side {
        Side::Out => Chan::Out,
        Side::In => Chan::In,
    };
    let until = Instant::now() + play.cfg.run.hang_timeout;
    loop {
        let Ok(Some((from, event))) = timeout_at(until, play.events.recv()).await else {
            return (
                RpchOutcome::Hang,
                format!(
                    "the {side:?} channel was neither answered nor closed in {:?}",
                    play.cfg.run.hang_timeout
                ),
            );
        };
        match event {
            ChanEvent::Status(code, line) => {
                play.log.push(format!("{from:?}< {line}"));
                play.statuses.push(code);
                if from != chan {
                    // The other channel may open (OUT 200) while this one is refused.
                    if from == Chan::Out && code == 200 {
                        continue;
                    }
                    return (RpchOutcome::Wrong, format!("{from:?} channel: {line}"));
                }
                if statuses.contains(&code) {
                    return (RpchOutcome::Refused, code.to_string());
                }
                return (
                    RpchOutcome::Wrong,
                    format!("{line} where {statuses:?} was due"),
                );
            }
            ChanEvent::Data(bytes) => {
                play.log.push(log_octets(&format!("{from:?}<"), &bytes));
                let mut events = Vec::new();
                play.conv.out_data(&bytes, &mut events);
                for e in events {
                    match e {
                        OutEvent::A3 => {}
                        OutEvent::Malformed(d) => return (RpchOutcome::Malformed, d),
                        other => {
                            return (
                                RpchOutcome::Wrong,
                                format!("{other:?} on the OUT channel while {side:?} is refused"),
                            )
                        }
                    }
                }
            }
            ChanEvent::End(how) => {
                play.log.push(format!("{from:?}< end {how:?}"));
                if from == chan && or_close {
                    return (RpchOutcome::Refused, "close".into());
                }
                return (
                    RpchOutcome::Wrong,
                    format!("the {from:?} channel closed without a status ({how:?})"),
                );
            }
            ChanEvent::NotHttp(e) => return (RpchOutcome::Malformed, format!("{from:?}: {e}")),
        }
    }
}

/// The canary: a clean virtual connection, an NTLM bind at packet privacy and the
/// interface's first valid call.
async fn canary(cfg: &RpchFuzzConfig) -> Result<(), RpcError> {
    let c = &cfg.run.credentials;
    let mut bind = RpcBind::new(cfg.run.interface.syntax()).with_security(ntlm_security(
        &c.user,
        &c.password,
        &c.domain,
        AuthLevel::PKT_PRIVACY,
    ));
    bind.timeout = cfg.run.hang_timeout;
    let mut conn = RpcConnection::connect_http(&cfg.proxy, bind).await?;
    let (opnum, stub) = cfg
        .run
        .interface
        .valid_calls()
        .first()
        .cloned()
        .unwrap_or_default();
    conn.call(opnum, &stub).await.map(|_| ())
}

/// `rpch://HOST[:PORT]` (port 80 by default); loopback only unless `allow_remote`.
pub fn parse_target(url: &str, allow_remote: bool) -> Result<SocketAddr, String> {
    let rest = url
        .strip_prefix("rpch://")
        .ok_or_else(|| format!("target {url:?} must look like rpch://HOST:PORT"))?;
    super::play::parse_host_port(rest, 80, allow_remote).map_err(|e| e.to_string())
}

/// Runs cases until the time or the count is up, a watched process dies, or the proxy
/// cannot be reached three times in a row.
pub async fn fuzz_rpch(
    cfg: &RpchFuzzConfig,
    progress: &mut dyn FnMut(&RpchSummary),
) -> Result<RpchSummary, FuzzError> {
    let start = Instant::now();
    let mut summary = RpchSummary::default();
    let mut saved: BTreeSet<(RpchOutcome, String)> = BTreeSet::new();
    let mut unreachable_in_a_row = 0;
    canary(cfg).await.map_err(|e| FuzzError::Unreachable {
        addr: cfg.proxy.addr,
        detail: format!("canary: {e}"),
    })?;
    let mut number = cfg.run.first_case;
    summary.run.stopped = loop {
        if cfg.run.count.is_some_and(|n| summary.run.cases >= n) {
            break format!("{} cases", summary.run.cases);
        }
        if start.elapsed() >= cfg.run.duration {
            break "time is up".into();
        }
        let case = RpchCase::plan(cfg.run.seed, number, cfg.run.interface);
        number += 1;
        let plan = case.channels();
        let ((mut kind, mut detail), statuses, log) = play_case(cfg, &case, &plan).await;
        if kind == RpchOutcome::Refused {
            *summary
                .refusals
                .entry(format!("{} {detail}", case.kind()))
                .or_default() += 1;
        }
        if !kind.is_finding() {
            if let Err(e) = canary(cfg).await {
                (kind, detail) = (RpchOutcome::Dead, format!("canary after the case: {e}"));
            }
        }
        if cfg.run.watch_pid.is_some_and(|pid| !process_alive(pid)) {
            kind = RpchOutcome::Crash;
            detail = "the watched process is gone".into();
        }
        unreachable_in_a_row = match kind {
            RpchOutcome::Unreachable => unreachable_in_a_row + 1,
            RpchOutcome::Dead if detail.contains("refused") => unreachable_in_a_row + 1,
            _ => 0,
        };
        summary.run.cases += 1;
        *summary.run.by_kind.entry(kind).or_default() += 1;
        *summary.by_mutation.entry(case.kind()).or_default() += 1;
        for s in statuses {
            *summary.statuses.entry(s).or_default() += 1;
        }
        if kind.is_finding() {
            if saved.insert((kind, case.kind())) {
                let path = cfg.run.out.join(format!(
                    "rpch-{kind}-{}-case{}.txt",
                    case.kind(),
                    case.number
                ));
                let text = report(cfg.run.seed, &case, kind.name(), &detail, &log);
                std::fs::create_dir_all(&cfg.run.out)
                    .and_then(|()| std::fs::write(&path, text))
                    .map_err(|source| FuzzError::Output {
                        path: path.clone(),
                        source,
                    })?;
                summary.run.findings.push(RpchFinding {
                    kind,
                    case: case.number,
                    detail,
                    path,
                });
            } else {
                summary.run.duplicates += 1;
            }
        }
        summary.run.elapsed = start.elapsed();
        progress(&summary);
        if kind == RpchOutcome::Crash {
            break "the watched process is gone".into();
        }
        if unreachable_in_a_row >= MAX_UNREACHABLE_IN_A_ROW {
            break "the proxy cannot be reached".into();
        }
    };
    summary.run.elapsed = start.elapsed();
    Ok(summary)
}
