//! keel-state: the state layer the execution environments see — the `StateView` trait, the
//! block `Overlay` with its journal and diff, the stored `Entry` encoding and `StateError` —
//! with no storage engine behind it (the RocksDB store is `keel-store`, beside it).

#![forbid(unsafe_code)]

mod archive;
mod entry;
mod error;
pub mod fold;
mod overlay;

pub use archive::ArchiveBatch;
pub use entry::{encode_live, Entry, EntryKind, ValueStamp, ENTRY_OVERHEAD_BYTES};
pub use error::StateError;
pub use overlay::{
    decode_entry, holds_storage, layered_storage_entries, live_value, Checkpoint, Overlay,
    OverlayParts, Stamped, StateDiff, StateView, StateViewExt,
};
