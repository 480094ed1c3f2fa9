//! The run history on disk: one SQLite database, `registry/runs/runs.sqlite3`, written by a
//! thread of its own that gathers what comes in 100 ms and writes it in one transaction
//! (WAL, synced at checkpoints: a crash of the server loses nothing written, a power loss
//! at most the last moments). After each batch it keeps the [`super::KEPT_RUNS`] most
//! recently ended runs of each function it touched (running ones are never dropped), then
//! keeps the whole database under its byte bound by dropping the runs that ended first.
//! What a start finds there is [`super::recover`]'s. Knows nothing of what is pending in
//! memory: `super` overlays that.
//!
//! A data dir without a database yet runs no SQLite code until a run is recorded:
//! the writer makes the database with its first batch, and reads find nothing stored until
//! then. One that has a database opens it at start (a damaged one stops the server there),
//! and the reading connection is made at the first read.

use super::{Run, RunStatus, KEPT_RUNS};
use chrono::{DateTime, Utc};
use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One change for the writer.
pub enum Write {
    /// A run begun, or recorded whole (a skipped fire): inserted, or replacing its row.
    Put {
        function: String,
        run: Run,
        seq: u64,
        ended: Option<u64>,
        change: u64,
    },
    /// A run ended: its row is updated if it is still there (its function may be gone).
    End {
        function: String,
        run: Run,
        ended: u64,
        change: u64,
    },
    Forget {
        function: String,
    },
}

/// Where each write stands once the writer has committed it: `super` drops its copy.
pub type Committed = Box<dyn Fn(&[Write]) + Send>;

pub struct Store {
    queue: Mutex<Option<Sender<Write>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
    /// Whether the database exists with its tables; until it does, nothing is stored.
    made: Arc<AtomicBool>,
    /// Made at the first read of a database that exists.
    reader: Mutex<Option<Connection>>,
}

/// How long the writer gathers changes before writing them.
pub const GATHER: Duration = Duration::from_millis(100);

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS runs (
        seq INTEGER PRIMARY KEY,
        function TEXT NOT NULL,
        id TEXT NOT NULL,
        trigger TEXT NOT NULL,
        version INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        duration_ms REAL,
        status TEXT NOT NULL,
        exit_code INTEGER,
        stdout TEXT NOT NULL,
        stderr TEXT NOT NULL,
        ended INTEGER
    );
    CREATE UNIQUE INDEX IF NOT EXISTS runs_by_id ON runs (function, id);
    CREATE INDEX IF NOT EXISTS runs_by_end ON runs (ended);
    CREATE INDEX IF NOT EXISTS runs_by_function_end ON runs (function, ended);
";

const COLUMNS: &str =
    "id, trigger, version, started_at, duration_ms, status, exit_code, stdout, stderr";

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let db = Connection::open(path)?;
    // Set before the first table exists: freed pages can then be given back to the disk.
    db.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "NORMAL")?;
    // Small caches: the history is read rarely, and the server's memory should not grow
    // with it.
    db.pragma_update(None, "cache_size", -512)?;
    db.pragma_update(None, "journal_size_limit", 4 << 20)?;
    db.busy_timeout(Duration::from_secs(5))?;
    Ok(db)
}

/// Opens the database at `path`, making it and its tables if need be.
pub(super) fn open_or_make(path: &Path) -> rusqlite::Result<Connection> {
    let db = connect(path)?;
    db.execute_batch(SCHEMA)?;
    Ok(db)
}

pub(super) fn failed(err: rusqlite::Error) -> io::Error {
    io::Error::other(format!("the run history database: {err}"))
}

