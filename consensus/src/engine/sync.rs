//! Catch-up: fetching certified blocks, finalizing chains once every block is known, and
//! syncing finalized ranges (blocks, then headers up to a certified block) from peers.

use super::{Action, Engine};
use crate::message::Message;
use crate::quorum::verify_certificate;
use keel_types::{Block, Certificate, Hash, Header, Height, VoteKind};

impl Engine {
    pub(super) fn on_block(&mut self, block: Block) {
        let hash = block.hash();
        if block.header.height <= self.tip.0 || self.blocks.contains_key(&hash) {
            return;
        }
        // Keep only blocks a certificate or a pending proposal refers to, or a parent of one.
        let wanted = self.views.values().any(|s| {
            [&s.notarization, &s.finalization]
                .into_iter()
                .flatten()
                .any(|c| c.vote.block == hash)
        }) || self.blocks.values().any(|b| b.header.parent_hash == hash);
        if !wanted {
            return;
        }
        self.blocks.insert(hash, block);
        self.after_progress();
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
        let mut chain = Vec::new();
        let mut cursor = hash;
        while cursor != self.tip.1 {
            let Some(block) = self.blocks.get(&cursor) else {
                self.request_sync(None);
                return;
            };
            if block.header.height <= self.tip.0 {
                // Conflicts with our finalized chain: impossible with ≤ f faults; never apply.
                self.pending_finalization = None;
                return;
            }
            chain.push(block.clone());
            cursor = block.header.parent_hash;
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

    pub(super) fn request_sync(&mut self, to: Option<u16>) {
        let message = Message::SyncRequest {
            from_height: self.tip.0 + 1,
        };
        match to {
            Some(to) => self.actions.push(Action::Send { to, message }),
            None => self.actions.push(Action::Broadcast(message)),
        }
    }

    /// Rule SYNC: accept consecutive blocks from the tip if a valid finalization certificate
    /// names the last of them, or names the last of the headers that follow them, each block
    /// and header linking to the one before by parent hash and consecutive height.
    pub(super) fn on_sync(
        &mut self,
        from: u16,
        blocks: Vec<Block>,
        headers: Vec<Header>,
        finalization: Certificate,
    ) {
        let Some(last_block) = blocks.last() else {
            return;
        };
        let certified = headers
            .last()
            .map_or_else(|| last_block.hash(), Header::hash);
        if finalization.vote.kind != VoteKind::Finalize || finalization.vote.block != certified {
            return;
        }
        // Cheap structural checks first (hash links, consecutive heights, one epoch), so a
        // malformed response never costs signature verifications. Heights come from the
        // peer: checked arithmetic, never an overflow.
        let epoch = self.cfg.validators.epoch;
        let links = |parent: &Hash, height: Height, header: &Header| {
            header.parent_hash == *parent
                && height.checked_add(1) == Some(header.height)
                && header.epoch == epoch
        };
        let mut parent = last_block.hash();
        let mut height = last_block.header.height;
        for header in &headers {
            if !links(&parent, height, header) {
                return;
            }
            parent = header.hash();
            height = header.height;
        }
        let mut parent = self.tip.1;
        let mut height = self.tip.0;
        let mut fresh = Vec::new();
        for block in &blocks {
            if block.header.height <= self.tip.0 {
                continue;
            }
            if !links(&parent, height, &block.header) {
                return;
            }
            parent = block.hash();
            height = block.header.height;
            fresh.push(block.clone());
        }
        if fresh.is_empty() {
            return;
        }
        self.signatures_verified += finalization.signers.len() as u64;
        if verify_certificate(self.cfg.chain_id, &self.cfg.validators, &finalization).is_err() {
            return;
        }
        let view = finalization.vote.view;
        let more = !headers.is_empty() || blocks.len() >= crate::message::MAX_SYNC_BLOCKS;
        if self
            .latest_finalization
            .as_ref()
            .is_none_or(|c| c.vote.view < view)
        {
            self.latest_finalization = Some(finalization.clone());
        }
        self.deliver(fresh, headers, Some(finalization));
        if more && !self.ended {
            self.request_sync(Some(from));
        }
        self.enter_view(view.saturating_add(1), false);
        self.after_progress();
    }
}
