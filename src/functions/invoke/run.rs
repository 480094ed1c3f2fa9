//! The bookkeeping of one run, written once for one-shot and warm runs alike: its history
//! record from the start and the in-flight gauge, then at its end the run log line, the
//! metrics, the record's outcome and the answer's `Server-Timing`, whether the function ran,
//! failed, or could not be started. Starts nothing and knows nothing of how a function runs.

use super::Trigger;
use crate::error::ApiError;
use crate::functions::app::App;
use crate::history::{Outcome, RunStatus};
use crate::metrics::InFlight;
use crate::reply::Reply;
use std::time::{Duration, Instant};

/// A run under way.
pub(crate) struct Run<'a> {
    app: &'a App,
    function: &'a str,
    version: u32,
    trigger: Trigger,
    request_id: &'a str,
    /// Said in the log line: a warm process served it.
    warm: bool,
    in_flight: InFlight<'a>,
    started: Instant,
}

/// How a run ended, for its record.
pub(crate) struct Ended<'a> {
    pub status: RunStatus,
    pub exit_code: Option<i32>,
    /// What the log line says after `exit=`: a code, a signal, `killed: timeout`, `none`.
    pub exit: String,
    /// How long the function ran; None: since the run began.
    pub duration: Option<Duration>,
    pub stdout: &'a [u8],
    pub stderr: &'a [u8],
}

impl<'a> Run<'a> {
    /// Records the run as `running` and counts it in flight.
    pub fn begin(
        app: &'a App,
        function: &'a str,
        version: u32,
        trigger: Trigger,
        request_id: &'a str,
        warm: bool,
    ) -> Run<'a> {
        app.history
            .begin(function, request_id, trigger.as_str(), version);
        Run {
            app,
            function,
            version,
            trigger,
            request_id,
            warm,
            in_flight: app.metrics.run_started(),
            started: Instant::now(),
        }
    }

    /// Logs, counts and records how the run ended, and turns `outcome` into the answer,
    /// which says how long the function ran.
    pub fn end(self, ended: Ended<'_>, outcome: Result<Reply, ApiError>) -> Reply {
        let duration = ended.duration.unwrap_or_else(|| self.started.elapsed());
        let exec_ms = duration.as_secs_f64() * 1000.0;
        let trigger = self.trigger.as_str();
        log::info!(
            "run {} trigger={trigger} version={} status={} exit={} {exec_ms:.1}ms{}",
            self.function,
            self.version,
            ended.status.as_str(),
            ended.exit,
            if self.warm { " (warm)" } else { "" }
        );
        drop(self.in_flight);
        self.app
            .metrics
            .run_finished(self.function, trigger, ended.status.as_str(), duration);
        self.app.history.finish(
            self.function,
            self.request_id,
            Outcome {
                status: ended.status,
                exit_code: ended.exit_code,
                duration_ms: exec_ms,
                stdout: ended.stdout,
                stderr: ended.stderr,
            },
        );
        let reply = outcome.unwrap_or_else(|error| Reply::from_error(&error));
        reply.with_header("Server-Timing", format!("exec;dur={exec_ms:.1}"))
    }

    /// Ends a run whose function could not be started: an error, its message as stderr.
    pub fn refused(self, error: ApiError) -> Reply {
        let message = error.to_string();
        log::warn!("run {} could not start: {message}", self.function);
        let ended = Ended {
            status: RunStatus::Error,
            exit_code: None,
            exit: "none".into(),
            duration: None,
            stdout: b"",
            stderr: message.as_bytes(),
        };
        self.end(ended, Err(error))
    }
}
