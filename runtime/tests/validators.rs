//! The validator registry at execution (issue 21; docs/validators.md): each transaction's
//! typed refusals, the epoch-end step, and the attacks a review found — a rotation onto a
//! taken key, a registry filled with emptied records, a session key or a capped account
//! moving stake, payouts of stake the set still counts, and evidence checks.

use crate::common::{abi, addr, creation, evm_proxy, key, Chain};
use keel_runtime::validators::{read_epoch_set, read_record, read_registry, GenesisEntry};
use keel_state::StateViewExt;
use keel_types::validator::{
    possession_message, RegistryParams, ValidatorStatus, ValidatorTx, REGISTRY_ADDRESS,
};
use keel_types::{
    Env, PublicKey, Receipt, RegistryError, SecretKey, SignedVote, TxBody, TxError, TxStatus, Vote,
    VoteKind, U256,
};

const L: u64 = 4;
/// Wei per unit of power.
const UNIT: u64 = keel_types::validator::POWER_UNIT_WEI;

fn params() -> RegistryParams {
    RegistryParams {
        min_stake: U256::from(3 * UNIT),
        max_validators: 8,
        unbonding_epochs: 1,
        epoch_length: L,
    }
}

fn units(n: u64) -> U256 {
    U256::from(n) * U256::from(UNIT)
}

/// A chain whose one genesis validator (key 100, operated by key 101) has 1,000 power.
fn chain(funded: &[&SecretKey]) -> Chain {
    let genesis = GenesisEntry {
        key: key(100).public_key(),
        operator: addr(&key(101)),
        p2p: "127.0.0.1:1".into(),
        stake: units(1_000),
    };
    Chain::with_validators(funded, &[genesis], params())
}

fn send(chain: &mut Chain, k: &SecretKey, op: ValidatorTx) -> Receipt {
    chain.epoch_for_next();
    chain.run(k, 80_000, TxBody::Validator(op))
}

/// Empty blocks up to and including the last block of the current epoch.
fn end_epoch(chain: &mut Chain) {
    loop {
        chain.epoch_for_next();
        chain.block(Vec::new());
        if chain.height.is_multiple_of(L) {
            return;
        }
    }
}

fn register(chain: &mut Chain, operator: &SecretKey, validator: &SecretKey, stake: u64) -> Receipt {
    let message = possession_message(
        crate::common::CHAIN_ID,
        &addr(operator),
        &validator.public_key(),
    );
    let op = ValidatorTx::Register {
        key: validator.public_key(),
        possession: validator.sign(&message.0),
        p2p: "127.0.0.1:2".into(),
        stake: units(stake),
    };
    send(chain, operator, op)
}

fn reason(receipt: &Receipt) -> Option<RegistryError> {
    match receipt.error {
        Some(TxError::Registry { reason }) => Some(reason),
        _ => None,
    }
}

fn record(chain: &Chain, k: &PublicKey) -> Option<keel_types::validator::ValidatorRecord> {
    read_record(&chain.store.latest_view(), k).expect("record")
}

fn set_power(chain: &Chain, k: &PublicKey) -> Option<u64> {
    let epoch = chain.height / L;
    let set = read_epoch_set(&chain.store.latest_view(), epoch)
        .expect("read")
        .expect("a set");
    set.members.iter().find(|m| m.key == *k).map(|m| m.power)
}

#[test]
fn a_registration_enters_the_set_at_the_boundary_and_bad_ones_are_refused() {
    let (op, v, stranger) = (key(1), key(2), key(3));
    let mut chain = chain(&[&op, &stranger]);
    // A possession proof signed for another operator does not verify for this one.
    let message = possession_message(crate::common::CHAIN_ID, &addr(&stranger), &v.public_key());
    let stolen = send(
        &mut chain,
        &op,
        ValidatorTx::Register {
            key: v.public_key(),
            possession: v.sign(&message.0),
            p2p: "127.0.0.1:2".into(),
            stake: units(100),
        },
    );
    assert_eq!(reason(&stolen), Some(RegistryError::BadPossession));
    assert_eq!(stolen.status, TxStatus::Revert, "charged");
    let low = register(&mut chain, &op, &v, 2);
    assert!(matches!(
        reason(&low),
        Some(RegistryError::BelowMinStake { .. })
    ));
    let before = chain.balance(&addr(&op));
    let ok = register(&mut chain, &op, &v, 100);
    assert_eq!(ok.status, TxStatus::Success, "{ok:?}");
    assert_eq!(
        before - chain.balance(&addr(&op)),
        units(100) + U256::from(ok.gas_used)
    );
    assert_eq!(
        reason(&register(&mut chain, &op, &v, 100)),
        Some(RegistryError::AlreadyRegistered)
    );
    // Only the operator may bond it.
    let bond = ValidatorTx::Bond {
        key: v.public_key(),
        amount: units(1),
    };
    assert_eq!(
        reason(&send(&mut chain, &stranger, bond)),
        Some(RegistryError::NotOperator)
    );
    end_epoch(&mut chain);
    assert_eq!(set_power(&chain, &v.public_key()), Some(100));
    assert_eq!(
        record(&chain, &v.public_key()).expect("record").status,
        ValidatorStatus::Active
    );
}

