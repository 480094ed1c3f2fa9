//! A registered function's life after registration: its kept versions, rollback to one of
//! them (instant: no compilation), and pausing or resuming its cron schedule. Every change
//! is made under the function's name lock, written to the registry, then rescheduled.

use crate::error::ApiError;
use crate::functions::app::App;
use crate::registry::function::rfc3339;
use crate::registry::Function;
use chrono::Utc;
use serde_json::{json, Value};

/// `GET /functions/{name}/versions`: the kept versions, newest first.
pub fn versions(function: &Function) -> Value {
    let list: Vec<Value> = function
        .versions
        .iter()
        .rev()
        .map(|v| {
            json!({
                "version": v.number,
                "sha256": v.sha256,
                "created_at": rfc3339(v.created_at),
                "trigger": v.settings.trigger,
                "current": v.number == function.current,
            })
        })
        .collect();
    Value::Array(list)
}

/// Reads `{"version": N}`.
pub fn parse_version_body(body: &[u8]) -> Result<u32, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|err| ApiError::BodyMalformed {
        reason: err.to_string(),
    })?;
    match value.get("version") {
        None | Some(Value::Null) => Err(ApiError::FieldMissing { field: "version" }),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n >= 1)
            .ok_or_else(|| ApiError::FieldInvalid {
                field: "version",
                reason: "must be a version number such as 3".into(),
            }),
    }
}

/// Makes kept version `number` the current one.
pub fn rollback(app: &App, name: &str, number: u32) -> Result<Value, ApiError> {
    change(app, name, |function| {
        if !function.versions.iter().any(|v| v.number == number) {
            return Err(ApiError::VersionUnknown {
                name: function.name.clone(),
                version: number,
            });
        }
        function.current = number;
        Ok(())
    })
}

/// Stops (`paused = true`) or restarts a cron schedule.
pub fn set_paused(app: &App, name: &str, paused: bool) -> Result<Value, ApiError> {
    change(app, name, |function| {
        let cron = function
            .current_version()
            .is_some_and(|v| v.settings.is_cron());
        if !cron {
            return Err(ApiError::FunctionNotCron {
                name: function.name.clone(),
            });
        }
        function.paused = paused;
        Ok(())
    })
}

fn change(
    app: &App,
    name: &str,
    edit: impl FnOnce(&mut Function) -> Result<(), ApiError>,
) -> Result<Value, ApiError> {
    app.with_name_locked(name, || change_locked(app, name, edit))
}

fn change_locked(
    app: &App,
    name: &str,
    edit: impl FnOnce(&mut Function) -> Result<(), ApiError>,
) -> Result<Value, ApiError> {
    let mut function = app
        .registry
        .get(name)
        .map(|f| (*f).clone())
        .ok_or_else(|| ApiError::FunctionUnknown {
            name: name.chars().take(64).collect(),
        })?;
    edit(&mut function)?;
    function.updated_at = Utc::now();
    app.ensure_executable(&function, None)
        .map_err(|context| ApiError::Internal { context })?;
    app.registry
        .put(function.clone())
        .map_err(|err| ApiError::Internal {
            context: format!("cannot write the registry: {err}"),
        })?;
    app.reschedule(&function, app.schedule_of(&function));
    log::info!(
        "{name} is at version {}{}",
        function.current,
        if function.paused { " (paused)" } else { "" }
    );
    Ok(app.metadata(&function))
}

#[cfg(test)]
mod tests {
    use super::parse_version_body;
    use crate::error::ApiError;

    #[test]
    fn version_bodies() {
        assert_eq!(parse_version_body(br#"{"version":3}"#).ok(), Some(3));
        for bad in [
            &br#"{"version":0}"#[..],
            br#"{"version":"3"}"#,
            br#"{"version":-1}"#,
        ] {
            assert!(matches!(
                parse_version_body(bad),
                Err(ApiError::FieldInvalid {
                    field: "version",
                    ..
                })
            ));
        }
        assert!(matches!(
            parse_version_body(b"{}"),
            Err(ApiError::FieldMissing { field: "version" })
        ));
        assert!(matches!(
            parse_version_body(b"nope"),
            Err(ApiError::BodyMalformed { .. })
        ));
    }
}
