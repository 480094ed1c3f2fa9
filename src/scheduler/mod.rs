//! Cron scheduling: one thread that sleeps until the next fire time in the [`Timetable`],
//! and a few worker threads of its own that run the due jobs it sends them over a channel,
//! so long scheduled runs never take request threads and a burst of requests never delays a
//! fire. A fire whose previous run of the same function is still going is skipped. The
//! time comes from a [`Clock`]: intervals follow its monotonic side, calendar schedules its
//! wall side, and the timing thread wakes at least every second to notice a stepped wall.
//! Never runs a function itself on the timing thread.

pub mod clock;
pub mod cron_expr;
pub mod timetable;

use crate::sync::lock;
pub use clock::{Clock, Now, SystemClock};
pub use cron_expr::CronExpr;
use timetable::Timetable;

use chrono::{DateTime, Utc};
use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
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
    clock: Arc<dyn Clock>,
}

impl Default for Scheduler {
    fn default() -> Self {
        Self::new()
    }
}

impl Scheduler {
    /// A scheduler on the host's clocks.
    pub fn new() -> Scheduler {
        Scheduler::with_clock(Arc::new(SystemClock::default()))
    }

    pub fn with_clock(clock: Arc<dyn Clock>) -> Scheduler {
        let (signals, signal_rx) = unbounded();
        Scheduler {
            clock,
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
        let clock = self.clock.clone();
        let spawned = thread::Builder::new()
            .name("cron-timer".into())
            .spawn(move || {
                let lanes = Lanes {
                    table: &table,
                    running: &running,
                    signals: &signal_rx,
                    jobs: &jobs,
                };
                timer_loop(&lanes, &*clock, &*handler)
            });
        match spawned {
            Ok(handle) => threads.push(handle),
            Err(err) => log::error!("cannot start the cron timer: {err}"),
        }
    }

    /// Schedules or reschedules a function; returns its next fire time.
    pub fn set(&self, name: &str, expr: CronExpr) -> Option<DateTime<Utc>> {
        let next = lock(&self.table).set(name, expr, self.clock.now());
        let _ = self.signals.send(Signal::Changed);
        next
    }

    /// Unschedules a function (an http function, a paused or deleted one).
    pub fn remove(&self, name: &str) {
        lock(&self.table).remove(name);
        let _ = self.signals.send(Signal::Changed);
    }

    pub fn next_run(&self, name: &str) -> Option<DateTime<Utc>> {
        lock(&self.table).next_run(name, self.clock.now())
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

/// What the timing thread shares with the handle and the workers.
struct Lanes<'a> {
    table: &'a Mutex<Timetable>,
    running: &'a Mutex<HashSet<String>>,
    signals: &'a Receiver<Signal>,
    jobs: &'a Sender<CronJob>,
}

fn timer_loop(lanes: &Lanes<'_>, clock: &dyn Clock, handler: &dyn CronHandler) {
    let Lanes {
        table,
        running,
        signals,
        jobs,
    } = *lanes;
    loop {
        let now = clock.now();
        let (due, wake) = {
            let mut table = lock(table);
            let due = table.take_due(now);
            (due, table.wake_in(now))
        };
        if let Some(step) = due.clock_step {
            log::warn!(
                "the wall clock stepped {} by {:.1} s; calendar schedules now count from {}",
                if step < chrono::TimeDelta::zero() {
                    "back"
                } else {
                    "forward"
                },
                step.abs().as_seconds_f64(),
                now.wall
            );
        }
        for (name, fired_at) in due.fires {
            let job = CronJob {
                name,
                fired_at,
                dispatched_at: clock.now().wall,
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
        // Less what handing out the jobs took.
        let spent = clock.now().mono.saturating_sub(now.mono);
        let sleep = wake
            .map_or(MAX_SLEEP, |w| w.saturating_sub(spent))
            .min(MAX_SLEEP);
        match signals.recv_timeout(sleep) {
            Ok(Signal::Changed) | Err(RecvTimeoutError::Timeout) => {}
            Ok(Signal::Stop) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;
    use std::collections::HashMap;
    use std::time::Instant;

    /// The host's monotonic clock and a wall clock the test steps.
    struct SteppedClock {
        origin: Instant,
        shift: Mutex<TimeDelta>,
    }

    impl Clock for SteppedClock {
        fn now(&self) -> Now {
            Now {
                wall: Utc::now() + *lock(&self.shift),
                mono: self.origin.elapsed(),
            }
        }
    }

    #[derive(Default)]
    struct Counter {
        runs: Mutex<HashMap<String, usize>>,
    }

    impl CronHandler for Counter {
        fn run(&self, job: CronJob) {
            *lock(&self.runs).entry(job.name).or_default() += 1;
        }
        fn skipped(&self, _job: CronJob) {}
    }

    impl Counter {
        fn of(&self, name: &str) -> usize {
            lock(&self.runs).get(name).copied().unwrap_or(0)
        }

        /// Waits until `name` ran `count` times, up to `limit`.
        fn reaches(&self, name: &str, count: usize, limit: Duration) -> bool {
            let deadline = Instant::now() + limit;
            while Instant::now() < deadline {
                if self.of(name) >= count {
                    return true;
                }
                thread::sleep(Duration::from_millis(20));
            }
            false
        }
    }

    #[test]
    fn schedules_keep_firing_when_the_wall_clock_steps_back_an_hour() {
        let clock = Arc::new(SteppedClock {
            origin: Instant::now(),
            shift: Mutex::new(TimeDelta::zero()),
        });
        let scheduler = Scheduler::with_clock(clock.clone());
        let counter = Arc::new(Counter::default());
        scheduler.start(2, counter.clone());
        for (name, expr) in [
            ("every", "@every 1s"),
            ("calendar", "CRON_TZ=UTC * * * * * *"),
        ] {
            scheduler.set(name, CronExpr::parse(expr).expect("valid"));
        }
        let limit = Duration::from_secs(5);
        assert!(counter.reaches("every", 1, limit) && counter.reaches("calendar", 1, limit));
        *lock(&clock.shift) = TimeDelta::hours(-1);
        let (every, calendar) = (counter.of("every"), counter.of("calendar"));
        assert!(counter.reaches("every", every + 3, limit), "@every stopped");
        assert!(
            counter.reaches("calendar", calendar + 3, limit),
            "calendar stopped"
        );
        let next = scheduler.next_run("calendar").expect("scheduled");
        let behind = Utc::now() - next;
        assert!(
            behind > TimeDelta::minutes(59) && behind < TimeDelta::minutes(61),
            "next_run follows the stepped clock: {next}"
        );
        scheduler.stop();
    }
}
