//! keel-state: the node's RocksDB store — versioned key-value state under a Jellyfish Merkle
//! tree (blake3) that yields a root per block and proofs, plus blocks, receipts and metadata,
//! each block committed in one atomic WriteBatch — and the overlay/StateView layer the
//! execution environments read and write through.

#![forbid(unsafe_code)]

mod error;
mod overlay;
mod schema;
mod store;
mod tree;

pub use error::StateError;
pub use overlay::{Checkpoint, Overlay, StateDiff, StateView, StateViewExt};
pub use store::{CommitInfo, CommitRequest, Store, StoreOptions, StoreView};
