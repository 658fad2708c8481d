//! Outlook Anywhere: the RPC over HTTP v2 proxy's HTTP/1.1 adapter (hyper) around the
//! sans-IO [`RpcProxy`], in front of the lab's Exchange RPC listener.
//!
//! Each accepted TCP connection (plain, or inside TLS) is served by hyper. Its requests
//! are authenticated by [`HttpAuthenticator`] with that connection's [`ConnectionAuth`]
//! (NTLM is bound to the connection), then `RPC_OUT_DATA` and `RPC_IN_DATA` become the
//! proxy's OUT and IN channels: their bodies stream into the proxy, the OUT channel's
//! response body streams out of it. One task owns the proxy and turns its outputs into
//! response heads, body chunks and back-end connections; the back-end of a virtual
//! connection is a TCP connection to the Exchange listener (every RpcProxy port the
//! client names, 6001, 6002, 6004 and the listener's own, maps to it) or, with
//! [`BackendRoute::InProcess`], an in-memory pipe to an association of the same endpoint
//! driven by the lab's own connection driver (no back-end socket: what it saves is the
//! measurement in BENCHMARKS.md); either is read only while the proxy takes more
//! ([`RpcProxy::backend_accepts`]).

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use harness_core::http_auth::{ConnectionAuth, HttpAuthenticator};
use harness_core::rpch::{BackendId, ChannelId, HttpStatus, ProxyOutput, RpcProxy};
use http_body_util::{combinators::BoxBody, BodyExt, Empty};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use super::connection::{drive_woken, Conn, NotifyWaker};
use super::http::{accept_authenticated, authenticate, HEAD_TIMEOUT};
use harness_core::dcerpc::server::Endpoint;
use harness_core::ServerSession;

/// The RpcProxy ports a client may name besides the Exchange listener's own: the
/// in-process back-ends' table.
pub use harness_core::rpch::backend::EXCHANGE_PORTS;

/// The longest request body chunk handed to the proxy at once.
const MAX_CHUNK: usize = 64 * 1024;

/// Events waiting for the proxy task at most (each at most [`MAX_CHUNK`] octets).
const EVENT_QUEUE: usize = 256;

type Body = BoxBody<Bytes, Infallible>;

/// What the HTTP side and the back-ends tell the proxy task.
enum Event {
    OutOpened {
        channel: ChannelId,
        target: String,
        length: u64,
        head: oneshot::Sender<Head>,
        body: mpsc::UnboundedSender<Bytes>,
        queued: Gauge,
    },
    InOpened {
        channel: ChannelId,
        target: String,
        length: u64,
        end: oneshot::Sender<Option<HttpStatus>>,
    },
    Data(ChannelId, Bytes),
    ChannelClosed(ChannelId),
    BackendData(BackendId, Vec<u8>),
    BackendClosed(BackendId),
    /// Answered once every event sent before it has been handled and its outputs
    /// applied (the events are handled in order).
    Settled(oneshot::Sender<()>),
    /// A channel's request body is all in.
    BodyEnded(ChannelId),
}

/// How an OUT channel's response starts.
enum Head {
    Ok { content_length: u32 },
    Refused(HttpStatus),
}

/// What the proxy task holds of a channel.
enum ChannelEnd {
    Out {
        head: Option<oneshot::Sender<Head>>,
        body: mpsc::UnboundedSender<Bytes>,
        /// Octets handed to the body and not yet taken by hyper.
        queued: Gauge,
    },
    In {
        end: Option<oneshot::Sender<Option<HttpStatus>>>,
    },
}

struct Backend {
    writes: mpsc::UnboundedSender<Vec<u8>>,
    /// Octets handed to the back-end connection and not yet written.
    queued: Gauge,
    accepts: watch::Sender<bool>,
}

/// Octets queued between the proxy task and a socket's task.
type Gauge = Arc<std::sync::atomic::AtomicUsize>;

/// What an OUT body or a back-end connection may hold unsent before the proxy gives up on
/// it: four times the largest receive window. A client that acknowledges octets without
/// reading them, or an endpoint that stops reading, cannot make the lab hold more.
const MAX_QUEUED: usize = 4 * 256 * 1024;

