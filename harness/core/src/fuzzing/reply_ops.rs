//! Fuzz target `netfuzz_reply_check`: the network fuzzer's reply checker
//! ([`ReplyCheck`]), which judges the replies of live servers, on arbitrary server bytes.
//!
//! Input: a setup octet (bit 0: POP3 instead of IMAP; bit 1: mock mode), then
//!
//! * **hostile mode**: records, each a direction octet (odd: client bytes, even: server
//!   bytes) and a length-prefixed byte string ([`ops::raw`]). Client bytes go to
//!   [`ReplyCheck::sent`]; server bytes are cut into reply lines the way the lab's network
//!   fuzzer reads them ([`next_reply_line`]: a line ends at LF, an IMAP literal announced
//!   at its end is skipped and the line goes on with the next one), the first line to
//!   [`ReplyCheck::greeting`], the others to [`ReplyCheck::server_line`].
//! * **mock mode**: the rest is client lines (split at LF, at most [`MAX_MOCK_LINES`]),
//!   each sent with CRLF to the in-process mock server of that protocol and to the
//!   checker; the mock's replies go through the checker the same way.
//!
//! Checked: no panic; every reply line gets a verdict and the run ends in one
//! ([`Verdict`]); a malformed verdict's text stays short; the checker's memory stays
//! within a multiple of the bytes it was given, whatever literal sizes or lengths the
//! bytes announce; in mock mode no reply of the mock is judged malformed (the network
//! fuzzer would report the lab's own server).

use std::sync::Arc;
use std::time::Duration;

use arbitrary::Unstructured;

use super::ops::{self, byte};
use crate::netfuzz::{Malformed, ReplyCheck};
use crate::session::{Output, ServerSession};
use crate::Protocol;

/// Client lines played against the mock per input.
pub const MAX_MOCK_LINES: usize = 64;
/// Literals followed within one reply line (the lab reads up to 1,000).
const MAX_LITERALS_PER_LINE: usize = 1_000;
/// A literal announced larger than this ends the line there (as in the lab).
const MAX_SERVER_LITERAL: u64 = 64 * 1024 * 1024;
/// Longest text of a malformed verdict: `show` cuts a line at 200 bytes (at most four
/// characters each) and adds a short explanation.
const MAX_VERDICT_TEXT: usize = 1_024;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A reply line was judged malformed (the first one's reason).
    Malformed(String),
    /// STARTTLS / STLS was accepted: the rest would be TLS.
    SwitchedToTls,
    /// Bytes of an unfinished line (or literal) were left over.
    Partial,
    /// Every line read was valid; whether a reply is still owed.
    Valid { reply_due: bool },
}

/// The next logical reply line of `buf` (literal data left out, the line's parts joined)
/// and the octets it took, or `None` while it is incomplete. Nothing is sized by an
/// announced literal: a literal is skipped only as far as the bytes are there.
pub fn next_reply_line(buf: &[u8], check: &ReplyCheck) -> Option<(usize, Vec<u8>)> {
    let mut pos = 0usize;
    let mut line = Vec::new();
    for _ in 0..MAX_LITERALS_PER_LINE {
        let rest = buf.get(pos..)?;
        let lf = rest.iter().position(|&b| b == b'\n')?;
        line.extend_from_slice(rest.get(..=lf)?);
        pos += lf + 1;
        let Some(n) = check.server_literal(&line) else {
            return Some((pos, line));
        };
        if n > MAX_SERVER_LITERAL {
            return Some((pos, line));
        }
        let end = usize::try_from(n).ok().and_then(|n| pos.checked_add(n))?;
        if end > buf.len() {
            return None;
        }
        pos = end;
    }
    Some((pos, line))
}

struct Judge {
    check: ReplyCheck,
    buf: Vec<u8>,
    greeted: bool,
    given: usize,
    first_malformed: Option<Malformed>,
    tls: bool,
}

impl Judge {
    fn new(proto: Protocol) -> Judge {
        Judge {
            check: ReplyCheck::new(proto),
            buf: Vec::new(),
            greeted: false,
            given: 0,
            first_malformed: None,
            tls: false,
        }
    }

