//! genesis.json: the chain's parameters, first validators and balances, validated, and the
//! height-0 state it produces.

use keel_runtime::validators::GenesisEntry;
use keel_state::{Overlay, StateDiff};
use keel_store::{CommitRequest, Store};
use keel_types::limits::{MAX_TX_GAS, MAX_VALIDATORS};
use keel_types::{AccountRecord, Address, Hash, PublicKey, U256};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;

/// Funded accounts a genesis may list (bounds the height-0 commit).
pub const MAX_GENESIS_ACCOUNTS: usize = 100_000;
/// The shortest epoch: its second-to-last block fixes the next epoch's set and its last
/// block's header commits to it (docs/validators.md).
pub const MIN_EPOCH_LENGTH: u64 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisValidator {
    pub public_key: PublicKey,
    /// P2P address other validators dial (host:port).
    pub p2p: String,
    /// Bonded stake (wei), minted locked: its voting power is stake / 10⁹.
    #[serde(
        default = "default_genesis_stake",
        skip_serializing_if = "is_default_genesis_stake"
    )]
    pub stake: U256,
    /// The account that may bond, unbond, update or retire it (none: nobody can).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<Address>,
}

fn default_genesis_stake() -> U256 {
    keel_types::validator::DEFAULT_GENESIS_STAKE
}

fn is_default_genesis_stake(stake: &U256) -> bool {
    *stake == keel_types::validator::DEFAULT_GENESIS_STAKE
}

fn default_min_stake() -> U256 {
    keel_types::validator::DEFAULT_MIN_STAKE
}

fn is_default_min_stake(stake: &U256) -> bool {
    *stake == keel_types::validator::DEFAULT_MIN_STAKE
}

fn default_max_validators() -> usize {
    MAX_VALIDATORS
}

fn is_default_max_validators(n: &usize) -> bool {
    *n == MAX_VALIDATORS
}

fn default_unbonding_epochs() -> u64 {
    keel_types::validator::DEFAULT_UNBONDING_EPOCHS
}

