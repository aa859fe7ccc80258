//! Property tests of the store against a model: roots equal a from-scratch recomputation,
//! proofs verify (and fail when tampered), old retained heights read old values, and reads
//! of the latest height (served from the latest-entry cache) follow every commit.

use keel_state::{Overlay, StateDiff, StateView, StateViewExt};
use keel_store::{CommitRequest, Store, StoreOptions};
use keel_types::{Address, Canonical, Hash, StateKey, StateProof};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// A small key universe so sequences hit updates, deletes and re-inserts often.
fn key(index: u8) -> StateKey {
    let addr = Address([index % 7; 20]);
    match index % 3 {
        0 => StateKey::Account(addr),
        1 => StateKey::Storage(addr, [index; 32]),
        _ => StateKey::Code(Hash([index; 32])),
    }
}

const KEYS: u8 = 40;

fn options() -> StoreOptions {
    StoreOptions {
        sync_writes: false,
        ..StoreOptions::default()
    }
}

type Model = BTreeMap<StateKey, Vec<u8>>;

fn arb_blocks() -> impl Strategy<Value = Vec<Vec<(u8, Option<Vec<u8>>)>>> {
    let op = (
        0..KEYS,
        prop::option::weighted(0.75, prop::collection::vec(any::<u8>(), 1..48)),
    )
        // The store holds encoded entries; the touch epoch is part of what is committed.
        .prop_map(|(k, v)| (k, v.map(|v| keel_state::encode_live(u64::from(k % 3), &v))));
    prop::collection::vec(prop::collection::vec(op, 0..12), 1..16)
}

/// The stored (encoded) entry of `key` at `height`.
fn raw(
    store: &Store,
    key: &StateKey,
    height: u64,
) -> Result<Option<Vec<u8>>, keel_state::StateError> {
    Ok(store.entry(key, height)?.map(|e| e.encode()))
}

/// The root of `model` computed from nothing: a fresh store, one commit.
fn scratch_root(model: &Model) -> Hash {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), options()).expect("open");
    let diff: StateDiff = model
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    store
        .commit(CommitRequest {
            height: 0,
            diff: &diff,
            block: None,
            receipts: &[],
            archive: &keel_state::ArchiveBatch::default(),
        })
        .expect("commit")
        .state_root
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn store_matches_model(blocks in arb_blocks()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), options()).expect("open");
        let mut model = Model::new();
        let mut history: Vec<(Model, Hash)> = Vec::new();
        for (height, ops) in blocks.iter().enumerate() {
            let height = height as u64;
            let mut diff = StateDiff::new();
            for (k, v) in ops {
                diff.insert(key(*k), v.clone());
            }
            for (k, v) in &diff {
                match v {
                    Some(v) => { model.insert(k.clone(), v.clone()); }
                    None => { model.remove(k); }
                }
            }
            // Reads of the latest height fill the store's latest-entry cache, which the
            // commit must move forward (keys it changes, deletes, leaves alone).
            if height > 0 {
                for k in 0..KEYS {
                    let _ = raw(&store, &key(k), height - 1).expect("get");
                }
            }
            let preview = store.preview_root(height, &diff).expect("preview");
            let info = store.commit(CommitRequest { height, diff: &diff, block: None, receipts: &[], archive: &keel_state::ArchiveBatch::default(), }).expect("commit");
            prop_assert_eq!(preview, info.state_root);
            prop_assert_eq!(store.verify_root(height).expect("verify"), info.state_root);
            for _ in 0..2 {
                for k in 0..KEYS {
                    let value = raw(&store, &key(k), height).expect("get");
                    prop_assert_eq!(value.as_ref(), model.get(&key(k)), "latest read of key {}", k);
                }
            }
            history.push((model.clone(), info.state_root));
        }
        // The final root, and one from the middle, equal a from-scratch recomputation.
        let last = history.len() - 1;
        prop_assert_eq!(scratch_root(&history[last].0), history[last].1);
        prop_assert_eq!(scratch_root(&history[last / 2].0), history[last / 2].1);

        // Every retained height reads its own values, and proves them against its own root.
        for (height, (snapshot, root)) in history.iter().enumerate() {
            let height = height as u64;
            for k in 0..KEYS {
                let key = key(k);
                let value = raw(&store, &key, height).expect("get");
                prop_assert_eq!(value.as_ref(), snapshot.get(&key));
                let proof = store.prove(&key, height).expect("prove");
                prop_assert_eq!(proof.value.as_ref(), snapshot.get(&key));
                proof.verify(*root).expect("proof verifies");
                // The proof travels as bytes and still verifies.
                let decoded = StateProof::decode(&proof.encode()).expect("decode proof");
                decoded.verify(*root).expect("decoded proof verifies");
            }
        }
        // Reopening finds the same latest commit.
        let latest = store.latest().expect("latest");
        drop(store);
        let store = Store::open(dir.path(), options()).expect("reopen");
        prop_assert_eq!(store.latest(), Some(latest));
    }

    #[test]
    fn tampered_proofs_fail(blocks in arb_blocks(), target in 0..KEYS, flip in any::<usize>(), bit in 0u8..8) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), options()).expect("open");
        for (height, ops) in blocks.iter().enumerate() {
            let diff: StateDiff = ops.iter().map(|(k, v)| (key(*k), v.clone())).collect();
            store.commit(CommitRequest { height: height as u64, diff: &diff, block: None, receipts: &[], archive: &keel_state::ArchiveBatch::default(), }).expect("commit");
        }
        let latest = store.latest().expect("latest");
        let root = latest.state_root;
        let proof = store.prove(&key(target), latest.height).expect("prove");
        proof.verify(root).expect("honest proof verifies");

        // Wrong value: claim a different value (or presence for an absent key).
        let mut wrong_value = proof.clone();
        wrong_value.value = match &proof.value {
            Some(v) => { let mut v = v.clone(); v[0] ^= 1; Some(v) }
            None => Some(vec![1, 2, 3]),
        };
        prop_assert!(wrong_value.verify(root).is_err());
        // Claiming absence for a present key fails too.
        if proof.value.is_some() {
            let mut absent = proof.clone();
            absent.value = None;
            prop_assert!(absent.verify(root).is_err());
        }
        // Wrong key: the same path does not prove another key's value.
        let mut wrong_key = proof.clone();
        wrong_key.key = key((target + 1) % KEYS);
        if raw(&store, &wrong_key.key, latest.height).expect("get") != proof.value || proof.value.is_some() {
            prop_assert!(wrong_key.verify(root).is_err());
        }
        // Wrong root.
        let mut other_root = root;
        other_root.0[0] ^= 1;
        prop_assert!(proof.verify(other_root).is_err());
        // A flipped bit anywhere in the encoded proof: it fails to decode, fails to verify,
        // or (soundness) what it then proves is true of the store, e.g. a flipped key that is
        // genuinely absent under the same empty subtree.
        let mut bytes = proof.encode();
        let index = flip % bytes.len();
        bytes[index] ^= 1 << bit;
        if let Ok(decoded) = StateProof::decode(&bytes) {
            if decoded.verify(root).is_ok() {
                prop_assert_eq!(raw(&store, &decoded.key, latest.height).expect("get"), decoded.value);
            }
        }
    }
}

