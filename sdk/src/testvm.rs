//! A native test host (the idea of Stylus's TestVM): contracts built for the host run as
//! ordinary Rust in `cargo test`, against in-memory storage, balances, logs and calls
//! between contracts, with keel's rules where they decide outcomes — a failing frame's
//! storage, balance and log changes are undone, a static frame cannot write, calls nest
//! at most 64 WASM frames deep, and gas is charged per host call at the on-chain prices
//! of docs/wasm-host-api.md (storage access cold/warm, SSTORE, logs, calls, hashing).
//! Instructions are not metered (the contract runs natively) and SSTORE refunds are not
//! modelled, so reported gas is a guide to what the chain charges, not its figure; running
//! out of it fails the frame as on chain. Host I/O is bounded by `MAX_IO_BYTES` as on chain.
//!
//! The differential harness (runtime/tests/differential.rs) runs the same contracts built
//! to wasm32 on keel's runtime beside their Solidity and C twins, and
//! runtime/tests/sdk_testvm.rs checks that this VM and the chain agree on outputs, reverts,
//! logs and storage.

use crate::entry::Contract;
use crate::revert::Revert;
use crate::word::{Address, B256, U256};
use std::boxed::Box;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::panic::{self, AssertUnwindSafe};
use std::vec::Vec;

/// Nested call frames that run contracts (keel's `MAX_WASM_FRAME_DEPTH`).
pub const MAX_FRAME_DEPTH: usize = 64;
/// Gas a top-level call gets unless it names a limit: the chain's largest transaction
/// (`MAX_TX_GAS`, 2^24).
pub const DEFAULT_GAS_LIMIT: u64 = 1 << 24;
/// Bytes one host call may read or write (`MAX_IO_BYTES`): input, output, revert data, log
/// data, call input, copies. More traps the frame, as on chain.
pub const MAX_IO_BYTES: usize = 263_168;
/// Every host function call (`HOST_CALL_BASE`).
pub const HOST_CALL_BASE: u64 = 50;
const COLD_SLOAD: u64 = 2_100;
const WARM_ACCESS: u64 = 100;
const COLD_ACCOUNT: u64 = 2_600;
const SSTORE_SET: u64 = 20_000;
const SSTORE_RESET: u64 = 2_900;
const CALL_VALUE: u64 = 9_000;
const LOG_BASE: u64 = 375;
const LOG_TOPIC: u64 = 375;
const LOG_BYTE: u64 = 8;
const KECCAK_BASE: u64 = 30;
const KECCAK_WORD: u64 = 6;
const COPY_WORD: u64 = 3;

type Dispatch = fn(&[u8]) -> Result<Vec<u8>, Revert>;
type Construct = fn(&[u8]) -> Result<(), Revert>;

/// A log as the chain records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Log {
    pub address: Address,
    pub topics: Vec<B256>,
    pub data: Vec<u8>,
}

#[derive(Clone, Copy)]
struct Code {
    dispatch: Dispatch,
}

/// Everything a failing frame rolls back.
#[derive(Clone, Default)]
struct World {
    balances: BTreeMap<Address, U256>,
    storage: BTreeMap<(Address, B256), B256>,
    logs: Vec<Log>,
    code: BTreeMap<Address, Code>,
    deploys: BTreeMap<Address, u64>,
}

struct Frame {
    address: Address,
    caller: Address,
    value: U256,
    input: Vec<u8>,
    output: Vec<u8>,
    last_return: Vec<u8>,
    is_static: bool,
    gas_limit: u64,
    gas_used: u64,
    /// False for `as_caller`'s stand-in for an account, which runs no contract.
    runs_code: bool,
}

/// Block context the host functions report.
#[derive(Clone, Copy, Debug, Default)]
pub struct BlockInfo {
    pub height: u64,
    pub epoch: u64,
    pub timestamp_ms: u64,
}

