//! Unix side of the platform API: process groups, signals, directory fsync.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus};

use super::{Found, Sandbox};
use std::fs::File;
use std::os::unix::fs::MetadataExt;

/// Whether `--compile-memory` applies (an rlimit on the compiler's processes).
pub const COMPILER_MEMORY_LIMIT: bool = true;

/// Suffix of executables the Go toolchain writes.
pub const EXE_SUFFIX: &str = "";

/// How an executable file begins here (ELF).
pub const EXECUTABLE_MAGIC: &[u8] = b"\x7fELF";

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

/// Opens an executable to be run later through the descriptor: what runs then is this file,
/// whatever is removed or written at its path meanwhile.
pub fn open_program(path: &Path) -> io::Result<Option<File>> {
    File::open(path).map(Some)
}

/// Opens the folder of a function's files (a version's tree) to be passed to its runs: a
/// run's user reaches the files through this descriptor (see [`tree_view`]), never through
/// the server's private folders, and what runs is this folder whatever is renamed or
/// removed at its path meanwhile.
pub fn open_tree(path: &Path) -> io::Result<Option<File>> {
    let file = File::open(path)?;
    if !file.metadata()?.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is not a folder", path.display()),
        ));
    }
    Ok(Some(file))
}

/// The path by which a child started with `tree` (see [`start`]) reaches that folder:
/// `/proc/self/fd/N` on Linux, the folder's own path elsewhere.
pub fn tree_view(tree: Option<&File>, path: &Path) -> std::path::PathBuf {
    #[cfg(target_os = "linux")]
    if let Some(tree) = tree {
        use std::os::fd::AsRawFd;
        return std::path::PathBuf::from(format!("/proc/self/fd/{}", tree.as_raw_fd()));
    }
    let _ = tree;
    path.to_path_buf()
}

/// Renames `from` over `to`, replacing it atomically.
pub fn replace_file(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to)
}

/// Calls `callback` on SIGINT, SIGTERM or SIGHUP.
pub fn on_stop_request(callback: impl Fn() + Send + Sync + 'static) -> io::Result<()> {
    ctrlc::set_handler(callback).map_err(io::Error::other)
}

/// Says the server has finished stopping: no run is left, so the cgroups made for run uids
/// go (a group that still holds a process stays). Nothing else waits for it on Unix.
pub fn stop_finished() {
    super::cgroup::remove_groups();
}

/// Starts `command` (its environment taken as complete) as the head of a new process group
/// inside `sandbox`: between clone and exec it joins the run's cgroups, leaves the network
/// (a new empty network namespace), takes its rlimits, drops to the run's user, and asks to
/// be killed if the server dies (see [`super::spawn`]). Stdout and stderr are pipes; stdin
/// is a pipe when `with_stdin`, else `/dev/null`. With `program` (from [`open_program`]),
/// that file is executed rather than what the command's path names now. `tree` (from
/// [`open_tree`]) stays open in the child, which reaches it as [`tree_view`] says.
pub fn start(
    command: &Command,
    program: Option<&File>,
    tree: Option<&File>,
    sandbox: &Sandbox,
    with_stdin: bool,
) -> io::Result<super::Spawned> {
    let (stdin_pipe, stdin) = if with_stdin {
        let (read, write) = super::process::pipe()?;
        (Some(read), Some(File::from(write)))
    } else {
        (None, None)
    };
    let stdin_child = match &stdin_pipe {
        Some(read) => read,
        None => super::process::null_input()?,
    };
    let (stdout, stdout_child) = super::process::pipe()?;
    let (stderr, stderr_child) = super::process::pipe()?;
    let (process, tree) = start_confined(
        command,
        program,
        tree,
        sandbox,
        [stdin_child, &stdout_child, &stderr_child],
    )?;
    Ok(super::Spawned {
        process,
        tree,
        stdin,
        stdout: File::from(stdout),
        stderr: File::from(stderr),
    })
}

