//! The `python` runtime: every `.py` file of a version is compiled in memory at
//! registration (a syntax error is refused with its file, line and message; no bytecode is
//! written), `requirements.txt` is installed by pip from wheels only (the package's
//! `wheels/` folder, or `--pip-index-url`) into the version's own tree, and a run is
//! `python -S -s -B main.py` with that tree's `.deps` as its only addition to the path:
//! nothing from the host's own site-packages, no user site, no bytecode.

use super::builder::{output_text, stage, Builder, Scratch};
use super::toolchain::Toolchain;
use super::{Code, CompileError, Kind, Launch, Runtime};
use std::ffi::OsString;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// Where a tree's installed dependencies are.
const DEPS: &str = ".deps";

/// Compiles every `.py` file below the working folder without writing bytecode, and
/// prints each syntax error as Python shows one (file, line, the line, message).
const CHECK: &str = r#"
import os, sys
bad = 0
for top, dirs, files in os.walk("."):
    dirs[:] = sorted(d for d in dirs if d not in (".golambda-tmp", ".deps", "wheels", "__pycache__"))
    for name in sorted(files):
        if not name.endswith(".py"):
            continue
        path = os.path.join(top, name)[2:]
        try:
            with open(path, "rb") as f:
                compile(f.read(), path, "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as e:
            import traceback
            bad += 1
            sys.stderr.write("".join(traceback.format_exception_only(type(e), e)))
sys.exit(1 if bad else 0)
"#;

pub struct Python {
    python: Toolchain,
    builder: Arc<Builder>,
    index: Option<String>,
    identity: OnceLock<String>,
}

impl Python {
    pub fn new(python: Toolchain, builder: Arc<Builder>, index: Option<String>) -> Python {
        Python {
            python,
            builder,
            index,
            identity: OnceLock::new(),
        }
    }

    /// Checks the package's `requirements.txt` in `dir` (still the server's, before the
    /// build user has it) and says whether pip has wheels in `wheels/`: `None` when the
    /// package has no requirements.
    fn requirements(&self, dir: &Path) -> Result<Option<bool>, CompileError> {
        let path = dir.join("requirements.txt");
        if !path.is_file() {
            return Ok(None);
        }
        let requirements = std::fs::read_to_string(path).map_err(|err| CompileError::Rejected {
            output: format!("requirements.txt cannot be read as text: {err}"),
        })?;
        check_requirements(&requirements).map_err(|output| CompileError::Rejected { output })?;
        let wheels = dir.join("wheels").is_dir();
        if !wheels && self.index.is_none() {
            return Err(CompileError::Rejected {
                output: "requirements.txt needs its wheels: put them in the package's wheels/ \
                         folder (pip download --only-binary=:all: -r requirements.txt -d \
                         wheels), or start the server with --pip-index-url"
                    .into(),
            });
        }
        Ok(Some(wheels))
    }

    /// Installs `requirements.txt` into `dir/.deps` from wheels only (in `wheels/` when
    /// `wheels`).
    fn install_requirements(
        &self,
        scratch: &Scratch,
        wheels: bool,
    ) -> Result<String, CompileError> {
        let mut command = self
            .builder
            .command(&self.python.path, &scratch.dir, &scratch.tmp());
        // -I: the package's folder is not on the path, so a `pip/` of its own is not run.
        command.args(["-I", "-B", "-m", "pip", "install"]).args([
            "--isolated",
            "--no-input",
            "--disable-pip-version-check",
            "--no-cache-dir",
            "--only-binary=:all:",
            "--no-compile",
            "--no-warn-script-location",
            "--target",
            DEPS,
            "-r",
            "requirements.txt",
        ]);
        if wheels {
            command.args(["--find-links", "wheels"]);
        }
        match &self.index {
            Some(index) => command.arg("--index-url").arg(index),
            None => command.arg("--no-index"),
        };
        let finished = self.builder.run_by(
            command,
            &self.python.path,
            true,
            self.index.is_some(),
            scratch.deadline,
        )?;
        let text = output_text(&finished);
        if text.contains("No module named pip") {
            return Err(CompileError::ToolchainMissing {
                tool: self.python.path.clone(),
                source: std::io::Error::other(
                    "it has no pip to install requirements.txt with (on Debian or Ubuntu: \
                     apt-get install python3-pip)",
                ),
            });
        }
        self.builder.succeeded(finished)?;
        Ok(text)
    }
}

impl Runtime for Python {
    fn kind(&self) -> Kind {
        Kind::Python
    }
    fn tool(&self) -> &Path {
        &self.python.path
    }
    fn install_hint(&self) -> String {
        "install Python 3 (on Debian or Ubuntu: apt-get install python3 python3-pip) where \
         every user can reach it, or point --python at it"
            .into()
    }
    fn unavailable(&self) -> Option<String> {
        self.python.problem.clone()
    }
    fn identity(&self) -> Result<String, CompileError> {
        super::cached(&self.identity, || {
            let answer = self.builder.ask(&self.python.path, &["--version"])?;
            let version = answer.trim_start_matches("Python").trim();
            Ok(format!(
                "runtime=python\npath={}\nversion={version}\nflags=-S -s -B\nindex={}",
                self.python.configured.display(),
                self.index.as_deref().unwrap_or("off")
            ))
        })
    }
    fn build(&self, code: Code<'_>, output: &Path) -> Result<String, CompileError> {
        let _slot = self.builder.slot();
        let scratch = self.builder.scratch()?;
        let dir = &scratch.dir;
        let entry = stage(code, dir, "main.py")?;
        let requirements = self.requirements(dir)?;
        self.builder.give(dir)?;
        let mut check = self.builder.command(&self.python.path, dir, &scratch.tmp());
        // -I: the package's folder is not on the path; nothing of it is imported.
        check.args(["-I", "-S", "-B", "-c", CHECK]);
        let checked = self
            .builder
            .run_by(check, &self.python.path, true, false, scratch.deadline)
            .and_then(|finished| self.builder.succeeded(finished))?;
        let mut printed = output_text(&checked);
        if let Some(wheels) = requirements {
            printed.push_str(&self.install_requirements(&scratch, wheels)?);
        }
        self.builder.finish_tree(dir, &entry, output)?;
        Ok(printed)
    }
    fn launch(&self, tree: &Path, entry: &str) -> Launch {
        let mut args: Vec<OsString> = ["-S", "-s", "-B"].iter().map(OsString::from).collect();
        args.push(tree.join(entry).into_os_string());
        Launch {
            program: self.python.path.clone(),
            args,
            env: vec![
                (
                    "PYTHONPATH".into(),
                    tree.join(DEPS).to_string_lossy().into_owned(),
                ),
                ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
                ("PYTHONNOUSERSITE".into(), "1".into()),
            ],
        }
    }
}

/// Refuses what in a `requirements.txt` could make pip run package code or look beyond
/// the wheels: option lines (`-e`, `--index-url`, `-r other.txt`), paths, archives (pip
/// takes a name such as `x-1.0.tar.gz` that names a file for that file) and URLs (`file:`
/// included). What is accepted is a name with extras and version specifiers, then a marker
/// after `;`, then `--hash` options, on one line or continued with `\`.
fn check_requirements(text: &str) -> Result<(), String> {
    let mut logical = String::new();
    let mut first_line = 0;
    for (number, line) in text.lines().enumerate() {
        if logical.is_empty() {
            first_line = number + 1;
        }
        // pip's comments: `#` at the start or after white space.
        let line = match line
            .find(" #")
            .or_else(|| line.starts_with('#').then_some(0))
        {
            Some(comment) => &line[..comment],
            None => line,
        };
        match line.trim_end().strip_suffix('\\') {
            Some(continued) => {
                logical.push_str(continued);
                logical.push(' ');
            }
            None => {
                logical.push_str(line);
                check_requirement(logical.trim()).map_err(|why| {
                    format!(
                        "requirements.txt line {first_line}: '{}' is not accepted ({why}): only \
                         package names with versions, extras, markers and --hash are (no \
                         options, paths, archives or URLs), installed from wheels",
                        logical.trim().chars().take(80).collect::<String>()
                    )
                })?;
                logical.clear();
            }
        }
    }
    check_requirement(logical.trim())
        .map_err(|why| format!("requirements.txt ends in a continued line ({why})"))
}

/// Archive names pip installs from a file of that name.
const ARCHIVES: [&str; 12] = [
    ".zip",
    ".whl",
    ".tar",
    ".tar.gz",
    ".tgz",
    ".tar.bz2",
    ".tbz",
    ".tar.xz",
    ".txz",
    ".tar.lz",
    ".tlz",
    ".tar.lzma",
];

/// One logical line, comments removed.
fn check_requirement(line: &str) -> Result<(), &'static str> {
    if line.is_empty() {
        return Ok(());
    }
    let mut words = line.split_whitespace();
    let mut requirement = Vec::new();
    for word in words.by_ref() {
        if word.starts_with('-') {
            check_hash(word, &mut words)?;
            break;
        }
        requirement.push(word);
    }
    while let Some(word) = words.next() {
        check_hash(word, &mut words)?;
    }
    let requirement = requirement.join(" ");
    let spec = requirement.split(';').next().unwrap_or_default().trim();
    let name_end = spec
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        .unwrap_or(spec.len());
    let (name, rest) = spec.split_at(name_end);
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("no package name");
    }
    let lower = name.to_ascii_lowercase();
    if ARCHIVES.iter().any(|suffix| lower.ends_with(suffix)) {
        return Err("an archive's name");
    }
    let specifiers_only = rest.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || c.is_ascii_whitespace()
            || matches!(
                c,
                '[' | ']'
                    | ','
                    | '.'
                    | '_'
                    | '-'
                    | '*'
                    | '+'
                    | '!'
                    | '='
                    | '<'
                    | '>'
                    | '~'
                    | '('
                    | ')'
            )
    });
    if !specifiers_only {
        return Err("a path, URL or option");
    }
    Ok(())
}