struct Vm {
    world: World,
    /// Slot values at the start of the top-level call (EIP-2200's "original").
    original: BTreeMap<(Address, B256), B256>,
    warm_slots: BTreeSet<(Address, B256)>,
    warm_accounts: BTreeSet<Address>,
    frames: Vec<Frame>,
    block: BlockInfo,
    mocks: BTreeMap<(Address, Vec<u8>), FrameResult>,
    last_gas_used: u64,
    /// Whether the last top-level call's frame trapped (a panic, a rule broken, out of gas)
    /// rather than reverted: both fail with no data, only a trap spends all the gas.
    last_trapped: bool,
    /// Set by `run_frame` when a frame traps.
    trapped: bool,
    /// What `host::tx_session_key` answers (`TestVm::set_session_key`).
    session_key: Option<B256>,
    /// What `host::tx_session_scope` answers (`TestVm::set_session_scope`).
    session_scope: Option<[u8; crate::host::SESSION_SCOPE_BYTES]>,
    /// Live jurisdiction codes per account (`TestVm::set_tags`).
    tags: BTreeMap<Address, Vec<[u8; 2]>>,
}

std::thread_local! {
    static VM: RefCell<Option<Vm>> = const { RefCell::new(None) };
}

/// Unwinds a frame that reverted (`host::revert`).
struct RevertSignal(Vec<u8>);
/// Unwinds a frame that ran out of gas or broke a rule (a trap on chain).
struct TrapSignal;

fn with_vm<R>(f: impl FnOnce(&mut Vm) -> R) -> R {
    VM.with(|vm| {
        let mut vm = vm.borrow_mut();
        let vm = vm
            .as_mut()
            .expect("no TestVm on this thread: create one with TestVm::new()");
        f(vm)
    })
}

fn trap() -> ! {
    panic::panic_any(TrapSignal)
}

/// Traps a host call that moves more than `MAX_IO_BYTES`.
fn io_bound(len: usize) {
    if len > MAX_IO_BYTES {
        trap();
    }
}

/// Charges the running frame; past its limit the frame fails (all its gas spent).
fn charge(vm: &mut Vm, gas: u64) {
    let frame = vm.frames.last_mut().expect("host call outside a frame");
    frame.gas_used = frame.gas_used.saturating_add(gas);
    if frame.gas_used > frame.gas_limit {
        frame.gas_used = frame.gas_limit;
        trap();
    }
}

fn words(len: usize) -> u64 {
    (len as u64 + 31) / 32
}

/// Silences the panics that carry reverts and traps (they are control flow here); any
/// other panic is a bug in the contract or test and is reported as usual.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            if payload.is::<RevertSignal>() || payload.is::<TrapSignal>() {
                return;
            }
            previous(info)
        }));
    });
}

/// Outcome of a frame: success with output, or failure with revert data.
type FrameResult = Result<Vec<u8>, Vec<u8>>;

/// Runs `run` as a new frame; undoes its world changes if it fails.
fn run_frame(
    frame: Frame,
    run: impl FnOnce(&[u8]) -> Result<Vec<u8>, Revert>,
) -> (FrameResult, u64) {
    let input = frame.input.clone();
    let snapshot = with_vm(|vm| {
        let snapshot = vm.world.clone();
        vm.frames.push(frame);
        snapshot
    });
    let result = panic::catch_unwind(AssertUnwindSafe(|| run(&input)));
    with_vm(|vm| {
        let frame = vm.frames.pop().expect("frame stack");
        // On chain the entry point hands its output or revert data to the host, which
        // traps past `MAX_IO_BYTES`; natively the dispatcher returns it, so check here.
        let result = match result {
            Ok(Ok(out)) if out.len() > MAX_IO_BYTES => Err(Box::new(TrapSignal) as _),
            Ok(Err(revert)) if revert.0.len() > MAX_IO_BYTES => Err(Box::new(TrapSignal) as _),
            other => other,
        };
        let outcome = match result {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(revert)) => Err(revert.0),
            Err(payload) => match payload.downcast::<RevertSignal>() {
                Ok(signal) => Err(signal.0),
                // A trap or a Rust panic (`unreachable` on chain): no data, all gas spent.
                Err(_) => {
                    vm.world = snapshot.clone();
                    if vm.frames.iter().all(|f| !f.runs_code) {
                        vm.trapped = true;
                    }
                    return (Err(Vec::new()), frame.gas_limit);
                }
            },
        };
        if outcome.is_err() {
            vm.world = snapshot;
        }
        (outcome, frame.gas_used)
    })
}

