//! The fork floor and the server side by side, in one run on this machine.
//!
//! The floor is what spawning the function's own executable costs with nothing else: spawn,
//! read its stdout to the end, reap it (std's `Command` uses posix_spawn here). The server
//! is the release binary serving `GET /hello` for the same program, with its default
//! isolation. The two take turns (rounds of loads, blocks of single requests) so that a
//! machine whose speed drifts during the run is the same for both sides of a ratio. Prints
//! a Markdown table (floor, server, ratio) on stdout.
//!
//! The warm `fcgi` figures come with their ceiling: the same Go function driven directly
//! over its socket by a minimal FastCGI client, with no HTTP server in between.
//!
//! Usage: `cargo bench --bench fork_floor -- SERVER_BINARY [SECONDS]` (see scripts/bench.sh,
//! which builds the release binary first). For profiling, `FORK_FLOOR_PHASE=fork|warm`
//! runs only that load and prints the server's pid first (`FORK_FLOOR_CONNECTIONS`,
//! `FORK_FLOOR_WARM_EXTRA` for more registration members such as `,"env":{...}`), and
//! `FORK_FLOOR_PHASE=direct` only the ceiling (`GOMAXPROCS` passed on), `FORK_FLOOR_PHASE=floor`
//! only the floor from 16 threads (prints the bench's pid).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "support/fcgi_direct.rs"]
mod fcgi_direct;
#[path = "support/server.rs"]
mod server;

use server::{median, ms, spawn_hello, Connection, Server};

const HELLO: &str =
    "package main\n\nimport \"fmt\"\n\nfunc main() {\n    fmt.Println(\"Hello, World!\")\n}\n";
