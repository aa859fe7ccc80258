//! keel-cli: the `keel` command's client side — the JSON-RPC client and transaction
//! building behind `keel tx …` and `keel query …`, `keel init`, and the devnet launcher
//! behind `keel devnet` — and the binary that joins them to the validator (keel-node).

#![forbid(unsafe_code)]

pub mod abi;
pub mod banner;
pub mod client;
pub mod devnet;
pub mod init;
pub mod policy;
pub mod validator;
