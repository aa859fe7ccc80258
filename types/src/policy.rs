//! Account policies: the limits an account (or the controller it named) puts on what its
//! transactions may do, kept in state so every node applies them the same way, and the typed
//! denial a transaction that breaks one gets (docs/policies.md).
//!
//! A policy is a conjunction of optional limits; `None` means "no limit". The relation
//! [`AccountPolicy::within`] ("every transaction `self` permits, `outer` permits too") is what
//! an agent may do to its own policy: only move to a policy within the current one.

use crate::address::Address;
use crate::encoding::{check_len, Canonical, DecodeError};
use crate::state_key::Env;
use crate::{Epoch, Height, U256};
use borsh::{BorshDeserialize, BorshSerialize};

/// Most plugins one policy may attach.
pub const MAX_POLICY_PLUGINS: usize = 4;
/// Gas one plugin check may use (its call's intrinsic gas included), charged to the sender
/// on top of the transaction's own gas, within its gas limit.
pub const PLUGIN_GAS: u64 = 200_000;
/// The plugin context's ABI signature: sender (the signing key's address), account, session
/// key (zero if none), target (zero for a deploy), selector, value, environment (0 EVM, 1
/// WASM, 2 none), epoch, what the account spent this epoch (value, fees, transactions), and
/// the jurisdiction codes the account holds a live tag for (ISO 3166-1 alpha-2, ascending).
pub const PLUGIN_CHECK_SIGNATURE: &str = "check(address,address,bytes32,address,bytes4,uint256,uint8,uint64,uint256,uint256,uint64,bytes2[])";

/// The 4-byte selector of [`PLUGIN_CHECK_SIGNATURE`].
pub fn plugin_check_selector() -> [u8; 4] {
    let h = crate::eth::keccak256(PLUGIN_CHECK_SIGNATURE.as_bytes());
    [h[0], h[1], h[2], h[3]]
}

/// Most session keys one account may hold.
pub const MAX_SESSION_KEYS: usize = 16;
/// Most targets one policy may list.
pub const MAX_POLICY_TARGETS: usize = 32;
/// Most 4-byte selectors one target may be narrowed to.
pub const MAX_TARGET_SELECTORS: usize = 16;
/// Largest encoded [`PolicyRecord`]: targets with their selectors and the fixed fields.
pub const MAX_POLICY_RECORD_BYTES: usize =
    MAX_POLICY_TARGETS * (20 + 1 + 4 + MAX_TARGET_SELECTORS * 4) + MAX_POLICY_PLUGINS * 20 + 512;

/// Gas a policy transaction costs before its bytes: a transaction's base cost plus one fresh
/// storage write.
pub const POLICY_TX_BASE_GAS: u64 = 21_000 + 20_000;
/// Gas per byte of a policy change's encoding: a fresh storage slot's price per byte
/// (20,000 per 32 bytes). Policy entries never expire, so they pay what permanent storage
/// costs in the EVM (found by review: at calldata's 16 per byte they were the cheapest
/// permanent state on the chain).
pub const POLICY_TX_GAS_PER_BYTE: u64 = 20_000 / 32;

/// One allowed target, optionally narrowed to some 4-byte function selectors.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct TargetRule {
    pub to: Address,
    /// `None`: any call to `to`; `Some`: only calls whose data starts with one of these.
    pub selectors: Option<Vec<[u8; 4]>>,
}

/// The limits on an account's transactions. Every field `None` (or `false`): no limits.
#[derive(Debug, Clone, PartialEq, Eq, Default, BorshSerialize, BorshDeserialize)]
pub struct AccountPolicy {
    /// Environments whose contracts the account may call or deploy: `None` any.
    pub envs: Option<Vec<Env>>,
    /// Addresses the account may send to or call: `None` any. With a list, deploys are
    /// denied (a deploy has no target to list).
    pub targets: Option<Vec<TargetRule>>,
    /// Most native value one transaction may send.
    pub max_value_per_tx: Option<U256>,
    /// Most native value the account may send per epoch.
    pub max_value_per_epoch: Option<U256>,
    /// Most fees the account may pay per epoch.
    pub max_fee_per_epoch: Option<U256>,
    /// Most transactions the account may send per epoch.
    pub max_txs_per_epoch: Option<u64>,
    /// First height at which the account may send.
    pub valid_from: Option<Height>,
    /// Last height at which the account may send.
    pub valid_until: Option<Height>,
    /// No transaction at all (only its controller can lift it).
    pub frozen: bool,
    /// Policy plugins: contracts whose `check(…)` (`plugin_check_selector`) every transfer,
    /// call and deploy must pass, run read-only with `PLUGIN_GAS` before the transaction.
    /// More plugins is tighter.
    pub plugins: Vec<Address>,
}

