//! Routing: one `match` on method and path segments with a fallback arm, and the handlers
//! of each route. Every handler returns `Result<Reply, ApiError>`.

use super::auth::Access;
use super::body::read_body;
use super::dispatcher::Slot;
use super::Front;
use super::{ApiError, Reply};
use crate::functions::app::App;
use crate::functions::files;
use crate::functions::invoke::{self as invocation, Call, CgiRequest, Trigger};
use crate::functions::manage as lifecycle;
use crate::functions::register::{self as registration, ParseRules, Registration};
use crate::history::KEPT_RUNS;
use crate::registry::name::is_reserved;
use crate::registry::Function;
use serde_json::{json, Value};
use std::sync::Arc;
use tiny_http::{Method, Request};

/// Most request headers accepted.
const MAX_HEADERS: usize = 100;

/// Answers one request. `slot` is the request's place in the pool: an async run takes it
/// over.
pub fn route(
    front: &Front,
    request: &mut Request,
    request_id: &str,
    slot: &mut Option<Slot>,
) -> Result<Reply, ApiError> {
    let app = &front.app;
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = request.method().clone();
    if request.headers().len() > MAX_HEADERS {
        return Err(ApiError::TooManyHeaders { limit: MAX_HEADERS });
    }
    let access = Access::of(path);
    let authorization = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().to_string());
    front.auth.check(
        access,
        authorization.as_deref(),
        chrono::Utc::now().timestamp(),
    )?;
    use Method::{Delete, Get, Head, Post, Put};
    match (&method, segments.as_slice()) {
        (Get | Head, [""] | ["health" | "healthz"]) => Ok(health(app)),
        (_, [""] | ["health" | "healthz"]) => {
            Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" })
        }
        (Put, ["register"]) => register(front, request),
        (_, ["register"]) => Err(ApiError::MethodNotAllowed { allow: "PUT" }),
        (Get, ["metrics"]) => Ok(Reply::bytes(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            app.metrics.render(app.registry.len()).into_bytes(),
        )),
        (_, ["metrics"]) => Err(ApiError::MethodNotAllowed { allow: "GET" }),
        (Get, ["runtimes"]) => Ok(Reply::json(200, &runtimes(app))),
        (_, ["runtimes"]) => Err(ApiError::MethodNotAllowed { allow: "GET" }),
        (Get, ["functions"] | ["functions", ""]) => Ok(list(app)),
        (_, ["functions"] | ["functions", ""]) => Err(ApiError::MethodNotAllowed { allow: "GET" }),
        (Get, ["functions", name]) => Ok(Reply::json(200, &app.metadata(&*known(app, name)?))),
        (Delete, ["functions", name]) => {
            app.delete(name)?;
            Ok(Reply::empty(204))
        }
        (_, ["functions", _]) => Err(ApiError::MethodNotAllowed {
            allow: "GET, DELETE",
        }),
        (Post, ["functions", name, "invoke"]) => {
            let function = known(app, name)?;
            let version = query_version(query)?;
            let target = Target {
                trigger: Trigger::Manual,
                path_info: String::new(),
                version,
            };
            call(front, request, function, target, query, request_id)
        }
        (_, ["functions", _, "invoke"]) => Err(ApiError::MethodNotAllowed { allow: "POST" }),
        (Get, ["functions", name, "runs"]) => {
            let function = known(app, name)?;
            let limit = query_number(query, "limit", 1, KEPT_RUNS)?.unwrap_or(20);
            Ok(Reply::json(
                200,
                &json!(app.history.list(&function.name, limit)),
            ))
        }
        (Get, ["functions", name, "runs", id]) => {
            let function = known(app, name)?;
            let run = app
                .history
                .get(&function.name, id)
                .ok_or_else(|| ApiError::RunUnknown {
                    name: function.name.clone(),
                    id: id.chars().take(64).collect(),
                })?;
            Ok(Reply::json(200, &json!(run)))
        }
        (_, ["functions", _, "runs"] | ["functions", _, "runs", _]) => {
            Err(ApiError::MethodNotAllowed { allow: "GET" })
        }
        (Post, ["async", name]) => {
            // As `GET /{name}`: a cron function runs only with the token (…/invoke).
            let function = known(app, name)?;
            http_only(&function)?;
            // Held before the body arrives: what is registered meanwhile changes nothing.
            let held = invocation::hold(app, function, None)?;
            let call = request_call(
                front,
                request,
                Trigger::Async,
                String::new(),
                query,
                request_id,
            )?;
            start_async(front, held, call, slot)
        }
        (_, ["async", _]) => Err(ApiError::MethodNotAllowed { allow: "POST" }),
        (Get, ["functions", name, "versions"]) => {
            Ok(Reply::json(200, &lifecycle::versions(&*known(app, name)?)))
        }
        (_, ["functions", _, "versions"]) => Err(ApiError::MethodNotAllowed { allow: "GET" }),
        (Post, ["functions", name, "rollback"]) => {
            let body = read_body(front, request)?;
            let version = lifecycle::parse_version_body(&body)?;
            Ok(Reply::json(200, &lifecycle::rollback(app, name, version)?))
        }
        (_, ["functions", _, "rollback"]) => Err(ApiError::MethodNotAllowed { allow: "POST" }),
        (Post, ["functions", name, action @ ("pause" | "resume")]) => Ok(Reply::json(
            200,
            &lifecycle::set_paused(app, name, *action == "pause")?,
        )),
        (_, ["functions", _, "pause" | "resume"]) => {
            Err(ApiError::MethodNotAllowed { allow: "POST" })
        }
        (Get, ["functions", name, "source"]) => source(app, &*known(app, name)?),
        (_, ["functions", _, "source"]) => Err(ApiError::MethodNotAllowed { allow: "GET" }),
        (Get, ["functions", name, "files"]) => {
            Ok(Reply::json(200, &files::list(app, &*known(app, name)?)?))
        }
        (Get, ["functions", name, "files", path @ ..]) if !path.is_empty() => {
            let path = percent_decode(&path.join("/"));
            let bytes = files::one(app, &*known(app, name)?, &path)?;
            Ok(Reply::bytes(200, "application/octet-stream", bytes))
        }
        (_, ["functions", _, "files", ..]) => Err(ApiError::MethodNotAllowed { allow: "GET" }),
        (Get, ["functions", name, "versions", number, "build"]) => {
            let output = files::build_output(app, &*known(app, name)?, number)?;
            Ok(Reply::bytes(
                200,
                "text/plain; charset=utf-8",
                output.into_bytes(),
            ))
        }
        (_, ["functions", _, "versions", _, "build"]) => {
            Err(ApiError::MethodNotAllowed { allow: "GET" })
        }
        (_, [name, rest @ ..]) if !is_reserved(name) && !name.is_empty() => {
            let function = known(app, name)?;
            http_only(&function)?;
            let path_info = if rest.is_empty() {
                String::new()
            } else {
                percent_decode(&format!("/{}", rest.join("/")))
            };
            // An encoded slash would reach PATH_INFO as a real one.
            if rest
                .iter()
                .any(|segment| segment.to_ascii_lowercase().contains("%2f"))
            {
                return Err(ApiError::PathMalformed {
                    reason: "a sub-path may not hold %2F: a function could not tell it from /",
                });
            }
            if path_info.chars().any(char::is_control) {
                return Err(ApiError::PathMalformed {
                    reason: "a sub-path may not hold control characters (such as %00)",
                });
            }
            let target = Target {
                trigger: Trigger::Http,
                path_info,
                version: None,
            };
            call(front, request, function, target, query, request_id)
        }
        _ => Err(ApiError::RouteUnknown {
            path: path.chars().take(100).collect(),
        }),
    }
}

