//! Validator sets, quorum sizes, and certificate verification (signatures batch-verified).

use keel_types::crypto::verify_batch;
use keel_types::{Certificate, Epoch, Hash, PublicKey, Vote, VoteKind};

/// Validators needed for a quorum among `n` of equal power: n − f with f the largest such
/// that n ≥ 3f + 1, so that any two quorums intersect in at least f + 1 (one honest). The
/// weighted rule ([`ValidatorSet::is_quorum`]) gives the same count for equal powers.
pub fn quorum_size(n: usize) -> usize {
    let f = n.saturating_sub(1) / 3;
    n - f
}

/// The leader of `view` among `n` validators: round robin by index (power decides quorums,
/// not turns: a leader with little stake can propose but not certify alone).
pub fn leader_of(view: keel_types::View, n: usize) -> u16 {
    (view % (n as u64).max(1)) as u16
}

/// The validators of one epoch, in index order (a vote's `signer` indexes this list), each
/// with its voting power (its bonded stake in power units, never 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorSet {
    pub epoch: Epoch,
    pub keys: Vec<PublicKey>,
    /// `powers[i]` is the voting power of `keys[i]`; the same length.
    pub powers: Vec<u64>,
    /// The leaders' turn order ([`leader_schedule`]); empty: round robin (equal powers).
    pub schedule: Vec<u16>,
}

/// Turns per member in a leader schedule, on average: a member's share of the schedule's
/// `LEADER_SLOTS_PER_MEMBER × n` turns is its share of the power (at least one turn).
pub const LEADER_SLOTS_PER_MEMBER: u128 = 4;

/// The turn order of leaders for `powers` (docs/consensus.md): each member gets
/// `max(1, ⌊power × 4n / total⌋)` turns, spread by smooth weighted round robin — every
/// step each member's credit grows by its turns, the largest credit (ties: the smaller
/// index) leads and pays back the schedule's length — so a member's turns are evenly
/// spaced and faulty members' turns never come in long runs. Empty when all powers are
/// equal (plain round robin).
pub fn leader_schedule(powers: &[u64]) -> Vec<u16> {
    let equal = powers.windows(2).all(|w| w[0] == w[1]);
    let total: u128 = powers.iter().map(|p| u128::from(*p)).sum();
    if equal || total == 0 {
        return Vec::new();
    }
    let slots = LEADER_SLOTS_PER_MEMBER * powers.len() as u128;
    let turns: Vec<i128> = powers
        .iter()
        .map(|p| (u128::from(*p) * slots / total).max(1) as i128)
        .collect();
    let length: i128 = turns.iter().sum();
    let mut credit = vec![0i128; powers.len()];
    let mut schedule = Vec::with_capacity(length as usize);
    for _ in 0..length {
        for (c, t) in credit.iter_mut().zip(&turns) {
            *c += t;
        }
        let mut best = 0;
        for i in 1..credit.len() {
            if credit[i] > credit[best] {
                best = i;
            }
        }
        credit[best] -= length;
        schedule.push(u16::try_from(best).unwrap_or(u16::MAX));
    }
    schedule
}

impl ValidatorSet {
    /// A set where every validator has power 1 (counts are quorums).
    pub fn equal(epoch: Epoch, keys: Vec<PublicKey>) -> ValidatorSet {
        let powers = vec![1; keys.len()];
        ValidatorSet::weighted(epoch, keys, powers)
    }

    /// A set with these powers (`powers[i]` of `keys[i]`) and its leader schedule.
    pub fn weighted(epoch: Epoch, keys: Vec<PublicKey>, powers: Vec<u64>) -> ValidatorSet {
        let schedule = leader_schedule(&powers);
        ValidatorSet {
            epoch,
            keys,
            powers,
            schedule,
        }
    }

