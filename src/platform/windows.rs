//! Windows side of the platform API: job objects that kill the whole tree, console control
//! events, write-through renames.

use std::io;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::{AsRawHandle, OwnedHandle};
use std::os::windows::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

use super::{Found, Sandbox};
use std::fs::File;

/// Windows has no per-process descriptor limit to raise.
pub fn raise_open_files_limit() {}

/// Runs have no users of their own on Windows.
pub fn is_privileged() -> bool {
    false
}

/// Windows has no per-run network cut-off here.
pub fn can_isolate_network() -> bool {
    false
}

/// Runs have no users of their own on Windows.
pub fn give_to_user(_path: &Path, _uid: u32) -> io::Result<()> {
    Ok(())
}

/// Runs have no users of their own on Windows.
pub fn give_tree_to_user(_dir: &Path, _uid: u32) -> io::Result<()> {
    Ok(())
}

/// The Windows heap gives large blocks back by itself.
pub fn tune_allocator() {}

/// Windows files are guarded by their folders' access lists, not mode bits: not checked.
pub fn others_may_read(_path: &Path) -> bool {
    false
}

/// Other processes of the same user can read a command line on Windows, and runs are of
/// the same user: nothing is gained by rewriting it.
pub fn hide_arguments(_secrets: &[&str]) -> bool {
    false
}

/// How many names (hard links) a file has.
pub fn link_count(path: &Path) -> Option<u64> {
    use windows_sys::Win32::Storage::FileSystem::{
        GetFileInformationByHandle, BY_HANDLE_FILE_INFORMATION,
    };
    let file = File::open(path).ok()?;
    // SAFETY: an all-zero BY_HANDLE_FILE_INFORMATION is a valid value of this plain struct.
    let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: the handle is open for the whole call and `info` is a valid out pointer.
    let ok = unsafe { GetFileInformationByHandle(file.as_raw_handle() as _, &mut info) };
    (ok != 0).then_some(u64::from(info.nNumberOfLinks))
}

/// Ownership is not tracked by uid on Windows.
pub fn owner_of(_path: &Path) -> Option<u32> {
    None
}

/// Runs have no users of their own on Windows: what the server reaches, they do.
pub fn others_can_execute(_path: &Path) -> bool {
    true
}

/// Windows has no execute bit: any file may be started.
pub fn can_execute(_path: &Path) -> bool {
    true
}

/// Builds run as the server's user on Windows.
pub fn others_can_traverse(_dir: &Path) -> bool {
    false
}

/// Runs have no users of their own on Windows: the job holds their processes.
pub fn kill_user(_uid: u32) -> super::Leftovers {
    super::Leftovers::default()
}
use windows_sys::core::BOOL;
use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
use windows_sys::Win32::Storage::FileSystem::{
    MoveFileExW, MOVEFILE_REPLACE_EXISTING, MOVEFILE_WRITE_THROUGH,
};
use windows_sys::Win32::System::Console::{SetConsoleCtrlHandler, CTRL_BREAK_EVENT, CTRL_C_EVENT};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JobObjectExtendedLimitInformation,
    SetInformationJobObject, TerminateJobObject, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
    JOB_OBJECT_LIMIT_ACTIVE_PROCESS, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    JOB_OBJECT_LIMIT_PROCESS_MEMORY,
};
use windows_sys::Win32::System::Threading::{CREATE_NEW_PROCESS_GROUP, CREATE_NO_WINDOW};

/// Whether `--compile-memory` applies: not on Windows, where the Go toolchain failed to start
/// (`ws2_32.dll not found`) inside a job with a per-process memory limit under Wine.
pub const COMPILER_MEMORY_LIMIT: bool = false;

/// Suffix of executables the Go toolchain writes.
pub const EXE_SUFFIX: &str = ".exe";

/// How an executable file begins here (PE).
pub const EXECUTABLE_MAGIC: &[u8] = b"MZ";

/// The variables that name a child's temporary directory (Windows programs read TMP/TEMP).
pub const TEMP_VARS: &[&str] = &["TMPDIR", "TMP", "TEMP"];

fn system_root() -> String {
    std::env::var("SystemRoot").unwrap_or_else(|_| "C:\\Windows".into())
}

/// `PATH` given to functions.
pub fn function_path() -> String {
    let root = system_root();
    format!("{root}\\System32;{root}")
}

/// Variables every Windows program needs to start (Go's runtime loads DLLs through
/// `SystemRoot`).
pub fn system_env() -> Vec<(String, String)> {
    vec![("SystemRoot".into(), system_root())]
}

