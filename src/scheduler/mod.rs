//! Cron scheduling: one thread that sleeps until the next fire time in the [`Timetable`],
//! and a few worker threads of its own that run the due jobs it sends them over a channel,
//! so long scheduled runs never take request threads and a burst of requests never delays a
//! fire. A fire whose previous run of the same function is still going is skipped.
//! Never runs a function itself on the timing thread.

pub mod cron_expr;
pub mod timetable;

pub use cron_expr::CronExpr;
use timetable::Timetable;

use chrono::{DateTime, Utc};
use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Longest sleep of the timing thread, so a changed wall clock is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// A due fire, handed to a cron worker.
#[derive(Debug, Clone)]
pub struct CronJob {
    pub name: String,
    /// When the fire was due.
    pub fired_at: DateTime<Utc>,
    /// When the timing thread handed it to the workers.
    pub dispatched_at: DateTime<Utc>,
}

/// What the workers do with a job, and what happens to a skipped fire.
pub trait CronHandler: Send + Sync + 'static {
    fn run(&self, job: CronJob);
    fn skipped(&self, job: CronJob);
}

enum Signal {
    Changed,
    Stop,
}

/// The scheduler's handle: change the timetable, read next fire times, stop and join.
pub struct Scheduler {
    table: Arc<Mutex<Timetable>>,
    running: Arc<Mutex<HashSet<String>>>,
    signals: Sender<Signal>,
    signal_rx: Receiver<Signal>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Default for Scheduler {
    fn default() -> Self {
        Self::new()
    }
}

impl Scheduler {
    pub fn new() -> Scheduler {
        let (signals, signal_rx) = unbounded();
        Scheduler {
            table: Arc::default(),
            running: Arc::default(),
            signals,
            signal_rx,
            threads: Mutex::new(Vec::new()),
        }
    }

    /// Starts the timing thread and `workers` worker threads.
    pub fn start(&self, workers: usize, handler: Arc<dyn CronHandler>) {
        let (jobs, job_rx) = unbounded::<CronJob>();
        let mut threads = lock(&self.threads);
        for i in 0..workers.max(1) {
            let job_rx = job_rx.clone();
            let handler = handler.clone();
            let running = self.running.clone();
            let spawned = thread::Builder::new()
                .name(format!("cron-worker-{i}"))
                .spawn(move || {
                    for job in job_rx.iter() {
                        let name = job.name.clone();
                        let outcome =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                handler.run(job)
                            }));
                        if outcome.is_err() {
                            log::error!("cron run of {name} panicked");
                        }
                        lock(&running).remove(&name);
                    }
                });
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(err) => log::error!("cannot start a cron worker: {err}"),
            }
        }
        let table = self.table.clone();
        let running = self.running.clone();
        let signal_rx = self.signal_rx.clone();
        let spawned = thread::Builder::new()
            .name("cron-timer".into())
            .spawn(move || timer_loop(&table, &running, &signal_rx, &jobs, &*handler));
        match spawned {
            Ok(handle) => threads.push(handle),
            Err(err) => log::error!("cannot start the cron timer: {err}"),
        }
    }

    /// Schedules or reschedules a function; returns its next fire time.
    pub fn set(&self, name: &str, expr: CronExpr) -> Option<DateTime<Utc>> {
        let next = lock(&self.table).set(name, expr, Utc::now());
        let _ = self.signals.send(Signal::Changed);
        next
    }

    /// Unschedules a function (an http function, a paused or deleted one).
    pub fn remove(&self, name: &str) {
        lock(&self.table).remove(name);
        let _ = self.signals.send(Signal::Changed);
    }

    pub fn next_run(&self, name: &str) -> Option<DateTime<Utc>> {
        lock(&self.table).next_run(name)
    }

    /// Stops firing at once; runs in progress go on.
    pub fn stop_firing(&self) {
        let _ = self.signals.send(Signal::Stop);
    }

    /// Stops firing, lets the workers finish the jobs they hold, and joins every thread.
    pub fn stop(&self) {
        self.stop_firing();
        let threads = std::mem::take(&mut *lock(&self.threads));
        for handle in threads {
            let _ = handle.join();
        }
    }
}

fn timer_loop(
    table: &Mutex<Timetable>,
    running: &Mutex<HashSet<String>>,
    signals: &Receiver<Signal>,
    jobs: &Sender<CronJob>,
    handler: &dyn CronHandler,
) {
    loop {
        let now = Utc::now();
        let (due, wake) = {
            let mut table = lock(table);
            let due = table.take_due(now);
            (due, table.next_wake())
        };
        for (name, fired_at) in due {
            let job = CronJob {
                name,
                fired_at,
                dispatched_at: Utc::now(),
            };
            if !lock(running).insert(job.name.clone()) {
                handler.skipped(job);
                continue;
            }
            log::info!("cron fire {} (due {})", job.name, fired_at);
            if jobs.send(job).is_err() {
                return;
            }
        }
        let sleep = wake
            .map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        match signals.recv_timeout(sleep) {
            Ok(Signal::Changed) | Err(RecvTimeoutError::Timeout) => {}
            Ok(Signal::Stop) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
