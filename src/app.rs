//! The running server's shared state: settings, registry, compiler and scheduler, and the
//! operations that span them (restore at start, reschedule, delete, cron runs). Handlers get
//! an `&App`; nothing here holds a lock while a function runs.

use crate::compiler::Compiler;
use crate::config::Config;
use crate::http::ApiError;
use crate::ids::new_id;
use crate::invocation::{self, Call, Trigger};
use crate::registry::{DataDir, Function, Registry};
use crate::scheduler::{CronExpr, CronHandler, CronJob, Scheduler};
use serde_json::Value;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

pub struct App {
    pub config: Config,
    pub registry: Registry,
    pub compiler: Compiler,
    pub scheduler: Scheduler,
    pub started: Instant,
    /// Where runs get their working directories.
    pub work_root: PathBuf,
    /// The bound listen address, known once the socket is open.
    pub local_addr: OnceLock<std::net::SocketAddr>,
}

impl App {
    /// Opens the data dir and the registry.
    pub fn open(config: Config) -> io::Result<App> {
        let data = DataDir {
            root: config.data_dir.clone(),
        };
        data.create()?;
        let registry = Registry::open(data.clone())?;
        let compiler = Compiler::new(
            config.go.clone(),
            config.compile_timeout,
            data.cache(),
            config.compile_jobs,
        );
        Ok(App {
            config,
            registry,
            compiler,
            scheduler: Scheduler::new(),
            started: Instant::now(),
            work_root: std::env::temp_dir(),
            local_addr: OnceLock::new(),
        })
    }

    /// Brings every registered function back: rebuilds a missing or changed executable from
    /// its stored source, and schedules cron functions. Starts the cron threads.
    pub fn restore(self: &Arc<Self>) {
        self.sweep_scratch();
        for function in self.registry.list() {
            let Some(version) = function.current_version() else {
                log::error!("function {} has no version in the registry", function.name);
                continue;
            };
            let data = self.registry.data();
            let exe = data.resolve(&version.executable);
            let intact = std::fs::metadata(&exe)
                .map(|m| m.len() == version.executable_size)
                .unwrap_or(false);
            if !intact {
                log::warn!(
                    "executable of {} version {} is missing or changed; rebuilding it from its source",
                    function.name,
                    version.number
                );
                let rebuilt = std::fs::read(data.resolve(&version.source))
                    .map_err(|err| format!("cannot read its source: {err}"))
                    .and_then(|source| {
                        self.compiler
                            .compile(&source, &exe)
                            .map_err(|err| err.to_string())
                    });
                match rebuilt {
                    Ok(()) => self.record_rebuilt_size(&function, &exe),
                    Err(err) => log::error!(
                        "cannot rebuild {} version {}: {err}; it answers 500 until registered again",
                        function.name,
                        version.number
                    ),
                }
            }
            let schedule = self.schedule_of(&function);
            self.reschedule(&function, schedule);
            log::info!(
                "restored {} version {} ({})",
                function.name,
                version.number,
                version.settings.trigger
            );
        }
        let weak = Arc::downgrade(self);
        self.scheduler
            .start(self.config.cron_workers(), Arc::new(CronRunner(weak)));
    }

    /// Removes build directories a crash left behind.
    fn sweep_scratch(&self) {
        let Ok(entries) = std::fs::read_dir(self.registry.data().cache()) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("build-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// A rebuilt executable can differ in size from the recorded one (another toolchain):
    /// record the new size so the next start does not rebuild it again.
    fn record_rebuilt_size(&self, function: &Function, exe: &std::path::Path) {
        let Ok(size) = std::fs::metadata(exe).map(|m| m.len()) else {
            return;
        };
        let mut updated = function.clone();
        if let Some(v) = updated
            .versions
            .iter_mut()
            .find(|v| v.number == function.current)
        {
            if v.executable_size == size {
                return;
            }
            v.executable_size = size;
        }
        if let Err(err) = self.registry.put(updated) {
            log::warn!(
                "cannot record the rebuilt executable of {}: {err}",
                function.name
            );
        }
    }

    fn schedule_of(&self, function: &Function) -> Option<CronExpr> {
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

    /// Deletes a function: unscheduled, forgotten on disk, its files removed.
    pub fn delete(&self, name: &str) -> Result<(), ApiError> {
        let name_lock = self.registry.lock_name(name);
        let _held = name_lock.hold();
        let removed = self
            .registry
            .remove(name)
            .map_err(|err| ApiError::Internal {
                context: format!("cannot write the registry: {err}"),
            })?
            .ok_or_else(|| ApiError::FunctionUnknown { name: name.into() })?;
        self.scheduler.remove(name);
        let data = self.registry.data();
        for dir in [data.plugins().join(name), data.sources().join(name)] {
            if let Err(err) = std::fs::remove_dir_all(&dir) {
                if err.kind() != io::ErrorKind::NotFound {
                    log::warn!("cannot remove {}: {err}", dir.display());
                }
            }
        }
        log::info!("deleted {name} (was version {})", removed.current);
        Ok(())
    }
}

/// Runs cron fires on the scheduler's workers.
struct CronRunner(Weak<App>);

impl CronHandler for CronRunner {
    fn run(&self, job: CronJob) {
        let Some(app) = self.0.upgrade() else { return };
        let Some(function) = app.registry.get(&job.name) else {
            return;
        };
        let call = Call {
            trigger: Trigger::Cron,
            request_id: new_id(),
            body: Vec::new(),
            request: None,
        };
        if let Err(err) = invocation::invoke(&app, &function, call) {
            log::warn!("cron run of {} failed: {err}", job.name);
        }
    }

    fn skipped(&self, job: CronJob) {
        log::warn!(
            "cron skip {}: the previous run is still going (fire due {})",
            job.name,
            job.fired_at
        );
    }
}
