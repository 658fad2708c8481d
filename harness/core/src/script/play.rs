use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::parse::{Script, Step};
use super::pattern::{is_name, Pattern};

/// What reading one line from a connection gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadLine {
    /// A line, CRLF removed.
    Line(Vec<u8>),
    /// The server closed the connection.
    Closed,
    /// Nothing arrived within the transport's bound (or, in-process, the server is
    /// waiting for input).
    Silent,
}

/// Carries a script's bytes: in-process to an endpoint, or over sockets.
pub trait ScriptTransport {
    /// Opens connection `conn` (called on its first use).
    fn connect(&mut self, conn: usize) -> Result<(), String>;
    fn send(&mut self, conn: usize, bytes: &[u8]) -> Result<(), String>;
    fn read_line(&mut self, conn: usize) -> Result<ReadLine, String>;
    fn close(&mut self, conn: usize);
    /// `@sleep`: real transports wait; in-process ones need not.
    fn pause(&mut self, _duration: std::time::Duration) {}
}

/// Lines one `S: ...` may skip before the script fails.
const MAX_SKIP: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepRecord {
    Sent { conn: usize, text: String },
    Matched { conn: usize, text: String },
    Skipped { conn: usize, text: String },
    Closed { conn: usize },
    ServerClosed { conn: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    Failed {
        /// Script line of the step that failed.
        line: usize,
        expected: String,
        got: String,
    },
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PlayError {
    #[error("script line {line}: variable ${name} is not set (use @var or a capture before it)")]
    UnsetVariable { line: usize, name: String },
    #[error("script line {line}: connection {conn}: {reason}")]
    Transport {
        line: usize,
        conn: usize,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayReport {
    pub records: Vec<StepRecord>,
    pub verdict: Verdict,
    pub captures: BTreeMap<String, String>,
}

impl PlayReport {
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Passed
    }

    /// The transcript as it happened: `1 C: ...`, `1 S: ...`, skipped lines marked `~`.
    pub fn transcript(&self) -> String {
        let mut out = String::new();
        for r in &self.records {
            let _ = match r {
                StepRecord::Sent { conn, text } => writeln!(out, "{conn} C: {text}"),
                StepRecord::Matched { conn, text } => writeln!(out, "{conn} S: {text}"),
                StepRecord::Skipped { conn, text } => writeln!(out, "{conn} S~ {text}"),
                StepRecord::Closed { conn } => writeln!(out, "{conn} -- client closed"),
                StepRecord::ServerClosed { conn } => writeln!(out, "{conn} -- server closed"),
            };
        }
        match &self.verdict {
            Verdict::Passed => out.push_str("PASSED\n"),
            Verdict::Failed {
                line,
                expected,
                got,
            } => {
                let _ = writeln!(
                    out,
                    "FAILED at script line {line}\n  expected: {expected}\n  got:      {got}"
                );
            }
        }
        out
    }
}

/// Plays `script` over `transport`. `vars` (for example from the command line) override
/// the script's `@var` values. A failed expectation ends the run with a verdict; a broken
/// transport or an unset variable is an error.
pub fn play(
    script: &Script,
    vars: &BTreeMap<String, String>,
    transport: &mut dyn ScriptTransport,
) -> Result<PlayReport, PlayError> {
    let mut values = script.vars.clone();
    values.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut captures: BTreeMap<String, String> = BTreeMap::new();
    let mut records = Vec::new();
    let mut open: BTreeSet<usize> = BTreeSet::new();
    let mut skipping: BTreeSet<usize> = BTreeSet::new();
    let fail = |records, captures, line, expected: String, got: String| PlayReport {
        records,
        verdict: Verdict::Failed {
            line,
            expected,
            got,
        },
        captures,
    };
    for step in &script.steps {
        let conn = step.conn();
        let line = step.line();
        let transport_err = |reason: String| PlayError::Transport { line, conn, reason };
        if let Step::Sleep { millis, .. } = step {
            transport.pause(std::time::Duration::from_millis(*millis));
            continue;
        }
        if let Step::Distinct { names, .. } = step {
            if let Some((a, b, value)) = repeated_value(names, &values, &captures, line)? {
                let expected = format!("${a} and ${b} to differ");
                let got = format!("both are {value:?}");
                return Ok(fail(records, captures, line, expected, got));
            }
            continue;
        }
        if !matches!(step, Step::Close { .. }) && open.insert(conn) {
            transport.connect(conn).map_err(transport_err)?;
        }
        match step {
            Step::Send { text, .. } => {
                let mut bytes = substitute(text, &values, &captures, line)?;
                let text = String::from_utf8_lossy(&bytes).into_owned();
                bytes.extend_from_slice(b"\r\n");
                transport.send(conn, &bytes).map_err(transport_err)?;
                records.push(StepRecord::Sent { conn, text });
            }
            Step::Skip { .. } => {
                skipping.insert(conn);
            }
            Step::Expect { pattern, .. } => {
                let skip = skipping.remove(&conn);
                let mut known = values.clone();
                known.extend(captures.clone());
                let mut seen = 0usize;
                // What came instead of a matching line, if anything did.
                let mismatch: Option<String> = loop {
                    match transport.read_line(conn).map_err(transport_err)? {
                        ReadLine::Line(bytes) => {
                            let text = String::from_utf8_lossy(&bytes).into_owned();
                            if expect(pattern, &text, &mut known) {
                                for (k, v) in &known {
                                    if !values.contains_key(k) {
                                        captures.insert(k.clone(), v.clone());
                                    }
                                }
                                records.push(StepRecord::Matched { conn, text });
                                break None;
                            }
                            if !skip || seen >= MAX_SKIP {
                                break Some(text);
                            }
                            seen += 1;
                            records.push(StepRecord::Skipped { conn, text });
                        }
                        ReadLine::Closed => {
                            records.push(StepRecord::ServerClosed { conn });
                            open.remove(&conn);
                            break Some("(connection closed)".into());
                        }
                        ReadLine::Silent => break Some("(nothing: the server is silent)".into()),
                    }
                };
                if let Some(got) = mismatch {
                    return Ok(fail(records, captures, line, pattern.source.clone(), got));
                }
            }
            Step::Sleep { .. } | Step::Distinct { .. } => {}
            Step::Close { .. } => {
                if open.remove(&conn) {
                    transport.close(conn);
                }
                records.push(StepRecord::Closed { conn });
            }
            Step::ExpectClosed { .. } => {
                let mut extra = 0;
                loop {
                    match transport.read_line(conn).map_err(transport_err)? {
                        ReadLine::Closed => {
                            open.remove(&conn);
                            records.push(StepRecord::ServerClosed { conn });
                            break;
                        }
                        ReadLine::Line(bytes) if skipping.contains(&conn) && extra < MAX_SKIP => {
                            extra += 1;
                            records.push(StepRecord::Skipped {
                                conn,
                                text: String::from_utf8_lossy(&bytes).into_owned(),
                            });
                        }
                        ReadLine::Line(bytes) => {
                            let got = String::from_utf8_lossy(&bytes).into_owned();
                            return Ok(fail(
                                records,
                                captures,
                                line,
                                "(connection closed)".into(),
                                got,
                            ));
                        }
                        ReadLine::Silent => {
                            return Ok(fail(
                                records,
                                captures,
                                line,
                                "(connection closed)".into(),
                                "(the connection stays open)".into(),
                            ));
                        }
                    }
                }
                skipping.remove(&conn);
            }
        }
    }
    for conn in open {
        transport.close(conn);
    }
    Ok(PlayReport {
        records,
        verdict: Verdict::Passed,
        captures,
    })
}

/// The value of `name`: a capture wins over a variable; a name with neither is an error.
fn lookup<'v>(
    name: &str,
    values: &'v BTreeMap<String, String>,
    captures: &'v BTreeMap<String, String>,
    line: usize,
) -> Result<&'v String, PlayError> {
    captures
        .get(name)
        .or_else(|| values.get(name))
        .ok_or_else(|| PlayError::UnsetVariable {
            line,
            name: name.to_string(),
        })
}

/// The first two of `names` whose values are equal, with the value (`@distinct`).
fn repeated_value<'a>(
    names: &'a [String],
    values: &BTreeMap<String, String>,
    captures: &BTreeMap<String, String>,
    line: usize,
) -> Result<Option<(&'a str, &'a str, String)>, PlayError> {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for name in names {
        let value = lookup(name, values, captures, line)?;
        if let Some(first) = seen.insert(value.as_str(), name.as_str()) {
            return Ok(Some((first, name.as_str(), value.clone())));
        }
    }
    Ok(None)
}

