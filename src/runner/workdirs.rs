//! Working directories of runs. Making and removing a directory per run cost more than
//! anything else the server did for a run (an inode allocated and freed on disk, under the
//! parent directory's lock), so directories are kept in a pool: a run takes one, and when
//! the run and everything it started are gone it is emptied, made private again and put
//! back. Each run still starts in an empty directory of its own that no other run can see.
//! A run with a uid of its own always works in that uid's directory (`u<uid>`): in the
//! uid's mount namespace the run disk is mounted there (see `platform::scratch`), which is
//! emptied when the uid goes back to its pool, so such a directory is never emptied here,
//! and never removed while the server runs (removing it would unmount the disk).

use crate::platform;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// The pool, under one root folder.
pub struct WorkDirs {
    root: PathBuf,
    free: Mutex<Vec<PathBuf>>,
    made: Mutex<u64>,
}

/// A directory lent to one run; it goes back to the pool (emptied) when dropped.
pub struct WorkDir<'a> {
    pool: &'a WorkDirs,
    path: Option<PathBuf>,
    /// The directory of the run's own uid: not the pool's to empty.
    of_user: bool,
}

impl WorkDirs {
    /// A pool under `root`, made traversable but not listable by others, so each run
    /// reaches its own directory only. A pool an earlier server left on this data dir is
    /// moved aside and removed in the background: whatever its runs left there, however
    /// deep or large, never delays the start.
    pub fn new(root: PathBuf) -> io::Result<WorkDirs> {
        if root.exists() {
            std::fs::rename(&root, aside(&root, &crate::ids::new_id()))?;
        }
        remove_aside_in_background(&root);
        std::fs::create_dir_all(&root)?;
        platform::make_traversable(&root)?;
        Ok(WorkDirs {
            root,
            free: Mutex::new(Vec::new()),
            made: Mutex::new(0),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The working directory of every run of `uid` (see the module's text).
    pub fn of_user(&self, uid: u32) -> io::Result<PathBuf> {
        let path = self.root.join(format!("u{uid}"));
        match std::fs::create_dir(&path) {
            Ok(()) => {
                platform::make_private(&path)?;
                platform::give_to_user(&path, uid)?;
            }
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(err),
        }
        Ok(path)
    }

    /// An empty private directory for one run: the directory of `user` when there is one,
    /// else one of the pool's.
    pub fn take(&self, user: Option<u32>) -> io::Result<WorkDir<'_>> {
        if let Some(uid) = user {
            return Ok(WorkDir {
                pool: self,
                path: Some(self.of_user(uid)?),
                of_user: true,
            });
        }
        let reused = self
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let path = match reused {
            Some(path) => path,
            None => {
                let number = {
                    let mut made = self.made.lock().unwrap_or_else(PoisonError::into_inner);
                    *made += 1;
                    *made
                };
                let path = self.root.join(format!("run-{number}"));
                std::fs::create_dir(&path)?;
                path
            }
        };
        let lent = WorkDir {
            pool: self,
            path: Some(path.clone()),
            of_user: false,
        };
        platform::make_private(&path)?;
        Ok(lent)
    }

    /// Empties a returned directory; one that cannot be emptied is dropped from the pool.
    fn give_back(&self, path: PathBuf) {
        // Taken back first, as the server's: a run left as the server's user may have
        // changed its mode.
        match platform::reclaim(&path).and_then(|()| platform::empty_dir(&path)) {
            Ok(()) => self
                .free
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(path),
            Err(err) => {
                log::warn!(
                    "could not empty working directory {}: {err}",
                    path.display()
                );
                if let Err(err) = platform::remove_tree(&path) {
                    log::warn!("could not remove {}: {err}", path.display());
                }
            }
        }
    }
}

impl Drop for WorkDirs {
    fn drop(&mut self) {
        let _ = platform::remove_tree(&self.root);
    }
}

/// Where an old pool at `root` is moved to be removed.
fn aside(root: &Path, id: &str) -> PathBuf {
    let mut name = root.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".old-{id}"));
    root.with_file_name(name)
}

/// Removes, on a thread of its own, every old pool of `root` moved aside (by this start or
/// by one that stopped before it finished).
fn remove_aside_in_background(root: &Path) {
    let Some(parent) = root.parent() else { return };
    let prefix = aside(root, "")
        .file_name()
        .unwrap_or_default()
        .to_os_string();
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let old: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .as_encoded_bytes()
                .starts_with(prefix.as_encoded_bytes())
        })
        .map(|e| e.path())
        .collect();
    if old.is_empty() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("old-work-dirs".into())
        .spawn(move || {
            for path in old {
                if let Err(err) = platform::remove_tree(&path) {
                    log::warn!("could not remove {}: {err}", path.display());
                }
            }
        });
    if let Err(err) = spawned {
        log::warn!("cannot start a thread to remove old working directories: {err}");
    }
}

impl WorkDir<'_> {
    pub fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or_else(|| Path::new("."))
    }
}

impl Drop for WorkDir<'_> {
    fn drop(&mut self) {
        if let Some(path) = self.path.take().filter(|_| !self.of_user) {
            self.pool.give_back(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_comes_back_empty_and_is_reused() {
        let root = std::env::temp_dir().join(format!("golambda-workdirs-{}", crate::ids::new_id()));
        let pool = WorkDirs::new(root.clone()).unwrap();
        let first = pool.take(None).unwrap();
        let path = first.path().to_path_buf();
        std::fs::create_dir_all(path.join("a/b")).unwrap();
        std::fs::write(path.join("a/b/file"), b"x").unwrap();
        std::fs::write(path.join("top"), b"y").unwrap();
        drop(first);
        let second = pool.take(None).unwrap();
        assert_eq!(second.path(), path);
        assert_eq!(std::fs::read_dir(second.path()).unwrap().count(), 0);
        // Taken while the first is out: a directory of its own.
        let third = pool.take(None).unwrap();
        assert_ne!(third.path(), second.path());
        drop((second, third));
        drop(pool);
        assert!(!root.exists());
    }

    #[test]
    fn an_old_pool_is_moved_aside_and_removed_in_the_background() {
        let root = std::env::temp_dir().join(format!("golambda-workdirs-{}", crate::ids::new_id()));
        std::fs::create_dir_all(root.join("run-1/a/b")).unwrap();
        std::fs::write(root.join("run-1/a/b/f"), b"x").unwrap();
        let pool = WorkDirs::new(root.clone()).unwrap();
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
        let prefix = aside(&root, "")
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let parent = root.parent().unwrap().to_path_buf();
        let leftovers = || {
            std::fs::read_dir(&parent)
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .count()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while leftovers() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(leftovers(), 0);
        drop(pool);
    }
}
