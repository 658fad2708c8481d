//! What a client can know about a server's replies from the protocol alone: whether a
//! reply is owed (so silence is a hang), whether a line is a valid reply line, and
//! whether the server said goodbye (so a close is expected).
//!
//! IMAP (RFC 3501 7, 2.2.1): every server line is untagged (`* `), a continuation (`+`)
//! or tagged with a tag the client sent, and ends with CRLF; a line that ends with a
//! literal announcement `{n}` is followed by n bytes of data. A complete command line
//! with no pending literal is owed a reply; a synchronising literal is owed a
//! continuation or a tagged refusal; during IDLE and after LITERAL+ nothing is owed.
//! POP3 (RFC 1939 3, RFC 5034): status lines start `+OK` or `-ERR`, a SASL challenge
//! `+` (with or without a space); a multi-line reply (RETR, TOP, CAPA, LIST and UIDL
//! without an argument, AUTH without an argument) ends with a line `.`.

use std::collections::{BTreeSet, VecDeque};

use crate::Protocol;

/// Tags remembered per connection.
const MAX_TAGS: usize = 4_096;
/// Longest token kept as a possible tag.
const MAX_TAG_LEN: usize = 100_000;
/// Bytes of a client line kept to recognise the command and a literal announcement.
const KEEP: usize = 64;
/// POP3 commands remembered while their replies are outstanding.
const MAX_PENDING: usize = 1_024;

/// Why a server line is not valid for the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImapVerb {
    Idle,
    StartTls,
    /// LOGIN or AUTHENTICATE: servers delay a failed one on purpose.
    Auth,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pop3Cmd {
    /// A blank line: some servers answer it with `-ERR`, some ignore it.
    blank: bool,
    multi: bool,
    quit: bool,
    stls: bool,
    /// PASS, APOP, AUTH with a mechanism, or a SASL response.
    auth: bool,
}

/// Follows one connection from the client's side.
#[derive(Debug, Clone)]
pub struct ReplyCheck {
    proto: Protocol,
    due: bool,
    complete: bool,
    goodbye: bool,
    tls: bool,
    // the client line being sent
    head: Vec<u8>,
    tail: Vec<u8>,
    nonblank: bool,
    /// The server answered while the client line was still unfinished (a server that
    /// refuses an overlong line as soon as it passes the limit): its end owes nothing.
    answered_early: bool,
    /// Bytes sent since the server's last line.
    unanswered: usize,
    token: Vec<u8>,
    tags: BTreeSet<Vec<u8>>,
    /// Bytes held by `tags`.
    tag_bytes: usize,
    // IMAP
    client_literal: u64,
    /// The last literal's bytes were sent: the line that follows continues its command.
    after_literal: bool,
    /// The tag of the last command begun (its first word, up to KEEP bytes).
    command_tag: Vec<u8>,
    await_cont: Option<u64>,
    verb: ImapVerb,
    idle: bool,
    sasl: bool,
    // POP3
    pending: VecDeque<Pop3Cmd>,
    body: bool,
}

impl ReplyCheck {
    pub fn new(proto: Protocol) -> ReplyCheck {
        ReplyCheck {
            proto,
            due: true, // the greeting
            complete: false,
            goodbye: false,
            tls: false,
            head: Vec::new(),
            tail: Vec::new(),
            nonblank: false,
            answered_early: false,
            unanswered: 0,
            token: Vec::new(),
            tags: BTreeSet::new(),
            tag_bytes: 0,
            client_literal: 0,
            after_literal: false,
            command_tag: Vec::new(),
            await_cont: None,
            verb: ImapVerb::Other,
            idle: false,
            sasl: false,
            pending: VecDeque::new(),
            body: false,
        }
    }

    /// The server owes at least one byte now.
    pub fn reply_due(&self) -> bool {
        self.due
    }

