//! keel-app: the application core between consensus and the runtime — which blocks from
//! peers may be stored before consensus judges them (admit), execution ahead of finality and
//! the commit sequence (chain), block validity (validity, charge), proposal building
//! (propose), what is kept and served for catch-up (sync), and the blocks voted for that a
//! restart needs (voted). No sockets, timers or clock: the node's driver feeds it and passes
//! the time in.

#![forbid(unsafe_code)]

pub mod admit;
pub mod chain;
pub mod charge;
pub mod core;
pub mod epoch_proof;
pub mod genesis;
pub mod mempool;
pub mod next_epoch;
pub mod propose;
mod rate;
pub mod sync;
pub mod validity;
pub mod voted;

pub use chain::{
    body_matches_header, Chain, ChainError, ChainObserver, NoObserver, ParentInfo,
    MAX_UNFINALIZED_BLOCKS, MAX_UNFINALIZED_BLOCK_BYTES,
};
pub use validity::{BlockRules, EpochBounds, Verdict, MAX_FUTURE_DRIFT_MS};
