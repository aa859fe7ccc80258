//! What this node has seen each validator do since it started, for `keel_getValidators` and
//! the status page: the last view it was heard voting in (and when), the blocks it proposed
//! that were finalized, and the views it led that finalized no block of its.
//!
//! Observations, not consensus: they come from the votes this node verified and the blocks
//! it finalized, so two nodes started at different times report different counts. Nothing
//! here reaches state or a hash.

use keel_consensus::ValidatorSet;
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

/// Every validator's [`Seen`], by peer-table index (genesis validators first, then the
/// registered ones in the order this node learned them: the table only grows).
#[derive(Debug, Clone, Default)]
pub struct Activity {
    keys: Vec<PublicKey>,
    /// Each key's row.
    rows: std::collections::BTreeMap<PublicKey, usize>,
    seen: Vec<Seen>,
    /// The view new rows start from (the finalized tip's when this node started).
    start_view: View,
    /// The set voting now: who led the views no block was finalized in.
    set: Option<ValidatorSet>,
    /// Epoch and view of the last block finalized while this node ran.
    last_finalized: Option<(Epoch, View)>,
}

impl Activity {
    /// `keys`: the peer table; `start_view`: the view of the finalized tip this node started
    /// from.
    pub fn new(keys: Vec<PublicKey>, start_view: View) -> Activity {
        let mut activity = Activity {
            start_view,
            ..Activity::default()
        };
        activity.extend_table(&keys);
        activity
    }

    /// The peer table grew (validators registered): the new keys get rows.
    pub fn extend_table(&mut self, table: &[PublicKey]) {
        for key in table.iter().skip(self.keys.len()) {
            self.rows.entry(*key).or_insert(self.keys.len());
            self.keys.push(*key);
            self.seen.push(Seen {
                last_vote_view: self.start_view,
                ..Seen::default()
            });
        }
    }

    /// The set of the epoch now voting (its leaders are charged for missed views).
    pub fn set_validators(&mut self, set: ValidatorSet) {
        self.set = Some(set);
    }

    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    pub fn seen(&self) -> &[Seen] {
        &self.seen
    }

    /// Validator `index` (its peer-table index) sent a vote for `view` over its own
    /// authenticated link. Counted before the engine checks it: a vote that arrives after
    /// its view's certificate formed is dropped unverified by the engine, yet says the
    /// validator is alive and voting. Only the validator itself can send on its link, so
    /// the worst a Byzantine one can do here is misreport its own liveness.
    pub fn voted(&mut self, index: u16, view: View, now_ms: u64) {
        if let Some(seen) = self.seen.get_mut(usize::from(index)) {
            if view > seen.last_vote_view {
                seen.last_vote_view = view;
            }
            seen.last_vote_ms = Some(now_ms);
        }
    }

    /// [`Activity::voted`] by key (this validator's own votes, which the engine records).
    pub fn voted_by_key(&mut self, key: &PublicKey, view: View, now_ms: u64) {
        if let Some(row) = self.rows.get(key).and_then(|r| u16::try_from(*r).ok()) {
            self.voted(row, view, now_ms);
        }
    }

    /// A block finalized at (`epoch`, `view`) by `proposer`, in height order. The views
    /// since the previous finalized block of the same epoch finalized nothing: their
    /// leaders (by the epoch's set and its leader schedule) missed them. Across an epoch
    /// change nothing is counted (the old epoch ends with empty suffix blocks that are never
    /// committed, whose views would look missed), nor in an epoch whose set this node does
    /// not hold.
    pub fn finalized(&mut self, epoch: Epoch, view: View, proposer: &PublicKey) {
        if let Some(&row) = self.rows.get(proposer) {
            self.seen[row].proposed += 1;
        }
        let last = self.last_finalized.replace((epoch, view));
        let Some(set) = self.set.take() else {
            return;
        };
        if let Some((last_epoch, last_view)) = last {
            if last_epoch == epoch && set.epoch == epoch && view > last_view && !set.is_empty() {
                // A gap longer than the leaders' cycle charges every turn of it the same
                // number of whole cycles: count those at once, then the remainder.
                let cycle = match set.schedule.len() {
                    0 => set.len() as u64,
                    turns => turns as u64,
                };
                let gap = view - last_view - 1;
                let rounds = gap / cycle;
                if rounds > 0 {
                    for turn in 0..cycle {
                        self.charge(&set, set.leader(turn), rounds);
                    }
                }
                for missed in (last_view + 1)..(last_view + 1 + gap % cycle) {
                    self.charge(&set, set.leader(missed), 1);
                }
            }
        }
        self.set = Some(set);
    }

    /// Member `index` of `set` missed `views` views it led.
    fn charge(&mut self, set: &ValidatorSet, index: u16, views: u64) {
        let Some(key) = set.key(index) else { return };
        if let Some(&row) = self.rows.get(key) {
            self.seen[row].missed += views;
        }
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
        a.set_validators(ValidatorSet::equal(0, keys.clone()));
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
        a.set_validators(ValidatorSet::equal(0, keys.clone()));
        a.finalized(0, 40, &keys[0]);
        a.finalized(1, 47, &keys[3]);
        // Nor in an epoch whose set this node does not hold (epoch 1's, here).
        a.finalized(1, 52, &keys[0]);
        assert!(a.seen().iter().all(|s| s.missed == 0));
    }

    /// Issue 21: after validators join, the missed views are charged by the epoch's own
    /// set and leader schedule, to the rows of the peer table (which grew), not by round
    /// robin over the genesis keys.
    #[test]
    fn missed_views_are_charged_by_the_epochs_weighted_set_to_table_rows() {
        let table = keys(5);
        let mut a = Activity::new(table[..4].to_vec(), 7);
        // Validator 4 registered: its row starts at the start view, nothing seen.
        a.extend_table(&table);
        a.extend_table(&table[..3]);
        assert_eq!(a.keys(), &table[..]);
        assert_eq!(
            a.seen()[4],
            Seen {
                last_vote_view: 7,
                ..Seen::default()
            }
        );
        // Epoch 3's set: validator 0 left; 4 joined with three times the power of the rest.
        let members = vec![table[4], table[1], table[2], table[3]];
        let set = ValidatorSet::weighted(3, members.clone(), vec![3, 1, 1, 1]);
        assert!(!set.schedule.is_empty());
        a.set_validators(set.clone());
        a.finalized(3, 100, &table[4]);
        let gap = 2 * set.schedule.len() as u64 + 3;
        a.finalized(3, 100 + gap + 1, &table[1]);
        let mut expected = [0u64; 5];
        for view in 101..=100 + gap {
            let key = members[usize::from(set.leader(view))];
            expected[table.iter().position(|k| *k == key).expect("row")] += 1;
        }
        let missed: Vec<u64> = a.seen().iter().map(|s| s.missed).collect();
        assert_eq!(missed, expected);
        assert_eq!(missed[0], 0, "a validator out of the set leads no view");
        assert!(missed[4] > missed[1], "{missed:?}");
        let proposed: Vec<u64> = a.seen().iter().map(|s| s.proposed).collect();
        assert_eq!(proposed, [0, 1, 0, 0, 1]);
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
