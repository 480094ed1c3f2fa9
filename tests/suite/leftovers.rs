//! What a run leaves behind is cleaned up without harm to the server: folders nested
//! deeper than any path (in the working directory and in the private `/tmp`), and a pool of
//! working directories that a killed server left full of them.

use crate::harness::http::Body;
use crate::harness::{eventually, Server};
use serde_json::json;
use std::time::Duration;

/// Nests `DEPTH` folders (one `mkdir` and `chdir` each) under the working directory, or
/// under `os.TempDir()` when `WHERE=tmp`, prints `nested` (and writes it to the file `READY`, if
/// set), then sleeps `HOLD_MS`.
const NESTER: &str = r#"package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

func main() {
	depth, _ := strconv.Atoi(os.Getenv("DEPTH"))
	if os.Getenv("WHERE") == "tmp" {
		if err := os.Chdir(os.TempDir()); err != nil {
			fmt.Println("chdir:", err)
			return
		}
	}
	for i := 0; i < depth; i++ {
		if err := syscall.Mkdir("a", 0o755); err != nil {
			fmt.Println("mkdir:", i, err)
			return
		}
		if err := syscall.Chdir("a"); err != nil {
			fmt.Println("chdir:", i, err)
			return
		}
	}
	fmt.Println("nested")
	if ready := os.Getenv("READY"); ready != "" {
		os.WriteFile(ready, []byte("nested"), 0o644)
	}
	hold, _ := strconv.Atoi(os.Getenv("HOLD_MS"))
	time.Sleep(time.Duration(hold) * time.Millisecond)
}
"#;

fn nester(server: &Server, name: &str, place: &str, hold_ms: u64) {
    let ready = server.io_path(&format!("{name}.ready"));
    server.register_ok(
        name,
        NESTER,
        json!({"env": {"DEPTH": "25000", "WHERE": place, "HOLD_MS": hold_ms.to_string(),
                       "READY": ready.display().to_string()},
               "timeout": "60s"}),
    );
}

#[test]
fn folders_nested_deeper_than_a_path_are_cleaned_up_run_after_run() {
    let server = Server::new().start();
    for place in ["cwd", "tmp"] {
        let name = format!("deep-{place}");
        nester(&server, &name, place, 0);
        // Twice: the second run gets the emptied directory (and scratch folder) back.
        for _ in 0..2 {
            assert_eq!(server.get(&format!("/{name}")).message(), "nested\n");
        }
        server.get("/").expect(200);
    }
    let runs = server.get("/functions/deep-tmp/runs").json();
    assert_eq!(runs.as_array().map(Vec::len), Some(2), "{runs}");
}

#[test]
fn a_pool_left_full_of_deep_folders_never_keeps_the_server_from_starting() {
    let mut server = Server::new().start();
    nester(&server, "deep", "cwd", 60_000);
    let port = server.port();
    let runner = std::thread::spawn(move || {
        crate::harness::http::request(port, "GET", "/deep", &[], Body::Fixed(b""))
    });
    // Killed while the run holds its nested directory: the pool is left as it was.
    let ready = server.io_path("deep.ready");
    assert!(eventually(Duration::from_secs(30), || ready.exists()));
    server.kill9();
    let _ = runner.join();
    server.restart();
    server.get("/").expect(200);
    server.register_ok("quick", crate::harness::go::HELLO, json!({}));
    assert_eq!(server.get("/quick").message(), "Hello, World!\n");
}

/// `MODE=leave`: leaves a file in every shared folder and a System V shared memory
/// segment. `MODE=look`: reports which of them it can see. Both print `uid=N` first.
const LEAVER: &str = r#"package main

import (
	"fmt"
	"os"
	"syscall"
)

var places = []string{"/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock"}

const key = 0x5eed

