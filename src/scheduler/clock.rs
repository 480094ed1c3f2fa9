//! The scheduler's two clocks, read together: the wall clock (what calendar schedules and
//! the API speak in, and what NTP, a restored VM or a wrong RTC may step) and the monotonic
//! clock (what intervals and sleeps run on, which never steps). The scheduler takes them
//! through [`Clock`], so its tests step the wall clock without touching the host's.
//! Owns no schedule and never sleeps.

use chrono::{DateTime, TimeDelta, Utc};
use std::time::{Duration, Instant};

/// Both clocks at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    pub wall: DateTime<Utc>,
    /// Time since the clock's origin, on the monotonic clock.
    pub mono: Duration,
}

impl Now {
    /// How far the wall clock is ahead of the monotonic one: constant while neither steps
    /// (NTP slewing moves it by well under a millisecond a second).
    pub fn offset(&self) -> TimeDelta {
        TimeDelta::from_std(self.mono)
            .ok()
            .and_then(|mono| self.wall.checked_sub_signed(mono))
            .map_or(TimeDelta::zero(), |origin| origin - DateTime::UNIX_EPOCH)
    }
}

/// Where the scheduler reads the time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Now;
}

/// The host's clocks.
pub struct SystemClock {
    origin: Instant,
    /// Debug builds only: a file holding whole seconds added to the wall clock, so the
    /// end-to-end suite can step the server's wall clock (`GOLAMBDA_TEST_WALL_SHIFT_FILE`).
    #[cfg(debug_assertions)]
    shift_file: Option<std::path::PathBuf>,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            origin: Instant::now(),
            #[cfg(debug_assertions)]
            shift_file: std::env::var_os("GOLAMBDA_TEST_WALL_SHIFT_FILE").map(Into::into),
        }
    }
}

impl SystemClock {
    #[cfg(debug_assertions)]
    fn shift(&self) -> TimeDelta {
        self.shift_file
            .as_ref()
            .and_then(|file| std::fs::read_to_string(file).ok())
            .and_then(|text| text.trim().parse::<i64>().ok())
            .and_then(TimeDelta::try_seconds)
            .unwrap_or_default()
    }

    #[cfg(not(debug_assertions))]
    fn shift(&self) -> TimeDelta {
        TimeDelta::zero()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Now {
        let mono = self.origin.elapsed();
        let wall = Utc::now() + self.shift();
        Now { wall, mono }
    }
}
