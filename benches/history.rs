//! Cost that recording a run adds to an invocation: `History::begin` + `History::finish`
//! (memory update and a hand-off to the journal writer thread), measured over many runs with
//! 1 KiB of stdout. Run with `cargo bench --bench history`.

use golambda::history::{History, Outcome, RunStatus};
use std::time::Instant;

fn main() {
    let dir = std::env::temp_dir().join(format!("golambda-bench-history-{}", std::process::id()));
    let history = History::open(dir.clone(), 256 << 20).expect("history");
    let stdout = vec![b'x'; 1024];
    let functions = ["alpha", "beta", "gamma", "delta"];
    let runs = 50_000;
    let mut worst = std::time::Duration::ZERO;
    let started = Instant::now();
    for i in 0..runs {
        let function = functions[i % functions.len()];
        let id = format!("run-{i}");
        let one = Instant::now();
        history.begin(function, &id, "http", 1);
        history.finish(
            function,
            &id,
            Outcome {
                status: RunStatus::Ok,
                exit_code: Some(0),
                duration_ms: 1.0,
                stdout: &stdout,
                stderr: b"",
            },
        );
        worst = worst.max(one.elapsed());
    }
    let per_run = started.elapsed() / runs as u32;
    let flush = Instant::now();
    history.close();
    println!(
        "history: {runs} runs recorded, {:.1} µs per run on the invocation's thread (worst {:.1} µs); \
         the journal writer finished {:.0} ms after the last one",
        per_run.as_secs_f64() * 1e6,
        worst.as_secs_f64() * 1e6,
        flush.elapsed().as_secs_f64() * 1e3
    );
    let _ = std::fs::remove_dir_all(&dir);
}
