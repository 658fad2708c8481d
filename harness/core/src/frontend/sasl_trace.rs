//! Short, password-free descriptions of SASL data for the front-end's trace (`<PLAIN
//! user=alice>`, `<NTLM AUTHENTICATE user=alice>`): SASL data is described, never shown.

use crate::ntlm::Message;
use crate::sasl::Mechanism;
use crate::text::printable;

/// A short, password-free description of SASL data for the trace.
pub fn describe_sasl(mech: Mechanism, data: &[u8]) -> String {
    match mech {
        Mechanism::Ntlm => describe_ntlm(data),
        Mechanism::Plain => {
            let mut parts = data.split(|&b| b == 0);
            let _authz = parts.next();
            match parts.next().map(String::from_utf8_lossy) {
                Some(user) => format!("<PLAIN user={}>", printable(user.as_bytes(), 64)),
                None => format!("<PLAIN malformed, {} bytes>", data.len()),
            }
        }
        Mechanism::Login => format!("<LOGIN {} bytes>", data.len()),
    }
}

/// A short description of an NTLM message.
pub fn describe_ntlm(data: &[u8]) -> String {
    if data.is_empty() {
        return "<empty>".into();
    }
    match Message::decode(data) {
        Ok(Message::Negotiate(_)) => "<NTLM NEGOTIATE>".into(),
        Ok(Message::Challenge(_)) => "<NTLM CHALLENGE>".into(),
        Ok(Message::Authenticate(a)) => {
            format!(
                "<NTLM AUTHENTICATE user={}>",
                printable(a.user.as_bytes(), 64)
            )
        }
        Err(_) => format!("<not NTLM, {} bytes>", data.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_hide_secrets() {
        assert_eq!(
            describe_sasl(Mechanism::Plain, b"\0alice\0secret"),
            "<PLAIN user=alice>"
        );
        assert_eq!(describe_ntlm(b"hello"), "<not NTLM, 5 bytes>");
    }
}
