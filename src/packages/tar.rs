//! Gzip-compressed tar archives, read with the `flate2` and `tar` crates as one stream:
//! entries are taken as they come, so the inflated stream itself is capped (the files'
//! bound plus their headers), and a gzip bomb stops at that cap rather than at its end.
//! Regular files and folders are taken; links, devices, FIFOs and other kinds are refused.

use super::paths::Kind;
use super::sink::Sink;
use super::Refusal;
use std::cell::Cell;
use std::io::Read;
use std::rc::Rc;

/// Header bytes allowed per entry on top of the files' bytes: a header block, a long-name
/// or extended-header block or two, and padding.
const PER_ENTRY: u64 = 4 * 512;

pub fn read(code: &[u8], sink: &mut Sink) -> Result<(), Refusal> {
    let hit = Rc::new(Cell::new(false));
    let cap = sink.room().saturating_add(
        sink.entry_limit()
            .saturating_add(2)
            .saturating_mul(PER_ENTRY),
    );
    let stream = Capped {
        inner: flate2::read::GzDecoder::new(code),
        left: cap,
        hit: hit.clone(),
    };
    let mut archive = ::tar::Archive::new(stream);
    let read = take_all(&mut archive, sink);
    match read {
        Err(_) if hit.get() => Err(sink.too_large()),
        other => other,
    }
}

fn take_all<R: Read>(archive: &mut ::tar::Archive<R>, sink: &mut Sink) -> Result<(), Refusal> {
    let entries = archive.entries().map_err(malformed)?;
    for entry in entries {
        let mut entry = entry.map_err(malformed)?;
        sink.count()?;
        let header = entry.header();
        let kind = header.entry_type();
        let name = String::from_utf8(entry.path_bytes().into_owned()).map_err(|err| {
            Refusal::entry(
                &String::from_utf8_lossy(err.as_bytes()),
                "its name is not UTF-8",
            )
        })?;
        let taken = match kind {
            ::tar::EntryType::Regular | ::tar::EntryType::Continuous => Kind::File,
            ::tar::EntryType::Directory => Kind::Folder,
            // Metadata of the archive as a whole: nothing to unpack.
            ::tar::EntryType::XGlobalHeader => continue,
            ::tar::EntryType::Symlink => {
                return Err(Refusal::entry(&name, "it is a symbolic link"))
            }
            ::tar::EntryType::Link => return Err(Refusal::entry(&name, "it is a hard link")),
            ::tar::EntryType::Char | ::tar::EntryType::Block | ::tar::EntryType::Fifo => {
                return Err(Refusal::entry(&name, "it is a device or FIFO"))
            }
            other => {
                return Err(Refusal::entry(
                    &name,
                    &format!("entries of type {other:?} are not taken"),
                ))
            }
        };
        match taken {
            Kind::Folder => sink.folder(&name)?,
            Kind::File => {
                let size = header.size().map_err(malformed)?;
                let executable = header.mode().is_ok_and(|mode| mode & 0o111 != 0);
                sink.file(&name, size, executable, &mut entry)?;
            }
        }
    }
    Ok(())
}

fn malformed(err: std::io::Error) -> Refusal {
    Refusal::Malformed {
        reason: err.to_string(),
    }
}

/// The inflated stream, cut after `left` bytes; `hit` tells that it was.
struct Capped<R> {
    inner: R,
    left: u64,
    hit: Rc<Cell<bool>>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            // One byte more than the cap shows whether the stream goes on.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? > 0 {
                self.hit.set(true);
            }
            return Ok(0);
        }
        let room = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.inner.read(&mut buf[..room])?;
        self.left -= n as u64;
        Ok(n)
    }
}
