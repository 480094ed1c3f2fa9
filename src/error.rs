//! Every error the API answers with: one variant per failure, carrying its context; all
//! sentences are written here, and each variant knows its status code and extra headers.
//! A leaf: the domain and the HTTP layer both use it; it imports neither.

use crate::units::format_duration;
use serde_json::{json, Map, Value};
use std::fmt;
use std::time::Duration;

#[derive(Debug)]
pub enum ApiError {
    /// The body is not JSON, or not a JSON object.
    BodyMalformed {
        reason: String,
    },
    /// A required field is absent.
    FieldMissing {
        field: &'static str,
    },
    /// A field has a value the contract does not allow.
    FieldInvalid {
        field: &'static str,
        reason: String,
    },
    /// A request refused before anything handles it.
    RequestMalformed {
        reason: &'static str,
    },
    /// A path the server will not pass on to a function.
    PathMalformed {
        reason: &'static str,
    },
    /// The request's framing could be read two ways (see `http::framing`).
    RequestAmbiguous {
        reason: String,
    },
    /// A path names no function.
    FunctionUnknown {
        name: String,
    },
    /// A version number that is not among the kept versions.
    /// A path that is not a file of the version.
    FileUnknown {
        name: String,
        path: String,
    },
    VersionUnknown {
        name: String,
        version: u32,
    },
    /// Pause or resume of a function that has no schedule.
    FunctionNotCron {
        name: String,
    },
    /// A run id that is not among a function's kept runs.
    RunUnknown {
        name: String,
        id: String,
    },
    /// Missing or wrong credentials.
    Unauthorized {
        reason: &'static str,
    },
    /// A rate limit or a concurrency limit was reached.
    TooManyRequests {
        reason: &'static str,
    },
    /// A request with more headers than anyone needs.
    TooManyHeaders {
        limit: usize,
    },
    /// A path names nothing at all.
    RouteUnknown {
        path: String,
    },
    /// The route exists but not for this method.
    MethodNotAllowed {
        allow: &'static str,
    },
    /// A cron function was called at `/{name}`.
    FunctionIsCron {
        name: String,
    },
    BodyTooLarge {
        limit: u64,
    },
    SourceTooLarge {
        limit: u64,
    },
    /// An archive over `--max-package`, or one that holds too many entries or unpacks to
    /// too much (413).
    PackageTooLarge {
        reason: String,
    },
    /// An archive that cannot be taken: an entry of it (named), or the archive itself (400).
    PackageRefused {
        entry: Option<String>,
        reason: String,
    },
    CompileRejected {
        details: String,
    },
    CompileTimedOut {
        limit: Duration,
    },
    /// The function exited non-zero or was killed by a signal.
    FunctionFailed {
        exit_code: Option<i32>,
        signal: Option<String>,
        stdout: String,
        stderr: String,
    },
    /// A `cgi` function's answer has no valid header block.
    CgiMalformed {
        reason: String,
    },
    /// A warm (`fcgi`) function broke the FastCGI protocol or dropped its connection.
    FastCgiBroken {
        reason: String,
    },
    /// The function wrote more than `--max-output`.
    OutputTooLarge {
        limit: u64,
    },
    /// A runtime's toolchain cannot be used here.
    ToolchainMissing {
        runtime: &'static str,
        tool: String,
        reason: String,
        /// What to install, or the flag to set.
        install: String,
    },
    QueueFull,
    /// Accepted async runs hold this many bytes of bodies (`--queue-bytes`) already.
    QueueBytesFull {
        limit: usize,
    },
    /// Every uid of `--run-uids` is held: by runs and warm processes, or (`stuck`) by
    /// processes that could not be killed yet.
    RunUsersExhausted {
        total: usize,
        stuck: usize,
    },
    ShuttingDown,
    FunctionTimedOut {
        limit: Duration,
    },
    /// A json-mode answer would be larger than `--max-output`.
    AnswerTooLarge {
        size: usize,
        limit: u64,
    },
    /// The server's disk (or its quota) is full.
    StorageFull {
        context: String,
    },
    /// Something on the server's side failed (files, spawning).
    Internal {
        context: String,
    },
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BodyMalformed { .. }
            | ApiError::FieldMissing { .. }
            | ApiError::FieldInvalid { .. }
            | ApiError::RequestAmbiguous { .. }
            | ApiError::PathMalformed { .. }
            | ApiError::RequestMalformed { .. }
            | ApiError::PackageRefused { .. } => 400,
            ApiError::Unauthorized { .. } => 401,
            ApiError::TooManyRequests { .. } => 429,
            ApiError::TooManyHeaders { .. } => 431,
            ApiError::FunctionUnknown { .. }
            | ApiError::VersionUnknown { .. }
            | ApiError::RunUnknown { .. }
            | ApiError::RouteUnknown { .. }
            | ApiError::FileUnknown { .. } => 404,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::FunctionIsCron { .. } | ApiError::FunctionNotCron { .. } => 409,
            ApiError::BodyTooLarge { .. }
            | ApiError::SourceTooLarge { .. }
            | ApiError::PackageTooLarge { .. } => 413,
            ApiError::CompileRejected { .. } | ApiError::CompileTimedOut { .. } => 422,
            ApiError::FunctionFailed { .. } | ApiError::Internal { .. } => 500,
            ApiError::OutputTooLarge { .. }
            | ApiError::AnswerTooLarge { .. }
            | ApiError::CgiMalformed { .. }
            | ApiError::FastCgiBroken { .. } => 502,
            ApiError::ToolchainMissing { .. }
            | ApiError::QueueFull
            | ApiError::QueueBytesFull { .. }
            | ApiError::RunUsersExhausted { .. }
            | ApiError::ShuttingDown => 503,
            ApiError::FunctionTimedOut { .. } => 504,
            ApiError::StorageFull { .. } => 507,
        }
    }

    /// Headers the status calls for.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            ApiError::MethodNotAllowed { allow } => vec![("Allow", allow.to_string())],
            ApiError::Unauthorized { .. } => {
                vec![("WWW-Authenticate", "Bearer realm=\"golambda\"".to_string())]
            }
            ApiError::QueueFull
            | ApiError::QueueBytesFull { .. }
            | ApiError::TooManyRequests { .. }
            | ApiError::RunUsersExhausted { .. } => {
                vec![("Retry-After", "1".into())]
            }
            ApiError::ShuttingDown => vec![("Retry-After", "5".into())],
            ApiError::ToolchainMissing { .. } => vec![("Retry-After", "60".into())],
            _ => Vec::new(),
        }
    }

    /// The JSON body: `{"error": sentence, ...details}`.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("error".into(), Value::String(self.to_string()));
        match self {
            ApiError::FieldMissing { field } | ApiError::FieldInvalid { field, .. } => {
                body.insert("field".into(), json!(field));
            }
            ApiError::CompileRejected { details } => {
                body.insert("details".into(), json!(details));
            }
            ApiError::PackageRefused {
                entry: Some(entry), ..
            } => {
                body.insert("entry".into(), json!(entry));
            }
            ApiError::CompileTimedOut { limit } => {
                body.insert(
                    "details".into(),
                    json!(format!(
                        "the build ran past --compile-timeout ({})",
                        format_duration(*limit)
                    )),
                );
            }
            ApiError::FunctionFailed {
                exit_code,
                signal,
                stdout,
                stderr,
            } => {
                body.insert("exit_code".into(), json!(exit_code));
                body.insert("signal".into(), json!(signal));
                body.insert("stdout".into(), json!(stdout));
                body.insert("stderr".into(), json!(stderr));
            }
            _ => {}
        }
        Value::Object(body)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::BodyMalformed { reason } => {
                write!(f, "the request body is not a valid JSON object: {reason}")
            }
            ApiError::FieldMissing { field } => write!(f, "field '{field}' is required"),
            ApiError::FieldInvalid { field, reason } => write!(f, "field '{field}' {reason}"),
            ApiError::FunctionUnknown { name } => write!(
                f,
                "no function named '{name}' is registered; register it with PUT /register"
            ),
            ApiError::FileUnknown { name, path } => write!(
                f,
                "the current version of '{name}' has no file '{path}'; GET /functions/{name}/files lists them"
            ),
            ApiError::VersionUnknown { name, version } => write!(
                f,
                "function '{name}' has no version {version}; GET /functions/{name}/versions lists the kept ones"
            ),
            ApiError::FunctionNotCron { name } => write!(
                f,
                "function '{name}' has no cron schedule to pause or resume"
            ),
            ApiError::RunUnknown { name, id } => write!(
                f,
                "function '{name}' has no run '{id}' among its last 100; GET /functions/{name}/runs lists them"
            ),
            ApiError::Unauthorized { reason } => write!(
                f,
                "this route needs credentials: {reason} (the server's --token, or a JWT signed with its --jwt-secret)"
            ),
            ApiError::TooManyRequests { reason } => {
                write!(f, "too many requests: {reason}; retry after a second")
            }
            ApiError::TooManyHeaders { limit } => {
                write!(f, "the request has more than {limit} headers")
            }
            ApiError::RouteUnknown { path } => write!(f, "nothing is served at '{path}'"),
            ApiError::MethodNotAllowed { allow } => {
                write!(f, "this route answers only {allow}")
            }
            ApiError::FunctionIsCron { name } => write!(
                f,
                "function '{name}' runs on a cron schedule; run it now with POST /functions/{name}/invoke"
            ),
            ApiError::BodyTooLarge { limit } => write!(
                f,
                "the request body is larger than the {limit}-byte limit (--max-body)"
            ),
            ApiError::SourceTooLarge { limit } => write!(
                f,
                "the decoded source is larger than the {limit}-byte limit (--max-source)"
            ),
            ApiError::PackageTooLarge { reason } => write!(f, "the package is refused: {reason}"),
            ApiError::PackageRefused {
                entry: Some(entry),
                reason,
            } => write!(f, "the package is refused: entry '{entry}': {reason}"),
            ApiError::PackageRefused {
                entry: None,
                reason,
            } => write!(f, "the package is refused: {reason}"),
            ApiError::CompileRejected { .. } | ApiError::CompileTimedOut { .. } => {
                write!(f, "compilation failed")
            }
            ApiError::FunctionFailed {
                exit_code, signal, ..
            } => match (exit_code, signal) {
                (Some(code), _) => write!(f, "the function exited with status {code}"),
                (None, Some(signal)) => write!(f, "the function was killed by {signal}"),
                (None, None) => write!(f, "the function failed"),
            },
            ApiError::CgiMalformed { reason } => write!(
                f,
                "the function's CGI answer is malformed: {reason}; write header lines such as \
                 'Status: 200 OK' and 'Content-Type: text/plain', a blank line, then the body"
            ),
            ApiError::FastCgiBroken { reason } => write!(
                f,
                "the function's FastCGI answer is malformed: {reason}; serve with Go's \
                 net/http/fcgi (fcgi.Serve(nil, handler))"
            ),
            ApiError::OutputTooLarge { limit } => write!(
                f,
                "the function wrote more than the {limit}-byte output limit (--max-output) and was stopped"
            ),
            ApiError::ToolchainMissing {
                runtime: "go",
                tool,
                reason,
                install,
            } => write!(
                f,
                "the Go toolchain '{tool}' cannot be run ({reason}); {install}, then register again"
            ),
            ApiError::ToolchainMissing {
                runtime,
                tool,
                reason,
                install,
            } => write!(
                f,
                "the {runtime} runtime is not available here: its toolchain '{tool}' cannot be \
                 used ({reason}); {install}, then register again"
            ),
            ApiError::QueueFull => write!(
                f,
                "the server is at its request limit (--workers plus --max-queue); retry shortly"
            ),
            ApiError::PathMalformed { reason } => write!(f, "the path is refused: {reason}"),
            ApiError::RequestMalformed { reason } => write!(f, "the request is refused: {reason}"),
            ApiError::RequestAmbiguous { reason } => write!(
                f,
                "the request's length is ambiguous: {reason}; its connection is closed"
            ),
            ApiError::QueueBytesFull { limit } => write!(
                f,
                "async runs waiting or running hold {limit} bytes of request bodies already \
                 (--queue-bytes); retry shortly"
            ),
            ApiError::RunUsersExhausted { total, stuck } => {
                write!(f, "every one of the {total} run users (--run-uids) is in use")?;
                if *stuck > 0 {
                    write!(
                        f,
                        ", {stuck} of them by processes of ended runs that could not be killed yet"
                    )?;
                }
                write!(f, "; retry shortly, or give --run-uids a wider range")
            }
            ApiError::ShuttingDown => write!(f, "the server is shutting down"),
            ApiError::FunctionTimedOut { limit } => write!(
                f,
                "the function ran past its {} time limit and was stopped with every process it started",
                format_duration(*limit)
            ),
            ApiError::Internal { context } => write!(f, "internal error: {context}"),
            ApiError::AnswerTooLarge { size, limit } => write!(
                f,
                "the function's output, as JSON, would be a {size}-byte answer, more than \
                 --max-output ({limit} bytes): write less, or answer in raw mode"
            ),
            ApiError::StorageFull { context } => write!(
                f,
                "the server's disk is full ({context}); nothing was changed: free space on the \
                 server and retry"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_contract() {
        let cases: Vec<(ApiError, u16)> = vec![
            (ApiError::FieldMissing { field: "name" }, 400),
            (ApiError::FunctionUnknown { name: "x".into() }, 404),
            (ApiError::MethodNotAllowed { allow: "GET" }, 405),
            (ApiError::FunctionIsCron { name: "x".into() }, 409),
            (ApiError::BodyTooLarge { limit: 1 }, 413),
            (ApiError::SourceTooLarge { limit: 1 }, 413),
            (
                ApiError::CompileRejected {
                    details: "x".into(),
                },
                422,
            ),
            (
                ApiError::FunctionFailed {
                    exit_code: Some(1),
                    signal: None,
                    stdout: String::new(),
                    stderr: String::new(),
                },
                500,
            ),
            (ApiError::OutputTooLarge { limit: 1 }, 502),
            (ApiError::FastCgiBroken { reason: "x".into() }, 502),
            (ApiError::QueueFull, 503),
            (ApiError::QueueBytesFull { limit: 1 }, 503),
            (
                ApiError::StorageFull {
                    context: "x".into(),
                },
                507,
            ),
            (ApiError::RunUsersExhausted { total: 6, stuck: 5 }, 503),
            (
                ApiError::ToolchainMissing {
                    runtime: "python",
                    tool: "python3".into(),
                    reason: "x".into(),
                    install: "install it".into(),
                },
                503,
            ),
            (
                ApiError::FunctionTimedOut {
                    limit: Duration::from_secs(1),
                },
                504,
            ),
        ];
        for (error, status) in cases {
            assert_eq!(error.status(), status, "{error:?}");
            assert!(error.body()["error"].is_string());
        }
    }

    #[test]
    fn details_ride_along() {
        let e = ApiError::CompileRejected {
            details: "main.go:1: boom".into(),
        };
        assert_eq!(e.body()["error"], "compilation failed");
        assert_eq!(e.body()["details"], "main.go:1: boom");
        let e = ApiError::FieldInvalid {
            field: "trigger",
            reason: "is not a cron expression".into(),
        };
        assert!(e.to_string().contains("trigger"));
        assert_eq!(e.body()["field"], "trigger");
        assert_eq!(
            ApiError::QueueFull.headers(),
            vec![("Retry-After", "1".to_string())]
        );
        let missing = ApiError::ToolchainMissing {
            runtime: "go",
            tool: "go".into(),
            reason: "not found".into(),
            install: "install Go".into(),
        };
        assert!(missing.to_string().contains("install Go"));
        let python = ApiError::ToolchainMissing {
            runtime: "python",
            tool: "/root/.pyenv/shims/python3".into(),
            reason: "not reachable".into(),
            install: "install Python 3".into(),
        };
        let text = python.to_string();
        assert!(
            text.contains("python runtime") && text.contains("install Python 3"),
            "{text}"
        );
    }
}
