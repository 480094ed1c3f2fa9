//! Versions and their life: every change makes version N+1, the last 10 are kept with their
//! source, rollback is instant and survives a restart, a kept version can be invoked by
//! number, and a cron schedule can be paused and resumed.

use crate::harness::{assert_error, eventually, go, http, Server};
use serde_json::{json, Value};
use std::time::Duration;

fn versions(server: &Server, name: &str) -> Vec<u64> {
    let answer = server.get(&format!("/functions/{name}/versions"));
    answer.expect(200);
    answer
        .json()
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v["version"].as_u64().expect("a number"))
        .collect()
}

#[test]
fn the_last_ten_versions_are_kept_newest_first() {
    let server = Server::new().start();
    for i in 1..=12 {
        server.register_ok("many", &go::say(&format!("v{i}")), json!({}));
    }
    assert_eq!(
        versions(&server, "many"),
        (3..=12).rev().collect::<Vec<u64>>()
    );
    let kept: Vec<String> = std::fs::read_dir(server.data_dir().join("user_functions/many"))
        .expect("sources")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let count = |suffix: &str| kept.iter().filter(|n| n.ends_with(suffix)).count();
    assert_eq!(
        count(".go"),
        10,
        "sources of pruned versions are removed: {kept:?}"
    );
    assert_eq!(
        count(".build.txt"),
        10,
        "so are their build outputs: {kept:?}"
    );
    assert_eq!(kept.len(), 20, "{kept:?}");
    let source = server.get("/functions/many/source");
    source.expect(200);
    assert!(source.text().contains("\"v12\""), "{}", source.text());
}

