//! `GET /metrics`: the series the contract names, checked with the reference parser of the
//! Prometheus text format (Python's prometheus_client).

use crate::harness::{go, Server};
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};

/// Parses exposition text with prometheus_client; returns every sample as
/// `{"name", "labels", "value"}`.
fn parse_with_prometheus_client(text: &str) -> Vec<Value> {
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        samples.append({"family": family.name, "type": family.type, "name": s.name,
                        "labels": s.labels, "value": s.value})
print(json.dumps(samples))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("parser finished");
    assert!(
        output.status.success(),
        "prometheus_client refused the text: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice::<Value>(&output.stdout)
        .expect("json")
        .as_array()
        .expect("array")
        .clone()
}

fn sample(samples: &[Value], name: &str, labels: Value) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s["name"] == name
                && labels
                    .as_object()
                    .is_some_and(|want| want.iter().all(|(k, v)| s["labels"][k] == *v))
        })
        .and_then(|s| s["value"].as_f64())
}

#[test]
fn metrics_parse_and_count_what_happened() {
    let server = Server::new().start();
    server.register_ok("hello", go::HELLO, json!({}));
    server.register("broken", go::BROKEN, json!({})).expect(422);
    for _ in 0..3 {
        server.get("/hello").expect(200);
    }
    server.register_ok("failer", go::FAILER, json!({}));
    server.get("/failer?exit").expect(500);
    server.post("/functions/hello/invoke", "").expect(200);

    let answer = server.get("/metrics");
    answer.expect(200);
    assert!(answer
        .header("Content-Type")
        .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")));
    let samples = parse_with_prometheus_client(&answer.text());
    let count = |name, labels| sample(&samples, name, labels);
    assert_eq!(
        count(
            "golambda_invocations_total",
            json!({"function": "hello", "trigger": "http", "status": "ok"})
        ),
        Some(3.0)
    );
    assert_eq!(
        count(
            "golambda_invocations_total",
            json!({"function": "hello", "trigger": "manual", "status": "ok"})
        ),
        Some(1.0)
    );
    assert_eq!(
        count(
            "golambda_invocations_total",
            json!({"function": "failer", "trigger": "http", "status": "error"})
        ),
        Some(1.0)
    );
    assert_eq!(
        count(
            "golambda_invocation_duration_seconds_count",
            json!({"function": "hello"})
        ),
        Some(4.0)
    );
    assert_eq!(
        count(
            "golambda_invocation_duration_seconds_bucket",
            json!({"function": "hello", "le": "+Inf"})
        ),
        Some(4.0)
    );
    assert_eq!(
        count("golambda_compilations_total", json!({"status": "ok"})),
        Some(2.0)
    );
    assert_eq!(
        count("golambda_compilations_total", json!({"status": "error"})),
        Some(1.0)
    );
    assert_eq!(
        count("golambda_compile_duration_seconds_count", json!({})),
        Some(3.0)
    );
    assert_eq!(count("golambda_inflight_invocations", json!({})), Some(0.0));
    assert_eq!(count("golambda_functions", json!({})), Some(2.0));
    let types: Vec<(&str, &str)> = samples
        .iter()
        .filter_map(|s| Some((s["family"].as_str()?, s["type"].as_str()?)))
        .collect();
    assert!(types.contains(&("golambda_invocation_duration_seconds", "histogram")));
    assert!(types.contains(&("golambda_invocations", "counter")));
}

#[test]
fn cron_fires_are_counted() {
    let server = Server::new().start();
    server.register_ok(
        "ticker",
        &go::sleeper(2_500),
        json!({"trigger": "@every 1s", "timeout": "10s"}),
    );
    assert!(crate::harness::eventually(
        std::time::Duration::from_secs(20),
        || {
            let samples = parse_with_prometheus_client(&server.get("/metrics").text());
            let fires = |outcome| {
                sample(
                    &samples,
                    "golambda_cron_fires_total",
                    json!({"function": "ticker", "outcome": outcome}),
                )
                .unwrap_or(0.0)
            };
            fires("started") >= 1.0 && fires("skipped") >= 1.0
        }
    ));
    server.delete("/functions/ticker").expect(204);
}
