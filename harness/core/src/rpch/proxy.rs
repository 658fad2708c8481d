//! The RPC over HTTP v2 proxy, sans-IO ([MS-RPCH] 3.2.3 inbound proxy, 3.2.4 outbound
//! proxy, with the server's RTS steps).
//!
//! The adapter opens channels as HTTP requests arrive (`RPC_OUT_DATA` and `RPC_IN_DATA`,
//! with the `server:port` of the URL's query and the declared Content-Length), feeds
//! their body octets in, reports closes, carries the back-end connections the proxy asks
//! for, and drains [`ProxyOutput`]s in order with [`RpcProxy::poll_output`]. Time comes
//! in as `now` (the adapter's clock since the proxy started).
//!
//! A virtual connection is keyed by its virtual-connection cookie (2.2.3.1): CONN/A1 on
//! the OUT channel or CONN/B1 on the IN channel creates it, whichever comes first (the
//! two requests travel on separate TCP connections, so either may win the race); the
//! other must come within [`ProxyConfig::pairing_timeout`]. CONN/A1 opens the OUT
//! response, the back-end connection and answers CONN/A3; once both channels are in,
//! CONN/C2 goes out on the OUT channel (the outbound proxy's CONN/A1 steps of 3.2.4.5,
//! the inbound proxy's CONN/B1 steps of 3.2.3.5.3, and the server's CONN/A2, CONN/B2 and
//! CONN/C1 in between collapsed: this proxy is also the server's RTS half, see the
//! module docs).
//!
//! Recycling (IN_R2, OUT_R2) replaces a channel of an open virtual connection: the
//! successor joins plugged and takes over at the switch, the predecessor is closed
//! without a status; see [`ProxyError`]'s `Recycle*` variants for what is refused.
//!
//! Every failure ends the virtual connection it belongs to (or, before a channel has
//! joined one, that channel alone) with a typed [`ProxyError`], reported in
//! [`ProxyOutput::Ended`] and returned by the input that caused it; other virtual
//! connections are not touched.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::Duration;

use harness_wire::dcerpc::{FramerError, PacketType, PduFramer};
use harness_wire::rpch::{
    FlowControlAck, ForwardDestination, RecycleCookies, RtsCommand as C, RtsCookie, RtsError,
    RtsFlags, RtsPdu, RtsPduKind,
};

/// A channel (one HTTP request and its response), named by the adapter.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct ChannelId(pub u64);

/// A back-end connection, named by the proxy.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct BackendId(pub u64);

/// Which half of a virtual connection a channel is ([MS-RPCH] 1.3.1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ChannelKind {
    /// `RPC_IN_DATA`: client to proxy, the request body.
    In,
    /// `RPC_OUT_DATA`: proxy to client, the response body.
    Out,
}

/// The RPC server a channel asks for: the URL query `server:port` ([MS-RPCH] 2.2.2).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Target {
    pub server: String,
    pub port: u16,
}

/// Longest server name accepted in a URL query (a DNS name's limit).
const MAX_SERVER_NAME: usize = 255;

impl Target {
    /// `server:port`, the server a non-empty name of printable non-space ASCII, the
    /// port a non-zero decimal.
    pub fn parse(query: &str) -> Result<Target, ProxyError> {
        let bad = || ProxyError::BadTarget(query.chars().take(64).collect());
        let (server, port) = query.rsplit_once(':').ok_or_else(bad)?;
        let printable = |c: char| c.is_ascii_graphic() && c != ':';
        if server.is_empty() || server.len() > MAX_SERVER_NAME || !server.chars().all(printable) {
            return Err(bad());
        }
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let port: u16 = port.parse().map_err(|_| bad())?;
        if port == 0 {
            return Err(bad());
        }
        Ok(Target {
            server: server.to_string(),
            port,
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.server, self.port)
    }
}

/// An HTTP status for a channel whose response has not started.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct HttpStatus {
    pub code: u16,
    pub reason: &'static str,
}

impl HttpStatus {
    pub const BAD_REQUEST: HttpStatus = HttpStatus {
        code: 400,
        reason: "Bad Request",
    };
    pub const SERVICE_UNAVAILABLE: HttpStatus = HttpStatus {
        code: 503,
        reason: "Service Unavailable",
    };
}

/// [MS-RPCH] 2.2.3.5.1: ReceiveWindowSize is 8 KiB to 256 KiB.
pub const MIN_RECEIVE_WINDOW: u32 = 0x2000;
pub const MAX_RECEIVE_WINDOW: u32 = 0x4_0000;
/// [MS-RPCH] 2.2.3.5.7: the only RPC over HTTP v2 version.
pub const RTS_VERSION: u32 = 1;
/// [MS-RPCH] 2.2.3.5.6: a ClientKeepalive of 0 means 300,000 ms.
const DEFAULT_KEEPALIVE_MS: u32 = 300_000;
/// The OUT request body holds CONN/A1 (76 octets, [MS-RPCH] 2.1.2.1.2); a replacement
/// channel's OUT_R1/A3 more. Anything past this is no OUT channel of ours.
pub const MAX_OUT_REQUEST_LENGTH: u64 = 4096;
pub const CONN_A1_LEN: u64 = 76;
/// IN_R2/A1 (88 octets) or CONN/B1 (104) opens an IN channel; the IN request declares
/// its whole lifetime (impacket and Outlook: 1 GiB), at most 2 GiB ([MS-RPCH] 2.1.2.1.1).
const MIN_IN_REQUEST_LENGTH: u64 = 88;
/// [MS-RPCH] 2.2.3.5.5: a ChannelLifetime is 128 KiB to 2 GiB.
pub const MIN_CHANNEL_LIFETIME: u64 = 0x2_0000;
/// Octets of an OUT channel's lifetime kept for RTS PDUs once RPC PDUs stop going on it
/// (OUT_R2/A6, OUT_R2/B3, acks and pings while the successor opens), at most a quarter
/// of the lifetime.
const RTS_RESERVE: u64 = 4096;
pub const MAX_IN_REQUEST_LENGTH: u64 = 0x8000_0000;

/// The proxy's limits and the values it announces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Virtual connections held at once; past it a new one is refused with 503.
    pub max_virtual_connections: usize,
    /// Channels held at once (paired or waiting for their first PDU).
    pub max_channels: usize,
    /// The IN channel's receive window, announced in CONN/C2 (8 KiB to 256 KiB).
    pub in_receive_window: u32,
    /// Announced in CONN/A3 and CONN/C2; a virtual connection without traffic this long
    /// is closed.
    pub connection_timeout: Duration,
    /// How long a channel may wait for its first RTS PDU, and a virtual connection with
    /// one channel for the other.
    pub pairing_timeout: Duration,
    /// The OUT response's Content-Length: the octets an OUT channel carries before a
    /// successor replaces it (128 KiB to 2 GiB, [MS-RPCH] 2.1.2.1.4). Recycling starts
    /// once a window's worth and 4 KiB are left (at most half the lifetime in); RPC PDUs
    /// keep the last 4 KiB (a quarter of smaller lifetimes) free for RTS PDUs. Smaller
    /// values than the spec's are taken, for tests and fuzzing.
    pub out_content_length: u32,
    /// Back-end octets held for the client's window per virtual connection.
    pub max_out_queue: usize,
    /// The largest PDU taken on a channel or from the back-end: the framers hold at most
    /// this much of an unfinished one (a frag_length past it ends the virtual
    /// connection before its octets are held).
    pub max_fragment: u16,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            max_virtual_connections: 1024,
            max_channels: 2048 + 64,
            in_receive_window: MAX_RECEIVE_WINDOW,
            // [MS-RPCH] 2.2.3.5.3: 120,000 ms is the smallest allowed.
            connection_timeout: Duration::from_secs(120),
            pairing_timeout: Duration::from_secs(30),
            out_content_length: 0x4000_0000,
            // Above the endpoint's largest response (4 MiB stub) with its fragment
            // headers and verifiers.
            max_out_queue: 8 << 20,
            // Windows, Samba and the lab's endpoint fragment at 5840 octets
            // (`EndpointConfig::max_frag`); room for a client that offers more.
            max_fragment: 16 * 1024,
        }
    }
}

