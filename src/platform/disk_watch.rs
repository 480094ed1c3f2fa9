//! The bound on what a run may write in total, on Windows: no file system quota fits a
//! run, so a watcher thread measures the run's working directory (where its `TEMP` and
//! `TMP` point too) every [`EVERY`] and ends the run's job once it holds more than the
//! bound. The bound is thus checked, not enforced by the file system: a run may pass it by
//! what it writes in one interval before it is stopped. The thread ends with the job.

use std::path::{Path, PathBuf};
use std::time::Duration;
use windows_sys::Win32::Foundation::{CloseHandle, DuplicateHandle, DUPLICATE_SAME_ACCESS, HANDLE};
use windows_sys::Win32::System::JobObjects::{
    JobObjectBasicAccountingInformation, QueryInformationJobObject, TerminateJobObject,
    JOBOBJECT_BASIC_ACCOUNTING_INFORMATION,
};
use windows_sys::Win32::System::Threading::GetCurrentProcess;

/// How often the working directory is measured.
const EVERY: Duration = Duration::from_millis(100);

/// The exit code of every process of a run stopped for writing too much.
pub const STOPPED: u32 = 0xD15C;

/// A job handle of the watcher's own, so the job lives as long as the watcher needs it.
struct Job(HANDLE);

// SAFETY: a job handle may be used from any thread.
unsafe impl Send for Job {}

impl Drop for Job {
    fn drop(&mut self) {
        // SAFETY: our own duplicate, closed once.
        unsafe { CloseHandle(self.0) };
    }
}

/// Starts watching `dir` for the run in `job`, bounded to `limit` bytes.
pub fn watch(job: HANDLE, dir: &Path, limit: u64) -> std::io::Result<()> {
    let mut own: HANDLE = std::ptr::null_mut();
    // SAFETY: duplicates a valid job handle into this process.
    let ok = unsafe {
        let me = GetCurrentProcess();
        DuplicateHandle(me, job, me, &mut own, 0, 0, DUPLICATE_SAME_ACCESS)
    };
    if ok == 0 {
        return Err(std::io::Error::last_os_error());
    }
    let job = Job(own);
    let dir = dir.to_path_buf();
    std::thread::Builder::new()
        .name("disk-watch".into())
        .spawn(move || {
            while active_processes(&job) > 0 {
                std::thread::sleep(EVERY);
                if tree_size(&dir) > limit {
                    log::warn!(
                        "stopping the run in {}: it wrote more than its disk bound of {limit} bytes",
                        dir.display()
                    );
                    // SAFETY: our own valid job handle.
                    unsafe { TerminateJobObject(job.0, STOPPED) };
                    return;
                }
            }
        })?;
    Ok(())
}

fn active_processes(job: &Job) -> u32 {
    // SAFETY: an all-zero accounting record is valid; the call fills at most its size.
    unsafe {
        let mut info: JOBOBJECT_BASIC_ACCOUNTING_INFORMATION = std::mem::zeroed();
        let ok = QueryInformationJobObject(
            job.0,
            JobObjectBasicAccountingInformation,
            (&mut info as *mut JOBOBJECT_BASIC_ACCOUNTING_INFORMATION).cast(),
            std::mem::size_of::<JOBOBJECT_BASIC_ACCOUNTING_INFORMATION>() as u32,
            std::ptr::null_mut(),
        );
        if ok == 0 {
            0
        } else {
            info.ActiveProcesses
        }
    }
}

/// Bytes of the files under `dir`, never following a link; folders kept to visit are a
/// list, not a recursion.
fn tree_size(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut folders: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                folders.push(entry.path());
            } else {
                total = total.saturating_add(meta.len());
            }
        }
    }
    total
}
