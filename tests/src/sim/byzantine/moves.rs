//! The adversary's moves: each builds, from what it saw, the messages it sends and to whom.

use super::{
    Adversary, Out, Sync, MAX_FAN_IN, MAX_INVENTED_ANCESTORS, MAX_OWN_PROPOSALS,
    MAX_STALE_ANCESTORS, SYNC_CHAIN, VIEWS_AHEAD,
};
use keel_consensus::{Message, MAX_PROPOSALS_PER_VIEW};
use keel_types::{Certificate, Hash, SignedVote, Vote, VoteKind};
use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::BTreeMap;

impl Adversary {
    pub(super) fn replay(&mut self) -> Out {
        let rng = &mut self.rng;
        let m =
            match rng.gen_range(0..5) {
                0 => self.votes.pick(rng).map(Message::Vote),
                1 => self.certs.pick(rng).map(Message::Certificate),
                2 => self
                    .proposals
                    .pick(rng)
                    .map(|(block, vote)| Message::Propose { block, vote }),
                3 => self.syncs.pick(rng).map(|(blocks, headers, finalization)| {
                    Message::SyncResponse {
                        blocks,
                        headers,
                        finalization,
                    }
                }),
                _ => self.any_block().map(Message::BlockResponse),
            };
        m.map(|m| self.send_to_some(m)).unwrap_or_default()
    }

    /// An observed vote re-signed with its own key, twisted, or misattributed.
    pub(super) fn resigned_vote(&mut self) -> Out {
        let Some(seen) = self.votes.pick(&mut self.rng) else {
            return vec![];
        };
        let vote = self.twist_vote(seen.vote);
        let signed = match self.rng.gen_range(0..4) {
            // Its own signature claimed as the original signer's.
            0 => self.sign_as(vote, seen.signer),
            // The original signature claimed as its own.
            1 => SignedVote {
                signer: self.index,
                ..seen
            },
            _ => self.sign(vote),
        };
        self.send_to_some(Message::Vote(signed))
    }

    /// In its next leader view: one to three valid blocks on the parent it saw, handed out
    /// per recipient (equivocation), with notarize and finalize votes for several of them.
    pub(super) fn own_proposals(&mut self) -> Out {
        let n = self.s.n as u64;
        let start = self.view.saturating_sub(1);
        let offset = (u64::from(self.index) + n - start % n) % n;
        let view = start.saturating_add(offset);
        let Some(parent) = self.parent_for(view) else {
            return vec![];
        };
        // Up to `MAX_OWN_PROPOSALS` distinct blocks, several to one recipient at times.
        let count = self.rng.gen_range(1..=MAX_OWN_PROPOSALS);
        let mut made = Vec::new();
        for _ in 0..count {
            // A fresh salt each time: every step in the same view makes new blocks (a flood
            // of distinct proposals for one view), and now and then one that names another
            // validator as proposer (paid its fees) though this one signs as leader.
            let salt = self.rng.gen_range(0..1_000);
            let mut block = self.make_block(view, &parent, salt);
            if self.rng.gen_bool(0.2) {
                block.header.proposer = self.someone_key(block.header.epoch);
            }
            let vote = self.sign(self.vote_for(view, VoteKind::Notarize, block.hash()));
            self.remember(&block);
            made.push((block, vote));
        }
        let mut out = Vec::new();
        for to in self.targets.clone() {
            if self.rng.gen_bool(0.1) {
                continue; // withheld from this one
            }
            if self.rng.gen_bool(0.2) {
                // A flood: every block of the view to this one validator.
                out.extend(made.iter().map(|(block, vote)| {
                    (
                        to,
                        Message::Propose {
                            block: block.clone(),
                            vote: *vote,
                        },
                    )
                }));
                continue;
            }
            let (block, vote) = made
                .choose(&mut self.rng)
                .cloned()
                .unwrap_or_else(|| made[0].clone());
            out.push((to, Message::Propose { block, vote }));
            if self.rng.gen_bool(0.3) {
                let (other, _) = made
                    .choose(&mut self.rng)
                    .cloned()
                    .unwrap_or_else(|| made[0].clone());
                let kind = *[VoteKind::Notarize, VoteKind::Finalize]
                    .choose(&mut self.rng)
                    .unwrap_or(&VoteKind::Finalize);
                let v = self.sign(self.vote_for(view, kind, other.hash()));
                out.push((to, Message::Vote(v)));
            }
        }
        out
    }