impl Store {
    /// Opens the database under `dir` if there is one (or journals to take in), and starts
    /// the writer. Returns the next `seq` and `ended` numbers.
    pub fn open(dir: &Path, max_bytes: u64, committed: Committed) -> io::Result<(Store, u64, u64)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("runs.sqlite3");
        let (db, seq, ended) = if path.exists() || super::recover::has_journals(dir) {
            let (db, seq, ended) = super::recover::recover(dir, &path)?;
            (Some(db), seq, ended)
        } else {
            (None, 1, 1)
        };
        let made = Arc::new(AtomicBool::new(db.is_some()));
        let (queue, rx) = unbounded();
        let writer = {
            let (path, made) = (path.clone(), made.clone());
            std::thread::Builder::new()
                .name("run-history".into())
                .spawn(move || write_loop(db, &path, &made, max_bytes, &rx, committed))?
        };
        let store = Store {
            queue: Mutex::new(Some(queue)),
            writer: Mutex::new(Some(writer)),
            path,
            made,
            reader: Mutex::new(None),
        };
        Ok((store, seq, ended))
    }

    pub fn send(&self, write: Write) {
        if let Some(queue) = self
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = queue.send(write);
        }
    }

    /// Writes everything queued and joins the writer.
    pub fn close(&self) {
        crate::sync::lock(&self.queue).take();
        if let Some(writer) = crate::sync::lock(&self.writer).take() {
            let _ = writer.join();
        }
    }

    /// The newest `limit` runs of `function` by start, with their `seq`.
    pub fn list(&self, function: &str, limit: usize) -> Vec<(u64, Run)> {
        let mut reader = crate::sync::lock(&self.reader);
        let Some(db) = self.reader(&mut reader) else {
            return Vec::new();
        };
        let sql = format!(
            "SELECT seq, {COLUMNS} FROM runs WHERE function = ?1 ORDER BY seq DESC LIMIT ?2"
        );
        let rows = db.prepare_cached(&sql).and_then(|mut query| {
            query
                .query_map(params![function, limit as i64], |row| {
                    Ok((row.get::<_, i64>(0)? as u64, run_of(row, 1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
        });
        rows.unwrap_or_else(|err| {
            log::warn!("cannot read the runs of {function}: {err}");
            Vec::new()
        })
    }

    /// Run `id` of `function`, with its `seq`.
    pub fn find(&self, function: &str, id: &str) -> Option<(Run, u64)> {
        let mut reader = crate::sync::lock(&self.reader);
        let db = self.reader(&mut reader)?;
        let sql = format!("SELECT seq, {COLUMNS} FROM runs WHERE function = ?1 AND id = ?2");
        db.prepare_cached(&sql)
            .and_then(|mut query| {
                query
                    .query_row(params![function, id], |row| {
                        Ok((run_of(row, 1)?, row.get::<_, i64>(0)? as u64))
                    })
                    .optional()
            })
            .unwrap_or_else(|err| {
                log::warn!("cannot read run {id} of {function}: {err}");
                None
            })
    }

    /// The reading connection, made now if the database exists and it was not made yet;
    /// `None` while nothing is stored.
    fn reader<'a>(&self, reader: &'a mut Option<Connection>) -> Option<&'a Connection> {
        if reader.is_none() && self.made.load(Ordering::Acquire) {
            match connect(&self.path) {
                Ok(db) => *reader = Some(db),
                Err(err) => log::warn!("cannot read the run history: {err}"),
            }
        }
        reader.as_ref()
    }
}

fn run_of(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Run> {
    let started: String = row.get(at + 3)?;
    let status: String = row.get(at + 5)?;
    Ok(Run {
        id: row.get(at)?,
        function: String::new(),
        trigger: row.get(at + 1)?,
        version: row.get(at + 2)?,
        started_at: DateTime::parse_from_rfc3339(&started)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default(),
        duration_ms: row.get(at + 4)?,
        status: serde_json::from_value(serde_json::Value::String(status))
            .unwrap_or(RunStatus::Error),
        exit_code: row.get(at + 6)?,
        stdout: row.get(at + 7)?,
        stderr: row.get(at + 8)?,
    })
}

/// Past this, the write-ahead log is folded into the database and cut back at once, not
/// at the next automatic checkpoint: a batch of large outputs would otherwise leave it
/// as large as the batch.
const LARGEST_LOG: u64 = 4 << 20;

fn write_loop(
    mut db: Option<Connection>,
    path: &Path,
    made: &AtomicBool,
    max_bytes: u64,
    rx: &Receiver<Write>,
    committed: Committed,
) {
    let log = path.with_extension("sqlite3-wal");
    // Changes a failed commit could not write: tried again first, and shown from memory
    // meanwhile (they stay pending there).
    let mut unwritten: Vec<Write> = Vec::new();
    let mut open = true;
    while open || !unwritten.is_empty() {
        let wait = if unwritten.is_empty() {
            Duration::from_secs(60)
        } else {
            RETRY_AFTER
        };
        let first = match rx.recv_timeout(wait) {
            Ok(write) => Some(write),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                open = false;
                None
            }
        };
        if first.is_none() && unwritten.is_empty() {
            continue;
        }
        // Gather a window's worth, so that a busy server commits ten times a second, not
        // once per run. The writer sleeps through the window rather than waking per record.
        if first.is_some() {
            std::thread::sleep(GATHER);
        }
        let mut batch = std::mem::take(&mut unwritten);
        batch.extend(first.into_iter().chain(rx.try_iter()));
        let written = database(&mut db, path, made)
            .and_then(|db| commit(db, &batch).map(|touched| (&*db, touched)));
        match written {
            Ok((db, touched)) => {
                if let Err(err) = bound(db, &touched, max_bytes) {
                    log::warn!("cannot trim the run history: {err}");
                }
                committed(&batch);
            }
            Err(err) => {
                log::warn!(
                    "cannot record {} run changes: {err}; will try again",
                    batch.len()
                );
                if batch.len() > MOST_UNWRITTEN {
                    // The disk keeps failing: the oldest changes go, from memory too.
                    let dropped: Vec<Write> = batch.drain(..batch.len() - MOST_UNWRITTEN).collect();
                    log::error!(
                        "dropped {} run changes the history could not write",
                        dropped.len()
                    );
                    committed(&dropped);
                }
                unwritten = batch;
                if !open {
                    // Stopping, and it still fails: what is left is lost with the process.
                    log::error!(
                        "the run history could not write {} changes before stopping",
                        unwritten.len()
                    );
                    return;
                }
            }
        }
        if std::fs::metadata(&log).is_ok_and(|m| m.len() > LARGEST_LOG) {
            let folded = db
                .as_ref()
                .map(|db| db.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)"));
            if let Some(Err(err)) = folded {
                log::debug!("cannot fold the run history's log in: {err}");
            }
        }
    }
}

/// The writer's connection; the first batch of a data dir without a database makes it.
fn database<'a>(
    db: &'a mut Option<Connection>,
    path: &Path,
    made: &AtomicBool,
) -> rusqlite::Result<&'a mut Connection> {
    if let Some(db) = db {
        return Ok(db);
    }
    let new = open_or_make(path)?;
    made.store(true, Ordering::Release);
    Ok(db.insert(new))
}

