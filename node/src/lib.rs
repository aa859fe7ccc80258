//! keel-node: the validator process above the runtime and consensus — config, keys and
//! genesis, the mempool, the consensus driver (with execution ahead of finality), JSON-RPC,
//! metrics and the pruner thread, over keel-p2p's network. The `keel` binary is keel-cli.

pub mod config;
pub mod driver;
pub mod genesis;
pub mod keys;
pub mod mempool;
pub mod metrics;

pub mod pruner;
pub mod rpc;
pub mod run;
pub mod shared;

pub use mempool::{AdmitError, Mempool, MempoolConfig};
