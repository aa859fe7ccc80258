//! The integration tests of `types/` in one binary: each module below was its own test binary, and
//! each of those was compiled and linked on its own (issue 19, build time).

#[path = "docs.rs"]
mod docs;
#[path = "encoding.rs"]
mod encoding;
#[path = "eth.rs"]
mod eth;
