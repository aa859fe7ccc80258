//! Prometheus metrics (`GET /metrics`), liveness (`GET /health`) and the status page (`GET /`,
//! status_page.rs) on the metrics port.
//! Metric names are constants here so every emitter and the docs agree.

use crate::status_page::{Asset, StatusPage};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::Arc;

pub const HEIGHT: &str = "keel_height";
pub const FINALIZED_HEIGHT: &str = "keel_finalized_height";
pub const VIEW: &str = "keel_view";
pub const EPOCH: &str = "keel_epoch";
pub const FINALITY_LATENCY: &str = "keel_finality_latency_seconds";
pub const MEMPOOL_SIZE: &str = "keel_mempool_size";
pub const MEMPOOL_BYTES: &str = "keel_mempool_bytes";
pub const MEMPOOL_REJECTED: &str = "keel_mempool_rejected_total";
/// Transactions peers gossiped that admission refused, by the same reasons.
pub const GOSSIP_REJECTED: &str = "keel_gossip_rejected_total";
pub const EXECUTED_GAS: &str = "keel_executed_gas_total";
pub const EXECUTED_TXS: &str = "keel_executed_txs_total";
/// Block transactions whose signature this node had already verified (verify-once).
pub const SIGNATURES_VERIFIED_ONCE: &str = "keel_signatures_verified_once_total";
/// Block transactions whose signature was verified during the block.
pub const SIGNATURES_VERIFIED_IN_BLOCK: &str = "keel_signatures_verified_in_block_total";
/// Parallel execution: speculations kept, speculations redone on the committing thread, and
/// transactions that thread executed itself (`keel_runtime::ParallelStats`).
pub const EXEC_PARALLEL_KEPT: &str = "keel_exec_parallel_kept_total";
pub const EXEC_PARALLEL_REDONE: &str = "keel_exec_parallel_redone_total";
pub const EXEC_PARALLEL_DIRECT: &str = "keel_exec_parallel_direct_total";
pub use keel_p2p::metric::{GUESTS, P2P_DROPPED, P2P_REJECTED, PEERS};
pub const VOTELOG_FSYNC: &str = "keel_votelog_fsync_seconds";
pub const HALTED: &str = "keel_halted";
pub const BLOCK_EXECUTION: &str = "keel_block_execution_seconds";
pub const RPC_REQUESTS: &str = "keel_rpc_requests_total";
pub const ACTIVE_ENTRIES: &str = "keel_state_active_entries";
pub const EXPIRED_ENTRIES: &str = "keel_state_expired_entries";
pub const REVIVED_ENTRIES: &str = "keel_state_revived_entries_total";
pub const PRUNED_BYTES: &str = "keel_pruned_bytes_total";
pub const DISK_SIZE: &str = "keel_disk_size_bytes";
pub const OLDEST_RETAINED: &str = "keel_oldest_retained_height";
/// Snapshot state sync: the height being restored, entries and bytes restored so far,
/// peers dropped for a chain or chunk that failed its proof, and chunk answers far slower
/// than the other peers' (their server rests: `snapshot::judge::Pace`).
pub const SYNC_TARGET_HEIGHT: &str = "keel_sync_target_height";
pub const SYNC_ENTRIES: &str = "keel_sync_entries";
pub const SYNC_BYTES: &str = "keel_sync_bytes_total";
pub const SYNC_PEERS_DROPPED: &str = "keel_sync_peers_dropped_total";
pub const SYNC_CHUNKS: &str = "keel_sync_chunks_total";
pub const SYNC_SLOW_ANSWERS: &str = "keel_sync_slow_answers_total";

/// The chain's executions and commits as metrics: execution time from this process's
/// monotonic clock (the application core reads none), gas and transactions at commit.
#[derive(Debug)]
pub struct ChainMetrics {
    origin: std::time::Instant,
    parallel: Option<Arc<keel_runtime::ParallelStats>>,
}

impl Default for ChainMetrics {
    fn default() -> Self {
        ChainMetrics {
            origin: std::time::Instant::now(),
            parallel: None,
        }
    }
}

impl ChainMetrics {
    /// Also reports the runtime's parallel-execution counts.
    pub fn with_parallel_stats(mut self, stats: Arc<keel_runtime::ParallelStats>) -> Self {
        self.parallel = Some(stats);
        self
    }
}

