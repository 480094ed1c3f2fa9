//! One invocation of a function, whatever triggered it: takes hold of the version to run
//! when the request resolves it ([`hold`]: its settings, environment, secrets and opened
//! executable, so what is registered, pruned or deleted meanwhile changes nothing of it),
//! builds the environment a function sees (contract section 5: CGI/1.1 meta-variables and
//! the GOLAMBDA_* ones), runs it, turns how it ended into an answer, and logs the outcome.
//! Holds no lock while the function runs.

pub(crate) mod cgi;
pub(crate) mod run;
pub(crate) mod warm;

use crate::error::ApiError;
use crate::functions::app::App;
use crate::history::RunStatus;
use crate::platform::{self, Limits, Sandbox};
use crate::registry::{Function, ResponseMode, Version};
use crate::reply::Reply;
use crate::runner::{self, Ending, RunSpec};
use crate::runtimes::{Artifact, Kind, Runtime};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Open files a run's processes may each hold.
pub(crate) const OPEN_FILES: u64 = 1024;
/// Largest file a run may write.
pub(crate) const FILE_SIZE: u64 = 1 << 30;
/// Processes a run may have at once (enforced by the job on Windows, by the per-run user's
/// process count on Unix).
pub(crate) const PROCESSES: u64 = 128;

/// Longest header value passed to a function (the kernel refuses larger variables).
const MAX_HEADER_VALUE: usize = 32 * 1024;

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Http,
    Cron,
    Manual,
    Async,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Http => "http",
            Trigger::Cron => "cron",
            Trigger::Manual => "manual",
            Trigger::Async => "async",
        }
    }
}

/// The HTTP request behind a run, as CGI describes it.
#[derive(Debug, Default)]
pub struct CgiRequest {
    pub method: String,
    pub path_info: String,
    pub query: String,
    pub protocol: String,
    pub remote_addr: String,
    pub remote_port: String,
    pub server_name: String,
    pub server_port: String,
    /// Header names as received, with their values.
    pub headers: Vec<(String, String)>,
}

/// Everything needed to run a function once.
pub struct Call {
    pub trigger: Trigger,
    pub request_id: String,
    pub body: Vec<u8>,
    /// None for cron fires, which have no request.
    pub request: Option<CgiRequest>,
}

/// One registered version of a function, all of its parts, as they were when a request
/// resolved it: a run of it is a run of exactly this version.
pub struct Held {
    pub function: Arc<Function>,
    pub version: Version,
    /// [`function_env`], its secrets read when the version was resolved.
    pub env: Vec<(String, String)>,
    /// The executable, opened when the version was resolved (see [`platform::open_program`]);
    /// for an interpreted runtime, its tree (see [`platform::open_tree`]).
    pub program: Option<Arc<std::fs::File>>,
}

/// Takes hold of the version a request runs: the current one, or the kept `version` when
/// one is named. Its executable is opened and its secrets are read now, so a version
/// pruned, or a function deleted and registered anew, while the request waits (its body
/// still arriving, a queue) runs as it was. A version pruned between the lookup and the
/// opening is looked up again.
pub fn hold(app: &App, function: Arc<Function>, version: Option<u32>) -> Result<Held, ApiError> {
    let mut function = function;
    let mut tries = 0;
    loop {
        let chosen = match version {
            None => function.current_version(),
            Some(number) => function.versions.iter().find(|v| v.number == number),
        }
        .ok_or_else(|| ApiError::VersionUnknown {
            name: function.name.clone(),
            version: version.unwrap_or(function.current),
        })?;
        if chosen.settings.response == ResponseMode::Fcgi {
            // A warm process is started from its version's parts (see `parts`) and one
            // already running serves without them: nothing to take per request.
            return Ok(Held {
                version: chosen.clone(),
                env: Vec::new(),
                program: None,
                function,
            });
        }
        match parts(app, &function, chosen) {
            Ok((env, program)) => {
                return Ok(Held {
                    version: chosen.clone(),
                    env,
                    program,
                    function,
                })
            }
            Err(Parts::Gone(err)) if tries < 3 => {
                tries += 1;
                // Pruned or deleted a moment ago: what is registered now decides.
                let number = chosen.number;
                let now =
                    registered_now(app, &function).ok_or_else(|| ApiError::FunctionUnknown {
                        name: function.name.clone(),
                    })?;
                if now.versions.iter().any(|v| v.number == number) {
                    return Err(ApiError::Internal {
                        context: format!("the executable of version {number} is missing: {err}"),
                    });
                }
                function = now;
            }
            Err(Parts::Gone(err)) => {
                return Err(ApiError::Internal {
                    context: format!("cannot open the function's executable: {err}"),
                })
            }
            Err(Parts::Failed(error)) => return Err(error),
        }
    }
}

