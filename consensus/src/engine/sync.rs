//! Catch-up: fetching certified blocks, finalizing chains once every block is known, and
//! syncing finalized ranges (blocks, then headers up to a certified block) from peers.

use super::{Action, Engine, MAX_UNCERTIFIED_PARENTS_PER_VIEW};
use crate::message::Message;
use crate::quorum::verify_certificate;
use keel_types::{Block, Certificate, Hash, Header, VoteKind};

impl Engine {
    /// A block a peer sent in answer to a `BlockRequest`. Kept only if a certificate names
    /// it, or as the parent of a known later block (at most
    /// `MAX_UNCERTIFIED_PARENTS_PER_VIEW` per view), and only in the views this engine can
    /// still use: after the tip's and at most `max_views_ahead` past the current one.
    pub(super) fn on_block(&mut self, block: Block) {
        let hash = block.hash();
        let (height, view) = (block.header.height, block.header.view);
        if height <= self.tip.0
            || view <= self.tip.2
            || view > self.view.saturating_add(self.cfg.max_views_ahead)
            || self.blocks.contains_key(&hash)
        {
            return;
        }
        // Rule FETCH: f + 1 notarize votes back it as the view's proposal.
        let backed = self.is_backed(view, &hash);
        if !self.named_by_certificate(&hash) && !backed {
            // Views strictly increase along a chain: a parent is from an earlier view.
            let parent_of_known = self
                .blocks
                .values()
                .any(|b| b.header.parent_hash == hash && b.header.view > view);
            if !parent_of_known {
                return;
            }
            let state = self.view_mut(view);
            if state.uncertified_parents >= MAX_UNCERTIFIED_PARENTS_PER_VIEW {
                return;
            }
            state.uncertified_parents += 1;
        }
        if self.keep_block(hash, block) {
            if backed {
                self.adopt_backed(hash);
            }
            self.after_progress();
        }
    }

    /// Finalizes the chain up to the highest finalization certificate if every block from
    /// the tip to it is known; otherwise asks a peer for the missing range.
    pub(super) fn try_finalize_pending(&mut self) {
        let Some((view, hash)) = self.pending_finalization else {
            return;
        };
        if view <= self.tip.2 {
            self.pending_finalization = None;
            return;
        }
        let mut chain: Vec<Block> = Vec::new();
        let mut cursor = hash;
        while cursor != self.tip.1 {
            let Some(block) = self.blocks.get(&cursor) else {
                self.request_sync(None);
                return;
            };
            // As rule SYNC: the certified block is of the certificate's view, and views and
            // heights fall one block at a time down to the tip. Anything else conflicts with
            // our finalized chain or was certified by more than f faulty validators: never
            // apply it (a block of a later view than its certificate's would make the tip's
            // view overtake ours).
            let linked = match chain.last() {
                None => block.header.view == view,
                Some(child) => {
                    block.header.view < child.header.view
                        && block.header.height.checked_add(1) == Some(child.header.height)
                }
            };
            if !linked || block.header.height <= self.tip.0 || block.header.view <= self.tip.2 {
                self.pending_finalization = None;
                return;
            }
            chain.push(block.clone());
            cursor = block.header.parent_hash;
        }
        if chain
            .last()
            .is_some_and(|b| self.tip.0.checked_add(1) != Some(b.header.height))
        {
            self.pending_finalization = None;
            return;
        }
        chain.reverse();
        let certificate = self.views.get(&view).and_then(|s| s.finalization.clone());
        self.deliver(chain, Vec::new(), certificate);
        self.pending_finalization = None;
    }