/// A test VM installed on this thread (one at a time; a new one replaces the old).
#[derive(Debug)]
pub struct TestVm {
    _not_send: core::marker::PhantomData<*const ()>,
}

impl Default for TestVm {
    fn default() -> Self {
        TestVm::new()
    }
}

impl TestVm {
    pub fn new() -> TestVm {
        install_panic_hook();
        VM.with(|vm| {
            *vm.borrow_mut() = Some(Vm {
                world: World::default(),
                original: BTreeMap::new(),
                warm_slots: BTreeSet::new(),
                warm_accounts: BTreeSet::new(),
                frames: Vec::new(),
                block: BlockInfo {
                    height: 1,
                    epoch: 0,
                    timestamp_ms: 0,
                },
                mocks: BTreeMap::new(),
                last_gas_used: 0,
                last_trapped: false,
                trapped: false,
                session_key: None,
                session_scope: None,
                tags: BTreeMap::new(),
            })
        });
        TestVm {
            _not_send: core::marker::PhantomData,
        }
    }

    /// Deploys contract `C` from `from` (constructor arguments ABI-encoded in `args`) at
    /// the address keel would give it: keccak256("keel.wasm.create" ‖ deployer ‖
    /// counter)[12..], the counter counting the deployer's successful WASM deploys.
    pub fn deploy<C: Contract>(&self, from: Address, args: &[u8]) -> Result<Address, Revert> {
        let address = with_vm(|vm| {
            let counter = vm.world.deploys.get(&from).copied().unwrap_or(0);
            let mut preimage = b"keel.wasm.create".to_vec();
            preimage.extend_from_slice(&from.0);
            preimage.extend_from_slice(&U256::from_u64(counter).to_be_bytes());
            let hash = crate::keccak::keccak256(&preimage);
            let mut a = [0u8; 20];
            a.copy_from_slice(&hash[12..]);
            Address(a)
        });
        let construct: Construct = C::construct;
        let result = self.top_level(
            from,
            address,
            U256::ZERO,
            args.to_vec(),
            DEFAULT_GAS_LIMIT,
            |vm| {
                vm.world.code.insert(
                    address,
                    Code {
                        dispatch: C::dispatch,
                    },
                );
                let c = vm.world.deploys.entry(from).or_insert(0);
                *c += 1;
            },
            move |input| construct(input).map(|()| Vec::new()),
        );
        result.map(|_| address).map_err(Revert)
    }

    /// A top-level call (a transaction's): `Ok(output)` or `Err(revert data)`.
    pub fn call(
        &self,
        from: Address,
        to: Address,
        value: U256,
        input: &[u8],
    ) -> Result<Vec<u8>, Revert> {
        self.call_with_gas(from, to, value, input, DEFAULT_GAS_LIMIT)
    }

    pub fn call_with_gas(
        &self,
        from: Address,
        to: Address,
        value: U256,
        input: &[u8],
        gas_limit: u64,
    ) -> Result<Vec<u8>, Revert> {
        let code = with_vm(|vm| vm.world.code.get(&to).copied());
        let mock = with_vm(|vm| vm.mocks.get(&(to, input.to_vec())).cloned());
        self.top_level(
            from,
            to,
            value,
            input.to_vec(),
            gas_limit,
            |_| {},
            move |input| match (code, mock) {
                (Some(code), _) => (code.dispatch)(input),
                (None, Some(result)) => result.map_err(Revert),
                (None, None) => Ok(Vec::new()),
            },
        )
        .map_err(Revert)
    }

