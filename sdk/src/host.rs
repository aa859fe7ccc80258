//! Safe wrappers over keel's host functions (docs/wasm-host-api.md). On wasm32 they are
//! the module's `keel` imports; in a native build (`cargo test`) they go to the test VM
//! (`testvm`), so the same contract code runs in both places.

use crate::word::{Address, B256, U256};
use alloc::vec::Vec;

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod sys {
    #[link(wasm_import_module = "keel")]
    extern "C" {
        pub fn read_input(out: *mut u8);
        pub fn return_data(ptr: *const u8, len: u32);
        pub fn revert(ptr: *const u8, len: u32) -> !;
        pub fn storage_load(key: *const u8, out: *mut u8);
        pub fn storage_store(key: *const u8, value: *const u8);
        pub fn caller(out: *mut u8);
        pub fn address(out: *mut u8);
        pub fn call_value(out: *mut u8);
        pub fn balance(addr: *const u8, out: *mut u8);
        pub fn block_height() -> i64;
        pub fn block_epoch() -> i64;
        pub fn block_timestamp() -> i64;
        pub fn emit_log(topics: *const u8, count: u32, data: *const u8, len: u32);
        pub fn call(to: *const u8, value: *const u8, input: *const u8, len: u32, gas: i64) -> i32;
        pub fn static_call(to: *const u8, input: *const u8, len: u32, gas: i64) -> i32;
        pub fn return_data_size() -> u32;
        pub fn return_data_copy(out: *mut u8, offset: u32, len: u32);
        pub fn gas_left() -> i64;
        pub fn keccak256(ptr: *const u8, len: u32, out: *mut u8);
        pub fn tx_session_key(out: *mut u8) -> i32;
        pub fn tx_session_scope(out: *mut u8) -> i32;
        pub fn caller_tags(out: *mut u8) -> i32;
    }
}

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod imp {
    //! Every pointer handed to the host points into a live Rust buffer of at least the
    //! length the host function reads or writes (32 bytes for words, 20 for addresses).
    use super::sys;
    use crate::word::{Address, B256};
    use alloc::vec;
    use alloc::vec::Vec;

    pub fn read_input(len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        unsafe { sys::read_input(buf.as_mut_ptr()) };
        buf
    }
    pub fn return_data(data: &[u8]) {
        unsafe { sys::return_data(data.as_ptr(), data.len() as u32) }
    }
    pub fn revert(data: &[u8]) -> ! {
        unsafe { sys::revert(data.as_ptr(), data.len() as u32) }
    }
    pub fn storage_load(key: &B256) -> B256 {
        let mut out = [0u8; 32];
        unsafe { sys::storage_load(key.as_ptr(), out.as_mut_ptr()) };
        out
    }
    pub fn storage_store(key: &B256, value: &B256) {
        unsafe { sys::storage_store(key.as_ptr(), value.as_ptr()) }
    }
    pub fn caller() -> Address {
        let mut out = [0u8; 20];
        unsafe { sys::caller(out.as_mut_ptr()) };
        Address(out)
    }
    pub fn address() -> Address {
        let mut out = [0u8; 20];
        unsafe { sys::address(out.as_mut_ptr()) };
        Address(out)
    }
    pub fn call_value() -> B256 {
        let mut out = [0u8; 32];
        unsafe { sys::call_value(out.as_mut_ptr()) };
        out
    }
    pub fn balance(who: &Address) -> B256 {
        let mut out = [0u8; 32];
        unsafe { sys::balance(who.0.as_ptr(), out.as_mut_ptr()) };
        out
    }
    pub fn block_height() -> u64 {
        unsafe { sys::block_height() as u64 }
    }
    pub fn block_epoch() -> u64 {
        unsafe { sys::block_epoch() as u64 }
    }
    pub fn block_timestamp_ms() -> u64 {
        unsafe { sys::block_timestamp() as u64 }
    }
    pub fn emit_log(topics: &[B256], data: &[u8]) {
        let flat: Vec<u8> = topics.iter().flat_map(|t| t.iter().copied()).collect();
        unsafe {
            sys::emit_log(
                flat.as_ptr(),
                topics.len() as u32,
                data.as_ptr(),
                data.len() as u32,
            )
        }
    }
    /// 0 on success; the output (or revert data) is fetched with `return_data_buffer`.
    pub fn call(to: &Address, value: &B256, input: &[u8], gas: u64) -> bool {
        let gas = i64::try_from(gas).unwrap_or(i64::MAX);
        let failed = unsafe {
            sys::call(
                to.0.as_ptr(),
                value.as_ptr(),
                input.as_ptr(),
                input.len() as u32,
                gas,
            )
        };
        failed == 0
    }
    pub fn static_call(to: &Address, input: &[u8], gas: u64) -> bool {
        let gas = i64::try_from(gas).unwrap_or(i64::MAX);
        let failed =
            unsafe { sys::static_call(to.0.as_ptr(), input.as_ptr(), input.len() as u32, gas) };
        failed == 0
    }
    pub fn return_data_size() -> usize {
        unsafe { sys::return_data_size() as usize }
    }
    /// `len` bytes from `offset` (the host traps a range past the end).
    pub fn return_data_copy(offset: usize, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        unsafe { sys::return_data_copy(out.as_mut_ptr(), offset as u32, len as u32) };
        out
    }
    pub fn gas_left() -> u64 {
        unsafe { sys::gas_left() as u64 }
    }
    pub fn keccak256(data: &[u8]) -> B256 {
        let mut out = [0u8; 32];
        unsafe { sys::keccak256(data.as_ptr(), data.len() as u32, out.as_mut_ptr()) };
        out
    }
    pub fn tx_session_key() -> Option<B256> {
        let mut out = [0u8; 32];
        let signed = unsafe { sys::tx_session_key(out.as_mut_ptr()) };
        (signed != 0).then_some(out)
    }
    pub fn tx_session_scope() -> Option<[u8; super::SESSION_SCOPE_BYTES]> {
        let mut out = [0u8; super::SESSION_SCOPE_BYTES];
        let signed = unsafe { sys::tx_session_scope(out.as_mut_ptr()) };
        (signed != 0).then_some(out)
    }
    pub fn caller_tags() -> Vec<[u8; 2]> {
        // The host writes at most 8 codes of 2 bytes.
        let mut out = [0u8; 16];
        let n = unsafe { sys::caller_tags(out.as_mut_ptr()) } as usize;
        out[..2 * n.min(8)]
            .chunks_exact(2)
            .map(|c| [c[0], c[1]])
            .collect()
    }
}

