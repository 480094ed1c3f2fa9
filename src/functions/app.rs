//! The running server's shared state: settings, registry, compiler and scheduler, and the
//! operations that span them (restore at start, reschedule, delete, cron runs). Handlers get
//! an `&App`; nothing here holds a lock while a function runs.

use crate::builds::Builds;
use crate::concurrency::Concurrency;
use crate::config::Config;
use crate::error::ApiError;
use crate::functions::invoke::{self as invocation, Call, Trigger};
use crate::functions::register::hex;
use crate::history::History;
use crate::ids::new_id;
use crate::metrics::Metrics;
use crate::packages;
use crate::platform;
use crate::registry::secrets::SecretStore;
use crate::registry::trash::Trash;
use crate::registry::{DataDir, Function, Registry, Version};
use crate::runner::WorkDirs;
use crate::runtimes::{tree, Artifact, Builder, Code, Kind, Runtime, Runtimes};
use crate::scheduler::{CronExpr, CronHandler, CronJob, Scheduler};
use crate::users::UserPool;
use crate::warm::Warm;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Instant;

pub struct App {
    pub config: Config,
    pub registry: Registry,
    /// The languages and their toolchains (Go a fake one in unit tests).
    pub runtimes: Runtimes,
    /// Each distinct build, kept once; versions link to them.
    pub builds: Builds,
    pub scheduler: Scheduler,
    /// Busy files waiting to be removed.
    pub trash: Trash,
    pub secrets: SecretStore,
    pub history: History,
    pub metrics: Metrics,
    pub concurrency: Concurrency,
    /// Per-run users, when the server runs as root.
    pub users: Option<Arc<UserPool>>,
    /// Warm (`fcgi`) processes.
    pub warm: Warm,
    pub started: Instant,
    /// Where runs get their working directories.
    pub work_dirs: WorkDirs,
}

impl App {
    /// Opens the data dir and the registry.
    pub fn open(config: Config) -> io::Result<App> {
        App::open_with(config, None)
    }

    /// [`App::open`] with `build` as the Go runtime (unit tests).
    pub fn open_with(config: Config, build: Option<Box<dyn Runtime>>) -> io::Result<App> {
        let data = DataDir {
            root: config.data_dir.clone(),
        };
        data.create()?;
        let work_dirs = WorkDirs::new(data.work_pool())?;
        let registry = Registry::open(data.clone())?;
        let (first, last) = config.run_uids;
        let privileged = platform::is_privileged();
        let build_user = (privileged && last > first).then_some(last);
        let build_area = match build_user {
            Some(uid) => build_area(&data, uid)?,
            None => data.cache(),
        };
        let builder = Arc::new(Builder::new(
            config.compile_timeout,
            config.compile_memory,
            build_user,
            build_area,
            config.compile_jobs,
            config
                .max_package
                .saturating_mul(crate::packages::UNPACKED_FACTOR),
        ));
        let runtimes = Runtimes::new(&config, builder, build);
        // The last uid of the range is the build user's.
        let last_run_uid = if build_user.is_some() { last - 1 } else { last };
        let users = privileged.then(|| Arc::new(UserPool::new(first, last_run_uid)));
        let warm = Warm::new(config.warm_idle);
        let history = History::open(data.registry_dir().join("runs"), config.history_disk)?;
        Ok(App {
            config,
            registry,
            runtimes,
            builds: Builds::new(data.builds(), build_user),
            scheduler: Scheduler::new(),
            trash: Trash::new(data.trash()),
            secrets: SecretStore::new(data.secrets()),
            history,
            metrics: Metrics::default(),
            concurrency: Concurrency::default(),
            users,
            warm,
            started: Instant::now(),
            work_dirs,
        })
    }

