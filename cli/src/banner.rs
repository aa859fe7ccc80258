//! What `keel devnet` shows a person at a terminal (anvil's idea): a banner with every
//! validator's endpoints and the prefunded accounts with their keys, then one status line
//! rewritten in place. Scripts get JSON lines instead (`--json`, or stdout not a terminal).
//! Rendering is pure (strings from data) so it is tested without a terminal.

use serde::Deserialize;
use std::fmt::Write;
use std::path::Path;

/// Agent accounts the banner lists (the devnet may prefund more; all are in accounts.json).
pub const BANNER_ACCOUNTS: usize = 10;
/// Blocks the status line reads per refresh to count transactions (more are skipped).
pub const STATUS_MAX_BLOCKS_PER_TICK: u64 = 64;

/// One validator's endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub index: usize,
    pub rpc: String,
    pub p2p: String,
    pub metrics: String,
    pub pid: u32,
}

/// A prefunded account and the secret that controls it (devnet keys only).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Funded {
    pub address: String,
    pub secret: String,
}

/// The prefunded accounts `keel init` wrote under `dir`: agent (ed25519) accounts from
/// accounts.json and their key files, and the Ethereum dev account.
pub fn funded_accounts(dir: &Path) -> (Vec<Funded>, Option<Funded>) {
    #[derive(Deserialize)]
    struct Listed {
        address: String,
        key_file: String,
    }
    #[derive(Deserialize)]
    struct KeyFile {
        secret_seed: String,
    }
    #[derive(Deserialize)]
    struct EthFile {
        address: String,
        private_key: String,
    }
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    let listed: Vec<Listed> = read(&dir.join("accounts.json"))
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    let agents = listed
        .into_iter()
        .take(BANNER_ACCOUNTS)
        .filter_map(|l| {
            let key: KeyFile = serde_json::from_str(&read(Path::new(&l.key_file))?).ok()?;
            Some(Funded {
                address: l.address,
                secret: key.secret_seed,
            })
        })
        .collect();
    let eth = read(&dir.join(crate::init::ETH_DEV_ACCOUNT_FILE))
        .and_then(|s| serde_json::from_str::<EthFile>(&s).ok())
        .map(|e| Funded {
            address: e.address,
            secret: e.private_key,
        });
    (agents, eth)
}

/// The banner: chain, validators and their URLs, accounts with keys, first commands.
pub fn render(
    chain_id: u64,
    dir: &Path,
    nodes: &[Endpoints],
    agents: &[Funded],
    eth: Option<&Funded>,
) -> String {
    let mut out = String::new();
    let rule = "─".repeat(78);
    let _ = writeln!(out, "{rule}");
    let _ = writeln!(
        out,
        "keel devnet · chain id {chain_id} · {} validators · {}",
        nodes.len(),
        dir.display()
    );
    let _ = writeln!(out, "{rule}");
    let _ = writeln!(out, "\nValidators");
    let _ = writeln!(
        out,
        "  #  RPC (HTTP + WebSocket)     metrics                     p2p                  pid"
    );
    for n in nodes {
        let _ = writeln!(
            out,
            "  {:<2} {:<27} {:<27} {:<20} {}",
            n.index,
            n.rpc,
            format!("{}/metrics", n.metrics),
            n.p2p,
            n.pid
        );
    }
    if let Some(first) = nodes.first() {
        let ws = first.rpc.replacen("http://", "ws://", 1);
        let _ = writeln!(out, "  WebSocket: {ws} (eth_subscribe, keel_subscribe)");
        let _ = writeln!(
            out,
            "  Status page: {}/ (live chain, validators, blocks, search)",
            first.metrics
        );
    }
    if !agents.is_empty() {
        let _ = writeln!(
            out,
            "\nAgent accounts (ed25519; key files in {}/accounts)",
            dir.display()
        );
        for (i, a) in agents.iter().enumerate() {
            let _ = writeln!(out, "  ({i}) {}  secret seed {}", a.address, a.secret);
        }
    }
    if let Some(e) = eth {
        let _ = writeln!(
            out,
            "\nEthereum account (secp256k1; for web3.py, viem, ethers, cast)"
        );
        let _ = writeln!(out, "  {}  private key {}", e.address, e.secret);
    }
    if let Some(first) = nodes.first() {
        let _ = writeln!(out, "\nTry");
        let _ = writeln!(out, "  keel query status --rpc {}", first.rpc);
        if let Some(a) = agents.first() {
            let _ = writeln!(
                out,
                "  keel query account {} --rpc {}",
                a.address, first.rpc
            );
        }
        let _ = writeln!(out, "  cast block-number --rpc-url {}", first.rpc);
    }
    let _ = writeln!(
        out,
        "\nDevelopment keys only: never use them on a network anyone else can reach.\n{rule}"
    );
    out
}

