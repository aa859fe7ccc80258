//! Messages validators exchange, with one canonical bounded encoding.

use borsh::{BorshDeserialize, BorshSerialize};
use keel_types::encoding::{check_len, Canonical, DecodeError};
use keel_types::limits::{MAX_BLOCK_BYTES, MAX_CERTIFICATE_BYTES};
use keel_types::{Block, Certificate, Hash, Height, SignedVote};

/// Most finalized blocks one sync response carries (bounds its size and the work to check it).
pub const MAX_SYNC_BLOCKS: usize = 64;
/// Largest encoded message: a sync response of blocks (their sum bounded by this too).
pub const MAX_MESSAGE_BYTES: usize = MAX_BLOCK_BYTES + MAX_CERTIFICATE_BYTES + 64;

#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Message {
    /// The leader's block for its view, with the leader's own notarize vote as its signature.
    Propose { block: Block, vote: SignedVote },
    /// A notarize, nullify or finalize vote.
    Vote(SignedVote),
    /// A quorum certificate, forwarded so peers that missed votes can advance.
    Certificate(Certificate),
    /// Ask for a block by hash (a notarized parent this node never received).
    BlockRequest(Hash),
    BlockResponse(Block),
    /// Ask for finalized blocks from `from_height` on.
    SyncRequest { from_height: Height },
    /// Consecutive finalized blocks and a finalization certificate for the last of them.
    SyncResponse { blocks: Vec<Block>, finalization: Certificate },
}

impl Canonical for Message {
    const KIND: &'static str = "ConsensusMessage";
    const VERSION: u8 = 1;
    const MAX_ENCODED_BYTES: usize = MAX_MESSAGE_BYTES;

    fn validate(&self) -> Result<(), DecodeError> {
        match self {
            Message::Propose { block, .. } | Message::BlockResponse(block) => block.validate(),
            Message::Certificate(cert) => cert.validate(),
            Message::SyncResponse { blocks, finalization } => {
                check_len(Self::KIND, "blocks", blocks.len(), MAX_SYNC_BLOCKS)?;
                blocks.iter().try_for_each(Canonical::validate)?;
                finalization.validate()
            }
            Message::Vote(_) | Message::BlockRequest(_) | Message::SyncRequest { .. } => Ok(()),
        }
    }
}
