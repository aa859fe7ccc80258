//! The epoch chain a syncing node trusts (docs/validators.md, "Snapshot sync"): the
//! longest chain of epoch changes its peers serve that verifies from genesis or the
//! checkpoint, asked of several peers so one fast Byzantine peer is not the only one heard.

use super::*;

impl Client<'_> {
    /// The longest epoch chain a peer serves that verifies from genesis (or the
    /// checkpoint). Two verified chains that disagree on an epoch's boundary are a long-range
    /// fork (keys of a past set re-signing history): nothing is trusted, the operator must
    /// give a checkpoint.
    pub(super) fn epoch_chain(
        &mut self,
        genesis: &Genesis,
        checkpoint: Option<(Height, Hash)>,
    ) -> Result<(Trusted, Vec<EpochChange>), SnapshotSyncError> {
        let mut best: Option<(Trusted, Vec<EpochChange>)> = None;
        self.peers()?;
        // Not only the first peer that connects: the others get a moment, so one fast
        // Byzantine peer is not the only one asked.
        // The peer table's size; a genesis validator's own key is in it and never connects,
        // which costs it the whole wait.
        let known = self.t.known();
        let settle = self.t.now_ms();
        while self.t.connected().len() < known.min(SNAPSHOT_PROOF_PEERS)
            && self.t.now_ms().saturating_sub(settle) < PEER_SETTLE_MS
        {
            self.t.recv(PEER_POLL_MS)?;
        }
        // Peers that said no epoch has ended; peers that finished their answer (a whole
        // chain, no chain, or a lie): those are not asked again.
        let mut empty = Vec::new();
        let mut finished = BTreeSet::new();
        for round in 0..CHAIN_ROUNDS {
            if round > 0 {
                self.t.pause(CHAIN_RETRY_PAUSE_MS);
            }
            let left = SNAPSHOT_PROOF_PEERS.saturating_sub(finished.len());
            let ask: Vec<u16> = self
                .peers()?
                .into_iter()
                .filter(|p| !finished.contains(p))
                .take(left)
                .collect();
            let mut unfinished = false;
            for peer in ask {
                let answer = match self.chain_from(peer, genesis, checkpoint)? {
                    Ok(answer) => answer,
                    Err(e) => {
                        finished.insert(peer);
                        self.drop_peer(peer, &e);
                        continue;
                    }
                };
                if answer.finished {
                    finished.insert(peer);
                } else {
                    unfinished = true;
                }
                if answer.empty {
                    empty.push(peer);
                }
                // A chain cut short (its next page lost, or refused) still counts: it
                // verified as far as it goes.
                if let Some(found) = answer.chain {
                    if let Some((_, known)) = &best {
                        if let Some(epoch) = first_disagreement(known, &found.1) {
                            return Err(SnapshotSyncError::ConflictingChains { epoch });
                        }
                    }
                    if best
                        .as_ref()
                        .is_none_or(|(b, _)| found.0.boundary.0 > b.boundary.0)
                    {
                        best = Some(found);
                    }
                }
            }
            // Done once every peer asked finished its answer, or once peers holding more
            // than a third of genesis' stake did (one of them is honest: no longer chain
            // is being withheld from the longest one served) — f Byzantine peers that
            // serve an old chain, or none, cannot end the asking while the honest peers'
            // answers were lost.
            let finished_peers: Vec<u16> = finished
                .iter()
                .copied()
                .filter(|p| !self.dropped.contains(p))
                .collect();
            if !unfinished || power_exceeds_a_third(genesis, &finished_peers) {
                break;
            }
            tracing::info!(
                round,
                "snapshot sync: peers holding a third of the stake have not finished serving their epoch chains; asking again"
            );
        }
        let best = match best {
            Some(best) => best,
            // A chain younger than its first epoch has no boundary to restore (and nothing
            // pruned yet that block sync would need).
            // Believed only from more than a third of genesis' power: f Byzantine peers
            // alone cannot send a node to block sync on a chain whose history is pruned.
            None if power_exceeds_a_third(genesis, &empty) => {
                return Err(SnapshotSyncError::NoBoundaryYet)
            }
            None => return Err(SnapshotSyncError::NoEpochChain),
        };
        // A chain whose last boundary is dated in the future was not made by this network's
        // clock-bound validators.
        let last = best.1.last().map_or(0, |c| c.last.timestamp_ms);
        if last
            > self
                .t
                .wall_ms()
                .saturating_add(keel_app::MAX_FUTURE_DRIFT_MS)
        {
            return Err(SnapshotSyncError::FutureChain { timestamp_ms: last });
        }
        Ok(best)
    }

    fn chain_from(
        &mut self,
        peer: u16,
        genesis: &Genesis,
        checkpoint: Option<(Height, Hash)>,
    ) -> Result<Result<PeerChain, EpochProofError>, SnapshotSyncError> {
        let (chain_id, length) = (genesis.chain_id, genesis.epoch_length);
        let mut from_epoch = match checkpoint {
            Some((height, _)) => (height / length).saturating_sub(1),
            None => 0,
        };
        let mut trusted: Option<(Trusted, Vec<EpochChange>)> = None;
        loop {
            let request = SnapshotMessage::EpochChangesRequest { from_epoch };
            let Some(SnapshotMessage::EpochChanges { changes: raw, .. }) =
                self.ask(peer, request)?
            else {
                // No answer in time, or a refusal: asked again in the next round.
                return Ok(Ok(PeerChain {
                    chain: trusted,
                    finished: false,
                    empty: false,
                }));
            };
            let mut changes = Vec::with_capacity(raw.len());
            for bytes in &raw {
                match EpochChange::decode(bytes) {
                    Ok(change) => changes.push(change),
                    Err(e) => return Ok(Err(EpochProofError::Malformed(e.to_string()))),
                }
            }
            if changes.is_empty() {
                return Ok(Ok(PeerChain {
                    empty: trusted.is_none() && checkpoint.is_none(),
                    chain: trusted,
                    finished: true,
                }));
            }
            let verified = match &trusted {
                None => match checkpoint {
                    Some(at) => epoch_proof::verify_from_checkpoint(chain_id, length, at, &changes),
                    None => epoch_proof::verify_from_set(
                        chain_id,
                        length,
                        genesis.epoch_set(),
                        &changes,
                    ),
                },
                Some((t, _)) => {
                    epoch_proof::verify_from_set(chain_id, length, t.set.clone(), &changes)
                }
            };
            match verified {
                Ok(t) => {
                    let mut all = trusted.map(|(_, all)| all).unwrap_or_default();
                    all.extend(changes);
                    trusted = Some((t, all));
                }
                Err(e) => return Ok(Err(e)),
            }
            from_epoch += raw.len() as u64;
        }
    }
}

