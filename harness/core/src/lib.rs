//! harness-core: the sans-IO heart of the harness. The world, the text codecs of IMAP and
//! POP3, and the protocol endpoints and clients as pure state machines (binary codecs are
//! in harness-wire). No async runtime, no sockets, no clocks: adapters (the tokio lab, the
//! in-process driver, fuzz targets) feed bytes and time in.

pub mod budget;
pub mod codes;
pub mod dcerpc;
pub mod driver;
pub mod frontend;
pub mod fuzzing;
pub mod gc;
pub mod http_auth;
pub mod imap;
pub mod kerberos;
pub mod mailfile;
pub mod netfuzz;
pub mod notify;
pub mod ntlm;
pub mod pop3;
pub mod profile;
pub mod protocol;
pub mod rng;
pub mod rpch;
pub mod sasl;
pub mod scenario;
pub mod script;
pub mod session;
pub mod text;
pub mod web;
pub mod webdav;
pub mod world;

pub use budget::{MemoryBudget, Reservation};
pub use profile::Profile;
pub use protocol::Protocol;
pub use session::{Limits, Output, ServerSession, SessionContext, Transport};
pub use world::{LabFile, World};
