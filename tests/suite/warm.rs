//! Warm functions (`"response": "fcgi"`): a Go program serving with `net/http/fcgi` stays
//! running between requests, answers with its own status, headers and body, is restarted
//! after a crash or a timeout, stops when idle, deleted, replaced by a new version, or when
//! the server stops, and every request is a run like any other.

use crate::harness::{eventually, go, http, is_root, process_gone, PidReaper, Server};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn warm(extra: Value) -> Value {
    let mut settings = json!({"response": "fcgi"});
    if let Value::Object(extra) = extra {
        for (key, value) in extra {
            settings[key] = value;
        }
    }
    settings
}

/// `GET path`, asserting the Go handler's 201; returns its JSON.
#[track_caller]
fn served(server: &Server, path: &str) -> Value {
    let answer = server.get(path);
    answer.expect(201);
    answer.json()
}

fn pid_of(answer: &Value) -> u32 {
    answer["pid"].as_u64().expect("a pid") as u32
}

#[test]
fn a_go_fcgi_function_answers_with_its_status_headers_and_body() {
    let server = Server::new().start();
    server.register_ok(
        "warm",
        &go::fcgi_server("v1"),
        warm(json!({"env": {"GREETING": "hi"}})),
    );
    let answer = server.request(
        "POST",
        "/warm/a/b?x=1",
        &[("X-Custom", "yes"), ("Authorization", "Bearer secret")],
        b"the body",
    );
    answer.expect(201);
    assert_eq!(answer.header("Content-Type"), Some("application/json"));
    assert_eq!(answer.header("X-Served-By"), Some("go-fcgi"));
    let request_id = answer.header("X-Request-Id").expect("X-Request-Id");
    let timing = answer.header("Server-Timing").expect("Server-Timing");
    assert!(timing.starts_with("exec;dur="), "{timing}");
    let body = answer.json();
    assert_eq!(body["label"], "v1");
    assert_eq!(body["method"], "POST");
    assert_eq!(body["path"], "/warm/a/b");
    assert_eq!(body["query"], "x=1");
    assert_eq!(body["body"], "the body");
    assert_eq!(body["x_custom"], "yes");
    assert_eq!(body["auth"], "", "Authorization never reaches a function");
    assert_eq!(body["gateway"], "CGI/1.1");
    assert_eq!(body["trigger"], "http");
    assert_eq!(body["request_id"], request_id);
    assert_eq!(body["function"], "warm");
    assert_eq!(body["version"], "1");
    assert_eq!(body["greeting"], "hi");
    if is_root() {
        assert_ne!(body["uid"], 0, "a warm process runs as a per-run uid");
    }

    // A run like any other: in the history and the metrics.
    let run = server.get(&format!("/functions/warm/runs/{request_id}"));
    run.expect(200);
    let run = run.json();
    assert_eq!(run["status"], "ok", "{run}");
    assert_eq!(run["trigger"], "http");
    assert_eq!(run["version"], 1);
    assert!(
        run["stdout"].as_str().unwrap_or("").contains("Status: 201"),
        "{run}"
    );
    let metrics = server.get("/metrics").text();
    assert!(
        metrics.contains(
            r#"golambda_invocations_total{function="warm",trigger="http",status="ok"} 1"#
        ),
        "{metrics}"
    );
    // A manual invoke goes to the same process.
    let invoked = server.post("/functions/warm/invoke", "x");
    invoked.expect(201);
    assert_eq!(invoked.json()["trigger"], "manual");
    assert_eq!(invoked.json()["pid"], body["pid"]);
}

#[test]
fn one_process_serves_many_requests_some_at_once() {
    let server = Server::new().start();
    server.register_ok("counter", &go::fcgi_server("v1"), warm(json!({})));
    let first = served(&server, "/counter");
    let _reaper = PidReaper(vec![pid_of(&first)]);
    for expected in 2..=20 {
        let answer = served(&server, "/counter");
        assert_eq!(answer["count"], expected, "{answer}");
        assert_eq!(answer["pid"], first["pid"], "the same process answers");
    }
    // Eight requests that each sleep 400 ms are served side by side by that process.
    let started = Instant::now();
    let port = server.port();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                http::request(
                    port,
                    "GET",
                    "/counter?do=sleep&ms=400",
                    &[],
                    http::Body::Fixed(b""),
                )
            })
        })
        .collect();
    for thread in threads {
        let answer = thread.join().expect("joined").expect("answered");
        answer.expect(201);
        assert_eq!(answer.json()["pid"], first["pid"]);
    }
    assert!(
        started.elapsed() < Duration::from_millis(2400),
        "8 x 400 ms took {:?}: not served concurrently",
        started.elapsed()
    );
}

