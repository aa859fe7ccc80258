use keel_types::{DecodeError, Epoch, Height, StateKey};

/// Errors from the store. `Corrupt` means the database contradicts itself (a bug or disk
/// damage): callers must halt rather than continue on wrong state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("rocksdb: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    #[error("decoding stored {what}: {source}")]
    Decode {
        what: &'static str,
        source: DecodeError,
    },
    #[error("commit out of order: next height is {expected}, got {got}")]
    NotNextHeight { expected: Height, got: Height },
    #[error("height {height} is not committed yet (latest is {latest:?})")]
    FutureHeight {
        height: Height,
        latest: Option<Height>,
    },
    #[error("height {height} was pruned (oldest retained is {oldest})")]
    Pruned { height: Height, oldest: Height },
    /// The entry expired: a typed outcome for the transaction or query that touched it.
    /// `leaf` is its archive leaf while its stub is in the tree; `None` once the stub was
    /// folded into a fold page (then `epoch` is the newest epoch of the page that flags it).
    #[error(
        "{key} expired in epoch {epoch}; revive it with `keel query proof` then `keel tx revive`"
    )]
    Expired {
        key: StateKey,
        epoch: Epoch,
        leaf: Option<u64>,
    },
    #[error("merkle tree: {0}")]
    Tree(String),
    #[error("value for {key} is {len_bytes} bytes, over the bound of {max_bytes}")]
    ValueTooLarge {
        key: String,
        len_bytes: usize,
        max_bytes: usize,
    },
}

impl StateError {
    pub(crate) fn decode(what: &'static str) -> impl FnOnce(DecodeError) -> StateError {
        move |source| StateError::Decode { what, source }
    }
}
