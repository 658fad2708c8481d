//! RPC over HTTP v2 ([MS-RPCH]), sans-IO: the proxy in front of the Exchange RPC
//! endpoint, on the RTS codec of `harness_wire::rpch`.
//!
//! - [`proxy`]: [`RpcProxy`], the virtual-connection table keyed by the
//!   virtual-connection cookie, the IN and OUT channels an adapter feeds in (their
//!   request lines and body octets), the back-end connection of each virtual connection,
//!   flow control, keep-alive, ping and the connection timeout.
//! - [`client`]: the client's half: [`RtsClient`] (CONN/A1, CONN/B1, the OUT channel's
//!   octets cut into RTS PDUs and RPC PDUs, acks for the OUT channel's window) and
//!   [`RpchClient`], a DCE/RPC client association on top of it.
//! - [`backend`]: [`InProcessBackends`], which plays the back-end connections the
//!   proxy asks for against in-process [`ServerSession`](crate::ServerSession)s (the
//!   lab's [`RpcEndpoints`](crate::dcerpc::endpoints::RpcEndpoints)) instead of sockets.
//!
//! The proxy here plays the inbound proxy, the outbound proxy and the RTS half of the
//! server at once ([MS-RPCH] 3.2.3 and 3.2.4 with the server's RTS steps merged): the
//! back-end is one plain connection-oriented DCE/RPC connection per virtual connection
//! (the endpoint speaks ncacn_ip_tcp, not ncacn_http), opened when CONN/A1 arrives. No
//! HTTP here: the adapter parses the request line and headers, turns [`ProxyOutput`]s
//! into responses and body octets, and owns the sockets and the clock.
//!
//! Channel recycling: the proxy always finds the virtual connection a successor names,
//! so it takes the IN_R2 and OUT_R2 sequences (3.2.3.5.5.1, 3.2.4.5.6.1, the server's
//! steps merged). An OUT channel whose Content-Length runs short is replaced on the
//! proxy's OUT_R2/A2, its queued back-end PDUs moved over in order; a client replaces
//! its IN channel with IN_R2/A1 on a new one, PDUs on that successor held until IN_R2/A5
//! on the predecessor. A quiet OUT channel gets a Ping after half the ConnectionTimeout
//! (3.2.1.1.6.1); an open virtual connection without traffic for twice the
//! ConnectionTimeout (a live client pings each one, 3.2.2.6.1) is closed.
//!
//! Not yet: echo requests (2.2.4.48); IN_R1 and OUT_R1 (a successor on another proxy)
//! cannot happen with one proxy that is also the server.

pub mod backend;
pub mod client;
pub mod proxy;
pub mod tunnel;

#[cfg(test)]
mod tests;

pub use backend::InProcessBackends;
pub use client::{OutItem, RpchClient, RpchClientError, RpchCookies, RpchEvent, RtsClient};
pub use proxy::{
    BackendId, ChannelId, ChannelKind, HttpStatus, ProxyConfig, ProxyError, ProxyOutput, RpcProxy,
    Target, VirtualConnectionInfo,
};
pub use tunnel::{ChannelAuth, InProcessRpcProxy, ProxiedSession};
