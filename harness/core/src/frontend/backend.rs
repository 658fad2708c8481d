//! Reading back-end replies (the front-end is the client here) and describing SASL data
//! for the trace. The readers only decide where a reply ends; the front-end relays the
//! raw bytes.

use harness_wire::imap::{self, literal_at_end, response_may_carry_literals, ResponseReader};

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

use harness_wire::imap::trim_line_end as trim_eol;

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
    fn imap_reader_status_text_ending_in_braces_is_no_literal() {
        // RFC 3501 9: only data carries literals. A back-end's `* OK ... {5}` (or a
        // BYE, or a continuation text) ending in `{5}` is text, so the completion
        // right behind it must not be skipped as five literal octets.
        let mut r = ImapReader::default();
        r.push(b"* OK [ALERT] see {5}\r\n+ more {2}\r\na1 OK done\r\n");
        assert_eq!(
            r.next_event("a1"),
            Ok(Some(BackendEvent::Untagged(
                b"* OK [ALERT] see {5}\r\n".to_vec()
            )))
        );
        assert!(matches!(
            r.next_event("a1"),
            Ok(Some(BackendEvent::Continuation { .. }))
        ));
        assert_eq!(
            r.next_event("a1"),
            Ok(Some(BackendEvent::Done {
                ok: true,
                raw: b"a1 OK done\r\n".to_vec()
            }))
        );
        // ... while data keeps its literals, here over two pushes.
        r.push(b"* 1 FETCH (BODY[] {5}\r\na2 OK");
        assert!(matches!(
            r.next_event("a2"),
            Ok(Some(BackendEvent::Untagged(_)))
        ));
        r.push(b")\r\na2 NO x\r\n");
        assert_eq!(
            r.next_event("a2"),
            Ok(Some(BackendEvent::Done {
                ok: false,
                raw: b"a2 NO x\r\n".to_vec()
            }))
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

/// A piece of an IMAP stream cut by [`StreamScanner`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A whole line that starts a message (a command, or a response), up to the cap.
    Line(Vec<u8>),
    /// Anything else: literal octets, the lines that continue a message after a literal,
    /// and lines longer than the cap.
    Other(Vec<u8>),
    /// A line longer than the cap that started a message has ended (its octets went out
    /// as `Other`): its first octets.
    LongLine { head: Vec<u8> },
}

/// Octets of a long line's start kept for [`Piece::LongLine`].
const HEAD: usize = 32;

/// A line that starts a message carries a tag: a command from a client, a tagged
/// completion from a server (not `*` or `+`, and a space after the first word; `DONE`
/// ending IDLE has none).
pub fn is_tagged(head: &[u8]) -> bool {
    !matches!(head.first(), None | Some(b'*' | b'+')) && head.contains(&b' ')
}

/// Octets of the end of an over-long line kept to spot a literal announcement.
const TAIL: usize = 32;

/// Follows an IMAP stream in either direction without holding more than one line (up to
/// `cap` octets): where messages start, which octets are literal data (`{n}` / `{n+}` at
/// a line's end, RFC 3501 4.3 and RFC 7888). The session cache uses it to spot a client's
/// LOGOUT in relayed traffic and the completion of its own reset command.
///
/// It uses the literal rules of the one response reader (`harness_wire::imap`), but is
/// not that reader: it relays, so it never fails (an over-long line passes through with
/// only its head and tail kept), hands literal octets out as they arrive instead of
/// counting them away, and also follows commands, where any line may announce a literal.
/// Server output ([`StreamScanner::responses`]) carries literals only in data (RFC 3501
/// 9).
#[derive(Debug, Clone)]
pub struct StreamScanner {
    cap: usize,
    line: Vec<u8>,
    /// The line being read is longer than the cap: it passes as `Other`.
    overflow: bool,
    tail: Vec<u8>,
    /// The start of an over-long line.
    head: Vec<u8>,
    /// The next line continues a message after a literal.
    continuing: bool,
    skip: u64,
    /// Server output: only data announces literals.
    responses: bool,
}

impl StreamScanner {
    /// For a client's commands.
    pub fn new(cap: usize) -> Self {
        StreamScanner {
            cap,
            line: Vec::new(),
            overflow: false,
            tail: Vec::new(),
            head: Vec::new(),
            continuing: false,
            skip: 0,
            responses: false,
        }
    }

    /// For a server's responses.
    pub fn responses(cap: usize) -> Self {
        StreamScanner {
            responses: true,
            ..StreamScanner::new(cap)
        }
    }

    /// True between messages (nothing of a message read yet).
    pub fn at_boundary(&self) -> bool {
        self.line.is_empty() && !self.overflow && !self.continuing && self.skip == 0
    }

    fn keep_tail(&mut self, bytes: &[u8]) {
        self.tail.extend_from_slice(bytes);
        let extra = self.tail.len().saturating_sub(TAIL);
        self.tail.drain(..extra);
    }

    /// Cuts `bytes` into pieces appended to `out`.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut Vec<Piece>) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                let (lit, rest) = bytes.split_at(n);
                out.push(Piece::Other(lit.to_vec()));
                self.skip -= n as u64;
                bytes = rest;
                continue;
            }
            let (chunk, rest, ended) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let (a, b) = bytes.split_at(i + 1);
                    (a, b, true)
                }
                None => (bytes, &[][..], false),
            };
            bytes = rest;
            if self.overflow {
                self.keep_tail(chunk);
                out.push(Piece::Other(chunk.to_vec()));
            } else {
                self.line.extend_from_slice(chunk);
                if self.line.len() > self.cap {
                    self.overflow = true;
                    let line = std::mem::take(&mut self.line);
                    self.keep_tail(&line);
                    self.head = line.get(..HEAD).unwrap_or(&line).to_vec();
                    out.push(Piece::Other(line));
                }
            }
            if !ended {
                continue;
            }
            let (first, last) = if self.overflow {
                (&self.head, &self.tail)
            } else {
                (&self.line, &self.line)
            };
            let may_carry =
                !self.responses || self.continuing || response_may_carry_literals(first);
            let literal = literal_at_end(trim_eol(last))
                .filter(|_| may_carry)
                .map(|l| l.len);
            if !self.overflow {
                let line = std::mem::take(&mut self.line);
                out.push(if self.continuing {
                    Piece::Other(line)
                } else {
                    Piece::Line(line)
                });
            } else if !self.continuing {
                out.push(Piece::LongLine {
                    head: std::mem::take(&mut self.head),
                });
            }
            self.head.clear();
            self.overflow = false;
            self.tail.clear();
            self.continuing = literal.is_some();
            self.skip = literal.unwrap_or(0);
        }
    }
}

