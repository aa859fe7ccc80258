//! Real, valid encodings for every target: the seed corpus (`fuzz/corpus/<target>`, written
//! by the ignored `generate_corpus` test) and the inputs the regression tests start from.

use crate::{FUZZ_BASE_FEE, FUZZ_CHAIN_ID};
use borsh::BorshSerialize;
use keel_consensus::Message;
use keel_types::archive::{prove, ArchiveAccumulator, ArchiveNodes, RevivalProof};
use keel_types::fold::{
    Absence, FoldedRevival, FoldedStub, PageLeafProof, UnflagProof, MAX_ABSENCES_PER_REVIVAL,
};
use keel_types::receipt::{BlockReceipts, RevivalError};
use keel_types::{
    Address, Block, Canonical, Certificate, Domain, Env, Hash, Header, Log, Receipt, SecretKey,
    SignedTransaction, SignedVote, StateKey, Transaction, TxBody, TxError, TxStatus, Vote,
    VoteKind, U256,
};
use std::collections::BTreeMap;

/// Ethereum transactions for chain 7, signed by the key 0x42…42 (address
/// 0x17c5185167401eD00cF5F5b2fc97D9BBfDb7D025) with eth_account: legacy EIP-155 call and
/// transfer, EIP-2930 with an access list, EIP-1559 transfer and creation, legacy creation.
pub const ETH_TXS: &[&str] = &[
    "f861808203e8825208941111111111111111111111111111111111111111058031a0d77d23645e0f614f4fb9b9ea33f7aed82f6b6590a337db054396a2eb73548835a0675123dd525fbeb832e8eeb88cf6675e2b96f6ff3792fe3626aae32122138e22",
    "f8a7018207d0830186a094222222222222222222222222222222222222222280b844a9059cbb0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000031a00f5d2d82904c2d845b2b9d163018c62246e9ef8c6ea594afa7f344ae73b7a24ca0704fde0e1bd85373e18a90f8a7dbd4f7b241d828453710bdeaed1af7a62c68dd",
    "01f89e07028203e882c35094333333333333333333333333333333333333333301820102f838f7944444444444444444444444444444444444444444e1a0000000000000000000000000000000000000000000000000000000000000000101a0495f9a2518e97ad4b4b7807bc97595bb9a44b609da99a4ecebd40b265b5e88aea078d0d2ecde5b288027b6e67cd836f4bda1b0130a6fdd32a24022ae01cbc81ea5",
    "02f86c070380820bb882ea60945555555555555555555555555555555555555555880de0b6b3a764000080c001a09fe3947da4c50ceb5745d414ff0ca977572e94d4e621b3e5ede4a6d38075cc80a01dbeabc0bd106c498a59ceef6c74b0636656065ad6269f5d237670bf7efa3fb9",
    "02f884070401820bb88307a1208080b36080604052348015600f57600080fd5b50603f80601d6000396000f3fe6080604052600080fdfea164736f6c6343000800000ac080a00eb2e83a780f2c1393abbc859ab387d8a944ccd36988e8432e47fd7ec996f418a05d6297f8d4444921826393f33993c9350f4ace69523a3486359679b054a8088e",
    "f84d058203e882cf0880800031a0148b350c9f77c098068ac0659c6a98cc2545fcdc821b5eed76280280f3103a52a03723edcab921a5ff1a534d2dfd33293586630ccab5f2c8523938cc6db89bad01",
];

/// The address that signed [`ETH_TXS`].
pub const ETH_SIGNER: [u8; 20] = [
    0x17, 0xc5, 0x18, 0x51, 0x67, 0x40, 0x1e, 0xd0, 0x0c, 0xf5, 0xf5, 0xb2, 0xfc, 0x97, 0xd9, 0xbb,
    0xfd, 0xb7, 0xd0, 0x25,
];

