//! The registry's journal, `registry/registry.journal`: one JSON record per line, each change
//! of the registry appended and synced before it is acknowledged, so a change costs one small
//! write instead of rewriting `registry.json`. Replayed on top of `registry.json` at start.
//!
//! Only the last append can be torn by a crash (every earlier one was synced before the next
//! began), so an unreadable last line is ignored; an unreadable line with records after it is
//! corruption and is reported, never skipped. Never writes `registry.json` itself: compaction
//! belongs to the registry, which then calls [`Journal::reset`].

use super::Function;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;

/// One change of the registry. Each record carries the whole new state of one name, so
/// replaying a record twice, or on top of a `registry.json` that already holds it, changes
/// nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Record {
    /// The function, as it now is.
    Put(Function),
    /// The function of that name is gone.
    Remove(String),
}

/// What a journal file held.
#[derive(Debug, Default)]
pub struct Replay {
    pub records: Vec<Record>,
    /// The last line was incomplete or unreadable (a crash mid-append) and was ignored.
    pub torn_tail: bool,
}

/// Reads the records of a journal's bytes. Fails only on a damaged line that has whole
/// records after it.
pub fn parse(bytes: &[u8]) -> Result<Replay, String> {
    let mut replay = Replay::default();
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    // The piece after the last newline: empty after a whole append, else a torn one.
    let tail = lines.pop().unwrap_or_default();
    let mut damaged: Option<usize> = None;
    for (index, line) in lines.iter().enumerate() {
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        match serde_json::from_slice::<Record>(line) {
            Ok(record) => {
                if let Some(bad) = damaged {
                    return Err(format!("line {} is damaged but records follow it", bad + 1));
                }
                replay.records.push(record);
            }
            Err(_) => damaged = damaged.or(Some(index)),
        }
    }
    replay.torn_tail = damaged.is_some() || !tail.is_empty();
    Ok(replay)
}

/// The open journal, positioned at its end.
pub struct Journal {
    file: File,
    /// Bytes of whole records in the file.
    len: u64,
    /// Records appended since the last reset.
    records: usize,
    /// A failed append could not be undone: the file may end in a partial line, so nothing
    /// may be appended until the next reset.
    damaged: bool,
}

