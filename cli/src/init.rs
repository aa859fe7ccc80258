//! `keel init`: keys, genesis and configs for a local network of N validators, plus funded
//! development accounts, under one directory.

use keel_node::config::NodeConfig;
use keel_node::genesis::{Genesis, GenesisBalance, GenesisValidator};
use keel_node::keys;
use keel_types::{Address, U256};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Validators `keel init` will lay out (the consensus limit is higher; this bounds ports).
pub const MAX_INIT_VALIDATORS: usize = 64;
/// Funded development accounts.
pub const MAX_DEV_ACCOUNTS: usize = 1_000;

#[derive(Debug, Clone)]
pub struct InitOptions {
    pub home: PathBuf,
    pub validators: usize,
    pub chain_id: u64,
    pub epoch_length: u64,
    pub expiry_epochs: u64,
    pub fold_epochs: u64,
    pub block_time_ms: u64,
    /// With transactions waiting, blocks this long after their parent (capped at
    /// `block_time_ms`, which then is the idle heartbeat).
    pub min_block_interval_ms: u64,
    /// Node i listens for peers on base+i, RPC on base+100+i, metrics on base+200+i.
    pub base_port: u16,
    /// Node i's IP address for all three ports (one network namespace per validator, see
    /// devnet/netns); empty: every node on 127.0.0.1.
    pub hosts: Vec<String>,
    pub dev_accounts: usize,
    /// Execution threads of validator i: entry i mod the length (empty: 1).
    pub exec_threads: Vec<usize>,
    pub genesis_time_ms: u64,
    /// Jurisdiction attesters (0x addresses).
    pub attesters: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct NodeLayout {
    pub validator: usize,
    pub home: String,
    pub p2p: String,
    pub rpc: String,
    pub metrics: String,
}

#[derive(Debug, Serialize)]
pub struct InitReport {
    pub chain_id: u64,
    pub genesis_hash: String,
    pub nodes: Vec<NodeLayout>,
    pub accounts: String,
}

/// A prefunded Ethereum (secp256k1) development account, so stock Ethereum clients can
/// transact on a devnet without the keel CLI: Hardhat's and Anvil's well-known account 0.
/// Its key is public knowledge — it exists only in genesis files `keel init` writes with
/// development accounts, never on a real network.
pub const ETH_DEV_PRIVATE_KEY: &str =
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
pub const ETH_DEV_ADDRESS: &str = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";
/// Where `keel init` writes that account's address and key.
pub const ETH_DEV_ACCOUNT_FILE: &str = "ethereum-dev-account.json";

#[derive(Debug, Serialize)]
struct DevAccount {
    address: String,
    key_file: String,
}

/// Why `keel init` laid out nothing (or stopped part way: the directory then holds node0
/// and a second run refuses it).
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("--validators must be 1 to {MAX_INIT_VALIDATORS}")]
    Validators,
    #[error("--dev-accounts must be at most {MAX_DEV_ACCOUNTS}")]
    DevAccounts,
    #[error("--base-port {base_port} leaves no room for {validators} nodes' ports")]
    BasePort { base_port: u16, validators: usize },
    #[error("--hosts names {hosts} addresses for {validators} validators")]
    HostCount { hosts: usize, validators: usize },
    #[error("--hosts {host:?}: {error}")]
    Host {
        host: String,
        error: std::net::AddrParseError,
    },
    #[error("{} already exists; remove it or pick another --home", .0.display())]
    Exists(PathBuf),
    #[error("{}: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("--attesters {0:?} is not a 0x address")]
    Attester(String),
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    #[error(transparent)]
    Genesis(#[from] keel_node::genesis::GenesisError),
    #[error(transparent)]
    Config(#[from] keel_node::config::ConfigError),
}

fn write_file(path: &Path, text: &str) -> Result<(), InitError> {
    std::fs::write(path, text).map_err(|error| InitError::Write {
        path: path.to_path_buf(),
        error,
    })
}

/// Lay out the network. Refuses to touch a directory that already holds node0.
pub fn init(opts: &InitOptions) -> Result<InitReport, InitError> {
    if opts.validators == 0 || opts.validators > MAX_INIT_VALIDATORS {
        return Err(InitError::Validators);
    }
    if opts.dev_accounts > MAX_DEV_ACCOUNTS {
        return Err(InitError::DevAccounts);
    }
    let top = usize::from(opts.base_port) + 200 + opts.validators;
    if top > usize::from(u16::MAX) {
        return Err(InitError::BasePort {
            base_port: opts.base_port,
            validators: opts.validators,
        });
    }
    if !opts.hosts.is_empty() && opts.hosts.len() != opts.validators {
        return Err(InitError::HostCount {
            hosts: opts.hosts.len(),
            validators: opts.validators,
        });
    }
    // Checked here so a typo fails before any key is written, not when a node binds.
    for host in &opts.hosts {
        host.parse::<std::net::IpAddr>()
            .map_err(|error| InitError::Host {
                host: host.clone(),
                error,
            })?;
    }
    let node0 = opts.home.join("node0");
    if node0.exists() {
        return Err(InitError::Exists(node0));
    }
    let port = |offset: usize, i: usize| {
        let host = opts.hosts.get(i).map_or("127.0.0.1", String::as_str);
        let port = usize::from(opts.base_port) + offset + i;
        match host.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(_)) => format!("[{host}]:{port}"),
            _ => format!("{host}:{port}"),
        }
    };

    let mut validators = Vec::new();
    let mut operators = Vec::new();
    let mut nodes = Vec::new();
    for i in 0..opts.validators {
        let home = opts.home.join(format!("node{i}"));
        let key = keys::generate();
        keys::write(&home.join("keys/validator.json"), &key)?;
        let data = home.join("data");
        std::fs::create_dir_all(&data).map_err(|error| InitError::Write { path: data, error })?;
        // The operator account bonds, unbonds, updates or retires the validator
        // (docs/validators.md); funded below like a dev account.
        let operator = keys::write(&home.join("keys/operator.json"), &keys::generate())?;
        operators.push(operator.address);
        validators.push(GenesisValidator {
            public_key: key.public_key(),
            p2p: port(0, i),
            stake: keel_types::validator::DEFAULT_GENESIS_STAKE,
            operator: Some(operator.address),
        });
        nodes.push(NodeLayout {
            validator: i,
            home: home.display().to_string(),
            p2p: port(0, i),
            rpc: format!("http://{}", port(100, i)),
            metrics: format!("http://{}", port(200, i)),
        });
    }

    let accounts_dir = opts.home.join("accounts");
    let mut balances = Vec::new();
    let mut accounts = Vec::new();
    for j in 0..opts.dev_accounts {
        let path = accounts_dir.join(format!("dev{j}.json"));
        let file = keys::write(&path, &keys::generate())?;
        balances.push(GenesisBalance {
            address: file.address,
            balance: U256::from(10u128.pow(24)),
        });
        accounts.push(DevAccount {
            address: file.address.to_hex(),
            key_file: path.display().to_string(),
        });
    }
    for address in operators {
        balances.push(GenesisBalance {
            address,
            balance: U256::from(10u128.pow(24)),
        });
    }
    if opts.dev_accounts > 0 {
        balances.push(GenesisBalance {
            address: Address::from_hex(ETH_DEV_ADDRESS)
                .expect("ETH_DEV_ADDRESS is a 20-byte hex address"),
            balance: U256::from(10u128.pow(24)),
        });
        let eth = serde_json::json!({
            "address": ETH_DEV_ADDRESS,
            "private_key": ETH_DEV_PRIVATE_KEY,
            "note": "well-known development key (Hardhat/Anvil account 0); devnets only",
        });
        write_file(&opts.home.join(ETH_DEV_ACCOUNT_FILE), &format!("{eth:#}\n"))?;
    }
    let genesis = Genesis {
        chain_id: opts.chain_id,
        genesis_time_ms: opts.genesis_time_ms,
        epoch_length: opts.epoch_length,
        expiry_epochs: opts.expiry_epochs,
        fold_epochs: opts.fold_epochs,
        block_gas_limit: keel_types::limits::BLOCK_GAS_LIMIT,
        min_gas_price: 1,
        plugin_gas: keel_types::policy::PLUGIN_GAS,
        attesters: opts
            .attesters
            .iter()
            .map(|a| Address::from_hex(a).map_err(|_| InitError::Attester(a.clone())))
            .collect::<Result<_, _>>()?,
        min_stake: keel_types::validator::DEFAULT_MIN_STAKE,
        max_validators: keel_types::limits::MAX_VALIDATORS,
        unbonding_epochs: keel_types::validator::DEFAULT_UNBONDING_EPOCHS,
        validators,
        balances,
    };
    genesis.validate()?;
    let accounts_file = opts.home.join("accounts.json");
    let json = serde_json::to_string_pretty(&accounts).expect("plain strings serialize");
    write_file(&accounts_file, &(json + "\n"))?;

    for (i, node) in nodes.iter().enumerate() {
        let home = PathBuf::from(&node.home);
        let mut config = NodeConfig::default();
        config.p2p.listen = port(0, i);
        config.rpc.listen = port(100, i);
        config.metrics.listen = port(200, i);
        config.consensus.block_time_ms = opts.block_time_ms;
        config.consensus.min_block_interval_ms = opts.min_block_interval_ms.min(opts.block_time_ms);
        if !opts.exec_threads.is_empty() {
            config.execution.threads = opts.exec_threads[i % opts.exec_threads.len()];
        }
        config.validate()?;
        write_file(&home.join("config.toml"), &config.to_toml())?;
        write_file(&home.join("genesis.json"), &genesis.to_json())?;
    }
    Ok(InitReport {
        chain_id: genesis.chain_id,
        genesis_hash: genesis.hash().to_hex(),
        nodes,
        accounts: accounts_file.display().to_string(),
    })
}

