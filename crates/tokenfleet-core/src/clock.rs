//! Injectable time: the pool and the simulators read the time and sleep through a [`Clock`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A future returned by [`Clock::sleep`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A source of wall-clock time and of sleeps.
///
/// Rate-limit resets are wall-clock instants (epoch seconds), so the pool
/// reads time as milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Returns the current time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// Returns a future that completes after `duration` has passed on this clock.
    fn sleep(&self, duration: Duration) -> Sleep;
}

/// The real clock: the system's wall time, and sleeps on the tokio timer.
///
/// Reading the system time costs about 100 ns on some virtual machines,
/// and the pool reads it on every `acquire` and `complete`. This clock
/// reads the CPU's time-stamp counter through `quanta` instead and maps it
/// to wall time, re-reading the system time once a second so that
/// adjustments of the system clock reach it within a second.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

/// The mapping from `quanta`'s monotonic counter to wall time.
struct WallMapping {
    clock: quanta::Clock,
    origin: u64,
    /// Wall milliseconds minus monotonic milliseconds since `origin`.
    offset_ms: AtomicI64,
    /// Monotonic milliseconds at the last re-read of the system time.
    synced_ms: AtomicU64,
}

const RESYNC_INTERVAL_MS: u64 = 1_000;

fn system_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl WallMapping {
    fn get() -> &'static WallMapping {
        static MAPPING: OnceLock<WallMapping> = OnceLock::new();
        MAPPING.get_or_init(|| {
            let clock = quanta::Clock::new();
            let origin = clock.raw();
            WallMapping {
                clock,
                origin,
                offset_ms: AtomicI64::new(system_now_ms() as i64),
                synced_ms: AtomicU64::new(0),
            }
        })
    }

    fn now_ms(&self) -> u64 {
        let monotonic_ms = self.clock.delta_as_nanos(self.origin, self.clock.raw()) / 1_000_000;
        let synced_ms = self.synced_ms.load(Ordering::Relaxed);
        if monotonic_ms.saturating_sub(synced_ms) >= RESYNC_INTERVAL_MS
            && self
                .synced_ms
                .compare_exchange(
                    synced_ms,
                    monotonic_ms,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            let offset = system_now_ms() as i64 - monotonic_ms as i64;
            self.offset_ms.store(offset, Ordering::Relaxed);
        }
        (monotonic_ms as i64 + self.offset_ms.load(Ordering::Relaxed)).max(0) as u64
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        WallMapping::get().now_ms()
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A clock that moves only when a test advances it or sleeps on it.
///
/// A sleep on this clock moves the clock forward to the sleep's deadline at
/// once (if it is not already past it) and then yields, so a test that
/// waits an hour for a rate-limit reset takes no wall-clock time. Clones
/// share one time, so a pool and a simulator can run on the same clock.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now_ms: Arc<AtomicU64>,
}

impl ManualClock {
    /// Creates a clock that reads `start_ms` milliseconds since the Unix epoch.
    pub fn new(start_ms: u64) -> Self {
        Self {
            now_ms: Arc::new(AtomicU64::new(start_ms)),
        }
    }

    /// Creates a clock that starts at the system's current time.
    pub fn starting_now() -> Self {
        Self::new(system_now_ms())
    }

    /// Moves the clock forward by `duration`.
    pub fn advance(&self, duration: Duration) {
        self.now_ms
            .fetch_add(crate::pool::millis(duration), Ordering::SeqCst);
    }

    /// Moves the clock forward to `deadline_ms` unless it is already later.
    pub fn advance_to(&self, deadline_ms: u64) {
        self.now_ms.fetch_max(deadline_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        let deadline = self.now_ms().saturating_add(crate::pool::millis(duration));
        let clock = self.clone();
        Box::pin(async move {
            clock.advance_to(deadline);
            tokio::task::yield_now().await;
        })
    }
}

/// A clock that follows tokio's timer, so `tokio::time::pause` and
/// `advance` move it. Its epoch origin is the system time when it was made.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin_ms: u64,
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// Creates a clock anchored at the current system time and tokio instant.
    pub fn new() -> Self {
        Self {
            origin_ms: system_now_ms(),
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        self.origin_ms + self.origin.elapsed().as_millis() as u64
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        (**self).sleep(duration)
    }
}

/// Formats epoch milliseconds as an HTTP date such as `Fri, 04 Dec 2026 16:00:00 GMT`.
pub fn format_epoch_ms(ms: u64) -> String {
    // HTTP dates end at the year 9999; a server can send a later reset.
    const LAST_HTTP_DATE_MS: u64 = 253_402_300_799_999;
    let time = UNIX_EPOCH + Duration::from_millis(ms.min(LAST_HTTP_DATE_MS));
    httpdate::fmt_http_date(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_sleep_advances_time() {
        let clock = ManualClock::new(1_000);
        clock.sleep(Duration::from_secs(3600)).await;
        assert_eq!(clock.now_ms(), 1_000 + 3_600_000);
    }

    #[test]
    fn far_future_dates_format() {
        let text = format_epoch_ms(300_000_000_000_000);
        assert!(text.contains("9999"), "{text}");
    }

    #[tokio::test]
    async fn manual_clock_clones_share_time() {
        let clock = ManualClock::new(0);
        let other = clock.clone();
        other.advance(Duration::from_millis(5));
        assert_eq!(clock.now_ms(), 5);
    }

    #[test]
    fn system_clock_matches_system_time() {
        let fast = SystemClock.now_ms();
        let system = system_now_ms();
        assert!(fast.abs_diff(system) < 50, "{fast} vs {system}");
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let clock = TokioClock::new();
        let before = clock.now_ms();
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(clock.now_ms() - before, 120_000);
    }
}
