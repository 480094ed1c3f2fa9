//! Limits a run lives under: memory, per-function concurrency, and access control of the
//! admin API with tokens and JWTs.

use crate::harness::{assert_error, go, Server};
use serde_json::json;
use std::time::Duration;

const HOG: &str = r#"package main

import "fmt"

func main() {
	var keep [][]byte
	for i := 0; i < 64; i++ { // 64 x 64 MiB = 4 GiB
		b := make([]byte, 64<<20)
		for j := range b {
			b[j] = byte(j)
		}
		keep = append(keep, b)
	}
	fmt.Println("allocated", len(keep))
}
"#;

#[test]
fn a_memory_hog_is_stopped_and_hello_fits_in_64_mib() {
    let server = Server::new().start();
    server.register_ok("small", go::HELLO, json!({"memory": "64MiB"}));
    assert_eq!(server.get("/small").message(), "Hello, World!\n");
    server.register_ok("hog", HOG, json!({"memory": "256MiB", "timeout": "20s"}));
    let answer = server.get("/hog");
    let body = assert_error(&answer, 500, &[]);
    assert!(
        !body["stdout"].as_str().unwrap_or("").contains("allocated"),
        "the hog finished: {body}"
    );
    assert_eq!(server.metadata("hog")["memory"], 256 << 20);
}

#[test]
fn max_concurrency_answers_429() {
    let server = Server::new().start();
    let first = server.hold_busy("single", 1_500, json!({"max_concurrency": 1}));
    let second = server.get("/single");
    assert_error(&second, 429, &["max_concurrency"]);
    assert_eq!(second.header("Retry-After"), Some("1"));
    let first = first.join().expect("thread").expect("answer");
    assert_eq!(first.status, 200);
    assert_eq!(server.get("/single").status, 200, "the place came back");
}

