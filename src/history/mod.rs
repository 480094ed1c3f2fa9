//! Run history: a record of every run (http, cron, manual, async) with its outcome, kept in
//! an embedded database ([`store`]) so that the server's memory does not grow with runs or
//! their output and the disk it uses is bounded in total. Recording a run costs an
//! invocation a channel send: the database is written by a thread of its own, and what it
//! has not written yet is kept here, in memory, and shown on top of it. A run is recorded
//! from when it is accepted (`running`) until it ends, however many runs come meanwhile;
//! of those that ended, the last [`KEPT_RUNS`] per function are kept.

mod recover;
mod store;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use store::{Store, Write};

/// Ended runs kept per function.
pub const KEPT_RUNS: usize = 100;
/// stdout and stderr kept in a record.
pub const KEPT_OUTPUT: usize = 64 * 1024;

/// How a run ended, or that it is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Ok,
    Error,
    Timeout,
    Skipped,
    Running,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Error => "error",
            RunStatus::Timeout => "timeout",
            RunStatus::Skipped => "skipped",
            RunStatus::Running => "running",
        }
    }
}

/// One run, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub function: String,
    pub trigger: String,
    pub version: u32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: Option<f64>,
    pub status: RunStatus,
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// What a finished run reports.
pub struct Outcome<'a> {
    pub status: RunStatus,
    pub exit_code: Option<i32>,
    pub duration_ms: f64,
    pub stdout: &'a [u8],
    pub stderr: &'a [u8],
}

/// Every function's runs.
pub struct History {
    pending: Arc<Mutex<Pending>>,
    store: Store,
    /// Numbers runs by when they were begun, and by when they ended.
    seq: AtomicU64,
    ended: AtomicU64,
}

/// Changes handed to the writer and not committed yet, by function and run id.
#[derive(Default)]
struct Pending {
    runs: HashMap<String, HashMap<String, Entry>>,
    changes: u64,
}

struct Entry {
    run: Run,
    seq: u64,
    /// The number of the last change of it: the writer's commit drops only that one.
    change: u64,
}

impl Pending {
    /// Keeps `run` until the change numbered as returned is committed.
    fn keep(&mut self, function: &str, run: Run, seq: u64) -> u64 {
        self.changes += 1;
        let change = self.changes;
        let runs = match self.runs.get_mut(function) {
            Some(runs) => runs,
            None => self.runs.entry(function.to_string()).or_default(),
        };
        runs.insert(run.id.clone(), Entry { run, seq, change });
        change
    }

    fn committed(&mut self, batch: &[Write]) {
        for write in batch {
            let (function, id, change) = match write {
                Write::Put {
                    function,
                    run,
                    change,
                    ..
                }
                | Write::End {
                    function,
                    run,
                    change,
                    ..
                } => (function, &run.id, *change),
                Write::Forget { .. } => continue,
            };
            let Some(runs) = self.runs.get_mut(function) else {
                continue;
            };
            if runs.get(id).is_some_and(|e| e.change == change) {
                runs.remove(id);
            }
            if runs.is_empty() {
                self.runs.remove(function);
            }
        }
    }
}

impl History {
    /// Opens the history under `dir`, bounded to `max_bytes` on disk, and starts its writer.
    pub fn open(dir: PathBuf, max_bytes: u64) -> io::Result<History> {
        let pending = Arc::new(Mutex::new(Pending::default()));
        let shared = pending.clone();
        // A few hundred at a time: an invocation recording a run never waits long behind.
        let committed = Box::new(move |batch: &[Write]| {
            for part in batch.chunks(256) {
                shared
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .committed(part)
            }
        });
        let (store, seq, ended) = Store::open(&dir, max_bytes, committed)?;
        Ok(History {
            pending,
            store,
            seq: AtomicU64::new(seq),
            ended: AtomicU64::new(ended),
        })
    }

    /// Records a run that starts now (or is queued to start), as `running`.
    pub fn begin(&self, function: &str, id: &str, trigger: &str, version: u32) {
        let run = Run {
            id: id.to_string(),
            function: String::new(),
            trigger: trigger.to_string(),
            version,
            started_at: Utc::now(),
            duration_ms: None,
            status: RunStatus::Running,
            exit_code: None,
            stdout: String::new(),
            stderr: String::new(),
        };
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        let change = self.lock().keep(function, run.clone(), seq);
        self.store.send(Write::Put {
            function: function.to_string(),
            run,
            seq,
            ended: None,
            change,
        });
    }

