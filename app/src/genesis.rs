//! genesis.json: the chain's parameters, first validators and balances, validated, and the
//! height-0 state it produces.

use keel_state::{Overlay, StateDiff};
use keel_store::{CommitRequest, Store};
use keel_types::limits::{MAX_TX_GAS, MAX_VALIDATORS};
use keel_types::{AccountRecord, Address, Hash, PublicKey, U256};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;

/// Funded accounts a genesis may list (bounds the height-0 commit).
pub const MAX_GENESIS_ACCOUNTS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisValidator {
    pub public_key: PublicKey,
    /// P2P address other validators dial (host:port).
    pub p2p: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisBalance {
    pub address: Address,
    pub balance: U256,
}

/// `fold_epochs` of a genesis that does not say.
pub const DEFAULT_FOLD_EPOCHS: u64 = 2;

fn default_fold_epochs() -> u64 {
    DEFAULT_FOLD_EPOCHS
}

fn default_plugin_gas() -> u64 {
    keel_types::policy::PLUGIN_GAS
}

/// A genesis at the default plugin gas serializes (and hashes) as one written before the
/// field existed.
fn is_default_plugin_gas(gas: &u64) -> bool {
    *gas == keel_types::policy::PLUGIN_GAS
}

/// Least gas a plugin check may be given: a call's intrinsic gas and its context's calldata
/// (about 24,000 with the EIP-7623 floor) leave room for a real check (found by review: at
/// 30,000 a plugin had about 6,000 gas left).
pub const MIN_PLUGIN_GAS: u64 = 50_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub chain_id: u64,
    /// Timestamp of the genesis, ms since the Unix epoch; block timestamps must exceed it.
    pub genesis_time_ms: u64,
    /// Blocks per epoch.
    pub epoch_length: u64,
    /// Epochs an untouched entry stays live (0: expiry off).
    pub expiry_epochs: u64,
    /// Epochs an expired entry's stub stays in the tree (exact errors, one-leaf revival
    /// proofs) before a fold page takes it out (0: never; disk then grows with stubs).
    #[serde(default = "default_fold_epochs")]
    pub fold_epochs: u64,
    pub block_gas_limit: u64,
    pub min_gas_price: u128,
    /// Gas one policy plugin check may use at most (docs/policies.md).
    #[serde(
        default = "default_plugin_gas",
        skip_serializing_if = "is_default_plugin_gas"
    )]
    pub plugin_gas: u64,
    pub validators: Vec<GenesisValidator>,
    pub balances: Vec<GenesisBalance>,
}

#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    #[error("{path}: {reason}")]
    Read { path: String, reason: String },
    #[error("invalid genesis: {0}")]
    Invalid(String),
    #[error("state: {0}")]
    State(#[from] keel_state::StateError),
    #[error("the data directory holds a chain with genesis {found}, but genesis.json is {expected}; use a fresh --home or the right genesis.json")]
    Mismatch { expected: Hash, found: Hash },
}

impl Genesis {
    pub fn load(path: &Path) -> Result<Genesis, GenesisError> {
        let read = |reason: String| GenesisError::Read {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| read(e.to_string()))?;
        let genesis: Genesis = serde_json::from_str(&text).map_err(|e| read(e.to_string()))?;
        genesis.validate()?;
        Ok(genesis)
    }

    pub fn to_json(&self) -> String {
        // A struct of plain fields: serialization cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// The chain's identity: blake3 of the canonical (compact, field-ordered) JSON.
    pub fn hash(&self) -> Hash {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        Hash(*blake3::hash(&canonical).as_bytes())
    }

    pub fn validate(&self) -> Result<(), GenesisError> {
        let invalid = |m: String| Err(GenesisError::Invalid(m));
        if self.chain_id == 0 {
            return invalid("chain_id must be non-zero".into());
        }
        if self.epoch_length == 0 {
            return invalid("epoch_length must be at least 1".into());
        }
        if self.block_gas_limit < MAX_TX_GAS {
            return invalid(format!(
                "block_gas_limit {} is below the per-transaction limit {MAX_TX_GAS}",
                self.block_gas_limit
            ));
        }
        if !(MIN_PLUGIN_GAS..=MAX_TX_GAS).contains(&self.plugin_gas) {
            return invalid(format!(
                "plugin_gas {} is outside {MIN_PLUGIN_GAS}..={MAX_TX_GAS}",
                self.plugin_gas
            ));
        }
        if self.validators.is_empty() || self.validators.len() > MAX_VALIDATORS {
            return invalid(format!(
                "1 to {MAX_VALIDATORS} validators required, got {}",
                self.validators.len()
            ));
        }
        let mut keys = BTreeSet::new();
        for v in &self.validators {
            if !keys.insert(v.public_key) {
                return invalid(format!("validator {} is listed twice", v.public_key));
            }
            if v.public_key.validate().is_err() {
                return invalid(format!(
                    "validator key {} is not a valid ed25519 key",
                    v.public_key
                ));
            }
            if v.p2p.parse::<std::net::SocketAddr>().is_err() {
                return invalid(format!(
                    "validator {}: p2p address {:?} is not host:port",
                    v.public_key, v.p2p
                ));
            }
        }
        if self.balances.len() > MAX_GENESIS_ACCOUNTS {
            return invalid(format!("more than {MAX_GENESIS_ACCOUNTS} balances"));
        }
        let mut addresses = BTreeSet::new();
        for b in &self.balances {
            if !addresses.insert(b.address) {
                return invalid(format!("address {} is funded twice", b.address));
            }
        }
        Ok(())
    }

    /// The height-0 state: every funded account.
    pub fn state_diff(&self, store: &Store) -> Result<StateDiff, GenesisError> {
        let view = store.latest_view();
        let mut overlay = Overlay::new(&view);
        let mut balances = self.balances.clone();
        balances.sort_by_key(|b| b.address);
        for b in &balances {
            let record = AccountRecord {
                nonce: 0,
                balance: b.balance,
                code: None,
            };
            overlay.put_account(b.address, &record)?;
        }
        Ok(overlay.into_diff())
    }

    /// Commit the genesis state into a fresh store, or check that a used store was started
    /// from this genesis (its hash is kept beside the database). Returns the genesis root.
    pub fn apply(&self, store: &Store, data_dir: &Path) -> Result<Hash, GenesisError> {
        let marker = data_dir.join("genesis.hash");
        let expected = self.hash();
        if store.latest().is_some() {
            // The marker holds the genesis hash, then the genesis state root (height 0 may
            // since have been pruned, so the store cannot always answer).
            let text = std::fs::read_to_string(&marker).unwrap_or_default();
            let mut lines = text.lines().map(|l| Hash::from_hex(l.trim()).ok());
            let found = lines.next().flatten().unwrap_or(Hash::ZERO);
            if found != expected {
                return Err(GenesisError::Mismatch { expected, found });
            }
            return match lines.next().flatten() {
                Some(root) => Ok(root),
                None => Ok(store.state_root(0)?),
            };
        }
        let diff = self.state_diff(store)?;
        let info = store.commit(CommitRequest {
            height: 0,
            diff: &diff,
            block: None,
            receipts: &[],
            archive: &keel_state::ArchiveBatch::default(),
        })?;
        let text = format!("{}\n{}\n", expected.to_hex(), info.state_root.to_hex());
        std::fs::write(&marker, text).map_err(|e| GenesisError::Read {
            path: marker.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(info.state_root)
    }
}