fn is_default_unbonding_epochs(n: &u64) -> bool {
    *n == keel_types::validator::DEFAULT_UNBONDING_EPOCHS
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
    /// Accounts that may tag accounts with jurisdiction codes (docs/policies.md, at most
    /// `keel_types::jurisdiction::MAX_ATTESTERS`, no repeats). Empty by default, and then
    /// not written, so a genesis without attesters hashes as before the field existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attesters: Vec<keel_types::Address>,
    /// Least stake a validator may bond (docs/validators.md).
    #[serde(
        default = "default_min_stake",
        skip_serializing_if = "is_default_min_stake"
    )]
    pub min_stake: U256,
    /// Most validators in one epoch's set.
    #[serde(
        default = "default_max_validators",
        skip_serializing_if = "is_default_max_validators"
    )]
    pub max_validators: usize,
    /// Whole epochs unbonded stake waits before it is paid back.
    #[serde(
        default = "default_unbonding_epochs",
        skip_serializing_if = "is_default_unbonding_epochs"
    )]
    pub unbonding_epochs: u64,
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

    /// The registry's parameters for the runtime.
    pub fn registry_params(&self) -> keel_types::validator::RegistryParams {
        keel_types::validator::RegistryParams {
            min_stake: self.min_stake,
            max_validators: self.max_validators,
            unbonding_epochs: self.unbonding_epochs,
            epoch_length: self.epoch_length,
        }
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
        // The next set is fixed by an epoch's second-to-last block (docs/validators.md).
        if self.epoch_length < MIN_EPOCH_LENGTH {
            return invalid(format!("epoch_length must be at least {MIN_EPOCH_LENGTH}"));
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
        // The jurisdiction contract never has an account record (its account never expires,
        // and value sent to it is lost).
        if self
            .balances
            .iter()
            .any(|b| b.address == keel_types::jurisdiction::JURISDICTION_ADDRESS)
        {
            return invalid("a balance at the jurisdiction contract's address".to_string());
        }
        let max_attesters = keel_types::jurisdiction::MAX_ATTESTERS;
        let distinct: std::collections::BTreeSet<_> = self.attesters.iter().collect();
        if self.attesters.len() > max_attesters || distinct.len() != self.attesters.len() {
            return invalid(format!(
                "at most {max_attesters} attesters, none twice, got {}",
                self.attesters.len()
            ));
        }
        if self.validators.is_empty() || self.validators.len() > MAX_VALIDATORS {
            return invalid(format!(
                "1 to {MAX_VALIDATORS} validators required, got {}",
                self.validators.len()
            ));
        }
        // At least 3 power units: a set's change budget (a third of its power) is then never
        // 0, so reconfiguration always progresses.
        let min_min_stake = U256::from(3 * keel_types::validator::POWER_UNIT_WEI);
        if self.min_stake < min_min_stake {
            return invalid(format!(
                "min_stake {} is below {min_min_stake} (3 units of voting power)",
                self.min_stake
            ));
        }
        if self.unbonding_epochs == 0 {
            return invalid(
                "unbonding_epochs must be at least 1 (stake must stay accountable past the \
                 epoch it leaves in)"
                    .into(),
            );
        }
        if !(self.validators.len()..=MAX_VALIDATORS).contains(&self.max_validators) {
            return invalid(format!(
                "max_validators {} must be at least the {} genesis validators and at most {MAX_VALIDATORS}",
                self.max_validators,
                self.validators.len()
            ));
        }
        let mut keys = BTreeSet::new();
        for v in &self.validators {
            if v.stake < self.min_stake {
                return invalid(format!(
                    "validator {} has stake {}, below min_stake {}",
                    v.public_key, v.stake, self.min_stake
                ));
            }
            if v.p2p.len() > keel_types::validator::MAX_P2P_ADDRESS_BYTES {
                return invalid(format!("validator {}: p2p address too long", v.public_key));
            }
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
        let base: &dyn keel_state::StateView = &view;
        let mut overlay = Overlay::new(base);
        let mut balances = self.balances.clone();
        balances.sort_by_key(|b| b.address);
        for b in &balances {
            let record = AccountRecord {
                nonce: 0,
                balance: b.balance,
                code: None,
                policy_spend: None,
            };
            overlay.put_account(b.address, &record)?;
        }
        keel_runtime::validators::write_genesis(&mut overlay, &self.registry_entries())?;
        Ok(overlay.into_diff())
    }

    fn registry_entries(&self) -> Vec<GenesisEntry> {
        self.validators
            .iter()
            .map(|v| GenesisEntry {
                key: v.public_key,
                operator: v.operator.unwrap_or(Address::ZERO),
                p2p: v.p2p.clone(),
                stake: v.stake,
            })
            .collect()
    }

    /// The validator set of epoch 0 (what epoch-change proofs start from).
    pub fn epoch_set(&self) -> keel_types::validator::EpochSet {
        keel_runtime::validators::genesis_set(&self.registry_entries())
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
        // The marker first, durably: a crash between the commit and the marker left a store
        // that every later start refused as another genesis's (found by review). A marker
        // without the commit is harmless: the store is empty, and the next start commits.
        let root = store.preview_root(0, &diff)?;
        self.write_marker(data_dir, root)?;
        let info = store.commit(CommitRequest {
            height: 0,
            diff: &diff,
            block: None,
            receipts: &[],
            archive: &keel_state::ArchiveBatch::default(),
        })?;
        debug_assert_eq!(info.state_root, root, "the previewed genesis root");
        Ok(info.state_root)
    }

    fn write_marker(&self, data_dir: &Path, root: Hash) -> Result<(), GenesisError> {
        let marker = data_dir.join("genesis.hash");
        let text = format!("{}\n{}\n", self.hash().to_hex(), root.to_hex());
        let failed = |e: std::io::Error| GenesisError::Read {
            path: marker.display().to_string(),
            reason: e.to_string(),
        };
        // Written whole and synced, file and directory entry, before anything relies on it.
        let partial = data_dir.join("genesis.hash.partial");
        std::fs::write(&partial, text).map_err(failed)?;
        std::fs::File::open(&partial)
            .and_then(|f| f.sync_all())
            .map_err(failed)?;
        std::fs::rename(&partial, &marker).map_err(failed)?;
        std::fs::File::open(data_dir)
            .and_then(|d| d.sync_all())
            .map_err(failed)
    }

    /// Marks a store restored from a snapshot (which never held height 0) as started from
    /// this genesis, so [`Genesis::apply`] accepts it: the genesis root is computed in a
    /// scratch store under `data_dir`, removed afterwards.
    pub fn mark_restored(&self, data_dir: &Path) -> Result<Hash, GenesisError> {
        let scratch = data_dir.join("genesis-scratch");
        let _ = std::fs::remove_dir_all(&scratch);
        let root = {
            let store = Store::open(
                &scratch,
                keel_store::StoreOptions {
                    sync_writes: false,
                    ..keel_store::StoreOptions::default()
                },
            )?;
            let diff = self.state_diff(&store)?;
            store.preview_root(0, &diff)?
        };
        let _ = std::fs::remove_dir_all(&scratch);
        self.write_marker(data_dir, root)?;
        Ok(root)
    }
}
