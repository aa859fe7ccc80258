//! Expiry bookkeeping done inside each commit's batch: the touch index the sweep reads, the
//! value-history index the pruner reads, the entry counters, and the archive (when kept).

use crate::schema::*;
use crate::tree::RecordReader;
use keel_state::StateError;
use keel_state::{ArchiveBatch, StateDiff};
use keel_state::{Entry, EntryKind};

use keel_types::fold::{
    Absence, FoldedRevival, FoldedStub, PageLeafProof, UnflagProof, MAX_ABSENCES_PER_REVIVAL,
};
use keel_types::{Height, StateKey};
use rocksdb::{WriteBatch, DB};

/// Counts of entries that take part in expiry, kept exactly by every commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpiryCounts {
    /// Live accounts, code and slots.
    pub active: u64,
    /// Expired stubs in the active tree.
    pub expired: u64,
    /// Revivals ever committed.
    pub revived: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Absent,
    Live(u64),
    Stub(u64),
}

fn kind(raw: Option<&[u8]>) -> Result<Kind, StateError> {
    Ok(match raw.map(Entry::kind).transpose()? {
        None => Kind::Absent,
        Some(EntryKind::Live { touched_epoch }) => Kind::Live(touched_epoch),
        Some(EntryKind::Expired { epoch }) => Kind::Stub(epoch),
    })
}

fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a rocksdb::ColumnFamily, StateError> {
    db.cf_handle(name)
        .ok_or_else(|| StateError::Corrupt(format!("missing column family {name}")))
}

pub(crate) fn read_counter(db: &DB, name: &[u8]) -> Result<u64, StateError> {
    Ok(db
        .get_cf(cf(db, CF_META)?, name)
        .map_err(StateError::db)?
        .and_then(|raw| decode_height(&raw))
        .unwrap_or(0))
}

/// Adds the index and counter updates for committing `diff` at `height` (the previous
/// commit is `height - 1`) to `batch`; the touch index only if `index_touches`.
pub(crate) fn bookkeep(
    db: &DB,
    batch: &mut WriteBatch,
    height: Height,
    (diff, key_hashes): (&StateDiff, &[[u8; 32]]),
    folded_revivals: u64,
    index_touches: bool,
) -> Result<(), StateError> {
    let touch = cf(db, CF_TOUCH)?;
    let stubs = cf(db, CF_STUBS)?;
    let history = cf(db, CF_HISTORY)?;
    let mut counts = ExpiryCounts {
        active: read_counter(db, META_ACTIVE)?,
        expired: read_counter(db, META_EXPIRED)?,
        revived: read_counter(db, META_REVIVED)? + folded_revivals,
    };
    let mut storage = crate::storage_count::Deltas::default();
    if diff.len() != key_hashes.len() {
        return Err(StateError::Corrupt("a key hash per written key".into()));
    }
    let mut previous_records =
        RecordReader::new(db).map_err(|e| StateError::Tree(format!("{e:#}")))?;
    for ((key, new), key_hash) in diff.iter().zip(key_hashes) {
        let key_hash = *key_hash;
        let old = match height.checked_sub(1) {
            None => None,
            Some(previous) => previous_records
                .newest_at(&key_hash, previous)
                .map_err(|e| StateError::Tree(format!("{e:#}")))?,
        };
        storage.record(
            key,
            old.as_ref().and_then(|(_, r)| r.as_deref()),
            new.as_deref(),
        )?;
        if let Some((old_height, _)) = &old {
            batch.put_cf(history, history_key(height, &key_hash, *old_height), []);
        }
        if new.is_none() {
            // A delete supersedes itself: once pruned past, the key reads as absent anyway.
            batch.put_cf(history, history_key(height, &key_hash, height), []);
        }
        if !key.expires() {
            continue;
        }
        let old_kind = kind(old.as_ref().and_then(|(_, r)| r.as_deref()))?;
        let new_kind = kind(new.as_deref())?;
        match old_kind {
            Kind::Live(epoch) => {
                if index_touches {
                    batch.delete_cf(touch, touch_key(epoch, &key_hash));
                }
                counts.active -= 1;
            }
            Kind::Stub(epoch) => {
                if index_touches {
                    batch.delete_cf(stubs, touch_key(epoch, &key_hash));
                }
                counts.expired -= 1;
            }
            Kind::Absent => {}
        }
        match new_kind {
            Kind::Live(epoch) => {
                if index_touches {
                    // No value: the key is its preimage, written beside it (an index
                    // entry per touched key, rewritten by every commit that touches it).
                    batch.put_cf(touch, touch_key(epoch, &key_hash), []);
                }
                counts.active += 1;
                if matches!(old_kind, Kind::Stub(_)) {
                    counts.revived += 1;
                }
            }
            Kind::Stub(epoch) => {
                if index_touches {
                    batch.put_cf(stubs, touch_key(epoch, &key_hash), []);
                }
                counts.expired += 1;
            }
            Kind::Absent => {}
        }
    }
    storage.write(db, batch)?;
    let meta = cf(db, CF_META)?;
    batch.put_cf(meta, META_ACTIVE, counts.active.to_be_bytes());
    batch.put_cf(meta, META_EXPIRED, counts.expired.to_be_bytes());
    batch.put_cf(meta, META_REVIVED, counts.revived.to_be_bytes());
    Ok(())
}

