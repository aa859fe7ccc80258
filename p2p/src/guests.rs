//! Guests: nodes whose key is outside the peer table (a joiner not registered yet), admitted
//! to a few slots so they can sync before their operator registers them.
//!
//! A guest completed the same Noise handshake and identity exchange as a validator, so its
//! key is proven, but nobody vouches for it: it is served what any observer may ask (block
//! sync, snapshot chunks, at the app's non-member rate) and hears broadcasts like a
//! registered candidate, while its votes count nowhere (the app maps peers to set members by
//! the table's keys, which never hold a guest's index) and its gossiped transactions are
//! dropped. Its slot is freed when its connection ends, or when its key enters the table:
//! the link is then closed and the pair reconnects under the key's table index.

use keel_types::PublicKey;
use std::net::IpAddr;

/// Guests connected at once. A stranger can hold a slot only with a live connection (an idle
/// one is dropped after `PEER_IDLE_TIMEOUT_MS`), so strangers can crowd joiners out (until
/// their operators register them) but hold at most this many slots' budgets below.
pub const MAX_GUEST_PEERS: usize = 8;
/// Guest slots one address prefix ([`guest_prefix`]: an IPv4 /24, an IPv6 /48) may hold at
/// once: one host, or one subnet, cannot take every slot and crowd out the joiners they exist
/// for.
pub const MAX_GUESTS_PER_PREFIX: usize = 2;
const _: () = assert!(MAX_GUESTS_PER_PREFIX < MAX_GUEST_PEERS);
/// Largest message a guest may send: it only asks (sync and snapshot requests are a few
/// bytes), so a stranger never makes the node buffer a validator-sized frame. A node
/// outside its own table sends no larger message (it may be a guest anywhere), and guests
/// are broadcast only messages this small.
pub const MAX_GUEST_FRAME_BYTES: usize = 64 * 1024;
/// A guest's inbound byte budget (messages received and not yet handled).
pub const MAX_GUEST_INBOUND_BYTES: usize = 1024 * 1024;
/// What one message of a guest holds of its inbound budget at least: 256 small requests
/// per guest, 2,048 for all, well below the inbound queue's 8,192 places that votes wait
/// in too (found by review: per byte, one guest's tiny requests could fill it).
pub const GUEST_MESSAGE_MIN_CHARGE_BYTES: usize = 4 * 1024;
const _: () = assert!(
    MAX_GUEST_PEERS * (MAX_GUEST_INBOUND_BYTES / GUEST_MESSAGE_MIN_CHARGE_BYTES)
        <= crate::INBOUND_QUEUE_LEN / 4
);
/// Bytes queued for one guest. A message is always queued when nothing is, so the largest
/// sync answer still goes; a guest that does not read holds at most this much more.
pub const MAX_GUEST_OUTBOUND_BYTES: usize = 8 * 1024 * 1024;
const _: () = assert!(MAX_GUEST_FRAME_BYTES + 1024 <= MAX_GUEST_INBOUND_BYTES);

/// Guest slot `i`'s peer index: past every table index, so the app never takes a guest for
/// a table peer.
pub const GUEST_BASE: u16 = {
    assert!(crate::MAX_PEERS + MAX_GUEST_PEERS <= u16::MAX as usize);
    crate::MAX_PEERS as u16
};

/// The prefix guest slots are shared out by: an IPv4 /24 (an IPv4-mapped IPv6 address counts
/// as its IPv4 address), an IPv6 /48 — a site's usual allocation, which holds 65,536 /64s,
/// so a /64 would cost a stranger nothing (found by review).
pub fn guest_prefix(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], 0, 0, 0, 0, 0])
        }
        other => crate::limits::handshake_prefix(other),
    }
}

/// The permits a guest's message of `len` bytes holds against its inbound budget.
pub(crate) fn guest_inbound_permits(len: usize) -> u32 {
    u32::try_from(len.clamp(GUEST_MESSAGE_MIN_CHARGE_BYTES, MAX_GUEST_INBOUND_BYTES))
        .unwrap_or(u32::MAX)
}

