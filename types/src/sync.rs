//! A mutex as the structures shared between tasks need it (the mempool, the node's status,
//! the p2p handshake slots): `std::sync::Mutex` in production, loom's in the models (the
//! `loom` feature, which only the test builds turn on), so the models check this very code
//! without a `--cfg loom` build of every dependency.

use std::ops::DerefMut;
use std::sync::{Mutex, PoisonError};

/// A mutex as the node's shared state uses it (the mempool, the status, handshake slots).
/// Production instantiates the code over `std::sync::Mutex`; the loom models
/// (`loom_models.rs`) instantiate the same code over `loom::sync::Mutex`, so they explore the
/// interleavings of the code that runs, without a `--cfg loom` build of every dependency.
pub trait Lock<T> {
    type Guard<'a>: DerefMut<Target = T>
    where
        Self: 'a;
    fn new(value: T) -> Self;
    /// The guard; `Err` carries it too when an earlier holder panicked (poisoned), and the
    /// caller decides whether the value can still be trusted.
    fn acquire(&self) -> Result<Self::Guard<'_>, Self::Guard<'_>>;
}

impl<T> Lock<T> for Mutex<T> {
    type Guard<'a>
        = std::sync::MutexGuard<'a, T>
    where
        T: 'a;
    fn new(value: T) -> Self {
        Mutex::new(value)
    }
    fn acquire(&self) -> Result<Self::Guard<'_>, Self::Guard<'_>> {
        self.lock().map_err(PoisonError::into_inner)
    }
}

#[cfg(feature = "loom")]
impl<T> Lock<T> for loom::sync::Mutex<T> {
    type Guard<'a>
        = loom::sync::MutexGuard<'a, T>
    where
        T: 'a;
    fn new(value: T) -> Self {
        loom::sync::Mutex::new(value)
    }
    fn acquire(&self) -> Result<Self::Guard<'_>, Self::Guard<'_>> {
        self.lock().map_err(PoisonError::into_inner)
    }
}

/// Runs a loom model of `f` with at most `preemptions` preemptions per execution, and fails
/// if loom explored a single execution (the model's threads never met: it checked nothing).
#[cfg(feature = "loom")]
pub fn loom_model(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let executions = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = executions.clone();
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(preemptions);
    builder.check(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        f();
    });
    let executions = executions.load(Ordering::Relaxed);
    assert!(executions > 1, "loom explored {executions} execution");
    eprintln!("loom explored {executions} executions");
}
