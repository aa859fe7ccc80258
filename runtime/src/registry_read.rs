//! The validator registry as contracts see it: a read-only precompile at
//! `keel_types::validator::REGISTRY_ADDRESS`, reachable from the EVM by `CALL`/`STATICCALL`
//! and from WASM by `call`/`static_call` to that address (docs/validators.md). It reads the
//! registry through the transaction's state view — the same reads, recorded the same way,
//! as the executor's own — and writes nothing: no opcode or host call can change the
//! registry, only validator transactions.

use keel_exec_evm::revm::interpreter::{Gas, InstructionResult, InterpreterResult};
use keel_exec_evm::revm::primitives::Bytes;
use keel_state::{StateError, StateView};
use keel_types::eth::keccak256;
use keel_types::validator::ValidatorStatus;
use keel_types::PublicKey;

/// Gas of one registry read (a cold account access), plus [`REGISTRY_KEY_GAS`] per
/// registered key for the calls that decode the key list (up to 1,024 keys).
pub const REGISTRY_READ_GAS: u64 = 2_600;
/// Gas per registered key of `validatorCount` and `validatorAt` (a 32-byte word copied
/// and decoded, as `CALLDATACOPY` prices a word).
pub const REGISTRY_KEY_GAS: u64 = 3;

/// `getValidator(bytes32 key)` → `(bool registered, address operator, uint256 stake,
/// uint8 status, uint64 changedEpoch, bytes32 nextKey)`; status 0 candidate, 1 active,
/// 2 leaving, 3 jailed; all zero when the key is not registered.
pub const GET_VALIDATOR: &str = "getValidator(bytes32)";
/// `validatorCount()` → `uint256`: registered keys, whatever their status.
pub const VALIDATOR_COUNT: &str = "validatorCount()";
/// `validatorAt(uint256 index)` → `bytes32`: the `index`-th registered key in ascending
/// order; reverts past the end.
pub const VALIDATOR_AT: &str = "validatorAt(uint256)";

fn selector(signature: &str) -> [u8; 4] {
    let hash = keccak256(signature.as_bytes());
    [hash[0], hash[1], hash[2], hash[3]]
}

fn word_u64(v: u64) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[24..].copy_from_slice(&v.to_be_bytes());
    w
}

/// What one call answers — `Some(output)`, or `None` for a revert (unknown selector,
/// malformed input, an index past the end) — and the gas it costs beyond
/// [`REGISTRY_READ_GAS`]; `Err` when the node's state read failed.
fn answer(view: &dyn StateView, input: &[u8]) -> Result<(Option<Vec<u8>>, u64), StateError> {
    let Some((sel, args)) = input.split_first_chunk::<4>() else {
        return Ok((None, 0));
    };
    if *sel == selector(GET_VALIDATOR) && args.len() == 32 {
        let mut key = [0u8; 32];
        key.copy_from_slice(args);
        let mut out = vec![0u8; 6 * 32];
        if let Some(record) = crate::validators::read_record(view, &PublicKey(key))? {
            out[31] = 1;
            out[32 + 12..64].copy_from_slice(&record.operator.0);
            out[64..96].copy_from_slice(&record.stake.to_be_bytes::<32>());
            out[96 + 31] = record.status as u8;
            out[128..160].copy_from_slice(&word_u64(record.changed_epoch));
            if let Some(next) = record.next_key {
                out[160..192].copy_from_slice(&next.0);
            }
        }
        return Ok((Some(out), 0));
    }
    if *sel == selector(VALIDATOR_COUNT) && args.is_empty() {
        let registry = crate::validators::read_registry(view)?;
        let gas = REGISTRY_KEY_GAS * registry.0.len() as u64;
        return Ok((Some(word_u64(registry.0.len() as u64).to_vec()), gas));
    }
    if *sel == selector(VALIDATOR_AT) && args.len() == 32 {
        // An index above u64 is past any registry's end.
        if args[..24].iter().any(|b| *b != 0) {
            return Ok((None, 0));
        }
        let index = u64::from_be_bytes(args[24..].try_into().unwrap_or([0xff; 8]));
        let registry = crate::validators::read_registry(view)?;
        let gas = REGISTRY_KEY_GAS * registry.0.len() as u64;
        let key = usize::try_from(index)
            .ok()
            .and_then(|i| registry.0.get(i))
            .map(|k| k.0.to_vec());
        return Ok((key, gas));
    }
    Ok((None, 0))
}

/// Runs one call to the registry address. Value cannot be sent (it would be lost): such a
/// call reverts, and so the transfer is undone. A call that reverts still pays
/// [`REGISTRY_READ_GAS`]; one with less gas runs out.
pub fn run(
    view: &dyn StateView,
    input: &[u8],
    sends_value: bool,
    gas_limit: u64,
) -> Result<InterpreterResult, String> {
    let mut gas = Gas::new(gas_limit);
    if !gas.record_regular_cost(REGISTRY_READ_GAS) {
        gas.spend_all();
        return Ok(InterpreterResult::new(
            InstructionResult::OutOfGas,
            Bytes::new(),
            gas,
        ));
    }
    let answer = if sends_value {
        None
    } else {
        let (answer, extra) = answer(view, input).map_err(|e| e.to_string())?;
        if !gas.record_regular_cost(extra) {
            gas.spend_all();
            return Ok(InterpreterResult::new(
                InstructionResult::OutOfGas,
                Bytes::new(),
                gas,
            ));
        }
        answer
    };
    Ok(match answer {
        Some(out) => InterpreterResult::new(InstructionResult::Return, Bytes::from(out), gas),
        None => InterpreterResult::new(InstructionResult::Revert, Bytes::new(), gas),
    })
}

// The status numbers are part of the interface (docs/validators.md).
const _: () = {
    assert!(ValidatorStatus::Candidate as u8 == 0);
    assert!(ValidatorStatus::Active as u8 == 1);
    assert!(ValidatorStatus::Leaving as u8 == 2);
    assert!(ValidatorStatus::Jailed as u8 == 3);
};