    #[allow(clippy::too_many_arguments)]
    fn top_level(
        &self,
        from: Address,
        to: Address,
        value: U256,
        input: Vec<u8>,
        gas_limit: u64,
        prepare: impl FnOnce(&mut Vm),
        run: impl FnOnce(&[u8]) -> Result<Vec<u8>, Revert>,
    ) -> FrameResult {
        // Everything the call changes, the deploy's code and the value included, is undone
        // if it fails.
        let snapshot = with_vm(|vm| {
            assert!(vm.frames.is_empty(), "TestVm call inside a running frame");
            vm.original = vm.world.storage.clone();
            vm.warm_slots.clear();
            vm.warm_accounts = [from, to].into_iter().collect();
            vm.trapped = false;
            vm.world.clone()
        });
        let moved = with_vm(|vm| {
            prepare(vm);
            transfer(vm, from, to, value)
        });
        if !moved {
            with_vm(|vm| vm.world = snapshot);
            return Err(Vec::new());
        }
        let frame = Frame {
            address: to,
            caller: from,
            value,
            input,
            output: Vec::new(),
            last_return: Vec::new(),
            is_static: false,
            gas_limit,
            gas_used: 0,
            runs_code: true,
        };
        let (result, gas) = run_frame(frame, run);
        with_vm(|vm| {
            vm.last_gas_used = gas;
            vm.last_trapped = vm.trapped;
            if result.is_err() {
                vm.world = snapshot;
            }
        });
        result
    }

    /// Runs `f` as if `who` were sending transactions: typed calls (`interface!`) made in
    /// `f` come from `who`, each as a top-level call.
    pub fn as_caller<R>(&self, who: Address, f: impl FnOnce() -> R) -> R {
        with_vm(|vm| {
            assert!(vm.frames.is_empty(), "as_caller inside a running frame");
            vm.original = vm.world.storage.clone();
            vm.frames.push(Frame {
                address: who,
                caller: who,
                value: U256::ZERO,
                input: Vec::new(),
                output: Vec::new(),
                last_return: Vec::new(),
                is_static: false,
                gas_limit: DEFAULT_GAS_LIMIT,
                gas_used: 0,
                runs_code: false,
            });
        });
        let result = panic::catch_unwind(AssertUnwindSafe(f));
        with_vm(|vm| vm.frames.clear());
        match result {
            Ok(r) => r,
            Err(payload) => panic::resume_unwind(payload),
        }
    }

    /// Makes calls to `to` with exactly `input` return `result` (for code the VM cannot
    /// run natively, such as an EVM contract).
    pub fn mock_call(&self, to: Address, input: &[u8], result: Result<Vec<u8>, Vec<u8>>) {
        with_vm(|vm| {
            vm.mocks.insert((to, input.to_vec()), result);
        })
    }

    pub fn set_balance(&self, who: Address, amount: U256) {
        with_vm(|vm| {
            vm.world.balances.insert(who, amount);
        })
    }

    pub fn balance(&self, who: Address) -> U256 {
        with_vm(|vm| vm.world.balances.get(&who).copied().unwrap_or(U256::ZERO))
    }

    /// A contract's storage slot.
    pub fn storage(&self, contract: Address, slot: B256) -> B256 {
        with_vm(|vm| {
            vm.world
                .storage
                .get(&(contract, slot))
                .copied()
                .unwrap_or([0; 32])
        })
    }

    /// Every non-zero slot of `contract`, in slot order.
    pub fn storage_of(&self, contract: Address) -> BTreeMap<B256, B256> {
        with_vm(|vm| {
            vm.world
                .storage
                .iter()
                .filter(|((a, _), _)| *a == contract)
                .map(|((_, slot), value)| (*slot, *value))
                .collect()
        })
    }

    /// All logs of successful calls so far, in order.
    pub fn logs(&self) -> Vec<Log> {
        with_vm(|vm| vm.world.logs.clone())
    }

