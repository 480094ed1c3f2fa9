//! The `node` runtime: the entry point is `main`, else `package.json`'s `main`, else
//! `index.js` (one source file written with `import`/`export` is kept as `index.mjs`);
//! every `.js`, `.mjs` and `.cjs` file outside `node_modules/` is checked with `node
//! --check` at registration; dependencies are a `node_modules/` folder in the package as it
//! is, or `npm ci --omit=dev --ignore-scripts` from `--npm-registry` (the only step with
//! network). A run is `node --preserve-symlinks --preserve-symlinks-main <tree>/<entry>`:
//! modules are found in the tree as the run reaches it, not through their real folders.

use super::builder::{files_with, output_text, stage, Builder, Scratch};
use super::toolchain::Toolchain;
use super::{Code, CompileError, Kind, Launch, Runtime};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

pub struct Node {
    node: Toolchain,
    builder: Arc<Builder>,
    registry: Option<String>,
    identity: OnceLock<String>,
}

impl Node {
    pub fn new(node: Toolchain, builder: Arc<Builder>, registry: Option<String>) -> Node {
        Node {
            node,
            builder,
            registry,
            identity: OnceLock::new(),
        }
    }

    /// `node --check` of `file` in `dir`: what it printed when it refused the file.
    fn check(&self, scratch: &Scratch, file: &str) -> Result<Option<String>, CompileError> {
        let dir = &scratch.dir;
        let mut command = self.builder.command(&self.node.path, dir, &scratch.tmp());
        command.arg("--check").arg(file);
        let finished =
            self.builder
                .run_by(command, &self.node.path, true, false, scratch.deadline)?;
        match self.builder.succeeded(finished) {
            Ok(_) => Ok(None),
            Err(CompileError::Rejected { output }) => Ok(Some(readable(&output, dir))),
            Err(other) => Err(other),
        }
    }

    /// npm, beside node or on the server's PATH.
    fn npm(&self) -> PathBuf {
        let beside = self.node.dir().map(|dir| dir.join("npm"));
        beside
            .filter(|npm| npm.is_file())
            .unwrap_or_else(|| PathBuf::from("npm"))
    }

    /// Decides, from the package in `dir` (still the server's, before the build user has
    /// it), whether `npm ci` must install its packages: when it needs some and brought no
    /// `node_modules/`. Every package the lock file names must come from `--npm-registry`
    /// with its checksum; the package's own `.npmrc` is left out (it could point npm
    /// elsewhere).
    fn plan_install(&self, dir: &Path) -> Result<bool, CompileError> {
        let _ = std::fs::remove_file(dir.join(".npmrc"));
        if dir.join("node_modules").is_dir() || !needs_packages(dir) {
            return Ok(false);
        }
        let Some(registry) = &self.registry else {
            return Err(CompileError::Rejected {
                output: "package.json has dependencies and the package brings no \
                         node_modules/: send it with its node_modules/ folder (npm ci \
                         --omit=dev), or start the server with --npm-registry"
                    .into(),
            });
        };
        let lock = std::fs::read_to_string(dir.join("package-lock.json")).map_err(|_| {
            CompileError::Rejected {
                output: "package.json has dependencies but no package-lock.json: run npm \
                         install and send the package with its package-lock.json"
                    .into(),
            }
        })?;
        check_lock(&lock, registry).map_err(|output| CompileError::Rejected { output })?;
        Ok(true)
    }

    /// Installs `package-lock.json`'s packages with `npm ci` from `--npm-registry`.
    fn npm_ci(&self, scratch: &Scratch) -> Result<String, CompileError> {
        let (dir, tmp) = (&scratch.dir, &scratch.tmp());
        let Some(registry) = &self.registry else {
            return Ok(String::new());
        };
        let npm = self.npm();
        let mut command = self.builder.command(&npm, dir, tmp);
        command
            .args([
                "ci",
                "--omit=dev",
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
                "--no-update-notifier",
                "--registry",
                registry,
                "--cache",
            ])
            .arg(self.builder.area().join("npm-cache"))
            .env("NPM_CONFIG_USERCONFIG", tmp.join("npmrc"))
            .env("NPM_CONFIG_GLOBALCONFIG", tmp.join("npmrc-global"));
        let finished = self
            .builder
            .run_by(command, &npm, true, true, scratch.deadline)?;
        let finished = self.builder.succeeded(finished)?;
        Ok(output_text(&finished))
    }
}

