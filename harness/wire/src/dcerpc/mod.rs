//! DCE/RPC connection-oriented PDUs (ncacn_ip_tcp): the codec layer under the coming
//! RPC endpoint ([C706] chapter 12, with the [MS-RPCE] 2.2.2 extensions).
//!
//! - [`header`]: the 16-octet common header, [`PacketType`], [`PfcFlags`], the drep.
//! - [`uuid`]: [`Uuid`] and [`SyntaxId`] with the NDR 2.0, NDR64 and bind-time feature
//!   syntaxes.
//! - [`bind`]: bind / alter_context, bind_ack / alter_context_resp, bind_nak.
//! - [`call`]: request, response, fault ([`FaultStatus`]) and auth3.
//! - [`auth`]: the sec_trailer and auth_value ([`AuthVerifier`]), split off and placed.
//! - [`pdu`]: [`Pdu`], one fragment: header fields, [`PduBody`] and verifier.
//! - [`framer`]: [`PduFramer`], a sans-IO stream framer bounded by max_recv_frag.
//! - [`reassembly`]: [`CallReassembler`] (fragments to one stub, bounded) and
//!   [`fragment`] (one stub to fragments under max_xmit_frag).
//!
//! Integers in bodies are little-endian only (what Windows and impacket send): a
//! big-endian drep is framed but its body is refused with [`header::ERR_BIG_ENDIAN`].
//! No NDR and no association state here: those build on this.

pub mod auth;
pub mod bind;
pub mod call;
pub mod framer;
pub mod header;
pub mod pdu;
pub mod reassembly;
pub mod uuid;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod vectors;

pub use auth::{protected_layout, AuthLevel, AuthType, AuthVerifier, ProtectedLayout, SecTrailer};
pub use bind::{
    AckReason, AckResult, Bind, BindAck, BindNak, ContextElement, ContextResult, RejectReason,
};
pub use call::{Auth3, Fault, FaultStatus, Request, Response};
pub use framer::{FramerError, PduFramer};
pub use header::{DataRepresentation, Header, PacketType, PfcFlags};
pub use pdu::{Pdu, PduBody, PduTooLong};
pub use reassembly::{fragment, CallReassembler, ReassemblyError};
pub use uuid::{SyntaxId, Uuid};