/// Environment variables, in order.
pub(crate) type Env = Vec<(String, String)>;

/// `function` as it is registered now, unless it was deleted since (a function registered
/// anew under its name is another one: another generation).
fn registered_now(app: &App, function: &Function) -> Option<Arc<Function>> {
    app.registry
        .get(&function.name)
        .filter(|now| now.generation == function.generation)
}

/// Why a version's parts could not be taken.
pub(crate) enum Parts {
    /// The executable is not there (the version was pruned or deleted).
    Gone(std::io::Error),
    Failed(ApiError),
}

/// The environment (secrets included) and the opened executable of `version`. The secrets
/// are read first: a version's files are removed executable first, so when its executable
/// still opens, its secrets were still in place when they were read.
pub(crate) fn parts(
    app: &App,
    function: &Function,
    version: &Version,
) -> Result<(Env, Option<Arc<std::fs::File>>), Parts> {
    let env = function_env(app, function, version).map_err(Parts::Failed)?;
    let path = app.registry.data().resolve(&version.executable);
    let opened = match kind_of(version).map_err(Parts::Failed)?.artifact() {
        Artifact::Executable => platform::open_program(&path),
        Artifact::Tree => platform::open_tree(&path),
    };
    match opened {
        Ok(program) => Ok((env, program.map(Arc::new))),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Err(Parts::Gone(err)),
        Err(err) => Err(Parts::Failed(ApiError::Internal {
            context: format!("cannot open the function's executable: {err}"),
        })),
    }
}

/// The runtime `version` names (fixed facts only: no toolchain is looked at).
fn kind_of(version: &Version) -> Result<Kind, ApiError> {
    Kind::of(&version.settings.runtime).ok_or_else(|| ApiError::Internal {
        context: format!("the runtime '{}' is unknown", version.settings.runtime),
    })
}

/// The runtime of `version`.
fn runtime_of(app: &App, version: &Version) -> Result<Arc<dyn Runtime>, ApiError> {
    app.runtimes
        .named(&version.settings.runtime)
        .ok_or_else(|| ApiError::Internal {
            context: format!("the runtime '{}' is unknown", version.settings.runtime),
        })
}

/// How a run of `version` starts: the program, its arguments, the executable or tree to
/// pass it, and variables the runtime adds. An interpreter that is gone (or was unusable
/// from the start) is a 503, and the function stays as it is.
fn launch_of(
    app: &App,
    version: &Version,
    opened: Option<Arc<std::fs::File>>,
    env: &mut Env,
) -> Result<Started, ApiError> {
    let path = app.registry.data().resolve(&version.executable);
    // An executable needs nothing of its toolchain to run.
    if kind_of(version)?.artifact() == Artifact::Executable {
        return Ok(Started {
            executable: path,
            args: Vec::new(),
            program: opened,
            tree: None,
        });
    }
    let runtime = runtime_of(app, version)?;
    let view = platform::tree_view(opened.as_deref(), &path);
    let launch = runtime.launch(&view, version.entry.as_deref().unwrap_or_default());
    let gone = runtime.unavailable().or_else(|| {
        (!launch.program.is_file())
            .then(|| format!("'{}' is not there any more", launch.program.display()))
    });
    if let Some(reason) = gone {
        return Err(crate::functions::register::toolchain_missing(
            &*runtime, reason,
        ));
    }
    env.extend(launch.env);
    Ok(Started {
        executable: launch.program,
        args: launch.args,
        program: None,
        tree: opened,
    })
}

/// What [`launch_of`] gives the runner.
struct Started {
    executable: std::path::PathBuf,
    args: Vec<std::ffi::OsString>,
    program: Option<Arc<std::fs::File>>,
    tree: Option<Arc<std::fs::File>>,
}

