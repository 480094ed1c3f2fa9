//! Starts the real `golambda` binary for one test and drives it: requests, registrations,
//! signals, restarts. On a failing test, dropping the `Server` prints what a person needs to
//! see (ripgrep style): the command, the data dir listing, the exit status and the log tail.

use super::http::{self, Body, Response};
use super::tempdir::TempDir;
use base64::Engine as _;
use serde_json::{json, Value};
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const START_DEADLINE: Duration = Duration::from_secs(60);
const LOG_TAIL_LINES: usize = 60;

/// Which Go toolchain the server is given.
#[derive(Clone)]
enum Go {
    /// The default: `--go <wrapper>`, a script that records each call and runs the real `go`
    /// with a GOCACHE shared by the whole suite, so that each test does not pay for building
    /// the standard library again (the server keeps a cache per data dir).
    Wrapper,
    /// `--go <path>`.
    Path(String),
    /// No `--go` flag: the server looks for `go` on PATH itself.
    System,
}

/// Options for one server: extra flags and environment variables.
#[derive(Clone)]
pub struct Builder {
    args: Vec<String>,
    envs: Vec<(String, String)>,
    go: Go,
    closed_parent: bool,
}

impl Builder {
    pub fn arg(mut self, arg: impl Into<String>) -> Builder {
        self.args.push(arg.into());
        self
    }

