//! One request to a warm function: takes the function's concurrency place, finds or starts
//! its process, sends the request's CGI meta-variables and body over FastCGI, turns the CGI
//! answer into the reply, and records the run in the history, the metrics and the log
//! exactly as a one-shot run is recorded.

use super::answer::Answer;
use super::process::{Failure, Key, Spec};
use crate::app::App;
use crate::history::{Outcome, RunStatus};
use crate::http::{ApiError, Reply};
use crate::ids::new_id;
use crate::invocation::{self, Call, CgiRequest};
use crate::platform::{self, Limits, Sandbox};
use crate::registry::{Function, Version};
use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connections (so requests at once) of one process when the function sets no
/// `max_concurrency`.
const MAX_CONNECTIONS: usize = 64;

/// How a warm request ended, before it becomes a reply.
enum Served {
    Answered(Answer),
    Failed(Failure),
    /// No process to send it to.
    Refused(ApiError),
}

/// Runs `version` of `function` (an `fcgi` one) for `call`; `env` and `program` are what
/// [`invocation::hold`] took of it, for a process it has to start.
pub fn invoke(
    app: &App,
    function: &Function,
    version: &Version,
    env: Vec<(String, String)>,
    program: Option<Arc<File>>,
    call: Call,
) -> Result<Reply, ApiError> {
    let settings = &version.settings;
    let limit = invocation::concurrency_limit(app, settings);
    let _place = invocation::concurrency_place(app, function, limit)?;
    let trigger = call.trigger.as_str();
    app.history
        .begin(&function.name, &call.request_id, trigger, version.number);
    let in_flight = app.metrics.run_started();
    let started = Instant::now();
    let timeout = Duration::from_millis(settings.timeout_ms);
    let parts = (env, program);
    let served = serve(
        app,
        function,
        version,
        parts,
        &call,
        started + timeout,
        limit,
    );
    let duration = started.elapsed();
    let exec_ms = duration.as_secs_f64() * 1000.0;
    let none = Vec::new;
    let (outcome, status, exit_code, stdout, stderr) = match served {
        Served::Answered(answer) => {
            let exit_code = Some(i32::try_from(answer.app_status).unwrap_or(i32::MAX));
            match invocation::cgi::parse_response(&answer.stdout) {
                Ok(reply) => (
                    Ok(reply),
                    RunStatus::Ok,
                    exit_code,
                    answer.stdout,
                    answer.stderr,
                ),
                Err(reason) => (
                    Err(ApiError::CgiMalformed { reason }),
                    RunStatus::Error,
                    exit_code,
                    answer.stdout,
                    answer.stderr,
                ),
            }
        }
        Served::Failed(Failure::TimedOut) => (
            Err(ApiError::FunctionTimedOut { limit: timeout }),
            RunStatus::Timeout,
            None,
            none(),
            none(),
        ),
        Served::Failed(Failure::OutputTooLarge) => (
            Err(ApiError::OutputTooLarge {
                limit: app.config.max_output,
            }),
            RunStatus::Error,
            None,
            none(),
            none(),
        ),
        Served::Failed(Failure::Ended {
            exit_code,
            signal,
            stderr,
        }) => (
            // The process's stderr holds what it wrote while serving every caller: this one
            // is not shown it. It goes to the log and the run record, for the admin.
            Err(ApiError::FunctionFailed {
                exit_code,
                signal: signal.map(platform::signal_name),
                stdout: String::new(),
                stderr: {
                    log_tail(&function.name, &stderr);
                    WARM_STDERR_WITHHELD.into()
                },
            }),
            RunStatus::Error,
            exit_code,
            none(),
            stderr,
        ),
        Served::Failed(Failure::Broken(reason)) => (
            Err(ApiError::FastCgiBroken { reason }),
            RunStatus::Error,
            None,
            none(),
            none(),
        ),
        Served::Failed(Failure::Busy) => (
            Err(ApiError::TooManyRequests {
                reason: "every connection of the function's warm process stayed busy",
            }),
            RunStatus::Error,
            None,
            none(),
            none(),
        ),
        Served::Refused(error) => {
            let message = error.to_string().into_bytes();
            (Err(error), RunStatus::Error, None, none(), message)
        }
    };
    log::info!(
        "run {} trigger={trigger} version={} status={} exit={} {exec_ms:.1}ms (warm)",
        function.name,
        version.number,
        status.as_str(),
        match (&outcome, status, exit_code) {
            (_, RunStatus::Timeout, _) => "killed: timeout".to_string(),
            (Err(ApiError::OutputTooLarge { .. }), _, _) => "killed: output limit".to_string(),
            (
                Err(ApiError::FunctionFailed {
                    signal: Some(s), ..
                }),
                _,
                _,
            ) => s.clone(),
            (_, _, Some(code)) => code.to_string(),
            _ => "none".to_string(),
        }
    );
    drop(in_flight);
    app.metrics
        .run_finished(&function.name, trigger, status.as_str(), duration);
    app.history.finish(
        &function.name,
        &call.request_id,
        Outcome {
            status,
            exit_code,
            duration_ms: exec_ms,
            stdout: &stdout,
            stderr: &stderr,
        },
    );
    let reply = outcome.unwrap_or_else(|error| Reply::from_error(&error));
    Ok(reply.with_header("Server-Timing", format!("exec;dur={exec_ms:.1}")))
}

