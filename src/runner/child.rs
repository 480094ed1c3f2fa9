//! Runs one child process to completion: feeds its stdin, drains stdout and stderr on their
//! own threads (so a child that fills one pipe never deadlocks us), caps what it keeps, and
//! enforces a time limit by killing the child's whole process tree. Used for function runs
//! and for compilations alike. Never leaves a child running when it returns.

use crate::platform::{self, ProcessTree};
use crossbeam_channel::{bounded, Receiver};
use std::io::{self, Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};
use wait_timeout::ChildExt;

/// How long to wait for the pipe readers once the child is gone: a descendant that left the
/// group may still hold the pipes open, and we do not wait for it.
const READER_DEADLINE: Duration = Duration::from_millis(500);

/// What to run and under which limits.
pub struct ChildSpec {
    pub command: Command,
    pub stdin: Vec<u8>,
    pub timeout: Duration,
    /// Past this many stdout bytes the tree is killed and the run ends as `OutputTooLarge`.
    pub stdout_limit: Option<u64>,
    /// Stdout kept when there is no limit that kills, and stderr kept always; the rest is
    /// read and discarded.
    pub keep: usize,
    pub sandbox: platform::Sandbox,
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// It exited by itself with this code.
    Exited(i32),
    /// A signal it did not ask for ended it.
    Signalled(i32),
    /// It ran past its time limit and was killed.
    TimedOut,
    /// It wrote more than its stdout limit and was killed.
    OutputTooLarge,
}

/// Everything known about a finished child.
#[derive(Debug)]
pub struct Finished {
    pub ending: Ending,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// True when stdout or stderr was longer than what was kept.
    pub truncated: bool,
    pub duration: Duration,
}

/// Spawns and supervises the child; an `Err` means it could not be started at all.
pub fn run(mut spec: ChildSpec) -> io::Result<Finished> {
    spec.command
        .stdin(if spec.stdin.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let confinement = platform::isolate(&mut spec.command, &spec.sandbox)?;
    let started = Instant::now();
    let mut child = spec.command.spawn()?;
    drop(confinement);
    let tree = match ProcessTree::attach(&child, &spec.sandbox) {
        Ok(tree) => Arc::new(tree),
        Err(err) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(err);
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let body = std::mem::take(&mut spec.stdin);
        // A child that never reads its stdin must not block us: write on a thread and
        // ignore a broken pipe.
        thread::spawn(move || {
            let _ = stdin.write_all(&body);
        });
    }
    let overflowed = Arc::new(AtomicBool::new(false));
    let stdout = child.stdout.take().map(|pipe| {
        let limit = spec.stdout_limit;
        let keep = limit.map_or(spec.keep, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let on_overflow = limit.map(|_| (tree.clone(), overflowed.clone()));
        drain(pipe, keep, on_overflow)
    });
    let stderr = child.stderr.take().map(|pipe| drain(pipe, spec.keep, None));

    let waited = match child.wait_timeout(spec.timeout) {
        Ok(Some(status)) => Ok(Some(status)),
        Ok(None) => {
            // Killed outright, before the leader can exit and orphan what it started.
            tree.kill_all();
            child.wait().map(|_| None)
        }
        Err(err) => Err(err),
    };
    let status = match waited {
        Ok(status) => status,
        Err(err) => {
            tree.kill_all();
            let _ = child.kill();
            let _ = child.wait();
            return Err(err);
        }
    };
    // Whatever the function left behind in its group goes with it.
    tree.kill();
    let duration = started.elapsed();
    let deadline = Instant::now() + READER_DEADLINE;
    let stdout = collect(stdout, deadline);
    let stderr = collect(stderr, deadline);
    let ending = match status {
        None => Ending::TimedOut,
        Some(_) if overflowed.load(Ordering::SeqCst) => Ending::OutputTooLarge,
        Some(status) => ending_of(status),
    };
    Ok(Finished {
        ending,
        truncated: stdout.truncated || stderr.truncated,
        stdout: stdout.bytes,
        stderr: stderr.bytes,
        duration,
    })
}

fn ending_of(status: ExitStatus) -> Ending {
    match (status.code(), platform::exit_signal(&status)) {
        (Some(code), _) => Ending::Exited(code),
        (None, Some(signal)) => Ending::Signalled(signal),
        (None, None) => Ending::Exited(-1),
    }
}

/// What a reader thread has kept so far; shared so that a reader still blocked on a pipe
/// held open by an escaped descendant does not take the output with it.
#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    truncated: bool,
}

/// A pipe being drained on its own thread.
struct Drain {
    kept: Arc<Mutex<Captured>>,
    done: Receiver<()>,
}

/// Reads a pipe to its end on a thread, keeping at most `keep` bytes. With `on_overflow`,
/// going past `keep` kills the tree instead of discarding.
fn drain<R: Read + Send + 'static>(
    mut pipe: R,
    keep: usize,
    on_overflow: Option<(Arc<ProcessTree>, Arc<AtomicBool>)>,
) -> Drain {
    let (tx, done) = bounded(1);
    let kept = Arc::new(Mutex::new(Captured::default()));
    let shared = kept.clone();
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let mut captured = shared.lock().unwrap_or_else(|e| e.into_inner());
            let room = keep.saturating_sub(captured.bytes.len());
            captured.bytes.extend_from_slice(&buf[..n.min(room)]);
            if n > room && !captured.truncated {
                captured.truncated = true;
                if let Some((tree, flag)) = &on_overflow {
                    flag.store(true, Ordering::SeqCst);
                    tree.kill_all();
                }
            }
        }
        let _ = tx.send(());
    });
    Drain { kept, done }
}

/// Waits for a reader until `deadline`, then takes what it kept.
fn collect(reader: Option<Drain>, deadline: Instant) -> Captured {
    let Some(reader) = reader else {
        return Captured::default();
    };
    let finished = reader
        .done
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .is_ok();
    let mut kept = reader.kept.lock().unwrap_or_else(|e| e.into_inner());
    let mut captured = std::mem::take(&mut *kept);
    // A pipe still open at the deadline is held by a process that escaped the run.
    captured.truncated |= !finished;
    captured
}
