//! Cron trigger expressions: parsing and "next fire time" maths.
//!
//! This module owns the meaning of a function's schedule string. The contract
//! follows GoLambda, which used Go's robfig/cron v3 with a seconds field:
//!
//! * `sec min hour day-of-month month day-of-week` (6 fields), or the classic
//!   5-field Unix form (minute precision, second 0 implied);
//! * `*`, `?` (same as `*`, in any field, as in robfig), lists `a,b`,
//!   ranges `a-b`, steps `*/n`, `a-b/n` and `a/n` (meaning `a-max/n`);
//!   month names `JAN`-`DEC`, weekday names `SUN`-`SAT`,
//!   weekdays `0`-`6` with Sunday = 0 and `7` also accepted as Sunday;
//! * day-of-month and day-of-week are OR-ed when both are restricted and
//!   AND-ed when either is `*`/`?` (robfig's rule);
//! * descriptors `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`,
//!   `@midnight`, `@hourly` and `@every <Go duration>` (at least one second;
//!   the interval is truncated to whole seconds, as robfig does);
//! * an optional `CRON_TZ=Area/City ` or `TZ=Area/City ` prefix selects the
//!   zone; otherwise the server's local zone is used. Wall-clock times that
//!   do not exist (spring-forward gap) are skipped, and wall-clock times that
//!   occur twice (fall-back) fire only at their first occurrence.
//!
//! Field expressions are expanded here into explicit value sets and then
//! handed to the `cron` crate (which numbers weekdays 1-7 from Sunday and
//! always ANDs the two day fields) for the calendar search. Calendar
//! schedules fire only between 1970 and 2100, the range the `cron` crate
//! searches; later than that `next_after` returns `None`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Local, Offset, SubsecRound, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

/// Why a trigger string was rejected. `Display` gives one actionable sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError {
    message: String,
}

impl CronError {
    fn new(message: impl Into<String>) -> CronError {
        CronError {
            message: message.into(),
        }
    }
}

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CronError {}

/// A parsed trigger: either a calendar schedule or a fixed `@every` interval.
#[derive(Clone, Debug)]
pub struct CronExpr {
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    /// `@every d`: fires at (after truncated to whole seconds) + d.
    Every(TimeDelta),
    /// Field schedule; a time fires if any of the schedules matches it
    /// (two schedules implement the day-of-month OR day-of-week rule).
    Calendar {
        zone: Zone,
        schedules: Vec<cron::Schedule>,
    },
}

#[derive(Clone, Copy, Debug)]
enum Zone {
    Local,
    Named(Tz),
}

/// Calendar schedules never fire after this year (limit of the `cron` crate).
const LAST_YEAR: i32 = 2100;

struct FieldSpec {
    name: &'static str,
    min: u32,
    /// Largest value accepted when written explicitly.
    max: u32,
    /// Upper end used by `*` and `a/n` (differs from `max` only for weekdays).
    star_max: u32,
    names: &'static [&'static str],
    /// Value of `names[0]`.
    name_base: u32,
}

const MONTH_NAMES: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAY_NAMES: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const fn spec(name: &'static str, min: u32, max: u32) -> FieldSpec {
    FieldSpec {
        name,
        min,
        max,
        star_max: max,
        names: &[],
        name_base: 0,
    }
}

const FIELDS: [FieldSpec; 6] = [
    spec("second", 0, 59),
    spec("minute", 0, 59),
    spec("hour", 0, 23),
    spec("day-of-month", 1, 31),
    FieldSpec {
        names: MONTH_NAMES,
        name_base: 1,
        ..spec("month", 1, 12)
    },
    FieldSpec {
        star_max: 6,
        names: DAY_NAMES,
        ..spec("day-of-week", 0, 7)
    },
];
const DOW: usize = 5;
const DOM: usize = 3;

/// One expanded field: the set of allowed values as a bit mask, and robfig's
/// "star" flag (the field contained `*` or `?` without a step above 1).
struct Field {
    mask: u64,
    star: bool,
}

impl CronExpr {
    /// Parses a trigger string (everything except the literal "http", which the caller handles).
    pub fn parse(expr: &str) -> Result<CronExpr, CronError> {
        let text = expr.trim();
        if text.is_empty() {
            return Err(CronError::new(
                "the cron expression is empty; write e.g. \"0 */5 * * * *\" or \"@hourly\"",
            ));
        }
        let (zone, body) = split_zone(text)?;
        if !body.starts_with('@') {
            return calendar(zone, body);
        }
        let mut words = body.split_whitespace();
        let word = words.next().unwrap_or_default();
        if word == "@every" {
            let Some(duration) = words.next() else {
                return Err(CronError::new(
                    "@every needs a duration after it, e.g. \"@every 1m30s\"",
                ));
            };
            if words.next().is_some() {
                return Err(CronError::new(format!(
                    "@every takes a single duration without spaces, got {}",
                    quote(body)
                )));
            }
            return Ok(CronExpr {
                kind: Kind::Every(parse_every(duration)?),
            });
        }
        let fields = match word {
            "@yearly" | "@annually" => "0 0 0 1 1 *",
            "@monthly" => "0 0 0 1 * *",
            "@weekly" => "0 0 0 * * 0",
            "@daily" | "@midnight" => "0 0 0 * * *",
            "@hourly" => "0 0 * * * *",
            _ => {
                return Err(CronError::new(format!(
                    "unknown descriptor {}; use @yearly, @annually, @monthly, @weekly, \
                     @daily, @midnight, @hourly or @every <duration>",
                    quote(word)
                )))
            }
        };
        if words.next().is_some() {
            return Err(CronError::new(format!(
                "descriptor {word} cannot be followed by more fields, got {}",
                quote(body)
            )));
        }
        calendar(zone, fields)
    }

    /// The interval of an `@every` trigger; None for a calendar schedule.
    pub fn interval(&self) -> Option<TimeDelta> {
        match &self.kind {
            Kind::Every(interval) => Some(*interval),
            Kind::Calendar { .. } => None,
        }
    }

    /// First fire time strictly after `after`, or None if the schedule never fires again.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Every(interval) => after.trunc_subsecs(0).checked_add_signed(*interval),
            Kind::Calendar { zone, schedules } => {
                if after.year() > LAST_YEAR {
                    return None;
                }
                // The cron crate cannot search from before year 0; nothing
                // fires before 1970 anyway, so start the search just before.
                let floor = DateTime::from_timestamp(-86_400, 0)?;
                let start = after.max(floor);
                schedules
                    .iter()
                    .filter_map(|schedule| match zone {
                        Zone::Local => next_in_zone(schedule, &Local, start),
                        Zone::Named(tz) => next_in_zone(schedule, tz, start),
                    })
                    .filter(|t| *t > after)
                    .min()
            }
        }
    }
}

/// Next fire time of one cron-crate schedule evaluated in zone `tz`. A wall time that
/// happens twice (a fall-back) fires once, at its first pass, as robfig's does: each
/// candidate is taken at its first pass (the crate may hand either pass), and one whose
/// first pass is not after `after` is skipped.
fn next_in_zone<Z: TimeZone>(
    schedule: &cron::Schedule,
    tz: &Z,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let local = after.with_timezone(tz);
    schedule
        .after(&local)
        .map(|candidate| first_pass(&candidate, tz))
        .find(|first| *first > after)
}

/// The first instant whose wall time in `tz` is that of `at`. Only the instant-to-wall
/// direction is asked of the zone (chrono's `Local` names the two passes of a repeated
/// wall time in the other order from chrono-tz, and not always both): a wall clock set
/// back repeats a time at most two hours earlier, and only where the offset two hours
/// before is larger.
fn first_pass<Z: TimeZone>(at: &DateTime<Z>, tz: &Z) -> DateTime<Utc> {
    let utc = at.with_timezone(&Utc);
    let offset = |t: &DateTime<Z>| t.offset().fix().local_minus_utc();
    let window = TimeDelta::hours(2);
    let set_back = utc
        .checked_sub_signed(window)
        .is_some_and(|before| offset(&before.with_timezone(tz)) > offset(at));
    if !set_back {
        return utc;
    }
    let wall = at.naive_local();
    [window, TimeDelta::hours(1), TimeDelta::minutes(30)]
        .into_iter()
        .filter_map(|back| utc.checked_sub_signed(back))
        .find(|earlier| earlier.with_timezone(tz).naive_local() == wall)
        .unwrap_or(utc)
}

