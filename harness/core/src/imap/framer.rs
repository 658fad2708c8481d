//! Splits the client's byte stream into IMAP command messages before any grammar is applied.
//!
//! A command message is one or more lines; a line that ends in a literal announcement
//! (`{n}` or `{n+}`, RFC 3501 4.3, RFC 7888) is followed by `n` octets of literal data and
//! then by the rest of the command. The framer owns every limit: a line is never held
//! beyond `max_line` octets, and a literal's announced length is checked against
//! `max_literal` before a single octet of it is buffered. A refused message is still
//! framed to its end (its literal octets are counted and dropped, never stored), so that
//! literal data can never be mistaken for a command.
//!
//! Literal octets are also paid for from the lab's shared [`MemoryBudget`] (issue #14):
//! the announced length is reserved before the continuation is sent (or, for a
//! non-synchronising literal, before its octets are buffered), and the reservation is
//! held until the server has run the command and asks for the next frame.

use harness_wire::imap::literal_at_end;

use crate::budget::{MemoryBudget, Reservation};

/// How the next input is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameMode {
    /// Command messages with literals.
    Command,
    /// Single lines without literals: AUTHENTICATE responses and IDLE's `DONE`.
    Line,
}

/// Limits and advertised extensions the framer obeys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameConfig {
    /// Longest line, line ending included.
    pub max_line: usize,
    /// Largest single literal.
    pub max_literal: usize,
    /// `LITERAL+` is advertised, so `{n+}` is allowed (RFC 7888 4).
    pub literal_plus: bool,
}

/// One thing the framer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete command message: its lines (each ending CRLF) with literal data inline.
    Command(Vec<u8>),
    /// One line, line ending removed ([`FrameMode::Line`]).
    Line(Vec<u8>),
    /// A synchronising literal was accepted: the server must send a continuation request
    /// before the client sends the data (RFC 3501 4.3).
    ContinuationNeeded,
    /// The current message is refused; answer now. Its remaining parts are dropped.
    Rejected {
        tag: Option<String>,
        error: FrameError,
    },
}

/// Why a message was refused by the framer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("Line too long (limit {limit} octets)")]
    LineTooLong { limit: usize },
    #[error("Literal of {length} octets is over the limit of {limit}")]
    LiteralTooLarge { length: u64, limit: usize },
    #[error("Non-synchronizing literal used, but LITERAL+ is not advertised")]
    NonSyncLiteralNotAdvertised,
    /// The lab's memory budget cannot hold the literal now: a resource refusal (`NO`),
    /// not a syntax one; the client may try again later.
    #[error("[LIMIT] Literal of {length} octets does not fit in the server's memory budget now")]
    OverBudget { length: u64 },
}

