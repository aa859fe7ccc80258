//! The glue between keel's entry points (`call(len) -> i32`, `deploy(len) -> i32`) and a
//! contract's typed methods, which `contract!` generates.

use crate::revert::Revert;
use alloc::vec::Vec;

/// A contract `contract!` was applied to: how calldata reaches its methods.
pub trait Contract {
    /// Runs the method `input`'s selector names; `Ok(output)` or `Err(revert data)`.
    fn dispatch(input: &[u8]) -> Result<Vec<u8>, Revert>;
    /// Runs the constructor with the deploy arguments.
    fn construct(input: &[u8]) -> Result<(), Revert>;
}

/// Body of the exported `call`: read the input, dispatch, return or revert.
pub fn call<C: Contract>(len: i32) -> i32 {
    let input = crate::host::read_input(usize::try_from(len).unwrap_or(0));
    match C::dispatch(&input) {
        Ok(output) => {
            crate::host::return_data(&output);
            0
        }
        Err(revert) => crate::host::revert(&revert.0),
    }
}

/// Body of the exported `deploy`.
pub fn deploy<C: Contract>(len: i32) -> i32 {
    let input = crate::host::read_input(usize::try_from(len).unwrap_or(0));
    match C::construct(&input) {
        Ok(()) => 0,
        Err(revert) => crate::host::revert(&revert.0),
    }
}

/// A value sent to a non-payable method or constructor reverts with no data (solc's rule).
pub fn require_no_value() -> Result<(), Revert> {
    if crate::host::call_value().is_zero() {
        Ok(())
    } else {
        Err(Revert::empty())
    }
}

/// Fails compilation (in a `const`) when two methods share a selector.
pub const fn assert_distinct_selectors(selectors: &[[u8; 4]]) {
    let mut i = 0;
    while i < selectors.len() {
        let mut j = i + 1;
        while j < selectors.len() {
            let (a, b) = (selectors[i], selectors[j]);
            if a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] {
                panic!("contract!: two methods have the same Solidity selector");
            }
            j += 1;
        }
        i += 1;
    }
}