/// Splits an optional `CRON_TZ=zone ` / `TZ=zone ` prefix off the expression.
fn split_zone(text: &str) -> Result<(Zone, &str), CronError> {
    for prefix in ["CRON_TZ=", "TZ="] {
        let Some(rest) = text.strip_prefix(prefix) else {
            continue;
        };
        let Some((name, body)) = rest.split_once(char::is_whitespace) else {
            return Err(CronError::new(format!(
                "the {prefix} prefix must be followed by a zone name, whitespace and a schedule, \
                 e.g. \"{prefix}Europe/Berlin 0 0 9 * * *\""
            )));
        };
        let body = body.trim();
        if body.is_empty() {
            return Err(CronError::new(format!(
                "the {prefix}{name} prefix is not followed by a schedule"
            )));
        }
        if name == "Local" {
            return Ok((Zone::Local, body));
        }
        // Go's time.LoadLocation("") is UTC, so `TZ= …` is UTC to robfig.
        if name.is_empty() {
            return Ok((Zone::Named(Tz::UTC), body));
        }
        return match Tz::from_str(name) {
            Ok(tz) => Ok((Zone::Named(tz), body)),
            Err(_) => Err(CronError::new(format!(
                "unknown time zone {} in the {prefix} prefix; use an IANA name such as \
                 America/New_York or UTC",
                quote(name)
            ))),
        };
    }
    Ok((Zone::Local, text))
}

/// Parses 5 or 6 whitespace-separated fields into one or two cron-crate schedules.
fn calendar(zone: Zone, body: &str) -> Result<CronExpr, CronError> {
    let mut words: Vec<&str> = body.split_whitespace().collect();
    match words.len() {
        6 => {}
        5 => words.insert(0, "0"),
        n => {
            return Err(CronError::new(format!(
                "expected 6 fields (second minute hour day-of-month month day-of-week) or 5 \
                 (minute hour day-of-month month day-of-week), found {n}"
            )))
        }
    }
    let mut parsed = Vec::with_capacity(6);
    for (word, spec) in words.iter().zip(FIELDS.iter()) {
        parsed.push(parse_field(word, spec)?);
    }
    let text: Vec<String> = parsed
        .iter()
        .zip(FIELDS.iter())
        .enumerate()
        .map(|(i, (field, spec))| crate_list(field.mask, spec, if i == DOW { 1 } else { 0 }))
        .collect();
    let (dom, dow) = (&parsed[DOM], &parsed[DOW]);
    let day_pairs = if dom.star || dow.star {
        vec![(text[DOM].as_str(), text[DOW].as_str())]
    } else {
        vec![(text[DOM].as_str(), "*"), ("*", text[DOW].as_str())]
    };
    let mut schedules = Vec::with_capacity(day_pairs.len());
    for (dom_text, dow_text) in day_pairs {
        let translated = format!(
            "{} {} {} {} {} {}",
            text[0], text[1], text[2], dom_text, text[4], dow_text
        );
        let schedule = cron::Schedule::from_str(&translated).map_err(|e| {
            CronError::new(format!(
                "the cron expression {} could not be translated ({e}); please report this",
                quote(body)
            ))
        })?;
        schedules.push(schedule);
    }
    Ok(CronExpr {
        kind: Kind::Calendar { zone, schedules },
    })
}

/// Renders a value mask for the cron crate: `*` when every value is allowed,
/// otherwise an explicit list, each value shifted by `shift`.
fn crate_list(mask: u64, spec: &FieldSpec, shift: u32) -> String {
    let full = (spec.min..=spec.star_max).fold(0u64, |m, v| m | (1 << v));
    if mask == full {
        return "*".to_string();
    }
    let values: Vec<String> = (0..64)
        .filter(|v| mask & (1u64 << v) != 0)
        .map(|v| (v + shift).to_string())
        .collect();
    values.join(",")
}

/// Expands one field (comma list of `*`, `?`, values, ranges and steps).
fn parse_field(text: &str, spec: &FieldSpec) -> Result<Field, CronError> {
    let name = spec.name;
    let mut field = Field {
        mask: 0,
        star: false,
    };
    // An empty entry (`1,,15`) is no entry, as robfig reads it.
    let parts: Vec<&str> = text.split(',').filter(|part| !part.is_empty()).collect();
    if parts.is_empty() {
        return Err(CronError::new(format!(
            "the {name} field {} lists no value",
            quote(text)
        )));
    }
    for part in parts {
        let mut pieces = part.split('/');
        let range = pieces.next().unwrap_or_default();
        let step_text = pieces.next();
        if pieces.next().is_some() {
            return Err(CronError::new(format!(
                "{name} entry {} has more than one '/'",
                quote(part)
            )));
        }
        let step = match step_text {
            None => 1,
            Some(s) => match parse_number(s) {
                Some(Ok(0)) => {
                    return Err(CronError::new(format!(
                        "{name} step in {} must be at least 1",
                        quote(part)
                    )))
                }
                Some(Ok(n)) => n,
                Some(Err(())) => u32::MAX,
                None => {
                    return Err(CronError::new(format!(
                        "{name} step in {} is not a whole number",
                        quote(part)
                    )))
                }
            },
        };
        // robfig reads `*-5` (and `?-anything`) as `*`: the rest is never looked at.
        let star = |s: &str| s == "*" || s == "?" || s.starts_with("*-") || s.starts_with("?-");
        let (start, end, is_star) = if star(range) {
            (spec.min, spec.star_max, true)
        } else {
            let mut ends = range.split('-');
            let first = ends.next().unwrap_or_default();
            let second = ends.next();
            if ends.next().is_some() {
                return Err(CronError::new(format!(
                    "{name} entry {} has more than one '-'",
                    quote(part)
                )));
            }
            let start = parse_value(first, spec)?;
            let end = match second {
                Some(s) => parse_value(s, spec)?,
                // `a/n` means `a-max/n`; a plain value is just itself.
                None if step_text.is_some() => spec.star_max.max(start),
                None => start,
            };
            if start > end {
                return Err(CronError::new(format!(
                    "{name} range {} is backwards: the start must not be greater than the end",
                    quote(part)
                )));
            }
            (start, end, false)
        };
        for value in (start..=end).step_by(step as usize) {
            // Weekday 7 is another spelling of Sunday (0).
            let value = if spec.max == 7 && value == 7 {
                0
            } else {
                value
            };
            field.mask |= 1 << value;
        }
        field.star |= is_star && step <= 1;
    }
    Ok(field)
}

/// Parses one value (number or, for months and weekdays, a 3-letter name)
/// and checks it against the field's bounds.
fn parse_value(text: &str, spec: &FieldSpec) -> Result<u32, CronError> {
    let (name, min, max) = (spec.name, spec.min, spec.max);
    if let Some(i) = spec.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Ok(spec.name_base + i as u32);
    }
    match parse_number(text) {
        Some(Ok(v)) if (min..=max).contains(&v) => Ok(v),
        Some(_) => Err(CronError::new(format!(
            "{name} value {} is out of range {min}-{max}",
            text_excerpt(text)
        ))),
        None if text.is_empty() => Err(CronError::new(format!(
            "a {name} range is missing a value on one side of '-'"
        ))),
        None if spec.names.is_empty() => Err(CronError::new(format!(
            "{name} value {} is not a number",
            quote(text)
        ))),
        None => Err(CronError::new(format!(
            "{name} value {} is neither a number nor a name such as {} or {}",
            quote(text),
            spec.names[0],
            spec.names[1]
        ))),
    }
}

