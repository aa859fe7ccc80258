//! keel-statetest: Ethereum GeneralStateTests through keel's EVM environment (exec-evm's
//! `KeelDb` over keel's `StateView`/`Overlay`, revm's post-state written back with
//! `apply_evm_state`), checked against the fixtures' post-state root and logs hash.
//!
//! The Ethereum roots are recomputed from keel's own state after the transaction (every
//! account record, code blob and slot), so a fixture passes only if keel's state layer
//! holds exactly what Ethereum's does.

use alloy_primitives::{keccak256, Log, B256, U256};
use alloy_trie::{root::state_root_unhashed, root::storage_root_unhashed, TrieAccount};
use keel_exec_evm::{apply_evm_state, BlockHashes, KeelDb};
use keel_state::{Overlay, StateDiff, StateError, StateView};
use keel_types::state_key::CodeBlob;
use keel_types::{AccountRecord, Address, Canonical, Env, Hash, StateKey};
use revm::context::{CfgEnv, TxEnv};
use revm::statetest_types::{SpecName, Test, TestSuite, TestUnit};
use std::collections::BTreeMap;
use std::path::Path;

/// Fixture files larger than this are refused (they are trusted input, but bounded anyway).
pub const MAX_FIXTURE_BYTES: u64 = 64 * 1024 * 1024;

/// An in-memory keel state: the fixture's pre-state, as keel keys and encodings.
#[derive(Debug, Default)]
pub struct MemView(pub StateDiff);

impl StateView for MemView {
    fn entry(&self, key: &StateKey) -> Result<Option<keel_state::Entry>, StateError> {
        self.0
            .get(key)
            .cloned()
            .flatten()
            .map(|raw| keel_state::Entry::decode(&raw))
            .transpose()
    }

    fn storage_entries(&self, address: &keel_types::Address) -> Result<u64, StateError> {
        let range = StateKey::Storage(*address, [0; 32])..=StateKey::Storage(*address, [0xff; 32]);
        let mut count = 0;
        for (_, raw) in self.0.range(range) {
            let entry = keel_state::decode_entry(raw.as_ref())?;
            count += u64::from(keel_state::holds_storage(entry.as_ref()));
        }
        Ok(count)
    }
}

/// `BLOCKHASH(n)` in state tests is `keccak256(decimal n)`.
struct FixtureBlockHashes;

impl BlockHashes for FixtureBlockHashes {
    fn block_hash(&self, height: u64) -> Option<Hash> {
        Some(Hash(keccak256(height.to_string().as_bytes()).0))
    }
}

/// One post entry's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    pub name: String,
    pub indexes: (usize, usize, usize),
    /// `None` on success, else why it failed.
    pub failure: Option<String>,
    /// Not run: a fork revm does not model on its own (pre-Petersburg "Constantinople",
    /// which was never activated on mainnet; revm's own runner skips it too).
    pub skipped: bool,
}

fn runnable(spec: &SpecName) -> bool {
    !matches!(
        spec,
        SpecName::Constantinople | SpecName::ByzantiumToConstantinopleAt5 | SpecName::Unknown
    )
}

fn pre_state(unit: &TestUnit) -> Result<MemView, StateError> {
    let empty = MemView::default();
    let mut overlay = Overlay::new(&empty);
    for (address, info) in &unit.pre {
        let address = Address(address.0 .0);
        let code = if info.code.is_empty() {
            None
        } else {
            let hash = overlay.put_code(&CodeBlob {
                env: Env::Evm,
                code: info.code.to_vec(),
            })?;
            Some(keel_types::CodeRef {
                env: Env::Evm,
                code_hash: hash,
            })
        };
        let record = AccountRecord {
            nonce: info.nonce,
            balance: keel_types::U256::from_be_bytes(info.balance.to_be_bytes::<32>()),
            code,
            policy_spend: None,
        };
        overlay.put_account(address, &record)?;
        for (slot, value) in &info.storage {
            overlay.put_storage(address, slot.to_be_bytes::<32>(), value.to_be_bytes::<32>())?;
        }
    }
    Ok(MemView(overlay.into_diff()))
}

/// The Ethereum state root of a keel state (accounts with their code and storage).
pub fn ethereum_state_root(state: &StateDiff) -> Result<B256, String> {
    // The diff holds stored entries; the Ethereum root is over their live values.
    let mut live = StateDiff::new();
    for (key, raw) in state {
        let value = match raw.as_deref().map(keel_state::Entry::decode).transpose() {
            Ok(Some(keel_state::Entry::Live { value, .. })) => Some(value),
            Ok(_) => None,
            Err(e) => return Err(format!("{key}: {e}")),
        };
        live.insert(key.clone(), value);
    }
    let state = &live;
    let mut storage: BTreeMap<[u8; 20], Vec<(B256, U256)>> = BTreeMap::new();
    for (key, value) in state {
        if let (StateKey::Storage(address, slot), Some(value)) = (key, value) {
            storage
                .entry(address.0)
                .or_default()
                .push((B256::from(*slot), U256::from_be_slice(value)));
        }
    }
    let mut accounts = Vec::new();
    for (key, value) in state {
        let (StateKey::Account(address), Some(bytes)) = (key, value) else {
            continue;
        };
        let record = AccountRecord::decode(bytes).map_err(|e| e.to_string())?;
        let code_hash = match &record.code {
            None => alloy_primitives::KECCAK256_EMPTY,
            Some(code_ref) => {
                let blob = state
                    .get(&StateKey::Code(code_ref.code_hash))
                    .cloned()
                    .flatten()
                    .ok_or_else(|| format!("account {address} names missing code"))?;
                let blob = CodeBlob::decode(&blob).map_err(|e| e.to_string())?;
                keccak256(keel_exec_evm::evm_code_bytes(blob.env, &blob.code))
            }
        };
        let slots = storage.remove(&address.0).unwrap_or_default();
        accounts.push((
            alloy_primitives::Address::from(address.0),
            TrieAccount {
                nonce: record.nonce,
                balance: U256::from_be_bytes(record.balance.to_be_bytes::<32>()),
                storage_root: storage_root_unhashed(slots),
                code_hash,
            },
        ));
    }
    Ok(state_root_unhashed(accounts))
}