/// The contract whose slots `genesis_store` fills.
const SLOT_OWNER: Address = Address([1; 20]);

/// A store in a temp dir whose genesis (epoch 0) sets slot `[i; 32]` of `SLOT_OWNER` to
/// `[7; 32]` for each `i` in `slots`.
fn genesis_store(opts: StoreOptions, slots: &[u8]) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), opts).expect("open");
    let mut genesis = Overlay::new(store.latest_view());
    for i in slots {
        genesis
            .put_storage(SLOT_OWNER, [*i; 32], [7; 32])
            .expect("put");
    }
    let diff = genesis.into_diff();
    store
        .commit(CommitRequest {
            height: 0,
            diff: &diff,
            block: None,
            receipts: &[],
            archive: &keel_state::ArchiveBatch::default(),
        })
        .expect("commit");
    (dir, store)
}

#[test]
fn overlay_reads_through_and_reverts_checkpoints() {
    let (_dir, store) = genesis_store(options(), &[1]);
    let a = SLOT_OWNER;

    let mut overlay = Overlay::new(store.latest_view());
    assert_eq!(overlay.storage(&a, &[1; 32]).expect("read"), [7; 32]);
    assert_eq!(overlay.storage(&a, &[2; 32]).expect("read"), [0; 32]);
    let outer = overlay.checkpoint();
    overlay.put_storage(a, [2; 32], [9; 32]).expect("put");
    let inner = overlay.checkpoint();
    overlay
        .put_storage(a, [1; 32], [0; 32])
        .expect("put zero deletes");
    assert_eq!(overlay.storage(&a, &[1; 32]).expect("read"), [0; 32]);
    overlay.revert_to(inner);
    assert_eq!(overlay.storage(&a, &[1; 32]).expect("read"), [7; 32]);
    assert_eq!(overlay.storage(&a, &[2; 32]).expect("read"), [9; 32]);
    overlay.revert_to(outer);
    assert!(overlay.diff().is_empty());
    // Writing zero produces a delete in the diff, so a zero slot is never stored.
    overlay.put_storage(a, [1; 32], [0; 32]).expect("put");
    assert_eq!(
        overlay.diff().get(&StateKey::Storage(a, [1; 32])),
        Some(&None)
    );
    assert_eq!(
        overlay.get(&StateKey::Storage(a, [1; 32])).expect("get"),
        None
    );
}

