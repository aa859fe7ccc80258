//! The SDK checked against independent implementations (alloy's keccak and ruint's U256),
//! the Solidity ABI specification's own example, Solidity's storage layout rules, and the
//! test VM's rules for reverts, static frames, value, depth and gas.

#![allow(clippy::unwrap_used)]

extern crate std;

use crate::abi::{encode_call, encode_seq, AbiType, Bytes};
use crate::keccak::{keccak256, selector_of};
use crate::prelude::*;
use crate::testvm::TestVm;
use alloc::string::ToString;
use alloc::vec;
use proptest::prelude::*;

type Ruint = alloy_primitives::U256;

fn to_ruint(v: U256) -> Ruint {
    Ruint::from_be_bytes(v.to_be_bytes())
}

fn arb_u256() -> impl Strategy<Value = U256> {
    prop_oneof![
        any::<[u8; 32]>().prop_map(U256::from_be_bytes),
        any::<u64>().prop_map(U256::from_u64),
        any::<u128>().prop_map(U256::from_u128),
        Just(U256::MAX),
        Just(U256::ZERO),
    ]
}

proptest! {
    #[test]
    fn keccak_matches_alloy(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        prop_assert_eq!(keccak256(&data), alloy_primitives::keccak256(&data).0);
    }

    #[test]
    fn u256_matches_ruint(a in arb_u256(), b in arb_u256()) {
        let (ra, rb) = (to_ruint(a), to_ruint(b));
        let (sum, o) = a.overflowing_add(b);
        prop_assert_eq!((to_ruint(sum), o), ra.overflowing_add(rb));
        let (diff, o) = a.overflowing_sub(b);
        prop_assert_eq!((to_ruint(diff), o), ra.overflowing_sub(rb));
        let (product, o) = a.overflowing_mul(b);
        prop_assert_eq!((to_ruint(product), o), ra.overflowing_mul(rb));
        match a.checked_div_rem(b) {
            Some((q, r)) => {
                let (rq, rr) = ra.div_rem(rb);
                prop_assert_eq!((to_ruint(q), to_ruint(r)), (rq, rr));
            }
            None => prop_assert!(b.is_zero()),
        }
        prop_assert_eq!(a.cmp(&b), ra.cmp(&rb));
        prop_assert_eq!(a.to_string(), ra.to_string());
        prop_assert_eq!(a.bits() as usize, ra.bit_len());
    }

    #[test]
    fn abi_round_trips(
        words in proptest::collection::vec(arb_u256(), 0..5),
        nested in proptest::collection::vec(proptest::collection::vec(any::<u64>(), 0..4), 0..4),
        text in ".{0,70}",
        raw in proptest::collection::vec(any::<u8>(), 0..80),
        flag in any::<bool>(),
        who in any::<[u8; 20]>(),
    ) {
        let text = String::from(text.as_str());
        let raw = Bytes(raw);
        let enc = encode_seq(&[&words, &nested, &text, &raw, &flag, &Address(who)]);
        prop_assert_eq!(Vec::<U256>::decode_at(&enc, 0).unwrap(), words);
        prop_assert_eq!(Vec::<Vec<u64>>::decode_at(&enc, 32).unwrap(), nested);
        prop_assert_eq!(String::decode_at(&enc, 64).unwrap(), text);
        prop_assert_eq!(Bytes::decode_at(&enc, 96).unwrap(), raw);
        prop_assert_eq!(bool::decode_at(&enc, 128).unwrap(), flag);
        prop_assert_eq!(Address::decode_at(&enc, 160).unwrap(), Address(who));
        prop_assert_eq!(enc.len() % 32, 0);
    }

    /// Hostile bytes never panic the decoder; they decode or give a typed error.
    #[test]
    fn abi_decoding_arbitrary_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200), head in 0usize..256) {
        let _ = Vec::<Vec<String>>::decode_at(&data, head);
        let _ = Bytes::decode_at(&data, head);
        let _ = <(U256, Bytes) as crate::AbiReturn>::decode_return(&data);
    }
}

