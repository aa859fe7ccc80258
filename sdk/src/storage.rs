//! Typed storage over 32-byte slots, laid out as Solidity lays out the same declarations
//! (one slot per field in declaration order, mappings at `keccak(key ‖ slot)`, dynamic
//! arrays' elements from `keccak(slot)`, `bytes`/`string` short in the slot or long from
//! `keccak(slot)`), so an EVM twin and a WASM contract read each other's state. One
//! difference: fields are never packed, so declare Solidity twins' small fields in full
//! slots (uint256, or an address/bool not next to another small field).

use crate::word::{Address, B256, U256};
use alloc::string::String;
use alloc::vec::Vec;
use core::marker::PhantomData;

/// A storage struct: `storage!` implements it, assigning slots in declaration order.
pub trait Layout {
    fn layout() -> Self;
}

/// Something that lives at a slot and takes `SLOTS` consecutive slots there.
pub trait StorageType {
    const SLOTS: u64;
    fn at(slot: B256) -> Self;
}

/// A value stored in one slot as Solidity stores it (right-aligned, big-endian).
pub trait StorageWord: Sized {
    fn to_slot(&self) -> B256;
    fn from_slot(w: B256) -> Self;
}

impl StorageWord for U256 {
    fn to_slot(&self) -> B256 {
        self.to_be_bytes()
    }
    fn from_slot(w: B256) -> U256 {
        U256::from_be_bytes(w)
    }
}

impl StorageWord for B256 {
    fn to_slot(&self) -> B256 {
        *self
    }
    fn from_slot(w: B256) -> B256 {
        w
    }
}

impl StorageWord for Address {
    fn to_slot(&self) -> B256 {
        self.to_word()
    }
    /// The low 20 bytes, as Solidity cleans an address it loads.
    fn from_slot(w: B256) -> Address {
        let mut a = [0u8; 20];
        a.copy_from_slice(&w[12..]);
        Address(a)
    }
}

impl StorageWord for bool {
    fn to_slot(&self) -> B256 {
        U256::from(*self).to_be_bytes()
    }
    /// The low byte, as Solidity reads a bool.
    fn from_slot(w: B256) -> bool {
        w[31] != 0
    }
}

macro_rules! uint_word {
    ($($ty:ty),*) => {$(
        impl StorageWord for $ty {
            fn to_slot(&self) -> B256 {
                U256::from(*self as u128).to_be_bytes()
            }
            /// The low bytes, as Solidity cleans a narrower uint it loads.
            fn from_slot(w: B256) -> $ty {
                const N: usize = core::mem::size_of::<$ty>();
                let mut b = [0u8; N];
                b.copy_from_slice(&w[32 - N..]);
                <$ty>::from_be_bytes(b)
            }
        }
    )*};
}
uint_word!(u8, u16, u32, u64, u128);

fn hash2(a: &[u8], b: &B256) -> B256 {
    let mut buf = Vec::with_capacity(a.len() + 32);
    buf.extend_from_slice(a);
    buf.extend_from_slice(b);
    crate::host::keccak256(&buf)
}

/// `slot + n`, wrapping as the EVM's slot arithmetic does.
fn offset(slot: &B256, n: U256) -> B256 {
    U256::from_be_bytes(*slot)
        .overflowing_add(n)
        .0
        .to_be_bytes()
}

/// One value in one slot (`uint256 public x;`).
#[derive(Debug)]
pub struct StorageValue<T> {
    slot: B256,
    _t: PhantomData<T>,
}

impl<T: StorageWord> StorageValue<T> {
    pub fn get(&self) -> T {
        T::from_slot(crate::host::storage_load(&self.slot))
    }
    pub fn set(&self, value: T) {
        crate::host::storage_store(&self.slot, &value.to_slot())
    }
    pub fn slot(&self) -> B256 {
        self.slot
    }
}

impl<T> StorageType for StorageValue<T> {
    const SLOTS: u64 = 1;
    fn at(slot: B256) -> Self {
        StorageValue {
            slot,
            _t: PhantomData,
        }
    }
}

pub type StorageU256 = StorageValue<U256>;
pub type StorageAddress = StorageValue<Address>;
pub type StorageBool = StorageValue<bool>;
pub type StorageU64 = StorageValue<u64>;
pub type StorageB256 = StorageValue<B256>;

