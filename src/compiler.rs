//! Compiles a function's Go source into an executable with `go build`: one build directory
//! per compilation, a shared build cache under the data dir, an environment built from
//! scratch, a time limit, and at most `--compile-jobs` builds at once. Knows nothing of the
//! registry or of HTTP.

use crate::platform;
use crate::runner::child::{self, ChildSpec, Ending};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Condvar, Mutex};
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
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
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
        let mut free = self.0.free.lock().unwrap_or_else(|e| e.into_inner());
        *free += 1;
        self.0.freed.notify_one();
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
}

impl Compiler {
    pub fn new(
        go: PathBuf,
        timeout: Duration,
        memory: u64,
        user: Option<u32>,
        cache_dir: PathBuf,
        jobs: usize,
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
        }
    }

    pub fn go(&self) -> &Path {
        &self.go
    }

    /// Builds `source` into the executable `output` (written whole or not at all).
    pub fn compile(&self, source: &[u8], output: &Path) -> Result<(), CompileError> {
        let _slot = self.slots.acquire();
        let build_dir = self
            .cache_dir
            .join(format!("build-{}", crate::ids::new_id()));
        let result = self.compile_in(&build_dir, source, output);
        let _ = std::fs::remove_dir_all(&build_dir);
        result
    }

    fn compile_in(
        &self,
        build_dir: &Path,
        source: &[u8],
        output: &Path,
    ) -> Result<(), CompileError> {
        std::fs::create_dir_all(build_dir).map_err(CompileError::Io)?;
        std::fs::write(build_dir.join("main.go"), source).map_err(CompileError::Io)?;
        if let Some(uid) = self.user {
            platform::give_to_user(build_dir, uid).map_err(CompileError::Io)?;
        }
        let partial = build_dir.join(format!("function{}", platform::EXE_SUFFIX));
        let mut command = Command::new(&self.go);
        let cache = self.cache_dir.to_string_lossy().into_owned();
        let tmp = build_dir.to_string_lossy().into_owned();
        command
            .args(["build", "-trimpath", "-o"])
            .arg(&partial)
            .arg("main.go")
            .current_dir(build_dir)
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
            .env("GO111MODULE", "off")
            .env("CGO_ENABLED", "0")
            .env("GOTOOLCHAIN", "local")
            .env("GOPROXY", "off")
            .env("GOTELEMETRY", "off");
        let finished = child::run(ChildSpec {
            command,
            stdin: Vec::new(),
            timeout: self.timeout,
            stdout_limit: None,
            keep: OUTPUT_KEEP,
            sandbox: platform::Sandbox {
                limits: platform::Limits {
                    memory: platform::COMPILER_MEMORY_LIMIT.then_some(self.memory),
                    no_core_dumps: true,
                    ..platform::Limits::default()
                },
                user: self.user,
                // Nothing a build needs is on the network (GOPROXY=off, no cgo).
                no_network: platform::can_isolate_network(),
                // Builds share their user (and its build cache).
                exclusive_user: false,
            },
        })
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => {
                CompileError::ToolchainMissing {
                    go: self.go.clone(),
                    source,
                }
            }
            _ => CompileError::Io(source),
        })?;
        match finished.ending {
            Ending::Exited(0) => {}
            Ending::TimedOut => {
                return Err(CompileError::TimedOut {
                    limit: self.timeout,
                })
            }
            _ => {
                let mut text = String::from_utf8_lossy(&finished.stderr).into_owned();
                text.push_str(&String::from_utf8_lossy(&finished.stdout));
                return Err(CompileError::Rejected {
                    output: text.trim_end().to_string(),
                });
            }
        }
        // Opened for writing: Windows refuses to flush a read-only handle.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&partial)
            .map_err(CompileError::Io)?;
        file.sync_all().map_err(CompileError::Io)?;
        drop(file);
        if let Some(dir) = output.parent() {
            std::fs::create_dir_all(dir).map_err(CompileError::Io)?;
        }
        if self.user.is_some() {
            // The executable belongs to the server, not to the build user.
            platform::give_to_user(&partial, 0).map_err(CompileError::Io)?;
        }
        // The build dir lives in the data dir, so this rename never crosses file systems.
        platform::rename_durably(&partial, output).map_err(CompileError::Io)?;
        Ok(())
    }
}
