//! Per-run users: when the server runs as root, each run takes a uid from `--run-uids` for
//! its whole life and gives it back once every process of that uid is gone, so no two runs
//! ever share a uid and a run cannot touch the server's files, another run, or the server.
//! A uid whose processes cannot all be killed when its run ends (one stuck in the kernel,
//! say) is set aside, and tried again whenever no uid is free: it comes back once empty,
//! so hostile code can hold uids only as long as its processes really live.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How often uids set aside are tried again, at most.
const RETRY: Duration = Duration::from_millis(500);

pub struct UserPool {
    /// Last returned first: the few uids in use stay warm (their cgroups and scratch
    /// namespaces are made once). A uid comes back only once it has no process left.
    free: Mutex<VecDeque<u32>>,
    /// Uids given back with processes left, and when they were last tried.
    stuck: Mutex<(Vec<u32>, Option<Instant>)>,
    /// Kills what is left of a uid's processes and empties its scratch folders; returns how
    /// many processes remain.
    clean: fn(u32) -> usize,
    total: usize,
}

/// No uid is free: how many there are, and how many of them are set aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted {
    pub total: usize,
    pub stuck: usize,
}

/// A uid held by one run; returned to the pool when dropped.
pub struct RunUser<'a> {
    pool: &'a UserPool,
    pub uid: u32,
}

/// A uid held by something that outlives a borrow of the pool (a warm process); returned
/// to the pool when dropped, so drop it only once every process of the uid is gone.
pub struct OwnedRunUser {
    pool: Arc<UserPool>,
    pub uid: u32,
}

impl UserPool {
    /// The uids `first..=last`. A uid comes back to the pool only once none of its
    /// processes is left.
    pub fn new(first: u32, last: u32) -> UserPool {
        UserPool::with_cleaner(first, last, |uid| {
            let left = crate::platform::kill_user(uid);
            if left.killed > 0 {
                log::info!(
                    "killed {} processes a run of uid {uid} left behind",
                    left.killed
                );
            }
            left.remaining
        })
    }

    /// Like [`UserPool::new`] with another way to empty a uid (tests).
    pub fn with_cleaner(first: u32, last: u32, clean: fn(u32) -> usize) -> UserPool {
        UserPool {
            free: Mutex::new((first..=last).rev().collect()),
            stuck: Mutex::new((Vec::new(), None)),
            clean,
            total: (last - first) as usize + 1,
        }
    }

    fn give_back(&self, uid: u32) {
        let remaining = (self.clean)(uid);
        if remaining > 0 {
            log::warn!(
                "uid {uid} still has {remaining} processes that could not be killed; \
                 it is set aside until they are gone"
            );
            self.stuck().0.push(uid);
            return;
        }
        self.lock().push_back(uid);
    }

    /// A free uid; when none is, the uids set aside are tried again first.
    fn next(&self) -> Result<u32, Exhausted> {
        if let Some(uid) = self.lock().pop_back() {
            return Ok(uid);
        }
        let mut stuck = self.stuck();
        let due = stuck.1.is_none_or(|last| last.elapsed() >= RETRY);
        if due && !stuck.0.is_empty() {
            stuck.1 = Some(Instant::now());
            let clean = self.clean;
            let (empty, still): (Vec<u32>, Vec<u32>) =
                stuck.0.drain(..).partition(|uid| clean(*uid) == 0);
            stuck.0 = still;
            if !empty.is_empty() {
                log::info!("uids {empty:?} have no process left and are back in the pool");
                self.lock().extend(empty);
            }
        }
        let count = stuck.0.len();
        drop(stuck);
        self.lock().pop_back().ok_or(Exhausted {
            total: self.total,
            stuck: count,
        })
    }

    /// A free uid for one run.
    pub fn take(&self) -> Result<RunUser<'_>, Exhausted> {
        let uid = self.next()?;
        Ok(RunUser { pool: self, uid })
    }

    /// Like [`UserPool::take`], for a holder that keeps the uid beyond this borrow.
    pub fn take_owned(self: &Arc<Self>) -> Result<OwnedRunUser, Exhausted> {
        let uid = self.next()?;
        Ok(OwnedRunUser {
            pool: self.clone(),
            uid,
        })
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<u32>> {
        crate::sync::lock(&self.free)
    }

    fn stuck(&self) -> MutexGuard<'_, (Vec<u32>, Option<Instant>)> {
        crate::sync::lock(&self.stuck)
    }
}

