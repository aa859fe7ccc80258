//! Cross-environment differential harness (issue 7): the same contracts written three
//! times — Solidity for the EVM (contracts/evm), C for WASM (contracts/wasm) and Rust with
//! keel-sdk for WASM (examples/src, issue 23) with the same ABI, storage layout and log
//! format — a token, an AMM-style swap pool, a storage-heavy registry, and a router
//! exercising nested calls and every revert path, including calls across environments.
//! Seeded random transaction sequences run in seven worlds: all-EVM, all-C, all-Rust and
//! four mixed ones (router and token in different environments or languages). Status,
//! output, revert data, every log and every touched storage slot must be identical in all
//! four (contract addresses are compared by name); gas is printed side by side, never
//! compared. A divergence is shrunk by proptest and printed with its seed.
//!
//! CI runs `KEEL_DIFF_CASES` (default 24) sequences from `KEEL_DIFF_SEED` (default fixed);
//! a long campaign: `KEEL_DIFF_CASES=5000 KEEL_DIFF_SEED=$RANDOM scripts/test --test runtime differential::`.

use crate::common;

use common::{abi, addr, artifact, key, Chain};
use keel_exec_wasm::limits::MODULE_CACHE_ENTRIES;
use keel_exec_wasm::ModuleCache;
use keel_types::{Address, Env, SecretKey, StateKey, TxBody, U256};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::collections::BTreeMap;
use std::sync::Arc;

pub(crate) const USERS: u8 = 3;
pub(crate) const SUPPLY: u64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Contract {
    Token,
    Amm,
    Registry,
    Router,
}

pub(crate) const CONTRACTS: [Contract; 4] = [
    Contract::Token,
    Contract::Amm,
    Contract::Registry,
    Contract::Router,
];

/// Who receives or spends: a user or the router contract (so relays have tokens to move).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Party {
    User(u8),
    Router,
}

#[derive(Debug, Clone)]
pub(crate) enum Op {
    Transfer {
        from: u8,
        to: Party,
        amount: u64,
    },
    Approve {
        from: u8,
        spender: Party,
        amount: u64,
    },
    TransferFrom {
        by: u8,
        from: u8,
        to: Party,
        amount: u64,
    },
    Relay {
        from: u8,
        to: Party,
        amount: u64,
        mode: u8,
    },
    AddLiquidity {
        from: u8,
        a0: u64,
        a1: u64,
    },
    Swap {
        from: u8,
        dir: u8,
        amount_in: u64,
        min_out: u64,
    },
    Set {
        from: u8,
        key: u64,
        value: u64,
    },
    SetRange {
        from: u8,
        start_near_max: bool,
        start: u64,
        n: u64,
        value: u64,
    },
    Short {
        from: u8,
        contract: u8,
        len: u8,
    },
}

fn party() -> impl Strategy<Value = Party> {
    prop_oneof![4 => (0..USERS).prop_map(Party::User), 1 => Just(Party::Router)]
}

/// Mostly within the pool's per-call bound (2^24), sometimes zero or over it.
fn amount_or_too_large() -> impl Strategy<Value = u64> {
    prop_oneof![8 => 1u64..(1 << 20), 1 => Just(0u64), 1 => (1u64 << 24)..(1 << 25)]
}

pub(crate) fn op() -> impl Strategy<Value = Op> {
    let user = 0..USERS;
    prop_oneof![
        (user.clone(), party(), 0u64..400_000).prop_map(|(from, to, amount)| Op::Transfer {
            from,
            to,
            amount
        }),
        (user.clone(), party(), 0u64..50_000).prop_map(|(from, spender, amount)| Op::Approve {
            from,
            spender,
            amount
        }),
        (user.clone(), user.clone(), party(), 0u64..30_000).prop_map(|(by, from, to, amount)| {
            Op::TransferFrom {
                by,
                from,
                to,
                amount,
            }
        }),
        (user.clone(), party(), 0u64..20_000, 0u8..4).prop_map(|(from, to, amount, mode)| {
            Op::Relay {
                from,
                to,
                amount,
                mode,
            }
        }),
        (user.clone(), amount_or_too_large(), amount_or_too_large())
            .prop_map(|(from, a0, a1)| Op::AddLiquidity { from, a0, a1 }),
        (
            user.clone(),
            0u8..3,
            amount_or_too_large(),
            prop_oneof![3 => Just(0u64), 1 => 0u64..200_000]
        )
            .prop_map(|(from, dir, amount_in, min_out)| Op::Swap {
                from,
                dir,
                amount_in,
                min_out
            }),
        (user.clone(), 0u64..12, 0u64..3).prop_map(|(from, key, value)| Op::Set {
            from,
            key,
            value
        }),
        (user.clone(), any::<bool>(), 0u64..16, 0u64..40, 0u64..3).prop_map(
            |(from, start_near_max, start, n, value)| Op::SetRange {
                from,
                start_near_max,
                start,
                n,
                value
            }
        ),
        (user, 0u8..4, 0u8..36).prop_map(|(from, contract, len)| Op::Short {
            from,
            contract,
            len
        }),
    ]
}

