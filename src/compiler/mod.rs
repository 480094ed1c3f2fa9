//! Compiles a function's Go source into an executable with `go build`: one build directory
//! per compilation, a shared build cache under the data dir, an environment built from
//! scratch, a time limit, and at most `--compile-jobs` builds at once. Builds are in module
//! mode (a `go.mod` of the build directory's own): GOPATH mode compiled relative imports
//! (`import "../../../tmp/x"`), reaching code outside the build directory. What a build
//! writes must be a program: `package notmain` builds an archive, refused as not one.
//! Knows nothing of the registry or of HTTP.

mod gomod;

use crate::config::GoModules;
use crate::platform;
use crate::runner::child::{self, ChildSpec, Ending};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

/// Compiler output kept for the 422 answer.
const OUTPUT_KEEP: usize = 64 * 1024;

/// Why a compilation produced no executable.
#[derive(Debug)]
pub enum CompileError {
    /// The Go toolchain could not be started.
    ToolchainMissing { go: PathBuf, source: io::Error },
    /// `go build` refused the program.
    Rejected { output: String },
    /// The build ran past `--compile-timeout`.
    TimedOut { limit: Duration },
    /// The build directory or the output could not be written.
    Io(io::Error),
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileError::ToolchainMissing { go, source } => {
                write!(
                    f,
                    "cannot run the Go toolchain '{}': {source}",
                    go.display()
                )
            }
            CompileError::Rejected { output } => write!(f, "go build failed: {output}"),
            CompileError::TimedOut { limit } => {
                write!(
                    f,
                    "go build ran past {}",
                    crate::units::format_duration(*limit)
                )
            }
            CompileError::Io(err) => write!(f, "build files: {err}"),
        }
    }
}

/// A counting semaphore bounding concurrent builds.
struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Slots {
    fn acquire(&self) -> SlotGuard<'_> {
        let mut free = crate::sync::lock(&self.free);
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        SlotGuard(self)
    }
}

struct SlotGuard<'a>(&'a Slots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let mut free = crate::sync::lock(&self.0.free);
        *free += 1;
        self.0.freed.notify_one();
    }
}

/// What is built: one source file, or an unpacked package.
#[derive(Debug, Clone, Copy)]
pub enum Code<'a> {
    Source(&'a [u8]),
    Package {
        /// The package's files.
        root: &'a Path,
        /// Its content digest ([`crate::packages::digest`]).
        digest: &'a str,
        /// The folder of `package main` inside it; `None` for its root.
        main: Option<&'a str>,
    },
}

/// What the domain needs of a toolchain: the seam that lets registration, rollback and
/// restore be tested with a fake build (no Go, no process). [`Compiler`] is the real one.
pub trait Build: Send + Sync {
    /// The toolchain, for messages.
    fn go(&self) -> &Path;
    /// What decides a build's output besides the source (see [`Compiler::identity`]).
    fn identity(&self) -> Result<String, CompileError>;
    /// Builds `code` into the executable `output` (written whole or not at all); returns
    /// what the build printed.
    fn compile(&self, code: Code<'_>, output: &Path) -> Result<String, CompileError>;
    /// Removes the scratch folders a crash left behind.
    fn sweep_scratch(&self) {}
}

impl Build for Compiler {
    fn go(&self) -> &Path {
        Compiler::go(self)
    }
    fn identity(&self) -> Result<String, CompileError> {
        Compiler::identity(self)
    }
    fn compile(&self, code: Code<'_>, output: &Path) -> Result<String, CompileError> {
        Compiler::compile(self, code, output)
    }
    fn sweep_scratch(&self) {
        let Ok(entries) = std::fs::read_dir(&self.cache_dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("build-") {
                let _ = platform::remove_tree(&entry.path());
            }
        }
    }
}

/// The Go toolchain as the server uses it.
pub struct Compiler {
    go: PathBuf,
    timeout: Duration,
    /// Data memory of the build's processes (`--compile-memory`).
    memory: u64,
    /// The unprivileged user builds run as, when the server runs as root.
    user: Option<u32>,
    cache_dir: PathBuf,
    slots: Slots,
    /// See [`Compiler::identity`].
    identity: OnceLock<String>,
    /// Where packages' modules are downloaded from, if anywhere.
    modules: GoModules,
}

impl Compiler {
    pub fn new(
        go: PathBuf,
        timeout: Duration,
        memory: u64,
        user: Option<u32>,
        cache_dir: PathBuf,
        jobs: usize,
        modules: GoModules,
    ) -> Compiler {
        Compiler {
            go,
            timeout,
            memory,
            user,
            cache_dir,
            slots: Slots {
                free: Mutex::new(jobs.max(1)),
                freed: Condvar::new(),
            },
            identity: OnceLock::new(),
            modules,
        }
    }

