//! Revival and unflag proofs: the decode and verify path of a `Revive` / `Unflag`
//! transaction (pruning/src/revival.rs), without the state: the proof is checked against
//! archives and fold pages built from its own claims, so the path checks run on every shape
//! of input, and against the real root when the input is a real proof.

use crate::assert_canonical;
use keel_types::archive::{ArchiveProofError, RevivalProof, SealedArchive};
use keel_types::fold::{FoldPage, FoldedStub, UnflagProof};
use keel_types::receipt::{ArchiveProofCode, FoldProofCode, ProofDecodeError};
use keel_types::Canonical;

/// Archive sizes each decoded proof is checked against: the smallest that holds its leaf,
/// the largest, and the ones its other fields name.
fn archive_sizes(proof: &RevivalProof) -> [u64; 4] {
    [
        proof.leaf_index.saturating_add(1),
        u64::MAX,
        proof.sealed_epoch,
        proof.expired_epoch,
    ]
}

/// `RevivalProof::decode` as `check_revival` calls it, then the archive inclusion check and,
/// for a folded entry, the fold page membership and absence checks.
pub fn revival_proof(data: &[u8]) {
    let proof = match RevivalProof::decode(data) {
        Ok(proof) => proof,
        Err(e) => {
            // The receipt code of the refusal.
            let _ = ProofDecodeError::from(&e);
            return;
        }
    };
    assert_canonical(data, &proof);
    let leaf = proof.leaf_hash();
    for leaf_count in archive_sizes(&proof) {
        let sealed = SealedArchive {
            leaf_count,
            root: leaf,
        };
        if let Err(e) = proof.verify(&sealed) {
            let _ = ArchiveProofCode::from(&e);
            if proof.leaf_index >= leaf_count {
                assert!(matches!(e, ArchiveProofError::OutOfRange { .. }));
            }
        }
    }
    if let Some(folded) = &proof.folded {
        let key_hash = proof.key.key_hash();
        // A one-key page of the member's stub: its own proof must verify against it only
        // when the path is empty (a one-leaf tree).
        let page = FoldPage::build(folded.page, &[folded.member.stub]);
        let member = page.verify_leaf(&folded.member);
        if let Err(e) = &member {
            let _ = FoldProofCode::from(e);
        }
        if folded.member.position == 0
            && folded.member.siblings.is_empty()
            && folded.member.other_peaks.is_empty()
        {
            assert_eq!(member, Ok(()), "a one-leaf page proves its only leaf");
        }
        for absence in &folded.absent {
            let _ = page.flags(absence.page, &key_hash);
            if let Err(e) = page.verify_absent(&key_hash, absence) {
                let _ = FoldProofCode::from(&e);
            }
        }
    }
}

/// `UnflagProof::decode` as `check_unflag` calls it, then the absence check against pages
/// built from the proof's own leaves.
pub fn unflag_proof(data: &[u8]) {
    let proof = match UnflagProof::decode(data) {
        Ok(proof) => proof,
        Err(e) => {
            let _ = ProofDecodeError::from(&e);
            return;
        }
    };
    assert_canonical(data, &proof);
    let key_hash = proof.key.key_hash();
    for absence in &proof.absent {
        let mut sorted: Vec<FoldedStub> = absence
            .below
            .iter()
            .chain(&absence.above)
            .map(|leaf| leaf.stub)
            .collect();
        sorted.sort_by_key(|s| s.key_hash);
        sorted.dedup_by_key(|s| s.key_hash);
        if sorted.is_empty() {
            // An absence with no leaves: checked against a page that holds only the key.
            sorted.push(FoldedStub {
                key_hash,
                epoch: 0,
                leaf: 0,
            });
        }
        let page = FoldPage::build(absence.page, &sorted);
        let _ = page.flags(absence.page, &key_hash);
        if let Err(e) = page.verify_absent(&key_hash, absence) {
            let _ = FoldProofCode::from(&e);
        }
        // The decoded page encoding round-trips too (it is what state stores).
        let bytes = page.encode();
        assert_eq!(FoldPage::decode(&bytes).as_ref(), Ok(&page));
    }
}
