//! The build confinement every runtime's build runs in: one scratch folder per build in the
//! build area, the build user (when the server runs as root), no network unless a step
//! downloads dependencies, `--compile-timeout`, `--compile-memory`, and at most
//! `--compile-jobs` builds at once across all runtimes. Also installs what a build made:
//! an executable file, or a tree (see [`super::tree`]). Knows no language.

use super::CompileError;
use crate::platform;
use crate::runner::child::{self, ChildSpec, Ending, Finished};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// The largest program a build may make (a tree's bound is `max_bytes`).
const MAX_PROGRAM: u64 = 1 << 30;

/// Build output kept for the 422 answer.
pub const OUTPUT_KEEP: usize = 64 * 1024;

/// A counting semaphore bounding concurrent builds.
struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

/// A build's place among `--compile-jobs`, given back on drop.
pub struct Slot<'a>(&'a Slots);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut free = crate::sync::lock(&self.0.free);
        *free += 1;
        self.0.freed.notify_one();
    }
}

/// The build confinement, shared by every runtime.
pub struct Builder {
    timeout: Duration,
    /// Data memory of a build's processes (`--compile-memory`).
    memory: u64,
    /// The unprivileged user builds run as, when the server runs as root.
    user: Option<u32>,
    /// Where builds run and toolchains keep their caches.
    area: PathBuf,
    slots: Slots,
    /// The most a tree's files may take together.
    max_bytes: u64,
}

/// One build's scratch folder, removed when dropped, and when the build must be done by
/// (`--compile-timeout` bounds a whole build, however many steps it takes).
pub struct Scratch {
    pub dir: PathBuf,
    pub deadline: Instant,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = platform::remove_tree(&self.dir);
    }
}

impl Scratch {
    /// The build's temporary folder (`TMPDIR`), inside its scratch folder.
    pub fn tmp(&self) -> PathBuf {
        temp_dir_of(&self.dir)
    }
}

/// The name of a build's temporary folder, inside its scratch folder (a package may not
/// hold one of this name at its top).
pub const TMP: &str = ".golambda-tmp";

/// The temporary folder of a build in `dir`.
pub fn temp_dir_of(dir: &Path) -> PathBuf {
    dir.join(TMP)
}

impl Builder {
    pub fn new(
        timeout: Duration,
        memory: u64,
        user: Option<u32>,
        area: PathBuf,
        jobs: usize,
        max_bytes: u64,
    ) -> Builder {
        Builder {
            timeout,
            memory,
            user,
            area,
            slots: Slots {
                free: Mutex::new(jobs.max(1)),
                freed: Condvar::new(),
            },
            max_bytes,
        }
    }

    /// Makes `output` the tree of what the build folder `dir` holds (see
    /// [`super::tree::finish`]): only files of the build user, at most `max_bytes`.
    pub fn finish_tree(&self, dir: &Path, entry: &str, output: &Path) -> Result<(), CompileError> {
        let taking = super::tree::Taking {
            owner: self.user,
            bytes: self.max_bytes,
            entries: crate::packages::MAX_ENTRIES * crate::packages::UNPACKED_FACTOR,
        };
        super::tree::finish(dir, &[TMP], entry, output, taking)
    }

    /// Whether builds and runs execute as users other than the server's.
    pub fn confined(&self) -> bool {
        self.user.is_some()
    }

    pub fn user(&self) -> Option<u32> {
        self.user
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The build area: scratch folders and the toolchains' caches.
    pub fn area(&self) -> &Path {
        &self.area
    }

    /// Waits for a place among `--compile-jobs`.
    pub fn slot(&self) -> Slot<'_> {
        let mut free = crate::sync::lock(&self.slots.free);
        while *free == 0 {
            free = self
                .slots
                .freed
                .wait(free)
                .unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        Slot(&self.slots)
    }

    /// A fresh scratch folder with its temporary folder; [`Builder::give`] it to the build
    /// user once the code is in it.
    pub fn scratch(&self) -> Result<Scratch, CompileError> {
        let scratch = Scratch {
            dir: self.area.join(format!("build-{}", crate::ids::new_id())),
            deadline: Instant::now() + self.timeout,
        };
        std::fs::create_dir_all(scratch.tmp()).map_err(CompileError::Io)?;
        Ok(scratch)
    }

    /// Gives a folder and what it holds to the build user.
    pub fn give(&self, dir: &Path) -> Result<(), CompileError> {
        if let Some(uid) = self.user {
            platform::give_tree_to_user(dir, uid).map_err(CompileError::Io)?;
        }
        Ok(())
    }

    /// Removes the scratch folders a crash left behind.
    pub fn sweep_scratch(&self) {
        let Ok(entries) = std::fs::read_dir(&self.area) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("build-") {
                let _ = platform::remove_tree(&entry.path());
            }
        }
    }

