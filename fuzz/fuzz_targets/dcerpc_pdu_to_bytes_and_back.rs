#![no_main]
// The logic and its invariants live in harness-core so `cargo test` replays the corpus.
libfuzzer_sys::fuzz_target!(|data: &[u8]| harness_core::fuzzing::dcerpc_ops::dcerpc_pdu_to_bytes_and_back(data));
