//! A version's tree: the folder an interpreted function runs from (its files, the
//! dependencies installed at registration, and a stamp naming its entry point). A build
//! finishes one by copying what it made, regular files and folders only, into a folder the
//! server owns, readable by every user (runs reach it through a descriptor, see
//! `platform::open_tree`), synced, then renamed into place: a tree with its stamp is
//! whole. Knows no language.
//!
//! Durability: a tree is made whole in a folder of its own, its file system synced once
//! (`platform::sync_tree`: a sync per file of a `node_modules` of thousands costs seconds),
//! then renamed into place and its parent synced.

use super::CompileError;
use crate::platform;
use std::io;
use std::path::{Path, PathBuf};

/// The stamp inside a finished tree: the entry point, relative to the tree.
pub const STAMP: &str = ".golambda-entry";

/// The entry point of the finished tree at `tree`; `None` when it is not a whole tree.
pub fn entry_of(tree: &Path) -> Option<String> {
    let entry = std::fs::read_to_string(tree.join(STAMP)).ok()?;
    (!entry.is_empty() && tree.join(&entry).is_file()).then_some(entry)
}

/// What a tree may take from a build folder: the user its files must belong to (the build
/// user, when builds have one: a file of anyone else's got there by a link), how many
/// bytes in all, and how many files and folders.
#[derive(Debug, Clone, Copy)]
pub struct Taking {
    pub owner: Option<u32>,
    pub bytes: u64,
    pub entries: u64,
}

/// Makes `output` a tree of what `built` holds (leaving out `skip`, names at its top such
/// as the build's temporary folder), with `entry` as its entry point.
pub fn finish(
    built: &Path,
    skip: &[&str],
    entry: &str,
    output: &Path,
    taking: Taking,
) -> Result<(), CompileError> {
    let partial = beside(output, "part");
    let made = (|| -> io::Result<()> {
        std::fs::create_dir_all(&partial)?;
        copy_shared(built, &partial, skip, taking)?;
        let stamp = partial.join(STAMP);
        std::fs::write(&stamp, entry)?;
        platform::make_shared(&stamp, false)?;
        platform::make_shared(&partial, true)?;
        platform::sync_tree(&partial)?;
        place(&partial, output)
    })();
    if made.is_err() {
        let _ = platform::remove_tree(&partial);
    }
    made.map_err(|err| match err.kind() {
        // What the build made is beyond the bounds (see `copy_shared`).
        io::ErrorKind::FileTooLarge | io::ErrorKind::InvalidData => CompileError::Rejected {
            output: err.to_string(),
        },
        _ => CompileError::Io(err),
    })
}

/// Makes `to` the same tree as `from`: each file a hard link (a copy where the file system
/// cannot link), each folder made anew; whatever `to` was is replaced whole.
pub fn link(from: &Path, to: &Path) -> io::Result<()> {
    let partial = beside(to, "link");
    let made = mirror(from, &partial)
        .and_then(|()| platform::sync_tree(&partial))
        .and_then(|()| place(&partial, to));
    if made.is_err() {
        let _ = platform::remove_tree(&partial);
    }
    made
}

/// A fresh name beside `path`.
fn beside(path: &Path, what: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{what}-{}", crate::ids::new_id()))
}

/// Renames the finished `partial` over `output` (removing an old tree first) and makes
/// the rename durable.
fn place(partial: &Path, output: &Path) -> io::Result<()> {
    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match platform::remove_tree(output) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    std::fs::rename(partial, output)?;
    platform::sync_dir(output.parent().unwrap_or_else(|| Path::new(".")))
}

/// Copies the regular files and folders under `from` into `to` (which exists), each file
/// readable by every user; links, devices and the like are left out, nothing is reached
/// through a link (the build's user may still be changing `from`), a file of another owner
/// than `taking.owner` is left out, and past `taking.bytes` or `taking.entries` in all the
/// copy fails with `FileTooLarge` (a name that is not UTF-8, or folders nested too deep:
/// `InvalidData`).
fn copy_shared(from: &Path, to: &Path, skip: &[&str], taking: Taking) -> io::Result<()> {
    let mut folders = vec![to.to_path_buf()];
    let mut left = taking.bytes;
    let mut entries = 0u64;
    platform::walk_no_follow(from, skip, &mut |path, found| {
        entries += 1;
        if entries > taking.entries {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!(
                    "the build made more than {} files and folders, the bound of a function's \
                     tree ({} times a package's)",
                    taking.entries,
                    crate::packages::UNPACKED_FACTOR
                ),
            ));
        }
        let target = to.join(path);
        match found {
            platform::Found::Folder => {
                std::fs::create_dir(&target)?;
                folders.push(target);
            }
            platform::Found::File {
                file,
                executable,
                owner,
            } => {
                if taking.owner.is_some_and(|expected| expected != owner) {
                    log::warn!("left out of a tree: {path}, a file the build did not make");
                    return Ok(());
                }
                let mut copy = std::fs::File::create_new(&target)?;
                // One byte past what is left tells a file too large from one that fits.
                let copied = io::copy(&mut io::Read::take(file, left + 1), &mut copy)?;
                if copied > left {
                    return Err(io::Error::new(
                        io::ErrorKind::FileTooLarge,
                        format!(
                            "the build's files come to more than {} bytes, the bound of a \
                             function's files ({} times --max-package)",
                            taking.bytes,
                            crate::packages::UNPACKED_FACTOR
                        ),
                    ));
                }
                left -= copied;
                platform::make_shared(&target, executable)?;
            }
        }
        Ok(())
    })?;
    for folder in folders.iter().rev() {
        platform::make_shared(folder, true)?;
    }
    Ok(())
}

