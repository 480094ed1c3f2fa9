//! The `rust` runtime: one `main.rs` (or a package's `main` file and the modules it
//! declares) compiled with `rustc --edition 2021 -O`, or a package with a `Cargo.toml`
//! built with `cargo build --release --locked --offline`, its crates vendored in the
//! package (`cargo vendor`, with its `.cargo/config.toml`). Build scripts and procedural
//! macros run then, inside the build confinement like every build step. `CARGO_HOME` and
//! the target folder are in the build area, shared by every build. The result is one
//! executable, kept and run as a Go one is.

use super::builder::{output_text, stage, Builder, Scratch};
use super::toolchain::{self, Toolchain};
use super::{Code, CompileError, Kind, Runtime};
use crate::platform;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

pub struct Rust {
    cargo: Toolchain,
    /// `rustc` beside `cargo` (a toolchain's own), else on the server's PATH.
    rustc: Toolchain,
    builder: Arc<Builder>,
    identity: OnceLock<String>,
    /// Held from a Cargo build until its executable is copied out of the shared target
    /// folder, where the next build of a package of the same name writes its own.
    target: Mutex<()>,
}

impl Rust {
    pub fn new(cargo: Toolchain, builder: Arc<Builder>) -> Rust {
        let beside = cargo
            .dir()
            .map(|dir| dir.join(format!("rustc{}", platform::EXE_SUFFIX)))
            .filter(|rustc| rustc.is_file());
        let rustc = toolchain::locate(
            beside.as_deref().unwrap_or(Path::new("rustc")),
            "cargo",
            builder.confined(),
        );
        Rust {
            cargo,
            rustc,
            builder,
            identity: OnceLock::new(),
            target: Mutex::new(()),
        }
    }

    /// A build step's command, with the toolchain's own folder first on `PATH` and the
    /// shared Cargo folders.
    fn command(&self, program: &Path, dir: &Path, tmp: &Path) -> Command {
        let mut command = self.builder.command(program, dir, tmp);
        let area = self.builder.area();
        let mut path: Vec<PathBuf> = self
            .rustc
            .dir()
            .map(Path::to_path_buf)
            .into_iter()
            .collect();
        path.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        if let Ok(joined) = std::env::join_paths(path) {
            command.env("PATH", joined);
        }
        command
            .env("CARGO_HOME", area.join("cargo-home"))
            .env("CARGO_TARGET_DIR", area.join("cargo-target"))
            .env("RUSTC", &self.rustc.path)
            .env("CARGO_TERM_COLOR", "never")
            .env("CARGO_NET_OFFLINE", "true")
            .env("CARGO_INCREMENTAL", "0");
        command
    }

    /// Builds the Cargo package in `package` (a folder of `dir`); returns the executable's
    /// path in the shared target folder, and what cargo printed.
    fn cargo_build(
        &self,
        package: &Path,
        scratch: &Scratch,
    ) -> Result<(PathBuf, String), CompileError> {
        let mut command = self.command(&self.cargo.path, package, &scratch.tmp());
        command.args([
            "build",
            "--release",
            "--locked",
            "--offline",
            "--message-format=json-render-diagnostics",
        ]);
        let finished =
            self.builder
                .run_by(command, &self.cargo.path, true, false, scratch.deadline)?;
        let stdout = String::from_utf8_lossy(&finished.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&finished.stderr).into_owned();
        let finished = self.builder.succeeded(finished).map_err(|err| match err {
            CompileError::Rejected { .. } => CompileError::Rejected {
                output: stderr.trim_end().to_string(),
            },
            other => other,
        })?;
        drop(finished);
        let executable = stdout
            .lines()
            .rev()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|message| message["reason"] == "compiler-artifact")
            .find_map(|message| message["executable"].as_str().map(PathBuf::from))
            .ok_or_else(|| CompileError::Rejected {
                output: format!(
                    "the Cargo package builds no program: a function is a binary crate \
                     (src/main.rs)\n\n{}",
                    stderr.trim_end()
                ),
            })?;
        Ok((executable, stderr))
    }
}