pub(crate) fn counts(db: &DB) -> Result<ExpiryCounts, StateError> {
    Ok(ExpiryCounts {
        active: read_counter(db, META_ACTIVE)?,
        expired: read_counter(db, META_EXPIRED)?,
        revived: read_counter(db, META_REVIVED)?,
    })
}

pub(crate) fn write_archive(
    db: &DB,
    batch: &mut WriteBatch,
    archive: &ArchiveBatch,
) -> Result<(), StateError> {
    let cf = cf(db, CF_ARCHIVE)?;
    for leaf in &archive.leaves {
        let encoded = borsh::to_vec(leaf).map_err(|e| StateError::Corrupt(e.to_string()))?;
        batch.put_cf(cf, archive_leaf_key(leaf.index), encoded);
    }
    for (level, index, hash) in &archive.nodes {
        batch.put_cf(cf, archive_node_key(*level, *index), hash.0);
    }
    for (page, stubs) in &archive.folds {
        for stub in stubs {
            let encoded = borsh::to_vec(stub).map_err(|e| StateError::Corrupt(e.to_string()))?;
            batch.put_cf(cf, fold_list_key(*page, &stub.key_hash.0), encoded);
        }
    }
    Ok(())
}

/// Up to `limit` keys of an (epoch ‖ key hash) index (`CF_TOUCH`: live entries last
/// touched before `before_epoch`; `CF_STUBS`: stubs expired before it), oldest first. Each
/// key is its hash's preimage (an indexed entry is in the state, so its preimage is kept),
/// or the index value itself in a store written before the values were dropped.
pub(crate) fn candidates(
    db: &DB,
    index: &str,
    before_epoch: u64,
    limit: usize,
) -> Result<Vec<StateKey>, StateError> {
    let corrupt = |e: keel_types::DecodeError| StateError::Corrupt(format!("{index} key: {e}"));
    // The keys, or for an empty value the hash whose preimage is the key.
    let mut found: Vec<Result<StateKey, [u8; 32]>> = Vec::new();
    let end = touch_key(before_epoch, &[0; 32]);
    let mut iter = db.raw_iterator_cf(cf(db, index)?);
    iter.seek_to_first();
    while found.len() < limit {
        let (Some(k), Some(v)) = (iter.key(), iter.value()) else {
            break;
        };
        if k >= &end[..] {
            break;
        }
        found.push(if v.is_empty() {
            let hash = k
                .get(8..)
                .and_then(|h| <[u8; 32]>::try_from(h).ok())
                .ok_or_else(|| StateError::Corrupt(format!("{index}: a short key")))?;
            Err(hash)
        } else {
            Ok(StateKey::from_bytes(v).map_err(corrupt)?)
        });
        iter.next();
    }
    iter.status().map_err(StateError::db)?;
    let hashes: Vec<[u8; 32]> = found
        .iter()
        .filter_map(|f| f.as_ref().err().copied())
        .collect();
    let mut preimages = db
        .batched_multi_get_cf(cf(db, CF_PREIMAGES)?, &hashes, false)
        .into_iter();
    found
        .into_iter()
        .map(|f| match f {
            Ok(key) => Ok(key),
            Err(_) => match preimages.next() {
                Some(Ok(Some(raw))) => StateKey::from_bytes(&raw).map_err(corrupt),
                Some(Err(e)) => Err(StateError::db(e)),
                Some(Ok(None)) | None => Err(StateError::Corrupt(format!(
                    "{index}: an indexed key without its preimage"
                ))),
            },
        })
        .collect()
}

/// Why this node cannot build a revival proof.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofUnavailable {
    #[error("{0} is not expired")]
    NotExpired(StateKey),
    #[error("this node does not keep the expiry archive (storage.keep_archive = false); ask a node that does")]
    NoArchive,
    #[error("no archive is sealed for epoch {0} (archives seal when their epoch ends)")]
    Unsealed(u64),
    #[error("{0} is archived (a fold page holds it): ask for its revival proof")]
    Archived(StateKey),
    #[error("{key} is flagged by {pages} fold pages, more than an unflag can carry ({max})")]
    TooManyFlags {
        key: StateKey,
        pages: usize,
        max: usize,
    },
    #[error("leaf {leaf} is not in the archive sealed for epoch {sealed_epoch} ({leaf_count} leaves): use a later epoch")]
    NotYetArchived {
        leaf: u64,
        sealed_epoch: u64,
        leaf_count: u64,
    },
}

