//! POP3 server replies (RFC 1939 section 3, RFC 2449 section 8 response codes, RFC 5034
//! continuations): a client-side decoder, and the encoders the server writes with.
//!
//! A reply is a status line (`+OK text` / `-ERR text`, text optionally starting with a
//! `[RESP-CODE]`), a continuation (`+ base64`), or a status line followed by a multi-line
//! body ending in `.` CRLF, whose lines starting with `.` carry an extra `.`
//! (RFC 1939 section 3, "byte-stuffing"). Which replies are multi-line depends on the
//! command, so the caller chooses between [`decode_reply`] and [`decode_multiline`].

use base64::Engine as _;

/// RFC 2449 section 4: a response line is at most 512 octets, CRLF included.
pub const MAX_STATUS_LINE: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Err,
}

/// `+OK` or `-ERR`, the optional response code (without brackets) and the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    pub status: Status,
    pub code: Option<String>,
    pub text: String,
}

/// A single-line reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(StatusLine),
    /// `+ base64` (or `+` / `+ ` alone): the decoded challenge.
    Continuation(Vec<u8>),
}

/// A reply to a command that answers with a multi-line body on success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiLine {
    pub status: StatusLine,
    /// The body, dot-unstuffed, each line ending in CRLF; `None` after `-ERR`.
    pub body: Option<Vec<u8>>,
}

/// How much a decoder accepts before calling the input invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseLimits {
    /// Longest line, CRLF included. Status lines beyond [`MAX_STATUS_LINE`] are refused
    /// whatever this says; body lines (message text) may be up to this long.
    pub max_line: usize,
    /// Largest unstuffed multi-line body.
    pub max_body: usize,
}

impl Default for ResponseLimits {
    fn default() -> Self {
        ResponseLimits {
            max_line: 8 * 1024,
            max_body: 16 * 1024 * 1024,
        }
    }
}

/// Why a reply could not be decoded (yet).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// The bytes so far are a valid beginning; more are needed.
    #[error("incomplete reply: need more bytes")]
    Incomplete,
    #[error("invalid reply: {0}")]
    Invalid(#[from] InvalidResponse),
}

/// What was wrong with a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidResponse {
    #[error("line longer than {limit} octets")]
    LineTooLong { limit: usize },
    #[error("line ends in LF without CR")]
    BareLf,
    #[error("status line is not UTF-8")]
    NotUtf8,
    #[error("status line contains control character 0x{0:02x}")]
    ControlCharacter(u8),
    #[error("line starts with neither +OK, -ERR nor +")]
    BadStatus,
    #[error("expected a status line, got a continuation")]
    UnexpectedContinuation,
    #[error("continuation data is not valid base64")]
    BadBase64,
    #[error("multi-line body longer than {limit} octets")]
    BodyTooLong { limit: usize },
}

/// Finds the next line in `buf`: its content without CRLF, and the bytes it used.
fn next_line(buf: &[u8], max: usize) -> Result<(&[u8], usize), ResponseError> {
    match buf.iter().take(max).position(|&b| b == b'\n') {
        Some(lf) => {
            let content = buf.get(..lf).unwrap_or_default();
            match content.strip_suffix(b"\r") {
                Some(c) => Ok((c, lf + 1)),
                None => Err(InvalidResponse::BareLf.into()),
            }
        }
        None if buf.len() >= max => Err(InvalidResponse::LineTooLong { limit: max }.into()),
        None => Err(ResponseError::Incomplete),
    }
}

fn parse_status(line: &[u8]) -> Result<Reply, InvalidResponse> {
    let line = std::str::from_utf8(line).map_err(|_| InvalidResponse::NotUtf8)?;
    if let Some(c) = line.bytes().find(|&b| b < 0x20 || b == 0x7f) {
        return Err(InvalidResponse::ControlCharacter(c));
    }
    let (status, rest) = if let Some(rest) = line.strip_prefix("+OK") {
        (Status::Ok, rest)
    } else if let Some(rest) = line.strip_prefix("-ERR") {
        (Status::Err, rest)
    } else if let Some(rest) = line.strip_prefix('+') {
        // RFC 5034 section 4: continue-req = "+" SP [base64] CRLF; a bare "+" is tolerated.
        let data = rest.strip_prefix(' ').unwrap_or(rest);
        if !rest.is_empty() && !rest.starts_with(' ') {
            return Err(InvalidResponse::BadStatus);
        }
        return base64::engine::general_purpose::STANDARD
            .decode(data.trim_end_matches(' '))
            .map(Reply::Continuation)
            .map_err(|_| InvalidResponse::BadBase64);
    } else {
        return Err(InvalidResponse::BadStatus);
    };
    let text = match rest.strip_prefix(' ') {
        Some(t) => t,
        None if rest.is_empty() => "",
        None => return Err(InvalidResponse::BadStatus),
    };
    // RFC 2449 section 8: resp-code = "[" resp-level *("/" resp-level) "]", printable
    // characters other than "]". Text starting with "[" that is not one stays text.
    let mut code = None;
    let mut text = text;
    if let Some(after) = text.strip_prefix('[') {
        if let Some(end) = after.find(']') {
            let inner = after.get(..end).unwrap_or_default();
            let well_formed = !inner.is_empty()
                && inner.split('/').all(|level| {
                    !level.is_empty() && level.bytes().all(|b| b.is_ascii_graphic() && b != b'[')
                });
            if well_formed {
                code = Some(inner.to_string());
                let tail = after.get(end + 1..).unwrap_or_default();
                text = tail.strip_prefix(' ').unwrap_or(tail);
            }
        }
    }
    Ok(Reply::Status(StatusLine {
        status,
        code,
        text: text.to_string(),
    }))
}