/// What is stored under `StateKey::Policy(account)`.
#[derive(Debug, Clone, PartialEq, Eq, Default, BorshSerialize, BorshDeserialize)]
pub struct PolicyRecord {
    /// Who may change the policy freely (tighten or loosen) and name another controller.
    pub controller: Option<Address>,
    pub policy: AccountPolicy,
    /// Who set the policy last (the account or its controller): a denial's `source`.
    pub source: Address,
    /// The height of the last change.
    pub changed_at: Height,
}

/// One session key of an account and its scope.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SessionKey {
    pub key: crate::PublicKey,
    pub policy: AccountPolicy,
    /// The last height at which it may sign.
    pub expires_at: Height,
    /// Who added it (the account or its controller): its denials' `source`.
    pub added_by: Address,
    pub added_at: Height,
}

impl Canonical for SessionKey {
    const KIND: &'static str = "SessionKey";
    const VERSION: u8 = 1;
    const MAX_ENCODED_BYTES: usize = 32 + MAX_POLICY_RECORD_BYTES + 36;

    fn validate(&self) -> Result<(), DecodeError> {
        self.policy.validate()
    }
}

/// What is stored under `StateKey::SessionKeys(account)`: the account's session keys, in the
/// order they were added (each key's scope is its own entry, `StateKey::SessionKey`, so a
/// transaction reads one small entry and a change rewrites at most 16 × 32 bytes here; found
/// by review).
#[derive(Debug, Clone, PartialEq, Eq, Default, BorshSerialize, BorshDeserialize)]
pub struct SessionKeys(pub Vec<crate::PublicKey>);

impl Canonical for SessionKeys {
    const KIND: &'static str = "SessionKeys";
    const VERSION: u8 = 1;
    // The version byte, the length prefix, the keys.
    const MAX_ENCODED_BYTES: usize = 1 + 4 + MAX_SESSION_KEYS * 32;

    fn validate(&self) -> Result<(), DecodeError> {
        check_len(Self::KIND, "keys", self.0.len(), MAX_SESSION_KEYS)
    }
}

/// Bytes of [`SessionScope::abi`]: eleven ABI words.
pub const SESSION_SCOPE_BYTES: usize = 11 * 32;

/// The scope of the session key that signed a transaction, as the transaction's policy
/// decision read it: what Solidity's `txSessionScope()` on the jurisdiction contract and
/// WASM's `tx_session_scope` host call return, so a contract can see the limits an agent's
/// key acts within (docs/policies.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionScope {
    pub key: crate::PublicKey,
    pub expires_at: Height,
    /// The epoch the budgets and `used` are of (they reset at the next).
    pub epoch: Epoch,
    pub max_value_per_tx: Option<U256>,
    pub max_value_per_epoch: Option<U256>,
    pub max_fee_per_epoch: Option<U256>,
    pub max_txs_per_epoch: Option<u64>,
    /// What the key used this epoch before the transaction.
    pub used: PolicySpend,
    /// How many targets the key may send to or call (`None`: any).
    pub targets: Option<u64>,
}

impl SessionScope {
    /// `key`'s scope (its stored entry) in `epoch`, with `used` before the transaction.
    pub fn of(key: &SessionKey, epoch: Epoch, used: PolicySpend) -> SessionScope {
        let policy = &key.policy;
        SessionScope {
            key: key.key,
            expires_at: key.expires_at,
            epoch,
            max_value_per_tx: policy.max_value_per_tx,
            max_value_per_epoch: policy.max_value_per_epoch,
            max_fee_per_epoch: policy.max_fee_per_epoch,
            max_txs_per_epoch: policy.max_txs_per_epoch,
            used: used.in_epoch(epoch),
            targets: policy.targets.as_ref().map(|t| t.len() as u64),
        }
    }

