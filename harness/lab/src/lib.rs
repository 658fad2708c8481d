//! The lab: serves the sans-IO endpoints of `harness-core` over TCP, implicit TLS and
//! STARTTLS/STLS with tokio and rustls, so real clients (and other crates' tests) can use
//! the mocks, and the tools that talk to servers over sockets.
//!
//! Layers (the `harness` binary's commands live in `src/cli/`, outside the library):
//! - [`serve`]: listeners and [`Lab`], the stream driver, TLS, the front-end host, lab files;
//! - [`tools`]: load generation, network fuzzing, playing transcripts, scenarios over sockets.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use harness::{Lab, LabConfig, Protocol, Security};
//! let lab = Lab::start(LabConfig::default()).await?;
//! let imap = lab.addr(Protocol::Imap, Security::Plain).expect("imap listener");
//! // ... point a client at `imap` (user alice, password secret) ...
//! lab.shutdown().await;
//! # Ok(()) }
//! ```

pub mod serve;
pub mod tools;

pub use serve::lab::{
    FrontendListening, Lab, LabConfig, LabError, LabStats, ListenerSpec, Listening, Security,
    SHUTDOWN_GRACE,
};
// The paths embedders and the docs already use.
pub use harness_core::Protocol;
pub use serve::frontend_host as frontend;
pub use tools::load;