/// Whether peer index `index` is a guest's.
pub fn is_guest(index: u16) -> bool {
    index >= GUEST_BASE
}

/// One guest slot: the key, the address prefix it connected from, and the generation of the
/// connection that serves it (`None` between the handshake and the connection's
/// registration).
type Slot = Option<(PublicKey, IpAddr, Option<u64>)>;

/// The guest slots.
#[derive(Debug, Default)]
pub(crate) struct Guests {
    slots: [Slot; MAX_GUEST_PEERS],
}

impl Guests {
    /// The index for `key`, connecting from address prefix `prefix`, if that prefix's other
    /// slots number fewer than [`MAX_GUESTS_PER_PREFIX`]: the slot it holds already (a
    /// reconnection, which then replaces its older link), else a free one; `None` otherwise.
    /// A key reconnecting into a full prefix is refused like a new one; its old slot stays
    /// until its old link ends. The slot waits
    /// for its new connection: the older one's end no longer frees it.
    pub(crate) fn admit(&mut self, key: PublicKey, prefix: IpAddr) -> Option<u16> {
        let held = self
            .slots
            .iter()
            .position(|s| s.is_some_and(|(k, _, _)| k == key));
        // The prefix's other slots: a key reconnecting from another prefix counts there too
        // (found by review: moving held slots onto one prefix freed their first prefix's
        // share, so two subnets could hold every slot).
        let same = self
            .slots
            .iter()
            .enumerate()
            .filter(|(i, s)| Some(*i) != held && s.is_some_and(|(_, p, _)| p == prefix))
            .count();
        if same >= MAX_GUESTS_PER_PREFIX {
            return None;
        }
        let slot = match held {
            Some(slot) => slot,
            None => self.slots.iter().position(Option::is_none)?,
        };
        self.slots[slot] = Some((key, prefix, None));
        Some(GUEST_BASE + u16::try_from(slot).ok()?)
    }

    /// Connection `generation` of `key` now serves guest `index`, if the slot still holds
    /// `key`; `false` when it was freed meanwhile (the key entered the table, or the slot
    /// went to another key): the connection must then be dropped, never served under an
    /// index that is not its key's.
    pub(crate) fn connected(&mut self, index: u16, key: &PublicKey, generation: u64) -> bool {
        match self.slot_mut(index) {
            Some(Some((k, _, g))) if k == key => {
                *g = Some(generation);
                true
            }
            _ => false,
        }
    }

    /// Guest `index`'s connection `generation` ended: its slot is freed unless a newer
    /// connection of the same key took over.
    pub(crate) fn disconnected(&mut self, index: u16, generation: u64) {
        if let Some(slot) = self.slot_mut(index) {
            if slot.is_some_and(|(_, _, g)| g == Some(generation)) {
                *slot = None;
            }
        }
    }

    /// `key` is in the table now: frees its slot and returns the index it held.
    pub(crate) fn promote(&mut self, key: &PublicKey) -> Option<u16> {
        let slot = self
            .slots
            .iter()
            .position(|s| s.is_some_and(|(k, _, _)| k == *key))?;
        self.slots[slot] = None;
        Some(GUEST_BASE + u16::try_from(slot).ok()?)
    }

