//! Solidity ABI encoding and decoding for the common types: `uint8/32/64/128/256`, `bool`,
//! `address`, `bytes32`, `bytes`, `string` and dynamic arrays `T[]` of any of them. Decoding
//! is as strict as solc's (dirty high bits, a bool other than 0/1, an offset or length
//! outside the data all fail), so a contract rejects exactly what its Solidity twin rejects.

use crate::keccak::TypeName;
use crate::word::{Address, B256, U256};
use alloc::string::String;
use alloc::vec::Vec;

/// Why bytes did not decode. A dispatcher turns it into the empty revert solc gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbiError {
    /// The data ends before the value does.
    Short,
    /// A value out of its type's range (dirty high bits, a bool that is not 0 or 1).
    Range,
    /// An offset or length that points outside the data.
    Offset,
    /// A `string` that is not UTF-8.
    Utf8,
}

/// `bytes` (a dynamic byte string; `Vec<u8>` would be `uint8[]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

/// A value that can be ABI-encoded (object safe, so argument lists are `&[&dyn Encode]`).
pub trait Encode {
    /// Whether the value lives in the tail (with an offset in the head).
    fn is_dynamic(&self) -> bool;
    /// A static value's 32-byte head word.
    fn encode_static(&self, out: &mut Vec<u8>);
    /// A dynamic value's tail (length and contents).
    fn encode_tail(&self, out: &mut Vec<u8>);
}

/// A Solidity type: its name (for selectors) and how to decode it.
pub trait AbiType: Encode + Sized {
    const NAME: TypeName;
    const DYNAMIC: bool;
    /// The value whose head word is at `data[head..head + 32]`; `data` starts where the
    /// enclosing tuple starts (offsets are relative to it).
    fn decode_at(data: &[u8], head: usize) -> Result<Self, AbiError>;
}

fn word_at(data: &[u8], at: usize) -> Result<&[u8; 32], AbiError> {
    let end = at.checked_add(32).ok_or(AbiError::Short)?;
    data.get(at..end)
        .and_then(|w| <&[u8; 32]>::try_from(w).ok())
        .ok_or(AbiError::Short)
}

/// A word that must be a small offset or length (solc rejects anything ≥ 2^64; here it
/// must also fit the data, checked by the caller).
fn usize_at(data: &[u8], at: usize) -> Result<usize, AbiError> {
    let w = word_at(data, at)?;
    let v = U256::from_be_bytes(*w).to_u64().ok_or(AbiError::Offset)?;
    usize::try_from(v).map_err(|_| AbiError::Offset)
}

/// The tail a dynamic value's head word points to.
fn tail_at(data: &[u8], head: usize) -> Result<&[u8], AbiError> {
    let offset = usize_at(data, head)?;
    data.get(offset..).ok_or(AbiError::Offset)
}

/// Length-prefixed bytes at the start of `tail`.
fn bytes_in(tail: &[u8]) -> Result<&[u8], AbiError> {
    let len = usize_at(tail, 0)?;
    let end = len.checked_add(32).ok_or(AbiError::Offset)?;
    tail.get(32..end).ok_or(AbiError::Offset)
}

fn push_padded(out: &mut Vec<u8>, bytes: &[u8]) {
    U256::from_u64(bytes.len() as u64).encode_static(out);
    out.extend_from_slice(bytes);
    let pad = (32 - bytes.len() % 32) % 32;
    out.extend(core::iter::repeat(0u8).take(pad));
}

macro_rules! static_word_type {
    ($ty:ty, $name:expr, |$v:ident| $to_word:expr, |$w:ident| $from_word:expr) => {
        impl Encode for $ty {
            fn is_dynamic(&self) -> bool {
                false
            }
            fn encode_static(&self, out: &mut Vec<u8>) {
                let $v = self;
                let word: [u8; 32] = $to_word;
                out.extend_from_slice(&word);
            }
            fn encode_tail(&self, _out: &mut Vec<u8>) {}
        }
        impl AbiType for $ty {
            const NAME: TypeName = TypeName::of($name);
            const DYNAMIC: bool = false;
            fn decode_at(data: &[u8], head: usize) -> Result<Self, AbiError> {
                let $w = word_at(data, head)?;
                $from_word
            }
        }
    };
}

static_word_type!(U256, "uint256", |v| v.to_be_bytes(), |w| Ok(
    U256::from_be_bytes(*w)
));
static_word_type!(B256, "bytes32", |v| *v, |w| Ok(*w));
static_word_type!(Address, "address", |v| v.to_word(), |w| Address::from_word(
    w
)
.ok_or(AbiError::Range));
static_word_type!(bool, "bool", |v| U256::from(*v).to_be_bytes(), |w| {
    match U256::from_be_bytes(*w).to_u64() {
        Some(0) => Ok(false),
        Some(1) => Ok(true),
        _ => Err(AbiError::Range),
    }
});

