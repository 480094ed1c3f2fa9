//! Removal of a function's files that may be busy: Windows refuses to delete an executable
//! that is running, but lets it be renamed. A file that cannot be removed is moved into
//! `cache/trash/` and removed by a later sweep (after a run ends, and at start).

use crate::platform;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

pub struct Trash {
    dir: PathBuf,
    /// Something waits in the trash.
    pending: AtomicBool,
}

impl Trash {
    pub fn new(dir: PathBuf) -> Trash {
        Trash {
            dir,
            pending: AtomicBool::new(true),
        }
    }

    /// Removes a file or a folder, or moves it to the trash when it is busy.
    pub fn discard(&self, path: &Path) {
        match platform::remove_tree(path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let target = self.dir.join(format!("{}-{name}", crate::ids::new_id()));
                let moved =
                    std::fs::create_dir_all(&self.dir).and_then(|_| std::fs::rename(path, &target));
                match moved {
                    Ok(()) => {
                        log::info!(
                            "{} is busy ({err}); it will be removed later",
                            path.display()
                        );
                        self.pending.store(true, Ordering::SeqCst);
                    }
                    Err(move_err) => log::warn!(
                        "cannot remove {} ({err}) nor set it aside ({move_err})",
                        path.display()
                    ),
                }
            }
        }
    }

    /// Removes what the trash holds, if anything; what is still busy stays for next time.
    pub fn sweep(&self) {
        if !self.pending.swap(false, Ordering::SeqCst) {
            return;
        }
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if platform::remove_tree(&path).is_err() {
                self.pending.store(true, Ordering::SeqCst);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{platform, Trash};

    #[test]
    fn discards_files_and_folders() {
        let root = std::env::temp_dir().join(format!("golambda-trash-{}", crate::ids::new_id()));
        let folder = root.join("plugins/f");
        std::fs::create_dir_all(&folder).expect("mkdir");
        std::fs::write(folder.join("v1"), b"x").expect("write");
        std::fs::write(root.join("lone"), b"x").expect("write");
        let trash = Trash::new(root.join("cache/trash"));
        trash.discard(&folder);
        trash.discard(&root.join("lone"));
        trash.discard(&root.join("never-existed"));
        assert!(!folder.exists());
        assert!(!root.join("lone").exists());
        trash.sweep();
        let _ = platform::remove_tree(&root);
    }
}
