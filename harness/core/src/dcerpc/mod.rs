//! The DCE/RPC endpoint core (connection-oriented, [C706] chapter 12 and [MS-RPCE]),
//! sans-IO, on the PDU codec of `harness_wire::dcerpc`.
//!
//! - [`security`]: the security-provider contract (one context per `auth_context_id`),
//!   token legs and per-PDU protection; [`ntlm`] implements it with the project's own
//!   NTLM acceptor and initiator, [`kerberos`] with the krb5 GSS mechanism (auth_type 16,
//!   and 9 with SPNEGO) and RFC 4121 MIC and Wrap tokens.
//! - [`server`]: [`server::Endpoint`] (what a listener's connections share) and
//!   [`server::Association`], one connection's bind, contexts, calls and faults.
//! - [`client`]: the client side of an association (bind, security legs, calls), sans-IO.
//! - [`interface`]: what an RPC interface (endpoint mapper, EMSMDB, NSPI, RFR) offers the
//!   association: its syntax, its opnums and a call on a reassembled stub.
//! - [`epm`]: the endpoint mapper interface and the [`epm::EndpointMap`] it answers from.
//! - [`emsmdb`]: EMSMDB and AsyncEMSMDB (sessions, ROPs, new-mail notifications).
//! - [`rfr`]: the address-book referral interface (RFR).
//! - [`endpoints`]: the RPC endpoints of one lab, built from its world.
//! - [`nspi`]: the NSPI address book interface ([MS-OXNSPI]) over the lab's directory.

pub mod client;
pub mod emsmdb;
pub mod endpoints;
pub mod epm;
pub mod interface;
pub mod kerberos;
pub mod known_calls;
pub mod legacy_dn;
pub mod nspi;
pub mod ntlm;
pub mod rfr;
pub mod security;
pub mod server;

#[cfg(test)]
mod server_tests;

pub use interface::{CallContext, CallOutcome, RpcInterface};
pub use security::{
    AcceptStep, ClientSecurity, ClientStep, MessageProtection, Principal, SecurityError,
    ServerSecurity, ServerSecurityFactory,
};