#[test]
fn tokens_and_jwts_guard_the_admin_api() {
    let server = Server::new()
        .arg("--token")
        .arg("s3cret-token")
        .arg("--jwt-secret")
        .arg("jwt-key")
        .start();
    let unauthorized = server.get("/functions");
    assert_error(&unauthorized, 401, &["Bearer"]);
    assert!(unauthorized
        .header("WWW-Authenticate")
        .is_some_and(|h| h.starts_with("Bearer")));
    server.get("/").expect(200);
    let bearer = [("Authorization", "Bearer s3cret-token")];
    let body = crate::harness::server::registration_body("hello", go::HELLO, json!({}));
    let put = |headers: &[(&str, &str)]| {
        server.request("PUT", "/register", headers, body.to_string().as_bytes())
    };
    assert_error(&put(&[]), 401, &[]);
    assert_error(&put(&[("Authorization", "Bearer wrong")]), 401, &[]);
    put(&bearer).expect(201);
    // Invocations stay open without --invoke-auth.
    assert_eq!(server.get("/hello").message(), "Hello, World!\n");
    let now = chrono::Utc::now().timestamp();
    let jwt = golambda::http::auth::sign_jwt(&json!({"exp": now + 300}), b"jwt-key");
    server
        .request(
            "GET",
            "/functions",
            &[("Authorization", &format!("Bearer {jwt}"))],
            b"",
        )
        .expect(200);
    let expired = golambda::http::auth::sign_jwt(&json!({"exp": now - 600}), b"jwt-key");
    let forged = golambda::http::auth::sign_jwt(&json!({"exp": now + 300}), b"other-key");
    let none = format!(
        "{}.{}.",
        base64_url(br#"{"alg":"none","typ":"JWT"}"#),
        base64_url(json!({"exp": now + 300}).to_string().as_bytes())
    );
    // Never expires; names a critical extension nobody understands (RFC 7515 4.1.11).
    let forever = golambda::http::auth::sign_jwt(&json!({"sub": "ci"}), b"jwt-key");
    let crit = {
        use hmac::Mac;
        let signed = format!(
            "{}.{}",
            base64_url(br#"{"alg":"HS256","crit":["x"],"x":true}"#),
            base64_url(json!({"exp": now + 300}).to_string().as_bytes())
        );
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(b"jwt-key").expect("key");
        mac.update(signed.as_bytes());
        format!("{signed}.{}", base64_url(&mac.finalize().into_bytes()))
    };
    for bad in [expired, forged, none, forever, crit] {
        let answer = server.request(
            "GET",
            "/metrics",
            &[("Authorization", &format!("Bearer {bad}"))],
            b"",
        );
        assert_error(&answer, 401, &[]);
    }
}

#[test]
fn invoke_auth_guards_invocations_too() {
    let server = Server::new()
        .arg("--token")
        .arg("t0k")
        .arg("--invoke-auth")
        .start();
    let body = crate::harness::server::registration_body("hello", go::HELLO, json!({}));
    server
        .request(
            "PUT",
            "/register",
            &[("Authorization", "Bearer t0k")],
            body.to_string().as_bytes(),
        )
        .expect(201);
    assert_error(&server.get("/hello"), 401, &[]);
    assert_error(&server.post("/async/hello", ""), 401, &[]);
    let answer = server.request("GET", "/hello", &[("Authorization", "Bearer t0k")], b"");
    assert_eq!(answer.message(), "Hello, World!\n");
    server.get("/").expect(200);
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn rate_limit_answers_429_per_client() {
    let server = Server::new().arg("--rate-limit").arg("3").start();
    let answers: Vec<_> = (0..8).map(|_| server.get("/")).collect();
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert!(
        statuses.iter().filter(|s| **s == 200).count() >= 3,
        "{statuses:?}"
    );
    let limited = answers
        .iter()
        .find(|a| a.status == 429)
        .unwrap_or_else(|| panic!("no 429 in {statuses:?}"));
    assert_eq!(limited.header("Retry-After"), Some("1"));
    assert!(
        crate::harness::eventually(std::time::Duration::from_secs(3), || server.get("/").status
            == 200),
        "tokens come back"
    );
}

#[test]
fn tls_serves_https() {
    let server_dir = crate::harness::tempdir::TempDir::new();
    let (cert, key) = (
        server_dir.path().join("cert.pem"),
        server_dir.path().join("key.pem"),
    );
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let server = Server::new()
        .arg("--tls-cert")
        .arg(cert.display().to_string())
        .arg("--tls-key")
        .arg(key.display().to_string())
        .start();
    assert!(server.stdout_lines()[0].starts_with("golambda listening on https://"));
    let curl = std::process::Command::new("curl")
        .args(["-sk", &format!("https://127.0.0.1:{}/", server.port())])
        .output()
        .expect("curl runs");
    let body = String::from_utf8_lossy(&curl.stdout);
    assert!(body.contains("\"status\":\"ok\""), "over TLS: {body}");
    let plain = server.try_request("GET", "/", &[], b"");
    assert!(
        plain.map_or(true, |a| a.status != 200),
        "plain HTTP must not be served"
    );
}

#[test]
fn compile_memory_bounds_the_compiler() {
    let server = Server::new().arg("--compile-memory").arg("8MiB").start();
    let answer = server.register("hello", go::HELLO, json!({}));
    assert_error(&answer, 422, &["compilation failed"]);
    server.get("/functions/hello").expect(404);
}

#[test]
fn health_and_the_admin_api_answer_while_invocations_fill_the_pool() {
    let server = Server::new().one_worker_no_queue().start();
    let holder = server.hold_busy("busy", 2_000, json!({}));
    // The invocation pool is full: another invocation is shed...
    assert_error(&server.get("/busy"), 503, &[]);
    // ...but health and the admin API still answer.
    server.get("/").expect(200);
    server.get("/functions").expect(200);
    server.get("/metrics").expect(200);
    server.register_ok("other", go::HELLO, json!({}));
    assert_eq!(holder.join().expect("thread").expect("answer").status, 200);
}

#[test]
fn a_cron_function_is_run_by_anyone_neither_with_get_nor_with_async() {
    let server = Server::new().arg("--token").arg("t0k").start();
    let bearer = [("Authorization", "Bearer t0k")];
    let body = crate::harness::server::registration_body(
        "nightly",
        &go::say("ran"),
        json!({"trigger": "0 0 3 * * *"}),
    );
    server
        .request("PUT", "/register", &bearer, body.to_string().as_bytes())
        .expect(201);
    assert_error(&server.get("/nightly"), 409, &["cron", "invoke"]);
    assert_error(
        &server.post("/async/nightly", "x"),
        409,
        &["cron", "invoke"],
    );
    let answer = server.request("POST", "/functions/nightly/invoke", &bearer, b"");
    assert_eq!(answer.message(), "ran\n");
    let runs = server
        .request("GET", "/functions/nightly/runs", &bearer, b"")
        .expect(200)
        .json();
    let triggers: Vec<&str> = runs
        .as_array()
        .expect("runs")
        .iter()
        .filter_map(|r| r["trigger"].as_str())
        .collect();
    assert_eq!(triggers, ["manual"], "{runs}");
}

#[test]
fn reads_of_the_admin_api_never_wait_behind_builds() {
    // A toolchain that takes 3 s for everything.
    let dir = crate::harness::tempdir::TempDir::new();
    let slow_go = dir.path().join("slow-go.sh");
    let real = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v go"])
            .output()
            .expect("go on PATH")
            .stdout,
    )
    .expect("utf-8");
    let calls = dir.path().join("calls");
    std::fs::write(
        &slow_go,
        format!(
            "#!/bin/sh\necho \"$1\" >> {}\nsleep 3\nexec {} \"$@\"\n",
            calls.display(),
            real.trim()
        ),
    )
    .expect("script");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&slow_go, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // Builds may run as the build user: it appends to this.
    std::fs::write(&calls, "").expect("calls");
    std::fs::set_permissions(&calls, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let server = Server::new().go(slow_go.display().to_string()).start();
    server.register_ok("hello", go::HELLO, json!({}));
    let port = server.port();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let registrations: Vec<_> = (0..6)
        .map(|i| {
            let done = done.clone();
            std::thread::spawn(move || {
                let body = crate::harness::server::registration_body(
                    &format!("slow{i}"),
                    &go::say(&format!("{i}")),
                    json!({}),
                );
                let answer = crate::harness::http::request(
                    port,
                    "PUT",
                    "/register",
                    &[],
                    crate::harness::http::Body::Fixed(body.to_string().as_bytes()),
                );
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                answer
            })
        })
        .collect();
    // Both compilation slots busy: the other four registrations wait for one.
    let builds = || {
        std::fs::read_to_string(&calls).map_or(0, |t| t.lines().filter(|l| *l == "build").count())
    };
    assert!(crate::harness::eventually(
        Duration::from_secs(20),
        || builds() >= 3
    ));
    server.get("/functions/hello").expect(200);
    server.get("/functions").expect(200);
    let finished = done.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        finished < 2,
        "the reads waited until {finished} of 6 registrations were done"
    );
    for registration in registrations {
        assert!(registration.join().expect("thread").expect("answer").status == 201);
    }
}