impl Drop for RunUser<'_> {
    fn drop(&mut self) {
        self.pool.give_back(self.uid);
    }
}

impl Drop for OwnedRunUser {
    fn drop(&mut self) {
        self.pool.give_back(self.uid);
    }
}

/// Parses `--run-uids` (`64000-64999`).
pub fn parse_range(text: &str) -> Result<(u32, u32), String> {
    let (first, last) = text
        .split_once('-')
        .ok_or_else(|| format!("--run-uids must be a range such as 64000-64999, not '{text}'"))?;
    let parse = |s: &str| s.trim().parse::<u32>().ok().filter(|n| *n >= 1000);
    match (parse(first), parse(last)) {
        (Some(first), Some(last)) if first <= last && last - first < 1_000_000 => Ok((first, last)),
        _ => Err(format!(
            "--run-uids must be a range of unprivileged uids (1000 or more) such as 64000-64999, not '{text}'"
        )),
    }
}

impl From<Exhausted> for crate::error::ApiError {
    fn from(exhausted: Exhausted) -> crate::error::ApiError {
        crate::error::ApiError::RunUsersExhausted {
            total: exhausted.total,
            stuck: exhausted.stuck,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_never_shared() {
        let pool = UserPool::with_cleaner(64000, 64001, |_| 0);
        let a = pool.take().expect("one");
        let b = pool.take().expect("two");
        assert_ne!(a.uid, b.uid);
        assert_eq!(pool.take().err(), Some(Exhausted { total: 2, stuck: 0 }));
        drop(a);
        assert!(pool.take().is_ok());
    }

    #[test]
    fn owned_uids_come_back_when_dropped() {
        let pool = Arc::new(UserPool::with_cleaner(64000, 64000, |_| 0));
        let held = pool.take_owned().expect("one");
        assert!(pool.take().is_err());
        assert_eq!(held.uid, 64000);
        drop(held);
        assert!(pool.take_owned().is_ok());
    }

    /// Processes of uid 64000 that cannot be killed: set by the tests below.
    static STUCK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    fn stuck_cleaner(uid: u32) -> usize {
        if uid == 64000 {
            STUCK.load(std::sync::atomic::Ordering::SeqCst)
        } else {
            0
        }
    }

    #[test]
    fn a_uid_with_processes_left_is_set_aside_until_they_are_gone() {
        use std::sync::atomic::Ordering;
        STUCK.store(1, Ordering::SeqCst);
        let pool = UserPool::with_cleaner(64000, 64001, stuck_cleaner);
        let first = pool.take().expect("one");
        assert_eq!(first.uid, 64000);
        drop(first);
        let second = pool.take().expect("two");
        assert_eq!(second.uid, 64001);
        assert_eq!(pool.take().err(), Some(Exhausted { total: 2, stuck: 1 }));
        drop(second);
        assert_eq!(pool.take().map(|u| u.uid).ok(), Some(64001));
        // The stuck process ends: the uid is back at the next try.
        STUCK.store(0, Ordering::SeqCst);
        std::thread::sleep(RETRY);
        let held = pool.take().expect("64001");
        assert_eq!(held.uid, 64001);
        assert_eq!(pool.take().map(|u| u.uid).ok(), Some(64000));
    }

    #[test]
    fn the_last_returned_uid_goes_first() {
        let pool = UserPool::with_cleaner(64000, 64002, |_| 0);
        let a = pool.take().expect("a");
        assert_eq!(a.uid, 64000);
        drop(a);
        assert_eq!(pool.take().map(|u| u.uid).ok(), Some(64000));
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("64000-64999"), Ok((64000, 64999)));
        for bad in ["", "0-10", "5-1", "64000", "a-b", "64999-64000"] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }
}