fn expect(pattern: &Pattern, text: &str, known: &mut BTreeMap<String, String>) -> bool {
    pattern.matches(text, known)
}

/// Replaces `$name` and `${name}` with the value; `$$` is a literal `$`; `${0d 0a ff}`
/// stands for the bytes written in hex (what a fuzzer's reproducer needs: bare CR/LF,
/// non-UTF-8). Hex is tried first, so a variable whose name reads as an even number of
/// hex digits (`ad`, `beef`) is written without braces.
fn substitute(
    text: &str,
    values: &BTreeMap<String, String>,
    captures: &BTreeMap<String, String>,
    line: usize,
) -> Result<Vec<u8>, PlayError> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.extend_from_slice(&rest.as_bytes()[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push(b'$');
            rest = tail;
            continue;
        }
        if let Some((bytes, tail)) = hex_escape(after) {
            out.extend_from_slice(&bytes);
            rest = tail;
            continue;
        }
        // `${name}` ends where the brace does; `$name` at the first non-name character.
        let (name, consumed) = match after.strip_prefix('{').and_then(|a| a.split_once('}')) {
            Some((name, _)) => (name, name.len() + 2),
            None => {
                let len = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..len], len)
            }
        };
        if !is_name(name) {
            out.push(b'$');
            rest = after;
            continue;
        }
        let value = lookup(name, values, captures, line)?;
        out.extend_from_slice(value.as_bytes());
        rest = &after[consumed..];
    }
    out.extend_from_slice(rest.as_bytes());
    Ok(out)
}

