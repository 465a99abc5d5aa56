//! Where the engine gets "now" from. TTL expiry and cohort placement read this
//! clock, so tests and benchmarks can simulate days of TTL in seconds.

use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in nanoseconds since the Unix epoch.
pub trait Clock: Send + Sync + Debug {
    /// Current time in nanoseconds since the Unix epoch.
    fn now_nanos(&self) -> i64;
}

/// The system clock (the default).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_nanos(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to. Cloning shares the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock that reads `start_nanos` until advanced.
    pub fn new(start_nanos: i64) -> Self {
        ManualClock {
            now: Arc::new(AtomicI64::new(start_nanos)),
        }
    }

    /// Moves time forward by `secs` seconds.
    pub fn advance_secs(&self, secs: u64) {
        self.advance_nanos(secs.saturating_mul(1_000_000_000).min(i64::MAX as u64) as i64);
    }

    /// Moves time by `nanos` nanoseconds, saturating at the ends of `i64`
    /// (a step past them would otherwise wrap time around).
    pub fn advance_nanos(&self, nanos: i64) {
        let _ = self
            .now
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(nanos))
            });
    }

    /// Sets the time.
    pub fn set_nanos(&self, nanos: i64) {
        self.now.store(nanos, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_nanos(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_saturates_instead_of_wrapping() {
        let c = ManualClock::new(1_700_000_000_000_000_000);
        c.advance_secs(u64::MAX);
        assert_eq!(c.now_nanos(), i64::MAX);
        c.advance_secs(1);
        assert_eq!(c.now_nanos(), i64::MAX);
        c.set_nanos(i64::MIN + 5);
        c.advance_nanos(-10);
        assert_eq!(c.now_nanos(), i64::MIN);
        c.set_nanos(0);
        c.advance_nanos(-10);
        assert_eq!(c.now_nanos(), -10);
    }
}