/// One reading of the chain for the status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sample {
    pub height: u64,
    pub finalized: u64,
    pub peers: u64,
    pub mempool: u64,
    /// Transactions in blocks since the previous reading.
    pub new_txs: u64,
}

/// The status line: height, finalized, transactions per second over the last interval,
/// peers, pool; `validators_up` of `validators` answered.
pub fn status_line(
    s: &Sample,
    interval_ms: u64,
    validators_up: usize,
    validators: usize,
) -> String {
    let tx_per_s = s
        .new_txs
        .saturating_mul(1_000)
        .checked_div(interval_ms)
        .unwrap_or(0);
    format!(
        "height {} · finalized {} · {} tx/s · peers {} · mempool {} · validators {}/{}",
        s.height, s.finalized, tx_per_s, s.peers, s.mempool, validators_up, validators
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_lists_every_endpoint_account_and_key() {
        let nodes: Vec<Endpoints> = (0..4)
            .map(|i| Endpoints {
                index: i,
                rpc: format!("http://127.0.0.1:{}", 8545 + i),
                p2p: format!("127.0.0.1:{}", 8445 + i),
                metrics: format!("http://127.0.0.1:{}", 8645 + i),
                pid: 100 + i as u32,
            })
            .collect();
        let agents: Vec<Funded> = (0..3)
            .map(|i| Funded {
                address: format!("0x{i:040x}"),
                secret: format!("0x{:064x}", i + 7),
            })
            .collect();
        let eth = Funded {
            address: "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266".into(),
            secret: "0xac09".into(),
        };
        let text = render(1337, Path::new("/d"), &nodes, &agents, Some(&eth));
        for n in &nodes {
            assert!(text.contains(&n.rpc) && text.contains(&n.p2p), "{text}");
            assert!(text.contains(&format!("{}/metrics", n.metrics)));
            assert!(text.contains(&format!("Status page: {}/ ", nodes[0].metrics)));
            assert!(text.contains(&n.pid.to_string()));
        }
        assert!(text.contains("ws://127.0.0.1:8545"));
        for a in &agents {
            assert!(text.contains(&a.address) && text.contains(&a.secret));
        }
        assert!(text.contains(&eth.address) && text.contains(&eth.secret));
        assert!(text.contains("chain id 1337") && text.contains("4 validators"));
    }

    #[test]
    fn the_status_line_reports_rates_over_its_interval() {
        let s = Sample {
            height: 10,
            finalized: 9,
            peers: 3,
            mempool: 5,
            new_txs: 300,
        };
        let line = status_line(&s, 1_500, 3, 4);
        assert_eq!(
            line,
            "height 10 · finalized 9 · 200 tx/s · peers 3 · mempool 5 · validators 3/4"
        );
        assert!(status_line(&s, 0, 4, 4).contains("0 tx/s"));
    }

    #[test]
    fn accounts_come_from_the_files_keel_init_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = dir.path().join("accounts");
        std::fs::create_dir_all(&keys).expect("mkdir");
        let key_file = keys.join("dev0.json");
        std::fs::write(
            &key_file,
            r#"{"address":"0xaa","public_key":"0x01","secret_seed":"0x02"}"#,
        )
        .expect("write");
        let listed = serde_json::json!([{"address": "0xaa", "key_file": key_file}]);
        std::fs::write(dir.path().join("accounts.json"), listed.to_string()).expect("write");
        std::fs::write(
            dir.path().join(crate::init::ETH_DEV_ACCOUNT_FILE),
            r#"{"address":"0xbb","private_key":"0x03"}"#,
        )
        .expect("write");
        let (agents, eth) = funded_accounts(dir.path());
        assert_eq!(
            agents,
            vec![Funded {
                address: "0xaa".into(),
                secret: "0x02".into()
            }]
        );
        assert_eq!(eth.map(|e| e.secret), Some("0x03".into()));
        // A directory without them: nothing, no error.
        let empty = tempfile::tempdir().expect("tempdir");
        assert_eq!(funded_accounts(empty.path()), (Vec::new(), None));
    }
}
