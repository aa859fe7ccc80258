//! A mutex as the bounded structures shared between tasks need it: `std::sync::Mutex` in
//! production, loom's in the models, so the models check this very code without a
//! `--cfg loom` build.

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
