#![no_main]
//! libFuzzer entry for the `unflag_proof` target (fuzz/src): panics only on a bug.

libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_fuzz::unflag_proof(data));
