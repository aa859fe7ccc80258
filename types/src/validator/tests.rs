//! The reconfiguration rule against its documented bounds, including sets an adversary
//! shapes: any registry, any current set.

use super::*;
use proptest::prelude::*;

fn key(i: u8) -> PublicKey {
    crate::SecretKey::from_seed([i; 32]).public_key()
}

fn record(stake_units: u64, status: ValidatorStatus) -> ValidatorRecord {
    ValidatorRecord {
        operator: Address([7; 20]),
        possession: Signature([0; 64]),
        p2p: "127.0.0.1:1".into(),
        stake: U256::from(stake_units) * U256::from(POWER_UNIT_WEI),
        status,
        changed_epoch: 0,
        unbonding: Vec::new(),
        next_key: None,
    }
}

fn set(members: &[(u8, u64)]) -> EpochSet {
    EpochSet {
        epoch: 4,
        members: members
            .iter()
            .map(|(i, p)| EpochMember {
                key: key(*i),
                power: *p,
                operator: Address([7; 20]),
                p2p: "127.0.0.1:1".into(),
            })
            .collect(),
    }
}

fn params(max_validators: usize) -> RegistryParams {
    RegistryParams {
        min_stake: U256::from(3u64) * U256::from(POWER_UNIT_WEI),
        max_validators,
        unbonding_epochs: 2,
        epoch_length: 10,
    }
}

fn run(current: &EpochSet, records: &[(u8, ValidatorRecord)], max: usize) -> EpochSet {
    let refs: Vec<(PublicKey, PublicKey, &ValidatorRecord)> = records
        .iter()
        .map(|(i, r)| (key(*i), r.next_key.unwrap_or(key(*i)), r))
        .collect();
    next_set(current, &refs, &params(max))
}

fn change(a: &EpochSet, b: &EpochSet) -> u128 {
    let mut all: BTreeMap<PublicKey, (u64, u64)> = BTreeMap::new();
    for m in &a.members {
        all.entry(m.key).or_default().0 = m.power;
    }
    for m in &b.members {
        all.entry(m.key).or_default().1 = m.power;
    }
    all.values().map(|(x, y)| u128::from(x.abs_diff(*y))).sum()
}

#[test]
fn a_newcomer_enters_within_the_budget_and_catches_up_later() {
    let current = set(&[(1, 10), (2, 10), (3, 10)]);
    let records = [
        (1, record(10, ValidatorStatus::Active)),
        (2, record(10, ValidatorStatus::Active)),
        (3, record(10, ValidatorStatus::Active)),
        (4, record(25, ValidatorStatus::Candidate)),
    ];
    let next = run(&current, &records, 8);
    assert_eq!(next.epoch, 5);
    // Budget 30 / 3 = 10: the newcomer gets 10 of its 25 now.
    assert_eq!(next.powers(), vec![10, 10, 10, 10]);
    assert_eq!(next.members[3].key, key(4));
    let later = run(&next, &records, 8);
    assert_eq!(later.powers(), vec![10, 10, 10, 23]);
    let last = run(&later, &records, 8);
    assert_eq!(last.powers(), vec![10, 10, 10, 25]);
}

#[test]
fn jailed_and_leaving_go_first_and_the_set_never_empties() {
    let current = set(&[(1, 9), (2, 9), (3, 9), (4, 3)]);
    let records = [
        (1, record(9, ValidatorStatus::Active)),
        (2, record(9, ValidatorStatus::Leaving)),
        (3, record(9, ValidatorStatus::Active)),
        (4, record(3, ValidatorStatus::Jailed)),
    ];
    // Budget 10: the jailed one's 3 first, then 7 of the leaving one's 9.
    let next = run(&current, &records, 8);
    assert_eq!(next.powers(), vec![9, 2, 9]);
    assert!(next.members.iter().all(|m| m.key != key(4)));
    let everyone_leaves = [
        (1, record(9, ValidatorStatus::Leaving)),
        (2, record(9, ValidatorStatus::Leaving)),
    ];
    let small = set(&[(1, 1), (2, 1)]);
    let next = run(&small, &everyone_leaves, 8);
    assert_eq!(next.members.len(), 1, "{next:?}");
    let alone = run(&next, &everyone_leaves, 8);
    assert_eq!(alone.members, next.members, "the last member stays");
}

