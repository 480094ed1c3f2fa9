//! The cron timetable at scale: 10,000 functions on a mix of schedules, driven through a
//! simulated day by the same `take_due` / `wake_in` calls the timing thread makes (both
//! clocks advance together: no step). Shows
//! the cost of scheduling, of each wake, and of each fire does not grow with a scan of all
//! functions. Prints a Markdown table.
//!
//! Usage: `cargo bench --bench scheduler`

use chrono::{TimeZone, Utc};
use golambda::scheduler::timetable::Timetable;
use golambda::scheduler::{CronExpr, Now};
use std::time::{Duration, Instant};

const FUNCTIONS: usize = 10_000;

fn main() {
    let expressions = [
        "0 */5 * * * *",
        "0 0 * * * *",
        "30 15 9 * * 1-5",
        "0 0 0 1 * *",
        "@every 90s",
        "0 0 12 * * 0",
        "15 */2 * * * *",
        "CRON_TZ=Europe/Paris 0 30 6 * * *",
    ];
    let start = Utc
        .with_ymd_and_hms(2026, 3, 2, 0, 0, 0)
        .single()
        .expect("a valid start");
    // Both clocks, `since` after the start.
    let at = |since: Duration| Now {
        wall: start + chrono::Duration::from_std(since).expect("a day fits"),
        mono: since,
    };
    let mut table = Timetable::default();
    let scheduling = Instant::now();
    for i in 0..FUNCTIONS {
        let expr = CronExpr::parse(expressions[i % expressions.len()]).expect("parses");
        table.set(&format!("f{i}"), expr, at(Duration::ZERO));
    }
    let scheduling = scheduling.elapsed();
    assert_eq!(table.len(), FUNCTIONS);

    // A simulated day: wake at each next fire time, take what is due.
    let end = Duration::from_secs(24 * 3600);
    let mut now = Duration::ZERO;
    let (mut wakes, mut fires) = (0u64, 0u64);
    let driving = Instant::now();
    while let Some(wake) = table.wake_in(at(now)) {
        now += wake;
        if now > end {
            break;
        }
        fires += table.take_due(at(now)).fires.len() as u64;
        wakes += 1;
    }
    let driving = driving.elapsed();

    println!("| cron timetable, {FUNCTIONS} functions | figure |");
    println!("|---|---|");
    println!(
        "| scheduling all of them | {:.1} ms ({:.1} µs each) |",
        scheduling.as_secs_f64() * 1e3,
        scheduling.as_secs_f64() * 1e6 / FUNCTIONS as f64
    );
    println!(
        "| one simulated day: {wakes} wakes, {fires} fires | {:.0} ms ({:.2} µs per fire, next fire computed included) |",
        driving.as_secs_f64() * 1e3,
        driving.as_secs_f64() * 1e6 / fires.max(1) as f64
    );
}
