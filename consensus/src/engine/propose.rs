//! Proposals: building this validator's block when it leads, taking the leader's block when
//! it does not (rule PROPOSER: only the view's leader, naming itself), and notarizing it
//! (rule VOTE) once the application has verified it. Proposals kept per view are bounded.

use super::{Action, Engine, VoteCheck, MAX_PROPOSALS_PER_VIEW};
use crate::message::Message;
use crate::votelog::VoteRecord;
use keel_types::{Block, Hash, SignedVote, View, VoteKind};
use std::collections::BTreeMap;

impl Engine {
    pub(super) fn try_propose(&mut self) {
        let view = self.view;
        if Some(self.leader(view)) != self.me() {
            return;
        }
        let state = self.views.get(&view);
        if state.is_some_and(|s| s.proposing || s.my_notarize.is_some() || s.my_nullify) {
            return;
        }
        let Some((parent, _)) = self.parent_for(view) else {
            return;
        };
        let Some(parent_height) = self.block_height(&parent) else {
            self.actions
                .push(Action::Broadcast(Message::BlockRequest(parent)));
            return;
        };
        self.view_mut(view).proposing = true;
        let Some(height) = parent_height.checked_add(1) else {
            return;
        };
        let empty = height > self.epoch_last_height();
        let epoch = self.cfg.validators.epoch;
        self.actions.push(Action::BuildProposal {
            view,
            parent,
            height,
            epoch,
            empty,
        });
    }

    pub(super) fn on_built(&mut self, view: View, block: Block) {
        let hash = block.hash();
        let Some(state) = self.views.get(&view) else {
            return;
        };
        if view != self.view || !state.proposing || state.my_notarize.is_some() || state.my_nullify
        {
            return;
        }
        let Some((parent, _)) = self.parent_for(view) else {
            return;
        };
        // Rule PROPOSER holds for our own blocks too: every peer refuses one naming another.
        if block.header.view != view
            || block.header.parent_hash != parent
            || self.leader_key(view) != Some(&block.header.proposer)
        {
            return;
        }
        if !self.keep_block(hash, block.clone()) {
            return;
        }
        let Some(vote) = self.sign(self.vote(view, VoteKind::Notarize, hash)) else {
            return;
        };
        let state = self.view_mut(view);
        state.proposal = Some(hash);
        state.proposals.push(hash);
        state.my_notarize = Some(hash);
        self.actions.push(Action::Persist(VoteRecord::Notarized {
            epoch: vote.vote.epoch,
            view,
            block: hash,
        }));
        self.actions
            .push(Action::Broadcast(Message::Propose { block, vote }));
        self.record_vote(vote);
    }

    /// Rule VOTE: notarize the leader's first proposal of the current view if its parent
    /// satisfies PARENT, its height is the parent's + 1, it names the leader as proposer,
    /// and the application accepts it; never after nullifying the view, and at most one
    /// block per view.
    pub(super) fn try_verify(&mut self, view: View) {
        if view != self.view {
            return;
        }
        let Some(state) = self.views.get(&view) else {
            return;
        };
        if state.verifying || state.my_notarize.is_some() || state.my_nullify || self.me().is_none()
        {
            return;
        }
        let Some(hash) = state.proposal else { return };
        let Some(block) = self.blocks.get(&hash) else {
            return;
        };
        let Some((parent, _)) = self.parent_for(view) else {
            return;
        };
        if block.header.parent_hash != parent {
            return; // not (yet) the parent PARENT requires; re-checked as certificates arrive
        }
        let Some(parent_height) = self.block_height(&parent) else {
            self.actions
                .push(Action::Broadcast(Message::BlockRequest(parent)));
            return;
        };
        if parent_height.checked_add(1) != Some(block.header.height)
            || block.header.chain_id != self.cfg.chain_id
            || block.header.epoch != self.cfg.validators.epoch
            || block.header.view != view
            || self.leader_key(view) != Some(&block.header.proposer)
            || (block.header.height > self.epoch_last_height() && !block.transactions.is_empty())
        {
            return;
        }
        let block = block.clone();
        self.view_mut(view).verifying = true;
        self.actions.push(Action::Verify { view, block });
    }

    pub(super) fn on_verified(&mut self, view: View, hash: Hash, valid: bool) {
        let Some(state) = self.views.get_mut(&view) else {
            return;
        };
        state.verifying = false;
        if !valid
            || view != self.view
            || state.proposal != Some(hash)
            || state.my_notarize.is_some()
            || state.my_nullify
        {
            return;
        }
        let Some(vote) = self.sign(self.vote(view, VoteKind::Notarize, hash)) else {
            return;
        };
        self.view_mut(view).my_notarize = Some(hash);
        self.actions.push(Action::Persist(VoteRecord::Notarized {
            epoch: vote.vote.epoch,
            view,
            block: hash,
        }));
        self.actions.push(Action::Broadcast(Message::Vote(vote)));
        self.record_vote(vote);
    }

