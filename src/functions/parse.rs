//! `PUT /register`'s body: every field checked, each error naming its field; the code
//! decoded and told apart (one source file or a package's archive) and bounded by the limit
//! that applies to it. Pure: reads no file and changes nothing.

use crate::error::ApiError;
use crate::packages;
use crate::registry::name::check_name;
use crate::registry::{ResponseMode, Settings};
use crate::runtimes::Kind;
use crate::scheduler::CronExpr;
use crate::units::{parse_duration, parse_size};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Longest per-function timeout accepted.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

const FIELDS: &[&str] = &[
    "name",
    "trigger",
    "code",
    "runtime",
    "timeout",
    "timeout_ms",
    "memory",
    "disk",
    "max_concurrency",
    "env",
    "secrets",
    "response",
    "network",
    "main",
];

/// A checked registration request.
#[derive(Debug)]
pub struct Registration {
    pub name: String,
    /// One source file, or the archive of a package as uploaded.
    pub source: Vec<u8>,
    pub kind: packages::Kind,
    pub settings: Settings,
    /// Secret values; their names are in `settings`.
    pub secrets: BTreeMap<String, String>,
    pub schedule: Option<CronExpr>,
}

/// The bounds and defaults the registration parser applies.
pub struct ParseRules {
    pub max_source: u64,
    pub max_package: u64,
    pub default_timeout: Duration,
}

