//! `keel devnet`: a local cluster of separate `keel run` processes on loopback (or one
//! network namespace each), from embedded defaults, resumed when its directory already
//! holds one.

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
}

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

/// Runs the devnet until SIGINT/SIGTERM; prints one JSON line per validator, then ready.
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
    for node in &nodes {
        println!(
            "{}",
            json!({
                "validator": node.index,
                "rpc": format!("http://{}", node.config.rpc.listen),
                "p2p": node.config.p2p.listen,
                "metrics": format!("http://{}", node.config.metrics.listen),
                "home": node.home.display().to_string(),
                "pid": node.child.id(),
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
    keel_node::run::shutdown_signal().await;
    eprintln!("stopping {} validators", nodes.len());
    stop(&mut nodes);
    Ok(())
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