/// Adds `len` to `gauge` unless that passes [`MAX_QUEUED`].
fn reserve(gauge: &Gauge, len: usize) -> bool {
    use std::sync::atomic::Ordering;
    let queued = gauge.load(Ordering::Relaxed);
    if queued.saturating_add(len) > MAX_QUEUED {
        return false;
    }
    gauge.fetch_add(len, Ordering::Relaxed);
    true
}

fn release(gauge: &Gauge, len: usize) {
    gauge.fetch_sub(len, std::sync::atomic::Ordering::Relaxed);
}

/// The proxy's side shared by every HTTP connection.
pub struct RpchShared {
    events: mpsc::Sender<Event>,
    auth: Mutex<HttpAuthenticator>,
    next_channel: std::sync::atomic::AtomicU64,
}

/// How the proxy reaches the Exchange endpoint.
#[derive(Clone)]
pub enum BackendRoute {
    /// A TCP connection to the lab's Exchange RPC listener at this address.
    Tcp(SocketAddr),
    /// An association of the endpoint in this process, over an in-memory pipe; `port`
    /// is the Exchange listener's (a client may name it as well as 6001, 6002, 6004).
    InProcess { endpoint: Arc<Endpoint>, port: u16 },
}

impl BackendRoute {
    fn port(&self) -> u16 {
        match self {
            BackendRoute::Tcp(addr) => addr.port(),
            BackendRoute::InProcess { port, .. } => *port,
        }
    }
}

/// The pipe's buffer each way: a few fragments (the endpoint's are 5840 octets).
const PIPE_BUFFER: usize = 64 * 1024;

/// Starts the proxy task in front of the Exchange endpoint `exchange` reaches.
pub fn start(
    proxy: RpcProxy,
    auth: HttpAuthenticator,
    exchange: BackendRoute,
    shutdown: watch::Receiver<bool>,
) -> (Arc<RpchShared>, impl std::future::Future<Output = ()>) {
    // Bounded: a client (or back-end) faster than the proxy task waits in its socket
    // instead of in memory.
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    let shared = Arc::new(RpchShared {
        events: tx.clone(),
        auth: Mutex::new(auth),
        next_channel: std::sync::atomic::AtomicU64::new(1),
    });
    (shared, run_proxy(proxy, rx, tx, exchange, shutdown))
}

