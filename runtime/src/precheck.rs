//! The checks that decide whether a transaction can be charged at all, shared by block
//! execution and mempool admission so that both refuse exactly the same transactions.
//!
//! A transaction that fails one of these (or the signature, nonce, balance and expired-sender
//! checks, which need the state) cannot pay a fee, so it must never be in a block: the
//! proposer leaves it out and validators refuse a proposal that carries it (see
//! docs/execution.md, "Refusals"). Everything that fails *after* these checks is charged.

use crate::bridge::{deploy_input, WASM_DEPLOYER};
use keel_exec_evm::revm::context::result::InvalidTransaction;
use keel_exec_evm::revm::context::TxEnv;
use keel_exec_evm::revm::context_interface::Cfg;
use keel_exec_evm::revm::handler::validation::validate_initial_tx_gas_with_gas_params;
use keel_exec_evm::revm::primitives::{Bytes, TxKind};
use keel_exec_evm::{cfg_env, to_revm, u256_to_revm};
use keel_types::limits::MAX_TX_GAS;
use keel_types::policy::POLICY_ADDRESS;
use keel_types::{Env, Transaction, TxBody, TxError, U256};

/// What the EVM runs for `t`: kind, input and value. `None` for revivals and unflags, which
/// the runtime handles itself.
pub(crate) fn evm_parts(t: &Transaction) -> Option<(TxKind, Vec<u8>, U256)> {
    Some(match &t.body {
        TxBody::Transfer { to, amount } => (TxKind::Call(to_revm(to)), Vec::new(), *amount),
        TxBody::Call { to, data, value } => (TxKind::Call(to_revm(to)), data.clone(), *value),
        TxBody::Deploy {
            env: Env::Evm,
            code,
            args,
            value,
        } => (TxKind::Create, [code.as_slice(), args].concat(), *value),
        TxBody::Deploy {
            env: Env::Wasm,
            code,
            args,
            value,
        } => (
            TxKind::Call(WASM_DEPLOYER),
            deploy_input(code, args),
            *value,
        ),
        TxBody::Revive { .. }
        | TxBody::Unflag { .. }
        | TxBody::SetPolicy { .. }
        | TxBody::SetController { .. }
        | TxBody::AddSessionKey { .. }
        | TxBody::RevokeSessionKey { .. }
        | TxBody::Validator(_) => return None,
    })
}

/// The revm transaction for `t` (the sender's nonce and the chain's id included).
pub(crate) fn tx_env(t: &Transaction, chain_id: u64) -> Option<TxEnv> {
    let (kind, data, value) = evm_parts(t)?;
    Some(TxEnv {
        caller: to_revm(&t.sender_address()),
        gas_limit: t.gas_limit,
        gas_price: t.gas_price,
        kind,
        value: u256_to_revm(&value),
        data: Bytes::from(data),
        nonce: t.nonce,
        chain_id: Some(chain_id),
        ..Default::default()
    })
}

/// The gas `t` costs before it runs: revm's intrinsic gas and EIP-7623 floor for EVM
/// transactions (computed by the same function revm validates with), the revival gas for
/// revivals and unflags. `Err` if its gas limit does not cover it.
pub fn check_intrinsic_gas(t: &Transaction, chain_id: u64) -> Result<u64, TxError> {
    // A policy change (in either form: `TxBody::as_policy_change`) costs its own gas.
    if let Some(gas) = t.body.policy_gas() {
        if t.gas_limit < gas {
            return Err(TxError::IntrinsicGasTooLow {
                gas_limit: t.gas_limit,
                intrinsic: gas,
            });
        }
        return Ok(gas);
    }
    if let TxBody::Validator(op) = &t.body {
        let gas = op.gas();
        if t.gas_limit < gas {
            return Err(TxError::IntrinsicGasTooLow {
                gas_limit: t.gas_limit,
                intrinsic: gas,
            });
        }
        return Ok(gas);
    }
    let Some(env) = tx_env(t, chain_id) else {
        let proof = match &t.body {
            TxBody::Revive { proof } | TxBody::Unflag { proof } => proof.len(),
            _ => 0,
        };
        let intrinsic = keel_pruning::revival_gas(proof);
        if t.gas_limit < intrinsic {
            return Err(TxError::IntrinsicGasTooLow {
                gas_limit: t.gas_limit,
                intrinsic,
            });
        }
        return Ok(intrinsic);
    };
    let cfg = cfg_env(chain_id);
    let gas = validate_initial_tx_gas_with_gas_params(
        &env,
        Cfg::spec(&cfg),
        Cfg::gas_params(&cfg),
        Cfg::is_eip7623_disabled(&cfg),
        Cfg::is_amsterdam_eip8037_enabled(&cfg),
        Cfg::tx_gas_limit_cap(&cfg),
        None,
    );
    match gas {
        Ok(gas) => Ok(gas.initial_total_gas().max(gas.floor_gas())),
        // Anything else revm refuses here is a limit the caller checks first (the gas cap).
        Err(invalid) => Err(
            intrinsic_gas_refusal(&invalid).unwrap_or(TxError::GasLimitTooHigh {
                gas_limit: t.gas_limit,
                block_gas_limit: MAX_TX_GAS,
            }),
        ),
    }
}

/// revm's "gas limit under the intrinsic gas (or the EIP-7623 floor)" as keel's typed error;
/// `None` for any other refusal. Admission and execution map it through this one place.
pub fn intrinsic_gas_refusal(invalid: &InvalidTransaction) -> Option<TxError> {
    match *invalid {
        InvalidTransaction::CallGasCostMoreThanGasLimit {
            initial_gas,
            gas_limit,
        }
        | InvalidTransaction::GasFloorMoreThanGasLimit {
            gas_floor: initial_gas,
            gas_limit,
        } => Some(TxError::IntrinsicGasTooLow {
            gas_limit,
            intrinsic: initial_gas,
        }),
        _ => None,
    }
}

/// The checks that need no state: chain id, gas limit at most `gas_cap` (the smaller of
/// `MAX_TX_GAS` and the block gas limit), gas price at least `min_gas_price`, gas limit at
/// least the intrinsic gas.
pub fn check_stateless(
    t: &Transaction,
    chain_id: u64,
    min_gas_price: u128,
    gas_cap: u64,
) -> Result<(), TxError> {
    if t.chain_id != chain_id {
        return Err(TxError::WrongChainId {
            expected: chain_id,
            got: t.chain_id,
        });
    }
    if t.gas_limit > gas_cap {
        return Err(TxError::GasLimitTooHigh {
            gas_limit: t.gas_limit,
            block_gas_limit: gas_cap,
        });
    }
    if t.gas_price < min_gas_price {
        return Err(TxError::GasPriceTooLow {
            gas_price: t.gas_price,
            min_gas_price,
        });
    }
    // The policy address takes only policy changes, and the registry's none at all (validator
    // transactions are native): a transfer there, value, or data that is not a valid change
    // would run as a call to an empty account and lose what it sent.
    let (to_policy, to_registry) = match &t.body {
        TxBody::Transfer { to, .. } | TxBody::Call { to, .. } => (
            *to == POLICY_ADDRESS,
            *to == keel_types::validator::REGISTRY_ADDRESS,
        ),
        _ => (false, false),
    };
    if (to_policy && t.body.as_policy_change().is_none()) || to_registry {
        return Err(TxError::Execution {
            code: keel_types::receipt::ExecError::InvalidTransaction,
        });
    }
    check_intrinsic_gas(t, chain_id).map(|_| ())
}
