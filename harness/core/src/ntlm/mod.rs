//! NTLM ([MS-NLMP]): messages, the acceptor (server) and the initiator (client).
//! INTERFACE SKELETON: the implementation lands in the ntlm branch.

/// Names the acceptor puts in its CHALLENGE target info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptorConfig {
    pub nb_domain: String,
    pub nb_computer: String,
    pub dns_domain: String,
    pub dns_computer: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NtlmError {
    #[error("not implemented yet")]
    Unimplemented,
}

/// Which response the client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    V1,
    V1ExtendedSessionSecurity,
    V2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub user: String,
    pub domain: String,
    pub workstation: String,
    pub kind: ResponseKind,
    pub session_base_key: [u8; 16],
}

#[derive(Debug, Clone)]
pub struct NtlmAcceptor {}

impl NtlmAcceptor {
    pub fn new(_config: AcceptorConfig, _server_challenge: [u8; 8], _filetime: u64) -> Self {
        NtlmAcceptor {}
    }
    pub fn has_negotiated(&self) -> bool {
        false
    }
    pub fn handle_negotiate(&mut self, _negotiate: &[u8]) -> Result<Vec<u8>, NtlmError> {
        Err(NtlmError::Unimplemented)
    }
    pub fn handle_authenticate(
        &mut self,
        _authenticate: &[u8],
        _password_for: &dyn Fn(&str, &str) -> Option<String>,
    ) -> Result<Authenticated, NtlmError> {
        Err(NtlmError::Unimplemented)
    }
}
