//! Votes and certificates: checking one vote (signature, chain, epoch, signer, view window),
//! counting it toward a quorum, and applying the certificates that form or arrive —
//! notarization, nullification, finalization (docs/consensus.md names each rule).

use super::*;

impl Engine {
    /// Signature, chain, epoch, signer and view-window checks for a single vote.
    pub(super) fn check_vote(&mut self, vote: &SignedVote) -> VoteCheck {
        let v = &vote.vote;
        if v.chain_id != self.cfg.chain_id || v.epoch != self.cfg.validators.epoch {
            return VoteCheck::Invalid;
        }
        // A nullify names no block: one that does would make the nullification formed from
        // it carry a message the other signers never signed.
        if v.kind == VoteKind::Nullify && v.block != Hash::ZERO {
            return VoteCheck::Invalid;
        }
        if v.view <= self.tip.2 || v.view > self.view.saturating_add(self.cfg.max_views_ahead) {
            return VoteCheck::Invalid;
        }
        let Some(key) = self.cfg.validators.key(vote.signer) else {
            return VoteCheck::Invalid;
        };
        // A vote this signer already has counted for the same view, kind and block adds
        // nothing (duplicates, re-broadcasts): skip the signature check and the tally.
        if let Some(state) = self.views.get(&v.view) {
            let counted = match v.kind {
                VoteKind::Notarize => state
                    .notarizes
                    .get(&vote.signer)
                    .map(|(h, _)| *h == v.block),
                VoteKind::Finalize => state
                    .finalizes
                    .get(&vote.signer)
                    .map(|(h, _)| *h == v.block),
                VoteKind::Nullify => state.nullifies.get(&vote.signer).map(|_| true),
            };
            if counted == Some(true) {
                return VoteCheck::AlreadyCounted;
            }
        }
        self.signatures_verified += 1;
        if vote.verify(key).is_ok() {
            VoteCheck::New
        } else {
            VoteCheck::Invalid
        }
    }

    /// Re-checks everything that may have been waiting on a block or certificate.
    pub(super) fn after_progress(&mut self) {
        self.try_finalize_pending();
        self.try_propose();
        self.try_verify(self.view);
    }

    /// Tallies a verified vote; forms a certificate at quorum.
    pub(super) fn record_vote(&mut self, vote: SignedVote) {
        let view = vote.vote.view;
        let signer = vote.signer;
        if let Some(slot) = self.last_heard.get_mut(usize::from(signer)) {
            *slot = (*slot).max(view);
        }
        let set = &self.cfg.validators;
        let power_for = |votes: &BTreeMap<u16, (Hash, Signature)>, block: Hash| {
            set.power_of(
                votes
                    .iter()
                    .filter(|(_, (h, _))| *h == block)
                    .map(|(s, _)| *s),
            )
        };
        let state = self.views.entry(view).or_default();
        let cert = match vote.vote.kind {
            VoteKind::Notarize => {
                state
                    .notarizes
                    .entry(signer)
                    .or_insert((vote.vote.block, vote.signature));
                let power = power_for(&state.notarizes, vote.vote.block);
                (state.notarization.is_none() && set.is_quorum(power)).then(|| {
                    collect(
                        vote.vote,
                        state
                            .notarizes
                            .iter()
                            .filter(|(_, (h, _))| *h == vote.vote.block)
                            .map(|(s, (_, sig))| (*s, *sig)),
                    )
                })
            }
            VoteKind::Finalize => {
                state
                    .finalizes
                    .entry(signer)
                    .or_insert((vote.vote.block, vote.signature));
                let power = power_for(&state.finalizes, vote.vote.block);
                (state.finalization.is_none() && set.is_quorum(power)).then(|| {
                    collect(
                        vote.vote,
                        state
                            .finalizes
                            .iter()
                            .filter(|(_, (h, _))| *h == vote.vote.block)
                            .map(|(s, (_, sig))| (*s, *sig)),
                    )
                })
            }
            VoteKind::Nullify => {
                state.nullifies.entry(signer).or_insert(vote.signature);
                (state.nullification.is_none()
                    && set.is_quorum(set.power_of(state.nullifies.keys().copied())))
                .then(|| collect(vote.vote, state.nullifies.iter().map(|(s, sig)| (*s, *sig))))
            }
        };
        if let Some(cert) = cert {
            self.actions
                .push(Action::Broadcast(Message::Certificate(cert.clone())));
            self.apply_certificate(cert);
        }
        if vote.vote.kind == VoteKind::Notarize {
            self.fetch_backed(view, Some(signer));
        }
    }

    pub(super) fn on_certificate(&mut self, from: u16, cert: Certificate) {
        let view = cert.vote.view;
        if view <= self.tip.2 {
            return;
        }
        let known = self.views.get(&view).is_some_and(|s| match cert.vote.kind {
            VoteKind::Notarize => s.notarization.is_some(),
            VoteKind::Nullify => s.nullification.is_some(),
            VoteKind::Finalize => s.finalization.is_some(),
        });
        if known {
            return;
        }
        self.signatures_verified += cert.signers.len() as u64;
        if verify_certificate(self.cfg.chain_id, &self.cfg.validators, &cert).is_err() {
            return;
        }
        let block = cert.vote.block;
        let is_nullify = cert.vote.kind == VoteKind::Nullify;
        self.apply_certificate(cert);
        if !is_nullify && self.block_height(&block).is_none() {
            self.actions.push(Action::Send {
                to: from,
                message: Message::BlockRequest(block),
            });
        }
    }

    pub(super) fn apply_certificate(&mut self, cert: Certificate) {
        let view = cert.vote.view;
        let block = cert.vote.block;
        match cert.vote.kind {
            VoteKind::Notarize => {
                self.view_mut(view).notarization = Some(cert);
                // Rule FINALIZE: seeing a notarization for a view this validator did not
                // nullify, sign finalize for that block.
                let state = self.view_mut(view);
                if !state.my_nullify && state.my_finalize.is_none() && self.me().is_some() {
                    if let Some(vote) = self.sign(self.vote(view, VoteKind::Finalize, block)) {
                        self.view_mut(view).my_finalize = Some(block);
                        self.actions.push(Action::Persist(VoteRecord::Finalized {
                            epoch: vote.vote.epoch,
                            view,
                            block,
                        }));
                        self.actions.push(Action::Broadcast(Message::Vote(vote)));
                        self.record_vote(vote);
                    }
                }
                self.enter_view(view.saturating_add(1), false);
            }
            VoteKind::Nullify => {
                self.view_mut(view).nullification = Some(cert);
                self.enter_view(view.saturating_add(1), true);
            }
            VoteKind::Finalize => {
                if self
                    .latest_finalization
                    .as_ref()
                    .is_none_or(|c| c.vote.view < view)
                {
                    self.latest_finalization = Some(cert.clone());
                }
                self.view_mut(view).finalization = Some(cert);
                if self.pending_finalization.is_none_or(|(v, _)| v < view) {
                    self.pending_finalization = Some((view, block));
                }
                self.enter_view(view.saturating_add(1), false);
            }
        }
        self.after_progress();
    }
}

fn collect(vote: Vote, signatures: impl Iterator<Item = (u16, Signature)>) -> Certificate {
    // BTreeMap iteration is by signer index, so signers come out strictly increasing.
    let (signers, signatures) = signatures.unzip();
    Certificate {
        vote,
        signers,
        signatures,
    }
}
