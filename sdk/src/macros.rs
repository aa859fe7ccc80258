//! Declarative macros (no proc-macro crate, so the SDK builds with any rustc from 1.63,
//! including the one that targets wasm32 here): `contract!` for the entry point and method
//! dispatch by Solidity selector, `interface!` for typed calls to any contract (EVM or
//! WASM), `sol_event!` and `sol_error!` for logs and custom errors. Names are Solidity's
//! (`balanceOf`, not `balance_of`), so selectors are computed from what the author wrote.

/// Turns an `impl` block of a `storage!` struct into a contract.
///
/// Every `pub fn name(&mut self, args...) -> Result<T, Revert>` becomes the external
/// function `name(types...)`; `#[payable]` lets it receive value (otherwise value reverts
/// with no data, as solc does); one `#[constructor]` method runs at deploy. Calldata that
/// is too short, has no known selector, or does not decode as solc would reverts with no
/// data. On wasm32 it exports `call` and `deploy`; natively it implements
/// `keel_sdk::Contract` for the test VM.
#[macro_export]
macro_rules! contract {
    (
        impl $ty:ident {
            $(
                $(#[$($attr:tt)*])*
                pub fn $name:ident (&mut $self:ident $(, $arg:ident : $argty:ty)* $(,)?)
                    -> $ret:ty $body:block
            )*
        }
    ) => {
        #[allow(non_snake_case)]
        impl $ty {
            $(
                pub fn $name(&mut $self $(, $arg: $argty)*) -> $ret $body
            )*
        }

        // Two methods with one selector would shadow each other silently; solc refuses
        // that at compile time, and so does this (a const panic, stable since 1.57).
        const _: () = $crate::entry::assert_distinct_selectors(&[
            $($crate::keccak::selector(
                stringify!($name),
                &[$(<$argty as $crate::abi::AbiType>::NAME),*],
            )),*
        ]);

        #[allow(non_snake_case, unreachable_code)]
        impl $crate::Contract for $ty {
            fn dispatch(input: &[u8]) -> ::core::result::Result<$crate::alloc::vec::Vec<u8>, $crate::Revert> {
                #[allow(unused_mut)]
                let mut this = <$ty as $crate::storage::Layout>::layout();
                if input.len() < 4 {
                    return Err($crate::Revert::empty());
                }
                let selector = [input[0], input[1], input[2], input[3]];
                let args = &input[4..];
                $(
                    $crate::__contract_method!(
                        {$([$($attr)*])*} false, this, selector, args, $name, ($($arg : $argty),*)
                    );
                )*
                let _ = (selector, args);
                Err($crate::Revert::empty())
            }

            fn construct(input: &[u8]) -> ::core::result::Result<(), $crate::Revert> {
                #[allow(unused_mut)]
                let mut this = <$ty as $crate::storage::Layout>::layout();
                $(
                    $crate::__contract_constructor!(
                        {$([$($attr)*])*} false, false, this, input, $name, ($($arg : $argty),*)
                    );
                )*
                // No constructor: Solidity's default one, which takes no value.
                let _ = (&mut this, input);
                $crate::entry::require_no_value()
            }
        }

        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn call(len: i32) -> i32 {
            $crate::entry::call::<$ty>(len)
        }

        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn deploy(len: i32) -> i32 {
            $crate::entry::deploy::<$ty>(len)
        }
    };
}

/// Decodes arguments as solc does; any failure is the empty revert.
#[doc(hidden)]
#[macro_export]
macro_rules! __decode_args {
    ($args:ident, ($($arg:ident : $argty:ty),*)) => {
        #[allow(unused_mut, unused_variables)]
        let mut head = 0usize;
        $(
            let $arg = match <$argty as $crate::abi::AbiType>::decode_at($args, head) {
                Ok(v) => v,
                Err(_) => return Err($crate::Revert::empty()),
            };
            #[allow(unused_assignments)]
            {
                head += 32;
            }
        )*
    };
}

/// One method's arm of the dispatcher. The first argument is the method's attributes,
/// munched one at a time: `[constructor]` leaves it out of dispatch, `[payable]` lets it
/// take value, anything else (doc comments) is ignored.
#[doc(hidden)]
#[macro_export]
macro_rules! __contract_method {
    ({[constructor] $($attrs:tt)*} $($rest:tt)*) => {};
    ({[payable] $($attrs:tt)*} $payable:tt, $($rest:tt)*) => {
        $crate::__contract_method!({$($attrs)*} true, $($rest)*);
    };
    ({[doc = $doc:expr] $($attrs:tt)*} $($rest:tt)*) => {
        $crate::__contract_method!({$($attrs)*} $($rest)*);
    };
    // Anything else would be dropped from the method, and a dropped `#[cfg(test)]` would
    // put a test-only method into the deployed contract: refuse it.
    ({[$($other:tt)*] $($attrs:tt)*} $($rest:tt)*) => {
        compile_error!(concat!(
            "contract!: methods take only #[payable], #[constructor] and doc comments, not #[",
            stringify!($($other)*),
            "]"
        ));
    };
    ({} $payable:tt, $this:ident, $sel:ident, $args:ident, $name:ident, ($($arg:ident : $argty:ty),*)) => {
        {
            const SELECTOR: [u8; 4] = $crate::keccak::selector(
                stringify!($name),
                &[$(<$argty as $crate::abi::AbiType>::NAME),*],
            );
            if $sel == SELECTOR {
                if !$payable {
                    $crate::entry::require_no_value()?;
                }
                $crate::__decode_args!($args, ($($arg : $argty),*));
                let out = $this.$name($($arg),*)?;
                return Ok($crate::abi::AbiReturn::encode_return(&out));
            }
        }
    };
}

/// The constructor's call, if this method is it: `{attrs} is_constructor, payable, ...`.
#[doc(hidden)]
#[macro_export]
macro_rules! __contract_constructor {
    ({[constructor] $($attrs:tt)*} $is:tt, $payable:tt, $($rest:tt)*) => {
        $crate::__contract_constructor!({$($attrs)*} true, $payable, $($rest)*);
    };
    ({[payable] $($attrs:tt)*} $is:tt, $payable:tt, $($rest:tt)*) => {
        $crate::__contract_constructor!({$($attrs)*} $is, true, $($rest)*);
    };
    ({[$($other:tt)*] $($attrs:tt)*} $($rest:tt)*) => {
        $crate::__contract_constructor!({$($attrs)*} $($rest)*);
    };
    ({} false, $($rest:tt)*) => {};
    ({} true, $payable:tt, $this:ident, $input:ident, $name:ident, ($($arg:ident : $argty:ty),*)) => {
        if !$payable {
            $crate::entry::require_no_value()?;
        }
        $crate::__decode_args!($input, ($($arg : $argty),*));
        return $this.$name($($arg),*).map(|_| ());
    };
}

/// Declares another contract's functions and generates a typed caller for them; the callee
/// may run in either environment. `#[view]` functions use `static_call`.
///
/// ```ignore
/// keel_sdk::interface! {
///     pub struct IToken {
///         fn transfer(to: Address, value: U256) -> bool;
///         #[view] fn balanceOf(owner: Address) -> U256;
///     }
/// }
/// let ok = IToken::at(token).transfer(to, amount)?; // a revert bubbles with `?`
/// ```
#[macro_export]
macro_rules! interface {
    (
        $(#[$meta:meta])*
        $vis:vis struct $iface:ident {
            $(
                $(#[$($attr:tt)*])*
                fn $name:ident ($($arg:ident : $argty:ty),* $(,)?) $(-> $ret:ty)?;
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug)]
        #[allow(dead_code)]
        $vis struct $iface {
            /// The callee.
            pub address: $crate::Address,
            /// Native value sent with each call (default 0).
            pub value: $crate::U256,
            /// Gas limit per call (default 0: all that may be forwarded).
            pub gas: u64,
        }

        #[allow(non_snake_case, clippy::unused_unit, dead_code)]
        impl $iface {
            pub fn at(address: $crate::Address) -> Self {
                $iface { address, value: $crate::U256::ZERO, gas: 0 }
            }
            pub fn with_value(mut self, value: $crate::U256) -> Self {
                self.value = value;
                self
            }
            pub fn with_gas(mut self, gas: u64) -> Self {
                self.gas = gas;
                self
            }
            $(
                pub fn $name(&self $(, $arg: $argty)*)
                    -> ::core::result::Result<$crate::__ret_or_unit!($($ret)?), $crate::Revert>
                {
                    const SELECTOR: [u8; 4] = $crate::keccak::selector(
                        stringify!($name),
                        &[$(<$argty as $crate::abi::AbiType>::NAME),*],
                    );
                    let input = $crate::abi::encode_call(
                        SELECTOR,
                        &[$(&$arg as &dyn $crate::abi::Encode),*],
                    );
                    let ok = $crate::__interface_call!({$([$($attr)*])*} false, self, input);
                    let size = $crate::host::last_return_size();
                    if !ok {
                        // The callee's revert data, whole, so `?` bubbles it unchanged.
                        return Err($crate::Revert($crate::host::last_return_copy(0, size)));
                    }
                    // Only what the declared type reads (solc's rule): a callee returning
                    // more cannot make this frame copy it.
                    let want = match <$crate::__ret_or_unit!($($ret)?) as $crate::abi::AbiReturn>::STATIC_BYTES {
                        Some(n) => n.min(size),
                        None => size,
                    };
                    let out = $crate::host::last_return_copy(0, want);
                    <$crate::__ret_or_unit!($($ret)?) as $crate::abi::AbiReturn>::decode_return(&out)
                        .map_err(|_| $crate::Revert::empty())
                }
            )*
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __ret_or_unit {
    () => {
        ()
    };
    ($ret:ty) => {
        $ret
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __interface_call {
    ({[view] $($attrs:tt)*} $view:tt, $($rest:tt)*) => {
        $crate::__interface_call!({$($attrs)*} true, $($rest)*)
    };
    ({[$($other:tt)*] $($attrs:tt)*} $($rest:tt)*) => {
        $crate::__interface_call!({$($attrs)*} $($rest)*)
    };
    ({} true, $this:ident, $input:ident) => {
        $crate::host::static_call_status($this.address, &$input, $this.gas)
    };
    ({} false, $this:ident, $input:ident) => {
        $crate::host::call_status($this.address, $this.value, &$input, $this.gas)
    };
}

/// A Solidity event: `#[indexed]` fields become topics (after the signature's hash), the
/// others the ABI-encoded data. `ev.emit()` logs it.
///
/// ```ignore
/// keel_sdk::sol_event! {
///     pub struct Transfer { #[indexed] from: Address, #[indexed] to: Address, value: U256 }
/// }
/// ```
#[macro_export]
macro_rules! sol_event {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$idx:ident])? $field:ident : $fty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug)]
        #[allow(non_snake_case)]
        $vis struct $name {
            $(pub $field: $fty),*
        }

        impl $name {
            /// keccak256 of the event's signature (topic 0).
            pub const TOPIC: $crate::B256 = $crate::keccak::signature_hash(
                stringify!($name),
                &[$(<$fty as $crate::abi::AbiType>::NAME),*],
            );

            /// Topics and data, as the log carries them.
            pub fn encode(&self) -> ($crate::alloc::vec::Vec<$crate::B256>, $crate::alloc::vec::Vec<u8>) {
                #[allow(unused_mut)]
                let mut topics = $crate::alloc::vec![Self::TOPIC];
                #[allow(unused_mut)]
                let mut data: $crate::alloc::vec::Vec<&dyn $crate::abi::Encode> =
                    $crate::alloc::vec::Vec::new();
                $( $crate::__event_field!([$($idx)?] topics, data, &self.$field); )*
                (topics, $crate::abi::encode_seq(&data))
            }

            pub fn emit(&self) {
                let (topics, data) = self.encode();
                $crate::host::emit_log(&topics, &data);
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __event_field {
    ([indexed] $topics:ident, $data:ident, $value:expr) => {
        $topics.push($crate::abi::Topic::topic($value));
    };
    ([] $topics:ident, $data:ident, $value:expr) => {
        $data.push($value as &dyn $crate::abi::Encode);
    };
}

/// A Solidity custom error; `Err(MyError { .. }.into())` reverts with its selector and
/// ABI-encoded fields, exactly as `revert MyError(..)` does.
///
/// ```ignore
/// keel_sdk::sol_error! { pub struct InsufficientBalance { available: U256, required: U256 } }
/// ```
#[macro_export]
macro_rules! sol_error {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident { $($field:ident : $fty:ty),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug)]
        #[allow(non_snake_case)]
        $vis struct $name {
            $(pub $field: $fty),*
        }

        impl $name {
            pub const SELECTOR: [u8; 4] = $crate::keccak::selector(
                stringify!($name),
                &[$(<$fty as $crate::abi::AbiType>::NAME),*],
            );
        }

        impl $crate::revert::SolError for $name {
            fn encode(&self) -> $crate::alloc::vec::Vec<u8> {
                $crate::abi::encode_call(Self::SELECTOR, &[$(&self.$field as &dyn $crate::abi::Encode),*])
            }
        }
    };
}