/// What `keel init --join` wrote.
#[derive(Debug, Serialize)]
pub struct JoinReport {
    pub home: String,
    /// The new validator's consensus key (what `keel tx validator register` registers).
    pub public_key: String,
    /// The new operator account (fund it, then register and bond from it).
    pub operator: String,
    pub p2p: String,
    pub rpc: String,
    pub metrics: String,
    /// `p2p.bootstrap`: the peers given with `--peers`.
    pub peers: Vec<String>,
}

/// Lays out a home for a node that joins a running chain: the chain's genesis, a new
/// validator key and operator account, and a config that restores a snapshot on first
/// start (`sync.mode = "snapshot"`; docs/validators.md). Its peers are the genesis
/// validators and, once restored, every registered validator.
pub fn init_join(
    opts: &InitOptions,
    genesis_file: &Path,
    peers: &[String],
) -> Result<JoinReport, InitError> {
    let genesis = keel_node::genesis::Genesis::load(genesis_file)?;
    genesis.validate()?;
    // Checked before anything is written: a refused --peers leaves no half-made home.
    let bootstrap = keel_node::config::P2pConfig {
        bootstrap: peers.iter().map(|p| p.trim().to_string()).collect(),
        ..Default::default()
    };
    bootstrap
        .bootstrap_peers()
        .map_err(keel_node::config::ConfigError::Invalid)?;
    if opts.hosts.len() > 1 {
        return Err(InitError::HostCount {
            hosts: opts.hosts.len(),
            validators: 1,
        });
    }
    if usize::from(opts.base_port) + 200 > usize::from(u16::MAX) {
        return Err(InitError::BasePort {
            base_port: opts.base_port,
            validators: 1,
        });
    }
    let host = match opts.hosts.first() {
        Some(host) => {
            host.parse::<std::net::IpAddr>()
                .map_err(|error| InitError::Host {
                    host: host.clone(),
                    error,
                })?;
            host.as_str()
        }
        None => "127.0.0.1",
    };
    let home = &opts.home;
    if home.join("config.toml").exists() {
        return Err(InitError::Exists(home.join("config.toml")));
    }
    let port = |offset: u16| {
        let port = opts.base_port + offset;
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    };
    let data = home.join("data");
    std::fs::create_dir_all(&data).map_err(|error| InitError::Write { path: data, error })?;
    let key = keys::generate();
    keys::write(&home.join("keys/validator.json"), &key)?;
    let operator = keys::write(&home.join("keys/operator.json"), &keys::generate())?;
    let mut config = NodeConfig::default();
    config.p2p.listen = port(0);
    config.rpc.listen = port(100);
    config.metrics.listen = port(200);
    config.consensus.block_time_ms = opts.block_time_ms;
    config.consensus.min_block_interval_ms = opts.min_block_interval_ms.min(opts.block_time_ms);
    config.sync.mode = "snapshot".into();
    config.p2p.bootstrap = bootstrap.bootstrap;
    config.validate()?;
    write_file(&home.join("config.toml"), &config.to_toml())?;
    write_file(&home.join("genesis.json"), &genesis.to_json())?;
    Ok(JoinReport {
        home: home.display().to_string(),
        public_key: key.public_key().to_hex(),
        operator: operator.address.to_hex(),
        p2p: port(0),
        rpc: format!("http://{}", port(100)),
        metrics: format!("http://{}", port(200)),
        peers: config.p2p.bootstrap,
    })
}
