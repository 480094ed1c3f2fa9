//! Identifiers for requests and runs: unique within a server's life and, with the process id
//! mixed in, across servers sharing a temp dir. Sortable by creation time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(0);
/// The process id's low bits, asked of the OS once (every request takes an id).
static PID: OnceLock<u32> = OnceLock::new();

/// A new id such as `019a6f3c2b1e-4f2a-000001`: milliseconds since the epoch, the low bits
/// of the process id, and a counter.
pub fn new_id() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{millis:012x}-{:04x}-{n:06x}",
        PID.get_or_init(|| std::process::id() & 0xffff)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_unique_and_ordered() {
        let a = super::new_id();
        let b = super::new_id();
        assert_ne!(a, b);
        assert!(a < b, "{a} should sort before {b}");
    }
}
