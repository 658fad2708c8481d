//! Client policies as data: which authentication a client picks from what a server offers,
//! whether a failure makes it prompt the user again, and which error codes it reports.
//! The client state machines read [`Rules`] and never test a policy's name.

use serde::{Deserialize, Serialize};

use crate::codes::{known, ErrorCode, Family};
use crate::sasl::Mechanism;
use crate::Protocol;

/// The user pressed Cancel on the password prompt (PROTOCOLS.md 7.3).
const IXP_E_USER_CANCEL: ErrorCode = ErrorCode::new(Family::Ixp, 0x800C_CC17);

/// How a client proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMethod {
    /// A SASL mechanism: IMAP `AUTHENTICATE`, POP3 `AUTH`.
    Sasl(Mechanism),
    /// The protocol's own cleartext login: IMAP `LOGIN`, POP3 `USER` + `PASS`.
    Cleartext,
}

impl AuthMethod {
    pub fn label(self, protocol: Protocol) -> String {
        match (self, protocol) {
            (AuthMethod::Sasl(m), _) => m.name().to_string(),
            (AuthMethod::Cleartext, Protocol::Imap) => "LOGIN command".to_string(),
            (AuthMethod::Cleartext, Protocol::Pop3) => "USER/PASS".to_string(),
        }
    }

    /// Sends a password the server (or anyone on the path) can read.
    pub fn is_cleartext(self) -> bool {
        !matches!(self, AuthMethod::Sasl(Mechanism::Ntlm))
    }
}

/// A client's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Outlook Express: "Log on using Secure Password Authentication" (SPA = NTLM) or not.
    /// Prompts for the password again after every failed logon (KB 306874).
    OutlookExpress { use_spa: bool },
    /// Cleartext login only: IMAP LOGIN (refused under LOGINDISABLED), POP3 USER/PASS.
    Basic,
    /// curl: the strongest advertised mechanism, SASL-IR on IMAP when offered.
    CurlLike,
    /// Exactly this method, advertised or not (for scripted probes).
    Forced(AuthMethod),
}

/// What to do when nothing the policy can use is on offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Shown in outcomes.
    pub name: String,
    /// Methods in order of preference.
    pub preference: Vec<AuthMethod>,
    /// Only use a method the server advertised (else try the first preference anyway).
    pub require_advertised: bool,
    /// After a failed logon, prompt the user (who re-enters the same credentials).
    pub prompt_on_failure: bool,
    /// Send the SASL initial response in the IMAP AUTHENTICATE command when the server
    /// advertises SASL-IR (RFC 4959).
    pub sasl_ir: bool,
    /// POP3: send the Microsoft `AUTH` listing probe ([MS-POP3] 2.2.1) after CAPA.
    pub probe_auth_listing: bool,
    /// Report Outlook Express `IXP_E_*` codes.
    pub ixp_codes: bool,
    /// What the client says when nothing usable is offered.
    pub nothing_usable_text: &'static str,
}

impl Policy {
    pub fn name(&self) -> String {
        match self {
            Policy::OutlookExpress { use_spa: true } => "outlook-express spa".into(),
            Policy::OutlookExpress { use_spa: false } => "outlook-express basic".into(),
            Policy::Basic => "basic".into(),
            Policy::CurlLike => "curl-like".into(),
            Policy::Forced(AuthMethod::Sasl(m)) => format!("forced {}", m.name()),
            Policy::Forced(AuthMethod::Cleartext) => "forced cleartext".into(),
        }
    }

    pub fn rules(&self) -> Rules {
        use AuthMethod::{Cleartext, Sasl};
        let name = self.name();
        match *self {
            Policy::OutlookExpress { use_spa } => Rules {
                name,
                preference: vec![if use_spa {
                    Sasl(Mechanism::Ntlm)
                } else {
                    Cleartext
                }],
                // SPA checks the server's list; the cleartext path just tries.
                require_advertised: use_spa,
                prompt_on_failure: true,
                sasl_ir: false,
                probe_auth_listing: true,
                ixp_codes: true,
                nothing_usable_text: "no usable authentication method",
            },
            Policy::Basic => Rules {
                name,
                preference: vec![Cleartext],
                require_advertised: true,
                prompt_on_failure: false,
                sasl_ir: false,
                probe_auth_listing: false,
                ixp_codes: true,
                nothing_usable_text: "no usable authentication method",
            },
            Policy::CurlLike => Rules {
                name,
                preference: vec![
                    Sasl(Mechanism::Ntlm),
                    Sasl(Mechanism::Plain),
                    Sasl(Mechanism::Login),
                    Cleartext,
                ],
                require_advertised: true,
                prompt_on_failure: false,
                sasl_ir: true,
                probe_auth_listing: false,
                ixp_codes: false,
                // What curl prints in that case (seen with curl 7.88, PEERS.md).
                nothing_usable_text: "No known authentication mechanisms supported",
            },
            Policy::Forced(m) => Rules {
                name,
                preference: vec![m],
                require_advertised: false,
                prompt_on_failure: false,
                sasl_ir: false,
                probe_auth_listing: false,
                ixp_codes: true,
                nothing_usable_text: "no usable authentication method",
            },
        }
    }
}

