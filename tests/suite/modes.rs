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
