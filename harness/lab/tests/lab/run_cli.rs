//! `harness run` as a user runs it: the matrix table, the JSON report, and the exit code
//! when a case breaks its expectation.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn project_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// `harness run ARGS` from `dir`: the output, and its stdout as text.
fn harness_run(dir: &Path, args: &[&OsStr]) -> (Output, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .current_dir(dir)
        .arg("run")
        .args(args)
        .output()
        .expect("harness run");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, stdout)
}

/// `harness run ARGS` from the project root (where the scenarios are), which must succeed;
/// its stdout.
fn harness_run_in_root_succeeds(args: &[&OsStr]) -> String {
    let (out, stdout) = harness_run(project_root(), args);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `harness run FILE` on a scenario file with `text`, written to a directory of its own
/// (`harness-run-NAME-PID`, removed afterwards), from the package directory.
fn harness_run_scenario(name: &str, text: &str) -> (Output, String) {
    let dir = std::env::temp_dir().join(format!("harness-run-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file: PathBuf = dir.join(format!("{name}.toml"));
    std::fs::write(&file, text).unwrap();
    let ran = harness_run(Path::new(env!("CARGO_MANIFEST_DIR")), &[file.as_os_str()]);
    let _ = std::fs::remove_dir_all(dir);
    ran
}

#[test]
fn run_prints_the_matrix_writes_a_report_and_exits_zero() {
    let report = std::env::temp_dir().join(format!("harness-run-{}.json", std::process::id()));
    let stdout = harness_run_in_root_succeeds(&["--report".as_ref(), report.as_os_str()]);
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
    // Claims basic authentication fails directly against the mock: it does not.
    let (out, stdout) = harness_run_scenario(
        "wrong",
        "name = \"wrong\"\ntitle = \"a deliberately wrong expectation\"\n\
         [[param]]\nname = \"protocol\"\nvalues = [\"pop3\"]\n\
         [[param]]\nname = \"client\"\nvalues = [\"oe-basic\"]\n\
         [[expect]]\nstatus = \"failed\"\nbecause = \"this file is wrong on purpose\"\n",
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL status is failed (got authenticated)"),
        "{stdout}"
    );
    assert!(stdout.contains("BROKEN"), "{stdout}");
}

#[test]
fn a_scenario_with_an_unknown_parameter_value_is_refused_with_a_reason() {
    let (out, _) = harness_run_scenario(
        "bad",
        "name = \"bad\"\ntitle = \"x\"\n[[param]]\nname = \"topology\"\nvalues = [\"exchange1999\"]\n",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown value \"exchange1999\""), "{err}");
}

#[test]
fn run_over_sockets_gives_the_same_verdicts() {
    let stdout = harness_run_in_root_succeeds(&["--sockets".as_ref()]);
    assert!(stdout.contains(" 0 broken"), "{stdout}");
    // The front-end's internals are traced only in-process.
    assert!(!stdout.contains("context-split"), "{stdout}");
    assert!(
        stdout.contains("IXP_E_SICILY_LOGON_FAILED (0x800CCC18)"),
        "{stdout}"
    );
}
