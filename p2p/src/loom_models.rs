//! loom models of the per-peer bounds shared across connection tasks: [`ByteBudget`]
//! (outbound bytes) over a loom atomic and [`HandshakeSlots`] over a loom mutex, the same
//! code production runs over std's. The inbound budget is a tokio semaphore, which cannot run
//! in a loom model (tokio refuses `cfg(loom)` as a dependency); its permits are counted by
//! `inbound_permits`, tested on its own.

use super::{ByteBudget, Counter, HandshakeSlots, InProgress};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use std::net::IpAddr;

/// Preemptions per execution (as the node's models).
const PREEMPTIONS: usize = 3;

fn model(f: impl Fn() + Sync + Send + 'static) {
    keel_types::sync::loom_model(PREEMPTIONS, f);
}

impl Counter for AtomicUsize {
    fn new(value: usize) -> Self {
        AtomicUsize::new(value)
    }
    fn update(&self, f: impl FnMut(usize) -> Option<usize>) -> Result<usize, usize> {
        self.fetch_update(Ordering::AcqRel, Ordering::Acquire, f)
    }
}

/// The budget in the model: two of the larger messages do not fit together.
const BUDGET: usize = 10;
/// Message sizes sent at once: 6 + 6 > `BUDGET`, 6 + 3 fits, 15 alone exceeds it.
const MESSAGES: [usize; 3] = [6, 6, 3];
const OVERSIZED: usize = 15;

/// Reserve `len`, and while holding it check that what is held at once (a lagging mirror of
/// the budget: added after the reservation, removed before the release) stays within the
/// budget, or is one message alone.
fn send(budget: &ByteBudget<AtomicUsize>, held: &AtomicUsize, len: usize) {
    if budget.try_reserve(len) {
        let now = held.fetch_add(len, Ordering::SeqCst) + len;
        assert!(now <= BUDGET || now == len, "{now} bytes held at once");
        held.fetch_sub(len, Ordering::SeqCst);
        budget.release(len);
    }
}

#[test]
fn outbound_budget_is_never_exceeded_and_returns_to_zero() {
    model(|| {
        let budget = Arc::new(ByteBudget::<AtomicUsize>::with_counter(BUDGET));
        let held = Arc::new(AtomicUsize::new(0));
        let senders: Vec<_> = MESSAGES[1..]
            .iter()
            .map(|&len| {
                let (budget, held) = (budget.clone(), held.clone());
                loom::thread::spawn(move || send(&budget, &held, len))
            })
            .collect();
        send(&budget, &held, MESSAGES[0]);
        for sender in senders {
            sender.join().expect("sender");
        }
        assert_eq!(budget.used(), 0, "every reservation was released");
    });
}

#[test]
fn an_oversized_message_goes_only_alone() {
    model(|| {
        let budget = Arc::new(ByteBudget::<AtomicUsize>::with_counter(BUDGET));
        let held = Arc::new(AtomicUsize::new(0));
        let big = {
            let (budget, held) = (budget.clone(), held.clone());
            loom::thread::spawn(move || send(&budget, &held, OVERSIZED))
        };
        send(&budget, &held, MESSAGES[2]);
        big.join().expect("sender");
        assert_eq!(budget.used(), 0);
    });
}

/// Slots per prefix in the model.
const SLOTS: usize = 1;

fn handshake(slots: &HandshakeSlots<Mutex<InProgress>>, held: &AtomicUsize, address: &str) {
    let address: IpAddr = address.parse().expect("address");
    if let Ok(slot) = slots.try_acquire(address) {
        let now = held.fetch_add(1, Ordering::SeqCst) + 1;
        assert!(now <= SLOTS, "{now} handshakes of one prefix at once");
        held.fetch_sub(1, Ordering::SeqCst);
        drop(slot);
    }
}

#[test]
fn handshake_slots_per_prefix_hold_under_races_and_leave_nothing_behind() {
    model(|| {
        let slots = Arc::new(HandshakeSlots::<Mutex<InProgress>>::with_lock(SLOTS));
        let held = Arc::new(AtomicUsize::new(0));
        // Two addresses of one /24, racing; a third prefix is never refused.
        let racer = {
            let (slots, held) = (slots.clone(), held.clone());
            loom::thread::spawn(move || handshake(&slots, &held, "203.0.113.8"))
        };
        let other = {
            let slots = slots.clone();
            loom::thread::spawn(move || {
                let slot = slots.try_acquire("198.51.100.1".parse().expect("address"));
                assert!(slot.is_ok(), "another prefix refused");
            })
        };
        handshake(&slots, &held, "203.0.113.7");
        racer.join().expect("racer");
        other.join().expect("other");
        assert_eq!(slots.prefixes(), 0, "an entry outlived its handshakes");
    });
}
