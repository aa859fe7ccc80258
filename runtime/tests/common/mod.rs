//! A small chain for runtime tests: a real RocksDB store in a temp dir, a genesis with funded
//! accounts, and blocks executed by the runtime and committed in order.
#![allow(dead_code)]

use keel_exec_evm::NoBlockHashes;
use keel_exec_wasm::limits::MODULE_CACHE_ENTRIES;
use keel_exec_wasm::ModuleCache;
use keel_runtime::{BlockOutput, Runtime, RuntimeConfig};
use keel_state::{Overlay, StateViewExt};
use keel_store::{CommitRequest, Store, StoreOptions};
use keel_types::{
    AccountRecord, Address, Block, Env, Hash, Header, Receipt, SecretKey, SignedTransaction,
    Transaction, TxBody, U256,
};
use std::sync::Arc;

pub const CHAIN_ID: u64 = 7;
pub const GAS_PRICE: u128 = 1;
pub const FUNDS: u64 = 1_000_000_000_000;

/// The thread counts every multi-transaction block is also executed with.
pub const PARALLEL_THREADS: [usize; 3] = [2, 4, 8];

pub fn key(i: u8) -> SecretKey {
    SecretKey::from_seed([i; 32])
}

pub fn addr(k: &SecretKey) -> Address {
    Address::from_public_key(&k.public_key())
}

/// Checked-in contract artifacts (contracts/build, rebuilt by scripts/contracts).
pub fn artifact(name: &str) -> Vec<u8> {
    let path = manifest_dir().join("../contracts/build").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if name.ends_with(".bin") {
        hex::decode(String::from_utf8(bytes).expect("utf8").trim()).expect("hex bytecode")
    } else {
        bytes
    }
}

pub struct Chain {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub runtime: Runtime,
    pub height: u64,
    pub parent_hash: Hash,
    /// The epoch the next block is in (tests move it forward by hand).
    pub epoch: u64,
    /// Who proposes the next block (and receives its fees).
    pub proposer: SecretKey,
    nonces: std::collections::BTreeMap<[u8; 32], u64>,
    /// The gas price of the transactions `tx` signs (`GAS_PRICE` unless a test sets it).
    pub gas_price: u128,
    /// (kept, redone, direct) over every parallel execution (`ParallelStats`).
    pub parallel_counts: std::cell::Cell<(u64, u64, u64)>,
}

/// EVM creation code returning `runtime` (at most 255 bytes).
pub fn creation(runtime: &[u8]) -> Vec<u8> {
    let len = u8::try_from(runtime.len()).expect("short runtime");
    let mut code = vec![0x60, len, 0x60, 12, 0x60, 0, 0x39, 0x60, len, 0x60, 0, 0xf3];
    code.extend_from_slice(runtime);
    code
}

/// ABI helpers for the Solidity-compatible test contracts.
pub mod abi {
    use keel_types::{Address, U256};

    pub fn selector(signature: &str) -> [u8; 4] {
        let h = keel_exec_wasm::keccak256(signature.as_bytes());
        [h[0], h[1], h[2], h[3]]
    }
    pub fn address(a: &Address) -> [u8; 32] {
        let mut w = [0u8; 32];
        w[12..].copy_from_slice(&a.0);
        w
    }
    pub fn uint(v: U256) -> [u8; 32] {
        v.to_be_bytes::<32>()
    }
    pub fn u(v: u64) -> [u8; 32] {
        uint(U256::from(v))
    }
    pub fn call(signature: &str, args: &[[u8; 32]]) -> Vec<u8> {
        let mut out = selector(signature).to_vec();
        for a in args {
            out.extend_from_slice(a);
        }
        out
    }
    /// `error Name(uint256, uint256)` revert data.
    pub fn error2(signature: &str, a: u64, b: u64) -> Vec<u8> {
        call(signature, &[u(a), u(b)])
    }
    pub fn word(output: &[u8]) -> U256 {
        U256::from_be_slice(output)
    }
}

/// A genesis storage slot: (address, slot, value).
type Slot = (Address, [u8; 32], [u8; 32]);

impl Chain {
    /// A fresh chain whose genesis funds the given keys, with a module cache in `cache_dir`
    /// (or a fresh one in the chain's temp dir).
    pub fn new(funded: &[&SecretKey]) -> Chain {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Arc::new(
            ModuleCache::new(Some(dir.path().join("wasm-cache")), MODULE_CACHE_ENTRIES)
                .expect("cache"),
        );
        Chain::with_cache(dir, funded, cache)
    }

