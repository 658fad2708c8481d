//! NTLM message codecs ([MS-NLMP] 2.2) live in the codec crate, `harness_wire::ntlm`;
//! this module keeps the paths `harness_core::ntlm::messages::...` working.

pub use harness_wire::ntlm::*;