impl Registration {
    pub fn parse(body: &[u8], limits: &ParseRules) -> Result<Registration, ApiError> {
        let value: Value = serde_json::from_slice(body).map_err(|err| ApiError::BodyMalformed {
            reason: err.to_string(),
        })?;
        let Value::Object(object) = value else {
            return Err(ApiError::BodyMalformed {
                reason: "expected an object such as {\"name\":…,\"trigger\":…,\"code\":…}".into(),
            });
        };
        if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(ApiError::FieldInvalid {
                field: "body",
                reason: format!(
                    "has an unknown field '{}'; the fields are {}",
                    truncate(unknown, 64),
                    FIELDS.join(", ")
                ),
            });
        }
        let name = required_string(&object, "name")?;
        check_name(name).map_err(|reason| ApiError::FieldInvalid {
            field: "name",
            reason: format!("'{}' {reason}", truncate(name, 80)),
        })?;
        let trigger = required_string(&object, "trigger")?.trim().to_string();
        let schedule = if trigger == "http" {
            None
        } else {
            Some(
                CronExpr::parse(&trigger).map_err(|err| ApiError::FieldInvalid {
                    field: "trigger",
                    reason: format!(
                        "must be \"http\" or a cron expression such as \"0 */5 * * * *\": {err}"
                    ),
                })?,
            )
        };
        // Bounded here only against absurd sizes (the body is bounded already): which limit
        // applies depends on what the bytes are.
        let source = decode_code(
            required_string(&object, "code")?,
            limits
                .max_source
                .max(limits.max_package)
                .saturating_add(1 << 20),
        )?;
        let kind = packages::Kind::of(&source);
        if kind == packages::Kind::Source && source.len() as u64 > limits.max_source {
            return Err(ApiError::SourceTooLarge {
                limit: limits.max_source,
            });
        }
        if kind != packages::Kind::Source && source.len() as u64 > limits.max_package {
            return Err(ApiError::PackageTooLarge {
                reason: format!(
                    "the archive is larger than the {}-byte limit (--max-package)",
                    limits.max_package
                ),
            });
        }
        let runtime_name = optional_string(&object, "runtime")?.unwrap_or("go");
        let runtime = Kind::of(runtime_name).ok_or_else(|| {
            invalid(
                "runtime",
                &format!(
                    "'{}' is not a runtime; the runtimes are {}",
                    truncate(runtime_name, 40),
                    Kind::ALL.map(Kind::name).join(", ")
                ),
            )
        })?;
        if !runtime.here() {
            return Err(invalid(
                "runtime",
                "\"sh\" needs a Unix host (/bin/sh); on Windows use python, node, go or rust",
            ));
        }
        let main = match optional_string(&object, "main")? {
            None => None,
            Some(_) if kind == packages::Kind::Source => {
                return Err(invalid(
                    "main",
                    "applies to a package (a zip or tar.gz), not one file",
                ))
            }
            Some(main) if runtime.main_is_folder() => {
                packages::folder_of(main).map_err(|reason| {
                    invalid("main", &format!("'{}': {reason}", truncate(main, 80)))
                })?
            }
            Some(main) => Some(packages::file_of(main).map_err(|reason| {
                invalid(
                    "main",
                    &format!("'{}' (the entry file): {reason}", truncate(main, 80)),
                )
            })?),
        };
        let response = match optional_string(&object, "response")?.unwrap_or("json") {
            "json" => ResponseMode::Json,
            "raw" => ResponseMode::Raw,
            "cgi" => ResponseMode::Cgi,
            "fcgi" if !runtime.warm() => return Err(invalid(
                "response",
                "\"fcgi\" (a warm FastCGI responder) is for the go runtime; use \"json\", \"raw\" or \"cgi\"",
            )),
            "fcgi" if crate::platform::WARM_PROCESSES => ResponseMode::Fcgi,
            "fcgi" => return Err(invalid(
                "response",
                "\"fcgi\" needs a Unix host (warm processes listen on a Unix socket); use \"json\", \"raw\" or \"cgi\" here",
            )),
            _ => return Err(invalid(
                "response",
                "must be \"json\", \"raw\", \"cgi\" or \"fcgi\"",
            )),
        };
        let secrets = parse_variables(&object, "secrets")?;
        let settings = Settings {
            trigger,
            runtime: runtime.name().to_string(),
            response,
            timeout_ms: parse_timeout(&object, limits.default_timeout)?,
            memory: match optional_string(&object, "memory")? {
                None => None,
                Some(text) => Some(
                    parse_size(text)
                        .map_err(|e| invalid("memory", &format!("is not a size: {e}")))?,
                ),
            },
            disk: match optional_string(&object, "disk")? {
                None => None,
                Some(text) => Some(
                    parse_size(text)
                        .ok()
                        .filter(|n| (1 << 20..=1 << 40).contains(n))
                        .ok_or_else(|| {
                            invalid(
                                "disk",
                                "must be a size from 1MiB to 1TiB, such as \"512MiB\"",
                            )
                        })?,
                ),
            },
            max_concurrency: match object.get("max_concurrency") {
                None | Some(Value::Null) => 0,
                Some(v) => v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n <= 100_000)
                    .ok_or_else(|| {
                        invalid("max_concurrency", "must be a whole number from 0 to 100000")
                    })?,
            },
            network: match object.get("network") {
                None | Some(Value::Null) => true,
                Some(v) => v
                    .as_bool()
                    .ok_or_else(|| invalid("network", "must be true or false"))?,
            },
            env: parse_variables(&object, "env")?,
            secrets: secrets.keys().cloned().collect(),
            main,
        };
        refuse_unenforced(&settings)?;
        refuse_oversized_environment(&settings.env, &secrets)?;
        Ok(Registration {
            name: name.to_string(),
            source,
            kind,
            settings,
            secrets,
            schedule,
        })
    }
}

/// Bytes that `env` and `secrets` may take together: a run's environment must pass
/// `execve`, whose limit (a quarter of the stack limit, 2 MiB by default) also carries the
/// request's variables (its headers, up to what the server reads of them).
pub const MAX_ENVIRONMENT: usize = 256 * 1024;

/// Refuses variables that, with the request's, could not reach a run (`E2BIG`).
fn refuse_oversized_environment(
    env: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    let size = |vars: &BTreeMap<String, String>| -> usize {
        vars.iter().map(|(k, v)| k.len() + v.len() + 2).sum()
    };
    let (env_bytes, secret_bytes) = (size(env), size(secrets));
    if env_bytes + secret_bytes <= MAX_ENVIRONMENT {
        return Ok(());
    }
    let field = if env_bytes > MAX_ENVIRONMENT {
        "env"
    } else {
        "secrets"
    };
    Err(invalid(
        field,
        &format!(
            "and the other variables take {} bytes; env and secrets may take {} KiB together, \
             what a process's environment can carry beside the request's variables",
            env_bytes + secret_bytes,
            MAX_ENVIRONMENT / 1024
        ),
    ))
}

