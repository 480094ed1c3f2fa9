//! The request pool and its bound: `--workers` threads, and at most `--workers +
//! --max-queue` requests (synchronous or async runs) accepted and not yet done. Whoever is
//! refused a place answers 503.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use threadpool::ThreadPool;

pub struct Dispatcher {
    pool: ThreadPool,
    outstanding: Arc<AtomicUsize>,
    capacity: usize,
}

impl Dispatcher {
    pub fn new(workers: usize, max_queue: usize) -> Dispatcher {
        Dispatcher {
            pool: ThreadPool::with_name("http-worker".into(), workers),
            outstanding: Arc::new(AtomicUsize::new(0)),
            capacity: workers + max_queue,
        }
    }

    /// A place in the pool, if one is free.
    pub fn try_take(&self) -> Option<Slot> {
        if self.outstanding.load(Ordering::SeqCst) >= self.capacity {
            return None;
        }
        Some(Slot::take(&self.outstanding))
    }

    /// Runs `job` on the pool; it should hold its [`Slot`] until its work is done.
    pub fn execute(&self, job: impl FnOnce() + Send + 'static) {
        self.pool.execute(job);
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::SeqCst)
    }

    /// Waits until every job has finished.
    pub fn join(&self) {
        self.pool.join();
    }
}

/// One unit of work counted against a bound until it is dropped (also when its thread
/// unwinds).
pub struct Slot(Arc<AtomicUsize>);

impl Slot {
    pub fn take(counter: &Arc<AtomicUsize>) -> Slot {
        counter.fetch_add(1, Ordering::SeqCst);
        Slot(counter.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