/// Starts `command` in `sandbox` with these descriptors as its stdin, stdout and stderr.
pub(super) fn start_confined(
    command: &Command,
    program: Option<&File>,
    inherit: Option<&File>,
    sandbox: &Sandbox,
    stdio: [&std::os::fd::OwnedFd; 3],
) -> io::Result<(super::Process, ProcessTree)> {
    let disk = match (sandbox.user, command.get_current_dir()) {
        (Some(uid), Some(work_dir)) if sandbox.exclusive_user => Some(super::spawn::Disk {
            work_dir: work_dir.to_path_buf(),
            uid,
            size: sandbox.limits.disk,
        }),
        _ => None,
    };
    let scratch = || -> io::Result<super::spawn::Scratch<'static>> {
        match &disk {
            Some(disk) => super::scratch::join(disk),
            None => Ok(super::spawn::Scratch::Shared),
        }
    };
    let spawn = |confinement: &Confinement| -> io::Result<super::Process> {
        super::spawn::spawn(
            command,
            program,
            inherit,
            sandbox,
            stdio,
            confinement.fds(),
            scratch()?,
        )
    };
    let confinement = Confinement::prepare(sandbox)?;
    let process = match spawn(&confinement) {
        // The uid's group was removed under us (by hand, say): the descriptor kept open to
        // join it is stale. Made afresh, the next run of the uid would fail the same way.
        Err(err) if err.raw_os_error() == Some(libc::ENODEV) && confinement.joins() => {
            confinement.forget();
            spawn(&Confinement::prepare(sandbox)?)?
        }
        other => other?,
    };
    if let Some(disk) = &disk {
        super::scratch::started(disk);
    }
    let group = libc::pid_t::try_from(process.id())
        .map_err(|_| io::Error::other("child pid out of range"))?;
    Ok((process, ProcessTree { group }))
}

/// The cgroups a run joins (Linux, per-run users, writable controllers), held open until the
/// child has started.
#[derive(Default)]
pub struct Confinement {
    #[cfg(target_os = "linux")]
    joining: Option<super::cgroup::Joining>,
}

impl Confinement {
    #[cfg(target_os = "linux")]
    fn prepare(sandbox: &Sandbox) -> io::Result<Confinement> {
        let joining = match sandbox.user {
            Some(uid) if sandbox.exclusive_user && super::cgroup::available() => {
                Some(super::cgroup::prepare(uid, sandbox.limits.memory)?)
            }
            _ => None,
        };
        Ok(Confinement { joining })
    }

    #[cfg(not(target_os = "linux"))]
    fn prepare(_sandbox: &Sandbox) -> io::Result<Confinement> {
        Ok(Confinement::default())
    }

    /// Whether the run joins cgroups.
    fn joins(&self) -> bool {
        !self.fds().is_empty()
    }

    /// Forgets the groups of the run's uid, so that they are made and opened again.
    fn forget(&self) {
        #[cfg(target_os = "linux")]
        if let Some(joining) = &self.joining {
            joining.forget();
        }
    }

    fn fds(&self) -> Vec<std::os::unix::io::RawFd> {
        #[cfg(target_os = "linux")]
        if let Some(joining) = &self.joining {
            return joining.fds();
        }
        Vec::new()
    }
}

