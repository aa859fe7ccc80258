//! State expiry end to end through the runtime and a real store: EVM and WASM slots expire
//! after `expiry_epochs` idle epochs, touching them is the typed `Expired` error (never a
//! zero), and revival brings back exactly the latest archived value, once — every adversarial
//! revival is refused with its typed reason (and charged).

use crate::common;

use common::{abi, addr, artifact, key, refused, Chain, GAS_PRICE};
use keel_state::{Entry, StateView, StateViewExt};
use keel_types::{
    Address, Canonical, Env, Receipt, RevivalError, SecretKey, StateKey, TxBody, TxError, TxStatus,
    U256,
};

const EXPIRY_EPOCHS: u64 = 2;

fn get(chain: &mut Chain, k: &SecretKey, registry: Address, key: u64) -> Receipt {
    chain.call(k, registry, abi::call("get(uint256)", &[abi::u(key)]))
}

/// A block in each epoch up to `epoch` in which `keeper` reads `count()` of every registry,
/// so the contracts (account, code, count slot) stay live while other slots go idle.
fn idle_until(chain: &mut Chain, keeper: &SecretKey, registries: &[Address], epoch: u64) {
    while chain.epoch < epoch {
        chain.epoch += 1;
        for r in registries {
            let receipt = chain.call(keeper, *r, abi::call("count()", &[]));
            assert_eq!(receipt.status, TxStatus::Success, "{receipt:?}");
        }
    }
}

fn expired_slot(chain: &Chain, contract: Address) -> StateKey {
    let latest = chain.store.latest().expect("latest").height;
    let view = chain.store.view(latest).expect("view");
    // The slot of key 1 is the only storage of the contract that went idle.
    let stubs: Vec<StateKey> = chain_slots(chain, contract)
        .into_iter()
        .filter(|k| matches!(view.entry(k), Ok(Some(Entry::Expired { .. }))))
        .collect();
    assert_eq!(stubs.len(), 1, "one expired slot in {contract}: {stubs:?}");
    stubs[0].clone()
}

/// Every storage key of `contract` that was ever archived (from the archive leaves).
fn chain_slots(chain: &Chain, contract: Address) -> Vec<StateKey> {
    let mut out = Vec::new();
    let mut index = 0u64;
    while let Some(leaf) = chain.store.archive_leaf(index).expect("archive leaf") {
        if matches!(leaf.key, StateKey::Storage(a, _) if a == contract) && !out.contains(&leaf.key)
        {
            out.push(leaf.key);
        }
        index += 1;
    }
    out
}

