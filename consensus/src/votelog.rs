//! The vote log: what a validator has signed, made durable (fsync) before the signed message
//! may leave the node, so that after a crash at any point it never signs a conflicting one.
//!
//! Format: an append-only file of records, each `len (u32 LE) ‖ borsh(VoteRecord) ‖
//! blake3(len ‖ body)[..8]`. A crash can tear only the last record; `open` detects it by
//! length or checksum, truncates the tail, and returns the intact records. A torn record was
//! never acknowledged, so the message that depended on it was never sent. Damage anywhere
//! else is not a crash: the votes after it would be lost and the validator could sign twice,
//! so `open` refuses ([`torn_tail`] tells the two apart). What stays ambiguous is damage
//! that leaves no whole record after it within one frame's length: a damaged last record,
//! or the last two short ones (29 bytes each) both damaged, say by a lost write at the end
//! of the file. It looks like a torn append and is cut.

use borsh::{BorshDeserialize, BorshSerialize};
use keel_types::{Epoch, Hash, View};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// One safety-relevant fact about this validator's own signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum VoteRecord {
    /// Entered `view` of `epoch` (views never go back after a restart).
    EnteredView { epoch: Epoch, view: View },
    /// Signed notarize(view, block): no other block may be notarized in this view.
    Notarized {
        epoch: Epoch,
        view: View,
        block: Hash,
    },
    /// Signed nullify(view): finalize(view) may never be signed.
    Nullified { epoch: Epoch, view: View },
    /// Signed finalize(view, block): nullify(view) may never be signed.
    Finalized {
        epoch: Epoch,
        view: View,
        block: Hash,
    },
}

impl VoteRecord {
    /// The epoch the record binds.
    pub fn epoch(&self) -> Epoch {
        match *self {
            VoteRecord::EnteredView { epoch, .. }
            | VoteRecord::Notarized { epoch, .. }
            | VoteRecord::Nullified { epoch, .. }
            | VoteRecord::Finalized { epoch, .. } => epoch,
        }
    }
}

/// Largest encoded record body (bounds what `open` will allocate per record).
const MAX_RECORD_BYTES: usize = 64;
const CHECKSUM_BYTES: usize = 8;
/// Largest framed record: what one interrupted append can leave after the intact prefix
/// (appends are sequential and each is synced before the next begins).
pub const MAX_FRAME_BYTES: usize = 4 + MAX_RECORD_BYTES + CHECKSUM_BYTES;

/// Whether `tail` (the bytes after the intact prefix) can be what one interrupted append
/// leaves: no longer than one frame, and holding no whole record. A torn append holds
/// part of one frame, in any mix with zeros or old bytes a crash left in its pages, but
/// never a record whose checksum holds; damage before the last record leaves that record
/// whole after it (found by review: judging by the first length field, a flipped bit in it
/// could declare a frame long enough to cover the next record, which was then cut).
pub fn torn_tail(tail: &[u8]) -> bool {
    tail.len() <= MAX_FRAME_BYTES && (1..tail.len()).all(|at| parse(&tail[at..]).0.is_empty())
}

#[derive(Debug, thiserror::Error)]
pub enum VoteLogError {
    #[error("vote log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The log is damaged before its last record: not what a crash leaves. Starting would
    /// forget the votes after the damage, so the node refuses and leaves the file as it is.
    #[error(
        "vote log {path} is damaged at byte {offset}: the {trailing} bytes after it are not \
         one torn record; refusing to start, since the votes after it would be forgotten and \
         this validator could sign twice. Keep the file: repair the damaged record (each is \
         length, body, checksum) or move to a new validator key; an older copy lacks the \
         latest votes and is no safer"
    )]
    Damaged {
        path: PathBuf,
        offset: usize,
        trailing: usize,
    },
}

/// The file-backed vote log.
#[derive(Debug)]
pub struct FileVoteLog {
    path: PathBuf,
    file: File,
}

fn checksum(len: &[u8], body: &[u8]) -> [u8; CHECKSUM_BYTES] {
    let mut hasher = blake3::Hasher::new_derive_key("keel 2026-11 vote log record v1");
    hasher.update(len);
    hasher.update(body);
    let mut out = [0u8; CHECKSUM_BYTES];
    out.copy_from_slice(&hasher.finalize().as_bytes()[..CHECKSUM_BYTES]);
    out
}

