//! The scripted faults of one message each: an equivocating leader, a double voter, and the
//! forged `[X, T]` sync response (`Fault::Byzantine`, the free adversary, is in `byzantine`).

use super::{Fault, Sim};
use keel_consensus::Message;
use keel_types::{Block, Certificate, Hash, Vote, VoteKind};

impl Sim {
    /// `Fault::ForgedSync`: `[X, T]` with T's real certificate, X invented on T.
    pub(super) fn forge_sync(&mut self, node: usize, t: Block, cert: Certificate) {
        let mut x = self.make_block(
            node,
            t.header.view.saturating_add(1),
            t.hash(),
            t.header.height.saturating_add(1),
            0xbad,
        );
        x.header.epoch = t.header.epoch;
        let message = Message::SyncResponse {
            blocks: vec![x, t],
            headers: vec![],
            finalization: cert,
        };
        self.report.forged_sync_responses += 1;
        self.broadcast(node, &message);
    }

    /// Broadcast, with Byzantine rewrites for faulty validators.
    pub(super) fn byzantine_broadcast(&mut self, node: usize, message: Message) {
        let fault = self.nodes[node].fault;
        match (&message, fault) {
            (Message::Propose { block, vote }, Fault::EquivocatingLeader) => {
                let mut other = block.clone();
                other.header.timestamp_ms += 1;
                let other_vote = self.sign(
                    node,
                    Vote {
                        block: other.hash(),
                        ..vote.vote
                    },
                );
                for to in 0..self.s.n as u16 {
                    let m = if to % 2 == 0 {
                        message.clone()
                    } else {
                        Message::Propose {
                            block: other.clone(),
                            vote: other_vote,
                        }
                    };
                    self.send(node, to, m);
                }
            }
            (Message::Vote(vote), Fault::DoubleVoter) => {
                let conflicting = match vote.vote.kind {
                    VoteKind::Notarize => Vote {
                        block: Hash([0xee; 32]),
                        ..vote.vote
                    },
                    VoteKind::Finalize => Vote {
                        kind: VoteKind::Nullify,
                        block: Hash::ZERO,
                        ..vote.vote
                    },
                    VoteKind::Nullify => Vote {
                        kind: VoteKind::Finalize,
                        block: Hash([0xee; 32]),
                        ..vote.vote
                    },
                };
                let conflicting = self.sign(node, conflicting);
                for to in 0..self.s.n as u16 {
                    let m = if to % 2 == 0 {
                        message.clone()
                    } else {
                        Message::Vote(conflicting)
                    };
                    self.send(node, to, m);
                }
            }
            _ => {
                if let Message::Vote(vote) | Message::Propose { vote, .. } = &message {
                    self.note_vote(node, vote);
                }
                self.broadcast(node, &message);
            }
        }
    }
}
