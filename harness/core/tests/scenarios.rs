//! Every scenario case in `corpus/scenarios/` is played in-process and snapshotted into
//! `snapshots/` (one file per case), and every case must meet its expectations.

use std::path::{Path, PathBuf};

use harness_core::scenario::{run_case, ScenarioFile};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn scenario_files() -> Vec<PathBuf> {
    let dir = root().join("corpus/scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no scenarios in {}", dir.display());
    files
}

#[test]
fn every_scenario_case_meets_its_expectations_and_matches_its_snapshot() {
    let mut broken = Vec::new();
    let mut cases = 0;
    for file in scenario_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let scenario =
            ScenarioFile::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for case in scenario.cases() {
            cases += 1;
            let outcome = run_case(&scenario, &case, &harness_core::scenario::frontend_topology)
                .unwrap_or_else(|e| panic!("{}: {e}", case.id()));
            let text = outcome.render(&scenario);
            if !outcome.passed() {
                broken.push(format!("{}\n{text}", case.id()));
            }
            insta::with_settings!({
                snapshot_path => root().join("snapshots"),
                prepend_module_to_snapshot => false,
                omit_expression => true,
            }, {
                insta::assert_snapshot!(case.id(), text);
            });
        }
    }
    assert!(cases > 0);
    assert!(
        broken.is_empty(),
        "{} case(s) broke their expectations:\n{}",
        broken.len(),
        broken.join("\n")
    );
}
