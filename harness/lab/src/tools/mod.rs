//! Tools that talk to a server as clients: load generation, network fuzzing, playing
//! transcripts, and scenario cases over sockets.

pub mod client_driver;
pub mod load;
pub mod netfuzz;
pub mod play;
pub mod scenario;
