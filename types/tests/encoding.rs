//! Canonical encoding: every type round-trips; truncated, oversized, trailing-byte,
//! wrong-version and over-bound inputs are rejected with typed errors, never a panic.

use keel_types::block::{canonical_order, is_canonical_order, tx_root};
use keel_types::consensus::{Certificate, SignedVote, Vote, VoteKind};
use keel_types::crypto::verify_batch;
use keel_types::limits::*;
use keel_types::receipt::{
    ArchiveProofCode, BlockReceipts, CodeError, ExecError, FoldProofCode, HostArgument,
    ModuleLimit, ProofDecodeError, RequiredExport,
};
use keel_types::state_key::CodeBlob;
use keel_types::*;
use proptest::prelude::*;

fn arb_hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}
fn arb_address() -> impl Strategy<Value = Address> {
    any::<[u8; 20]>().prop_map(Address)
}
fn arb_u256() -> impl Strategy<Value = U256> {
    any::<[u64; 4]>().prop_map(U256::from_limbs)
}
/// Byte arrays from {0, 1, 255}: keys that share long prefixes.
fn arb_near<const N: usize>() -> impl Strategy<Value = [u8; N]> {
    prop::collection::vec(prop::sample::select(vec![0u8, 1, 255]), N)
        .prop_map(|v| v.try_into().unwrap_or([0; N]))
}

fn arb_key() -> impl Strategy<Value = StateKey> {
    let a = || arb_near::<20>().prop_map(Address);
    let k = || arb_near::<32>().prop_map(PublicKey);
    let n = || prop::sample::select(vec![0u64, 1, 255, 256, u64::MAX]);
    prop_oneof![
        a().prop_map(StateKey::Account),
        arb_near::<32>().prop_map(|h| StateKey::Code(Hash(h))),
        (a(), arb_near::<32>()).prop_map(|(a, s)| StateKey::Storage(a, s)),
        Just(StateKey::ArchiveAccumulator),
        n().prop_map(StateKey::ArchiveRoot),
        Just(StateKey::FoldCount),
        n().prop_map(StateKey::FoldPage),
        a().prop_map(StateKey::Policy),
        a().prop_map(StateKey::SessionKeys),
        (a(), k()).prop_map(|(a, k)| StateKey::SessionKey(a, k)),
        (a(), k()).prop_map(|(a, k)| StateKey::SessionSpend(a, k)),
        Just(StateKey::ValidatorRegistry),
        k().prop_map(StateKey::Validator),
        n().prop_map(StateKey::EpochValidators),
    ]
}

/// One key of each variant, in declaration order, with fields that would sort the other
/// way round: the variant decides first.
#[test]
fn state_key_variants_sort_in_declaration_order() {
    let (a, k) = (Address([0xff; 20]), PublicKey([0xff; 32]));
    let keys = [
        StateKey::Account(a),
        StateKey::Code(Hash([0; 32])),
        StateKey::Storage(Address([0; 20]), [0; 32]),
        StateKey::ArchiveAccumulator,
        StateKey::ArchiveRoot(u64::MAX),
        StateKey::FoldCount,
        StateKey::FoldPage(0),
        StateKey::Policy(a),
        StateKey::SessionKeys(Address([0; 20])),
        StateKey::SessionKey(a, k),
        StateKey::SessionSpend(Address([0; 20]), PublicKey([0; 32])),
        StateKey::ValidatorRegistry,
        StateKey::Validator(k),
        StateKey::EpochValidators(0),
    ];
    for (i, x) in keys.iter().enumerate() {
        assert_eq!(reference(x).0 as usize, i, "{x}");
        for (j, y) in keys.iter().enumerate() {
            assert_eq!(x.cmp(y), i.cmp(&j), "{x} vs {y}");
        }
    }
}

