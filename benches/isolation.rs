//! What each layer of a run's confinement costs: the same Go hello world run through
//! `runner::run` with one more layer at a time, from a plain spawn to a per-run user with
//! rlimits, cgroups and a network namespace. Layers past rlimits need root. Run with
//! `cargo bench --bench isolation` (it builds the hello world with `go`).

use golambda::platform::{Limits, Sandbox};
use golambda::runner::{self, RunSpec};
use std::time::{Duration, Instant};

const RUNS: usize = 300;

fn main() {
    let dir = std::env::temp_dir().join(format!("golambda-bench-isolation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    std::fs::write(
        dir.join("main.go"),
        "package main\nimport \"fmt\"\nfunc main() { fmt.Println(\"Hello, World!\") }\n",
    )
    .expect("source");
    let built = std::process::Command::new("go")
        .args(["build", "-o", "hello", "main.go"])
        .current_dir(&dir)
        .env("GO111MODULE", "off")
        .env("CGO_ENABLED", "0")
        .status()
        .expect("go runs");
    assert!(built.success(), "go build failed");
    let exe = dir.join("hello");
    // Where the server keeps them: outside /tmp, which runs of their own uid see privately.
    let work_dirs = runner::WorkDirs::new(golambda::platform::work_base().join(format!(
        "golambda-bench-isolation-work-{}",
        std::process::id()
    )))
    .expect("work dirs");
    let limits = Limits {
        memory: Some(512 << 20),
        cpu_seconds: Some(32),
        open_files: Some(1024),
        file_size: Some(1 << 30),
        disk: Some(512 << 20),
        processes: Some(128),
        no_core_dumps: true,
    };
    let root = golambda::platform::is_privileged();
    let uid = 64_990;
    let mut layers = vec![
        ("process group only", Sandbox::default()),
        (
            "+ rlimits",
            Sandbox {
                limits,
                ..Sandbox::default()
            },
        ),
    ];
    if root {
        let user = Sandbox {
            limits,
            user: Some(uid),
            ..Sandbox::default()
        };
        layers.push(("+ own uid, exec through a descriptor", user));
        layers.push((
            "+ memory cgroup, run disk, private shared folders and IPC",
            Sandbox {
                exclusive_user: true,
                ..user
            },
        ));
        layers.push((
            "+ network namespace (network: false)",
            Sandbox {
                exclusive_user: true,
                no_network: true,
                ..user
            },
        ));
    }
    println!("| layers | p50 | mean | per run over the previous |");
    println!("|---|---|---|---|");
    let mut previous: Option<Duration> = None;
    for (name, sandbox) in layers {
        let mut times = Vec::with_capacity(RUNS);
        for i in 0..RUNS {
            let started = Instant::now();
            let finished = runner::run(
                RunSpec {
                    executable: exe.clone(),
                    args: Vec::new(),
                    tree: None,
                    program: None,
                    env: Vec::new(),
                    stdin: Vec::new(),
                    timeout: Duration::from_secs(10),
                    max_output: 1 << 20,
                    run_id: format!("bench-{i}"),
                    sandbox,
                },
                &work_dirs,
            )
            .expect("the run starts");
            assert_eq!(finished.stdout, b"Hello, World!\n");
            times.push(started.elapsed());
        }
        times.sort();
        let p50 = times[RUNS / 2];
        let mean = times.iter().sum::<Duration>() / RUNS as u32;
        let delta = previous.map_or("".to_string(), |p| {
            format!("{:+.2} ms", (p50.as_secs_f64() - p.as_secs_f64()) * 1e3)
        });
        println!(
            "| {name} | {:.2} ms | {:.2} ms | {delta} |",
            p50.as_secs_f64() * 1e3,
            mean.as_secs_f64() * 1e3
        );
        previous = Some(p50);
    }
    if !root {
        println!("(run as root to measure the per-user layers)");
    }
    // As a server does when it stops: the uid's cgroup goes, or such groups pile up.
    golambda::platform::stop_finished();
    let _ = std::fs::remove_dir_all(&dir);
}
