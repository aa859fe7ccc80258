//! EIP-7610: a creation whose target address holds storage — but no code and a zero nonce,
//! which revm already refuses — fails as a collision, like revm's own: the creator's nonce
//! is used, the frame's gas is spent, nothing is created, the storage stays. For a
//! transaction's own deployment, a CREATE2 from a contract, and a WASM deployment; each
//! beside the same creation at an address without storage, which succeeds.

use crate::common;

use common::{abi, addr, artifact, key, Chain};
use keel_exec_evm::revm::primitives::{keccak256, Address as RevmAddress, B256, U256 as RU256};
use keel_state::{StateView, StateViewExt};
use keel_types::receipt::ExecError;
use keel_types::{Address, Env, TxBody, TxError, TxStatus, U256};

const SLOT: [u8; 32] = [7; 32];
const VALUE: [u8; 32] = [9; 32];

fn revm(a: &Address) -> RevmAddress {
    RevmAddress::from(a.0)
}

fn keel(a: RevmAddress) -> Address {
    Address(a.0 .0)
}

/// Runtime code: CREATE2 of the calldata (as init code, salt 0); returns the new address
/// (zero if the creation failed).
const FACTORY: &[u8] = &[
    0x36, 0x60, 0, 0x60, 0, 0x37, // CALLDATACOPY(0, 0, CALLDATASIZE)
    0x60, 0, 0x36, 0x60, 0, 0x60, 0, 0xf5, // CREATE2(0, 0, CALLDATASIZE, salt 0)
    0x60, 0, 0x52, 0x60, 0x20, 0x60, 0, 0xf3, // MSTORE(0, address); RETURN(0, 32)
];

/// Init code deploying the one-byte runtime code `tag` (so each tag has its own address).
fn child(tag: u8) -> Vec<u8> {
    vec![0x60, tag, 0x60, 0, 0x53, 0x60, 1, 0x60, 0, 0xf3]
}

/// Init code that deploys `runtime` as is.
fn deployer_of(runtime: &[u8]) -> Vec<u8> {
    let mut init = vec![
        0x60,
        runtime.len() as u8,
        0x80,
        0x60,
        0x0b,
        0x60,
        0,
        0x39,
        0x60,
        0,
        0xf3,
    ];
    init.extend_from_slice(runtime);
    init
}

fn deploy_body(env: Env, code: Vec<u8>, args: Vec<u8>) -> TxBody {
    TxBody::Deploy {
        env,
        code,
        args,
        value: U256::ZERO,
    }
}

fn nonce(chain: &Chain, a: &Address) -> u64 {
    chain
        .store
        .latest_view()
        .account(a)
        .expect("read")
        .map_or(0, |r| r.nonce)
}

fn has_code(chain: &Chain, a: &Address) -> bool {
    let view = chain.store.latest_view();
    view.account(a)
        .expect("read")
        .and_then(|r| r.code)
        .is_some()
}

/// The address a WASM deployment by `deployer` gets for its `counter`-th deployment.
fn wasm_address(deployer: &Address, counter: u64) -> Address {
    let mut preimage = b"keel.wasm.create".to_vec();
    preimage.extend_from_slice(&deployer.0);
    preimage.extend_from_slice(&RU256::from(counter).to_be_bytes::<32>());
    keel(RevmAddress::from_slice(&keccak256(preimage)[12..]))
}

fn assert_collided(receipt: &keel_types::Receipt) {
    assert_eq!(receipt.status, TxStatus::Revert, "{receipt:?}");
    assert_eq!(
        receipt.error,
        Some(TxError::Execution {
            code: ExecError::CreateCollision
        })
    );
    assert_eq!(receipt.contract_address, None);
}