/// The next set is fixed by the epoch's second-to-last block (so the last header commits
/// to it): a registration in the last block enters one boundary later.
#[test]
fn a_registration_in_an_epochs_last_block_waits_a_boundary() {
    let (op, v) = (key(1), key(2));
    let mut chain = chain(&[&op]);
    end_epoch(&mut chain);
    // Empty blocks up to the second-to-last of this epoch: the registration is the last.
    while !(chain.height + 1).is_multiple_of(L) {
        chain.epoch_for_next();
        chain.block(Vec::new());
    }
    let ok = register(&mut chain, &op, &v, 100);
    assert_eq!(ok.status, TxStatus::Success, "{ok:?}");
    assert!(
        chain.height.is_multiple_of(L),
        "registered in the epoch's last block"
    );
    let view = chain.store.latest_view();
    let next = read_epoch_set(&view, chain.height / L)
        .expect("read")
        .expect("the next set, fixed a block before");
    assert!(
        next.members.iter().all(|m| m.key != v.public_key()),
        "not in the set that starts after this block"
    );
    end_epoch(&mut chain);
    assert_eq!(
        set_power(&chain, &v.public_key()),
        Some(100),
        "in the one after"
    );
}

/// Found by review: a rotation onto a key registered meanwhile, or two rotations onto one
/// key, wrote two records under one key — a stake lost and a registry no node could decode.
#[test]
fn rotations_onto_a_taken_key_are_cancelled() {
    let (op1, op2, op3) = (key(1), key(2), key(3));
    let (a, b, target) = (key(10), key(11), key(12));
    let mut chain = chain(&[&op1, &op2, &op3]);
    assert_eq!(register(&mut chain, &op1, &a, 50).status, TxStatus::Success);
    assert_eq!(register(&mut chain, &op3, &b, 60).status, TxStatus::Success);
    let rotate = |op: &SecretKey, from: &SecretKey| {
        let message = possession_message(crate::common::CHAIN_ID, &addr(op), &target.public_key());
        ValidatorTx::Update {
            key: from.public_key(),
            p2p: None,
            rotate: Some((target.public_key(), target.sign(&message.0))),
        }
    };
    end_epoch(&mut chain);
    // In one epoch, both records rotate onto `target`, and then `target` registers itself.
    assert_eq!(
        send(&mut chain, &op1, rotate(&op1, &a)).status,
        TxStatus::Success
    );
    assert_eq!(
        send(&mut chain, &op3, rotate(&op3, &b)).status,
        TxStatus::Success
    );
    let registered = register(&mut chain, &op2, &target, 70);
    assert_eq!(registered.status, TxStatus::Success, "{registered:?}");
    end_epoch(&mut chain);
    let view = chain.store.latest_view();
    let registry = read_registry(&view).expect("the registry decodes");
    let set = read_epoch_set(&view, chain.height / L)
        .expect("the set decodes")
        .expect("set");
    // Every stake is still under its own key: no rotation happened.
    let stakes: Vec<U256> = [&a, &b, &target]
        .iter()
        .map(|k| record(&chain, &k.public_key()).expect("kept").stake)
        .collect();
    assert_eq!(stakes, vec![units(50), units(60), units(70)]);
    assert_eq!(registry.0.len(), 4);
    assert_eq!(set.members.len(), 4);
}

