//! Consensus messages (proposals, votes, certificates, block and sync requests and responses)
//! and the stored forms of blocks and receipts.

use crate::assert_canonical;
use keel_consensus::Message;
use keel_types::receipt::{receipts_root, BlockReceipts};
use keel_types::{Block, Canonical, Certificate, Header, Receipt, SignedVote};

/// `consensus::Message::decode` (what a peer's consensus bytes go through), its round trip,
/// and the hashes the engine computes on a decoded message.
pub fn consensus_message(data: &[u8]) {
    let Ok(message) = Message::decode(data) else {
        return;
    };
    assert_canonical(data, &message);
    match &message {
        Message::Propose { block, vote } => {
            check_block(block);
            let _ = vote.vote.signing_hash();
        }
        Message::Vote(vote) => {
            let _ = vote.vote.signing_hash();
        }
        Message::Certificate(cert) => check_certificate(cert),
        Message::BlockResponse(block) => check_block(block),
        Message::SyncResponse {
            blocks,
            headers,
            finalization,
        } => {
            blocks.iter().for_each(check_block);
            headers.iter().for_each(|h| {
                let _ = h.hash();
            });
            check_certificate(finalization);
        }
        Message::BlockRequest(_) | Message::SyncRequest { .. } | Message::SyncPruned { .. } => {}
    }
}

/// A block inside a valid message is itself a valid block, with the same bytes.
fn check_block(block: &Block) {
    let bytes = block.encode();
    assert_eq!(Block::decode(&bytes).as_ref(), Ok(block));
    let _ = (block.hash(), block.compute_tx_root());
}

fn check_certificate(cert: &Certificate) {
    let bytes = cert.encode();
    assert_eq!(Certificate::decode(&bytes).as_ref(), Ok(cert));
}

/// Every stored form of a block: `Block`, `Header` and `SignedVote` decode (the shapes a
/// node reads back from disk and from peers), with their round trips.
pub fn block_roundtrip(data: &[u8]) {
    if let Ok(block) = Block::decode(data) {
        assert_canonical(data, &block);
        let _ = block.compute_tx_root();
        let _ =
            keel_types::block::is_canonical_order(&block.header.parent_hash, &block.transactions);
    }
    if let Ok(header) = Header::decode(data) {
        assert_canonical(data, &header);
    }
    if let Ok(vote) = SignedVote::decode(data) {
        assert_canonical(data, &vote);
    }
}

/// `Receipt` and `BlockReceipts` decode (what a node serves back over RPC after reading
/// them from disk): round trips, and the receipts root is computable.
pub fn receipt_roundtrip(data: &[u8]) {
    if let Ok(receipt) = Receipt::decode(data) {
        assert_canonical(data, &receipt);
        let _ = receipt.hash();
    }
    if let Ok(receipts) = BlockReceipts::decode(data) {
        assert_canonical(data, &receipts);
        let _ = receipts_root(&receipts.0);
    }
}