/// `GET /runtimes`: each runtime, whether it can be used here, its version and toolchain,
/// and why not when it cannot.
fn runtimes(app: &App) -> serde_json::Value {
    let all: Vec<serde_json::Value> = app
        .runtimes
        .all()
        .into_iter()
        .map(|runtime| {
            let status = runtime.status();
            let mut shown = json!({
                "runtime": status.runtime,
                "available": status.available,
                "version": status.version,
                "path": status.path,
            });
            if let Some(reason) = status.reason {
                shown["reason"] = json!(reason);
                shown["install"] = json!(runtime.install_hint());
            }
            shown
        })
        .collect();
    json!(all)
}

fn health(app: &App) -> Reply {
    Reply::json(
        200,
        &json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "functions": app.registry.len(),
            "uptime_seconds": app.started.elapsed().as_secs(),
        }),
    )
}

fn list(app: &App) -> Reply {
    let all: Vec<Value> = app
        .registry
        .list()
        .iter()
        .map(|f| app.metadata(f))
        .collect();
    Reply::json(200, &Value::Array(all))
}

fn known(app: &App, name: &str) -> Result<Arc<Function>, ApiError> {
    app.registry
        .get(name)
        .ok_or_else(|| ApiError::FunctionUnknown {
            name: name.chars().take(64).collect(),
        })
}

