//! Integration tests of the golambda server: one test binary (as casey/just does) so that the
//! crate links once. Every test starts the real server binary on port 0 in its own temp dir,
//! talks to it over plain HTTP/1.1 and compiles real Go functions with the installed toolchain.
//!
//! Cargo builds every `tests/*.rs` as a separate binary, so the test modules live in
//! `tests/suite/` and the harness in `tests/harness/`; this file is the only crate root.
#![cfg(unix)]

mod harness;

#[path = "suite/attacks.rs"]
mod attacks;
#[path = "suite/concurrency.rs"]
mod concurrency;
#[path = "suite/crash.rs"]
mod crash;
#[path = "suite/cron.rs"]
mod cron;
#[path = "suite/durability.rs"]
mod durability;
#[path = "suite/errors.rs"]
mod errors;
#[path = "suite/hardening.rs"]
mod hardening;
#[path = "suite/hostile.rs"]
mod hostile;
#[path = "suite/invoke.rs"]
mod invoke;
#[path = "suite/leftovers.rs"]
mod leftovers;
#[path = "suite/lifecycle.rs"]
mod lifecycle;
#[path = "suite/limits.rs"]
mod limits;
#[path = "suite/management.rs"]
mod management;
#[path = "suite/metrics.rs"]
mod metrics;
#[path = "suite/modes.rs"]
mod modes;
#[path = "suite/packages.rs"]
mod packages;
#[path = "suite/register.rs"]
mod register;
#[path = "suite/runs.rs"]
mod runs;
#[path = "suite/runtimes.rs"]
mod runtimes;
#[path = "suite/scale.rs"]
mod scale;
#[path = "suite/slow_clients.rs"]
mod slow_clients;
#[path = "suite/versions.rs"]
mod versions;
#[path = "suite/warm.rs"]
mod warm;
