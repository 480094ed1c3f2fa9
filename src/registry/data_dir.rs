//! The layout of the data dir: where sources, executables, builds, the registry, its
//! journal and secrets live, and creating those folders private to the server's user.

use crate::platform;
use crate::runtimes::{Artifact, Kind};

/// The extension a runtime's single source file is stored with.
fn source_extension(runtime: Kind) -> &'static str {
    match runtime {
        Kind::Go => "go",
        Kind::Python => "py",
        Kind::Node => "js",
        Kind::Rust => "rs",
        Kind::Sh => "sh",
    }
}
use std::io;
use std::path::PathBuf;

/// How the files of version `number` of a function's `generation` are named (without the
/// extension): `v3-<generation>`, or `v3` for a function from before generations.
pub fn version_stem(generation: &str, number: u32) -> String {
    match generation {
        "" => format!("v{number}"),
        generation => format!("v{number}-{generation}"),
    }
}

/// The folders of the data dir.
#[derive(Debug, Clone)]
pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    pub fn plugins(&self) -> PathBuf {
        self.root.join("plugins")
    }
    pub fn sources(&self) -> PathBuf {
        self.root.join("user_functions")
    }
    pub fn registry_dir(&self) -> PathBuf {
        self.root.join("registry")
    }
    pub fn registry_file(&self) -> PathBuf {
        self.registry_dir().join("registry.json")
    }
    pub fn journal_file(&self) -> PathBuf {
        self.registry_dir().join("registry.journal")
    }
    pub fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }
    /// The content-addressed executables (see [`crate::builds`]).
    pub fn builds(&self) -> PathBuf {
        self.cache().join("builds")
    }

    /// Creates the folders (and the data dir itself) if they are missing, each readable by
    /// the server's user only: a run reaches its executable through a file the server
    /// opened, never through these folders.
    pub fn create(&self) -> io::Result<()> {
        for dir in [
            self.plugins(),
            self.sources(),
            self.registry_dir(),
            self.cache(),
            self.builds(),
        ] {
            std::fs::create_dir_all(&dir)?;
            platform::make_private(&dir)?;
        }
        Ok(())
    }

    /// Relative paths of a version's source and executable (or, for an interpreted
    /// runtime, its tree: a folder).
    pub fn version_files(
        name: &str,
        generation: &str,
        number: u32,
        runtime: Kind,
    ) -> (String, String) {
        let stem = version_stem(generation, number);
        (
            format!("user_functions/{name}/{stem}.{}", source_extension(runtime)),
            DataDir::built_file(name, &stem, runtime),
        )
    }

    /// Where a version's build is: its executable, or its tree.
    fn built_file(name: &str, stem: &str, runtime: Kind) -> String {
        match runtime.artifact() {
            Artifact::Executable => format!("plugins/{name}/{stem}{}", platform::EXE_SUFFIX),
            Artifact::Tree => format!("plugins/{name}/{stem}"),
        }
    }

    /// The data-dir-relative archive, unpacked folder and executable of a package version.
    pub fn package_files(
        name: &str,
        generation: &str,
        number: u32,
        kind: crate::packages::Kind,
        runtime: Kind,
    ) -> (String, String, String) {
        let stem = version_stem(generation, number);
        let suffix = match kind {
            crate::packages::Kind::TarGz => "tar.gz",
            _ => "zip",
        };
        (
            format!("user_functions/{name}/{stem}.{suffix}"),
            format!("user_functions/{name}/{stem}"),
            DataDir::built_file(name, &stem, runtime),
        )
    }

    /// Where the output of a version's build is kept, beside its source `source_rel`.
    pub fn build_output_of(source_rel: &str) -> String {
        let stem = [".tar.gz", ".zip", ".go", ".py", ".js", ".rs", ".sh"]
            .iter()
            .find_map(|suffix| source_rel.strip_suffix(suffix))
            .unwrap_or(source_rel);
        format!("{stem}.build.txt")
    }

    /// The path of a data-dir-relative name such as `plugins/hello/v1`, with the separators
    /// of this OS.
    pub fn resolve(&self, relative: &str) -> PathBuf {
        let mut path = self.root.clone();
        path.extend(relative.split('/').filter(|part| !part.is_empty()));
        path
    }

    /// A short name for this data dir, the same on every start: a hash of its full path.
    pub fn identity(&self) -> String {
        use sha2::Digest;
        let full = std::fs::canonicalize(&self.root).unwrap_or_else(|_| self.root.clone());
        let digest = sha2::Sha256::digest(full.to_string_lossy().as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    /// Where the pooled working directories of this data dir's runs live: outside the data
    /// dir (runs must not reach it), named after [`DataDir::identity`].
    pub fn work_pool(&self) -> PathBuf {
        crate::platform::work_base().join(format!("golambda-work-{}", self.identity()))
    }

    pub fn secrets(&self) -> PathBuf {
        self.registry_dir().join("secrets")
    }

    pub fn trash(&self) -> PathBuf {
        self.cache().join("trash")
    }
}