impl Runtime for Node {
    fn kind(&self) -> Kind {
        Kind::Node
    }
    fn tool(&self) -> &Path {
        &self.node.path
    }
    fn install_hint(&self) -> String {
        "install Node.js (on Debian or Ubuntu: apt-get install nodejs) where every user can \
         reach it, or point --node at it"
            .into()
    }
    fn unavailable(&self) -> Option<String> {
        self.node.problem.clone()
    }
    fn identity(&self) -> Result<String, CompileError> {
        super::cached(&self.identity, || {
            let answer = self.builder.ask(&self.node.path, &["--version"])?;
            Ok(format!(
                "runtime=node\npath={}\nversion={}\nflags=--preserve-symlinks\nregistry={}",
                self.node.configured.display(),
                answer.trim_start_matches('v'),
                self.registry.as_deref().unwrap_or("off")
            ))
        })
    }
    fn build(&self, code: Code<'_>, output: &Path) -> Result<String, CompileError> {
        let _slot = self.builder.slot();
        let scratch = self.builder.scratch()?;
        let dir = &scratch.dir;
        let main = match code {
            Code::Package {
                root, main: None, ..
            } => Some(package_main(root)?),
            _ => None,
        };
        let code = match (code, &main) {
            (Code::Package { root, digest, .. }, Some(main)) => Code::Package {
                root,
                digest,
                main: Some(main),
            },
            (code, _) => code,
        };
        let mut entry = stage(code, dir, "index.js")?;
        let install = self.plan_install(dir)?;
        self.builder.give(dir)?;
        let mut printed = match install {
            true => self.npm_ci(&scratch)?,
            false => String::new(),
        };
        let mut refusals = Vec::new();
        for file in files_with(dir, &[".js", ".mjs", ".cjs"], &["node_modules"])
            .map_err(CompileError::Io)?
        {
            let Some(refused) = self.check(&scratch, &file)? else {
                continue;
            };
            // One file of ES module syntax, sent alone, is an ES module.
            if matches!(code, Code::Source(_)) && is_module_syntax(&refused) {
                std::fs::rename(dir.join(&file), dir.join("index.mjs"))
                    .map_err(CompileError::Io)?;
                entry = "index.mjs".into();
                match self.check(&scratch, &entry)? {
                    None => continue,
                    Some(refused) => refusals.push(refused),
                }
            } else {
                refusals.push(refused);
            }
        }
        if !refusals.is_empty() {
            return Err(CompileError::Rejected {
                output: refusals.join("\n\n"),
            });
        }
        if !printed.is_empty() {
            printed.push('\n');
        }
        self.builder.finish_tree(dir, &entry, output)?;
        Ok(printed)
    }
    fn launch(&self, tree: &Path, entry: &str) -> Launch {
        let mut args: Vec<OsString> = ["--preserve-symlinks", "--preserve-symlinks-main"]
            .iter()
            .map(OsString::from)
            .collect();
        args.push(tree.join(entry).into_os_string());
        Launch {
            program: self.node.path.clone(),
            args,
            env: Vec::new(),
        }
    }
}

