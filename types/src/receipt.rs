//! Receipts and logs: the outcome of one transaction, identical in shape for both
//! environments.

use crate::address::Address;
use crate::archive::ArchiveProofError;
use crate::encoding::{check_len, Canonical, DecodeError};
use crate::fold::FoldProofError;
use crate::hash::{merkle_root, Domain, Hash};
use crate::limits::{
    MAX_LOGS_PER_TX, MAX_LOG_DATA_BYTES, MAX_LOG_TOPICS, MAX_OUTPUT_BYTES, MAX_RECEIPT_BYTES,
    MAX_TOTAL_LOG_DATA_BYTES, MAX_TX_ERROR_BYTES,
};
use crate::state_key::StateKey;
use crate::U256;
use borsh::{BorshDeserialize, BorshSerialize};

/// An event: up to four 32-byte topics and data, as in the EVM.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Log {
    pub address: Address,
    pub topics: Vec<[u8; 32]>,
    pub data: Vec<u8>,
}

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
#[borsh(use_discriminant = true)]
pub enum TxStatus {
    /// Executed; its effects are in the state.
    Success = 0,
    /// Executed and reverted: only the fee and the nonce bump remain.
    Revert = 1,
    /// Not executed: its sender cannot be charged (bad signature, nonce, balance, gas
    /// bounds, expired sender), so no fee and no nonce bump. Never in a valid block: a block
    /// holding one is refused (docs/execution.md, "Refusals"); simulations still report it.
    Rejected = 2,
}

impl TxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TxStatus::Success => "success",
            TxStatus::Revert => "revert",
            TxStatus::Rejected => "rejected",
        }
    }
}

/// The typed reason a transaction was rejected or failed.
///
/// Receipts are hashed into headers, so every field here is a number, a fixed-size value or
/// one of keel's own codes below — never a dependency's message text (revm, wasmer or
/// wasmparser rewording a message would fork nodes running different versions) and never
/// text of unbounded length (a receipt must decode again within its bounds). The human text
/// is this type's `Display`, computed when shown and never stored. Discriminants are
/// explicit so that adding a variant can never renumber the others.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, thiserror::Error)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum TxError {
    #[error("wrong chain id: expected {expected}, got {got}")]
    WrongChainId { expected: u64, got: u64 } = 0,
    #[error("bad signature")]
    BadSignature = 1,
    #[error("bad nonce: account nonce is {expected}, transaction has {got}")]
    BadNonce { expected: u64, got: u64 } = 2,
    #[error("insufficient balance: need {needed}, have {available}")]
    InsufficientBalance { needed: U256, available: U256 } = 3,
    #[error("gas limit {gas_limit} is below the intrinsic cost {intrinsic}")]
    IntrinsicGasTooLow { gas_limit: u64, intrinsic: u64 } = 4,
    #[error("gas limit {gas_limit} exceeds the block gas limit {block_gas_limit}")]
    GasLimitTooHigh {
        gas_limit: u64,
        block_gas_limit: u64,
    } = 5,
    #[error("gas price {gas_price} is below the minimum {min_gas_price}")]
    GasPriceTooLow {
        gas_price: u128,
        min_gas_price: u128,
    } = 6,
    #[error("out of gas")]
    OutOfGas = 7,
    #[error("execution reverted")]
    Reverted = 8,
    #[error("no contract at {address}")]
    NoContract { address: Address } = 9,
    /// A WASM deploy refused by keel's deploy-time rules (docs/wasm-host-api.md).
    #[error("invalid code: {code}")]
    InvalidCode { code: CodeError } = 10,
    #[error("call depth limit exceeded")]
    CallDepthExceeded = 11,
    #[error("state entry {key} expired in epoch {expired_epoch}; revive it with `keel query proof` then `keel tx revive`")]
    Expired { key: StateKey, expired_epoch: u64 } = 12,
    #[error("invalid revival: {reason}")]
    InvalidRevival { reason: RevivalError } = 13,
    /// An exceptional halt (EVM) or trap (WASM), or a transaction revm refused.
    #[error("execution failed: {code}")]
    Execution { code: ExecError } = 14,
    /// An account policy refused the transaction (docs/policies.md).
    #[error("policy denied: {denial}")]
    PolicyDenied { denial: crate::policy::PolicyDenial } = 15,
    /// A validator transaction the registry refused (docs/validators.md).
    #[error("validator registry: {reason}")]
    Registry { reason: RegistryError } = 16,
}

