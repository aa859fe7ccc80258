//! The snapshot sync client over a [`SnapshotTransport`]: the epoch chain, the state chunk
//! by chunk, the tip. Blocking: the node runs it where a thread may block (net.rs), the
//! simulator on its own thread in simulated time.

use super::judge::{Fill, Pace};
use super::{answers, check_tip, SnapshotSyncError};
use crate::shared::{Shared, SnapshotProgress};
use keel_app::epoch_proof::{self, EpochChange, EpochProofError, Trusted};
use keel_app::genesis::Genesis;
use keel_p2p::SnapshotMessage;
use keel_store::{SnapshotRestore, Store, StoreOptions};
use keel_types::{Canonical, Hash, Height, SnapshotChunk};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

/// What snapshot sync needs of the network. Waits block the calling thread.
pub trait SnapshotTransport {
    /// The peers (table indices) with a link open now.
    fn connected(&self) -> Vec<u16>;
    /// The peers this node knows of, linked or not (its table's size).
    fn known(&self) -> usize;
    /// The link serving `peer` now (a number that changes with each new link), if any.
    fn link(&self, peer: u16) -> Option<u64>;
    /// Queues `message` for `peer` (dropped if it has no link).
    fn send(&mut self, peer: u16, message: &SnapshotMessage);
    /// The next snapshot message from any peer within `timeout_ms` (other traffic is
    /// dropped: consensus re-syncs anyway), or `None` at the timeout.
    fn recv(
        &mut self,
        timeout_ms: u64,
    ) -> Result<Option<(u16, SnapshotMessage)>, SnapshotSyncError>;
    /// Waits `ms` without taking messages.
    fn pause(&mut self, ms: u64);
    /// Milliseconds on a clock that never goes back.
    fn now_ms(&self) -> u64;
    /// Wall time in ms since the Unix epoch (a chain dated in the future is refused).
    fn wall_ms(&self) -> u64;
}

/// An epoch chain that verified: what it makes trusted, and its changes.
type VerifiedChain = (Trusted, Vec<EpochChange>);

/// A finished restore: the store, and the peers dropped for failing a proof.
#[derive(Debug)]
pub struct Synced {
    pub store: Arc<Store>,
    pub dropped: BTreeSet<u16>,
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
/// Rounds of asking for epoch chains. A peer that did not finish its answer (a page lost,
/// unanswered in time, or refused) is asked again while the peers that finished hold no more
/// than a third of genesis' stake: a lost answer, or an honest peer too busy to answer in
/// time, must not leave the sync with no chain, or with only an old one f Byzantine peers
/// served. Peers that stay silent cost at most `CHAIN_ROUNDS` × their number ×
/// [`SNAPSHOT_REQUEST_TIMEOUT_MS`], plus the pauses.
const CHAIN_ROUNDS: u32 = 3;
/// The pause before a round of [`CHAIN_ROUNDS`] after the first (a busy server refuses a
/// guest's request for a while).
const CHAIN_RETRY_PAUSE_MS: u64 = 5_000;
/// Progress is logged at most this often.
const PROGRESS_LOG_MS: u64 = 2_000;
/// `Unavailable` answers after which a peer rests until all have (a request left
/// unanswered until its timeout rests it at once).
const MAX_STRIKES: u32 = 3;
/// Times every peer may rest before the sync gives up on the height.
const MAX_ROUNDS: u32 = 30;
/// The pause before every peer is asked again (a tenth of it after each `Unavailable`).
const RETRY_PAUSE_MS: u64 = 1_000;
/// How long a client waiting for peers waits for a message before it looks again.
const PEER_POLL_MS: u64 = 100;
/// The client side: one request at a time to one peer; answers from others, and answers that
/// are not to the request (a late reply to an earlier one), are ignored.
struct Client<'a> {
    t: &'a mut dyn SnapshotTransport,
    /// Peers that lied (a chain or chunk that failed its proof): never asked again.
    dropped: BTreeSet<u16>,
    /// Peers whose last request went unanswered until its timeout: asked last.
    silent: BTreeSet<u16>,
}