    /// Guests holding a slot.
    pub(crate) fn count(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    fn slot_mut(&mut self, index: u16) -> Option<&mut Slot> {
        let slot = usize::from(index.checked_sub(GUEST_BASE)?);
        self.slots.get_mut(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> PublicKey {
        PublicKey([i; 32])
    }

    /// A different address prefix per `i`.
    fn prefix(i: u8) -> IpAddr {
        IpAddr::from([10, i, 0, 0])
    }

    #[test]
    fn ipv6_guests_share_a_48_and_ipv4_a_24() {
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("v6");
        let b: IpAddr = "2001:db8:1:ffff::9".parse().expect("v6");
        let c: IpAddr = "2001:db8:2::1".parse().expect("v6");
        assert_eq!(guest_prefix(a), guest_prefix(b));
        assert_ne!(guest_prefix(a), guest_prefix(c));
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().expect("mapped");
        assert_eq!(guest_prefix(mapped), IpAddr::from([10, 1, 2, 0]));
    }

    #[test]
    fn a_reconnection_from_another_prefix_counts_there() {
        let mut guests = Guests::default();
        let (home, away) = (prefix(1), prefix(2));
        assert!(guests.admit(key(1), home).is_some());
        assert!(guests.admit(key(2), home).is_some());
        let moving = guests.admit(key(3), away).expect("a slot");
        assert_eq!(guests.admit(key(3), home), None, "home is full");
        // Its slot stays where it was, counted there.
        assert!(guests.admit(key(4), away).is_some());
        assert_eq!(guests.admit(key(5), away), None);
        assert_eq!(guests.admit(key(3), away), Some(moving));
    }

    #[test]
    fn one_prefix_holds_at_most_its_share_of_the_slots() {
        let mut guests = Guests::default();
        let home = prefix(1);
        let first = guests.admit(key(1), home).expect("a slot");
        assert!(guests.admit(key(2), home).is_some());
        assert_eq!(guests.admit(key(3), home), None, "its prefix is full");
        // Other prefixes still get slots, and a key already holding one keeps it.
        assert!(guests.admit(key(3), prefix(2)).is_some());
        assert_eq!(guests.admit(key(1), home), Some(first));
        // A freed slot is the prefix's again.
        assert!(guests.connected(first, &key(1), 7));
        guests.disconnected(first, 7);
        assert!(guests.admit(key(4), home).is_some());
    }

    #[test]
    fn slots_are_bounded_reused_by_their_key_and_freed_by_the_latest_connection() {
        let mut guests = Guests::default();
        let indices: Vec<u16> = (0..MAX_GUEST_PEERS as u8)
            .map(|i| guests.admit(key(i), prefix(i)).expect("a free slot"))
            .collect();
        assert!(indices.iter().all(|i| is_guest(*i)));
        assert_eq!(
            guests.admit(key(200), prefix(200)),
            None,
            "every slot is taken"
        );
        // A reconnection of a known guest keeps its index.
        assert!(guests.connected(indices[3], &key(3), 1));
        assert_eq!(guests.admit(key(3), prefix(3)), Some(indices[3]));
        // The older connection ends before the newer one registers (found by review: it
        // freed the slot, orphaning the live link, and the next stranger shared its index).
        guests.disconnected(indices[3], 1);
        assert_eq!(
            guests.admit(key(200), prefix(200)),
            None,
            "the slot waits for its new link"
        );
        assert!(guests.connected(indices[3], &key(3), 2));
        guests.disconnected(indices[3], 2);
        assert_eq!(guests.admit(key(200), prefix(200)), Some(indices[3]));
        // A key that entered the table gives its slot back; a link of it registering after
        // that is refused (found by review: it stayed a guest, its votes ignored).
        assert_eq!(guests.promote(&key(5)), Some(indices[5]));
        assert_eq!(guests.promote(&key(5)), None);
        assert!(!guests.connected(indices[5], &key(5), 3));
        // Nor may a link register under a slot another key holds now.
        assert!(!guests.connected(indices[3], &key(3), 4));
        assert_eq!(guests.count(), MAX_GUEST_PEERS - 1);
        // Indices that are not a guest's are ignored.
        guests.disconnected(0, 2);
        assert!(!guests.connected(u16::MAX, &key(1), 2));
        assert!(!is_guest(GUEST_BASE - 1));
    }

    #[test]
    fn a_guest_message_holds_at_least_its_minimum_and_at_most_the_budget() {
        assert_eq!(
            guest_inbound_permits(0) as usize,
            GUEST_MESSAGE_MIN_CHARGE_BYTES
        );
        assert_eq!(
            guest_inbound_permits(11) as usize,
            GUEST_MESSAGE_MIN_CHARGE_BYTES
        );
        assert_eq!(guest_inbound_permits(10_000), 10_000);
        assert_eq!(
            guest_inbound_permits(usize::MAX) as usize,
            MAX_GUEST_INBOUND_BYTES
        );
    }
}
