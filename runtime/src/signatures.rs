//! Signature checks for a block or a mempool batch, batched and spread over threads, and
//! verified at most once per node.
//!
//! The verdict must be a function of the transactions alone. Under the transaction rule
//! (ZIP-215, `keel_types::crypto`) a batch names exactly the signatures that fail alone,
//! so neither the chunking nor the thread count can change it — and neither can skipping
//! what this node already verified: [`SignatureCache`] remembers transactions whose
//! signature this node itself found valid (at admission, from RPC or gossip, or in an
//! earlier execution), and a block's check verifies only the others.

use keel_types::crypto::verify_batch;
use keel_types::{Authorization, CryptoError, Hash, PublicKey, Signature, SignedTransaction};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Transactions a [`SignatureCache`] remembers by default: three times the default mempool
/// (20,000), so a transaction admitted at the back of a full pool is still remembered when
/// a block takes it. About 64 bytes each (a 32-byte key in a set and in the eviction queue,
/// plus the tree's overhead): 4 MiB.
pub const SIGNATURE_CACHE_ENTRIES: usize = 65_536;

/// Signatures this node verified itself, so a block does not verify them again (issue 22).
///
/// Keyed by a hash of everything the verdict depends on: the transaction's signed payload
/// hash, its whole authorization (the ed25519 signature, or the Ethereum envelope with its
/// recovered-signer check) and the base fee an Ethereum envelope is read at. A peer's copy
/// with another signature has another key. Only valid verdicts are stored; a full cache
/// forgets the oldest first. A miss only costs a verification.
#[derive(Debug)]
pub struct SignatureCache {
    capacity: usize,
    inner: Mutex<CacheInner>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Looked up, inserted into and removed from, never iterated (eviction follows `order`),
/// so its order reaches nothing; a B-tree's 32-byte comparisons down ~17 levels of cold
/// nodes were a visible part of admission. Seeded per process, as the policy cache is: keys
/// are blake3 outputs, and a sender grinding signatures to make them collide would only
/// slow this node's lookups in a bounded set, never change what they return.
#[allow(clippy::disallowed_types)]
type Keys = std::collections::HashSet<[u8; 32], foldhash::fast::RandomState>;

#[derive(Debug, Default)]
struct CacheInner {
    keys: Keys,
    order: VecDeque<[u8; 32]>,
}

impl SignatureCache {
    pub fn new(capacity: usize) -> SignatureCache {
        SignatureCache {
            capacity: capacity.max(1),
            inner: Mutex::new(CacheInner::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// What a verdict on `tx` (whose payload hash is `hash`) depends on.
    pub fn key(tx: &SignedTransaction, hash: &Hash, eth_base_fee: u128) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key("keel 2026 signature cache key");
        h.update(&hash.0);
        match &tx.signature {
            Authorization::Ed25519(sig) => {
                h.update(&[0]);
                h.update(&sig.0);
            }
            Authorization::Ethereum(raw) => {
                // An envelope's verdict is "it decodes to exactly these fields", and its
                // hash covers only the envelope: the fields go into the key too, or a
                // proposer could pair a cached envelope with any sender and body (found by
                // review).
                h.update(&[1]);
                h.update(&tx.tx.hash().0);
                h.update(&eth_base_fee.to_le_bytes());
                h.update(&(raw.len() as u64).to_le_bytes());
                h.update(raw);
            }
        }
        *h.finalize().as_bytes()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        // The set is valid after any panic (inserts and evictions are single calls), so a
        // poisoned lock is taken over.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Which of `keys` were verified before; `count` adds them to the hit and miss counts
    /// (block execution counts, admission does not: the counts say how many of a block's
    /// signatures were verified once).
    fn known(&self, keys: &[[u8; 32]], count: bool) -> Vec<bool> {
        let inner = self.lock();
        let known: Vec<bool> = keys.iter().map(|k| inner.keys.contains(k)).collect();
        drop(inner);
        if !count {
            return known;
        }
        let hits = known.iter().filter(|k| **k).count() as u64;
        self.hits.fetch_add(hits, Ordering::Relaxed);
        self.misses
            .fetch_add(keys.len() as u64 - hits, Ordering::Relaxed);
        known
    }

    /// Remembers that `tx` (payload hash `hash`) carries a valid signature: call only after
    /// this node verified it (the mempool does for what it admits).
    pub fn remember_verified(&self, tx: &SignedTransaction, hash: &Hash, eth_base_fee: u128) {
        self.remember([SignatureCache::key(tx, hash, eth_base_fee)]);
    }

    /// [`Self::remember_verified`] with the key already computed ([`Self::key`]).
    pub fn remember_key(&self, key: [u8; 32]) {
        self.remember([key]);
    }

    /// Remembers signatures this node found valid.
    fn remember(&self, keys: impl IntoIterator<Item = [u8; 32]>) {
        let mut inner = self.lock();
        for key in keys {
            if inner.keys.insert(key) {
                inner.order.push_back(key);
            }
            while inner.order.len() > self.capacity {
                if let Some(old) = inner.order.pop_front() {
                    inner.keys.remove(&old);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Block transactions whose signature was already verified, and ones verified in the
    /// block (admission's lookups are not counted).
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

/// The smallest batch worth its setup: fewer transactions than this per thread share one
/// batch equation (the batch costs about half of verifying one by one).
pub const SIGNATURE_CHUNK: usize = 128;

fn verify_chunk(items: &[(&[u8], PublicKey, Signature)]) -> Vec<usize> {
    match verify_batch(items) {
        Ok(()) => Vec::new(),
        Err(CryptoError::BadSignatures { bad, .. }) => bad,
        Err(_) => (0..items.len()).collect(),
    }
}

/// Indices (ascending) of the transactions whose signature does not verify, using up to
/// `threads` threads.
///
/// `hashes[i]` is `transactions[i].hash()` (the signed payload), computed once by the caller,
/// which needs it again. `eth_base_fee` is the chain's base fee, which an Ethereum
/// transaction's gas price derives from ([`SignedTransaction::verify_signature`]).
///
/// With a `cache`, transactions it holds are not verified again, and the ones verified here
/// and found valid are added to it (block execution: everything it verified ran).
pub fn bad_signatures(
    transactions: &[SignedTransaction],
    hashes: &[Hash],
    threads: usize,
    eth_base_fee: u128,
    cache: Option<&SignatureCache>,
) -> Vec<usize> {
    check(
        transactions,
        hashes,
        threads,
        eth_base_fee,
        None,
        cache,
        true,
    )
}

/// Largest chunk [`admission_chunk`] picks: the batch equation's saving per signature
/// flattens out well before this, and a failing chunk is re-checked one by one.
pub const MAX_ADMISSION_CHUNK: usize = 1_024;

/// The chunk size for checking `n` transactions at mempool admission on `threads` threads:
/// one chunk per thread, at least [`SIGNATURE_CHUNK`] and at most [`MAX_ADMISSION_CHUNK`]:
/// a 500-transaction RPC batch is one batch equation instead of four (the verdict is the same
/// for any chunking).
pub fn admission_chunk(n: usize, threads: usize) -> usize {
    n.div_ceil(threads.max(1))
        .clamp(SIGNATURE_CHUNK, MAX_ADMISSION_CHUNK)
}

/// [`bad_signatures`] with `chunk` transactions per batch equation, for admission: the
/// `cache` is read but not filled (the mempool remembers only what it admits, so signatures
/// of transactions it refuses — say, from unfunded fresh keys — cannot churn the cache).
pub fn bad_signatures_in_chunks(
    transactions: &[SignedTransaction],
    hashes: &[Hash],
    threads: usize,
    eth_base_fee: u128,
    chunk: usize,
    cache: Option<&SignatureCache>,
) -> Vec<usize> {
    check(
        transactions,
        hashes,
        threads,
        eth_base_fee,
        Some(chunk),
        cache,
        false,
    )
}

/// `chunk`: transactions per batch equation; `None` spreads the ones not cached evenly over
/// the threads ([`admission_chunk`]): the verdict is the same for any chunking, and wider
/// batches are cheaper per signature (ed25519-zebra merges a sender's signatures).
fn check(
    transactions: &[SignedTransaction],
    hashes: &[Hash],
    threads: usize,
    eth_base_fee: u128,
    chunk: Option<usize>,
    cache: Option<&SignatureCache>,
    remember: bool,
) -> Vec<usize> {
    assert_eq!(transactions.len(), hashes.len(), "one hash per transaction");
    let keys: Vec<[u8; 32]> = match cache {
        Some(_) => transactions
            .iter()
            .zip(hashes)
            .map(|(t, h)| SignatureCache::key(t, h, eth_base_fee))
            .collect(),
        None => Vec::new(),
    };
    let known = match cache {
        Some(c) => c.known(&keys, remember),
        None => vec![false; transactions.len()],
    };
    let bad = verify_uncached(transactions, hashes, &known, threads, eth_base_fee, chunk);
    if let (Some(c), true) = (cache, remember) {
        c.remember(
            (0..transactions.len())
                .filter(|i| !known[*i] && bad.binary_search(i).is_err())
                .map(|i| keys[i]),
        );
    }
    bad
}

/// The bad signatures among the transactions not `known` to be valid.
fn verify_uncached(
    transactions: &[SignedTransaction],
    hashes: &[Hash],
    known: &[bool],
    threads: usize,
    eth_base_fee: u128,
    chunk: Option<usize>,
) -> Vec<usize> {
    // ed25519 transactions are batch-verified; `positions[k]` is the block index of item k.
    // Ethereum ones (secp256k1 recovery, no batching) are checked one by one below.
    let mut positions = Vec::with_capacity(transactions.len());
    let mut items: Vec<(&[u8], PublicKey, Signature)> = Vec::with_capacity(transactions.len());
    let mut bad: Vec<usize> = Vec::new();
    for (i, (t, h)) in transactions.iter().zip(hashes).enumerate() {
        if known[i] {
            continue;
        }
        match t.ed25519() {
            Some((key, signature)) => {
                positions.push(i);
                items.push((h.0.as_slice(), key, signature));
            }
            None => {
                if t.verify_signature(eth_base_fee).is_err() {
                    bad.push(i);
                }
            }
        }
    }
    let chunk = chunk
        .unwrap_or_else(|| admission_chunk(items.len(), threads))
        .max(1);
    let chunks: Vec<&[(&[u8], PublicKey, Signature)]> = items.chunks(chunk).collect();
    let threads = threads.clamp(1, chunks.len().max(1));
    let verdicts: Vec<Vec<usize>> = if threads == 1 {
        chunks.iter().map(|c| verify_chunk(c)).collect()
    } else {
        // Thread t takes chunks t, t + threads, …; results are put back by chunk index.
        let mut verdicts = vec![Vec::new(); chunks.len()];
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let chunks = &chunks;
                    scope.spawn(move || {
                        (t..chunks.len())
                            .step_by(threads)
                            .map(|i| (i, verify_chunk(chunks[i])))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for handle in handles {
                // A panic in verification is a bug; re-raise it rather than guess a verdict.
                let results = handle
                    .join()
                    .unwrap_or_else(|e| std::panic::resume_unwind(e));
                for (i, bad) in results {
                    verdicts[i] = bad;
                }
            }
        });
        verdicts
    };
    bad.extend(
        verdicts
            .into_iter()
            .enumerate()
            .flat_map(|(index, bad)| bad.into_iter().map(move |i| index * chunk + i))
            .map(|k| positions[k]),
    );
    bad.sort_unstable();
    bad
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_types::{Address, SecretKey, Transaction, TxBody, U256};

    fn txs(n: usize, bad: &[usize]) -> Vec<SignedTransaction> {
        (0..n)
            .map(|i| {
                let key = SecretKey::from_seed([(i % 200) as u8 + 1; 32]);
                let mut tx = Transaction {
                    chain_id: 1,
                    sender: key.public_key().into(),
                    nonce: i as u64,
                    gas_limit: 21_000,
                    gas_price: 1,
                    body: TxBody::Transfer {
                        to: Address([7; 20]),
                        amount: U256::from(i),
                    },
                }
                .sign(&key);
                if bad.contains(&i) {
                    if let keel_types::Authorization::Ed25519(s) = &mut tx.signature {
                        s.0[5] ^= 0x40;
                    }
                }
                tx
            })
            .collect()
    }

    fn check(block: &[SignedTransaction], threads: usize) -> Vec<usize> {
        let hashes: Vec<Hash> = block.iter().map(SignedTransaction::hash).collect();
        bad_signatures(block, &hashes, threads, 1, None)
    }

    #[test]
    fn same_verdict_for_any_thread_count() {
        let bad = [0, 127, 128, 300, 511];
        let block = txs(512, &bad);
        for threads in [1, 2, 3, 8] {
            assert_eq!(check(&block, threads), bad.to_vec(), "{threads} threads");
        }
        assert!(check(&txs(10, &[]), 4).is_empty());
        assert!(check(&[], 4).is_empty());
    }

    /// Admission batches as widely as pays; the bad signatures it finds are the same ones,
    /// at the same indices, whatever the chunk (a failing chunk is re-checked one by one).
    #[test]
    fn admission_chunks_find_the_same_bad_signatures() {
        let bad = [0, 127, 128, 300, 499, 511];
        let block = txs(512, &bad);
        let hashes: Vec<Hash> = block.iter().map(SignedTransaction::hash).collect();
        for (threads, chunk) in [(1, 1), (1, 500), (1, 512), (2, 256), (3, 1_000), (1, 0)] {
            assert_eq!(
                bad_signatures_in_chunks(&block, &hashes, threads, 1, chunk, None),
                bad.to_vec(),
                "{threads} threads, chunks of {chunk}"
            );
        }
        assert_eq!(admission_chunk(500, 1), 500);
        assert_eq!(admission_chunk(500, 2), 250);
        assert_eq!(admission_chunk(10, 4), SIGNATURE_CHUNK);
        assert_eq!(admission_chunk(100_000, 1), MAX_ADMISSION_CHUNK);
        assert_eq!(admission_chunk(0, 0), SIGNATURE_CHUNK);
    }

    /// Verify-once: what this node verified is skipped, the verdict is unchanged, and the
    /// cache cannot be fooled by the same payload under another signature.
    #[test]
    fn cached_signatures_are_skipped_without_changing_any_verdict() {
        let cache = SignatureCache::new(1_000);
        let bad = [3, 200];
        let block = txs(300, &bad);
        let hashes: Vec<Hash> = block.iter().map(SignedTransaction::hash).collect();
        // Admission reads the cache but fills it only with what it admits.
        let admitted =
            bad_signatures_in_chunks(&block[..150], &hashes[..150], 2, 1, 150, Some(&cache));
        assert_eq!(admitted, vec![3]);
        assert!(cache.is_empty(), "admission remembers only what it inserts");
        for i in (0..150).filter(|i| *i != 3) {
            cache.remember_verified(&block[i], &hashes[i], 1);
        }
        assert_eq!(cache.len(), 149);
        // The block: 149 hits, the rest verified now; the same verdict as without a cache.
        assert_eq!(
            bad_signatures(&block, &hashes, 2, 1, Some(&cache)),
            bad.to_vec()
        );
        assert_eq!(
            cache.hits_and_misses(),
            (149, 151),
            "a block's lookups are counted"
        );
        assert_eq!(bad_signatures(&block, &hashes, 1, 1, None), bad.to_vec());
        // A peer re-signs a cached payload with a bad signature: another key, verified, refused.
        let mut forged = block[10].clone();
        if let Authorization::Ed25519(s) = &mut forged.signature {
            s.0[7] ^= 1;
        }
        let forged_hash = [forged.hash()];
        assert_eq!(forged_hash[0], hashes[10], "same payload");
        assert_eq!(
            bad_signatures(&[forged], &forged_hash, 1, 1, Some(&cache)),
            vec![0]
        );
        // Bounded: the oldest are forgotten first.
        let small = SignatureCache::new(10);
        bad_signatures(&block[..50], &hashes[..50], 1, 1, Some(&small));
        assert_eq!(small.len(), 10);
        let (hits, _) = small.hits_and_misses();
        bad_signatures(&block[40..50], &hashes[40..50], 1, 1, Some(&small));
        assert_eq!(small.hits_and_misses().0 - hits, 10, "the newest are kept");
    }

    /// An Ethereum envelope's verdict covers the fields it decodes to: a proposer pairing a
    /// cached envelope with another sender or body gets a fresh check, and a refusal (found
    /// by review: the key once held only the envelope).
    #[test]
    fn a_cached_ethereum_envelope_does_not_vouch_for_other_fields() {
        // EIP-1559 by Hardhat's account 0 (types/tests/eth.rs): to 0x…bb, value 7, nonce 3.
        let raw = hex::decode("02f8648205390380028252089400000000000000000000000000000000000000bb0780c080a048735451d4cadab0a11662a0fda08ffc749984f40c253c0ff738a034f8de27f0a03fda13310c21a69fc8eef5db6a9408eddbe35a90a92faa81d757233d9cd44d38").expect("hex");
        let good = keel_types::eth::decode(&raw, 1337, 1).expect("decodes");
        let cache = SignatureCache::new(100);
        let hash = [good.hash()];
        assert!(bad_signatures(std::slice::from_ref(&good), &hash, 1, 1, Some(&cache)).is_empty());
        assert_eq!(cache.len(), 1);
        let mut theft = good.clone();
        theft.tx.body = TxBody::Transfer {
            to: Address([0xee; 20]),
            amount: U256::from(1_000_000u64),
        };
        let mut other_sender = good.clone();
        other_sender.tx.sender = keel_types::Sender::Ethereum(Address([0x42; 20]));
        for forged in [theft, other_sender] {
            let h = [forged.hash()];
            assert_eq!(h[0], hash[0], "the Ethereum hash covers only the envelope");
            assert_eq!(bad_signatures(&[forged], &h, 1, 1, Some(&cache)), vec![0]);
        }
        // The genuine one is still a hit.
        let (hits, _) = cache.hits_and_misses();
        assert!(bad_signatures(std::slice::from_ref(&good), &hash, 1, 1, Some(&cache)).is_empty());
        assert_eq!(cache.hits_and_misses().0, hits + 1);
    }
}
