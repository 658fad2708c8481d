//! Tools that talk to a server as clients: load generation, network fuzzing, playing
//! transcripts, scenario cases over sockets, and a DCE/RPC client over ncacn_ip_tcp.

pub mod client_driver;
pub mod dcerpc_client;
pub mod gc_failover;
pub mod kdc_load;
pub mod load;
pub mod netfuzz;
pub mod netfuzz_dcerpc;
pub mod netfuzz_rpch;
pub mod play;
pub mod rpc_load;
pub mod scenario;
pub mod web_browser;
