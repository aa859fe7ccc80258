//! Who executes which transaction of a parallel block, and when (`parallel` decides how).
//!
//! One lock guards the slots; every thread asks it what to do next. The committing thread
//! never idles while a speculation it could run is available, and never waits for a
//! speculation that recent commits say will be stale: after [`REDO_STREAK`] speculations in a
//! row fail validation it stops speculation, executes the next [`PROBE_INTERVAL`]
//! transactions itself (serial speed: nothing to validate, nothing recorded), then lets the
//! workers try again; a pause that ends in another failed streak doubles the next one, so a
//! block where everything conflicts runs at nearly serial speed. Workers run at most [`WINDOW_PER_THREAD`] × threads transactions
//! ahead of the last commit, so what they read is recent. Nothing here reaches a result:
//! every choice only picks between two paths that give the same output.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// Speculations in a row whose validation failed before speculation pauses.
pub const REDO_STREAK: u32 = 3;
/// Transactions the committing thread executes itself while speculation pauses.
pub const PROBE_INTERVAL: u32 = 16;
/// How far ahead of the last commit, per thread, a speculation may start.
pub const WINDOW_PER_THREAD: usize = 4;
/// How long the committing thread waits for a running speculation of the transaction it is
/// at before executing it itself. A transaction takes tens of microseconds; a worker the
/// operating system has descheduled (cores shared with other processes) can take
/// milliseconds, and the whole block would wait for it.
pub const TAKE_OVER_AFTER: std::time::Duration = std::time::Duration::from_micros(200);

enum Slot<T> {
    Unclaimed,
    Running,
    Done(T),
    /// Committed, or taken by the committing thread (a running speculation's result is
    /// then dropped).
    Taken,
}

struct State<T> {
    slots: Vec<Slot<T>>,
    /// Every slot below is claimed.
    next: usize,
    /// Transactions committed.
    committed: usize,
    /// Speculations in a row that failed validation.
    streak: u32,
    /// Speculations in a row that were kept.
    kept: u32,
    /// While speculation pauses: transactions left for the committing thread.
    paused_for: u32,
    /// The next pause's length (doubles while speculation keeps failing).
    next_pause: u32,
    /// Threads waiting on `changed`.
    waiting: usize,
    finished: bool,
}

/// What the committing thread does for the transaction it is at.
pub(crate) enum ForCommit<T> {
    /// Validate this speculation.
    Validate(T),
    /// Execute the transaction itself.
    Direct,
    /// Execute the transaction itself, though a speculation of it is running: the last
    /// speculation failed, so this one is likely stale too, and waiting for it costs a
    /// transaction's time (its result is dropped).
    TakeOver,
    /// Speculate transaction `.0` while the one it is at runs elsewhere.
    Speculate(usize),
}

/// How the committed transaction was executed, for the pause rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Committed {
    Kept,
    Redone,
    Direct,
}

pub(crate) struct Scheduler<T> {
    state: Mutex<State<T>>,
    changed: Condvar,
    window: usize,
}