/// The confinement of one run of a version as `user`, one-shot or warm alike. A warm
/// process gets no CPU-time limit (`cpu_seconds: None`), which would add up over its life:
/// each request's timeout bounds it instead.
pub(crate) fn sandbox(
    app: &App,
    settings: &crate::registry::Settings,
    cpu_seconds: Option<u64>,
    user: Option<u32>,
) -> Sandbox {
    Sandbox {
        limits: Limits {
            memory: Some(settings.memory.unwrap_or(app.config.memory)),
            cpu_seconds,
            open_files: Some(OPEN_FILES),
            file_size: Some(FILE_SIZE),
            disk: Some(settings.disk.unwrap_or(app.config.disk)),
            processes: Some(PROCESSES),
            no_core_dumps: true,
        },
        user,
        no_network: !settings.network,
        exclusive_user: true,
    }
}

/// What every run of a version sees whatever its trigger: the function's own `env`, its
/// secrets (read only for versions that have some), `GOLAMBDA_FUNCTION` and
/// `GOLAMBDA_VERSION`.
pub(crate) fn function_env(
    app: &App,
    function: &Function,
    version: &crate::registry::Version,
) -> Result<Vec<(String, String)>, ApiError> {
    let settings = &version.settings;
    let mut env: Vec<(String, String)> = settings
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !settings.secrets.is_empty() {
        let secrets = app
            .secrets
            .read(&function.name, &function.generation, version.number)
            .map_err(|err| ApiError::Internal {
                context: format!("cannot read the function's secrets: {err}"),
            })?;
        env.extend(secrets);
    }
    env.push(("GOLAMBDA_FUNCTION".into(), function.name.clone()));
    env.push(("GOLAMBDA_VERSION".into(), version.number.to_string()));
    Ok(env)
}

/// How many runs of a function may go on at once: its `max_concurrency`, else
/// The length of `text` as a JSON string, quotes included, as serde_json writes it.
fn json_string_len(text: &str) -> usize {
    2 + text
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0x00..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// `--max-concurrency` (0: no limit).
pub(crate) fn concurrency_limit(app: &App, settings: &crate::registry::Settings) -> u32 {
    match settings.max_concurrency {
        0 => app.config.max_concurrency,
        own => own,
    }
}

/// A place among the function's simultaneous runs, or 429.
pub(crate) fn concurrency_place<'a>(
    app: &'a App,
    function: &Function,
    limit: u32,
) -> Result<crate::concurrency::Place<'a>, ApiError> {
    app.concurrency
        .enter(&function.name, limit)
        .ok_or(ApiError::TooManyRequests {
            reason: "the function is at its max_concurrency",
        })
}