fn register(front: &Front, request: &mut Request) -> Result<Reply, ApiError> {
    let app = &front.app;
    // Room for the archive of a package in base64, and the rest of the request.
    let limit = app
        .config
        .max_body
        .max((app.config.max_package / 3 + 1).saturating_mul(4) + (1 << 20));
    let body = super::body::read_body_up_to(front, request, limit)?;
    let limits = ParseRules {
        max_source: app.config.max_source,
        max_package: app.config.max_package,
        default_timeout: app.config.timeout,
    };
    let registration = Registration::parse(&body, &limits)?;
    let (status, metadata) = registration::register(app, registration)?;
    Ok(Reply::json(status, &metadata))
}

fn source(app: &App, function: &Function) -> Result<Reply, ApiError> {
    let version = function
        .current_version()
        .ok_or_else(|| ApiError::Internal {
            context: "the function has no version".into(),
        })?;
    let text = std::fs::read(app.registry.data().resolve(&version.source)).map_err(|err| {
        ApiError::Internal {
            context: format!("cannot read the stored source: {err}"),
        }
    })?;
    // A package is answered as uploaded, with its archive's media type.
    let media_type = crate::packages::Kind::of(&text).media_type();
    Ok(Reply::bytes(200, media_type, text))
}

/// Runs a function for an HTTP request.
/// What an invocation route asks to run.
struct Target {
    trigger: Trigger,
    path_info: String,
    /// A kept version instead of the current one.
    version: Option<u32>,
}

/// `?version=N` of a manual invoke.
fn query_version(query: &str) -> Result<Option<u32>, ApiError> {
    query_number(query, "version", 1, u32::MAX as usize).map(|n| n.map(|n| n as u32))
}

/// A whole-number query parameter from `min` to `max`, if present.
fn query_number(
    query: &str,
    field: &'static str,
    min: usize,
    max: usize,
) -> Result<Option<usize>, ApiError> {
    let Some(text) = query
        .split('&')
        .find_map(|pair| pair.strip_prefix(field)?.strip_prefix('='))
    else {
        return Ok(None);
    };
    text.parse::<usize>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .map(Some)
        .ok_or_else(|| ApiError::FieldInvalid {
            field,
            reason: format!("must be a whole number from {min} to {max}, such as ?{field}={min}"),
        })
}

/// Refuses a cron function where only http functions may be run (by anyone who may invoke).
fn http_only(function: &Function) -> Result<(), ApiError> {
    if function
        .current_version()
        .is_some_and(|v| v.settings.is_cron())
    {
        return Err(ApiError::FunctionIsCron {
            name: function.name.clone(),
        });
    }
    Ok(())
}

