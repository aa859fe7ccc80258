//! Relays a token transfer to a token in either environment and shows what an inner revert
//! rolls back: contracts/evm/Router.sol in Rust.

use keel_sdk::prelude::*;

storage! {
    pub struct Router {
        relays: StorageU256,
        last_ok: StorageU256,
    }
}

const TRANSFER: [u8; 4] = keel_sdk::keccak::selector_of("transfer(address,uint256)");

interface! {
    /// Any ERC-20, EVM or WASM.
    pub struct IToken {
        fn transfer(to: Address, value: U256) -> bool;
        #[view]
        fn balanceOf(owner: Address) -> U256;
    }
}

sol_event! {
    pub struct Relayed { #[indexed] token: Address, ok: U256 }
}

contract! {
    impl Router {
        /// mode 0: bubble an inner revert; 1: record the inner failure and carry on;
        /// 2: revert after the inner call succeeded (rolling the callee back too).
        pub fn relay(&mut self, token: Address, to: Address, amount: U256, mode: U256) -> Result<(), Revert> {
            self.relays.set(self.relays.get() + U256::ONE);
            // A raw call, as Router.sol's `token.call(...)`: success means the callee did
            // not revert, whatever it returned (a typed `IToken` call would also fail on
            // output that does not decode as a bool).
            // Nothing is copied back unless mode 0 bubbles a revert: a token that returns
            // or reverts with a lot of data cannot run this frame out of memory.
            let input = keel_sdk::abi::encode_call(TRANSFER, &[&to, &amount]);
            let ok = host::call_status(token, U256::ZERO, &input, 0);
            if !ok && mode.is_zero() {
                return Err(Revert(host::last_return_copy(0, host::last_return_size())));
            }
            let ok = U256::from(ok);
            self.last_ok.set(ok);
            Relayed { token, ok }.emit();
            if mode == U256::from_u64(2) {
                return Err(Revert::message("router: mode 2"));
            }
            Ok(())
        }

        pub fn relays(&mut self) -> Result<U256, Revert> {
            Ok(self.relays.get())
        }

        pub fn lastOk(&mut self) -> Result<U256, Revert> {
            Ok(self.last_ok.get())
        }
    }
}
