//! keel-node: the validator process — config and keys, the driver that runs the application
//! core (keel-app) on its own thread with the vote-log file, p2p (keel-p2p) and the shared
//! mempool, JSON-RPC, metrics and the pruner thread. The `keel` binary is keel-cli.

pub mod activity;
pub mod admission;
pub mod config;
pub mod driver;
pub mod keys;
pub mod metrics;
pub mod pruner;
pub mod rpc;
pub mod run;
pub mod shared;
pub mod snapshot;
pub mod status_page;

pub use keel_app::mempool::{AdmitError, Mempool, MempoolConfig};
/// The application's genesis and mempool, where the node's modules and its users found them.
pub use keel_app::{genesis, mempool};