    /// A command of a build step: `program` in `dir`, an environment made from scratch
    /// (`PATH`, `HOME` in the build area, the temporary variables at `tmp`), to which the
    /// runtime adds its own.
    pub fn command(&self, program: &Path, dir: &Path, tmp: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .current_dir(dir)
            .env_clear()
            .envs(platform::compile_env())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.area)
            .env("LANG", "C.UTF-8")
            .env("TMPDIR", tmp)
            .env("TMP", tmp)
            .env("TEMP", tmp);
        command
    }

    /// Runs a build step as builds run: time limit, build user, no network unless
    /// `network`, and `--compile-memory` as the data memory limit of its processes where
    /// the platform sets one (`limited: false` for a fixed query such as `--version`).
    /// A step that cannot start is the toolchain `tool` missing.
    pub fn run(
        &self,
        command: Command,
        tool: &Path,
        limited: bool,
        network: bool,
    ) -> Result<Finished, CompileError> {
        self.run_by(
            command,
            tool,
            limited,
            network,
            Instant::now() + self.timeout,
        )
    }

    /// [`Builder::run`] for a step of a build that must be done by `deadline` (its
    /// [`Scratch::deadline`]): past it, the step is not started, or is stopped.
    pub fn run_by(
        &self,
        command: Command,
        tool: &Path,
        limited: bool,
        network: bool,
        deadline: Instant,
    ) -> Result<Finished, CompileError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(CompileError::TimedOut {
                limit: self.timeout,
            });
        }
        child::run(ChildSpec {
            command,
            stdin: Vec::new(),
            timeout: left,
            stdout_limit: None,
            keep: OUTPUT_KEEP,
            sandbox: platform::Sandbox {
                limits: platform::Limits {
                    memory: Some(self.memory)
                        .filter(|_| limited && platform::COMPILER_MEMORY_LIMIT),
                    no_core_dumps: true,
                    ..platform::Limits::default()
                },
                user: self.user,
                no_network: !network && platform::can_isolate_network(),
                // Builds share their user (and its caches).
                exclusive_user: false,
            },
            program: None,
            tree: None,
        })
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => {
                CompileError::ToolchainMissing {
                    tool: tool.to_path_buf(),
                    source,
                }
            }
            _ => CompileError::Io(source),
        })
    }

    /// A step that had to succeed: its output, or what refused the code (a time-out is
    /// its own error).
    pub fn succeeded(&self, finished: Finished) -> Result<Finished, CompileError> {
        match finished.ending {
            Ending::Exited(0) => Ok(finished),
            Ending::TimedOut => Err(CompileError::TimedOut {
                limit: self.timeout,
            }),
            _ => Err(CompileError::Rejected {
                output: output_text(&finished),
            }),
        }
    }

    /// What `tool` answers to `args` (such as `--version`), run as builds run: its first
    /// line of output. A tool that cannot start, or fails, is missing.
    pub fn ask(&self, tool: &Path, args: &[&str]) -> Result<String, CompileError> {
        let mut command = self.command(tool, &self.area, &temp_dir_of(&self.area));
        command.args(args);
        let finished = self.run(command, tool, false, false)?;
        let text = output_text(&finished);
        match finished.ending {
            Ending::Exited(0) => Ok(text.lines().next().unwrap_or_default().trim().to_string()),
            _ => Err(CompileError::ToolchainMissing {
                tool: tool.to_path_buf(),
                source: io::Error::other(format!(
                    "'{} {}' did not answer: {text}",
                    tool.display(),
                    args.join(" ")
                )),
            }),
        }
    }

    /// Installs the executable a build wrote at `partial` as `output`, checking it is one
    /// (`what` says what was built instead when it is not). `partial` is in the build
    /// user's folder: it is opened without following a link, and its bytes (at most
    /// 1 GiB) are copied into a new file of the server's, synced, renamed over
    /// `output`, so `output` is whole or absent at every instant.
    pub fn finish_executable(
        &self,
        partial: &Path,
        output: &Path,
        what: &str,
    ) -> Result<(), CompileError> {
        use std::io::{Read, Seek};
        let not_one = || CompileError::Rejected {
            output: what.to_string(),
        };
        let mut built = platform::open_no_follow(partial).map_err(|_| not_one())?;
        if !built.metadata().map_err(CompileError::Io)?.is_file() {
            return Err(not_one());
        }
        let mut magic = vec![0u8; platform::EXECUTABLE_MAGIC.len()];
        let is_program = built
            .read_exact(&mut magic)
            .is_ok_and(|()| magic == platform::EXECUTABLE_MAGIC);
        if !is_program {
            return Err(not_one());
        }
        built.rewind().map_err(CompileError::Io)?;
        if let Some(dir) = output.parent() {
            std::fs::create_dir_all(dir).map_err(CompileError::Io)?;
        }
        let copy = output.with_extension(format!("copy-{}", crate::ids::new_id()));
        let copied = (|| -> io::Result<u64> {
            let mut file = platform::create_package_file(&copy, true)?;
            let copied = io::copy(&mut built.take(MAX_PROGRAM + 1), &mut file)?;
            file.sync_all()?;
            Ok(copied)
        })();
        let placed = match copied {
            Ok(copied) if copied > MAX_PROGRAM => Err(CompileError::Rejected {
                output: format!("the program is larger than {MAX_PROGRAM} bytes"),
            }),
            Ok(_) => platform::replace_file(&copy, output).map_err(CompileError::Io),
            Err(err) => Err(CompileError::Io(err)),
        };
        if placed.is_err() {
            let _ = std::fs::remove_file(&copy);
        }
        // The contents are synced; the name is not: the build store is a cache, and the
        // version's own link to it (see `builds`) is what is made durable.
        placed
    }
}

