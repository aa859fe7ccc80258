//! A read-only count of what an engine holds in memory, for tests of its bounds (the
//! simulator's Byzantine campaign checks these against limits that do not depend on how many
//! messages an adversary sends).

use super::Engine;
use keel_types::View;
use std::collections::BTreeMap;

/// What an engine holds, counted (see [`Engine::retained`]): totals and the largest per view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retained {
    pub views: usize,
    pub blocks: usize,
    pub proposals: usize,
    pub votes: usize,
    pub certificates: usize,
    pub max_blocks_per_view: usize,
    pub max_proposals_per_view: usize,
    pub max_votes_per_view: usize,
    /// The current view minus the finalized tip's view: how far finalization lags.
    pub unfinalized_views: u64,
    /// Views below the finalized tip's view, and blocks other than the tip proposed in its
    /// view or earlier: what finalizing drops, and what the view window refuses afterwards.
    /// (Blocks of later views at or below the tip's height are junk a Byzantine leader may
    /// propose; they are bounded per view and counted above.)
    pub behind_tip: usize,
}

impl Engine {
    /// Counts of what this engine holds in memory (read-only, for tests of its bounds).
    pub fn retained(&self) -> Retained {
        let (_, tip_hash, tip_view) = self.tip;
        let mut blocks_per_view: BTreeMap<View, usize> = BTreeMap::new();
        let mut behind_tip = self.views.range(..tip_view).count();
        for (hash, block) in &self.blocks {
            *blocks_per_view.entry(block.header.view).or_default() += 1;
            behind_tip += usize::from(block.header.view <= tip_view && *hash != tip_hash);
        }
        let mut r = Retained {
            views: self.views.len(),
            blocks: self.blocks.len(),
            max_blocks_per_view: blocks_per_view.values().copied().max().unwrap_or(0),
            unfinalized_views: self.view.saturating_sub(tip_view),
            behind_tip,
            ..Retained::default()
        };
        for s in self.views.values() {
            let votes = s.notarizes.len() + s.finalizes.len() + s.nullifies.len();
            r.proposals += s.proposals.len();
            r.votes += votes;
            r.certificates += [&s.notarization, &s.nullification, &s.finalization]
                .into_iter()
                .flatten()
                .count();
            r.max_proposals_per_view = r.max_proposals_per_view.max(s.proposals.len());
            r.max_votes_per_view = r.max_votes_per_view.max(votes);
        }
        r
    }
}
