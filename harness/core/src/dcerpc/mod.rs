//! The DCE/RPC endpoint core (connection-oriented, [C706] chapter 12 and [MS-RPCE]),
//! sans-IO, on the PDU codec of `harness_wire::dcerpc`.
//!
//! - [`security`]: the security-provider contract (one context per `auth_context_id`),
//!   token legs and per-PDU protection; [`ntlm`] implements it with the project's own
//!   NTLM acceptor and initiator.
//! - [`client`]: the client side of an association (bind, security legs, calls), sans-IO.
//! - [`interface`]: what an RPC interface (endpoint mapper, EMSMDB, NSPI, RFR) offers the
//!   association: its syntax, its opnums and a call on a reassembled stub.
//! - [`epm`]: the endpoint mapper interface and the [`epm::EndpointMap`] it answers from.

pub mod client;
pub mod epm;
pub mod interface;
pub mod ntlm;
pub mod security;

pub use interface::{CallContext, CallOutcome, RpcInterface};
pub use security::{
    AcceptStep, ClientSecurity, ClientStep, MessageProtection, Principal, SecurityError,
    ServerSecurity, ServerSecurityFactory,
};
