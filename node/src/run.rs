//! `keel run`: one validator in the foreground. Reads HOME/{config.toml, genesis.json,
//! keys/validator.json}, opens (or creates) HOME/data, and wires the store, runtime,
//! mempool, network, driver, RPC and metrics together.

use crate::admission::{may_run_plugins, plugin_veto, NextBlock, MAX_GOSSIP_PLUGIN_GAS};
use crate::config::NodeConfig;
use crate::driver::{Driver, DriverConfig};
use crate::genesis::Genesis;
use crate::keys;
use crate::mempool::{admit_latest_vetted, Mempool};
use crate::metrics::{self as m, Health};
use crate::rpc::{self, RpcContext, RpcLimits};
use crate::shared::{Shared, Status};
use anyhow::Context;
use keel_app::Chain;
use keel_exec_wasm::ModuleCache;
use keel_p2p::{InboundBudget, NetConfig, NetMessage, Network, MAX_GOSSIP_TXS};
use keel_runtime::{Runtime, RuntimeConfig};
use keel_store::{Store, StoreOptions};
use keel_types::SignedTransaction;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc;

/// Admitted transactions waiting to be gossiped.
pub const GOSSIP_OUT_QUEUE_LEN: usize = 16_384;
/// Encoded bytes of one gossip message (well under the p2p message limit).
pub const GOSSIP_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// How long the gossip task gathers transactions into one message.
pub const GOSSIP_BATCH_MS: u64 = 20;

struct NodeHealth {
    shared: Arc<Shared>,
    /// Set once the store exists (after a snapshot restore, on a node that restores one).
    store: Arc<OnceLock<Arc<Store>>>,
}

impl Health for NodeHealth {
    fn health(&self) -> Result<String, String> {
        health_report(
            &self.shared.status(),
            self.store
                .get()
                .and_then(|s| s.latest())
                .map_or(0, |l| l.height),
        )
    }

    fn ready(&self) -> Result<String, String> {
        let tip = self.store.get().map(|store| {
            store.latest().and_then(|l| {
                let block = store.block(l.height).ok().flatten()?;
                Some((l.height, block.header.timestamp_ms))
            })
        });
        ready_report(&self.shared.status(), tip, crate::driver::now_ms())
    }
}

/// How old the node's newest block may be for `/ready` to say yes. Blocks come at least
/// every heartbeat while the chain is live; a node whose tip is older is catching up (by
/// sync responses, or from an epoch it has not verified yet), was just restarted on an old
/// store, or sits on a stalled chain — none serves current state.
pub const READY_MAX_TIP_AGE_MS: u64 = 30_000;

/// `/health`'s answer: unhealthy once the node halted, which includes a driver thread that
/// stopped or panicked (see `Shared::driver_guard`). A node restoring a snapshot is live
/// (a probe must not restart it) and says how far it is.
fn health_report(status: &Status, height: u64) -> Result<String, String> {
    match (&status.halted, &status.snapshot) {
        (Some(reason), _) => Err(format!("halted: {reason}\n")),
        (None, Some(p)) if p.phase != "done" => Ok(format!(
            "syncing snapshot phase={} height={} permille={} entries={}\n",
            p.phase, p.target_height, p.permille, p.entries
        )),
        (None, _) => Ok(format!(
            "ok height={height} view={} peers={}\n",
            status.view, status.peers
        )),
    }
}

/// `/ready`'s answer: ready once the node has its state (`tip`: `None` until the store is
/// open and the full RPC listens; `Some(None)` if it holds no block), has not halted, is
/// not fetching a quorum-certified finalization above its tip (`sync_target`), and its
/// newest block is at most [`READY_MAX_TIP_AGE_MS`] old. It does not use the views peers
/// vote in (`honest_view_heard`): a node at a fresh tip can serve reads whatever views
/// validators vote in, and readiness then needs no trust in what peers claim.
fn ready_report(
    status: &Status,
    tip: Option<Option<(u64, u64)>>,
    now_ms: u64,
) -> Result<String, String> {
    let height = tip.flatten().map_or(0, |(h, _)| h);
    health_report(status, height)?;
    let Some(tip) = tip else {
        return Err(match &status.snapshot {
            Some(p) => format!(
                "not ready: restoring a snapshot phase={} permille={}\n",
                p.phase, p.permille
            ),
            None => "not ready: opening the store\n".into(),
        });
    };
    let Some((height, timestamp_ms)) = tip else {
        return Err("not ready: no block yet\n".into());
    };
    if let Some(target) = status.sync_target {
        return Err(format!(
            "not ready: catching up height={height} sync_target={target}\n"
        ));
    }
    let age_ms = now_ms.saturating_sub(timestamp_ms);
    if age_ms > READY_MAX_TIP_AGE_MS {
        return Err(format!(
            "not ready: the newest block (height {height}) is {age_ms} ms old\n"
        ));
    }
    Ok(format!("ready height={height} view={}\n", status.view))
}