/// `--hash=ALGO:HEX` or `--hash ALGO:HEX`, the one option a requirement may carry.
fn check_hash<'a>(
    word: &str,
    words: &mut impl Iterator<Item = &'a str>,
) -> Result<(), &'static str> {
    let value = match word.strip_prefix("--hash") {
        Some("") => words.next().unwrap_or_default(),
        Some(joined) => joined.strip_prefix('=').unwrap_or("-"),
        None => return Err("an option other than --hash"),
    };
    let well_formed = value.split_once(':').is_some_and(|(algorithm, digest)| {
        algorithm.chars().all(|c| c.is_ascii_alphanumeric())
            && !digest.is_empty()
            && digest.chars().all(|c| c.is_ascii_hexdigit())
    });
    if well_formed {
        Ok(())
    } else {
        Err("a --hash that is not ALGORITHM:HEX")
    }
}

#[cfg(test)]
mod tests {
    use super::check_requirements;

    #[test]
    fn requirements_are_names_and_versions_only() {
        let fine = "# pinned\nrequests==2.31.0\nidna>=3 ; python_version >= \"3.8\"\n\
                    pkg[extra]~=1.0 --hash=sha256:abc\n\n  six  # note\n\
                    attrs==23.1.0 \\\n    --hash=sha256:1f28 \\\n    --hash sha256:99b8\n";
        assert_eq!(check_requirements(fine), Ok(()));
        for bad in [
            "-e .",
            "--index-url https://example.org/simple",
            "-r other.txt",
            "./local-package",
            "/abs/path.whl",
            "pkg @ https://example.org/pkg.tar.gz",
            "pkg@file:///tmp/x",
            "git+https://example.org/repo.git",
            "..\\up",
            "evil-1.0.tar.gz",
            "Evil.ZIP",
            "file:evil.zip",
            "git+file:x",
            "six --hash=sha256:ab --index-url x",
            "six -i x",
            "six --hash=sha256:not-hex",
            "six ; python_version > '3' --config-settings x=y",
        ] {
            let refused = check_requirements(&format!("six\n{bad}\n")).expect_err(bad);
            assert!(refused.contains("line 2"), "{refused}");
        }
    }
}
