//! Load generation for a running cluster (devnet/load, the devnet tests and BENCHMARKS.md):
//! funds fresh sender keys from dev accounts, sends simple transfers at a target rate
//! through RPC, timestamps each at submission and at finality (from the finalized-block
//! subscription), and checks that every validator reports the same state root at every
//! height they share.

use jsonrpsee::core::client::{Subscription, SubscriptionClientT};
use jsonrpsee::core::params::ArrayParams;
use keel_cli::client::{self, Client, ClientError, TxRequest};
use keel_types::{Address, Canonical, Hash, SecretKey, Transaction, TxBody, U256};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Batches in flight at once.
pub const MAX_IN_FLIGHT: usize = 16;
/// Transactions per JSON-RPC batch (within the node's default batch limit of 64).
pub const BATCH_TXS: u64 = 32;
/// Sending ticks per second (the rate is spread over them).
const TICKS_PER_SECOND: u64 = 50;
/// Unfinalized transactions are sent again (to every validator) this often while settling.
const REBROADCAST_AFTER_S: u64 = 3;
/// Native units each fresh sender gets.
const SENDER_FUNDING: u64 = 1_000_000_000_000;

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Every validator's RPC URL; transactions go round-robin, roots are checked on all.
    pub rpcs: Vec<String>,
    /// Funded key files (accounts.json of a devnet).
    pub funders: Vec<SecretKey>,
    pub senders: usize,
    pub rate_per_s: u64,
    pub duration_s: u64,
    /// After sending stops, wait up to this long for the rest to finalize.
    pub settle_s: u64,
    /// Deterministic sender keys and recipients.
    pub seed: u64,
    /// Send every transfer to a new account (the state grows by one account per
    /// transaction) instead of one recipient per sender.
    pub fresh_recipients: bool,
    /// Sending stops early once this is set (a test that loads "throughout" something of
    /// unknown length); settling and the checks run as after `duration_s`.
    pub stop: Option<Arc<std::sync::atomic::AtomicBool>>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    pub target_rate_per_s: u64,
    pub duration_s: u64,
    pub submitted: u64,
    /// Achieved submission rate (below the target when the generator or RPC is the limit).
    pub submitted_per_s: u64,
    pub accepted: u64,
    pub rejected: BTreeMap<String, u64>,
    pub finalized: u64,
    /// Finalized accepted transactions per second over the sending window plus settling.
    pub finalized_per_s: u64,
    pub latency_p50_ms: u64,
    pub latency_p99_ms: u64,
    pub latency_max_ms: u64,
    /// Heights compared on every validator; a mismatch fails the run instead.
    pub roots_checked: u64,
    pub lost: u64,
}

/// A rejection's stable reason: the RPC error's `data.reason` when it has one (so the
/// report groups by kind, not by nonce), else the message up to its first detail.
fn reason_of(error: &str) -> String {
    if let Some(rest) = error.split("\"reason\":\"").nth(1) {
        return rest.split('"').next().unwrap_or("error").to_string();
    }
    error
        .split([' ', '('])
        .take(4)
        .collect::<Vec<_>>()
        .join(" ")
}

fn percentile(sorted: &[u64], per_mille: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[(sorted.len() * per_mille / 1000).min(sorted.len() - 1)]
}

fn sender_key(seed: u64, i: usize) -> SecretKey {
    let mut material = b"keel load sender".to_vec();
    material.extend(seed.to_be_bytes());
    material.extend((i as u64).to_be_bytes());
    SecretKey::from_seed(*blake3::hash(&material).as_bytes())
}

/// The recipient of the `sent`-th transfer, from sender `i`.
fn recipient(opts: &LoadOptions, i: usize, sent: u64) -> Address {
    if !opts.fresh_recipients {
        return Address::from_public_key(&sender_key(opts.seed ^ 0xdead, i).public_key());
    }
    let mut material = b"keel load recipient".to_vec();
    material.extend(opts.seed.to_be_bytes());
    material.extend(sent.to_be_bytes());
    let mut address = [0u8; 20];
    address.copy_from_slice(&blake3::hash(&material).as_bytes()[..20]);
    Address(address)
}

