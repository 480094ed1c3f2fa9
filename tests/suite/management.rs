//! The management API: list, get, manual invoke, delete.

use crate::harness::{go, Server};
use serde_json::{json, Value};

const TAGGED_ECHO: &str = r#"package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	body, _ := io.ReadAll(os.Stdin)
	fmt.Printf("%s:%s:%s", os.Getenv("GOLAMBDA_FUNCTION"), os.Getenv("REQUEST_METHOD"), body)
}
"#;

#[test]
fn list_get_invoke_and_delete() {
    let server = Server::new().start();
    assert_eq!(server.get("/functions").expect(200).json(), json!([]));

    let beta = server.register_ok("beta", TAGGED_ECHO, json!({}));
    let alpha = server.register_ok("alpha", TAGGED_ECHO, json!({"env": {"K": "v"}}));

    let list = server.get("/functions").expect(200).json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["alpha", "beta"], "sorted by name");
    assert_eq!(list[0], alpha);
    assert_eq!(list[1], beta);
    assert_eq!(server.metadata("alpha"), alpha);

    // manual invocation, body on stdin
    assert_eq!(
        server.post("/functions/alpha/invoke", "ping").message(),
        "alpha:POST:ping"
    );

    // delete: 204, gone everywhere, files removed
    let deleted = server.delete("/functions/alpha");
    deleted.expect(204);
    assert!(
        deleted.body.is_empty(),
        "204 with a body: {:?}",
        deleted.text()
    );
    server.get("/functions/alpha").expect(404);
    server.get("/alpha").expect(404);
    server.post("/functions/alpha/invoke", "").expect(404);
    let list: Value = server.get("/functions").json();
    assert_eq!(list, json!([beta]));
    assert_eq!(server.get("/").json()["functions"], 1);
    assert!(
        !server.data_dir().join("user_functions/alpha").exists(),
        "source kept"
    );
    assert!(
        !server.data_dir().join("plugins/alpha").exists(),
        "executable kept"
    );
    assert_eq!(server.registry_names(), vec!["beta"]);
    assert_eq!(server.get("/beta").message(), "beta:GET:");

    // the name is free again
    let again = server.register("alpha", &go::say("reborn"), json!({}));
    again.expect(201);
    assert_eq!(again.json()["version"], 1);
    assert_eq!(server.get("/alpha").message(), "reborn\n");
}