    /// Completes a run begun with [`History::begin`]; one whose function was forgotten
    /// meanwhile is dropped.
    pub fn finish(&self, function: &str, id: &str, outcome: Outcome<'_>) {
        let mut pending = self.lock();
        let begun = pending
            .runs
            .get(function)
            .and_then(|runs| runs.get(id))
            .map(|e| (e.run.clone(), e.seq));
        let (mut run, seq) = match begun {
            Some(begun) => begun,
            None => {
                drop(pending);
                // Begun long enough ago to be written: read back.
                let Some(found) = self.store.find(function, id) else {
                    return;
                };
                pending = self.lock();
                found
            }
        };
        run.status = outcome.status;
        run.exit_code = outcome.exit_code;
        run.duration_ms = Some((outcome.duration_ms * 1000.0).round() / 1000.0);
        run.stdout = cut(outcome.stdout);
        run.stderr = cut(outcome.stderr);
        let ended = self.ended.fetch_add(1, Ordering::SeqCst);
        let change = pending.keep(function, run.clone(), seq);
        drop(pending);
        self.store.send(Write::End {
            function: function.to_string(),
            run,
            ended,
            change,
        });
    }

    /// Records a cron fire that was skipped.
    pub fn skipped(&self, function: &str, id: &str, version: u32, at: DateTime<Utc>) {
        let run = Run {
            id: id.to_string(),
            function: String::new(),
            trigger: "cron".into(),
            version,
            started_at: at,
            duration_ms: Some(0.0),
            status: RunStatus::Skipped,
            exit_code: None,
            stdout: String::new(),
            stderr: String::new(),
        };
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        let ended = self.ended.fetch_add(1, Ordering::SeqCst);
        let change = self.lock().keep(function, run.clone(), seq);
        self.store.send(Write::Put {
            function: function.to_string(),
            run,
            seq,
            ended: Some(ended),
            change,
        });
    }