/// Encodes one framed record.
pub fn frame(record: &VoteRecord) -> Vec<u8> {
    let body = borsh::to_vec(record).expect("borsh into Vec<u8> is infallible");
    let len = (body.len() as u32).to_le_bytes();
    let mut out = Vec::with_capacity(4 + body.len() + CHECKSUM_BYTES);
    out.extend_from_slice(&len);
    out.extend_from_slice(&body);
    out.extend_from_slice(&checksum(&len, &body));
    out
}

/// Parses framed records; returns them and the byte length of the intact prefix.
pub fn parse(bytes: &[u8]) -> (Vec<VoteRecord>, usize) {
    let mut records = Vec::new();
    let mut offset = 0usize;
    while let Some(len_bytes) = bytes.get(offset..offset + 4) {
        let len = u32::from_le_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
        if len > MAX_RECORD_BYTES {
            break;
        }
        let body_end = offset + 4 + len;
        let (Some(body), Some(sum)) = (
            bytes.get(offset + 4..body_end),
            bytes.get(body_end..body_end + CHECKSUM_BYTES),
        ) else {
            break;
        };
        if checksum(len_bytes, body) != sum {
            break;
        }
        let Ok(record) = borsh::from_slice::<VoteRecord>(body) else {
            break;
        };
        records.push(record);
        offset = body_end + CHECKSUM_BYTES;
    }
    (records, offset)
}