/// Found by review: emptied records stayed forever and filled the registry.
#[test]
fn an_unbonded_validator_is_paid_after_the_unbonding_epochs_and_its_record_goes() {
    let (op, v) = (key(1), key(2));
    let mut chain = chain(&[&op]);
    assert_eq!(register(&mut chain, &op, &v, 100).status, TxStatus::Success);
    end_epoch(&mut chain);
    assert_eq!(set_power(&chain, &v.public_key()), Some(100));
    // What stays bonded must be 0 or at least the minimum.
    let partial = ValidatorTx::Unbond {
        key: v.public_key(),
        amount: units(99),
    };
    assert!(matches!(
        reason(&send(&mut chain, &op, partial)),
        Some(RegistryError::BelowMinStake { .. })
    ));
    let before = chain.balance(&addr(&op));
    let all = send(
        &mut chain,
        &op,
        ValidatorTx::Unbond {
            key: v.public_key(),
            amount: units(100),
        },
    );
    assert_eq!(all.status, TxStatus::Success);
    let fees = U256::from(all.gas_used);
    // Out of the set at the boundary; paid one unbonding epoch later; then gone.
    end_epoch(&mut chain);
    assert_eq!(set_power(&chain, &v.public_key()), None);
    assert_eq!(chain.balance(&addr(&op)), before - fees, "paid too early");
    end_epoch(&mut chain);
    assert_eq!(chain.balance(&addr(&op)), before - fees + units(100));
    assert!(record(&chain, &v.public_key()).is_none());
    let registry = read_registry(&chain.store.latest_view()).expect("registry");
    assert!(!registry.0.contains(&v.public_key()));
}

/// Found by review: a policy's caps and a session key's scope did not reach validator
/// transactions.
#[test]
fn policies_bound_stake_and_session_keys_cannot_touch_validators() {
    use keel_types::policy::{AccountPolicy, PolicyRule};
    let (op, v, session) = (key(1), key(2), key(3));
    let mut chain = chain(&[&op]);
    assert_eq!(register(&mut chain, &op, &v, 100).status, TxStatus::Success);
    let capped = TxBody::SetPolicy {
        account: addr(&op),
        policy: AccountPolicy {
            max_value_per_tx: Some(units(5)),
            ..AccountPolicy::default()
        },
    };
    let gas = capped.policy_gas().expect("gas");
    assert_eq!(chain.run(&op, gas, capped).status, TxStatus::Success);
    let bond = send(
        &mut chain,
        &op,
        ValidatorTx::Bond {
            key: v.public_key(),
            amount: units(6),
        },
    );
    match &bond.error {
        Some(TxError::PolicyDenied { denial }) => assert_eq!(denial.rule, PolicyRule::ValuePerTx),
        other => panic!("not denied: {other:?}"),
    }
    let small = send(
        &mut chain,
        &op,
        ValidatorTx::Bond {
            key: v.public_key(),
            amount: units(5),
        },
    );
    assert_eq!(small.status, TxStatus::Success, "{small:?}");
    // A session key of the operator, with no limits of its own, still may not.
    let add = TxBody::AddSessionKey {
        account: addr(&op),
        key: session.public_key(),
        policy: AccountPolicy::default(),
        expires_at: 1_000,
    };
    let gas = add.policy_gas().expect("gas");
    assert_eq!(chain.run(&op, gas, add).status, TxStatus::Success);
    chain.resync_nonce(&op);
    let leave = keel_types::Transaction {
        chain_id: crate::common::CHAIN_ID,
        sender: keel_types::Sender::Session {
            account: addr(&op),
            key: session.public_key(),
        },
        nonce: chain
            .store
            .latest_view()
            .account(&addr(&op))
            .expect("account")
            .map_or(0, |a| a.nonce),
        gas_limit: 80_000,
        gas_price: chain.gas_price,
        body: TxBody::Validator(ValidatorTx::Leave {
            key: v.public_key(),
        }),
    }
    .sign(&session);
    chain.epoch_for_next();
    let (out, _) = chain.block(vec![leave]);
    match &out.receipts[0].error {
        Some(TxError::PolicyDenied { denial }) => {
            assert_eq!(denial.rule, PolicyRule::SessionKeyScope)
        }
        other => panic!("a session key changed a validator: {other:?}"),
    }
    // And nothing may be sent to the registry's address as a plain transfer.
    let lost = chain.run(
        &op,
        21_000,
        TxBody::Transfer {
            to: REGISTRY_ADDRESS,
            amount: U256::from(1u64),
        },
    );
    assert_eq!(lost.status, TxStatus::Rejected, "{lost:?}");
}

fn vote(chain_id: u64, view: u64, kind: VoteKind, block: u8, k: &SecretKey) -> SignedVote {
    let vote = Vote {
        chain_id,
        epoch: 0,
        view,
        kind,
        block: keel_types::Hash([block; 32]),
    };
    SignedVote {
        signature: k.sign(&vote.signing_hash().0),
        vote,
        signer: 0,
    }
}

