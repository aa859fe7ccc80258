//! The ERC-20-style token, deployed from Solidity (EVM) and from C (WASM), driven through the
//! runtime with the same transactions: same outputs, revert data, storage slots and logs.

use crate::common;

use common::{abi, addr, artifact, key, Chain};
use keel_types::{Address, Env, Receipt, TxError, TxStatus, U256};

const SUPPLY: u64 = 1_000_000;
const TRANSFER: &str = "Transfer(address,address,uint256)";
const APPROVAL: &str = "Approval(address,address,uint256)";

fn topic(signature: &str) -> [u8; 32] {
    keel_exec_wasm::keccak256(signature.as_bytes())
}

/// Slot of `balanceOf[owner]` (mapping at slot 0), as solc lays it out.
fn balance_slot(owner: &Address) -> [u8; 32] {
    keel_exec_wasm::keccak256(&[abi::address(owner), abi::u(0)].concat())
}

fn allowance_slot(owner: &Address, spender: &Address) -> [u8; 32] {
    let inner = keel_exec_wasm::keccak256(&[abi::address(owner), abi::u(1)].concat());
    keel_exec_wasm::keccak256(&[abi::address(spender), inner].concat())
}

fn token_code(env: Env) -> Vec<u8> {
    match env {
        Env::Evm => artifact("Token.bin"),
        Env::Wasm => artifact("token.wasm"),
    }
}

/// A log with its address reduced to "from the token or not".
type LogShape = (bool, Vec<[u8; 32]>, Vec<u8>);
type Shape = (TxStatus, Option<TxError>, Vec<u8>, Vec<LogShape>);

/// What a transaction did, with the contract address blanked so two deployments compare.
fn shape(r: &Receipt, token: &Address) -> Shape {
    let logs = r
        .logs
        .iter()
        .map(|l| (l.address == *token, l.topics.clone(), l.data.clone()))
        .collect();
    (r.status, r.error.clone(), r.output.clone(), logs)
}

struct Run {
    chain: Chain,
    token: Address,
    receipts: Vec<Receipt>,
}

/// Deploy the token in `env` and run the scenario every test below checks.
fn scenario(env: Env) -> Run {
    let (alice, bob, carol) = (key(1), key(2), key(3));
    let mut chain = Chain::new(&[&alice, &bob, &carol]);
    let token = chain.deploy(&alice, env, token_code(env), abi::u(SUPPLY).to_vec());
    let (a, b, c) = (addr(&alice), addr(&bob), addr(&carol));
    let mut receipts = Vec::new();
    let calls: Vec<(&keel_types::SecretKey, Vec<u8>)> = vec![
        (
            &alice,
            abi::call(
                "transfer(address,uint256)",
                &[abi::address(&b), abi::u(250)],
            ),
        ),
        (
            &bob,
            abi::call(
                "transfer(address,uint256)",
                &[abi::address(&c), abi::u(100)],
            ),
        ),
        // Bob has 150 left: this one fails with InsufficientBalance(150, 151).
        (
            &bob,
            abi::call(
                "transfer(address,uint256)",
                &[abi::address(&c), abi::u(151)],
            ),
        ),
        (
            &alice,
            abi::call("approve(address,uint256)", &[abi::address(&c), abi::u(500)]),
        ),
        (
            &carol,
            abi::call(
                "transferFrom(address,address,uint256)",
                &[abi::address(&a), abi::address(&b), abi::u(300)],
            ),
        ),
        // Allowance is 200 now: InsufficientAllowance(200, 201).
        (
            &carol,
            abi::call(
                "transferFrom(address,address,uint256)",
                &[abi::address(&a), abi::address(&b), abi::u(201)],
            ),
        ),
        (&carol, abi::call("balanceOf(address)", &[abi::address(&b)])),
        (
            &carol,
            abi::call(
                "allowance(address,address)",
                &[abi::address(&a), abi::address(&c)],
            ),
        ),
        (&carol, abi::call("totalSupply()", &[])),
        // Malformed calldata: an address with dirty high bytes, a short call, no selector.
        (
            &carol,
            abi::call("transfer(address,uint256)", &[[0xff; 32], abi::u(1)]),
        ),
        (
            &carol,
            abi::call("transfer(address,uint256)", &[abi::address(&b)]),
        ),
        (&carol, vec![0xde, 0xad, 0xbe, 0xef]),
        // Transfer to self.
        (
            &alice,
            abi::call("transfer(address,uint256)", &[abi::address(&a), abi::u(7)]),
        ),
    ];
    for (k, data) in calls {
        receipts.push(chain.call(k, token, data));
    }
    Run {
        chain,
        token,
        receipts,
    }
}

