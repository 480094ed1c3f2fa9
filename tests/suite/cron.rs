//! Cron triggers: expression forms, time zones, robfig's day-of-week meaning, firing,
//! skipping overlaps, rescheduling, and refusing bad expressions.

use crate::harness::{assert_error, eventually, go, Server};
use crate::register::utc_time;
use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc, Weekday};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

/// The first `hh:mm:ss` UTC strictly after `now` on a day accepted by `day_ok`.
fn next_at(
    now: DateTime<Utc>,
    hms: (u32, u32, u32),
    day_ok: impl Fn(NaiveDate) -> bool,
) -> DateTime<Utc> {
    let mut date = now.date_naive();
    loop {
        let at = date.and_hms_opt(hms.0, hms.1, hms.2).unwrap().and_utc();
        if at > now && day_ok(date) {
            return at;
        }
        date = date.succ_opt().unwrap();
    }
}

/// Registers `name` with `trigger` and asserts next_run equals `expected(now)` for `now`
/// taken just before or just after the registration (in case it straddled a boundary).
#[track_caller]
fn assert_next_run(
    server: &Server,
    name: &str,
    trigger: &str,
    expected: impl Fn(DateTime<Utc>) -> DateTime<Utc>,
) -> Value {
    let before = Utc::now();
    let meta = server.register_ok(name, go::HELLO, json!({ "trigger": trigger }));
    let after = Utc::now();
    assert_eq!(meta["trigger"], trigger, "{meta}");
    let next = utc_time(&meta["next_run"]);
    let candidates = [expected(before), expected(after)];
    assert!(
        candidates.contains(&next),
        "trigger {trigger:?}: next_run {next} ({}) but expected {} ({})",
        next.weekday(),
        candidates[0],
        candidates[0].weekday()
    );
    assert_eq!(server.metadata(name)["next_run"], meta["next_run"]);
    meta
}

fn weekday_in(days: &'static [Weekday]) -> impl Fn(NaiveDate) -> bool {
    move |d: NaiveDate| days.contains(&d.weekday())
}

const MON_FRI: &[Weekday] = &[
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
];
const SUN: &[Weekday] = &[Weekday::Sun];

#[test]
fn day_of_week_has_robfig_meaning() {
    let server = Server::new().start();
    let meta = assert_next_run(&server, "weekdays", "CRON_TZ=UTC 0 0 9 * * 1-5", |now| {
        next_at(now, (9, 0, 0), weekday_in(MON_FRI))
    });
    assert!(
        meta["next_run"].as_str().unwrap().ends_with("T09:00:00Z"),
        "{meta}"
    );
    assert_next_run(&server, "sunday", "CRON_TZ=UTC 0 0 9 * * 0", |now| {
        next_at(now, (9, 0, 0), weekday_in(SUN))
    });
    assert_next_run(&server, "named", "CRON_TZ=UTC 0 0 9 * * MON-FRI", |now| {
        next_at(now, (9, 0, 0), weekday_in(MON_FRI))
    });
    assert_next_run(&server, "sunname", "CRON_TZ=UTC 0 0 9 * * SUN", |now| {
        next_at(now, (9, 0, 0), weekday_in(SUN))
    });
}

#[test]
fn seven_is_also_sunday() {
    let server = Server::new().start();
    assert_next_run(&server, "seven", "CRON_TZ=UTC 0 0 9 * * 7", |now| {
        next_at(now, (9, 0, 0), weekday_in(SUN))
    });
}

#[test]
fn six_fields_have_seconds_and_five_fields_minutes() {
    let server = Server::new().start();
    assert_next_run(&server, "six", "CRON_TZ=UTC 30 15 10 * * *", |now| {
        next_at(now, (10, 15, 30), |_| true)
    });
    assert_next_run(&server, "five", "CRON_TZ=UTC 15 10 * * *", |now| {
        next_at(now, (10, 15, 0), |_| true)
    });
    // months by name, day-of-month: 09:00 on the 1st of January
    assert_next_run(&server, "newyear", "CRON_TZ=UTC 0 0 9 1 JAN *", |now| {
        next_at(now, (9, 0, 0), |d| d.day() == 1 && d.month() == 1)
    });
}

#[test]
fn cron_tz_and_tz_prefixes_select_the_zone() {
    let server = Server::new().env("TZ", "UTC").start();
    // 09:00 in Tokyo (UTC+9, no DST) is 00:00 UTC
    assert_next_run(&server, "tokyo", "CRON_TZ=Asia/Tokyo 0 0 9 * * *", |now| {
        next_at(now, (0, 0, 0), |_| true)
    });
    // 09:30 in Kolkata (UTC+5:30, no DST) is 04:00 UTC
    assert_next_run(&server, "kolkata", "TZ=Asia/Kolkata 0 30 9 * * *", |now| {
        next_at(now, (4, 0, 0), |_| true)
    });
}

