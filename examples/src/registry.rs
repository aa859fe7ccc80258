//! Storage-heavy key → value registry: contracts/evm/Registry.sol in Rust.

use keel_sdk::prelude::*;

const MAX_RANGE: U256 = U256::from_u64(32);

storage! {
    pub struct Registry {
        values: StorageMap<U256, StorageU256>,
        count: StorageU256,
    }
}

sol_event! {
    pub struct Set { #[indexed] key: U256, value: U256 }
}
sol_error! { pub struct TooMany { n: U256 } }

contract! {
    impl Registry {
        pub fn set(&mut self, key: U256, value: U256) -> Result<(), Revert> {
            self.put(key, value);
            Ok(())
        }

        /// Writes `value` under keys start .. start+n-1 (start + i may not overflow).
        pub fn setRange(&mut self, start: U256, n: U256, value: U256) -> Result<(), Revert> {
            if n > MAX_RANGE {
                return Err(TooMany { n }.into());
            }
            for i in 0..n.low_u64() {
                self.put(start + U256::from_u64(i), value);
            }
            Ok(())
        }

        pub fn get(&mut self, key: U256) -> Result<U256, Revert> {
            Ok(self.values.get(key))
        }

        pub fn count(&mut self) -> Result<U256, Revert> {
            Ok(self.count.get())
        }
    }
}

impl Registry {
    fn put(&mut self, key: U256, value: U256) {
        let old = self.values.get(key);
        self.values.set(key, value);
        if old.is_zero() && !value.is_zero() {
            self.count.set(self.count.get() + U256::ONE);
        }
        if !old.is_zero() && value.is_zero() {
            self.count.set(self.count.get() - U256::ONE);
        }
        Set { key, value }.emit();
    }
}
