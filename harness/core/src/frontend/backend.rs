//! Reading back-end replies (the front-end is the client here) and describing SASL data
//! for the trace. The readers only decide where a reply ends; the front-end relays the
//! raw bytes.

use crate::ntlm::Message;
use crate::pop3::response::{decode_reply, Reply, ResponseError, ResponseLimits};
use crate::sasl::{decode_base64, Mechanism};

/// One complete piece of a back-end reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendEvent {
    /// IMAP `* ...`: the first line (literal data after it is counted away, not kept).
    Untagged(Vec<u8>),
    /// A continuation request (`+ ...`): the raw line and its decoded data, if base64.
    Continuation { raw: Vec<u8>, data: Option<Vec<u8>> },
    /// The final reply: IMAP tagged line for the tag sent, POP3 status line.
    Done { ok: bool, raw: Vec<u8> },
}

/// Why a back-end reply could not be read: the connection is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("back-end reply line longer than {0} octets")]
    LineTooLong(usize),
    #[error("back-end sent a tagged reply for {0:?}, not for the command sent")]
    WrongTag(String),
    #[error("invalid back-end reply: {0}")]
    Invalid(String),
    #[error("back-end connection closed")]
    Closed,
}

/// Longest back-end reply line read before a login (greetings and status lines are
/// short; literal data is counted, not buffered).
pub const MAX_REPLY_LINE: usize = 8 * 1024;

/// Cuts an IMAP back-end's output into replies (RFC 3501 7: untagged `*`, continuation
/// `+`, tagged completion), skipping literal octets announced by `{n}` at a line's end.
#[derive(Debug, Clone, Default)]
pub struct ImapReader {
    buf: Vec<u8>,
    /// Literal octets still to skip.
    skip: u64,
    /// The lines being read continue an untagged response after a literal.
    continuing: bool,
}

impl ImapReader {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Octets left over after the last event (output pipelined behind it).
    pub fn take_rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// The next event for a command sent with `tag`; `Ok(None)` means more bytes needed.
    pub fn next_event(&mut self, tag: &str) -> Result<Option<BackendEvent>, BackendError> {
        loop {
            if self.skip > 0 {
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(self.buf.len());
                self.buf.drain(..n);
                self.skip -= n as u64;
                if self.skip > 0 {
                    return Ok(None);
                }
            }
            let Some(lf) = self
                .buf
                .iter()
                .take(MAX_REPLY_LINE)
                .position(|&b| b == b'\n')
            else {
                if self.buf.len() >= MAX_REPLY_LINE {
                    return Err(BackendError::LineTooLong(MAX_REPLY_LINE));
                }
                return Ok(None);
            };
            let raw: Vec<u8> = self.buf.drain(..=lf).collect();
            let literal = literal_at_end(&raw);
            if self.continuing {
                self.continuing = literal.is_some();
                self.skip = literal.unwrap_or(0);
                continue;
            }
            let first = raw.split(|&b| b == b' ').next().unwrap_or_default();
            let first = trim_eol(first);
            if first == b"*" {
                self.continuing = literal.is_some();
                self.skip = literal.unwrap_or(0);
                return Ok(Some(BackendEvent::Untagged(raw)));
            }
            if first.first() == Some(&b'+') {
                let text = trim_eol(raw.get(1..).unwrap_or_default());
                let text = text.strip_prefix(b" ").unwrap_or(text);
                let data = decode_base64(text).ok();
                return Ok(Some(BackendEvent::Continuation { raw, data }));
            }
            if first != tag.as_bytes() {
                return Err(BackendError::WrongTag(
                    String::from_utf8_lossy(first).chars().take(40).collect(),
                ));
            }
            let status = raw
                .get(tag.len() + 1..)
                .and_then(|r| r.split(|&b| b == b' ').next())
                .map(trim_eol)
                .unwrap_or_default();
            let ok = status.eq_ignore_ascii_case(b"OK");
            return Ok(Some(BackendEvent::Done { ok, raw }));
        }
    }
}

/// Cuts a POP3 back-end's output into single-line replies (status or continuation).
#[derive(Debug, Clone, Default)]
pub struct Pop3Reader {
    buf: Vec<u8>,
}

