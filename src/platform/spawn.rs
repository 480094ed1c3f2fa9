//! Starting a child process on Linux the way posix_spawn does: `clone(CLONE_VM | CLONE_VFORK)`
//! runs the child on the server's own memory until it executes, so nothing is copied and no
//! page of the server becomes copy-on-write. A plain `fork` of this many-threaded server
//! write-protected every page it had, and each page the server then wrote cost a fault and a
//! TLB shootdown across CPUs: measured, that was most of the time of a run.
//!
//! Between clone and exec the child applies the run's confinement with raw system calls
//! only (no allocation, no lock, no glibc wrapper that talks to other threads): its own
//! process group, the cgroups, its own System V IPC and (without network) network
//! namespaces, joined fresh from `super::namespaces` when some are ready, the rlimits, the
//! run's user, the parent-death signal, default signal handlers, its stdio, its directory.
//! Everything it needs is prepared by the parent before the clone. Waiting uses a pidfd, so a time
//! limit needs no signal handler.

use super::process::Process;
use super::Sandbox;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The usual folders every user may write; those that exist here are made private to each
/// run uid (see `super::scratch`), with any other sticky world-writable folder found near
/// the top of the tree (see [`private_dirs`]).
const SHARED_DIRS: [&str; 8] = [
    "/tmp",
    "/var/tmp",
    "/dev/shm",
    "/run/lock",
    "/var/lock",
    "/dev/mqueue",
    "/var/crash",
    "/var/metrics",
];

/// Folders below these are not looked through for shared folders: they are the kernel's
/// views, or device nodes.
const NOT_SEARCHED: [&str; 4] = ["/proc", "/sys", "/dev/pts", "/dev/hugepages"];

/// How deep below `/` shared folders are looked for: `/a/b/c`.
const SEARCH_DEPTH: usize = 3;

/// Every folder that every user may write and that a run could leave something in for a
/// later run: the usual ones ([`SHARED_DIRS`]) and each sticky world-writable folder within
/// [`SEARCH_DEPTH`] levels of `/`, resolved (so `/var/lock` is `/run/lock`), without one
/// that lies inside another. Found once. A world-writable folder without the sticky bit
/// is an administrator's deliberate share: it is logged, not hidden.
pub fn private_dirs() -> &'static [PathBuf] {
    static DIRS: std::sync::OnceLock<Vec<PathBuf>> = std::sync::OnceLock::new();
    DIRS.get_or_init(|| {
        let mut found: Vec<PathBuf> = SHARED_DIRS.iter().map(PathBuf::from).collect();
        search(Path::new("/"), SEARCH_DEPTH, &mut found);
        let mut dirs: Vec<PathBuf> = found
            .iter()
            .filter_map(|dir| std::fs::canonicalize(dir).ok())
            .filter(|dir| {
                std::fs::metadata(dir)
                    .is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o002 != 0)
            })
            .collect();
        dirs.sort();
        dirs.dedup();
        let outer = dirs.clone();
        dirs.retain(|dir| !outer.iter().any(|o| o != dir && dir.starts_with(o)));
        dirs
    })
}

/// Adds the sticky world-writable folders under `dir`, `depth` levels down, to `found`.
fn search(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) {
    if depth == 0 || NOT_SEARCHED.iter().any(|n| dir == Path::new(n)) {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        // Never through a symlink: its target is found where it lies, or is not ours.
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if !kind.is_dir() {
            continue;
        }
        let path = entry.path();
        let mode = entry.metadata().map_or(0, |m| m.permissions().mode());
        if mode & 0o002 != 0 {
            if mode & 0o1000 != 0 {
                found.push(path);
            } else {
                log::warn!(
                    "{} can be written by every user, runs included, and is not made private to each run",
                    path.display()
                );
            }
            continue;
        }
        search(&path, depth - 1, found);
    }
}