/// Why a load run stopped, or why the validators disagree.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("need at least one RPC URL, one funded key and one sender")]
    NoInput,
    #[error("no validator answers on any RPC URL")]
    NoValidator,
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("node response lacks {0}")]
    MissingField(&'static str),
    #[error("the node returned a transaction hash that is not one: {0}")]
    BadHash(String),
    #[error("a funding transfer was lost; funding again")]
    FundingLost,
    #[error("{what} at {url}: {detail}")]
    Subscribe {
        what: &'static str,
        url: String,
        detail: String,
    },
    #[error("validator {validator} has no block at height {height}")]
    MissingBlock { validator: usize, height: u64 },
    #[error("DIVERGENCE at height {height}: validator 0 has block {first_hash} root {first_root}, validator {validator} has block {hash} root {root}")]
    Divergence {
        height: u64,
        first_hash: String,
        first_root: String,
        validator: usize,
        hash: String,
        root: String,
    },
}

fn ws_url(http: &str) -> String {
    http.replacen("http://", "ws://", 1)
}

async fn status_field(client: &Client, name: &str) -> Result<Value, LoadError> {
    let status = client.request("keel_status", vec![]).await?;
    Ok(status.get(name).cloned().unwrap_or(Value::Null))
}

async fn nonce_of(client: &Client, address: &Address) -> Result<u64, LoadError> {
    let account = client
        .request("keel_getAccount", vec![json!(address.to_hex())])
        .await?;
    account
        .get("pending_nonce")
        .and_then(Value::as_u64)
        .ok_or(LoadError::MissingField("pending_nonce"))
}

/// Gives each fresh sender a balance, from the funders in turn, and waits for finality.
async fn fund(client: &Client, opts: &LoadOptions, senders: &[SecretKey]) -> Result<(), LoadError> {
    let mut last = None;
    for (i, sender) in senders.iter().enumerate() {
        let funder = &opts.funders[i % opts.funders.len()];
        let sent = client::send(
            client,
            funder,
            TxRequest {
                body: TxBody::Transfer {
                    to: Address::from_public_key(&sender.public_key()),
                    amount: U256::from(SENDER_FUNDING),
                },
                gas: None,
                gas_price: None,
                nonce: None,
                wait: false,
                acting_as: None,
            },
        )
        .await?;
        last = sent
            .get("tx_hash")
            .and_then(Value::as_str)
            .map(String::from);
    }
    if let Some(hash) = last {
        let hash = Hash::from_hex(&hash).map_err(|_| LoadError::BadHash(hash))?;
        client::wait_receipt(client, &hash).await?;
    }
    // Every funding transfer of a funder precedes its last; wait for all funders' last,
    // then check: a transfer admitted by a validator that died before gossiping it is lost.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    for sender in senders {
        let account = client
            .request(
                "keel_getAccount",
                vec![json!(
                    Address::from_public_key(&sender.public_key()).to_hex()
                )],
            )
            .await?;
        if account["balance"] == "0x0" {
            return Err(LoadError::FundingLost);
        }
    }
    Ok(())
}

async fn subscribe(
    url: &str,
) -> Result<(jsonrpsee_ws_client::WsClient, Subscription<Value>), LoadError> {
    let failed = |what: &'static str| {
        move |e: jsonrpsee::core::ClientError| LoadError::Subscribe {
            what,
            url: url.to_string(),
            detail: e.to_string(),
        }
    };
    let ws = jsonrpsee_ws_client::WsClientBuilder::default()
        .build(ws_url(url))
        .await
        .map_err(failed("websocket"))?;
    let mut params = ArrayParams::new();
    params
        .insert("finalizedBlocks")
        .expect("a string encodes as JSON");
    let sub = ws
        .subscribe("keel_subscribe", params, "keel_unsubscribe")
        .await
        .map_err(failed("keel_subscribe"))?;
    Ok((ws, sub))
}