    /// Takes the logs collected so far.
    pub fn take_logs(&self) -> Vec<Log> {
        with_vm(|vm| std::mem::take(&mut vm.world.logs))
    }

    /// Whether the last top-level call trapped (its own frame: a panic, out of gas, a write in
    /// a static frame, more than `MAX_IO_BYTES`) rather than reverting.
    pub fn last_trapped(&self) -> bool {
        with_vm(|vm| vm.last_trapped)
    }

    /// Gas the last top-level call used (host calls only; see the module docs).
    pub fn last_gas_used(&self) -> u64 {
        with_vm(|vm| vm.last_gas_used)
    }

    pub fn set_block(&self, block: BlockInfo) {
        with_vm(|vm| vm.block = block)
    }

    /// The session key later calls report as the transaction's (`None`: the account's own key).
    pub fn set_session_key(&self, key: Option<B256>) {
        with_vm(|vm| vm.session_key = key)
    }

    /// The session key's scope later calls report (the words `host::tx_session_scope`
    /// returns; `None`: the account's own key signed).
    pub fn set_session_scope(&self, scope: Option<[u8; crate::host::SESSION_SCOPE_BYTES]>) {
        with_vm(|vm| vm.session_scope = scope)
    }

    /// The live jurisdiction codes `who` holds (what `host::caller_tags` returns when `who`
    /// calls); kept sorted and at most 8, as on chain.
    pub fn set_tags(&self, who: Address, mut codes: Vec<[u8; 2]>) {
        codes.sort();
        codes.dedup();
        codes.truncate(8);
        with_vm(|vm| {
            vm.tags.insert(who, codes);
        })
    }
}

impl Drop for TestVm {
    fn drop(&mut self) {
        VM.with(|vm| *vm.borrow_mut() = None);
    }
}

/// Moves native value; false if `from` lacks it.
fn transfer(vm: &mut Vm, from: Address, to: Address, value: U256) -> bool {
    if value.is_zero() {
        return true;
    }
    let have = vm.world.balances.get(&from).copied().unwrap_or(U256::ZERO);
    let left = match have.checked_sub(value) {
        Some(v) => v,
        None => return false,
    };
    vm.world.balances.insert(from, left);
    let to_balance = vm.world.balances.get(&to).copied().unwrap_or(U256::ZERO);
    vm.world
        .balances
        .insert(to, to_balance.overflowing_add(value).0);
    true
}

/// The host functions, as `crate::host` sees them in a native build.
pub(crate) mod host {
    use super::*;

    fn top<R>(f: impl FnOnce(&mut Frame) -> R) -> R {
        with_vm(|vm| f(vm.frames.last_mut().expect("host call outside a frame")))
    }

