//! The keys and values of keel's one state, shared by the EVM and WASM environments.
//!
//! Three kinds of entry: an account record per address, code blobs by code hash, and
//! 32-byte storage slots per (contract, slot) — the same slot model in both environments, as
//! in Arbitrum Stylus. Each key has a canonical byte form (a tag byte then fixed-width fields)
//! and a position in the authenticated tree, `blake3_derive_key(StateKey, canonical bytes)`.

use crate::address::Address;
use crate::encoding::{check_len, Canonical, DecodeError};
use crate::hash::{Domain, Hash};
use crate::limits::MAX_CODE_BYTES;
use crate::U256;
use borsh::{BorshDeserialize, BorshSerialize};

/// Which execution environment runs a contract's code.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
#[borsh(use_discriminant = true)]
pub enum Env {
    Evm = 0,
    Wasm = 1,
}

impl Env {
    pub fn as_str(self) -> &'static str {
        match self {
            Env::Evm => "evm",
            Env::Wasm => "wasm",
        }
    }
}

/// A key in the state. Ordered by variant (in declaration order), then field by field, each
/// byte array lexicographically: the order `#[derive(Ord)]` would give (a property test
/// checks it against that), written out because every overlay, diff and cache is a map of
/// these keys and the derived order compared each array with a `memcmp` call.
#[derive(Debug, Clone, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub enum StateKey {
    /// The account record of an address.
    Account(Address),
    /// Contract code by its code hash (shared by every contract with the same code).
    Code(Hash),
    /// One 32-byte storage slot of a contract.
    Storage(Address, [u8; 32]),
    /// The expiry archive's accumulator (leaf count and peaks; see `archive`). Never expires.
    ArchiveAccumulator,
    /// The archive root sealed at the end of an epoch (see `archive::SealedArchive`).
    /// Never expires.
    ArchiveRoot(u64),
    /// How many fold pages exist (u64 BE); pages are numbered from 0. Never expires.
    FoldCount,
    /// A fold page of expired stubs taken out of the tree (see `fold`). Never expires.
    FoldPage(u64),
    /// An account's policy and controller (`policy::PolicyRecord`). Never expires: an
    /// expired limit must not read as no limit, and an absent policy must read as absent —
    /// were it an expiring key, a fold filter's false positive on the policy key of an
    /// account that never had one would refuse all its transactions. Each record was paid
    /// for by a policy transaction, and a record that limits nothing is deleted.
    Policy(Address),
    /// The list of an account's session keys (`policy::SessionKeys`). Never expires.
    SessionKeys(Address),
    /// One session key of an account and its scope (`policy::SessionKey`). Never expires;
    /// deleted with the key.
    SessionKey(Address, crate::PublicKey),
    /// What one session key of an account used this epoch. Never expires; deleted with the
    /// key.
    SessionSpend(Address, crate::PublicKey),
    /// Every registered validator key (`validator::Registry`). Never expires.
    ValidatorRegistry,
    /// One registered validator (`validator::ValidatorRecord`). Never expires; deleted when
    /// it has left every set and its stake is paid back.
    Validator(crate::PublicKey),
    /// The validator set of an epoch (`validator::EpochSet`): written at the last block of
    /// the epoch before; the current and next epochs' are kept. Never expires.
    EpochValidators(u64),
}

/// `a` against `b` lexicographically, eight bytes at a time (big-endian words compare as the
/// bytes do).
#[inline]
fn bytes_cmp<const N: usize>(a: &[u8; N], b: &[u8; N]) -> std::cmp::Ordering {
    let mut x = a.chunks_exact(8);
    let mut y = b.chunks_exact(8);
    for (p, q) in (&mut x).zip(&mut y) {
        let (p, q) = (word(p), word(q));
        if p != q {
            return p.cmp(&q);
        }
    }
    x.remainder().cmp(y.remainder())
}

#[inline]
fn word(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(bytes);
    u64::from_be_bytes(w)
}