    /// The reply due answers an authentication (IMAP LOGIN, AUTHENTICATE and its SASL
    /// responses; POP3 PASS, APOP, AUTH): servers hold back a failed one on purpose
    /// (Dovecot: `auth_failure_delay`, 2 s, and up to 15 s more for an address that keeps
    /// failing), so silence there needs a longer bound before it is a hang.
    pub fn auth_reply_due(&self) -> bool {
        self.due
            && match self.proto {
                Protocol::Imap => self.sasl || self.verb == ImapVerb::Auth,
                Protocol::Pop3 => self.sasl || self.pending.iter().any(|c| c.auth),
            }
    }

    /// Everything asked so far has been answered in full.
    pub fn reply_complete(&self) -> bool {
        self.complete
    }

    /// The server said goodbye (`* BYE`; POP3 `-ERR` or the answer to QUIT), so a close
    /// (even an abortive one) is expected.
    pub fn said_goodbye(&self) -> bool {
        self.goodbye
    }

    /// STARTTLS / STLS was accepted: what follows is TLS, not the protocol.
    pub fn switched_to_tls(&self) -> bool {
        self.tls
    }

    /// The first line of the connection (CRLF included).
    pub fn greeting(&mut self, line: &[u8]) -> Result<(), Malformed> {
        self.due = false;
        self.complete = true;
        terminated(line)?;
        let ok = match self.proto {
            Protocol::Imap => {
                if starts_ci(line, b"* BYE") {
                    self.goodbye = true;
                    true
                } else {
                    starts_ci(line, b"* OK") || starts_ci(line, b"* PREAUTH")
                }
            }
            Protocol::Pop3 => {
                if line.starts_with(b"-ERR") {
                    self.goodbye = true;
                    true
                } else {
                    line.starts_with(b"+OK")
                }
            }
        };
        if ok {
            Ok(())
        } else {
            Err(Malformed(format!("bad greeting {}", show(line))))
        }
    }

    /// Bytes sent since the server's last line (which the server may not have read).
    pub fn unanswered(&self) -> usize {
        self.unanswered
    }

    /// Bytes of memory the checker holds for what it was given (buffers, tags, pending
    /// commands): the fuzz target checks it grows with the bytes given, never with a
    /// length they announce.
    pub fn held_bytes(&self) -> usize {
        self.head.capacity()
            + self.tail.capacity()
            + self.token.capacity()
            + self.command_tag.capacity()
            + self.tag_bytes
            + self.pending.capacity() * std::mem::size_of::<Pop3Cmd>()
    }

    /// Bytes the client wrote.
    pub fn sent(&mut self, bytes: &[u8]) {
        self.unanswered = self.unanswered.saturating_add(bytes.len());
        for &b in bytes {
            if self.client_literal > 0 {
                self.client_literal -= 1;
                self.after_literal = self.client_literal == 0;
                self.note_token_byte(b);
                continue;
            }
            self.note_token_byte(b);
            if b == b'\n' {
                self.end_client_line();
                continue;
            }
            if self.head.len() < KEEP {
                self.head.push(b);
            }
            // The last KEEP bytes are what counts; cut back now and then, not per byte.
            self.tail.push(b);
            if self.tail.len() >= 2 * KEEP {
                self.tail.drain(..self.tail.len() - KEEP);
            }
            if !matches!(b, b' ' | b'\r' | b'\t') {
                self.nonblank = true;
            }
        }
    }

    fn note_token_byte(&mut self, b: u8) {
        if matches!(b, b' ' | b'\r' | b'\n') {
            if !self.token.is_empty() && self.tags.len() < MAX_TAGS {
                let token = std::mem::take(&mut self.token);
                let bytes = token.capacity();
                if self.tags.insert(token) {
                    self.tag_bytes += bytes;
                }
            }
            self.token.clear();
        } else if self.token.len() < MAX_TAG_LEN {
            self.token.push(b);
        }
    }

