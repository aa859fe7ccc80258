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
//! What is kept is bounded by what the engine holds: every write drops the blocks the engine
//! has let go of (they can matter no more after a restart than before it), and finality
//! drops the blocks at or below the finalized height.

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
                .filter(|b| key(b.header.height, &b.hash()) == k)
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
        let gone: Vec<(Hash, Height)> = self
            .kept
            .iter()
            .filter(|(h, _)| !engine.holds(h))
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
