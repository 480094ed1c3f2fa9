//! Unix side of the warm processes' sockets: a listening Unix socket handed to a child as
//! its stdin (the classic FastCGI process model), and the server's connections to it.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::Stdio;

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
