//! What strangers and peers can make this node hold: handshake slots per address, and the
//! bytes queued per peer in each direction.

use super::WireError;
use keel_types::sync::Lock;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Unauthenticated handshakes in progress at once from one network prefix (an IPv4 /24 or an
/// IPv6 /64, see [`handshake_prefix`]). A node's peers dial it once each (one dial loop per
/// pair), so an honest prefix has one or a few handshakes in flight; a few more cover
/// validators sharing a host or a subnet (a local devnet) and reconnect overlap. Without it
/// one address could take every one of the listener's `MAX_PENDING_HANDSHAKES` slots; keyed
/// by address rather than prefix, eight addresses of one subnet (or one IPv6 /64, which any
/// host can fill with addresses) still could.
pub const MAX_PENDING_HANDSHAKES_PER_IP: usize = 8;

/// The prefix handshake slots are counted by: an IPv4 /24, an IPv6 /64 (an IPv4-mapped IPv6
/// address counts as its IPv4 address).
pub fn handshake_prefix(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => handshake_prefix(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
            }
        },
    }
}

/// Largest frame accepted before the peer is authenticated: the identity frame (a 32-byte
/// key and a 64-byte signature, borsh-encoded) with room to spare. The configured frame limit
/// (16 MiB by default) applies only once the peer proved it is a validator, so a stranger
/// cannot make the node allocate a large buffer.
pub const MAX_PREAUTH_FRAME_BYTES: usize = 4 * 1024;

/// Encoded bytes queued for one peer (outbound). The count bound (`peer_queue_len`, 1,024)
/// alone allows 1,024 maximal messages, 16 GiB, e.g. sync responses a peer asks for and
/// never reads. A message is always queued when the queue is empty, so the largest message
/// still goes.
pub const MAX_PEER_OUTBOUND_BYTES: usize = 64 * 1024 * 1024;

/// Bytes of messages received from one peer and not yet handled (waiting in the driver's or
/// the mempool's queue). Past it the connection's reader waits, which pushes back on that
/// peer alone; without it `INBOUND_QUEUE_LEN` (8,192) maximal messages could be queued.
pub const MAX_PEER_INBOUND_BYTES: usize = 64 * 1024 * 1024;

/// Handshakes in progress per prefix; only prefixes with one in progress have an entry.
pub type InProgress = BTreeMap<IpAddr, usize>;

/// The handshakes in progress per address. Generic over the lock for the loom models.
#[derive(Debug)]
pub struct HandshakeSlots<L: Lock<InProgress> = Mutex<InProgress>> {
    max_per_address: usize,
    in_progress: Arc<L>,
}

/// One handshake slot; released when dropped (whatever the handshake's outcome).
#[derive(Debug)]
pub struct HandshakeSlot<L: Lock<InProgress> = Mutex<InProgress>> {
    address: IpAddr,
    in_progress: Arc<L>,
}

impl HandshakeSlots {
    pub fn new(max_per_address: usize) -> HandshakeSlots {
        HandshakeSlots::with_lock(max_per_address)
    }
}

impl<L: Lock<InProgress>> HandshakeSlots<L> {
    /// [`HandshakeSlots::new`] over any lock (the loom models use loom's).
    pub fn with_lock(max_per_address: usize) -> HandshakeSlots<L> {
        HandshakeSlots {
            max_per_address,
            in_progress: Arc::new(L::new(BTreeMap::new())),
        }
    }

    /// A slot for a handshake from `address`, or `TooManyHandshakes` if it already has the
    /// maximum in progress.
    pub fn try_acquire(&self, address: IpAddr) -> Result<HandshakeSlot<L>, WireError> {
        let address = handshake_prefix(address);
        // A panic elsewhere cannot leave a count half-updated: the counts stay usable.
        let mut in_progress = self.in_progress.acquire().unwrap_or_else(|e| e);
        let count = in_progress.entry(address).or_insert(0);
        if *count >= self.max_per_address {
            return Err(WireError::TooManyHandshakes {
                max: self.max_per_address,
            });
        }
        *count += 1;
        Ok(HandshakeSlot {
            address,
            in_progress: self.in_progress.clone(),
        })
    }

    /// Handshakes in progress from `address` (tests observe the slots being released).
    #[cfg(test)]
    pub fn in_progress(&self, address: IpAddr) -> usize {
        let in_progress = self.in_progress.acquire().unwrap_or_else(|e| e);
        in_progress
            .get(&handshake_prefix(address))
            .copied()
            .unwrap_or(0)
    }

    /// Prefixes with a handshake in progress (the models check none is left behind).
    #[cfg(test)]
    pub fn prefixes(&self) -> usize {
        self.in_progress.acquire().unwrap_or_else(|e| e).len()
    }
}

impl<L: Lock<InProgress>> Drop for HandshakeSlot<L> {
    fn drop(&mut self) {
        let mut in_progress = self.in_progress.acquire().unwrap_or_else(|e| e);
        if let Some(count) = in_progress.get_mut(&self.address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                // No entry per address that ever connected: the map holds only live ones.
                in_progress.remove(&self.address);
            }
        }
    }
}

/// An atomic counter as [`ByteBudget`] needs it: std's in production, loom's in the models.
pub trait Counter {
    fn new(value: usize) -> Self;
    /// `fetch_update` with acquire-release ordering.
    fn update(&self, f: impl FnMut(usize) -> Option<usize>) -> Result<usize, usize>;
}

impl Counter for AtomicUsize {
    fn new(value: usize) -> Self {
        AtomicUsize::new(value)
    }
    fn update(&self, f: impl FnMut(usize) -> Option<usize>) -> Result<usize, usize> {
        self.fetch_update(Ordering::AcqRel, Ordering::Acquire, f)
    }
}

