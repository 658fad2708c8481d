//! Replays every file under `corpus/fuzz/<target>/` through its fuzz target on stable
//! Rust, so every crash once found (and every seed) stays checked by `cargo test`.

use std::path::Path;

use harness_core::fuzzing::{run, TARGETS};

#[test]
fn every_corpus_file_replays_without_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpus/fuzz");
    let mut replayed = 0usize;
    let dirs = std::fs::read_dir(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    for dir in dirs {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let target = dir.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            TARGETS.iter().any(|(name, _)| *name == target),
            "corpus/fuzz/{target} names no fuzz target"
        );
        for file in std::fs::read_dir(&dir).unwrap() {
            let file = file.unwrap().path();
            if file.is_file() {
                let data = std::fs::read(&file).unwrap();
                assert!(run(&target, &data));
                replayed += 1;
            }
        }
    }
    assert!(
        replayed > 0,
        "no corpus files found under {}",
        root.display()
    );
    eprintln!("replayed {replayed} corpus files");
}

#[test]
fn every_target_survives_empty_and_tiny_inputs() {
    for (name, f) in TARGETS {
        for data in [&b""[..], b"\r\n", b"\0", b"A1 LOGIN a b\r\n", b"USER x\r\n"] {
            f(data);
        }
        assert!(run(name, b""));
    }
    assert!(!run("no_such_target", b""));
}

#[test]
fn every_target_has_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpus/fuzz");
    for (name, _) in TARGETS {
        let files = std::fs::read_dir(root.join(name))
            .map(|d| d.filter_map(Result::ok).count())
            .unwrap_or(0);
        assert!(files > 0, "corpus/fuzz/{name} has no seeds");
    }
}
