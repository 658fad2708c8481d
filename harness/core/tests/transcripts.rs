//! Every transcript in `corpus/sessions/<proto>/*.txt` plays in-process against the mock
//! for its protocol (fresh default lab, fixed seeds) and must pass; what happened is
//! snapshotted into `snapshots/` (normalised).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use harness_core::scenario::{endpoint, normalise};
use harness_core::script::{self, InProcess};
use harness_core::Protocol;
use harness_core::{LabFile, Profile};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn transcripts() -> Vec<(Protocol, PathBuf)> {
    let mut out = Vec::new();
    for proto in Protocol::ALL {
        let dir = root().join("corpus/sessions").join(proto.keyword());
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "txt") {
                out.push((proto, path));
            }
        }
    }
    out.sort();
    assert!(out.len() >= 2, "expected transcripts for both protocols");
    out
}

#[test]
fn every_transcript_passes_in_process_and_matches_its_snapshot() {
    let mut failed = Vec::new();
    for (proto, path) in transcripts() {
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed = script::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            parsed.protocol,
            Some(proto),
            "{}: @protocol",
            path.display()
        );
        let world = Arc::new(LabFile::default_lab().build().unwrap());
        let mut profile = Profile::default_profile();
        for name in &parsed.offers {
            assert!(profile.offer(name), "{}: @offer {name}", path.display());
        }
        let profile = Arc::new(profile);
        let mut transport = InProcess::new(|n| endpoint(&world, &profile, proto, n as u64));
        let report = script::play(&parsed, &Default::default(), &mut transport)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let name = format!("session__{}__{stem}", proto.keyword());
        let body: String = report
            .transcript()
            .lines()
            .map(|l| normalise(l) + "\n")
            .collect();
        if !report.passed() {
            failed.push(format!("{name}:\n{body}"));
        }
        insta::with_settings!({
            snapshot_path => root().join("snapshots"),
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_snapshot!(name, body);
        });
    }
    assert!(
        failed.is_empty(),
        "transcripts failed:\n{}",
        failed.join("\n")
    );
}