#[cfg(not(target_arch = "wasm32"))]
use crate::testvm::host as imp;

/// The call's input (`len` is what the entry point was given).
pub fn read_input(len: usize) -> Vec<u8> {
    imp::read_input(len)
}

/// Sets the output the frame returns when the entry point returns 0.
pub fn return_data(data: &[u8]) {
    imp::return_data(data)
}

/// Stops the frame now; its changes are undone and the caller sees `data`.
pub fn revert(data: &[u8]) -> ! {
    imp::revert(data)
}

/// This contract's storage slot `key` (zero if never written).
pub fn storage_load(key: &B256) -> B256 {
    imp::storage_load(key)
}

/// Writes this contract's storage slot `key` (all-zero deletes it).
pub fn storage_store(key: &B256, value: &B256) {
    imp::storage_store(key, value)
}

/// Who called this frame (`msg.sender`).
pub fn caller() -> Address {
    imp::caller()
}

/// This contract's own address.
pub fn address() -> Address {
    imp::address()
}

/// The native value sent with this call (`msg.value`).
pub fn call_value() -> U256 {
    U256::from_be_bytes(imp::call_value())
}

/// An account's native balance.
pub fn balance(who: Address) -> U256 {
    U256::from_be_bytes(imp::balance(&who))
}

/// Height of the block being executed.
pub fn block_height() -> u64 {
    imp::block_height()
}