    /// `--workers 1 --max-queue 0`: one run at a time, nothing waits.
    pub fn one_worker_no_queue(self) -> Builder {
        self.arg("--workers").arg("1").arg("--max-queue").arg("0")
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Builder {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// `--go <path>` instead of the suite's caching wrapper.
    pub fn go(mut self, path: impl Into<String>) -> Builder {
        self.go = Go::Path(path.into());
        self
    }

    /// The data dir inside a folder no other user may enter (mode 0700, like `/root`).
    pub fn closed_parent(mut self) -> Builder {
        self.closed_parent = true;
        self
    }

    /// No `--go` flag at all: the server must find `go` on PATH (and uses its own cache).
    pub fn system_go(mut self) -> Builder {
        self.go = Go::System;
        self
    }

    pub fn start(self) -> Server {
        let dir = TempDir::new();
        let data_dir = if self.closed_parent {
            let closed = dir.path().join("closed");
            fs::create_dir_all(&closed).unwrap();
            fs::set_permissions(&closed, fs::Permissions::from_mode(0o700)).unwrap();
            closed.join("data")
        } else {
            dir.path().join("data")
        };
        let io_dir = dir.path().join("io");
        fs::create_dir_all(&io_dir).unwrap();
        // Functions may run under another uid when the tests run as root.
        fs::set_permissions(&io_dir, fs::Permissions::from_mode(0o777)).unwrap();
        let go_wrapper = write_go_wrapper(dir.path(), &io_dir.join("go-calls.txt"));
        let mut server = Server {
            base: self,
            dir,
            data_dir,
            io_dir,
            run_uids: {
                static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let first = TEST_UIDS + 64 * NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                format!("{first}-{}", first + 63)
            },
            go_wrapper,
            child: None,
            port: 0,
            generation: 0,
            command_line: String::new(),
            stdout_lines: Arc::new(Mutex::new(Vec::new())),
            exit_status: None,
        };
        let base = server.base.clone();
        server.launch(&base);
        server
    }
}

/// Where the test servers' `--run-uids` blocks of 64 start: away from the default range
/// (64000-64999) and the benchmarks', so that the suite, run as root, never shares a uid
/// with a server running on the same host (a uid's processes are killed when its run ends).
const TEST_UIDS: u32 = 400_000;

pub struct Server {
    base: Builder,
    dir: TempDir,
    data_dir: PathBuf,
    io_dir: PathBuf,
    /// This server's `--run-uids`, apart from every other test server's.
    run_uids: String,
    go_wrapper: PathBuf,
    child: Option<Child>,
    port: u16,
    generation: usize,
    command_line: String,
    stdout_lines: Arc<Mutex<Vec<String>>>,
    exit_status: Option<ExitStatus>,
}

impl Server {
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> Builder {
        Builder {
            args: Vec::new(),
            envs: Vec::new(),
            go: Go::Wrapper,
            closed_parent: false,
        }
    }

    fn log_path_of(&self, generation: usize) -> PathBuf {
        self.dir.path().join(format!("server-{generation}.log"))
    }

    fn launch(&mut self, builder: &Builder) {
        self.generation += 1;
        self.exit_status = None;
        let log_path = self.log_path_of(self.generation);
        let log = fs::File::create(&log_path).unwrap();

        let mut args: Vec<String> = vec![
            "--addr".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            self.data_dir.display().to_string(),
            // Servers running side by side as root need run users of their own: each kills
            // every process of a run's uid when the run ends.
            "--run-uids".into(),
            self.run_uids.clone(),
        ];
        // The other runtimes' toolchains, where the suite's setup put them: reachable by the
        // build and run users (the machine's own may sit under /root). A test's own flags,
        // later, win.
        for (flag, path) in other_toolchains() {
            args.extend([flag.to_string(), path]);
        }
        match &builder.go {
            Go::Wrapper => args.extend(["--go".into(), self.go_wrapper.display().to_string()]),
            Go::Path(path) => args.extend(["--go".into(), path.clone()]),
            Go::System => {}
        }
        args.extend(builder.args.iter().cloned());

        let mut cmd = Command::new(env!("CARGO_BIN_EXE_golambda"));
        cmd.args(&args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        // The developer's own settings must not change what a test sees.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("GOLAMBDA_") {
                cmd.env_remove(key);
            }
        }
        for (key, value) in &builder.envs {
            cmd.env(key, value);
        }
        self.command_line = format!(
            "{}{} {}",
            builder
                .envs
                .iter()
                .map(|(k, v)| format!("{k}={v} "))
                .collect::<String>(),
            env!("CARGO_BIN_EXE_golambda"),
            args.join(" ")
        );

        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", self.command_line));
        let stdout = child.stdout.take().unwrap();
        self.child = Some(child);

        // Read stdout on a thread for the whole life of the process (so it never blocks on a
        // full pipe) and hand the lines over.
        let (sender, receiver) = mpsc::channel::<String>();
        let lines = Arc::clone(&self.stdout_lines);
        lines.lock().unwrap().clear();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line.clone());
                let _ = sender.send(line);
            }
        });

        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line
                        .strip_prefix("golambda listening on http://")
                        .or_else(|| line.strip_prefix("golambda listening on https://"))
                    {
                        let port = rest
                            .rsplit(':')
                            .next()
                            .and_then(|p| p.trim().trim_end_matches('/').parse::<u16>().ok());
                        match port {
                            Some(port) if port != 0 => {
                                self.port = port;
                                return;
                            }
                            _ => self.die(&format!("cannot parse the port of {line:?}")),
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.die("no listening line on stdout before the deadline")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = self.wait_exit(Duration::from_secs(5));
                    self.die(
                        "the server closed stdout (exited?) before printing the listening line",
                    )
                }
            }
        }
    }

    fn die(&mut self, why: &str) -> ! {
        // Drop prints the diagnostics while panicking.
        panic!("server start failed: {why}");
    }

    /// The first and last of this server's `--run-uids`.
    pub fn run_uid_range(&self) -> (u32, u32) {
        let (first, last) = self.run_uids.split_once('-').expect("a uid range");
        (
            first.parse().expect("first uid"),
            last.parse().expect("last uid"),
        )
    }

    /// The memory cgroups that exist for this server's run uids.
    pub fn memory_groups(&self) -> Vec<PathBuf> {
        let (first, last) = self.run_uid_range();
        (first..=last)
            .map(|uid| PathBuf::from(format!("/sys/fs/cgroup/memory/golambda/u{uid}")))
            .filter(|group| group.is_dir())
            .collect()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server not running").id()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A path inside a world-writable directory, for files a function writes.
    pub fn io_path(&self, name: &str) -> PathBuf {
        self.io_dir.join(name)
    }

    /// How many `go build` runs went through the suite's wrapper (the default toolchain).
    pub fn go_builds(&self) -> usize {
        assert!(
            matches!(self.base.go, Go::Wrapper),
            "go_builds needs the default --go wrapper"
        );
        fs::read_to_string(self.io_dir.join("go-calls.txt"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.split_whitespace().any(|w| w == "build"))
            .count()
    }

    /// Lines the current process printed on stdout.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout_lines.lock().unwrap().clone()
    }

    /// Whether the server has a file open under `dir` (Linux: read from `/proc`).
    pub fn holds_open_under(&self, dir: &Path) -> bool {
        let Ok(entries) = fs::read_dir(format!("/proc/{}/fd", self.pid())) else {
            return false;
        };
        entries
            .flatten()
            .filter_map(|entry| fs::read_link(entry.path()).ok())
            .any(|target| target.starts_with(dir))
    }

    /// The log (stderr) of the current process.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path_of(self.generation)).unwrap_or_default()
    }

    /// How many lines of the current log contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// Waits until the current log has a line containing every one of `words`.
    #[track_caller]
    pub fn expect_log_words(&self, words: &[&str], timeout: Duration) {
        let found = super::eventually(timeout, || {
            self.log()
                .lines()
                .any(|line| words.iter().all(|w| line.contains(w)))
        });
        if !found {
            panic!("the server log has no line containing all of {words:?} after {timeout:?}");
        }
    }

    /// Waits until the current log has a line containing `needle`.
    #[track_caller]
    pub fn expect_log(&self, needle: &str, timeout: Duration) {
        if !super::eventually(timeout, || self.log_count(needle) > 0) {
            panic!("the server log has no line containing {needle:?} after {timeout:?}");
        }
    }

    // ---- HTTP ----

    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        http::request(self.port, method, path, headers, Body::Fixed(body))
    }

    #[track_caller]
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: no answer: {e}"))
    }

    #[track_caller]
    pub fn request_chunked(&self, method: &str, path: &str, body: &[u8], chunk: usize) -> Response {
        http::request(self.port, method, path, &[], Body::Chunked(body, chunk))
            .unwrap_or_else(|e| panic!("{method} {path} (chunked): no answer: {e}"))
    }

    #[track_caller]
    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }

    #[track_caller]
    pub fn post(&self, path: &str, body: impl AsRef<[u8]>) -> Response {
        self.request("POST", path, &[], body.as_ref())
    }

    #[track_caller]
    pub fn put(&self, path: &str, body: impl AsRef<[u8]>) -> Response {
        self.request("PUT", path, &[], body.as_ref())
    }

    #[track_caller]
    pub fn delete(&self, path: &str) -> Response {
        self.request("DELETE", path, &[], b"")
    }

    /// Registers `name` as a function that sleeps `ms` (with `extra` settings), starts one
    /// `GET /{name}` on a thread, and returns once that run has started: the run holds its
    /// place in the pool until the returned handle is joined.
    pub fn hold_busy(
        &self,
        name: &str,
        ms: u64,
        extra: Value,
    ) -> std::thread::JoinHandle<std::io::Result<Response>> {
        let marker = self.io_path(&format!("{name}.started"));
        let mut settings = extra;
        settings["env"] = json!({"MARKER": marker.display().to_string()});
        self.register_ok(name, &super::go::sleeper(ms), settings);
        let (port, path) = (self.port, format!("/{name}"));
        let held =
            std::thread::spawn(move || http::request(port, "GET", &path, &[], Body::Fixed(b"")));
        assert!(
            super::eventually(Duration::from_secs(10), || marker.exists()),
            "the run of {name} did not start"
        );
        held
    }

    /// `PUT /register` with `{"name", "trigger": "http", "code": base64(source)}`; the keys of
    /// `extra` (a JSON object) are added or override.
    #[track_caller]
    pub fn register(&self, name: &str, source: &str, extra: Value) -> Response {
        self.put(
            "/register",
            registration_body(name, source, extra).to_string(),
        )
    }

    /// Registers and asserts a 2xx answer; returns the metadata.
    #[track_caller]
    pub fn register_ok(&self, name: &str, source: &str, extra: Value) -> Value {
        let response = self.register(name, source, extra);
        assert!(
            response.status == 200 || response.status == 201,
            "registering {name}: expected 200/201, got {}\nbody: {}",
            response.status,
            response.text()
        );
        response.json()
    }

    /// The metadata of one function (asserting 200).
    #[track_caller]
    pub fn metadata(&self, name: &str) -> Value {
        self.get(&format!("/functions/{name}")).expect(200).json()
    }

    /// `registry/registry.json`, parsed (panics if it is not valid JSON).
    #[track_caller]
    pub fn registry(&self) -> Value {
        let path = self.data_dir.join("registry").join("registry.json");
        let text =
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid JSON ({e}):\n{text}", path.display()))
    }

    /// Where version `version` of `name` keeps its `"source"` or `"executable"` (as the
    /// registry and its journal record it), or its secrets (`"secrets"`, named like the
    /// executable).
    pub fn version_file(&self, name: &str, version: u64, part: &str) -> PathBuf {
        let field = if part == "secrets" {
            "executable"
        } else {
            part
        };
        let pick = |versions: &Value| {
            versions.as_array().and_then(|all| {
                all.iter()
                    .find(|v| v["number"] == version)
                    .and_then(|v| v[field].as_str().map(String::from))
            })
        };
        let registry = self.registry();
        let mut found = registry["functions"]
            .as_array()
            .and_then(|all| all.iter().find(|f| f["name"] == name))
            .and_then(|f| pick(&f["versions"]));
        let journal = self.data_dir.join("registry").join("registry.journal");
        let text = fs::read_to_string(&journal).unwrap_or_default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let json = line.split_once(' ').map_or(line, |(_, json)| json);
            let Ok(record) = serde_json::from_str::<Value>(json) else {
                continue;
            };
            if record["patch"]["name"] == name {
                found = pick(&record["patch"]["changed"]).or(found);
            } else if record["remove"] == name {
                found = None;
            }
        }
        let relative = found
            .unwrap_or_else(|| panic!("the registry has no {field} of {name} version {version}"));
        let path = self.data_dir.join(relative);
        if part != "secrets" {
            return path;
        }
        let stem = path
            .file_stem()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        self.data_dir
            .join("registry/secrets")
            .join(name)
            .join(format!("{stem}.json"))
    }

    /// A snapshot (path, size) of what the server stores: `registry/`, `user_functions/`,
    /// `plugins/`.
    /// What registrations own: sources, executables, the registry and secrets (not the run
    /// journals under `registry/runs/`, which every invocation appends to).
    pub fn stored_files(&self) -> Vec<(String, u64)> {
        let mut all = Vec::new();
        for sub in ["registry", "user_functions", "plugins"] {
            for (path, size) in super::snapshot(&self.data_dir.join(sub)) {
                let path = format!("{sub}/{path}");
                if !path.starts_with("registry/runs") {
                    all.push((path, size));
                }
            }
        }
        all
    }

    /// Names the registry on disk holds, sorted: those of `registry.json` (which must parse)
    /// with the journal beside it, `registry/registry.journal`, replayed on top (one record
    /// per line, after its checksum, `{"patch": function}` or `{"remove": name}`; an incomplete last line is a
    /// crash mid-append and does not count).
    #[track_caller]
    pub fn registry_names(&self) -> Vec<String> {
        let registry = self.registry();
        let functions = registry["functions"]
            .as_array()
            .unwrap_or_else(|| panic!("registry.json has no \"functions\" array: {registry}"));
        let mut names: std::collections::BTreeSet<String> = functions
            .iter()
            .map(|f| f["name"].as_str().unwrap_or("?").to_string())
            .collect();
        let journal = self.data_dir.join("registry").join("registry.journal");
        let text = fs::read_to_string(&journal).unwrap_or_default();
        let whole = match text.rfind('\n') {
            Some(end) => &text[..end],
            None => "",
        };
        for line in whole.lines().filter(|l| !l.trim().is_empty()) {
            // A checksum, a space, the JSON.
            let json = line.split_once(' ').map_or(line, |(_, json)| json);
            let record: Value = serde_json::from_str(json)
                .unwrap_or_else(|e| panic!("journal line is not JSON ({e}): {line}"));
            if let Some(name) = record["patch"]["name"].as_str() {
                names.insert(name.to_string());
            } else if let Some(name) = record["remove"].as_str() {
                names.remove(name);
            } else {
                panic!("unknown journal record: {line}");
            }
        }
        names.into_iter().collect()
    }

    // ---- process control ----

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    pub fn sigint(&self) {
        self.signal("INT");
    }

    /// Waits for the process to exit; `None` if it still runs after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.exit_status {
            return Some(status);
        }
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.exit_status = Some(status);
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash or power loss would.
    pub fn kill9(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            if let Ok(status) = child.wait() {
                self.exit_status = Some(status);
            }
        }
    }

    /// SIGTERM and wait; asserts a clean exit with status 0.
    #[track_caller]
    pub fn stop(&mut self) {
        if self.wait_exit(Duration::ZERO).is_some() {
            return;
        }
        self.sigterm();
        match self.wait_exit(Duration::from_secs(20)) {
            Some(status) => assert_eq!(status.code(), Some(0), "server exit status after SIGTERM"),
            None => panic!("server still running 20s after SIGTERM"),
        }
    }

    /// Stops the server (if still running) and starts it again on the same data dir.
    #[track_caller]
    pub fn restart(&mut self) {
        let base = self.base.clone();
        self.restart_as(base);
    }

    /// Restarts with `change` made to the server's settings for good: later restarts keep it.
    pub fn reconfigure(&mut self, change: impl FnOnce(Builder) -> Builder) {
        self.base = change(self.base.clone());
        let builder = self.base.clone();
        self.restart_as(builder);
    }

    /// Like `restart`, with more flags or env vars for this run only.
    #[track_caller]
    pub fn restart_with(&mut self, change: impl FnOnce(Builder) -> Builder) {
        let builder = change(self.base.clone());
        self.restart_as(builder);
    }

    fn restart_as(&mut self, builder: Builder) {
        self.stop();
        self.launch(&builder);
    }

    fn diagnostics(&mut self) -> String {
        let mut out = String::new();
        out.push_str("\n===== golambda server diagnostics =====\n");
        out.push_str(&format!("command: {}\n", self.command_line));
        out.push_str(&format!("port: {}\n", self.port));
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(status))) => out.push_str(&format!("status: exited, {status}\n")),
            _ => match self.exit_status {
                Some(status) => out.push_str(&format!("status: exited, {status}\n")),
                None => out.push_str("status: running\n"),
            },
        }
        out.push_str(&format!("stdout: {:?}\n", self.stdout_lines()));
        out.push_str(&format!("data dir {}:\n", self.data_dir.display()));
        for (path, size) in super::snapshot(&self.data_dir).iter().take(80) {
            out.push_str(&format!("  {path} ({size} bytes)\n"));
        }
        for generation in 1..=self.generation {
            let log = fs::read_to_string(self.log_path_of(generation)).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let from = lines.len().saturating_sub(LOG_TAIL_LINES);
            out.push_str(&format!(
                "--- stderr of run {generation} (last {} of {} lines) ---\n",
                lines.len() - from,
                lines.len()
            ));
            for line in &lines[from..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push_str("=======================================\n");
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let report = self.diagnostics();
            eprintln!("{report}");
        }
        // Stop gracefully so that runs still going (cron runs, for instance) are finished and
        // cleaned up by the server; kill it if that takes too long.
        if self.wait_exit(Duration::ZERO).is_none() && self.child.is_some() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.pid().to_string())
                .status();
            if self.wait_exit(Duration::from_secs(5)).is_none() {
                self.kill9();
            }
        }
        // A server stopped cleanly removes what it keeps outside its data dir; one killed
        // outright (crash tests) cannot: its pool of working directories and the memory
        // groups of its run uids would stay on this machine.
        let data = golambda::registry::DataDir {
            root: self.data_dir.clone(),
        };
        let _ = fs::remove_dir_all(data.work_pool());
        for group in self.memory_groups() {
            let _ = fs::remove_dir(group);
        }
    }
}

