//! Network fuzzing of a live server, the sans-IO half: the mutation engine that turns
//! the client lines of transcripts into cases ([`mutate`]), the protocol knowledge that
//! tells a hang, a malformed reply and an expected close apart ([`check`]), and the
//! reproducer each finding is saved as (a transcript script); [`dcerpc`] does the same for
//! DCE/RPC servers with mutated PDUs. The sockets are the lab's.

pub mod check;
pub mod dcerpc;
pub mod mutate;
pub mod rpch;

use crate::Protocol;
pub use check::{Malformed, ReplyCheck};
pub use mutate::{CaseLine, MutateError, Mutated, MutationKind, Mutator, SeedSession, ALL_KINDS};

/// A `C:` line body for these bytes: printable ASCII as is, `$` as `$$`, anything else
/// as a `${hh}` hex escape (which `script::play` turns back into the bytes).
pub fn script_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut hex: Vec<String> = Vec::new();
    let flush = |hex: &mut Vec<String>, out: &mut String| {
        if !hex.is_empty() {
            out.push_str(&format!("${{{}}}", hex.join(" ")));
            hex.clear();
        }
    };
    for &b in bytes {
        if (0x20..0x7f).contains(&b) {
            flush(&mut hex, &mut out);
            if b == b'$' {
                out.push_str("$$");
            } else {
                out.push(b as char);
            }
        } else {
            hex.push(format!("{b:02x}"));
        }
    }
    flush(&mut hex, &mut out);
    out
}

/// A reproducer: a transcript script that opens one connection, takes the greeting,
/// sends the case's bytes exactly (a line sent without CRLF is joined to the next one)
/// and then asks whether the server is still there. `header` lines become comments.
pub fn reproducer(proto: Protocol, header: &[String], lines: &[CaseLine]) -> String {
    let mut out = String::new();
    for h in header {
        for l in h.lines() {
            out.push_str("# ");
            out.push_str(l);
            out.push('\n');
        }
    }
    out.push_str(&format!("@protocol {}\nS: $*\n", proto.keyword()));
    let mut pending: Vec<u8> = Vec::new();
    for line in lines {
        pending.extend_from_slice(&line.bytes);
        if line.crlf {
            out.push_str(&format!("C: {}\n", script_text(&pending)));
            pending.clear();
        }
    }
    if !pending.is_empty() {
        out.push_str("# the case ended with these bytes and no CRLF; the script adds one\n");
        out.push_str(&format!("C: {}\n", script_text(&pending)));
    }
    out.push_str("# a server that survived answers this\n");
    match proto {
        Protocol::Imap => out.push_str("C: zz9 NOOP\nS: ...\nS: zz9 $*\n"),
        Protocol::Pop3 => out.push_str("C: NOOP\nS: ...\nS: $*\n"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::{parse, Step};
    use crate::Protocol;

    #[test]
    fn reproducers_parse_and_keep_the_bytes() {
        let lines = vec![
            CaseLine {
                bytes: b"a1 LOGIN $x \xff\r\n".to_vec(),
                crlf: true,
            },
            CaseLine {
                bytes: b"a2 NO".to_vec(),
                crlf: false,
            },
            CaseLine {
                bytes: b"OP".to_vec(),
                crlf: true,
            },
        ];
        let text = reproducer(Protocol::Imap, &["found: reset".into()], &lines);
        assert!(
            text.starts_with("# found: reset\n@protocol imap\nS: $*\n"),
            "{text}"
        );
        assert!(
            text.contains("C: a1 LOGIN $$x ${ff 0d 0a}\nC: a2 NOOP\n"),
            "{text}"
        );
        let script = parse(&text).unwrap();
        let sends = script
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Send { .. }))
            .count();
        assert_eq!(sends, 3);
    }
}
