//! Every runtime through the server beside its bare toolchain, in one run on this machine.
//!
//! Latency: the hello world of each runtime at `GET /hello-<runtime>` from one keep-alive
//! client, beside the same program (the interpreter on the same script, or the same
//! executable) started, read and reaped by a minimal spawn loop with nothing else. The two
//! take turns, one of each, so that both see the machine alike; the figure is the median
//! of the pairs' differences, with a 95% confidence interval of that median (from the
//! order statistics of the pairs: no assumption on how they are spread), and the goal is
//! that no runtime adds more than Go does. An interpreter's start-up varies by
//! milliseconds, so the slower a runtime, the more pairs it gets (a time budget each). The
//! runtimes are measured in rounds, a block of pairs of each in turn, so that a machine
//! that changes pace over minutes slows them all alike.
//!
//! Registration: `PUT /register` of a changed hello (so that something is built) beside the
//! toolchain's own check or build of the same source (`go build`, `python -c compile(…)`,
//! `node --check`, `rustc -O`, `sh -n`), in pairs; the overhead is the median over pairs.
//!
//! Usage: `cargo bench --bench runtimes -- SERVER_BINARY` (see scripts/bench.sh). The
//! interpreters are `BENCH_PYTHON` (default /usr/bin/python3), `BENCH_NODE` (node),
//! `BENCH_CARGO` (default the copy scripts/test.sh makes in /opt, else cargo on PATH).

#[path = "support/server.rs"]
mod server;

use server::{median, ms, spawn_hello, Connection, Server};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ANSWER: &[u8] = b"{\"message\":\"Hello, World!\\n\"}\n";
/// Pairs of a spawn and a request, one of each in turn: as many as fit in
/// [`PAIRS_BUDGET`], within these bounds.
const PAIRS_RUN: (usize, usize) = (500, 2000);
/// About how long each runtime's pairs take.
const PAIRS_BUDGET: Duration = Duration::from_secs(45);
/// The pairs of each runtime are measured in this many blocks, one of each runtime in turn.
const ROUNDS: usize = 20;
/// Registration pairs (toolchain alone, then the server).
const PAIRS: usize = 5;

/// A runtime's hello world, `{variant}` standing for a number that changes the source.
struct Runtime {
    name: &'static str,
    runtime: &'static str,
    file: &'static str,
    source: &'static str,
}

/// Go's hello, and Go hellos that first sleep as long as Python's and Node's start-ups
/// take: what the server adds around a run grows with how long the run takes (its threads
/// are woken from idle), so each interpreter is held to the Go run of its length.
const RUNTIMES: [Runtime; 7] = [
    Runtime {
        name: "go",
        runtime: "go",
        file: "main.go",
        source: "package main\n\nimport \"fmt\"\n\nfunc main() {\n    fmt.Println(\"Hello, World!\") // {variant}\n}\n",
    },
    Runtime {
        name: "go-sleeping-10ms",
        runtime: "go",
        file: "main.go",
        source: "package main\n\nimport (\n    \"fmt\"\n    \"time\"\n)\n\nfunc main() {\n    time.Sleep(10 * time.Millisecond)\n    fmt.Println(\"Hello, World!\") // {variant}\n}\n",
    },
    Runtime {
        name: "go-sleeping-40ms",
        runtime: "go",
        file: "main.go",
        source: "package main\n\nimport (\n    \"fmt\"\n    \"time\"\n)\n\nfunc main() {\n    time.Sleep(40 * time.Millisecond)\n    fmt.Println(\"Hello, World!\") // {variant}\n}\n",
    },
    Runtime {
        name: "python",
        runtime: "python",
        file: "main.py",
        source: "print('Hello, World!')  # {variant}\n",
    },
    Runtime {
        name: "node",
        runtime: "node",
        file: "index.js",
        source: "console.log('Hello, World!'); // {variant}\n",
    },
    Runtime {
        name: "rust",
        runtime: "rust",
        file: "main.rs",
        source: "fn main() {\n    println!(\"Hello, World!\"); // {variant}\n}\n",
    },
    Runtime {
        name: "sh",
        runtime: "sh",
        file: "main.sh",
        source: "echo 'Hello, World!' # {variant}\n",
    },
];

