//! Decode targets for the harness's own text formats: transcript scripts (and the
//! reproducers the network fuzzer writes as scripts) and scenario files.

/// Transcript scripts: any text parses to a script or a typed error; a parsed script
/// plays in-process against the IMAP mock without panicking (bounded by its length).
/// And the round trip through the encoder the network fuzzer writes its reproducers
/// with: the input's bytes, cut at CRLF into the lines of a case, written as a
/// reproducer, parse and play back to exactly those bytes.
pub fn script_decode(data: &[u8]) {
    reproducer_round_trip(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(script) = crate::script::parse(text) else {
        return;
    };
    if script.steps.len() > 200 {
        return;
    }
    let Some(world) = super::ops::default_world() else {
        return;
    };
    let world = std::sync::Arc::new(world);
    let profile = std::sync::Arc::new(crate::profile::Profile::default_profile());
    let protocol = script.protocol.unwrap_or(crate::Protocol::Imap);
    let mut transport = crate::script::InProcess::new(|n| {
        crate::scenario::endpoint(&world, &profile, protocol, n as u64)
    });
    let _ = crate::script::play(&script, &Default::default(), &mut transport);
}

/// Scenario files: any text parses to a validated scenario or a typed error; a parsed one
/// expands to at most `MAX_CASES` cases, each with its matching expectations.
pub fn scenario_decode(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(s) = crate::scenario::ScenarioFile::parse(text) {
        let cases = s.cases();
        assert!(cases.len() <= crate::scenario::MAX_CASES);
        for case in cases.iter().take(64) {
            let _ = s.expectations_for(case);
            let _ = case.id();
        }
    }
}

/// Lines of a case above which the round trip is skipped (a script holds at most
/// `script::MAX_LINES`; the network fuzzer's cases have tens).
const MAX_CASE_LINES: usize = 1_000;

fn reproducer_round_trip(data: &[u8]) {
    use crate::netfuzz::{reproducer, CaseLine};
    use crate::script::{ReadLine, ScriptTransport};
    use crate::Protocol;

    /// Records what is sent; every read answers with a line any pattern of a
    /// reproducer accepts.
    struct Recorder(Vec<u8>);
    impl ScriptTransport for Recorder {
        fn connect(&mut self, _conn: usize) -> Result<(), String> {
            Ok(())
        }
        fn send(&mut self, _conn: usize, bytes: &[u8]) -> Result<(), String> {
            self.0.extend_from_slice(bytes);
            Ok(())
        }
        fn read_line(&mut self, _conn: usize) -> Result<ReadLine, String> {
            Ok(ReadLine::Line(b"zz9 OK".to_vec()))
        }
        fn close(&mut self, _conn: usize) {}
    }

    let mut lines = Vec::new();
    let mut rest = data;
    while let Some(i) = memchr::memmem::find(rest, b"\r\n") {
        if lines.len() >= MAX_CASE_LINES {
            return;
        }
        let (line, tail) = rest.split_at(i);
        lines.push(CaseLine {
            bytes: line.to_vec(),
            crlf: true,
        });
        rest = tail.get(2..).unwrap_or_default();
    }
    if !rest.is_empty() {
        lines.push(CaseLine {
            bytes: rest.to_vec(),
            crlf: false,
        });
    }
    let text = reproducer(Protocol::Imap, &["round trip".into()], &lines);
    let script = match crate::script::parse(&text) {
        Ok(script) => script,
        Err(e) => panic!("a reproducer does not parse: {e}\n{text}"),
    };
    let mut sent = Recorder(Vec::with_capacity(data.len() + 16));
    let _ = crate::script::play(&script, &Default::default(), &mut sent);
    let mut expected = data.to_vec();
    if !rest.is_empty() {
        expected.extend_from_slice(b"\r\n");
    }
    expected.extend_from_slice(b"zz9 NOOP\r\n");
    assert!(
        sent.0 == expected,
        "the reproducer plays back other bytes: {:?} for {:?}",
        String::from_utf8_lossy(&sent.0),
        String::from_utf8_lossy(&expected)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_targets_reach_what_they_check() {
        // A transcript that passes, a scenario that expands.
        script_decode(b"@protocol pop3\nS: +OK$*\nC: USER alice\nS: +OK$*\nC: QUIT\nS: +OK$*\n");
        // bytes a reproducer must carry: `$`, braces, bare CR and LF, spaces at either
        // end, non-UTF-8, an empty line, and an end without CRLF
        script_decode(b" a1 LOGIN $x ${ff} \r\n\r\n#c\rd\ne\xff\r\n@var x\r\nS: y\r\ntail ");
        scenario_decode(include_bytes!("../../../../corpus/scenarios/spa-loop.toml"));
    }
}