impl FrameError {
    /// True when the refusal is `NO` (the command was valid, the server cannot take it
    /// now; RFC 5530 3 `LIMIT`), false when it is `BAD`.
    pub fn is_resource_refusal(&self) -> bool {
        matches!(self, FrameError::OverBudget { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Reading a line; `scanned` octets of `buf` are known to hold no LF.
    Line { scanned: usize },
    /// Copying `remaining` literal octets into the message.
    Literal { remaining: usize },
    /// Dropping an over-long line up to its LF. `tail` keeps its last octets, enough to
    /// see a literal announcement at its end.
    DiscardLine { tail: Vec<u8> },
    /// Counting and dropping the octets of a refused literal.
    SkipLiteral { remaining: u64 },
}

/// Octets of an over-long line kept to recognise a trailing `{n+}`.
const TAIL_KEEP: usize = 32;

/// Unread input: `bytes[pos..]`. Consuming moves `pos`; the consumed front is dropped on
/// the next push, so a burst of pipelined lines costs linear time, not quadratic.
#[derive(Debug, Clone, Default)]
struct Input {
    bytes: Vec<u8>,
    pos: usize,
}

impl Input {
    fn data(&self) -> &[u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }
    fn len(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }
    fn consume(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n).min(self.bytes.len());
        if self.pos == self.bytes.len() {
            self.clear();
        }
    }
    fn clear(&mut self) {
        self.bytes.clear();
        self.pos = 0;
    }
    fn push(&mut self, more: &[u8]) {
        if self.pos > 0 {
            self.bytes.drain(..self.pos);
            self.pos = 0;
        }
        self.bytes.extend_from_slice(more);
    }
}

/// Incremental framer. Feed with [`Framer::push`], drain with [`Framer::next_frame`].
#[derive(Debug)]
pub struct Framer {
    buf: Input,
    msg: Vec<u8>,
    state: State,
    /// The current message was refused and answered; its remaining parts are dropped.
    refused: bool,
    /// Where literal octets are paid for.
    budget: MemoryBudget,
    /// The literals of the message being assembled.
    pending: Option<Reservation>,
    /// The literals of the last message handed out: held while the server runs it, given
    /// back when the next frame is asked for.
    delivered: Option<Reservation>,
}

impl Default for Framer {
    fn default() -> Self {
        Framer::with_budget(MemoryBudget::unlimited())
    }
}

/// A literal announcement at the end of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Announcement {
    length: u64,
    non_sync: bool,
}

impl Framer {
    pub fn new() -> Self {
        Self::default()
    }

    /// A framer whose literals are paid for from `budget`.
    pub fn with_budget(budget: MemoryBudget) -> Self {
        Framer {
            buf: Input::default(),
            msg: Vec::new(),
            state: State::Line { scanned: 0 },
            refused: false,
            budget,
            pending: None,
            delivered: None,
        }
    }

    /// Back to a fresh framer on the same budget.
    fn reset(&mut self) {
        *self = Framer::with_budget(self.budget.clone());
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.push(bytes);
    }

    /// Drops everything buffered and any message in progress (after STARTTLS: octets
    /// pipelined behind the command must not be obeyed, RFC 3501 6.2.1 and 11.1).
    pub fn clear(&mut self) {
        self.reset();
    }

    /// True when no message is in progress and nothing is buffered.
    pub fn is_idle(&self) -> bool {
        self.buf.len() == 0 && self.msg.is_empty() && self.state == State::Line { scanned: 0 }
    }

    /// Hands back the octets pushed but not yet framed and resets the framer (a message in
    /// progress is dropped). For a relay that stops framing at a message boundary and
    /// passes the rest of the stream through unparsed (the front-end, after a login).
    pub fn take_unread(&mut self) -> Vec<u8> {
        let rest = self.buf.data().to_vec();
        self.reset();
        rest
    }

    /// Octets currently held (buffer plus message being assembled).
    pub fn held(&self) -> usize {
        self.buf.len() + self.msg.len()
    }

    fn end_message(&mut self) {
        self.msg.clear();
        self.pending = None;
        self.refused = false;
        self.state = State::Line { scanned: 0 };
    }