impl<T> Scheduler<T> {
    pub fn new(count: usize, threads: usize) -> Scheduler<T> {
        Scheduler {
            state: Mutex::new(State {
                slots: (0..count).map(|_| Slot::Unclaimed).collect(),
                next: 0,
                committed: 0,
                streak: 0,
                kept: 0,
                paused_for: 0,
                next_pause: PROBE_INTERVAL,
                waiting: 0,
                finished: false,
            }),
            changed: Condvar::new(),
            window: WINDOW_PER_THREAD.saturating_mul(threads).max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next transaction a speculation may start on, claimed.
    fn claim(&self, state: &mut State<T>) -> Option<usize> {
        let open = state.paused_for == 0
            && state.next < state.slots.len()
            && state.next < state.committed + self.window;
        if !open {
            return None;
        }
        let index = state.next;
        state.slots[index] = Slot::Running;
        state.next += 1;
        Some(index)
    }

    /// A worker's next speculation; `None` once the block is over.
    pub fn next_speculation(&self) -> Option<usize> {
        let mut state = self.lock();
        loop {
            if state.finished || state.next >= state.slots.len() {
                return None;
            }
            if let Some(index) = self.claim(&mut state) {
                return Some(index);
            }
            state = self.wait(state);
        }
    }

    fn wait<'a>(&'a self, mut state: MutexGuard<'a, State<T>>) -> MutexGuard<'a, State<T>> {
        state.waiting += 1;
        let mut state = self
            .changed
            .wait(state)
            .unwrap_or_else(PoisonError::into_inner);
        state.waiting -= 1;
        state
    }

    /// Wakes the waiting threads, if any (a wake costs a system call per commit otherwise).
    fn wake(&self, state: &State<T>) {
        if state.waiting > 0 {
            self.changed.notify_all();
        }
    }

    /// A speculation of `index` finished (dropped if the committing thread took it over).
    pub fn speculated(&self, index: usize, result: T) {
        let mut state = self.lock();
        if matches!(state.slots[index], Slot::Running) {
            state.slots[index] = Slot::Done(result);
            self.wake(&state);
        }
    }

    /// What the committing thread does at `index` (every lower transaction committed).
    pub fn for_commit(&self, index: usize) -> ForCommit<T> {
        let mut state = self.lock();
        loop {
            match std::mem::replace(&mut state.slots[index], Slot::Taken) {
                Slot::Done(result) => return ForCommit::Validate(result),
                Slot::Unclaimed => {
                    state.next = state.next.max(index + 1);
                    return ForCommit::Direct;
                }
                Slot::Running if state.paused_for > 0 => return ForCommit::Direct,
                Slot::Running if state.streak > 0 => return ForCommit::TakeOver,
                Slot::Running => state.slots[index] = Slot::Running,
                Slot::Taken => return ForCommit::Direct,
            }
            if let Some(ahead) = self.claim(&mut state) {
                return ForCommit::Speculate(ahead);
            }
            let timed_out;
            (state, timed_out) = self.wait_at_most(state, TAKE_OVER_AFTER);
            if timed_out && matches!(state.slots[index], Slot::Running) {
                state.slots[index] = Slot::Taken;
                return ForCommit::TakeOver;
            }
        }
    }

    /// [`Self::wait`] for at most `limit`; also says whether it timed out.
    fn wait_at_most<'a>(
        &'a self,
        mut state: MutexGuard<'a, State<T>>,
        limit: std::time::Duration,
    ) -> (MutexGuard<'a, State<T>>, bool) {
        state.waiting += 1;
        let (mut state, result) = self
            .changed
            .wait_timeout(state, limit)
            .unwrap_or_else(PoisonError::into_inner);
        state.waiting -= 1;
        (state, result.timed_out())
    }

    /// Transaction `index` is committed, executed as `how`. `publish` makes the commits'
    /// writes visible to speculations; it runs only while speculation is on (during a pause
    /// the writes pile up and the first commit after it publishes them all), before any
    /// worker can claim a transaction that would read them.
    pub fn committed(&self, index: usize, how: Committed, publish: impl FnOnce()) {
        let mut state = self.lock();
        state.committed = index + 1;
        match how {
            Committed::Kept => {
                state.streak = 0;
                state.kept += 1;
                // One speculation that started right after its predecessor's commit can
                // pass in a block that conflicts throughout: only a run of them resets.
                if state.kept >= REDO_STREAK {
                    state.next_pause = PROBE_INTERVAL;
                }
            }
            Committed::Redone => {
                state.kept = 0;
                state.streak += 1;
                if state.streak >= REDO_STREAK {
                    state.streak = 0;
                    state.paused_for = state.next_pause;
                    let longest = u32::try_from(state.slots.len()).unwrap_or(u32::MAX);
                    state.next_pause = state.next_pause.saturating_mul(2).min(longest.max(1));
                }
            }
            Committed::Direct => state.paused_for = state.paused_for.saturating_sub(1),
        }
        // Only a worker waiting for the window or for the pause to end can use this.
        if state.paused_for == 0 {
            publish();
            self.wake(&state);
        }
    }

    /// The block is over (committed, or failed): workers stop.
    pub fn finish(&self) {
        let mut state = self.lock();
        state.finished = true;
        self.wake(&state);
    }
}

/// Finishes the block when dropped — also when the committing thread unwinds from a panic:
/// workers waiting for the window would otherwise wait forever, and the scope that joins
/// them with it.
pub(crate) struct FinishOnDrop<'a, T>(pub &'a Scheduler<T>);

impl<T> Drop for FinishOnDrop<'_, T> {
    fn drop(&mut self) {
        self.0.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Runs `f` on its own thread; fails if it has not returned within a few seconds.
    fn within_seconds(f: impl FnOnce() + Send + 'static) {
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = done.send(());
        });
        finished
            .recv_timeout(Duration::from_secs(10))
            .expect("the block's threads hung");
    }

    /// The committing thread panics while a worker waits for the window to move: the
    /// guard releases the worker, so the panic reaches the caller instead of a hang.
    #[test]
    fn a_panicking_commit_releases_waiting_workers() {
        within_seconds(|| {
            let scheduler = Scheduler::<u32>::new(100, 2);
            std::thread::scope(|scope| {
                let _finish = FinishOnDrop(&scheduler);
                scope.spawn(|| {
                    while let Some(index) = scheduler.next_speculation() {
                        scheduler.speculated(index, 0);
                    }
                });
                // Let the worker fill its window (nothing is committed), then fail.
                std::thread::sleep(Duration::from_millis(50));
                panic!("the commit failed");
            });
        });
    }

    /// Every transaction is handed out once: to a worker or to the committing thread, and
    /// the committing thread sees each speculation that was not taken over.
    #[test]
    fn each_transaction_is_committed_once_in_order() {
        within_seconds(|| {
            let count = 300;
            let scheduler = Scheduler::<usize>::new(count, 3);
            let committed = std::thread::scope(|scope| {
                let _finish = FinishOnDrop(&scheduler);
                for _ in 0..2 {
                    scope.spawn(|| {
                        while let Some(index) = scheduler.next_speculation() {
                            scheduler.speculated(index, index);
                        }
                    });
                }
                let mut order = Vec::new();
                for index in 0..count {
                    let how = loop {
                        match scheduler.for_commit(index) {
                            ForCommit::Validate(seen) => {
                                assert_eq!(seen, index, "a speculation of another slot");
                                // Every third speculation "fails" validation.
                                break if index % 3 == 0 {
                                    Committed::Redone
                                } else {
                                    Committed::Kept
                                };
                            }
                            ForCommit::Direct | ForCommit::TakeOver => break Committed::Direct,
                            ForCommit::Speculate(ahead) => {
                                assert!(ahead > index, "speculating {ahead} at {index}");
                                scheduler.speculated(ahead, ahead);
                            }
                        }
                    };
                    scheduler.committed(index, how, || {});
                    order.push(index);
                }
                order
            });
            assert_eq!(committed, (0..count).collect::<Vec<_>>());
        });
    }
}
