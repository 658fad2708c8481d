//! The IMAP client's side of reading server responses: the one IMAP response reader,
//! `harness_wire::imap::ResponseReader`, configured for the client (lines with a bounded
//! buffer, literals, only in data per RFC 3501 9, skipped by counting after checking `n`
//! against a limit, so nothing is ever sized from a count the server sent), and the typed
//! first line the client's phases match on. The `imap_response_decode` fuzz target is here.

use harness_wire::imap::{
    parse_response_line, trim_line_end, Event, Limits, ResponseLine, ResponseReader, Status as Cond,
};

use super::outcome::printable;

/// What was wrong with what the server sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImapClientError {
    /// Over a line or literal limit, or a bare LF (the response reader's errors).
    #[error(transparent)]
    Read(#[from] harness_wire::imap::Error),
    #[error("malformed response: {line}")]
    Malformed { line: String },
    #[error("tagged response for unknown tag {tag}")]
    UnexpectedTag { tag: String },
    #[error("continuation request where none was expected")]
    UnexpectedContinuation,
    #[error("greeting is neither OK, PREAUTH nor BYE: {line}")]
    BadGreeting { line: String },
    #[error("server sent data after STARTTLS before the TLS handshake")]
    DataBeforeTls,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Resp {
    /// `* ...`: the text after `* `.
    Untagged(String),
    /// `+ ...` / `+`: the text after `+` and one optional space.
    Continuation(String),
    Tagged {
        tag: String,
        cond: Cond,
        text: String,
    },
}

/// One piece of what arrived: a response's first line, or a line continuing it (each
/// without its CRLF), or a literal counted away.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Piece {
    Resp(Resp, Vec<u8>),
    Continued(Vec<u8>),
    Literal(u64),
}

/// The response reader for a client configured with these bounds.
pub(super) fn response_reader(max_line: usize, max_literal: u64) -> ResponseReader {
    ResponseReader::new(Limits {
        max_line: max_line.max(16),
        max_literal,
        accept_bare_lf: false,
    })
}

/// Everything complete in what `reader` holds, in order; stops at the first error.
pub(super) fn read_pieces(reader: &mut ResponseReader) -> (Vec<Piece>, Option<ImapClientError>) {
    let mut pieces = Vec::new();
    loop {
        let piece = match reader.next_event() {
            Ok(None) => return (pieces, None),
            Err(e) => return (pieces, Some(ImapClientError::Read(e))),
            Ok(Some(Event::Literal(n))) => Piece::Literal(n),
            Ok(Some(Event::Continued(mut line))) => {
                line.truncate(trim_line_end(&line).len());
                Piece::Continued(line)
            }
            Ok(Some(Event::Response(mut line))) => {
                line.truncate(trim_line_end(&line).len());
                match parse_line(&line) {
                    Ok(resp) => Piece::Resp(resp, line),
                    Err(e) => return (pieces, Some(e)),
                }
            }
        };
        pieces.push(piece);
    }
}

/// Pushes `data` and reads what is complete (the fuzz target and the tests).
fn feed(reader: &mut ResponseReader, data: &[u8]) -> (Vec<Piece>, Option<ImapClientError>) {
    reader.push(data);
    read_pieces(reader)
}

fn malformed(line: &[u8]) -> ImapClientError {
    ImapClientError::Malformed {
        line: printable(line, 80),
    }
}

/// The typed form of a response's first line (RFC 3501 9).
fn parse_line(line: &[u8]) -> Result<Resp, ImapClientError> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok(
        match parse_response_line(line).ok_or_else(|| malformed(line))? {
            ResponseLine::Continuation(t) => Resp::Continuation(text(t)),
            ResponseLine::Untagged(t) => Resp::Untagged(text(t)),
            ResponseLine::Tagged {
                tag,
                status,
                text: t,
            } => Resp::Tagged {
                tag: text(tag),
                cond: status,
                text: text(t),
            },
        },
    )
}