    pub fn read_input(len: usize) -> Vec<u8> {
        with_vm(|vm| charge(vm, HOST_CALL_BASE + COPY_WORD * words(len)));
        top(|f| f.input.clone())
    }
    pub fn return_data(data: &[u8]) {
        io_bound(data.len());
        with_vm(|vm| charge(vm, HOST_CALL_BASE + COPY_WORD * words(data.len())));
        top(|f| f.output = data.to_vec())
    }
    pub fn revert(data: &[u8]) -> ! {
        io_bound(data.len());
        panic::panic_any(RevertSignal(data.to_vec()))
    }
    pub fn storage_load(key: &B256) -> B256 {
        with_vm(|vm| {
            let me = vm.frames.last().expect("frame").address;
            let cold = vm.warm_slots.insert((me, *key));
            charge(
                vm,
                HOST_CALL_BASE + if cold { COLD_SLOAD } else { WARM_ACCESS },
            );
            vm.world
                .storage
                .get(&(me, *key))
                .copied()
                .unwrap_or([0; 32])
        })
    }
    pub fn storage_store(key: &B256, value: &B256) {
        with_vm(|vm| {
            let frame = vm.frames.last().expect("frame");
            if frame.is_static {
                trap();
            }
            let me = frame.address;
            let cold = vm.warm_slots.insert((me, *key));
            let current = vm
                .world
                .storage
                .get(&(me, *key))
                .copied()
                .unwrap_or([0; 32]);
            let original = vm.original.get(&(me, *key)).copied().unwrap_or([0; 32]);
            // EIP-2200/2929 without refunds.
            let cost = if current == *value || original != current {
                WARM_ACCESS
            } else if original == [0; 32] {
                SSTORE_SET
            } else {
                SSTORE_RESET
            };
            charge(
                vm,
                HOST_CALL_BASE + cost + if cold { COLD_SLOAD } else { 0 },
            );
            if *value == [0; 32] {
                vm.world.storage.remove(&(me, *key));
            } else {
                vm.world.storage.insert((me, *key), *value);
            }
        })
    }
    pub fn caller() -> Address {
        with_vm(|vm| charge(vm, HOST_CALL_BASE));
        top(|f| f.caller)
    }
    pub fn address() -> Address {
        with_vm(|vm| charge(vm, HOST_CALL_BASE));
        top(|f| f.address)
    }
    pub fn call_value() -> B256 {
        with_vm(|vm| charge(vm, HOST_CALL_BASE));
        top(|f| f.value.to_be_bytes())
    }
    pub fn balance(who: &Address) -> B256 {
        with_vm(|vm| {
            let cold = vm.warm_accounts.insert(*who);
            charge(
                vm,
                HOST_CALL_BASE + if cold { COLD_ACCOUNT } else { WARM_ACCESS },
            );
            vm.world
                .balances
                .get(who)
                .copied()
                .unwrap_or(U256::ZERO)
                .to_be_bytes()
        })
    }
    pub fn block_height() -> u64 {
        with_vm(|vm| {
            charge(vm, HOST_CALL_BASE);
            vm.block.height
        })
    }
    pub fn block_epoch() -> u64 {
        with_vm(|vm| {
            charge(vm, HOST_CALL_BASE);
            vm.block.epoch
        })
    }
    pub fn block_timestamp_ms() -> u64 {
        with_vm(|vm| {
            charge(vm, HOST_CALL_BASE);
            vm.block.timestamp_ms
        })
    }
    pub fn emit_log(topics: &[B256], data: &[u8]) {
        io_bound(data.len());
        with_vm(|vm| {
            let frame = vm.frames.last().expect("frame");
            if frame.is_static || topics.len() > 4 {
                trap();
            }
            let address = frame.address;
            charge(
                vm,
                HOST_CALL_BASE
                    + LOG_BASE
                    + LOG_TOPIC * topics.len() as u64
                    + LOG_BYTE * data.len() as u64,
            );
            vm.world.logs.push(Log {
                address,
                topics: topics.to_vec(),
                data: data.to_vec(),
            });
        })
    }
    pub fn call(to: &Address, value: &B256, input: &[u8], gas: u64) -> bool {
        nested_call(*to, U256::from_be_bytes(*value), input, gas, false)
    }
    pub fn static_call(to: &Address, input: &[u8], gas: u64) -> bool {
        nested_call(*to, U256::ZERO, input, gas, true)
    }

