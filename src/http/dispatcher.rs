//! The request pools and their bounds. Invocations run on the invoke lane: `--workers`
//! threads and at most `--workers + --max-queue` requests (synchronous or async runs)
//! accepted and not yet done. The admin API has a small lane of its own, so a flood of
//! invocations never keeps an operator from registering, listing or reading metrics, and
//! registrations (which may wait for a compilation slot for minutes) have another, so that
//! reads of the admin API never wait behind builds.
//! The bodies that accepted async runs hold until they end are bounded in bytes too
//! (`--queue-bytes`). Whoever is refused a place answers 503.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use threadpool::ThreadPool;

/// Admin requests waiting for an admin thread before 503 (and registrations waiting for a
/// build thread).
const ADMIN_QUEUE: usize = 64;

/// Threads answering the admin API's other requests: none of them waits for long.
const ADMIN_THREADS: usize = 4;

/// A pool with a bound on the work it has accepted.
pub struct Lane {
    pool: ThreadPool,
    outstanding: Arc<AtomicUsize>,
    capacity: usize,
}

impl Lane {
    fn new(name: &str, threads: usize, queue: usize) -> Lane {
        Lane {
            pool: ThreadPool::with_name(name.into(), threads.max(1)),
            outstanding: Arc::new(AtomicUsize::new(0)),
            capacity: threads.max(1) + queue,
        }
    }

    /// A place in the lane, if one is free.
    pub fn try_take(&self) -> Option<Slot> {
        if self.outstanding.load(Ordering::SeqCst) >= self.capacity {
            return None;
        }
        Some(Slot::take(&self.outstanding))
    }

    /// A place counted in the lane whatever its bound, for work done on the spot.
    pub fn take_unbounded(&self) -> Slot {
        Slot::take(&self.outstanding)
    }

    /// Runs `job` on the lane's pool; it should hold its [`Slot`] until its work is done.
    pub fn execute(&self, job: impl FnOnce() + Send + 'static) {
        self.pool.execute(job);
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::SeqCst)
    }
}

pub struct Dispatcher {
    pub invoke: Lane,
    pub admin: Lane,
    /// `PUT /register`.
    pub build: Lane,
    /// Bytes of request bodies held by async runs accepted and not yet ended.
    pub queued_bytes: Budget,
}

/// A bound on bytes held at once.
pub struct Budget {
    held: Arc<AtomicUsize>,
    limit: usize,
}

impl Budget {
    pub fn new(limit: usize) -> Budget {
        Budget {
            held: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }

    /// `bytes` held until the returned guard drops, if they fit.
    pub fn try_take(&self, bytes: usize) -> Option<Held> {
        let taken = self
            .held
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |held| {
                held.checked_add(bytes).filter(|total| *total <= self.limit)
            });
        taken.ok().map(|_| Held {
            held: self.held.clone(),
            bytes,
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// Bytes counted against a [`Budget`] until dropped.
pub struct Held {
    held: Arc<AtomicUsize>,
    bytes: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.held.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

impl Dispatcher {
    /// `build_threads` should exceed the compilations that may run at once, so that a
    /// registration that needs no build never waits behind those that do.
    pub fn new(
        workers: usize,
        max_queue: usize,
        build_threads: usize,
        queue_bytes: usize,
    ) -> Dispatcher {
        Dispatcher {
            invoke: Lane::new("http-worker", workers, max_queue),
            admin: Lane::new("http-admin", ADMIN_THREADS, ADMIN_QUEUE),
            build: Lane::new("http-build", build_threads, ADMIN_QUEUE),
            queued_bytes: Budget::new(queue_bytes),
        }
    }

    pub fn outstanding(&self) -> usize {
        self.invoke.outstanding() + self.admin.outstanding() + self.build.outstanding()
    }

    /// Waits until every job has finished.
    pub fn join(&self) {
        self.invoke.pool.join();
        self.admin.pool.join();
        self.build.pool.join();
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
