//! Constant-product swap pool over two virtual reserves (0.3% fee): contracts/evm/Amm.sol
//! in Rust. The SDK's U256 is checked like Solidity's, so the formula is written as is.

use keel_sdk::prelude::*;

const MAX_AMOUNT: U256 = U256::from_u64(1 << 24);
const MAX_RESERVE: U256 = U256::from_u64(1 << 26);

storage! {
    pub struct Amm {
        reserve0: StorageU256,
        reserve1: StorageU256,
        shares: StorageMap<Address, StorageU256>,
        total_shares: StorageU256,
    }
}

sol_event! {
    pub struct Liquidity { #[indexed] who: Address, amount0: U256, amount1: U256 }
}
sol_event! {
    pub struct Swap { #[indexed] who: Address, zero_for_one: U256, amount_in: U256, amount_out: U256 }
}
sol_error! { pub struct TooLarge {} }
sol_error! { pub struct EmptyPool {} }
sol_error! { pub struct Slippage { amount_out: U256, min_out: U256 } }

contract! {
    impl Amm {
        pub fn addLiquidity(&mut self, amount0: U256, amount1: U256) -> Result<(), Revert> {
            if amount0 > MAX_AMOUNT || amount1 > MAX_AMOUNT {
                return Err(TooLarge {}.into());
            }
            let r0 = self.reserve0.get() + amount0;
            let r1 = self.reserve1.get() + amount1;
            if r0 > MAX_RESERVE || r1 > MAX_RESERVE {
                return Err(TooLarge {}.into());
            }
            self.reserve0.set(r0);
            self.reserve1.set(r1);
            let who = host::caller();
            let added = amount0 + amount1;
            self.shares.set(who, self.shares.get(who) + added);
            self.total_shares.set(self.total_shares.get() + added);
            Liquidity { who, amount0, amount1 }.emit();
            Ok(())
        }

        pub fn swap(&mut self, zero_for_one: U256, amount_in: U256, min_out: U256) -> Result<U256, Revert> {
            if amount_in.is_zero() || amount_in > MAX_AMOUNT {
                return Err(TooLarge {}.into());
            }
            let dir = !zero_for_one.is_zero();
            let (r_in, r_out) = if dir {
                (self.reserve0.get(), self.reserve1.get())
            } else {
                (self.reserve1.get(), self.reserve0.get())
            };
            if r_in.is_zero() || r_out.is_zero() {
                return Err(EmptyPool {}.into());
            }
            let fee_in = amount_in * U256::from_u64(997);
            let out = (fee_in * r_out) / (r_in * U256::from_u64(1000) + fee_in);
            if out < min_out {
                return Err(Slippage { amount_out: out, min_out }.into());
            }
            if r_in + amount_in > MAX_RESERVE {
                return Err(TooLarge {}.into());
            }
            if dir {
                self.reserve0.set(r_in + amount_in);
                self.reserve1.set(r_out - out);
            } else {
                self.reserve1.set(r_in + amount_in);
                self.reserve0.set(r_out - out);
            }
            Swap { who: host::caller(), zero_for_one: U256::from(dir), amount_in, amount_out: out }.emit();
            Ok(out)
        }

        pub fn reserve0(&mut self) -> Result<U256, Revert> {
            Ok(self.reserve0.get())
        }

        pub fn reserve1(&mut self) -> Result<U256, Revert> {
            Ok(self.reserve1.get())
        }

        pub fn shares(&mut self, who: Address) -> Result<U256, Revert> {
            Ok(self.shares.get(who))
        }

        pub fn totalShares(&mut self) -> Result<U256, Revert> {
            Ok(self.total_shares.get())
        }
    }
}
