//! Outlook Anywhere in process: a byte-stream client's DCE/RPC connection carried as a
//! virtual connection through the real [`RpcProxy`] to the lab's endpoint, for the
//! scenario runner (the socket runner does the same over the lab's HTTP listener).
//!
//! [`InProcessRpcProxy`] holds one proxy, its in-process back-ends and the HTTP
//! authenticator, shared by every connection a case opens (so virtual connections with
//! one AssociationGroupId reach one back-end association group, as through the lab's
//! listener). Each [`ProxiedSession`] plays, for one client connection, what Outlook's
//! RPC over HTTP transport does under the client: authenticates the OUT and IN channels
//! as HTTP would (Basic, or NTLM's three legs on each channel's connection, checked by
//! [`HttpAuthenticator`]), sends CONN/A1 and CONN/B1, writes the client's octets on the IN
//! channel, and hands the client the RPC PDUs of the OUT channel (the RTS PDUs consumed by
//! [`RtsClient`], its acks written back). To the client it is a [`ServerSession`]: it sees
//! the same DCE/RPC byte stream as over TCP.
//!
//! A channel refused with `401` ends the connection before any RPC PDU: the client sees
//! the connection close. Outlook's own HTTP credential prompt is not modelled; the trace
//! and the finding `http-401` say what happened.
//!
//! A wake of the session ([`ServerSession::handle_wake`]: new mail for a parked
//! EcDoAsyncWaitEx) wakes the proxy's in-process back-ends.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;

use super::backend::InProcessBackends;
use super::client::{OutItem, RpchCookies, RpchEvent, RtsClient};
use harness_wire::rpch::RtsCookie;

use super::proxy::{ChannelId, ChannelKind, ProxyConfig, ProxyOutput, RpcProxy};
use crate::http_auth::{ConnectionAuth, HttpAuthenticator, HttpScheme, Verdict};
use crate::ntlm::{Credentials, InitiatorOptions, NtlmInitiator, ResponseKind};
use crate::session::{Output, ServerSession};

/// The OUT channel's receive window the client announces (CONN/A1), as the lab's
/// socket client does.
const OUT_WINDOW: u32 = 0x1_0000;
/// The IN channel's declared length: its lifetime, as Outlook and impacket declare it.
const IN_CHANNEL_LENGTH: u64 = 0x4000_0000;
/// CONN/A1's length: the OUT request's Content-Length ([MS-RPCH] 2.1.2.1.2).
const OUT_REQUEST_LENGTH: u64 = 76;
/// Trace lines kept per proxy; past it the trace says it was cut.
const MAX_TRACE_LINES: usize = 2000;

/// How the client authenticates to the proxy's channels (Outlook's "Proxy
/// authentication settings").
#[derive(Debug, Clone)]
pub struct ChannelAuth {
    pub scheme: HttpScheme,
    pub credentials: Credentials,
}

struct Shared {
    proxy: RpcProxy,
    backends: InProcessBackends,
    auth: HttpAuthenticator,
    next_channel: u64,
    /// Outputs for each live channel, in order, until its session takes them.
    inbox: BTreeMap<ChannelId, VecDeque<ProxyOutput>>,
    /// The client's connection number of each virtual connection, for the trace.
    names: BTreeMap<RtsCookie, usize>,
    trace: Vec<String>,
    findings: Vec<String>,
}

impl Shared {
    fn log(&mut self, line: String) {
        match self.trace.len() {
            n if n < MAX_TRACE_LINES => self.trace.push(line),
            n if n == MAX_TRACE_LINES => self.trace.push("(trace cut)".into()),
            _ => {}
        }
    }

    fn finding(&mut self, kind: &str) {
        if !self.findings.iter().any(|f| f == kind) {
            self.findings.push(kind.to_string());
        }
    }

