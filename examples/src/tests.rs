//! The examples on the SDK's native test VM: the behaviour their Solidity twins have, down
//! to revert data, logs and rollback across nested calls.

extern crate std;

use crate::amm::Amm;
use crate::registry::Registry;
use crate::router::{IToken, Router};
use crate::token::{InsufficientBalance, Token, Transfer};
use keel_sdk::abi::{encode_call, AbiReturn, Encode};
use keel_sdk::keccak::selector_of;
use keel_sdk::revert::SolError;
use keel_sdk::testvm::TestVm;
use keel_sdk::{Address, Revert, U256};
use std::vec::Vec;

const ALICE: Address = Address([0xa1; 20]);
const BOB: Address = Address([0xb0; 20]);

fn u(v: u64) -> U256 {
    U256::from_u64(v)
}

fn call(sig: &str, args: &[&dyn Encode]) -> Vec<u8> {
    encode_call(selector_of(sig), args)
}

fn word(out: &[u8]) -> U256 {
    U256::decode_return(out).expect("a uint256")
}

fn token(vm: &TestVm, supply: u64) -> Address {
    vm.deploy::<Token>(ALICE, &u(supply).encode_return())
        .expect("deploy")
}

#[test]
fn token_moves_balances_logs_and_reverts_like_solidity() {
    let vm = TestVm::new();
    let t = token(&vm, 1_000);
    assert_eq!(
        vm.logs()[0].topics[0],
        Transfer::TOPIC,
        "the constructor logs the mint"
    );
    let out = vm
        .call(
            ALICE,
            t,
            U256::ZERO,
            &call("transfer(address,uint256)", &[&BOB, &u(400)]),
        )
        .expect("transfer");
    assert_eq!(word(&out), U256::ONE, "returns true");
    let balance = |who: Address| {
        word(
            &vm.call(who, t, U256::ZERO, &call("balanceOf(address)", &[&who]))
                .expect("balanceOf"),
        )
    };
    assert_eq!((balance(ALICE), balance(BOB)), (u(600), u(400)));

    // Too much: InsufficientBalance(available, required), nothing changes, no log.
    let logs_before = vm.logs().len();
    let err = vm
        .call(
            BOB,
            t,
            U256::ZERO,
            &call("transfer(address,uint256)", &[&ALICE, &u(401)]),
        )
        .expect_err("over balance");
    let expected: Revert = InsufficientBalance {
        available: u(400),
        required: u(401),
    }
    .into();
    assert_eq!(err, expected);
    assert_eq!(err.0[..4], InsufficientBalance::SELECTOR);
    assert_eq!(vm.logs().len(), logs_before);
    assert_eq!(balance(BOB), u(400));

    // solc's empty reverts: short calldata, unknown selector, dirty address, value sent.
    let mut dirty = call("transfer(address,uint256)", &[&BOB, &u(1)]);
    dirty[4] = 1;
    for input in [
        Vec::from(&call("transfer(address,uint256)", &[&BOB])[..]),
        call("mint(uint256)", &[&u(1)]),
        dirty,
        Vec::from(&[0xa9u8, 0x05][..]),
    ] {
        assert_eq!(vm.call(ALICE, t, U256::ZERO, &input), Err(Revert::empty()));
    }
    vm.set_balance(ALICE, u(10));
    assert_eq!(
        vm.call(ALICE, t, u(1), &call("totalSupply()", &[])),
        Err(Revert::empty()),
        "non-payable"
    );
    assert_eq!(vm.balance(ALICE), u(10), "the value came back");
    assert!(vm.last_gas_used() > 0);
}

#[test]
fn allowances_and_transfer_from() {
    let vm = TestVm::new();
    let t = token(&vm, 100);
    vm.call(
        ALICE,
        t,
        U256::ZERO,
        &call("approve(address,uint256)", &[&BOB, &u(30)]),
    )
    .expect("approve");
    let err = vm
        .call(
            BOB,
            t,
            U256::ZERO,
            &call(
                "transferFrom(address,address,uint256)",
                &[&ALICE, &BOB, &u(31)],
            ),
        )
        .expect_err("over allowance");
    assert_eq!(
        err.0[..4],
        selector_of("InsufficientAllowance(uint256,uint256)")
    );
    vm.call(
        BOB,
        t,
        U256::ZERO,
        &call(
            "transferFrom(address,address,uint256)",
            &[&ALICE, &BOB, &u(30)],
        ),
    )
    .expect("within allowance");
    let left = vm
        .call(
            BOB,
            t,
            U256::ZERO,
            &call("allowance(address,address)", &[&ALICE, &BOB]),
        )
        .expect("allowance");
    assert_eq!(word(&left), U256::ZERO);
}

