//! Run history and async runs: every run is recorded with its outcome, newest first, a run
//! still going shows as `running`, skipped cron fires are recorded, the history survives
//! kill -9, and async runs answer 202 at once and go through the same pool bound.

use crate::harness::{assert_error, eventually, go, Server};
use serde_json::{json, Value};
use std::time::Duration;

fn runs(server: &Server, name: &str, query: &str) -> Vec<Value> {
    let answer = server.get(&format!("/functions/{name}/runs{query}"));
    answer.expect(200);
    answer.json().as_array().expect("an array").clone()
}

fn run(server: &Server, name: &str, id: &str) -> Value {
    let answer = server.get(&format!("/functions/{name}/runs/{id}"));
    answer.expect(200);
    answer.json()
}

#[test]
fn every_run_is_recorded_newest_first() {
    let server = Server::new().arg("--timeout").arg("1s").start();
    server.register_ok("failer", go::FAILER, json!({}));
    let ok = server.get("/failer");
    ok.expect(200);
    let id = ok.header("X-Request-Id").expect("X-Request-Id").to_string();
    server.get("/failer?exit").expect(500);
    server.post("/functions/failer/invoke", "").expect(200);
    let list = runs(&server, "failer", "");
    assert_eq!(list.len(), 3);
    assert_eq!(list[0]["trigger"], "manual");
    assert_eq!(list[1]["status"], "error");
    assert_eq!(list[1]["exit_code"], 3);
    assert_eq!(list[1]["stdout"], "partial out\n");
    assert_eq!(list[1]["stderr"], "boom\n");
    assert_eq!(list[2]["id"], id.as_str(), "the run id is the request id");
    let first = run(&server, "failer", &id);
    assert_eq!(first["status"], "ok");
    assert_eq!(first["trigger"], "http");
    assert_eq!(first["version"], 1);
    assert_eq!(first["exit_code"], 0);
    assert_eq!(first["stderr"], "noise\n");
    assert!(
        first["duration_ms"].as_f64().is_some_and(|d| d > 0.0),
        "{first}"
    );
    assert!(first["started_at"].is_string(), "{first}");
    assert_eq!(runs(&server, "failer", "?limit=1").len(), 1);
    assert_error(
        &server.get("/functions/failer/runs?limit=0"),
        400,
        &["limit"],
    );
    assert_error(&server.get("/functions/failer/runs/nope"), 404, &["nope"]);
    assert_error(&server.get("/functions/ghost/runs"), 404, &["ghost"]);

    server.register_ok("slow", &go::sleeper(5_000), json!({}));
    server.get("/slow").expect(504);
    assert_eq!(runs(&server, "slow", "")[0]["status"], "timeout");
    assert!(runs(&server, "slow", "")[0]["exit_code"].is_null());
}

#[test]
fn an_async_run_answers_202_and_shows_as_running_until_done() {
    let server = Server::new().start();
    server.register_ok("nap", &go::sleeper(1_500), json!({}));
    let answer = server.post("/async/nap", "");
    answer.expect(202);
    let id = answer.json()["id"].as_str().expect("id").to_string();
    assert_eq!(
        answer.header("Location"),
        Some(format!("/functions/nap/runs/{id}").as_str())
    );
    assert_eq!(run(&server, "nap", &id)["status"], "running");
    assert!(eventually(Duration::from_secs(15), || {
        run(&server, "nap", &id)["status"] == "ok"
    }));
    let done = run(&server, "nap", &id);
    assert_eq!(done["trigger"], "async");
    assert_eq!(done["stdout"], "woke\n");
    assert_error(&server.post("/async/ghost", ""), 404, &["ghost"]);
    assert_error(&server.get("/async/nap"), 405, &[]);
}

#[test]
fn async_runs_share_the_pool_bound() {
    let server = Server::new().one_worker_no_queue().start();
    server.register_ok("nap", &go::sleeper(2_000), json!({}));
    server.post("/async/nap", "").expect(202);
    let refused = server.post("/async/nap", "");
    assert_error(&refused, 503, &[]);
    assert!(refused.header("Retry-After").is_some());
}