/// Makes `to` hold hard links to every file under `from`.
fn mirror(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            mirror(&entry.path(), &target)?;
        } else if kind.is_file() && std::fs::hard_link(entry.path(), &target).is_err() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    platform::make_shared(to, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_tree_is_whole_shared_and_names_its_entry() {
        let root = std::env::temp_dir().join(format!("golambda-tree-{}", crate::ids::new_id()));
        let built = root.join("built");
        std::fs::create_dir_all(built.join("pkg").join("deep")).expect("mkdir");
        std::fs::create_dir_all(built.join(".tmp")).expect("mkdir");
        std::fs::write(built.join("main.py"), b"print(1)").expect("write");
        std::fs::write(built.join("pkg/deep/m.py"), b"x = 1").expect("write");
        std::fs::write(built.join(".tmp/junk"), b"junk").expect("write");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc/passwd", built.join("link")).expect("symlink");
            std::os::unix::fs::symlink("/etc", built.join("linked-folder")).expect("symlink");
        }
        let output = root.join("plugins").join("v1");
        let taking = Taking {
            owner: None,
            bytes: 1 << 20,
            entries: 100,
        };
        finish(&built, &[".tmp"], "main.py", &output, taking).expect("finished");
        assert_eq!(entry_of(&output).as_deref(), Some("main.py"));
        assert!(output.join("pkg/deep/m.py").is_file());
        assert!(!output.join(".tmp").exists(), "skipped");
        assert!(
            std::fs::symlink_metadata(output.join("link")).is_err(),
            "no links"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode(&output), 0o755);
            assert_eq!(mode(&output.join("pkg/deep")), 0o755);
            assert_eq!(mode(&output.join("main.py")), 0o644);
        }
        // A second finish replaces the first whole; a link mirrors it.
        std::fs::write(built.join("main.py"), b"print(2)").expect("write");
        finish(&built, &[".tmp"], "main.py", &output, taking).expect("again");
        assert_eq!(
            std::fs::read(output.join("main.py")).expect("read"),
            b"print(2)"
        );
        let linked = root.join("plugins").join("f").join("v2");
        link(&output, &linked).expect("linked");
        assert_eq!(entry_of(&linked).as_deref(), Some("main.py"));
        assert_eq!(
            std::fs::read(linked.join("pkg/deep/m.py")).expect("read"),
            b"x = 1"
        );
        let leftovers: Vec<_> = std::fs::read_dir(root.join("plugins"))
            .expect("list")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        // Files of another owner than the build's are not taken.
        #[cfg(unix)]
        {
            let stranger = Taking {
                owner: Some(platform::owner_of(&built.join("main.py")).unwrap_or(0) + 1),
                bytes: 1 << 20,
                entries: 100,
            };
            let elsewhere = root.join("strange");
            finish(&built, &[".tmp"], "main.py", &elsewhere, stranger).expect("finished");
            assert!(!elsewhere.join("main.py").exists());
            assert!(!elsewhere.join("pkg/deep/m.py").exists());
            assert_eq!(entry_of(&elsewhere), None);
        }
        // Past the bound: refused, nothing left behind.
        let small = Taking {
            owner: None,
            bytes: 8,
            entries: 100,
        };
        let refused = finish(&built, &[".tmp"], "main.py", &root.join("big"), small);
        assert!(matches!(refused, Err(CompileError::Rejected { .. })));
        assert!(!root.join("big").exists());
        // Past the bound on files and folders likewise (main.py, pkg, pkg/deep, pkg/deep/m.py).
        let few = Taking {
            owner: None,
            bytes: 1 << 20,
            entries: 3,
        };
        let refused = finish(&built, &[".tmp"], "main.py", &root.join("many"), few);
        match refused {
            Err(CompileError::Rejected { output }) => {
                assert!(output.contains("more than 3 files"), "{output}")
            }
            other => panic!("{other:?}"),
        }
        assert!(!root.join("many").exists());
        // Folders nested past the walk's depth: refused (each level would hold a descriptor).
        #[cfg(unix)]
        {
            let mut deep = built.join("nest");
            for _ in 0..=platform::WALK_DEPTH {
                deep.push("d");
            }
            std::fs::create_dir_all(&deep).expect("nested folders");
            let roomy = Taking {
                entries: 1000,
                ..taking
            };
            let refused = finish(&built, &[".tmp"], "main.py", &root.join("deep"), roomy);
            match refused {
                Err(CompileError::Rejected { output }) => {
                    assert!(output.contains("nested more than"), "{output}")
                }
                other => panic!("{other:?}"),
            }
            platform::remove_tree(&built.join("nest")).expect("removed");
        }
        // A tree without its stamp, or whose entry is gone, is not whole.
        std::fs::remove_file(linked.join("main.py")).expect("rm");
        assert_eq!(entry_of(&linked), None);
        let _ = platform::remove_tree(&root);
    }
}