/// `None`: not all ASCII digits; `Some(Err)`: digits but too large for u32.
fn parse_number(text: &str) -> Option<Result<u32, ()>> {
    // Go's strconv.Atoi, which robfig uses, takes a leading `+`.
    let text = text.strip_prefix('+').unwrap_or(text);
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse::<u32>().map_err(|_| ()))
}

/// Parses a Go duration for `@every` and truncates it to whole seconds.
fn parse_every(text: &str) -> Result<TimeDelta, CronError> {
    let nanos = parse_go_duration(text).map_err(|reason| {
        CronError::new(format!(
            "@every duration {} is invalid ({reason}); use Go duration syntax such as \
             90s, 1m30s or 1.5h",
            quote(text)
        ))
    })?;
    if nanos <= 0 {
        return Err(CronError::new(format!(
            "@every duration {} must be positive",
            quote(text)
        )));
    }
    let seconds = nanos / 1_000_000_000;
    if seconds < 1 {
        return Err(CronError::new(format!(
            "@every duration {} is shorter than the minimum of 1s",
            quote(text)
        )));
    }
    TimeDelta::try_seconds(seconds as i64)
        .ok_or_else(|| CronError::new(format!("@every duration {} is too long", quote(text))))
}

/// Go's `time.ParseDuration`: `[-+]` then one or more `<number>[.<fraction>]<unit>`
/// with units ns, us, µs, μs, ms, s, m, h; a bare `0` is allowed. Returns
/// signed nanoseconds, limited to Go's range (about 292 years).
fn parse_go_duration(text: &str) -> Result<i128, &'static str> {
    const LIMIT: u128 = i64::MAX as u128;
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err("no number");
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let bytes = rest.as_bytes();
        let int_len = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
        let mut whole: u128 = 0;
        for b in &bytes[..int_len] {
            whole = whole * 10 + u128::from(b - b'0');
            if whole > LIMIT {
                return Err("too large");
            }
        }
        let mut pos = int_len;
        let (mut frac, mut scale, mut frac_len) = (0u128, 1u128, 0usize);
        if bytes.get(pos) == Some(&b'.') {
            pos += 1;
            for b in bytes[pos..].iter().take_while(|b| b.is_ascii_digit()) {
                if scale < 1_000_000_000_000_000_000 {
                    frac = frac * 10 + u128::from(b - b'0');
                    scale *= 10;
                }
                frac_len += 1;
            }
            pos += frac_len;
        }
        if int_len == 0 && frac_len == 0 {
            return Err("expected a number");
        }
        // ASCII digits and '.' are char boundaries, so these slices are safe.
        let unit_len = bytes[pos..]
            .iter()
            .take_while(|b| !b.is_ascii_digit() && **b != b'.')
            .count();
        let unit = match &rest[pos..pos + unit_len] {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err("missing unit"),
            _ => return Err("unknown unit"),
        };
        total += whole * unit + frac * unit / scale;
        if total > LIMIT {
            return Err("too large");
        }
        rest = &rest[pos + unit_len..];
    }
    let total = total as i128;
    Ok(if negative { -total } else { total })
}

/// Quotes user text for an error message, shortened if very long.
fn quote(text: &str) -> String {
    format!("\"{}\"", text_excerpt(text))
}

