//! `PUT /register` performed: compile outside every lock but the function's own name lock,
//! write the files (a package unpacked into its version's folder first), then the registry,
//! then reschedule; a failure at any step leaves everything as it was and the previous
//! version serving. The body's parser is [`super::parse`].

use crate::builds::Installed;
use crate::error::ApiError;
use crate::functions::app::App;
use crate::packages;
use crate::registry::function::KEPT_VERSIONS;
use crate::registry::{remove_file_if_present, DataDir, Function, Version};
use crate::runtimes::{Code, CompileError, Kind, Runtime};
use chrono::Utc;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::time::Instant;

use super::parse::truncate;
pub use super::parse::{ParseRules, Registration};

/// Registers the function; answers 201 for a new function, 200 otherwise.
pub fn register(app: &App, registration: Registration) -> Result<(u16, Value), ApiError> {
    let name = registration.name.clone();
    app.with_name_locked(&name, || register_locked(app, registration))
}

fn register_locked(app: &App, registration: Registration) -> Result<(u16, Value), ApiError> {
    let name = registration.name.clone();
    let existing = app.registry.get(&name);
    // A new function starts a generation of its own: no file of a function deleted under
    // this name is ever taken for one of its.
    let generation = existing
        .as_ref()
        .map_or_else(crate::ids::new_id, |f| f.generation.clone());
    let number = existing.as_ref().map_or(1, |f| f.next_number());
    let data = app.registry.data();
    let runtime = runtime_of(app, &registration.settings.runtime)?;
    let kind = runtime.kind();
    // A package is unpacked first, into the folder of the version it would be: its
    // identity is its content, which only unpacking tells.
    let unpacked = match registration.kind {
        packages::Kind::Source => None,
        archive => {
            let (_, tree_rel, _) =
                DataDir::package_files(&name, &generation, number, archive, kind);
            Some(unpack(
                app,
                &registration.source,
                archive,
                &data.resolve(&tree_rel),
            )?)
        }
    };
    let sha256 = match &unpacked {
        Some(package) => package.unpacked.digest.clone(),
        None => hex(&Sha256::digest(&registration.source)),
    };
    if let Some(function) = existing.as_deref() {
        let current = function.current_version();
        let same_secrets = |number| {
            app.secrets
                .read(&name, &generation, number)
                .is_ok_and(|stored| stored == registration.secrets)
        };
        if current.is_some_and(|c| {
            c.sha256 == sha256 && c.settings == registration.settings && same_secrets(c.number)
        }) {
            if let Some(package) = &unpacked {
                app.trash.discard(&package.folder);
            }
            // Nothing to compile, unless the executable was lost: then this repairs it.
            app.ensure_executable(function, Some(&registration.source))
                .map_err(|context| ApiError::Internal { context })?;
            let refreshed = app.registry.get(&name);
            let shown = refreshed.as_deref().unwrap_or(function);
            log::info!(
                "registered {name} version {} (unchanged, nothing compiled)",
                shown.current
            );
            return Ok((200, app.metadata(shown)));
        }
    }
    if let Some(reason) = runtime.unavailable() {
        if let Some(package) = &unpacked {
            app.trash.discard(&package.folder);
        }
        return Err(toolchain_missing(&*runtime, reason));
    }
    let (source_rel, exe_rel, package_rel) = match &unpacked {
        Some(package) => {
            let (archive, _, exe) =
                DataDir::package_files(&name, &generation, number, registration.kind, kind);
            (archive, exe, Some(package.root_rel.clone()))
        }
        None => {
            let (source, exe) = DataDir::version_files(&name, &generation, number, kind);
            (source, exe, None)
        }
    };
    let (source_path, exe_path) = (data.resolve(&source_rel), data.resolve(&exe_rel));
    let started = Instant::now();
    let code = match &unpacked {
        Some(package) => Code::Package {
            root: &package.unpacked.root,
            digest: &package.unpacked.digest,
            main: registration.settings.main.as_deref(),
        },
        None => Code::Source(&registration.source),
    };
    let built = write_and_build(
        app,
        &*runtime,
        &registration.source,
        code,
        &source_path,
        &exe_path,
    );
    let installed = match built {
        Ok(installed) => installed,
        Err(err) => {
            let _ = remove_file_if_present(&source_path);
            app.trash.discard(&exe_path);
            if let Some(package) = &unpacked {
                app.trash.discard(&package.folder);
            }
            if existing.is_none() {
                // Only empty folders go; anything else stays as it was.
                for path in [&source_path, &exe_path] {
                    if let Some(dir) = path.parent() {
                        let _ = std::fs::remove_dir(dir);
                    }
                }
            }
            log::warn!(
                "compilation of {name} failed: {}",
                one_line(&err.to_string())
            );
            return Err(err);
        }
    };
    keep_build_output(
        &data.resolve(&DataDir::build_output_of(&source_rel)),
        &installed.output,
    );
    if installed.compiled {
        log::info!(
            "compiled {name} version {number} in {} ms",
            started.elapsed().as_millis()
        );
    } else {
        log::info!("{name} version {number} reuses the stored build of identical source");
    }
    let now = Utc::now();
    let version = Version {
        number,
        sha256,
        created_at: now,
        settings: registration.settings,
        source: source_rel.clone(),
        executable: exe_rel,
        executable_size: installed.size,
        package: package_rel,
        entry: installed.entry.clone(),
    };
    let mut function = match &existing {
        Some(f) => (**f).clone(),
        None => Function {
            name: name.clone(),
            generation: generation.clone(),
            created_at: now,
            updated_at: now,
            current: number,
            paused: false,
            versions: Vec::new(),
        },
    };
    function.updated_at = now;
    function.current = number;
    function.versions.push(version);
    let dropped: Vec<Version> = if function.versions.len() > KEPT_VERSIONS {
        let excess = function.versions.len() - KEPT_VERSIONS;
        function.versions.drain(..excess).collect()
    } else {
        Vec::new()
    };
    let stored = app
        .secrets
        .write(&name, &generation, number, &registration.secrets);
    if let Err(err) = stored.and_then(|()| app.registry.put(function.clone())) {
        app.trash
            .discard(&app.secrets.version_file(&name, &generation, number));
        let _ = remove_file_if_present(&source_path);
        app.trash.discard(&exe_path);
        if let Some(package) = &unpacked {
            app.trash.discard(&package.folder);
        }
        let _ = remove_file_if_present(&data.resolve(&DataDir::build_output_of(&source_rel)));
        return Err(io_failure("cannot write the registry", &err));
    }
    for old in dropped {
        app.trash
            .discard(&data.resolve(&DataDir::build_output_of(&old.source)));
        if let Some(tree) = &old.package {
            app.trash.discard(&data.resolve(&version_folder(tree)));
        }
        app.trash.discard(&data.resolve(&old.source));
        app.trash.discard(&data.resolve(&old.executable));
        app.trash
            .discard(&app.secrets.version_file(&name, &generation, old.number));
    }
    app.reschedule(&function, registration.schedule);
    log::info!("registered {name} version {number}");
    let status = if existing.is_some() { 200 } else { 201 };
    Ok((status, app.metadata(&function)))
}

