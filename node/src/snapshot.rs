//! Snapshot state sync over p2p (docs/validators.md, "Snapshot sync"): serving epoch changes,
//! state chunks and the tip block from the store, and — for a node started with
//! `--sync snapshot` and no state — verifying the epoch chain from genesis (or a checkpoint),
//! restoring the latest boundary's state chunk by chunk against its certified root, and
//! handing the store to the normal start, which block-syncs to the tip.

use crate::shared::{Shared, SnapshotProgress};
use keel_app::epoch_proof::{self, EpochChange, EpochProofError, Trusted};
use keel_app::genesis::Genesis;
use keel_p2p::{
    Inbound, NetMessage, Network, SnapshotMessage, MAX_EPOCH_CHANGES_BYTES,
    MAX_EPOCH_CHANGES_PER_MESSAGE, MAX_TIP_ANCESTORS,
};
use keel_store::{SnapshotRestore, Store, StoreOptions};
use keel_types::{Block, Canonical, Hash, Header, Height, Receipt, SnapshotChunk};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Snapshot requests a node serves at once (each reads up to a chunk from the store on a
/// blocking thread); more are answered `Unavailable`.
pub const MAX_CONCURRENT_SNAPSHOT_SERVES: usize = 2;
/// Takes a serve slot for `from` if one is free and `from` holds none. Guests share one of
/// the slots, so strangers asking back to back can slow joiners that are not registered yet
/// but never a registered node's restore (found by review).
fn take_serve_slot(serving: &mut BTreeSet<u16>, from: u16) -> bool {
    let guest_busy = keel_p2p::is_guest(from) && serving.iter().any(|p| keel_p2p::is_guest(*p));
    serving.len() < MAX_CONCURRENT_SNAPSHOT_SERVES && !guest_busy && serving.insert(from)
}

/// How long a syncing node waits for one answer before it asks another peer.
pub const SNAPSHOT_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// How often a client waiting for an answer checks that the link its request went over is
/// still up.
const LINK_CHECK_MS: u64 = 200;
/// Peers whose epoch chains a syncing node compares (it takes the longest that verifies;
/// two verified chains that disagree stop it). All connected peers up to this many: any
/// f + 1 of them include an honest one.
pub const SNAPSHOT_PROOF_PEERS: usize = 16;
/// How long a syncing node waits for its first peer before it says so (and keeps waiting).
const PEER_WAIT_LOG_MS: u64 = 5_000;
/// How long a syncing node waits for the rest of its peers after the first connects,
/// before it asks for epoch chains.
const PEER_SETTLE_MS: u64 = 5_000;
/// Progress is logged at most this often.
const PROGRESS_LOG_MS: u64 = 2_000;
/// `Unavailable` answers (or silences) after which a peer rests until all have.
const MAX_STRIKES: u32 = 3;
/// Times every peer may rest before the sync gives up on the height.
const MAX_ROUNDS: u32 = 30;
/// The pause before every peer is asked again (a tenth of it after each `Unavailable`).
const RETRY_PAUSE_MS: u64 = 1_000;

/// Serves snapshot requests from the store, off the driver's thread.
#[derive(Debug, Clone)]
pub struct SnapshotServer {
    store: Arc<Store>,
    net: Network,
    /// Peers with a request being served (one each), at most
    /// [`MAX_CONCURRENT_SNAPSHOT_SERVES`].
    serving: Arc<Mutex<BTreeSet<u16>>>,
}

impl SnapshotServer {
    pub fn new(store: Arc<Store>, net: Network) -> SnapshotServer {
        SnapshotServer {
            store,
            net,
            serving: Arc::new(Mutex::new(BTreeSet::new())),
        }
    }

    /// Answers `message` from `from` (answers and unsolicited replies are ignored).
    pub fn handle(&self, from: u16, message: SnapshotMessage) {
        if !matches!(
            message,
            SnapshotMessage::EpochChangesRequest { .. }
                | SnapshotMessage::ChunkRequest { .. }
                | SnapshotMessage::TipRequest { .. }
        ) {
            return;
        }
        {
            let mut serving = self.serving.lock().unwrap_or_else(PoisonError::into_inner);
            if !take_serve_slot(&mut serving, from) {
                drop(serving);
                self.reply(from, SnapshotMessage::Unavailable);
                return;
            }
        }
        let server = self.clone();
        tokio::task::spawn_blocking(move || {
            let answer = server.answer(message).unwrap_or_else(|e| {
                tracing::debug!(peer = from, error = %e, "cannot serve a snapshot request");
                SnapshotMessage::Unavailable
            });
            server
                .serving
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&from);
            server.reply(from, answer);
        });
    }

    fn reply(&self, to: u16, message: SnapshotMessage) {
        self.net.send(to, &NetMessage::Snapshot(Box::new(message)));
    }

    fn answer(&self, message: SnapshotMessage) -> Result<SnapshotMessage, keel_state::StateError> {
        Ok(match message {
            SnapshotMessage::EpochChangesRequest { from_epoch } => {
                let changes =
                    epoch_proof::changes(&self.store, from_epoch, MAX_EPOCH_CHANGES_PER_MESSAGE)?;
                let mut encoded = Vec::with_capacity(changes.len());
                let mut bytes = 0usize;
                for change in &changes {
                    let raw = change.encode();
                    bytes += raw.len();
                    if !encoded.is_empty() && bytes > MAX_EPOCH_CHANGES_BYTES {
                        break;
                    }
                    encoded.push(raw);
                }
                SnapshotMessage::EpochChanges {
                    from_epoch,
                    changes: encoded,
                }
            }
            SnapshotMessage::ChunkRequest {
                height,
                after,
                max_bytes,
            } => {
                let max_bytes =
                    (max_bytes as usize).max(keel_types::proof::MIN_SNAPSHOT_CHUNK_BYTES);
                match self
                    .store
                    .snapshot_chunk(height, after.map(|h| h.0), max_bytes)?
                {
                    Some(chunk) => SnapshotMessage::Chunk(Box::new(chunk)),
                    None => SnapshotMessage::Unavailable,
                }
            }
            SnapshotMessage::TipRequest { height } => {
                let (Some(block), Some(receipts)) =
                    (self.store.block(height)?, self.store.receipts(height)?)
                else {
                    return Ok(SnapshotMessage::Unavailable);
                };
                let mut ancestors = Vec::with_capacity(MAX_TIP_ANCESTORS);
                for h in tip_ancestor_heights(height) {
                    match self.store.block(h)? {
                        Some(b) => ancestors.push(b.header),
                        None => return Ok(SnapshotMessage::Unavailable),
                    }
                }
                SnapshotMessage::Tip {
                    block: Box::new(block),
                    receipts,
                    ancestors,
                }
            }
            _ => SnapshotMessage::Unavailable,
        })
    }
}