/// Sets up tracing from config.toml (`log.format`, `log.level`; `RUST_LOG` overrides).
pub fn init_logging(config: &NodeConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// `keel run` flags that override config.toml.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `sync.mode`: "block" or "snapshot".
    pub sync: Option<String>,
    /// `sync.checkpoint`: `HEIGHT:0xHASH`.
    pub checkpoint: Option<String>,
}

pub async fn run(home: &Path, options: RunOptions) -> anyhow::Result<()> {
    let config_path = home.join("config.toml");
    let mut config = NodeConfig::load(&config_path)?;
    if let Some(mode) = options.sync {
        config.sync.mode = mode;
    }
    if let Some(checkpoint) = options.checkpoint {
        config.sync.checkpoint = checkpoint;
    }
    config.validate()?;
    init_logging(&config);
    let genesis = Genesis::load(&home.join("genesis.json"))?;
    let key = keys::read(&home.join("keys/validator.json"))?;
    // A key outside genesis is a node that joins later through the registry
    // (docs/validators.md): it syncs as an observer and votes once a set includes it.
    let me = genesis
        .validators
        .iter()
        .position(|v| v.public_key == key.public_key())
        .and_then(|i| u16::try_from(i).ok())
        .unwrap_or(u16::MAX);
    if me == u16::MAX {
        tracing::info!(
            key = %key.public_key(),
            "not a genesis validator: joining as an observer until a validator set includes this key"
        );
    }
    let data = home.join("data");
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let store_options = StoreOptions {
        keep_archive: config.storage.keep_archive,
        index_touches: genesis.expiry_epochs > 0,
        ..StoreOptions::default()
    };
    let state_path = data.join("state");
    let opened = Arc::new(
        Store::open(&state_path, store_options.clone())
            .with_context(|| format!("opening the store in {}", data.display()))?,
    );
    // A damaged vote log stops the start now, not after a snapshot restore. Opened once the
    // store holds its lock, so a second `keel run` on this home never trims a live log; the
    // driver opens it again (opening drops only a torn tail, so twice is harmless).
    drop(keel_consensus::FileVoteLog::open(&data.join("votes.log"))?);
    // A node with no state restores a snapshot first if told to (docs/validators.md).
    let snapshot = config.sync.snapshot() && opened.latest().is_none();
    let store = if snapshot {
        drop(opened);
        // Marked before the restore: `apply` reads the mark only once the store has a
        // latest height, and a crash right after the restore must not leave a store no
        // genesis matches.
        genesis.mark_restored(&data)?;
        None
    } else {
        anyhow::ensure!(
            !keel_store::SnapshotRestore::in_progress(&opened)?,
            "{} holds an unfinished snapshot restore: start with --sync snapshot to finish \
             it, or empty the directory to block-sync from genesis",
            state_path.display()
        );
        genesis.apply(&opened, &data)?;
        Some(opened)
    };
    let checkpoint = config.sync.checkpoint().map_err(anyhow::Error::msg)?;
    if let Some((height, _)) = checkpoint {
        anyhow::ensure!(
            height > 0 && height % genesis.epoch_length == 0,
            "sync.checkpoint height {height} is not an epoch's last block (a multiple of \
             epoch_length {})",
            genesis.epoch_length
        );
    }
    let genesis_hash = genesis.hash();
    let cache = Arc::new(
        ModuleCache::new(
            Some(data.join("wasm-cache")),
            // One bound for the node and the runtime's tests; `MODULE_CACHE_BYTES` caps the
            // artifacts' bytes whatever their count.
            keel_exec_wasm::limits::MODULE_CACHE_ENTRIES,
        )
        .context("opening the WASM module cache")?,
    );
    let runtime = Runtime::new(
        RuntimeConfig {
            chain_id: genesis.chain_id,
            block_gas_limit: genesis.block_gas_limit,
            min_gas_price: genesis.min_gas_price,
            verify_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            exec_threads: config.execution.threads,
            expiry_epochs: genesis.expiry_epochs,
            fold_epochs: genesis.fold_epochs,
            plugin_gas: genesis.plugin_gas,
            registry: genesis.registry_params(),
        },
        cache,
    )
    .with_attesters(&genesis.attesters);
    // Admission and execution share one signature cache: a transaction's signature is
    // verified once per node (issue 22).
    let mempool = Arc::new(Mutex::new(
        Mempool::new(
            config.mempool_config(),
            genesis.chain_id,
            genesis.min_gas_price,
        )
        .with_signature_cache(runtime.signature_cache().clone())
        .with_epoch_length(genesis.epoch_length),
    ));
    let prometheus = m::install().context("installing the metrics recorder")?;
    let shared = Arc::new(Shared::default());
    let rpc_listen: std::net::SocketAddr = config.rpc.listen.parse()?;
    let rpc_limits = RpcLimits {
        max_request_bytes: config.rpc.max_request_bytes,
        max_batch: config.rpc.max_batch,
        max_connections: config.rpc.max_connections,
    };
    // Metrics and /health are up from the start: a snapshot restore is watched through
    // them (`keel_sync_*`).
    let store_cell = Arc::new(OnceLock::new());
    m::serve(
        config.metrics.listen.parse()?,
        prometheus,
        Arc::new(NodeHealth {
            shared: shared.clone(),
            store: store_cell.clone(),
        }),
        Arc::new(crate::status_page::StatusPage::new(rpc_listen)),
    )
    .await
    .with_context(|| format!("binding metrics on {}", config.metrics.listen))?;

    let known_peers = match &store {
        Some(store) => crate::driver::registry_peers(&store.latest_view())
            .context("reading the validator registry")?,
        None => Vec::new(),
    };
    // After genesis's (a node with no state knows only those) and before the registry's,
    // which are newer than any config once this node has state.
    let bootstrap = config
        .p2p
        .bootstrap_peers()
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .filter(|(k, _)| *k != key.public_key());
    let (net, mut inbound, gossip_in) = Network::start(
        NetConfig {
            listen: config.p2p.listen.parse()?,
            validators: genesis
                .validators
                .iter()
                .map(|v| (v.public_key, v.p2p.clone()))
                .chain(bootstrap)
                .chain(known_peers)
                .collect(),
            chain_id: genesis.chain_id,
            genesis_hash,
            max_frame_bytes: config.p2p.max_frame_bytes as usize,
            peer_queue_len: config.p2p.peer_queue_len,
            guest_tenure_ms: keel_p2p::GUEST_TENURE_MS,
        },
        key.clone(),
    )
    .await
    .with_context(|| format!("binding p2p on {}", config.p2p.listen))?;
    let store = match store {
        Some(store) => store,
        None => {
            // While it restores, RPC answers `keel_status` (syncing, with the progress).
            let syncing = rpc::serve(
                rpc_listen,
                &rpc_limits,
                rpc::syncing_module(rpc::SyncingContext {
                    shared: shared.clone(),
                    net: net.clone(),
                    chain_id: genesis.chain_id,
                    genesis_hash,
                    validators: genesis.validators.len(),
                    min_gas_price: genesis.min_gas_price,
                })
                .map_err(anyhow::Error::msg)?,
            )
            .await
            .with_context(|| format!("binding RPC on {}", config.rpc.listen))?;
            let params = crate::snapshot::SyncParams {
                checkpoint,
                chunk_bytes: config.sync.chunk_bytes,
                shared: shared.clone(),
            };
            let synced = crate::snapshot::sync(
                &net,
                &mut inbound,
                &genesis,
                &params,
                &state_path,
                store_options.clone(),
            )
            .await;
            let store = match synced {
                Ok(store) => store,
                // A chain in its first epoch: nothing is pruned yet, so block sync from
                // genesis works.
                Err(crate::snapshot::SnapshotSyncError::NoBoundaryYet) => {
                    tracing::info!(
                        "snapshot sync: no epoch has ended yet; block-syncing from genesis"
                    );
                    shared.update(|s| s.snapshot = None);
                    let store = Store::open(&state_path, store_options)
                        .with_context(|| format!("opening the store in {}", data.display()))?;
                    // A restore once started here proves a boundary existed: peers that
                    // say otherwise are not trusted with this directory.
                    anyhow::ensure!(
                        !keel_store::SnapshotRestore::in_progress(&store)?,
                        "peers say no epoch has ended, but {} holds a snapshot restore: \
                         start again when more peers are up, or empty the directory",
                        state_path.display()
                    );
                    Arc::new(store)
                }
                Err(e) => return Err(e).context("snapshot sync"),
            };
            let _ = syncing.stop();
            syncing.stopped().await;
            genesis.apply(&store, &data)?;
            net.add_peers(
                &crate::driver::registry_peers(&store.latest_view())
                    .context("reading the restored validator registry")?,
            );
            store
        }
    };
    mempool
        .lock()
        .expect("mempool lock")
        .set_latest_height(store.latest().map_or(0, |l| l.height));
    tokio::spawn(admit_gossip(
        gossip_in,
        (mempool.clone(), store.clone(), shared.clone()),
        runtime.clone(),
        NextBlock {
            chain_id: genesis.chain_id,
            genesis_hash,
            epoch_length: genesis.epoch_length,
        },
    ));
    let (gossip_out, gossip_rx) = mpsc::channel(GOSSIP_OUT_QUEUE_LEN);
    tokio::spawn(send_gossip(gossip_rx, net.clone()));

    let module = rpc::module(RpcContext {
        store: store.clone(),
        mempool: mempool.clone(),
        runtime: runtime.clone(),
        shared: shared.clone(),
        gossip: gossip_out,
        net: Some(net.clone()),
        chain_id: genesis.chain_id,
        genesis_hash,
        genesis_set: genesis.epoch_set(),
        my_key: key.public_key(),
        expiry_epochs: genesis.expiry_epochs,
        min_gas_price: genesis.min_gas_price,
        epoch_length: genesis.epoch_length,
    })
    .map_err(anyhow::Error::msg)?;
    let rpc_handle = rpc::serve(rpc_listen, &rpc_limits, module)
        .await
        .with_context(|| format!("binding RPC on {}", config.rpc.listen))?;
    // `/ready` can say yes only once the full RPC listens.
    let _ = store_cell.set(store.clone());

    let chain_metrics = crate::metrics::ChainMetrics::default()
        .with_parallel_stats(runtime.parallel_stats().clone());
    let chain = Chain::new(
        store.clone(),
        runtime,
        genesis_hash,
        genesis.genesis_time_ms,
    )
    .diverging_at(crate::driver::fault_diverge_height())
    .observed_by(Arc::new(chain_metrics));
    let alive = shared.driver_guard();
    let driver = Driver::new(
        DriverConfig {
            chain_id: genesis.chain_id,
            epoch_length: genesis.epoch_length,
            validators: net.add_peers(&[]),
            timeout_base_ms: config.consensus.timeout_base_ms,
            timeout_max_ms: config.consensus.timeout_max_ms,
            block_time_ms: config.consensus.block_time_ms,
            min_block_interval_ms: config.consensus.min_block_interval_ms,
            max_block_txs: config.consensus.max_block_txs,
            block_gas_limit: genesis.block_gas_limit,
            max_frame_bytes: config.p2p.max_frame_bytes as usize,
        },
        key,
        chain,
        &data.join("votes.log"),
        mempool,
        net,
        shared,
    )
    .map_err(anyhow::Error::msg)?;
    crate::pruner::spawn(
        store.clone(),
        keel_pruning::PrunePolicy {
            retain_heights: config.storage.retain_heights,
            batch_heights: config.storage.prune_batch_heights,
            epoch_length: genesis.epoch_length,
        },
        std::time::Duration::from_millis(config.storage.prune_interval_ms),
    )
    .context("starting the pruner")?;
    tracing::info!(
        validator = me,
        p2p = %config.p2p.listen,
        rpc = %config.rpc.listen,
        metrics = %config.metrics.listen,
        height = store.latest().map_or(0, |l| l.height),
        "keel validator started"
    );
    // The driver gets its own thread: block execution is CPU work that must not hold up
    // the network and RPC tasks.
    let driver_thread = std::thread::Builder::new()
        .name("keel-driver".into())
        .spawn(move || {
            // Dropped when this thread ends, normally or by a panic: /health then says so.
            let _alive = alive;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("driver runtime");
            rt.block_on(driver.run(inbound));
        })?;

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = rpc_handle.stop();
    // Votes and commits are durable as they happen (fsync); nothing else needs flushing.
    drop(driver_thread);
    Ok(())
}

