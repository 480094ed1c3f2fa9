//! Zip archives, read with the `zip` crate. Before the crate parses the central directory,
//! the entry count of the end record is checked against the bound, so that a directory
//! claiming millions of entries is refused before it is read. Every entry's kind, name and
//! declared size is checked before any data is inflated; data is then inflated into the
//! sink, which stops at the declared size, and the crate checks each entry's CRC-32.

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
    let end = end_record(code);
    if let Some(end) = end {
        if end.entries > sink.entry_limit() {
            return Err(Refusal::TooManyEntries {
                limit: sink.entry_limit(),
            });
        }
    }
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

/// What the archive's end record says (the zip64 one where the plain record says to look
/// there); `None` where there is no readable end record, which the crate then refuses.
#[derive(Debug, Clone, Copy)]
struct End {
    entries: u64,
    /// Where the central directory starts.
    directory: u64,
}

fn end_record(code: &[u8]) -> Option<End> {
    const END: &[u8] = b"PK\x05\x06";
    const LOCATOR: &[u8] = b"PK\x06\x07";
    const END64: &[u8] = b"PK\x06\x06";
    let u16_at = |at: usize| Some(u16::from_le_bytes(code.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(code.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(code.get(at..at + 8)?.try_into().ok()?));
    // The end record is 22 bytes and a comment of at most 64 KiB follows it.
    let from = code.len().saturating_sub(22 + 65_535);
    let at = (from..code.len().saturating_sub(21))
        .rev()
        .find(|&i| code[i..].starts_with(END))?;
    let (count, directory) = (u16_at(at + 10)?, u32_at(at + 16)?);
    if count != u16::MAX && directory != u32::MAX {
        return Some(End {
            entries: u64::from(count),
            directory: u64::from(directory),
        });
    }
    let locator = at.checked_sub(20)?;
    if !code[locator..].starts_with(LOCATOR) {
        return None;
    }
    let record = usize::try_from(u64_at(locator + 8)?).ok()?;
    if !code.get(record..)?.starts_with(END64) {
        return None;
    }
    Some(End {
        entries: u64_at(record + 32)?,
        directory: u64_at(record + 48)?,
    })
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