impl StateKey {
    /// The variant's place in the declaration (what the derived order compares first).
    fn rank(&self) -> u8 {
        match self {
            StateKey::Account(_) => 0,
            StateKey::Code(_) => 1,
            StateKey::Storage(..) => 2,
            StateKey::ArchiveAccumulator => 3,
            StateKey::ArchiveRoot(_) => 4,
            StateKey::FoldCount => 5,
            StateKey::FoldPage(_) => 6,
            StateKey::Policy(_) => 7,
            StateKey::SessionKeys(_) => 8,
            StateKey::SessionKey(..) => 9,
            StateKey::SessionSpend(..) => 10,
            StateKey::ValidatorRegistry => 11,
            StateKey::Validator(_) => 12,
            StateKey::EpochValidators(_) => 13,
        }
    }
}

impl Ord for StateKey {
    fn cmp(&self, other: &StateKey) -> std::cmp::Ordering {
        use std::cmp::Ordering::Equal;
        use StateKey as K;
        let by_variant = self.rank().cmp(&other.rank());
        if by_variant != Equal {
            return by_variant;
        }
        // The same variant. Matching on `self` alone, with no catch-all, makes a new variant
        // a compile error here rather than keys that compare equal when they differ.
        match (self, other) {
            (K::Account(a), K::Account(b))
            | (K::Policy(a), K::Policy(b))
            | (K::SessionKeys(a), K::SessionKeys(b)) => bytes_cmp(&a.0, &b.0),
            (K::Code(a), K::Code(b)) => bytes_cmp(&a.0, &b.0),
            (K::Storage(a, s), K::Storage(b, t)) => {
                bytes_cmp(&a.0, &b.0).then_with(|| bytes_cmp(s, t))
            }
            (K::ArchiveRoot(a), K::ArchiveRoot(b))
            | (K::FoldPage(a), K::FoldPage(b))
            | (K::EpochValidators(a), K::EpochValidators(b)) => a.cmp(b),
            (K::SessionKey(a, k), K::SessionKey(b, l))
            | (K::SessionSpend(a, k), K::SessionSpend(b, l)) => {
                bytes_cmp(&a.0, &b.0).then_with(|| bytes_cmp(&k.0, &l.0))
            }
            (K::Validator(k), K::Validator(l)) => bytes_cmp(&k.0, &l.0),
            (K::ArchiveAccumulator | K::FoldCount | K::ValidatorRegistry, _) => Equal,
            (
                K::Account(_)
                | K::Policy(_)
                | K::SessionKeys(_)
                | K::Code(_)
                | K::Storage(..)
                | K::ArchiveRoot(_)
                | K::FoldPage(_)
                | K::EpochValidators(_)
                | K::SessionKey(..)
                | K::SessionSpend(..)
                | K::Validator(_),
                _,
            ) => unreachable!("keys of the same rank are the same variant"),
        }
    }
}

impl PartialOrd for StateKey {
    fn partial_cmp(&self, other: &StateKey) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Display for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateKey::Account(a) => write!(f, "account {a}"),
            StateKey::Code(h) => write!(f, "code {h}"),
            StateKey::Storage(a, slot) => write!(f, "storage {a} slot 0x{}", hex::encode(slot)),
            StateKey::ArchiveAccumulator => f.write_str("archive accumulator"),
            StateKey::ArchiveRoot(e) => write!(f, "archive root of epoch {e}"),
            StateKey::FoldCount => f.write_str("fold page count"),
            StateKey::FoldPage(n) => write!(f, "fold page {n}"),
            StateKey::Policy(a) => write!(f, "policy of {a}"),
            StateKey::SessionKeys(a) => write!(f, "session keys of {a}"),
            StateKey::SessionKey(a, k) => write!(f, "session key 0x{} of {a}", hex::encode(k.0)),
            StateKey::SessionSpend(a, k) => {
                write!(f, "spending of session key 0x{} of {a}", hex::encode(k.0))
            }
            StateKey::ValidatorRegistry => f.write_str("validator registry"),
            StateKey::Validator(k) => write!(f, "validator 0x{}", hex::encode(k.0)),
            StateKey::EpochValidators(e) => write!(f, "validator set of epoch {e}"),
        }
    }
}

/// Longest canonical key: tag + address + slot.
pub const MAX_STATE_KEY_BYTES: usize = 1 + 20 + 32;

