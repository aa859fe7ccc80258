//! Consensus messages of the next epoch that arrive before this node has finished the current
//! one, kept until it has.
//!
//! Validators cross an epoch boundary at slightly different times. The first to finalize the
//! epoch's last block starts the next epoch's first view at once: its proposal and votes reach
//! a validator still finishing the old epoch, whose engine can only verify votes against its
//! own epoch's set and so dropped them. That validator then had no proposal in the new
//! epoch's first view, and with one validator silent the view needed its vote: a timeout at
//! every epoch boundary (found by review). Messages of epoch e + 1 are now held here and
//! replayed into the new engine when epoch e ends.
//!
//! Untrusted bytes, bounded, checked before anything is copied: at most
//! [`MAX_MESSAGES_PER_SENDER`] messages and [`MAX_BYTES_PER_SENDER`] bytes per sending peer,
//! and [`MAX_HELD_BYTES`] in all. One Byzantine peer can fill only its own share; f of
//! them, at most the total. The next epoch's set is fixed by the epoch's last block, which
//! this node may not have yet, so what an honest member would send ([`sent_by`]: a sender's
//! proposals only for views it leads, its votes only signed by itself, certificates from
//! anyone) is checked when the messages are replayed against that set.

use keel_consensus::Message;
use keel_types::{Canonical, Epoch};
use std::collections::BTreeMap;

/// Next-epoch messages kept per sender: the first views' proposal and votes, and their
/// certificates, fit many times over.
pub const MAX_MESSAGES_PER_SENDER: usize = 64;
/// Encoded bytes of next-epoch messages kept per sender: one full block and its votes.
pub const MAX_BYTES_PER_SENDER: usize = keel_types::limits::MAX_BLOCK_BYTES + 64 * 1024;
/// Encoded bytes of next-epoch messages kept in all (the engine's own block cache is
/// `keel_consensus::MAX_PENDING_BLOCK_BYTES`).
pub const MAX_HELD_BYTES: usize = 4 * MAX_BYTES_PER_SENDER;
/// Encoded bytes held from peers outside the current set (a newcomer of the next set among
/// them), all together: however many registered keys send, members keep the rest (found by
/// review: four registered non-members could fill the whole hold).
pub const MAX_NON_MEMBER_BYTES: usize = MAX_BYTES_PER_SENDER;

/// The epoch a consensus message belongs to, if it carries one (a proposal, vote or
/// certificate; block and sync traffic is epoch-free).
pub fn message_epoch(message: &Message) -> Option<Epoch> {
    match message {
        Message::Propose { vote, .. } | Message::Vote(vote) => Some(vote.vote.epoch),
        Message::Certificate(cert) => Some(cert.vote.epoch),
        _ => None,
    }
}

/// Messages of one epoch, per sender, in arrival order.
#[derive(Debug, Default)]
pub struct NextEpoch {
    epoch: Epoch,
    /// Sender → (its messages in arrival order, their encoded bytes).
    held: BTreeMap<u16, (Vec<Message>, usize)>,
    /// Encoded bytes held in all.
    bytes: usize,
    /// Of which from peers outside the current set.
    non_member_bytes: usize,
}

impl NextEpoch {
    /// Holds `message` from peer `from` (of `peers`) if it is of `next` (the epoch after the
    /// node's current one) and there is room. Returns whether it was kept. Messages of an
    /// older `next` are dropped first.
    pub fn hold(&mut self, next: Epoch, peers: usize, from: u16, message: &Message) -> bool {
        self.hold_from(next, (peers, from, true), message)
    }

