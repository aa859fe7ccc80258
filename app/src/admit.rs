//! Which blocks from peers the driver may store before the consensus engine has judged them.
//!
//! The driver keeps every block it may have to execute (proposals ahead of finality, parents
//! fetched by hash) in a byte-bounded cache. If any validator's message could put a block
//! there, one Byzantine validator could fill the cache with junk at the next height and keep
//! every honest block out (a liveness attack found by review, issue 24). So a block enters the
//! cache only as
//! - a proposal signed by the leader of its view, naming that leader as proposer, within the
//!   view window the engine accepts, at most [`keel_consensus::MAX_PROPOSALS_PER_VIEW`] per
//!   view (signatures are checked last, so forged proposals cost one verification and take no
//!   slot); or
//! - a block response to a request this node made (by hash: a peer cannot choose its bytes).

use keel_consensus::MAX_PROPOSALS_PER_VIEW;
use keel_types::{Block, Epoch, Hash, PublicKey, SignedVote, View, VoteKind};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Views ahead of the current one from which proposals (and fetched blocks) are accepted;
/// the engine is configured with the same window.
pub const MAX_VIEWS_AHEAD: u64 = 256;

/// Block hashes remembered as requested (oldest forgotten first). Honest runs request a
/// handful at a time; this bounds what the record itself can hold.
pub const MAX_REQUESTED_BLOCKS: usize = 1_024;

/// Why a proposal was not admitted into the block cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProposalRefusal {
    #[error("the vote is not a notarize vote for this block in its view")]
    NotItsVote,
    #[error("the signer is not the leader of the view")]
    NotLeader,
    #[error("the header names another proposer than the view's leader")]
    WrongProposer,
    #[error("the view is finalized already or too far ahead")]
    OutsideWindow,
    #[error("the block or its vote is of another epoch than this node's")]
    WrongEpoch,
    #[error("the view already has its proposals")]
    ViewFull,
    #[error("bad signature")]
    BadSignature,
}

impl ProposalRefusal {
    /// The `refusal` label of `keel_p2p_rejected_total{reason="proposal"}`.
    pub fn label(&self) -> &'static str {
        match self {
            ProposalRefusal::NotItsVote => "not_its_vote",
            ProposalRefusal::NotLeader => "not_leader",
            ProposalRefusal::WrongProposer => "wrong_proposer",
            ProposalRefusal::OutsideWindow => "outside_window",
            ProposalRefusal::WrongEpoch => "wrong_epoch",
            ProposalRefusal::ViewFull => "view_full",
            ProposalRefusal::BadSignature => "bad_signature",
        }
    }
}

/// The distinct proposals admitted per (epoch, view), above the finalized tip.
///
/// Keyed by epoch as well as view: the empty suffix blocks that finish an epoch are proposed
/// in views the next epoch numbers again, and must not use up its slots. A copy of a block
/// already admitted (a re-send, a relay) takes no second slot.
#[derive(Debug, Default)]
pub struct ProposalWindow {
    per_view: BTreeMap<(Epoch, View), Vec<Hash>>,
}

impl ProposalWindow {
    /// Admits `block` proposed with `vote` if the leader of the view signed it. `leader` is the
    /// view's leader index, `tip_view` the finalized tip's view, `view` the engine's current
    /// and `epoch` its epoch: a slot is per (epoch, view), so a proposal of any other epoch
    /// (which the engine would drop) must not get fresh slots for every epoch a Byzantine
    /// leader names (found by review).
    #[allow(clippy::too_many_arguments)]
    pub fn admit(
        &mut self,
        block: &Block,
        vote: &SignedVote,
        validators: &[PublicKey],
        leader: u16,
        tip_view: View,
        view: View,
        epoch: Epoch,
    ) -> Result<(), ProposalRefusal> {
        let v = &vote.vote;
        let hash = block.hash();
        if v.kind != VoteKind::Notarize || v.block != hash || v.view != block.header.view {
            return Err(ProposalRefusal::NotItsVote);
        }
        if v.epoch != epoch || block.header.epoch != epoch {
            return Err(ProposalRefusal::WrongEpoch);
        }
        if v.view <= tip_view || v.view > view.saturating_add(MAX_VIEWS_AHEAD) {
            return Err(ProposalRefusal::OutsideWindow);
        }
        if vote.signer != leader {
            return Err(ProposalRefusal::NotLeader);
        }
        let Some(key) = validators.get(usize::from(leader)) else {
            return Err(ProposalRefusal::NotLeader);
        };
        if block.header.proposer != *key {
            return Err(ProposalRefusal::WrongProposer);
        }
        let slot = (block.header.epoch, v.view);
        let admitted = self.per_view.get(&slot).map_or(&[][..], Vec::as_slice);
        if admitted.contains(&hash) {
            // The same bytes again: already verified and cached; the engine checks the vote.
            return Ok(());
        }
        if admitted.len() >= MAX_PROPOSALS_PER_VIEW {
            return Err(ProposalRefusal::ViewFull);
        }
        vote.verify(key)
            .map_err(|_| ProposalRefusal::BadSignature)?;
        self.per_view.entry(slot).or_default().push(hash);
        Ok(())
    }

