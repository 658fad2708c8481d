//! Server behaviour as data. A `Profile` says what a server advertises and the small wire
//! quirks it has; endpoints read it and never test a profile's name.

use serde::{Deserialize, Serialize};

use crate::sasl::Mechanism;

/// How the server writes a continuation request that carries no data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Continuation {
    /// `+` CRLF, as [MS-OXIMAP4] 2.2.1 prints the NTLM-supported reply.
    Bare,
    /// `+ ` CRLF, as RFC 3501's `"+" SP` grammar and [MS-OXPOP3] 2.2.1 require.
    Space,
}

impl Continuation {
    pub fn empty_line(self) -> &'static [u8] {
        match self {
            Continuation::Bare => b"+\r\n",
            Continuation::Space => b"+ \r\n",
        }
    }
}

/// Tagged status a server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ImapStatus {
    Ok,
    No,
    Bad,
}

impl ImapStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ImapStatus::Ok => "OK",
            ImapStatus::No => "NO",
            ImapStatus::Bad => "BAD",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapProfile {
    /// Text of the `* OK` greeting; `{hostname}` is replaced.
    pub greeting: String,
    /// Capabilities besides `IMAP4rev1`, `AUTH=`, `STARTTLS` and `LOGINDISABLED`, in the
    /// order advertised. Only what the endpoint implements belongs here.
    pub capabilities: Vec<String>,
    /// SASL mechanisms offered, in the order advertised as `AUTH=`.
    pub auth_mechanisms: Vec<Mechanism>,
    /// Offer STARTTLS (when the transport can do it and TLS is not already on).
    pub starttls: bool,
    /// Refuse LOGIN (and advertise LOGINDISABLED) until TLS is active.
    pub login_disabled_without_tls: bool,
    /// The empty continuation that answers `AUTHENTICATE mech` with no initial response.
    pub auth_continuation: Continuation,
    /// How a client's `*` during AUTHENTICATE is answered (RFC 3501 6.2.2 says BAD).
    pub auth_cancel_status: ImapStatus,
    pub auth_cancel_text: String,
    pub auth_ok_text: String,
    pub auth_failed_text: String,
    pub login_ok_text: String,
    pub login_failed_text: String,
    /// Advertise `APPENDLIMIT=n` (RFC 7889), n being the literal limit. Off by default so
    /// the existing profiles' CAPABILITY stays as it was.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub append_limit: bool,
    /// Offer `UNAUTHENTICATE` (RFC 8437): back to the not-authenticated state on the same
    /// connection. Off by default: RFC 8437 8 asks for a way to disable it, and the
    /// existing profiles' CAPABILITY stays as it was.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unauthenticate: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pop3Profile {
    /// Text of the `+OK` greeting; `{hostname}` is replaced. The APOP timestamp follows.
    pub greeting: String,
    /// Put an APOP timestamp in the greeting and accept APOP.
    pub apop: bool,
    /// Accept USER/PASS.
    pub user_pass: bool,
    /// CAPA lines besides `SASL ...`, `STLS` and `USER`, in order.
    pub capabilities: Vec<String>,
    pub auth_mechanisms: Vec<Mechanism>,
    /// Offer STLS (when the transport can do it and TLS is not already on).
    pub stls: bool,
    /// `AUTH` with no mechanism lists the mechanisms ([MS-POP3] 2.2.1, the Microsoft way).
    pub auth_lists_mechanisms: bool,
    pub auth_continuation: Continuation,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub imap: ImapProfile,
    pub pop3: Pop3Profile,
}

/// Optional features a profile can be asked to offer ([`Profile::offer`], a transcript's
/// `@offer`, `harness serve --NAME`).
pub const OFFER_NAMES: &[&str] = &["unauthenticate", "append-limit"];

/// Names accepted by [`Profile::by_name`].
pub const PROFILE_NAMES: &[&str] = &["default", "exchange"];

impl Profile {
    pub fn by_name(name: &str) -> Option<Profile> {
        match name {
            "default" => Some(Profile::default_profile()),
            "exchange" => Some(Profile::exchange()),
            _ => None,
        }
    }