#[test]
fn only_real_equivocations_jail_and_a_jailed_key_leaves_the_set_for_good() {
    let (op, reporter, v) = (key(1), key(3), key(2));
    let mut chain = chain(&[&op, &reporter]);
    assert_eq!(register(&mut chain, &op, &v, 100).status, TxStatus::Success);
    end_epoch(&mut chain);
    assert_eq!(set_power(&chain, &v.public_key()), Some(100));
    let id = crate::common::CHAIN_ID;
    let report = |first, second| ValidatorTx::ReportEquivocation {
        key: v.public_key(),
        first,
        second,
    };
    let cases = [
        // Another chain's votes.
        (
            vote(id + 1, 5, VoteKind::Notarize, 1, &v),
            vote(id + 1, 5, VoteKind::Notarize, 2, &v),
        ),
        // Not conflicting: the same block, or two views.
        (
            vote(id, 5, VoteKind::Notarize, 1, &v),
            vote(id, 5, VoteKind::Notarize, 1, &v),
        ),
        (
            vote(id, 5, VoteKind::Notarize, 1, &v),
            vote(id, 6, VoteKind::Notarize, 2, &v),
        ),
        // Signed by someone else.
        (
            vote(id, 5, VoteKind::Notarize, 1, &v),
            vote(id, 5, VoteKind::Notarize, 2, &op),
        ),
    ];
    for (first, second) in cases {
        let r = send(&mut chain, &reporter, report(first, second));
        assert_eq!(reason(&r), Some(RegistryError::NotEquivocation), "{r:?}");
    }
    let real = report(
        vote(id, 5, VoteKind::Finalize, 1, &v),
        vote(id, 5, VoteKind::Nullify, 0, &v),
    );
    assert_eq!(
        send(&mut chain, &reporter, real.clone()).status,
        TxStatus::Success
    );
    assert_eq!(
        reason(&send(&mut chain, &reporter, real)),
        Some(RegistryError::Jailed)
    );
    end_epoch(&mut chain);
    assert_eq!(set_power(&chain, &v.public_key()), None, "jailed, and out");
    // Its stake can come back; the key stays a tombstone and may never register again.
    let all = ValidatorTx::Unbond {
        key: v.public_key(),
        amount: units(100),
    };
    assert_eq!(send(&mut chain, &op, all).status, TxStatus::Success);
    end_epoch(&mut chain);
    end_epoch(&mut chain);
    let tomb = record(&chain, &v.public_key()).expect("a tombstone");
    assert_eq!(
        (tomb.status, tomb.stake),
        (ValidatorStatus::Jailed, U256::ZERO)
    );
    assert!(!read_registry(&chain.store.latest_view())
        .expect("registry")
        .0
        .contains(&v.public_key()));
    assert_eq!(
        reason(&register(&mut chain, &op, &v, 100)),
        Some(RegistryError::AlreadyRegistered)
    );
}

/// A WASM contract that `static_call`s the registry address with its input and returns the
/// output (or reverts with it).
const WASM_PROXY: &str = r#"(module
  (import "keel" "read_input" (func $read_input (param i32)))
  (import "keel" "static_call" (func $static_call (param i32 i32 i32 i64) (result i32)))
  (import "keel" "return_data_size" (func $rds (result i32)))
  (import "keel" "return_data_copy" (func $rdc (param i32 i32 i32)))
  (import "keel" "return_data" (func $ret (param i32 i32)))
  (import "keel" "revert" (func $revert (param i32 i32)))
  (memory (export "memory") 1 1)
  (data (i32.const 0) "\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\90\12")
  (func (export "call") (param $len i32) (result i32)
    (local $failed i32)
    (call $read_input (i32.const 64))
    (local.set $failed
      (call $static_call (i32.const 0) (i32.const 64) (local.get $len) (i64.const 0)))
    (call $rdc (i32.const 1024) (i32.const 0) (call $rds))
    (if (local.get $failed) (then (call $revert (i32.const 1024) (call $rds))))
    (call $ret (i32.const 1024) (call $rds))
    (i32.const 0)))"#;

