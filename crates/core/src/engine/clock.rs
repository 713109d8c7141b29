//! The engine's clock, injected so that tests advance time instead of
//! sleeping. Every rule of the state core reads "now" from here, never from
//! the system.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::model::Millis;

/// Where the engine reads the current time.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now(&self) -> Millis;
}

/// The system's wall clock, never going backwards: a clock set back (by
/// NTP, by hand) would otherwise make every running job look younger and
/// its stuck warning late; it holds still until the wall clock catches up.
#[derive(Debug, Default)]
pub struct SystemClock {
    last: AtomicI64,
}

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        let wall = crate::model::now_ms();
        let prev = self.last.fetch_max(wall, Ordering::Relaxed);
        prev.max(wall)
    }
}

/// A clock that moves only when told: for tests.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Millis) -> ManualClock {
        ManualClock {
            now: AtomicI64::new(start),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.now
            .fetch_add(by.as_millis() as Millis, Ordering::Relaxed);
    }

    /// Sets the clock.
    pub fn set(&self, to: Millis) {
        self.now.store(to, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        self.now.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_never_goes_back_and_the_manual_one_moves_when_told() {
        let c = SystemClock::default();
        c.last.store(i64::MAX - 1, Ordering::Relaxed);
        assert_eq!(c.now(), i64::MAX - 1);
        let m = ManualClock::new(1_000);
        m.advance(Duration::from_secs(2));
        assert_eq!(m.now(), 3_000);
    }
}
