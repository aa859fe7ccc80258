//! The background pruner thread: runs keel-pruning's policy (`Pruner::pass`) over the store
//! every interval and publishes the store's size and entry counts. It touches only history
//! below the retention window, so consensus never waits for it.

use crate::metrics as m;
use keel_pruning::{PrunePolicy, Pruner};
use keel_state::StateError;
use keel_store::Store;
use std::sync::Arc;
use std::time::Duration;

fn publish(store: &Store) -> Result<(), StateError> {
    let counts = store.expiry_counts()?;
    metrics::gauge!(m::ACTIVE_ENTRIES).set(counts.active as f64);
    metrics::gauge!(m::EXPIRED_ENTRIES).set(counts.expired as f64);
    metrics::gauge!(m::REVIVED_ENTRIES).set(counts.revived as f64);
    metrics::gauge!(m::PRUNED_BYTES).set(store.pruned_bytes()? as f64);
    metrics::gauge!(m::DISK_SIZE).set(store.disk_size_bytes()? as f64);
    metrics::gauge!(m::OLDEST_RETAINED).set(store.oldest_retained()? as f64);
    Ok(())
}

/// Starts the pruner thread; it runs for the life of the process.
pub fn spawn(store: Arc<Store>, policy: PrunePolicy, interval: Duration) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("keel-pruner".into())
        .spawn(move || {
            let mut pruner = Pruner::new(policy);
            loop {
                std::thread::sleep(interval);
                match pruner.pass(&*store) {
                    Ok(0) => {}
                    Ok(bytes) => tracing::debug!(bytes, "pruned"),
                    Err(e) => tracing::warn!(error = %e, "pruning failed; retrying next interval"),
                }
                if let Err(e) = publish(&store) {
                    tracing::warn!(error = %e, "reading store metrics");
                }
            }
        })
        .map(|_| ())
}
