//! `keel-load`: sends simple transfers to a running cluster at a target rate and reports
//! finalized transactions per second and submit→final latency, then checks that every
//! validator has the same state root at every height (devnet/load wraps it).

use anyhow::Context;
use clap::Parser;
use keel_devtools::load::{run, LoadOptions};
use keel_node::config::NodeConfig;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "keel-load",
    about = "load a keel cluster and check that its nodes agree"
)]
struct Args {
    /// A devnet directory (reads nodeI/config.toml for RPC URLs and accounts.json for keys).
    #[arg(long, default_value = "./devnet")]
    home: PathBuf,
    /// Transactions per second to send.
    #[arg(long, default_value_t = 1_000)]
    rate: u64,
    /// Seconds to send for.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Fresh sender accounts (funded first from the dev accounts).
    #[arg(long, default_value_t = 200)]
    senders: usize,
    /// Seconds to wait after sending for the rest to finalize.
    #[arg(long, default_value_t = 30)]
    settle: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Send every transfer to a new account, so the state grows with the load.
    #[arg(long)]
    fresh_recipients: bool,
}

fn options(args: &Args) -> anyhow::Result<LoadOptions> {
    let mut rpcs = Vec::new();
    for i in 0.. {
        let path = args.home.join(format!("node{i}/config.toml"));
        if !path.exists() {
            break;
        }
        let config = NodeConfig::load(&path)?;
        rpcs.push(format!("http://{}", config.rpc.listen));
    }
    if rpcs.is_empty() {
        anyhow::bail!(
            "no node homes under {}; start `keel devnet --home {}` first",
            args.home.display(),
            args.home.display()
        );
    }
    let accounts_path = args.home.join("accounts.json");
    let text = std::fs::read_to_string(&accounts_path)
        .with_context(|| accounts_path.display().to_string())?;
    let accounts: Vec<serde_json::Value> =
        serde_json::from_str(&text).with_context(|| accounts_path.display().to_string())?;
    let mut funders = Vec::new();
    for a in accounts {
        let file = a["key_file"]
            .as_str()
            .context("accounts.json entry without key_file")?;
        funders.push(keel_node::keys::read(std::path::Path::new(file))?);
    }
    Ok(LoadOptions {
        rpcs,
        funders,
        senders: args.senders,
        rate_per_s: args.rate,
        duration_s: args.duration,
        settle_s: args.settle,
        seed: args.seed,
        fresh_recipients: args.fresh_recipients,
        stop: None,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = options(&args).and_then(|opts| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        Ok(rt.block_on(run(opts))?)
    });
    match result {
        Ok(report) => {
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