/// Settings the contract defines but this server does not enforce yet are refused rather
/// than stored: a limit that is shown but not applied would mislead.
fn refuse_unenforced(settings: &Settings) -> Result<(), ApiError> {
    let unenforced = if !settings.network && !crate::platform::can_isolate_network() {
        Some("network")
    } else {
        None
    };
    match unenforced {
        Some(field) => Err(invalid(
            field,
            "cannot be enforced here (a network namespace needs the server to run as root on Linux); leave it out (nothing was registered)",
        )),
        None => Ok(()),
    }
}

fn invalid(field: &'static str, reason: &str) -> ApiError {
    ApiError::FieldInvalid {
        field,
        reason: reason.to_string(),
    }
}

pub(crate) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

fn required_string<'a>(
    object: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, ApiError> {
    match object.get(field) {
        None | Some(Value::Null) => Err(ApiError::FieldMissing { field }),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(invalid(field, "must be a string")),
    }
}

fn optional_string<'a>(
    object: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a str>, ApiError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(field, "must be a string")),
    }
}

/// Decodes standard base64 with or without padding; line breaks (as `base64` writes them)
/// are ignored. The size is checked before decoding.
fn decode_code(code: &str, max_source: u64) -> Result<Vec<u8>, ApiError> {
    let compact: String = code.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let decoded_len = (compact.len() as u64 / 4) * 3 + 3;
    if decoded_len > max_source.saturating_add(3) {
        return Err(ApiError::SourceTooLarge { limit: max_source });
    }
    let engine = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let source = engine.decode(compact.as_bytes()).map_err(|err| {
        invalid(
            "code",
            &format!("is not valid base64 (standard alphabet): {err}"),
        )
    })?;
    if source.len() as u64 > max_source {
        return Err(ApiError::SourceTooLarge { limit: max_source });
    }
    if source.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(invalid("code", "decodes to an empty program"));
    }
    Ok(source)
}

fn parse_timeout(object: &Map<String, Value>, default: Duration) -> Result<u64, ApiError> {
    let from_text = match optional_string(object, "timeout")? {
        None => None,
        Some(text) => Some(
            parse_duration(text)
                .map_err(|e| invalid("timeout", &format!("is not a duration: {e}")))?,
        ),
    };
    let from_ms = match object.get("timeout_ms") {
        None | Some(Value::Null) => None,
        Some(v) => Some(Duration::from_millis(v.as_u64().ok_or_else(|| {
            invalid("timeout_ms", "must be a whole number of milliseconds")
        })?)),
    };
    let (field, timeout) = match (from_text, from_ms) {
        (Some(a), Some(b)) if a != b => {
            return Err(invalid(
                "timeout",
                "and timeout_ms disagree; give one of them",
            ))
        }
        (Some(t), _) => ("timeout", t),
        (None, Some(t)) => ("timeout_ms", t),
        (None, None) => return Ok(default.as_millis() as u64),
    };
    if timeout < Duration::from_millis(1) || timeout > MAX_TIMEOUT {
        return Err(invalid(field, "must be between 1ms and 24h"));
    }
    Ok(timeout.as_millis() as u64)
}