/// The heights whose headers come with a snapshot's tip at `height`: the `BLOCKHASH` window
/// below it (from height 1; height 0 has no block).
fn tip_ancestor_heights(height: Height) -> std::ops::Range<Height> {
    height.saturating_sub(MAX_TIP_ANCESTORS as u64).max(1)..height
}

/// The tip block, its receipts and the headers below it, checked against the certified
/// boundary header above them: the tip's hash and receipts root are what the boundary
/// commits to, its body is what its header commits to, and the headers link down by parent
/// hash, one per height of the `BLOCKHASH` window.
fn check_tip(
    boundary: &Header,
    block: &Block,
    receipts: &[Receipt],
    ancestors: &[Header],
) -> Result<(), String> {
    if block.hash() != boundary.parent_hash
        || !keel_app::body_matches_header(block)
        || receipts.len() != block.transactions.len()
        || keel_types::receipt::receipts_root(receipts) != boundary.parent_receipts_root
    {
        return Err("a tip block or receipts the boundary header does not commit to".into());
    }
    let heights = tip_ancestor_heights(block.header.height);
    if ancestors.len() as u64 != heights.end - heights.start {
        return Err(format!("{} headers below the tip", ancestors.len()));
    }
    let mut above = &block.header;
    for header in ancestors.iter().rev() {
        if header.hash() != above.parent_hash || header.height.checked_add(1) != Some(above.height)
        {
            return Err(format!(
                "a header at height {} off the tip's chain",
                header.height
            ));
        }
        above = header;
    }
    Ok(())
}

/// Why a snapshot sync could not finish.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotSyncError {
    #[error("no peer served a verifiable epoch chain")]
    NoEpochChain,
    #[error("no epoch has ended yet: nothing to restore")]
    NoBoundaryYet,
    #[error("the network closed")]
    Closed,
    #[error("no peer could serve height {0}")]
    NoServer(Height),
    #[error("every peer was dropped for failing a proof")]
    AllPeersDropped,
    #[error("peers serve verified epoch chains that disagree at epoch {epoch} (a long-range fork): start with --checkpoint HEIGHT:HASH from a source you trust")]
    ConflictingChains { epoch: u64 },
    #[error("the served epoch chain ends in the future ({timestamp_ms} ms): not this network's")]
    FutureChain { timestamp_ms: u64 },
    #[error(transparent)]
    Restore(#[from] keel_store::SnapshotError),
}

/// The client side: one request at a time to one peer; answers from others, and answers that
/// are not to the request (a late reply to an earlier one), are ignored.
struct Client<'a> {
    net: &'a Network,
    inbound: &'a mut mpsc::Receiver<Inbound>,
    /// Peers that lied (a chain or chunk that failed its proof): never asked again.
    dropped: BTreeSet<u16>,
    /// The peer last asked answered that no epoch has ended yet.
    answered_empty: bool,
}