/// Records when each transaction's block arrives, resubscribing round-robin on failure.
async fn watch(rpcs: Vec<String>, finalized: Arc<Mutex<BTreeMap<Hash, Instant>>>) {
    for url in rpcs.iter().cycle() {
        let Ok((_ws, mut sub)) = subscribe(url).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        while let Some(Ok(block)) = sub.next().await {
            let now = Instant::now();
            let mut f = finalized.lock().expect("finalized lock");
            for h in block["transactions"].as_array().into_iter().flatten() {
                if let Some(hash) = h.as_str().and_then(|s| Hash::from_hex(s).ok()) {
                    f.insert(hash, now);
                }
            }
        }
    }
}

/// Marks as finalized (now) the pending transactions that have a receipt: blocks the
/// subscription missed while it was reconnecting.
async fn backfill(
    clients: &[Arc<Client>],
    pending: &[Hash],
    finalized: &Mutex<BTreeMap<Hash, Instant>>,
) {
    let Ok(client) = live(clients).await else {
        return;
    };
    for chunk in pending.chunks(BATCH_TXS as usize) {
        let calls = chunk.iter().map(|h| vec![json!(h.to_hex())]).collect();
        let Ok(results) = client.request_batch("keel_getReceipt", calls).await else {
            return;
        };
        let now = Instant::now();
        let mut f = finalized.lock().expect("finalized lock");
        for (hash, result) in chunk.iter().zip(results) {
            if result.is_ok_and(|r| !r.is_null()) {
                f.entry(*hash).or_insert(now);
            }
        }
    }
}

