//! What a chunk's arrival says about its server, beyond its proof: whether it filled the
//! chunk as far as the request let it ([`Fill`]), and whether it answered in about the time
//! the others take ([`Pace`]). A server that fails the first is dropped (an honest one
//! never does); one that fails the second only rests (an honest one can be slow).

use super::client::last_key_hash;
use super::SnapshotSyncError;
use keel_types::SnapshotChunk;
use std::collections::VecDeque;

/// Chunk answer times kept to judge the next one by.
const PACE_SAMPLES: usize = 16;
/// Answer times needed before any answer is judged slow.
const PACE_MIN_SAMPLES: usize = 3;
/// An answer is slow when it took more than this many times the median of the others...
const SLOW_FACTOR: u64 = 4;
/// ...and more than this (answers of a few ms vary by more than the factor).
const SLOW_FLOOR_MS: u64 = 5_000;

/// How far a written chunk was filled, kept until the chunk after it shows whether its
/// server stopped where it had to (`keel_types::proof::snapshot_chunk_filled`).
pub(super) struct Fill {
    pub(super) peer: u16,
    /// The budget the request asked for (every chunk request of a sync asks the same).
    pub(super) max_bytes: usize,
    pub(super) entries: usize,
    pub(super) bytes: usize,
    pub(super) first_entry_bytes: usize,
    /// The key hash it ends at: only a chunk that starts right after it holds the entry
    /// it stopped short of.
    pub(super) last_key: Option<[u8; 32]>,
}

impl Fill {
    pub(super) fn of(peer: u16, chunk: &SnapshotChunk, max_bytes: usize) -> Fill {
        // Key bytes as sent: a `StateKey` has one encoding (fixed-width fields, and
        // `from_bytes` takes the whole slice), the one the server stored and counted.
        let size = |(k, v): &(Vec<u8>, Vec<u8>)| keel_types::proof::snapshot_entry_bytes(k, v);
        Fill {
            peer,
            max_bytes,
            entries: chunk.entries.len(),
            bytes: chunk.entries.iter().map(size).sum(),
            first_entry_bytes: chunk.entries.first().map(size).unwrap_or(0),
            last_key: last_key_hash(chunk).map(|h| h.0),
        }
    }

    /// The server of this chunk and why, if `next` — a verified chunk asked after
    /// `next_after` — shows it stopped short. Only when `next_after` is this chunk's last
    /// key: after a chunk that failed its proof the restore rewinds to its last stored
    /// leaf (jmt keeps a chunk's last leaf open until the next key arrives), and the chunk
    /// asked then starts with this chunk's own last entry, which says nothing of the
    /// entry this chunk stopped before.
    pub(super) fn check(
        self,
        next_after: Option<[u8; 32]>,
        next: &Fill,
    ) -> Option<(u16, SnapshotSyncError)> {
        if self.last_key.is_none() || next_after != self.last_key {
            return None;
        }
        let filled = keel_types::proof::snapshot_chunk_filled(
            self.max_bytes,
            self.entries,
            self.bytes,
            next.first_entry_bytes,
        );
        (!filled).then(|| {
            (
                self.peer,
                SnapshotSyncError::UnderfilledChunk {
                    entries: self.entries,
                    bytes: self.bytes,
                    next: next.first_entry_bytes,
                    budget: keel_types::proof::snapshot_chunk_budget(self.max_bytes),
                },
            )
        })
    }
}

/// How long chunk answers take, to rest a server that answers each request just inside the
/// request timeout: valid, full chunks, each costing the restore a timeout's wait (one in
/// as many chunks as there are peers). A slow answer is still used; its server rests until
/// every peer has, like one that let a request time out. The times are of answers judged
/// not slow, so a slow server does not raise the bar it is judged by; a Byzantine server
/// can lower it only by answering fast with full, valid chunks, which carries the restore.
#[derive(Debug, Default)]
pub(super) struct Pace {
    samples_ms: VecDeque<u64>,
}

impl Pace {
    /// Whether an answer that took `took_ms` is slow; one that is not is kept as a sample.
    pub(super) fn slow(&mut self, took_ms: u64) -> bool {
        if self.samples_ms.len() >= PACE_MIN_SAMPLES {
            let mut sorted: Vec<u64> = self.samples_ms.iter().copied().collect();
            sorted.sort_unstable();
            let median = sorted[sorted.len() / 2];
            if took_ms > SLOW_FLOOR_MS && took_ms > median.saturating_mul(SLOW_FACTOR) {
                return true;
            }
        }
        if self.samples_ms.len() == PACE_SAMPLES {
            self.samples_ms.pop_front();
        }
        self.samples_ms.push_back(took_ms);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_far_slower_than_the_others_is_slow_and_not_a_sample() {
        let mut pace = Pace::default();
        // Too few samples to judge by: a slow first answer passes (and is kept).
        assert!(!pace.slow(20_000));
        assert!(!pace.slow(40));
        assert!(!pace.slow(60));
        // Median 60 ms: 20 s is slow, and is not kept (the median stays).
        assert!(pace.slow(20_000));
        assert!(pace.slow(20_000));
        // Under the floor is never slow, however many times the median.
        assert!(!pace.slow(SLOW_FLOOR_MS));
        // Honest answers that all slow down together raise the median with them.
        let mut busy = Pace::default();
        for took_ms in [6_000, 7_000, 8_000, 9_000, 10_000] {
            assert!(!busy.slow(took_ms), "{took_ms}");
        }
        assert!(!busy.slow(4 * 8_000));
        assert!(busy.slow(4 * 8_000 + 1_000 * 10));
        // The window is bounded.
        for _ in 0..100 {
            pace.slow(50);
        }
        assert_eq!(pace.samples_ms.len(), PACE_SAMPLES);
    }
}
