//! A temp dir named after the running test, removed on drop unless the test is failing
//! (then it is kept for a post-mortem and its path is printed). It lives where the runs of
//! a server can reach it: as root, runs get a private `/tmp`, so the dirs go under `/run`
//! (as the server's own working directories do); otherwise under `std::env::temp_dir()`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new() -> TempDir {
        let test = std::thread::current()
            .name()
            .unwrap_or("test")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect::<String>();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path = golambda::platform::work_base().join(format!(
            "golambda-test-{}-{}-{nanos}-{test}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating temp dir {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept temp dir of the failed test: {}", self.path.display());
        } else {
            // A process the server started and that outlived it (a compiler after a kill -9)
            // may still be writing here for a moment: retry briefly.
            for _ in 0..20 {
                if std::fs::remove_dir_all(&self.path).is_ok() || !self.path.exists() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            eprintln!("could not remove temp dir {}", self.path.display());
        }
    }
}