/// Why the validator registry refused a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, thiserror::Error)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum RegistryError {
    #[error("the key is already registered")]
    AlreadyRegistered = 0,
    #[error("no validator is registered under the key")]
    NotRegistered = 1,
    #[error("only the validator's operator may do this")]
    NotOperator = 2,
    #[error("the proof of possession does not verify for this operator and chain")]
    BadPossession = 3,
    #[error("stake {stake} is below the minimum {min_stake}")]
    BelowMinStake { stake: U256, min_stake: U256 } = 4,
    #[error("the registry is full")]
    RegistryFull = 5,
    #[error("the validator is jailed")]
    Jailed = 6,
    #[error("the validator is leaving")]
    Leaving = 7,
    #[error("unbonding {amount} exceeds the bonded stake {stake}")]
    NotEnoughStake { amount: U256, stake: U256 } = 8,
    #[error("the validator has too many pending unbondings")]
    UnbondingFull = 9,
    #[error("the two votes do not conflict, or a signature does not verify")]
    NotEquivocation = 10,
    #[error("the p2p address is not host:port")]
    BadP2pAddress = 11,
    #[error("zero amount")]
    ZeroAmount = 12,
}

/// Why a WASM module was refused at deploy: keel's own validation rules, each with the
/// bounded numbers that locate it. The module's own text (import and export names) is never
/// copied here: an import is named by its position in the import section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, thiserror::Error)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum CodeError {
    /// Not a WASM module keel accepts (bad binary, failed WASM validation, or a feature keel
    /// does not enable), at this byte offset of the module.
    #[error("not a valid WASM module (offset {offset})")]
    Malformed { offset: u64 } = 0,
    #[error("module is {len_bytes} bytes, the limit is {max_bytes}")]
    TooLarge { len_bytes: u64, max_bytes: u64 } = 1,
    #[error("float instructions and types are not allowed (offset {offset})")]
    FloatsNotAllowed { offset: u64 } = 2,
    /// Import number `index` (0-based, in the import section) is not part of the host API.
    #[error("import #{index} is not part of the host API")]
    DisallowedImport { index: u32 } = 3,
    #[error("import #{index} has the wrong signature")]
    ImportSignature { index: u32 } = 4,
    #[error("import #{index} is not a function (only function imports are allowed)")]
    NonFunctionImport { index: u32 } = 5,
    #[error("{limit}: {count} exceeds the limit {max}")]
    LimitExceeded {
        limit: ModuleLimit,
        count: u64,
        max: u64,
    } = 6,
    #[error(
        "the module must define exactly one memory with a declared maximum <= {max_pages} pages"
    )]
    Memory { max_pages: u64 } = 7,
    #[error(
        "missing or mistyped export `{export}` (must be a function (i32) -> i32, or the memory)"
    )]
    MissingExport { export: RequiredExport } = 8,
    #[error("start functions are not allowed (they would run outside any call frame)")]
    StartFunction = 9,
    #[error("an `if` with block parameters needs an explicit `else` (offset {offset})")]
    IfWithParamsWithoutElse { offset: u64 } = 10,
    /// The module passed validation but the compiler refused it.
    #[error("the module does not compile")]
    CompileFailed = 11,
    /// The WASM deployer's input is not `u32 length ‖ module ‖ args`.
    #[error("deploy input: expected u32 length ‖ module ‖ args")]
    BadDeployInput = 12,
}

/// The module-size rule a [`CodeError::LimitExceeded`] broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, thiserror::Error)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum ModuleLimit {
    #[error("functions")]
    Functions = 0,
    #[error("table elements")]
    TableElements = 1,
    #[error("globals")]
    Globals = 2,
    #[error("data segments")]
    DataSegments = 3,
    #[error("data bytes")]
    DataBytes = 4,
    #[error("locals in one function")]
    LocalsPerFunction = 5,
    #[error("operand stack height in one function")]
    OperandStackPerFunction = 6,
}

/// An export every module must have (or, for the constructor, may have only with the right
/// type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, thiserror::Error)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum RequiredExport {
    #[error("call")]
    Call = 0,
    #[error("deploy")]
    Deploy = 1,
    #[error("memory")]
    Memory = 2,
}

