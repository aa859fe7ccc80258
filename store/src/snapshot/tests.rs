//! A state restored from chunks is the served state (root, every entry of every kind of
//! key, the indexes) and takes the next commit like its source; every way a server can lie is refused and
//! rewinds; an interrupted restore resumes without fetching more than a chunk again.

use super::*;
use crate::{CommitRequest, Store, StoreOptions};
use keel_state::{encode_live, ArchiveBatch, StateDiff, StateView};
use keel_types::{Address, Header};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn options() -> StoreOptions {
    StoreOptions {
        sync_writes: false,
        ..StoreOptions::default()
    }
}

/// A key of any kind state holds: accounts, code, slots, fold pages and their count, the
/// expiry archive's roots and accumulator, policies and session keys, the validator
/// registry, its records and the epochs' sets (half of them slots, as in a real state).
fn key(rng: &mut ChaCha8Rng) -> StateKey {
    let address = Address([rng.gen_range(0..40u8); 20]);
    let small = rng.gen_range(0..40u64);
    let public = keel_types::PublicKey([rng.gen_range(0..40u8); 32]);
    match rng.gen_range(0..24) {
        0 | 1 => StateKey::Account(address),
        2 => StateKey::Code(Hash([rng.gen(); 32])),
        3 => StateKey::Policy(address),
        4 => StateKey::FoldPage(small),
        5 => StateKey::ArchiveRoot(small),
        6 => [
            StateKey::FoldCount,
            StateKey::ArchiveAccumulator,
            StateKey::ValidatorRegistry,
        ][rng.gen_range(0..3)]
        .clone(),
        7 => StateKey::Validator(public),
        8 => StateKey::EpochValidators(small),
        9 => StateKey::SessionKeys(address),
        10 => StateKey::SessionKey(address, public),
        11 => StateKey::SessionSpend(address, public),
        _ => StateKey::Storage(address, [rng.gen_range(0..200u8); 32]),
    }
}

fn entry(rng: &mut ChaCha8Rng) -> Vec<u8> {
    if rng.gen_ratio(1, 10) {
        Entry::Expired {
            epoch: rng.gen_range(0..5),
            leaf: rng.gen(),
        }
        .encode()
    } else {
        let len = rng.gen_range(1..80);
        let value: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        encode_live(rng.gen_range(0..5), &value)
    }
}

fn commit(store: &Store, height: Height, diff: &StateDiff) {
    store
        .commit(CommitRequest {
            height,
            diff,
            block: Some(&block(height)),
            receipts: &[],
            archive: &ArchiveBatch::default(),
        })
        .expect("commit");
}

fn block(height: Height) -> Block {
    Block {
        header: Header {
            chain_id: 7,
            height,
            epoch: 0,
            view: height,
            parent_hash: Hash::ZERO,
            proposer: keel_types::SecretKey::from_seed([1; 32]).public_key(),
            timestamp_ms: height,
            tx_root: Hash::ZERO,
            parent_state_root: Hash::ZERO,
            parent_receipts_root: Hash::ZERO,
            archive_root: Hash::ZERO,
        },
        transactions: Vec::new(),
    }
}

/// A source store: `heights` random blocks (inserts, overwrites, deletes, stubs).
fn source(dir: &Path, seed: u64, heights: u64, writes: usize) -> (Store, Vec<StateKey>) {
    let store = Store::open(dir, options()).expect("open");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut keys = Vec::new();
    for height in 0..heights {
        let mut diff = StateDiff::new();
        for _ in 0..writes {
            let k = key(&mut rng);
            let value = (height == 0 || !rng.gen_ratio(1, 8)).then(|| entry(&mut rng));
            keys.push(k.clone());
            diff.insert(k, value);
        }
        commit(&store, height, &diff);
    }
    keys.sort();
    keys.dedup();
    (store, keys)
}

/// Every chunk of `height` in order, `max_bytes` each.
fn chunks(store: &Store, height: Height, max_bytes: usize) -> Vec<SnapshotChunk> {
    let mut out = Vec::new();
    let mut after = None;
    while let Some(chunk) = store
        .snapshot_chunk(height, after, max_bytes)
        .expect("chunk")
    {
        let last_key = chunk.entries.last().expect("an entry").0.clone();
        after = Some(StateKey::from_bytes(&last_key).expect("key").key_hash().0);
        let last = chunk.last;
        out.push(chunk);
        if last {
            break;
        }
    }
    out
}