/// Issue 21 item 1: contracts read the registry through the read-only precompile at
/// `REGISTRY_ADDRESS` — from the EVM (STATICCALL, CALL) and from WASM (`static_call`) —
/// and nothing they do can write it: a call that sends value reverts (the value stays with
/// the caller), unknown selectors and indexes past the end revert.
#[test]
fn contracts_read_the_registry_and_cannot_write_it() {
    let (op, v) = (key(1), key(2));
    let mut chain = chain(&[&op]);
    assert_eq!(register(&mut chain, &op, &v, 5).status, TxStatus::Success);
    let proxies = [
        chain.deploy(
            &op,
            Env::Evm,
            creation(&evm_proxy(&REGISTRY_ADDRESS, true)),
            Vec::new(),
        ),
        chain.deploy(
            &op,
            Env::Evm,
            creation(&evm_proxy(&REGISTRY_ADDRESS, false)),
            Vec::new(),
        ),
        chain.deploy(
            &op,
            Env::Wasm,
            wat::parse_str(WASM_PROXY).expect("wat"),
            Vec::new(),
        ),
    ];
    let mut keys = [key(100).public_key().0, v.public_key().0];
    keys.sort();
    for proxy in proxies {
        let read = |chain: &mut Chain, data: Vec<u8>| {
            let r = chain.call(&op, proxy, data);
            (r.status, r.output)
        };
        let (status, out) = read(
            &mut chain,
            abi::call("getValidator(bytes32)", &[v.public_key().0]),
        );
        assert_eq!(status, TxStatus::Success, "{proxy}");
        assert_eq!(out.len(), 192);
        assert_eq!(out[31], 1, "registered");
        assert_eq!(&out[44..64], &addr(&op).0, "operator");
        assert_eq!(U256::from_be_slice(&out[64..96]), units(5), "stake");
        let stored = record(&chain, &v.public_key()).expect("record");
        assert_eq!(out[127], stored.status as u8, "status");
        assert_eq!(abi::word(&out[128..160]), U256::from(stored.changed_epoch));
        assert_eq!(&out[160..192], &[0u8; 32], "no rotation");
        let (_, genesis) = read(
            &mut chain,
            abi::call("getValidator(bytes32)", &[key(100).public_key().0]),
        );
        assert_eq!(genesis[127], ValidatorStatus::Active as u8);
        assert_eq!(U256::from_be_slice(&genesis[64..96]), units(1_000));
        let (_, stranger) = read(
            &mut chain,
            abi::call("getValidator(bytes32)", &[key(7).public_key().0]),
        );
        assert_eq!(stranger, vec![0u8; 192], "an unknown key reads as zeros");
        let (_, count) = read(&mut chain, abi::call("validatorCount()", &[]));
        assert_eq!(count, abi::u(2).to_vec());
        for (i, k) in keys.iter().enumerate() {
            let (status, at) = read(
                &mut chain,
                abi::call("validatorAt(uint256)", &[abi::u(i as u64)]),
            );
            assert_eq!((status, at), (TxStatus::Success, k.to_vec()));
        }
        for data in [
            abi::call("validatorAt(uint256)", &[abi::u(2)]),
            abi::call("setValidator(bytes32)", &[v.public_key().0]),
            vec![1, 2],
        ] {
            assert_eq!(read(&mut chain, data).0, TxStatus::Revert, "{proxy}");
        }
    }
    // Value sent on to the registry reverts, and stays with the sender.
    let before = chain.balance(&addr(&op));
    let r = chain.run(
        &op,
        200_000,
        TxBody::Call {
            to: proxies[1],
            data: abi::call("validatorCount()", &[]),
            value: U256::from(1_000u64),
        },
    );
    assert_eq!(r.status, TxStatus::Revert, "{r:?}");
    let fee = U256::from(r.gas_used) * U256::from(crate::common::GAS_PRICE);
    assert_eq!(chain.balance(&addr(&op)), before - fee);
    assert_eq!(chain.balance(&REGISTRY_ADDRESS), U256::ZERO);
    // Reading changed nothing.
    assert_eq!(
        record(&chain, &v.public_key()).map(|r| r.stake),
        Some(units(5))
    );
    // A read is not free: answered, it costs at least the precompile's gas more than a call
    // the precompile refuses at once (junk input, no key list read).
    let paid = chain.call(&op, proxies[1], abi::call("validatorCount()", &[]));
    let refused = chain.call(&op, proxies[1], vec![1, 2]);
    assert_eq!(paid.status, TxStatus::Success);
    assert!(
        paid.gas_used >= refused.gas_used + 2 * keel_runtime::registry_read::REGISTRY_KEY_GAS,
        "{} vs {}",
        paid.gas_used,
        refused.gas_used
    );

    // In one block, a registration and then a read that must see it: serial and parallel
    // execution agree (`Chain::execute` runs the block at every thread count).
    let v2 = key(3);
    let message = possession_message(crate::common::CHAIN_ID, &addr(&op), &v2.public_key());
    let register = ValidatorTx::Register {
        key: v2.public_key(),
        possession: v2.sign(&message.0),
        p2p: "127.0.0.1:3".into(),
        stake: units(4),
    };
    let txs = vec![
        chain.tx(&op, 80_000, TxBody::Validator(register)),
        chain.tx(
            &op,
            200_000,
            TxBody::Call {
                to: proxies[2],
                data: abi::call("validatorCount()", &[]),
                value: U256::ZERO,
            },
        ),
    ];
    let (output, _) = chain.block(txs);
    assert_eq!(output.receipts[0].status, TxStatus::Success, "{output:?}");
    assert_eq!(output.receipts[1].output, abi::u(3).to_vec(), "{output:?}");
}

