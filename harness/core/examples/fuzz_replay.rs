//! Replays fuzz inputs through a target's entry point on stable Rust, for profiling and
//! for comparing the speed of two versions on the same corpus:
//!
//! ```sh
//! cargo run --release -p harness-core --example fuzz_replay -- TARGET DIR[,DIR...] [ROUNDS]
//! perf record -g target/release/examples/fuzz_replay imap_server_ops corpus/fuzz/imap_server_ops 100
//! ```
//!
//! Every file of the directories is run ROUNDS times (default 10); prints exec/s.

use std::process::ExitCode;
use std::time::Instant;

/// Rounds at most, whatever the command line asks.
const MAX_ROUNDS: usize = 100_000;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(target), Some(dirs)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: fuzz_replay TARGET DIR[,DIR...] [ROUNDS]");
        return ExitCode::from(2);
    };
    if !harness_core::fuzzing::TARGETS
        .iter()
        .any(|(name, _)| name == target)
    {
        eprintln!("no fuzz target {target}");
        return ExitCode::from(2);
    }
    let rounds = args
        .get(3)
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(10)
        .min(MAX_ROUNDS);
    let mut inputs = Vec::new();
    for dir in dirs.split(',') {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("{dir}: {e}");
                return ExitCode::from(2);
            }
        };
        for entry in entries.flatten() {
            if let Ok(data) = std::fs::read(entry.path()) {
                inputs.push(data);
            }
        }
    }
    let start = Instant::now();
    let mut execs = 0u64;
    for _ in 0..rounds {
        for data in &inputs {
            harness_core::fuzzing::run(target, data);
            execs += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    println!(
        "{target}: {} inputs, {execs} execs in {secs:.2} s = {:.0} exec/s",
        inputs.len(),
        execs as f64 / secs
    );
    ExitCode::SUCCESS
}
