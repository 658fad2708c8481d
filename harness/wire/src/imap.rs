//! The one reader of IMAP server output (RFC 3501 7 and 9), sans-IO.
//!
//! [`ResponseReader`] cuts what a server sends into responses: the first line of each
//! (untagged `*`, continuation `+`, or a tagged completion), the lines that continue a
//! response after a literal, and the literals themselves, which are counted away and
//! never stored. A literal (`{n}` or `{n+}` at a line's end, RFC 3501 4.3, RFC 7888) is
//! taken only where RFC 3501 9 allows one: in data (`* 1 FETCH ...`, `* LIST ...`) and in
//! the lines that continue it. The text of a completion, of an untagged OK, NO, BAD,
//! PREAUTH or BYE, or of a continuation request is text, even when it ends in `{5}`.
//!
//! Lines are bounded by [`Limits::max_line`] and literals by [`Limits::max_literal`];
//! both are checked before anything is buffered or skipped, and the errors are typed.
//! The events do not depend on how the input is cut into pushes.

/// Bounds and strictness of a [`ResponseReader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line, its line end included.
    pub max_line: usize,
    /// Largest literal announced.
    pub max_literal: u64,
    /// Take a line ended by LF alone (RFC 3501 requires CRLF) instead of refusing it.
    pub accept_bare_lf: bool,
}

impl Limits {
    /// No bound a real stream would reach (for output already in memory).
    pub const UNBOUNDED: Limits = Limits {
        max_line: usize::MAX,
        max_literal: u64::MAX,
        accept_bare_lf: true,
    };
}

/// One piece of server output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The first line of a response, as received (line end included).
    Response(Vec<u8>),
    /// A line continuing a response after a literal, as received.
    Continued(Vec<u8>),
    /// That many literal octets follow the line just handed out (counted away).
    Literal(u64),
}

/// Why the output cannot be read on. The reader stays at the offending line: asking
/// again gives the same error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("response line longer than {limit} octets")]
    LineTooLong { limit: usize },
    #[error("response line ends in LF without CR")]
    BareLf,
    #[error("literal of {size} octets exceeds the {limit}-octet limit")]
    LiteralTooLarge { size: u64, limit: u64 },
}

/// A literal announcement at the end of a line (RFC 3501 4.3; `{n+}` is RFC 7888's
/// non-synchronising form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Literal {
    /// The announced length; a count beyond `u64` saturates (it is over any limit).
    pub len: u64,
    pub synchronizing: bool,
    /// The count did not fit in `u64`.
    pub saturated: bool,
}

/// The line without its LF or CRLF.
pub fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `{n}` or `{n+}` at the very end of `line` (its line end already removed).
pub fn literal_at_end(line: &[u8]) -> Option<Literal> {
    let body = line.strip_suffix(b"}")?;
    let open = memchr::memrchr(b'{', body)?;
    let inner = body.get(open + 1..)?;
    let (digits, synchronizing) = match inner.strip_suffix(b"+") {
        Some(d) => (d, false),
        None => (inner, true),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        // Text that merely ends in "}" (a resp-text) is not a literal.
        return None;
    }
    let exact = digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    });
    Some(Literal {
        len: exact.unwrap_or(u64::MAX),
        synchronizing,
        saturated: exact.is_none(),
    })
}

/// Whether a server response whose first line is `first_line` can carry literals
/// (RFC 3501 9): only data (`* 1 FETCH ...`, `* LIST ...`) can. The text of a completion,
/// of an untagged status (OK, NO, BAD, PREAUTH, BYE) or of a continuation request is
/// text, even when it ends in `{5}`.
pub fn response_may_carry_literals(first_line: &[u8]) -> bool {
    let Some(untagged) = first_line.strip_prefix(b"* ") else {
        return false;
    };
    let untagged = trim_line_end(untagged);
    let word = untagged.split(|&b| b == b' ').next().unwrap_or_default();
    ![&b"OK"[..], b"NO", b"BAD", b"PREAUTH", b"BYE"]
        .iter()
        .any(|s| word.eq_ignore_ascii_case(s))
}

/// The literal a server line announces: `continues_response` says the line continues a
/// response after a literal (then it is data); otherwise it is a response's first line
/// and only data may announce one.
pub fn literal_in_response(line: &[u8], continues_response: bool) -> Option<Literal> {
    if continues_response || response_may_carry_literals(line) {
        literal_at_end(trim_line_end(line))
    } else {
        None
    }
}

