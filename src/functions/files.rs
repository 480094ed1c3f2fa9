//! What a version is made of, as the API shows it: the files of the current version (its
//! package's unpacked files, or its one source file as `main.go`), one of them, and the
//! output of a kept version's build. Reads only; never changes a file.

use crate::error::ApiError;
use crate::functions::app::App;
use crate::functions::register::hex;
use crate::packages;
use crate::registry::{DataDir, Function, Version};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// `GET /functions/{name}/files`: `[{"path","size","sha256"}, …]`, sorted by path.
pub fn list(app: &App, function: &Function) -> Result<Value, ApiError> {
    let version = current(function)?;
    let data = app.registry.data();
    let mut files = Vec::new();
    match &version.package {
        Some(root) => {
            walk(&data.resolve(root), "", &mut files).map_err(unreadable)?;
            files.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
        }
        None => {
            let source = std::fs::read(data.resolve(&version.source)).map_err(unreadable)?;
            files.push(json!({
                "path": "main.go",
                "size": source.len(),
                "sha256": hex(&Sha256::digest(&source)),
            }));
        }
    }
    Ok(Value::Array(files))
}

/// `GET /functions/{name}/files/{path}`: the bytes of one file of the current version.
pub fn one(app: &App, function: &Function, path: &str) -> Result<Vec<u8>, ApiError> {
    let version = current(function)?;
    let unknown = || ApiError::FileUnknown {
        name: function.name.clone(),
        path: path.chars().take(200).collect(),
    };
    let data = app.registry.data();
    let file: PathBuf = match &version.package {
        Some(root) => {
            let parts = packages::relative_path(path).map_err(|_| unknown())?;
            parts
                .iter()
                .fold(data.resolve(root), |file, part| file.join(part))
        }
        None if path == "main.go" => data.resolve(&version.source),
        None => return Err(unknown()),
    };
    // Nothing in a package's folder is a link; a folder is not a file.
    match std::fs::symlink_metadata(&file) {
        Ok(meta) if meta.is_file() => std::fs::read(&file).map_err(unreadable),
        _ => Err(unknown()),
    }
}

/// `GET /functions/{name}/versions/{N}/build`: what the build of version N printed.
pub fn build_output(app: &App, function: &Function, number: &str) -> Result<String, ApiError> {
    let number: u32 = number.parse().map_err(|_| ApiError::PathMalformed {
        reason: "a version is a whole number, as GET /functions/{name}/versions lists them",
    })?;
    let version = function
        .versions
        .iter()
        .find(|v| v.number == number)
        .ok_or_else(|| ApiError::VersionUnknown {
            name: function.name.clone(),
            version: number,
        })?;
    let path = app
        .registry
        .data()
        .resolve(&DataDir::build_output_of(&version.source));
    match std::fs::read(&path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            Ok("(no output was kept for this version: it was built by an older server)".into())
        }
        Err(err) => Err(unreadable(err)),
    }
}

fn current(function: &Function) -> Result<&Version, ApiError> {
    function
        .current_version()
        .ok_or_else(|| ApiError::Internal {
            context: "the function has no version".into(),
        })
}

fn unreadable(err: std::io::Error) -> ApiError {
    ApiError::Internal {
        context: format!("cannot read the version's files: {err}"),
    }
}

/// Every file under `dir`, with `prefix` before its path, sorted by path.
fn walk(dir: &Path, prefix: &str, files: &mut Vec<Value>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = format!("{prefix}{name}");
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), &format!("{path}/"), files)?;
        } else if kind.is_file() {
            let (size, sha256) = digest_of(&entry.path())?;
            files.push(json!({"path": path, "size": size, "sha256": sha256}));
        }
    }
    Ok(())
}

fn digest_of(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buffer[..n]);
    }
    Ok((size, hex(&hasher.finalize())))
}
