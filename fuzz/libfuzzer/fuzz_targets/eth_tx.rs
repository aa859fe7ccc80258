#![no_main]
//! libFuzzer entry for the `eth_tx` target (fuzz/src): panics only on a bug.

libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_fuzz::eth_tx(data));
