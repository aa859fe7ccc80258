//! loom models of the driver status that `/health` reads while the driver updates it
//! ([`StatusCell`], generic over [`Lock`], here over `loom::sync::Mutex`).

use super::{Status, StatusCell};
use loom::sync::Arc;

/// Preemptions per execution: every order of the two threads' lock sections.
const PREEMPTIONS: usize = 3;

fn model(f: impl Fn() + Sync + Send + 'static) {
    keel_types::sync::loom_model(PREEMPTIONS, f);
}

const DISK_FULL: &str = "vote log: disk full";

/// The driver updates its status, halts with a reason, and its thread ends (the guard's
/// drop, here on a panic); `/health` reads meanwhile. Once it sees the node halted it never
/// sees it healthy again, and the first reason is the one reported.
#[test]
fn health_sees_the_halt_and_its_first_reason() {
    model(|| {
        let status = Arc::new(StatusCell::<loom::sync::Mutex<Status>>::new());
        let driver = {
            let status = status.clone();
            loom::thread::spawn(move || {
                status.update(|s| s.view = 1);
                status.update(|s| s.halted = Some(DISK_FULL.into()));
                status.mark_stopped(true);
            })
        };
        let first = status.get();
        let second = status.get();
        if first.halted.is_some() {
            assert_eq!(first.halted, second.halted, "halted, then not");
        }
        for read in [&first, &second] {
            if let Some(reason) = &read.halted {
                assert_eq!(reason, DISK_FULL, "the guard replaced the first reason");
            }
        }
        driver.join().expect("driver");
        assert_eq!(status.get().halted.as_deref(), Some(DISK_FULL));
    });
}

/// A driver thread that dies without halting first (a panic) is reported as such, whoever
/// reads first.
#[test]
fn a_stopped_driver_is_seen_halted_by_every_later_read() {
    model(|| {
        let status = Arc::new(StatusCell::<loom::sync::Mutex<Status>>::new());
        let driver = {
            let status = status.clone();
            loom::thread::spawn(move || status.mark_stopped(true))
        };
        let early = status.get();
        driver.join().expect("driver");
        let late = status.get();
        assert!(early.halted.is_none() || early.halted == late.halted);
        assert_eq!(late.halted.as_deref(), Some("the driver thread panicked"));
    });
}