/// Stack of the child between clone and exec: it only makes system calls (musl gives its
/// posix_spawn child about 5 KiB).
const CHILD_STACK: usize = 16 * 1024;

/// What [`spawn`] prepares for the child, kept alive until it has executed.
struct Plan {
    program: CString,
    /// Executed through this descriptor (execveat) when the run has its own user, who cannot
    /// reach the file through the server's private folders.
    program_fd: Option<File>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    /// A descriptor left open across the exec (a function's files, see
    /// `super::unix::open_tree`); every other one of ours closes.
    inherit: Option<RawFd>,
    cwd: Option<CString>,
    stdio: [RawFd; 3],
    cgroup_fds: Vec<RawFd>,
    no_network: bool,
    /// A fresh network namespace to join for `no_network` (see `super::namespaces`); None:
    /// the child makes one.
    net: Option<RawFd>,
    /// Likewise the System V IPC namespace of a run that joins its uid's mount namespace.
    ipc: Option<RawFd>,
    rlimits: Vec<(libc::__rlimit_resource_t, libc::rlim_t)>,
    user: Option<u32>,
    /// For [`Scratch::Join`]: the mount namespace to join.
    join: Option<RawFd>,
    /// For [`Scratch::Make`]: the run disk to mount and the folders to bind from it.
    disk: Option<DiskPlan>,
    /// For [`Scratch::Join`]: new options for the run disk, remounted where `cwd` is.
    resize: Option<CString>,
    /// Set by the child when a step fails (the child shares our memory until it executes).
    failure: libc::c_int,
}

/// Which mount namespace a child lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scratch<'a> {
    /// The server's.
    Shared,
    /// A new one, where `disk` is mounted (see `super::scratch`).
    Make(&'a Disk),
    /// This one (a descriptor of `/proc/<pid>/ns/mnt`), with the run disk resized to this
    /// many bytes first when given.
    Join(RawFd, Option<u64>),
}

/// The one tmpfs that holds everything a run uid may write: its working directory and
/// each of [`private_dirs`], bound from folders of it, so that `size` bounds them all
/// together. Mounted over `work_dir`, the working directory of every run of `uid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub work_dir: PathBuf,
    pub uid: u32,
    pub size: Option<u64>,
}

/// The mount options of a run disk of `size` bytes: an inode for every 16 KiB, so that
/// emptying it is bounded too.
pub fn disk_options(size: Option<u64>) -> String {
    match size {
        None => String::new(),
        Some(size) => format!("size={size},nr_inodes={}", (size / 16384).max(1024)),
    }
}

/// What the child does to make a run disk.
struct DiskPlan {
    root: CString,
    options: CString,
    /// Folder of the disk, where it is bound, whether it is the working directory.
    binds: Vec<(CString, CString, bool)>,
    uid: u32,
}

/// Starts `command` (program, arguments, environment, directory; its environment is taken
/// as complete) confined by `sandbox`, with `stdio` as its stdin, stdout and stderr.
/// An exec refused with "text file busy" is tried again a few times: any process holding
/// the file open for writing causes it, even one that only inherited the descriptor for
/// the instant between its own clone and exec. With `opened`, that open file is what is
/// executed, not what the command's path names now. `inherit` stays open in the child, at
/// the number it has here.
pub fn spawn(
    command: &Command,
    opened: Option<&File>,
    inherit: Option<&File>,
    sandbox: &Sandbox,
    stdio: [&OwnedFd; 3],
    cgroup_fds: Vec<RawFd>,
    scratch: Scratch<'_>,
) -> io::Result<Process> {
    let mut tries = 0;
    loop {
        match spawn_once(
            command,
            opened,
            inherit,
            sandbox,
            stdio,
            &cgroup_fds,
            scratch,
        ) {
            Err(err) if err.raw_os_error() == Some(libc::ETXTBSY) && tries < 5 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(tries));
            }
            other => return other,
        }
    }
}