macro_rules! uint_type {
    ($ty:ty, $name:expr) => {
        static_word_type!(
            $ty,
            $name,
            |v| U256::from(u128::from(*v)).to_be_bytes(),
            |w| {
                let v = U256::from_be_bytes(*w).to_u64().ok_or(AbiError::Range)?;
                <$ty>::try_from(v).map_err(|_| AbiError::Range)
            }
        );
    };
}
uint_type!(u8, "uint8");
uint_type!(u16, "uint16");
uint_type!(u32, "uint32");
uint_type!(u64, "uint64");
static_word_type!(u128, "uint128", |v| U256::from(*v).to_be_bytes(), |w| {
    let v = U256::from_be_bytes(*w);
    if v.bits() > 128 {
        return Err(AbiError::Range);
    }
    let b = v.to_be_bytes();
    let mut low = [0u8; 16];
    low.copy_from_slice(&b[16..]);
    Ok(u128::from_be_bytes(low))
});

impl Encode for Bytes {
    fn is_dynamic(&self) -> bool {
        true
    }
    fn encode_static(&self, _out: &mut Vec<u8>) {}
    fn encode_tail(&self, out: &mut Vec<u8>) {
        push_padded(out, &self.0);
    }
}

impl AbiType for Bytes {
    const NAME: TypeName = TypeName::of("bytes");
    const DYNAMIC: bool = true;
    fn decode_at(data: &[u8], head: usize) -> Result<Self, AbiError> {
        Ok(Bytes(bytes_in(tail_at(data, head)?)?.to_vec()))
    }
}

impl Encode for String {
    fn is_dynamic(&self) -> bool {
        true
    }
    fn encode_static(&self, _out: &mut Vec<u8>) {}
    fn encode_tail(&self, out: &mut Vec<u8>) {
        push_padded(out, self.as_bytes());
    }
}

impl AbiType for String {
    const NAME: TypeName = TypeName::of("string");
    const DYNAMIC: bool = true;
    fn decode_at(data: &[u8], head: usize) -> Result<Self, AbiError> {
        let raw = bytes_in(tail_at(data, head)?)?;
        String::from_utf8(raw.to_vec()).map_err(|_| AbiError::Utf8)
    }
}

impl<T: AbiType> Encode for Vec<T> {
    fn is_dynamic(&self) -> bool {
        true
    }
    fn encode_static(&self, _out: &mut Vec<u8>) {}
    fn encode_tail(&self, out: &mut Vec<u8>) {
        U256::from_u64(self.len() as u64).encode_static(out);
        let items: Vec<&dyn Encode> = self.iter().map(|v| v as &dyn Encode).collect();
        out.extend_from_slice(&encode_seq(&items));
    }
}

impl<T: AbiType> AbiType for Vec<T> {
    const NAME: TypeName = T::NAME.array_of();
    const DYNAMIC: bool = true;
    fn decode_at(data: &[u8], head: usize) -> Result<Self, AbiError> {
        let tail = tail_at(data, head)?;
        let len = usize_at(tail, 0)?;
        let items = &tail[32..];
        // Every element has at least a 32-byte head: a length the data cannot hold is
        // refused before anything is allocated for it.
        if len > items.len() / 32 {
            return Err(AbiError::Offset);
        }
        let mut out = Vec::with_capacity(len);
        for i in 0..len {
            out.push(T::decode_at(items, 32 * i)?);
        }
        Ok(out)
    }
}

/// How an `indexed` event field becomes a topic: a value type as its 32-byte word,
/// `bytes`/`string` as the keccak256 of their contents (Solidity's rule).
pub trait Topic {
    fn topic(&self) -> B256;
}

macro_rules! word_topic {
    ($($ty:ty),*) => {$(
        impl Topic for $ty {
            fn topic(&self) -> B256 {
                let mut w = Vec::with_capacity(32);
                self.encode_static(&mut w);
                let mut out = [0u8; 32];
                out.copy_from_slice(&w);
                out
            }
        }
    )*};
}
word_topic!(U256, B256, Address, bool, u8, u16, u32, u64, u128);

impl Topic for Bytes {
    fn topic(&self) -> B256 {
        crate::host::keccak256(&self.0)
    }
}

impl Topic for String {
    fn topic(&self) -> B256 {
        crate::host::keccak256(self.as_bytes())
    }
}

/// The ABI encoding of a tuple of values: heads, then the tails they point to.
pub fn encode_seq(items: &[&dyn Encode]) -> Vec<u8> {
    let head_len = 32 * items.len();
    let mut head = Vec::with_capacity(head_len);
    let mut tail = Vec::new();
    for item in items {
        if item.is_dynamic() {
            U256::from_u64((head_len + tail.len()) as u64).encode_static(&mut head);
            item.encode_tail(&mut tail);
        } else {
            item.encode_static(&mut head);
        }
    }
    head.extend_from_slice(&tail);
    head
}

