//! keel-p2p: authenticated, encrypted links between validators.
//!
//! Each TCP connection runs a Noise XX handshake (`snow`, X25519 + ChaChaPoly + BLAKE2s, a
//! fresh static key per process) with the chain id and genesis hash as the prologue, so only
//! nodes of the same chain complete it. Each side then sends, encrypted, its validator
//! ed25519 public key and a signature over the handshake hash: the hash is unique to this
//! session and covers both Noise keys, so the signature binds the session to the validator
//! key (a relay or replay cannot reuse it). The responder shows its identity first; the
//! dialer answers only if it reached the peer it meant to. A key outside the peer table (the
//! genesis validators and every registered one: [`Network::add_peers`]) gets one of
//! [`MAX_GUEST_PEERS`] guest slots if one is free, and is dropped otherwise (guests.rs).
//!
//! After the handshake a message is `u32` length (checked against the configured maximum
//! before anything is allocated) then the bytes, carried in Noise transport messages of at
//! most 65,535 bytes, each `u16` length-prefixed on the wire. Garbage fails decryption and
//! closes the connection. Outbound queues are bounded per peer; a full queue drops the
//! message (consensus re-sends on timeouts, gossip is best effort).
//!
//! Before the peer is authenticated a frame may be at most `MAX_PREAUTH_FRAME_BYTES`, and one
//! address may hold at most `MAX_PENDING_HANDSHAKES_PER_IP` handshakes; queues are bounded
//! in bytes per peer in both directions (see limits.rs).

mod guests;
mod limits;
mod wire;

use borsh::{BorshDeserialize, BorshSerialize};
use guests::{guest_inbound_permits, Admitted, Guests};
pub use guests::{
    is_guest, GUEST_BASE, GUEST_TENURE_MS, MAX_GUESTS_PER_PREFIX, MAX_GUEST_FRAME_BYTES,
    MAX_GUEST_INBOUND_BYTES, MAX_GUEST_OUTBOUND_BYTES, MAX_GUEST_PEERS,
};
use keel_consensus::Message;
use keel_types::encoding::{check_len, Canonical, DecodeError};
use keel_types::{
    Block, Hash, Header, Height, PublicKey, Receipt, SecretKey, Signature, SignedTransaction,
    SnapshotChunk,
};
use limits::{inbound_permits, ByteBudget, HandshakeSlots};
pub use limits::{
    MAX_PEER_INBOUND_BYTES, MAX_PEER_OUTBOUND_BYTES, MAX_PENDING_HANDSHAKES_PER_IP,
    MAX_PREAUTH_FRAME_BYTES,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use wire::Link;
pub use wire::WireError;

/// The Prometheus metrics this crate emits (the node's `/metrics` describes them).
pub mod metric {
    pub const PEERS: &str = "keel_peers";
    pub const GUESTS: &str = "keel_p2p_guests";
    pub const P2P_REJECTED: &str = "keel_p2p_rejected_total";
    pub const P2P_DROPPED: &str = "keel_p2p_dropped_total";
}

/// Noise pattern and primitives.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
/// A handshake (both round trips and the identity exchange) must finish within this.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;
/// Handshakes in progress at once on the listener (bounds what strangers can make us do).
pub const MAX_PENDING_HANDSHAKES: usize = 64;
/// Reconnect backoff: doubles from the minimum up to the maximum.
pub const DIAL_BACKOFF_MIN_MS: u64 = 100;
pub const DIAL_BACKOFF_MAX_MS: u64 = 5_000;
/// How often a node outside its own peer table (a joiner not registered yet) checks its
/// link to each peer with a smaller key, and dials it if there is none: such peers do not
/// dial a key they do not know. A refused dial backs off as `dial_loop`'s do, up to
/// `DIAL_BACKOFF_MAX_MS`, so peers whose guest slots are full are not asked every second.
pub const GUEST_DIAL_INTERVAL_MS: u64 = 1_000;
/// An established connection with nothing to send sends an empty message this often, so the
/// peer can tell a quiet link from a dead one.
pub const KEEPALIVE_INTERVAL_MS: u64 = 1_000;
/// A connection that delivers nothing (not even a keepalive) for this long is dropped, and
/// the dialer redials. Without it a partition never closes a connection: after the heal the
/// link carries data again only at TCP's next retransmission (backing off to 120 s), so
/// finality resumed about as late as the partition had lasted (devnet partition test).
pub const PEER_IDLE_TIMEOUT_MS: u64 = 5 * KEEPALIVE_INTERVAL_MS;
/// Empty messages accepted per `KEEPALIVE_INTERVAL_MS` (an honest peer sends one per idle
/// interval). Keepalives skip the inbound byte budget and queue, so without this a peer
/// could make the node decrypt empty frames as fast as its link carries them.
pub const MAX_KEEPALIVES_PER_INTERVAL: u32 = 4;
/// Messages from all peers waiting for the driver.
pub const INBOUND_QUEUE_LEN: usize = 8_192;
/// Gossiped transaction batches waiting for the mempool.
pub const GOSSIP_QUEUE_LEN: usize = 256;
/// Transactions in one gossip message.
pub const MAX_GOSSIP_TXS: usize = 512;
/// What a validator signs to bind its key to a Noise session.
const IDENTITY_DOMAIN: &[u8] = b"keel 2026-11 p2p identity v1";

/// What validators send each other.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum NetMessage {
    Consensus(Box<Message>),
    /// Transactions admitted by the sender's mempool (each is re-checked on arrival).
    Transactions(Vec<SignedTransaction>),
    /// Snapshot state sync (docs/validators.md): what a node without history asks, and the
    /// answers, each checked by the asker against what it already trusts.
    Snapshot(Box<SnapshotMessage>),
}

