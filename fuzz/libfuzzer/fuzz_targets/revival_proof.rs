#![no_main]
//! libFuzzer entry for the `revival_proof` target (fuzz/src): panics only on a bug.

libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_fuzz::revival_proof(data));