    /// Brings every registered function back: rebuilds a missing or changed executable from
    /// its stored source, and schedules cron functions. Starts the cron threads. Costs one
    /// `stat` per function: no executable is read or hashed, nothing is synced.
    pub fn restore(self: &Arc<Self>) {
        self.sweep_scratch();
        self.trash.sweep();
        for function in self.registry.list() {
            let Some(version) = function.current_version() else {
                log::error!("function {} has no version in the registry", function.name);
                continue;
            };
            if let Err(err) = self.ensure_executable(&function, None) {
                log::error!(
                    "cannot rebuild {} version {}: {err}; it answers 500 until registered again",
                    function.name,
                    version.number
                );
            }
            if let Some(schedule) = self.schedule_of(&function) {
                self.reschedule(&function, Some(schedule));
            }
            log::info!(
                "restored {} version {} ({})",
                function.name,
                version.number,
                version.settings.trigger
            );
        }
        // After the rebuilds above, which may relink a build that only the store still had.
        self.builds.sweep();
        let host: Arc<dyn crate::warm::WarmHost> = self.clone();
        self.warm.start(Arc::downgrade(&host));
        let weak = Arc::downgrade(self);
        self.scheduler
            .start(self.config.cron_workers(), Arc::new(CronRunner(weak)));
    }

    /// Removes build directories a crash left behind.
    fn sweep_scratch(&self) {
        self.runtimes.sweep_scratch();
    }

    /// Checks the current version's executable and, if it is missing or its size changed,
    /// rebuilds it from the stored source (or from `source`, the same code just submitted,
    /// when the stored file is gone). The source must still match the recorded digest.
    pub fn ensure_executable(
        &self,
        function: &Function,
        source: Option<&[u8]>,
    ) -> Result<(), String> {
        let version = function
            .current_version()
            .ok_or_else(|| "it has no version".to_string())?;
        let data = self.registry.data();
        let exe = data.resolve(&version.executable);
        let unknown = || format!("its runtime '{}' is unknown", version.settings.runtime);
        // Told by the kind alone: a restart checks every function without looking for
        // toolchains.
        let kind = Kind::of(&version.settings.runtime).ok_or_else(unknown)?;
        let is_tree = kind.artifact() == Artifact::Tree;
        let intact = match is_tree {
            true => {
                tree::entry_of(&exe).is_some_and(|entry| Some(&entry) == version.entry.as_ref())
            }
            false => std::fs::metadata(&exe)
                .map(|m| m.len() == version.executable_size)
                .unwrap_or(false),
        };
        if intact {
            return Ok(());
        }
        log::warn!(
            "executable of {} version {} is missing or changed; rebuilding it from its source",
            function.name,
            version.number
        );
        let source_path = data.resolve(&version.source);
        let stored = match std::fs::read(&source_path) {
            Ok(stored) => stored,
            Err(err) => {
                let submitted = source.ok_or_else(|| format!("cannot read its source: {err}"))?;
                if let Some(dir) = source_path.parent() {
                    platform::create_dir_durably(dir).map_err(|e| e.to_string())?;
                }
                platform::write_atomically(&source_path, submitted)
                    .map_err(|e| format!("cannot store its source: {e}"))?;
                submitted.to_vec()
            }
        };
        let unpacked = match &version.package {
            Some(root) => Some(self.unpacked_again(version, root, &stored)?),
            None => None,
        };
        let code = match &unpacked {
            Some(files) => Code::Package {
                root: &files.root,
                digest: &files.digest,
                main: version.settings.main.as_deref(),
            },
            None => Code::Source(&stored),
        };
        let matches = match &unpacked {
            Some(files) => files.digest == version.sha256,
            None => hex(&Sha256::digest(&stored)) == version.sha256,
        };
        if !matches {
            return Err(format!(
                "its stored source {} no longer matches the recorded sha256",
                version.source
            ));
        }
        let runtime = self.runtimes.get(kind).ok_or_else(unknown)?;
        let installed = self
            .builds
            .install(
                &*runtime,
                &self.metrics,
                code,
                &exe,
                Some(version.executable_size).filter(|_| !is_tree),
            )
            .map_err(|err| err.to_string())?;
        super::register::keep_build_output(
            &data.resolve(&DataDir::build_output_of(&version.source)),
            &installed.output,
        );
        let size = installed.size;
        if size != version.executable_size || installed.entry != version.entry {
            // Another toolchain can build another size: record it so the next start does
            // not rebuild again.
            let mut updated = function.clone();
            if let Some(v) = updated
                .versions
                .iter_mut()
                .find(|v| v.number == version.number)
            {
                v.executable_size = size;
                v.entry = installed.entry.clone();
            }
            self.registry
                .put(updated)
                .map_err(|e| format!("cannot record the rebuilt executable: {e}"))?;
        }
        log::info!(
            "rebuilt {} version {}{}",
            function.name,
            version.number,
            if installed.compiled {
                ""
            } else {
                " (linked to its stored build)"
            }
        );
        Ok(())
    }