impl Journal {
    /// Reads the journal at `path` (absent: empty) and opens it for appending.
    pub fn open(path: &Path) -> io::Result<(Journal, Replay)> {
        let replay = match std::fs::read(path) {
            Ok(bytes) => parse(&bytes).map_err(|reason| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is damaged: {reason}", path.display()),
                )
            })?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => Replay::default(),
            Err(err) => return Err(err),
        };
        // Opened for writing, not appending: Windows flushes and truncates only such handles.
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len();
        let journal = Journal {
            file,
            len,
            records: replay.records.len(),
            // A torn tail must be cut off (by a reset) before anything follows it.
            damaged: replay.torn_tail,
        };
        Ok((journal, replay))
    }

    /// Records appended since the last reset.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Whether the file holds anything a reset would drop.
    pub fn is_empty(&self) -> bool {
        self.len == 0 && !self.damaged
    }

    /// Whether appending is impossible until a reset.
    pub fn needs_reset(&self) -> bool {
        self.damaged
    }

    /// Appends one record and syncs it: once this returns `Ok`, the change survives a crash.
    /// On failure the file is cut back to its previous length when possible.
    pub fn append(&mut self, record: &Record) -> io::Result<()> {
        if self.damaged {
            return Err(io::Error::other(
                "the journal needs compacting before it takes more records",
            ));
        }
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        let written = self
            .file
            .seek(SeekFrom::Start(self.len))
            .and_then(|_| self.file.write_all(&line))
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.len += line.len() as u64;
                self.records += 1;
                Ok(())
            }
            Err(err) => {
                let undone = self
                    .file
                    .set_len(self.len)
                    .and_then(|()| self.file.sync_data());
                if undone.is_err() {
                    self.damaged = true;
                }
                Err(err)
            }
        }
    }

    /// Empties the journal, once `registry.json` holds everything it recorded. A crash
    /// before the truncation is durable leaves the old records, which replay harmlessly on
    /// top of a `registry.json` that already holds them.
    pub fn reset(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_all()?;
        self.len = 0;
        self.records = 0;
        self.damaged = false;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::registry::function::{ResponseMode, Settings, Version};
    use chrono::{TimeZone, Utc};
    use std::path::PathBuf;

    pub(crate) fn function(name: &str, current: u32) -> Function {
        let at = Utc
            .with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
            .single()
            .expect("time");
        Function {
            name: name.to_string(),
            created_at: at,
            updated_at: at,
            current,
            paused: false,
            versions: vec![Version {
                number: current,
                sha256: "ab".repeat(32),
                created_at: at,
                settings: Settings {
                    trigger: "http".into(),
                    runtime: "go".into(),
                    response: ResponseMode::Json,
                    timeout_ms: 1000,
                    memory: None,
                    disk: None,
                    max_concurrency: 0,
                    network: true,
                    env: Default::default(),
                    secrets: Vec::new(),
                },
                source: format!("user_functions/{name}/v{current}.go"),
                executable: format!("plugins/{name}/v{current}"),
                executable_size: 42,
            }],
        }
    }

    fn temp_path() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("golambda-journal-{}", crate::ids::new_id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir.join("registry.journal")
    }

    fn line(record: &Record) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(record).expect("json");
        bytes.push(b'\n');
        bytes
    }

    #[test]
    fn appended_records_replay_in_order() {
        let path = temp_path();
        let (mut journal, replay) = Journal::open(&path).expect("open");
        assert!(replay.records.is_empty() && journal.is_empty());
        let records = vec![
            Record::Put(function("a", 1)),
            Record::Put(function("b", 1)),
            Record::Remove("a".into()),
            Record::Put(function("b", 2)),
        ];
        for record in &records {
            journal.append(record).expect("append");
        }
        assert_eq!(journal.records(), 4);
        drop(journal);
        let (journal, replay) = Journal::open(&path).expect("reopen");
        assert_eq!(replay.records, records);
        assert!(!replay.torn_tail);
        assert_eq!(journal.records(), 4);
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_cut_off_by_a_reset() {
        let path = temp_path();
        let whole = line(&Record::Put(function("a", 1)));
        let torn = line(&Record::Put(function("b", 1)));
        for cut in [1, torn.len() / 2, torn.len() - 1] {
            let mut bytes = whole.clone();
            bytes.extend_from_slice(&torn[..cut]);
            std::fs::write(&path, &bytes).expect("write");
            let (mut journal, replay) = Journal::open(&path).expect("open");
            assert_eq!(replay.records, vec![Record::Put(function("a", 1))]);
            assert!(replay.torn_tail, "cut at {cut}");
            assert!(journal.needs_reset());
            assert!(journal.append(&Record::Remove("a".into())).is_err());
            journal.reset().expect("reset");
            journal.append(&Record::Remove("a".into())).expect("append");
            drop(journal);
            let (_, replay) = Journal::open(&path).expect("reopen");
            assert_eq!(replay.records, vec![Record::Remove("a".into())]);
            assert!(!replay.torn_tail);
        }
        // Zeros where the last record should be (its size was synced, its data not).
        let mut bytes = whole.clone();
        bytes.extend_from_slice(&[0u8; 40]);
        bytes.push(b'\n');
        let replay = parse(&bytes).expect("parse");
        assert_eq!(replay.records.len(), 1);
        assert!(replay.torn_tail);
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }

    #[test]
    fn damage_before_whole_records_is_an_error() {
        let mut bytes = b"{\"put\": garbage\n".to_vec();
        bytes.extend(line(&Record::Remove("a".into())));
        assert!(parse(&bytes).is_err());
        assert!(parse(b"\n\n").is_ok_and(|r| r.records.is_empty() && !r.torn_tail));
    }
}
