//! Transactions: versioned, signed by an ed25519 agent key — or standard Ethereum
//! transactions (legacy, EIP-2930, EIP-1559) signed with secp256k1, carried verbatim.
//!
//! An agent's signature covers `blake3_derive_key(Transaction, canonical bytes of
//! Transaction)`, the transaction hash, so the hash both identifies the transaction and is
//! what is signed. An Ethereum transaction is identified by its Ethereum hash (keccak256 of
//! the EIP-2718 envelope); its [`Transaction`] fields are derived from the envelope and
//! re-derived on every verification, so they cannot disagree with what the key signed.

use crate::address::Address;
use crate::crypto::{CryptoError, PublicKey, SecretKey, Signature};
use crate::encoding::{check_len, Canonical, DecodeError};
use crate::hash::{Domain, Hash};
use crate::limits::{MAX_CALLDATA_BYTES, MAX_CODE_BYTES, MAX_PROOF_BYTES, MAX_TX_BYTES};
use crate::state_key::Env;
use crate::U256;
use borsh::{BorshDeserialize, BorshSerialize};

/// What a transaction does.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum TxBody {
    /// Move native balance.
    Transfer { to: Address, amount: U256 },
    /// Create a contract in an environment; `args` are passed to its constructor.
    Deploy {
        env: Env,
        code: Vec<u8>,
        args: Vec<u8>,
        value: U256,
    },
    /// Call a contract (either environment) or send value with data.
    Call {
        to: Address,
        data: Vec<u8>,
        value: U256,
    },
    /// Bring an expired state entry back: the encoded revival proof (see docs/expiry.md).
    Revive { proof: Vec<u8> },
    /// Clear a fold filter's false positive: an encoded `fold::UnflagProof` showing that no
    /// fold page that flags a key holds it. Writes a deletion marker, after which the key
    /// reads as absent (zero) instead of expired (see docs/expiry.md).
    Unflag { proof: Vec<u8> },
    /// Set `account`'s policy (docs/policies.md): sent by the account itself (only to a
    /// policy within its current one) or by its controller (any policy).
    SetPolicy {
        account: Address,
        policy: crate::policy::AccountPolicy,
    },
    /// Name `account`'s controller (`None`: release it). The account may name one only while
    /// it has neither a controller nor any limit; after that only the controller may.
    SetController {
        account: Address,
        controller: Option<Address>,
    },
    /// Authorise `key` to act as `account` within `policy` (the account's own policy applies
    /// too) until height `expires_at`; adding a key again replaces its scope. Sent by the
    /// account or its controller, never by a session key.
    AddSessionKey {
        account: Address,
        key: PublicKey,
        policy: crate::policy::AccountPolicy,
        expires_at: crate::Height,
    },
    /// Revoke a session key of `account` (sent by the account or its controller).
    RevokeSessionKey { account: Address, key: PublicKey },
    /// Register, bond, unbond, leave, update or report a validator (docs/validators.md).
    Validator(crate::validator::ValidatorTx),
}

impl TxBody {
    /// The native value the transaction's own frame sends (zero for bodies that send none).
    pub fn value(&self) -> U256 {
        match self {
            TxBody::Transfer { amount, .. } => *amount,
            TxBody::Deploy { value, .. } | TxBody::Call { value, .. } => *value,
            TxBody::Revive { .. }
            | TxBody::Unflag { .. }
            | TxBody::SetPolicy { .. }
            | TxBody::SetController { .. }
            | TxBody::AddSessionKey { .. }
            | TxBody::RevokeSessionKey { .. } => U256::ZERO,
            TxBody::Validator(op) => op.value(),
        }
    }

    /// The policy change this body makes, if any: a `SetPolicy`, `SetController`,
    /// `AddSessionKey` or `RevokeSessionKey` body, or a
    /// call with no value to `policy::POLICY_ADDRESS` whose data is the borsh encoding of one
    /// (within its bounds). Every other body, and a call there with other data, is `None`.
    pub fn as_policy_change(&self) -> Option<std::borrow::Cow<'_, TxBody>> {
        match self {
            TxBody::SetPolicy { .. }
            | TxBody::SetController { .. }
            | TxBody::AddSessionKey { .. }
            | TxBody::RevokeSessionKey { .. } => Some(std::borrow::Cow::Borrowed(self)),
            TxBody::Call { to, data, value }
                if *to == crate::policy::POLICY_ADDRESS && value.is_zero() =>
            {
                let body: TxBody = borsh::from_slice(data).ok()?;
                let valid = match &body {
                    TxBody::SetPolicy { policy, .. } | TxBody::AddSessionKey { policy, .. } => {
                        policy.validate().is_ok()
                    }
                    TxBody::SetController { .. } | TxBody::RevokeSessionKey { .. } => true,
                    _ => false,
                };
                valid.then_some(std::borrow::Cow::Owned(body))
            }
            _ => None,
        }
    }

    /// The data of a call to `policy::POLICY_ADDRESS` that makes this change (how an
    /// Ethereum account sends a `SetPolicy` or `SetController`).
    pub fn policy_call_data(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("borsh into Vec<u8> is infallible")
    }

    /// The gas a policy change costs (`None` for the other bodies): a base for the record's
    /// write plus calldata's price per byte of the change's encoding.
    pub fn policy_gas(&self) -> Option<u64> {
        use crate::policy::{POLICY_TX_BASE_GAS, POLICY_TX_GAS_PER_BYTE};
        let change = self.as_policy_change()?;
        let len = borsh::to_vec(change.as_ref()).map_or(0, |b| b.len()) as u64;
        Some(POLICY_TX_BASE_GAS + POLICY_TX_GAS_PER_BYTE * len)
    }
}