/// Why a proof builder returned no proof: this node cannot build it, or the store failed.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error(transparent)]
    Unavailable(#[from] ProofUnavailable),
    #[error(transparent)]
    State(#[from] StateError),
}

struct StoreNodes<'a>(&'a crate::Store);

impl keel_types::archive::ArchiveNodes for StoreNodes<'_> {
    type Error = StateError;
    fn node(&self, level: u32, index: u64) -> Result<Option<keel_types::Hash>, StateError> {
        self.0.archive_node(level, index)
    }
}

impl crate::Store {
    /// The sorted stub list of fold page `page` (archive nodes keep it).
    fn fold_list(&self, page: u64) -> Result<Vec<FoldedStub>, StateError> {
        use borsh::BorshDeserialize;
        let prefix = fold_list_key(page, &[0; 32]);
        let mut out = Vec::new();
        let mut iter = self.db.raw_iterator_cf(cf(&self.db, CF_ARCHIVE)?);
        iter.seek(prefix);
        while let (Some(k), Some(v)) = (iter.key(), iter.value()) {
            if !k.starts_with(&prefix[..9]) {
                break;
            }
            out.push(
                FoldedStub::try_from_slice(v)
                    .map_err(|e| StateError::Corrupt(format!("fold page {page} list: {e}")))?,
            );
            iter.next();
        }
        iter.status().map_err(StateError::db)?;
        Ok(out)
    }

    /// Where the latest version of `key`, absent from the tree at `height`, was folded: the
    /// page's record of it (expiry epoch, archive leaf) and the fold proof (membership in the
    /// newest page holding it, absence from every later page that flags it). `None` if no page
    /// holds it (never expired, or deleted).
    fn folded_version(
        &self,
        key: &StateKey,
        height: Height,
    ) -> Result<Option<(FoldedStub, FoldedRevival)>, StateError> {
        let key_hash = key.key_hash();
        let flagged = keel_state::fold::flagging_pages(&self.view(height)?, key)?;
        let archive = cf(&self.db, CF_ARCHIVE)?;
        let mut later = Vec::new();
        for (page, _) in flagged.iter().rev() {
            if self
                .db
                .get_cf(archive, fold_list_key(*page, &key_hash.0))
                .map_err(StateError::db)?
                .is_none()
            {
                later.push(*page);
                continue;
            }
            let list = self.fold_list(*page)?;
            let position = list
                .binary_search_by(|s| s.key_hash.cmp(&key_hash))
                .map_err(|_| StateError::Corrupt(format!("fold page {page} list")))?;
            let member = PageLeafProof::build(&list, position)
                .ok_or_else(|| StateError::Corrupt(format!("fold page {page} list")))?;
            let mut absent = Vec::with_capacity(later.len());
            for q in later.iter().rev() {
                absent.push(
                    Absence::build(*q, &self.fold_list(*q)?, &key_hash).ok_or_else(|| {
                        StateError::Corrupt(format!("fold page {q} holds {key} twice"))
                    })?,
                );
            }
            let stub = member.stub;
            return Ok(Some((
                stub,
                FoldedRevival {
                    page: *page,
                    member,
                    absent,
                },
            )));
        }
        Ok(None)
    }

    /// The unflag proof of `key`: absent from the tree at the latest commit, flagged by fold
    /// pages that do not hold it (a filter false positive).
    pub fn unflag_proof(&self, key: &StateKey) -> Result<UnflagProof, ProofError> {
        let height = self.latest().map_or(0, |l| l.height);
        match self.entry(key, height)? {
            Some(Entry::Expired { .. }) => {
                return Err(ProofUnavailable::Archived(key.clone()).into())
            }
            Some(Entry::Live { .. }) => {
                return Err(ProofUnavailable::NotExpired(key.clone()).into())
            }
            None => {}
        }
        if !self.keeps_archive() {
            return Err(ProofUnavailable::NoArchive.into());
        }
        let flagged = keel_state::fold::flagging_pages(&self.view(height)?, key)?;
        if flagged.is_empty() {
            return Err(ProofUnavailable::NotExpired(key.clone()).into());
        }
        if flagged.len() > MAX_ABSENCES_PER_REVIVAL {
            return Err(ProofUnavailable::TooManyFlags {
                key: key.clone(),
                pages: flagged.len(),
                max: MAX_ABSENCES_PER_REVIVAL,
            }
            .into());
        }
        let key_hash = key.key_hash();
        let mut absent = Vec::with_capacity(flagged.len());
        for (page, _) in flagged {
            match Absence::build(page, &self.fold_list(page)?, &key_hash) {
                Some(a) => absent.push(a),
                None => return Err(ProofUnavailable::Archived(key.clone()).into()),
            }
        }
        Ok(UnflagProof {
            key: key.clone(),
            absent,
        })
    }