    fn sent(&mut self, bytes: &[u8]) {
        self.given += bytes.len();
        self.check.sent(bytes);
        self.bounded();
    }

    /// Server bytes: judges every complete line; returns the malformed verdicts.
    fn received(&mut self, bytes: &[u8]) -> Vec<Malformed> {
        self.given += bytes.len();
        self.buf.extend_from_slice(bytes);
        let mut bad = Vec::new();
        while !self.tls {
            let Some((took, line)) = next_reply_line(&self.buf, &self.check) else {
                break;
            };
            self.buf.drain(..took.min(self.buf.len()));
            let verdict = if self.greeted {
                self.check.server_line(&line)
            } else {
                self.greeted = true;
                self.check.greeting(&line)
            };
            if let Err(m) = verdict {
                assert!(
                    m.0.len() <= MAX_VERDICT_TEXT,
                    "a verdict of {} characters",
                    m.0.len()
                );
                self.first_malformed.get_or_insert_with(|| m.clone());
                bad.push(m);
            }
            self.tls = self.check.switched_to_tls();
            self.bounded();
        }
        bad
    }

    /// The checker holds no more than a multiple of what it was given.
    fn bounded(&self) {
        let held = self.check.held_bytes();
        assert!(
            held <= 4096 + 8 * self.given,
            "the checker holds {held} bytes after {} given",
            self.given
        );
        assert!(self.check.unanswered() <= self.given);
    }

    fn verdict(self) -> Verdict {
        if let Some(m) = self.first_malformed {
            Verdict::Malformed(m.0)
        } else if self.tls {
            Verdict::SwitchedToTls
        } else if !self.buf.is_empty() {
            Verdict::Partial
        } else {
            Verdict::Valid {
                reply_due: self.check.reply_due(),
            }
        }
    }
}

/// Fuzz target `netfuzz_reply_check`.
pub fn netfuzz_reply_check(data: &[u8]) {
    run(data);
}

/// Plays one input; returns how it ended.
pub fn run(data: &[u8]) -> Verdict {
    let mut u = Unstructured::new(data);
    let setup = byte(&mut u);
    let proto = if setup & 1 == 0 {
        Protocol::Imap
    } else {
        Protocol::Pop3
    };
    if setup & 2 == 0 {
        hostile(proto, &mut u)
    } else {
        let rest = u.take_rest();
        mock(proto, rest)
    }
}

fn hostile(proto: Protocol, u: &mut Unstructured<'_>) -> Verdict {
    let mut judge = Judge::new(proto);
    while !u.is_empty() && !judge.tls {
        let client = byte(u) & 1 == 1;
        let bytes = ops::raw(u);
        if client {
            judge.sent(&bytes);
        } else {
            judge.received(&bytes);
        }
    }
    judge.verdict()
}

fn mock(proto: Protocol, lines: &[u8]) -> Verdict {
    let Some(world) = ops::default_world() else {
        return Verdict::Partial;
    };
    let world = Arc::new(world);
    let profile = Arc::new(crate::profile::Profile::default_profile());
    let protocol = match proto {
        Protocol::Imap => crate::Protocol::Imap,
        Protocol::Pop3 => crate::Protocol::Pop3,
    };
    let mut server = crate::scenario::endpoint(&world, &profile, protocol, 1);
    let mut judge = Judge::new(proto);
    let mut now = Duration::ZERO;
    let mut closed = pump(&mut judge, server.as_mut(), "the greeting");
    for line in lines.split(|&b| b == b'\n').take(MAX_MOCK_LINES) {
        if closed {
            break;
        }
        now += Duration::from_millis(10);
        let mut bytes = line.to_vec();
        bytes.extend_from_slice(b"\r\n");
        judge.sent(&bytes);
        server.handle_input(now, &bytes);
        let what = String::from_utf8_lossy(line).into_owned();
        closed = pump(&mut judge, server.as_mut(), &what);
    }
    if !closed {
        server.handle_eof(now);
        pump(&mut judge, server.as_mut(), "EOF");
    }
    judge.verdict()
}