/// `selector ‖ encode(args)`: calldata, or a custom error's revert data.
pub fn encode_call(selector: [u8; 4], args: &[&dyn Encode]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 32 * args.len());
    out.extend_from_slice(&selector);
    out.extend_from_slice(&encode_seq(args));
    out
}

/// Builds `selector ‖ words` for static arguments (used for Panic).
#[derive(Debug)]
pub struct Encoder {
    pub head: Vec<u8>,
}

impl Encoder {
    pub fn with_selector(selector: [u8; 4]) -> Encoder {
        Encoder {
            head: selector.to_vec(),
        }
    }
    pub fn finish(self) -> Vec<u8> {
        self.head
    }
}

/// What a method returns or a typed call decodes: one value, `()` or a tuple.
pub trait AbiReturn: Sized {
    /// Bytes the encoding always has when no member is dynamic (`None` otherwise): a typed
    /// call copies only these from the callee's output, as solc does.
    const STATIC_BYTES: Option<usize>;
    fn encode_return(&self) -> Vec<u8>;
    fn decode_return(data: &[u8]) -> Result<Self, AbiError>;
}

impl AbiReturn for () {
    const STATIC_BYTES: Option<usize> = Some(0);
    fn encode_return(&self) -> Vec<u8> {
        Vec::new()
    }
    fn decode_return(_data: &[u8]) -> Result<(), AbiError> {
        Ok(())
    }
}

macro_rules! single_return {
    ($($ty:ty),*) => {$(
        impl AbiReturn for $ty {
            const STATIC_BYTES: Option<usize> =
                if <$ty as AbiType>::DYNAMIC { None } else { Some(32) };
            fn encode_return(&self) -> Vec<u8> {
                encode_seq(&[self])
            }
            fn decode_return(data: &[u8]) -> Result<Self, AbiError> {
                <$ty>::decode_at(data, 0)
            }
        }
    )*};
}
single_return!(U256, B256, Address, bool, u8, u16, u32, u64, u128, Bytes, String);

impl<T: AbiType> AbiReturn for Vec<T> {
    const STATIC_BYTES: Option<usize> = None;
    fn encode_return(&self) -> Vec<u8> {
        encode_seq(&[self])
    }
    fn decode_return(data: &[u8]) -> Result<Self, AbiError> {
        Self::decode_at(data, 0)
    }
}

macro_rules! tuple_return {
    ($($name:ident $index:tt),*) => {
        impl<$($name: AbiType),*> AbiReturn for ($($name,)*) {
            const STATIC_BYTES: Option<usize> =
                if $($name::DYNAMIC)||* { None } else { Some(32 * [$($index),*].len()) };
            fn encode_return(&self) -> Vec<u8> {
                encode_seq(&[$(&self.$index),*])
            }
            fn decode_return(data: &[u8]) -> Result<Self, AbiError> {
                Ok(($($name::decode_at(data, 32 * $index)?,)*))
            }
        }
    };
}
tuple_return!(A 0, B 1);
tuple_return!(A 0, B 1, C 2);
tuple_return!(A 0, B 1, C 2, D 3);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn dynamic_values_round_trip_with_solidity_layout() {
        let s = String::from("router: mode 2");
        let enc = encode_seq(&[&U256::from_u64(7), &s, &vec![Address([9; 20])]]);
        // Heads: 7, offset 0x60, offset 0xa0; string tail: 14, text; array tail: 1, address.
        assert_eq!(enc.len(), 3 * 32 + 64 + 64);
        assert_eq!(
            U256::from_be_bytes(*word_at(&enc, 32).unwrap()),
            U256::from_u64(0x60)
        );
        assert_eq!(String::decode_at(&enc, 32).unwrap(), s);
        assert_eq!(
            Vec::<Address>::decode_at(&enc, 64).unwrap(),
            vec![Address([9; 20])]
        );
    }

    #[test]
    fn strict_like_solc() {
        let mut dirty = [0u8; 32];
        dirty[0] = 1;
        assert_eq!(Address::decode_at(&dirty, 0), Err(AbiError::Range));
        assert_eq!(
            bool::decode_at(&U256::from_u64(2).to_be_bytes(), 0),
            Err(AbiError::Range)
        );
        assert_eq!(u64::decode_at(&dirty, 0), Err(AbiError::Range));
        assert_eq!(U256::decode_at(&dirty[..31], 0), Err(AbiError::Short));
        // An array that claims 2^40 elements in 64 bytes is refused without allocating.
        let mut huge = U256::from_u64(32).to_be_bytes().to_vec();
        huge.extend_from_slice(&U256::from_u64(1 << 40).to_be_bytes());
        assert_eq!(Vec::<U256>::decode_at(&huge, 0), Err(AbiError::Offset));
        // An offset past the end.
        let far = U256::from_u64(4096).to_be_bytes();
        assert_eq!(Bytes::decode_at(&far, 0), Err(AbiError::Offset));
    }
}