/// `node --check`'s refusal as the package's author reads it: paths relative to the
/// package, without node's own stack and banner.
fn readable(output: &str, dir: &Path) -> String {
    let prefix = format!("{}{}", dir.display(), std::path::MAIN_SEPARATOR);
    output
        .replace(&prefix, "")
        .lines()
        .filter(|line| !line.starts_with("    at ") && !line.starts_with("Node.js v"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_string()
}

/// What `node --check` says of ES module syntax in a CommonJS file.
fn is_module_syntax(refused: &str) -> bool {
    refused.contains("Cannot use import statement outside a module")
        || refused.contains("Unexpected token 'export'")
        || refused.contains("import.meta")
}

/// The entry point of a package without `main`: `package.json`'s `main`, else `index.js`.
fn package_main(root: &Path) -> Result<String, CompileError> {
    let Ok(text) = std::fs::read_to_string(root.join("package.json")) else {
        return Ok("index.js".into());
    };
    let manifest: serde_json::Value =
        serde_json::from_str(&text).map_err(|err| CompileError::Rejected {
            output: format!("package.json is not JSON: {err}"),
        })?;
    let Some(main) = manifest.get("main").and_then(|m| m.as_str()) else {
        return Ok("index.js".into());
    };
    let main = main.trim_start_matches("./").trim_end_matches('/');
    let main = crate::packages::file_of(main).map_err(|reason| CompileError::Rejected {
        output: format!("package.json's main '{main}': {reason}"),
    })?;
    // As node finds it: the file, else with `.js`, else the folder's `index.js`.
    Ok([
        main.clone(),
        format!("{main}.js"),
        format!("{main}/index.js"),
    ]
    .into_iter()
    .find(|candidate| root.join(candidate).is_file())
    .unwrap_or(main))
}

/// Refuses a `package-lock.json` that would have npm fetch from anywhere but `registry`:
/// every package it installs must be resolved under the registry, with a checksum.
fn check_lock(lock: &str, registry: &str) -> Result<(), String> {
    let lock: serde_json::Value = serde_json::from_str(lock)
        .map_err(|err| format!("package-lock.json is not JSON: {err}"))?;
    let packages = lock
        .get("packages")
        .and_then(|p| p.as_object())
        .ok_or("package-lock.json has no \"packages\" (lockfileVersion 2 or 3 is needed)")?;
    let base = registry.trim_end_matches('/');
    for (path, package) in packages.iter().filter(|(path, _)| !path.is_empty()) {
        if package.get("link").and_then(|l| l.as_bool()) == Some(true) {
            return Err(format!(
                "package-lock.json: {path} is a link; only registry packages are installed"
            ));
        }
        let resolved = package
            .get("resolved")
            .and_then(|r| r.as_str())
            .unwrap_or("");
        let under = resolved
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/'));
        if !under || package.get("integrity").and_then(|i| i.as_str()).is_none() {
            return Err(format!(
                "package-lock.json: {path} is not resolved under --npm-registry ({registry}) \
                 with an integrity checksum (resolved: '{resolved}')"
            ));
        }
    }
    Ok(())
}

/// Whether `package.json` in `dir` lists packages `npm ci --omit=dev` installs: its
/// dependencies, optional and peer ones included (development ones are not installed).
fn needs_packages(dir: &Path) -> bool {
    let Some(manifest) = std::fs::read_to_string(dir.join("package.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
    else {
        return false;
    };
    ["dependencies", "optionalDependencies", "peerDependencies"]
        .iter()
        .any(|key| {
            manifest[*key]
                .as_object()
                .is_some_and(|deps| !deps.is_empty())
        })
}

#[cfg(test)]
mod tests {
    use super::{check_lock, needs_packages};

    #[test]
    fn optional_and_peer_dependencies_are_installed_too() {
        let dir = std::env::temp_dir().join(format!("golambda-node-{}", crate::ids::new_id()));
        std::fs::create_dir_all(&dir).expect("dir");
        for (manifest, needs) in [
            (r#"{"name":"f"}"#, false),
            (r#"{"devDependencies":{"a":"1"}}"#, false),
            (r#"{"dependencies":{}}"#, false),
            (r#"{"dependencies":{"a":"1"}}"#, true),
            (r#"{"optionalDependencies":{"a":"1"}}"#, true),
            (r#"{"peerDependencies":{"a":"1"}}"#, true),
        ] {
            std::fs::write(dir.join("package.json"), manifest).expect("manifest");
            assert_eq!(needs_packages(&dir), needs, "{manifest}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_lock_must_resolve_every_package_under_the_registry() {
        let registry = "http://127.0.0.1:4873/";
        let lock = |resolved: &str, integrity: bool| {
            let mut package = serde_json::json!({"version": "1.0.0", "resolved": resolved});
            if integrity {
                package["integrity"] = "sha512-x".into();
            }
            serde_json::json!({"lockfileVersion": 3, "packages": {
                "": {"name": "fn"}, "node_modules/a": package}})
            .to_string()
        };
        assert_eq!(
            check_lock(
                &lock("http://127.0.0.1:4873/a/-/a-1.0.0.tgz", true),
                registry
            ),
            Ok(())
        );
        for (resolved, integrity) in [
            ("http://127.0.0.1:4873/a/-/a-1.0.0.tgz", false),
            ("http://169.254.169.254/latest/meta-data", true),
            ("http://127.0.0.1:48730/a.tgz", true),
            ("git+ssh://git@example.org/a.git", true),
            ("file:../a", true),
            ("", true),
        ] {
            let refused = check_lock(&lock(resolved, integrity), registry);
            assert!(
                refused
                    .as_ref()
                    .is_err_and(|e| e.contains("node_modules/a")),
                "{resolved}: {refused:?}"
            );
        }
        let linked = r#"{"lockfileVersion":3,"packages":{"":{},"node_modules/a":{"link":true}}}"#;
        assert!(check_lock(linked, registry).is_err());
        assert!(check_lock(r#"{"lockfileVersion":1}"#, registry).is_err());
    }
}
