//! Transactions: versioned, signed by an ed25519 agent key.
//!
//! The signature covers `blake3_derive_key(Transaction, canonical bytes of Transaction)`, the
//! transaction hash, so the hash both identifies the transaction and is what is signed.

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
}

/// An unsigned transaction.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Transaction {
    pub chain_id: u64,
    pub sender: PublicKey,
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
        Address::from_public_key(&self.sender)
    }

    pub fn sign(self, key: &SecretKey) -> SignedTransaction {
        let signature = key.sign(&self.hash().0);
        SignedTransaction {
            tx: self,
            signature,
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
            TxBody::Revive { proof } => {
                check_len(Self::KIND, "proof", proof.len(), MAX_PROOF_BYTES)
            }
        }
    }
}

/// A transaction and its sender's signature over its hash.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SignedTransaction {
    pub tx: Transaction,
    pub signature: Signature,
}

impl SignedTransaction {
    pub fn hash(&self) -> Hash {
        self.tx.hash()
    }

    /// Checks the signature alone (use `crypto::verify_batch` for many).
    pub fn verify_signature(&self) -> Result<(), CryptoError> {
        self.tx.sender.verify(&self.hash().0, &self.signature)
    }
}

impl Canonical for SignedTransaction {
    const KIND: &'static str = "SignedTransaction";
    const VERSION: u8 = 1;
    const MAX_ENCODED_BYTES: usize = MAX_TX_BYTES + 64 + 1;

    fn validate(&self) -> Result<(), DecodeError> {
        self.tx.validate()
    }
}
