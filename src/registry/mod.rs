//! The registry: every registered function, in memory for readers and in
//! `registry/registry.json` on disk. Owns the file layout of the data dir and the rule that
//! a change is visible only once it is durable. Readers clone an `Arc<Function>` and let go
//! of the lock at once: no lock is ever held while a function runs or compiles.

pub mod function;
pub mod name;
pub mod secrets;
pub mod trash;

pub use function::{Function, ResponseMode, Settings, Version};

use crate::platform;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// The folders of the data dir.
#[derive(Debug, Clone)]
pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    pub fn plugins(&self) -> PathBuf {
        self.root.join("plugins")
    }
    pub fn sources(&self) -> PathBuf {
        self.root.join("user_functions")
    }
    pub fn registry_dir(&self) -> PathBuf {
        self.root.join("registry")
    }
    pub fn registry_file(&self) -> PathBuf {
        self.registry_dir().join("registry.json")
    }
    pub fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// Creates the folders (and the data dir itself) if they are missing, each readable by
    /// the server's user only: a run reaches its executable through a file the server
    /// opened, never through these folders.
    pub fn create(&self) -> io::Result<()> {
        for dir in [
            self.plugins(),
            self.sources(),
            self.registry_dir(),
            self.cache(),
        ] {
            std::fs::create_dir_all(&dir)?;
            platform::make_private(&dir)?;
        }
        Ok(())
    }

    /// Relative paths of a version's source and executable.
    pub fn version_files(name: &str, number: u32) -> (String, String) {
        (
            format!("user_functions/{name}/v{number}.go"),
            format!("plugins/{name}/v{number}{}", platform::EXE_SUFFIX),
        )
    }

    /// The path of a data-dir-relative name such as `plugins/hello/v1`, with the separators
    /// of this OS.
    pub fn resolve(&self, relative: &str) -> PathBuf {
        let mut path = self.root.clone();
        path.extend(relative.split('/').filter(|part| !part.is_empty()));
        path
    }

    /// A short name for this data dir, the same on every start: a hash of its full path.
    pub fn identity(&self) -> String {
        use sha2::Digest;
        let full = std::fs::canonicalize(&self.root).unwrap_or_else(|_| self.root.clone());
        let digest = sha2::Sha256::digest(full.to_string_lossy().as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    pub fn secrets(&self) -> PathBuf {
        self.registry_dir().join("secrets")
    }

    pub fn trash(&self) -> PathBuf {
        self.cache().join("trash")
    }
}

/// What `registry.json` holds.
#[derive(Serialize, Deserialize)]
struct RegistryFile {
    format: u32,
    functions: Vec<Function>,
}

/// All registered functions.
pub struct Registry {
    data: DataDir,
    functions: RwLock<BTreeMap<String, Arc<Function>>>,
    /// One writer of `registry.json` at a time; held from the file write to the swap in
    /// memory so the two never disagree in order.
    writer: Mutex<()>,
    /// Serialises registrations and deletions of one name.
    name_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl Registry {
    /// Reads `registry.json` (an absent file is an empty registry).
    pub fn open(data: DataDir) -> io::Result<Registry> {
        let path = data.registry_file();
        let functions = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: RegistryFile = serde_json::from_slice(&bytes).map_err(|err| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{} is not a valid registry: {err}", path.display()),
                    )
                })?;
                file.functions
                    .into_iter()
                    .map(|f| (f.name.clone(), Arc::new(f)))
                    .collect()
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(err) => return Err(err),
        };
        Ok(Registry {
            data,
            functions: RwLock::new(functions),
            writer: Mutex::new(()),
            name_locks: Mutex::new(HashMap::new()),
        })
    }

    pub fn data(&self) -> &DataDir {
        &self.data
    }

    pub fn get(&self, name: &str) -> Option<Arc<Function>> {
        self.read().get(name).cloned()
    }

    /// Every function, sorted by name.
    pub fn list(&self) -> Vec<Arc<Function>> {
        self.read().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Holds off other registrations and deletions of `name` while the guard lives.
    pub fn lock_name(&self, name: &str) -> NameLock {
        let lock = lock(&self.name_locks)
            .entry(name.to_string())
            .or_default()
            .clone();
        NameLock { lock }
    }

    /// Stores a new or changed function: on disk first, then visible to readers.
    pub fn put(&self, function: Function) -> io::Result<()> {
        self.change(|map| {
            map.insert(function.name.clone(), Arc::new(function));
        })
    }

    /// Forgets a function: on disk first, then for readers. Returns what was there.
    pub fn remove(&self, name: &str) -> io::Result<Option<Arc<Function>>> {
        if self.get(name).is_none() {
            return Ok(None);
        }
        let mut removed = None;
        self.change(|map| removed = map.remove(name))?;
        Ok(removed)
    }

    fn change(&self, edit: impl FnOnce(&mut BTreeMap<String, Arc<Function>>)) -> io::Result<()> {
        let _writer = lock(&self.writer);
        let mut next = self.read().clone();
        edit(&mut next);
        let file = RegistryFile {
            format: 1,
            functions: next.values().map(|f| (**f).clone()).collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(io::Error::other)?;
        platform::write_atomically(&self.data.registry_file(), &bytes)?;
        *self.functions.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Function>>> {
        self.functions.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// The per-name lock; lock it with [`NameLock::hold`].
pub struct NameLock {
    lock: Arc<Mutex<()>>,
}

impl NameLock {
    pub fn hold(&self) -> MutexGuard<'_, ()> {
        lock(&self.lock)
    }
}

/// Locks a mutex, carrying on if a panicking thread poisoned it (the data is plain state
/// that a panic cannot leave half-written).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes a file, ignoring one that is already gone.
pub fn remove_file_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}