/// Whether `answer` answers `request` (or says it cannot).
fn answers(request: &SnapshotMessage, answer: &SnapshotMessage) -> bool {
    match (request, answer) {
        (_, SnapshotMessage::Unavailable) => true,
        (
            SnapshotMessage::EpochChangesRequest { from_epoch },
            SnapshotMessage::EpochChanges { from_epoch: f, .. },
        ) => f == from_epoch,
        // The echoed `after` tells a late answer to another request from this one's; the
        // first key is checked too, though only the proof settles whether the chunk is right.
        (SnapshotMessage::ChunkRequest { height, after, .. }, SnapshotMessage::Chunk(chunk)) => {
            chunk.height == *height
                && chunk.after == *after
                && chunk.entries.first().is_some_and(|(key, _)| {
                    keel_types::StateKey::from_bytes(key)
                        .is_ok_and(|k| after.is_none_or(|a| k.key_hash().0 > a.0))
                })
        }
        (SnapshotMessage::TipRequest { height }, SnapshotMessage::Tip { block, .. }) => {
            block.header.height == *height
        }
        _ => false,
    }
}

impl Client<'_> {
    async fn ask(
        &mut self,
        peer: u16,
        request: SnapshotMessage,
    ) -> Result<Option<SnapshotMessage>, SnapshotSyncError> {
        let link = self.send(peer, &request);
        self.answer(peer, &request, link).await
    }

    /// Sends `request` to `peer`; returns the link it went over (read before sending: a
    /// link replaced meanwhile only ends the wait early).
    fn send(&self, peer: u16, request: &SnapshotMessage) -> Option<u64> {
        let link = self.net.link_generation(peer);
        self.net
            .send(peer, &NetMessage::Snapshot(Box::new(request.clone())));
        link
    }

    /// `peer`'s answer to `request` sent over `link`, or `None` after
    /// [`SNAPSHOT_REQUEST_TIMEOUT_MS`] or as soon as that link is gone (a peer that
    /// registers this node closes its guest link, which took the request with it; the
    /// join test's joiner, registered while it restored, sat out the whole timeout).
    async fn answer(
        &mut self,
        peer: u16,
        request: &SnapshotMessage,
        link: Option<u64>,
    ) -> Result<Option<SnapshotMessage>, SnapshotSyncError> {
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(SNAPSHOT_REQUEST_TIMEOUT_MS);
        let check = Duration::from_millis(LINK_CHECK_MS);
        // Checked after the first wait, not before: an answer may be queued already.
        let mut next_check = tokio::time::Instant::now() + check;
        loop {
            if tokio::time::Instant::now() >= next_check {
                if link.is_none() || self.net.link_generation(peer) != link {
                    tracing::debug!(peer, "snapshot sync: the link a request went over is gone");
                    return Ok(None);
                }
                next_check += check;
            }
            let wait = deadline.min(next_check);
            match tokio::time::timeout_at(wait, self.inbound.recv()).await {
                Err(_) if wait == deadline => return Ok(None),
                Err(_) => {}
                Ok(None) => return Err(SnapshotSyncError::Closed),
                // Consensus traffic waits for the driver's start; it re-syncs anyway.
                Ok(Some(Inbound {
                    from,
                    message: NetMessage::Snapshot(answer),
                    ..
                })) if from == peer && answers(request, &answer) => return Ok(Some(*answer)),
                Ok(Some(_)) => {}
            }
        }
    }

    fn drop_peer(&mut self, peer: u16, why: &dyn std::fmt::Display) {
        tracing::warn!(peer, error = %why, "snapshot sync: peer dropped");
        metrics::counter!(crate::metrics::SYNC_PEERS_DROPPED).increment(1);
        self.dropped.insert(peer);
    }

    /// Connected peers not dropped, waiting for the first.
    async fn peers(&mut self) -> Result<Vec<u16>, SnapshotSyncError> {
        let started = Instant::now();
        let mut logged = false;
        loop {
            let connected = self.net.connected();
            let peers: Vec<u16> = connected
                .iter()
                .copied()
                .filter(|p| !self.dropped.contains(p))
                .collect();
            if !peers.is_empty() {
                return Ok(peers);
            }
            if !self.dropped.is_empty() && self.dropped.len() >= self.net.peer_count() {
                return Err(SnapshotSyncError::AllPeersDropped);
            }
            if !logged && started.elapsed() > Duration::from_millis(PEER_WAIT_LOG_MS) {
                tracing::warn!("snapshot sync: waiting for a peer (peers admit an unregistered key only while one of their guest slots is free; are their addresses right?)");
                logged = true;
            }
            // Drain what arrives meanwhile, so peers' links do not back up.
            let _ = tokio::time::timeout(Duration::from_millis(100), self.inbound.recv()).await;
        }
    }

    /// The longest epoch chain a peer serves that verifies from genesis (or the
    /// checkpoint). Two verified chains that disagree on an epoch's boundary are a long-range
    /// fork (keys of a past set re-signing history): nothing is trusted, the operator must
    /// give a checkpoint.
    async fn epoch_chain(
        &mut self,
        genesis: &Genesis,
        checkpoint: Option<(Height, Hash)>,
    ) -> Result<(Trusted, Vec<EpochChange>), SnapshotSyncError> {
        let mut best: Option<(Trusted, Vec<EpochChange>)> = None;
        self.peers().await?;
        // Not only the first peer that connects: the others get a moment, so one fast
        // Byzantine peer is not the only one asked.
        // The peer table's size (`add_peers` of nothing returns it; `peer_count` counts
        // open links); a genesis validator's own key is in it and never connects, which
        // costs it the whole wait.
        let known = self.net.add_peers(&[]).len();
        let settle = Instant::now();
        while self.net.connected().len() < known.min(SNAPSHOT_PROOF_PEERS)
            && settle.elapsed() < Duration::from_millis(PEER_SETTLE_MS)
        {
            let _ = tokio::time::timeout(Duration::from_millis(100), self.inbound.recv()).await;
        }
        let peers = self.peers().await?;
        let mut empty = Vec::new();
        for peer in peers.into_iter().take(SNAPSHOT_PROOF_PEERS) {
            match self.chain_from(peer, genesis, checkpoint).await? {
                Ok(Some(found)) => {
                    if let Some((_, known)) = &best {
                        if let Some(epoch) = first_disagreement(known, &found.1) {
                            return Err(SnapshotSyncError::ConflictingChains { epoch });
                        }
                    }
                    if best
                        .as_ref()
                        .is_none_or(|(b, _)| found.0.boundary.0 > b.boundary.0)
                    {
                        best = Some(found);
                    }
                }
                Ok(None) => {
                    if std::mem::take(&mut self.answered_empty) {
                        empty.push(peer);
                    }
                }
                Err(e) => self.drop_peer(peer, &e),
            }
        }
        let best = match best {
            Some(best) => best,
            // A chain younger than its first epoch has no boundary to restore (and nothing
            // pruned yet that block sync would need).
            // Believed only from more than a third of genesis' power: f Byzantine peers
            // alone cannot send a node to block sync on a chain whose history is pruned.
            None if empty_power_exceeds_a_third(genesis, &empty) => {
                return Err(SnapshotSyncError::NoBoundaryYet)
            }
            None => return Err(SnapshotSyncError::NoEpochChain),
        };
        // A chain whose last boundary is dated in the future was not made by this network's
        // clock-bound validators.
        let last = best.1.last().map_or(0, |c| c.last.timestamp_ms);
        if last > crate::driver::now_ms().saturating_add(keel_app::MAX_FUTURE_DRIFT_MS) {
            return Err(SnapshotSyncError::FutureChain { timestamp_ms: last });
        }
        Ok(best)
    }

    async fn chain_from(
        &mut self,
        peer: u16,
        genesis: &Genesis,
        checkpoint: Option<(Height, Hash)>,
    ) -> Result<Result<Option<(Trusted, Vec<EpochChange>)>, EpochProofError>, SnapshotSyncError>
    {
        let (chain_id, length) = (genesis.chain_id, genesis.epoch_length);
        let mut from_epoch = match checkpoint {
            Some((height, _)) => (height / length).saturating_sub(1),
            None => 0,
        };
        let mut trusted: Option<(Trusted, Vec<EpochChange>)> = None;
        loop {
            let request = SnapshotMessage::EpochChangesRequest { from_epoch };
            let Some(SnapshotMessage::EpochChanges { changes: raw, .. }) =
                self.ask(peer, request).await?
            else {
                return Ok(Ok(trusted));
            };
            let mut changes = Vec::with_capacity(raw.len());
            for bytes in &raw {
                match EpochChange::decode(bytes) {
                    Ok(change) => changes.push(change),
                    Err(e) => return Ok(Err(EpochProofError::Malformed(e.to_string()))),
                }
            }
            if changes.is_empty() {
                if trusted.is_none() && checkpoint.is_none() {
                    self.answered_empty = true;
                }
                return Ok(Ok(trusted));
            }
            let verified = match &trusted {
                None => match checkpoint {
                    Some(at) => epoch_proof::verify_from_checkpoint(chain_id, length, at, &changes),
                    None => epoch_proof::verify_from_set(
                        chain_id,
                        length,
                        genesis.epoch_set(),
                        &changes,
                    ),
                },
                Some((t, _)) => {
                    epoch_proof::verify_from_set(chain_id, length, t.set.clone(), &changes)
                }
            };
            match verified {
                Ok(t) => {
                    let mut all = trusted.map(|(_, all)| all).unwrap_or_default();
                    all.extend(changes);
                    trusted = Some((t, all));
                }
                Err(e) => return Ok(Err(e)),
            }
            from_epoch += raw.len() as u64;
        }
    }
}

