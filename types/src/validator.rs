//! The validator registry (docs/validators.md): who may become a validator, with what stake,
//! and the deterministic rule that turns the registry into each epoch's weighted set.
//!
//! Everything here is pure: records, the transactions that change them, and
//! [`next_set`], the function every validator runs at the last block of an epoch to fix the
//! next epoch's set. The runtime reads and writes the records in state.

use crate::encoding::{check_len, Canonical, DecodeError};
use crate::{Address, Domain, Hash, PublicKey, Signature, SignedVote, U256};
use borsh::{BorshDeserialize, BorshSerialize};
use std::collections::{BTreeMap, BTreeSet};

/// The address validator transactions show as their target to Ethereum clients (no code
/// there; the registry is written only by validator transactions).
pub const REGISTRY_ADDRESS: Address = Address([
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x90, 0x12,
]);

/// Wei of stake per unit of voting power: power = stake / 10⁹ (gwei), so any realistic
/// stake fits a u64 and 256 validators' powers sum within a u128.
pub const POWER_UNIT_WEI: u64 = 1_000_000_000;
/// Validators the registry holds at most, whatever their status (a registration needs
/// `min_stake` locked, so filling it costs that many stakes).
pub const MAX_REGISTERED_VALIDATORS: usize = 1_024;
/// Bytes of a validator's p2p address (`host:port`).
pub const MAX_P2P_ADDRESS_BYTES: usize = 128;
/// Pending unbondings per validator (an `Unbond` beyond it is refused until one is paid).
pub const MAX_UNBONDING_ENTRIES: usize = 16;
/// Gas of every validator transaction but an equivocation report: the record's read and
/// write and, for a registration or key rotation, a signature check.
pub const VALIDATOR_TX_GAS: u64 = 60_000;
/// Gas of an equivocation report: two signature checks and the record's write.
pub const EQUIVOCATION_REPORT_GAS: u64 = 80_000;

/// `min_stake` of a genesis that does not say: one token of 10¹⁸ wei.
pub const DEFAULT_MIN_STAKE: U256 = U256::from_limbs([1_000_000_000_000_000_000, 0, 0, 0]);
/// The stake of a genesis validator that does not say: 1,000 tokens.
pub const DEFAULT_GENESIS_STAKE: U256 = U256::from_limbs([3_875_820_019_684_212_736, 54, 0, 0]);
/// `unbonding_epochs` of a genesis that does not say.
pub const DEFAULT_UNBONDING_EPOCHS: u64 = 2;

/// A registered validator's standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum ValidatorStatus {
    /// Registered (or dropped from the set by the size cap or a stake below the minimum);
    /// enters the set at an epoch boundary when the rule lets it.
    Candidate = 0,
    /// In the current or the announced next set.
    Active = 1,
    /// Asked to leave: leaves the set at the next boundaries the change budget allows, then
    /// its stake unbonds.
    Leaving = 2,
    /// Proven to have signed two conflicting votes: never in a set again under this key.
    Jailed = 3,
}

impl ValidatorStatus {
    pub fn name(self) -> &'static str {
        match self {
            ValidatorStatus::Candidate => "candidate",
            ValidatorStatus::Active => "active",
            ValidatorStatus::Leaving => "leaving",
            ValidatorStatus::Jailed => "jailed",
        }
    }
}

/// Stake on its way back to the operator: paid at the end of the epoch before
/// `release_epoch`, i.e. once `release_epoch` begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Unbonding {
    pub release_epoch: u64,
    pub amount: U256,
}

/// What is stored under `StateKey::Validator(key)`.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ValidatorRecord {
    /// The account that registered the validator and alone may change it.
    pub operator: Address,
    /// The consensus key's signature over [`possession_message`].
    pub possession: Signature,
    /// Where peers dial it (`host:port`).
    pub p2p: String,
    /// Bonded stake (wei), locked out of the operator's balance.
    pub stake: U256,
    pub status: ValidatorStatus,
    /// The epoch of the last change of status or stake.
    pub changed_epoch: u64,
    /// Stake unbonding, oldest first (at most `MAX_UNBONDING_ENTRIES`).
    pub unbonding: Vec<Unbonding>,
    /// A key rotation announced by `Update`: at the next boundary the record moves to this
    /// key, with its power, in the same position of the set.
    pub next_key: Option<PublicKey>,
}

