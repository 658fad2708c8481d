use std::collections::BTreeMap;

/// One expected server line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pub pieces: Vec<Piece>,
    /// The pattern as written, for reports.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    /// `$*`: any text, possibly empty.
    Any,
    /// `$name`: captures (first use) or compares (later uses).
    Capture(String),
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, &'static str> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((_, c)) = chars.next() {
            if c != '$' {
                literal.push(c);
                continue;
            }
            match chars.peek().map(|&(_, c)| c) {
                Some('$') => {
                    chars.next();
                    literal.push('$');
                }
                Some('*') => {
                    chars.next();
                    flush(&mut literal, &mut pieces);
                    if matches!(pieces.last(), Some(Piece::Any | Piece::Capture(_))) {
                        return Err("two wildcards or captures in a row cannot be told apart");
                    }
                    pieces.push(Piece::Any);
                }
                Some('{') => {
                    // `${name}`: a capture whose end is marked, so text may follow it.
                    chars.next();
                    let mut name = String::new();
                    let mut closed = false;
                    for (_, c) in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        name.push(c);
                    }
                    if !closed || !is_name(&name) {
                        return Err("`${` must hold a name and end with `}`");
                    }
                    flush(&mut literal, &mut pieces);
                    if matches!(pieces.last(), Some(Piece::Any | Piece::Capture(_))) {
                        return Err("two wildcards or captures in a row cannot be told apart");
                    }
                    pieces.push(Piece::Capture(name));
                }
                Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                    let mut name = String::new();
                    while let Some(&(_, c)) = chars.peek() {
                        if c.is_ascii_alphanumeric() || c == '_' {
                            name.push(c);
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    flush(&mut literal, &mut pieces);
                    if matches!(pieces.last(), Some(Piece::Any | Piece::Capture(_))) {
                        return Err("two wildcards or captures in a row cannot be told apart");
                    }
                    pieces.push(Piece::Capture(name));
                }
                _ => return Err("`$` must be followed by `*`, `$` or a name"),
            }
        }
        flush(&mut literal, &mut pieces);
        Ok(Pattern {
            pieces,
            source: text.to_string(),
        })
    }

    /// Matches `line` (without CRLF). New captures go into `captures` only on a match.
    pub fn matches(&self, line: &str, captures: &mut BTreeMap<String, String>) -> bool {
        let mut found = BTreeMap::new();
        let mut budget = MATCH_BUDGET;
        if match_from(&self.pieces, line, captures, &mut found, &mut budget) {
            captures.extend(found);
            true
        } else {
            false
        }
    }
}

/// A name of a variable or capture (`$name`, `${name}`, `@var name`): a letter or `_`,
/// then letters, digits and `_`.
pub(crate) fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn flush(literal: &mut String, pieces: &mut Vec<Piece>) {
    if !literal.is_empty() {
        pieces.push(Piece::Text(std::mem::take(literal)));
    }
}

/// Steps one match may take; a pathological pattern (many wildcards against a long line)
/// gives up and counts as no match instead of running for ever.
const MATCH_BUDGET: usize = 200_000;

/// Backtracking match; patterns never hold two variable pieces in a row, so each variable
/// piece is resolved by the position of the literal after it (bounded by the line length).
fn match_from(
    pieces: &[Piece],
    line: &str,
    known: &BTreeMap<String, String>,
    found: &mut BTreeMap<String, String>,
    budget: &mut usize,
) -> bool {
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    let Some((first, rest)) = pieces.split_first() else {
        return line.is_empty();
    };
    match first {
        Piece::Text(t) => line
            .strip_prefix(t.as_str())
            .is_some_and(|tail| match_from(rest, tail, known, found, budget)),
        Piece::Capture(name) if known.contains_key(name) || found.contains_key(name) => {
            let value = known
                .get(name)
                .or_else(|| found.get(name))
                .cloned()
                .unwrap_or_default();
            line.strip_prefix(value.as_str())
                .is_some_and(|tail| match_from(rest, tail, known, found, budget))
        }
        Piece::Any | Piece::Capture(_) => {
            let min = usize::from(matches!(first, Piece::Capture(_)));
            // Captures stop at white space so `$n EXISTS` takes just the number.
            for (end, _) in line
                .char_indices()
                .chain(std::iter::once((line.len(), ' ')))
            {
                if end < min {
                    continue;
                }
                let candidate = &line[..end];
                if matches!(first, Piece::Capture(_)) && candidate.contains(char::is_whitespace) {
                    break;
                }
                let mut trial = found.clone();
                if let Piece::Capture(name) = first {
                    trial.insert(name.clone(), candidate.to_string());
                }
                if match_from(rest, &line[end..], known, &mut trial, budget) {
                    *found = trial;
                    return true;
                }
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, line: &str) -> Option<BTreeMap<String, String>> {
        let mut caps = BTreeMap::new();
        Pattern::parse(p)
            .unwrap()
            .matches(line, &mut caps)
            .then_some(caps)
    }

    #[test]
    fn literal_wildcard_and_capture() {
        assert!(m("* OK $*", "* OK IMAP4rev1 ready").is_some());
        assert!(
            m("* OK $*", "* OK").is_none(),
            "the space before $* is literal"
        );
        assert!(m("* OK $*", "* NO x").is_none());
        let caps = m("* $n EXISTS", "* 172 EXISTS").unwrap();
        assert_eq!(caps["n"], "172");
        assert!(m("* $n EXISTS", "* 1 2 EXISTS").is_none());
        assert!(m("a $$5", "a $5").is_some());
        assert!(m("+OK $*", "+OK").is_none());
        assert!(m("+OK$*", "+OK").is_some());
        let caps = m(
            "* LIST (x) \"${d}\" Work${d}2024",
            "* LIST (x) \".\" Work.2024",
        )
        .unwrap();
        assert_eq!(caps["d"], ".");
        assert!(m(
            "* LIST (x) \"${d}\" Work${d}2024",
            "* LIST (x) \".\" Work/2024"
        )
        .is_none());
        assert!(Pattern::parse("a ${d").is_err());
        assert!(Pattern::parse("a ${9x}").is_err());
    }

    #[test]
    fn a_capture_compares_on_later_use() {
        let p1 = Pattern::parse("* OK [UIDVALIDITY $v] $*").unwrap();
        let p2 = Pattern::parse("* STATUS INBOX (UIDVALIDITY $v)").unwrap();
        let mut caps = BTreeMap::new();
        assert!(p1.matches("* OK [UIDVALIDITY 42] UIDs valid", &mut caps));
        assert!(!p2.matches("* STATUS INBOX (UIDVALIDITY 43)", &mut caps));
        assert!(p2.matches("* STATUS INBOX (UIDVALIDITY 42)", &mut caps));
    }

    #[test]
    fn pathological_patterns_end_quickly() {
        let p = "$*a".repeat(20);
        let line = "a".repeat(5000) + "b";
        assert!(m(&p, &line).is_none());
    }

    #[test]
    fn ambiguous_patterns_are_refused() {
        assert!(Pattern::parse("$*$*").is_err());
        assert!(Pattern::parse("$a$b").is_err());
        assert!(Pattern::parse("a $").is_err());
        assert!(Pattern::parse("a $1").is_err());
    }
}