#[test]
fn descriptors_are_understood() {
    // Without a prefix the server's local zone applies; TZ=UTC makes it UTC.
    let server = Server::new().env("TZ", "UTC").start();
    let every_hour = |now: DateTime<Utc>| {
        let hour = now
            .date_naive()
            .and_hms_opt(now.hour(), 0, 0)
            .unwrap()
            .and_utc();
        hour + chrono::Duration::hours(1)
    };
    assert_next_run(&server, "hourly", "@hourly", every_hour);
    for descriptor in ["@daily", "@midnight"] {
        assert_next_run(&server, &descriptor[1..], descriptor, |now| {
            next_at(now, (0, 0, 0), |_| true)
        });
    }
    assert_next_run(&server, "weekly", "@weekly", |now| {
        next_at(now, (0, 0, 0), weekday_in(SUN))
    });
    assert_next_run(&server, "monthly", "@monthly", |now| {
        next_at(now, (0, 0, 0), |d| d.day() == 1)
    });
    for descriptor in ["@yearly", "@annually"] {
        assert_next_run(&server, &descriptor[1..], descriptor, |now| {
            next_at(now, (0, 0, 0), |d| d.day() == 1 && d.month() == 1)
        });
    }

    let before = Utc::now();
    let meta = server.register_ok("every", go::HELLO, json!({"trigger": "@every 1m30s"}));
    let after = Utc::now();
    let next = utc_time(&meta["next_run"]);
    assert!(
        next >= before + chrono::Duration::seconds(89)
            && next <= after + chrono::Duration::seconds(91),
        "@every 1m30s registered at {before}: next_run {next}"
    );
}

fn starts(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("start"))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_second_fires_runs_with_cron_trigger_and_logs_each_fire() {
    let server = Server::new().start();
    let out = server.io_path("ticks");
    let before = Utc::now();
    let meta = server.register_ok(
        "ticker",
        &go::appender(0),
        json!({"trigger": "@every 1s", "env": {"OUT": out.display().to_string()}}),
    );
    let next = utc_time(&meta["next_run"]);
    assert!(
        next >= before - chrono::Duration::seconds(1)
            && next <= Utc::now() + chrono::Duration::seconds(2),
        "@every 1s: next_run {next} at {before}"
    );
    assert!(
        eventually(Duration::from_secs(8), || starts(&out).len() >= 2),
        "expected 2 fires within 8s, file has {:?}",
        std::fs::read_to_string(&out).unwrap_or_default()
    );
    assert!(
        starts(&out).iter().all(|l| l == "start cron"),
        "GOLAMBDA_TRIGGER of a cron run: {:?}",
        starts(&out)
    );
    server.expect_log("cron fire ticker", Duration::from_secs(2));
    server.expect_log_words(
        &["run ticker ", "trigger=cron", "status=ok"],
        Duration::from_secs(2),
    );
}

#[test]
fn a_fire_overlapping_a_running_run_is_skipped_and_logged() {
    let server = Server::new().start();
    let out = server.io_path("slow");
    server.register_ok(
        "slowtick",
        &go::appender(2500),
        json!({"trigger": "@every 1s", "env": {"OUT": out.display().to_string()}}),
    );
    server.expect_log("cron skip slowtick", Duration::from_secs(10));
    // runs never overlapped: every start is followed by its end before the next start
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let kinds: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert!(!kinds.is_empty(), "the function never ran");
    for pair in kinds.windows(2) {
        assert_ne!(pair, ["start", "start"], "two runs overlapped: {kinds:?}");
    }
}

/// Waits for quick cron runs to settle, then proves no fire happens for 2.5 s.
fn assert_no_more_fires(server: &Server, name: &str, outs: &[&Path]) {
    std::thread::sleep(Duration::from_millis(400));
    let counts: Vec<usize> = outs.iter().map(|o| starts(o).len()).collect();
    let fires = server.log_count(&format!("cron fire {name}"));
    std::thread::sleep(Duration::from_millis(2500));
    let later: Vec<usize> = outs.iter().map(|o| starts(o).len()).collect();
    assert_eq!(
        counts, later,
        "runs happened after the schedule was removed"
    );
    assert_eq!(
        fires,
        server.log_count(&format!("cron fire {name}")),
        "fires logged after removal"
    );
}

#[test]
fn delete_unschedules_at_once() {
    let server = Server::new().start();
    let out = server.io_path("ticks");
    server.register_ok(
        "doomed",
        &go::appender(0),
        json!({"trigger": "@every 1s", "env": {"OUT": out.display().to_string()}}),
    );
    assert!(
        eventually(Duration::from_secs(6), || !starts(&out).is_empty()),
        "never fired"
    );
    server.delete("/functions/doomed").expect(204);
    assert_no_more_fires(&server, "doomed", &[&out]);
}