    /// Delivers finalized blocks up to the epoch's last height. `certificate` names the top
    /// of `chain ++ trailing` (the headers after the chain, from a sync response). Blocks and
    /// headers past the epoch's last height are suffix blocks: they are never delivered, so
    /// every validator's epoch ends at the same block (the one at the last height, on which
    /// all honest validators agree) whatever batches its blocks arrived in.
    fn deliver(
        &mut self,
        chain: Vec<Block>,
        trailing: Vec<Header>,
        certificate: Option<Certificate>,
    ) {
        let last_height = self.epoch_last_height();
        let (keep, suffix): (Vec<Block>, Vec<Block>) = chain
            .into_iter()
            .partition(|b| b.header.height <= last_height);
        let mut extra: Vec<Header> = suffix.into_iter().map(|b| b.header).collect();
        extra.extend(trailing);
        let count = keep.len();
        if count > 0 {
            self.restart_finalization = None;
        }
        for (i, block) in keep.into_iter().enumerate() {
            self.tip = (block.header.height, block.hash(), block.header.view);
            let cert = if i + 1 == count && extra.is_empty() {
                certificate.clone()
            } else {
                None
            };
            self.actions.push(Action::Finalized {
                block,
                certificate: cert,
            });
        }
        self.gc();
        if self.tip.0 >= last_height && !self.ended {
            self.ended = true;
            let suffix = match (extra.is_empty(), certificate) {
                (false, Some(cert)) => Some((extra, cert)),
                _ => None,
            };
            self.actions.push(Action::EpochEnded {
                epoch: self.cfg.validators.epoch,
                tip: self.tip,
                suffix,
            });
        }
    }

    /// After a restart: the finalization that proves the finalized tip (the app keeps it:
    /// the tip's certificate, or the epoch's suffix certificate above its last block),
    /// re-sent on timeouts like any newest finalization. Without it, validators that had
    /// committed the tip when the power went and validators that had only voted for it
    /// could never meet again: the first ignore votes at or below their tip, and the
    /// others may not nullify the view they finalize-voted in, so with more than a third
    /// of the power on each side the chain halted for good (found by review). From this
    /// node's own store, so not verified here (peers verify what they receive); taken only
    /// as a finalization at or above the tip's view, and re-sent only until this engine
    /// hears a newer finalization or finalizes a block.
    pub fn seed_finalization(&mut self, cert: Certificate) -> bool {
        if cert.vote.kind != VoteKind::Finalize || cert.vote.view < self.tip.2 {
            return false;
        }
        self.restart_finalization = Some(cert);
        true
    }

    /// The next member other than this validator and `except`, in the leaders' turn order
    /// (each member's share of turns follows its power) from the finalized tip's view on.
    fn next_sync_peer(&mut self, except: u16) -> Option<u16> {
        let set = &self.cfg.validators;
        // Enough turns to meet every member of the schedule (each has at least one).
        let turns = set.schedule.len().max(set.len()).saturating_mul(2);
        for _ in 0..turns {
            self.sync_turn = self.sync_turn.wrapping_add(1);
            let candidate = self.leader(self.tip.2.wrapping_add(self.sync_turn));
            if candidate != except && Some(candidate) != self.me() {
                return Some(candidate);
            }
        }
        None
    }

    pub(super) fn request_sync(&mut self, to: Option<u16>) {
        let message = Message::SyncRequest {
            from_height: self.tip.0.saturating_add(1),
        };
        match to {
            Some(to) => self.actions.push(Action::Send { to, message }),
            None => self.actions.push(Action::Broadcast(message)),
        }
    }

