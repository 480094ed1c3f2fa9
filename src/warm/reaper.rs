//! The warm processes' keeper thread: it waits on a channel with a timeout and, on each
//! tick or wake-up, stops what should not run any more (idle past `--warm-idle`, a version
//! that is no longer current, a deleted function, a process that ended or was killed). It
//! also starts every warm process: `PR_SET_PDEATHSIG` fires when the *thread* that forked a
//! child ends, so warm processes are forked by this thread, which lives until the server
//! has stopped them all. Joinable; stopping it stops every warm process.

use super::WarmHost;
use crate::sync::lock;
use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use std::sync::{Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

enum Message {
    /// Runs a job on this thread (a process start).
    Run(Box<dyn FnOnce() + Send>),
    /// Look at the processes now.
    Wake,
    /// Stop every process and end.
    Stop,
}

pub struct Reaper {
    tx: Sender<Message>,
    rx: Mutex<Option<Receiver<Message>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Reaper {
    pub fn new() -> Reaper {
        let (tx, rx) = unbounded();
        Reaper {
            tx,
            rx: Mutex::new(Some(rx)),
            thread: Mutex::new(None),
        }
    }

    /// Starts the thread (once); it looks at the processes every `tick`.
    pub fn start(&self, host: Weak<dyn WarmHost>, tick: Duration) {
        let Some(rx) = lock(&self.rx).take() else {
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("warm-reaper".into())
            .spawn(move || run(&rx, &host, tick));
        match spawned {
            Ok(handle) => *lock(&self.thread) = Some(handle),
            Err(err) => log::error!("cannot start the warm-process reaper: {err}"),
        }
    }

    /// Asks for a look at the processes now.
    pub fn wake(&self) {
        let _ = self.tx.send(Message::Wake);
    }

    /// Runs `job` on the reaper's thread and returns its result; `None` once the reaper has
    /// stopped (or never started).
    pub fn run_on<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        if lock(&self.thread).is_none() {
            return None;
        }
        let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
        let message = Message::Run(Box::new(move || {
            let _ = reply_tx.send(job());
        }));
        self.tx.send(message).ok()?;
        reply_rx.recv().ok()
    }

    /// Stops every warm process and joins the thread.
    pub fn stop(&self) {
        let _ = self.tx.send(Message::Stop);
        let handle = lock(&self.thread).take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                log::error!("the warm-process reaper panicked");
            }
        }
    }
}

fn run(rx: &Receiver<Message>, host: &Weak<dyn WarmHost>, tick: Duration) {
    let mut last_sweep = Instant::now();
    loop {
        let wait = tick.saturating_sub(last_sweep.elapsed());
        let sweep = match rx.recv_timeout(wait) {
            Ok(Message::Run(job)) => {
                job();
                last_sweep.elapsed() >= tick
            }
            Ok(Message::Wake) | Err(RecvTimeoutError::Timeout) => true,
            Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => break,
        };
        if sweep {
            last_sweep = Instant::now();
            if let Some(host) = host.upgrade() {
                host.warm().sweep(&*host);
            }
        }
    }
    // Jobs that raced the stop still run, so nobody waits for them forever; what they
    // start is stopped below with the rest.
    while let Ok(message) = rx.try_recv() {
        if let Message::Run(job) = message {
            job();
        }
    }
    if let Some(host) = host.upgrade() {
        host.warm().stop_all();
    }
}