func main() {
	fmt.Printf("uid=%d\n", os.Getuid())
	for _, dir := range places {
		path := dir + "/left-by-a-run"
		if os.Getenv("MODE") == "leave" {
			if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
				fmt.Println("cannot write", path, err)
			}
		} else if _, err := os.Stat(path); err == nil {
			fmt.Println("FOUND", path)
		}
	}
	flags := 0
	if os.Getenv("MODE") == "leave" {
		flags = 0o1000 | 0o666 // IPC_CREAT
	}
	id, _, errno := syscall.Syscall(syscall.SYS_SHMGET, key, 64<<20, uintptr(flags))
	if os.Getenv("MODE") == "leave" && errno != 0 {
		fmt.Println("cannot make a segment", errno)
	}
	if os.Getenv("MODE") == "look" && errno == 0 {
		fmt.Println("FOUND segment", id)
	}
}
"#;

#[test]
fn nothing_a_run_leaves_in_a_shared_folder_or_ipc_reaches_a_later_run() {
    if !crate::harness::is_root() {
        return;
    }
    let server = Server::new().start();
    server.register_ok("leaver", LEAVER, json!({"env": {"MODE": "leave"}}));
    server.register_ok("looker", LEAVER, json!({"env": {"MODE": "look"}}));
    let left = server.get("/leaver").message();
    assert!(!left.contains("cannot"), "{left}");
    let seen = server.get("/looker").message();
    let uid = |text: &str| text.lines().next().map(str::to_string);
    // Run uids are handed out last returned first: the later run is of the same uid.
    assert_eq!(uid(&left), uid(&seen), "{left} / {seen}");
    assert!(!seen.contains("FOUND"), "a later run saw: {seen}");
    // Nothing reached the host either.
    for dir in ["/tmp", "/var/tmp", "/dev/shm", "/run/lock"] {
        let path = std::path::Path::new(dir).join("left-by-a-run");
        assert!(!path.exists(), "{} is on the host", path.display());
    }
}

/// Writes 1 MiB blocks into `$DIR/fill` (the working directory when `DIR` is empty) until
/// a write fails or `MAX_MIB` are written, then into `/tmp/fill` the same way; prints
/// `cwd=N tmp=M` (MiB written) and each error.
const FILLER: &str = r#"package main

import (
	"fmt"
	"os"
	"strconv"
)

func fill(path string, max int) int {
	f, err := os.Create(path)
	if err != nil {
		fmt.Println("create:", err)
		return 0
	}
	defer f.Close()
	block := make([]byte, 1<<20)
	for i := 0; i < max; i++ {
		if _, err := f.Write(block); err != nil {
			fmt.Println("write:", err)
			return i
		}
	}
	return max
}

func main() {
	max, _ := strconv.Atoi(os.Getenv("MAX_MIB"))
	cwd := fill("fill", max)
	tmp := fill("/tmp/fill", max)
	fmt.Printf("cwd=%d tmp=%d\n", cwd, tmp)
}
"#;

#[test]
fn what_a_run_writes_is_bounded_in_total() {
    if !crate::harness::is_root() {
        return;
    }
    let server = Server::new().arg("--disk").arg("24MiB").start();
    // The default from --disk, shared by the working directory and /tmp.
    server.register_ok("filler", FILLER, json!({"env": {"MAX_MIB": "16"}}));
    let answer = server.get("/filler").message();
    assert!(answer.contains("no space left"), "{answer}");
    let written = |answer: &str, key: &str| -> u64 {
        answer
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {answer}"))
    };
    let total = written(&answer, "cwd=") + written(&answer, "tmp=");
    assert!(
        (16..=24).contains(&total),
        "{total} MiB written under a 24 MiB bound: {answer}"
    );
    // A function's own bound, larger and smaller.
    let meta = server.register_ok(
        "filler",
        FILLER,
        json!({"env": {"MAX_MIB": "40"}, "disk": "64MiB"}),
    );
    assert_eq!(meta["disk"], 64 << 20);
    let answer = server.get("/filler").message();
    assert_eq!(written(&answer, "cwd="), 40, "{answer}");
    assert!(written(&answer, "tmp=") <= 24, "{answer}");
    server.register_ok(
        "filler",
        FILLER,
        json!({"env": {"MAX_MIB": "40"}, "disk": "8MiB"}),
    );
    let answer = server.get("/filler").message();
    assert!(
        written(&answer, "cwd=") + written(&answer, "tmp=") <= 8,
        "{answer}"
    );
    let refused = server.register("filler", FILLER, json!({"disk": "lots"}));
    crate::harness::assert_error(&refused, 400, &["disk"]);
}