    fn nested_call(to: Address, value: U256, input: &[u8], gas: u64, is_static: bool) -> bool {
        io_bound(input.len());
        let prepared = with_vm(|vm| {
            let frame = vm.frames.last().expect("frame");
            if frame.is_static && !value.is_zero() {
                trap();
            }
            let (me, inherited_static) = (frame.address, frame.is_static);
            let cold = vm.warm_accounts.insert(to);
            let mut cost = HOST_CALL_BASE + COPY_WORD * words(input.len());
            cost += if cold { COLD_ACCOUNT } else { WARM_ACCESS };
            if !value.is_zero() {
                cost += CALL_VALUE;
            }
            charge(vm, cost);
            let frame = vm.frames.last().expect("frame");
            // EIP-150: at most 63/64 of what is left.
            let left = frame.gas_limit - frame.gas_used;
            let allowed = left - left / 64;
            let limit = if gas == 0 { allowed } else { gas.min(allowed) };
            let depth = vm.frames.iter().filter(|f| f.runs_code).count();
            let depth_ok = depth < MAX_FRAME_DEPTH;
            (me, inherited_static || is_static, limit, depth_ok)
        });
        let (me, is_static, limit, depth_ok) = prepared;
        if !depth_ok {
            top(|f| f.last_return = Vec::new());
            return false;
        }
        let (code, mock) = with_vm(|vm| {
            (
                vm.world.code.get(&to).copied(),
                vm.mocks.get(&(to, input.to_vec())).cloned(),
            )
        });
        let snapshot = with_vm(|vm| vm.world.clone());
        let moved = with_vm(|vm| transfer(vm, me, to, value));
        if !moved {
            top(|f| f.last_return = Vec::new());
            return false;
        }
        let frame = Frame {
            address: to,
            caller: me,
            value,
            input: input.to_vec(),
            output: Vec::new(),
            last_return: Vec::new(),
            is_static,
            gas_limit: limit,
            gas_used: 0,
            runs_code: true,
        };
        let (result, used) = run_frame(frame, move |input| match (code, mock) {
            (Some(code), _) => (code.dispatch)(input),
            (None, Some(result)) => result.map_err(Revert),
            (None, None) => Ok(Vec::new()),
        });
        with_vm(|vm| {
            if result.is_err() {
                vm.world = snapshot;
            }
            charge_nested(vm, used);
        });
        let ok = result.is_ok();
        top(|f| {
            f.last_return = match result {
                Ok(out) | Err(out) => out,
            }
        });
        ok
    }

    /// The callee's gas counts against the caller.
    fn charge_nested(vm: &mut Vm, used: u64) {
        charge(vm, used)
    }

    pub fn return_data_size() -> usize {
        with_vm(|vm| charge(vm, HOST_CALL_BASE));
        top(|f| f.last_return.len())
    }
    pub fn return_data_copy(offset: usize, len: usize) -> Vec<u8> {
        io_bound(len);
        with_vm(|vm| charge(vm, HOST_CALL_BASE + COPY_WORD * words(len)));
        top(|f| match offset.checked_add(len) {
            Some(end) if end <= f.last_return.len() => f.last_return[offset..end].to_vec(),
            _ => trap(),
        })
    }
    pub fn tx_session_key() -> Option<B256> {
        with_vm(|vm| {
            charge(vm, HOST_CALL_BASE + COPY_WORD);
            vm.session_key
        })
    }
    pub fn tx_session_scope() -> Option<[u8; crate::host::SESSION_SCOPE_BYTES]> {
        with_vm(|vm| {
            let words = crate::host::SESSION_SCOPE_BYTES as u64 / 32;
            charge(vm, HOST_CALL_BASE + COPY_WORD * words);
            vm.session_scope
        })
    }
    pub fn caller_tags() -> Vec<[u8; 2]> {
        let caller = top(|f| f.caller);
        with_vm(|vm| {
            // As on chain: the tag count and one slot per tag (cold), the account access.
            let codes = vm.tags.get(&caller).cloned().unwrap_or_default();
            charge(
                vm,
                HOST_CALL_BASE + COLD_ACCOUNT + COLD_SLOAD * (1 + codes.len() as u64) + COPY_WORD,
            );
            codes
        })
    }
    pub fn gas_left() -> u64 {
        with_vm(|vm| {
            charge(vm, HOST_CALL_BASE);
            let f = vm.frames.last().expect("frame");
            f.gas_limit - f.gas_used
        })
    }
    pub fn keccak256(data: &[u8]) -> B256 {
        with_vm(|vm| {
            charge(
                vm,
                HOST_CALL_BASE + KECCAK_BASE + KECCAK_WORD * words(data.len()),
            )
        });
        crate::keccak::keccak256(data)
    }
}