    /// The next frame, or `None` when more input is needed.
    pub fn next_frame(&mut self, mode: FrameMode, cfg: FrameConfig) -> Option<Frame> {
        // The server has finished with the last message it was handed.
        self.delivered = None;
        loop {
            match &mut self.state {
                State::Literal { remaining } => {
                    let n = (*remaining).min(self.buf.len());
                    self.msg
                        .extend_from_slice(self.buf.data().get(..n).unwrap_or_default());
                    self.buf.consume(n);
                    *remaining -= n;
                    if *remaining > 0 {
                        return None;
                    }
                    self.state = State::Line { scanned: 0 };
                }
                State::SkipLiteral { remaining } => {
                    let n = usize::try_from(*remaining)
                        .unwrap_or(usize::MAX)
                        .min(self.buf.len());
                    self.buf.consume(n);
                    *remaining -= n as u64;
                    if *remaining > 0 {
                        return None;
                    }
                    self.state = State::Line { scanned: 0 };
                }
                State::DiscardLine { tail } => {
                    match self.buf.data().iter().position(|&b| b == b'\n') {
                        None => {
                            let data = self.buf.data();
                            let keep = data.len().saturating_sub(TAIL_KEEP);
                            tail.extend_from_slice(data.get(keep..).unwrap_or_default());
                            let cut = tail.len().saturating_sub(TAIL_KEEP);
                            tail.drain(..cut);
                            self.buf.clear();
                            return None;
                        }
                        Some(i) => {
                            let data = self.buf.data().get(..=i).unwrap_or_default();
                            let keep = data.len().saturating_sub(TAIL_KEEP);
                            tail.extend_from_slice(data.get(keep..).unwrap_or_default());
                            self.buf.consume(i + 1);
                            let announced = announcement(tail);
                            match (mode, announced) {
                                (FrameMode::Command, Some(a)) if a.non_sync => {
                                    self.state = State::SkipLiteral {
                                        remaining: a.length,
                                    };
                                }
                                _ => self.end_message(),
                            }
                        }
                    }
                }
                State::Line { scanned } => {
                    let window = self.buf.len().min(cfg.max_line);
                    let found = self
                        .buf
                        .data()
                        .get(*scanned..window)
                        .and_then(|w| w.iter().position(|&b| b == b'\n'))
                        .map(|p| p + *scanned);
                    let Some(i) = found else {
                        if self.buf.len() >= cfg.max_line {
                            return self.overflow(mode, cfg);
                        }
                        *scanned = self.buf.len();
                        return None;
                    };
                    let mut line: Vec<u8> = self.buf.data().get(..=i).unwrap_or_default().to_vec();
                    self.buf.consume(i + 1);
                    self.state = State::Line { scanned: 0 };
                    // Strip LF and an optional CR before it.
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    if mode == FrameMode::Line {
                        return Some(Frame::Line(line));
                    }
                    if let Some(frame) = self.command_line(line, cfg) {
                        return Some(frame);
                    }
                }
            }
        }
    }

    /// A line grew past the limit without an LF.
    fn overflow(&mut self, mode: FrameMode, cfg: FrameConfig) -> Option<Frame> {
        let tag = match mode {
            FrameMode::Command if self.msg.is_empty() => first_tag(self.buf.data()),
            FrameMode::Command => first_tag(&self.msg),
            FrameMode::Line => None,
        };
        // Only the scanned window is dropped: its LF (and any pipelined command after
        // it) may already be in the buffer beyond the window.
        let cut = cfg.max_line.min(self.buf.len());
        let data = self.buf.data().get(..cut).unwrap_or_default();
        let tail = data
            .get(cut.saturating_sub(TAIL_KEEP)..)
            .unwrap_or_default()
            .to_vec();
        self.buf.consume(cut);
        self.msg.clear();
        self.pending = None;
        self.state = State::DiscardLine { tail };
        if self.refused {
            return None;
        }
        self.refused = true;
        Some(Frame::Rejected {
            tag,
            error: FrameError::LineTooLong {
                limit: cfg.max_line,
            },
        })
    }

