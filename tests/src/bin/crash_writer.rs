//! Commits workload blocks into a store in a loop until `max_height` or until killed; the
//! crash test SIGKILLs it at random moments and checks what a reopen finds.

use keel_store::{CommitRequest, Store, StoreOptions};
use keel_tests::workload;
use keel_types::Hash;

/// Heights the writer keeps behind its tip (the crash test checks the pruned boundary).
const PRUNE_RETAIN_HEIGHTS: u64 = 6;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: keel-crash-writer DIR MAX_HEIGHT"))?;
    let max_height: u64 = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("missing MAX_HEIGHT"))?
        .parse()?;
    // sync_writes on: the production setting, so the test exercises the real commit path.
    let store = Store::open(std::path::Path::new(&dir), StoreOptions::default())?;
    let mut parent = match store.latest() {
        Some(info) => info.block_hash,
        None => Hash::ZERO,
    };
    for height in store.next_height()..=max_height {
        let diff = workload::diff(height);
        let (block, receipts) = workload::block(height, parent);
        let info = store.commit(CommitRequest {
            height,
            diff: &diff,
            block: Some(&block),
            receipts: &receipts,
            archive: &keel_state::ArchiveBatch::default(),
        })?;
        parent = info.block_hash;
        // Prune behind the tip as a node does, so SIGKILL also lands mid-prune.
        store.prune_step(height.saturating_sub(PRUNE_RETAIN_HEIGHTS), 3, &[])?;
    }
    Ok(())
}
