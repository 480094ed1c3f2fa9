//! One warm process: a function version started as a FastCGI responder in the same sandbox
//! as a one-shot run (its own uid, rlimits, cgroup, network namespace, private working
//! directory, environment built from scratch), listening on a Unix socket it got as stdin.
//! Owns the process, its folders, its uid and its connections; knows how it ended. Once
//! reaped, nothing of it is left.

use super::answer::Answer;
use super::connections::{self, Checkout, Connections};
use crate::platform::{self, ProcessTree, Sandbox, WarmSpawned};
use crate::runner::STDERR_KEEP;
use crate::sync::lock;
use crate::users::OwnedRunUser;
use chrono::{DateTime, Utc};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// How long a request that lost its connection waits for the process to be seen ending.
const EXIT_GRACE: Duration = Duration::from_millis(1000);

/// Which function version a process runs: a deleted and re-registered name starts at
/// version 1 again, so the version's creation time is part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub name: String,
    pub version: u32,
    pub created: DateTime<Utc>,
}

/// What a process is started with.
pub struct Spec {
    pub key: Key,
    pub id: String,
    pub executable: PathBuf,
    /// `executable` as opened when the request resolved its version: run instead of the path.
    pub program: Option<Arc<std::fs::File>>,
    /// The function's variables; `PATH`, `HOME`, `TMPDIR` and `LANG` are added before them.
    pub env: Vec<(String, String)>,
    pub sandbox: Sandbox,
    pub user: Option<OwnedRunUser>,
    pub work_root: PathBuf,
    /// The working directory of the user's every run, when the process has a user (see
    /// `runner::WorkDirs::of_user`); otherwise one is made under `work_root`.
    pub user_dir: Option<PathBuf>,
    /// Connections (requests at once) the process is given.
    pub max_connections: usize,
}

/// Where a process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Takes new requests.
    Live = 0,
    /// Finishes its requests, takes no new ones, and is stopped once idle.
    Retiring = 1,
    /// Killed or ended; waits to be reaped.
    Dead = 2,
}

/// Why a request got no answer.
#[derive(Debug)]
pub enum Failure {
    /// Every connection stayed busy until the deadline.
    Busy,
    TimedOut,
    OutputTooLarge,
    /// The process ended while serving.
    Ended {
        exit_code: Option<i32>,
        signal: Option<i32>,
        stderr: Vec<u8>,
    },
    /// The process lives but broke the protocol or the connection.
    Broken(String),
}

/// Clean-ups of stopped processes still going (see [`WarmProcess::reap`]).
fn cleanups() -> &'static Mutex<Vec<std::thread::JoinHandle<()>>> {
    static CLEANUPS: std::sync::OnceLock<Mutex<Vec<std::thread::JoinHandle<()>>>> =
        std::sync::OnceLock::new();
    CLEANUPS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Waits for every clean-up still going: when the server stops, nothing a warm process left
/// may outlive it.
pub fn wait_for_cleanups() {
    let running = std::mem::take(&mut *lock(cleanups()));
    for handle in running {
        let _ = handle.join();
    }
}

pub struct WarmProcess {
    pub key: Key,
    pub id: String,
    /// The folders made for the process, removed with it.
    folders: Vec<PathBuf>,
    /// Read-locked to ask whether it ended (every request asks, and none waits on another
    /// for that), write-locked to reap it.
    child: RwLock<platform::Process>,
    tree: ProcessTree,
    uid: Option<u32>,
    user: Mutex<Option<OwnedRunUser>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    connections: Connections,
    in_flight: AtomicUsize,
    state: AtomicU8,
    reaped: AtomicBool,
    started: Instant,
    /// Nanoseconds after `started` when a request last ended.
    last_used: AtomicU64,
}

impl WarmProcess {
    /// Creates the folders and the socket and starts the executable; an `Err` leaves
    /// nothing behind.
    pub fn start(spec: Spec) -> io::Result<WarmProcess> {
        let socket_dir = spec.work_root.join(format!("golambda-fcgi-{}", spec.id));
        let (work_dir, folders) = match &spec.user_dir {
            Some(dir) => (dir.clone(), vec![socket_dir.clone()]),
            None => {
                let dir = spec.work_root.join(format!("golambda-warm-{}", spec.id));
                (dir.clone(), vec![dir, socket_dir.clone()])
            }
        };
        let cleanup = |err: io::Error| {
            for dir in &folders {
                let _ = platform::remove_tree(dir);
            }
            err
        };
        let make_work_dir = spec.user_dir.is_none();
        Self::spawn(spec, &work_dir, make_work_dir, &socket_dir, &folders).map_err(cleanup)
    }