#[test]
fn router_bubbles_records_or_rolls_back_the_inner_call() {
    let vm = TestVm::new();
    let t = token(&vm, 1_000);
    let r = vm.deploy::<Router>(ALICE, &[]).expect("router");
    vm.call(
        ALICE,
        t,
        U256::ZERO,
        &call("transfer(address,uint256)", &[&r, &u(50)]),
    )
    .expect("fund router");
    let relay = |amount: u64, mode: u64| {
        vm.call(
            ALICE,
            r,
            U256::ZERO,
            &call(
                "relay(address,address,uint256,uint256)",
                &[&t, &BOB, &u(amount), &u(mode)],
            ),
        )
    };
    // Typed view calls from a test, as BOB.
    let bob_balance = || vm.as_caller(BOB, || IToken::at(t).balanceOf(BOB).expect("view"));

    relay(10, 1).expect("mode 1 succeeds");
    assert_eq!(bob_balance(), u(10));
    // Mode 0 bubbles the token's revert data unchanged; the router's counter rolls back.
    let err = relay(1_000, 0).expect_err("bubbles");
    assert_eq!(err.0[..4], InsufficientBalance::SELECTOR);
    // Mode 1 records the failure and succeeds.
    relay(1_000, 1).expect("records");
    let last_ok = vm
        .call(ALICE, r, U256::ZERO, &call("lastOk()", &[]))
        .expect("lastOk");
    assert_eq!(word(&last_ok), U256::ZERO);
    // Mode 2 reverts with Error("router: mode 2") after the transfer succeeded: the
    // transfer is undone too.
    let err = relay(5, 2).expect_err("mode 2");
    assert_eq!(err, Revert::message("router: mode 2"));
    assert_eq!(bob_balance(), u(10));
    let relays = vm
        .call(ALICE, r, U256::ZERO, &call("relays()", &[]))
        .expect("relays");
    assert_eq!(word(&relays), u(2), "only the two successful relays count");
}

#[test]
fn amm_prices_and_bounds_like_solidity() {
    let vm = TestVm::new();
    let a = vm.deploy::<Amm>(ALICE, &[]).expect("amm");
    let add = |a0: u64, a1: u64| {
        vm.call(
            ALICE,
            a,
            U256::ZERO,
            &call("addLiquidity(uint256,uint256)", &[&u(a0), &u(a1)]),
        )
    };
    let swap = |dir: u64, amount: u64, min: u64| {
        vm.call(
            BOB,
            a,
            U256::ZERO,
            &call(
                "swap(uint256,uint256,uint256)",
                &[&u(dir), &u(amount), &u(min)],
            ),
        )
    };
    assert_eq!(
        swap(1, 10, 0).expect_err("empty").0,
        selector_of("EmptyPool()").to_vec()
    );
    add(4_000_000, 6_000_000).expect("liquidity");
    assert_eq!(
        add(1 << 25, 1).expect_err("too large").0,
        selector_of("TooLarge()").to_vec()
    );
    // out = 1000·997·6e6 / (4e6·1000 + 1000·997) = 1495
    let out = swap(1, 1_000, 0).expect("swap");
    assert_eq!(word(&out), u(1_495));
    let err = swap(1, 1_000, 10_000).expect_err("slippage");
    assert_eq!(err.0[..4], selector_of("Slippage(uint256,uint256)"));
}

#[test]
fn registry_counts_live_keys_and_checks_overflow() {
    let vm = TestVm::new();
    let g = vm.deploy::<Registry>(ALICE, &[]).expect("registry");
    let count = || {
        word(
            &vm.call(ALICE, g, U256::ZERO, &call("count()", &[]))
                .expect("count"),
        )
    };
    vm.call(
        ALICE,
        g,
        U256::ZERO,
        &call("setRange(uint256,uint256,uint256)", &[&u(5), &u(4), &u(9)]),
    )
    .expect("range");
    assert_eq!(count(), u(4));
    vm.call(
        ALICE,
        g,
        U256::ZERO,
        &call("set(uint256,uint256)", &[&u(6), &U256::ZERO]),
    )
    .expect("clear one");
    assert_eq!(count(), u(3));
    let err = vm
        .call(
            ALICE,
            g,
            U256::ZERO,
            &call(
                "setRange(uint256,uint256,uint256)",
                &[&U256::MAX, &u(2), &u(1)],
            ),
        )
        .expect_err("start + 1 overflows");
    assert_eq!(err, Revert::panic(0x11));
    assert_eq!(count(), u(3), "the first write of the range rolled back");
    let err = vm
        .call(
            ALICE,
            g,
            U256::ZERO,
            &call("setRange(uint256,uint256,uint256)", &[&u(0), &u(33), &u(1)]),
        )
        .expect_err("too many");
    assert_eq!(err.0, crate::registry::TooMany { n: u(33) }.encode());
}