/// Raises the server's own open-file limit to its hard limit: each connection holds two
/// descriptors, and tiny_http's accept thread dies when it runs out of them.
pub fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on our own process with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// True when the server can give runs users of their own (it runs as root).
pub fn is_privileged() -> bool {
    // SAFETY: geteuid(2) cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether runs can be cut off every network (a network namespace needs root).
pub fn can_isolate_network() -> bool {
    is_privileged()
}

/// Where runs' working directories go: outside `/tmp` when runs get a private `/tmp`
/// (root on Linux: `/run`), else the temporary folder.
pub fn work_base() -> std::path::PathBuf {
    let run = Path::new("/run");
    if is_privileged() && cfg!(target_os = "linux") && run.is_dir() {
        return run.to_path_buf();
    }
    std::env::temp_dir()
}

/// Where builds of a data dir the build user cannot reach run: `/var/cache/golambda` (only
/// root writes `/var/cache`, every user may pass it), else [`work_base`].
pub fn build_base() -> std::path::PathBuf {
    let cache = Path::new("/var/cache");
    if cache.is_dir() {
        return cache.join("golambda");
    }
    work_base().join("golambda-builds")
}

/// Makes a finished file's contents durable. Opened read-only: a descriptor open for
/// writing that a concurrently spawned child inherits, for the instant before its exec,
/// makes executing this file fail with "text file busy".
pub fn sync_file(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Takes a folder back from a run's user (owner: the server, mode 0700), so nothing the
/// user may still run can put anything in it.
pub fn reclaim(dir: &Path) -> io::Result<()> {
    // SAFETY: geteuid(2) and getegid(2) cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    make_private(dir)
}

/// Gives a run's working directory to its user.
pub fn give_to_user(path: &Path, uid: u32) -> io::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(uid))
}

/// Gives a folder and everything in it to a user (symlinks themselves, never their targets).
pub fn give_tree_to_user(dir: &Path, uid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(uid))?;
    if std::fs::symlink_metadata(dir)?.is_dir() {
        for entry in std::fs::read_dir(dir)? {
            give_tree_to_user(&entry?.path(), uid)?;
        }
    }
    Ok(())
}

/// Makes blocks from 256 KiB up mappings of their own, given back to the system when
/// freed: glibc otherwise raises that threshold after freeing a large block, and the
/// request bodies and outputs of a burst (MiB each) then stay in the heap for good.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt(3) only changes a tunable of the allocator.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

/// Whether users other than the owner (its group or anyone) may read a file.
pub fn others_may_read(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.mode() & 0o044 != 0)
}

/// Overwrites every occurrence of each of `secrets` in the process's own command line (the
/// memory `/proc/PID/cmdline` shows) with `*`. Call after the arguments were read: later
/// reads of them see the stars. Returns whether the command line could be reached.
pub fn hide_arguments(secrets: &[&str]) -> bool {
    #[cfg(target_os = "linux")]
    {
        let Some((start, end)) = argument_memory() else {
            return false;
        };
        let len = end.saturating_sub(start);
        // SAFETY: the kernel says [start, end) holds this process's argument strings, on
        // the main thread's initial stack: mapped, writable, and for the life of the
        // process. Only bytes inside it are written.
        let arguments = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, len) };
        for secret in secrets
            .iter()
            .map(|s| s.as_bytes())
            .filter(|s| !s.is_empty())
        {
            let mut at = 0;
            while let Some(found) = arguments[at..]
                .windows(secret.len())
                .position(|w| w == secret)
            {
                arguments[at + found..at + found + secret.len()].fill(b'*');
                at += found + secret.len();
            }
        }
        true
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = secrets;
        false
    }
}

/// Where the argument strings are, from `/proc/self/stat` (fields 48 and 49).
#[cfg(target_os = "linux")]
fn argument_memory() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces; the
    // first of them is field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let start = fields.get(48 - 3)?.parse().ok()?;
    let end = fields.get(49 - 3)?.parse().ok()?;
    (start > 0 && end > start).then_some((start, end))
}

/// How many names (hard links) a file has.
pub fn link_count(path: &Path) -> Option<u64> {
    std::fs::symlink_metadata(path).ok().map(|m| m.nlink())
}

/// The owner of a file or folder.
pub fn owner_of(path: &Path) -> Option<u32> {
    std::fs::symlink_metadata(path).ok().map(|m| m.uid())
}

/// Whether users other than the owner may execute `path` (pass through it, for a folder).
pub fn others_can_execute(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.mode() & 0o001 != 0)
}

/// Whether someone may execute the file at `path`.
pub fn can_execute(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.mode() & 0o111 != 0)
}