/// Whether the genesis validators among `peers` (peer indices below genesis' count are
/// genesis validators, in order) hold more than a third of genesis' stake.
fn empty_power_exceeds_a_third(genesis: &Genesis, peers: &[u16]) -> bool {
    let total = genesis
        .validators
        .iter()
        .fold(keel_types::U256::ZERO, |sum, v| sum + v.stake);
    let empty = peers
        .iter()
        .filter_map(|p| genesis.validators.get(usize::from(*p)))
        .fold(keel_types::U256::ZERO, |sum, v| sum + v.stake);
    empty * keel_types::U256::from(3u64) > total
}

/// The first epoch two verified chains end differently, if any.
fn first_disagreement(a: &[EpochChange], b: &[EpochChange]) -> Option<u64> {
    let by_epoch: BTreeMap<u64, Hash> = a.iter().map(|c| (c.epoch, c.last.hash())).collect();
    b.iter()
        .find(|c| by_epoch.get(&c.epoch).is_some_and(|h| *h != c.last.hash()))
        .map(|c| c.epoch)
}

/// What a snapshot sync is given besides the network and the genesis.
#[derive(Debug, Clone)]
pub struct SyncParams {
    /// A trusted `(height, hash)` to verify the epoch chain from instead of genesis.
    pub checkpoint: Option<(Height, Hash)>,
    /// Bytes asked per chunk (`sync.chunk_bytes`).
    pub chunk_bytes: u32,
    /// Where progress is published for `keel_status` and `/health`.
    pub shared: Arc<Shared>,
}

