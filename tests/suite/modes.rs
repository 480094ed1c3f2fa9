//! Response modes: `json` (GoLambda's), `raw`, and `cgi`, where a Go program written with
//! the standard `net/http/cgi` package works unchanged.

use crate::harness::{assert_error, go, Server};
use serde_json::json;

const CGI_HANDLER: &str = r#"package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
)

func main() {
	cgi.Serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Handled-By", "go-cgi")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"method":%q,"path":%q,"query":%q,"body":%q,"auth":%q}`,
			r.Method, r.URL.Path, r.URL.RawQuery, string(body), r.Header.Get("Authorization"))
	}))
}
"#;

#[test]
fn a_go_net_http_cgi_handler_works_unchanged() {
    let server = Server::new().start();
    server.register_ok("items", CGI_HANDLER, json!({"response": "cgi"}));
    let answer = server.request(
        "POST",
        "/items/a/7?full=1",
        &[("Authorization", "Bearer secret")],
        b"{\"n\":1}",
    );
    answer.expect(201);
    assert_eq!(answer.header("Content-Type"), Some("application/json"));
    assert_eq!(answer.header("X-Handled-By"), Some("go-cgi"));
    assert!(answer.header("X-Request-Id").is_some());
    assert!(answer.header("Server-Timing").is_some());
    let body = answer.json();
    assert_eq!(body["method"], "POST");
    assert_eq!(body["path"], "/items/a/7");
    assert_eq!(body["query"], "full=1");
    assert_eq!(body["body"], "{\"n\":1}");
    assert_eq!(body["auth"], "", "Authorization never reaches a function");
}

#[test]
fn a_malformed_cgi_answer_is_502() {
    let server = Server::new().start();
    server.register_ok("plain", go::HELLO, json!({"response": "cgi"}));
    assert_error(&server.get("/plain"), 502, &["CGI"]);
}

#[test]
fn raw_mode_answers_stdout_as_text() {
    let server = Server::new().start();
    server.register_ok("txt", go::HELLO, json!({"response": "raw"}));
    let answer = server.get("/txt");
    answer.expect(200);
    assert_eq!(answer.text(), "Hello, World!\n");
    assert_eq!(
        answer.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
}

/// A CGI answer chosen by the query: `204` (with a body after the headers), `utf8` (a
/// Content-Type that is not ASCII), else an HTML page.
const CGI_EDGES: &str = r#"package main

import (
	"fmt"
	"os"
)

func main() {
	switch os.Getenv("QUERY_STRING") {
	case "204":
		fmt.Print("Status: 204 No Content\r\nContent-Type: text/plain\r\n\r\nbody-not-allowed")
	case "utf8":
		fmt.Print("Content-Type: text/html; charset=\u00fcn\u00efcode\r\n\r\nx")
	default:
		fmt.Print("Content-Type: text/html\r\n\r\n<b>hi</b>")
	}
}
"#;

#[test]
fn cgi_answers_follow_http_and_are_never_sniffed() {
    let server = Server::new().start();
    server.register_ok("edges", CGI_EDGES, json!({"response": "cgi"}));
    let page = server.get("/edges");
    page.expect(200);
    assert_eq!(page.header("X-Content-Type-Options"), Some("nosniff"));
    assert_eq!(page.header("Content-Type"), Some("text/html"));
    let empty = server.get("/edges?204");
    empty.expect(204);
    assert!(empty.body.is_empty(), "{}", empty.text());
    assert!(
        empty.header("Content-Length").is_none_or(|l| l == "0"),
        "Content-Length {:?}",
        empty.header("Content-Length")
    );
    // Never dropped silently: a header that cannot be sent is the function's error.
    crate::harness::assert_error(&server.get("/edges?utf8"), 502, &["not ASCII"]);
    // An encoded slash in a sub-path could not be told from a real one.
    crate::harness::assert_error(&server.get("/edges/a%2Fb"), 400, &["%2F"]);
    // Nor may control characters reach PATH_INFO.
    for path in ["/edges/a%0Ab/c", "/edges/a%0Db", "/edges/%1B[31m"] {
        crate::harness::assert_error(&server.get(path), 400, &["control characters"]);
    }
}

#[test]
fn a_json_answer_is_bounded_by_max_output_after_escaping() {
    let server = Server::new().arg("--max-output").arg("2MiB").start();
    server.register_ok("echo", go::ECHO, json!({}));
    // 1 MiB of control bytes: 6 MiB once each is \u0001.
    let refused = server.post("/echo", vec![1u8; 1 << 20]);
    assert_error(&refused, 502, &["as JSON", "--max-output"]);
    let plain = server.post("/echo", vec![b'a'; 1 << 20]);
    assert_eq!(plain.message().len(), 1 << 20);
}
