//! Messages validators exchange, with one canonical bounded encoding.

use borsh::{BorshDeserialize, BorshSerialize};
use keel_types::encoding::{check_len, Canonical, DecodeError};
use keel_types::limits::{MAX_BLOCK_BYTES, MAX_CERTIFICATE_BYTES};
use keel_types::{Block, Certificate, Hash, Header, Height, SignedVote};

/// Most finalized blocks one sync response carries (bounds its size and the work to check it).
pub const MAX_SYNC_BLOCKS: usize = 64;
/// Most headers a sync response may carry to link its blocks to a certified block further on
/// (blocks finalized only through a descendant have no certificate of their own).
pub const MAX_SYNC_HEADERS: usize = 4096;
/// Largest encoded message: a sync response of blocks (their sum bounded by this too).
pub const MAX_MESSAGE_BYTES: usize = MAX_BLOCK_BYTES + MAX_CERTIFICATE_BYTES + 64;

#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Message {
    /// The leader's block for its view, with the leader's own notarize vote as its signature.
    Propose {
        block: Block,
        vote: SignedVote,
    },
    /// A notarize, nullify or finalize vote.
    Vote(SignedVote),
    /// A quorum certificate, forwarded so peers that missed votes can advance.
    Certificate(Certificate),
    /// Ask for a block by hash (a notarized parent this node never received).
    BlockRequest(Hash),
    BlockResponse(Block),
    /// Ask for finalized blocks from `from_height` on.
    SyncRequest {
        from_height: Height,
    },
    /// Consecutive finalized blocks, then the consecutive headers after them up to a block
    /// with a finalization certificate (`headers` is empty when the last block has one).
    SyncResponse {
        blocks: Vec<Block>,
        headers: Vec<Header>,
        finalization: Certificate,
    },
    /// The answer to a `SyncRequest` for heights this node has pruned: it keeps blocks from
    /// `oldest_retained` on only. Unauthenticated, so a requester only reports it.
    SyncPruned {
        from_height: Height,
        oldest_retained: Height,
    },
}

impl Canonical for Message {
    const KIND: &'static str = "ConsensusMessage";
    const VERSION: u8 = 1;
    const MAX_ENCODED_BYTES: usize = MAX_MESSAGE_BYTES;

    fn validate(&self) -> Result<(), DecodeError> {
        match self {
            Message::Propose { block, .. } | Message::BlockResponse(block) => block.validate(),
            Message::Certificate(cert) => cert.validate(),
            Message::SyncResponse {
                blocks,
                headers,
                finalization,
            } => {
                check_len(Self::KIND, "blocks", blocks.len(), MAX_SYNC_BLOCKS)?;
                check_len(Self::KIND, "headers", headers.len(), MAX_SYNC_HEADERS)?;
                blocks.iter().try_for_each(Canonical::validate)?;
                finalization.validate()
            }
            Message::Vote(_)
            | Message::BlockRequest(_)
            | Message::SyncRequest { .. }
            | Message::SyncPruned { .. } => Ok(()),
        }
    }
}