/// Epoch changes one answer carries at most.
pub const MAX_EPOCH_CHANGES_PER_MESSAGE: usize = 64;
/// Bytes of epoch changes one answer carries at most (a change with a long suffix is large).
pub const MAX_EPOCH_CHANGES_BYTES: usize = 8 * 1024 * 1024;
/// Headers below a snapshot's tip one answer carries: the EVM's `BLOCKHASH` window.
pub const MAX_TIP_ANCESTORS: usize = 256;

/// Snapshot state sync requests and answers.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum SnapshotMessage {
    /// The recorded epoch changes from `from_epoch` on.
    EpochChangesRequest {
        from_epoch: u64,
    },
    /// Canonical `EpochChange`s (keel-app's epoch_proof), consecutive from `from_epoch`.
    EpochChanges {
        from_epoch: u64,
        changes: Vec<Vec<u8>>,
    },
    /// One chunk of `height`'s state after key hash `after`, at most `max_bytes`.
    ChunkRequest {
        height: Height,
        after: Option<Hash>,
        max_bytes: u32,
    },
    Chunk(Box<SnapshotChunk>),
    /// The block at `height`, its receipts, and the headers of the (up to)
    /// [`MAX_TIP_ANCESTORS`] blocks below it (the restored state's tip, and the hashes
    /// `BLOCKHASH` reads after it).
    TipRequest {
        height: Height,
    },
    Tip {
        block: Box<Block>,
        receipts: Vec<Receipt>,
        ancestors: Vec<Header>,
    },
    /// This node cannot serve what was asked (pruned, not recorded, busy).
    Unavailable,
}

impl SnapshotMessage {
    fn validate(&self) -> Result<(), DecodeError> {
        const KIND: &str = "SnapshotMessage";
        match self {
            SnapshotMessage::EpochChanges { changes, .. } => check_len(
                KIND,
                "changes",
                changes.len(),
                MAX_EPOCH_CHANGES_PER_MESSAGE,
            ),
            SnapshotMessage::Chunk(chunk) => chunk.validate(),
            SnapshotMessage::Tip {
                block,
                receipts,
                ancestors,
            } => {
                check_len(KIND, "receipts", receipts.len(), block.transactions.len())?;
                check_len(KIND, "ancestors", ancestors.len(), MAX_TIP_ANCESTORS)?;
                block.validate()
            }
            SnapshotMessage::EpochChangesRequest { .. }
            | SnapshotMessage::ChunkRequest { .. }
            | SnapshotMessage::TipRequest { .. }
            | SnapshotMessage::Unavailable => Ok(()),
        }
    }
}

impl Canonical for NetMessage {
    const KIND: &'static str = "NetMessage";
    const VERSION: u8 = 1;
    const MAX_ENCODED_BYTES: usize = keel_consensus::MAX_MESSAGE_BYTES + 64;

    fn validate(&self) -> Result<(), DecodeError> {
        match self {
            NetMessage::Consensus(message) => message.validate(),
            NetMessage::Transactions(txs) => {
                check_len(Self::KIND, "transactions", txs.len(), MAX_GOSSIP_TXS)?;
                txs.iter().try_for_each(Canonical::validate)
            }
            NetMessage::Snapshot(message) => message.validate(),
        }
    }
}

#[derive(Debug, Clone, BorshSerialize, BorshDeserialize)]
struct Identity {
    public_key: PublicKey,
    signature: Signature,
}