    /// The ABI words `(bytes32 key, uint64 expiresAt, uint64 epoch, uint256 maxValuePerTx,
    /// uint256 maxValuePerEpoch, uint256 maxFeePerEpoch, uint256 maxTxsPerEpoch, uint256
    /// valueUsed, uint256 feesUsed, uint256 txsUsed, uint256 targets)`; no limit (and any
    /// target) is `type(uint256).max`. `None` (the account's own key signed): all zero.
    pub fn abi(scope: Option<&SessionScope>) -> [u8; SESSION_SCOPE_BYTES] {
        let mut out = [0u8; SESSION_SCOPE_BYTES];
        let Some(s) = scope else {
            return out;
        };
        let limit = |v: Option<U256>| v.unwrap_or(U256::MAX);
        let words = [
            U256::from_be_bytes(s.key.0),
            U256::from(s.expires_at),
            U256::from(s.epoch),
            limit(s.max_value_per_tx),
            limit(s.max_value_per_epoch),
            limit(s.max_fee_per_epoch),
            limit(s.max_txs_per_epoch.map(U256::from)),
            s.used.value,
            s.used.fees,
            U256::from(s.used.txs),
            limit(s.targets.map(U256::from)),
        ];
        for (chunk, word) in out.chunks_exact_mut(32).zip(words) {
            chunk.copy_from_slice(&word.to_be_bytes::<32>());
        }
        out
    }
}

/// What an account (in its `AccountRecord::policy_spend`) or a session key (under
/// `StateKey::SessionSpend`) used in `epoch`. A spending of an older epoch reads as all zero
/// (the reset is lazy: no per-epoch sweep).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, BorshSerialize, BorshDeserialize)]
pub struct PolicySpend {
    pub epoch: Epoch,
    pub value: U256,
    pub fees: U256,
    pub txs: u64,
}

impl PolicySpend {
    /// What was used in `epoch` (zero if this entry is from another epoch).
    pub fn in_epoch(self, epoch: Epoch) -> PolicySpend {
        if self.epoch == epoch {
            self
        } else {
            PolicySpend {
                epoch,
                ..PolicySpend::default()
            }
        }
    }
}

/// Which rule denied a transaction. Discriminants are explicit: receipts are hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum PolicyRule {
    Frozen = 0,
    ValidFrom = 1,
    ValidUntil = 2,
    Environment = 3,
    Target = 4,
    Selector = 5,
    Deploy = 6,
    ValuePerTx = 7,
    ValuePerEpoch = 8,
    FeePerEpoch = 9,
    TxsPerEpoch = 10,
    /// A policy change by someone who is neither the account nor its controller.
    NotController = 11,
    /// An account's own change that would loosen its policy or name a controller while
    /// limited: only its controller may.
    Loosening = 12,
    /// Signed by a key that is not (or no longer) a session key of the account.
    SessionKeyUnknown = 13,
    /// Signed by a session key past its expiry height.
    SessionKeyExpired = 14,
    /// A session key may not change policies, controllers or session keys.
    SessionKeyScope = 15,
    /// The account already holds `MAX_SESSION_KEYS` session keys.
    TooManySessionKeys = 16,
    /// A plugin's check returned a non-zero code (its code is the denial's `used`).
    PluginDenied = 17,
    /// A plugin's check reverted, trapped, ran out of its gas, read an expired entry or
    /// returned no code: denied.
    PluginFailed = 18,
    /// The target's jurisdiction rules deny callers tagged with a code the caller holds
    /// (`used` is the code's two bytes as a number; `source` the target).
    JurisdictionDenied = 19,
    /// The target admits only callers tagged with one of its codes, and the caller holds none.
    JurisdictionNotAllowed = 20,
    /// An untagged caller sends more value than the target admits from untagged callers.
    JurisdictionUntaggedValue = 21,
}

