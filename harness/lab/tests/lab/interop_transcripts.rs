//! The transcripts of `corpus/sessions` played against real servers on loopback (Dovecot
//! and Cyrus, started by the project's own `scripts/peers/NAME/start.sh`, stopped by PID).
//! Every difference from the mock is reported; a test fails on one not listed in
//! `corpus/known-deviations.toml` and on a listed one that no longer happens.

use crate::common;

use common::peers;

use std::time::Duration;

use harness::tools::play::SocketTransport;
use harness_core::script::{self, Verdict};

#[derive(Debug, serde::Deserialize)]
struct Deviations {
    deviation: Vec<Deviation>,
}

#[derive(Debug, serde::Deserialize)]
struct Deviation {
    peer: String,
    script: String,
    line: usize,
    got: String,
    reason: String,
}

#[test]
fn transcripts_against_dovecot_differ_only_where_listed() {
    differ_only_where_listed("dovecot");
}

#[test]
fn transcripts_against_cyrus_differ_only_where_listed() {
    differ_only_where_listed("cyrus");
}

fn differ_only_where_listed(peer: &str) {
    let (imap, pop3) = (peers::free_port(), peers::free_port());
    // Stopped by PID when the guard drops; skipped (or failed under CI) if not installed.
    // The transcripts check what a server says, not how long it holds back a refusal.
    let env: &[(&str, &str)] = match peer {
        "dovecot" => &[("DOVECOT_NO_AUTH_DELAY", "1")],
        _ => &[],
    };
    let Some(_server) = peers::try_start_with_env(peer, &[imap.to_string(), pop3.to_string()], env)
    else {
        return;
    };

    let listed: Deviations = toml::from_str(
        &std::fs::read_to_string(peers::project_root().join("corpus/known-deviations.toml"))
            .unwrap(),
    )
    .unwrap();
    let listed: Vec<&Deviation> = listed.deviation.iter().filter(|d| d.peer == peer).collect();
    for d in &listed {
        assert!(
            !d.reason.is_empty(),
            "{}: a deviation needs a reason",
            d.script
        );
    }

    let mut seen = Vec::new();
    let mut report = String::new();
    for (proto, port) in [("imap", imap), ("pop3", pop3)] {
        for file in common::transcripts(proto) {
            let name = format!("{proto}/{}", file.file_name().unwrap().to_string_lossy());
            let parsed = script::parse(&std::fs::read_to_string(&file).unwrap()).unwrap();
            // Servers delay their answer after a failed login (Dovecot: 2 s).
            let mut transport =
                SocketTransport::new(([127, 0, 0, 1], port).into(), Duration::from_secs(8));
            let result = script::play(&parsed, &Default::default(), &mut transport)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            match &result.verdict {
                Verdict::Passed => report.push_str(&format!("same     {name}\n")),
                Verdict::Failed {
                    line,
                    expected,
                    got,
                } => {
                    report.push_str(&format!(
                        "differs  {name} line {line}: expected {expected:?}, {peer} sent {got:?}\n"
                    ));
                    seen.push((name, *line, got.clone()));
                }
            }
        }
    }
    eprintln!("{peer} conformance report:\n{report}");
    let unlisted: Vec<_> = seen
        .iter()
        .filter(|(s, l, g)| {
            !listed
                .iter()
                .any(|d| &d.script == s && d.line == *l && &d.got == g)
        })
        .collect();
    let gone: Vec<_> = listed
        .iter()
        .filter(|d| {
            !seen
                .iter()
                .any(|(s, l, g)| &d.script == s && d.line == *l && &d.got == g)
        })
        .collect();
    assert!(
        unlisted.is_empty(),
        "differences not in corpus/known-deviations.toml: {unlisted:#?}\n{report}"
    );
    assert!(
        gone.is_empty(),
        "listed deviations that no longer happen: {gone:#?}\n{report}"
    );
}