/// The task that owns the proxy.
async fn run_proxy(
    mut proxy: RpcProxy,
    mut events: mpsc::Receiver<Event>,
    feedback: mpsc::Sender<Event>,
    exchange: BackendRoute,
    mut shutdown: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let mut channels: HashMap<ChannelId, ChannelEnd> = HashMap::new();
    let mut backends: HashMap<BackendId, Backend> = HashMap::new();
    // Back-ends the proxy stopped taking octets from, and the one an event just fed:
    // the only ones whose `backend_accepts` can have changed.
    let mut paused: HashSet<BackendId> = HashSet::new();
    // The proxy's timeouts are seconds long (pairing 30 s, idle 120 s): looked at once a
    // second, not after every event (finding the next deadline walks every connection).
    let mut timeouts = tokio::time::interval(Duration::from_secs(1));
    timeouts.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = || started.elapsed();
        let mut fed = None;
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = timeouts.tick() => {
                if proxy.poll_timeout().is_some_and(|d| d <= now()) {
                    proxy.handle_timeout(now());
                }
            }
            event = events.recv() => {
                let Some(event) = event else { break };
                if let Event::BackendData(backend, _) = &event {
                    fed = Some(*backend);
                }
                match event {
                    Event::OutOpened { channel, target, length, head, body, queued } => {
                        channels.insert(channel, ChannelEnd::Out { head: Some(head), body, queued });
                        logged(proxy.out_channel_opened(now(), channel, &target, length), "OUT channel refused");
                    }
                    Event::InOpened { channel, target, length, end } => {
                        channels.insert(channel, ChannelEnd::In { end: Some(end) });
                        logged(proxy.in_channel_opened(now(), channel, &target, length), "IN channel refused");
                    }
                    Event::Data(channel, bytes) => {
                        logged(proxy.channel_data(now(), channel, &bytes), "channel data refused");
                    }
                    Event::ChannelClosed(channel) => {
                        channels.remove(&channel);
                        proxy.channel_closed(now(), channel);
                    }
                    Event::BackendData(backend, bytes) => {
                        logged(proxy.backend_data(now(), backend, &bytes), "back-end data refused");
                    }
                    Event::BackendClosed(backend) => {
                        backends.remove(&backend);
                        proxy.backend_closed(now(), backend);
                    }
                    Event::Settled(done) => {
                        let _ = done.send(());
                    }
                    Event::BodyEnded(channel) => {
                        logged(proxy.channel_body_ended(now(), channel), "body ended early");
                    }
                }
            }
        }
        let mut over = Overflow::default();
        loop {
            while let Some(output) = proxy.poll_output() {
                apply(
                    output,
                    &mut channels,
                    &mut backends,
                    &feedback,
                    &exchange,
                    &shutdown,
                    &mut over,
                );
            }
            if over.channels.is_empty() && over.backends.is_empty() {
                break;
            }
            // Each ends a virtual connection, whose closes are applied in the next round.
            for channel in std::mem::take(&mut over.channels) {
                tracing::debug!(
                    ?channel,
                    "OUT body over its queue limit: the client does not read"
                );
                proxy.channel_closed(now(), channel);
            }
            for backend in std::mem::take(&mut over.backends) {
                tracing::debug!(?backend, "back-end over its queue limit: it does not read");
                proxy.backend_closed(now(), backend);
            }
        }
        let touched: Vec<BackendId> = paused.iter().copied().chain(fed).collect();
        for id in touched {
            let Some(b) = backends.get(&id) else {
                paused.remove(&id);
                continue;
            };
            let accepts = proxy.backend_accepts(id);
            b.accepts
                .send_if_modified(|v| std::mem::replace(v, accepts) != accepts);
            if accepts {
                paused.remove(&id);
            } else {
                paused.insert(id);
            }
        }
    }
}

/// The proxy has already ended what an error concerns; the adapter only logs it.
fn logged(result: Result<(), harness_core::rpch::ProxyError>, what: &str) {
    if let Err(e) = result {
        tracing::debug!(%e, "{what}");
    }
}

/// Channels and back-ends whose queue passed [`MAX_QUEUED`]: the proxy ends them.
#[derive(Default)]
struct Overflow {
    channels: Vec<ChannelId>,
    backends: Vec<BackendId>,
}