/// Whether users other than the owner may pass through a folder.
pub fn others_can_traverse(dir: &Path) -> bool {
    // The folder and every folder above it: one closed ancestor blocks the way.
    std::fs::canonicalize(dir).is_ok_and(|full| {
        full.ancestors()
            .all(|d| std::fs::metadata(d).is_ok_and(|m| m.mode() & 0o001 != 0))
    })
}

/// Kills every process of a run's user: whatever the run left, even a daemon that left its
/// process group and its parent. Returns how many it found.
pub fn kill_user(uid: u32) -> super::Leftovers {
    // Where runs have cgroups, the group lists exactly the run's processes; elsewhere every
    // process of the uid is found through /proc.
    let members = || -> Vec<libc::pid_t> {
        #[cfg(target_os = "linux")]
        if super::cgroup::available() {
            return super::cgroup::members(uid);
        }
        // By the uids of its status, not the owner of its folder: a process that made
        // itself undumpable shows a folder owned by root.
        processes()
            .filter(|(_, entry)| {
                std::fs::read_to_string(entry.path().join("status")).is_ok_and(|status| {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix("Uid:"))
                        .is_some_and(|ids| ids.split_whitespace().any(|id| id == uid.to_string()))
                })
            })
            .map(|(pid, _)| pid)
            .collect()
    };
    let mut killed = 0;
    // Until none is left: a process forking while we look is caught on a later pass, and a
    // killed one leaves the list once it has died.
    for _ in 0..KILL_PASSES {
        let pids = members();
        if pids.is_empty() {
            // Nobody of the uid is left to write there: its scratch folders can be emptied.
            // One that cannot be emptied must not go to the next run of the uid: it counts
            // as left over, so the uid is set aside and tried again.
            #[cfg(target_os = "linux")]
            if let Err(err) = super::scratch::empty(uid) {
                log::warn!("could not empty the scratch folders of uid {uid}: {err}");
                return super::Leftovers {
                    killed,
                    remaining: 1,
                };
            }
            return super::Leftovers {
                killed,
                remaining: 0,
            };
        }
        for pid in &pids {
            // SAFETY: kill(2) on a pid of the run's own user or group.
            unsafe {
                libc::kill(*pid, libc::SIGKILL);
            }
        }
        killed += pids.len();
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    super::Leftovers {
        killed,
        remaining: members().len(),
    }
}

/// Most rounds of listing and killing a uid's processes before giving up on it.
const KILL_PASSES: usize = 50;

/// The kill target for a child and everything it started: its process group.
#[derive(Debug)]
pub struct ProcessTree {
    group: libc::pid_t,
}

