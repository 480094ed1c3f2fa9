//! Start-up, health, logging, signals and the missing-toolchain case.

use crate::harness::{assert_error, eventually, go, http, Server};
use serde_json::json;
use std::net::TcpStream;
use std::time::Duration;

#[test]
fn health_reports_status_version_uptime_and_function_count() {
    let server = Server::new().start();
    let response = server.get("/");
    response.expect(200);
    assert!(
        response
            .header("content-type")
            .unwrap_or("")
            .contains("application/json"),
        "GET / Content-Type: {:?}",
        response.header("content-type")
    );
    let health = response.json();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"), "{health}");
    assert_eq!(health["functions"], 0, "{health}");
    let uptime = health["uptime_seconds"].as_f64().unwrap_or(-1.0);
    assert!((0.0..60.0).contains(&uptime), "uptime_seconds: {health}");

    server.register_ok("hello", go::HELLO, json!({}));
    assert_eq!(server.get("/").json()["functions"], 1);
}

#[test]
fn sigint_exits_zero_after_printing_exactly_one_listening_line() {
    let mut server = Server::new().start();
    let port = server.port();
    server.get("/").expect(200);
    server.sigint();
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("server still running 10s after SIGINT");
    assert_eq!(status.code(), Some(0), "exit status after SIGINT");
    assert_eq!(
        server.stdout_lines(),
        vec![format!("golambda listening on http://127.0.0.1:{port}")],
        "stdout must be exactly the listening line"
    );
}

#[test]
fn sigterm_lets_the_inflight_request_finish_then_exits_zero() {
    let mut server = Server::new().start();
    let marker = server.io_path("started");
    server.register_ok(
        "nap",
        &go::sleeper(1000),
        json!({"env": {"MARKER": marker.display().to_string()}}),
    );
    let port = server.port();
    let inflight =
        std::thread::spawn(move || http::request(port, "GET", "/nap", &[], http::Body::Fixed(b"")));
    assert!(
        eventually(Duration::from_secs(15), || marker.exists()),
        "the function never started"
    );
    server.sigterm();

    let answer = inflight
        .join()
        .unwrap()
        .expect("the in-flight request got no answer after SIGTERM");
    assert_eq!(answer.message(), "woke\n");
    let status = server
        .wait_exit(Duration::from_secs(15))
        .expect("server still running 15s after SIGTERM");
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "a new connection was accepted after shutdown"
    );
}

#[test]
fn missing_go_toolchain_answers_503_saying_how_to_install_go() {
    let server = Server::new().go("/nonexistent/go").start();
    let response = server.register("hello", go::HELLO, json!({}));
    let body = assert_error(&response, 503, &["install"]);
    let message = body["error"].as_str().unwrap().to_lowercase();
    assert!(message.contains("go"), "message should name Go: {body}");
    // nothing was registered
    server.get("/functions/hello").expect(404);
    assert_eq!(server.get("/").json()["functions"], 0);
    // the server keeps serving
    server.get("/").expect(200);
}

#[test]
fn logs_requests_registrations_runs_and_compile_failures() {
    let server = Server::new().start();
    server.register_ok("hello", go::HELLO, json!({}));
    server.get("/hello").message();
    server.get("/nope").expect(404);
    server.register("broken", go::BROKEN, json!({})).expect(422);

    let wait = Duration::from_secs(5);
    server.expect_log("registered hello version 1", wait);
    server.expect_log("PUT /register 201", wait);
    server.expect_log("GET /hello 200", wait);
    server.expect_log_words(&["run hello ", "trigger=http", "status=ok", "exit=0"], wait);
    server.expect_log("GET /nope 404", wait);
    server.expect_log("compilation of broken failed", wait);
    server.expect_log("PUT /register 422", wait);
    assert_eq!(
        server.log_count("registered broken"),
        0,
        "a failed compilation must not log a registration"
    );
}