/// What a server offered, as the client learned it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offer {
    /// SASL mechanisms advertised (IMAP `AUTH=`, POP3 CAPA `SASL` and the AUTH listing).
    pub mechanisms: Vec<Mechanism>,
    /// IMAP `SASL-IR`.
    pub sasl_ir: bool,
    /// IMAP: no `LOGINDISABLED`; POP3: `USER` in CAPA, or no CAPA at all (RFC 1939 server).
    pub cleartext: bool,
    /// IMAP `STARTTLS` / POP3 `STLS`.
    pub starttls: bool,
}

impl Offer {
    pub fn allows(&self, method: AuthMethod) -> bool {
        match method {
            AuthMethod::Sasl(m) => self.mechanisms.contains(&m),
            AuthMethod::Cleartext => self.cleartext,
        }
    }

    pub fn add_mechanism(&mut self, m: Mechanism) {
        if !self.mechanisms.contains(&m) {
            self.mechanisms.push(m);
        }
    }
}

impl Rules {
    /// The method to use with this offer, or `None` when nothing usable is offered.
    pub fn choose(&self, offer: &Offer) -> Option<AuthMethod> {
        self.preference
            .iter()
            .copied()
            .find(|&m| !self.require_advertised || offer.allows(m))
    }

    /// Code reported when nothing usable is offered (before any prompt).
    pub fn not_offered_code(&self, protocol: Protocol) -> Option<ErrorCode> {
        if !self.ixp_codes {
            return None;
        }
        Some(match protocol {
            // Outlook Express with SPA against a POP3 server without NTLM (KB 306874).
            Protocol::Pop3 => known::IXP_E_SICILY_LOGON_FAILED,
            Protocol::Imap => known::IXP_E_IMAP_AUTH_NOT_POSSIBLE,
        })
    }

    /// Code reported for a refused logon with `method`.
    pub fn failure_code(&self, protocol: Protocol, method: AuthMethod) -> Option<ErrorCode> {
        if !self.ixp_codes {
            return None;
        }
        Some(match (protocol, method) {
            (Protocol::Pop3, AuthMethod::Sasl(Mechanism::Ntlm)) => known::IXP_E_SICILY_LOGON_FAILED,
            (Protocol::Pop3, _) => known::IXP_E_POP3_INVALID_PASSWORD,
            (Protocol::Imap, _) => known::IXP_E_IMAP_LOGINFAILURE,
        })
    }

    /// Code reported when the user cancels the prompt.
    pub fn cancel_code(&self) -> Option<ErrorCode> {
        self.ixp_codes.then_some(IXP_E_USER_CANCEL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(mechs: &[Mechanism], cleartext: bool) -> Offer {
        Offer {
            mechanisms: mechs.to_vec(),
            cleartext,
            ..Offer::default()
        }
    }

    #[test]
    fn choices_follow_the_rules() {
        use AuthMethod::{Cleartext, Sasl};
        use Mechanism::{Login, Ntlm, Plain};
        let spa = Policy::OutlookExpress { use_spa: true }.rules();
        assert_eq!(spa.choose(&offer(&[Plain, Ntlm], true)), Some(Sasl(Ntlm)));
        assert_eq!(spa.choose(&offer(&[Plain], true)), None);
        let oe = Policy::OutlookExpress { use_spa: false }.rules();
        assert_eq!(oe.choose(&offer(&[], false)), Some(Cleartext));
        let basic = Policy::Basic.rules();
        assert_eq!(basic.choose(&offer(&[Ntlm], false)), None);
        let curl = Policy::CurlLike.rules();
        assert_eq!(
            curl.choose(&offer(&[Login, Plain, Ntlm], true)),
            Some(Sasl(Ntlm))
        );
        assert_eq!(
            curl.choose(&offer(&[Login, Plain], true)),
            Some(Sasl(Plain))
        );
        assert_eq!(curl.choose(&offer(&[Login], true)), Some(Sasl(Login)));
        assert_eq!(curl.choose(&offer(&[], true)), Some(Cleartext));
        assert_eq!(curl.choose(&offer(&[], false)), None);
        let forced = Policy::Forced(Sasl(Ntlm)).rules();
        assert_eq!(forced.choose(&offer(&[], false)), Some(Sasl(Ntlm)));
    }

    #[test]
    fn codes_per_protocol() {
        let spa = Policy::OutlookExpress { use_spa: true }.rules();
        assert_eq!(
            spa.not_offered_code(Protocol::Pop3),
            Some(known::IXP_E_SICILY_LOGON_FAILED)
        );
        assert_eq!(
            spa.not_offered_code(Protocol::Imap),
            Some(known::IXP_E_IMAP_AUTH_NOT_POSSIBLE)
        );
        let ntlm = AuthMethod::Sasl(Mechanism::Ntlm);
        assert_eq!(
            spa.failure_code(Protocol::Imap, ntlm),
            Some(known::IXP_E_IMAP_LOGINFAILURE)
        );
        assert_eq!(
            spa.cancel_code().map(|c| c.to_string()).as_deref(),
            Some("IXP_E_USER_CANCEL (0x800CCC17)")
        );
        assert_eq!(
            Policy::CurlLike.rules().failure_code(Protocol::Pop3, ntlm),
            None
        );
    }
}
