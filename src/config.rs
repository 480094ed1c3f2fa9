//! The server's settings: every flag of the contract's section 1, read from the command
//! line and from `GOLAMBDA_<FLAG>` environment variables (the flag wins). Owns validation of
//! the values and the `--help` text; never touches the file system.

use crate::units::{parse_duration, parse_size};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the server needs to know before it starts.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: String,
    pub allow_unauthenticated: bool,
    pub data_dir: PathBuf,
    pub workers: usize,
    pub max_queue: usize,
    pub timeout: Duration,
    pub max_body: u64,
    pub max_output: u64,
    pub go: PathBuf,
    pub compile_timeout: Duration,
    pub compile_jobs: usize,
    pub max_source: u64,
    /// Largest decoded archive of a package (`--max-package`).
    pub max_package: u64,
    /// Where packages' Go modules come from.
    pub modules: GoModules,
    /// The interpreters and toolchains of the other runtimes, and where their
    /// dependencies may come from.
    pub toolchains: Toolchains,
    pub log_level: log::LevelFilter,
    pub token: Option<String>,
    pub jwt_secret: Option<String>,
    /// Files holding the token and the JWT secret (read at start, see `credentials`).
    pub token_file: Option<PathBuf>,
    pub jwt_secret_file: Option<PathBuf>,
    pub invoke_auth: bool,
    /// Accept JWTs without `exp` (they never expire).
    pub jwt_allow_no_exp: bool,
    /// Default memory limit of a run, in bytes.
    pub memory: u64,
    /// Default bound on what a run may write in total, in bytes.
    pub disk: u64,
    /// Bound on the disk the run history uses, in bytes.
    pub history_disk: u64,
    /// Bound on the request bodies held by accepted async runs, in bytes.
    pub queue_bytes: u64,
    /// Default limit of simultaneous runs of one function (0: none).
    pub max_concurrency: u32,
    /// Requests per second per client address (0: off).
    pub rate_limit: u32,
    /// Uids runs execute as when the server runs as root.
    pub run_uids: (u32, u32),
    /// Data memory of one compilation.
    pub compile_memory: u64,
    /// PEM certificate chain and private key: serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How long a silent client may hold a connection the server is not working on.
    pub read_timeout: Duration,
    /// How long a warm (`fcgi`) process may sit without a request before it is stopped.
    pub warm_idle: Duration,
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Command {
    Serve(Box<Config>),
    Help,
    Version,
}

/// Flags that take a value, with their defaults.
const VALUE_FLAGS: &[(&str, &str)] = &[
    ("addr", "127.0.0.1:8080"),
    ("data-dir", "."),
    ("workers", "32"),
    ("max-queue", "1024"),
    ("timeout", "30s"),
    ("max-body", "6MiB"),
    ("max-output", "6MiB"),
    ("go", "go"),
    ("compile-timeout", "120s"),
    ("compile-jobs", ""),
    ("max-source", "1MiB"),
    ("max-package", "32MiB"),
    ("goproxy", "off"),
    ("goprivate", ""),
    ("gonosumdb", ""),
    ("gosumdb", "off"),
    ("python", PYTHON),
    ("node", "node"),
    ("cargo", "cargo"),
    ("sh", "/bin/sh"),
    ("pip-index-url", "off"),
    ("npm-registry", "off"),
    ("log-level", "info"),
    ("token", ""),
    ("token-file", ""),
    ("jwt-secret", ""),
    ("jwt-secret-file", ""),
    ("memory", "512MiB"),
    ("disk", "512MiB"),
    ("history-disk", "256MiB"),
    ("queue-bytes", "64MiB"),
    ("max-concurrency", "0"),
    ("rate-limit", "0"),
    ("run-uids", "64000-64999"),
    ("compile-memory", "2GiB"),
    ("tls-cert", ""),
    ("tls-key", ""),
    ("read-timeout", "30s"),
    ("warm-idle", "5m"),
];

/// Where the Go modules of packages come from (`--goproxy`, `--goprivate`, `--gonosumdb`,
/// `--gosumdb`, passed to Go as `GOPROXY`, `GOPRIVATE`, `GONOSUMDB`, `GOSUMDB`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoModules {
    pub proxy: String,
    pub private: String,
    pub nosumdb: String,
    pub sumdb: String,
}

