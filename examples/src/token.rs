//! ERC-20-style token: contracts/evm/Token.sol in Rust.

use keel_sdk::prelude::*;

storage! {
    pub struct Token {
        balances: StorageMap<Address, StorageU256>,
        allowances: StorageMap<Address, StorageMap<Address, StorageU256>>,
        total_supply: StorageU256,
    }
}

sol_event! {
    pub struct Transfer { #[indexed] from: Address, #[indexed] to: Address, value: U256 }
}
sol_event! {
    pub struct Approval { #[indexed] owner: Address, #[indexed] spender: Address, value: U256 }
}
sol_error! { pub struct InsufficientBalance { available: U256, required: U256 } }
sol_error! { pub struct InsufficientAllowance { available: U256, required: U256 } }

contract! {
    impl Token {
        #[constructor]
        pub fn init(&mut self, supply: U256) -> Result<(), Revert> {
            let owner = host::caller();
            self.balances.set(owner, supply);
            self.total_supply.set(supply);
            Transfer { from: Address::ZERO, to: owner, value: supply }.emit();
            Ok(())
        }

        pub fn transfer(&mut self, to: Address, value: U256) -> Result<bool, Revert> {
            self.move_tokens(host::caller(), to, value)?;
            Ok(true)
        }

        pub fn approve(&mut self, spender: Address, value: U256) -> Result<bool, Revert> {
            let owner = host::caller();
            self.allowances.entry(owner).set(spender, value);
            Approval { owner, spender, value }.emit();
            Ok(true)
        }

        pub fn transferFrom(&mut self, from: Address, to: Address, value: U256) -> Result<bool, Revert> {
            let allowance = self.allowances.entry(from).entry(host::caller());
            let allowed = allowance.get();
            if allowed < value {
                return Err(InsufficientAllowance { available: allowed, required: value }.into());
            }
            allowance.set(allowed - value);
            self.move_tokens(from, to, value)?;
            Ok(true)
        }

        pub fn balanceOf(&mut self, owner: Address) -> Result<U256, Revert> {
            Ok(self.balances.get(owner))
        }

        pub fn allowance(&mut self, owner: Address, spender: Address) -> Result<U256, Revert> {
            Ok(self.allowances.entry(owner).get(spender))
        }

        pub fn totalSupply(&mut self) -> Result<U256, Revert> {
            Ok(self.total_supply.get())
        }
    }
}

impl Token {
    fn move_tokens(&mut self, from: Address, to: Address, value: U256) -> Result<(), Revert> {
        let available = self.balances.get(from);
        if available < value {
            return Err(InsufficientBalance {
                available,
                required: value,
            }
            .into());
        }
        self.balances.set(from, available - value);
        // Checked: reverts with Panic(0x11) on overflow, as Solidity's `+=`.
        let to_balance = self.balances.get(to);
        self.balances.set(to, to_balance + value);
        Transfer { from, to, value }.emit();
        Ok(())
    }
}
