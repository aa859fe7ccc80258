//! 20-byte account addresses.
//!
//! An agent's address is the first 20 bytes of `blake3_derive_key("keel 2026-11 address v1",
//! ed25519_public_key)`. Ethereum (secp256k1) accounts keep their usual keccak-derived
//! addresses; both kinds live in the same 20-byte space and the same state.

use crate::crypto::PublicKey;
use crate::hash::{Domain, Hash};
use borsh::{BorshDeserialize, BorshSerialize};

#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize,
)]
pub struct Address(pub [u8; 20]);

impl Address {
    pub const ZERO: Address = Address([0; 20]);
    /// Receives the fees of a block whose proposer's account has expired (nobody holds its
    /// key, so they are burned). It never expires itself: a block must always have somewhere
    /// to pay fees that cannot fail.
    pub const FEE_BURN: Address = Address([
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfe, 0xeb,
    ]);

    /// The address of an ed25519 agent key.
    pub fn from_public_key(key: &PublicKey) -> Address {
        let digest = Hash::digest(Domain::Address, &key.0);
        let mut out = [0u8; 20];
        out.copy_from_slice(&digest.0[..20]);
        Address(out)
    }
}

crate::hex_bytes::hex_bytes!(Address, 20);
