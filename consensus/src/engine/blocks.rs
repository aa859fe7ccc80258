//! The engine's unfinalized blocks, bounded in bytes: a Byzantine leader may sign two
//! proposals in every view it leads within `max_views_ahead`, each up to the block bound,
//! and finality frees none of them when they claim far-future heights. Measured against real
//! processes (cli/tests/devnet/byzantine.rs) that held ~930 MiB per honest validator.

use super::Engine;
use keel_types::{Block, Hash, Height, View};

/// Encoded bytes of the unfinalized blocks one engine keeps: eight maximal blocks, far more
/// than the few views between a proposal and its finality that an honest chain needs. A
/// block refused or evicted here is not lost: a certificate naming it makes the engine fetch
/// it again (`BlockRequest`).
pub const MAX_PENDING_BLOCK_BYTES: usize = 128 * 1024 * 1024;

/// Where a block stands in line for eviction; the greatest goes first. `None`: never evicted.
type EvictionRank = Option<(u8, View, Height, Hash)>;

impl Engine {
    /// Keeps `block` (known by `hash`) within [`MAX_PENDING_BLOCK_BYTES`]. Blocks this engine
    /// needs are never evicted: the finalized tip, blocks a certificate names, the current
    /// view's first proposal and blocks this validator notarized in views not nullified.
    /// The rest make room in this order: blocks of past views (they can matter again only if
    /// a certificate names them, and a certificate for a missing block makes the engine fetch
    /// it), then blocks of later views, highest view first (honest blocks near the current
    /// view outrank whatever a leader proposed far ahead). A block this engine needs is kept
    /// even past the budget: only honest progress makes such blocks, one per view at most.
    /// Returns whether the block is held.
    pub(super) fn keep_block(&mut self, hash: Hash, block: Block) -> bool {
        if self.blocks.contains_key(&hash) {
            return true;
        }
        let size = borsh::object_length(&block).unwrap_or(usize::MAX);
        let new_rank = self.eviction_rank(&hash, &block);
        while self
            .block_bytes
            .values()
            .fold(size, |sum, b| sum.saturating_add(*b))
            > MAX_PENDING_BLOCK_BYTES
        {
            let first = self
                .blocks
                .iter()
                .filter_map(|(h, b)| self.eviction_rank(h, b))
                .max();
            match first {
                Some(top) if new_rank.is_none_or(|new| top > new) => {
                    self.blocks.remove(&top.3);
                    self.block_bytes.remove(&top.3);
                }
                _ if new_rank.is_none() => break,
                _ => return false,
            }
        }
        self.blocks.insert(hash, block);
        self.block_bytes.insert(hash, size);
        true
    }

    fn eviction_rank(&self, hash: &Hash, block: &Block) -> EvictionRank {
        let view = block.header.view;
        let state = self.views.get(&view);
        let notarized_by_me =
            state.is_some_and(|s| s.my_notarize == Some(*hash) && s.nullification.is_none());
        // Also a new block of the current view that would become its first proposal.
        let current_proposal =
            view == self.view && state.is_none_or(|s| s.proposal.is_none_or(|p| p == *hash));
        if *hash == self.tip.1
            || notarized_by_me
            || current_proposal
            || self.named_by_certificate(hash)
        {
            return None;
        }
        let past = u8::from(view < self.view);
        Some((past, view, block.header.height, *hash))
    }

    /// A block this validator voted for before a restart, read back from its store (the
    /// app keeps each block on disk before logging a vote for it: app/src/voted.rs). Taken
    /// only before `Input::Start`, only in this engine's epoch above the finalized tip, and
    /// only if a restored vote of this validator names it in its own view: the votes say it
    /// was verified then, and nothing else gets in this way. Returns whether it was taken.
    pub fn restore_voted(&mut self, block: Block) -> bool {
        let hash = block.hash();
        let view = block.header.view;
        let voted = self
            .views
            .get(&view)
            .is_some_and(|s| s.my_notarize == Some(hash) || s.my_finalize == Some(hash));
        if !voted
            || block.header.epoch != self.cfg.validators.epoch
            || block.header.height <= self.tip.0
            || view <= self.tip.2
        {
            return false;
        }
        if !self.keep_block(hash, block) {
            return false;
        }
        let state = self.view_mut(view);
        if state.proposal.is_none() {
            state.proposal = Some(hash);
            state.proposals.push(hash);
        }
        true
    }

    /// An unfinalized block this engine holds.
    pub fn block(&self, hash: &Hash) -> Option<&Block> {
        self.blocks.get(hash)
    }

    /// Whether this engine holds the block: the driver's block cache evicts first what the
    /// engine no longer holds.
    pub fn holds(&self, hash: &Hash) -> bool {
        self.blocks.contains_key(hash)
    }

    /// Bytes of the unfinalized blocks held (for the simulator's and the node's memory checks).
    pub fn pending_block_bytes(&self) -> usize {
        self.block_bytes.values().sum()
    }

    /// After `blocks` shrank (garbage collection): forget the sizes of the blocks gone.
    pub(super) fn forget_block_sizes(&mut self) {
        let blocks = &self.blocks;
        self.block_bytes.retain(|h, _| blocks.contains_key(h));
    }
}