    /// Runs the proxy and its back-ends until quiet; files each channel's outputs in its
    /// inbox and logs the ends.
    fn pump(&mut self, now: Duration) {
        for output in self.backends.pump(&mut self.proxy, now) {
            let channel = match &output {
                ProxyOutput::StartOutResponse { channel, .. }
                | ProxyOutput::Write { channel, .. }
                | ProxyOutput::CloseChannel { channel, .. } => *channel,
                ProxyOutput::Ended { cookie, reason, .. } => {
                    let what = match cookie.and_then(|c| self.names.get(&c)) {
                        Some(n) => format!("vc {n}"),
                        None => "a channel".to_string(),
                    };
                    self.log(format!("{what}: ended: {reason}"));
                    continue;
                }
                // InProcessBackends plays the back-end outputs itself.
                _ => continue,
            };
            if let Some(inbox) = self.inbox.get_mut(&channel) {
                inbox.push_back(output);
            }
        }
    }

    /// The client's side of `channels` closed: the proxy hears it, ends what it must.
    fn abandon(&mut self, now: Duration, channels: &[ChannelId]) {
        for ch in channels {
            self.proxy.channel_closed(now, *ch);
            self.inbox.remove(ch);
        }
        self.pump(now);
    }

    fn take(&mut self, channel: ChannelId) -> Vec<ProxyOutput> {
        self.inbox
            .get_mut(&channel)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default()
    }

    /// One HTTP request's authentication on a new connection: `Ok` with who it is, or
    /// `Err` with the status line and why.
    fn authenticate(&mut self, auth: &ChannelAuth, seed: u64) -> Result<String, String> {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let mut conn = ConnectionAuth::default();
        let verdict = match auth.scheme {
            HttpScheme::Basic => {
                let c = &auth.credentials;
                let token = b64(format!("{}:{}", c.user, c.password).as_bytes());
                self.auth.check(&mut conn, Some(&format!("Basic {token}")))
            }
            HttpScheme::Ntlm => {
                // The client challenge and session key from the seed: a case replays.
                let octet = (seed % 251) as u8;
                let options = InitiatorOptions::fixed(octet, octet ^ 0x5a, ResponseKind::V2, true);
                let mut ntlm = NtlmInitiator::new(auth.credentials.clone(), options);
                let negotiate = format!("NTLM {}", b64(&ntlm.negotiate()));
                let challenge = match self.auth.check(&mut conn, Some(&negotiate)) {
                    Verdict::Unauthorized {
                        www_authenticate, ..
                    } => www_authenticate
                        .iter()
                        .find_map(|v| v.strip_prefix("NTLM "))
                        .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok()),
                    _ => None,
                };
                let Some(challenge) = challenge else {
                    return Err("401 Unauthorized (no NTLM challenge)".into());
                };
                match ntlm.handle_challenge(&challenge) {
                    Ok(authenticate) => {
                        let value = format!("NTLM {}", b64(&authenticate));
                        self.auth.check(&mut conn, Some(&value))
                    }
                    Err(e) => return Err(format!("client NTLM failed: {e}")),
                }
            }
            // The in-process Outlook Anywhere client has no Kerberos tickets.
            HttpScheme::Negotiate => {
                return Err("the in-process client does not speak Negotiate".into())
            }
        };
        match verdict {
            Verdict::Authenticated(p) => {
                let who = match p.domain.as_str() {
                    "" => p.user,
                    d => format!("{d}\\{}", p.user),
                };
                Ok(format!("{} {who}", p.scheme.name()))
            }
            Verdict::Unauthorized { refusal, .. } => Err(format!("401 Unauthorized ({refusal})")),
            Verdict::BadRequest(why) => Err(format!("400 Bad Request ({why})")),
        }
    }
}

/// One RPC proxy in process, in front of the endpoints its back-ends reach. Cloning
/// shares it.
#[derive(Clone)]
pub struct InProcessRpcProxy {
    shared: Arc<Mutex<Shared>>,
    /// The URL query every channel asks for: `server:port`.
    target: String,
    auth: ChannelAuth,
    seed: u64,
}

