//! Folding end to end through the runtime and a real store: once an expired slot's stub is
//! folded out of the tree into a fold page, reading it is still the typed `Expired` error
//! (never a zero), a proof built from the fold pages revives exactly its latest archived
//! value, once, and every adversarial revival of a folded entry — forged page leaf, missing
//! page, stale folded version, a folded proof while a newer stub is in the tree, revival over
//! a deletion — is rejected with its typed reason. Keys no page flags still read as zero.

use crate::common;

use common::{abi, addr, artifact, key, refused, Chain};
use keel_state::{Entry, StateError};
use keel_types::archive::RevivalProof;
use keel_types::fold::{Absence, UnflagProof};
use keel_types::{
    Address, Canonical, Env, Receipt, RevivalError, SecretKey, StateKey, TxBody, TxError, TxStatus,
    U256,
};

const EXPIRY_EPOCHS: u64 = 2;
const FOLD_EPOCHS: u64 = 1;

fn call(chain: &mut Chain, k: &SecretKey, registry: Address, sig: &str, args: &[u64]) -> Receipt {
    let words: Vec<_> = args.iter().map(|a| abi::u(*a)).collect();
    chain.call(k, registry, abi::call(sig, &words))
}

/// A block per epoch up to `epoch` in which `keeper` keeps the registry itself live.
fn idle_until(chain: &mut Chain, keeper: &SecretKey, registry: Address, epoch: u64) {
    while chain.epoch < epoch {
        chain.epoch += 1;
        let r = call(chain, keeper, registry, "count()", &[]);
        assert_eq!(r.status, TxStatus::Success, "{r:?}");
    }
}

fn entry(chain: &Chain, key: &StateKey) -> Option<Entry> {
    let latest = chain.store.latest().expect("latest").height;
    chain.store.entry(key, latest).expect("entry")
}

fn fold_pages(chain: &Chain) -> u64 {
    keel_state::fold::fold_count(&chain.store.latest_view()).expect("fold count")
}

fn proof(chain: &Chain, key: &StateKey) -> RevivalProof {
    chain
        .store
        .revival_proof(key, chain.epoch - 1)
        .expect("proof")
}

