//! The simulated agents: funded senders that move native balance to a pool of recipients
//! (recipients then go untouched and expire), and two deployers that deploy the Token
//! contract in each environment (Solidity bytecode and the C-built WASM module) and move
//! tokens with calls. Each sender keeps at most one transaction in flight, so its nonces
//! follow the chain; every transaction goes to every running validator's mempool, as gossip
//! would carry it.

use super::{CHAIN_ID, GAS_PRICE};
use keel_state::{StateView, StateViewExt};
use keel_types::{
    Address, Env, Hash, PublicKey, SecretKey, SignedTransaction, SignedVote, Transaction, TxBody,
    U256,
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Native-transfer senders.
pub const SENDERS: u8 = 6;
/// Recipients the senders pay: few enough that some are paid again, most go untouched.
const RECIPIENTS: u8 = 24;
/// A transaction not on chain after this long (ms) is given up: its sender starts again
/// from the chain's nonce.
const INFLIGHT_TIMEOUT_MS: u64 = 1_000;
/// Token supply minted to each deployer.
const TOKEN_SUPPLY: u64 = 1_000_000_000;
const TRANSFER_GAS: u64 = 21_000;
const DEPLOY_GAS: u64 = 10_000_000;
const CALL_GAS: u64 = 2_000_000;
/// `transfer(address,uint256)`.
const TRANSFER_SELECTOR: [u8; 4] = [0xa9, 0x05, 0x9c, 0xbb];

/// What a transaction was for, to count what the chain executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Transfer,
    Deploy(Env),
    TokenCall(Env),
    /// A validator operator's bond or unbond.
    Stake,
    /// An equivocation report.
    Report,
    /// The newcomer's registration or its leave.
    Membership,
}

/// A validator that joins a running chain and leaves it again: registered by its own
/// operator with a stake, a member of the set from a boundary on, then leaving. No node
/// runs its key, so while a member it is silent (its stake is kept small: with the one
/// faulty genesis validator, under a third of the power).
pub struct Newcomer {
    operator: Agent,
    key: SecretKey,
    stake: U256,
    /// Registers from this time (ms) on.
    at_ms: u64,
    /// Whether its record has been seen, as `active`, and gone from `active` after the
    /// leave.
    pub registered: bool,
    pub active: bool,
    pub left: bool,
}

/// The newcomer's consensus key (outside the genesis validators' keys).
pub fn newcomer_key() -> SecretKey {
    SecretKey::from_seed([0xc7; 32])
}

/// Gas of a validator transaction.
const VALIDATOR_GAS: u64 = keel_types::validator::EQUIVOCATION_REPORT_GAS;
/// Each operator's balance at genesis: bonds come out of it.
pub const OPERATOR_FUNDS: u128 = 10_000 * 10u128.pow(18);
/// One token (10¹⁸ wei): bonds and unbonds move whole tokens.
const TOKEN: u128 = 10u128.pow(18);

/// The operator key of validator `i` (funded at genesis, named its operator).
pub fn operator_key(i: usize) -> SecretKey {
    SecretKey::from_seed([0xe0 + u8::try_from(i).unwrap_or(0); 32])
}

/// The package directory, read at run time (cargo sets it for the test process).
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        std::path::PathBuf::from,
    )
}

/// A checked-in contract artifact (contracts/build).
fn artifact(name: &str) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(manifest_dir().join("../contracts/build").join(name))?;
    Ok(if name.ends_with(".bin") {
        hex::decode(String::from_utf8(bytes)?.trim())?
    } else {
        bytes
    })
}

fn word(bytes: &[u8]) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[32 - bytes.len()..].copy_from_slice(bytes);
    w
}

struct Agent {
    key: SecretKey,
    /// The transaction in flight: its nonce, hash and when it was sent.
    inflight: Option<(u64, Hash, u64)>,
}

/// All agents of a run.
pub struct Workload {
    senders: Vec<Agent>,
    /// The EVM deployer, then the WASM one.
    deployers: [Agent; 2],
    code: [Vec<u8>; 2],
    /// Token contracts, once their deploys are on chain.
    pub tokens: [Option<Address>; 2],
    /// Every transaction sent, by hash.
    pub sent: BTreeMap<Hash, Kind>,
    /// The next sender's turn.
    turn: usize,
    /// Validator operators, by validator index.
    operators: Vec<Agent>,
    /// The equivocation report still to send: the validator, its consensus key, and two
    /// conflicting votes that key really signed.
    pending_report: Option<(usize, PublicKey, SignedVote, SignedVote)>,
    /// A validator joining and leaving the running chain.
    pub newcomer: Option<Newcomer>,
}

