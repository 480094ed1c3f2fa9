//! What makes many registrations cheap: identical source is compiled once and shared by
//! every version that uses it (content-addressed builds under `cache/builds/`), and each
//! change is a journal append beside `registry.json`, replayed at the next start.

use crate::harness::server::registration_body;
use crate::harness::{go, http, Server};
use serde_json::json;
use std::os::unix::fs::MetadataExt;

#[test]
fn identical_source_under_several_names_is_built_once() {
    let mut server = Server::new().start();
    server.register("one", go::HELLO, json!({})).expect(201);
    server.register("two", go::HELLO, json!({})).expect(201);
    assert_eq!(server.go_builds(), 1, "the same source was built again");
    for name in ["one", "two"] {
        assert_eq!(server.get(&format!("/{name}")).message(), "Hello, World!\n");
    }
    let data = server.data_dir().to_path_buf();
    let one = std::fs::metadata(server.version_file("one", 1, "executable")).expect("one's");
    let two = std::fs::metadata(server.version_file("two", 1, "executable")).expect("two's");
    assert!(one.is_file() && two.is_file());
    assert_eq!(one.ino(), two.ino(), "the versions should share one build");

    // New source registered by several clients at once is still built once.
    let port = server.port();
    let source = go::say("together");
    let clients: Vec<_> = (0..3)
        .map(|i| {
            let body = registration_body(&format!("t{i}"), &source, json!({})).to_string();
            std::thread::spawn(move || {
                http::request(
                    port,
                    "PUT",
                    "/register",
                    &[],
                    http::Body::Fixed(body.as_bytes()),
                )
                .expect("an answer")
                .status
            })
        })
        .collect();
    for client in clients {
        assert_eq!(client.join().expect("client"), 201);
    }
    assert_eq!(
        server.go_builds(),
        2,
        "concurrent registrations built twice"
    );

    // Deleting one user of a build leaves the others theirs, across a restart too.
    server.delete("/functions/one").expect(204);
    assert!(!data.join("plugins/one").exists());
    assert_eq!(server.get("/two").message(), "Hello, World!\n");
    server.restart();
    assert_eq!(server.get("/two").message(), "Hello, World!\n");
    assert_eq!(server.get("/t2").message(), "together\n");
    assert_eq!(server.go_builds(), 2, "the restart compiled");
}

#[test]
fn a_restart_after_a_crash_replays_the_journal() {
    let mut server = Server::new().start();
    for i in 0..6 {
        server.register_ok(&format!("f{i}"), &go::say(&format!("f{i}")), json!({}));
    }
    server.register_ok("f0", &go::say("f0 again"), json!({}));
    server.delete("/functions/f5").expect(204);
    let journal = server.data_dir().join("registry/registry.journal");
    let records = std::fs::read_to_string(&journal).expect("journal");
    assert_eq!(
        records.lines().count(),
        8,
        "one record per change:\n{records}"
    );

    // A crash, with the last append cut short.
    server.kill9();
    let mut torn = std::fs::read(&journal).expect("journal");
    torn.extend_from_slice(br#"{"put":{"name":"half","#);
    std::fs::write(&journal, torn).expect("tear the journal");
    server.restart();

    assert_eq!(
        server.registry_names(),
        vec!["f0", "f1", "f2", "f3", "f4"],
        "after the restart"
    );
    assert_eq!(server.metadata("f0")["version"], 2);
    assert_eq!(server.get("/f0").message(), "f0 again\n");
    for i in 1..5 {
        assert_eq!(server.get(&format!("/f{i}")).message(), format!("f{i}\n"));
    }
    server.get("/functions/f5").expect(404);
    server.get("/functions/half").expect(404);
    // The start folded the journal into registry.json.
    assert_eq!(std::fs::metadata(&journal).expect("journal").len(), 0);
    let listed = server.registry()["functions"]
        .as_array()
        .map_or(0, |functions| functions.len());
    assert_eq!(listed, 5, "registry.json after the restart");
}
