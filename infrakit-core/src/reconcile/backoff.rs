//! Per-group exponential backoff that resets on success.

use std::time::Duration;

/// Exponential backoff: `base`, `2·base`, `4·base` … up to `max`; a provider's retry-after
/// hint is honoured when it is longer. [`reset`](Self::reset) after a success.
///
/// ```
/// use infrakit_core::reconcile::Backoff;
/// use std::time::Duration;
/// let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
/// assert_eq!(b.next_delay(None), Duration::from_millis(100));
/// assert_eq!(b.next_delay(None), Duration::from_millis(200));
/// assert_eq!(b.next_delay(Some(Duration::from_millis(700))), Duration::from_millis(700));
/// assert_eq!(b.next_delay(None), Duration::from_millis(800));
/// assert_eq!(b.next_delay(None), Duration::from_secs(1)); // capped
/// b.reset();
/// assert_eq!(b.next_delay(None), Duration::from_millis(100));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// A backoff from `base` to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max: max.max(base),
            failures: 0,
        }
    }

    /// The delay before the next retry, counting one more failure.
    pub fn next_delay(&mut self, hint: Option<Duration>) -> Duration {
        let exp = self.failures.min(30);
        self.failures = self.failures.saturating_add(1);
        let delay = self.base.saturating_mul(1u32 << exp).min(self.max);
        hint.map_or(delay, |h| delay.max(h.min(self.max)))
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Forget the failures (after a success).
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}
