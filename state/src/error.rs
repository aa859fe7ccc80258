use keel_types::{DecodeError, Epoch, Height, StateKey};

/// Errors from reading or writing state. `Corrupt` means the database contradicts itself (a
/// bug or disk damage): callers must halt rather than continue on wrong state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The storage engine failed (its own error, boxed so this crate names no engine).
    #[error("storage engine: {0}")]
    Db(#[source] Box<dyn std::error::Error + Send + Sync>),
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
    /// Wraps a storage engine's error.
    pub fn db(error: impl std::error::Error + Send + Sync + 'static) -> StateError {
        StateError::Db(Box::new(error))
    }

    /// A `map_err` adapter for a stored value of kind `what` that fails to decode.
    pub fn decode(what: &'static str) -> impl FnOnce(DecodeError) -> StateError {
        move |source| StateError::Decode { what, source }
    }
}
