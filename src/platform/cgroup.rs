//! Linux cgroups (the v1 `memory` controller, as these hosts mount it) for runs with users
//! of their own: one group per uid, made once and reused by every run of that uid, so a run
//! costs one small write. Memory is then limited for the whole process tree (not per
//! process, as `RLIMIT_DATA` is), and what a run left behind is found in the group's
//! `cgroup.procs`. The process count needs no group: the uid is the run's alone, so its
//! `RLIMIT_NPROC` counts the run's processes and threads. (A `pids` group was joined too; each
//! join waits on the kernel's global cgroup lock, and dropping it gave 5% more runs a
//! second.) Without a writable controller, nothing here is used and the rlimits alone apply.
//!
//! Joining a group takes the kernel's cgroup threadgroup lock for writing, and the first
//! writer after a quiet spell waits out an RCU grace period (measured here: 15 ms or more,
//! where a join right after another costs microseconds). So for a while after each run a
//! thread of ours (the [`keeper`]) moves itself between two groups of its own every 10 ms,
//! which keeps joins cheap for the next runs: a Node hello world served 60 ms apart took
//! 16 ms longer without it.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// How long after a run starts the keeper keeps joins cheap.
const KEEP_WARM_FOR: Duration = Duration::from_secs(3);
/// How often the keeper moves itself while it does. Measured here with Node runs 80 ms
/// apart: moves every 3 or 10 ms kept their joins cheap, every 50 ms did not always.
const KEEP_EVERY: Duration = Duration::from_millis(10);

/// The controller folders this server may use, once found.
fn controllers() -> &'static Vec<PathBuf> {
    static FOUND: OnceLock<Vec<PathBuf>> = OnceLock::new();
    FOUND.get_or_init(|| {
        if !super::is_privileged() {
            return Vec::new();
        }
        // A version 1 hierarchy only: its root has a `tasks` file and
        // `memory.limit_in_bytes`; on a version 2 host this folder is not a controller, and
        // making it would make a plain group that takes no such limit.
        [PathBuf::from("/sys/fs/cgroup/memory")]
            .into_iter()
            .filter(|root| {
                root.join("tasks").is_file() && root.join("memory.limit_in_bytes").is_file()
            })
            .map(|root| root.join("golambda"))
            .filter(|dir| dir.is_dir() || std::fs::create_dir(dir).is_ok())
            .collect()
    })
}

/// True when runs get cgroups.
pub fn available() -> bool {
    !controllers().is_empty()
}

fn group(controller: &std::path::Path, uid: u32) -> PathBuf {
    controller.join(format!("u{uid}"))
}

/// The group of one uid: its `cgroup.procs` file, open for the life of the server, and the
/// memory limit last written, so that a run whose limit is the same as the last run's of
/// this uid costs no file operation at all.
struct Groups {
    procs: Vec<File>,
    /// The folder of the first group, for [`members`] to open its list relative to.
    dir: Option<File>,
    memory: Option<u64>,
}

/// The groups of every uid used so far.
fn groups() -> &'static Mutex<HashMap<u32, Arc<Mutex<Groups>>>> {
    static GROUPS: OnceLock<Mutex<HashMap<u32, Arc<Mutex<Groups>>>>> = OnceLock::new();
    GROUPS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The `cgroup.procs` files a child writes itself into, kept until it has started.
pub struct Joining {
    uid: u32,
    groups: Arc<Mutex<Groups>>,
}

impl Joining {
    /// Drops the uid's groups from the cache (their files went stale): the next
    /// [`prepare`] makes and opens them again.
    pub fn forget(&self) {
        groups()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.uid);
    }

    pub fn fds(&self) -> Vec<RawFd> {
        let groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        groups.procs.iter().map(|f| f.as_raw_fd()).collect()
    }
}