fn folded_lifecycle(env: Env) {
    let (writer, keeper) = (key(1), key(2));
    let mut chain = Chain::new(&[&writer, &keeper]);
    chain.set_expiry_epochs(EXPIRY_EPOCHS);
    chain.set_fold_epochs(FOLD_EPOCHS);
    let code = match env {
        Env::Evm => artifact("Registry.bin"),
        Env::Wasm => artifact("registry.wasm"),
    };
    let registry = chain.deploy(&writer, env, code, Vec::new());
    let set = call(
        &mut chain,
        &writer,
        registry,
        "set(uint256,uint256)",
        &[1, 42],
    );
    assert_eq!(set.status, TxStatus::Success, "{set:?}");

    // Touched in epoch 0, expired at the start of epoch 3, folded at the start of epoch 5
    // (its stub's epoch 3 is then more than FOLD_EPOCHS behind).
    idle_until(&mut chain, &keeper, registry, 4);
    let mut stubs = Vec::new();
    let mut leaf = 0;
    while let Some(archived) = chain.store.archive_leaf(leaf).expect("leaf") {
        if matches!(archived.key, StateKey::Storage(a, _) if a == registry) {
            stubs.push(archived.key);
        }
        leaf += 1;
    }
    assert_eq!(
        stubs.len(),
        1,
        "key 1's slot is the registry's only idle slot"
    );
    let slot = stubs.remove(0);
    assert!(matches!(
        entry(&chain, &slot),
        Some(Entry::Expired { epoch: 3, .. })
    ));
    assert_eq!(fold_pages(&chain), 0);
    idle_until(&mut chain, &keeper, registry, 5);
    assert_eq!(entry(&chain, &slot), None, "the stub left the tree");
    assert!(fold_pages(&chain) >= 1);

    // Still the typed error, never a zero: in a transaction and in a query.
    let read = call(&mut chain, &keeper, registry, "get(uint256)", &[1]);
    match &read.error {
        Some(TxError::Expired { key, expired_epoch }) => {
            assert_eq!((key, *expired_epoch), (&slot, 3));
        }
        other => panic!("a folded slot must read as expired, got {other:?}"),
    }
    let latest = chain.store.latest().expect("latest").height;
    assert!(matches!(
        chain.store.get(&slot, latest),
        Err(StateError::Expired { leaf: None, .. })
    ));
    // A slot that never existed is still zero; so is an account nobody created.
    let fresh = call(&mut chain, &keeper, registry, "get(uint256)", &[999]);
    assert_eq!(fresh.status, TxStatus::Success, "{fresh:?}");
    assert_eq!(abi::word(&fresh.output), U256::ZERO);
    // The writer's own account folded too: its transactions are refused with the typed
    // error, and so is paying it.
    let pay_writer = chain.run(
        &keeper,
        21_000,
        TxBody::Transfer {
            to: addr(&writer),
            amount: U256::from(1u64),
        },
    );
    assert!(
        matches!(pay_writer.error, Some(TxError::Expired { .. })),
        "{pay_writer:?}"
    );

    let honest = proof(&chain, &slot);
    let folded = honest.folded.clone().expect("a fold proof");
    assert_eq!(U256::from_be_slice(&honest.value), U256::from(42));

    // Forgeries: a stub-style proof, another version's page leaf, a page that does not
    // exist, an absence proof nobody asked for, a forged archived value.
    let mut no_fold = honest.clone();
    no_fold.folded = None;
    assert!(matches!(
        refused(&chain.revive(&keeper, &no_fold)),
        RevivalError::NotExpired { .. }
    ));
    let mut other_leaf = honest.clone();
    other_leaf.leaf_index += 1;
    assert!(matches!(
        refused(&chain.revive(&keeper, &other_leaf)),
        RevivalError::BadFoldProof { .. }
    ));
    let mut no_page = honest.clone();
    if let Some(f) = &mut no_page.folded {
        f.page = 1_000;
    }
    assert!(matches!(
        refused(&chain.revive(&keeper, &no_page)),
        RevivalError::BadFoldProof { page: 1_000, .. }
    ));
    let mut extra = honest.clone();
    if let Some(f) = &mut extra.folded {
        f.absent.push(Absence {
            page: folded.page,
            below: None,
            above: None,
        });
    }
    assert!(matches!(
        refused(&chain.revive(&keeper, &extra)),
        RevivalError::BadFoldProof { .. }
    ));
    let mut forged = honest.clone();
    forged.value[31] = 43;
    assert!(matches!(
        refused(&chain.revive(&keeper, &forged)),
        RevivalError::BadProof { .. }
    ));

    // The honest revival, then twice: rejected.
    let revived = chain.revive(&keeper, &honest);
    assert_eq!(revived.status, TxStatus::Success, "{revived:?}");
    let read = call(&mut chain, &keeper, registry, "get(uint256)", &[1]);
    assert_eq!(abi::word(&read.output), U256::from(42));
    assert!(matches!(
        refused(&chain.revive(&keeper, &honest)),
        RevivalError::AlreadyLive { .. }
    ));

    // Deleting it writes a marker (a page still flags the key), so the archived 42 cannot
    // come back over the deletion.
    let delete = call(
        &mut chain,
        &keeper,
        registry,
        "set(uint256,uint256)",
        &[1, 0],
    );
    assert_eq!(delete.status, TxStatus::Success, "{delete:?}");
    assert!(matches!(
        entry(&chain, &slot),
        Some(Entry::Live { value, .. }) if value.is_empty()
    ));
    let read = call(&mut chain, &keeper, registry, "get(uint256)", &[1]);
    assert_eq!(abi::word(&read.output), U256::ZERO);
    assert!(matches!(
        refused(&chain.revive(&keeper, &honest)),
        RevivalError::AlreadyLive { .. }
    ));

    // The marker goes idle and expires: while its stub is in the tree, the old folded proof
    // is a stale version; once folded into a later page, the old proof lacks that page's
    // absence proof, and only a fresh proof (of the deletion) revives.
    let deleted_in = chain.epoch;
    idle_until(
        &mut chain,
        &keeper,
        registry,
        deleted_in + EXPIRY_EPOCHS + 1,
    );
    assert!(matches!(entry(&chain, &slot), Some(Entry::Expired { .. })));
    assert!(matches!(
        refused(&chain.revive(&keeper, &honest)),
        RevivalError::StaleVersion { .. }
    ));
    let pages_before = fold_pages(&chain);
    let fold_at = chain.epoch + FOLD_EPOCHS + 1;
    idle_until(&mut chain, &keeper, registry, fold_at);
    assert_eq!(entry(&chain, &slot), None);
    assert!(fold_pages(&chain) > pages_before);
    assert!(matches!(
        refused(&chain.revive(&keeper, &honest)),
        RevivalError::BadFoldProof { .. }
    ));
    let latest_proof = proof(&chain, &slot);
    assert!(
        latest_proof.value.is_empty(),
        "the latest version is the deletion"
    );
    assert!(latest_proof.folded.as_ref().expect("folded").page > folded.page);
    let back = chain.revive(&keeper, &latest_proof);
    assert_eq!(back.status, TxStatus::Success, "{back:?}");
    let read = call(&mut chain, &keeper, registry, "get(uint256)", &[1]);
    assert_eq!(read.status, TxStatus::Success, "{read:?}");
    assert_eq!(abi::word(&read.output), U256::ZERO);
    assert_eq!(chain.store.expiry_counts().expect("counts").revived, 2);
}

#[test]
fn evm_folded_slot_revives_once_latest_only() {
    folded_lifecycle(Env::Evm);
}

#[test]
fn wasm_folded_slot_revives_once_latest_only() {
    folded_lifecycle(Env::Wasm);
}