impl GoModules {
    /// Whether modules may be downloaded at all.
    pub fn downloads(&self) -> bool {
        !self.proxy.is_empty() && self.proxy != "off"
    }
}

/// The Python interpreter looked for by default.
#[cfg(windows)]
const PYTHON: &str = "python";
#[cfg(not(windows))]
const PYTHON: &str = "python3";

/// The toolchains of the runtimes other than Go (`--python`, `--node`, `--cargo`, `--sh`),
/// and where dependencies may be fetched from (`--pip-index-url`, `--npm-registry`;
/// `None` when off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toolchains {
    pub python: PathBuf,
    pub node: PathBuf,
    pub cargo: PathBuf,
    pub sh: PathBuf,
    pub pip_index_url: Option<String>,
    pub npm_registry: Option<String>,
}

/// `None` for an empty value or `off`.
fn unless_off(value: String) -> Option<String> {
    let value = value.trim().to_string();
    (!value.is_empty() && !value.eq_ignore_ascii_case("off")).then_some(value)
}

/// Flags that are switches.
const SWITCH_FLAGS: &[&str] = &["allow-unauthenticated", "invoke-auth", "jwt-allow-no-exp"];

pub const HELP: &str = "\
golambda: register Go, Python, Node.js, Rust or shell programs over HTTP and run them on request or on a cron schedule

usage: golambda [serve] [--flag value]...

flags (each also read from GOLAMBDA_<FLAG>, upper case, '-' as '_'; the flag wins):
  --addr ADDR               listen address [127.0.0.1:8080]
  --allow-unauthenticated   allow a non-loopback --addr without --token or --jwt-secret
  --token TOKEN             bearer token required on the admin API (visible to local
                            users in the process list: prefer --token-file)
  --token-file FILE         read the token from FILE
  --jwt-secret SECRET       also accept HS256 JWTs signed with this secret as bearer tokens
  --jwt-secret-file FILE    read the JWT secret from FILE
  --jwt-allow-no-exp        accept JWTs without an exp claim (they never expire)
  --invoke-auth             require the credentials on invocations too
  --data-dir DIR            holds plugins/, user_functions/, registry/ [.]
  --workers N               request-handling threads [32]
  --max-queue N             requests waiting for a worker before 503 [1024]
  --timeout DURATION        default time limit of a function run [30s]
  --max-body SIZE           largest request body [6MiB]
  --max-output SIZE         largest stdout of a run [6MiB]
  --go PATH                 Go toolchain used to compile [go on PATH]
  --compile-timeout DURATION  limit of one compilation [120s]
  --compile-jobs N          compilations at once [number of cores]
  --compile-memory SIZE     memory limit of one compilation [2GiB]
  --max-source SIZE         largest decoded source [1MiB]
  --max-package SIZE        largest decoded archive of a package [32MiB]
  --goproxy LIST            where packages' Go modules come from (GOPROXY syntax,
                            file:///path for a mirror); off: vendor them [off]
  --goprivate LIST          GOPRIVATE for module downloads
  --gonosumdb LIST          GONOSUMDB for module downloads
  --gosumdb NAME            GOSUMDB for module downloads; off: go.sum decides [off]
  --python PATH             Python interpreter of the python runtime [python3 on PATH;
                            python on Windows]
  --node PATH               Node.js of the node runtime [node on PATH]
  --cargo PATH              cargo of the rust runtime, with its rustc beside it or on
                            PATH [cargo on PATH]
  --sh PATH                 shell of the sh runtime (not on Windows) [/bin/sh]
  --pip-index-url URL       package index that requirements.txt's wheels may come from;
                            off: only a package's wheels/ folder [off]
  --npm-registry URL        registry for npm ci of a package-lock.json; off: only a
                            package's node_modules/ [off]
  --log-level LEVEL         error, warn, info, debug, trace [info]
  --memory SIZE             default memory limit of a run [512MiB]
  --disk SIZE               default bound on what a run may write in total: its working
                            directory, /tmp and the like (Linux as root) [512MiB]
  --history-disk SIZE       bound on the disk the run history uses [256MiB]
  --queue-bytes SIZE        bound on the request bodies async runs hold until they end
                            [64MiB]
  --max-concurrency N       default limit of simultaneous runs of one function, 0 for none [0]
  --rate-limit N            requests per second per client address, 0 for off [0]
  --run-uids FIRST-LAST     when run as root: the uids runs execute as [64000-64999]
  --tls-cert PEM            serve HTTPS with this certificate chain (with --tls-key)
  --tls-key PEM             the certificate's private key
  --read-timeout DURATION   close a connection whose client sends nothing for this long
                            while the server waits on it (Linux) [30s]
  --warm-idle DURATION      stop a warm (fcgi) process idle for this long [5m]
  -h, --help                this text
  -V, --version             the version