impl Pop3Reader {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn take_rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    pub fn next_event(&mut self) -> Result<Option<BackendEvent>, BackendError> {
        let limits = ResponseLimits {
            max_line: MAX_REPLY_LINE,
            max_body: MAX_REPLY_LINE,
        };
        match decode_reply(&self.buf, &limits) {
            Ok((reply, used)) => {
                let raw: Vec<u8> = self.buf.drain(..used.min(self.buf.len())).collect();
                Ok(Some(match reply {
                    Reply::Status(s) => BackendEvent::Done {
                        ok: s.status == crate::pop3::Status::Ok,
                        raw,
                    },
                    Reply::Continuation(data) => BackendEvent::Continuation {
                        raw,
                        data: Some(data),
                    },
                }))
            }
            Err(ResponseError::Incomplete) => Ok(None),
            Err(ResponseError::Invalid(e)) => Err(BackendError::Invalid(e.to_string())),
        }
    }
}

fn trim_eol(b: &[u8]) -> &[u8] {
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    b.strip_suffix(b"\r").unwrap_or(b)
}

/// `{n}` (or `{n+}`) at the end of a line: the count of literal octets that follow.
fn literal_at_end(line: &[u8]) -> Option<u64> {
    let body = trim_eol(line).strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let inner = body.get(open + 1..)?;
    let digits = inner.strip_suffix(b"+").unwrap_or(inner);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u64, |acc, &d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

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

pub use crate::text::printable;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imap_reader_counts_literals_and_finds_the_tag() {
        let mut r = ImapReader::default();
        r.push(b"* 1 FETCH (BODY[] {12}\r\na1 OK fake\r\n)\r\n+ dGVzdA==\r\na1 NO");
        assert_eq!(
            r.next_event("a1"),
            Ok(Some(BackendEvent::Untagged(
                b"* 1 FETCH (BODY[] {12}\r\n".to_vec()
            )))
        );
        assert_eq!(
            r.next_event("a1"),
            Ok(Some(BackendEvent::Continuation {
                raw: b"+ dGVzdA==\r\n".to_vec(),
                data: Some(b"test".to_vec())
            }))
        );
        assert_eq!(r.next_event("a1"), Ok(None));
        r.push(b" failed\r\nextra");
        assert_eq!(
            r.next_event("a1"),
            Ok(Some(BackendEvent::Done {
                ok: false,
                raw: b"a1 NO failed\r\n".to_vec()
            }))
        );
        assert_eq!(r.take_rest(), b"extra");
        r.push(b"zz OK x\r\n");
        assert_eq!(r.next_event("a1"), Err(BackendError::WrongTag("zz".into())));
        let mut r = ImapReader::default();
        r.push(b"+\r\n");
        assert!(matches!(
            r.next_event("t"),
            Ok(Some(BackendEvent::Continuation { data: Some(d), .. })) if d.is_empty()
        ));
        r.push(&[b'x'; MAX_REPLY_LINE]);
        assert_eq!(
            r.next_event("t"),
            Err(BackendError::LineTooLong(MAX_REPLY_LINE))
        );
    }

    #[test]
    fn pop3_reader_status_and_continuation() {
        let mut r = Pop3Reader::default();
        r.push(b"+ \r\n-ERR [AUTH] no\r\n+OK");
        assert!(matches!(
            r.next_event(),
            Ok(Some(BackendEvent::Continuation { .. }))
        ));
        assert_eq!(
            r.next_event(),
            Ok(Some(BackendEvent::Done {
                ok: false,
                raw: b"-ERR [AUTH] no\r\n".to_vec()
            }))
        );
        assert_eq!(r.next_event(), Ok(None));
        r.push(b"\r\n");
        assert!(matches!(
            r.next_event(),
            Ok(Some(BackendEvent::Done { ok: true, .. }))
        ));
        r.push(b"hello\r\n");
        assert!(matches!(r.next_event(), Err(BackendError::Invalid(_))));
    }

    #[test]
    fn descriptions_hide_secrets() {
        assert_eq!(
            describe_sasl(Mechanism::Plain, b"\0alice\0secret"),
            "<PLAIN user=alice>"
        );
        assert_eq!(describe_ntlm(b"hello"), "<not NTLM, 5 bytes>");
    }
}