#[test]
fn below_min_stake_and_beyond_the_cap_have_no_power() {
    let current = set(&[(1, 10), (2, 10), (3, 10)]);
    let records = [
        (1, record(10, ValidatorStatus::Active)),
        (2, record(10, ValidatorStatus::Active)),
        (3, record(10, ValidatorStatus::Active)),
        (4, record(2, ValidatorStatus::Candidate)),
        (5, record(12, ValidatorStatus::Candidate)),
    ];
    // Cap 3: the 12-stake newcomer displaces one of the tens (key order breaks the tie:
    // the largest key of the three goes), in steps within the budget.
    let mut s = current;
    for _ in 0..4 {
        s = run(&s, &records, 3);
        assert!(s.members.len() <= 3 || s.members.iter().any(|m| m.key == key(3)));
    }
    let keys: BTreeSet<PublicKey> = s.keys().into_iter().collect();
    assert!(keys.contains(&key(5)) && !keys.contains(&key(4)), "{s:?}");
    assert_eq!(s.members.len(), 3);
}

#[test]
fn a_rotation_keeps_position_and_power() {
    let current = set(&[(1, 10), (2, 10), (3, 10)]);
    let mut rotated = record(10, ValidatorStatus::Active);
    rotated.next_key = Some(key(9));
    let records = [
        (1, record(10, ValidatorStatus::Active)),
        (2, rotated),
        (3, record(10, ValidatorStatus::Active)),
    ];
    let next = run(&current, &records, 8);
    assert_eq!(next.keys(), vec![key(1), key(9), key(3)]);
    assert_eq!(next.powers(), vec![10, 10, 10]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the registry says: the change is within a third of the current power, the
    /// set is well formed and within the cap (or unchanged), and the rule is a function.
    #[test]
    fn the_rule_keeps_its_bounds(
        current in prop::collection::vec((0u8..24, 1u64..1_000), 1..10),
        registry in prop::collection::vec((0u8..24, 0u64..2_000, 0u8..4), 0..24),
        max in 1usize..8,
    ) {
        let mut seen = BTreeSet::new();
        let current: Vec<(u8, u64)> = current.into_iter().filter(|(i, _)| seen.insert(*i)).collect();
        let current = set(&current);
        let mut seen = BTreeSet::new();
        let records: Vec<(u8, ValidatorRecord)> = registry
            .into_iter()
            .filter(|(i, _, _)| seen.insert(*i))
            .map(|(i, stake, s)| {
                let status = [
                    ValidatorStatus::Candidate,
                    ValidatorStatus::Active,
                    ValidatorStatus::Leaving,
                    ValidatorStatus::Jailed,
                ][usize::from(s)];
                (i, record(stake, status))
            })
            .collect();
        let next = run(&current, &records, max);
        prop_assert!(change(&current, &next) <= (current.total_power() / 3).max(1));
        prop_assert!(next.validate().is_ok(), "{:?}", next);
        let grew = next.members.iter().filter(|m| !current.members.iter().any(|c| c.key == m.key)).count();
        prop_assert!(grew == 0 || next.members.len() <= max);
        prop_assert_eq!(next.clone(), run(&current, &records, max));
    }
}

/// A hostile transaction's p2p address is bounded at decode: a long one is refused with a
/// typed error before anything reads it.
#[test]
fn a_long_p2p_address_is_refused_at_decode() {
    let tx = |p2p: String| crate::Transaction {
        chain_id: 1,
        sender: key(1).into(),
        nonce: 0,
        gas_limit: 80_000,
        gas_price: 1,
        body: crate::TxBody::Validator(ValidatorTx::Update {
            key: key(2),
            p2p: Some(p2p),
            rotate: None,
        }),
    };
    let ok = tx("x".repeat(MAX_P2P_ADDRESS_BYTES));
    assert!(crate::Transaction::decode(&ok.encode()).is_ok());
    let long = tx("x".repeat(MAX_P2P_ADDRESS_BYTES + 1));
    assert!(matches!(
        crate::Transaction::decode(&long.encode()),
        Err(DecodeError::FieldTooLarge { field: "p2p", .. })
    ));
}
