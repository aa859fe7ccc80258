//! A deterministic block workload: block `h`'s state diff, block and receipts are a pure
//! function of `h`, so a killed writer and the checking test agree on what height `h` holds.

use keel_state::StateDiff;
use keel_types::{
    Address, Block, Hash, Header, PublicKey, Receipt, SecretKey, SignedTransaction, StateKey,
    Transaction, TxBody, TxStatus, U256,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Distinct contracts the workload writes to.
pub const CONTRACTS: u8 = 16;
/// Slots per contract the workload writes to.
pub const SLOTS_PER_CONTRACT: u16 = 512;
/// Writes per block.
pub const WRITES_PER_BLOCK: usize = 64;
/// Transactions per block.
pub const TXS_PER_BLOCK: usize = 4;

fn rng(height: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(height);
    r.set_stream(stream);
    r
}

/// The state changes of block `height`: slot updates, some deletes, account bumps.
pub fn diff(height: u64) -> StateDiff {
    let mut r = rng(height, 1);
    let mut diff = StateDiff::new();
    for _ in 0..WRITES_PER_BLOCK {
        let contract = Address([r.gen_range(0..CONTRACTS); 20]);
        let slot_index: u16 = r.gen_range(0..SLOTS_PER_CONTRACT);
        let mut slot = [0u8; 32];
        slot[30..].copy_from_slice(&slot_index.to_be_bytes());
        let value = if r.gen_bool(0.15) {
            None
        } else {
            Some(keel_state::encode_live(height / 16, &r.gen::<[u8; 32]>()))
        };
        diff.insert(StateKey::Storage(contract, slot), value);
    }
    let account = Address([r.gen_range(0..CONTRACTS).wrapping_add(100); 20]);
    diff.insert(
        StateKey::Account(account),
        Some(keel_state::encode_live(height / 16, &height.to_le_bytes())),
    );
    diff
}

/// Block `height` (with signed transfers) and its receipts.
pub fn block(height: u64, parent_hash: Hash) -> (Block, Vec<Receipt>) {
    let mut r = rng(height, 2);
    let key = SecretKey::from_seed([7; 32]);
    let transactions: Vec<SignedTransaction> = (0..TXS_PER_BLOCK)
        .map(|i| {
            Transaction {
                chain_id: 1,
                sender: key.public_key().into(),
                nonce: height * TXS_PER_BLOCK as u64 + i as u64,
                gas_limit: 21_000,
                gas_price: 1,
                body: TxBody::Transfer {
                    to: Address(r.gen()),
                    amount: U256::from(r.gen::<u64>()),
                },
            }
            .sign(&key)
        })
        .collect();
    let receipts = transactions
        .iter()
        .map(|t| Receipt {
            tx_hash: t.hash(),
            status: TxStatus::Success,
            gas_used: 21_000,
            output: vec![],
            logs: vec![],
            contract_address: None,
            error: None,
        })
        .collect();
    let header = Header {
        chain_id: 1,
        height,
        epoch: height / 100,
        view: height,
        parent_hash,
        proposer: PublicKey([1; 32]),
        timestamp_ms: 1_700_000_000_000 + height * 500,
        tx_root: keel_types::block::tx_root(&transactions),
        parent_state_root: Hash::ZERO,
        parent_receipts_root: Hash::ZERO,
        archive_root: Hash::ZERO,
    };
    (
        Block {
            header,
            transactions,
        },
        receipts,
    )
}