impl Rust {
    /// Copies the executable cargo wrote in the shared target folder (the build user's, as
    /// is the path cargo named) into the build's folder, as the build user: the server
    /// never reads a path the build user controls.
    fn take_out(
        &self,
        executable: &Path,
        partial: &Path,
        scratch: &Scratch,
    ) -> Result<(), CompileError> {
        if !self.builder.confined() {
            return std::fs::copy(executable, partial)
                .map(|_| ())
                .map_err(CompileError::Io);
        }
        let cp = Path::new("cp");
        let mut command = self.builder.command(cp, &scratch.dir, &scratch.tmp());
        command.arg("--").arg(executable).arg(partial);
        let finished = self
            .builder
            .run_by(command, cp, false, false, scratch.deadline)?;
        self.builder.succeeded(finished).map(|_| ())
    }
}

impl Runtime for Rust {
    fn kind(&self) -> Kind {
        Kind::Rust
    }
    fn tool(&self) -> &Path {
        &self.cargo.path
    }
    fn install_hint(&self) -> String {
        "install a Rust toolchain (cargo and rustc) where every user can reach it, such as \
         under /opt or /usr/local, or point --cargo at one"
            .into()
    }
    fn unavailable(&self) -> Option<String> {
        self.cargo
            .problem
            .clone()
            .or_else(|| self.rustc.problem.clone())
    }
    fn identity(&self) -> Result<String, CompileError> {
        super::cached(&self.identity, || self.ask_identity())
    }
    fn build(&self, code: Code<'_>, output: &Path) -> Result<String, CompileError> {
        self.build_code(code, output)
    }
}

impl Rust {
    /// What `rustc -vV` says of the toolchain.
    fn ask_identity(&self) -> Result<String, CompileError> {
        let mut command = self.command(
            &self.rustc.path,
            self.builder.area(),
            &super::builder::temp_dir_of(self.builder.area()),
        );
        command.arg("-vV");
        let finished = self.builder.run(command, &self.rustc.path, false, false)?;
        let text = String::from_utf8_lossy(&finished.stdout).into_owned();
        let field = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        let (Some(release), Some(host)) = (field("release:"), field("host:")) else {
            return Err(CompileError::ToolchainMissing {
                tool: self.rustc.path.clone(),
                source: std::io::Error::other(format!(
                    "'rustc -vV' did not answer: {}",
                    output_text(&finished)
                )),
            });
        };
        Ok(format!(
            "runtime=rust\ncargo={}\nrustc={}\nversion={release}\nhost={host}\ncommit={}\n\
             flags=--edition 2021 -O | --release --locked --offline",
            self.cargo.configured.display(),
            self.rustc.path.display(),
            field("commit-hash:").unwrap_or_default()
        ))
    }

    fn build_code(&self, code: Code<'_>, output: &Path) -> Result<String, CompileError> {
        let _slot = self.builder.slot();
        let scratch = self.builder.scratch()?;
        let (dir, tmp) = (&scratch.dir, scratch.tmp());
        let default = match code {
            Code::Package { root, .. } if root.join("Cargo.toml").is_file() => "Cargo.toml",
            _ => "main.rs",
        };
        let entry = stage(code, dir, default)?;
        self.builder.give(dir)?;
        let partial = dir.join(format!("function{}", platform::EXE_SUFFIX));
        let printed = if entry == "Cargo.toml" || entry.ends_with("/Cargo.toml") {
            let package = dir.join(entry.trim_end_matches("Cargo.toml"));
            let _target = crate::sync::lock(&self.target);
            let (executable, printed) = self.cargo_build(&package, &scratch)?;
            self.take_out(&executable, &partial, &scratch)?;
            printed
        } else {
            let mut command = self.command(&self.rustc.path, dir, &tmp);
            command
                .args(["--edition", "2021", "-O", "--crate-type", "bin", "-o"])
                .arg(&partial)
                .arg(&entry);
            let finished =
                self.builder
                    .run_by(command, &self.rustc.path, true, false, scratch.deadline)?;
            output_text(&self.builder.succeeded(finished)?)
        };
        self.builder.finish_executable(
            &partial,
            output,
            "the build wrote no program: a function is a Rust program with a `fn main()`",
        )?;
        Ok(printed)
    }
}