/// The first validator that answers (set-up must not depend on one validator being up
/// while chaos runs).
async fn live(clients: &[Arc<Client>]) -> Result<Arc<Client>, LoadError> {
    for _ in 0..50 {
        for c in clients {
            if c.request("keel_status", vec![]).await.is_ok() {
                return Ok(c.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(LoadError::NoValidator)
}

/// Runs the load and the cross-node root check.
pub async fn run(opts: LoadOptions) -> Result<LoadReport, LoadError> {
    if opts.rpcs.is_empty() || opts.funders.is_empty() || opts.senders == 0 {
        return Err(LoadError::NoInput);
    }
    let clients: Vec<Arc<Client>> = opts
        .rpcs
        .iter()
        .map(|u| Client::new(u).map(Arc::new))
        .collect::<Result<_, _>>()?;
    let setup = live(&clients).await?;
    let chain_id = status_field(&setup, "chain_id")
        .await?
        .as_u64()
        .ok_or(LoadError::MissingField("chain_id"))?;
    let gas_price: u128 = status_field(&setup, "min_gas_price")
        .await?
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let senders: Vec<SecretKey> = (0..opts.senders)
        .map(|i| sender_key(opts.seed, i))
        .collect();
    // Funding retries on another validator if the one it used went away mid-way (a
    // transfer already admitted is "already known" or its nonce used: both fine).
    let mut funded = Ok(());
    for _ in 0..5 {
        let client = live(&clients).await?;
        funded = fund(&client, &opts, &senders).await;
        if funded.is_ok() {
            break;
        }
    }
    funded?;
    let mut nonces = Vec::new();
    for s in &senders {
        let client = live(&clients).await?;
        nonces.push(nonce_of(&client, &Address::from_public_key(&s.public_key())).await?);
    }

    // Finality times from a finalized-block subscription; if its validator goes away
    // (chaos), the watcher resubscribes on the next one, and the settle phase looks up
    // receipts for anything a gap in the stream missed.
    let finalized: Arc<Mutex<BTreeMap<Hash, Instant>>> = Arc::default();
    let watcher = tokio::spawn(watch(opts.rpcs.clone(), finalized.clone()));

    let submitted_at: Arc<Mutex<BTreeMap<Hash, Instant>>> = Arc::default();
    let rejected: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let raws: Arc<Mutex<BTreeMap<Hash, String>>> = Arc::default();
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let start = Instant::now();
    let total = opts.rate_per_s * opts.duration_s;
    let mut sent = 0u64;
    let mut tick = 0u64;
    let mut tasks = Vec::new();
    while sent < total {
        if opts
            .stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
        {
            break;
        }
        tick += 1;
        let due = (opts.rate_per_s * tick / TICKS_PER_SECOND).min(total);
        while sent < due {
            // One JSON-RPC batch per BATCH_TXS transactions: HTTP overhead per transaction
            // would otherwise cap what the generator can offer on a shared 2-core machine.
            let count = (due - sent).min(BATCH_TXS);
            let mut batch = Vec::new();
            for _ in 0..count {
                let i = (sent % senders.len() as u64) as usize;
                let tx = Transaction {
                    chain_id,
                    sender: senders[i].public_key().into(),
                    nonce: nonces[i],
                    gas_limit: client::TRANSFER_GAS,
                    gas_price,
                    body: TxBody::Transfer {
                        to: recipient(&opts, i, sent),
                        amount: U256::from(1u64),
                    },
                }
                .sign(&senders[i]);
                nonces[i] += 1;
                batch.push((tx.hash(), format!("0x{}", hex::encode(tx.encode()))));
                sent += 1;
            }
            let first = (sent as usize / BATCH_TXS as usize) % clients.len();
            let clients = clients.clone();
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let (submitted_at, rejected, raws) =
                (submitted_at.clone(), rejected.clone(), raws.clone());
            tasks.push(tokio::spawn(async move {
                let calls: Vec<Vec<Value>> =
                    batch.iter().map(|(_, raw)| vec![json!(raw)]).collect();
                let at = Instant::now();
                // A node that is down (chaos, kill -9) is skipped: the next one gets the
                // batch, so a sender's nonces never gap because one validator was away.
                let mut outcome = Err(ClientError::MissingField("a validator"));
                for k in 0..clients.len() {
                    let client = &clients[(first + k) % clients.len()];
                    outcome = client
                        .request_batch("keel_sendTransaction", calls.clone())
                        .await;
                    if !matches!(outcome, Err(ClientError::Unreachable { .. })) {
                        break;
                    }
                }
                let results: Vec<Result<Value, String>> = match outcome {
                    Ok(results) => results
                        .into_iter()
                        .map(|r| r.map_err(|e| e.to_string()))
                        .collect(),
                    Err(e) => vec![Err(e.to_string()); batch.len()],
                };
                for ((hash, raw), result) in batch.into_iter().zip(results) {
                    match result {
                        Ok(_) => {
                            submitted_at.lock().expect("lock").insert(hash, at);
                            raws.lock().expect("lock").insert(hash, raw);
                        }
                        Err(e) => {
                            let reason = reason_of(&e);
                            *rejected.lock().expect("lock").entry(reason).or_default() += 1;
                        }
                    }
                }
                drop(permit);
            }));
        }
        let next = start + Duration::from_millis(tick * 1000 / TICKS_PER_SECOND);
        tokio::time::sleep_until(next.into()).await;
    }
    for t in tasks {
        let _ = t.await;
    }
    let send_end = Instant::now();
    let send_ms = u64::try_from(send_end.saturating_duration_since(start).as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    // Settle: wait for the accepted transactions to finalize. A mempool is not durable: a
    // validator killed right after admitting a transaction may take it along before gossip,
    // so, as a wallet would, rebroadcast what is still unfinalized every few seconds.
    let settle_deadline = send_end + Duration::from_secs(opts.settle_s);
    let mut next_rebroadcast = Instant::now() + Duration::from_secs(REBROADCAST_AFTER_S);
    loop {
        let pending: Vec<Hash> = {
            let f = finalized.lock().expect("lock");
            submitted_at
                .lock()
                .expect("lock")
                .keys()
                .filter(|h| !f.contains_key(h))
                .copied()
                .collect()
        };
        if pending.is_empty() || Instant::now() >= settle_deadline {
            break;
        }
        if Instant::now() >= next_rebroadcast {
            backfill(&clients, &pending, &finalized).await;
            let raws: Vec<String> = {
                let r = raws.lock().expect("lock");
                pending.iter().filter_map(|h| r.get(h).cloned()).collect()
            };
            for raw in raws {
                for client in &clients {
                    let _ = client
                        .request("keel_sendTransaction", vec![json!(raw)])
                        .await;
                }
            }
            next_rebroadcast = Instant::now() + Duration::from_secs(REBROADCAST_AFTER_S);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watcher.abort();

    let submitted_at = submitted_at.lock().expect("lock").clone();
    let finalized = finalized.lock().expect("lock").clone();
    let mut latencies: Vec<u64> = submitted_at
        .iter()
        .filter_map(|(h, at)| finalized.get(h).map(|f| f.saturating_duration_since(*at)))
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .collect();
    latencies.sort_unstable();
    let last_final = submitted_at
        .keys()
        .filter_map(|h| finalized.get(h))
        .max()
        .copied()
        .unwrap_or(send_end);
    let window_ms = u64::try_from(last_final.saturating_duration_since(start).as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let mut report = LoadReport {
        target_rate_per_s: opts.rate_per_s,
        duration_s: opts.duration_s,
        submitted: sent,
        submitted_per_s: sent * 1000 / send_ms,
        accepted: submitted_at.len() as u64,
        rejected: rejected.lock().expect("lock").clone(),
        finalized: latencies.len() as u64,
        finalized_per_s: latencies.len() as u64 * 1000 / window_ms,
        latency_p50_ms: percentile(&latencies, 500),
        latency_p99_ms: percentile(&latencies, 990),
        latency_max_ms: latencies.last().copied().unwrap_or(0),
        roots_checked: 0,
        lost: (submitted_at.len() - latencies.len()) as u64,
    };
    report.roots_checked = check_roots(&clients).await?;
    Ok(report)
}

/// Compares every validator's state root at every height all of them have and retain (a
/// height pruned while the check runs is skipped); an error names the first height where
/// they differ.
pub async fn check_roots(clients: &[Arc<Client>]) -> Result<u64, LoadError> {
    let mut common = u64::MAX;
    let mut from = 1u64;
    for c in clients {
        // A validator restarting (chaos, kill -9) gets up to 30 s to answer.
        let mut answer = c.request("keel_status", vec![]).await;
        for _ in 0..30 {
            if answer.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            answer = c.request("keel_status", vec![]).await;
        }
        let status = answer?;
        common = common.min(status["height"].as_u64().unwrap_or(0));
        // Heights a validator pruned cannot be compared.
        from = from.max(status["oldest_retained"].as_u64().unwrap_or(0));
    }
    for height in from..=common {
        let mut first: Option<(String, String)> = None;
        for (i, c) in clients.iter().enumerate() {
            let block = c.request("keel_getBlock", vec![json!(height)]).await?;
            if block.is_null() {
                // Pruned since the check began (the pruner runs on), or missing: only the
                // first is fine.
                let status = c.request("keel_status", vec![]).await?;
                if status["oldest_retained"].as_u64().unwrap_or(0) > height {
                    break;
                }
                return Err(LoadError::MissingBlock {
                    validator: i,
                    height,
                });
            }
            let root = block["state_root"].as_str().unwrap_or_default().to_string();
            let hash = block["hash"].as_str().unwrap_or_default().to_string();
            match &first {
                None => first = Some((root, hash)),
                Some((r, h)) if *r == root && *h == hash => {}
                Some((r, h)) => {
                    return Err(LoadError::Divergence {
                        height,
                        first_hash: h.clone(),
                        first_root: r.clone(),
                        validator: i,
                        hash,
                        root,
                    })
                }
            }
        }
    }
    Ok(common)
}
