//! keel-sdk's native test VM against keel's runtime (issue 23): the Rust example contracts
//! (examples/src) run natively on `keel_sdk::testvm::TestVm` and, built to wasm32
//! (contracts/build/*_rs.wasm), on a real chain; seeded random sequences of the
//! differential harness's operations must give the same status, output or revert data,
//! logs (contract addresses included: the VM derives them as keel does) and storage writes
//! in both. A contract author's `cargo test` then predicts what the chain does.
//!
//! Also checked: the checked-in `_rs.wasm` artifacts are exactly what scripts/sdk-contracts
//! builds from the sources today (so the harness never tests stale bytecode).

use crate::common::{addr, artifact, key, Chain};
use crate::differential::{
    calldata, op, seeded_runner, setup_ops, Contract, Op, CONTRACTS, SUPPLY, USERS,
};
use keel_examples::{amm::Amm, registry::Registry, router::Router, token::Token};
use keel_sdk::testvm::TestVm;
use keel_sdk::AbiReturn;
use keel_types::{Address, Env, SecretKey, StateKey, TxBody, U256};
use proptest::test_runner::TestCaseError;
use std::collections::BTreeMap;

fn sdk(a: Address) -> keel_sdk::Address {
    keel_sdk::Address(a.0)
}

/// A log: emitter, topics, data.
type RawLog = ([u8; 20], Vec<[u8; 32]>, Vec<u8>);

/// What one operation did, comparable across the two hosts.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    ok: bool,
    /// Output on success, revert data on failure.
    data: Vec<u8>,
    logs: Vec<RawLog>,
}

struct Pair {
    chain: Chain,
    keys: Vec<SecretKey>,
    users: Vec<Address>,
    at: BTreeMap<Contract, Address>,
    vm: TestVm,
}

impl Pair {
    fn new() -> Pair {
        let keys: Vec<SecretKey> = (0..USERS).map(|i| key(40 + i)).collect();
        let users: Vec<Address> = keys.iter().map(addr).collect();
        let refs: Vec<&SecretKey> = keys.iter().collect();
        let mut chain = Chain::new(&refs);
        let vm = TestVm::new();
        let deployer = sdk(users[0]);
        let mut at = BTreeMap::new();
        for contract in CONTRACTS {
            let args = if contract == Contract::Token {
                keel_sdk::U256::from_u64(SUPPLY).encode_return()
            } else {
                Vec::new()
            };
            let (file, native) = match contract {
                Contract::Token => ("token_rs.wasm", vm.deploy::<Token>(deployer, &args)),
                Contract::Amm => ("amm_rs.wasm", vm.deploy::<Amm>(deployer, &args)),
                Contract::Registry => ("registry_rs.wasm", vm.deploy::<Registry>(deployer, &args)),
                Contract::Router => ("router_rs.wasm", vm.deploy::<Router>(deployer, &args)),
            };
            let on_chain = chain.deploy(&keys[0], Env::Wasm, artifact(file), args);
            assert_eq!(
                native.expect("native deploy").0,
                on_chain.0,
                "the test VM gives {contract:?} the address keel gives it"
            );
            at.insert(contract, on_chain);
        }
        let constructor_logs = vm.take_logs();
        assert_eq!(constructor_logs.len(), 1, "the token's mint");
        Pair {
            chain,
            keys,
            users,
            at,
            vm,
        }
    }

