//! The lab: serves the sans-IO endpoints over TCP and TLS with tokio.
