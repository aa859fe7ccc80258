//! ed25519 keys and signatures (ed25519-dalek), and the batch verification rule.
//!
//! Verification rule, used identically by the mempool and the runtime so every node reaches
//! the same verdict: a set of signatures is checked with ed25519-dalek's deterministic batch
//! equation; if the batch fails, each signature is checked alone with `verify_strict`, which
//! names the bad ones. Both steps are pure functions of their inputs (dalek derives the batch
//! coefficients from a transcript of the inputs, not from an RNG), so a block's verdict is a
//! pure function of the block.

use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::Signer;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("public key is not a valid ed25519 point")]
    InvalidPublicKey,
    #[error("signature does not verify")]
    BadSignature,
    #[error("{} of {total} signatures do not verify (first at index {})", bad.len(), bad.first().copied().unwrap_or(0))]
    BadSignatures { bad: Vec<usize>, total: usize },
    #[error("invalid secret key bytes")]
    InvalidSecretKey,
}

/// An ed25519 public key (32 bytes, compressed Edwards point).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct PublicKey(pub [u8; 32]);

/// An ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    pub const ZERO: Signature = Signature([0; 64]);
}

/// An ed25519 signing key. Debug never prints the secret.
#[derive(Clone)]
pub struct SecretKey(ed25519_dalek::SigningKey);

impl SecretKey {
    /// A key from 32 seed bytes. Callers supply the entropy (an OS RNG in the node, a fixed
    /// seed in tests), keeping this crate free of RNG state.
    pub fn from_seed(seed: [u8; 32]) -> SecretKey {
        SecretKey(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public={})", self.public_key())
    }
}

impl PublicKey {
    fn dalek(&self) -> Result<ed25519_dalek::VerifyingKey, CryptoError> {
        ed25519_dalek::VerifyingKey::from_bytes(&self.0).map_err(|_| CryptoError::InvalidPublicKey)
    }

    /// Whether the bytes are a valid, non-small-order ed25519 point (a key that can sign).
    pub fn validate(&self) -> Result<(), CryptoError> {
        let key = self.dalek()?;
        if key.is_weak() {
            return Err(CryptoError::InvalidPublicKey);
        }
        Ok(())
    }

    /// Strict single verification: rejects small-order keys and R values and non-canonical S.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), CryptoError> {
        let key = self.dalek()?;
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        // verify_strict is plain verification plus rejection of small-order keys and R values.
        key.verify_strict(message, &sig)
            .map_err(|_| CryptoError::BadSignature)
    }
}

crate::hex_bytes::hex_bytes!(PublicKey, 32);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature(0x{}…)", hex::encode(&self.0[..8]))
    }
}

/// Verifies many (message, key, signature) triples under the rule in the module docs.
/// Returns `BadSignatures` with the indices of every failing triple.
pub fn verify_batch(items: &[(&[u8], PublicKey, Signature)]) -> Result<(), CryptoError> {
    if items.is_empty() {
        return Ok(());
    }
    let mut keys = Vec::with_capacity(items.len());
    let mut all_keys_valid = true;
    for (_, key, _) in items {
        match key.dalek() {
            // A small-order ("weak") key satisfies the batch equation for some messages with a
            // signature anyone can make (found by fuzzing): such keys take the strict path,
            // which refuses them, as it does for a single signature.
            Ok(k) if !k.is_weak() => keys.push(k),
            _ => {
                all_keys_valid = false;
                break;
            }
        }
    }
    if all_keys_valid {
        let messages: Vec<&[u8]> = items.iter().map(|(m, _, _)| *m).collect();
        let signatures: Vec<ed25519_dalek::Signature> = items
            .iter()
            .map(|(_, _, s)| ed25519_dalek::Signature::from_bytes(&s.0))
            .collect();
        if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok() {
            return Ok(());
        }
    }
    let bad: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, (m, k, s))| k.verify(m, s).is_err())
        .map(|(i, _)| i)
        .collect();
    if bad.is_empty() {
        // The batch equation rejected a set whose members each pass strict verification
        // (possible only with crafted torsion components). Reject the whole set: the verdict
        // must not depend on which path ran, and this set is adversarial.
        return Err(CryptoError::BadSignatures {
            bad: (0..items.len()).collect(),
            total: items.len(),
        });
    }
    Err(CryptoError::BadSignatures {
        bad,
        total: items.len(),
    })
}