/// What `#[derive(Ord)]` compares: the variant's place in the declaration, then each field
/// in turn (numbers as big-endian bytes compare as the numbers do).
fn reference(key: &StateKey) -> (u8, Vec<Vec<u8>>) {
    use StateKey as K;
    match key {
        K::Account(a) => (0, vec![a.0.to_vec()]),
        K::Code(h) => (1, vec![h.0.to_vec()]),
        K::Storage(a, s) => (2, vec![a.0.to_vec(), s.to_vec()]),
        K::ArchiveAccumulator => (3, vec![]),
        K::ArchiveRoot(n) => (4, vec![n.to_be_bytes().to_vec()]),
        K::FoldCount => (5, vec![]),
        K::FoldPage(n) => (6, vec![n.to_be_bytes().to_vec()]),
        K::Policy(a) => (7, vec![a.0.to_vec()]),
        K::SessionKeys(a) => (8, vec![a.0.to_vec()]),
        K::SessionKey(a, k) => (9, vec![a.0.to_vec(), k.0.to_vec()]),
        K::SessionSpend(a, k) => (10, vec![a.0.to_vec(), k.0.to_vec()]),
        K::ValidatorRegistry => (11, vec![]),
        K::Validator(k) => (12, vec![k.0.to_vec()]),
        K::EpochValidators(n) => (13, vec![n.to_be_bytes().to_vec()]),
    }
}

fn arb_env() -> impl Strategy<Value = Env> {
    prop_oneof![Just(Env::Evm), Just(Env::Wasm)]
}
fn arb_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}
fn arb_body() -> impl Strategy<Value = TxBody> {
    prop_oneof![
        (arb_address(), arb_u256()).prop_map(|(to, amount)| TxBody::Transfer { to, amount }),
        (arb_env(), arb_bytes(300), arb_bytes(64), arb_u256()).prop_map(
            |(env, code, args, value)| TxBody::Deploy {
                env,
                code,
                args,
                value
            }
        ),
        (arb_address(), arb_bytes(200), arb_u256()).prop_map(|(to, data, value)| TxBody::Call {
            to,
            data,
            value
        }),
        arb_bytes(200).prop_map(|proof| TxBody::Revive { proof }),
        arb_bytes(200).prop_map(|proof| TxBody::Unflag { proof }),
    ]
}
fn arb_tx() -> impl Strategy<Value = Transaction> {
    (
        any::<u64>(),
        any::<[u8; 32]>(),
        any::<u64>(),
        any::<u64>(),
        any::<u128>(),
        arb_body(),
    )
        .prop_map(
            |(chain_id, sender, nonce, gas_limit, gas_price, body)| Transaction {
                chain_id,
                sender: PublicKey(sender).into(),
                nonce,
                gas_limit,
                gas_price,
                body,
            },
        )
}
fn arb_signed() -> impl Strategy<Value = SignedTransaction> {
    (arb_tx(), any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(tx, a, b)| {
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&a);
        sig[32..].copy_from_slice(&b);
        SignedTransaction {
            tx,
            signature: keel_types::Authorization::Ed25519(Signature(sig)),
        }
    })
}
fn arb_header() -> impl Strategy<Value = Header> {
    (
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        ),
        (
            arb_hash(),
            any::<[u8; 32]>(),
            arb_hash(),
            arb_hash(),
            arb_hash(),
            arb_hash(),
        ),
    )
        .prop_map(
            |((chain_id, height, epoch, view, timestamp_ms), (p, k, t, s, r, a))| Header {
                chain_id,
                height,
                epoch,
                view,
                parent_hash: p,
                proposer: PublicKey(k),
                timestamp_ms,
                tx_root: t,
                parent_state_root: s,
                parent_receipts_root: r,
                archive_root: a,
            },
        )
}
fn arb_log() -> impl Strategy<Value = Log> {
    (
        arb_address(),
        prop::collection::vec(any::<[u8; 32]>(), 0..=4),
        arb_bytes(100),
    )
        .prop_map(|(address, topics, data)| Log {
            address,
            topics,
            data,
        })
}
fn arb_tx_error() -> impl Strategy<Value = TxError> {
    prop_oneof![
        (any::<u64>(), any::<u64>())
            .prop_map(|(expected, got)| TxError::BadNonce { expected, got }),
        Just(TxError::OutOfGas),
        (arb_u256(), arb_u256())
            .prop_map(|(needed, available)| TxError::InsufficientBalance { needed, available }),
        (arb_address(), any::<[u8; 32]>(), any::<u64>()).prop_map(|(a, slot, expired_epoch)| {
            TxError::Expired {
                key: StateKey::Storage(a, slot),
                expired_epoch,
            }
        }),
        any::<u64>().prop_map(|offset| TxError::InvalidCode {
            code: CodeError::Malformed { offset }
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(count, max)| TxError::InvalidCode {
            code: CodeError::LimitExceeded {
                limit: ModuleLimit::DataBytes,
                count,
                max
            }
        }),
        Just(TxError::Execution {
            code: ExecError::WasmBadHostArgument {
                argument: HostArgument::TooManyTopics
            }
        }),
        (arb_u256(), arb_u256(), any::<Option<u64>>(), arb_address()).prop_map(
            |(limit, used, resets_at_epoch, source)| TxError::PolicyDenied {
                denial: keel_types::policy::PolicyDenial {
                    rule: keel_types::policy::PolicyRule::ValuePerEpoch,
                    scope: keel_types::policy::PolicyScope::Account,
                    limit,
                    used,
                    resets_at_epoch,
                    source,
                },
            }
        ),
        (any::<u64>(), any::<u8>()).prop_map(|(page, got)| TxError::InvalidRevival {
            reason: if got % 2 == 0 {
                RevivalError::BadFoldProof {
                    page,
                    code: FoldProofCode::LeafPath {
                        code: ArchiveProofCode::Shape,
                    },
                }
            } else {
                RevivalError::Malformed {
                    code: ProofDecodeError::UnknownVersion { got },
                }
            }
        }),
    ]
}
fn arb_receipt() -> impl Strategy<Value = Receipt> {
    (
        arb_hash(),
        prop_oneof![
            Just(TxStatus::Success),
            Just(TxStatus::Revert),
            Just(TxStatus::Rejected)
        ],
        any::<u64>(),
        arb_bytes(100),
        prop::collection::vec(arb_log(), 0..4),
        prop::option::of(arb_address()),
        prop::option::of(arb_tx_error()),
    )
        .prop_map(
            |(tx_hash, status, gas_used, output, logs, contract_address, error)| Receipt {
                tx_hash,
                status,
                gas_used,
                output,
                logs,
                contract_address,
                error,
            },
        )
}
fn arb_vote() -> impl Strategy<Value = Vote> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        prop_oneof![
            Just(VoteKind::Notarize),
            Just(VoteKind::Nullify),
            Just(VoteKind::Finalize)
        ],
        arb_hash(),
    )
        .prop_map(|(chain_id, epoch, view, kind, block)| Vote {
            chain_id,
            epoch,
            view,
            kind,
            block,
        })
}