impl InProcessRpcProxy {
    /// `target`: the `server:port` of the URLs (6001 for EMSMDB); `auth`: what the
    /// client sends on each channel.
    pub fn new(
        config: ProxyConfig,
        backends: InProcessBackends,
        authenticator: HttpAuthenticator,
        target: &str,
        auth: ChannelAuth,
        seed: u64,
    ) -> InProcessRpcProxy {
        InProcessRpcProxy {
            shared: Arc::new(Mutex::new(Shared {
                proxy: RpcProxy::new(config),
                backends,
                auth: authenticator,
                next_channel: 1,
                inbox: BTreeMap::new(),
                names: BTreeMap::new(),
                trace: Vec::new(),
                findings: Vec::new(),
            })),
            target: target.to_string(),
            auth,
            seed,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic elsewhere while holding it leaves plain data: go on with it.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What happened at the proxy, as deterministic lines.
    pub fn trace(&self) -> Vec<String> {
        self.lock().trace.clone()
    }

    /// Finding kinds seen at the proxy (`http-401`).
    pub fn findings(&self) -> Vec<String> {
        self.lock().findings.clone()
    }

    /// Virtual connections the proxy holds now.
    pub fn virtual_connections(&self) -> usize {
        self.lock().proxy.virtual_connections()
    }

    /// Connection `n` of the client, as a virtual connection: its channels opened and
    /// authenticated, CONN/A1 and CONN/B1 sent (at time zero: the runner's clock starts
    /// with the session).
    pub fn connect(&self, n: usize) -> ProxiedSession {
        let seed = self.seed.wrapping_add(n as u64);
        let rts = RtsClient::new(RpchCookies::from_seed(seed), OUT_WINDOW, true);
        let mut session = ProxiedSession {
            proxy: self.clone(),
            n,
            channels: None,
            rts,
            outputs: VecDeque::new(),
            closed: false,
            now: Duration::ZERO,
        };
        session.open(Duration::ZERO, seed);
        session
    }
}

/// One client connection through the proxy; see the module docs.
pub struct ProxiedSession {
    proxy: InProcessRpcProxy,
    n: usize,
    /// OUT and IN channel, once both were let in.
    channels: Option<(ChannelId, ChannelId)>,
    rts: RtsClient,
    outputs: VecDeque<Output>,
    closed: bool,
    /// The session clock at the last input, timer or wake.
    now: Duration,
}

impl ProxiedSession {
    fn open(&mut self, now: Duration, seed: u64) {
        let target = self.proxy.target.clone();
        let auth = self.proxy.auth.clone();
        let n = self.n;
        let mut shared = self.proxy.lock();
        shared.names.insert(self.rts.cookies.virtual_connection, n);
        let mut ids = [ChannelId(0); 2];
        let requests = [
            ("RPC_OUT_DATA", ChannelKind::Out, OUT_REQUEST_LENGTH),
            ("RPC_IN_DATA", ChannelKind::In, IN_CHANNEL_LENGTH),
        ];
        for (i, (method, kind, length)) in requests.into_iter().enumerate() {
            let line = format!("vc {n}: {method} /rpc/rpcproxy.dll?{target}");
            match shared.authenticate(&auth, seed.wrapping_mul(2).wrapping_add(i as u64)) {
                Ok(who) => shared.log(format!("{line}: {who}")),
                Err(why) => {
                    shared.log(format!("{line}: {why}"));
                    if why.starts_with("401") {
                        shared.finding("http-401");
                    }
                    shared.abandon(now, &ids[..i]);
                    drop(shared);
                    self.close();
                    return;
                }
            }
            let id = ChannelId(shared.next_channel);
            shared.next_channel += 1;
            shared.inbox.insert(id, VecDeque::new());
            let (opened, body) = match kind {
                ChannelKind::Out => (
                    shared.proxy.out_channel_opened(now, id, &target, length),
                    self.rts.conn_a1(),
                ),
                ChannelKind::In => (
                    shared.proxy.in_channel_opened(now, id, &target, length),
                    self.rts.conn_b1(),
                ),
            };
            let fed = opened.and_then(|()| shared.proxy.channel_data(now, id, &body));
            ids[i] = id;
            if let Err(e) = fed {
                shared.log(format!("vc {n}: {method} refused: {e}"));
                shared.abandon(now, &ids[..=i]);
                drop(shared);
                self.close();
                return;
            }
        }
        drop(shared);
        self.channels = Some((ids[0], ids[1]));
        self.settle(now);
    }

    /// Pumps the proxy and turns this session's channel outputs into client outputs.
    fn settle(&mut self, now: Duration) {
        self.now = now;
        let Some((out_ch, in_ch)) = self.channels else {
            return;
        };
        loop {
            let mut shared = self.proxy.lock();
            shared.pump(now);
            let mut outputs = shared.take(out_ch);
            outputs.extend(shared.take(in_ch));
            drop(shared);
            if outputs.is_empty() {
                return;
            }
            let mut acks = Vec::new();
            for output in outputs {
                match output {
                    ProxyOutput::Write { bytes, .. } => {
                        let mut items = Vec::new();
                        let fed = self.rts.receive_out(&bytes, &mut items);
                        self.deliver(items);
                        match fed {
                            Ok(ack) if !ack.is_empty() => acks.push(ack),
                            Ok(_) => {}
                            Err(e) => {
                                self.log(format!("vc {}: OUT channel: {e}", self.n));
                                self.close();
                            }
                        }
                    }
                    ProxyOutput::CloseChannel { channel, status } => {
                        let which = if channel == out_ch { "OUT" } else { "IN" };
                        let status = status.map_or(String::new(), |s| format!(" ({})", s.code));
                        self.log(format!("vc {}: {which} channel closed{status}", self.n));
                        self.close();
                    }
                    _ => {}
                }
            }
            if self.closed {
                return;
            }
            let mut shared = self.proxy.lock();
            for ack in acks {
                // A refusal ends the virtual connection; the next round reads its closes.
                let _ = shared.proxy.channel_data(now, in_ch, &ack);
            }
        }
    }

    /// RPC PDUs to the client; CONN/C2 into the trace.
    fn deliver(&mut self, items: Vec<OutItem>) {
        for item in items {
            match item {
                OutItem::Rpc(pdu) => self.outputs.push_back(Output::Write(pdu)),
                OutItem::Rts(RpchEvent::ConnC2 {
                    in_window,
                    connection_timeout,
                }) => self.log(format!(
                    "vc {}: CONN/C2: open (IN window {in_window}, timeout {connection_timeout} ms)",
                    self.n
                )),
                OutItem::Rts(_) => {}
            }
        }
    }

    fn log(&self, line: String) {
        self.proxy.lock().log(line);
    }

    /// Ends the client's connection (once): the proxy hears both channels close.
    fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.outputs.push_back(Output::Close);
        if let Some((out_ch, in_ch)) = self.channels {
            self.proxy.lock().abandon(self.now, &[in_ch, out_ch]);
        }
    }
}

impl ServerSession for ProxiedSession {
    fn handle_input(&mut self, now: Duration, input: &[u8]) {
        let Some((_, in_ch)) = self.channels.filter(|_| !self.closed) else {
            return;
        };
        let fed = self.proxy.lock().proxy.channel_data(now, in_ch, input);
        if let Err(e) = fed {
            self.log(format!("vc {}: IN channel refused: {e}", self.n));
        }
        self.settle(now);
    }

    fn handle_eof(&mut self, now: Duration) {
        if let Some((out_ch, in_ch)) = self.channels.filter(|_| !self.closed) {
            self.closed = true;
            self.proxy.lock().abandon(now, &[in_ch, out_ch]);
        }
    }

    fn handle_timeout(&mut self, now: Duration) {
        self.proxy.lock().proxy.handle_timeout(now);
        self.settle(now);
    }

    fn handle_wake(&mut self, now: Duration) {
        if self.closed {
            return;
        }
        self.proxy.lock().backends.wake(now);
        self.settle(now);
    }

    fn handle_tls_established(&mut self, _now: Duration) {}

    fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if self.closed {
            return None;
        }
        self.proxy.lock().proxy.poll_timeout()
    }

    fn is_closed(&self) -> bool {
        self.closed && self.outputs.is_empty()
    }
}
