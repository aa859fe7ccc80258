//! The integration tests of `tests/` in one binary: each module below was its own test binary, and
//! each of those was compiled and linked on its own (issue 19, build time).

#[path = "consensus_sim.rs"]
mod consensus_sim;
#[path = "crash.rs"]
mod crash;
