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

/// An ISO 3166-1 alpha-2 code (`US`, `DE`, …).
fn code(text: &str) -> Result<keel_types::jurisdiction::Code, ClientError> {
    keel_types::jurisdiction::Code::parse(text).ok_or_else(|| ClientError::BadPolicy {
        detail: format!("{text:?} is not an assigned ISO 3166-1 alpha-2 code"),
    })
}

fn codes(list: &[String]) -> Result<Vec<keel_types::jurisdiction::Code>, ClientError> {
    if list.len() > keel_types::jurisdiction::MAX_RULE_CODES {
        return Err(ClientError::BadPolicy {
            detail: format!(
                "at most {} codes per list",
                keel_types::jurisdiction::MAX_RULE_CODES
            ),
        });
    }
    list.iter().map(|c| code(c)).collect()
}

/// `keel tx policy tag`: an attester's jurisdiction tag on an account.
#[derive(Args, Debug, Clone)]
pub struct TagArgs {
    /// The account (or contract) to tag.
    #[arg(long)]
    pub account: String,
    /// The ISO 3166-1 alpha-2 code.
    #[arg(long)]
    pub code: String,
    /// The height from which the tag no longer counts (required unless `--remove`).
    #[arg(long, required_unless_present = "remove")]
    pub expires_at: Option<u64>,
    /// Remove this attester's tag with this code instead.
    #[arg(long, conflicts_with = "expires_at")]
    pub remove: bool,
}

impl TagArgs {
    /// The call to the jurisdiction contract.
    pub fn body(&self) -> Result<keel_types::TxBody, ClientError> {
        let account = parse_address(&self.account)?;
        let code = code(&self.code)?;
        let data = match self.expires_at {
            Some(at) if !self.remove => keel_types::jurisdiction::tag_call(&account, code, at),
            _ => keel_types::jurisdiction::untag_call(&account, code),
        };
        Ok(jurisdiction_call(data))
    }
}

/// `keel tx policy rule`: the rules the sender declares about who may call it.
#[derive(Args, Debug, Clone)]
pub struct RuleArgs {
    /// Callers tagged with any of these codes may not call (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub deny: Vec<String>,
    /// Only callers tagged with one of these codes may call (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub allow_only: Vec<String>,
    /// Most value an untagged caller may send per call (decimal or 0x-hex).
    #[arg(long)]
    pub untagged_max_value: Option<String>,
}

impl RuleArgs {
    /// The call to the jurisdiction contract (no rule given: clears the sender's rules).
    pub fn body(&self) -> Result<keel_types::TxBody, ClientError> {
        let rules = keel_types::jurisdiction::Rules {
            deny: codes(&self.deny)?,
            allow_only: codes(&self.allow_only)?,
            untagged_max_value: self
                .untagged_max_value
                .as_deref()
                .map(parse_amount)
                .transpose()?,
        };
        Ok(jurisdiction_call(keel_types::jurisdiction::set_rules_call(
            &rules,
        )))
    }
}

fn jurisdiction_call(data: Vec<u8>) -> keel_types::TxBody {
    keel_types::TxBody::Call {
        to: keel_types::jurisdiction::JURISDICTION_ADDRESS,
        data,
        value: keel_types::U256::ZERO,
    }
}
