//! Unix side of the platform API: process groups, signals, directory fsync.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus};

use super::Limits;

/// Suffix of executables the Go toolchain writes.
pub const EXE_SUFFIX: &str = "";

/// `PATH` given to functions.
pub fn function_path() -> String {
    "/usr/local/bin:/usr/bin:/bin".into()
}

/// The variables that name a child's temporary directory.
pub const TEMP_VARS: &[&str] = &["TMPDIR"];

/// Variables the OS itself needs in a child's environment (none on Unix).
pub fn system_env() -> Vec<(String, String)> {
    Vec::new()
}

/// Variables the Go toolchain needs besides `PATH` and its own `GO*` settings (none).
pub fn compile_env() -> Vec<(String, String)> {
    Vec::new()
}

/// Renames `from` over `to`, replacing it atomically.
pub fn replace_file(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to)
}

/// Calls `callback` on SIGINT, SIGTERM or SIGHUP.
pub fn on_stop_request(callback: impl Fn() + Send + Sync + 'static) -> io::Result<()> {
    ctrlc::set_handler(callback).map_err(io::Error::other)
}

/// Says the server has finished stopping (nothing waits for it on Unix).
pub fn stop_finished() {}

/// Prepares a command so that it and everything it starts form one process group, under
/// `limits` (rlimits set in the child between fork and exec).
pub fn isolate(command: &mut Command, limits: &Limits) {
    command.process_group(0);
    if *limits == Limits::default() {
        return;
    }
    let mut settings: Vec<(RlimitResource, libc::rlim_t)> = Vec::new();
    let mut add = |resource, value: Option<u64>| {
        if let Some(value) = value {
            settings.push((resource, value as libc::rlim_t));
        }
    };
    add(libc::RLIMIT_DATA, limits.memory);
    add(libc::RLIMIT_CPU, limits.cpu_seconds);
    add(libc::RLIMIT_NOFILE, limits.open_files);
    add(libc::RLIMIT_FSIZE, limits.file_size);
    if limits.no_core_dumps {
        add(libc::RLIMIT_CORE, Some(0));
    }
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // setrlimit(2), which is async-signal-safe; it touches no lock and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            for (resource, value) in &settings {
                let limit = libc::rlimit {
                    rlim_cur: *value,
                    rlim_max: *value,
                };
                if libc::setrlimit(*resource, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

#[cfg(target_os = "linux")]
type RlimitResource = libc::__rlimit_resource_t;
#[cfg(not(target_os = "linux"))]
type RlimitResource = libc::c_int;

/// The kill target for a child and everything it started: its process group.
#[derive(Debug)]
pub struct ProcessTree {
    group: libc::pid_t,
}

impl ProcessTree {
    /// Takes charge of a child spawned from a command that went through [`isolate`].
    pub fn attach(child: &Child, _limits: &Limits) -> io::Result<ProcessTree> {
        let group = libc::pid_t::try_from(child.id())
            .map_err(|_| io::Error::other("child pid out of range"))?;
        Ok(ProcessTree { group })
    }

    /// Ends the whole tree at once (SIGKILL to the group).
    pub fn kill(&self) {
        self.signal(libc::SIGKILL);
    }

    /// Ends the group and, while the leader still lives, every descendant that left the
    /// group (`setsid`): the group is frozen first so nobody forks during the walk.
    pub fn kill_all(&self) {
        self.signal(libc::SIGSTOP);
        for pid in descendants(self.group) {
            // SAFETY: kill(2) on a pid read from /proc; an error means it is gone.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        self.signal(libc::SIGKILL);
    }

    fn signal(&self, signal: libc::c_int) {
        if self.group > 1 {
            // SAFETY: kill(2) with a negative pid signals a process group; it has no memory
            // effects and an error (the group is already gone) is harmless.
            unsafe {
                libc::kill(-self.group, signal);
            }
        }
    }
}

/// The signal that ended a child, if a signal did.
pub fn exit_signal(status: &ExitStatus) -> Option<i32> {
    status.signal()
}

/// The conventional name of a signal number, for error messages.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

/// Makes a directory's entries durable after a create, rename or delete in it.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Makes a directory readable by its owner only.
pub fn make_private(dir: &Path) -> io::Result<()> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Every live descendant of `root`, from the parent links in `/proc` (Linux); elsewhere none.
fn descendants(root: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut links: Vec<(libc::pid_t, libc::pid_t)> = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<libc::pid_t>().ok());
        if let Some(parent) = parent {
            links.push((pid, parent));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(links.iter().filter(|(_, p)| *p == parent).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}
