use std::collections::BTreeMap;

use super::pattern::{is_name, Pattern};
use crate::Protocol;

/// A parsed script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// `@protocol` (imap, pop3); `None` when the script does not say.
    pub protocol: Option<Protocol>,
    /// `@var name value`, in order of appearance (later ones override earlier).
    pub vars: BTreeMap<String, String>,
    /// `@offer name`: optional server features the mock must offer for this script (see
    /// [`crate::Profile::offer`]); players that serve the mock turn them on, real servers
    /// offer what they offer.
    pub offers: Vec<String>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this line (CRLF is appended) on connection `conn` (1-based).
    Send {
        conn: usize,
        text: String,
        line: usize,
    },
    /// Expect a line matching `pattern` on `conn`.
    Expect {
        conn: usize,
        pattern: Pattern,
        line: usize,
    },
    /// Skip lines on `conn` until the next `Expect` on the same connection matches.
    Skip { conn: usize, line: usize },
    /// Close connection `conn`.
    Close { conn: usize, line: usize },
    /// Expect the server to close connection `conn`.
    ExpectClosed { conn: usize, line: usize },
    /// Wait this long (over sockets; in-process time does not need it).
    Sleep { millis: u64, line: usize },
    /// The values captured (or set) under these names must differ from one another.
    Distinct { names: Vec<String>, line: usize },
}

impl Step {
    pub fn conn(&self) -> usize {
        match self {
            Step::Send { conn, .. }
            | Step::Expect { conn, .. }
            | Step::Skip { conn, .. }
            | Step::Close { conn, .. }
            | Step::ExpectClosed { conn, .. } => *conn,
            Step::Sleep { .. } | Step::Distinct { .. } => 0,
        }
    }

    pub fn line(&self) -> usize {
        match self {
            Step::Send { line, .. }
            | Step::Expect { line, .. }
            | Step::Skip { line, .. }
            | Step::Close { line, .. }
            | Step::ExpectClosed { line, .. }
            | Step::Sleep { line, .. }
            | Step::Distinct { line, .. } => *line,
        }
    }
}

/// Which side a `C:` / `S:` line speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    Client,
    Server,
}

/// A directive the parser understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directive {
    Protocol(Protocol),
    Var(String, String),
    Close(usize),
    Closed(usize),
    Sleep(u64),
    Distinct(Vec<String>),
    Offer(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error(
        "line {line}: expected `C:`, `S:`, `Cn:`, `Sn:`, `@directive`, `#comment` or a blank line"
    )]
    UnknownLine { line: usize },
    #[error("line {line}: connection number must be 1 to {max}")]
    BadConnection { line: usize, max: usize },
    #[error("line {line}: unknown directive `@{name}`")]
    UnknownDirective { line: usize, name: String },
    #[error("line {line}: `@{name}` needs {what}")]
    DirectiveArgs {
        line: usize,
        name: &'static str,
        what: &'static str,
    },
    #[error("line {line}: bad pattern: {reason}")]
    Pattern { line: usize, reason: &'static str },
    #[error("line {line}: `S: ...` must be followed by an `S:` pattern on the same connection")]
    DanglingSkip { line: usize },
    #[error("script has {0} lines; at most {MAX_LINES} are allowed")]
    TooLong(usize),
}

/// Connections one script may use.
pub const MAX_CONNECTIONS: usize = 64;
/// Longest `@sleep`, in milliseconds.
pub const MAX_SLEEP_MS: u64 = 10_000;
/// Lines one script may have.
pub const MAX_LINES: usize = 100_000;