    /// As `new`, for a node that does not keep the expiry archive (`keep_archive = false`).
    pub fn without_archive(funded: &[&SecretKey]) -> Chain {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Arc::new(
            ModuleCache::new(Some(dir.path().join("wasm-cache")), MODULE_CACHE_ENTRIES)
                .expect("cache"),
        );
        Chain::open(dir, funded, cache, false)
    }

    /// As `new`, with `slots` (address, slot, value) also in the genesis state.
    pub fn with_storage(funded: &[&SecretKey], slots: &[(Address, [u8; 32], [u8; 32])]) -> Chain {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Arc::new(
            ModuleCache::new(Some(dir.path().join("wasm-cache")), MODULE_CACHE_ENTRIES)
                .expect("cache"),
        );
        Chain::open_with(dir, funded, cache, true, (slots, &[]))
    }

    pub fn with_cache(
        dir: tempfile::TempDir,
        funded: &[&SecretKey],
        cache: Arc<ModuleCache>,
    ) -> Chain {
        Chain::open(dir, funded, cache, true)
    }

    fn open(
        dir: tempfile::TempDir,
        funded: &[&SecretKey],
        cache: Arc<ModuleCache>,
        keep_archive: bool,
    ) -> Chain {
        Chain::open_with(dir, funded, cache, keep_archive, (&[], &[]))
    }

    fn open_with(
        dir: tempfile::TempDir,
        funded: &[&SecretKey],
        cache: Arc<ModuleCache>,
        keep_archive: bool,
        (slots, validators): (&[Slot], &[keel_runtime::validators::GenesisEntry]),
    ) -> Chain {
        let options = StoreOptions {
            keep_archive,
            sync_writes: false,
            ..StoreOptions::default()
        };
        let store = Store::open(&dir.path().join("db"), options).expect("open store");
        let mut genesis = {
            let view = store.latest_view();
            let base: &dyn keel_state::StateView = &view;
            let mut overlay = Overlay::new(base);
            for k in funded {
                let record = AccountRecord {
                    nonce: 0,
                    balance: U256::from(FUNDS),
                    code: None,
                    policy_spend: None,
                };
                overlay.put_account(addr(k), &record).expect("genesis");
            }
            for (address, slot, value) in slots {
                overlay
                    .put_storage(*address, *slot, *value)
                    .expect("genesis");
            }
            if !validators.is_empty() {
                keel_runtime::validators::write_genesis(&mut overlay, validators).expect("genesis");
            }
            overlay.into_diff()
        };
        let info = store
            .commit(CommitRequest {
                height: 0,
                diff: &std::mem::take(&mut genesis),
                block: None,
                receipts: &[],
                archive: &keel_state::ArchiveBatch::default(),
            })
            .expect("genesis commit");
        let runtime = Runtime::new(RuntimeConfig::new(CHAIN_ID), cache);
        Chain {
            dir,
            store,
            runtime,
            height: 0,
            parent_hash: info.block_hash,
            epoch: 0,
            proposer: key(250),
            nonces: Default::default(),
            gas_price: GAS_PRICE,
            parallel_counts: Default::default(),
        }
    }

    /// As `new`, with a validator registry of `validators` under `params` (the block's epoch
    /// then follows its height: see [`Chain::epoch_for_next`]).
    pub fn with_validators(
        funded: &[&SecretKey],
        validators: &[keel_runtime::validators::GenesisEntry],
        params: keel_types::validator::RegistryParams,
    ) -> Chain {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Arc::new(
            ModuleCache::new(Some(dir.path().join("wasm-cache")), MODULE_CACHE_ENTRIES)
                .expect("cache"),
        );
        let mut chain = Chain::open_with(dir, funded, cache, true, (&[], validators));
        let mut config = *chain.runtime.config();
        config.registry = params;
        chain.runtime = Runtime::new(config, chain.runtime.module_cache().clone());
        chain
    }

    /// Sets the next block's epoch from its height (epoch e orders heights e·L+1 ..= (e+1)·L).
    pub fn epoch_for_next(&mut self) {
        let length = self.runtime.config().registry.epoch_length;
        self.epoch = self.height / length;
    }

    /// Turns state expiry on: entries untouched for `epochs` epochs expire.
    pub fn set_expiry_epochs(&mut self, epochs: u64) {
        let mut config = *self.runtime.config();
        config.expiry_epochs = epochs;
        self.runtime = Runtime::new(config, self.runtime.module_cache().clone());
    }

    /// Expired stubs older than `epochs` epochs are folded out of the tree (0: never).
    pub fn set_fold_epochs(&mut self, epochs: u64) {
        let mut config = *self.runtime.config();
        config.fold_epochs = epochs;
        self.runtime = Runtime::new(config, self.runtime.module_cache().clone());
    }

