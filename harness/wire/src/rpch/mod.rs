//! RPC over HTTP v2 ([MS-RPCH]): the RTS PDUs that set up, keep alive, flow-control and
//! recycle a virtual connection's IN and OUT channels, on top of the DCE/RPC common
//! header of [`crate::dcerpc`].
//!
//! - [`command`]: [`RtsCommand`], every command of 2.2.3.5 with its body.
//! - [`pdu`]: [`RtsPdu`] (Flags and commands), [`RtsPdu::decode`] with typed
//!   [`RtsError`]s, [`RtsPdu::encode`], [`RtsPdu::from_pdu`] for what the stream framer
//!   cut.
//! - [`named`]: the named PDUs of 2.2.4 (CONN/A1 to C2, IN_R1, IN_R2, OUT_R1, OUT_R2,
//!   Keep-Alive, Ping, Echo, FlowControlAck, ...): a constructor each,
//!   [`RtsPdu::classify`] and [`RtsPdu::is`], typed views of CONN/A1 and CONN/B1.
//!
//! No HTTP and no virtual-connection state here: the proxy builds on this.

pub mod command;
pub mod named;
pub mod pdu;

#[cfg(test)]
mod tests;

pub use command::{FlowControlAck, ForwardDestination, RtsCommand, RtsCommandType, RtsCookie};
pub use named::{ConnA1, ConnB1, RecycleCookies, RtsPduKind};
pub use pdu::{RtsError, RtsFlags, RtsPdu, RTS_HEADER_LEN};
