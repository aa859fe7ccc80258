//! Guests: nodes whose key is outside the peer table (a joiner not registered yet), admitted
//! to a few slots so they can sync before their operator registers them.
//!
//! A guest completed the same Noise handshake and identity exchange as a validator, so its
//! key is proven, but nobody vouches for it: it is served what any observer may ask (block
//! sync, snapshot chunks, at the app's non-member rate) and hears broadcasts like a
//! registered candidate, while its votes count nowhere (the app maps peers to set members by
//! the table's keys, which never hold a guest's index) and its gossiped transactions are
//! dropped. Its slot is freed when its connection ends, or when its key enters the table:
//! the link is then closed and the pair reconnects under the key's table index. When every
//! slot is taken, a newcomer takes the slot of the guest admitted longest ago, once that one
//! has held it for the tenure ([`GUEST_TENURE_MS`]): strangers that fill the slots can delay
//! a joiner by a tenure, not keep it out.

use keel_types::PublicKey;
use std::net::IpAddr;

/// Guests connected at once. A stranger can hold a slot only with a live connection (an idle
/// one is dropped after `PEER_IDLE_TIMEOUT_MS`) and for a tenure before a newcomer may take
/// it, so strangers hold at most this many slots' budgets below.
pub const MAX_GUEST_PEERS: usize = 8;
/// How long a guest holds its slot before a newcomer finding every slot taken may take it
/// (the default of `NetConfig::guest_tenure_ms`). Long enough for a joiner to fetch many
/// snapshot chunks (a restore resumes where it stopped) and block-sync a few epochs; short
/// enough that a stranger that filled the slots keeps a joiner out for about a minute, not
/// until its operator registers it. A reconnection keeps its slot's admission time, so
/// redialing does not renew a tenure.
pub const GUEST_TENURE_MS: u64 = 60_000;
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

/// One guest slot: the key, the address prefix it connected from, the generation of the
/// connection that serves it (`None` between the handshake and the connection's
/// registration) and when the key was admitted (ms on the network's clock).
type Slot = Option<(PublicKey, IpAddr, Option<u64>, u64)>;

/// What [`Guests::admit`] gave a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Admitted {
    /// The guest index it is served under.
    pub index: u16,
    /// The guest whose tenure was up and whose slot this is now: its link must be closed.
    pub evicted: Option<PublicKey>,
}

/// The guest slots.
#[derive(Debug)]
pub(crate) struct Guests {
    slots: [Slot; MAX_GUEST_PEERS],
    tenure_ms: u64,
}

impl Guests {
    pub(crate) fn new(tenure_ms: u64) -> Guests {
        Guests {
            slots: [None; MAX_GUEST_PEERS],
            tenure_ms,
        }
    }

    /// The index for `key`, connecting from address prefix `prefix` at `now_ms`, if that
    /// prefix's other slots number fewer than [`MAX_GUESTS_PER_PREFIX`]: the slot it holds
    /// already (a reconnection, which then replaces its older link, and keeps its admission
    /// time), else a free one, else the slot of the connected guest admitted longest ago if
    /// it has held it for the tenure (that guest is `evicted`); `None` otherwise. A key
    /// reconnecting into a full prefix is refused like a new one; its old slot stays until
    /// its old link ends. The slot waits for its new connection: the older one's end no
    /// longer frees it.
    pub(crate) fn admit(
        &mut self,
        key: PublicKey,
        prefix: IpAddr,
        now_ms: u64,
    ) -> Option<Admitted> {
        let held = self
            .slots
            .iter()
            .position(|s| s.is_some_and(|(k, _, _, _)| k == key));
        // The prefix's other slots: a key reconnecting from another prefix counts there too
        // (found by review: moving held slots onto one prefix freed their first prefix's
        // share, so two subnets could hold every slot).
        let same = self
            .slots
            .iter()
            .enumerate()
            .filter(|(i, s)| Some(*i) != held && s.is_some_and(|(_, p, _, _)| p == prefix))
            .count();
        if same >= MAX_GUESTS_PER_PREFIX {
            return None;
        }
        let (slot, admitted_ms, evicted) = match held {
            Some(slot) => (
                slot,
                self.slots[slot].map_or(now_ms, |(_, _, _, t)| t),
                None,
            ),
            None => match self.slots.iter().position(Option::is_none) {
                Some(free) => (free, now_ms, None),
                None => {
                    let victim = self.longest_served(now_ms)?;
                    let evicted = self.slots[victim].map(|(k, _, _, _)| k);
                    (victim, now_ms, evicted)
                }
            },
        };
        self.slots[slot] = Some((key, prefix, None, admitted_ms));
        Some(Admitted {
            index: GUEST_BASE + u16::try_from(slot).ok()?,
            evicted,
        })
    }