/// Fault injection for the kill -9 test: a pause in milliseconds after each chunk is
/// written, so a test can stop the process mid-restore. Read only in builds with debug
/// assertions, like [`crate::driver::FAULT_DIVERGE_ENV`].
pub const FAULT_CHUNK_DELAY_ENV: &str = "KEEL_FAULT_SNAPSHOT_CHUNK_DELAY_MS";

fn fault_chunk_delay() -> Option<Duration> {
    if !cfg!(debug_assertions) {
        return None;
    }
    let ms: u64 = std::env::var(FAULT_CHUNK_DELAY_ENV).ok()?.parse().ok()?;
    tracing::warn!(
        ms,
        "{FAULT_CHUNK_DELAY_ENV} is set: the restore pauses after each chunk"
    );
    Some(Duration::from_millis(ms))
}

/// The key hash a chunk ends at, if its entries are keys at all (a chunk that fails to
/// say is refused by the restore anyway).
fn last_key_hash(chunk: &SnapshotChunk) -> Option<Hash> {
    let (key, _) = chunk.entries.last()?;
    keel_types::StateKey::from_bytes(key)
        .ok()
        .map(|k| k.key_hash())
}

/// Restores `path` (the store directory) to the latest epoch boundary the peers serve.
/// Resumes an interrupted restore of the same boundary; one of an older boundary (its peers
/// moved on and pruned it) is wiped and started again.
///
/// Two chunks are in flight: as soon as a chunk arrives, the one after it is asked of the
/// next peer while this one is verified and written on a blocking thread. A chunk that fails
/// its proof drops its peer and discards the one asked after it (it was asked from an
/// unverified key), so a lie costs at most one chunk fetched twice, and a crash the chunks
/// in flight and the last one written (its flush may not have finished).
pub async fn sync(
    net: &Network,
    inbound: &mut mpsc::Receiver<Inbound>,
    genesis: &Genesis,
    params: &SyncParams,
    path: &Path,
    options: StoreOptions,
) -> Result<Arc<Store>, SnapshotSyncError> {
    let publish = |progress: &SnapshotProgress| {
        params
            .shared
            .update(|s| s.snapshot = Some(progress.clone()));
    };
    // A wipe a crash interrupted after its rename.
    let _ = std::fs::remove_dir_all(path.with_extension("discarded"));
    let mut progress = SnapshotProgress {
        phase: "epoch_chain",
        ..SnapshotProgress::default()
    };
    publish(&progress);
    let mut client = Client {
        net,
        inbound,
        dropped: BTreeSet::new(),
        answered_empty: false,
    };
    let (_, changes) = client.epoch_chain(genesis, params.checkpoint).await?;
    let latest = changes.last().ok_or(SnapshotSyncError::NoEpochChain)?;
    let chunk_request = |height: Height, after: Option<Hash>| SnapshotMessage::ChunkRequest {
        height,
        after,
        max_bytes: params.chunk_bytes,
    };
    // A chunk received and not yet written, with the peer that sent it.
    let mut in_hand: Option<(u16, Box<SnapshotChunk>)> = None;
    // The boundary restored: the latest the chain ends at, or the one an interrupted
    // restore was of while a peer still serves it (epochs can be seconds long: a restart
    // must not throw away what it had).
    let mut last = latest;
    let mut restore = match SnapshotRestore::open(
        path,
        options.clone(),
        target_height(latest),
        latest.last.parent_state_root,
    ) {
        Err(keel_store::SnapshotError::OtherRestore { height: old, root }) => {
            let older = changes
                .iter()
                .find(|c| target_height(c) == old && c.last.parent_state_root == root);
            let mut resumed = None;
            if let Some(change) = older {
                let mut restore = SnapshotRestore::open(path, options.clone(), old, root)?;
                if probe(&mut client, &mut restore, change, params).await? {
                    last = change;
                    resumed = Some(restore);
                }
            }
            match resumed {
                Some(restore) => restore,
                None => {
                    tracing::warn!(
                        old,
                        height = target_height(latest),
                        "snapshot sync: discarding an interrupted restore no peer serves any more"
                    );
                    wipe(path)?;
                    SnapshotRestore::open(
                        path,
                        options.clone(),
                        target_height(latest),
                        latest.last.parent_state_root,
                    )?
                }
            }
        }
        other => other?,
    };
    let mut height = restore.height();
    tracing::info!(
        epoch = last.epoch,
        boundary = last.last.height,
        height,
        root = %restore.root(),
        "snapshot sync: epoch chain verified; restoring the state before the boundary"
    );
    metrics::gauge!(crate::metrics::SYNC_TARGET_HEIGHT).set(height as f64);
    progress = SnapshotProgress {
        phase: "state",
        epoch: last.epoch + 1,
        target_height: height,
        resumed: restore.resume_after().is_some() || restore.is_complete(),
        ..SnapshotProgress::default()
    };
    progress.permille = permille(&restore);
    publish(&progress);
    if progress.resumed {
        tracing::info!(
            height,
            after = ?restore.resume_after().map(Hash),
            percent = tenths(progress.permille),
            "snapshot sync: resuming an interrupted restore"
        );
    }
    let delay = fault_chunk_delay();
    let started = Instant::now();
    let mut logged_at = Instant::now();
    // Answers of `Unavailable` (or none) per peer since its last chunk; a peer with
    // MAX_STRIKES rests until every peer has, then all are asked again.
    let mut strikes: BTreeMap<u16, u32> = BTreeMap::new();
    let mut rounds = 0u32;
    let mut turn = 0usize;
    while !restore.is_complete() {
        let peers: Vec<u16> = client
            .peers()
            .await?
            .into_iter()
            .filter(|p| strikes.get(p).copied().unwrap_or(0) < MAX_STRIKES)
            .collect();
        let Some((peer, chunk)) = in_hand.take() else {
            let Some(&peer) = peers.get(turn % peers.len().max(1)) else {
                rounds += 1;
                if rounds > MAX_ROUNDS && !std::ptr::eq(last, latest) {
                    // The older boundary this restore resumed is no longer served: start
                    // over at the newest.
                    tracing::warn!(
                        old = height,
                        height = target_height(latest),
                        "snapshot sync: the resumed boundary is no longer served; restoring the newest"
                    );
                    // Dropping waits for the restore's last flush: off the async workers.
                    tokio::task::block_in_place(|| drop(restore));
                    wipe(path)?;
                    restore = SnapshotRestore::open(
                        path,
                        options.clone(),
                        target_height(latest),
                        latest.last.parent_state_root,
                    )?;
                    (last, height, rounds) = (latest, restore.height(), 0);
                    strikes.clear();
                    progress.target_height = height;
                    progress.epoch = last.epoch + 1;
                    progress.resumed = false;
                    continue;
                }
                if rounds > MAX_ROUNDS {
                    return Err(SnapshotSyncError::NoServer(height));
                }
                strikes.clear();
                tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS)).await;
                continue;
            };
            turn += 1;
            let request = chunk_request(height, restore.resume_after().map(Hash));
            match client.ask(peer, request).await? {
                Some(SnapshotMessage::Chunk(chunk)) => in_hand = Some((peer, chunk)),
                Some(_) | None => {
                    *strikes.entry(peer).or_insert(0) += 1;
                    tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS / 10)).await;
                }
            }
            continue;
        };
        // The next chunk is asked of the next peer while this one is written (unless this
        // one says it is the last).
        let next = match (chunk.last, last_key_hash(&chunk)) {
            (false, Some(after)) if !peers.is_empty() => {
                let next_peer = peers[turn % peers.len()];
                turn += 1;
                Some((next_peer, chunk_request(height, Some(after))))
            }
            _ => None,
        };
        let chunk_bytes: u64 = chunk
            .entries
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum();
        // The request goes out first; its answer waits in the inbound queue (the network
        // runs on other threads) while this thread verifies and writes the chunk.
        let link = next
            .as_ref()
            .and_then(|(next_peer, request)| client.send(*next_peer, request));
        let result = tokio::task::block_in_place(|| {
            let result = restore.add(*chunk);
            if let Some(pause) = delay {
                std::thread::sleep(pause);
            }
            result
        });
        // Awaited even when it will be discarded: a late answer must not be taken for the
        // answer to a later request of that peer (it would fail its proof there and drop
        // an honest peer).
        let fetched = match &next {
            Some((next_peer, request)) => {
                Some((*next_peer, client.answer(*next_peer, request, link).await?))
            }
            None => None,
        };
        match result {
            Ok(()) => {
                strikes.remove(&peer);
                rounds = 0;
                progress.bytes += chunk_bytes;
                progress.entries = restore.entries_added;
                metrics::counter!(crate::metrics::SYNC_BYTES).increment(chunk_bytes);
                metrics::counter!(crate::metrics::SYNC_CHUNKS).increment(1);
                metrics::gauge!(crate::metrics::SYNC_ENTRIES).set(restore.entries_added as f64);
                match fetched {
                    Some((next_peer, Some(SnapshotMessage::Chunk(next_chunk)))) => {
                        in_hand = Some((next_peer, next_chunk));
                    }
                    Some((next_peer, Some(SnapshotMessage::Unavailable) | None))
                        if !restore.is_complete() =>
                    {
                        *strikes.entry(next_peer).or_insert(0) += 1;
                    }
                    _ => {}
                }
            }
            // This node's own database failed: not the peer's doing.
            Err(keel_store::SnapshotError::State(e)) => {
                return Err(keel_store::SnapshotError::State(e).into())
            }
            // The chunk asked after this one started at an unverified key: discarded.
            Err(e) => client.drop_peer(peer, &e),
        }
        progress.permille = permille(&restore);
        publish(&progress);
        if logged_at.elapsed() > Duration::from_millis(PROGRESS_LOG_MS) || restore.is_complete() {
            logged_at = Instant::now();
            // Tenths of MB/s, in integers (floats stay out of the node's arithmetic).
            let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let mb_per_s_tenths = progress.bytes / elapsed_ms.max(1) / 100;
            tracing::info!(
                percent = tenths(progress.permille),
                entries = restore.entries_added,
                mb_per_s = tenths(mb_per_s_tenths),
                "snapshot sync: restoring"
            );
        }
    }
    progress.phase = "tip";
    publish(&progress);
    // The tip block and its receipts, checked against the certified header above them.
    let peers = client.peers().await?;
    for peer in peers {
        let request = SnapshotMessage::TipRequest { height };
        let Some(SnapshotMessage::Tip {
            block,
            receipts,
            ancestors,
        }) = client.ask(peer, request).await?
        else {
            continue;
        };
        if let Err(why) = check_tip(&last.last, &block, &receipts, &ancestors) {
            client.drop_peer(peer, &why);
            continue;
        }
        // The verified chain is kept before the store is marked restored, so a crash
        // after that cannot leave a node that serves no epoch changes.
        for change in &changes {
            epoch_proof::put(restore.store(), change).map_err(keel_store::SnapshotError::State)?;
        }
        let entries = restore.entries_added;
        let store = tokio::task::block_in_place(|| restore.finish(&block, &receipts, &ancestors))?;
        progress.phase = "done";
        progress.permille = 1000;
        publish(&progress);
        tracing::info!(
            height,
            entries,
            seconds = started.elapsed().as_secs(),
            "snapshot sync: state restored; block-syncing to the tip"
        );
        return Ok(store);
    }
    Err(SnapshotSyncError::NoServer(height))
}