/// A host-function argument a WASM frame got wrong (the frame traps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, thiserror::Error)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum HostArgument {
    #[error("a length over the I/O limit")]
    LengthOverLimit = 0,
    #[error("a negative length")]
    NegativeLength = 1,
    #[error("more than 4 log topics")]
    TooManyTopics = 2,
    #[error("a return data range out of bounds")]
    ReturnDataOutOfBounds = 3,
}

/// How execution failed: a WASM trap, an EVM exceptional halt (mapped from revm's
/// `HaltReason` variant by variant, never from its text), or a transaction revm refused
/// before running it. Out of gas and call depth have their own [`TxError`] variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, thiserror::Error)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum ExecError {
    // WASM traps (0..32).
    #[error("wasm trap: unreachable")]
    WasmUnreachable = 0,
    #[error("wasm trap: memory access out of bounds")]
    WasmMemoryOutOfBounds = 1,
    #[error("wasm trap: table access out of bounds")]
    WasmTableOutOfBounds = 2,
    #[error("wasm trap: indirect call to a null table entry")]
    WasmIndirectCallToNull = 3,
    #[error("wasm trap: indirect call with the wrong signature")]
    WasmBadSignature = 4,
    #[error("wasm trap: integer overflow or division by zero")]
    WasmIntegerOverflowOrDivideByZero = 5,
    #[error("wasm trap: state change in a static call")]
    WasmStaticStateChange = 6,
    #[error("wasm trap: host function called with {argument}")]
    WasmBadHostArgument { argument: HostArgument } = 7,
    /// The module could not be instantiated for the frame.
    #[error("wasm trap: instantiation failed")]
    WasmInstantiate = 8,
    /// A deployed module that does not compile on this call (its frame fails).
    #[error("wasm trap: the module does not compile")]
    WasmCompileFailed = 9,
    /// A trap wasmer reported that keel does not classify further.
    #[error("wasm trap")]
    WasmOther = 10,
    // EVM exceptional halts (32..64), named as revm's `HaltReason`.
    #[error("opcode not found")]
    OpcodeNotFound = 32,
    #[error("invalid 0xFE opcode")]
    InvalidFEOpcode = 33,
    #[error("invalid jump destination")]
    InvalidJump = 34,
    #[error("feature or opcode not activated")]
    NotActivated = 35,
    #[error("stack underflow")]
    StackUnderflow = 36,
    #[error("stack overflow")]
    StackOverflow = 37,
    #[error("out of offset")]
    OutOfOffset = 38,
    #[error("create collision")]
    CreateCollision = 39,
    /// A precompile failed (its message, if any, is not kept).
    #[error("precompile error")]
    PrecompileError = 40,
    #[error("nonce overflow")]
    NonceOverflow = 41,
    #[error("create contract size limit")]
    CreateContractSizeLimit = 42,
    #[error("create contract starting with 0xEF")]
    CreateContractStartingWithEF = 43,
    #[error("create initcode size limit")]
    CreateInitCodeSizeLimit = 44,
    #[error("overflow payment")]
    OverflowPayment = 45,
    #[error("state change during static call")]
    StateChangeDuringStaticCall = 46,
    #[error("call not allowed inside static call")]
    CallNotAllowedInsideStatic = 47,
    #[error("out of funds")]
    OutOfFunds = 48,
    // Refused by revm before execution (64..).
    /// Any other refusal of revm's transaction checks (keel's own checks run first and give
    /// the specific variants of [`TxError`]).
    #[error("transaction refused by the EVM's checks")]
    InvalidTransaction = 64,
}

