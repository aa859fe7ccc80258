//! keel-node: the validator node's own components above the runtime and consensus; for now
//! the mempool (admission, per-sender nonce queues, a global bound with eviction,
//! re-validation after each block, selection for proposals).

pub mod mempool;

pub use mempool::{AdmitError, Mempool, MempoolConfig};
