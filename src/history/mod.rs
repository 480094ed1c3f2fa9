//! Run history: a record of every run (http, cron, manual, async) with its outcome, the last
//! [`KEPT_RUNS`] per function in memory for the API, and an append-only journal per function
//! on disk ([`store`]) written by a thread of its own, so recording a run costs an invocation
//! a channel send, never a disk write.

mod store;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use store::Store;

/// Runs kept per function, in memory and across restarts.
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

/// Every function's recent runs.
pub struct History {
    runs: Mutex<HashMap<String, VecDeque<Run>>>,
    store: Store,
}

impl History {
    /// Loads the journals under `dir` and starts the writer thread.
    pub fn open(dir: PathBuf) -> History {
        let (store, loaded) = Store::open(dir, KEPT_RUNS);
        let runs = loaded
            .into_iter()
            .map(|(name, runs)| (name, runs.into_iter().collect()))
            .collect();
        History {
            runs: Mutex::new(runs),
            store,
        }
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
        let mut runs = self.lock();
        let Some(list) = runs_of(&mut runs, function) else {
            return;
        };
        match newest_first(list, id) {
            Some(existing) => {
                existing.trigger = run.trigger;
                existing.version = version;
                existing.started_at = run.started_at;
            }
            None => push_bounded(list, run),
        }
    }

    /// Completes a run begun with [`History::begin`] and hands it to the journal.
    pub fn finish(&self, function: &str, id: &str, outcome: Outcome<'_>) {
        let mut runs = self.lock();
        let Some(run) = runs
            .get_mut(function)
            .and_then(|list| newest_first(list, id))
        else {
            return;
        };
        run.status = outcome.status;
        run.exit_code = outcome.exit_code;
        run.duration_ms = Some((outcome.duration_ms * 1000.0).round() / 1000.0);
        run.stdout = cut(outcome.stdout);
        run.stderr = cut(outcome.stderr);
        let record = run.clone();
        drop(runs);
        self.store.append(function, record);
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
        push_bounded(
            self.lock().entry(function.to_string()).or_default(),
            run.clone(),
        );
        self.store.append(function, run);
    }

    /// The most recent runs first.
    pub fn list(&self, function: &str, limit: usize) -> Vec<Run> {
        self.lock()
            .get(function)
            .map(|runs| runs.iter().rev().take(limit).cloned().collect())
            .unwrap_or_default()
    }

    pub fn get(&self, function: &str, id: &str) -> Option<Run> {
        self.lock()
            .get(function)
            .and_then(|runs| runs.iter().find(|r| r.id == id).cloned())
    }

    /// Forgets a deleted function's runs, in memory and on disk.
    pub fn forget(&self, function: &str) {
        self.lock().remove(function);
        self.store.forget(function);
    }

    /// Writes what is pending and stops the writer.
    pub fn close(&self) {
        self.store.close();
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, VecDeque<Run>>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The runs of `function`, made empty on its first run (the name is copied only then).
fn runs_of<'a>(
    runs: &'a mut HashMap<String, VecDeque<Run>>,
    function: &str,
) -> Option<&'a mut VecDeque<Run>> {
    if !runs.contains_key(function) {
        runs.insert(function.to_string(), VecDeque::new());
    }
    runs.get_mut(function)
}

/// The run `id`, looked for from the newest end: a run is begun and finished while it is
/// among the latest of its function.
fn newest_first<'a>(list: &'a mut VecDeque<Run>, id: &str) -> Option<&'a mut Run> {
    list.iter_mut().rev().find(|r| r.id == id)
}

fn push_bounded(list: &mut VecDeque<Run>, run: Run) {
    list.push_back(run);
    while list.len() > KEPT_RUNS {
        list.pop_front();
    }
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

    #[test]
    fn records_survive_reopening_and_stay_bounded() {
        let dir = std::env::temp_dir().join(format!("golambda-history-{}", crate::ids::new_id()));
        {
            let history = History::open(dir.clone());
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
            history.close();
        }
        let history = History::open(dir.clone());
        let runs = history.list("f", 1000);
        assert_eq!(runs.len(), KEPT_RUNS);
        assert_eq!(
            runs[0].id,
            format!("run-{:04}", KEPT_RUNS + 29),
            "newest first"
        );
        assert_eq!(runs[0].stdout, "out");
        assert!(
            history.get("f", "still-going").is_none(),
            "unfinished runs are not journaled"
        );
        history.forget("f");
        history.close();
        assert!(History::open(dir.clone()).list("f", 10).is_empty());
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
