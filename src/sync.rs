//! Locking that survives a panic: a mutex poisoned by a thread that panicked holding it is
//! taken as it is, so one panicking handler never takes the rest of the server down. Every
//! module locks through [`lock`]; this module holds no state.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, poisoned or not.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