/// Decodes one single-line reply from the start of `buf`; returns it and the bytes used.
pub fn decode_reply(buf: &[u8], limits: &ResponseLimits) -> Result<(Reply, usize), ResponseError> {
    let (line, used) = next_line(buf, limits.max_line.min(MAX_STATUS_LINE))?;
    Ok((parse_status(line)?, used))
}

/// Decodes a status line (a continuation is [`InvalidResponse::UnexpectedContinuation`]).
pub fn decode_status(
    buf: &[u8],
    limits: &ResponseLimits,
) -> Result<(StatusLine, usize), ResponseError> {
    match decode_reply(buf, limits)? {
        (Reply::Status(s), used) => Ok((s, used)),
        (Reply::Continuation(_), _) => Err(InvalidResponse::UnexpectedContinuation.into()),
    }
}

/// Decodes a reply that carries a multi-line body after `+OK` (LIST, UIDL without an
/// argument, RETR, TOP, CAPA, the AUTH listing).
pub fn decode_multiline(
    buf: &[u8],
    limits: &ResponseLimits,
) -> Result<(MultiLine, usize), ResponseError> {
    let (status, mut used) = decode_status(buf, limits)?;
    if status.status == Status::Err {
        return Ok((MultiLine { status, body: None }, used));
    }
    let mut body = Vec::new();
    loop {
        let rest = buf.get(used..).unwrap_or_default();
        let (line, n) = next_line(rest, limits.max_line)?;
        used += n;
        let line = match line.strip_prefix(b".") {
            Some(b"") => break,
            Some(unstuffed) => unstuffed,
            None => line,
        };
        if body.len() + line.len() + 2 > limits.max_body {
            return Err(InvalidResponse::BodyTooLong {
                limit: limits.max_body,
            }
            .into());
        }
        body.extend_from_slice(line);
        body.extend_from_slice(b"\r\n");
    }
    Ok((
        MultiLine {
            status,
            body: Some(body),
        },
        used,
    ))
}

impl StatusLine {
    pub fn new(status: Status, text: impl Into<String>) -> Self {
        StatusLine {
            status,
            code: None,
            text: text.into(),
        }
    }

    pub fn ok(text: impl Into<String>) -> Self {
        StatusLine::new(Status::Ok, text)
    }