    /// The revival proof of expired `key` (as of the latest commit) against the archive
    /// sealed at the end of `sealed_epoch` — from its stub, or, once the stub was folded, from
    /// the fold pages.
    pub fn revival_proof(
        &self,
        key: &StateKey,
        sealed_epoch: u64,
    ) -> Result<keel_types::archive::RevivalProof, ProofError> {
        use keel_types::archive::{prove, RevivalProof, SealedArchive};
        use keel_types::Canonical;
        let height = self.latest().map_or(0, |l| l.height);
        let (epoch, leaf, folded) = match self.entry(key, height)? {
            Some(Entry::Expired { epoch, leaf }) => (epoch, leaf, None),
            Some(Entry::Live { .. }) => {
                return Err(ProofUnavailable::NotExpired(key.clone()).into())
            }
            None => {
                if !self.keeps_archive() {
                    return Err(ProofUnavailable::NoArchive.into());
                }
                match self.folded_version(key, height)? {
                    Some((stub, folded)) => (stub.epoch, stub.leaf, Some(folded)),
                    None => return Err(ProofUnavailable::NotExpired(key.clone()).into()),
                }
            }
        };
        if !self.keeps_archive() {
            return Err(ProofUnavailable::NoArchive.into());
        }
        let Some(raw) = self.get(&StateKey::ArchiveRoot(sealed_epoch), height)? else {
            return Err(ProofUnavailable::Unsealed(sealed_epoch).into());
        };
        let sealed = SealedArchive::decode(&raw).map_err(StateError::decode("sealed archive"))?;
        let Some((siblings, other_peaks)) = prove(&StoreNodes(self), sealed.leaf_count, leaf)?
        else {
            return Err(ProofUnavailable::NotYetArchived {
                leaf,
                sealed_epoch,
                leaf_count: sealed.leaf_count,
            }
            .into());
        };
        let archived = self
            .archive_leaf(leaf)?
            .ok_or_else(|| StateError::Corrupt(format!("archive leaf {leaf} is missing")))?;
        Ok(RevivalProof {
            key: key.clone(),
            value: archived.value,
            expired_epoch: epoch,
            leaf_index: leaf,
            sealed_epoch,
            siblings,
            other_peaks,
            folded,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CommitRequest, Store, StoreOptions};
    use keel_types::Address;

    fn slot(i: u8) -> StateKey {
        StateKey::Storage(Address([i; 20]), [i; 32])
    }

    /// The index holds no key bytes: each candidate is read back from its preimage. A store
    /// written before (the key bytes as the index value) reads the same, and an indexed key
    /// without a preimage is corruption, not a silently shorter list.
    #[test]
    fn candidates_are_read_from_preimages_and_from_the_old_values() {
        let dir = tempfile::tempdir().expect("test step");
        let store = Store::open(dir.path(), StoreOptions::default()).expect("test step");
        let keys: Vec<StateKey> = (0..6).map(slot).collect();
        let diff: StateDiff = keys
            .iter()
            .map(|k| (k.clone(), Some(keel_state::encode_live(0, &[7]))))
            .collect();
        store
            .commit(CommitRequest {
                height: 0,
                diff: &diff,
                block: None,
                receipts: &[],
                archive: &ArchiveBatch::default(),
            })
            .expect("test step");
        let db = &store.db;
        let touch = cf(db, CF_TOUCH).expect("test step");
        let mut by_hash = keys.clone();
        by_hash.sort_by_key(|k| k.key_hash().0);
        let index_value = |k: &StateKey| {
            db.get_cf(touch, touch_key(0, &k.key_hash().0))
                .expect("test step")
        };
        assert!(keys.iter().all(|k| index_value(k) == Some(Vec::new())));
        // Two entries as an older store wrote them.
        for k in &by_hash[1..3] {
            db.put_cf(touch, touch_key(0, &k.key_hash().0), k.to_bytes())
                .expect("test step");
        }
        assert_eq!(
            candidates(db, CF_TOUCH, 1, 100).expect("test step"),
            by_hash
        );
        assert_eq!(
            candidates(db, CF_TOUCH, 1, 4).expect("test step"),
            by_hash[..4]
        );
        assert!(candidates(db, CF_TOUCH, 0, 100)
            .expect("test step")
            .is_empty());
        let preimages = cf(db, CF_PREIMAGES).expect("test step");
        db.delete_cf(preimages, by_hash[4].key_hash().0)
            .expect("test step");
        assert!(matches!(
            candidates(db, CF_TOUCH, 1, 100),
            Err(StateError::Corrupt(_))
        ));
    }
}