#[test]
fn rollback_is_instant_and_survives_a_restart() {
    let mut server = Server::new().start();
    server.register_ok("flip", &go::say("one"), json!({}));
    server.register_ok("flip", &go::say("two"), json!({}));
    let builds = server.go_builds();
    let answer = server.post("/functions/flip/rollback", r#"{"version":1}"#);
    answer.expect(200);
    assert_eq!(answer.json()["version"], 1);
    assert_eq!(server.get("/flip").message(), "one\n");
    assert_eq!(server.go_builds(), builds, "a rollback compiles nothing");
    assert!(server
        .get("/functions/flip/source")
        .text()
        .contains("\"one\""));
    server.restart();
    assert_eq!(server.metadata("flip")["version"], 1);
    assert_eq!(server.get("/flip").message(), "one\n");
    // Forward again, and a new registration goes on from the highest number.
    server
        .post("/functions/flip/rollback", r#"{"version":2}"#)
        .expect(200);
    assert_eq!(server.get("/flip").message(), "two\n");
    let third = server.register_ok("flip", &go::say("three"), json!({}));
    assert_eq!(third["version"], 3);
}

#[test]
fn rollback_errors() {
    let server = Server::new().start();
    server.register_ok("one", &go::say("x"), json!({}));
    assert_error(
        &server.post("/functions/one/rollback", r#"{"version":7}"#),
        404,
        &["version 7"],
    );
    assert_error(
        &server.post("/functions/one/rollback", r#"{"version":"1"}"#),
        400,
        &["version"],
    );
    assert_error(&server.post("/functions/one/rollback", "{"), 400, &[]);
    assert_error(
        &server.post("/functions/nobody/rollback", r#"{"version":1}"#),
        404,
        &["nobody"],
    );
    assert_error(&server.get("/functions/one/rollback"), 405, &[]);
}

#[test]
fn a_kept_version_can_be_invoked_by_number() {
    let server = Server::new().start();
    server.register_ok("pick", &go::say("first"), json!({}));
    server.register_ok("pick", &go::say("second"), json!({}));
    let old = server.post("/functions/pick/invoke?version=1", "");
    assert_eq!(old.message(), "first\n");
    assert_eq!(
        server.post("/functions/pick/invoke", "").message(),
        "second\n"
    );
    assert_error(
        &server.post("/functions/pick/invoke?version=9", ""),
        404,
        &["version 9"],
    );
    assert_error(
        &server.post("/functions/pick/invoke?version=x", ""),
        400,
        &["version"],
    );
    assert_eq!(
        server.metadata("pick")["version"],
        2,
        "invoking by number changes nothing"
    );
}

#[test]
fn pause_and_resume_a_cron_schedule() {
    let mut server = Server::new().start();
    let meta = server.register_ok("tick", &go::say("t"), json!({"trigger": "@every 1h"}));
    assert!(meta["next_run"].is_string(), "{meta}");
    let paused = server.post("/functions/tick/pause", "");
    paused.expect(200);
    let paused: Value = paused.json();
    assert_eq!(paused["paused"], true);
    assert!(paused["next_run"].is_null(), "{paused}");
    server.restart();
    let after = server.metadata("tick");
    assert_eq!(after["paused"], true, "pause survives a restart");
    assert!(after["next_run"].is_null(), "{after}");
    assert!(server.log().contains("restored tick"));
    let resumed: Value = server.post("/functions/tick/resume", "").json();
    assert_eq!(resumed["paused"], false);
    assert!(resumed["next_run"].is_string(), "{resumed}");
    server.register_ok("web", &go::say("w"), json!({}));
    assert_error(&server.post("/functions/web/pause", ""), 409, &["cron"]);
}

#[test]
fn secrets_reach_the_function_but_never_leave_the_server() {
    let mut server = Server::new().start();
    let secrets = json!({"secrets": {"API_KEY": "s3cr3t-value"}, "env": {"MODE": "prod"}});
    let meta = server.register_ok("vault", go::ENV_DUMP, secrets.clone());
    assert_eq!(meta["secrets"], json!(["API_KEY"]));
    let run: Value = serde_json::from_str(&server.get("/vault").message()).expect("json");
    assert_eq!(run["env"]["API_KEY"], "s3cr3t-value");
    assert_eq!(run["env"]["MODE"], "prod");
    for path in [
        "/functions",
        "/functions/vault",
        "/functions/vault/versions",
    ] {
        assert!(
            !server.get(path).text().contains("s3cr3t"),
            "{path} shows a secret value"
        );
    }
    let registry = std::fs::read_to_string(server.data_dir().join("registry/registry.json"))
        .expect("registry");
    assert!(
        !registry.contains("s3cr3t"),
        "the registry holds a secret value"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let folder = server.data_dir().join("registry/secrets/vault");
        let mode = std::fs::metadata(&folder)
            .expect("secrets folder")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "secrets folder is private: {mode:o}");
    }
    // Same code and secrets: same version; another secret value: a new version.
    assert_eq!(
        server.register_ok("vault", go::ENV_DUMP, secrets)["version"],
        1
    );
    let changed = json!({"secrets": {"API_KEY": "rotated"}, "env": {"MODE": "prod"}});
    assert_eq!(
        server.register_ok("vault", go::ENV_DUMP, changed)["version"],
        2
    );
    server.restart();
    let run: Value = serde_json::from_str(&server.get("/vault").message()).expect("json");
    assert_eq!(run["env"]["API_KEY"], "rotated");
    server
        .post("/functions/vault/rollback", r#"{"version":1}"#)
        .expect(200);
    let run: Value = serde_json::from_str(&server.get("/vault").message()).expect("json");
    assert_eq!(
        run["env"]["API_KEY"], "s3cr3t-value",
        "a rollback brings its secrets back"
    );
    server.delete("/functions/vault").expect(204);
    assert!(!server.data_dir().join("registry/secrets/vault").exists());
}

#[test]
fn hot_reload_under_load_answers_only_old_or_new() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let server = Server::new().start();
    server.register_ok("flip", &go::say("old"), json!({}));
    let port = server.port();
    let done = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    // Waits until the clients have had `more` answers more.
    let after_more = |more: usize| {
        let target = answered.load(Ordering::SeqCst) + more;
        assert!(eventually(Duration::from_secs(20), || {
            answered.load(Ordering::SeqCst) >= target
        }));
    };
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let done = done.clone();
            let answered = answered.clone();
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                while !done.load(Ordering::SeqCst) || answers.len() < 30 {
                    let answer = crate::harness::http::request(
                        port,
                        "GET",
                        "/flip",
                        &[],
                        crate::harness::http::Body::Fixed(b""),
                    );
                    answers.push(answer.map(|a| (a.status, a.text())));
                    answered.fetch_add(1, Ordering::SeqCst);
                    if answers.len() >= 200 {
                        break;
                    }
                }
                answers
            })
        })
        .collect();
    after_more(16);
    assert_eq!(
        server.register_ok("flip", &go::say("new"), json!({}))["version"],
        2
    );
    after_more(16);
    server
        .post("/functions/flip/rollback", r#"{"version":1}"#)
        .expect(200);
    after_more(16);
    done.store(true, Ordering::SeqCst);
    let old = r#"{"message":"old\n"}"#.to_string() + "\n";
    let new = r#"{"message":"new\n"}"#.to_string() + "\n";
    let (mut olds, mut news) = (0, 0);
    for client in clients {
        for answer in client.join().expect("client") {
            let (status, text) = answer.expect("every request is answered");
            assert_eq!(status, 200, "{text}");
            if text == old {
                olds += 1;
            } else if text == new {
                news += 1;
            } else {
                panic!("an answer from neither version: {text}");
            }
        }
    }
    assert!(olds > 0 && news > 0, "old {olds}, new {news}");
    assert!(olds + news >= 240, "only {} requests", olds + news);
}

#[test]
fn a_schedule_follows_the_trigger_from_http_to_cron_and_back() {
    let server = Server::new().start();
    let out = server.io_path("fires.txt");
    let env = json!({"OUT": out.display().to_string()});
    let web = server.register_ok("shift", &go::appender(0), json!({"env": env}));
    assert!(web["next_run"].is_null());
    let cron = server.register_ok(
        "shift",
        &go::appender(0),
        json!({"env": env, "trigger": "@every 1s"}),
    );
    assert!(cron["next_run"].is_string(), "{cron}");
    let fired = || {
        std::fs::read_to_string(&out)
            .map(|t| t.matches("start cron").count())
            .unwrap_or(0)
    };
    assert!(crate::harness::eventually(
        std::time::Duration::from_secs(10),
        || fired() >= 1
    ));
    let back = server.register_ok("shift", &go::appender(0), json!({"env": env}));
    assert!(back["next_run"].is_null(), "{back}");
    let after = fired();
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    assert!(
        fired() <= after + 1,
        "fires went on after the switch back to http"
    );
    assert_eq!(server.get("/shift").message(), "ok\n");
}

/// Prints its code's label, `$MODE` and `$KEY`.
fn labelled(label: &str) -> String {
    format!(
        r#"package main

import (
	"fmt"
	"os"
)

func main() {{
	fmt.Printf("code={label} env=%s secret=%s", os.Getenv("MODE"), os.Getenv("KEY"))
}}
"#
    )
}

/// The body of a request held open: long enough that the server hands the request on
/// before it has all of it (tiny_http reads small bodies whole first).
const BODY: usize = 8192;

/// Starts `POST path` with part of its body sent, and waits until the server has taken hold
/// of the function's executable (at most a few seconds: a server that opens it only to
/// run it is then tested as it is).
fn half_sent(server: &Server, path: &str, name: &str) -> http::Unfinished {
    let request = http::begin(server.port(), "POST", path, BODY, &[b'x'; 100]).expect("request");
    let plugins = server.data_dir().join("plugins").join(name);
    eventually(Duration::from_secs(3), || server.holds_open_under(&plugins));
    request
}

fn executables(server: &Server, name: &str) -> Vec<std::path::PathBuf> {
    versions(server, name)
        .into_iter()
        .map(|number| server.version_file(name, number, "executable"))
        .collect()
}

#[test]
fn a_run_uses_one_registered_version_whole_when_its_function_is_replaced_meanwhile() {
    let server = Server::new().start();
    let old = json!({"env": {"MODE": "old-env"}, "secrets": {"KEY": "old-secret"}});
    server.register_ok("combo", &labelled("old"), old);
    let old_files = executables(&server, "combo");
    let waiting = half_sent(&server, "/combo", "combo");
    server.delete("/functions/combo").expect(204);
    let new = json!({"env": {"MODE": "new-env"}, "secrets": {"KEY": "new-secret"}});
    assert_eq!(
        server.register_ok("combo", &labelled("new"), new)["version"],
        1
    );
    let answer = waiting.finish(&[b'y'; BODY - 100]).expect("an answer");
    match answer.status {
        404 => {}
        200 => assert_eq!(
            answer.message(),
            "code=old env=old-env secret=old-secret",
            "a run of a combination nobody registered"
        ),
        other => panic!("{other}: {}", answer.text()),
    }
    let new_files = executables(&server, "combo");
    assert!(!old_files.is_empty() && !new_files.is_empty());
    assert!(
        new_files.iter().all(|f| !old_files.contains(f)),
        "the new function took the deleted one's files: {old_files:?} {new_files:?}"
    );
    // What the new function runs is all of its own.
    assert_eq!(
        server.get("/combo").message(),
        "code=new env=new-env secret=new-secret"
    );
}

#[test]
fn a_request_runs_the_version_it_holds_when_that_version_is_pruned_meanwhile() {
    let server = Server::new().start();
    server.register_ok("pruned", &go::say("held version"), json!({}));
    let waiting = half_sent(&server, "/pruned", "pruned");
    for i in 2..=12 {
        server.register_ok("pruned", &go::say(&format!("version {i}")), json!({}));
    }
    assert!(
        !versions(&server, "pruned").contains(&1),
        "version 1 is pruned"
    );
    let answer = waiting.finish(&[b'y'; BODY - 100]).expect("an answer");
    answer.expect(200);
    assert_eq!(answer.message().trim(), "held version");
    assert_eq!(server.get("/pruned").message().trim(), "version 12");
}