    pub fn go(&self) -> &Path {
        &self.go
    }

    /// Builds `code` into the executable `output` (written whole or not at all); returns
    /// what `go build` printed.
    pub fn compile(&self, code: Code<'_>, output: &Path) -> Result<String, CompileError> {
        let _slot = self.slots.acquire();
        let build_dir = self
            .cache_dir
            .join(format!("build-{}", crate::ids::new_id()));
        let result = self.compile_in(&build_dir, code, output);
        let _ = platform::remove_tree(&build_dir);
        result
    }

    fn compile_in(
        &self,
        build_dir: &Path,
        code: Code<'_>,
        output: &Path,
    ) -> Result<String, CompileError> {
        let go_mod = format!(
            "module function\n\ngo {}\n",
            language_version(&self.identity()?)
        );
        std::fs::create_dir_all(build_dir).map_err(CompileError::Io)?;
        let (target, modules) = match code {
            Code::Source(source) => {
                std::fs::write(build_dir.join("main.go"), source).map_err(CompileError::Io)?;
                ("main.go".to_string(), Modules::None)
            }
            Code::Package { root, main, .. } => {
                copy_tree(root, build_dir).map_err(CompileError::Io)?;
                let target = main.map_or_else(|| ".".to_string(), |main| format!("./{main}"));
                (target, Modules::of(build_dir))
            }
        };
        if modules == Modules::None {
            std::fs::write(build_dir.join("go.mod"), go_mod).map_err(CompileError::Io)?;
        } else {
            let declared =
                std::fs::read_to_string(build_dir.join("go.mod")).map_err(CompileError::Io)?;
            let toolchain = self.toolchain_version()?;
            if let Some(output) = gomod::refuse(&declared, &toolchain) {
                return Err(CompileError::Rejected { output });
            }
        }
        let scratch = temp_dir_of(build_dir);
        std::fs::create_dir(&scratch).map_err(CompileError::Io)?;
        if let Some(uid) = self.user {
            platform::give_tree_to_user(build_dir, uid).map_err(CompileError::Io)?;
            platform::give_to_user(&scratch, uid).map_err(CompileError::Io)?;
        }
        if modules == Modules::Download && self.modules.downloads() {
            self.download(build_dir)?;
        }
        let partial = build_dir.join(format!("function{}", platform::EXE_SUFFIX));
        let mut command = self.go_command(build_dir);
        command.args(["build", "-trimpath"]);
        match modules {
            Modules::Vendored => command.arg("-mod=vendor"),
            // go.sum decides: nothing is added to it, and nothing is fetched now.
            Modules::Download => command.arg("-mod=readonly"),
            Modules::None => &mut command,
        };
        command.arg("-o").arg(&partial).arg(&target);
        let finished = self.run_go(command, Some(self.memory), false)?;
        match finished.ending {
            Ending::Exited(0) => {}
            Ending::TimedOut => {
                return Err(CompileError::TimedOut {
                    limit: self.timeout,
                })
            }
            _ => {
                let output = output_text(&finished);
                let unreachable = [
                    "GOPROXY=off",
                    "missing go.sum entry",
                    "no required module provides",
                ];
                let unreachable =
                    modules == Modules::Download && unreachable.iter().any(|m| output.contains(m));
                if unreachable && self.modules.downloads() {
                    return Err(CompileError::Rejected {
                        output: format!(
                            "the package's go.sum must list every module it uses (it is the \
                             authority: --gosumdb is {}); run `go mod tidy` and send it again\n\n{output}",
                            self.modules.sumdb
                        ),
                    });
                }
                if unreachable {
                    return Err(CompileError::Rejected {
                        output: format!(
                            "the package's go.mod needs modules the server cannot fetch: vendor \
                             them into the package with `go mod vendor`, or start the server \
                             with --goproxy\n\n{output}"
                        ),
                    });
                }
                return Err(CompileError::Rejected { output });
            }
        }
        let mut magic = vec![0u8; platform::EXECUTABLE_MAGIC.len()];
        let is_program = std::fs::File::open(&partial)
            .and_then(|mut file| std::io::Read::read_exact(&mut file, &mut magic))
            .is_ok_and(|()| magic == platform::EXECUTABLE_MAGIC);
        if !is_program {
            return Err(CompileError::Rejected {
                output: "the code builds a library, not a program: a function is \
                         `package main` with a `func main()`"
                    .into(),
            });
        }
        platform::sync_file(&partial).map_err(CompileError::Io)?;
        if let Some(dir) = output.parent() {
            std::fs::create_dir_all(dir).map_err(CompileError::Io)?;
        }
        if self.user.is_some() {
            // The executable belongs to the server, not to the build user.
            platform::give_to_user(&partial, 0).map_err(CompileError::Io)?;
        }
        // The contents are synced; the name is not: the build store is a cache, and the
        // version's own link to it (see `builds`) is what is made durable.
        install(&partial, output).map_err(CompileError::Io)?;
        Ok(output_text(&finished))
    }