/// Fuzz target `imap_response_decode`: the input is what a server sent, read by the one
/// IMAP response reader (`harness_wire::imap`) as this client configures it, at once and
/// again in chunks of varied sizes, and as the front-end and the fuzz checks configure
/// it (whole and chunked must agree there too). Checks: the
/// chunks never change what is read or the error it ends with; nothing is buffered past
/// the line limit and no literal is taken over its limit (a literal is skipped by
/// counting, never allocated); and every response imap-codec decodes from the same bytes
/// (one at a time, from the start, while it can) is read as the same kind, with the same
/// tag and status when it is a completion, unless the reader stopped at a limit first.
pub fn fuzz_response_decode(data: &[u8]) {
    const MAX_LINE: usize = 1024;
    const MAX_LITERAL: u64 = 4096;
    const CHUNKS: [usize; 8] = [1, 5, 2, 64, 3, 17, 256, 7];
    let (pieces, error) = feed(&mut response_reader(MAX_LINE, MAX_LITERAL), data);

    let mut reader = response_reader(MAX_LINE, MAX_LITERAL);
    let (mut chunked, mut chunked_error) = (Vec::new(), None);
    let mut rest = data;
    for size in CHUNKS.iter().cycle() {
        if rest.is_empty() || chunked_error.is_some() {
            break;
        }
        let (chunk, tail) = rest.split_at((*size).min(rest.len()));
        rest = tail;
        let (mut more, e) = feed(&mut reader, chunk);
        chunked.append(&mut more);
        if e.is_none() {
            assert!(reader.buffered() < MAX_LINE, "buffered past the line limit");
        }
        chunked_error = e;
    }
    assert_eq!(pieces, chunked, "chunks changed what was read");
    assert_eq!(error, chunked_error, "chunks changed the error");
    lenient_reading_ignores_chunking(data, &CHUNKS);

    for piece in &pieces {
        match piece {
            Piece::Literal(n) => assert!(*n <= MAX_LITERAL),
            Piece::Resp(_, line) | Piece::Continued(line) => assert!(line.len() < MAX_LINE),
        }
    }
    agrees_with_imap_codec(data, &pieces, error.as_ref());
}

/// The reader as the front-end and the fuzz checks use it (bare LF taken, no literal
/// bound): the same events, whole or in chunks.
fn lenient_reading_ignores_chunking(data: &[u8], chunks: &[usize]) {
    let limits = Limits {
        max_line: 1024,
        max_literal: u64::MAX,
        accept_bare_lf: true,
    };
    let read = |sizes: &mut dyn Iterator<Item = usize>| {
        let mut reader = ResponseReader::new(limits);
        let mut events = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(sizes.next().unwrap_or(1).clamp(1, rest.len()));
            rest = tail;
            reader.push(chunk);
            loop {
                match reader.next_event() {
                    Ok(Some(e)) => events.push(e),
                    Ok(None) => break,
                    Err(e) => return (events, Some(e)),
                }
            }
        }
        (events, None)
    };
    let whole = read(&mut std::iter::once(data.len()));
    let chunked = read(&mut chunks.iter().copied().cycle());
    assert_eq!(
        whole, chunked,
        "chunks changed what the lenient reader read"
    );
}

/// See [`fuzz_response_decode`]; returns how many responses were compared.
fn agrees_with_imap_codec(data: &[u8], pieces: &[Piece], error: Option<&ImapClientError>) -> usize {
    use imap_codec::decode::Decoder;
    use imap_codec::imap_types::response::{Response, Status, StatusKind};
    use imap_codec::ResponseCodec;

    let mut ours = pieces.iter().filter_map(|p| match p {
        Piece::Resp(resp, _) => Some(resp),
        _ => None,
    });
    let codec = ResponseCodec::default();
    let mut input = data;
    let mut compared = 0;
    while let Ok((rest, theirs)) = codec.decode(input) {
        if rest.len() >= input.len() {
            break;
        }
        input = rest;
        let Some(resp) = ours.next() else {
            // The reader stopped before this response: only a limit or a bare LF (which
            // RFC 3501 does not allow, though imap-codec may) may stop it.
            assert!(
                error.is_some_and(|e| !matches!(e, ImapClientError::Malformed { .. })),
                "the reader refused or missed a response imap-codec reads: {theirs:?} ({error:?})"
            );
            return compared;
        };
        let same = match (&theirs, resp) {
            (Response::CommandContinuationRequest(_), Resp::Continuation(_)) => true,
            (Response::Data(_), Resp::Untagged(_)) => true,
            (Response::Status(Status::Untagged(_) | Status::Bye(_)), Resp::Untagged(_)) => true,
            (Response::Status(Status::Tagged(t)), Resp::Tagged { tag, cond, .. }) => {
                let kind = match cond {
                    Cond::Ok => StatusKind::Ok,
                    Cond::No => StatusKind::No,
                    Cond::Bad => StatusKind::Bad,
                };
                AsRef::<str>::as_ref(&t.tag) == tag && t.body.kind == kind
            }
            _ => false,
        };
        assert!(same, "imap-codec reads {theirs:?}, the reader {resp:?}");
        compared += 1;
    }
    compared
}

