//! The `keel` command (../shared/INTERFACES.md). Data goes to stdout as JSON; logs and
//! errors go to stderr; every error is one line and a non-zero exit.

use clap::{Args, Parser, Subcommand, ValueEnum};
use keel_cli::client::{self, Client, ClientError, TxRequest};
use keel_cli::devnet::{devnet, DevnetOptions};
use keel_cli::init::{init, init_join, InitOptions};
use keel_node::driver::now_ms;
use keel_node::keys;
use keel_types::{Address, Env, TxBody};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "keel", version, about = "keel validator node and client")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Start a local multi-validator devnet (separate `keel run` processes on loopback).
    Devnet(DevnetArgs),
    /// Write keys, genesis and configs for N validators under --home (DIR/node0 … nodeN-1).
    Init(InitArgs),
    /// Run one validator in the foreground from its home directory.
    Run {
        /// A validator home written by `keel init` (config.toml, genesis.json, keys/, data/).
        #[arg(long)]
        home: PathBuf,
        /// How a node with no state catches up: "block" (from genesis) or "snapshot" (the
        /// latest epoch boundary's state, verified; docs/validators.md). Overrides
        /// config.toml's `sync.mode`.
        #[arg(long)]
        sync: Option<String>,
        /// A trusted `HEIGHT:0xHASH` (an epoch's last block) to verify the epoch chain from
        /// instead of genesis (`sync.checkpoint`).
        #[arg(long)]
        checkpoint: Option<String>,
    },
    /// Key management.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Sign and submit transactions.
    #[command(subcommand)]
    Tx(TxCommand),
    /// Read chain state.
    #[command(subcommand)]
    Query(QueryCommand),
    /// Solidity-ABI calldata and output (for `tx call --data`, `query call`, `--args`).
    #[command(subcommand)]
    Abi(AbiCommand),
}

