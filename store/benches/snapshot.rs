//! Snapshot restore: verified entries per second through `SnapshotRestore` (range proofs
//! checked, tree rebuilt, values, preimages and indexes written) against raw batched
//! RocksDB puts of the same entries in the same run (before and after the restore), and the
//! peak RSS of the process.
//! Serving (`Store::snapshot_chunk`: iterate the tree, read preimages, build the proof) is
//! reported beside it; every chunk is served (and held in memory) before the restore starts.
//!
//! Run: `scripts/bench` (or `cargo bench --profile ci -p keel-store --bench snapshot`);
//! `KEEL_BENCH_SNAPSHOT_ENTRIES` overrides the state size (default 1,000,000).

// Floats only format the measured rates; nothing here reaches state.
#![allow(clippy::float_arithmetic)]

use keel_state::StateDiff;
use keel_store::{CommitRequest, SnapshotRestore, Store, StoreOptions};
use keel_types::{Address, StateKey};
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

const DEFAULT_ENTRIES: usize = 1_000_000;
/// Entries per source commit (the source is built block by block, as a chain grows).
const ENTRIES_PER_BLOCK: usize = 50_000;
/// What a node asks per chunk (the protocol's cap is 8 MiB).
const CHUNK_BYTES: usize = 4 * 1024 * 1024;

fn options() -> StoreOptions {
    StoreOptions {
        sync_writes: false,
        ..StoreOptions::default()
    }
}

fn entries() -> Vec<(StateKey, Vec<u8>)> {
    let n = std::env::var("KEEL_BENCH_SNAPSHOT_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_ENTRIES);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    (0..n as u64)
        .map(|i| {
            let mut slot = [0u8; 32];
            slot[24..].copy_from_slice(&i.to_be_bytes());
            let value: [u8; 32] = rng.gen();
            (
                StateKey::Storage(Address([(i % 251) as u8; 20]), slot),
                keel_state::encode_live(0, &value),
            )
        })
        .collect()
}

/// The baseline: raw batched puts of the same (key hash, entry) pairs (hashed beforehand,
/// outside the timing) into a plain RocksDB, then a flush. Returns entries per second.
fn raw_rocksdb(entries: &[([u8; 32], Vec<u8>)]) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    opts.set_write_buffer_size(options().write_buffer_bytes);
    let db = rocksdb::DB::open(&opts, dir.path()).expect("open raw");
    let start = Instant::now();
    for block in entries.chunks(ENTRIES_PER_BLOCK) {
        let mut batch = rocksdb::WriteBatch::default();
        for (key, value) in block {
            batch.put(key, value);
        }
        db.write(batch).expect("write");
    }
    db.flush().expect("flush");
    entries.len() as f64 / start.elapsed().as_secs_f64()
}

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

fn main() {
    let entries = entries();
    let n = entries.len();
    let hashed: Vec<([u8; 32], Vec<u8>)> = entries
        .iter()
        .map(|(k, v)| (k.key_hash().0, v.clone()))
        .collect();
    // Before and after the restore: the machine's speed moves by a third from minute to
    // minute, and the ratio is taken against the mean of the two.
    let raw_before = raw_rocksdb(&hashed);
    let src_dir = tempfile::tempdir().expect("tempdir");
    let src = Store::open(src_dir.path(), options()).expect("open source");
    for (height, block) in entries.chunks(ENTRIES_PER_BLOCK).enumerate() {
        let diff: StateDiff = block
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        src.commit(CommitRequest {
            height: height as u64,
            diff: &diff,
            block: None,
            receipts: &[],
            archive: &keel_state::ArchiveBatch::default(),
        })
        .expect("commit");
    }
    drop(entries);
    let rss_before = peak_rss_mib();
    let top = src.latest().expect("latest");
    // The restore's tip block: the source committed none, so any block at the height does.
    let tip = keel_types::Block {
        header: keel_types::Header {
            chain_id: 1,
            height: top.height,
            epoch: 0,
            view: 0,
            parent_hash: keel_types::Hash::ZERO,
            proposer: keel_types::SecretKey::from_seed([1; 32]).public_key(),
            timestamp_ms: 0,
            tx_root: keel_types::Hash::ZERO,
            parent_state_root: keel_types::Hash::ZERO,
            parent_receipts_root: keel_types::Hash::ZERO,
            archive_root: keel_types::Hash::ZERO,
        },
        transactions: Vec::new(),
    };
    let dst_dir = tempfile::tempdir().expect("tempdir");
    let mut restore = SnapshotRestore::open(dst_dir.path(), options(), top.height, top.state_root)
        .expect("open restore");
    let (mut serving, mut restoring) = (Duration::ZERO, Duration::ZERO);
    let (mut after, mut chunks, mut bytes) = (None, 0u64, 0u64);
    // Every chunk is served before the restore starts, so nothing the restore leaves to
    // background threads (its flushes) runs in time the bench does not count.
    let mut served = Vec::new();
    loop {
        let start = Instant::now();
        let Some(chunk) = src
            .snapshot_chunk(top.height, after, CHUNK_BYTES)
            .expect("serve")
        else {
            break;
        };
        serving += start.elapsed();
        chunks += 1;
        bytes += chunk
            .entries
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum::<u64>();
        let last = &chunk.entries.last().expect("an entry").0;
        after = Some(StateKey::from_bytes(last).expect("key").key_hash().0);
        served.push(chunk);
    }
    let start = Instant::now();
    for chunk in served {
        restore.add(chunk).expect("a verified chunk");
    }
    restoring += start.elapsed();
    assert!(restore.is_complete());
    let start = Instant::now();
    let restored = restore.finish(&tip, &[], &[]).expect("finish");
    let finishing = start.elapsed();
    restoring += finishing;
    assert_eq!(
        restored.latest().map(|l| l.state_root),
        Some(top.state_root)
    );
    // Both stores closed first: their background compactions must not slow the baseline.
    drop(restored);
    drop(src);
    let raw_after = raw_rocksdb(&hashed);
    let raw = (raw_before + raw_after) / 2.0;
    let rate = n as f64 / restoring.as_secs_f64();
    let serve_rate = n as f64 / serving.as_secs_f64();
    println!(
        "snapshot restore: {n} entries (storage slots, 32-byte values), {chunks} chunks of ≤ {} MiB, {:.1} MB of entries",
        CHUNK_BYTES >> 20,
        bytes as f64 / 1e6
    );
    println!("| path | entries/s | MB/s | ratio to raw RocksDB |");
    println!("|---|---:|---:|---:|");
    println!("| raw batched RocksDB puts of the same entries (baseline; mean of {raw_before:.0} before and {raw_after:.0} after the restore) | {raw:.0} | | 1.000 |");
    println!(
        "| SnapshotRestore (range proofs verified, tree rebuilt, indexes) | {rate:.0} | {:.1} | {:.3} |",
        bytes as f64 / 1e6 / restoring.as_secs_f64(),
        rate / raw
    );
    println!(
        "| Store::snapshot_chunk (serving: iterate, preimages, proofs) | {serve_rate:.0} | {:.1} | {:.3} |",
        bytes as f64 / 1e6 / serving.as_secs_f64(),
        serve_rate / raw
    );
    println!(
        "of the restore: {} ms in `finish` (last nodes, root check, indexes)",
        finishing.as_millis()
    );
    println!(
        "peak RSS: {} MiB after building the source, {} MiB after the restore",
        rss_before,
        peak_rss_mib()
    );
}
