//! The mutation engine: client lines of transcript scripts, changed by a seeded generator
//! into cases to send to a live server.

use crate::rng::SeededRng;
use crate::script::{Script, Step};
use crate::Protocol;

/// What the client of one transcript sends on each of its connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedSession {
    /// Where it came from (a file name).
    pub name: String,
    /// Per connection (in order of first use), the `C:` lines without CRLF.
    pub conns: Vec<Vec<Vec<u8>>>,
}

impl SeedSession {
    /// The client lines of `script`, `@var` values substituted (`$$` becomes `$`);
    /// a `$name` with no value stays as written.
    pub fn from_script(name: &str, script: &Script) -> SeedSession {
        let mut order: Vec<usize> = Vec::new();
        let mut conns: Vec<Vec<Vec<u8>>> = Vec::new();
        for step in &script.steps {
            if let Step::Send { conn, text, .. } = step {
                let idx = match order.iter().position(|c| c == conn) {
                    Some(i) => i,
                    None => {
                        order.push(*conn);
                        conns.push(Vec::new());
                        order.len() - 1
                    }
                };
                if let Some(lines) = conns.get_mut(idx) {
                    lines.push(substitute_vars(text, script).into_bytes());
                }
            }
        }
        SeedSession {
            name: name.to_string(),
            conns,
        }
    }
}

fn substitute_vars(text: &str, script: &Script) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        match script.vars.get(&after[..len]) {
            Some(v) if len > 0 => {
                out.push_str(v);
                rest = &after[len..];
            }
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The ways a case is changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MutationKind {
    /// Leave a line out.
    Drop,
    /// Send a line twice.
    Duplicate,
    /// Exchange two lines.
    Swap,
    /// A protocol keyword inserted into a line, or a new command line.
    InsertKeyword,
    /// One bit of one byte flipped.
    FlipByte,
    /// A token replaced by a very long one.
    OverlongToken,
    /// An IMAP literal announcement no server should accept: `{4294967295}`.
    HugeLiteral,
    /// Bytes that are not UTF-8 (and NUL).
    NonUtf8,
    /// A lone CR or LF inside a line.
    BareCrLf,
    /// The tag (IMAP) or command word (POP3) replaced by random characters.
    RandomTag,
    /// A line cut short and sent without its CRLF.
    Truncate,
}

pub const ALL_KINDS: [MutationKind; 11] = [
    MutationKind::Drop,
    MutationKind::Duplicate,
    MutationKind::Swap,
    MutationKind::InsertKeyword,
    MutationKind::FlipByte,
    MutationKind::OverlongToken,
    MutationKind::HugeLiteral,
    MutationKind::NonUtf8,
    MutationKind::BareCrLf,
    MutationKind::RandomTag,
    MutationKind::Truncate,
];

impl MutationKind {
    pub fn name(self) -> &'static str {
        match self {
            MutationKind::Drop => "drop",
            MutationKind::Duplicate => "duplicate",
            MutationKind::Swap => "swap",
            MutationKind::InsertKeyword => "insert-keyword",
            MutationKind::FlipByte => "flip-byte",
            MutationKind::OverlongToken => "overlong-token",
            MutationKind::HugeLiteral => "huge-literal",
            MutationKind::NonUtf8 => "non-utf8",
            MutationKind::BareCrLf => "bare-cr-lf",
            MutationKind::RandomTag => "random-tag",
            MutationKind::Truncate => "truncate",
        }
    }
}

crate::text::display_by_name!(MutationKind);

/// One line of a case: its bytes, and whether CRLF follows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseLine {
    pub bytes: Vec<u8>,
    pub crlf: bool,
}

impl CaseLine {
    fn new(bytes: Vec<u8>) -> CaseLine {
        CaseLine { bytes, crlf: true }
    }

    /// What goes on the wire.
    pub fn wire(&self) -> Vec<u8> {
        let mut out = self.bytes.clone();
        if self.crlf {
            out.extend_from_slice(b"\r\n");
        }
        out
    }
}

