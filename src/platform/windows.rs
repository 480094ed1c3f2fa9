//! Windows side of the platform API: job objects that kill the whole tree, console events.

use std::io;
use std::os::windows::io::AsRawHandle;
use std::os::windows::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JobObjectExtendedLimitInformation,
    SetInformationJobObject, TerminateJobObject, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
    JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
};
use windows_sys::Win32::System::Threading::{CREATE_NEW_PROCESS_GROUP, CREATE_NO_WINDOW};

/// Suffix of executables the Go toolchain writes.
pub const EXE_SUFFIX: &str = ".exe";

/// `PATH` given to functions.
pub const FUNCTION_PATH: &str = "C:\\Windows\\System32;C:\\Windows";

/// The variables that name a child's temporary directory (Windows programs read TMP/TEMP).
pub const TEMP_VARS: &[&str] = &["TMPDIR", "TMP", "TEMP"];

/// Variables Windows programs (the Go toolchain among them) cannot start without.
pub fn system_env() -> Vec<(String, String)> {
    [
        "SystemRoot",
        "SystemDrive",
        "windir",
        "ComSpec",
        "PATHEXT",
        "NUMBER_OF_PROCESSORS",
    ]
    .iter()
    .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
    .collect()
}

/// Prepares a command so that console events reach it and not the server.
pub fn isolate(command: &mut Command) {
    command.creation_flags(CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW);
}

/// The kill target for a child and everything it started: a job object that also kills
/// the tree when the server lets go of it.
#[derive(Debug)]
pub struct ProcessTree {
    job: HANDLE,
}

// SAFETY: a job handle may be used from any thread.
unsafe impl Send for ProcessTree {}
// SAFETY: the job API is thread-safe; the handle is only closed in Drop.
unsafe impl Sync for ProcessTree {}

impl ProcessTree {
    /// Creates a kill-on-close job and puts the child in it.
    pub fn attach(child: &Child) -> io::Result<ProcessTree> {
        // SAFETY: plain Win32 calls on handles owned here or by `child`.
        unsafe {
            let job = CreateJobObjectW(std::ptr::null(), std::ptr::null());
            if job.is_null() {
                return Err(io::Error::last_os_error());
            }
            let tree = ProcessTree { job };
            let mut info: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = std::mem::zeroed();
            info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
            let ok = SetInformationJobObject(
                job,
                JobObjectExtendedLimitInformation,
                &info as *const _ as *const _,
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

/// Windows makes renames durable itself; directories cannot be opened for syncing.
pub fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// The data dir inherits the ACL of its parent on Windows.
pub fn make_private(_dir: &Path) -> io::Result<()> {
    Ok(())
}
