//! Warm functions (`"response": "fcgi"`, Unix only): a function version that stays running
//! between requests as a FastCGI responder, fed each request over a kept-alive Unix socket
//! connection. This module owns which process serves which version: it starts one on first
//! use, shares it between concurrent requests, restarts it after a crash or a timeout, and
//! retires it when its version stops being current, its function is deleted, it sits idle
//! past `--warm-idle`, or the server stops. Its lock is never held while a request is served
//! or a process starts; no warm process outlives its function, a timeout, or the server.
//!
//! Files: [`fastcgi`] the wire format and [`answer`] reading an answer, [`process`] one
//! process, [`connections`] its kept-alive connections and one exchange over one,
//! [`reaper`] the thread that starts and stops processes, [`call`] one request.

mod answer;
mod connections;
mod fastcgi;
mod process;
mod reaper;

pub use answer::Answer;
pub use process::{Failure, Key, Spec};

use crate::error::ApiError;
use process::State;
pub use process::WarmProcess;
use reaper::Reaper;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

/// What the reaper needs of the server, as a seam (like the scheduler's `CronHandler`): the
/// warm processes to look after, and which version of a function is current.
pub trait WarmHost: Send + Sync + 'static {
    fn warm(&self) -> &Warm;
    /// The key of `name`'s current version; None when the function is gone.
    fn current_key(&self, name: &str) -> Option<Key>;
}

/// The warm processes of every function.
pub struct Warm {
    /// How long a process may sit without a request.
    idle: Duration,
    /// Per function name: its processes (usually one; more while a new version takes over).
    processes: Mutex<HashMap<String, Vec<Arc<WarmProcess>>>>,
    /// One start at a time, so concurrent first requests start one process, not several.
    starting: Mutex<()>,
    /// Set once the server stops: no process starts after that.
    closed: AtomicBool,
    reaper: Reaper,
}

/// A request's hold on a process: counted in flight until dropped.
pub struct Lease<'a> {
    warm: &'a Warm,
    pub process: Arc<WarmProcess>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if self.process.leave() == 0 && self.process.state() != State::Live {
            self.warm.reaper.wake();
        }
    }
}

impl Warm {
    pub fn new(idle: Duration) -> Warm {
        Warm {
            idle,
            processes: Mutex::new(HashMap::new()),
            starting: Mutex::new(()),
            closed: AtomicBool::new(false),
            reaper: Reaper::new(),
        }
    }

    /// Starts the reaper thread; it reaches the processes and the current versions through
    /// `host`, for as long as the host lives.
    pub fn start(&self, host: Weak<dyn WarmHost>) {
        let tick = (self.idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        self.reaper.start(host, tick);
    }

    /// A function was deleted: its processes take no new request and stop once idle.
    pub fn forget(&self, name: &str) {
        if let Some(list) = self.lock().get(name) {
            for process in list {
                process.retire();
            }
        }
        self.reaper.wake();
    }

    /// Stops every warm process and the reaper (server shutdown).
    pub fn stop(&self) {
        self.reaper.stop();
        // Without a running reaper (never started), stop them here.
        self.stop_all();
        process::wait_for_cleanups();
    }

    /// A live process of `key`, started from `prepare`'s spec when there is none.
    pub fn acquire(
        &self,
        key: &Key,
        prepare: impl FnOnce() -> Result<Spec, ApiError>,
    ) -> Result<Lease<'_>, ApiError> {
        if let Some(process) = self.find_live(key) {
            return Ok(Lease {
                warm: self,
                process,
            });
        }
        let _starting = crate::sync::lock(&self.starting);
        if let Some(process) = self.find_live(key) {
            return Ok(Lease {
                warm: self,
                process,
            });
        }
        if self.closed.load(Ordering::SeqCst) {
            return Err(ApiError::ShuttingDown);
        }
        let spec = prepare()?;
        let id = spec.id.clone();
        let started = self
            .reaper
            .run_on(move || WarmProcess::start(spec))
            .ok_or(ApiError::ShuttingDown)?;
        let process = Arc::new(started.map_err(|err| {
            log::error!("cannot start a warm process of {}: {err}", key.name);
            ApiError::Internal {
                context: format!("cannot start the function's executable: {err}"),
            }
        })?);
        process.enter();
        {
            let mut processes = self.lock();
            if self.closed.load(Ordering::SeqCst) {
                // Dropping the last hold reaps it.
                drop(processes);
                process.leave();
                return Err(ApiError::ShuttingDown);
            }
            processes
                .entry(key.name.clone())
                .or_default()
                .push(process.clone());
        }
        log::info!(
            "warm process {id} of {} version {} started",
            key.name,
            key.version
        );
        // Older versions of the function retire now rather than at the next tick.
        self.reaper.wake();
        Ok(Lease {
            warm: self,
            process,
        })
    }