/// A key that never existed but that a fold page's filter flags (a false positive, ≈ 2 × 10⁻⁷
/// per page, found here by search) reads as expired; an unflag proves that no flagging page
/// holds it and clears it, after which it is an ordinary absent key. Unflagging an archived
/// key is refused: it would put a marker over its archived value.
#[test]
fn a_filter_false_positive_is_cleared_by_an_unflag() {
    let (agent, keeper) = (key(1), key(2));
    let mut chain = Chain::new(&[&agent, &keeper]);
    chain.set_expiry_epochs(1);
    chain.set_fold_epochs(1);
    let fresh = |i: u64| {
        let mut a = [0xc0u8; 20];
        a[..8].copy_from_slice(&i.to_be_bytes());
        Address(a)
    };
    // Every epoch the agent pays 64 fresh accounts, which idle, expire and fold.
    for epoch in 1..=8u64 {
        chain.epoch = epoch;
        let mut txs: Vec<_> = (0..64)
            .map(|i| chain.tx(&agent, 21_000, transfer(fresh(epoch * 1_000 + i))))
            .collect();
        txs.push(chain.tx(&keeper, 21_000, transfer(addr(&agent))));
        let (output, _) = chain.block(txs);
        assert!(output
            .receipts
            .iter()
            .all(|r| r.status == TxStatus::Success));
    }
    let pages = keel_state::fold::all_pages(&chain.store.latest_view()).expect("pages");
    assert!(pages.len() >= 4, "{} fold pages", pages.len());

    // Search addresses nobody ever used for one a page flags.
    const SEARCH_LIMIT: u64 = 100_000_000;
    let victim = (0..SEARCH_LIMIT)
        .map(|i| {
            let mut a = [0xfau8; 20];
            a[..8].copy_from_slice(&i.to_be_bytes());
            Address(a)
        })
        .find(|a| {
            let hash = StateKey::Account(*a).key_hash();
            pages.iter().any(|(n, page)| page.flags(*n, &hash))
        })
        .expect("a false positive within the search limit");
    let victim_key = StateKey::Account(victim);

    // It reads as expired, and no page holds it, so there is no revival proof.
    let paid = chain.run(&keeper, 21_000, transfer(victim));
    assert!(
        matches!(paid.error, Some(TxError::Expired { .. })),
        "{paid:?}"
    );
    assert!(matches!(
        chain.store.revival_proof(&victim_key, chain.epoch - 1),
        Err(keel_store::ProofError::Unavailable(
            keel_store::ProofUnavailable::NotExpired(_)
        ))
    ));
    let unflag = chain
        .store
        .unflag_proof(&victim_key)
        .expect("an unflag proof");
    assert!(!unflag.absent.is_empty());

    // Without its absence proofs: refused. An archived key (a folded fresh account, or one
    // whose stub is still in the tree) cannot be unflagged.
    let run_unflag = |chain: &mut Chain, proof: &UnflagProof| {
        chain.run(
            &keeper,
            1_000_000,
            TxBody::Unflag {
                proof: proof.encode(),
            },
        )
    };
    let bare = UnflagProof {
        key: victim_key.clone(),
        absent: Vec::new(),
    };
    assert!(matches!(
        refused(&run_unflag(&mut chain, &bare)),
        RevivalError::BadFoldProof { .. }
    ));
    let folded_key = StateKey::Account(fresh(1_000));
    assert_eq!(entry(&chain, &folded_key), None);
    assert!(matches!(
        chain.store.unflag_proof(&folded_key),
        Err(keel_store::ProofError::Unavailable(
            keel_store::ProofUnavailable::Archived(_)
        ))
    ));
    let forged = UnflagProof {
        key: folded_key,
        absent: Vec::new(),
    };
    assert!(matches!(
        refused(&run_unflag(&mut chain, &forged)),
        RevivalError::BadFoldProof { .. }
    ));
    let stub_key = StateKey::Account(fresh(6_000));
    assert!(matches!(
        entry(&chain, &stub_key),
        Some(Entry::Expired { .. })
    ));
    let stub = UnflagProof {
        key: stub_key,
        absent: Vec::new(),
    };
    assert!(matches!(
        refused(&run_unflag(&mut chain, &stub)),
        RevivalError::Archived { .. }
    ));

    // The honest unflag clears it: a marker, then the key is an ordinary absent account.
    let cleared = run_unflag(&mut chain, &unflag);
    assert_eq!(cleared.status, TxStatus::Success, "{cleared:?}");
    assert!(matches!(
        entry(&chain, &victim_key),
        Some(Entry::Live { value, .. }) if value.is_empty()
    ));
    let paid = chain.run(&keeper, 21_000, transfer(victim));
    assert_eq!(paid.status, TxStatus::Success, "{paid:?}");
    assert_eq!(chain.balance(&victim), U256::from(1u64));
    assert!(matches!(
        refused(&run_unflag(&mut chain, &unflag)),
        RevivalError::AlreadyLive { .. }
    ));
}

fn transfer(to: Address) -> TxBody {
    TxBody::Transfer {
        to,
        amount: U256::from(1u64),
    }
}
