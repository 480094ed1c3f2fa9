//! Per-function concurrency: how many runs of each function are going on, and the refusal
//! of one more than its `max_concurrency`.

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct Concurrency {
    running: Mutex<HashMap<String, u32>>,
}

/// A run's place, given back when dropped.
pub struct Place<'a> {
    owner: &'a Concurrency,
    name: String,
}

impl Concurrency {
    /// Takes a place for a run of `name`, unless `limit` (0: none) runs are going on.
    pub fn enter(&self, name: &str, limit: u32) -> Option<Place<'_>> {
        let mut running = crate::sync::lock(&self.running);
        let count = running.entry(name.to_string()).or_default();
        if limit > 0 && *count >= limit {
            return None;
        }
        *count += 1;
        Some(Place {
            owner: self,
            name: name.to_string(),
        })
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut running = crate::sync::lock(&self.owner.running);
        if let Some(count) = running.get_mut(&self.name) {
            *count -= 1;
            if *count == 0 {
                running.remove(&self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Concurrency;

    #[test]
    fn limits_and_releases() {
        let c = Concurrency::default();
        let a = c.enter("f", 2).expect("first");
        let _b = c.enter("f", 2).expect("second");
        assert!(c.enter("f", 2).is_none(), "third refused");
        assert!(c.enter("g", 2).is_some(), "other functions unaffected");
        drop(a);
        assert!(c.enter("f", 2).is_some(), "a place came back");
        let _many: Vec<_> = (0..50)
            .map(|_| c.enter("h", 0).expect("no limit"))
            .collect();
    }
}
