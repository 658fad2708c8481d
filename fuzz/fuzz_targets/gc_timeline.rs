#![no_main]
// The logic and its invariants live in harness-core so `cargo test` replays the corpus.
libfuzzer_sys::fuzz_target!(|data: &[u8]| harness_core::fuzzing::gc_ops::gc_timeline(data));
