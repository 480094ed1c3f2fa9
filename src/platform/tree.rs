//! Removing a folder tree that a run made, in bounded stack, descriptors and time. A run can
//! nest folders tens of thousands deep; removing that recursively (as `remove_dir_all`
//! does) takes a stack frame and a descriptor per level, which overflowed a worker's stack
//! and exhausted the open-file limit. Here the tree is flattened instead: every folder
//! found inside a child of the top folder is moved up into the top folder, so the walk is
//! never more than two levels deep, holds at most four descriptors, and touches each entry
//! a bounded number of times. Never follows a symlink: a link is removed, never its target.
//! On Unix everything goes through descriptors of the top folder and of one child, so a
//! process still running under the tree cannot redirect the walk out of it.

use std::io;
use std::path::Path;

/// Removes everything inside `dir`, leaving it empty.
pub fn empty_dir(dir: &Path) -> io::Result<()> {
    imp::empty_dir(dir)
}

/// Removes `path` and everything under it; a missing path is not an error.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
        Ok(meta) if !meta.is_dir() => return std::fs::remove_file(path),
        Ok(_) => {}
    }
    imp::empty_dir(path)?;
    std::fs::remove_dir(path)
}

/// A name for a folder moved up into the top folder; `n` counts up within one emptying.
fn moved_name(n: u64) -> String {
    format!(".golambda-flat-{n}")
}

/// Names tried for one move before giving up: more than a run can have made (its inodes
/// are bounded), so only a broken file system exhausts them.
const MOST_TAKEN_NAMES: usize = 10_000_000;

#[cfg(unix)]
pub use imp::empty_open_dir;

#[cfg(unix)]
mod imp {
    use nix::dir::{Dir, OwningIter, Type};
    use nix::errno::Errno;
    use nix::fcntl::{openat, renameat, OFlag};
    use nix::sys::stat::{fstatat, Mode, SFlag};
    use nix::unistd::{lseek, unlinkat, UnlinkatFlags, Whence};
    use nix::NixPath;
    use std::ffi::{CStr, CString};
    use std::io;
    use std::os::fd::{AsFd, OwnedFd};
    use std::path::Path;

    /// A folder open twice: one descriptor to read its entries, one to act on them.
    struct Folder {
        fd: OwnedFd,
        entries: OwningIter,
    }

    impl Folder {
        /// Opens folder `name` of `parent`, failing on a symlink.
        fn open_at(parent: impl AsFd, name: &(impl NixPath + ?Sized)) -> io::Result<Folder> {
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            Folder::of(openat(parent, name, flags, Mode::empty())?)
        }

        fn of(fd: OwnedFd) -> io::Result<Folder> {
            let entries = list_from_start(&fd)?;
            Ok(Folder { fd, entries })
        }

        /// Lists the folder again from its first entry.
        fn rewind(&mut self) -> io::Result<()> {
            self.entries = list_from_start(&self.fd)?;
            Ok(())
        }

        /// The next entry other than `.` and `..`, with whether it is a folder (never
        /// following a symlink).
        fn next(&mut self) -> io::Result<Option<(CString, bool)>> {
            for entry in self.entries.by_ref() {
                let entry = entry?;
                let name = entry.file_name();
                if matches!(name.to_bytes(), b"." | b"..") {
                    continue;
                }
                let is_dir = match entry.file_type() {
                    Some(kind) => kind == Type::Directory,
                    None => is_folder(&self.fd, name)?,
                };
                return Ok(Some((name.to_owned(), is_dir)));
            }
            Ok(None)
        }
    }

    /// A listing of `fd`'s folder through a duplicate descriptor, which shares its offset:
    /// set back to the start first, since an earlier listing may have left it at the end.
    fn list_from_start(fd: &OwnedFd) -> io::Result<OwningIter> {
        let listing = fd.try_clone()?;
        lseek(&listing, 0, Whence::SeekSet)?;
        Ok(Dir::from_fd(listing)?.into_iter())
    }

    fn is_folder(dir: &OwnedFd, name: &CStr) -> io::Result<bool> {
        let stat = fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)?;
        Ok(SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
    }

    /// The top folder is the server's own, found by a path it chose: followed if a link.
    pub fn empty_dir(dir: &Path) -> io::Result<()> {
        empty(Folder::of(std::fs::File::open(dir)?.into())?)
    }