/// A case: the lines to send on one connection, and how they were made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutated {
    /// The case's number within the run (with the run's seed, enough to make it again).
    pub index: u64,
    /// The seed session it came from.
    pub source: String,
    /// Which of the source's connections (0-based).
    pub conn: usize,
    pub mutations: Vec<MutationKind>,
    /// The source connection's lines before mutation.
    pub original: Vec<Vec<u8>>,
    pub lines: Vec<CaseLine>,
}

impl Mutated {
    /// Index of the first line that differs from the source (by position), if any.
    pub fn first_difference(&self) -> Option<usize> {
        let n = self.lines.len().max(self.original.len());
        (0..n).find(|&i| match (self.lines.get(i), self.original.get(i)) {
            (Some(l), Some(o)) => !l.crlf || &l.bytes != o,
            _ => true,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MutateError {
    #[error("no client lines to mutate (the transcripts have no `C:` steps)")]
    NoSeeds,
}

/// Longest token an overlong-token mutation makes.
pub const MAX_OVERLONG: usize = 70_000;
/// Most mutations stacked in one case.
pub const MAX_MUTATIONS: usize = 4;
/// Most lines one case grows to.
pub const MAX_CASE_LINES: usize = 64;

const IMAP_KEYWORDS: &[&str] = &[
    "CAPABILITY",
    "NOOP",
    "LOGOUT",
    "LOGIN",
    "AUTHENTICATE",
    "SELECT",
    "EXAMINE",
    "CREATE",
    "DELETE",
    "RENAME",
    "LIST",
    "LSUB",
    "STATUS",
    "APPEND",
    "CHECK",
    "CLOSE",
    "EXPUNGE",
    "SEARCH",
    "FETCH",
    "STORE",
    "COPY",
    "UID",
    "IDLE",
    "NIL",
    "INBOX",
    "PLAIN",
    "NTLM",
    "BODY[]",
    "BODY.PEEK[HEADER]",
    "(FLAGS)",
    "(\\Seen)",
    "1:*",
    "*",
    "\"\"",
    "()",
];

const IMAP_COMMAND_LINES: &[&str] = &[
    "CAPABILITY",
    "NOOP",
    "LOGIN alice secret",
    "AUTHENTICATE PLAIN",
    "AUTHENTICATE NTLM",
    "SELECT INBOX",
    "EXAMINE INBOX",
    "FETCH 1:* (FLAGS BODY.PEEK[])",
    "UID FETCH 1:* FLAGS",
    "STORE 1 +FLAGS (\\Deleted)",
    "SEARCH ALL",
    "EXPUNGE",
    "LIST \"\" *",
    "STATUS INBOX (MESSAGES)",
    "CHECK",
    "CLOSE",
];

const POP3_KEYWORDS: &[&str] = &[
    "USER", "PASS", "APOP", "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL", "CAPA",
    "AUTH", "PLAIN", "LOGIN", "NTLM", "1", "0", "-1",
];

const POP3_COMMAND_LINES: &[&str] = &[
    "CAPA",
    "USER alice",
    "PASS secret",
    "STAT",
    "LIST",
    "LIST 1",
    "UIDL",
    "RETR 1",
    "TOP 1 0",
    "DELE 1",
    "RSET",
    "NOOP",
    "AUTH",
    "AUTH PLAIN",
];

const NON_UTF8: &[&[u8]] = &[
    b"\xff",
    b"\xfe\xff",
    b"\xc0\x80",
    b"\x00",
    b"\xed\xa0\x80",
    b"\x80\x80\x80",
    b"\xf8\x88\x80\x80\x80",
];

const HUGE_LITERALS: &[&str] = &[
    "{4294967295}",
    "{4294967295+}",
    "{4294967296}",
    "{18446744073709551615}",
    "{99999999999999999999999}",
    "{2147483648}",
    "{-1}",
];

const TAG_CHARS: &[u8] =
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_*+(){%\\\"]~";

/// Makes cases from seed sessions. Case `n` of a run depends only on the run's seed and
/// `n`, so any case can be made again on its own.
#[derive(Debug, Clone)]
pub struct Mutator {
    proto: Protocol,
    seed: u64,
    /// (session index, connection index) of every non-empty connection.
    slots: Vec<(usize, usize)>,
    seeds: Vec<SeedSession>,
}

impl Mutator {
    pub fn new(
        proto: Protocol,
        seeds: Vec<SeedSession>,
        seed: u64,
    ) -> Result<Mutator, MutateError> {
        let slots: Vec<(usize, usize)> = seeds
            .iter()
            .enumerate()
            .flat_map(|(s, sess)| {
                sess.conns
                    .iter()
                    .enumerate()
                    .filter(|(_, lines)| !lines.is_empty())
                    .map(move |(c, _)| (s, c))
            })
            .collect();
        if slots.is_empty() {
            return Err(MutateError::NoSeeds);
        }
        Ok(Mutator {
            proto,
            seed,
            slots,
            seeds,
        })
    }

    pub fn proto(&self) -> Protocol {
        self.proto
    }

    /// Case number `index` of this run.
    pub fn case(&self, index: u64) -> Mutated {
        let mut rng = SeededRng::new(
            self.seed
                .rotate_left(17)
                .wrapping_add(index.wrapping_mul(0xA24B_AED4_963E_E407)),
        );
        let (s, c) = self.slots[below(&mut rng, self.slots.len())];
        let (source, original) = self
            .seeds
            .get(s)
            .and_then(|sess| {
                sess.conns
                    .get(c)
                    .map(|lines| (sess.name.clone(), lines.clone()))
            })
            .unwrap_or_default();
        let mut lines: Vec<CaseLine> = original.iter().cloned().map(CaseLine::new).collect();
        // 1 mutation most often, up to MAX_MUTATIONS.
        let count = 1
            + (0..MAX_MUTATIONS - 1)
                .take_while(|_| below(&mut rng, 3) == 0)
                .count();
        let mut mutations = Vec::with_capacity(count);
        for _ in 0..count {
            let kind = ALL_KINDS[below(&mut rng, ALL_KINDS.len())];
            apply(self.proto, kind, &mut lines, &mut rng);
            mutations.push(kind);
        }
        Mutated {
            index,
            source,
            conn: c,
            mutations,
            original,
            lines,
        }
    }
}

/// A number in `0..n` (`n` > 0; 0 gives 0).
fn below(rng: &mut SeededRng, n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (rng.next_u64() % n as u64) as usize
    }
}

fn pick<'a, T>(rng: &mut SeededRng, items: &'a [T]) -> Option<&'a T> {
    items.get(below(rng, items.len()))
}

/// Applies one mutation of `kind` to `lines` (which may be empty: then a line is made).
pub fn apply(proto: Protocol, kind: MutationKind, lines: &mut Vec<CaseLine>, rng: &mut SeededRng) {
    if lines.is_empty() {
        lines.push(CaseLine::new(random_command(proto, rng)));
    }
    let at = below(rng, lines.len());
    match kind {
        MutationKind::Drop => {
            if lines.len() > 1 {
                lines.remove(at);
            } else if let Some(l) = lines.get_mut(at) {
                l.bytes.clear();
            }
        }
        MutationKind::Duplicate => {
            if lines.len() < MAX_CASE_LINES {
                let copy = lines[at].clone();
                lines.insert(at, copy);
            }
        }
        MutationKind::Swap => {
            if lines.len() > 1 {
                let mut other = below(rng, lines.len() - 1);
                if other >= at {
                    other += 1;
                }
                lines.swap(at, other);
            } else {
                lines[at].bytes.reverse();
            }
        }
        MutationKind::InsertKeyword => {
            if below(rng, 2) == 0 && lines.len() < MAX_CASE_LINES {
                lines.insert(at, CaseLine::new(random_command(proto, rng)));
            } else {
                let words = match proto {
                    Protocol::Imap => IMAP_KEYWORDS,
                    Protocol::Pop3 => POP3_KEYWORDS,
                };
                let word = pick(rng, words).copied().unwrap_or("NOOP");
                let line = &mut lines[at].bytes;
                let pos = token_boundary(line, rng);
                let mut insert = Vec::with_capacity(word.len() + 2);
                if pos > 0 {
                    insert.push(b' ');
                }
                insert.extend_from_slice(word.as_bytes());
                if pos < line.len() {
                    insert.push(b' ');
                }
                line.splice(pos..pos, insert);
            }
        }
        MutationKind::FlipByte => {
            let line = &mut lines[at].bytes;
            if line.is_empty() {
                line.push(rng.next_u64() as u8);
            } else {
                let i = below(rng, line.len());
                line[i] ^= 1 << below(rng, 8);
            }
        }
        MutationKind::OverlongToken => {
            let len = match below(rng, 4) {
                0 => 1_025,
                1 => 8_193,
                2 => 65_537,
                _ => MAX_OVERLONG,
            };
            let fill = *pick(rng, b"aA9*(\"").unwrap_or(&b'a');
            let token = vec![fill; len];
            let line = &mut lines[at].bytes;
            let (start, end) = random_token(line, rng);
            line.splice(start..end, token);
        }
        MutationKind::HugeLiteral => {
            let lit = pick(rng, HUGE_LITERALS).copied().unwrap_or("{4294967295}");
            let line = &mut lines[at].bytes;
            if !line.is_empty() && line.last() != Some(&b' ') {
                line.push(b' ');
            }
            line.extend_from_slice(lit.as_bytes());
            lines[at].crlf = true;
        }
        MutationKind::NonUtf8 => {
            let bad = pick(rng, NON_UTF8).copied().unwrap_or(b"\xff");
            let line = &mut lines[at].bytes;
            let pos = below(rng, line.len() + 1);
            line.splice(pos..pos, bad.iter().copied());
        }
        MutationKind::BareCrLf => {
            let byte = if below(rng, 2) == 0 { b'\r' } else { b'\n' };
            let line = &mut lines[at].bytes;
            let pos = below(rng, line.len() + 1);
            line.insert(pos, byte);
        }
        MutationKind::RandomTag => {
            let len = below(rng, 12);
            let tag: Vec<u8> = (0..len)
                .map(|_| *pick(rng, TAG_CHARS).unwrap_or(&b'x'))
                .collect();
            let line = &mut lines[at].bytes;
            let end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
            line.splice(0..end, tag);
        }
        MutationKind::Truncate => {
            let line = &mut lines[at];
            let keep = below(rng, line.bytes.len().max(1));
            line.bytes.truncate(keep);
            line.crlf = false;
        }
    }
}

fn random_command(proto: Protocol, rng: &mut SeededRng) -> Vec<u8> {
    match proto {
        Protocol::Imap => {
            let cmd = pick(rng, IMAP_COMMAND_LINES).copied().unwrap_or("NOOP");
            format!("z{} {cmd}", below(rng, 1000)).into_bytes()
        }
        Protocol::Pop3 => pick(rng, POP3_COMMAND_LINES)
            .copied()
            .unwrap_or("NOOP")
            .as_bytes()
            .to_vec(),
    }
}

/// A position at the start or end of the line or just after a space.
fn token_boundary(line: &[u8], rng: &mut SeededRng) -> usize {
    let mut spots: Vec<usize> = vec![0, line.len()];
    spots.extend(
        line.iter()
            .enumerate()
            .filter(|(_, &b)| b == b' ')
            .map(|(i, _)| i),
    );
    spots.get(below(rng, spots.len())).copied().unwrap_or(0)
}

/// The byte range of one space-separated token (empty at the end if there is none).
fn random_token(line: &[u8], rng: &mut SeededRng) -> (usize, usize) {
    let mut tokens = Vec::new();
    let mut start = 0;
    for (i, &b) in line.iter().enumerate() {
        if b == b' ' {
            if i > start {
                tokens.push((start, i));
            }
            start = i + 1;
        }
    }
    if line.len() > start {
        tokens.push((start, line.len()));
    }
    pick(rng, &tokens)
        .copied()
        .unwrap_or((line.len(), line.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::parse;

    fn seeds() -> Vec<SeedSession> {
        let script = parse(
            "@protocol imap\n@var user alice\nS: * OK $*\nC: a1 LOGIN $user secret\nS: a1 OK $*\nC: a2 SELECT INBOX\nS: a2 OK $*\nC2: b1 NOOP\nC: a3 LOGOUT\n",
        )
        .unwrap();
        vec![SeedSession::from_script("t.txt", &script)]
    }

    #[test]
    fn seeds_are_client_lines_per_connection_with_vars() {
        let s = &seeds()[0];
        assert_eq!(s.conns.len(), 2);
        assert_eq!(s.conns[0][0], b"a1 LOGIN alice secret");
        assert_eq!(s.conns[0].len(), 3);
        assert_eq!(s.conns[1], vec![b"b1 NOOP".to_vec()]);
    }

    #[test]
    fn same_seed_same_case_and_seeds_differ() {
        let a = Mutator::new(Protocol::Imap, seeds(), 7).unwrap();
        let b = Mutator::new(Protocol::Imap, seeds(), 7).unwrap();
        let c = Mutator::new(Protocol::Imap, seeds(), 8).unwrap();
        for i in 0..200 {
            assert_eq!(a.case(i), b.case(i));
        }
        assert!((0..50).any(|i| a.case(i) != c.case(i)));
        // Each case depends on its index only, not on the cases made before it.
        let late = a.case(150);
        assert_eq!(
            Mutator::new(Protocol::Imap, seeds(), 7).unwrap().case(150),
            late
        );
    }

    #[test]
    fn every_kind_is_reachable_and_changes_the_case() {
        for proto in [Protocol::Imap, Protocol::Pop3] {
            let m = Mutator::new(proto, seeds(), 1).unwrap();
            let mut seen = std::collections::BTreeSet::new();
            for i in 0..2_000 {
                seen.extend(m.case(i).mutations);
            }
            assert_eq!(seen.len(), ALL_KINDS.len(), "{proto:?}: {seen:?}");
        }
        let original: Vec<CaseLine> = seeds()[0].conns[0]
            .iter()
            .cloned()
            .map(CaseLine::new)
            .collect();
        for kind in ALL_KINDS {
            let changed = (0..20).any(|s| {
                let mut lines = original.clone();
                apply(Protocol::Imap, kind, &mut lines, &mut SeededRng::new(s));
                lines != original
            });
            assert!(changed, "{kind} never changes the lines");
        }
    }

    #[test]
    fn kinds_do_what_they_say() {
        let base = || {
            vec![
                CaseLine::new(b"a1 LOGIN alice secret".to_vec()),
                CaseLine::new(b"a2 NOOP".to_vec()),
            ]
        };
        let run = |kind| {
            let mut l = base();
            apply(Protocol::Imap, kind, &mut l, &mut SeededRng::new(3));
            l
        };
        assert_eq!(run(MutationKind::Drop).len(), 1);
        assert_eq!(run(MutationKind::Duplicate).len(), 3);
        let huge = run(MutationKind::HugeLiteral);
        assert!(huge.iter().any(|l| l.bytes.ends_with(b"}")));
        let long = run(MutationKind::OverlongToken);
        assert!(long.iter().any(|l| l.bytes.len() > 1_000));
        let bad = run(MutationKind::NonUtf8);
        assert!(bad
            .iter()
            .any(|l| std::str::from_utf8(&l.bytes).is_err() || l.bytes.contains(&0)));
        let crlf = run(MutationKind::BareCrLf);
        assert!(crlf
            .iter()
            .any(|l| l.bytes.contains(&b'\r') || l.bytes.contains(&b'\n')));
        let cut = run(MutationKind::Truncate);
        assert!(cut.iter().any(|l| !l.crlf));
        let flipped = run(MutationKind::FlipByte);
        assert_ne!(flipped, base());
        assert_eq!(flipped.len(), 2);
    }

    #[test]
    fn first_difference_and_wire() {
        let m = Mutator::new(Protocol::Imap, seeds(), 5).unwrap();
        for i in 0..300 {
            let case = m.case(i);
            if let Some(d) = case.first_difference() {
                let same = case.lines[..d.min(case.lines.len())]
                    .iter()
                    .zip(&case.original)
                    .all(|(l, o)| l.crlf && &l.bytes == o);
                assert!(same);
            }
            assert!(case.lines.len() <= MAX_CASE_LINES);
            assert!(case.lines.iter().all(|l| l.bytes.len() <= MAX_OVERLONG * 5));
        }
        assert_eq!(CaseLine::new(b"x".to_vec()).wire(), b"x\r\n");
        assert!(matches!(
            Mutator::new(Protocol::Pop3, vec![], 1),
            Err(MutateError::NoSeeds)
        ));
    }
}
