//! Reading back-end replies before the lease (the front-end is the client here): where an
//! IMAP or POP3 reply ends. The readers only decide that; the front-end relays the raw
//! bytes.

use harness_wire::imap::{self, trim_line_end as trim_eol, ResponseReader};

use crate::pop3::response::{decode_reply, Reply, ResponseError, ResponseLimits};
use crate::sasl::decode_base64;

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
/// `+`, tagged completion) with the one IMAP response reader, which counts away the
/// literal octets data announces with `{n}` (RFC 3501 9: never a status text's `{n}`).
#[derive(Debug, Clone)]
pub struct ImapReader {
    reader: ResponseReader,
}

impl Default for ImapReader {
    fn default() -> Self {
        ImapReader {
            reader: ResponseReader::new(imap::Limits {
                max_line: MAX_REPLY_LINE,
                max_literal: u64::MAX,
                accept_bare_lf: true,
            }),
        }
    }
}

impl ImapReader {
    pub fn push(&mut self, bytes: &[u8]) {
        self.reader.push(bytes);
    }

    /// Octets left over after the last event (output pipelined behind it).
    pub fn take_rest(&mut self) -> Vec<u8> {
        self.reader.take_rest()
    }

    /// The next event for a command sent with `tag`; `Ok(None)` means more bytes needed.
    pub fn next_event(&mut self, tag: &str) -> Result<Option<BackendEvent>, BackendError> {
        let raw = loop {
            match self.reader.next_event() {
                Ok(None) => return Ok(None),
                Ok(Some(imap::Event::Response(raw))) => break raw,
                // Literal data and the rest of its response are relayed, not read.
                Ok(Some(imap::Event::Literal(_) | imap::Event::Continued(_))) => {}
                Err(imap::Error::LineTooLong { limit }) => {
                    return Err(BackendError::LineTooLong(limit))
                }
                Err(e) => return Err(BackendError::Invalid(e.to_string())),
            }
        };
        let first = raw.split(|&b| b == b' ').next().unwrap_or_default();
        let first = trim_eol(first);
        if first == b"*" {
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
        Ok(Some(BackendEvent::Done { ok, raw }))
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

#[cfg(test)]
mod tests {
    use super::*;

    type Read = Result<Option<BackendEvent>, BackendError>;

    fn untagged(raw: &[u8]) -> Read {
        Ok(Some(BackendEvent::Untagged(raw.to_vec())))
    }

    fn done(ok: bool, raw: &[u8]) -> Read {
        Ok(Some(BackendEvent::Done {
            ok,
            raw: raw.to_vec(),
        }))
    }

    #[test]
    fn imap_reader_counts_literals_and_finds_the_tag() {
        let mut r = ImapReader::default();
        r.push(b"* 1 FETCH (BODY[] {12}\r\na1 OK fake\r\n)\r\n+ dGVzdA==\r\na1 NO");
        assert_eq!(r.next_event("a1"), untagged(b"* 1 FETCH (BODY[] {12}\r\n"));
        assert_eq!(
            r.next_event("a1"),
            Ok(Some(BackendEvent::Continuation {
                raw: b"+ dGVzdA==\r\n".to_vec(),
                data: Some(b"test".to_vec())
            }))
        );
        assert_eq!(r.next_event("a1"), Ok(None));
        r.push(b" failed\r\nextra");
        assert_eq!(r.next_event("a1"), done(false, b"a1 NO failed\r\n"));
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
    fn imap_reader_status_text_ending_in_braces_is_no_literal() {
        // RFC 3501 9: only data carries literals. A back-end's `* OK ... {5}` (or a
        // BYE, or a continuation text) ending in `{5}` is text, so the completion
        // right behind it must not be skipped as five literal octets.
        let mut r = ImapReader::default();
        r.push(b"* OK [ALERT] see {5}\r\n+ more {2}\r\na1 OK done\r\n");
        assert_eq!(r.next_event("a1"), untagged(b"* OK [ALERT] see {5}\r\n"));
        assert!(matches!(
            r.next_event("a1"),
            Ok(Some(BackendEvent::Continuation { .. }))
        ));
        assert_eq!(r.next_event("a1"), done(true, b"a1 OK done\r\n"));
        // ... while data keeps its literals, here over two pushes.
        r.push(b"* 1 FETCH (BODY[] {5}\r\na2 OK");
        assert!(matches!(
            r.next_event("a2"),
            Ok(Some(BackendEvent::Untagged(_)))
        ));
        r.push(b")\r\na2 NO x\r\n");
        assert_eq!(r.next_event("a2"), done(false, b"a2 NO x\r\n"));
    }

    #[test]
    fn pop3_reader_status_and_continuation() {
        let mut r = Pop3Reader::default();
        r.push(b"+ \r\n-ERR [AUTH] no\r\n+OK");
        assert!(matches!(
            r.next_event(),
            Ok(Some(BackendEvent::Continuation { .. }))
        ));
        assert_eq!(r.next_event(), done(false, b"-ERR [AUTH] no\r\n"));
        assert_eq!(r.next_event(), Ok(None));
        r.push(b"\r\n");
        assert!(matches!(
            r.next_event(),
            Ok(Some(BackendEvent::Done { ok: true, .. }))
        ));
        r.push(b"hello\r\n");
        assert!(matches!(r.next_event(), Err(BackendError::Invalid(_))));
    }
}
