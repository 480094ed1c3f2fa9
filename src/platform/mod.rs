//! Everything that differs between operating systems, behind one API: executable suffix,
//! putting a child in its own process group (Unix) or job object (Windows), killing the whole
//! tree, durable renames, the base environment of children, how a child ended, the sockets
//! of warm (FastCGI) processes, and stop requests (signals on Unix, console control events
//! on Windows). No other module has a `#[cfg]`.

#[cfg(target_os = "linux")]
mod cgroup;
#[cfg(target_os = "linux")]
mod huge_alloc;
#[cfg(target_os = "linux")]
mod namespaces;
#[cfg(target_os = "linux")]
mod process;
#[cfg(target_os = "linux")]
mod scratch;
#[cfg(target_os = "linux")]
mod sockets;
#[cfg(target_os = "linux")]
mod spawn;
#[cfg(target_os = "linux")]
pub use process::{set_nonblocking, wait_ready, Process, POLLS_PIPES};
#[cfg(target_os = "linux")]
pub use sockets::{detach, shut_down, shut_down_reading, tcp_connections, TcpConnection};

/// Largest declared request body length that tiny_http can be left to discard unread while
/// its connection is attached: it first allocates a zeroed buffer that large. On Linux that
/// is address space only (see [`huge_alloc`]); past this, the connection must be
/// [`detach`]ed first. Elsewhere it is memory.
#[cfg(target_os = "linux")]
pub const LARGEST_DISCARDABLE_BODY: usize = huge_alloc::ABSURD;
#[cfg(not(target_os = "linux"))]
pub const LARGEST_DISCARDABLE_BODY: usize = 1 << 28;

/// See [`huge_alloc`]: request bodies declaring absurd lengths must not abort the server.
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: huge_alloc::HugeAwareAllocator = huge_alloc::HugeAwareAllocator;
mod tree;
pub use tree::{empty_dir, remove_tree};
#[cfg(unix)]
mod warm;
#[cfg(unix)]
pub use warm::{
    connect_local, listen_local, start_warm, LocalListener, LocalStream, WarmSpawned,
    WARM_PROCESSES,
};
#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod disk_watch;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

/// What `walk_no_follow` finds: a folder, or a regular file opened for reading, with whether
/// its owner may run it, and its owner (0 on Windows, where builds have no user of their
/// own and owners are not compared).
pub enum Found {
    Folder,
    File {
        file: std::fs::File,
        executable: bool,
        owner: u32,
    },
}

/// A started child: the process, the tree it heads (its process group, or its job on
/// Windows), and our ends of its stdio pipes.
pub struct Spawned {
    pub process: Process,
    pub tree: ProcessTree,
    pub stdin: Option<std::fs::File>,
    pub stdout: std::fs::File,
    pub stderr: std::fs::File,
}

/// What [`kill_user`] did: processes killed, and processes still there at the end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Leftovers {
    pub killed: usize,
    pub remaining: usize,
}

/// What a poll waits for on a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    Read,
    Write,
}

/// What [`wait_ready`] saw.
#[derive(Debug, Default)]
pub struct Readiness {
    /// The watched process has ended (it is not reaped yet).
    pub exited: bool,
}

/// Shuts down both ways every connection of the process to `peer` (see [`shut_down`]).
pub fn shut_down_peer(peer: Option<std::net::SocketAddr>) {
    tcp_connections()
        .iter()
        .filter(|c| Some(c.peer) == peer)
        .for_each(|c| {
            shut_down(c);
        });
}

/// Stops reading every connection of the process to `peer`; answers still go out (see
/// [`shut_down_reading`]).
pub fn stop_reading_peer(peer: Option<std::net::SocketAddr>) {
    tcp_connections()
        .iter()
        .filter(|c| Some(c.peer) == peer)
        .for_each(|c| {
            shut_down_reading(c);
        });
}

/// Resource limits of one child process tree; `None` leaves a limit as the server has it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of data memory (heap) per process.
    pub memory: Option<u64>,
    /// Seconds of CPU time per process.
    pub cpu_seconds: Option<u64>,
    /// Open files per process.
    pub open_files: Option<u64>,
    /// Largest file a process may write.
    pub file_size: Option<u64>,
    /// Bytes the run may write in total: its working directory and every scratch folder
    /// (Linux, per-run users only: the run disk of `scratch`; Windows: its working
    /// directory, checked by `disk_watch`).
    pub disk: Option<u64>,
    /// Processes in the tree (Windows), or of the run's own user (Unix, per-run users only).
    pub processes: Option<u64>,
    /// Write no core dumps.
    pub no_core_dumps: bool,
}