";

impl Command {
    /// Reads the command line (without the program name) and the environment.
    pub fn parse(args: &[String], env: &HashMap<String, String>) -> Result<Command, String> {
        let mut given: HashMap<&'static str, String> = HashMap::new();
        let mut iter = args.iter().peekable();
        if iter.peek().map(|a| a.as_str()) == Some("serve") {
            iter.next();
        }
        while let Some(arg) = iter.next() {
            match arg.as_str() {
                "-h" | "--help" | "help" => return Ok(Command::Help),
                "-V" | "--version" => return Ok(Command::Version),
                _ => {}
            }
            let body = arg
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument '{arg}'; see --help"))?;
            let (name, inline) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (body, None),
            };
            if let Some(&switch) = SWITCH_FLAGS.iter().find(|s| **s == name) {
                let value = inline.unwrap_or_else(|| "true".into());
                given.insert(switch, value);
                continue;
            }
            let (flag, _) = VALUE_FLAGS
                .iter()
                .find(|(f, _)| *f == name)
                .ok_or_else(|| format!("unknown flag '--{name}'; see --help"))?;
            let value = match inline {
                Some(value) => value,
                None => iter
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("flag '--{name}' needs a value"))?,
            };
            given.insert(flag, value);
        }
        let lookup = |flag: &'static str, default: &str| -> String {
            if let Some(value) = given.get(flag) {
                return value.clone();
            }
            let var = format!("GOLAMBDA_{}", flag.to_ascii_uppercase().replace('-', "_"));
            env.get(&var).cloned().unwrap_or_else(|| default.into())
        };
        let value = |flag: &'static str| -> String {
            let default = VALUE_FLAGS
                .iter()
                .find(|(f, _)| *f == flag)
                .map(|(_, d)| *d)
                .unwrap_or("");
            lookup(flag, default)
        };
        let count = |flag: &'static str, min: usize| -> Result<usize, String> {
            let text = value(flag);
            match text.trim().parse::<usize>() {
                Ok(n) if n >= min && n <= 100_000 => Ok(n),
                _ => Err(format!(
                    "--{flag} must be a whole number from {min} to 100000, not '{text}'"
                )),
            }
        };
        let duration = |flag: &'static str| -> Result<Duration, String> {
            let d = parse_duration(&value(flag)).map_err(|e| format!("--{flag}: {e}"))?;
            if d.is_zero() {
                return Err(format!("--{flag} must be longer than zero"));
            }
            Ok(d)
        };
        let size = |flag: &'static str| -> Result<u64, String> {
            parse_size(&value(flag)).map_err(|e| format!("--{flag}: {e}"))
        };
        let switch = |flag: &'static str| -> Result<bool, String> {
            match lookup(flag, "false").to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" | "" => Ok(false),
                other => Err(format!("--{flag} takes true or false, not '{other}'")),
            }
        };
        let compile_jobs = if value("compile-jobs").is_empty() {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            count("compile-jobs", 1)?
        };
        let log_level = match value("log-level").to_ascii_lowercase().as_str() {
            "error" => log::LevelFilter::Error,
            "warn" => log::LevelFilter::Warn,
            "info" => log::LevelFilter::Info,
            "debug" => log::LevelFilter::Debug,
            "trace" => log::LevelFilter::Trace,
            other => {
                return Err(format!(
                    "--log-level must be error, warn, info, debug or trace, not '{other}'"
                ))
            }
        };
        let config = Config {
            addr: value("addr"),
            allow_unauthenticated: switch("allow-unauthenticated")?,
            data_dir: PathBuf::from(value("data-dir")),
            workers: count("workers", 1)?,
            max_queue: count("max-queue", 0)?,
            timeout: duration("timeout")?,
            max_body: size("max-body")?,
            max_output: size("max-output")?,
            go: PathBuf::from(value("go")),
            compile_timeout: duration("compile-timeout")?,
            compile_jobs,
            max_source: size("max-source")?,
            max_package: size("max-package")?,
            modules: GoModules {
                proxy: value("goproxy"),
                private: value("goprivate"),
                nosumdb: value("gonosumdb"),
                sumdb: value("gosumdb"),
            },
            toolchains: Toolchains {
                python: PathBuf::from(value("python")),
                node: PathBuf::from(value("node")),
                cargo: PathBuf::from(value("cargo")),
                sh: PathBuf::from(value("sh")),
                pip_index_url: unless_off(value("pip-index-url")),
                npm_registry: unless_off(value("npm-registry")),
            },
            log_level,
            token: Some(value("token")).filter(|t| !t.is_empty()),
            jwt_secret: Some(value("jwt-secret")).filter(|s| !s.is_empty()),
            token_file: Some(value("token-file"))
                .filter(|f| !f.is_empty())
                .map(PathBuf::from),
            jwt_secret_file: Some(value("jwt-secret-file"))
                .filter(|f| !f.is_empty())
                .map(PathBuf::from),
            invoke_auth: switch("invoke-auth")?,
            jwt_allow_no_exp: switch("jwt-allow-no-exp")?,
            memory: size("memory")?,
            disk: match size("disk")? {
                n if n >= 1 << 20 => n,
                _ => return Err("--disk must be at least 1MiB".into()),
            },
            queue_bytes: size("queue-bytes")?,
            history_disk: match size("history-disk")? {
                n if n >= 1 << 20 => n,
                _ => return Err("--history-disk must be at least 1MiB".into()),
            },
            max_concurrency: u32::try_from(count("max-concurrency", 0)?).unwrap_or(u32::MAX),
            rate_limit: u32::try_from(count("rate-limit", 0)?).unwrap_or(u32::MAX),
            run_uids: crate::users::parse_range(&value("run-uids"))?,
            compile_memory: size("compile-memory")?,
            read_timeout: duration("read-timeout")?,
            warm_idle: duration("warm-idle")?,
            tls: match (value("tls-cert"), value("tls-key")) {
                (cert, key) if cert.is_empty() && key.is_empty() => None,
                (cert, key) if !cert.is_empty() && !key.is_empty() => {
                    Some((PathBuf::from(cert), PathBuf::from(key)))
                }
                _ => {
                    return Err("--tls-cert and --tls-key go together: give both or neither".into())
                }
            },
        };
        for (flag, given, file) in [
            ("token", config.token.is_some(), config.token_file.is_some()),
            (
                "jwt-secret",
                config.jwt_secret.is_some(),
                config.jwt_secret_file.is_some(),
            ),
        ] {
            if given && file {
                return Err(format!("give --{flag} or --{flag}-file, not both"));
            }
        }
        config.check_addr()?;
        Ok(Command::Serve(Box::new(config)))
    }
}

