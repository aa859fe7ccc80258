//! keel-pruning: protocol memory — the expiry sweep and folding inside block execution, the
//! revival and unflag checks, and the pruner's policy — over the primitives `keel-state`
//! exposes (`StateView`, `Overlay`, fold-page reads, the archive batch). docs/expiry.md
//! argues the design; the RocksDB side (touch index, archive column, deletes) is `keel-store`.

#![forbid(unsafe_code)]

pub mod expiry;
pub mod policy;
pub mod revival;

pub use expiry::{fee_recipient, sealed_archive, sweep, MAX_EXPIRIES_PER_BLOCK};
pub use policy::{
    retained, snapshot_floor, History, PrunePolicy, PruneStep, Pruner, MIN_RETAIN_HEIGHTS,
    PRUNED_AUX_PREFIXES, SNAPSHOT_TIP_AUX_PREFIX,
};
pub use revival::{
    apply_revival, check_revival, check_unflag, revival_gas, ProofCheck, Restore, REVIVAL_BASE_GAS,
    REVIVAL_GAS_PER_BYTE,
};

/// The block overlay the sweep and revival write through.
type Ov<'a> = keel_state::Overlay<&'a dyn keel_state::StateView>;