/// `tag LOGOUT` CRLF (any case): the tag, if `line` is exactly that.
pub fn logout_tag(line: &[u8]) -> Option<&[u8]> {
    let body = trim_eol(line);
    let (tag, cmd) = body.split_at(body.iter().position(|&b| b == b' ')?);
    let valid_tag = !tag.is_empty()
        && tag
            .iter()
            .all(|&b| b.is_ascii_graphic() && !b"(){%*\"\\+]".contains(&b));
    (valid_tag && cmd.eq_ignore_ascii_case(b" LOGOUT")).then_some(tag)
}

/// Names a capability in a `[CAPABILITY ...]` response code or a `* CAPABILITY` line.
pub fn line_has_capability(line: &[u8], name: &str) -> bool {
    let upper = line.to_ascii_uppercase();
    let Some(start) = upper.windows(10).position(|w| w == b"CAPABILITY") else {
        return false;
    };
    upper
        .get(start..)
        .unwrap_or_default()
        .split(|&b| b == b' ' || b == b']' || b == b'\r' || b == b'\n')
        .any(|w| w == name.as_bytes())
}

#[cfg(test)]
mod scanner_tests {
    use super::*;

    fn lines(s: &mut StreamScanner, input: &[&[u8]]) -> Vec<Piece> {
        let mut out = Vec::new();
        for i in input {
            s.push(i, &mut out);
        }
        out
    }