    /// Runs `op` on both hosts; the two outcomes and each side's storage writes.
    fn run(&mut self, op: &Op) -> Result<(), String> {
        let (from, contract, data) = calldata(op, &self.users, &self.at);
        let to = self.at[&contract];
        let sender = self.keys[from as usize].clone();
        let tx = self.chain.tx(
            &sender,
            5_000_000,
            TxBody::Call {
                to,
                data: data.clone(),
                value: U256::ZERO,
            },
        );
        let (mut output, _) = self.chain.block(vec![tx]);
        let receipt = output.receipts.remove(0);
        let chain_outcome = Outcome {
            ok: receipt.status.as_str() == "success",
            data: receipt.output.to_vec(),
            logs: receipt
                .logs
                .iter()
                .map(|l| (l.address.0, l.topics.clone(), l.data.to_vec()))
                .collect(),
        };
        let before: BTreeMap<Contract, BTreeMap<[u8; 32], [u8; 32]>> = self
            .at
            .iter()
            .map(|(c, a)| (*c, self.vm.storage_of(sdk(*a))))
            .collect();
        let native = self.vm.call(
            sdk(self.users[from as usize]),
            sdk(to),
            keel_sdk::U256::ZERO,
            &data,
        );
        let vm_outcome = Outcome {
            ok: native.is_ok(),
            data: match &native {
                Ok(out) => out.clone(),
                Err(revert) => revert.0.clone(),
            },
            logs: self
                .vm
                .take_logs()
                .into_iter()
                .map(|l| (l.address.0, l.topics, l.data))
                .collect(),
        };
        if chain_outcome != vm_outcome {
            return Err(format!(
                "{op:?}: chain {chain_outcome:?}\n  test VM {vm_outcome:?}"
            ));
        }
        // Storage: every slot the chain wrote holds the same value in the VM, and every
        // slot whose value changed in the VM is among the chain's writes.
        // The diff names the slots written; their values are read back as 32-byte words
        // (the diff holds the state layer's encoding of them).
        let mut chain_writes = BTreeMap::new();
        for (k, value) in &output.diff {
            if let StateKey::Storage(a, slot) = k {
                if let Some((c, _)) = self.at.iter().find(|(_, addr)| *addr == a) {
                    let word = value
                        .as_ref()
                        .map(|_| self.chain.storage(a, *slot).to_vec());
                    chain_writes.insert((*c, *slot), word);
                }
            }
        }
        for (c, a) in &self.at {
            let after = self.vm.storage_of(sdk(*a));
            for (slot, value) in &after {
                if before[c].get(slot) != Some(value) {
                    let chain_value = chain_writes.get(&(*c, *slot));
                    if chain_value.map(|v| v.as_deref()) != Some(Some(&value[..])) {
                        return Err(format!(
                            "{op:?}: {c:?} slot {} is {} in the test VM, chain wrote {chain_value:?}",
                            hex::encode(slot),
                            hex::encode(value)
                        ));
                    }
                }
            }
            for slot in before[c].keys() {
                if !after.contains_key(slot)
                    && !matches!(chain_writes.get(&(*c, *slot)), Some(None))
                {
                    return Err(format!(
                        "{op:?}: {c:?} slot {} cleared in the test VM, not on chain",
                        hex::encode(slot)
                    ));
                }
            }
        }
        for ((c, slot), value) in &chain_writes {
            let native = self.vm.storage(sdk(self.at[c]), *slot);
            let chain_value = value.clone().unwrap_or_else(|| vec![0; 32]);
            if native[..] != chain_value[..] {
                return Err(format!(
                    "{op:?}: chain wrote {c:?} slot {} = {}, test VM holds {}",
                    hex::encode(slot),
                    hex::encode(&chain_value),
                    hex::encode(native)
                ));
            }
        }
        Ok(())
    }
}

#[test]
fn test_vm_and_chain_agree_on_random_sequences() {
    let (mut runner, cases, seed) = seeded_runner();
    let result = runner.run(&proptest::collection::vec(op(), 1..20), |ops| {
        let mut pair = Pair::new();
        for o in setup_ops().iter().chain(&ops) {
            pair.run(o).map_err(TestCaseError::fail)?;
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("test VM and chain disagree (seed {seed}; replay with KEEL_DIFF_SEED={seed} KEEL_DIFF_CASES={cases}):\n{e}");
    }
}

#[test]
fn sdk_artifacts_are_built_from_the_sources() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = tempfile::tempdir().expect("tempdir");
    let status = std::process::Command::new(root.join("scripts/sdk-contracts"))
        .arg(out.path())
        .status()
        .expect("run scripts/sdk-contracts (Debian's rustc; scripts/setup installs it)");
    assert!(status.success(), "scripts/sdk-contracts failed");
    for name in ["token", "amm", "registry", "router"] {
        let file = format!("{name}_rs.wasm");
        let built = std::fs::read(out.path().join(&file)).expect("built");
        assert!(
            built == artifact(&file),
            "contracts/build/{file} is not what examples/src/{name}.rs builds to: run scripts/sdk-contracts"
        );
    }
}

/// The test VM's bounds are the chain's (it cannot depend on keel's crates: it builds for
/// wasm32 with no dependencies), so this pins them together.
#[test]
fn the_test_vm_uses_the_chains_bounds() {
    use keel_sdk::testvm;
    assert_eq!(
        testvm::MAX_FRAME_DEPTH,
        keel_exec_wasm::limits::MAX_WASM_FRAME_DEPTH
    );
    assert_eq!(
        testvm::MAX_IO_BYTES,
        keel_exec_wasm::limits::MAX_IO_BYTES as usize
    );
    assert_eq!(
        testvm::HOST_CALL_BASE,
        keel_exec_wasm::host_api::gas::HOST_CALL_BASE
    );
    assert_eq!(testvm::DEFAULT_GAS_LIMIT, keel_types::limits::MAX_TX_GAS);
}
