//! ed25519 keys and signatures (ed25519-dalek), and the batch verification rule.
//!
//! Verification rule: a set of signatures is checked with ed25519-dalek's deterministic batch
//! equation; if the batch fails, each signature is checked alone with `verify_strict`, which
//! names the bad ones. Both steps are pure functions of their inputs (dalek derives the batch
//! coefficients from a transcript of the inputs, not from an RNG). The runtime cuts a block
//! into fixed chunks (keel_runtime::signatures), so a block's verdict is a pure function of
//! the block, the same at every node. The mempool chunks its batches as it likes (admission
//! is this node's own business): for a signature with a crafted torsion component the batch
//! verdict can depend on its chunk, so admission may let in a transaction that block
//! execution then refuses, which costs only the block space it takes.

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
        // The batch equation rejected a set whose members each pass strict verification:
        // possible only with a crafted torsion component (a key aB + T, a nonce rB + T),
        // which the cofactorless batch sees for some coefficients. Strict verification is
        // the rule, so all of them are valid. Condemning the whole set (as this did) let one
        // such transaction, valid under the strict rule, get every honest transaction of its
        // chunk refused and dropped from the pool (found by review).
        return Ok(());
    }
    Err(CryptoError::BadSignatures {
        bad,
        total: items.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
    use curve25519_dalek::scalar::Scalar;
    use sha2::{Digest, Sha512};

    /// The point of order 2: (0, −1), its compressed y = p − 1.
    fn order_two() -> EdwardsPoint {
        let mut y = [0xff; 32];
        y[0] = 0xec;
        y[31] = 0x7f;
        CompressedEdwardsY(y).decompress().expect("a point")
    }

    fn challenge(r: &[u8; 32], a: &[u8; 32], message: &[u8]) -> Scalar {
        let mut h = Sha512::new();
        h.update(r);
        h.update(a);
        h.update(message);
        Scalar::from_bytes_mod_order_wide(&h.finalize().into())
    }

    /// A signature by the key `aB + T` (T of order 2) that passes the strict rule: the nonce
    /// point carries T too, and the challenge is odd, so the torsion cancels in `sB = R + hA`
    /// but not in the batch equation for every coefficient.
    fn torsioned(seed: u8, message: &[u8]) -> (PublicKey, Signature) {
        let a = Scalar::from_bytes_mod_order([seed; 32]);
        let key = (EdwardsPoint::mul_base(&a) + order_two())
            .compress()
            .to_bytes();
        for nonce in 1u8..=255 {
            let r = Scalar::from_bytes_mod_order([nonce; 32]);
            let big_r = (EdwardsPoint::mul_base(&r) + order_two())
                .compress()
                .to_bytes();
            let h = challenge(&big_r, &key, message);
            if h.to_bytes()[0] & 1 == 1 {
                let s = r + h * a;
                let mut sig = [0u8; 64];
                sig[..32].copy_from_slice(&big_r);
                sig[32..].copy_from_slice(&s.to_bytes());
                return (PublicKey(key), Signature(sig));
            }
        }
        panic!("no odd challenge in 255 nonces");
    }

    /// One transaction valid under the strict rule but carrying crafted torsion made the
    /// batch equation fail for about half of the chunks it sat in, and then every signature
    /// of the chunk was condemned: honest transactions refused at will.
    #[test]
    fn a_strictly_valid_signature_never_condemns_its_batch() {
        let (evil_key, evil_sig) = torsioned(7, b"evil");
        assert!(
            evil_key.verify(b"evil", &evil_sig).is_ok(),
            "strictly valid"
        );
        let honest: Vec<(Vec<u8>, SecretKey)> = (0..8u8)
            .map(|i| (vec![i; 16], SecretKey::from_seed([i + 1; 32])))
            .collect();
        let mut batch_failed = 0;
        for salt in 0..32u8 {
            let mut items: Vec<(Vec<u8>, PublicKey, Signature)> = honest
                .iter()
                .map(|(m, k)| {
                    let m = [m.as_slice(), &[salt]].concat();
                    let sig = k.sign(&m);
                    (m, k.public_key(), sig)
                })
                .collect();
            items.push((b"evil".to_vec(), evil_key, evil_sig));
            let refs: Vec<(&[u8], PublicKey, Signature)> = items
                .iter()
                .map(|(m, k, s)| (m.as_slice(), *k, *s))
                .collect();
            let keys: Vec<_> = refs
                .iter()
                .map(|(_, k, _)| k.dalek().expect("key"))
                .collect();
            let messages: Vec<&[u8]> = refs.iter().map(|(m, _, _)| *m).collect();
            let sigs: Vec<_> = refs
                .iter()
                .map(|(_, _, s)| ed25519_dalek::Signature::from_bytes(&s.0))
                .collect();
            if ed25519_dalek::verify_batch(&messages, &sigs, &keys).is_err() {
                batch_failed += 1;
            }
            assert_eq!(verify_batch(&refs), Ok(()), "salt {salt}");
        }
        assert!(
            batch_failed > 0,
            "the crafted signature must make some batch equations fail for this test to mean anything"
        );
    }
}