/// Parses a script. Lines end with LF or CRLF.
pub fn parse(text: &str) -> Result<Script, ParseError> {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() > MAX_LINES {
        return Err(ParseError::TooLong(lines.len()));
    }
    let mut script = Script {
        protocol: None,
        vars: BTreeMap::new(),
        offers: Vec::new(),
        steps: Vec::new(),
    };
    for (i, raw) in lines.iter().enumerate() {
        let line = i + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix('@') {
            match directive(rest, line)? {
                Directive::Protocol(p) => script.protocol = Some(p),
                Directive::Var(k, v) => {
                    script.vars.insert(k, v);
                }
                Directive::Close(conn) => script.steps.push(Step::Close { conn, line }),
                Directive::Closed(conn) => script.steps.push(Step::ExpectClosed { conn, line }),
                Directive::Sleep(millis) => script.steps.push(Step::Sleep { millis, line }),
                Directive::Distinct(names) => script.steps.push(Step::Distinct { names, line }),
                Directive::Offer(name) => script.offers.push(name),
            }
            continue;
        }
        let (kind, conn, body) = split_prefix(trimmed, line)?;
        match kind {
            Line::Client => script.steps.push(Step::Send {
                conn,
                text: body.to_string(),
                line,
            }),
            Line::Server if body.trim() == "..." => script.steps.push(Step::Skip { conn, line }),
            Line::Server => {
                let pattern =
                    Pattern::parse(body).map_err(|reason| ParseError::Pattern { line, reason })?;
                script.steps.push(Step::Expect {
                    conn,
                    pattern,
                    line,
                });
            }
        }
    }
    check_skips(&script.steps)?;
    Ok(script)
}

fn check_skips(steps: &[Step]) -> Result<(), ParseError> {
    for (i, step) in steps.iter().enumerate() {
        if let Step::Skip { conn, line } = step {
            let next_on_conn = steps[i + 1..].iter().find(|s| s.conn() == *conn);
            if !matches!(next_on_conn, Some(Step::Expect { .. })) {
                return Err(ParseError::DanglingSkip { line: *line });
            }
        }
    }
    Ok(())
}

/// `C:` `S:` `C2:` `S12:` followed by one optional space.
fn split_prefix(text: &str, line: usize) -> Result<(Line, usize, &str), ParseError> {
    let kind = match text.as_bytes().first() {
        Some(b'C') => Line::Client,
        Some(b'S') => Line::Server,
        _ => return Err(ParseError::UnknownLine { line }),
    };
    let rest = &text[1..];
    let Some(colon) = rest.find(':') else {
        return Err(ParseError::UnknownLine { line });
    };
    let digits = &rest[..colon];
    let conn = if digits.is_empty() {
        1
    } else if digits.bytes().all(|b| b.is_ascii_digit()) && digits.len() <= 3 {
        digits.parse::<usize>().unwrap_or(0)
    } else {
        return Err(ParseError::UnknownLine { line });
    };
    if conn == 0 || conn > MAX_CONNECTIONS {
        return Err(ParseError::BadConnection {
            line,
            max: MAX_CONNECTIONS,
        });
    }
    let body = &rest[colon + 1..];
    Ok((kind, conn, body.strip_prefix(' ').unwrap_or(body)))
}

