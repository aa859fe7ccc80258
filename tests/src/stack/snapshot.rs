//! Snapshot sync in the simulator: the node's own client (`keel_node::snapshot::sync_over`)
//! over a transport whose peers are the other live validators' stores, answered by the
//! node's own `serve`, with the run's message loss and the Byzantine validator's lies, in
//! simulated time (the restore takes none of the run's clock: the others wait for it).

use keel_node::snapshot::{serve, SnapshotMessage, SnapshotSyncError, SnapshotTransport};
use keel_p2p::NetMessage;
use keel_store::Store;
use keel_types::Canonical;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Simulated time a restore may take before the transport reports the network closed: a
/// client left with no peer to ask would otherwise wait forever in no time at all.
const MAX_SIM_RESTORE_MS: u64 = 30 * 60 * 1_000;

/// What the Byzantine validator does to the snapshot answers it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotLie {
    /// A byte of an epoch change flipped: a forged certificate, header or set proof.
    EpochChain,
    /// A byte of a state entry's value flipped: a chunk that fails its range proof.
    Chunk,
    /// The tip's receipts, or the headers below it, changed.
    Tip,
    /// No answer at all (not a lie the client can prove: it asks others).
    Silence,
    /// Only its first epoch change, then "no more": a chain that verifies but ends long
    /// ago (not provable either: an honest peer that is behind serves the same). The
    /// client must take the longest chain its peers serve, whose state is still served.
    OldChain,
    /// Chunks of one entry each, with valid proofs: a server starving the restore of entries
    /// (each chunk a round trip). The chunk after one shows it would have fit.
    TinyChunk,
}

pub const ALL_SNAPSHOT_LIES: [SnapshotLie; 6] = [
    SnapshotLie::EpochChain,
    SnapshotLie::Chunk,
    SnapshotLie::Tip,
    SnapshotLie::Silence,
    SnapshotLie::OldChain,
    SnapshotLie::TinyChunk,
];

/// The run's link faults, as its consensus messages see them.
#[derive(Debug, Clone, Copy)]
pub struct SimLinks {
    /// Round-trip delay range (ms).
    pub delay_ms: (u64, u64),
    pub loss: f64,
    pub duplicate: f64,
    /// Requests to honest peers sent before this simulated ms of the restore are lost
    /// (their answers late, or the peers too busy): the Byzantine peer alone answers.
    pub honest_mute_ms: u64,
}

/// The restoring validator's view of the network.
pub struct SimTransport {
    /// The live validators other than the restoring one, by index.
    servers: Vec<(u16, Arc<Store>)>,
    byzantine: Option<(u16, SnapshotLie)>,
    rng: ChaCha8Rng,
    net: SimLinks,
    /// Answers in flight by (delivery time, order sent).
    queue: BTreeMap<(u64, u64), (u16, SnapshotMessage)>,
    sent: u64,
    clock_ms: u64,
    wall_start_ms: u64,
    /// Answers the Byzantine validator changed.
    pub lies: u64,
    /// Answers that did not decode after encoding (the report fails on any).
    pub undecodable: u64,
}

impl SimTransport {
    pub fn new(
        servers: Vec<(u16, Arc<Store>)>,
        byzantine: Option<(u16, SnapshotLie)>,
        rng: ChaCha8Rng,
        net: SimLinks,
        wall_start_ms: u64,
    ) -> SimTransport {
        SimTransport {
            servers,
            byzantine,
            rng,
            net,
            queue: BTreeMap::new(),
            sent: 0,
            clock_ms: 0,
            wall_start_ms,
            lies: 0,
            undecodable: 0,
        }
    }

    /// Simulated milliseconds the restore took.
    pub fn elapsed_ms(&self) -> u64 {
        self.clock_ms
    }

    /// One entry of `height`'s state after `after`, with its valid proof (a lie when the
    /// honest chunk would hold more).
    fn tiny_chunk(
        &mut self,
        store: &Store,
        height: keel_types::Height,
        after: Option<keel_types::Hash>,
    ) -> SnapshotMessage {
        let chunk = |max_bytes| store.snapshot_chunk(height, after.map(|h| h.0), max_bytes);
        match (chunk(1), chunk(keel_types::proof::MIN_SNAPSHOT_CHUNK_BYTES)) {
            (Ok(Some(tiny)), Ok(Some(honest))) => {
                if honest.entries.len() > tiny.entries.len() {
                    self.lies += 1;
                }
                SnapshotMessage::Chunk(Box::new(tiny))
            }
            _ => SnapshotMessage::Unavailable,
        }
    }

