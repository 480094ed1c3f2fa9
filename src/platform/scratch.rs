//! Private scratch folders for run uids (Linux, as root). `/tmp`, `/var/tmp`, `/dev/shm`,
//! `/run/lock` and the like are writable by every user (see `spawn::private_dirs`), so a
//! run could leave files there for the next run of its uid (another function) to read, or
//! for ever. Each uid slot gets a mount namespace of its own, made once, where those
//! folders are fresh tmpfs mounts; every run of that uid joins it (a `setns`, far cheaper
//! than making a namespace per run), and once a run and all its processes are gone the
//! server empties the folders through descriptors it keeps.

use super::spawn::{self, Scratch};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// One uid slot's namespace and its scratch folders, as seen from inside it.
struct Slot {
    namespace: OwnedFd,
    folders: Vec<OwnedFd>,
}

fn slots() -> &'static Mutex<HashMap<u32, Arc<Slot>>> {
    static SLOTS: OnceLock<Mutex<HashMap<u32, Arc<Slot>>>> = OnceLock::new();
    SLOTS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The mount namespace runs of `uid` join, made on the uid's first run. The descriptor
/// stays open for the life of the server.
pub fn namespace_for(uid: u32) -> io::Result<RawFd> {
    let existing = slots()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&uid)
        .map(|slot| slot.namespace.as_raw_fd());
    if let Some(fd) = existing {
        return Ok(fd);
    }
    let made = Arc::new(make()?);
    let mut slots = slots().lock().unwrap_or_else(PoisonError::into_inner);
    Ok(slots.entry(uid).or_insert(made).namespace.as_raw_fd())
}

/// Empties the scratch folders of `uid`'s namespace, if it has one. Call once no process
/// of the uid is left.
pub fn empty(uid: u32) -> io::Result<()> {
    let slot = slots()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&uid)
        .cloned();
    let Some(slot) = slot else { return Ok(()) };
    for folder in &slot.folders {
        if holds_nothing(folder) {
            continue;
        }
        super::tree::empty_open_dir(folder)?;
    }
    Ok(())
}

/// Whether a scratch tmpfs holds no file: its only inode in use is its root. One call, where
/// listing the folder takes three.
fn holds_nothing(folder: &OwnedFd) -> bool {
    // SAFETY: an all-zero statfs is valid; fstatfs(2) fills it for a descriptor we own.
    let mut stats: libc::statfs = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::fstatfs(folder.as_raw_fd(), &mut stats) } == 0;
    ok && stats.f_files.saturating_sub(stats.f_ffree) <= 1
}

/// Makes a namespace with fresh scratch folders: a short-lived holder process is started
/// in it (`cat`, waiting on a pipe), its namespace and folders are opened through `/proc`,
/// then it is let go.
fn make() -> io::Result<Slot> {
    let (read, write) = super::process::pipe()?;
    let mut command = Command::new("cat");
    command.env_clear().env("PATH", "/usr/bin:/bin");
    let null = super::process::null_output()?;
    let mut holder = spawn::spawn(
        &command,
        &super::Sandbox::default(),
        [&read, null, null],
        Vec::new(),
        Scratch::Make,
    )?;
    drop(read);
    let root = PathBuf::from(format!("/proc/{}", holder.id()));
    let opened = (|| -> io::Result<Slot> {
        let namespace = File::open(root.join("ns/mnt"))?.into();
        let folders = spawn::private_dirs()
            .iter()
            .map(|dir| {
                File::open(root.join("root").join(dir.strip_prefix("/").unwrap_or(dir)))
                    .map(OwnedFd::from)
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Slot { namespace, folders })
    })();
    drop(write);
    let _ = holder.wait();
    opened
}