impl PolicyRule {
    /// The stable name RPC and docs use.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyRule::Frozen => "frozen",
            PolicyRule::ValidFrom => "valid_from",
            PolicyRule::ValidUntil => "valid_until",
            PolicyRule::Environment => "environment",
            PolicyRule::Target => "target",
            PolicyRule::Selector => "selector",
            PolicyRule::Deploy => "deploy",
            PolicyRule::ValuePerTx => "max_value_per_tx",
            PolicyRule::ValuePerEpoch => "max_value_per_epoch",
            PolicyRule::FeePerEpoch => "max_fee_per_epoch",
            PolicyRule::TxsPerEpoch => "max_txs_per_epoch",
            PolicyRule::NotController => "not_controller",
            PolicyRule::Loosening => "loosening",
            PolicyRule::SessionKeyUnknown => "session_key_unknown",
            PolicyRule::SessionKeyExpired => "session_key_expired",
            PolicyRule::SessionKeyScope => "session_key_scope",
            PolicyRule::TooManySessionKeys => "too_many_session_keys",
            PolicyRule::PluginDenied => "plugin_denied",
            PolicyRule::PluginFailed => "plugin_failed",
            PolicyRule::JurisdictionDenied => "jurisdiction_denied",
            PolicyRule::JurisdictionNotAllowed => "jurisdiction_not_allowed",
            PolicyRule::JurisdictionUntaggedValue => "jurisdiction_untagged_value",
        }
    }
}

/// Whose rule it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum PolicyScope {
    Account = 0,
    SessionKey = 1,
    Contract = 2,
    Plugin = 3,
}

impl PolicyScope {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyScope::Account => "account",
            PolicyScope::SessionKey => "session_key",
            PolicyScope::Contract => "contract",
            PolicyScope::Plugin => "plugin",
        }
    }
}

/// Why a policy denied a transaction, with the numbers an agent needs to act on it: the
/// limit, what was used (this transaction included where it counts), the epoch whose start
/// resets the budget (`None` for rules that do not reset), and who set the rule.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct PolicyDenial {
    pub rule: PolicyRule,
    pub scope: PolicyScope,
    pub limit: U256,
    pub used: U256,
    pub resets_at_epoch: Option<Epoch>,
    pub source: Address,
}

impl std::fmt::Display for PolicyDenial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} rule `{}` set by {} (limit {}, used {}",
            self.scope.as_str(),
            self.rule.as_str(),
            self.source,
            self.limit,
            self.used
        )?;
        match self.resets_at_epoch {
            Some(epoch) => write!(f, ", resets at epoch {epoch})"),
            None => f.write_str(")"),
        }
    }
}

/// `inner` ≤ `outer` as limits, `None` being no limit.
fn cap_within<T: PartialOrd>(inner: &Option<T>, outer: &Option<T>) -> bool {
    match (inner, outer) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(i), Some(o)) => i <= o,
    }
}

impl AccountPolicy {
    /// Whether every transaction this policy permits, `outer` permits too.
    pub fn within(&self, outer: &AccountPolicy) -> bool {
        if outer.frozen && !self.frozen {
            return false;
        }
        let envs = match (&self.envs, &outer.envs) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(i), Some(o)) => i.iter().all(|e| o.contains(e)),
        };
        let targets = match (&self.targets, &outer.targets) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(i), Some(o)) => i.iter().all(|rule| {
                o.iter().any(|outer_rule| {
                    outer_rule.to == rule.to && selectors_within(rule, outer_rule)
                })
            }),
        };
        // A window starting later or ending earlier is narrower.
        let from = match (self.valid_from, outer.valid_from) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(i), Some(o)) => i >= o,
        };
        // Every plugin of the outer policy still runs.
        let plugins = outer.plugins.iter().all(|p| self.plugins.contains(p));
        envs && targets
            && plugins
            && from
            && cap_within(&self.valid_until, &outer.valid_until)
            && cap_within(&self.max_value_per_tx, &outer.max_value_per_tx)
            && cap_within(&self.max_value_per_epoch, &outer.max_value_per_epoch)
            && cap_within(&self.max_fee_per_epoch, &outer.max_fee_per_epoch)
            && cap_within(&self.max_txs_per_epoch, &outer.max_txs_per_epoch)
    }

    /// Whether the policy limits anything.
    pub fn is_unlimited(&self) -> bool {
        *self == AccountPolicy::default()
    }
}

fn selectors_within(inner: &TargetRule, outer: &TargetRule) -> bool {
    match (&inner.selectors, &outer.selectors) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(i), Some(o)) => i.iter().all(|s| o.contains(s)),
    }
}

/// No item twice. Pairwise, without allocating: the lists are short (at most
/// `MAX_POLICY_TARGETS`), and every policed transaction decodes its policy (a set here was a
/// tenth of such a transaction's execution time).
fn distinct<T: PartialEq>(
    items: impl Iterator<Item = T> + Clone,
    field: &str,
) -> Result<(), DecodeError> {
    for (i, item) in items.clone().enumerate() {
        if items.clone().skip(i + 1).any(|other| other == item) {
            return Err(DecodeError::Malformed {
                kind: AccountPolicy::KIND,
                reason: format!("repeated entry in {field}"),
            });
        }
    }
    Ok(())
}