    /// A complete line of a command message (line ending removed).
    fn command_line(&mut self, line: Vec<u8>, cfg: FrameConfig) -> Option<Frame> {
        let announced = announcement(&line);
        if self.refused {
            match announced {
                Some(a) if a.non_sync => {
                    self.state = State::SkipLiteral {
                        remaining: a.length,
                    }
                }
                // A synchronising literal is never sent without our continuation; no
                // literal means the message ends here.
                _ => self.end_message(),
            }
            return None;
        }
        self.msg.extend_from_slice(&line);
        self.msg.extend_from_slice(b"\r\n");
        let Some(a) = announced else {
            let msg = std::mem::take(&mut self.msg);
            self.delivered = self.pending.take();
            self.end_message();
            return Some(Frame::Command(msg));
        };
        let tag = first_tag(&self.msg);
        let error = if a.non_sync && !cfg.literal_plus {
            Some(FrameError::NonSyncLiteralNotAdvertised)
        } else {
            // The message as a whole stays within one literal plus one line's worth.
            let total_limit = cfg.max_literal.saturating_add(cfg.max_line) as u64;
            if a.length > cfg.max_literal as u64
                || (self.msg.len() as u64).saturating_add(a.length) > total_limit
            {
                Some(FrameError::LiteralTooLarge {
                    length: a.length,
                    limit: cfg.max_literal,
                })
            } else if !self.reserve(a.length) {
                Some(FrameError::OverBudget { length: a.length })
            } else {
                None
            }
        };
        if let Some(error) = error {
            self.msg.clear();
            self.pending = None;
            if a.non_sync {
                // The client sends the octets without waiting: count them away, never
                // buffered (RFC 7888 4: a refused non-synchronising literal is still read).
                self.refused = true;
                self.state = State::SkipLiteral {
                    remaining: a.length,
                };
            } else {
                // No continuation is sent, so the client sends no data: the message ends.
                self.end_message();
            }
            return Some(Frame::Rejected { tag, error });
        }
        // Bounded by the check above.
        let length = a.length as usize;
        self.msg.reserve(length);
        self.state = State::Literal { remaining: length };
        if a.non_sync {
            None
        } else {
            Some(Frame::ContinuationNeeded)
        }
    }
}

impl Framer {
    /// Adds `length` literal octets to the message's reservation; false when the budget
    /// cannot hold them (then no continuation is sent, RFC 3501 7.5: the tagged refusal
    /// comes instead).
    fn reserve(&mut self, length: u64) -> bool {
        let Ok(n) = usize::try_from(length) else {
            return false;
        };
        match self.pending.as_mut() {
            Some(held) => held.try_grow(n),
            None => match self.budget.reserve(n) {
                Some(r) => {
                    self.pending = Some(r);
                    true
                }
                None => false,
            },
        }
    }
}

/// `{digits}` or `{digits+}` at the very end of a line (line ending removed, or with LF),
/// read by the literal rule of the one response reader (`harness_wire::imap`). Every CR
/// and LF at the end is removed first, as this framer always has; an absurd count
/// saturates and is refused by the limit check anyway.
fn announcement(line: &[u8]) -> Option<Announcement> {
    let mut end = line.len();
    while end > 0 && matches!(line.get(end - 1), Some(b'\r' | b'\n')) {
        end -= 1;
    }
    let literal = literal_at_end(line.get(..end)?)?;
    Some(Announcement {
        length: literal.len,
        non_sync: !literal.synchronizing,
    })
}

/// RFC 3501 9: `tag = 1*<any ASTRING-CHAR except "+">`.
pub fn is_tag_char(b: u8) -> bool {
    (0x21..0x7f).contains(&b)
        && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b'+')
}

