//! Following a leased IMAP stream in either direction without holding more than one line:
//! where messages start, which octets are literal data. The session cache spots a client's
//! LOGOUT and the completion of its own reset command with it.

use harness_wire::imap::{literal_at_end, response_may_carry_literals, trim_line_end as trim_eol};

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
    let (tag, cmd) = split_tag(line)?;
    cmd.eq_ignore_ascii_case(b" LOGOUT").then_some(tag)
}

/// A valid tag and the rest of the line after it (from its space), line end trimmed.
fn split_tag(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let body = trim_eol(line);
    let (tag, cmd) = body.split_at(body.iter().position(|&b| b == b' ')?);
    let valid_tag = !tag.is_empty()
        && tag
            .iter()
            .all(|&b| b.is_ascii_graphic() && !b"(){%*\"\\+]".contains(&b));
    valid_tag.then_some((tag, cmd))
}

/// Whether a client line is the command `name` (any case, with or without arguments).
pub fn names_command(line: &[u8], name: &str) -> bool {
    let Some((_, cmd)) = split_tag(line) else {
        return false;
    };
    let word = cmd
        .get(1..)
        .unwrap_or_default()
        .split(|&b| b == b' ')
        .next()
        .unwrap_or_default();
    word.eq_ignore_ascii_case(name.as_bytes())
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
mod tests {
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
