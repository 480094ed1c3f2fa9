//! Supervising a child with a thread per pipe, where pipes cannot be polled together with
//! the process (Windows): a writer thread feeds stdin, reader threads drain stdout and
//! stderr (so a child that fills one pipe never deadlocks us), and the calling thread waits
//! for the end with a time limit.

use super::child::{Captured, Supervision};
use crate::platform::{Process, ProcessTree};
use crossbeam_channel::{bounded, Receiver};
use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Waits for the child and its pipes; see [`super::pump::supervise`] for the contract.
#[allow(clippy::too_many_arguments)]
pub fn supervise(
    process: &mut Process,
    tree: Arc<ProcessTree>,
    stdin: Option<File>,
    body: Vec<u8>,
    stdout: File,
    stderr: File,
    (stdout_keep, stdout_kills): (usize, bool),
    stderr_keep: usize,
    timeout: Duration,
    reader_deadline: Duration,
) -> io::Result<Supervision> {
    let started = Instant::now();
    if let Some(mut stdin) = stdin {
        // A child that never reads its stdin must not block us: write on a thread and
        // ignore a broken pipe.
        thread::spawn(move || {
            let _ = stdin.write_all(&body);
        });
    }
    let overflowed = Arc::new(AtomicBool::new(false));
    let on_overflow = stdout_kills.then(|| (tree.clone(), overflowed.clone()));
    let stdout = drain(stdout, stdout_keep, on_overflow);
    let stderr = drain(stderr, stderr_keep, None);
    let status = match process.wait_timeout(timeout) {
        Ok(Some(status)) => Some(status),
        Ok(None) => {
            // Killed outright, before the leader can exit and orphan what it started.
            tree.kill_all();
            process.wait()?;
            None
        }
        Err(err) => {
            tree.kill_all();
            return Err(err);
        }
    };
    // Whatever the function left behind in its group goes with it.
    tree.kill();
    let duration = started.elapsed();
    let deadline = Instant::now() + reader_deadline;
    Ok(Supervision {
        status,
        overflowed: overflowed.load(Ordering::SeqCst),
        stdout: collect(stdout, deadline),
        stderr: collect(stderr, deadline),
        duration,
    })
}

/// A pipe being drained on its own thread; what it kept is shared so that a reader still
/// blocked on a pipe held open by an escaped descendant does not take the output with it.
struct Drain {
    kept: Arc<Mutex<Captured>>,
    done: Receiver<()>,
}

/// Reads a pipe to its end on a thread, keeping at most `keep` bytes. With `on_overflow`,
/// going past `keep` kills the tree instead of discarding.
fn drain(
    mut pipe: File,
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
            let mut captured = crate::sync::lock(&shared);
            let room = keep.saturating_sub(captured.bytes.len());
            captured.bytes.extend_from_slice(&buf[..n.min(room)]);
            if n > room && !captured.overflowed {
                captured.overflowed = true;
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
fn collect(reader: Drain, deadline: Instant) -> Captured {
    // A pipe still open at the deadline is held by a process that escaped the run: what
    // it kept so far is taken.
    let _ = reader
        .done
        .recv_timeout(deadline.saturating_duration_since(Instant::now()));
    let mut kept = crate::sync::lock(&reader.kept);
    std::mem::take(&mut *kept)
}