#[test]
fn a_crashed_process_is_restarted_on_the_next_request() {
    let server = Server::new().start();
    server.register_ok("crashy", &go::fcgi_server("v1"), warm(json!({})));
    let before = served(&server, "/crashy");
    let _reaper = PidReaper(vec![pid_of(&before)]);
    let crashed = server.get("/crashy?do=exit");
    crashed.expect(500);
    assert_eq!(crashed.json()["exit_code"], 3, "{}", crashed.text());
    assert!(crashed.header("Server-Timing").is_some());
    let after = served(&server, "/crashy");
    assert_ne!(after["pid"], before["pid"], "a new process");
    assert_eq!(after["count"], 1, "its state starts afresh");
    assert!(process_gone(pid_of(&before)));
    let runs = server.get("/functions/crashy/runs").json();
    let statuses: Vec<&str> = runs
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["status"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(statuses, ["ok", "error", "ok"], "newest first: {runs}");
}

#[test]
fn a_request_past_the_timeout_answers_504_and_the_next_one_works() {
    let server = Server::new().start();
    server.register_ok(
        "wedged",
        &go::fcgi_server("v1"),
        warm(json!({"timeout": "1s"})),
    );
    let before = served(&server, "/wedged");
    let _reaper = PidReaper(vec![pid_of(&before)]);
    let started = Instant::now();
    let answer = server.get("/wedged?do=sleep&ms=30000");
    answer.expect(504);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        eventually(Duration::from_secs(5), || process_gone(pid_of(&before))),
        "the wedged process is killed"
    );
    let after = served(&server, "/wedged");
    assert_ne!(after["pid"], before["pid"]);
    assert_eq!(after["count"], 1);
    let id = answer.header("X-Request-Id").expect("id");
    let run = server.get(&format!("/functions/wedged/runs/{id}")).json();
    assert_eq!(run["status"], "timeout", "{run}");
    assert!(server.get("/metrics").text().contains(
        r#"golambda_invocations_total{function="wedged",trigger="http",status="timeout"} 1"#
    ));
}

#[test]
fn an_idle_process_stops_after_warm_idle() {
    let server = Server::new().arg("--warm-idle").arg("1s").start();
    server.register_ok("sleepy", &go::fcgi_server("v1"), warm(json!({})));
    let first = served(&server, "/sleepy");
    let _reaper = PidReaper(vec![pid_of(&first)]);
    assert!(!process_gone(pid_of(&first)), "it runs between requests");
    assert!(
        eventually(Duration::from_secs(10), || process_gone(pid_of(&first))),
        "an idle process stops after --warm-idle"
    );
    server.expect_log_words(&["warm process", "stopped (idle)"], Duration::from_secs(5));
    let again = served(&server, "/sleepy");
    assert_ne!(again["pid"], first["pid"]);
}

#[test]
fn a_new_version_takes_over_while_requests_keep_being_answered() {
    let server = Server::new().start();
    server.register_ok("swap", &go::fcgi_server("v1"), warm(json!({})));
    let old = served(&server, "/swap");
    let mut reaper = PidReaper(vec![pid_of(&old)]);
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let after_more = |more: usize| {
        let target = answered.load(Ordering::SeqCst) + more;
        assert!(eventually(Duration::from_secs(20), || {
            answered.load(Ordering::SeqCst) >= target
        }));
    };
    let port = server.port();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            let answered = answered.clone();
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let answer = http::request(port, "GET", "/swap", &[], http::Body::Fixed(b""));
                    answers.push(answer.map(|a| (a.status, a.json()["label"].clone())));
                    answered.fetch_add(1, Ordering::SeqCst);
                }
                answers
            })
        })
        .collect();
    after_more(8);
    server.register_ok("swap", &go::fcgi_server("v2"), warm(json!({})));
    // Requests go on for a while on the new version.
    after_more(40);
    stop.store(true, Ordering::SeqCst);
    let mut labels = Vec::new();
    for client in clients {
        for answer in client.join().expect("joined") {
            let (status, label) = answer.expect("every request is answered");
            assert_eq!(status, 201, "every request is answered 201");
            labels.push(label);
        }
    }
    assert!(labels.contains(&json!("v1")), "{labels:?}");
    assert_eq!(labels.last(), Some(&json!("v2")), "{labels:?}");
    let new = served(&server, "/swap");
    assert_eq!(new["label"], "v2");
    reaper.0.push(pid_of(&new));
    assert!(
        eventually(Duration::from_secs(5), || process_gone(pid_of(&old))),
        "the old version's process stops"
    );
    // A rollback switches back just as well.
    server
        .post("/functions/swap/rollback", r#"{"version":1}"#)
        .expect(200);
    let back = served(&server, "/swap");
    reaper.0.push(pid_of(&back));
    assert_eq!(back["label"], "v1");
    assert!(eventually(Duration::from_secs(5), || process_gone(pid_of(
        &new
    ))));
}

