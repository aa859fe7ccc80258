//! config.toml: one node's settings. Every field has a documented default and every bound
//! on memory or work is here.

use crate::mempool::MempoolConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The fewest heights a pruning node keeps (`storage.retain_heights`, unless 0 = archive):
/// the EVM's `BLOCKHASH` window. Execution reads the hashes of the last 256 blocks from the
/// store; a node that pruned one of them would read zero where its peers read the hash, and
/// fork from them. The pruner's policy (keel-pruning) enforces it too.
pub use keel_pruning::MIN_RETAIN_HEIGHTS;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    pub p2p: P2pConfig,
    pub rpc: RpcConfig,
    pub metrics: MetricsConfig,
    pub mempool: MempoolSection,
    pub consensus: ConsensusSection,
    pub storage: StorageSection,
    pub execution: ExecutionSection,
    pub log: LogSection,
    pub sync: SyncSection,
}

/// How a node with no state catches up (docs/validators.md, "Snapshot sync").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncSection {
    /// "block": execute every block from genesis (peers must still hold them); "snapshot":
    /// verify the epoch chain, restore the latest epoch boundary's state, then block-sync
    /// from there. Only a node with an empty (or interrupted-restore) data directory
    /// snapshots; one with state block-syncs whatever this says.
    pub mode: String,
    /// A trusted `HEIGHT:HASH` (an epoch's last block) to verify the epoch chain from
    /// instead of genesis; empty for genesis.
    pub checkpoint: String,
    /// Bytes asked per snapshot chunk: larger costs fewer round trips and proofs, smaller
    /// bounds the memory of the two chunks in flight.
    pub chunk_bytes: u32,
}

/// Default `sync.chunk_bytes`.
pub const DEFAULT_SNAPSHOT_CHUNK_BYTES: u32 = 4 * 1024 * 1024;

impl Default for SyncSection {
    fn default() -> Self {
        SyncSection {
            mode: "block".into(),
            checkpoint: String::new(),
            chunk_bytes: DEFAULT_SNAPSHOT_CHUNK_BYTES,
        }
    }
}

impl SyncSection {
    pub fn snapshot(&self) -> bool {
        self.mode == "snapshot"
    }

