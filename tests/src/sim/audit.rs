//! Checks of a run made without the engine's code: every block an honest process finalized
//! lies under a finalization certificate that more than 2/3 of its epoch's validators signed
//! (each signature verified here against the keys the scenario gives that epoch), and honest
//! engines hold no more than bounds that depend on the validator count and the view window,
//! never on how many messages an adversary sends.

use super::{set_for, Fault, Sim, CHAIN_ID};
use keel_consensus::ValidatorSet;
use keel_consensus::{Message, Retained, MAX_PROPOSALS_PER_VIEW, MAX_UNCERTIFIED_PARENTS_PER_VIEW};
use keel_types::{Certificate, Hash, Header, VoteKind};
use std::collections::{BTreeMap, BTreeSet};

/// Blocks of one view that certificates can name: its notarization's and its finalization's
/// (the engine keeps the first of each kind; with at most f faults both name one block).
pub const CERTIFIED_PER_VIEW: usize = 2;
/// Proposals an engine may keep per view: `MAX_PROPOSALS_PER_VIEW`, plus the blocks a
/// certificate names, which it keeps even when the view is full (an equivocating leader can
/// get a third block certified after two others arrived).
pub const MAX_KEPT_PROPOSALS_PER_VIEW: usize = MAX_PROPOSALS_PER_VIEW + CERTIFIED_PER_VIEW;
/// Blocks an engine may hold per view: the proposals it keeps and one uncertified parent.
pub const MAX_BLOCKS_PER_VIEW: usize =
    MAX_KEPT_PROPOSALS_PER_VIEW + MAX_UNCERTIFIED_PARENTS_PER_VIEW;
/// Certificates an engine may hold per view: one notarization, nullification, finalization.
pub const MAX_CERTIFICATES_PER_VIEW: usize = 3;
/// Votes per view per validator: one notarize, one nullify, one finalize.
pub const MAX_VOTES_PER_VIEW_PER_VALIDATOR: usize = 3;
/// Honest deliveries between samples of the receiver's retained state (every delivery from a
/// Byzantine sender is sampled).
const SAMPLE_EVERY: u64 = 16;
/// Most violations of one kind (MEMORY, SENT) recorded per run (the first says what broke).
const MAX_REPORTS_PER_KIND: usize = 4;

/// The simulator's `Config::max_views_ahead` (see `Sim::config`).
const VIEWS_AHEAD: u64 = 64;

/// Whether `cert` (of any kind) is signed by more than 2/3 of the voting power of `set`:
/// distinct signers in increasing order, every signature valid over the vote it carries.
/// Written from the protocol's definition, not from keel-consensus.
fn signed_by_quorum(cert: &Certificate, set: &ValidatorSet) -> bool {
    let total: u128 = set.powers.iter().map(|p| u128::from(*p)).sum();
    let signed: u128 = cert
        .signers
        .iter()
        .map(|s| u128::from(set.powers.get(usize::from(*s)).copied().unwrap_or(0)))
        .sum();
    if cert.vote.chain_id != CHAIN_ID
        || cert.signers.len() != cert.signatures.len()
        || cert.signers.windows(2).any(|w| w[0] >= w[1])
        || 3 * signed <= 2 * total
    {
        return false;
    }
    let message = cert.vote.signing_hash();
    cert.signers.iter().zip(&cert.signatures).all(|(s, sig)| {
        set.keys
            .get(usize::from(*s))
            .is_some_and(|k| k.verify(&message.0, sig).is_ok())
    })
}

/// Whether `cert` is a finalization of `header` (hash `hash`) signed by more than 2/3 of the
/// voting power of `set`, every signature valid.
fn certifies(cert: &Certificate, hash: Hash, header: &Header, set: &ValidatorSet) -> bool {
    let v = &cert.vote;
    v.kind == VoteKind::Finalize
        && v.block == hash
        && v.view == header.view
        && v.epoch == header.epoch
        && signed_by_quorum(cert, set)
}