/// Variables the Go toolchain needs besides `PATH` and its own `GO*` settings.
pub fn compile_env() -> Vec<(String, String)> {
    [
        "SystemRoot",
        "SystemDrive",
        "windir",
        "USERPROFILE",
        "LOCALAPPDATA",
        "APPDATA",
        "PATHEXT",
        "ComSpec",
        "NUMBER_OF_PROCESSORS",
        "PROCESSOR_ARCHITECTURE",
    ]
    .iter()
    .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
    .collect()
}

/// Starts `command` in a new console process group (console events reach it, not the
/// server), then puts it in a kill-on-close job with the sandbox's limits. Stdout and
/// stderr are pipes; stdin is a pipe when `with_stdin`, else the null device.
pub fn start(
    command: &Command,
    _program: Option<&File>,
    _tree: Option<&File>,
    sandbox: &Sandbox,
    with_stdin: bool,
) -> io::Result<super::Spawned> {
    let mut command = clone_command(command);
    command
        .creation_flags(CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW)
        .stdin(if with_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn()?;
    let watched = |tree: &ProcessTree| match (sandbox.limits.disk, command.get_current_dir()) {
        (Some(limit), Some(dir)) => super::disk_watch::watch(tree.job, dir, limit),
        _ => Ok(()),
    };
    let tree =
        match ProcessTree::attach(&child, sandbox).and_then(|tree| watched(&tree).map(|()| tree)) {
            Ok(tree) => tree,
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(err);
            }
        };
    let pipe = |handle: Option<OwnedHandle>| handle.map(File::from);
    let stdin = pipe(child.stdin.take().map(OwnedHandle::from));
    let stdout = pipe(child.stdout.take().map(OwnedHandle::from));
    let stderr = pipe(child.stderr.take().map(OwnedHandle::from));
    match (stdout, stderr) {
        (Some(stdout), Some(stderr)) => Ok(super::Spawned {
            process: Process { child },
            tree,
            stdin,
            stdout,
            stderr,
        }),
        _ => Err(io::Error::other("the child's output pipes are missing")),
    }
}

/// Pipes cannot be polled together with processes here: a run uses a thread per pipe.
pub const POLLS_PIPES: bool = false;

/// Not used on Windows (see [`POLLS_PIPES`]).
pub fn set_nonblocking(_file: &File) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Not used on Windows (see [`POLLS_PIPES`]).
pub fn wait_ready(
    _process: Option<&Process>,
    _pipes: &[(&File, super::Interest)],
    _timeout: Duration,
) -> io::Result<super::Readiness> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// A copy of a command's program, arguments, environment (taken as complete) and directory.
fn clone_command(command: &Command) -> Command {
    let mut copy = Command::new(command.get_program());
    copy.args(command.get_args()).env_clear();
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            copy.env(key, value);
        }
    }
    if let Some(dir) = command.get_current_dir() {
        copy.current_dir(dir);
    }
    copy
}

/// A started child process, waited for with a time limit.
#[derive(Debug)]
pub struct Process {
    child: std::process::Child,
}

impl Process {
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for the process to end; `None` if it still runs.
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        use wait_timeout::ChildExt;
        self.child.wait_timeout(timeout)
    }

    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait()
    }

    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Whether signalling the process's tree could reach a stranger because the process
    /// was reaped: never on Windows, where the tree is a job object held by handle.
    pub fn is_reaped(&self) -> bool {
        false
    }

    /// Whether the process has ended, without waiting; needs no `&mut`.
    pub fn has_exited(&self) -> bool {
        use std::os::windows::io::AsRawHandle;
        use windows_sys::Win32::Foundation::WAIT_OBJECT_0;
        use windows_sys::Win32::System::Threading::WaitForSingleObject;
        // SAFETY: the process handle stays open while `self.child` lives.
        unsafe { WaitForSingleObject(self.child.as_raw_handle() as HANDLE, 0) == WAIT_OBJECT_0 }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }
}

/// The kill target for a child and everything it started: a job object that also kills
/// the tree when the server lets go of it. A process the child starts in the instant
/// between its creation and its assignment to the job is not covered.
#[derive(Debug)]
pub struct ProcessTree {
    job: HANDLE,
}

// SAFETY: a job handle may be used from any thread.
unsafe impl Send for ProcessTree {}
// SAFETY: the job API is thread-safe; the handle is only closed in Drop.
unsafe impl Sync for ProcessTree {}