fn directive(text: &str, line: usize) -> Result<Directive, ParseError> {
    let mut words = text.split_whitespace();
    let name = words.next().unwrap_or_default();
    let conn_arg = |words: &mut std::str::SplitWhitespace, name: &'static str| {
        let n = match words.next() {
            None => 1,
            Some(w) => w.parse::<usize>().map_err(|_| ParseError::DirectiveArgs {
                line,
                name,
                what: "a connection number",
            })?,
        };
        if n == 0 || n > MAX_CONNECTIONS {
            return Err(ParseError::BadConnection {
                line,
                max: MAX_CONNECTIONS,
            });
        }
        Ok(n)
    };
    match name {
        "protocol" => match words.next().and_then(Protocol::parse) {
            Some(p) => Ok(Directive::Protocol(p)),
            None => Err(ParseError::DirectiveArgs {
                line,
                name: "protocol",
                what: "a protocol name (imap, pop3)",
            }),
        },
        "var" => {
            let key = words.next();
            let rest: Vec<&str> = words.collect();
            match key {
                Some(k) if is_name(k) => Ok(Directive::Var(k.to_string(), rest.join(" "))),
                _ => Err(ParseError::DirectiveArgs {
                    line,
                    name: "var",
                    what: "a name ([A-Za-z_][A-Za-z0-9_]*) and a value",
                }),
            }
        }
        "close" => Ok(Directive::Close(conn_arg(&mut words, "close")?)),
        "offer" => match words.next() {
            Some(w) if crate::profile::OFFER_NAMES.contains(&w) => {
                Ok(Directive::Offer(w.to_string()))
            }
            _ => Err(ParseError::DirectiveArgs {
                line,
                name: "offer",
                what: "an optional feature (unauthenticate, append-limit)",
            }),
        },
        "sleep" => match words.next().and_then(|w| w.parse::<u64>().ok()) {
            Some(ms) if ms <= MAX_SLEEP_MS => Ok(Directive::Sleep(ms)),
            _ => Err(ParseError::DirectiveArgs {
                line,
                name: "sleep",
                what: "milliseconds, at most 10000",
            }),
        },
        "closed" => Ok(Directive::Closed(conn_arg(&mut words, "closed")?)),
        "distinct" => {
            let names: Vec<&str> = words.collect();
            if names.len() >= 2 && names.iter().all(|n| is_name(n)) {
                Ok(Directive::Distinct(
                    names.into_iter().map(String::from).collect(),
                ))
            } else {
                Err(ParseError::DirectiveArgs {
                    line,
                    name: "distinct",
                    what: "two or more names of captures or variables",
                })
            }
        }
        other => Err(ParseError::UnknownDirective {
            line,
            name: other.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_connections_directives_and_skips() {
        let s = parse(
            "# hi\n@protocol IMAP\n@var user alice\n\nS: * OK $*\nC: a1 LOGIN $user x\nS: ...\nS: a1 OK $*\nC2: b1 NOOP\n@close 2\n@closed\n",
        )
        .unwrap();
        assert_eq!(s.protocol, Some(Protocol::Imap));
        assert_eq!(s.vars["user"], "alice");
        assert_eq!(s.steps.len(), 7);
        assert!(
            matches!(&s.steps[1], Step::Send { conn: 1, text, line: 6 } if text == "a1 LOGIN $user x")
        );
        assert!(matches!(s.steps[2], Step::Skip { conn: 1, .. }));
        assert!(matches!(&s.steps[4], Step::Send { conn: 2, .. }));
        assert!(matches!(s.steps[5], Step::Close { conn: 2, .. }));
        assert!(matches!(s.steps[6], Step::ExpectClosed { conn: 1, .. }));
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(parse("X: nope"), Err(ParseError::UnknownLine { line: 1 }));
        assert_eq!(
            parse("\nC0: x"),
            Err(ParseError::BadConnection {
                line: 2,
                max: MAX_CONNECTIONS
            })
        );
        assert_eq!(parse("C99999: x"), Err(ParseError::UnknownLine { line: 1 }));
        assert!(matches!(
            parse("@frob"),
            Err(ParseError::UnknownDirective { line: 1, .. })
        ));
        assert!(matches!(
            parse("@var 9x y"),
            Err(ParseError::DirectiveArgs { .. })
        ));
        assert_eq!(
            parse("S: ...\nC: x"),
            Err(ParseError::DanglingSkip { line: 1 })
        );
        assert!(matches!(
            parse("S: a $"),
            Err(ParseError::Pattern { line: 1, .. })
        ));
    }

    #[test]
    fn offer_names_a_known_optional_feature() {
        let s = parse("@offer unauthenticate\n@offer append-limit\nS: * OK $*\n").unwrap();
        assert_eq!(s.offers, ["unauthenticate", "append-limit"]);
        let mut profile = crate::Profile::default_profile();
        assert!(s.offers.iter().all(|o| profile.offer(o)));
        assert!(profile.imap.unauthenticate && profile.imap.append_limit);
        for bad in ["@offer\n", "@offer STARTTLS\n", "@offer Unauthenticate\n"] {
            assert!(
                matches!(
                    parse(bad),
                    Err(ParseError::DirectiveArgs { name: "offer", .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn distinct_takes_two_or_more_names() {
        let s = parse("S: * $a $b\n@distinct a b\n").unwrap();
        assert_eq!(
            s.steps.last(),
            Some(&Step::Distinct {
                names: vec!["a".into(), "b".into()],
                line: 2
            })
        );
        for bad in ["@distinct a\n", "@distinct\n", "@distinct a 1b\n"] {
            assert!(
                matches!(
                    parse(bad),
                    Err(ParseError::DirectiveArgs {
                        name: "distinct",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }
}
