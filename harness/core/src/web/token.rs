//! The web tier's logon token and what it can do on the next hop (KB 918710: an ASP page
//! with integrated authentication opening the browsing user's mailbox on another server).
//!
//! Windows gives a web server one of these, by how the user authenticated:
//! - **Basic**: IIS logs the user on with the cleartext password, so the logon session
//!   holds it: NTLM to another server works, and so does Kerberos (the session can get a
//!   TGT with the password). Without TLS the password crossed the wire in clear text.
//! - **Browser on the web tier's own host**, integrated authentication: the user's own
//!   logon session on that host answers, with its credentials: one hop, not two.
//! - **NTLM from another host**: a network logon. The server has proof of the user but no
//!   credentials: nothing authenticates as the user further on.
//! - **Kerberos from another host**: a network logon with a service ticket. Credentials for
//!   a next hop exist only if the client forwarded its TGT (delegation), and only for
//!   Kerberos: there is no password for NTLM.

use crate::http_auth::{HttpPrincipal, HttpScheme};
use crate::kerberos::client::Credentials;

/// How the token was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    /// From Basic: the session holds the password.
    Cleartext,
    /// Integrated authentication from a browser on the web tier's host.
    LocalSession,
    /// NTLM from another host.
    NtlmNetwork,
    /// Kerberos from another host, with the forwarded TGT if the client delegated.
    Kerberos { delegated: Option<Box<Credentials>> },
}

/// The mechanism a next hop asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HopMechanism {
    Ntlm,
    Kerberos,
}

/// What the token offers a next hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HopCredential {
    /// The user's password (a Basic logon, or the user's own session): NTLM with it, or
    /// a TGT from the KDC with it.
    Password,
    /// The forwarded TGT: a ticket for the next service from the KDC.
    DelegatedTgt(Box<Credentials>),
}

/// Why a token cannot make a next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HopRefusal {
    #[error("a network logon from NTLM holds no credentials to pass on")]
    NtlmNetworkLogon,
    #[error("a Kerberos network logon without a forwarded TGT holds no credentials")]
    NotDelegated,
    #[error("a Kerberos logon has no password for NTLM")]
    NoPasswordForNtlm,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogonToken {
    pub user: String,
    pub domain: String,
    pub scheme: HttpScheme,
    pub kind: TokenKind,
    /// The request came over TLS.
    pub tls: bool,
}

impl LogonToken {
    /// The token IIS makes for `principal`, from a client on the web tier's own host
    /// (`same_host`) or another, over TLS or not.
    pub fn from_principal(principal: &HttpPrincipal, same_host: bool, tls: bool) -> LogonToken {
        let kind = match (principal.scheme, same_host) {
            (HttpScheme::Basic, _) => TokenKind::Cleartext,
            (_, true) => TokenKind::LocalSession,
            (HttpScheme::Ntlm, false) => TokenKind::NtlmNetwork,
            (HttpScheme::Negotiate, false) => TokenKind::Kerberos {
                delegated: principal.delegated.clone(),
            },
        };
        LogonToken {
            user: principal.user.clone(),
            domain: principal.domain.clone(),
            scheme: principal.scheme,
            kind,
            tls,
        }
    }

    /// What the token can authenticate a next hop with, by `mechanism`.
    pub fn next_hop(&self, mechanism: HopMechanism) -> Result<HopCredential, HopRefusal> {
        match (&self.kind, mechanism) {
            (TokenKind::Cleartext | TokenKind::LocalSession, _) => Ok(HopCredential::Password),
            (TokenKind::NtlmNetwork, _) => Err(HopRefusal::NtlmNetworkLogon),
            (TokenKind::Kerberos { .. }, HopMechanism::Ntlm) => Err(HopRefusal::NoPasswordForNtlm),
            (TokenKind::Kerberos { delegated: None }, HopMechanism::Kerberos) => {
                Err(HopRefusal::NotDelegated)
            }
            (
                TokenKind::Kerberos {
                    delegated: Some(tgt),
                },
                HopMechanism::Kerberos,
            ) => Ok(HopCredential::DelegatedTgt(tgt.clone())),
        }
    }

    /// Basic without TLS: the password crossed the wire in clear text (a finding).
    pub fn cleartext_on_the_wire(&self) -> bool {
        self.scheme == HttpScheme::Basic && !self.tls
    }

    /// A short name of the kind, for reports.
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            TokenKind::Cleartext => "cleartext (Basic logon)",
            TokenKind::LocalSession => "local session (browser on this host)",
            TokenKind::NtlmNetwork => "network (NTLM)",
            TokenKind::Kerberos { delegated: Some(_) } => "network (Kerberos, delegated TGT)",
            TokenKind::Kerberos { delegated: None } => "network (Kerberos, not delegated)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(scheme: HttpScheme) -> HttpPrincipal {
        HttpPrincipal {
            scheme,
            user: "alice".into(),
            domain: "EXAMPLE".into(),
            delegated: None,
            mutual: None,
        }
    }

    #[test]
    fn each_way_in_gives_its_token_and_its_next_hops() {
        use HopMechanism::{Kerberos, Ntlm};
        let cases = [
            (
                HttpScheme::Basic,
                false,
                "cleartext (Basic logon)",
                Ok(()),
                Ok(()),
            ),
            (
                HttpScheme::Basic,
                true,
                "cleartext (Basic logon)",
                Ok(()),
                Ok(()),
            ),
            (
                HttpScheme::Ntlm,
                true,
                "local session (browser on this host)",
                Ok(()),
                Ok(()),
            ),
            (
                HttpScheme::Negotiate,
                true,
                "local session (browser on this host)",
                Ok(()),
                Ok(()),
            ),
            (
                HttpScheme::Ntlm,
                false,
                "network (NTLM)",
                Err(HopRefusal::NtlmNetworkLogon),
                Err(HopRefusal::NtlmNetworkLogon),
            ),
            (
                HttpScheme::Negotiate,
                false,
                "network (Kerberos, not delegated)",
                Err(HopRefusal::NoPasswordForNtlm),
                Err(HopRefusal::NotDelegated),
            ),
        ];
        for (scheme, same_host, kind, ntlm, kerberos) in cases {
            let token = LogonToken::from_principal(&principal(scheme), same_host, false);
            assert_eq!(token.kind_name(), kind, "{scheme:?} same host {same_host}");
            assert_eq!(token.next_hop(Ntlm).map(|_| ()), ntlm, "{kind}");
            assert_eq!(token.next_hop(Kerberos).map(|_| ()), kerberos, "{kind}");
        }
        let basic = LogonToken::from_principal(&principal(HttpScheme::Basic), false, false);
        assert!(basic.cleartext_on_the_wire());
        assert!(
            !LogonToken::from_principal(&principal(HttpScheme::Basic), false, true)
                .cleartext_on_the_wire()
        );
        assert!(
            !LogonToken::from_principal(&principal(HttpScheme::Ntlm), false, false)
                .cleartext_on_the_wire()
        );
    }
}
