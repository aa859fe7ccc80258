//! What the driver publishes for RPC, health and metrics: consensus status, the halt flag,
//! and the stream of finalized blocks.

use keel_types::{Block, Hash, Height, Receipt};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Finalized blocks buffered for slow subscribers before they miss some.
pub const FINALIZED_CHANNEL_LEN: usize = 256;

#[derive(Debug, Clone, Default)]
pub struct Status {
    pub view: u64,
    pub epoch: u64,
    pub peers: usize,
    /// Set once, with the reason, when this node stops voting.
    pub halted: Option<String>,
}

/// A finalized block as delivered to subscribers.
#[derive(Debug, Clone)]
pub struct FinalizedEvent {
    pub height: Height,
    pub hash: Hash,
    pub state_root: Hash,
    pub block: Block,
    pub receipts: Vec<Receipt>,
}

#[derive(Debug)]
pub struct Shared {
    status: Mutex<Status>,
    finalized: broadcast::Sender<Arc<FinalizedEvent>>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            status: Mutex::new(Status::default()),
            finalized: broadcast::channel(FINALIZED_CHANNEL_LEN).0,
        }
    }
}

impl Shared {
    pub fn status(&self) -> Status {
        self.status.lock().expect("status lock").clone()
    }

    pub fn update(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.lock().expect("status lock"));
    }

    pub fn publish(&self, event: FinalizedEvent) {
        // No subscriber is not an error.
        let _ = self.finalized.send(Arc::new(event));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<FinalizedEvent>> {
        self.finalized.subscribe()
    }
}
