//! The languages a function may be written in, behind one interface ([`Runtime`]): finding
//! the toolchain and its version, checking or building a version at registration, and the
//! command a run executes. One file per language (`go/`, `python.rs`, `node.rs`, `rust.rs`,
//! `sh.rs`); what they share is here and in `builder.rs` (the build confinement: build user,
//! no network, time and memory limits, `--compile-jobs`), `toolchain.rs` (finding a
//! toolchain the build and run users can reach) and `tree.rs` (a version's files as runs
//! see them). Knows nothing of the registry or of HTTP.

pub mod builder;
pub mod go;
mod node;
mod python;
mod rust;
mod sh;
pub mod toolchain;
pub mod tree;

pub use builder::Builder;
pub use go::Compiler;

use crate::config::Config;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The runtimes of the contract (section 8), with what is fixed about each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Go,
    Python,
    Node,
    Rust,
    Sh,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Go, Kind::Python, Kind::Node, Kind::Rust, Kind::Sh];

    pub fn of(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Go => "go",
            Kind::Python => "python",
            Kind::Node => "node",
            Kind::Rust => "rust",
            Kind::Sh => "sh",
        }
    }

    /// Whether `main` names a folder (Go's `package main`) rather than a file.
    pub fn main_is_folder(self) -> bool {
        self == Kind::Go
    }

    /// Whether the runtime can serve warm (`fcgi`) processes.
    pub fn warm(self) -> bool {
        self == Kind::Go
    }

    /// What a build of the runtime makes.
    pub fn artifact(self) -> Artifact {
        match self {
            Kind::Go | Kind::Rust => Artifact::Executable,
            Kind::Python | Kind::Node | Kind::Sh => Artifact::Tree,
        }
    }

    /// Whether the runtime exists on this OS.
    pub fn here(self) -> bool {
        self != Kind::Sh || cfg!(unix)
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
        /// The entry point inside it (a folder for Go, a file otherwise); `None` for the
        /// runtime's default.
        main: Option<&'a str>,
    },
}

/// Why a build produced nothing.
#[derive(Debug)]
pub enum CompileError {
    /// The toolchain (or a tool it needs, such as pip) could not be started.
    ToolchainMissing { tool: PathBuf, source: io::Error },
    /// The toolchain refused the code.
    Rejected { output: String },
    /// The build ran past `--compile-timeout`.
    TimedOut { limit: Duration },
    /// The build directory or the output could not be written.
    Io(io::Error),
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileError::ToolchainMissing { tool, source } => {
                write!(f, "cannot run '{}': {source}", tool.display())
            }
            CompileError::Rejected { output } => write!(f, "the build failed: {output}"),
            CompileError::TimedOut { limit } => {
                write!(
                    f,
                    "the build ran past {}",
                    crate::units::format_duration(*limit)
                )
            }
            CompileError::Io(err) => write!(f, "build files: {err}"),
        }
    }
}

/// What a runtime's build leaves at its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Artifact {
    /// One executable file (Go, Rust).
    Executable,
    /// A folder of the function's files, dependencies installed, that an interpreter runs
    /// (see [`tree`]).
    Tree,
}

/// How a run starts a [`Artifact::Tree`]: the interpreter, its arguments, and variables
/// set after the function's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
}

/// Whether a runtime can be used here, as `GET /runtimes` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub runtime: &'static str,
    pub available: bool,
    pub version: Option<String>,
    /// The toolchain found (or as configured when none was).
    pub path: String,
    /// Why it is not available, and the flag to set.
    pub reason: Option<String>,
}