fn apply(
    output: ProxyOutput,
    channels: &mut HashMap<ChannelId, ChannelEnd>,
    backends: &mut HashMap<BackendId, Backend>,
    feedback: &mpsc::Sender<Event>,
    exchange: &BackendRoute,
    shutdown: &watch::Receiver<bool>,
    over: &mut Overflow,
) {
    match output {
        ProxyOutput::StartOutResponse {
            channel,
            content_length,
        } => {
            if let Some(ChannelEnd::Out { head, .. }) = channels.get_mut(&channel) {
                if let Some(head) = head.take() {
                    let _ = head.send(Head::Ok { content_length });
                }
            }
        }
        ProxyOutput::Write { channel, bytes } => {
            if let Some(ChannelEnd::Out { body, queued, .. }) = channels.get(&channel) {
                if reserve(queued, bytes.len()) {
                    let _ = body.send(Bytes::from(bytes));
                } else {
                    // Dropping the body sender ends the response: hyper closes.
                    channels.remove(&channel);
                    over.channels.push(channel);
                }
            }
        }
        ProxyOutput::CloseChannel { channel, status } => match channels.remove(&channel) {
            Some(ChannelEnd::Out {
                head, body, queued, ..
            }) => {
                if let (Some(head), Some(status)) = (head, status) {
                    let _ = head.send(Head::Refused(status));
                }
                // Dropping the body sender ends the response short of its length: hyper
                // closes the connection at once, and drops what it has not flushed yet.
                // A response under way (a recycled predecessor ending with OUT_R2/B3)
                // keeps its sender until hyper has taken every chunk and a moment more to
                // write them (at most CLOSE_GRACE), so its last octets go out; a client
                // that recycles closes it first, as [MS-RPCH] has it do on OUT_R2/B3.
                if status.is_none() {
                    tokio::spawn(async move {
                        let started = tokio::time::Instant::now();
                        let taken = || queued.load(std::sync::atomic::Ordering::Relaxed) == 0;
                        while !taken() && started.elapsed() < CLOSE_GRACE {
                            tokio::time::sleep(CLOSE_POLL).await;
                        }
                        tokio::time::sleep(CLOSE_FLUSH).await;
                        drop(body);
                    });
                }
            }
            Some(ChannelEnd::In { end: Some(end) }) => {
                let _ = end.send(status);
            }
            Some(ChannelEnd::In { end: None }) | None => {}
        },
        ProxyOutput::ConnectBackend { backend, target } => {
            let (writes, rx) = mpsc::unbounded_channel();
            let (accepts, accepts_rx) = watch::channel(true);
            let queued = Gauge::default();
            backends.insert(
                backend,
                Backend {
                    writes,
                    queued: queued.clone(),
                    accepts,
                },
            );
            let known = EXCHANGE_PORTS.contains(&target.port) || target.port == exchange.port();
            let feedback = feedback.clone();
            let exchange = exchange.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                if known {
                    let ends = (rx, queued, accepts_rx, feedback);
                    match exchange {
                        BackendRoute::Tcp(addr) => match TcpStream::connect(addr).await {
                            Ok(tcp) => {
                                let _ = tcp.set_nodelay(true);
                                run_backend(backend, tcp, ends).await;
                            }
                            Err(_) => {
                                let _ = ends.3.send(Event::BackendClosed(backend)).await;
                            }
                        },
                        BackendRoute::InProcess { endpoint, .. } => {
                            let pipe = in_process_association(&endpoint, shutdown);
                            run_backend(backend, pipe, ends).await;
                        }
                    }
                } else {
                    tracing::debug!(%target, "RpcProxy target is not an Exchange port");
                    let _ = feedback.send(Event::BackendClosed(backend)).await;
                }
            });
        }
        ProxyOutput::WriteBackend { backend, bytes } => {
            if let Some(b) = backends.get(&backend) {
                if reserve(&b.queued, bytes.len()) {
                    let _ = b.writes.send(bytes);
                } else {
                    backends.remove(&backend);
                    over.backends.push(backend);
                }
            }
        }
        ProxyOutput::CloseBackend { backend } => {
            backends.remove(&backend);
        }
        ProxyOutput::Ended {
            cookie,
            channel,
            reason,
        } => {
            tracing::debug!(?cookie, ?channel, %reason, "virtual connection ended");
        }
    }
}

/// An association of `endpoint` served by the lab's connection driver (wakes for parked
/// calls, idle timeout, shutdown, as on its listener) at the far end of an in-memory
/// pipe; returns the near end.
fn in_process_association(
    endpoint: &Arc<Endpoint>,
    shutdown: watch::Receiver<bool>,
) -> tokio::io::DuplexStream {
    let (near, far) = tokio::io::duplex(PIPE_BUFFER);
    let wake = Arc::new(NotifyWaker::default());
    let association = endpoint.accept_with_waker(Duration::ZERO, wake.clone());
    let write_timeout = endpoint.config().idle_timeout.min(Duration::from_secs(60));
    tokio::spawn(async move {
        let session: Box<dyn ServerSession> = Box::new(association);
        let conn = Conn::Pipe(far);
        drive_woken(conn, session, None, shutdown, write_timeout, Some(wake)).await;
    });
    near
}

/// What a back-end task holds of the proxy task: the writes for it, their gauge, whether
/// the proxy takes more, and where to report.
type BackendEnds = (
    mpsc::UnboundedReceiver<Vec<u8>>,
    Gauge,
    watch::Receiver<bool>,
    mpsc::Sender<Event>,
);