/// A tagged completion's status (RFC 3501 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
}

/// The first line of a response, by its grammar (RFC 3501 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseLine<'a> {
    /// `"*" SP ...`: the text after `* `.
    Untagged(&'a [u8]),
    /// `"+" [SP text]`: the text after `+` and one optional space.
    Continuation(&'a [u8]),
    /// `tag SP ("OK" / "NO" / "BAD") [SP resp-text]`.
    Tagged {
        tag: &'a [u8],
        status: Status,
        text: &'a [u8],
    },
}

/// Reads a response's first line (with or without its line end); `None` when it is
/// none of the three forms or its tag is not a tag (1*<ASTRING-CHAR except "+">).
pub fn parse_response_line(line: &[u8]) -> Option<ResponseLine<'_>> {
    let line = trim_line_end(line);
    if let Some(rest) = line.strip_prefix(b"+") {
        return Some(ResponseLine::Continuation(
            rest.strip_prefix(b" ").unwrap_or(rest),
        ));
    }
    if let Some(rest) = line.strip_prefix(b"* ") {
        return Some(ResponseLine::Untagged(rest));
    }
    let mut parts = line.splitn(3, |&b| b == b' ');
    let tag = parts.next().unwrap_or_default();
    let status = parts.next().unwrap_or_default();
    let text = parts.next().unwrap_or_default();
    let status = [
        (&b"OK"[..], Status::Ok),
        (b"NO", Status::No),
        (b"BAD", Status::Bad),
    ]
    .into_iter()
    .find(|(name, _)| status.eq_ignore_ascii_case(name))?
    .1;
    let tag_ok = !tag.is_empty()
        && tag
            .iter()
            .all(|&b| b.is_ascii_graphic() && !b"(){%*\"\\+".contains(&b));
    tag_ok.then_some(ResponseLine::Tagged { tag, status, text })
}

/// Cuts IMAP server output into [`Event`]s: [`push`](Self::push) bytes as they arrive,
/// then call [`next_event`](Self::next_event) until it gives `Ok(None)`.
#[derive(Debug, Clone)]
pub struct ResponseReader {
    limits: Limits,
    buf: Vec<u8>,
    /// Where the unread part of `buf` starts.
    start: usize,
    /// Literal octets still to count away.
    skip: u64,
    /// The literal the last line announced, not yet handed out.
    announced: Option<u64>,
    /// The next line continues a response after a literal.
    continuing: bool,
    /// Octets of the stream consumed so far.
    consumed: u64,
}

impl ResponseReader {
    pub fn new(limits: Limits) -> Self {
        ResponseReader {
            limits,
            buf: Vec::new(),
            start: 0,
            skip: 0,
            announced: None,
            continuing: false,
            consumed: 0,
        }
    }

    /// Forgets everything read (a new connection).
    pub fn reset(&mut self) {
        *self = ResponseReader::new(self.limits);
    }

    /// Octets received and not yet handed out (part of a line).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// True between responses: nothing of one read yet, no literal pending.
    pub fn at_boundary(&self) -> bool {
        self.buffered() == 0 && self.skip == 0 && !self.continuing && self.announced.is_none()
    }

    /// Octets of the stream consumed so far (lines handed out, literals counted away).
    pub fn position(&self) -> u64 {
        self.consumed
    }

    /// The unread octets, handed back (for output that follows what was read).
    pub fn take_rest(&mut self) -> Vec<u8> {
        let rest = self.buf.split_off(self.start);
        self.buf.clear();
        self.start = 0;
        rest
    }