    /// A proposal (seen, or its own) with one field changed, signed by itself: as the signer
    /// it is, or claiming the view's leader's index.
    pub(super) fn twisted_proposal(&mut self) -> Out {
        let base = match self.proposals.pick(&mut self.rng) {
            Some((b, _)) if self.rng.gen_bool(0.6) => b,
            _ => {
                let view = self.view;
                let Some(parent) = self.parent_for(view) else {
                    return vec![];
                };
                self.make_block(view, &parent, 7)
            }
        };
        let block = self.twist_block(base);
        let view = if self.rng.gen_bool(0.8) {
            block.header.view
        } else {
            self.view
        };
        let mut vote = self.vote_for(view, VoteKind::Notarize, block.hash());
        vote.epoch = block.header.epoch;
        let signer = if self.rng.gen_bool(0.5) {
            self.index
        } else {
            self.leader(view)
        };
        let vote = self.sign_as(vote, signer);
        self.send_to_some(Message::Propose { block, vote })
    }

    /// Conflicting votes for one recent view, a different one per recipient.
    pub(super) fn equivocating_votes(&mut self) -> Out {
        let view = self.view.saturating_sub(self.rng.gen_range(0..3));
        let mut candidates: Vec<Hash> = self
            .proposals
            .items
            .iter()
            .filter(|(b, _)| b.header.view == view)
            .map(|(b, _)| b.hash())
            .collect();
        candidates.push(self.some_hash());
        let mut out = Vec::new();
        for to in self.targets.clone() {
            for _ in 0..self.rng.gen_range(1..=2) {
                let block = *candidates.choose(&mut self.rng).unwrap_or(&Hash::ZERO);
                let (kind, block) = match self.rng.gen_range(0..3) {
                    0 => (VoteKind::Notarize, block),
                    1 => (VoteKind::Finalize, block),
                    // A nullify, half the time naming a block (a nullification formed
                    // with it last would carry a message the others never signed).
                    _ if self.rng.gen_bool(0.5) => (VoteKind::Nullify, block),
                    _ => (VoteKind::Nullify, Hash::ZERO),
                };
                let v = self.sign(self.vote_for(view, kind, block));
                out.push((to, Message::Vote(v)));
            }
        }
        out
    }

