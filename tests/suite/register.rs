//! `PUT /register`: compile, store, version, and GoLambda's hello example end to end.

use crate::harness::{go, sha256_hex, Server};
use base64::Engine as _;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;

/// Asserts an RFC 3339 UTC timestamp written with `Z`; returns it parsed.
#[track_caller]
pub fn utc_time(value: &Value) -> chrono::DateTime<chrono::Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("expected an RFC 3339 string, got {value}"));
    assert!(
        text.ends_with('Z'),
        "timestamp {text:?} should be UTC with a Z suffix"
    );
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("timestamp {text:?} is not RFC 3339: {e}"))
        .with_timezone(&chrono::Utc)
}

#[test]
fn hello_example_is_compiled_stored_and_answers_exactly() {
    // The one test that lets the server find `go` on PATH and use its own build cache.
    let server = Server::new().system_go().start();
    let before = chrono::Utc::now() - chrono::Duration::seconds(2);
    let response = server.register("hello", go::HELLO, json!({}));
    response.expect(201);
    let meta = response.json();
    assert_eq!(meta["name"], "hello", "{meta}");
    assert_eq!(meta["trigger"], "http", "{meta}");
    assert_eq!(meta["runtime"], "go", "{meta}");
    assert_eq!(meta["version"], 1, "{meta}");
    assert_eq!(meta["response"], "json", "{meta}");
    assert_eq!(
        meta["timeout_ms"], 30000,
        "default --timeout is 30s: {meta}"
    );
    assert_eq!(meta["env"], json!({}), "{meta}");
    assert_eq!(meta["secrets"], json!([]), "{meta}");
    assert_eq!(meta["paused"], false, "{meta}");
    assert_eq!(meta["sha256"], sha256_hex(go::HELLO.as_bytes()), "{meta}");
    assert!(
        meta["next_run"].is_null(),
        "http functions have no next_run: {meta}"
    );
    let created = utc_time(&meta["created_at"]);
    let updated = utc_time(&meta["updated_at"]);
    let after = chrono::Utc::now() + chrono::Duration::seconds(2);
    assert!(
        before <= created && created <= after,
        "created_at {created} not now"
    );
    assert!(created <= updated, "updated_at before created_at: {meta}");

    // the source and the executable are on disk, the registry knows the function
    let data = server.data_dir();
    let source = server.version_file("hello", 1, "source");
    assert!(
        source.starts_with(data.join("user_functions/hello")),
        "{}",
        source.display()
    );
    let stored = std::fs::read_to_string(&source).expect("the source");
    assert_eq!(stored, go::HELLO);
    let executable = server.version_file("hello", 1, "executable");
    assert!(
        executable.starts_with(data.join("plugins/hello")),
        "{}",
        executable.display()
    );
    let exe = std::fs::metadata(&executable).expect("the executable");
    assert!(exe.is_file() && exe.len() > 0);
    assert!(
        exe.permissions().mode() & 0o111 != 0,
        "plugins/hello/v1 is not executable"
    );
    assert_eq!(server.registry_names(), vec!["hello"]);

    // GoLambda's README: GET /hello answers exactly this
    let answer = server.get("/hello");
    answer.expect(200);
    assert_eq!(answer.json(), json!({"message": "Hello, World!\n"}));
    assert_eq!(answer.message(), "Hello, World!\n");
    assert!(
        answer
            .header("content-type")
            .unwrap_or("")
            .contains("application/json"),
        "Content-Type of a json-mode answer: {:?}",
        answer.header("content-type")
    );
}

