//! Content-addressed builds: each build is kept once in `cache/builds/<key>`, where the key
//! is the SHA-256 of what decides the build's output (the runtime's identity, see
//! [`Runtime::identity`], and the code). A version's `plugins/<name>/v<N>` is a hard link to
//! its build (a copy where the file system cannot link), or for an interpreted runtime a
//! folder of hard links to its build's tree, so registering identical code again, under any
//! name, builds nothing, and removing one version's files never takes another's away. Owns
//! `cache/builds/`; knows nothing of the registry.

use crate::metrics::Metrics;
use crate::platform;
use crate::runtimes::{tree, Artifact, Code, CompileError, Runtime};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Names the format of the key; change it when what goes into a key changes.
const KEY_FORMAT: &str = "golambda-build-1";

/// The build store.
pub struct Builds {
    dir: PathBuf,
    /// A user that must not own the store (the build user): a folder it owns could hold
    /// executables it put there.
    untrusted_owner: Option<u32>,
    /// Keys being built now: a second request for the same source waits for the first.
    building: Mutex<HashSet<String>>,
    built: Condvar,
}

/// What [`Builds::install`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// Size of the installed executable.
    pub size: u64,
    /// Whether a build ran (otherwise an existing build was reused).
    pub compiled: bool,
    /// What the build printed; for a reused build, a line that says so.
    pub output: String,
    /// For a tree: the file a run starts, relative to the tree.
    pub entry: Option<String>,
}