/// How one run is confined: its resource limits, the user it runs as (a per-run uid when
/// the server runs as root on Unix), and whether it is cut off every network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sandbox {
    pub limits: Limits,
    pub user: Option<u32>,
    pub no_network: bool,
    /// The user is this run's alone (a per-run uid), so its cgroups are too, and (Linux) it
    /// gets its own `/tmp`, `/var/tmp`, `/dev/shm` and System V IPC.
    pub exclusive_user: bool,
}

#[cfg(not(target_os = "linux"))]
pub use no_sockets::{detach, shut_down, shut_down_reading, tcp_connections, TcpConnection};

/// Where the process's sockets cannot be listed: none are, so no connection is timed out.
#[cfg(not(target_os = "linux"))]
mod no_sockets {
    /// A connection (never made: nothing is listed on this system).
    #[derive(Debug, Clone)]
    pub struct TcpConnection {
        pub peer: std::net::SocketAddr,
        pub idle: std::time::Duration,
        pub acked: u64,
        pub received: u64,
        pub sending: bool,
        pub closed_by_peer: bool,
    }

    impl TcpConnection {
        #[cfg(test)]
        pub fn for_test(peer: std::net::SocketAddr, idle: std::time::Duration) -> TcpConnection {
            TcpConnection {
                peer,
                idle,
                acked: 0,
                received: 0,
                sending: false,
                closed_by_peer: false,
            }
        }
    }

    pub fn tcp_connections() -> Vec<TcpConnection> {
        Vec::new()
    }

    pub fn shut_down(_connection: &TcpConnection) -> bool {
        false
    }

    pub fn shut_down_reading(_connection: &TcpConnection) -> bool {
        false
    }

    pub fn detach(_peer: std::net::SocketAddr) -> bool {
        false
    }
}

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// Writes `bytes` to `path` so that a crash at any instant leaves either the old file or the
/// new one: a temporary file beside it, synced, renamed over the target, then the directory
/// synced.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{file_name}.tmp"));
    {
        let mut file = File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    if let Err(err) = replace_file(&temp, path) {
        let _ = std::fs::remove_file(&temp);
        return Err(err);
    }
    // The new file is in place: the change is made, whatever syncing the folder says.
    if let Err(err) = sync_dir(dir) {
        log::warn!("cannot sync {}: {err}", dir.display());
    }
    Ok(())
}

/// Renames a finished file into place and makes the rename durable.
pub fn rename_durably(from: &Path, to: &Path) -> io::Result<()> {
    replace_file(from, to)?;
    sync_dir(to.parent().unwrap_or_else(|| Path::new(".")))
}

/// Creates a folder (and its parents) and makes its entry durable in its parent.
pub fn create_dir_durably(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    sync_dir(dir.parent().unwrap_or_else(|| Path::new(".")))
}

/// Syncs every file under `dir` (opened for writing: Windows refuses to flush a read-only
/// handle), and with `folders` every folder too.
#[cfg(not(target_os = "linux"))]
fn sync_each(dir: &Path, folders: bool) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_each(&entry.path(), folders)?;
        } else {
            std::fs::OpenOptions::new()
                .write(true)
                .open(entry.path())?
                .sync_all()?;
        }
    }
    if folders {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Makes `to` the same file as `from`: a hard link where the file system allows it, else a
/// synced copy. Whatever `to` was is replaced atomically, and the new entry is durable.
pub fn link_or_copy(from: &Path, to: &Path) -> io::Result<()> {
    let dir = to.parent().unwrap_or_else(|| Path::new("."));
    let file_name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{file_name}.{}.tmp", crate::ids::new_id()));
    let made = std::fs::hard_link(from, &temp).or_else(|link_err| {
        log::debug!("cannot link {} ({link_err}); copying it", from.display());
        std::fs::copy(from, &temp)?;
        // Opened for writing: Windows refuses to flush a read-only handle.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&temp)?
            .sync_all()
    });
    let placed = made.and_then(|()| rename_durably(&temp, to));
    if placed.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    placed
}
