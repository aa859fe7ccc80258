//! Where an account's policy spending lives: in its own account record, which every path
//! that writes the record must keep. The adversary is the account itself (or a friend): were
//! a payment to the account to rewrite its record without the spending, a budget would start
//! over whenever someone sent it one wei.

use crate::common::{addr, key, Chain};
use keel_state::StateViewExt;
use keel_types::policy::{AccountPolicy, PolicyRule};
use keel_types::{Address, Receipt, TxBody, TxError, TxStatus, U256};

fn pay(to: Address, amount: u64) -> TxBody {
    TxBody::Transfer {
        to,
        amount: U256::from(amount),
    }
}

fn denied_by(receipt: &Receipt) -> Option<(PolicyRule, U256)> {
    match &receipt.error {
        Some(TxError::PolicyDenied { denial }) => Some((denial.rule, denial.used)),
        _ => None,
    }
}

/// An agent capped at 100 per epoch sends 60, is paid by a friend (a transfer the EVM runs,
/// whose diff rewrites the agent's record), and still cannot send 50 more: in the same block
/// as the payment, in the next block, serially and on two threads.
#[test]
fn a_payment_to_a_policed_account_does_not_reset_its_budget() {
    let (agent, friend) = (key(1), key(2));
    let mut chain = Chain::new(&[&agent, &friend]);
    let me = addr(&agent);
    let policy = AccountPolicy {
        max_value_per_epoch: Some(U256::from(100u64)),
        ..AccountPolicy::default()
    };
    let body = TxBody::SetPolicy {
        account: me,
        policy,
    };
    let gas = body.policy_gas().expect("a policy change");
    assert_eq!(chain.run(&agent, gas, body).status, TxStatus::Success);
    let payee = Address([0x77; 20]);
    assert_eq!(
        chain.run(&agent, 21_000, pay(payee, 60)).status,
        TxStatus::Success
    );
    let spent = |chain: &Chain| {
        let record = chain.store.latest_view().account(&me).expect("read");
        record.and_then(|r| r.policy_spend).map(|s| s.value)
    };
    assert_eq!(spent(&chain), Some(U256::from(60u64)));

    // The payment and the over-budget transfer in one block, on one thread and on two.
    let txs = vec![
        chain.tx(&friend, 21_000, pay(me, 1_000)),
        chain.tx(&agent, 21_000, pay(payee, 50)),
    ];
    let block = chain.make_block(txs);
    for threads in [1, 2] {
        let runtime = chain.runtime_with_threads(threads);
        let out = chain.execute_on(&runtime, &block);
        assert_eq!(
            out.receipts[0].status,
            TxStatus::Success,
            "{threads} threads"
        );
        assert_eq!(
            denied_by(&out.receipts[1]),
            Some((PolicyRule::ValuePerEpoch, U256::from(110u64))),
            "{threads} threads"
        );
    }
    let out = chain.execute(&block);
    chain.commit(&block, &out);
    chain.resync_nonce(&agent);
    assert_eq!(
        spent(&chain),
        Some(U256::from(60u64)),
        "kept by the payment"
    );
    assert!(chain.balance(&me) > U256::from(1_000u64));

    // And in a later block of the same epoch.
    let r = chain.run(&agent, 21_000, pay(payee, 50));
    assert_eq!(
        denied_by(&r),
        Some((PolicyRule::ValuePerEpoch, U256::from(110u64)))
    );
    chain.resync_nonce(&agent);
    assert_eq!(
        chain.run(&agent, 21_000, pay(payee, 40)).status,
        TxStatus::Success
    );
    assert_eq!(spent(&chain), Some(U256::from(100u64)));

    // The agent proposes a block of the friend's transfers: their fees are credited to its
    // record (deferred and credited once on two threads, at once serially), which keeps the
    // spending too.
    let before = chain.balance(&me);
    let proposer = std::mem::replace(&mut chain.proposer, agent.clone());
    let txs = (0..3)
        .map(|_| chain.tx(&friend, 21_000, pay(payee, 1)))
        .collect();
    let block = chain.make_block(txs);
    for threads in [1, 2] {
        let runtime = chain.runtime_with_threads(threads);
        let out = chain.execute_on(&runtime, &block);
        assert!(out.receipts.iter().all(|r| r.status == TxStatus::Success));
    }
    let out = chain.execute(&block);
    chain.commit(&block, &out);
    chain.proposer = proposer;
    assert!(chain.balance(&me) > before, "the fees were credited");
    assert_eq!(
        spent(&chain),
        Some(U256::from(100u64)),
        "kept by the credit"
    );
    let r = chain.run(&agent, 21_000, pay(payee, 1));
    assert_eq!(
        denied_by(&r),
        Some((PolicyRule::ValuePerEpoch, U256::from(101u64)))
    );
}

/// The spending now lives in an entry that expires. An expired account with a policy still
/// gets its decision explained (what `keel_simulate` shows beside the refusal), with nothing
/// used this epoch, where reading the spending itself says "expired" (`keel_getPolicy` marks
/// the account so).
#[test]
fn an_expired_account_still_has_its_policy_explained() {
    use keel_state::{Entry, StateError, StateView};
    use keel_types::policy::PolicyRecord;
    use keel_types::{Canonical, StateKey};
    struct Expired(Address, Vec<u8>);
    impl StateView for Expired {
        fn entry(&self, key: &StateKey) -> Result<Option<Entry>, StateError> {
            Ok(match key {
                StateKey::Account(a) if *a == self.0 => Some(Entry::Expired { epoch: 1, leaf: 0 }),
                StateKey::Policy(a) if *a == self.0 => Some(Entry::Live {
                    touched_epoch: 0,
                    value: self.1.clone(),
                }),
                _ => None,
            })
        }
        fn storage_entries(&self, _: &Address) -> Result<u64, StateError> {
            Ok(0)
        }
    }
    let agent = key(1);
    let mut chain = Chain::new(&[&agent]);
    let me = addr(&agent);
    let record = PolicyRecord {
        controller: None,
        policy: AccountPolicy {
            max_value_per_epoch: Some(U256::from(100u64)),
            ..AccountPolicy::default()
        },
        source: me,
        changed_at: 1,
    };
    let view = Expired(me, record.encode());
    let at = keel_runtime::policy::At {
        height: 50,
        epoch: 5,
    };
    let tx = chain.tx(&agent, 21_000, pay(Address([0x77; 20]), 150));
    let decision =
        keel_runtime::policy::explain(&view, &tx.tx, at, Default::default()).expect("explained");
    assert_eq!(decision.spend.value, U256::ZERO);
    assert_eq!(
        decision.denial.map(|d| (d.rule, d.used)),
        Some((PolicyRule::ValuePerEpoch, U256::from(150u64)))
    );
    assert!(matches!(
        keel_runtime::policy::read_spend(&view, &me, 5),
        Err(StateError::Expired { .. })
    ));
}
