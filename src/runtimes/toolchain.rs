//! Finding a runtime's toolchain as a flag names it: a bare name is looked up on the
//! server's `PATH`, and the file found must be one the users that builds and runs execute
//! as can reach (when the server runs as root, they are other users: a toolchain under a
//! private home directory, such as a pyenv or rustup one under `/root`, is unusable to
//! them). Only looks at the file system; starts no process.

use std::path::{Path, PathBuf};

/// A toolchain as found at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toolchain {
    /// As configured (`--python python3`).
    pub configured: PathBuf,
    /// The file to run: the absolute path found, or as configured when none was.
    pub path: PathBuf,
    /// Why it cannot be used, naming the flag to set; `None` when it can.
    pub problem: Option<String>,
}

impl Toolchain {
    /// The toolchain's folder (for tools that sit beside it, such as `rustc` by `cargo`).
    pub fn dir(&self) -> Option<&Path> {
        self.path.parent()
    }
}

/// Finds `configured` (the value of `--{flag}`). With `confined`, builds and runs execute
/// as other users, and every folder on the way to the file must let others through.
pub fn locate(configured: &Path, flag: &str, confined: bool) -> Toolchain {
    let found = if configured.components().count() > 1 || configured.is_absolute() {
        Some(configured.to_path_buf()).filter(|path| is_executable(path))
    } else {
        on_path(configured)
    };
    let Some(found) = found else {
        return Toolchain {
            configured: configured.to_path_buf(),
            path: configured.to_path_buf(),
            problem: Some(format!(
                "'{}' is not {}; set --{flag} to its path",
                configured.display(),
                if configured.components().count() > 1 {
                    "an executable file"
                } else {
                    "on the server's PATH"
                }
            )),
        };
    };
    // Where it really is: a shim or a link decides nothing.
    let real = std::fs::canonicalize(&found).unwrap_or_else(|_| found.clone());
    let problem = if confined {
        closed_folder(&real).map(|closed| {
            format!(
                "'{}' is in {}, which the users that builds and runs execute as cannot enter; \
                 set --{flag} to a toolchain installed where every user can reach it (such as \
                 under /usr or /opt)",
                found.display(),
                closed.display()
            )
        })
    } else {
        None
    };
    Toolchain {
        configured: configured.to_path_buf(),
        path: if found.is_absolute() {
            found
        } else {
            std::env::current_dir()
                .map(|dir| dir.join(&found))
                .unwrap_or(found)
        },
        problem,
    }
}

/// The first folder on the way to `path` (or the file itself) that other users cannot
/// pass through or run.
fn closed_folder(path: &Path) -> Option<PathBuf> {
    let mut ancestors: Vec<&Path> = path.ancestors().skip(1).collect();
    ancestors.reverse();
    for dir in ancestors {
        if !crate::platform::others_can_execute(dir) {
            return Some(dir.to_path_buf());
        }
    }
    (!crate::platform::others_can_execute(path)).then(|| path.to_path_buf())
}

fn on_path(name: &Path) -> Option<PathBuf> {
    let search = std::env::var_os("PATH")?;
    std::env::split_paths(&search).find_map(|dir| {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Some(candidate);
        }
        let exe = candidate.with_extension("exe");
        (cfg!(windows) && is_executable(&exe)).then_some(exe)
    })
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file()) && crate::platform::can_execute(path)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_toolchain_in_a_closed_folder_is_reported_with_its_flag() {
        let root = std::env::temp_dir().join(format!("golambda-tool-{}", crate::ids::new_id()));
        let closed = root.join("home");
        std::fs::create_dir_all(closed.join("bin")).expect("mkdir");
        let tool = closed.join("bin").join("python3");
        std::fs::write(&tool, b"#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let found = locate(&tool, "python", true);
        let problem = found.problem.expect("reported");
        assert!(problem.contains("--python"), "{problem}");
        assert!(problem.contains(&closed.display().to_string()), "{problem}");
        assert!(locate(&tool, "python", false).problem.is_none());
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o711)).expect("chmod");
        assert!(locate(&tool, "python", true).problem.is_none());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_missing_toolchain_names_its_flag() {
        let missing = locate(Path::new("no-such-tool-here"), "node", false);
        assert!(missing
            .problem
            .is_some_and(|p| p.contains("--node") && p.contains("PATH")));
        let sh = locate(Path::new("sh"), "sh", false);
        assert!(sh.problem.is_none(), "{:?}", sh.problem);
        assert!(sh.path.is_absolute());
    }
}
