//! Many requests at once: a full queue, and concurrent registrations.

use crate::harness::server::registration_body;
use crate::harness::{go, http, sha256_hex, Server};
use serde_json::{json, Value};
use std::sync::{Arc, Barrier};

#[test]
fn a_full_queue_answers_503_with_retry_after_and_every_request_gets_an_answer() {
    let server = Server::new()
        .arg("--workers")
        .arg("1")
        .arg("--max-queue")
        .arg("1")
        .start();
    server.register_ok("slow", &go::sleeper(1200), json!({}));

    let port = server.port();
    let clients = 6;
    let barrier = Arc::new(Barrier::new(clients));
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                http::request(port, "GET", "/slow", &[], http::Body::Fixed(b""))
            })
        })
        .collect();
    let answers: Vec<http::Response> = handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap()
                .expect("a request was dropped without an answer")
        })
        .collect();

    let ok = answers.iter().filter(|r| r.status == 200).count();
    let busy: Vec<&http::Response> = answers.iter().filter(|r| r.status == 503).collect();
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    assert_eq!(
        ok + busy.len(),
        clients,
        "only 200 and 503 expected: {statuses:?}"
    );
    assert!(ok >= 1, "no request was served: {statuses:?}");
    assert!(
        ok <= 2,
        "1 worker + 1 queue slot cannot take {ok} at once: {statuses:?}"
    );
    assert!(!busy.is_empty(), "no 503 from a full queue: {statuses:?}");
    for response in busy {
        crate::harness::assert_error(response, 503, &[]);
        let retry = response
            .header("retry-after")
            .expect("503 without Retry-After");
        assert!(retry.trim().parse::<u64>().is_ok(), "Retry-After {retry:?}");
    }
    for response in answers.iter().filter(|r| r.status == 200) {
        assert_eq!(response.message(), "woke\n");
    }
    // and it recovers
    assert_eq!(server.get("/slow").message(), "woke\n");
}

#[test]
fn concurrent_registrations_of_one_name_are_serialised() {
    let server = Server::new().start();
    let port = server.port();
    let sources = [go::say("first"), go::say("second")];
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = sources
        .iter()
        .cloned()
        .map(|source| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let body = registration_body("same", &source, json!({})).to_string();
                barrier.wait();
                let r = http::request(
                    port,
                    "PUT",
                    "/register",
                    &[],
                    http::Body::Fixed(body.as_bytes()),
                )
                .expect("registration answered");
                (source, r)
            })
        })
        .collect();
    let results: Vec<(String, http::Response)> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();

    let mut statuses: Vec<u16> = results.iter().map(|(_, r)| r.status).collect();
    statuses.sort();
    assert_eq!(
        statuses,
        vec![200, 201],
        "one creates, the other adds a version"
    );
    let mut by_version: Vec<(i64, String)> = results
        .iter()
        .map(|(source, r)| (r.json()["version"].as_i64().unwrap(), source.clone()))
        .collect();
    by_version.sort();
    assert_eq!(
        by_version.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
        vec![1, 2]
    );

    let last = &by_version[1].1;
    let meta: Value = server.metadata("same");
    assert_eq!(meta["version"], 2);
    assert_eq!(
        meta["sha256"],
        sha256_hex(last.as_bytes()),
        "current version is the last registered"
    );
    let expected = if last.contains("first") {
        "first\n"
    } else {
        "second\n"
    };
    assert_eq!(server.get("/same").message(), expected);
    for (version, source) in &by_version {
        let stored =
            std::fs::read_to_string(server.version_file("same", *version as u64, "source"))
                .unwrap_or_else(|e| panic!("v{version}.go: {e}"));
        assert_eq!(&stored, source, "v{version}.go holds the wrong source");
    }
}

#[test]
fn registrations_of_different_names_run_in_parallel() {
    let server = Server::new().start();
    let port = server.port();
    let names = ["delta", "alpha", "charlie", "bravo"];
    let barrier = Arc::new(Barrier::new(names.len()));
    let handles: Vec<_> = names
        .iter()
        .map(|name| {
            let barrier = Arc::clone(&barrier);
            let name = name.to_string();
            std::thread::spawn(move || {
                let body = registration_body(&name, &go::say(&name), json!({})).to_string();
                barrier.wait();
                http::request(
                    port,
                    "PUT",
                    "/register",
                    &[],
                    http::Body::Fixed(body.as_bytes()),
                )
                .expect("registration answered")
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap().expect(201);
    }
    for name in names {
        assert_eq!(
            server.get(&format!("/{name}")).message(),
            format!("{name}\n")
        );
    }
    let list = server.get("/functions").json();
    let listed: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec!["alpha", "bravo", "charlie", "delta"]);
    assert_eq!(server.get("/").json()["functions"], 4);
}
