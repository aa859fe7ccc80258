//! The integration tests of `cli/` in one binary: each module below was its own test binary, and
//! each of those was compiled and linked on its own (issue 19, build time).

#[path = "bootstrap.rs"]
mod bootstrap;
#[path = "cli.rs"]
mod cli;
mod common;
#[path = "devnet.rs"]
mod devnet;
#[path = "eth_rpc.rs"]
mod eth_rpc;
#[path = "expiry.rs"]
mod expiry;
#[path = "join_bench.rs"]
mod join_bench;
#[path = "policy.rs"]
mod policy;
#[path = "rotation.rs"]
mod rotation;
#[path = "sdk_tutorial.rs"]
mod sdk_tutorial;
#[path = "status_page.rs"]
mod status_page;
#[path = "validators.rs"]
mod validators;
