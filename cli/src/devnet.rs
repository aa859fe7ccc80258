//! `keel devnet`: a local cluster of separate `keel run` processes on loopback (or one
//! network namespace each), from embedded defaults, resumed when its directory already
//! holds one.

use crate::banner::STATUS_MAX_BLOCKS_PER_TICK;
use crate::banner::{funded_accounts, render, status_line, Endpoints, Sample};
use crate::client::{Client, ClientError};
use crate::init::{init, InitError, InitOptions};
use keel_node::config::NodeConfig;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the cluster may take to finalize its first block.
pub const READY_TIMEOUT_MS: u64 = 120_000;
/// How long children get to exit after SIGTERM before SIGKILL.
pub const STOP_TIMEOUT_MS: u64 = 10_000;

/// Why the devnet did not start (its validators are stopped again).
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    #[error(transparent)]
    Init(#[from] InitError),
    #[error(transparent)]
    Config(#[from] keel_node::config::ConfigError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
    #[error("validator {index} exited ({status}); see {}", log.display())]
    Exited {
        index: usize,
        status: std::process::ExitStatus,
        log: PathBuf,
    },
    #[error("the devnet did not finalize a block within {} s; see the node.log files", READY_TIMEOUT_MS / 1000)]
    NotReady,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DevnetError {
    let what = what.into();
    move |error| DevnetError::Io { what, error }
}

#[derive(Debug, Clone)]
pub struct DevnetOptions {
    pub init: InitOptions,
    pub fresh: bool,
    /// Validator i runs in network namespace `<prefix><i>` (made by devnet/netns).
    pub netns: Option<String>,
    /// JSON lines even on a terminal (they are the default when stdout is not one).
    pub json: bool,
}

/// How often the terminal status line is refreshed.
pub const STATUS_INTERVAL_MS: u64 = 1_000;

struct Node {
    index: usize,
    home: PathBuf,
    config: NodeConfig,
    child: Child,
}

fn node_homes(dir: &Path) -> Vec<PathBuf> {
    (0..)
        .map(|i| dir.join(format!("node{i}")))
        .take_while(|p| p.join("config.toml").exists())
        .collect()
}

/// `keel run --home <home>`, inside network namespace `netns` when given: `ip netns exec`
/// enters it and execs keel, so the child's pid is the validator's own (signals reach it).
fn spawn(home: &Path, netns: Option<&str>) -> Result<Child, DevnetError> {
    let exe = std::env::current_exe().map_err(io("locating the keel binary"))?;
    let log_path = home.join("node.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io(log_path.display().to_string()))?;
    let err = log
        .try_clone()
        .map_err(io(log_path.display().to_string()))?;
    let mut command = match netns {
        Some(name) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", name]).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    command
        .arg("run")
        .arg("--home")
        .arg(home)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(io(format!("starting keel run --home {}", home.display())))
}

fn signal(child: &Child, name: &str) {
    // std offers only SIGKILL; `kill -TERM` lets the node stop cleanly.
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status();
}

fn stop(nodes: &mut [Node]) {
    for node in nodes.iter() {
        signal(&node.child, "TERM");
    }
    let deadline = Instant::now() + Duration::from_millis(STOP_TIMEOUT_MS);
    for node in nodes.iter_mut() {
        loop {
            match node.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = node.child.kill();
                    let _ = node.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

/// Runs the devnet until SIGINT/SIGTERM. On a terminal: a banner and a live status line;
/// otherwise (or with `json`): one JSON line per validator, then `ready`.
pub async fn devnet(opts: DevnetOptions) -> Result<(), DevnetError> {
    let dir = opts.init.home.clone();
    if opts.fresh && dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io(format!("wiping {}", dir.display())))?;
    }
    if !dir.join("node0").join("config.toml").exists() {
        init(&opts.init)?;
    }
    let mut nodes = Vec::new();
    for (index, home) in node_homes(&dir).into_iter().enumerate() {
        let config = NodeConfig::load(&home.join("config.toml"))?;
        let netns = opts.netns.as_ref().map(|prefix| format!("{prefix}{index}"));
        let child = match spawn(&home, netns.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                stop(&mut nodes);
                return Err(e);
            }
        };
        nodes.push(Node {
            index,
            home,
            config,
            child,
        });
    }
    if let Err(e) = wait_ready(&mut nodes).await {
        stop(&mut nodes);
        return Err(e);
    }
    use std::io::IsTerminal;
    if opts.json || !std::io::stdout().is_terminal() {
        print_json(&dir, &nodes);
        keel_node::run::shutdown_signal().await;
    } else {
        let endpoints: Vec<Endpoints> = nodes.iter().map(endpoints).collect();
        let clients: Vec<Client> = endpoints
            .iter()
            .map(|e| Client::new(&e.rpc))
            .collect::<Result<_, _>>()?;
        let chain_id = match clients[0].request("keel_status", vec![]).await {
            Ok(status) => status["chain_id"].as_u64().unwrap_or(0),
            Err(_) => 0,
        };
        let (agents, eth) = funded_accounts(&dir);
        print!(
            "{}",
            render(chain_id, &dir, &endpoints, &agents, eth.as_ref())
        );
        tokio::select! {
            () = keel_node::run::shutdown_signal() => {}
            () = live_status(&clients) => {}
        }
        println!();
    }
    // One signal stops the devnet: waiting for a second one here left `keel devnet` running
    // after `devnet/down`'s SIGTERM.
    eprintln!("stopping {} validators", nodes.len());
    stop(&mut nodes);
    Ok(())
}

fn endpoints(node: &Node) -> Endpoints {
    Endpoints {
        index: node.index,
        rpc: format!("http://{}", node.config.rpc.listen),
        p2p: node.config.p2p.listen.to_string(),
        metrics: format!("http://{}", node.config.metrics.listen),
        pid: node.child.id(),
    }
}

/// The lines scripts read: one per validator, then `ready`.
fn print_json(dir: &Path, nodes: &[Node]) {
    for node in nodes {
        let e = endpoints(node);
        println!(
            "{}",
            json!({
                "validator": e.index,
                "rpc": e.rpc,
                "p2p": e.p2p,
                "metrics": e.metrics,
                "home": node.home.display().to_string(),
                "pid": e.pid,
            })
        );
    }
    println!(
        "{}",
        json!({
            "ready": true,
            "accounts": dir.join("accounts.json").display().to_string(),
            // For Ethereum clients (web3.py, viem, cast): a prefunded secp256k1 key.
            "ethereum_dev_account": dir.join(crate::init::ETH_DEV_ACCOUNT_FILE).display().to_string(),
        })
    );
}

/// Rewrites one terminal line every `STATUS_INTERVAL_MS` with the chain's progress, read
/// from the validators' own RPC. Never returns.
async fn live_status(clients: &[Client]) {
    use std::io::Write;
    let mut last_height: Option<u64> = None;
    let mut last_tick = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(STATUS_INTERVAL_MS)).await;
        let mut up = 0;
        let mut first = None;
        for client in clients {
            if let Ok(status) = client.request("keel_status", vec![]).await {
                up += 1;
                first.get_or_insert(status);
            }
        }
        let Some(status) = first else {
            print!("\r\x1b[2Kno validator answers");
            let _ = std::io::stdout().flush();
            continue;
        };
        let field = |name: &str| status[name].as_u64().unwrap_or(0);
        let mut sample = Sample {
            height: field("height"),
            finalized: field("finalized_height"),
            peers: field("peers"),
            mempool: field("mempool_size"),
            new_txs: 0,
        };
        let from = last_height.map_or(sample.height, |h| h + 1);
        let to = sample
            .height
            .min(from.saturating_add(STATUS_MAX_BLOCKS_PER_TICK));
        for height in from..=to {
            if last_height.is_none() {
                break;
            }
            if let Ok(block) = clients[0]
                .request("keel_getBlock", vec![json!(height)])
                .await
            {
                sample.new_txs += block["transactions"]
                    .as_array()
                    .map_or(0, |t| t.len() as u64);
            }
        }
        let elapsed_ms = last_tick.elapsed().as_millis() as u64;
        last_tick = Instant::now();
        last_height = Some(sample.height);
        print!(
            "\r\x1b[2K{}",
            status_line(&sample, elapsed_ms, up, clients.len())
        );
        let _ = std::io::stdout().flush();
    }
}

async fn wait_ready(nodes: &mut [Node]) -> Result<(), DevnetError> {
    let deadline = Instant::now() + Duration::from_millis(READY_TIMEOUT_MS);
    let clients: Vec<Client> = nodes
        .iter()
        .map(|n| Client::new(&format!("http://{}", n.config.rpc.listen)))
        .collect::<Result<_, _>>()?;
    let mut first_seen: Vec<Option<u64>> = vec![None; clients.len()];
    loop {
        for node in nodes.iter_mut() {
            if let Ok(Some(status)) = node.child.try_wait() {
                return Err(DevnetError::Exited {
                    index: node.index,
                    status,
                    log: node.home.join("node.log"),
                });
            }
        }
        // Ready once every validator has finalized a block since it was first seen (a
        // fresh chain: height 1; a resumed one: past where it restarted).
        let mut ready = 0;
        for (client, first) in clients.iter().zip(first_seen.iter_mut()) {
            if let Ok(status) = client.request("keel_status", vec![]).await {
                let height = status.get("height").and_then(|h| h.as_u64()).unwrap_or(0);
                let base = *first.get_or_insert(height);
                if height >= 1 && (base == 0 || height > base) {
                    ready += 1;
                }
            }
        }
        if ready == clients.len() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(DevnetError::NotReady);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
