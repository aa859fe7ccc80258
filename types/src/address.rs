//! 20-byte account addresses.
//!
//! An agent's address is the first 20 bytes of `blake3_derive_key("keel 2026-11 address v1",
//! ed25519_public_key)`. Ethereum (secp256k1) accounts keep their usual keccak-derived
//! addresses; both kinds live in the same 20-byte space and the same state.

use crate::crypto::PublicKey;
use crate::hash::{Domain, Hash};
use borsh::{BorshDeserialize, BorshSerialize};
use std::fmt;

#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize,
)]
pub struct Address(pub [u8; 20]);

impl Address {
    pub const ZERO: Address = Address([0; 20]);

    /// The address of an ed25519 agent key.
    pub fn from_public_key(key: &PublicKey) -> Address {
        let digest = Hash::digest(Domain::Address, &key.0);
        let mut out = [0u8; 20];
        out.copy_from_slice(&digest.0[..20]);
        Address(out)
    }

    pub fn to_hex(&self) -> String {
        format!("0x{}", hex::encode(self.0))
    }

    /// Parses `0x`-prefixed or bare hex of exactly 20 bytes.
    pub fn from_hex(text: &str) -> Result<Address, hex::FromHexError> {
        let mut out = [0u8; 20];
        hex::decode_to_slice(text.strip_prefix("0x").unwrap_or(text), &mut out)?;
        Ok(Address(out))
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", self.to_hex())
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl serde::Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(deserializer)?;
        Address::from_hex(&text).map_err(serde::de::Error::custom)
    }
}
