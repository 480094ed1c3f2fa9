//! The run journal on disk: `registry/runs/<name>.jsonl`, one JSON record per line, appended
//! by a single writer thread that gathers what comes in 100 ms, writes it, and syncs each
//! file it touched once (group commit). A journal past eight times the kept count is
//! compacted by an atomic rewrite. At start a torn last line (a crash mid-append) is skipped.

use super::Run;
use crate::platform;
use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

enum Entry {
    Append(String, Run),
    Forget(String),
}

pub struct Store {
    queue: Mutex<Option<Sender<Entry>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Store {
    /// Reads every journal under `dir` (the last `keep` runs of each) and starts the writer.
    pub fn open(dir: PathBuf, keep: usize) -> (Store, HashMap<String, Vec<Run>>) {
        let mut loaded = HashMap::new();
        let mut lines = HashMap::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                let Some(name) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".jsonl"))
                    .map(str::to_string)
                else {
                    continue;
                };
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                if !text.is_empty() && !text.ends_with('\n') {
                    // A crash cut the last record short: end it, so the next one starts clean.
                    let ended = OpenOptions::new()
                        .append(true)
                        .open(&path)
                        .and_then(|mut file| file.write_all(b"\n"));
                    if let Err(err) = ended {
                        log::warn!("cannot repair {}: {err}", path.display());
                    }
                }
                let runs: Vec<Run> = text
                    .lines()
                    .filter_map(|line| serde_json::from_str(line).ok())
                    .collect();
                lines.insert(name.clone(), runs.len());
                let skip = runs.len().saturating_sub(keep);
                loaded.insert(name, runs.into_iter().skip(skip).collect());
            }
        }
        let (queue, rx) = unbounded();
        let writer = std::thread::Builder::new()
            .name("run-journal".into())
            .spawn(move || write_loop(&dir, keep, lines, &rx))
            .map_err(|err| log::error!("cannot start the run journal writer: {err}"))
            .ok();
        let store = Store {
            queue: Mutex::new(Some(queue)),
            writer: Mutex::new(writer),
        };
        (store, loaded)
    }

    pub fn append(&self, name: &str, run: Run) {
        self.send(Entry::Append(name.to_string(), run));
    }

    pub fn forget(&self, name: &str) {
        self.send(Entry::Forget(name.to_string()));
    }

    fn send(&self, entry: Entry) {
        if let Some(queue) = self
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = queue.send(entry);
        }
    }

    /// Writes everything queued and joins the writer.
    pub fn close(&self) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(writer) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = writer.join();
        }
    }
}

fn journal(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.jsonl"))
}

/// A journal is rewritten with its last `keep` records once it holds this many times
/// `keep`: each rewrite is a synced file and folder, so a function serving thousands of
/// requests a second must not cause one every few milliseconds.
const COMPACT_AFTER: usize = 8;

/// How long the writer gathers records before writing and syncing them.
const GATHER: Duration = Duration::from_millis(100);

fn write_loop(dir: &Path, keep: usize, mut lines: HashMap<String, usize>, rx: &Receiver<Entry>) {
    let mut open: HashMap<String, File> = HashMap::new();
    loop {
        let first = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(entry) => entry,
            Err(RecvTimeoutError::Timeout) => {
                open.clear();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        // Gather what comes in a short window, so that a busy server syncs each journal ten
        // times a second, not once per run. The writer sleeps through the window rather
        // than waking for each record: a wake-up per run cost more than the records.
        std::thread::sleep(GATHER);
        let gathered = rx.try_iter();
        // Each journal gets one write and one sync per window, whatever the number of runs.
        let mut pending: HashMap<String, (Vec<u8>, usize)> = HashMap::new();
        for entry in std::iter::once(first).chain(gathered) {
            match entry {
                Entry::Append(name, run) => {
                    let (bytes, records) = pending.entry(name).or_default();
                    match serde_json::to_writer(&mut *bytes, &run) {
                        Ok(()) => {
                            bytes.push(b'\n');
                            *records += 1;
                        }
                        Err(err) => log::warn!("cannot encode a run record: {err}"),
                    }
                }
                Entry::Forget(name) => {
                    pending.remove(&name);
                    open.remove(&name);
                    lines.remove(&name);
                    let _ = std::fs::remove_file(journal(dir, &name));
                }
            }
        }
        for (name, (bytes, records)) in pending {
            if let Err(err) = append(dir, &mut open, &name, &bytes) {
                log::warn!("cannot record runs of {name}: {err}");
                continue;
            }
            *lines.entry(name.clone()).or_default() += records;
            if let Some(file) = open.get(&name) {
                let _ = file.sync_data();
            }
            if lines.get(&name).copied().unwrap_or(0) > COMPACT_AFTER * keep {
                open.remove(&name);
                match compact(dir, &name, keep) {
                    Ok(kept) => {
                        lines.insert(name, kept);
                    }
                    Err(err) => log::warn!("cannot compact the run journal of {name}: {err}"),
                }
            }
        }
    }
}

fn append(
    dir: &Path,
    open: &mut HashMap<String, File>,
    name: &str,
    lines: &[u8],
) -> std::io::Result<()> {
    if !open.contains_key(name) {
        std::fs::create_dir_all(dir)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(journal(dir, name))?;
        open.insert(name.to_string(), file);
    }
    match open.get_mut(name) {
        Some(file) => file.write_all(lines),
        None => Ok(()),
    }
}

/// Rewrites a journal with only its last `keep` records; returns how many it holds.
fn compact(dir: &Path, name: &str, keep: usize) -> std::io::Result<usize> {
    let path = journal(dir, name);
    let text = std::fs::read_to_string(&path)?;
    let valid: Vec<&str> = text
        .lines()
        .filter(|line| serde_json::from_str::<Run>(line).is_ok())
        .collect();
    let kept = &valid[valid.len().saturating_sub(keep)..];
    let mut bytes = kept.join("\n").into_bytes();
    bytes.push(b'\n');
    platform::write_atomically(&path, &bytes)?;
    Ok(kept.len())
}
