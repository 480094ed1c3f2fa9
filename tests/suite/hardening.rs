//! Failure paths found in review: lost folders and executables are rebuilt, output is not
//! lost to an escaped background process, unenforced limits are refused, failed runs still
//! say how long they ran, and a refused request never stalls the accept loop.

use crate::harness::{assert_error, eventually, go, http, is_root, PidReaper, Server};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn a_missing_plugin_folder_is_rebuilt_on_restart() {
    let mut server = Server::new().start();
    server.register_ok("hello", go::HELLO, json!({}));
    server.stop();
    std::fs::remove_dir_all(server.data_dir().join("plugins/hello")).expect("plugins/hello");
    server.restart();
    assert_eq!(server.get("/hello").message(), "Hello, World!\n");
}

#[test]
fn identical_registration_repairs_a_lost_executable() {
    let server = Server::new().start();
    let first = server.register_ok("hello", go::HELLO, json!({}));
    std::fs::remove_file(server.version_file("hello", 1, "executable")).expect("the executable");
    server.get("/hello").expect(500);
    let again = server.register("hello", go::HELLO, json!({}));
    again.expect(200);
    assert_eq!(again.json()["version"], first["version"], "same version");
    assert_eq!(server.get("/hello").message(), "Hello, World!\n");
}

#[test]
fn output_is_kept_when_an_escaped_process_holds_stdout() {
    let server = Server::new().start();
    let pidfile = server.io_path("background.pid");
    server.register_ok(
        "leaver",
        go::LEAVE_BACKGROUND_HOLDING_STDOUT,
        json!({"env": {"PIDFILE": pidfile.display().to_string()}}),
    );
    let started = Instant::now();
    let answer = server.get("/leaver");
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .expect("the function wrote its child's pid");
    let _reaper = PidReaper(vec![pid]);
    assert_eq!(
        answer.message(),
        "hi\n",
        "stdout written before exit is answered"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the answer must not wait for the background process"
    );
}

const DIAL: &str = r#"package main

import (
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	conn, err := net.DialTimeout("tcp", os.Getenv("TARGET"), 2*time.Second)
	if err != nil {
		fmt.Println("cut off:", err)
		return
	}
	conn.Close()
	fmt.Println("connected")
}
"#;

#[test]
fn network_false_cuts_a_run_off_every_network() {
    let server = Server::new().start();
    let target = json!({"TARGET": format!("127.0.0.1:{}", server.port())});
    server.register_ok("online", DIAL, json!({"env": target}));
    assert_eq!(server.get("/online").message(), "connected\n");
    let offline = server.register("offline", DIAL, json!({"env": target, "network": false}));
    if is_root() {
        offline.expect(201);
        let answer = server.get("/offline").message();
        assert!(answer.starts_with("cut off:"), "{answer}");
    } else {
        let body = assert_error(&offline, 400, &["network"]);
        assert_eq!(body["field"], "network", "{body}");
        server.get("/functions/offline").expect(404);
    }
}

/// `?listen`: listens on an abstract unix socket (scoped by network namespace), says so in
/// `MARKER`, and waits a few seconds for a caller; else dials it.
const ABSTRACT_SOCKET: &str = r#"package main

import (
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	name := "@golambda-namespace-test"
	if os.Getenv("QUERY_STRING") != "listen" {
		c, err := net.Dial("unix", name)
		if err != nil {
			fmt.Println("cut off")
			return
		}
		c.Close()
		fmt.Println("reached")
		return
	}
	l, err := net.Listen("unix", name)
	if err != nil {
		fmt.Println("cannot listen:", err)
		return
	}
	os.WriteFile(os.Getenv("MARKER"), []byte("listening"), 0o644)
	l.(*net.UnixListener).SetDeadline(time.Now().Add(3 * time.Second))
	c, err := l.Accept()
	if err != nil {
		fmt.Println("nobody came")
		return
	}
	c.Close()
	fmt.Println("accepted")
}
"#;

#[test]
fn runs_without_network_never_share_one() {
    if !is_root() {
        return; // "network": false needs root (see above)
    }
    let server = Server::new().start();
    // The first run that asks for a network namespace makes its own; this one asks, so that
    // both runs below join namespaces of the stock.
    server.register_ok("first", go::HELLO, json!({"network": false}));
    server.get("/first").expect(200);
    // The same two runs on the host's network reach each other: the check can see sharing.
    for (name, network, expected) in [
        ("together", true, ("accepted", "reached")),
        ("apart", false, ("nobody came", "cut off")),
    ] {
        let marker = server.io_path(&format!("{name}.listening"));
        let env = json!({"MARKER": marker.display().to_string()});
        server.register_ok(
            name,
            ABSTRACT_SOCKET,
            json!({"env": env, "network": network}),
        );
        let (port, path) = (server.port(), format!("/{name}?listen"));
        let listener = std::thread::spawn(move || {
            http::request(port, "GET", &path, &[], http::Body::Fixed(b""))
        });
        assert!(
            eventually(Duration::from_secs(10), || marker.exists()),
            "{name}: the listening run did not start"
        );
        let dialled = server.get(&format!("/{name}")).message();
        let listened = listener
            .join()
            .expect("the listening request")
            .expect("an answer")
            .message();
        assert_eq!(
            (listened.trim_end(), dialled.trim_end()),
            expected,
            "{name}"
        );
    }
}

#[test]
fn failed_runs_carry_server_timing() {
    let server = Server::new().arg("--timeout").arg("1s").start();
    server.register_ok("failer", go::FAILER, json!({}));
    server.register_ok("sleepy", &go::sleeper(5_000), json!({}));
    for (path, status) in [("/failer?exit", 500), ("/sleepy", 504)] {
        let answer = server.get(path);
        answer.expect(status);
        let timing = answer.header("Server-Timing").unwrap_or_default();
        assert!(
            timing.starts_with("exec;dur="),
            "{path}: Server-Timing {timing:?}"
        );
    }
}

#[test]
fn a_refused_request_with_an_unread_body_does_not_stall_the_server() {
    let server = Server::new().one_worker_no_queue().start();
    let port = server.port();
    let busy = server.hold_busy("slow", 1_500, json!({}));
    // Hold the only worker, then send a request that declares a large body and stalls.
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stalled
        .write_all(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\nab")
        .expect("write");
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut head = [0u8; 12];
    stalled
        .read_exact(&mut head)
        .expect("an answer to the stalled request");
    assert_eq!(
        &head, b"HTTP/1.1 503",
        "the stalled request is refused at once"
    );
    // The accept loop must still answer others while that body is never sent.
    let started = Instant::now();
    let health = server
        .try_request("GET", "/", &[], b"")
        .expect("the server still answers");
    assert!(
        matches!(health.status, 200 | 503),
        "health answered {}",
        health.status
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let slow = busy.join().expect("thread").expect("slow answered");
    assert_eq!(slow.status, 200);
    drop(stalled);
}
