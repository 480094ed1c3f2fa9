//! The domain: what can happen to a function. [`app`] holds the server's shared state and
//! the operations that span it (restore, reschedule, delete, cron dispatch); [`register`]
//! parses and performs registrations; [`manage`] rolls back, pauses, resumes and lists
//! versions; [`invoke`] takes hold of a version and runs it, one-shot or warm, through one
//! run path. Uses the layers below (registry, builds, runner, warm, scheduler, history) and
//! the leaf types (`error`, `reply`); never the HTTP layer, which is the only module above
//! it besides the crate root.

pub mod app;
pub mod files;
pub mod invoke;
pub mod manage;
pub mod parse;
pub mod register;
#[cfg(test)]
mod tests;

pub use app::App;
