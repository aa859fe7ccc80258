//! The validator registry in state: the validator transactions, the epoch-end step that fixes
//! the next epoch's set (`keel_types::validator::next_set`) and pays matured unbondings, and
//! the genesis records (docs/validators.md). Only these functions write the registry: no
//! contract can (the EVM and WASM see no registry key).

use keel_state::{Overlay, StateError, StateView, StateViewExt};
use keel_types::validator::{
    conflicting, next_set, possession_message, power_of_stake, EpochMember, EpochSet, Registry,
    RegistryParams, Unbonding, ValidatorRecord, ValidatorStatus, ValidatorTx,
    MAX_REGISTERED_VALIDATORS, MAX_UNBONDING_ENTRIES,
};
use keel_types::{Address, Canonical, PublicKey, RegistryError, StateKey, U256};

/// The registered keys, ascending.
pub fn read_registry(view: &dyn StateView) -> Result<Registry, StateError> {
    Ok(view
        .get(&StateKey::ValidatorRegistry)?
        .map(|raw| Registry::decode(&raw).map_err(StateError::decode("validator registry")))
        .transpose()?
        .unwrap_or_default())
}

pub fn read_record(
    view: &dyn StateView,
    key: &PublicKey,
) -> Result<Option<ValidatorRecord>, StateError> {
    view.get(&StateKey::Validator(*key))?
        .map(|raw| ValidatorRecord::decode(&raw).map_err(StateError::decode("validator")))
        .transpose()
}

/// The set of `epoch`, if state holds it (the current and the next epoch's are kept).
pub fn read_epoch_set(view: &dyn StateView, epoch: u64) -> Result<Option<EpochSet>, StateError> {
    view.get(&StateKey::EpochValidators(epoch))?
        .map(|raw| EpochSet::decode(&raw).map_err(StateError::decode("epoch validator set")))
        .transpose()
}

fn write_record(
    overlay: &mut Overlay<&dyn StateView>,
    key: &PublicKey,
    record: Option<&ValidatorRecord>,
) -> Result<(), StateError> {
    overlay.set(StateKey::Validator(*key), record.map(Canonical::encode))
}

fn write_registry(overlay: &mut Overlay<&dyn StateView>, keys: Registry) -> Result<(), StateError> {
    let value = (!keys.0.is_empty()).then(|| keys.encode());
    overlay.set(StateKey::ValidatorRegistry, value)
}

/// Moves `amount` between `account`'s balance and the registry: `Err` if the balance is
/// short (a debit) — the caller checked it, so that is a refusal, not a fault.
fn move_balance(
    overlay: &mut Overlay<&dyn StateView>,
    account: &Address,
    (amount, credit): (U256, bool),
) -> Result<bool, StateError> {
    let mut record = overlay.account(account)?.unwrap_or_default();
    record.balance = if credit {
        record.balance.saturating_add(amount)
    } else {
        match record.balance.checked_sub(amount) {
            Some(left) => left,
            None => return Ok(false),
        }
    };
    overlay.put_account(*account, &record)?;
    Ok(true)
}

fn valid_p2p(p2p: &str) -> bool {
    p2p.parse::<std::net::SocketAddr>().is_ok()
}