    #[test]
    fn literals_and_continuations_are_not_message_starts() {
        let mut s = StreamScanner::new(64);
        let out = lines(
            &mut s,
            &[
                b"a APPEND INBOX {10}\r\n",
                b"b LOGOUT\r\n",
                b"\r\nc LOG",
                b"OUT\r\n",
            ],
        );
        assert_eq!(
            out,
            vec![
                Piece::Line(b"a APPEND INBOX {10}\r\n".to_vec()),
                Piece::Other(b"b LOGOUT\r\n".to_vec()),
                Piece::Other(b"\r\n".to_vec()),
                Piece::Line(b"c LOGOUT\r\n".to_vec()),
            ]
        );
        assert!(s.at_boundary());
        assert_eq!(logout_tag(b"c LOGOUT\r\n"), Some(&b"c"[..]));
        assert_eq!(logout_tag(b"c logout\r\n"), Some(&b"c"[..]));
        assert_eq!(logout_tag(b"c LOGOUT x\r\n"), None);
        assert_eq!(logout_tag(b"c+ LOGOUT\r\n"), None);
        assert_eq!(logout_tag(b" LOGOUT\r\n"), None);
    }

    #[test]
    fn over_long_lines_pass_and_still_announce_literals() {
        let mut s = StreamScanner::new(8);
        let out = lines(&mut s, &[b"a APPEND INBOX {3+}\r\nx LOGOUT\r\n"]);
        assert_eq!(
            out.first(),
            Some(&Piece::Other(b"a APPEND INBOX {3+}\r\n".to_vec()))
        );
        // "x L" is literal data; "OGOUT\r\n" continues the message.
        assert_eq!(
            out.get(1),
            Some(&Piece::LongLine {
                head: b"a APPEND INBOX {3+}\r\n".to_vec()
            })
        );
        assert_eq!(out.get(2), Some(&Piece::Other(b"x L".to_vec())));
        assert_eq!(out.get(3), Some(&Piece::Other(b"OGOUT\r\n".to_vec())));
        assert!(is_tagged(b"a APPEND") && is_tagged(b"a1 OK done"));
        assert!(!is_tagged(b"DONE\r\n") && !is_tagged(b"* 1 FETCH") && !is_tagged(b"+ go"));
        assert!(s.at_boundary());
    }

    #[test]
    fn server_status_text_ending_in_braces_is_no_literal() {
        let mut s = StreamScanner::responses(64);
        let out = lines(
            &mut s,
            &[b"* OK hi {5}\r\na1 OK done\r\n* 1 FETCH (BODY[] {2}\r\nab)\r\n"],
        );
        assert_eq!(
            out,
            vec![
                Piece::Line(b"* OK hi {5}\r\n".to_vec()),
                Piece::Line(b"a1 OK done\r\n".to_vec()),
                Piece::Line(b"* 1 FETCH (BODY[] {2}\r\n".to_vec()),
                Piece::Other(b"ab".to_vec()),
                Piece::Other(b")\r\n".to_vec()),
            ]
        );
        assert!(s.at_boundary());
        // an over-long status line is judged by its head
        let mut s = StreamScanner::responses(9);
        let out = lines(&mut s, &[b"* BYE going away {3}\r\nb1 OK x\r\n"]);
        assert_eq!(out.last(), Some(&Piece::Line(b"b1 OK x\r\n".to_vec())));
    }

    #[test]
    fn capability_lookup() {
        assert!(line_has_capability(
            b"* OK [CAPABILITY IMAP4rev1 UNSELECT IDLE] ready\r\n",
            "UNSELECT"
        ));
        assert!(line_has_capability(
            b"a OK [CAPABILITY IMAP4rev1 unselect] done\r\n",
            "UNSELECT"
        ));
        assert!(!line_has_capability(b"* OK UNSELECT ready\r\n", "UNSELECT"));
        assert!(!line_has_capability(
            b"* OK [CAPABILITY IMAP4rev1 UNSELECTX]\r\n",
            "UNSELECT"
        ));
    }
}