impl Canonical for ValidatorRecord {
    const KIND: &'static str = "ValidatorRecord";
    const VERSION: u8 = 1;
    const MAX_ENCODED_BYTES: usize =
        20 + 64 + 4 + MAX_P2P_ADDRESS_BYTES + 32 + 1 + 8 + 4 + MAX_UNBONDING_ENTRIES * 40 + 33 + 8;

    fn validate(&self) -> Result<(), DecodeError> {
        check_len(Self::KIND, "p2p", self.p2p.len(), MAX_P2P_ADDRESS_BYTES)?;
        check_len(
            Self::KIND,
            "unbonding",
            self.unbonding.len(),
            MAX_UNBONDING_ENTRIES,
        )
    }
}

/// What is stored under `StateKey::ValidatorRegistry`: every registered key, ascending.
#[derive(Debug, Clone, PartialEq, Eq, Default, BorshSerialize, BorshDeserialize)]
pub struct Registry(pub Vec<PublicKey>);

impl Canonical for Registry {
    const KIND: &'static str = "Registry";
    const VERSION: u8 = 1;
    const MAX_ENCODED_BYTES: usize = 1 + 4 + MAX_REGISTERED_VALIDATORS * 32;

    fn validate(&self) -> Result<(), DecodeError> {
        check_len(Self::KIND, "keys", self.0.len(), MAX_REGISTERED_VALIDATORS)?;
        if self.0.windows(2).any(|w| w[0] >= w[1]) {
            return Err(DecodeError::Malformed {
                kind: Self::KIND,
                reason: "keys not strictly ascending".into(),
            });
        }
        Ok(())
    }
}

/// One validator of an epoch's set.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct EpochMember {
    pub key: PublicKey,
    /// Voting power (never 0 in a set).
    pub power: u64,
    pub operator: Address,
    pub p2p: String,
}

/// What is stored under `StateKey::EpochValidators(epoch)`: the set of `epoch`, in index
/// order (a vote's signer index points into `members`).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct EpochSet {
    pub epoch: u64,
    pub members: Vec<EpochMember>,
}

impl EpochSet {
    pub fn total_power(&self) -> u128 {
        self.members.iter().map(|m| u128::from(m.power)).sum()
    }

    pub fn keys(&self) -> Vec<PublicKey> {
        self.members.iter().map(|m| m.key).collect()
    }

    pub fn powers(&self) -> Vec<u64> {
        self.members.iter().map(|m| m.power).collect()
    }
}

impl Canonical for EpochSet {
    const KIND: &'static str = "EpochSet";
    const VERSION: u8 = 1;
    const MAX_ENCODED_BYTES: usize =
        1 + 8 + 4 + crate::limits::MAX_VALIDATORS * (32 + 8 + 20 + 4 + MAX_P2P_ADDRESS_BYTES);

    fn validate(&self) -> Result<(), DecodeError> {
        check_len(
            Self::KIND,
            "members",
            self.members.len(),
            crate::limits::MAX_VALIDATORS,
        )?;
        let keys: BTreeSet<&PublicKey> = self.members.iter().map(|m| &m.key).collect();
        if keys.len() != self.members.len()
            || self.members.is_empty()
            || self.members.iter().any(|m| m.power == 0)
        {
            return Err(DecodeError::Malformed {
                kind: Self::KIND,
                reason: "empty set, a key twice or a member without power".into(),
            });
        }
        for m in &self.members {
            check_len(Self::KIND, "p2p", m.p2p.len(), MAX_P2P_ADDRESS_BYTES)?;
        }
        Ok(())
    }
}