    /// Rule FETCH: in the current view, with no proposal of its own yet, a validator that
    /// sees f + 1 notarize votes for one block (so at least one honest validator verified it
    /// as the leader's signed proposal) asks a voter for it. Each further voter for that
    /// block is asked too while it has not arrived (a lost response or a silent voter costs
    /// one more vote's wait, not the view), each at most once per view. The block then
    /// arrives as a block response and [`Engine::adopt_backed`] makes it the proposal. A
    /// lost Propose therefore costs a round trip, not the view.
    /// `voter`: whose notarize vote just arrived, if that is what called.
    pub(super) fn fetch_backed(&mut self, view: View, voter: Option<u16>) {
        if view != self.view || self.me().is_none() {
            return;
        }
        let Some(state) = self.views.get(&view) else {
            return;
        };
        if state.proposal.is_some() || state.my_nullify {
            return;
        }
        let Some(block) = self.backed_blocks(view).into_iter().next() else {
            return;
        };
        if self.blocks.contains_key(&block) {
            // Kept earlier (as a parent, or a copy that arrived first): adopt it now.
            self.adopt_backed(block);
            self.try_verify(view);
            return;
        }
        let (me, leader) = (self.me(), self.leader(view));
        let mut candidates = state
            .notarizes
            .iter()
            .filter(|(signer, (h, _))| {
                *h == block && Some(**signer) != me && !state.asked.contains(signer)
            })
            .map(|(signer, _)| *signer);
        let to = if state.asked.is_empty() {
            // The first request: the leader last, it is the one that may be withholding.
            candidates
                .clone()
                .find(|signer| *signer != leader)
                .or_else(|| candidates.next())
        } else {
            // Later ones only to a new voter for the block, as its vote arrives.
            candidates.find(|signer| Some(*signer) == voter)
        };
        let Some(to) = to else {
            return;
        };
        self.view_mut(view).asked.push(to);
        self.actions.push(Action::Send {
            to,
            message: Message::BlockRequest(block),
        });
    }

    /// The blocks of `view` that more than 1/3 of the power voted to notarize (an
    /// equivocating leader can get two there when the faulty hold enough), in hash order.
    pub(super) fn backed_blocks(&self, view: View) -> Vec<Hash> {
        let Some(state) = self.views.get(&view) else {
            return Vec::new();
        };
        let mut powers: BTreeMap<Hash, u128> = BTreeMap::new();
        for (signer, (h, _)) in &state.notarizes {
            *powers.entry(*h).or_default() += u128::from(self.cfg.validators.power(*signer));
        }
        powers
            .into_iter()
            .filter(|(_, p)| self.cfg.validators.is_backing(*p))
            .map(|(h, _)| h)
            .collect()
    }

    /// Whether more than 1/3 of the power (at least one honest validator) voted to notarize
    /// `hash` in `view`.
    pub(super) fn is_backed(&self, view: View, hash: &Hash) -> bool {
        self.views.get(&view).is_some_and(|state| {
            let signers = state
                .notarizes
                .iter()
                .filter(|(_, (h, _))| h == hash)
                .map(|(s, _)| *s);
            self.cfg
                .validators
                .is_backing(self.cfg.validators.power_of(signers))
        })
    }

    /// A held block that f + 1 notarize votes back becomes its view's proposal when the
    /// view has none and the header names the view's leader (rule FETCH).
    pub(super) fn adopt_backed(&mut self, hash: Hash) {
        let Some(block) = self.blocks.get(&hash) else {
            return;
        };
        let view = block.header.view;
        if self.leader_key(view) != Some(&block.header.proposer) || !self.is_backed(view, &hash) {
            return;
        }
        let state = self.view_mut(view);
        if state.proposal.is_some() {
            return;
        }
        state.proposal = Some(hash);
        if !state.proposals.contains(&hash) {
            state.proposals.push(hash);
        }
    }

    /// A leader's proposal: its block with its own notarize vote. Rule PROPOSER: the signer
    /// is the view's leader and the header names that leader's key (the proposer is paid the
    /// block's fees). Only the first `MAX_PROPOSALS_PER_VIEW` distinct blocks per view are
    /// kept (unless a certificate names one); the rest are dropped before any signature
    /// check, so an equivocating leader's flood costs neither memory nor CPU.
    pub(super) fn on_propose(&mut self, block: Block, vote: SignedVote) {
        let view = vote.vote.view;
        if vote.vote.kind != VoteKind::Notarize
            || block.header.view != view
            || vote.signer != self.leader(view)
            || self.leader_key(view) != Some(&block.header.proposer)
        {
            return;
        }
        let hash = block.hash();
        if vote.vote.block != hash {
            return;
        }
        let full = self.views.get(&view).is_some_and(|s| {
            !s.proposals.contains(&hash) && s.proposals.len() >= MAX_PROPOSALS_PER_VIEW
        });
        if full && !self.named_by_certificate(&hash) {
            return;
        }
        // The leader's vote may already be counted (it also travels alone on re-sends); the
        // block is still new to us then. `check_vote` also bounds the view to our window.
        let check = self.check_vote(&vote);
        if check == VoteCheck::Invalid {
            return;
        }
        // Within the engine's byte budget, or not at all (a certificate naming it later
        // makes the engine fetch it).
        if !self.keep_block(hash, block) {
            return;
        }
        let state = self.view_mut(view);
        if state.proposal.is_none() {
            state.proposal = Some(hash);
        }
        if !state.proposals.contains(&hash) {
            state.proposals.push(hash);
        }
        if check == VoteCheck::New {
            self.record_vote(vote);
        }
        self.try_verify(view);
    }
}
