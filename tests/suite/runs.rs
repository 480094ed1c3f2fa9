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
    // The journal writer runs apart from the request: give it its moment, as a crash could.
    assert!(eventually(Duration::from_secs(5), || {
        std::fs::read_to_string(server.data_dir().join("registry/runs/hello.jsonl"))
            .is_ok_and(|text| text.lines().count() == 5)
    }));
    server.kill9();
    server.restart();
    let list = runs(&server, "hello", "");
    let listed: Vec<&str> = list.iter().filter_map(|r| r["id"].as_str()).collect();
    ids.reverse();
    assert_eq!(listed, ids);
    assert!(list.iter().all(|r| r["stdout"] == "Hello, World!\n"));
}