/// The leader of `view` for `powers`, written from docs/consensus.md, not from
/// keel-consensus: `view mod n` when all powers are equal; else turn `view mod L` of the
/// smooth weighted round robin over turns `max(1, ⌊power·4n/total⌋)` (L their sum).
fn leader_by_definition(powers: &[u64], view: u64) -> usize {
    let n = powers.len();
    if powers.windows(2).all(|w| w[0] == w[1]) {
        return (view % n.max(1) as u64) as usize;
    }
    let total: u128 = powers.iter().map(|p| u128::from(*p)).sum();
    let turns: Vec<i128> = powers
        .iter()
        .map(|p| (u128::from(*p) * 4 * n as u128 / total).max(1) as i128)
        .collect();
    let length: i128 = turns.iter().sum();
    let target = (u128::from(view) % length as u128) as usize;
    let mut credit = vec![0i128; n];
    let mut leader = 0;
    for _ in 0..=target {
        for i in 0..n {
            credit[i] += turns[i];
        }
        leader = (0..n).fold(0, |best, i| if credit[i] > credit[best] { i } else { best });
        credit[leader] -= length;
    }
    leader
}

impl Sim {
    fn epoch_keys(&self, cache: &mut BTreeMap<u64, ValidatorSet>, epoch: u64) -> ValidatorSet {
        cache
            .entry(epoch)
            .or_insert_with(|| set_for(&self.s, epoch))
            .clone()
    }

    /// Every block on an honest chain must be covered: it, or a block or header above it that
    /// links down to it by parent hashes, carries a finalization certificate that verifies
    /// against its epoch's keys. Proofs are pooled from every process's chain and ended-epoch
    /// suffix proofs (safety, checked separately, makes heights agree), highest first, so one
    /// verified certificate covers the whole chain under it.
    pub(super) fn audit_certified(&mut self) {
        let mut parent_of: BTreeMap<Hash, Hash> = BTreeMap::new();
        let mut proofs: Vec<(u64, Hash, Header, Certificate)> = Vec::new();
        for node in &self.nodes {
            for (b, cert) in &node.chain {
                parent_of.insert(b.hash(), b.header.parent_hash);
                if let Some(c) = cert {
                    proofs.push((b.header.height, b.hash(), b.header.clone(), c.clone()));
                }
            }
            for (headers, cert) in node.epoch_proofs.values() {
                // The suffix headers must link one to the next; their top is certified.
                let linked = headers.windows(2).all(|w| {
                    w[1].parent_hash == w[0].hash() && w[1].height == w[0].height.wrapping_add(1)
                });
                if let (true, Some(top)) = (linked, headers.last()) {
                    for h in headers {
                        parent_of.insert(h.hash(), h.parent_hash);
                    }
                    proofs.push((top.height, top.hash(), top.clone(), cert.clone()));
                }
            }
        }
        proofs.sort_by_key(|p| std::cmp::Reverse(p.0));
        let mut covered: BTreeSet<Hash> = BTreeSet::new();
        let mut keys = BTreeMap::new();
        for (_, hash, header, cert) in proofs {
            if covered.contains(&hash) {
                continue;
            }
            let epoch_keys = self.epoch_keys(&mut keys, header.epoch);
            if !certifies(&cert, hash, &header, &epoch_keys) {
                continue;
            }
            let mut cursor = Some(hash);
            while let Some(h) = cursor {
                if !covered.insert(h) {
                    break;
                }
                cursor = parent_of.get(&h).copied();
            }
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if node.fault != Fault::Honest {
                continue;
            }
            // Rule PROPOSER: a finalized block names its view's leader (who is paid its fees).
            if let Some((b, _)) = node.chain.iter().find(|(b, _)| {
                let set = self.epoch_keys(&mut keys, b.header.epoch);
                let leader = leader_by_definition(&set.powers, b.header.view);
                set.keys.get(leader) != Some(&b.header.proposer)
            }) {
                self.report.violations.push(format!(
                    "PROPOSER: validator {i} finalized height {} naming a proposer other than the leader of view {}",
                    b.header.height, b.header.view
                ));
            }
            for (b, _) in &node.chain {
                self.report.certified_blocks_checked += 1;
                if !covered.contains(&b.hash()) {
                    self.report.violations.push(format!(
                        "CERTIFICATE: validator {i} finalized height {} (epoch {}) with no finalization by > 2/3 of its epoch over it",
                        b.header.height, b.header.epoch
                    ));
                    break;
                }
            }
        }
    }