/// One deployment of the four contracts, each in the environment its layout names.
struct World {
    name: &'static str,
    chain: Chain,
    users: Vec<SecretKey>,
    at: BTreeMap<Contract, Address>,
    /// Slot hashes that embed a contract address (mapping keys), by symbolic name.
    symbolic_slots: BTreeMap<[u8; 32], String>,
}

/// Which implementation of a contract a world deploys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Impl {
    /// Solidity, on the EVM.
    Sol,
    /// C against keel.h, on WASM.
    C,
    /// Rust with keel-sdk, on WASM (built by scripts/sdk-contracts).
    Rust,
}

impl Impl {
    pub(crate) fn env(self) -> Env {
        if self == Impl::Sol {
            Env::Evm
        } else {
            Env::Wasm
        }
    }
}

pub(crate) fn code(contract: Contract, imp: Impl) -> Vec<u8> {
    let name = match contract {
        Contract::Token => "token",
        Contract::Amm => "amm",
        Contract::Registry => "registry",
        Contract::Router => "router",
    };
    artifact(&match imp {
        Impl::Sol => {
            let mut cap = name.to_string();
            cap[..1].make_ascii_uppercase();
            format!("{cap}.bin")
        }
        Impl::C => format!("{name}.wasm"),
        Impl::Rust => format!("{name}_rs.wasm"),
    })
}

fn keccak(parts: &[&[u8]]) -> [u8; 32] {
    keel_exec_wasm::keccak256(&parts.concat())
}

fn party_address(p: Party, users: &[Address], at: &BTreeMap<Contract, Address>) -> Address {
    match p {
        Party::User(i) => users[i as usize],
        Party::Router => at[&Contract::Router],
    }
}

/// The transaction an op becomes, given the users' and contracts' addresses: the sender's
/// index, the contract called and the calldata.
pub(crate) fn calldata(
    op: &Op,
    users: &[Address],
    at: &BTreeMap<Contract, Address>,
) -> (u8, Contract, Vec<u8>) {
    let token = at[&Contract::Token];
    match *op {
        Op::Transfer { from, to, amount } => (
            from,
            Contract::Token,
            abi::call(
                "transfer(address,uint256)",
                &[abi::address(&party_address(to, users, at)), abi::u(amount)],
            ),
        ),
        Op::Approve {
            from,
            spender,
            amount,
        } => (
            from,
            Contract::Token,
            abi::call(
                "approve(address,uint256)",
                &[
                    abi::address(&party_address(spender, users, at)),
                    abi::u(amount),
                ],
            ),
        ),
        Op::TransferFrom {
            by,
            from,
            to,
            amount,
        } => (
            by,
            Contract::Token,
            abi::call(
                "transferFrom(address,address,uint256)",
                &[
                    abi::address(&users[from as usize]),
                    abi::address(&party_address(to, users, at)),
                    abi::u(amount),
                ],
            ),
        ),
        Op::Relay {
            from,
            to,
            amount,
            mode,
        } => (
            from,
            Contract::Router,
            abi::call(
                "relay(address,address,uint256,uint256)",
                &[
                    abi::address(&token),
                    abi::address(&party_address(to, users, at)),
                    abi::u(amount),
                    abi::u(u64::from(mode)),
                ],
            ),
        ),
        Op::AddLiquidity { from, a0, a1 } => (
            from,
            Contract::Amm,
            abi::call("addLiquidity(uint256,uint256)", &[abi::u(a0), abi::u(a1)]),
        ),
        Op::Swap {
            from,
            dir,
            amount_in,
            min_out,
        } => (
            from,
            Contract::Amm,
            abi::call(
                "swap(uint256,uint256,uint256)",
                &[abi::u(u64::from(dir)), abi::u(amount_in), abi::u(min_out)],
            ),
        ),
        Op::Set { from, key, value } => (
            from,
            Contract::Registry,
            abi::call("set(uint256,uint256)", &[abi::u(key), abi::u(value)]),
        ),
        Op::SetRange {
            from,
            start_near_max,
            start,
            n,
            value,
        } => {
            let start = if start_near_max {
                U256::MAX - U256::from(start)
            } else {
                U256::from(start)
            };
            (
                from,
                Contract::Registry,
                abi::call(
                    "setRange(uint256,uint256,uint256)",
                    &[abi::uint(start), abi::u(n), abi::u(value)],
                ),
            )
        }
        Op::Short {
            from,
            contract,
            len,
        } => {
            let c = CONTRACTS[contract as usize % 4];
            let full = match c {
                Contract::Token => abi::call("transfer(address,uint256)", &[abi::u(1), abi::u(1)]),
                Contract::Amm => abi::call(
                    "swap(uint256,uint256,uint256)",
                    &[abi::u(1), abi::u(1), abi::u(0)],
                ),
                Contract::Registry => abi::call("set(uint256,uint256)", &[abi::u(1), abi::u(1)]),
                Contract::Router => abi::call("relays()", &[]),
            };
            let cut = (len as usize).min(full.len());
            (from, c, full[..cut].to_vec())
        }
    }
}