    /// Forgets what no longer matters once a block of (`tip_epoch`, `tip_view`) is final:
    /// earlier epochs, and views at or below the tip's.
    pub fn prune(&mut self, tip_epoch: Epoch, tip_view: View) {
        self.per_view
            .retain(|&(epoch, view), _| epoch >= tip_epoch && view > tip_view);
    }

    /// Views with admitted proposals (tests).
    #[cfg(test)]
    pub fn views(&self) -> usize {
        self.per_view.len()
    }
}

/// The block hashes this node asked peers for: only those may come back as block responses.
#[derive(Debug, Default)]
pub struct RequestedBlocks {
    set: BTreeSet<Hash>,
    order: VecDeque<Hash>,
}

impl RequestedBlocks {
    pub fn record(&mut self, hash: Hash) {
        if !self.set.insert(hash) {
            return;
        }
        self.order.push_back(hash);
        while self.order.len() > MAX_REQUESTED_BLOCKS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    pub fn contains(&self, hash: &Hash) -> bool {
        self.set.contains(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_types::{Header, SecretKey, Vote};

    fn keys() -> Vec<SecretKey> {
        (1..=4).map(|i| SecretKey::from_seed([i; 32])).collect()
    }

    fn proposal(
        proposer: &SecretKey,
        signer: &SecretKey,
        index: u16,
        view: View,
        salt: u64,
    ) -> (Block, SignedVote) {
        proposal_in(0, proposer, signer, index, view, salt)
    }

    fn proposal_in(
        epoch: Epoch,
        proposer: &SecretKey,
        signer: &SecretKey,
        index: u16,
        view: View,
        salt: u64,
    ) -> (Block, SignedVote) {
        let block = Block {
            header: Header {
                chain_id: 1,
                height: 1,
                epoch,
                view,
                parent_hash: Hash::ZERO,
                proposer: proposer.public_key(),
                timestamp_ms: salt,
                tx_root: keel_types::block::tx_root(&[]),
                parent_state_root: Hash::ZERO,
                parent_receipts_root: Hash::ZERO,
                archive_root: Hash::ZERO,
            },
            transactions: Vec::new(),
        };
        let vote = Vote {
            chain_id: 1,
            kind: VoteKind::Notarize,
            epoch,
            view,
            block: block.hash(),
        };
        let signed = SignedVote {
            signature: signer.sign(&vote.signing_hash().0),
            vote,
            signer: index,
        };
        (block, signed)
    }

    #[test]
    fn only_the_leaders_signed_proposals_within_the_window_are_admitted() {
        let keys = keys();
        let validators: Vec<PublicKey> = keys.iter().map(SecretKey::public_key).collect();
        let mut window = ProposalWindow::default();
        let leader = 2u16;
        let (tip_view, view) = (10, 12);
        let ok = |w: &mut ProposalWindow, p: &(Block, SignedVote)| {
            w.admit(&p.0, &p.1, &validators, leader, tip_view, view, 0)
        };
        let l = &keys[2];
        // Another validator signing as itself, or forging the leader's index.
        assert_eq!(
            ok(&mut window, &proposal(&keys[1], &keys[1], 1, 13, 0)),
            Err(ProposalRefusal::NotLeader)
        );
        assert_eq!(
            ok(&mut window, &proposal(l, &keys[1], leader, 13, 0)),
            Err(ProposalRefusal::BadSignature)
        );
        // The leader's vote but another proposer in the header.
        assert_eq!(
            ok(&mut window, &proposal(&keys[0], l, leader, 13, 0)),
            Err(ProposalRefusal::WrongProposer)
        );
        // Finalized or far-future views.
        assert_eq!(
            ok(&mut window, &proposal(l, l, leader, tip_view, 0)),
            Err(ProposalRefusal::OutsideWindow)
        );
        assert_eq!(
            ok(
                &mut window,
                &proposal(l, l, leader, view + MAX_VIEWS_AHEAD + 1, 0)
            ),
            Err(ProposalRefusal::OutsideWindow)
        );
        // A vote for another block.
        let (block, _) = proposal(l, l, leader, 13, 0);
        let (_, other_vote) = proposal(l, l, leader, 13, 1);
        assert_eq!(
            window.admit(&block, &other_vote, &validators, leader, tip_view, view, 0),
            Err(ProposalRefusal::NotItsVote)
        );
        // None of the refusals took a slot; the leader gets MAX_PROPOSALS_PER_VIEW, then no more.
        for salt in 0..MAX_PROPOSALS_PER_VIEW as u64 {
            assert_eq!(ok(&mut window, &proposal(l, l, leader, 13, salt)), Ok(()));
        }
        for salt in 0..1_000 {
            assert_eq!(
                ok(&mut window, &proposal(l, l, leader, 13, 100 + salt)),
                Err(ProposalRefusal::ViewFull)
            );
        }
        assert_eq!(window.views(), 1);
        window.prune(0, 13);
        assert_eq!(window.views(), 0);
    }

    /// Found by review: copies of one proposal each took a slot, and the suffix blocks that
    /// end an epoch took the slots of the next epoch's views with the same numbers, so the
    /// next epoch's leader's block was refused as `view_full` and the view timed out.
    #[test]
    fn copies_take_no_slot_and_an_epochs_suffix_leaves_the_next_epochs_views_free() {
        let keys = keys();
        let validators: Vec<PublicKey> = keys.iter().map(SecretKey::public_key).collect();
        let mut window = ProposalWindow::default();
        let (leader, l) = (1u16, &keys[1]);
        let admit = |w: &mut ProposalWindow, p: &(Block, SignedVote), epoch| {
            w.admit(&p.0, &p.1, &validators, leader, 20, 20, epoch)
        };
        // Epoch 0's suffix proposals in view 21, each re-sent and relayed many times.
        for salt in 0..MAX_PROPOSALS_PER_VIEW as u64 {
            let suffix = proposal_in(0, l, l, leader, 21, salt);
            for _ in 0..5 {
                assert_eq!(admit(&mut window, &suffix, 0), Ok(()));
            }
        }
        assert_eq!(
            admit(&mut window, &proposal_in(0, l, l, leader, 21, 99), 0),
            Err(ProposalRefusal::ViewFull)
        );
        // A proposal of another epoch than the node's takes no slot: a Byzantine leader
        // naming a new epoch each time gets nothing.
        for other in [1, 2, u64::MAX] {
            assert_eq!(
                admit(&mut window, &proposal_in(other, l, l, leader, 21, 5), 0),
                Err(ProposalRefusal::WrongEpoch)
            );
        }
        assert_eq!(window.views(), 1);
        // Epoch 1 numbers its first view 21 too: its leader's block is admitted there.
        let next = proposal_in(1, l, l, leader, 21, 0);
        assert_eq!(admit(&mut window, &next, 1), Ok(()));
        // A relayed copy with a broken signature is the same block: no slot, no refusal
        // (the engine checks the vote it carries).
        let mut relayed = next.clone();
        relayed.1.signature = keys[0].sign(b"junk");
        assert_eq!(admit(&mut window, &relayed, 1), Ok(()));
        assert_eq!(window.views(), 2);
        // Once epoch 1 finalizes a block, epoch 0's leftovers go.
        window.prune(1, 20);
        assert_eq!(window.views(), 1);
    }

    #[test]
    fn only_requested_blocks_are_accepted_and_the_record_is_bounded() {
        let mut requested = RequestedBlocks::default();
        let hash = |i: u64| Hash::digest(keel_types::hash::Domain::TxRootLeaf, &i.to_le_bytes());
        assert!(
            !requested.contains(&hash(0)),
            "an unsolicited block is refused"
        );
        for i in 0..(MAX_REQUESTED_BLOCKS as u64 + 10) {
            requested.record(hash(i));
            requested.record(hash(i));
        }
        assert!(
            !requested.contains(&hash(0)),
            "the oldest requests are forgotten"
        );
        assert!(requested.contains(&hash(MAX_REQUESTED_BLOCKS as u64 + 9)));
        assert_eq!(requested.set.len(), MAX_REQUESTED_BLOCKS);
        assert_eq!(requested.order.len(), MAX_REQUESTED_BLOCKS);
    }
}