    fn spawn(
        spec: Spec,
        work_dir: &Path,
        make_work_dir: bool,
        socket_dir: &Path,
        folders: &[PathBuf],
    ) -> io::Result<WarmProcess> {
        let uid = spec.user.as_ref().map(|u| u.uid);
        if make_work_dir {
            std::fs::create_dir(work_dir)?;
            platform::make_private(work_dir)?;
        }
        // The socket's folder stays the server's: the process only needs the listening
        // socket it inherits, never the path.
        std::fs::create_dir(socket_dir)?;
        platform::make_private(socket_dir)?;
        let socket = socket_dir.join("fcgi.sock");
        let listener = platform::listen_local(&socket)?;
        let command = crate::runner::function_command(&spec.executable, &[], work_dir, spec.env);
        let WarmSpawned {
            process: child,
            tree,
            stderr: pipe,
        } = platform::start_warm(&command, spec.program.as_deref(), &spec.sandbox, &listener)?;
        // The listening socket now lives in the child only.
        drop(listener);
        let stderr = Arc::new(Mutex::new(Vec::new()));
        keep_tail(pipe, stderr.clone());
        Ok(WarmProcess {
            key: spec.key,
            id: spec.id,
            connections: Connections::new(socket, spec.max_connections),
            folders: folders.to_vec(),
            child: RwLock::new(child),
            tree,
            uid,
            user: Mutex::new(spec.user),
            stderr,
            in_flight: AtomicUsize::new(0),
            state: AtomicU8::new(State::Live as u8),
            reaped: AtomicBool::new(false),
            started: Instant::now(),
            last_used: AtomicU64::new(0),
        })
    }

    pub fn state(&self) -> State {
        match self.state.load(Ordering::SeqCst) {
            0 => State::Live,
            1 => State::Retiring,
            _ => State::Dead,
        }
    }