fn restore_all(dir: &Path, source: &Store, height: Height, max_bytes: usize) -> Arc<Store> {
    let root = source.state_root(height).expect("root");
    let mut restore = SnapshotRestore::open(dir, options(), height, root).expect("open");
    for chunk in chunks(source, height, max_bytes) {
        restore.add(chunk).expect("an honest chunk");
    }
    assert!(restore.is_complete());
    let tip = source.block(height).expect("block").expect("a block");
    let ancestors: Vec<Header> = (height.saturating_sub(5)..height)
        .map(|h| source.block(h).expect("block").expect("a block").header)
        .collect();
    restore.finish(&tip, &[], &ancestors).expect("finish")
}

fn same_state(a: &Store, b: &Store, height: Height, keys: &[StateKey]) {
    assert_eq!(a.state_root(height).ok(), b.state_root(height).ok());
    for k in keys {
        assert_eq!(
            a.entry(k, height).expect("a"),
            b.entry(k, height).expect("b"),
            "{k:?}"
        );
    }
}

/// The derived indexes of the latest state agree: entry counters, expiry and fold
/// candidates (touch and stub indexes), per-address storage counts.
fn same_indexes(src: &Store, dst: &Store) {
    let (a, b) = (
        src.expiry_counts().expect("test step"),
        dst.expiry_counts().expect("test step"),
    );
    assert_eq!((a.active, a.expired), (b.active, b.expired));
    let (sv, dv) = (src.latest_view(), dst.latest_view());
    assert_eq!(
        sv.expiry_candidates(5, 10_000).expect("test step"),
        dv.expiry_candidates(5, 10_000).expect("test step")
    );
    assert_eq!(
        sv.fold_candidates(5, 10_000).expect("test step"),
        dv.fold_candidates(5, 10_000).expect("test step")
    );
    for a in 0..40u8 {
        let address = Address([a; 20]);
        assert_eq!(
            sv.storage_entries(&address).expect("test step"),
            dv.storage_entries(&address).expect("test step")
        );
    }
}

/// Adds `src`'s chunks from `after` (`chunk_bytes` each) until `restore` is complete, and
/// returns how many of the keys it fetched were in `added_before` (fetched again).
fn resume_to_the_end(
    src: &Store,
    restore: &mut SnapshotRestore,
    (after, chunk_bytes): ([u8; 32], usize),
    added_before: &[SnapshotChunk],
) -> usize {
    let hash = |k: &[u8]| StateKey::from_bytes(k).expect("key").key_hash().0;
    let before: std::collections::BTreeSet<[u8; 32]> = added_before
        .iter()
        .flat_map(|c| &c.entries)
        .map(|(k, _)| hash(k))
        .collect();
    let (mut refetched, mut cursor) = (0, Some(after));
    while !restore.is_complete() {
        let chunk = src
            .snapshot_chunk(restore.height(), cursor, chunk_bytes)
            .expect("serve")
            .expect("a chunk before the end");
        refetched += chunk
            .entries
            .iter()
            .filter(|(k, _)| before.contains(&hash(k)))
            .count();
        cursor = chunk.entries.last().map(|(k, _)| hash(k));
        restore.add(chunk).expect("an honest chunk");
    }
    refetched
}

fn largest_chunk(chunks: &[SnapshotChunk]) -> usize {
    chunks
        .iter()
        .map(|c| c.entries.len())
        .max()
        .expect("a chunk")
}

/// Finishes a complete `restore` with `src`'s block at its height and checks the result
/// against `src`: every key's entry and every index.
fn finish_as_source(restore: SnapshotRestore, src: &Store, keys: &[StateKey]) -> Arc<Store> {
    let top = restore.height();
    let tip = src.block(top).expect("block").expect("a block");
    let dst = restore.finish(&tip, &[], &[]).expect("finish");
    same_state(src, &dst, top, keys);
    same_indexes(src, &dst);
    dst
}