/// Reads `env` or `secrets`: an object of variable names to string values.
fn parse_variables(
    object: &Map<String, Value>,
    field: &'static str,
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut variables = BTreeMap::new();
    let entries = match object.get(field) {
        None | Some(Value::Null) => return Ok(variables),
        Some(Value::Object(entries)) => entries,
        Some(_) => return Err(invalid(field, "must be an object of strings")),
    };
    if entries.len() > 256 {
        return Err(invalid(field, "may hold at most 256 variables"));
    }
    for (key, value) in entries {
        let valid_key = key.len() <= 128
            && key
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            return Err(invalid(
                field,
                &format!(
                    "has a variable name '{}' that is not [A-Za-z_][A-Za-z0-9_]*",
                    truncate(key, 64)
                ),
            ));
        }
        let Value::String(value) = value else {
            return Err(invalid(field, &format!("variable {key} must be a string")));
        };
        if value.contains('\0') || value.len() > 32 * 1024 {
            return Err(invalid(
                field,
                &format!("variable {key} must be under 32 KiB with no NUL byte"),
            ));
        }
        variables.insert(key.clone(), value.clone());
    }
    Ok(variables)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ParseRules {
        ParseRules {
            max_source: 1024,
            max_package: 4096,
            default_timeout: Duration::from_secs(30),
        }
    }

    fn parse(body: &str) -> Result<Registration, ApiError> {
        Registration::parse(body.as_bytes(), &limits())
    }

    fn field_of(result: Result<Registration, ApiError>) -> String {
        match result {
            Err(ApiError::FieldInvalid { field, .. }) | Err(ApiError::FieldMissing { field }) => {
                field.into()
            }
            Err(other) => format!("other: {other:?}"),
            Ok(r) => format!("accepted: {r:?}"),
        }
    }

    const HELLO: &str = "cGFja2FnZSBtYWluCg=="; // "package main\n"

    #[test]
    fn minimal_registration() {
        let r = parse(&format!(
            r#"{{"name":"hello","trigger":"http","code":"{HELLO}"}}"#
        ))
        .expect("valid");
        assert_eq!(r.name, "hello");
        assert_eq!(r.source, b"package main\n");
        assert_eq!(r.settings.timeout_ms, 30_000);
        assert_eq!(r.settings.response, ResponseMode::Json);
        assert!(r.schedule.is_none());
    }

    #[test]
    fn base64_without_padding_and_with_line_breaks() {
        let r =
            parse(r#"{"name":"a","trigger":"http","code":"cGFja2Fn\nZSBtYWluCg"}"#).expect("valid");
        assert_eq!(r.source, b"package main\n");
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (r#"{"trigger":"http","code":"eA=="}"#.to_string(), "name"),
            (
                format!(r#"{{"name":"Bad","trigger":"http","code":"{HELLO}"}}"#),
                "name",
            ),
            (format!(r#"{{"name":"a","code":"{HELLO}"}}"#), "trigger"),
            (
                format!(r#"{{"name":"a","trigger":"61 * * * * *","code":"{HELLO}"}}"#),
                "trigger",
            ),
            (
                r#"{"name":"a","trigger":"http","code":"!!!"}"#.to_string(),
                "code",
            ),
            (
                r#"{"name":"a","trigger":"http","code":7}"#.to_string(),
                "code",
            ),
            (
                format!(r#"{{"name":"a","trigger":"http","code":"{HELLO}","timeout":"-1s"}}"#),
                "timeout",
            ),
            (
                format!(r#"{{"name":"a","trigger":"http","code":"{HELLO}","timeout_ms":-5}}"#),
                "timeout_ms",
            ),
            (
                format!(r#"{{"name":"a","trigger":"http","code":"{HELLO}","timeout":"48h"}}"#),
                "timeout",
            ),
            (
                format!(r#"{{"name":"a","trigger":"http","code":"{HELLO}","env":{{"1X":"y"}}}}"#),
                "env",
            ),
            (
                format!(r#"{{"name":"a","trigger":"http","code":"{HELLO}","env":{{"X":1}}}}"#),
                "env",
            ),
            (
                format!(r#"{{"name":"a","trigger":"http","code":"{HELLO}","response":"xml"}}"#),
                "response",
            ),
            (
                format!(r#"{{"name":"a","trigger":"http","code":"{HELLO}","runtime":"cobol"}}"#),
                "runtime",
            ),
            (
                format!(
                    r#"{{"name":"a","trigger":"http","code":"{HELLO}","runtime":"node","response":"fcgi"}}"#
                ),
                "response",
            ),
            (
                format!(r#"{{"name":"a","trigger":"http","code":"{HELLO}","network":"no"}}"#),
                "network",
            ),
            (
                format!(r#"{{"name":"a","trigger":"http","code":"{HELLO}","memory":"lots"}}"#),
                "memory",
            ),
            (
                format!(r#"{{"name":"a","trigger":"http","code":"{HELLO}","timout":"1s"}}"#),
                "body",
            ),
        ];
        for (body, field) in cases {
            assert_eq!(field_of(parse(&body)), field, "{body}");
        }
    }

    #[test]
    fn malformed_bodies() {
        for body in ["", "[]", "{", "null", "\"x\"", &"[".repeat(10_000)] {
            assert!(
                matches!(parse(body), Err(ApiError::BodyMalformed { .. })),
                "{body:.20}"
            );
        }
    }

    #[test]
    fn oversized_source_is_413() {
        let big = base64::engine::general_purpose::STANDARD.encode(vec![b'a'; 2048]);
        let result = parse(&format!(
            r#"{{"name":"a","trigger":"http","code":"{big}"}}"#
        ));
        assert!(matches!(result, Err(ApiError::SourceTooLarge { .. })));
    }

    #[test]
    fn settings_are_read() {
        let r = parse(&format!(
            r#"{{"name":"a","trigger":"@every 5s","code":"{HELLO}","timeout":"1500ms","env":{{"GREETING":"hi"}},"response":"raw","max_concurrency":0,"network":true}}"#
        ))
        .expect("valid");
        assert_eq!(r.settings.timeout_ms, 1500);
        assert_eq!(
            r.settings.env.get("GREETING").map(String::as_str),
            Some("hi")
        );
        assert_eq!(r.settings.response, ResponseMode::Raw);
        assert_eq!(r.settings.max_concurrency, 0);
        assert!(r.settings.network);
        assert_eq!(r.settings.memory, None);
        assert!(r.schedule.is_some());
    }

    #[test]
    fn unenforced_limits_are_refused() {
        let body = format!(r#"{{"name":"a","trigger":"http","code":"{HELLO}","network":false}}"#);
        if crate::platform::can_isolate_network() {
            assert!(parse(&body).is_ok_and(|r| !r.settings.network));
        } else {
            assert_eq!(field_of(parse(&body)), "network", "{body}");
        }
    }

    #[test]
    fn fcgi_is_accepted_where_warm_processes_run() {
        let body = format!(r#"{{"name":"a","trigger":"http","code":"{HELLO}","response":"fcgi"}}"#);
        if crate::platform::WARM_PROCESSES {
            assert!(parse(&body).is_ok_and(|r| r.settings.response == ResponseMode::Fcgi));
        } else {
            assert_eq!(field_of(parse(&body)), "response", "{body}");
        }
    }

    #[test]
    fn property_the_parser_never_panics_and_accepts_only_valid_names() {
        let seeds: Vec<Vec<u8>> = vec![
            format!(r#"{{"name":"hello","trigger":"http","code":"{HELLO}"}}"#).into_bytes(),
            format!(
                r#"{{"name":"a-1","trigger":"CRON_TZ=UTC 0 */5 * * 1-5","code":"{HELLO}","timeout":"2s","env":{{"A":"b"}},"secrets":{{"K":"v"}},"response":"cgi","memory":"64MiB","max_concurrency":2}}"#
            )
            .into_bytes(),
        ];
        let mut rng = crate::prop::Rng::new(0x5eed_2026);
        for round in 0..20_000 {
            let mut input = rng.pick(&seeds).clone();
            for _ in 0..1 + rng.below(8) {
                crate::prop::mutate(&mut rng, &mut input);
            }
            if let Ok(registration) = Registration::parse(&input, &limits()) {
                assert!(
                    crate::registry::name::check_name(&registration.name).is_ok(),
                    "round {round} accepted name {:?}",
                    registration.name
                );
                assert!(!registration.source.is_empty());
                assert!(registration.settings.timeout_ms >= 1);
            }
        }
    }
}