fn slot_lifecycle(env: Env) {
    let (writer, keeper) = (key(1), key(2));
    let mut chain = Chain::new(&[&writer, &keeper]);
    chain.set_expiry_epochs(EXPIRY_EPOCHS);
    let code = match env {
        Env::Evm => artifact("Registry.bin"),
        Env::Wasm => artifact("registry.wasm"),
    };
    let registry = chain.deploy(&writer, env, code, Vec::new());
    let set = chain.call(
        &writer,
        registry,
        abi::call("set(uint256,uint256)", &[abi::u(1), abi::u(42)]),
    );
    assert_eq!(set.status, TxStatus::Success, "{set:?}");

    // Idle past expiry: touched in epoch 0, swept at the first block of epoch 3.
    idle_until(&mut chain, &keeper, &[registry], 3);
    let slot = expired_slot(&chain, registry);
    let before = chain.balance(&addr(&keeper));
    let read = get(&mut chain, &keeper, registry, 1);
    // Charged, not refused: its whole gas limit (`Chain::call`'s 5,000,000), its nonce used.
    assert_eq!(read.status, TxStatus::Revert, "{read:?}");
    assert_eq!(read.gas_used, 5_000_000, "{read:?}");
    assert_eq!(
        chain.balance(&addr(&keeper)),
        before - U256::from(5_000_000u64) * U256::from(GAS_PRICE)
    );
    match &read.error {
        Some(TxError::Expired { key, expired_epoch }) => {
            assert_eq!(*expired_epoch, 3);
            assert_eq!(key, &slot);
        }
        other => panic!("reading an expired slot must be the typed error, got {other:?}"),
    }
    // The store says the same to queries.
    let latest = chain.store.latest().expect("latest").height;
    assert!(matches!(
        chain.store.get(&slot, latest),
        Err(keel_state::StateError::Expired { epoch: 3, .. })
    ));

    // Epoch 3's archive seals at the first block of epoch 4.
    assert!(matches!(
        chain.store.revival_proof(&slot, 3),
        Err(keel_store::ProofError::Unavailable(
            keel_store::ProofUnavailable::Unsealed(3)
        ))
    ));
    idle_until(&mut chain, &keeper, &[registry], 4);
    let proof = chain.store.revival_proof(&slot, 3).expect("proof");
    assert_eq!(U256::from_be_slice(&proof.value), U256::from(42));

    // Forged value, wrong sealed epoch, wrong version, a key that never expired.
    let mut forged = proof.clone();
    forged.value[31] = 43;
    assert!(matches!(
        refused(&chain.revive(&keeper, &forged)),
        RevivalError::BadProof { .. }
    ));
    let mut unsealed = proof.clone();
    unsealed.sealed_epoch = 9;
    assert!(matches!(
        refused(&chain.revive(&keeper, &unsealed)),
        RevivalError::UnsealedEpoch { sealed_epoch: 9 }
    ));
    let mut other_epoch = proof.clone();
    other_epoch.expired_epoch = 2;
    assert!(matches!(
        refused(&chain.revive(&keeper, &other_epoch)),
        RevivalError::StaleVersion {
            latest_epoch: 3,
            proof_epoch: 2,
            ..
        }
    ));
    let mut never = proof.clone();
    never.key = StateKey::Storage(registry, [0xee; 32]);
    assert!(matches!(
        refused(&chain.revive(&keeper, &never)),
        RevivalError::NotExpired { .. }
    ));
    let mut garbage = proof.encode();
    garbage.truncate(garbage.len() / 2);
    let r = chain.run(&keeper, 1_000_000, TxBody::Revive { proof: garbage });
    assert!(matches!(refused(&r), RevivalError::Malformed { .. }));

    // The honest revival: the value is back and reads normally.
    let revived = chain.revive(&keeper, &proof);
    assert_eq!(revived.status, TxStatus::Success, "{revived:?}");
    let read = get(&mut chain, &keeper, registry, 1);
    assert_eq!(read.status, TxStatus::Success, "{read:?}");
    assert_eq!(abi::word(&read.output), U256::from(42));
    assert_eq!(chain.store.expiry_counts().expect("counts").revived, 1);

    // Twice: rejected. Over a newer value: rejected.
    assert!(matches!(
        refused(&chain.revive(&keeper, &proof)),
        RevivalError::AlreadyLive { .. }
    ));
    let newer = chain.call(
        &keeper,
        registry,
        abi::call("set(uint256,uint256)", &[abi::u(1), abi::u(77)]),
    );
    assert_eq!(newer.status, TxStatus::Success, "{newer:?}");
    assert!(matches!(
        refused(&chain.revive(&keeper, &proof)),
        RevivalError::AlreadyLive { .. }
    ));

    // It expires again (epoch of the write + 3); the old proof is now a stale version, and
    // only a fresh proof brings back the newest value.
    let write_epoch = chain.epoch;
    idle_until(
        &mut chain,
        &keeper,
        &[registry],
        write_epoch + EXPIRY_EPOCHS + 2,
    );
    let stale = refused(&chain.revive(&keeper, &proof));
    assert!(
        matches!(stale, RevivalError::StaleVersion { proof_epoch: 3, .. }),
        "{stale:?}"
    );
    let sealed = chain.epoch - 1;
    let fresh = chain.store.revival_proof(&slot, sealed).expect("proof");
    let again = chain.revive(&keeper, &fresh);
    assert_eq!(again.status, TxStatus::Success, "{again:?}");
    let read = get(&mut chain, &keeper, registry, 1);
    assert_eq!(abi::word(&read.output), U256::from(77));

    // An idle externally owned account expired too: its own transactions are refused with
    // the typed error until someone revives it.
    let writer_key = StateKey::Account(addr(&writer));
    let latest = chain.store.latest().expect("latest").height;
    assert!(matches!(
        chain.store.entry(&writer_key, latest).expect("entry"),
        Some(Entry::Expired { .. })
    ));
    let r = chain.run(
        &writer,
        100_000,
        TxBody::Transfer {
            to: addr(&keeper),
            amount: U256::from(1u64),
        },
    );
    assert!(matches!(r.error, Some(TxError::Expired { .. })), "{r:?}");
}

#[test]
fn evm_slot_expires_and_revives_once_latest_only() {
    slot_lifecycle(Env::Evm);
}

#[test]
fn wasm_slot_expires_and_revives_once_latest_only() {
    slot_lifecycle(Env::Wasm);
}