/// Finds or starts the process and has it serve the request before `deadline`.
fn serve(
    app: &App,
    function: &Function,
    version: &Version,
    (env, program): (Vec<(String, String)>, Option<Arc<File>>),
    call: &Call,
    deadline: Instant,
    limit: u32,
) -> Served {
    let key = Key {
        name: function.name.clone(),
        version: version.number,
        created: version.created_at,
    };
    let prepare = || spec(app, version, (env, program), &key, limit);
    let lease = match app.warm.acquire(&key, prepare) {
        Ok(lease) => lease,
        Err(error) => return Served::Refused(error),
    };
    let params = params(function, version, call);
    let process = &lease.process;
    match process.serve(&params, &call.body, deadline, app.config.max_output) {
        Ok(answer) => Served::Answered(answer),
        Err(failure) => {
            let why = match &failure {
                Failure::TimedOut => Some("timeout"),
                Failure::OutputTooLarge => Some("output limit"),
                _ => None,
            };
            if let Some(why) = why {
                // Wedged or flooding: the whole tree goes, and the next request gets a
                // fresh process.
                log::warn!(
                    "warm process {} of {} killed: {why}",
                    process.id,
                    function.name
                );
                process.kill();
            }
            Served::Failed(failure)
        }
    }
}

/// What a new process of `version` starts with: the one-shot run's sandbox (without the
/// CPU-time rlimit, which would add up over a long life: the per-request timeout bounds
/// each request instead) and environment, minus the per-request variables.
fn spec(
    app: &App,
    version: &Version,
    (env, program): (Vec<(String, String)>, Option<Arc<File>>),
    key: &Key,
    limit: u32,
) -> Result<Spec, ApiError> {
    let settings = &version.settings;
    let user = match &app.users {
        None => None,
        Some(pool) => Some(match pool.take_owned() {
            Ok(user) => user,
            Err(_) if app.warm.give_way() => pool.take_owned().map_err(ApiError::from)?,
            Err(exhausted) => return Err(exhausted.into()),
        }),
    };
    Ok(Spec {
        key: key.clone(),
        id: new_id(),
        executable: app.registry.data().resolve(&version.executable),
        program,
        env,
        sandbox: Sandbox {
            limits: Limits {
                memory: Some(settings.memory.unwrap_or(app.config.memory)),
                cpu_seconds: None,
                open_files: Some(invocation::OPEN_FILES),
                file_size: Some(invocation::FILE_SIZE),
                disk: Some(settings.disk.unwrap_or(app.config.disk)),
                processes: Some(invocation::PROCESSES),
                no_core_dumps: true,
            },
            user: user.as_ref().map(|u| u.uid),
            no_network: !settings.network,
            exclusive_user: true,
        },
        user_dir: match &user {
            Some(user) => {
                Some(
                    app.work_dirs
                        .of_user(user.uid)
                        .map_err(|err| ApiError::Internal {
                            context: format!("cannot make the run user's working directory: {err}"),
                        })?,
                )
            }
            None => None,
        },
        user,
        work_root: app.work_dirs.root().to_path_buf(),
        max_connections: match limit {
            0 => MAX_CONNECTIONS,
            own => usize::try_from(own).unwrap_or(MAX_CONNECTIONS),
        },
    })
}

/// The request's FastCGI parameters: the CGI meta-variables every mode passes, and the
/// per-request GOLAMBDA_* ones. A cron fire has no request: it is a `GET` of the function.
fn params(function: &Function, version: &Version, call: &Call) -> Vec<(String, String)> {
    let mut params = Vec::with_capacity(32);
    let cron_request;
    let request = match &call.request {
        Some(request) => request,
        None => {
            cron_request = CgiRequest {
                method: "GET".into(),
                protocol: "HTTP/1.1".into(),
                ..CgiRequest::default()
            };
            &cron_request
        }
    };
    invocation::cgi_variables(&mut params, &function.name, request, call.body.len());
    params.push(("GOLAMBDA_FUNCTION".into(), function.name.clone()));
    params.push(("GOLAMBDA_VERSION".into(), version.number.to_string()));
    params.push(("GOLAMBDA_TRIGGER".into(), call.trigger.as_str().into()));
    params.push(("GOLAMBDA_REQUEST_ID".into(), call.request_id.clone()));
    params
}

/// What a caller is told of a warm process's stderr when the process ended serving it.
const WARM_STDERR_WITHHELD: &str = "the warm process ended while serving this request; its \
stderr, which may hold what it wrote for other callers, is in the server log and in this \
run's record";

/// Logs the last lines of a warm process's stderr, escaped.
fn log_tail(function: &str, stderr: &[u8]) {
    let tail = &stderr[stderr.len().saturating_sub(4096)..];
    log::warn!(
        "warm process of {function} ended; the end of its stderr: {}",
        String::from_utf8_lossy(tail).escape_debug()
    );
}