/// A failed command's stderr then stdout, trimmed.
pub fn output_text(finished: &Finished) -> String {
    let mut text = String::from_utf8_lossy(&finished.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&finished.stdout));
    text.trim_end().to_string()
}

/// Copies the files and folders under `from` into `to` (which exists); anything else is
/// left out (an unpacked package holds nothing else).
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            std::fs::create_dir(&target)?;
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Copies the package at `root` into the build folder `dir`, which holds the build's
/// temporary folder already: a package may not hold one of that name at its top.
pub fn copy_package(root: &Path, dir: &Path) -> Result<(), CompileError> {
    if root.join(TMP).exists() {
        return Err(CompileError::Rejected {
            output: format!("the package may not hold a {TMP} at its top"),
        });
    }
    copy_tree(root, dir).map_err(CompileError::Io)
}

/// Puts `code` in the build folder `dir`: one source file as `default`, or the package's
/// files. Returns the entry point, `main` or `default`, which must be a file there.
pub fn stage(code: super::Code<'_>, dir: &Path, default: &str) -> Result<String, CompileError> {
    let entry = match code {
        super::Code::Source(source) => {
            std::fs::write(dir.join(default), source).map_err(CompileError::Io)?;
            default.to_string()
        }
        super::Code::Package { root, main, .. } => {
            copy_package(root, dir)?;
            main.unwrap_or(default).to_string()
        }
    };
    if !dir.join(&entry).is_file() {
        return Err(CompileError::Rejected {
            output: format!(
                "the package has no {entry}: put the entry point there, or name it with \"main\""
            ),
        });
    }
    Ok(entry)
}

/// Every file under `dir` whose name ends with one of `suffixes`, relative to `dir` with
/// `/` separators, sorted; folders named in `skip` are not entered.
pub fn files_with(dir: &Path, suffixes: &[&str], skip: &[&str]) -> io::Result<Vec<String>> {
    fn walk(
        dir: &Path,
        prefix: &str,
        suffixes: &[&str],
        skip: &[&str],
        found: &mut Vec<String>,
    ) -> io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = entry.file_type()?;
            let path = format!("{prefix}{name}");
            if kind.is_dir() && !skip.contains(&name.as_str()) && name != TMP {
                walk(&entry.path(), &format!("{path}/"), suffixes, skip, found)?;
            } else if kind.is_file() && suffixes.iter().any(|s| name.ends_with(s)) {
                found.push(path);
            }
        }
        Ok(())
    }
    let mut found = Vec::new();
    walk(dir, "", suffixes, skip, &mut found)?;
    found.sort();
    Ok(found)
}
