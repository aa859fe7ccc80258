//! The integration tests of `exec-wasm/` in one binary: each module below was its own test binary, and
//! each of those was compiled and linked on its own (issue 19, build time).

#[path = "reference_diff.rs"]
mod reference_diff;
#[path = "untrusted_modules.rs"]
mod untrusted_modules;
