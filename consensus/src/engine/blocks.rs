//! The engine's unfinalized blocks, bounded in bytes: a Byzantine leader may sign two
//! proposals in every view it leads within `max_views_ahead`, each up to the block bound,
//! and finality frees none of them when they claim far-future heights. Measured against real
//! processes (node/tests/devnet/byzantine.rs) that held ~930 MiB per honest validator.

use super::Engine;
use keel_types::{Block, Hash};

/// Encoded bytes of the unfinalized blocks one engine keeps: eight maximal blocks, far more
/// than the few views between a proposal and its finality that an honest chain needs. A
/// block refused or evicted here is not lost: a certificate naming it makes the engine fetch
/// it again (`BlockRequest`).
pub const MAX_PENDING_BLOCK_BYTES: usize = 128 * 1024 * 1024;

impl Engine {
    /// Keeps `block` (known by `hash`) within [`MAX_PENDING_BLOCK_BYTES`], making room by
    /// evicting the block of the highest view (then height, then hash) if that ranks above
    /// the new one: honest blocks near the current view outrank whatever a leader proposed
    /// far ahead, and views increase along every chain. The finalized tip is never evicted.
    /// Returns whether the block is held.
    pub(super) fn keep_block(&mut self, hash: Hash, block: Block) -> bool {
        if self.blocks.contains_key(&hash) {
            return true;
        }
        let size = borsh::object_length(&block).unwrap_or(usize::MAX);
        let rank = |b: &Block, h: Hash| (b.header.view, b.header.height, h);
        let new_rank = rank(&block, hash);
        let tip = self.tip.1;
        while self
            .block_bytes
            .values()
            .fold(size, |sum, b| sum.saturating_add(*b))
            > MAX_PENDING_BLOCK_BYTES
        {
            let highest = self
                .blocks
                .iter()
                .filter(|(h, _)| **h != tip)
                .map(|(h, b)| rank(b, *h))
                .max();
            match highest {
                Some(top) if top > new_rank => {
                    self.blocks.remove(&top.2);
                    self.block_bytes.remove(&top.2);
                }
                _ => return false,
            }
        }
        self.blocks.insert(hash, block);
        self.block_bytes.insert(hash, size);
        true
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