/// Resolves on SIGINT or SIGTERM (the validator and `keel devnet` both stop on either).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Admits transactions gossiped by peers (signatures batch-verified per message, then
/// policy plugins asked, as RPC does). The latest view is read under the pool lock
/// (`mempool::admit_latest_vetted`), never before it.
async fn admit_gossip(
    mut rx: mpsc::Receiver<(Vec<SignedTransaction>, InboundBudget)>,
    (mempool, store, shared): (Arc<Mutex<Mempool>>, Arc<Store>, Arc<Shared>),
    runtime: Runtime,
    next: NextBlock,
) {
    while let Some((txs, budget)) = rx.recv().await {
        let store = store.clone();
        let mempool = mempool.clone();
        let shared = shared.clone();
        let runtime = runtime.clone();
        let _ = tokio::task::spawn_blocking(move || {
            // The peer's byte budget is returned once its batch is admitted.
            let _budget = budget;
            // Plugins judge what a peer relays as RPC has (one header and state for the
            // batch, and a bounded amount of plugin gas).
            let header = next.header(&store);
            let view = store.latest_view();
            let mut budget = MAX_GOSSIP_PLUGIN_GAS;
            let veto = |tx: &SignedTransaction| {
                let at = (&view as &dyn keel_state::StateView, &*store);
                plugin_veto(at, &runtime, &header, tx, &mut budget)
            };
            let may_veto = |tx: &SignedTransaction| may_run_plugins(&runtime, &view, tx);
            let (admitted, pool_len) =
                admit_latest_vetted(&*mempool, || store.latest_view(), txs, (may_veto, veto));
            metrics::gauge!(m::MEMPOOL_SIZE).set(pool_len as f64);
            for refused in admitted.iter().filter_map(|r| r.as_ref().err()) {
                let reason = crate::admission::reason(refused);
                metrics::counter!(m::GOSSIP_REJECTED, "reason" => reason).increment(1);
            }
            shared.publish_pending(admitted.into_iter().filter_map(Result::ok));
        })
        .await;
    }
}