/// The example of the Solidity ABI specification: g([[1, 2], [3]], ["one", "two", "three"]).
#[test]
fn abi_matches_the_specification_example() {
    let hex_words = [
        "40",
        "140",
        "2",
        "40",
        "a0",
        "2",
        "1",
        "2",
        "1",
        "3",
        "3",
        "60",
        "a0",
        "e0",
        "3",
        "6f6e65",
        "3",
        "74776f",
        "5",
        "7468726565",
    ];
    let mut expected = vec![0x22, 0x89, 0xb1, 0x8c];
    for (i, w) in hex_words.iter().enumerate() {
        let bytes: Vec<u8> = (0..w.len() / 2)
            .map(|j| u8::from_str_radix(&w[2 * j..2 * j + 2], 16).unwrap())
            .collect();
        let mut word = [0u8; 32];
        let padded = if w.len() % 2 == 1 {
            let v = u64::from_str_radix(w, 16).unwrap();
            U256::from_u64(v).to_be_bytes()
        } else if [15, 17, 19].contains(&i) {
            word[..bytes.len()].copy_from_slice(&bytes); // string contents: left-aligned
            word
        } else {
            word[32 - bytes.len()..].copy_from_slice(&bytes);
            word
        };
        expected.extend_from_slice(&padded);
    }
    let nested: Vec<Vec<U256>> = vec![
        vec![U256::from_u64(1), U256::from_u64(2)],
        vec![U256::from_u64(3)],
    ];
    let strings: Vec<String> = ["one", "two", "three"]
        .iter()
        .map(|s| String::from(*s))
        .collect();
    let sel = crate::keccak::selector("g", &[<Vec<Vec<U256>>>::NAME, <Vec<String>>::NAME]);
    assert_eq!(sel, selector_of("g(uint256[][],string[])"));
    assert_eq!(encode_call(sel, &[&nested, &strings]), expected);
}

crate::storage! {
    pub struct Layouts {
        a: StorageU256,
        xs: StorageVec<StorageU256>,
        b: StorageBytes,
        s: StorageString,
        nested: StorageMap<Address, StorageMap<U256, StorageU256>>,
    }
}

