//! Windows side of the platform API: job objects that kill the whole tree, console control
//! events, write-through renames.

use std::io;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::AsRawHandle;
use std::os::windows::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

use super::Sandbox;
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

/// Ownership is not tracked by uid on Windows.
pub fn owner_of(_path: &Path) -> Option<u32> {
    None
}

/// Builds run as the server's user on Windows.
pub fn others_can_traverse(_dir: &Path) -> bool {
    false
}

/// The plain command: runs have no users of their own on Windows.
pub fn command_for(executable: &Path, _user: Option<u32>) -> io::Result<(Command, Option<File>)> {
    Ok((Command::new(executable), None))
}

/// Runs have no users of their own on Windows: the job holds their processes.
pub fn kill_user(_uid: u32) -> usize {
    0
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

/// Prepares a command so that console events reach it and not the server; the limits are
/// set on its job by [`ProcessTree::attach`].
pub fn isolate(command: &mut Command, _sandbox: &Sandbox) -> io::Result<Confinement> {
    command.creation_flags(CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW);
    Ok(Confinement)
}

/// Nothing to hold on Windows: the job is made after the spawn.
pub struct Confinement;

/// Windows confines runs with job objects, not cgroups.
pub fn cgroups_available() -> bool {
    false
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
        // SAFETY: closing our own handle once; kill-on-close ends anything left.
        unsafe {
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

/// The data dir inherits the ACL of its parent on Windows.
pub fn make_private(_dir: &Path) -> io::Result<()> {
    Ok(())
}

fn wide(path: &Path) -> Vec<u16> {
    path.as_os_str().encode_wide().chain(Some(0)).collect()
}

/// Renames `from` over `to` (replacing it), returning only once the rename is on disk.
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
        let stopped = state.stopped.lock().unwrap_or_else(|e| e.into_inner());
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
        *state.stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
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

/// A job object ends its processes with the server already.
pub fn die_with_server(_command: &mut Command) {}

/// Warm processes are Unix-only: registration refuses `fcgi` before this is reached.
pub fn listen_local(_path: &Path) -> io::Result<std::process::Stdio> {
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