impl keel_app::ChainObserver for ChainMetrics {
    fn execution_started(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn executed(&self, started: u64) {
        let elapsed_ns = self.execution_started().saturating_sub(started);
        metrics::histogram!(BLOCK_EXECUTION)
            .record(std::time::Duration::from_nanos(elapsed_ns).as_secs_f64());
    }

    fn committed(&self, gas_used: u64, txs: u64) {
        metrics::counter!(EXECUTED_GAS).increment(gas_used);
        metrics::counter!(EXECUTED_TXS).increment(txs);
        if let Some(stats) = &self.parallel {
            let (kept, redone, direct) = stats.get();
            metrics::counter!(EXEC_PARALLEL_KEPT).absolute(kept);
            metrics::counter!(EXEC_PARALLEL_REDONE).absolute(redone);
            metrics::counter!(EXEC_PARALLEL_DIRECT).absolute(direct);
        }
    }
}

/// What `/health` reports.
pub trait Health: Send + Sync + 'static {
    /// `Ok(summary)` when the node is live, `Err(reason)` when halted.
    fn health(&self) -> Result<String, String>;
    /// `Ok(summary)` when the node serves its full RPC at the tip (`GET /ready`), `Err(why
    /// not)` while it restores a snapshot, catches up, or has halted.
    fn ready(&self) -> Result<String, String>;
}

/// Installs the global recorder (once per process) and returns its handle.
pub fn install() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    let buckets = [
        0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
    ];
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
            &buckets,
        )?
        .install_recorder()
}

/// Serves `/metrics`, `/health`, `/ready` and the status page until the process ends.
pub async fn serve(
    addr: SocketAddr,
    handle: PrometheusHandle,
    health: Arc<dyn Health>,
    page: Arc<StatusPage>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handle = handle.clone();
            let health = health.clone();
            let page = page.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<_>| {
                    let response = respond(req.uri().path(), &handle, health.as_ref(), &page);
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    Ok(())
}

pub(crate) fn respond(
    path: &str,
    handle: &PrometheusHandle,
    health: &dyn Health,
    page: &StatusPage,
) -> Response<Full<Bytes>> {
    if let Some(asset) = page.asset(path) {
        return page_response(asset, page.content_security_policy());
    }
    let (status, body) = match path {
        "/metrics" => (StatusCode::OK, handle.render()),
        "/health" => match health.health() {
            Ok(summary) => (StatusCode::OK, summary),
            Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
        },
        "/ready" => match health.ready() {
            Ok(summary) => (StatusCode::OK, summary),
            Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
        },
        _ => (
            StatusCode::NOT_FOUND,
            "try /, /metrics, /health or /ready\n".into(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

fn page_response(asset: Asset, csp: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(asset.body)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    if let Ok(csp) = HeaderValue::from_str(csp) {
        headers.insert("content-security-policy", csp);
    }
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod dashboard_tests {
    use super::*;

    /// Every metric the node exports.
    const ALL: &[&str] = &[
        HEIGHT,
        FINALIZED_HEIGHT,
        VIEW,
        EPOCH,
        FINALITY_LATENCY,
        MEMPOOL_SIZE,
        MEMPOOL_BYTES,
        MEMPOOL_REJECTED,
        GOSSIP_REJECTED,
        EXECUTED_GAS,
        EXECUTED_TXS,
        SIGNATURES_VERIFIED_ONCE,
        SIGNATURES_VERIFIED_IN_BLOCK,
        EXEC_PARALLEL_KEPT,
        EXEC_PARALLEL_REDONE,
        EXEC_PARALLEL_DIRECT,
        P2P_DROPPED,
        P2P_REJECTED,
        PEERS,
        GUESTS,
        VOTELOG_FSYNC,
        HALTED,
        BLOCK_EXECUTION,
        RPC_REQUESTS,
        ACTIVE_ENTRIES,
        EXPIRED_ENTRIES,
        REVIVED_ENTRIES,
        PRUNED_BYTES,
        DISK_SIZE,
        OLDEST_RETAINED,
        SYNC_TARGET_HEIGHT,
        SYNC_ENTRIES,
        SYNC_BYTES,
        SYNC_PEERS_DROPPED,
        SYNC_CHUNKS,
        SYNC_SLOW_ANSWERS,
    ];

    /// devnet/grafana/keel-devnet.json charts only metrics the node exports (a renamed
    /// metric would leave a panel silently empty), and every one of them.
    #[test]
    fn the_devnet_dashboard_charts_exactly_the_exported_metrics() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../devnet/grafana/keel-devnet.json");
        let text = std::fs::read_to_string(&path).expect("dashboard");
        let dashboard: serde_json::Value = serde_json::from_str(&text).expect("json");
        let mut charted = std::collections::BTreeSet::new();
        for panel in dashboard["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().expect("targets") {
                let expr = target["expr"].as_str().expect("expr");
                let mut rest = expr;
                while let Some(at) = rest.find("keel_") {
                    let tail = &rest[at..];
                    let end = tail
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(tail.len());
                    let name = &tail[..end];
                    let base = ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|s| name.strip_suffix(s))
                        .unwrap_or(name);
                    assert!(ALL.contains(&base), "{base} in {expr:?} is not exported");
                    charted.insert(base.to_string());
                    rest = &tail[end..];
                }
            }
        }
        for name in ALL {
            assert!(charted.contains(*name), "{name} has no panel");
        }
    }
}