/// The registry holds at most `MAX_REGISTERED_VALIDATORS` keys: one more registration is
/// refused with `registry_full` (charged, its stake kept by the operator), and a slot frees
/// once a record is gone (left, unbonded, paid).
#[test]
fn a_full_registry_refuses_a_registration_until_a_record_goes() {
    use keel_types::validator::MAX_REGISTERED_VALIDATORS;
    // Four operators, as stake for a thousand registrations is more than one test account
    // holds; `op` registers the first 128 (and the last).
    let operators = [key(1), key(2), key(3), key(4)];
    let op = operators[0].clone();
    let mut chain = chain(&operators.iter().collect::<Vec<_>>());
    let validator = |i: usize| {
        let mut seed = [0x5a; 32];
        seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
        SecretKey::from_seed(seed)
    };
    let registration = |chain: &mut Chain, op: &SecretKey, v: &SecretKey| {
        let message = possession_message(crate::common::CHAIN_ID, &addr(op), &v.public_key());
        let body = TxBody::Validator(ValidatorTx::Register {
            key: v.public_key(),
            possession: v.sign(&message.0),
            p2p: "127.0.0.1:2".into(),
            stake: units(3),
        });
        chain.tx(op, 80_000, body)
    };
    // The genesis validator holds one slot; fill the rest, 128 registrations a block.
    let keys: Vec<SecretKey> = (0..MAX_REGISTERED_VALIDATORS - 1).map(validator).collect();
    for (i, batch) in keys.chunks(128).enumerate() {
        let op = &operators[i % operators.len()];
        let txs: Vec<_> = batch
            .iter()
            .map(|v| registration(&mut chain, op, v))
            .collect();
        chain.epoch_for_next();
        let (output, _) = chain.block(txs);
        assert!(
            output
                .receipts
                .iter()
                .all(|r| r.status == TxStatus::Success),
            "{:?}",
            output
                .receipts
                .iter()
                .find(|r| r.status != TxStatus::Success)
        );
    }
    let registry = read_registry(&chain.store.latest_view()).expect("registry");
    assert_eq!(registry.0.len(), MAX_REGISTERED_VALIDATORS);
    let one_more = validator(MAX_REGISTERED_VALIDATORS);
    let before = chain.balance(&addr(&op));
    let refused = register(&mut chain, &op, &one_more, 3);
    assert_eq!(reason(&refused), Some(RegistryError::RegistryFull));
    assert_eq!(refused.status, TxStatus::Revert, "charged");
    assert_eq!(
        chain.balance(&addr(&op)),
        before - U256::from(refused.gas_used),
        "the stake stays with the operator"
    );
    assert!(record(&chain, &one_more.public_key()).is_none());
    // One candidate leaves: its stake unbonds, is paid, and its record goes — a free slot.
    let left = send(
        &mut chain,
        &op,
        ValidatorTx::Leave {
            key: keys[0].public_key(),
        },
    );
    assert_eq!(left.status, TxStatus::Success, "{left:?}");
    for _ in 0..4 {
        end_epoch(&mut chain);
    }
    assert!(record(&chain, &keys[0].public_key()).is_none());
    let admitted = register(&mut chain, &op, &one_more, 3);
    assert_eq!(admitted.status, TxStatus::Success, "{admitted:?}");
    let registry = read_registry(&chain.store.latest_view()).expect("registry");
    assert_eq!(registry.0.len(), MAX_REGISTERED_VALIDATORS);
}