/// A mapping key: value types hash as their 32-byte word, `string`/`bytes` keys as their
/// raw bytes (Solidity's rule).
pub trait MapKey {
    fn key_bytes(&self) -> Vec<u8>;
}

macro_rules! word_key {
    ($($ty:ty),*) => {$(
        impl MapKey for $ty {
            fn key_bytes(&self) -> Vec<u8> {
                self.to_slot().to_vec()
            }
        }
    )*};
}
word_key!(U256, B256, Address, bool, u8, u16, u32, u64, u128);

impl MapKey for String {
    fn key_bytes(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}

impl MapKey for crate::abi::Bytes {
    fn key_bytes(&self) -> Vec<u8> {
        self.0.clone()
    }
}

/// `mapping(K => V)`; `V` may itself be a mapping, vector or string.
#[derive(Debug)]
pub struct StorageMap<K, V> {
    slot: B256,
    _kv: PhantomData<(K, V)>,
}

impl<K: MapKey, V: StorageType> StorageMap<K, V> {
    /// The storage of `self[key]`.
    pub fn entry(&self, key: K) -> V {
        V::at(hash2(&key.key_bytes(), &self.slot))
    }
}

impl<K: MapKey, T: StorageWord> StorageMap<K, StorageValue<T>> {
    pub fn get(&self, key: K) -> T {
        self.entry(key).get()
    }
    pub fn set(&self, key: K, value: T) {
        self.entry(key).set(value)
    }
}

impl<K, V> StorageType for StorageMap<K, V> {
    const SLOTS: u64 = 1;
    fn at(slot: B256) -> Self {
        StorageMap {
            slot,
            _kv: PhantomData,
        }
    }
}

/// A dynamic array (`T[] public xs;`): its length in the slot, elements from
/// `keccak(slot)`, each `V::SLOTS` slots (never packed).
#[derive(Debug)]
pub struct StorageVec<V> {
    slot: B256,
    _v: PhantomData<V>,
}

impl<V: StorageType> StorageVec<V> {
    pub fn len(&self) -> U256 {
        U256::from_be_bytes(crate::host::storage_load(&self.slot))
    }
    pub fn is_empty(&self) -> bool {
        self.len().is_zero()
    }
    fn element(&self, index: U256) -> V {
        let base = crate::host::keccak256(&self.slot);
        let (delta, _) = index.overflowing_mul(U256::from_u64(V::SLOTS));
        V::at(offset(&base, delta))
    }
    /// The storage of element `index`, if it exists.
    pub fn entry(&self, index: U256) -> Option<V> {
        if index < self.len() {
            Some(self.element(index))
        } else {
            None
        }
    }
    /// Appends an element (zeroed slots) and returns its storage.
    pub fn grow(&self) -> V {
        let len = self.len();
        crate::host::storage_store(&self.slot, &(len + U256::ONE).to_be_bytes());
        self.element(len)
    }
}

impl<T: StorageWord> StorageVec<StorageValue<T>> {
    pub fn get(&self, index: U256) -> Option<T> {
        self.entry(index).map(|e| e.get())
    }
    /// Writes element `index`; reverts with `Panic(0x32)` out of bounds, as Solidity.
    pub fn set(&self, index: U256, value: T) {
        match self.entry(index) {
            Some(e) => e.set(value),
            None => crate::revert::panic(crate::revert::PANIC_OUT_OF_BOUNDS),
        }
    }
    pub fn push(&self, value: T) {
        self.grow().set(value)
    }
    /// Removes the last element, clearing its slot (Solidity's `pop`).
    pub fn pop(&self) -> Option<T> {
        let len = self.len();
        if len.is_zero() {
            return None;
        }
        let last = len - U256::ONE;
        let e = self.element(last);
        let value = e.get();
        crate::host::storage_store(&e.slot(), &[0u8; 32]);
        crate::host::storage_store(&self.slot, &last.to_be_bytes());
        Some(value)
    }
}

impl<V> StorageType for StorageVec<V> {
    const SLOTS: u64 = 1;
    fn at(slot: B256) -> Self {
        StorageVec {
            slot,
            _v: PhantomData,
        }
    }
}

/// `bytes public b;`: up to 31 bytes live in the slot (data left-aligned, `2·len` in the
/// last byte); longer ones store `2·len + 1` there and the data from `keccak(slot)`.
#[derive(Debug)]
pub struct StorageBytes {
    slot: B256,
}

impl StorageBytes {
    fn header(&self) -> B256 {
        crate::host::storage_load(&self.slot)
    }