impl Workload {
    pub fn new() -> anyhow::Result<Workload> {
        let agent = |seed: u8| Agent {
            key: SecretKey::from_seed([seed; 32]),
            inflight: None,
        };
        Ok(Workload {
            senders: (0..SENDERS).map(|i| agent(0x80 + i)).collect(),
            deployers: [agent(0xd0), agent(0xd1)],
            code: [artifact("Token.bin")?, artifact("token.wasm")?],
            tokens: [None, None],
            sent: BTreeMap::new(),
            turn: 0,
            operators: Vec::new(),
            pending_report: None,
            newcomer: None,
        })
    }

    /// Adds the operators of `n` validators, to bond and unbond.
    pub fn with_operators(mut self, n: usize) -> Workload {
        self.operators = (0..n)
            .map(|i| Agent {
                key: operator_key(i),
                inflight: None,
            })
            .collect();
        self
    }

    /// Adds a newcomer whose operator is `operator_key(operators)` (funded at genesis
    /// beside the validators' operators): it registers `stake_tokens` from `at_ms` on,
    /// then leaves once active.
    pub fn with_newcomer(mut self, at_ms: u64, stake_tokens: u64) -> Workload {
        self.newcomer = Some(Newcomer {
            operator: Agent {
                key: operator_key(self.operators.len()),
                inflight: None,
            },
            key: newcomer_key(),
            stake: U256::from(TOKEN) * U256::from(stake_tokens),
            at_ms,
            registered: false,
            active: false,
            left: false,
        });
        self
    }

    /// The newcomer's next step, if it is due: register, then (once active) leave.
    fn newcomer_op(&mut self, state: &dyn StateView, now_ms: u64) -> Option<SignedTransaction> {
        use keel_types::validator::{possession_message, ValidatorStatus, ValidatorTx};
        let n = self.newcomer.as_mut().filter(|n| now_ms >= n.at_ms)?;
        let key = n.key.public_key();
        let record = keel_runtime::validators::read_record(state, &key)
            .ok()
            .flatten();
        n.registered |= record.is_some();
        let status = record.map(|r| r.status);
        n.active |= status == Some(ValidatorStatus::Active);
        n.left |= n.active && status != Some(ValidatorStatus::Active);
        let body = match status {
            None if !n.registered => {
                let operator = Address::from_public_key(&n.operator.key.public_key());
                let possession = n
                    .key
                    .sign(&possession_message(super::CHAIN_ID, &operator, &key).0);
                ValidatorTx::Register {
                    key,
                    possession,
                    p2p: "127.0.0.1:9".into(),
                    stake: n.stake,
                }
            }
            Some(ValidatorStatus::Active) => ValidatorTx::Leave { key },
            _ => return None,
        };
        let tx = send(
            &mut n.operator,
            state,
            now_ms,
            VALIDATOR_GAS,
            TxBody::Validator(body),
        )?;
        self.sent.insert(tx.hash(), Kind::Membership);
        Some(tx)
    }

    /// Sends, at the next turn (and again until the chain has jailed it), a report that
    /// validator `index` signed the conflicting votes `first` and `second`.
    pub fn report(&mut self, index: usize, first: SignedVote, second: SignedVote) {
        let key = super::validator_key(index).public_key();
        self.pending_report = Some((index, key, first, second));
    }

    /// With operators: one random operator bonds or unbonds a few tokens (keeping at least
    /// the minimum stake), and a pending equivocation report goes out (sent by another
    /// validator's operator).
    pub fn validator_ops(
        &mut self,
        rng: &mut ChaCha8Rng,
        state: &dyn StateView,
        now_ms: u64,
    ) -> Vec<SignedTransaction> {
        use keel_types::validator::ValidatorTx;
        let mut out = Vec::new();
        if self.operators.is_empty() {
            return out;
        }
        let reported = self.pending_report.as_ref().is_some_and(|(_, key, ..)| {
            keel_runtime::validators::read_record(state, key)
                .ok()
                .flatten()
                .is_some_and(|r| r.status == keel_types::validator::ValidatorStatus::Jailed)
        });
        if reported {
            self.pending_report = None;
        }
        if let Some((index, key, first, second)) = self.pending_report {
            let body = TxBody::Validator(ValidatorTx::ReportEquivocation { key, first, second });
            let reporter = (index + 1) % self.operators.len();
            if let Some(tx) = send(
                &mut self.operators[reporter],
                state,
                now_ms,
                VALIDATOR_GAS,
                body,
            ) {
                self.sent.insert(tx.hash(), Kind::Report);
                out.push(tx);
            }
            return out;
        }
        out.extend(self.newcomer_op(state, now_ms));
        if !rng.gen_bool(0.3) {
            return out;
        }
        let i = rng.gen_range(0..self.operators.len());
        let key = super::validator_key(i).public_key();
        let Some(record) = keel_runtime::validators::read_record(state, &key)
            .ok()
            .flatten()
        else {
            return out;
        };
        let min = keel_types::validator::DEFAULT_MIN_STAKE;
        let tokens = U256::from(TOKEN) * U256::from(rng.gen_range(1u64..=300));
        let body = if rng.gen_bool(0.5) && record.stake >= min + tokens {
            ValidatorTx::Unbond {
                key,
                amount: tokens,
            }
        } else {
            ValidatorTx::Bond {
                key,
                amount: tokens,
            }
        };
        if let Some(tx) = send(
            &mut self.operators[i],
            state,
            now_ms,
            VALIDATOR_GAS,
            TxBody::Validator(body),
        ) {
            self.sent.insert(tx.hash(), Kind::Stake);
            out.push(tx);
        }
        out
    }

