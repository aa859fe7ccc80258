//! keel-node: the validator node above the runtime and consensus — the `keel` binary's
//! library: config, keys and genesis, the mempool, authenticated p2p, the consensus driver
//! (with execution ahead of finality), JSON-RPC, metrics, the client commands and devnet.

pub mod client;
pub mod config;
pub mod devnet;
pub mod driver;
pub mod genesis;
pub mod init;
pub mod keys;
pub mod load;
pub mod mempool;
pub mod metrics;
pub mod net;
pub mod pruner;
pub mod rpc;
pub mod run;
pub mod shared;

pub use mempool::{AdmitError, Mempool, MempoolConfig};
