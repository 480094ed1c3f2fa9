//! Zip archives, read with the `zip` crate. Before the crate parses the central directory,
//! the entry counts of every end record (zip64 ones too) are checked against the bound, so
//! that a directory claiming millions of entries is refused before the crate allocates
//! room for them. Every entry's kind, name and declared size is checked before any data is
//! inflated; data is then inflated into the sink, which stops at the declared size, and the
//! crate checks each entry's CRC-32.

use super::paths::Kind;
use super::sink::Sink;
use super::Refusal;
use std::io::Cursor;

/// `S_IFMT` and the kinds of files a Unix zip records in its external attributes.
const FILE_TYPE: u32 = 0o170_000;
const REGULAR: u32 = 0o100_000;
const FOLDER: u32 = 0o040_000;
const LINK: u32 = 0o120_000;

pub fn read(code: &[u8], sink: &mut Sink) -> Result<(), Refusal> {
    let ends = end_records(code);
    // Before the crate sizes its directory by one of them.
    if ends.iter().any(|end| end.entries > sink.entry_limit()) {
        return Err(Refusal::TooManyEntries {
            limit: sink.entry_limit(),
        });
    }
    let end = ends.first().copied();
    let mut archive = ::zip::ZipArchive::new(Cursor::new(code)).map_err(malformed)?;
    if let Some(end) = end.filter(|end| end.entries != archive.len() as u64) {
        // The crate keeps one entry of each name: the directory names one file twice.
        return Err(twice(code, end));
    }
    let mut declared_total = 0u64;
    let mut kinds = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        sink.count()?;
        let entry = archive.by_index_raw(index).map_err(malformed)?;
        let name = entry.name().to_string();
        let kind = match entry.unix_mode().map(|mode| mode & FILE_TYPE) {
            _ if entry.is_dir() => Kind::Folder,
            None | Some(0) | Some(REGULAR) => Kind::File,
            Some(FOLDER) => Kind::Folder,
            Some(LINK) => return Err(Refusal::entry(&name, "it is a symbolic link")),
            Some(_) => return Err(Refusal::entry(&name, "it is a device, FIFO or socket")),
        };
        if entry.encrypted() {
            return Err(Refusal::entry(&name, "it is encrypted"));
        }
        if kind == Kind::File {
            declared_total = declared_total.saturating_add(entry.size());
            if declared_total > sink.room() {
                return Err(sink.too_large());
            }
        }
        let executable = entry.unix_mode().is_some_and(|mode| mode & 0o111 != 0);
        kinds.push((name, kind, executable, entry.size()));
    }
    for (index, (name, kind, executable, size)) in kinds.into_iter().enumerate() {
        match kind {
            Kind::Folder => sink.folder(&name)?,
            Kind::File => {
                let mut entry = archive
                    .by_index(index)
                    .map_err(|err| Refusal::entry(&name, &format!("it cannot be read: {err}")))?;
                sink.file(&name, size, executable, &mut entry)?;
            }
        }
    }
    Ok(())
}

fn malformed(err: ::zip::result::ZipError) -> Refusal {
    Refusal::Malformed {
        reason: err.to_string(),
    }
}

/// What an end record of the archive says, read as the crate reads it: the zip64 record
/// wherever a locator points at one, the larger of each record's two counts (this disk's,
/// and the whole archive's).
#[derive(Debug, Clone, Copy)]
struct End {
    entries: u64,
    /// Where the central directory starts.
    directory: u64,
}

/// Every end record the trailing 64 KiB could hold, the last first: which one a reader
/// takes is its own choice, so the bounds are checked against all of them.
fn end_records(code: &[u8]) -> Vec<End> {
    const END: &[u8] = b"PK\x05\x06";
    // The end record is 22 bytes and a comment of at most 64 KiB follows it.
    let from = code.len().saturating_sub(22 + 65_535);
    (from..code.len().saturating_sub(21))
        .rev()
        .filter(|&i| code[i..].starts_with(END))
        .filter_map(|at| end_at(code, at))
        .collect()
}

fn end_at(code: &[u8], at: usize) -> Option<End> {
    const LOCATOR: &[u8] = b"PK\x06\x07";
    const END64: &[u8] = b"PK\x06\x06";
    let u16_at = |at: usize| Some(u16::from_le_bytes(code.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(code.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(code.get(at..at + 8)?.try_into().ok()?));
    let zip64 = at
        .checked_sub(20)
        .filter(|&locator| code[locator..].starts_with(LOCATOR))
        .and_then(|locator| usize::try_from(u64_at(locator + 8)?).ok())
        .filter(|&record| code.get(record..).is_some_and(|r| r.starts_with(END64)));
    match zip64 {
        Some(record) => Some(End {
            entries: u64_at(record + 24)?.max(u64_at(record + 32)?),
            directory: u64_at(record + 48)?,
        }),
        None => Some(End {
            entries: u64::from(u16_at(at + 8)?.max(u16_at(at + 10)?)),
            directory: u64::from(u32_at(at + 16)?),
        }),
    }
}

/// The refusal of a directory that names a file twice, naming it where the directory can
/// be walked.
fn twice(code: &[u8], end: End) -> Refusal {
    const HEADER: &[u8] = b"PK\x01\x02";
    let mut seen = std::collections::HashSet::new();
    let mut at = usize::try_from(end.directory).unwrap_or(usize::MAX);
    for _ in 0..end.entries {
        let Some(record) = code
            .get(at..)
            .filter(|r| r.starts_with(HEADER) && r.len() >= 46)
        else {
            break;
        };
        let len = |i: usize| usize::from(u16::from_le_bytes([record[i], record[i + 1]]));
        let step = 46 + len(28) + len(30) + len(32);
        let Some(raw) = record.get(46..46 + len(28)) else {
            break;
        };
        let name = String::from_utf8_lossy(raw).into_owned();
        if !seen.insert(name.clone()) {
            return Refusal::entry(&name, "it appears twice in the archive");
        }
        at += step;
    }
    Refusal::Malformed {
        reason: "the central directory names one file twice".into(),
    }
}
