//! Function packages: what a registration's `code` is (one source file, a zip, or a
//! gzip-compressed tar, told apart by their first bytes), and the unpacking of an archive
//! into a folder of its own. Archives are hostile input: every name is checked before
//! anything is written ([`paths`]), links, devices and FIFOs are refused, the entry count
//! and the unpacked size are bounded while inflating (never after), and data that does not
//! match its declared size or checksum is refused. On any refusal the folder is removed,
//! so a refused archive leaves nothing behind. Knows nothing of functions, versions or Go.

mod paths;
mod sink;
mod tar;
mod zip;

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub use sink::File;

/// The most entries an archive may hold.
pub const MAX_ENTRIES: u64 = 10_000;

/// How many times `--max-package` an archive may unpack to.
pub const UNPACKED_FACTOR: u64 = 8;

/// What a registration's code is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Source,
    Zip,
    TarGz,
}

impl Kind {
    /// Tells by content: a zip's local or empty-archive signature, gzip's magic.
    pub fn of(code: &[u8]) -> Kind {
        if code.starts_with(b"PK\x03\x04") || code.starts_with(b"PK\x05\x06") {
            Kind::Zip
        } else if code.starts_with(&[0x1f, 0x8b]) {
            Kind::TarGz
        } else {
            Kind::Source
        }
    }

    /// The media type a package is answered with as uploaded.
    pub fn media_type(self) -> &'static str {
        match self {
            Kind::Source => "text/plain; charset=utf-8",
            Kind::Zip => "application/zip",
            Kind::TarGz => "application/gzip",
        }
    }
}

/// The bounds of one unpacking.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub entries: u64,
    /// Bytes of all files together.
    pub unpacked: u64,
}

impl Limits {
    /// The bounds of the contract for a `--max-package` of `max_package` bytes.
    pub fn for_package(max_package: u64) -> Limits {
        Limits {
            entries: MAX_ENTRIES,
            unpacked: max_package.saturating_mul(UNPACKED_FACTOR),
        }
    }
}

/// Why an archive was refused.
#[derive(Debug)]
pub enum Refusal {
    /// More entries than [`Limits::entries`] (413).
    TooManyEntries { limit: u64 },
    /// Unpacks past [`Limits::unpacked`] (413).
    TooLarge { limit: u64 },
    /// One entry cannot be taken (400), with the reason.
    Entry { entry: String, reason: String },
    /// The archive itself cannot be read (400).
    Malformed { reason: String },
    /// Writing the files failed.
    Io(std::io::Error),
}

impl Refusal {
    /// Entry `name` is refused for `reason`; a long name is cut in what is shown.
    pub fn entry(name: &str, reason: &str) -> Refusal {
        Refusal::Entry {
            entry: name.chars().take(200).collect(),
            reason: reason.to_string(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::TooManyEntries { limit } => {
                write!(f, "the archive holds more than {limit} entries")
            }
            Refusal::TooLarge { limit } => {
                write!(f, "the archive unpacks to more than {limit} bytes")
            }
            Refusal::Entry { entry, reason } => write!(f, "entry '{entry}': {reason}"),
            Refusal::Malformed { reason } => write!(f, "the archive cannot be read: {reason}"),
            Refusal::Io(err) => write!(f, "cannot unpack the archive: {err}"),
        }
    }
}

/// An unpacked package: its files (sorted by path) under `root`, and the digest of them.
#[derive(Debug)]
pub struct Unpacked {
    /// The folder the files are in: the unpacking folder, or the one folder everything in
    /// the archive was under.
    pub root: PathBuf,
    pub files: Vec<File>,
    /// Hex SHA-256 of the sorted paths, modes and contents: the same files archived again,
    /// in another order, format or with other timestamps, have the same digest.
    pub digest: String,
}

/// Unpacks the archive `code` (of `kind`, not [`Kind::Source`]) into `into`, a folder that
/// must not exist yet. On a refusal, nothing of `into` is left.
pub fn unpack(code: &[u8], kind: Kind, into: &Path, limits: Limits) -> Result<Unpacked, Refusal> {
    std::fs::create_dir(into).map_err(Refusal::Io)?;
    let mut sink = sink::Sink::new(into, limits);
    let read = match kind {
        Kind::Zip => zip::read(code, &mut sink),
        Kind::TarGz => tar::read(code, &mut sink),
        Kind::Source => Err(Refusal::Malformed {
            reason: "not an archive".into(),
        }),
    };
    let finished = read.and_then(|()| sink.finish());
    match finished {
        Ok((root, files)) => {
            let digest = digest(&files);
            Ok(Unpacked {
                root,
                files,
                digest,
            })
        }
        Err(refusal) => {
            let _ = std::fs::remove_dir_all(into);
            Err(refusal)
        }
    }
}

/// The plain components of a path inside a package, or why it is not one.
pub fn relative_path(path: &str) -> Result<Vec<String>, &'static str> {
    paths::check(path)
}

/// The folder a `main` names inside a package, `/`-separated; `None` for its root.
pub fn folder_of(main: &str) -> Result<Option<String>, &'static str> {
    if main.trim_matches('/').chars().all(|c| c == '.' || c == '/') && !main.contains("..") {
        return Ok(None);
    }
    paths::check(main).map(|parts| Some(parts.join("/")))
}

/// The file `main` names inside a package, as a relative path with `/` separators: it must
/// stay inside the package.
pub fn file_of(main: &str) -> Result<String, &'static str> {
    let main = main.trim_start_matches("./");
    if main.ends_with('/') {
        return Err("names a folder; name the entry file");
    }
    paths::check(main).map(|parts| parts.join("/"))
}

/// The digest of `files` (sorted by path): each path, whether it is executable, and the
/// SHA-256 of its bytes, length-prefixed.
pub fn digest(files: &[File]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"golambda-package-1");
    for file in files {
        hasher.update((file.path.len() as u64).to_le_bytes());
        hasher.update(file.path.as_bytes());
        hasher.update([u8::from(file.executable)]);
        hasher.update(file.sha256.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests;