impl Client<'_> {
    fn new(t: &mut dyn SnapshotTransport) -> Client<'_> {
        Client {
            t,
            dropped: BTreeSet::new(),
            silent: BTreeSet::new(),
        }
    }

    fn ask(
        &mut self,
        peer: u16,
        request: SnapshotMessage,
    ) -> Result<Option<SnapshotMessage>, SnapshotSyncError> {
        let link = self.send(peer, &request);
        self.answer(peer, &request, link)
    }

    /// Sends `request` to `peer`; returns the link it went over (read before sending: a
    /// link replaced meanwhile only ends the wait early).
    fn send(&mut self, peer: u16, request: &SnapshotMessage) -> Option<u64> {
        let link = self.t.link(peer);
        self.t.send(peer, request);
        link
    }

    /// `peer`'s answer to `request` sent over `link`, or `None` after
    /// [`SNAPSHOT_REQUEST_TIMEOUT_MS`] (the peer is then `silent`) or as soon as that link
    /// is gone (a peer that registers this node closes its guest link, which took the
    /// request with it; the join test's joiner, registered while it restored, sat out the
    /// whole timeout). A link gone does not make the peer `silent`.
    fn answer(
        &mut self,
        peer: u16,
        request: &SnapshotMessage,
        link: Option<u64>,
    ) -> Result<Option<SnapshotMessage>, SnapshotSyncError> {
        let start = self.t.now_ms();
        let deadline = start.saturating_add(SNAPSHOT_REQUEST_TIMEOUT_MS);
        // Checked after the first wait, not before: an answer may be queued already.
        let mut next_check = start.saturating_add(LINK_CHECK_MS);
        loop {
            let now = self.t.now_ms();
            if now >= deadline {
                tracing::debug!(peer, "snapshot sync: no answer in time");
                self.silent.insert(peer);
                return Ok(None);
            }
            if now >= next_check {
                if link.is_none() || self.t.link(peer) != link {
                    tracing::debug!(peer, "snapshot sync: the link a request went over is gone");
                    return Ok(None);
                }
                next_check = now.saturating_add(LINK_CHECK_MS);
            }
            match self.t.recv(deadline.min(next_check) - now)? {
                Some((from, answer)) if from == peer && answers(request, &answer) => {
                    self.silent.remove(&peer);
                    return Ok(Some(answer));
                }
                Some(_) | None => {}
            }
        }
    }

    /// A request `peer` refused or left unanswered: a refusal (or a lost link) is one
    /// strike, silence until the timeout all of them (it rests until every peer has: a silent peer is not
    /// waited for again and again).
    fn strike(&self, strikes: &mut BTreeMap<u16, u32>, peer: u16) {
        let count = strikes.entry(peer).or_insert(0);
        *count = if self.silent.contains(&peer) {
            MAX_STRIKES
        } else {
            count.saturating_add(1)
        };
    }

    /// Connected peers not dropped, those that answered their last request first.
    fn peers_answering_first(&mut self) -> Result<Vec<u16>, SnapshotSyncError> {
        let mut peers = self.peers()?;
        peers.sort_by_key(|p| self.silent.contains(p));
        Ok(peers)
    }

    fn drop_peer(&mut self, peer: u16, why: &dyn std::fmt::Display) {
        tracing::warn!(peer, error = %why, "snapshot sync: peer dropped");
        metrics::counter!(crate::metrics::SYNC_PEERS_DROPPED).increment(1);
        self.dropped.insert(peer);
    }

    /// Connected peers not dropped, waiting for the first.
    fn peers(&mut self) -> Result<Vec<u16>, SnapshotSyncError> {
        let started = self.t.now_ms();
        let mut logged = false;
        loop {
            let connected = self.t.connected();
            let peers: Vec<u16> = connected
                .iter()
                .copied()
                .filter(|p| !self.dropped.contains(p))
                .collect();
            if !peers.is_empty() {
                return Ok(peers);
            }
            if !self.dropped.is_empty() && self.dropped.len() >= connected.len() {
                return Err(SnapshotSyncError::AllPeersDropped);
            }
            if !logged && self.t.now_ms().saturating_sub(started) > PEER_WAIT_LOG_MS {
                tracing::warn!("snapshot sync: waiting for a peer (peers admit an unregistered key only while one of their guest slots is free; are their addresses right?)");
                logged = true;
            }
            // Drain what arrives meanwhile, so peers' links do not back up.
            self.t.recv(PEER_POLL_MS)?;
        }
    }
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