/// What one peer served of its epoch chain.
struct PeerChain {
    /// The changes that verified, as far as they went.
    chain: Option<VerifiedChain>,
    /// It answered to the end (an empty page); otherwise a page went unanswered or was
    /// refused, and the chain may be cut short.
    finished: bool,
    /// It said no epoch has ended (its first page was empty, with no checkpoint).
    empty: bool,
}

/// Whether the genesis validators among `peers` (peer indices below genesis' count are
/// genesis validators, in order) hold more than a third of genesis' stake.
fn power_exceeds_a_third(genesis: &Genesis, peers: &[u16]) -> bool {
    let total = genesis
        .validators
        .iter()
        .fold(keel_types::U256::ZERO, |sum, v| sum + v.stake);
    let theirs = peers
        .iter()
        .filter_map(|p| genesis.validators.get(usize::from(*p)))
        .fold(keel_types::U256::ZERO, |sum, v| sum + v.stake);
    theirs * keel_types::U256::from(3u64) > total
}

/// The first epoch two verified chains end differently, if any.
fn first_disagreement(a: &[EpochChange], b: &[EpochChange]) -> Option<u64> {
    let by_epoch: BTreeMap<u64, Hash> = a.iter().map(|c| (c.epoch, c.last.hash())).collect();
    b.iter()
        .find(|c| by_epoch.get(&c.epoch).is_some_and(|h| *h != c.last.hash()))
        .map(|c| c.epoch)
}