struct Tools {
    go: PathBuf,
    python: PathBuf,
    node: PathBuf,
    cargo: PathBuf,
    rustc: PathBuf,
}

impl Tools {
    fn find() -> Tools {
        let var = |name: &str, default: &str| {
            PathBuf::from(std::env::var(name).unwrap_or_else(|_| default.to_string()))
        };
        let copy = Path::new("/opt/golambda-rust/bin/cargo");
        let cargo = match std::env::var("BENCH_CARGO") {
            Ok(cargo) => PathBuf::from(cargo),
            Err(_) if copy.is_file() => copy.to_path_buf(),
            Err(_) => PathBuf::from("cargo"),
        };
        let rustc = cargo
            .parent()
            .map(|dir| dir.join("rustc"))
            .filter(|rustc| rustc.is_file())
            .unwrap_or_else(|| PathBuf::from("rustc"));
        Tools {
            go: var("GO", "go"),
            python: var("BENCH_PYTHON", "/usr/bin/python3"),
            node: var("BENCH_NODE", "node"),
            cargo,
            rustc,
        }
    }

    fn server_flags(&self) -> Vec<String> {
        [
            ("--python", &self.python),
            ("--node", &self.node),
            ("--cargo", &self.cargo),
        ]
        .iter()
        .flat_map(|(flag, path)| [flag.to_string(), path.display().to_string()])
        .collect()
    }

    /// The toolchain's own check or build of `file` in `dir`, as registration runs it.
    fn check(&self, runtime: &str, dir: &Path, file: &str) -> Command {
        let mut command = match runtime {
            "go" => {
                let mut c = Command::new(&self.go);
                c.args(["build", "-trimpath", "-o", "hello", file])
                    .env("GO111MODULE", "off")
                    .env("CGO_ENABLED", "0")
                    .env("GOCACHE", dir.parent().unwrap_or(dir).join("go-cache"))
                    .env("GOPATH", dir.join("gopath"));
                c
            }
            "python" => {
                let mut c = Command::new(&self.python);
                c.args(["-S", "-s", "-B", "-c"]).arg(format!(
                    "compile(open('{file}','rb').read(),'{file}','exec',dont_inherit=True)"
                ));
                c
            }
            "node" => {
                let mut c = Command::new(&self.node);
                c.arg("--check").arg(file);
                c
            }
            "rust" => {
                let mut c = Command::new(&self.rustc);
                c.args(["--edition", "2021", "-O", "-o", "hello", file]);
                c
            }
            _ => {
                let mut c = Command::new("/bin/sh");
                c.arg("-n").arg(file);
                c
            }
        };
        // The environment of a build step: made from scratch, as the server makes it
        // (a variable such as NODE_EXTRA_CA_CERTS costs node tens of milliseconds).
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir)
            .env("LANG", "C.UTF-8")
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }

    /// The bare program a run of `runtime` starts, on the files in `dir`.
    fn floor(&self, runtime: &str, dir: &Path, file: &str) -> Command {
        let script = dir.join(file);
        let mut command = match runtime {
            "go" | "rust" => Command::new(dir.join("hello")),
            "python" => {
                let mut c = Command::new(&self.python);
                c.args(["-S", "-s", "-B"]).arg(&script);
                c
            }
            "node" => {
                let mut c = Command::new(&self.node);
                c.args(["--preserve-symlinks", "--preserve-symlinks-main"])
                    .arg(&script);
                c
            }
            _ => {
                let mut c = Command::new("/bin/sh");
                c.arg(&script);
                c
            }
        };
        command
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .env("HOME", dir)
            .current_dir(dir);
        command
    }
}