/// Whether a peer still serves the interrupted restore of `change`'s state: the next chunk
/// (written if it verifies; a peer whose chunk fails is dropped and the next one asked) or,
/// when every chunk is in, the tip block checked against the boundary header.
async fn probe(
    client: &mut Client<'_>,
    restore: &mut SnapshotRestore,
    change: &EpochChange,
    params: &SyncParams,
) -> Result<bool, SnapshotSyncError> {
    let height = restore.height();
    for peer in client.peers().await? {
        if restore.is_complete() {
            let request = SnapshotMessage::TipRequest { height };
            if let Some(SnapshotMessage::Tip {
                block,
                receipts,
                ancestors,
            }) = client.ask(peer, request).await?
            {
                match check_tip(&change.last, &block, &receipts, &ancestors) {
                    Ok(()) => return Ok(true),
                    Err(why) => client.drop_peer(peer, &why),
                }
            }
            continue;
        }
        let request = SnapshotMessage::ChunkRequest {
            height,
            after: restore.resume_after().map(Hash),
            max_bytes: params.chunk_bytes,
        };
        if let Some(SnapshotMessage::Chunk(chunk)) = client.ask(peer, request).await? {
            match tokio::task::block_in_place(|| restore.add(*chunk)) {
                Ok(()) => return Ok(true),
                Err(keel_store::SnapshotError::State(e)) => {
                    return Err(keel_store::SnapshotError::State(e).into())
                }
                Err(e) => client.drop_peer(peer, &e),
            }
        }
    }
    Ok(false)
}

