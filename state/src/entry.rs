//! What the authenticated tree stores under a key: a live value with the epoch it was last
//! touched, or the stub an expired entry leaves behind.
//!
//! The touch epoch lives in the leaf so that it is authenticated like the value (a node
//! cannot expire an entry early without changing the root). The stub stays in the active tree
//! so that touching an expired entry is a typed error rather than a zero, and it names the
//! archive leaf so that only the latest archived version can come back (docs/expiry.md).

use crate::error::StateError;
use keel_types::Epoch;

const TAG_LIVE: u8 = 0;
const TAG_EXPIRED: u8 = 1;
/// Tag and epoch.
const LIVE_HEADER_BYTES: usize = 1 + 8;
/// Tag, epoch and leaf index.
const STUB_BYTES: usize = 1 + 8 + 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Live {
        touched_epoch: Epoch,
        value: Vec<u8>,
    },
    /// Expired in `epoch`; its last value is leaf `leaf` of the archive.
    Expired { epoch: Epoch, leaf: u64 },
}

impl Entry {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Entry::Live {
                touched_epoch,
                value,
            } => encode_live(*touched_epoch, value),
            Entry::Expired { epoch, leaf } => {
                let mut out = Vec::with_capacity(STUB_BYTES);
                out.push(TAG_EXPIRED);
                out.extend(epoch.to_be_bytes());
                out.extend(leaf.to_be_bytes());
                out
            }
        }
    }

    pub fn decode(raw: &[u8]) -> Result<Entry, StateError> {
        let corrupt = || StateError::Corrupt(format!("state entry of {} bytes", raw.len()));
        let epoch_at = |at: usize| -> Result<u64, StateError> {
            raw.get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(corrupt)
        };
        match raw.first() {
            Some(&TAG_LIVE) if raw.len() >= LIVE_HEADER_BYTES => Ok(Entry::Live {
                touched_epoch: epoch_at(1)?,
                value: raw[LIVE_HEADER_BYTES..].to_vec(),
            }),
            Some(&TAG_EXPIRED) if raw.len() == STUB_BYTES => Ok(Entry::Expired {
                epoch: epoch_at(1)?,
                leaf: epoch_at(9)?,
            }),
            _ => Err(corrupt()),
        }
    }

    /// What `raw` is — live (with its touch epoch) or a stub (with its expiry epoch) —
    /// checked like [`Entry::decode`] but without copying the value.
    pub fn kind(raw: &[u8]) -> Result<EntryKind, StateError> {
        let corrupt = || StateError::Corrupt(format!("state entry of {} bytes", raw.len()));
        let epoch = raw
            .get(1..9)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or_else(corrupt)?;
        match raw.first() {
            Some(&TAG_LIVE) => Ok(EntryKind::Live {
                touched_epoch: epoch,
            }),
            Some(&TAG_EXPIRED) if raw.len() == STUB_BYTES => Ok(EntryKind::Expired { epoch }),
            _ => Err(corrupt()),
        }
    }

    /// The touch epoch of a live entry.
    pub fn touched_epoch(raw: &[u8]) -> Option<Epoch> {
        match Entry::decode(raw) {
            Ok(Entry::Live { touched_epoch, .. }) => Some(touched_epoch),
            _ => None,
        }
    }
}

/// Names one stored value for caches of what values decode to ([`StateView::get_stamped`]): each
/// is taken once from one counter of the process, so equal stamps, from any views of any
/// store, name the same bytes.
///
/// [`StateView::get_stamped`]: crate::StateView::get_stamped
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueStamp(u64);

impl ValueStamp {
    /// A stamp no value had before.
    pub fn fresh() -> ValueStamp {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        // 2^64 stamps are never taken; Relaxed: only uniqueness matters, not order.
        ValueStamp(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

/// An entry's kind and epoch ([`Entry::kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Live { touched_epoch: Epoch },
    Expired { epoch: Epoch },
}

pub fn encode_live(touched_epoch: Epoch, value: &[u8]) -> Vec<u8> {
    let mut out = live_header(touched_epoch, value.len());
    out.extend(value);
    out
}

/// A live entry's header, with room for a value of `value_bytes` to be appended: an
/// encoded live entry once the value is.
pub fn live_header(touched_epoch: Epoch, value_bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(LIVE_HEADER_BYTES + value_bytes);
    out.extend(live_header_bytes(touched_epoch));
    out
}

/// A live entry's header bytes (what [`live_header`] starts a buffer with).
pub fn live_header_bytes(touched_epoch: Epoch) -> [u8; LIVE_HEADER_BYTES] {
    let mut header = [TAG_LIVE; LIVE_HEADER_BYTES];
    header[1..].copy_from_slice(&touched_epoch.to_be_bytes());
    header
}

/// Bytes an encoded live entry adds to its value.
pub const ENTRY_OVERHEAD_BYTES: usize = LIVE_HEADER_BYTES;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_garbage_is_a_typed_error() {
        for e in [
            Entry::Live {
                touched_epoch: 7,
                value: vec![],
            },
            Entry::Live {
                touched_epoch: u64::MAX,
                value: vec![1; 40],
            },
            Entry::Expired { epoch: 3, leaf: 99 },
        ] {
            assert_eq!(Entry::decode(&e.encode()).expect("round trip"), e);
            let kind = match &e {
                Entry::Live { touched_epoch, .. } => EntryKind::Live {
                    touched_epoch: *touched_epoch,
                },
                Entry::Expired { epoch, .. } => EntryKind::Expired { epoch: *epoch },
            };
            assert_eq!(Entry::kind(&e.encode()).expect("kind"), kind);
        }
        for raw in [
            &[][..],
            &[0, 1, 2][..],
            &[1; 16][..],
            &[1; 18][..],
            &[2; 20][..],
        ] {
            assert!(matches!(Entry::decode(raw), Err(StateError::Corrupt(_))));
            assert!(matches!(Entry::kind(raw), Err(StateError::Corrupt(_))));
        }
    }
}