impl ProcessTree {
    /// Creates a kill-on-close job with the limits and puts the child in it.
    pub fn attach(child: &Child, sandbox: &Sandbox) -> io::Result<ProcessTree> {
        let limits = &sandbox.limits;
        // SAFETY: plain Win32 calls on handles owned here or by `child`; `info` outlives
        // the call that reads it.
        unsafe {
            let job = CreateJobObjectW(std::ptr::null(), std::ptr::null());
            if job.is_null() {
                return Err(io::Error::last_os_error());
            }
            let tree = ProcessTree { job };
            let mut info: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = std::mem::zeroed();
            info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
            if let Some(memory) = limits.memory {
                info.BasicLimitInformation.LimitFlags |= JOB_OBJECT_LIMIT_PROCESS_MEMORY;
                info.ProcessMemoryLimit = usize::try_from(memory).unwrap_or(usize::MAX);
            }
            if let Some(processes) = limits.processes {
                info.BasicLimitInformation.LimitFlags |= JOB_OBJECT_LIMIT_ACTIVE_PROCESS;
                info.BasicLimitInformation.ActiveProcessLimit =
                    u32::try_from(processes).unwrap_or(u32::MAX);
            }
            let ok = SetInformationJobObject(
                job,
                JobObjectExtendedLimitInformation,
                &info as *const JOBOBJECT_EXTENDED_LIMIT_INFORMATION as *const _,
                std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
            );
            if ok == 0 {
                return Err(io::Error::last_os_error());
            }
            if AssignProcessToJobObject(job, child.as_raw_handle() as HANDLE) == 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(tree)
        }
    }

    /// A job holds every descendant already.
    pub fn kill_all(&self) {
        self.kill();
    }

    /// Ends every process in the job.
    pub fn kill(&self) {
        // SAFETY: the handle is valid until Drop.
        unsafe {
            TerminateJobObject(self.job, 1);
        }
    }
}

impl Drop for ProcessTree {
    fn drop(&mut self) {
        // SAFETY: our own handle, closed once. Ended first: kill-on-close fires only with
        // the last handle, and the disk watcher may hold another for a moment.
        unsafe {
            TerminateJobObject(self.job, 1);
            CloseHandle(self.job);
        }
    }
}

/// Windows has no signals.
pub fn exit_signal(_status: &ExitStatus) -> Option<i32> {
    None
}

/// Windows has no signals; kept for the shared API.
pub fn signal_name(signal: i32) -> String {
    format!("signal {signal}")
}

/// Directories cannot be opened for syncing on Windows; renames are written through.
pub fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Makes every file under `dir` durable (folders need nothing on Windows).
pub fn sync_tree(dir: &Path) -> io::Result<()> {
    super::sync_each(dir, false)
}

/// Where runs' working directories go.
/// Builds never run as another user on Windows: the data dir's cache is always used; this
/// is where they would go.
pub fn build_base() -> std::path::PathBuf {
    std::env::temp_dir().join("golambda-builds")
}

pub fn work_base() -> std::path::PathBuf {
    std::env::temp_dir()
}

/// Makes a finished file's contents durable (Windows flushes only a handle open for
/// writing).
pub fn sync_file(path: &Path) -> io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .sync_all()
}

/// Runs have no users of their own on Windows.
pub fn reclaim(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Files are shared by their folder's access list on Windows: nothing to change.
pub fn make_shared(_path: &Path, _executable: bool) -> io::Result<()> {
    Ok(())
}

/// Opens a file for reading (builds have no user of their own to plant links on Windows).
pub fn open_no_follow(path: &Path) -> io::Result<File> {
    File::open(path)
}

/// Visits every folder and regular file below `root` with its path relative to `root`
/// (`/` separators), parents first; links and the like are left out. Builds have no user
/// of their own on Windows: nothing else changes the folder while it is read.
pub fn walk_no_follow(
    root: &Path,
    skip: &[&str],
    visit: &mut dyn FnMut(&str, Found) -> io::Result<()>,
) -> io::Result<()> {
    fn walk(
        dir: &Path,
        prefix: &str,
        skip: &[&str],
        visit: &mut dyn FnMut(&str, Found) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            if skip.contains(&name.as_str()) {
                continue;
            }
            let kind = entry.file_type()?;
            let path = format!("{prefix}{name}");
            if kind.is_dir() {
                visit(&path, Found::Folder)?;
                walk(&entry.path(), &format!("{path}/"), &[], visit)?;
            } else if kind.is_file() {
                let file = File::open(entry.path())?;
                visit(
                    &path,
                    Found::File {
                        file,
                        executable: false,
                        owner: 0,
                    },
                )?;
            }
        }
        Ok(())
    }
    walk(root, "", skip, visit)
}

