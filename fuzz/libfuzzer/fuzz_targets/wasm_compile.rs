#![no_main]
//! libFuzzer entry for the `wasm_compile` target (fuzz/src): panics only on a bug.

libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_fuzz::wasm_compile(data));