fn fault_chunk_delay_ms() -> Option<u64> {
    if !cfg!(debug_assertions) {
        return None;
    }
    let ms: u64 = std::env::var(FAULT_CHUNK_DELAY_ENV).ok()?.parse().ok()?;
    tracing::warn!(
        ms,
        "{FAULT_CHUNK_DELAY_ENV} is set: the restore pauses after each chunk"
    );
    Some(ms)
}

/// The key hash a chunk ends at, if its entries are keys at all (a chunk that fails to
/// say is refused by the restore anyway).
pub(super) fn last_key_hash(chunk: &SnapshotChunk) -> Option<Hash> {
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
/// next peer while this one is verified and written. A chunk that fails
/// its proof drops its peer and discards the one asked after it (it was asked from an
/// unverified key), so a lie costs at most one chunk fetched twice, and a crash the chunks
/// in flight and the last one written (its flush may not have finished). A server whose
/// chunk stopped before an entry that would have fit (the first of the chunk asked right
/// after it) is dropped too: it starves the restore of entries, one round trip and proof
/// each. A server far slower than the others rests (`judge::Pace`).
pub fn sync_over(
    transport: &mut dyn SnapshotTransport,
    genesis: &Genesis,
    params: &SyncParams,
    path: &Path,
    options: StoreOptions,
) -> Result<Synced, SnapshotSyncError> {
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
    let mut client = Client::new(transport);
    let (_, changes) = client.epoch_chain(genesis, params.checkpoint)?;
    let latest = changes.last().ok_or(SnapshotSyncError::NoEpochChain)?;
    let chunk_request = |height: Height, after: Option<Hash>| SnapshotMessage::ChunkRequest {
        height,
        after,
        max_bytes: params.chunk_bytes,
    };
    // A chunk received and not yet written, with the peer that sent it.
    let mut in_hand: Option<(u16, Box<SnapshotChunk>, u64)> = None;
    // The last chunk written, until the next one shows whether its server filled it.
    let mut filling: Option<Fill> = None;
    // How long each peer's chunk answers take (a server far slower than the others rests).
    let mut pace = Pace::default();
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
                if probe(&mut client, &mut restore, change, params)? {
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
    // The tip first, while this boundary is the newest its peers serve: they prune every
    // height below one target, and the `BLOCKHASH` window of headers below the tip reaches
    // 256 heights further down than the state, so a long restore can outlive those headers
    // (found by the join test with its chunks slowed: the whole state in, no peer could
    // serve the tip, and the node gave up).
    let mut tip = client.tip_kept_or_fetched(&restore, &last.last)?;
    if tip.is_none() && !std::ptr::eq(last, latest) {
        tracing::warn!(
            old = height,
            height = target_height(latest),
            "snapshot sync: the resumed boundary's tip is no longer served; restoring the newest"
        );
        restore = restore_newest(restore, path, &options, latest)?;
        (last, height) = (latest, restore.height());
        metrics::gauge!(crate::metrics::SYNC_TARGET_HEIGHT).set(height as f64);
        progress.target_height = height;
        progress.epoch = last.epoch + 1;
        (progress.resumed, progress.permille) = (false, 0);
        tip = client.tip_kept_or_fetched(&restore, &last.last)?;
    }
    let mut tip = tip.ok_or(SnapshotSyncError::NoServer(height))?;
    let delay = fault_chunk_delay_ms();
    let started = client.t.now_ms();
    let mut logged_at = started;
    // Strikes per peer since its last chunk (`Client::strike`: a refusal or a lost link is
    // one, a timeout all); a peer with MAX_STRIKES rests until every peer has, then all are
    // asked again. A peer that let a request time out so far starts resting.
    let mut strikes: BTreeMap<u16, u32> = client.silent.iter().map(|p| (*p, MAX_STRIKES)).collect();
    let mut rounds = 0u32;
    let mut turn = 0usize;
    while !restore.is_complete() {
        let peers: Vec<u16> = client
            .peers()?
            .into_iter()
            .filter(|p| strikes.get(p).copied().unwrap_or(0) < MAX_STRIKES)
            .collect();
        let Some((peer, chunk, took_ms)) = in_hand.take() else {
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
                    restore = restore_newest(restore, path, &options, latest)?;
                    (last, height, rounds) = (latest, restore.height(), 0);
                    metrics::gauge!(crate::metrics::SYNC_TARGET_HEIGHT).set(height as f64);
                    tip = client
                        .tip_kept_or_fetched(&restore, &last.last)?
                        .ok_or(SnapshotSyncError::NoServer(height))?;
                    strikes.clear();
                    filling = None;
                    progress.target_height = height;
                    progress.epoch = last.epoch + 1;
                    progress.resumed = false;
                    continue;
                }
                if rounds > MAX_ROUNDS {
                    return Err(SnapshotSyncError::NoServer(height));
                }
                strikes.clear();
                client.t.pause(RETRY_PAUSE_MS);
                continue;
            };
            turn += 1;
            let request = chunk_request(height, restore.resume_after().map(Hash));
            let asked_at = client.t.now_ms();
            match client.ask(peer, request)? {
                Some(SnapshotMessage::Chunk(chunk)) => {
                    let took_ms = client.t.now_ms().saturating_sub(asked_at);
                    in_hand = Some((peer, chunk, took_ms));
                }
                Some(_) | None => {
                    client.strike(&mut strikes, peer);
                    client.t.pause(RETRY_PAUSE_MS / 10);
                }
            }
            continue;
        };
        // A server far slower than the others (`Pace`) is not asked the next chunk, and
        // rests once this one verifies.
        // Judged by the peers still serving (`peers`: not resting, not dropped).
        let slow = pace.slow(peer, took_ms, &peers);
        let peers: Vec<u16> = peers.into_iter().filter(|p| !slow || *p != peer).collect();
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
        let fill = Fill::of(peer, &chunk, params.chunk_bytes as usize);
        // The request goes out first; its answer waits in the inbound queue (the network
        // runs on other threads) while this thread verifies and writes the chunk.
        let link = next
            .as_ref()
            .and_then(|(next_peer, request)| client.send(*next_peer, request));
        let asked_after = restore.resume_after();
        let result = restore.add(*chunk);
        if let Some(pause) = delay {
            client.t.pause(pause);
        }
        // Awaited even when it will be discarded: a late answer must not be taken for the
        // answer to a later request of that peer (it would fail its proof there and drop
        // an honest peer). Its time is the wait beyond this chunk's write (a slow write
        // is this node's, not the server's).
        let waited_from = client.t.now_ms();
        let fetched = match &next {
            Some((next_peer, request)) => {
                Some((*next_peer, client.answer(*next_peer, request, link)?))
            }
            None => None,
        };
        match result {
            Ok(()) => {
                // This chunk's first entry is the one the chunk before it stopped short of:
                // had it fit, that chunk's server starved the restore.
                if let Some((underfilled, why)) =
                    filling.take().and_then(|f| f.check(asked_after, &fill))
                {
                    client.drop_peer(underfilled, &why);
                }
                filling = (!restore.is_complete()).then_some(fill);
                strikes.remove(&peer);
                // Only a valid answer's time is recorded.
                pace.record(peer, took_ms);
                if slow {
                    tracing::info!(
                        peer,
                        took_ms,
                        "snapshot sync: a chunk answer far slower than the others; the peer rests"
                    );
                    metrics::counter!(crate::metrics::SYNC_SLOW_ANSWERS).increment(1);
                    strikes.insert(peer, MAX_STRIKES);
                }
                rounds = 0;
                progress.bytes += chunk_bytes;
                progress.entries = restore.entries_added;
                metrics::counter!(crate::metrics::SYNC_BYTES).increment(chunk_bytes);
                metrics::counter!(crate::metrics::SYNC_CHUNKS).increment(1);
                metrics::gauge!(crate::metrics::SYNC_ENTRIES).set(restore.entries_added as f64);
                match fetched {
                    Some((next_peer, Some(SnapshotMessage::Chunk(next_chunk)))) => {
                        let took_ms = client.t.now_ms().saturating_sub(waited_from);
                        in_hand = Some((next_peer, next_chunk, took_ms));
                    }
                    Some((next_peer, Some(SnapshotMessage::Unavailable) | None))
                        if !restore.is_complete() =>
                    {
                        client.strike(&mut strikes, next_peer);
                    }
                    _ => {}
                }
            }
            // This node's own database failed: not the peer's doing.
            Err(keel_store::SnapshotError::State(e)) => {
                return Err(keel_store::SnapshotError::State(e).into())
            }
            // The chunk asked after this one started at an unverified key: discarded. The
            // restore rewound (`Fill::check`).
            Err(e) => {
                filling = None;
                client.drop_peer(peer, &e);
            }
        }
        progress.permille = permille(&restore);
        publish(&progress);
        let now = client.t.now_ms();
        if now.saturating_sub(logged_at) > PROGRESS_LOG_MS || restore.is_complete() {
            logged_at = now;
            // Tenths of MB/s, in integers (floats stay out of the node's arithmetic).
            let elapsed_ms = now.saturating_sub(started);
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
    // The tip kept before the chunks (checked against the certified header above it).
    let (block, receipts, ancestors) = tip;
    // The verified chain is kept before the store is marked restored, so a crash after
    // that cannot leave a node that serves no epoch changes.
    for change in &changes {
        epoch_proof::put(restore.store(), change).map_err(keel_store::SnapshotError::State)?;
    }
    let entries = restore.entries_added;
    let store = restore.finish(&block, &receipts, &ancestors)?;
    forget_tip(&store, height);
    progress.phase = "done";
    progress.permille = 1000;
    publish(&progress);
    tracing::info!(
        height,
        entries,
        seconds = client.t.now_ms().saturating_sub(started) / 1000,
        "snapshot sync: state restored; block-syncing to the tip"
    );
    Ok(Synced {
        store,
        dropped: client.dropped,
    })
}

/// Whether a peer still serves the interrupted restore of `change`'s state: the next chunk
/// (written if it verifies; a peer whose chunk fails is dropped and the next one asked) or,
/// when every chunk is in, the tip block checked against the boundary header.
fn probe(
    client: &mut Client<'_>,
    restore: &mut SnapshotRestore,
    change: &EpochChange,
    params: &SyncParams,
) -> Result<bool, SnapshotSyncError> {
    let height = restore.height();
    for peer in client.peers_answering_first()? {
        if restore.is_complete() {
            let request = SnapshotMessage::TipRequest { height };
            if let Some(SnapshotMessage::Tip {
                block,
                receipts,
                ancestors,
            }) = client.ask(peer, request)?
            {
                match check_tip(&change.last, &block, &receipts, &ancestors) {
                    // Kept: the sync finishes with it without asking again.
                    Ok(()) => {
                        keep_tip(restore, &(*block, receipts, ancestors))?;
                        return Ok(true);
                    }
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
        if let Some(SnapshotMessage::Chunk(chunk)) = client.ask(peer, request)? {
            match restore.add(*chunk) {
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

/// Empties `path` and opens a restore of `latest`'s boundary there, in place of `restore`
/// (dropping it first waits for its last flush).
fn restore_newest(
    restore: SnapshotRestore,
    path: &Path,
    options: &StoreOptions,
    latest: &EpochChange,
) -> Result<SnapshotRestore, SnapshotSyncError> {
    drop(restore);
    wipe(path)?;
    Ok(SnapshotRestore::open(
        path,
        options.clone(),
        target_height(latest),
        latest.last.parent_state_root,
    )?)
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

#[path = "epoch_chain.rs"]
mod epoch_chain;
#[path = "tip.rs"]
mod tip;
use tip::{forget_tip, keep_tip};

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
