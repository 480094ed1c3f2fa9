//! The cron timetable: each scheduled function's expression and next fire, and priority
//! queues of those fires, so finding what is due costs a heap pop, not a scan. `@every`
//! intervals run on the monotonic clock, so a stepped wall clock neither stops nor bunches
//! them; calendar schedules run on the wall clock and are worked out again from the new
//! time when it steps either way (no burst of the fires it skipped, no silence until it
//! catches up). Pure logic: the time is always a parameter, so tests drive both clocks.

use super::clock::Now;
use super::cron_expr::CronExpr;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

/// A change of the wall clock against the monotonic one at least this large is a step,
/// not drift; smaller ones are absorbed by reading the wall clock at every wake.
pub const CLOCK_STEP: TimeDelta = TimeDelta::seconds(1);

/// When a function fires next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// An interval's, on the monotonic clock.
    Mono(Duration),
    /// A calendar schedule's, on the wall clock.
    Wall(DateTime<Utc>),
}

struct Entry {
    expr: CronExpr,
    next: Option<Next>,
    /// Heap items from an older `set` carry an older generation and are ignored.
    generation: u64,
}

/// What came due at one look.
#[derive(Debug, Default)]
pub struct Due {
    /// Each function due, with the wall time its fire was due, oldest first per clock.
    pub fires: Vec<(String, DateTime<Utc>)>,
    /// How far the wall clock stepped since the last look, if it did.
    pub clock_step: Option<TimeDelta>,
}

type Heap<T> = BinaryHeap<Reverse<(T, u64, String)>>;

/// Next fire times of every scheduled function.
#[derive(Default)]
pub struct Timetable {
    entries: HashMap<String, Entry>,
    mono_heap: Heap<Duration>,
    wall_heap: Heap<DateTime<Utc>>,
    generation: u64,
    /// The wall clock's lead over the monotonic one at the last look.
    offset: Option<TimeDelta>,
}

impl Timetable {
    /// Schedules (or reschedules) `name`; returns its first fire time after `now`.
    pub fn set(&mut self, name: &str, expr: CronExpr, now: Now) -> Option<DateTime<Utc>> {
        self.generation += 1;
        let next = match expr.interval() {
            // Lined up on the wall clock's whole seconds, as robfig's @every is.
            Some(interval) => {
                let into_second =
                    Duration::from_nanos(u64::from(now.wall.timestamp_subsec_nanos()));
                interval
                    .to_std()
                    .ok()
                    .and_then(|i| now.mono.checked_add(i.saturating_sub(into_second)))
                    .map(Next::Mono)
            }
            None => expr.next_after(now.wall).map(Next::Wall),
        };
        let entry = Entry {
            expr,
            next,
            generation: self.generation,
        };
        self.entries.insert(name.to_string(), entry);
        self.push(name, next, self.generation);
        next.map(|next| wall_time(next, now))
    }

    /// Unschedules `name`.
    pub fn remove(&mut self, name: &str) {
        self.entries.remove(name);
    }

    /// `name`'s next fire, as a wall time.
    pub fn next_run(&self, name: &str, now: Now) -> Option<DateTime<Utc>> {
        let next = self.entries.get(name)?.next?;
        Some(wall_time(next, now))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How long until the earliest pending fire, on the monotonic clock.
    pub fn wake_in(&mut self, now: Now) -> Option<Duration> {
        let mono = live_top(&mut self.mono_heap, &self.entries, Next::Mono)
            .map(|(at, _, _)| at.saturating_sub(now.mono));
        let wall = live_top(&mut self.wall_heap, &self.entries, Next::Wall)
            .map(|(at, _, _)| (*at - now.wall).to_std().unwrap_or(Duration::ZERO));
        match (mono, wall) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (one, other) => one.or(other),
        }
    }

    /// Takes every fire due at `now` and schedules each function's next one after `now`
    /// (fires missed while the server was busy or down are not replayed). A step of the
    /// wall clock since the last look first moves every calendar schedule to its first
    /// fire after the new wall time.
    pub fn take_due(&mut self, now: Now) -> Due {
        let mut due = Due {
            clock_step: self.follow_wall_clock(now),
            ..Due::default()
        };
        while live_top(&mut self.mono_heap, &self.entries, Next::Mono)
            .is_some_and(|(at, _, _)| *at <= now.mono)
        {
            let Some(Reverse((at, generation, name))) = self.mono_heap.pop() else {
                break;
            };
            let next = self.entries.get_mut(&name).and_then(|entry| {
                let interval = entry.expr.interval()?.to_std().ok()?;
                // Keep the phase; after a stall, start again from now.
                let next = at.checked_add(interval).filter(|next| *next > now.mono);
                let next = next
                    .or_else(|| now.mono.checked_add(interval))
                    .map(Next::Mono);
                entry.next = next;
                next
            });
            self.push(&name, next, generation);
            due.fires.push((name, wall_time(Next::Mono(at), now)));
        }
        while live_top(&mut self.wall_heap, &self.entries, Next::Wall)
            .is_some_and(|(at, _, _)| *at <= now.wall)
        {
            let Some(Reverse((at, generation, name))) = self.wall_heap.pop() else {
                break;
            };
            let next = self.entries.get_mut(&name).and_then(|entry| {
                entry.next = entry.expr.next_after(now.wall).map(Next::Wall);
                entry.next
            });
            self.push(&name, next, generation);
            due.fires.push((name, at));
        }
        due
    }