/// The WASM contracts of this repository (contracts/build).
pub const WASM_CONTRACTS: &[(&str, &[u8])] = &[
    ("amm", include_bytes!("../../contracts/build/amm.wasm")),
    (
        "compute",
        include_bytes!("../../contracts/build/compute.wasm"),
    ),
    (
        "registry",
        include_bytes!("../../contracts/build/registry.wasm"),
    ),
    (
        "router",
        include_bytes!("../../contracts/build/router.wasm"),
    ),
    ("token", include_bytes!("../../contracts/build/token.wasm")),
];

/// The one validator of the fuzz chain (signs votes and certificates).
pub fn validator_key() -> SecretKey {
    SecretKey::from_seed([1; 32])
}

/// The agent that signs the seed transactions.
pub fn agent_key() -> SecretKey {
    SecretKey::from_seed([2; 32])
}

/// Accounts the RPC target's genesis funds: the agent and the Ethereum signer.
pub fn funded_addresses() -> Vec<Address> {
    vec![
        Address::from_public_key(&agent_key().public_key()),
        Address(ETH_SIGNER),
    ]
}

fn hex_bytes(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .filter_map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// The raw Ethereum envelopes.
pub fn eth_txs() -> Vec<Vec<u8>> {
    ETH_TXS.iter().map(|t| hex_bytes(t)).collect()
}

fn agent(nonce: u64, body: TxBody) -> SignedTransaction {
    Transaction {
        chain_id: FUZZ_CHAIN_ID,
        sender: agent_key().public_key().into(),
        nonce,
        gas_limit: 1_000_000,
        gas_price: 1,
        body,
    }
    .sign(&agent_key())
}

/// A registration of a fresh consensus key by the agent, with a valid possession proof.
fn validator_register() -> TxBody {
    let validator = SecretKey::from_seed([7; 32]);
    let operator = Address::from_public_key(&agent_key().public_key());
    let message = keel_types::validator::possession_message(
        FUZZ_CHAIN_ID,
        &operator,
        &validator.public_key(),
    );
    TxBody::Validator(keel_types::validator::ValidatorTx::Register {
        key: validator.public_key(),
        possession: validator.sign(&message.0),
        p2p: "127.0.0.1:9".into(),
        stake: U256::from(10u64).pow(U256::from(19u64)),
    })
}

/// A report that the genesis validator signed two conflicting notarize votes.
fn equivocation_report() -> TxBody {
    let key = validator_key();
    let signed = |block: u8| {
        let vote = keel_types::Vote {
            chain_id: FUZZ_CHAIN_ID,
            epoch: 0,
            view: 3,
            kind: keel_types::VoteKind::Notarize,
            block: Hash([block; 32]),
        };
        keel_types::SignedVote {
            signature: key.sign(&vote.signing_hash().0),
            vote,
            signer: 0,
        }
    };
    TxBody::Validator(keel_types::validator::ValidatorTx::ReportEquivocation {
        key: key.public_key(),
        first: signed(1),
        second: signed(2),
    })
}

/// One transaction of each body, and an Ethereum one.
pub fn transactions() -> Vec<SignedTransaction> {
    let mut out = vec![
        agent(
            0,
            TxBody::Transfer {
                to: Address([0x11; 20]),
                amount: U256::from(5u64),
            },
        ),
        agent(
            1,
            TxBody::Deploy {
                env: Env::Wasm,
                code: WASM_CONTRACTS[1].1.to_vec(),
                args: vec![1, 2, 3],
                value: U256::ZERO,
            },
        ),
        agent(
            2,
            TxBody::Deploy {
                env: Env::Evm,
                code: hex_bytes("6080604052600080fd"),
                args: Vec::new(),
                value: U256::from(1u64),
            },
        ),
        agent(
            3,
            TxBody::Call {
                to: Address([0x22; 20]),
                data: hex_bytes("a9059cbb00"),
                value: U256::MAX,
            },
        ),
        agent(
            4,
            TxBody::Revive {
                proof: revival_proofs()[0].clone(),
            },
        ),
        agent(
            5,
            TxBody::Unflag {
                proof: unflag_proofs()[0].clone(),
            },
        ),
        agent(
            6,
            TxBody::SetPolicy {
                account: Address([0x33; 20]),
                policy: keel_types::policy::AccountPolicy {
                    envs: Some(vec![Env::Wasm]),
                    targets: Some(vec![keel_types::policy::TargetRule {
                        to: Address([0x22; 20]),
                        selectors: Some(vec![[0xa9, 0x05, 0x9c, 0xbb]]),
                    }]),
                    max_value_per_epoch: Some(U256::from(100u64)),
                    max_txs_per_epoch: Some(3),
                    valid_until: Some(1_000),
                    ..Default::default()
                },
            },
        ),
        agent(
            7,
            TxBody::SetController {
                account: Address([0x33; 20]),
                controller: Some(Address([0x44; 20])),
            },
        ),
        agent(8, validator_register()),
        agent(9, equivocation_report()),
    ];
    for raw in eth_txs().iter().take(2) {
        if let Ok(tx) = keel_types::eth::decode(raw, FUZZ_CHAIN_ID, FUZZ_BASE_FEE) {
            out.push(tx);
        }
    }
    out
}

fn header(height: u64, parent: Hash, transactions: &[SignedTransaction]) -> Header {
    Header {
        chain_id: FUZZ_CHAIN_ID,
        height,
        epoch: height / 16,
        view: height + 1,
        parent_hash: parent,
        proposer: validator_key().public_key(),
        timestamp_ms: 1_700_000_000_000 + height,
        tx_root: keel_types::block::tx_root(transactions),
        parent_state_root: Hash([3; 32]),
        parent_receipts_root: Hash([4; 32]),
        archive_root: Hash::ZERO,
    }
}

/// Two blocks, the second a child of the first.
pub fn blocks() -> Vec<Block> {
    let txs = transactions();
    let first = Block {
        header: header(1, Hash([9; 32]), &txs[..2]),
        transactions: txs[..2].to_vec(),
    };
    let second = Block {
        header: header(2, first.hash(), &[]),
        transactions: Vec::new(),
    };
    vec![first, second]
}

fn vote(kind: VoteKind, block: Hash) -> SignedVote {
    let vote = Vote {
        chain_id: FUZZ_CHAIN_ID,
        epoch: 0,
        view: 2,
        kind,
        block,
    };
    SignedVote {
        vote,
        signer: 0,
        signature: validator_key().sign(&vote.signing_hash().0),
    }
}

fn certificate(block: Hash) -> Certificate {
    let signed = vote(VoteKind::Finalize, block);
    Certificate {
        vote: signed.vote,
        signers: vec![0, 3],
        signatures: vec![signed.signature, SecretKey::from_seed([5; 32]).sign(b"x")],
    }
}

/// Every kind of consensus message.
pub fn messages() -> Vec<Message> {
    let blocks = blocks();
    let hash = blocks[0].hash();
    vec![
        Message::Propose {
            block: blocks[0].clone(),
            vote: vote(VoteKind::Notarize, hash),
        },
        Message::Vote(vote(VoteKind::Nullify, Hash::ZERO)),
        Message::Certificate(certificate(hash)),
        Message::BlockRequest(hash),
        Message::BlockResponse(blocks[1].clone()),
        Message::SyncRequest { from_height: 1 },
        Message::SyncResponse {
            blocks: blocks.clone(),
            headers: vec![header(3, blocks[1].hash(), &[])],
            finalization: certificate(blocks[1].hash()),
        },
        Message::SyncPruned {
            from_height: 1,
            oldest_retained: 100,
        },
    ]
}

/// A receipt of each status, with logs and a typed error.
pub fn receipts() -> Vec<Receipt> {
    vec![
        Receipt {
            tx_hash: Hash([1; 32]),
            status: TxStatus::Success,
            gas_used: 21_000,
            output: vec![0xab; 40],
            logs: vec![Log {
                address: Address([0x33; 20]),
                topics: vec![[7; 32], [8; 32]],
                data: vec![1, 2, 3, 4],
            }],
            contract_address: Some(Address([0x44; 20])),
            error: None,
        },
        Receipt {
            tx_hash: Hash([2; 32]),
            status: TxStatus::Revert,
            gas_used: 50_000,
            output: Vec::new(),
            logs: Vec::new(),
            contract_address: None,
            error: Some(TxError::InvalidRevival {
                reason: RevivalError::NotExpired {
                    key: StateKey::Storage(Address([5; 20]), [6; 32]),
                },
            }),
        },
        Receipt {
            tx_hash: Hash([3; 32]),
            status: TxStatus::Rejected,
            gas_used: 0,
            output: Vec::new(),
            logs: Vec::new(),
            contract_address: None,
            error: Some(TxError::BadNonce {
                expected: 1,
                got: 9,
            }),
        },
    ]
}

struct Nodes(BTreeMap<(u32, u64), Hash>);

impl ArchiveNodes for Nodes {
    type Error = std::convert::Infallible;
    fn node(&self, level: u32, index: u64) -> Result<Option<Hash>, Self::Error> {
        Ok(self.0.get(&(level, index)).copied())
    }
}

/// Archive leaves of the seed proofs, and fold page stubs sorted by key hash.
const SEED_LEAVES: u64 = 13;
const SEED_STUBS: u64 = 9;

fn stubs() -> Vec<FoldedStub> {
    let mut out: Vec<FoldedStub> = (0..SEED_STUBS)
        .map(|i| FoldedStub {
            key_hash: Hash::digest(Domain::Code, &i.to_be_bytes()),
            epoch: i % 3,
            leaf: i,
        })
        .collect();
    out.sort_by_key(|s| s.key_hash);
    out
}

/// Real revival proofs (encoded): leaves of a 13-leaf archive, one of them folded.
pub fn revival_proofs() -> Vec<Vec<u8>> {
    let key = |i: u64| StateKey::Storage(Address([0x66; 20]), [i as u8; 32]);
    let mut acc = ArchiveAccumulator::default();
    let mut nodes = Nodes(BTreeMap::new());
    for i in 0..SEED_LEAVES {
        let (_, written) = acc.push(keel_types::archive::leaf_hash(&key(i), 1, &[i as u8; 8]));
        nodes
            .0
            .extend(written.into_iter().map(|(l, x, h)| ((l, x), h)));
    }
    let list = stubs();
    let member = PageLeafProof::build(&list, 2);
    let outsider = Hash([0xee; 32]);
    let folded = member.map(|member| FoldedRevival {
        page: 0,
        member,
        absent: Absence::build(1, &list, &outsider).into_iter().collect(),
    });
    [0u64, 5, 12]
        .into_iter()
        .enumerate()
        .filter_map(|(n, i)| {
            let Ok(Some((siblings, other_peaks))) = prove(&nodes, acc.leaf_count, i) else {
                return None;
            };
            Some(
                RevivalProof {
                    key: key(i),
                    value: vec![i as u8; 8],
                    expired_epoch: 1,
                    leaf_index: i,
                    sealed_epoch: 2,
                    siblings,
                    other_peaks,
                    folded: if n == 2 { folded.clone() } else { None },
                }
                .encode(),
            )
        })
        .collect()
}

/// Real unflag proofs (encoded): absences of outsiders from a 9-stub page.
pub fn unflag_proofs() -> Vec<Vec<u8>> {
    let list = stubs();
    [0x00u8, 0x80, 0xff]
        .into_iter()
        .map(|b| {
            let absent: Vec<Absence> = (0..3)
                .filter_map(|page| Absence::build(page, &list, &Hash([b; 32])))
                .take(MAX_ABSENCES_PER_REVIVAL)
                .collect();
            UnflagProof {
                key: StateKey::Account(Address([b; 20])),
                absent,
            }
            .encode()
        })
        .collect()
}

fn borsh_bytes<T: BorshSerialize>(value: &T) -> Vec<u8> {
    borsh::to_vec(value).expect("borsh into Vec<u8> is infallible")
}

/// p2p pre-auth frames, selector byte first: a real first handshake message, a real reply
/// to the fuzz initiator, and a real identity frame.
pub fn p2p_frames() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let params: Result<snow::params::NoiseParams, _> = "Noise_XX_25519_ChaChaPoly_BLAKE2s".parse();
    let Ok(params) = params else {
        return out;
    };
    let prologue = {
        let mut p = b"keel p2p v1".to_vec();
        p.extend(FUZZ_CHAIN_ID.to_be_bytes());
        p.extend([0u8; 32]);
        p
    };
    let initiator = snow::Builder::new(params.clone())
        .prologue(&prologue)
        .local_private_key(&[0x22; 32])
        .fixed_ephemeral_key_for_testing_only(&[0x33; 32])
        .build_initiator();
    let responder = snow::Builder::new(params)
        .prologue(&prologue)
        .local_private_key(&[0x55; 32])
        .fixed_ephemeral_key_for_testing_only(&[0x66; 32])
        .build_responder();
    if let (Ok(mut i), Ok(mut r)) = (initiator, responder) {
        let mut first = vec![0u8; 1024];
        let mut second = vec![0u8; 1024];
        let mut scratch = vec![0u8; 1024];
        if let Ok(n) = i.write_message(&[], &mut first) {
            out.push([&[0u8][..], &first[..n]].concat());
            if r.read_message(&first[..n], &mut scratch).is_ok() {
                if let Ok(m) = r.write_message(&[], &mut second) {
                    out.push([&[1u8][..], &second[..m]].concat());
                }
            }
        }
    }
    let key = validator_key();
    let mut signed = b"keel 2026-11 p2p identity v1".to_vec();
    signed.extend([0u8; 32]);
    let identity = (key.public_key(), key.sign(&signed));
    out.push([vec![2u8], borsh_bytes(&identity)].concat());
    out
}

