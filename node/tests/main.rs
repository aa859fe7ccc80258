//! The integration tests of `node/` in one binary: each module below was its own test binary, and
//! each of those was compiled and linked on its own (issue 19, build time).

#[path = "mempool.rs"]
mod mempool;
#[path = "net_decode.rs"]
mod net_decode;
