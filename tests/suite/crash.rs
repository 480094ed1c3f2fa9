//! Crash safety: SIGKILL at arbitrary moments while registrations, deletions, rollbacks and
//! cron runs go on; after each restart the registry parses, every acknowledged change is
//! there (an unacknowledged one may or may not be), every function answers with exactly the
//! code of its current version (so no half-written executable ever runs), and the run
//! history is readable.

use crate::harness::server::registration_body;
use crate::harness::{go, http, Server};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a name should look like after a restart.
#[derive(Clone, Debug, PartialEq)]
enum State {
    Absent,
    /// Registered; its current version prints this.
    Serving(String),
}

#[derive(Default)]
struct Ledger {
    /// The last acknowledged state of each name.
    acked: HashMap<String, State>,
    /// A change sent and not answered when the server died: it may have happened.
    pending: HashMap<String, State>,
    /// Output of each version number of each name, to follow rollbacks.
    outputs: HashMap<(String, u64), String>,
}

fn step(
    port: u16,
    ledger: &Mutex<Ledger>,
    name: &str,
    round: usize,
    op: usize,
    crashed: &AtomicBool,
) -> bool {
    let current = ledger
        .lock()
        .unwrap()
        .acked
        .get(name)
        .cloned()
        .unwrap_or(State::Absent);
    let (method, path, body, next) = match (op % 4, &current) {
        (0 | 1, _) | (_, State::Absent) => {
            let text = format!("{name} r{round} op{op}");
            let body = registration_body(name, &go::say(&text), json!({})).to_string();
            (
                "PUT",
                "/register".to_string(),
                body,
                State::Serving(format!("{text}\n")),
            )
        }
        (2, State::Serving(_)) => (
            "DELETE",
            format!("/functions/{name}"),
            String::new(),
            State::Absent,
        ),
        _ => {
            // Roll back to version 1 if it is still kept.
            let out = ledger
                .lock()
                .unwrap()
                .outputs
                .get(&(name.to_string(), 1))
                .cloned();
            match out {
                Some(out) => (
                    "POST",
                    format!("/functions/{name}/rollback"),
                    r#"{"version":1}"#.to_string(),
                    State::Serving(out),
                ),
                None => return true,
            }
        }
    };
    ledger
        .lock()
        .unwrap()
        .pending
        .insert(name.to_string(), next.clone());
    match http::request(port, method, &path, &[], http::Body::Fixed(body.as_bytes())) {
        Ok(answer) if answer.status < 300 => {
            let mut ledger = ledger.lock().unwrap();
            ledger.pending.remove(name);
            if method == "PUT" {
                let version = answer.json()["version"].as_u64().unwrap_or(0);
                if version == 1 {
                    // A new life of the name: forget outputs of an earlier one.
                    ledger.outputs.retain(|(n, _), _| n != name);
                }
                if let State::Serving(out) = &next {
                    ledger
                        .outputs
                        .insert((name.to_string(), version), out.clone());
                }
            }
            ledger.acked.insert(name.to_string(), next);
            true
        }
        Ok(answer) if answer.status == 404 && method == "POST" => {
            ledger.lock().unwrap().pending.remove(name);
            true
        }
        Ok(answer) => {
            assert!(
                crashed.load(Ordering::SeqCst),
                "{method} {path}: {} {}",
                answer.status,
                answer.text()
            );
            false
        }
        Err(_) => false, // the server died under this request
    }
}

#[test]
fn sigkill_at_any_moment_loses_nothing_acknowledged() {
    let mut server = Server::new().start();
    let out = server.io_path("ticks.txt");
    server.register_ok(
        "ticker",
        &go::appender(0),
        json!({"trigger": "@every 1s", "env": {"OUT": out.display().to_string()}}),
    );
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    for round in 0..3 {
        let crashed = Arc::new(AtomicBool::new(false));
        let port = server.port();
        let workers: Vec<_> = (0..3)
            .map(|worker| {
                let ledger = ledger.clone();
                let crashed = crashed.clone();
                std::thread::spawn(move || {
                    for op in 0..1000 {
                        let name = format!("c{worker}-{}", op % 2);
                        if crashed.load(Ordering::SeqCst)
                            || !step(port, &ledger, &name, round, op + worker, &crashed)
                        {
                            return;
                        }
                    }
                })
            })
            .collect();
        // Let some work be acknowledged, then die at a moment that varies per round.
        std::thread::sleep(Duration::from_millis(700 + 450 * round as u64));
        crashed.store(true, Ordering::SeqCst);
        server.kill9();
        for worker in workers {
            worker.join().expect("a client thread panicked");
        }
        server.restart();
        let registry = server.registry_names(); // panics unless registry.json parses
        let mut ledger = ledger.lock().unwrap();
        let names: Vec<String> = ledger.acked.keys().cloned().collect();
        for name in names {
            let acked = ledger.acked[&name].clone();
            let pending = ledger.pending.get(&name).cloned();
            let found = if registry.contains(&name) {
                let answer = server.get(&format!("/{name}"));
                assert_eq!(answer.status, 200, "{name}: {}", answer.text());
                State::Serving(answer.message())
            } else {
                State::Absent
            };
            assert!(
                found == acked || Some(&found) == pending.as_ref(),
                "{name}: found {found:?}, acknowledged {acked:?}, pending {pending:?}"
            );
            // What is there now is what the next round builds on.
            if found != acked {
                if found == State::Absent {
                    ledger.outputs.retain(|(n, _), _| *n != name);
                }
                ledger.acked.insert(name.clone(), found);
            }
            ledger.pending.remove(&name);
        }
        assert!(registry.contains(&"ticker".to_string()));
        server.get("/functions/ticker/runs?limit=100").expect(200);
    }
}