/// Why a channel or a virtual connection ended, or an input was refused.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("rpch: channel {0:?} is not open")]
    UnknownChannel(ChannelId),
    #[error("rpch: channel {0:?} is open already")]
    ChannelInUse(ChannelId),
    #[error("rpch: back-end {0:?} is not open")]
    UnknownBackend(BackendId),
    #[error("rpch: the request's query is not server:port: {0:?}")]
    BadTarget(String),
    #[error("rpch: {kind:?} channel declares Content-Length {length}, outside {min}..={max}")]
    DeclaredLength {
        kind: ChannelKind,
        length: u64,
        min: u64,
        max: u64,
    },
    #[error("rpch: CONN/B1's ChannelLifetime {lifetime} is outside 131072..=2147483648 or past the IN request's Content-Length {declared}")]
    ChannelLifetime { lifetime: u32, declared: u64 },
    #[error("rpch: {0} channels open, the limit")]
    TooManyChannels(usize),
    #[error("rpch: {0} virtual connections, the limit")]
    TooManyVirtualConnections(usize),
    #[error("rpch: {0}")]
    Rts(RtsError),
    #[error("rpch: {0}")]
    Framing(FramerError),
    #[error("rpch: {kind:?} channel: {got} where {expected} was due")]
    Unexpected {
        kind: ChannelKind,
        expected: &'static str,
        got: String,
    },
    #[error("rpch: RTS version {0}, not 1")]
    Version(u32),
    #[error("rpch: ReceiveWindowSize {0} outside 8192..=262144")]
    ReceiveWindow(u32),
    #[error("rpch: the virtual connection has a live {0:?} channel already")]
    CookieInUse(ChannelKind),
    #[error("rpch: the IN channel asks for {in_target}, its OUT channel for {out_target}")]
    TargetMismatch {
        in_target: String,
        out_target: String,
    },
    #[error("rpch: no OUT channel with the IN channel's virtual-connection cookie came")]
    UnknownCookie,
    #[error("rpch: no IN channel joined the OUT channel's virtual connection")]
    NoInChannel,
    #[error("rpch: {0:?} channel sent no RTS PDU in time")]
    SilentChannel(ChannelKind),
    #[error("rpch: {0:?} channel's body ended before its first RTS PDU was whole")]
    BodyEndedEarly(ChannelKind),
    #[error("rpch: {kind:?} channel body runs past its Content-Length {declared}")]
    BodyTooLong { kind: ChannelKind, declared: u64 },
    #[error(
        "rpch: IN channel octets past the receive window ({received} received, {allowed} allowed)"
    )]
    WindowExceeded { received: u64, allowed: u64 },
    #[error("rpch: FlowControlAck for {bytes_received} octets and a window of {available_window} does not fit {sent} octets sent in a window of {window}")]
    BadAck {
        bytes_received: u32,
        available_window: u32,
        sent: u64,
        window: u32,
    },
    #[error(
        "rpch: a back-end PDU of {len} octets exceeds the client's ReceiveWindowSize {window}"
    )]
    PduOverWindow { len: usize, window: u32 },
    #[error("rpch: {0} back-end octets wait for the client's window, over the limit")]
    OutQueueFull(usize),
    #[error("rpch: {0} octets of RTS PDUs wait for the successor OUT channel's response, over the reserve")]
    PluggedFull(usize),
    #[error("rpch: the OUT channel's Content-Length {0} is spent before its recycling completed")]
    OutChannelSpent(u32),
    #[error("rpch: {kind:?} channel recycling for a virtual connection that is not here")]
    RecycleUnknownConnection { kind: ChannelKind },
    #[error("rpch: {got} on the {kind:?} channel where no recycling step takes it ({state})")]
    RecycleOutOfState {
        kind: ChannelKind,
        got: String,
        state: &'static str,
    },
    #[error("rpch: {kind:?} channel recycling names predecessor {got}, the channel is {expected}")]
    RecyclePredecessor {
        kind: ChannelKind,
        expected: RtsCookie,
        got: RtsCookie,
    },
    #[error("rpch: {kind:?} channel recycling names successor {got}, the successor is {expected}")]
    RecycleSuccessor {
        kind: ChannelKind,
        expected: RtsCookie,
        got: RtsCookie,
    },
    #[error("rpch: the client did not complete the {0:?} channel's recycling in time")]
    RecycleTimeout(ChannelKind),
    #[error("rpch: the back-end connection closed")]
    BackendClosed,
    #[error("rpch: the client closed its {0:?} channel")]
    ChannelClosed(ChannelKind),
    #[error("rpch: no traffic within the connection timeout")]
    Idle,
}

impl ProxyError {
    /// The status a channel whose response has not started is answered with.
    pub fn status(&self) -> HttpStatus {
        match self {
            ProxyError::TooManyChannels(_)
            | ProxyError::TooManyVirtualConnections(_)
            | ProxyError::BackendClosed => HttpStatus::SERVICE_UNAVAILABLE,
            _ => HttpStatus::BAD_REQUEST,
        }
    }
}

/// One thing the adapter must do, in the order polled.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ProxyOutput {
    /// Start the OUT channel's response: `HTTP/1.1 200 Success`, `Content-Type:
    /// application/rpc`, this Content-Length ([MS-RPCH] 2.1.2.1.4). Body writes follow.
    StartOutResponse {
        channel: ChannelId,
        content_length: u32,
    },
    /// Octets for the OUT channel's response body.
    Write {
        channel: ChannelId,
        bytes: Vec<u8>,
    },
    /// End the channel: send `status` first when it is `Some` (the response had not
    /// started), then close the connection.
    CloseChannel {
        channel: ChannelId,
        status: Option<HttpStatus>,
    },
    /// Open a connection to the RPC server for a virtual connection; writes to it may
    /// follow at once (the adapter holds them until it is connected). A failed connect
    /// is reported with [`RpcProxy::backend_closed`].
    ConnectBackend {
        backend: BackendId,
        target: Target,
    },
    WriteBackend {
        backend: BackendId,
        bytes: Vec<u8>,
    },
    CloseBackend {
        backend: BackendId,
    },
    /// A virtual connection (or a channel that never joined one) ended, and why.
    Ended {
        cookie: Option<RtsCookie>,
        channel: Option<ChannelId>,
        reason: ProxyError,
    },
}

/// What the proxy knows of one virtual connection (tests, logs, the later
/// association-group keying).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VirtualConnectionInfo {
    pub target: Target,
    pub out_channel: Option<ChannelId>,
    pub in_channel: Option<ChannelId>,
    pub backend: Option<BackendId>,
    /// CONN/B1's AssociationGroupId ([MS-RPCH] 2.2.4.5).
    pub association_group_id: Option<RtsCookie>,
    /// CONN/B1's or the last Keep-Alive's interval (0 read as 300,000 ms).
    pub keepalive: Option<Duration>,
    /// CONN/C2 was sent: both channels are in.
    pub opened: bool,
    pub pings_answered: u64,
    /// Pings the proxy sent on an OUT channel that carried nothing for a while.
    pub pings_sent: u64,
    /// Channels replaced by recycling (OUT_R2, IN_R2).
    pub out_recycles: u64,
    pub in_recycles: u64,
    /// RPC octets sent on the OUT channel and the client's window left.
    pub out_bytes_sent: u64,
    pub out_available_window: u32,
    /// Back-end octets waiting for the client's window.
    pub out_queued: usize,
    /// RPC octets received on the IN channel.
    pub in_bytes_received: u64,
    /// Every octet the virtual connection holds (framers, queues).
    pub buffered: usize,
}

type Outputs = VecDeque<ProxyOutput>;
type VcResult = Result<(), ProxyError>;

struct Channel {
    kind: ChannelKind,
    target: Target,
    declared: u64,
    received: u64,
    framer: PduFramer,
    opened_at: Duration,
    /// The virtual connection its first RTS PDU joined.
    vc: Option<RtsCookie>,
    response_started: bool,
}

/// The OUT channel's sender side ([MS-RPCH] 3.2.1.1.5.1.1, 3.2.1.4.1.3).
struct OutHalf {
    channel: ChannelId,
    cookie: RtsCookie,
    /// The client's ReceiveWindowSize (CONN/A1, OUT_R2/A3).
    window: u32,
    /// Sender AvailableWindow.
    available: u32,
    /// BytesSent: RPC octets only (RTS PDUs are outside flow control, 3.2.1.1.5.1).
    bytes_sent: u64,
    /// Every octet of the response body, against its Content-Length.
    written: u64,
    queue: VecDeque<Vec<u8>>,
    queued: usize,
    /// A successor whose response has not started (plugged channel mode, 3.2.4.5.10):
    /// RTS PDUs for it wait in `held_rts`, RPC PDUs in `queue`.
    plugged: bool,
    held_rts: Vec<Vec<u8>>,
    /// When the last octets went out on it (the ping timer's start).
    last_write: Duration,
}

impl OutHalf {
    fn new(channel: ChannelId, cookie: RtsCookie, window: u32, now: Duration) -> OutHalf {
        OutHalf {
            channel,
            cookie,
            window,
            available: window,
            bytes_sent: 0,
            written: 0,
            queue: VecDeque::new(),
            queued: 0,
            plugged: false,
            held_rts: Vec::new(),
            last_write: now,
        }
    }
}

/// The OUT channel's recycling, OUT_R2 ([MS-RPCH] 3.2.4.5.6.1, 3.2.4.5.10 with the
/// server's OUT_R2/A1, A5 and B1 collapsed into the proxy's own steps).
#[derive(Clone, Copy, Debug)]
enum OutRecycle {
    /// OUT_R2/A2 went out on the OUT channel: the client's OUT_R2/A3 is due on a new one.
    A3Wait { since: Duration },
    /// OUT_R2/A3 came on `channel` and OUT_R2/A6 went out on the predecessor: OUT_R2/A7
    /// (on the IN channel) and OUT_R2/C1 (on the successor) are due, in either order.
    Successor {
        since: Duration,
        channel: ChannelId,
        cookie: RtsCookie,
        window: u32,
        c1: bool,
    },
    /// The successor is the OUT channel (OUT_R2/B3 ended the predecessor) but still
    /// plugged: its OUT_R2/C1 is due before its response starts.
    C1Wait { since: Duration, channel: ChannelId },
}

impl OutRecycle {
    fn since(self) -> Duration {
        match self {
            OutRecycle::A3Wait { since }
            | OutRecycle::Successor { since, .. }
            | OutRecycle::C1Wait { since, .. } => since,
        }
    }

