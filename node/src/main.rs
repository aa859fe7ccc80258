//! The `keel` command (../shared/INTERFACES.md). Data goes to stdout as JSON; errors are one
//! line on stderr and a non-zero exit. Commands land as their issues do: `keys new` and
//! `init` so far.

use clap::{Args, Parser, Subcommand};
use keel_node::init::{init, InitOptions};
use keel_node::keys;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "keel", version, about = "keel validator node and client")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Key management.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Write keys, genesis and configs for N validators under --home (DIR/node0 … nodeN-1).
    Init(InitArgs),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a new ed25519 key file (mode 0600); prints {"address","public_key"}.
    New {
        /// Where to write the key; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args)]
struct InitArgs {
    #[arg(long)]
    home: PathBuf,
    #[arg(long, default_value_t = 4)]
    validators: usize,
    #[arg(long, default_value_t = 1337)]
    chain_id: u64,
    /// Blocks per epoch.
    #[arg(long, default_value_t = 1_000)]
    epoch_length: u64,
    /// Epochs an untouched state entry stays live (0: expiry off).
    #[arg(long, default_value_t = 0)]
    expiry_epochs: u64,
    #[arg(long, default_value_t = 500)]
    block_time_ms: u64,
    /// Node i: p2p on P+i, RPC on P+100+i, metrics on P+200+i (node0's RPC is 8545 by default).
    #[arg(long, default_value_t = 8445)]
    base_port: u16,
    /// Funded development accounts written under DIR/accounts.
    #[arg(long, default_value_t = 10)]
    dev_accounts: usize,
    /// Genesis timestamp (ms since the Unix epoch); default: now.
    #[arg(long)]
    genesis_time_ms: Option<u64>,
}

fn now_ms() -> u64 {
    // Configuration time, not execution: the genesis timestamp is chosen once and written
    // into genesis.json, which every node then reads.
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now();
    now.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn run(cli: Cli) -> Result<serde_json::Value, String> {
    match cli.command {
        Command::Keys(KeysCommand::New { out }) => {
            let file = keys::write(&out, &keys::generate()).map_err(|e| e.to_string())?;
            Ok(serde_json::json!({
                "address": file.address,
                "public_key": file.public_key,
                "key_file": out.display().to_string(),
            }))
        }
        Command::Init(a) => {
            let report = init(&InitOptions {
                home: a.home,
                validators: a.validators,
                chain_id: a.chain_id,
                epoch_length: a.epoch_length,
                expiry_epochs: a.expiry_epochs,
                block_time_ms: a.block_time_ms,
                base_port: a.base_port,
                dev_accounts: a.dev_accounts,
                genesis_time_ms: a.genesis_time_ms.unwrap_or_else(now_ms),
            })?;
            serde_json::to_value(report).map_err(|e| e.to_string())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(value) => {
            println!("{value}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
