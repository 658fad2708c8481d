//! Every scenario case also holds over real sockets: a fresh lab per case, a front-end
//! listener where the topology names one, the driver's client over TCP.

use std::path::Path;

use harness_core::scenario::ScenarioFile;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_case_meets_its_expectations_over_sockets() {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../corpus/scenarios"
    ));
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut broken = Vec::new();
    let mut cases = 0;
    for file in files {
        let scenario = ScenarioFile::parse(&std::fs::read_to_string(&file).unwrap()).unwrap();
        for case in scenario.cases() {
            cases += 1;
            let outcome = harness::tools::scenario::run_case(&scenario, &case)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", case.id()));
            if !outcome.passed() {
                broken.push(outcome.render(&scenario));
            }
        }
    }
    assert!(cases >= 24, "{cases} cases");
    assert!(
        broken.is_empty(),
        "broken over sockets:\n{}",
        broken.join("\n")
    );
}