/// Runs the version `held` and answers as its response mode says. A function deleted
/// since it was held answers 404 (its run would be recorded under a name it no longer has).
pub fn invoke(app: &App, held: Held, call: Call) -> Result<Reply, ApiError> {
    let Held {
        function,
        version,
        mut env,
        program,
    } = held;
    if registered_now(app, &function).is_none() {
        return Err(ApiError::FunctionUnknown {
            name: function.name.clone(),
        });
    }
    let (function, version) = (&*function, &version);
    if version.settings.response == ResponseMode::Fcgi {
        return warm::invoke(app, function, version, call);
    }
    let settings = &version.settings;
    if let Some(request) = &call.request {
        cgi_variables(&mut env, &function.name, request, call.body.len());
    }
    env.push(("GOLAMBDA_TRIGGER".into(), call.trigger.as_str().into()));
    env.push(("GOLAMBDA_REQUEST_ID".into(), call.request_id.clone()));
    let timeout = Duration::from_millis(settings.timeout_ms);
    let started = launch_of(app, version, program, &mut env)?;
    let _place = concurrency_place(app, function, concurrency_limit(app, settings))?;
    let run_user = match &app.users {
        None => None,
        Some(pool) => Some(match pool.take() {
            Ok(user) => user,
            // An idle warm process gives its user back.
            Err(_) if app.warm.give_way() => pool.take().map_err(ApiError::from)?,
            Err(exhausted) => return Err(exhausted.into()),
        }),
    };
    let request_id = call.request_id.clone();
    let run = run::Run::begin(
        app,
        &function.name,
        version.number,
        call.trigger,
        &request_id,
        false,
    );
    let finished = runner::run(
        RunSpec {
            executable: started.executable,
            args: started.args,
            tree: started.tree,
            env,
            stdin: call.body,
            timeout,
            max_output: app.config.max_output,
            run_id: call.request_id.clone(),
            sandbox: sandbox(
                app,
                settings,
                Some(timeout.as_secs() + 2),
                run_user.as_ref().map(|u| u.uid),
            ),
            program: started.program,
        },
        &app.work_dirs,
    );
    let finished = match finished {
        Ok(finished) => finished,
        Err(err) => {
            // Where a run starts from the path (Windows), a version pruned while the
            // request waited is gone: that is no server error.
            let pruned = err.kind() == std::io::ErrorKind::NotFound
                && !registered_now(app, function)
                    .is_some_and(|now| now.versions.iter().any(|v| v.number == version.number));
            let error = if pruned {
                ApiError::VersionUnknown {
                    name: function.name.clone(),
                    version: version.number,
                }
            } else {
                ApiError::Internal {
                    context: format!("cannot start the function's executable: {err}"),
                }
            };
            return Ok(run.refused(error));
        }
    };
    // A run just ended: an executable it kept busy may be removable now.
    app.trash.sweep();
    let lossy = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    // A failure's answer carries what the history keeps of the output, not all of it.
    let kept = |bytes: &[u8]| lossy(&bytes[..bytes.len().min(crate::history::KEPT_OUTPUT)]);
    let failed = |exit_code, signal| ApiError::FunctionFailed {
        exit_code,
        signal,
        stdout: kept(&finished.stdout),
        stderr: kept(&finished.stderr),
    };
    let outcome = match finished.ending {
        Ending::Exited(0) => match settings.response {
            ResponseMode::Json => {
                let message = lossy(&finished.stdout);
                // Escaping can make the answer six times the output: the cap bounds what
                // is sent, so the size is known before anything is encoded.
                let size = json_string_len(&message) + r#"{"message":}"#.len();
                if size as u64 > app.config.max_output {
                    Err(ApiError::AnswerTooLarge {
                        size,
                        limit: app.config.max_output,
                    })
                } else {
                    Ok(Reply::json(200, &json!({ "message": message })))
                }
            }
            ResponseMode::Raw => Ok(Reply::bytes(
                200,
                "text/plain; charset=utf-8",
                finished.stdout.clone(),
            )),
            ResponseMode::Cgi | ResponseMode::Fcgi => cgi::parse_response(&finished.stdout)
                .map_err(|reason| ApiError::CgiMalformed { reason }),
        },
        Ending::Exited(code) => Err(failed(Some(code), None)),
        Ending::Signalled(signal) => Err(failed(None, Some(platform::signal_name(signal)))),
        Ending::TimedOut => Err(ApiError::FunctionTimedOut { limit: timeout }),
        Ending::OutputTooLarge => Err(ApiError::OutputTooLarge {
            limit: app.config.max_output,
        }),
    };
    let (status, exit_code) = match (&outcome, finished.ending) {
        (Err(_), Ending::Exited(0)) => (RunStatus::Error, Some(0)),
        (_, Ending::Exited(0)) => (RunStatus::Ok, Some(0)),
        (_, Ending::Exited(code)) => (RunStatus::Error, Some(code)),
        (_, Ending::TimedOut) => (RunStatus::Timeout, None),
        (_, Ending::Signalled(_) | Ending::OutputTooLarge) => (RunStatus::Error, None),
    };
    let ended = run::Ended {
        status,
        exit_code,
        exit: match finished.ending {
            Ending::Exited(code) => code.to_string(),
            Ending::Signalled(signal) => platform::signal_name(signal),
            Ending::TimedOut => "killed: timeout".into(),
            Ending::OutputTooLarge => "killed: output limit".into(),
        },
        duration: Some(finished.duration),
        stdout: &finished.stdout,
        stderr: &finished.stderr,
    };
    Ok(run.end(ended, outcome))
}