    /// The checkpoint, if set: `HEIGHT:0xHASH`.
    pub fn checkpoint(&self) -> Result<Option<(u64, keel_types::Hash)>, String> {
        if self.checkpoint.is_empty() {
            return Ok(None);
        }
        let (height, hash) = self
            .checkpoint
            .split_once(':')
            .ok_or_else(|| format!("sync.checkpoint = {:?}: use HEIGHT:0xHASH", self.checkpoint))?;
        let height = height
            .trim()
            .parse()
            .map_err(|_| format!("sync.checkpoint height {height:?} is not a number"))?;
        let hash = keel_types::Hash::from_hex(hash.trim())
            .map_err(|_| format!("sync.checkpoint hash {hash:?} is not a 32-byte hex hash"))?;
        Ok(Some((height, hash)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutionSection {
    /// Threads that execute a block's transactions: 1 runs them one after another, more
    /// run them speculatively in parallel and commit in block order. Results are
    /// byte-identical for every value (validators may differ); only speed changes.
    pub threads: usize,
}

impl Default for ExecutionSection {
    fn default() -> Self {
        ExecutionSection { threads: 1 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct P2pConfig {
    /// Address this validator listens on for peers.
    pub listen: String,
    /// Largest frame a peer may send, in bytes.
    pub max_frame_bytes: u32,
    /// Outbound messages queued per peer before the oldest are dropped.
    pub peer_queue_len: usize,
    /// Peers to reach besides genesis's validators and the registry's, `0xKEY@HOST:PORT`
    /// each (`keel query validators` shows the keys): how a node joining with no state
    /// finds validators that moved since genesis, or joined after it. An address wins over
    /// genesis's; the registry's wins over it once this node has state.
    pub bootstrap: Vec<String>,
}

/// At most this many `p2p.bootstrap` peers.
pub const MAX_BOOTSTRAP_PEERS: usize = 64;

impl P2pConfig {
    /// The bootstrap peers, parsed. A key is required: only keys in the peer table complete
    /// a handshake, and an address alone would trust whoever answers there.
    pub fn bootstrap_peers(&self) -> Result<Vec<(keel_types::PublicKey, String)>, String> {
        if self.bootstrap.len() > MAX_BOOTSTRAP_PEERS {
            return Err(format!(
                "p2p.bootstrap has {} peers; at most {MAX_BOOTSTRAP_PEERS}",
                self.bootstrap.len()
            ));
        }
        let mut peers: Vec<(keel_types::PublicKey, String)> = Vec::new();
        for entry in &self.bootstrap {
            let bad = |why: &str| format!("p2p.bootstrap {entry:?}: {why}");
            let (key, addr) = entry
                .split_once('@')
                .ok_or_else(|| bad("use 0xKEY@HOST:PORT (keel query validators shows the keys)"))?;
            let key = keel_types::PublicKey::from_hex(key.trim())
                .map_err(|_| bad("the key is not 32 bytes of hex"))?;
            key.validate()
                .map_err(|_| bad("the key is not a valid ed25519 key"))?;
            let addr = addr.trim();
            if addr.len() > keel_types::validator::MAX_P2P_ADDRESS_BYTES
                || addr.parse::<std::net::SocketAddr>().is_err()
            {
                return Err(bad("the address is not IP:PORT"));
            }
            if peers.iter().any(|(k, _)| *k == key) {
                return Err(bad("the key is listed twice"));
            }
            peers.push((key, addr.to_string()));
        }
        Ok(peers)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpcConfig {
    /// JSON-RPC (HTTP and WebSocket); loopback unless the operator says otherwise.
    pub listen: String,
    pub max_request_bytes: u32,
    pub max_batch: u32,
    pub max_connections: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `/metrics` (Prometheus) and `/health`.
    pub listen: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MempoolSection {
    pub max_txs: usize,
    pub max_bytes: usize,
    pub max_per_sender: usize,
    pub nonce_window: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsensusSection {
    /// The idle heartbeat: with no transactions, an empty block this long after the last.
    pub block_time_ms: u64,
    /// With transactions waiting, the leader proposes this long after the parent block (at
    /// once if that has passed): block times follow load. At most `block_time_ms` (equal:
    /// fixed-interval blocks).
    pub min_block_interval_ms: u64,
    pub timeout_base_ms: u64,
    pub timeout_max_ms: u64,
    /// Transactions per proposed block.
    pub max_block_txs: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// Heights of state, blocks and receipts kept; 0 keeps everything (archive), otherwise
    /// at least [`MIN_RETAIN_HEIGHTS`].
    pub retain_heights: u64,
    /// Keep the expiry archive and serve revival proofs (`keel_getProof` with an epoch).
    /// A chain needs at least one node that keeps it, or expired entries cannot come back.
    pub keep_archive: bool,
    /// How often the pruner looks for heights to drop.
    pub prune_interval_ms: u64,
    /// Heights one pruning step drops at most (one RocksDB batch; bounds its memory).
    pub prune_batch_heights: u64,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            retain_heights: 0,
            keep_archive: true,
            prune_interval_ms: 1_000,
            prune_batch_heights: 256,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// "terminal" or "json".
    pub format: String,
    /// A tracing filter, e.g. "info" or "keel=debug".
    pub level: String,
}

impl Default for P2pConfig {
    fn default() -> Self {
        P2pConfig {
            listen: "127.0.0.1:26600".into(),
            // A consensus message carries at most one maximal block (16 MiB) or one sync
            // response of that size.
            max_frame_bytes: (keel_consensus::MAX_MESSAGE_BYTES + 1024) as u32,
            peer_queue_len: 1_024,
            bootstrap: Vec::new(),
        }
    }
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            listen: "127.0.0.1:8545".into(),
            max_request_bytes: 1024 * 1024,
            max_batch: 64,
            max_connections: 256,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: "127.0.0.1:9615".into(),
        }
    }
}

impl Default for MempoolSection {
    fn default() -> Self {
        let d = MempoolConfig::default();
        MempoolSection {
            max_txs: d.max_txs,
            max_bytes: d.max_bytes,
            max_per_sender: d.max_per_sender,
            nonce_window: d.nonce_window,
        }
    }
}

/// Default minimum time between blocks while transactions wait: short enough that a
/// transaction waits little for a block, long enough that a block carries many of them
/// (each block costs every validator a round of signed votes).
pub const DEFAULT_MIN_BLOCK_INTERVAL_MS: u64 = 100;

impl Default for ConsensusSection {
    fn default() -> Self {
        ConsensusSection {
            block_time_ms: 500,
            min_block_interval_ms: DEFAULT_MIN_BLOCK_INTERVAL_MS,
            timeout_base_ms: 2_000,
            timeout_max_ms: 30_000,
            max_block_txs: 5_000,
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            format: "terminal".into(),
            level: "info".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {reason}")]
    Read { path: String, reason: String },
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl NodeConfig {
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let read = |reason: String| ConfigError::Read {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| read(e.to_string()))?;
        let config: NodeConfig = toml::from_str(&text).map_err(|e| read(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        for (name, addr) in [
            ("p2p.listen", &self.p2p.listen),
            ("rpc.listen", &self.rpc.listen),
            ("metrics.listen", &self.metrics.listen),
        ] {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                return invalid(format!("{name} = {addr:?} is not host:port"));
            }
        }
        if !matches!(self.log.format.as_str(), "terminal" | "json") {
            return invalid(format!(
                "log.format = {:?}: use \"terminal\" or \"json\"",
                self.log.format
            ));
        }
        self.p2p.bootstrap_peers().map_err(ConfigError::Invalid)?;
        // Below 1 MiB a validator could not carry an ordinary block (and its proposals
        // would be cut to nothing past the header margin).
        if self.p2p.max_frame_bytes < 1024 * 1024 || self.p2p.peer_queue_len == 0 {
            return invalid(
                "p2p.max_frame_bytes must be >= 1048576 and p2p.peer_queue_len >= 1".into(),
            );
        }
        if self.mempool.max_txs == 0
            || self.mempool.max_per_sender == 0
            || self.mempool.nonce_window == 0
        {
            return invalid("mempool bounds must be positive".into());
        }
        if self.consensus.min_block_interval_ms > self.consensus.block_time_ms {
            return invalid(format!(
                "consensus.min_block_interval_ms ({}) must be at most block_time_ms ({})",
                self.consensus.min_block_interval_ms, self.consensus.block_time_ms
            ));
        }
        if self.consensus.block_time_ms == 0
            || self.consensus.timeout_base_ms == 0
            || self.consensus.timeout_max_ms < self.consensus.timeout_base_ms
        {
            return invalid(
                "consensus timings must be positive and timeout_max_ms >= timeout_base_ms".into(),
            );
        }
        if self.storage.retain_heights != 0 && self.storage.retain_heights < MIN_RETAIN_HEIGHTS {
            return invalid(format!(
                "storage.retain_heights = {}: use 0 (archive) or at least {MIN_RETAIN_HEIGHTS} \
                 (BLOCKHASH reads the last {MIN_RETAIN_HEIGHTS} block hashes, so every node \
                 must keep them)",
                self.storage.retain_heights
            ));
        }
        if self.execution.threads == 0 || self.execution.threads > keel_runtime::MAX_EXEC_THREADS {
            return invalid(format!(
                "execution.threads = {}: use 1 to {}",
                self.execution.threads,
                keel_runtime::MAX_EXEC_THREADS
            ));
        }
        if !matches!(self.sync.mode.as_str(), "block" | "snapshot") {
            return invalid(format!(
                "sync.mode = {:?}: use \"block\" or \"snapshot\"",
                self.sync.mode
            ));
        }
        self.sync.checkpoint().map_err(ConfigError::Invalid)?;
        let chunk_bytes = self.sync.chunk_bytes as usize;
        let (min, max) = (
            keel_types::proof::MIN_SNAPSHOT_CHUNK_BYTES,
            keel_types::proof::MAX_SNAPSHOT_CHUNK_BYTES,
        );
        if !(min..=max).contains(&chunk_bytes) {
            return invalid(format!(
                "sync.chunk_bytes = {chunk_bytes}: use {min} to {max}"
            ));
        }
        if self.storage.prune_batch_heights == 0 || self.storage.prune_interval_ms == 0 {
            return invalid(
                "storage.prune_batch_heights and storage.prune_interval_ms must be at least 1"
                    .into(),
            );
        }
        Ok(())
    }

    pub fn mempool_config(&self) -> MempoolConfig {
        MempoolConfig {
            max_txs: self.mempool.max_txs,
            max_bytes: self.mempool.max_bytes,
            max_per_sender: self.mempool.max_per_sender,
            nonce_window: self.mempool.nonce_window,
            // Gossip batches are split over the cores (RPC admits one at a time: one thread).
            verify_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            ..MempoolConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_retention(retain_heights: u64) -> NodeConfig {
        let mut config = NodeConfig::default();
        config.storage.retain_heights = retain_heights;
        config
    }

    #[test]
    fn retention_below_the_blockhash_window_is_refused() {
        for short in [1, 10, MIN_RETAIN_HEIGHTS - 1] {
            let err = with_retention(short).validate().expect_err("too short");
            assert!(err.to_string().contains("retain_heights"), "{err}");
        }
        for ok in [0, MIN_RETAIN_HEIGHTS, 10_000] {
            with_retention(ok).validate().expect("valid retention");
        }
    }

    #[test]
    fn a_minimum_block_interval_above_the_heartbeat_is_refused() {
        let mut config = NodeConfig::default();
        config.consensus.min_block_interval_ms = config.consensus.block_time_ms + 1;
        let err = config.validate().expect_err("above the heartbeat");
        assert!(err.to_string().contains("min_block_interval_ms"), "{err}");
        config.consensus.min_block_interval_ms = config.consensus.block_time_ms;
        config.validate().expect("fixed-interval blocks");
        config.consensus.min_block_interval_ms = 0;
        config
            .validate()
            .expect("propose as soon as the parent is notarized");
    }

    /// Bootstrap peers parse to (key, address); each malformed entry is refused by name,
    /// and so is a config holding one.
    #[test]
    fn bootstrap_peers_need_a_key_and_an_address() {
        let key = keel_types::SecretKey::from_seed([3; 32])
            .public_key()
            .to_hex();
        let mut config = NodeConfig::default();
        config.p2p.bootstrap = vec![format!("{key}@127.0.0.1:7000")];
        let peers = config.p2p.bootstrap_peers().expect("valid");
        assert_eq!(peers.len(), 1);
        assert_eq!(
            (peers[0].0.to_hex(), peers[0].1.as_str()),
            (key.clone(), "127.0.0.1:7000")
        );
        config.validate().expect("a valid config");
        let small_order = format!("0x{}", "00".repeat(32));
        for bad in [
            "127.0.0.1:7000".to_string(),
            key.clone(),
            "0x1234@127.0.0.1:7000".to_string(),
            format!("{small_order}@127.0.0.1:7000"),
            format!("{key}@localhost"),
            format!("{key}@127.0.0.1"),
        ] {
            config.p2p.bootstrap = vec![bad.clone()];
            let err = config.validate().expect_err("refused");
            assert!(err.to_string().contains("p2p.bootstrap"), "{bad}: {err}");
        }
        config.p2p.bootstrap = vec![format!("{key}@127.0.0.1:1"), format!("{key}@127.0.0.1:2")];
        assert!(config.p2p.bootstrap_peers().is_err(), "a key twice");
        config.p2p.bootstrap = (0..=MAX_BOOTSTRAP_PEERS)
            .map(|i| {
                let k = keel_types::SecretKey::from_seed([i as u8; 32]).public_key();
                format!("{}@127.0.0.1:{}", k.to_hex(), 1000 + i)
            })
            .collect();
        assert!(config.p2p.bootstrap_peers().is_err(), "too many");
    }

    #[test]
    fn a_config_file_with_short_retention_does_not_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[storage]\nretain_heights = 10\n").expect("write");
        let err = NodeConfig::load(&path).expect_err("refused");
        assert!(matches!(err, ConfigError::Invalid(_)), "{err}");
    }
}
