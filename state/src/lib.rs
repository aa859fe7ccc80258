//! keel-state: the node's RocksDB store — versioned key-value state under a Jellyfish Merkle
//! tree (blake3) that yields a root per block and proofs, plus blocks, receipts and metadata,
//! each block committed in one atomic WriteBatch — and the overlay/StateView layer the
//! execution environments read and write through.

#![forbid(unsafe_code)]

mod entry;
mod error;
mod expiry;
pub mod fold;
mod overlay;
mod prune;
mod schema;
mod store;
mod tree;

pub use entry::{encode_live, Entry, ENTRY_OVERHEAD_BYTES};
pub use error::StateError;
pub use expiry::{ArchiveBatch, ExpiryCounts, ProofUnavailable};
pub use overlay::{live_value, Checkpoint, Overlay, StateDiff, StateView, StateViewExt};
pub use prune::PruneOutcome;
pub use store::{CommitInfo, CommitRequest, Store, StoreOptions, StoreView};
