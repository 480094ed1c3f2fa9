//! `--rate-limit`: a token bucket per client address, refilled at N tokens a second with a
//! burst of N. Checked in the accept loop, before a request takes any thread.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Addresses tracked before idle ones are forgotten.
const MAX_TRACKED: usize = 10_000;

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

pub struct RateLimit {
    per_second: f64,
    buckets: HashMap<IpAddr, Bucket>,
}

impl RateLimit {
    /// `per_second` 0 turns the limit off.
    pub fn new(per_second: u32) -> RateLimit {
        RateLimit {
            per_second: f64::from(per_second),
            buckets: HashMap::new(),
        }
    }

    /// Takes a token for `client` at `now`; false when its bucket is empty.
    pub fn allow(&mut self, client: IpAddr, now: Instant) -> bool {
        if self.per_second <= 0.0 {
            return true;
        }
        if self.buckets.len() >= MAX_TRACKED {
            let full = self.per_second;
            self.buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.refilled).as_secs_f64() * full < full
            });
        }
        let bucket = self.buckets.entry(client).or_insert(Bucket {
            tokens: self.per_second,
            refilled: now,
        });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.per_second);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RateLimit;
    use std::net::IpAddr;
    use std::time::{Duration, Instant};

    #[test]
    fn burst_then_refill_per_client() {
        let mut limit = RateLimit::new(3);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let t = Instant::now();
        assert!((0..3).all(|_| limit.allow(a, t)));
        assert!(!limit.allow(a, t), "burst spent");
        assert!(limit.allow(b, t), "another client has its own bucket");
        assert!(
            limit.allow(a, t + Duration::from_millis(400)),
            "refilled one token"
        );
        assert!(!limit.allow(a, t + Duration::from_millis(400)));
        let mut off = RateLimit::new(0);
        assert!((0..1000).all(|_| off.allow(a, t)));
    }
}
