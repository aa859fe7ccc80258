//! The blocks this validator voted for and has not finalized, kept on disk before the vote.
//!
//! A vote is durable (the vote log) and binding after a crash, but the block it names lived
//! only in memory. If every validator that held a block crashes after its finalize vote and
//! before committing — a lone validator always; a whole network after a power cut — the
//! restarted engines re-form the block's finalization from their logged votes, may never
//! nullify that view (they signed finalize), and wait for a block nobody has: the chain
//! halts for good. Found by CI: a one-validator devnet killed with SIGKILL between its vote
//! and its commit never finalized again. So the block goes to the store before the vote is
//! logged, and a restart hands it back to the engine.
//!
//! What is kept is bounded by what the engine holds: every write drops the blocks above the
//! engine's finalized tip that it has let go of (evicted, or never finalizable: they can
//! matter no more after a restart than before it), and each commit drops the blocks at or
//! below its height. A block at or below the engine's tip that the engine dropped is
//! finalized but perhaps not committed yet (the commits of one engine step come after its
//! votes): it stays until its commit (found by review).

use crate::chain::body_matches_header;
use keel_consensus::{Engine, VoteRecord};
use keel_state::StateError;
use keel_store::Store;
use keel_types::{Block, Canonical, Hash, Height};
use std::collections::BTreeMap;

const VOTED_PREFIX: &[u8] = b"voted/";

fn key(height: Height, hash: &Hash) -> Vec<u8> {
    let mut k = VOTED_PREFIX.to_vec();
    k.extend(height.to_be_bytes());
    k.extend(hash.0);
    k
}

/// The index of the voted blocks on disk: hash → height.
#[derive(Debug, Default)]
pub struct VotedBlocks {
    kept: BTreeMap<Hash, Height>,
}

impl VotedBlocks {
    /// Reads the voted blocks above the finalized `tip` back, hands the engine those its
    /// restored votes name (see [`Engine::restore_voted`]) and deletes the rest.
    pub fn restore(store: &Store, tip: Height, engine: &mut Engine) -> Result<Self, StateError> {
        let mut voted = VotedBlocks::default();
        let mut stale = Vec::new();
        let mut from = VOTED_PREFIX.to_vec();
        while let Some((k, v)) = store.next_aux(VOTED_PREFIX, &from)? {
            let restored = Block::decode(&v)
                .ok()
                .filter(|b| key(b.header.height, &b.hash()) == k && body_matches_header(b))
                .filter(|b| b.header.height > tip)
                .and_then(|b| {
                    let (hash, height) = (b.hash(), b.header.height);
                    engine.restore_voted(b).then_some((hash, height))
                });
            match restored {
                Some((hash, height)) => {
                    voted.kept.insert(hash, height);
                }
                None => stale.push(k.clone()),
            }
            from = k;
            from.push(0);
        }
        for k in stale {
            store.delete_aux(&k)?;
        }
        Ok(voted)
    }

    /// Before `record` is logged: writes the block it names, if the engine holds it and it is
    /// not on disk yet, and drops the blocks the engine no longer holds.
    pub fn before_vote(
        &mut self,
        store: &Store,
        engine: &Engine,
        record: &VoteRecord,
    ) -> Result<(), StateError> {
        let hash = match *record {
            VoteRecord::Notarized { block, .. } | VoteRecord::Finalized { block, .. } => block,
            VoteRecord::EnteredView { .. } | VoteRecord::Nullified { .. } => return Ok(()),
        };
        if self.kept.contains_key(&hash) {
            return Ok(());
        }
        // A finalize vote may name a block this node never received (it saw the
        // notarization only): the validators that notarized it keep it.
        let Some(block) = engine.block(&hash) else {
            return Ok(());
        };
        let settled = engine.finalized_tip().0;
        let gone: Vec<(Hash, Height)> = self
            .kept
            .iter()
            .filter(|(h, height)| **height > settled && !engine.holds(h))
            .map(|(h, height)| (*h, *height))
            .collect();
        for (h, height) in gone {
            store.delete_aux(&key(height, &h))?;
            self.kept.remove(&h);
        }
        let height = block.header.height;
        store.put_aux(&key(height, &hash), &block.encode())?;
        self.kept.insert(hash, height);
        Ok(())
    }

    /// After the chain finalized up to `height`: drops the voted blocks at or below it.
    pub fn finalized(&mut self, store: &Store, height: Height) -> Result<(), StateError> {
        let done: Vec<(Hash, Height)> = self
            .kept
            .iter()
            .filter(|(_, h)| **h <= height)
            .map(|(h, height)| (*h, *height))
            .collect();
        for (h, at) in done {
            store.delete_aux(&key(at, &h))?;
            self.kept.remove(&h);
        }
        Ok(())
    }

    /// The blocks on disk, by hash.
    pub fn hashes(&self) -> Vec<Hash> {
        self.kept.keys().copied().collect()
    }

    /// Blocks on disk (for tests of the bound).
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_consensus::{Action, Config, Input, Message, ValidatorSet};
    use keel_types::{Header, SecretKey, SignedVote, Vote, VoteKind};