#[test]
fn a_creation_where_storage_lives_collides_in_both_environments() {
    let (alice, bob, carol, dave, erin) = (key(1), key(2), key(3), key(4), key(5));
    let factory = keel(revm(&addr(&alice)).create(0));
    let stored = [
        // bob's first deployment, a CREATE2 from alice's factory, dave's first WASM deploy.
        keel(revm(&addr(&bob)).create(0)),
        keel(revm(&factory).create2(B256::ZERO, keccak256(child(1)))),
        wasm_address(&addr(&dave), 0),
    ];
    let slots: Vec<_> = stored.iter().map(|a| (*a, SLOT, VALUE)).collect();
    let mut chain = Chain::with_storage(&[&alice, &bob, &carol, &dave, &erin], &slots);
    for a in &stored {
        assert_eq!(
            chain.store.latest_view().storage_entries(a).expect("count"),
            1
        );
    }

    // 1. A transaction's own deployment: bob's collides, carol's (same code, no storage at
    // her address) deploys. The collision spends the whole gas limit and uses the nonce.
    let token = artifact("Token.bin");
    let gas = 3_000_000;
    let before = chain.balance(&addr(&bob));
    let r = chain.run(
        &bob,
        gas,
        deploy_body(Env::Evm, token.clone(), abi::u(5).to_vec()),
    );
    assert_collided(&r);
    assert_eq!(r.gas_used, gas, "a collision spends all its gas");
    assert_eq!(
        before - chain.balance(&addr(&bob)),
        U256::from(gas) * U256::from(common::GAS_PRICE)
    );
    assert_eq!(nonce(&chain, &addr(&bob)), 1);
    assert!(!has_code(&chain, &stored[0]));
    assert_eq!(chain.storage(&stored[0], SLOT), VALUE, "the storage stays");
    let r = chain.run(
        &carol,
        gas,
        deploy_body(Env::Evm, token, abi::u(5).to_vec()),
    );
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    // bob's next deployment (nonce 1) is at a fresh address: it deploys.
    let r = chain.run(
        &bob,
        gas,
        deploy_body(Env::Evm, deployer_of(&[0]), Vec::new()),
    );
    assert_eq!(r.status, TxStatus::Success, "{r:?}");

    // 2. CREATE2 from a contract: the call succeeds, the creation returns address zero and
    // uses the factory's nonce; another init code (another address) is created.
    let deployed = chain.deploy(&alice, Env::Evm, deployer_of(FACTORY), Vec::new());
    assert_eq!(deployed, factory);
    let nonce_before = nonce(&chain, &factory);
    let r = chain.call(&alice, factory, child(1));
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
    assert_eq!(r.output, vec![0u8; 32], "CREATE2 pushed zero");
    assert_eq!(nonce(&chain, &factory), nonce_before + 1);
    assert!(!has_code(&chain, &stored[1]));
    let r = chain.call(&alice, factory, child(2));
    let created = keel(revm(&factory).create2(B256::ZERO, keccak256(child(2))));
    assert_eq!(&r.output[12..], &created.0, "{r:?}");
    assert!(has_code(&chain, &created));

    // 3. A WASM deployment: dave's first collides with a typed error; erin's deploys.
    let module = artifact("token.wasm");
    let r = chain.run(
        &dave,
        10_000_000,
        deploy_body(Env::Wasm, module.clone(), abi::u(5).to_vec()),
    );
    assert_collided(&r);
    assert!(!has_code(&chain, &stored[2]));
    let r = chain.run(
        &erin,
        10_000_000,
        deploy_body(Env::Wasm, module, abi::u(5).to_vec()),
    );
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
}

/// The count the rule reads follows the state through commits: slots written, overwritten,
/// cleared, and a contract's storage as its own transactions change it.
#[test]
fn storage_counts_follow_the_state() {
    let alice = key(1);
    let mut chain = Chain::new(&[&alice]);
    let token = chain.deploy(
        &alice,
        Env::Evm,
        artifact("Token.bin"),
        abi::u(100).to_vec(),
    );
    let count =
        |chain: &Chain, a: &Address| chain.store.latest_view().storage_entries(a).expect("count");
    // Total supply and alice's balance.
    let minted = count(&chain, &token);
    assert!(minted >= 2, "{minted}");
    let transfer = |to: &Address, n: u64| {
        abi::call("transfer(address,uint256)", &[abi::address(to), abi::u(n)])
    };
    let bob = addr(&key(2));
    assert_eq!(
        chain.call(&alice, token, transfer(&bob, 40)).status,
        TxStatus::Success
    );
    assert_eq!(count(&chain, &token), minted + 1, "bob's balance slot");
    assert_eq!(
        chain.call(&alice, token, transfer(&bob, 10)).status,
        TxStatus::Success
    );
    assert_eq!(count(&chain, &token), minted + 1, "an overwrite adds none");
    // Alice sends the rest: her balance slot becomes zero, which deletes it.
    assert_eq!(
        chain.call(&alice, token, transfer(&bob, 50)).status,
        TxStatus::Success
    );
    assert_eq!(count(&chain, &token), minted, "a cleared slot is gone");
    assert_eq!(count(&chain, &bob), 0);
}