/// The tag of a message, when its first token is a valid tag followed by a space.
pub fn first_tag(msg: &[u8]) -> Option<String> {
    let sp = msg.iter().position(|&b| b == b' ')?;
    let tag = msg.get(..sp)?;
    if tag.is_empty() || !tag.iter().all(|&b| is_tag_char(b)) {
        return None;
    }
    std::str::from_utf8(tag).ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: FrameConfig = FrameConfig {
        max_line: 64,
        max_literal: 100,
        literal_plus: true,
    };

    fn drain(f: &mut Framer, mode: FrameMode, cfg: FrameConfig) -> Vec<Frame> {
        std::iter::from_fn(|| f.next_frame(mode, cfg)).collect()
    }

    /// Pushes `input` and takes every frame in command mode.
    fn push_commands(f: &mut Framer, input: &[u8]) -> Vec<Frame> {
        f.push(input);
        drain(f, FrameMode::Command, CFG)
    }

    fn command(bytes: &[u8]) -> Frame {
        Frame::Command(bytes.to_vec())
    }

    fn rejected(tag: &str, error: FrameError) -> Frame {
        Frame::Rejected {
            tag: Some(tag.into()),
            error,
        }
    }

    #[test]
    fn lines_and_pipelining() {
        let mut f = Framer::new();
        let frames = push_commands(&mut f, b"a NOOP\r\nb NO");
        assert_eq!(frames, [command(b"a NOOP\r\n")]);
        let frames = push_commands(&mut f, b"OP\nc");
        assert_eq!(frames, [command(b"b NOOP\r\n")]);
        assert!(!f.is_idle());
    }

    #[test]
    fn sync_literal_asks_then_collects() {
        let mut f = Framer::new();
        let frames = push_commands(&mut f, b"a LOGIN {5}\r\n");
        assert_eq!(frames, [Frame::ContinuationNeeded]);
        assert!(push_commands(&mut f, b"ali").is_empty());
        let frames = push_commands(&mut f, b"ce {3+}\r\nx\ny pw\r\n");
        assert_eq!(
            frames,
            [command(b"a LOGIN {5}\r\nalice {3+}\r\nx\ny pw\r\n")]
        );
        assert!(f.is_idle());
    }

    #[test]
    fn oversized_sync_literal_is_refused_before_buffering() {
        let mut f = Framer::new();
        let frames = push_commands(&mut f, b"a APPEND INBOX {4294967296}\r\nb NOOP\r\n");
        let too_large = FrameError::LiteralTooLarge {
            length: 4294967296,
            limit: 100,
        };
        assert_eq!(frames, [rejected("a", too_large), command(b"b NOOP\r\n")]);
        assert!(f.held() == 0);
    }

    #[test]
    fn oversized_non_sync_literal_is_skipped() {
        let mut f = Framer::new();
        let frames = push_commands(&mut f, b"a APPEND INBOX {150+}\r\n");
        assert!(matches!(frames.as_slice(), [Frame::Rejected { .. }]));
        assert!(push_commands(&mut f, &[b'x'; 149]).is_empty());
        assert_eq!(f.held(), 0);
        let frames = push_commands(&mut f, b"x more {2+}\r\nyy\r\nb NOOP\r\n");
        assert_eq!(frames, [command(b"b NOOP\r\n")]);
    }

    #[test]
    fn literals_past_the_budget_are_refused_before_buffering() {
        let budget = MemoryBudget::new(150);
        let mut a = Framer::with_budget(budget.clone());
        let mut b = Framer::with_budget(budget.clone());
        assert_eq!(
            push_commands(&mut a, b"a1 APPEND INBOX {100}\r\n"),
            [Frame::ContinuationNeeded]
        );
        assert_eq!(budget.in_use(), 100);
        // Synchronising: refused instead of the continuation, so no data follows.
        let over = FrameError::OverBudget { length: 60 };
        assert!(over.is_resource_refusal());
        assert_eq!(
            push_commands(&mut b, b"b1 APPEND INBOX {60}\r\nb2 NOOP\r\n"),
            [rejected("b1", over), command(b"b2 NOOP\r\n")]
        );
        // Non-synchronising: refused, and its octets are counted away unbuffered.
        let over = FrameError::OverBudget { length: 80 };
        assert_eq!(
            push_commands(&mut b, b"b3 APPEND INBOX {80+}\r\n"),
            [rejected("b3", over)]
        );
        assert!(push_commands(&mut b, &[b'x'; 80]).is_empty());
        assert_eq!(b.held(), 0);
        assert_eq!(push_commands(&mut b, b"\r\n"), []);
        // A second literal of the same message grows its reservation.
        assert_eq!(push_commands(&mut b, b"b4 X {20+}\r\n"), []);
        assert_eq!(budget.in_use(), 120);
        assert_eq!(
            push_commands(&mut b, b"0123456789abcdefghij {40+}\r\n"),
            [rejected("b4", FrameError::OverBudget { length: 40 })]
        );
        assert_eq!(budget.in_use(), 100);
        push_commands(&mut b, &[b'y'; 40]);
        push_commands(&mut b, b"\r\n");
        // The reservation is held while the server runs the command, given back when
        // it asks for the next frame.
        let mut data = vec![b'z'; 100];
        data.extend_from_slice(b"\r\n");
        let frames = push_commands(&mut a, &data);
        assert!(matches!(frames.as_slice(), [Frame::Command(_)]));
        assert_eq!(budget.in_use(), 0);
        a.push(b"a2 APPEND INBOX {10}\r\n");
        assert!(matches!(
            a.next_frame(FrameMode::Command, CFG),
            Some(Frame::ContinuationNeeded)
        ));
        a.push(b"0123456789\r\n");
        assert!(matches!(
            a.next_frame(FrameMode::Command, CFG),
            Some(Frame::Command(_))
        ));
        assert_eq!(budget.in_use(), 10);
        assert_eq!(a.next_frame(FrameMode::Command, CFG), None);
        assert_eq!(budget.in_use(), 0);
        // A session that ends mid-literal gives its reservation back.
        push_commands(&mut a, b"a3 APPEND INBOX {100}\r\n");
        assert_eq!(budget.in_use(), 100);
        drop(a);
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn non_sync_without_literal_plus_is_refused() {
        let cfg = FrameConfig {
            literal_plus: false,
            ..CFG
        };
        let mut f = Framer::new();
        f.push(b"a LOGIN {2+}\r\nab x\r\nb NOOP\r\n");
        assert_eq!(
            drain(&mut f, FrameMode::Command, cfg),
            [
                rejected("a", FrameError::NonSyncLiteralNotAdvertised),
                command(b"b NOOP\r\n")
            ]
        );
    }

    #[test]
    fn long_line_is_dropped_without_holding_it() {
        let mut f = Framer::new();
        f.push(b"t1 NOOP ");
        let frames = push_commands(&mut f, &[b'z'; 200]);
        assert_eq!(
            frames,
            [rejected("t1", FrameError::LineTooLong { limit: 64 })]
        );
        assert!(f.held() == 0);
        assert!(push_commands(&mut f, &[b'z'; 500]).is_empty());
        assert!(f.held() == 0);
        // The over-long line announced a non-sync literal: its data is skipped too.
        let frames = push_commands(&mut f, b"{3+}\r\nabc\r\nt2 NOOP\r\n");
        assert_eq!(frames, [command(b"t2 NOOP\r\n")]);
    }

    #[test]
    fn long_line_and_the_next_command_in_one_read() {
        // The end of the over-long line and a pipelined command arrive together, beyond
        // the window the limit scans: the next command must survive.
        let mut f = Framer::new();
        let mut burst = b"t1 NOOP ".to_vec();
        burst.extend_from_slice(&[b'x'; 300]);
        burst.extend_from_slice(b"\r\nt2 NOOP\r\n");
        let frames = push_commands(&mut f, &burst);
        let too_long = FrameError::LineTooLong { limit: 64 };
        assert_eq!(frames, [rejected("t1", too_long), command(b"t2 NOOP\r\n")]);
        assert!(f.is_idle());
    }

    #[test]
    fn line_mode_and_tags() {
        let mut f = Framer::new();
        f.push(b"dGVzdA==\r\n{3}\r\n");
        assert_eq!(
            drain(&mut f, FrameMode::Line, CFG),
            [
                Frame::Line(b"dGVzdA==".to_vec()),
                Frame::Line(b"{3}".to_vec())
            ]
        );
        assert_eq!(first_tag(b"A1 x"), Some("A1".into()));
        assert_eq!(first_tag(b"* x"), None);
        assert_eq!(first_tag(b"a+b x"), None);
        assert_eq!(first_tag(b"nospace"), None);
        for (line, want) in [
            (&b"x {12}"[..], Some((12, false))),
            (b"x {12+}\r\n", Some((12, true))),
            (b"x {}", None),
            (b"x {1a}", None),
        ] {
            let got = announcement(line).map(|a| (a.length, a.non_sync));
            assert_eq!(got, want, "{line:?}");
        }
    }
}