impl Canonical for AccountPolicy {
    const KIND: &'static str = "AccountPolicy";
    const VERSION: u8 = 1;
    const MAX_ENCODED_BYTES: usize = MAX_POLICY_RECORD_BYTES;

    /// Bounds, and no repeated environment, target or selector: `within` and the checks at
    /// execution must read a policy the same way (with a target listed twice, execution
    /// would apply the first rule and `within` accept either; found by review).
    fn validate(&self) -> Result<(), DecodeError> {
        self.check_bounds()?;
        if let Some(envs) = &self.envs {
            distinct(envs.iter(), "envs")?;
        }
        distinct(self.plugins.iter(), "plugins")?;
        if let Some(targets) = &self.targets {
            distinct(targets.iter().map(|t| t.to), "targets")?;
            for rule in targets {
                if let Some(selectors) = &rule.selectors {
                    distinct(selectors.iter(), "selectors")?;
                }
            }
        }
        Ok(())
    }
}

impl AccountPolicy {
    /// The length bounds alone (what a stored record is still checked for).
    fn check_bounds(&self) -> Result<(), DecodeError> {
        if let Some(envs) = &self.envs {
            check_len(Self::KIND, "envs", envs.len(), 2)?;
        }
        check_len(
            Self::KIND,
            "plugins",
            self.plugins.len(),
            MAX_POLICY_PLUGINS,
        )?;
        if let Some(targets) = &self.targets {
            check_len(Self::KIND, "targets", targets.len(), MAX_POLICY_TARGETS)?;
            for rule in targets {
                if let Some(selectors) = &rule.selectors {
                    let n = selectors.len();
                    check_len(Self::KIND, "selectors", n, MAX_TARGET_SELECTORS)?;
                }
            }
        }
        Ok(())
    }
}

impl PolicyRecord {
    /// Decodes a record read from the state, without [`Canonical::decode`]'s no-repeats
    /// check: a record is written only from a policy change whose transaction passed that
    /// check when it was decoded, and the state is authenticated (a synced node verified it
    /// against the root). The check was the largest part of what a policy costs each of the
    /// account's transactions. Length bounds, version and trailing bytes are still checked.
    pub fn decode_stored(bytes: &[u8]) -> Result<PolicyRecord, DecodeError> {
        let kind = <PolicyRecord as Canonical>::KIND;
        if bytes.len() > <PolicyRecord as Canonical>::MAX_ENCODED_BYTES {
            return Err(DecodeError::TooLarge {
                kind,
                len_bytes: bytes.len(),
                max_bytes: <PolicyRecord as Canonical>::MAX_ENCODED_BYTES,
            });
        }
        let (&version, mut body) = bytes.split_first().ok_or(DecodeError::Empty { kind })?;
        if version != <PolicyRecord as Canonical>::VERSION {
            return Err(DecodeError::UnknownVersion {
                kind,
                got: version,
                known: <PolicyRecord as Canonical>::VERSION,
            });
        }
        let value = <PolicyRecord as BorshDeserialize>::deserialize(&mut body).map_err(|e| {
            DecodeError::Malformed {
                kind,
                reason: e.to_string(),
            }
        })?;
        if !body.is_empty() {
            return Err(DecodeError::TrailingBytes {
                kind,
                count: body.len(),
            });
        }
        value.policy.check_bounds()?;
        Ok(value)
    }
}

impl Canonical for PolicyRecord {
    const KIND: &'static str = "PolicyRecord";
    const VERSION: u8 = 1;
    const MAX_ENCODED_BYTES: usize = MAX_POLICY_RECORD_BYTES;

    fn validate(&self) -> Result<(), DecodeError> {
        self.policy.validate()
    }
}

impl Canonical for PolicySpend {
    const KIND: &'static str = "PolicySpend";
    const VERSION: u8 = 1;
    const MAX_ENCODED_BYTES: usize = 1 + 8 + 32 + 32 + 8;
}