/// Why a revival was refused. Each names what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, thiserror::Error)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum RevivalError {
    #[error("the revival proof does not decode: {code}")]
    Malformed { code: ProofDecodeError } = 0,
    #[error("state expiry is off on this chain (genesis expiry_epochs = 0)")]
    ExpiryOff = 1,
    #[error("{key} is live; there is nothing to revive (a second revival, or a newer value)")]
    AlreadyLive { key: StateKey } = 2,
    #[error("{key} is not expired (it does not exist, or was deleted)")]
    NotExpired { key: StateKey } = 3,
    #[error("stale version: {key} last expired in epoch {latest_epoch} (archive leaf {latest_leaf}); the proof is for epoch {proof_epoch} leaf {proof_leaf}. Fetch a fresh proof")]
    StaleVersion {
        key: StateKey,
        latest_epoch: u64,
        latest_leaf: u64,
        proof_epoch: u64,
        proof_leaf: u64,
    } = 4,
    #[error(
        "no archive is sealed for epoch {sealed_epoch} yet (archives seal when their epoch ends)"
    )]
    UnsealedEpoch { sealed_epoch: u64 } = 5,
    #[error("the proof does not hold against the archive sealed in epoch {sealed_epoch}: {code}")]
    BadProof {
        sealed_epoch: u64,
        code: ArchiveProofCode,
    } = 6,
    /// The entry's stub was folded out of the tree and the fold proof does not show that this
    /// is the latest folded version (a stale version, or a forged page proof).
    #[error("the fold proof against fold page {page} does not hold: {code}. Fetch a fresh proof with `keel query proof`")]
    BadFoldProof { page: u64, code: FoldProofCode } = 7,
    /// An unflag of a key that is archived (its stub is in the tree, or a page holds it).
    #[error("{key} is archived, not a filter false positive: revive it (`keel query proof`, then `keel tx revive`)")]
    Archived { key: StateKey } = 8,
}

/// Why a revival or unflag proof did not decode (the shape of [`DecodeError`], without its
/// text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, thiserror::Error)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum ProofDecodeError {
    #[error("empty")]
    Empty = 0,
    #[error("too large")]
    TooLarge = 1,
    #[error("unknown encoding version {got}")]
    UnknownVersion { got: u8 } = 2,
    #[error("truncated")]
    Truncated = 3,
    #[error("trailing bytes")]
    TrailingBytes = 4,
    #[error("malformed")]
    Malformed = 5,
    #[error("a field over its bound")]
    FieldTooLarge = 6,
    #[error("an invalid field")]
    InvalidField = 7,
}

impl From<&DecodeError> for ProofDecodeError {
    fn from(e: &DecodeError) -> Self {
        match e {
            DecodeError::Empty { .. } => ProofDecodeError::Empty,
            DecodeError::TooLarge { .. } => ProofDecodeError::TooLarge,
            DecodeError::UnknownVersion { got, .. } => {
                ProofDecodeError::UnknownVersion { got: *got }
            }
            DecodeError::Truncated { .. } => ProofDecodeError::Truncated,
            DecodeError::TrailingBytes { .. } => ProofDecodeError::TrailingBytes,
            DecodeError::Malformed { .. } => ProofDecodeError::Malformed,
            DecodeError::FieldTooLarge { .. } => ProofDecodeError::FieldTooLarge,
            DecodeError::InvalidField { .. } => ProofDecodeError::InvalidField,
        }
    }
}

/// Why an archive inclusion proof does not hold (the shape of [`ArchiveProofError`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, thiserror::Error)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum ArchiveProofCode {
    #[error("the leaf is outside the archive")]
    OutOfRange = 0,
    #[error("the proof has the wrong shape for the archive")]
    Shape = 1,
    #[error("the proof does not reproduce the archive root")]
    RootMismatch = 2,
}

impl From<&ArchiveProofError> for ArchiveProofCode {
    fn from(e: &ArchiveProofError) -> Self {
        match e {
            ArchiveProofError::OutOfRange { .. } => ArchiveProofCode::OutOfRange,
            ArchiveProofError::Shape { .. } => ArchiveProofCode::Shape,
            ArchiveProofError::RootMismatch => ArchiveProofCode::RootMismatch,
        }
    }
}

/// Why the fold part of a revival or unflag does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, thiserror::Error)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum FoldProofCode {
    #[error("no such fold page")]
    NoSuchPage = 0,
    #[error("the page leaf is not this key's archived version")]
    WrongVersion = 1,
    /// A page leaf's path does not reproduce the page's root.
    #[error("a page leaf proof does not hold ({code})")]
    LeafPath { code: ArchiveProofCode } = 2,
    /// The two leaves of an absence proof do not bracket the key.
    #[error("the absence proof does not bracket the key")]
    NotBracketing = 3,
    #[error("this page flags the key and the proof does not show it does not hold it")]
    MissingAbsence = 4,
    #[error("an absence proof for a page that does not flag the key")]
    ExtraAbsence = 5,
}