impl StateKey {
    /// Canonical bytes: the borsh form, which is a tag byte and fixed-width fields.
    pub fn to_bytes(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("borsh into Vec<u8> is infallible")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<StateKey, DecodeError> {
        const KIND: &str = "StateKey";
        if bytes.len() > MAX_STATE_KEY_BYTES {
            return Err(DecodeError::TooLarge {
                kind: KIND,
                len_bytes: bytes.len(),
                max_bytes: MAX_STATE_KEY_BYTES,
            });
        }
        borsh::from_slice(bytes).map_err(|e| DecodeError::Malformed {
            kind: KIND,
            reason: e.to_string(),
        })
    }

    /// Whether the entry takes part in expiry: accounts, code and slots do; the archive's
    /// own bookkeeping does not (it is what makes revival possible), nor does the fee burn
    /// account (`Address::FEE_BURN`), the fallback that keeps fee payment infallible, nor do
    /// account policies (see `StateKey::Policy`), nor the jurisdiction contract's account and
    /// storage (tags and rules: an expired rule must not read as no rule).
    pub fn expires(&self) -> bool {
        match self {
            StateKey::Account(a) => {
                *a != crate::Address::FEE_BURN && *a != crate::jurisdiction::JURISDICTION_ADDRESS
            }
            StateKey::Storage(a, _) => *a != crate::jurisdiction::JURISDICTION_ADDRESS,
            StateKey::Code(_) => true,
            StateKey::Policy(_)
            | StateKey::SessionKeys(_)
            | StateKey::SessionKey(..)
            | StateKey::SessionSpend(..)
            | StateKey::ValidatorRegistry
            | StateKey::Validator(_)
            | StateKey::EpochValidators(_)
            | StateKey::ArchiveAccumulator
            | StateKey::ArchiveRoot(_)
            | StateKey::FoldCount
            | StateKey::FoldPage(_) => false,
        }
    }

    /// Position in the authenticated tree.
    pub fn key_hash(&self) -> Hash {
        Hash::digest(Domain::StateKey, &self.to_bytes())
    }
}

/// Where an account's code lives and which environment runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CodeRef {
    pub env: Env,
    pub code_hash: Hash,
}

/// The value under `StateKey::Account`.
#[derive(Debug, Clone, PartialEq, Eq, Default, BorshSerialize, BorshDeserialize)]
pub struct AccountRecord {
    pub nonce: u64,
    pub balance: U256,
    /// `None` for externally owned (agent or Ethereum) accounts.
    pub code: Option<CodeRef>,
    /// What the account used under its policy in the latest epoch it sent in
    /// (`policy::PolicySpend`; docs/policies.md). It lives in the record that every one of
    /// the account's transactions writes anyway, so a policy costs no entry of its own: no
    /// read, no write and no tree leaf per transaction. `None` while the account never sent
    /// under a policy. Everything that writes a record keeps it (read, modify, write; the
    /// EVM's diff gets it from `KeelDb`), so receiving value never resets a budget.
    pub policy_spend: Option<crate::policy::PolicySpend>,
}

/// Bytes of an encoded `Option<PolicySpend>`: presence tag, epoch, value, fees, transactions.
const SPEND_BYTES: usize = 1 + 8 + 32 + 32 + 8;

impl Canonical for AccountRecord {
    const KIND: &'static str = "AccountRecord";
    // 2: the policy spending (a state of version 1 needs a new genesis; so does the key
    // tags' shift when `StateKey::PolicySpend` left).
    const VERSION: u8 = 2;
    const MAX_ENCODED_BYTES: usize = 1 + 8 + 32 + 1 + 1 + 32 + SPEND_BYTES;
}

