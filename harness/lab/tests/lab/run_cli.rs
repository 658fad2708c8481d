//! `harness run` as a user runs it: the matrix table, the JSON report, and the exit code
//! when a case breaks its expectation.

use std::path::Path;
use std::process::Command;

fn project_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn run_prints_the_matrix_writes_a_report_and_exits_zero() {
    let report = std::env::temp_dir().join(format!("harness-run-{}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .current_dir(project_root())
        .args(["run", "--report"])
        .arg(&report)
        .output()
        .expect("harness run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("spa-loop: SPA/NTLM prompt loop"),
        "{stdout}"
    );
    assert!(stdout.contains("protocol  topology"), "{stdout}");
    assert!(stdout.contains(" 0 broken"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["broken"], 0);
    assert!(json["cases"].as_u64().unwrap() >= 6);
    assert!(json["outcomes"][0]["case"]["params"].is_array());
    let _ = std::fs::remove_file(report);
}

#[test]
fn a_broken_expectation_is_printed_and_fails_the_run() {
    let dir = std::env::temp_dir().join(format!("harness-run-broken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("wrong.toml");
    // Claims basic authentication fails directly against the mock: it does not.
    std::fs::write(
        &file,
        "name = \"wrong\"\ntitle = \"a deliberately wrong expectation\"\n\
         [[param]]\nname = \"protocol\"\nvalues = [\"pop3\"]\n\
         [[param]]\nname = \"client\"\nvalues = [\"oe-basic\"]\n\
         [[expect]]\nstatus = \"failed\"\nbecause = \"this file is wrong on purpose\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["run"])
        .arg(&file)
        .output()
        .expect("harness run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL status is failed (got authenticated)"),
        "{stdout}"
    );
    assert!(stdout.contains("BROKEN"), "{stdout}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_scenario_with_an_unknown_parameter_value_is_refused_with_a_reason() {
    let dir = std::env::temp_dir().join(format!("harness-run-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "name = \"bad\"\ntitle = \"x\"\n[[param]]\nname = \"topology\"\nvalues = [\"exchange1999\"]\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["run"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown value \"exchange1999\""), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn run_over_sockets_gives_the_same_verdicts() {
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .current_dir(project_root())
        .args(["run", "--sockets"])
        .output()
        .expect("harness run --sockets");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" 0 broken"), "{stdout}");
    // The front-end's internals are traced only in-process.
    assert!(!stdout.contains("context-split"), "{stdout}");
    assert!(
        stdout.contains("IXP_E_SICILY_LOGON_FAILED (0x800CCC18)"),
        "{stdout}"
    );
}
