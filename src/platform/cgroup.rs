//! Linux cgroups (v1 `memory` and `pids` controllers, as these hosts mount them) for runs
//! with users of their own: one group per uid, made once and reused by every run of that
//! uid, so a run costs two small writes. Memory is then limited for the whole process tree
//! (not per process, as `RLIMIT_DATA` is), the process count exactly, and what a run left
//! behind is found in the group's `cgroup.procs`. Without writable controllers, nothing here
//! is used and the rlimits alone apply.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::OnceLock;

/// The controller folders this server may use, once found.
fn controllers() -> &'static Vec<PathBuf> {
    static FOUND: OnceLock<Vec<PathBuf>> = OnceLock::new();
    FOUND.get_or_init(|| {
        if !super::is_privileged() {
            return Vec::new();
        }
        ["memory", "pids"]
            .iter()
            .map(|c| PathBuf::from("/sys/fs/cgroup").join(c).join("golambda"))
            .filter(|dir| std::fs::create_dir_all(dir).is_ok())
            .collect()
    })
}

/// True when runs get cgroups (memory and pids both available).
pub fn available() -> bool {
    controllers().len() == 2
}

fn group(controller: &std::path::Path, uid: u32) -> PathBuf {
    controller.join(format!("u{uid}"))
}

/// The open `cgroup.procs` files a child writes itself into, kept until it has started.
pub struct Joining {
    files: Vec<File>,
}

impl Joining {
    pub fn fds(&self) -> Vec<RawFd> {
        self.files.iter().map(|f| f.as_raw_fd()).collect()
    }
}

/// Sets the groups of `uid` for a run with these limits and opens their `cgroup.procs`.
pub fn prepare(uid: u32, memory: Option<u64>, processes: Option<u64>) -> io::Result<Joining> {
    let mut files = Vec::new();
    for controller in controllers() {
        let dir = group(controller, uid);
        std::fs::create_dir_all(&dir)?;
        let (file, value) = match controller.parent().and_then(|p| p.file_name()) {
            Some(name) if name == "memory" => ("memory.limit_in_bytes", memory),
            _ => ("pids.max", processes),
        };
        if let Some(value) = value {
            std::fs::write(dir.join(file), value.to_string())?;
        }
        files.push(
            OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"))?,
        );
    }
    Ok(Joining { files })
}

/// In the child, between fork and exec: joins the groups ("0" means the writing process).
/// Only write(2): async-signal-safe.
pub fn join_in_child(fds: &[RawFd]) -> io::Result<()> {
    for fd in fds {
        // SAFETY: writing one byte from a static buffer to an fd the parent keeps open.
        if unsafe { libc::write(*fd, b"0".as_ptr().cast(), 1) } != 1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The processes in the groups of `uid` (each is in every controller's group, so one
/// controller's list is enough).
pub fn members(uid: u32) -> Vec<libc::pid_t> {
    controllers()
        .first()
        .and_then(|controller| {
            std::fs::read_to_string(group(controller, uid).join("cgroup.procs")).ok()
        })
        .map(|text| {
            text.lines()
                .filter_map(|l| l.trim().parse::<libc::pid_t>().ok())
                .collect()
        })
        .unwrap_or_default()
}