impl Config {
    /// Refuses a listen address reachable from other hosts unless the user said so: the
    /// admin API would be open to anyone who can reach the port.
    fn check_addr(&self) -> Result<(), String> {
        let addr: SocketAddr = self.addr.parse().map_err(|_| {
            format!(
                "--addr must be IP:PORT such as 127.0.0.1:8080, not '{}'",
                self.addr
            )
        })?;
        let credentials = self.token.is_some()
            || self.jwt_secret.is_some()
            || self.token_file.is_some()
            || self.jwt_secret_file.is_some();
        if !addr.ip().is_loopback() && !credentials && !self.allow_unauthenticated {
            return Err(format!(
                "refusing to listen on {addr} without credentials: anyone who can reach it could \
                 register and run code. Give --token (or --jwt-secret) to protect the admin API, \
                 listen on 127.0.0.1 (the default) behind a reverse proxy that authenticates, \
                 or pass --allow-unauthenticated if this network is trusted"
            ));
        }
        Ok(())
    }

    /// Threads that run cron fires, apart from the request pool.
    pub fn cron_workers(&self) -> usize {
        (self.workers / 4).clamp(2, 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Config, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match Command::parse(&args, &env)? {
            Command::Serve(config) => Ok(*config),
            other => Err(format!("not serve: {other:?}")),
        }
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = parse(&[], &[]).expect("defaults parse");
        assert_eq!(c.addr, "127.0.0.1:8080");
        assert_eq!(c.workers, 32);
        assert_eq!(c.max_queue, 1024);
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert_eq!(c.max_body, 6 << 20);
        assert_eq!(c.max_source, 1 << 20);
        assert_eq!(c.go, PathBuf::from("go"));
        assert!(c.compile_jobs >= 1);
        assert_eq!(c.warm_idle, Duration::from_secs(300));
    }

    #[test]
    fn warm_idle_from_flag_or_environment() {
        let c = parse(&[], &[("GOLAMBDA_WARM_IDLE", "1s")]).expect("parses");
        assert_eq!(c.warm_idle, Duration::from_secs(1));
        let c = parse(&["--warm-idle", "500ms"], &[("GOLAMBDA_WARM_IDLE", "1s")]).expect("ok");
        assert_eq!(c.warm_idle, Duration::from_millis(500));
        let err = parse(&["--warm-idle", "0s"], &[]).expect_err("zero refused");
        assert!(err.contains("--warm-idle"), "{err}");
    }

    #[test]
    fn flag_beats_environment() {
        let c = parse(
            &["serve", "--workers", "4", "--timeout=2s"],
            &[("GOLAMBDA_WORKERS", "9"), ("GOLAMBDA_MAX_QUEUE", "7")],
        )
        .expect("parses");
        assert_eq!(c.workers, 4);
        assert_eq!(c.max_queue, 7);
        assert_eq!(c.timeout, Duration::from_secs(2));
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        for (args, needle) in [
            (vec!["--workers", "0"], "--workers"),
            (vec!["--timeout", "soon"], "--timeout"),
            (vec!["--max-body", "lots"], "--max-body"),
            (vec!["--bogus", "1"], "--bogus"),
            (vec!["--addr"], "--addr"),
            (vec!["--log-level", "loud"], "--log-level"),
        ] {
            let err = parse(&args, &[]).expect_err("must fail");
            assert!(err.contains(needle), "{err} should name {needle}");
        }
    }

    #[test]
    fn public_address_needs_explicit_consent() {
        let err = parse(&["--addr", "0.0.0.0:8080"], &[]).expect_err("refused");
        assert!(err.contains("--allow-unauthenticated"));
        let c = parse(&["--addr", "0.0.0.0:8080", "--allow-unauthenticated"], &[]).expect("ok");
        assert!(c.allow_unauthenticated);
        let c = parse(&["--addr", "0.0.0.0:8080"], &[("GOLAMBDA_TOKEN", "t")]).expect("ok");
        assert_eq!(c.token.as_deref(), Some("t"));
        assert!(parse(&["--addr", "0.0.0.0:8080", "--jwt-secret", "s"], &[]).is_ok());
        assert!(parse(&["--addr", "[::1]:0"], &[]).is_ok());
        assert!(parse(&["--addr", "0.0.0.0:8080", "--token-file", "/etc/t"], &[]).is_ok());
    }

    #[test]
    fn a_credential_comes_from_its_flag_or_its_file_not_both() {
        let c = parse(&["--token-file", "/run/t", "--jwt-secret-file=/run/j"], &[]).expect("ok");
        assert_eq!(c.token_file, Some(PathBuf::from("/run/t")));
        assert_eq!(c.jwt_secret_file, Some(PathBuf::from("/run/j")));
        assert!(c.token.is_none());
        let err = parse(&["--token", "t", "--token-file", "/run/t"], &[]).expect_err("both");
        assert!(err.contains("--token-file"), "{err}");
        let err = parse(
            &["--jwt-secret-file", "/j"],
            &[("GOLAMBDA_JWT_SECRET", "s")],
        )
        .expect_err("both");
        assert!(err.contains("--jwt-secret"), "{err}");
    }
}