impl World {
    fn new(name: &'static str, layout: [Impl; 4], cache: &Arc<ModuleCache>) -> World {
        let users: Vec<SecretKey> = (0..USERS).map(|i| key(40 + i)).collect();
        let refs: Vec<&SecretKey> = users.iter().collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut chain = Chain::with_cache(dir, &refs, cache.clone());
        let mut at = BTreeMap::new();
        for (contract, imp) in CONTRACTS.into_iter().zip(layout) {
            let args = if contract == Contract::Token {
                abi::u(SUPPLY).to_vec()
            } else {
                Vec::new()
            };
            let address = chain.deploy(&users[0], imp.env(), code(contract, imp), args);
            at.insert(contract, address);
        }
        let mut world = World {
            name,
            chain,
            users,
            at,
            symbolic_slots: BTreeMap::new(),
        };
        world.index_slots();
        world
    }

    /// Mapping slots keyed by a contract address differ between worlds only by that
    /// address: name them so storage compares by meaning.
    fn index_slots(&mut self) {
        let mut parties: Vec<([u8; 32], String)> = self
            .users
            .iter()
            .enumerate()
            .map(|(i, k)| (abi::address(&addr(k)), format!("user{i}")))
            .collect();
        for (c, a) in &self.at {
            parties.push((abi::address(a), format!("{c:?}")));
        }
        for (word, name) in &parties {
            for base in 0u64..4 {
                let slot = keccak(&[word, &abi::u(base)]);
                if !name.starts_with("user") {
                    self.symbolic_slots
                        .insert(slot, format!("map{base}[{name}]"));
                }
                // allowance[owner][spender] = keccak(spender ‖ keccak(owner ‖ 1))
                for (spender, spender_name) in &parties {
                    if name.starts_with("user") && spender_name.starts_with("user") {
                        continue;
                    }
                    let inner = keccak(&[word, &abi::u(1)]);
                    let nested = keccak(&[spender, &inner]);
                    self.symbolic_slots
                        .insert(nested, format!("map1[{name}][{spender_name}]"));
                }
            }
        }
    }

    /// The transaction an op becomes in this world.
    fn calldata(&self, op: &Op) -> (u8, Contract, Vec<u8>) {
        let users: Vec<Address> = self.users.iter().map(addr).collect();
        calldata(op, &users, &self.at)
    }

    /// Replaces 32-byte words that are a contract's padded address by its name.
    fn words(&self, bytes: &[u8]) -> Vec<String> {
        let names: BTreeMap<[u8; 32], String> = self
            .at
            .iter()
            .map(|(c, a)| (abi::address(a), format!("<{c:?}>")))
            .collect();
        bytes
            .chunks(32)
            .map(|w| {
                <[u8; 32]>::try_from(w)
                    .ok()
                    .and_then(|w| names.get(&w).cloned())
                    .unwrap_or_else(|| hex::encode(w))
            })
            .collect()
    }

