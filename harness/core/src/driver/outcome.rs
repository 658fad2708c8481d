//! What a client session ended with, in a form reports and snapshots print the same way
//! every run: the steps in short form, a status, error codes by name and value, findings.
//!
//! Nothing secret or random goes into it: passwords print as `****`, base64 blobs as what
//! they carry (`<NTLM CHALLENGE>`), and the APOP timestamp as `<apop-timestamp>`.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::codes::ErrorCode;
use crate::Protocol;

/// One short, human-readable line of a session: `S: ...` what the server sent, `C: ...`
/// what the client sent, or a note on what the client (or its user) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct StepLine(pub String);

impl StepLine {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StepLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How the session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not finished yet.
    InProgress,
    /// Logged in and did its work (IMAP SELECT + LOGOUT, POP3 STAT + QUIT).
    Authenticated,
    /// The client gave up with an error (codes say which).
    Failed,
    /// The user was prompted again and again with no progress (then gave up).
    Looping,
    /// The server went away, fell silent, or sent what the client could not read.
    Disconnected,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::InProgress => "in-progress",
            Status::Authenticated => "authenticated",
            Status::Failed => "failed",
            Status::Looping => "looping",
            Status::Disconnected => "disconnected",
        }
    }
}

crate::text::display_by_name!(Status);

/// Something worth a reader's attention, whether or not the session succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// The user was asked for the same credentials again and again without progress.
    CredentialLoop { prompts: u32 },
    /// A password crossed the wire without TLS (PLAIN, LOGIN, USER/PASS, IMAP LOGIN).
    CleartextCredentials { mechanism: String },
    /// The client's policy needs a mechanism the server did not advertise.
    MechanismNotOffered { wanted: String },
    /// The connection closed while the client still expected a reply.
    UnexpectedDisconnect { during: String },
    /// The server sent something the client could not parse or did not expect.
    ProtocolViolation { detail: String },
    /// The server did not answer in time.
    ServerSilent { during: String },
    /// Notifications were on and new mail was delivered, yet none arrived.
    NotificationMissed,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::CredentialLoop { prompts } => write!(
                f,
                "credential loop: the user was prompted {prompts} times for the same credentials without progress"
            ),
            Finding::CleartextCredentials { mechanism } => {
                write!(f, "cleartext credentials: {mechanism} without TLS")
            }
            Finding::MechanismNotOffered { wanted } => {
                write!(f, "mechanism not offered: wanted {wanted}")
            }
            Finding::UnexpectedDisconnect { during } => {
                write!(f, "unexpected disconnect during {during}")
            }
            Finding::ProtocolViolation { detail } => write!(f, "protocol violation: {detail}"),
            Finding::ServerSilent { during } => write!(f, "server silent during {during}"),
            Finding::NotificationMissed => write!(
                f,
                "notification missed: new mail was delivered and no notification arrived"
            ),
        }
    }
}

/// What a client session spoke: a mail protocol, or MAPI over Exchange RPC. Reports print
/// it as `IMAP`, `POP3` or `MAPI` (in JSON too, as [`Protocol`] does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionProtocol {
    Mail(Protocol),
    Mapi,
    /// A browser and a web application's hop to the store (the double hop).
    Web,
    /// A program's address-book provider: referral, KDC and NSPI (GC failover).
    AddressBook,
}

impl SessionProtocol {
    pub fn name(self) -> &'static str {
        match self {
            SessionProtocol::Mail(p) => p.name(),
            SessionProtocol::Mapi => "MAPI",
            SessionProtocol::Web => "HTTP and a store provider",
            SessionProtocol::AddressBook => "MAPI address book (NSPI)",
        }
    }
}

crate::text::display_by_name!(SessionProtocol);

impl From<Protocol> for SessionProtocol {
    fn from(p: Protocol) -> Self {
        SessionProtocol::Mail(p)
    }
}

impl Serialize for SessionProtocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// The whole story of one client session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionOutcome {
    pub actor: String,
    pub protocol: SessionProtocol,
    pub policy: String,
    pub steps: Vec<StepLine>,
    pub status: Status,
    #[serde(serialize_with = "serialize_codes")]
    pub codes: Vec<ErrorCode>,
    pub findings: Vec<Finding>,
    /// How often the (simulated) user was asked for credentials again.
    pub prompts: u32,
}

/// Codes serialize as `{ "name": ..., "value": "0x800CCC18" }`, the catalogue's spelling.
fn serialize_codes<S: Serializer>(codes: &[ErrorCode], s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct CodeView {
        name: Option<&'static str>,
        value: String,
    }
    s.collect_seq(codes.iter().map(|c| CodeView {
        name: c.name(),
        value: c.value_text(),
    }))
}

impl SessionOutcome {
    /// Stable text for snapshots: a header, the steps one per line, then status, prompts,
    /// codes and findings.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("actor: {}\n", self.actor));
        out.push_str(&format!("protocol: {}\n", self.protocol));
        out.push_str(&format!("policy: {}\n", self.policy));
        for step in &self.steps {
            out.push_str(step.as_str());
            out.push('\n');
        }
        out.push_str(&format!("status: {}\n", self.status));
        out.push_str(&format!("prompts: {}\n", self.prompts));
        if self.codes.is_empty() {
            out.push_str("codes: none\n");
        } else {
            let codes: Vec<String> = self.codes.iter().map(|c| c.to_string()).collect();
            out.push_str(&format!("codes: {}\n", codes.join(", ")));
        }
        if self.findings.is_empty() {
            out.push_str("findings: none\n");
        } else {
            out.push_str("findings:\n");
            for f in &self.findings {
                out.push_str(&format!("  - {f}\n"));
            }
        }
        out
    }
}

pub(crate) use crate::text::printable;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::known;

    #[test]
    fn render_is_stable_text() {
        let o = SessionOutcome {
            actor: "alice".into(),
            protocol: Protocol::Pop3.into(),
            policy: "outlook-express spa".into(),
            steps: vec![StepLine("S: +OK hi".into()), StepLine("C: CAPA".into())],
            status: Status::Failed,
            codes: vec![known::IXP_E_SICILY_LOGON_FAILED],
            findings: vec![Finding::MechanismNotOffered {
                wanted: "NTLM".into(),
            }],
            prompts: 0,
        };
        assert_eq!(
            o.render(),
            "actor: alice\nprotocol: POP3\npolicy: outlook-express spa\nS: +OK hi\nC: CAPA\n\
             status: failed\nprompts: 0\ncodes: IXP_E_SICILY_LOGON_FAILED (0x800CCC18)\n\
             findings:\n  - mechanism not offered: wanted NTLM\n"
        );
    }

    #[test]
    fn printable_masks_controls_and_cuts() {
        assert_eq!(printable(b"a\x01b\xffc", 10), "a?b?c");
    }
}