/// Folders inherit their ACLs on Windows.
pub fn make_traversable(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Creates a file of a package, which must not exist (Windows has no executable mode).
pub fn create_package_file(path: &Path, _executable: bool) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// The data dir inherits the ACL of its parent on Windows.
pub fn make_private(_dir: &Path) -> io::Result<()> {
    Ok(())
}

fn wide(path: &Path) -> Vec<u16> {
    path.as_os_str().encode_wide().chain(Some(0)).collect()
}

/// Renames `from` over `to` (replacing it), returning only once the rename is on disk.
/// Checks that an executable is there. Windows cannot start a process from an open file, so
/// nothing is held: the run starts it by its path (which no other version ever takes).
pub fn open_program(path: &Path) -> io::Result<Option<File>> {
    std::fs::metadata(path).map(|_| None)
}

/// A function's files are reached by their path here (runs have no user of their own):
/// checks the folder is there.
pub fn open_tree(path: &Path) -> io::Result<Option<File>> {
    if std::fs::metadata(path)?.is_dir() {
        return Ok(None);
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} is not a folder", path.display()),
    ))
}

/// The path by which a run reaches a function's files: their own.
pub fn tree_view(_tree: Option<&File>, path: &Path) -> std::path::PathBuf {
    path.to_path_buf()
}

pub fn replace_file(from: &Path, to: &Path) -> io::Result<()> {
    let (from, to) = (wide(from), wide(to));
    // SAFETY: both strings are NUL-terminated and live across the call.
    let ok = unsafe {
        MoveFileExW(
            from.as_ptr(),
            to.as_ptr(),
            MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The stop callback and whether the server has finished stopping.
struct StopState {
    callback: Box<dyn Fn() + Send + Sync>,
    stopped: Mutex<bool>,
    done: Condvar,
}

static STOP: OnceLock<StopState> = OnceLock::new();

/// Longest a close, log-off or shutdown event waits for the server (Windows allows 5 s).
const CLOSE_WAIT: Duration = Duration::from_millis(4500);

unsafe extern "system" fn on_console_event(event: u32) -> BOOL {
    let Some(state) = STOP.get() else { return 0 };
    (state.callback)();
    if event != CTRL_C_EVENT && event != CTRL_BREAK_EVENT {
        // Close, log-off, shutdown: Windows ends the process when this returns, so give
        // the server its grace period here.
        let stopped = crate::sync::lock(&state.stopped);
        let _ = state
            .done
            .wait_timeout_while(stopped, CLOSE_WAIT, |stopped| !*stopped);
    }
    1
}

/// Calls `callback` on Ctrl-C, Ctrl-Break, console close, log-off and shutdown.
pub fn on_stop_request(callback: impl Fn() + Send + Sync + 'static) -> io::Result<()> {
    let state = StopState {
        callback: Box::new(callback),
        stopped: Mutex::new(false),
        done: Condvar::new(),
    };
    if STOP.set(state).is_err() {
        return Err(io::Error::other("the stop handler is installed already"));
    }
    // SAFETY: registers a plain function that lives for the whole program.
    if unsafe { SetConsoleCtrlHandler(Some(on_console_event), 1) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Says the server has finished stopping, releasing a waiting close event.
pub fn stop_finished() {
    if let Some(state) = STOP.get() {
        *crate::sync::lock(&state.stopped) = true;
        state.done.notify_all();
    }
}

/// Warm FastCGI processes need a listening socket passed as stdin: not on Windows.
pub const WARM_PROCESSES: bool = false;

/// A connection to a warm process: none can exist on Windows (no value of this type).
pub enum LocalStream {}

impl io::Read for LocalStream {
    fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        match *self {}
    }
}

impl io::Write for LocalStream {
    fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
        match *self {}
    }
    fn flush(&mut self) -> io::Result<()> {
        match *self {}
    }
}

impl LocalStream {
    pub fn set_read_timeout(&self, _timeout: Option<Duration>) -> io::Result<()> {
        match *self {}
    }
    pub fn set_write_timeout(&self, _timeout: Option<Duration>) -> io::Result<()> {
        match *self {}
    }
    pub fn try_clone(&self) -> io::Result<LocalStream> {
        match *self {}
    }
}

/// A listening socket for a warm process: none can exist on Windows.
pub enum LocalListener {}

/// A started warm process: never on Windows.
pub struct WarmSpawned {
    pub process: Process,
    pub tree: ProcessTree,
    pub stderr: File,
}

/// Warm processes are Unix-only.
pub fn start_warm(
    _command: &Command,
    _program: Option<&File>,
    _sandbox: &Sandbox,
    listener: &LocalListener,
) -> io::Result<WarmSpawned> {
    match *listener {}
}

/// Warm processes are Unix-only: registration refuses `fcgi` before this is reached.
pub fn listen_local(_path: &Path) -> io::Result<LocalListener> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "warm FastCGI processes are Unix-only",
    ))
}

/// Warm processes are Unix-only.
pub fn connect_local(_path: &Path) -> io::Result<LocalStream> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "warm FastCGI processes are Unix-only",
    ))
}