    fn name(self) -> &'static str {
        match self {
            OutRecycle::A3Wait { .. } => "OUT_R2/A3 due",
            OutRecycle::Successor { .. } => "OUT_R2/A7 and OUT_R2/C1 due",
            OutRecycle::C1Wait { .. } => "OUT_R2/C1 due",
        }
    }

    fn successor(self) -> Option<ChannelId> {
        match self {
            OutRecycle::A3Wait { .. } => None,
            OutRecycle::Successor { channel, .. } | OutRecycle::C1Wait { channel, .. } => {
                Some(channel)
            }
        }
    }
}

/// A successor IN channel before the switch, IN_R2 ([MS-RPCH] 3.2.3.5.5.1): plugged,
/// its client PDUs held until IN_R2/A5 on the predecessor.
struct InSuccessor {
    channel: ChannelId,
    cookie: RtsCookie,
    since: Duration,
    held: Vec<Vec<u8>>,
    held_octets: usize,
}

/// The IN channel's receiver side ([MS-RPCH] 3.2.1.1.5.1.2, 3.2.1.4.1.1).
struct InHalf {
    channel: ChannelId,
    cookie: RtsCookie,
    bytes_received: u64,
    /// BytesReceived in the last FlowControlAck (0 before: CONN/C2 announced the window).
    acked: u64,
    /// The most the client may have sent: the last ack's BytesReceived plus its window.
    limit: u64,
}

struct VirtualConnection {
    target: Target,
    created: Duration,
    last_activity: Duration,
    /// The time of the input being handled.
    clock: Duration,
    out: Option<OutHalf>,
    inbound: Option<InHalf>,
    backend: Option<BackendId>,
    backend_framer: PduFramer,
    /// Client PDUs that came before CONN/A1 opened the back-end connection.
    held: Vec<Vec<u8>>,
    held_octets: usize,
    opened: bool,
    association_group_id: Option<RtsCookie>,
    keepalive: Option<Duration>,
    pings_answered: u64,
    pings_sent: u64,
    out_recycle: Option<OutRecycle>,
    in_successor: Option<InSuccessor>,
    out_recycles: u64,
    in_recycles: u64,
}

/// The share of an OUT channel's lifetime kept for RTS PDUs.
fn rts_reserve(content_length: u32) -> u64 {
    RTS_RESERVE.min(u64::from(content_length) / 4)
}

impl VirtualConnection {
    fn new(target: Target, now: Duration, max_fragment: u16) -> VirtualConnection {
        VirtualConnection {
            target,
            created: now,
            last_activity: now,
            clock: now,
            out: None,
            inbound: None,
            backend: None,
            backend_framer: PduFramer::new(max_fragment),
            held: Vec::new(),
            held_octets: 0,
            opened: false,
            association_group_id: None,
            keepalive: None,
            pings_answered: 0,
            pings_sent: 0,
            out_recycle: None,
            in_successor: None,
            out_recycles: 0,
            in_recycles: 0,
        }
    }

    fn buffered(&self) -> usize {
        self.backend_framer.buffered()
            + self.held_octets
            + self.in_successor.as_ref().map_or(0, |s| s.held_octets)
            + self.out.as_ref().map_or(0, |o| {
                o.queued + o.held_rts.iter().map(Vec::len).sum::<usize>()
            })
    }

    /// Writes an RTS PDU on the OUT channel (outside flow control).
    fn send_rts(
        &mut self,
        outputs: &mut Outputs,
        config: &ProxyConfig,
        pdu: &RtsPdu,
    ) -> Result<(), ProxyError> {
        // The named PDUs the proxy sends are a few dozen octets.
        let bytes = pdu.encode().unwrap_or_default();
        self.write_out(outputs, config, bytes)
    }

    fn write_out(
        &mut self,
        outputs: &mut Outputs,
        config: &ProxyConfig,
        bytes: Vec<u8>,
    ) -> Result<(), ProxyError> {
        let clock = self.clock;
        let Some(out) = self.out.as_mut() else {
            return Ok(());
        };
        if out.plugged {
            // What a plugged successor may hold: its lifetime's RTS reserve.
            let held = out.held_rts.iter().map(Vec::len).sum::<usize>() + bytes.len();
            if held as u64 > RTS_RESERVE {
                return Err(ProxyError::PluggedFull(held));
            }
            out.held_rts.push(bytes);
            return Ok(());
        }
        let written = out.written + bytes.len() as u64;
        if written > u64::from(config.out_content_length) {
            return Err(ProxyError::OutChannelSpent(config.out_content_length));
        }
        out.written = written;
        out.last_write = clock;
        outputs.push_back(ProxyOutput::Write {
            channel: out.channel,
            bytes,
        });
        Ok(())
    }

    /// Sends queued back-end PDUs while the client's window has room (3.2.1.4.1.3) and
    /// the channel's lifetime, less the RTS reserve, has too; starts the recycling when
    /// the lifetime runs short.
    fn flush_out(&mut self, outputs: &mut Outputs, config: &ProxyConfig) -> Result<(), ProxyError> {
        let lifetime = u64::from(config.out_content_length);
        let reserve = rts_reserve(config.out_content_length);
        loop {
            let Some(out) = self.out.as_mut() else {
                return Ok(());
            };
            if out.plugged {
                return Ok(());
            }
            let Some(len) = out.queue.front().map(Vec::len) else {
                break;
            };
            if len > out.window as usize {
                return Err(ProxyError::PduOverWindow {
                    len,
                    window: out.window,
                });
            }
            // Past the lifetime less the reserve it waits for the successor.
            if len > out.available as usize || out.written + len as u64 + reserve > lifetime {
                break;
            }
            let Some(pdu) = out.queue.pop_front() else {
                break;
            };
            out.queued -= len;
            out.available -= len as u32;
            out.bytes_sent += len as u64;
            self.write_out(outputs, config, pdu)?;
        }
        self.maybe_recycle_out(outputs, config)
    }

    /// The server's side of [MS-RPCH] (its Sending a PDU, the counterpart of the
    /// client's 3.2.2.4.2; Channel Lifetime Sent counts RTS and RPC PDUs): once the
    /// octets written come within a window's worth (and the reserve) of the
    /// Content-Length, OUT_R2/A2 asks the client for a successor, early enough that RPC
    /// PDUs keep flowing while it opens. At most half the lifetime is given up.
    fn maybe_recycle_out(
        &mut self,
        outputs: &mut Outputs,
        config: &ProxyConfig,
    ) -> Result<(), ProxyError> {
        if !self.opened || self.out_recycle.is_some() {
            return Ok(());
        }
        let Some(out) = self.out.as_ref() else {
            return Ok(());
        };
        let lifetime = u64::from(config.out_content_length);
        let margin =
            (u64::from(out.window) + rts_reserve(config.out_content_length)).min(lifetime / 2);
        if out.plugged || out.written + margin < lifetime {
            return Ok(());
        }
        self.out_recycle = Some(OutRecycle::A3Wait { since: self.clock });
        self.send_rts(outputs, config, &RtsPdu::out_r2_a2())
    }

    /// [MS-RPCH] 3.2.1.4.1.2: Sender AvailableWindow = AvailableWindow_from_ack -
    /// (BytesSent - BytesReceived_from_ack); an ack that makes it negative or claims
    /// more than was sent or a window larger than the client's is invalid.
    fn apply_ack(
        &mut self,
        outputs: &mut Outputs,
        config: &ProxyConfig,
        ack: FlowControlAck,
    ) -> Result<(), ProxyError> {
        let Some(out) = self.out.as_mut() else {
            return Ok(());
        };
        if ack.channel_cookie != out.cookie {
            // An ack naming no channel of this connection (or the predecessor of a
            // recycled one) is dropped (the spec's FlowControlAck processing).
            return Ok(());
        }
        let bad = ProxyError::BadAck {
            bytes_received: ack.bytes_received,
            available_window: ack.available_window,
            sent: out.bytes_sent,
            window: out.window,
        };
        let in_flight = out
            .bytes_sent
            .checked_sub(u64::from(ack.bytes_received))
            .ok_or(bad.clone())?;
        if ack.available_window > out.window || in_flight > u64::from(ack.available_window) {
            return Err(bad);
        }
        out.available = ack.available_window - in_flight as u32;
        self.flush_out(outputs, config)
    }

    /// CONN/C2 ([MS-RPCH] 2.2.4.9) once both channels are in.
    fn open_if_paired(
        &mut self,
        outputs: &mut Outputs,
        config: &ProxyConfig,
    ) -> Result<(), ProxyError> {
        if self.opened || self.out.is_none() || self.inbound.is_none() {
            return Ok(());
        }
        self.opened = true;
        let c2 = RtsPdu::conn_c2(
            RTS_VERSION,
            config.in_receive_window,
            timeout_ms(config.connection_timeout),
        );
        self.send_rts(outputs, config, &c2)?;
        self.maybe_ack_in(outputs, config)
    }

