//! keel-consensus: the BFT sequencer as a pure state machine (Simplex: propose → notarize →
//! finalize, nullify on timeout) plus the durable vote log that keeps a restarted validator
//! from ever signing two conflicting messages. No clock, RNG, threads or network inside: a
//! driver feeds [`Input`]s and carries out the [`Action`]s (see docs/consensus.md).

#![forbid(unsafe_code)]

mod engine;
mod message;
mod quorum;
pub mod votelog;

pub use engine::{
    Action, Config, Engine, Input, Retained, MAX_PENDING_BLOCK_BYTES, MAX_PROPOSALS_PER_VIEW,
    MAX_RESEND_VIEWS, MAX_UNCERTIFIED_PARENTS_PER_VIEW,
};
pub use message::{Message, MAX_MESSAGE_BYTES, MAX_SYNC_BLOCKS, MAX_SYNC_HEADERS};
pub use quorum::{
    leader_of, leader_schedule, quorum_size, verify_certificate, CertificateError, ValidatorSet,
};
pub use votelog::{FileVoteLog, VoteLogError, VoteRecord};
