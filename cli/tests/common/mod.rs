//! A cluster of real `keel run` processes on 127.0.0.1 for the devnet tests.

#![allow(dead_code)]

pub mod watch;

use keel_cli::client::Client;
use keel_consensus::votelog::{parse, VoteRecord};
use keel_devtools::load::{self, LoadError, LoadOptions, LoadReport};
use keel_node::config::NodeConfig;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One cluster at a time: 4 validators each already share this machine's 2 cores.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub const KEEL: &str = env!("CARGO_BIN_EXE_keel");

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub n: usize,
    children: Vec<Option<Child>>,
    pub rt: tokio::runtime::Runtime,
    pub configs: Vec<NodeConfig>,
}

/// `keel tx deploy --wait` of the contract file `code` in `env`, with optional hex `args`.
pub fn deploy(
    rpc: &str,
    key: &str,
    env: &str,
    code: &std::path::Path,
    args: Option<&str>,
) -> (bool, Value, String) {
    let code = code.to_str().expect("utf8 path");
    let mut argv = vec![
        "tx", "deploy", "--rpc", rpc, "--key", key, "--env", env, "--code", code,
    ];
    if let Some(args) = args {
        argv.extend(["--args", args]);
    }
    argv.push("--wait");
    keel(&argv)
}

pub fn keel(args: &[&str]) -> (bool, Value, String) {
    let out = Command::new(KEEL).args(args).output().expect("run keel");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    (out.status.success(), json, stderr)
}

impl Cluster {
    /// `keel init`, config tweaks, then every validator started; returns once all have
    /// finalized a block.
    pub fn start(
        n: usize,
        base_port: u16,
        block_time_ms: u64,
        dev_accounts: usize,
        tweak: impl Fn(&mut NodeConfig),
    ) -> Cluster {
        Cluster::start_with_epochs(n, base_port, block_time_ms, dev_accounts, 1_000, tweak)
    }

    /// As `start`, with `epoch_length` blocks per epoch.
    pub fn start_with_epochs(
        n: usize,
        base_port: u16,
        block_time_ms: u64,
        dev_accounts: usize,
        epoch_length: u64,
        tweak: impl Fn(&mut NodeConfig),
    ) -> Cluster {
        Cluster::start_with_expiry(
            n,
            base_port,
            block_time_ms,
            dev_accounts,
            epoch_length,
            (0, keel_node::genesis::DEFAULT_FOLD_EPOCHS),
            tweak,
        )
    }

    /// As `start_with_epochs`, with state entries expiring after `expiry_epochs` idle epochs
    /// and their stubs folded `fold_epochs` after that.
    pub fn start_with_expiry(
        n: usize,
        base_port: u16,
        block_time_ms: u64,
        dev_accounts: usize,
        epoch_length: u64,
        (expiry_epochs, fold_epochs): (u64, u64),
        tweak: impl Fn(&mut NodeConfig),
    ) -> Cluster {
        Cluster::start_with_genesis(
            n,
            base_port,
            block_time_ms,
            dev_accounts,
            (epoch_length, expiry_epochs, fold_epochs),
            tweak,
            |_| {},
        )
    }