    fn end_client_line(&mut self) {
        let mut tail = std::mem::take(&mut self.tail);
        tail.drain(..tail.len().saturating_sub(KEEP));
        while tail.last() == Some(&b'\r') {
            tail.pop();
        }
        let mut head = std::mem::take(&mut self.head);
        while head.last() == Some(&b'\r') {
            head.pop();
        }
        let nonblank = std::mem::replace(&mut self.nonblank, false);
        if std::mem::replace(&mut self.answered_early, false) {
            return;
        }
        match self.proto {
            Protocol::Imap => self.end_imap_line(&head, &tail, nonblank),
            Protocol::Pop3 => self.end_pop3_line(&head, nonblank),
        }
    }

    fn end_imap_line(&mut self, head: &[u8], tail: &[u8], nonblank: bool) {
        if self.idle {
            if trim(head).eq_ignore_ascii_case(b"DONE") {
                self.idle = false;
                self.owe();
            }
            return;
        }
        // After a literal the line goes on with the same command (RFC 3501 4.3), and its
        // end, even right after the literal, completes the command.
        if !std::mem::take(&mut self.after_literal) {
            if !nonblank && !self.sasl {
                return;
            }
            if !self.sasl {
                // A new command: a literal the last one announced is no longer awaited.
                self.await_cont = None;
                let mut words = head.split(|&b| b == b' ').filter(|w| !w.is_empty());
                self.command_tag = words.next().unwrap_or_default().to_vec();
                let verb = words.next().unwrap_or_default();
                self.verb = if verb.eq_ignore_ascii_case(b"IDLE") {
                    ImapVerb::Idle
                } else if verb.eq_ignore_ascii_case(b"STARTTLS") {
                    ImapVerb::StartTls
                } else if verb.eq_ignore_ascii_case(b"LOGIN")
                    || verb.eq_ignore_ascii_case(b"AUTHENTICATE")
                {
                    ImapVerb::Auth
                } else {
                    ImapVerb::Other
                };
            }
        }
        if let Some((n, sync)) = literal_announcement(tail) {
            if sync {
                self.await_cont = Some(n);
                self.owe();
            } else {
                self.client_literal = n;
                self.after_literal = n == 0;
            }
            return;
        }
        self.owe();
    }

    fn end_pop3_line(&mut self, head: &[u8], nonblank: bool) {
        if !nonblank && !self.sasl {
            if self.pending.len() < MAX_PENDING {
                self.pending.push_back(Pop3Cmd {
                    blank: true,
                    multi: false,
                    quit: false,
                    stls: false,
                    auth: false,
                });
            }
            return;
        }
        let cmd = if self.sasl {
            Pop3Cmd {
                blank: false,
                multi: false,
                quit: false,
                stls: false,
                auth: true,
            }
        } else {
            let mut words = head.split(|&b| b == b' ').filter(|w| !w.is_empty());
            let verb = trim(words.next().unwrap_or_default()).to_ascii_uppercase();
            // An argument with a NUL or other odd bytes may not count as one (Dovecot
            // ends a command at NUL, so `UIDL \0 1` lists every message): then either
            // reply shape is accepted.
            let clean_arg = words
                .next()
                .map(|w| trim(w).iter().all(u8::is_ascii_graphic));
            let multi = match verb.as_slice() {
                b"RETR" | b"TOP" | b"CAPA" => true,
                b"LIST" | b"UIDL" | b"AUTH" => clean_arg != Some(true),
                _ => false,
            };
            Pop3Cmd {
                blank: false,
                multi,
                quit: verb == b"QUIT",
                stls: verb == b"STLS",
                auth: match verb.as_slice() {
                    b"PASS" | b"APOP" => true,
                    b"AUTH" => clean_arg.is_some(),
                    _ => false,
                },
            }
        };
        if self.pending.len() < MAX_PENDING {
            self.pending.push_back(cmd);
        }
        self.owe();
    }

    fn skip_blanks(&mut self) {
        while self.pending.front().is_some_and(|c| c.blank) {
            self.pending.pop_front();
        }
    }

