//! Runs one child process to completion: feeds its stdin, drains stdout and stderr
//! concurrently (so a child that fills one pipe never deadlocks us), caps what it keeps, and
//! enforces a time limit by killing the child's whole process tree. Used for function runs
//! and for compilations alike. Never leaves a child running when it returns. The
//! supervision itself is a poll loop on this thread ([`super::pump`]) where the platform
//! allows it, else a thread per pipe ([`super::drain`]).

use crate::platform::{self, Spawned};
use std::io;
use std::process::{Command, ExitStatus};
use std::time::Duration;

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
    /// The open executable to run instead of the command's path (see
    /// [`platform::open_program`]).
    pub program: Option<std::sync::Arc<std::fs::File>>,
    /// A folder kept open in the child: a function's files (see [`platform::open_tree`]).
    pub tree: Option<std::sync::Arc<std::fs::File>>,
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
    pub duration: Duration,
}

/// Spawns and supervises the child; an `Err` means it could not be started at all.
pub fn run(mut spec: ChildSpec) -> io::Result<Finished> {
    let Spawned {
        mut process,
        tree,
        stdin,
        stdout,
        stderr,
    } = platform::start(
        &spec.command,
        spec.program.as_deref(),
        spec.tree.as_deref(),
        &spec.sandbox,
        !spec.stdin.is_empty(),
    )?;
    let body = std::mem::take(&mut spec.stdin);
    let (stdout_keep, stdout_kills) = match spec.stdout_limit {
        Some(limit) => (usize::try_from(limit).unwrap_or(usize::MAX), true),
        None => (spec.keep, false),
    };
    let tree = std::sync::Arc::new(tree);
    let supervised = if platform::POLLS_PIPES {
        super::pump::supervise(
            &mut process,
            &tree,
            stdin,
            &body,
            stdout,
            stderr,
            stdout_keep,
            stdout_kills,
            spec.keep,
            spec.timeout,
            READER_DEADLINE,
        )
    } else {
        super::drain::supervise(
            &mut process,
            tree.clone(),
            stdin,
            body,
            stdout,
            stderr,
            (stdout_keep, stdout_kills),
            spec.keep,
            spec.timeout,
            READER_DEADLINE,
        )
    };
    let supervised = match supervised {
        Ok(supervised) => supervised,
        Err(err) => {
            tree.kill_all();
            process.kill();
            let _ = process.wait();
            return Err(err);
        }
    };
    let ending = match supervised.status {
        None => Ending::TimedOut,
        Some(_) if supervised.overflowed => Ending::OutputTooLarge,
        Some(status) => ending_of(status),
    };
    Ok(Finished {
        ending,
        stdout: supervised.stdout.bytes,
        stderr: supervised.stderr.bytes,
        duration: supervised.duration,
    })
}

/// What the supervision of a child saw.
pub struct Supervision {
    /// None when it was killed at its deadline.
    pub status: Option<ExitStatus>,
    /// Stdout went past a limit that kills.
    pub overflowed: bool,
    pub stdout: Captured,
    pub stderr: Captured,
    pub duration: Duration,
}

/// What was kept of one output stream.
#[derive(Default)]
pub struct Captured {
    pub bytes: Vec<u8>,
    /// More was written than kept.
    pub overflowed: bool,
}

fn ending_of(status: ExitStatus) -> Ending {
    match (status.code(), platform::exit_signal(&status)) {
        (Some(code), _) => Ending::Exited(code),
        (None, Some(signal)) => Ending::Signalled(signal),
        (None, None) => Ending::Exited(-1),
    }
}