    pub fn push(&mut self, mut bytes: &[u8]) {
        if self.buffered() == 0 {
            // Literal octets arriving now are counted away, never stored.
            let n = self.skip_now(bytes.len());
            bytes = bytes.get(n..).unwrap_or_default();
            self.buf.clear();
            self.start = 0;
        } else if self.start > self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Counts away up to `available` literal octets; how many it took.
    fn skip_now(&mut self, available: usize) -> usize {
        let n = usize::try_from(self.skip)
            .unwrap_or(usize::MAX)
            .min(available);
        self.skip -= n as u64;
        self.consumed += n as u64;
        n
    }

    /// The next event; `Ok(None)` when more input is needed.
    pub fn next_event(&mut self) -> Result<Option<Event>, Error> {
        if let Some(n) = self.announced.take() {
            self.skip = n;
            return Ok(Some(Event::Literal(n)));
        }
        if self.skip > 0 {
            self.start += self.skip_now(self.buffered());
            if self.skip > 0 {
                return Ok(None);
            }
        }
        let unread = self.buf.get(self.start..).unwrap_or_default();
        let window = unread.get(..self.limits.max_line).unwrap_or(unread);
        let Some(lf) = memchr::memchr(b'\n', window) else {
            if unread.len() >= self.limits.max_line {
                return Err(Error::LineTooLong {
                    limit: self.limits.max_line,
                });
            }
            return Ok(None);
        };
        let line = unread.get(..=lf).unwrap_or_default();
        if !self.limits.accept_bare_lf && !line.ends_with(b"\r\n") {
            return Err(Error::BareLf);
        }
        let continued = self.continuing;
        let literal = literal_in_response(line, continued).map(|l| l.len);
        if let Some(size) = literal.filter(|&n| n > self.limits.max_literal) {
            return Err(Error::LiteralTooLarge {
                size,
                limit: self.limits.max_literal,
            });
        }
        let line = line.to_vec();
        self.start += line.len();
        self.consumed += line.len() as u64;
        self.continuing = literal.is_some();
        self.announced = literal;
        Ok(Some(if continued {
            Event::Continued(line)
        } else {
            Event::Response(line)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_line: 64,
        max_literal: 100,
        accept_bare_lf: false,
    };

    fn read_all(r: &mut ResponseReader) -> (Vec<Event>, Option<Error>) {
        let mut out = Vec::new();
        loop {
            match r.next_event() {
                Ok(Some(e)) => out.push(e),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    fn whole(data: &[u8], limits: Limits) -> (Vec<Event>, Option<Error>) {
        let mut r = ResponseReader::new(limits);
        r.push(data);
        read_all(&mut r)
    }

    fn chunked(data: &[u8], limits: Limits, size: usize) -> (Vec<Event>, Option<Error>) {
        let mut r = ResponseReader::new(limits);
        let mut events = Vec::new();
        for chunk in data.chunks(size) {
            r.push(chunk);
            let (mut more, err) = read_all(&mut r);
            events.append(&mut more);
            if err.is_some() {
                return (events, err);
            }
        }
        (events, None)
    }

    #[test]
    fn data_literals_are_counted_away_and_text_is_text() {
        let data = b"* OK [ALERT] {5}\r\n* 1 FETCH (BODY[] {5}\r\nab\r\n) {3+}\r\nxyz)\r\n\
                     + go {2}\r\na1 NO x {4}\r\n* BYE {1}\r\n";
        let (events, err) = whole(data, LIMITS);
        assert_eq!(err, None);
        assert_eq!(
            events,
            vec![
                Event::Response(b"* OK [ALERT] {5}\r\n".to_vec()),
                Event::Response(b"* 1 FETCH (BODY[] {5}\r\n".to_vec()),
                Event::Literal(5),
                Event::Continued(b" {3+}\r\n".to_vec()),
                Event::Literal(3),
                Event::Continued(b")\r\n".to_vec()),
                Event::Response(b"+ go {2}\r\n".to_vec()),
                Event::Response(b"a1 NO x {4}\r\n".to_vec()),
                Event::Response(b"* BYE {1}\r\n".to_vec()),
            ]
        );
        for size in 1..data.len() {
            assert_eq!(
                chunked(data, LIMITS, size),
                (events.clone(), None),
                "{size}"
            );
        }
    }

    #[test]
    fn limits_are_typed_and_checked_before_buffering() {
        assert_eq!(
            whole(b"* 1 FETCH {101}\r\n", LIMITS).1,
            Some(Error::LiteralTooLarge {
                size: 101,
                limit: 100
            })
        );
        assert_eq!(
            whole(b"* x {99999999999999999999}\r\n", LIMITS).1,
            Some(Error::LiteralTooLarge {
                size: u64::MAX,
                limit: 100
            })
        );
        // A line of exactly 64 octets is taken; one octet more is not.
        let mut line = vec![b'a'; 62];
        line.extend_from_slice(b"\r\n");
        assert_eq!(whole(&line, LIMITS).1, None);
        assert_eq!(
            whole(&[b'a'; 64], LIMITS).1,
            Some(Error::LineTooLong { limit: 64 })
        );
        assert_eq!(whole(&[b'a'; 63], LIMITS), (vec![], None));
        assert_eq!(whole(b"* OK\n", LIMITS).1, Some(Error::BareLf));
        let lenient = Limits {
            accept_bare_lf: true,
            ..LIMITS
        };
        assert_eq!(
            whole(b"* OK\n", lenient),
            (vec![Event::Response(b"* OK\n".to_vec())], None)
        );
        assert_eq!(whole(b"* OK [ALERT] {not a literal}\r\n", LIMITS).1, None);
    }

    #[test]
    fn errors_stay_and_positions_count_the_stream() {
        let mut r = ResponseReader::new(LIMITS);
        r.push(b"* 1 FETCH {3}\r\nabc)\r\n* 2 FETCH {200}\r\n");
        assert!(matches!(r.next_event(), Ok(Some(Event::Response(_)))));
        assert_eq!(r.position(), 15);
        assert_eq!(r.next_event(), Ok(Some(Event::Literal(3))));
        assert_eq!(
            r.next_event(),
            Ok(Some(Event::Continued(b")\r\n".to_vec())))
        );
        assert_eq!(r.position(), 21);
        let err = r.next_event();
        assert!(matches!(err, Err(Error::LiteralTooLarge { .. })));
        assert_eq!(r.next_event(), err);
        assert_eq!(r.take_rest(), b"* 2 FETCH {200}\r\n");
        assert!(r.at_boundary());
    }

    #[test]
    fn literal_octets_pushed_later_are_never_stored() {
        let mut r = ResponseReader::new(LIMITS);
        r.push(b"* 1 FETCH (BODY[] {100}\r\n");
        assert!(matches!(r.next_event(), Ok(Some(Event::Response(_)))));
        assert_eq!(r.next_event(), Ok(Some(Event::Literal(100))));
        assert_eq!(r.next_event(), Ok(None));
        r.push(&[b'x'; 99]);
        assert_eq!(r.buffered(), 0);
        r.push(b"x)\r\n");
        assert_eq!(
            r.next_event(),
            Ok(Some(Event::Continued(b")\r\n".to_vec())))
        );
        assert!(r.at_boundary());
    }

    #[test]
    fn literal_rules() {
        assert_eq!(
            literal_at_end(b"x {4294967295}"),
            Some(Literal {
                len: 4294967295,
                synchronizing: true,
                saturated: false
            })
        );
        assert_eq!(
            literal_at_end(b"x {7+}"),
            Some(Literal {
                len: 7,
                synchronizing: false,
                saturated: false
            })
        );
        let max = literal_at_end(b"x {18446744073709551615}");
        assert_eq!(max.map(|l| (l.len, l.saturated)), Some((u64::MAX, false)));
        let over = literal_at_end(b"x {18446744073709551616}");
        assert_eq!(over.map(|l| (l.len, l.saturated)), Some((u64::MAX, true)));
        assert_eq!(literal_at_end(b"x {-1}"), None);
        assert_eq!(literal_at_end(b"x {}"), None);
        assert_eq!(literal_at_end(b"x {+}"), None);
        assert!(response_may_carry_literals(b"* LIST () \"/\" {3}\r\n"));
        assert!(!response_may_carry_literals(b"* preauth x {3}\r\n"));
        assert!(!response_may_carry_literals(b"a1 OK {3}\r\n"));
        assert!(!response_may_carry_literals(b"+ {3}\r\n"));
        assert_eq!(
            literal_in_response(b"+ {3}\r\n", true).map(|l| l.len),
            Some(3)
        );
    }

    #[test]
    fn response_lines() {
        use ResponseLine::*;
        assert_eq!(parse_response_line(b"+"), Some(Continuation(b"")));
        assert_eq!(parse_response_line(b"+ \r\n"), Some(Continuation(b"")));
        assert_eq!(parse_response_line(b"+ TlRM"), Some(Continuation(b"TlRM")));
        assert_eq!(
            parse_response_line(b"* 3 EXISTS"),
            Some(Untagged(b"3 EXISTS"))
        );
        assert_eq!(
            parse_response_line(b"a1 ok done now\r\n"),
            Some(Tagged {
                tag: b"a1",
                status: Status::Ok,
                text: b"done now"
            })
        );
        assert_eq!(
            parse_response_line(b"a1 BAD"),
            Some(Tagged {
                tag: b"a1",
                status: Status::Bad,
                text: b""
            })
        );
        for bad in [&b"a1 MAYBE x"[..], b"a{ OK", b"", b"*", b"a1"] {
            assert_eq!(parse_response_line(bad), None, "{bad:?}");
        }
    }
}