    fn owe(&mut self) {
        self.due = true;
        self.complete = false;
    }

    /// For IMAP: the size of the literal a server line (CRLF included; after a literal,
    /// the response's parts so far joined) announces at its end, whose bytes follow
    /// before the line goes on. Only data carries literals.
    pub fn server_literal(&self, line: &[u8]) -> Option<u64> {
        if self.proto != Protocol::Imap {
            return None;
        }
        // A server sends only synchronising literals; a line must end in CRLF.
        line.strip_suffix(b"\r\n")?;
        harness_wire::imap::literal_in_response(line, false)
            .filter(|l| l.synchronizing && !l.saturated)
            .map(|l| l.len)
    }

    /// One server line (CRLF included; for IMAP with any literals it carried inside).
    pub fn server_line(&mut self, line: &[u8]) -> Result<(), Malformed> {
        self.due = false;
        self.unanswered = 0;
        if !self.head.is_empty() && self.client_literal == 0 {
            self.answered_early = true;
        }
        if self.proto == Protocol::Pop3 && self.body {
            if line == b".\r\n" {
                self.body = false;
                self.complete = self.pending.iter().all(|c| c.blank);
            }
            return terminated(line);
        }
        terminated(line)?;
        match self.proto {
            Protocol::Imap => self.imap_line(line),
            Protocol::Pop3 => self.pop3_line(line),
        }
    }

    fn imap_line(&mut self, line: &[u8]) -> Result<(), Malformed> {
        if line.starts_with(b"* ") {
            if starts_ci(line, b"* BYE") {
                self.goodbye = true;
                self.complete = true;
            }
            // An untagged BAD answers a line the server could not find a tag in (or a
            // blank line, which may have been sent before the last command: so it does
            // not end that command's wait for a continuation).
            if starts_ci(line, b"* BAD") {
                self.complete = true;
            }
            return Ok(());
        }
        if line.starts_with(b"+") {
            self.complete = true;
            if let Some(n) = self.await_cont.take() {
                self.client_literal = n;
                self.after_literal = n == 0;
            } else if self.verb == ImapVerb::Idle {
                self.idle = true;
            } else {
                self.sasl = true;
            }
            return Ok(());
        }
        let space = line.iter().position(|&b| b == b' ');
        let Some(space) = space else {
            return Err(Malformed(format!("not a reply line: {}", show(line))));
        };
        let tag = &line[..space];
        if !self.tags.contains(tag) {
            return Err(Malformed(format!(
                "tag we never sent, or not a reply line: {}",
                show(line)
            )));
        }
        let rest = &line[space + 1..];
        let status = [b"OK".as_slice(), b"NO", b"BAD"]
            .into_iter()
            .find(|s| starts_ci(rest, s) && matches!(rest.get(s.len()), Some(b' ' | b'\r')));
        let Some(status) = status else {
            return Err(Malformed(format!(
                "tagged line without OK/NO/BAD: {}",
                show(line)
            )));
        };
        // A completion of an earlier command (one cut off by a bare LF, one pipelined)
        // leaves the last command's literal, SASL exchange or IDLE going.
        // (Only the first KEEP bytes of a line are kept: a longer tag is known by them.)
        let ends_last = self.command_tag.is_empty()
            || tag == self.command_tag.as_slice()
            || (self.command_tag.len() >= KEEP && tag.starts_with(&self.command_tag));
        if ends_last {
            if status == b"OK" && self.verb == ImapVerb::StartTls {
                self.tls = true;
            }
            self.await_cont = None;
            self.sasl = false;
            self.idle = false;
        }
        self.complete = true;
        Ok(())
    }