#[test]
fn a_restored_state_is_the_served_state_and_takes_the_next_commit() {
    let (src_dir, dst_dir) = (
        tempfile::tempdir().expect("test step"),
        tempfile::tempdir().expect("test step"),
    );
    let (src, keys) = source(src_dir.path(), 1, 12, 120);
    let top = src.latest().expect("latest").height;
    // Small chunks: many of them, several tree levels frozen across chunk edges.
    let dst = restore_all(dst_dir.path(), &src, top, 40 * 1024);
    same_state(&src, &dst, top, &keys);
    same_indexes(&src, &dst);
    assert_eq!(dst.latest(), src.latest());
    // BLOCKHASH below the restored height reads the kept hashes.
    for h in top - 5..=top {
        assert_eq!(
            dst.block_hash_at(h).expect("test step"),
            src.block_hash_at(h).expect("test step")
        );
        assert!(dst.block_hash_at(h).expect("test step").is_some());
    }
    assert_eq!(dst.block_hash_at(top - 6).expect("test step"), None);
    assert_eq!(dst.oldest_retained().expect("test step"), top);
    // Both take the same next block to the same root (the restored tree is a real version).
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let mut diff = StateDiff::new();
    for k in keys.iter().take(30) {
        diff.insert(k.clone(), rng.gen_ratio(1, 3).then(|| entry(&mut rng)));
    }
    for _ in 0..30 {
        diff.insert(key(&mut rng), Some(entry(&mut rng)));
    }
    commit(&src, top + 1, &diff);
    commit(&dst, top + 1, &diff);
    same_state(&src, &dst, top + 1, &keys);
    // A restored store reopens like any other (its root checked at open).
    drop(dst);
    let reopened = Store::open(dst_dir.path(), options()).expect("reopen");
    assert_eq!(reopened.latest(), src.latest());
}

/// An older retained height is served whole although keys were deleted after it (their
/// preimages stay until the pruner drops the delete).
#[test]
fn an_older_height_is_served_after_later_deletes() {
    let (src_dir, dst_dir) = (
        tempfile::tempdir().expect("test step"),
        tempfile::tempdir().expect("test step"),
    );
    let (src, keys) = source(src_dir.path(), 2, 6, 80);
    let mut diff = StateDiff::new();
    for k in keys.iter().step_by(3) {
        diff.insert(k.clone(), None);
    }
    commit(&src, 6, &diff);
    let dst = restore_all(dst_dir.path(), &src, 5, 1 << 20);
    same_state(&src, &dst, 5, &keys);
}

#[test]
fn lying_chunks_are_refused_and_the_restore_rewinds() {
    let (src_dir, dst_dir) = (
        tempfile::tempdir().expect("test step"),
        tempfile::tempdir().expect("test step"),
    );
    let (src, keys) = source(src_dir.path(), 3, 6, 150);
    let top = src.latest().expect("test step").height;
    let root = src.state_root(top).expect("test step");
    let max_bytes = 8 * 1024;
    assert!(chunks(&src, top, max_bytes).len() >= 4);
    let mut restore =
        SnapshotRestore::open(dst_dir.path(), options(), top, root).expect("test step");
    let last_hash = |c: &SnapshotChunk| {
        StateKey::from_bytes(&c.entries.last().expect("test step").0)
            .expect("test step")
            .key_hash()
            .0
    };
    let (mut cursor, mut served, mut lied_early) = (None, 0, false);
    while !restore.is_complete() {
        let chunk = src
            .snapshot_chunk(top, cursor, max_bytes)
            .expect("test step")
            .expect("test step");
        served += 1;
        if served == 3 {
            // A changed value, a dropped key, a foreign proof, another height, keys out of
            // order: each refused, nothing written.
            let mut forged = chunk.clone();
            forged.entries[3].1 = encode_live(1, b"forged");
            assert!(matches!(
                restore.add(forged),
                Err(SnapshotError::BadProof { .. })
            ));
            let mut forged = chunk.clone();
            forged.entries.remove(5);
            assert!(matches!(
                restore.add(forged),
                Err(SnapshotError::BadProof { .. })
            ));
            let mut forged = chunk.clone();
            forged.proof = range_proof(&src, top, last_hash(&chunk));
            forged.entries.pop();
            assert!(matches!(
                restore.add(forged),
                Err(SnapshotError::BadProof { .. })
            ));
            let mut forged = chunk.clone();
            forged.height += 1;
            assert!(matches!(
                restore.add(forged),
                Err(SnapshotError::WrongHeight { .. })
            ));
            let mut forged = chunk.clone();
            forged.entries.swap(0, 1);
            assert!(matches!(
                restore.add(forged),
                Err(SnapshotError::BadEntry { .. })
            ));
            // Rewound to what is stored: fetch again from there.
            let after = restore.resume_after();
            assert!(after.is_none_or(|a| cursor.is_some_and(|c| a <= c)));
            cursor = after;
            continue;
        }
        if chunk.last && !lied_early && chunk.entries.len() > 1 {
            // A server that claims the end one key early: the proof says otherwise.
            lied_early = true;
            let mut early = chunk.clone();
            early.entries.pop();
            early.proof = range_proof(&src, top, last_hash(&early));
            restore.add(early.clone()).expect("a true prefix");
            assert!(!restore.is_complete());
            cursor = Some(last_hash(&early));
            continue;
        }
        cursor = Some(last_hash(&chunk));
        restore.add(chunk).expect("honest");
    }
    assert!(lied_early);
    let dst = restore
        .finish(
            &src.block(top).expect("test step").expect("test step"),
            &[],
            &[],
        )
        .expect("test step");
    same_state(&src, &dst, top, &keys);
    same_indexes(&src, &dst);
}