#[test]
fn deleting_the_function_stops_its_process() {
    let server = Server::new().start();
    server.register_ok("doomed", &go::fcgi_server("v1"), warm(json!({})));
    let answer = served(&server, "/doomed");
    let _reaper = PidReaper(vec![pid_of(&answer)]);
    server.delete("/functions/doomed").expect(204);
    assert!(
        eventually(Duration::from_secs(5), || process_gone(pid_of(&answer))),
        "a deleted function's process stops"
    );
    // The same name registered again starts from its own new code.
    server.register_ok("doomed", &go::fcgi_server("reborn"), warm(json!({})));
    assert_eq!(served(&server, "/doomed")["label"], "reborn");
}

#[test]
fn no_warm_process_outlives_the_server() {
    let mut server = Server::new().start();
    server.register_ok("one", &go::fcgi_server("one"), warm(json!({})));
    // As root, one of them in a network namespace of its own.
    server.register_ok(
        "two",
        &go::fcgi_server("two"),
        warm(json!({"network": !is_root()})),
    );
    let pids = vec![
        pid_of(&served(&server, "/one")),
        pid_of(&served(&server, "/two")),
    ];
    let _reaper = PidReaper(pids.clone());
    assert!(pids.iter().all(|pid| !process_gone(*pid)));
    server.stop();
    for pid in pids {
        assert!(process_gone(pid), "warm process {pid} outlived the server");
    }
}

#[test]
fn a_warm_process_dies_with_a_killed_server() {
    let mut server = Server::new().start();
    server.register_ok("orphan", &go::fcgi_server("v1"), warm(json!({})));
    let pid = pid_of(&served(&server, "/orphan"));
    let _reaper = PidReaper(vec![pid]);
    server.kill9();
    assert!(
        eventually(Duration::from_secs(5), || process_gone(pid)),
        "warm process {pid} outlived a SIGKILLed server"
    );
}

#[test]
fn idle_warm_processes_give_their_run_users_to_runs_that_need_one() {
    if !crate::harness::is_root() {
        return;
    }
    // Three uids: the last is the build user's, so two run users.
    let server = Server::new().arg("--run-uids").arg("399980-399982").start();
    for label in ["one", "two"] {
        server.register_ok(label, &go::fcgi_server(label), json!({"response": "fcgi"}));
        server.get(&format!("/{label}")).expect(201);
    }
    // Both run users are held by warm processes sitting idle for --warm-idle (5 minutes).
    server.register_ok("hello", go::HELLO, json!({}));
    assert_eq!(server.get("/hello").message(), "Hello, World!\n");
    server.expect_log("went to a run that needed one", Duration::ZERO);
    // And a warm function whose process gave way starts again when asked.
    for label in ["one", "two"] {
        server.get(&format!("/{label}")).expect(201);
    }
}

/// A warm function that leaves `FILES` files in its working directory on its first request.
const LITTER: &str = r#"package main

import (
	"fmt"
	"net/http"
	"net/http/fcgi"
	"os"
	"strconv"
)

func main() {
	fcgi.Serve(nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(os.Getenv("FILES"))
		if _, err := os.Stat("done"); err != nil {
			for i := 0; i < n; i++ {
				os.WriteFile(fmt.Sprintf("f%d", i), nil, 0o644)
			}
			os.WriteFile("done", nil, 0o644)
		}
		fmt.Fprint(w, "littered")
	}))
}
"#;