    /// Fetches the modules a package's `go.mod` needs into the module cache, the only step
    /// of a build that may reach the network. `go.mod` and `go.sum` are put back as they
    /// were afterwards, so the build checks the package's own `go.sum`.
    fn download(&self, build_dir: &Path) -> Result<(), CompileError> {
        let kept: Vec<(PathBuf, Option<Vec<u8>>)> = ["go.mod", "go.sum"]
            .iter()
            .map(|name| {
                let path = build_dir.join(name);
                let bytes = std::fs::read(&path).ok();
                (path, bytes)
            })
            .collect();
        let mut command = self.go_command(build_dir);
        command
            .env("GOPROXY", &self.modules.proxy)
            .env("GOSUMDB", &self.modules.sumdb)
            .env("GOPRIVATE", &self.modules.private)
            .env("GONOSUMDB", &self.modules.nosumdb)
            .args(["mod", "download"]);
        let finished = self.run_go(command, Some(self.memory), true)?;
        for (path, bytes) in kept {
            match bytes {
                Some(bytes) => std::fs::write(&path, bytes).map_err(CompileError::Io)?,
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        match finished.ending {
            Ending::Exited(0) => Ok(()),
            Ending::TimedOut => Err(CompileError::TimedOut {
                limit: self.timeout,
            }),
            _ => Err(CompileError::Rejected {
                output: format!(
                    "the package's modules could not be downloaded through --goproxy:\n\n{}",
                    output_text(&finished)
                ),
            }),
        }
    }

    /// The toolchain's Go version (`go1.19.8`), from its identity.
    fn toolchain_version(&self) -> Result<String, CompileError> {
        Ok(self
            .identity()?
            .lines()
            .find_map(|line| line.strip_prefix("version="))
            .unwrap_or_default()
            .to_string())
    }

    /// What decides the output of a build apart from the source: the toolchain's path, its
    /// version and the target system, as `go env` reports them in the build's environment.
    /// Asked once per server process (a toolchain replaced while the server runs is noticed
    /// at the next start); a failure is not remembered.
    pub fn identity(&self) -> Result<String, CompileError> {
        if let Some(identity) = self.identity.get() {
            return Ok(identity.clone());
        }
        let mut command = self.go_command(&self.cache_dir);
        command.args(["env", "GOVERSION", "GOOS", "GOARCH"]);
        // A fixed query, not a build: `--compile-memory` bounds builds, not this.
        let finished = self.run_go(command, None, false)?;
        let text = String::from_utf8_lossy(&finished.stdout).into_owned();
        let values: Vec<&str> = text.lines().map(str::trim).collect();
        let answered = matches!(finished.ending, Ending::Exited(0))
            && values.len() == 3
            && values.iter().all(|v| !v.is_empty());
        if !answered {
            return Err(CompileError::ToolchainMissing {
                go: self.go.clone(),
                source: io::Error::other(format!(
                    "'go env GOVERSION GOOS GOARCH' did not answer: {}",
                    output_text(&finished)
                )),
            });
        }
        let identity = format!(
            "go={}\nversion={}\nGOOS={}\nGOARCH={}\nflags=-trimpath CGO_ENABLED=0 GO111MODULE=on",
            self.go.display(),
            values[0],
            values[1],
            values[2]
        );
        Ok(self.identity.get_or_init(|| identity).clone())
    }

    /// A `go` command with the build environment, made from scratch, running in `dir`.
    fn go_command(&self, dir: &Path) -> Command {
        let mut command = Command::new(&self.go);
        let cache = self.cache_dir.to_string_lossy().into_owned();
        // Not `dir` itself: go ignores a go.mod in the system's temporary folder.
        let tmp = temp_dir_of(dir).to_string_lossy().into_owned();
        command
            .current_dir(dir)
            .env_clear()
            .envs(platform::compile_env())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &cache)
            .env("GOCACHE", self.cache_dir.join("go-build"))
            .env("GOPATH", self.cache_dir.join("gopath"))
            .env("GOTMPDIR", &tmp)
            .env("TMPDIR", &tmp)
            .env("TMP", &tmp)
            .env("TEMP", &tmp)
            .env("GOENV", "off")
            .env("GOFLAGS", "")
            .env("GO111MODULE", "on")
            .env("GOWORK", "off")
            .env("GOSUMDB", "off")
            .env("CGO_ENABLED", "0")
            .env("GOTOOLCHAIN", "local")
            .env("GOPROXY", "off")
            .env("GOTELEMETRY", "off");
        command
    }

    /// Runs a `go` command as builds run: time limit, build user, no network, and `memory`
    /// as the data memory limit of its processes where the platform sets one.
    fn run_go(
        &self,
        command: Command,
        memory: Option<u64>,
        network: bool,
    ) -> Result<child::Finished, CompileError> {
        child::run(ChildSpec {
            command,
            stdin: Vec::new(),
            timeout: self.timeout,
            stdout_limit: None,
            keep: OUTPUT_KEEP,
            sandbox: platform::Sandbox {
                limits: platform::Limits {
                    memory: memory.filter(|_| platform::COMPILER_MEMORY_LIMIT),
                    no_core_dumps: true,
                    ..platform::Limits::default()
                },
                user: self.user,
                // Nothing a build needs is on the network (GOPROXY=off, no cgo).
                no_network: !network && platform::can_isolate_network(),
                // Builds share their user (and its build cache).
                exclusive_user: false,
            },
            program: None,
        })
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => {
                CompileError::ToolchainMissing {
                    go: self.go.clone(),
                    source,
                }
            }
            _ => CompileError::Io(source),
        })
    }
}