    /// Notes the wall clock's lead over the monotonic one; when it changed by a step,
    /// works every calendar schedule out again from the new wall time.
    fn follow_wall_clock(&mut self, now: Now) -> Option<TimeDelta> {
        let offset = now.offset();
        let step = self.offset.replace(offset).map(|last| offset - last)?;
        if step.abs() < CLOCK_STEP {
            return None;
        }
        let mut moved = Vec::new();
        for (name, entry) in &mut self.entries {
            if let Some(Next::Wall(_)) = entry.next {
                entry.next = entry.expr.next_after(now.wall).map(Next::Wall);
                moved.push((name.clone(), entry.next, entry.generation));
            }
        }
        for (name, next, generation) in moved {
            self.push(&name, next, generation);
        }
        Some(step)
    }

    fn push(&mut self, name: &str, next: Option<Next>, generation: u64) {
        match next {
            Some(Next::Mono(at)) => self.mono_heap.push(Reverse((at, generation, name.into()))),
            Some(Next::Wall(at)) => self.wall_heap.push(Reverse((at, generation, name.into()))),
            None => {}
        }
    }
}

/// Drops the stale items on top of `heap` (from an older `set`, or from before a clock
/// step moved the fire) and returns the live one there, if any.
fn live_top<'h, T: Ord + Copy>(
    heap: &'h mut Heap<T>,
    entries: &HashMap<String, Entry>,
    next: fn(T) -> Next,
) -> Option<&'h (T, u64, String)> {
    while let Some(Reverse((at, generation, name))) = heap.peek() {
        let live = entries
            .get(name)
            .is_some_and(|e| e.generation == *generation && e.next == Some(next(*at)));
        if live {
            break;
        }
        heap.pop();
    }
    heap.peek().map(|Reverse(item)| item)
}