/// A read in a later epoch re-stamps the entry (expiry on: reading keeps it alive); an
/// overlay without read touches (expiry off) leaves it alone, and writes are stamped either way.
#[test]
fn reads_re_stamp_only_when_read_touches_are_on() {
    let (_dir, store) = genesis_store(options(), &[1]);
    let a = SLOT_OWNER;
    let slot = StateKey::Storage(a, [1; 32]);
    let touching = Overlay::at_epoch(store.latest_view(), 5);
    assert_eq!(touching.storage(&a, &[1; 32]).expect("read"), [7; 32]);
    let restamped = touching.into_diff();
    let entry = restamped.get(&slot).cloned().flatten().expect("re-stamped");
    assert_eq!(
        keel_state::Entry::decode(&entry).expect("entry"),
        keel_state::Entry::Live {
            touched_epoch: 5,
            value: [7; 32].to_vec()
        }
    );
    let mut quiet = Overlay::at_epoch(store.latest_view(), 5).without_read_touches();
    assert_eq!(quiet.storage(&a, &[1; 32]).expect("read"), [7; 32]);
    quiet.put_storage(a, [2; 32], [9; 32]).expect("put");
    let diff = quiet.into_diff();
    assert!(!diff.contains_key(&slot), "a read alone wrote nothing");
    let written = diff
        .get(&StateKey::Storage(a, [2; 32]))
        .cloned()
        .flatten()
        .expect("written");
    assert!(matches!(
        keel_state::Entry::decode(&written),
        Ok(keel_state::Entry::Live {
            touched_epoch: 5,
            ..
        })
    ));
}

/// The touch index feeds the expiry sweep; a store for a chain without expiry skips it, and
/// then has no candidates (but still counts its entries).
#[test]
fn the_touch_index_is_kept_only_when_asked() {
    for index_touches in [true, false] {
        let opts = StoreOptions {
            index_touches,
            ..options()
        };
        let (_dir, store) = genesis_store(opts, &[0, 1, 2, 3, 4]);
        let candidates = store
            .latest_view()
            .expiry_candidates(1, 100)
            .expect("candidates");
        assert_eq!(candidates.len(), if index_touches { 5 } else { 0 });
        assert_eq!(store.expiry_counts().expect("counts").active, 5);
    }
}

#[test]
fn commits_must_be_in_order_and_future_reads_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), options()).expect("open");
    let diff = StateDiff::new();
    let err = store.commit(CommitRequest {
        height: 1,
        diff: &diff,
        block: None,
        receipts: &[],
        archive: &keel_state::ArchiveBatch::default(),
    });
    assert!(matches!(
        err,
        Err(keel_state::StateError::NotNextHeight {
            expected: 0,
            got: 1
        })
    ));
    store
        .commit(CommitRequest {
            height: 0,
            diff: &diff,
            block: None,
            receipts: &[],
            archive: &keel_state::ArchiveBatch::default(),
        })
        .expect("commit 0");
    store
        .commit(CommitRequest {
            height: 1,
            diff: &diff,
            block: None,
            receipts: &[],
            archive: &keel_state::ArchiveBatch::default(),
        })
        .expect("empty commit 1");
    assert_eq!(
        store.state_root(0).expect("root0"),
        store.state_root(1).expect("root1")
    );
    assert!(matches!(
        store.get(&key(1), 5),
        Err(keel_state::StateError::FutureHeight { height: 5, .. })
    ));
}

/// A commit that fails after its tree update (here: a block of another height) leaves
/// nothing behind: a retry of the same height with another diff, and the next height, have
/// the roots a fresh store computes (the upper tree levels are cached only once written).
#[test]
fn a_failed_commit_leaves_no_tree_nodes_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), options()).expect("open");
    let live = |v: u8| Some(keel_state::encode_live(0, &[v; 8]));
    let two: StateDiff = (0..40).map(|k| (key(k), live(k))).collect();
    let one: StateDiff = [(key(0), live(0))].into_iter().collect();
    let mut bad = keel_types::Block {
        header: keel_types::Header {
            chain_id: 1,
            height: 7,
            epoch: 0,
            view: 7,
            parent_hash: Hash::ZERO,
            proposer: keel_types::SecretKey::from_seed([1; 32]).public_key(),
            timestamp_ms: 0,
            tx_root: Hash::ZERO,
            parent_state_root: Hash::ZERO,
            parent_receipts_root: Hash::ZERO,
            archive_root: Hash::ZERO,
        },
        transactions: Vec::new(),
    };
    bad.header.tx_root = keel_types::block::tx_root(&bad.transactions);
    let archive = keel_state::ArchiveBatch::default();
    assert!(store
        .commit(CommitRequest {
            height: 0,
            diff: &two,
            block: Some(&bad),
            receipts: &[],
            archive: &archive,
        })
        .is_err());
    let info = store
        .commit(CommitRequest {
            height: 0,
            diff: &one,
            block: None,
            receipts: &[],
            archive: &archive,
        })
        .expect("commit");
    assert_eq!(store.verify_root(0).expect("verify"), info.state_root);
    let next: StateDiff = [(key(1), live(9))].into_iter().collect();
    let info = store
        .commit(CommitRequest {
            height: 1,
            diff: &next,
            block: None,
            receipts: &[],
            archive: &keel_state::ArchiveBatch::default(),
        })
        .expect("commit");
    let mut model = Model::new();
    for (k, v) in one.iter().chain(&next) {
        model.insert(k.clone(), v.clone().expect("live"));
    }
    assert_eq!(info.state_root, scratch_root(&model));
}