    /// A seen certificate with its signer set or its vote changed.
    pub(super) fn twist_cert(&mut self, mut c: Certificate) -> Certificate {
        let n = self.s.n as u16;
        match self.rng.gen_range(0..10) {
            0 => {} // as it was: a replay, maybe of another epoch or view
            1 => {
                // Its own signature added (over quorum, or in place of a missing one).
                if let Err(at) = c.signers.binary_search(&self.index) {
                    let sig = self.sign(c.vote).signature;
                    c.signers.insert(at, self.index);
                    c.signatures.insert(at, sig);
                }
            }
            2 => {
                // A signer counted twice.
                if let (Some(&s), Some(&sig)) = (c.signers.first(), c.signatures.first()) {
                    c.signers.insert(0, s);
                    c.signatures.insert(0, sig);
                }
            }
            3 => {
                // Every validator "signed": its own signature fills the missing places.
                let sig = self.sign(c.vote).signature;
                let have: BTreeMap<u16, _> = c
                    .signers
                    .iter()
                    .copied()
                    .zip(c.signatures.iter().copied())
                    .collect();
                c.signers = (0..n).collect();
                c.signatures = (0..n).map(|i| *have.get(&i).unwrap_or(&sig)).collect();
            }
            4 => {
                // Relabelled for another epoch: the signers are the wrong epoch's.
                c.vote.epoch = c
                    .vote
                    .epoch
                    .wrapping_add(*[1, u64::MAX].choose(&mut self.rng).unwrap_or(&1));
            }
            5 => {
                // Its own signature made with another epoch's key.
                if let Some(at) = c.signers.iter().position(|&s| s == self.index) {
                    let other = Vote {
                        epoch: c.vote.epoch.wrapping_add(1),
                        ..c.vote
                    };
                    c.signatures[at] = self.sign(other).signature;
                } else {
                    c.signers.pop();
                    c.signatures.pop();
                }
            }
            6 => c.vote = self.twist_vote(c.vote),
            7 => {
                // A nullification that names a block.
                c.vote.kind = VoteKind::Nullify;
                c.vote.block = self.some_hash();
            }
            8 => {
                c.signers
                    .push(*[n, n + 5, u16::MAX].choose(&mut self.rng).unwrap_or(&n));
                let sig = self.sign(c.vote).signature;
                c.signatures.push(sig);
            }
            _ => c.vote.view = self.extreme(),
        }
        c
    }

    pub(super) fn twisted_certificate(&mut self) -> Out {
        let Some(c) = self.certs.pick(&mut self.rng) else {
            return vec![];
        };
        let c = self.twist_cert(c);
        self.send_to_some(Message::Certificate(c))
    }

    /// A sync response: a real one seen, or blocks walked back from the newest finalization,
    /// then mixed: truncated, reordered, duplicated, forged, extended, with another (real)
    /// certificate, or blocks turned into headers.
    pub(super) fn make_sync(&mut self) -> Option<Sync> {
        if self.rng.gen_bool(0.5) {
            if let Some(s) = self.syncs.pick(&mut self.rng) {
                return Some(s);
            }
        }
        let cert = if self.rng.gen_bool(0.7) {
            self.finalized.clone()
        } else {
            self.certs
                .items
                .iter()
                .filter(|c| c.vote.kind == VoteKind::Finalize)
                .collect::<Vec<_>>()
                .choose(&mut self.rng)
                .map(|c| (*c).clone())
        }?;
        let mut chain = Vec::new();
        let mut cursor = cert.vote.block;
        while let Some(b) = self.blocks.get(&cursor) {
            chain.push(b.clone());
            cursor = b.header.parent_hash;
            if chain.len() >= SYNC_CHAIN {
                break;
            }
        }
        chain.reverse();
        let keep = self.rng.gen_range(1..=chain.len().max(1));
        let chain = chain.split_off(chain.len().saturating_sub(keep));
        Some((chain, vec![], cert))
    }