impl ProcessTree {
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

/// Makes everything written under `dir` durable at once, however many files and folders it
/// holds: `syncfs` of its file system on Linux (one call, where a sync per file of a tree
/// of thousands costs seconds), each file and folder synced elsewhere.
pub fn sync_tree(dir: &Path) -> io::Result<()> {
    let folder = std::fs::File::open(dir)?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: syncfs(2) on a descriptor we hold.
        if unsafe { libc::syncfs(folder.as_raw_fd()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        drop(folder);
        super::sync_each(dir, true)
    }
}

/// Makes a directory readable by its owner only.
pub fn make_private(dir: &Path) -> io::Result<()> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Lets every user read a file of a function's tree (and run it, with `executable`), or
/// list and pass through a folder of it, whatever the umask.
pub fn make_shared(path: &Path, executable: bool) -> io::Result<()> {
    let mode = if executable { 0o755 } else { 0o644 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Opens a file for reading without following a link at its last component, and without
/// blocking on a FIFO; the caller checks what it is by the descriptor.
pub fn open_no_follow(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// Visits every folder and regular file below `root` (a folder another user may still be
/// changing), with its path relative to `root` (`/` separators), parents before their
/// contents; links, devices and the like are left out. Nothing is reached through a link:
/// each folder is opened without following one and listed through its descriptor, and
/// each file is opened relative to its folder's descriptor without following one, then
/// checked by its descriptor. Names in `skip` are left out at the top. A name that is not
/// UTF-8, or folders nested deeper than [`WALK_DEPTH`] (each level holds a descriptor),
/// fail the walk with `InvalidData`.
pub fn walk_no_follow(
    root: &Path,
    skip: &[&str],
    visit: &mut dyn FnMut(&str, Found) -> io::Result<()>,
) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c_root = std::ffi::CString::new(root.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("a NUL in a path"))?;
    // SAFETY: open(2) of a NUL-terminated path; the descriptor is owned at once.
    let fd = unsafe {
        libc::open(
            c_root.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is ours alone.
    let dir = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    walk_dir(&dir, "", 0, skip, visit)
}

/// How deep [`walk_no_follow`] goes.
pub const WALK_DEPTH: usize = 128;

fn walk_dir(
    dir: &std::os::fd::OwnedFd,
    prefix: &str,
    depth: usize,
    skip: &[&str],
    visit: &mut dyn FnMut(&str, Found) -> io::Result<()>,
) -> io::Result<()> {
    if depth > WALK_DEPTH {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("folders nested more than {WALK_DEPTH} deep: {prefix}"),
        ));
    }
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    let listing = std::path::PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(&listing)?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for name in names {
        let Some(text) = name.to_str().map(str::to_string) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a file name that is not UTF-8: {prefix}{}",
                    name.to_string_lossy()
                ),
            ));
        };
        if skip.contains(&text.as_str()) {
            continue;
        }
        let c_name = std::ffi::CString::new(name.as_bytes())
            .map_err(|_| io::Error::other("a NUL in a name"))?;
        // SAFETY: openat(2) relative to a descriptor we hold, of a NUL-terminated name.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                c_name.as_ptr(),
                libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK,
            )
        };
        if fd < 0 {
            let err = io::Error::last_os_error();
            // A link (ELOOP), a socket (ENXIO), or gone meanwhile: not taken.
            if matches!(
                err.raw_os_error(),
                Some(libc::ELOOP) | Some(libc::ENOENT) | Some(libc::ENXIO)
            ) {
                continue;
            }
            return Err(err);
        }
        // SAFETY: `fd` was just opened and is ours alone.
        let opened = unsafe { OwnedFd::from_raw_fd(fd) };
        let file = File::from(opened);
        let metadata = file.metadata()?;
        let path = format!("{prefix}{text}");
        if metadata.is_dir() {
            visit(&path, Found::Folder)?;
            walk_dir(
                &OwnedFd::from(file),
                &format!("{path}/"),
                depth + 1,
                &[],
                visit,
            )?;
        } else if metadata.is_file() {
            let executable = metadata.mode() & 0o100 != 0;
            let owner = metadata.uid();
            visit(
                &path,
                Found::File {
                    file,
                    executable,
                    owner,
                },
            )?;
        }
    }
    Ok(())
}

/// Lets other users pass through a folder to what they own inside, without listing it.
pub fn make_traversable(dir: &Path) -> io::Result<()> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
}

/// Creates a file of a package, which must not exist: mode 0755 when it is executable,
/// 0644 otherwise (less what the umask takes).
pub fn create_package_file(path: &Path, executable: bool) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if executable { 0o755 } else { 0o644 })
        .open(path)
}

/// Every live descendant of `root`, from the parent links in `/proc` (Linux); elsewhere none.
fn descendants(root: libc::pid_t) -> Vec<libc::pid_t> {
    let mut links: Vec<(libc::pid_t, libc::pid_t)> = Vec::new();
    for (pid, entry) in processes() {
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

/// The processes in `/proc` (none where there is no `/proc`), with their entries.
fn processes() -> impl Iterator<Item = (libc::pid_t, std::fs::DirEntry)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<libc::pid_t>().ok()?;
            Some((pid, entry))
        })
}
