//! What the driver publishes for RPC, health and metrics: consensus status, the halt flag,
//! and the stream of finalized blocks.

use crate::activity::Activity;
use keel_types::{Block, Hash, Height, Receipt};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

pub use keel_types::sync::Lock;

/// Finalized blocks buffered for slow subscribers before they miss some.
pub const FINALIZED_CHANNEL_LEN: usize = 256;
/// Admitted transaction hashes buffered per pending-transaction subscriber (a subscriber
/// that falls further behind skips the oldest).
pub const PENDING_CHANNEL_LEN: usize = 4_096;

#[derive(Debug, Clone, Default)]
pub struct Status {
    pub view: u64,
    pub epoch: u64,
    pub peers: usize,
    /// Validator indices with an authenticated p2p link open to this node.
    pub connected: Vec<u16>,
    /// The highest view at least one honest validator was heard voting in (validators
    /// holding at least 1/3 of the power reached it): well above `view`, this node is
    /// behind.
    pub honest_view_heard: u64,
    /// The view of a certified finalization this node is syncing toward, if any.
    pub sync_target: Option<u64>,
    /// Set once, with the reason, when this node stops voting.
    pub halted: Option<String>,
    /// A snapshot restore's progress (docs/validators.md, "Snapshot sync"): set while this
    /// node restores and kept, as `done`, once it finished.
    pub snapshot: Option<SnapshotProgress>,
}

/// Where a snapshot sync is, for `keel_status`, `/health` and the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotProgress {
    /// `epoch_chain` (verifying the epoch chain), `state` (fetching the boundary's tip
    /// block, then restoring chunks), `tip` (finishing with the kept tip) or `done`.
    pub phase: &'static str,
    /// The epoch whose set the verified chain ends at.
    pub epoch: u64,
    /// The height being restored (the last block before the latest served boundary).
    pub target_height: Height,
    /// Tenths of a percent of the key space restored (key hashes are uniform).
    pub permille: u64,
    /// Entries and bytes restored by this run.
    pub entries: u64,
    pub bytes: u64,
    /// Whether this run resumed an interrupted restore.
    pub resumed: bool,
}

/// A finalized block as delivered to subscribers.
#[derive(Debug, Clone)]
pub struct FinalizedEvent {
    pub height: Height,
    pub hash: Hash,
    pub state_root: Hash,
    pub block: Block,
    pub receipts: Vec<Receipt>,
    /// The block's Ethereum header JSON, built by the first `newHeads` subscriber that needs
    /// it and shared by the rest (it encodes and hashes the whole block).
    pub eth_head: std::sync::OnceLock<serde_json::Value>,
}

/// The driver's status under one lock: what `/health`, RPC and metrics read while the
/// driver writes it. Generic over the lock for the loom models.
#[derive(Debug)]
pub struct StatusCell<L = Mutex<Status>> {
    status: L,
}

impl<L: Lock<Status>> StatusCell<L> {
    pub fn new() -> Self {
        StatusCell {
            status: L::new(Status::default()),
        }
    }

    /// The status, even if a thread panicked while holding it: a dead driver must still be
    /// reported by `/health`, not take the health handler down with it.
    pub fn get(&self) -> Status {
        self.lock().clone()
    }

    pub fn update(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.lock());
    }

    /// The driver thread ended (returned, or panicked if `panicking`): the node is halted.
    /// An earlier halt's reason is kept: it says why the driver stopped voting.
    pub fn mark_stopped(&self, panicking: bool) {
        let reason = if panicking {
            "the driver thread panicked"
        } else {
            "the driver thread stopped"
        };
        self.update(|s| {
            s.halted.get_or_insert_with(|| reason.to_string());
        });
    }

    fn lock(&self) -> L::Guard<'_> {
        self.status.acquire().unwrap_or_else(|poisoned| poisoned)
    }
}

impl<L: Lock<Status>> Default for StatusCell<L> {
    fn default() -> Self {
        StatusCell::new()
    }
}

#[derive(Debug)]
pub struct Shared {
    status: StatusCell,
    finalized: broadcast::Sender<Arc<FinalizedEvent>>,
    /// Hashes of transactions admitted to the pool (RPC and gossip), for
    /// `eth_subscribe("newPendingTransactions")`.
    pending: broadcast::Sender<Hash>,
    /// What this node saw each validator do (set by the driver when it starts).
    activity: Mutex<Activity>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            status: StatusCell::new(),
            finalized: broadcast::channel(FINALIZED_CHANNEL_LEN).0,
            pending: broadcast::channel(PENDING_CHANNEL_LEN).0,
            activity: Mutex::new(Activity::default()),
        }
    }
}

impl Shared {
    pub fn status(&self) -> Status {
        self.status.get()
    }

    pub fn update(&self, f: impl FnOnce(&mut Status)) {
        self.status.update(f);
    }

    /// A guard for the driver thread's lifetime: when it is dropped (the driver returned or
    /// panicked) the node is marked halted, so `/health` stops answering 200 for a node that
    /// no longer votes.
    pub fn driver_guard(self: &Arc<Self>) -> DriverGuard {
        DriverGuard {
            shared: self.clone(),
        }
    }

    /// A copy of what each validator was seen doing, by index, for readers.
    pub fn validator_activity(&self) -> Activity {
        self.activity
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn update_activity(&self, f: impl FnOnce(&mut Activity)) {
        f(&mut self
            .activity
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()));
    }

    pub fn publish(&self, event: FinalizedEvent) {
        // No subscriber is not an error.
        let _ = self.finalized.send(Arc::new(event));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<FinalizedEvent>> {
        self.finalized.subscribe()
    }

    /// Announces transactions just admitted to the pool.
    pub fn publish_pending(&self, hashes: impl IntoIterator<Item = Hash>) {
        if self.pending.receiver_count() == 0 {
            return;
        }
        for hash in hashes {
            let _ = self.pending.send(hash);
        }
    }

    pub fn subscribe_pending(&self) -> broadcast::Receiver<Hash> {
        self.pending.subscribe()
    }
}

/// See [`Shared::driver_guard`].
#[derive(Debug)]
pub struct DriverGuard {
    shared: Arc<Shared>,
}

impl Drop for DriverGuard {
    fn drop(&mut self) {
        metrics::gauge!(crate::metrics::HALTED).set(1.0);
        self.shared.status.mark_stopped(std::thread::panicking());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_driver_marks_the_node_halted() {
        let shared = Arc::new(Shared::default());
        let guard = shared.driver_guard();
        let inner = shared.clone();
        let result = std::thread::spawn(move || {
            let _guard = guard;
            // Panic while holding the status lock: the flag must still be set and readable.
            inner.update(|_| panic!("driver bug"));
        })
        .join();
        assert!(result.is_err());
        let halted = shared.status().halted.expect("halted");
        assert!(halted.contains("panicked"), "{halted}");
    }

    #[test]
    fn a_driver_that_returns_marks_the_node_halted_and_keeps_an_earlier_reason() {
        let shared = Arc::new(Shared::default());
        drop(shared.driver_guard());
        assert_eq!(
            shared.status().halted.as_deref(),
            Some("the driver thread stopped")
        );
        let shared = Arc::new(Shared::default());
        shared.update(|s| s.halted = Some("vote log: disk full".into()));
        drop(shared.driver_guard());
        assert_eq!(
            shared.status().halted.as_deref(),
            Some("vote log: disk full")
        );
    }
}

#[cfg(test)]
#[path = "loom_models.rs"]
mod loom_models;
