//! `keel tx validator …`: the validator transactions an operator sends (docs/validators.md).

use crate::client::{field_u64, parse_amount, read_key, Client, ClientError};
use keel_types::validator::{possession_message, ValidatorTx};
use keel_types::{Address, PublicKey, SecretKey, Signature, TxBody};
use std::path::Path;

/// Amounts on the command line are whole tokens (10¹⁸ wei) unless they carry a `wei`
/// suffix: `100` is a hundred tokens, `5wei` five wei.
pub fn parse_stake(text: &str) -> Result<keel_types::U256, ClientError> {
    match text.strip_suffix("wei") {
        Some(wei) => parse_amount(wei),
        None => Ok(parse_amount(text)? * keel_types::U256::from(10u128.pow(18))),
    }
}

/// The chain id the node at `rpc` serves (a possession proof is bound to it).
async fn chain_id(rpc: &str) -> Result<u64, ClientError> {
    let status = Client::new(rpc)?.request("keel_status", vec![]).await?;
    field_u64(&status, "chain_id")
}

/// `key`'s proof that it registers for `operator` on the chain at `rpc`.
async fn possession(
    rpc: &str,
    operator: &Address,
    key: &SecretKey,
) -> Result<Signature, ClientError> {
    let message = possession_message(chain_id(rpc).await?, operator, &key.public_key());
    Ok(key.sign(&message.0))
}

/// A validator's consensus key from its key file (the node's `keys/validator.json`) or a
/// 0x public key.
pub fn validator_key(text: &str) -> Result<PublicKey, ClientError> {
    crate::policy::public_key(text)
}

/// `Register`: the operator (sender key `operator_key`) stakes `stake` on the consensus key
/// in `validator_key_file`, whose holder signs the possession proof.
pub async fn register(
    rpc: &str,
    operator_key: &Path,
    validator_key_file: &Path,
    p2p: String,
    stake: &str,
) -> Result<TxBody, ClientError> {
    let operator = Address::from_public_key(&read_key(operator_key)?.public_key());
    let key = read_key(validator_key_file)?;
    Ok(TxBody::Validator(ValidatorTx::Register {
        key: key.public_key(),
        possession: possession(rpc, &operator, &key).await?,
        p2p,
        stake: parse_stake(stake)?,
    }))
}

/// `Update`: a new p2p address and/or a rotation to the key in `new_key_file`.
pub async fn update(
    rpc: &str,
    operator_key: &Path,
    key: PublicKey,
    p2p: Option<String>,
    new_key_file: Option<&Path>,
) -> Result<TxBody, ClientError> {
    let operator = Address::from_public_key(&read_key(operator_key)?.public_key());
    let rotate = match new_key_file {
        Some(path) => {
            let new = read_key(path)?;
            Some((new.public_key(), possession(rpc, &operator, &new).await?))
        }
        None => None,
    };
    Ok(TxBody::Validator(ValidatorTx::Update { key, p2p, rotate }))
}
