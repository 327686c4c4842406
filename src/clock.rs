//! The clock every time-dependent part of the crate reads, injectable for tests.
//!
//! Limiters read [`Clock::monotonic_millis`] (never goes back, so a wall-clock step cannot reopen a
//! window); TaskFlow records read [`Clock::epoch_millis`]. [`ManualClock`] moves only when told to, so
//! tests of window edges, lockouts and retention assert exact boundaries without sleeping.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A source of time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Milliseconds since the Unix epoch (wall clock).
    fn epoch_millis(&self) -> u64;

    /// Milliseconds since a fixed, arbitrary origin; never decreases.
    fn monotonic_millis(&self) -> u64;
}

/// A shared clock, as the layers and stores hold it.
pub type SharedClock = Arc<dyn Clock>;

/// The system clock: `SystemTime` for epoch time and `Instant` for monotonic time.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl SystemClock {
    /// The system clock, shared.
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    fn epoch_millis(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| {
                u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
            })
    }

    fn monotonic_millis(&self) -> u64 {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        let origin = *ORIGIN.get_or_init(Instant::now);
        u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told to. Both readings advance together.
#[derive(Debug, Default)]
pub struct ManualClock {
    epoch: AtomicU64,
    monotonic: AtomicU64,
}

impl ManualClock {
    /// A clock reading `epoch_millis` on the wall and `0` on the monotonic scale.
    pub fn new(epoch_millis: u64) -> Arc<Self> {
        Arc::new(Self {
            epoch: AtomicU64::new(epoch_millis),
            monotonic: AtomicU64::new(0),
        })
    }

    /// Moves both readings forward by `millis`.
    pub fn advance(&self, millis: u64) {
        self.epoch.fetch_add(millis, Ordering::SeqCst);
        self.monotonic.fetch_add(millis, Ordering::SeqCst);
    }

    /// Sets the wall-clock reading (which, unlike the monotonic one, may go back).
    pub fn set_epoch_millis(&self, epoch_millis: u64) {
        self.epoch.store(epoch_millis, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn epoch_millis(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    fn monotonic_millis(&self) -> u64 {
        self.monotonic.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_700_000_000_000);
        assert_eq!(clock.epoch_millis(), 1_700_000_000_000);
        assert_eq!(clock.monotonic_millis(), 0);
        clock.advance(60_000);
        assert_eq!(clock.epoch_millis(), 1_700_000_060_000);
        assert_eq!(clock.monotonic_millis(), 60_000);
        clock.set_epoch_millis(5);
        assert_eq!(
            (clock.epoch_millis(), clock.monotonic_millis()),
            (5, 60_000)
        );
    }

    #[test]
    fn system_clock_is_monotonic_and_after_2020() {
        let clock = SystemClock;
        let a = clock.monotonic_millis();
        assert!(clock.monotonic_millis() >= a);
        assert!(clock.epoch_millis() > 1_577_836_800_000);
    }
}
