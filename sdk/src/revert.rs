//! Reverts shaped as Solidity's: custom errors (`error Name(args)`, see `sol_error!`),
//! `Error(string)` from `revert("...")`/`require`, `Panic(uint256)` from checked
//! arithmetic, and the empty revert solc gives for bad calldata or an unknown selector.

use crate::abi::{Encode, Encoder};
use alloc::vec::Vec;

/// Arithmetic overflow or underflow (Solidity's checked `+ - *`).
pub const PANIC_OVERFLOW: u64 = 0x11;
/// Division or modulo by zero.
pub const PANIC_DIVISION_BY_ZERO: u64 = 0x12;
/// Out-of-bounds array access.
pub const PANIC_OUT_OF_BOUNDS: u64 = 0x32;

/// The data a failed call returns. A method's `Err(Revert)` reverts its frame with these
/// bytes; a typed call that fails returns the callee's data here, so `?` bubbles it as
/// Solidity's `revert(add(ret, 32), mload(ret))` would.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Revert(pub Vec<u8>);

impl Revert {
    /// No data (what solc reverts with for bad calldata or value sent to a non-payable
    /// function).
    pub fn empty() -> Revert {
        Revert(Vec::new())
    }

    /// `Error(string)`, as `revert("message")` and `require(cond, "message")`.
    pub fn message(text: &str) -> Revert {
        Revert(crate::abi::encode_call(
            crate::keccak::selector("Error", &[crate::keccak::TypeName::of("string")]),
            &[&alloc::string::String::from(text) as &dyn crate::abi::Encode],
        ))
    }

    /// `Panic(uint256 code)`, as solc's checked arithmetic and assertions.
    pub fn panic(code: u64) -> Revert {
        let mut enc = Encoder::with_selector(crate::keccak::selector(
            "Panic",
            &[crate::keccak::TypeName::of("uint256")],
        ));
        crate::U256::from_u64(code).encode_static(&mut enc.head);
        Revert(enc.finish())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl core::fmt::Debug for Revert {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Revert(0x")?;
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// A Solidity custom error (declared with `sol_error!`).
pub trait SolError {
    /// Selector ‖ ABI-encoded arguments.
    fn encode(&self) -> Vec<u8>;
}

impl<E: SolError> From<E> for Revert {
    fn from(e: E) -> Revert {
        Revert(e.encode())
    }
}

/// Stops the frame now with `Panic(code)`, as solc's checked arithmetic does.
pub fn panic(code: u64) -> ! {
    crate::host::revert(&Revert::panic(code).0)
}