/// Feeds the mock's output to the checker; true once the session closed or switched
/// to TLS. Panics when the checker calls a reply of the mock malformed.
fn pump(judge: &mut Judge, server: &mut dyn ServerSession, after: &str) -> bool {
    let mut closed = server.is_closed();
    while let Some(out) = server.poll_output() {
        match out {
            Output::Write(w) => {
                let bad = judge.received(&w);
                assert!(
                    bad.is_empty(),
                    "the mock's reply to {after:?} judged malformed: {bad:?}"
                );
            }
            Output::StartTls => closed = true,
            Output::Close => closed = true,
        }
    }
    closed || judge.tls
}

/// The seeds in `corpus/fuzz/netfuzz_reply_check/`, from the transcripts in
/// `corpus/sessions/<protocol>/`: for each, its client lines in mock mode (`-mock`), and
/// the same conversation with the mock as hostile-mode records of what was sent and what
/// the mock replied (`-replies`), so the hostile inputs start from real replies.
pub fn seeds(transcripts: &[(Protocol, String, String)]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (proto, name, text) in transcripts {
        let Ok(script) = crate::script::parse(text) else {
            continue;
        };
        let lines: Vec<&str> = script
            .steps
            .iter()
            .filter_map(|s| match s {
                crate::script::Step::Send { conn: 1, text, .. } => Some(text.as_str()),
                _ => None,
            })
            .take(MAX_MOCK_LINES)
            .collect();
        let p = u8::from(*proto == Protocol::Pop3);
        let mut mock_seed = vec![2 | p];
        mock_seed.extend_from_slice(lines.join("\n").as_bytes());
        out.push((format!("{name}-mock"), mock_seed));
        let replies = replies_seed(*proto, p, &lines, &script.offers);
        out.push((format!("{name}-replies"), replies));
    }
    out
}

