//! The simulated agents: funded senders that move native balance to a pool of recipients
//! (recipients then go untouched and expire), and two deployers that deploy the Token
//! contract in each environment (Solidity bytecode and the C-built WASM module) and move
//! tokens with calls. Each sender keeps at most one transaction in flight, so its nonces
//! follow the chain; every transaction goes to every running validator's mempool, as gossip
//! would carry it.

use super::{CHAIN_ID, GAS_PRICE};
use keel_state::{StateView, StateViewExt};
use keel_types::{Address, Env, Hash, SecretKey, SignedTransaction, Transaction, TxBody, U256};
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
        })
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