    /// Every certificate an honest process sends (forwarded, formed from votes it counted, or
    /// closing a sync response) must verify against its epoch's keys: a certificate that does
    /// not is one the honest node built from a vote it should have refused (a nullify naming a
    /// block signs another message than the other nullifies) or passes on unchecked.
    pub(super) fn audit_sent(&mut self, node: usize, message: &Message) {
        let cert = match message {
            Message::Certificate(c)
            | Message::SyncResponse {
                finalization: c, ..
            } => c,
            _ => return,
        };
        if self.nodes[node].fault != Fault::Honest
            || !self
                .audited_certificates
                .insert((cert.vote.signing_hash(), cert.signers.clone()))
        {
            return;
        }
        self.report.sent_certificates_checked += 1;
        let mut keys = std::mem::take(&mut self.audit_keys);
        let epoch_keys = self.epoch_keys(&mut keys, cert.vote.epoch);
        self.audit_keys = keys;
        if !signed_by_quorum(cert, &epoch_keys) {
            let what = format!(
                "honest process {node} at {} ms sent a {:?} certificate of view {} (epoch {}, signers {:?}) that does not verify",
                self.now, cert.vote.kind, cert.vote.view, cert.vote.epoch, cert.signers
            );
            self.report_limited("SENT", what);
        }
    }

    /// Records a violation of kind `kind` unless `MAX_REPORTS_PER_KIND` of it are in already
    /// (the first says what broke; a broken bound would otherwise be reported per sample).
    fn report_limited(&mut self, kind: &str, what: String) {
        let violations = &mut self.report.violations;
        if violations.iter().filter(|v| v.starts_with(kind)).count() < MAX_REPORTS_PER_KIND {
            violations.push(format!("{kind}: {what}"));
        }
    }

    /// Samples the retained state of honest process `node` after a delivery from `from`, and
    /// checks it against bounds set by the validator count and the view window alone.
    pub(super) fn sample_retained(&mut self, node: usize, from: u16) {
        let from_byzantine = self.s.faults[usize::from(from)] == Fault::Byzantine;
        if self.nodes[node].fault != Fault::Honest
            || (!from_byzantine && !self.seq.is_multiple_of(SAMPLE_EVERY))
        {
            return;
        }
        let Some(engine) = &self.nodes[node].engine else {
            return;
        };
        let r = engine.retained();
        let p = &mut self.report.peak_retained;
        *p = Retained {
            views: p.views.max(r.views),
            blocks: p.blocks.max(r.blocks),
            proposals: p.proposals.max(r.proposals),
            votes: p.votes.max(r.votes),
            certificates: p.certificates.max(r.certificates),
            max_blocks_per_view: p.max_blocks_per_view.max(r.max_blocks_per_view),
            max_proposals_per_view: p.max_proposals_per_view.max(r.max_proposals_per_view),
            max_votes_per_view: p.max_votes_per_view.max(r.max_votes_per_view),
            unfinalized_views: p.unfinalized_views.max(r.unfinalized_views),
            behind_tip: p.behind_tip.max(r.behind_tip),
        };
        let broken = memory_bound_broken(&r, self.s.n);
        if let Some(what) = broken {
            let what = format!("process {node} at {} ms: {what} ({r:?})", self.now);
            self.report_limited("MEMORY", what);
        }
    }
}

/// Which bound `r` breaks, if any. Views an engine holds lie between its finalized tip's view
/// and `max_views_ahead` past its current view: `unfinalized_views` (which only timeouts and
/// certificates of a quorum move) plus the window.
pub fn memory_bound_broken(r: &Retained, n: usize) -> Option<String> {
    let window =
        usize::try_from(r.unfinalized_views.saturating_add(VIEWS_AHEAD + 1)).unwrap_or(usize::MAX);
    let checks = [
        (
            r.behind_tip == 0,
            "views or blocks behind the finalized tip",
        ),
        (
            r.max_proposals_per_view <= MAX_KEPT_PROPOSALS_PER_VIEW,
            "proposals in one view",
        ),
        (
            r.max_blocks_per_view <= MAX_BLOCKS_PER_VIEW,
            "blocks of one view",
        ),
        (
            r.max_votes_per_view <= MAX_VOTES_PER_VIEW_PER_VALIDATOR * n,
            "votes in one view",
        ),
        (r.views <= window, "views beyond the window"),
        (
            r.blocks <= window.saturating_mul(MAX_BLOCKS_PER_VIEW).saturating_add(1),
            "blocks beyond the window",
        ),
        (
            r.certificates <= r.views.saturating_mul(MAX_CERTIFICATES_PER_VIEW),
            "certificates",
        ),
    ];
    checks
        .iter()
        .find(|(ok, _)| !ok)
        .map(|(_, what)| (*what).to_string())
}