crate::sol_event! { pub struct Poked { #[indexed] who: Address, note: String } }

crate::interface! {
    pub struct ISelf {
        fn deep(n: U256) -> U256;
        fn notes() -> U256;
    }
}

crate::interface! {
    /// The same contract seen through a view: calls are static.
    pub struct IReadOnly {
        #[view]
        fn write(v: U256);
    }
}

crate::contract! {
    impl Layouts {
        pub fn write(&mut self, v: U256) -> Result<(), Revert> {
            self.a.set(v);
            Poked { who: host::caller(), note: String::from("written") }.emit();
            Ok(())
        }

        /// Calls `write` on itself through a static call: the write must fail.
        pub fn readOnlyWrite(&mut self, v: U256) -> Result<(), Revert> {
            IReadOnly::at(host::address()).write(v)
        }

        /// Recurses through calls to itself n times; returns the depth reached.
        pub fn deep(&mut self, n: U256) -> Result<U256, Revert> {
            if n.is_zero() {
                return Ok(U256::ZERO);
            }
            match ISelf::at(host::address()).deep(n - U256::ONE) {
                Ok(d) => Ok(d + U256::ONE),
                Err(_) => Ok(U256::ZERO),
            }
        }

        #[payable]
        pub fn pay(&mut self) -> Result<(), Revert> {
            Ok(())
        }

        pub fn layout(&mut self) -> Result<(), Revert> {
            self.xs.push(U256::from_u64(7));
            self.xs.push(U256::from_u64(8));
            self.b.set(&[0xab; 40]);
            self.s.set("short");
            self.nested.entry(Address([1; 20])).set(U256::from_u64(5), U256::from_u64(9));
            Ok(())
        }

        /// Returns `n` bytes (more than the host's `MAX_IO_BYTES` traps).
        pub fn big(&mut self, n: U256) -> Result<Bytes, Revert> {
            Ok(Bytes(vec![7u8; n.low_u64() as usize]))
        }

        /// A Rust panic: on chain an `unreachable` trap.
        pub fn boom(&mut self, i: U256) -> Result<U256, Revert> {
            let small = [1u64, 2, 3];
            Ok(U256::from_u64(small[i.low_u64() as usize]))
        }

        /// The caller's jurisdiction codes, concatenated.
        pub fn whoTags(&mut self) -> Result<Bytes, Revert> {
            Ok(Bytes(host::caller_tags().concat()))
        }

        /// The transaction's session key (zero when none signed).
        pub fn session(&mut self) -> Result<B256, Revert> {
            Ok(host::tx_session_key().unwrap_or([0; 32]))
        }

        /// The session key's scope words (empty when none signed).
        pub fn scope(&mut self) -> Result<Bytes, Revert> {
            Ok(Bytes(host::tx_session_scope().map_or_else(Vec::new, |s| s.to_vec())))
        }

        pub fn shrink(&mut self) -> Result<U256, Revert> {
            let popped = self.xs.pop().unwrap_or(U256::ZERO);
            self.b.set(b"tiny");
            Ok(popped)
        }
    }
}

const ME: Address = Address([0xee; 20]);

fn slot(n: u64) -> B256 {
    U256::from_u64(n).to_be_bytes()
}

fn plus(base: B256, n: u64) -> B256 {
    (U256::from_be_bytes(base) + U256::from_u64(n)).to_be_bytes()
}

#[test]
fn storage_is_laid_out_as_solidity_lays_it_out() {
    let vm = TestVm::new();
    let c = vm.deploy::<Layouts>(ME, &[]).unwrap();
    vm.call(
        ME,
        c,
        U256::ZERO,
        &encode_call(selector_of("layout()"), &[]),
    )
    .unwrap();
    // xs (slot 1): length 2 in the slot, elements from keccak(slot).
    assert_eq!(vm.storage(c, slot(1)), slot(2));
    let base = keccak256(&slot(1));
    assert_eq!(vm.storage(c, base), slot(7));
    assert_eq!(vm.storage(c, plus(base, 1)), slot(8));
    // b (slot 2): 40 bytes, long form: 2·40 + 1 in the slot, data from keccak(slot).
    assert_eq!(vm.storage(c, slot(2)), slot(81));
    let data = keccak256(&slot(2));
    assert_eq!(vm.storage(c, data), [0xab; 32]);
    let mut tail = [0u8; 32];
    tail[..8].copy_from_slice(&[0xab; 8]);
    assert_eq!(vm.storage(c, plus(data, 1)), tail);
    // s (slot 3): short form, text left-aligned, 2·len in the last byte.
    let mut short = [0u8; 32];
    short[..5].copy_from_slice(b"short");
    short[31] = 10;
    assert_eq!(vm.storage(c, slot(3)), short);
    // nested[0x0101..][5] (slot 4) = keccak(5 ‖ keccak(addr ‖ 4)).
    let mut inner = Address([1; 20]).to_word().to_vec();
    inner.extend_from_slice(&slot(4));
    let mut outer = slot(5).to_vec();
    outer.extend_from_slice(&keccak256(&inner));
    assert_eq!(vm.storage(c, keccak256(&outer)), slot(9));
    // pop clears the element; a shorter bytes value clears the long form's slots.
    vm.call(
        ME,
        c,
        U256::ZERO,
        &encode_call(selector_of("shrink()"), &[]),
    )
    .unwrap();
    assert_eq!(vm.storage(c, plus(base, 1)), [0; 32]);
    assert_eq!(vm.storage(c, data), [0; 32]);
    assert_eq!(vm.storage(c, plus(data, 1)), [0; 32]);
    let mut tiny = [0u8; 32];
    tiny[..4].copy_from_slice(b"tiny");
    tiny[31] = 8;
    assert_eq!(vm.storage(c, slot(2)), tiny);
}

#[test]
fn test_vm_enforces_static_frames_value_depth_and_gas() {
    let vm = TestVm::new();
    let c = vm.deploy::<Layouts>(ME, &[]).unwrap();
    let call = |sig: &str, args: &[&dyn crate::abi::Encode]| {
        vm.call(ME, c, U256::ZERO, &encode_call(selector_of(sig), args))
    };
    // A write inside a static call fails the inner frame; the outer reverts with its data
    // (empty: a trap), and nothing is written.
    assert_eq!(
        call("readOnlyWrite(uint256)", &[&U256::ONE]),
        Err(Revert::empty())
    );
    assert_eq!(vm.storage(c, slot(0)), [0; 32]);
    assert!(vm.logs().is_empty());
    call("write(uint256)", &[&U256::ONE]).unwrap();
    let logs = vm.take_logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].topics[0], keccak256(b"Poked(address,string)"));
    assert_eq!(logs[0].topics[1], ME.to_word());
    assert_eq!(String::decode_at(&logs[0].data, 0).unwrap(), "written");
    // Depth: 64 frames that run contracts at most.
    let depth = call("deep(uint256)", &[&U256::from_u64(200)]).unwrap();
    assert_eq!(
        U256::from_be_bytes(depth[..32].try_into().unwrap()),
        U256::from_u64(63)
    );
    // Value: only to payable functions; a refused value stays with the sender.
    vm.set_balance(ME, U256::from_u64(100));
    let pay = encode_call(selector_of("pay()"), &[]);
    vm.call(ME, c, U256::from_u64(40), &pay).unwrap();
    assert_eq!(
        (vm.balance(ME), vm.balance(c)),
        (U256::from_u64(60), U256::from_u64(40))
    );
    let write = encode_call(selector_of("write(uint256)"), &[&U256::ONE]);
    assert_eq!(vm.call(ME, c, U256::ONE, &write), Err(Revert::empty()));
    assert_eq!(
        vm.call(ME, c, U256::from_u64(61), &pay),
        Err(Revert::empty()),
        "not enough"
    );
    assert_eq!(vm.balance(ME), U256::from_u64(60));
    // Gas: a cold SSTORE of a new value costs more than 20,000; with less the frame fails.
    let write2 = encode_call(selector_of("write(uint256)"), &[&U256::from_u64(2)]);
    assert_eq!(
        vm.call_with_gas(ME, c, U256::ZERO, &write2, 3_000),
        Err(Revert::empty())
    );
    assert_eq!(
        vm.last_gas_used(),
        3_000,
        "a failed frame spends all its gas"
    );
    assert_eq!(vm.storage(c, slot(0)), slot(1));
    vm.call_with_gas(ME, c, U256::ZERO, &write2, 100_000)
        .unwrap();
    assert!(vm.last_gas_used() > 2_900 && vm.last_gas_used() < 20_000);
    // Mocks stand in for code the VM cannot run (an EVM contract).
    let evm = Address([0x0e; 20]);
    let notes = encode_call(selector_of("notes()"), &[]);
    vm.mock_call(evm, &notes, Ok(U256::from_u64(3).to_be_bytes().to_vec()));
    let got = vm.as_caller(ME, || ISelf::at(evm).notes()).unwrap();
    assert_eq!(got, U256::from_u64(3));
    vm.mock_call(evm, &notes, Ok(vec![1, 2]));
    assert_eq!(
        vm.as_caller(ME, || ISelf::at(evm).notes()),
        Err(Revert::empty()),
        "bad output"
    );
}