#[test]
fn one_warm_function_s_clean_up_never_delays_another_s_start() {
    let server = Server::new().start();
    server.register_ok(
        "litter",
        LITTER,
        warm(json!({"env": {"FILES": "150000"}, "disk": "8GiB", "timeout": "60s"})),
    );
    server.register_ok("fresh", &go::fcgi_server("fresh"), warm(json!({})));
    assert_eq!(server.get("/litter").text(), "littered");
    // Deleting it stops its process; cleaning up 150,000 files takes a while.
    server.delete("/functions/litter").expect(204);
    // Another function's cold start answers while that clean-up still goes.
    server.get("/fresh").expect(201);
    server.expect_log("cleaned up after warm process", Duration::from_secs(60));
    let log = server.log();
    let started = log.find("of fresh version 1 started");
    let cleaned = log.find("cleaned up after warm process");
    assert!(
        started.is_some() && cleaned > started,
        "the cold start waited for another function's clean-up:\n{log}"
    );
}

/// Writes `request from <name> with token=SECRET-<name>` to stderr for `?name=…`; exits
/// with 3 for `?exit`.
const TELLTALE: &str = r#"package main

import (
	"fmt"
	"net/http"
	"net/http/fcgi"
	"os"
)

func main() {
	fcgi.Serve(nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, exit := r.URL.Query()["exit"]; exit {
			os.Exit(3)
		}
		name := r.URL.Query().Get("name")
		fmt.Fprintf(os.Stderr, "request from %s with token=SECRET-%s\n", name, name)
		fmt.Fprint(w, "served "+name)
	}))
}
"#;

#[test]
fn a_crash_never_hands_other_callers_stderr_to_whoever_caused_it() {
    let server = Server::new().start();
    server.register_ok("tell", TELLTALE, warm(json!({})));
    assert_eq!(server.get("/tell?name=alice").text(), "served alice");
    let crashed = server.get("/tell?exit");
    crashed.expect(500);
    assert!(
        !crashed.text().contains("SECRET-alice"),
        "{}",
        crashed.text()
    );
    // The admin still sees it: the server log and the run record keep it.
    server.expect_log("SECRET-alice", Duration::from_secs(5));
    let runs = server.get("/functions/tell/runs").json();
    assert!(
        runs[0]["stderr"]
            .as_str()
            .is_some_and(|s| s.contains("SECRET-alice")),
        "{runs}"
    );
}

/// For `?name=alice` answers at once and leaves a goroutine behind that writes
/// `LATE-DATA-OF-alice` after the handler returned, once the next request (`?name=bob`)
/// has started; bob's answer waits until those late bytes are written and flushed.
const LATE_WRITER: &str = r#"package main

import (
	"fmt"
	"net/http"
	"net/http/fcgi"
	"sync"
	"time"
)

var once sync.Once
var next = make(chan struct{})
var written = make(chan struct{})

func main() {
	fcgi.Serve(nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("name")
		if name == "alice" {
			go func() {
				<-next
				fmt.Fprint(w, "LATE-DATA-OF-alice: token=SECRET-alice\n")
				w.(http.Flusher).Flush()
				time.Sleep(100 * time.Millisecond)
				close(written)
			}()
			fmt.Fprint(w, "served alice")
			return
		}
		once.Do(func() { close(next) })
		<-written
		fmt.Fprint(w, "served "+name)
	}))
}
"#;

#[test]
fn late_output_of_one_request_never_reaches_the_next_caller() {
    let server = Server::new().start();
    // One connection, so bob's request goes over the one alice's used.
    server.register_ok("late", LATE_WRITER, warm(json!({"max_concurrency": 1})));
    assert_eq!(server.get("/late?name=alice").text(), "served alice");
    let bob = server.get("/late?name=bob");
    let headers = format!("{:?}", bob.headers);
    assert!(
        !bob.text().contains("alice") && !headers.contains("alice"),
        "bob's answer carries alice's bytes: {} {headers} {}",
        bob.status,
        bob.text()
    );
    bob.expect(200);
    assert_eq!(bob.text(), "served bob");
    server.expect_log(
        "bytes for requests that had already ended",
        Duration::from_secs(5),
    );
    assert!(
        !server.log().contains("LATE-DATA"),
        "the late bytes are not logged"
    );
    // The connection stays good.
    assert_eq!(server.get("/late?name=carol").text(), "served carol");
}
