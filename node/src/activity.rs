//! What this node has seen each validator do since it started, for `keel_getValidators` and
//! the status page: the last view it was heard voting in (and when), the blocks it proposed
//! that were finalized, and the views it led that finalized no block of its.
//!
//! Observations, not consensus: they come from the votes this node verified and the blocks
//! it finalized, so two nodes started at different times report different counts. Nothing
//! here reaches state or a hash.

use keel_types::{Epoch, PublicKey, View};

/// One validator, as this node saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// The highest view a vote of this validator was for.
    pub last_vote_view: View,
    /// Wall-clock milliseconds of its latest vote; `None` until one arrives.
    pub last_vote_ms: Option<u64>,
    /// Finalized blocks it proposed.
    pub proposed: u64,
    /// Views it led in which no block was finalized (it proposed nothing in time, or its
    /// block was not certified): between two finalized blocks of one epoch, every view in
    /// the gap is one its leader missed.
    pub missed: u64,
}

/// Every validator's [`Seen`], by index.
#[derive(Debug, Clone, Default)]
pub struct Activity {
    keys: Vec<PublicKey>,
    seen: Vec<Seen>,
    /// Epoch and view of the last block finalized while this node ran.
    last_finalized: Option<(Epoch, View)>,
}

impl Activity {
    /// `start_view`: the view of the finalized tip this node started from.
    pub fn new(keys: Vec<PublicKey>, start_view: View) -> Activity {
        let start = Seen {
            last_vote_view: start_view,
            ..Seen::default()
        };
        Activity {
            seen: vec![start; keys.len()],
            keys,
            last_finalized: None,
        }
    }

    pub fn seen(&self) -> &[Seen] {
        &self.seen
    }

    /// Validator `index` sent a vote for `view` over its own authenticated link. Counted
    /// before the engine checks it: a vote that arrives after its view's certificate formed
    /// is dropped unverified by the engine, yet says the validator is alive and voting. Only
    /// the validator itself can send on its link, so the worst a Byzantine one can do here
    /// is misreport its own liveness.
    pub fn voted(&mut self, index: u16, view: View, now_ms: u64) {
        if let Some(seen) = self.seen.get_mut(usize::from(index)) {
            if view > seen.last_vote_view {
                seen.last_vote_view = view;
            }
            seen.last_vote_ms = Some(now_ms);
        }
    }

    /// A block finalized at (`epoch`, `view`) by `proposer`, in height order. The views
    /// since the previous finalized block of the same epoch finalized nothing: their
    /// leaders missed them. Across an epoch change nothing is counted (the old epoch ends
    /// with empty suffix blocks that are never committed, whose views would look missed).
    pub fn finalized(&mut self, epoch: Epoch, view: View, proposer: &PublicKey) {
        if let Some(index) = self.keys.iter().position(|k| k == proposer) {
            self.seen[index].proposed += 1;
        }
        if let Some((last_epoch, last_view)) = self.last_finalized {
            if last_epoch == epoch && view > last_view {
                // A gap longer than the validator count charges every leader the same
                // number of whole rounds: count those at once, then the remainder.
                let n = self.keys.len() as u64;
                let gap = view - last_view - 1;
                if let Some(rounds) = gap.checked_div(n) {
                    for seen in &mut self.seen {
                        seen.missed += rounds;
                    }
                    for missed in (last_view + 1)..(last_view + 1 + gap % n) {
                        let leader = keel_consensus::leader_of(missed, self.keys.len());
                        self.seen[usize::from(leader)].missed += 1;
                    }
                }
            }
        }
        self.last_finalized = Some((epoch, view));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_types::SecretKey;

    fn keys(n: u8) -> Vec<PublicKey> {
        (0..n)
            .map(|i| SecretKey::from_seed([i + 1; 32]).public_key())
            .collect()
    }

    #[test]
    fn the_leaders_of_views_between_finalized_blocks_missed_them() {
        let keys = keys(4);
        let mut a = Activity::new(keys.clone(), 0);
        a.finalized(0, 5, &keys[1]);
        // Views 6 and 7 (leaders 2 and 3) finalized nothing; 8's leader (0) proposed.
        a.finalized(0, 8, &keys[0]);
        a.finalized(0, 9, &keys[1]);
        let missed: Vec<u64> = a.seen().iter().map(|s| s.missed).collect();
        let proposed: Vec<u64> = a.seen().iter().map(|s| s.proposed).collect();
        assert_eq!(missed, [0, 0, 1, 1]);
        assert_eq!(proposed, [1, 2, 0, 0]);
        // A gap of 9 views after view 9 (10..=18): two whole rounds, then view 18's leader.
        a.finalized(0, 19, &keys[3]);
        let missed: Vec<u64> = a.seen().iter().map(|s| s.missed).collect();
        let expected: Vec<u64> = (0..4u64)
            .map(|i| {
                [6u64, 7]
                    .iter()
                    .chain((10..=18).collect::<Vec<_>>().iter())
                    .filter(|&&v| v % 4 == i)
                    .count() as u64
            })
            .collect();
        assert_eq!(missed, expected);
    }

    #[test]
    fn an_epoch_change_or_the_first_block_counts_no_gap() {
        let keys = keys(4);
        let mut a = Activity::new(keys.clone(), 0);
        a.finalized(0, 40, &keys[0]);
        a.finalized(1, 47, &keys[3]);
        assert!(a.seen().iter().all(|s| s.missed == 0));
    }

    #[test]
    fn a_vote_is_stamped_with_when_it_arrived_and_an_unknown_index_is_ignored() {
        let mut a = Activity::new(keys(3), 2);
        a.voted(0, 4, 2_000);
        a.voted(1, 5, 3_000);
        // A late vote for an older view still says the validator is alive.
        a.voted(0, 3, 4_000);
        a.voted(7, 9, 5_000);
        let seen = a.seen();
        assert_eq!(
            (seen[0].last_vote_view, seen[0].last_vote_ms),
            (4, Some(4_000))
        );
        assert_eq!(
            (seen[1].last_vote_view, seen[1].last_vote_ms),
            (5, Some(3_000))
        );
        assert_eq!((seen[2].last_vote_view, seen[2].last_vote_ms), (2, None));
    }
}