#[test]
fn re_registering_reschedules_at_once() {
    let server = Server::new().start();
    let out_http = server.io_path("to-http");
    let out_yearly = server.io_path("to-yearly");
    for (name, out) in [("to-http", &out_http), ("to-yearly", &out_yearly)] {
        server.register_ok(
            name,
            &go::appender(0),
            json!({"trigger": "@every 1s", "env": {"OUT": out.display().to_string()}}),
        );
    }
    assert!(
        eventually(Duration::from_secs(6), || !starts(&out_http).is_empty()
            && !starts(&out_yearly).is_empty()),
        "never fired"
    );

    let now = Utc::now();
    let meta = server.register_ok(
        "to-http",
        &go::appender(0),
        json!({"trigger": "http", "env": {"OUT": out_http.display().to_string()}}),
    );
    assert_eq!(meta["version"], 2, "{meta}");
    assert!(
        meta["next_run"].is_null(),
        "http function has next_run {meta}"
    );
    let meta = server.register_ok(
        "to-yearly",
        &go::appender(0),
        json!({"trigger": "CRON_TZ=UTC 0 0 0 1 1 *", "env": {"OUT": out_yearly.display().to_string()}}),
    );
    assert_eq!(
        utc_time(&meta["next_run"]),
        next_at(now, (0, 0, 0), |d| d.day() == 1 && d.month() == 1),
        "{meta}"
    );
    assert_no_more_fires(&server, "to-", &[&out_http, &out_yearly]);
    // now an http function: invocable at its path
    assert_eq!(server.get("/to-http").message(), "ok\n");
}

#[test]
fn bad_cron_expressions_are_400_naming_trigger_and_change_nothing() {
    let server = Server::new().start();
    let first = server.register_ok("steady", go::HELLO, json!({}));
    let registry_before = std::fs::read(server.data_dir().join("registry/registry.json")).unwrap();
    let files_before = server.stored_files();

    let bad = [
        "not a cron",
        "* * * *",
        "0 0 9 * * * 2030",
        "* * * * * * * *",
        "61 * * * * *",
        "0 0 25 * * *",
        "0 0 9 32 * *",
        "0 0 9 * 13 *",
        "0 0 9 * * 8",
        "0 0 9 * * FUNDAY",
        "@often",
        "@every 500ms",
        "@every -1s",
        "@every banana",
        "CRON_TZ=Mars/Olympus 0 0 9 * * *",
        "",
    ];
    for trigger in bad {
        let response =
            server.register("steady", &go::say("changed"), json!({ "trigger": trigger }));
        assert_error(&response, 400, &["trigger"]);
        let response = server.register("ghost", go::HELLO, json!({ "trigger": trigger }));
        assert_error(&response, 400, &["trigger"]);
    }

    assert_eq!(server.metadata("steady"), first);
    assert_eq!(server.get("/steady").message(), "Hello, World!\n");
    server.get("/functions/ghost").expect(404);
    assert_eq!(
        std::fs::read(server.data_dir().join("registry/registry.json")).unwrap(),
        registry_before,
        "registry.json changed"
    );
    assert_eq!(
        server.stored_files(),
        files_before,
        "files in the data dir changed"
    );
}

#[test]
fn a_cron_function_at_its_path_is_409_and_runs_through_invoke() {
    let server = Server::new().start();
    server.register_ok(
        "nightly",
        go::ECHO,
        json!({"trigger": "CRON_TZ=UTC 0 0 0 1 1 *"}),
    );
    let conflict = server.get("/nightly");
    assert_error(&conflict, 409, &["/functions/nightly/invoke"]);
    assert_eq!(
        server
            .post("/functions/nightly/invoke", "by hand")
            .message(),
        "by hand"
    );
}

#[test]
fn schedules_keep_firing_when_the_server_s_wall_clock_steps_back() {
    // The debug build's scheduler adds the seconds in this file to its wall clock.
    let shift = std::env::temp_dir().join(format!("golambda-wall-shift-{}", std::process::id()));
    std::fs::write(&shift, "0").expect("shift file");
    let server = Server::new()
        .env("GOLAMBDA_TEST_WALL_SHIFT_FILE", shift.display().to_string())
        .start();
    let every = server.io_path("every");
    let calendar = server.io_path("calendar");
    for (name, out, trigger) in [
        ("every", &every, "@every 1s"),
        ("calendar", &calendar, "CRON_TZ=UTC * * * * * *"),
    ] {
        let env = json!({"OUT": out.display().to_string()});
        server.register_ok(
            name,
            &go::appender(0),
            json!({"trigger": trigger, "env": env}),
        );
    }
    assert!(eventually(Duration::from_secs(8), || {
        !starts(&every).is_empty() && !starts(&calendar).is_empty()
    }));
    let (e, c) = (starts(&every).len(), starts(&calendar).len());
    std::fs::write(&shift, "-3600").expect("step the clock back");
    assert!(
        eventually(Duration::from_secs(5), || starts(&every).len() >= e + 3
            && starts(&calendar).len() >= c + 3),
        "fires in 5 s after the step: @every {}, calendar {}",
        starts(&every).len() - e,
        starts(&calendar).len() - c
    );
    let next = utc_time(&server.metadata("calendar")["next_run"]);
    let behind = Utc::now() - next;
    assert!(
        behind > chrono::Duration::minutes(59) && behind < chrono::Duration::minutes(61),
        "next_run follows the server's clock, an hour back: {next}"
    );
    server.expect_log(
        "the wall clock stepped back by 3600",
        Duration::from_secs(5),
    );
    let _ = std::fs::remove_file(&shift);
}