fn range_proof(store: &Store, height: Height, last: [u8; 32]) -> keel_types::proof::RangeProof {
    let reader = DbTreeReader {
        db: &store.db,
        nodes: None,
    };
    jmt::JellyfishMerkleTree::<_, JmtHasher>::new(&reader)
        .get_range_proof(KeyHash(last), height)
        .expect("test step")
}

/// Killed mid-restore (the restore dropped between chunks, as a crash leaves it): reopened,
/// it resumes at most one chunk back and ends at the same state; an unfinished restore
/// refuses to finish; a directory restoring another target is refused.
#[test]
fn an_interrupted_restore_resumes_and_refetches_at_most_a_chunk() {
    let (src_dir, dst_dir) = (
        tempfile::tempdir().expect("test step"),
        tempfile::tempdir().expect("test step"),
    );
    let (src, keys) = source(src_dir.path(), 4, 8, 150);
    let top = src.latest().expect("test step").height;
    let root = src.state_root(top).expect("test step");
    let honest = chunks(&src, top, 24 * 1024);
    let half = honest.len() / 2;
    let added_before = {
        let mut restore =
            SnapshotRestore::open(dst_dir.path(), options(), top, root).expect("test step");
        for chunk in &honest[..half] {
            restore.add(chunk.clone()).expect("test step");
        }
        assert!(matches!(
            restore.finish(
                &src.block(top).expect("test step").expect("test step"),
                &[],
                &[]
            ),
            Err(SnapshotError::Incomplete)
        ));
        honest[..half]
            .iter()
            .map(|c| c.entries.len())
            .sum::<usize>()
    };
    assert!(matches!(
        SnapshotRestore::open(dst_dir.path(), options(), top, Hash([3; 32])),
        Err(SnapshotError::OtherRestore { .. })
    ));
    {
        // A node started to block-sync sees the unfinished restore (and refuses it).
        let store = Store::open(dst_dir.path(), options()).expect("open");
        assert!(SnapshotRestore::in_progress(&store).expect("read"));
        assert!(store.latest().is_none());
    }
    let mut restore =
        SnapshotRestore::open(dst_dir.path(), options(), top, root).expect("test step");
    let resumed_at = restore.resume_after().expect("progress kept");
    let refetched = resume_to_the_end(&src, &mut restore, (resumed_at, 24 * 1024), &honest[..half]);
    let largest = largest_chunk(&honest);
    assert!(
        refetched <= largest,
        "refetched {refetched} of {added_before}, a chunk holds ≤ {largest}"
    );
    let dst = finish_as_source(restore, &src, &keys);
    assert!(!SnapshotRestore::in_progress(&dst).expect("read"));
    // A store with state cannot be restored into.
    drop(dst);
    assert!(matches!(
        SnapshotRestore::open(dst_dir.path(), options(), top, root),
        Err(SnapshotError::NotEmpty(_))
    ));
}

