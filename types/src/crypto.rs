//! ed25519 keys and signatures, and the transaction signature rule.
//!
//! **The transaction rule is ZIP-215** (ed25519-zebra): a signature is valid when
//! `[8](sB − R − hA) = 0` with `s` canonical, `A` and `R` any point encodings, plus keel's
//! own refusal of small-order keys (anyone can sign for those under a cofactored rule). Its
//! point: batch verification and single verification give the same verdict for every
//! signature (up to 2^-128), so the verdict does not depend on how transactions are grouped —
//! the mempool's batches, a block's chunks or none — and a node may skip a signature it
//! already verified (`keel_runtime::signatures::SignatureCache`) without any chance of
//! disagreeing with a node that verifies it inside a block. The old rule (dalek's
//! cofactorless batch equation, then `verify_strict`) gave a signature with a crafted torsion
//! component a verdict that depended on the other signatures of its batch.
//!
//! Consensus votes use the same rule (a vote alone and inside a certificate, which is
//! batch-verified, get one verdict). `PublicKey::verify` (`verify_strict`) remains for the
//! p2p identity handshake, a single signature outside any batch.

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

    /// Whether a transaction may be signed by this key: any point encoding that decodes
    /// (ZIP-215 accepts non-canonical ones), but not a small-order point.
    fn check_signing_key(&self) -> Result<(), CryptoError> {
        let point = curve25519_dalek::edwards::CompressedEdwardsY(self.0)
            .decompress()
            .ok_or(CryptoError::InvalidPublicKey)?;
        if point.is_small_order() {
            return Err(CryptoError::InvalidPublicKey);
        }
        Ok(())
    }

    fn zip215_key(&self) -> Result<ed25519_zebra::VerificationKey, CryptoError> {
        self.check_signing_key()?;
        ed25519_zebra::VerificationKey::try_from(self.0).map_err(|_| CryptoError::InvalidPublicKey)
    }

    /// The transaction signature rule (module docs): ZIP-215 single verification.
    pub fn verify_zip215(&self, message: &[u8], signature: &Signature) -> Result<(), CryptoError> {
        let key = self.zip215_key()?;
        key.verify(&ed25519_zebra::Signature::from_bytes(&signature.0), message)
            .map_err(|_| CryptoError::BadSignature)
    }
}

crate::hex_bytes::hex_bytes!(PublicKey, 32);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature(0x{}…)", hex::encode(&self.0[..8]))
    }
}

/// Distinct keys remembered as fit to sign ([`PublicKey::check_signing_key`]) across
/// batches; the set is emptied when full.
pub const SIGNING_KEY_CACHE_ENTRIES: usize = 65_536;

/// Keys found fit to sign. The check is a pure function of the key's bytes, so remembering
/// it changes time only: a busy sender's key is decompressed once per process, not once per
/// batch (a quarter of a verification each time). Keys that fail are not remembered.
static SIGNING_KEYS_OK: std::sync::Mutex<std::collections::BTreeSet<[u8; 32]>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// For each distinct key of `items`, whether it may sign: from [`SIGNING_KEYS_OK`] (one lock
/// for the batch), else checked and remembered.
fn signing_keys_ok(
    items: &[(&[u8], PublicKey, Signature)],
) -> std::collections::BTreeMap<[u8; 32], bool> {
    let mut ok: std::collections::BTreeMap<[u8; 32], bool> =
        items.iter().map(|(_, key, _)| (key.0, false)).collect();
    let mut unknown = Vec::new();
    {
        let known = SIGNING_KEYS_OK
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (key, verdict) in ok.iter_mut() {
            if known.contains(key) {
                *verdict = true;
            } else {
                unknown.push(*key);
            }
        }
    }
    let mut fit = Vec::new();
    for key in unknown {
        if PublicKey(key).check_signing_key().is_ok() {
            ok.insert(key, true);
            fit.push(key);
        }
    }
    if !fit.is_empty() {
        let mut known = SIGNING_KEYS_OK
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if known.len() + fit.len() > SIGNING_KEY_CACHE_ENTRIES {
            known.clear();
        }
        known.extend(fit.into_iter().take(SIGNING_KEY_CACHE_ENTRIES));
    }
    ok
}

