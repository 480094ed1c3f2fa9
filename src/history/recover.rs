//! What a start finds in the run history: runs a stopped server left `running`, which are
//! marked as ended, and journals of older servers (`<name>.jsonl`), which are taken in
//! once and removed. Runs at start only, before the writer exists; never drops a run.

use super::store::{failed, insert, open_or_make};
use super::{Run, KEPT_RUNS};
use rusqlite::{params, Connection};
use std::io;
use std::path::{Path, PathBuf};

/// Opens the database at `path`, marks runs a stopped server left running as ended, and
/// takes in old journals. Returns the next `seq` and `ended` numbers.
pub(super) fn recover(dir: &Path, path: &Path) -> io::Result<(Connection, u64, u64)> {
    let db = open_or_make(path).map_err(failed)?;
    let next = |column: &str| -> rusqlite::Result<u64> {
        db.query_row(
            &format!("SELECT COALESCE(MAX({column}), 0) + 1 FROM runs"),
            [],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| u64::try_from(n).unwrap_or(1))
    };
    let mut seq = next("seq").map_err(failed)?;
    let mut ended = next("ended").map_err(failed)?;
    let mut first = db
        .prepare("SELECT seq FROM runs WHERE status = 'running' ORDER BY seq")
        .map_err(failed)?;
    let left: Vec<i64> = first
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(failed)?;
    drop(first);
    for row in left {
        db.execute(
            "UPDATE runs SET status = 'error', ended = ?2, \
                 stderr = stderr || 'the server stopped before this run ended' WHERE seq = ?1",
            params![row, ended as i64],
        )
        .map_err(failed)?;
        ended += 1;
    }
    import_journals(&db, dir, &mut seq, &mut ended);
    Ok((db, seq, ended))
}

/// Whether `dir` holds journals of an older server to take in.
pub(super) fn has_journals(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.ends_with(".jsonl"))
        })
    })
}

/// Takes in the journals an older server kept (`<name>.jsonl`, oldest first) and removes
/// them; a journal that cannot be read is left where it is.
fn import_journals(db: &Connection, dir: &Path, seq: &mut u64, ended: &mut u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let journals: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.strip_suffix(".jsonl")?.to_string();
            Some((name, e.path()))
        })
        .collect();
    for (function, path) in journals {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let runs: Vec<Run> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let keep = runs.len().saturating_sub(KEPT_RUNS);
        for run in runs.into_iter().skip(keep) {
            let inserted = insert(db, "IGNORE", &function, &run, *seq, Some(*ended));
            if let Err(err) = inserted {
                log::warn!(
                    "cannot take in a run of {function} from {}: {err}",
                    path.display()
                );
            }
            *seq += 1;
            *ended += 1;
        }
        if let Err(err) = std::fs::remove_file(&path) {
            log::warn!("cannot remove {}: {err}", path.display());
        }
    }
}