    /// The files of a package version, unpacked again from its stored archive: what is on
    /// disk of its folder is not trusted to be what was registered.
    fn unpacked_again(
        &self,
        version: &Version,
        root: &str,
        archive: &[u8],
    ) -> Result<packages::Unpacked, String> {
        let data = self.registry.data();
        let folder = data.resolve(&super::register::version_folder(root));
        self.trash.discard(&folder);
        let limits = packages::Limits::for_package(self.config.max_package);
        let unpacked = packages::unpack(archive, packages::Kind::of(archive), &folder, limits)
            .map_err(|refusal| format!("its stored package cannot be unpacked: {refusal}"))?;
        if unpacked.root != data.resolve(root) {
            return Err(format!(
                "its stored package no longer unpacks to {root} (version {})",
                version.number
            ));
        }
        Ok(unpacked)
    }

    /// The schedule of `function`'s current version: None for an http function, and for a
    /// trigger that no longer parses (logged; the registry was edited by hand).
    pub(crate) fn schedule_of(&self, function: &Function) -> Option<CronExpr> {
        let version = function.current_version()?;
        if !version.settings.is_cron() {
            return None;
        }
        match CronExpr::parse(&version.settings.trigger) {
            Ok(expr) => Some(expr),
            Err(err) => {
                log::error!("function {} has an unusable trigger: {err}", function.name);
                None
            }
        }
    }

    /// Puts the function's schedule in force at once (none for http or paused functions).
    pub fn reschedule(&self, function: &Function, schedule: Option<CronExpr>) {
        match schedule {
            Some(expr) if !function.paused => {
                let next = self.scheduler.set(&function.name, expr);
                log::debug!("scheduled {} next at {next:?}", function.name);
            }
            _ => self.scheduler.remove(&function.name),
        }
    }

    /// The metadata object with the live `next_run`.
    pub fn metadata(&self, function: &Function) -> Value {
        let next = if function.paused {
            None
        } else {
            self.scheduler.next_run(&function.name)
        };
        function.metadata(next)
    }

    /// Runs `change` holding `name`'s lock: registrations, rollbacks, pauses and deletions
    /// of one name never interleave (other names go on).
    pub(crate) fn with_name_locked<T>(&self, name: &str, change: impl FnOnce() -> T) -> T {
        let name_lock = self.registry.lock_name(name);
        let _held = name_lock.hold();
        change()
    }

    /// Deletes a function: unscheduled, forgotten on disk, its files removed.
    pub fn delete(&self, name: &str) -> Result<(), ApiError> {
        if self.registry.get(name).is_none() {
            return Err(ApiError::FunctionUnknown {
                name: name.chars().take(64).collect(),
            });
        }
        self.with_name_locked(name, || self.delete_locked(name))
    }

    fn delete_locked(&self, name: &str) -> Result<(), ApiError> {
        let removed = self
            .registry
            .remove(name)
            .map_err(|err| ApiError::Internal {
                context: format!("cannot write the registry: {err}"),
            })?
            .ok_or_else(|| ApiError::FunctionUnknown { name: name.into() })?;
        self.scheduler.remove(name);
        self.warm.forget(name);
        self.history.forget(name);
        let data = self.registry.data();
        for dir in [
            data.plugins().join(name),
            data.sources().join(name),
            self.secrets.folder(name),
        ] {
            self.trash.discard(&dir);
        }
        log::info!("deleted {name} (was version {})", removed.current);
        Ok(())
    }
}