    pub(super) fn twisted_sync(&mut self, to: Option<u16>) -> Out {
        let Some((mut blocks, mut headers, mut cert)) = self.make_sync() else {
            return vec![];
        };
        let moves = self.rng.gen_range(1..=2);
        for _ in 0..moves {
            let len = blocks.len();
            match self.rng.gen_range(0..12) {
                0 => {} // as it is (stale for most recipients)
                1 if len > 0 => {
                    blocks.remove(0);
                }
                2 => {
                    blocks.pop();
                }
                3 if len > 1 => {
                    let (i, j) = (self.rng.gen_range(0..len), self.rng.gen_range(0..len));
                    blocks.swap(i, j);
                }
                4 if len > 0 => {
                    let i = self.rng.gen_range(0..len);
                    let b = blocks[i].clone();
                    blocks.insert(i, b);
                }
                5 if len > 0 => {
                    let i = self.rng.gen_range(0..len);
                    blocks[i] = self.twist_block(blocks[i].clone());
                }
                6 if len > 0 => {
                    // [.., T, X]: a block invented on the certified top; or [X, T].
                    let top = blocks[len - 1].clone();
                    let x = self.make_block(top.header.view.saturating_add(1), &top, 0xbad);
                    if self.rng.gen_bool(0.5) {
                        blocks.push(x);
                    } else {
                        blocks.insert(0, x);
                    }
                }
                7 => {
                    if let Some(other) = self.certs.pick(&mut self.rng) {
                        cert = other; // another real certificate: stale, or of another kind
                    }
                }
                8 if len > 0 => {
                    // The top block sent as a header (or as a forged header).
                    let b = blocks.remove(len - 1);
                    let h = if self.rng.gen_bool(0.5) {
                        b.header
                    } else {
                        self.twist_block(b).header
                    };
                    headers.push(h);
                }
                9 => {
                    if let Some(b) = blocks.last().cloned() {
                        let x = self.make_block(b.header.view.saturating_add(1), &b, 0xbee);
                        headers.push(x.header);
                    }
                }
                10 => cert = self.twist_cert(cert),
                _ => {
                    if let Some((other, _, _)) = self.syncs.pick(&mut self.rng) {
                        blocks.extend(other); // blocks of two responses
                    }
                }
            }
        }
        let message = Message::SyncResponse {
            blocks,
            headers,
            finalization: cert,
        };
        match to {
            Some(to) => vec![(to, message)],
            None => self.send_to_some(message),
        }
    }

    /// A proposal in its next leader view on a chain of invented ancestors (each one view
    /// apart), with the ancestors sent unasked as block responses.
    pub(super) fn invented_ancestors(&mut self) -> Out {
        let Some(mut parent) = self.any_block() else {
            return vec![];
        };
        let depth = self.rng.gen_range(1..=MAX_INVENTED_ANCESTORS);
        let mut chain = Vec::new();
        for _ in 0..depth {
            let view = parent.header.view.saturating_add(1);
            let b = self.make_block(view, &parent, 0xa1);
            self.invented.put(&mut self.rng, b.clone());
            chain.push(b.clone());
            parent = b;
        }
        let n = self.s.n as u64;
        let above = parent.header.view.saturating_add(1).max(self.view);
        let view = above.saturating_add((u64::from(self.index) + n - above % n) % n);
        let top = self.make_block(view, &parent, 0xa2);
        let vote = self.sign(self.vote_for(view, VoteKind::Notarize, top.hash()));
        let mut out = self.send_to_some(Message::Propose { block: top, vote });
        for b in chain.into_iter().rev() {
            out.extend(self.send_to_some(Message::BlockResponse(b)));
        }
        out
    }

    /// Its next leader view at or after `view`.
    fn own_view_from(&self, view: u64) -> u64 {
        let n = self.s.n as u64;
        view.saturating_add((u64::from(self.index) + n - view % n) % n)
    }

    /// Two proposals in every view it leads within the window, each on its own unsigned
    /// parent in one shared earlier view, all to one validator, the parents sent unasked
    /// (now and on the next steps). An engine that kept every parent of a block it knows
    /// would hold one block per proposal in that shared view.
    pub(super) fn fan_in_parents(&mut self) -> Out {
        let (Some(base), Some(&to)) = (
            self.parent_for(self.view),
            self.targets.choose(&mut self.rng),
        ) else {
            return vec![];
        };
        let shared = base.header.view.saturating_add(1);
        let mut leader_view = self.own_view_from(shared.saturating_add(1).max(self.view));
        let edge = self.view.saturating_add(VIEWS_AHEAD);
        let (mut proposals, mut parents) = (Vec::new(), Vec::new());
        while leader_view <= edge && parents.len() < MAX_FAN_IN {
            for _ in 0..MAX_PROPOSALS_PER_VIEW {
                let salt = 0x100 + parents.len() as u64;
                let parent = self.make_block(shared, &base, salt);
                let top = self.make_block(leader_view, &parent, salt);
                let vote = self.sign(self.vote_for(leader_view, VoteKind::Notarize, top.hash()));
                proposals.push((to, Message::Propose { block: top, vote }));
                parents.push((to, Message::BlockResponse(parent)));
            }
            leader_view = leader_view.saturating_add(self.s.n as u64);
        }
        self.send_again(&parents);
        proposals.extend(parents);
        proposals
    }

