//! The `go` runtime: compiles a function's Go source into an executable with `go build`,
//! in the build confinement of [`super::Builder`], with a shared build cache in the build
//! area and an environment built from scratch. Builds are in module mode (a `go.mod` of the
//! build directory's own): GOPATH mode compiled relative imports (`import
//! "../../../tmp/x"`), reaching code outside the build directory. What a build writes must
//! be a program: `package notmain` builds an archive, refused as not one. Knows nothing of
//! the registry or of HTTP.

mod gomod;

use super::builder::{copy_package, output_text, Builder, Scratch};
use super::toolchain::Toolchain;
use super::{Code, CompileError, Kind, Runtime};
use crate::config::GoModules;
use crate::platform;
use crate::runner::child::{self, Ending};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

impl Runtime for Compiler {
    fn kind(&self) -> Kind {
        Kind::Go
    }
    fn tool(&self) -> &Path {
        &self.go.path
    }
    fn install_hint(&self) -> String {
        "install Go (on Debian or Ubuntu: apt-get install golang-go; elsewhere see \
         go.dev/doc/install) or point --go at the go binary"
            .into()
    }
    fn unavailable(&self) -> Option<String> {
        self.go.problem.clone()
    }
    fn identity(&self) -> Result<String, CompileError> {
        Compiler::identity(self)
    }
    fn build(&self, code: Code<'_>, output: &Path) -> Result<String, CompileError> {
        Compiler::compile(self, code, output)
    }
}

/// The Go toolchain as the server uses it.
pub struct Compiler {
    go: Toolchain,
    builder: Arc<Builder>,
    /// See [`Compiler::identity`].
    identity: OnceLock<String>,
    /// Where packages' modules are downloaded from, if anywhere.
    modules: GoModules,
}

impl Compiler {
    pub fn new(go: Toolchain, builder: Arc<Builder>, modules: GoModules) -> Compiler {
        Compiler {
            go,
            builder,
            identity: OnceLock::new(),
            modules,
        }
    }

    /// Builds `code` into the executable `output` (written whole or not at all); returns
    /// what `go build` printed.
    pub fn compile(&self, code: Code<'_>, output: &Path) -> Result<String, CompileError> {
        let _slot = self.builder.slot();
        let scratch = self.builder.scratch()?;
        self.compile_in(&scratch, code, output)
    }

    fn compile_in(
        &self,
        scratch: &Scratch,
        code: Code<'_>,
        output: &Path,
    ) -> Result<String, CompileError> {
        let build_dir = &scratch.dir;
        let deadline = Some(scratch.deadline);
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
                copy_package(root, build_dir)?;
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
        self.builder.give(build_dir)?;
        if modules == Modules::Download && self.modules.downloads() {
            self.download(scratch)?;
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
        let finished = self.run_go(command, true, false, deadline)?;
        match finished.ending {
            Ending::Exited(0) => {}
            Ending::TimedOut => {
                return Err(CompileError::TimedOut {
                    limit: self.builder.timeout(),
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
        self.builder.finish_executable(
            &partial,
            output,
            "the code builds a library, not a program: a function is `package main` with a \
             `func main()`",
        )?;
        Ok(output_text(&finished))
    }

    /// Fetches the modules a package's `go.mod` needs into the module cache, the only step
    /// of a build that may reach the network. `go.mod` and `go.sum` are put back as they
    /// were afterwards, so the build checks the package's own `go.sum`.
    fn download(&self, scratch: &Scratch) -> Result<(), CompileError> {
        let build_dir = &scratch.dir;
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
        let finished = self.run_go(command, true, true, Some(scratch.deadline))?;
        for (path, bytes) in kept {
            // Removed first, then made anew: the build user may have left a link there,
            // which a plain write would follow with the server's rights.
            let _ = std::fs::remove_file(&path);
            if let Some(bytes) = bytes {
                std::fs::File::create_new(&path)
                    .and_then(|mut file| std::io::Write::write_all(&mut file, &bytes))
                    .map_err(CompileError::Io)?;
                if let Some(uid) = self.builder.user() {
                    platform::give_to_user(&path, uid).map_err(CompileError::Io)?;
                }
            }
        }
        match finished.ending {
            Ending::Exited(0) => Ok(()),
            Ending::TimedOut => Err(CompileError::TimedOut {
                limit: self.builder.timeout(),
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
        super::cached(&self.identity, || self.ask_identity())
    }

    /// What `go env` says of the toolchain.
    fn ask_identity(&self) -> Result<String, CompileError> {
        let mut command = self.go_command(self.builder.area());
        command.args(["env", "GOVERSION", "GOOS", "GOARCH"]);
        // A fixed query, not a build: `--compile-memory` bounds builds, not this.
        let finished = self.run_go(command, false, false, None)?;
        let text = String::from_utf8_lossy(&finished.stdout).into_owned();
        let values: Vec<&str> = text.lines().map(str::trim).collect();
        let answered = matches!(finished.ending, Ending::Exited(0))
            && values.len() == 3
            && values.iter().all(|v| !v.is_empty());
        if !answered {
            return Err(CompileError::ToolchainMissing {
                tool: self.go.path.clone(),
                source: io::Error::other(format!(
                    "'go env GOVERSION GOOS GOARCH' did not answer: {}",
                    output_text(&finished)
                )),
            });
        }
        Ok(format!(
            "go={}\nversion={}\nGOOS={}\nGOARCH={}\nflags=-trimpath CGO_ENABLED=0 GO111MODULE=on",
            self.go.configured.display(),
            values[0],
            values[1],
            values[2]
        ))
    }

    /// A `go` command with the build environment, made from scratch, running in `dir`.
    fn go_command(&self, dir: &Path) -> Command {
        let area = self.builder.area();
        // Not `dir` itself: go ignores a go.mod in the system's temporary folder.
        let tmp = super::builder::temp_dir_of(dir);
        let mut command = self.builder.command(&self.go.path, dir, &tmp);
        command
            .env("GOCACHE", area.join("go-build"))
            .env("GOPATH", area.join("gopath"))
            .env("GOTMPDIR", &tmp)
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

    /// Runs a `go` command as builds run (see [`Builder::run`]); `limited`: under
    /// `--compile-memory`; `network`: the download step; `deadline`: the build's.
    fn run_go(
        &self,
        command: Command,
        limited: bool,
        network: bool,
        deadline: Option<std::time::Instant>,
    ) -> Result<child::Finished, CompileError> {
        match deadline {
            Some(deadline) => {
                self.builder
                    .run_by(command, &self.go.path, limited, network, deadline)
            }
            None => self.builder.run(command, &self.go.path, limited, network),
        }
    }
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