    /// [MS-RPCH] 3.2.1.4.1.1: acknowledges the IN channel's octets once half the window
    /// has been consumed since the last ack (the threshold is the implementation's).
    fn maybe_ack_in(
        &mut self,
        outputs: &mut Outputs,
        config: &ProxyConfig,
    ) -> Result<(), ProxyError> {
        if !self.opened {
            return Ok(());
        }
        let window = config.in_receive_window;
        let plugged = self.in_successor.as_ref().map_or(0, |s| s.held_octets);
        let available = window.saturating_sub((self.held_octets + plugged) as u32);
        let Some(inbound) = self.inbound.as_mut() else {
            return Ok(());
        };
        if inbound.bytes_received - inbound.acked < u64::from(window / 2) {
            return Ok(());
        }
        inbound.acked = inbound.bytes_received;
        inbound.limit = inbound.bytes_received + u64::from(available);
        let ack = FlowControlAck {
            // The IN channel's lifetime is at most 2 GiB (MAX_IN_REQUEST_LENGTH).
            bytes_received: u32::try_from(inbound.bytes_received).unwrap_or(u32::MAX),
            available_window: available,
            channel_cookie: inbound.cookie,
        };
        self.send_rts(outputs, config, &RtsPdu::flow_control_ack(ack))
    }

    /// A client PDU off the IN channel: to the back-end, held until CONN/A1 opens it, or
    /// held with a plugged successor IN channel until the switch. The window counts it
    /// on arrival (one virtual IN channel, one count, 3.2.3.5.5.1).
    fn take_client_pdu(
        &mut self,
        outputs: &mut Outputs,
        config: &ProxyConfig,
        pdu: Vec<u8>,
        plugged: bool,
    ) -> Result<(), ProxyError> {
        let Some(inbound) = self.inbound.as_mut() else {
            return Ok(());
        };
        let received = inbound.bytes_received + pdu.len() as u64;
        if received > inbound.limit {
            return Err(ProxyError::WindowExceeded {
                received,
                allowed: inbound.limit,
            });
        }
        inbound.bytes_received = received;
        match (plugged, self.in_successor.as_mut(), self.backend) {
            (true, Some(successor), _) => {
                successor.held_octets += pdu.len();
                successor.held.push(pdu);
            }
            (_, _, Some(backend)) => outputs.push_back(ProxyOutput::WriteBackend {
                backend,
                bytes: pdu,
            }),
            (_, _, None) => {
                self.held_octets += pdu.len();
                self.held.push(pdu);
            }
        }
        self.maybe_ack_in(outputs, config)
    }

    /// When the OUT channel is due a ping: [MS-RPCH] 3.2.1.1.6.1 has the outbound proxy
    /// keep an OUT channel in use from being timed out by HTTP intermediaries with small
    /// packets; ConnectionTimeout (announced in CONN/A3) is what they allow idle, so a
    /// Ping (2.2.4.49) goes out after half of it without a write.
    fn ping_due(&self, config: &ProxyConfig) -> Option<Duration> {
        let out = self.out.as_ref()?;
        (self.opened && !out.plugged).then(|| out.last_write + config.connection_timeout / 2)
    }

    /// When the recycling under way must have completed.
    fn recycle_due(&self, config: &ProxyConfig) -> Option<(Duration, ChannelKind)> {
        let out = self
            .out_recycle
            .map(|r| (r.since() + config.pairing_timeout, ChannelKind::Out));
        let inbound = self
            .in_successor
            .as_ref()
            .map(|s| (s.since + config.pairing_timeout, ChannelKind::In));
        out.into_iter().chain(inbound).min_by_key(|(d, _)| *d)
    }

    fn info(&self) -> VirtualConnectionInfo {
        VirtualConnectionInfo {
            target: self.target.clone(),
            out_channel: self.out.as_ref().map(|o| o.channel),
            in_channel: self.inbound.as_ref().map(|i| i.channel),
            backend: self.backend,
            association_group_id: self.association_group_id,
            keepalive: self.keepalive,
            opened: self.opened,
            pings_answered: self.pings_answered,
            pings_sent: self.pings_sent,
            out_recycles: self.out_recycles,
            in_recycles: self.in_recycles,
            out_bytes_sent: self.out.as_ref().map_or(0, |o| o.bytes_sent),
            out_available_window: self.out.as_ref().map_or(0, |o| o.available),
            out_queued: self.out.as_ref().map_or(0, |o| o.queued),
            in_bytes_received: self.inbound.as_ref().map_or(0, |i| i.bytes_received),
            buffered: self.buffered(),
        }
    }
}

/// [MS-RPCH] 3.2.2.6.1: a live client sends something (a Ping at least) each
/// ConnectionTimeout it was given in CONN/A3, however long a call is parked on the
/// back-end (EcDoAsyncWaitEx); an open virtual connection is dead after twice that without
/// traffic from either end. One not open yet has the pairing timeout.
fn vc_deadline(config: &ProxyConfig, vc: &VirtualConnection) -> Duration {
    if vc.opened {
        vc.last_activity + config.connection_timeout * 2
    } else {
        (vc.last_activity + config.connection_timeout).min(vc.created + config.pairing_timeout)
    }
}

fn timeout_ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// "CONN/A1", "IN_R1/A1 or IN_R2/A1", "an RTS PDU of no named layout".
fn describe(pdu: &RtsPdu) -> String {
    let names: Vec<&str> = pdu.classify().iter().map(|k| k.name()).collect();
    if names.is_empty() {
        format!("an RTS PDU of no named layout (flags {:?})", pdu.flags)
    } else {
        names.join(" or ")
    }
}

/// Whether the PDU has the layout of a recycling PDU (IN_R1, IN_R2, OUT_R1, OUT_R2:
/// [MS-RPCH] 2.2.4.10 to 2.2.4.45).
fn is_recycling(pdu: &RtsPdu) -> bool {
    pdu.classify()
        .into_iter()
        .map(RtsPduKind::name)
        .any(|n| n.starts_with("IN_R") || n.starts_with("OUT_R"))
}

/// The fields of the PDU a channel must open with (`view`), its Version 1.
fn opening<T>(
    pdu: &RtsPdu,
    kind: ChannelKind,
    expected: &'static str,
    view: fn(&RtsPdu) -> Option<T>,
    version: fn(&T) -> u32,
) -> Result<T, ProxyError> {
    let fields = view(pdu).ok_or_else(|| ProxyError::Unexpected {
        kind,
        expected,
        got: describe(pdu),
    })?;
    match version(&fields) {
        RTS_VERSION => Ok(fields),
        other => Err(ProxyError::Version(other)),
    }
}

/// The fields of IN_R1/A1 or IN_R2/A1 ([MS-RPCH] 2.2.4.10, 2.2.4.18): Version and the
/// recycling cookies.
fn as_in_r2_a1(pdu: &RtsPdu) -> Option<(u32, RecycleCookies)> {
    match (pdu.flags, pdu.commands.as_slice()) {
        (RtsFlags::RECYCLE_CHANNEL, [C::Version(v), C::Cookie(vc), C::Cookie(p), C::Cookie(s)]) => {
            Some((
                *v,
                RecycleCookies {
                    virtual_connection: *vc,
                    predecessor: *p,
                    successor: *s,
                },
            ))
        }
        _ => None,
    }
}

/// The fields of OUT_R1/A3 or OUT_R2/A3 ([MS-RPCH] 2.2.4.36): those of IN_R2/A1 and the
/// client's ReceiveWindowSize.
fn as_out_r2_a3(pdu: &RtsPdu) -> Option<(u32, RecycleCookies, u32)> {
    match pdu.commands.as_slice() {
        [first @ .., C::ReceiveWindowSize(w)] => {
            let head = RtsPdu::new(pdu.flags, first.to_vec());
            as_in_r2_a1(&head).map(|(v, c)| (v, c, *w))
        }
        _ => None,
    }
}

/// The successor cookie of OUT_R2/A7 ([MS-RPCH] 2.2.4.40), if this is one.
fn as_out_r2_a7(pdu: &RtsPdu) -> Option<RtsCookie> {
    match (pdu.flags, pdu.commands.as_slice()) {
        (
            RtsFlags::OUT_CHANNEL,
            [C::Destination(ForwardDestination::SERVER), C::Cookie(c), C::Version(_)],
        ) => Some(*c),
        _ => None,
    }
}

/// The successor cookie of IN_R2/A5 ([MS-RPCH] 2.2.4.22), if this is one.
fn as_in_r2_a5(pdu: &RtsPdu) -> Option<RtsCookie> {
    match (pdu.flags, pdu.commands.as_slice()) {
        (RtsFlags::NONE, [C::Cookie(c)]) => Some(*c),
        _ => None,
    }
}

/// The proxy: channels, virtual connections, back-end connections, pending outputs.
pub struct RpcProxy {
    config: ProxyConfig,
    channels: HashMap<ChannelId, Channel>,
    vcs: HashMap<RtsCookie, VirtualConnection>,
    backends: HashMap<BackendId, RtsCookie>,
    next_backend: u64,
    outputs: Outputs,
    /// CONN/B1's AssociationGroupId to the back-end association group its first bind_ack
    /// named: later virtual connections with the same AssociationGroupId bind into that
    /// group (the AssociationGroupId command, [MS-RPCH] 2.2.3.5.13, names the client's
    /// association group to the server), so the endpoint sees one client's virtual
    /// connections as one association group, as it sees its TCP connections.
    groups: HashMap<RtsCookie, u32>,
}

/// Octets 20-23 of a bind and of a bind_ack: assoc_group_id ([C706] 12.6.4.3, 12.6.4.4),
/// after the 16-octet header and max_xmit_frag, max_recv_frag.
const ASSOC_GROUP_AT: std::ops::Range<usize> = 20..24;