/// Why a policy change happened, as a policy log's data word says it (stable numbers: an
/// agent watching its own account reads them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PolicyChange {
    /// The account tightened its own policy.
    TightenedByAccount = 1,
    /// The controller set the policy.
    SetByController = 2,
    /// The account named its first controller.
    ControllerNamed = 3,
    /// The controller named another controller.
    ControllerChanged = 4,
    /// The controller released the account (no controller any more).
    ControllerReleased = 5,
    /// A session key was added (or its scope replaced).
    SessionKeyAdded = 6,
    /// A session key was revoked.
    SessionKeyRevoked = 7,
}

/// The policy system address (no key, no code, like `Address::FEE_BURN`): policy logs come
/// from it, and a transaction that calls it with no value and the borsh encoding of a
/// `SetPolicy` or `SetController` body as data makes that change — how Ethereum accounts,
/// whose envelopes carry only calls and creations, manage policies
/// (`TxBody::as_policy_change`).
pub const POLICY_ADDRESS: Address = Address([
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x90, 0x11,
]);

/// Topic 0 of a policy log: keccak256 of `PolicyChanged(address,address,uint8)`
/// (topics: this, then the account and who changed it; data: the [`PolicyChange`] word).
pub fn policy_changed_topic() -> [u8; 32] {
    crate::eth::keccak256(b"PolicyChanged(address,address,uint8)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_record_decodes_as_canonical_decode_does() {
        let record = PolicyRecord {
            controller: Some(Address([3; 20])),
            policy: AccountPolicy {
                targets: Some(
                    (1..=16u8)
                        .map(|t| TargetRule {
                            to: Address([t; 20]),
                            selectors: (t % 2 == 0).then(|| vec![[t; 4]]),
                        })
                        .collect(),
                ),
                ..capped(100)
            },
            source: Address([4; 20]),
            changed_at: 9,
        };
        let bytes = record.encode();
        assert_eq!(PolicyRecord::decode_stored(&bytes), Ok(record.clone()));
        assert_eq!(PolicyRecord::decode(&bytes), Ok(record));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(PolicyRecord::decode_stored(&trailing).is_err());
        let mut version = bytes;
        version[0] = 9;
        assert!(PolicyRecord::decode_stored(&version).is_err());
        assert!(PolicyRecord::decode_stored(&[]).is_err());
        // Bounds are still checked (only the no-repeats check is skipped).
        let too_many = PolicyRecord {
            controller: None,
            policy: AccountPolicy {
                plugins: (0..5u8).map(|i| Address([i; 20])).collect(),
                ..AccountPolicy::default()
            },
            source: Address([4; 20]),
            changed_at: 1,
        };
        assert!(PolicyRecord::decode_stored(&too_many.encode()).is_err());
    }

    fn capped(value: u64) -> AccountPolicy {
        AccountPolicy {
            max_value_per_epoch: Some(U256::from(value)),
            ..AccountPolicy::default()
        }
    }

    #[test]
    fn within_is_tightening() {
        let open = AccountPolicy::default();
        assert!(capped(5).within(&open));
        assert!(!open.within(&capped(5)));
        assert!(capped(4).within(&capped(5)));
        assert!(!capped(6).within(&capped(5)));
        let frozen = AccountPolicy {
            frozen: true,
            ..AccountPolicy::default()
        };
        assert!(!open.within(&frozen), "unfreezing loosens");
        assert!(frozen.within(&open));
        let target = |selectors: Option<Vec<[u8; 4]>>| AccountPolicy {
            targets: Some(vec![TargetRule {
                to: Address([7; 20]),
                selectors,
            }]),
            ..AccountPolicy::default()
        };
        assert!(target(Some(vec![[1; 4]])).within(&target(None)));
        assert!(!target(None).within(&target(Some(vec![[1; 4]]))));
        assert!(!target(Some(vec![[1; 4], [2; 4]])).within(&target(Some(vec![[1; 4]]))));
        let window = |from, until| AccountPolicy {
            valid_from: from,
            valid_until: until,
            ..AccountPolicy::default()
        };
        assert!(window(Some(10), Some(20)).within(&window(Some(5), Some(30))));
        assert!(!window(Some(4), Some(20)).within(&window(Some(5), Some(30))));
        assert!(!window(None, Some(20)).within(&window(Some(5), None)));
        let plugged = |plugins: Vec<Address>| AccountPolicy {
            plugins,
            ..AccountPolicy::default()
        };
        let (a, b) = (Address([1; 20]), Address([2; 20]));
        assert!(
            plugged(vec![a, b]).within(&plugged(vec![b])),
            "one more plugin tightens"
        );
        assert!(
            !plugged(vec![a]).within(&plugged(vec![b])),
            "dropping one loosens"
        );
    }

    #[test]
    fn records_decode_within_their_bound() {
        let record = PolicyRecord {
            controller: Some(Address([1; 20])),
            policy: AccountPolicy {
                envs: Some(vec![Env::Evm, Env::Wasm]),
                targets: Some(
                    (0..MAX_POLICY_TARGETS)
                        .map(|i| TargetRule {
                            to: Address([i as u8; 20]),
                            selectors: Some(
                                (0..MAX_TARGET_SELECTORS).map(|j| [j as u8; 4]).collect(),
                            ),
                        })
                        .collect(),
                ),
                max_value_per_tx: Some(U256::MAX),
                max_value_per_epoch: Some(U256::MAX),
                max_fee_per_epoch: Some(U256::MAX),
                max_txs_per_epoch: Some(u64::MAX),
                valid_from: Some(u64::MAX),
                valid_until: Some(u64::MAX),
                frozen: true,
                plugins: (0..MAX_POLICY_PLUGINS)
                    .map(|i| Address([0x80 + i as u8; 20]))
                    .collect(),
            },
            source: Address([2; 20]),
            changed_at: u64::MAX,
        };
        let bytes = record.encode();
        assert!(bytes.len() <= MAX_POLICY_RECORD_BYTES);
        assert_eq!(PolicyRecord::decode(&bytes).expect("decodes"), record);
        // The session-key entries at their largest decode again (a node reads back what it
        // wrote; an entry past its bound would halt it).
        let keys = SessionKeys(
            (0..MAX_SESSION_KEYS)
                .map(|i| crate::PublicKey([i as u8; 32]))
                .collect(),
        );
        assert_eq!(SessionKeys::decode(&keys.encode()).expect("decodes"), keys);
        let key = SessionKey {
            key: crate::PublicKey([7; 32]),
            policy: record.policy.clone(),
            expires_at: u64::MAX,
            added_by: Address([3; 20]),
            added_at: u64::MAX,
        };
        assert_eq!(SessionKey::decode(&key.encode()).expect("decodes"), key);
        let spend = PolicySpend {
            epoch: u64::MAX,
            value: U256::MAX,
            fees: U256::MAX,
            txs: u64::MAX,
        };
        assert_eq!(
            PolicySpend::decode(&spend.encode()).expect("decodes"),
            spend
        );
        let mut too_many = record.clone();
        if let Some(targets) = too_many.policy.targets.as_mut() {
            targets.push(targets[0].clone());
        }
        assert!(PolicyRecord::decode(&too_many.encode()).is_err());
        // Repeats are refused wherever they are: a target, a selector, an environment.
        let rule = |selectors| TargetRule {
            to: Address([9; 20]),
            selectors,
        };
        let repeats = [
            AccountPolicy {
                targets: Some(vec![rule(Some(vec![[1; 4]])), rule(None)]),
                ..AccountPolicy::default()
            },
            AccountPolicy {
                targets: Some(vec![rule(Some(vec![[1; 4], [1; 4]]))]),
                ..AccountPolicy::default()
            },
            AccountPolicy {
                envs: Some(vec![Env::Evm, Env::Evm]),
                ..AccountPolicy::default()
            },
        ];
        for policy in repeats {
            assert!(
                AccountPolicy::decode(&policy.encode()).is_err(),
                "{policy:?}"
            );
            let t = crate::Transaction {
                chain_id: 1,
                sender: crate::Sender::Ethereum(Address([1; 20])),
                nonce: 0,
                gas_limit: 0,
                gas_price: 0,
                body: crate::TxBody::SetPolicy {
                    account: Address([1; 20]),
                    policy,
                },
            };
            assert!(crate::Canonical::validate(&t).is_err());
        }
    }
}

#[cfg(test)]
mod plugin_selector_tests {
    #[test]
    fn the_plugin_selector_is_the_documented_one() {
        // docs/policies.md and the example plugins (contracts/wasm) name it.
        assert_eq!(super::plugin_check_selector(), [0xd3, 0x04, 0x25, 0xa3]);
    }
}