/// A hostile-mode input: what the client sent and the mock replied, record by record
/// (replies longer than a record are split). The mock offers what the script's `@offer`s
/// ask for.
fn replies_seed(proto: Protocol, p: u8, lines: &[&str], offers: &[String]) -> Vec<u8> {
    let mut s = ops::Seed::default();
    s.byte(p);
    let Some(world) = ops::default_world() else {
        return s.0;
    };
    let protocol = match proto {
        Protocol::Imap => crate::Protocol::Imap,
        Protocol::Pop3 => crate::Protocol::Pop3,
    };
    let world = Arc::new(world);
    let mut profile = crate::profile::Profile::default_profile();
    for name in offers {
        profile.offer(name);
    }
    let profile = Arc::new(profile);
    let mut server = crate::scenario::endpoint(&world, &profile, protocol, 1);
    let record = |s: &mut ops::Seed, server: &mut dyn ServerSession| {
        while let Some(Output::Write(w)) = server.poll_output() {
            for chunk in w.chunks(255) {
                s.byte(0).raw(chunk);
            }
        }
    };
    record(&mut s, server.as_mut());
    for (i, line) in lines.iter().enumerate() {
        let bytes = format!("{line}\r\n");
        s.byte(1).raw(bytes.as_bytes());
        server.handle_input(Duration::from_millis(10 * (i as u64 + 1)), bytes.as_bytes());
        record(&mut s, server.as_mut());
    }
    s.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcripts() -> Vec<(Protocol, String, String)> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpus/sessions");
        let mut out = Vec::new();
        for proto in [Protocol::Imap, Protocol::Pop3] {
            let dir = root.join(proto.keyword());
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            for f in files {
                let stem = f.file_stem().unwrap().to_string_lossy().into_owned();
                let text = std::fs::read_to_string(&f).unwrap();
                out.push((proto, format!("{}-{stem}", proto.keyword()), text));
            }
        }
        out
    }

    #[test]
    fn seeds_match_the_corpus_and_their_replies_are_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../corpus/fuzz/netfuzz_reply_check");
        let write = std::env::var_os("HARNESS_WRITE_SEEDS").is_some();
        let seeds = seeds(&transcripts());
        assert!(seeds.len() >= 10, "{} seeds", seeds.len());
        for (name, bytes) in seeds {
            // The mock's own conversations are valid either way they are fed.
            let verdict = run(&bytes);
            assert!(
                !matches!(verdict, Verdict::Malformed(_)),
                "{name}: {verdict:?}"
            );
            let path = dir.join(&name);
            if write {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &bytes).unwrap();
            } else {
                let stored = std::fs::read(&path).unwrap_or_default();
                assert!(
                    stored == bytes,
                    "{} is stale: HARNESS_WRITE_SEEDS=1 cargo test -p harness-core reply_ops",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn reply_lines_skip_literals_only_as_far_as_the_bytes_go() {
        let mut c = ReplyCheck::new(Protocol::Imap);
        c.greeting(b"* OK hi\r\n").unwrap();
        let buf = b"* 1 FETCH (BODY[] {5}\r\nab\ncd)\r\nrest";
        let (took, line) = next_reply_line(buf, &c).unwrap();
        assert_eq!(line, b"* 1 FETCH (BODY[] {5}\r\n)\r\n");
        assert_eq!(&buf[took..], b"rest");
        // a literal announced larger than the bytes given: wait, allocate nothing; one
        // over the lab's limit ends the line where it is announced
        assert_eq!(next_reply_line(b"* 1 FETCH {60000000}\r\nxx", &c), None);
        let (took, _) = next_reply_line(b"* 1 FETCH {4294967295}\r\nxx", &c).unwrap();
        assert_eq!(took, 24);
        assert_eq!(next_reply_line(b"* no end", &c), None);
    }

    #[test]
    fn hostile_mode_finds_malformed_lines_and_valid_ones() {
        // IMAP: greeting, client `a1 NOOP`, a reply with a tag never sent.
        let mut s = ops::Seed::default();
        s.byte(0)
            .byte(0)
            .raw(b"* OK hi\r\n")
            .byte(1)
            .raw(b"a1 NOOP\r\n");
        let valid = s.clone().byte(0).raw(b"a1 OK done\r\n").0.clone();
        assert_eq!(run(&valid), Verdict::Valid { reply_due: false });
        let bad = s.byte(0).raw(b"zz OK done\r\n").0.clone();
        assert!(matches!(run(&bad), Verdict::Malformed(m) if m.contains("never sent")));
    }

    #[test]
    fn mock_mode_replies_are_valid() {
        let imap = b"\x02a1 CAPABILITY\na2 LOGIN alice secret\na3 SELECT INBOX\na4 FETCH 1:* (FLAGS BODY[])\na5 IDLE\nDONE\na6 LOGOUT";
        assert_eq!(run(imap), Verdict::Valid { reply_due: false });
        let pop3 = b"\x03USER alice\nPASS secret\nLIST\nRETR 1\nUIDL\nQUIT";
        assert_eq!(run(pop3), Verdict::Valid { reply_due: false });
    }

    #[test]
    fn mock_mode_smoke_run() {
        // Random client lines from a small alphabet of command words: the mock's replies
        // must all be judged valid.
        let words: &[&[u8]] = &[
            b"a1 ",
            b"LOGIN ",
            b"alice ",
            b"secret",
            b"SELECT INBOX",
            b"FETCH 1 BODY[]",
            b"{3}",
            b"{2+}",
            b"IDLE",
            b"DONE",
            b"AUTHENTICATE PLAIN",
            b"*",
            b"USER ",
            b"PASS ",
            b"RETR 1",
            b"LIST",
            b"UIDL 1",
            b"TOP 1 0",
            b"CAPA",
            b"AUTH",
            b"QUIT",
            b"\n",
            b" ",
            b"\xff",
            b"\r",
            b"STARTTLS",
            b"STLS",
            b"NOOP",
            b"LOGOUT",
        ];
        let mut rng = crate::rng::SeededRng::new(7);
        for _ in 0..400 {
            let mut input = vec![2 | (rng.next_u64() % 2) as u8];
            for _ in 0..rng.next_u64() % 40 {
                input.extend_from_slice(words[(rng.next_u64() % words.len() as u64) as usize]);
            }
            let _ = run(&input);
        }
    }
}