#[test]
fn new_code_becomes_version_two_and_is_served_at_once() {
    let server = Server::new().start();
    let first = server.register("greet", &go::say("one"), json!({}));
    first.expect(201);
    let first = first.json();
    assert_eq!(server.get("/greet").message(), "one\n");

    let second = server.register("greet", &go::say("two"), json!({}));
    second.expect(200);
    let second = second.json();
    assert_eq!(second["version"], 2, "{second}");
    assert_eq!(
        second["created_at"], first["created_at"],
        "created_at must not change"
    );
    assert_eq!(second["sha256"], sha256_hex(go::say("two").as_bytes()));
    assert!(utc_time(&second["updated_at"]) >= utc_time(&first["updated_at"]));
    assert_eq!(server.get("/greet").message(), "two\n");
    assert_eq!(server.metadata("greet")["version"], 2);
    let v2 = std::fs::read_to_string(server.version_file("greet", 2, "source"))
        .expect("the source of version 2");
    assert_eq!(v2, go::say("two"));
}

#[test]
fn identical_registration_answers_200_same_version_without_compiling() {
    let server = Server::new().start();
    let first = server.register("same", go::HELLO, json!({"env": {"A": "1"}}));
    first.expect(201);
    let builds_after_first = server.go_builds();
    assert_eq!(
        builds_after_first, 1,
        "the first registration should run go build once"
    );

    let again = server.register("same", go::HELLO, json!({"env": {"A": "1"}}));
    again.expect(200);
    assert_eq!(
        again.json(),
        first.json(),
        "identical registration must not change metadata"
    );
    assert_eq!(
        server.go_builds(),
        1,
        "identical registration must not compile"
    );
    assert_eq!(
        server.log_count("compiled same"),
        1,
        "log:\n{}",
        server.log()
    );
    assert_eq!(server.get("/same").message(), "Hello, World!\n");
    // Beside each source, the output of its build.
    let sources = std::fs::read_dir(server.data_dir().join("user_functions/same"))
        .expect("the sources of same")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".go"))
        .count();
    assert_eq!(
        sources, 1,
        "an identical registration stored another source"
    );
}

#[test]
fn settings_are_stored_returned_and_a_settings_change_is_a_new_version() {
    let server = Server::new().start();
    let source = r#"package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Println(os.Getenv("GREETING"))
}
"#;
    let meta = server.register_ok(
        "cfg",
        source,
        json!({"timeout": "1500ms", "env": {"GREETING": "hi"}, "response": "raw"}),
    );
    assert_eq!(meta["timeout_ms"], 1500, "{meta}");
    assert_eq!(meta["env"], json!({"GREETING": "hi"}), "{meta}");
    assert_eq!(meta["response"], "raw", "{meta}");

    // raw mode: stdout is the body, as text
    let raw = server.get("/cfg");
    raw.expect(200);
    assert_eq!(raw.text(), "hi\n");
    assert!(
        raw.header("content-type")
            .unwrap_or("")
            .starts_with("text/plain"),
        "raw Content-Type: {:?}",
        raw.header("content-type")
    );

    // same code, other settings: a new version that uses them
    let changed = server.register(
        "cfg",
        source,
        json!({"timeout_ms": 2500, "env": {"GREETING": "hello"}}),
    );
    changed.expect(200);
    let changed = changed.json();
    assert_eq!(changed["version"], 2, "{changed}");
    assert_eq!(changed["timeout_ms"], 2500, "{changed}");
    assert_eq!(changed["response"], "json", "{changed}");
    assert_eq!(server.get("/cfg").message(), "hello\n");
}

#[test]
fn base64_code_without_padding_is_accepted() {
    let server = Server::new().start();
    let mut source = go::HELLO.to_string();
    while !base64::engine::general_purpose::STANDARD
        .encode(&source)
        .ends_with("==")
    {
        source.push('\n');
    }
    let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&source);
    let body = json!({"name": "nopad", "trigger": "http", "code": unpadded});
    server.put("/register", body.to_string()).expect(201);
    assert_eq!(server.get("/nopad").message(), "Hello, World!\n");
    assert_eq!(
        server.metadata("nopad")["sha256"],
        sha256_hex(source.as_bytes())
    );
}
