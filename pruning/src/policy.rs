//! The pruner's policy: how many heights of history a node keeps, in what steps it drops the
//! rest, and when it compacts — over any [`History`] (the RocksDB store implements it).
//!
//! A pass touches only heights below the retention window, which no commit or execution
//! reads, so it can run beside consensus without ever being waited for. Progress lives in the
//! history itself (each step advances its oldest retained height atomically), so a restart
//! resumes where the last pass stopped.

use keel_types::Height;

/// The fewest heights a pruning node keeps: the EVM's `BLOCKHASH` window. Execution reads
/// the hashes of the last 256 blocks from the store; a node that pruned one of them would
/// read zero where its peers read the hash, and fork from them.
pub const MIN_RETAIN_HEIGHTS: u64 = 256;
/// Aux records keyed by height that go with pruned blocks (finality certificates, the
/// block hashes a snapshot restore keeps below its height: keel-store's `ANCESTOR_PREFIX`,
/// and a restore's kept tip, [`SNAPSHOT_TIP_AUX_PREFIX`], should a crash leave it).
pub const PRUNED_AUX_PREFIXES: &[&[u8]] = &[b"cert/", b"ancestor/", SNAPSHOT_TIP_AUX_PREFIX];
/// Where a restoring node keeps the tip of the height it restores (prefix + big-endian
/// height, as every prefix above).
pub const SNAPSHOT_TIP_AUX_PREFIX: &[u8] = b"snapshot_tip/";
/// Compact when the bytes deleted since the last compaction reach this fraction (1/N) of the
/// store, so a compaction rewrites at most N times what it frees.
pub const COMPACT_FRACTION_DENOMINATOR: u64 = 4;

/// What one pruning step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneStep {
    /// The oldest retained height after the step.
    pub oldest_retained: Height,
    /// Heights whose history the step removed (0: nothing left below the target).
    pub heights: u64,
    /// Bytes of keys and values deleted.
    pub deleted_bytes: u64,
}

/// Versioned history the pruner can shorten.
pub trait History {
    type Error;
    /// The latest committed height, if any.
    fn latest_height(&self) -> Option<Height>;
    /// Drops history below `target` (exclusive), at most `max_heights` heights, with the aux
    /// records under `aux_prefixes ‖ height`, in one atomic step.
    fn prune_step(
        &self,
        target: Height,
        max_heights: u64,
        aux_prefixes: &[&[u8]],
    ) -> Result<PruneStep, Self::Error>;
    /// Bytes the history occupies on disk.
    fn disk_size_bytes(&self) -> Result<u64, Self::Error>;
    /// Returns deleted space to the file system.
    fn compact(&self) -> Result<(), Self::Error>;
}

/// How much history to keep and how to drop the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrunePolicy {
    /// 0 keeps everything (archive mode). Otherwise at least [`MIN_RETAIN_HEIGHTS`] are kept
    /// whatever this says (see [`retained`]).
    pub retain_heights: u64,
    /// Heights one atomic step drops at most (bounds a step's batch).
    pub batch_heights: u64,
    /// The chain's epoch length, so the state before each of the last two epoch boundaries
    /// stays for snapshot sync to serve ([`snapshot_floor`]); 0 keeps no such floor.
    pub epoch_length: u64,
}

/// The lowest height a pruning pass may drop up to with the latest height `latest`: the
/// state before the second-to-last epoch boundary (what a node restoring a snapshot is
/// downloading while the next boundary passes) stays retained, and the `BLOCKHASH` window
/// of blocks below it (whose headers the restoring node fetches with the tip).
pub fn snapshot_floor(latest: u64, epoch_length: u64) -> u64 {
    if epoch_length == 0 {
        return u64::MAX;
    }
    let last_boundary = latest / epoch_length * epoch_length;
    last_boundary
        .saturating_sub(epoch_length)
        .saturating_sub(1)
        .saturating_sub(MIN_RETAIN_HEIGHTS)
}

/// Heights a pass keeps for `retain_heights` > 0: never fewer than the `BLOCKHASH` window
/// (config validation refuses less; this holds even for a policy built in code), so the
/// hashes execution may read are always kept. Pruning stops below `latest - retained`,
/// keeping heights `latest - retained ..= latest`: the block at `latest + 1` reads hashes
/// from `latest - 255` on.
pub fn retained(retain_heights: u64) -> u64 {
    retain_heights.max(MIN_RETAIN_HEIGHTS)
}

/// The pruner's memory between passes: bytes deleted since the last compaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pruner {
    pub policy: PrunePolicy,
    deleted_since_compaction_bytes: u64,
}

impl Pruner {
    pub fn new(policy: PrunePolicy) -> Self {
        Self {
            policy,
            deleted_since_compaction_bytes: 0,
        }
    }

    /// One pass: prune to `latest - retained` in steps, then compact if due. Returns the
    /// bytes deleted.
    pub fn pass<H: History>(&mut self, history: &H) -> Result<u64, H::Error> {
        let mut deleted = 0;
        let policy = self.policy;
        if policy.retain_heights > 0 {
            let latest = history.latest_height().unwrap_or(0);
            let target = latest
                .saturating_sub(retained(policy.retain_heights))
                .min(snapshot_floor(latest, policy.epoch_length));
            // Each step drops ≥ 1 height or reports 0, and heights below `target` are finite.
            loop {
                let step = history.prune_step(target, policy.batch_heights, PRUNED_AUX_PREFIXES)?;
                deleted += step.deleted_bytes;
                if step.heights == 0 {
                    break;
                }
            }
        }
        self.deleted_since_compaction_bytes += deleted;
        let size = history.disk_size_bytes()?;
        if self.deleted_since_compaction_bytes > 0
            && self
                .deleted_since_compaction_bytes
                .saturating_mul(COMPACT_FRACTION_DENOMINATOR)
                >= size
        {
            history.compact()?;
            self.deleted_since_compaction_bytes = 0;
        }
        Ok(deleted)
    }
}