    /// `answer` as the Byzantine validator sends it (`None`: not at all).
    fn lie(&mut self, lie: SnapshotLie, answer: SnapshotMessage) -> Option<SnapshotMessage> {
        let mut answer = answer;
        let lied = match (lie, &mut answer) {
            (SnapshotLie::Silence, _) => {
                self.lies += 1;
                return None;
            }
            (SnapshotLie::EpochChain, SnapshotMessage::EpochChanges { changes, .. })
                if !changes.is_empty() =>
            {
                let which = self.rng.gen_range(0..changes.len());
                let bytes = &mut changes[which];
                let at = self.rng.gen_range(0..bytes.len());
                bytes[at] ^= 1 << self.rng.gen_range(0..8);
                true
            }
            (
                SnapshotLie::OldChain,
                SnapshotMessage::EpochChanges {
                    from_epoch,
                    changes,
                },
            ) if (*from_epoch == 0 && changes.len() > 1)
                || (*from_epoch > 0 && !changes.is_empty()) =>
            {
                changes.truncate(if *from_epoch == 0 { 1 } else { 0 });
                true
            }
            (SnapshotLie::Chunk, SnapshotMessage::Chunk(chunk)) if !chunk.entries.is_empty() => {
                let which = self.rng.gen_range(0..chunk.entries.len());
                let value = &mut chunk.entries[which].1;
                match value.last_mut() {
                    Some(byte) => *byte ^= 1,
                    None => value.push(0),
                }
                true
            }
            (
                SnapshotLie::Tip,
                SnapshotMessage::Tip {
                    block,
                    receipts,
                    ancestors,
                },
            ) => {
                if let Some(receipt) = receipts.first_mut() {
                    receipt.gas_used ^= 1;
                } else if !ancestors.is_empty() {
                    ancestors.remove(0);
                } else {
                    block.header.timestamp_ms ^= 1;
                }
                true
            }
            _ => false,
        };
        if lied {
            self.lies += 1;
        }
        Some(answer)
    }
}

impl SnapshotTransport for SimTransport {
    fn connected(&self) -> Vec<u16> {
        self.servers.iter().map(|(i, _)| *i).collect()
    }

    fn known(&self) -> usize {
        self.servers.len()
    }

    fn link(&self, peer: u16) -> Option<u64> {
        self.servers.iter().any(|(i, _)| *i == peer).then_some(0)
    }

    fn send(&mut self, peer: u16, message: &SnapshotMessage) {
        let Some(store) = self
            .servers
            .iter()
            .find(|(i, _)| *i == peer)
            .map(|(_, s)| s.clone())
        else {
            return;
        };
        if self.net.loss > 0.0 && self.rng.gen_bool(self.net.loss) {
            return;
        }
        let honest = self.byzantine.is_none_or(|(b, _)| b != peer);
        if honest && self.clock_ms < self.net.honest_mute_ms {
            return;
        }
        let answer = match (self.byzantine, message) {
            (
                Some((b, SnapshotLie::TinyChunk)),
                SnapshotMessage::ChunkRequest { height, after, .. },
            ) if b == peer => self.tiny_chunk(&store, *height, *after),
            _ => serve(&store, message.clone()).unwrap_or(SnapshotMessage::Unavailable),
        };
        let answer = match self.byzantine {
            Some((b, lie)) if b == peer => match self.lie(lie, answer) {
                Some(a) => a,
                None => return,
            },
            _ => answer,
        };
        // Through the wire's encoding and bounds, as a peer's answer reaches the node (what
        // does not decode never reaches the client: the link is dropped).
        let wire = NetMessage::Snapshot(Box::new(answer)).encode();
        let Ok(NetMessage::Snapshot(answer)) = NetMessage::decode(&wire) else {
            self.undecodable += 1;
            return;
        };
        // Delayed like the run's messages, sometimes twice: a copy that arrives after the
        // next request went out must not be taken for its answer.
        let copies = if self.rng.gen_bool(self.net.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let (low, high) = self.net.delay_ms;
            let at = self.clock_ms + self.rng.gen_range(low..=high.max(low));
            self.sent += 1;
            self.queue
                .insert((at, self.sent), (peer, (*answer).clone()));
        }
    }

    fn recv(
        &mut self,
        timeout_ms: u64,
    ) -> Result<Option<(u16, SnapshotMessage)>, SnapshotSyncError> {
        let until = self.clock_ms.saturating_add(timeout_ms);
        if let Some(entry) = self.queue.first_entry() {
            if entry.key().0 <= until {
                let ((at, _), next) = entry.remove_entry();
                self.clock_ms = self.clock_ms.max(at);
                return Ok(Some(next));
            }
        }
        self.clock_ms = until;
        if self.clock_ms > MAX_SIM_RESTORE_MS {
            return Err(SnapshotSyncError::Closed);
        }
        Ok(None)
    }

    fn pause(&mut self, ms: u64) {
        self.clock_ms = self.clock_ms.saturating_add(ms);
    }

    fn now_ms(&self) -> u64 {
        self.clock_ms
    }

    fn wall_ms(&self) -> u64 {
        self.wall_start_ms.saturating_add(self.clock_ms)
    }
}