impl RpcProxy {
    pub fn new(config: ProxyConfig) -> RpcProxy {
        RpcProxy {
            config,
            channels: HashMap::new(),
            vcs: HashMap::new(),
            backends: HashMap::new(),
            next_backend: 1,
            outputs: VecDeque::new(),
            groups: HashMap::new(),
        }
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// An `RPC_OUT_DATA` request arrived: `target` is its URL query (`server:port`),
    /// `content_length` its declared Content-Length (76 for a new OUT channel).
    pub fn out_channel_opened(
        &mut self,
        now: Duration,
        channel: ChannelId,
        target: &str,
        content_length: u64,
    ) -> Result<(), ProxyError> {
        self.open_channel(now, channel, ChannelKind::Out, target, content_length)
    }

    /// An `RPC_IN_DATA` request arrived, declaring the IN channel's whole lifetime.
    pub fn in_channel_opened(
        &mut self,
        now: Duration,
        channel: ChannelId,
        target: &str,
        content_length: u64,
    ) -> Result<(), ProxyError> {
        self.open_channel(now, channel, ChannelKind::In, target, content_length)
    }

    fn open_channel(
        &mut self,
        now: Duration,
        channel: ChannelId,
        kind: ChannelKind,
        target: &str,
        content_length: u64,
    ) -> Result<(), ProxyError> {
        if self.channels.contains_key(&channel) {
            return Err(ProxyError::ChannelInUse(channel));
        }
        let (min, max) = match kind {
            ChannelKind::Out => (CONN_A1_LEN, MAX_OUT_REQUEST_LENGTH),
            ChannelKind::In => (MIN_IN_REQUEST_LENGTH, MAX_IN_REQUEST_LENGTH),
        };
        let refused = if self.channels.len() >= self.config.max_channels {
            Some(ProxyError::TooManyChannels(self.channels.len()))
        } else if !(min..=max).contains(&content_length) {
            Some(ProxyError::DeclaredLength {
                kind,
                length: content_length,
                min,
                max,
            })
        } else {
            None
        };
        let target = match (refused, Target::parse(target)) {
            (Some(e), _) | (None, Err(e)) => return Err(self.refuse(channel, e)),
            (None, Ok(t)) => t,
        };
        self.channels.insert(
            channel,
            Channel {
                kind,
                target,
                declared: content_length,
                received: 0,
                framer: PduFramer::new(self.config.max_fragment),
                opened_at: now,
                vc: None,
                response_started: false,
            },
        );
        Ok(())
    }

    /// Body octets of a channel's request.
    pub fn channel_data(
        &mut self,
        now: Duration,
        channel: ChannelId,
        bytes: &[u8],
    ) -> Result<(), ProxyError> {
        let Some(ch) = self.channels.get_mut(&channel) else {
            return Err(ProxyError::UnknownChannel(channel));
        };
        let kind = ch.kind;
        let received = ch.received + bytes.len() as u64;
        if received > ch.declared {
            let declared = ch.declared;
            return Err(self.fail(channel, ProxyError::BodyTooLong { kind, declared }));
        }
        ch.received = received;
        let mut frames = Vec::new();
        let framed = ch.framer.push_frames(bytes, &mut frames);
        if let Some(vc) = ch.vc.and_then(|c| self.vcs.get_mut(&c)) {
            vc.last_activity = now;
            vc.clock = now;
        }
        for frame in frames {
            if let Err(e) = self.on_frame(now, channel, kind, frame) {
                return Err(self.fail(channel, e));
            }
        }
        framed.map_err(|e| self.fail(channel, ProxyError::Framing(e)))
    }

    /// A channel's request body is complete (its declared length is in). One that has
    /// not joined a virtual connection by then never will: it is refused (a declared
    /// length shorter than its opening PDU). Returns the refusal.
    pub fn channel_body_ended(
        &mut self,
        _now: Duration,
        channel: ChannelId,
    ) -> Result<(), ProxyError> {
        match self.channels.get(&channel) {
            Some(ch) if ch.vc.is_none() => {
                let kind = ch.kind;
                Err(self.refuse(channel, ProxyError::BodyEndedEarly(kind)))
            }
            _ => Ok(()),
        }
    }

    /// The client closed a channel (or its connection broke): its virtual connection
    /// ends. A predecessor the recycling closed is gone already and changes nothing.
    pub fn channel_closed(&mut self, _now: Duration, channel: ChannelId) {
        let Some(ch) = self.channels.remove(&channel) else {
            return;
        };
        if let Some(cookie) = ch.vc {
            self.end_vc(cookie, ProxyError::ChannelClosed(ch.kind));
        }
    }

    /// Octets the back-end connection sent: cut into PDUs and sent on the OUT channel
    /// as the client's window allows, the rest queued.
    pub fn backend_data(
        &mut self,
        now: Duration,
        backend: BackendId,
        bytes: &[u8],
    ) -> Result<(), ProxyError> {
        let Some(&cookie) = self.backends.get(&backend) else {
            return Err(ProxyError::UnknownBackend(backend));
        };
        let Some(vc) = self.vcs.get_mut(&cookie) else {
            return Err(ProxyError::UnknownBackend(backend));
        };
        vc.last_activity = now;
        vc.clock = now;
        let mut frames = Vec::new();
        let framed = vc.backend_framer.push_frames(bytes, &mut frames);
        if let Some(group) = vc.association_group_id {
            let acked = frames
                .iter()
                .filter(|f| f.get(2).copied() == Some(PacketType::BIND_ACK.0))
                .find_map(|f| f.get(ASSOC_GROUP_AT))
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            if let Some(id) = acked.filter(|id| *id != 0) {
                self.groups.entry(group).or_insert(id);
            }
        }
        let result = (|| {
            if let Some(out) = vc.out.as_mut() {
                for frame in frames {
                    out.queued += frame.len();
                    out.queue.push_back(frame);
                }
            }
            vc.flush_out(&mut self.outputs, &self.config)?;
            // What the window did not let out is what the proxy holds.
            let queued = vc.out.as_ref().map_or(0, |o| o.queued);
            if queued > self.config.max_out_queue {
                return Err(ProxyError::OutQueueFull(queued));
            }
            framed.map_err(ProxyError::Framing)
        })();
        result.inspect_err(|e| self.end_vc(cookie, e.clone()))
    }

    /// Whether the adapter should read more from the back-end connection now: false
    /// while back-end PDUs wait for the client's window (the flow control of [MS-RPCH]
    /// 3.2.1.4.1.3 pushed back to the back-end), and for a back-end that is gone.
    pub fn backend_accepts(&self, backend: BackendId) -> bool {
        self.backends
            .get(&backend)
            .and_then(|c| self.vcs.get(c))
            .is_some_and(|vc| vc.out.as_ref().is_some_and(|o| o.queued == 0))
    }

    /// The back-end connection closed or could not be opened: its virtual connection
    /// ends, after what the client's window lets out.
    pub fn backend_closed(&mut self, now: Duration, backend: BackendId) {
        let Some(cookie) = self.backends.remove(&backend) else {
            return;
        };
        if let Some(vc) = self.vcs.get_mut(&cookie) {
            vc.clock = now;
            vc.backend = None;
            let _ = vc.flush_out(&mut self.outputs, &self.config);
        }
        self.end_vc(cookie, ProxyError::BackendClosed);
    }

    /// When [`RpcProxy::handle_timeout`] is next due: a pairing or recycling deadline, a
    /// ping on a quiet OUT channel, the idle limit.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let channels = self
            .channels
            .values()
            .filter(|c| c.vc.is_none())
            .map(|c| c.opened_at + self.config.pairing_timeout);
        let vcs = self.vcs.values().flat_map(|vc| {
            [
                Some(vc_deadline(&self.config, vc)),
                vc.ping_due(&self.config),
                vc.recycle_due(&self.config).map(|(d, _)| d),
            ]
            .into_iter()
            .flatten()
        });
        channels.chain(vcs).min()
    }

    /// Ends what is overdue (channels that sent no RTS PDU, virtual connections whose
    /// other channel did not come, recyclings not completed, idle virtual connections)
    /// and pings quiet OUT channels.
    pub fn handle_timeout(&mut self, now: Duration) {
        let silent: Vec<(ChannelId, ChannelKind)> = self
            .channels
            .iter()
            .filter(|(_, c)| c.vc.is_none() && c.opened_at + self.config.pairing_timeout <= now)
            .map(|(id, c)| (*id, c.kind))
            .collect();
        for (id, kind) in silent {
            self.refuse(id, ProxyError::SilentChannel(kind));
        }
        let mut overdue: Vec<(RtsCookie, ProxyError)> = Vec::new();
        let (config, outputs) = (&self.config, &mut self.outputs);
        for (cookie, vc) in self.vcs.iter_mut() {
            vc.clock = now;
            if vc_deadline(config, vc) <= now {
                overdue.push((
                    *cookie,
                    match (vc.opened, vc.out.is_some()) {
                        (true, _) => ProxyError::Idle,
                        (false, true) => ProxyError::NoInChannel,
                        (false, false) => ProxyError::UnknownCookie,
                    },
                ));
                continue;
            }
            if let Some((due, kind)) = vc.recycle_due(config) {
                if due <= now {
                    overdue.push((*cookie, ProxyError::RecycleTimeout(kind)));
                    continue;
                }
            }
            if vc.ping_due(config).is_some_and(|d| d <= now) {
                vc.pings_sent += 1;
                let pinged = vc
                    .send_rts(outputs, config, &RtsPdu::ping())
                    .and_then(|()| vc.maybe_recycle_out(outputs, config));
                if let Err(e) = pinged {
                    overdue.push((*cookie, e));
                }
            }
        }
        for (cookie, reason) in overdue {
            self.end_vc(cookie, reason);
        }
    }

