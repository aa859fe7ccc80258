//! Every size bound on untrusted input, in one place, so the limits are documented once and
//! decoders, the mempool and RPC enforce the same numbers.

/// Largest contract code (EVM creation bytecode or a WASM module) a deploy may carry.
/// Stylus caps uncompressed WASM at 128 KiB; EIP-3860 caps EVM initcode at 48 KiB.
pub const MAX_CODE_BYTES: usize = 128 * 1024;
/// Largest call data or constructor argument blob.
pub const MAX_CALLDATA_BYTES: usize = 128 * 1024;
/// Largest revival proof payload: the archived entry (up to [`MAX_STATE_VALUE_BYTES`], code
/// included) plus an archive path (at most 2 × 64 hashes, 4 KiB) and framing, plus the fold
/// proof of an entry folded out of the tree (`fold::MAX_FOLDED_REVIVAL_BYTES`, ≤ 32 KiB).
pub const MAX_PROOF_BYTES: usize = MAX_STATE_VALUE_BYTES + 40 * 1024;
/// Largest encoded signed transaction (a maximal deploy plus its header fields).
pub const MAX_TX_BYTES: usize = MAX_CODE_BYTES + MAX_CALLDATA_BYTES + 1024;
/// Most transactions in one block.
pub const MAX_BLOCK_TXS: usize = 10_000;
/// Largest encoded block.
pub const MAX_BLOCK_BYTES: usize = 16 * 1024 * 1024;
/// Most topics on one log, as in the EVM's LOG0..LOG4.
pub const MAX_LOG_TOPICS: usize = 4;
/// Most gas one transaction may use: EIP-7825's cap (Osaka), which also bounds what one
/// transaction can emit, since every log costs gas.
pub const MAX_TX_GAS: u64 = 1 << 24;
/// Gas a block may use in total (every transaction's limit counts against it).
pub const BLOCK_GAS_LIMIT: u64 = 60_000_000;
/// Largest data payload of one log: what `MAX_TX_GAS` buys at 8 gas per byte.
pub const MAX_LOG_DATA_BYTES: usize = (MAX_TX_GAS / 8) as usize;
/// Most logs one transaction may emit: what `MAX_TX_GAS` buys at 375 gas per log.
pub const MAX_LOGS_PER_TX: usize = (MAX_TX_GAS / 375) as usize + 1;
/// Largest return or revert data kept in a receipt (longer output is truncated there).
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;
/// Most log data (sum over all logs) one transaction may emit (8 gas per byte).
pub const MAX_TOTAL_LOG_DATA_BYTES: usize = (MAX_TX_GAS / 8) as usize;
/// Largest encoded receipt: output, all log data, and per-log framing (address, four topics,
/// length prefixes).
pub const MAX_RECEIPT_BYTES: usize =
    MAX_OUTPUT_BYTES + MAX_TOTAL_LOG_DATA_BYTES + MAX_LOGS_PER_TX * 192 + 4096;
/// Largest value stored under one state key (account records and slots are small; code is
/// bounded by [`MAX_CODE_BYTES`]).
pub const MAX_STATE_VALUE_BYTES: usize = MAX_CODE_BYTES + 64;
/// Largest borsh encoding of a receipt's error (`TxError`). Errors carry only numbers,
/// fixed-size keys and keel's own codes — no text — so the largest is a policy denial
/// at 96 bytes; this leaves room to grow and stays far inside the 4 KiB of
/// framing [`MAX_RECEIPT_BYTES`] allows. types/tests/encoding.rs encodes every variant at
/// its largest against it.
pub const MAX_TX_ERROR_BYTES: usize = 256;
/// Most validators in one epoch's set.
pub const MAX_VALIDATORS: usize = 256;
/// Largest encoded consensus certificate.
pub const MAX_CERTIFICATE_BYTES: usize = 64 + MAX_VALIDATORS * (2 + 64) + 64;
