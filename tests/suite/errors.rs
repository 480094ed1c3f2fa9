//! Every error answer: its status, its JSON shape, and the field it names.

use crate::harness::{assert_error, go, Server};
use base64::Engine as _;
use serde_json::json;

fn b64(source: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(source)
}

#[test]
fn bad_registrations_are_400_naming_the_field() {
    let server = Server::new().start();
    let code = b64(go::HELLO);

    for body in ["{not json", "", "[]", "\"hello\""] {
        assert_error(&server.put("/register", body), 400, &[]);
    }
    let cases = [
        (json!({"trigger": "http", "code": code}), "name"),
        (json!({"name": 7, "trigger": "http", "code": code}), "name"),
        (json!({"name": "nocode", "trigger": "http"}), "code"),
        (
            json!({"name": "badcode", "trigger": "http", "code": "%%% not base64 %%%"}),
            "code",
        ),
        (
            json!({"name": "badcode", "trigger": "http", "code": 12}),
            "code",
        ),
        (
            json!({"name": "opts", "trigger": "http", "code": code, "response": "xml"}),
            "response",
        ),
        (
            json!({"name": "opts", "trigger": "http", "code": code, "timeout": "soon"}),
            "timeout",
        ),
        (
            json!({"name": "opts", "trigger": "http", "code": code, "timeout_ms": "x"}),
            "timeout",
        ),
        (
            json!({"name": "opts", "trigger": "http", "code": code, "env": {"A": 1}}),
            "env",
        ),
        (
            json!({"name": "opts", "trigger": "http", "code": code, "env": ["A"]}),
            "env",
        ),
        (
            json!({"name": "opts", "trigger": 5, "code": code}),
            "trigger",
        ),
    ];
    for (body, field) in cases {
        let response = server.put("/register", body.to_string());
        assert_error(&response, 400, &[field]);
    }

    let long = "a".repeat(65);
    let bad_names = [
        "",
        "Hello",
        "-dash",
        "_under",
        "a/b",
        "a.b",
        "a b",
        "é",
        long.as_str(),
        "con",
        "nul",
        "aux",
        "prn",
        "com1",
        "lpt9",
        "register",
        "functions",
        "metrics",
        "health",
        "healthz",
        "async",
        "ui",
        "static",
        "api",
        "openapi.json",
        "favicon.ico",
    ];
    for name in bad_names {
        let response = server.register(name, go::HELLO, json!({}));
        assert_error(&response, 400, &["name"]);
    }

    // none of it registered anything
    assert_eq!(server.get("/functions").expect(200).json(), json!([]));
    assert_eq!(server.get("/").json()["functions"], 0);
}

#[test]
fn good_edge_names_are_accepted() {
    let server = Server::new().start();
    let longest = format!("a{}", "b".repeat(63));
    for name in ["0", "a_b-c9", longest.as_str(), "console"] {
        let response = server.register(name, go::HELLO, json!({}));
        response.expect(201);
    }
    assert_eq!(
        server.get(&format!("/{longest}")).message(),
        "Hello, World!\n"
    );
}

#[test]
fn unknown_functions_are_404() {
    let server = Server::new().start();
    for (method, path) in [
        ("GET", "/nope"),
        ("POST", "/nope"),
        ("GET", "/nope/sub/path"),
        ("GET", "/functions/nope"),
        ("DELETE", "/functions/nope"),
        ("POST", "/functions/nope/invoke"),
    ] {
        assert_error(&server.request(method, path, &[], b""), 404, &[]);
    }
}

#[test]
fn wrong_methods_are_405_with_allow() {
    let server = Server::new().start();
    for (method, path, allowed) in [
        ("POST", "/", "GET"),
        ("DELETE", "/", "GET"),
        ("GET", "/register", "PUT"),
        ("POST", "/register", "PUT"),
        ("DELETE", "/register", "PUT"),
        ("POST", "/functions", "GET"),
    ] {
        let response = server.request(method, path, &[], b"");
        assert_error(&response, 405, &[]);
        let allow = response
            .header("allow")
            .unwrap_or_else(|| panic!("{method} {path}: 405 without an Allow header"));
        assert!(
            allow.split(',').any(|m| m.trim() == allowed),
            "{method} {path}: Allow {allow:?} should list {allowed}"
        );
        assert!(
            !allow.split(',').any(|m| m.trim() == method),
            "{method} {path}: Allow {allow:?} lists the refused method"
        );
    }
}

#[test]
fn bodies_and_sources_over_the_limits_are_413() {
    let server = Server::new()
        .arg("--max-body")
        .arg("4KiB")
        .arg("--max-source")
        .arg("1KiB")
        .arg("--max-package")
        .arg("1KiB")
        .start();
    server.register_ok("echo", go::ECHO, json!({}));

    let fits = "x".repeat(3000);
    assert_eq!(server.post("/echo", &fits).message(), fits);
    let too_big = "y".repeat(5000);
    assert_error(&server.post("/echo", &too_big), 413, &[]);
    assert_error(
        &server.request_chunked("POST", "/echo", too_big.as_bytes(), 1000),
        413,
        &[],
    );
    // A registration may be as large as a --max-package archive in base64 and 1 MiB more.
    let too_big_to_register = "y".repeat(1100 << 10);
    assert_error(
        &server.put(
            "/register",
            format!("{{\"pad\":\"{too_big_to_register}\"}}"),
        ),
        413,
        &[],
    );

    // a source over --max-source in a body under --max-body
    let padded = format!("{}// {}\n", go::HELLO, "p".repeat(1500));
    assert!(
        crate::harness::server::registration_body("big", &padded, json!({}))
            .to_string()
            .len()
            < 4096
    );
    assert_error(&server.register("big", &padded, json!({})), 413, &[]);
    server.get("/functions/big").expect(404);
}

#[test]
fn a_compilation_error_is_422_with_the_compiler_output() {
    let server = Server::new().start();
    let response = server.register("broken", go::BROKEN, json!({}));
    let body = assert_error(&response, 422, &[]);
    assert_eq!(body["error"], "compilation failed", "{body}");
    let details = body["details"]
        .as_str()
        .unwrap_or_else(|| panic!("no details: {body}"));
    assert!(details.contains("Printx"), "details: {details}");
    server.get("/functions/broken").expect(404);
}