#[test]
fn solidity_token_transfers_approvals_events_and_reverts() {
    let run = scenario(Env::Evm);
    let (a, b, c) = (addr(&key(1)), addr(&key(2)), addr(&key(3)));
    let r = &run.receipts;
    assert_eq!(r[0].status, TxStatus::Success, "{:?}", r[0]);
    assert_eq!(abi::word(&r[0].output), U256::from(1));
    assert_eq!(r[0].logs.len(), 1);
    assert_eq!(r[0].logs[0].address, run.token);
    assert_eq!(
        r[0].logs[0].topics,
        vec![topic(TRANSFER), abi::address(&a), abi::address(&b)]
    );
    assert_eq!(r[0].logs[0].data, abi::u(250).to_vec());

    assert_eq!(r[2].status, TxStatus::Revert);
    assert_eq!(r[2].error, Some(TxError::Reverted));
    assert_eq!(
        r[2].output,
        abi::error2("InsufficientBalance(uint256,uint256)", 150, 151)
    );
    assert!(r[2].logs.is_empty());
    assert!(r[2].gas_used > 21_000);

    assert_eq!(r[3].logs[0].topics[0], topic(APPROVAL));
    assert_eq!(
        r[5].output,
        abi::error2("InsufficientAllowance(uint256,uint256)", 200, 201)
    );
    assert_eq!(abi::word(&r[6].output), U256::from(150 + 300));
    assert_eq!(abi::word(&r[7].output), U256::from(200));
    assert_eq!(abi::word(&r[8].output), U256::from(SUPPLY));
    for bad in &r[9..12] {
        assert_eq!(bad.status, TxStatus::Revert);
        assert!(bad.output.is_empty());
    }
    assert_eq!(r[12].status, TxStatus::Success);

    let chain = &run.chain;
    let bal = |who: &Address| U256::from_be_bytes(chain.storage(&run.token, balance_slot(who)));
    assert_eq!(bal(&a), U256::from(SUPPLY - 250 - 300));
    assert_eq!(bal(&b), U256::from(150 + 300));
    assert_eq!(bal(&c), U256::from(100));
    assert_eq!(
        U256::from_be_bytes(chain.storage(&run.token, allowance_slot(&a, &c))),
        U256::from(200)
    );
    assert_eq!(
        U256::from_be_bytes(chain.storage(&run.token, abi::u(2))),
        U256::from(SUPPLY)
    );
}

#[test]
fn wasm_token_matches_solidity_slot_for_slot_and_log_for_log() {
    let evm = scenario(Env::Evm);
    let wasm = scenario(Env::Wasm);
    assert_eq!(evm.receipts.len(), wasm.receipts.len());
    for (i, (e, w)) in evm.receipts.iter().zip(&wasm.receipts).enumerate() {
        assert_eq!(
            shape(e, &evm.token),
            shape(w, &wasm.token),
            "transaction {i}"
        );
    }
    let (a, b, c) = (addr(&key(1)), addr(&key(2)), addr(&key(3)));
    let mut slots = vec![abi::u(0), abi::u(1), abi::u(2)];
    for x in [&a, &b, &c] {
        slots.push(balance_slot(x));
        for y in [&a, &b, &c] {
            slots.push(allowance_slot(x, y));
        }
    }
    for slot in slots {
        assert_eq!(
            evm.chain.storage(&evm.token, slot),
            wasm.chain.storage(&wasm.token, slot),
            "slot {}",
            hex::encode(slot)
        );
    }
    // Gas differs between the environments (reported, not compared), but both charge it.
    for (e, w) in evm.receipts.iter().zip(&wasm.receipts) {
        assert!(e.gas_used >= 21_000 && w.gas_used >= 21_000);
    }
}

#[test]
fn fees_are_charged_once_and_reverted_value_transfers_are_undone() {
    let alice = key(1);
    let mut chain = Chain::new(&[&alice]);
    let token = chain.deploy(
        &alice,
        Env::Wasm,
        token_code(Env::Wasm),
        abi::u(SUPPLY).to_vec(),
    );
    let before = chain.balance(&addr(&alice));
    // Value sent to a non-payable function: the call reverts and the value comes back.
    let r = chain.run(
        &alice,
        1_000_000,
        keel_types::TxBody::Call {
            to: token,
            data: abi::call("totalSupply()", &[]),
            value: U256::from(5),
        },
    );
    assert_eq!(r.status, TxStatus::Revert);
    assert_eq!(chain.balance(&token), U256::ZERO);
    let after = chain.balance(&addr(&alice));
    assert_eq!(
        before - after,
        U256::from(r.gas_used) * U256::from(common::GAS_PRICE)
    );
}