    pub fn poll_output(&mut self) -> Option<ProxyOutput> {
        self.outputs.pop_front()
    }

    pub fn virtual_connection(&self, cookie: &RtsCookie) -> Option<VirtualConnectionInfo> {
        self.vcs.get(cookie).map(VirtualConnection::info)
    }

    pub fn virtual_connections(&self) -> usize {
        self.vcs.len()
    }

    pub fn channels(&self) -> usize {
        self.channels.len()
    }

    /// Every octet held: channel framers, back-end framers, queues, held client PDUs.
    pub fn buffered(&self) -> usize {
        self.channels
            .values()
            .map(|c| c.framer.buffered())
            .chain(self.vcs.values().map(VirtualConnection::buffered))
            .sum()
    }

    /// One whole PDU off a channel.
    fn on_frame(
        &mut self,
        now: Duration,
        channel: ChannelId,
        kind: ChannelKind,
        frame: Vec<u8>,
    ) -> Result<(), ProxyError> {
        // The framer checked the common header: PTYPE is octet 2 ([C706] 12.6.3.1).
        let packet_type = PacketType(frame.get(2).copied().unwrap_or_default());
        let joined = self.channels.get(&channel).and_then(|c| c.vc);
        if packet_type != PacketType::RTS {
            return match (kind, joined) {
                (ChannelKind::In, Some(cookie)) => {
                    let frame = self.join_group(cookie, packet_type, frame);
                    self.with_vc(cookie, |vc, outputs, config| {
                        let plugged = vc
                            .in_successor
                            .as_ref()
                            .is_some_and(|s| s.channel == channel);
                        vc.take_client_pdu(outputs, config, frame, plugged)
                    })
                }
                (ChannelKind::In, None) => Err(ProxyError::Unexpected {
                    kind,
                    expected: "CONN/B1",
                    got: format!("{packet_type:?}"),
                }),
                (ChannelKind::Out, _) => Err(ProxyError::Unexpected {
                    kind,
                    expected: "an RTS PDU",
                    got: format!("{packet_type:?}"),
                }),
            };
        }
        let (pdu, _) = RtsPdu::decode(&frame).map_err(ProxyError::Rts)?;
        match (kind, joined) {
            (ChannelKind::Out, None) => match as_out_r2_a3(&pdu) {
                Some(fields) if pdu.is(RtsPduKind::OutR2A3) => {
                    self.on_out_r2_a3(now, channel, fields)
                }
                _ => self.on_conn_a1(now, channel, &pdu),
            },
            (ChannelKind::In, None) => match as_in_r2_a1(&pdu) {
                Some(fields) => self.on_in_r2_a1(now, channel, fields),
                None => self.on_conn_b1(now, channel, &pdu),
            },
            (ChannelKind::Out, Some(cookie)) => self.on_out_rts(cookie, channel, &pdu),
            (ChannelKind::In, Some(cookie)) => self.on_in_rts(cookie, channel, &pdu),
        }
    }

    /// Runs `f` on the virtual connection `cookie` with the proxy's outputs and config.
    fn with_vc(
        &mut self,
        cookie: RtsCookie,
        f: impl FnOnce(&mut VirtualConnection, &mut Outputs, &ProxyConfig) -> VcResult,
    ) -> Result<(), ProxyError> {
        match self.vcs.get_mut(&cookie) {
            Some(vc) => f(vc, &mut self.outputs, &self.config),
            None => Ok(()),
        }
    }

    /// The virtual connection a first RTS PDU names: the one waiting for this kind of
    /// channel, or a new one. A live channel of the same kind refuses the newcomer.
    fn join(
        &mut self,
        now: Duration,
        channel: ChannelId,
        kind: ChannelKind,
        cookie: RtsCookie,
    ) -> Result<(), ProxyError> {
        let Some(target) = self.channels.get(&channel).map(|c| c.target.clone()) else {
            return Err(ProxyError::UnknownChannel(channel));
        };
        match self.vcs.get(&cookie) {
            Some(vc) => {
                let taken = match kind {
                    ChannelKind::Out => vc.out.is_some(),
                    ChannelKind::In => vc.inbound.is_some(),
                };
                if taken {
                    return Err(ProxyError::CookieInUse(kind));
                }
                if vc.target != target {
                    let (in_target, out_target) = match kind {
                        ChannelKind::In => (target, vc.target.clone()),
                        ChannelKind::Out => (vc.target.clone(), target),
                    };
                    return Err(ProxyError::TargetMismatch {
                        in_target: in_target.to_string(),
                        out_target: out_target.to_string(),
                    });
                }
            }
            None => {
                if self.vcs.len() >= self.config.max_virtual_connections {
                    return Err(ProxyError::TooManyVirtualConnections(self.vcs.len()));
                }
                self.vcs.insert(
                    cookie,
                    VirtualConnection::new(target, now, self.config.max_fragment),
                );
            }
        }
        if let Some(ch) = self.channels.get_mut(&channel) {
            ch.vc = Some(cookie);
        }
        Ok(())
    }

    /// CONN/A1 ([MS-RPCH] 3.2.4.5 with the server's part): the OUT response starts,
    /// the back-end connection opens, CONN/A3 goes out (and CONN/C2 if the IN channel
    /// is in already).
    fn on_conn_a1(
        &mut self,
        now: Duration,
        channel: ChannelId,
        pdu: &RtsPdu,
    ) -> Result<(), ProxyError> {
        let a1 = opening(pdu, ChannelKind::Out, "CONN/A1", RtsPdu::as_conn_a1, |a| {
            a.version
        })?;
        if !(MIN_RECEIVE_WINDOW..=MAX_RECEIVE_WINDOW).contains(&a1.receive_window_size) {
            return Err(ProxyError::ReceiveWindow(a1.receive_window_size));
        }
        let cookie = a1.virtual_connection_cookie;
        self.join(now, channel, ChannelKind::Out, cookie)?;
        if let Some(ch) = self.channels.get_mut(&channel) {
            ch.response_started = true;
        }
        let backend = BackendId(self.next_backend);
        self.next_backend += 1;
        self.backends.insert(backend, cookie);
        let content_length = self.config.out_content_length;
        self.outputs.push_back(ProxyOutput::StartOutResponse {
            channel,
            content_length,
        });
        self.with_vc(cookie, |vc, outputs, config| {
            vc.out = Some(OutHalf::new(
                channel,
                a1.out_channel_cookie,
                a1.receive_window_size,
                now,
            ));
            vc.backend = Some(backend);
            outputs.push_back(ProxyOutput::ConnectBackend {
                backend,
                target: vc.target.clone(),
            });
            for bytes in std::mem::take(&mut vc.held) {
                outputs.push_back(ProxyOutput::WriteBackend { backend, bytes });
            }
            vc.held_octets = 0;
            let a3 = RtsPdu::conn_a3(timeout_ms(config.connection_timeout));
            vc.send_rts(outputs, config, &a3)?;
            vc.open_if_paired(outputs, config)
        })
    }

    /// CONN/B1 ([MS-RPCH] 3.2.3.5.3 with the server's part): the AssociationGroupId and
    /// keep-alive are recorded; CONN/C2 goes out if the OUT channel is in already.
    fn on_conn_b1(
        &mut self,
        now: Duration,
        channel: ChannelId,
        pdu: &RtsPdu,
    ) -> Result<(), ProxyError> {
        let b1 = opening(pdu, ChannelKind::In, "CONN/B1", RtsPdu::as_conn_b1, |b| {
            b.version
        })?;
        // [MS-RPCH] 2.2.3.5.5: 128 KiB to 2 GiB, and the request body (2.1.2.1.1) is
        // what the channel carries: a lifetime past it cannot be the channel's.
        let declared = self.channels.get(&channel).map_or(0, |c| c.declared);
        let lifetime = u64::from(b1.channel_lifetime);
        if !(MIN_CHANNEL_LIFETIME..=MAX_IN_REQUEST_LENGTH).contains(&lifetime)
            || lifetime > declared
        {
            return Err(ProxyError::ChannelLifetime {
                lifetime: b1.channel_lifetime,
                declared,
            });
        }
        let cookie = b1.virtual_connection_cookie;
        self.join(now, channel, ChannelKind::In, cookie)?;
        let window = u64::from(self.config.in_receive_window);
        self.with_vc(cookie, |vc, outputs, config| {
            vc.inbound = Some(InHalf {
                channel,
                cookie: b1.in_channel_cookie,
                bytes_received: 0,
                acked: 0,
                limit: window,
            });
            vc.association_group_id = Some(b1.association_group_id);
            vc.keepalive = Some(keepalive(b1.client_keepalive));
            vc.open_if_paired(outputs, config)
        })
    }

