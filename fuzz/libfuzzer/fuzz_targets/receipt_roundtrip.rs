#![no_main]
//! libFuzzer entry for the `receipt_roundtrip` target (fuzz/src): panics only on a bug.

libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_fuzz::receipt_roundtrip(data));