    fn pop3_line(&mut self, line: &[u8]) -> Result<(), Malformed> {
        let ok = line.starts_with(b"+OK");
        let err = line.starts_with(b"-ERR");
        if ok || err {
            // A blank line never gets +OK: if one is first in line, it was ignored.
            if ok {
                self.skip_blanks();
            }
            let cmd = self.pending.pop_front();
            self.sasl = false;
            self.goodbye = err || cmd.is_some_and(|c| c.quit);
            if ok && cmd.is_some_and(|c| c.stls) {
                self.tls = true;
            }
            // Lenient where the queue may be out of step (a server that answers or
            // ignores blank lines): any multi-line command outstanding allows a body.
            self.body = ok && (cmd.is_none_or(|c| c.multi) || self.pending.iter().any(|c| c.multi));
            self.complete = !self.body && self.pending.iter().all(|c| c.blank);
            return Ok(());
        }
        if line.starts_with(b"+ ") || line == b"+\r\n" {
            self.skip_blanks();
            self.pending.pop_front();
            self.sasl = true;
            self.complete = true;
            return Ok(());
        }
        Err(Malformed(format!(
            "not +OK, -ERR or a continuation: {}",
            show(line)
        )))
    }
}

fn terminated(line: &[u8]) -> Result<(), Malformed> {
    if line.ends_with(b"\r\n") {
        Ok(())
    } else if line.ends_with(b"\n") {
        Err(Malformed(format!(
            "line ends with a bare LF: {}",
            show(line)
        )))
    } else {
        Err(Malformed(format!("line not terminated: {}", show(line))))
    }
}