#[cfg(test)]
mod tests {
    use super::*;
    use harness_wire::imap::Error as ReadError;

    #[test]
    fn reader_splits_lines_and_skips_literals() {
        let mut r = response_reader(1024, 100);
        let (p, e) = feed(&mut r, b"* 1 FETCH (BODY[] {5}\r\nab\r\n)");
        assert!(e.is_none());
        assert_eq!(p.len(), 2);
        assert!(matches!(&p[1], Piece::Literal(5)));
        let (p, e) = feed(&mut r, b"c)\r\na1 OK done\r\n");
        assert!(e.is_none());
        assert!(matches!(&p[0], Piece::Continued(l) if l == b"c)"));
        assert!(matches!(
            &p[1],
            Piece::Resp(Resp::Tagged { cond: Cond::Ok, .. }, _)
        ));
    }

    #[test]
    fn status_text_ending_in_braces_is_no_literal() {
        // A completion's text may end in `{5}` (a server echoing a command): that is text,
        // and the next response must not be skipped as its literal.
        let data = b"a1 BAD no such command: X {5}\r\n* 3 EXISTS\r\n+ go on {2}\r\na2 OK done\r\n";
        let (p, e) = feed(&mut response_reader(1024, 100), data);
        assert_eq!(e, None);
        let resps = p.iter().filter(|p| matches!(p, Piece::Resp(..))).count();
        assert_eq!((resps, p.len()), (4, 4), "{p:?}");
        assert_eq!(agrees_with_imap_codec(data, &p, None), 4);
        fuzz_response_decode(data);
        // ... while data keeps its literals
        let (p, _) = feed(
            &mut response_reader(1024, 100),
            b"* 1 FETCH (BODY[] {5}\r\n",
        );
        assert!(matches!(p.last(), Some(Piece::Literal(5))));
    }

    #[test]
    fn real_server_output_reads_as_imap_codec_reads_it() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../corpus/fuzz/imap_response_decode"
        );
        for name in [
            "dovecot-fetch-items",
            "mock-fetch-items",
            "mock-append-copy",
        ] {
            let data = std::fs::read(format!("{dir}/{name}")).unwrap();
            let (p, e) = feed(&mut response_reader(1024, 4096), &data);
            assert_eq!(e, None, "{name}");
            let resps = p.iter().filter(|p| matches!(p, Piece::Resp(..))).count();
            // imap-codec reads every response of the session (greeting included)
            assert_eq!(agrees_with_imap_codec(&data, &p, None), resps, "{name}");
            assert!(resps > 15, "{name}: {resps}");
            fuzz_response_decode(&data);
        }
    }

    #[test]
    fn reader_typed_errors() {
        let mut r = response_reader(64, 100);
        assert_eq!(
            feed(&mut r, b"* 1 FETCH {101}\r\n").1,
            Some(ImapClientError::Read(ReadError::LiteralTooLarge {
                size: 101,
                limit: 100
            }))
        );
        let mut r = response_reader(64, 100);
        assert_eq!(
            feed(&mut r, b"* x {99999999999999999999}\r\n").1,
            Some(ImapClientError::Read(ReadError::LiteralTooLarge {
                size: u64::MAX,
                limit: 100
            }))
        );
        let mut r = response_reader(64, 100);
        assert_eq!(
            feed(&mut r, &[b'a'; 70]).1,
            Some(ImapClientError::Read(ReadError::LineTooLong { limit: 64 }))
        );
        let mut r = response_reader(64, 100);
        assert_eq!(
            feed(&mut r, b"* OK\n").1,
            Some(ImapClientError::Read(ReadError::BareLf))
        );
        let mut r = response_reader(64, 100);
        assert!(matches!(
            feed(&mut r, b"a1 MAYBE x\r\n").1,
            Some(ImapClientError::Malformed { .. })
        ));
        let mut r = response_reader(64, 100);
        assert!(feed(&mut r, b"* OK [ALERT] {not a literal}\r\n")
            .1
            .is_none());
    }

    #[test]
    fn continuation_with_and_without_space() {
        assert_eq!(parse_line(b"+").unwrap(), Resp::Continuation(String::new()));
        assert_eq!(
            parse_line(b"+ ").unwrap(),
            Resp::Continuation(String::new())
        );
        assert_eq!(
            parse_line(b"+ TlRM").unwrap(),
            Resp::Continuation("TlRM".into())
        );
    }
}
