//! The registry's journal, `registry/registry.journal`: one record per line, each change
//! of the registry appended and synced before it is acknowledged, so a change costs one small
//! write instead of rewriting `registry.json`. Replayed on top of `registry.json` at start.
//! A record carries only its change (the versions a registration added, the numbers of
//! those kept), never a copy of what did not change.
//!
//! Each line is the first 16 hex digits of the SHA-256 of its JSON, a space, the JSON.
//! Only the last append can be torn by a crash (every earlier one was synced before the next
//! began): a last line without its line break, or of NUL bytes only (its length synced, its
//! data not), is torn and ignored. Any other line that fails its checksum or does not parse
//! is corruption: reported, never skipped, and the server does not start on it. Lines of
//! older servers (JSON alone) are read without a checksum. Never writes `registry.json`
//! itself: compaction belongs to the registry, which then calls [`Journal::reset`].

use super::{Function, Version};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;

/// One change of the registry. Replaying a record twice, or on top of a `registry.json` that
/// already holds it, changes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Record {
    /// The function, as it now is (written by older servers).
    Put(Function),
    /// The function as it now is, told as a change of what the registry held.
    Patch(Patch),
    /// The function of that name is gone.
    Remove(String),
}

/// A function's new state: its own fields, the numbers of the versions it keeps (oldest
/// first), and those versions that are new or changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Patch {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub generation: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub current: u32,
    pub paused: bool,
    pub kept: Vec<u32>,
    pub changed: Vec<Version>,
}

impl Patch {
    /// The change from `old` (none: a new function) to `new`.
    pub fn between(old: Option<&Function>, new: &Function) -> Patch {
        let unchanged =
            |version: &Version| old.is_some_and(|old| old.versions.iter().any(|v| v == version));
        Patch {
            name: new.name.clone(),
            generation: new.generation.clone(),
            created_at: new.created_at,
            updated_at: new.updated_at,
            current: new.current,
            paused: new.paused,
            kept: new.versions.iter().map(|v| v.number).collect(),
            changed: new
                .versions
                .iter()
                .filter(|v| !unchanged(v))
                .cloned()
                .collect(),
        }
    }

    /// The function it makes of `old`. A kept version found neither in the patch nor in
    /// `old` (a registry.json edited by hand) is left out.
    pub fn apply(self, old: Option<&Function>) -> Function {
        let Patch {
            name,
            generation,
            created_at,
            updated_at,
            current,
            paused,
            kept,
            changed,
        } = self;
        let versions = kept
            .iter()
            .filter_map(|number| {
                changed
                    .iter()
                    .find(|v| v.number == *number)
                    .or_else(|| old?.versions.iter().find(|v| v.number == *number))
                    .cloned()
            })
            .collect();
        Function {
            name,
            generation,
            created_at,
            updated_at,
            current,
            paused,
            versions,
        }
    }
}

/// A record's line, without its line break: checksum, space, JSON.
pub fn line(record: &Record) -> io::Result<Vec<u8>> {
    let json = serde_json::to_vec(record).map_err(io::Error::other)?;
    let mut line = checksum(&json).into_bytes();
    line.push(b' ');
    line.extend_from_slice(&json);
    Ok(line)
}

fn checksum(json: &[u8]) -> String {
    Sha256::digest(json)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The record of one whole line, or why it is not one.
fn record_of(line: &[u8]) -> Result<Record, &'static str> {
    let json = match line.first() {
        // An older server's line.
        Some(b'{') => line,
        _ => {
            let (sum, json) = line
                .split_at_checked(16)
                .ok_or("too short for a checksum")?;
            let json = json.strip_prefix(b" ").ok_or("no checksum")?;
            if checksum(json).as_bytes() != sum {
                return Err("its checksum does not match");
            }
            json
        }
    };
    serde_json::from_slice(json).map_err(|_| "it is not a record")
}