/// JSON-RPC calls (method index byte, then params), for the `rpc_params` target.
pub fn rpc_calls(methods: &[&str]) -> Vec<Vec<u8>> {
    let agent = Address::from_public_key(&agent_key().public_key());
    let agent_hex = format!("0x{}", hex_of(&agent.0));
    let eth = format!("0x{}", hex_of(&ETH_SIGNER));
    let tx = format!("0x{}", hex_of(&transactions()[0].encode()));
    let raw = format!("0x{}", ETH_TXS[3]);
    let hash = format!("0x{}", hex_of(&[0xab; 32]));
    let params = |method: &str| -> Vec<String> {
        match method {
            "keel_sendTransaction" | "keel_simulate" => vec![format!("[\"{tx}\"]")],
            "keel_getReceipt" | "eth_getTransactionByHash" | "eth_getTransactionReceipt" => {
                vec![format!("[\"{hash}\"]")]
            }
            "keel_getBlock" => vec!["[\"latest\"]".into(), "[0]".into(), "[\"0x0\"]".into()],
            "keel_getAccount" => vec![format!("[\"{agent_hex}\"]")],
            "keel_getStorage" => vec![format!("[\"{agent_hex}\", \"0x01\"]")],
            "keel_call" => vec![format!(
                "[{{\"to\": \"{eth}\", \"from\": \"{agent_hex}\", \"data\": \"0x00\", \"gas\": \"0x5208\"}}]"
            )],
            "keel_getProof" => vec![
                format!("[\"{agent_hex}\"]"),
                format!("[\"{agent_hex}\", \"0x01\", 1]"),
            ],
            "eth_getBalance" | "eth_getTransactionCount" | "eth_getCode" => {
                vec![format!("[\"{eth}\", \"latest\"]"), format!("[\"{eth}\", \"0x0\"]")]
            }
            "eth_getStorageAt" => vec![format!("[\"{eth}\", \"0x0\", \"latest\"]")],
            "eth_getBlockByNumber" => vec!["[\"latest\", true]".into(), "[\"0x0\", false]".into()],
            "eth_getBlockByHash" => vec![format!("[\"{hash}\", false]")],
            "eth_call" | "eth_estimateGas" => vec![format!(
                "[{{\"from\": \"{eth}\", \"to\": \"{agent_hex}\", \"value\": \"0x1\", \"data\": \"0x\"}}, \"latest\"]"
            )],
            "eth_getLogs" => vec![format!(
                "[{{\"fromBlock\": \"0x0\", \"toBlock\": \"latest\", \"address\": \"{eth}\", \"topics\": [null, [\"{hash}\"]]}}]"
            )],
            "eth_feeHistory" => vec!["[\"0x4\", \"latest\", [25, 75]]".into()],
            "eth_sendRawTransaction" => vec![format!("[\"{raw}\"]")],
            _ => vec!["[]".into()],
        }
    };
    let mut out = Vec::new();
    for (i, method) in methods.iter().enumerate() {
        for p in params(method) {
            let mut input = vec![i as u8];
            input.extend(p.into_bytes());
            out.push(input);
        }
    }
    out
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The seed inputs of a target (empty for an unknown name).
pub fn for_target(name: &str) -> Vec<Vec<u8>> {
    match name {
        "agent_tx" => transactions().iter().map(Canonical::encode).collect(),
        "eth_tx" => eth_txs(),
        "consensus_message" => messages().iter().map(Canonical::encode).collect(),
        "consensus_engine" => crate::engine::seeds(),
        "block_roundtrip" => {
            let blocks = blocks();
            let mut out: Vec<Vec<u8>> = blocks.iter().map(Canonical::encode).collect();
            out.push(blocks[0].header.encode());
            out.push(vote(VoteKind::Finalize, blocks[0].hash()).encode());
            out
        }
        "receipt_roundtrip" => {
            let receipts = receipts();
            let mut out: Vec<Vec<u8>> = receipts.iter().map(Canonical::encode).collect();
            out.push(BlockReceipts(receipts).encode());
            out
        }
        "revival_proof" => revival_proofs(),
        "unflag_proof" => unflag_proofs(),
        "p2p_preauth" => p2p_frames(),
        "wasm_validate" | "wasm_compile" => WASM_CONTRACTS
            .iter()
            .map(|(_, code)| code.to_vec())
            .collect(),
        #[cfg(feature = "node")]
        "net_message" => {
            use keel_p2p::NetMessage;
            let mut out: Vec<Vec<u8>> = messages()
                .into_iter()
                .map(|m| NetMessage::Consensus(Box::new(m)).encode())
                .collect();
            out.push(NetMessage::Transactions(transactions()).encode());
            out.extend(
                snapshot_messages()
                    .iter()
                    .map(|m| NetMessage::Snapshot(Box::new(m.clone())).encode()),
            );
            out
        }
        #[cfg(feature = "node")]
        "rpc_params" => rpc_calls(crate::node::RPC_METHODS),
        _ => Vec::new(),
    }
}

/// Snapshot sync requests and answers (one of each shape; a chunk with an empty range proof).
#[cfg(feature = "node")]
fn snapshot_messages() -> Vec<keel_p2p::SnapshotMessage> {
    use keel_p2p::SnapshotMessage;
    let proof: keel_types::proof::RangeProof =
        borsh::from_slice(&[0u8; 4]).expect("an empty range proof decodes");
    let key = keel_types::StateKey::Account(keel_types::Address([3; 20]));
    let block = blocks().swap_remove(0);
    let empty = keel_types::Block {
        transactions: Vec::new(),
        ..block
    };
    vec![
        SnapshotMessage::EpochChangesRequest { from_epoch: 0 },
        SnapshotMessage::EpochChanges {
            from_epoch: 2,
            changes: vec![vec![1, 0, 0, 0]],
        },
        SnapshotMessage::ChunkRequest {
            height: 9,
            after: Some(keel_types::Hash([7; 32])),
            max_bytes: 4 << 20,
        },
        SnapshotMessage::Chunk(Box::new(keel_types::SnapshotChunk {
            height: 9,
            after: Some(keel_types::Hash([7; 32])),
            entries: vec![(key.to_bytes(), keel_state::encode_live(1, &[5; 8]))],
            last: true,
            proof,
        })),
        SnapshotMessage::TipRequest { height: 9 },
        SnapshotMessage::Tip {
            block: Box::new(empty.clone()),
            receipts: Vec::new(),
            ancestors: vec![empty.header],
        },
        SnapshotMessage::Unavailable,
    ]
}
