//! Per-run users: when the server runs as root, each run takes a uid from `--run-uids` for
//! its whole life and gives it back once every process of that uid is gone, so no two runs
//! ever share a uid and a run cannot touch the server's files, another run, or the server.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

pub struct UserPool {
    /// Last returned first: the few uids in use stay warm (their cgroups and scratch
    /// namespaces are made once). A uid comes back only once it has no process left.
    free: Mutex<VecDeque<u32>>,
    /// Kills what is left of a uid's processes and empties its scratch folders; returns how
    /// many processes remain.
    clean: fn(u32) -> usize,
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
    /// processes is left; one that cannot be emptied is never handed out again.
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
            clean,
        }
    }

    fn give_back(&self, uid: u32) {
        let remaining = (self.clean)(uid);
        if remaining > 0 {
            log::error!(
                "uid {uid} still has {remaining} processes that could not be killed; \
                 it is taken out of the pool of run users"
            );
            return;
        }
        self.lock().push_back(uid);
    }

    /// A free uid, or `None` when every one is in use.
    pub fn take(&self) -> Option<RunUser<'_>> {
        let uid = self.lock().pop_back()?;
        Some(RunUser { pool: self, uid })
    }

    /// Like [`UserPool::take`], for a holder that keeps the uid beyond this borrow.
    pub fn take_owned(self: &Arc<Self>) -> Option<OwnedRunUser> {
        let uid = self.lock().pop_back()?;
        Some(OwnedRunUser {
            pool: self.clone(),
            uid,
        })
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<u32>> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_never_shared() {
        let pool = UserPool::with_cleaner(64000, 64001, |_| 0);
        let a = pool.take().expect("one");
        let b = pool.take().expect("two");
        assert_ne!(a.uid, b.uid);
        assert!(pool.take().is_none());
        drop(a);
        assert!(pool.take().is_some());
    }

    #[test]
    fn owned_uids_come_back_when_dropped() {
        let pool = Arc::new(UserPool::with_cleaner(64000, 64000, |_| 0));
        let held = pool.take_owned().expect("one");
        assert!(pool.take().is_none());
        assert_eq!(held.uid, 64000);
        drop(held);
        assert!(pool.take_owned().is_some());
    }

    #[test]
    fn a_uid_with_processes_left_is_never_handed_out_again() {
        let pool = UserPool::with_cleaner(64000, 64001, |uid| usize::from(uid == 64000));
        let first = pool.take().expect("one");
        assert_eq!(first.uid, 64000);
        drop(first);
        let second = pool.take().expect("two");
        assert_eq!(second.uid, 64001);
        assert!(pool.take().is_none());
        drop(second);
        assert_eq!(pool.take().map(|u| u.uid), Some(64001));
    }

    #[test]
    fn the_last_returned_uid_goes_first() {
        let pool = UserPool::with_cleaner(64000, 64002, |_| 0);
        let a = pool.take().expect("a");
        assert_eq!(a.uid, 64000);
        drop(a);
        assert_eq!(pool.take().map(|u| u.uid), Some(64000));
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("64000-64999"), Ok((64000, 64999)));
        for bad in ["", "0-10", "5-1", "64000", "a-b", "64999-64000"] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }
}