impl From<&FoldProofError> for FoldProofCode {
    fn from(e: &FoldProofError) -> Self {
        match e {
            FoldProofError::Path { source, .. } => FoldProofCode::LeafPath {
                code: source.into(),
            },
            FoldProofError::NotBracketing(_) => FoldProofCode::NotBracketing,
        }
    }
}

/// The outcome of one transaction.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Receipt {
    pub tx_hash: Hash,
    pub status: TxStatus,
    pub gas_used: u64,
    pub output: Vec<u8>,
    pub logs: Vec<Log>,
    pub contract_address: Option<Address>,
    pub error: Option<TxError>,
}

impl Receipt {
    pub fn hash(&self) -> Hash {
        Hash::digest(Domain::Receipt, &self.encode())
    }
}

impl Canonical for Receipt {
    const KIND: &'static str = "Receipt";
    /// 2: errors are typed codes (no free text) and keys are `StateKey`s.
    const VERSION: u8 = 2;
    const MAX_ENCODED_BYTES: usize = MAX_RECEIPT_BYTES;

    fn validate(&self) -> Result<(), DecodeError> {
        check_len(Self::KIND, "output", self.output.len(), MAX_OUTPUT_BYTES)?;
        check_len(Self::KIND, "logs", self.logs.len(), MAX_LOGS_PER_TX)?;
        let mut total = 0usize;
        for log in &self.logs {
            check_len(Self::KIND, "log.topics", log.topics.len(), MAX_LOG_TOPICS)?;
            check_len(Self::KIND, "log.data", log.data.len(), MAX_LOG_DATA_BYTES)?;
            total += log.data.len();
        }
        check_len(
            Self::KIND,
            "total log data",
            total,
            MAX_TOTAL_LOG_DATA_BYTES,
        )?;
        if let Some(error) = &self.error {
            // Bounded by construction (no field has a variable length); checked anyway so
            // that a future variable-length field cannot slip past the bound.
            let len = borsh::object_length(error).unwrap_or(usize::MAX);
            check_len(Self::KIND, "error", len, MAX_TX_ERROR_BYTES)?;
        }
        Ok(())
    }

    /// The canonical bytes, which always decode again: a receipt outside its bounds is a bug
    /// in whoever built it, caught here in tests (a block whose receipts do not decode
    /// would halt every node that stores it).
    fn encode(&self) -> Vec<u8> {
        debug_assert_eq!(self.validate(), Ok(()), "encoding an undecodable receipt");
        encode_unchecked(self)
    }
}

/// The version byte and the borsh body, as `Canonical::encode` writes them.
fn encode_unchecked<T: Canonical>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(T::VERSION);
    // Writing into a Vec cannot fail; borsh only errors on I/O.
    BorshSerialize::serialize(value, &mut out).expect("borsh into Vec<u8> is infallible");
    out
}

/// Merkle root of a block's receipts in transaction order.
pub fn receipts_root(receipts: &[Receipt]) -> Hash {
    let leaves: Vec<Hash> = receipts.iter().map(Receipt::hash).collect();
    merkle_root(&leaves)
}

/// A block's receipts, stored and served together.
#[derive(Debug, Clone, PartialEq, Eq, Default, BorshSerialize, BorshDeserialize)]
pub struct BlockReceipts(pub Vec<Receipt>);

impl Canonical for BlockReceipts {
    const KIND: &'static str = "BlockReceipts";
    /// 2: the receipts' version 2 (typed errors).
    const VERSION: u8 = 2;
    // A block's receipts are bounded by its gas; this caps what one read can allocate.
    const MAX_ENCODED_BYTES: usize = 256 * 1024 * 1024;

    fn validate(&self) -> Result<(), DecodeError> {
        check_len(
            Self::KIND,
            "receipts",
            self.0.len(),
            crate::limits::MAX_BLOCK_TXS,
        )?;
        self.0.iter().try_for_each(Canonical::validate)
    }

    /// As [`Receipt::encode`]: never bytes that `decode` rejects.
    fn encode(&self) -> Vec<u8> {
        debug_assert_eq!(self.validate(), Ok(()), "encoding undecodable receipts");
        encode_unchecked(self)
    }
}
