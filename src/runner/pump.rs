//! Supervising a child from the calling thread alone: one poll loop feeds its stdin, drains
//! its stdout and stderr, and watches for its end and its deadline. No thread is started
//! per run, which is most of what a run costs besides the process itself. Used where the
//! platform can poll pipes and processes together (Linux: pipes and a pidfd); elsewhere
//! [`super::drain`] uses a thread per pipe.

use super::child::{Captured, Supervision};
use crate::platform::{self, Interest, Process, ProcessTree};
use std::fs::File;
use std::io::{self, Read, Write};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// One pipe being drained.
struct Outlet {
    file: Option<File>,
    captured: Captured,
    keep: usize,
    /// Going past `keep` kills the tree instead of discarding.
    kills: bool,
}

impl Outlet {
    fn new(file: File, keep: usize, kills: bool) -> io::Result<Outlet> {
        platform::set_nonblocking(&file)?;
        Ok(Outlet {
            file: Some(file),
            captured: Captured::default(),
            keep,
            kills,
        })
    }

    /// Reads what is there; returns true when the limit was crossed by a killing outlet.
    fn read_available(&mut self, buf: &mut [u8]) -> bool {
        let Some(file) = &mut self.file else {
            return false;
        };
        let mut crossed = false;
        loop {
            match file.read(buf) {
                Ok(0) => {
                    self.file = None;
                    break;
                }
                Ok(n) => {
                    let room = self.keep.saturating_sub(self.captured.bytes.len());
                    self.captured.bytes.extend_from_slice(&buf[..n.min(room)]);
                    if n > room && !self.captured.overflowed {
                        self.captured.overflowed = true;
                        crossed |= self.kills;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.file = None;
                    break;
                }
            }
        }
        crossed
    }
}

/// Runs the loop until the child has ended and its pipes are drained (or held open past
/// `reader_deadline` after its end by something that escaped it).
#[allow(clippy::too_many_arguments)]
pub fn supervise(
    process: &mut Process,
    tree: &ProcessTree,
    stdin: Option<File>,
    body: &[u8],
    stdout: File,
    stderr: File,
    stdout_keep: usize,
    stdout_kills: bool,
    stderr_keep: usize,
    timeout: Duration,
    reader_deadline: Duration,
) -> io::Result<Supervision> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut input = match stdin {
        Some(file) => {
            platform::set_nonblocking(&file)?;
            Some(file)
        }
        None => None,
    };
    let mut written = 0;
    let mut out = Outlet::new(stdout, stdout_keep, stdout_kills)?;
    let mut err = Outlet::new(stderr, stderr_keep, false)?;
    let mut buf = [0u8; 16 * 1024];
    let mut ended: Option<(Option<ExitStatus>, Instant)> = None;
    let mut overflowed = false;
    loop {
        let drained = out.file.is_none() && err.file.is_none();
        if let Some((_, at)) = ended {
            if drained || Instant::now() >= at + reader_deadline {
                break;
            }
        }
        let until = match ended {
            Some((_, at)) => at + reader_deadline,
            None => deadline,
        };
        let mut pipes: Vec<(&File, Interest)> = Vec::with_capacity(3);
        if let Some(file) = &input {
            pipes.push((file, Interest::Write));
        }
        if let Some(file) = &out.file {
            pipes.push((file, Interest::Read));
        }
        if let Some(file) = &err.file {
            pipes.push((file, Interest::Read));
        }
        let watch = if ended.is_none() {
            Some(&*process)
        } else {
            None
        };
        let ready = platform::wait_ready(
            watch,
            &pipes,
            until.saturating_duration_since(Instant::now()),
        )?;
        drop(pipes);
        if input.is_some() {
            feed(&mut input, body, &mut written);
        }
        if out.read_available(&mut buf) && !overflowed {
            overflowed = true;
            tree.kill_all();
        }
        err.read_available(&mut buf);
        if ended.is_none() {
            if ready.exited {
                // Whatever the function left behind in its group goes with it, while the
                // unreaped leader still holds the group's id.
                tree.kill();
                let status = process.wait()?;
                ended = Some((Some(status), Instant::now()));
            } else if Instant::now() >= deadline {
                // Killed outright, before the leader can exit and orphan what it started.
                tree.kill_all();
                process.wait()?;
                ended = Some((None, Instant::now()));
            }
        }
    }
    let Some((status, at)) = ended else {
        return Err(io::Error::other(
            "the supervision loop ended before the child",
        ));
    };
    Ok(Supervision {
        status,
        overflowed,
        stdout: out.captured,
        stderr: err.captured,
        duration: at.saturating_duration_since(started),
    })
}

/// Writes what the pipe takes now; closes it when all is written or the child stopped
/// reading.
fn feed(input: &mut Option<File>, body: &[u8], written: &mut usize) {
    let Some(file) = input else { return };
    while *written < body.len() {
        match file.write(&body[*written..]) {
            Ok(0) => break,
            Ok(n) => *written += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
            Err(_) => break,
        }
    }
    *input = None;
}