/// keccak256 of the RLP list of logs, as the fixtures' `logs` field.
pub fn logs_hash(logs: &[Log]) -> B256 {
    let mut out = Vec::with_capacity(alloy_rlp::list_length(logs));
    alloy_rlp::encode_list(logs, &mut out);
    keccak256(&out)
}

fn run_case(unit: &TestUnit, spec: &SpecName, test: &Test) -> Result<(), String> {
    let pre = pre_state(unit).map_err(|e| e.to_string())?;
    let mut cfg = CfgEnv::new_with_spec(spec.to_spec_id());
    cfg.chain_id = unit
        .transaction
        .chain_id
        .map_or(1, |c| c.saturating_to::<u64>());
    // Per-transaction blob limit of the fork (EIP-4844: 6 in Cancun; EIP-7691: 9 in
    // Prague; EIP-7594's per-transaction cap: 6 from Osaka), as the fixtures expect.
    let spec_id = spec.to_spec_id();
    let max_blobs = if spec_id.is_enabled_in(revm::primitives::hardfork::SpecId::OSAKA) {
        6
    } else if spec_id.is_enabled_in(revm::primitives::hardfork::SpecId::PRAGUE) {
        9
    } else {
        6
    };
    cfg.set_max_blobs_per_tx(max_blobs);
    let block = unit.block_env(&mut cfg);
    let tx: Result<TxEnv, _> = test.tx_env(unit);
    let tx = match (tx, &test.expect_exception) {
        (Ok(tx), _) => tx,
        (Err(_), Some(_)) => return Ok(()),
        (Err(e), None) => return Err(format!("building the transaction: {e}")),
    };
    let mut overlay = Overlay::new(&pre);
    let outcome = {
        let db = KeelDb::new(&overlay, &FixtureBlockHashes);
        let mut evm = keel_exec_evm::eth_evm(keel_exec_evm::context(db, cfg, block));
        evm.transact(tx)
    };
    let outcome = match (outcome, &test.expect_exception) {
        (Err(_), Some(_)) => return Ok(()),
        (Ok(_), Some(expected)) => {
            return Err(format!(
                "expected exception {expected}, the transaction was valid"
            ))
        }
        (Err(e), None) => return Err(format!("unexpected error: {e}")),
        (Ok(outcome), None) => outcome,
    };
    let logs = outcome.result.logs().to_vec();
    apply_evm_state(
        &mut overlay,
        outcome.state,
        &keel_exec_evm::KeptSpends::default(),
    )
    .map_err(|e| e.to_string())?;
    let mut post = pre.0.clone();
    post.extend(overlay.into_diff());
    let root = ethereum_state_root(&post)?;
    let logs_root = logs_hash(&logs);
    if logs_root != test.logs {
        return Err(format!("logs hash {logs_root} != expected {}", test.logs));
    }
    if root != test.hash {
        return Err(format!("state root {root} != expected {}", test.hash));
    }
    Ok(())
}

/// Fixture files whose transaction `value` does not fit 256 bits: they test that an RLP
/// decoder rejects the transaction, which is not an EVM question, and revm's fixture types
/// cannot hold them (revm's own runner skips the same files). docs/statetest.md lists them.
pub const UNREPRESENTABLE_FIXTURES: &[&str] = &["ValueOverflow.json", "ValueOverflowParis.json"];

/// Run every post entry of one fixture file.
pub fn run_file(path: &Path) -> Result<Vec<CaseResult>, String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > MAX_FIXTURE_BYTES {
        return Err(format!(
            "{} is {len} bytes, over {MAX_FIXTURE_BYTES}",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let suite: TestSuite = match serde_json::from_str(&text) {
        Ok(suite) => suite,
        Err(_)
            if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| UNREPRESENTABLE_FIXTURES.contains(&n)) =>
        {
            return Ok(vec![CaseResult {
                name: path.display().to_string(),
                indexes: (0, 0, 0),
                failure: None,
                skipped: true,
            }]);
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut results = Vec::new();
    for (name, unit) in &suite.0 {
        for (spec, tests) in &unit.post {
            for test in tests {
                let i = &test.indexes;
                let skipped = !runnable(spec);
                let failure = if skipped {
                    None
                } else {
                    run_case(unit, spec, test).err()
                };
                results.push(CaseResult {
                    name: format!("{name} [{spec:?}]"),
                    indexes: (i.data, i.gas, i.value),
                    failure,
                    skipped,
                });
            }
        }
    }
    Ok(results)
}

/// Every `.json` file under `path` (or `path` itself), in sorted order.
pub fn fixture_files(path: &Path) -> Result<Vec<std::path::PathBuf>, String> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let p = entry.map_err(|e| e.to_string())?.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "json") {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}
