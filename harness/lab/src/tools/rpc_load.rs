//! DCE/RPC sessions for the load generator ([`super::load`]): the project's own client
//! ([`super::dcerpc_client`]) against any `ncacn_ip_tcp` server, the same client for every
//! server so that their numbers compare.
//!
//! The default call is the endpoint mapper's `ept_map` of an interface nobody registers
//! (the answer is a normal response with `EPT_S_NOT_REGISTERED`): every DCE/RPC server
//! with an endpoint mapper (Windows, Samba, the lab's `--epm`) serves it, and it costs the
//! server a stub decode and a small answer, so the numbers measure the RPC runtime and
//! the security provider, not an interface.

use std::net::SocketAddr;
use std::time::Duration;

use harness_core::dcerpc::client::{AuthLevel, SyntaxId, Uuid};
use harness_core::dcerpc::epm::{map_request, EPM_SYNTAX, OPNUM_EPT_MAP};
use harness_core::dcerpc::nspi;
use harness_core::ntlm::Credentials;

use super::dcerpc_client::{ntlm_security, HttpAuth, HttpProxy, RpcBind, RpcConnection, RpcError};
use super::load::{ErrorKind, SessionError, UserSpec};

/// What each DCE/RPC session calls, and how it binds.
#[derive(Debug, Clone)]
pub struct RpcCall {
    pub interface: SyntaxId,
    pub opnum: u16,
    pub stub: Vec<u8>,
    /// NONE (1) binds without security; CONNECT (2), PKT_INTEGRITY (5) and PKT_PRIVACY
    /// (6) bind with NTLM as the session's user.
    pub level: AuthLevel,
    /// The NTLM domain the client names.
    pub domain: String,
    /// A second call made from the first one's response (NspiUnbind of NspiBind's handle).
    pub follow_up: Option<FollowUp>,
    /// Through an RPC over HTTP v2 proxy (the load's address is the proxy's).
    pub via: Option<RpchRoute>,
}

/// The second call of a session, made from the first one's response stub.
pub type FollowUp = fn(&[u8]) -> Option<(u16, Vec<u8>)>;

/// How a session goes through an RPC over HTTP proxy.
#[derive(Debug, Clone)]
pub struct RpchRoute {
    /// The `Host` header.
    pub host: String,
    /// The RPC server and port behind the proxy: `MAIL:6004`.
    pub target: String,
    /// Basic on the channels instead of NTLM.
    pub basic: bool,
}

impl RpchRoute {
    /// The proxy at `addr` on this route, the channels authenticated as `user`.
    pub fn proxy(&self, addr: SocketAddr, user: &str, password: &str, domain: &str) -> HttpProxy {
        let auth = if self.basic {
            HttpAuth::Basic {
                user: user.into(),
                password: password.into(),
            }
        } else {
            HttpAuth::Ntlm(Credentials {
                user: user.into(),
                password: password.into(),
                domain: domain.into(),
                workstation: "HARNESS".into(),
            })
        };
        HttpProxy {
            addr,
            host: self.host.clone(),
            target: self.target.clone(),
            auth,
        }
    }
}

/// An interface nobody registers: what [`RpcCall::ept_map_unregistered`] asks for.
const NOBODY: SyntaxId = SyntaxId::new(
    Uuid::new(
        0x6861_726e,
        0x6573,
        0x7300,
        [0x6c, 0x6f, 0x61, 0x64, 0, 0, 0, 1],
    ),
    1,
    0,
);

impl RpcCall {
    /// `ept_map` of an unregistered interface over ncacn_ip_tcp, at `level`.
    pub fn ept_map_unregistered(level: AuthLevel) -> RpcCall {
        RpcCall {
            interface: EPM_SYNTAX,
            opnum: OPNUM_EPT_MAP,
            stub: map_request(NOBODY, 1),
            level,
            domain: String::new(),
            follow_up: None,
            via: None,
        }
    }

    /// NspiBind, then NspiUnbind of the handle it gave: what an address-book client does
    /// first and last, at `level` (an Exchange endpoint, or the RPC proxy in front of one).
    pub fn nspi_bind_unbind(level: AuthLevel) -> RpcCall {
        fn unbind(reply: &[u8]) -> Option<(u16, Vec<u8>)> {
            let bound = nspi::client::parse_bind(reply).ok()?;
            (bound.rc == nspi::status::SUCCESS).then(|| {
                (
                    nspi::client::opnum::UNBIND,
                    nspi::client::unbind_stub(&bound.handle),
                )
            })
        }
        RpcCall {
            interface: nspi::NSPI_SYNTAX,
            opnum: nspi::client::opnum::BIND,
            stub: nspi::client::bind_stub(0, &nspi::client::stat(1252), true),
            level,
            domain: String::new(),
            follow_up: Some(unbind),
            via: None,
        }
    }
}

fn classify(e: RpcError) -> SessionError {
    let kind = match &e {
        RpcError::Io(_) => ErrorKind::Connect,
        RpcError::Timeout(_) => ErrorKind::Timeout,
        RpcError::Fault { .. }
        | RpcError::BindNak(_)
        | RpcError::ContextRejected(_)
        | RpcError::Http(_)
        | RpcError::Refused { .. } => ErrorKind::Refused,
        RpcError::Rts(_) => ErrorKind::Protocol,
        _ => ErrorKind::Protocol,
    };
    SessionError {
        kind,
        detail: e.to_string(),
    }
}

async fn bind(
    addr: SocketAddr,
    call: &RpcCall,
    user: &UserSpec,
    op_timeout: Duration,
) -> Result<RpcConnection, RpcError> {
    let mut bind = RpcBind::new(call.interface);
    bind.timeout = op_timeout;
    if call.level != AuthLevel::NONE {
        bind = bind.with_security(ntlm_security(
            &user.user,
            &user.password,
            &call.domain,
            call.level,
        ));
    }
    match &call.via {
        None => RpcConnection::connect(addr, bind).await,
        Some(route) => {
            let proxy = route.proxy(addr, &user.user, &user.password, &call.domain);
            RpcConnection::connect_http(&proxy, bind).await
        }
    }
}

/// One session: bind (or reuse `held` when `keep`), one call. With `keep` the
/// association stays in `held` for the next call; a failed call drops it. Without it
/// the association closes when this returns.
pub async fn rpc_session(
    addr: SocketAddr,
    call: &RpcCall,
    user: &UserSpec,
    op_timeout: Duration,
    keep: bool,
    held: &mut Option<RpcConnection>,
) -> Result<(), SessionError> {
    let mut conn = match held.take() {
        Some(conn) => conn,
        None => bind(addr, call, user, op_timeout).await.map_err(classify)?,
    };
    let reply = conn.call(call.opnum, &call.stub).await.map_err(classify)?;
    if let Some(follow_up) = call.follow_up {
        let (opnum, stub) = follow_up(&reply).ok_or_else(|| SessionError {
            kind: ErrorKind::Refused,
            detail: "the first call's answer refused the session".into(),
        })?;
        conn.call(opnum, &stub).await.map_err(classify)?;
    }
    if keep {
        *held = Some(conn);
    }
    Ok(())
}
