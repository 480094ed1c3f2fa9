//! A started child on Linux: waiting for it through a pidfd (with a time limit, and
//! together with its pipes in one poll), killing it, and the pipes and `/dev/null`
//! descriptors children are given. See [`super::spawn`] for how it is started.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// A started child process that has not been reaped yet.
#[derive(Debug)]
pub struct Process {
    pid: libc::pid_t,
    pidfd: OwnedFd,
    status: Option<ExitStatus>,
}

impl Process {
    pub(super) fn adopt(pid: libc::pid_t) -> io::Result<Process> {
        // SAFETY: pidfd_open(2) on our own unreaped child: the pid cannot be reused yet.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            let err = io::Error::last_os_error();
            // SAFETY: reaping our own child so that no zombie stays.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            return Err(err);
        }
        Ok(Process {
            pid,
            // SAFETY: a new descriptor that nothing else owns.
            pidfd: unsafe { OwnedFd::from_raw_fd(fd as RawFd) },
            status: None,
        })
    }

    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    /// Waits up to `timeout` for the process to end; `None` if it still runs.
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut poll = libc::pollfd {
                fd: self.pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let millis = left.as_millis().min(i32::MAX as u128) as libc::c_int;
            // SAFETY: poll(2) on one valid pollfd.
            let ready = unsafe { libc::poll(&mut poll, 1, millis) };
            if ready < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            if ready > 0 {
                return self.wait().map(Some);
            }
            if left.is_zero() {
                return Ok(None);
            }
        }
    }

    /// Whether the process has ended, without reaping it or waiting; needs no `&mut`, so
    /// callers can ask without a lock.
    pub fn has_exited(&self) -> bool {
        if self.status.is_some() {
            return true;
        }
        let mut poll = libc::pollfd {
            fd: self.pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll(2) on one valid pollfd, without waiting.
        unsafe { libc::poll(&mut poll, 1, 0) > 0 }
    }

    /// Whether the process has been reaped: its pid, and the id of the group it led, may
    /// then belong to another process, so neither may be signalled any more.
    pub fn is_reaped(&self) -> bool {
        self.status.is_some()
    }

    /// Whether the process has ended (reaping it if so), without waiting.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.wait_timeout(Duration::ZERO)
    }

    /// Waits for the process to end and reaps it.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let mut raw = 0;
        loop {
            // SAFETY: waitpid(2) on our own child.
            let reaped = unsafe { libc::waitpid(self.pid, &mut raw, 0) };
            if reaped == self.pid {
                let status = ExitStatus::from_raw(raw);
                self.status = Some(status);
                return Ok(status);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// Kills the process itself (SIGKILL through its pidfd: never another process).
    pub fn kill(&mut self) {
        if self.status.is_none() {
            // SAFETY: pidfd_send_signal(2) on our own pidfd.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    self.pidfd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                );
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.status.is_none() {
            self.kill();
            let _ = self.wait();
        }
    }
}

/// A pipe: (read end, write end), both close-on-exec.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2(2) fills two new descriptors that we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both are new descriptors nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `/dev/null` for writing, close-on-exec: opened once, for children whose output goes
/// nowhere.
pub fn null_output() -> io::Result<&'static OwnedFd> {
    static NULL: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();
    if let Some(fd) = NULL.get() {
        return Ok(fd);
    }
    let opened: OwnedFd = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")?
        .into();
    Ok(NULL.get_or_init(|| opened))
}

/// `/dev/null` for reading, close-on-exec: opened once, then given to every child that
/// gets no stdin.
pub fn null_input() -> io::Result<&'static OwnedFd> {
    static NULL: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();
    if let Some(fd) = NULL.get() {
        return Ok(fd);
    }
    let opened: OwnedFd = File::open("/dev/null")?.into();
    Ok(NULL.get_or_init(|| opened))
}

/// Pipes and processes can be polled together here: a run is supervised by one loop.
pub const POLLS_PIPES: bool = true;

/// Puts a pipe in non-blocking mode.
pub fn set_nonblocking(file: &File) -> io::Result<()> {
    // SAFETY: fcntl(2) on a descriptor `file` owns.
    unsafe {
        let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Waits until a pipe is ready (or closed) for its interest, or `process` ends, or
/// `timeout` passes; says whether the process ended.
pub fn wait_ready(
    process: Option<&Process>,
    pipes: &[(&File, super::Interest)],
    timeout: Duration,
) -> io::Result<super::Readiness> {
    let mut fds: Vec<libc::pollfd> = pipes
        .iter()
        .map(|(file, interest)| libc::pollfd {
            fd: file.as_raw_fd(),
            events: match interest {
                super::Interest::Read => libc::POLLIN,
                super::Interest::Write => libc::POLLOUT,
            },
            revents: 0,
        })
        .collect();
    if let Some(process) = process {
        fds.push(libc::pollfd {
            fd: process.pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
    }
    // Rounded up, so that a deadline a fraction of a millisecond away is not spun on.
    let millis = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
    // SAFETY: poll(2) on a valid array of pollfds.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
    if ready < 0 {
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    Ok(super::Readiness {
        exited: process.is_some() && fds.last().is_some_and(|fd| fd.revents != 0),
    })
}