/// One back-end connection: writes from the proxy, reads to it while it accepts more.
async fn run_backend<S>(backend: BackendId, stream: S, ends: BackendEnds)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (mut writes, queued, mut accepts, feedback) = ends;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let reading = *accepts.borrow();
        tokio::select! {
            w = writes.recv() => match w {
                Some(bytes) => {
                    let written = wr.write_all(&bytes).await;
                    release(&queued, bytes.len());
                    if written.is_err() {
                        break;
                    }
                }
                // The proxy closed this back-end.
                None => {
                    let _ = wr.shutdown().await;
                    return;
                }
            },
            _ = accepts.changed() => {}
            n = rd.read(&mut buf), if reading => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = feedback.send(Event::BackendData(backend, buf[..n].to_vec())).await;
                }
            },
        }
    }
    let _ = feedback.send(Event::BackendClosed(backend)).await;
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Empty::new().map_err(|e| match e {}).boxed());
    *r.status_mut() = status;
    r
}

fn status_response(status: HttpStatus) -> Response<Body> {
    let mut r = empty(StatusCode::from_u16(status.code).unwrap_or(StatusCode::BAD_REQUEST));
    r.headers_mut().insert(
        hyper::header::CONNECTION,
        "close".parse().expect("static header"),
    );
    r
}

/// One request on a connection whose authentication state is `conn`.
async fn serve_request(
    shared: Arc<RpchShared>,
    conn: Arc<Mutex<ConnectionAuth>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if let Err(refused) = authenticate(&shared.auth, &conn, &req) {
        return Ok(*refused);
    }
    let method = req.method().as_str().to_string();
    let target = req.uri().query().unwrap_or_default().to_string();
    if !req.uri().path().eq_ignore_ascii_case("/rpc/rpcproxy.dll") {
        return Ok(empty(StatusCode::NOT_FOUND));
    }
    if method != "RPC_IN_DATA" && method != "RPC_OUT_DATA" {
        return Ok(empty(StatusCode::METHOD_NOT_ALLOWED));
    }
    // RPC over HTTP declares its bodies' lengths ([MS-RPCH] 2.1.2.1.1); a chunked body
    // (or both framings) is refused.
    if req.headers().contains_key(hyper::header::TRANSFER_ENCODING) {
        return Ok(status_response(HttpStatus::BAD_REQUEST));
    }
    let Some(length) = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return Ok(status_response(HttpStatus::BAD_REQUEST));
    };
    let channel = ChannelId(
        shared
            .next_channel
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
    );
    match method.as_str() {
        "RPC_OUT_DATA" => Ok(out_channel(shared, channel, target, length, req.into_body()).await),
        _ => Ok(in_channel(shared, channel, target, length, req.into_body()).await),
    }
}

/// Streams a request body into the proxy; false when the body broke off.
async fn feed(shared: &RpchShared, channel: ChannelId, body: &mut Incoming) -> bool {
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return false;
        };
        if let Ok(data) = frame.into_data() {
            for piece in data.chunks(MAX_CHUNK) {
                let event = Event::Data(channel, Bytes::copy_from_slice(piece));
                if shared.events.send(event).await.is_err() {
                    return false;
                }
            }
        }
    }
    true
}

async fn out_channel(
    shared: Arc<RpchShared>,
    channel: ChannelId,
    target: String,
    length: u64,
    mut body: Incoming,
) -> Response<Body> {
    let (head_tx, mut head_rx) = oneshot::channel();
    let (body_tx, body_rx) = mpsc::unbounded_channel();
    let queued = Gauge::default();
    let _ = shared
        .events
        .send(Event::OutOpened {
            channel,
            target,
            length,
            head: head_tx,
            body: body_tx,
            queued: queued.clone(),
        })
        .await;
    // From here on the proxy hears of this channel's end however this request ends.
    let guard = CloseOnDrop {
        events: shared.events.clone(),
        channel,
    };
    // The body (CONN/A1) within the head's time bound; the proxy may answer first (a
    // refusal) without waiting for the rest.
    let early = tokio::select! {
        fed = tokio::time::timeout(HEAD_TIMEOUT, feed(&shared, channel, &mut body)) => {
            if !fed.unwrap_or(false) {
                return status_response(HttpStatus::BAD_REQUEST);
            }
            None
        }
        head = &mut head_rx => Some(head),
    };
    let head = match early {
        Some(head) => head,
        None => head_rx.await,
    };
    match head {
        Ok(Head::Ok { content_length }) => {
            let out = OutBody {
                rx: body_rx,
                queued,
                _guard: guard,
            };
            let mut r = Response::new(out.boxed());
            let h = r.headers_mut();
            h.insert(
                hyper::header::CONTENT_TYPE,
                "application/rpc".parse().expect("static header"),
            );
            h.insert(hyper::header::CONTENT_LENGTH, content_length.into());
            r
        }
        Ok(Head::Refused(status)) => status_response(status),
        Err(_) => status_response(HttpStatus::SERVICE_UNAVAILABLE),
    }
}