fn text_excerpt(text: &str) -> String {
    const MAX: usize = 40;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let head: String = text.chars().take(MAX).collect();
        format!("{head}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Timelike, Weekday};
    use std::time::{Duration as StdDuration, Instant};

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn parse(expr: &str) -> CronExpr {
        CronExpr::parse(expr).unwrap_or_else(|e| panic!("{expr:?} should parse: {e}"))
    }

    fn err(expr: &str) -> String {
        match CronExpr::parse(expr) {
            Ok(c) => panic!("{expr:?} should be rejected, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn next(expr: &str, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        parse(expr).next_after(after)
    }

    /// The first `n` fire times strictly after `after`.
    fn fires(expr: &str, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let cron = parse(expr);
        let mut out = Vec::new();
        let mut t = after;
        while out.len() < n {
            match cron.next_after(t) {
                Some(f) => {
                    assert!(f > t, "{expr}: {f} not after {t}");
                    out.push(f);
                    t = f;
                }
                None => break,
            }
        }
        out
    }

    fn same_fires(a: &str, b: &str, after: DateTime<Utc>, n: usize) {
        assert_eq!(fires(a, after, n), fires(b, after, n), "{a:?} vs {b:?}");
    }

    // ---- basic field expressions -------------------------------------------------

    #[test]
    fn six_fields_with_seconds() {
        let start = utc(2026, 3, 1, 10, 0, 0);
        assert_eq!(
            fires("CRON_TZ=UTC 15 30 10 * * *", start, 2),
            vec![utc(2026, 3, 1, 10, 30, 15), utc(2026, 3, 2, 10, 30, 15)]
        );
        assert_eq!(
            fires("TZ=UTC */20 * * * * *", start, 4),
            vec![
                utc(2026, 3, 1, 10, 0, 20),
                utc(2026, 3, 1, 10, 0, 40),
                utc(2026, 3, 1, 10, 1, 0),
                utc(2026, 3, 1, 10, 1, 20),
            ]
        );
    }

    #[test]
    fn five_fields_mean_minute_precision() {
        let start = utc(2026, 3, 1, 10, 0, 0);
        assert_eq!(
            fires("CRON_TZ=UTC 30 9 * * *", start, 2),
            vec![utc(2026, 3, 2, 9, 30, 0), utc(2026, 3, 3, 9, 30, 0)]
        );
        same_fires("TZ=UTC */15 * * * *", "TZ=UTC 0 */15 * * * *", start, 10);
        same_fires("TZ=UTC * * * * *", "TZ=UTC 0 * * * * *", start, 5);
        assert_eq!(
            next("TZ=UTC * * * * *", utc(2026, 3, 1, 10, 0, 30)),
            Some(utc(2026, 3, 1, 10, 1, 0))
        );
    }

    #[test]
    fn field_count_errors() {
        for expr in ["*", "* * * *", "* * * * * * *", "0 0 0 1 1 * 2026"] {
            let msg = err(expr);
            assert!(msg.contains("expected 6 fields"), "{msg}");
            assert!(msg.contains("or 5"), "{msg}");
        }
        assert!(err("* * * *").contains("found 4"));
        assert!(err("* * * * * * *").contains("found 7"));
    }

    #[test]
    fn whitespace_is_flexible() {
        let start = utc(2026, 3, 1, 10, 0, 0);
        let expected = fires("CRON_TZ=UTC 0 30 10 * * *", start, 3);
        for expr in [
            "CRON_TZ=UTC   0 30 10 * * *",
            "  CRON_TZ=UTC\t0\t30  10 *\t\t* *  ",
            "CRON_TZ=UTC\t0 30 10 * * *\n",
        ] {
            assert_eq!(fires(expr, start, 3), expected, "{expr:?}");
        }
    }

    #[test]
    fn lists_ranges_and_steps() {
        let start = utc(2026, 3, 1, 0, 0, 0);
        same_fires(
            "TZ=UTC 0 5/20 * * * *",
            "TZ=UTC 0 5,25,45 * * * *",
            start,
            12,
        );
        same_fires(
            "TZ=UTC 0 10-30/10 * * * *",
            "TZ=UTC 0 10,20,30 * * * *",
            start,
            12,
        );
        same_fires(
            "TZ=UTC 0 10-12 * * * *",
            "TZ=UTC 0 10,11,12 * * * *",
            start,
            12,
        );
        same_fires("TZ=UTC 0 */1 * * * *", "TZ=UTC 0 * * * * *", start, 12);
        same_fires(
            "TZ=UTC 0 0 */6 * * *",
            "TZ=UTC 0 0 0,6,12,18 * * *",
            start,
            12,
        );
        same_fires("TZ=UTC 0 0 0 ? * ?", "TZ=UTC 0 0 0 * * *", start, 12);
        same_fires(
            "TZ=UTC 0 3,1,2,1 * * * *",
            "TZ=UTC 0 1-3 * * * *",
            start,
            12,
        );
        // A step larger than the range leaves only the start value.
        same_fires("TZ=UTC 0 */100 * * * *", "TZ=UTC 0 0 * * * *", start, 5);
        same_fires(
            "TZ=UTC 0 */4294967296 * * * *",
            "TZ=UTC 0 0 * * * *",
            start,
            5,
        );
        // Month step: every quarter.
        assert_eq!(
            fires("TZ=UTC 0 0 0 1 */3 *", start, 4),
            vec![
                utc(2026, 4, 1, 0, 0, 0),
                utc(2026, 7, 1, 0, 0, 0),
                utc(2026, 10, 1, 0, 0, 0),
                utc(2027, 1, 1, 0, 0, 0),
            ]
        );
        // Bounds are inclusive.
        same_fires(
            "TZ=UTC 59 59 23 31 12 *",
            "TZ=UTC 59 59 23 31 DEC *",
            start,
            2,
        );
        assert_eq!(
            next("TZ=UTC 59 59 23 31 12 *", start),
            Some(utc(2026, 12, 31, 23, 59, 59))
        );
    }

    #[test]
    fn field_value_errors() {
        assert_eq!(
            err("* * * * * 9"),
            "day-of-week value 9 is out of range 0-7"
        );
        assert_eq!(
            err("0 0 0 32 * *"),
            "day-of-month value 32 is out of range 1-31"
        );
        assert_eq!(err("60 * * * * *"), "second value 60 is out of range 0-59");
        assert_eq!(err("* 60 * * * *"), "minute value 60 is out of range 0-59");
        assert_eq!(err("* * 24 * * *"), "hour value 24 is out of range 0-23");
        assert_eq!(
            err("* * * 0 * *"),
            "day-of-month value 0 is out of range 1-31"
        );
        assert_eq!(err("* * * * 0 *"), "month value 0 is out of range 1-12");
        assert_eq!(err("* * * * 13 *"), "month value 13 is out of range 1-12");
        assert_eq!(err("* * 1-24 * * *"), "hour value 24 is out of range 0-23");
        assert_eq!(
            err("99999999999999999999 * * * * *"),
            "second value 99999999999999999999 is out of range 0-59"
        );
        let msg = err("*/0 * * * * *");
        assert!(
            msg.contains("second step") && msg.contains("at least 1"),
            "{msg}"
        );
        let msg = err("0 0 1-5/0 * * *");
        assert!(
            msg.contains("hour step") && msg.contains("at least 1"),
            "{msg}"
        );
        let msg = err("5-1 * * * * *");
        assert!(msg.contains("second range \"5-1\" is backwards"), "{msg}");
        let msg = err("0 0 0 * * FRI-MON");
        assert!(
            msg.contains("day-of-week range") && msg.contains("backwards"),
            "{msg}"
        );
        let msg = err("* * * * FOO *");
        assert!(
            msg.contains("month value \"FOO\"") && msg.contains("JAN"),
            "{msg}"
        );
        let msg = err("* * * * * MONDAY");
        assert!(msg.contains("day-of-week value \"MONDAY\""), "{msg}");
        let msg = err("x * * * * *");
        assert_eq!(msg, "second value \"x\" is not a number");
        assert!(err("MON * * * * *").contains("not a number"));
        assert!(err(", * * * * *").contains("lists no value"));
        assert!(err("1/2/3 * * * * *").contains("more than one '/'"));
        assert!(err("1-2-3 * * * * *").contains("more than one '-'"));
        assert!(err("*/x * * * * *").contains("not a whole number"));
        assert!(err("*/ * * * * *").contains("not a whole number"));
        assert!(err("-1 * * * * *").contains("missing a value"));
        assert!(err("1- * * * * *").contains("missing a value"));
        assert!(err("+ * * * * *").contains("not a number"));
        assert!(err("/5 * * * * *").contains("missing a value"));
        assert!(err("0 0 0 * * MON/x").contains("not a whole number"));
    }

    /// robfig/cron v3's own answers in `TZ=America/New_York` with no zone prefix, across
    /// the fall-back (2026-11-01, 2012-11-04) and the spring-forward (2026-03-08).
    fn local_zone_rows() {
        let rows = [
            // 01:30 happens twice: the first pass, EDT.
            (
                "0 30 1 * * *",
                utc(2026, 10, 31, 12, 0, 0),
                vec![utc(2026, 11, 1, 5, 30, 0)],
            ),
            // From 01:30 EDT the next minute is 01:31 EDT, not 01:31 EST an hour later.
            (
                "* * * * *",
                utc(2026, 11, 1, 5, 30, 0),
                vec![utc(2026, 11, 1, 5, 31, 0)],
            ),
            // Rows of robfig's spec_test.go: 01:00 EDT, then 02:00 EST (01:00 EST is the
            // second pass).
            (
                "0 0 * * * ?",
                utc(2012, 11, 4, 4, 0, 0),
                vec![utc(2012, 11, 4, 5, 0, 0), utc(2012, 11, 4, 7, 0, 0)],
            ),
            (
                "0 0 1 * * ?",
                utc(2012, 11, 4, 4, 0, 0),
                vec![utc(2012, 11, 4, 5, 0, 0)],
            ),
            // 02:30 does not exist on 2026-03-08: the next is on the 9th.
            (
                "0 30 2 * * *",
                utc(2026, 3, 7, 13, 0, 0),
                vec![utc(2026, 3, 9, 6, 30, 0)],
            ),
            // 01:59 EST is followed by 03:00 EDT.
            (
                "* * * * *",
                utc(2026, 3, 8, 6, 59, 0),
                vec![utc(2026, 3, 8, 7, 0, 0)],
            ),
            (
                "0 0 * * * ?",
                utc(2026, 3, 8, 5, 0, 0),
                vec![utc(2026, 3, 8, 6, 0, 0), utc(2026, 3, 8, 7, 0, 0)],
            ),
        ];
        for (expr, after, expected) in rows {
            assert_eq!(
                fires(expr, after, expected.len()),
                expected,
                "{expr:?} after {after}"
            );
        }
    }

    /// The local zone is the process's (`TZ`): the rows run in a child process of this
    /// test binary with `TZ=America/New_York`.
    #[test]
    fn the_local_zone_follows_robfig_across_both_transitions() {
        const CHILD: &str = "GOLAMBDA_TEST_LOCAL_ZONE_CHILD";
        if std::env::var_os(CHILD).is_some() {
            return local_zone_rows();
        }
        let name =
            "scheduler::cron_expr::tests::the_local_zone_follows_robfig_across_both_transitions";
        let exe = std::env::current_exe().expect("the test binary");
        let output = std::process::Command::new(exe)
            .args(["--exact", name, "--test-threads=1"])
            .env(CHILD, "1")
            .env("TZ", "America/New_York")
            .output()
            .expect("the child test runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success() && text.contains("1 passed"),
            "{text}"
        );
    }

    #[test]
    fn what_robfig_accepts_is_read_as_robfig_reads_it() {
        let start = utc(2026, 1, 1, 0, 0, 0);
        // Empty list entries are no entries.
        same_fires("TZ=UTC 0 0 0 1,,15 * *", "TZ=UTC 0 0 0 1,15 * *", start, 4);
        same_fires("TZ=UTC 0 0 0 ,1, * *", "TZ=UTC 0 0 0 1 * *", start, 2);
        // A leading `+` on a number, as Go's Atoi takes it.
        same_fires("TZ=UTC +5 * * * * *", "TZ=UTC 5 * * * * *", start, 3);
        same_fires("TZ=UTC */+5 * * * * *", "TZ=UTC */5 * * * * *", start, 3);
        same_fires("TZ=UTC 0 0 +1-+3 * * *", "TZ=UTC 0 0 1-3 * * *", start, 4);
        // `*-5` and `?-5` are `*`.
        same_fires("TZ=UTC *-5 * * * * *", "TZ=UTC * * * * * *", start, 10);
        same_fires("TZ=UTC 0 0 0 ?-5 * *", "TZ=UTC 0 0 0 * * *", start, 3);
    }

    #[test]
    fn month_and_weekday_names_are_case_insensitive() {
        let start = utc(2026, 1, 1, 0, 0, 0);
        same_fires("TZ=UTC 0 0 0 1 JAN *", "TZ=UTC 0 0 0 1 1 *", start, 3);
        same_fires("TZ=UTC 0 0 0 1 jan-Mar *", "TZ=UTC 0 0 0 1 1-3 *", start, 6);
        same_fires(
            "TZ=UTC 0 0 0 1 feb,APR,jun,AuG,sep,oct,Nov,dec,MAY,jul *",
            "TZ=UTC 0 0 0 1 2,4-12 *",
            start,
            20,
        );
        same_fires(
            "TZ=UTC 0 0 9 * * MON-FRI",
            "TZ=UTC 0 0 9 * * 1-5",
            start,
            20,
        );
        same_fires(
            "TZ=UTC 0 0 9 * * mon,Tue,wED,thu,FRI",
            "TZ=UTC 0 0 9 * * 1-5",
            start,
            20,
        );
        same_fires(
            "TZ=UTC 0 0 9 * * sat,sun",
            "TZ=UTC 0 0 9 * * 0,6",
            start,
            20,
        );
        same_fires(
            "TZ=UTC 0 0 9 * * MON/2",
            "TZ=UTC 0 0 9 * * 1,3,5",
            start,
            20,
        );
        same_fires("TZ=UTC 0 0 0 1 JAN/4 *", "TZ=UTC 0 0 0 1 1,5,9 *", start, 6);
    }

    // ---- day of week -------------------------------------------------------------

    #[test]
    fn weekdays_one_to_five_are_monday_to_friday() {
        // 2026-03-07 is a Saturday.
        let start = utc(2026, 3, 7, 0, 0, 0);
        let got = fires("CRON_TZ=UTC 0 0 9 * * 1-5", start, 10);
        let days: Vec<u32> = got.iter().map(|t| t.day()).collect();
        assert_eq!(days, vec![9, 10, 11, 12, 13, 16, 17, 18, 19, 20]);
        for t in &got {
            assert_eq!((t.hour(), t.minute(), t.second()), (9, 0, 0));
            assert!(!matches!(t.weekday(), Weekday::Sat | Weekday::Sun), "{t}");
        }
        assert_eq!(got[0].weekday(), Weekday::Mon);
        assert_eq!(got[4].weekday(), Weekday::Fri);
    }

    #[test]
    fn sunday_is_zero_seven_or_sun() {
        let start = utc(2026, 3, 4, 12, 0, 0); // a Wednesday
        for expr in [
            "CRON_TZ=UTC 0 0 9 * * 0",
            "CRON_TZ=UTC 0 0 9 * * 7",
            "CRON_TZ=UTC 0 0 9 * * SUN",
            "CRON_TZ=UTC 0 0 9 * * sun",
            "CRON_TZ=UTC 0 0 9 * * 0,7",
        ] {
            let got = fires(expr, start, 4);
            assert_eq!(got[0], utc(2026, 3, 8, 9, 0, 0), "{expr}");
            assert!(got.iter().all(|t| t.weekday() == Weekday::Sun), "{expr}");
            assert_eq!(got[3], utc(2026, 3, 29, 9, 0, 0), "{expr}");
        }
    }

    #[test]
    fn every_single_weekday_number_maps_like_robfig() {
        // 2026-03-08 is a Sunday, so weekday n first fires on March 8 + n.
        let start = utc(2026, 3, 7, 12, 0, 0);
        for n in 0..=6u32 {
            let got = next(&format!("TZ=UTC 0 0 0 * * {n}"), start).unwrap();
            assert_eq!(got, utc(2026, 3, 8 + n, 0, 0, 0), "weekday {n}");
            assert_eq!(got.weekday().num_days_from_sunday(), n);
            let name = DAY_NAMES[n as usize];
            assert_eq!(next(&format!("TZ=UTC 0 0 0 * * {name}"), start), Some(got));
        }
    }

    #[test]
    fn weekday_ranges_through_seven() {
        let start = utc(2026, 3, 1, 0, 0, 0);
        same_fires("TZ=UTC 0 0 0 * * 5-7", "TZ=UTC 0 0 0 * * 0,5,6", start, 12);
        same_fires("TZ=UTC 0 0 0 * * 0-7", "TZ=UTC 0 0 0 * * *", start, 12);
        same_fires("TZ=UTC 0 0 0 * * 0-6", "TZ=UTC 0 0 0 * * *", start, 12);
        same_fires(
            "TZ=UTC 0 0 0 * * */2",
            "TZ=UTC 0 0 0 * * 0,2,4,6",
            start,
            12,
        );
        // `a/n` runs to Saturday like robfig (it does not add 7 = Sunday).
        same_fires("TZ=UTC 0 0 0 * * 1/2", "TZ=UTC 0 0 0 * * 1,3,5", start, 12);
        same_fires("TZ=UTC 0 0 0 * * 7/2", "TZ=UTC 0 0 0 * * 0", start, 4);
    }

    // ---- day-of-month vs day-of-week -----------------------------------------------

    #[test]
    fn both_day_fields_restricted_means_or() {
        // The 13th OR any Friday. March 2026: Fridays 6, 13, 20, 27; April 3, 10, 17;
        // Monday April 13 fires because of the day of month.
        let got = fires("CRON_TZ=UTC 0 0 0 13 * 5", utc(2026, 3, 1, 0, 0, 0), 8);
        let expected: Vec<_> = [
            (3, 6),
            (3, 13),
            (3, 20),
            (3, 27),
            (4, 3),
            (4, 10),
            (4, 13),
            (4, 17),
        ]
        .iter()
        .map(|&(m, d)| utc(2026, m, d, 0, 0, 0))
        .collect();
        assert_eq!(got, expected);
        same_fires(
            "TZ=UTC 0 0 0 13 * FRI",
            "TZ=UTC 0 0 0 13 * 5",
            utc(2026, 1, 1, 0, 0, 0),
            30,
        );
    }

    #[test]
    fn a_star_day_field_means_and() {
        let start = utc(2026, 3, 1, 0, 0, 0);
        // Only Fridays.
        let fridays = fires("TZ=UTC 0 0 0 * * 5", start, 5);
        assert!(fridays.iter().all(|t| t.weekday() == Weekday::Fri));
        same_fires("TZ=UTC 0 0 0 ? * 5", "TZ=UTC 0 0 0 * * 5", start, 10);
        same_fires("TZ=UTC 0 0 0 */1 * 5", "TZ=UTC 0 0 0 * * 5", start, 10);
        // A list containing `*` keeps the star bit.
        same_fires("TZ=UTC 0 0 0 *,13 * 5", "TZ=UTC 0 0 0 * * 5", start, 10);
        // Only the 13th.
        let thirteenths = fires("TZ=UTC 0 0 0 13 * *", start, 5);
        assert!(thirteenths.iter().all(|t| t.day() == 13));
        same_fires("TZ=UTC 0 0 0 13 * ?", "TZ=UTC 0 0 0 13 * *", start, 10);
        // Both unrestricted: every day.
        assert_eq!(
            fires("TZ=UTC 0 0 0 ? * *", start, 3)[2],
            utc(2026, 3, 4, 0, 0, 0)
        );
    }

    #[test]
    fn stepped_star_counts_as_restricted() {
        // `*/2` in day-of-month is restricted, so with Monday it is an OR:
        // odd days plus Mondays (March 2 and 16 are even Mondays).
        let got = fires("TZ=UTC 0 0 0 */2 * 1", utc(2026, 2, 28, 12, 0, 0), 10);
        let days: Vec<u32> = got.iter().map(|t| t.day()).collect();
        assert_eq!(days, vec![1, 2, 3, 5, 7, 9, 11, 13, 15, 16]);
        // An explicit full range is restricted too, so with a weekday it fires daily.
        same_fires(
            "TZ=UTC 0 0 0 1-31 * 1",
            "TZ=UTC 0 0 0 * * *",
            utc(2026, 3, 1, 0, 0, 0),
            20,
        );
        // `*/2` in day-of-week is restricted as well.
        let got = fires("TZ=UTC 0 0 0 1 * */2", utc(2026, 3, 2, 12, 0, 0), 4);
        let days: Vec<u32> = got.iter().map(|t| t.day()).collect();
        assert_eq!(days, vec![3, 5, 7, 8]);
    }

    // ---- descriptors ----------------------------------------------------------------

    #[test]
    fn descriptors() {
        let start = utc(2026, 3, 1, 10, 20, 0); // Sunday
        let cases = [
            ("@yearly", utc(2027, 1, 1, 0, 0, 0)),
            ("@annually", utc(2027, 1, 1, 0, 0, 0)),
            ("@monthly", utc(2026, 4, 1, 0, 0, 0)),
            ("@weekly", utc(2026, 3, 8, 0, 0, 0)),
            ("@daily", utc(2026, 3, 2, 0, 0, 0)),
            ("@midnight", utc(2026, 3, 2, 0, 0, 0)),
            ("@hourly", utc(2026, 3, 1, 11, 0, 0)),
        ];
        for (descriptor, expected) in cases {
            let expr = format!("CRON_TZ=UTC {descriptor}");
            assert_eq!(next(&expr, start), Some(expected), "{descriptor}");
        }
        let start = utc(2026, 1, 1, 0, 0, 0);
        same_fires("TZ=UTC @yearly", "TZ=UTC 0 0 0 1 1 *", start, 3);
        same_fires("TZ=UTC @monthly", "TZ=UTC 0 0 0 1 * *", start, 5);
        same_fires("TZ=UTC @weekly", "TZ=UTC 0 0 0 * * 0", start, 5);
        same_fires("TZ=UTC @daily", "TZ=UTC 0 0 0 * * *", start, 5);
        same_fires("TZ=UTC @hourly", "TZ=UTC 0 0 * * * *", start, 5);
        same_fires("  TZ=UTC\t@hourly  ", "TZ=UTC 0 0 * * * *", start, 5);
    }

    #[test]
    fn descriptor_errors() {
        assert!(err("@bogus").contains("unknown descriptor \"@bogus\""));
        assert!(err("@").contains("unknown descriptor"));
        assert!(err("@Daily").contains("unknown descriptor"));
        assert!(err("@daily 5").contains("cannot be followed"));
        assert!(err("@every").contains("needs a duration"));
        assert!(err("@every   ").contains("needs a duration"));
        assert!(err("@every 1h 30m").contains("single duration"));
        assert!(err("@every 1 h").contains("single duration"));
        assert!(err("@every1h").contains("unknown descriptor"));
    }

    // ---- @every ---------------------------------------------------------------------

    #[test]
    fn every_adds_the_interval_to_the_truncated_time() {
        let after = utc(2026, 3, 1, 0, 0, 0) + TimeDelta::milliseconds(750);
        let base = utc(2026, 3, 1, 0, 0, 0);
        let cases = [
            ("1m30s", 90),
            ("90s", 90),
            ("1h", 3600),
            ("1.5h", 5400),
            (".5m", 30),
            ("2.m", 120),
            ("1h1m1s", 3661),
            ("1500ms", 1),
            ("2999ms", 2),
            ("1000000us", 1),
            ("1000000\u{b5}s", 1),
            ("1000000\u{3bc}s", 1),
            ("3000000000ns", 3),
            ("+10s", 10),
            ("1s500ms", 1),
            ("0.25h", 900),
            ("24h", 86_400),
            ("1.0000000000000000000000001s", 1),
        ];
        for (duration, seconds) in cases {
            let cron = parse(&format!("@every {duration}"));
            assert_eq!(
                cron.next_after(after),
                Some(base + TimeDelta::seconds(seconds)),
                "@every {duration}"
            );
            // Exactly on a whole second, too.
            assert_eq!(
                cron.next_after(base),
                Some(base + TimeDelta::seconds(seconds)),
                "@every {duration}"
            );
        }
        // Iterating gives a fixed cadence on whole seconds.
        assert_eq!(
            fires("@every 90s", after, 3),
            vec![
                base + TimeDelta::seconds(90),
                base + TimeDelta::seconds(180),
                base + TimeDelta::seconds(270),
            ]
        );
    }

    #[test]
    fn every_ignores_the_time_zone() {
        let after = utc(2026, 11, 1, 5, 30, 0); // inside the New York fall-back hour
        for expr in [
            "CRON_TZ=America/New_York @every 1h",
            "TZ=Asia/Tokyo @every 1h",
            "@every 1h",
        ] {
            assert_eq!(
                next(expr, after),
                Some(utc(2026, 11, 1, 6, 30, 0)),
                "{expr}"
            );
        }
    }

    #[test]
    fn every_rejects_bad_or_too_short_durations() {
        for d in ["500ms", "999999us", "1ns", "0.5s", "999ms"] {
            assert!(err(&format!("@every {d}")).contains("minimum of 1s"), "{d}");
        }
        for d in ["0", "0s", "-5m", "-0", "+0", "0h0m"] {
            assert!(
                err(&format!("@every {d}")).contains("must be positive"),
                "{d}"
            );
        }
        for d in [
            "5",
            "5x",
            "1h30",
            "h",
            "s",
            ".",
            ".s",
            "-",
            "+",
            "1..5s",
            "1.5.5s",
            "1e3s",
            "\u{b5}",
            "5\u{b5}",
            "1H",
            "1Ms",
            "one",
            "\u{1F600}",
            "5\u{1F600}",
        ] {
            assert!(err(&format!("@every {d}")).contains("is invalid"), "{d:?}");
        }
        assert!(err("@every 99999999999999999999h").contains("is invalid"));
        assert!(err("@every 2562048h").contains("is invalid"));
        // Go's maximum duration is still accepted.
        assert!(CronExpr::parse("@every 2562047h").is_ok());
        assert!(CronExpr::parse("@every 9223372036854775807ns").is_ok());
        assert!(err("@every 9223372036854775808ns").contains("is invalid"));
    }

    #[test]
    fn every_near_the_end_of_time_returns_none() {
        let cron = parse("@every 2562047h");
        assert_eq!(cron.next_after(DateTime::<Utc>::MAX_UTC), None);
        assert!(cron.next_after(DateTime::<Utc>::MIN_UTC).is_some());
    }

    // ---- strictly after / termination ---------------------------------------------------

    #[test]
    fn next_is_strictly_after() {
        let on = utc(2026, 3, 1, 10, 0, 0);
        assert_eq!(
            next("TZ=UTC 0 0 10 * * *", on),
            Some(utc(2026, 3, 2, 10, 0, 0))
        );
        assert_eq!(
            next("TZ=UTC * * * * * *", on),
            Some(utc(2026, 3, 1, 10, 0, 1))
        );
        let with_nanos = on + TimeDelta::nanoseconds(999_999_999);
        assert_eq!(
            next("TZ=UTC * * * * * *", with_nanos),
            Some(utc(2026, 3, 1, 10, 0, 1))
        );
        let with_nanos = on + TimeDelta::nanoseconds(1);
        assert_eq!(
            next("TZ=UTC 0 0 10 * * *", with_nanos),
            Some(utc(2026, 3, 2, 10, 0, 0))
        );
        assert_eq!(
            next("TZ=UTC 0 0 10 * * *", on - TimeDelta::nanoseconds(1)),
            Some(on)
        );
        assert_eq!(
            next("@every 1s", with_nanos),
            Some(utc(2026, 3, 1, 10, 0, 1))
        );
    }

    #[test]
    fn leap_day() {
        assert_eq!(
            next("TZ=UTC 0 0 0 29 2 *", utc(2026, 1, 1, 0, 0, 0)),
            Some(utc(2028, 2, 29, 0, 0, 0))
        );
        // 2100 is not a leap year.
        assert_eq!(next("TZ=UTC 0 0 0 29 2 *", utc(2096, 3, 1, 0, 0, 0)), None);
    }

    #[test]
    fn impossible_dates_return_none_quickly() {
        let begin = Instant::now();
        for expr in [
            "0 0 0 30 2 *",
            "0 0 0 31 2 *",
            "0 0 0 31 4,6,9,11 *",
            "CRON_TZ=America/New_York * * * 30 FEB *",
            "TZ=UTC 0 0 0 31 4 ?",
        ] {
            assert_eq!(next(expr, utc(2026, 1, 1, 0, 0, 0)), None, "{expr}");
            assert_eq!(next(expr, DateTime::<Utc>::MIN_UTC), None, "{expr}");
        }
        assert!(
            begin.elapsed() < StdDuration::from_secs(5),
            "{:?}",
            begin.elapsed()
        );
        // With an OR'ed day of week the same day of month does fire.
        assert!(next("TZ=UTC 0 0 0 30 2 1", utc(2026, 1, 1, 0, 0, 0)).is_some());
    }

    #[test]
    fn search_range_limits() {
        let every_second = parse("TZ=UTC * * * * * *");
        assert_eq!(every_second.next_after(utc(2101, 1, 1, 0, 0, 0)), None);
        assert_eq!(every_second.next_after(utc(2100, 12, 31, 23, 59, 59)), None);
        assert_eq!(
            every_second.next_after(utc(2100, 12, 31, 23, 59, 58)),
            Some(utc(2100, 12, 31, 23, 59, 59))
        );
        assert_eq!(every_second.next_after(DateTime::<Utc>::MAX_UTC), None);
        assert_eq!(
            every_second.next_after(DateTime::<Utc>::MIN_UTC),
            Some(utc(1970, 1, 1, 0, 0, 0))
        );
        assert_eq!(
            next("TZ=UTC @yearly", utc(-1000, 6, 1, 0, 0, 0)),
            Some(utc(1970, 1, 1, 0, 0, 0))
        );
        assert!(parse("0 0 * * * *")
            .next_after(DateTime::<Utc>::MAX_UTC)
            .is_none());
        assert!(parse("0 0 * * * *")
            .next_after(DateTime::<Utc>::MIN_UTC)
            .is_some());
    }

    // ---- time zones -----------------------------------------------------------------

    #[test]
    fn named_time_zones() {
        let start = utc(2026, 3, 1, 0, 0, 0); // 09:00 in Tokyo
        assert_eq!(
            next("CRON_TZ=Asia/Tokyo 0 0 9 * * *", start),
            Some(utc(2026, 3, 2, 0, 0, 0))
        );
        assert_eq!(
            next("TZ=Asia/Tokyo 0 0 9 * * *", start - TimeDelta::seconds(1)),
            Some(start)
        );
        assert_eq!(
            next("CRON_TZ=Asia/Kolkata 0 0 9 * * *", start),
            Some(utc(2026, 3, 1, 3, 30, 0))
        );
        assert_eq!(
            next("CRON_TZ=America/New_York\t0 0 9 * * *", start),
            Some(utc(2026, 3, 1, 14, 0, 0))
        );
        assert_eq!(
            next("CRON_TZ=Asia/Tokyo @daily", start),
            Some(utc(2026, 3, 1, 15, 0, 0))
        );
        assert_eq!(
            next("CRON_TZ=Asia/Tokyo 0 0 * * *", start),
            Some(utc(2026, 3, 1, 15, 0, 0))
        );
        // Day of week is judged in the schedule's zone: Monday 06:00 in Tokyo is
        // Sunday 21:00 UTC.
        assert_eq!(
            next("CRON_TZ=Asia/Tokyo 0 0 6 * * MON", start),
            Some(utc(2026, 3, 1, 21, 0, 0))
        );
    }

    #[test]
    fn default_zone_is_local() {
        let start = utc(2026, 3, 1, 0, 0, 0);
        let got = next("0 0 12 * * *", start).unwrap();
        let local = got.with_timezone(&Local);
        assert_eq!((local.hour(), local.minute(), local.second()), (12, 0, 0));
        assert!(got > start && got - start <= TimeDelta::hours(26));
        assert_eq!(next("TZ=Local 0 0 12 * * *", start), Some(got));
        assert_eq!(next("CRON_TZ=Local 0 0 12 * * *", start), Some(got));
    }

    #[test]
    fn time_zone_errors() {
        let msg = err("CRON_TZ=Mars/Olympus_Mons 0 0 9 * * *");
        assert!(
            msg.contains("unknown time zone \"Mars/Olympus_Mons\""),
            "{msg}"
        );
        assert!(err("TZ=nowhere * * * * *").contains("unknown time zone"));
        // Zone names are case-sensitive IANA names.
        assert!(err("TZ=asia/tokyo * * * * *").contains("unknown time zone"));
        assert!(err("TZ=Asia/Tokyo").contains("must be followed"));
        assert!(err("CRON_TZ=").contains("must be followed"));
        assert_eq!(
            next("TZ= 0 0 9 * * *", utc(2026, 3, 1, 0, 0, 0)),
            Some(utc(2026, 3, 1, 9, 0, 0)),
            "an empty zone is UTC, as robfig reads it"
        );
        // The field errors still come through behind a prefix.
        assert_eq!(
            err("TZ=UTC 0 0 9 * * 9"),
            "day-of-week value 9 is out of range 0-7"
        );
        assert!(err("TZ=UTC @nope").contains("unknown descriptor"));
        assert!(err("TZ=UTC @every 10ms").contains("minimum"));
    }

    // ---- daylight saving time ---------------------------------------------------------

    const NY: &str = "CRON_TZ=America/New_York";

    #[test]
    fn spring_forward_gap_is_skipped() {
        // 2026-03-08 02:00 EST jumps to 03:00 EDT; 02:30 does not exist that day.
        let got = fires(&format!("{NY} 0 30 2 * * *"), utc(2026, 3, 7, 12, 0, 0), 2);
        assert_eq!(
            got,
            vec![utc(2026, 3, 9, 6, 30, 0), utc(2026, 3, 10, 6, 30, 0)]
        );
        // Half-hourly runs straight through the gap.
        let got = fires(&format!("{NY} 0 */30 * * * *"), utc(2026, 3, 8, 6, 0, 0), 3);
        assert_eq!(
            got,
            vec![
                utc(2026, 3, 8, 6, 30, 0), // 01:30 EST
                utc(2026, 3, 8, 7, 0, 0),  // 03:00 EDT
                utc(2026, 3, 8, 7, 30, 0), // 03:30 EDT
            ]
        );
        // Every second: 01:59:59 EST is followed by 03:00:00 EDT, one second later.
        assert_eq!(
            next(&format!("{NY} * * * * * *"), utc(2026, 3, 8, 6, 59, 59)),
            Some(utc(2026, 3, 8, 7, 0, 0))
        );
    }

    #[test]
    fn fall_back_repeated_time_fires_once() {
        // 2026-11-01 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
        let got = fires(
            &format!("{NY} 0 30 1 * * *"),
            utc(2026, 10, 31, 12, 0, 0),
            3,
        );
        assert_eq!(
            got,
            vec![
                utc(2026, 11, 1, 5, 30, 0), // 01:30 EDT; 01:30 EST (06:30 UTC) is skipped
                utc(2026, 11, 2, 6, 30, 0), // 01:30 EST
                utc(2026, 11, 3, 6, 30, 0),
            ]
        );
        // Asking from inside the second pass does not go back to the first one.
        assert_eq!(
            next(&format!("{NY} 0 30 1 * * *"), utc(2026, 11, 1, 6, 15, 0)),
            Some(utc(2026, 11, 2, 6, 30, 0))
        );
        // London falls back on 2026-10-25 (02:00 BST -> 01:00 GMT).
        let got = fires(
            "CRON_TZ=Europe/London 0 30 1 * * *",
            utc(2026, 10, 24, 12, 0, 0),
            2,
        );
        assert_eq!(
            got,
            vec![utc(2026, 10, 25, 0, 30, 0), utc(2026, 10, 26, 1, 30, 0)]
        );
    }

    #[test]
    fn fall_back_half_hourly_never_repeats_or_goes_backwards() {
        let expr = format!("{NY} 0 */30 * * * *");
        let got = fires(&expr, utc(2026, 11, 1, 4, 0, 0), 5);
        assert_eq!(
            got,
            vec![
                utc(2026, 11, 1, 4, 30, 0), // 00:30 EDT
                utc(2026, 11, 1, 5, 0, 0),  // 01:00 EDT
                utc(2026, 11, 1, 5, 30, 0), // 01:30 EDT
                // 01:00 and 01:30 EST repeat wall times and are skipped.
                utc(2026, 11, 1, 7, 0, 0), // 02:00 EST
                utc(2026, 11, 1, 7, 30, 0),
            ]
        );
        for minute in [0, 1, 29, 30, 31, 59] {
            for hour in [5, 6] {
                let after = utc(2026, 11, 1, hour, minute, 0);
                let n = next(&expr, after).unwrap();
                assert!(n > after, "{after} -> {n}");
                if hour == 6 || minute >= 30 {
                    assert_eq!(n, utc(2026, 11, 1, 7, 0, 0), "{after}");
                }
            }
        }
        // @hourly in New York: 01:00 fires once (EDT), then 02:00 EST.
        assert_eq!(
            fires(&format!("{NY} @hourly"), utc(2026, 11, 1, 3, 30, 0), 3),
            vec![
                utc(2026, 11, 1, 4, 0, 0),
                utc(2026, 11, 1, 5, 0, 0),
                utc(2026, 11, 1, 7, 0, 0),
            ]
        );
    }

    #[test]
    fn fall_back_every_second_skips_the_repeated_hour_quickly() {
        let begin = Instant::now();
        let expr = format!("{NY} * * * * * *");
        // 01:00:00 EST: every remaining wall time of the hour already fired in EDT.
        assert_eq!(
            next(&expr, utc(2026, 11, 1, 6, 0, 0)),
            Some(utc(2026, 11, 1, 7, 0, 0))
        );
        // 01:59:59 EDT is followed by 02:00:00 EST, an hour and a second later.
        assert_eq!(
            next(&expr, utc(2026, 11, 1, 5, 59, 59)),
            Some(utc(2026, 11, 1, 7, 0, 0))
        );
        assert!(
            begin.elapsed() < StdDuration::from_secs(5),
            "{:?}",
            begin.elapsed()
        );
    }

    #[test]
    fn sequences_are_strictly_increasing_across_transitions() {
        let zones = [
            "America/New_York",
            "Europe/London",
            "Australia/Lord_Howe", // 30-minute DST shift
            "Asia/Kathmandu",
            "America/Santiago",
            "UTC",
        ];
        let exprs = [
            "0 */30 * * * *",
            "*/20 * 1-3 * * *",
            "0 0 * * * *",
            "0 30 1,2 * * *",
            "0 0 0 * * *",
            "0 15 2 * * SUN",
        ];
        let starts = [
            utc(2026, 3, 7, 0, 0, 0),
            utc(2026, 10, 3, 0, 0, 0),
            utc(2026, 10, 24, 0, 0, 0),
            utc(2026, 4, 1, 0, 0, 0),
        ];
        for zone in zones {
            for expr in exprs {
                let full = format!("CRON_TZ={zone} {expr}");
                for start in starts {
                    let got = fires(&full, start, 80);
                    assert_eq!(got.len(), 80, "{full}");
                    for pair in got.windows(2) {
                        assert!(pair[0] < pair[1], "{full}: {:?}", pair);
                    }
                }
            }
        }
    }

    // ---- robustness -------------------------------------------------------------------

    #[test]
    fn junk_never_panics() {
        let thousand = vec!["*"; 1000].join(" ");
        let long = "\u{1F600}".repeat(10_000);
        let junk: Vec<String> = [
            "",
            " ",
            "\t\n",
            "*",
            "* * * *",
            "* * * * * * *",
            "99999999999999999999 * * * * *",
            "*/0 * * * * *",
            "5-1 * * * * *",
            "\u{663} * * * * *",
            "\u{65e5} * * * * *",
            "\u{e9}-\u{fc} * * * * *",
            "-",
            "--",
            ",",
            ",,,",
            "/",
            "//",
            "*/",
            "/5",
            "1-",
            "-1",
            "1--2",
            "*/* * * * * *",
            "?/? * * * * *",
            "@",
            "@every",
            "@every ",
            "@every \u{b5}",
            "@every .",
            "@every .s",
            "@every -",
            "@every +",
            "@every 1\u{b5}",
            "TZ=",
            "TZ= ",
            "CRON_TZ=",
            "CRON_TZ=Nowhere/Nope * * * * *",
            "TZ=UTC",
            "TZ=UTC @bogus",
            "@yearly extra",
            "0 0 0 32 * *",
            "* * * * * -1",
            "* * * * JANUARY *",
            "0x10 * * * * *",
            "4294967296 * * * * *",
            "1-4294967296 * * * * *",
            "*/18446744073709551616 * * * * *",
            "* * * * * 7-0",
            "\0 \0 \0 \0 \0",
            "TZ=\u{1F600} * * * * *",
            "@every 1h\u{1F600}",
            "@every \u{1F600}1h",
            "* * * * * \u{1F600}",
            "\u{1F600}/\u{1F600} * * * * *",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            thousand,
            long.clone(),
            format!("TZ={long} * * * * *"),
            format!("@every {long}"),
        ])
        .collect();
        for s in &junk {
            if let Ok(cron) = CronExpr::parse(s) {
                let _ = cron.next_after(utc(2026, 1, 1, 0, 0, 0));
            }
        }
        for s in junk
            .iter()
            .filter(|s| !s.starts_with("*/18446744073709551616"))
        {
            let e = CronExpr::parse(s).expect_err(s);
            let msg = e.to_string();
            assert!(!msg.is_empty() && msg.chars().count() < 400, "{s:?}: {msg}");
        }
        // Huge steps are accepted and just mean "the start value only".
        assert!(CronExpr::parse("*/18446744073709551616 * * * * *").is_ok());
    }

    #[test]
    fn generated_expressions_never_panic() {
        let tokens = [
            "*",
            "?",
            "0",
            "1",
            "5",
            "7",
            "12",
            "13",
            "23",
            "31",
            "59",
            "60",
            "-",
            "/",
            ",",
            "MON",
            "jan",
            "x",
            "99999999999",
            "\u{b5}",
            "*/2",
            "1-5",
            "SUN-SAT",
            "0/0",
        ];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rand = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let probes = [
            utc(2026, 11, 1, 5, 30, 0),
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
        ];
        let mut accepted = 0;
        for _ in 0..1500 {
            let fields = 5 + rand(2);
            let mut expr = String::from("CRON_TZ=America/New_York");
            for _ in 0..fields {
                expr.push(' ');
                if rand(2) == 0 {
                    expr.push('*');
                    continue;
                }
                let pieces = if rand(4) == 0 { 2 } else { 1 };
                for _ in 0..pieces {
                    expr.push_str(tokens[rand(tokens.len())]);
                }
            }
            if let Ok(cron) = CronExpr::parse(&expr) {
                accepted += 1;
                for p in probes {
                    if let Some(t) = cron.next_after(p) {
                        assert!(t > p, "{expr}");
                    }
                }
            }
        }
        assert!(
            accepted > 100,
            "only {accepted} generated expressions parsed"
        );
    }

    #[test]
    fn error_type_is_usable() {
        let e = CronExpr::parse("* * * * * 9").unwrap_err();
        assert_eq!(e.clone(), e);
        let boxed: Box<dyn std::error::Error> = Box::new(e);
        assert_eq!(boxed.to_string(), "day-of-week value 9 is out of range 0-7");
        let long = format!("{} * * * * *", "9".repeat(200));
        let msg = err(&long);
        assert!(msg.len() < 120 && msg.contains("..."), "{msg}");
        let c = parse("@hourly");
        let _copy = c.clone();
        assert!(format!("{c:?}").contains("CronExpr"));
    }
}