fn spawn_once(
    command: &Command,
    opened: Option<&File>,
    inherit: Option<&File>,
    sandbox: &Sandbox,
    stdio: [&OwnedFd; 3],
    cgroup_fds: &[RawFd],
    scratch: Scratch<'_>,
) -> io::Result<Process> {
    let cstring = |bytes: &[u8]| {
        CString::new(bytes).map_err(|_| io::Error::other("a NUL byte in a command or its env"))
    };
    let path = resolve(command)?;
    let program = cstring(path.as_os_str().as_bytes())?;
    let program_fd = match (opened, sandbox.user) {
        (Some(file), _) => Some(file.try_clone()?),
        (None, Some(_)) => Some(File::open(&path)?),
        (None, None) => None,
    };
    let mut strings = vec![program.clone()];
    for arg in command.get_args() {
        strings.push(cstring(arg.as_bytes())?);
    }
    let argc = strings.len();
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            let mut pair = key.as_bytes().to_vec();
            pair.push(b'=');
            pair.extend_from_slice(value.as_bytes());
            strings.push(cstring(&pair)?);
        }
    }
    let pointers = |range: &[CString]| -> Vec<*const libc::c_char> {
        range
            .iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };
    let limits = sandbox.limits;
    let mut rlimits = Vec::new();
    let mut add = |resource, value: Option<u64>| {
        if let Some(value) = value {
            rlimits.push((resource, value as libc::rlim_t));
        }
    };
    add(libc::RLIMIT_DATA, limits.memory);
    add(libc::RLIMIT_CPU, limits.cpu_seconds);
    add(libc::RLIMIT_NOFILE, limits.open_files);
    add(libc::RLIMIT_FSIZE, limits.file_size);
    if limits.no_core_dumps {
        add(libc::RLIMIT_CORE, Some(0));
    }
    if sandbox.user.is_some() {
        // Counted per user: exact once every run has a user of its own.
        add(libc::RLIMIT_NPROC, limits.processes);
    }
    let path = |p: &Path| cstring(p.as_os_str().as_bytes());
    let disk = match scratch {
        Scratch::Make(disk) => {
            let mut binds = Vec::new();
            for (i, dir) in private_dirs().iter().enumerate() {
                binds.push((
                    path(&disk.work_dir.join(format!(".shared-{i}")))?,
                    path(dir)?,
                    false,
                ));
            }
            // Last: from here the working directory's path leads into its own folder.
            binds.push((
                path(&disk.work_dir.join(".work"))?,
                path(&disk.work_dir)?,
                true,
            ));
            Some(DiskPlan {
                root: path(&disk.work_dir)?,
                options: cstring(format!("mode=0711,{}", disk_options(disk.size)).as_bytes())?,
                binds,
                uid: disk.uid,
            })
        }
        _ => None,
    };
    let resize = match scratch {
        Scratch::Join(_, Some(size)) => Some(cstring(disk_options(Some(size)).as_bytes())?),
        _ => None,
    };
    let join = match scratch {
        Scratch::Join(fd, _) => Some(fd),
        _ => None,
    };
    // Held until the child has executed (or failed): then each is the child's alone.
    let ipc = join.and_then(|_| super::namespaces::take(super::namespaces::Kind::Ipc));
    let net = if sandbox.no_network {
        super::namespaces::take(super::namespaces::Kind::Net)
    } else {
        None
    };
    let mut plan = Plan {
        program,
        program_fd,
        argv: pointers(&strings[..argc]),
        envp: pointers(&strings[argc..]),
        inherit: inherit.map(AsRawFd::as_raw_fd),
        cwd: command
            .get_current_dir()
            .map(|d| cstring(d.as_os_str().as_bytes()))
            .transpose()?,
        stdio: [
            stdio[0].as_raw_fd(),
            stdio[1].as_raw_fd(),
            stdio[2].as_raw_fd(),
        ],
        cgroup_fds: cgroup_fds.to_vec(),
        no_network: sandbox.no_network,
        net: net.as_ref().map(AsRawFd::as_raw_fd),
        ipc: ipc.as_ref().map(AsRawFd::as_raw_fd),
        rlimits,
        user: sandbox.user,
        join,
        disk,
        resize,
        failure: 0,
    };
    // On our own stack, as musl's posix_spawn does: we are suspended while the child runs
    // on it. Uninitialised: a stack needs no zeroes. (A heap block of this size per run
    // made the allocator consolidate its free lists on every spawn.)
    let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); CHILD_STACK];
    // SAFETY: the stack is ours and outlives the child's use of it (CLONE_VFORK suspends us
    // until the child executes or exits); `child_main` makes only raw system calls on the
    // plan, which also outlives it. Signals are blocked around the clone so that no handler
    // of ours runs on the child's stack; the child restores defaults before unblocking.
    let pid = unsafe {
        let top = stack.as_mut_ptr().cast::<u8>().add(CHILD_STACK);
        let top = top.sub(top as usize % 16);
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut previous: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut previous);
        let pid = libc::clone(
            child_main,
            top.cast(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&mut plan as *mut Plan).cast(),
        );
        let clone_error = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
        if pid < 0 {
            return Err(clone_error);
        }
        pid
    };
    drop(strings);
    let mut process = Process::adopt(pid)?;
    // SAFETY: a plain read of our own field, which the child may have written.
    let failure = unsafe { std::ptr::read_volatile(&plan.failure) };
    if failure != 0 {
        let _ = process.wait();
        return Err(io::Error::from_raw_os_error(failure));
    }
    Ok(process)
}