fn starts_ci(line: &[u8], prefix: &[u8]) -> bool {
    line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

/// `{n}` (synchronising) or `{n+}` at the end of a line (CRLF removed); a count beyond
/// `u64` announces nothing.
fn literal_announcement(line: &[u8]) -> Option<(u64, bool)> {
    harness_wire::imap::literal_at_end(line)
        .filter(|l| !l.saturated)
        .map(|l| (l.len, l.synchronizing))
}

/// A server line for a report: lossy, escaped, cut at 200 characters.
pub fn show(line: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(line.len().min(200) + 2);
    out.push('"');
    for &b in line.iter().take(200) {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    if line.len() > 200 {
        let _ = write!(out, "... ({} bytes)", line.len());
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imap() -> ReplyCheck {
        let mut c = ReplyCheck::new(Protocol::Imap);
        assert!(c.reply_due());
        c.greeting(b"* OK ready\r\n").unwrap();
        assert!(!c.reply_due());
        c
    }

    #[test]
    fn imap_tagged_untagged_and_foreign_tags() {
        let mut c = imap();
        c.sent(b"a1 NOOP\r\n");
        assert!(c.reply_due() && !c.reply_complete());
        assert_eq!(c.unanswered(), 9);
        c.server_line(b"* 3 EXISTS\r\n").unwrap();
        assert!(!c.reply_due() && !c.reply_complete());
        assert_eq!(c.unanswered(), 0);
        c.server_line(b"a1 OK done\r\n").unwrap();
        assert!(c.reply_complete());
        assert!(c.server_line(b"zz OK done\r\n").is_err());
        assert!(c.server_line(b"a1 FINE\r\n").is_err());
        assert!(c.server_line(b"* OK no cr\n").is_err());
        assert!(c.server_line(b"garbage\r\n").is_err());
        assert!(!c.said_goodbye());
        c.server_line(b"* BYE logging out\r\n").unwrap();
        assert!(c.said_goodbye());
    }

    #[test]
    fn imap_literals_idle_and_authenticate() {
        let mut c = imap();
        // a synchronising literal is owed a continuation; its bytes then owe nothing
        c.sent(b"a1 LOGIN {5}\r\n");
        assert!(c.reply_due());
        c.server_line(b"+ go ahead\r\n").unwrap();
        c.sent(b"al\r\nc");
        assert!(!c.reply_due());
        c.sent(b" secret\r\n");
        assert!(c.reply_due());
        c.server_line(b"a1 OK\r\n").unwrap();
        // a huge non-synchronising literal: the rest is literal data
        c.sent(b"a2 APPEND INBOX {4294967295+}\r\n");
        assert!(!c.reply_due());
        c.sent(b"a3 NOOP\r\n");
        assert!(!c.reply_due());

        let mut c = imap();
        c.sent(b"a1 IDLE\r\n");
        c.server_line(b"+ idling\r\n").unwrap();
        c.sent(b"anything\r\n");
        assert!(!c.reply_due());
        c.sent(b"DONE\r\n");
        assert!(c.reply_due());

        let mut c = imap();
        c.sent(b"a1 AUTHENTICATE PLAIN\r\n");
        c.server_line(b"+ \r\n").unwrap();
        c.sent(b"\r\n"); // an empty response is still a response
        assert!(c.reply_due());
        // a blank line outside SASL is not owed anything
        c.server_line(b"a1 NO bad\r\n").unwrap();
        c.sent(b"  \r\n");
        assert!(!c.reply_due());
        // a truncated line owes nothing until its end comes
        c.sent(b"a2 NO");
        assert!(!c.reply_due());
        c.sent(b"OP\r\n");
        assert!(c.reply_due());
        // an overlong line refused before its end arrived: the end owes nothing more
        c.server_line(b"a2 OK\r\n").unwrap();
        c.sent(b"a3 xxxxxxxx");
        c.server_line(b"* BAD line too long\r\n").unwrap();
        c.sent(b"xxxx\r\n");
        assert!(!c.reply_due());
        c.sent(b"a4 NOOP\r\n");
        assert!(c.reply_due());
        assert_eq!(c.server_literal(b"* 1 FETCH (BODY[] {12}\r\n"), Some(12));
        assert_eq!(c.server_literal(b"* 1 FETCH (BODY[] {12+}\r\n"), None);
        for text in [
            &b"a1 BAD no command {12}\r\n"[..],
            b"* OK [ALERT] {12}\r\n",
            b"+ {12}\r\n",
        ] {
            assert_eq!(c.server_literal(text), None, "{}", show(text));
        }
    }

    #[test]
    fn imap_literal_of_a_command_that_follows_a_refused_one() {
        // A bare LF cut `a3 APPEND INBO` off: the server refuses it, then asks for the
        // literal of the line after it (`X ...`), whose bytes owe nothing until the end
        // of that command, which owes a reply.
        let mut c = imap();
        c.sent(b"a3 APPEND INBO\nX (\\Flagged) {46}\r\n");
        assert!(c.reply_due());
        c.server_line(b"a3 BAD Invalid arguments to APPEND\r\n")
            .unwrap();
        c.server_line(b"+ Ready for literal data\r\n").unwrap();
        for line in [
            &b"Subject: appended\r\n"[..],
            b"\r\n",
            b"written by a transcript\r\n",
        ] {
            c.sent(line);
            assert!(!c.reply_due(), "{}", show(line));
        }
        c.sent(b"\r\n");
        assert!(c.reply_due());
        assert!(!c.auth_reply_due());
        c.server_line(b"X BAD Unknown command\r\n").unwrap();
        assert!(c.reply_complete());

        // the command's own completion does refuse its literal
        let mut c = imap();
        c.sent(b"a1 APPEND INBOX {5}\r\n");
        c.server_line(b"a1 NO [TRYCREATE] no such mailbox\r\n")
            .unwrap();
        c.server_line(b"+ go on\r\n").unwrap();
        c.sent(b"hello\r\n");
        assert!(c.reply_due());
        // an untagged BAD may answer a blank line sent before the command: the
        // continuation may still come
        let mut c = imap();
        c.sent(b"\r\n");
        c.sent(b"a1 APPEND INBOX {5}\r\n");
        c.server_line(b"* BAD Missing or invalid tag\r\n").unwrap();
        c.server_line(b"+ go on\r\n").unwrap();
        c.sent(b"hel\r\n");
        assert!(!c.reply_due());
        // or answer the command itself: then the lines that follow are commands
        let mut c = imap();
        c.sent(b"(x) {5}\r\n");
        c.server_line(b"* BAD Error in IMAP command\r\n").unwrap();
        c.sent(b"hello\r\n");
        assert!(c.reply_due());
        c.server_line(b"hello BAD unknown\r\n").unwrap();
        c.server_line(b"+ idling\r\n").unwrap();
        c.sent(b"x\r\n");
        assert!(c.reply_due(), "no stale literal left to take the + for");
    }

    #[test]
    fn imap_command_ends_after_its_literal() {
        let mut c = imap();
        c.sent(b"a1 APPEND INBOX {5}\r\n");
        c.server_line(b"+ go\r\n").unwrap();
        c.sent(b"hello");
        assert!(!c.reply_due());
        c.sent(b"\r\n");
        assert!(c.reply_due());
        c.server_line(b"a1 OK APPEND completed\r\n").unwrap();
        // a zero-length literal, synchronising or not
        c.sent(b"a2 LOGIN {0}\r\n");
        assert!(c.auth_reply_due());
        c.server_line(b"+ go\r\n").unwrap();
        c.sent(b" {0+}\r\n");
        assert!(!c.reply_due());
        c.sent(b"\r\n");
        assert!(c.auth_reply_due());
    }

    #[test]
    fn authentication_replies_are_known() {
        let mut c = imap();
        c.sent(b"a1 NOOP\r\n");
        assert!(c.reply_due() && !c.auth_reply_due());
        c.server_line(b"a1 OK\r\n").unwrap();
        c.sent(b"a2 login user wrong\r\n");
        assert!(c.auth_reply_due());
        c.server_line(b"a2 NO [AUTHENTICATIONFAILED] no\r\n")
            .unwrap();
        assert!(!c.auth_reply_due());
        c.sent(b"a3 AUTHENTICATE PLAIN\r\n");
        assert!(c.auth_reply_due());
        c.server_line(b"+ \r\n").unwrap();
        c.sent(b"AHVzZXIAd3Jvbmc=\r\n");
        assert!(c.auth_reply_due());
        c.server_line(b"a3 NO no\r\n").unwrap();
        c.sent(b"a4 SELECT INBOX\r\n");
        assert!(c.reply_due() && !c.auth_reply_due());

        let mut c = ReplyCheck::new(Protocol::Pop3);
        c.greeting(b"+OK hi\r\n").unwrap();
        for (line, auth) in [
            (&b"USER user\r\n"[..], false),
            (b"PASS wrong\r\n", true),
            (b"APOP user 0123456789abcdef0123456789abcdef\r\n", true),
            (b"AUTH\r\n", false),
            (b"AUTH PLAIN\r\n", true),
            (b"STAT\r\n", false),
        ] {
            let mut c = c.clone();
            c.sent(line);
            assert_eq!(c.auth_reply_due(), auth, "{}", show(line));
        }
        c.sent(b"AUTH PLAIN\r\n");
        c.server_line(b"+ \r\n").unwrap();
        assert!(!c.reply_due());
        c.sent(b"AHVzZXIAd3Jvbmc=\r\n");
        assert!(c.auth_reply_due());
    }

    #[test]
    fn imap_starttls_switches() {
        let mut c = imap();
        c.sent(b"t STARTTLS\r\n");
        c.server_line(b"t OK begin\r\n").unwrap();
        assert!(c.switched_to_tls());
    }

    #[test]
    fn pop3_status_bodies_and_goodbye() {
        let mut c = ReplyCheck::new(Protocol::Pop3);
        c.greeting(b"+OK POP3 ready\r\n").unwrap();
        c.sent(b"LIST\r\n");
        assert!(c.reply_due());
        c.server_line(b"+OK 2 messages\r\n").unwrap();
        assert!(!c.reply_complete());
        c.server_line(b"1 120\r\n").unwrap();
        c.server_line(b".\r\n").unwrap();
        assert!(c.reply_complete());
        c.sent(b"STAT\r\n");
        c.server_line(b"+OK 2 240\r\n").unwrap();
        assert!(c.server_line(b"1 120\r\n").is_err());
        c.sent(b"AUTH PLAIN\r\n");
        c.server_line(b"+ \r\n").unwrap();
        c.sent(b"\r\n");
        assert!(c.reply_due());
        c.server_line(b"-ERR no\r\n").unwrap();
        assert!(c.said_goodbye());
        c.sent(b"QUIT\r\n");
        c.server_line(b"+OK bye\r\n").unwrap();
        assert!(c.said_goodbye());
        assert!(c.server_line(b"+OK\n").is_err());
        assert!(ReplyCheck::new(Protocol::Pop3)
            .greeting(b"* OK\r\n")
            .is_err());

        // UIDL with an argument a server may not see (Dovecot stops at NUL)
        let mut c = ReplyCheck::new(Protocol::Pop3);
        c.greeting(b"+OK hi\r\n").unwrap();
        c.sent(b"UIDL \x001\r\n");
        c.server_line(b"+OK\r\n").unwrap();
        c.server_line(b"1 000000016b052d9b\r\n").unwrap();
        c.server_line(b".\r\n").unwrap();
        c.sent(b"UIDL 1\r\n");
        c.server_line(b"+OK 1 abc\r\n").unwrap();
        assert!(c.server_line(b"1 000000016b052d9b\r\n").is_err());

        // blank lines, answered (-ERR) or ignored, keep replies in step
        for answered in [true, false] {
            let mut c = ReplyCheck::new(Protocol::Pop3);
            c.greeting(b"+OK hi\r\n").unwrap();
            c.sent(b"\r\n");
            assert!(!c.reply_due());
            c.sent(b"LIST\r\nUIDL 1\r\n");
            if answered {
                c.server_line(b"-ERR empty command\r\n").unwrap();
            }
            c.server_line(b"+OK 1 message\r\n").unwrap();
            c.server_line(b"1 120\r\n").unwrap();
            c.server_line(b".\r\n").unwrap();
            c.server_line(b"+OK 1 abc\r\n").unwrap();
            assert!(c.reply_complete());
            assert!(c.server_line(b"2 120\r\n").is_err());
        }
    }

    #[test]
    fn hostile_bytes_never_panic() {
        let mut rng = crate::rng::SeededRng::new(9);
        let alphabet: &[u8] = b"* +OK-ERR{}0123456789\r\n.a1 BYEDONEIDLE\xff";
        for proto in [Protocol::Imap, Protocol::Pop3] {
            let mut c = ReplyCheck::new(proto);
            for i in 0..20_000u32 {
                let len = (rng.next_u64() % 40) as usize;
                let bytes: Vec<u8> = (0..len)
                    .map(|_| alphabet[(rng.next_u64() % alphabet.len() as u64) as usize])
                    .collect();
                if i % 2 == 0 {
                    c.sent(&bytes);
                } else {
                    let _ = c.server_line(&bytes);
                    let _ = c.server_literal(&bytes);
                }
            }
            assert!(c.pending.len() <= MAX_PENDING && c.tags.len() <= MAX_TAGS);
        }
    }

    #[test]
    fn literal_announcements() {
        assert_eq!(
            literal_announcement(b"x {4294967295}"),
            Some((4294967295, true))
        );
        assert_eq!(literal_announcement(b"x {7+}"), Some((7, false)));
        assert_eq!(literal_announcement(b"x {99999999999999999999999}"), None);
        assert_eq!(literal_announcement(b"x {-1}"), None);
        assert_eq!(literal_announcement(b"x {}"), None);
        let c = imap();
        assert_eq!(c.server_literal(b"* 1 FETCH {7}\n"), None);
        assert_eq!(c.server_literal(b"* x {99999999999999999999999}\r\n"), None);
        assert_eq!(show(b"a\r\n\xff"), "\"a\\r\\n\\xff\"");
    }
}
