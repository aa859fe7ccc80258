//! keel-store: the node's RocksDB store — versioned key-value state under a Jellyfish Merkle
//! tree (blake3) that yields a root per block and proofs, plus blocks, receipts, metadata and
//! the expiry archive, each block committed in one atomic WriteBatch. It implements the
//! `keel_state::StateView` the execution environments read through; they never see RocksDB.

#![forbid(unsafe_code)]

mod clock;
mod expiry;
mod latest_cache;
mod prune;
mod schema;
mod snapshot;
mod storage_count;
mod store;
mod tree;

pub use expiry::{ExpiryCounts, ProofError, ProofUnavailable};
pub use latest_cache::{LATEST_CACHE_BYTES, LATEST_CACHE_ENTRIES};
pub use snapshot::{SnapshotError, SnapshotRestore, ANCESTOR_PREFIX};
pub use store::{CommitInfo, CommitRequest, Store, StoreOptions, StoreView};
pub use tree::{NODE_CACHE_BYTES, NODE_CACHE_ENTRIES, NODE_CACHE_LEVELS};

/// Commits `diff` as `height` with no block, receipts or archive (the crate's tests).
#[cfg(test)]
pub(crate) fn commit_diff(store: &Store, height: keel_types::Height, diff: &keel_state::StateDiff) {
    store
        .commit(CommitRequest {
            height,
            diff,
            block: None,
            receipts: &[],
            archive: &keel_state::ArchiveBatch::default(),
        })
        .expect("commit");
}
