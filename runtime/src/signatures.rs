//! Signature checks for a block, batched and spread over threads.
//!
//! The verdict must be a function of the block alone: the transactions are cut into chunks of
//! a fixed size ([`SIGNATURE_CHUNK`]) and each chunk is batch-verified on its own, so the
//! result does not depend on how many threads ran or which finished first (verify_batch's
//! fallback for adversarial sets is per chunk, and the chunking is fixed).

use keel_types::crypto::verify_batch;
use keel_types::{CryptoError, Hash, PublicKey, Signature, SignedTransaction};

/// Transactions per batch verification. Large enough that batching pays (the batch equation
/// costs about half of verifying one by one), small enough to spread a block over cores.
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
pub fn bad_signatures(
    transactions: &[SignedTransaction],
    hashes: &[Hash],
    threads: usize,
    eth_base_fee: u128,
) -> Vec<usize> {
    bad_signatures_in_chunks(transactions, hashes, threads, eth_base_fee, SIGNATURE_CHUNK)
}

/// Largest chunk [`admission_chunk`] picks: the batch equation's saving per signature
/// flattens out well before this, and a failing chunk is re-checked one by one.
pub const MAX_ADMISSION_CHUNK: usize = 1_024;

/// The chunk size for checking `n` transactions at mempool admission on `threads` threads:
/// one chunk per thread, at least [`SIGNATURE_CHUNK`] and at most [`MAX_ADMISSION_CHUNK`].
/// Admission is this node's own business (the block's verdict is re-derived at execution
/// with the fixed chunking), so it may batch as widely as pays: a 500-transaction RPC batch
/// is one batch equation instead of four.
pub fn admission_chunk(n: usize, threads: usize) -> usize {
    n.div_ceil(threads.max(1))
        .clamp(SIGNATURE_CHUNK, MAX_ADMISSION_CHUNK)
}

/// [`bad_signatures`] with `chunk` transactions per batch equation.
pub fn bad_signatures_in_chunks(
    transactions: &[SignedTransaction],
    hashes: &[Hash],
    threads: usize,
    eth_base_fee: u128,
    chunk: usize,
) -> Vec<usize> {
    assert_eq!(transactions.len(), hashes.len(), "one hash per transaction");
    let chunk = chunk.max(1);
    // ed25519 transactions are batch-verified; `positions[k]` is the block index of item k.
    // Ethereum ones (secp256k1 recovery, no batching) are checked one by one below.
    let mut positions = Vec::with_capacity(transactions.len());
    let mut items: Vec<(&[u8], PublicKey, Signature)> = Vec::with_capacity(transactions.len());
    let mut bad: Vec<usize> = Vec::new();
    for (i, (t, h)) in transactions.iter().zip(hashes).enumerate() {
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
        bad_signatures(block, &hashes, threads, 1)
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
                bad_signatures_in_chunks(&block, &hashes, threads, 1, chunk),
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
}
