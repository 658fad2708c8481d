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
//! Every failure ends the virtual connection it belongs to (or, before a channel has
//! joined one, that channel alone) with a typed [`ProxyError`], reported in
//! [`ProxyOutput::Ended`] and returned by the input that caused it; other virtual
//! connections are not touched.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::Duration;

use harness_wire::dcerpc::{FramerError, PacketType, PduFramer};
use harness_wire::rpch::{
    FlowControlAck, ForwardDestination, RtsCookie, RtsError, RtsPdu, RtsPduKind,
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
const MAX_OUT_REQUEST_LENGTH: u64 = 4096;
const CONN_A1_LEN: u64 = 76;
/// CONN/B1 is 104 octets; the IN request declares its whole lifetime (impacket and
/// Outlook: 1 GiB), at most 2 GiB ([MS-RPCH] 2.1.2.1.1).
const CONN_B1_LEN: u64 = 104;
const MAX_IN_REQUEST_LENGTH: u64 = 0x8000_0000;

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
    /// The OUT response's Content-Length: the octets the OUT channel can carry before
    /// it would have to be recycled (128 KiB to 2 GiB, [MS-RPCH] 2.1.2.1.4).
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
    #[error("rpch: the OUT channel's Content-Length {0} is spent (recycling not supported)")]
    OutChannelSpent(u32),
    #[error("rpch: channel recycling ({0}) is not supported yet")]
    RecyclingUnsupported(&'static str),
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
    /// The client's ReceiveWindowSize (CONN/A1).
    window: u32,
    /// Sender AvailableWindow.
    available: u32,
    /// BytesSent: RPC octets only (RTS PDUs are outside flow control, 3.2.1.1.5.1).
    bytes_sent: u64,
    /// Every octet of the response body, against its Content-Length.
    written: u64,
    queue: VecDeque<Vec<u8>>,
    queued: usize,
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
}

impl VirtualConnection {
    fn new(target: Target, now: Duration, max_fragment: u16) -> VirtualConnection {
        VirtualConnection {
            target,
            created: now,
            last_activity: now,
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
        }
    }

    fn buffered(&self) -> usize {
        self.backend_framer.buffered()
            + self.held_octets
            + self.out.as_ref().map_or(0, |o| o.queued)
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
        let Some(out) = self.out.as_mut() else {
            return Ok(());
        };
        let written = out.written + bytes.len() as u64;
        if written > u64::from(config.out_content_length) {
            return Err(ProxyError::OutChannelSpent(config.out_content_length));
        }
        out.written = written;
        outputs.push_back(ProxyOutput::Write {
            channel: out.channel,
            bytes,
        });
        Ok(())
    }

    /// Sends queued back-end PDUs while the client's window has room (3.2.1.4.1.3).
    fn flush_out(&mut self, outputs: &mut Outputs, config: &ProxyConfig) -> Result<(), ProxyError> {
        loop {
            let Some(out) = self.out.as_mut() else {
                return Ok(());
            };
            let Some(len) = out.queue.front().map(Vec::len) else {
                return Ok(());
            };
            if len > out.window as usize {
                return Err(ProxyError::PduOverWindow {
                    len,
                    window: out.window,
                });
            }
            if len > out.available as usize {
                return Ok(());
            }
            let Some(pdu) = out.queue.pop_front() else {
                return Ok(());
            };
            out.queued -= len;
            out.available -= len as u32;
            out.bytes_sent += len as u64;
            self.write_out(outputs, config, pdu)?;
        }
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
            // An ack naming no channel of this connection is dropped (the spec's
            // FlowControlAck processing).
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
        let available = window.saturating_sub(self.held_octets as u32);
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

    /// A client PDU off the IN channel: to the back-end, or held until CONN/A1 opens it.
    fn take_client_pdu(
        &mut self,
        outputs: &mut Outputs,
        config: &ProxyConfig,
        pdu: Vec<u8>,
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
        match self.backend {
            Some(backend) => outputs.push_back(ProxyOutput::WriteBackend {
                backend,
                bytes: pdu,
            }),
            None => {
                self.held_octets += pdu.len();
                self.held.push(pdu);
            }
        }
        self.maybe_ack_in(outputs, config)
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
            out_bytes_sent: self.out.as_ref().map_or(0, |o| o.bytes_sent),
            out_available_window: self.out.as_ref().map_or(0, |o| o.available),
            out_queued: self.out.as_ref().map_or(0, |o| o.queued),
            in_bytes_received: self.inbound.as_ref().map_or(0, |i| i.bytes_received),
            buffered: self.buffered(),
        }
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

/// The recycling PDU this is, if its layout is one (IN_R1, IN_R2, OUT_R1, OUT_R2:
/// [MS-RPCH] 2.2.4.10 to 2.2.4.45).
fn recycling(pdu: &RtsPdu) -> Option<&'static str> {
    pdu.classify()
        .into_iter()
        .map(RtsPduKind::name)
        .find(|n| n.starts_with("IN_R") || n.starts_with("OUT_R"))
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
            ChannelKind::In => (CONN_B1_LEN, MAX_IN_REQUEST_LENGTH),
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
        }
        for frame in frames {
            if let Err(e) = self.on_frame(now, channel, kind, frame) {
                return Err(self.fail(channel, e));
            }
        }
        framed.map_err(|e| self.fail(channel, ProxyError::Framing(e)))
    }

    /// The client closed a channel (or its connection broke): its virtual connection
    /// ends (recycling, which would keep it, is not supported yet).
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
    pub fn backend_closed(&mut self, _now: Duration, backend: BackendId) {
        let Some(cookie) = self.backends.remove(&backend) else {
            return;
        };
        if let Some(vc) = self.vcs.get_mut(&cookie) {
            vc.backend = None;
            let _ = vc.flush_out(&mut self.outputs, &self.config);
        }
        self.end_vc(cookie, ProxyError::BackendClosed);
    }

    /// When [`RpcProxy::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let channels = self
            .channels
            .values()
            .filter(|c| c.vc.is_none())
            .map(|c| c.opened_at + self.config.pairing_timeout);
        let vcs = self.vcs.values().map(|vc| self.vc_deadline(vc));
        channels.chain(vcs).min()
    }

    fn vc_deadline(&self, vc: &VirtualConnection) -> Duration {
        let idle = vc.last_activity + self.config.connection_timeout;
        if vc.opened {
            idle
        } else {
            idle.min(vc.created + self.config.pairing_timeout)
        }
    }

    /// Ends what is overdue: channels that sent no RTS PDU, virtual connections whose
    /// other channel did not come, idle virtual connections.
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
        let overdue: Vec<(RtsCookie, ProxyError)> = self
            .vcs
            .iter()
            .filter(|(_, vc)| self.vc_deadline(vc) <= now)
            .map(|(cookie, vc)| {
                let reason = match (vc.opened, vc.out.is_some()) {
                    (true, _) => ProxyError::Idle,
                    (false, true) => ProxyError::NoInChannel,
                    (false, false) => ProxyError::UnknownCookie,
                };
                (*cookie, reason)
            })
            .collect();
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
                        vc.take_client_pdu(outputs, config, frame)
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
            (ChannelKind::Out, None) => self.on_conn_a1(now, channel, &pdu),
            (ChannelKind::In, None) => self.on_conn_b1(now, channel, &pdu),
            (ChannelKind::Out, Some(_)) => Err(match recycling(&pdu) {
                Some(name) => ProxyError::RecyclingUnsupported(name),
                None => ProxyError::Unexpected {
                    kind,
                    expected: "nothing after CONN/A1",
                    got: describe(&pdu),
                },
            }),
            (ChannelKind::In, Some(cookie)) => self.on_in_rts(cookie, &pdu),
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
            vc.out = Some(OutHalf {
                channel,
                cookie: a1.out_channel_cookie,
                window: a1.receive_window_size,
                available: a1.receive_window_size,
                bytes_sent: 0,
                written: 0,
                queue: VecDeque::new(),
                queued: 0,
            });
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
    /// keep-alive, ping.
    fn on_in_rts(&mut self, cookie: RtsCookie, pdu: &RtsPdu) -> Result<(), ProxyError> {
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
        Err(match recycling(pdu) {
            Some(name) => ProxyError::RecyclingUnsupported(name),
            None => ProxyError::Unexpected {
                kind: ChannelKind::In,
                expected: "a client PDU, FlowControlAck, Keep-Alive or Ping",
                got: describe(pdu),
            },
        })
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
        let channels = [
            vc.out.as_ref().map(|o| o.channel),
            vc.inbound.as_ref().map(|i| i.channel),
        ];
        for id in channels.into_iter().flatten() {
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