/// Empties the store directory: renamed first, so a crash mid-way leaves no half-deleted
/// database at `path` (the renamed one is removed now or at the next wipe).
fn wipe(path: &Path) -> Result<(), SnapshotSyncError> {
    let trash = path.with_extension("discarded");
    let failed = |e: std::io::Error| {
        SnapshotSyncError::Restore(keel_store::SnapshotError::State(
            keel_state::StateError::Corrupt(format!("removing {}: {e}", path.display())),
        ))
    };
    if trash.exists() {
        std::fs::remove_dir_all(&trash).map_err(failed)?;
    }
    std::fs::rename(path, &trash).map_err(failed)?;
    std::fs::remove_dir_all(&trash).map_err(failed)
}

/// The height whose state an epoch change certifies: the one below its last block (whose
/// header commits to it).
fn target_height(change: &EpochChange) -> Height {
    change.last.height.saturating_sub(1)
}

/// How far through the key space a restore is, in tenths of a percent: key hashes are
/// uniform, so the last one restored says how much of the state is in.
fn permille(restore: &SnapshotRestore) -> u64 {
    if restore.is_complete() {
        return 1000;
    }
    restore.resume_after().map_or(0, |k| {
        u64::from_be_bytes(k[..8].try_into().unwrap_or([0; 8])) / (u64::MAX / 1000)
    })
}

