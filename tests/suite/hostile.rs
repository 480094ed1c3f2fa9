//! Hostile input: each attempt gets a clear 4xx, changes nothing, and the server keeps
//! serving.

use crate::harness::{assert_error, go, Server};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;

fn raw(server: &Server, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port())).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request).expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn hostile_registrations_are_4xx_and_change_nothing() {
    // Registrations may carry up to what a 1 MiB archive takes in base64, and 1 MiB more.
    let server = Server::new()
        .arg("--max-body")
        .arg("2MiB")
        .arg("--max-package")
        .arg("1MiB")
        .start();
    server.register_ok("keep", go::HELLO, json!({}));
    let registry =
        std::fs::read(server.data_dir().join("registry/registry.json")).expect("registry");
    let files = server.stored_files();
    let hello = crate::harness::server::registration_body("x", go::HELLO, json!({}));
    let code = hello["code"].as_str().expect("code").to_string();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (deep.into_bytes(), 400),
        (
            b"{\"name\":\"a\",\"trigger\":\"http\",\"code\":\"\xff\xfe\"}".to_vec(),
            400,
        ),
        (b"\xff\xff\xff".to_vec(), 400),
        (
            json!({"name": ["a"], "trigger": "http", "code": code})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            json!({"name": "a", "trigger": 5, "code": code})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            json!({"name": "x".repeat(100_000), "trigger": "http", "code": code})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            json!({"name": "../../etc", "trigger": "http", "code": code})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            json!({"name": "..", "trigger": "http", "code": code})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            json!({"name": "a/b", "trigger": "http", "code": code})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            json!({"name": "con", "trigger": "http", "code": code})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            json!({"name": "lpt1", "trigger": "http", "code": code})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            json!({"name": "metrics", "trigger": "http", "code": code})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            json!({"name": "a", "trigger": "http", "code": "!!!not base64!!!"})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            json!({"name": "a", "trigger": "http", "code": code, "timeout": "-1s"})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            json!({"name": "a", "trigger": "http", "code": code, "timeout_ms": 1e30})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            json!({"name": "a", "trigger": "http", "code": code, "timeout": "99999999h"})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            json!({"name": "a", "trigger": "http", "code": code, "memory": "99999999999999GiB"})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            json!({"name": "a", "trigger": "http", "code": code, "max_concurrency": -1})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            json!({"name": "a", "trigger": "http", "code": code, "env": {"A=B": "x"}})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            json!({"name": "a", "trigger": "@every -5s", "code": code})
                .to_string()
                .into_bytes(),
            400,
        ),
        (vec![b'{'; 3 << 20], 413),
    ];
    for (body, status) in cases {
        let answer = server.put("/register", &body);
        assert_error(&answer, status, &[]);
    }
    // A chunked body over the bound is refused too.
    let big = vec![b'a'; 3 << 20];
    assert_error(
        &server.request_chunked("PUT", "/register", &big, 64 * 1024),
        413,
        &[],
    );
    assert_eq!(
        std::fs::read(server.data_dir().join("registry/registry.json")).expect("registry"),
        registry
    );
    assert_eq!(server.stored_files(), files);
    assert_eq!(server.get("/keep").message(), "Hello, World!\n");
}

#[test]
fn path_traversal_in_urls_reaches_nothing() {
    let server = Server::new().start();
    server.register_ok("keep", go::HELLO, json!({}));
    for path in [
        "/../registry/registry.json",
        "/%2e%2e/registry/registry.json",
        "/%2E%2E%2Fregistry%2Fregistry.json",
        "/functions/..%2F..%2Fetc%2Fpasswd",
        "/functions/../registry",
        "/functions/keep/runs/..%2F..%2Fregistry.json",
        "/functions/keep/source/../../registry/registry.json",
        "/keep%00",
        "/%ff%fe",
    ] {
        let answer = server.get(path);
        assert!(
            (400..500).contains(&answer.status),
            "{path}: {} {}",
            answer.status,
            answer.text()
        );
        assert!(
            !answer.text().contains("\"versions\""),
            "{path} leaked the registry"
        );
        assert!(
            !answer.text().contains("root:"),
            "{path} leaked a system file"
        );
    }
    assert_eq!(server.get("/keep").message(), "Hello, World!\n");
}

