//! Function management without HTTP and without Go: the real `App` on a temporary data dir,
//! with a fake toolchain that writes a small file for each source and counts its builds.
//! Registration, unchanged re-registration, rollback, pause, delete, and restore from a data
//! dir left by an earlier server, each in milliseconds.

use super::manage;
use super::register::{self, ParseRules, Registration};
use super::App;
use crate::config::{Command, Config};
use crate::error::ApiError;
use crate::runtimes::{Code, CompileError, Kind, Runtime};
use base64::Engine as _;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A toolchain that "builds" a source into a file naming it, and counts its builds.
#[derive(Clone, Default)]
struct FakeBuild {
    builds: Arc<AtomicUsize>,
}

impl Runtime for FakeBuild {
    fn kind(&self) -> Kind {
        Kind::Go
    }
    fn tool(&self) -> &Path {
        Path::new("fake-go")
    }
    fn install_hint(&self) -> String {
        "nothing to install".into()
    }
    fn identity(&self) -> Result<String, CompileError> {
        Ok("fake toolchain".into())
    }
    fn build(&self, code: Code<'_>, output: &Path) -> Result<String, CompileError> {
        self.builds.fetch_add(1, Ordering::SeqCst);
        let program = match code {
            Code::Source(source) => format!("#!/bin/sh\n# built from {} bytes\n", source.len()),
            Code::Package { digest, .. } => format!("#!/bin/sh\n# built from package {digest}\n"),
        };
        std::fs::write(output, program).map_err(CompileError::Io)?;
        Ok(String::new())
    }
}

impl FakeBuild {
    fn count(&self) -> usize {
        self.builds.load(Ordering::SeqCst)
    }
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = crate::platform::remove_tree(&self.0);
    }
}

fn scratch() -> Scratch {
    let dir = std::env::temp_dir().join(format!("golambda-functions-{}", crate::ids::new_id()));
    std::fs::create_dir_all(&dir).expect("a scratch dir");
    Scratch(dir)
}

fn config(data: &Path) -> Config {
    let args: Vec<String> = [
        "--data-dir",
        &data.display().to_string(),
        "--run-uids",
        "63900-63963",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    match Command::parse(&args, &HashMap::new()) {
        Ok(Command::Serve(config)) => *config,
        _ => panic!("the test's flags parse"),
    }
}

fn open(data: &Path, build: &FakeBuild) -> App {
    App::open_with(config(data), Some(Box::new(build.clone()))).expect("the app opens")
}

fn registration(name: &str, code: &str, trigger: &str) -> Registration {
    let body = serde_json::json!({
        "name": name,
        "trigger": trigger,
        "code": base64::engine::general_purpose::STANDARD.encode(code),
    });
    let rules = ParseRules {
        max_source: 1 << 20,
        max_package: 32 << 20,
        default_timeout: Duration::from_secs(30),
    };
    Registration::parse(body.to_string().as_bytes(), &rules).expect("a valid registration")
}

fn version_of(app: &App, name: &str) -> Option<u32> {
    app.registry.get(name).map(|f| f.current)
}

#[test]
fn registering_builds_once_and_an_unchanged_registration_changes_nothing() {
    let dir = scratch();
    let build = FakeBuild::default();
    let app = open(&dir.0, &build);
    let (status, meta) = register::register(&app, registration("f", "one", "http")).expect("ok");
    assert_eq!((status, meta["version"].as_u64()), (201, Some(1)));
    let (status, _) = register::register(&app, registration("f", "one", "http")).expect("ok");
    assert_eq!((status, version_of(&app, "f")), (200, Some(1)));
    assert_eq!(build.count(), 1, "an unchanged registration built again");
    let (status, _) = register::register(&app, registration("f", "two", "http")).expect("ok");
    assert_eq!((status, version_of(&app, "f")), (200, Some(2)));
    // The same source under another name is the same build.
    register::register(&app, registration("g", "two", "http")).expect("ok");
    assert_eq!(build.count(), 2);
    app.history.close();
}

#[test]
fn rollback_pause_and_delete() {
    let dir = scratch();
    let build = FakeBuild::default();
    let app = open(&dir.0, &build);
    register::register(&app, registration("f", "one", "http")).expect("v1");
    register::register(&app, registration("f", "two", "http")).expect("v2");
    manage::rollback(&app, "f", 1).expect("a kept version");
    assert_eq!(version_of(&app, "f"), Some(1));
    assert!(matches!(
        manage::rollback(&app, "f", 9),
        Err(ApiError::VersionUnknown { version: 9, .. })
    ));
    assert!(matches!(
        manage::set_paused(&app, "f", true),
        Err(ApiError::FunctionNotCron { .. })
    ));
    register::register(&app, registration("c", "tick", "@every 1h")).expect("cron");
    assert!(app.scheduler.next_run("c").is_some());
    manage::set_paused(&app, "c", true).expect("paused");
    assert_eq!(
        app.scheduler.next_run("c"),
        None,
        "a paused function is unscheduled"
    );
    manage::set_paused(&app, "c", false).expect("resumed");
    assert!(app.scheduler.next_run("c").is_some());
    let plugins = app.registry.data().plugins().join("f");
    assert!(plugins.is_dir());
    app.delete("f").expect("deleted");
    assert_eq!(version_of(&app, "f"), None);
    assert!(!plugins.exists(), "the deleted function's files stay");
    assert!(matches!(
        app.delete("f"),
        Err(ApiError::FunctionUnknown { .. })
    ));
    app.history.close();
}

#[test]
fn restore_takes_back_what_an_earlier_server_left_and_rebuilds_only_what_changed() {
    let dir = scratch();
    let first = FakeBuild::default();
    let app = open(&dir.0, &first);
    register::register(&app, registration("kept", "one", "http")).expect("kept");
    register::register(&app, registration("cut", "two", "@every 1h")).expect("cut");
    let cut = app.registry.get("cut").expect("cut");
    let exe = app.registry.data().resolve(&cut.versions[0].executable);
    app.history.close();
    drop(app);
    // The executables are in place: a restart builds nothing.
    let second = FakeBuild::default();
    let app = Arc::new(open(&dir.0, &second));
    app.restore();
    assert_eq!(
        (version_of(&app, "kept"), version_of(&app, "cut")),
        (Some(1), Some(1))
    );
    assert_eq!(
        second.count(),
        0,
        "a restart rebuilt an executable that was in place"
    );
    assert!(
        app.scheduler.next_run("cut").is_some(),
        "the schedule came back"
    );
    app.scheduler.stop();
    app.warm.stop();
    app.history.close();
    drop(app);
    // One executable of the wrong size: only it is rebuilt, from its stored source.
    std::fs::write(&exe, b"damaged").expect("damage");
    let third = FakeBuild::default();
    let app = Arc::new(open(&dir.0, &third));
    app.restore();
    assert_eq!(third.count(), 1);
    let size = std::fs::metadata(&exe).expect("rebuilt").len();
    assert_eq!(size, cut.versions[0].executable_size);
    app.scheduler.stop();
    app.warm.stop();
    app.history.close();
}