/// `n` tenths as a decimal string ("12.3").
fn tenths(n: u64) -> String {
    format!("{}.{}", n / 10, n % 10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_p2p::GUEST_BASE;

    /// Found by reading (docs/validators.md listed it): a prefetch discarded after its
    /// timeout (asked after key B of a chunk that then failed) could answer late, while the
    /// same peer was asked again after key A < B; its keys lie above A, so it passed for the
    /// answer, failed its proof and got that honest peer dropped. The echoed `after` tells
    /// the two apart.
    #[test]
    fn a_late_chunk_for_another_request_is_not_taken_for_the_answer() {
        let proof: keel_types::proof::RangeProof =
            borsh::from_slice(&[0u8; 4]).expect("an empty range proof decodes");
        let key = keel_types::StateKey::Account(keel_types::Address([3; 20]));
        let hash = key.key_hash();
        let below = Hash([0; 32]);
        assert!(hash.0 > below.0);
        let chunk = |after: Option<Hash>| {
            SnapshotMessage::Chunk(Box::new(SnapshotChunk {
                height: 9,
                after,
                entries: vec![(key.to_bytes(), keel_state::encode_live(1, &[5; 8]))],
                last: false,
                proof: proof.clone(),
            }))
        };
        let request = |after: Option<Hash>| SnapshotMessage::ChunkRequest {
            height: 9,
            after,
            max_bytes: 1 << 20,
        };
        // The answer to the request it echoes, and to no other one whose range holds its keys.
        assert!(answers(&request(Some(below)), &chunk(Some(below))));
        assert!(answers(&request(None), &chunk(None)));
        let mut later = Hash([0; 32]);
        later.0[31] = 1;
        assert!(hash.0 > later.0, "the late chunk's keys lie above both");
        assert!(!answers(&request(Some(below)), &chunk(Some(later))));
        assert!(!answers(&request(None), &chunk(Some(below))));
        // Keys at or below what was asked after are no answer, whatever the echo says.
        assert!(!answers(&request(Some(hash)), &chunk(Some(hash))));
        // Nor is a chunk of another height.
        let SnapshotMessage::Chunk(mut other) = chunk(Some(below)) else {
            unreachable!()
        };
        other.height = 10;
        assert!(!answers(
            &request(Some(below)),
            &SnapshotMessage::Chunk(other)
        ));
    }

    #[test]
    fn guests_share_one_serve_slot_and_table_peers_keep_the_other() {
        let mut serving = BTreeSet::new();
        assert!(take_serve_slot(&mut serving, GUEST_BASE));
        assert!(
            !take_serve_slot(&mut serving, GUEST_BASE + 1),
            "one guest at a time"
        );
        assert!(
            !take_serve_slot(&mut serving, GUEST_BASE),
            "one request per peer"
        );
        assert!(
            take_serve_slot(&mut serving, 3),
            "a table peer is still served"
        );
        assert!(!take_serve_slot(&mut serving, 4), "every slot taken");
        serving.remove(&GUEST_BASE);
        assert!(take_serve_slot(&mut serving, GUEST_BASE + 1));
    }
}