/// A validator transaction (`TxBody::Validator`), signed by the operator (a report by
/// anyone). Docs: docs/validators.md.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum ValidatorTx {
    /// Register `key` with `stake` taken from the sender's balance; the sender becomes its
    /// operator. `possession` is `key`'s signature over [`possession_message`].
    Register {
        key: PublicKey,
        possession: Signature,
        p2p: String,
        stake: U256,
    },
    /// Add `amount` of the operator's balance to `key`'s stake.
    Bond { key: PublicKey, amount: U256 },
    /// Start returning `amount` of `key`'s stake (paid after `unbonding_epochs`); what stays
    /// bonded must be 0 or at least `min_stake`.
    Unbond { key: PublicKey, amount: U256 },
    /// Leave the set; once out, the whole stake unbonds and the record goes when paid.
    Leave { key: PublicKey },
    /// Change the p2p address and/or rotate to `rotate = (new key, its possession)`.
    Update {
        key: PublicKey,
        p2p: Option<String>,
        rotate: Option<(PublicKey, Signature)>,
    },
    /// Evidence that `key` signed two conflicting votes ([`conflicting`]): it is jailed.
    ReportEquivocation {
        key: PublicKey,
        first: SignedVote,
        second: SignedVote,
    },
}

impl ValidatorTx {
    /// The key the transaction is about.
    pub fn key(&self) -> &PublicKey {
        match self {
            ValidatorTx::Register { key, .. }
            | ValidatorTx::Bond { key, .. }
            | ValidatorTx::Unbond { key, .. }
            | ValidatorTx::Leave { key }
            | ValidatorTx::Update { key, .. }
            | ValidatorTx::ReportEquivocation { key, .. } => key,
        }
    }

    /// Native value the transaction locks (its stake).
    pub fn value(&self) -> U256 {
        match self {
            ValidatorTx::Register { stake, .. } => *stake,
            ValidatorTx::Bond { amount, .. } => *amount,
            _ => U256::ZERO,
        }
    }

    pub fn gas(&self) -> u64 {
        match self {
            ValidatorTx::ReportEquivocation { .. } => EQUIVOCATION_REPORT_GAS,
            _ => VALIDATOR_TX_GAS,
        }
    }

    pub fn validate(&self) -> Result<(), DecodeError> {
        const KIND: &str = "ValidatorTx";
        match self {
            ValidatorTx::Register { p2p, .. } | ValidatorTx::Update { p2p: Some(p2p), .. } => {
                check_len(KIND, "p2p", p2p.len(), MAX_P2P_ADDRESS_BYTES)
            }
            _ => Ok(()),
        }
    }
}

/// What a consensus key signs to prove its holder registers it for `operator` on
/// `chain_id` (so a key seen on the network cannot be registered by someone else).
pub fn possession_message(chain_id: u64, operator: &Address, key: &PublicKey) -> Hash {
    Hash::digest_parts(
        Domain::ValidatorPossession,
        &[&chain_id.to_le_bytes(), &operator.0, &key.0],
    )
}

/// Whether two votes of one signer conflict: the same chain, epoch and view, and either two
/// notarize (or two finalize) votes for different blocks, or a finalize and a nullify.
/// Signatures are not checked here.
pub fn conflicting(a: &crate::Vote, b: &crate::Vote) -> bool {
    use crate::VoteKind::{Finalize, Notarize, Nullify};
    if a.chain_id != b.chain_id || a.epoch != b.epoch || a.view != b.view {
        return false;
    }
    match (a.kind, b.kind) {
        (Notarize, Notarize) | (Finalize, Finalize) => a.block != b.block,
        (Finalize, Nullify) | (Nullify, Finalize) => true,
        _ => false,
    }
}

/// The voting power of `stake`: whole `POWER_UNIT_WEI`s, saturating at `u64::MAX`.
pub fn power_of_stake(stake: U256) -> u64 {
    let units = stake / U256::from(POWER_UNIT_WEI);
    u64::try_from(units).unwrap_or(u64::MAX)
}

/// The genesis parameters of the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryParams {
    pub min_stake: U256,
    pub max_validators: usize,
    pub unbonding_epochs: u64,
    pub epoch_length: u64,
}