/// `POST /async/{name}`: queues the run on the request pool and answers 202 at once.
fn start_async(
    front: &Front,
    held: invocation::Held,
    call: Call,
    request_slot: &mut Option<Slot>,
) -> Result<Reply, ApiError> {
    let (app, dispatcher) = (&front.app, &front.dispatcher);
    let bytes =
        dispatcher
            .queued_bytes
            .try_take(call.body.len())
            .ok_or(ApiError::QueueBytesFull {
                limit: dispatcher.queued_bytes.limit(),
            })?;
    let slot = request_slot
        .take()
        .or_else(|| dispatcher.invoke.try_take())
        .ok_or(ApiError::QueueFull)?;
    let request_id = call.request_id.clone();
    let name = held.function.name.clone();
    app.history
        .begin(&name, &request_id, "async", held.version.number);
    let location = format!("/functions/{name}/runs/{request_id}");
    let job_app = app.clone();
    dispatcher.invoke.execute(move || {
        let _slot = slot;
        let _bytes = bytes;
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            invocation::invoke(&job_app, held, call)
        }));
        if run.is_err() {
            log::error!("async run of {name} panicked");
        }
    });
    Ok(Reply::json(202, &json!({ "id": request_id })).with_header("Location", location))
}

fn call(
    front: &Front,
    request: &mut Request,
    function: Arc<Function>,
    target: Target,
    query: &str,
    request_id: &str,
) -> Result<Reply, ApiError> {
    let Target {
        trigger,
        path_info,
        version,
    } = target;
    let app = &front.app;
    // Held before the body arrives: what is registered meanwhile changes nothing.
    let held = invocation::hold(app, function, version)?;
    let call = request_call(front, request, trigger, path_info, query, request_id)?;
    invocation::invoke(app, held, call)
}

/// Reads the body and the CGI view of an HTTP request.
fn request_call(
    front: &Front,
    request: &mut Request,
    trigger: Trigger,
    path_info: String,
    query: &str,
    request_id: &str,
) -> Result<Call, ApiError> {
    let body = read_body(front, request)?;
    let local = Some(front.local_addr);
    let host_header = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Host"))
        .map(|h| h.value.as_str().to_string());
    let server_name = host_header
        .as_deref()
        .map(strip_port)
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .or_else(|| local.map(|a| a.ip().to_string()))
        .unwrap_or_default();
    let remote = request.remote_addr().copied();
    let cgi = CgiRequest {
        method: request.method().to_string(),
        path_info,
        query: query.to_string(),
        protocol: format!("HTTP/{}", request.http_version()),
        remote_addr: remote.map(|a| a.ip().to_string()).unwrap_or_default(),
        remote_port: remote.map(|a| a.port().to_string()).unwrap_or_default(),
        server_name,
        server_port: local.map(|a| a.port().to_string()).unwrap_or_default(),
        headers: request
            .headers()
            .iter()
            .map(|h| (h.field.as_str().to_string(), h.value.as_str().to_string()))
            .collect(),
    };
    Ok(Call {
        trigger,
        request_id: request_id.to_string(),
        body,
        request: Some(cgi),
    })
}
/// `host:port` or `[v6]:port` → the host part.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// Decodes `%XX` escapes; text that does not decode to UTF-8 is kept as it came.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::{percent_decode, strip_port};

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("/a%20b/c"), "/a b/c");
        assert_eq!(percent_decode("/%zz%4"), "/%zz%4");
        assert_eq!(percent_decode("/%ff"), "/%ff");
        assert_eq!(percent_decode("/x%2F"), "/x/");
    }

    #[test]
    fn hosts() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("localhost"), "localhost");
    }

    #[test]
    fn property_path_helpers_never_panic() {
        let mut rng = crate::prop::Rng::new(0x9a7);
        let seed = b"/functions/hello/runs/019a-1?limit=5&version=2".to_vec();
        for _ in 0..20_000 {
            let mut input = seed.clone();
            for _ in 0..1 + rng.below(6) {
                crate::prop::mutate(&mut rng, &mut input);
            }
            let text = String::from_utf8_lossy(&input);
            let decoded = percent_decode(&text);
            assert!(decoded.len() <= text.len());
            let _ = crate::http::auth::Access::of(&text);
            let _ = super::query_number(&text, "limit", 1, 100);
            let _ = strip_port(&text);
        }
    }
}