    fn contract_name(&self, a: &Address) -> String {
        self.at
            .iter()
            .find(|(_, x)| *x == a)
            .map_or_else(|| a.to_hex(), |(c, _)| format!("{c:?}"))
    }

    /// Runs one op in its own block; the outcome in comparable form, and the gas used.
    fn run(&mut self, op: &Op) -> (Outcome, u64) {
        let (from, contract, data) = self.calldata(op);
        let to = self.at[&contract];
        let sender = self.users[from as usize].clone();
        let tx = self.chain.tx(
            &sender,
            5_000_000,
            TxBody::Call {
                to,
                data,
                value: U256::ZERO,
            },
        );
        let (mut output, _) = self.chain.block(vec![tx]);
        let receipt = output.receipts.remove(0);
        let mut storage = BTreeMap::new();
        for (key, value) in &output.diff {
            if let StateKey::Storage(a, slot) = key {
                if self.at.values().any(|c| c == a) {
                    let slot_name = self
                        .symbolic_slots
                        .get(slot)
                        .cloned()
                        .unwrap_or_else(|| hex::encode(slot));
                    storage.insert(
                        (self.contract_name(a), slot_name),
                        value.as_ref().map(hex::encode),
                    );
                }
            }
        }
        let outcome = Outcome {
            status: receipt.status.as_str(),
            error: receipt.error.as_ref().map(|e| format!("{e}")),
            output: self.words(&receipt.output),
            logs: receipt
                .logs
                .iter()
                .map(|l| {
                    (
                        self.contract_name(&l.address),
                        l.topics.iter().flat_map(|t| self.words(t)).collect(),
                        self.words(&l.data),
                    )
                })
                .collect(),
            storage,
        };
        (outcome, receipt.gas_used)
    }
}

type LogView = (String, Vec<String>, Vec<String>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    status: &'static str,
    error: Option<String>,
    output: Vec<String>,
    logs: Vec<LogView>,
    storage: BTreeMap<(String, String), Option<String>>,
}

/// Implementations of [token, AMM, registry, router] per world.
const LAYOUTS: [(&str, [Impl; 4]); 7] = [
    ("evm", [Impl::Sol, Impl::Sol, Impl::Sol, Impl::Sol]),
    ("wasm-c", [Impl::C, Impl::C, Impl::C, Impl::C]),
    (
        "wasm-rust",
        [Impl::Rust, Impl::Rust, Impl::Rust, Impl::Rust],
    ),
    // Router in one environment calling the token in the other, both ways, and a Rust
    // router calling a C token.
    (
        "evm-router/c-token",
        [Impl::C, Impl::Sol, Impl::C, Impl::Sol],
    ),
    (
        "rust-router/evm-token",
        [Impl::Sol, Impl::Rust, Impl::Sol, Impl::Rust],
    ),
    (
        "rust-router/c-token",
        [Impl::C, Impl::Rust, Impl::Rust, Impl::Rust],
    ),
    // Solidity calling the Rust token.
    (
        "evm-router/rust-token",
        [Impl::Rust, Impl::Sol, Impl::Sol, Impl::Sol],
    ),
];

/// Setup shared by every sequence: users 1 and 2 hold tokens, the router holds some,
/// allowances exist between the users, and the pool has liquidity.
pub(crate) fn setup_ops() -> Vec<Op> {
    vec![
        Op::Transfer {
            from: 0,
            to: Party::User(1),
            amount: 200_000,
        },
        Op::Transfer {
            from: 0,
            to: Party::User(2),
            amount: 200_000,
        },
        Op::Transfer {
            from: 0,
            to: Party::Router,
            amount: 50_000,
        },
        Op::Approve {
            from: 0,
            spender: Party::User(1),
            amount: 100_000,
        },
        Op::Approve {
            from: 1,
            spender: Party::User(2),
            amount: 100_000,
        },
        Op::Approve {
            from: 2,
            spender: Party::User(0),
            amount: 100_000,
        },
        Op::AddLiquidity {
            from: 0,
            a0: 4_000_000,
            a1: 6_000_000,
        },
    ]
}

