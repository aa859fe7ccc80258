#![no_main]
//! libFuzzer entry for the `block_roundtrip` target (fuzz/src): panics only on a bug.

libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_fuzz::block_roundtrip(data));
