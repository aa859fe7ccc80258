//! A watcher of a running cluster's finalized chain, for tests that restart, kill and add
//! nodes while the chain runs: it reads each node's blocks as they come (the pruner drops old
//! ones, so a check at the end sees only the last few hundred heights) and compares every
//! node's block hash and state root with node 0's at each height, and measures the longest
//! gap between two of node 0's consecutive blocks.

use super::Cluster;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Heights of node 0's blocks kept to compare the others with: nodes further behind than
/// this are compared from where they catch up.
const REFERENCE_HEIGHTS: usize = 4_096;
/// Blocks read from one node per round, so one far-behind node cannot starve the others.
const MAX_BLOCKS_PER_ROUND: u64 = 256;
/// Between two rounds.
const ROUND_INTERVAL: Duration = Duration::from_millis(300);

/// What a [`watch_chain`] saw.
#[derive(Debug, Default)]
pub struct ChainWatch {
    /// The longest gap between two consecutive blocks of node 0 (their timestamps), and the
    /// height of the second.
    pub worst_gap_ms: u64,
    pub worst_gap_at: u64,
    /// Node 0's blocks read, and those it could not serve (no gap is measured across them).
    pub seen: u64,
    pub skipped: u64,
    /// Per node, the heights whose block and root matched node 0's (node 0's entry is 0).
    pub compared: Vec<u64>,
    /// Every height where a node's block hash or state root differed from node 0's.
    pub divergences: Vec<String>,
}

/// Watches nodes `0..cluster.n` until `stop`: a node that does not answer (killed,
/// restarting, restoring a snapshot) is skipped that round, and a block it does not hold
/// (pruned, below its restored boundary) is not compared.
pub fn watch_chain(
    cluster: &Cluster,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<ChainWatch> {
    let clients: Vec<_> = (0..cluster.n).map(|i| cluster.client(i)).collect();
    cluster.rt.spawn(async move {
        let mut watch = ChainWatch {
            compared: vec![0; clients.len()],
            ..ChainWatch::default()
        };
        let mut reference: BTreeMap<u64, (String, String)> = BTreeMap::new();
        let mut next: Vec<Option<u64>> = vec![None; clients.len()];
        let mut previous_timestamp: Option<u64> = None;
        while !stop.load(Ordering::Relaxed) {
            for (i, client) in clients.iter().enumerate() {
                let Ok(status) = client.request("keel_status", vec![]).await else {
                    continue;
                };
                let Some(tip) = status["height"].as_u64().filter(|&h| h > 0) else {
                    continue;
                };
                // Node 0 sets the reference; the others are compared up to it.
                let upto = if i == 0 {
                    tip
                } else {
                    match reference.last_key_value() {
                        Some((&top, _)) => tip.min(top),
                        None => continue,
                    }
                };
                // A node that restarted from an empty state (a new restore) is below where it
                // was: compare again from its new tip.
                if next[i].is_some_and(|n| tip + 1 < n) {
                    next[i] = None;
                }
                let from = next[i].unwrap_or(upto);
                for height in from..=upto.min(from + MAX_BLOCKS_PER_ROUND - 1) {
                    let block = client
                        .request("keel_getBlock", vec![json!(height)])
                        .await
                        .ok()
                        .filter(|b| !b.is_null());
                    next[i] = Some(height + 1);
                    let Some(block) = block else {
                        if i == 0 {
                            watch.skipped += 1;
                            previous_timestamp = None;
                        }
                        continue;
                    };
                    let field = |name: &str| block[name].as_str().unwrap_or_default().to_string();
                    let pair = (field("hash"), field("state_root"));
                    if i == 0 {
                        let timestamp = block["timestamp_ms"].as_u64();
                        if let (Some(t), Some(p)) = (timestamp, previous_timestamp) {
                            if t.saturating_sub(p) > watch.worst_gap_ms {
                                (watch.worst_gap_ms, watch.worst_gap_at) =
                                    (t.saturating_sub(p), height);
                            }
                        }
                        previous_timestamp = timestamp;
                        watch.seen += 1;
                        reference.insert(height, pair);
                        while reference.len() > REFERENCE_HEIGHTS {
                            reference.pop_first();
                        }
                    } else if let Some(expected) = reference.get(&height) {
                        // A field missing on both sides (a renamed field) is no match.
                        if *expected == pair && !pair.0.is_empty() && !pair.1.is_empty() {
                            watch.compared[i] += 1;
                        } else {
                            watch.divergences.push(format!(
                                "height {height}: node 0 has block {} root {}, node {i} block {} root {}",
                                expected.0, expected.1, pair.0, pair.1
                            ));
                        }
                    }
                }
            }
            tokio::time::sleep(ROUND_INTERVAL).await;
        }
        watch
    })
}
