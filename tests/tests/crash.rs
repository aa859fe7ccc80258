//! Crash test with a real process: a child commits blocks in a loop and is SIGKILLed at
//! random moments, many times. Every reopen must find a consistent last height whose root is
//! the root recorded for it, equals an uninterrupted run's root at that height, and has
//! nothing half-written above it.

use keel_store::{CommitRequest, Store, StoreOptions};
use keel_tests::workload;
use keel_types::{Block, Hash};
use rand::{Rng, SeedableRng};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Kills per run; `KEEL_CRASH_KILLS` raises it for a long campaign.
const DEFAULT_KILLS: usize = 40;
const MAX_HEIGHT: u64 = 1_000_000;

#[test]
fn sigkill_during_commits_never_leaves_a_torn_store() -> anyhow::Result<()> {
    let kills: usize = std::env::var("KEEL_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_KILLS);
    let seed: u64 = std::env::var("KEEL_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x6b65656c);
    eprintln!("crash test: seed {seed}, {kills} kills (replay with KEEL_CRASH_SEED={seed})");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir()?;
    let db_path = dir.path().join("db");
    let reference_dir = tempfile::tempdir()?;
    let reference = Store::open(
        reference_dir.path(),
        StoreOptions {
            keep_archive: true,
            sync_writes: false,
            ..StoreOptions::default()
        },
    )?;
    let mut reference_parent = Hash::ZERO;

    let mut last_height: Option<u64> = None;
    let mut distinct_heights = 0usize;
    for round in 0..kills {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keel-crash-writer"))
            .arg(&db_path)
            .arg(MAX_HEIGHT.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        std::thread::sleep(Duration::from_millis(rng.gen_range(30..400)));
        if let Some(status) = child.try_wait()? {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                e.read_to_string(&mut err)?;
            }
            anyhow::bail!("writer exited early in round {round}: {status}: {err}");
        }
        child.kill()?; // SIGKILL on Unix
        child.wait()?;

        // Reopen: `open` itself checks meta root == recorded root == tree root.
        let store = Store::open(&db_path, StoreOptions::default())?;
        let Some(latest) = store.latest() else {
            continue; // killed before the first commit finished
        };
        let h = latest.height;
        if let Some(prev) = last_height {
            anyhow::ensure!(
                h >= prev,
                "round {round}: latest height went back from {prev} to {h}"
            );
        }
        if last_height != Some(h) {
            distinct_heights += 1;
        }
        last_height = Some(h);
        anyhow::ensure!(
            store.verify_root(h)? == latest.state_root,
            "round {round}: tree root differs from the recorded root at {h}"
        );
        // Pruning interrupted by the kill left a consistent boundary: the oldest retained
        // height's tree is whole (every node its root needs survived the prune).
        let oldest = store.oldest_retained()?;
        anyhow::ensure!(
            store.verify_root(oldest).is_ok(),
            "round {round}: oldest retained height {oldest} does not verify after the kill"
        );
        anyhow::ensure!(
            !store.has_data_above_latest()?,
            "round {round}: data above latest height {h}"
        );
        let block: Block = store
            .block(h)?
            .ok_or_else(|| anyhow::anyhow!("block {h} missing"))?;
        anyhow::ensure!(block.hash() == latest.block_hash && block.header.height == h);
        let receipts = store
            .receipts(h)?
            .ok_or_else(|| anyhow::anyhow!("receipts {h} missing"))?;
        anyhow::ensure!(receipts.len() == block.transactions.len());
        for tx in &block.transactions {
            anyhow::ensure!(store.tx_location(&tx.hash())?.map(|l| l.0) == Some(h));
        }

        // The uninterrupted reference run reaches the same root at the same height.
        while reference.next_height() <= h {
            let height = reference.next_height();
            let diff = workload::diff(height);
            let (block, receipts) = workload::block(height, reference_parent);
            let info = reference.commit(CommitRequest {
                height,
                diff: &diff,
                block: Some(&block),
                receipts: &receipts,
                archive: &keel_state::ArchiveBatch::default(),
            })?;
            reference_parent = info.block_hash;
        }
        anyhow::ensure!(
            reference.state_root(h)? == latest.state_root,
            "round {round}: crashed store root at {h} differs from the uninterrupted run"
        );
        // Spot-check an older retained height's root too (history survives crashes), and
        // the oldest retained one against the uninterrupted run.
        let older = rng.gen_range(oldest..=h);
        anyhow::ensure!(store.state_root(older)? == reference.state_root(older)?);
        anyhow::ensure!(store.state_root(oldest)? == reference.state_root(oldest)?);
    }
    let last = last_height.ok_or_else(|| anyhow::anyhow!("no commit ever landed"))?;
    eprintln!("crash test: {kills} kills, final height {last}, {distinct_heights} distinct recovery heights");
    anyhow::ensure!(
        distinct_heights * 2 >= kills,
        "kills did not land during commits often enough"
    );
    Ok(())
}