/// The rejection checks every canonical type must pass.
fn check_rejections<T: Canonical + std::fmt::Debug + PartialEq>(value: &T) {
    let bytes = value.encode();
    assert!(
        bytes.len() <= T::MAX_ENCODED_BYTES,
        "{} encodes over its bound",
        T::KIND
    );
    assert_eq!(T::decode(&bytes).as_ref(), Ok(value));
    // Every strict prefix fails (borsh is self-delimiting, so no prefix is a whole value).
    for cut in 0..bytes.len() {
        assert!(
            T::decode(&bytes[..cut]).is_err(),
            "{} prefix of {cut} bytes decoded",
            T::KIND
        );
    }
    assert_eq!(T::decode(&[]), Err(DecodeError::Empty { kind: T::KIND }));
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(
        T::decode(&trailing),
        Err(DecodeError::TrailingBytes { count: 1, .. }) | Err(DecodeError::TooLarge { .. })
    ));
    let mut wrong_version = bytes.clone();
    wrong_version[0] = T::VERSION.wrapping_add(1);
    assert!(matches!(
        T::decode(&wrong_version),
        Err(DecodeError::UnknownVersion { .. })
    ));
    let oversized = vec![T::VERSION; T::MAX_ENCODED_BYTES + 1];
    assert!(matches!(
        T::decode(&oversized),
        Err(DecodeError::TooLarge { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn transaction_roundtrip(tx in arb_tx()) { check_rejections(&tx); }

    #[test]
    fn signed_transaction_roundtrip(tx in arb_signed()) { check_rejections(&tx); }

    #[test]
    fn header_roundtrip(h in arb_header()) { check_rejections(&h); }

    #[test]
    fn block_roundtrip(header in arb_header(), txs in prop::collection::vec(arb_signed(), 0..4)) {
        check_rejections(&Block { header, transactions: txs });
    }

    #[test]
    fn receipt_roundtrip(r in arb_receipt()) { check_rejections(&r); }

    #[test]
    fn block_receipts_roundtrip(rs in prop::collection::vec(arb_receipt(), 0..4)) {
        check_rejections(&BlockReceipts(rs));
    }

    #[test]
    fn vote_roundtrip(v in arb_vote(), signer in any::<u16>(), sig in any::<[u8; 32]>()) {
        check_rejections(&v);
        let mut s = [0u8; 64];
        s[..32].copy_from_slice(&sig);
        check_rejections(&SignedVote { vote: v, signer, signature: Signature(s) });
    }

    #[test]
    fn certificate_roundtrip(v in arb_vote(), signers in prop::collection::btree_set(any::<u16>(), 0..8)) {
        let signers: Vec<u16> = signers.into_iter().collect();
        let signatures = signers.iter().map(|_| Signature::ZERO).collect();
        check_rejections(&Certificate { vote: v, signers, signatures });
    }

    #[test]
    fn account_and_code_roundtrip(nonce in any::<u64>(), balance in arb_u256(), env in arb_env(),
                                  h in prop::option::of(arb_hash()), code in arb_bytes(300)) {
        let record = AccountRecord { nonce, balance, code: h.map(|code_hash| CodeRef { env, code_hash }), policy_spend: None };
        check_rejections(&record);
        // With a policy's spending: the same record and the spending after it.
        let spend = keel_types::policy::PolicySpend { epoch: nonce / 3, value: balance, fees: balance >> 7, txs: nonce / 5 };
        let spent = AccountRecord { policy_spend: Some(spend), ..record.clone() };
        check_rejections(&spent);
        prop_assert_eq!(spent.encode().len(), record.encode().len() + 80);
        // Amending the spending in place gives the bytes of decode, set, encode.
        for (from, to) in [(&record, Some(spend)), (&spent, None), (&spent, Some(keel_types::policy::PolicySpend { txs: 1, ..spend })), (&record, None)] {
            let mut amended = [vec![7], from.encode()].concat();
            AccountRecord::set_spend_in(&mut amended, 1, to).expect("amend");
            let full = AccountRecord { policy_spend: to, ..from.clone() };
            prop_assert_eq!(&amended[1..], &full.encode()[..]);
        }
        check_rejections(&CodeBlob { env, code });
    }

    /// Amending the spending of bytes that are not a record fails exactly when decoding them
    /// does, and otherwise gives decode, set, encode: truncated, extended, a wrong version,
    /// an unknown environment or tag, any byte flipped.
    #[test]
    fn an_amended_spending_is_a_decode_set_and_encode(nonce in any::<u64>(), balance in arb_u256(), env in arb_env(), h in prop::option::of(arb_hash()), spent in any::<bool>(), at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in 0usize..3) {
        let spend = keel_types::policy::PolicySpend { epoch: nonce, value: balance, fees: balance, txs: nonce };
        let record = AccountRecord { nonce, balance, code: h.map(|code_hash| CodeRef { env, code_hash }), policy_spend: spent.then_some(spend) };
        let good = record.encode();
        let mut flipped = good.clone();
        flipped[at.index(good.len())] = byte;
        let mut extended = good.clone();
        extended.push(byte);
        let truncated = good[..good.len().saturating_sub(cut + 1)].to_vec();
        for raw in [good, flipped, extended, truncated] {
            let mut amended = [&[9, 9][..], &raw].concat();
            let fast = AccountRecord::set_spend_in(&mut amended, 2, None);
            match AccountRecord::decode(&raw) {
                Ok(decoded) => {
                    prop_assert!(fast.is_ok());
                    prop_assert_eq!(&amended[2..], AccountRecord { policy_spend: None, ..decoded }.encode());
                }
                Err(e) => {
                    prop_assert_eq!(fast, Err(e));
                    prop_assert_eq!(&amended[2..], &raw[..], "a refusal changes nothing");
                }
            }
        }
    }

    #[test]
    fn state_key_roundtrip(a in arb_address(), slot in any::<[u8; 32]>(), h in arb_hash()) {
        for key in [StateKey::Account(a), StateKey::Storage(a, slot), StateKey::Code(h)] {
            prop_assert_eq!(StateKey::from_bytes(&key.to_bytes()), Ok(key.clone()));
        }
    }

    /// `StateKey`'s hand-written order is the derived one: variant by declaration, then
    /// fields, byte arrays lexicographically (bytes drawn from three values, so keys share
    /// long prefixes and tie often). Maps keyed by it fix the order of diffs and proofs.
    #[test]
    fn state_key_order_is_variant_then_fields(a in arb_key(), b in arb_key()) {
        prop_assert_eq!(a.cmp(&b), reference(&a).cmp(&reference(&b)), "{} vs {}", a, b);
        prop_assert_eq!(a.partial_cmp(&b), Some(a.cmp(&b)));
        prop_assert_eq!(a.cmp(&b) == std::cmp::Ordering::Equal, a == b);
    }

    /// Arbitrary bytes never panic any decoder.
    #[test]
    fn garbage_never_panics(bytes in arb_bytes(600)) {
        let _ = Transaction::decode(&bytes);
        let _ = SignedTransaction::decode(&bytes);
        let _ = Header::decode(&bytes);
        let _ = Block::decode(&bytes);
        let _ = Receipt::decode(&bytes);
        let _ = BlockReceipts::decode(&bytes);
        let _ = Vote::decode(&bytes);
        let _ = SignedVote::decode(&bytes);
        let _ = Certificate::decode(&bytes);
        let _ = AccountRecord::decode(&bytes);
        let _ = CodeBlob::decode(&bytes);
        let _ = StateProof::decode(&bytes);
        let _ = StateKey::from_bytes(&bytes);
    }

    /// Canonical order is a pure function of the set, keeps each sender's nonces increasing,
    /// and is recognised by `is_canonical_order`.
    #[test]
    fn canonical_order_is_deterministic(parent in arb_hash(), txs in prop::collection::vec(arb_signed(), 0..24), seed in any::<u64>()) {
        let ordered = canonical_order(&parent, txs.clone());
        let mut shuffled = txs.clone();
        // A deterministic permutation from the seed.
        shuffled.sort_by_key(|t| Hash::digest_parts(Domain::TxOrder, &[&seed.to_le_bytes(), &t.hash().0]));
        let again = canonical_order(&parent, shuffled);
        prop_assert_eq!(&ordered, &again);
        prop_assert!(is_canonical_order(&parent, &ordered));
        prop_assert_eq!(tx_root(&ordered), tx_root(&again));
        for (i, a) in ordered.iter().enumerate() {
            for b in &ordered[i + 1..] {
                if a.tx.sender == b.tx.sender {
                    prop_assert!(a.tx.nonce <= b.tx.nonce);
                }
            }
        }
    }
}

fn keypair(seed: u8) -> SecretKey {
    SecretKey::from_seed([seed; 32])
}

fn transfer(key: &SecretKey, nonce: u64) -> SignedTransaction {
    Transaction {
        chain_id: 7,
        sender: key.public_key().into(),
        nonce,
        gas_limit: 21_000,
        gas_price: 1,
        body: TxBody::Transfer {
            to: Address([9; 20]),
            amount: U256::from(5u64),
        },
    }
    .sign(key)
}

#[test]
fn field_bounds_are_typed_errors() {
    let key = keypair(1);
    let mut tx = transfer(&key, 0).tx;
    tx.body = TxBody::Deploy {
        env: Env::Wasm,
        code: vec![0; MAX_CODE_BYTES + 1],
        args: vec![],
        value: U256::ZERO,
    };
    assert!(matches!(
        Transaction::decode(&tx.encode()),
        Err(DecodeError::FieldTooLarge { field: "code", .. })
    ));
    let log = Log {
        address: Address::ZERO,
        topics: vec![[0; 32]; 5],
        data: vec![],
    };
    let receipt = Receipt {
        tx_hash: Hash::ZERO,
        status: TxStatus::Success,
        gas_used: 0,
        output: vec![],
        logs: vec![log],
        contract_address: None,
        error: None,
    };
    // `encode` refuses (in debug builds) to write an undecodable receipt; write it by hand.
    let mut bytes = vec![Receipt::VERSION];
    bytes.extend(borsh::to_vec(&receipt).expect("borsh"));
    assert!(matches!(
        Receipt::decode(&bytes),
        Err(DecodeError::FieldTooLarge {
            field: "log.topics",
            ..
        })
    ));
    let cert = Certificate {
        vote: Vote {
            chain_id: 1,
            epoch: 0,
            view: 1,
            kind: VoteKind::Finalize,
            block: Hash::ZERO,
        },
        signers: vec![2, 1],
        signatures: vec![Signature::ZERO; 2],
    };
    assert!(matches!(
        Certificate::decode(&cert.encode()),
        Err(DecodeError::InvalidField {
            field: "signers",
            ..
        })
    ));
}

#[test]
fn unknown_enum_tag_is_malformed() {
    let key = keypair(2);
    let mut bytes = transfer(&key, 0).tx.encode();
    // The body tag follows version(1) chain_id(8) sender(tag 1 + key 32) nonce(8)
    // gas_limit(8) gas_price(16).
    let mut body_tag = bytes.clone();
    body_tag[1 + 8 + 33 + 8 + 8 + 16] = 9;
    assert!(matches!(
        Transaction::decode(&body_tag),
        Err(DecodeError::Malformed { .. })
    ));
    // The sender tag (0 agent, 1 Ethereum) right after the chain id.
    bytes[1 + 8] = 7;
    assert!(matches!(
        Transaction::decode(&bytes),
        Err(DecodeError::Malformed { .. })
    ));
}

#[test]
fn signatures_and_batch_verification() {
    let keys: Vec<SecretKey> = (1..=16).map(keypair).collect();
    let txs: Vec<SignedTransaction> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| transfer(k, i as u64))
        .collect();
    for tx in &txs {
        tx.verify_signature(1).expect("valid signature");
    }
    let hashes: Vec<Hash> = txs.iter().map(|t| t.hash()).collect();
    let items: Vec<(&[u8], PublicKey, Signature)> = txs
        .iter()
        .zip(&hashes)
        .map(|(t, h)| {
            let (key, sig) = t.ed25519().expect("agent transaction");
            (&h.0[..], key, sig)
        })
        .collect();
    verify_batch(&items).expect("batch verifies");

    let mut bad = items.clone();
    bad[3].2 = bad[4].2;
    bad[11].1 = keys[0].public_key();
    assert_eq!(
        verify_batch(&bad),
        Err(CryptoError::BadSignatures {
            bad: vec![3, 11],
            total: 16
        })
    );

    let mut tampered = txs[0].clone();
    tampered.tx.nonce += 1;
    assert_eq!(tampered.verify_signature(1), Err(CryptoError::BadSignature));
    // Not a curve point: a typed error, not a panic.
    let mut invalid = items.clone();
    invalid[0].1 = PublicKey([0xff; 32]);
    assert!(verify_batch(&invalid).is_err());
}

#[test]
fn domains_separate_hashes() {
    let bytes = b"same bytes";
    let all = [
        Domain::Transaction,
        Domain::Header,
        Domain::TxRootLeaf,
        Domain::MerkleNode,
        Domain::Receipt,
        Domain::StateKey,
        Domain::Jmt,
        Domain::Address,
        Domain::Code,
        Domain::Vote,
        Domain::Proposal,
        Domain::TxOrder,
    ];
    let hashes: std::collections::BTreeSet<Hash> =
        all.iter().map(|d| Hash::digest(*d, bytes)).collect();
    assert_eq!(hashes.len(), all.len());
}

#[test]
fn merkle_root_has_no_duplicate_leaf_ambiguity() {
    use keel_types::hash::merkle_root;
    let a = Hash([1; 32]);
    let b = Hash([2; 32]);
    let c = Hash([3; 32]);
    assert_ne!(merkle_root(&[a, b, c]), merkle_root(&[a, b, c, c]));
    assert_eq!(merkle_root(&[a]), a);
    assert_eq!(merkle_root(&[]), Hash::ZERO);
}

/// Every `TxError` variant with every field at its largest (the longest state key, `u64::MAX`
/// numbers, the largest sub-code). Keep in step with `variant_index`, which the compiler
/// checks is exhaustive.
fn largest_errors() -> Vec<TxError> {
    let key = StateKey::Storage(Address([0xff; 20]), [0xff; 32]);
    let m = u64::MAX;
    let revivals = vec![
        RevivalError::Malformed {
            code: ProofDecodeError::UnknownVersion { got: u8::MAX },
        },
        RevivalError::ExpiryOff,
        RevivalError::AlreadyLive { key: key.clone() },
        RevivalError::NotExpired { key: key.clone() },
        RevivalError::StaleVersion {
            key: key.clone(),
            latest_epoch: m,
            latest_leaf: m,
            proof_epoch: m,
            proof_leaf: m,
        },
        RevivalError::UnsealedEpoch { sealed_epoch: m },
        RevivalError::BadProof {
            sealed_epoch: m,
            code: ArchiveProofCode::RootMismatch,
        },
        RevivalError::BadFoldProof {
            page: m,
            code: FoldProofCode::LeafPath {
                code: ArchiveProofCode::OutOfRange,
            },
        },
        RevivalError::Archived { key: key.clone() },
    ];
    let codes = vec![
        CodeError::Malformed { offset: m },
        CodeError::TooLarge {
            len_bytes: m,
            max_bytes: m,
        },
        CodeError::FloatsNotAllowed { offset: m },
        CodeError::DisallowedImport { index: u32::MAX },
        CodeError::ImportSignature { index: u32::MAX },
        CodeError::NonFunctionImport { index: u32::MAX },
        CodeError::LimitExceeded {
            limit: ModuleLimit::OperandStackPerFunction,
            count: m,
            max: m,
        },
        CodeError::Memory { max_pages: m },
        CodeError::MissingExport {
            export: RequiredExport::Memory,
        },
        CodeError::StartFunction,
        CodeError::IfWithParamsWithoutElse { offset: m },
        CodeError::CompileFailed,
        CodeError::BadDeployInput,
    ];
    let mut errors = vec![
        TxError::WrongChainId {
            expected: m,
            got: m,
        },
        TxError::BadSignature,
        TxError::BadNonce {
            expected: m,
            got: m,
        },
        TxError::InsufficientBalance {
            needed: U256::MAX,
            available: U256::MAX,
        },
        TxError::IntrinsicGasTooLow {
            gas_limit: m,
            intrinsic: m,
        },
        TxError::GasLimitTooHigh {
            gas_limit: m,
            block_gas_limit: m,
        },
        TxError::GasPriceTooLow {
            gas_price: u128::MAX,
            min_gas_price: u128::MAX,
        },
        TxError::OutOfGas,
        TxError::Reverted,
        TxError::NoContract {
            address: Address([0xff; 20]),
        },
        TxError::CallDepthExceeded,
        TxError::Expired {
            key,
            expired_epoch: m,
        },
        TxError::Execution {
            code: ExecError::WasmBadHostArgument {
                argument: HostArgument::ReturnDataOutOfBounds,
            },
        },
        TxError::Execution {
            code: ExecError::InvalidTransaction,
        },
        TxError::PolicyDenied {
            denial: keel_types::policy::PolicyDenial {
                rule: keel_types::policy::PolicyRule::Loosening,
                scope: keel_types::policy::PolicyScope::Plugin,
                limit: U256::MAX,
                used: U256::MAX,
                resets_at_epoch: Some(m),
                source: Address([0xff; 20]),
            },
        },
        TxError::Registry {
            reason: keel_types::RegistryError::BelowMinStake {
                stake: U256::MAX,
                min_stake: U256::MAX,
            },
        },
        TxError::Registry {
            reason: keel_types::RegistryError::NotEnoughStake {
                amount: U256::MAX,
                stake: U256::MAX,
            },
        },
    ];
    errors.extend(codes.into_iter().map(|code| TxError::InvalidCode { code }));
    errors.extend(
        revivals
            .into_iter()
            .map(|reason| TxError::InvalidRevival { reason }),
    );
    errors
}

/// The borsh tag of a `TxError` variant; exhaustive so that a new variant fails to compile
/// here until `largest_errors` covers it.
fn variant_index(e: &TxError) -> u8 {
    match e {
        TxError::WrongChainId { .. } => 0,
        TxError::BadSignature => 1,
        TxError::BadNonce { .. } => 2,
        TxError::InsufficientBalance { .. } => 3,
        TxError::IntrinsicGasTooLow { .. } => 4,
        TxError::GasLimitTooHigh { .. } => 5,
        TxError::GasPriceTooLow { .. } => 6,
        TxError::OutOfGas => 7,
        TxError::Reverted => 8,
        TxError::NoContract { .. } => 9,
        TxError::InvalidCode { .. } => 10,
        TxError::CallDepthExceeded => 11,
        TxError::Expired { .. } => 12,
        TxError::InvalidRevival { .. } => 13,
        TxError::Execution { .. } => 14,
        TxError::PolicyDenied { .. } => 15,
        TxError::Registry { .. } => 16,
    }
}

/// A receipt at every bound at once: the most output, the most logs with four topics each,
/// all the log data the bound allows.
fn largest_receipt(error: TxError) -> Receipt {
    let per_log = MAX_TOTAL_LOG_DATA_BYTES / MAX_LOGS_PER_TX;
    let mut logs: Vec<Log> = (0..MAX_LOGS_PER_TX)
        .map(|_| Log {
            address: Address([0xff; 20]),
            topics: vec![[0xff; 32]; MAX_LOG_TOPICS],
            data: vec![0xff; per_log],
        })
        .collect();
    logs[0].data = vec![0xff; MAX_TOTAL_LOG_DATA_BYTES - per_log * (MAX_LOGS_PER_TX - 1)];
    Receipt {
        tx_hash: Hash([0xff; 32]),
        status: TxStatus::Revert,
        gas_used: u64::MAX,
        output: vec![0xff; MAX_OUTPUT_BYTES],
        logs,
        contract_address: Some(Address([0xff; 20])),
        error: Some(error),
    }
}

#[test]
fn every_tx_error_at_its_largest_fits_a_receipt_and_round_trips() {
    let errors = largest_errors();
    let covered: std::collections::BTreeSet<u8> = errors.iter().map(variant_index).collect();
    assert_eq!(
        covered,
        (0..=16).collect(),
        "every TxError variant is covered"
    );
    let mut largest = 0;
    for error in errors {
        let len = borsh::object_length(&error).expect("length");
        assert!(
            len <= MAX_TX_ERROR_BYTES,
            "{error:?} encodes to {len} bytes"
        );
        largest = largest.max(len);
        // Alone, in a receipt and in a block's receipts.
        let small = Receipt {
            tx_hash: Hash::ZERO,
            status: TxStatus::Revert,
            gas_used: 1,
            output: Vec::new(),
            logs: Vec::new(),
            contract_address: None,
            error: Some(error.clone()),
        };
        check_rejections(&small);
        let block = BlockReceipts(vec![small.clone(), small]);
        assert_eq!(BlockReceipts::decode(&block.encode()), Ok(block));
        // With every other field at its bound too: still within MAX_RECEIPT_BYTES.
        let big = largest_receipt(error);
        let bytes = big.encode();
        assert!(bytes.len() <= MAX_RECEIPT_BYTES, "{} bytes", bytes.len());
        assert_eq!(Receipt::decode(&bytes), Ok(big));
    }
    // The bound has room: the largest error today is a policy denial (two 256-bit numbers,
    // an epoch and an address).
    assert_eq!(largest, 96);
}

#[test]
fn an_unknown_error_tag_never_decodes() {
    // Forge bytes a decoder might see from a peer or disk: a receipt whose error is an
    // unknown TxError tag is malformed, never a panic.
    let receipt = Receipt {
        tx_hash: Hash::ZERO,
        status: TxStatus::Revert,
        gas_used: 1,
        output: Vec::new(),
        logs: Vec::new(),
        contract_address: None,
        error: Some(TxError::OutOfGas),
    };
    let mut bytes = receipt.encode();
    let tag = bytes.len() - 1;
    assert_eq!(bytes[tag], 7, "OutOfGas is tag 7");
    bytes[tag] = 200;
    assert!(matches!(
        Receipt::decode(&bytes),
        Err(DecodeError::Malformed { .. })
    ));
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "encoding an undecodable receipt")]
fn encoding_an_undecodable_receipt_is_caught() {
    let receipt = Receipt {
        tx_hash: Hash::ZERO,
        status: TxStatus::Success,
        gas_used: 0,
        output: vec![0; MAX_OUTPUT_BYTES + 1],
        logs: Vec::new(),
        contract_address: None,
        error: None,
    };
    let _ = receipt.encode();
}

/// A body whose signature (or an Ethereum transaction's envelope) was swapped under a real
/// header must not match the header's tx_root (issue 24: bodies bound to headers).
#[test]
fn tx_root_commits_to_signatures() {
    let key = keypair(3);
    let honest = vec![transfer(&key, 0), transfer(&key, 1)];
    let mut forged = honest.clone();
    let Authorization::Ed25519(sig) = &mut forged[1].signature else {
        panic!("agent transaction");
    };
    sig.0[0] ^= 1;
    assert_eq!(
        honest[1].hash(),
        forged[1].hash(),
        "the hash leaves the signature out"
    );
    assert_ne!(tx_root(&honest), tx_root(&forged));
    let mut eth = honest.clone();
    eth[0].signature = Authorization::Ethereum(vec![1, 2, 3]);
    let mut eth_forged = eth.clone();
    eth_forged[0].tx.nonce = 9;
    assert_ne!(tx_root(&eth), tx_root(&eth_forged));
}