/// `{hh hh ...}` at the start of `text`: the bytes and the text after the `}`.
fn hex_escape(text: &str) -> Option<(Vec<u8>, &str)> {
    let inner = text.strip_prefix('{')?;
    let close = inner.find('}')?;
    let digits: Vec<u8> = inner[..close].bytes().filter(|b| *b != b' ').collect();
    if digits.is_empty() || digits.len() % 2 != 0 {
        return None;
    }
    let bytes = digits
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()?;
    Some((bytes, &inner[close + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::parse;
    use std::collections::VecDeque;

    /// A fake server: each connection has lines queued in advance.
    #[derive(Default)]
    struct Canned {
        replies: BTreeMap<usize, VecDeque<ReadLine>>,
        sent: Vec<(usize, String)>,
        closed: Vec<usize>,
    }

    impl ScriptTransport for Canned {
        fn connect(&mut self, _conn: usize) -> Result<(), String> {
            Ok(())
        }
        fn send(&mut self, conn: usize, bytes: &[u8]) -> Result<(), String> {
            self.sent
                .push((conn, String::from_utf8_lossy(bytes).into_owned()));
            Ok(())
        }
        fn read_line(&mut self, conn: usize) -> Result<ReadLine, String> {
            Ok(self
                .replies
                .get_mut(&conn)
                .and_then(|q| q.pop_front())
                .unwrap_or(ReadLine::Silent))
        }
        fn close(&mut self, conn: usize) {
            self.closed.push(conn);
        }
    }

    fn canned(conn: usize, lines: &[&str]) -> (usize, VecDeque<ReadLine>) {
        let mut q: VecDeque<ReadLine> = lines
            .iter()
            .map(|l| {
                if *l == "<closed>" {
                    ReadLine::Closed
                } else {
                    ReadLine::Line(l.as_bytes().to_vec())
                }
            })
            .collect();
        q.push_back(ReadLine::Silent);
        (conn, q)
    }

    #[test]
    fn distinct_fails_on_a_repeated_value_and_needs_every_name_set() {
        let play_with = |text: &str, lines: &[&str]| {
            let script = parse(text).unwrap();
            let mut t = Canned::default();
            t.replies.extend([canned(1, lines)]);
            play(&script, &BTreeMap::new(), &mut t)
        };
        let text = "@var old 7\nS: * $a\nS: * $b\n@distinct old a b\nS: * $c\n";
        let passed = play_with(text, &["* 1", "* 2", "* 3"]).unwrap();
        assert_eq!(passed.verdict, Verdict::Passed);
        let repeated = play_with(text, &["* 1", "* 7", "* 3"]).unwrap();
        assert_eq!(
            repeated.verdict,
            Verdict::Failed {
                line: 4,
                expected: "$old and $b to differ".into(),
                got: "both are \"7\"".into(),
            }
        );
        // The step after a failed @distinct is not played.
        assert_eq!(repeated.records.len(), 2);
        let unset = play_with("S: * $a\n@distinct a nobody\n", &["* 1"]);
        assert_eq!(
            unset.unwrap_err(),
            PlayError::UnsetVariable {
                line: 2,
                name: "nobody".into()
            }
        );
    }

    #[test]
    fn passes_with_skips_captures_and_variables() {
        let script = parse(
            "@var user alice\nS: * OK $*\nC: a1 LOGIN $user $pw\nS: a1 OK $*\nC: a2 SELECT INBOX\nS: ...\nS: * $n EXISTS\nS: ...\nS: a2 OK $*\nC: a3 FETCH $n FLAGS\nC2: x\n@closed 2",
        )
        .unwrap();
        let mut t = Canned::default();
        t.replies.extend([
            canned(
                1,
                &[
                    "* OK ready",
                    "a1 OK done",
                    "* FLAGS ()",
                    "* 3 EXISTS",
                    "* 0 RECENT",
                    "a2 OK [READ-WRITE] done",
                ],
            ),
            canned(2, &["<closed>"]),
        ]);
        let vars = BTreeMap::from([("pw".to_string(), "secret".to_string())]);
        let report = play(&script, &vars, &mut t).unwrap();
        assert!(report.passed(), "{}", report.transcript());
        assert_eq!(report.captures["n"], "3");
        assert_eq!(t.sent[0], (1, "a1 LOGIN alice secret\r\n".to_string()));
        assert_eq!(t.sent[2], (1, "a3 FETCH 3 FLAGS\r\n".to_string()));
        let mut vars = BTreeMap::new();
        vars.insert("d".to_string(), ".".to_string());
        assert_eq!(
            substitute("CREATE Work${d}2024 $d", &vars, &BTreeMap::new(), 1).unwrap(),
            b"CREATE Work.2024 .".to_vec()
        );
        let transcript = report.transcript();
        assert!(transcript.contains("1 S~ * FLAGS ()"), "{transcript}");
        assert!(transcript.contains("2 -- server closed"), "{transcript}");
        assert!(transcript.ends_with("PASSED\n"));
    }

    #[test]
    fn a_mismatch_fails_with_the_line_and_both_texts() {
        let script = parse("S: * OK $*\nC: a LOGOUT\nS: * BYE $*").unwrap();
        let mut t = Canned::default();
        t.replies.extend([canned(1, &["* OK hi", "a OK no bye"])]);
        let report = play(&script, &BTreeMap::new(), &mut t).unwrap();
        assert_eq!(
            report.verdict,
            Verdict::Failed {
                line: 3,
                expected: "* BYE $*".into(),
                got: "a OK no bye".into()
            }
        );
    }

    #[test]
    fn hex_escapes_send_raw_bytes() {
        let script = parse("C: a${0d}b${ff 00}c$${x} ${}").unwrap();
        let mut t = Canned::default();
        play(&script, &BTreeMap::new(), &mut t).unwrap();
        assert_eq!(
            substitute(
                "a${0d}b${ff 00}c$${x} ${}",
                &BTreeMap::new(),
                &BTreeMap::new(),
                1
            )
            .unwrap(),
            b"a\rb\xff\x00c${x} ${}".to_vec()
        );
        // Not hex: a name in braces.
        let vars = BTreeMap::from([("zz".to_string(), "v".to_string())]);
        assert_eq!(
            substitute("${zz}!", &vars, &BTreeMap::new(), 1).unwrap(),
            b"v!".to_vec()
        );
        assert_eq!(t.sent.len(), 1);
    }

    #[test]
    fn silence_and_unset_variables_are_reported() {
        let script = parse("S: * OK $*").unwrap();
        let report = play(&script, &BTreeMap::new(), &mut Canned::default()).unwrap();
        assert!(
            matches!(report.verdict, Verdict::Failed { ref got, .. } if got.contains("silent"))
        );
        let script = parse("C: a LOGIN $nobody").unwrap();
        assert_eq!(
            play(&script, &BTreeMap::new(), &mut Canned::default()),
            Err(PlayError::UnsetVariable {
                line: 1,
                name: "nobody".into()
            })
        );
    }
}