    /// The slot of the connected guest admitted longest ago, if its tenure is up at `now_ms`
    /// (a slot still waiting for its connection is never taken: its key just won it).
    fn longest_served(&self, now_ms: u64) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Some((_, _, Some(_), admitted_ms))
                    if now_ms.saturating_sub(*admitted_ms) >= self.tenure_ms =>
                {
                    Some((*admitted_ms, i))
                }
                _ => None,
            })
            .min()
            .map(|(_, i)| i)
    }

    /// Connection `generation` of `key` now serves guest `index`, if the slot still holds
    /// `key`; `false` when it was freed meanwhile (the key entered the table, or the slot
    /// went to another key): the connection must then be dropped, never served under an
    /// index that is not its key's.
    pub(crate) fn connected(&mut self, index: u16, key: &PublicKey, generation: u64) -> bool {
        match self.slot_mut(index) {
            Some(Some((k, _, g, _))) if k == key => {
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
            if slot.is_some_and(|(_, _, g, _)| g == Some(generation)) {
                *slot = None;
            }
        }
    }

    /// `key` is in the table now: frees its slot and returns the index it held.
    pub(crate) fn promote(&mut self, key: &PublicKey) -> Option<u16> {
        let slot = self
            .slots
            .iter()
            .position(|s| s.is_some_and(|(k, _, _, _)| k == *key))?;
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

    /// `key` admitted at time 0 (tenures never end): its index.
    fn admit(guests: &mut Guests, key: PublicKey, prefix: IpAddr) -> Option<u16> {
        guests.admit(key, prefix, 0).map(|a| a.index)
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
        let mut guests = Guests::new(GUEST_TENURE_MS);
        let (home, away) = (prefix(1), prefix(2));
        assert!(admit(&mut guests, key(1), home).is_some());
        assert!(admit(&mut guests, key(2), home).is_some());
        let moving = admit(&mut guests, key(3), away).expect("a slot");
        assert_eq!(admit(&mut guests, key(3), home), None, "home is full");
        // Its slot stays where it was, counted there.
        assert!(admit(&mut guests, key(4), away).is_some());
        assert_eq!(admit(&mut guests, key(5), away), None);
        assert_eq!(admit(&mut guests, key(3), away), Some(moving));
    }

    #[test]
    fn one_prefix_holds_at_most_its_share_of_the_slots() {
        let mut guests = Guests::new(GUEST_TENURE_MS);
        let home = prefix(1);
        let first = admit(&mut guests, key(1), home).expect("a slot");
        assert!(admit(&mut guests, key(2), home).is_some());
        assert_eq!(admit(&mut guests, key(3), home), None, "its prefix is full");
        // Other prefixes still get slots, and a key already holding one keeps it.
        assert!(admit(&mut guests, key(3), prefix(2)).is_some());
        assert_eq!(admit(&mut guests, key(1), home), Some(first));
        // A freed slot is the prefix's again.
        assert!(guests.connected(first, &key(1), 7));
        guests.disconnected(first, 7);
        assert!(admit(&mut guests, key(4), home).is_some());
    }

    #[test]
    fn slots_are_bounded_reused_by_their_key_and_freed_by_the_latest_connection() {
        let mut guests = Guests::new(GUEST_TENURE_MS);
        let indices: Vec<u16> = (0..MAX_GUEST_PEERS as u8)
            .map(|i| admit(&mut guests, key(i), prefix(i)).expect("a free slot"))
            .collect();
        assert!(indices.iter().all(|i| is_guest(*i)));
        assert_eq!(
            admit(&mut guests, key(200), prefix(200)),
            None,
            "every slot is taken"
        );
        // A reconnection of a known guest keeps its index.
        assert!(guests.connected(indices[3], &key(3), 1));
        assert_eq!(admit(&mut guests, key(3), prefix(3)), Some(indices[3]));
        // The older connection ends before the newer one registers (found by review: it
        // freed the slot, orphaning the live link, and the next stranger shared its index).
        guests.disconnected(indices[3], 1);
        assert_eq!(
            admit(&mut guests, key(200), prefix(200)),
            None,
            "the slot waits for its new link"
        );
        assert!(guests.connected(indices[3], &key(3), 2));
        guests.disconnected(indices[3], 2);
        assert_eq!(admit(&mut guests, key(200), prefix(200)), Some(indices[3]));
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
    fn a_newcomer_takes_the_slot_held_longest_once_its_tenure_is_up() {
        let tenure = 1_000;
        let mut guests = Guests::new(tenure);
        // Slot i admitted at 10 * i ms; all but slot 0 connected (slot 0 is mid-handshake).
        let indices: Vec<u16> = (0..MAX_GUEST_PEERS as u8)
            .map(|i| {
                let a = guests
                    .admit(key(i), prefix(i), 10 * u64::from(i))
                    .expect("a free slot");
                assert_eq!(a.evicted, None);
                if i > 0 {
                    assert!(guests.connected(a.index, &key(i), u64::from(i)));
                }
                a.index
            })
            .collect();
        // Before any tenure is up, every slot is kept.
        assert_eq!(guests.admit(key(100), prefix(100), tenure + 9), None);
        // Slot 1 is the oldest connected one past its tenure (slot 0 waits for its link).
        let a = guests
            .admit(key(100), prefix(100), tenure + 10)
            .expect("an evicted slot");
        assert_eq!((a.index, a.evicted), (indices[1], Some(key(1))));
        // The evicted link's end does not free the slot its newcomer now holds.
        guests.disconnected(indices[1], 1);
        assert!(guests.connected(indices[1], &key(100), 50));
        // The evicted key comes back: the next oldest past its tenure (slot 2) goes.
        let back = guests
            .admit(key(1), prefix(1), tenure + 20)
            .expect("slot 2 is past its tenure");
        assert_eq!((back.index, back.evicted), (indices[2], Some(key(2))));
        assert!(guests.connected(back.index, &key(1), 51));
        // A reconnection keeps its admission time: redialing never renews a tenure, and a
        // key holding a slot evicts nobody.
        let again = guests
            .admit(key(3), prefix(3), 5 * tenure)
            .expect("its own slot");
        assert_eq!((again.index, again.evicted), (indices[3], None));
        assert!(guests.connected(indices[3], &key(3), 52));
        let next = guests
            .admit(key(101), prefix(101), 5 * tenure)
            .expect("past tenure");
        assert_eq!(next.evicted, Some(key(3)), "slot 3 was admitted at 30 ms");
        // Slots won by eviction still count against their prefix's share.
        assert!(guests.connected(next.index, &key(101), 53));
        assert!(guests.admit(key(102), prefix(101), 6 * tenure).is_some());
        assert_eq!(guests.admit(key(103), prefix(101), 6 * tenure), None);
        assert_eq!(guests.count(), MAX_GUEST_PEERS);
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