    /// As [`NextEpoch::hold`]; a peer outside the current set (`member` false) shares
    /// [`MAX_NON_MEMBER_BYTES`] with every other such peer.
    pub fn hold_from(
        &mut self,
        next: Epoch,
        (peers, from, member): (usize, u16, bool),
        message: &Message,
    ) -> bool {
        if message_epoch(message) != Some(next) || usize::from(from) >= peers {
            return false;
        }
        if self.epoch != next {
            self.held.clear();
            self.bytes = 0;
            self.non_member_bytes = 0;
            self.epoch = next;
        }
        let (messages, bytes) = self.held.entry(from).or_default();
        if messages.len() >= MAX_MESSAGES_PER_SENDER || *bytes >= MAX_BYTES_PER_SENDER {
            return false;
        }
        let len = message.encode().len();
        if bytes.saturating_add(len) > MAX_BYTES_PER_SENDER
            || self.bytes.saturating_add(len) > MAX_HELD_BYTES
            || (!member && self.non_member_bytes.saturating_add(len) > MAX_NON_MEMBER_BYTES)
        {
            return false;
        }
        *bytes += len;
        self.bytes += len;
        if !member {
            self.non_member_bytes += len;
        }
        messages.push(message.clone());
        true
    }

    /// Everything held for `epoch`, sender by sender in arrival order; the rest is dropped.
    pub fn take(&mut self, epoch: Epoch) -> Vec<(u16, Message)> {
        let held = std::mem::take(&mut self.held);
        self.bytes = 0;
        self.non_member_bytes = 0;
        if self.epoch != epoch {
            return Vec::new();
        }
        held.into_iter()
            .flat_map(|(from, (messages, _))| messages.into_iter().map(move |m| (from, m)))
            .collect()
    }

    /// Whether a peer outside the current set could have anything more held (checked
    /// before its signature is: a full share costs no more work).
    pub fn non_member_room(&self) -> bool {
        self.non_member_bytes < MAX_NON_MEMBER_BYTES
    }

