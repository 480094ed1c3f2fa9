//! The `sh` runtime (Unix only): `main.sh` (and every other `.sh` file of a package) is
//! checked with `sh -n` at registration, and a run is `/bin/sh <tree>/main.sh`. No
//! dependencies: the shell's own commands are the host's.

use super::builder::{files_with, stage, Builder};
use super::toolchain::Toolchain;
use super::{Code, CompileError, Kind, Launch, Runtime};
use std::path::Path;
use std::sync::{Arc, OnceLock};

pub struct Sh {
    sh: Toolchain,
    builder: Arc<Builder>,
    identity: OnceLock<String>,
}

impl Sh {
    pub fn new(sh: Toolchain, builder: Arc<Builder>) -> Sh {
        Sh {
            sh,
            builder,
            identity: OnceLock::new(),
        }
    }
}

impl Runtime for Sh {
    fn kind(&self) -> Kind {
        Kind::Sh
    }
    fn tool(&self) -> &Path {
        &self.sh.path
    }
    fn install_hint(&self) -> String {
        "point --sh at a POSIX shell every user can run, such as /bin/sh".into()
    }
    fn unavailable(&self) -> Option<String> {
        self.sh.problem.clone()
    }
    fn identity(&self) -> Result<String, CompileError> {
        super::cached(&self.identity, || {
            // Shells name no version of their own (dash has no --version): the file decides.
            let real = std::fs::canonicalize(&self.sh.path).map_err(|source| {
                CompileError::ToolchainMissing {
                    tool: self.sh.path.clone(),
                    source,
                }
            })?;
            Ok(format!(
                "runtime=sh\npath={}\nshell={}",
                self.sh.configured.display(),
                real.display()
            ))
        })
    }
    fn version(&self) -> Option<String> {
        let identity = self.identity().ok()?;
        let shell = identity.lines().find_map(|l| l.strip_prefix("shell="))?;
        Path::new(shell)
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
    }
    fn build(&self, code: Code<'_>, output: &Path) -> Result<String, CompileError> {
        let _slot = self.builder.slot();
        let scratch = self.builder.scratch()?;
        let (dir, tmp) = (&scratch.dir, scratch.tmp());
        let entry = stage(code, dir, "main.sh")?;
        self.builder.give(dir)?;
        let mut files = files_with(dir, &[".sh"], &[]).map_err(CompileError::Io)?;
        if !files.contains(&entry) {
            files.insert(0, entry.clone());
        }
        let mut refusals = Vec::new();
        for file in &files {
            let mut command = self.builder.command(&self.sh.path, dir, &tmp);
            command.arg("-n").arg(file);
            let finished =
                self.builder
                    .run_by(command, &self.sh.path, true, false, scratch.deadline)?;
            if let Err(err) = self.builder.succeeded(finished) {
                match err {
                    CompileError::Rejected { output } => refusals.push(output),
                    other => return Err(other),
                }
            }
        }
        if !refusals.is_empty() {
            return Err(CompileError::Rejected {
                output: refusals.join("\n"),
            });
        }
        self.builder.finish_tree(dir, &entry, output)?;
        Ok(String::new())
    }
    fn launch(&self, tree: &Path, entry: &str) -> Launch {
        Launch {
            program: self.sh.path.clone(),
            args: vec![tree.join(entry).into_os_string()],
            env: Vec::new(),
        }
    }
}