/// The temporary folder of a build in `dir`.
fn temp_dir_of(dir: &Path) -> PathBuf {
    dir.join(".tmp")
}

/// The language version of a `go.mod` for the toolchain of `identity`: `1.24` of
/// `go1.24.4` (a development toolchain, `devel go1.25-…`, too).
fn language_version(identity: &str) -> String {
    identity
        .lines()
        .find_map(|l| l.strip_prefix("version="))
        .and_then(|v| v.split("go").nth(1))
        .map(|v| {
            v.split(['.', '-', ' '])
                .take(2)
                .filter(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                .collect::<Vec<_>>()
                .join(".")
        })
        .filter(|v| v.contains('.'))
        .unwrap_or_else(|| "1.21".into())
}

/// A failed command's stderr then stdout, trimmed.
fn output_text(finished: &child::Finished) -> String {
    let mut text = String::from_utf8_lossy(&finished.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&finished.stdout));
    text.trim_end().to_string()
}

/// Moves the finished `partial` to `output`: a rename, or (a build area outside the data
/// dir's file system) a synced copy beside `output` renamed over it, so `output` is whole
/// or absent at every instant.
fn install(partial: &Path, output: &Path) -> io::Result<()> {
    match platform::replace_file(partial, output) {
        Err(err) if err.kind() == io::ErrorKind::CrossesDevices => {
            let copy = output.with_extension(format!("copy-{}", crate::ids::new_id()));
            let copied = std::fs::copy(partial, &copy)
                .and_then(|_| platform::sync_file(&copy))
                .and_then(|()| platform::replace_file(&copy, output));
            if copied.is_err() {
                let _ = std::fs::remove_file(&copy);
            }
            copied
        }
        other => other,
    }
}

/// How a package's modules come to its build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Modules {
    /// No `go.mod`: the server writes one; the standard library only.
    None,
    /// `go.mod` and `vendor/modules.txt`: `-mod=vendor`, never any network.
    Vendored,
    /// `go.mod` without `vendor/`: modules would have to be downloaded.
    Download,
}

impl Modules {
    fn of(dir: &Path) -> Modules {
        if !dir.join("go.mod").is_file() {
            Modules::None
        } else if dir.join("vendor").join("modules.txt").is_file() {
            Modules::Vendored
        } else {
            Modules::Download
        }
    }
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

#[cfg(test)]
mod tests {
    use super::language_version;

    #[test]
    fn the_language_version_is_the_toolchain_s() {
        for (version, expected) in [
            ("go1.24.4", "1.24"),
            ("go1.19.8", "1.19"),
            ("go1.22", "1.22"),
            ("devel go1.25-abc123 Tue", "1.25"),
            ("weird", "1.21"),
        ] {
            let identity = format!("go=go\nversion={version}\nGOOS=linux");
            assert_eq!(language_version(&identity), expected, "{version}");
        }
    }
}