    pub fn tx(&mut self, k: &SecretKey, gas_limit: u64, body: TxBody) -> SignedTransaction {
        let nonce = self.nonces.entry(k.public_key().0).or_insert(0);
        let tx = Transaction {
            chain_id: CHAIN_ID,
            sender: k.public_key().into(),
            nonce: *nonce,
            gas_limit,
            gas_price: self.gas_price,
            body,
        }
        .sign(k);
        *nonce += 1;
        tx
    }

    /// The next block holding `txs`.
    pub fn make_block(&self, txs: Vec<SignedTransaction>) -> Block {
        let height = self.height + 1;
        Block {
            header: Header {
                chain_id: CHAIN_ID,
                height,
                epoch: self.epoch,
                view: height,
                parent_hash: self.parent_hash,
                proposer: self.proposer.public_key(),
                timestamp_ms: 1_700_000_000_000 + height * 1_000,
                tx_root: keel_types::block::tx_root(&txs),
                parent_state_root: Hash::ZERO,
                parent_receipts_root: Hash::ZERO,
                archive_root: Hash::ZERO,
            },
            transactions: txs,
        }
    }

    /// Execute `block` over the latest state (nothing is committed). A block of several
    /// transactions is also executed in parallel at every count of [`PARALLEL_THREADS`],
    /// which must give the serial output byte for byte: every test of this binary is a
    /// parallel-versus-serial differential too (issue 22).
    pub fn execute(&self, block: &Block) -> BlockOutput {
        // Serially by the chain's own runtime, whose caches (decoded policies, analyzed code)
        // stay warm from block to block as a node's do; in parallel by fresh ones: a cache
        // that ever answered for other bytes shows up as a divergence.
        let serial = self.execute_on(&self.runtime, block);
        if block.transactions.len() > 1 {
            for threads in PARALLEL_THREADS {
                let parallel = self.execute_with_threads(block, threads);
                assert!(
                    parallel == serial,
                    "{threads} threads diverge from serial execution at height {}:\n\
                     serial: {serial:?}\nparallel: {parallel:?}",
                    block.header.height
                );
            }
        }
        serial
    }

    /// Execute `block` over the latest state on `threads` threads.
    pub fn execute_with_threads(&self, block: &Block, threads: usize) -> BlockOutput {
        self.execute_on(&self.runtime_with_threads(threads), block)
    }

    /// A runtime like the chain's that executes with `threads` (a bench keeps one, as a
    /// node does, so its caches stay warm across blocks).
    pub fn runtime_with_threads(&self, threads: usize) -> Runtime {
        let mut config = *self.runtime.config();
        config.exec_threads = threads;
        // The signature cache is shared: what one execution verified, the next skips.
        Runtime::new(config, self.runtime.module_cache().clone())
            .with_signature_cache(self.runtime.signature_cache().clone())
            .with_attesters(self.runtime.attesters())
    }

    /// Executes `block` over the latest state with `runtime`, committing nothing.
    pub fn execute_on(&self, runtime: &Runtime, block: &Block) -> BlockOutput {
        let view = self.store.latest_view();
        // The runtime's counts are cumulative (a kept runtime runs many blocks): this
        // block's share is the difference.
        let (kept0, redone0, direct0) = runtime.parallel_stats().get();
        let output = runtime
            .execute_block(&view, &NoBlockHashes, block)
            .expect("execute block");
        let (kept, redone, direct) = runtime.parallel_stats().get();
        let (k, r, d) = self.parallel_counts.get();
        self.parallel_counts
            .set((k + kept - kept0, r + redone - redone0, d + direct - direct0));
        output
    }

    /// The next nonce of `k` as the latest state has it, which later `tx` calls use.
    pub fn resync_nonce(&mut self, k: &SecretKey) {
        let nonce = self
            .store
            .latest_view()
            .account(&addr(k))
            .ok()
            .flatten()
            .map_or(0, |r| r.nonce);
        self.nonces.insert(k.public_key().0, nonce);
    }

    /// Commit an executed block; returns the new state root.
    pub fn commit(&mut self, block: &Block, output: &BlockOutput) -> Hash {
        let info = self
            .store
            .commit(CommitRequest {
                height: block.header.height,
                diff: &output.diff,
                block: Some(block),
                receipts: &output.receipts,
                archive: &output.archive,
            })
            .expect("commit");
        self.height = block.header.height;
        self.parent_hash = block.hash();
        info.state_root
    }