    /// Messages held (tests and metrics).
    pub fn len(&self) -> usize {
        self.held.values().map(|(m, _)| m.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether `message` is what member `from` of `set` would honestly send:
/// its own votes, proposals for views it leads naming that view, and any certificate.
pub fn sent_by(set: &keel_consensus::ValidatorSet, from: u16, message: &Message) -> bool {
    if usize::from(from) >= set.len() {
        return false;
    }
    match message {
        Message::Propose { block, vote } => {
            vote.signer == from
                && block.header.epoch == vote.vote.epoch
                && block.header.view == vote.vote.view
                && set.leader(vote.vote.view) == from
        }
        Message::Vote(vote) => vote.signer == from,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_types::{Hash, SecretKey, SignedVote, Vote, VoteKind};

    fn vote(epoch: Epoch, view: u64, signer: u16) -> Message {
        let vote = Vote {
            chain_id: 1,
            kind: VoteKind::Nullify,
            epoch,
            view,
            block: Hash::ZERO,
        };
        let key = SecretKey::from_seed([signer as u8 + 1; 32]);
        Message::Vote(SignedVote {
            signature: key.sign(&vote.signing_hash().0),
            vote,
            signer,
        })
    }

    #[test]
    fn only_the_next_epochs_messages_are_held_and_replayed_in_order() {
        let mut next = NextEpoch::default();
        assert!(
            !next.hold(3, 4, 1, &vote(2, 10, 1)),
            "the current epoch goes to the engine"
        );
        assert!(
            !next.hold(3, 4, 1, &vote(4, 10, 1)),
            "two epochs ahead: not held"
        );
        assert!(!next.hold(3, 4, 1, &Message::BlockRequest(Hash::ZERO)));
        assert!(next.hold(3, 4, 1, &vote(3, 11, 1)));
        assert!(next.hold(3, 4, 2, &vote(3, 11, 2)));
        assert!(next.hold(3, 4, 1, &vote(3, 12, 1)));
        assert_eq!(next.len(), 3);
        let replay = next.take(3);
        let order: Vec<(u16, u64)> = replay
            .iter()
            .map(|(from, m)| match m {
                Message::Vote(v) => (*from, v.vote.view),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(order, [(1, 11), (1, 12), (2, 11)]);
        assert!(next.is_empty());
        // Held for an epoch the node skipped (it synced past it): dropped.
        assert!(next.hold(4, 4, 1, &vote(4, 20, 1)));
        assert!(next.take(5).is_empty());
        assert!(next.is_empty());
    }

    /// A Byzantine validator flooding next-epoch messages fills only its own share: an
    /// honest validator's messages are still held.
    #[test]
    fn a_flooding_sender_fills_only_its_own_share() {
        let mut next = NextEpoch::default();
        let kept = (0..10_000)
            .filter(|view| next.hold(1, 4, 3, &vote(1, *view, 3)))
            .count();
        assert_eq!(kept, MAX_MESSAGES_PER_SENDER);
        assert!(next.hold(1, 4, 0, &vote(1, 5, 0)));
        assert_eq!(next.len(), MAX_MESSAGES_PER_SENDER + 1);
        let replay = next.take(1);
        assert!(replay.iter().any(|(from, _)| *from == 0));
    }

    /// Found by review: registered peers outside the set could fill the whole hold. They
    /// share one sender's room; a member's message is still held.
    #[test]
    fn peers_outside_the_set_share_one_senders_room() {
        let mut next = NextEpoch::default();
        let mut kept = 0;
        for peer in 4..40u16 {
            for view in 0..64 {
                if next.hold_from(1, (40, peer, false), &vote(1, view, peer)) {
                    kept += 1;
                }
            }
        }
        let bytes = vote(1, 0, 4).encode().len();
        assert!(kept * bytes <= MAX_NON_MEMBER_BYTES && kept > 0, "{kept}");
        assert!(next.hold_from(1, (40, 0, true), &vote(1, 5, 0)));
    }

    fn set4() -> keel_consensus::ValidatorSet {
        let keys = (0..4u8)
            .map(|i| SecretKey::from_seed([i + 1; 32]).public_key())
            .collect();
        keel_consensus::ValidatorSet::equal(1, keys)
    }

    /// Only what the sender would honestly send is replayed: its own votes, and proposals
    /// for views it leads naming that view; nothing from an index outside the set.
    #[test]
    fn relayed_votes_and_other_leaders_proposals_are_not_replayed() {
        let mut next = NextEpoch::default();
        assert!(
            !sent_by(&set4(), 2, &vote(1, 9, 3)),
            "validator 3's vote sent by 2"
        );
        assert!(
            !sent_by(&set4(), 9, &vote(1, 9, 9)),
            "no validator 9 in a set of 4"
        );
        assert!(!next.hold(1, 4, 9, &vote(1, 9, 9)), "no peer 9 of 4");
        let propose = |view: u64, signer: u16, header_view: u64| {
            let key = SecretKey::from_seed([signer as u8 + 1; 32]);
            let block = keel_types::Block {
                header: keel_types::Header {
                    chain_id: 1,
                    height: 1,
                    epoch: 1,
                    view: header_view,
                    parent_hash: Hash::ZERO,
                    proposer: key.public_key(),
                    timestamp_ms: 0,
                    tx_root: keel_types::block::tx_root(&[]),
                    parent_state_root: Hash::ZERO,
                    parent_receipts_root: Hash::ZERO,
                    archive_root: Hash::ZERO,
                },
                transactions: Vec::new(),
            };
            let v = Vote {
                chain_id: 1,
                kind: VoteKind::Notarize,
                epoch: 1,
                view,
                block: block.hash(),
            };
            Message::Propose {
                block,
                vote: SignedVote {
                    signature: key.sign(&v.signing_hash().0),
                    vote: v,
                    signer,
                },
            }
        };
        // View 9's leader among 4 is 1.
        assert!(
            !sent_by(&set4(), 2, &propose(9, 2, 9)),
            "not the leader of view 9"
        );
        assert!(
            !sent_by(&set4(), 1, &propose(9, 1, 10)),
            "header names another view"
        );
        assert!(sent_by(&set4(), 1, &propose(9, 1, 9)));
        assert!(next.hold(1, 4, 1, &propose(9, 1, 9)));
        assert_eq!(next.len(), 1);
    }
}
