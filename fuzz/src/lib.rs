//! keel-fuzz: one fuzz target per decoder of untrusted bytes (transactions, p2p frames and
//! messages, sync responses, WASM modules, revival/unflag proofs, RPC parameters, receipts
//! and blocks), shared by the CI smoke test (`tests/smoke.rs`) and the libFuzzer campaign
//! (`fuzz/libfuzzer`, `scripts/fuzz`).
//!
//! A target is `fn(&[u8])`. It feeds the bytes to the same entry point the node calls on
//! peer, client or transaction bytes, and panics only on a real bug: a decoder panicking, a
//! round trip that does not hold (`decode(b) = Ok(x)` ⇒ `decode(encode(x)) == x`, and for a
//! canonical encoding `encode(x) == b`), or two checks of one input disagreeing.

pub mod mutate;
pub mod seeds;

mod consensus;
mod engine;
mod p2p;
mod proof;
mod tx;
mod wasm;

#[cfg(feature = "node")]
mod node;

pub use consensus::{block_roundtrip, consensus_message, receipt_roundtrip};
pub use engine::{consensus_engine, consensus_engine_tip};
#[cfg(feature = "node")]
pub use node::{net_message, rpc_params};
pub use p2p::p2p_preauth;
pub use proof::{revival_proof, unflag_proof};
pub use tx::{agent_tx, eth_tx};
pub use wasm::{wasm_compile, wasm_validate};

/// The chain id the targets decode for; the seed corpus is signed for it.
pub const FUZZ_CHAIN_ID: u64 = 7;
/// The base fee the targets decode Ethereum envelopes against.
pub const FUZZ_BASE_FEE: u128 = 1_000_000_000;

/// A fuzz target: panics only on a bug.
pub type Target = fn(&[u8]);

/// Every target, by the name its corpus directory (`fuzz/corpus/<name>`) and its libFuzzer
/// binary carry.
pub const TARGETS: &[(&str, Target)] = &[
    ("agent_tx", agent_tx),
    ("eth_tx", eth_tx),
    ("consensus_message", consensus_message),
    ("consensus_engine", consensus_engine),
    ("block_roundtrip", block_roundtrip),
    ("receipt_roundtrip", receipt_roundtrip),
    ("revival_proof", revival_proof),
    ("unflag_proof", unflag_proof),
    ("p2p_preauth", p2p_preauth),
    ("wasm_validate", wasm_validate),
    ("wasm_compile", wasm_compile),
    #[cfg(feature = "node")]
    ("net_message", net_message),
    #[cfg(feature = "node")]
    ("rpc_params", rpc_params),
];

/// Checks the round trip of a canonical type on bytes that decoded: re-encoding gives the
/// same bytes (the encoding is canonical) and they decode to the same value.
fn assert_canonical<T>(bytes: &[u8], value: &T)
where
    T: keel_types::Canonical + PartialEq + std::fmt::Debug,
{
    let encoded = value.encode();
    assert_eq!(
        encoded,
        bytes,
        "{}: encode(decode(b)) != b (non-canonical input accepted)",
        T::KIND
    );
    let again = T::decode(&encoded).expect("a re-encoded value decodes");
    assert_eq!(&again, value, "{}: decode(encode(x)) != x", T::KIND);
}
