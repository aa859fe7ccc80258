#![no_main]
//! libFuzzer entry for the `p2p_preauth` target (fuzz/src): panics only on a bug.

libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_fuzz::p2p_preauth(data));