    /// A live process of `key`, counted in flight. Whether it has ended is asked of the OS
    /// after the lock is let go (it is counted in flight by then, so no sweep stops it
    /// meanwhile): every request passes here, and a system call under the lock made the
    /// requests queue on it. One found ended is marked dead, so the next look skips it.
    fn find_live(&self, key: &Key) -> Option<Arc<WarmProcess>> {
        loop {
            let process = {
                let processes = self.lock();
                let process = processes
                    .get(&key.name)?
                    .iter()
                    .find(|process| process.key == *key && process.state() == State::Live)?
                    .clone();
                process.enter();
                process
            };
            if !process.has_ended() {
                return Some(process);
            }
            process.leave();
            self.reaper.wake();
        }
    }

    /// Stops the process with a run user of its own that has served nothing for the
    /// longest, so that its user can go to a run that needs one (idle warm processes
    /// hold their users for `--warm-idle`, and would otherwise leave one-shot runs none).
    /// Returns whether one was stopped; the user is back in its pool when it returns.
    pub fn give_way(&self) -> bool {
        let chosen = {
            let mut processes = self.lock();
            let mut idlest: Option<(String, usize, Duration)> = None;
            for (name, list) in processes.iter() {
                for (at, process) in list.iter().enumerate() {
                    let idle = process.idle_for();
                    if process.in_flight() == 0
                        && process.has_user()
                        && idlest.as_ref().is_none_or(|(_, _, most)| idle > *most)
                    {
                        idlest = Some((name.clone(), at, idle));
                    }
                }
            }
            // Taken out under the lock, with nothing in flight: no request can find it.
            idlest.and_then(|(name, at, _)| {
                let list = processes.get_mut(&name)?;
                let process = list.remove(at);
                if list.is_empty() {
                    processes.remove(&name);
                }
                Some(process)
            })
        };
        let Some(process) = chosen else {
            return false;
        };
        process.retire();
        process.reap_now();
        log::info!(
            "warm process {} of {} version {} stopped (its run user went to a run that needed one)",
            process.id,
            process.key.name,
            process.key.version
        );
        true
    }

    /// Retires processes whose version is not current any more, and stops (on this, the
    /// reaper's thread) those that ended, and those idle and retired or idle for too long.
    fn sweep(&self, host: &dyn WarmHost) {
        let names: Vec<String> = self.lock().keys().cloned().collect();
        let current: HashMap<String, Option<Key>> = names
            .into_iter()
            .map(|name| {
                let key = host.current_key(&name);
                (name, key)
            })
            .collect();
        let mut stopping = Vec::new();
        {
            let mut processes = self.lock();
            for (name, list) in processes.iter_mut() {
                list.retain(|process| {
                    match current.get(name) {
                        Some(Some(key)) if *key == process.key => {}
                        // Only what was looked up: a process of a name registered since is
                        // left alone.
                        Some(_) => process.retire(),
                        None => {}
                    }
                    let unused = process.in_flight() == 0
                        && (process.state() != State::Live || process.idle_for() >= self.idle);
                    let stop = process.has_ended() || unused;
                    if stop {
                        stopping.push(process.clone());
                    }
                    !stop
                });
            }
            processes.retain(|_, list| !list.is_empty());
        }
        for process in stopping {
            let why = if process.state() == State::Dead {
                "ended"
            } else if process.state() == State::Retiring {
                "retired"
            } else {
                "idle"
            };
            process.reap();
            log::info!(
                "warm process {} of {} version {} stopped ({why})",
                process.id,
                process.key.name,
                process.key.version
            );
        }
    }

    /// Stops every process now (their requests fail) and lets none start again.
    fn stop_all(&self) {
        let all: Vec<Arc<WarmProcess>> = {
            let mut processes = self.lock();
            self.closed.store(true, Ordering::SeqCst);
            processes.drain().flat_map(|(_, list)| list).collect()
        };
        if !all.is_empty() {
            log::info!("stopping {} warm processes", all.len());
        }
        for process in all {
            process.reap();
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<Arc<WarmProcess>>>> {
        crate::sync::lock(&self.processes)
    }
}
