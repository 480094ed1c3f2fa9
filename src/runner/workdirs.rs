//! Working directories of runs. Making and removing a directory per run cost more than
//! anything else the server did for a run (an inode allocated and freed on disk, under the
//! parent directory's lock), so directories are kept in a pool: a run takes one, and when
//! the run and everything it started are gone it is emptied, made private again and put
//! back. Each run still starts in an empty directory of its own that no other run can see.

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
}

impl WorkDirs {
    /// A pool under `root`, which is emptied first (left by an earlier server on this
    /// data dir) and made traversable but not listable by others, so each run reaches its
    /// own directory only.
    pub fn new(root: PathBuf) -> io::Result<WorkDirs> {
        if root.exists() {
            std::fs::remove_dir_all(&root)?;
        }
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

    /// An empty private directory for one run, given to `user` when there is one.
    pub fn take(&self, user: Option<u32>) -> io::Result<WorkDir<'_>> {
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
        };
        platform::make_private(&path)?;
        if let Some(uid) = user {
            platform::give_to_user(&path, uid)?;
        }
        Ok(lent)
    }

    /// Empties a returned directory; one that cannot be emptied is dropped from the pool.
    fn give_back(&self, path: PathBuf) {
        // Taken back from the run's user first: a process of that user still running could
        // otherwise fill it again after it was emptied.
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
                if let Err(err) = std::fs::remove_dir_all(&path) {
                    log::warn!("could not remove {}: {err}", path.display());
                }
            }
        }
    }
}

impl Drop for WorkDirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl WorkDir<'_> {
    pub fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or_else(|| Path::new("."))
    }
}

impl Drop for WorkDir<'_> {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
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
}
