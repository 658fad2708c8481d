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

use std::net::SocketAddr;
use std::time::Duration;

use harness_core::dcerpc::client::{
    AckResult, AuthLevel, BindAcked, BindSecurity, ClientAssociation, ClientConfig, ClientError,
    ClientEvent, ContextElement, ContextResult, FaultStatus, RejectReason, SyntaxId, Uuid,
};
use harness_core::dcerpc::ntlm::NtlmClientSecurity;
use harness_core::ntlm::{Credentials, InitiatorOptions, ResponseKind};
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

/// One bound association on one TCP connection.
pub struct RpcConnection {
    tcp: TcpStream,
    association: ClientAssociation,
    acked: BindAcked,
    timeout: Duration,
    buf: Vec<u8>,
}

impl RpcConnection {
    /// Connects (Nagle off), binds and runs the security legs; fails unless context 0
    /// is accepted.
    pub async fn connect(addr: SocketAddr, bind: RpcBind) -> Result<RpcConnection, RpcError> {
        let deadline = Instant::now() + bind.timeout;
        let tcp = timeout_at(deadline, TcpStream::connect(addr))
            .await
            .map_err(|_| RpcError::Timeout(bind.timeout))??;
        tcp.set_nodelay(true)?;
        let mut association = ClientAssociation::new(bind.config);
        let context = ContextElement {
            context_id: 0,
            abstract_syntax: bind.interface,
            transfer_syntaxes: bind.transfer_syntaxes,
        };
        let bind_pdu = association.bind(&[context], bind.security)?;
        let mut conn = RpcConnection {
            tcp,
            association,
            acked: BindAcked {
                results: Vec::new(),
                max_xmit_frag: 0,
                max_recv_frag: 0,
                assoc_group_id: 0,
                secondary_address: String::new(),
                features: None,
                header_sign: false,
            },
            timeout: bind.timeout,
            buf: vec![0; 8192],
        };
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
        while !conn.association.is_ready() {
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
        let call = self.association.call(context_id, opnum, object, stub)?;
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
        timeout_at(deadline, self.tcp.write_all(bytes))
            .await
            .map_err(|_| RpcError::Timeout(self.timeout))??;
        Ok(())
    }

    /// Reads and feeds the association until `pick` takes an event (writing every
    /// [`ClientEvent::Send`] on the way), the deadline passes or the connection ends.
    async fn until<T>(
        &mut self,
        deadline: Instant,
        mut pick: impl FnMut(ClientEvent) -> Option<Result<T, RpcError>>,
    ) -> Result<T, RpcError> {
        loop {
            let n = timeout_at(deadline, self.tcp.read(&mut self.buf))
                .await
                .map_err(|_| RpcError::Timeout(self.timeout))??;
            if n == 0 {
                return Err(RpcError::Closed);
            }
            let mut events = Vec::new();
            let fed = self.association.receive(&self.buf[..n], &mut events);
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