#[test]
fn expiry_off_keeps_everything_and_refuses_revival() {
    let (writer, keeper) = (key(1), key(2));
    let mut chain = Chain::new(&[&writer, &keeper]);
    let registry = chain.deploy(&writer, Env::Evm, artifact("Registry.bin"), Vec::new());
    chain.call(
        &writer,
        registry,
        abi::call("set(uint256,uint256)", &[abi::u(1), abi::u(42)]),
    );
    idle_until(&mut chain, &keeper, &[registry], 8);
    let read = get(&mut chain, &keeper, registry, 1);
    assert_eq!(abi::word(&read.output), U256::from(42));
    let r = chain.run(
        &keeper,
        1_000_000,
        TxBody::Revive {
            proof: vec![1, 2, 3],
        },
    );
    assert!(matches!(refused(&r), RevivalError::ExpiryOff));
    assert_eq!(chain.store.expiry_counts().expect("counts").expired, 0);
    // Nothing re-stamps what is only read: the code, read by every call since epoch 0, was
    // not rewritten once per epoch.
    let latest = chain.store.latest().expect("latest").height;
    let code = chain
        .store
        .latest_view()
        .account(&registry)
        .expect("read")
        .and_then(|a| a.code)
        .expect("contract");
    assert!(matches!(
        chain.store.entry(&StateKey::Code(code.code_hash), latest),
        Ok(Some(Entry::Live {
            touched_epoch: 0,
            ..
        }))
    ));
}

/// A validator that stops proposing has its account expire like any other; when it proposes
/// again, its block's transactions (a revival included) still run and their fees are burned,
/// never a block where every transaction fails on the coinbase. A validator that keeps
/// proposing stays live through its proposals alone, even in blocks without fees.
#[test]
fn an_expired_proposer_burns_its_fees_and_its_blocks_still_run() {
    let (agent, other, keeper) = (key(1), key(2), key(3));
    let mut chain = Chain::new(&[&agent, &other, &keeper]);
    chain.set_expiry_epochs(EXPIRY_EPOCHS);
    let (idle, busy, payee) = (key(250), key(251), key(252));
    let registry = chain.deploy(&agent, Env::Evm, artifact("Registry.bin"), Vec::new());
    let set = chain.call(
        &agent,
        registry,
        abi::call("set(uint256,uint256)", &[abi::u(1), abi::u(42)]),
    );
    assert_eq!(set.status, TxStatus::Success, "{set:?}");
    let earned = chain.balance(&addr(&idle));
    assert!(earned > U256::ZERO, "the epoch-0 proposer earned fees");
    let transfer = TxBody::Transfer {
        to: addr(&other),
        amount: U256::from(1u64),
    };
    // Epochs 1..=4: `busy` proposes one paying block in epoch 1 and only empty blocks after
    // it (without its proposals its account would expire in epoch 4); `payee` proposes the
    // blocks with transactions.
    while chain.epoch < 4 {
        chain.epoch += 1;
        chain.proposer = busy.clone();
        if chain.epoch == 1 {
            assert_eq!(
                chain.run(&agent, 21_000, transfer.clone()).status,
                TxStatus::Success
            );
        } else {
            chain.block(Vec::new());
        }
        chain.proposer = payee.clone();
        assert_eq!(
            chain.run(&agent, 21_000, transfer.clone()).status,
            TxStatus::Success
        );
        let count = chain.call(&keeper, registry, abi::call("count()", &[]));
        assert_eq!(count.status, TxStatus::Success, "{count:?}");
    }
    let latest = chain.store.latest().expect("latest").height;
    let entry = |k: &SecretKey| {
        chain
            .store
            .entry(&StateKey::Account(addr(k)), latest)
            .expect("entry")
    };
    assert!(matches!(entry(&idle), Some(Entry::Expired { .. })));
    assert!(
        matches!(entry(&busy), Some(Entry::Live { .. })),
        "proposing keeps a validator's account live"
    );
    let slot = expired_slot(&chain, registry);
    let proof = chain
        .store
        .revival_proof(&slot, chain.epoch - 1)
        .expect("proof");

    // `idle` proposes again: a transfer and a revival succeed, the fees go to the burn.
    chain.proposer = idle.clone();
    let burned = chain.balance(&Address::FEE_BURN);
    let paid = chain.run(&agent, 21_000, transfer.clone());
    assert_eq!(paid.status, TxStatus::Success, "{paid:?}");
    let revived = chain.revive(&keeper, &proof);
    assert_eq!(revived.status, TxStatus::Success, "{revived:?}");
    assert!(chain.balance(&Address::FEE_BURN) > burned, "fees burned");
    let latest = chain.store.latest().expect("latest").height;
    assert!(matches!(
        chain
            .store
            .entry(&StateKey::Account(addr(&idle)), latest)
            .expect("entry"),
        Some(Entry::Expired { .. })
    ));
    let read = get(&mut chain, &keeper, registry, 1);
    assert_eq!(abi::word(&read.output), U256::from(42));
}
