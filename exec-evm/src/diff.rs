//! revm's post-transaction state → writes on a keel overlay.

use keel_state::{Overlay, StateError, StateView, StateViewExt};
use keel_types::state_key::WASM_CODE_PREFIX;
use keel_types::state_key::{CodeBlob, CodeRef};
use keel_types::{AccountRecord, Address, Env, StateKey};
use revm::state::{Account, EvmState};

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error(transparent)]
    State(#[from] StateError),
}

fn has_code(account: &Account) -> bool {
    account
        .info
        .code
        .as_ref()
        .is_some_and(|code| !code.original_byte_slice().is_empty())
}

fn code_of(account: &Account) -> Option<CodeBlob> {
    let bytecode = account.info.code.as_ref()?;
    let bytes = bytecode.original_byte_slice();
    if bytes.is_empty() {
        return None;
    }
    Some(match bytes.strip_prefix(&WASM_CODE_PREFIX[..]) {
        Some(module) => CodeBlob {
            env: Env::Wasm,
            code: module.to_vec(),
        },
        None => CodeBlob {
            env: Env::Evm,
            code: bytes.to_vec(),
        },
    })
}

/// Write every change revm made in one transaction into `overlay`, in address order (revm's
/// map is unordered; the overlay is a BTreeMap, so the result does not depend on it either).
///
/// Self-destructed accounts (EIP-6780: only contracts created in the same transaction) and
/// touched empty accounts (EIP-161) are deleted with the slots the transaction wrote — all
/// but the jurisdiction contract, whose slots stay.
///
/// Each record keeps the policy spending it had when the run loaded it (`kept`: the
/// `KeelDb` the run read through kept them).
pub fn apply_evm_state<V: StateView>(
    overlay: &mut Overlay<V>,
    state: EvmState,
    kept: &crate::KeptSpends,
) -> Result<(), DiffError> {
    let mut accounts: Vec<_> = state.into_iter().collect();
    accounts.sort_by_key(|(address, _)| address.0 .0);
    for (address, account) in accounts {
        if !account.is_touched() {
            continue;
        }
        let address = Address(address.0 .0);
        let empty =
            account.info.nonce == 0 && account.info.balance.is_zero() && !has_code(&account);
        // The jurisdiction contract is a precompile: an empty account whose slots (tags and
        // rules) are state all the same, and that never has a record.
        let system = address == keel_types::jurisdiction::JURISDICTION_ADDRESS;
        let deleted = !system && (account.is_selfdestructed() || empty);
        for (slot, value) in account.changed_storage_slots() {
            let value = if deleted {
                [0u8; 32]
            } else {
                value.present_value().to_be_bytes::<32>()
            };
            overlay.put_storage(address, slot.to_be_bytes::<32>(), value)?;
        }
        if system && empty {
            // It never has a record (and writing its absence for every transaction that
            // touches it would make parallel speculations conflict on it).
            continue;
        }
        if deleted {
            overlay.set(StateKey::Account(address), None)?;
            continue;
        }
        // An account that was not created here and whose code is the one it was loaded with
        // (revm's code hash unchanged since `KeelDb::basic`) has that code in its record
        // already: the record's reference is reused, instead of copying and hashing the whole
        // code for every transaction that calls a contract (found in a profile). Code that
        // changed without a creation (EIP-7702 delegations in the state-test runner; keel's
        // transactions cannot carry them) is hashed, as is code without a record to reuse.
        let loaded_code =
            !account.is_created() && account.original_info().code_hash == account.info.code_hash;
        let kept_code = if !loaded_code || !has_code(&account) {
            None
        } else {
            overlay
                .account(&address)
                .ok()
                .flatten()
                .and_then(|r| r.code)
        };
        let code = match (kept_code, account.is_created()) {
            (Some(code), _) => Some(code),
            (None, created) => match code_of(&account) {
                None => None,
                Some(blob) => Some(CodeRef {
                    env: blob.env,
                    code_hash: match created {
                        true => overlay.put_code(&blob)?,
                        false => blob.code_hash(),
                    },
                }),
            },
        };
        let record = AccountRecord {
            nonce: account.info.nonce,
            balance: crate::u256_from_revm(&account.info.balance),
            code,
            policy_spend: kept.of(&address),
        };
        overlay.put_account(address, &record)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_state::{Entry, StateViewExt};
    use revm::bytecode::Bytecode;
    use revm::primitives::{keccak256, Address as RevmAddress};
    use revm::state::AccountInfo;
    use std::collections::BTreeMap;

    struct Mem(BTreeMap<StateKey, Entry>);

    impl StateView for Mem {
        fn entry(&self, key: &StateKey) -> Result<Option<Entry>, StateError> {
            Ok(self.0.get(key).cloned())
        }
        fn storage_entries(&self, _: &Address) -> Result<u64, StateError> {
            Ok(0)
        }
    }

    fn info(code: &[u8]) -> AccountInfo {
        AccountInfo {
            nonce: 1,
            code_hash: keccak256(code),
            code: Some(Bytecode::new_raw(code.to_vec().into())),
            ..Default::default()
        }
    }

    /// The code reference written for a contract whose record holds code `a`, after a
    /// transaction in which its code is `now` (loaded as `a`, not created).
    fn written_code(a: &[u8], now: &[u8]) -> Option<CodeRef> {
        let address = Address([7; 20]);
        let stored = AccountRecord {
            nonce: 1,
            balance: keel_types::U256::ZERO,
            code: Some(CodeRef {
                env: Env::Evm,
                code_hash: keel_types::state_key::code_hash(Env::Evm, a),
            }),
            policy_spend: None,
        };
        let entry = Entry::Live {
            touched_epoch: 0,
            value: keel_types::Canonical::encode(&stored),
        };
        let base = Mem(BTreeMap::from([(StateKey::Account(address), entry)]));
        let mut overlay = Overlay::new(&base);
        let mut account = Account::from(info(a));
        account.info = info(now);
        account.mark_touch();
        let mut state = EvmState::default();
        state.insert(RevmAddress::from(address.0), account);
        apply_evm_state(&mut overlay, state, &crate::KeptSpends::default()).expect("applied");
        let record = overlay.account(&address).expect("read").expect("kept");
        record.code
    }

    /// Code that changed without a creation (found by review: an EIP-7702 re-delegation in
    /// the state-test runner) is written as the new code, not the record's.
    #[test]
    fn changed_code_is_hashed_and_unchanged_code_keeps_the_record() {
        let (a, b) = (&[0x60, 0x00][..], &[0x60, 0x01, 0x00][..]);
        let hash = |code| keel_types::state_key::code_hash(Env::Evm, code);
        assert_eq!(written_code(a, b).map(|c| c.code_hash), Some(hash(b)));
        assert_eq!(written_code(a, a).map(|c| c.code_hash), Some(hash(a)));
    }

    /// An account under a policy that receives value keeps what it used: the record the
    /// diff writes carries the spending `KeelDb` loaded (were it dropped, a payment to the
    /// account would reset its budgets).
    #[test]
    fn a_written_record_keeps_its_policy_spending() {
        use revm::database_interface::Database;
        let address = Address([9; 20]);
        let spend = keel_types::policy::PolicySpend {
            epoch: 4,
            value: keel_types::U256::from(70u64),
            fees: keel_types::U256::from(5u64),
            txs: 2,
        };
        let stored = AccountRecord {
            nonce: 2,
            balance: keel_types::U256::from(1_000u64),
            code: None,
            policy_spend: Some(spend),
        };
        let entry = Entry::Live {
            touched_epoch: 0,
            value: keel_types::Canonical::encode(&stored),
        };
        let base = Mem(BTreeMap::from([(StateKey::Account(address), entry)]));
        let paid = |kept: &crate::KeptSpends| {
            let mut db = crate::KeelDb::new(&base, &crate::NoBlockHashes).keeping_spends(kept);
            let info = db
                .basic(RevmAddress::from(address.0))
                .expect("read")
                .expect("there");
            let mut account = Account::from(info);
            account.info.balance += revm::primitives::U256::from(1u64);
            account.mark_touch();
            let mut state = EvmState::default();
            state.insert(RevmAddress::from(address.0), account);
            let mut overlay = Overlay::new(&base);
            apply_evm_state(&mut overlay, state, kept).expect("applied");
            overlay.account(&address).expect("read").expect("kept")
        };
        let record = paid(&crate::KeptSpends::default());
        assert_eq!(record.balance, keel_types::U256::from(1_001u64));
        assert_eq!(record.policy_spend, Some(spend));
    }
}
