//! The integration tests of `fuzz/` in one binary: each module below was its own test binary, and
//! each of those was compiled and linked on its own (issue 19, build time).

#[path = "regressions.rs"]
mod regressions;
#[path = "smoke.rs"]
mod smoke;