/// Writes the source durably and installs its executable (compiled unless the same source
/// was built before).
fn write_and_build(
    app: &App,
    runtime: &dyn Runtime,
    source: &[u8],
    code: Code<'_>,
    source_path: &std::path::Path,
    exe_path: &std::path::Path,
) -> Result<Installed, ApiError> {
    for dir in [source_path.parent(), exe_path.parent()]
        .into_iter()
        .flatten()
    {
        crate::platform::create_dir_durably(dir)
            .map_err(|e| io_failure(&format!("cannot create {}", dir.display()), &e))?;
    }
    // The source is stored (and synced) while the build runs: both must be done before
    // the registration is answered, neither needs the other.
    let (stored, installed) = std::thread::scope(|scope| {
        let storing = scope.spawn(|| crate::platform::write_atomically(source_path, source));
        let installed = app
            .builds
            .install(runtime, &app.metrics, code, exe_path, None);
        let stored = storing
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the source writer panicked")));
        (stored, installed)
    });
    let installed = installed.map_err(|err| compile_error(runtime, err))?;
    stored.map_err(|e| io_failure("cannot store the source", &e))?;
    Ok(installed)
}

/// Keeps what a version's build printed (not synced: it is shown, never needed).
pub fn keep_build_output(path: &std::path::Path, output: &str) {
    if let Err(err) = std::fs::write(path, output) {
        log::warn!("cannot keep the build output in {}: {err}", path.display());
    }
}

/// A package unpacked into the folder of the version it would become.
struct Package {
    /// The version's folder, removed whole if the registration does not go through.
    folder: std::path::PathBuf,
    unpacked: packages::Unpacked,
    /// The package's root (the folder, or the one folder everything was under), relative
    /// to the data dir.
    root_rel: String,
}