impl AccountRecord {
    /// Replaces, in place, the policy spending of the record whose canonical bytes are
    /// `buf[at..]` with `spend`: `buf[at..]` becomes what decoding them, setting
    /// `policy_spend` and [`Canonical::encode`] give, byte for byte, and bytes that do not
    /// decode are the same error (and `buf` is unchanged). A policed transaction amends its
    /// sender's record this way after it ran; only the fields before the spending are walked
    /// (their shape, not their values), so nothing of 256 bits is decoded or encoded again
    /// and nothing is allocated.
    pub fn set_spend_in(
        buf: &mut Vec<u8>,
        at: usize,
        spend: Option<crate::policy::PolicySpend>,
    ) -> Result<(), crate::DecodeError> {
        let raw = buf.get(at..).unwrap_or_default();
        match Self::spend_offset(raw) {
            Some(kept) => buf.truncate(at + kept),
            None => {
                // Not a shape this version writes: the full decode says why (or, for a
                // record this walk does not know, amends it the slow way).
                let mut record = Self::decode(raw)?;
                record.policy_spend = spend;
                buf.truncate(at);
                record.encode_into(buf);
                return Ok(());
            }
        }
        // Writing into a Vec cannot fail; borsh only errors on I/O.
        BorshSerialize::serialize(&spend, buf).expect("borsh into Vec<u8> is infallible");
        Ok(())
    }

    /// Where `policy_spend` starts in `raw`, if `raw` is exactly a record of this version:
    /// version, nonce, balance, a code reference (absent, or an environment this build knows
    /// and a hash), then an absent spending or a whole one, and nothing after.
    fn spend_offset(raw: &[u8]) -> Option<usize> {
        const CODE_TAG: usize = 1 + 8 + 32;
        if raw.first() != Some(&Self::VERSION) {
            return None;
        }
        let spend_at = match raw.get(CODE_TAG)? {
            0 => CODE_TAG + 1,
            1 => {
                Env::try_from_slice(raw.get(CODE_TAG + 1..CODE_TAG + 2)?).ok()?;
                CODE_TAG + 1 + 1 + 32
            }
            _ => return None,
        };
        let len = match raw.get(spend_at)? {
            0 => 1,
            1 => SPEND_BYTES,
            _ => return None,
        };
        (raw.len() == spend_at + len).then_some(spend_at)
    }
}

/// Code blob stored under `StateKey::Code`.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CodeBlob {
    pub env: Env,
    pub code: Vec<u8>,
}

impl CodeBlob {
    pub fn code_hash(&self) -> Hash {
        code_hash(self.env, &self.code)
    }
}

/// Prefix marking WASM code in the EVM's view of an account (as Arbitrum Stylus does):
/// `0xEF` starts no EVM code deployable since EIP-3541, so EVM code can never pose as WASM.
pub const WASM_CODE_PREFIX: [u8; 3] = [0xEF, 0xF0, 0x00];

/// The hash of code for an environment (the environment is part of the hash, so identical
/// bytes deployed as EVM and as WASM never share an entry).
pub fn code_hash(env: Env, code: &[u8]) -> Hash {
    Hash::digest_parts(Domain::Code, &[&[env as u8], code])
}

impl Canonical for CodeBlob {
    const KIND: &'static str = "CodeBlob";
    const VERSION: u8 = 1;
    const MAX_ENCODED_BYTES: usize = 1 + 1 + 4 + MAX_CODE_BYTES;

    fn validate(&self) -> Result<(), DecodeError> {
        check_len(Self::KIND, "code", self.code.len(), MAX_CODE_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The walk finds the spending in every shape this version writes, so amending a record
    /// never falls back to a full decode (`an_amended_spending_is_a_decode_set_and_encode`
    /// checks the bytes are right either way; this that the fast way is the one taken).
    #[test]
    fn the_walk_finds_the_spending_of_every_record_this_version_writes() {
        let spend = crate::policy::PolicySpend {
            epoch: 3,
            value: U256::from(5u64),
            fees: U256::MAX,
            txs: 9,
        };
        for env in [Env::Evm, Env::Wasm] {
            for code in [
                None,
                Some(CodeRef {
                    env,
                    code_hash: Hash([7; 32]),
                }),
            ] {
                for policy_spend in [None, Some(spend)] {
                    let record = AccountRecord {
                        nonce: u64::MAX,
                        balance: U256::MAX,
                        code,
                        policy_spend,
                    };
                    let raw = record.encode();
                    let tail = if policy_spend.is_some() {
                        SPEND_BYTES
                    } else {
                        1
                    };
                    assert_eq!(
                        AccountRecord::spend_offset(&raw),
                        Some(raw.len() - tail),
                        "{record:?}"
                    );
                }
            }
        }
    }
}
