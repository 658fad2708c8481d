//! The lab's integration tests, one module per subject, in one test binary (one link of
//! tokio and rustls instead of one per file): `cargo test -p harness --test lab load_cli::`.

mod common;

mod adapter;
mod bad_input;
mod connection_storm;
mod emsmdb_notify;
mod frontend_adapters_agree;
mod frontend_backend_hop;
mod frontend_socket;
mod gc_failover;
mod idle_connections;
mod interop_cyrus;
mod interop_frontends;
mod interop_impacket_rpc;
mod interop_impacket_rpch;
mod interop_samba;
mod interop_transcripts;
mod kerberos_lab;
mod kerberos_mit;
mod kerberos_rpc;
mod literal_flood;
mod load_cli;
mod netfuzz;
mod nspi_client;
mod real_clients;
mod rpc_limits;
mod rpch_bad_input;
mod rpch_http_auth;
mod run_cli;
mod scenario_sockets;
mod serve_cli;
mod shutdown;
mod sync_clients;
mod transcripts_socket;
mod web_tier;
mod webdav_store;