/// Tells the proxy a channel ended when the request (or its OUT body) is dropped, however
/// it ends: answered, refused, or abandoned by hyper when the client went away.
struct CloseOnDrop {
    events: mpsc::Sender<Event>,
    channel: ChannelId,
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        // Drop cannot wait: a full queue gets the close from a task of its own.
        let close = Event::ChannelClosed(self.channel);
        if let Err(mpsc::error::TrySendError::Full(close)) = self.events.try_send(close) {
            let events = self.events.clone();
            tokio::spawn(async move {
                let _ = events.send(close).await;
            });
        }
    }
}

/// The OUT channel's response body: the proxy's writes, until it drops the sender.
struct OutBody {
    rx: mpsc::UnboundedReceiver<Bytes>,
    queued: Gauge,
    _guard: CloseOnDrop,
}

impl hyper::body::Body for OutBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let polled = self.rx.poll_recv(cx);
        if let std::task::Poll::Ready(Some(chunk)) = &polled {
            release(&self.queued, chunk.len());
        }
        polled.map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

async fn in_channel(
    shared: Arc<RpchShared>,
    channel: ChannelId,
    target: String,
    length: u64,
    mut body: Incoming,
) -> Response<Body> {
    let (end_tx, mut end_rx) = oneshot::channel();
    let _ = shared
        .events
        .send(Event::InOpened {
            channel,
            target,
            length,
            end: end_tx,
        })
        .await;
    let _guard = CloseOnDrop {
        events: shared.events.clone(),
        channel,
    };
    let ended = tokio::select! {
        fed = feed(&shared, channel, &mut body) => {
            if fed {
                // The whole body is in: the proxy's verdict on the request and its octets
                // (a declared length it refuses, a bad or unfinished CONN/B1) comes
                // before any 200.
                let _ = shared.events.send(Event::BodyEnded(channel)).await;
                let (done, settled) = oneshot::channel();
                if shared.events.send(Event::Settled(done)).await.is_ok() {
                    let _ = settled.await;
                }
                end_rx.try_recv().ok().flatten()
            } else {
                Some(HttpStatus::BAD_REQUEST)
            }
        }
        status = &mut end_rx => status.ok().flatten(),
    };
    match ended {
        Some(status) => status_response(status),
        None => empty(StatusCode::OK),
    }
}

/// How long an OUT response the proxy closed stays open at most for its last octets to
/// flush; how often it looks whether hyper has taken them, and how long it then waits for
/// hyper to write what it took.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
const CLOSE_POLL: Duration = Duration::from_millis(10);
const CLOSE_FLUSH: Duration = Duration::from_millis(100);

/// Accepts connections on `listener` until shutdown, at most `max_connections` at once
/// (the lab's limit; one over it is closed at once); `tls` wraps each in TLS first.
pub async fn accept_loop(
    listener: TcpListener,
    shared: Arc<RpchShared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    max_connections: usize,
    shutdown: watch::Receiver<bool>,
) {
    let handler = move |conn, _ends, req| serve_request(shared.clone(), conn, req);
    accept_authenticated(listener, tls, max_connections, shutdown, handler).await;
}

#[cfg(test)]
mod tests {
    //! Channel recycling over sockets: successor `RPC_OUT_DATA` (Content-Length 120) and
    //! `RPC_IN_DATA` requests on connections of their own, each authenticated, through
    //! hyper to the proxy, against a back-end that answers every request PDU with eight
    //! numbered 4,000-octet PDUs.