    /// Takes no new requests from now on (a dead process stays dead).
    pub fn retire(&self) {
        let _ = self.state.compare_exchange(
            State::Live as u8,
            State::Retiring as u8,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }

    /// Whether the process has ended by itself (it is then marked dead).
    pub fn has_ended(&self) -> bool {
        if self.state() == State::Dead {
            return true;
        }
        if !self.read_child().has_exited() {
            return false;
        }
        let ended = !matches!(self.reap_leader(), Ok(None));
        if ended {
            self.state.store(State::Dead as u8, Ordering::SeqCst);
        }
        ended
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Whether the process holds a run user of its own.
    pub fn has_user(&self) -> bool {
        self.uid.is_some()
    }

    /// Counts a request in; the caller must call [`WarmProcess::leave`] once.
    pub fn enter(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    /// Counts a request out; returns how many are left.
    pub fn leave(&self) -> usize {
        let nanos = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_used.store(nanos, Ordering::SeqCst);
        self.in_flight
            .fetch_sub(1, Ordering::SeqCst)
            .saturating_sub(1)
    }

    /// How long since a request last ended (or since the start).
    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_nanos(self.last_used.load(Ordering::SeqCst));
        self.started.elapsed().saturating_sub(last)
    }

    /// Kills the whole tree at once; [`WarmProcess::reap`] finishes the job.
    pub fn kill(&self) {
        self.state.store(State::Dead as u8, Ordering::SeqCst);
        let child = self.write_child();
        // Once the leader is reaped, its group id may be a stranger's.
        if !child.is_reaped() {
            self.tree.kill_all();
        }
    }

    /// Reaps the leader if it has ended, first killing what is left of its group while the
    /// unreaped leader still holds the group's id.
    fn reap_leader(&self) -> io::Result<Option<std::process::ExitStatus>> {
        let mut child = self.write_child();
        if child.has_exited() && !child.is_reaped() {
            self.tree.kill_all();
        }
        child.try_wait()
    }

    /// Kills what is left of the process and its uid, waits for it, removes its folders
    /// and gives its uid back. Idempotent; also runs on drop.
    pub fn reap(&self) {
        self.reap_then(false);
    }

    /// Like [`WarmProcess::reap`], cleaning up on this thread: the user is back in its pool
    /// when this returns.
    pub fn reap_now(&self) {
        self.reap_then(true);
    }

    fn reap_then(&self, clean_here: bool) {
        if self.reaped.swap(true, Ordering::SeqCst) {
            return;
        }
        self.kill();
        {
            // The leader too, by its pidfd: it may have left its group (setpgid into a
            // group of its own child), and a wait for it would never end.
            let mut child = self.write_child();
            child.kill();
            let _ = child.wait();
        }
        self.connections.close();
        // What the process left (its user's processes and run disk, its folders) may take
        // long to clean: on a thread of its own, so that no other function's start (which
        // runs on the reaper's thread) waits for it. The user goes back to its pool only
        // once it is clean.
        let uid = self.uid;
        let user = lock(&self.user).take();
        let folders = self.folders.clone();
        let id = self.id.clone();
        let clean = move || {
            let started = std::time::Instant::now();
            if let Some(uid) = uid {
                platform::kill_user(uid);
            }
            drop(user);
            for dir in &folders {
                if let Err(err) = platform::remove_tree(dir) {
                    log::warn!("could not remove {}: {err}", dir.display());
                }
            }
            log::info!(
                "cleaned up after warm process {id} in {:.1}ms",
                started.elapsed().as_secs_f64() * 1000.0
            );
        };
        if clean_here {
            return clean();
        }
        let job = Arc::new(Mutex::new(Some(clean)));
        let on_thread = job.clone();
        let spawned = std::thread::Builder::new()
            .name("warm-cleanup".into())
            .spawn(move || {
                if let Some(clean) = lock(&on_thread).take() {
                    clean();
                }
            });
        match spawned {
            Ok(handle) => {
                let mut running = lock(cleanups());
                running.retain(|h| !h.is_finished());
                running.push(handle);
            }
            Err(err) => {
                log::warn!(
                    "cannot start a thread to clean up after a warm process ({err}); cleaning here"
                );
                if let Some(clean) = lock(&job).take() {
                    clean();
                }
            }
        }
    }

    /// Sends one request and reads its answer, all before `deadline`.
    pub fn serve(
        &self,
        params: &[(String, String)],
        body: &[u8],
        deadline: Instant,
        max_output: u64,
    ) -> Result<Answer, Failure> {
        let mut connection = match self.connections.checkout(deadline) {
            Ok(connection) => connection,
            Err(Checkout::Busy) => return Err(Failure::Busy),
            Err(Checkout::Refused(err)) => {
                let reason = format!("cannot connect to the process: {err}");
                return Err(self.ended_or(Failure::Broken(reason)));
            }
        };
        let result = connections::exchange(&mut connection, params, body, deadline, max_output);
        match &result {
            Ok(answer) if answer.protocol_status == 0 => self.connections.checkin(connection),
            _ => self.connections.discard(),
        }
        if let Ok(answer) = &result {
            if answer.strays > 0 {
                // What they said is another caller's: only its size is logged.
                log::warn!(
                    "warm process {} wrote {} bytes for requests that had already ended; \
                     they were dropped",
                    self.id,
                    answer.strays
                );
            }
        }
        match result {
            Err(Failure::Broken(reason)) => Err(self.ended_or(Failure::Broken(reason))),
            other => other,
        }
    }

    /// After a lost connection: how the process ended, if it did within a short grace;
    /// otherwise `failure`.
    fn ended_or(&self, failure: Failure) -> Failure {
        let deadline = Instant::now() + EXIT_GRACE;
        loop {
            if let Ok(Some(status)) = self.reap_leader() {
                self.state.store(State::Dead as u8, Ordering::SeqCst);
                return Failure::Ended {
                    exit_code: status.code(),
                    signal: platform::exit_signal(&status),
                    stderr: lock(&self.stderr).clone(),
                };
            }
            if Instant::now() >= deadline {
                return failure;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for WarmProcess {
    fn drop(&mut self) {
        self.reap();
    }
}

/// Drains the process's stderr on a thread, keeping the last `STDERR_KEEP` bytes.
fn keep_tail(mut pipe: impl Read + Send + 'static, tail: Arc<Mutex<Vec<u8>>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8 * 1024];
        loop {
            let n = match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let mut kept = lock(&tail);
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > 2 * STDERR_KEEP {
                let cut = kept.len() - STDERR_KEEP;
                kept.drain(..cut);
            }
        }
    });
}

impl WarmProcess {
    fn read_child(&self) -> RwLockReadGuard<'_, platform::Process> {
        self.child.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_child(&self) -> RwLockWriteGuard<'_, platform::Process> {
        self.child.write().unwrap_or_else(|e| e.into_inner())
    }
}