/// Whether runs get memory cgroups here: as root, with the v1 `memory` controller mounted.
pub fn has_memory_cgroups() -> bool {
    super::is_root() && Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").is_file()
}

/// `--python` and `--cargo` for the suite: `GOLAMBDA_TEST_PYTHON` and `GOLAMBDA_TEST_CARGO`
/// when set, else Debian's python3 and the copy of the Rust toolchain that
/// `scripts/test.sh` makes under /opt, where those exist.
pub fn other_toolchains() -> Vec<(&'static str, String)> {
    let pick = |var: &str, default: &str| {
        std::env::var(var)
            .ok()
            .or_else(|| Path::new(default).is_file().then(|| default.to_string()))
    };
    let mut flags = Vec::new();
    if let Some(python) = pick("GOLAMBDA_TEST_PYTHON", "/usr/bin/python3") {
        flags.push(("--python", python));
    }
    if let Some(cargo) = pick("GOLAMBDA_TEST_CARGO", "/opt/golambda-rust/bin/cargo") {
        flags.push(("--cargo", cargo));
    }
    flags
}

/// The JSON body of a registration.
pub fn registration_body(name: &str, source: &str, extra: Value) -> Value {
    registration_body_of(name, source.as_bytes(), extra)
}

/// The JSON body of a registration of any code: a source file or a package's archive.
pub fn registration_body_of(name: &str, code: &[u8], extra: Value) -> Value {
    let mut body = json!({
        "name": name,
        "trigger": "http",
        "code": base64::engine::general_purpose::STANDARD.encode(code),
    });
    if let Value::Object(extra) = extra {
        for (key, value) in extra {
            body[key] = value;
        }
    }
    body
}

