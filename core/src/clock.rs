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

    /// Moves time forward by `nanos` nanoseconds.
    pub fn advance_nanos(&self, nanos: i64) {
        self.now.fetch_add(nanos, Ordering::SeqCst);
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