/// Bytes queued in one direction of one connection, against a maximum.
#[derive(Debug)]
pub struct ByteBudget<C: Counter = AtomicUsize> {
    max: usize,
    used: C,
}

impl ByteBudget {
    pub fn new(max: usize) -> ByteBudget {
        ByteBudget::with_counter(max)
    }
}

impl<C: Counter> ByteBudget<C> {
    /// [`ByteBudget::new`] over any counter (the loom models use loom's atomic).
    pub fn with_counter(max: usize) -> ByteBudget<C> {
        ByteBudget {
            max,
            used: C::new(0),
        }
    }

    /// Reserves `len` bytes: always when nothing is reserved (one message of any allowed
    /// size may wait), otherwise only within the maximum.
    pub fn try_reserve(&self, len: usize) -> bool {
        self.used
            .update(|used| {
                let fits = used == 0 || used.saturating_add(len) <= self.max;
                fits.then_some(used.saturating_add(len))
            })
            .is_ok()
    }

    /// Returns `len` bytes reserved earlier.
    pub fn release(&self, len: usize) {
        let _ = self.used.update(|used| Some(used.saturating_sub(len)));
    }

    /// Bytes currently reserved (tests observe the budget being released).
    #[cfg(test)]
    pub fn used(&self) -> usize {
        // An update to the same value returns the current one.
        self.used.update(Some).unwrap_or_else(|used| used)
    }
}

/// The semaphore permits a received message of `len` bytes holds against
/// [`MAX_PEER_INBOUND_BYTES`]: at least one (every message counts), at most the whole budget
/// (a message larger than the budget waits until nothing else from that peer is pending).
pub fn inbound_permits(len: usize) -> u32 {
    u32::try_from(len.clamp(1, MAX_PEER_INBOUND_BYTES)).unwrap_or(u32::MAX)
}

#[cfg(test)]
#[path = "loom_models.rs"]
mod loom_models;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_cannot_take_more_than_its_handshake_slots() {
        let slots = HandshakeSlots::new(MAX_PENDING_HANDSHAKES_PER_IP);
        let attacker: IpAddr = "203.0.113.7".parse().expect("address");
        let honest: IpAddr = "198.51.100.1".parse().expect("address");
        let held: Vec<_> = (0..MAX_PENDING_HANDSHAKES_PER_IP)
            .map(|_| slots.try_acquire(attacker).expect("within the limit"))
            .collect();
        let refused = slots.try_acquire(attacker).expect_err("one too many");
        assert!(matches!(
            refused,
            WireError::TooManyHandshakes {
                max: MAX_PENDING_HANDSHAKES_PER_IP
            }
        ));
        // Another address is unaffected.
        let _other = slots.try_acquire(honest).expect("another address");
        // A finished handshake frees its slot; all finished leaves no entry behind.
        drop(held);
        assert_eq!(slots.in_progress(attacker), 0);
        assert!(slots
            .in_progress
            .lock()
            .expect("lock")
            .get(&handshake_prefix(attacker))
            .is_none());
        let _again = slots.try_acquire(attacker).expect("slot freed");
    }

    #[test]
    fn one_subnet_cannot_take_the_slots_with_many_addresses() {
        let slots = HandshakeSlots::new(MAX_PENDING_HANDSHAKES_PER_IP);
        // Eight addresses of one /24 (or of one IPv6 /64) share the prefix's slots.
        let v4 = |i: usize| -> IpAddr { format!("203.0.113.{}", 10 + i).parse().expect("v4") };
        let v6 = |i: usize| -> IpAddr { format!("2001:db8:1:2::{:x}", 1 + i).parse().expect("v6") };
        let held: Vec<_> = (0..MAX_PENDING_HANDSHAKES_PER_IP)
            .flat_map(|i| [slots.try_acquire(v4(i)), slots.try_acquire(v6(i))])
            .map(|slot| slot.expect("within the prefix's limit"))
            .collect();
        assert!(
            slots.try_acquire(v4(100)).is_err(),
            "a new address of the same /24"
        );
        assert!(
            slots.try_acquire(v6(100)).is_err(),
            "a new address of the same /64"
        );
        let mapped: IpAddr = "::ffff:203.0.113.200".parse().expect("mapped");
        assert!(
            slots.try_acquire(mapped).is_err(),
            "IPv4-mapped counts as its IPv4 /24"
        );
        // Neighbouring prefixes are unaffected.
        let _a = slots
            .try_acquire("203.0.114.1".parse().expect("v4"))
            .expect("another /24");
        let _b = slots
            .try_acquire("2001:db8:1:3::1".parse().expect("v6"))
            .expect("another /64");
        drop(held);
        let _again = slots.try_acquire(v4(100)).expect("slots freed");
    }

    #[test]
    fn outbound_bytes_per_peer_are_bounded() {
        let budget = ByteBudget::new(100);
        // A single message larger than the budget still goes when nothing is queued.
        assert!(budget.try_reserve(150));
        assert!(!budget.try_reserve(1));
        budget.release(150);
        assert!(budget.try_reserve(60));
        assert!(budget.try_reserve(40));
        assert!(!budget.try_reserve(1));
        budget.release(60);
        assert!(budget.try_reserve(60));
        assert_eq!(budget.used(), 100);
    }

    #[test]
    fn inbound_permits_are_within_the_budget() {
        assert_eq!(inbound_permits(0), 1);
        assert_eq!(inbound_permits(1_000), 1_000);
        assert_eq!(inbound_permits(usize::MAX), MAX_PEER_INBOUND_BYTES as u32);
    }
}
