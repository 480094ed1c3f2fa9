//! Runs a function's executable for one invocation: a fresh private working directory
//! (removed afterwards), an environment built from scratch, the time limit and output cap.
//! Never holds any registry lock; knows nothing of HTTP.

pub mod child;
mod drain;
mod pump;
mod workdirs;

use crate::platform;
pub use child::{Ending, Finished};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
pub use workdirs::{WorkDir, WorkDirs};

/// How much stderr a run keeps (the rest is read and dropped).
pub const STDERR_KEEP: usize = 64 * 1024;

/// The child process of one run, as the runner starts it (what a run is asked to do, its
/// trigger and request, is `invocation::Call`).
pub struct RunSpec {
    /// The function's executable, or its runtime's interpreter.
    pub executable: PathBuf,
    /// The arguments: an interpreter's options and script.
    pub args: Vec<std::ffi::OsString>,
    /// The function's files, for an interpreted runtime (see [`platform::open_tree`]).
    pub tree: Option<std::sync::Arc<std::fs::File>>,
    /// `executable` as opened when the run's version was resolved: run instead of the path.
    pub program: Option<std::sync::Arc<std::fs::File>>,
    /// The function's own variables and the request's meta-variables; the runner adds
    /// `PATH`, `HOME`, `TMPDIR` and `LANG` before them.
    pub env: Vec<(String, String)>,
    pub stdin: Vec<u8>,
    pub timeout: Duration,
    pub max_output: u64,
    pub run_id: String,
    pub sandbox: platform::Sandbox,
}

/// Runs `spec` in an empty directory of its own from `work_dirs`.
pub fn run(spec: RunSpec, work_dirs: &WorkDirs) -> io::Result<Finished> {
    let work_dir = work_dirs.take(spec.sandbox.user)?;
    let result = run_in(spec, work_dir.path());
    // Taken back from the run's user, then emptied: nothing the run may have left running
    // can write there any more. Those processes are killed when the uid goes back to its
    // pool (see `users`), before any other run can have it.
    drop(work_dir);
    result
}

/// The command that runs a function's executable (or its interpreter, with `args`) in
/// `work_dir`: an environment built from scratch (`PATH`, `HOME` and the temp variables
/// pointing at the working directory, `LANG`, then `env`), one-shot and warm runs alike.
pub fn function_command(
    executable: &Path,
    args: &[std::ffi::OsString],
    work_dir: &Path,
    env: Vec<(String, String)>,
) -> Command {
    let mut command = Command::new(executable);
    command.args(args);
    let dir = work_dir.to_string_lossy().into_owned();
    command
        .env_clear()
        .envs(platform::system_env())
        .env("PATH", platform::function_path())
        .env("HOME", &dir)
        .envs(platform::TEMP_VARS.iter().map(|var| (*var, &dir)))
        .env("LANG", "C.UTF-8")
        .envs(env)
        .current_dir(work_dir);
    command
}

fn run_in(spec: RunSpec, work_dir: &Path) -> io::Result<Finished> {
    let command = function_command(&spec.executable, &spec.args, work_dir, spec.env);
    child::run(child::ChildSpec {
        command,
        stdin: spec.stdin,
        timeout: spec.timeout,
        stdout_limit: Some(spec.max_output),
        keep: STDERR_KEEP,
        sandbox: spec.sandbox,
        program: spec.program,
        tree: spec.tree,
    })
}
