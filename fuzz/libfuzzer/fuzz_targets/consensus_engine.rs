#![no_main]
//! libFuzzer entry for the `consensus_engine` target (fuzz/src): panics only on a bug.

libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_fuzz::consensus_engine(data));
