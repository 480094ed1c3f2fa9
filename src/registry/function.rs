//! The registered function as stored in `registry.json`: its identity, its kept versions and
//! which one is current, and the metadata object the API shows for it.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// How many versions (source and executable) are kept per function.
pub const KEPT_VERSIONS: usize = 10;

/// How a function's stdout becomes the HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponseMode {
    /// `{"message": stdout}`, as GoLambda.
    Json,
    /// stdout is the body, `text/plain`.
    Raw,
    /// stdout is a CGI response: header lines, a blank line, the body.
    Cgi,
    /// A warm FastCGI responder whose STDOUT stream is a CGI response (Unix only).
    Fcgi,
}

impl ResponseMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseMode::Json => "json",
            ResponseMode::Raw => "raw",
            ResponseMode::Cgi => "cgi",
            ResponseMode::Fcgi => "fcgi",
        }
    }
}

/// Everything a registration sets apart from the code: identical settings and code make an
/// identical version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// `"http"` or a cron expression.
    pub trigger: String,
    pub runtime: String,
    pub response: ResponseMode,
    pub timeout_ms: u64,
    #[serde(default)]
    pub memory: Option<u64>,
    /// What a run may write in total (`None`: `--disk`).
    #[serde(default)]
    pub disk: Option<u64>,
    #[serde(default)]
    pub max_concurrency: u32,
    #[serde(default = "default_true")]
    pub network: bool,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Names of the secrets; their values live in the secret store.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// The entry folder of a package (`None`: its root, or a single file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main: Option<String>,
}

fn default_true() -> bool {
    true
}

impl Settings {
    pub fn is_cron(&self) -> bool {
        self.trigger != "http"
    }
}

/// One compiled version of a function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Version {
    pub number: u32,
    /// Hex SHA-256 of the source.
    pub sha256: String,
    pub created_at: DateTime<Utc>,
    pub settings: Settings,
    /// Source file, relative to the data dir.
    pub source: String,
    /// Executable, relative to the data dir.
    pub executable: String,
    /// Size of the executable when it was built; a different size means it must be rebuilt.
    pub executable_size: u64,
    /// The unpacked files of a package, relative to the data dir (`source` is then its
    /// archive as uploaded); `None` for one source file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// For an interpreted runtime, the file a run starts, relative to its tree
    /// (`executable`, a folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
}

/// A registered function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Function {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set when the function is created and never again: a function deleted and registered
    /// anew under its name gets another, so no file of the old one is taken for the new
    /// one's. Empty for functions registered before generations existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub generation: String,
    /// Number of the version that serves.
    pub current: u32,
    #[serde(default)]
    pub paused: bool,
    /// Kept versions, oldest first; the current one is among them.
    pub versions: Vec<Version>,
}

impl Function {
    /// The version that serves. A registry that lost it (hand-edited) falls back to the newest.
    pub fn current_version(&self) -> Option<&Version> {
        self.versions
            .iter()
            .find(|v| v.number == self.current)
            .or_else(|| self.versions.last())
    }

    /// The number the next registration gets.
    pub fn next_number(&self) -> u32 {
        self.versions
            .iter()
            .map(|v| v.number)
            .max()
            .unwrap_or(0)
            .max(self.current)
            + 1
    }

    /// The metadata object of the contract (section 2).
    pub fn metadata(&self, next_run: Option<DateTime<Utc>>) -> Value {
        let Some(version) = self.current_version() else {
            return json!({"name": self.name, "version": self.current});
        };
        let s = &version.settings;
        json!({
            "name": self.name,
            "trigger": s.trigger,
            "runtime": s.runtime,
            "version": version.number,
            "response": s.response.as_str(),
            "timeout_ms": s.timeout_ms,
            "memory": s.memory,
            "disk": s.disk,
            "max_concurrency": s.max_concurrency,
            "network": s.network,
            "env": s.env,
            "secrets": s.secrets,
            "paused": self.paused,
            "sha256": version.sha256,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
            "next_run": next_run.map(rfc3339),
        })
    }
}

/// Renders a time as the API shows it: RFC 3339 in UTC, whole seconds, `Z`.
pub fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}