/// How soon a failed commit is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Changes kept for another try while commits fail.
const MOST_UNWRITTEN: usize = 100_000;

/// Writes one batch in one transaction; returns the functions it touched.
fn commit(db: &mut Connection, batch: &[Write]) -> rusqlite::Result<HashSet<String>> {
    let tx = db.transaction()?;
    let mut touched = HashSet::new();
    for write in batch {
        match write {
            Write::Put {
                function,
                run,
                seq,
                ended,
                ..
            } => {
                insert(&tx, "REPLACE", function, run, *seq, *ended)?;
                touched.insert(function.clone());
            }
            Write::End {
                function,
                run,
                ended,
                ..
            } => {
                tx.prepare_cached(
                    "UPDATE runs SET duration_ms = ?3, status = ?4, exit_code = ?5, stdout = ?6, \
                     stderr = ?7, ended = ?8 WHERE function = ?1 AND id = ?2",
                )?
                .execute(params![
                    function,
                    run.id,
                    run.duration_ms,
                    run.status.as_str(),
                    run.exit_code,
                    run.stdout,
                    run.stderr,
                    *ended as i64,
                ])?;
                touched.insert(function.clone());
            }
            Write::Forget { function } => {
                tx.prepare_cached("DELETE FROM runs WHERE function = ?1")?
                    .execute(params![function])?;
                touched.remove(function);
            }
        }
    }
    tx.commit()?;
    Ok(touched)
}

/// Writes one run's row; `conflict` says what a row of the same run already there
/// becomes (`REPLACE`d, or kept and this one `IGNORE`d).
pub(super) fn insert(
    db: &Connection,
    conflict: &str,
    function: &str,
    run: &Run,
    seq: u64,
    ended: Option<u64>,
) -> rusqlite::Result<usize> {
    let sql = format!(
        "INSERT OR {conflict} INTO runs (seq, function, id, trigger, version, started_at, \
         duration_ms, status, exit_code, stdout, stderr, ended) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    );
    db.prepare_cached(&sql)?.execute(params![
        seq as i64,
        function,
        run.id,
        run.trigger,
        run.version,
        super::rfc3339_precise(run.started_at),
        run.duration_ms,
        run.status.as_str(),
        run.exit_code,
        run.stdout,
        run.stderr,
        ended.map(|e| e as i64),
    ])
}

/// Keeps the last [`KEPT_RUNS`] ended runs of each touched function, then the whole
/// database under `max_bytes`.
fn bound(db: &Connection, touched: &HashSet<String>, max_bytes: u64) -> rusqlite::Result<()> {
    for function in touched {
        db.prepare_cached(
            "DELETE FROM runs WHERE function = ?1 AND ended < \
             (SELECT ended FROM runs WHERE function = ?1 AND ended IS NOT NULL \
              ORDER BY ended DESC LIMIT 1 OFFSET ?2)",
        )?
        .execute(params![function, (KEPT_RUNS - 1) as i64])?;
    }
    let used = || -> rusqlite::Result<u64> {
        let pages: i64 = db.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let free: i64 = db.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        let size: i64 = db.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok(u64::try_from((pages - free) * size).unwrap_or(0))
    };
    // The oldest ended runs go, a few at a time, until it fits in nine tenths of the bound.
    let mut rounds = 0;
    while used()? > max_bytes / 10 * 9 && rounds < 10_000 {
        let dropped = db
            .prepare_cached(
                "DELETE FROM runs WHERE seq IN \
                 (SELECT seq FROM runs WHERE ended IS NOT NULL ORDER BY ended LIMIT 20)",
            )?
            .execute([])?;
        if dropped == 0 {
            break;
        }
        rounds += 1;
    }
    if rounds > 0 {
        // Each step gives one free page back to the disk.
        let mut vacuum = db.prepare("PRAGMA incremental_vacuum")?;
        let mut steps = vacuum.query([])?;
        while steps.next()?.is_some() {}
    }
    Ok(())
}
