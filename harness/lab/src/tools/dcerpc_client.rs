//! A DCE/RPC client over ncacn_ip_tcp: the sans-IO
//! [`ClientAssociation`](harness_core::dcerpc::client::ClientAssociation) driven over one
//! TCP connection, every exchange bounded by a timeout.
//!
//! ```ignore
//! let mut rpc = RpcConnection::connect(addr, RpcBind::new(SRVSVC)).await?;
//! let reply = rpc.call(28, &[0; 4]).await?;
//! ```
//!
//! Nagle is off: the auth3 leg gets no reply, so with Nagle the first request would wait
//! for the server's delayed ACK of it (about 40 ms on Linux).
//!
//! The same association also runs over RPC over HTTP v2 ([`RpcConnection::connect_http`]):
//! the PDUs go out in the IN channel's request body and come back in the OUT channel's
//! response body, through an RPC proxy ([MS-RPCH]; the lab's `--rpch`, or IIS), each
//! channel an HTTP/1.1 connection authenticated with Basic or NTLM (NTLM's legs on the
//! channel's own connection).

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use harness_core::dcerpc::client::{
    AckResult, AuthLevel, AuthType, BindAcked, BindSecurity, ClientAssociation, ClientConfig,
    ClientError, ClientEvent, ContextElement, ContextResult, FaultStatus, RejectReason, SyntaxId,
    Uuid,
};
use harness_core::dcerpc::kerberos::KerberosClientSecurity;
use harness_core::dcerpc::ntlm::NtlmClientSecurity;
use harness_core::ntlm::{Credentials, InitiatorOptions, NtlmInitiator, ResponseKind};
use harness_core::rpch::{RpchClient, RpchClientError, RpchCookies, RpchEvent, RtsClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

/// Why a connection or call failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("dcerpc: {0}")]
    Io(#[from] std::io::Error),
    #[error("dcerpc: no answer within {0:?}")]
    Timeout(Duration),
    #[error("dcerpc: the server closed the connection")]
    Closed,
    #[error(transparent)]
    Protocol(#[from] ClientError),
    #[error("dcerpc: bind refused: {0:?}")]
    BindNak(RejectReason),
    #[error("dcerpc: presentation context refused: {0:?}")]
    ContextRejected(ContextResult),
    #[error("dcerpc: fault {status:?}")]
    Fault { status: FaultStatus },
    #[error("dcerpc: the server asked to shut down")]
    Shutdown,
    /// The proxy answered a channel with an HTTP status other than the one expected (401
    /// for credentials it refused).
    #[error("rpc over http: {0}")]
    Http(String),
    /// A channel's request was answered with this status instead of being let in.
    #[error("{channel}: {line}")]
    Refused {
        channel: &'static str,
        code: u16,
        line: String,
    },
    /// The OUT channel's RTS traffic broke the protocol.
    #[error("rpc over http: {0}")]
    Rts(String),
}

/// What to bind: one interface on context 0, its transfer syntaxes, the security context
/// and the association's limits.
pub struct RpcBind {
    pub interface: SyntaxId,
    /// Offered for context 0, in order (NDR 2.0 by default).
    pub transfer_syntaxes: Vec<SyntaxId>,
    pub security: Option<BindSecurity>,
    pub config: ClientConfig,
    /// The bound on connect plus bind, and on each call.
    pub timeout: Duration,
}

impl RpcBind {
    /// `interface` over NDR 2.0, unauthenticated, default limits, 10 s per exchange.
    pub fn new(interface: SyntaxId) -> RpcBind {
        RpcBind {
            interface,
            transfer_syntaxes: vec![SyntaxId::NDR20],
            security: None,
            config: ClientConfig::default(),
            timeout: Duration::from_secs(10),
        }
    }

    pub fn with_security(mut self, security: BindSecurity) -> RpcBind {
        self.security = Some(security);
        self
    }
}

/// How the association's PDUs travel.
enum Wire {
    Tcp {
        tcp: TcpStream,
        association: Box<ClientAssociation>,
    },
    /// A virtual connection of RPC over HTTP v2: PDUs out on the IN channel, in on the
    /// OUT channel, through the client's RTS half (which holds the association).
    Http {
        in_channel: TcpStream,
        out_channel: TcpStream,
        rpch: Box<RpchClient>,
        /// OUT channel body octets read with the response head.
        pending: Vec<u8>,
    },
}

/// One bound association on one TCP connection (or one virtual connection of RPC over
/// HTTP).
pub struct RpcConnection {
    wire: Wire,
    acked: BindAcked,
    timeout: Duration,
    buf: Vec<u8>,
}

/// How the client authenticates to an RPC proxy's channels.
#[derive(Debug, Clone)]
pub enum HttpAuth {
    Basic {
        user: String,
        password: String,
    },
    /// NTLM's three legs on each channel's connection.
    Ntlm(Credentials),
}

/// An RPC over HTTP v2 proxy to go through, and the RPC server behind it.
#[derive(Debug, Clone)]
pub struct HttpProxy {
    pub addr: SocketAddr,
    /// The `Host` header.
    pub host: String,
    /// The RPC server and port the URL names: `MAIL:6004`.
    pub target: String,
    pub auth: HttpAuth,
}

/// The IN channel's declared length (its lifetime, as impacket and Outlook declare it).
const IN_CHANNEL_LENGTH: u64 = 0x4000_0000;
/// The OUT channel's receive window the client announces in CONN/A1.
const OUT_WINDOW: u32 = 0x1_0000;
/// A response head (and a 401's body) this long at most.
const MAX_HTTP_HEAD: usize = 64 * 1024;

impl RpcConnection {
    /// Connects (Nagle off), binds and runs the security legs; fails unless context 0
    /// is accepted.
    pub async fn connect(addr: SocketAddr, bind: RpcBind) -> Result<RpcConnection, RpcError> {
        let deadline = Instant::now() + bind.timeout;
        let tcp = timeout_at(deadline, TcpStream::connect(addr))
            .await
            .map_err(|_| RpcError::Timeout(bind.timeout))??;
        tcp.set_nodelay(true)?;
        let association = ClientAssociation::new(bind.config.clone());
        let conn = RpcConnection {
            wire: Wire::Tcp {
                tcp,
                association: Box::new(association),
            },
            acked: not_yet_bound(),
            timeout: bind.timeout,
            buf: vec![0; 8192],
        };
        conn.bind(bind, deadline).await
    }

    /// Binds through an RPC over HTTP v2 proxy: opens and authenticates the OUT channel
    /// (CONN/A1 in its body) and the IN channel (CONN/B1, then every PDU), waits for
    /// CONN/C2, then binds as [`RpcConnection::connect`] does.
    pub async fn connect_http(proxy: &HttpProxy, bind: RpcBind) -> Result<RpcConnection, RpcError> {
        let deadline = Instant::now() + bind.timeout;
        let rpch = RpchClient::new(
            fresh_cookies(),
            OUT_WINDOW,
            true,
            ClientAssociation::new(bind.config.clone()),
        );
        let (in_channel, out_channel, pending) =
            open_virtual_connection(proxy, &rpch.rts, deadline).await?;
        let mut conn = RpcConnection {
            wire: Wire::Http {
                in_channel,
                out_channel,
                rpch: Box::new(rpch),
                pending,
            },
            acked: not_yet_bound(),
            timeout: bind.timeout,
            buf: vec![0; 8192],
        };
        // CONN/A3, then CONN/C2: no RPC PDU comes before the bind.
        while !conn.http_open() {
            let mut events = Vec::new();
            conn.receive(deadline, &mut events).await??;
        }
        conn.bind(bind, deadline).await
    }

    /// CONN/C2 came (always true over TCP).
    fn http_open(&self) -> bool {
        match &self.wire {
            Wire::Tcp { .. } => true,
            Wire::Http { rpch, .. } => rpch.is_open(),
        }
    }

    fn association(&mut self) -> &mut ClientAssociation {
        match &mut self.wire {
            Wire::Tcp { association, .. } => association,
            Wire::Http { rpch, .. } => &mut rpch.association,
        }
    }

    /// Sends the bind and runs the security legs; fails unless context 0 is accepted.
    async fn bind(mut self, bind: RpcBind, deadline: Instant) -> Result<RpcConnection, RpcError> {
        let context = ContextElement {
            context_id: 0,
            abstract_syntax: bind.interface,
            transfer_syntaxes: bind.transfer_syntaxes,
        };
        let bind_pdu = self.association().bind(&[context], bind.security)?;
        let mut conn = self;
        conn.send(&bind_pdu, deadline).await?;
        let acked = conn
            .until(deadline, |event| match event {
                ClientEvent::BindAcked(acked) => Some(Ok(acked)),
                ClientEvent::BindNak { reason, .. } => Some(Err(RpcError::BindNak(reason))),
                ClientEvent::Fault { status, .. } => Some(Err(RpcError::Fault { status })),
                _ => None,
            })
            .await?;
        // A security leg that expects a reply keeps the association busy a while more.
        while !conn.association().is_ready() {
            conn.until(deadline, |event| match event {
                ClientEvent::AlterContextAcked(_) => Some(Ok(())),
                ClientEvent::Fault { status, .. } => Some(Err(RpcError::Fault { status })),
                _ => None,
            })
            .await?;
        }
        match acked.results.first() {
            Some(r) if r.result == AckResult::ACCEPTANCE => {}
            Some(r) => return Err(RpcError::ContextRejected(r.clone())),
            None => return Err(RpcError::Closed),
        }
        conn.acked = acked;
        Ok(conn)
    }

    /// What the bind negotiated.
    pub fn bind_acked(&self) -> &BindAcked {
        &self.acked
    }

    /// Calls `opnum` on context 0 with `stub`; the response stub, or the fault's status.
    pub async fn call(&mut self, opnum: u16, stub: &[u8]) -> Result<Vec<u8>, RpcError> {
        self.call_on(0, opnum, None, stub).await
    }

    /// [`RpcConnection::call`] on any accepted context, with an optional object UUID.
    pub async fn call_on(
        &mut self,
        context_id: u16,
        opnum: u16,
        object: Option<Uuid>,
        stub: &[u8],
    ) -> Result<Vec<u8>, RpcError> {
        let deadline = Instant::now() + self.timeout;
        let call = self.association().call(context_id, opnum, object, stub)?;
        for fragment in &call.fragments {
            self.send(fragment, deadline).await?;
        }
        let id = call.call_id;
        self.until(deadline, |event| match event {
            ClientEvent::Response { call_id, stub, .. } if call_id == id => Some(Ok(stub)),
            // call_id 0: a fault for the association rather than one call.
            ClientEvent::Fault {
                call_id, status, ..
            } if call_id == id || call_id == 0 => Some(Err(RpcError::Fault { status })),
            _ => None,
        })
        .await
    }

    async fn send(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), RpcError> {
        let stream = match &mut self.wire {
            Wire::Tcp { tcp, .. } => tcp,
            Wire::Http { in_channel, .. } => in_channel,
        };
        write_by(stream, bytes, deadline, self.timeout).await
    }

    /// Reads the next octets and turns them into association events (over HTTP through
    /// the RTS half, whose acks go out on the IN channel).
    async fn receive(
        &mut self,
        deadline: Instant,
        events: &mut Vec<ClientEvent>,
    ) -> Result<Result<(), RpcError>, RpcError> {
        let timeout = self.timeout;
        let (stream, pending) = match &mut self.wire {
            Wire::Tcp { tcp, .. } => (tcp, None),
            Wire::Http {
                out_channel,
                pending,
                ..
            } => (out_channel, Some(pending)),
        };
        let bytes = match pending.filter(|p| !p.is_empty()) {
            Some(p) => std::mem::take(p),
            None => {
                let n = timeout_at(deadline, stream.read(&mut self.buf))
                    .await
                    .map_err(|_| RpcError::Timeout(timeout))??;
                if n == 0 {
                    return Err(RpcError::Closed);
                }
                self.buf[..n].to_vec()
            }
        };
        match &mut self.wire {
            Wire::Tcp { association, .. } => {
                Ok(association.receive(&bytes, events).map_err(Into::into))
            }
            Wire::Http {
                rpch, in_channel, ..
            } => {
                let mut rpch_events = Vec::new();
                let fed = rpch.receive_out(&bytes, &mut rpch_events);
                events.extend(rpch_events.into_iter().filter_map(|e| match e {
                    RpchEvent::Rpc(e) => Some(e),
                    _ => None,
                }));
                match fed {
                    Ok(ack) if !ack.is_empty() => {
                        write_by(in_channel, &ack, deadline, timeout).await?;
                        Ok(Ok(()))
                    }
                    Ok(_) => Ok(Ok(())),
                    Err(RpchClientError::Association(e)) => Ok(Err(RpcError::Protocol(e))),
                    Err(e) => Ok(Err(RpcError::Rts(e.to_string()))),
                }
            }
        }
    }

    /// Reads and feeds the association until `pick` takes an event (writing every
    /// [`ClientEvent::Send`] on the way), the deadline passes or the connection ends.
    async fn until<T>(
        &mut self,
        deadline: Instant,
        mut pick: impl FnMut(ClientEvent) -> Option<Result<T, RpcError>>,
    ) -> Result<T, RpcError> {
        loop {
            let mut events = Vec::new();
            let fed = self.receive(deadline, &mut events).await?;
            let mut picked = None;
            for event in events {
                match event {
                    ClientEvent::Send(bytes) => self.send(&bytes, deadline).await?,
                    ClientEvent::Shutdown => return Err(RpcError::Shutdown),
                    other => {
                        if picked.is_none() {
                            picked = pick(other);
                        }
                    }
                }
            }
            if let Some(result) = picked {
                return result;
            }
            fed?;
        }
    }
}

/// What [`RpcConnection::acked`] holds until the bind_ack comes.
fn not_yet_bound() -> BindAcked {
    BindAcked {
        results: Vec::new(),
        max_xmit_frag: 0,
        max_recv_frag: 0,
        assoc_group_id: 0,
        secondary_address: String::new(),
        features: None,
        header_sign: false,
    }
}

pub(crate) async fn write_by(
    stream: &mut TcpStream,
    bytes: &[u8],
    deadline: Instant,
    timeout: Duration,
) -> Result<(), RpcError> {
    timeout_at(deadline, stream.write_all(bytes))
        .await
        .map_err(|_| RpcError::Timeout(timeout))??;
    Ok(())
}

/// A response's status.
pub(crate) struct Status {
    pub(crate) code: u16,
    pub(crate) line: String,
}

/// A response head: the status, the WWW-Authenticate values, the Content-Length, and
/// what was read past the head.
struct Head {
    status: Status,
    authenticate: Vec<String>,
    length: usize,
    rest: Vec<u8>,
}

async fn read_head<S: AsyncReadExt + Unpin>(
    stream: &mut S,
    deadline: Instant,
    timeout: Duration,
) -> Result<Head, RpcError> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if buf.len() > MAX_HTTP_HEAD {
            return Err(RpcError::Http("response head over 64 KiB".into()));
        }
        let n = timeout_at(deadline, stream.read(&mut chunk))
            .await
            .map_err(|_| RpcError::Timeout(timeout))??;
        if n == 0 {
            return Err(RpcError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let rest = buf[end + 4..].to_vec();
    let parsed = crate::serve::http::parse_response_head(&head).ok_or_else(|| {
        let line = head.lines().next().unwrap_or_default();
        RpcError::Http(format!("not an HTTP response: {line:?}"))
    })?;
    Ok(Head {
        status: Status {
            code: parsed.code,
            line: parsed.line,
        },
        authenticate: parsed.www_authenticate,
        length: parsed.length,
        rest,
    })
}

/// Reads `head`'s Content-Length body (at most 64 KiB) after what came with the head.
async fn read_body<S: AsyncReadExt + Unpin>(
    stream: &mut S,
    head: &mut Head,
    deadline: Instant,
    timeout: Duration,
) -> Result<Vec<u8>, RpcError> {
    if head.length > MAX_HTTP_HEAD {
        return Err(RpcError::Http(format!(
            "{}: body over 64 KiB",
            head.status.line
        )));
    }
    let mut chunk = [0u8; 4096];
    let mut body = std::mem::take(&mut head.rest);
    while body.len() < head.length {
        let n = timeout_at(deadline, stream.read(&mut chunk))
            .await
            .map_err(|_| RpcError::Timeout(timeout))??;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(head.length);
    Ok(body)
}

/// Reads a response head and, for a non-200 status, its Content-Length body. Returns the
/// status, the WWW-Authenticate values, and what was read past the head (of a 200: the
/// start of the OUT channel's body).
pub(crate) async fn read_response<S: AsyncReadExt + Unpin>(
    stream: &mut S,
    deadline: Instant,
    timeout: Duration,
) -> Result<(Status, Vec<String>, Vec<u8>), RpcError> {
    let mut head = read_head(stream, deadline, timeout).await?;
    if head.status.code != 200 {
        read_body(stream, &mut head, deadline, timeout).await?;
    }
    Ok((head.status, head.authenticate, head.rest))
}

/// Reads a whole response with a Content-Length body (a page): the status, the
/// WWW-Authenticate values and the body.
pub(crate) async fn read_page<S: AsyncReadExt + Unpin>(
    stream: &mut S,
    deadline: Instant,
    timeout: Duration,
) -> Result<(Status, Vec<String>, Vec<u8>), RpcError> {
    let mut head = read_head(stream, deadline, timeout).await?;
    let body = read_body(stream, &mut head, deadline, timeout).await?;
    Ok((head.status, head.authenticate, body))
}

/// Fresh cookies for a virtual connection; without OS randomness, the clock and a
/// counter still keep two connections from sharing them.
pub(crate) fn fresh_cookies() -> RpchCookies {
    static CONNECTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut seed = [0u8; 8];
    if getrandom::getrandom(&mut seed).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let n = CONNECTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        seed = (nanos ^ n.rotate_left(32)).to_le_bytes();
    }
    RpchCookies::from_seed(u64::from_le_bytes(seed))
}

/// Opens a virtual connection's two channels through `proxy` for `rts`: the OUT channel
/// (authenticated, CONN/A1), the IN channel (authenticated, CONN/B1), and the OUT
/// channel's response head. Returns the IN and OUT channels and the OUT channel's body
/// octets read with the head.
pub(crate) async fn open_virtual_connection(
    proxy: &HttpProxy,
    rts: &RtsClient,
    deadline: Instant,
) -> Result<(TcpStream, TcpStream, Vec<u8>), RpcError> {
    let timeout = deadline.saturating_duration_since(Instant::now());
    let path = format!("/rpc/rpcproxy.dll?{}", proxy.target);
    // Both channels first: a proxy may answer the OUT channel only once the IN
    // channel's CONN/B1 has paired with its CONN/A1.
    let mut out_channel = open_channel(proxy, "RPC_OUT_DATA", &path, 76, deadline).await?;
    write_by(&mut out_channel, &rts.conn_a1(), deadline, timeout).await?;
    let mut in_channel =
        open_channel(proxy, "RPC_IN_DATA", &path, IN_CHANNEL_LENGTH, deadline).await?;
    write_by(&mut in_channel, &rts.conn_b1(), deadline, timeout).await?;
    // The OUT channel's response head; the IN channel answers only to refuse (a 401 on
    // its connection, a CONN/B1 the proxy would not take), and that must not wait for
    // the deadline.
    // Biased: when both channels are refused (a wrong Basic password is on both) and
    // both answers are in, the OUT channel's is the one reported.
    let (status, _, pending) = tokio::select! {
        biased;
        out = read_response(&mut out_channel, deadline, timeout) => out?,
        refused = read_response(&mut in_channel, deadline, timeout) => {
            let (status, _, _) = refused?;
            return Err(RpcError::Refused { channel: "RPC_IN_DATA", code: status.code, line: status.line });
        }
    };
    if status.code != 200 {
        return Err(RpcError::Refused {
            channel: "RPC_OUT_DATA",
            code: status.code,
            line: status.line,
        });
    }
    Ok((in_channel, out_channel, pending))
}

/// Connects a channel and sends its request head (authenticated: Basic at once, NTLM
/// after its NEGOTIATE / CHALLENGE leg on this connection); the body follows.
pub(crate) async fn open_channel(
    proxy: &HttpProxy,
    method: &str,
    path: &str,
    length: u64,
    deadline: Instant,
) -> Result<TcpStream, RpcError> {
    let timeout = deadline.saturating_duration_since(Instant::now());
    let mut tcp = timeout_at(deadline, TcpStream::connect(proxy.addr))
        .await
        .map_err(|_| RpcError::Timeout(timeout))??;
    tcp.set_nodelay(true)?;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let head = |authorization: &str, length: u64| {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/rpc\r\n\
             User-Agent: MSRPC\r\nCache-Control: no-cache\r\nConnection: Keep-Alive\r\n\
             Content-Length: {length}\r\nAuthorization: {authorization}\r\n\r\n",
            proxy.host
        )
    };
    let authorization = match &proxy.auth {
        HttpAuth::Basic { user, password } => {
            format!("Basic {}", b64(format!("{user}:{password}").as_bytes()))
        }
        HttpAuth::Ntlm(credentials) => {
            let mut options = InitiatorOptions::fixed(0, 0, ResponseKind::V2, true);
            let _ = getrandom::getrandom(&mut options.client_challenge);
            let _ = getrandom::getrandom(&mut options.random_session_key);
            let mut ntlm = NtlmInitiator::new(credentials.clone(), options);
            let negotiate = format!("NTLM {}", b64(&ntlm.negotiate()));
            write_by(&mut tcp, head(&negotiate, 0).as_bytes(), deadline, timeout).await?;
            let (status, authenticate, _) = read_response(&mut tcp, deadline, timeout).await?;
            let challenge = authenticate
                .iter()
                .find_map(|v| v.strip_prefix("NTLM "))
                .filter(|_| status.code == 401)
                .ok_or_else(|| {
                    RpcError::Http(format!("{method}: no NTLM challenge: {}", status.line))
                })?;
            let challenge = base64::engine::general_purpose::STANDARD
                .decode(challenge)
                .map_err(|_| {
                    RpcError::Http(format!("{method}: the NTLM challenge is not base64"))
                })?;
            let authenticate = ntlm
                .handle_challenge(&challenge)
                .map_err(|e| RpcError::Http(format!("{method}: {e}")))?;
            format!("NTLM {}", b64(&authenticate))
        }
    };
    write_by(
        &mut tcp,
        head(&authorization, length).as_bytes(),
        deadline,
        timeout,
    )
    .await?;
    Ok(tcp)
}

/// An NTLM security context for `user` at `level` (auth_context_id 1): NTLMv2 with a
/// MIC, with a fresh client challenge and session key like a real client (fixed ones
/// would make every association seal with the same exported session key).
pub fn ntlm_security(user: &str, password: &str, domain: &str, level: AuthLevel) -> BindSecurity {
    let credentials = Credentials {
        user: user.into(),
        password: password.into(),
        domain: domain.into(),
        workstation: "HARNESS".into(),
    };
    let mut options = InitiatorOptions::fixed(0, 0, ResponseKind::V2, true);
    // Without OS randomness the values stay fixed: still a working client.
    let _ = getrandom::getrandom(&mut options.client_challenge);
    let _ = getrandom::getrandom(&mut options.random_session_key);
    BindSecurity {
        provider: Box::new(NtlmClientSecurity::new(credentials, options)),
        level,
        auth_context_id: 1,
    }
}

/// A Kerberos security context (auth_type 16, or 9 with SPNEGO) with `ticket`, a service
/// ticket for the endpoint's principal, at `level` (auth_context_id 1). The authenticator
/// carries the wall clock's time; its subkey, cusec and seq-number come from OS
/// randomness, like a real client's.
pub fn kerberos_security(
    auth_type: AuthType,
    ticket: harness_core::kerberos::client::Credentials,
    level: AuthLevel,
) -> BindSecurity {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let mut seed = [0u8; 8];
    // Without OS randomness the seed stays fixed: still a working client.
    let _ = getrandom::getrandom(&mut seed);
    BindSecurity {
        provider: Box::new(KerberosClientSecurity::new(
            auth_type,
            ticket,
            now,
            u64::from_le_bytes(seed),
        )),
        level,
        auth_context_id: 1,
    }
}
