//! `keel tx policy …`: the flags of an account policy and the transactions that set it
//! (docs/policies.md).

use crate::client::{parse_address, parse_amount, parse_hex, ClientError};
use clap::Args;
use keel_types::policy::{AccountPolicy, TargetRule};
use keel_types::{Address, Env};

/// The limits of `keel tx policy set`; a limit not given is no limit.
#[derive(Args, Debug, Clone, Default)]
pub struct PolicyArgs {
    /// Environments the account may call or deploy in: `evm`, `wasm` or `evm,wasm`.
    #[arg(long, value_delimiter = ',')]
    pub envs: Option<Vec<String>>,
    /// An allowed target, optionally narrowed to selectors: `ADDR` or
    /// `ADDR:0xa9059cbb,0x095ea7b3`. Repeat for more. With targets, deploys are denied.
    #[arg(long = "target")]
    pub targets: Vec<String>,
    /// Most native value per transaction (decimal or 0x-hex).
    #[arg(long)]
    pub max_value_per_tx: Option<String>,
    /// Most native value per epoch.
    #[arg(long)]
    pub max_value_per_epoch: Option<String>,
    /// Most fees per epoch.
    #[arg(long)]
    pub max_fee_per_epoch: Option<String>,
    /// Most transactions per epoch.
    #[arg(long)]
    pub max_txs_per_epoch: Option<u64>,
    /// First height the account may send at.
    #[arg(long)]
    pub valid_from: Option<u64>,
    /// Last height the account may send at.
    #[arg(long)]
    pub valid_until: Option<u64>,
    /// No transactions at all (only the controller can lift it).
    #[arg(long)]
    pub frozen: bool,
    /// A policy plugin's address (a contract with `check(…)`, docs/policies.md). Repeat for
    /// more.
    #[arg(long = "plugin")]
    pub plugins: Vec<String>,
}

impl PolicyArgs {
    pub fn policy(&self) -> Result<AccountPolicy, ClientError> {
        let envs = self
            .envs
            .as_ref()
            .map(|names| names.iter().map(|n| env(n)).collect::<Result<Vec<_>, _>>())
            .transpose()?;
        let targets = if self.targets.is_empty() {
            None
        } else {
            Some(
                self.targets
                    .iter()
                    .map(|t| target(t))
                    .collect::<Result<Vec<_>, _>>()?,
            )
        };
        let amount = |v: &Option<String>| v.as_deref().map(parse_amount).transpose();
        Ok(AccountPolicy {
            envs,
            targets,
            max_value_per_tx: amount(&self.max_value_per_tx)?,
            max_value_per_epoch: amount(&self.max_value_per_epoch)?,
            max_fee_per_epoch: amount(&self.max_fee_per_epoch)?,
            max_txs_per_epoch: self.max_txs_per_epoch,
            valid_from: self.valid_from,
            valid_until: self.valid_until,
            frozen: self.frozen,
            plugins: self
                .plugins
                .iter()
                .map(|p| parse_address(p))
                .collect::<Result<_, _>>()?,
        })
    }
}

fn env(name: &str) -> Result<Env, ClientError> {
    match name.trim() {
        "evm" => Ok(Env::Evm),
        "wasm" => Ok(Env::Wasm),
        other => Err(ClientError::BadPolicy {
            detail: format!("environment {other:?} (evm or wasm)"),
        }),
    }
}

fn target(text: &str) -> Result<TargetRule, ClientError> {
    let (to, selectors) = match text.split_once(':') {
        Some((to, list)) => (to, Some(list)),
        None => (text, None),
    };
    let selectors = selectors
        .map(|list| {
            list.split(',')
                .map(|s| {
                    let raw = parse_hex(s, "selector")?;
                    <[u8; 4]>::try_from(raw.as_slice()).map_err(|_| ClientError::BadPolicy {
                        detail: format!("selector {s:?} is not 4 bytes"),
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    Ok(TargetRule {
        to: parse_address(to)?,
        selectors,
    })
}

/// The account a policy transaction is about: `--account`, or the sender itself.
pub fn account_or(account: Option<&str>, sender: Address) -> Result<Address, ClientError> {
    account.map_or(Ok(sender), parse_address)
}

/// A session key: the public key of a key file (`keel keys new`), or a 0x public key.
pub fn public_key(text: &str) -> Result<keel_types::PublicKey, ClientError> {
    let path = std::path::Path::new(text);
    if path.exists() {
        return Ok(crate::client::read_key(path)?.public_key());
    }
    let raw = parse_hex(text, "--session-key")?;
    let bytes = <[u8; 32]>::try_from(raw.as_slice()).map_err(|_| ClientError::BadPolicy {
        detail: format!("--session-key {text:?} is neither a key file nor a 32-byte public key"),
    })?;
    Ok(keel_types::PublicKey(bytes))
}