#[test]
fn huge_header_counts_are_refused() {
    let server = Server::new().start();
    let mut request = b"GET /functions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".to_vec();
    for i in 0..2_000 {
        request.extend_from_slice(format!("X-Flood-{i}: {i}\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let answer = raw(&server, &request);
    assert!(answer.starts_with("HTTP/1.1 431"), "{:.200}", answer);
    server.get("/").expect(200);
}

#[test]
fn absurd_request_lines_do_not_hurt() {
    let server = Server::new().start();
    let long_path = format!(
        "GET /{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "a".repeat(60_000)
    );
    let answer = raw(&server, long_path.as_bytes());
    assert!(
        answer.starts_with("HTTP/1.1 4") || answer.is_empty(),
        "{:.200}",
        answer
    );
    let garbage = raw(&server, b"\x00\x01\x02 nonsense\r\n\r\n");
    assert!(
        garbage.is_empty() || garbage.starts_with("HTTP/1.1 4"),
        "{:.200}",
        garbage
    );
    server.get("/").expect(200);
}

/// Sends `request`, then closes the sending side, and reads until the server closes.
fn raw_half_closed(server: &Server, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port())).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request).expect("write");
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn requests_framed_ambiguously_are_400_and_close_their_connection() {
    let server = Server::new().start();
    server.register_ok("echo", go::ECHO, json!({"response": "raw"}));
    let smuggled = "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n";
    for head in [
        "Content-Length: 3\r\nContent-Length: 40",
        "Content-Length: 5\r\nTransfer-Encoding: chunked",
        "Content-Length: -1",
        "Content-Length: +3",
        "Transfer-Encoding: gzip, chunked",
    ] {
        let request = format!("POST /echo HTTP/1.1\r\nHost: x\r\n{head}\r\n\r\nabc{smuggled}");
        let answer = raw(&server, request.as_bytes());
        assert!(answer.starts_with("HTTP/1.1 400"), "{head}: {answer}");
        assert_eq!(
            answer.matches("HTTP/1.1").count(),
            1,
            "{head}: a second answer: {answer}"
        );
    }
    // A chunked body cut inside a chunk, the client closing its side: never run.
    let cut = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc";
    let answer = raw_half_closed(&server, cut);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // A NUL byte in a sub-path.
    let answer = raw(
        &server,
        b"GET /echo/a%00b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let runs = server.get("/functions/echo/runs").json();
    assert_eq!(runs.as_array().map(Vec::len), Some(0), "{runs}");
    // A whole chunked body still runs.
    assert_eq!(
        server
            .request_chunked("POST", "/echo", b"whole body", 3)
            .text(),
        "whole body"
    );
}

#[test]
fn code_that_is_no_program_or_reaches_outside_its_folder_is_refused_and_changes_nothing() {
    let server = Server::new().start();
    server.register_ok("fn", go::HELLO, json!({}));
    // A library: go build writes an archive, not a program.
    let details = |answer: crate::harness::http::Response| -> String {
        answer.expect(422);
        answer.json()["details"].as_str().unwrap_or("").to_string()
    };
    let library = "package notmain\n\nfunc F() {}\n";
    let refused = details(server.register("fn", library, json!({})));
    assert!(refused.contains("package main"), "{refused}");
    // A relative import of a package outside the build folder (GOPATH mode compiled it).
    let outside = server.io_path("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::write(
        outside.join("x.go"),
        "package x\n\nimport \"fmt\"\n\nfunc init() { fmt.Println(\"OUTSIDE\") }\n",
    )
    .expect("package");
    let reaching = "package main\n\nimport _ \"../../../io/outside\"\n\nfunc main() {}\n";
    let refused = details(server.register("fn", reaching, json!({})));
    assert!(refused.contains("relative"), "{refused}");
    // An environment no process could be started with.
    let huge: serde_json::Map<String, serde_json::Value> = (0..200)
        .map(|i| (format!("V{i}"), json!("x".repeat(28 * 1024))))
        .collect();
    assert_error(
        &server.register("fn", go::HELLO, json!({"env": huge})),
        400,
        &["env"],
    );
    // None of it changed the function.
    assert_eq!(server.metadata("fn")["version"], 1);
    assert_eq!(server.get("/fn").message(), "Hello, World!\n");
}

#[test]
fn control_characters_never_reach_a_log_line_or_a_function_and_underscores_spoof_nobody() {
    let server = Server::new().start();
    server.register_ok("env", go::ENV_DUMP, json!({}));
    // A bare line feed in the request line, with a forged log line after it; an escape
    // sequence; a carriage return in a header value.
    for request in [
        &b"GET /x\nFORGED-2026-12-01T00:00:00Z\t[INFO]\tregistered\tbackdoor HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &b"GET /env/\x1b[31mred HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &b"GET /env HTTP/1.1\r\nHost: x\r\nX-A: one\rtwo\r\n\r\n"[..],
    ] {
        let answer = raw(&server, request);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }
    server.get("/").expect(200);
    let log = server.log();
    assert!(
        !log.lines().any(|l| l.starts_with("FORGED")) && !log.contains('\u{1b}'),
        "a client wrote into the log: {log}"
    );
    // Behind a proxy that sets X-Forwarded-User, a client's X_Forwarded_User is dropped;
    // repeated cookies are joined as one Cookie header is.
    let answer = server.request(
        "GET",
        "/env",
        &[
            ("X_Forwarded_User", "admin"),
            ("X-Forwarded-User", "alice"),
            ("Cookie", "a=1"),
            ("Cookie", "b=2"),
        ],
        b"",
    );
    let seen: serde_json::Value = serde_json::from_str(&answer.message()).expect("json");
    assert_eq!(seen["env"]["HTTP_X_FORWARDED_USER"], "alice", "{seen}");
    assert_eq!(seen["env"]["HTTP_COOKIE"], "a=1; b=2", "{seen}");
}