/// A connected peer: the connection's generation (a newer connection replaces an older
/// one), its bounded outbound queue of encoded messages and the bytes in that queue.
type Peer = (u64, mpsc::Sender<Arc<Vec<u8>>>, Arc<ByteBudget>);

/// Peers the table holds at most: every registered validator and the genesis ones.
pub const MAX_PEERS: usize =
    keel_types::validator::MAX_REGISTERED_VALIDATORS + keel_types::limits::MAX_VALIDATORS;

/// What the network needs to know at start.
#[derive(Debug, Clone)]
pub struct NetConfig {
    pub listen: SocketAddr,
    /// The first peers (the genesis validators, then the registered ones) and where to dial
    /// them; a peer's index is its position in this table, which only grows
    /// ([`Network::add_peers`]). Other keys that dial in are guests (guests.rs).
    pub validators: Vec<(PublicKey, String)>,
    pub chain_id: u64,
    pub genesis_hash: Hash,
    pub max_frame_bytes: usize,
    pub peer_queue_len: usize,
    /// How long a guest keeps its slot before a newcomer finding every slot taken may take
    /// it ([`GUEST_TENURE_MS`] in a node; tests shorten it).
    pub guest_tenure_ms: u64,
}

/// An inbound message and the peer it came from.
#[derive(Debug)]
pub struct Inbound {
    /// The peer's table index, or a guest's index ([`is_guest`]).
    pub from: u16,
    pub message: NetMessage,
    /// The message's share of its peer's inbound byte budget; hold it until the message is
    /// handled.
    pub budget: InboundBudget,
}

