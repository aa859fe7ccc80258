//! revm's `Database` over a keel `StateView`.

use keel_state::{StateError, StateView, StateViewExt};
use keel_types::policy::PolicySpend;
use keel_types::{Address, Env, Hash};
use revm::bytecode::Bytecode;
use revm::database_interface::{DBErrorMarker, Database};
use revm::primitives::{keccak256, B256, KECCAK_EMPTY, U256};
use revm::state::AccountInfo;
use std::collections::BTreeMap;
use std::sync::Mutex;

use keel_types::state_key::WASM_CODE_PREFIX;

/// A state read failed: the node's problem, never a transaction outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state read failed: {0}")]
pub struct DbError(pub String);

impl DBErrorMarker for DbError {}

impl From<StateError> for DbError {
    fn from(e: StateError) -> Self {
        DbError(e.to_string())
    }
}

/// Hashes of recent blocks for the `BLOCKHASH` opcode.
pub trait BlockHashes {
    fn block_hash(&self, height: u64) -> Option<Hash>;
}

/// No history (genesis, tests): `BLOCKHASH` returns zero.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBlockHashes;

impl BlockHashes for NoBlockHashes {
    fn block_hash(&self, _: u64) -> Option<Hash> {
        None
    }
}

struct EmptyView;

impl StateView for EmptyView {
    fn entry(&self, _: &keel_types::StateKey) -> Result<Option<keel_state::Entry>, StateError> {
        Ok(None)
    }

    fn storage_entries(&self, _: &Address) -> Result<u64, StateError> {
        Ok(0)
    }
}

static EMPTY_VIEW: EmptyView = EmptyView;
static NO_BLOCK_HASHES: NoBlockHashes = NoBlockHashes;

/// The policy spendings (`AccountRecord::policy_spend`) of the account records one
/// transaction's run loaded. revm's `AccountInfo` has no place for them, so `KeelDb::basic`
/// keeps each here and `apply_evm_state` writes it back with the record: a payment to an
/// account under a policy must never reset what it used (its budget would start over).
/// Only accounts under a policy have one, so it is usually empty or holds the sender alone;
/// it holds at most one entry per account the run loaded, which its gas bounds.
#[derive(Debug, Default)]
pub struct KeptSpends(Mutex<Kept>);

/// A run keeps the spendings of the first [`FEW_KEPT_SPENDS`] accounts in a short list (a
/// policed sender's transfer keeps one: a B-tree's first insert allocated a node of about
/// 1 KiB per transaction, a profile's hot spot), any more in a map, so that a run loading
/// thousands of policed accounts never searches a long list.
#[derive(Debug, Default)]
struct Kept {
    few: Vec<(Address, PolicySpend)>,
    many: BTreeMap<Address, PolicySpend>,
}

/// See [`Kept`].
const FEW_KEPT_SPENDS: usize = 8;

impl KeptSpends {
    fn keep(&self, address: Address, spend: PolicySpend) {
        // The view does not change during a run, so a second load reads the same record.
        let mut kept = self.lock();
        if kept.few.iter().any(|(a, _)| *a == address) {
            return;
        }
        if kept.few.len() < FEW_KEPT_SPENDS {
            kept.few.push((address, spend));
        } else {
            kept.many.entry(address).or_insert(spend);
        }
    }

    /// The spending `address`'s record had when the run loaded it.
    pub fn of(&self, address: &Address) -> Option<PolicySpend> {
        let kept = self.lock();
        match kept.few.iter().find(|(a, _)| a == address) {
            Some((_, spend)) => Some(*spend),
            None => kept.many.get(address).copied(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // The lists are only added to and read; a poisoned lock still holds whole entries.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// revm's database: reads accounts, code and slots from a keel view.
#[derive(Clone, Copy)]
pub struct KeelDb<'a> {
    view: &'a dyn StateView,
    hashes: &'a dyn BlockHashes,
    code_cache: Option<&'a crate::CodeCache>,
    kept: Option<&'a KeptSpends>,
}

impl std::fmt::Debug for KeelDb<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeelDb")
    }
}

impl<'a> KeelDb<'a> {
    pub fn new(view: &'a dyn StateView, hashes: &'a dyn BlockHashes) -> KeelDb<'a> {
        KeelDb {
            view,
            hashes,
            code_cache: None,
            kept: None,
        }
    }