#[test]
fn cron_runs_and_skipped_fires_are_recorded() {
    let server = Server::new().start();
    server.register_ok(
        "ticker",
        &go::sleeper(2_500),
        json!({"trigger": "@every 1s", "timeout": "10s"}),
    );
    assert!(
        eventually(Duration::from_secs(20), || {
            let list = runs(&server, "ticker", "?limit=100");
            list.iter().any(|r| r["status"] == "skipped")
                && list
                    .iter()
                    .any(|r| r["status"] == "ok" && r["trigger"] == "cron")
        }),
        "{:?}",
        runs(&server, "ticker", "?limit=100")
    );
    server.delete("/functions/ticker").expect(204);
}

#[test]
fn the_history_survives_kill_9() {
    let mut server = Server::new().start();
    server.register_ok("hello", go::HELLO, json!({}));
    let mut ids = Vec::new();
    for _ in 0..5 {
        let answer = server.get("/hello");
        ids.push(answer.header("X-Request-Id").expect("id").to_string());
    }
    // The history's writer runs apart from the request: give it its moment, as a crash
    // could.
    let database = server.data_dir().join("registry/runs/runs.sqlite3");
    assert!(eventually(Duration::from_secs(5), || {
        rusqlite::Connection::open(&database)
            .and_then(|db| {
                db.query_row(
                    "SELECT COUNT(*) FROM runs WHERE function = 'hello' AND status = 'ok'",
                    [],
                    |row| row.get::<_, i64>(0),
                )
            })
            .is_ok_and(|n| n == 5)
    }));
    server.kill9();
    server.restart();
    let list = runs(&server, "hello", "");
    let listed: Vec<&str> = list.iter().filter_map(|r| r["id"].as_str()).collect();
    ids.reverse();
    assert_eq!(listed, ids);
    assert!(list.iter().all(|r| r["stdout"] == "Hello, World!\n"));
}

fn resident_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib / 1024
}

fn disk_bytes(dir: &std::path::Path) -> u64 {
    crate::harness::snapshot(dir)
        .iter()
        .map(|(_, size)| size)
        .sum()
}

#[test]
fn the_history_of_large_outputs_stays_out_of_memory_and_within_its_disk_bound() {
    let server = Server::new().arg("--history-disk").arg("8MiB").start();
    let before = resident_mib(server.pid());
    for f in 0..8 {
        let name = format!("spew{f}");
        server.register_ok(&name, go::SPEW, json!({"response": "raw"}));
        for _ in 0..60 {
            server.get(&format!("/{name}?n=65536")).expect(200);
        }
    }
    // 480 records of 64 KiB kept (30 MiB): none in memory, at most the bound on disk.
    let after = resident_mib(server.pid());
    assert!(
        after < before + 24,
        "the server went from {before} to {after} MiB"
    );
    let runs_dir = server.data_dir().join("registry/runs");
    assert!(
        eventually(Duration::from_secs(10), || disk_bytes(&runs_dir) < 14 << 20),
        "the history holds {} bytes on disk under an 8 MiB bound",
        disk_bytes(&runs_dir)
    );
    // The newest are what is kept.
    assert_eq!(runs(&server, "spew7", "?limit=100").len(), 60);
}

/// Sleeps `?ms=N` milliseconds, then prints `slept`.
const NAPPER: &str = r#"package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	ms, _ := strconv.Atoi(strings.TrimPrefix(os.Getenv("QUERY_STRING"), "ms="))
	time.Sleep(time.Duration(ms) * time.Millisecond)
	fmt.Println("slept")
}
"#;