#[derive(Subcommand)]
enum AbiCommand {
    /// Calldata for a call: `keel abi encode 'transfer(address,uint256)' 0xbb… 100`.
    Encode {
        signature: String,
        args: Vec<String>,
    },
    /// Constructor arguments (no selector): `keel abi args 'uint256' 1000`.
    Args { types: String, args: Vec<String> },
    /// A call's output as JSON values: `keel abi decode 'uint256,bool' 0x…`.
    Decode { types: String, data: String },
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

#[derive(Args, Clone)]
struct GenesisArgs {
    #[arg(long, default_value = "./devnet")]
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
    /// Epochs an expired entry's stub stays in the tree before a fold page takes it (0: never).
    #[arg(long, default_value_t = keel_node::genesis::DEFAULT_FOLD_EPOCHS)]
    fold_epochs: u64,
    /// The idle heartbeat: an empty block this long after the last when nothing waits.
    #[arg(long, default_value_t = 500)]
    block_time_ms: u64,
    /// With transactions waiting, a block this long after its parent (at most
    /// --block-time-ms; equal to it for fixed-interval blocks).
    #[arg(long, default_value_t = keel_node::config::DEFAULT_MIN_BLOCK_INTERVAL_MS)]
    min_block_interval_ms: u64,
    /// Node i: p2p on P+i, RPC on P+100+i, metrics on P+200+i (node0's RPC is 8545 by default).
    #[arg(long, default_value_t = 8445)]
    base_port: u16,
    /// Comma-separated IP address of each validator (all its ports), e.g. one network
    /// namespace each (devnet/netns); default: all on 127.0.0.1.
    #[arg(long, value_delimiter = ',')]
    hosts: Vec<String>,
    /// Funded development accounts written under DIR/accounts.
    #[arg(long, default_value_t = 10)]
    dev_accounts: usize,
    /// Comma-separated execution thread counts; validator i gets entry i mod the list's
    /// length (config `[execution] threads`). The default mixes serial and parallel
    /// execution, so every devnet shows that they agree on every root.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    exec_threads: Vec<usize>,
    /// Genesis timestamp (ms since the Unix epoch); default: now.
    #[arg(long)]
    genesis_time_ms: Option<u64>,
    /// Comma-separated jurisdiction attesters: accounts that may tag accounts with
    /// jurisdiction codes (docs/policies.md); default: none.
    #[arg(long, value_delimiter = ',')]
    attesters: Vec<String>,
}

#[derive(clap::Args)]
struct InitArgs {
    #[command(flatten)]
    network: GenesisArgs,
    /// `keel init --join --genesis FILE --home DIR`: a home for one node that joins the
    /// running chain of FILE by snapshot sync (p2p on --base-port, RPC on +100, metrics on
    /// +200, on the first of --hosts); prints its key and operator account.
    #[arg(long, requires = "genesis")]
    join: bool,
    /// The chain's genesis.json (with --join).
    #[arg(long, requires = "join")]
    genesis: Option<PathBuf>,
    /// With --join: validators to reach besides genesis's, `0xKEY@IP:PORT,…` (`keel query
    /// validators` shows keys and addresses): written as `p2p.bootstrap`.
    #[arg(long, requires = "join", value_delimiter = ',')]
    peers: Vec<String>,
}

impl GenesisArgs {
    fn options(self) -> InitOptions {
        InitOptions {
            home: self.home,
            validators: self.validators,
            chain_id: self.chain_id,
            epoch_length: self.epoch_length,
            expiry_epochs: self.expiry_epochs,
            fold_epochs: self.fold_epochs,
            block_time_ms: self.block_time_ms,
            min_block_interval_ms: self.min_block_interval_ms,
            base_port: self.base_port,
            hosts: self.hosts,
            dev_accounts: self.dev_accounts,
            exec_threads: self.exec_threads,
            genesis_time_ms: self.genesis_time_ms.unwrap_or_else(now_ms),
            attesters: self.attesters,
        }
    }
}

#[derive(Args)]
struct DevnetArgs {
    #[command(flatten)]
    genesis: GenesisArgs,
    /// Wipe DIR first instead of resuming the chain in it.
    #[arg(long)]
    fresh: bool,
    /// Run validator i as `ip netns exec PREFIX<i> keel run …`, in network namespaces that
    /// `devnet/netns up` made (use with --hosts set to their addresses).
    #[arg(long, value_name = "PREFIX")]
    netns: Option<String>,
    /// Print JSON lines (one per validator, then `ready`) even on a terminal, where a banner
    /// and a live status line are the default.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RpcArg {
    /// Node RPC endpoint.
    #[arg(long, env = "KEEL_RPC", default_value = "http://127.0.0.1:8545")]
    rpc: String,
}

#[derive(Args)]
struct SendArgs {
    #[command(flatten)]
    rpc: RpcArg,
    /// Key file of the sender (from `keel keys new` or accounts.json).
    #[arg(long)]
    key: PathBuf,
    /// Gas limit (defaults: transfer 21000, deploy 8000000, call 1000000).
    #[arg(long)]
    gas: Option<u64>,
    /// Gas price (default: the chain's minimum).
    #[arg(long)]
    gas_price: Option<u128>,
    /// Nonce (default: the account's next, counting its queued transactions).
    #[arg(long)]
    nonce: Option<u64>,
    /// Wait for finality and print the receipt.
    #[arg(long)]
    wait: bool,
    /// Sign as a session key of this account (`keel tx policy session-key add`): the
    /// account pays, within the key's scope.
    #[arg(long = "as")]
    acting_as: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum EnvArg {
    Evm,
    Wasm,
}

#[derive(Subcommand)]
enum TxCommand {
    /// Send native balance.
    Transfer {
        #[command(flatten)]
        send: SendArgs,
        #[arg(long)]
        to: String,
        /// Decimal or 0x-hex.
        #[arg(long)]
        amount: String,
    },
    /// Deploy a contract: EVM creation bytecode (hex file) or WASM (.wasm or .wat).
    Deploy {
        #[command(flatten)]
        send: SendArgs,
        #[arg(long, value_enum)]
        env: EnvArg,
        #[arg(long)]
        code: PathBuf,
        /// Constructor arguments, hex.
        #[arg(long, default_value = "")]
        args: String,
        #[arg(long, default_value = "0")]
        value: String,
    },
    /// Call a contract in either environment.
    Call {
        #[command(flatten)]
        send: SendArgs,
        #[arg(long)]
        to: String,
        #[arg(long)]
        data: String,
        #[arg(long, default_value = "0")]
        value: String,
    },
    /// Bring an expired state entry back with a proof from `keel query proof`.
    Revive {
        #[command(flatten)]
        send: SendArgs,
        #[arg(long)]
        proof: PathBuf,
    },
    /// Account policies: limits on what an account's transactions may do (docs/policies.md).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Validator lifecycle, signed by the operator's `--key` (docs/validators.md). Amounts
    /// are whole tokens, or wei with a `wei` suffix.
    #[command(subcommand)]
    Validator(ValidatorCommand),
}

/// A validator and an amount of stake (`bond`, `unbond`).
#[derive(Args)]
struct StakeArgs {
    #[command(flatten)]
    send: SendArgs,
    /// The validator: its key file or 0x public key.
    #[arg(long)]
    validator: String,
    #[arg(long)]
    amount: String,
}

#[derive(Subcommand)]
enum ValidatorCommand {
    /// Register the consensus key in `--validator-key` (its holder signs a proof of
    /// possession) with `--stake` from the operator's balance; active from an epoch boundary.
    Register {
        #[command(flatten)]
        send: SendArgs,
        /// The node's key file (HOME/keys/validator.json).
        #[arg(long)]
        validator_key: PathBuf,
        /// Where peers dial the node (host:port).
        #[arg(long)]
        p2p: String,
        #[arg(long)]
        stake: String,
    },
    /// Add stake.
    Bond(StakeArgs),
    /// Start returning stake (paid after `unbonding_epochs`).
    Unbond(StakeArgs),
    /// Leave the set; the whole stake unbonds once out.
    Leave {
        #[command(flatten)]
        send: SendArgs,
        #[arg(long)]
        validator: String,
    },
    /// Change the p2p address and/or rotate to the key in `--new-key`.
    Update {
        #[command(flatten)]
        send: SendArgs,
        #[arg(long)]
        validator: String,
        #[arg(long)]
        p2p: Option<String>,
        #[arg(long)]
        new_key: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Set an account's policy: the account itself may only tighten it, its controller may
    /// set any. Limits not given are no limits.
    Set {
        #[command(flatten)]
        send: SendArgs,
        /// The account (default: the sender's own).
        #[arg(long)]
        account: Option<String>,
        #[command(flatten)]
        limits: keel_cli::policy::PolicyArgs,
    },
    /// Name an account's controller (`--none` releases it). The account may name one only
    /// while it has no controller and no limits; after that only the controller may.
    Controller {
        #[command(flatten)]
        send: SendArgs,
        #[arg(long)]
        account: Option<String>,
        #[arg(long, required_unless_present = "none")]
        controller: Option<String>,
        #[arg(long, conflicts_with = "controller")]
        none: bool,
    },
    /// Session keys: extra ed25519 keys that act as the account within a scope.
    #[command(subcommand)]
    SessionKey(SessionKeyCommand),
    /// Tag an account with a jurisdiction code, or `--remove` the tag (genesis attesters).
    Tag {
        #[command(flatten)]
        send: SendArgs,
        #[command(flatten)]
        tag: keel_cli::policy::TagArgs,
    },
    /// Declare which callers may call the sender (by jurisdiction tag); no flags clear it.
    Rule {
        #[command(flatten)]
        send: SendArgs,
        #[command(flatten)]
        rule: keel_cli::policy::RuleArgs,
    },
}

// Parsed once per process: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum SessionKeyCommand {
    /// Authorise a key (a key file or a 0x public key) to act as the account within the
    /// given limits (the account's own policy applies too) until `--expires-at`. Adding a
    /// key again replaces its scope.
    Add {
        #[command(flatten)]
        send: SendArgs,
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        session_key: String,
        /// The last height at which the key may sign.
        #[arg(long)]
        expires_at: u64,
        #[command(flatten)]
        limits: keel_cli::policy::PolicyArgs,
    },
    /// Revoke a session key.
    Revoke {
        #[command(flatten)]
        send: SendArgs,
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        session_key: String,
    },
}

#[derive(Subcommand)]
enum QueryCommand {
    /// Height, finalized height, epoch, state root, validators, peers.
    Status(RpcArg),
    /// {"nonce","balance","code_hash","env"} of an address.
    Account {
        address: String,
        #[command(flatten)]
        rpc: RpcArg,
    },
    /// One 32-byte storage slot: {"value":"0x…"}.
    Storage {
        address: String,
        slot: String,
        #[command(flatten)]
        rpc: RpcArg,
    },
    /// Read-only call: {"output","gas_used",…}.
    Call {
        #[arg(long)]
        to: String,
        #[arg(long)]
        data: String,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        gas: Option<u64>,
        #[command(flatten)]
        rpc: RpcArg,
    },
    /// A transaction's receipt (null if not finalized).
    Receipt {
        tx_hash: String,
        #[command(flatten)]
        rpc: RpcArg,
    },
    /// A block by height, or `latest`.
    Block {
        height: String,
        #[command(flatten)]
        rpc: RpcArg,
    },
    /// An epoch's validator set (power per validator) and every registered validator's
    /// stake and status (default: the next block's epoch).
    Validators {
        #[arg(long)]
        epoch: Option<u64>,
        #[command(flatten)]
        rpc: RpcArg,
    },
    /// An account's policy, its budgets left this epoch and when they reset.
    Policy {
        address: String,
        #[command(flatten)]
        rpc: RpcArg,
    },
    /// Membership proof of an account or slot against the latest state root.
    Proof {
        address: String,
        slot: Option<String>,
        #[arg(long)]
        epoch: Option<u64>,
        #[command(flatten)]
        rpc: RpcArg,
    },
}

async fn send_tx(send: SendArgs, body: TxBody) -> Result<Value, ClientError> {
    let key = client::read_key(&send.key)?;
    let client = Client::new(&send.rpc.rpc)?;
    client::send(
        &client,
        &key,
        TxRequest {
            body,
            gas: send.gas,
            gas_price: send.gas_price,
            nonce: send.nonce,
            wait: send.wait,
            acting_as: send
                .acting_as
                .as_deref()
                .map(client::parse_address)
                .transpose()?,
        },
    )
    .await
}

async fn tx(command: TxCommand) -> Result<Value, ClientError> {
    match command {
        TxCommand::Transfer { send, to, amount } => {
            let body = TxBody::Transfer {
                to: client::parse_address(&to)?,
                amount: client::parse_amount(&amount)?,
            };
            send_tx(send, body).await
        }
        TxCommand::Deploy {
            send,
            env,
            code,
            args,
            value,
        } => {
            let env = match env {
                EnvArg::Evm => Env::Evm,
                EnvArg::Wasm => Env::Wasm,
            };
            let body = TxBody::Deploy {
                env,
                code: client::read_code(env, &code)?,
                args: client::parse_hex(&args, "--args")?,
                value: client::parse_amount(&value)?,
            };
            send_tx(send, body).await
        }
        TxCommand::Call {
            send,
            to,
            data,
            value,
        } => {
            let body = TxBody::Call {
                to: client::parse_address(&to)?,
                data: client::parse_hex(&data, "--data")?,
                value: client::parse_amount(&value)?,
            };
            send_tx(send, body).await
        }
        TxCommand::Revive { send, proof } => {
            let text = String::from_utf8(client::read_file(&proof)?).map_err(|_| {
                ClientError::NotHexText {
                    path: proof.clone(),
                }
            })?;
            // The file is what `keel query proof` printed (its "proof" field; `"unflag": true`
            // for a fold filter's false positive), or bare hex of a revival proof.
            let (text, unflag) = match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(v) => (
                    v.get("proof")
                        .and_then(|p| p.as_str())
                        .map(str::to_string)
                        .ok_or_else(|| ClientError::NoProof {
                            path: proof.clone(),
                        })?,
                    v.get("unflag") == Some(&Value::Bool(true)),
                ),
                Err(_) => (text, false),
            };
            let proof = client::parse_hex(text.trim(), "proof")?;
            let body = if unflag {
                TxBody::Unflag { proof }
            } else {
                TxBody::Revive { proof }
            };
            send_tx(send, body).await
        }
        TxCommand::Policy(command) => policy_tx(command).await,
        TxCommand::Validator(command) => validator_tx(command).await,
    }
}

/// A `Bond` (or with `bond` false an `Unbond`) of the validator and amount in `args`.
fn stake_tx(args: StakeArgs, bond: bool) -> Result<(SendArgs, TxBody), ClientError> {
    use keel_types::validator::ValidatorTx;
    let key = keel_cli::validator::validator_key(&args.validator)?;
    let amount = keel_cli::validator::parse_stake(&args.amount)?;
    let op = if bond {
        ValidatorTx::Bond { key, amount }
    } else {
        ValidatorTx::Unbond { key, amount }
    };
    Ok((args.send, TxBody::Validator(op)))
}

async fn validator_tx(command: ValidatorCommand) -> Result<Value, ClientError> {
    use keel_cli::validator::validator_key;
    use keel_types::validator::ValidatorTx;
    let (send, body) = match command {
        ValidatorCommand::Register {
            send,
            validator_key,
            p2p,
            stake,
        } => {
            let body = keel_cli::validator::register(
                &send.rpc.rpc,
                &send.key,
                &validator_key,
                p2p,
                &stake,
            )
            .await?;
            (send, body)
        }
        ValidatorCommand::Bond(args) => stake_tx(args, true)?,
        ValidatorCommand::Unbond(args) => stake_tx(args, false)?,
        ValidatorCommand::Leave { send, validator } => {
            let op = ValidatorTx::Leave {
                key: validator_key(&validator)?,
            };
            (send, TxBody::Validator(op))
        }
        ValidatorCommand::Update {
            send,
            validator,
            p2p,
            new_key,
        } => {
            let key = validator_key(&validator)?;
            let body =
                keel_cli::validator::update(&send.rpc.rpc, &send.key, key, p2p, new_key.as_deref())
                    .await?;
            (send, body)
        }
    };
    send_tx(send, body).await
}

async fn policy_tx(command: PolicyCommand) -> Result<Value, ClientError> {
    let sender_of = |send: &SendArgs| -> Result<Address, ClientError> {
        let key = client::read_key(&send.key)?;
        Ok(Address::from_public_key(&key.public_key()))
    };
    match command {
        PolicyCommand::Set {
            send,
            account,
            limits,
        } => {
            let account = keel_cli::policy::account_or(account.as_deref(), sender_of(&send)?)?;
            let body = TxBody::SetPolicy {
                account,
                policy: limits.policy()?,
            };
            send_tx(send, body).await
        }
        PolicyCommand::Controller {
            send,
            account,
            controller,
            none: _,
        } => {
            let account = keel_cli::policy::account_or(account.as_deref(), sender_of(&send)?)?;
            let controller = controller
                .as_deref()
                .map(client::parse_address)
                .transpose()?;
            send_tx(
                send,
                TxBody::SetController {
                    account,
                    controller,
                },
            )
            .await
        }
        PolicyCommand::SessionKey(SessionKeyCommand::Add {
            send,
            account,
            session_key,
            expires_at,
            limits,
        }) => {
            let account = keel_cli::policy::account_or(account.as_deref(), sender_of(&send)?)?;
            let body = TxBody::AddSessionKey {
                account,
                key: keel_cli::policy::public_key(&session_key)?,
                policy: limits.policy()?,
                expires_at,
            };
            send_tx(send, body).await
        }
        PolicyCommand::SessionKey(SessionKeyCommand::Revoke {
            send,
            account,
            session_key,
        }) => {
            let account = keel_cli::policy::account_or(account.as_deref(), sender_of(&send)?)?;
            let key = keel_cli::policy::public_key(&session_key)?;
            send_tx(send, TxBody::RevokeSessionKey { account, key }).await
        }
        PolicyCommand::Tag { send, tag } => send_tx(send, tag.body()?).await,
        PolicyCommand::Rule { send, rule } => send_tx(send, rule.body()?).await,
    }
}

async fn query(command: QueryCommand) -> Result<Value, ClientError> {
    let (rpc, method, params) = match command {
        QueryCommand::Status(rpc) => (rpc, "keel_status", vec![]),
        QueryCommand::Account { address, rpc } => (rpc, "keel_getAccount", vec![json!(address)]),
        QueryCommand::Storage { address, slot, rpc } => {
            (rpc, "keel_getStorage", vec![json!(address), json!(slot)])
        }
        QueryCommand::Call {
            to,
            data,
            from,
            gas,
            rpc,
        } => (
            rpc,
            "keel_call",
            vec![json!({"to": to, "data": data, "from": from, "gas": gas})],
        ),
        QueryCommand::Receipt { tx_hash, rpc } => (rpc, "keel_getReceipt", vec![json!(tx_hash)]),
        QueryCommand::Policy { address, rpc } => (rpc, "keel_getPolicy", vec![json!(address)]),
        QueryCommand::Validators { epoch, rpc } => (
            rpc,
            "keel_getValidatorSet",
            epoch.map(|e| vec![json!(e)]).unwrap_or_default(),
        ),
        QueryCommand::Block { height, rpc } => {
            let which = match height.parse::<u64>() {
                Ok(h) => json!(h),
                Err(_) => json!(height),
            };
            (rpc, "keel_getBlock", vec![which])
        }
        QueryCommand::Proof {
            address,
            slot,
            epoch,
            rpc,
        } => {
            let mut params = vec![json!(address)];
            if slot.is_some() || epoch.is_some() {
                params.push(json!(slot));
            }
            if let Some(e) = epoch {
                params.push(json!(e));
            }
            (rpc, "keel_getProof", params)
        }
    };
    Client::new(&rpc.rpc)?.request(method, params).await
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<Option<Value>, String> = match cli.command {
        Command::Keys(KeysCommand::New { out }) => keys::write(&out, &keys::generate())
            .map(|file| {
                Some(json!({
                    "address": file.address,
                    "public_key": file.public_key,
                    "key_file": out.display().to_string(),
                }))
            })
            .map_err(|e| e.to_string()),
        Command::Init(a) => match a.genesis.filter(|_| a.join) {
            Some(genesis) => init_join(&a.network.options(), &genesis, &a.peers)
                .map_err(|e| e.to_string())
                .and_then(|report| serde_json::to_value(report).map_err(|e| e.to_string()))
                .map(Some),
            None => init(&a.network.options())
                .map_err(|e| e.to_string())
                .and_then(|report| serde_json::to_value(report).map_err(|e| e.to_string()))
                .map(Some),
        },
        Command::Run {
            home,
            sync,
            checkpoint,
        } => runtime().and_then(|rt| {
            rt.block_on(keel_node::run::run(
                &home,
                keel_node::run::RunOptions { sync, checkpoint },
            ))
            .map(|()| None)
            .map_err(|e| format!("{e:#}"))
        }),
        Command::Devnet(a) => runtime().and_then(|rt| {
            rt.block_on(devnet(DevnetOptions {
                init: a.genesis.options(),
                fresh: a.fresh,
                netns: a.netns,
                json: a.json,
            }))
            .map(|()| None)
            .map_err(|e| e.to_string())
        }),
        Command::Tx(command) => runtime().and_then(|rt| {
            rt.block_on(tx(command))
                .map(Some)
                .map_err(|e| e.to_string())
        }),
        Command::Abi(command) => match command {
            AbiCommand::Encode { signature, args } => {
                keel_cli::abi::encode(&signature, &args).map(|d| Some(json!(d)))
            }
            AbiCommand::Args { types, args } => {
                keel_cli::abi::encode_args(&types, &args).map(|d| Some(json!(d)))
            }
            AbiCommand::Decode { types, data } => keel_cli::abi::decode(&types, &data).map(Some),
        }
        .map_err(|e| e.to_string()),
        Command::Query(command) => runtime().and_then(|rt| {
            rt.block_on(query(command))
                .map(Some)
                .map_err(|e| e.to_string())
        }),
    };
    match result {
        Ok(Some(value)) => {
            println!("{value}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