    use super::*;
    use harness_core::http_auth::{HttpAuthConfig, HttpScheme};
    use harness_core::ntlm::AcceptorConfig;
    use harness_core::rpch::{OutItem, ProxyConfig, RpchCookies, RpchEvent, RtsClient};

    const RESPONSES: u32 = 8;
    const RESPONSE_LEN: usize = 4000;
    const CALLS: u32 = 12;

    /// Eight numbered response PDUs per request PDU, the number at octet 16.
    async fn backend(listener: TcpListener) {
        let Ok((mut tcp, _)) = listener.accept().await else {
            return;
        };
        let mut next = 0u32;
        let mut header = [0u8; 16];
        while tcp.read_exact(&mut header).await.is_ok() {
            let len = u16::from_le_bytes([header[8], header[9]]) as usize;
            let mut rest = vec![0u8; len.saturating_sub(16)];
            if tcp.read_exact(&mut rest).await.is_err() {
                return;
            }
            for _ in 0..RESPONSES {
                let mut pdu = vec![0u8; RESPONSE_LEN];
                pdu[..16].copy_from_slice(&header);
                pdu[2] = 2;
                pdu[8..10].copy_from_slice(&(RESPONSE_LEN as u16).to_le_bytes());
                pdu[16..20].copy_from_slice(&next.to_le_bytes());
                next += 1;
                if tcp.write_all(&pdu).await.is_err() {
                    return;
                }
            }
        }
    }