    /// Every funded key (for genesis).
    pub fn funded(&self) -> Vec<SecretKey> {
        self.senders
            .iter()
            .chain(self.deployers.iter())
            .map(|a| a.key.clone())
            .collect()
    }

    /// The next transactions to send at `now_ms`, given a validator's latest state.
    pub fn next(
        &mut self,
        rng: &mut ChaCha8Rng,
        state: &dyn StateView,
        now_ms: u64,
    ) -> Vec<SignedTransaction> {
        let mut out = Vec::new();
        // Round robin, so every sender touches its account often enough not to expire.
        let i = self.turn % self.senders.len();
        self.turn += 1;
        let mut to = [0x5e; 20];
        to[19] = rng.gen_range(0..RECIPIENTS);
        let to = Address(to);
        if let Some(tx) = send(
            &mut self.senders[i],
            state,
            now_ms,
            TRANSFER_GAS,
            TxBody::Transfer {
                to,
                amount: U256::from(1u64),
            },
        ) {
            self.sent.insert(tx.hash(), Kind::Transfer);
            out.push(tx);
        }
        for (e, env) in [Env::Evm, Env::Wasm].into_iter().enumerate() {
            let (gas, body, kind) = match self.tokens[e] {
                None => (
                    DEPLOY_GAS,
                    TxBody::Deploy {
                        env,
                        code: self.code[e].clone(),
                        args: word(&TOKEN_SUPPLY.to_be_bytes()).to_vec(),
                        value: U256::ZERO,
                    },
                    Kind::Deploy(env),
                ),
                Some(token) => {
                    let mut data = TRANSFER_SELECTOR.to_vec();
                    data.extend(word(&to.0));
                    data.extend(word(&[1]));
                    (
                        CALL_GAS,
                        TxBody::Call {
                            to: token,
                            data,
                            value: U256::ZERO,
                        },
                        Kind::TokenCall(env),
                    )
                }
            };
            if let Some(tx) = send(&mut self.deployers[e], state, now_ms, gas, body) {
                self.sent.insert(tx.hash(), kind);
                out.push(tx);
            }
        }
        out
    }

    /// Notes a committed receipt: a token deploy's address.
    pub fn on_receipt(&mut self, receipt: &keel_types::Receipt) {
        if let Some(Kind::Deploy(env)) = self.sent.get(&receipt.tx_hash) {
            let e = usize::from(*env == Env::Wasm);
            if self.tokens[e].is_none() {
                self.tokens[e] = receipt.contract_address;
            }
        }
    }
}

/// `agent`'s next transaction if it has none in flight (or gave up on it): the nonce comes
/// from the chain's state, so a dropped transaction is simply replaced.
fn send(
    agent: &mut Agent,
    state: &dyn StateView,
    now_ms: u64,
    gas_limit: u64,
    body: TxBody,
) -> Option<SignedTransaction> {
    let address = Address::from_public_key(&agent.key.public_key());
    // An expired sender (or a store error) sends nothing: the comparison still covers it.
    let nonce = state.account(&address).ok()?.map_or(0, |a| a.nonce);
    if let Some((sent_nonce, _, at)) = agent.inflight {
        if sent_nonce >= nonce && now_ms < at + INFLIGHT_TIMEOUT_MS {
            return None;
        }
    }
    let tx = Transaction {
        chain_id: CHAIN_ID,
        sender: agent.key.public_key().into(),
        nonce,
        gas_limit,
        gas_price: GAS_PRICE,
        body,
    }
    .sign(&agent.key);
    agent.inflight = Some((nonce, tx.hash(), now_ms));
    Some(tx)
}

/// Two conflicting notarize votes signed with `key` for view 1 of epoch 0: the evidence
/// against a validator that sends nothing (a silent one whose key leaked and signed
/// elsewhere), where none can be caught on the wire.
pub fn signed_conflict(key: &SecretKey) -> (SignedVote, SignedVote) {
    let signed = |block: Hash| {
        let vote = keel_types::Vote {
            chain_id: CHAIN_ID,
            epoch: 0,
            view: 1,
            kind: keel_types::VoteKind::Notarize,
            block,
        };
        SignedVote {
            signature: key.sign(&vote.signing_hash().0),
            vote,
            signer: 0,
        }
    };
    (signed(Hash([1; 32])), signed(Hash([2; 32])))
}