impl FileVoteLog {
    /// Opens (creating if absent) the log, drops a torn tail, and returns the intact records.
    /// A log damaged before its last record is `VoteLogError::Damaged`, and left as it is.
    pub fn open(path: &Path) -> Result<(FileVoteLog, Vec<VoteRecord>), VoteLogError> {
        let io = |source| VoteLogError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let (records, intact) = parse(&bytes);
        let trailing = bytes.len() - intact;
        if !torn_tail(&bytes[intact..]) {
            return Err(VoteLogError::Damaged {
                path: path.to_path_buf(),
                offset: intact,
                trailing,
            });
        }
        if trailing > 0 {
            file.set_len(intact as u64).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        Ok((
            FileVoteLog {
                path: path.to_path_buf(),
                file,
            },
            records,
        ))
    }

    /// Appends a record and fsyncs; only after this returns may a message that depends on
    /// the record be sent.
    pub fn append(&mut self, record: &VoteRecord) -> Result<(), VoteLogError> {
        let io = |source| VoteLogError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(&frame(record)).map_err(io)?;
        self.file.sync_data().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<VoteRecord> {
        vec![
            VoteRecord::EnteredView { epoch: 0, view: 1 },
            VoteRecord::Notarized {
                epoch: 0,
                view: 1,
                block: Hash([1; 32]),
            },
            VoteRecord::Finalized {
                epoch: 0,
                view: 1,
                block: Hash([1; 32]),
            },
            VoteRecord::Nullified { epoch: 0, view: 2 },
        ]
    }

    #[test]
    fn every_torn_tail_recovers_the_intact_prefix() {
        let all: Vec<u8> = records().iter().flat_map(frame).collect();
        let boundaries: Vec<usize> = records()
            .iter()
            .scan(0, |acc, r| {
                *acc += frame(r).len();
                Some(*acc)
            })
            .collect();
        for cut in 0..=all.len() {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("votes");
            std::fs::write(&path, &all[..cut]).expect("write");
            let (mut log, recovered) = FileVoteLog::open(&path).expect("open");
            let whole = boundaries.iter().filter(|b| **b <= cut).count();
            assert_eq!(recovered, records()[..whole].to_vec(), "cut at {cut}");
            // The torn tail is gone: appending continues a clean log.
            let extra = VoteRecord::Nullified { epoch: 0, view: 9 };
            log.append(&extra).expect("append");
            drop(log);
            let (_, again) = FileVoteLog::open(&path).expect("reopen");
            assert_eq!(again.len(), whole + 1);
            assert_eq!(again.last(), Some(&extra));
        }
    }

    #[test]
    fn a_log_damaged_before_its_last_record_refuses_to_open_and_is_kept() {
        let mut all: Vec<u8> = records().iter().flat_map(frame).collect();
        // A flipped bit in the second record: two whole records follow it.
        let second = frame(&records()[0]).len() + 6;
        all[second] ^= 0x40;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("votes");
        std::fs::write(&path, &all).expect("write");
        match FileVoteLog::open(&path) {
            Err(VoteLogError::Damaged {
                offset, trailing, ..
            }) => {
                assert_eq!(offset, frame(&records()[0]).len());
                assert_eq!(trailing, all.len() - offset);
            }
            other => panic!("a damaged log opened: {other:?}"),
        }
        // Nothing was cut: the operator can still restore or inspect every byte.
        assert_eq!(std::fs::read(&path).expect("read"), all);
    }

    /// Found by review: two small records fit in one maximal frame, so a flipped bit in
    /// the second-to-last of a run of nullifies once cut both (synced) records silently.
    #[test]
    fn damage_to_a_record_before_the_last_is_refused_however_short_the_rest() {
        let log = [
            VoteRecord::Notarized {
                epoch: 0,
                view: 1,
                block: Hash([1; 32]),
            },
            VoteRecord::Nullified { epoch: 0, view: 2 },
            VoteRecord::Nullified { epoch: 0, view: 3 },
        ];
        let mut all: Vec<u8> = log.iter().flat_map(frame).collect();
        let first = frame(&log[0]).len();
        assert!(
            all.len() - first <= MAX_FRAME_BYTES,
            "the rest fits one frame"
        );
        // The length field's bit 0x20 makes 17 bytes declare 49, which covers the next record.
        for (at, bit) in [
            (first, 0x40),
            (first, 0x20),
            (first + 4, 0x40),
            (first + 10, 0x40),
            (first + 4 + 17, 0x40),
        ] {
            let mut damaged = all.clone();
            damaged[at] ^= bit;
            assert!(!torn_tail(&damaged[first..]), "byte {at}");
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("votes");
            std::fs::write(&path, &damaged).expect("write");
            assert!(
                matches!(FileVoteLog::open(&path), Err(VoteLogError::Damaged { .. })),
                "byte {at}"
            );
        }
        // Damage in the last record alone is a torn append (the ambiguous case).
        let last = all.len() - 3;
        all[last] ^= 0x40;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("votes");
        std::fs::write(&path, &all).expect("write");
        let (_, recovered) = FileVoteLog::open(&path).expect("opens");
        assert_eq!(recovered, log[..2].to_vec());
    }

    #[test]
    fn a_torn_tail_is_a_prefix_of_one_frame_or_zeros() {
        let whole: Vec<u8> = records().iter().flat_map(frame).collect();
        let framed = frame(&records()[1]);
        let mut tails: Vec<Vec<u8>> = (1..framed.len()).map(|k| framed[..k].to_vec()).collect();
        tails.push(vec![0; MAX_FRAME_BYTES]);
        tails.push(vec![0xAB; 3]);
        for tail in tails {
            assert!(torn_tail(&tail), "{tail:?}");
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("votes");
            let mut bytes = whole.clone();
            bytes.extend(&tail);
            std::fs::write(&path, &bytes).expect("write");
            let (_, recovered) = FileVoteLog::open(&path).expect("a torn tail opens");
            assert_eq!(recovered, records(), "{tail:?}");
            assert_eq!(std::fs::read(&path).expect("read"), whole);
        }
        // Zeros where a page was lost, then the frame's end (found by review: the length
        // field then reads 0, and a rule by length refused a real torn append).
        let mut holed = framed.clone();
        holed[..8].fill(0);
        assert!(torn_tail(&holed));
        assert!(torn_tail(&[0xAB; 8]));
        // Not what an append leaves: more than one frame, or a whole record inside.
        assert!(!torn_tail(&[0; MAX_FRAME_BYTES + 1]));
        let mut hiding = vec![0xAB; 5];
        hiding.extend(frame(&VoteRecord::Nullified { epoch: 0, view: 9 }));
        assert!(!torn_tail(&hiding));
    }

    #[test]
    fn corrupted_record_stops_the_log_there() {
        let mut all: Vec<u8> = records().iter().flat_map(frame).collect();
        let second = frame(&records()[0]).len() + 6;
        all[second] ^= 0x40;
        let (parsed, intact) = parse(&all);
        assert_eq!(parsed, records()[..1].to_vec());
        assert_eq!(intact, frame(&records()[0]).len());
    }
}
