//! The background pruner: keeps `retain_heights` heights of state, blocks and receipts and
//! drops the rest in bounded atomic steps (keel_state's `prune_step`), compacting once enough
//! was deleted for the disk to shrink, and publishes the store's size and entry counts.
//!
//! It runs on its own thread and touches only history below the retention window, which no
//! commit or execution reads, so consensus never waits for it. Progress lives in the store
//! (`oldest_retained`, written in each step's batch), so a restart resumes where it stopped.

use crate::config::MIN_RETAIN_HEIGHTS;
use crate::metrics as m;
use keel_state::StateError;
use keel_store::Store;
use std::sync::Arc;
use std::time::Duration;

/// Aux records keyed by height that go with pruned blocks (finality certificates).
pub const PRUNED_AUX_PREFIXES: &[&[u8]] = &[b"cert/"];
/// Compact when the bytes deleted since the last compaction reach this fraction (1/N) of the
/// store, so a compaction rewrites at most N times what it frees.
const COMPACT_FRACTION_DENOMINATOR: u64 = 4;

#[derive(Debug, Clone, Copy)]
pub struct PrunerConfig {
    /// 0 keeps everything (archive mode): the pruner only reports. Otherwise at least
    /// `MIN_RETAIN_HEIGHTS` are kept whatever this says (see [`retained`]).
    pub retain_heights: u64,
    pub interval: Duration,
    pub batch_heights: u64,
}

/// Heights a pass keeps for `retain_heights` > 0: never fewer than the `BLOCKHASH` window
/// (config validation refuses less; this holds even for a config built in code), so the
/// hashes execution may read are always in the store. Pruning stops below
/// `latest - retained`, keeping heights `latest - retained ..= latest`: the block at
/// `latest + 1` reads hashes from `latest - 255` on.
pub fn retained(retain_heights: u64) -> u64 {
    retain_heights.max(MIN_RETAIN_HEIGHTS)
}

/// One pass: prune to `latest - retain_heights` in steps, compact if due. Returns bytes
/// deleted.
pub fn prune_pass(
    store: &Store,
    config: &PrunerConfig,
    deleted_since_compaction: &mut u64,
) -> Result<u64, StateError> {
    let mut deleted = 0;
    if config.retain_heights > 0 {
        let latest = store.latest().map_or(0, |l| l.height);
        let target = latest.saturating_sub(retained(config.retain_heights));
        loop {
            let step = store.prune_step(target, config.batch_heights, PRUNED_AUX_PREFIXES)?;
            deleted += step.deleted_bytes;
            if step.heights == 0 {
                break;
            }
        }
    }
    *deleted_since_compaction += deleted;
    let size = store.disk_size_bytes()?;
    if *deleted_since_compaction > 0
        && *deleted_since_compaction * COMPACT_FRACTION_DENOMINATOR >= size
    {
        store.compact()?;
        *deleted_since_compaction = 0;
    }
    Ok(deleted)
}

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
pub fn spawn(store: Arc<Store>, config: PrunerConfig) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("keel-pruner".into())
        .spawn(move || {
            let mut deleted_since_compaction = 0u64;
            loop {
                std::thread::sleep(config.interval);
                match prune_pass(&store, &config, &mut deleted_since_compaction) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use keel_state::{ArchiveBatch, StateDiff};
    use keel_store::{CommitRequest, StoreOptions};

    #[test]
    fn a_pass_keeps_the_blockhash_window_whatever_the_config_says() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
        let latest = MIN_RETAIN_HEIGHTS + 50;
        for height in 0..=latest {
            store
                .commit(CommitRequest {
                    height,
                    diff: &StateDiff::new(),
                    block: None,
                    receipts: &[],
                    archive: &ArchiveBatch::default(),
                })
                .expect("commit");
        }
        let config = PrunerConfig {
            retain_heights: 10,
            interval: Duration::from_millis(1),
            batch_heights: 1_000,
        };
        prune_pass(&store, &config, &mut 0).expect("prune");
        assert_eq!(
            store.oldest_retained().expect("oldest"),
            latest - MIN_RETAIN_HEIGHTS
        );
    }
}