    const CHAIN: u64 = 7;
    const GENESIS: Hash = Hash([9; 32]);

    fn keys() -> Vec<SecretKey> {
        (0..4u8)
            .map(|i| SecretKey::from_seed([i + 1; 32]))
            .collect()
    }

    fn engine() -> Engine {
        let keys = keys();
        Engine::new(
            Config {
                chain_id: CHAIN,
                validators: ValidatorSet::equal(
                    0,
                    keys.iter().map(SecretKey::public_key).collect(),
                ),
                me: Some((0, keys[0].clone())),
                finalized_tip: (0, GENESIS, 0),
                timeout_base_ms: 100,
                timeout_max_ms: 400,
                skip_after_views: 4,
                max_views_ahead: 16,
                epoch_length: u64::MAX,
                epoch_first_height: 1,
            },
            &[],
        )
    }

    fn block(engine: &Engine, view: u64, height: u64, parent: Hash) -> Block {
        Block {
            header: Header {
                chain_id: CHAIN,
                height,
                epoch: 0,
                view,
                parent_hash: parent,
                proposer: keys()[usize::from(engine.leader(view))].public_key(),
                timestamp_ms: view,
                tx_root: Hash::ZERO,
                parent_state_root: Hash::ZERO,
                parent_receipts_root: Hash::ZERO,
                archive_root: Hash::ZERO,
            },
            transactions: vec![],
        }
    }

    fn signed(signer: u16, view: u64, kind: VoteKind, block: Hash) -> SignedVote {
        let vote = Vote {
            chain_id: CHAIN,
            epoch: 0,
            view,
            kind,
            block,
        };
        SignedVote {
            vote,
            signer,
            signature: keys()[usize::from(signer)].sign(&vote.signing_hash().0),
        }
    }

    fn propose(engine: &mut Engine, b: &Block) -> Vec<Action> {
        let leader = engine.leader(b.header.view);
        let vote = signed(leader, b.header.view, VoteKind::Notarize, b.hash());
        engine.handle(Input::Message {
            from: leader,
            message: Message::Propose {
                block: b.clone(),
                vote,
            },
        })
    }

    fn persisted(actions: &[Action]) -> Vec<VoteRecord> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Persist(r) => Some(*r),
                _ => None,
            })
            .collect()
    }

    /// X (this validator notarized it, so it is on disk) is finalized as the parent of Y in
    /// one engine step: the engine lets go of X before the app commits it. A vote carried
    /// out in that same step (for Y) must not drop X from disk, or a crash before the
    /// commit leaves X nowhere on this node.
    #[test]
    fn a_finalized_block_stays_on_disk_until_it_is_committed() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path(), keel_store::StoreOptions::default()).expect("store");
        let mut engine = engine();
        engine.handle(Input::Start);
        let mut voted = VotedBlocks::default();

        let x = block(&engine, 1, 1, GENESIS);
        propose(&mut engine, &x);
        let actions = engine.handle(Input::Verified {
            view: 1,
            block: x.hash(),
            valid: true,
        });
        let records = persisted(&actions);
        assert!(
            matches!(records.as_slice(), [VoteRecord::Notarized { .. }]),
            "{actions:?}"
        );
        voted
            .before_vote(&store, &engine, &records[0])
            .expect("write");
        assert!(store.get_aux(&key(1, &x.hash())).expect("read").is_some());

        // X notarized by two peers (with our vote, a quorum); Y proposed on it and
        // finalized by the three peers, X with it.
        for signer in [1, 2] {
            let vote = signed(signer, 1, VoteKind::Notarize, x.hash());
            engine.handle(Input::Message {
                from: signer,
                message: Message::Vote(vote),
            });
        }
        let y = block(&engine, 2, 2, x.hash());
        propose(&mut engine, &y);
        let mut finalized = Vec::new();
        for signer in [1, 2, 3] {
            let vote = signed(signer, 2, VoteKind::Finalize, y.hash());
            let actions = engine.handle(Input::Message {
                from: signer,
                message: Message::Vote(vote),
            });
            finalized.extend(actions.into_iter().filter_map(|a| match a {
                Action::Finalized { block, .. } => Some(block.header.height),
                _ => None,
            }));
        }
        assert_eq!(finalized, vec![1, 2]);
        assert!(!engine.holds(&x.hash()) && engine.holds(&y.hash()));

        // A vote naming Y, carried out before the commits of that step.
        let record = VoteRecord::Finalized {
            epoch: 0,
            view: 2,
            block: y.hash(),
        };
        voted.before_vote(&store, &engine, &record).expect("write");
        assert!(
            store.get_aux(&key(1, &x.hash())).expect("read").is_some(),
            "X left the disk before its commit"
        );
        // Its commit drops it; Y's drops Y.
        voted.finalized(&store, 1).expect("drop");
        assert!(store.get_aux(&key(1, &x.hash())).expect("read").is_none());
        assert_eq!(voted.hashes(), vec![y.hash()]);
        voted.finalized(&store, 2).expect("drop");
        assert!(voted.is_empty());
    }
}
