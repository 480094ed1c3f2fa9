//! Unix side of warm (FastCGI) processes: a listening Unix socket handed to a child as its
//! stdin (the classic FastCGI process model), the server's connections to it, and tying the
//! child's life to the server's.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::Command;

/// Whether functions can run as warm FastCGI processes here.
pub const WARM_PROCESSES: bool = true;

/// A connection to a warm process.
pub type LocalStream = UnixStream;

/// A listening socket, to become a warm process's stdin.
pub type LocalListener = OwnedFd;

/// Binds a listening socket at `path`. The server keeps no copy once the child has it:
/// drop the returned listener after [`start_warm`].
pub fn listen_local(path: &Path) -> io::Result<LocalListener> {
    Ok(OwnedFd::from(UnixListener::bind(path)?))
}

/// Connects to the socket a warm process listens on.
pub fn connect_local(path: &Path) -> io::Result<LocalStream> {
    UnixStream::connect(path)
}

/// A started warm process: the process, its tree, and our end of its stderr (its stdout
/// is `/dev/null`: answers go over FastCGI).
pub struct WarmSpawned {
    pub process: super::Process,
    pub tree: super::ProcessTree,
    pub stderr: std::fs::File,
}

/// Starts a warm process like a run (see [`super::start`]) with `listener` as its stdin.
/// It is killed when the spawning thread ends (the parent-death signal is per thread), so
/// start it from a thread that lives as long as the server.
pub fn start_warm(
    command: &Command,
    program: Option<&std::fs::File>,
    sandbox: &super::Sandbox,
    listener: &LocalListener,
) -> io::Result<WarmSpawned> {
    let (stderr, stderr_child) = super::process::pipe()?;
    let (process, tree) = super::unix::start_confined(
        command,
        program,
        None,
        sandbox,
        [listener, super::process::null_output()?, &stderr_child],
    )?;
    Ok(WarmSpawned {
        process,
        tree,
        stderr: std::fs::File::from(stderr),
    })
}