    /// The most recent runs first, by when they were begun.
    pub fn list(&self, function: &str, limit: usize) -> Vec<Run> {
        // What is pending before and after reading the database: a change committed (and
        // dropped from memory) in between is in one or the other.
        let pending = || -> HashMap<String, (u64, Run)> {
            self.lock()
                .runs
                .get(function)
                .map(|runs| {
                    runs.iter()
                        .map(|(id, e)| (id.clone(), (e.seq, e.run.clone())))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut shown = pending();
        let written = self.store.list(function, limit);
        shown.extend(pending());
        let mut runs: Vec<(u64, Run)> = written
            .into_iter()
            .filter(|(_, run)| !shown.contains_key(&run.id))
            .collect();
        runs.extend(shown.into_values());
        runs.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        runs.into_iter().take(limit).map(|(_, run)| run).collect()
    }

    pub fn get(&self, function: &str, id: &str) -> Option<Run> {
        let pending = self
            .lock()
            .runs
            .get(function)
            .and_then(|runs| runs.get(id))
            .map(|e| e.run.clone());
        pending.or_else(|| self.store.find(function, id).map(|(run, _)| run))
    }

    /// Forgets a deleted function's runs.
    pub fn forget(&self, function: &str) {
        self.lock().runs.remove(function);
        self.store.send(Write::Forget {
            function: function.to_string(),
        });
    }

    /// Writes what is pending and stops the writer.
    pub fn close(&self) {
        self.store.close();
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        crate::sync::lock(&self.pending)
    }
}

/// A time as the database keeps it: RFC 3339 with as many decimals as it has.
fn rfc3339_precise(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Output as text, cut to [`KEPT_OUTPUT`] bytes at a character boundary.
fn cut(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(KEPT_OUTPUT)]);
    let mut text = text.into_owned();
    while text.len() > KEPT_OUTPUT {
        text.pop();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: RunStatus) -> Outcome<'static> {
        Outcome {
            status,
            exit_code: Some(0),
            duration_ms: 1.5,
            stdout: b"out",
            stderr: b"",
        }
    }

    fn scratch() -> PathBuf {
        std::env::temp_dir().join(format!("golambda-history-{}", crate::ids::new_id()))
    }

    #[test]
    fn records_survive_reopening_and_stay_bounded() {
        let dir = scratch();
        {
            let history = History::open(dir.clone(), 64 << 20).unwrap();
            for i in 0..(KEPT_RUNS + 30) {
                let id = format!("run-{i:04}");
                history.begin("f", &id, "http", 1);
                history.finish("f", &id, outcome(RunStatus::Ok));
            }
            history.begin("f", "still-going", "manual", 1);
            assert_eq!(
                history.get("f", "still-going").map(|r| r.status),
                Some(RunStatus::Running)
            );
            // Seen at once, before the writer has written it.
            assert_eq!(history.list("f", 1)[0].id, "still-going");
            history.close();
        }
        let history = History::open(dir.clone(), 64 << 20).unwrap();
        let runs = history.list("f", 1000);
        assert_eq!(runs.len(), KEPT_RUNS + 1);
        assert_eq!(
            runs[1].id,
            format!("run-{:04}", KEPT_RUNS + 29),
            "newest first"
        );
        assert_eq!(runs[1].stdout, "out");
        // The server stopped while it ran: it ended then, and says so.
        let left = history.get("f", "still-going").expect("never lost");
        assert_eq!(left.status, RunStatus::Error);
        assert!(left.stderr.contains("stopped"), "{left:?}");
        history.forget("f");
        history.close();
        assert!(History::open(dir.clone(), 64 << 20)
            .unwrap()
            .list("f", 10)
            .is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_data_dir_without_a_history_gets_its_database_with_the_first_run() {
        let dir = scratch();
        let database = dir.join("runs.sqlite3");
        let history = History::open(dir.clone(), 64 << 20).unwrap();
        assert!(history.list("f", 10).is_empty());
        assert!(history.get("f", "a").is_none());
        assert!(!database.exists(), "made before anything was recorded");
        history.begin("f", "a", "http", 1);
        history.finish("f", "a", outcome(RunStatus::Ok));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !history.lock().runs.is_empty() {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::sleep(store::GATHER);
        }
        assert!(database.exists());
        // Nothing pending: what is listed now was read back from the new database.
        assert_eq!(history.list("f", 10)[0].id, "a");
        assert_eq!(history.get("f", "a").map(|r| r.status), Some(RunStatus::Ok));
        history.close();
        let history = History::open(dir.clone(), 64 << 20).unwrap();
        assert_eq!(history.list("f", 10).len(), 1);
        history.begin("f", "b", "http", 1);
        assert_eq!(
            history.list("f", 10)[0].id,
            "b",
            "numbered after the stored run"
        );
        history.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_run_is_kept_until_it_ends_however_many_runs_come_meanwhile() {
        let dir = scratch();
        let history = History::open(dir.clone(), 64 << 20).unwrap();
        history.begin("f", "slow", "async", 1);
        for i in 0..(KEPT_RUNS * 3) {
            let id = format!("quick-{i}");
            history.begin("f", &id, "http", 1);
            history.finish("f", &id, outcome(RunStatus::Ok));
        }
        std::thread::sleep(store::GATHER * 3);
        assert_eq!(
            history.get("f", "slow").map(|r| r.status),
            Some(RunStatus::Running)
        );
        history.finish("f", "slow", outcome(RunStatus::Ok));
        history.close();
        let history = History::open(dir.clone(), 64 << 20).unwrap();
        assert_eq!(
            history.get("f", "slow").map(|r| r.status),
            Some(RunStatus::Ok)
        );
        // Of the ended runs, the last hundred to end.
        assert_eq!(history.list("f", 1000).len(), KEPT_RUNS);
        history.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_disk_it_uses_is_bounded_in_total() {
        let dir = scratch();
        let history = History::open(dir.clone(), 4 << 20).unwrap();
        let big = vec![b'x'; KEPT_OUTPUT];
        for f in 0..20 {
            for i in 0..20 {
                let (function, id) = (format!("f{f}"), format!("r{i}"));
                history.begin(&function, &id, "http", 1);
                let mut done = outcome(RunStatus::Ok);
                done.stdout = &big;
                history.finish(&function, &id, done);
            }
        }
        history.close();
        let bytes: u64 = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.metadata().map_or(0, |m| m.len()))
            .sum();
        // 400 runs of 64 KiB (25 MiB) under a 4 MiB bound, with the write-ahead log.
        let files: Vec<(String, u64)> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().map_or(0, |m| m.len()),
                )
            })
            .collect();
        assert!(bytes < 10 << 20, "{bytes} bytes on disk: {files:?}");
        let history = History::open(dir.clone(), 4 << 20).unwrap();
        assert_eq!(history.list("f19", 100).len(), 20, "the newest survive");
        assert!(history.list("f0", 100).is_empty(), "the oldest went first");
        history.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn journals_of_an_older_server_are_taken_in() {
        let dir = scratch();
        std::fs::create_dir_all(&dir).unwrap();
        let line = r#"{"id":"old-1","trigger":"cron","version":2,"started_at":"2026-11-30T10:00:00Z","duration_ms":3.0,"status":"ok","exit_code":0,"stdout":"hi","stderr":""}"#;
        std::fs::write(dir.join("nightly.jsonl"), format!("{line}\n{{torn")).unwrap();
        let history = History::open(dir.clone(), 64 << 20).unwrap();
        let run = history.get("nightly", "old-1").expect("taken in");
        assert_eq!((run.version, run.stdout.as_str()), (2, "hi"));
        assert!(!dir.join("nightly.jsonl").exists());
        history.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn output_is_cut_on_a_character_boundary() {
        let long = "é".repeat(KEPT_OUTPUT);
        let kept = cut(long.as_bytes());
        assert!(kept.len() <= KEPT_OUTPUT);
        assert!(kept.chars().all(|c| c == 'é' || c == '\u{fffd}'));
    }
}