    pub fn err(text: impl Into<String>) -> Self {
        StatusLine::new(Status::Err, text)
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Writes the line with CRLF. The caller keeps CR and LF out of the text.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(match self.status {
            Status::Ok => b"+OK",
            Status::Err => b"-ERR",
        });
        if let Some(code) = &self.code {
            out.extend_from_slice(b" [");
            out.extend_from_slice(code.as_bytes());
            out.push(b']');
        }
        if !self.text.is_empty() {
            out.push(b' ');
            out.extend_from_slice(self.text.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// `+ base64` CRLF for a non-empty challenge (RFC 5034 section 4).
pub fn encode_continuation(data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"+ ");
    out.extend_from_slice(
        base64::engine::general_purpose::STANDARD
            .encode(data)
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
}

/// Splits text into lines at LF, dropping the CR of a CRLF. A last line without LF counts.
pub fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let empty = data.is_empty();
    body.split(|&b| b == b'\n')
        .filter(move |_| !empty)
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// Writes lines as a multi-line body: each line dot-stuffed and ended with CRLF, then the
/// terminating `.` CRLF (RFC 1939 section 3).
pub fn encode_body<'a>(body_lines: impl IntoIterator<Item = &'a [u8]>, out: &mut Vec<u8>) {
    for line in body_lines {
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn lim() -> ResponseLimits {
        ResponseLimits::default()
    }

    #[test]
    fn status_lines_with_and_without_codes() {
        let (r, n) = decode_reply(b"+OK POP3 ready <1.2@h>\r\nrest", &lim()).unwrap();
        assert_eq!(n, 24);
        assert_eq!(r, Reply::Status(StatusLine::ok("POP3 ready <1.2@h>")));
        let (r, _) = decode_reply(b"-ERR [IN-USE] locked\r\n", &lim()).unwrap();
        assert_eq!(
            r,
            Reply::Status(StatusLine::err("locked").with_code("IN-USE"))
        );
        let (r, _) = decode_reply(b"-ERR [SYS/TEMP]\r\n", &lim()).unwrap();
        assert_eq!(r, Reply::Status(StatusLine::err("").with_code("SYS/TEMP")));
        let (r, _) = decode_reply(b"+OK\r\n", &lim()).unwrap();
        assert_eq!(r, Reply::Status(StatusLine::ok("")));
        let (r, _) = decode_reply(b"-ERR [not a code\r\n", &lim()).unwrap();
        assert_eq!(r, Reply::Status(StatusLine::err("[not a code")));
    }

    #[test]
    fn continuations() {
        for (wire, data) in [
            (&b"+ \r\n"[..], &b""[..]),
            (b"+\r\n", b""),
            (b"+ VXNlcm5hbWU6\r\n", b"Username:"),
        ] {
            let reply = decode_reply(wire, &lim()).unwrap().0;
            assert_eq!(reply, Reply::Continuation(data.to_vec()));
        }
        assert_eq!(
            decode_reply(b"+ !!\r\n", &lim()),
            Err(InvalidResponse::BadBase64.into())
        );
        assert_eq!(
            decode_status(b"+ \r\n", &lim()),
            Err(InvalidResponse::UnexpectedContinuation.into())
        );
    }

    #[test]
    fn incomplete_is_not_invalid() {
        assert_eq!(decode_reply(b"", &lim()), Err(ResponseError::Incomplete));
        assert_eq!(
            decode_reply(b"+OK hel", &lim()),
            Err(ResponseError::Incomplete)
        );
        assert_eq!(
            decode_multiline(b"+OK\r\nline\r\n", &lim()),
            Err(ResponseError::Incomplete)
        );
        let long = vec![b'a'; 600];
        for (wire, invalid) in [
            (&b"+OK\n"[..], InvalidResponse::BareLf),
            (b"*OK\r\n", InvalidResponse::BadStatus),
            (b"+OKAY\r\n", InvalidResponse::BadStatus),
            (b"+OK \xff\r\n", InvalidResponse::NotUtf8),
            (&long, InvalidResponse::LineTooLong { limit: 512 }),
        ] {
            assert_eq!(decode_reply(wire, &lim()), Err(invalid.into()), "{wire:?}");
        }
        let small = ResponseLimits {
            max_line: 100,
            max_body: 10,
        };
        assert_eq!(
            decode_multiline(b"+OK\r\n0123456789\r\n.\r\n", &small),
            Err(InvalidResponse::BodyTooLong { limit: 10 }.into())
        );
    }

    #[test]
    fn multiline_unstuffs_and_stops_at_dot() {
        let wire = b"+OK 2 messages\r\n1 120\r\n..hidden\r\n.\r\n-ERR next\r\n";
        let (m, n) = decode_multiline(wire, &lim()).unwrap();
        assert_eq!(m.status, StatusLine::ok("2 messages"));
        assert_eq!(m.body.unwrap(), b"1 120\r\n.hidden\r\n");
        assert_eq!(&wire[n..], b"-ERR next\r\n");
        let (m, n) = decode_multiline(b"-ERR no\r\nx", &lim()).unwrap();
        assert_eq!((m.body, n), (None, 9));
    }

    #[test]
    fn encoders_round_trip() {
        let mut out = Vec::new();
        StatusLine::err("locked")
            .with_code("IN-USE")
            .encode(&mut out);
        assert_eq!(out, b"-ERR [IN-USE] locked\r\n");
        out.clear();
        encode_continuation(b"Password:", &mut out);
        assert_eq!(out, b"+ UGFzc3dvcmQ6\r\n");
        out.clear();
        StatusLine::ok("").encode(&mut out);
        encode_body(lines(b"a\r\n.b\nc"), &mut out);
        assert_eq!(out, b"+OK\r\na\r\n..b\r\nc\r\n.\r\n");
        let (m, _) = decode_multiline(&out, &lim()).unwrap();
        assert_eq!(m.body.unwrap(), b"a\r\n.b\r\nc\r\n");
        assert_eq!(lines(b"").count(), 0);
        assert_eq!(lines(b"\r\n").collect::<Vec<_>>(), vec![b"" as &[u8]]);
    }
}