/// Applies validator transaction `op` of `sender` in `epoch` on `chain_id`. The outer `Err`
/// is a node failure; the inner one the typed refusal the sender is charged for.
pub fn apply(
    overlay: &mut Overlay<&dyn StateView>,
    (chain_id, params): (u64, &RegistryParams),
    (sender, op): (Address, &ValidatorTx),
    epoch: u64,
) -> Result<Result<(), RegistryError>, StateError> {
    let key = *op.key();
    let existing = read_record(overlay, &key)?;
    let owned = |r: &Option<ValidatorRecord>| match r {
        None => Err(RegistryError::NotRegistered),
        Some(r) if r.operator != sender => Err(RegistryError::NotOperator),
        Some(r) => Ok(r.clone()),
    };
    match op {
        ValidatorTx::Register {
            possession,
            p2p,
            stake,
            ..
        } => {
            if existing.is_some() {
                return Ok(Err(RegistryError::AlreadyRegistered));
            }
            let message = possession_message(chain_id, &sender, &key);
            if key.verify(&message.0, possession).is_err() {
                return Ok(Err(RegistryError::BadPossession));
            }
            if !valid_p2p(p2p) {
                return Ok(Err(RegistryError::BadP2pAddress));
            }
            if *stake < params.min_stake {
                return Ok(Err(RegistryError::BelowMinStake {
                    stake: *stake,
                    min_stake: params.min_stake,
                }));
            }
            let mut registry = read_registry(overlay)?;
            if registry.0.len() >= MAX_REGISTERED_VALIDATORS {
                return Ok(Err(RegistryError::RegistryFull));
            }
            if !move_balance(overlay, &sender, (*stake, false))? {
                return Ok(Err(RegistryError::NotEnoughStake {
                    amount: *stake,
                    stake: U256::ZERO,
                }));
            }
            let at = registry.0.binary_search(&key).unwrap_or_else(|i| i);
            registry.0.insert(at, key);
            write_registry(overlay, registry)?;
            let record = ValidatorRecord {
                operator: sender,
                possession: *possession,
                p2p: p2p.clone(),
                stake: *stake,
                status: ValidatorStatus::Candidate,
                changed_epoch: epoch,
                unbonding: Vec::new(),
                next_key: None,
            };
            write_record(overlay, &key, Some(&record))?;
        }
        ValidatorTx::Bond { amount, .. } => {
            let mut record = match owned(&existing) {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            if let Err(e) = usable(&record) {
                return Ok(Err(e));
            }
            if amount.is_zero() {
                return Ok(Err(RegistryError::ZeroAmount));
            }
            if !move_balance(overlay, &sender, (*amount, false))? {
                return Ok(Err(RegistryError::NotEnoughStake {
                    amount: *amount,
                    stake: record.stake,
                }));
            }
            record.stake = record.stake.saturating_add(*amount);
            record.changed_epoch = epoch;
            write_record(overlay, &key, Some(&record))?;
        }
        ValidatorTx::Unbond { amount, .. } => {
            let mut record = match owned(&existing) {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            if amount.is_zero() {
                return Ok(Err(RegistryError::ZeroAmount));
            }
            let Some(left) = record.stake.checked_sub(*amount) else {
                return Ok(Err(RegistryError::NotEnoughStake {
                    amount: *amount,
                    stake: record.stake,
                }));
            };
            if !left.is_zero() && left < params.min_stake {
                return Ok(Err(RegistryError::BelowMinStake {
                    stake: left,
                    min_stake: params.min_stake,
                }));
            }
            if record.unbonding.len() >= MAX_UNBONDING_ENTRIES {
                return Ok(Err(RegistryError::UnbondingFull));
            }
            record.stake = left;
            record.unbonding.push(Unbonding {
                release_epoch: release_epoch(epoch, params),
                amount: *amount,
            });
            record.changed_epoch = epoch;
            write_record(overlay, &key, Some(&record))?;
        }
        ValidatorTx::Leave { .. } => {
            let mut record = match owned(&existing) {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            if let Err(e) = usable(&record) {
                return Ok(Err(e));
            }
            record.status = ValidatorStatus::Leaving;
            record.changed_epoch = epoch;
            write_record(overlay, &key, Some(&record))?;
        }
        ValidatorTx::Update { p2p, rotate, .. } => {
            let mut record = match owned(&existing) {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            if let Err(e) = usable(&record) {
                return Ok(Err(e));
            }
            if let Some(p2p) = p2p {
                if !valid_p2p(p2p) {
                    return Ok(Err(RegistryError::BadP2pAddress));
                }
                record.p2p = p2p.clone();
            }
            if let Some((new_key, possession)) = rotate {
                if read_record(overlay, new_key)?.is_some() || *new_key == key {
                    return Ok(Err(RegistryError::AlreadyRegistered));
                }
                let message = possession_message(chain_id, &sender, new_key);
                if new_key.verify(&message.0, possession).is_err() {
                    return Ok(Err(RegistryError::BadPossession));
                }
                record.next_key = Some(*new_key);
                record.possession = *possession;
            }
            record.changed_epoch = epoch;
            write_record(overlay, &key, Some(&record))?;
        }
        ValidatorTx::ReportEquivocation { first, second, .. } => {
            let Some(mut record) = existing else {
                return Ok(Err(RegistryError::NotRegistered));
            };
            if record.status == ValidatorStatus::Jailed {
                return Ok(Err(RegistryError::Jailed));
            }
            // The rule consensus counts votes by (ZIP-215): a vote it counted is evidence
            // (found by review: a strict check let a signer with a torsion R escape).
            let proven = first.vote.chain_id == chain_id
                && conflicting(&first.vote, &second.vote)
                && first.verify(&key).is_ok()
                && second.verify(&key).is_ok();
            if !proven {
                return Ok(Err(RegistryError::NotEquivocation));
            }
            record.status = ValidatorStatus::Jailed;
            record.changed_epoch = epoch;
            write_record(overlay, &key, Some(&record))?;
        }
    }
    Ok(Ok(()))
}

/// A jailed or leaving validator takes no more stake and no other change.
fn usable(record: &ValidatorRecord) -> Result<(), RegistryError> {
    match record.status {
        ValidatorStatus::Jailed => Err(RegistryError::Jailed),
        ValidatorStatus::Leaving => Err(RegistryError::Leaving),
        _ => Ok(()),
    }
}

/// Stake unbonded in `epoch` is paid when epoch `epoch + 1 + unbonding_epochs` begins: it
/// stays slashable-in-principle (and its holder accountable) for `unbonding_epochs` whole
/// epochs after the one it left in.
fn release_epoch(epoch: u64, params: &RegistryParams) -> u64 {
    epoch
        .saturating_add(1)
        .saturating_add(params.unbonding_epochs)
}

/// The step every validator runs after the last transaction of epoch `epoch`'s last block:
/// fixes the set of `epoch + 1` from the registry, updates statuses, applies key rotations,
/// starts the unbonding of validators that have left, pays unbondings due when `epoch + 1`
/// begins, and drops the set of `epoch − 1`.
pub fn end_epoch(
    overlay: &mut Overlay<&dyn StateView>,
    epoch: u64,
    params: &RegistryParams,
) -> Result<(), StateError> {
    let Some(current) = read_epoch_set(overlay, epoch)? else {
        return Err(StateError::Corrupt(format!(
            "no validator set stored for epoch {epoch}"
        )));
    };
    let registry = read_registry(overlay)?;
    let mut records = Vec::with_capacity(registry.0.len());
    for key in &registry.0 {
        let record = read_record(overlay, key)?
            .ok_or_else(|| StateError::Corrupt(format!("registry key {key} has no record")))?;
        records.push((*key, record));
    }
    // A rotation happens only onto a key no record holds (a registered key, a jailed
    // tombstone) and no earlier record (by key) rotates onto; the rest are cancelled. Two
    // records under one key would overwrite a stake and leave a registry no node can
    // decode (found by review).
    let mut targets = std::collections::BTreeSet::new();
    for (_, record) in &mut records {
        if let Some(target) = record.next_key {
            let taken = read_record(overlay, &target)?.is_some() || !targets.insert(target);
            if taken {
                record.next_key = None;
            }
        }
    }
    let refs: Vec<_> = records
        .iter()
        .map(|(key, r)| (*key, r.next_key.unwrap_or(*key), r))
        .collect();
    let next = next_set(&current, &refs, params);
    let next_epoch = epoch + 1;
    let power_in_next = |key: &PublicKey| {
        next.members
            .iter()
            .find(|m| m.key == *key)
            .map_or(0, |m| m.power)
    };

    let mut keys = Vec::with_capacity(records.len());
    for (key, mut record) in records {
        let new_key = record.next_key.take().unwrap_or(key);
        let in_set = next.members.iter().any(|m| m.key == new_key);
        match record.status {
            ValidatorStatus::Candidate | ValidatorStatus::Active => {
                let status = if in_set {
                    ValidatorStatus::Active
                } else {
                    ValidatorStatus::Candidate
                };
                if status != record.status {
                    record.status = status;
                    record.changed_epoch = next_epoch;
                }
            }
            // Out of the set: the whole stake unbonds (once an entry is free, if all are
            // taken by earlier unbonds).
            ValidatorStatus::Leaving
                if !in_set
                    && !record.stake.is_zero()
                    && record.unbonding.len() < MAX_UNBONDING_ENTRIES =>
            {
                record.unbonding.push(Unbonding {
                    release_epoch: release_epoch(epoch, params),
                    amount: record.stake,
                });
                record.stake = U256::ZERO;
            }
            _ => {}
        }
        // Pay what is due when the next epoch begins — but never stake whose voting power
        // the set still counts (the budget slows decreases: found by review) — and an
        // expired operator account once revived: the entry waits.
        let backed = power_in_next(&new_key) <= power_of_stake(record.stake);
        let mut waiting = Vec::with_capacity(record.unbonding.len());
        for u in std::mem::take(&mut record.unbonding) {
            let paid = backed
                && u.release_epoch <= next_epoch
                && match move_balance(overlay, &record.operator, (u.amount, true)) {
                    Ok(_) => true,
                    Err(StateError::Expired { .. }) => {
                        overlay.take_expired_hit();
                        false
                    }
                    Err(e) => return Err(e),
                };
            if !paid {
                waiting.push(u);
            }
        }
        record.unbonding = waiting;
        if new_key != key {
            write_record(overlay, &key, None)?;
        }
        let empty = !in_set && record.stake.is_zero() && record.unbonding.is_empty();
        if empty && record.status != ValidatorStatus::Jailed {
            // Nothing left: the record goes (found by review: zero-stake candidates kept
            // the registry full for good).
            write_record(overlay, &new_key, None)?;
        } else {
            write_record(overlay, &new_key, Some(&record))?;
            // A jailed key with nothing left stays as a tombstone (it may never register
            // again) but leaves the registry's count.
            if !empty {
                keys.push(new_key);
            }
        }
    }
    keys.sort();
    let registry = Registry(keys);
    if registry.validate().is_err() || next.validate().is_err() {
        return Err(StateError::Corrupt(format!(
            "the registry or the set of epoch {next_epoch} breaks its invariants"
        )));
    }
    write_registry(overlay, registry)?;
    overlay.set(StateKey::EpochValidators(next_epoch), Some(next.encode()))?;
    if epoch > 0 {
        overlay.set(StateKey::EpochValidators(epoch - 1), None)?;
    }
    Ok(())
}

/// One genesis validator's registry entry.
#[derive(Debug, Clone)]
pub struct GenesisEntry {
    pub key: PublicKey,
    pub operator: Address,
    pub p2p: String,
    pub stake: U256,
}

/// The height-0 registry: every genesis validator active with its stake (minted locked, not
/// taken from a balance), and the set of epoch 0 in the genesis order.
pub fn write_genesis(
    overlay: &mut Overlay<&dyn StateView>,
    entries: &[GenesisEntry],
) -> Result<(), StateError> {
    let mut keys = Vec::with_capacity(entries.len());
    for e in entries {
        let record = ValidatorRecord {
            operator: e.operator,
            // Genesis validators are vouched for by the genesis itself.
            possession: keel_types::Signature([0; 64]),
            p2p: e.p2p.clone(),
            stake: e.stake,
            status: ValidatorStatus::Active,
            changed_epoch: 0,
            unbonding: Vec::new(),
            next_key: None,
        };
        write_record(overlay, &e.key, Some(&record))?;
        keys.push(e.key);
    }
    keys.sort();
    write_registry(overlay, Registry(keys))?;
    overlay.set(
        StateKey::EpochValidators(0),
        Some(genesis_set(entries).encode()),
    )
}

/// The set of epoch 0: the genesis validators in genesis order, power by stake. What a node
/// without history starts an epoch-change proof from.
pub fn genesis_set(entries: &[GenesisEntry]) -> EpochSet {
    let members = entries
        .iter()
        .map(|e| EpochMember {
            key: e.key,
            power: keel_types::validator::power_of_stake(e.stake),
            operator: e.operator,
            p2p: e.p2p.clone(),
        })
        .collect();
    EpochSet { epoch: 0, members }
}
