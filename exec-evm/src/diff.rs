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
pub fn apply_evm_state<V: StateView>(
    overlay: &mut Overlay<V>,
    state: EvmState,
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
        // Code is set only when an account is created, so any other account with code has it
        // in its record already (written by an earlier transaction or block): reused, instead
        // of copying and hashing the whole code for every transaction that calls a contract
        // (found in a profile). Without a record to reuse, it is hashed as for a creation.
        let kept = if account.is_created() || !has_code(&account) {
            None
        } else {
            overlay
                .account(&address)
                .ok()
                .flatten()
                .and_then(|r| r.code)
        };
        let code = match (kept, account.is_created()) {
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
        };
        overlay.put_account(address, &record)?;
    }
    Ok(())
}
