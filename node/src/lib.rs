//! keel-node: the validator node above the runtime and consensus. So far: the mempool
//! (admission, per-sender nonce queues, a global bound with eviction, re-validation,
//! selection for proposals), key files, genesis, config.toml and `keel init`.

pub mod config;
pub mod genesis;
pub mod init;
pub mod keys;
pub mod mempool;

pub use mempool::{AdmitError, Mempool, MempoolConfig};
