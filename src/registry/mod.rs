//! The registry: every registered function, in memory for readers and on disk as
//! `registry/registry.json` plus the [`journal`] beside it. Owns the file layout of the data
//! dir and the rule that a change is visible only once it is durable: each change is one
//! synced journal append; the journal is folded into `registry.json` (written atomically)
//! at start and every [`COMPACT_AFTER`] records. Readers clone an `Arc<Function>` and let go
//! of the lock at once: no lock is ever held while a function runs or compiles.

mod data_dir;
pub mod function;
pub mod journal;
pub mod name;
pub mod secrets;
pub mod trash;

pub use data_dir::DataDir;
pub use function::{Function, ResponseMode, Settings, Version};

use crate::platform;
use crate::sync::lock;
use journal::{Journal, Patch, Record};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// What `registry.json` holds.
#[derive(Deserialize)]
struct RegistryFile {
    functions: Vec<Function>,
}

/// `registry.json` as written, borrowing the functions instead of cloning them.
#[derive(Serialize)]
struct RegistryFileRef<'a> {
    format: u32,
    functions: Vec<&'a Function>,
}

/// Journal records after which the registry is folded into `registry.json`: bounds both the
/// journal's size and the replay at start.
pub const COMPACT_AFTER: usize = 256;

/// All registered functions.
pub struct Registry {
    data: DataDir,
    functions: RwLock<BTreeMap<String, Arc<Function>>>,
    /// One writer at a time; held from the journal append to the change in memory so the
    /// two never disagree in order.
    writer: Mutex<Journal>,
    /// Serialises registrations and deletions of one name.
    name_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl Registry {
    /// Reads `registry.json` (an absent file is an empty registry), replays the journal on
    /// top of it and, if the journal held anything, folds it into `registry.json`.
    pub fn open(data: DataDir) -> io::Result<Registry> {
        let path = data.registry_file();
        let mut missing = false;
        let mut functions = match std::fs::read(&path) {
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
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                missing = true;
                BTreeMap::new()
            }
            Err(err) => return Err(err),
        };
        let (mut journal, replay) = Journal::open(&data.journal_file())?;
        if replay.torn_tail {
            log::warn!(
                "{} ends in an incomplete record (a crash mid-write); it is ignored",
                data.journal_file().display()
            );
        }
        let replayed = replay.records.len();
        for record in replay.records {
            apply(&mut functions, record);
        }
        if missing {
            refuse_unregistered_sources(&data, &functions)?;
        }
        if missing || !journal.is_empty() {
            // registry.json always exists once the server has started, even when empty.
            write_registry_file(&path, &functions)?;
            journal.reset()?;
            if replayed > 0 {
                log::info!("folded {replayed} journal records into {}", path.display());
            }
        }
        Ok(Registry {
            data,
            functions: RwLock::new(functions),
            writer: Mutex::new(journal),
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

    /// Stores a new or changed function: on disk first (as the change from what was
    /// there), then visible to readers.
    pub fn put(&self, function: Function) -> io::Result<()> {
        self.change(Record::Put(function))
    }

    /// Forgets a function: on disk first, then for readers. Returns what was there.
    pub fn remove(&self, name: &str) -> io::Result<Option<Arc<Function>>> {
        let Some(existing) = self.get(name) else {
            return Ok(None);
        };
        self.change(Record::Remove(name.to_string()))?;
        Ok(Some(existing))
    }

    /// Makes one change durable (a synced journal append), then visible; folds the journal
    /// into `registry.json` when it has grown long. A compaction that fails after the append
    /// does not fail the change: the journal still holds it.
    fn change(&self, record: Record) -> io::Result<()> {
        let mut journal = lock(&self.writer);
        if journal.needs_reset() {
            // A failed append left a partial line: nothing may follow it until it is gone.
            self.compact(&mut journal)?;
        }
        let written = match &record {
            Record::Put(function) => {
                let old = self.get(&function.name);
                Record::Patch(Patch::between(old.as_deref(), function))
            }
            other => other.clone(),
        };
        journal.append(&written)?;
        apply(
            &mut self.functions.write().unwrap_or_else(|e| e.into_inner()),
            record,
        );
        if journal.records() >= COMPACT_AFTER {
            if let Err(err) = self.compact(&mut journal) {
                log::warn!("cannot fold the journal into registry.json: {err}; will retry");
            }
        }
        Ok(())
    }

    /// Writes what memory holds (every journalled change) to `registry.json`, then empties
    /// the journal. The caller holds the writer lock.
    fn compact(&self, journal: &mut Journal) -> io::Result<()> {
        write_registry_file(&self.data.registry_file(), &self.read())?;
        journal.reset()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Function>>> {
        self.functions.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// With `registry.json` gone, refuses to start if sources of functions the registry no longer
/// knows are on disk: starting would forget them without a word.
fn refuse_unregistered_sources(
    data: &DataDir,
    functions: &BTreeMap<String, Arc<Function>>,
) -> io::Result<()> {
    let Ok(entries) = std::fs::read_dir(data.sources()) else {
        return Ok(());
    };
    let mut orphans: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| !functions.contains_key(name))
        .collect();
    if orphans.is_empty() {
        return Ok(());
    }
    orphans.sort();
    let shown: Vec<&str> = orphans.iter().take(5).map(String::as_str).collect();
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{} is missing, but {} holds the sources of {} function(s) it does not know ({}{}): \
             the server will not start and forget them. Restore registry.json from a backup, \
             or, to start without them, move user_functions/ and plugins/ aside",
            data.registry_file().display(),
            data.sources().display(),
            orphans.len(),
            shown.join(", "),
            if orphans.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        ),
    ))
}

/// Applies one journal record to a map of functions.
fn apply(functions: &mut BTreeMap<String, Arc<Function>>, record: Record) {
    match record {
        Record::Put(function) => {
            functions.insert(function.name.clone(), Arc::new(function));
        }
        Record::Patch(patch) => {
            let old = functions.get(&patch.name).cloned();
            let made = patch.apply(old.as_deref());
            functions.insert(made.name.clone(), Arc::new(made));
        }
        Record::Remove(name) => {
            functions.remove(&name);
        }
    }
}

/// Writes `registry.json` whole and atomically: always a complete document on disk.
fn write_registry_file(path: &Path, functions: &BTreeMap<String, Arc<Function>>) -> io::Result<()> {
    let file = RegistryFileRef {
        format: 1,
        functions: functions.values().map(|f| &**f).collect(),
    };
    let bytes = serde_json::to_vec_pretty(&file).map_err(io::Error::other)?;
    platform::write_atomically(path, &bytes)
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

/// Removes a file, ignoring one that is already gone.
pub fn remove_file_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::journal::tests::function;
    use super::*;

    fn temp_data() -> DataDir {
        let root = std::env::temp_dir().join(format!("golambda-registry-{}", crate::ids::new_id()));
        let data = DataDir { root };
        data.create().expect("create");
        data
    }

    fn names_in_registry_file(data: &DataDir) -> Vec<String> {
        let bytes = std::fs::read(data.registry_file()).expect("registry.json");
        let file: RegistryFile = serde_json::from_slice(&bytes).expect("valid JSON");
        file.functions.into_iter().map(|f| f.name).collect()
    }

    #[test]
    fn changes_survive_a_reopen_through_the_journal() {
        let data = temp_data();
        let registry = Registry::open(data.clone()).expect("open");
        registry.put(function("a", 1)).expect("put");
        registry.put(function("b", 1)).expect("put");
        registry.put(function("a", 2)).expect("put");
        assert!(registry.remove("b").expect("remove").is_some());
        assert!(registry.remove("zzz").expect("remove").is_none());
        // Small changes are journal appends, not rewrites of registry.json.
        assert!(names_in_registry_file(&data).is_empty());
        assert!(
            std::fs::metadata(data.journal_file())
                .expect("journal")
                .len()
                > 0
        );
        drop(registry);

        let reopened = Registry::open(data.clone()).expect("reopen");
        assert_eq!(reopened.list().len(), 1);
        assert_eq!(reopened.get("a").map(|f| f.current), Some(2));
        // Opening folded the journal into registry.json.
        assert_eq!(names_in_registry_file(&data), vec!["a"]);
        assert_eq!(
            std::fs::metadata(data.journal_file())
                .expect("journal")
                .len(),
            0
        );
        let _ = std::fs::remove_dir_all(&data.root);
    }

    #[test]
    fn a_long_journal_is_folded_into_registry_json() {
        let data = temp_data();
        let registry = Registry::open(data.clone()).expect("open");
        for i in 0..COMPACT_AFTER + 3 {
            registry.put(function(&format!("f{i}"), 1)).expect("put");
        }
        assert_eq!(names_in_registry_file(&data).len(), COMPACT_AFTER);
        let journal = std::fs::read(data.journal_file()).expect("journal");
        assert_eq!(journal::parse(&journal).expect("parse").records.len(), 3);
        drop(registry);
        let reopened = Registry::open(data.clone()).expect("reopen");
        assert_eq!(reopened.len(), COMPACT_AFTER + 3);
        let _ = std::fs::remove_dir_all(&data.root);
    }

    #[test]
    fn a_torn_journal_tail_is_dropped_and_older_records_kept() {
        let data = temp_data();
        let registry = Registry::open(data.clone()).expect("open");
        registry.put(function("kept", 1)).expect("put");
        drop(registry);
        let mut bytes = std::fs::read(data.journal_file()).expect("journal");
        bytes.extend_from_slice(br#"{"put":{"name":"torn","crea"#);
        std::fs::write(data.journal_file(), &bytes).expect("write");

        let reopened = Registry::open(data.clone()).expect("reopen");
        assert_eq!(
            reopened
                .list()
                .iter()
                .map(|f| f.name.clone())
                .collect::<Vec<_>>(),
            vec!["kept"]
        );
        reopened
            .put(function("next", 1))
            .expect("put after a torn tail");
        drop(reopened);
        let again = Registry::open(data.clone()).expect("again");
        assert_eq!(again.len(), 2);
        let _ = std::fs::remove_dir_all(&data.root);
    }

    #[test]
    fn stale_records_replay_harmlessly_over_a_newer_registry_json() {
        // A crash between writing registry.json and emptying the journal.
        let data = temp_data();
        let registry = Registry::open(data.clone()).expect("open");
        registry.put(function("a", 1)).expect("put");
        registry.put(function("a", 2)).expect("put");
        registry.remove("a").expect("remove");
        registry.put(function("b", 1)).expect("put");
        let journal = std::fs::read(data.journal_file()).expect("journal");
        drop(registry);
        let _ = Registry::open(data.clone()).expect("fold");
        std::fs::write(data.journal_file(), &journal).expect("restore the old journal");
        let reopened = Registry::open(data.clone()).expect("reopen");
        assert!(reopened.get("a").is_none());
        assert_eq!(reopened.get("b").map(|f| f.current), Some(1));
        let _ = std::fs::remove_dir_all(&data.root);
    }
}