    /// Rule SYNC: accept a response only if its blocks and headers form one chain (each
    /// linking to the one before by parent hash, consecutive height and a later view, all in
    /// this epoch) that a valid finalization certificate names the top of, and that passes
    /// through our tip: blocks at or below the tip may appear only as a prefix ending at it
    /// (so they are our own finalized blocks). Only the blocks above the tip are delivered.
    pub(super) fn on_sync(
        &mut self,
        from: u16,
        blocks: Vec<Block>,
        headers: Vec<Header>,
        finalization: Certificate,
    ) {
        // Cheap structural checks first, so a malformed response never costs signature
        // verifications.
        let Ok(fresh_start) = self.check_sync_chain(&blocks, &headers, &finalization) else {
            return;
        };
        self.signatures_verified += finalization.signers.len() as u64;
        if verify_certificate(self.cfg.chain_id, &self.cfg.validators, &finalization).is_err() {
            return;
        }
        let view = finalization.vote.view;
        if self
            .latest_finalization
            .as_ref()
            .is_none_or(|c| c.vote.view < view)
        {
            self.latest_finalization = Some(finalization.clone());
        }
        let mut blocks = blocks;
        let fresh = blocks.split_off(fresh_start);
        self.deliver(fresh, headers, Some(finalization));
        if !self.ended {
            // Ask for what follows after every accepted response, not only one that says it
            // left more: a server ends a response early at its last certificate in the
            // window or at the byte budget, and waiting for the view timeout then cost 2 s
            // per response (found by review: big blocks synced slower than the chain grew).
            // A server with nothing newer stays silent, which ends the loop.
            //
            // The sender and one other member, drawn by power from a point the tip sets: a
            // Byzantine responder that answers first (its valid response makes the honest
            // ones to the same request stale) and then ignores the follow-up would otherwise
            // make this node wait a view timeout per response (found by review), and turns
            // by index let a flood of minimum-stake members be asked nearly every time.
            self.request_sync(Some(from));
            if let Some(other) = self.next_sync_peer(from) {
                self.request_sync(Some(other));
            }
        }
        if self.ended {
            // The epoch's last block came by sync: the next epoch has likely begun without
            // this node, so the next engine asks at once (`Input::CatchUp`).
            self.behind = true;
        }
        self.enter_view(view.saturating_add(1), false);
        self.after_progress();
    }

    /// The structural half of rule SYNC (everything but the signatures): returns the index
    /// of the first block above our tip. Heights and views come from the peer: checked
    /// arithmetic and comparisons only, never an overflow.
    fn check_sync_chain(
        &self,
        blocks: &[Block],
        headers: &[Header],
        finalization: &Certificate,
    ) -> Result<usize, SyncRefusal> {
        if finalization.vote.kind != VoteKind::Finalize {
            return Err(SyncRefusal::NotAFinalization);
        }
        let (chain_id, epoch) = (self.cfg.chain_id, self.cfg.validators.epoch);
        let mut previous: Option<(Hash, &Header)> = None;
        for header in blocks.iter().map(|b| &b.header).chain(headers) {
            if header.chain_id != chain_id || header.epoch != epoch {
                return Err(SyncRefusal::WrongChainOrEpoch);
            }
            if let Some((parent, p)) = previous {
                if header.parent_hash != parent
                    || p.height.checked_add(1) != Some(header.height)
                    || header.view <= p.view
                {
                    return Err(SyncRefusal::Unlinked);
                }
            }
            previous = Some((header.hash(), header));
        }
        let Some((top_hash, top)) = previous else {
            return Err(SyncRefusal::Empty);
        };
        // The certificate names the top of the whole chain, in the view it was proposed in.
        if finalization.vote.block != top_hash || finalization.vote.view != top.view {
            return Err(SyncRefusal::NotCertified);
        }
        // Heights increase along the chain, so blocks at or below the tip form a prefix; the
        // first block above it must sit on our tip, which makes that prefix (hash-linked to
        // it) our own finalized blocks.
        let Some(start) = blocks.iter().position(|b| b.header.height > self.tip.0) else {
            return Err(SyncRefusal::NothingNew);
        };
        let first = &blocks[start].header;
        if first.parent_hash != self.tip.1
            || self.tip.0.checked_add(1) != Some(first.height)
            || first.view <= self.tip.2
        {
            return Err(SyncRefusal::OffTip);
        }
        Ok(start)
    }
}

/// Why a sync response was refused before its signatures were checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum SyncRefusal {
    #[error("the certificate is not a finalization")]
    NotAFinalization,
    #[error("a block or header is for another chain or epoch")]
    WrongChainOrEpoch,
    #[error("a block or header does not link to the one before it")]
    Unlinked,
    #[error("the response carries no blocks")]
    Empty,
    #[error("the certificate does not name the last block or header")]
    NotCertified,
    #[error("every block is at or below our finalized tip")]
    NothingNew,
    #[error("the first block above our tip does not extend it")]
    OffTip,
}