    /// A request on a new connection with Basic credentials and the start of its body.
    async fn request(addr: SocketAddr, method: &str, length: u64, body: &[u8]) -> TcpStream {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "{method} /rpc/rpcproxy.dll?mail:6004 HTTP/1.1\r\nHost: mail\r\n\
             Authorization: Basic YWxpY2U6c2VjcmV0\r\nContent-Length: {length}\r\n\r\n"
        );
        tcp.write_all(head.as_bytes()).await.expect("head");
        tcp.write_all(body).await.expect("body");
        tcp
    }

    /// A request PDU (call id `n`) of 24 octets.
    fn request_pdu(n: u32) -> Vec<u8> {
        let mut pdu = vec![5, 0, 0, 3, 0x10, 0, 0, 0, 24, 0, 0, 0];
        pdu.extend_from_slice(&n.to_le_bytes());
        pdu.extend_from_slice(&[0; 8]);
        pdu
    }

    /// Reads the OUT response's head off `buf` once whole: its status line and
    /// Content-Length, and the body octets after it.
    fn head(buf: &mut Vec<u8>) -> Option<(String, String)> {
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let text = String::from_utf8_lossy(&buf[..end]).to_string();
        buf.drain(..end);
        let status = text.lines().next().unwrap_or_default().to_string();
        let length = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap_or_default()
            .to_string();
        Some((status, length))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn both_channels_recycle_over_sockets_and_every_pdu_arrives_once_in_order() {
        let back = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let back_addr = back.local_addr().unwrap();
        tokio::spawn(backend(back));
        let auth = HttpAuthenticator::new(
            HttpAuthConfig {
                schemes: vec![HttpScheme::Basic],
                realm: "mail".into(),
                ntlm: AcceptorConfig {
                    nb_domain: "EXAMPLE".into(),
                    nb_computer: "MAIL".into(),
                    dns_domain: "example.test".into(),
                    dns_computer: "mail.example.test".into(),
                },
            },
            |user| (user == "alice").then(|| "secret".to_string()),
            1,
            0,
        );
        let proxy = RpcProxy::new(ProxyConfig {
            out_content_length: 0x2_0000,
            ..ProxyConfig::default()
        });
        let (stop, stopped) = watch::channel(false);
        let (shared, run) = start(proxy, auth, BackendRoute::Tcp(back_addr), stopped.clone());
        tokio::spawn(run);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(accept_loop(listener, shared, None, 16, stopped));

        let mut client = RtsClient::new(RpchCookies::from_seed(5), 0x1_0000, true);
        let mut out = request(addr, "RPC_OUT_DATA", 76, &client.conn_a1()).await;
        let mut inc = request(addr, "RPC_IN_DATA", 1 << 30, &client.conn_b1()).await;
        let (mut out_next, mut in_next): (Option<TcpStream>, Option<TcpStream>) = (None, None);
        let mut replaced_in: Vec<TcpStream> = Vec::new();
        let mut heads = Vec::new();
        let mut buf = Vec::new();
        let mut started = false;
        let mut steps = Vec::new();
        let (mut expected, mut calls) = (0u32, 0u32);
        let mut chunk = vec![0u8; 64 * 1024];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while expected < CALLS * RESPONSES {
            let read = tokio::time::timeout_at(deadline, out.read(&mut chunk)).await;
            let n = match read {
                Ok(Ok(n)) if n > 0 => n,
                other => panic!("the OUT channel ended at PDU {expected}: {other:?} {steps:?}"),
            };
            buf.extend_from_slice(&chunk[..n]);
            if !started {
                let Some(h) = head(&mut buf) else { continue };
                heads.push(h);
                started = true;
            }
            let mut items = Vec::new();
            let ack = client
                .receive_out(&std::mem::take(&mut buf), &mut items)
                .expect("the OUT channel's PDUs");
            inc.write_all(&ack).await.unwrap();
            for item in items {
                match item {
                    OutItem::Rpc(pdu) => {
                        let n = u32::from_le_bytes([pdu[16], pdu[17], pdu[18], pdu[19]]);
                        assert_eq!(n, expected, "PDUs out of order, lost or twice");
                        expected += 1;
                    }
                    OutItem::Rts(RpchEvent::OutR2A2) => {
                        steps.push("OUT_R2/A2");
                        let a3 = client.out_recycle_a3();
                        out_next = Some(request(addr, "RPC_OUT_DATA", 120, &a3).await);
                    }
                    OutItem::Rts(RpchEvent::OutR2A6) => {
                        steps.push("OUT_R2/A6");
                        let (a7, c1) = client.out_recycle_a7_c1().unwrap();
                        out_next.as_mut().unwrap().write_all(&c1).await.unwrap();
                        inc.write_all(&a7).await.unwrap();
                    }
                    OutItem::Rts(RpchEvent::OutR2B3) => {
                        steps.push("OUT_R2/B3");
                        // The client closes the predecessor on B3.
                        out = out_next.take().unwrap();
                        started = false;
                    }
                    OutItem::Rts(RpchEvent::InR2A4) => {
                        steps.push("IN_R2/A4");
                        let a5 = client.in_recycle_a5().unwrap();
                        inc.write_all(&a5).await.unwrap();
                        let successor = in_next.take().unwrap();
                        replaced_in.push(std::mem::replace(&mut inc, successor));
                    }
                    OutItem::Rts(_) => {}
                }
            }
            // The next call once the last one's PDUs are in; the IN channel recycles
            // before the seventh.
            if expected == calls * RESPONSES && calls < CALLS {
                if calls == 6 && in_next.is_none() && replaced_in.is_empty() {
                    let a1 = client.begin_in_recycle();
                    in_next = Some(request(addr, "RPC_IN_DATA", 1 << 30, &a1).await);
                    continue;
                }
                inc.write_all(&request_pdu(calls)).await.unwrap();
                calls += 1;
            }
        }
        // 12 calls of 32,000 octets through 128 KiB OUT channels, recycled from 64 KiB
        // on: four successors, each step in order.
        let out_recycles = steps.iter().filter(|s| **s == "OUT_R2/B3").count();
        assert_eq!(out_recycles, 4, "{steps:?}");
        let out_steps: Vec<&str> = steps.iter().copied().filter(|s| *s != "IN_R2/A4").collect();
        assert_eq!(out_steps, ["OUT_R2/A2", "OUT_R2/A6", "OUT_R2/B3"].repeat(4));
        assert_eq!(steps.iter().filter(|s| **s == "IN_R2/A4").count(), 1);
        assert_eq!(heads.len(), out_recycles + 1);
        for (status, length) in &heads {
            assert_eq!(status, "HTTP/1.1 200 OK");
            assert_eq!(length, "131072");
        }
        // The replaced IN channel got its answer: 200, then the close.
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            replaced_in[0].read_to_end(&mut answer),
        )
        .await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let _ = stop.send(true);
    }
}