/// Bytes of a peer's [`MAX_PEER_INBOUND_BYTES`] held by one message, returned when dropped.
#[derive(Debug)]
pub struct InboundBudget(#[allow(dead_code)] OwnedSemaphorePermit);

/// Handle to the running network: send and broadcast encoded messages.
#[derive(Debug, Clone)]
pub struct Network {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: NetConfig,
    key: SecretKey,
    /// The peer table: index → (key, address). Append-only, at most [`MAX_PEERS`].
    table: Mutex<Vec<(PublicKey, String)>>,
    /// The runtime the network started on: dial loops for peers added later (from the
    /// driver's thread) run there, not on the caller's (found by review: they ran on the
    /// consensus thread's own runtime and starved during long calls).
    runtime: tokio::runtime::Handle,
    /// Connected peers: index → (connection generation, outbound queue).
    peers: Mutex<BTreeMap<u16, Peer>>,
    next_generation: Mutex<u64>,
    /// Each validator's inbound byte budget, kept across its connections: a peer that
    /// reconnects must not get a fresh [`MAX_PEER_INBOUND_BYTES`] while its earlier messages
    /// still wait in the shared inbound queue. At most one entry per validator.
    inbound_budgets: Mutex<BTreeMap<u16, Arc<Semaphore>>>,
    /// Keys outside the table connected now. Lock order: table, peers, guests.
    guests: Mutex<Guests>,
    /// The clock guest tenures are measured on.
    started: std::time::Instant,
    /// Whether this node's own key is in its table (set by `add_peers`). While it is not,
    /// this node is (as far as it knows) every peer's guest: it sends them nothing a guest
    /// may not (no gossip, no frame over `MAX_GUEST_FRAME_BYTES`).
    in_own_table: std::sync::atomic::AtomicBool,
    inbound: mpsc::Sender<Inbound>,
    gossip: mpsc::Sender<(Vec<SignedTransaction>, InboundBudget)>,
}

impl Network {
    /// Binds the listener, starts dialing the peers with a larger key (so each pair
    /// has one dialer) and returns the handle, the stream of inbound consensus messages and
    /// the stream of gossiped transactions (kept apart so a transaction flood never delays
    /// a vote).
    pub async fn start(
        config: NetConfig,
        key: SecretKey,
    ) -> std::io::Result<(
        Network,
        mpsc::Receiver<Inbound>,
        mpsc::Receiver<(Vec<SignedTransaction>, InboundBudget)>,
    )> {
        let listener = TcpListener::bind(config.listen).await?;
        let (inbound, rx) = mpsc::channel(INBOUND_QUEUE_LEN);
        let (gossip, gossip_rx) = mpsc::channel(GOSSIP_QUEUE_LEN);
        let mut table = config.validators.clone();
        table.truncate(MAX_PEERS);
        let guest_tenure_ms = config.guest_tenure_ms;
        let net = Network {
            inner: Arc::new(Inner {
                config,
                key,
                table: Mutex::new(Vec::new()),
                runtime: tokio::runtime::Handle::current(),
                peers: Mutex::new(BTreeMap::new()),
                next_generation: Mutex::new(0),
                inbound_budgets: Mutex::new(BTreeMap::new()),
                guests: Mutex::new(Guests::new(guest_tenure_ms)),
                started: std::time::Instant::now(),
                in_own_table: std::sync::atomic::AtomicBool::new(false),
                inbound,
                gossip,
            }),
        };
        tokio::spawn(net.clone().accept_loop(listener));
        net.add_peers(&table);
        Ok((net, rx, gossip_rx))
    }

    /// Adds the peers not in the table yet (in order, up to [`MAX_PEERS`]) and updates the
    /// addresses of known ones; returns the whole table's keys (index order). Of each pair
    /// the node with the smaller key dials, so every pair has one dialer whatever order
    /// their tables list them in; while this node's own key is not in its table (it is not
    /// registered, as far as it knows), it also dials the others as their guest. A guest
    /// whose key is in the table now loses its slot and its link: it reconnects under its
    /// table index.
    pub fn add_peers(&self, peers: &[(PublicKey, String)]) -> Vec<PublicKey> {
        let me = self.inner.key.public_key();
        let (mut dial, mut guest_dial) = (Vec::new(), Vec::new());
        let keys = {
            let mut table = self.inner.table.lock().expect("table lock");
            for (key, addr) in peers {
                if let Some(entry) = table.iter_mut().find(|(k, _)| k == key) {
                    entry.1.clone_from(addr);
                } else if table.len() < MAX_PEERS {
                    table.push((*key, addr.clone()));
                    let index = u16::try_from(table.len() - 1).unwrap_or(u16::MAX);
                    if me < *key {
                        dial.push(index);
                    } else if me != *key {
                        guest_dial.push(index);
                    }
                }
            }
            // Under the table lock, so a handshake cannot make a table key a guest after
            // this (the handshake looks the key up and takes a slot under the same lock).
            let mut links = self.inner.peers.lock().expect("peers lock");
            let mut guests = self.inner.guests.lock().expect("guests lock");
            for (key, _) in table.iter() {
                if let Some(index) = guests.promote(key) {
                    links.remove(&index);
                }
            }
            metrics::gauge!(metric::GUESTS).set(guests.count() as f64);
            if table.iter().any(|(k, _)| *k == me) {
                self.inner
                    .in_own_table
                    .store(true, std::sync::atomic::Ordering::Release);
            }
            table.iter().map(|(k, _)| *k).collect()
        };
        for index in dial {
            self.inner.runtime.spawn(self.clone().dial_loop(index));
        }
        for index in guest_dial {
            self.inner
                .runtime
                .spawn(self.clone().guest_dial_loop(index));
        }
        keys
    }

    /// Whether peers take the transactions this node gossips: only once its key is in its
    /// own table (registered), since peers drop a guest's gossip. Until then an RPC that
    /// admitted a transaction here would keep it from the chain without saying so.
    pub fn relays_transactions(&self) -> bool {
        self.in_own_table()
    }

    /// Whether this node's own key is in its table (it only ever enters it).
    fn in_own_table(&self) -> bool {
        self.inner
            .in_own_table
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// The address of peer `index` now (it follows `add_peers` updates).
    fn address(&self, index: u16) -> Option<String> {
        let table = self.inner.table.lock().expect("table lock");
        table.get(usize::from(index)).map(|(_, a)| a.clone())
    }

    /// Table peers with a link open now (guests not counted).
    pub fn peer_count(&self) -> usize {
        self.connected().len()
    }

    /// Guests with a slot now.
    pub fn guest_count(&self) -> usize {
        self.inner.guests.lock().expect("guests lock").count()
    }

    /// The table indices with an authenticated link open now (guests not included).
    pub fn connected(&self) -> Vec<u16> {
        self.inner
            .peers
            .lock()
            .expect("peers lock")
            .keys()
            .copied()
            .filter(|p| !is_guest(*p))
            .collect()
    }

    /// Queues `message` for one peer; drops it if the peer is not connected or its queue is
    /// full.
    pub fn send(&self, to: u16, message: &NetMessage) {
        let bytes = Arc::new(message.encode());
        self.send_bytes(to, bytes);
    }

    /// Queues `message` for every connected peer (encoded once). Guests get only messages
    /// of at most `MAX_GUEST_FRAME_BYTES` (votes, certificates, requests): a proposal's
    /// body they fetch by sync when a certificate names it, so eight strangers cannot make
    /// a leader upload each proposal eight more times (found by review).
    pub fn broadcast(&self, message: &NetMessage) {
        if !self.in_own_table() && matches!(message, NetMessage::Transactions(_)) {
            // Its peers drop a guest's gossip: a node not registered relays nothing.
            metrics::counter!(metric::P2P_DROPPED, "reason" => "unregistered_gossip").increment(1);
            return;
        }
        let bytes = Arc::new(message.encode());
        let small = bytes.len() <= MAX_GUEST_FRAME_BYTES;
        let peers: Vec<u16> = self
            .inner
            .peers
            .lock()
            .expect("peers lock")
            .keys()
            .copied()
            .filter(|p| small || !is_guest(*p))
            .collect();
        for peer in peers {
            self.send_bytes(peer, bytes.clone());
        }
    }

    fn send_bytes(&self, to: u16, bytes: Arc<Vec<u8>>) {
        // A guest's peers close its link on a larger frame and drop its gossip: a node
        // outside its own table keeps to that (found by review: a joiner's sync answer or
        // gossip batch cut its own links).
        if !self.in_own_table() && bytes.len() > MAX_GUEST_FRAME_BYTES {
            metrics::counter!(metric::P2P_DROPPED, "reason" => "guest_frame").increment(1);
            return;
        }
        let sender = self
            .inner
            .peers
            .lock()
            .expect("peers lock")
            .get(&to)
            .map(|(_, s, budget)| (s.clone(), budget.clone()));
        match sender {
            Some((sender, budget)) => {
                let len = bytes.len();
                if !budget.try_reserve(len) {
                    metrics::counter!(metric::P2P_DROPPED, "reason" => "queue_bytes_full")
                        .increment(1);
                } else if sender.try_send(bytes).is_err() {
                    budget.release(len);
                    metrics::counter!(metric::P2P_DROPPED, "reason" => "queue_full").increment(1);
                }
            }
            None => {
                metrics::counter!(metric::P2P_DROPPED, "reason" => "not_connected").increment(1);
            }
        }
    }

    async fn accept_loop(self, listener: TcpListener) {
        let permits = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
        let per_address = HandshakeSlots::new(MAX_PENDING_HANDSHAKES_PER_IP);
        loop {
            let (stream, addr) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "p2p accept failed");
                    tokio::time::sleep(Duration::from_millis(DIAL_BACKOFF_MIN_MS)).await;
                    continue;
                }
            };
            let slot = match per_address.try_acquire(addr.ip()) {
                Ok(slot) => slot,
                Err(e) => {
                    metrics::counter!(metric::P2P_REJECTED, "reason" => e.label()).increment(1);
                    continue;
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                metrics::counter!(metric::P2P_REJECTED, "reason" => "too_many_handshakes")
                    .increment(1);
                continue;
            };
            let net = self.clone();
            tokio::spawn(async move {
                let result = net.handshake(stream, false, None).await;
                drop(permit);
                drop(slot);
                match result {
                    Ok((peer, link)) => net.run_connection(peer, link).await,
                    Err(e) => {
                        metrics::counter!(metric::P2P_REJECTED, "reason" => e.label()).increment(1);
                        tracing::debug!(%addr, error = %e, "inbound p2p connection rejected");
                    }
                }
            });
        }
    }

    async fn dial_loop(self, peer: u16) {
        let mut backoff_ms = DIAL_BACKOFF_MIN_MS;
        loop {
            let Some(addr) = self.address(peer) else {
                return;
            };
            if self.dial(peer, &addr).await {
                backoff_ms = DIAL_BACKOFF_MIN_MS;
            }
            tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
            backoff_ms = (backoff_ms * 2).min(DIAL_BACKOFF_MAX_MS);
        }
    }

    /// Dials `peer` (a smaller key, which does not dial this node) as its guest while this
    /// node's own key is not in its table and no link to `peer` is open, every
    /// [`GUEST_DIAL_INTERVAL_MS`]. Once the key is in the table (this node saw its own
    /// registration) the peers that know it dial it, and this loop ends.
    async fn guest_dial_loop(self, peer: u16) {
        let mut backoff_ms = GUEST_DIAL_INTERVAL_MS;
        loop {
            if self.in_own_table() {
                return;
            }
            let linked = self
                .inner
                .peers
                .lock()
                .expect("peers lock")
                .contains_key(&peer);
            if !linked {
                let Some(addr) = self.address(peer) else {
                    return;
                };
                backoff_ms = if self.dial(peer, &addr).await {
                    GUEST_DIAL_INTERVAL_MS
                } else {
                    (backoff_ms * 2).min(DIAL_BACKOFF_MAX_MS)
                };
            }
            tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
        }
    }

    /// Connects to `peer` at `addr` and runs the link until it fails; whether the link held
    /// (it lasted at least a keepalive interval).
    async fn dial(&self, peer: u16, addr: &str) -> bool {
        // A dropped SYN (a partition) would otherwise hold the dial for TCP's ~2 minutes.
        let connect = tokio::time::timeout(
            Duration::from_millis(HANDSHAKE_TIMEOUT_MS),
            TcpStream::connect(addr),
        )
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
        match connect {
            Ok(stream) => match self.handshake(stream, true, Some(peer)).await {
                Ok((peer, link)) => {
                    let started = tokio::time::Instant::now();
                    self.run_connection(peer, link).await;
                    // A responder with no guest slot free refuses only after the identity
                    // exchange: a link that closed at once is not a success to stop backing
                    // off for (found by review).
                    return started.elapsed() >= Duration::from_millis(KEEPALIVE_INTERVAL_MS);
                }
                Err(e) => {
                    metrics::counter!(metric::P2P_REJECTED, "reason" => e.label()).increment(1);
                    tracing::debug!(peer, %addr, error = %e, "outbound handshake failed");
                }
            },
            Err(e) => tracing::trace!(peer, %addr, error = %e, "dial failed"),
        }
        false
    }

    /// Noise XX, then the identity exchange; returns the peer's index in the table, or a
    /// guest slot's for an inbound key outside it.
    async fn handshake(
        &self,
        stream: TcpStream,
        initiator: bool,
        expect: Option<u16>,
    ) -> Result<(u16, Link), WireError> {
        let config = &self.inner.config;
        let mut prologue = b"keel p2p v1".to_vec();
        prologue.extend(config.chain_id.to_be_bytes());
        prologue.extend(config.genesis_hash.0);
        let timeout = Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
        // Guest slots are shared out by the address prefix a stranger connects from.
        let prefix = stream
            .peer_addr()
            .map_or(std::net::IpAddr::from([0u8, 0, 0, 0]), |a| {
                guests::guest_prefix(a.ip())
            });
        let work = async {
            // Until the peer proves it is a validator, only the small identity frame.
            let mut link =
                Link::handshake(stream, initiator, &prologue, MAX_PREAUTH_FRAME_BYTES).await?;
            let mut signed = IDENTITY_DOMAIN.to_vec();
            signed.extend_from_slice(link.handshake_hash());
            let mine = Identity {
                public_key: self.inner.key.public_key(),
                signature: self.inner.key.sign(&signed),
            };
            let mine = borsh::to_vec(&mine).map_err(|e| WireError::Io(e.to_string()))?;
            // The responder shows its identity first and the dialer answers only once it is
            // the peer it meant to reach. Were the dialer's sent first, a registered address
            // pointing at an honest validator would make every dialer's identity replace
            // that validator's live link to it, then abort (found by review).
            if !initiator {
                link.send(&mine).await?;
            }
            let theirs = link.recv().await?;
            let theirs = Identity::try_from_slice(&theirs)
                .map_err(|e| WireError::Protocol(format!("identity: {e}")))?;
            theirs
                .public_key
                .verify(&signed, &theirs.signature)
                .map_err(|_| WireError::Identity("identity signature does not verify".into()))?;
            if theirs.public_key == self.inner.key.public_key() {
                return Err(WireError::Identity("peer holds this node's own key".into()));
            }
            let index = {
                let table = self.inner.table.lock().expect("table lock");
                match table.iter().position(|(k, _)| *k == theirs.public_key) {
                    Some(i) => u16::try_from(i).ok(),
                    // Only a node that dialed us may be a guest: we dial table keys alone.
                    None if !initiator => {
                        let mut links = self.inner.peers.lock().expect("peers lock");
                        let mut guests = self.inner.guests.lock().expect("guests lock");
                        let now_ms = u64::try_from(self.inner.started.elapsed().as_millis())
                            .unwrap_or(u64::MAX);
                        let admitted = guests.admit(theirs.public_key, prefix, now_ms);
                        if let Some(Admitted {
                            index,
                            evicted: Some(evicted),
                        }) = admitted
                        {
                            // Its tenure is up: its link ends once its queue's sender is
                            // gone, and its end no longer frees the slot (guests.rs).
                            links.remove(&index);
                            metrics::counter!(metric::P2P_DROPPED, "reason" => "guest_evicted")
                                .increment(1);
                            tracing::info!(index, %evicted, by = %theirs.public_key, "guest evicted: its tenure is up and every slot is taken");
                        }
                        metrics::gauge!(metric::GUESTS).set(guests.count() as f64);
                        admitted.map(|a| a.index)
                    }
                    None => None,
                }
            }
            .ok_or_else(|| {
                WireError::Identity(format!(
                    "{} is not a registered validator of this chain, and no guest slot is free",
                    theirs.public_key
                ))
            })?;
            if expect.is_some_and(|e| e != index) {
                return Err(WireError::Identity(format!(
                    "peer is peer {index}, expected {expect:?}"
                )));
            }
            if initiator {
                link.send(&mine).await?;
            }
            link.peer_key = Some(theirs.public_key);
            link.set_max_frame_bytes(if is_guest(index) {
                MAX_GUEST_FRAME_BYTES.min(config.max_frame_bytes)
            } else {
                config.max_frame_bytes
            });
            Ok((index, link))
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| WireError::Timeout)?
    }

    /// The peer's inbound byte budget, the same for all its connections (a guest slot's is
    /// the slot's, whichever key holds it, and smaller).
    fn inbound_budget(&self, peer: u16) -> Arc<Semaphore> {
        let max = if is_guest(peer) {
            MAX_GUEST_INBOUND_BYTES
        } else {
            MAX_PEER_INBOUND_BYTES
        };
        self.inner
            .inbound_budgets
            .lock()
            .expect("budgets lock")
            .entry(peer)
            .or_insert_with(|| Arc::new(Semaphore::new(max)))
            .clone()
    }

    /// The connection serving `peer` now (a number that changes with each new link), if
    /// any. A request that went over a link that has since closed may never be answered
    /// (the answer may also come over the newer link), so a client waiting for one stops
    /// and asks again: at worst one request more.
    pub fn link_generation(&self, peer: u16) -> Option<u64> {
        let peers = self.inner.peers.lock().expect("peers lock");
        peers.get(&peer).map(|(g, _, _)| *g)
    }

    /// Whether connection `generation` still serves `peer`.
    fn holds(&self, peer: u16, generation: u64) -> bool {
        let peers = self.inner.peers.lock().expect("peers lock");
        peers.get(&peer).is_some_and(|(g, _, _)| *g == generation)
    }

    /// Registers the connection (replacing an older one to the same peer), then pumps both
    /// directions until either fails.
    async fn run_connection(&self, peer: u16, link: Link) {
        let (tx, mut rx) = mpsc::channel::<Arc<Vec<u8>>>(self.inner.config.peer_queue_len);
        let outbound = Arc::new(ByteBudget::new(if is_guest(peer) {
            MAX_GUEST_OUTBOUND_BYTES
        } else {
            MAX_PEER_OUTBOUND_BYTES
        }));
        let inbound_budget = self.inbound_budget(peer);
        let generation = {
            let mut g = self.inner.next_generation.lock().expect("generation lock");
            *g += 1;
            *g
        };
        {
            let mut peers = self.inner.peers.lock().expect("peers lock");
            if is_guest(peer) {
                let mut guests = self.inner.guests.lock().expect("guests lock");
                let key = link.peer_key.unwrap_or(PublicKey([0; 32]));
                if !guests.connected(peer, &key, generation) {
                    // Its slot was freed since the handshake (its key entered the table):
                    // drop the link; it redials and gets its table index.
                    tracing::debug!(peer, "guest slot gone before its link registered");
                    return;
                }
            }
            peers.insert(peer, (generation, tx, outbound.clone()));
        }
        metrics::gauge!(metric::PEERS).set(self.peer_count() as f64);
        tracing::info!(peer, guest = is_guest(peer), "p2p connected");
        let (mut reader, mut writer) = link.split();
        let keepalive = Duration::from_millis(KEEPALIVE_INTERVAL_MS);
        let write = async {
            loop {
                let bytes = match tokio::time::timeout(keepalive, rx.recv()).await {
                    Ok(Some(bytes)) => bytes,
                    Ok(None) => return WireError::Closed,
                    // Idle: an empty message tells the peer this link is alive.
                    Err(_) => Arc::new(Vec::new()),
                };
                outbound.release(bytes.len());
                if let Err(e) = writer.send(&bytes).await {
                    return e;
                }
            }
        };
        let inbound = self.inner.inbound.clone();
        let gossip = self.inner.gossip.clone();
        let read = async {
            let idle = Duration::from_millis(PEER_IDLE_TIMEOUT_MS);
            let interval = Duration::from_millis(KEEPALIVE_INTERVAL_MS);
            let (mut window_start, mut keepalives) = (tokio::time::Instant::now(), 0u32);
            loop {
                let received = reader.recv_within(Some(idle)).await;
                // A guest index passes from key to key (an eviction, a promotion): a link
                // that no longer holds its index ends at its next frame, before anything it
                // sent is counted as the index's new holder's (found by review: an evicted
                // guest whose writer blocked kept talking under its successor's index).
                if is_guest(peer) && received.is_ok() && !self.holds(peer, generation) {
                    return WireError::Closed;
                }
                let bytes = match received {
                    Ok(bytes) if bytes.is_empty() => {
                        let now = tokio::time::Instant::now();
                        if now.duration_since(window_start) >= interval {
                            (window_start, keepalives) = (now, 0);
                        }
                        keepalives += 1;
                        if keepalives > MAX_KEEPALIVES_PER_INTERVAL {
                            return WireError::Protocol("keepalive flood".into());
                        }
                        continue;
                    }
                    Ok(bytes) => bytes,
                    Err(e) => return e,
                };
                // Wait (reading nothing more from this peer) until its earlier messages
                // are handled and the budget has room.
                let Ok(permit) = inbound_budget
                    .clone()
                    .acquire_many_owned(if is_guest(peer) {
                        guest_inbound_permits(bytes.len())
                    } else {
                        inbound_permits(bytes.len())
                    })
                    .await
                else {
                    return WireError::Closed;
                };
                let budget = InboundBudget(permit);
                match NetMessage::decode(&bytes) {
                    // Nobody vouches for a guest: it may sync, not fill the mempools.
                    Ok(NetMessage::Transactions(_)) if is_guest(peer) => {
                        metrics::counter!(metric::P2P_DROPPED, "reason" => "guest_gossip")
                            .increment(1);
                    }
                    Ok(NetMessage::Transactions(txs)) => {
                        if gossip.try_send((txs, budget)).is_err() {
                            metrics::counter!(metric::P2P_DROPPED, "reason" => "gossip_queue_full")
                                .increment(1);
                        }
                    }
                    Ok(message) => {
                        // A place in the queue first: a guest link evicted while it waited
                        // for one hands nothing on under the index's new holder.
                        let Ok(place) = inbound.reserve().await else {
                            return WireError::Closed;
                        };
                        if is_guest(peer) && !self.holds(peer, generation) {
                            return WireError::Closed;
                        }
                        place.send(Inbound {
                            from: peer,
                            message,
                            budget,
                        });
                    }
                    Err(e) => return WireError::Protocol(format!("message: {e}")),
                }
            }
        };
        let error = tokio::select! {
            e = write => e,
            e = read => e,
        };
        if !matches!(error, WireError::Closed | WireError::Eof) {
            metrics::counter!(metric::P2P_REJECTED, "reason" => error.label()).increment(1);
        }
        tracing::info!(peer, error = %error, "p2p disconnected");
        let mut peers = self.inner.peers.lock().expect("peers lock");
        if peers.get(&peer).is_some_and(|(g, _, _)| *g == generation) {
            peers.remove(&peer);
        }
        if is_guest(peer) {
            let mut guests = self.inner.guests.lock().expect("guests lock");
            guests.disconnected(peer, generation);
            metrics::gauge!(metric::GUESTS).set(guests.count() as f64);
        }
        drop(peers);
        metrics::gauge!(metric::PEERS).set(self.peer_count() as f64);
    }
}

