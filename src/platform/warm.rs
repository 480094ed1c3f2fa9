//! Unix side of warm (FastCGI) processes: a listening Unix socket handed to a child as its
//! stdin (the classic FastCGI process model), the server's connections to it, and tying the
//! child's life to the server's.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Whether functions can run as warm FastCGI processes here.
pub const WARM_PROCESSES: bool = true;

/// A connection to a warm process.
pub type LocalStream = UnixStream;

/// Binds a listening socket at `path` and turns it into a child's stdin. The server keeps
/// no copy: once the child is spawned (and the `Stdio` dropped), only the child listens.
pub fn listen_local(path: &Path) -> io::Result<Stdio> {
    let listener = UnixListener::bind(path)?;
    Ok(Stdio::from(OwnedFd::from(listener)))
}

/// Connects to the socket a warm process listens on.
pub fn connect_local(path: &Path) -> io::Result<LocalStream> {
    UnixStream::connect(path)
}

/// Has the child killed when the server ends, even by SIGKILL, whatever user it runs as.
/// The signal comes when the *thread* that spawned the child ends, so spawn from a thread
/// that lives as long as the child may. Call after [`super::isolate`]: this runs after its
/// user change, which would clear the setting.
pub fn die_with_server(command: &mut Command) {
    // SAFETY: prctl(2) is async-signal-safe; nothing is allocated or locked.
    unsafe {
        command.pre_exec(|| {
            #[cfg(target_os = "linux")]
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