/// Its epoch.
pub fn block_epoch() -> u64 {
    imp::block_epoch()
}

/// Its timestamp in milliseconds.
pub fn block_timestamp_ms() -> u64 {
    imp::block_timestamp_ms()
}

/// A log with up to 4 topics; more trap the frame, as on chain.
pub fn emit_log(topics: &[B256], data: &[u8]) {
    imp::emit_log(topics, data)
}

/// Calls any contract (EVM or WASM) sending `value`, with at most `gas` (0: all allowed).
/// `Ok(output)` or `Err(revert data)`, copied whole: a callee can return up to the host's
/// `MAX_IO_BYTES` (257 KiB), so when the data is not needed, `call_status` costs less and cannot run this
/// frame out of memory.
pub fn call(to: Address, value: U256, input: &[u8], gas: u64) -> Result<Vec<u8>, Vec<u8>> {
    let ok = call_status(to, value, input, gas);
    let data = last_return_copy(0, last_return_size());
    if ok {
        Ok(data)
    } else {
        Err(data)
    }
}

/// As `call`, without value; the callee may not change state.
pub fn static_call(to: Address, input: &[u8], gas: u64) -> Result<Vec<u8>, Vec<u8>> {
    let ok = static_call_status(to, input, gas);
    let data = last_return_copy(0, last_return_size());
    if ok {
        Ok(data)
    } else {
        Err(data)
    }
}

/// A call that copies nothing back: whether it succeeded. Its output or revert data is then
/// available through `last_return_size` and `last_return_copy`.
pub fn call_status(to: Address, value: U256, input: &[u8], gas: u64) -> bool {
    imp::call(&to, &value.to_be_bytes(), input, gas)
}

/// As `call_status`, without value; the callee may not change state.
pub fn static_call_status(to: Address, input: &[u8], gas: u64) -> bool {
    imp::static_call(&to, input, gas)
}

/// Size of the last call's output or revert data.
pub fn last_return_size() -> usize {
    imp::return_data_size()
}

/// `len` bytes of the last call's output or revert data from `offset`; a range past its
/// end traps, as on chain.
pub fn last_return_copy(offset: usize, len: usize) -> Vec<u8> {
    imp::return_data_copy(offset, len)
}

/// Gas left in this frame.
pub fn gas_left() -> u64 {
    imp::gas_left()
}

/// Keccak-256 through the host (cheaper than hashing in WASM).
pub fn keccak256(data: &[u8]) -> B256 {
    imp::keccak256(data)
}

/// The session key that signed the transaction, if one did (docs/policies.md). Like
/// `tx.origin`, it belongs to the transaction: it says something about `caller()` only when
/// the caller is the transaction's account.
pub fn tx_session_key() -> Option<B256> {
    imp::tx_session_key()
}

/// Bytes of [`tx_session_scope`]'s answer: eleven ABI words.
pub const SESSION_SCOPE_BYTES: usize = 11 * 32;

/// The scope of the session key that signed the transaction, if one did: the eleven ABI
/// words of Solidity's `txSessionScope()` — key, expiry height, epoch, the caps per
/// transaction and per epoch (value, fees, transactions), what the key used this epoch
/// before the transaction (value, fees, transactions), how many targets it may call; no
/// limit is all ones (docs/policies.md).
pub fn tx_session_scope() -> Option<[u8; SESSION_SCOPE_BYTES]> {
    imp::tx_session_scope()
}

/// The jurisdiction codes (ISO 3166-1 alpha-2, e.g. `*b"US"`) this frame's caller holds a
/// live tag for, sorted (docs/policies.md, "Jurisdiction rules").
pub fn caller_tags() -> Vec<[u8; 2]> {
    imp::caller_tags()
}