/// Connects to a node's p2p port as `key`, completes the handshake, optionally sends one
/// raw message, and reports whether the node keeps talking: `Ok` once it sends anything,
/// `Err` if it closes the connection (a rejected identity, an oversized frame). For
/// operators checking connectivity and for the adversarial tests.
pub async fn probe(
    addr: &str,
    key: &SecretKey,
    chain_id: u64,
    genesis_hash: Hash,
    send: Option<Vec<u8>>,
) -> Result<(), WireError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| WireError::Io(e.to_string()))?;
    let mut prologue = b"keel p2p v1".to_vec();
    prologue.extend(chain_id.to_be_bytes());
    prologue.extend(genesis_hash.0);
    let work = async {
        let max = keel_consensus::MAX_MESSAGE_BYTES + 1024;
        let mut link = Link::handshake(stream, true, &prologue, max).await?;
        let mut signed = IDENTITY_DOMAIN.to_vec();
        signed.extend_from_slice(link.handshake_hash());
        let mine = Identity {
            public_key: key.public_key(),
            signature: key.sign(&signed),
        };
        link.send(&borsh::to_vec(&mine).map_err(|e| WireError::Io(e.to_string()))?)
            .await?;
        let _their_identity = link.recv().await?;
        if let Some(bytes) = send {
            link.send(&bytes).await?;
        }
        link.recv().await.map(|_| ())
    };
    tokio::time::timeout(Duration::from_millis(HANDSHAKE_TIMEOUT_MS), work)
        .await
        .map_err(|_| WireError::Timeout)?
}

#[cfg(test)]
mod tests;