/// Where builds run as the build user `uid`: the data dir's `cache/` when that user can
/// reach it, else (a data dir under a folder closed to others, such as `/root` or a
/// `mktemp -d`) a folder of the server's build base named after the data dir. Either way
/// the builds keep their own user; only the finished executables enter the data dir.
fn build_area(data: &DataDir, uid: u32) -> io::Result<PathBuf> {
    if platform::others_can_traverse(&data.root) {
        give_cache_to_build_user(data, uid)?;
        return Ok(data.cache());
    }
    let base = platform::build_base();
    std::fs::create_dir_all(&base)?;
    let area = base.join(format!("build-{}", data.identity()));
    std::fs::create_dir_all(&area)?;
    if platform::owner_of(&area) != Some(uid) {
        platform::give_tree_to_user(&area, uid)?;
    }
    platform::make_private(&area)?;
    log::info!(
        "the data dir {} is closed to other users: builds run as uid {uid} in {}",
        data.root.display(),
        area.display()
    );
    Ok(area)
}

/// Gives the shared Go build cache and the build folders to the build user, but never the
/// store of finished executables: what the build user owns, it could change.
fn give_cache_to_build_user(data: &DataDir, uid: u32) -> io::Result<()> {
    let builds = data.builds();
    if platform::owner_of(&builds) == Some(uid) {
        // Left by an older server that gave the whole cache away: its contents are untrusted.
        platform::remove_tree(&builds)?;
        std::fs::create_dir_all(&builds)?;
        platform::make_private(&builds)?;
    }
    if platform::owner_of(&data.cache()) == Some(uid) {
        return Ok(());
    }
    platform::give_to_user(&data.cache(), uid)?;
    for entry in std::fs::read_dir(data.cache())? {
        let path = entry?.path();
        if path != builds {
            platform::give_tree_to_user(&path, uid)?;
        }
    }
    Ok(())
}

impl crate::warm::WarmHost for App {
    fn warm(&self) -> &crate::warm::Warm {
        &self.warm
    }

    fn current_key(&self, name: &str) -> Option<crate::warm::Key> {
        let function = self.registry.get(name)?;
        let version = function.current_version()?;
        Some(crate::warm::Key {
            name: name.to_string(),
            version: version.number,
            created: version.created_at,
        })
    }
}

/// Runs cron fires on the scheduler's workers.
struct CronRunner(Weak<App>);

impl CronHandler for CronRunner {
    fn run(&self, job: CronJob) {
        let Some(app) = self.0.upgrade() else { return };
        app.metrics.cron_fire(&job.name, "started");
        app.metrics
            .cron_lateness("fired", job.dispatched_at - job.fired_at);
        app.metrics
            .cron_lateness("started", chrono::Utc::now() - job.fired_at);
        let Some(function) = app.registry.get(&job.name) else {
            return;
        };
        let call = Call {
            trigger: Trigger::Cron,
            request_id: new_id(),
            body: Vec::new(),
            request: None,
        };
        let run = invocation::hold(&app, function, None)
            .and_then(|held| invocation::invoke(&app, held, call));
        if let Err(err) = run {
            log::warn!("cron run of {} failed: {err}", job.name);
        }
    }

    fn skipped(&self, job: CronJob) {
        if let Some(app) = self.0.upgrade() {
            app.metrics.cron_fire(&job.name, "skipped");
            if let Some(function) = app.registry.get(&job.name) {
                app.history
                    .skipped(&job.name, &new_id(), function.current, job.fired_at);
            }
        }
        log::warn!(
            "cron skip {}: the previous run is still going (fire due {})",
            job.name,
            job.fired_at
        );
    }
}