    /// Execute one block holding `txs` and commit it; returns the output and the new root.
    pub fn block(&mut self, txs: Vec<SignedTransaction>) -> (BlockOutput, Hash) {
        let block = self.make_block(txs);
        let output = self.execute(&block);
        let root = self.commit(&block, &output);
        (output, root)
    }

    /// One transaction in its own block; its receipt.
    pub fn run(&mut self, k: &SecretKey, gas_limit: u64, body: TxBody) -> Receipt {
        let tx = self.tx(k, gas_limit, body);
        let (mut out, _) = self.block(vec![tx]);
        let receipt = out.receipts.remove(0);
        if receipt.status == keel_types::TxStatus::Rejected {
            // A rejected transaction does not use its nonce.
            *self.nonces.entry(k.public_key().0).or_insert(1) -= 1;
        }
        receipt
    }

    pub fn deploy(&mut self, k: &SecretKey, env: Env, code: Vec<u8>, args: Vec<u8>) -> Address {
        let r = self.run(
            k,
            10_000_000,
            TxBody::Deploy {
                env,
                code,
                args,
                value: U256::ZERO,
            },
        );
        assert_eq!(
            r.status,
            keel_types::TxStatus::Success,
            "deploy failed: {r:?}"
        );
        r.contract_address.expect("contract address")
    }

    pub fn call(&mut self, k: &SecretKey, to: Address, data: Vec<u8>) -> Receipt {
        self.run(
            k,
            5_000_000,
            TxBody::Call {
                to,
                data,
                value: U256::ZERO,
            },
        )
    }

    /// Sends a revival carrying `proof`.
    pub fn revive(&mut self, k: &SecretKey, proof: &keel_types::archive::RevivalProof) -> Receipt {
        use keel_types::Canonical;
        self.run(
            k,
            1_000_000,
            TxBody::Revive {
                proof: proof.encode(),
            },
        )
    }

    pub fn balance(&self, a: &Address) -> U256 {
        self.store
            .latest_view()
            .account(a)
            .expect("read")
            .map(|r| r.balance)
            .unwrap_or_default()
    }

    pub fn storage(&self, a: &Address, slot: [u8; 32]) -> [u8; 32] {
        self.store.latest_view().storage(a, &slot).expect("read")
    }

    pub fn root(&self) -> Hash {
        self.store.latest().expect("latest").state_root
    }
}

/// The package directory of the running test. Read at run time (cargo sets it for every test
/// and bench process): the compile-time value can name another clone when clones share one
/// target directory, as the scripts' persistent `CARGO_TARGET_DIR` makes them do.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        std::path::PathBuf::from,
    )
}

/// The reason a revival was refused (panics if it was not). A refused proof is charged: a
/// `Revert` that paid gas and used its nonce (docs/execution.md, "Refusals").
pub fn refused(receipt: &Receipt) -> keel_types::RevivalError {
    assert_eq!(receipt.status, keel_types::TxStatus::Revert, "{receipt:?}");
    assert!(receipt.gas_used > 0, "{receipt:?}");
    match &receipt.error {
        Some(keel_types::TxError::InvalidRevival { reason }) => reason.clone(),
        other => panic!("expected an invalid revival, got {other:?}"),
    }
}

/// EVM runtime forwarding its calldata (and, unless `is_static`, its value) to `target` with
/// CALL or STATICCALL, returning the callee's output or reverting with it.
pub fn evm_proxy(target: &Address, is_static: bool) -> Vec<u8> {
    let mut code = vec![0x36, 0x5f, 0x5f, 0x37]; // CALLDATACOPY(0, 0, CALLDATASIZE)
    code.extend_from_slice(&[0x5f, 0x5f, 0x36, 0x5f]); // ret 0 0, args 0 CALLDATASIZE
    if !is_static {
        code.push(0x34); // CALLVALUE
    }
    code.push(0x73);
    code.extend_from_slice(&target.0);
    code.push(0x5a); // GAS
    code.push(if is_static { 0xfa } else { 0xf1 });
    code.extend_from_slice(&[0x3d, 0x5f, 0x5f, 0x3e]); // RETURNDATACOPY(0, 0, RETURNDATASIZE)
    let ok = u8::try_from(code.len() + 6).expect("short");
    code.extend_from_slice(&[0x60, ok, 0x57]); // JUMPI(ok, success)
    code.extend_from_slice(&[0x3d, 0x5f, 0xfd]); // REVERT(0, RETURNDATASIZE)
    code.extend_from_slice(&[0x5b, 0x3d, 0x5f, 0xf3]); // ok: RETURN(0, RETURNDATASIZE)
    code
}