    /// Empties the folder open as `dir`.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub fn empty_open_dir(dir: &OwnedFd) -> io::Result<()> {
        empty(Folder::of(dir.try_clone()?)?)
    }

    fn empty(mut top: Folder) -> io::Result<()> {
        let mut moved = 0u64;
        // Passes until a pass finds the folder empty: folders moved up during a pass may
        // or may not be listed by that pass.
        loop {
            let mut found = false;
            while let Some((name, is_dir)) = top.next()? {
                found = true;
                if !is_dir {
                    unlinkat(&top.fd, name.as_c_str(), UnlinkatFlags::NoRemoveDir)?;
                    continue;
                }
                let mut child = Folder::open_at(&top.fd, name.as_c_str())?;
                while let Some((inner, inner_is_dir)) = child.next()? {
                    if inner_is_dir {
                        move_up(&child.fd, &inner, &top.fd, &mut moved)?;
                    } else {
                        unlinkat(&child.fd, inner.as_c_str(), UnlinkatFlags::NoRemoveDir)?;
                    }
                }
                drop(child);
                match unlinkat(&top.fd, name.as_c_str(), UnlinkatFlags::RemoveDir) {
                    // Something was added meanwhile: a later pass takes it.
                    Ok(()) | Err(Errno::ENOTEMPTY) => {}
                    Err(err) => return Err(err.into()),
                }
            }
            if !found {
                return Ok(());
            }
            top.rewind()?;
        }
    }

    /// Moves folder `name` of `from` into `top` under a fresh name.
    fn move_up(from: &OwnedFd, name: &CStr, top: &OwnedFd, moved: &mut u64) -> io::Result<()> {
        for _ in 0..super::MOST_TAKEN_NAMES {
            *moved += 1;
            let target = super::moved_name(*moved);
            match renameat(from, name, top, target.as_str()) {
                Ok(()) => return Ok(()),
                // That name is taken (a run may have made it, as a folder with entries, a
                // file or a link): take the next one.
                Err(Errno::ENOTEMPTY | Errno::EEXIST | Errno::ENOTDIR | Errno::EISDIR) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Err(io::Error::other("no free name to move a folder up to"))
    }
}

#[cfg(windows)]
mod imp {
    use std::io;
    use std::path::Path;

    /// On Windows every process of a run ends with its job before its folders are
    /// cleaned, so the walk can go by path; paths stay short since it never goes deeper
    /// than a child of a child of the top folder.
    pub fn empty_dir(dir: &Path) -> io::Result<()> {
        let mut moved = 0u64;
        loop {
            let mut found = false;
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                found = true;
                if !entry.file_type()?.is_dir() {
                    remove_entry(&entry.path())?;
                    continue;
                }
                for inner in std::fs::read_dir(entry.path())? {
                    let inner = inner?;
                    if inner.file_type()?.is_dir() {
                        move_up(&inner.path(), dir, &mut moved)?;
                    } else {
                        remove_entry(&inner.path())?;
                    }
                }
                std::fs::remove_dir(entry.path())?;
            }
            if !found {
                return Ok(());
            }
        }
    }

    /// Removes a file, or a symlink or junction to a folder (never what it points at); a
    /// read-only file is made writable first.
    fn remove_entry(path: &Path) -> io::Result<()> {
        let first = match std::fs::remove_file(path) {
            Ok(()) => return Ok(()),
            Err(err) => err,
        };
        if std::fs::remove_dir(path).is_ok() {
            return Ok(());
        }
        let meta = std::fs::symlink_metadata(path)?;
        let mut permissions = meta.permissions();
        if !permissions.readonly() {
            return Err(first);
        }
        #[allow(clippy::permissions_set_readonly_false)]
        permissions.set_readonly(false);
        std::fs::set_permissions(path, permissions)?;
        std::fs::remove_file(path)
    }

    fn move_up(path: &Path, top: &Path, moved: &mut u64) -> io::Result<()> {
        for _ in 0..super::MOST_TAKEN_NAMES {
            *moved += 1;
            let target = top.join(super::moved_name(*moved));
            // Taken by anything, a dangling link included: the next one.
            if std::fs::symlink_metadata(&target).is_ok() {
                continue;
            }
            return std::fs::rename(path, target);
        }
        Err(io::Error::other("no free name to move a folder up to"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(label: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("golambda-tree-{label}-{}", crate::ids::new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Deeper than any path may be long, made by stepping into each new folder.
    #[cfg(unix)]
    fn nest(root: &Path, depth: usize) {
        let mut here = std::fs::File::open(root).unwrap();
        for _ in 0..depth {
            here = open_child(&here);
        }
    }

    #[cfg(unix)]
    fn open_child(parent: &std::fs::File) -> std::fs::File {
        use nix::fcntl::{openat, OFlag};
        use nix::sys::stat::{mkdirat, Mode};
        mkdirat(parent, "d", Mode::from_bits_truncate(0o755)).unwrap();
        openat(
            parent,
            "d",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .unwrap()
        .into()
    }

    #[cfg(unix)]
    #[test]
    fn a_tree_deeper_than_a_path_goes_in_bounded_stack_and_descriptors() {
        let root = scratch("deep");
        nest(&root, 20_000);
        std::fs::write(root.join("file"), b"x").unwrap();
        // A small stack: recursing per level would overflow it.
        let target = root.clone();
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || remove_tree(&target))
            .unwrap()
            .join()
            .unwrap()
            .unwrap();
        assert!(!root.exists());
    }

    #[test]
    fn names_a_run_took_beforehand_do_not_stop_the_flattening() {
        let root = scratch("taken");
        for n in 1..=50 {
            std::fs::write(root.join(moved_name(n)), b"file").unwrap();
        }
        #[cfg(unix)]
        for n in 51..=60 {
            std::os::unix::fs::symlink("/nowhere", root.join(moved_name(n))).unwrap();
        }
        std::fs::create_dir_all(root.join("a1/b/c")).unwrap();
        std::fs::create_dir_all(root.join("a2/b/c")).unwrap();
        empty_dir(&root).unwrap();
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
        remove_tree(&root).unwrap();
    }

    #[test]
    fn emptying_keeps_the_folder_and_never_follows_a_link() {
        let root = scratch("links");
        let outside = scratch("outside");
        std::fs::write(outside.join("keep"), b"k").unwrap();
        std::fs::create_dir_all(root.join("a/b/c")).unwrap();
        std::fs::write(root.join("a/b/c/f"), b"x").unwrap();
        std::fs::write(root.join("a/g"), b"y").unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&outside, root.join("a/link")).unwrap();
            std::os::unix::fs::symlink(&outside, root.join("top-link")).unwrap();
        }
        empty_dir(&root).unwrap();
        assert!(root.is_dir());
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
        assert!(outside.join("keep").is_file());
        remove_tree(&root).unwrap();
        remove_tree(&outside).unwrap();
        assert!(!root.exists() && !outside.exists());
        // Gone already: fine.
        remove_tree(&root).unwrap();
    }
}