fn main() {
    let Some(binary) = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
    else {
        eprintln!("usage: runtimes SERVER_BINARY");
        std::process::exit(2);
    };
    let tools = Tools::find();
    let work = std::env::temp_dir().join(format!("golambda-runtimes-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("temp dir");
    let server = Server::start_with(&binary, &work.join("data"), &tools.server_flags());
    // Every runtime set up first, then measured in rounds, a block of pairs of each in
    // turn: what the machine does over minutes (other tenants, its caches) falls on all of
    // them alike.
    let mut subjects: Vec<Subject> = RUNTIMES
        .iter()
        .map(|runtime| Subject::set_up(runtime, &tools, &server, &work))
        .collect();
    for _ in 0..ROUNDS {
        for subject in &mut subjects {
            subject.measure_block();
        }
    }
    let mut rows = Vec::new();
    for mut subject in subjects {
        let runtime = subject.runtime;
        let dir = &subject.dir;
        let (mut own, mut registered, mut overheads) = (Vec::new(), Vec::new(), Vec::new());
        for pair in 1..=PAIRS {
            let source = runtime.source.replace("{variant}", &pair.to_string());
            std::fs::write(dir.join(runtime.file), &source).expect("source");
            let started = Instant::now();
            let checked = tools.check(runtime.runtime, dir, runtime.file).status();
            let alone = started.elapsed();
            assert!(checked.is_ok_and(|s| s.success()));
            let started = Instant::now();
            register(
                &server,
                &format!("reg-{}-{pair}", runtime.name),
                runtime.runtime,
                &source,
            );
            let through = started.elapsed();
            own.push(alone);
            registered.push(through);
            overheads.push(ms(through) - ms(alone));
        }
        let adds = median(&mut subject.pair_adds);
        rows.push(Row {
            name: runtime.name,
            pairs: subject.pair_adds.len(),
            floor: median(&mut subject.floor_times),
            served: median(&mut subject.server_times),
            adds,
            adds_range: median_interval(&mut subject.pair_adds),
            own: median(&mut own),
            registered: median(&mut registered),
            overhead: median(&mut overheads),
        });
    }
    server.stop();
    let _ = std::fs::remove_dir_all(&work);
    let go_rows: Vec<&Row> = rows
        .iter()
        .filter(|row| row.name.starts_with("go"))
        .collect();
    let hello = go_rows.first().copied();
    println!(
        "| runtime | pairs | bare program p50 | through the server p50 | server adds (95% CI) | goal: ≤ what it adds to Go's hello | ≤ what it adds to a Go run as long | check or build alone | `PUT /register` | registration adds |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for row in &rows {
        // The Go run nearest in length.
        let as_long = go_rows.iter().copied().min_by(|a, b| {
            let distance = |r: &Row| (ms(r.floor) - ms(row.floor)).abs();
            distance(a).total_cmp(&distance(b))
        });
        let is_go = row.name.starts_with("go");
        println!(
            "| {} | {} | {:.2} ms | {:.2} ms | {:+.2} ms ({:+.2} to {:+.2}) | {} | {} | {:.1} ms | {:.1} ms | {:+.1} ms |",
            row.name,
            row.pairs,
            ms(row.floor),
            ms(row.served),
            row.adds,
            row.adds_range.0,
            row.adds_range.1,
            verdict(row, hello),
            if is_go { "(a reference)".to_string() } else { verdict(row, as_long) },
            ms(row.own),
            ms(row.registered),
            row.overhead,
        );
    }
}

/// Whether `row` adds no more than `reference` does: met; not told apart (the median is
/// higher, but the confidence interval of `row`'s median reaches the reference's); missed.
fn verdict(row: &Row, reference: Option<&Row>) -> String {
    match reference {
        None => "no Go run".to_string(),
        Some(go) if std::ptr::eq(go, row) => "(the reference)".to_string(),
        Some(go) if row.adds - go.adds < 0.005 => format!("met ({} {:+.2} ms)", go.name, go.adds),
        Some(go) if row.adds_range.0 <= go.adds => format!(
            "within the noise: {:+.2} ms more ({} {:+.2} ms)",
            row.adds - go.adds,
            go.name,
            go.adds
        ),
        Some(go) => format!(
            "missed by {:.2} ms ({} {:+.2} ms)",
            row.adds - go.adds,
            go.name,
            go.adds
        ),
    }
}

/// A 95% confidence interval of the median of `values` (sorted here): the order
/// statistics n/2 ∓ 1.96·√n/2, which hold whatever the distribution.
fn median_interval(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let sorted = &*values;
    let n = sorted.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let half = 0.98 * (n as f64).sqrt();
    let low = ((n as f64 / 2.0 - half).floor().max(0.0)) as usize;
    let high = ((n as f64 / 2.0 + half).ceil() as usize).min(n - 1);
    (sorted[low], sorted[high])
}

/// One runtime's hello, registered and started bare, and what was measured of it so far.
struct Subject {
    runtime: &'static Runtime,
    dir: PathBuf,
    path: String,
    floor: Command,
    connection: Connection,
    port: u16,
    /// Pairs per round.
    block: usize,
    floor_times: Vec<Duration>,
    server_times: Vec<Duration>,
    pair_adds: Vec<f64>,
}

impl Subject {
    fn set_up(runtime: &'static Runtime, tools: &Tools, server: &Server, work: &Path) -> Subject {
        let dir = work.join(runtime.name);
        std::fs::create_dir_all(&dir).expect("program dir");
        let hello = runtime.source.replace("{variant}", "0");
        std::fs::write(dir.join(runtime.file), &hello).expect("source");
        let built = tools.check(runtime.runtime, &dir, runtime.file).status();
        assert!(
            built.is_ok_and(|s| s.success()),
            "{}: the check failed",
            runtime.name
        );
        let path = format!("/hello-{}", runtime.name);
        register(server, &path[1..], runtime.runtime, &hello);
        let mut floor = tools.floor(runtime.runtime, &dir, runtime.file);
        spawn_times(&mut floor, 5);
        let mut connection = Connection::open(server.port);
        connection.times(&path, ANSWER, 5);
        let pair = spawn_times(&mut floor, 5).into_iter().sum::<Duration>() * 2 / 5;
        let pairs = usize::try_from(PAIRS_BUDGET.as_micros() / pair.as_micros().max(1))
            .unwrap_or(usize::MAX)
            .clamp(PAIRS_RUN.0, PAIRS_RUN.1);
        Subject {
            runtime,
            dir,
            path,
            floor,
            connection,
            port: server.port,
            block: pairs.div_ceil(ROUNDS),
            floor_times: Vec::new(),
            server_times: Vec::new(),
            pair_adds: Vec::new(),
        }
    }

    /// One round's pairs: a bare spawn, then a request, each time. On a new connection (the
    /// server closes one left idle for its read timeout), after one request unmeasured.
    fn measure_block(&mut self) {
        self.connection = Connection::open(self.port);
        self.connection.times(&self.path, ANSWER, 1);
        for _ in 0..self.block {
            let bare = spawn_times(&mut self.floor, 1)[0];
            let served = self.connection.times(&self.path, ANSWER, 1)[0];
            self.pair_adds.push(ms(served) - ms(bare));
            self.floor_times.push(bare);
            self.server_times.push(served);
        }
    }
}

struct Row {
    name: &'static str,
    pairs: usize,
    floor: Duration,
    served: Duration,
    /// The median over pairs (a spawn, then a request) of what the request took more, and
    /// its 95% confidence interval.
    adds: f64,
    adds_range: (f64, f64),
    own: Duration,
    registered: Duration,
    overhead: f64,
}

fn register(server: &Server, name: &str, runtime: &str, source: &str) {
    server.register_with(name, source, "json", &format!(r#","runtime":"{runtime}""#));
}

fn spawn_times(command: &mut Command, count: usize) -> Vec<Duration> {
    (0..count)
        .map(|_| {
            let started = Instant::now();
            spawn_hello(command);
            started.elapsed()
        })
        .collect()
}