    /// RTS PDUs on a joined IN channel: flow-control acks for the OUT channel,
    /// keep-alive, ping, the client's recycling steps (IN_R2/A5, OUT_R2/A7).
    fn on_in_rts(
        &mut self,
        cookie: RtsCookie,
        channel: ChannelId,
        pdu: &RtsPdu,
    ) -> Result<(), ProxyError> {
        if let Some((destination, ack)) = pdu.as_flow_control_ack() {
            // 2.2.4.51: the client addresses its acks for the OUT channel to the
            // outbound proxy.
            if destination.is_some_and(|d| d != ForwardDestination::OUT_PROXY) {
                return Err(ProxyError::Unexpected {
                    kind: ChannelKind::In,
                    expected: "a FlowControlAck for the outbound proxy",
                    got: format!("one for {destination:?}"),
                });
            }
            return self.with_vc(cookie, |vc, outputs, config| {
                vc.apply_ack(outputs, config, ack)
            });
        }
        if let [harness_wire::rpch::RtsCommand::ClientKeepalive(ms)] = pdu.commands.as_slice() {
            if pdu.is(RtsPduKind::KeepAlive) {
                let interval = keepalive(*ms);
                return self.with_vc(cookie, |vc, _, _| {
                    vc.keepalive = Some(interval);
                    Ok(())
                });
            }
        }
        if pdu.is(RtsPduKind::Ping) {
            return self.with_vc(cookie, |vc, outputs, config| {
                vc.pings_answered += 1;
                vc.send_rts(outputs, config, &RtsPdu::ping())
            });
        }
        if pdu.is(RtsPduKind::PingTrafficSentNotify) {
            return Ok(());
        }
        if let Some(successor) = as_out_r2_a7(pdu) {
            return self.on_out_r2_a7(cookie, successor);
        }
        if let Some(successor) = as_in_r2_a5(pdu) {
            return self.on_in_r2_a5(cookie, channel, successor);
        }
        Err(if is_recycling(pdu) {
            ProxyError::RecycleOutOfState {
                kind: ChannelKind::In,
                got: describe(pdu),
                state: "the client sends only IN_R2/A1, IN_R2/A5 and OUT_R2/A7 here",
            }
        } else {
            ProxyError::Unexpected {
                kind: ChannelKind::In,
                expected: "a client PDU, FlowControlAck, Keep-Alive or Ping",
                got: describe(pdu),
            }
        })
    }

    /// OUT_R2/A3 opening a new OUT channel ([MS-RPCH] 3.2.4.5.6.1, the virtual
    /// connection always found here): the successor joins plugged, and the server's
    /// OUT_R2/A5 answer to OUT_R2/A4 goes to the client as OUT_R2/A6 on the predecessor.
    /// Only after OUT_R2/A2 asked for it: otherwise it is a second OUT channel with a
    /// live cookie, refused alone.
    fn on_out_r2_a3(
        &mut self,
        now: Duration,
        channel: ChannelId,
        (version, cookies, window): (u32, RecycleCookies, u32),
    ) -> Result<(), ProxyError> {
        if version != RTS_VERSION {
            return Err(ProxyError::Version(version));
        }
        if !(MIN_RECEIVE_WINDOW..=MAX_RECEIVE_WINDOW).contains(&window) {
            return Err(ProxyError::ReceiveWindow(window));
        }
        let cookie = cookies.virtual_connection;
        self.check_recycle_target(channel, ChannelKind::Out, cookie)?;
        let Some(vc) = self.vcs.get_mut(&cookie) else {
            return Err(ProxyError::RecycleUnknownConnection {
                kind: ChannelKind::Out,
            });
        };
        // 3.2.4.5.6.1 makes a wrong predecessor a protocol error; only the new channel
        // is refused here, so that the virtual connection's cookie alone (without its
        // OUT channel's) cannot end it.
        let predecessor = vc.out.as_ref().map(|o| o.cookie).unwrap_or_default();
        if cookies.predecessor != predecessor {
            return Err(ProxyError::RecyclePredecessor {
                kind: ChannelKind::Out,
                expected: predecessor,
                got: cookies.predecessor,
            });
        }
        let Some(OutRecycle::A3Wait { since }) = vc.out_recycle else {
            return Err(ProxyError::RecycleOutOfState {
                kind: ChannelKind::Out,
                got: "OUT_R2/A3".into(),
                state: vc.out_recycle.map_or("no OUT_R2/A2 sent", OutRecycle::name),
            });
        };
        if let Some(ch) = self.channels.get_mut(&channel) {
            ch.vc = Some(cookie);
        }
        vc.clock = now;
        vc.out_recycle = Some(OutRecycle::Successor {
            since,
            channel,
            cookie: cookies.successor,
            window,
            c1: false,
        });
        vc.send_rts(&mut self.outputs, &self.config, &RtsPdu::out_r2_a6())
    }

    /// A recycling request's target must be its virtual connection's; a request for no
    /// virtual connection is refused alone.
    fn check_recycle_target(
        &self,
        channel: ChannelId,
        kind: ChannelKind,
        cookie: RtsCookie,
    ) -> Result<(), ProxyError> {
        let (Some(ch), Some(vc)) = (self.channels.get(&channel), self.vcs.get(&cookie)) else {
            return Err(ProxyError::RecycleUnknownConnection { kind });
        };
        if ch.target != vc.target {
            let (in_target, out_target) = match kind {
                ChannelKind::In => (ch.target.to_string(), vc.target.to_string()),
                ChannelKind::Out => (vc.target.to_string(), ch.target.to_string()),
            };
            return Err(ProxyError::TargetMismatch {
                in_target,
                out_target,
            });
        }
        Ok(())
    }

    /// RTS PDUs on a joined OUT channel: only a successor's OUT_R2/C1 (2.2.4.45, the
    /// filler of its request body).
    fn on_out_rts(
        &mut self,
        cookie: RtsCookie,
        channel: ChannelId,
        pdu: &RtsPdu,
    ) -> Result<(), ProxyError> {
        let recycle = self.vcs.get(&cookie).and_then(|vc| vc.out_recycle);
        let successor = recycle.and_then(OutRecycle::successor) == Some(channel);
        if !pdu.is(RtsPduKind::OutR2C1) || !successor {
            return Err(if is_recycling(pdu) {
                ProxyError::RecycleOutOfState {
                    kind: ChannelKind::Out,
                    got: describe(pdu),
                    state: recycle.map_or("no recycling", OutRecycle::name),
                }
            } else {
                ProxyError::Unexpected {
                    kind: ChannelKind::Out,
                    expected: "nothing after CONN/A1 or OUT_R2/C1",
                    got: describe(pdu),
                }
            });
        }
        match recycle {
            // 3.2.4.5.6.1's B1OrC1W: C1 first, B1 (here OUT_R2/A7) to come.
            Some(OutRecycle::Successor {
                since,
                channel,
                cookie: successor,
                window,
                c1: false,
            }) => {
                if let Some(vc) = self.vcs.get_mut(&cookie) {
                    vc.out_recycle = Some(OutRecycle::Successor {
                        since,
                        channel,
                        cookie: successor,
                        window,
                        c1: true,
                    });
                }
                Ok(())
            }
            Some(OutRecycle::C1Wait { .. }) => {
                if let Some(vc) = self.vcs.get_mut(&cookie) {
                    vc.out_recycle = None;
                }
                self.unplug_out(cookie)
            }
            _ => Err(ProxyError::RecycleOutOfState {
                kind: ChannelKind::Out,
                got: describe(pdu),
                state: "OUT_R2/C1 came already",
            }),
        }
    }

    /// OUT_R2/A7 on the IN channel: the server's OUT_R2/A8 and its OUT_R2/B1 collapsed,
    /// so the outbound proxy's OUT_R2/B1 steps (3.2.4.5.10): what the predecessor's
    /// window and lifetime take, OUT_R2/B3 on it, the successor becomes the OUT channel
    /// with the rest of the queue and a fresh window, the predecessor is closed. Its
    /// response starts now when OUT_R2/C1 came, else when it comes.
    fn on_out_r2_a7(&mut self, cookie: RtsCookie, got: RtsCookie) -> Result<(), ProxyError> {
        let Some(vc) = self.vcs.get_mut(&cookie) else {
            return Ok(());
        };
        let Some(OutRecycle::Successor {
            since,
            channel,
            cookie: successor,
            window,
            c1,
        }) = vc.out_recycle
        else {
            return Err(ProxyError::RecycleOutOfState {
                kind: ChannelKind::In,
                got: "OUT_R2/A7".into(),
                state: vc.out_recycle.map_or("no recycling", OutRecycle::name),
            });
        };
        if got != successor {
            return Err(ProxyError::RecycleSuccessor {
                kind: ChannelKind::Out,
                expected: successor,
                got,
            });
        }
        let (outputs, config) = (&mut self.outputs, &self.config);
        vc.flush_out(outputs, config)?;
        vc.send_rts(outputs, config, &RtsPdu::out_r2_b3())?;
        let mut next = OutHalf::new(channel, successor, window, vc.clock);
        next.plugged = true;
        let mut predecessor = vc.out.replace(next);
        if let (Some(out), Some(pred)) = (vc.out.as_mut(), predecessor.as_mut()) {
            // Nothing lost, nothing twice: the queue moves over in order.
            out.queue = std::mem::take(&mut pred.queue);
            out.queued = std::mem::take(&mut pred.queued);
        }
        vc.out_recycles += 1;
        vc.out_recycle = (!c1).then_some(OutRecycle::C1Wait { since, channel });
        if let Some(pred) = predecessor {
            self.channels.remove(&pred.channel);
            outputs.push_back(ProxyOutput::CloseChannel {
                channel: pred.channel,
                status: None,
            });
        }
        if c1 {
            self.unplug_out(cookie)?;
        }
        Ok(())
    }

