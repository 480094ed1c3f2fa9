//! golambda: a small self-hosted serverless platform. Users register Go, Python, Node.js,
//! Rust or shell programs over HTTP; the server builds or checks them, keeps source, build
//! and registry on disk, and runs them as child processes on request or on a cron schedule.
//!
//! Subsystems: [`http`] (accept loop, routing, answers), [`registry`] (what is registered,
//! durably), [`runtimes`] (each language's build and run), [`builds`] (each distinct build kept once), [`runner`]
//! (one child process under limits), [`scheduler`] (cron), [`warm`] (long-lived FastCGI
//! functions), [`packages`] (archives of several files, unpacked safely), [`platform`]
//! (everything OS-specific).

pub mod builds;
pub mod concurrency;
pub mod config;
pub mod credentials;
pub mod error;
pub mod functions;
pub mod history;
pub mod http;
pub mod ids;
#[cfg(test)]
mod layers;
pub mod metrics;
pub mod packages;
pub mod platform;
#[cfg(test)]
pub mod prop;
pub mod registry;
pub mod reply;
pub mod runner;
pub mod runtimes;
pub mod scheduler;
pub mod sync;
pub mod units;
pub mod users;
pub mod warm;

use config::Config;
use functions::App;
use std::sync::Arc;

/// Runs the server until SIGINT/SIGTERM (Ctrl-C/Ctrl-Break on Windows).
pub fn run(config: Config) -> Result<(), String> {
    let level = config.log_level;
    let log_config = simplelog::ConfigBuilder::new()
        .set_time_format_rfc3339()
        .set_target_level(log::LevelFilter::Off)
        .set_thread_level(log::LevelFilter::Off)
        .build();
    // One write per line: stderr is unbuffered, and the logger writes a line in pieces.
    let _ = simplelog::WriteLogger::init(
        level,
        log_config,
        std::io::LineWriter::new(std::io::stderr()),
    );

    let config = credentials::load(config)?;
    platform::raise_open_files_limit();
    platform::tune_allocator();
    let app =
        Arc::new(App::open(config).map_err(|err| format!("cannot open the data dir: {err}"))?);
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
    platform::on_stop_request(move || {
        let _ = stop_tx.try_send(());
    })
    .map_err(|err| format!("cannot install the stop handler: {err}"))?;
    app.restore();
    let served = http::serve(&app, &stop_rx);
    app.scheduler.stop();
    // After every request and cron run has ended: no warm process outlives the server.
    app.warm.stop();
    app.history.close();
    log::info!("stopped");
    platform::stop_finished();
    served.map_err(|err| err.to_string())
}