/// The program's path: as given when it names a file, else the first match on the
/// command's `PATH` (the server's when the command sets none).
fn resolve(command: &Command) -> io::Result<PathBuf> {
    let program = Path::new(command.get_program());
    if program.components().count() > 1 || program.is_absolute() {
        return Ok(program.to_path_buf());
    }
    let set = command
        .get_envs()
        .find(|(key, _)| *key == "PATH")
        .and_then(|(_, value)| value.map(|v| v.to_os_string()));
    let search = set.or_else(|| std::env::var_os("PATH")).unwrap_or_default();
    std::env::split_paths(&search)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is not on PATH", program.display()),
            )
        })
}

/// The child, between clone and exec. Runs on the parent's memory: raw system calls only.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `Plan`, alive and unchanged while we run (the parent
    // is suspended by CLONE_VFORK).
    let plan = unsafe { &mut *arg.cast::<Plan>() };
    // SAFETY: each call is a plain system call on values prepared by the parent.
    let failed = unsafe { confine_and_exec(plan) };
    plan.failure = if failed == 0 { libc::EINVAL } else { failed };
    // SAFETY: leaves the child at once, without running anything of the parent's.
    unsafe { libc::syscall(libc::SYS_exit, 127) };
    127
}

/// Returns the errno of the first step that failed; never returns when the exec works.
unsafe fn confine_and_exec(plan: &Plan) -> libc::c_int {
    let errno = || *libc::__errno_location();
    let check = |result: libc::c_long| if result < 0 { errno() } else { 0 };
    macro_rules! step {
        ($call:expr) => {
            let failed = check($call as libc::c_long);
            if failed != 0 {
                return failed;
            }
        };
    }
    // Default handlers for every signal the server handles or ignores; the mask we
    // inherited (all blocked) is cleared just before the exec.
    for signal in 1..=libc::SIGRTMAX() {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(signal, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction != libc::SIG_DFL
        {
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(signal, &default, std::ptr::null_mut());
        }
    }
    step!(libc::setpgid(0, 0));
    for (target, fd) in plan.stdio.iter().enumerate() {
        step!(libc::dup2(*fd, target as libc::c_int));
    }
    if let Some(fd) = plan.join {
        step!(libc::setns(fd, libc::CLONE_NEWNS));
        // System V IPC and POSIX message queues of the run's own, gone with its last
        // process: a segment left by one run is never seen by a later one.
        match plan.ipc {
            Some(fresh) => {
                step!(libc::setns(fresh, libc::CLONE_NEWIPC));
            }
            None => {
                step!(libc::unshare(libc::CLONE_NEWIPC));
            }
        }
        if let (Some(options), Some(cwd)) = (&plan.resize, &plan.cwd) {
            step!(libc::mount(
                std::ptr::null(),
                cwd.as_ptr(),
                std::ptr::null(),
                libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV,
                options.as_ptr().cast()
            ));
        }
    }
    if let Some(disk) = &plan.disk {
        step!(libc::unshare(libc::CLONE_NEWNS));
        // Nothing mounted here may reach the server's view.
        step!(libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null()
        ));
        step!(libc::mount(
            c"tmpfs".as_ptr(),
            disk.root.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            disk.options.as_ptr().cast()
        ));
        for (folder, target, is_work) in &disk.binds {
            step!(libc::mkdir(folder.as_ptr(), 0o700));
            if *is_work {
                step!(libc::chown(folder.as_ptr(), disk.uid, disk.uid));
            } else {
                step!(libc::chmod(folder.as_ptr(), 0o1777));
            }
            step!(libc::mount(
                folder.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null()
            ));
        }
    }
    // After joining a mount namespace (which resets it), and before the uid change, as
    // std does: the directory may sit below folders only the server can pass, such as a
    // build directory in a private data dir.
    if let Some(cwd) = &plan.cwd {
        step!(libc::chdir(cwd.as_ptr()));
    }
    for fd in &plan.cgroup_fds {
        if libc::write(*fd, b"0".as_ptr().cast(), 1) != 1 {
            return errno();
        }
    }
    if plan.no_network {
        match plan.net {
            Some(fresh) => {
                step!(libc::setns(fresh, libc::CLONE_NEWNET));
            }
            None => {
                step!(libc::unshare(libc::CLONE_NEWNET));
            }
        }
    }
    for (resource, value) in &plan.rlimits {
        let limit = libc::rlimit {
            rlim_cur: *value,
            rlim_max: *value,
        };
        step!(libc::setrlimit(*resource, &limit));
    }
    if let Some(uid) = plan.user {
        // The raw calls: glibc's wrappers would try to change every thread of the server.
        step!(libc::syscall(
            libc::SYS_setgroups,
            0,
            std::ptr::null::<libc::gid_t>()
        ));
        step!(libc::syscall(libc::SYS_setresgid, uid, uid, uid));
        step!(libc::syscall(libc::SYS_setresuid, uid, uid, uid));
    }
    // Killed if the server dies. After the uid change, which clears it. It fires when the
    // spawning *thread* ends, so children are started from threads that live as long as
    // the server (the pools, the cron workers, the warm reaper).
    step!(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL));
    // No set-user-id or file-capability program the function executes gains anything.
    step!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
    if let Some(fd) = plan.inherit {
        step!(libc::fcntl(fd, libc::F_SETFD, 0));
    }
    let mut none: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut none);
    libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    match &plan.program_fd {
        Some(file) => {
            // Open across the exec: a script's interpreter reopens it as /dev/fd/N.
            step!(libc::fcntl(file.as_raw_fd(), libc::F_SETFD, 0));
            libc::syscall(
                libc::SYS_execveat,
                file.as_raw_fd(),
                c"".as_ptr(),
                plan.argv.as_ptr(),
                plan.envp.as_ptr(),
                libc::AT_EMPTY_PATH,
            );
        }
        None => {
            libc::execve(
                plan.program.as_ptr(),
                plan.argv.as_ptr(),
                plan.envp.as_ptr(),
            );
        }
    }
    errno()
}