/// Killed after the tree's last nodes were written but before the store was marked
/// restored: reopened, the restore is complete and finishes (jmt's own recovery would walk
/// up past the root).
#[test]
fn a_restore_killed_after_the_tree_was_whole_finishes_on_restart() {
    // Chunks of one entry (the least a server may send) and of many.
    for max_bytes in [1, 16 * 1024] {
        let (src_dir, dst_dir) = (
            tempfile::tempdir().expect("test step"),
            tempfile::tempdir().expect("test step"),
        );
        let (src, keys) = source(src_dir.path(), 5, 4, 60);
        let top = src.latest().expect("test step").height;
        let root = src.state_root(top).expect("test step");
        {
            let mut restore =
                SnapshotRestore::open(dst_dir.path(), options(), top, root).expect("test step");
            for chunk in chunks(&src, top, max_bytes) {
                restore.add(chunk).expect("test step");
            }
            assert!(
                restore.is_complete(),
                "{max_bytes}: the proofs say the state ended"
            );
            // The first step of `finish` only, then the crash.
            restore
                .restore
                .take()
                .expect("test step")
                .finish()
                .expect("test step");
            let written = jmt::JellyfishMerkleTree::<_, JmtHasher>::new(restore.target.as_ref())
                .get_root_hash(top)
                .expect("root");
            assert_eq!(
                Hash(written.0),
                root,
                "{max_bytes}: jmt's finish wrote the root"
            );
        }
        let restore =
            SnapshotRestore::open(dst_dir.path(), options(), top, root).expect("test step");
        assert!(restore.is_complete());
        let dst = restore
            .finish(
                &src.block(top).expect("test step").expect("test step"),
                &[],
                &[],
            )
            .expect("test step");
        same_state(&src, &dst, top, &keys);
        same_indexes(&src, &dst);
    }
}

/// Where the child process of `a_restore_killed_mid_way_resumes_from_whole_batches` finds
/// the source and restore directories, and how many chunks it adds before it dies.
const CHILD_ENV: &str = "KEEL_TEST_RESTORE_CHILD";
const CHILD_CHUNK_BYTES: usize = 16 * 1024;

/// The child half of `a_restore_killed_mid_way_resumes_from_whole_batches`: adds chunks,
/// then aborts (no destructor runs, nothing is flushed on close: what a `kill -9` leaves).
#[test]
#[ignore = "run as a child process by a_restore_killed_mid_way_resumes_from_whole_batches"]
fn restore_child_dies_mid_way() {
    let Ok(args) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = args.split('|');
    let (Some(src), Some(dst), Some(count)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("{CHILD_ENV}: src|dst|chunks");
    };
    let count: usize = count.parse().expect("a chunk count");
    let src = Store::open(Path::new(src), options()).expect("open source");
    let top = src.latest().expect("a height").height;
    let root = src.state_root(top).expect("root");
    let mut restore = SnapshotRestore::open(Path::new(dst), options(), top, root).expect("open");
    for chunk in chunks(&src, top, CHILD_CHUNK_BYTES).into_iter().take(count) {
        restore.add(chunk).expect("an honest chunk");
    }
    std::process::abort();
}

/// A restore writes its bulk data without the WAL and flushes every column family at once
/// after each batch. A process that dies without closing the database resumes from whole
/// batches: the state and every index equal the source's, and at most the last batch
/// before the death (whose flush may not have finished) and the trailing keys of the one
/// before it are fetched again.
#[test]
fn a_restore_killed_mid_way_resumes_from_whole_batches() {
    let (src_dir, dst_dir) = (
        tempfile::tempdir().expect("test step"),
        tempfile::tempdir().expect("test step"),
    );
    let (src, keys) = source(src_dir.path(), 11, 8, 600);
    let top = src.latest().expect("test step").height;
    let honest = chunks(&src, top, CHILD_CHUNK_BYTES);
    let half = honest.len() / 2;
    assert!(half >= 3, "{} chunks", honest.len());
    drop(src);
    let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "snapshot::tests::restore_child_dies_mid_way",
            "--ignored",
            "--test-threads=1",
        ])
        .env(
            CHILD_ENV,
            format!(
                "{}|{}|{half}",
                src_dir.path().display(),
                dst_dir.path().display()
            ),
        )
        .output()
        .expect("run the child");
    // Killed by its own abort (SIGABRT), not a panic: a panic would unwind, close the
    // database and flush it, and prove nothing.
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.status.signal(),
        Some(6),
        "the child must abort mid-way: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let src = Store::open(src_dir.path(), options()).expect("reopen source");
    let root = src.state_root(top).expect("test step");
    let mut restore =
        SnapshotRestore::open(dst_dir.path(), options(), top, root).expect("test step");
    let resumed_at = restore.resume_after().expect("progress survived the death");
    let refetched = resume_to_the_end(
        &src,
        &mut restore,
        (resumed_at, CHILD_CHUNK_BYTES),
        &honest[..half],
    );
    // The last batch written (a chunk, less its last leaf, which jmt writes with the next
    // one, plus the chunk before's last) may be lost with the process: one chunk and a leaf.
    let largest = largest_chunk(&honest);
    assert!(
        refetched <= largest + 1,
        "refetched {refetched}, a chunk holds ≤ {largest}"
    );
    finish_as_source(restore, &src, &keys);
}

