//! The cron timetable: each scheduled function's expression and next fire time, and a
//! priority queue of those times, so finding what is due costs a heap pop, not a scan.
//! Pure logic: the current time is always a parameter, so tests drive the clock.

use super::cron_expr::CronExpr;
use chrono::{DateTime, Utc};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

struct Entry {
    expr: CronExpr,
    next: Option<DateTime<Utc>>,
    /// Heap items from an older `set` carry an older generation and are ignored.
    generation: u64,
}

/// Next fire times of every scheduled function.
#[derive(Default)]
pub struct Timetable {
    entries: HashMap<String, Entry>,
    heap: BinaryHeap<Reverse<(DateTime<Utc>, u64, String)>>,
    generation: u64,
}

impl Timetable {
    /// Schedules (or reschedules) `name`; returns its first fire time after `now`.
    pub fn set(&mut self, name: &str, expr: CronExpr, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.generation += 1;
        let next = expr.next_after(now);
        if let Some(at) = next {
            self.heap
                .push(Reverse((at, self.generation, name.to_string())));
        }
        self.entries.insert(
            name.to_string(),
            Entry {
                expr,
                next,
                generation: self.generation,
            },
        );
        next
    }

    /// Unschedules `name`.
    pub fn remove(&mut self, name: &str) {
        self.entries.remove(name);
    }

    pub fn next_run(&self, name: &str) -> Option<DateTime<Utc>> {
        self.entries.get(name).and_then(|e| e.next)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The earliest pending fire time.
    pub fn next_wake(&mut self) -> Option<DateTime<Utc>> {
        while let Some(Reverse((at, generation, name))) = self.heap.peek() {
            if self.is_live(name, *generation) {
                return Some(*at);
            }
            self.heap.pop();
        }
        None
    }

    /// Takes every fire due at `now`, oldest first, and schedules each function's next fire
    /// after `now` (fires missed while the server was busy or down are not replayed).
    pub fn take_due(&mut self, now: DateTime<Utc>) -> Vec<(String, DateTime<Utc>)> {
        let mut due = Vec::new();
        while let Some(Reverse((at, generation, name))) = self.heap.peek() {
            if *at > now {
                break;
            }
            let (at, generation, name) = (*at, *generation, name.clone());
            self.heap.pop();
            if !self.is_live(&name, generation) {
                continue;
            }
            if let Some(entry) = self.entries.get_mut(&name) {
                entry.next = entry.expr.next_after(now);
                if let Some(next) = entry.next {
                    self.heap.push(Reverse((next, generation, name.clone())));
                }
            }
            due.push((name, at));
        }
        due
    }

    fn is_live(&self, name: &str, generation: u64) -> bool {
        self.entries
            .get(name)
            .is_some_and(|e| e.generation == generation)
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

    fn expr(text: &str) -> CronExpr {
        CronExpr::parse(text).expect("valid expression")
    }

    #[test]
    fn fires_in_time_order_and_reschedules() {
        let mut table = Timetable::default();
        let now = at(10, 0, 0);
        assert_eq!(
            table.set("every2", expr("@every 2s"), now),
            Some(at(10, 0, 2))
        );
        assert_eq!(
            table.set("minutely", expr("CRON_TZ=UTC 0 * * * * *"), now),
            Some(at(10, 1, 0))
        );
        assert_eq!(table.next_wake(), Some(at(10, 0, 2)));
        assert!(table.take_due(at(10, 0, 1)).is_empty());
        assert_eq!(
            table.take_due(at(10, 0, 2)),
            vec![("every2".to_string(), at(10, 0, 2))]
        );
        assert_eq!(table.next_run("every2"), Some(at(10, 0, 4)));
        let due = table.take_due(at(10, 1, 0));
        let names: Vec<&str> = due.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["every2", "minutely"]);
        assert_eq!(table.next_run("minutely"), Some(at(10, 2, 0)));
    }

    #[test]
    fn missed_fires_are_not_replayed() {
        let mut table = Timetable::default();
        table.set("s", expr("@every 1s"), at(10, 0, 0));
        let due = table.take_due(at(10, 5, 0));
        assert_eq!(due.len(), 1, "one fire for a long gap: {due:?}");
        assert_eq!(table.next_run("s"), Some(at(10, 5, 1)));
    }

    #[test]
    fn reschedule_and_remove_take_effect_at_once() {
        let mut table = Timetable::default();
        table.set("f", expr("@every 10s"), at(10, 0, 0));
        table.set("f", expr("@every 3s"), at(10, 0, 0));
        assert_eq!(table.next_wake(), Some(at(10, 0, 3)));
        assert_eq!(table.take_due(at(10, 0, 9)).len(), 1, "stale entry ignored");
        table.remove("f");
        assert_eq!(table.next_wake(), None);
        assert!(table.take_due(at(11, 0, 0)).is_empty());
        assert_eq!(table.next_run("f"), None);
        assert!(table.is_empty());
    }
}