/// One language: its toolchain, its build and how its runs start. The seam that lets the
/// domain be tested with a fake build (no toolchain, no process).
pub trait Runtime: Send + Sync {
    fn kind(&self) -> Kind;
    /// The toolchain as configured or found, for messages.
    fn tool(&self) -> &Path;
    /// What to install (or which flag to set) when the toolchain is missing.
    fn install_hint(&self) -> String;
    /// Why the toolchain cannot be used here, if it cannot (found at start).
    fn unavailable(&self) -> Option<String> {
        None
    }
    /// What decides a build's output besides the code: the toolchain's path, its version
    /// and the target. Asked once per server process; a failure is not remembered.
    fn identity(&self) -> Result<String, CompileError>;
    /// The toolchain's version as it names itself (`go1.19.8`, `Python 3.11.2`).
    fn version(&self) -> Option<String> {
        let identity = self.identity().ok()?;
        identity
            .lines()
            .find_map(|line| line.strip_prefix("version="))
            .map(str::to_string)
    }
    /// Builds `code` into `output` (an executable file, or a folder for
    /// [`Artifact::Tree`]), written whole or not at all; returns what the build printed.
    fn build(&self, code: Code<'_>, output: &Path) -> Result<String, CompileError>;
    /// How a run starts `entry` (a path inside the tree) of the tree that the run reaches
    /// at `tree`. Only asked of [`Artifact::Tree`] runtimes.
    fn launch(&self, tree: &Path, entry: &str) -> Launch {
        Launch {
            program: tree.join(entry),
            args: Vec::new(),
            env: Vec::new(),
        }
    }
    /// What `GET /runtimes` shows.
    fn status(&self) -> Status {
        let gone = (!self.tool().is_file())
            .then(|| format!("'{}' is not there any more", self.tool().display()));
        let (version, reason) = match self.unavailable().or(gone) {
            Some(reason) => (None, Some(reason)),
            None => match self.identity() {
                Ok(_) => (self.version(), None),
                Err(err) => (None, Some(err.to_string())),
            },
        };
        Status {
            runtime: self.kind().name(),
            available: reason.is_none(),
            version,
            path: self.tool().display().to_string(),
            reason,
        }
    }
}

/// The identity in `cell`, made by `make` the first time it succeeds (a failure is not
/// remembered: the toolchain may be installed meanwhile).
pub fn cached(
    cell: &std::sync::OnceLock<String>,
    make: impl FnOnce() -> Result<String, CompileError>,
) -> Result<String, CompileError> {
    if let Some(identity) = cell.get() {
        return Ok(identity.clone());
    }
    let identity = make()?;
    Ok(cell.get_or_init(|| identity).clone())
}

/// Every runtime of this server. A runtime whose toolchain could not be used is looked for
/// again each time it is asked for (a few `stat` calls), so a toolchain installed while the
/// server runs is taken up at the next registration.
pub struct Runtimes {
    all: std::sync::RwLock<Vec<Arc<dyn Runtime>>>,
    /// What the runtimes are made from, to make one again.
    config: Config,
    builder: Arc<Builder>,
    /// The Go runtime was given (unit tests): it is never made again.
    given_go: bool,
}

impl Runtimes {
    /// The runtimes as `config` sets them up; `go` replaces the Go toolchain (unit tests).
    /// Each toolchain is looked for now (no process is started) and a problem is logged.
    pub fn new(config: &Config, builder: Arc<Builder>, go: Option<Box<dyn Runtime>>) -> Runtimes {
        let given_go = go.is_some();
        let mut all: Vec<Arc<dyn Runtime>> = Vec::new();
        if let Some(go) = go {
            all.push(Arc::from(go));
        }
        for kind in Kind::ALL {
            if kind.here() && !(kind == Kind::Go && given_go) {
                all.push(make(kind, config, &builder));
            }
        }
        for runtime in &all {
            if let Some(reason) = runtime.unavailable() {
                let level = if runtime.kind() == Kind::Go {
                    log::Level::Warn
                } else {
                    log::Level::Info
                };
                log::log!(
                    level,
                    "the {} runtime is not available: {reason}",
                    runtime.kind().name()
                );
            }
        }
        Runtimes {
            all: std::sync::RwLock::new(all),
            config: config.clone(),
            builder,
            given_go,
        }
    }

    pub fn get(&self, kind: Kind) -> Option<Arc<dyn Runtime>> {
        let current = self
            .all
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|runtime| runtime.kind() == kind)
            .cloned()?;
        if current.unavailable().is_none() || (kind == Kind::Go && self.given_go) {
            return Some(current);
        }
        let fresh = make(kind, &self.config, &self.builder);
        if fresh.unavailable().is_some() {
            return Some(current);
        }
        log::info!("the {} runtime is available now", kind.name());
        let mut all = self
            .all
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for slot in all.iter_mut().filter(|runtime| runtime.kind() == kind) {
            *slot = fresh.clone();
        }
        Some(fresh)
    }

    /// The runtime a version's settings name.
    pub fn named(&self, name: &str) -> Option<Arc<dyn Runtime>> {
        Kind::of(name).and_then(|kind| self.get(kind))
    }

    /// Every runtime, as it is now.
    pub fn all(&self) -> Vec<Arc<dyn Runtime>> {
        Kind::ALL
            .into_iter()
            .filter_map(|kind| self.get(kind))
            .collect()
    }

    pub fn sweep_scratch(&self) {
        self.builder.sweep_scratch();
    }
}

/// The runtime `kind` as `config` sets it up, its toolchain looked for now.
fn make(kind: Kind, config: &Config, builder: &Arc<Builder>) -> Arc<dyn Runtime> {
    let confined = builder.confined();
    let tools = &config.toolchains;
    let builder = builder.clone();
    match kind {
        Kind::Go => Arc::new(Compiler::new(
            toolchain::locate(&config.go, "go", confined),
            builder,
            config.modules.clone(),
        )),
        Kind::Python => Arc::new(python::Python::new(
            toolchain::locate(&tools.python, "python", confined),
            builder,
            tools.pip_index_url.clone(),
        )),
        Kind::Node => Arc::new(node::Node::new(
            toolchain::locate(&tools.node, "node", confined),
            builder,
            tools.npm_registry.clone(),
        )),
        Kind::Rust => Arc::new(rust::Rust::new(
            toolchain::locate(&tools.cargo, "cargo", confined),
            builder,
        )),
        Kind::Sh => Arc::new(sh::Sh::new(
            toolchain::locate(&tools.sh, "sh", confined),
            builder,
        )),
    }
}