/// Who authorises a transaction.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub enum Sender {
    /// An agent's ed25519 key (keel's native scheme).
    Agent(PublicKey),
    /// An Ethereum account, recovered from the secp256k1 signature of its envelope.
    Ethereum(Address),
    /// A session key acting as `account` within the scope the account gave it
    /// (`TxBody::AddSessionKey`; docs/policies.md): signed by `key`, paid by `account`,
    /// with `account`'s nonce.
    Session { account: Address, key: PublicKey },
}

impl Sender {
    pub fn address(&self) -> Address {
        match self {
            Sender::Agent(key) => Address::from_public_key(key),
            Sender::Ethereum(address) => *address,
            Sender::Session { account, .. } => *account,
        }
    }
}

impl From<PublicKey> for Sender {
    fn from(key: PublicKey) -> Sender {
        Sender::Agent(key)
    }
}

/// An unsigned transaction.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Transaction {
    pub chain_id: u64,
    pub sender: Sender,
    pub nonce: u64,
    pub gas_limit: u64,
    /// Price per gas unit in the native token's smallest unit.
    pub gas_price: u128,
    pub body: TxBody,
}

impl Transaction {
    pub fn hash(&self) -> Hash {
        Hash::digest(Domain::Transaction, &self.encode())
    }

    pub fn sender_address(&self) -> Address {
        self.sender.address()
    }

    pub fn sign(self, key: &SecretKey) -> SignedTransaction {
        let signature = key.sign(&self.hash().0);
        SignedTransaction {
            tx: self,
            signature: Authorization::Ed25519(signature),
        }
    }

    /// The most this transaction can pay in fees: `gas_limit * gas_price`.
    pub fn max_fee(&self) -> U256 {
        U256::from(self.gas_limit) * U256::from(self.gas_price)
    }
}

impl Canonical for Transaction {
    const KIND: &'static str = "Transaction";
    const VERSION: u8 = 1;
    const MAX_ENCODED_BYTES: usize = MAX_TX_BYTES;

    fn validate(&self) -> Result<(), DecodeError> {
        match &self.body {
            TxBody::Transfer { .. } => Ok(()),
            TxBody::Deploy { code, args, .. } => {
                check_len(Self::KIND, "code", code.len(), MAX_CODE_BYTES)?;
                check_len(Self::KIND, "args", args.len(), MAX_CALLDATA_BYTES)
            }
            TxBody::Call { data, .. } => {
                check_len(Self::KIND, "data", data.len(), MAX_CALLDATA_BYTES)
            }
            TxBody::Revive { proof } | TxBody::Unflag { proof } => {
                check_len(Self::KIND, "proof", proof.len(), MAX_PROOF_BYTES)
            }
            TxBody::SetPolicy { policy, .. } | TxBody::AddSessionKey { policy, .. } => {
                policy.validate()
            }
            TxBody::SetController { .. } | TxBody::RevokeSessionKey { .. } => Ok(()),
            TxBody::Validator(op) => op.validate(),
        }
    }
}

/// What proves the sender authorised a transaction.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Authorization {
    /// The agent's ed25519 signature over the transaction hash.
    Ed25519(Signature),
    /// The signed EIP-2718 envelope exactly as the client sent it (`eth_sendRawTransaction`).
    Ethereum(Vec<u8>),
}

/// A transaction and its sender's authorization.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SignedTransaction {
    pub tx: Transaction,
    pub signature: Authorization,
}

impl SignedTransaction {
    pub fn hash(&self) -> Hash {
        match &self.signature {
            Authorization::Ed25519(_) => self.tx.hash(),
            Authorization::Ethereum(raw) => Hash(crate::eth::keccak256(raw)),
        }
    }

    /// The ed25519 key, message and signature, for batch verification (`None` for
    /// Ethereum transactions, which are checked one by one with [`Self::verify_signature`]).
    pub fn ed25519(&self) -> Option<(PublicKey, Signature)> {
        match (&self.tx.sender, &self.signature) {
            (Sender::Agent(key) | Sender::Session { key, .. }, Authorization::Ed25519(sig)) => {
                Some((*key, *sig))
            }
            _ => None,
        }
    }

    /// Checks the authorization alone (use `crypto::verify_batch` for many ed25519 ones). An
    /// Ethereum transaction's fields must be the ones its envelope decodes to on a chain whose
    /// base fee is `eth_base_fee` (its gas price is the envelope's effective price there).
    pub fn verify_signature(&self, eth_base_fee: u128) -> Result<(), CryptoError> {
        match (&self.tx.sender, &self.signature) {
            (Sender::Agent(key) | Sender::Session { key, .. }, Authorization::Ed25519(sig)) => {
                key.verify_zip215(&self.hash().0, sig)
            }
            (Sender::Ethereum(_), Authorization::Ethereum(raw)) => {
                match crate::eth::decode(raw, self.tx.chain_id, eth_base_fee) {
                    Ok(derived) if derived == *self => Ok(()),
                    _ => Err(CryptoError::BadSignature),
                }
            }
            _ => Err(CryptoError::BadSignature),
        }
    }
}

impl Canonical for SignedTransaction {
    const KIND: &'static str = "SignedTransaction";
    const VERSION: u8 = 1;
    // An Ethereum transaction carries its envelope besides the derived fields.
    const MAX_ENCODED_BYTES: usize = 2 * MAX_TX_BYTES + 128;

    fn validate(&self) -> Result<(), DecodeError> {
        if let Authorization::Ethereum(raw) = &self.signature {
            check_len(Self::KIND, "ethereum envelope", raw.len(), MAX_TX_BYTES)?;
        }
        self.tx.validate()
    }
}