    /// Takes analyzed code from `cache` (and fills it) instead of analyzing on every load.
    pub fn with_code_cache(mut self, cache: &'a crate::CodeCache) -> KeelDb<'a> {
        self.code_cache = Some(cache);
        self
    }

    /// Keeps the policy spendings of the records it loads in `kept`, for `apply_evm_state`
    /// (every run whose state is applied needs it).
    pub fn keeping_spends(mut self, kept: &'a KeptSpends) -> KeelDb<'a> {
        self.kept = Some(kept);
        self
    }

    /// The state view it reads (for keel's own precompiles, which read entries the EVM
    /// has no opcode for).
    pub fn view(&self) -> &'a dyn StateView {
        self.view
    }

    /// Whether `address` holds storage (EIP-7610: a creation there collides).
    pub fn has_storage(&self, address: &revm::primitives::Address) -> Result<bool, DbError> {
        Ok(self.view.storage_entries(&Address(address.0 .0))? > 0)
    }

    /// A database over nothing: the stand-in left in a context while it is lent to a nested
    /// EVM run.
    pub fn empty() -> KeelDb<'a> {
        KeelDb {
            view: &EMPTY_VIEW,
            hashes: &NO_BLOCK_HASHES,
            code_cache: None,
            kept: None,
        }
    }
}

/// The bytes the EVM sees as an account's code.
pub fn evm_code_bytes(env: Env, code: &[u8]) -> Vec<u8> {
    match env {
        Env::Evm => code.to_vec(),
        Env::Wasm => [&WASM_CODE_PREFIX[..], code].concat(),
    }
}

impl Database for KeelDb<'_> {
    type Error = DbError;

    fn basic(
        &mut self,
        address: revm::primitives::Address,
    ) -> Result<Option<AccountInfo>, DbError> {
        let Some(record) = self.view.account(&Address(address.0 .0))? else {
            return Ok(None);
        };
        if let (Some(spend), Some(kept)) = (record.policy_spend, self.kept) {
            kept.keep(Address(address.0 .0), spend);
        }
        let (code_hash, code) = match record.code {
            None => (KECCAK_EMPTY, Bytecode::default()),
            Some(code_ref) => {
                let blob = self.view.code(&code_ref.code_hash)?.ok_or_else(|| {
                    DbError(format!(
                        "account {address} names missing code {}",
                        code_ref.code_hash
                    ))
                })?;
                let derive = || {
                    let bytes = evm_code_bytes(blob.env, &blob.code);
                    let hash = keccak256(&bytes);
                    (Bytecode::new_raw(bytes.into()), hash)
                };
                let (code, hash) = match self.code_cache {
                    Some(cache) => cache.get_or_derive(&code_ref.code_hash, derive),
                    None => derive(),
                };
                (hash, code)
            }
        };
        Ok(Some(AccountInfo {
            balance: crate::u256_to_revm(&record.balance),
            nonce: record.nonce,
            code_hash,
            code: Some(code),
            ..Default::default()
        }))
    }

    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, DbError> {
        // `basic` always returns the code with the account, so revm never asks by hash.
        Err(DbError(format!(
            "code_by_hash({code_hash}) is not supported"
        )))
    }

    fn storage(
        &mut self,
        address: revm::primitives::Address,
        index: U256,
    ) -> Result<U256, DbError> {
        let slot = self
            .view
            .storage(&Address(address.0 .0), &index.to_be_bytes::<32>())?;
        Ok(U256::from_be_bytes(slot))
    }

    fn block_hash(&mut self, number: u64) -> Result<B256, DbError> {
        Ok(self
            .hashes
            .block_hash(number)
            .map(|h| B256::from(h.0))
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_types::U256;

    /// Past the short list the map takes over; either way the first load's spending is the
    /// one kept, and an account never loaded has none.
    #[test]
    fn kept_spends_keep_each_accounts_first_load() {
        let kept = KeptSpends::default();
        let spend = |i: u64| PolicySpend {
            epoch: i,
            value: U256::from(i),
            fees: U256::ZERO,
            txs: i,
        };
        let address = |i: u64| {
            let mut a = [0u8; 20];
            a[..8].copy_from_slice(&i.to_be_bytes());
            Address(a)
        };
        for i in 0..3 * FEW_KEPT_SPENDS as u64 {
            kept.keep(address(i), spend(i));
            kept.keep(address(i), spend(i + 100));
        }
        for i in 0..3 * FEW_KEPT_SPENDS as u64 {
            assert_eq!(kept.of(&address(i)), Some(spend(i)), "account {i}");
        }
        assert_eq!(kept.of(&address(1_000)), None);
    }
}
