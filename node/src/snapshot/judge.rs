//! What a chunk's arrival says about its server, beyond its proof: whether it filled the
//! chunk as far as the request let it ([`Fill`]), and whether it answered in about the time
//! the others take ([`Pace`]). A server that fails the first is dropped (an honest one
//! never does); one that fails the second only rests (an honest one can be slow).

use super::client::last_key_hash;
use super::SnapshotSyncError;
use keel_types::SnapshotChunk;
use std::collections::BTreeMap;

/// An answer is slow when it took more than this many times the other peers' (lower median
/// of their latest)...
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

/// How long each peer's chunk answers keep the client waiting, to rest a server that
/// answers each request just inside the request timeout: valid, full chunks, each costing
/// the restore a timeout's wait (one in as many chunks as there are peers). A peer is
/// judged by the other peers' latest times, never its own, so it cannot raise the bar it
/// is judged by; the lower median of the others', so f Byzantine peers among them cannot
/// raise it either. Only the times of peers still serving count (not resting, not
/// dropped): a rested peer's slow time must not set the bar for the server left serving.
/// With no such time to compare with, the floor alone judges. A slow answer is still used,
/// and still recorded as its peer's latest (when every honest peer slows down at once,
/// each rests once, then they are judged by their slower times). One entry per peer that
/// answered a chunk: bounded by the peer table (`connected` lists no guests).
#[derive(Debug, Default)]
pub(super) struct Pace {
    latest_ms: BTreeMap<u16, u64>,
}

impl Pace {
    /// Whether `peer`'s answer that kept the client waiting `took_ms` is slow: over
    /// [`SLOW_FLOOR_MS`] and over [`SLOW_FACTOR`] times the lower median of the latest
    /// times of the other peers in `serving` (the floor alone when none has one).
    pub(super) fn slow(&self, peer: u16, took_ms: u64, serving: &[u16]) -> bool {
        let mut others: Vec<u64> = self
            .latest_ms
            .iter()
            .filter(|(p, _)| **p != peer && serving.contains(p))
            .map(|(_, ms)| *ms)
            .collect();
        if others.is_empty() {
            return took_ms > SLOW_FLOOR_MS;
        }
        others.sort_unstable();
        let median = others[(others.len() - 1) / 2];
        took_ms > SLOW_FLOOR_MS && took_ms > median.saturating_mul(SLOW_FACTOR)
    }

    /// `peer`'s latest answer (one whose chunk verified) kept the client waiting `took_ms`.
    pub(super) fn record(&mut self, peer: u16, took_ms: u64) {
        self.latest_ms.insert(peer, took_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_far_slower_than_the_others_is_slow_and_cannot_set_its_own_bar() {
        let all = [1, 2, 3, 4];
        let mut pace = Pace::default();
        // With no other time, the floor alone.
        assert!(pace.slow(2, 29_900, &all));
        assert!(!pace.slow(2, 4_000, &all));
        // Found by review: with two peers, a Byzantine one answering every chunk in 29.9 s
        // held half of a shared window and set the median; it is judged by the other alone.
        pace.record(2, 29_900);
        assert!(!pace.slow(1, 3, &all));
        pace.record(1, 3);
        assert!(pace.slow(2, 29_900, &all));
        // Under the floor is never slow, however many times the others'.
        assert!(!pace.slow(2, SLOW_FLOOR_MS, &all));
        // Left the only server, it cannot ratchet the bar up with its own answers.
        for took_ms in [4_900, 19_500, 29_900] {
            pace.record(2, took_ms);
            assert_eq!(
                pace.slow(2, took_ms, &all),
                took_ms > SLOW_FLOOR_MS,
                "{took_ms}"
            );
        }
        // A Byzantine peer's slow times do not raise an honest peer's bar: the lower median.
        pace.record(3, 2);
        assert!(
            pace.slow(4, 6_000, &all),
            "judged by 2 and 3 ms, not by peer 2's 29.9 s"
        );
        // Found by the second review: an honest peer rested after one 6 s answer must not
        // set a 24 s bar for the Byzantine server left serving; nor do a dropped peer's
        // times count.
        let mut left = Pace::default();
        left.record(1, 6_000);
        left.record(2, 5);
        assert!(!left.slow(2, 23_900, &[1, 2]), "judged by peer 1's 6 s");
        assert!(left.slow(2, 23_900, &[2]), "peer 1 rests: the floor");
        assert!(left.slow(1, 6_000, &[1]), "peer 2 dropped: the floor");
        // Every honest peer slows down at once: each is slow at most once, against the
        // others' old times (the third already by the first two's new ones), then judged
        // by the new ones.
        let mut busy = Pace::default();
        for peer in 1..=3 {
            busy.record(peer, 40);
        }
        for (peer, slow) in [(1, true), (2, true), (3, false)] {
            assert_eq!(busy.slow(peer, 8_000, &all), slow, "{peer}");
            busy.record(peer, 8_000);
        }
        for peer in 1..=3 {
            assert!(!busy.slow(peer, 9_000, &all));
        }
    }
}