/// The set of epoch `current.epoch + 1`, from `current` and the registry (`records`, each
/// already carrying any key rotation: `(old key, new key, record)`).
///
/// The rule (docs/consensus.md, "Reconfiguration"):
/// 1. Each record's target power is its stake's power if it is a candidate or active with at
///    least `min_stake`, else 0; only the `max_validators` largest targets (ties: smaller
///    key) stay above 0.
/// 2. The change budget is a third of the current total power (rounded down, at least 1):
///    the sum of |new − old| over all validators never exceeds it.
/// 3. Decreases go first — jailed, then leaving, then the rest, each by key — then
///    increases, largest target first (ties: key). Each moves as far towards its target as
///    the budget left allows; the rest waits for later epochs. A newcomer enters only while
///    the set is below `max_validators`.
/// 4. Members keep their order; newcomers are appended in the order they entered. If every
///    member would reach 0, the set stays as it is.
pub fn next_set(
    current: &EpochSet,
    records: &[(PublicKey, PublicKey, &ValidatorRecord)],
    params: &RegistryParams,
) -> EpochSet {
    // Targets, keyed by the record's current key (its position in `current`).
    let mut eligible: Vec<(u64, PublicKey)> = records
        .iter()
        .filter(|(_, _, r)| {
            matches!(
                r.status,
                ValidatorStatus::Candidate | ValidatorStatus::Active
            ) && r.stake >= params.min_stake
        })
        .map(|(old, _, r)| (power_of_stake(r.stake), *old))
        .filter(|(power, _)| *power > 0)
        .collect();
    eligible.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    eligible.truncate(params.max_validators);
    let target: BTreeMap<PublicKey, u64> = eligible.iter().map(|(p, k)| (*k, *p)).collect();
    let by_key: BTreeMap<PublicKey, (PublicKey, &ValidatorRecord)> = records
        .iter()
        .map(|(old, new, r)| (*old, (*new, *r)))
        .collect();

    let mut powers: Vec<(PublicKey, u64)> =
        current.members.iter().map(|m| (m.key, m.power)).collect();
    let mut budget: u128 = (current.total_power() / 3).max(1);

    // Decreases, in the documented order.
    let rank = |key: &PublicKey| match by_key.get(key).map(|(_, r)| r.status) {
        Some(ValidatorStatus::Jailed) => 0u8,
        Some(ValidatorStatus::Leaving) => 1,
        _ => 2,
    };
    let mut decreases: Vec<(u8, PublicKey)> = powers
        .iter()
        .filter(|(k, p)| target.get(k).copied().unwrap_or(0) < *p)
        .map(|(k, _)| (rank(k), *k))
        .collect();
    decreases.sort();
    for (_, key) in decreases {
        let Some(slot) = powers.iter_mut().find(|(k, _)| *k == key) else {
            continue;
        };
        let want = u128::from(slot.1 - target.get(&key).copied().unwrap_or(0));
        let step = want.min(budget);
        budget -= step;
        // step ≤ want ≤ slot.1, a u64.
        slot.1 -= step as u64;
    }

    // Increases: members towards their targets, then newcomers, largest target first.
    let mut increases: Vec<(u64, PublicKey)> = target
        .iter()
        .filter(|(k, t)| {
            powers
                .iter()
                .find(|(m, _)| m == *k)
                .is_none_or(|(_, p)| p < *t)
        })
        .map(|(k, t)| (*t, *k))
        .collect();
    increases.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (t, key) in increases {
        if budget == 0 {
            break;
        }
        match powers.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => {
                let step = u128::from(t - slot.1).min(budget);
                budget -= step;
                slot.1 += step as u64;
            }
            None => {
                let live = powers.iter().filter(|(_, p)| *p > 0).count();
                if live >= params.max_validators {
                    continue;
                }
                let step = u128::from(t).min(budget);
                budget -= step;
                powers.push((key, step as u64));
            }
        }
    }

    powers.retain(|(_, p)| *p > 0);
    if powers.is_empty() {
        return EpochSet {
            epoch: current.epoch + 1,
            members: current.members.clone(),
        };
    }
    let members = powers
        .into_iter()
        .map(|(key, power)| match by_key.get(&key) {
            Some((new_key, r)) => EpochMember {
                key: *new_key,
                power,
                operator: r.operator,
                p2p: r.p2p.clone(),
            },
            // A member with no record (cannot happen: records leave the registry only when
            // out of every set) keeps its entry as it was.
            None => current
                .members
                .iter()
                .find(|m| m.key == key)
                .map(|m| EpochMember { power, ..m.clone() })
                .unwrap_or(EpochMember {
                    key,
                    power,
                    operator: Address::ZERO,
                    p2p: String::new(),
                }),
        })
        .collect();
    EpochSet {
        epoch: current.epoch + 1,
        members,
    }
}

#[cfg(test)]
mod tests;