/// A fire's wall time, as seen at `now`.
fn wall_time(next: Next, now: Now) -> DateTime<Utc> {
    match next {
        Next::Wall(at) => at,
        Next::Mono(at) => {
            let span = |d: Duration| TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX);
            let moved = if at >= now.mono {
                now.wall.checked_add_signed(span(at - now.mono))
            } else {
                now.wall.checked_sub_signed(span(now.mono - at))
            };
            // Reading the two clocks a few microseconds apart must not move a fire due on
            // a whole second to just before it.
            let moved = moved.unwrap_or(now.wall);
            moved
                .duration_round(TimeDelta::milliseconds(1))
                .unwrap_or(moved)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, h, m, s)
            .single()
            .expect("valid time")
    }

    /// The wall clock at `h:m:s` while the monotonic one reads `mono` seconds.
    fn now(h: u32, m: u32, s: u32, mono: u64) -> Now {
        Now {
            wall: at(h, m, s),
            mono: Duration::from_secs(mono),
        }
    }

    fn expr(text: &str) -> CronExpr {
        CronExpr::parse(text).expect("valid expression")
    }

    fn names(due: &Due) -> Vec<&str> {
        due.fires.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn fires_in_time_order_and_reschedules() {
        let mut table = Timetable::default();
        let start = now(10, 0, 0, 100);
        assert_eq!(
            table.set("every2", expr("@every 2s"), start),
            Some(at(10, 0, 2))
        );
        assert_eq!(
            table.set("minutely", expr("CRON_TZ=UTC 0 * * * * *"), start),
            Some(at(10, 1, 0))
        );
        assert_eq!(table.wake_in(start), Some(Duration::from_secs(2)));
        assert!(table.take_due(now(10, 0, 1, 101)).fires.is_empty());
        let due = table.take_due(now(10, 0, 2, 102));
        assert_eq!(due.fires, vec![("every2".to_string(), at(10, 0, 2))]);
        assert_eq!(
            table.next_run("every2", now(10, 0, 2, 102)),
            Some(at(10, 0, 4))
        );
        let due = table.take_due(now(10, 1, 0, 160));
        assert_eq!(names(&due), vec!["every2", "minutely"]);
        assert_eq!(
            table.next_run("minutely", now(10, 1, 0, 160)),
            Some(at(10, 2, 0))
        );
        assert_eq!(due.clock_step, None);
    }

    #[test]
    fn intervals_line_up_on_whole_seconds_and_keep_their_phase() {
        let mut table = Timetable::default();
        let start = Now {
            wall: at(10, 0, 0) + TimeDelta::milliseconds(300),
            mono: Duration::from_millis(5_300),
        };
        assert_eq!(table.set("s", expr("@every 1s"), start), Some(at(10, 0, 1)));
        assert_eq!(table.wake_in(start), Some(Duration::from_millis(700)));
        // Taken a little late, the next fire stays on the second.
        let late = Now {
            wall: at(10, 0, 1) + TimeDelta::milliseconds(40),
            mono: Duration::from_millis(6_040),
        };
        assert_eq!(table.take_due(late).fires.len(), 1);
        assert_eq!(table.next_run("s", late), Some(at(10, 0, 2)));
    }

    #[test]
    fn missed_fires_are_not_replayed() {
        let mut table = Timetable::default();
        table.set("s", expr("@every 1s"), now(10, 0, 0, 0));
        table.set("c", expr("CRON_TZ=UTC * * * * * *"), now(10, 0, 0, 0));
        let due = table.take_due(now(10, 5, 0, 300));
        assert_eq!(due.fires.len(), 2, "one fire each for a long gap: {due:?}");
        assert_eq!(table.next_run("s", now(10, 5, 0, 300)), Some(at(10, 5, 1)));
        assert_eq!(table.next_run("c", now(10, 5, 0, 300)), Some(at(10, 5, 1)));
    }

    #[test]
    fn a_backward_step_of_the_wall_clock_stops_no_schedule() {
        let mut table = Timetable::default();
        table.set("every", expr("@every 1s"), now(10, 0, 0, 0));
        table.set("cal", expr("CRON_TZ=UTC * * * * * *"), now(10, 0, 0, 0));
        table.set("daily", expr("CRON_TZ=UTC 0 30 9 * * *"), now(10, 0, 0, 0));
        assert_eq!(table.take_due(now(10, 0, 1, 1)).fires.len(), 2);
        // The wall clock goes back an hour; the monotonic one goes on.
        let stepped = now(9, 0, 1, 2);
        let due = table.take_due(stepped);
        assert_eq!(due.clock_step, Some(TimeDelta::seconds(-3600 - 1)));
        assert_eq!(names(&due), vec!["every"], "the interval fires on time");
        assert_eq!(table.next_run("every", stepped), Some(at(9, 0, 2)));
        assert_eq!(
            table.next_run("cal", stepped),
            Some(at(9, 0, 2)),
            "no hour of silence"
        );
        assert_eq!(
            table.next_run("daily", stepped),
            Some(at(9, 30, 0)),
            "today's comes back"
        );
        assert!(table.wake_in(stepped) <= Some(Duration::from_secs(1)));
        let due = table.take_due(now(9, 0, 2, 3));
        assert_eq!(names(&due), vec!["every", "cal"]);
    }

    #[test]
    fn a_forward_step_skips_what_it_jumped_over_without_a_burst() {
        let mut table = Timetable::default();
        table.set("every", expr("@every 10s"), now(10, 0, 0, 0));
        table.set("cal", expr("CRON_TZ=UTC 0 * * * * *"), now(10, 0, 0, 0));
        assert_eq!(table.take_due(now(10, 0, 5, 5)).fires.len(), 0);
        // Two hours forward: the 120 minutely fires in between are not made up.
        let stepped = now(12, 0, 6, 6);
        let due = table.take_due(stepped);
        assert_eq!(due.clock_step, Some(TimeDelta::hours(2)));
        assert!(due.fires.is_empty(), "{due:?}");
        assert_eq!(table.next_run("cal", stepped), Some(at(12, 1, 0)));
        // The interval still fires 10 s after it was set, by the monotonic clock.
        assert_eq!(table.next_run("every", stepped), Some(at(12, 0, 10)));
        assert_eq!(names(&table.take_due(now(12, 0, 10, 10))), vec!["every"]);
    }

    #[test]
    fn drift_under_a_step_is_followed_without_recomputing() {
        let mut table = Timetable::default();
        table.set("cal", expr("CRON_TZ=UTC 0 * * * * *"), now(10, 0, 0, 0));
        // The wall clock runs 0.5 s ahead of the monotonic one by 10:01.
        let drifted = Now {
            wall: at(10, 1, 0),
            mono: Duration::from_millis(59_500),
        };
        let due = table.take_due(drifted);
        assert_eq!(due.clock_step, None);
        assert_eq!(due.fires, vec![("cal".to_string(), at(10, 1, 0))]);
    }

    #[test]
    fn reschedule_and_remove_take_effect_at_once() {
        let mut table = Timetable::default();
        table.set("f", expr("@every 10s"), now(10, 0, 0, 0));
        table.set("f", expr("@every 3s"), now(10, 0, 0, 0));
        assert_eq!(
            table.wake_in(now(10, 0, 0, 0)),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            table.take_due(now(10, 0, 9, 9)).fires.len(),
            1,
            "stale entry ignored"
        );
        table.remove("f");
        assert_eq!(table.wake_in(now(10, 0, 9, 9)), None);
        assert!(table.take_due(now(11, 0, 0, 3600)).fires.is_empty());
        assert_eq!(table.next_run("f", now(11, 0, 0, 3600)), None);
        assert!(table.is_empty());
    }
}