#[test]
fn test_vm_tells_traps_from_reverts_and_bounds_io() {
    let vm = TestVm::new();
    let c = vm.deploy::<Layouts>(ME, &[]).unwrap();
    let call = |sig: &str, n: u64| {
        vm.call_with_gas(
            ME,
            c,
            U256::ZERO,
            &encode_call(selector_of(sig), &[&U256::from_u64(n)]),
            1_000_000,
        )
    };
    assert!(call("boom(uint256)", 1).is_ok());
    assert!(!vm.last_trapped());
    assert_eq!(call("boom(uint256)", 9), Err(Revert::empty()));
    assert!(vm.last_trapped(), "a panic is a trap");
    assert_eq!(vm.last_gas_used(), 1_000_000, "a trap spends all the gas");
    // An unknown selector is a revert, not a trap.
    assert_eq!(
        vm.call(ME, c, U256::ZERO, &[1, 2, 3, 4]),
        Err(Revert::empty())
    );
    assert!(!vm.last_trapped());
    // Output up to the host's bound works; past it the frame traps, as on chain.
    let out = call("big(uint256)", 200_000).expect("within the bound");
    assert_eq!(Bytes::decode_at(&out, 0).unwrap().0.len(), 200_000);
    assert!(call("big(uint256)", 300_000) == Err(Revert::empty()));
    assert!(vm.last_trapped());
}

/// Selector collisions are refused at compile time; here the check itself, on the
/// classic pair `transfer(address,uint256)` / the same signature twice.
#[test]
fn duplicate_selectors_are_caught() {
    let t = selector_of("transfer(address,uint256)");
    crate::entry::assert_distinct_selectors(&[t, selector_of("approve(address,uint256)")]);
    let dup = std::panic::catch_unwind(|| crate::entry::assert_distinct_selectors(&[t, t]));
    assert!(dup.is_err());
}

/// `host::caller_tags` and `host::tx_session_key` on the test VM: what `set_tags` and
/// `set_session_key` say, for the frame's caller (a contract in between is the caller).
#[test]
fn test_vm_reports_caller_tags_and_the_session_key() {
    let vm = TestVm::new();
    let c = vm.deploy::<Layouts>(ME, &[]).unwrap();
    vm.set_tags(ME, vec![*b"US", *b"CH", *b"US"]);
    let out = vm
        .call(
            ME,
            c,
            U256::ZERO,
            &encode_call(selector_of("whoTags()"), &[]),
        )
        .expect("call");
    assert_eq!(Bytes::decode_at(&out, 0).unwrap().0, b"CHUS".to_vec());
    let other = Address([0x0b; 20]);
    let out = vm
        .call(
            other,
            c,
            U256::ZERO,
            &encode_call(selector_of("whoTags()"), &[]),
        )
        .expect("call");
    assert!(Bytes::decode_at(&out, 0).unwrap().0.is_empty());
    let session = |vm: &TestVm| {
        vm.call(
            ME,
            c,
            U256::ZERO,
            &encode_call(selector_of("session()"), &[]),
        )
        .expect("call")
    };
    assert_eq!(session(&vm), vec![0u8; 32]);
    vm.set_session_key(Some([7; 32]));
    assert_eq!(session(&vm), vec![7u8; 32]);
    let scope = |vm: &TestVm| {
        let out = vm
            .call(ME, c, U256::ZERO, &encode_call(selector_of("scope()"), &[]))
            .expect("call");
        Bytes::decode_at(&out, 0).unwrap().0
    };
    assert!(scope(&vm).is_empty());
    let words: Vec<u8> = (0..crate::host::SESSION_SCOPE_BYTES)
        .map(|i| i as u8)
        .collect();
    vm.set_session_scope(Some(words.clone().try_into().unwrap()));
    assert_eq!(scope(&vm), words);
}