/// Writes the suite's `go` wrapper: it appends its arguments (one line per call) to `calls`,
/// points GOCACHE at a cache shared by all tests, and runs the real toolchain.
fn write_go_wrapper(dir: &Path, calls: &Path) -> PathBuf {
    static REAL_GO: OnceLock<String> = OnceLock::new();
    let real = REAL_GO.get_or_init(|| {
        let output = Command::new("sh")
            .arg("-c")
            .arg("command -v go")
            .output()
            .expect("looking up go");
        let real = String::from_utf8_lossy(&output.stdout).trim().to_string();
        assert!(
            !real.is_empty(),
            "go is not on PATH: the suite needs a Go toolchain"
        );
        real
    });
    // Builds run as a user of their own when the suite runs as root, a different one for
    // each test server: the shared cache is open to all of them. It is outside the checkout,
    // which may sit in a folder no other user can enter (a `mktemp -d`, `/root`).
    let base = Path::new("/var/tmp");
    let base = if base.is_dir() {
        base.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let uid = fs::metadata("/proc/self").map_or(0, |m| std::os::unix::fs::MetadataExt::uid(&m));
    let cache = base.join(format!("golambda-test-go-cache-{uid}"));
    fs::create_dir_all(&cache).unwrap();
    fs::set_permissions(&cache, fs::Permissions::from_mode(0o777)).unwrap();
    let wrapper = dir.join("go-wrapper.sh");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\numask 000\nprintf '%s\\n' \"$*\" >> '{}'\nGOCACHE='{}'\nexport GOCACHE\nexec '{}' \"$@\"\n",
            calls.display(),
            cache.display(),
            real
        ),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}