    /// Length and whether it is in the long form.
    fn decode_header(h: &B256) -> (usize, bool) {
        if h[31] & 1 == 0 {
            (usize::from(h[31] / 2), false)
        } else {
            // A long form's length fits 64 bits in any state Solidity or this SDK wrote.
            let n = U256::from_be_bytes(*h).to_u64().unwrap_or(0) / 2;
            (usize::try_from(n).unwrap_or(usize::MAX), true)
        }
    }

    pub fn len(&self) -> usize {
        Self::decode_header(&self.header()).0
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self) -> Vec<u8> {
        let h = self.header();
        let (len, long) = Self::decode_header(&h);
        if !long {
            return h[..len.min(31)].to_vec();
        }
        let base = crate::host::keccak256(&self.slot);
        let mut out = Vec::with_capacity(len);
        let mut i = 0u64;
        while out.len() < len {
            let w = crate::host::storage_load(&offset(&base, U256::from_u64(i)));
            let take = (len - out.len()).min(32);
            out.extend_from_slice(&w[..take]);
            i += 1;
        }
        out
    }

    /// Replaces the contents, clearing long-form slots the new value no longer uses.
    pub fn set(&self, data: &[u8]) {
        let (old_len, old_long) = Self::decode_header(&self.header());
        let base = crate::host::keccak256(&self.slot);
        let old_words = if old_long { (old_len + 31) / 32 } else { 0 };
        let new_words;
        if data.len() < 32 {
            let mut h = [0u8; 32];
            h[..data.len()].copy_from_slice(data);
            h[31] = (data.len() * 2) as u8;
            crate::host::storage_store(&self.slot, &h);
            new_words = 0;
        } else {
            let header = U256::from_u64(data.len() as u64 * 2 + 1);
            crate::host::storage_store(&self.slot, &header.to_be_bytes());
            for (i, chunk) in data.chunks(32).enumerate() {
                let mut w = [0u8; 32];
                w[..chunk.len()].copy_from_slice(chunk);
                crate::host::storage_store(&offset(&base, U256::from_u64(i as u64)), &w);
            }
            new_words = (data.len() + 31) / 32;
        }
        for i in new_words..old_words {
            crate::host::storage_store(&offset(&base, U256::from_u64(i as u64)), &[0u8; 32]);
        }
    }
}

impl StorageType for StorageBytes {
    const SLOTS: u64 = 1;
    fn at(slot: B256) -> Self {
        StorageBytes { slot }
    }
}

/// `string public s;` (the same layout as `bytes`).
#[derive(Debug)]
pub struct StorageString(StorageBytes);

impl StorageString {
    /// The text; bytes that are not UTF-8 (written by another contract) are replaced.
    pub fn get(&self) -> String {
        String::from_utf8_lossy(&self.0.get()).into_owned()
    }
    pub fn set(&self, text: &str) {
        self.0.set(text.as_bytes())
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl StorageType for StorageString {
    const SLOTS: u64 = 1;
    fn at(slot: B256) -> Self {
        StorageString(StorageBytes { slot })
    }
}

/// Declares a contract's storage struct; fields get slots in declaration order.
///
/// ```ignore
/// keel_sdk::storage! {
///     pub struct Token {
///         balance_of: StorageMap<Address, StorageU256>,                     // slot 0
///         allowance: StorageMap<Address, StorageMap<Address, StorageU256>>, // slot 1
///         total_supply: StorageU256,                                        // slot 2
///     }
/// }
/// ```
#[macro_export]
macro_rules! storage {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $($(#[$fmeta])* $fvis $field: $ty),*
        }

        impl $crate::storage::Layout for $name {
            fn layout() -> Self {
                let mut slot: u64 = 0;
                $(
                    let $field = <$ty as $crate::storage::StorageType>::at(
                        $crate::U256::from_u64(slot).to_be_bytes(),
                    );
                    slot += <$ty as $crate::storage::StorageType>::SLOTS;
                )*
                let _ = slot;
                $name { $($field),* }
            }
        }
    };
}