    /// As `start_with_expiry`, with `edit` applied to the genesis every validator starts
    /// from.
    pub fn start_with_genesis(
        n: usize,
        base_port: u16,
        block_time_ms: u64,
        dev_accounts: usize,
        (epoch_length, expiry_epochs, fold_epochs): (u64, u64, u64),
        tweak: impl Fn(&mut NodeConfig),
        edit: impl Fn(&mut keel_node::genesis::Genesis),
    ) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().to_str().expect("utf8").to_string();
        let (ok, _, err) = keel(&[
            "init",
            "--home",
            &home,
            "--validators",
            &n.to_string(),
            "--base-port",
            &base_port.to_string(),
            "--block-time-ms",
            &block_time_ms.to_string(),
            "--dev-accounts",
            &dev_accounts.to_string(),
            "--epoch-length",
            &epoch_length.to_string(),
            "--expiry-epochs",
            &expiry_epochs.to_string(),
            "--fold-epochs",
            &fold_epochs.to_string(),
        ]);
        assert!(ok, "init: {err}");
        let genesis_path = dir.path().join("node0/genesis.json");
        let mut genesis = keel_node::genesis::Genesis::load(&genesis_path).expect("genesis");
        edit(&mut genesis);
        for i in 0..n {
            std::fs::write(
                dir.path().join(format!("node{i}/genesis.json")),
                genesis.to_json(),
            )
            .expect("write genesis");
        }
        let mut configs = Vec::new();
        for i in 0..n {
            let path = dir.path().join(format!("node{i}/config.toml"));
            let mut config = NodeConfig::load(&path).expect("config");
            tweak(&mut config);
            std::fs::write(&path, config.to_toml()).expect("write config");
            configs.push(config);
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let mut cluster = Cluster {
            dir,
            n,
            children: (0..n).map(|_| None).collect(),
            rt,
            configs,
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        let all: Vec<usize> = (0..n).collect();
        cluster.wait_height(&all, 1, Duration::from_secs(90));
        cluster
    }

    pub fn home(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node{i}"))
    }

    /// A new home `node{n}` for a node outside genesis: node 0's genesis and config with
    /// ports `p2p`, `p2p + 100`, `p2p + 200`, and a fresh validator key (not started).
    /// Returns its index.
    pub fn add_node(&mut self, p2p: u16) -> usize {
        let i = self.n;
        let home = self.home(i);
        std::fs::create_dir_all(home.join("data")).expect("home");
        std::fs::copy(self.home(0).join("genesis.json"), home.join("genesis.json"))
            .expect("genesis");
        let key = home.join("keys/validator.json");
        let (ok, _, err) = keel(&["keys", "new", "--out", key.to_str().expect("utf8")]);
        assert!(ok, "{err}");
        let mut config = self.configs[0].clone();
        config.p2p.listen = format!("127.0.0.1:{p2p}");
        config.rpc.listen = format!("127.0.0.1:{}", p2p + 100);
        config.metrics.listen = format!("127.0.0.1:{}", p2p + 200);
        std::fs::write(home.join("config.toml"), config.to_toml()).expect("config");
        self.configs.push(config);
        self.children.push(None);
        self.n += 1;
        i
    }

    /// Takes in the home a `keel init --join` wrote at `self.home(self.n)` as the next node.
    pub fn adopt(&mut self) -> usize {
        let i = self.n;
        let config = NodeConfig::load(&self.home(i).join("config.toml")).expect("config");
        self.configs.push(config);
        self.children.push(None);
        self.n += 1;
        i
    }

    pub fn spawn(&mut self, i: usize) {
        self.spawn_with_env(i, &[]);
    }

    pub fn spawn_with_env(&mut self, i: usize, env: &[(&str, String)]) {
        let home = self.home(i);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(home.join("node.log"))
            .expect("log");
        let child = Command::new(KEEL)
            .args(["run", "--home", home.to_str().expect("utf8")])
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn keel run");
        self.children[i] = Some(child);
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to node `i`. A stopped node keeps its sockets, so its
    /// RPC answers once it is thawed; its peers drop their links to it after
    /// `PEER_IDLE_TIMEOUT_MS` of silence, and it redials them when thawed.
    pub fn signal(&self, i: usize, signal: &str) {
        let pid = self.pid(i).expect("node running");
        let status = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    pub fn pid(&self, i: usize) -> Option<u32> {
        self.children[i].as_ref().map(Child::id)
    }

    pub fn rpc(&self, i: usize) -> String {
        format!("http://{}", self.configs[i].rpc.listen)
    }

    pub fn p2p(&self, i: usize) -> String {
        self.configs[i].p2p.listen.clone()
    }

    pub fn metrics_url(&self, i: usize) -> String {
        self.configs[i].metrics.listen.clone()
    }

    pub fn client(&self, i: usize) -> Arc<Client> {
        Arc::new(Client::new(&self.rpc(i)).expect("client"))
    }

    pub fn call(&self, i: usize, method: &str, params: Vec<Value>) -> Result<Value, String> {
        let client = self.client(i);
        self.rt
            .block_on(client.request(method, params))
            .map_err(|e| e.to_string())
    }

    pub fn height(&self, i: usize) -> Option<u64> {
        self.call(i, "keel_status", vec![])
            .ok()
            .and_then(|s| s["height"].as_u64())
    }

    pub fn wait_height(&self, nodes: &[usize], height: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let heights: Vec<Option<u64>> = nodes.iter().map(|&i| self.height(i)).collect();
            if heights.iter().all(|h| h.is_some_and(|h| h >= height)) {
                return;
            }
            if Instant::now() > deadline {
                self.dump_logs();
                panic!("nodes {nodes:?} did not reach height {height}: {heights:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn dev_key(&self, j: usize) -> PathBuf {
        self.dir.path().join(format!("accounts/dev{j}.json"))
    }

    /// Every validator's block hash and state root agree at every shared height.
    pub fn check_roots(&self) -> u64 {
        let clients: Vec<_> = (0..self.n).map(|i| self.client(i)).collect();
        match self.rt.block_on(keel_devtools::load::check_roots(&clients)) {
            Ok(h) => h,
            Err(e) => {
                self.dump_logs();
                panic!("{e}")
            }
        }
    }

    /// Votes in each node's log that conflict (equivocation): two notarizes or two
    /// finalizes for different blocks in one view, or a nullify and a finalize in one view.
    pub fn equivocations(&self) -> Vec<String> {
        let mut out = Vec::new();
        for i in 0..self.n {
            let bytes = std::fs::read(self.home(i).join("data/votes.log")).unwrap_or_default();
            let (records, _) = parse(&bytes);
            let mut notarized: BTreeMap<(u64, u64), keel_types::Hash> = BTreeMap::new();
            let mut finalized: BTreeMap<(u64, u64), keel_types::Hash> = BTreeMap::new();
            let mut nullified = std::collections::BTreeSet::new();
            for r in records {
                match r {
                    VoteRecord::Notarized { epoch, view, block } => {
                        if let Some(b) = notarized.insert((epoch, view), block) {
                            if b != block {
                                out.push(format!("node {i}: two notarizes in view {view}"));
                            }
                        }
                    }
                    VoteRecord::Finalized { epoch, view, block } => {
                        if let Some(b) = finalized.insert((epoch, view), block) {
                            if b != block {
                                out.push(format!("node {i}: two finalizes in view {view}"));
                            }
                        }
                    }
                    VoteRecord::Nullified { epoch, view } => {
                        nullified.insert((epoch, view));
                    }
                    VoteRecord::EnteredView { .. } => {}
                }
            }
            for k in finalized.keys() {
                if nullified.contains(k) {
                    out.push(format!("node {i}: nullify and finalize in view {}", k.1));
                }
            }
        }
        out
    }

    pub fn metrics_text(&self, i: usize) -> String {
        self.http_get(i, "/metrics")
    }

    /// A GET on validator i's metrics port; the whole HTTP response.
    pub fn http_get(&self, i: usize, path: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.metrics_url(i)).expect("metrics");
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).expect("write");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text
    }

    pub fn dump_logs(&self) {
        for i in 0..self.n {
            let log = std::fs::read_to_string(self.home(i).join("node.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            eprintln!("--- node {i} log (last lines, newest first) ---");
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.n {
            self.kill9(i);
        }
    }
}

pub fn contract(name: &str) -> PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"))
        .join("../contracts/build")
        .join(name)
}

/// Sum of a metric's samples whose line contains `filter`.
pub fn metric_sum(text: &str, name: &str, filter: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

// Helpers for the Byzantine harness (devnet/byzantine.rs).

impl Cluster {
    /// As `start_with_epochs`, but the validators in `absent` are initialised (home, key,
    /// config) and never spawned: a test joins in their place with their keys. Returns once
    /// the spawned validators (which must be a quorum) have finalized a block.
    pub fn start_without(
        n: usize,
        base_port: u16,
        block_time_ms: u64,
        dev_accounts: usize,
        absent: &[usize],
        tweak: impl Fn(&mut NodeConfig),
    ) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().to_str().expect("utf8").to_string();
        let (ok, _, err) = keel(&[
            "init",
            "--home",
            &home,
            "--validators",
            &n.to_string(),
            "--base-port",
            &base_port.to_string(),
            "--block-time-ms",
            &block_time_ms.to_string(),
            "--dev-accounts",
            &dev_accounts.to_string(),
        ]);
        assert!(ok, "init: {err}");
        let mut configs = Vec::new();
        for i in 0..n {
            let path = dir.path().join(format!("node{i}/config.toml"));
            let mut config = NodeConfig::load(&path).expect("config");
            tweak(&mut config);
            std::fs::write(&path, config.to_toml()).expect("write config");
            configs.push(config);
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let mut cluster = Cluster {
            dir,
            n,
            children: (0..n).map(|_| None).collect(),
            rt,
            configs,
        };
        let present: Vec<usize> = (0..n).filter(|i| !absent.contains(i)).collect();
        for &i in &present {
            cluster.spawn(i);
        }
        cluster.wait_height(&present, 1, Duration::from_secs(90));
        cluster
    }

    /// `check_roots` over the validators in `nodes` only (the others run no RPC).
    pub fn check_roots_of(&self, nodes: &[usize]) -> u64 {
        let clients: Vec<_> = nodes.iter().map(|&i| self.client(i)).collect();
        match self.rt.block_on(keel_devtools::load::check_roots(&clients)) {
            Ok(h) => h,
            Err(e) => {
                self.dump_logs();
                panic!("{e}")
            }
        }
    }

    /// Peak resident memory (VmHWM, KiB) of validator i's process, if it runs.
    pub fn peak_rss_kib(&self, i: usize) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid(i)?)).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// Whether validator i's `/health` answers 200 (it runs and has not halted).
    pub fn healthy(&self, i: usize) -> bool {
        self.http_get(i, "/health").starts_with("HTTP/1.1 200")
    }

    /// Validator i's block hash (hex) at `height`, if it has one.
    pub fn block_hash(&self, i: usize, height: u64) -> Option<String> {
        let block = self
            .call(i, "keel_getBlock", vec![serde_json::json!(height)])
            .ok()?;
        block["hash"].as_str().map(str::to_string)
    }
}

/// The devnet/netns script: network namespaces, one per validator, for real partitions.
pub fn netns_script() -> std::path::PathBuf {
    manifest_dir().join("../devnet/netns")
}

/// Namespaces keel-TAG-0..n-1 (and their hub) made by devnet/netns for one test, removed on
/// drop, so a failing test leaves nothing behind. TAG carries the test process's pid and
/// the subnet is one no route uses yet, so a crashed earlier run cannot collide with this
/// one.
pub struct Netns {
    pub tag: String,
    pub subnet: String,
    pub n: usize,
}

impl Netns {
    /// Creates the namespaces; panics with the reason (not root, no `ip netns`) when it
    /// cannot: CI runs as root, and a partition test that does not partition must fail.
    pub fn up(n: usize) -> Netns {
        let uid = Command::new("id").arg("-u").output().expect("run id -u");
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "the partition tests need root (network namespaces, nft, tc); CI runs them as root"
        );
        let netns = Netns {
            tag: format!("p{}", std::process::id()),
            subnet: Netns::free_subnet(),
            n,
        };
        if let Err(e) = netns.try_run(&["up", &n.to_string()]) {
            panic!("devnet/netns up {n} failed (root? ip netns? nft?): {e}");
        }
        netns
    }

    /// Three octets of a /24 no route uses yet: 198.18.0.0/24 .. 198.18.255.0/24 (RFC 2544,
    /// never a real network), from the test process's pid on.
    pub fn free_subnet() -> String {
        let routes = Command::new("ip")
            .args(["-4", "route", "show"])
            .output()
            .expect("ip not found: scripts/setup installs iproute2");
        let routes = String::from_utf8_lossy(&routes.stdout).to_string();
        let pid = std::process::id();
        (0..256u32)
            .map(|k| format!("198.18.{}", (pid + k) % 256))
            .find(|s| !routes.contains(&format!("{s}.0/24")))
            .expect("every 198.18.x.0/24 is routed already (leftover namespaces?)")
    }

    /// Runs `devnet/netns ARGS` for this set; its stdout, or its stderr as the error.
    pub fn try_run(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("bash")
            .arg(netns_script())
            .args(args)
            .env("KEEL_NETNS_TAG", &self.tag)
            .env("KEEL_NETNS_SUBNET", &self.subnet)
            .output()
            .map_err(|e| format!("running {}: {e}", netns_script().display()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    pub fn run(&self, args: &[&str]) {
        if let Err(e) = self.try_run(args) {
            panic!("devnet/netns {}: {e}", args.join(" "));
        }
    }

    pub fn hosts(&self) -> String {
        (0..self.n)
            .map(|i| format!("{}.{}", self.subnet, i + 1))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn name(&self, i: usize) -> String {
        format!("keel-{}-{i}", self.tag)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = self.try_run(&["down"]) {
            eprintln!("devnet/netns down ({}): {e}", self.tag);
        }
    }
}

impl Cluster {
    /// As `start`, with validator i in namespace `netns.name(i)` on its own address (p2p,
    /// RPC and metrics; the root namespace reaches them through the hub bridge).
    pub fn start_in_netns(
        netns: &Netns,
        base_port: u16,
        block_time_ms: u64,
        dev_accounts: usize,
        tweak: impl Fn(&mut NodeConfig),
    ) -> Cluster {
        let n = netns.n;
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().to_str().expect("utf8").to_string();
        let (ok, _, err) = keel(&[
            "init",
            "--home",
            &home,
            "--validators",
            &n.to_string(),
            "--base-port",
            &base_port.to_string(),
            "--block-time-ms",
            &block_time_ms.to_string(),
            "--dev-accounts",
            &dev_accounts.to_string(),
            "--hosts",
            &netns.hosts(),
        ]);
        assert!(ok, "init: {err}");
        let mut configs = Vec::new();
        for i in 0..n {
            let path = dir.path().join(format!("node{i}/config.toml"));
            let mut config = NodeConfig::load(&path).expect("config");
            tweak(&mut config);
            std::fs::write(&path, config.to_toml()).expect("write config");
            configs.push(config);
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let mut cluster = Cluster {
            dir,
            n,
            children: (0..n).map(|_| None).collect(),
            rt,
            configs,
        };
        for i in 0..n {
            cluster.spawn_in_netns(i, netns);
        }
        let all: Vec<usize> = (0..n).collect();
        cluster.wait_height(&all, 1, Duration::from_secs(90));
        cluster
    }

    /// `ip netns exec <ns> keel run`: ip execs keel, so the child is the validator itself.
    pub fn spawn_in_netns(&mut self, i: usize, netns: &Netns) {
        let home = self.home(i);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(home.join("node.log"))
            .expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", &netns.name(i), KEEL, "run", "--home"])
            .arg(&home)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn ip netns exec keel run");
        self.children[i] = Some(child);
    }
}

/// The package directory of the running test. Read at run time (cargo sets it for every test
/// process): the compile-time value can name another clone when clones share one target
/// directory, as the scripts' persistent `CARGO_TARGET_DIR` makes them do.
pub fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        std::path::PathBuf::from,
    )
}

/// The folder with the npm packages (ethers, viem, playwright-core) that scripts/setup fills.
pub fn js_dir() -> PathBuf {
    if let Ok(p) = std::env::var("KEEL_JS_DIR") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").expect("HOME");
    PathBuf::from(home).join(".cache/keel-js")
}

/// Runs `command` (a client script given the test context as its one argument); it must
/// exit 0 and print a summary reporting at least `min_checks` passed checks.
pub fn run_checked(mut command: Command, script: &str, ctx: &serde_json::Value, min_checks: u64) {
    let out = command
        .arg(ctx.to_string())
        .output()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{stderr}\ncontext: {ctx}"
    );
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).expect("summary");
    assert!(
        result["checks"].as_u64().expect("count") >= min_checks,
        "{result}"
    );
}

/// Runs one Node.js script from tests/js: it is copied, with the shared `checks.mjs`,
/// into a temp dir beside a link to the installed node_modules (ES modules resolve packages
/// from the script's own folder).
pub fn run_js(script: &str, ctx: &serde_json::Value, min_checks: u64) {
    let modules = js_dir().join("node_modules");
    for package in ["ethers", "viem", "playwright-core"] {
        assert!(
            modules.join(package).exists(),
            "{} lacks {package}: run scripts/setup",
            modules.display()
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(&modules, dir.path().join("node_modules")).expect("link");
    for file in [script, "checks.mjs"] {
        let from = manifest_dir().join("tests/js").join(file);
        std::fs::copy(from, dir.path().join(file)).expect("copy script");
    }
    let mut command = Command::new("node");
    command.arg(dir.path().join(script));
    run_checked(command, script, ctx, min_checks);
}

/// Transfer load (40 tx/s from 16 senders, funded by the dev accounts `funders`) on the
/// given validators for `seconds`.
pub fn start_load(
    cluster: &Cluster,
    nodes: &[usize],
    seconds: u64,
    seed: u64,
    funders: &[usize],
) -> tokio::task::JoinHandle<Result<LoadReport, LoadError>> {
    start_load_with(
        cluster,
        load_options(cluster, nodes, seconds, seed, funders),
    )
}

/// `start_load`'s options, to change before [`start_load_with`].
pub fn load_options(
    cluster: &Cluster,
    nodes: &[usize],
    seconds: u64,
    seed: u64,
    funders: &[usize],
) -> LoadOptions {
    LoadOptions {
        rpcs: nodes.iter().map(|&i| cluster.rpc(i)).collect(),
        funders: funders
            .iter()
            .map(|&j| keel_node::keys::read(&cluster.dev_key(j)).expect("key"))
            .collect(),
        senders: 16,
        rate_per_s: 40,
        duration_s: seconds,
        settle_s: 60,
        seed,
        fresh_recipients: false,
        stop: None,
    }
}

pub fn start_load_with(
    cluster: &Cluster,
    options: LoadOptions,
) -> tokio::task::JoinHandle<Result<LoadReport, LoadError>> {
    cluster.rt.spawn(load::run(options))
}

/// Waits for the load and asserts every accepted transaction finalized.
pub fn finish_load(
    cluster: &Cluster,
    handle: tokio::task::JoinHandle<Result<LoadReport, LoadError>>,
) {
    let report = cluster
        .rt
        .block_on(handle)
        .expect("load task")
        .unwrap_or_else(|e| {
            cluster.dump_logs();
            panic!("load: {e}")
        });
    eprintln!("load: {}", serde_json::to_string(&report).expect("json"));
    assert!(report.submitted > 0, "{report:?}");
    assert_eq!(report.lost, 0, "accepted transactions lost: {report:?}");
    assert_eq!(report.finalized, report.accepted, "{report:?}");
}

/// `text` without terminal colour sequences (`ESC [ … m`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
