//! Linux cgroups (v1 `memory` and `pids` controllers, as these hosts mount them) for runs
//! with users of their own: one group per uid, made once and reused by every run of that
//! uid, so a run costs two small writes. Memory is then limited for the whole process tree
//! (not per process, as `RLIMIT_DATA` is), the process count exactly, and what a run left
//! behind is found in the group's `cgroup.procs`. Without writable controllers, nothing here
//! is used and the rlimits alone apply.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

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

/// The groups of one uid: their `cgroup.procs` files, open for the life of the server, and
/// the limits last written, so that a run whose limits are the same as the last run's of
/// this uid costs no file operation at all.
struct Groups {
    procs: Vec<File>,
    /// The first controller's `cgroup.procs`, open for reading.
    listing: File,
    memory: Option<u64>,
    processes: Option<u64>,
}

/// The groups of every uid used so far.
fn groups() -> &'static Mutex<HashMap<u32, Arc<Mutex<Groups>>>> {
    static GROUPS: OnceLock<Mutex<HashMap<u32, Arc<Mutex<Groups>>>>> = OnceLock::new();
    GROUPS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The `cgroup.procs` files a child writes itself into, kept until it has started.
pub struct Joining {
    groups: Arc<Mutex<Groups>>,
}

impl Joining {
    pub fn fds(&self) -> Vec<RawFd> {
        let groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        groups.procs.iter().map(|f| f.as_raw_fd()).collect()
    }
}

/// Sets the groups of `uid` for a run with these limits (made and opened on the uid's first
/// run; limits written only when they change).
pub fn prepare(uid: u32, memory: Option<u64>, processes: Option<u64>) -> io::Result<Joining> {
    let existing = groups()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&uid)
        .cloned();
    let shared = match existing {
        Some(shared) => shared,
        None => {
            let mut procs = Vec::new();
            for controller in controllers() {
                let dir = group(controller, uid);
                std::fs::create_dir_all(&dir)?;
                procs.push(
                    OpenOptions::new()
                        .write(true)
                        .open(dir.join("cgroup.procs"))?,
                );
            }
            let first = controllers()
                .first()
                .ok_or_else(|| io::Error::other("no cgroup controller"))?;
            let listing = File::open(group(first, uid).join("cgroup.procs"))?;
            let made = Arc::new(Mutex::new(Groups {
                procs,
                listing,
                memory: None,
                processes: None,
            }));
            groups()
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(uid)
                .or_insert(made)
                .clone()
        }
    };
    {
        let mut current = shared.lock().unwrap_or_else(PoisonError::into_inner);
        for controller in controllers() {
            let dir = group(controller, uid);
            let is_memory = controller
                .parent()
                .and_then(|p| p.file_name())
                .is_some_and(|name| name == "memory");
            let (file, wanted, written) = if is_memory {
                ("memory.limit_in_bytes", memory, &mut current.memory)
            } else {
                ("pids.max", processes, &mut current.processes)
            };
            if let Some(value) = wanted.filter(|v| Some(*v) != *written) {
                std::fs::write(dir.join(file), value.to_string())?;
                *written = Some(value);
            }
        }
    }
    Ok(Joining { groups: shared })
}

/// The processes in the groups of `uid` (each is in every controller's group, so one
/// controller's list is enough).
pub fn members(uid: u32) -> Vec<libc::pid_t> {
    let existing = groups()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&uid)
        .cloned();
    let text = match existing {
        // The uid's groups are open already: read the list through a kept descriptor.
        Some(shared) => {
            let groups = shared.lock().unwrap_or_else(PoisonError::into_inner);
            read_from_start(&groups.listing)
        }
        None => controllers().first().and_then(|controller| {
            std::fs::read_to_string(group(controller, uid).join("cgroup.procs")).ok()
        }),
    };
    text.map(|text| {
        text.lines()
            .filter_map(|l| l.trim().parse::<libc::pid_t>().ok())
            .collect()
    })
    .unwrap_or_default()
}

/// The whole of a kernel listing file, read again from its start.
fn read_from_start(file: &File) -> Option<String> {
    use std::os::unix::fs::FileExt;
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = file.read_at(&mut buf, text.len() as u64).ok()?;
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(text).ok()
}