    /// A conformant RFC 3501 / RFC 1939 server with everything the endpoints implement.
    pub fn default_profile() -> Profile {
        Profile {
            name: "default".into(),
            description: "RFC 3501 / RFC 1939 server with PLAIN, LOGIN and NTLM".into(),
            imap: ImapProfile {
                greeting: "{hostname} IMAP4rev1 harness ready".into(),
                capabilities: [
                    "SASL-IR",
                    "LITERAL+",
                    "IDLE",
                    "UIDPLUS",
                    "ID",
                    "NAMESPACE",
                    "ENABLE",
                    "MOVE",
                    "CHILDREN",
                    "UNSELECT",
                ]
                .map(String::from)
                .to_vec(),
                auth_mechanisms: vec![Mechanism::Plain, Mechanism::Login, Mechanism::Ntlm],
                starttls: true,
                login_disabled_without_tls: false,
                auth_continuation: Continuation::Space,
                auth_cancel_status: ImapStatus::Bad,
                auth_cancel_text: "Authentication cancelled".into(),
                auth_ok_text: "AUTHENTICATE completed".into(),
                auth_failed_text: "[AUTHENTICATIONFAILED] Authentication failed".into(),
                login_ok_text: "LOGIN completed".into(),
                login_failed_text: "[AUTHENTICATIONFAILED] Authentication failed".into(),
                append_limit: false,
                unauthenticate: false,
            },
            pop3: Pop3Profile {
                greeting: "{hostname} POP3 harness ready".into(),
                apop: true,
                user_pass: true,
                capabilities: ["TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE"]
                    .map(String::from)
                    .to_vec(),
                auth_mechanisms: vec![Mechanism::Plain, Mechanism::Login, Mechanism::Ntlm],
                stls: true,
                auth_lists_mechanisms: true,
                auth_continuation: Continuation::Space,
            },
        }
    }

    /// Wire shapes of Exchange's IMAP4 and POP3 services as [MS-OXIMAP4] and [MS-OXPOP3]
    /// write them (PROTOCOLS.md 1.5 and 2). GSSAPI is not offered: the endpoints do not
    /// implement it, and a profile advertises only what works.
    pub fn exchange() -> Profile {
        Profile {
            name: "exchange".into(),
            description: "Microsoft Exchange IMAP4/POP3 wire shapes ([MS-OXIMAP4], [MS-OXPOP3])"
                .into(),
            imap: ImapProfile {
                greeting: "The Microsoft Exchange IMAP4 service is ready.".into(),
                // Exchange 2013 advertises these (and GSSAPI, MOVE, ID, UNSELECT; not all here).
                capabilities: [
                    "IMAP4",
                    "IDLE",
                    "LITERAL+",
                    "UIDPLUS",
                    "CHILDREN",
                    "NAMESPACE",
                ]
                .map(String::from)
                .to_vec(),
                auth_mechanisms: vec![Mechanism::Ntlm, Mechanism::Plain],
                starttls: true,
                login_disabled_without_tls: false,
                // [MS-OXIMAP4] 2.2.1: IMAP4_NTLM_Supported_Response = "+" CRLF.
                auth_continuation: Continuation::Bare,
                auth_cancel_status: ImapStatus::No,
                auth_cancel_text: "The AUTH protocol exchange was canceled by the client.".into(),
                auth_ok_text: "AUTHENTICATE completed.".into(),
                auth_failed_text: "AUTHENTICATE failed.".into(),
                login_ok_text: "LOGIN completed.".into(),
                login_failed_text: "LOGIN failed.".into(),
                append_limit: false,
                unauthenticate: false,
            },
            pop3: Pop3Profile {
                greeting: "The Microsoft Exchange POP3 service is ready.".into(),
                apop: false,
                user_pass: true,
                capabilities: ["TOP", "UIDL"].map(String::from).to_vec(),
                auth_mechanisms: vec![Mechanism::Ntlm, Mechanism::Plain],
                stls: true,
                auth_lists_mechanisms: true,
                // [MS-OXPOP3] 2.2.1: POP3_NTLM_Supported_Response = "+" SP CRLF.
                auth_continuation: Continuation::Space,
            },
        }
    }

    /// Turns on the optional feature `name` (one of [`OFFER_NAMES`]); false for another
    /// name.
    pub fn offer(&mut self, name: &str) -> bool {
        match name {
            "unauthenticate" => self.imap.unauthenticate = true,
            "append-limit" => self.imap.append_limit = true,
            _ => return false,
        }
        true
    }

    pub fn imap_greeting(&self, hostname: &str) -> String {
        self.imap.greeting.replace("{hostname}", hostname)
    }

    pub fn pop3_greeting(&self, hostname: &str) -> String {
        self.pop3.greeting.replace("{hostname}", hostname)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_profile_exists_and_round_trips_through_toml() {
        for name in PROFILE_NAMES {
            let p = Profile::by_name(name).expect(name);
            assert_eq!(&p.name, name);
            let text = toml::to_string(&p).unwrap();
            let back: Profile = toml::from_str(&text).unwrap();
            assert_eq!(back, p);
        }
        assert!(Profile::by_name("nope").is_none());
    }
}
