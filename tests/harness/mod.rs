//! Test harness: a temp dir, a builder that starts the server binary, a tiny HTTP/1.1 client
//! and the Go programs the tests register. Nothing here asserts product behaviour except the
//! small `assert_error` helper, which checks the shape every error answer shares.

pub mod archives;
pub mod go;
pub mod http;
pub mod server;
pub mod tempdir;

pub use http::Response;
pub use server::Server;

use std::path::Path;
use std::time::{Duration, Instant};

/// Whether the tests run as root (then every run has a uid of its own, and more is tested).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts the contract's error shape: the status, a JSON object body with a non-empty
/// `"error"` string, and that the message mentions every word in `needles` (case-insensitive).
/// Returns the parsed body for further checks.
pub fn assert_error(response: &Response, status: u16, needles: &[&str]) -> serde_json::Value {
    assert_eq!(
        response.status,
        status,
        "{} {}: expected status {status}, got {}\nbody: {}",
        response.method,
        response.path,
        response.status,
        response.text()
    );
    let content_type = response.header("content-type").unwrap_or("");
    assert!(
        content_type.contains("json"),
        "{} {}: error answer should be JSON, Content-Type is {content_type:?}",
        response.method,
        response.path
    );
    let body = response.json();
    let message = body["error"].as_str().unwrap_or_else(|| {
        panic!(
            "{} {}: error body has no \"error\" string: {body}",
            response.method, response.path
        )
    });
    assert!(!message.trim().is_empty(), "empty error message: {body}");
    for needle in needles {
        assert!(
            message.to_lowercase().contains(&needle.to_lowercase()),
            "{} {}: error message should mention {needle:?}: {body}",
            response.method,
            response.path
        );
    }
    body
}

/// Whether the process `pid` no longer runs: /proc has no entry, or it is a zombie (dead,
/// waiting only to be reaped by whichever parent inherited it).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next())
                .unwrap_or("?");
            state == "Z" || state == "X"
        }
    }
}

/// Kills leftover processes when dropped, so a failing test does not leak `sleep 300`.
pub struct PidReaper(pub Vec<u32>);

impl Drop for PidReaper {
    fn drop(&mut self) {
        for pid in &self.0 {
            if !process_gone(*pid) {
                let _ = std::process::Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .status();
            }
        }
    }
}

/// Lists every file under `dir` (relative path and size), sorted: a cheap snapshot to prove
/// that an operation changed nothing on disk.
pub fn snapshot(dir: &Path) -> Vec<(String, u64)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if meta.is_dir() {
                out.push((format!("{rel}/"), 0));
                walk(root, &path, out);
            } else {
                out.push((rel, meta.len()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The hex SHA-256 of `data`, as the metadata's `sha256` field carries it.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