/// Runs `ops` in every world; `Err` describes the first divergence.
fn check(
    ops: &[Op],
    cache: &Arc<ModuleCache>,
    gas_table: &mut Vec<String>,
    coverage: &mut BTreeMap<(String, &'static str), u64>,
) -> Result<(), String> {
    let mut worlds: Vec<World> = LAYOUTS
        .iter()
        .map(|(name, layout)| World::new(name, *layout, cache))
        .collect();
    let setup = setup_ops();
    for (i, op) in setup.iter().chain(ops).enumerate() {
        let results: Vec<(Outcome, u64)> = worlds.iter_mut().map(|w| w.run(op)).collect();
        let (reference, _) = &results[0];
        let kind = format!("{op:?}")
            .split([' ', '{'])
            .next()
            .unwrap_or("")
            .to_string();
        *coverage.entry((kind, reference.status)).or_default() += 1;
        if std::env::var("KEEL_DIFF_TRACE").is_ok() {
            eprintln!(
                "{op:?} -> {} {:?} {:?}",
                reference.status, reference.error, reference.output
            );
        }
        for (world, (outcome, _)) in worlds.iter().zip(&results).skip(1) {
            if outcome != reference {
                return Err(format!(
                    "step {i} {op:?}: {} differs from {}\n  {}: {reference:?}\n  {}: {outcome:?}",
                    world.name, worlds[0].name, worlds[0].name, world.name
                ));
            }
        }
        if gas_table.len() < 40 {
            let gas: Vec<String> = worlds
                .iter()
                .zip(&results)
                .map(|(w, (o, g))| format!("{}={g}({})", w.name, o.status))
                .collect();
            gas_table.push(format!("{op:?}: {}", gas.join(" ")));
        }
    }
    Ok(())
}

/// The proptest runner of `KEEL_DIFF_CASES` sequences from `KEEL_DIFF_SEED` (CI: 24 from a
/// fixed seed), with the two numbers for replay messages.
pub(crate) fn seeded_runner() -> (TestRunner, u64, u64) {
    seeded_runner_from(("KEEL_DIFF_CASES", 24), "KEEL_DIFF_SEED")
}

/// A runner of `cases_var` cases (default given) from seed `seed_var` (default fixed).
pub(crate) fn seeded_runner_from(
    (cases_var, default_cases): (&str, u64),
    seed_var: &str,
) -> (TestRunner, u64, u64) {
    let cases = env_u64(cases_var, default_cases);
    let seed = env_u64(seed_var, 0x6b65_656c);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let runner = TestRunner::new_with_rng(
        Config {
            cases: u32::try_from(cases).unwrap_or(u32::MAX),
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    (runner, cases, seed)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn contracts_agree_across_environments_on_random_sequences() {
    let (mut runner, cases, seed) = seeded_runner();
    let cache_dir = tempfile::tempdir().expect("cache dir");
    let cache = Arc::new(
        ModuleCache::new(Some(cache_dir.path().to_path_buf()), MODULE_CACHE_ENTRIES)
            .expect("cache"),
    );
    let gas_table = std::cell::RefCell::new(Vec::new());
    let coverage = std::cell::RefCell::new(BTreeMap::new());
    let result = runner.run(&proptest::collection::vec(op(), 1..20), |ops| {
        check(
            &ops,
            &cache,
            &mut gas_table.borrow_mut(),
            &mut coverage.borrow_mut(),
        )
        .map_err(TestCaseError::fail)
    });
    eprintln!(
        "outcomes per operation (reference world): {:?}",
        coverage.borrow()
    );
    eprintln!("gas side by side (first steps; not compared):");
    for line in gas_table.borrow().iter() {
        eprintln!("  {line}");
    }
    // The sequences must reach both outcomes of every operation, or the harness proves
    // little: each kind of call succeeded and reverted at least once.
    if result.is_ok() && cases >= 24 {
        let coverage = coverage.borrow();
        for kind in [
            "Transfer",
            "Approve",
            "TransferFrom",
            "Relay",
            "AddLiquidity",
            "Swap",
            "Set",
            "SetRange",
            "Short",
        ] {
            for status in ["success", "revert"] {
                if status == "revert" && (kind == "Approve" || kind == "Set") {
                    continue; // these calls cannot revert
                }
                assert!(
                    coverage
                        .get(&(kind.to_string(), status))
                        .copied()
                        .unwrap_or(0)
                        > 0,
                    "no {kind} ended in {status}: the generator does not reach that path"
                );
            }
        }
    }
    if let Err(e) = result {
        panic!(
            "cross-environment divergence (seed {seed}; replay with KEEL_DIFF_SEED={seed} KEEL_DIFF_CASES={cases}):\n{e}"
        );
    }
}