/// Adds the RFC 3875 meta-variables of a request.
pub(crate) fn cgi_variables(
    env: &mut Vec<(String, String)>,
    name: &str,
    request: &CgiRequest,
    body_len: usize,
) {
    let mut set = |key: &str, value: &str| env.push((key.to_string(), value.to_string()));
    set("GATEWAY_INTERFACE", "CGI/1.1");
    set("REQUEST_METHOD", &request.method);
    set("SCRIPT_NAME", &format!("/{name}"));
    set("PATH_INFO", &request.path_info);
    set("QUERY_STRING", &request.query);
    set("SERVER_NAME", &request.server_name);
    set("SERVER_PORT", &request.server_port);
    set("SERVER_PROTOCOL", &request.protocol);
    set(
        "SERVER_SOFTWARE",
        concat!("golambda/", env!("CARGO_PKG_VERSION")),
    );
    set("REMOTE_ADDR", &request.remote_addr);
    set("REMOTE_PORT", &request.remote_port);
    set("CONTENT_LENGTH", &body_len.to_string());
    // Repeated headers are joined with ", " (RFC 3875 4.1.18), cookies with "; " (RFC 6265
    // 5.4); names that cannot be an environment variable, and values too long for one, are
    // left out. So are names with `_`, as Apache and nginx do: `X_User` and `X-User` would
    // both be HTTP_X_USER, and a client could speak for a proxy in front.
    let mut headers: Vec<(String, String)> = Vec::new();
    for (header, value) in &request.headers {
        let lower = header.to_ascii_lowercase();
        let usable = !lower.is_empty()
            && lower
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !value.contains('\0')
            && value.len() <= MAX_HEADER_VALUE;
        match lower.as_str() {
            _ if !usable => {}
            "content-type" => set("CONTENT_TYPE", value),
            // Credentials never reach a function; `Proxy` would set HTTP_PROXY (httpoxy);
            // the body length is CONTENT_LENGTH already.
            "authorization" | "proxy" | "content-length" => {}
            _ => {
                let key = format!("HTTP_{}", lower.to_ascii_uppercase().replace('-', "_"));
                match headers.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, joined)) => {
                        joined.push_str(if lower == "cookie" { "; " } else { ", " });
                        joined.push_str(value);
                    }
                    None => headers.push((key, value.clone())),
                }
            }
        }
    }
    env.extend(headers);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
        env.iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn meta_variables_follow_rfc_3875() {
        let request = CgiRequest {
            method: "POST".into(),
            path_info: "/a/b".into(),
            query: "x=1".into(),
            protocol: "HTTP/1.1".into(),
            remote_addr: "127.0.0.1".into(),
            remote_port: "5555".into(),
            server_name: "localhost".into(),
            server_port: "8080".into(),
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("Authorization".into(), "Bearer secret".into()),
                ("X-Trace-Id".into(), "abc".into()),
                ("Proxy".into(), "evil:1".into()),
                ("X-Dup".into(), "1".into()),
                ("x-dup".into(), "2".into()),
                ("Bad=Name".into(), "x".into()),
            ],
        };
        let mut env = Vec::new();
        cgi_variables(&mut env, "hello", &request, 12);
        assert_eq!(lookup(&env, "GATEWAY_INTERFACE"), Some("CGI/1.1"));
        assert_eq!(lookup(&env, "SCRIPT_NAME"), Some("/hello"));
        assert_eq!(lookup(&env, "PATH_INFO"), Some("/a/b"));
        assert_eq!(lookup(&env, "CONTENT_LENGTH"), Some("12"));
        assert_eq!(lookup(&env, "CONTENT_TYPE"), Some("application/json"));
        assert_eq!(lookup(&env, "HTTP_X_TRACE_ID"), Some("abc"));
        assert_eq!(lookup(&env, "HTTP_AUTHORIZATION"), None);
        assert_eq!(lookup(&env, "HTTP_PROXY"), None);
        assert_eq!(lookup(&env, "HTTP_CONTENT_TYPE"), None);
        assert_eq!(lookup(&env, "HTTP_X_DUP"), Some("1, 2"));
        assert!(env.iter().all(|(k, _)| !k.contains('=')));
    }
}

#[cfg(test)]
mod json_size_tests {
    #[test]
    fn the_length_of_a_json_string_is_known_before_it_is_written() {
        for text in [
            "",
            "plain",
            "quote \" back \\ slash",
            "\u{1}\u{1f}\n\t\r\u{8}\u{c}",
            "é€😀",
            "\u{7f}",
        ] {
            let written = serde_json::to_string(text).unwrap();
            assert_eq!(super::json_string_len(text), written.len(), "{text:?}");
        }
    }
}