const FCGI_HELLO: &str = "package main\n\nimport (\n\t\"net/http\"\n\t\"net/http/fcgi\"\n)\n\nfunc main() {\n\tfcgi.Serve(nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {\n\t\tw.Write([]byte(\"Hello, World!\\n\"))\n\t}))\n}\n";
const CONNECTIONS: usize = 16;
/// Quiet time before each load.
const SETTLE: Duration = Duration::from_secs(2);
/// Rounds of fork loads (floor, then server) the window is shared out to.
const ROUNDS: u32 = 4;
/// Single-client blocks (floor, then server) and spawns or requests in each.
const LATENCY_BLOCKS: usize = 5;
const LATENCY_BLOCK: usize = 100;
const HELLO_ANSWER: &[u8] = b"{\"message\":\"Hello, World!\\n\"}\n";
const WARM_ANSWER: &[u8] = b"Hello, World!\n";

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let Some(server_binary) = args.first().map(PathBuf::from) else {
        eprintln!("usage: fork_floor SERVER_BINARY [SECONDS]");
        std::process::exit(2);
    };
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let window = Duration::from_secs(seconds);
    let work = std::env::temp_dir().join(format!("golambda-floor-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("temp dir");
    let hello = build_hello(&work);
    if let Ok(phase) = std::env::var("FORK_FLOOR_PHASE") {
        if phase == "direct" {
            let warm = build_go(&work, "warm", FCGI_HELLO);
            let procs = std::env::var("GOMAXPROCS").unwrap_or_else(|_| "2".into());
            let rate =
                fcgi_direct::rate(&warm, &work, &[("GOMAXPROCS", &procs)], CONNECTIONS, window);
            println!("direct GOMAXPROCS={procs}: {rate:.0} req/s");
            return;
        }
        if phase == "floor" {
            eprintln!("floor pid {} spawning", std::process::id());
            spawn_times(&hello, 20);
            println!(
                "floor p50: {:.3} ms",
                ms(median(&mut spawn_times(&hello, 500)))
            );
            let load = floor_rate(&hello, CONNECTIONS, window);
            let (own, children) = load.cpu_per_request();
            println!(
                "floor: {:.0} spawns/s, CPU per spawn: spawning threads {own:.0} µs, programs {children:.0} µs",
                load.rate()
            );
            let _ = std::fs::remove_dir_all(&work);
            return;
        }
        profile_phase(&server_binary, &work, &phase, window);
        return;
    }

    let data = work.join("data");
    let server = Server::start(&server_binary, &data);
    let idle_rss = rss_kib(server.child.id());
    server.register("hello", HELLO, "json");
    // The floor and the server take turns, so that both see the machine alike while it
    // speeds up or slows down: blocks of single spawns and single requests, then rounds of
    // loads (the floor from 2 and from 16 threads, then the server).
    spawn_times(&hello, 20);
    let (mut floor_times, mut server_times) = (Vec::new(), Vec::new());
    for _ in 0..LATENCY_BLOCKS {
        floor_times.extend(spawn_times(&hello, LATENCY_BLOCK));
        server_times.extend(server.times("/hello", HELLO_ANSWER, LATENCY_BLOCK));
    }
    let floor_latency = median(&mut floor_times);
    let latency = median(&mut server_times);
    let slice = window / ROUNDS;
    let (mut floor_2, mut floor_16, mut load) = (Load::default(), Load::default(), Load::default());
    let mut ratios = Vec::new();
    for _ in 0..ROUNDS {
        let two = floor_rate(&hello, 2, slice);
        let many = floor_rate(&hello, CONNECTIONS, slice);
        let served = load_of(&server, "/hello", HELLO_ANSWER, CONNECTIONS, slice);
        ratios.push(served.rate() / two.rate().max(many.rate()));
        floor_2.merge(&two);
        floor_16.merge(&many);
        load.merge(&served);
    }
    // Sorted by `median`: the first and last are the lowest and highest round.
    let ratio = median(&mut ratios);
    let best = if floor_2.rate() > floor_16.rate() {
        &floor_2
    } else {
        &floor_16
    };
    let floor = best.rate();
    server.register("warm", FCGI_HELLO, "fcgi");
    let warm_latency = server.p50("/warm", WARM_ANSWER, 2000);
    let warm = load_of(&server, "/warm", WARM_ANSWER, CONNECTIONS, window);
    // The same function told to use one CPU: Go then schedules its goroutines on one
    // thread and wakes fewer threads per request, which two cores shared with the
    // server reward.
    server.register_with("warm1", FCGI_HELLO, "fcgi", r#","env":{"GOMAXPROCS":"1"}"#);
    server.p50("/warm1", WARM_ANSWER, 200);
    let warm_one_cpu = load_of(&server, "/warm1", WARM_ANSWER, CONNECTIONS, window);
    std::thread::sleep(Duration::from_secs(1));
    let loaded_rss = rss_kib(server.child.id());
    server.stop();
    // The same data dir again: its functions and a run history to open at start.
    let restarted = Server::start(&server_binary, &data);
    let restarted_rss = rss_kib(restarted.child.id());
    restarted.stop();
    let warm_exe = build_go(&work, "warm", FCGI_HELLO);
    let ceiling = fcgi_direct::rate(&warm_exe, &work, &[], CONNECTIONS, window);
    let ceiling_one_cpu = fcgi_direct::rate(
        &warm_exe,
        &work,
        &[("GOMAXPROCS", "1")],
        CONNECTIONS,
        window,
    );
    let _ = std::fs::remove_dir_all(&work);

    println!("| fork-per-request figure | floor | server | ratio / difference | goal |");
    println!("|---|---|---|---|---|");
    println!(
        "| requests/s, {CONNECTIONS} connections, {ROUNDS} rounds of {}s each (errors: {}) | {floor:.0}/s (2 threads {:.0}, {CONNECTIONS} threads {:.0}) | {:.0}/s | {ratio:.2}x (rounds {:.2}–{:.2}x) | ≥ 0.90x, 0 errors |",
        slice.as_secs_f64(),
        load.errors,
        floor_2.rate(),
        floor_16.rate(),
        load.rate(),
        ratios[0],
        ratios[ratios.len() - 1],
    );
    let (floor_own, floor_children) = best.cpu_per_request();
    let (server_own, server_children) = load.cpu_per_request();
    println!(
        "| CPU per request under that load: spawning side (floor: its threads; server: the whole server) / the Go program | {floor_own:.0} µs / {floor_children:.0} µs | {server_own:.0} µs / {server_children:.0} µs | {:+.0} µs / {:+.0} µs | |",
        server_own - floor_own,
        server_children - floor_children
    );
    println!(
        "| single client p50 ({LATENCY_BLOCKS} blocks of {LATENCY_BLOCK} in turn) | {:.3} ms | {:.3} ms | +{:.3} ms | ≤ +0.20 ms |",
        ms(floor_latency),
        ms(latency),
        ms(latency) - ms(floor_latency)
    );
    println!(
        "| warm `fcgi` requests/s, {CONNECTIONS} connections ({}s, errors: {}) | {floor:.0}/s | {:.0}/s | {:.1}x | ≥ 10x, 0 errors |",
        seconds,
        warm.errors,
        warm.rate(),
        warm.rate() / floor
    );
    println!(
        "| warm `fcgi` with `\"env\": {{\"GOMAXPROCS\": \"1\"}}`, 16 connections ({}s, errors: {}) | {floor:.0}/s | {:.0}/s | {:.1}x | |",
        seconds,
        warm_one_cpu.errors,
        warm_one_cpu.rate(),
        warm_one_cpu.rate() / floor
    );
    println!(
        "| server CPU per warm request (the Go process not counted) | | {:.0} µs ({:.0} µs with `GOMAXPROCS=1`) | | |",
        warm.cpu_per_request().0,
        warm_one_cpu.cpu_per_request().0
    );
    println!(
        "| the same `fcgi` function driven directly over its socket, no HTTP server ({}s) | {floor:.0}/s | {ceiling:.0}/s ({ceiling_one_cpu:.0}/s with `GOMAXPROCS=1`) | {:.1}x ({:.1}x) | the ceiling of any server |",
        seconds,
        ceiling / floor,
        ceiling_one_cpu / floor
    );
    println!(
        "| warm `fcgi` single client p50 | {:.3} ms | {:.3} ms | {:+.3} ms | |",
        ms(floor_latency),
        ms(warm_latency),
        ms(warm_latency) - ms(floor_latency)
    );
    println!(
        "| server RSS idle / after load | | {:.1} MiB / {:.1} MiB | | < 8 MiB / < 30 MiB |",
        idle_rss as f64 / 1024.0,
        loaded_rss as f64 / 1024.0
    );
    println!(
        "| server RSS idle after a restart on that data dir (3 functions and their run history) | | {:.1} MiB | | < 8 MiB |",
        restarted_rss as f64 / 1024.0
    );
}

/// `FORK_FLOOR_PHASE=fork|warm`: only that load, for `window`, after printing the server's
/// pid so a profiler can attach (`perf record -p PID`); prints the rate.
fn profile_phase(server_binary: &Path, work: &Path, phase: &str, window: Duration) {
    let server = Server::start(server_binary, &work.join("data"));
    let (path, answer) = match phase {
        "fork" => {
            server.register("hello", HELLO, "json");
            ("/hello", HELLO_ANSWER)
        }
        _ => {
            let extra = std::env::var("FORK_FLOOR_WARM_EXTRA").unwrap_or_default();
            server.register_with("warm", FCGI_HELLO, "fcgi", &extra);
            ("/warm", WARM_ANSWER)
        }
    };
    server.p50(path, answer, 200);
    eprintln!("server pid {} loading {path}", server.child.id());
    let connections = std::env::var("FORK_FLOOR_CONNECTIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CONNECTIONS);
    let load = load_of(&server, path, answer, connections, window);
    println!(
        "{phase}: {:.0} req/s, errors {}, CPU per request: server {:.0} µs, runs {:.0} µs",
        load.rate(),
        load.errors,
        load.cpu_per_request().0,
        load.cpu_per_request().1
    );
    server.stop();
    let _ = std::fs::remove_dir_all(work);
}

fn build_hello(work: &Path) -> PathBuf {
    build_go(work, "hello", HELLO)
}

fn build_go(work: &Path, name: &str, source: &str) -> PathBuf {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir).expect("program dir");
    std::fs::write(dir.join("main.go"), source).expect("program source");
    let exe = dir.join(name);
    let status = Command::new(std::env::var("GO").unwrap_or_else(|_| "go".into()))
        .args(["build", "-o"])
        .arg(&exe)
        .arg("main.go")
        .current_dir(&dir)
        .env("GO111MODULE", "off")
        .env("CGO_ENABLED", "0")
        .status()
        .expect("go build");
    assert!(status.success(), "go build failed");
    exe
}

fn spawn_once(exe: &Path) {
    spawn_hello(&mut Command::new(exe));
}

/// How long each of `count` spawns took, one after the other.
fn spawn_times(exe: &Path, count: usize) -> Vec<Duration> {
    (0..count)
        .map(|_| {
            let started = Instant::now();
            spawn_once(exe);
            started.elapsed()
        })
        .collect()
}

/// Spawns from `threads` threads for `window`; the CPU figures are this process's own (the
/// spawning threads) and its reaped children's (the programs), per spawn.
fn floor_rate(exe: &Path, threads: usize, window: Duration) -> Load {
    std::thread::sleep(SETTLE);
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = cpu_seconds(std::process::id());
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (exe, done, stop) = (exe.to_path_buf(), done.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    spawn_once(&exe);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(window);
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().expect("floor thread");
    }
    Load::since(
        std::process::id(),
        started,
        cpu_before,
        done.load(Ordering::Relaxed),
        0,
    )
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// What one load (or several, merged) did: requests, time and CPU.
#[derive(Default)]
struct Load {
    requests: u64,
    errors: u64,
    seconds: f64,
    /// CPU seconds of the loaded process itself (the server, or the floor's spawning
    /// threads) and of the children it reaped (the runs).
    own_cpu: f64,
    children_cpu: f64,
}

impl Load {
    /// Counts `requests` done in the time and CPU since `started` and `cpu_before`.
    fn since(
        pid: u32,
        started: Instant,
        cpu_before: (f64, f64),
        requests: u64,
        errors: u64,
    ) -> Load {
        let seconds = started.elapsed().as_secs_f64();
        let cpu_after = cpu_seconds(pid);
        Load {
            requests,
            errors,
            seconds,
            own_cpu: cpu_after.0 - cpu_before.0,
            children_cpu: cpu_after.1 - cpu_before.1,
        }
    }

    fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds.max(f64::MIN_POSITIVE)
    }

    /// CPU per request in µs: (own, children).
    fn cpu_per_request(&self) -> (f64, f64) {
        let n = self.requests.max(1) as f64;
        (self.own_cpu / n * 1e6, self.children_cpu / n * 1e6)
    }

    fn merge(&mut self, other: &Load) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.seconds += other.seconds;
        self.own_cpu += other.own_cpu;
        self.children_cpu += other.children_cpu;
    }
}

/// CPU seconds of a process so far: its own (user + system) and that of the children it
/// has reaped, from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After "pid (comm) ": state is field 3, utime 14, stime 15, cutime 16, cstime 17.
    let fields: Vec<f64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .map(|f| f.parse().unwrap_or(0.0))
                .collect()
        })
        .unwrap_or_default();
    let tick = |i: usize| fields.get(i - 3).copied().unwrap_or(0.0);
    // SAFETY: sysconf(3) reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ((tick(14) + tick(15)) / hz, (tick(16) + tick(17)) / hz)
}

fn load_of(
    server: &Server,
    path: &'static str,
    answer: &'static [u8],
    connections: usize,
    window: Duration,
) -> Load {
    // Let the machine settle first: the runs of a previous load are still being cleaned
    // up (their uids emptied, their memory freed) for a moment after it ends.
    std::thread::sleep(SETTLE);
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = cpu_seconds(server.child.id());
    let started = Instant::now();
    let clients: Vec<_> = (0..connections)
        .map(|_| {
            let (port, done, errors, stop) =
                (server.port, done.clone(), errors.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut connection = Connection::open(port);
                while !stop.load(Ordering::Relaxed) {
                    if connection.get(path, answer) {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(window);
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("client thread");
    }
    Load::since(
        server.child.id(),
        started,
        cpu_before,
        done.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
    )
}