/// Sets the group of `uid` for a run with this memory limit (made and opened on the uid's
/// first run; the limit written only when it changes).
pub fn prepare(uid: u32, memory: Option<u64>) -> io::Result<Joining> {
    let existing = groups()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&uid)
        .cloned();
    let shared = match existing {
        Some(shared) => shared,
        None => {
            let mut procs = Vec::new();
            let mut first_dir = None;
            for controller in controllers() {
                let dir = group(controller, uid);
                std::fs::create_dir_all(&dir)?;
                procs.push(
                    OpenOptions::new()
                        .write(true)
                        .open(dir.join("cgroup.procs"))?,
                );
                if first_dir.is_none() {
                    first_dir = File::open(&dir).ok();
                }
            }
            let made = Arc::new(Mutex::new(Groups {
                procs,
                dir: first_dir,
                memory: None,
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
        if let Some(value) = memory.filter(|v| Some(*v) != current.memory) {
            for controller in controllers() {
                let limit = group(controller, uid).join("memory.limit_in_bytes");
                std::fs::write(limit, value.to_string())?;
            }
            current.memory = Some(value);
        }
    }
    keeper().run_started();
    Ok(Joining {
        uid,
        groups: shared,
    })
}

/// The thread that keeps joins cheap (see the module's doc), started on the first run.
struct Keeper {
    /// When the last run started.
    last: Mutex<Option<Instant>>,
    woken: Condvar,
}

impl Keeper {
    fn run_started(&self) {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let asleep = last.is_none_or(|at| at.elapsed() >= KEEP_WARM_FOR);
        *last = Some(Instant::now());
        if asleep {
            self.woken.notify_one();
        }
    }

    /// Moves this thread between two groups of its own while runs are recent; sleeps
    /// otherwise. Ends at the first failure (joins are then only slower).
    fn keep(&self) {
        let Some(controller) = controllers().first() else {
            return;
        };
        let open = |name: &str| -> io::Result<File> {
            let dir = controller.join(name);
            // Another server may make it at the same moment.
            match std::fs::create_dir(&dir) {
                Err(err) if err.kind() != io::ErrorKind::AlreadyExists => return Err(err),
                _ => {}
            }
            // `tasks` moves one thread.
            OpenOptions::new().write(true).open(dir.join("tasks"))
        };
        let (mut a, mut b) = match (open("keeper-a"), open("keeper-b")) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(err), _) | (_, Err(err)) => {
                log::debug!("cgroup joins are not kept cheap: {err}");
                return;
            }
        };
        // By its id, not `0`: the kernel takes the lock whose grace period is the cost only
        // for a thread named by id.
        // SAFETY: gettid(2) has no arguments and cannot fail.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) }.to_string();
        loop {
            {
                let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
                while last.is_none_or(|at| at.elapsed() >= KEEP_WARM_FOR) {
                    last = self
                        .woken
                        .wait(last)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
            use std::io::Write;
            if let Err(err) = a.write_all(tid.as_bytes()) {
                log::debug!("cgroup joins are no longer kept cheap: {err}");
                return;
            }
            std::mem::swap(&mut a, &mut b);
            std::thread::sleep(KEEP_EVERY);
        }
    }
}

fn keeper() -> &'static Keeper {
    static KEEPER: OnceLock<&'static Keeper> = OnceLock::new();
    KEEPER.get_or_init(|| {
        let keeper: &'static Keeper = Box::leak(Box::new(Keeper {
            last: Mutex::new(None),
            woken: Condvar::new(),
        }));
        let started = std::thread::Builder::new()
            .name("cgroup-keeper".into())
            .spawn(move || keeper.keep());
        if let Err(err) = started {
            log::debug!("cannot start the cgroup keeper: {err}");
        }
        keeper
    })
}

/// Removes the groups of every uid used (when the server stops): they are made again on
/// the next run of each uid. A group with a process left in it stays. Left behind, groups
/// of every uid ever used would pile up across restarts with other `--run-uids`, and the
/// kernel's memory accounting slows down with their number.
pub fn remove_groups() {
    let used: Vec<u32> = groups()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .drain()
        .map(|(uid, _)| uid)
        .collect();
    for uid in used {
        for controller in controllers() {
            let dir = group(controller, uid);
            if let Err(err) = std::fs::remove_dir(&dir) {
                log::debug!("cannot remove {}: {err}", dir.display());
            }
        }
    }
}

/// The processes in the group of `uid`.
pub fn members(uid: u32) -> Vec<libc::pid_t> {
    // Opened afresh each time: on version 1, reads through one open file keep returning the
    // list made at its first read. Relative to the group's folder when it is open (no path
    // walk; this runs after every run), else by its path.
    let cached = groups()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&uid)
        .cloned();
    if let Some(groups) = cached {
        let groups = groups.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(list) = groups.dir.as_ref().and_then(read_procs_in) {
            return list;
        }
    }
    controllers()
        .first()
        .and_then(|controller| {
            std::fs::read_to_string(group(controller, uid).join("cgroup.procs")).ok()
        })
        .map(|text| parse_pids(text.as_bytes()))
        .unwrap_or_default()
}

/// Reads `cgroup.procs` in the group folder `dir` (an emptied group reads as nothing, which
/// `read_to_end` finds without allocating).
fn read_procs_in(dir: &File) -> Option<Vec<libc::pid_t>> {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    // SAFETY: openat(2) on a folder descriptor we own, with a NUL-terminated name; the
    // descriptor returned is new and ours alone.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c"cgroup.procs".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let mut file = unsafe { File::from_raw_fd(fd) };
    let mut text = Vec::new();
    file.read_to_end(&mut text).ok()?;
    Some(parse_pids(&text))
}

/// The pids of a `cgroup.procs` text, one per line.
fn parse_pids(text: &[u8]) -> Vec<libc::pid_t> {
    text.split(|b| *b == b'\n')
        .filter_map(|line| std::str::from_utf8(line).ok()?.trim().parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_pids;

    #[test]
    fn a_procs_list_parses_to_its_pids() {
        assert_eq!(parse_pids(b""), Vec::<libc::pid_t>::new());
        assert_eq!(parse_pids(b"12\n345\n"), vec![12, 345]);
        assert_eq!(parse_pids(b"7\n\nnot a pid\n8"), vec![7, 8]);
    }
}