    /// The successor OUT channel's response starts ([MS-RPCH] 2.1.2.1.4): what waited
    /// for it goes out, RTS PDUs first.
    fn unplug_out(&mut self, cookie: RtsCookie) -> Result<(), ProxyError> {
        let Some(vc) = self.vcs.get_mut(&cookie) else {
            return Ok(());
        };
        let Some(out) = vc.out.as_mut() else {
            return Ok(());
        };
        out.plugged = false;
        let channel = out.channel;
        let held = std::mem::take(&mut out.held_rts);
        if let Some(ch) = self.channels.get_mut(&channel) {
            ch.response_started = true;
        }
        let (outputs, config) = (&mut self.outputs, &self.config);
        outputs.push_back(ProxyOutput::StartOutResponse {
            channel,
            content_length: config.out_content_length,
        });
        for bytes in held {
            vc.write_out(outputs, config, bytes)?;
        }
        vc.flush_out(outputs, config)
    }

    /// IN_R1/A1 or IN_R2/A1 opening a new IN channel ([MS-RPCH] 3.2.3.5.5.1, the virtual
    /// connection always found here, so IN_R2): the predecessor must name the IN channel
    /// (else the new channel alone is refused), the virtual connection be open and not
    /// recycling its IN channel already (else it ends); the successor joins plugged and
    /// the server's IN_R2/A3 goes to the client as IN_R2/A4.
    fn on_in_r2_a1(
        &mut self,
        now: Duration,
        channel: ChannelId,
        (version, cookies): (u32, RecycleCookies),
    ) -> Result<(), ProxyError> {
        if version != RTS_VERSION {
            return Err(ProxyError::Version(version));
        }
        let cookie = cookies.virtual_connection;
        self.check_recycle_target(channel, ChannelKind::In, cookie)?;
        let Some(vc) = self.vcs.get_mut(&cookie) else {
            return Ok(());
        };
        // 3.2.3.5.5.1 makes a wrong predecessor a protocol error; only the new channel is
        // refused here, so that the virtual connection's cookie alone (without its IN
        // channel's) cannot end it.
        let Some(predecessor) = vc.inbound.as_ref().map(|i| i.cookie) else {
            return Err(ProxyError::RecycleOutOfState {
                kind: ChannelKind::In,
                got: "IN_R2/A1".into(),
                state: "no IN channel",
            });
        };
        if cookies.predecessor != predecessor {
            return Err(ProxyError::RecyclePredecessor {
                kind: ChannelKind::In,
                expected: predecessor,
                got: cookies.predecessor,
            });
        }
        if let Some(ch) = self.channels.get_mut(&channel) {
            ch.vc = Some(cookie);
        }
        // From here on a fault is the virtual connection's (3.2.3.5.10).
        let state = match vc.in_successor {
            _ if !vc.opened => Some("the virtual connection is not open"),
            Some(_) => Some("a successor IN channel is opening already"),
            None => None,
        };
        if let Some(state) = state {
            return Err(ProxyError::RecycleOutOfState {
                kind: ChannelKind::In,
                got: "IN_R2/A1".into(),
                state,
            });
        }
        vc.clock = now;
        vc.in_successor = Some(InSuccessor {
            channel,
            cookie: cookies.successor,
            since: now,
            held: Vec::new(),
            held_octets: 0,
        });
        vc.send_rts(&mut self.outputs, &self.config, &RtsPdu::in_r2_a4())
    }

    /// IN_R2/A5 on the predecessor IN channel: the switch (the step 3.2.3.5.5.1 waits for): the
    /// successor becomes the IN channel with the flow-control counts carried over, what
    /// it held goes to the back-end after everything the predecessor carried, and the
    /// predecessor is closed.
    fn on_in_r2_a5(
        &mut self,
        cookie: RtsCookie,
        channel: ChannelId,
        got: RtsCookie,
    ) -> Result<(), ProxyError> {
        let Some(vc) = self.vcs.get_mut(&cookie) else {
            return Ok(());
        };
        let on_predecessor = vc.inbound.as_ref().is_some_and(|i| i.channel == channel);
        let Some(successor) = vc.in_successor.as_ref().filter(|_| on_predecessor) else {
            return Err(ProxyError::RecycleOutOfState {
                kind: ChannelKind::In,
                got: "IN_R2/A5".into(),
                state: if vc.in_successor.is_some() {
                    "IN_R2/A5 belongs on the predecessor"
                } else {
                    "no successor IN channel"
                },
            });
        };
        if got != successor.cookie {
            return Err(ProxyError::RecycleSuccessor {
                kind: ChannelKind::In,
                expected: successor.cookie,
                got,
            });
        }
        let Some(successor) = vc.in_successor.take() else {
            return Ok(());
        };
        let Some(inbound) = vc.inbound.as_mut() else {
            return Ok(());
        };
        let predecessor = std::mem::replace(&mut inbound.channel, successor.channel);
        inbound.cookie = successor.cookie;
        vc.in_recycles += 1;
        let (outputs, config) = (&mut self.outputs, &self.config);
        for bytes in successor.held {
            match vc.backend {
                Some(backend) => outputs.push_back(ProxyOutput::WriteBackend { backend, bytes }),
                None => {
                    vc.held_octets += bytes.len();
                    vc.held.push(bytes);
                }
            }
        }
        self.channels.remove(&predecessor);
        outputs.push_back(ProxyOutput::CloseChannel {
            channel: predecessor,
            status: None,
        });
        vc.maybe_ack_in(outputs, config)
    }

    /// Ends `channel` for `reason`: its virtual connection with it when it joined one,
    /// else the channel alone (nothing if it is gone already). Returns `reason`.
    fn fail(&mut self, channel: ChannelId, reason: ProxyError) -> ProxyError {
        match self.channels.get(&channel).map(|c| c.vc) {
            Some(Some(cookie)) => {
                self.end_vc(cookie, reason.clone());
                reason
            }
            Some(None) => self.refuse(channel, reason),
            None => reason,
        }
    }

    /// Refuses a channel that joined no virtual connection (or refuses to let it
    /// join one): its status, its close. Returns `reason`.
    fn refuse(&mut self, channel: ChannelId, reason: ProxyError) -> ProxyError {
        let started = self
            .channels
            .remove(&channel)
            .is_some_and(|c| c.response_started);
        self.outputs.push_back(ProxyOutput::CloseChannel {
            channel,
            status: (!started).then(|| reason.status()),
        });
        self.outputs.push_back(ProxyOutput::Ended {
            cookie: None,
            channel: Some(channel),
            reason: reason.clone(),
        });
        reason
    }

    /// Ends a virtual connection: both channels (a status where the response has not
    /// started), the back-end connection.
    /// A client's bind on a virtual connection whose AssociationGroupId already has a
    /// back-end group: asks for that group (a bind that names a group itself is left as
    /// it is).
    fn join_group(
        &self,
        cookie: RtsCookie,
        packet_type: PacketType,
        mut frame: Vec<u8>,
    ) -> Vec<u8> {
        let group = self
            .vcs
            .get(&cookie)
            .and_then(|vc| vc.association_group_id)
            .and_then(|g| self.groups.get(&g));
        if let (PacketType::BIND, Some(id)) = (packet_type, group) {
            if let Some(field) = frame.get_mut(ASSOC_GROUP_AT) {
                if field == [0; 4] {
                    field.copy_from_slice(&id.to_le_bytes());
                }
            }
        }
        frame
    }

    fn end_vc(&mut self, cookie: RtsCookie, reason: ProxyError) {
        let Some(vc) = self.vcs.remove(&cookie) else {
            return;
        };
        // The group mapping lives as long as a virtual connection of it does.
        if let Some(group) = vc.association_group_id {
            if !self
                .vcs
                .values()
                .any(|v| v.association_group_id == Some(group))
            {
                self.groups.remove(&group);
            }
        }
        // Its channels, successors of a recycling included.
        let mut channels: Vec<ChannelId> = self
            .channels
            .iter()
            .filter(|(_, c)| c.vc == Some(cookie))
            .map(|(id, _)| *id)
            .collect();
        channels.sort();
        for id in channels {
            if let Some(ch) = self.channels.remove(&id) {
                self.outputs.push_back(ProxyOutput::CloseChannel {
                    channel: id,
                    status: (!ch.response_started).then(|| reason.status()),
                });
            }
        }
        if let Some(backend) = vc.backend {
            self.backends.remove(&backend);
            self.outputs
                .push_back(ProxyOutput::CloseBackend { backend });
        }
        self.outputs.push_back(ProxyOutput::Ended {
            cookie: Some(cookie),
            channel: None,
            reason,
        });
    }
}

/// ClientKeepalive in milliseconds, 0 read as 300,000 ([MS-RPCH] 2.2.3.5.6).
fn keepalive(ms: u32) -> Duration {
    let ms = if ms == 0 { DEFAULT_KEEPALIVE_MS } else { ms };
    Duration::from_millis(u64::from(ms))
}