    /// One proposal on a chain of unsigned ancestors whose views go down into views the
    /// honest validators have finalized, at heights above their tip (so only the view tells
    /// them apart), sent child first now and on the next steps. An engine that took them
    /// would hold blocks and views behind its finalized tip.
    pub(super) fn stale_ancestors(&mut self) -> Out {
        let Some(fin) = self.finalized.clone() else {
            return vec![];
        };
        let Some(tip) = self.blocks.get(&fin.vote.block).cloned() else {
            return vec![];
        };
        let Some(&to) = self.targets.choose(&mut self.rng) else {
            return vec![];
        };
        let top_view = tip.header.view;
        let depth = self.rng.gen_range(1..=MAX_STALE_ANCESTORS).min(top_view);
        // Bottom up: heights climb from the tip's while views climb to the tip's own view.
        let mut chain = Vec::new();
        let mut parent = tip;
        for i in (0..depth).rev() {
            let b = self.make_block(top_view - i, &parent, 0x57);
            chain.push(b.clone());
            parent = b;
        }
        let view = self.own_view_from(self.view.max(top_view.saturating_add(1)));
        let top = self.make_block(view, &parent, 0x57);
        let vote = self.sign(self.vote_for(view, VoteKind::Notarize, top.hash()));
        let ancestors: Out = chain
            .into_iter()
            .rev()
            .map(|b| (to, Message::BlockResponse(b)))
            .collect();
        self.send_again(&ancestors);
        let mut out = vec![(to, Message::Propose { block: top, vote })];
        out.extend(ancestors);
        out
    }

    /// u64 extremes in a vote, a proposal and a certificate.
    pub(super) fn extremes(&mut self) -> Out {
        let mut out = Vec::new();
        let (view, epoch) = (self.extreme(), self.extreme());
        let kind = *[VoteKind::Notarize, VoteKind::Nullify, VoteKind::Finalize]
            .choose(&mut self.rng)
            .unwrap_or(&VoteKind::Nullify);
        let block = self.some_hash();
        let mut v = self.vote_for(view, kind, block);
        if self.rng.gen_bool(0.3) {
            v.epoch = epoch;
        }
        let signed = self.sign(v);
        out.extend(self.send_to_some(Message::Vote(signed)));
        if let Some(parent) = self.any_block() {
            let mut b = self.make_block(view, &parent, 0xe);
            b.header.height = self.extreme();
            let vote = self.sign_as(
                self.vote_for(view, VoteKind::Notarize, b.hash()),
                self.leader(view),
            );
            out.extend(self.send_to_some(Message::Propose { block: b, vote }));
        }
        if let Some(mut c) = self.certs.pick(&mut self.rng) {
            c.vote.view = view;
            out.extend(self.send_to_some(Message::Certificate(c)));
        }
        out
    }

    /// Requests that make honest validators answer (its source of real sync responses).
    pub(super) fn requests(&mut self) -> Out {
        let top = self
            .blocks
            .values()
            .map(|b| b.header.height)
            .max()
            .unwrap_or(1);
        let from_height = match self.rng.gen_range(0..4) {
            0 => self.extreme(),
            _ => self.rng.gen_range(1..=top.max(1)),
        };
        let hash = self.some_hash();
        let mut out = self.send_to_some(Message::SyncRequest { from_height });
        out.extend(self.send_to_some(Message::BlockRequest(hash)));
        out
    }
}