/// The store key of `code` built by the toolchain `identity`: hex SHA-256. A package's
/// key comes from its content digest and its entry folder.
pub fn key(identity: &str, code: Code<'_>) -> String {
    let mut hasher = Sha256::new();
    for part in [KEY_FORMAT.as_bytes(), identity.as_bytes()] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    match code {
        Code::Source(source) => hasher.update(source),
        Code::Package { digest, main, .. } => {
            hasher.update(b"\0package\0");
            hasher.update(digest.as_bytes());
            hasher.update(b"\0");
            hasher.update(main.unwrap_or(".").as_bytes());
        }
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Builds {
    pub fn new(dir: PathBuf, untrusted_owner: Option<u32>) -> Builds {
        Builds {
            dir,
            untrusted_owner,
            building: Mutex::new(HashSet::new()),
            built: Condvar::new(),
        }
    }

    /// Makes `target` the executable of `source`: a link to the stored build, which is
    /// compiled first if the store has none (or, when `expected_size` is given, none of that
    /// size: a damaged build is replaced). Concurrent requests for one source compile once.
    pub fn install(
        &self,
        runtime: &dyn Runtime,
        metrics: &Metrics,
        code: Code<'_>,
        target: &Path,
        expected_size: Option<u64>,
    ) -> Result<Installed, CompileError> {
        let key = key(&runtime.identity()?, code);
        if self.untrusted_owner.is_some() && platform::owner_of(&self.dir) == self.untrusted_owner {
            return Err(CompileError::Io(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} belongs to the build user; restart the server to renew it",
                    self.dir.display()
                ),
            )));
        }
        let is_tree = runtime.kind().artifact() == Artifact::Tree;
        let entry = match is_tree {
            true => self.dir.join(&key),
            false => self.dir.join(format!("{key}{}", platform::EXE_SUFFIX)),
        };
        let _claim = self.claim(&key);
        let usable = match is_tree {
            true => tree::entry_of(&entry).is_some(),
            false => std::fs::metadata(&entry)
                .is_ok_and(|m| m.is_file() && expected_size.is_none_or(|size| m.len() == size)),
        };
        let output = if usable {
            format!("no build: the same code was built before (build {key})")
        } else {
            let started = Instant::now();
            let compiled = runtime.build(code, &entry);
            metrics.compiled(compiled.is_ok(), started.elapsed());
            compiled?
        };
        if let Some(dir) = target.parent() {
            platform::create_dir_durably(dir).map_err(CompileError::Io)?;
            // A run reaches its own tree through a descriptor; through `..` it must not
            // reach its function's other versions.
            platform::make_private(dir).map_err(CompileError::Io)?;
        }
        if is_tree {
            tree::link(&entry, target).map_err(CompileError::Io)?;
            let started = tree::entry_of(target).ok_or_else(|| {
                CompileError::Io(io::Error::other(format!(
                    "the tree {} has no entry point",
                    target.display()
                )))
            })?;
            return Ok(Installed {
                size: 0,
                compiled: !usable,
                output,
                entry: Some(started),
            });
        }
        platform::link_or_copy(&entry, target).map_err(CompileError::Io)?;
        let size = std::fs::metadata(target).map_err(CompileError::Io)?.len();
        Ok(Installed {
            size,
            compiled: !usable,
            output,
            entry: None,
        })
    }

    /// Removes builds no version links to any more (their only name is the store's). Runs at
    /// start, before any registration: a build is linked while its key is claimed, and a
    /// claim never outlives a request. Where link counts are unknown, everything stays.
    pub fn sweep(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                // A tree half made when the server stopped.
                let _ = platform::remove_tree(&path);
                continue;
            }
            // A tree is in use while a version's tree links its stamp.
            let unused = match path.is_dir() {
                true => platform::link_count(&path.join(tree::STAMP)) == Some(1),
                false => platform::link_count(&path) == Some(1),
            };
            let gone = match path.is_dir() {
                true => unused && platform::remove_tree(&path).is_ok(),
                false => unused && std::fs::remove_file(&path).is_ok(),
            };
            if gone {
                removed += 1;
            }
        }
        if removed > 0 {
            log::info!("removed {removed} builds no function uses");
        }
    }

    /// Waits until no one else builds `key`, then holds it until the guard drops.
    fn claim(&self, key: &str) -> Claim<'_> {
        let mut building = self.lock();
        while building.contains(key) {
            building = self.built.wait(building).unwrap_or_else(|e| e.into_inner());
        }
        building.insert(key.to_string());
        Claim {
            builds: self,
            key: key.to_string(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashSet<String>> {
        crate::sync::lock(&self.building)
    }
}

/// A key being built; released (and waiters woken) on drop, panics included.
struct Claim<'a> {
    builds: &'a Builds,
    key: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.builds.lock().remove(&self.key);
        self.builds.built.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_depends_on_the_source_and_the_toolchain() {
        let linux = "go=/usr/bin/go\nversion=go1.19\nGOOS=linux\nGOARCH=amd64";
        let windows = "go=/usr/bin/go\nversion=go1.19\nGOOS=windows\nGOARCH=amd64";
        let newer = "go=/usr/bin/go\nversion=go1.22\nGOOS=linux\nGOARCH=amd64";
        let source = |s: &'static [u8]| Code::Source(s);
        let a = key(linux, source(b"package main\n"));
        assert_eq!(a, key(linux, source(b"package main\n")), "stable");
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, key(linux, source(b"package main\n\n")));
        assert_ne!(a, key(windows, source(b"package main\n")));
        assert_ne!(a, key(newer, source(b"package main\n")));
        // The parts cannot slide into one another.
        assert_ne!(key("ab", source(b"c")), key("a", source(b"bc")));
    }

    #[test]
    fn a_package_key_depends_on_its_content_and_entry_folder() {
        let linux = "go=/usr/bin/go\nversion=go1.19\nGOOS=linux\nGOARCH=amd64";
        let package = |digest, main| Code::Package {
            root: Path::new("anywhere"),
            digest,
            main,
        };
        let a = key(linux, package("d1", None));
        assert_eq!(
            a,
            key(
                linux,
                Code::Package {
                    root: Path::new("elsewhere"),
                    digest: "d1",
                    main: None
                }
            )
        );
        assert_ne!(a, key(linux, package("d2", None)));
        assert_ne!(a, key(linux, package("d1", Some("cmd/app"))));
        assert_ne!(a, key(linux, Code::Source(b"d1")));
    }

    #[test]
    fn claims_of_one_key_take_turns() {
        let builds = std::sync::Arc::new(Builds::new(PathBuf::from("unused"), None));
        let inside = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (builds, inside) = (builds.clone(), inside.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let _claim = builds.claim("k");
                        let now = inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        assert_eq!(now, 0, "two holders of one key");
                        std::thread::yield_now();
                        inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("no panic");
        }
        let _other = builds.claim("k");
        let _different = builds.claim("j");
    }

    #[test]
    fn sweep_keeps_linked_builds() {
        let dir = std::env::temp_dir().join(format!("golambda-builds-{}", crate::ids::new_id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("used"), b"x").expect("write");
        std::fs::write(dir.join("unused"), b"x").expect("write");
        platform::link_or_copy(&dir.join("used"), &dir.join("version")).expect("link");
        Builds::new(dir.clone(), None).sweep();
        assert!(dir.join("used").exists());
        assert!(dir.join("version").exists());
        if platform::link_count(&dir.join("used")).is_some() {
            assert!(!dir.join("unused").exists());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
