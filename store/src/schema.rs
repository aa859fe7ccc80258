//! Column families and key layouts. Heights are big-endian so RocksDB's byte order is
//! numeric order, which range deletes and "latest version ≤ h" seeks rely on.

use keel_types::Height;

/// Small records: latest commit, oldest retained height.
pub const CF_META: &str = "meta";
/// Jellyfish Merkle tree nodes: borsh(NodeKey) → borsh(Node).
pub const CF_NODES: &str = "jmt_nodes";
/// Versioned values: key_hash (32) ‖ height (8, BE) → borsh(Option<value>); `None` is a delete.
pub const CF_VALUES: &str = "values";
/// key_hash → canonical StateKey bytes, so the expiry sweep and debugging can name keys.
pub const CF_PREIMAGES: &str = "preimages";
/// stale_since_height (8, BE) ‖ borsh(NodeKey) → (): tree nodes the pruner may drop.
pub const CF_STALE: &str = "stale_nodes";
/// height (BE) → state root after executing that height.
pub const CF_ROOTS: &str = "roots";
/// height (BE) → canonical Block.
pub const CF_BLOCKS: &str = "blocks";
/// block hash → height (BE).
pub const CF_BLOCK_INDEX: &str = "block_index";
/// height (BE) → canonical BlockReceipts.
pub const CF_RECEIPTS: &str = "receipts";
/// tx hash → height (BE) ‖ index (4, BE).
pub const CF_TX_INDEX: &str = "tx_index";

/// Node records that are not state (consensus certificates, epoch proofs): key → value.
pub const CF_AUX: &str = "aux";

/// touched_epoch (8, BE) ‖ key_hash → nothing: live expiring entries by last touch, so the
/// expiry sweep finds the oldest without scanning state (the key is its preimage; stores
/// written before 2026-12-06 hold the StateKey bytes as the value, still read).
pub const CF_TOUCH: &str = "touch_index";
/// expired_epoch (8, BE) ‖ key_hash → nothing (or, before 2026-12-06, the StateKey bytes):
/// the stubs in the tree by the epoch they expired in, so a block folds the oldest without
/// scanning state.
pub const CF_STUBS: &str = "stub_index";
/// superseded_at (8, BE) ‖ key_hash ‖ old_height (8, BE) → (): value versions the pruner may
/// drop once `superseded_at` is below the retention window (a delete supersedes itself).
pub const CF_HISTORY: &str = "value_history";
/// The expiry archive (kept when the node keeps archives): `n` ‖ level (4, BE) ‖ index (8,
/// BE) → node hash; `l` ‖ leaf index (8, BE) → borsh(ArchivedLeaf); `f` ‖ fold page (8, BE)
/// ‖ key_hash → borsh(FoldedStub): each fold page's sorted list, to prove membership and
/// absence.
pub const CF_ARCHIVE: &str = "archive";
/// address (20) → u64 BE: how many of the address's storage slots the latest state holds
/// (live or expired stubs; EIP-7610's "non-empty storage"); absent = none.
pub const CF_STORAGE_COUNTS: &str = "storage_counts";

pub const ALL_CFS: &[&str] = &[
    CF_META,
    CF_NODES,
    CF_VALUES,
    CF_PREIMAGES,
    CF_STALE,
    CF_ROOTS,
    CF_BLOCKS,
    CF_BLOCK_INDEX,
    CF_RECEIPTS,
    CF_TX_INDEX,
    CF_AUX,
    CF_TOUCH,
    CF_STUBS,
    CF_HISTORY,
    CF_ARCHIVE,
    CF_STORAGE_COUNTS,
];

pub const META_LATEST: &[u8] = b"latest";
pub const META_OLDEST: &[u8] = b"oldest_retained";
/// Live entries that take part in expiry (u64 BE).
pub const META_ACTIVE: &[u8] = b"active_entries";
/// Expired stubs in the active tree (u64 BE).
pub const META_EXPIRED: &[u8] = b"expired_entries";
/// Revivals ever committed (u64 BE).
pub const META_REVIVED: &[u8] = b"revived_entries";
/// Present once `CF_STORAGE_COUNTS` describes the latest state (stores written before it
/// existed are counted once, at open).
pub const META_STORAGE_COUNTS: &[u8] = b"storage_counts_v1";
/// Bytes of keys and values the pruner has deleted (u64 BE).
pub const META_PRUNED_BYTES: &[u8] = b"pruned_bytes";

/// Length of the key-hash prefix in `CF_VALUES`.
pub const KEY_HASH_BYTES: usize = 32;

pub fn height_key(height: Height) -> [u8; 8] {
    height.to_be_bytes()
}

pub fn value_key(key_hash: &[u8; 32], height: Height) -> [u8; 40] {
    let mut out = [0u8; 40];
    out[..32].copy_from_slice(key_hash);
    out[32..].copy_from_slice(&height.to_be_bytes());
    out
}

pub fn decode_height(bytes: &[u8]) -> Option<Height> {
    Some(Height::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

pub fn touch_key(epoch: u64, key_hash: &[u8; 32]) -> [u8; 40] {
    let mut out = [0u8; 40];
    out[..8].copy_from_slice(&epoch.to_be_bytes());
    out[8..].copy_from_slice(key_hash);
    out
}

pub fn history_key(superseded_at: Height, key_hash: &[u8; 32], old: Height) -> [u8; 48] {
    let mut out = [0u8; 48];
    out[..8].copy_from_slice(&superseded_at.to_be_bytes());
    out[8..40].copy_from_slice(key_hash);
    out[40..].copy_from_slice(&old.to_be_bytes());
    out
}

pub fn archive_node_key(level: u32, index: u64) -> [u8; 13] {
    let mut out = [0u8; 13];
    out[0] = b'n';
    out[1..5].copy_from_slice(&level.to_be_bytes());
    out[5..].copy_from_slice(&index.to_be_bytes());
    out
}

pub fn archive_leaf_key(index: u64) -> [u8; 9] {
    let mut out = [0u8; 9];
    out[0] = b'l';
    out[1..].copy_from_slice(&index.to_be_bytes());
    out
}

pub fn fold_list_key(page: u64, key_hash: &[u8; 32]) -> [u8; 41] {
    let mut out = [0u8; 41];
    out[0] = b'f';
    out[1..9].copy_from_slice(&page.to_be_bytes());
    out[9..].copy_from_slice(key_hash);
    out
}