    /// The leader of `view`: round robin when powers are equal, else the view's turn in the
    /// schedule (found by review: with round robin over unequal powers, many minimum-stake
    /// members took as many turns as large ones and could lead — and stall — most views).
    pub fn leader(&self, view: keel_types::View) -> u16 {
        if self.schedule.is_empty() {
            return leader_of(view, self.len());
        }
        let turn = view % self.schedule.len() as u64;
        self.schedule[turn as usize]
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn key(&self, index: u16) -> Option<&PublicKey> {
        self.keys.get(usize::from(index))
    }

    /// The index of `key` in this set.
    pub fn index_of(&self, key: &PublicKey) -> Option<u16> {
        let index = self.keys.iter().position(|k| k == key)?;
        u16::try_from(index).ok()
    }

    /// The voting power of validator `index` (0 outside the set).
    pub fn power(&self, index: u16) -> u64 {
        self.powers.get(usize::from(index)).copied().unwrap_or(0)
    }

    /// The sum of every validator's power (u128: never overflows for any set size).
    pub fn total_power(&self) -> u128 {
        self.powers.iter().map(|p| u128::from(*p)).sum()
    }

    /// The summed power of `signers`, each counted once however often it appears.
    pub fn power_of(&self, signers: impl IntoIterator<Item = u16>) -> u128 {
        let unique: std::collections::BTreeSet<u16> = signers.into_iter().collect();
        unique.into_iter().map(|s| u128::from(self.power(s))).sum()
    }

    /// Whether `power` is more than 2/3 of the set's: any two such sets of signers share
    /// more than 1/3 of the power, so at least one honest validator while the faulty hold
    /// less than 1/3.
    pub fn is_quorum(&self, power: u128) -> bool {
        power.saturating_mul(3) > self.total_power().saturating_mul(2)
    }

    /// Whether `power` is more than 1/3 of the set's: at least one honest validator among
    /// them (the "f + 1" of equal powers).
    pub fn is_backing(&self, power: u128) -> bool {
        power.saturating_mul(3) > self.total_power()
    }

    /// Whether the set is well formed: as many powers as keys, none of them 0, no key twice.
    pub fn is_well_formed(&self) -> bool {
        let unique: std::collections::BTreeSet<&PublicKey> = self.keys.iter().collect();
        self.keys.len() == self.powers.len()
            && unique.len() == self.keys.len()
            && self.powers.iter().all(|p| *p > 0)
            && !self.keys.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("certificate is for epoch {got}, this set is epoch {expected}")]
    WrongEpoch { expected: Epoch, got: Epoch },
    #[error("certificate is for chain {got}, expected {expected}")]
    WrongChain { expected: u64, got: u64 },
    #[error("certificate signers hold power {got} of {total}, not more than 2/3")]
    NoQuorum { got: u128, total: u128 },
    #[error("signer index {0} is not in the validator set")]
    UnknownSigner(u16),
    #[error("certificate is not canonical: {0}")]
    Malformed(String),
    #[error("certificate signatures do not verify")]
    BadSignatures,
    #[error("nullification names block {0}; a nullify vote names no block")]
    NullifyNamesBlock(Hash),
}

/// Checks a certificate against `set`: right chain and epoch, a nullification naming no
/// block, strictly increasing known signers, a quorum of them, and every signature (one
/// batch verification).
pub fn verify_certificate(
    chain_id: u64,
    set: &ValidatorSet,
    cert: &Certificate,
) -> Result<(), CertificateError> {
    let vote: &Vote = &cert.vote;
    if vote.chain_id != chain_id {
        return Err(CertificateError::WrongChain {
            expected: chain_id,
            got: vote.chain_id,
        });
    }
    if vote.epoch != set.epoch {
        return Err(CertificateError::WrongEpoch {
            expected: set.epoch,
            got: vote.epoch,
        });
    }
    if vote.kind == VoteKind::Nullify && vote.block != Hash::ZERO {
        return Err(CertificateError::NullifyNamesBlock(vote.block));
    }
    use keel_types::Canonical;
    cert.validate()
        .map_err(|e| CertificateError::Malformed(e.to_string()))?;
    let power = set.power_of(cert.signers.iter().copied());
    if !set.is_quorum(power) {
        return Err(CertificateError::NoQuorum {
            got: power,
            total: set.total_power(),
        });
    }
    let message = vote.signing_hash();
    let mut items = Vec::with_capacity(cert.signers.len());
    for (signer, signature) in cert.signers.iter().zip(&cert.signatures) {
        let key = set
            .key(*signer)
            .ok_or(CertificateError::UnknownSigner(*signer))?;
        items.push((&message.0[..], *key, *signature));
    }
    verify_batch(&items).map_err(|_| CertificateError::BadSignatures)
}
