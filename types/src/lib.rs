//! keel-types: the primitives every other keel crate speaks — addresses, domain-separated
//! blake3 hashes, ed25519 keys, transactions, blocks, receipts, votes, state keys and proofs —
//! and the one canonical, versioned binary encoding used for everything hashed or signed.
//!
//! This crate does no I/O. Everything that decodes untrusted bytes returns a typed
//! [`DecodeError`]; nothing here panics on input.

#![forbid(unsafe_code)]

pub mod address;
pub mod archive;
pub mod block;
pub mod consensus;
pub mod crypto;
pub mod encoding;
pub mod eth;
pub mod fold;
pub mod hash;
mod hex_bytes;
pub mod jurisdiction;
pub mod limits;
pub mod policy;
pub mod proof;
pub mod receipt;
pub mod state_key;
pub mod sync;
pub mod tx;
pub mod validator;

pub use address::Address;
pub use block::{Block, Header};
pub use consensus::{Certificate, SignedVote, Vote, VoteKind};
pub use crypto::{CryptoError, PublicKey, SecretKey, Signature};
pub use encoding::{Canonical, DecodeError};
pub use hash::{Domain, Hash};
pub use proof::{verify_state_proof, ProofError, SnapshotChunk, StateProof};
pub use receipt::{Log, Receipt, RegistryError, RevivalError, TxError, TxStatus};
pub use state_key::{AccountRecord, CodeRef, Env, StateKey};
pub use tx::{Authorization, Sender, SignedTransaction, Transaction, TxBody};

/// 256-bit unsigned integer used for balances and values, identical to revm's `U256`.
pub use ruint::aliases::U256;

/// A block height. Height 0 is genesis.
pub type Height = u64;
/// An epoch number: `height / epoch_length`.
pub type Epoch = u64;
/// A consensus view (round) number.
pub type View = u64;
