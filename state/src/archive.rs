//! What a block's execution hands the store for the expiry archive (docs/expiry.md).

use keel_types::archive::{ArchiveNode, ArchivedLeaf};
use keel_types::fold::FoldedStub;

/// What a block appended to the expiry archive: the expired entries and the archive nodes
/// their leaves completed. Written only by nodes that keep the archive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveBatch {
    pub leaves: Vec<ArchivedLeaf>,
    pub nodes: Vec<ArchiveNode>,
    /// Fold pages the block wrote: (page index, its stubs sorted by key hash).
    pub folds: Vec<(u64, Vec<FoldedStub>)>,
    /// Revivals of folded entries in the block (counted in `ExpiryCounts::revived`).
    pub folded_revivals: u64,
}