/// How many column families the newest OPTIONS file in `dir` (RocksDB rewrites it at open
/// and at every option change) lists compacting `RESTORE_L0_FILES` level-0 files at a
/// time (a restore's setting; RocksDB's default is 4).
fn restore_compacting(dir: &Path) -> usize {
    let newest = std::fs::read_dir(dir)
        .expect("test step")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("OPTIONS-"))
        .max_by_key(|n| n[8..].parse::<u64>().unwrap_or(0))
        .expect("an OPTIONS file");
    std::fs::read_to_string(dir.join(newest))
        .expect("test step")
        .lines()
        .filter(|l| {
            l.trim()
                == format!(
                    "level0_file_num_compaction_trigger={}",
                    crate::store::RESTORE_L0_FILES
                )
        })
        .count()
}

/// A restore compacts its many level-0 files in large groups, and the restored store has
/// RocksDB's usual limits again: reopened by `finish`, or reset when it is still shared.
#[test]
fn a_restore_defers_compactions_and_the_restored_store_compacts() {
    let (src_dir, dst_dir, shared_dir) = (
        tempfile::tempdir().expect("test step"),
        tempfile::tempdir().expect("test step"),
        tempfile::tempdir().expect("test step"),
    );
    let (src, keys) = source(src_dir.path(), 3, 4, 60);
    let top = src.latest().expect("latest").height;
    let restore = SnapshotRestore::open(
        dst_dir.path(),
        options(),
        top,
        src.state_root(top).expect("root"),
    )
    .expect("open");
    assert_eq!(restore_compacting(dst_dir.path()), ALL_CFS.len());
    drop(restore);
    let dst = restore_all(dst_dir.path(), &src, top, 4 * 1024);
    same_state(&src, &dst, top, &keys);
    assert_eq!(restore_compacting(dst_dir.path()), 0);
    // The path for a store `finish` cannot reopen.
    let shared = Store::open_with(shared_dir.path(), options(), true).expect("open");
    assert_eq!(restore_compacting(shared_dir.path()), ALL_CFS.len());
    shared.end_bulk_load().expect("compactions on");
    assert_eq!(restore_compacting(shared_dir.path()), 0);
}

/// Issue 21: a server fills each chunk until the next entry would pass the budget, so every
/// honest chunk passes the client's fill check against the chunk after it, whatever the
/// budget asked; the same chunk cut short by one entry fails it (that entry would have
/// fit), and so does a chunk of one entry where more fit.
#[test]
fn honest_chunks_are_filled_and_a_short_one_is_told_apart() {
    use keel_types::proof::{
        snapshot_chunk_budget, snapshot_chunk_filled, snapshot_entry_bytes,
        MIN_SNAPSHOT_CHUNK_BYTES,
    };
    let size = |(k, v): &(Vec<u8>, Vec<u8>)| snapshot_entry_bytes(k, v);
    let dir = tempfile::tempdir().expect("tempdir");
    let (src, _) = source(dir.path(), 9, 4, 1_500);
    let mut cut_short = 0;
    for asked in [
        1,
        MIN_SNAPSHOT_CHUNK_BYTES,
        MIN_SNAPSHOT_CHUNK_BYTES + 777,
        3 * MIN_SNAPSHOT_CHUNK_BYTES,
    ] {
        // What `serve` asks of the store for a request of `asked`.
        let all = chunks(&src, 3, snapshot_chunk_budget(asked));
        assert!(all.len() > 2, "{asked}: {} chunks", all.len());
        for pair in all.windows(2) {
            let (chunk, next) = (&pair[0], &pair[1]);
            let fill: usize = chunk.entries.iter().map(size).sum();
            let next_entry = size(&next.entries[0]);
            assert!(
                snapshot_chunk_filled(asked, chunk.entries.len(), fill, next_entry),
                "{asked}: an honest chunk of {} entries, {fill} bytes, failed",
                chunk.entries.len()
            );
            let last = size(chunk.entries.last().expect("an entry"));
            assert!(!snapshot_chunk_filled(
                asked,
                chunk.entries.len() - 1,
                fill - last,
                last
            ));
            assert!(!snapshot_chunk_filled(
                asked,
                1,
                size(&chunk.entries[0]),
                next_entry
            ));
            cut_short += 1;
        }
    }
    assert!(cut_short > 10, "{cut_short}");
}
