//! keel-devtools: tools for developing keel itself — the load generator behind `keel-load`
//! and `devnet/load` (signed transfers at a target rate, finality latency, roots compared
//! across validators).

#![forbid(unsafe_code)]

pub mod load;