/// Verifies many (message, key, signature) triples under the transaction rule (module docs):
/// one ZIP-215 batch equation, and if it fails, each signature alone to name the bad ones.
/// Returns `BadSignatures` with the indices of every failing triple. The verdict is the
/// same as verifying each triple with [`PublicKey::verify_zip215`], whatever the set.
pub fn verify_batch(items: &[(&[u8], PublicKey, Signature)]) -> Result<(), CryptoError> {
    if items.is_empty() {
        return Ok(());
    }
    // Keys that may not sign are refused without a batch; the others share one. Each
    // distinct key is checked once (a sender signs many transactions; decompressing a point
    // costs about a quarter of a verification), and remembered across batches.
    let key_ok = signing_keys_ok(items);
    let mut bad_keys = Vec::new();
    let mut verifier = ed25519_zebra::batch::Verifier::new();
    // Coefficients from a ChaCha stream seeded with a hash of the whole batch, so no RNG
    // state is needed; an invalid signature passes with probability 2^-128 whatever they are,
    // and a valid one always does (ed25519-zebra hands them out in its own map's order, so
    // they differ between processes, which changes nothing).
    let mut transcript =
        blake3::Hasher::new_derive_key("keel 2026 ed25519 zip215 batch coefficients");
    let mut batched = 0usize;
    for (i, (message, key, signature)) in items.iter().enumerate() {
        if !key_ok.get(&key.0).copied().unwrap_or(false) {
            bad_keys.push(i);
            continue;
        }
        transcript.update(&(message.len() as u64).to_le_bytes());
        transcript.update(message);
        transcript.update(&key.0);
        transcript.update(&signature.0);
        verifier.queue((
            ed25519_zebra::VerificationKeyBytes::from(key.0),
            ed25519_zebra::Signature::from_bytes(&signature.0),
            message,
        ));
        batched += 1;
    }
    let batch_ok = batched == 0 || {
        let seed: [u8; 32] = *transcript.finalize().as_bytes();
        let rng =
            <rand_chacha::ChaCha20Rng as rand_chacha::rand_core::SeedableRng>::from_seed(seed);
        verifier.verify(rng).is_ok()
    };
    let bad: Vec<usize> = if batch_ok {
        bad_keys
    } else {
        // Name the bad ones one by one (every signature passing alone means the batch lost
        // its 2^-128 bet: the single verdicts are the rule).
        items
            .iter()
            .enumerate()
            .filter(|(i, (m, k, s))| {
                bad_keys.binary_search(i).is_ok() || k.verify_zip215(m, s).is_err()
            })
            .map(|(i, _)| i)
            .collect()
    };
    if bad.is_empty() {
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

    /// One transaction valid under the strict rule but carrying crafted torsion made dalek's
    /// cofactorless batch equation fail for about half of the chunks it sat in, and then
    /// every signature of the chunk was condemned: honest transactions refused at will. Under
    /// ZIP-215 it is simply valid, in any company.
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

    /// A signature whose nonce point carries torsion the equation does not: `sB = R + hA − T`.
    /// `verify_strict` refuses it; ZIP-215 (cofactored) accepts it. dalek's cofactorless
    /// batch accepted it for about half of the coefficient draws, so under the old rule its
    /// verdict depended on the rest of its batch.
    fn torsion_in_nonce_only(seed: u8, message: &[u8]) -> (PublicKey, Signature) {
        let a = Scalar::from_bytes_mod_order([seed; 32]);
        let key = EdwardsPoint::mul_base(&a).compress().to_bytes();
        let r = Scalar::from_bytes_mod_order([seed ^ 0x5a; 32]);
        let big_r = (EdwardsPoint::mul_base(&r) + order_two())
            .compress()
            .to_bytes();
        let h = challenge(&big_r, &key, message);
        let s = r + h * a;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&big_r);
        sig[32..].copy_from_slice(&s.to_bytes());
        (PublicKey(key), Signature(sig))
    }

    fn honest(n: u8, salt: u8) -> Vec<(Vec<u8>, PublicKey, Signature)> {
        (0..n)
            .map(|i| {
                let k = SecretKey::from_seed([i.wrapping_add(1); 32]);
                let m = vec![i, salt, 3];
                let sig = k.sign(&m);
                (m, k.public_key(), sig)
            })
            .collect()
    }

    fn refs(items: &[(Vec<u8>, PublicKey, Signature)]) -> Vec<(&[u8], PublicKey, Signature)> {
        items
            .iter()
            .map(|(m, k, s)| (m.as_slice(), *k, *s))
            .collect()
    }

    /// The property the signature cache rests on: for every mix of honest, forged, torsioned
    /// and small-order-key signatures, cut into batches of every size, the batch verdict names
    /// exactly the signatures single ZIP-215 verification refuses.
    #[test]
    fn batch_and_single_verdicts_agree_in_any_grouping() {
        let (t_key, t_sig) = torsion_in_nonce_only(9, b"torsion");
        assert!(
            t_key.verify(b"torsion", &t_sig).is_err(),
            "strict refuses it"
        );
        assert_eq!(
            t_key.verify_zip215(b"torsion", &t_sig),
            Ok(()),
            "ZIP-215 accepts it"
        );
        let (s_key, s_sig) = torsioned(7, b"evil");
        let mut weak = [0u8; 32];
        weak[0] = 1; // the identity: small order
        let weak_key = PublicKey(weak);
        for salt in 0..12u8 {
            let mut items = honest(10, salt);
            items.push((b"torsion".to_vec(), t_key, t_sig));
            items.push((b"evil".to_vec(), s_key, s_sig));
            // A forged one (a bit flipped in s) and a good signature under a small-order key.
            let mut forged = items[3].clone();
            forged.2 .0[40] ^= 1;
            items.push(forged);
            items.push((b"weak".to_vec(), weak_key, Signature([0; 64])));
            let turn = usize::from(salt) % items.len();
            items.rotate_left(turn);
            let single: Vec<usize> = items
                .iter()
                .enumerate()
                .filter(|(_, (m, k, s))| k.verify_zip215(m, s).is_err())
                .map(|(i, _)| i)
                .collect();
            assert_eq!(single.len(), 2, "the forged one and the small-order key");
            let all = refs(&items);
            for chunk in [1, 2, 3, 5, 7, all.len()] {
                let mut bad = Vec::new();
                for (c, part) in all.chunks(chunk).enumerate() {
                    match verify_batch(part) {
                        Ok(()) => {}
                        Err(CryptoError::BadSignatures { bad: b, .. }) => {
                            bad.extend(b.into_iter().map(|i| c * chunk + i))
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                assert_eq!(bad, single, "salt {salt}, chunks of {chunk}");
            }
        }
    }

    #[test]
    fn small_order_keys_cannot_sign_transactions() {
        // All 8 small-order points (canonical encodings), the all-zero encoding and a
        // non-canonical encoding of the identity (y = p + 1): refused as keys, alone and in
        // a batch beside a valid signature, whatever the signature.
        let mut keys: Vec<[u8; 32]> = curve25519_dalek::constants::EIGHT_TORSION
            .iter()
            .map(|p| p.compress().to_bytes())
            .collect();
        keys.push([0u8; 32]);
        let mut p_plus_one = [0xffu8; 32];
        p_plus_one[0] = 0xee;
        p_plus_one[31] = 0x7f;
        keys.push(p_plus_one);
        let honest = SecretKey::from_seed([5; 32]);
        let good_sig = honest.sign(b"m");
        for k in keys {
            let key = PublicKey(k);
            for sig in [Signature([0; 64]), Signature([1; 64]), good_sig] {
                assert!(key.verify_zip215(b"m", &sig).is_err());
                let batch = [
                    (b"m".as_slice(), key, sig),
                    (b"m".as_slice(), honest.public_key(), good_sig),
                ];
                assert_eq!(
                    verify_batch(&batch),
                    Err(CryptoError::BadSignatures {
                        bad: vec![0],
                        total: 2
                    }),
                    "key {}",
                    hex::encode(k)
                );
            }
        }
    }

    /// Remembering a key as fit to sign skips only the key check: a later batch still
    /// verifies every signature of that key, and an unfit key is never remembered.
    #[test]
    fn remembered_keys_still_have_every_signature_checked() {
        let honest = SecretKey::from_seed([6; 32]);
        let good = honest.sign(b"m");
        for _ in 0..3 {
            let batch = [(b"m".as_slice(), honest.public_key(), good)];
            assert_eq!(verify_batch(&batch), Ok(()));
        }
        assert!(SIGNING_KEYS_OK
            .lock()
            .expect("lock")
            .contains(&honest.public_key().0));
        let forged = [
            (b"m".as_slice(), honest.public_key(), good),
            (b"other".as_slice(), honest.public_key(), good),
        ];
        assert_eq!(
            verify_batch(&forged),
            Err(CryptoError::BadSignatures {
                bad: vec![1],
                total: 2
            })
        );
        let identity = PublicKey(
            curve25519_dalek::constants::EIGHT_TORSION[0]
                .compress()
                .to_bytes(),
        );
        let _ = verify_batch(&[(b"m".as_slice(), identity, good)]);
        assert!(!SIGNING_KEYS_OK.lock().expect("lock").contains(&identity.0));
    }
}
