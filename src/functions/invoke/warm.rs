//! One request to a warm function: takes the function's concurrency place, finds or starts
//! its process, sends the request's CGI meta-variables and body over FastCGI, turns the CGI
//! answer into the reply, and records the run in the history, the metrics and the log
//! exactly as a one-shot run is recorded.

use crate::error::ApiError;
use crate::functions::app::App;
use crate::functions::invoke::{self as invocation, Call, CgiRequest};
use crate::history::RunStatus;
use crate::ids::new_id;
use crate::platform;
use crate::registry::{Function, Version};
use crate::reply::Reply;
use crate::warm::{Answer, Failure, Key, Spec};
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

/// Runs `version` of `function` (an `fcgi` one) for `call`, in a live process of that
/// version or in one started from the version's parts (see [`invocation::parts`]).
pub fn invoke(
    app: &App,
    function: &Function,
    version: &Version,
    call: Call,
) -> Result<Reply, ApiError> {
    let settings = &version.settings;
    let limit = invocation::concurrency_limit(app, settings);
    let _place = invocation::concurrency_place(app, function, limit)?;
    let run = invocation::run::Run::begin(
        app,
        &function.name,
        version.number,
        call.trigger,
        &call.request_id,
        true,
    );
    let started = Instant::now();
    let timeout = Duration::from_millis(settings.timeout_ms);
    let served = serve(app, function, version, &call, started + timeout, limit);
    let ended = |status, exit_code: Option<i32>, exit: &str| (status, exit_code, exit.to_string());
    let (outcome, (status, exit_code, exit), stdout, stderr) = match served {
        Served::Answered(answer) => {
            let exit_code = Some(i32::try_from(answer.app_status).unwrap_or(i32::MAX));
            let code = answer.app_status.to_string();
            match invocation::cgi::parse_response(&answer.stdout) {
                Ok(reply) => (
                    Ok(reply),
                    ended(RunStatus::Ok, exit_code, &code),
                    answer.stdout,
                    answer.stderr,
                ),
                Err(reason) => (
                    Err(ApiError::CgiMalformed { reason }),
                    ended(RunStatus::Error, exit_code, &code),
                    answer.stdout,
                    answer.stderr,
                ),
            }
        }
        Served::Failed(Failure::TimedOut) => (
            Err(ApiError::FunctionTimedOut { limit: timeout }),
            ended(RunStatus::Timeout, None, "killed: timeout"),
            Vec::new(),
            Vec::new(),
        ),
        Served::Failed(Failure::OutputTooLarge) => (
            Err(ApiError::OutputTooLarge {
                limit: app.config.max_output,
            }),
            ended(RunStatus::Error, None, "killed: output limit"),
            Vec::new(),
            Vec::new(),
        ),
        Served::Failed(Failure::Ended {
            exit_code,
            signal,
            stderr,
        }) => {
            let signal = signal.map(platform::signal_name);
            let exit = match (&signal, exit_code) {
                (Some(signal), _) => signal.clone(),
                (None, Some(code)) => code.to_string(),
                (None, None) => "none".into(),
            };
            // The process's stderr holds what it wrote while serving every caller: this
            // one is not shown it. It goes to the log and the run record, for the admin.
            log_tail(&function.name, &stderr);
            (
                Err(ApiError::FunctionFailed {
                    exit_code,
                    signal,
                    stdout: String::new(),
                    stderr: WARM_STDERR_WITHHELD.into(),
                }),
                ended(RunStatus::Error, exit_code, &exit),
                Vec::new(),
                stderr,
            )
        }
        Served::Failed(Failure::Broken(reason)) => (
            Err(ApiError::FastCgiBroken { reason }),
            ended(RunStatus::Error, None, "none"),
            Vec::new(),
            Vec::new(),
        ),
        Served::Failed(Failure::Busy) => (
            Err(ApiError::TooManyRequests {
                reason: "every connection of the function's warm process stayed busy",
            }),
            ended(RunStatus::Error, None, "none"),
            Vec::new(),
            Vec::new(),
        ),
        Served::Refused(error) => return Ok(run.refused(error)),
    };
    let ended = invocation::run::Ended {
        status,
        exit_code,
        exit,
        duration: None,
        stdout: &stdout,
        stderr: &stderr,
    };
    Ok(run.end(ended, outcome))
}

/// Finds or starts the process and has it serve the request before `deadline`.
fn serve(
    app: &App,
    function: &Function,
    version: &Version,
    call: &Call,
    deadline: Instant,
    limit: u32,
) -> Served {
    let key = Key {
        name: function.name.clone(),
        version: version.number,
        created: version.created_at,
    };
    let prepare = || spec(app, function, version, &key, limit);
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
    function: &Function,
    version: &Version,
    key: &Key,
    limit: u32,
) -> Result<Spec, ApiError> {
    let settings = &version.settings;
    let (env, program) = invocation::parts(app, function, version).map_err(|why| match why {
        // Pruned while the request waited, with no process of it left to serve it.
        invocation::Parts::Gone(_) => ApiError::VersionUnknown {
            name: function.name.clone(),
            version: version.number,
        },
        invocation::Parts::Failed(error) => error,
    })?;
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
        sandbox: invocation::sandbox(app, settings, None, user.as_ref().map(|u| u.uid)),
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