/// Unpacks `code` into `folder` (left over by a crash if it exists), as the contract answers
/// a refusal.
fn unpack(
    app: &App,
    code: &[u8],
    kind: packages::Kind,
    folder: &std::path::Path,
) -> Result<Package, ApiError> {
    if let Some(parent) = folder.parent() {
        crate::platform::create_dir_durably(parent)
            .map_err(|e| io_failure(&format!("cannot create {}", parent.display()), &e))?;
    }
    if folder.exists() {
        app.trash.discard(folder);
    }
    let limits = packages::Limits::for_package(app.config.max_package);
    let unpacked = packages::unpack(code, kind, folder, limits).map_err(refused)?;
    if unpacked.files.is_empty() {
        app.trash.discard(folder);
        return Err(ApiError::PackageRefused {
            entry: None,
            reason: "the archive holds no files".into(),
        });
    }
    let data = app.registry.data();
    let root_rel = unpacked
        .root
        .strip_prefix(data.resolve(""))
        .map(|p| {
            p.components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/")
        })
        .map_err(|_| internal("the unpacked package is outside the data dir"))?;
    Ok(Package {
        folder: folder.to_path_buf(),
        unpacked,
        root_rel,
    })
}

/// The version folder a package's root lies in (the root itself, or its parent when the
/// archive's one top folder was stripped): `user_functions/<name>/<stem>`.
pub fn version_folder(root_rel: &str) -> String {
    root_rel.split('/').take(3).collect::<Vec<_>>().join("/")
}

fn refused(refusal: packages::Refusal) -> ApiError {
    match refusal {
        packages::Refusal::TooManyEntries { .. } | packages::Refusal::TooLarge { .. } => {
            ApiError::PackageTooLarge {
                reason: refusal.to_string(),
            }
        }
        packages::Refusal::Entry { entry, reason } => ApiError::PackageRefused {
            entry: Some(entry),
            reason,
        },
        packages::Refusal::Malformed { .. } => ApiError::PackageRefused {
            entry: None,
            reason: refusal.to_string(),
        },
        packages::Refusal::Io(err) => io_failure("cannot unpack the package", &err),
    }
}

/// The runtime a registration's settings name.
pub fn runtime_of(app: &App, name: &str) -> Result<std::sync::Arc<dyn Runtime>, ApiError> {
    Kind::of(name)
        .and_then(|kind| app.runtimes.get(kind))
        .ok_or_else(|| ApiError::FieldInvalid {
            field: "runtime",
            reason: format!("'{name}' is not a runtime of this server"),
        })
}

/// The 503 of a runtime whose toolchain cannot be used.
pub fn toolchain_missing(runtime: &dyn Runtime, reason: String) -> ApiError {
    ApiError::ToolchainMissing {
        runtime: runtime.kind().name(),
        tool: runtime.tool().display().to_string(),
        reason,
        install: runtime.install_hint(),
    }
}

/// Maps a build failure to its API answer.
pub fn compile_error(runtime: &dyn Runtime, err: CompileError) -> ApiError {
    match err {
        CompileError::ToolchainMissing { tool, source } if tool.as_path() != runtime.tool() => {
            toolchain_missing(runtime, format!("'{}': {source}", tool.display()))
        }
        CompileError::ToolchainMissing { source, .. } => {
            toolchain_missing(runtime, source.to_string())
        }
        // The toolchain's own words when the disk filled under it: not the code's fault.
        CompileError::Rejected { output }
            if output
                .to_ascii_lowercase()
                .contains("no space left on device") =>
        {
            ApiError::StorageFull {
                context: format!("the build: {}", one_line(&output)),
            }
        }
        CompileError::Rejected { output } => ApiError::CompileRejected { details: output },
        CompileError::TimedOut { limit } => ApiError::CompileTimedOut { limit },
        CompileError::Io(err) => io_failure("build files", &err),
    }
}

/// An I/O failure on the server's side: 507 when the disk (or the server's quota) is full,
/// else 500.
fn io_failure(context: &str, err: &std::io::Error) -> ApiError {
    use std::io::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded
    ) {
        return ApiError::StorageFull {
            context: format!("{context}: {err}"),
        };
    }
    internal(&format!("{context}: {err}"))
}

fn internal(context: &str) -> ApiError {
    ApiError::Internal {
        context: context.to_string(),
    }
}

fn one_line(text: &str) -> String {
    truncate(&text.replace('\n', " | "), 300)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
