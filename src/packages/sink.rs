//! Where unpacked entries go: one folder, written only under names [`super::paths`] has
//! let through, each file created new (never through a link: the package makes none), its
//! bytes counted against the bounds as they are inflated and hashed on the way. The format
//! readers feed it; it knows no format.

use super::paths::{self, Kind, Taken};
use super::{Limits, Refusal};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// One file of a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Relative, `/`-separated.
    pub path: String,
    pub size: u64,
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
    pub executable: bool,
}

pub struct Sink {
    dir: PathBuf,
    limits: Limits,
    entries: u64,
    written: u64,
    taken: Taken,
    files: Vec<(Vec<String>, File)>,
    folders: Vec<Vec<String>>,
    /// Folders known to exist already.
    made: std::collections::HashSet<PathBuf>,
    /// One buffer for every file's bytes.
    buffer: Vec<u8>,
}

impl Sink {
    pub fn new(dir: &Path, limits: Limits) -> Sink {
        Sink {
            dir: dir.to_path_buf(),
            limits,
            entries: 0,
            written: 0,
            taken: Taken::default(),
            files: Vec::new(),
            folders: Vec::new(),
            made: std::collections::HashSet::new(),
            buffer: vec![0u8; 64 * 1024],
        }
    }

    /// Counts one more entry of any kind, refusing past the bound.
    pub fn count(&mut self) -> Result<(), Refusal> {
        self.entries += 1;
        if self.entries > self.limits.entries {
            return Err(Refusal::TooManyEntries {
                limit: self.limits.entries,
            });
        }
        Ok(())
    }

    pub fn entry_limit(&self) -> u64 {
        self.limits.entries
    }

    /// Bytes that may still be written.
    pub fn room(&self) -> u64 {
        self.limits.unpacked.saturating_sub(self.written)
    }

    pub fn too_large(&self) -> Refusal {
        Refusal::TooLarge {
            limit: self.limits.unpacked,
        }
    }

    /// Checks `name` and takes it as a `kind`, without writing anything.
    pub fn claim(&mut self, name: &str, kind: Kind) -> Result<Vec<String>, Refusal> {
        let parts = paths::check(name).map_err(|reason| Refusal::entry(name, reason))?;
        self.taken
            .take(&parts, kind)
            .map_err(|reason| Refusal::entry(name, &reason))?;
        Ok(parts)
    }

    pub fn folder(&mut self, name: &str) -> Result<(), Refusal> {
        // The archive's own root (`tar czf f.tgz .` writes `./`): nothing to make.
        if name.trim_end_matches('/') == "." {
            return Ok(());
        }
        let parts = self.claim(name, Kind::Folder)?;
        std::fs::create_dir_all(self.path_of(&parts)).map_err(Refusal::Io)?;
        self.folders.push(parts);
        Ok(())
    }

    /// Writes the file `name` from `data`, which must give exactly `declared` bytes. Reads
    /// at most one byte past what is allowed, so a bomb stops while it inflates.
    pub fn file(
        &mut self,
        name: &str,
        declared: u64,
        executable: bool,
        data: &mut dyn Read,
    ) -> Result<(), Refusal> {
        let parts = self.claim(name, Kind::File)?;
        if declared > self.room() {
            return Err(self.too_large());
        }
        let path = self.path_of(&parts);
        if let Some(parent) = path.parent().filter(|p| !self.made.contains(*p)) {
            std::fs::create_dir_all(parent).map_err(Refusal::Io)?;
            self.made.insert(parent.to_path_buf());
        }
        let mut out =
            crate::platform::create_package_file(&path, executable).map_err(Refusal::Io)?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let buffer = &mut self.buffer;
        let mut limited = data.take(declared + 1);
        loop {
            let n = match limited.read(buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    return Err(Refusal::entry(
                        name,
                        &format!("its data cannot be read: {err}"),
                    ))
                }
            };
            size += n as u64;
            if size > declared {
                return Err(Refusal::entry(
                    name,
                    "its data is longer than its declared size",
                ));
            }
            hasher.update(&buffer[..n]);
            out.write_all(&buffer[..n]).map_err(Refusal::Io)?;
        }
        if size != declared {
            return Err(Refusal::entry(
                name,
                "its data is shorter than its declared size",
            ));
        }
        self.written += size;
        let sha256 = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let file = File {
            path: parts.join("/"),
            size,
            sha256,
            executable,
        };
        self.files.push((parts, file));
        Ok(())
    }

    /// The files, sorted, relative to the package's root: the one folder everything is
    /// under when there is one.
    pub fn finish(self) -> Result<(PathBuf, Vec<File>), Refusal> {
        let firsts: std::collections::HashSet<&str> = self
            .files
            .iter()
            .map(|(parts, _)| parts[0].as_str())
            .chain(self.folders.iter().map(|parts| parts[0].as_str()))
            .collect();
        let strip = firsts.len() == 1 && self.files.iter().all(|(parts, _)| parts.len() > 1);
        let (root, skip) = match firsts.iter().next() {
            Some(first) if strip => (self.dir.join(first), 1),
            _ => (self.dir.clone(), 0),
        };
        let mut files: Vec<File> = self
            .files
            .into_iter()
            .map(|(parts, mut file)| {
                file.path = parts[skip..].join("/");
                file
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((root, files))
    }

    fn path_of(&self, parts: &[String]) -> PathBuf {
        parts
            .iter()
            .fold(self.dir.clone(), |path, part| path.join(part))
    }
}