/// What a journal file held.
#[derive(Debug, Default)]
pub struct Replay {
    pub records: Vec<Record>,
    /// The last line was incomplete or unreadable (a crash mid-append) and was ignored.
    pub torn_tail: bool,
}

/// Reads the records of a journal's bytes. Fails on a damaged line that is not a torn last
/// append (see the module's text).
pub fn parse(bytes: &[u8]) -> Result<Replay, String> {
    let mut replay = Replay::default();
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    // The piece after the last newline: empty after a whole append, else a torn one.
    let tail = lines.pop().unwrap_or_default();
    let last = lines.len().saturating_sub(1);
    for (index, line) in lines.iter().enumerate() {
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        if index == last && tail.is_empty() && line.iter().all(|b| *b == 0) {
            replay.torn_tail = true;
            continue;
        }
        match record_of(line) {
            Ok(record) => replay.records.push(record),
            Err(why) => return Err(format!("line {} is damaged: {why}", index + 1)),
        }
    }
    replay.torn_tail |= !tail.is_empty();
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
                    format!(
                        "{} is damaged ({reason}): the server will not start on a damaged \
                         registry. Restore registry/ from a backup, or move the journal aside \
                         to start from registry.json alone (the changes made since it was last \
                         folded in are then lost)",
                        path.display()
                    ),
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
        let mut line = line(record)?;
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
            generation: format!("gen-of-{name}"),
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
                    main: None,
                },
                source: format!("user_functions/{name}/v{current}.go"),
                executable: format!("plugins/{name}/v{current}"),
                executable_size: 42,
                package: None,
                entry: None,
            }],
        }
    }

    fn temp_path() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("golambda-journal-{}", crate::ids::new_id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir.join("registry.journal")
    }

    fn line(record: &Record) -> Vec<u8> {
        let mut bytes = super::line(record).expect("line");
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
        for end in [&b""[..], &b"\n"[..]] {
            let mut bytes = whole.clone();
            bytes.extend_from_slice(&[0u8; 40]);
            bytes.extend_from_slice(end);
            let replay = parse(&bytes).expect("parse");
            assert_eq!(replay.records.len(), 1);
            assert!(replay.torn_tail);
        }
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }

    #[test]
    fn a_damaged_whole_line_is_corruption_wherever_it_is() {
        let mut bytes = b"{\"put\": garbage\n".to_vec();
        bytes.extend(line(&Record::Remove("a".into())));
        assert!(parse(&bytes).is_err());
        assert!(parse(b"\n\n").is_ok_and(|r| r.records.is_empty() && !r.torn_tail));
        // The last record, whole, with one byte changed: not a torn write.
        let mut last = line(&Record::Remove("b".into()));
        last[20] ^= 1;
        let mut bytes = line(&Record::Remove("a".into()));
        bytes.extend(last);
        let err = parse(&bytes).expect_err("corruption");
        assert!(err.contains("line 2") && err.contains("checksum"), "{err}");
        // An older server's lines still read.
        let mut old = serde_json::to_vec(&Record::Remove("c".into())).unwrap();
        old.push(b'\n');
        assert_eq!(
            parse(&old).unwrap().records,
            vec![Record::Remove("c".into())]
        );
    }

    #[test]
    fn a_patch_carries_only_what_changed() {
        let one = function("a", 1);
        let mut two = one.clone();
        let mut added = one.versions[0].clone();
        added.number = 2;
        two.versions.push(added);
        two.current = 2;
        let patch = Patch::between(Some(&one), &two);
        assert_eq!(patch.kept, vec![1, 2]);
        assert_eq!(
            patch.changed.iter().map(|v| v.number).collect::<Vec<_>>(),
            vec![2]
        );
        assert_eq!(patch.clone().apply(Some(&one)), two);
        // Again on top of what it made: the same.
        assert_eq!(patch.apply(Some(&two)), two);
        // A new function carries all of itself.
        assert_eq!(Patch::between(None, &one).apply(None), one);
    }
}
