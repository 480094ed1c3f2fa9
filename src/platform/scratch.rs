//! Private scratch folders for run uids (Linux, as root). `/tmp`, `/var/tmp`, `/dev/shm`,
//! `/run/lock` and the like are writable by every user (see `spawn::private_dirs`), so a
//! run could leave files there for the next run of its uid (another function) to read, or
//! for ever; and what a run writes must be bounded in total, or one run fills the host's
//! disk. Each uid slot gets a mount namespace of its own, made once, with one tmpfs (the
//! run disk, of the run's `disk` size) over the uid's working directory, whose folders are
//! bound over each of those shared folders too; every run of that uid joins it (a `setns`,
//! far cheaper than making a namespace per run; the disk is resized when a run's size
//! differs from the last one's), and once a run and all its processes are gone the server
//! empties the folders through descriptors it keeps.

use super::spawn::{self, Disk, Scratch};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// One uid slot's namespace and its scratch folders, as seen from inside it.
struct Slot {
    namespace: OwnedFd,
    folders: Vec<OwnedFd>,
    /// Inodes the run disk uses when empty: its root and its folders.
    skeleton: u64,
    /// The disk's size now.
    size: Mutex<Option<u64>>,
}

fn slots() -> &'static Mutex<HashMap<u32, Arc<Slot>>> {
    static SLOTS: OnceLock<Mutex<HashMap<u32, Arc<Slot>>>> = OnceLock::new();
    SLOTS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// How a run of `disk.uid` joins its slot: the mount namespace (made on the uid's first
/// run, its descriptor open for the life of the server) and, when the run disk must change
/// size first, the new size. Call only for a run that holds the uid alone.
pub fn join(disk: &Disk) -> io::Result<Scratch<'static>> {
    let existing = slots()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&disk.uid)
        .cloned();
    let slot = match existing {
        Some(slot) => slot,
        None => {
            let made = Arc::new(make(disk)?);
            let mut slots = slots().lock().unwrap_or_else(PoisonError::into_inner);
            slots.entry(disk.uid).or_insert(made).clone()
        }
    };
    let size = *slot.size.lock().unwrap_or_else(PoisonError::into_inner);
    let resize = (size != disk.size).then_some(disk.size).flatten();
    Ok(Scratch::Join(slot.namespace.as_raw_fd(), resize))
}

/// Records that a run of `disk.uid` started on a disk of `disk.size`: the next run of
/// another size resizes it (one that failed to start may have left it as it was).
pub fn started(disk: &Disk) {
    let slot = slots()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&disk.uid)
        .cloned();
    if let Some(slot) = slot {
        *slot.size.lock().unwrap_or_else(PoisonError::into_inner) = disk.size;
    }
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
    // One call tells whether the whole disk is as made, where listing each folder takes
    // three.
    if slot
        .folders
        .first()
        .and_then(inodes_used)
        .is_some_and(|used| used <= slot.skeleton)
    {
        return Ok(());
    }
    for folder in &slot.folders {
        super::tree::empty_open_dir(folder)?;
    }
    Ok(())
}

/// Inodes in use on the file system of `folder`.
fn inodes_used(folder: &OwnedFd) -> Option<u64> {
    // SAFETY: an all-zero statfs is valid; fstatfs(2) fills it for a descriptor we own.
    let mut stats: libc::statfs = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::fstatfs(folder.as_raw_fd(), &mut stats) } == 0;
    ok.then(|| stats.f_files.saturating_sub(stats.f_ffree))
}

/// Makes a namespace with a fresh run disk: a short-lived holder process is started in it
/// (`cat`, waiting on a pipe), its namespace and folders are opened through `/proc`, then
/// it is let go.
fn make(disk: &Disk) -> io::Result<Slot> {
    let (read, write) = super::process::pipe()?;
    let mut command = Command::new("cat");
    command.env_clear().env("PATH", "/usr/bin:/bin");
    let null = super::process::null_output()?;
    let mut holder = spawn::spawn(
        &command,
        None,
        None,
        &super::Sandbox::default(),
        [&read, null, null],
        Vec::new(),
        Scratch::Make(disk),
    )?;
    drop(read);
    let root = PathBuf::from(format!("/proc/{}", holder.id()));
    let opened = (|| -> io::Result<Slot> {
        let namespace = File::open(root.join("ns/mnt"))?.into();
        let inside = |dir: &Path| root.join("root").join(dir.strip_prefix("/").unwrap_or(dir));
        let folders = std::iter::once(&disk.work_dir)
            .chain(spawn::private_dirs())
            .map(|dir| File::open(inside(dir)).map(OwnedFd::from))
            .collect::<io::Result<Vec<_>>>()?;
        let skeleton = folders.first().and_then(inodes_used).unwrap_or(0);
        Ok(Slot {
            namespace,
            folders,
            skeleton,
            size: Mutex::new(disk.size),
        })
    })();
    drop(write);
    let _ = holder.wait();
    opened
}
