//! Counters, gauges and histograms of what the server does, rendered in the Prometheus text
//! exposition format 0.0.4 for `GET /metrics`. Recording is a short lock on a small map,
//! never I/O.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Upper bounds (seconds) of the run duration buckets.
const RUN_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Upper bounds (seconds) of the cron lateness buckets.
const LATENESS_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];
/// Upper bounds (seconds) of the compile duration buckets.
const COMPILE_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

#[derive(Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, seconds: f64) {
        for (bound, count) in self.bounds.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Default)]
struct Series {
    invocations: BTreeMap<(String, &'static str, &'static str), u64>,
    run_durations: BTreeMap<String, Histogram>,
    compilations: BTreeMap<&'static str, u64>,
    compile_durations: Option<Histogram>,
    cron_fires: BTreeMap<(String, &'static str), u64>,
    cron_lateness: BTreeMap<&'static str, Histogram>,
}

/// Everything `/metrics` shows.
#[derive(Default)]
pub struct Metrics {
    series: Mutex<Series>,
    inflight: AtomicI64,
}

/// Counts a run as in flight until dropped.
pub struct InFlight<'a>(&'a AtomicI64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Metrics {
    pub fn run_started(&self) -> InFlight<'_> {
        self.inflight.fetch_add(1, Ordering::SeqCst);
        InFlight(&self.inflight)
    }

    pub fn run_finished(
        &self,
        function: &str,
        trigger: &'static str,
        status: &'static str,
        duration: Duration,
    ) {
        let mut series = self.lock();
        *series
            .invocations
            .entry((function.to_string(), trigger, status))
            .or_default() += 1;
        series
            .run_durations
            .entry(function.to_string())
            .or_insert_with(|| Histogram::new(RUN_BUCKETS))
            .observe(duration.as_secs_f64());
    }

    pub fn compiled(&self, ok: bool, duration: Duration) {
        let mut series = self.lock();
        *series
            .compilations
            .entry(if ok { "ok" } else { "error" })
            .or_default() += 1;
        series
            .compile_durations
            .get_or_insert_with(|| Histogram::new(COMPILE_BUCKETS))
            .observe(duration.as_secs_f64());
    }

    /// `outcome` is `started` or `skipped`.
    pub fn cron_fire(&self, function: &str, outcome: &'static str) {
        *self
            .lock()
            .cron_fires
            .entry((function.to_string(), outcome))
            .or_default() += 1;
    }

    /// How late a cron fire was, from its due time to `stage`: `fired` (handed to a cron
    /// worker by the timing thread) or `started` (its run begun by a worker).
    pub fn cron_lateness(&self, stage: &'static str, late: chrono::TimeDelta) {
        let seconds = late.num_microseconds().unwrap_or(i64::MAX).max(0) as f64 / 1e6;
        self.lock()
            .cron_lateness
            .entry(stage)
            .or_insert_with(|| Histogram::new(LATENESS_BUCKETS))
            .observe(seconds);
    }

    /// The exposition text; `functions` is the number registered now.
    pub fn render(&self, functions: usize) -> String {
        let series = self.lock();
        let mut out = String::new();
        header(
            &mut out,
            "golambda_invocations_total",
            "counter",
            "Function runs by trigger and outcome.",
        );
        for ((function, trigger, status), n) in &series.invocations {
            let _ = writeln!(
                out,
                "golambda_invocations_total{{function=\"{}\",trigger=\"{trigger}\",status=\"{status}\"}} {n}",
                escape(function)
            );
        }
        header(
            &mut out,
            "golambda_invocation_duration_seconds",
            "histogram",
            "How long function runs took.",
        );
        for (function, histogram) in &series.run_durations {
            let labels = format!("function=\"{}\"", escape(function));
            histogram.render(&mut out, "golambda_invocation_duration_seconds", &labels);
        }
        header(
            &mut out,
            "golambda_compilations_total",
            "counter",
            "Compilations by outcome.",
        );
        for status in ["ok", "error"] {
            let n = series.compilations.get(status).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "golambda_compilations_total{{status=\"{status}\"}} {n}"
            );
        }
        header(
            &mut out,
            "golambda_compile_duration_seconds",
            "histogram",
            "How long compilations took.",
        );
        series
            .compile_durations
            .clone()
            .unwrap_or_else(|| Histogram::new(COMPILE_BUCKETS))
            .render(&mut out, "golambda_compile_duration_seconds", "");
        header(
            &mut out,
            "golambda_cron_fires_total",
            "counter",
            "Cron fires, started or skipped because the previous run was still going.",
        );
        for ((function, outcome), n) in &series.cron_fires {
            let _ = writeln!(
                out,
                "golambda_cron_fires_total{{function=\"{}\",outcome=\"{outcome}\"}} {n}",
                escape(function)
            );
        }
        header(
            &mut out,
            "golambda_cron_lateness_seconds",
            "histogram",
            "Time from a cron fire's due time to its dispatch (stage=fired) and to the start of its run (stage=started).",
        );
        for (stage, histogram) in &series.cron_lateness {
            let labels = format!("stage=\"{stage}\"");
            histogram.render(&mut out, "golambda_cron_lateness_seconds", &labels);
        }
        header(
            &mut out,
            "golambda_inflight_invocations",
            "gauge",
            "Function runs going on now.",
        );
        let _ = writeln!(
            out,
            "golambda_inflight_invocations {}",
            self.inflight.load(Ordering::SeqCst)
        );
        header(
            &mut out,
            "golambda_functions",
            "gauge",
            "Registered functions.",
        );
        let _ = writeln!(out, "golambda_functions {functions}");
        out
    }

    fn lock(&self) -> MutexGuard<'_, Series> {
        crate::sync::lock(&self.series)
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value as the format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series() {
        let metrics = Metrics::default();
        {
            let _running = metrics.run_started();
            assert!(metrics
                .render(0)
                .contains("golambda_inflight_invocations 1\n"));
        }
        metrics.run_finished("hello", "http", "ok", Duration::from_millis(3));
        metrics.run_finished("hello", "http", "ok", Duration::from_millis(700));
        metrics.compiled(true, Duration::from_millis(300));
        metrics.cron_fire("tick", "skipped");
        let text = metrics.render(2);
        for line in [
            "golambda_invocations_total{function=\"hello\",trigger=\"http\",status=\"ok\"} 2",
            "golambda_invocation_duration_seconds_bucket{function=\"hello\",le=\"0.005\"} 1",
            "golambda_invocation_duration_seconds_bucket{function=\"hello\",le=\"1\"} 2",
            "golambda_invocation_duration_seconds_bucket{function=\"hello\",le=\"+Inf\"} 2",
            "golambda_invocation_duration_seconds_count{function=\"hello\"} 2",
            "golambda_compilations_total{status=\"ok\"} 1",
            "golambda_compilations_total{status=\"error\"} 0",
            "golambda_compile_duration_seconds_bucket{le=\"0.5\"} 1",
            "golambda_compile_duration_seconds_count 1",
            "golambda_cron_fires_total{function=\"tick\",outcome=\"skipped\"} 1",
            "golambda_inflight_invocations 0",
            "golambda_functions 2",
            "# TYPE golambda_invocation_duration_seconds histogram",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