/// Gathers admitted transactions for a few milliseconds and broadcasts them in one message.
async fn send_gossip(mut rx: mpsc::Receiver<(SignedTransaction, usize)>, net: Network) {
    while let Some((first, mut bytes)) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + Duration::from_millis(GOSSIP_BATCH_MS);
        while batch.len() < MAX_GOSSIP_TXS && bytes < GOSSIP_BATCH_BYTES {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((tx, len))) => {
                    if bytes + len > GOSSIP_BATCH_BYTES {
                        net.broadcast(&NetMessage::Transactions(std::mem::take(&mut batch)));
                        bytes = 0;
                    }
                    bytes += len;
                    batch.push(tx);
                }
                _ => break,
            }
        }
        if !batch.is_empty() {
            net.broadcast(&NetMessage::Transactions(batch));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_with_state_at_the_tip() {
        let now = 1_000_000;
        let fresh = Some(Some((5, now - 400)));
        let mut status = Status::default();
        assert!(ready_report(&status, fresh, now).is_ok());
        // Votes far ahead do not make a node unready (they count validators, not stake).
        status.honest_view_heard = status.view + crate::rpc::CATCHING_UP_VIEWS + 1_000;
        assert!(ready_report(&status, fresh, now).is_ok());
        // An old tip does: catching up by sync, behind an epoch, restarted on an old store.
        let stale = Some(Some((5, now - READY_MAX_TIP_AGE_MS - 1)));
        let old = ready_report(&status, stale, now).expect_err("stale");
        assert!(old.contains("ms old"), "{old}");
        assert!(ready_report(&status, Some(None), now).is_err());
        status.snapshot = Some(crate::shared::SnapshotProgress {
            phase: "state",
            permille: 300,
            ..Default::default()
        });
        let restoring = ready_report(&status, None, now).expect_err("restoring");
        assert!(restoring.contains("permille=300"), "{restoring}");
        // Live all the same: a probe must not restart a restoring node.
        assert!(health_report(&status, 0).is_ok());
        status.snapshot = None;
        status.sync_target = Some(40);
        let behind = ready_report(&status, fresh, now).expect_err("catching up");
        assert!(behind.contains("catching up"), "{behind}");
        status.sync_target = None;
        status.halted = Some("a bug".into());
        assert!(ready_report(&status, fresh, now).is_err());
    }

    #[test]
    fn health_is_unavailable_once_the_driver_thread_died() {
        let shared = Arc::new(Shared::default());
        assert!(health_report(&shared.status(), 3).is_ok());
        let guard = shared.driver_guard();
        let _ = std::thread::spawn(move || {
            let _alive = guard;
            panic!("driver bug");
        })
        .join();
        let report = health_report(&shared.status(), 3).expect_err("unhealthy");
        assert!(report.contains("panicked"), "{report}");
        struct Dead(Arc<Shared>);
        impl Health for Dead {
            fn health(&self) -> Result<String, String> {
                health_report(&self.0.status(), 3)
            }
            fn ready(&self) -> Result<String, String> {
                ready_report(&self.0.status(), Some(Some((3, 0))), 0)
            }
        }
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle();
        let response = m::respond(
            "/health",
            &handle,
            &Dead(shared),
            &crate::status_page::StatusPage::new(([127, 0, 0, 1], 8545).into()),
        );
        assert_eq!(response.status(), hyper::StatusCode::SERVICE_UNAVAILABLE);
    }
}