#[test]
fn every_accepted_async_run_keeps_its_record_and_queued_bodies_are_bounded() {
    let server = Server::new()
        .arg("--workers")
        .arg("2")
        .arg("--queue-bytes")
        .arg("2MiB")
        .start();
    server.register_ok("napper", NAPPER, json!({}));
    // Sent at once, so that they wait in the pool: each has its record from the moment it
    // is accepted, however many follow.
    let port = server.port();
    let gate = std::sync::Arc::new(std::sync::Barrier::new(120));
    let senders: Vec<_> = (0..120)
        .map(|_| {
            let gate = gate.clone();
            std::thread::spawn(move || {
                gate.wait();
                let answer = crate::harness::http::request(
                    port,
                    "POST",
                    "/async/napper?ms=100",
                    &[],
                    crate::harness::http::Body::Fixed(b"x"),
                )
                .expect("answer");
                answer.expect(202);
                answer.json()["id"].as_str().expect("id").to_string()
            })
        })
        .collect();
    let ids: Vec<String> = senders
        .into_iter()
        .map(|s| s.join().expect("sender"))
        .collect();
    let running = ids
        .iter()
        .filter(|id| {
            let answer = server.get(&format!("/functions/napper/runs/{id}"));
            answer.status == 200 && answer.json()["status"] == "running"
        })
        .count();
    assert!(running > 0, "no run waited: the check below shows nothing");
    // 120 runs of 100 ms on two workers: all but a few are still waiting or running, and
    // none of them may lack its record.
    let missing = ids
        .iter()
        .filter(|id| server.get(&format!("/functions/napper/runs/{id}")).status != 200)
        .count();
    assert_eq!(missing, 0, "of 120 accepted runs, {missing} have no record");
    // Bodies held by queued runs are bounded: one that does not fit is refused now.
    let big = vec![b'b'; 3 << 20];
    let refused = server.request("POST", "/async/napper", &[], &big);
    assert_error(&refused, 503, &["--queue-bytes"]);
    // A slow run, then more than a history's worth of quick ones of the same function:
    // it is recorded when it ends.
    let slow = server.post("/async/napper?ms=1500", "").json()["id"]
        .as_str()
        .expect("id")
        .to_string();
    for _ in 0..101 {
        server.get("/napper?ms=0").expect(200);
    }
    let ended = eventually(Duration::from_secs(60), || {
        let answer = server.get(&format!("/functions/napper/runs/{slow}"));
        answer.status == 200 && answer.json()["status"] == "ok"
    });
    assert!(ended, "the slow run's record never showed it ended");
    // Written, not only shown: it is there after a restart too.
    let mut server = server;
    server.restart();
    run(&server, "napper", &slow);
}

/// A cron run waits until the file `RELEASE` exists; any other run ends at once.
const HELD_CRON: &str = r#"package main

import (
	"fmt"
	"os"
	"time"
)

func main() {
	if os.Getenv("GOLAMBDA_TRIGGER") != "cron" {
		fmt.Println("quick")
		return
	}
	for {
		if _, err := os.Stat(os.Getenv("RELEASE")); err == nil {
			fmt.Println("cron done")
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
"#;

#[test]
fn a_long_cron_run_keeps_its_record_through_more_runs_than_the_history_keeps() {
    let server = Server::new().start();
    let release = server.io_path("release");
    server.register_ok(
        "held",
        HELD_CRON,
        json!({"trigger": "@every 1s", "timeout": "60s",
               "env": {"RELEASE": release.display().to_string()}}),
    );
    let mut held = None;
    assert!(eventually(Duration::from_secs(10), || {
        held = runs(&server, "held", "?limit=100")
            .into_iter()
            .find(|r| r["trigger"] == "cron" && r["status"] == "running");
        held.is_some()
    }));
    let id = held
        .and_then(|r| r["id"].as_str().map(String::from))
        .expect("an id");
    // More runs end meanwhile than the history keeps, and fires are skipped.
    for _ in 0..110 {
        server.post("/functions/held/invoke", "").expect(200);
    }
    assert!(eventually(Duration::from_secs(10), || {
        runs(&server, "held", "?limit=100")
            .iter()
            .any(|r| r["status"] == "skipped")
    }));
    assert_eq!(run(&server, "held", &id)["status"], "running");
    std::fs::write(&release, "go").expect("release the cron run");
    assert!(
        eventually(Duration::from_secs(10), || run(&server, "held", &id)
            ["status"]
            == "ok"),
        "{}",
        run(&server, "held", &id)
    );
    assert!(run(&server, "held", &id)["stdout"]
        .as_str()
        .is_some_and(|s| s.contains("cron done")));
    server.delete("/functions/held").expect(204);
}

#[test]
fn a_run_that_cannot_start_is_answered_and_recorded_like_any_other() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::new().start();
    server.register_ok("stuck", go::HELLO, json!({}));
    let exe = server.version_file("stuck", 1, "executable");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let answer = server.get("/stuck");
    assert_error(&answer, 500, &["cannot start"]);
    assert!(
        answer.header("Server-Timing").is_some(),
        "no Server-Timing: {:?}",
        answer.headers
    );
    let recorded = runs(&server, "stuck", "");
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["status"], "error");
    assert!(
        recorded[0]["stderr"]
            .as_str()
            .is_some_and(|s| s.contains("cannot start")),
        "{recorded:?}"
    );
    server.expect_log_words(&["run stuck ", "status=error"], Duration::from_secs(2));
}
