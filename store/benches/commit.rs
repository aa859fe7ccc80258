//! Keys updated + merkleized + committed per second through `Store::commit`, against raw
//! batched RocksDB puts of the same keys and values in the same run (same machine, same
//! moment), so the figure is a ratio, not a bare time.
//!
//! Then the read side of expiry's fold pages: a read of an absent key must probe every fold
//! page's filter (docs/expiry.md), so its cost is measured against a raw RocksDB get of a
//! missing key, with 0, 16 and 256 full pages.
//!
//! Run: `scripts/bench` (or `cargo bench --profile ci -p keel-store --bench commit`).

// Floats only format the measured rates; nothing here reaches state.
#![allow(clippy::float_arithmetic)]

use keel_state::StateDiff;
use keel_store::{CommitRequest, Store, StoreOptions};
use keel_types::{Address, StateKey};
use rand::{Rng, SeedableRng};
use std::time::Instant;

const BLOCKS: usize = 60;
const KEYS_PER_BLOCK: usize = 2_000;
/// Key universe: new keys mostly, with updates as the tree fills.
const UNIVERSE: u32 = 200_000;

fn workload() -> Vec<Vec<(StateKey, [u8; 32])>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    (0..BLOCKS)
        .map(|_| {
            (0..KEYS_PER_BLOCK)
                .map(|_| {
                    let n: u32 = rng.gen_range(0..UNIVERSE);
                    let mut slot = [0u8; 32];
                    slot[28..].copy_from_slice(&n.to_be_bytes());
                    (
                        StateKey::Storage(Address([(n % 251) as u8; 20]), slot),
                        rng.gen(),
                    )
                })
                .collect()
        })
        .collect()
}

fn raw_rocksdb(blocks: &[Vec<(StateKey, [u8; 32])>]) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    opts.set_write_buffer_size(StoreOptions::default().write_buffer_bytes);
    let db = rocksdb::DB::open(&opts, dir.path()).expect("open raw");
    let start = Instant::now();
    for block in blocks {
        let mut batch = rocksdb::WriteBatch::default();
        for (key, value) in block {
            // The same 32-byte key the store derives, so both sides write identical key bytes.
            batch.put(key.key_hash().0, value);
        }
        db.write(batch).expect("write");
    }
    db.flush().expect("flush");
    (blocks.len() * KEYS_PER_BLOCK) as f64 / start.elapsed().as_secs_f64()
}

fn keel_store(blocks: &[Vec<(StateKey, [u8; 32])>], sync_writes: bool) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(
        dir.path(),
        StoreOptions {
            keep_archive: true,
            sync_writes,
            ..StoreOptions::default()
        },
    )
    .expect("open store");
    let start = Instant::now();
    for (height, block) in blocks.iter().enumerate() {
        let diff: StateDiff = block
            .iter()
            .map(|(k, v)| (k.clone(), Some(keel_state::encode_live(0, v))))
            .collect();
        store
            .commit(CommitRequest {
                height: height as u64,
                diff: &diff,
                block: None,
                receipts: &[],
                archive: &keel_state::ArchiveBatch::default(),
            })
            .expect("commit");
    }
    (blocks.len() * KEYS_PER_BLOCK) as f64 / start.elapsed().as_secs_f64()
}

/// Absent reads per second through an overlay (what a block's execution does; the overlay
/// reads the pages once) with `pages` full fold pages in state.
fn absent_reads(pages: u64, reads: u64) -> (f64, u64) {
    use keel_state::{Overlay, StateView};
    use keel_types::fold::{FoldPage, FoldedStub, MAX_FOLD_KEYS_PER_PAGE};
    use keel_types::{Canonical, Domain, Hash};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(
        dir.path(),
        StoreOptions {
            sync_writes: false,
            ..StoreOptions::default()
        },
    )
    .expect("open store");
    let mut diff = StateDiff::new();
    for page in 0..pages {
        let mut stubs: Vec<FoldedStub> = (0..MAX_FOLD_KEYS_PER_PAGE as u64)
            .map(|i| FoldedStub {
                key_hash: Hash::digest_parts(
                    Domain::Code,
                    &[&page.to_be_bytes(), &i.to_be_bytes()],
                ),
                epoch: 1,
                leaf: page * 1_024 + i,
            })
            .collect();
        stubs.sort_by_key(|s| s.key_hash);
        let encoded = FoldPage::build(page, &stubs).encode();
        diff.insert(
            StateKey::FoldPage(page),
            Some(keel_state::encode_live(0, &encoded)),
        );
    }
    diff.insert(
        StateKey::FoldCount,
        Some(keel_state::encode_live(0, &pages.to_be_bytes())),
    );
    store
        .commit(CommitRequest {
            height: 0,
            diff: &diff,
            block: None,
            receipts: &[],
            archive: &keel_state::ArchiveBatch::default(),
        })
        .expect("commit");
    let overlay = Overlay::at_epoch(store.latest_view(), 1);
    let start = Instant::now();
    let mut flagged = 0u64;
    for i in 0..reads {
        let mut slot = [0u8; 32];
        slot[..8].copy_from_slice(&i.to_be_bytes());
        match overlay.get(&StateKey::Storage(Address([9; 20]), slot)) {
            Ok(None) => {}
            // A filter false positive (≈ 2 × 10⁻⁷ per page per read): counted, not hidden.
            Err(keel_state::StateError::Expired { leaf: None, .. }) => flagged += 1,
            other => panic!("a fresh slot reads as absent: {other:?}"),
        }
    }
    (reads as f64 / start.elapsed().as_secs_f64(), flagged)
}

/// Gets per second of missing keys from a raw RocksDB with the same key bytes.
fn raw_missing_gets(reads: u64) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    let db = rocksdb::DB::open(&opts, dir.path()).expect("open raw");
    db.put([1u8; 32], [2u8; 32]).expect("put");
    let start = Instant::now();
    for i in 0..reads {
        let mut slot = [0u8; 32];
        slot[..8].copy_from_slice(&i.to_be_bytes());
        let key = StateKey::Storage(Address([9; 20]), slot).key_hash();
        assert!(db.get(key.0).expect("get").is_none());
    }
    reads as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing we need.
    let blocks = workload();
    let raw = raw_rocksdb(&blocks);
    let keel = keel_store(&blocks, false);
    let keel_sync = keel_store(&blocks, true);
    println!("state commit benchmark: {BLOCKS} blocks x {KEYS_PER_BLOCK} keys (32-byte keys, 32-byte values)");
    println!("| path | keys/s | ratio to raw RocksDB |");
    println!("|---|---:|---:|");
    println!("| raw batched RocksDB puts (baseline) | {raw:.0} | 1.000 |");
    println!(
        "| keel Store::commit (JMT + versioned values + preimages), no fsync | {keel:.0} | {:.3} |",
        keel / raw
    );
    println!(
        "| keel Store::commit, fsync per block (node default) | {keel_sync:.0} | {:.3} |",
        keel_sync / raw
    );

    const READS: u64 = 50_000;
    let raw_gets = raw_missing_gets(READS);
    println!();
    println!("absent reads ({READS} fresh slots) with fold pages of 1,024 keys");
    println!("| path | reads/s | ratio to raw RocksDB get |");
    println!("|---|---:|---:|");
    println!("| raw RocksDB get of a missing key (baseline) | {raw_gets:.0} | 1.000 |");
    for pages in [0u64, 16, 256] {
        let (r, flagged) = absent_reads(pages, READS);
        println!(
            "| keel overlay read, {pages} fold pages ({flagged} false positives) | {r:.0} | {:.3} |",
            r / raw_gets
        );
    }
}
